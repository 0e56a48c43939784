//! A write transaction holding a group of decisions: every verdict becomes
//! a leaf of the checkpoint's log, every license consumed a second leaf
//! (its consumption record), and the commit signs one tree head for all.

use rusqlite::params;

use super::{Identity, LedgerError, Recorded, insert_alert, sql};
use crate::clock::UnixTime;
use crate::decision::{Consumption, Decision, LedgerFacts};
use crate::merkle::head::{Head, checkpoint_origin};
use crate::merkle::{SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, KIND_CONSUMPTION, KIND_VERDICT, VerdictLeaf};
use crate::verdict::{Alert, Verdict};

/// The table of the checkpoint's own log's stored hashes.
pub(super) const LOG: &str = "log_hashes";

/// A write transaction holding a group of decisions; nothing is durable until [`Batch::commit`].
pub struct Batch<'a> {
    pub(super) tx: rusqlite::Transaction<'a>,
    pub(super) path: std::path::PathBuf,
    pub(super) checkpoint: String,
    pub(super) key: ed25519_dalek::SigningKey,
    pub(super) next_audit_id: i64,
    pub(super) next_seq: i64,
    /// The next leaf's index: the log's size.
    pub(super) next_leaf: u64,
    /// Leaves appended in this batch.
    pub(super) appended: u64,
    pub(super) newest_decision_at: Option<UnixTime>,
    /// The latest time a decision in this batch was made at: the head's time.
    pub(super) last_now: Option<UnixTime>,
    /// What the hub's signed time says of the clock the batch decides by.
    pub clock: crate::clock_trust::ClockStatus,
}

