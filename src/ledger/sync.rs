//! The checkpoint's side of sync in the ledger: the outbox of its own
//! records, the hub's feed of everyone's, and alerts learned from the hub.

use rusqlite::{OptionalExtension, params};

use super::{Ledger, LedgerError, Publication, insert_alert, sql};
use crate::clock::UnixTime;
use crate::record::{ConsumptionRecord, double_use_alert};
use crate::verdict::Alert;

/// What storing feed entries changed.
#[derive(Debug, Default)]
pub struct FeedOutcome {
    /// Entries stored now for the first time.
    pub stored: usize,
    /// Every feed entry up to this global number is held here.
    pub high_water: u64,
    /// Alerts raised (double use of a license consumed here), queued for publication.
    pub publications: Vec<Publication>,
    /// Entries refused because they contradict what is held; none of them stored.
    pub conflicts: Vec<FeedConflict>,
}

/// A feed entry that contradicts what the ledger already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedConflict {
    /// The hub gave this global number to another record before.
    GlobalNumber {
        /// The global number.
        g: u64,
        /// The record held under it, as (checkpoint, seq).
        held: (String, u64),
        /// The record now offered, as (checkpoint, seq).
        offered: (String, u64),
    },
    /// The checkpoint's key signed two different records with one number.
    Record {
        /// The checkpoint.
        checkpoint: String,
        /// The number.
        seq: u64,
    },
}

impl std::fmt::Display for FeedConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedConflict::GlobalNumber { g, held, offered } => write!(
                f,
                "the hub numbered {}#{} as entry {g}, which it gave to {}#{} before",
                offered.0, offered.1, held.0, held.1
            ),
            FeedConflict::Record { checkpoint, seq } => write!(
                f,
                "two different records signed by {checkpoint} under number {seq}"
            ),
        }
    }
}

