//! A log of given leaves, signed by a given key, for tests: its heads at
//! each size, inclusion and consistency proofs, and a records message.

use ed25519_dalek::SigningKey;

use super::head::{Head, checkpoint_origin};
use super::{Hash, SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, KIND_CONSUMPTION, ProvenRecord};

/// A checkpoint's log held in memory.
pub struct TestLog {
    conn: rusqlite::Connection,
    /// Whose log.
    pub checkpoint: String,
    /// Its leaves.
    pub leaves: Vec<Vec<u8>>,
}

/// A consumption record of `checkpoint` numbered `seq` for `license`, at `at`.
pub fn record(checkpoint: &str, seq: u64, license: &str, at: i64) -> Vec<u8> {
    ConsumptionRecord {
        kind: KIND_CONSUMPTION.into(),
        checkpoint: checkpoint.into(),
        seq,
        license_id: license.into(),
        declaration_id: format!("D-{license}"),
        consumed_at: at,
        token_sha256: [1; 32],
        declaration_sha256: [2; 32],
        exporter: "E".into(),
        consignee: "C".into(),
        end_user: "U".into(),
        destination: "DE".into(),
        goods: Vec::new(),
    }
    .to_leaf()
}

impl TestLog {
    /// `checkpoint`'s log of `leaves`.
    pub fn of(checkpoint: &str, leaves: Vec<Vec<u8>>) -> TestLog {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&SqlLog::create_sql("l")).unwrap();
        let log = SqlLog::new(&conn, "l");
        for (n, leaf) in leaves.iter().enumerate() {
            log.append(n as u64, leaf_hash(leaf)).unwrap();
        }
        TestLog {
            conn,
            checkpoint: checkpoint.into(),
            leaves,
        }
    }

    /// Its root at `size`.
    pub fn root(&self, size: u64) -> Hash {
        SqlLog::new(&self.conn, "l").root(size).unwrap()
    }

    /// Its head at `size`, signed with `key` at `time`.
    pub fn head(&self, size: u64, key: &SigningKey, time: i64) -> String {
        Head {
            origin: checkpoint_origin(&self.checkpoint),
            size,
            root: self.root(size),
            time,
        }
        .sign(key)
    }

    /// Leaf `n` proven in its head at `size`.
    pub fn proven(&self, n: u64, size: u64, key: &SigningKey, time: i64) -> ProvenRecord {
        ProvenRecord {
            leaf: self.leaves[n as usize].clone(),
            index: n,
            head: self.head(size, key, time),
            proof: SqlLog::new(&self.conn, "l")
                .prove_inclusion(n, size)
                .unwrap(),
        }
    }

    /// The proof that it at `old` is a prefix of it at `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        SqlLog::new(&self.conn, "l")
            .prove_consistency(old, new)
            .unwrap()
    }

    /// A records message of leaves `records` proven in its whole head.
    pub fn records_message(&self, records: &[u64], key: &SigningKey, time: i64) -> Vec<u8> {
        let size = self.leaves.len() as u64;
        crate::sync::protocol::Records {
            head: self.head(size, key, time),
            consistency: None,
            records: records
                .iter()
                .map(|&n| {
                    let p = self.proven(n, size, key, time);
                    (n, p.leaf, p.proof)
                })
                .collect(),
        }
        .encode()
    }
}