impl Batch<'_> {
    /// The facts for a declaration, including decisions earlier in this batch.
    pub fn facts(
        &self,
        declaration_id: &str,
        license_id: Option<&str>,
    ) -> Result<LedgerFacts, LedgerError> {
        super::facts(
            &self.tx,
            &self.checkpoint,
            declaration_id,
            license_id,
            self.newest_decision_at,
        )
        .map_err(sql(&self.path, super::Operation::Decide))
    }

    /// Writes a decision: audit row and its leaf, standing verdict,
    /// consumption and its leaf, alert.
    pub fn record(
        &mut self,
        decision: &Decision,
        content_hash: Option<[u8; 32]>,
        identity: &Identity,
        now: UnixTime,
    ) -> Result<Recorded, LedgerError> {
        let Decision::New {
            verdict,
            consume,
            alert,
            claims_declaration_id,
        } = decision
        else {
            return Ok(Recorded {
                audit_id: None,
                consumed_seq: None,
                verdict_json: None,
                alert: None,
                unreadable_dropped: 0,
            });
        };
        let path = self.path.clone();
        if verdict.declaration_id.is_none() {
            return self
                .record_unreadable(verdict, alert.as_ref(), now)
                .map_err(sql(&path, super::Operation::Decide));
        }
        let (audit_id, verdict_json) = self
            .append_verdict(verdict, content_hash, now)
            .map_err(sql(&path, super::Operation::Decide))?;
        if *claims_declaration_id
            && let (Some(id), Some(hash)) = (&verdict.declaration_id, content_hash)
        {
            self.tx
                .prepare_cached(
                    "INSERT INTO declarations(declaration_id, content_hash, audit_id) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![id, &hash[..], audit_id]))
                .map_err(sql(&path, super::Operation::Decide))?;
        }
        let mut consumed_seq = None;
        if let (Some(c), Some(decl_id), Some(hash)) =
            (consume, &verdict.declaration_id, content_hash)
        {
            let seq = self.next_seq;
            let rec = consumption_record(&identity.checkpoint, seq as u64, c, decl_id, hash, now);
            let leaf = rec.to_leaf();
            let n = self.append_leaf(&leaf).map_err(|e| e.into_ledger(&path))?;
            // The primary key makes a second consumption impossible even if a caller erred.
            self.tx.prepare_cached("INSERT INTO consumed(license_id, declaration_id, consumed_at, seq, audit_id, record, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").and_then(|mut st| st.execute(params![c.license_id, decl_id, now, seq, audit_id, leaf, n as i64]))
                .map_err(sql(&path, super::Operation::Decide))?;
            self.tx
                .prepare_cached("INSERT INTO outbox(seq) VALUES (?1)")
                .and_then(|mut st| st.execute([seq]))
                .map_err(sql(&path, super::Operation::Decide))?;
            self.next_seq += 1;
            consumed_seq = Some(seq as u64);
        }
        if let Some(a) = alert {
            self.record_alert(a, now)?;
        }
        Ok(Recorded {
            audit_id: Some(audit_id),
            consumed_seq,
            verdict_json: Some(verdict_json),
            alert: alert.clone(),
            unreadable_dropped: 0,
        })
    }

    /// Queues a message (`verdict` or `alert`) for publication; it stays until [`super::Ledger::delete_publications`].
    pub fn enqueue_publication(
        &mut self,
        kind: super::PublicationKind,
        payload: &str,
    ) -> Result<i64, LedgerError> {
        self.tx
            .prepare_cached("INSERT INTO publish_queue(kind, payload) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![kind.as_str(), payload]))
            .map_err(sql(&self.path, super::Operation::Decide))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Removes publications the broker has acknowledged, as part of this batch.
    pub fn delete_publications(&mut self, ids: &[i64]) -> Result<(), LedgerError> {
        super::delete_queued(&self.tx, ids).map_err(sql(&self.path, super::Operation::Decide))
    }

    /// Stores an alert.
    pub fn record_alert(&mut self, alert: &Alert, now: UnixTime) -> Result<(), LedgerError> {
        insert_alert(&self.tx, alert, now)
            .map(|_| ())
            .map_err(sql(&self.path, super::Operation::Decide))
    }

    /// Appends an officer's leaf (a clock confirmation, an action on an
    /// alert) dated `now`, the time the batch's head then carries.
    pub(super) fn append_officer_leaf(
        &mut self,
        leaf: &[u8],
        now: UnixTime,
    ) -> Result<u64, LedgerError> {
        let n = self
            .append_leaf(leaf)
            .map_err(|e| e.into_ledger(&self.path))?;
        self.last_now = Some(now);
        Ok(n)
    }

    /// Appends a leaf to the checkpoint's log; returns its index.
    pub(super) fn append_leaf(&mut self, leaf: &[u8]) -> Result<u64, crate::merkle::MerkleError> {
        let n = self.next_leaf;
        SqlLog::new(&self.tx, LOG).append(n, leaf_hash(leaf))?;
        self.tx
            .prepare_cached("INSERT INTO log_leaves(n, leaf) VALUES (?1, ?2)")?
            .execute(params![n as i64, leaf])?;
        self.next_leaf += 1;
        self.appended += 1;
        Ok(n)
    }

    fn append_verdict(
        &mut self,
        verdict: &Verdict,
        content_hash: Option<[u8; 32]>,
        now: UnixTime,
    ) -> rusqlite::Result<(i64, String)> {
        let id = self.next_audit_id;
        let verdict_json = serde_json::to_string(verdict).unwrap_or_default();
        let leaf = VerdictLeaf {
            kind: KIND_VERDICT.to_owned(),
            audit_id: id,
            decided_at: now,
            content_hash: content_hash.map(hex::encode),
            verdict: verdict_json.clone(),
        }
        .to_leaf();
        let n = self
            .append_leaf(&leaf)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        // Design: the hash chain's columns stay for ledgers written before the
        // log; the log's signed heads replace them, so they hold nothing now.
        self.tx
            .prepare_cached(
                "INSERT INTO audit(id, declaration_id, license_id, verdict, decided_at, content_hash, verdict_json, prev_hash, row_hash, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, x'', x'', ?8)",
            )?
            .execute(params![
                id,
                verdict.declaration_id,
                verdict.license_id,
                verdict.verdict.as_str(),
                now,
                content_hash.map(|h| h.to_vec()),
                verdict_json,
                n as i64
            ])?;
        self.next_audit_id += 1;
        self.newest_decision_at = Some(self.newest_decision_at.map_or(now, |n| n.max(now)));
        self.last_now = Some(self.last_now.map_or(now, |n| n.max(now)));
        Ok((id, verdict_json))
    }

    /// Makes the batch durable (one fsync for all its decisions), with one
    /// signed tree head over every leaf appended.
    pub fn commit(self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        if self.appended > 0 {
            let size = self.next_leaf;
            let root = SqlLog::new(&self.tx, LOG)
                .root(size)
                .map_err(|e| e.into_ledger(&path))?;
            let head = Head {
                origin: checkpoint_origin(&self.checkpoint),
                size,
                root,
                time: self.last_now.unwrap_or_default(),
            };
            let note = head.sign(&self.key);
            self.tx
                .prepare_cached("INSERT INTO log_heads(size, note) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![size as i64, note]))
                .map_err(sql(&path, super::Operation::Decide))?;
        }
        self.tx
            .commit()
            .map_err(sql(&path, super::Operation::Decide))
    }
}

/// The consumption record a clearance writes.
fn consumption_record(
    checkpoint: &str,
    seq: u64,
    c: &Consumption,
    declaration_id: &str,
    declaration_sha256: [u8; 32],
    now: UnixTime,
) -> ConsumptionRecord {
    ConsumptionRecord {
        kind: KIND_CONSUMPTION.to_owned(),
        checkpoint: checkpoint.to_owned(),
        seq,
        license_id: c.license_id.clone(),
        declaration_id: declaration_id.to_owned(),
        consumed_at: now,
        token_sha256: c.token_sha256,
        declaration_sha256,
        exporter: c.exporter.clone(),
        consignee: c.consignee.clone(),
        end_user: c.end_user.clone(),
        destination: c.destination.clone(),
        goods: c.goods.clone(),
    }
}

impl crate::merkle::MerkleError {
    /// As a ledger error naming the file.
    pub(super) fn into_ledger(self, path: &std::path::Path) -> LedgerError {
        match self {
            crate::merkle::MerkleError::Sqlite(source) => LedgerError::new(
                path,
                super::Operation::Decide,
                super::Failure::Sqlite(source),
            ),
            other => {
                LedgerError::unusable(path, super::Operation::Decide, format!("its log: {other}"))
            }
        }
    }
}
