//! Evidence bundles: everything that proves how a license was used, in one
//! file anyone holding the authority's root key can check offline.
//!
//! A bundle is a COSE_Sign1 (kid = the exporting checkpoint) over a CBOR
//! map: the license id, who exported it and when, the authority's signed
//! policy bundle (whose registry names every key involved), and each
//! consumption record of the license with its inclusion proof in its
//! checkpoint's signed log and, where known, in the hub's signed national
//! log. The outer signature makes any changed byte fail; each record is
//! checked on its own against the registry.

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::clock::{UnixTime, to_rfc3339};
use crate::codec::{self, Value};
use crate::merkle::{self, Hash};
use crate::record::{ConsumptionRecord, ProvenRecord};
use crate::strict_key::StrictKey;
use crate::sync::verify::verify_hub_head;
use crate::token::cose;

/// The `format` field of a bundle.
pub const FORMAT: &str = "permitgate-evidence-v1";

/// A record's place in the hub's national log.
#[derive(Debug, Clone, PartialEq)]
pub struct HubInclusion {
    /// Global number (leaf index + 1).
    pub g: u64,
    /// The hub's signed head.
    pub head: String,
    /// The inclusion proof against it.
    pub proof: Vec<Hash>,
}

/// What a bundle holds, before its signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The license.
    pub license_id: String,
    /// The checkpoint that exported it.
    pub exported_by: String,
    /// When, Unix seconds.
    pub exported_at: UnixTime,
    /// The authority's signed policy bundle (COSE_Sign1).
    pub policy_bundle: Vec<u8>,
    /// Every record of the license, each with its proofs.
    pub records: Vec<(ProvenRecord, Option<HubInclusion>)>,
}

/// Why a bundle does not prove what it says.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Not a bundle.
    #[error("not an evidence bundle: {0}")]
    Malformed(String),
    /// The policy bundle is not the authority's.
    #[error("the policy in the bundle is not signed by this root key: {0}")]
    Policy(String),
    /// The outer signature does not verify.
    #[error(
        "the bundle's own signature does not verify with the key the policy gives `{0}`: it was changed after export"
    )]
    Signature(String),
    /// A record does not verify.
    #[error("record {index}: {why}")]
    Record {
        /// Which (0-based).
        index: usize,
        /// Why.
        why: String,
    },
}

fn proof_value(p: &[Hash]) -> Value {
    Value::Array(merkle::to_bytes(p).into_iter().map(Value::Bytes).collect())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Bundle {
    fn payload(&self) -> Vec<u8> {
        let records = self
            .records
            .iter()
            .map(|(p, hub)| {
                let mut m = vec![
                    (text("leaf"), Value::Bytes(p.leaf.clone())),
                    (text("index"), Value::Integer(p.index.into())),
                    (text("head"), text(&p.head)),
                    (text("proof"), proof_value(&p.proof)),
                ];
                if let Some(h) = hub {
                    m.push((
                        text("hub"),
                        Value::Map(vec![
                            (text("g"), Value::Integer(h.g.into())),
                            (text("head"), text(&h.head)),
                            (text("proof"), proof_value(&h.proof)),
                        ]),
                    ));
                }
                Value::Map(m)
            })
            .collect();
        codec::encode_value(&Value::Map(vec![
            (text("format"), text(FORMAT)),
            (text("license_id"), text(&self.license_id)),
            (text("exported_by"), text(&self.exported_by)),
            (text("exported_at"), Value::Integer(self.exported_at.into())),
            (
                text("policy_bundle"),
                Value::Bytes(self.policy_bundle.clone()),
            ),
            (text("records"), Value::Array(records)),
        ]))
    }

    /// The bundle, signed by the exporting checkpoint's key.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        cose::sign(self.exported_by.as_bytes(), self.payload(), key)
    }
}

