//! The sync messages between checkpoints and the hub, as CBOR.
//!
//! Every payload is a CBOR map with text keys, so other tools can produce
//! and read them; unknown keys are ignored, missing or mistyped ones refused.
//! Acknowledgements are sealed by the hub, backfill requests by the asking
//! checkpoint: each is a COSE_Sign1 (kid = the hub key's id, or the
//! checkpoint id) over the payload, opened only with a key the registry
//! trusts now. Records and feed messages are not sealed: what they carry
//! is proven by signed tree heads and inclusion proofs
//! ([`crate::record::ProvenRecord`], [`crate::merkle`]).

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::clock::UnixTime;
use crate::codec::{self, Value};
use crate::merkle::{self, Hash};
use crate::registry::{Registry, SignerError};
use crate::strict_key::StrictKey;
use crate::token::cose::{self, CoseError};

/// A sync message that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("sync message: {0}")]
pub struct ProtocolError(String);

/// Why a sealed sync message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The payload is not the message it should be.
    #[error(transparent)]
    Unreadable(#[from] ProtocolError),
    /// Not a COSE_Sign1, or the signature does not verify.
    #[error("sync message: {0}")]
    Cose(#[from] CoseError),
    /// The registry does not trust the signer now.
    #[error("sync message: {0}")]
    Signer(#[from] SignerError),
    /// Signed by one checkpoint on behalf of another.
    #[error("sync message signed by `{signer}` speaks for `{named}`")]
    WrongSigner {
        /// Who signed it.
        signer: String,
        /// Who it names.
        named: String,
    },
}

impl OpenError {
    /// Short machine-readable name, for metrics, logs and alert throttling.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Cose(CoseError::BadSignature) => "bad_signature",
            OpenError::Unreadable(_) | OpenError::Cose(_) => "unreadable",
            OpenError::Signer(e) => e.code(),
            OpenError::WrongSigner { .. } => "wrong_signer",
        }
    }
}

/// Seals `payload` as a COSE_Sign1 with `kid`.
fn seal(kid: &str, payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    cose::sign(kid.as_bytes(), payload, key)
}

/// Opens a sealed message: the kid, and the payload if one of the keys
/// `keys_for(kid)` gives verifies it.
fn open(
    bytes: &[u8],
    keys_for: impl Fn(&str) -> Result<Vec<VerifyingKey>, SignerError>,
) -> Result<(String, Vec<u8>), OpenError> {
    let msg = cose::parse(bytes)?;
    let kid = cose::kid_text(&msg.kid);
    let keys = keys_for(&kid)?;
    if keys
        .iter()
        .any(|k| msg.verify(&StrictKey::from(*k)).is_ok())
    {
        Ok((kid, msg.payload))
    } else {
        Err(OpenError::Cose(CoseError::BadSignature))
    }
}

/// Sealed messages a receiver has opened, by the SHA-256 of their bytes:
/// the same bytes again (a replay, a redelivery) cost a hash and a look at
/// the registry, not a signature check, so a replay flood stays cheap.
///
/// Design: what a seal proves does not change with time except whether
/// the signer's key is still valid, which is checked again on every hit;
/// the cache is emptied when the policy in force changes.
#[derive(Debug, Default)]
pub struct Opened {
    policy: Option<u64>,
    seen: std::collections::HashMap<[u8; 32], String>,
    order: std::collections::VecDeque<[u8; 32]>,
}

/// Sealed messages remembered as opened.
pub const OPENED_KEPT: usize = 256;

