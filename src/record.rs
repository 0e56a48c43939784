//! Leaves of a checkpoint's log, and consumption records as they travel.
//!
//! Every verdict is a leaf of the checkpoint's Merkle log; a license
//! consumed adds a second leaf, the *consumption record*, which is also the
//! unit of sync: it goes to the hub as that leaf, with its inclusion proof
//! and the checkpoint's signed tree head ([`ProvenRecord`]). One signature
//! per commit batch covers every record in it.
//!
//! Leaves are CBOR maps with text keys; the first key, `kind`, says which
//! (`verdict` or `consumption`). A leaf is hashed as it was encoded by the
//! checkpoint (RFC 9162: SHA-256(0x00 ‖ leaf)); nobody re-encodes one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{UnixTime, to_rfc3339};
use crate::codec;
use crate::merkle::head::{Head, HeadError, checkpoint_origin};
use crate::merkle::{self, Hash, MerkleError};
use crate::registry::{Registry, SignerError};

use crate::verdict::{Alert, AlertKind};

/// The `kind` of a verdict leaf.
pub const KIND_VERDICT: &str = "verdict";
/// The `kind` of a consumption leaf.
pub const KIND_CONSUMPTION: &str = "consumption";

/// One declared item, as a consumption record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goods {
    /// HS code digits as declared.
    pub hs_code: String,
    /// Canonical element symbols declared.
    pub elements: Vec<String>,
    /// Net mass, kilograms.
    pub net_kg: f64,
}

/// A consumption record: a checkpoint consumed a license, for this shipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumptionRecord {
    /// Always [`KIND_CONSUMPTION`].
    pub kind: String,
    /// The consuming checkpoint.
    pub checkpoint: String,
    /// Per-checkpoint sequence number, 1, 2, 3…
    pub seq: u64,
    /// The consumed license.
    pub license_id: String,
    /// The declaration that consumed it.
    pub declaration_id: String,
    /// When, Unix seconds.
    pub consumed_at: UnixTime,
    /// SHA-256 of the license token's COSE bytes.
    #[serde(with = "serde_bytes32")]
    pub token_sha256: [u8; 32],
    /// SHA-256 of the declaration's canonical content.
    #[serde(with = "serde_bytes32")]
    pub declaration_sha256: [u8; 32],
    /// Exporter id (normalised).
    pub exporter: String,
    /// Consignee id (normalised).
    pub consignee: String,
    /// End user id (normalised).
    pub end_user: String,
    /// Destination country.
    pub destination: String,
    /// The goods declared.
    pub goods: Vec<Goods>,
}

/// `to_leaf` and `from_leaf` for a leaf type whose `kind` field names it.
macro_rules! leaf_codec {
    ($leaf:ident, $kind:ident) => {
        impl $leaf {
            /// The leaf bytes (CBOR).
            pub fn to_leaf(&self) -> Vec<u8> {
                codec::to_vec(self).unwrap_or_default()
            }

            /// Reads such a leaf (`None` for another kind or unreadable bytes).
            pub fn from_leaf(leaf: &[u8]) -> Option<$leaf> {
                codec::from_slice::<$leaf>(leaf)
                    .ok()
                    .filter(|v| v.kind == $kind)
            }
        }
    };
}

/// A verdict as a leaf of the checkpoint's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictLeaf {
    /// Always [`KIND_VERDICT`].
    pub kind: String,
    /// The audit row's id.
    pub audit_id: i64,
    /// When it was decided, Unix seconds.
    pub decided_at: UnixTime,
    /// SHA-256 (hex) of the declaration's canonical content, when it was readable.
    pub content_hash: Option<String>,
    /// The verdict JSON, exactly as stored and published.
    pub verdict: String,
}

/// The `kind` of an operator's confirmation of the clock.
pub const KIND_CLOCK_CONFIRMED: &str = "clock_confirmed";

/// An officer's confirmation that the clock is right, as a leaf: decisions
/// dated after it (by a clock that was once ahead) no longer hold later ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockConfirmedLeaf {
    /// Always [`KIND_CLOCK_CONFIRMED`].
    pub kind: String,
    /// The officer who confirmed.
    pub officer: String,
    /// Why, in their words.
    pub note: String,
    /// When, by the clock confirmed.
    pub at: UnixTime,
    /// The newest decision's time the ledger held then.
    pub newest_before: Option<UnixTime>,
}

