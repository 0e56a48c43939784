//! The checkpoint's own log, read: its signed heads, proofs for what goes
//! to the hub, the upgrade of ledgers written before it, and the checks
//! that the ledger is what its heads say.

use ed25519_dalek::VerifyingKey;
use rusqlite::{OptionalExtension, params};

use super::batch::LOG;
use super::{Ledger, LedgerError, sql};
use crate::merkle::head::{Head, checkpoint_origin};
use crate::merkle::{Hash, SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, KIND_CONSUMPTION, KIND_VERDICT, VerdictLeaf};

/// Whether `head` is a head of the checkpoint's own log in `conn`.
pub(super) fn holds(
    conn: &rusqlite::Connection,
    head: &Head,
) -> Result<bool, crate::merkle::MerkleError> {
    let size: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(n) + 1, 0) FROM log_leaves")?
        .query_row([], |r| r.get(0))?;
    if head.size > size as u64 {
        return Ok(false);
    }
    Ok(SqlLog::new(conn, LOG).root(head.size)? == head.root)
}

/// Records ready to go to the hub: the head they are proven against, and
/// per record (seq, leaf index, leaf, inclusion proof).
#[derive(Debug, Clone)]
pub struct OutboxProofs {
    /// The signed head.
    pub head: String,
    /// Its size.
    pub size: u64,
    /// The records, ascending by seq.
    pub records: Vec<(u64, u64, Vec<u8>, Vec<Hash>)>,
}

impl Ledger {
    /// The newest signed head of this checkpoint's log (parsed, not verified) and its note.
    pub fn log_head(&self) -> Result<Option<(Head, String)>, LedgerError> {
        let note: Option<String> = self
            .conn
            .prepare_cached("SELECT note FROM log_heads ORDER BY size DESC LIMIT 1")
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(sql(&self.path, super::Operation::Log))?;
        let Some(note) = note else { return Ok(None) };
        let head = Head::peek(note.as_bytes()).map_err(|e| {
            LedgerError::unusable(
                &self.path,
                super::Operation::Log,
                format!("its newest signed head is unreadable: {e}"),
            )
        })?;
        Ok(Some((head, note)))
    }

    /// The signed head of exactly `size` leaves, if one was signed.
    pub fn log_head_at(&self, size: u64) -> Result<Option<String>, LedgerError> {
        self.conn
            .prepare_cached("SELECT note FROM log_heads WHERE size = ?1")
            .and_then(|mut st| st.query_row([size as i64], |r| r.get(0)).optional())
            .map_err(sql(&self.path, super::Operation::Log))
    }

