//! The hub's store behaviour, the same tests on SQLite and on a real
//! PostgreSQL (a private cluster started by the test).

mod common;

use std::sync::Arc;

use common::forge;
use common::postgres::Postgres;
use ed25519_dalek::SigningKey;
use permitgate::hub::store::{Placed, PostHead, Store};
use permitgate::merkle::head::{Head, checkpoint_origin};
use permitgate::registry::{KeyEntry, Registry};
use permitgate::verdict::AlertKind;

const NOW: i64 = 1_800_000_000;

/// One checkpoint's log, grown by the test: every record placed with its proof.
struct PostLog {
    checkpoint: String,
    key: SigningKey,
    records: Vec<permitgate::record::ConsumptionRecord>,
}

impl PostLog {
    fn new(checkpoint: &str) -> PostLog {
        PostLog {
            checkpoint: checkpoint.into(),
            key: permitgate::keys::generate(),
            records: Vec::new(),
        }
    }

    /// Adds records of `licenses`; returns them placed against the new head, and the head.
    fn add(&mut self, licenses: &[&str]) -> (Vec<Placed>, Head, String) {
        let first = self.records.len();
        for l in licenses {
            let seq = self.records.len() as u64 + 1;
            self.records
                .push(forge::record_at(&self.checkpoint, seq, l, NOW - 10));
        }
        let leaves: Vec<Vec<u8>> = self.records.iter().map(|r| r.to_leaf()).collect();
        let (note, proofs) = forge::signed_log(
            &checkpoint_origin(&self.checkpoint),
            &self.key,
            &leaves,
            NOW,
        );
        let head = Head::peek(note.as_bytes()).unwrap();
        let placed = (first..self.records.len())
            .map(|i| Placed {
                record: self.records[i].clone(),
                leaf: leaves[i].clone(),
                post_index: i as u64,
                post_size: head.size,
                post_root: head.root,
                post_proof: proofs[i].clone(),
            })
            .collect();
        (placed, head, note)
    }
}

async fn put(
    store: &mut Store,
    log: &mut PostLog,
    hub: &SigningKey,
    licenses: &[&str],
) -> permitgate::hub::store::Stored {
    let (placed, head, note) = log.add(licenses);
    let heads = [PostHead {
        checkpoint: log.checkpoint.clone(),
        head,
        note,
    }];
    store.store(&placed, &heads, hub, NOW).await.unwrap()
}

fn registry(posts: &[&PostLog], hub: &SigningKey) -> Registry {
    Registry::new(
        posts
            .iter()
            .map(|p| KeyEntry {
                id: p.checkpoint.clone(),
                key: p.key.verifying_key(),
                valid_from: None,
                valid_until: None,
            })
            .collect(),
        vec![KeyEntry {
            id: "hub-1".into(),
            key: hub.verifying_key(),
            valid_from: None,
            valid_until: None,
        }],
        300,
    )
}

