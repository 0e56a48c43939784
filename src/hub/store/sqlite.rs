//! The hub's store on SQLite, for one machine.
//!
//! Design: SQLite in WAL mode with `synchronous=FULL`. Records are unique by
//! (checkpoint, seq), so a redelivered batch or a second hub process storing
//! the same record changes nothing; the global number is the leaf's index
//! plus one, given inside the `BEGIN IMMEDIATE` transaction that appends it,
//! so hub processes sharing the file keep one gap-free log.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Placed, PostHead, StoreError, Stored, blob_hashes, hashes_blob};
use crate::clock::UnixTime;
use crate::ledger::Cached;
use crate::merkle::{Hash, SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, ProvenRecord, double_use_alert};
use crate::sync::protocol::{Feed, FeedEntry};
use crate::verdict::Alert;

const LOG: &str = "hub_log_hashes";

const MIGRATIONS: &[&str] = &[
    "
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
",
    // 2: the national log. Records stored before it (individually signed)
    // are kept in `legacy_records`; checkpoints send theirs again as leaves.
    "
    DROP INDEX records_license;
    ALTER TABLE records RENAME TO legacy_records;
    CREATE TABLE records (
        g           INTEGER PRIMARY KEY,
        checkpoint  TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        license_id  TEXT    NOT NULL,
        leaf        BLOB    NOT NULL,
        post_index  INTEGER NOT NULL,
        post_size   INTEGER NOT NULL,
        post_proof  BLOB    NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (checkpoint, seq)
    );
    CREATE INDEX records_license ON records(license_id);
    CREATE TABLE hub_log_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    CREATE TABLE hub_heads (size INTEGER PRIMARY KEY, note TEXT NOT NULL, signed_at INTEGER NOT NULL);
    CREATE TABLE post_heads (
        checkpoint  TEXT    NOT NULL,
        size        INTEGER NOT NULL,
        root        BLOB    NOT NULL,
        note        TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (checkpoint, size)
    ) WITHOUT ROWID;
    DELETE FROM checkpoints;
",
    // 3: what the national view asks of each record, and when a checkpoint was last heard.
    "
    ALTER TABLE records ADD COLUMN consumed_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN declaration_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN exporter TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN consignee TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN end_user TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN destination TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN hs_codes TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN net_kg REAL NOT NULL DEFAULT 0;
    CREATE INDEX records_consumed ON records(consumed_at);
    ALTER TABLE checkpoints ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
",
    // 4: equivocation is kept, not refused. Several records may stand under
    // one (checkpoint, seq) when one key signed two histories (each counts),
    // a checkpoint may have several heads of one size, and each record
    // names the root of the head that proves it.
    "
    CREATE TABLE records_v4 (
        g              INTEGER PRIMARY KEY,
        checkpoint     TEXT    NOT NULL,
        seq            INTEGER NOT NULL,
        license_id     TEXT    NOT NULL,
        leaf           BLOB    NOT NULL,
        post_index     INTEGER NOT NULL,
        post_size      INTEGER NOT NULL,
        post_proof     BLOB    NOT NULL,
        received_at    INTEGER NOT NULL,
        consumed_at    INTEGER NOT NULL DEFAULT 0,
        declaration_id TEXT    NOT NULL DEFAULT '',
        exporter       TEXT    NOT NULL DEFAULT '',
        consignee      TEXT    NOT NULL DEFAULT '',
        end_user       TEXT    NOT NULL DEFAULT '',
        destination    TEXT    NOT NULL DEFAULT '',
        hs_codes       TEXT    NOT NULL DEFAULT '',
        net_kg         REAL    NOT NULL DEFAULT 0,
        post_root      BLOB
    );
    INSERT INTO records_v4
        SELECT r.g, r.checkpoint, r.seq, r.license_id, r.leaf, r.post_index, r.post_size,
               r.post_proof, r.received_at, r.consumed_at, r.declaration_id, r.exporter,
               r.consignee, r.end_user, r.destination, r.hs_codes, r.net_kg,
               (SELECT h.root FROM post_heads h WHERE h.checkpoint = r.checkpoint AND h.size = r.post_size)
        FROM records r;
    DROP TABLE records;
    ALTER TABLE records_v4 RENAME TO records;
    CREATE INDEX records_license ON records(license_id);
    CREATE INDEX records_consumed ON records(consumed_at);
    CREATE INDEX records_number ON records(checkpoint, seq);
    CREATE TABLE post_heads_v4 (
        checkpoint  TEXT    NOT NULL,
        size        INTEGER NOT NULL,
        root        BLOB    NOT NULL,
        note        TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (checkpoint, size, root)
    ) WITHOUT ROWID;
    INSERT INTO post_heads_v4 SELECT checkpoint, size, root, note, received_at FROM post_heads;
    DROP TABLE post_heads;
    ALTER TABLE post_heads_v4 RENAME TO post_heads;
",
];

