use super::*;
use crate::merkle::test_log::{TestLog, record};
use crate::registry::{KeyEntry, Registry};
use crate::sync::protocol::{Feed, LEAF_MAX};
use crate::verdict::{Alert, AlertKind};

const T: UnixTime = 1_780_000_000;

struct Fixture {
    intake: Intake,
    store: Store,
    post: SigningKey,
}

fn fixture() -> Fixture {
    let hub = crate::keys::generate();
    let post = crate::keys::generate();
    let mut policy = crate::sim::fixtures::policy();
    policy.registry = Registry::new(
        vec![KeyEntry {
            id: "post-a".into(),
            key: post.verifying_key(),
            valid_from: None,
            valid_until: None,
        }],
        vec![KeyEntry {
            id: "hub-1".into(),
            key: hub.verifying_key(),
            valid_from: None,
            valid_until: None,
        }],
        300,
    );
    let mut store = Store::Sqlite(Box::new(
        store::SqliteStore::open(std::path::Path::new(":memory:")).unwrap(),
    ));
    futures_block(store.ensure_head(&hub, T)).unwrap();
    let intake = Intake::new(IntakeConfig {
        kid: "hub-1".into(),
        key: hub,
        prefix: "permitgate".into(),
        share_group: "hubs".into(),
        policy_root: None,
        in_force: PolicyInForce::new(policy),
        telemetry: HubTelemetry::new(),
    });
    Fixture {
        intake,
        store,
        post,
    }
}

/// The SQLite store never waits: its futures are ready when first polled.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the store waited"),
    }
}

impl Fixture {
    fn send(&mut self, topic: &str, payload: &[u8], mono: Millis) -> Vec<Out> {
        let now = Now { mono, unix: T };
        let m = [Incoming { topic, payload }];
        futures_block(self.intake.handle_group(&mut self.store, &m, now)).unwrap()
    }

    fn request(&self, after: u64, nonce: u64) -> Vec<u8> {
        Backfill {
            checkpoint: "post-a".into(),
            after,
            limit: 500,
            issued_at: T,
            nonce,
        }
        .seal(&self.post)
    }

    fn replies(outs: &[Out]) -> usize {
        outs.iter()
            .filter(|o| o.topic == "permitgate/post-a/sync/feed")
            .count()
    }

    fn alerts(outs: &[Out], kind: AlertKind) -> Vec<Alert> {
        outs.iter()
            .filter(|o| o.topic == "permitgate/hub/alerts")
            .filter_map(|o| serde_json::from_slice::<Alert>(&o.payload).ok())
            .filter(|a| a.kind == kind)
            .collect()
    }
}

const BACKFILL: &str = "permitgate/hub/backfill";
const RECORDS: &str = "permitgate/hub/records/post-a";

#[test]
fn a_request_is_answered_once_however_often_it_comes() {
    let mut f = fixture();
    let req = f.request(0, 1);
    assert_eq!(Fixture::replies(&f.send(BACKFILL, &req, 0)), 1);
    // Replayed at once, a second later, an hour later: never again.
    for mono in [1, 1_500, 3_600_000] {
        assert_eq!(Fixture::replies(&f.send(BACKFILL, &req, mono)), 0);
    }
    // The same question asked anew (another nonce) is answered.
    assert_eq!(
        Fixture::replies(&f.send(BACKFILL, &f.request(0, 2), 3_600_001)),
        1
    );
}

#[test]
fn one_key_gets_at_most_its_rate_of_replies_in_any_second() {
    let mut f = fixture();
    let mut answered = 0;
    for n in 0..(BACKFILL_RATE as u64 + 20) {
        answered += Fixture::replies(&f.send(BACKFILL, &f.request(0, n), 10 + n));
    }
    assert_eq!(answered, BACKFILL_RATE);
    // A second after the first reply, the key may ask again.
    assert_eq!(
        Fixture::replies(&f.send(BACKFILL, &f.request(0, 999), 1_010)),
        1
    );
    f.intake.within_bounds().unwrap();
}