/// One use of the license, as a verified bundle shows it.
#[derive(Debug, Clone)]
pub struct Use {
    /// The record.
    pub record: ConsumptionRecord,
    /// The size of the checkpoint's signed log that holds it, and when that head was signed.
    pub post_head: (u64, UnixTime),
    /// Its global number, the national log's size and the hub head's time, when shown.
    pub hub: Option<(u64, u64, UnixTime)>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone)]
pub struct Proven {
    /// The bundle.
    pub bundle: Bundle,
    /// Each use of the license.
    pub uses: Vec<Use>,
    /// The policy version whose registry vouched for the keys.
    pub policy_version: u64,
}

fn get<'a>(m: &'a [(Value, Value)], k: &str) -> Result<&'a Value, EvidenceError> {
    m.iter()
        .find(|(key, _)| matches!(key, Value::Text(t) if t == k))
        .map(|(_, v)| v)
        .ok_or_else(|| EvidenceError::Malformed(format!("no `{k}`")))
}

fn as_text(v: &Value, k: &str) -> Result<String, EvidenceError> {
    match v {
        Value::Text(t) => Ok(t.clone()),
        _ => Err(EvidenceError::Malformed(format!("`{k}` must be text"))),
    }
}

fn as_uint(v: &Value, k: &str) -> Result<u64, EvidenceError> {
    match v {
        Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| EvidenceError::Malformed(format!("`{k}` out of range")))
        }
        _ => Err(EvidenceError::Malformed(format!(
            "`{k}` must be an integer"
        ))),
    }
}

fn as_bytes(v: &Value, k: &str) -> Result<Vec<u8>, EvidenceError> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        _ => Err(EvidenceError::Malformed(format!("`{k}` must be bytes"))),
    }
}

fn as_proof(v: &Value, k: &str) -> Result<Vec<Hash>, EvidenceError> {
    let raw = match v {
        Value::Array(a) => a
            .iter()
            .map(|h| as_bytes(h, k))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(EvidenceError::Malformed(format!(
                "`{k}` must be a list of hashes"
            )));
        }
    };
    merkle::from_bytes(&raw).ok_or_else(|| EvidenceError::Malformed(format!("`{k}`: bad hashes")))
}

/// Reads a bundle's content without checking anything.
fn parse(payload: &[u8]) -> Result<Bundle, EvidenceError> {
    let Value::Map(m) =
        codec::decode_value(payload).map_err(|e| EvidenceError::Malformed(e.to_string()))?
    else {
        return Err(EvidenceError::Malformed("not a map".into()));
    };
    if as_text(get(&m, "format")?, "format")? != FORMAT {
        return Err(EvidenceError::Malformed(format!(
            "the format is not {FORMAT}"
        )));
    }
    let Value::Array(rs) = get(&m, "records")? else {
        return Err(EvidenceError::Malformed("`records` must be a list".into()));
    };
    let mut records = Vec::new();
    for r in rs {
        let Value::Map(r) = r else {
            return Err(EvidenceError::Malformed("a record must be a map".into()));
        };
        let hub = match r
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == "hub"))
        {
            Some((_, Value::Map(h))) => Some(HubInclusion {
                g: as_uint(get(h, "g")?, "hub.g")?,
                head: as_text(get(h, "head")?, "hub.head")?,
                proof: as_proof(get(h, "proof")?, "hub.proof")?,
            }),
            Some(_) => return Err(EvidenceError::Malformed("`hub` must be a map".into())),
            None => None,
        };
        records.push((
            ProvenRecord {
                leaf: as_bytes(get(r, "leaf")?, "leaf")?,
                index: as_uint(get(r, "index")?, "index")?,
                head: as_text(get(r, "head")?, "head")?,
                proof: as_proof(get(r, "proof")?, "proof")?,
            },
            hub,
        ));
    }
    Ok(Bundle {
        license_id: as_text(get(&m, "license_id")?, "license_id")?,
        exported_by: as_text(get(&m, "exported_by")?, "exported_by")?,
        exported_at: as_uint(get(&m, "exported_at")?, "exported_at")? as i64,
        policy_bundle: as_bytes(get(&m, "policy_bundle")?, "policy_bundle")?,
        records,
    })
}

