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

use std::collections::HashMap;
use std::path::PathBuf;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ed25519_dalek::SigningKey;
use tokio_postgres::NoTls;

use super::{Placed, PostHead, StoreError, Stored, blob_hashes, hashes_blob};
use crate::clock::UnixTime;
use crate::merkle::staged::Staged;
use crate::merkle::{Hash, MerkleError, leaf_hash};
use crate::record::{ConsumptionRecord, ProvenRecord, double_use_alert};
use crate::sync::protocol::Feed;
use crate::verdict::Alert;

mod log;
mod view;

use log::{
    FeedRow, HashCache, StagedError, build_feed, feed_range, remember, sign_head, staged_op,
};

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
        post_root      BYTEA
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
        PRIMARY KEY (checkpoint, size, root)
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

/// The schema version this build writes.
const VERSION: i32 = 2;

/// Longest a hub session waits for a lock (the national log's, above all).
pub const SESSION_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest one statement of a hub session runs (below the hub's own 30 s).
pub const SESSION_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// A hub session left open inside a transaction this long is ended by the server.
pub const SESSION_IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Connections a hub process holds at most (its intake, the national view, health).
const POOL_MAX: usize = 4;

/// Version 1 → 2: equivocation is kept, not refused. Several records may
/// stand under one (checkpoint, seq) when one key signed two histories
/// (each counts), a checkpoint may have several heads of one size, and each
/// record names the root of the head that proves it.
const TO_VERSION_2: &str = "
    ALTER TABLE records ADD COLUMN IF NOT EXISTS post_root BYTEA;
    UPDATE records r SET post_root = h.root FROM post_heads h
        WHERE h.checkpoint = r.checkpoint AND h.size = r.post_size AND r.post_root IS NULL;
    ALTER TABLE records DROP CONSTRAINT IF EXISTS records_checkpoint_seq_key;
    ALTER TABLE post_heads DROP CONSTRAINT IF EXISTS post_heads_pkey;
    ALTER TABLE post_heads ADD PRIMARY KEY (checkpoint, size, root);
    UPDATE schema_version SET version = 2;
";

/// Indexes of the current schema (after any migration).
const INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS records_number ON records(checkpoint, seq);
";

/// An open PostgreSQL hub store (cloning shares the pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    name: PathBuf,
    hashes: HashCache,
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

    /// Connects (a pool of at most [`POOL_MAX`], each session's waits
    /// bounded) and brings the schema up to date.
    pub async fn open(uri: &str) -> Result<PgStore, StoreError> {
        let name = PathBuf::from(super::redacted(uri));
        let shown = name.clone();
        let bad = move |message: String| StoreError {
            path: shown.clone(),
            message,
        };
        let mut cfg: tokio_postgres::Config = uri
            .parse()
            .map_err(|e: Pg| bad(format!("not a PostgreSQL connection string: {e}")))?;
        // Design: no session of the hub may wait on the server for ever. A
        // database that cannot commit (a promoted server waiting for its
        // synchronous standby) held every retry's session on the log's lock;
        // with these, each gives up (and frees its server process) well
        // before the hub tries again, and one left open in a transaction
        // is ended by the server.
        let bounds = format!(
            "-c lock_timeout={}ms -c statement_timeout={}ms -c idle_in_transaction_session_timeout={}ms",
            SESSION_LOCK_TIMEOUT.as_millis(),
            SESSION_STATEMENT_TIMEOUT.as_millis(),
            SESSION_IDLE_IN_TRANSACTION.as_millis()
        );
        let options = match cfg.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {bounds}"),
            _ => bounds,
        };
        cfg.options(options);
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_MAX)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let store = PgStore {
            pool,
            name,
            hashes: HashCache::default(),
        };
        let mut client = store.pool.get().await.map_err(store.pool_err())?;
        let tx = client.transaction().await.map_err(store.err())?;
        // A schema change on a national-size table takes its time, and waits
        // for other hubs' appends to finish: not bounded like the rest.
        tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            .await
            .map_err(store.err())?;
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
                tx.execute(
                    "INSERT INTO schema_version(version) VALUES ($1)",
                    &[&VERSION],
                )
                .await
                .map_err(store.err())?;
            }
            Some(1) => tx.batch_execute(TO_VERSION_2).await.map_err(store.err())?,
            Some(VERSION) => {}
            Some(v) => {
                return Err(bad(format!(
                    "schema version {v} is newer than this build understands ({VERSION}); refusing to touch it"
                )));
            }
        }
        tx.batch_execute(INDEXES).await.map_err(store.err())?;
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
                &c.prepare_cached("SELECT size, root, note FROM post_heads WHERE checkpoint = $1 ORDER BY size DESC LIMIT 1").await.map_err(self.err())?,
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

    /// `checkpoint`'s heads of exactly `size` leaves the hub holds: (root, note).
    pub async fn post_heads_at(
        &self,
        checkpoint: &str,
        size: u64,
    ) -> Result<Vec<(Hash, String)>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        Ok(c.query(
            &c.prepare_cached(
                "SELECT root, note FROM post_heads WHERE checkpoint = $1 AND size = $2",
            )
            .await
            .map_err(self.err())?,
            &[&checkpoint, &(size as i64)],
        )
        .await
        .map_err(self.err())?
        .into_iter()
        .filter_map(|r| Some((Hash(r.get::<_, Vec<u8>>(0).try_into().ok()?), r.get(1))))
        .collect())
    }

    /// The leaves stored for `checkpoint` under any of `seqs`, in one query
    /// (several under one number when its key signed two histories).
    pub async fn held_many(
        &self,
        checkpoint: &str,
        seqs: &[u64],
    ) -> Result<HashMap<u64, Vec<Vec<u8>>>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let (Some(&lo), Some(&hi)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Ok(HashMap::new());
        };
        // Design: a range on the (checkpoint, seq) index, filtered here; with
        // `seq = ANY($2)` PostgreSQL compared every row of the checkpoint
        // against the whole array (40 ms a message at 25,000 rows).
        let st = c
            .prepare_cached(
                "SELECT seq, leaf FROM records WHERE checkpoint = $1 AND seq BETWEEN $2 AND $3",
            )
            .await
            .map_err(self.err())?;
        let wanted: std::collections::HashSet<u64> = seqs.iter().copied().collect();
        let mut out: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for r in c
            .query(&st, &[&checkpoint, &(lo as i64), &(hi as i64)])
            .await
            .map_err(self.err())?
        {
            let seq = r.get::<_, i64>(0) as u64;
            if wanted.contains(&seq) {
                out.entry(seq).or_default().push(r.get(1));
            }
        }
        Ok(out)
    }

    /// Stores checked records in one transaction; idempotent; see the module's design note.
    ///
    /// Design: a constant number of round trips per batch, whatever its
    /// size (what is held, the rows, the hashes, the licenses used twice,
    /// each checkpoint's contiguity), so a group of messages commits in
    /// about the time of one.
    pub async fn store(
        &self,
        records: &[Placed],
        heads: &[PostHead],
        key: &SigningKey,
        now: UnixTime,
    ) -> Result<Stored, StoreError> {
        let mut client = self.pool.get().await.map_err(self.pool_err())?;
        let tx = client.transaction().await.map_err(self.err())?;
        let e = self.err();
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await
            .map_err(&e)?;
        tx.execute(&lock, &[&LOG_LOCK]).await.map_err(&e)?;
        let max = tx
            .prepare_cached("SELECT COALESCE(MAX(g), 0) FROM records")
            .await
            .map_err(&e)?;
        let mut size = tx.query_one(&max, &[]).await.map_err(&e)?.get::<_, i64>(0) as u64;
        let first_new = size + 1;
        let mut out = Stored::default();
        if !heads.is_empty() {
            let keep = tx
                .prepare_cached(
                    "INSERT INTO post_heads(checkpoint, size, root, note, received_at) SELECT k.checkpoint, k.size, k.root, k.note, $5::BIGINT FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BYTEA[], $4::TEXT[]) AS k(checkpoint, size, root, note) ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(&e)?;
            let cps: Vec<&str> = heads.iter().map(|h| h.checkpoint.as_str()).collect();
            let sizes: Vec<i64> = heads.iter().map(|h| h.head.size as i64).collect();
            let roots: Vec<&[u8]> = heads.iter().map(|h| &h.head.root.0[..]).collect();
            let notes: Vec<&str> = heads.iter().map(|h| h.note.as_str()).collect();
            tx.execute(&keep, &[&cps, &sizes, &roots, &notes, &now])
                .await
                .map_err(&e)?;
        }

        // What is held already (by this hub or another), in one query.
        let (cps, seqs): (Vec<&str>, Vec<i64>) = records
            .iter()
            .map(|p| (p.record.checkpoint.as_str(), p.record.seq as i64))
            .unzip();
        let st = tx
            .prepare_cached(
                "SELECT r.checkpoint, r.seq, r.leaf FROM records r JOIN UNNEST($1::TEXT[], $2::BIGINT[]) AS k(checkpoint, seq) ON r.checkpoint = k.checkpoint AND r.seq = k.seq",
            )
            .await
            .map_err(&e)?;
        let mut held: HashMap<(String, u64), Vec<Vec<u8>>> = HashMap::new();
        for r in tx.query(&st, &[&cps, &seqs]).await.map_err(&e)? {
            held.entry((r.get(0), r.get::<_, i64>(1) as u64))
                .or_default()
                .push(r.get(2));
        }
        // Numbers under which a second, different record is stored now.
        let mut equivocal: Vec<(String, u64)> = Vec::new();

        let mut staged = Staged::default();
        let mut new: Vec<&Placed> = Vec::new();
        let mut touched: Vec<&str> = Vec::new();
        for p in records {
            let rec = &p.record;
            if !touched.contains(&rec.checkpoint.as_str()) {
                touched.push(&rec.checkpoint);
            }
            let k = (rec.checkpoint.clone(), rec.seq);
            let same_number = held.entry(k.clone()).or_default();
            if same_number.contains(&p.leaf) {
                continue;
            }
            // Design: another record under this number is equivocation: kept
            // (its license counts as used) and alerted with both as evidence.
            if !same_number.is_empty() && !equivocal.contains(&k) {
                equivocal.push(k);
            }
            same_number.push(p.leaf.clone());
            let h = leaf_hash(&p.leaf);
            let hashes = staged_op(&mut staged, &tx, &self.hashes, |r| {
                tlog_tiles::stored_hashes_for_record_hash(size, h, r)
            })
            .await
            .map_err(|e| self.store_err(e))?;
            staged.wrote(size, hashes);
            size += 1;
            new.push(p);
        }
        if !new.is_empty() {
            insert_records(&tx, &new, first_new, now)
                .await
                .map_err(&e)?;
            let (idx, hashes): (Vec<i64>, Vec<Vec<u8>>) = staged
                .written
                .iter()
                .map(|(i, h)| (*i as i64, h.0.to_vec()))
                .unzip();
            let st = tx
                .prepare_cached(
                    "INSERT INTO hub_log_hashes(idx, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
                )
                .await
                .map_err(&e)?;
            tx.execute(&st, &[&idx, &hashes]).await.map_err(&e)?;
            for (cp, seq) in &equivocal {
                let two = proven_of_number(&tx, cp, *seq).await.map_err(&e)?;
                // The first record under the number and the one stored now.
                if let (true, Some(a), Some(b)) = (two.len() > 1, two.first(), two.last()) {
                    let ev = crate::sync::equivocation::Evidenced::Records(Box::new((
                        a.clone(),
                        b.clone(),
                    )));
                    let alert = crate::sync::equivocation::alert(cp, &ev, "hub", now);
                    if insert_alert(&tx, &alert, now).await.map_err(&e)? {
                        out.alerts.push(alert);
                    }
                }
            }
            // Licenses of this batch now held more than once: a double use.
            let mut licenses: Vec<&str> =
                new.iter().map(|p| p.record.license_id.as_str()).collect();
            licenses.sort_unstable();
            licenses.dedup();
            let st = tx
                .prepare_cached(
                    "SELECT license_id FROM records WHERE license_id = ANY($1) GROUP BY license_id HAVING COUNT(DISTINCT (checkpoint, seq)) > 1 ORDER BY license_id",
                )
                .await
                .map_err(&e)?;
            for r in tx.query(&st, &[&licenses]).await.map_err(&e)? {
                let license: String = r.get(0);
                let all = proven_of_license(&tx, &license).await.map_err(&e)?;
                let a = double_use_alert(&all, "hub", now);
                if insert_alert(&tx, &a, now).await.map_err(&e)? {
                    out.alerts.push(a);
                }
            }
        }
        for cp in touched {
            let n = advance_contiguous(&tx, cp, now).await.map_err(&e)?;
            out.contiguous.push((cp.to_owned(), n));
        }
        if size >= first_new {
            let root = staged_op(&mut staged, &tx, &self.hashes, |r| {
                tlog_tiles::tree_hash(size, r)
            })
            .await
            .map_err(|e| self.store_err(e))?;
            let note = sign_head(&tx, size, root, key, now).await.map_err(&e)?;
            // The new records are at hand with the heads that prove them:
            // the feed is built from them, not read back.
            let rows: Option<Vec<FeedRow>> = new
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let head = heads.iter().find(|h| {
                        h.checkpoint == p.record.checkpoint
                            && h.head.size == p.post_size
                            && h.head.root == p.post_root
                    })?;
                    Some(FeedRow {
                        g: first_new + i as u64,
                        leaf: p.leaf.clone(),
                        post_index: p.post_index,
                        post_proof: p.post_proof.clone(),
                        note: head.note.clone(),
                    })
                })
                .collect();
            let feed = match rows {
                Some(rows) => build_feed(&tx, &mut staged, &self.hashes, rows, size, note).await,
                None => {
                    let count = size - first_new + 1;
                    feed_range(
                        &tx,
                        &mut staged,
                        &self.hashes,
                        first_new - 1,
                        count,
                        size,
                        note,
                    )
                    .await
                }
            };
            out.feed = Some(feed.map_err(|e| self.store_err(e))?);
        }
        tx.commit().await.map_err(&e)?;
        remember(&self.hashes, staged.written.iter().copied());
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
                &tx.prepare_cached("SELECT size, note FROM hub_heads ORDER BY size DESC LIMIT 1")
                    .await
                    .map_err(self.err())?,
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
        let feed = feed_range(
            &tx,
            &mut staged,
            &self.hashes,
            after,
            count,
            size,
            row.get(1),
        )
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
            let root = staged_op(&mut staged, &tx, &self.hashes, |r| {
                tlog_tiles::tree_hash(size as u64, r)
            })
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
            &c.prepare_cached("SELECT contiguous FROM checkpoints WHERE checkpoint = $1")
                .await
                .map_err(self.err())?,
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
                &c.prepare_cached(
                    "SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM alerts)",
                )
                .await
                .map_err(self.err())?,
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
        staged_op(&mut staged, &c, &self.hashes, |r| {
            tlog_tiles::tree_hash(size, r)
        })
        .await
        .map_err(|e| self.store_err(e))
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

