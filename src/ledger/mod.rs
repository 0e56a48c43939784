//! The SQLite ledger: consumed licenses, the hash-chained audit log of every
//! verdict, the outbox of signed consumption records, and alerts.
//!
//! Design: WAL with `synchronous=FULL`, so a commit survives a power cut;
//! speed comes from committing many decisions per transaction ([`Batch`]).

pub(crate) mod schema;
mod sync;
mod unreadable;

pub use sync::{FeedConflict, FeedOutcome};

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::decision::{Consumption, Decision, LedgerFacts, LicenseUse, PriorDecision};
use crate::record::ConsumptionRecord;
use crate::verdict::{Alert, Verdict};

/// A ledger operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite reported an error.
    #[error("ledger {path}: {source}")]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a usable ledger.
    #[error("ledger {path}: {message}")]
    Unusable {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl LedgerError {
    /// Whether the storage failed (disk full, read-only, I/O error, held
    /// locked) rather than the data: the same write may succeed later.
    pub fn is_storage_fault(&self) -> bool {
        use rusqlite::ErrorCode as C;
        matches!(
            self,
            LedgerError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(
                e.code,
                C::DiskFull
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::DatabaseBusy
                    | C::DatabaseLocked
            )
        )
    }
}

/// A verdict or alert queued for publication: (queue id, kind, JSON payload).
pub type Publication = (i64, String, String);

/// This checkpoint's identity: its id and the key that signs its consumption records.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Checkpoint id.
    pub checkpoint: String,
    /// Signing key.
    pub key: SigningKey,
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// The checkpoint the ledger belongs to (read once, not per decision).
    checkpoint: String,
}

/// Most unreadable payloads (no readable declaration id) kept; older ones are dropped and counted.
pub const UNREADABLE_KEPT: i64 = 10_000;
/// Least time between two `unreadable_payload` alerts, seconds; those in between are counted in the next.
pub const UNREADABLE_ALERT_EVERY: i64 = 60;

/// Where a verdict went once recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Audit row id, or `None` for a repeated verdict or an unreadable
    /// payload (kept in the capped `unreadable` table instead).
    pub audit_id: Option<i64>,
    /// Sequence number of the consumption record, when a license was consumed.
    pub consumed_seq: Option<u64>,
    /// The verdict as written to the audit log (JSON), so callers publishing
    /// it need not serialise it again; `None` for a repeated verdict.
    pub verdict_json: Option<String>,
    /// The decision's alert as stored, to publish (an unreadable payload's
    /// is held back within [`UNREADABLE_ALERT_EVERY`] of the last).
    pub alert: Option<Alert>,
    /// Unreadable payloads dropped now to keep [`UNREADABLE_KEPT`].
    pub unreadable_dropped: u64,
}

