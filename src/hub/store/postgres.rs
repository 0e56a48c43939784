//! The hub's store on PostgreSQL, shared by hub processes on several
//! machines; with libpq's multi-host form (`host=a,b` and
//! `target_session_attrs=read-write`) a hub follows a failover by itself.
//!
//! Design: every transaction that appends to the national log first takes
//! one advisory lock (`pg_advisory_xact_lock`), so appends from all hubs
//! are serialised: global numbers stay gap-free, (checkpoint, seq) is
//! stored once, and of two hubs storing records of one license at the same
//! moment the second always sees the first (a double use is never missed).
//! Hashes are fetched in batches ([`crate::merkle::staged`]): one query for
//! all the proofs of a feed message, a few for a batch of appends.

use std::path::PathBuf;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ed25519_dalek::SigningKey;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::{Placed, StoreError, Stored, blob_hashes, hashes_blob};
use crate::clock::UnixTime;
use crate::merkle::head::{HUB_ORIGIN, Head};
use crate::merkle::staged::Staged;
use crate::merkle::{Hash, MerkleError, leaf_hash};
use crate::record::{ConsumptionRecord, ProvenRecord, double_use_alert};
use crate::sync::protocol::{Feed, FeedEntry};
use crate::verdict::Alert;

/// The advisory lock every append to the national log takes.
const LOG_LOCK: i64 = 0x7065_726d_6974; // "permit"

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS records (
        g              BIGINT PRIMARY KEY,
        checkpoint     TEXT   NOT NULL,
        seq            BIGINT NOT NULL,
        license_id     TEXT   NOT NULL,
        leaf           BYTEA  NOT NULL,
        post_index     BIGINT NOT NULL,
        post_size      BIGINT NOT NULL,
        post_proof     BYTEA  NOT NULL,
        received_at    BIGINT NOT NULL,
        consumed_at    BIGINT NOT NULL,
        declaration_id TEXT   NOT NULL,
        exporter       TEXT   NOT NULL,
        consignee      TEXT   NOT NULL,
        end_user       TEXT   NOT NULL,
        destination    TEXT   NOT NULL,
        hs_codes       TEXT   NOT NULL,
        net_kg         DOUBLE PRECISION NOT NULL,
        UNIQUE (checkpoint, seq)
    );
    CREATE INDEX IF NOT EXISTS records_license ON records(license_id);
    CREATE INDEX IF NOT EXISTS records_consumed ON records(consumed_at);
    CREATE TABLE IF NOT EXISTS hub_log_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
    CREATE TABLE IF NOT EXISTS hub_heads (size BIGINT PRIMARY KEY, note TEXT NOT NULL, signed_at BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS post_heads (
        checkpoint  TEXT   NOT NULL,
        size        BIGINT NOT NULL,
        root        BYTEA  NOT NULL,
        note        TEXT   NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (checkpoint, size)
    );
    CREATE TABLE IF NOT EXISTS checkpoints (
        checkpoint TEXT PRIMARY KEY,
        contiguous BIGINT NOT NULL,
        last_seen  BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS alerts (
        id         BIGSERIAL PRIMARY KEY,
        alert_id   TEXT UNIQUE,
        kind       TEXT   NOT NULL,
        raised_at  BIGINT NOT NULL,
        alert_json TEXT   NOT NULL
    );
";

/// An open PostgreSQL hub store (cloning shares the pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    name: PathBuf,
}

type Pg = tokio_postgres::Error;

impl PgStore {
    fn err(&self) -> impl Fn(Pg) -> StoreError + '_ {
        |e| StoreError {
            path: self.name.clone(),
            message: pg_message(&e),
        }
    }

    fn pool_err(&self) -> impl Fn(deadpool_postgres::PoolError) -> StoreError + '_ {
        |e| StoreError {
            path: self.name.clone(),
            message: format!("cannot reach the database: {e}"),
        }
    }

    fn merkle_err(&self) -> impl Fn(MerkleError) -> StoreError + '_ {
        |e| StoreError {
            path: self.name.clone(),
            message: format!("its log: {e}"),
        }
    }

    /// Connects (a pool of up to 8) and brings the schema up to date.
    pub async fn open(uri: &str) -> Result<PgStore, StoreError> {
        let name = PathBuf::from(super::redacted(uri));
        let shown = name.clone();
        let bad = move |message: String| StoreError {
            path: shown.clone(),
            message,
        };
        let cfg: tokio_postgres::Config = uri
            .parse()
            .map_err(|e: Pg| bad(format!("not a PostgreSQL connection string: {e}")))?;
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(8)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let store = PgStore { pool, name };
        let mut client = store.pool.get().await.map_err(store.pool_err())?;
        let tx = client.transaction().await.map_err(store.err())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await
            .map_err(store.err())?;
        tx.batch_execute(SCHEMA).await.map_err(store.err())?;
        let version: Option<i32> = tx
            .query_opt("SELECT version FROM schema_version", &[])
            .await
            .map_err(store.err())?
            .map(|r| r.get(0));
        match version {
            None => {
                tx.execute("INSERT INTO schema_version(version) VALUES (1)", &[])
                    .await
                    .map_err(store.err())?;
            }
            Some(1) => {}
            Some(v) => {
                return Err(bad(format!(
                    "schema version {v} is newer than this build understands (1); refusing to touch it"
                )));
            }
        }
        tx.commit().await.map_err(store.err())?;
        drop(client);
        Ok(store)
    }

    /// The newest head of `checkpoint`'s log the hub holds: (size, root, note).
    pub async fn post_head(
        &self,
        checkpoint: &str,
    ) -> Result<Option<(u64, Hash, String)>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let row = c
            .query_opt(
                "SELECT size, root, note FROM post_heads WHERE checkpoint = $1 ORDER BY size DESC LIMIT 1",
                &[&checkpoint],
            )
            .await
            .map_err(self.err())?;
        Ok(row.map(|r| {
            let root: Vec<u8> = r.get(1);
            (
                r.get::<_, i64>(0) as u64,
                Hash(root.try_into().unwrap_or([0; 32])),
                r.get(2),
            )
        }))
    }

    /// The root of `checkpoint`'s head of exactly `size` leaves, if held.
    pub async fn post_head_at(
        &self,
        checkpoint: &str,
        size: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        Ok(c.query_opt(
            "SELECT root FROM post_heads WHERE checkpoint = $1 AND size = $2",
            &[&checkpoint, &(size as i64)],
        )
        .await
        .map_err(self.err())?
        .and_then(|r| r.get::<_, Vec<u8>>(0).try_into().ok().map(Hash)))
    }

    /// Keeps a verified head of `checkpoint`'s log.
    pub async fn keep_post_head(
        &self,
        checkpoint: &str,
        head: &Head,
        note: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        c.execute(
            "INSERT INTO post_heads(checkpoint, size, root, note, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&checkpoint, &(head.size as i64), &&head.root.0[..], &note, &now],
        )
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// The leaf stored for (checkpoint, seq), if any.
    pub async fn held(&self, checkpoint: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        Ok(c.query_opt(
            "SELECT leaf FROM records WHERE checkpoint = $1 AND seq = $2",
            &[&checkpoint, &(seq as i64)],
        )
        .await
        .map_err(self.err())?
        .map(|r| r.get(0)))
    }

    /// Stores checked records in one transaction; idempotent; see the module's design note.
    pub async fn store(
        &self,
        records: &[Placed],
        key: &SigningKey,
        now: UnixTime,
    ) -> Result<Stored, StoreError> {
        let mut client = self.pool.get().await.map_err(self.pool_err())?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await
            .map_err(self.err())?;
        let mut out = Stored::default();
        let mut touched: Vec<String> = Vec::new();
        let mut size: u64 = tx
            .query_one("SELECT COALESCE(MAX(g), 0) FROM records", &[])
            .await
            .map_err(self.err())?
            .get::<_, i64>(0) as u64;
        let first_new = size + 1;
        let mut staged = Staged::default();
        for p in records {
            let rec = &p.record;
            if !touched.contains(&rec.checkpoint) {
                touched.push(rec.checkpoint.clone());
            }
            let held: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT leaf FROM records WHERE checkpoint = $1 AND seq = $2",
                    &[&rec.checkpoint, &(rec.seq as i64)],
                )
                .await
                .map_err(self.err())?
                .map(|r| r.get(0));
            if let Some(held) = held {
                if held != p.leaf {
                    let a = conflicting_record_alert(rec, &held, &p.leaf, now);
                    if insert_alert(&tx, &a, now).await.map_err(self.err())? {
                        out.alerts.push(a);
                    }
                }
                continue;
            }
            let h = leaf_hash(&p.leaf);
            let hashes = staged_op(&mut staged, &tx, |r| {
                tlog_tiles::stored_hashes_for_record_hash(size, h, r)
            })
            .await
            .map_err(|e| self.store_err(e))?;
            staged.wrote(size, hashes);
            size += 1;
            let hs = super::hs_codes(rec);
            let net = super::net_kg(rec);
            let params: [&(dyn ToSql + Sync); 17] = [
                &(size as i64),
                &rec.checkpoint,
                &(rec.seq as i64),
                &rec.license_id,
                &p.leaf,
                &(p.post_index as i64),
                &(p.post_size as i64),
                &hashes_blob(&p.post_proof),
                &now,
                &rec.consumed_at,
                &rec.declaration_id,
                &rec.exporter,
                &rec.consignee,
                &rec.end_user,
                &rec.destination,
                &hs,
                &net,
            ];
            tx.execute(
                "INSERT INTO records(g, checkpoint, seq, license_id, leaf, post_index, post_size, post_proof, received_at, consumed_at, declaration_id, exporter, consignee, end_user, destination, hs_codes, net_kg) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                &params,
            )
            .await
            .map_err(self.err())?;
            let all = proven_of_license(&tx, &rec.license_id)
                .await
                .map_err(self.err())?;
            if all.len() > 1 {
                let a = double_use_alert(&all, "hub", now);
                if insert_alert(&tx, &a, now).await.map_err(self.err())? {
                    out.alerts.push(a);
                }
            }
        }
        // The stored hashes, in one statement.
        let (idx, hashes): (Vec<i64>, Vec<Vec<u8>>) = staged
            .written
            .iter()
            .map(|(i, h)| (*i as i64, h.0.to_vec()))
            .unzip();
        tx.execute(
            "INSERT INTO hub_log_hashes(idx, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
            &[&idx, &hashes],
        )
        .await
        .map_err(self.err())?;
        for cp in touched {
            let mut n: i64 = tx
                .query_opt(
                    "SELECT contiguous FROM checkpoints WHERE checkpoint = $1",
                    &[&cp],
                )
                .await
                .map_err(self.err())?
                .map(|r| r.get(0))
                .unwrap_or(0);
            loop {
                let next = tx
                    .query_opt(
                        "SELECT 1 FROM records WHERE checkpoint = $1 AND seq = $2",
                        &[&cp, &(n + 1)],
                    )
                    .await
                    .map_err(self.err())?;
                if next.is_none() {
                    break;
                }
                n += 1;
            }
            tx.execute(
                "INSERT INTO checkpoints(checkpoint, contiguous, last_seen) VALUES ($1, $2, $3) ON CONFLICT (checkpoint) DO UPDATE SET contiguous = excluded.contiguous, last_seen = excluded.last_seen",
                &[&cp, &n, &now],
            )
            .await
            .map_err(self.err())?;
            out.contiguous.push((cp, n as u64));
        }
        if size >= first_new {
            let root = staged_op(&mut staged, &tx, |r| tlog_tiles::tree_hash(size, r))
                .await
                .map_err(|e| self.store_err(e))?;
            let note = sign_head(&tx, size, root, key, now)
                .await
                .map_err(self.err())?;
            out.feed = Some(
                feed_range(
                    &tx,
                    &mut staged,
                    first_new - 1,
                    size - first_new + 1,
                    size,
                    note,
                )
                .await
                .map_err(|e| self.store_err(e))?,
            );
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    fn store_err(&self, e: StagedError) -> StoreError {
        match e {
            StagedError::Pg(e) => self.err()(e),
            StagedError::Merkle(e) => self.merkle_err()(e),
        }
    }

    /// Stores an alert raised outside a batch; false if already held.
    pub async fn record_alert(&self, alert: &Alert, now: UnixTime) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        insert_alert(&c, alert, now).await.map_err(self.err())
    }

    /// Up to `limit` entries after global number `after`, proven against the newest hub head.
    pub async fn feed_after(&self, after: u64, limit: usize) -> Result<Option<Feed>, StoreError> {
        let mut client = self.pool.get().await.map_err(self.pool_err())?;
        // One snapshot: the head and the entries agree.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err())?;
        let Some(row) = tx
            .query_opt(
                "SELECT size, note FROM hub_heads ORDER BY size DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(self.err())?
        else {
            return Ok(None);
        };
        let size = row.get::<_, i64>(0) as u64;
        let count = size.saturating_sub(after).min(limit as u64);
        let mut staged = Staged::default();
        let feed = feed_range(&tx, &mut staged, after, count, size, row.get(1))
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(Some(feed))
    }

    /// Signs a head of the empty log if none is held.
    pub async fn ensure_head(&self, key: &SigningKey, now: UnixTime) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(self.pool_err())?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await
            .map_err(self.err())?;
        let held: i64 = tx
            .query_one("SELECT COUNT(*) FROM hub_heads", &[])
            .await
            .map_err(self.err())?
            .get(0);
        if held == 0 {
            let size: i64 = tx
                .query_one("SELECT COALESCE(MAX(g), 0) FROM records", &[])
                .await
                .map_err(self.err())?
                .get(0);
            let mut staged = Staged::default();
            let root = staged_op(&mut staged, &tx, |r| tlog_tiles::tree_hash(size as u64, r))
                .await
                .map_err(|e| self.store_err(e))?;
            sign_head(&tx, size as u64, root, key, now)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(())
    }

    /// The highest number up to which the hub holds every record of `checkpoint`.
    pub async fn contiguous(&self, checkpoint: &str) -> Result<u64, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        Ok(c.query_opt(
            "SELECT contiguous FROM checkpoints WHERE checkpoint = $1",
            &[&checkpoint],
        )
        .await
        .map_err(self.err())?
        .map(|r| r.get::<_, i64>(0) as u64)
        .unwrap_or(0))
    }

    /// Records held, and alerts raised.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let r = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM alerts)",
                &[],
            )
            .await
            .map_err(self.err())?;
        Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
    }

    /// The highest global number assigned (0 when empty).
    pub async fn head(&self) -> Result<u64, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        Ok(c.query_one("SELECT COALESCE(MAX(g), 0) FROM records", &[])
            .await
            .map_err(self.err())?
            .get::<_, i64>(0) as u64)
    }

    /// The root of the national log at `size`.
    pub async fn log_root(&self, size: u64) -> Result<Hash, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let mut staged = Staged::default();
        staged_op(&mut staged, &c, |r| tlog_tiles::tree_hash(size, r))
            .await
            .map_err(|e| self.store_err(e))
    }

    /// Every record of a license, in the national log's order.
    pub async fn license(
        &self,
        license_id: &str,
    ) -> Result<Vec<super::view::RecordView>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let sql = format!(
            "SELECT {} FROM records WHERE license_id = $1 ORDER BY g",
            super::view::RECORD_COLUMNS
        );
        let rows = c.query(&sql, &[&license_id]).await.map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| {
                super::view::record_view((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                ))
            })
            .collect())
    }

    /// Every checkpoint heard of, and its state.
    pub async fn checkpoints(
        &self,
        now: UnixTime,
    ) -> Result<Vec<super::view::CheckpointView>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let rows = c
            .query(
                "SELECT c.checkpoint, c.contiguous, c.last_seen, (SELECT MAX(size) FROM post_heads h WHERE h.checkpoint = c.checkpoint) FROM checkpoints c ORDER BY c.checkpoint",
                &[],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| super::view::checkpoint_view(r.get(0), r.get(1), r.get(2), r.get(3), now))
            .collect())
    }

    /// Alerts raised in `[since, until)`, newest first.
    pub async fn alerts(
        &self,
        kind: Option<&str>,
        since: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let rows = c
            .query(
                "SELECT alert_json FROM alerts WHERE raised_at >= $1 AND raised_at < $2 AND ($3::TEXT IS NULL OR kind = $3) ORDER BY id DESC LIMIT $4",
                &[&since, &until, &kind, &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect())
    }

    /// Consumed licenses per day and `by`, in `[since, until)`.
    pub async fn flows(
        &self,
        by: super::view::FlowBy,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<super::view::FlowRow>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let sql = format!(
            "SELECT to_char(to_timestamp(consumed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, {col} AS k, COUNT(*), SUM(net_kg) FROM records WHERE consumed_at >= $1 AND consumed_at < $2 GROUP BY day, k ORDER BY day, k",
            col = by.column()
        );
        let rows = c.query(&sql, &[&since, &until]).await.map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| super::view::FlowRow {
                day: r.get(0),
                key: r.get(1),
                records: r.get::<_, i64>(2) as u64,
                net_kg: r.get(3),
            })
            .collect())
    }

    /// Whether the database answers and takes writes (not a standby).
    pub async fn writable(&self) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let standby: bool = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(self.err())?
            .get(0);
        if standby {
            return Err(StoreError {
                path: self.name.clone(),
                message: "connected to a standby, which takes no writes".into(),
            });
        }
        Ok(())
    }
}

