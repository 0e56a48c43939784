//! The SQLite ledger: consumed licenses, the hash-chained audit log of every
//! verdict, the outbox of signed consumption records, and alerts.
//!
//! Design: WAL with `synchronous=FULL`, so a commit survives a power cut;
//! speed comes from committing many decisions per transaction ([`Batch`]).

mod alert_work;
mod batch;
mod check;
mod holds;
mod log;
mod open;
mod queue;
mod reads;
pub(crate) mod schema;
mod sync;
mod unreadable;

pub use alert_work::{
    AlertAction, AlertActionError, AlertHistoryEntry, AlertRow, AlertState, next_state,
};
pub use batch::Batch;
pub use check::CheckReport;
pub use holds::Held;
pub use log::OutboxProofs;
pub use open::damage_marker;
pub use sync::{FeedConflict, FeedOutcome, VerifiedEntry};

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, params};

use crate::clock::UnixTime;
use crate::decision::{LedgerFacts, LicenseUse, PriorDecision};
use crate::verdict::Alert;

/// A ledger operation that failed: the ledger's file (said once), what
/// was being done, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("ledger {path}: {operation}: {failure}")]
pub struct LedgerError {
    /// The ledger file.
    pub path: PathBuf,
    /// What was being done.
    pub operation: Operation,
    /// What went wrong.
    #[source]
    pub failure: Failure,
}

/// The ledger operations, as errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Opening, creating, claiming or checking the file.
    Open,
    /// Deciding and committing a batch.
    Decide,
    /// Reading for reports, exports and status.
    Read,
    /// The queue of verdicts and alerts for the broker.
    Publish,
    /// Storing what the hub sent, and what goes to it.
    Sync,
    /// The signed log and its checks.
    Log,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Open => "opening",
            Operation::Decide => "deciding",
            Operation::Read => "reading",
            Operation::Publish => "the publication queue",
            Operation::Sync => "sync",
            Operation::Log => "its signed log",
        })
    }
}

/// What went wrong in a ledger operation.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// SQLite reported an error.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    /// What was read could not be written out (a closed pipe, a full disk).
    #[error("writing what it holds: {0}")]
    Output(#[source] std::io::Error),
    /// The file is not a usable ledger, and why.
    #[error("{0}")]
    Unusable(String),
}

impl LedgerError {
    /// The error of `operation` on the ledger at `path`.
    pub fn new(path: &Path, operation: Operation, failure: Failure) -> LedgerError {
        LedgerError {
            path: path.to_owned(),
            operation,
            failure,
        }
    }

    /// The file at `path` is not a usable ledger for `operation`, because `why`.
    pub fn unusable(path: &Path, operation: Operation, why: impl Into<String>) -> LedgerError {
        LedgerError::new(path, operation, Failure::Unusable(why.into()))
    }

    /// Whether the storage failed (disk full, read-only, I/O error, held
    /// locked) rather than the data: the same write may succeed later.
    pub fn is_storage_fault(&self) -> bool {
        use rusqlite::ErrorCode as C;
        matches!(
            &self.failure,
            Failure::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if matches!(
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

/// The ledger's totals, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerCounts {
    /// Verdicts in the audit log.
    pub verdicts: u64,
    /// Licenses consumed here.
    pub consumed: u64,
    /// Consumption records not yet in the hub's log.
    pub outbox: u64,
}

/// What a queued publication is; it decides the topic it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationKind {
    /// A verdict, for `…/verdicts`.
    Verdict,
    /// An alert, for `…/alerts`.
    Alert,
}

impl PublicationKind {
    /// As stored in the ledger's queue.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicationKind::Verdict => "verdict",
            PublicationKind::Alert => "alert",
        }
    }

    /// From the ledger's queue; anything but `alert` is a verdict, as before.
    pub fn from_stored(kind: &str) -> PublicationKind {
        if kind == "alert" {
            PublicationKind::Alert
        } else {
            PublicationKind::Verdict
        }
    }
}

/// A verdict or alert queued in the ledger until the broker acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Its id in the queue.
    pub id: i64,
    /// Verdict or alert.
    pub kind: PublicationKind,
    /// The JSON published.
    pub payload: String,
}

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
    /// Starts a write transaction (`BEGIN IMMEDIATE`) for a group of
    /// decisions; `identity`'s key signs the tree head at its commit.
    pub fn begin(&mut self, identity: &Identity) -> Result<Batch<'_>, LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, Operation::Decide))?;
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
        .map_err(sql(&path, Operation::Decide))?;
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
            .map_err(sql(&self.path, Operation::Read))
    }
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

/// Statements run through the connection's statement cache: the ones sync
/// runs on every message are parsed once, not on every call.
pub(crate) trait Cached {
    /// `execute`, with the statement cached.
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `query_row`, with the statement cached.
    fn row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_cached<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Maps SQLite's errors in `operation` on the ledger at `path`.
pub(super) fn sql(
    path: &Path,
    operation: Operation,
) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::new(path, operation, Failure::Sqlite(source))
}

#[cfg(test)]
mod tests;
