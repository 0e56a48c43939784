//! Equivocation: one checkpoint's key signing two histories. It is
//! evidence, never a veto: both histories are kept, every consumption
//! either claims counts, and a `log_equivocation` alert carries what proves
//! it, checkable by anyone with the registry:
//!
//! - two heads of one size with different roots;
//! - a head, and a later head whose log had another root at the earlier
//!   head's size (that root and the consistency proof from it come along:
//!   [`Fork`]);
//! - two different records under one (checkpoint, number), each proven
//!   in a head that checkpoint's key signed.
//!
//! Pure: no I/O, the time passed in.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{UnixTime, to_rfc3339};
use crate::merkle::{self, Hash};
use crate::record::{ConsumptionRecord, Evidence, ProvenRecord};
use crate::registry::Registry;
use crate::sync::verify::verify_post_head;
use crate::verdict::{Alert, AlertKind};

/// The later log's root at the earlier head's size, and the proof that
/// the later head extends that root (and so not the earlier head's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    /// The root at the earlier size, hex.
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
    /// The consistency proof from it to the later head, hashes in hex.
    #[serde(with = "crate::record::hashes_hex")]
    pub proof: Vec<Hash>,
}

/// What proves that one key signed two histories.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidenced {
    /// Two signed heads of one size with different roots.
    Heads(String, String),
    /// A signed head, a later signed head, and the later log's root at the
    /// earlier size with the proof from it.
    Fork {
        /// The earlier head (signed note).
        earlier: String,
        /// The later head (signed note).
        later: String,
        /// What the later log had at the earlier size.
        fork: Fork,
    },
    /// Two different records under one number, each proven.
    Records(Box<(ProvenRecord, ProvenRecord)>),
}

/// The `log_equivocation` alert `raised_by` raises about `signer`'s key.
pub fn alert(signer: &str, evidence: &Evidenced, raised_by: &str, now: UnixTime) -> Alert {
    let mut h = Sha256::new();
    h.update(b"permitgate-equivocation-v1");
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    let (heads, records, fork, detail) = match evidence {
        Evidenced::Heads(a, b) => {
            let mut pair = [a.as_str(), b.as_str()];
            pair.sort();
            pair.iter().for_each(|n| part(n.as_bytes()));
            (
                pair.iter().map(|n| (*n).to_owned()).collect(),
                Vec::new(),
                None,
                format!(
                    "the key of checkpoint `{signer}` signed two heads of one size with different roots"
                ),
            )
        }
        Evidenced::Fork {
            earlier,
            later,
            fork,
        } => {
            part(earlier.as_bytes());
            part(later.as_bytes());
            part(&fork.root);
            (
                vec![earlier.clone(), later.clone()],
                Vec::new(),
                Some(fork.clone()),
                format!(
                    "the key of checkpoint `{signer}` signed a head, and a later head of a log that does not extend it"
                ),
            )
        }
        Evidenced::Records(pair) => {
            let mut two = [&pair.0, &pair.1];
            two.sort_by(|a, b| a.leaf.cmp(&b.leaf));
            two.iter().for_each(|p| part(&p.leaf));
            let records: Vec<Evidence> = two
                .iter()
                .filter_map(|p| {
                    let r = ConsumptionRecord::from_leaf(&p.leaf).ok()?;
                    Some(Evidence {
                        checkpoint: r.checkpoint,
                        seq: r.seq,
                        declaration_id: r.declaration_id,
                        consumed_at: to_rfc3339(r.consumed_at),
                        proven: (*p).clone(),
                    })
                })
                .collect();
            let seq = records.first().map(|r| r.seq).unwrap_or(0);
            (
                Vec::new(),
                records,
                None,
                format!(
                    "the key of checkpoint `{signer}` signed two different records under number {seq}; both count as uses of their licenses"
                ),
            )
        }
    };
    Alert {
        kind: AlertKind::LogEquivocation,
        checkpoint: raised_by.to_owned(),
        raised_at: to_rfc3339(now),
        declaration_id: None,
        license_id: None,
        reasons: Vec::new(),
        payload_sha256: None,
        alert_id: Some(hex::encode(h.finalize())),
        records,
        signer: Some(signer.to_owned()),
        fork,
        heads,
        detail: Some(detail),
    }
}