/// An open SQLite hub store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
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
            .row_cached("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| err(format!("not a readable SQLite database ({e})")))?;
        if check != "ok" {
            return Err(err(format!("integrity check failed: {check}")));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .map_err(|e| err(e.to_string()))?;
        crate::ledger::schema::migrate_with(&mut conn, MIGRATIONS).map_err(err)?;
        Ok(SqliteStore {
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

    fn merkle_err(&self) -> impl Fn(crate::merkle::MerkleError) -> StoreError + '_ {
        |e| StoreError {
            path: self.path.clone(),
            message: format!("its log: {e}"),
        }
    }

    /// The newest head of `checkpoint`'s log the hub holds: (size, root, note).
    pub fn post_head(&self, checkpoint: &str) -> Result<Option<(u64, Hash, String)>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT size, root, note FROM post_heads WHERE checkpoint = ?1 ORDER BY size DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row([checkpoint], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
                })
                .optional()
            })
            .map(|o| {
                o.map(|(s, root, note)| {
                    (s as u64, Hash(root.try_into().unwrap_or([0; 32])), note)
                })
            })
            .map_err(self.err())
    }

    /// `checkpoint`'s heads of exactly `size` leaves the hub holds: (root, note).
    pub fn post_heads_at(
        &self,
        checkpoint: &str,
        size: u64,
    ) -> Result<Vec<(Hash, String)>, StoreError> {
        self.conn
            .prepare_cached("SELECT root, note FROM post_heads WHERE checkpoint = ?1 AND size = ?2")
            .and_then(|mut st| {
                st.query_map(params![checkpoint, size as i64], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map(|rows| {
                rows.into_iter()
                    .filter_map(|(root, note)| Some((Hash(root.try_into().ok()?), note)))
                    .collect()
            })
            .map_err(self.err())
    }

    /// Stores checked records in one transaction, appending the new ones to
    /// the national log and signing its head with `key` as `kid`'s; idempotent.
    pub fn store(
        &mut self,
        records: &[Placed],
        heads: &[PostHead],
        key: &SigningKey,
        now: UnixTime,
    ) -> Result<Stored, StoreError> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| StoreError {
            path: path.clone(),
            message: e.to_string(),
        };
        let merr = |e: crate::merkle::MerkleError| StoreError {
            path: path.clone(),
            message: format!("its log: {e}"),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        for h in heads {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO post_heads(checkpoint, size, root, note, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(err)?
            .execute(params![h.checkpoint, h.head.size as i64, &h.head.root.0[..], h.note, now])
            .map_err(err)?;
        }
        let mut out = Stored::default();
        let mut touched: Vec<String> = Vec::new();
        let mut size: u64 = tx
            .row_cached("SELECT COALESCE(MAX(g), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(err)? as u64;
        let first_new = size + 1;
        for p in records {
            let rec = &p.record;
            if !touched.contains(&rec.checkpoint) {
                touched.push(rec.checkpoint.clone());
            }
            let held: Vec<(i64, Vec<u8>)> = tx
                .prepare_cached("SELECT g, leaf FROM records WHERE checkpoint=?1 AND seq=?2")
                .map_err(err)?
                .query_map(params![rec.checkpoint, rec.seq as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(err)?;
            if held.iter().any(|(_, leaf)| *leaf == p.leaf) {
                continue;
            }
            SqlLog::new(&tx, LOG)
                .append(size, leaf_hash(&p.leaf))
                .map_err(merr)?;
            size += 1;
            tx.prepare_cached(
                "INSERT INTO records(g, checkpoint, seq, license_id, leaf, post_index, post_size, post_proof, received_at, consumed_at, declaration_id, exporter, consignee, end_user, destination, hs_codes, net_kg, post_root) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )
            .map_err(err)?
            .execute(params![size as i64, rec.checkpoint, rec.seq as i64, rec.license_id, p.leaf, p.post_index as i64, p.post_size as i64, hashes_blob(&p.post_proof), now, rec.consumed_at, rec.declaration_id, rec.exporter, rec.consignee, rec.end_user, rec.destination, super::hs_codes(rec), super::net_kg(rec), &p.post_root.0[..]],
            )
            .map_err(err)?;
            // Design: another record under this number is equivocation: kept
            // (its license counts as used) and alerted with both as evidence.
            if let Some((g, _)) = held.first()
                && let (Some(a), Some(b)) = (
                    proven_at(&tx, *g).map_err(err)?,
                    proven_at(&tx, size as i64).map_err(err)?,
                )
            {
                let e = crate::sync::equivocation::Evidenced::Records(Box::new((a, b)));
                let alert = crate::sync::equivocation::alert(&rec.checkpoint, &e, "hub", now);
                if insert_alert(&tx, &alert, now).map_err(err)? {
                    out.alerts.push(alert);
                }
            }
            // Another record of this license: a double use (every record of
            // it, this one included, goes into the alert).
            let uses: i64 = tx
                .prepare_cached("SELECT COUNT(DISTINCT checkpoint || '/' || seq) FROM records WHERE license_id = ?1")
                .map_err(err)?
                .query_row([&rec.license_id], |r| r.get(0))
                .map_err(err)?;
            if uses > 1 {
                let all = proven_of_license(&tx, &rec.license_id).map_err(err)?;
                let a = double_use_alert(&all, "hub", now);
                if insert_alert(&tx, &a, now).map_err(err)? {
                    out.alerts.push(a);
                }
            }
        }
        for cp in touched {
            let mut n: i64 = tx
                .row_cached(
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
            tx.exec_cached(
                "INSERT INTO checkpoints(checkpoint, contiguous, last_seen) VALUES (?1, ?2, ?3) ON CONFLICT(checkpoint) DO UPDATE SET contiguous=excluded.contiguous, last_seen=excluded.last_seen",
                params![cp, n, now],
            )
            .map_err(err)?;
            out.contiguous.push((cp, n as u64));
        }
        if size >= first_new {
            let note = sign_head(&tx, size, key, now).map_err(merr)?;
            out.feed = Some(
                feed_range(&tx, first_new - 1, size - first_new + 1, size, note).map_err(merr)?,
            );
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Signs a head of the empty log if none is held, so every backfill
    /// reply carries one (and the hub's time).
    pub fn ensure_head(&mut self, key: &SigningKey, now: UnixTime) -> Result<(), StoreError> {
        let held: i64 = self
            .conn
            .row_cached("SELECT COUNT(*) FROM hub_heads", [], |r| r.get(0))
            .map_err(self.err())?;
        if held == 0 {
            let size = self.head()?;
            sign_head(&self.conn, size, key, now).map_err(self.merkle_err())?;
        }
        Ok(())
    }

    /// Stores an alert the hub raised outside a batch (a refused record); false if already held.
    pub fn record_alert(&mut self, alert: &Alert, now: UnixTime) -> Result<bool, StoreError> {
        let path = self.path.clone();
        insert_alert(&self.conn, alert, now).map_err(|e| StoreError {
            path,
            message: e.to_string(),
        })
    }

    /// The leaves stored for `checkpoint` under any of `seqs` (several
    /// under one number when its key signed two histories).
    pub fn held_many(
        &self,
        checkpoint: &str,
        seqs: &[u64],
    ) -> Result<std::collections::HashMap<u64, Vec<Vec<u8>>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT leaf FROM records WHERE checkpoint=?1 AND seq=?2")
            .map_err(self.err())?;
        let mut out: std::collections::HashMap<u64, Vec<Vec<u8>>> =
            std::collections::HashMap::new();
        for &seq in seqs {
            let leaves = st
                .query_map(params![checkpoint, seq as i64], |r| r.get::<_, Vec<u8>>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.err())?;
            if !leaves.is_empty() {
                out.insert(seq, leaves);
            }
        }
        Ok(out)
    }

    /// Up to `limit` entries after global number `after`, proven against the newest hub head.
    pub fn feed_after(&mut self, after: u64, limit: usize) -> Result<Option<Feed>, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| StoreError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let newest: Option<(i64, String)> = tx
            .row_cached(
                "SELECT size, note FROM hub_heads ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| StoreError {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let Some((size, note)) = newest else {
            return Ok(None);
        };
        let size = size as u64;
        let count = size.saturating_sub(after).min(limit as u64);
        let feed = feed_range(&tx, after, count, size, note).map_err(|e| StoreError {
            path,
            message: format!("its log: {e}"),
        })?;
        Ok(Some(feed))
    }

    /// The highest number up to which the hub holds every record of `checkpoint`.
    pub fn contiguous(&self, checkpoint: &str) -> Result<u64, StoreError> {
        self.conn
            .row_cached(
                "SELECT contiguous FROM checkpoints WHERE checkpoint = ?1",
                [checkpoint],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
            .map_err(self.err())
    }

    /// The highest global number assigned (0 when empty).
    pub fn head(&self) -> Result<u64, StoreError> {
        self.conn
            .row_cached("SELECT COALESCE(MAX(g), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|g| g as u64)
            .map_err(self.err())
    }

    /// The store's file.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Every record of a license, in the national log's order.
    pub fn license(&self, license_id: &str) -> Result<Vec<super::view::RecordView>, StoreError> {
        let sql = format!(
            "SELECT {} FROM records WHERE license_id = ?1 ORDER BY g",
            super::view::RECORD_COLUMNS
        );
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        st.query_map([license_id], |r| {
            Ok(super::view::record_view((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            )))
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// Every checkpoint heard of, and its state.
    pub fn checkpoints(
        &self,
        now: UnixTime,
    ) -> Result<Vec<super::view::CheckpointView>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT c.checkpoint, c.contiguous, c.last_seen, (SELECT MAX(size) FROM post_heads h WHERE h.checkpoint = c.checkpoint) FROM checkpoints c ORDER BY c.checkpoint",
            )
            .map_err(self.err())?;
        st.query_map([], |r| {
            Ok(super::view::checkpoint_view(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                now,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// Alerts raised in `[since, until)`, newest first.
    pub fn alerts(
        &self,
        kind: Option<&str>,
        since: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT alert_json FROM alerts WHERE raised_at >= ?1 AND raised_at < ?2 AND (?3 IS NULL OR kind = ?3) ORDER BY id DESC LIMIT ?4",
            )
            .map_err(self.err())?;
        let rows: Vec<String> = st
            .query_map(params![since, until, kind, limit], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }

    /// Consumed licenses per day and `by`, in `[since, until)`.
    pub fn flows(
        &self,
        by: super::view::FlowBy,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<super::view::FlowRow>, StoreError> {
        let sql = format!(
            "SELECT date(consumed_at, 'unixepoch') AS day, {col} AS k, COUNT(*), SUM(net_kg) FROM records WHERE consumed_at >= ?1 AND consumed_at < ?2 GROUP BY day, k ORDER BY day, k",
            col = by.column()
        );
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        st.query_map(params![since, until], |r| {
            Ok(super::view::FlowRow {
                day: r.get(0)?,
                key: r.get(1)?,
                records: r.get::<_, i64>(2)? as u64,
                net_kg: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// Whether the file takes a write.
    pub fn writable(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(self.err())
    }

    /// The root of the national log at `size` (for checks and tests).
    pub fn log_root(&self, size: u64) -> Result<Hash, StoreError> {
        SqlLog::new(&self.conn, LOG)
            .root(size)
            .map_err(self.merkle_err())
    }

    /// Records held, and alerts raised.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.conn
            .row_cached(
                "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM alerts)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.err())
    }
}

/// Signs the national log's head at `size` and keeps it.
fn sign_head(
    conn: &Connection,
    size: u64,
    key: &SigningKey,
    now: UnixTime,
) -> Result<String, crate::merkle::MerkleError> {
    let root = SqlLog::new(conn, LOG).root(size)?;
    let note = crate::hub::store::hub_head_note(size, root, key, now);
    conn.exec_cached(
        "INSERT OR REPLACE INTO hub_heads(size, note, signed_at) VALUES (?1, ?2, ?3)",
        params![size as i64, note, now],
    )?;
    Ok(note)
}

/// Entries `after+1 ..= after+count`, proven against the hub head at `size` (note given).
fn feed_range(
    conn: &Connection,
    after: u64,
    count: u64,
    size: u64,
    hub_note: String,
) -> Result<Feed, crate::merkle::MerkleError> {
    let log = SqlLog::new(conn, LOG);
    let mut stmt = conn.prepare_cached(
        "SELECT r.g, r.checkpoint, r.leaf, r.post_index, r.post_size, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.g > ?1 AND r.g <= ?2 ORDER BY r.g",
    )?;
    type Row = (i64, String, Vec<u8>, i64, i64, Vec<u8>, String);
    let rows: Vec<Row> = stmt
        .query_map(params![after as i64, (after + count) as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let indexes: Vec<u64> = rows.iter().map(|r| r.0 as u64 - 1).collect();
    let mut proofs = log.prove_many(&indexes, size)?.into_iter();
    let mut post_heads: Vec<String> = Vec::new();
    let mut entries = Vec::with_capacity(rows.len());
    for (g, _cp, leaf, post_index, _post_size, proof, note) in rows {
        let idx = match post_heads.iter().position(|n| *n == note) {
            Some(i) => i,
            None => {
                post_heads.push(note);
                post_heads.len() - 1
            }
        };
        entries.push(FeedEntry {
            g: g as u64,
            post_head: idx,
            post_index: post_index as u64,
            hub_proof: proofs.next().unwrap_or_default(),
            leaf,
            post_proof: blob_hashes(&proof),
        });
    }
    Ok(Feed {
        hub_head: hub_note,
        post_heads,
        entries,
        time: None,
    })
}

/// Every record of a license, each with the proof of its origin.
fn proven_of_license(
    conn: &Connection,
    license: &str,
) -> rusqlite::Result<Vec<(ConsumptionRecord, ProvenRecord)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.license_id = ?1 ORDER BY r.g",
    )?;
    let rows: Vec<(Vec<u8>, i64, Vec<u8>, String)> = stmt
        .query_map([license], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(leaf, index, proof, head)| {
            let rec = ConsumptionRecord::from_leaf(&leaf).ok()?;
            Some((
                rec,
                ProvenRecord {
                    leaf,
                    index: index as u64,
                    head,
                    proof: blob_hashes(&proof),
                },
            ))
        })
        .collect())
}

/// The record at global number `g` with the proof of its origin.
fn proven_at(conn: &Connection, g: i64) -> rusqlite::Result<Option<ProvenRecord>> {
    conn.prepare_cached(
        "SELECT r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.g = ?1",
    )?
    .query_row([g], |r| {
        Ok(ProvenRecord {
            leaf: r.get(0)?,
            index: r.get::<_, i64>(1)? as u64,
            proof: blob_hashes(&r.get::<_, Vec<u8>>(2)?),
            head: r.get(3)?,
        })
    })
    .optional()
}

/// Stores an alert unless one with the same `alert_id` is held; true if stored.
fn insert_alert(conn: &Connection, alert: &Alert, now: UnixTime) -> rusqlite::Result<bool> {
    let kind = alert.kind.as_str();
    let n = conn.exec_cached(
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