impl Opened {
    /// Messages remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// [`Ack::open`], remembered for the policy of version `policy`.
    pub fn ack(
        &mut self,
        bytes: &[u8],
        registry: &Registry,
        now: UnixTime,
        policy: u64,
    ) -> Result<Ack, OpenError> {
        use sha2::Digest;
        if self.policy != Some(policy) {
            self.seen.clear();
            self.order.clear();
            self.policy = Some(policy);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if let Some(kid) = self.seen.get(&digest) {
            registry.hub_key_at(kid, now)?;
            return Ok(Ack::decode(&cose::parse(bytes)?.payload)?);
        }
        let msg = cose::parse(bytes)?;
        let kid = cose::kid_text(&msg.kid);
        let ack = Ack::open(bytes, registry, now)?;
        if self.order.len() >= OPENED_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(digest, kid);
        self.order.push_back(digest);
        Ok(ack)
    }
}

/// Most records or feed entries in one message.
pub const BATCH_MAX: usize = 500;

/// Largest consumption record (a leaf) any part makes or accepts, bytes.
/// A genuine one is well under 2 KiB; a gate refuses a declaration whose
/// record would be larger (about 1,200 item lines).
pub const LEAF_MAX: usize = 64 * 1024;

/// Largest sync message any part makes or accepts, bytes. Every message is
/// cut below it (by count and by bytes), far below the shipped brokers'
/// `message_size_limit` (16,000,000) and the clients' Maximum Packet Size
/// (16 MiB), so no message anyone can sign is too large for a pipe.
pub const MESSAGE_MAX: usize = 1 << 20;

/// Largest sealed request (a backfill request) the hub reads, bytes.
pub const REQUEST_MAX: usize = 4096;

/// The proof that a checkpoint's new head extends its log at an earlier size.
#[derive(Debug, Clone, PartialEq)]
pub struct Consistency {
    /// The earlier size.
    pub from: u64,
    /// The log's root at that size, as the new head's log has it: with
    /// it, a proof that verifies shows which root the log had then, so a
    /// head of that size with another root is proven a fork.
    pub root: Option<Hash>,
    /// The consistency proof.
    pub proof: Vec<Hash>,
}

/// Checkpoint → hub: consumption leaves of its log, each with its
/// inclusion proof against one signed tree head.
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    /// The checkpoint's signed tree head (C2SP signed note).
    pub head: String,
    /// The proof that this head extends the checkpoint's head the hub holds.
    pub consistency: Option<Consistency>,
    /// (leaf index, leaf, inclusion proof), oldest first.
    pub records: Vec<(u64, Vec<u8>, Vec<Hash>)>,
}

/// Hub → checkpoint: the highest number up to which the hub holds every
/// record of it, and the newest of its signed heads the hub holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The checkpoint acknowledged.
    pub checkpoint: String,
    /// Records 1..=contiguous are stored at the hub.
    pub contiguous: u64,
    /// The checkpoint's newest signed tree head the hub holds.
    pub post_head: Option<String>,
    /// Records were refused for want of a consistency proof from `post_head`: send them again.
    pub resend: bool,
    /// When the hub signed it, Unix seconds.
    pub issued_at: UnixTime,
}

/// One entry of the hub's national log.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    /// Global number (the leaf index in the hub's log plus one).
    pub g: u64,
    /// Which of the message's `post_heads` proves the record's origin.
    pub post_head: usize,
    /// The record's leaf index in its checkpoint's log.
    pub post_index: u64,
    /// The consumption leaf.
    pub leaf: Vec<u8>,
    /// Its inclusion proof in the checkpoint's log.
    pub post_proof: Vec<Hash>,
    /// Its inclusion proof in the hub's log at `hub_head`.
    pub hub_proof: Vec<Hash>,
}

/// Hub → checkpoints: stored records in the hub's global order, proven
/// against the hub's signed tree head and their checkpoints' heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// The hub's signed tree head (C2SP signed note).
    pub hub_head: String,
    /// The checkpoints' signed heads the entries refer to.
    pub post_heads: Vec<String>,
    /// Entries, ascending by `g`.
    pub entries: Vec<FeedEntry>,
    /// In a backfill reply: the hub's current time, sealed ([`HubTime`]).
    pub time: Option<Vec<u8>>,
}

/// Hub → all (retained, and the hub's last will): whether it is up. A
/// checkpoint that sees it come back sends what waits at once.
#[derive(Debug, Clone, PartialEq)]
pub struct HubStatus {
    /// `online` or `offline`.
    pub state: String,
    /// The hub key's id (which hub process).
    pub kid: String,
    /// When it said so.
    pub issued_at: UnixTime,
}

impl HubStatus {
    /// The status a hub publishes when it connects.
    pub fn online(kid: &str, now: UnixTime) -> HubStatus {
        HubStatus {
            state: "online".into(),
            kid: kid.into(),
            issued_at: now,
        }
    }

    /// The status a hub leaves behind (on shutdown, and as its last will).
    pub fn offline(kid: &str, now: UnixTime) -> HubStatus {
        HubStatus {
            state: "offline".into(),
            kid: kid.into(),
            issued_at: now,
        }
    }

