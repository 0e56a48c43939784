//! The hub's store: every verified consumption record of every checkpoint,
//! in one global order, and the alerts raised about them.
//!
//! Design: SQLite in WAL mode with `synchronous=FULL`. Records are unique by
//! (checkpoint, seq), so a redelivered batch or a second hub process storing
//! the same record changes nothing; the global number is the row id, given
//! in commit order. Several hub processes on one machine share one file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::clock::UnixTime;
use crate::record::{ConsumptionRecord, double_use_alert};
use crate::verdict::Alert;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("hub store {path}: {message}")]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

const MIGRATIONS: &[&str] = &["
    CREATE TABLE records (
        g           INTEGER PRIMARY KEY,
        checkpoint  TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        license_id  TEXT    NOT NULL,
        record      BLOB    NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (checkpoint, seq)
    );
    CREATE INDEX records_license ON records(license_id);
    CREATE TABLE checkpoints (
        checkpoint TEXT PRIMARY KEY,
        contiguous INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alerts (
        id         INTEGER PRIMARY KEY,
        alert_id   TEXT UNIQUE,
        kind       TEXT    NOT NULL,
        raised_at  INTEGER NOT NULL,
        alert_json TEXT    NOT NULL
    );
"];

/// What storing a batch changed.
#[derive(Debug, Default)]
pub struct Stored {
    /// Records stored now for the first time: (global number, signed bytes).
    pub new_entries: Vec<(u64, Vec<u8>)>,
    /// Each checkpoint in the batch and the highest number up to which all its records are held.
    pub contiguous: Vec<(String, u64)>,
    /// Alerts raised now (double use, conflicting records), each stored once.
    pub alerts: Vec<Alert>,
}

/// An open hub store.
pub struct HubStore {
    conn: Connection,
    path: PathBuf,
}

impl HubStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<HubStore, StoreError> {
        let err = |message: String| StoreError {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        }
        let mut conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| err(format!("not a readable SQLite database ({e})")))?;
        if check != "ok" {
            return Err(err(format!("integrity check failed: {check}")));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .map_err(|e| err(e.to_string()))?;
        crate::ledger::schema::migrate_with(&mut conn, MIGRATIONS).map_err(err)?;
        Ok(HubStore {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Stores verified records in one transaction; idempotent.
    pub fn store(
        &mut self,
        records: &[(ConsumptionRecord, Vec<u8>)],
        now: UnixTime,
    ) -> Result<Stored, StoreError> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| StoreError {
            path: path.clone(),
            message: e.to_string(),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut out = Stored::default();
        let mut touched: Vec<String> = Vec::new();
        for (rec, bytes) in records {
            if !touched.contains(&rec.checkpoint) {
                touched.push(rec.checkpoint.clone());
            }
            let held: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT record FROM records WHERE checkpoint=?1 AND seq=?2",
                    params![rec.checkpoint, rec.seq as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if let Some(held) = held {
                if held != *bytes {
                    // Two different signed records under one number: the
                    // checkpoint's key signed both. Keep the first, raise it.
                    let mut a = crate::record::double_use_alert(
                        &[
                            (
                                ConsumptionRecord::parse_unverified(&held)
                                    .unwrap_or_else(|_| rec.clone()),
                                held.clone(),
                            ),
                            (rec.clone(), bytes.clone()),
                        ],
                        "hub",
                        now,
                    );
                    a.kind = crate::verdict::AlertKind::RefusedRecord;
                    a.detail = Some(format!(
                        "checkpoint `{}` signed two different records numbered {}",
                        rec.checkpoint, rec.seq
                    ));
                    if insert_alert(&tx, &a, now).map_err(err)? {
                        out.alerts.push(a);
                    }
                }
                continue;
            }
            // Global numbers have no gaps (agents track the highest contiguous
            // one), so they are counted here, not left to rowid allocation.
            let g: i64 = tx
                .query_row("SELECT COALESCE(MAX(g), 0) + 1 FROM records", [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            tx.execute(
                "INSERT INTO records(g, checkpoint, seq, license_id, record, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![g, rec.checkpoint, rec.seq as i64, rec.license_id, bytes, now],
            )
            .map_err(err)?;
            let g = g as u64;
            out.new_entries.push((g, bytes.clone()));
            // Every record of this license, this one included.
            let mut stmt = tx
                .prepare_cached("SELECT record FROM records WHERE license_id=?1 ORDER BY g")
                .map_err(err)?;
            let all: Vec<Vec<u8>> = stmt
                .query_map([&rec.license_id], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(err)?;
            if all.len() > 1 {
                let evidence: Vec<(ConsumptionRecord, Vec<u8>)> = all
                    .into_iter()
                    .filter_map(|b| Some((ConsumptionRecord::parse_unverified(&b).ok()?, b)))
                    .collect();
                let a = double_use_alert(&evidence, "hub", now);
                if insert_alert(&tx, &a, now).map_err(err)? {
                    out.alerts.push(a);
                }
            }
        }
        for cp in touched {
            let mut n: i64 = tx
                .query_row(
                    "SELECT contiguous FROM checkpoints WHERE checkpoint=?1",
                    [&cp],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?
                .unwrap_or(0);
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM records WHERE checkpoint=?1 AND seq=?2")
                .map_err(err)?;
            while exists.exists(params![cp, n + 1]).map_err(err)? {
                n += 1;
            }
            drop(exists);
            tx.execute(
                "INSERT INTO checkpoints(checkpoint, contiguous) VALUES (?1, ?2) ON CONFLICT(checkpoint) DO UPDATE SET contiguous=excluded.contiguous",
                params![cp, n],
            )
            .map_err(err)?;
            out.contiguous.push((cp, n as u64));
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Stores an alert the hub raised outside a batch (a refused record); false if already held.
    pub fn record_alert(&mut self, alert: &Alert, now: UnixTime) -> Result<bool, StoreError> {
        let path = self.path.clone();
        insert_alert(&self.conn, alert, now).map_err(|e| StoreError {
            path,
            message: e.to_string(),
        })
    }

    /// The signed record stored for (checkpoint, seq), if any.
    pub fn held(&self, checkpoint: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .prepare_cached("SELECT record FROM records WHERE checkpoint=?1 AND seq=?2")
            .and_then(|mut st| {
                st.query_row(params![checkpoint, seq as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err())
    }

    /// Up to `limit` feed entries after global number `after`, ascending.
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT g, record FROM records WHERE g > ?1 ORDER BY g LIMIT ?2")
            .map_err(self.err())?;
        stmt.query_map(params![after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// The highest global number assigned (0 when empty).
    pub fn head(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(g), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|g| g as u64)
            .map_err(self.err())
    }

    /// Records held, and alerts raised.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM alerts)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.err())
    }
}

/// Stores an alert unless one with the same `alert_id` is held; true if stored.
fn insert_alert(conn: &Connection, alert: &Alert, now: UnixTime) -> rusqlite::Result<bool> {
    let kind = alert.kind.as_str();
    let n = conn.execute(
        "INSERT OR IGNORE INTO alerts(alert_id, kind, raised_at, alert_json) VALUES (?1, ?2, ?3, ?4)",
        params![
            alert.alert_id,
            kind,
            now,
            serde_json::to_string(alert).unwrap_or_default()
        ],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        cp: &str,
        key: &ed25519_dalek::SigningKey,
        seq: u64,
        lic: &str,
    ) -> (ConsumptionRecord, Vec<u8>) {
        let r = ConsumptionRecord {
            checkpoint: cp.into(),
            seq,
            license_id: lic.into(),
            declaration_id: format!("D-{cp}-{seq}"),
            consumed_at: 1_780_000_000 + seq as i64,
            token_sha256: [1; 32],
            declaration_sha256: [2; 32],
        };
        let b = r.sign(key);
        (r, b)
    }

    #[test]
    fn stores_once_orders_globally_and_tracks_contiguity() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = HubStore::open(&dir.path().join("hub.db")).unwrap();
        let ka = crate::keys::generate();
        let kb = crate::keys::generate();
        let out = s
            .store(
                &[
                    rec("a", &ka, 1, "L1"),
                    rec("a", &ka, 3, "L3"),
                    rec("b", &kb, 1, "LB"),
                ],
                10,
            )
            .unwrap();
        assert_eq!(
            out.new_entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(out.contiguous, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
        // Redelivery stores nothing; the gap filled moves contiguity on.
        let out = s
            .store(&[rec("a", &ka, 1, "L1"), rec("a", &ka, 2, "L2")], 11)
            .unwrap();
        assert_eq!(out.new_entries.len(), 1);
        assert_eq!(out.contiguous, [("a".to_owned(), 3)]);
        assert_eq!(s.counts().unwrap(), (4, 0));
        assert_eq!(s.head().unwrap(), 4);
        assert_eq!(
            s.feed_after(2, 10)
                .unwrap()
                .iter()
                .map(|e| e.0)
                .collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn a_license_consumed_twice_raises_one_double_use_with_both_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = HubStore::open(&dir.path().join("hub.db")).unwrap();
        let ka = crate::keys::generate();
        let kb = crate::keys::generate();
        assert!(
            s.store(&[rec("a", &ka, 1, "L")], 10)
                .unwrap()
                .alerts
                .is_empty()
        );
        let out = s.store(&[rec("b", &kb, 1, "L")], 11).unwrap();
        assert_eq!(out.alerts.len(), 1);
        let a = &out.alerts[0];
        assert_eq!(a.kind, crate::verdict::AlertKind::DoubleUse);
        assert_eq!(a.records.len(), 2);
        // The evidence verifies with each checkpoint's key.
        for e in &a.records {
            let key = if e.checkpoint == "a" {
                ka.verifying_key()
            } else {
                kb.verifying_key()
            };
            let bytes = hex::decode(&e.cose_hex).unwrap();
            ConsumptionRecord::verify(&bytes, |_| Some(key)).unwrap();
        }
        // Both records kept; a redelivery raises nothing new.
        assert!(
            s.store(&[rec("b", &kb, 1, "L")], 12)
                .unwrap()
                .alerts
                .is_empty()
        );
        assert_eq!(s.counts().unwrap(), (2, 1));
    }

    #[test]
    fn two_records_under_one_number_are_raised_and_the_first_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = HubStore::open(&dir.path().join("hub.db")).unwrap();
        let ka = crate::keys::generate();
        s.store(&[rec("a", &ka, 1, "L1")], 10).unwrap();
        let out = s.store(&[rec("a", &ka, 1, "OTHER")], 11).unwrap();
        assert!(out.new_entries.is_empty());
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].kind, crate::verdict::AlertKind::RefusedRecord);
        assert_eq!(s.feed_after(0, 10).unwrap().len(), 1);
    }
}