/// A staged operation failed.
#[derive(Debug)]
enum StagedError {
    Pg(Pg),
    Merkle(MerkleError),
}

/// Runs a `tlog` operation, fetching the stored hashes it needs in one query.
async fn staged_op<T, C: deadpool_postgres::GenericClient>(
    staged: &mut Staged,
    client: &C,
    op: impl Fn(&Staged) -> Result<T, tlog_tiles::Error>,
) -> Result<T, StagedError> {
    for _ in 0..2 {
        match staged.attempt(&op) {
            Ok(r) => return r.map_err(StagedError::Merkle),
            Err(missing) => {
                let idx: Vec<i64> = missing.iter().map(|i| *i as i64).collect();
                let rows = client
                    .query(
                        "SELECT idx, hash FROM hub_log_hashes WHERE idx = ANY($1)",
                        &[&idx],
                    )
                    .await
                    .map_err(StagedError::Pg)?;
                staged.know(rows.into_iter().filter_map(|r| {
                    let h: Vec<u8> = r.get(1);
                    Some((r.get::<_, i64>(0) as u64, Hash(h.try_into().ok()?)))
                }));
            }
        }
    }
    Err(StagedError::Merkle(MerkleError::Input(
        "stored hashes missing from the national log".into(),
    )))
}

async fn sign_head<C: deadpool_postgres::GenericClient>(
    c: &C,
    size: u64,
    root: Hash,
    key: &SigningKey,
    now: UnixTime,
) -> Result<String, Pg> {
    let note = Head {
        origin: HUB_ORIGIN.to_owned(),
        size,
        root,
        time: now,
    }
    .sign(key);
    c.execute(
        "INSERT INTO hub_heads(size, note, signed_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO UPDATE SET note = excluded.note, signed_at = excluded.signed_at",
        &[&(size as i64), &note, &now],
    )
    .await?;
    Ok(note)
}