    /// Own records not yet in the hub's log with `seq > after`, up to
    /// `limit`, each with its proof against the newest signed head.
    pub fn outbox_proofs(
        &mut self,
        after: u64,
        limit: usize,
    ) -> Result<Option<OutboxProofs>, LedgerError> {
        let path = self.path.clone();
        // One read transaction: the head and the proofs see the same log.
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, super::Operation::Log))?;
        let note: Option<String> = tx
            .query_row(
                "SELECT note FROM log_heads ORDER BY size DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&path, super::Operation::Log))?;
        let Some(note) = note else { return Ok(None) };
        let head = Head::peek(note.as_bytes()).map_err(|e| {
            LedgerError::unusable(
                &path,
                super::Operation::Log,
                format!("its newest signed head is unreadable: {e}"),
            )
        })?;
        let rows: Vec<(u64, u64, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT o.seq, c.leaf, c.record FROM outbox o JOIN consumed c ON c.seq = o.seq WHERE o.seq > ?1 AND c.leaf < ?2 ORDER BY o.seq LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![after as i64, head.size as i64, limit as i64],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)),
                )?
                .collect()
            })
            .map_err(sql(&path, super::Operation::Log))?;
        let log = SqlLog::new(&tx, LOG);
        let mut records = Vec::with_capacity(rows.len());
        for (seq, n, leaf) in rows {
            let proof = log
                .prove_inclusion(n, head.size)
                .map_err(|e| e.into_ledger(&path))?;
            records.push((seq, n, leaf, proof));
        }
        Ok(Some(OutboxProofs {
            head: note,
            size: head.size,
            records,
        }))
    }

    /// Whether `head` is a head of this log: it has that many leaves and
    /// that root then (a head this ledger signed, or could have).
    pub fn holds_head(&self, head: &Head) -> Result<bool, LedgerError> {
        holds(&self.conn, head).map_err(|e| e.into_ledger(&self.path))
    }

    /// This log's root at `size` leaves (no more than it has).
    pub fn log_root(&self, size: u64) -> Result<Hash, LedgerError> {
        SqlLog::new(&self.conn, LOG)
            .root(size)
            .map_err(|e| e.into_ledger(&self.path))
    }

    /// The proof that this log at `old` leaves is a prefix of it at `new`.
    pub fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        SqlLog::new(&self.conn, LOG)
            .prove_consistency(old, new)
            .map_err(|e| e.into_ledger(&self.path))
    }

    /// Gives a ledger written before the log its leaves: every verdict in
    /// order, each consumption after its verdict, its consumption records
    /// queued for the hub again (as leaves), and a head signed over them
    /// with `key` at `now`. Returns how many leaves were added.
    pub fn upgrade_log(
        &mut self,
        key: &ed25519_dalek::SigningKey,
        now: crate::clock::UnixTime,
    ) -> Result<u64, LedgerError> {
        let path = self.path.clone();
        let pending: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM audit WHERE leaf IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(sql(&path, super::Operation::Log))?;
        if !pending {
            return Ok(0);
        }
        let checkpoint = self.checkpoint.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, super::Operation::Log))?;
        let mut n: u64 = tx
            .query_row("SELECT COALESCE(MAX(n) + 1, 0) FROM log_leaves", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sql(&path, super::Operation::Log))? as u64;
        let start = n;
        type Row = (i64, i64, Option<Vec<u8>>, String);
        let rows: Vec<Row> = tx
            .prepare("SELECT id, decided_at, content_hash, verdict_json FROM audit WHERE leaf IS NULL ORDER BY id")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .map_err(sql(&path, super::Operation::Log))?;
        let log = SqlLog::new(&tx, LOG);
        let append = |leaf: &[u8], n: &mut u64| -> Result<u64, LedgerError> {
            log.append(*n, leaf_hash(leaf))
                .map_err(|e| e.into_ledger(&path))?;
            tx.execute(
                "INSERT INTO log_leaves(n, leaf) VALUES (?1, ?2)",
                params![*n as i64, leaf],
            )
            .map_err(sql(&path, super::Operation::Log))?;
            *n += 1;
            Ok(*n - 1)
        };
        for (id, decided_at, content_hash, verdict_json) in rows {
            let leaf = VerdictLeaf {
                kind: KIND_VERDICT.to_owned(),
                audit_id: id,
                decided_at,
                content_hash: content_hash.as_deref().map(hex::encode),
                verdict: verdict_json.clone(),
            }
            .to_leaf();
            let at = append(&leaf, &mut n)?;
            tx.execute(
                "UPDATE audit SET leaf = ?1 WHERE id = ?2",
                params![at as i64, id],
            )
            .map_err(sql(&path, super::Operation::Log))?;
            let consumed: Option<(String, String, i64, i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT license_id, declaration_id, consumed_at, seq, record FROM consumed WHERE audit_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(sql(&path, super::Operation::Log))?;
            let Some((license_id, declaration_id, consumed_at, seq, old)) = consumed else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&verdict_json).unwrap_or_default();
            let token_sha256 = legacy_token_hash(&old);
            let rec = ConsumptionRecord {
                kind: KIND_CONSUMPTION.to_owned(),
                checkpoint: checkpoint.clone(),
                seq: seq as u64,
                license_id,
                declaration_id,
                consumed_at,
                token_sha256,
                declaration_sha256: content_hash
                    .as_deref()
                    .and_then(|h| h.try_into().ok())
                    .unwrap_or([0; 32]),
                exporter: v["exporter"].as_str().unwrap_or("").to_owned(),
                // Not kept before the log: unknown for these records.
                consignee: String::new(),
                end_user: v["end_user"].as_str().unwrap_or("").to_owned(),
                destination: String::new(),
                goods: Vec::new(),
            };
            let leaf = rec.to_leaf();
            let at = append(&leaf, &mut n)?;
            tx.execute(
                "UPDATE consumed SET leaf = ?1, record = ?2 WHERE seq = ?3",
                params![at as i64, leaf, seq],
            )
            .map_err(sql(&path, super::Operation::Log))?;
            tx.execute("INSERT OR IGNORE INTO outbox(seq) VALUES (?1)", [seq])
                .map_err(sql(&path, super::Operation::Log))?;
        }
        let root = log.root(n).map_err(|e| e.into_ledger(&path))?;
        let note = Head {
            origin: checkpoint_origin(&checkpoint),
            size: n,
            root,
            time: now,
        }
        .sign(key);
        tx.execute(
            "INSERT OR REPLACE INTO log_heads(size, note) VALUES (?1, ?2)",
            params![n as i64, note],
        )
        .map_err(sql(&path, super::Operation::Log))?;
        tx.commit().map_err(sql(&path, super::Operation::Log))?;
        Ok(n - start)
    }

    /// Records an officer's confirmation that this clock is right: a leaf
    /// of the log (signed at once), after which the decisions already in
    /// the ledger no longer hold later ones for being dated ahead.
    pub fn confirm_clock(
        &mut self,
        identity: &super::Identity,
        officer: &str,
        note: &str,
        now: crate::clock::UnixTime,
    ) -> Result<Option<crate::clock::UnixTime>, LedgerError> {
        let path = self.path.clone();
        let mut batch = self.begin(identity)?;
        let newest_before = batch.newest_decision_at;
        let leaf = crate::record::ClockConfirmedLeaf {
            kind: crate::record::KIND_CLOCK_CONFIRMED.to_owned(),
            officer: officer.to_owned(),
            note: note.to_owned(),
            at: now,
            newest_before,
        }
        .to_leaf();
        batch.append_officer_leaf(&leaf, now)?;
        batch
            .tx
            .execute(
                "INSERT INTO meta(key, value) VALUES ('clock_floor', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(batch.next_audit_id - 1).to_string()],
            )
            .map_err(sql(&path, super::Operation::Log))?;
        batch.commit()?;
        Ok(newest_before)
    }

    /// The cheap check the daemon runs before it decides: the newest
    /// signed head verifies with one of this checkpoint's keys (its own, or
    /// one the registry lists for it: a key rotated since), and the log still
    /// holds what it commits to (its root at that size is the head's).
    pub fn check_own_head(&self, keys: &[VerifyingKey]) -> Result<(), String> {
        let Some((_, note)) = self.log_head().map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let origin = checkpoint_origin(&self.checkpoint);
        let head = Head::open(note.as_bytes(), &origin, keys)
            .map_err(|e| format!("its newest signed head does not verify: {e}"))?;
        let log = SqlLog::new(&self.conn, LOG);
        let size = log.size().map_err(|e| e.to_string())?;
        if size < head.size {
            return Err(format!(
                "its log holds {size} leaves but its newest signed head commits to {}: leaves were removed",
                head.size
            ));
        }
        let root = log.root(head.size).map_err(|e| e.to_string())?;
        if root != head.root {
            return Err(format!(
                "its log's first {} leaves are not those its newest signed head commits to: the log was rewritten",
                head.size
            ));
        }
        Ok(())
    }
}

/// The token hash a consumption record from before the log carried
/// (it was a COSE_Sign1 over a CBOR map holding `token_sha256`).
fn legacy_token_hash(cose: &[u8]) -> [u8; 32] {
    crate::token::cose::parse(cose)
        .ok()
        .and_then(|m| crate::codec::decode_value(&m.payload).ok())
        .and_then(|v| match v {
            crate::codec::Value::Map(m) => m.into_iter().find_map(|(k, v)| match (k, v) {
                (crate::codec::Value::Text(k), crate::codec::Value::Bytes(b))
                    if k == "token_sha256" =>
                {
                    b.try_into().ok()
                }
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or([0; 32])
}