const GENESIS: [u8; 32] = [0; 32];

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` for `checkpoint`,
    /// after checking the whole file (`quick_check`).
    pub fn open(path: &Path, checkpoint: &str) -> Result<Ledger, LedgerError> {
        let ledger = Ledger::open_checking_later(path, checkpoint)?;
        ledger.integrity_check()?;
        Ok(ledger)
    }

    /// Opens the ledger like [`Ledger::open`] but leaves the check of the
    /// whole file to [`Ledger::integrity_check`], which the daemon runs
    /// once it is ready: on ten million rows the check takes seconds.
    /// A ledger that failed a check before (it has a marker beside it) is
    /// refused here.
    pub fn open_checking_later(path: &Path, checkpoint: &str) -> Result<Ledger, LedgerError> {
        let marker = damage_marker(path);
        if let Ok(why) = std::fs::read_to_string(&marker) {
            return Err(LedgerError::Unusable {
                path: path.to_owned(),
                message: format!(
                    "failed its integrity check ({}); restore it from a backup, then remove {}",
                    why.trim(),
                    marker.display()
                ),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Unusable {
                path: path.to_owned(),
                message: format!("cannot create its directory: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(sql(path))?;
        // SQLite quietly opens a write-protected file read-only; every
        // decision would then fail. Refuse at start instead.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(LedgerError::Unusable {
                path: path.to_owned(),
                message: "read-only (file permissions or a read-only filesystem); the daemon must be able to write it".into(),
            });
        }
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            checkpoint: checkpoint.to_owned(),
        };
        ledger.setup(true)?;
        ledger.claim(checkpoint)?;
        Ok(ledger)
    }

    /// A second connection to this ledger, for another thread (the sync
    /// task). The file was checked and migrated when this one opened, so
    /// neither is done again: on a large ledger they cost seconds.
    pub fn second_handle(&self) -> Result<Ledger, LedgerError> {
        let conn = Connection::open(&self.path).map_err(sql(&self.path))?;
        let ledger = Ledger {
            conn,
            path: self.path.clone(),
            checkpoint: self.checkpoint.clone(),
        };
        ledger.configure()?;
        ledger
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql(&self.path))?;
        Ok(ledger)
    }

    /// Opens an existing ledger read-only, or `None` if the file does not exist.
    pub fn open_read_only(path: &Path) -> Result<Option<Ledger>, LedgerError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql(path))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            checkpoint: String::new(),
        };
        ledger.setup(false)?;
        ledger.quick_check()?;
        ledger.checkpoint = stored_checkpoint(&ledger.conn)
            .map_err(sql(path))?
            .unwrap_or_default();
        Ok(Some(ledger))
    }

    fn setup(&mut self, writable: bool) -> Result<(), LedgerError> {
        let p = self.path.clone();
        let unusable = |message: String| LedgerError::Unusable {
            path: p.clone(),
            message,
        };
        // A foreign or truncated file fails here, loudly; it is never recreated.
        self.conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| unusable(format!("not a readable SQLite database ({e})")))?;
        self.configure()?;
        if writable {
            self.conn
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(sql(&self.path))?;
            self.conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(sql(&self.path))?;
            schema::migrate(&mut self.conn).map_err(unusable)?;
        } else {
            let v: i64 = self
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(sql(&self.path))?;
            if v != schema::CURRENT {
                return Err(unusable(format!(
                    "schema version {v}, this build reads {}",
                    schema::CURRENT
                )));
            }
        }
        Ok(())
    }

    /// Checks the whole file (SQLite's `quick_check`). A damaged ledger
    /// gets a marker file beside it (`ledger.db.damaged`), so it is refused
    /// at every later start until an operator restores it.
    pub fn integrity_check(&self) -> Result<(), LedgerError> {
        let result = self.quick_check();
        if let Err(LedgerError::Unusable { message, .. }) = &result {
            // Best effort: the error itself is reported either way.
            let _ = std::fs::write(damage_marker(&self.path), format!("{message}\n"));
        }
        result
    }

    fn quick_check(&self) -> Result<(), LedgerError> {
        let unusable = |message: String| LedgerError::Unusable {
            path: self.path.clone(),
            message,
        };
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::DatabaseCorrupt
                        || f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    unusable(format!("integrity check failed: {e}"))
                }
                e => sql(&self.path)(e),
            })?;
        if check != "ok" {
            return Err(unusable(format!("integrity check failed: {check}")));
        }
        Ok(())
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Settings every connection needs.
    fn configure(&self) -> Result<(), LedgerError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql(&self.path))?;
        // The decision path alone uses more than rusqlite's default 16
        // cached statements; an evicted one is parsed again per decision.
        self.conn.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    /// Records the checkpoint id on first use; refuses a ledger of another checkpoint.
    fn claim(&mut self, checkpoint: &str) -> Result<(), LedgerError> {
        let owner = stored_checkpoint(&self.conn).map_err(sql(&self.path))?;
        match owner {
            Some(o) if o != checkpoint => Err(LedgerError::Unusable {
                path: self.path.clone(),
                message: format!("belongs to checkpoint `{o}`, not `{checkpoint}`"),
            }),
            Some(_) => Ok(()),
            None => self
                .conn
                .prepare_cached("INSERT INTO meta(key, value) VALUES ('checkpoint', ?1)")
                .and_then(|mut st| st.execute([checkpoint]))
                .map(|_| ())
                .map_err(sql(&self.path)),
        }
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`) for a group of decisions.
    pub fn begin(&mut self) -> Result<Batch<'_>, LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path))?;
        let head = chain_head(&tx).map_err(sql(&path))?;
        // Read once per batch; the batch keeps them as it appends.
        let next = (|| -> rusqlite::Result<(i64, i64, Option<UnixTime>)> {
            let audit_id = tx
                .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM audit")?
                .query_row([], |r| r.get(0))?;
            let seq = tx
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM consumed")?
                .query_row([], |r| r.get(0))?;
            Ok((audit_id, seq, newest_decision_at(&tx)?))
        })()
        .map_err(sql(&path))?;
        Ok(Batch {
            tx,
            path,
            head,
            checkpoint: self.checkpoint.clone(),
            next_audit_id: next.0,
            next_seq: next.1,
            newest_decision_at: next.2,
        })
    }

    /// The facts for a declaration, read outside any write (for dry runs).
    pub fn facts(
        &self,
        declaration_id: &str,
        license_id: Option<&str>,
    ) -> Result<LedgerFacts, LedgerError> {
        newest_decision_at(&self.conn)
            .and_then(|newest| {
                facts(
                    &self.conn,
                    &self.checkpoint,
                    declaration_id,
                    license_id,
                    newest,
                )
            })
            .map_err(sql(&self.path))
    }

    /// Everything the ledger holds about one license.
    pub fn license_report(&self, license_id: &str) -> Result<serde_json::Value, LedgerError> {
        let q = || -> rusqlite::Result<serde_json::Value> {
            let consumed = self
                .conn
                .query_row(
                    "SELECT declaration_id, consumed_at, seq FROM consumed WHERE license_id=?1",
                    [license_id],
                    |r| {
                        Ok(serde_json::json!({
                            "declaration_id": r.get::<_, String>(0)?,
                            "consumed_at": crate::clock::to_rfc3339(r.get(1)?),
                            "seq": r.get::<_, i64>(2)?,
                        }))
                    },
                )
                .optional()?;
            let mut stmt = self.conn.prepare(
                "SELECT checkpoint, seq, declaration_id, consumed_at FROM remote_consumptions WHERE license_id=?1 ORDER BY consumed_at",
            )?;
            let remote = stmt
                .query_map([license_id], |r| {
                    Ok(serde_json::json!({
                        "checkpoint": r.get::<_, String>(0)?,
                        "seq": r.get::<_, i64>(1)?,
                        "declaration_id": r.get::<_, String>(2)?,
                        "consumed_at": crate::clock::to_rfc3339(r.get(3)?),
                    }))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = self
                .conn
                .prepare("SELECT verdict_json FROM audit WHERE license_id=?1 ORDER BY id")?;
            let verdicts = stmt
                .query_map([license_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter_map(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                .collect::<Vec<_>>();
            // The declaration that consumed it names the parties it was used for.
            let used_for = verdicts
                .iter()
                .find(|v| v["verdict"] == "cleared")
                .map(|v| serde_json::json!({"exporter": v["exporter"], "end_user": v["end_user"]}));
            let reuse_attempts: Vec<&serde_json::Value> = verdicts
                .iter()
                .filter(|v| {
                    v["reasons"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["code"] == "license_already_used"))
                })
                .collect();
            Ok(serde_json::json!({
                "license_id": license_id,
                "used_for": used_for,
                "consumed_here": consumed,
                "consumed_elsewhere": remote,
                "reuse_attempts": reuse_attempts,
                "verdicts": verdicts,
            }))
        };
        q().map_err(sql(&self.path))
    }

    /// Calls `f` with each audit row in order: (id, verdict JSON).
    pub fn for_each_verdict(
        &self,
        f: impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        self.for_each_verdict_where(None, (i64::MIN, i64::MAX), f)
    }

    /// Verdicts decided in `[since, until)`, oldest first, optionally only
    /// those whose declared exporter or end user is `party` (normalised id).
    pub fn for_each_verdict_where(
        &self,
        party: Option<&str>,
        (since, until): (UnixTime, UnixTime),
        mut f: impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        let party = party.map(crate::policy::normalize_id);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, verdict_json FROM audit WHERE decided_at >= ?1 AND decided_at < ?2 \
                 AND (?3 IS NULL OR json_extract(verdict_json, '$.exporter') = ?3 \
                      OR json_extract(verdict_json, '$.end_user') = ?3) ORDER BY id",
            )
            .map_err(sql(&self.path))?;
        let mut rows = stmt
            .query(params![since, until, party])
            .map_err(sql(&self.path))?;
        while let Some(r) = rows.next().map_err(sql(&self.path))? {
            let id: i64 = r.get(0).map_err(sql(&self.path))?;
            let json: String = r.get(1).map_err(sql(&self.path))?;
            f(id, &json).map_err(|e| self.export_error(e))?;
        }
        Ok(())
    }

    /// Alerts raised in `[since, until)`, oldest first, as stored (JSON).
    pub fn for_each_alert(
        &self,
        (since, until): (UnixTime, UnixTime),
        mut f: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT alert_json FROM alerts WHERE raised_at >= ?1 AND raised_at < ?2 ORDER BY id",
            )
            .map_err(sql(&self.path))?;
        let mut rows = stmt.query(params![since, until]).map_err(sql(&self.path))?;
        while let Some(r) = rows.next().map_err(sql(&self.path))? {
            let json: String = r.get(0).map_err(sql(&self.path))?;
            f(&json).map_err(|e| self.export_error(e))?;
        }
        Ok(())
    }

    fn export_error(&self, e: std::io::Error) -> LedgerError {
        LedgerError::Unusable {
            path: self.path.clone(),
            message: format!("writing the export: {e}"),
        }
    }

    /// Walks the audit chain; returns the number of rows checked, or the first broken row.
    pub fn check(&self) -> Result<Result<u64, String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, declaration_id, license_id, verdict, decided_at, content_hash, verdict_json, prev_hash, row_hash FROM audit ORDER BY id",
            )
            .map_err(sql(&self.path))?;
        let mut rows = stmt.query([]).map_err(sql(&self.path))?;
        let mut prev = GENESIS.to_vec();
        let mut count = 0u64;
        let mut last_id = 0i64;
        while let Some(r) = rows.next().map_err(sql(&self.path))? {
            let row = AuditRow {
                id: r.get(0).map_err(sql(&self.path))?,
                declaration_id: r.get(1).map_err(sql(&self.path))?,
                license_id: r.get(2).map_err(sql(&self.path))?,
                verdict: r.get(3).map_err(sql(&self.path))?,
                decided_at: r.get(4).map_err(sql(&self.path))?,
                content_hash: r.get(5).map_err(sql(&self.path))?,
                verdict_json: r.get(6).map_err(sql(&self.path))?,
            };
            let stored_prev: Vec<u8> = r.get(7).map_err(sql(&self.path))?;
            let stored_hash: Vec<u8> = r.get(8).map_err(sql(&self.path))?;
            let who = format!(
                "audit row {} (declaration {})",
                row.id,
                row.declaration_id.as_deref().unwrap_or("-")
            );
            if stored_prev != prev {
                return Ok(Err(format!(
                    "{who}: does not follow row {last_id}; a row before it was deleted, inserted or rewritten"
                )));
            }
            if row.hash(&prev).as_slice() != stored_hash.as_slice() {
                return Ok(Err(format!(
                    "{who}: content does not match its hash; the row was edited"
                )));
            }
            prev = stored_hash;
            last_id = row.id;
            count += 1;
        }
        let head: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='chain_head'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql(&self.path))?;
        let expected = head.unwrap_or_else(|| hex::encode(GENESIS));
        if expected != hex::encode(&prev) {
            return Ok(Err(format!(
                "the chain ends at audit row {last_id}, but the ledger recorded a later head; rows at the end were deleted"
            )));
        }
        Ok(Ok(count))
    }

    /// Up to `limit` queued publications with `after < id <= upto`, oldest
    /// first: (id, kind, payload).
    pub fn pending_publications(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, payload FROM publish_queue WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(sql(&self.path))?;
        stmt.query_map((after, upto, limit as i64), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(sql(&self.path))
    }

    /// The newest queued publication's id (0 when the queue is empty).
    pub fn last_publication_id(&self) -> Result<i64, LedgerError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM publish_queue", [], |r| {
                r.get(0)
            })
            .map_err(sql(&self.path))
    }

    /// Removes publications the broker has acknowledged.
    pub fn delete_publications(&mut self, ids: &[i64]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction().map_err(sql(&self.path))?;
        delete_queued(&tx, ids).map_err(sql(&self.path))?;
        tx.commit().map_err(sql(&self.path))
    }

    /// Counts for status displays: (verdicts, consumed licenses, outbox depth).
    pub fn counts(&self) -> Result<(u64, u64, u64), LedgerError> {
        // Audit ids and consumption numbers run from 1 without gaps (the
        // chain check proves it for the audit), so the largest is the count:
        // read from the end of an index, not by walking ten million rows.
        self.conn
            .query_row(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM audit), (SELECT COALESCE(MAX(seq), 0) FROM consumed), (SELECT COUNT(*) FROM outbox)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(sql(&self.path))
    }

    /// Unreadable payloads received in all (kept and dropped), and how many were dropped under the cap.
    pub fn unreadable_counts(&self) -> Result<(u64, u64), LedgerError> {
        self.conn
            .query_row(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM unreadable), (SELECT COALESCE(CAST(value AS INTEGER), 0) FROM meta WHERE key = 'unreadable_dropped')",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64)),
            )
            .map_err(sql(&self.path))
    }

    /// The newest `n` verdicts, newest first (for the gate console).
    pub fn recent_verdicts(&self, n: usize) -> Result<Vec<Verdict>, LedgerError> {
        self.newest_json(
            "SELECT verdict_json FROM audit ORDER BY id DESC LIMIT ?1",
            n,
        )
    }

    /// The newest `n` alerts, newest first (for the gate console).
    pub fn recent_alerts(&self, n: usize) -> Result<Vec<Alert>, LedgerError> {
        self.newest_json("SELECT alert_json FROM alerts ORDER BY id DESC LIMIT ?1", n)
    }

    fn newest_json<T: serde::de::DeserializeOwned>(
        &self,
        sql_text: &str,
        n: usize,
    ) -> Result<Vec<T>, LedgerError> {
        let mut st = self.conn.prepare(sql_text).map_err(sql(&self.path))?;
        let rows = st
            .query_map([n as i64], |r| r.get::<_, String>(0))
            .map_err(sql(&self.path))?;
        let mut out = Vec::new();
        for json in rows {
            // A row this build cannot read is skipped, not fatal: the console is a view.
            if let Ok(v) = serde_json::from_str(&json.map_err(sql(&self.path))?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// When the oldest consumption the hub has not acknowledged was made.
    pub fn oldest_unsynced(&self) -> Result<Option<UnixTime>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT consumed_at FROM consumed WHERE seq = (SELECT MIN(seq) FROM outbox)",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(sql(&self.path))
    }
}

/// A write transaction holding a group of decisions; nothing is durable until [`Batch::commit`].
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
    path: PathBuf,
    head: [u8; 32],
    checkpoint: String,
    next_audit_id: i64,
    next_seq: i64,
    newest_decision_at: Option<UnixTime>,
}