leaf_codec!(ClockConfirmedLeaf, KIND_CLOCK_CONFIRMED);

/// The `kind` of an officer's action on an alert.
pub const KIND_ALERT_ACTION: &str = "alert_action";

/// An officer's action on an alert (acknowledged, assigned, closed), as a
/// leaf: the log says who worked which alert, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertActionLeaf {
    /// Always [`KIND_ALERT_ACTION`].
    pub kind: String,
    /// The alert's number in this ledger.
    pub alert: i64,
    /// `acknowledge`, `assign` or `close`.
    pub action: String,
    /// The officer who acted.
    pub officer: String,
    /// Their note (for `assign`: to whom).
    pub note: String,
    /// When.
    pub at: UnixTime,
}

leaf_codec!(AlertActionLeaf, KIND_ALERT_ACTION);

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The leaf is not a consumption record.
    #[error("consumption record: {0}")]
    Payload(String),
    /// The signed head is unreadable, of another log, or not signed by a key trusted for it.
    #[error("consumption record: {0}")]
    Head(#[from] HeadError),
    /// The registry does not trust the checkpoint at the head's time.
    #[error("consumption record: {0}")]
    Signer(#[from] SignerError),
    /// The record is not in the log the head commits to.
    #[error("consumption record: not in the checkpoint's signed log ({0})")]
    NotIncluded(#[from] MerkleError),
    /// The record claims a time after its head was signed.
    #[error("consumption record dated {at}, after the head that includes it ({head_time})")]
    AfterHead {
        /// The record's time.
        at: String,
        /// The head's time.
        head_time: String,
    },
}

impl RecordError {
    /// Short machine-readable name, for metrics, logs and alert throttling.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Payload(_) => "unreadable",
            RecordError::Head(HeadError::Unverified { .. }) => "bad_signature",
            RecordError::Head(HeadError::WrongLog { .. }) => "checkpoint_mismatch",
            RecordError::Head(HeadError::Malformed(_)) => "unreadable",
            RecordError::Signer(e) => e.code(),
            RecordError::NotIncluded(_) => "not_included",
            RecordError::AfterHead { .. } => "after_head",
        }
    }
}

impl ConsumptionRecord {
    /// The leaf bytes (CBOR).
    pub fn to_leaf(&self) -> Vec<u8> {
        // A struct of strings, numbers and byte arrays always encodes.
        codec::to_vec(self).unwrap_or_default()
    }

    /// Reads a consumption leaf.
    pub fn from_leaf(leaf: &[u8]) -> Result<ConsumptionRecord, RecordError> {
        let r: ConsumptionRecord =
            codec::from_slice(leaf).map_err(|e| RecordError::Payload(e.to_string()))?;
        if r.kind != KIND_CONSUMPTION {
            return Err(RecordError::Payload(format!(
                "a `{}` leaf, not a consumption record",
                crate::throttle::truncate(&r.kind, 40)
            )));
        }
        Ok(r)
    }
}

leaf_codec!(VerdictLeaf, KIND_VERDICT);

/// A consumption record with what proves where it comes from: its leaf,
/// its index in the checkpoint's log, an inclusion proof, and a signed
/// tree head of that log that the checkpoint's key signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenRecord {
    /// The consumption leaf (CBOR), hex in JSON.
    #[serde(with = "hex::serde")]
    pub leaf: Vec<u8>,
    /// Its index (0-based) in the checkpoint's log.
    pub index: u64,
    /// The checkpoint's signed tree head (C2SP signed note).
    pub head: String,
    /// The inclusion proof against that head, hashes in hex.
    #[serde(with = "hashes_hex")]
    pub proof: Vec<Hash>,
}

impl ProvenRecord {
    /// Verifies the record against the registry: the head is of the log of
    /// the checkpoint the record names, signed by a key of it valid at the
    /// head's time, and the leaf is in that log at `index`.
    pub fn verify(&self, registry: &Registry) -> Result<(ConsumptionRecord, Head), RecordError> {
        self.verify_with(registry, &mut crate::sync::verify::Verified::default(), 0)
    }