async fn feed_range<C: deadpool_postgres::GenericClient>(
    c: &C,
    staged: &mut Staged,
    after: u64,
    count: u64,
    size: u64,
    hub_note: String,
) -> Result<Feed, StagedError> {
    let rows = c
        .query(
            "SELECT r.g, r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size WHERE r.g > $1 AND r.g <= $2 ORDER BY r.g",
            &[&(after as i64), &((after + count) as i64)],
        )
        .await
        .map_err(StagedError::Pg)?;
    let indexes: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64 - 1).collect();
    let proofs = staged_op(staged, c, |r| {
        indexes
            .iter()
            .map(|&i| tlog_tiles::prove_record(size, i, r))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let mut post_heads: Vec<String> = Vec::new();
    let mut entries = Vec::with_capacity(rows.len());
    for (r, hub_proof) in rows.into_iter().zip(proofs) {
        let note: String = r.get(4);
        let idx = match post_heads.iter().position(|n| *n == note) {
            Some(i) => i,
            None => {
                post_heads.push(note);
                post_heads.len() - 1
            }
        };
        let proof: Vec<u8> = r.get(3);
        entries.push(FeedEntry {
            g: r.get::<_, i64>(0) as u64,
            post_head: idx,
            post_index: r.get::<_, i64>(2) as u64,
            leaf: r.get(1),
            post_proof: blob_hashes(&proof),
            hub_proof,
        });
    }
    Ok(Feed {
        hub_head: hub_note,
        post_heads,
        entries,
        time: None,
    })
}

async fn proven_of_license<C: deadpool_postgres::GenericClient>(
    c: &C,
    license: &str,
) -> Result<Vec<(ConsumptionRecord, ProvenRecord)>, Pg> {
    let rows = c
        .query(
            "SELECT r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size WHERE r.license_id = $1 ORDER BY r.g",
            &[&license],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let leaf: Vec<u8> = r.get(0);
            let proof: Vec<u8> = r.get(2);
            let rec = ConsumptionRecord::from_leaf(&leaf).ok()?;
            Some((
                rec,
                ProvenRecord {
                    leaf,
                    index: r.get::<_, i64>(1) as u64,
                    head: r.get(3),
                    proof: blob_hashes(&proof),
                },
            ))
        })
        .collect())
}

/// The alert for two different records under one (checkpoint, seq).
pub(super) fn conflicting_record_alert(
    rec: &ConsumptionRecord,
    held: &[u8],
    offered: &[u8],
    now: UnixTime,
) -> Alert {
    let mut a = crate::sync::verify::log_inconsistent_alert(
        "hub",
        &format!(
            "checkpoint `{}` put two different records under number {} in its log",
            rec.checkpoint, rec.seq
        ),
        Vec::new(),
        now,
    );
    a.kind = crate::verdict::AlertKind::RefusedRecord;
    a.alert_id = Some(hex::encode(leaf_hash(&[held, offered].concat()).0));
    a
}

async fn insert_alert<C: deadpool_postgres::GenericClient>(
    c: &C,
    alert: &Alert,
    now: UnixTime,
) -> Result<bool, Pg> {
    let n = c
        .execute(
            "INSERT INTO alerts(alert_id, kind, raised_at, alert_json) VALUES ($1, $2, $3, $4) ON CONFLICT (alert_id) DO NOTHING",
            &[
                &alert.alert_id,
                &alert.kind.as_str(),
                &now,
                &serde_json::to_string(alert).unwrap_or_default(),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The database's own words, with its code when it gave one.
fn pg_message(e: &Pg) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