async fn proven_of_license<C: deadpool_postgres::GenericClient>(
    c: &C,
    license: &str,
) -> Result<Vec<(ConsumptionRecord, ProvenRecord)>, Pg> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.license_id = $1 ORDER BY r.g").await?,
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

/// Every record under `checkpoint`'s number `seq`, each with the proof of its origin.
async fn proven_of_number<C: deadpool_postgres::GenericClient>(
    tx: &C,
    checkpoint: &str,
    seq: u64,
) -> Result<Vec<ProvenRecord>, Pg> {
    let st = tx
        .prepare_cached("SELECT r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.checkpoint = $1 AND r.seq = $2 ORDER BY r.g")
        .await?;
    Ok(tx
        .query(&st, &[&checkpoint, &(seq as i64)])
        .await?
        .into_iter()
        .map(|r| ProvenRecord {
            leaf: r.get(0),
            index: r.get::<_, i64>(1) as u64,
            proof: blob_hashes(&r.get::<_, Vec<u8>>(2)),
            head: r.get(3),
        })
        .collect())
}

/// Inserts the new records, numbered from `first`, in one statement.
async fn insert_records(
    tx: &tokio_postgres::Transaction<'_>,
    new: &[&Placed],
    first: u64,
    now: UnixTime,
) -> Result<(), Pg> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    // Design: COPY, not INSERT … UNNEST: the records were checked against
    // what is held under the log's lock, so none can conflict, and COPY
    // costs PostgreSQL about half as much per row.
    let sink = tx
        .copy_in(
            "COPY records(g, checkpoint, seq, license_id, leaf, post_index, post_size, post_proof, received_at, consumed_at, declaration_id, exporter, consignee, end_user, destination, hs_codes, net_kg, post_root) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::BYTEA,
        Type::INT8,
        Type::INT8,
        Type::BYTEA,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::FLOAT8,
        Type::BYTEA,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    for (i, p) in new.iter().enumerate() {
        let r = &p.record;
        let g = (first + i as u64) as i64;
        let proof = hashes_blob(&p.post_proof);
        let hs = super::hs_codes(r);
        let net = super::net_kg(r);
        writer
            .as_mut()
            .write(&[
                &g,
                &r.checkpoint,
                &(r.seq as i64),
                &r.license_id,
                &p.leaf.as_slice(),
                &(p.post_index as i64),
                &(p.post_size as i64),
                &proof,
                &now,
                &r.consumed_at,
                &r.declaration_id,
                &r.exporter,
                &r.consignee,
                &r.end_user,
                &r.destination,
                &hs,
                &net,
                &&p.post_root.0[..],
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Moves `checkpoint`'s contiguity mark over the records now held after
/// it, and notes that the checkpoint was heard from; returns the mark.
async fn advance_contiguous<C: deadpool_postgres::GenericClient>(
    c: &C,
    checkpoint: &str,
    now: UnixTime,
) -> Result<u64, Pg> {
    // Design: the held numbers after the mark are walked in order through
    // the (checkpoint, seq) index, a page at a time, stopping at the first
    // gap: the cost follows how far the mark moves, never the table's size,
    // and no plan choice can turn it into a scan (an anti-join here took
    // 35 s once the planner's statistics lagged behind a growing table).
    let st = c
        .prepare_cached("SELECT contiguous FROM checkpoints WHERE checkpoint = $1")
        .await?;
    let mut n: i64 = c
        .query_opt(&st, &[&checkpoint])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    let page = c
        .prepare_cached(
            "SELECT DISTINCT seq FROM records WHERE checkpoint = $1 AND seq > $2 ORDER BY seq LIMIT 4096",
        )
        .await?;
    loop {
        let rows = c.query(&page, &[&checkpoint, &n]).await?;
        let full = rows.len() == 4096;
        let before = n;
        for r in rows {
            if r.get::<_, i64>(0) != n + 1 {
                break;
            }
            n += 1;
        }
        if !full || n - before < 4096 {
            break;
        }
    }
    let st = c
        .prepare_cached(
            "INSERT INTO checkpoints(checkpoint, contiguous, last_seen) VALUES ($1, $2, $3) ON CONFLICT (checkpoint) DO UPDATE SET contiguous = excluded.contiguous, last_seen = excluded.last_seen",
        )
        .await?;
    c.execute(&st, &[&checkpoint, &n, &now]).await?;
    Ok(n as u64)
}

async fn insert_alert<C: deadpool_postgres::GenericClient>(
    c: &C,
    alert: &Alert,
    now: UnixTime,
) -> Result<bool, Pg> {
    let n = c
        .execute(
            &c.prepare_cached("INSERT INTO alerts(alert_id, kind, raised_at, alert_json) VALUES ($1, $2, $3, $4) ON CONFLICT (alert_id) DO NOTHING").await?,
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