    /// [`ProvenRecord::verify`], with heads verified before (under the
    /// policy of version `policy`) taken as such.
    pub fn verify_with(
        &self,
        registry: &Registry,
        verified: &mut crate::sync::verify::Verified,
        policy: u64,
    ) -> Result<(ConsumptionRecord, Head), RecordError> {
        let rec = ConsumptionRecord::from_leaf(&self.leaf)?;
        let (checkpoint, head) = verified.post_head(&self.head, registry, policy)?;
        if checkpoint != rec.checkpoint {
            return Err(HeadError::WrongLog {
                expected: checkpoint_origin(&rec.checkpoint),
                found: head.origin,
            }
            .into());
        }
        merkle::verify_inclusion(&self.proof, head.size, &head.root, self.index, &self.leaf)?;
        if rec.consumed_at > head.time.saturating_add(registry.skew()) {
            return Err(RecordError::AfterHead {
                at: to_rfc3339(rec.consumed_at),
                head_time: to_rfc3339(head.time),
            });
        }
        Ok((rec, head))
    }
}

/// One record as alert evidence: what it says, and the proof that its
/// checkpoint's signed log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The consuming checkpoint.
    pub checkpoint: String,
    /// Its sequence number there.
    pub seq: u64,
    /// The declaration that consumed the license.
    pub declaration_id: String,
    /// When, RFC 3339 UTC.
    pub consumed_at: String,
    /// The record with its proof.
    pub proven: ProvenRecord,
}

/// The `double_use` alert for every record of one license (two or more).
///
/// Its `alert_id` depends only on the set of records (their leaves), so
/// the hub and each checkpoint that detect the same double use raise the
/// same alert, whatever heads prove them.
pub fn double_use_alert(
    records: &[(ConsumptionRecord, ProvenRecord)],
    raised_by: &str,
    now: UnixTime,
) -> Alert {
    let mut sorted: Vec<&(ConsumptionRecord, ProvenRecord)> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.0.checkpoint, a.0.seq).cmp(&(&b.0.checkpoint, b.0.seq)));
    sorted.dedup_by(|a, b| a.1.leaf == b.1.leaf);
    let mut h = Sha256::new();
    h.update(b"permitgate-double-use-v2");
    for (_, p) in &sorted {
        h.update((p.leaf.len() as u64).to_be_bytes());
        h.update(&p.leaf);
    }
    Alert {
        kind: AlertKind::DoubleUse,
        checkpoint: raised_by.to_owned(),
        raised_at: to_rfc3339(now),
        declaration_id: None,
        license_id: sorted.first().map(|r| r.0.license_id.clone()),
        reasons: Vec::new(),
        payload_sha256: None,
        alert_id: Some(hex::encode(h.finalize())),
        records: sorted
            .iter()
            .map(|(r, p)| Evidence {
                checkpoint: r.checkpoint.clone(),
                seq: r.seq,
                declaration_id: r.declaration_id.clone(),
                consumed_at: to_rfc3339(r.consumed_at),
                proven: p.clone(),
            })
            .collect(),
        signer: None,
        fork: None,
        heads: Vec::new(),
        detail: None,
    }
}

mod serde_bytes32 {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<[u8; 32], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Proof hashes as a JSON array of hex strings.
pub mod hashes_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::merkle::Hash;

    /// Serializes hashes as hex strings.
    pub fn serialize<S: Serializer>(p: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(p.iter().map(|h| hex::encode(h.0)))
    }

    /// Reads hex strings (at most [`crate::merkle::PROOF_MAX`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let raw: Vec<String> = Vec::deserialize(d)?;
        if raw.len() > crate::merkle::PROOF_MAX {
            return Err(serde::de::Error::custom("proof too long"));
        }
        raw.iter()
            .map(|s| {
                let b = hex::decode(s).map_err(serde::de::Error::custom)?;
                <[u8; 32]>::try_from(b.as_slice())
                    .map(Hash)
                    .map_err(|_| serde::de::Error::custom("a proof hash is not 32 bytes"))
            })
            .collect()
    }
}
