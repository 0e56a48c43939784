//! Records messages: each checked on its own (its checkpoint's signed
//! head, each record's inclusion in it, their sizes), then a group of them
//! stored in one transaction and acknowledged together.
//!
//! Design: a record already held byte for byte was checked when it was
//! stored, and a head note already verified is not verified again, so a
//! resent record costs a lookup, never a signature or a proof.
//!
//! Design: equivocation is evidence, never a veto. Every record in a head
//! the checkpoint's key signed is stored, whatever other heads of that key
//! the hub holds: a stolen key can make licenses count as used (and is
//! alerted), but can never keep the genuine post's records out.

use rayon::prelude::*;
use tracing::{info, warn};

use super::intake::{Intake, Out};
use super::store::{Placed, PostHead, Store, StoreError};
use crate::clock::UnixTime;
use crate::merkle::head::{HEAD_MAX, Head};
use crate::record::{ConsumptionRecord, RecordError};
use crate::sync::equivocation::{self, Evidenced, Fork};
use crate::sync::protocol::{BATCH_MAX, Feed, LEAF_MAX, MESSAGE_MAX, Records};
use crate::sync::verify::verify_post_head;

/// Verified head notes kept at most (then forgotten, and verified again).
pub(super) const HEADS_KEPT: usize = 4096;

/// Records checked one by one below this; above it, across the cores.
const PARALLEL_FROM: usize = 16;

/// A records message checked: its records ready to store.
pub(super) struct Checked {
    /// Its signed head, verified.
    head: PostHead,
    /// Its records that passed, in order.
    placed: Vec<Placed>,
}

impl Checked {
    /// How many records passed.
    pub(super) fn placed_len(&self) -> usize {
        self.placed.len()
    }
}

impl Intake {
    /// A checkpoint's head note, verified once against the registry in force.
    fn verified_head(&mut self, note: &str) -> Result<(String, Head), RecordError> {
        if let Some(h) = self.heads.get(note) {
            return Ok(h.clone());
        }
        let registry = self.cfg.in_force.current().registry.clone();
        let verified = verify_post_head(note, &registry)?;
        if self.heads.len() >= HEADS_KEPT {
            self.heads.clear();
        }
        self.heads.insert(note.to_owned(), verified.clone());
        Ok(verified)
    }

    /// `sender`'s heads of `size` the hub holds or this group verified: (root, note).
    async fn heads_at(
        &self,
        store: &mut Store,
        sender: &str,
        size: u64,
    ) -> Result<Vec<(crate::merkle::Hash, String)>, StoreError> {
        let mut held = store.post_heads_at(sender, size).await?;
        for h in &self.group_heads {
            if h.checkpoint == sender
                && h.head.size == size
                && !held.iter().any(|(r, _)| *r == h.head.root)
            {
                held.push((h.head.root, h.note.clone()));
            }
        }
        Ok(held)
    }