/// Checks a bundle with nothing but the authority's root key.
pub fn verify(bytes: &[u8], root: &VerifyingKey) -> Result<Proven, EvidenceError> {
    let msg = cose::parse(bytes).map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    let bundle = parse(&msg.payload)?;
    let policy = crate::bundle::open(&bundle.policy_bundle, root)
        .map_err(|e| EvidenceError::Policy(e.to_string()))?;
    let registry = &policy.registry;
    let keys = registry
        .checkpoint_keys_at(&bundle.exported_by, bundle.exported_at)
        .map_err(|e| EvidenceError::Signature(format!("{} ({e})", bundle.exported_by)))?;
    if cose::kid_text(&msg.kid) != bundle.exported_by
        || !keys
            .iter()
            .any(|k| msg.verify(&StrictKey::from(*k)).is_ok())
    {
        return Err(EvidenceError::Signature(bundle.exported_by.clone()));
    }
    let mut uses = Vec::new();
    for (i, (p, hub)) in bundle.records.iter().enumerate() {
        let bad = |why: String| EvidenceError::Record { index: i, why };
        let (rec, head) = p.verify(registry).map_err(|e| bad(e.to_string()))?;
        if rec.license_id != bundle.license_id {
            return Err(bad(format!(
                "it is of license {}, not {}",
                rec.license_id, bundle.license_id
            )));
        }
        let in_hub = match hub {
            Some(h) => {
                let hh = verify_hub_head(&h.head, registry)
                    .map_err(|e| bad(format!("its hub head: {e}")))?;
                if h.g == 0 {
                    return Err(bad("hub entry 0 does not exist".into()));
                }
                merkle::verify_inclusion(&h.proof, hh.size, &hh.root, h.g - 1, &p.leaf)
                    .map_err(|e| bad(format!("not in the hub's signed log: {e}")))?;
                Some((h.g, hh.size, hh.time))
            }
            None => None,
        };
        uses.push(Use {
            record: rec,
            post_head: (head.size, head.time),
            hub: in_hub,
        });
    }
    Ok(Proven {
        bundle,
        uses,
        policy_version: policy.version,
    })
}

impl Proven {
    /// What the bundle proves, in plain words.
    pub fn describe(&self) -> String {
        let b = &self.bundle;
        let mut out = format!(
            "Evidence for license {}, exported by checkpoint {} at {}; keys vouched for by the authority's policy version {}.\n",
            b.license_id,
            b.exported_by,
            to_rfc3339(b.exported_at),
            self.policy_version
        );
        let mut checkpoints: Vec<(&str, u64)> = Vec::new();
        for Use {
            record: rec,
            post_head: (size, time),
            hub,
        } in &self.uses
        {
            out.push_str(&format!(
                "- Consumed at checkpoint {} by declaration {} at {}: record {} of that checkpoint, in its log of {} entries signed at {}",
                rec.checkpoint,
                rec.declaration_id,
                to_rfc3339(rec.consumed_at),
                rec.seq,
                size,
                to_rfc3339(*time)
            ));
            match hub {
                Some((g, hsize, htime)) => out.push_str(&format!(
                    "; entry {g} of the national log of {hsize} entries the hub signed at {}.\n",
                    to_rfc3339(*htime)
                )),
                None => out.push_str("; not (yet) shown in the national log.\n"),
            }
            out.push_str(&format!(
                "  Exporter {}, consignee {}, end user {}, destination {}.\n",
                rec.exporter, rec.consignee, rec.end_user, rec.destination
            ));
            let key = (rec.checkpoint.as_str(), rec.seq);
            if !checkpoints.contains(&key) {
                checkpoints.push(key);
            }
        }
        if checkpoints.len() > 1 {
            out.push_str(&format!(
                "DOUBLE USE: the license was consumed {} times, each proven by its checkpoint's signed log.\n",
                checkpoints.len()
            ));
        }
        out
    }
}