#[test]
fn records_beyond_the_bounds_are_refused_and_the_rest_stored() {
    let mut f = fixture();
    // One message larger than any sync message may be: refused unread.
    let outs = f.send(RECORDS, &vec![0u8; MESSAGE_MAX + 1], 0);
    assert_eq!(Fixture::alerts(&outs, AlertKind::RefusedRecord).len(), 1);
    assert_eq!(f.intake.cfg.telemetry.refused_total(), 1);
    // A valid head over a huge record and a real one: the real one stored.
    let mut huge =
        crate::record::ConsumptionRecord::from_leaf(&record("post-a", 2, "L-HUGE", T)).unwrap();
    huge.declaration_id = "x".repeat(LEAF_MAX);
    let log = TestLog::of(
        "post-a",
        vec![record("post-a", 1, "L-1", T), huge.to_leaf()],
    );
    let outs = f.send(RECORDS, &log.records_message(&[0, 1], &f.post, T), 1);
    assert_eq!(f.intake.cfg.telemetry.refused_total(), 2);
    let feed = outs
        .iter()
        .find(|o| o.topic == "permitgate/hub/feed")
        .map(|o| Feed::decode(&o.payload).unwrap())
        .expect("the real record goes out in the feed");
    assert_eq!(feed.entries.len(), 1);
    assert_eq!(futures_block(f.store.head()).unwrap(), 1);
}

#[test]
fn a_second_history_under_one_key_is_stored_and_proven_never_refused() {
    let mut f = fixture();
    let genuine = TestLog::of(
        "post-a",
        vec![b"verdict".to_vec(), record("post-a", 1, "L-1", T)],
    );
    let forged = TestLog::of(
        "post-a",
        vec![b"other".to_vec(), record("post-a", 1, "L-U", T)],
    );
    let outs = f.send(RECORDS, &forged.records_message(&[1], &f.post, T), 0);
    assert!(Fixture::alerts(&outs, AlertKind::LogEquivocation).is_empty());
    let outs = f.send(RECORDS, &genuine.records_message(&[1], &f.post, T), 1);
    // Both records in the national log: L-U blocked, L-1 known everywhere.
    assert_eq!(futures_block(f.store.head()).unwrap(), 2);
    let alerts = Fixture::alerts(&outs, AlertKind::LogEquivocation);
    assert_eq!(
        alerts.len(),
        2,
        "two heads of one size, and two records under number 1"
    );
    let registry = f.intake.cfg.in_force.current().registry.clone();
    for a in &alerts {
        assert_eq!(a.signer.as_deref(), Some("post-a"));
        crate::sync::equivocation::verify(a, &registry, "post-b", T).unwrap();
    }
    // The acknowledgement names the head of the message it answers.
    let ack = outs
        .iter()
        .find(|o| o.topic == "permitgate/post-a/sync/ack")
        .map(|o| Ack::open(&o.payload, &registry, T).unwrap())
        .unwrap();
    assert_eq!(ack.post_head, Some(genuine.head(2, &f.post, T)));
    assert!(!ack.resend);
}

#[test]
fn old_requests_however_many_cannot_starve_the_post_of_its_newest() {
    let mut f = fixture();
    let old = |n: u64| {
        Backfill {
            checkpoint: "post-a".into(),
            after: 0,
            limit: 500,
            issued_at: T - 600,
            nonce: n,
        }
        .seal(&f.post)
    };
    let flood: Vec<Vec<u8>> = (0..BACKFILL_RATE as u64 + 30).map(old).collect();
    let mut answered = 0;
    for (n, req) in flood.iter().enumerate() {
        answered += Fixture::replies(&f.send(BACKFILL, req, n as u64));
    }
    assert_eq!(answered, BACKFILL_RATE, "the rate holds for the flood");
    // The post's own newest request, in the same second: answered.
    let mine = f.request(0, 7);
    assert_eq!(Fixture::replies(&f.send(BACKFILL, &mine, 100)), 1);
    // A second one of the same second is not newer: the rate holds again.
    assert_eq!(
        Fixture::replies(&f.send(BACKFILL, &f.request(0, 8), 101)),
        0
    );
    f.intake.within_bounds().unwrap();
}

#[test]
fn a_head_signed_again_at_another_time_is_checked_as_the_one_held() {
    let mut f = fixture();
    let log = TestLog::of("post-a", vec![record("post-a", 1, "L-LATE", T + 900)]);
    // The head alone first, dated before its record…
    let early = crate::sync::protocol::Records {
        head: log.head(1, &f.post, T),
        consistency: None,
        records: Vec::new(),
    }
    .encode();
    f.send(RECORDS, &early, 0);
    // …then signed again later, with the record: checked against the note
    // held, which every post will be served, it is dated after its head.
    let outs = f.send(RECORDS, &log.records_message(&[0], &f.post, T + 1_000), 1);
    assert_eq!(futures_block(f.store.head()).unwrap(), 0, "not stored");
    assert_eq!(f.intake.cfg.telemetry.refused_total(), 1);
    assert!(outs.iter().all(|o| o.topic != "permitgate/hub/feed"));
}
