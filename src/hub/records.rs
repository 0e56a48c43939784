//! Records messages: each checked on its own (its checkpoint's signed head,
//! that head against the one the hub holds, each record's inclusion), then
//! a group of them stored in one transaction and acknowledged together.
//!
//! Design: a record already held byte for byte was checked when it was
//! stored, and a head note already verified is not verified again, so a
//! resent record costs a lookup, never a signature or a proof.

use std::collections::HashMap;

use rayon::prelude::*;
use tracing::{error, info, warn};

use super::intake::{Intake, Out};
use super::store::{Placed, PostHead, Store, StoreError};
use crate::clock::UnixTime;
use crate::merkle::head::Head;
use crate::record::{ConsumptionRecord, RecordError};
use crate::sync::protocol::{BATCH_MAX, Feed, Records};
use crate::sync::verify::{log_inconsistent_alert, verify_post_head};

/// Verified head notes kept at most (then forgotten, and verified again).
pub(super) const HEADS_KEPT: usize = 4096;

/// A records message checked: its records ready to store.
pub(super) struct Checked {
    /// Its signed head, verified, extending the last the hub held.
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

    /// The newest head of `sender` this group verified (of `size`, if given).
    fn group_head(&self, sender: &str, size: Option<u64>) -> Option<&PostHead> {
        self.group_heads
            .iter()
            .filter(|h| h.checkpoint == sender && size.is_none_or(|s| h.head.size == s))
            .max_by_key(|h| h.head.size)
    }

