//! The national log on PostgreSQL: its stored hashes (fetched in batches,
//! committed ones kept in memory), its signed heads, and feed messages
//! proven against it.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;

use super::Pg;
use crate::clock::UnixTime;
use crate::hub::store::blob_hashes;
use crate::merkle::staged::Staged;
use crate::merkle::{Hash, MerkleError};
use crate::sync::protocol::{Feed, FeedEntry};

/// Hashes of the national log known committed, by stored index, shared by
/// the clones of a store.
///
/// Design: a stored hash never changes once committed (the log only
/// grows, and a failover loses no commit with synchronous replication,
/// which docs/hub.md requires), so backfills read them from here instead
/// of asking the database again. Only hashes read from the database or
/// committed by this process go in; it is emptied when full.
pub(super) type HashCache = std::sync::Arc<std::sync::Mutex<HashMap<u64, Hash>>>;

/// Hashes the cache holds before it is emptied (about 50 MB).
pub(super) const HASHES_CACHED: usize = 1 << 20;

/// Puts committed hashes in the cache.
pub(super) fn remember(cache: &HashCache, hashes: impl IntoIterator<Item = (u64, Hash)>) {
    if let Ok(mut cached) = cache.lock() {
        if cached.len() >= HASHES_CACHED {
            cached.clear();
        }
        cached.extend(hashes);
    }
}

/// A staged operation failed.
#[derive(Debug)]
pub(super) enum StagedError {
    Pg(Pg),
    Merkle(MerkleError),
}

impl From<Pg> for StagedError {
    fn from(e: Pg) -> StagedError {
        StagedError::Pg(e)
    }
}

/// Runs a `tlog` operation, fetching the stored hashes it needs in one query.
pub(super) async fn staged_op<T, C: deadpool_postgres::GenericClient>(
    staged: &mut Staged,
    client: &C,
    cache: &HashCache,
    op: impl Fn(&Staged) -> Result<T, tlog_tiles::Error>,
) -> Result<T, StagedError> {
    for _ in 0..2 {
        match staged.attempt(&op) {
            Ok(r) => return r.map_err(StagedError::Merkle),
            Err(mut missing) => {
                if let Ok(cached) = cache.lock() {
                    let hits: Vec<(u64, Hash)> = missing
                        .iter()
                        .filter_map(|i| cached.get(i).map(|h| (*i, *h)))
                        .collect();
                    missing.retain(|i| !cached.contains_key(i));
                    staged.know(hits);
                }
                if missing.is_empty() {
                    continue;
                }
                let idx: Vec<i64> = missing.iter().map(|i| *i as i64).collect();
                let rows = client
                    .query(
                        &client
                            .prepare_cached(
                                "SELECT idx, hash FROM hub_log_hashes WHERE idx = ANY($1)",
                            )
                            .await?,
                        &[&idx],
                    )
                    .await
                    .map_err(StagedError::Pg)?;
                let fetched: Vec<(u64, Hash)> = rows
                    .into_iter()
                    .filter_map(|r| {
                        let h: Vec<u8> = r.get(1);
                        Some((r.get::<_, i64>(0) as u64, Hash(h.try_into().ok()?)))
                    })
                    .collect();
                remember(cache, fetched.iter().copied());
                staged.know(fetched);
            }
        }
    }
    Err(StagedError::Merkle(MerkleError::Input(
        "stored hashes missing from the national log".into(),
    )))
}

pub(super) async fn sign_head<C: deadpool_postgres::GenericClient>(
    c: &C,
    size: u64,
    root: Hash,
    key: &SigningKey,
    now: UnixTime,
) -> Result<String, Pg> {
    let note = crate::hub::store::hub_head_note(size, root, key, now);
    c.execute(
        &c.prepare_cached("INSERT INTO hub_heads(size, note, signed_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO UPDATE SET note = excluded.note, signed_at = excluded.signed_at").await?,
        &[&(size as i64), &note, &now],
    )
    .await?;
    Ok(note)
}

/// A stored record as a feed entry needs it.
pub(super) struct FeedRow {
    pub(super) g: u64,
    pub(super) leaf: Vec<u8>,
    pub(super) post_index: u64,
    pub(super) post_proof: Vec<Hash>,
    pub(super) note: String,
}

pub(super) async fn feed_range<C: deadpool_postgres::GenericClient>(
    c: &C,
    staged: &mut Staged,
    cache: &HashCache,
    after: u64,
    count: u64,
    size: u64,
    hub_note: String,
) -> Result<Feed, StagedError> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT r.g, r.leaf, r.post_index, r.post_proof, h.note FROM records r JOIN post_heads h ON h.checkpoint = r.checkpoint AND h.size = r.post_size AND h.root = r.post_root WHERE r.g > $1 AND r.g <= $2 ORDER BY r.g").await?,
            &[&(after as i64), &((after + count) as i64)],
        )
        .await
        .map_err(StagedError::Pg)?;
    let rows = rows
        .into_iter()
        .map(|r| FeedRow {
            g: r.get::<_, i64>(0) as u64,
            leaf: r.get(1),
            post_index: r.get::<_, i64>(2) as u64,
            post_proof: blob_hashes(r.get::<_, &[u8]>(3)),
            note: r.get(4),
        })
        .collect();
    build_feed(c, staged, cache, rows, size, hub_note).await
}

/// The feed message of `rows`, each proven in the national log at `size`.
pub(super) async fn build_feed<C: deadpool_postgres::GenericClient>(
    c: &C,
    staged: &mut Staged,
    cache: &HashCache,
    rows: Vec<FeedRow>,
    size: u64,
    hub_note: String,
) -> Result<Feed, StagedError> {
    let indexes: Vec<u64> = rows.iter().map(|r| r.g - 1).collect();
    let proofs = staged_op(staged, c, cache, |r| {
        indexes
            .iter()
            .map(|&i| tlog_tiles::prove_record(size, i, r))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let mut post_heads: Vec<String> = Vec::new();
    let mut entries = Vec::with_capacity(rows.len());
    for (r, hub_proof) in rows.into_iter().zip(proofs) {
        let idx = match post_heads.iter().position(|n| *n == r.note) {
            Some(i) => i,
            None => {
                post_heads.push(r.note);
                post_heads.len() - 1
            }
        };
        entries.push(FeedEntry {
            g: r.g,
            post_head: idx,
            post_index: r.post_index,
            leaf: r.leaf,
            post_proof: r.post_proof,
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