    /// `{"state": text, "kid": text, "issued_at": int}`, sealed by the hub.
    pub fn seal(&self, kid: &str, key: &SigningKey) -> Vec<u8> {
        seal(
            kid,
            map(vec![
                ("state", Value::Text(self.state.clone())),
                ("kid", Value::Text(self.kid.clone())),
                ("issued_at", Value::Integer(self.issued_at.into())),
            ]),
            key,
        )
    }

    /// Opens it with a hub key the registry trusts at `now`.
    pub fn open(bytes: &[u8], registry: &Registry, now: UnixTime) -> Result<HubStatus, OpenError> {
        let (_, payload) = open(bytes, |kid| registry.hub_key_at(kid, now).map(|k| vec![k]))?;
        let m = decode_map(&payload)?;
        Ok(HubStatus {
            state: text(field(&m, "state")?, "state")?,
            kid: text(field(&m, "kid")?, "kid")?,
            issued_at: int(field(&m, "issued_at")?, "issued_at")?,
        })
    }
}

/// Hub → one checkpoint, in a backfill reply: the hub's current time, for
/// the request that asked (named by the time the checkpoint put in it).
#[derive(Debug, Clone, PartialEq)]
pub struct HubTime {
    /// The checkpoint that asked.
    pub checkpoint: String,
    /// The `issued_at` of its request.
    pub asked_at: UnixTime,
    /// The hub's clock when it answered.
    pub hub_time: UnixTime,
}

impl HubTime {
    /// `{"checkpoint": text, "asked_at": int, "hub_time": int}`, sealed by the hub.
    pub fn seal(&self, kid: &str, key: &SigningKey) -> Vec<u8> {
        seal(
            kid,
            map(vec![
                ("checkpoint", Value::Text(self.checkpoint.clone())),
                ("asked_at", Value::Integer(self.asked_at.into())),
                ("hub_time", Value::Integer(self.hub_time.into())),
            ]),
            key,
        )
    }

    /// Opens it with a hub key the registry trusts at `now`.
    pub fn open(bytes: &[u8], registry: &Registry, now: UnixTime) -> Result<HubTime, OpenError> {
        let (_, payload) = open(bytes, |kid| registry.hub_key_at(kid, now).map(|k| vec![k]))?;
        let m = decode_map(&payload)?;
        Ok(HubTime {
            checkpoint: text(field(&m, "checkpoint")?, "checkpoint")?,
            asked_at: int(field(&m, "asked_at")?, "asked_at")?,
            hub_time: int(field(&m, "hub_time")?, "hub_time")?,
        })
    }
}

/// Checkpoint → all: the newest hub head it verified (retained), so every
/// checkpoint can check that the hub shows all of them one history.
pub type Witness = String;

/// Checkpoint → hub: send me the feed after this global number.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    /// Who asks (the reply goes to its topic).
    pub checkpoint: String,
    /// The asker holds every entry up to this one.
    pub after: u64,
    /// Most entries wanted.
    pub limit: u32,
    /// When the checkpoint signed it, Unix seconds.
    pub issued_at: UnixTime,
    /// The asker's count of its requests: two genuine requests are never
    /// the same bytes, so the same bytes again are a replay.
    pub nonce: u64,
}

fn map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    codec::encode_value(&Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    ))
}

fn int(v: &Value, key: &str) -> Result<i64, ProtocolError> {
    match v {
        Value::Integer(i) => {
            i64::try_from(*i).map_err(|_| ProtocolError(format!("`{key}` out of range")))
        }
        _ => Err(ProtocolError(format!("`{key}` must be an integer"))),
    }
}

fn proof_value(p: &[Hash]) -> Value {
    Value::Array(merkle::to_bytes(p).into_iter().map(Value::Bytes).collect())
}

fn proof(v: &Value, key: &str) -> Result<Vec<Hash>, ProtocolError> {
    let raw = match v {
        Value::Array(a) => a
            .iter()
            .map(|h| bytes(h, key))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(ProtocolError(format!("`{key}` must be an array of hashes"))),
    };
    merkle::from_bytes(&raw).ok_or_else(|| {
        ProtocolError(format!(
            "`{key}`: hashes must be 32 bytes, at most {}",
            merkle::PROOF_MAX
        ))
    })
}

fn optional<'a>(m: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
        .filter(|v| !matches!(v, Value::Null))
}

