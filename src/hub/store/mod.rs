//! The hub's store: the national log of every checkpoint's consumption
//! records (a Merkle log whose leaves are the records, signed at every
//! commit), every checkpoint's signed heads, and the alerts raised. One
//! interface, two stores: SQLite on one machine (the embedded default), or
//! PostgreSQL for hubs on several machines with failover.

mod postgres;
mod sqlite;
pub mod view;

pub use postgres::{PgStore, SESSION_LOCK_TIMEOUT};
pub use sqlite::SqliteStore;
pub use view::{CheckpointView, FlowBy, FlowRow, RecordView};

use std::path::PathBuf;

use ed25519_dalek::SigningKey;

use crate::clock::UnixTime;
use crate::merkle::Hash;
use crate::merkle::head::Head;
use crate::record::ConsumptionRecord;
use crate::sync::protocol::Feed;
use crate::verdict::Alert;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("hub store {path}: {message}")]
pub struct StoreError {
    /// The store (file, or the database URI without its password).
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// A record the hub checked: it is in its checkpoint's log at `post_size`.
#[derive(Debug, Clone)]
pub struct Placed {
    /// What it says.
    pub record: ConsumptionRecord,
    /// The leaf.
    pub leaf: Vec<u8>,
    /// Its index in the checkpoint's log.
    pub post_index: u64,
    /// The size of the checkpoint head that proves it.
    pub post_size: u64,
    /// That head's root (a checkpoint whose key signed two histories has
    /// several heads of one size).
    pub post_root: Hash,
    /// The proof against that head.
    pub post_proof: Vec<Hash>,
}

/// A checkpoint's signed head the hub verified (whatever other heads of that
/// key it holds), kept in the same transaction as the records it proves.
#[derive(Debug, Clone)]
pub struct PostHead {
    /// Whose log.
    pub checkpoint: String,
    /// Its size and root.
    pub head: Head,
    /// The signed note.
    pub note: String,
}

/// What storing a batch changed.
#[derive(Debug, Default)]
pub struct Stored {
    /// Records stored now for the first time, as a feed message proven against the new hub head.
    pub feed: Option<Feed>,
    /// Each checkpoint in the batch and the highest number up to which all its records are held.
    pub contiguous: Vec<(String, u64)>,
    /// Alerts raised now (double use, conflicting records), each stored once.
    pub alerts: Vec<Alert>,
}

fn hashes_blob(p: &[Hash]) -> Vec<u8> {
    p.iter().flat_map(|h| h.0).collect()
}

fn blob_hashes(b: &[u8]) -> Vec<Hash> {
    b.chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Hash))
        .collect()
}

/// Where the hub keeps its national log.
pub enum Store {
    /// A SQLite file on this machine.
    Sqlite(Box<SqliteStore>),
    /// A PostgreSQL database, shared by hubs on several machines.
    Postgres(PgStore),
}