impl Ledger {
    /// Own records not yet acknowledged by the hub with `seq > after`, ascending: (seq, signed record).
    pub fn outbox_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.seq, c.record FROM outbox o JOIN consumed c ON c.seq = o.seq WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2",
            )
            .map_err(sql(&self.path))?;
        stmt.query_map(params![after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(sql(&self.path))
    }

    /// Remembers that own records up to `seq` went to the hub at least once.
    pub fn note_sent(&mut self, seq: u64) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES ('sent_high', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                [seq.to_string()],
            )
            .map(|_| ())
            .map_err(sql(&self.path))
    }

    /// The highest own record ever sent to the hub (0: none).
    pub fn sent_high(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'sent_high'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .map_err(sql(&self.path))
    }

    /// Clears the outbox up to `contiguous` (the hub holds 1..=contiguous); returns what is left.
    ///
    /// Design: the caller has checked the acknowledgement's signature and
    /// that it claims no more than [`Ledger::sent_high`].
    pub fn acknowledge_outbox(&mut self, contiguous: u64) -> Result<u64, LedgerError> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [contiguous as i64])
            .map_err(sql(&self.path))?;
        self.outbox_depth()
    }

    /// Records waiting for the hub's acknowledgement.
    pub fn outbox_depth(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql(&self.path))
    }

    /// Every feed entry up to this global number is held here.
    pub fn feed_high_water(&self) -> Result<u64, LedgerError> {
        high_water(&self.conn).map_err(sql(&self.path))
    }

    /// Stores feed entries from the hub in one transaction: other
    /// checkpoints' records become remote consumptions; one for a license
    /// consumed here raises `double_use`. Idempotent. An entry that
    /// contradicts what is held (another record under a global number or
    /// under a checkpoint's number) is not stored but returned as a conflict.
    ///
    /// Design: the caller has verified every record and the hub's seal.
    pub fn store_feed(
        &mut self,
        entries: &[(u64, ConsumptionRecord, Vec<u8>)],
        now: UnixTime,
    ) -> Result<FeedOutcome, LedgerError> {
        let here = self.checkpoint.clone();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path))?;
        let mut out = FeedOutcome::default();
        for (g, rec, bytes) in entries {
            let held_at_g: Option<(String, i64)> = tx
                .query_row(
                    "SELECT checkpoint, seq FROM hub_feed WHERE g = ?1",
                    [*g as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql(&path))?;
            if let Some((cp, seq)) = held_at_g
                && (cp != rec.checkpoint || seq as u64 != rec.seq)
            {
                out.conflicts.push(FeedConflict::GlobalNumber {
                    g: *g,
                    held: (cp, seq as u64),
                    offered: (rec.checkpoint.clone(), rec.seq),
                });
                continue;
            }
            let held_record: Option<Vec<u8>> = if rec.checkpoint == here {
                tx.query_row(
                    "SELECT record FROM consumed WHERE seq = ?1",
                    [rec.seq as i64],
                    |r| r.get(0),
                )
            } else {
                tx.query_row(
                    "SELECT record FROM remote_consumptions WHERE checkpoint = ?1 AND seq = ?2",
                    params![rec.checkpoint, rec.seq as i64],
                    |r| r.get(0),
                )
            }
            .optional()
            .map_err(sql(&path))?;
            if held_record.as_ref().is_some_and(|h| h != bytes) {
                out.conflicts.push(FeedConflict::Record {
                    checkpoint: rec.checkpoint.clone(),
                    seq: rec.seq,
                });
                continue;
            }
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO hub_feed(g, checkpoint, seq) VALUES (?1, ?2, ?3)",
                    params![*g as i64, rec.checkpoint, rec.seq as i64],
                )
                .map_err(sql(&path))?;
            out.stored += new;
            if rec.checkpoint == here {
                continue;
            }
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO remote_consumptions(checkpoint, seq, license_id, declaration_id, consumed_at, record, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![rec.checkpoint, rec.seq as i64, rec.license_id, rec.declaration_id, rec.consumed_at, bytes, now],
                )
                .map_err(sql(&path))?;
            if inserted == 0 {
                continue;
            }
            let own: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT record FROM consumed WHERE license_id = ?1",
                    [&rec.license_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql(&path))?;
            let Some(own) = own else { continue };
            // The same set of records the hub sees, so the same alert id.
            let mut evidence = Vec::new();
            if let Ok(r) = ConsumptionRecord::parse_unverified(&own) {
                evidence.push((r, own));
            }
            let mut stmt = tx
                .prepare_cached("SELECT record FROM remote_consumptions WHERE license_id = ?1")
                .map_err(sql(&path))?;
            let remote: Vec<Vec<u8>> = stmt
                .query_map([&rec.license_id], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(sql(&path))?;
            for b in remote {
                if let Ok(r) = ConsumptionRecord::parse_unverified(&b) {
                    evidence.push((r, b));
                }
            }
            let alert = double_use_alert(&evidence, &here, now);
            if let Some(p) = queue_alert(&tx, &alert, now).map_err(sql(&path))? {
                out.publications.push(p);
            }
        }
        out.high_water = advance_high_water(&tx).map_err(sql(&path))?;
        tx.commit().map_err(sql(&path))?;
        Ok(out)
    }

    /// Stores an alert raised by sync (a double use proven by the hub's
    /// evidence, a refused message) and queues it for publication here;
    /// `None` if the same alert is already held.
    pub fn queue_sync_alert(
        &mut self,
        alert: &Alert,
        now: UnixTime,
    ) -> Result<Option<Publication>, LedgerError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql(&path))?;
        let p = queue_alert(&tx, alert, now).map_err(sql(&path))?;
        tx.commit().map_err(sql(&path))?;
        Ok(p)
    }
}

impl Ledger {
    /// Keeps a signed policy bundle so it survives a restart offline.
    pub fn store_policy_bundle(
        &mut self,
        version: u64,
        bundle: &[u8],
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO policy_bundles(version, bundle, received_at) VALUES (?1, ?2, ?3)",
                params![version as i64, bundle, now],
            )
            .map(|_| ())
            .map_err(sql(&self.path))
    }

    /// The newest stored policy bundle.
    pub fn newest_policy_bundle(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        self.conn
            .query_row(
                "SELECT bundle FROM policy_bundles ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path))
    }
}

/// Stores the alert once and queues it for publication.
fn queue_alert(
    conn: &rusqlite::Connection,
    alert: &Alert,
    now: UnixTime,
) -> rusqlite::Result<Option<Publication>> {
    if !insert_alert(conn, alert, now)? {
        return Ok(None);
    }
    let json = serde_json::to_string(alert).unwrap_or_default();
    conn.execute(
        "INSERT INTO publish_queue(kind, payload) VALUES ('alert', ?1)",
        [&json],
    )?;
    Ok(Some((conn.last_insert_rowid(), "alert".into(), json)))
}

fn high_water(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'feed_high_water'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0) as u64)
}

fn advance_high_water(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let mut hw = high_water(conn)?;
    let mut next = conn.prepare_cached("SELECT 1 FROM hub_feed WHERE g = ?1")?;
    while next.exists([(hw + 1) as i64])? {
        hw += 1;
    }
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('feed_high_water', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [hw.to_string()],
    )?;
    Ok(hw)
}