fn decode_map(bytes: &[u8]) -> Result<Vec<(Value, Value)>, ProtocolError> {
    match codec::decode_value(bytes).map_err(|e| ProtocolError(e.to_string()))? {
        Value::Map(m) => Ok(m),
        _ => Err(ProtocolError("not a CBOR map".into())),
    }
}

fn field<'a>(m: &'a [(Value, Value)], key: &str) -> Result<&'a Value, ProtocolError> {
    m.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
        .ok_or_else(|| ProtocolError(format!("missing `{key}`")))
}

fn uint(v: &Value, key: &str) -> Result<u64, ProtocolError> {
    match v {
        Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| ProtocolError(format!("`{key}` out of range")))
        }
        _ => Err(ProtocolError(format!(
            "`{key}` must be an unsigned integer"
        ))),
    }
}

fn text(v: &Value, key: &str) -> Result<String, ProtocolError> {
    match v {
        Value::Text(t) => Ok(t.clone()),
        _ => Err(ProtocolError(format!("`{key}` must be text"))),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], ProtocolError> {
    match v {
        Value::Array(a) if a.len() <= BATCH_MAX => Ok(a),
        Value::Array(_) => Err(ProtocolError(format!(
            "`{key}` holds more than {BATCH_MAX}"
        ))),
        _ => Err(ProtocolError(format!("`{key}` must be an array"))),
    }
}

fn bytes(v: &Value, key: &str) -> Result<Vec<u8>, ProtocolError> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        _ => Err(ProtocolError(format!("`{key}` must be a byte string"))),
    }
}

impl Records {
    /// `{"head": text, "consistency": {"from": uint, "root": bstr?, "proof": [bstr]}?, "records": [[uint, bstr, [bstr]]…]}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries = vec![("head", Value::Text(self.head.clone()))];
        if let Some(c) = &self.consistency {
            let mut m = vec![(Value::Text("from".into()), Value::Integer(c.from.into()))];
            if let Some(r) = &c.root {
                m.push((Value::Text("root".into()), Value::Bytes(r.0.to_vec())));
            }
            m.push((Value::Text("proof".into()), proof_value(&c.proof)));
            entries.push(("consistency", Value::Map(m)));
        }
        entries.push((
            "records",
            Value::Array(
                self.records
                    .iter()
                    .map(|(i, leaf, p)| {
                        Value::Array(vec![
                            Value::Integer((*i).into()),
                            Value::Bytes(leaf.clone()),
                            proof_value(p),
                        ])
                    })
                    .collect(),
            ),
        ));
        map(entries)
    }

    /// Reads a `Records` message.
    pub fn decode(b: &[u8]) -> Result<Records, ProtocolError> {
        let m = decode_map(b)?;
        let consistency = match optional(&m, "consistency") {
            Some(Value::Map(c)) => Some(Consistency {
                from: uint(field(c, "from")?, "consistency.from")?,
                root: optional(c, "root")
                    .map(|r| {
                        <[u8; 32]>::try_from(bytes(r, "consistency.root")?.as_slice())
                            .map(Hash)
                            .map_err(|_| {
                                ProtocolError("`consistency.root` must be 32 bytes".into())
                            })
                    })
                    .transpose()?,
                proof: proof(field(c, "proof")?, "consistency.proof")?,
            }),
            Some(_) => return Err(ProtocolError("`consistency` must be a map".into())),
            None => None,
        };
        let records = array(field(&m, "records")?, "records")?
            .iter()
            .map(|e| match e {
                Value::Array(r) if r.len() == 3 => Ok((
                    uint(&r[0], "records")?,
                    bytes(&r[1], "records")?,
                    proof(&r[2], "records")?,
                )),
                _ => Err(ProtocolError(
                    "`records` items must be [index, leaf, proof]".into(),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Records {
            head: text(field(&m, "head")?, "head")?,
            consistency,
            records,
        })
    }
}

impl Ack {
    /// `{"checkpoint": text, "contiguous": uint, "post_head": text?, "resend": bool, "issued_at": int}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = vec![
            ("checkpoint", Value::Text(self.checkpoint.clone())),
            ("contiguous", Value::Integer(self.contiguous.into())),
        ];
        if let Some(h) = &self.post_head {
            e.push(("post_head", Value::Text(h.clone())));
        }
        e.push(("resend", Value::Bool(self.resend)));
        e.push(("issued_at", Value::Integer(self.issued_at.into())));
        map(e)
    }

    /// Reads an `Ack` payload.
    pub fn decode(b: &[u8]) -> Result<Ack, ProtocolError> {
        let m = decode_map(b)?;
        Ok(Ack {
            checkpoint: text(field(&m, "checkpoint")?, "checkpoint")?,
            contiguous: uint(field(&m, "contiguous")?, "contiguous")?,
            post_head: optional(&m, "post_head")
                .map(|v| text(v, "post_head"))
                .transpose()?,
            resend: matches!(optional(&m, "resend"), Some(Value::Bool(true))),
            issued_at: int(field(&m, "issued_at")?, "issued_at")?,
        })
    }

    /// The acknowledgement as the hub sends it, sealed with its key `kid`.
    pub fn seal(&self, kid: &str, key: &SigningKey) -> Vec<u8> {
        seal(kid, self.encode(), key)
    }

    /// Opens a sealed acknowledgement with a hub key the registry trusts at `now`.
    pub fn open(bytes: &[u8], registry: &Registry, now: UnixTime) -> Result<Ack, OpenError> {
        let (_, payload) = open(bytes, |kid| registry.hub_key_at(kid, now).map(|k| vec![k]))?;
        Ok(Ack::decode(&payload)?)
    }
}