/// The `log_equivocation` alert a checkpoint raises for itself when a head
/// under its own key is not of its log (`detail` says how it saw it). Its
/// proof is the checkpoint's own log, so it is for its officers: it is
/// never passed on, and [`verify`] does not take it.
pub fn foreign_head(checkpoint: &str, note: &str, detail: &str, now: UnixTime) -> Alert {
    let mut h = Sha256::new();
    h.update(b"permitgate-foreign-head-v1");
    h.update(note.as_bytes());
    Alert {
        kind: AlertKind::LogEquivocation,
        checkpoint: checkpoint.to_owned(),
        raised_at: to_rfc3339(now),
        declaration_id: None,
        license_id: None,
        reasons: Vec::new(),
        payload_sha256: None,
        alert_id: Some(hex::encode(h.finalize())),
        records: Vec::new(),
        signer: Some(checkpoint.to_owned()),
        fork: None,
        heads: vec![note.to_owned()],
        detail: Some(detail.to_owned()),
    }
}

/// Checks a `log_equivocation` alert's evidence against the registry and
/// rebuilds the alert from it (as raised by `raised_by`): what it claims
/// must follow from the signatures and proofs it carries.
pub fn verify(
    a: &Alert,
    registry: &Registry,
    raised_by: &str,
    now: UnixTime,
) -> Result<Alert, String> {
    let signer = a
        .signer
        .as_deref()
        .ok_or("a log_equivocation alert names no signer")?;
    let evidence = if a.records.len() == 2 && a.heads.is_empty() {
        let mut seen = Vec::new();
        for (i, e) in a.records.iter().enumerate() {
            let (rec, _) = e
                .proven
                .verify(registry)
                .map_err(|err| format!("evidence record {i}: {err}"))?;
            seen.push(rec);
        }
        if seen[0].checkpoint != signer || seen[1].checkpoint != signer {
            return Err(format!("the records are not both `{signer}`'s"));
        }
        if seen[0].seq != seen[1].seq || a.records[0].proven.leaf == a.records[1].proven.leaf {
            return Err("the records are not two different records under one number".into());
        }
        Evidenced::Records(Box::new((
            a.records[0].proven.clone(),
            a.records[1].proven.clone(),
        )))
    } else if a.heads.len() == 2 && a.records.is_empty() {
        let mut heads = Vec::new();
        for (i, n) in a.heads.iter().enumerate() {
            let (cp, h) = verify_post_head(n, registry).map_err(|e| format!("head {i}: {e}"))?;
            if cp != signer {
                return Err(format!("head {i} is `{cp}`'s, not `{signer}`'s"));
            }
            heads.push(h);
        }
        match &a.fork {
            None if heads[0].size == heads[1].size && heads[0].root != heads[1].root => {
                Evidenced::Heads(a.heads[0].clone(), a.heads[1].clone())
            }
            None => return Err("the two heads do not contradict each other".into()),
            Some(fork) => {
                let (earlier, later) = (&heads[0], &heads[1]);
                // Design: any root "extends" to anything from size 0: a fork
                // from an empty log proves nothing.
                if earlier.size == 0 || earlier.size >= later.size || fork.root == earlier.root.0 {
                    return Err("the fork does not contradict the earlier head".into());
                }
                merkle::verify_consistency(
                    &fork.proof,
                    earlier.size,
                    &Hash(fork.root),
                    later.size,
                    &later.root,
                )
                .map_err(|e| format!("the fork's proof: {e}"))?;
                Evidenced::Fork {
                    earlier: a.heads[0].clone(),
                    later: a.heads[1].clone(),
                    fork: fork.clone(),
                }
            }
        }
    } else {
        return Err("a log_equivocation alert carries two heads or two records".into());
    };
    Ok(alert(signer, &evidence, raised_by, now))
}

#[cfg(test)]
mod tests;
