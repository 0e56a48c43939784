//! Checking what arrives from the hub, without I/O: its signed tree heads,
//! every feed entry's inclusion in the hub's log and in its checkpoint's
//! log, and the evidence inside its alerts.

use sha2::{Digest, Sha256};

use super::protocol::Feed;
use crate::clock::{UnixTime, to_rfc3339};
use crate::ledger::VerifiedEntry;
use crate::merkle::head::{HUB_ORIGIN, Head, HeadError, checkpoint_origin};
use crate::merkle::{self, MerkleError};
use crate::record::{ConsumptionRecord, RecordError};
use crate::registry::Registry;
use crate::verdict::{Alert, AlertKind};

/// A hub head checked against the registry.
pub fn verify_hub_head(note: &str, registry: &Registry) -> Result<Head, HeadError> {
    let claimed = Head::peek(note.as_bytes())?;
    Head::open(
        note.as_bytes(),
        HUB_ORIGIN,
        &registry.hub_keys_at(claimed.time),
    )
}

/// A checkpoint's head checked against the registry: the checkpoint its
/// origin names, and the head.
pub fn verify_post_head(note: &str, registry: &Registry) -> Result<(String, Head), RecordError> {
    let claimed = Head::peek(note.as_bytes())?;
    let Some(checkpoint) = claimed
        .origin
        .strip_prefix(&checkpoint_origin(""))
        .map(str::to_owned)
    else {
        return Err(HeadError::WrongLog {
            expected: checkpoint_origin("…"),
            found: claimed.origin,
        }
        .into());
    };
    let keys = match registry.checkpoint_keys_at(&checkpoint, claimed.time) {
        Ok(k) => k,
        Err(e @ crate::registry::SignerError::OutsideWindow { .. }) => {
            // A retired key of this checkpoint, or a forgery? Say which.
            let all = registry.all_checkpoint_keys(&checkpoint);
            Head::open(note.as_bytes(), &claimed.origin, &all)?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if Head::open(note.as_bytes(), &claimed.origin, &keys).is_err() {
        let all = registry.all_checkpoint_keys(&checkpoint);
        if Head::open(note.as_bytes(), &claimed.origin, &all).is_ok() {
            // Signed by a key of this checkpoint that was not valid then.
            return Err(crate::registry::SignerError::OutsideWindow {
                id: format!("checkpoint {checkpoint}"),
                at: to_rfc3339(claimed.time),
            }
            .into());
        }
    }
    let head = Head::open(note.as_bytes(), &claimed.origin, &keys)?;
    Ok((checkpoint, head))
}

/// Signed heads a post has verified, so that the same note (a hub head
/// arriving in the feed, in a backfill reply and in every other post's
/// witness) costs one signature check, not one per arrival.
///
/// Design: a head is checked against keys valid at its own time, never at
/// the time it arrives, so a result holds for as long as the registry does;
/// the cache is emptied when the policy in force changes.
#[derive(Debug, Default)]
pub struct Verified {
    policy: Option<u64>,
    hub: std::collections::HashMap<String, Head>,
    post: std::collections::HashMap<String, (String, Head)>,
}

/// Heads kept verified at most, per kind (then forgotten, and checked again).
pub const VERIFIED_KEPT: usize = 256;

impl Verified {
    fn fresh(&mut self, policy: u64) {
        if self.policy != Some(policy) || self.hub.len() + self.post.len() > 2 * VERIFIED_KEPT {
            self.hub.clear();
            self.post.clear();
            self.policy = Some(policy);
        }
    }

    /// Heads remembered now.
    pub fn len(&self) -> usize {
        self.hub.len() + self.post.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`verify_hub_head`], remembered for the policy of version `policy`.
    pub fn hub_head(
        &mut self,
        note: &str,
        registry: &Registry,
        policy: u64,
    ) -> Result<Head, HeadError> {
        self.fresh(policy);
        if let Some(h) = self.hub.get(note) {
            return Ok(h.clone());
        }
        let h = verify_hub_head(note, registry)?;
        self.hub.insert(note.to_owned(), h.clone());
        Ok(h)
    }

    /// [`verify_post_head`], remembered for the policy of version `policy`.
    pub fn post_head(
        &mut self,
        note: &str,
        registry: &Registry,
        policy: u64,
    ) -> Result<(String, Head), RecordError> {
        self.fresh(policy);
        if let Some(h) = self.post.get(note) {
            return Ok(h.clone());
        }
        let h = verify_post_head(note, registry)?;
        self.post.insert(note.to_owned(), h.clone());
        Ok(h)
    }
}

/// A feed message, checked: its hub head, and the entries that verified.
#[derive(Debug)]
pub struct CheckedFeed {
    /// The hub's head.
    pub hub_head: Head,
    /// Its signed note.
    pub hub_note: String,
    /// Entries in the hub's log at that head, from their checkpoint's signed log.
    pub entries: Vec<VerifiedEntry>,
    /// Entries refused: (global number, reason code, why).
    pub refused: Vec<(u64, &'static str, String)>,
}

/// Checks a feed message against the registry. The hub head must verify
/// (or nothing does); each entry must be in the hub's log at that head
/// and in its checkpoint's log at a head that checkpoint's key signed.
pub fn check_feed(feed: &Feed, registry: &Registry) -> Result<CheckedFeed, HeadError> {
    check_feed_with(feed, registry, &mut Verified::default(), 0)
}

/// [`check_feed`], with heads verified before (under the policy of version `policy`) taken as such.
pub fn check_feed_with(
    feed: &Feed,
    registry: &Registry,
    verified: &mut Verified,
    policy: u64,
) -> Result<CheckedFeed, HeadError> {
    let hub_head = verified.hub_head(&feed.hub_head, registry, policy)?;
    // Each checkpoint head is verified once, not once per entry.
    let post_heads: Vec<Result<(String, Head), RecordError>> = feed
        .post_heads
        .iter()
        .map(|n| verified.post_head(n, registry, policy))
        .collect();
    let mut out = CheckedFeed {
        hub_head,
        hub_note: feed.hub_head.clone(),
        entries: Vec::with_capacity(feed.entries.len()),
        refused: Vec::new(),
    };
    for e in &feed.entries {
        let refuse = |code: &'static str, why: String| (e.g, code, why);
        if e.g == 0 || e.g > out.hub_head.size {
            out.refused.push(refuse(
                "not_included",
                format!(
                    "entry {} is outside the hub's log of {}",
                    e.g, out.hub_head.size
                ),
            ));
            continue;
        }
        if let Err(err) = merkle::verify_inclusion(
            &e.hub_proof,
            out.hub_head.size,
            &out.hub_head.root,
            e.g - 1,
            &e.leaf,
        ) {
            out.refused.push(refuse(
                "not_included",
                format!("entry {} is not in the hub's signed log: {err}", e.g),
            ));
            continue;
        }
        // Design: an entry whose origin does not verify holds no place:
        // one that did would let a holder of a hub key take global numbers
        // from genuine records (tests/sync_attacks.rs).
        let (checkpoint, head) = match &post_heads[e.post_head] {
            Ok(h) => h,
            Err(err) => {
                out.refused
                    .push(refuse(err.code(), format!("entry {}: {err}", e.g)));
                continue;
            }
        };
        match verify_in_post_log(feed, e, checkpoint, head, registry.skew()) {
            Ok(record) => out.entries.push(VerifiedEntry {
                g: e.g,
                record,
                proven: feed.proven(e),
            }),
            Err(err) => out
                .refused
                .push(refuse(err.code(), format!("entry {}: {err}", e.g))),
        }
    }
    Ok(out)
}

fn verify_in_post_log(
    feed: &Feed,
    e: &super::protocol::FeedEntry,
    checkpoint: &str,
    head: &Head,
    skew: i64,
) -> Result<ConsumptionRecord, RecordError> {
    let _ = feed;
    let rec = ConsumptionRecord::from_leaf(&e.leaf)?;
    if rec.checkpoint != checkpoint {
        return Err(HeadError::WrongLog {
            expected: checkpoint_origin(&rec.checkpoint),
            found: head.origin.clone(),
        }
        .into());
    }
    merkle::verify_inclusion(&e.post_proof, head.size, &head.root, e.post_index, &e.leaf)
        .map_err(|err: MerkleError| RecordError::NotIncluded(err))?;
    if rec.consumed_at > head.time.saturating_add(skew) {
        return Err(RecordError::AfterHead {
            at: to_rfc3339(rec.consumed_at),
            head_time: to_rfc3339(head.time),
        });
    }
    Ok(rec)
}

/// Most records a `double_use` alert's evidence may hold (each costs a signature check).
const EVIDENCE_MAX: usize = 64;

/// Checks a `double_use` alert's evidence and rebuilds the alert from it.
pub fn proven_double_use(
    alert: &Alert,
    registry: &Registry,
    now: UnixTime,
) -> Result<Alert, String> {
    proven_double_use_with(alert, registry, now, &mut Verified::default(), 0)
}

/// [`proven_double_use`], with heads verified before (under the policy of
/// version `policy`) taken as such.
pub fn proven_double_use_with(
    alert: &Alert,
    registry: &Registry,
    now: UnixTime,
    verified: &mut Verified,
    policy: u64,
) -> Result<Alert, String> {
    if alert.records.len() > EVIDENCE_MAX {
        return Err(format!(
            "{} evidence records; at most {EVIDENCE_MAX} are checked",
            alert.records.len()
        ));
    }
    let mut records = Vec::new();
    for (i, e) in alert.records.iter().enumerate() {
        let (rec, _) = e
            .proven
            .verify_with(registry, verified, policy)
            .map_err(|err| format!("evidence record {i}: {err}"))?;
        records.push((rec, e.proven.clone()));
    }
    let Some(license) = records.first().map(|r| r.0.license_id.clone()) else {
        return Err("a double-use alert without evidence".into());
    };
    if records.iter().any(|r| r.0.license_id != license) {
        return Err("the evidence names more than one license".into());
    }
    let mut uses: Vec<(&str, u64)> = records
        .iter()
        .map(|r| (r.0.checkpoint.as_str(), r.0.seq))
        .collect();
    uses.sort_unstable();
    uses.dedup();
    if uses.len() < 2 {
        return Err(format!(
            "the evidence shows license {license} consumed once, not twice"
        ));
    }
    Ok(crate::record::double_use_alert(&records, "hub", now))
}

/// An alert as JSON of at most `max` bytes: evidence records beyond what
/// fits are left out (the first two, which prove it, are kept), and so is
/// nothing else. The full alert stays where it was raised.
pub fn alert_json_within(alert: &Alert, max: usize) -> Vec<u8> {
    let json = serde_json::to_vec(alert).unwrap_or_default();
    if json.len() <= max || alert.records.len() <= 2 {
        return json;
    }
    let mut cut = alert.clone();
    while cut.records.len() > 2 {
        cut.records.pop();
        let json = serde_json::to_vec(&cut).unwrap_or_default();
        if json.len() <= max {
            return json;
        }
    }
    serde_json::to_vec(&cut).unwrap_or_default()
}

/// The `refused_record` alert for a refused sync message.
pub fn refused_alert(
    raised_by: &str,
    message: &str,
    reason: &str,
    detail: &str,
    held_back: u64,
    payload: &[u8],
    now: UnixTime,
) -> Alert {
    let also = if held_back > 0 {
        format!("; {held_back} more like it in the last minute")
    } else {
        String::new()
    };
    Alert {
        kind: AlertKind::RefusedRecord,
        checkpoint: raised_by.to_owned(),
        raised_at: to_rfc3339(now),
        declaration_id: None,
        license_id: None,
        reasons: Vec::new(),
        payload_sha256: Some(hex::encode(Sha256::digest(payload))),
        alert_id: None,
        records: Vec::new(),
        signer: None,
        fork: None,
        heads: Vec::new(),
        detail: Some(format!("{message} refused ({reason}): {detail}{also}")),
    }
}

/// The `log_inconsistent` alert: a log whose signed heads contradict each
/// other, with both heads (signed notes) as the evidence.
pub fn log_inconsistent_alert(
    raised_by: &str,
    detail: &str,
    heads: Vec<String>,
    now: UnixTime,
) -> Alert {
    let mut h = Sha256::new();
    h.update(b"permitgate-log-inconsistent-v1");
    for n in &heads {
        h.update((n.len() as u64).to_be_bytes());
        h.update(n.as_bytes());
    }
    Alert {
        kind: AlertKind::LogInconsistent,
        checkpoint: raised_by.to_owned(),
        raised_at: to_rfc3339(now),
        declaration_id: None,
        license_id: None,
        reasons: Vec::new(),
        payload_sha256: None,
        alert_id: Some(hex::encode(h.finalize())),
        records: Vec::new(),
        signer: None,
        fork: None,
        heads,
        detail: Some(detail.to_owned()),
    }
}
