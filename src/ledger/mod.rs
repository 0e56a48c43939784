//! The SQLite ledger: consumed licenses, the hash-chained audit log of every
//! verdict, the outbox of signed consumption records, and alerts.
//!
//! Design: WAL with `synchronous=FULL`, so a commit survives a power cut;
//! speed comes from committing many decisions per transaction ([`Batch`]).

mod batch;
mod check;
mod log;
pub(crate) mod schema;
mod sync;
mod unreadable;

pub use batch::Batch;
pub use check::CheckReport;
pub use log::OutboxProofs;
pub use sync::{FeedConflict, FeedOutcome, VerifiedEntry};

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::clock::UnixTime;
use crate::decision::{LedgerFacts, LicenseUse, PriorDecision};
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

    /// Marks the ledger damaged (the marker file beside it) for `why`, and
    /// returns the error that says so.
    pub fn mark_damaged(&self, why: &str) -> LedgerError {
        let _ = std::fs::write(damage_marker(&self.path), format!("{why}\n"));
        LedgerError::Unusable {
            path: self.path.clone(),
            message: why.to_owned(),
        }
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

    /// Starts a write transaction (`BEGIN IMMEDIATE`) for a group of
    /// decisions; `identity`'s key signs the tree head at its commit.
    pub fn begin(&mut self, identity: &Identity) -> Result<Batch<'_>, LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path))?;
        // Read once per batch; the batch keeps them as it appends.
        let next = (|| -> rusqlite::Result<(i64, i64, i64, Option<UnixTime>)> {
            let audit_id = tx
                .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM audit")?
                .query_row([], |r| r.get(0))?;
            let seq = tx
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM consumed")?
                .query_row([], |r| r.get(0))?;
            let leaf = tx
                .prepare_cached("SELECT COALESCE(MAX(n) + 1, 0) FROM log_leaves")?
                .query_row([], |r| r.get(0))?;
            Ok((audit_id, seq, leaf, newest_decision_at(&tx)?))
        })()
        .map_err(sql(&path))?;
        Ok(Batch {
            tx,
            path,
            checkpoint: self.checkpoint.clone(),
            key: identity.key.clone(),
            next_audit_id: next.0,
            next_seq: next.1,
            next_leaf: next.2 as u64,
            appended: 0,
            newest_decision_at: next.3,
            last_now: None,
            clock: crate::clock_trust::ClockStatus::Unknown,
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
pub(super) fn insert_alert(
    conn: &Connection,
    alert: &Alert,
    now: UnixTime,
) -> rusqlite::Result<bool> {
    let json = serde_json::to_string(alert).unwrap_or_default();
    let kind = alert.kind.as_str();
    conn.prepare_cached("INSERT OR IGNORE INTO alerts(raised_at, kind, declaration_id, license_id, alert_json, alert_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut st| st.execute(params![now, kind, alert.declaration_id, alert.license_id, json, alert.alert_id]))
    .map(|n| n == 1)
}

pub(super) fn delete_queued(conn: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
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

/// When the newest verdict was given (`None` on an empty ledger), among
/// those after the last confirmation of the clock (`permitgate clock confirm`).
fn newest_decision_at(conn: &Connection) -> rusqlite::Result<Option<UnixTime>> {
    conn.prepare_cached(
        "SELECT MAX(decided_at) FROM audit WHERE id > (SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) FROM meta WHERE key = 'clock_floor')",
    )?
    .query_row([], |r| r.get(0))
}

pub(super) fn facts(
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

pub(super) fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