    /// Checks one records message; refusals and requests to resend go to `outs`.
    pub(super) async fn check_records(
        &mut self,
        store: &mut Store,
        sender: &str,
        payload: &[u8],
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<Option<Checked>, StoreError> {
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
        if !self
            .head_extends(store, sender, &head, &batch, now, outs)
            .await?
        {
            return Ok(None);
        }
        // Kept with the group's records; later messages of the group see it.
        let post_head = PostHead {
            checkpoint: sender.to_owned(),
            head: head.clone(),
            note: batch.head.clone(),
        };
        self.group_heads.push(post_head.clone());
        let skew = self.cfg.in_force.current().registry.skew();
        let mut readable = Vec::with_capacity(batch.records.len());
        for (index, leaf, proof) in batch.records {
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
        // The proofs, across the cores (a blocking section: no await inside).
        let checks: Vec<Result<(), (&'static str, String)>> = tokio::task::block_in_place(|| {
            readable
                .par_iter()
                .map(|(rec, index, leaf, proof)| {
                    if held.get(&rec.seq) == Some(leaf) {
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
                })
                .collect()
        });
        let mut placed = Vec::with_capacity(readable.len());
        for ((record, post_index, leaf, post_proof), check) in readable.into_iter().zip(checks) {
            match check {
                Ok(()) => placed.push(Placed {
                    record,
                    leaf,
                    post_index,
                    post_size: head.size,
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

    /// Whether `head` may be kept: it extends the newest head of `sender`
    /// the hub holds (or agrees with an older one). If not, a request to
    /// resend or a `log_inconsistent` alert goes to `outs`.
    ///
    /// Design: a checkpoint's log only ever grows. Each new head must
    /// extend the newest one held, by a consistency proof from it; a head
    /// that shrinks it or contradicts it is `log_inconsistent`.
    async fn head_extends(
        &mut self,
        store: &mut Store,
        sender: &str,
        head: &Head,
        batch: &Records,
        now: UnixTime,
        outs: &mut Vec<Out>,
    ) -> Result<bool, StoreError> {
        let held = match self.group_head(sender, None) {
            Some(h) => Some((h.head.size, h.head.root, h.note.clone())),
            None => store.post_head(sender).await?,
        };
        let Some((size, root, note)) = held else {
            return Ok(true);
        };
        let verdict = match (head.size.cmp(&size), &batch.consistency) {
            (std::cmp::Ordering::Equal, _) => (head.root == root)
                .then_some(())
                .ok_or("two heads of the same size with different roots: the log was rewritten"),
            // An older head: a message delayed, redelivered, or taken by
            // another hub first. It must agree with the head of its size
            // the hub holds, if any; otherwise it is sent again, current.
            (std::cmp::Ordering::Less, _) => match match self.group_head(sender, Some(head.size)) {
                Some(h) => Some(h.head.root),
                None => store.post_head_at(sender, head.size).await?,
            } {
                Some(held_root) if held_root != head.root => {
                    Err("two heads of the same size with different roots: the log was rewritten")
                }
                Some(_) => Ok(()),
                None => {
                    outs.push(self.ack(store, sender, Some(note), true, now).await?);
                    return Ok(false);
                }
            },
            (std::cmp::Ordering::Greater, Some((from, proof))) if *from == size => {
                crate::merkle::verify_consistency(proof, size, &root, head.size, &head.root)
                    .map_err(|_| {
                        "its new head does not extend the one the hub holds: the log was rewritten"
                    })
            }
            (std::cmp::Ordering::Greater, _) => {
                // No proof from the head the hub holds: ask for it.
                outs.push(self.ack(store, sender, Some(note), true, now).await?);
                return Ok(false);
            }
        };
        let Err(why) = verdict else {
            return Ok(true);
        };
        let alert = log_inconsistent_alert(
            "hub",
            &format!("checkpoint `{sender}`: {why}"),
            vec![note, batch.head.clone()],
            now,
        );
        error!(
            checkpoint = sender,
            why, "hub: a checkpoint's log is inconsistent"
        );
        if store.record_alert(&alert, now).await? {
            self.cfg.telemetry.alerted(alert.kind.as_str());
            outs.push(Out {
                topic: self.topics.alerts(),
                payload: serde_json::to_vec(&alert).unwrap_or_default(),
                retain: false,
            });
        }
        Ok(false)
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
        let mut notes: HashMap<String, String> = HashMap::new();
        let mut placed = Vec::new();
        let mut heads = Vec::with_capacity(checked.len());
        for c in checked {
            notes.insert(c.head.checkpoint.clone(), c.head.note.clone());
            placed.extend(c.placed);
            heads.push(c.head);
        }
        let stored = store.store(&placed, &heads, &self.cfg.key, now).await?;
        for (cp, contiguous) in &stored.contiguous {
            outs.push(self.ack_at(cp, *contiguous, notes.get(cp).cloned(), false, now));
        }
        if let Some(feed) = stored.feed {
            self.cfg.telemetry.stored(feed.entries.len() as u64);
            info!(
                stored = feed.entries.len(),
                head = feed.entries.last().map(|e| e.g).unwrap_or(0),
                "hub: records stored"
            );
            for part in split_feed(feed, BATCH_MAX) {
                outs.push(Out {
                    topic: self.topics.feed(),
                    payload: part.encode(),
                    retain: false,
                });
            }
        }
        for a in stored.alerts {
            self.cfg.telemetry.alerted(a.kind.as_str());
            warn!(license_id = a.license_id.as_deref().unwrap_or("-"), kind = ?a.kind, "hub: alert");
            outs.push(Out {
                topic: self.topics.alerts(),
                payload: serde_json::to_vec(&a).unwrap_or_default(),
                retain: false,
            });
        }
        Ok(())
    }
}

/// A feed cut into messages of at most `max` entries, each proven against
/// the same hub head and carrying only the checkpoint heads it refers to.
pub(super) fn split_feed(feed: Feed, max: usize) -> Vec<Feed> {
    if feed.entries.len() <= max {
        return vec![feed];
    }
    let mut parts = Vec::new();
    let mut entries = feed.entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut post_heads: Vec<String> = Vec::new();
        let mut taken = Vec::with_capacity(max);
        for mut e in entries.by_ref().take(max) {
            let Some(note) = feed.post_heads.get(e.post_head) else {
                continue;
            };
            e.post_head = match post_heads.iter().position(|n| n == note) {
                Some(i) => i,
                None => {
                    post_heads.push(note.clone());
                    post_heads.len() - 1
                }
            };
            taken.push(e);
        }
        parts.push(Feed {
            hub_head: feed.hub_head.clone(),
            post_heads,
            entries: taken,
            time: None,
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
        let parts = split_feed(feed.clone(), 2);
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
        assert_eq!(split_feed(feed.clone(), 5), vec![feed]);
    }
}