/// Runs a short SQLite operation without holding up the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Store {
    /// Opens the store `uri` names: `postgresql://…` (or `postgres://`, or
    /// libpq's `host=… dbname=…` form), else a SQLite file path.
    pub async fn open(uri: &str) -> Result<Store, StoreError> {
        if is_postgres(uri) {
            Ok(Store::Postgres(PgStore::open(uri).await?))
        } else {
            Ok(Store::Sqlite(Box::new(blocking(|| {
                SqliteStore::open(std::path::Path::new(uri))
            })?)))
        }
    }

    /// The newest head of `checkpoint`'s log the hub holds: (size, root, note).
    pub async fn post_head(
        &mut self,
        checkpoint: &str,
    ) -> Result<Option<(u64, Hash, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.post_head(checkpoint)),
            Store::Postgres(p) => p.post_head(checkpoint).await,
        }
    }

    /// `checkpoint`'s heads of exactly `size` leaves the hub holds: (root,
    /// note); more than one when its key signed two histories.
    pub async fn post_heads_at(
        &mut self,
        checkpoint: &str,
        size: u64,
    ) -> Result<Vec<(Hash, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.post_heads_at(checkpoint, size)),
            Store::Postgres(p) => p.post_heads_at(checkpoint, size).await,
        }
    }

    /// Stores checked records and the heads that prove them in one
    /// transaction, appending the new records to the national log and
    /// signing its head; idempotent.
    ///
    /// Design: one commit (one flush to disk) per group of messages; a head
    /// kept on its own would cost one more for every message.
    pub async fn store(
        &mut self,
        records: &[Placed],
        heads: &[PostHead],
        key: &SigningKey,
        now: UnixTime,
    ) -> Result<Stored, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.store(records, heads, key, now)),
            Store::Postgres(p) => p.store(records, heads, key, now).await,
        }
    }

    /// Stores an alert raised outside a batch; false if already held.
    pub async fn record_alert(&mut self, alert: &Alert, now: UnixTime) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.record_alert(alert, now)),
            Store::Postgres(p) => p.record_alert(alert, now).await,
        }
    }

    /// The leaves stored for `checkpoint` under any of `seqs` (several
    /// under one number when its key signed two histories).
    pub async fn held_many(
        &mut self,
        checkpoint: &str,
        seqs: &[u64],
    ) -> Result<std::collections::HashMap<u64, Vec<Vec<u8>>>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.held_many(checkpoint, seqs)),
            Store::Postgres(p) => p.held_many(checkpoint, seqs).await,
        }
    }

    /// Up to `limit` entries after global number `after`, proven against the newest hub head.
    pub async fn feed_after(
        &mut self,
        after: u64,
        limit: usize,
    ) -> Result<Option<Feed>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.feed_after(after, limit)),
            Store::Postgres(p) => p.feed_after(after, limit).await,
        }
    }

    /// Signs a head of the empty log if none is held.
    pub async fn ensure_head(&mut self, key: &SigningKey, now: UnixTime) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.ensure_head(key, now)),
            Store::Postgres(p) => p.ensure_head(key, now).await,
        }
    }

    /// The highest number up to which the hub holds every record of `checkpoint`.
    pub async fn contiguous(&mut self, checkpoint: &str) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.contiguous(checkpoint)),
            Store::Postgres(p) => p.contiguous(checkpoint).await,
        }
    }

    /// Records held, and alerts raised.
    pub async fn counts(&mut self) -> Result<(u64, u64), StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.counts()),
            Store::Postgres(p) => p.counts().await,
        }
    }

    /// The highest global number assigned (0 when empty).
    pub async fn head(&mut self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.head()),
            Store::Postgres(p) => p.head().await,
        }
    }

    /// Another handle on the same store, for the national view's reads.
    pub async fn reader(&self) -> Result<Store, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(Store::Sqlite(Box::new(blocking(|| {
                SqliteStore::open(std::path::Path::new(&s.path()))
            })?))),
            Store::Postgres(p) => Ok(Store::Postgres(p.clone())),
        }
    }

    /// Every record of a license, in the national log's order.
    pub async fn license(&mut self, license_id: &str) -> Result<Vec<RecordView>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.license(license_id)),
            Store::Postgres(p) => p.license(license_id).await,
        }
    }

    /// Every checkpoint the hub has heard of, and its state.
    pub async fn checkpoints(&mut self, now: UnixTime) -> Result<Vec<CheckpointView>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.checkpoints(now)),
            Store::Postgres(p) => p.checkpoints(now).await,
        }
    }

    /// Alerts raised in `[since, until)`, newest first, at most `limit`, of `kind` if given.
    pub async fn alerts(
        &mut self,
        kind: Option<&str>,
        since: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.alerts(kind, since, until, limit)),
            Store::Postgres(p) => p.alerts(kind, since, until, limit).await,
        }
    }

    /// Consumed licenses per day and `by`, in `[since, until)`.
    pub async fn flows(
        &mut self,
        by: FlowBy,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<FlowRow>, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.flows(by, since, until)),
            Store::Postgres(p) => p.flows(by, since, until).await,
        }
    }

    /// Whether the store answers and takes writes (`Err` says why not).
    pub async fn writable(&mut self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.writable()),
            Store::Postgres(p) => p.writable().await,
        }
    }

    /// The root of the national log at `size`.
    pub async fn log_root(&mut self, size: u64) -> Result<Hash, StoreError> {
        match self {
            Store::Sqlite(s) => blocking(|| s.log_root(size)),
            Store::Postgres(p) => p.log_root(size).await,
        }
    }
}

/// A record's HS codes, comma-separated (for the national view).
fn hs_codes(rec: &ConsumptionRecord) -> String {
    rec.goods
        .iter()
        .map(|g| g.hs_code.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A record's net mass in all, kilograms.
fn net_kg(rec: &ConsumptionRecord) -> f64 {
    rec.goods.iter().map(|g| g.net_kg).sum()
}

/// The national log's signed head at `size` (a C2SP signed note).
pub(super) fn hub_head_note(size: u64, root: Hash, key: &SigningKey, now: UnixTime) -> String {
    Head {
        origin: crate::merkle::head::HUB_ORIGIN.to_owned(),
        size,
        root,
        time: now,
    }
    .sign(key)
}

/// True if `uri` names a PostgreSQL database rather than a file.
pub fn is_postgres(uri: &str) -> bool {
    uri.starts_with("postgresql://")
        || uri.starts_with("postgres://")
        || uri.trim_start().starts_with("host=")
        || uri.contains(" dbname=")
}

/// `uri` with any password hidden, for logs and errors.
pub fn redacted(uri: &str) -> String {
    if let Some((scheme, rest)) = uri.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    uri.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_store_and_hide_passwords() {
        assert!(is_postgres(
            "postgresql://hub:pw@a,b/permitgate?target_session_attrs=read-write"
        ));
        assert!(is_postgres("host=a,b dbname=permitgate user=hub"));
        assert!(!is_postgres("/var/lib/permitgate/hub.db"));
        assert_eq!(
            redacted("postgresql://hub:secret@db:5432/p"),
            "postgresql://hub:***@db:5432/p"
        );
        assert_eq!(
            redacted("host=a password=secret dbname=p"),
            "host=a password=*** dbname=p"
        );
        assert_eq!(redacted("hub.db"), "hub.db");
    }
}
