//! Consumption records: a checkpoint's signed statement that it consumed a
//! license. COSE_Sign1, kid = checkpoint id, payload a CBOR map; anyone with
//! the checkpoint's public key can verify one.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::clock::{UnixTime, to_rfc3339};
use crate::codec;
use crate::token::cose;
use crate::verdict::{Alert, AlertKind};

/// The payload of a consumption record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumptionRecord {
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
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not a COSE_Sign1, or the signature does not verify.
    #[error("consumption record: {0}")]
    Signature(#[from] cose::CoseError),
    /// The payload does not decode.
    #[error("consumption record payload: {0}")]
    Payload(String),
    /// The kid and the payload name different checkpoints.
    #[error("consumption record signed as `{kid}` but names checkpoint `{named}`")]
    CheckpointMismatch {
        /// The signer.
        kid: String,
        /// The checkpoint in the payload.
        named: String,
    },
    /// The registry does not trust the signer at the record's time.
    #[error("consumption record: {0}")]
    Signer(#[from] crate::registry::SignerError),
}

impl RecordError {
    /// Short machine-readable name, for metrics, logs and alert throttling.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Signature(cose::CoseError::BadSignature) => "bad_signature",
            RecordError::Signature(_) | RecordError::Payload(_) => "unreadable",
            RecordError::CheckpointMismatch { .. } => "checkpoint_mismatch",
            RecordError::Signer(e) => e.code(),
        }
    }
}

impl ConsumptionRecord {
    /// Signs the record with the checkpoint's key.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        // A struct of strings, integers and byte arrays always encodes.
        let payload = codec::to_vec(self).unwrap_or_default();
        cose::sign(self.checkpoint.as_bytes(), payload, key)
    }

    /// Verifies a signed record with the key `key_for` gives for its kid.
    pub fn verify(
        signed: &[u8],
        key_for: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<ConsumptionRecord, RecordError> {
        read(signed, Some(&key_for))
    }

    /// Verifies a signed record against the registry: the checkpoint it
    /// names must have a key valid at the record's `consumed_at`, and one
    /// such key must have signed it.
    pub fn verify_registered(
        signed: &[u8],
        registry: &crate::registry::Registry,
    ) -> Result<ConsumptionRecord, RecordError> {
        let msg = cose::parse(signed)?;
        let rec: ConsumptionRecord =
            codec::from_slice(&msg.payload).map_err(|e| RecordError::Payload(e.to_string()))?;
        let kid = cose::kid_text(&msg.kid);
        if rec.checkpoint != kid {
            return Err(RecordError::CheckpointMismatch {
                kid,
                named: rec.checkpoint,
            });
        }
        let signed_by_one_of = |keys: &[VerifyingKey]| keys.iter().any(|k| msg.verify(k).is_ok());
        // Design: normally one key; two only at a rotation's handover.
        match registry.checkpoint_keys_at(&rec.checkpoint, rec.consumed_at) {
            Ok(keys) if signed_by_one_of(&keys) => return Ok(rec),
            Ok(_) | Err(crate::registry::SignerError::OutsideWindow { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Tell a retired (or not yet valid) key of this checkpoint from a forgery.
        if signed_by_one_of(&registry.all_checkpoint_keys(&rec.checkpoint)) {
            return Err(crate::registry::SignerError::OutsideWindow {
                id: format!("checkpoint {}", rec.checkpoint),
                at: to_rfc3339(rec.consumed_at),
            }
            .into());
        }
        Err(RecordError::Signature(cose::CoseError::BadSignature))
    }

    /// Reads a signed record without checking its signature, for records
    /// this process verified before it stored them.
    pub fn parse_unverified(signed: &[u8]) -> Result<ConsumptionRecord, RecordError> {
        read(signed, None::<&fn(&str) -> Option<VerifyingKey>>)
    }
}

/// Parses a record, checks the signature when `key_for` is given, and that
/// the signer and the named checkpoint agree.
fn read(
    signed: &[u8],
    key_for: Option<&impl Fn(&str) -> Option<VerifyingKey>>,
) -> Result<ConsumptionRecord, RecordError> {
    let msg = cose::parse(signed)?;
    let kid = cose::kid_text(&msg.kid);
    if let Some(key_for) = key_for {
        let key = key_for(&kid)
            .ok_or_else(|| RecordError::Payload(format!("no public key for checkpoint `{kid}`")))?;
        msg.verify(&key)?;
    }
    let rec: ConsumptionRecord =
        codec::from_slice(&msg.payload).map_err(|e| RecordError::Payload(e.to_string()))?;
    if rec.checkpoint != kid {
        return Err(RecordError::CheckpointMismatch {
            kid,
            named: rec.checkpoint,
        });
    }
    Ok(rec)
}

/// One signed record as alert evidence: what it says, and the COSE bytes
/// (hex) that anyone with the checkpoint's public key can verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The consuming checkpoint.
    pub checkpoint: String,
    /// Its sequence number there.
    pub seq: u64,
    /// The declaration that consumed the license.
    pub declaration_id: String,
    /// When, RFC 3339 UTC.
    pub consumed_at: String,
    /// The signed record, COSE_Sign1, hex.
    pub cose_hex: String,
}

/// The `double_use` alert for every record of one license (two or more).
///
/// Its `alert_id` depends only on the set of records, so the hub and each
/// checkpoint that detect the same double use raise the same alert.
pub fn double_use_alert(
    records: &[(ConsumptionRecord, Vec<u8>)],
    raised_by: &str,
    now: UnixTime,
) -> Alert {
    let mut sorted: Vec<&(ConsumptionRecord, Vec<u8>)> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.0.checkpoint, a.0.seq).cmp(&(&b.0.checkpoint, b.0.seq)));
    let mut h = Sha256::new();
    h.update(b"permitgate-double-use-v1");
    for (_, bytes) in &sorted {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
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
            .map(|(r, bytes)| Evidence {
                checkpoint: r.checkpoint.clone(),
                seq: r.seq,
                declaration_id: r.declaration_id.clone(),
                consumed_at: to_rfc3339(r.consumed_at),
                cose_hex: hex::encode(bytes),
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = crate::keys::generate();
        let rec = ConsumptionRecord {
            checkpoint: "post-7".into(),
            seq: 3,
            license_id: "LIC-1".into(),
            declaration_id: "D-1".into(),
            consumed_at: 1_760_000_000,
            token_sha256: [7; 32],
            declaration_sha256: [9; 32],
        };
        let signed = rec.sign(&key);
        let vk = key.verifying_key();
        let back = ConsumptionRecord::verify(&signed, |k| (k == "post-7").then_some(vk)).unwrap();
        assert_eq!(back, rec);
        let other = crate::keys::generate().verifying_key();
        assert!(ConsumptionRecord::verify(&signed, |_| Some(other)).is_err());
    }
}