    /// Checks one records message; refusals go to `outs`.
    pub(super) async fn check_records(
        &mut self,
        store: &mut Store,
        sender: &str,
        payload: &[u8],
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<Option<Checked>, StoreError> {
        // Design: bounds are enforced here, where data is admitted: what
        // the hub stores it must be able to send on to every post.
        if payload.len() > MESSAGE_MAX {
            let what = "records message";
            self.too_large(store, outs, sender, what, payload, MESSAGE_MAX, now)
                .await?;
            return Ok(None);
        }
        let batch = match Records::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                self.refuse(
                    store,
                    outs,
                    sender,
                    "unreadable",
                    &e.to_string(),
                    payload,
                    now,
                )
                .await?;
                return Ok(None);
            }
        };
        if batch.head.len() > HEAD_MAX {
            let why = format!(
                "a signed head of {} bytes, more than {HEAD_MAX}",
                batch.head.len()
            );
            self.refuse(store, outs, sender, "too_large", &why, payload, now)
                .await?;
            return Ok(None);
        }
        let head = match self.verified_head(&batch.head) {
            Ok((cp, _)) if cp != sender => {
                let why = format!("a head of `{cp}` sent on the topic of `{sender}`");
                self.refuse(store, outs, sender, "wrong_topic", &why, payload, now)
                    .await?;
                return Ok(None);
            }
            Ok((_, head)) => head,
            Err(e) => {
                let why = format!("sent on the topic of `{sender}`: {e}");
                self.refuse(store, outs, sender, e.code(), &why, payload, now)
                    .await?;
                return Ok(None);
            }
        };
        self.check_head(store, sender, &head, &batch, now, outs)
            .await?;
        // Design: one note per (size, root). The same head signed again at
        // another time (only a key-holder does that) is checked and kept as
        // the note the hub holds, so the note the hub serves with a record
        // is the one the record was checked against.
        let (head, note) = match self
            .heads_at(store, sender, head.size)
            .await?
            .into_iter()
            .find(|(root, n)| *root == head.root && *n != batch.head)
            .and_then(|(_, n)| Head::peek(n.as_bytes()).ok().map(|h| (h, n)))
        {
            Some(held) => held,
            None => (head, batch.head.clone()),
        };
        // Kept with the group's records; later messages of the group see it.
        let post_head = PostHead {
            checkpoint: sender.to_owned(),
            head: head.clone(),
            note,
        };
        self.group_heads.push(post_head.clone());
        let skew = self.cfg.in_force.current().registry.skew();
        let mut readable = Vec::with_capacity(batch.records.len());
        for (index, leaf, proof) in batch.records {
            if leaf.len() > LEAF_MAX {
                self.too_large(store, outs, sender, "record", &leaf, LEAF_MAX, now)
                    .await?;
                continue;
            }
            match ConsumptionRecord::from_leaf(&leaf) {
                Ok(r) if r.checkpoint == sender => readable.push((r, index, leaf, proof)),
                Ok(r) => {
                    let why = format!(
                        "record of `{}` sent on the topic of `{sender}`",
                        r.checkpoint
                    );
                    self.refuse(store, outs, sender, "wrong_topic", &why, &leaf, now)
                        .await?;
                }
                Err(e) => {
                    self.refuse(store, outs, sender, e.code(), &e.to_string(), &leaf, now)
                        .await?;
                }
            }
        }
        let seqs: Vec<u64> = readable.iter().map(|r| r.0.seq).collect();
        let held = store.held_many(sender, &seqs).await?;
        let check = |(rec, index, leaf, proof): &(
            ConsumptionRecord,
            u64,
            Vec<u8>,
            Vec<crate::merkle::Hash>,
        )|
         -> Result<(), (&'static str, String)> {
            if held.get(&rec.seq).is_some_and(|h| h.contains(leaf)) {
                return Ok(());
            }
            if let Err(e) =
                crate::merkle::verify_inclusion(proof, head.size, &head.root, *index, leaf)
            {
                return Err((
                    "not_included",
                    format!(
                        "record {} of `{sender}` is not in its signed log: {e}",
                        rec.seq
                    ),
                ));
            }
            if rec.consumed_at > head.time.saturating_add(skew) {
                return Err((
                    "after_head",
                    format!("record {} of `{sender}` is dated after its head", rec.seq),
                ));
            }
            Ok(())
        };
        // The proofs, across the cores for a large message (a blocking
        // section: no await inside).
        let checks: Vec<Result<(), (&'static str, String)>> = if readable.len() < PARALLEL_FROM {
            readable.iter().map(check).collect()
        } else {
            tokio::task::block_in_place(|| readable.par_iter().map(check).collect())
        };
        let mut placed = Vec::with_capacity(readable.len());
        for ((record, post_index, leaf, post_proof), check) in readable.into_iter().zip(checks) {
            match check {
                Ok(()) => placed.push(Placed {
                    record,
                    leaf,
                    post_index,
                    post_size: head.size,
                    post_root: head.root,
                    post_proof,
                }),
                Err((reason, why)) => {
                    self.refuse(store, outs, sender, reason, &why, &leaf, now)
                        .await?;
                }
            }
        }
        Ok(Some(Checked {
            head: post_head,
            placed,
        }))
    }

    /// Refuses something of `sender`'s over its bound (`too_large`); the
    /// alert carries the SHA-256 of its first 64 bytes.
    #[allow(clippy::too_many_arguments)]
    async fn too_large(
        &mut self,
        store: &mut Store,
        outs: &mut Vec<Out>,
        sender: &str,
        what: &str,
        bytes: &[u8],
        max: usize,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let why = format!(
            "a {what} of {} bytes from `{sender}`, more than the {max} it may have",
            bytes.len()
        );
        let head = &bytes[..64.min(bytes.len())];
        self.refuse(store, outs, sender, "too_large", &why, head, now)
            .await
    }

    /// Checks `head` against `sender`'s heads the hub holds, raising
    /// `log_equivocation` when the evidence proves two histories: another
    /// head of its size with another root, or (with the root its log had
    /// at an earlier size and the proof from it) an earlier head it does
    /// not extend. Never refuses: the records are stored either way.
    async fn check_head(
        &mut self,
        store: &mut Store,
        sender: &str,
        head: &Head,
        batch: &Records,
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<(), StoreError> {
        let same = self.heads_at(store, sender, head.size).await?;
        if let Some((_, other)) = same.iter().find(|(root, _)| *root != head.root) {
            let ev = Evidenced::Heads(other.clone(), batch.head.clone());
            return self.equivocation(store, sender, &ev, now, outs).await;
        }
        let Some(c) = &batch.consistency else {
            return Ok(());
        };
        let Some(root) = c.root.filter(|_| c.from > 0 && c.from < head.size) else {
            return Ok(());
        };
        // Design: a proof that does not verify shows nothing (anyone can
        // attach one to a genuine head); one that does pins the log's root
        // at `from`, so a held head of that size with another root is a fork.
        if crate::merkle::verify_consistency(&c.proof, c.from, &root, head.size, &head.root)
            .is_err()
        {
            return Ok(());
        }
        let earlier = self.heads_at(store, sender, c.from).await?;
        if let Some((_, note)) = earlier.iter().find(|(r, _)| *r != root) {
            let ev = Evidenced::Fork {
                earlier: note.clone(),
                later: batch.head.clone(),
                fork: Fork {
                    root: root.0,
                    proof: c.proof.clone(),
                },
            };
            return self.equivocation(store, sender, &ev, now, outs).await;
        }
        Ok(())
    }

    /// Raises (once: by its evidence) that `sender`'s key signed two histories.
    async fn equivocation(
        &mut self,
        store: &mut Store,
        sender: &str,
        evidence: &Evidenced,
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<(), StoreError> {
        let alert = equivocation::alert(sender, evidence, "hub", now);
        if store.record_alert(&alert, now).await? {
            self.alerted(&alert, outs);
        }
        Ok(())
    }

    /// An alert the hub stored now: counted, logged, and published (its
    /// evidence cut to fit a message).
    pub(super) fn alerted(&self, alert: &crate::verdict::Alert, outs: &mut Vec<Out>) {
        self.cfg.telemetry.alerted(alert.kind.as_str());
        if let Some(signer) = &alert.signer {
            self.cfg.telemetry.equivocation(signer);
            warn!(checkpoint = %signer, detail = alert.detail.as_deref().unwrap_or(""), "hub: alert: a checkpoint's key signed two histories; both are kept and count");
        } else {
            warn!(
                license_id = alert.license_id.as_deref().unwrap_or("-"),
                kind = alert.kind.as_str(),
                "hub: alert"
            );
        }
        outs.push(Out {
            topic: self.topics.alerts(),
            payload: crate::sync::verify::alert_json_within(alert, MESSAGE_MAX),
            retain: false,
        });
    }

    /// Stores the records of a group of checked messages in one
    /// transaction; acknowledgements, feed messages and alerts go to `outs`.
    pub(super) async fn store_checked(
        &mut self,
        store: &mut Store,
        checked: Vec<Checked>,
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<(), StoreError> {
        if checked.is_empty() {
            return Ok(());
        }
        let mut placed = Vec::new();
        let mut heads = Vec::with_capacity(checked.len());
        for c in checked {
            placed.extend(c.placed);
            heads.push(c.head);
        }
        let stored = store.store(&placed, &heads, &self.cfg.key, now).await?;
        // Design: each acknowledgement names the head its message carried:
        // what that post signed, never another branch's head.
        for h in &heads {
            let contiguous = stored
                .contiguous
                .iter()
                .find(|(cp, _)| *cp == h.checkpoint)
                .map(|(_, n)| *n);
            let contiguous = match contiguous {
                Some(n) => n,
                None => store.contiguous(&h.checkpoint).await?,
            };
            outs.push(self.ack_at(&h.checkpoint, contiguous, Some(h.note.clone()), now));
        }
        if let Some(feed) = stored.feed {
            self.cfg.telemetry.stored(feed.entries.len() as u64);
            info!(
                stored = feed.entries.len(),
                head = feed.entries.last().map(|e| e.g).unwrap_or(0),
                "hub: records stored"
            );
            for part in split_feed(feed, BATCH_MAX, MESSAGE_MAX) {
                outs.push(Out {
                    topic: self.topics.feed(),
                    payload: part.encode(),
                    retain: false,
                });
            }
        }
        for a in stored.alerts {
            self.alerted(&a, outs);
        }
        Ok(())
    }
}

/// What an entry adds to an encoded feed message, at most, bytes (its
/// checkpoint's head not counted).
fn entry_bytes(e: &crate::sync::protocol::FeedEntry) -> usize {
    e.leaf.len() + 34 * (e.post_proof.len() + e.hub_proof.len()) + 48
}

/// A feed cut into messages of at most `max` entries and `bytes` bytes
/// encoded, each proven against the same hub head and carrying only the
/// checkpoint heads it refers to. An entry too large for `bytes` alone
/// goes alone (records are bounded where the hub admits them, so none is).
pub(super) fn split_feed(feed: Feed, max: usize, bytes: usize) -> Vec<Feed> {
    let fixed = feed.hub_head.len() + feed.time.as_ref().map_or(0, |t| t.len()) + 64;
    let whole = fixed
        + feed.post_heads.iter().map(|h| h.len() + 4).sum::<usize>()
        + feed.entries.iter().map(entry_bytes).sum::<usize>();
    if feed.entries.len() <= max && whole <= bytes {
        return vec![feed];
    }
    let mut parts = Vec::new();
    let mut entries = feed.entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut post_heads: Vec<String> = Vec::new();
        let mut taken = Vec::with_capacity(max.min(64));
        let mut size = fixed;
        while let Some(e) = entries.peek() {
            let Some(note) = feed.post_heads.get(e.post_head) else {
                entries.next();
                continue;
            };
            let known = post_heads.iter().position(|n| n == note);
            let cost = entry_bytes(e) + known.map_or(note.len() + 4, |_| 0);
            if !taken.is_empty() && (taken.len() >= max || size + cost > bytes) {
                break;
            }
            let Some(mut e) = entries.next() else { break };
            e.post_head = match known {
                Some(i) => i,
                None => {
                    post_heads.push(note.clone());
                    post_heads.len() - 1
                }
            };
            size += cost;
            taken.push(e);
        }
        parts.push(Feed {
            hub_head: feed.hub_head.clone(),
            post_heads,
            entries: taken,
            time: feed.time.clone(),
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::protocol::FeedEntry;

    fn entry(g: u64, post_head: usize) -> FeedEntry {
        FeedEntry {
            g,
            post_head,
            post_index: g,
            leaf: vec![g as u8],
            post_proof: Vec::new(),
            hub_proof: Vec::new(),
        }
    }

    #[test]
    fn split_feed_keeps_order_and_each_part_names_only_its_heads() {
        let heads = vec![
            "head-a".to_owned(),
            "head-b".to_owned(),
            "head-c".to_owned(),
        ];
        // a, a, b, c, b: split in twos.
        let feed = Feed {
            hub_head: "hub".into(),
            post_heads: heads.clone(),
            entries: [0, 0, 1, 2, 1]
                .iter()
                .enumerate()
                .map(|(i, &h)| entry(i as u64 + 1, h))
                .collect(),
            time: None,
        };
        let parts = split_feed(feed.clone(), 2, MESSAGE_MAX);
        assert_eq!(parts.len(), 3);
        let mut seen = Vec::new();
        for part in &parts {
            assert!(part.entries.len() <= 2);
            assert_eq!(part.hub_head, "hub");
            for e in &part.entries {
                // Each entry still points at the head it pointed at before.
                let original = &feed.entries[(e.g - 1) as usize];
                assert_eq!(part.post_heads[e.post_head], heads[original.post_head]);
                seen.push(e.g);
            }
            // No part carries a head none of its entries uses.
            for (i, _) in part.post_heads.iter().enumerate() {
                assert!(part.entries.iter().any(|e| e.post_head == i));
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        // A feed within the limit comes back whole.
        assert_eq!(split_feed(feed.clone(), 5, MESSAGE_MAX), vec![feed]);
    }

    #[test]
    fn a_feed_is_cut_below_the_message_bound_by_bytes() {
        let heads: Vec<String> = (0..3)
            .map(|i| format!("head-{i}-{}", "h".repeat(300)))
            .collect();
        let feed = Feed {
            hub_head: "hub".repeat(100),
            post_heads: heads,
            entries: (0..40u64)
                .map(|g| FeedEntry {
                    g: g + 1,
                    post_head: (g % 3) as usize,
                    post_index: g,
                    leaf: vec![7; 60 * 1024],
                    post_proof: vec![crate::merkle::Hash([1; 32]); 20],
                    hub_proof: vec![crate::merkle::Hash([2; 32]); 20],
                })
                .collect(),
            time: Some(vec![3; 100]),
        };
        let parts = split_feed(feed, BATCH_MAX, MESSAGE_MAX);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let mut seen = Vec::new();
        for p in &parts {
            let bytes = p.encode().len();
            assert!(bytes <= MESSAGE_MAX, "{bytes} bytes");
            assert!(p.time.is_some(), "every part answers the request");
            seen.extend(p.entries.iter().map(|e| e.g));
        }
        assert_eq!(seen, (1..=40).collect::<Vec<_>>());
    }
}