impl Feed {
    /// `{"hub_head": text, "post_heads": [text], "entries": [[g, head, index, leaf, [bstr], [bstr]]…], "time": bstr?}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![
            ("hub_head", Value::Text(self.hub_head.clone())),
            (
                "post_heads",
                Value::Array(self.post_heads.iter().cloned().map(Value::Text).collect()),
            ),
            (
                "entries",
                Value::Array(
                    self.entries
                        .iter()
                        .map(|e| {
                            Value::Array(vec![
                                Value::Integer(e.g.into()),
                                Value::Integer((e.post_head as u64).into()),
                                Value::Integer(e.post_index.into()),
                                Value::Bytes(e.leaf.clone()),
                                proof_value(&e.post_proof),
                                proof_value(&e.hub_proof),
                            ])
                        })
                        .collect(),
                ),
            ),
        ];
        if let Some(t) = &self.time {
            m.push(("time", Value::Bytes(t.clone())));
        }
        map(m)
    }

    /// Reads a `Feed` message (nothing in it is verified yet).
    pub fn decode(b: &[u8]) -> Result<Feed, ProtocolError> {
        let m = decode_map(b)?;
        let post_heads: Vec<String> = array(field(&m, "post_heads")?, "post_heads")?
            .iter()
            .map(|v| text(v, "post_heads"))
            .collect::<Result<_, _>>()?;
        let entries = array(field(&m, "entries")?, "entries")?
            .iter()
            .map(|e| match e {
                Value::Array(r) if r.len() == 6 => {
                    let post_head = uint(&r[1], "entries")? as usize;
                    if post_head >= post_heads.len() {
                        return Err(ProtocolError(
                            "an entry names a post head the message does not carry".into(),
                        ));
                    }
                    Ok(FeedEntry {
                        g: uint(&r[0], "entries")?,
                        post_head,
                        post_index: uint(&r[2], "entries")?,
                        leaf: bytes(&r[3], "entries")?,
                        post_proof: proof(&r[4], "entries")?,
                        hub_proof: proof(&r[5], "entries")?,
                    })
                }
                _ => Err(ProtocolError(
                    "`entries` items must be [g, post_head, post_index, leaf, post_proof, hub_proof]"
                        .into(),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Feed {
            hub_head: text(field(&m, "hub_head")?, "hub_head")?,
            post_heads,
            entries,
            time: optional(&m, "time").map(|v| bytes(v, "time")).transpose()?,
        })
    }

    /// Entry `e` as a record proven by its checkpoint's head.
    pub fn proven(&self, e: &FeedEntry) -> crate::record::ProvenRecord {
        crate::record::ProvenRecord {
            leaf: e.leaf.clone(),
            index: e.post_index,
            head: self.post_heads[e.post_head].clone(),
            proof: e.post_proof.clone(),
        }
    }
}

impl Backfill {
    /// `{"checkpoint": text, "after": uint, "limit": uint, "issued_at": int, "nonce": uint}`.
    pub fn encode(&self) -> Vec<u8> {
        map(vec![
            ("checkpoint", Value::Text(self.checkpoint.clone())),
            ("after", Value::Integer(self.after.into())),
            ("limit", Value::Integer(self.limit.into())),
            ("issued_at", Value::Integer(self.issued_at.into())),
            ("nonce", Value::Integer(self.nonce.into())),
        ])
    }

    /// Reads a `Backfill` payload.
    pub fn decode(b: &[u8]) -> Result<Backfill, ProtocolError> {
        let m = decode_map(b)?;
        let limit = uint(field(&m, "limit")?, "limit")?;
        Ok(Backfill {
            checkpoint: text(field(&m, "checkpoint")?, "checkpoint")?,
            after: uint(field(&m, "after")?, "after")?,
            limit: limit.min(BATCH_MAX as u64) as u32,
            issued_at: int(field(&m, "issued_at")?, "issued_at")?,
            nonce: optional(&m, "nonce")
                .map(|v| uint(v, "nonce"))
                .transpose()?
                .unwrap_or(0),
        })
    }

    /// The request as the checkpoint sends it, sealed with its own key.
    pub fn seal(&self, key: &SigningKey) -> Vec<u8> {
        seal(&self.checkpoint, self.encode(), key)
    }

    /// Opens a sealed request with the key the registry trusts at `now` for the checkpoint that signed it.
    pub fn open(bytes: &[u8], registry: &Registry, now: UnixTime) -> Result<Backfill, OpenError> {
        let (signer, payload) = open(bytes, |kid| registry.checkpoint_keys_at(kid, now))?;
        let req = Backfill::decode(&payload)?;
        if req.checkpoint != signer {
            return Err(OpenError::WrongSigner {
                signer,
                named: req.checkpoint,
            });
        }
        Ok(req)
    }
}

/// The sync topics under a prefix.
#[derive(Debug, Clone)]
pub struct SyncTopics {
    prefix: String,
}

impl SyncTopics {
    /// Topics under `prefix`.
    pub fn new(prefix: &str) -> SyncTopics {
        SyncTopics {
            prefix: prefix.to_owned(),
        }
    }

    /// Checkpoint → hub records, one topic per checkpoint.
    pub fn records(&self, checkpoint: &str) -> String {
        format!("{}/hub/records/{checkpoint}", self.prefix)
    }

    /// What the hub subscribes to for records (any checkpoint).
    pub fn records_filter(&self) -> String {
        format!("{}/hub/records/+", self.prefix)
    }

    /// Hub → checkpoint acknowledgement (retained).
    pub fn ack(&self, checkpoint: &str) -> String {
        format!("{}/{checkpoint}/sync/ack", self.prefix)
    }

    /// Checkpoint → hub backfill requests.
    pub fn backfill(&self) -> String {
        format!("{}/hub/backfill", self.prefix)
    }

    /// Hub → one checkpoint: backfill replies.
    pub fn backfill_reply(&self, checkpoint: &str) -> String {
        format!("{}/{checkpoint}/sync/feed", self.prefix)
    }

    /// Hub → all checkpoints: newly stored records.
    pub fn feed(&self) -> String {
        format!("{}/hub/feed", self.prefix)
    }

    /// Checkpoint → all: the newest hub head it verified (retained).
    pub fn witness(&self, checkpoint: &str) -> String {
        format!("{}/{checkpoint}/sync/witness", self.prefix)
    }

    /// What checkpoints subscribe to for everyone's witnessed heads.
    pub fn witness_filter(&self) -> String {
        format!("{}/+/sync/witness", self.prefix)
    }

    /// Hub → all: its sealed status (retained, with a last will).
    pub fn hub_status(&self) -> String {
        format!("{}/hub/status", self.prefix)
    }

    /// Hub → all: alerts (JSON).
    pub fn alerts(&self) -> String {
        format!("{}/hub/alerts", self.prefix)
    }

    /// The authority's signed policy bundle (retained).
    pub fn policy(&self) -> String {
        format!("{}/policy", self.prefix)
    }

    /// The checkpoint a records topic names, if it is one.
    pub fn checkpoint_of_records<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/hub/records/")
            .filter(|c| !c.is_empty() && !c.contains('/'))
    }
}

#[cfg(test)]
mod tests;