impl Batch<'_> {
    /// The facts for a declaration, including decisions earlier in this batch.
    pub fn facts(
        &self,
        declaration_id: &str,
        license_id: Option<&str>,
    ) -> Result<LedgerFacts, LedgerError> {
        facts(
            &self.tx,
            &self.checkpoint,
            declaration_id,
            license_id,
            self.newest_decision_at,
        )
        .map_err(sql(&self.path))
    }

    /// Writes a decision: audit row, standing verdict, consumption and its signed record, alert.
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
                .map_err(sql(&path));
        }
        let (audit_id, verdict_json) = self
            .append_verdict(verdict, content_hash, now)
            .map_err(sql(&path))?;
        if *claims_declaration_id
            && let (Some(id), Some(hash)) = (&verdict.declaration_id, content_hash)
        {
            self.tx
                .prepare_cached(
                    "INSERT INTO declarations(declaration_id, content_hash, audit_id) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![id, &hash[..], audit_id]))
                .map_err(sql(&path))?;
        }
        let mut consumed_seq = None;
        if let (
            Some(Consumption {
                license_id,
                token_sha256,
            }),
            Some(decl_id),
            Some(hash),
        ) = (consume, &verdict.declaration_id, content_hash)
        {
            let seq = self.next_seq;
            let rec = ConsumptionRecord {
                checkpoint: identity.checkpoint.clone(),
                seq: seq as u64,
                license_id: license_id.clone(),
                declaration_id: decl_id.clone(),
                consumed_at: now,
                token_sha256: *token_sha256,
                declaration_sha256: hash,
            };
            // The primary key makes a second consumption impossible even if a caller erred.
            self.tx.prepare_cached("INSERT INTO consumed(license_id, declaration_id, consumed_at, seq, audit_id, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut st| st.execute(params![license_id, decl_id, now, seq, audit_id, rec.sign(&identity.key)]))
                .map_err(sql(&path))?;
            self.tx
                .prepare_cached("INSERT INTO outbox(seq) VALUES (?1)")
                .and_then(|mut st| st.execute([seq]))
                .map_err(sql(&path))?;
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

    /// Queues a message (`verdict` or `alert`) for publication; it stays until [`Ledger::delete_publications`].
    pub fn enqueue_publication(&mut self, kind: &str, payload: &str) -> Result<i64, LedgerError> {
        self.tx
            .prepare_cached("INSERT INTO publish_queue(kind, payload) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![kind, payload]))
            .map_err(sql(&self.path))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Removes publications the broker has acknowledged, as part of this batch.
    pub fn delete_publications(&mut self, ids: &[i64]) -> Result<(), LedgerError> {
        delete_queued(&self.tx, ids).map_err(sql(&self.path))
    }

    /// Stores an alert.
    pub fn record_alert(&mut self, alert: &Alert, now: UnixTime) -> Result<(), LedgerError> {
        insert_alert(&self.tx, alert, now)
            .map(|_| ())
            .map_err(sql(&self.path))
    }

    fn append_verdict(
        &mut self,
        verdict: &Verdict,
        content_hash: Option<[u8; 32]>,
        now: UnixTime,
    ) -> rusqlite::Result<(i64, String)> {
        let id = self.next_audit_id;
        let row = AuditRow {
            id,
            declaration_id: verdict.declaration_id.clone(),
            license_id: verdict.license_id.clone(),
            verdict: verdict.verdict.as_str().to_owned(),
            decided_at: now,
            content_hash: content_hash.map(|h| h.to_vec()),
            verdict_json: serde_json::to_string(verdict).unwrap_or_default(),
        };
        let hash = row.hash(&self.head);
        self.tx
            .prepare_cached(
                "INSERT INTO audit(id, declaration_id, license_id, verdict, decided_at, content_hash, verdict_json, prev_hash, row_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![row.id, row.declaration_id, row.license_id, row.verdict, row.decided_at, row.content_hash, row.verdict_json, &self.head[..], &hash[..]])?;
        self.head = hash;
        self.next_audit_id += 1;
        self.newest_decision_at = Some(self.newest_decision_at.map_or(now, |n| n.max(now)));
        Ok((id, row.verdict_json))
    }

    /// Makes the batch durable (one fsync for all its decisions).
    pub fn commit(self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        self.tx.prepare_cached("INSERT INTO meta(key, value) VALUES ('chain_head', ?1) ON CONFLICT(key) DO UPDATE SET value=excluded.value").and_then(|mut st| st.execute([hex::encode(self.head)]))
            .map_err(sql(&path))?;
        self.tx.commit().map_err(sql(&path))
    }
}

struct AuditRow {
    id: i64,
    declaration_id: Option<String>,
    license_id: Option<String>,
    verdict: String,
    decided_at: i64,
    content_hash: Option<Vec<u8>>,
    verdict_json: String,
}

impl AuditRow {
    /// H("permitgate-audit-v1" ‖ prev ‖ every column, length-prefixed).
    fn hash(&self, prev: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"permitgate-audit-v1");
        h.update(prev);
        h.update(self.id.to_be_bytes());
        for field in [
            self.declaration_id.as_deref().map(str::as_bytes),
            self.license_id.as_deref().map(str::as_bytes),
            Some(self.verdict.as_bytes()),
            self.content_hash.as_deref(),
            Some(self.verdict_json.as_bytes()),
        ] {
            match field {
                Some(b) => {
                    h.update([1]);
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
                None => h.update([0]),
            }
        }
        h.update(self.decided_at.to_be_bytes());
        h.finalize().into()
    }
}

fn chain_head(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    // Cached: it runs once per batch, on the decision path.
    let last: Option<Vec<u8>> = conn
        .prepare_cached("SELECT row_hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(last
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .unwrap_or(GENESIS))
}

/// The file beside a ledger that says it failed an integrity check.
pub fn damage_marker(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

/// The checkpoint id recorded in the ledger, if any.
fn stored_checkpoint(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key='checkpoint'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// Stores an alert unless one with the same `alert_id` is held; true if stored.
fn insert_alert(conn: &Connection, alert: &Alert, now: UnixTime) -> rusqlite::Result<bool> {
    let json = serde_json::to_string(alert).unwrap_or_default();
    let kind = alert.kind.as_str();
    conn.prepare_cached("INSERT OR IGNORE INTO alerts(raised_at, kind, declaration_id, license_id, alert_json, alert_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut st| st.execute(params![now, kind, alert.declaration_id, alert.license_id, json, alert.alert_id]))
    .map(|n| n == 1)
}

fn delete_queued(conn: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM publish_queue WHERE id = ?1")?;
    for id in ids {
        stmt.execute([id])?;
    }
    Ok(())
}

// The decision path's lookups. Each is one table and has no ORDER BY:
// SQLite (built with STAT4) prepares a join or a sorted query again on every
// new binding, which the profile showed as a quarter of the ledger stage.
const PRIOR_SQL: &str = "SELECT content_hash, audit_id FROM declarations WHERE declaration_id = ?1";
const AUDIT_VERDICT_SQL: &str = "SELECT verdict_json FROM audit WHERE id = ?1";
const CONSUMED_SQL: &str = "SELECT declaration_id, consumed_at FROM consumed WHERE license_id = ?1";
const REMOTE_SQL: &str =
    "SELECT checkpoint, declaration_id, consumed_at FROM remote_consumptions WHERE license_id = ?1";

/// When the newest verdict was given (`None` on an empty ledger).
fn newest_decision_at(conn: &Connection) -> rusqlite::Result<Option<UnixTime>> {
    conn.prepare_cached("SELECT MAX(decided_at) FROM audit")?
        .query_row([], |r| r.get(0))
}

fn facts(
    conn: &Connection,
    here: &str,
    declaration_id: &str,
    license_id: Option<&str>,
    newest_decision_at: Option<UnixTime>,
) -> rusqlite::Result<LedgerFacts> {
    let standing: Option<(Vec<u8>, i64)> = conn
        .prepare_cached(PRIOR_SQL)?
        .query_row([declaration_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let prior = match standing {
        Some((hash, audit_id)) => {
            let json: String = conn
                .prepare_cached(AUDIT_VERDICT_SQL)?
                .query_row([audit_id], |r| r.get(0))?;
            hash.as_slice().try_into().ok().and_then(|content_hash| {
                Some(PriorDecision {
                    content_hash,
                    verdict: serde_json::from_str(&json).ok()?,
                })
            })
        }
        None => None,
    };
    let mut uses = Vec::new();
    if let Some(lic) = license_id {
        if let Some((decl, at)) = conn
            .prepare_cached(CONSUMED_SQL)?
            .query_row([lic], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .optional()?
        {
            uses.push(LicenseUse {
                checkpoint: here.to_owned(),
                declaration_id: decl,
                at,
            });
        }
        let mut stmt = conn.prepare_cached(REMOTE_SQL)?;
        let mut remote = stmt
            .query_map([lic], |r| {
                Ok(LicenseUse {
                    checkpoint: r.get(0)?,
                    declaration_id: r.get(1)?,
                    at: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        remote.sort_by_key(|u| u.at);
        uses.append(&mut remote);
    }
    Ok(LedgerFacts {
        prior,
        uses,
        newest_decision_at,
    })
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate;
    use crate::policy::Policy;
    use crate::token;
    use crate::verdict::VerdictKind;

    /// A policy trusting a fresh issuer, a token it issued, and a checkpoint identity.
    fn setup() -> (tempfile::TempDir, Policy, String, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::keys::generate();
        crate::keys::write_keypair(dir.path(), "issuer", &key).unwrap();
        let p = dir.path().join("policy.toml");
        std::fs::write(&p, include_str!("../../tests/data/policy.toml")).unwrap();
        let policy = Policy::load(&p).unwrap();
        let lic =
            crate::token::License::from_claims_json(include_str!("../../tests/data/claims.json"))
                .unwrap();
        let tok = token::text::encode(&token::issue(&lic, "mofcom-2025-1", &key));
        let identity = Identity {
            checkpoint: "p1".into(),
            key: crate::keys::generate(),
        };
        (dir, policy, tok, identity)
    }

    fn payload(id: &str, tok: &str) -> Vec<u8> {
        let mut d: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/declaration.json")).unwrap();
        d["declaration_id"] = id.into();
        d["license"] = tok.into();
        d.to_string().into_bytes()
    }

    #[test]
    fn one_batch_sees_its_own_decisions_and_commits_once() {
        let (dir, policy, tok, identity) = setup();
        let now = crate::clock::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let path = dir.path().join("l.db");
        let mut ledger = Ledger::open(&path, "p1").unwrap();
        let mut batch = ledger.begin().unwrap();
        let mut kinds = Vec::new();
        for id in ["A", "B", "A"] {
            let prepared = gate::prepare(&payload(id, &tok), &policy, 1 << 20);
            let out =
                gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now).unwrap();
            kinds.push((out.verdict.verdict, out.repeated, out.recorded.consumed_seq));
        }
        batch.commit().unwrap();
        assert_eq!(
            kinds,
            [
                (VerdictKind::Cleared, false, Some(1)),
                (VerdictKind::Rejected, false, None),
                (VerdictKind::Cleared, true, None)
            ]
        );
        assert_eq!(ledger.counts().unwrap(), (2, 1, 1));

        // The consumption record verifies with the checkpoint's key.
        let rec: Vec<u8> = ledger
            .conn
            .query_row("SELECT record FROM consumed WHERE seq = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        let vk = identity.key.verifying_key();
        let r = ConsumptionRecord::verify(&rec, |k| (k == "p1").then_some(vk)).unwrap();
        assert_eq!(
            (r.license_id.as_str(), r.declaration_id.as_str()),
            ("LIC-2025-000123", "A")
        );
    }

    #[test]
    fn batches_continue_numbering_and_lookups_are_prepared_once() {
        let (dir, policy, tok, identity) = setup();
        let other = {
            let issuer = crate::keys::load_signing_key(&dir.path().join("issuer.key.pem")).unwrap();
            let mut lic = token::tests::sample_license();
            lic.license_id = "LIC-2025-000124".into();
            token::text::encode(&token::issue(&lic, "mofcom-2025-1", &issuer))
        };
        let now = crate::clock::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
        let mut seqs = Vec::new();
        for (id, t) in [("A", &tok), ("A", &tok), ("B", &other), ("C", &tok)] {
            let mut batch = ledger.begin().unwrap();
            let prepared = gate::prepare(&payload(id, t), &policy, 1 << 20);
            let out =
                gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now).unwrap();
            batch.commit().unwrap();
            seqs.push((out.recorded.audit_id, out.recorded.consumed_seq));
        }
        // C reuses A's license: a verdict, no consumption.
        assert_eq!(
            seqs,
            [
                (Some(1), Some(1)),
                (None, None),
                (Some(2), Some(2)),
                (Some(3), None)
            ]
        );
        assert_eq!(ledger.check().unwrap(), Ok(3));
        for sql_text in [PRIOR_SQL, AUDIT_VERDICT_SQL, CONSUMED_SQL, REMOTE_SQL] {
            let st = ledger.conn.prepare_cached(sql_text).unwrap();
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql_text} was prepared again on a new binding"
            );
        }
    }

    #[test]
    fn an_uncommitted_batch_leaves_nothing_behind() {
        let (dir, policy, tok, identity) = setup();
        let path = dir.path().join("l.db");
        let mut ledger = Ledger::open(&path, "p1").unwrap();
        {
            let mut batch = ledger.begin().unwrap();
            let prepared = gate::prepare(&payload("A", &tok), &policy, 1 << 20);
            gate::decide_and_record(&mut batch, &prepared, &policy, &identity, 1_772_000_000)
                .unwrap();
            // Dropped without commit, as in a crash.
        }
        assert_eq!(ledger.counts().unwrap(), (0, 0, 0));
        assert_eq!(ledger.check().unwrap(), Ok(0));
    }

    #[test]
    fn foreign_and_corrupt_files_are_refused_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        drop(Ledger::open(&path, "p1").unwrap());
        let e = Ledger::open(&path, "p2").err().unwrap().to_string();
        assert!(e.contains("belongs to checkpoint `p1`"), "{e}");

        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        let e = Ledger::open_checking_later(&junk, "p1")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a readable SQLite database"), "{e}");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        let e = Ledger::open(&junk, "p1").err().unwrap().to_string();
        assert!(e.contains("junk.db"), "{e}");
        assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5a; 8192]);
    }

    #[test]
    fn a_remote_record_for_a_license_consumed_here_raises_double_use_once() {
        let (dir, policy, tok, identity) = setup();
        let now = crate::clock::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
        let mut batch = ledger.begin().unwrap();
        let prepared = gate::prepare(&payload("A", &tok), &policy, 1 << 20);
        gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now).unwrap();
        batch.commit().unwrap();

        let other = crate::keys::generate();
        let remote = ConsumptionRecord {
            checkpoint: "p2".into(),
            seq: 1,
            license_id: "LIC-2025-000123".into(),
            declaration_id: "Z".into(),
            consumed_at: now - 60,
            token_sha256: [0; 32],
            declaration_sha256: [0; 32],
        };
        let bytes = remote.sign(&other);
        let entry = [(1, remote, bytes)];
        let out = ledger.store_feed(&entry, now).unwrap();
        assert_eq!((out.stored, out.high_water), (1, 1));
        assert_eq!(
            out.publications.len(),
            1,
            "one alert, queued for publication"
        );
        let alert: Alert = serde_json::from_str(&out.publications[0].2).unwrap();
        assert_eq!(alert.kind, crate::verdict::AlertKind::DoubleUse);
        let mut who: Vec<_> = alert
            .records
            .iter()
            .map(|r| r.checkpoint.as_str())
            .collect();
        who.sort();
        assert_eq!(who, ["p1", "p2"]);
        // The same entry again (redelivery, backfill) changes nothing.
        let again = ledger.store_feed(&entry, now).unwrap();
        assert_eq!((again.stored, again.publications.len()), (0, 0));
    }
}