/// The behaviour, on any store.
async fn behaves(mut store: Store) {
    let hub = permitgate::keys::generate();
    let mut a = PostLog::new("a");
    let mut b = PostLog::new("b");
    store.ensure_head(&hub, NOW).await.unwrap();
    let out = put(&mut store, &mut a, &hub, &["L1", "L2"]).await;
    assert_eq!(out.contiguous, [("a".to_owned(), 2)]);
    let feed = out.feed.unwrap();
    assert_eq!(feed.entries.iter().map(|e| e.g).collect::<Vec<_>>(), [1, 2]);
    // The feed verifies: hub head, inclusion in it, origin in a's log.
    let reg = registry(&[&a, &b], &hub);
    let checked = permitgate::sync::verify::check_feed(&feed, &reg).unwrap();
    assert_eq!((checked.entries.len(), checked.refused.len()), (2, 0));
    // Redelivery stores nothing new; b's records come after, no gaps.
    let (placed, _, _) = {
        let mut copy = PostLog {
            records: Vec::new(),
            ..PostLog::new("a")
        };
        copy.key = a.key.clone();
        copy.add(&["L1", "L2"])
    };
    let again = store.store(&placed, &[], &hub, NOW).await.unwrap();
    assert!(again.feed.is_none() && again.alerts.is_empty());
    let out = put(&mut store, &mut b, &hub, &["LB"]).await;
    assert_eq!(out.feed.unwrap().entries[0].g, 3);
    assert_eq!(store.counts().await.unwrap(), (3, 0));
    assert_eq!(store.head().await.unwrap(), 3);
    assert_eq!(store.contiguous("a").await.unwrap(), 2);
    // A second use of L1 by b: one double_use with both records, once.
    let out = put(&mut store, &mut b, &hub, &["L1"]).await;
    assert_eq!(out.alerts.len(), 1);
    let alert = &out.alerts[0];
    assert_eq!(alert.kind, AlertKind::DoubleUse);
    assert_eq!(alert.records.len(), 2);
    for e in &alert.records {
        e.proven.verify(&reg).unwrap();
    }
    // A backfill from 1 proves 2..4 against the newest head.
    let feed = store.feed_after(1, 500).await.unwrap().unwrap();
    assert_eq!(
        feed.entries.iter().map(|e| e.g).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let checked = permitgate::sync::verify::check_feed(&feed, &reg).unwrap();
    assert_eq!((checked.entries.len(), checked.hub_head.size), (3, 4));
    assert_eq!(checked.hub_head.root, store.log_root(4).await.unwrap());
    // Two different records under one number (a's key signed another
    // history): both kept, both count, the equivocation raised with both
    // as evidence anyone can check.
    let mut forked = PostLog {
        records: Vec::new(),
        ..PostLog::new("a")
    };
    forked.key = a.key.clone();
    let out = put(&mut store, &mut forked, &hub, &["OTHER"]).await;
    assert_eq!(
        out.feed.unwrap().entries[0].g,
        5,
        "kept in the national log"
    );
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].kind, AlertKind::LogEquivocation);
    assert_eq!(out.alerts[0].signer.as_deref(), Some("a"));
    permitgate::sync::equivocation::verify(&out.alerts[0], &reg, "test", NOW).unwrap();
    assert_eq!(store.head().await.unwrap(), 5);
    assert_eq!(store.license("OTHER").await.unwrap().len(), 1);
    // The same again changes nothing.
    let (placed, _, _) = {
        let mut copy = PostLog {
            records: Vec::new(),
            ..PostLog::new("a")
        };
        copy.key = a.key.clone();
        copy.add(&["OTHER"])
    };
    let again = store.store(&placed, &[], &hub, NOW).await.unwrap();
    assert!(again.feed.is_none() && again.alerts.is_empty());

    // Out of order: the records after a gap are held, but the checkpoint's
    // contiguity waits for the gap and then runs through them.
    let mut c = PostLog::new("c");
    let first = c.add(&["C1", "C2"]);
    let second = c.add(&["C3", "C4"]);
    let third = c.add(&["C5", "C6"]);
    let mut store_batch = async |(placed, head, note): (Vec<Placed>, Head, String)| {
        let heads = [PostHead {
            checkpoint: "c".into(),
            head,
            note,
        }];
        store.store(&placed, &heads, &hub, NOW).await.unwrap()
    };
    assert_eq!(store_batch(third).await.contiguous, [("c".to_owned(), 0)]);
    assert_eq!(store_batch(first).await.contiguous, [("c".to_owned(), 2)]);
    assert_eq!(store_batch(second).await.contiguous, [("c".to_owned(), 6)]);
    // The newest head is the one kept with the records.
    assert_eq!(store.post_head("c").await.unwrap().unwrap().0, 6);
    let held = store.held_many("c", &[2, 5, 9]).await.unwrap();
    let mut seqs: Vec<u64> = held.keys().copied().collect();
    seqs.sort();
    assert_eq!(seqs, [2, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    behaves(
        Store::open(dir.path().join("hub.db").to_str().unwrap())
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_store_behaves() {
    let pg = Postgres::primary();
    behaves(Store::open(&pg.uri()).await.unwrap()).await;
}

/// Two hubs storing records of one license at the same moment, many
/// times: each double use raised exactly once, the log gap-free.
async fn races(one: Store, two: Store) {
    let hub = Arc::new(permitgate::keys::generate());
    const ROUNDS: usize = 40;
    let mut a = PostLog::new("a");
    let mut b = PostLog::new("b");
    let mut rounds_a = Vec::new();
    let mut rounds_b = Vec::new();
    for i in 0..ROUNDS {
        let lic = format!("L-{i}");
        rounds_a.push(a.add(&[&lic]));
        rounds_b.push(b.add(&[&lic]));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let hub_task =
        |mut store: Store, cp: &'static str, rounds: Vec<(Vec<Placed>, Head, String)>| {
            let barrier = barrier.clone();
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut raised = Vec::new();
                for (placed, head, note) in rounds {
                    let heads = [PostHead {
                        checkpoint: cp.to_owned(),
                        head,
                        note,
                    }];
                    barrier.wait().await;
                    let stored = store.store(&placed, &heads, &hub, NOW).await.unwrap();
                    raised.push(stored.alerts.len());
                }
                (store, raised)
            })
        };
    let t1 = hub_task(one, "a", rounds_a);
    let t2 = hub_task(two, "b", rounds_b);
    let (mut one, r1) = t1.await.unwrap();
    let (_, r2) = t2.await.unwrap();
    for (i, (x, y)) in r1.iter().zip(&r2).enumerate() {
        assert_eq!(
            x + y,
            1,
            "round {i}: exactly one of the two raises the double use"
        );
    }
    let (records, alerts) = one.counts().await.unwrap();
    assert_eq!(records as usize, 2 * ROUNDS);
    assert_eq!(alerts as usize, ROUNDS);
    assert_eq!(
        one.head().await.unwrap() as usize,
        2 * ROUNDS,
        "no gaps, no repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_racing_on_postgresql_raise_each_double_use_once() {
    let pg = Postgres::primary();
    let uri = pg.uri();
    races(
        Store::open(&uri).await.unwrap(),
        Store::open(&uri).await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_racing_on_one_sqlite_file_raise_each_double_use_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db").to_string_lossy().into_owned();
    races(
        Store::open(&path).await.unwrap(),
        Store::open(&path).await.unwrap(),
    )
    .await;
}

/// A database that cannot let the hub in (here another session holds the
/// national log's lock, as a commit stuck waiting for a synchronous standby
/// does): each attempt gives up within the session's lock timeout, says
/// so, and leaves no server process waiting behind it; once the lock is
/// free the same store works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_session_never_waits_on_the_database_for_ever() {
    let pg = Postgres::primary();
    let mut store = Store::open(&pg.uri()).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.uri(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The advisory lock every append takes ("permit").
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(x'7065726d6974'::bigint)")
        .await
        .unwrap();
    let hub = permitgate::keys::generate();
    let mut log = PostLog::new("a");
    let bound = permitgate::hub::store::SESSION_LOCK_TIMEOUT + std::time::Duration::from_secs(5);
    for _ in 0..2 {
        let (placed, head, note) = log.add(&["L-STUCK"]);
        let heads = [PostHead {
            checkpoint: "a".into(),
            head,
            note,
        }];
        let started = std::time::Instant::now();
        let e = tokio::time::timeout(bound * 2, store.store(&placed, &heads, &hub, NOW))
            .await
            .expect("the attempt ends by itself")
            .expect_err("the log's lock is held elsewhere");
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
        assert!(e.to_string().contains("lock"), "{e}");
    }
    let waiting: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "no session of the hub is left waiting");
    client.batch_execute("ROLLBACK").await.unwrap();
    let stored = put(&mut store, &mut log, &hub, &["L-FREE"]).await;
    assert!(stored.feed.is_some(), "the store works again");
}
