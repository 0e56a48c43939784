//! The sync messages between checkpoints and the hub, as CBOR.
//!
//! Every message is a CBOR map with text keys, so other tools can produce
//! and read them; unknown keys are ignored, missing or mistyped ones refused.

use crate::codec::{self, Value};

/// A sync message that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("sync message: {0}")]
pub struct ProtocolError(String);

/// Most records or feed entries in one message.
pub const BATCH_MAX: usize = 500;

/// Checkpoint → hub: signed consumption records (COSE_Sign1 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    /// The records, oldest first.
    pub records: Vec<Vec<u8>>,
}

/// Hub → checkpoint: the highest number up to which the hub holds every record of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The checkpoint acknowledged.
    pub checkpoint: String,
    /// Records 1..=contiguous are stored at the hub.
    pub contiguous: u64,
}

/// Hub → checkpoints: stored records in the hub's global order.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// (global number, signed record), ascending.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The highest global number the hub has assigned.
    pub head: u64,
}

/// Checkpoint → hub: send me the feed after this global number.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    /// Who asks (the reply goes to its topic).
    pub checkpoint: String,
    /// The asker holds every entry up to this one.
    pub after: u64,
    /// Most entries wanted.
    pub limit: u32,
}

fn map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    codec::encode_value(&Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    ))
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
    /// `{"records": [bstr, …]}`.
    pub fn encode(&self) -> Vec<u8> {
        map(vec![(
            "records",
            Value::Array(self.records.iter().cloned().map(Value::Bytes).collect()),
        )])
    }

    /// Reads a `Records` message.
    pub fn decode(b: &[u8]) -> Result<Records, ProtocolError> {
        let m = decode_map(b)?;
        let records = array(field(&m, "records")?, "records")?
            .iter()
            .map(|v| bytes(v, "records"))
            .collect::<Result<_, _>>()?;
        Ok(Records { records })
    }
}

impl Ack {
    /// `{"checkpoint": text, "contiguous": uint}`.
    pub fn encode(&self) -> Vec<u8> {
        map(vec![
            ("checkpoint", Value::Text(self.checkpoint.clone())),
            ("contiguous", Value::Integer(self.contiguous.into())),
        ])
    }

    /// Reads an `Ack` message.
    pub fn decode(b: &[u8]) -> Result<Ack, ProtocolError> {
        let m = decode_map(b)?;
        Ok(Ack {
            checkpoint: text(field(&m, "checkpoint")?, "checkpoint")?,
            contiguous: uint(field(&m, "contiguous")?, "contiguous")?,
        })
    }
}

impl Feed {
    /// `{"entries": [[uint, bstr], …], "head": uint}`.
    pub fn encode(&self) -> Vec<u8> {
        map(vec![
            (
                "entries",
                Value::Array(
                    self.entries
                        .iter()
                        .map(|(g, r)| {
                            Value::Array(vec![Value::Integer((*g).into()), Value::Bytes(r.clone())])
                        })
                        .collect(),
                ),
            ),
            ("head", Value::Integer(self.head.into())),
        ])
    }

    /// Reads a `Feed` message.
    pub fn decode(b: &[u8]) -> Result<Feed, ProtocolError> {
        let m = decode_map(b)?;
        let entries = array(field(&m, "entries")?, "entries")?
            .iter()
            .map(|e| match e {
                Value::Array(pair) if pair.len() == 2 => {
                    Ok((uint(&pair[0], "entries")?, bytes(&pair[1], "entries")?))
                }
                _ => Err(ProtocolError("`entries` items must be [uint, bstr]".into())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Feed {
            entries,
            head: uint(field(&m, "head")?, "head")?,
        })
    }
}

impl Backfill {
    /// `{"checkpoint": text, "after": uint, "limit": uint}`.
    pub fn encode(&self) -> Vec<u8> {
        map(vec![
            ("checkpoint", Value::Text(self.checkpoint.clone())),
            ("after", Value::Integer(self.after.into())),
            ("limit", Value::Integer(self.limit.into())),
        ])
    }

    /// Reads a `Backfill` message.
    pub fn decode(b: &[u8]) -> Result<Backfill, ProtocolError> {
        let m = decode_map(b)?;
        let limit = uint(field(&m, "limit")?, "limit")?;
        Ok(Backfill {
            checkpoint: text(field(&m, "checkpoint")?, "checkpoint")?,
            after: uint(field(&m, "after")?, "after")?,
            limit: limit.min(BATCH_MAX as u64) as u32,
        })
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
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let r = Records {
            records: vec![vec![1, 2], vec![3]],
        };
        assert_eq!(Records::decode(&r.encode()).unwrap(), r);
        let a = Ack {
            checkpoint: "p1".into(),
            contiguous: 42,
        };
        assert_eq!(Ack::decode(&a.encode()).unwrap(), a);
        let f = Feed {
            entries: vec![(7, vec![9; 40])],
            head: 9,
        };
        assert_eq!(Feed::decode(&f.encode()).unwrap(), f);
        let b = Backfill {
            checkpoint: "p1".into(),
            after: 3,
            limit: 100,
        };
        assert_eq!(Backfill::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(Records::decode(b"\xa0").is_err());
        assert!(
            Ack::decode(&map(vec![
                ("checkpoint", Value::Integer(1)),
                ("contiguous", Value::Integer(1))
            ]))
            .is_err()
        );
        assert!(
            Ack::decode(&map(vec![
                ("checkpoint", Value::Text("p".into())),
                ("contiguous", Value::Integer(-1))
            ]))
            .is_err()
        );
        assert!(
            Feed::decode(&map(vec![
                ("entries", Value::Array(vec![Value::Integer(1)])),
                ("head", Value::Integer(1))
            ]))
            .is_err()
        );
        let too_many = Value::Array(vec![Value::Bytes(vec![]); BATCH_MAX + 1]);
        assert!(Records::decode(&map(vec![("records", too_many)])).is_err());
        assert!(Records::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn records_topics_name_their_checkpoint() {
        let t = SyncTopics::new("permitgate");
        assert_eq!(t.checkpoint_of_records(&t.records("p-1")), Some("p-1"));
        assert_eq!(t.checkpoint_of_records("permitgate/hub/records/"), None);
        assert_eq!(t.checkpoint_of_records("permitgate/hub/records/a/b"), None);
        assert_eq!(t.checkpoint_of_records("other/hub/records/a"), None);
    }
}
