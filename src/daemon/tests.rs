//! The stages' pure parts, without a broker.

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;

use crate::gate;

use super::{messages::*, session::*, verify::*};
use crate::mqtt::SessionEvent;
use std::sync::mpsc::sync_channel;

fn policy() -> crate::policy::Policy {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = crate::policy::tests::sample(dir.path());
    crate::policy::Policy::load(&p).unwrap()
}

fn received(payload: Vec<u8>) -> Received {
    Received {
        publish: Publish::new("d", QoS::AtLeastOnce, payload, None),
        connection: 1,
        at: std::time::Instant::now(),
    }
}

fn batch(ids: &[&str], delivered: &[i64]) -> Verified {
    let declarations: Vec<Received> = ids
        .iter()
        .map(|id| received(id.as_bytes().to_vec()))
        .collect();
    let prepared = ids
        .iter()
        .map(|id| gate::prepare(id.as_bytes(), &POLICY, 1 << 20))
        .collect();
    Verified {
        declarations,
        prepared,
        delivered: delivered.to_vec(),
        resend: None,
        new_policy: None,
    }
}

static POLICY: std::sync::LazyLock<crate::policy::Policy> = std::sync::LazyLock::new(policy);

fn ids(v: &Verified) -> Vec<String> {
    v.declarations
        .iter()
        .map(|r| String::from_utf8_lossy(&r.publish.payload).into_owned())
        .collect()
}

fn next(
    rx: &std::sync::mpsc::Receiver<Verified>,
    carried: &mut Option<Verified>,
    max: usize,
) -> Verified {
    next_batch(rx, carried, max).expect("a batch")
}

fn publications(ids: std::ops::RangeInclusive<i64>) -> Vec<Publication> {
    ids.map(|id| Publication {
        id,
        kind: PublicationKind::Verdict,
        payload: format!("v{id}"),
    })
    .collect()
}

fn held(out: &Outbound) -> Vec<i64> {
    out.publications.iter().map(|p| p.id).collect()
}

#[test]
fn new_publications_beyond_what_is_held_are_left_to_a_resend_in_order() {
    let mut out = Outbound::default();
    let max = RESEND_MAX as i64;
    out.take(Vec::new(), publications(1..=max - 1), None, false);
    out.take(Vec::new(), publications(max..=max), None, false);
    assert_eq!(held(&out).len(), RESEND_MAX);
    // One more does not fit: it stays in the ledger's queue, and so does
    // every newer one until a re-send from the newest held catches up.
    out.take(Vec::new(), publications(max + 1..=max + 1), None, false);
    out.take(Vec::new(), publications(max + 2..=max + 2), None, false);
    assert_eq!(held(&out).len(), RESEND_MAX);
    assert_eq!(out.resend_due(), None, "not while some are held");
    out.publications.clear();
    assert_eq!(out.resend_due(), Some(max));
    assert_eq!(out.resend_due(), None, "asked once");
    // The re-send brings them back in order; it reached the newest, so new
    // ones are held again.
    out.take(Vec::new(), publications(max + 1..=max + 2), None, true);
    out.take(Vec::new(), publications(max + 3..=max + 3), None, false);
    assert_eq!(held(&out), [max + 1, max + 2, max + 3]);
}

#[test]
fn a_resend_cut_short_asks_for_the_rest_and_new_ones_wait_for_it() {
    let mut out = Outbound::default();
    out.connected(true);
    // The first page of the queue, cut at 40.
    out.take(Vec::new(), publications(1..=40), Some(40), true);
    // Made meanwhile: left in the ledger, where the next page finds them.
    out.take(Vec::new(), publications(90..=91), None, false);
    assert_eq!(held(&out), (1..=40).collect::<Vec<_>>());
    out.publications.clear();
    assert_eq!(out.resend_due(), Some(40));
    out.take(Vec::new(), publications(41..=91), None, true);
    out.take(Vec::new(), publications(92..=92), None, false);
    assert_eq!(held(&out), (41..=92).collect::<Vec<_>>());
}

#[test]
fn a_puback_names_the_queued_publication_handed_in_that_order() {
    let mut out = Outbound::default();
    // The status (not from the queue), then two verdicts.
    out.handed.extend([None, Some(7), Some(8)]);
    out.sent(11);
    out.sent(12);
    out.sent(13);
    assert_eq!(out.acknowledged(13), Some(8));
    assert_eq!(out.acknowledged(11), None);
    assert_eq!(out.acknowledged(12), Some(7));
    assert_eq!(out.acknowledged(12), None, "acknowledged once");
    // A new connection forgets what the old one had in flight, and what
    // was held: the queue is read again from the start.
    out.handed.push_back(Some(9));
    out.sent(1);
    out.take(Vec::new(), publications(10..=10), None, false);
    out.connected(true);
    assert_eq!(out.acknowledged(1), None);
    assert!(out.publications.is_empty() && out.handed.is_empty());
}

#[test]
fn reads_pause_while_the_backlog_is_full_and_resume_when_it_is_half_empty() {
    let mut backlog = Backlog::default();
    let mut reads = Reads::default();
    for _ in 0..BACKLOG_MAX - 1 {
        backlog.push(Work::Resend(0));
    }
    reads.follow(&backlog);
    assert!(reads.may_poll(false));
    backlog.push(Work::Resend(0));
    reads.follow(&backlog);
    assert!(reads.paused() && !reads.may_poll(false));
    assert!(reads.may_poll(true), "a rush polls while paused");
    // One poll per pause interval.
    reads.allow_one();
    assert!(reads.may_poll(false));
    reads.polled();
    assert!(!reads.may_poll(false));
    // Still paused until half of it has gone to the worker.
    while backlog.items.len() > BACKLOG_MAX / 2 + 1 {
        backlog.pop();
    }
    reads.follow(&backlog);
    assert!(reads.paused());
    backlog.pop();
    reads.follow(&backlog);
    assert!(!reads.paused() && reads.may_poll(false));
    // A few large declarations fill it by bytes alone.
    backlog.clear();
    backlog.push(Work::Declaration(
        received(vec![0u8; BACKLOG_BYTES]),
        vec![3],
    ));
    reads.follow(&backlog);
    assert!(reads.paused());
    // A lost connection forgets the declaration but keeps its acknowledgements.
    backlog.forget_declarations();
    assert!(matches!(backlog.items.front(), Some(Work::Delivered(ids)) if ids == &[3]));
    reads.follow(&backlog);
    assert!(!reads.paused());
}

#[test]
fn batches_waiting_together_are_committed_together_in_order() {
    let (tx, rx) = sync_channel(8);
    tx.send(batch(&["a"], &[1])).unwrap();
    tx.send(batch(&["b", "c"], &[2])).unwrap();
    tx.send(batch(&[], &[3])).unwrap();
    let mut carried = None;
    let b = next(&rx, &mut carried, 100);
    assert_eq!(ids(&b), ["a", "b", "c"]);
    assert_eq!(b.prepared.len(), 3);
    assert_eq!(b.delivered, [1, 2, 3]);
    assert!(carried.is_none());
    drop(tx);
    assert!(next_batch(&rx, &mut carried, 100).is_none());
}

#[test]
fn a_full_batch_is_not_joined_and_a_resend_waits_its_turn() {
    let (tx, rx) = sync_channel(8);
    tx.send(batch(&["a", "b"], &[])).unwrap();
    tx.send(batch(&["c"], &[])).unwrap();
    let mut resend = batch(&["d"], &[]);
    resend.resend = Some(7);
    tx.send(resend).unwrap();
    tx.send(batch(&["e"], &[])).unwrap();
    let mut carried = None;
    // Full at two: "c" waits for the next turn.
    assert_eq!(ids(&next(&rx, &mut carried, 2)), ["a", "b"]);
    // "c" may not be joined by a batch that re-sends first.
    let c = next(&rx, &mut carried, 100);
    assert_eq!(ids(&c), ["c"]);
    assert_eq!(carried.as_ref().and_then(|b| b.resend), Some(7));
    // The re-sending batch comes alone, then the rest.
    let d = next(&rx, &mut carried, 100);
    assert_eq!((ids(&d), d.resend), (vec!["d".to_string()], Some(7)));
    assert_eq!(ids(&next(&rx, &mut carried, 100)), ["e"]);
}

#[test]
fn a_policy_change_ends_the_joined_batch_after_its_declarations() {
    let (tx, rx) = sync_channel(8);
    tx.send(batch(&["a"], &[])).unwrap();
    let mut change = batch(&["b"], &[]);
    change.new_policy = Some(Box::new(POLICY.clone()));
    tx.send(change).unwrap();
    tx.send(batch(&["c"], &[])).unwrap();
    let mut carried = None;
    // "b" was decided under the old policy: it joins, and nothing after it does.
    let b = next(&rx, &mut carried, 100);
    assert_eq!(ids(&b), ["a", "b"]);
    assert!(b.new_policy.is_some());
    assert_eq!(ids(&next(&rx, &mut carried, 100)), ["c"]);
}

const DECLARATIONS: &str = "permitgate/c/declarations";

fn message(topic: &str, payload: &str) -> SessionEvent {
    SessionEvent::Message(Publish::new(
        topic,
        QoS::AtLeastOnce,
        payload.as_bytes().to_vec(),
        None,
    ))
}

fn kinds(st: &SessionState) -> Vec<String> {
    st.backlog
        .items
        .iter()
        .map(|w| match w {
            Work::Declaration(r, ids) => format!(
                "declaration {} on {} with {ids:?}",
                String::from_utf8_lossy(&r.publish.payload),
                r.connection
            ),
            Work::Delivered(ids) => format!("delivered {ids:?}"),
            Work::Resend(after) => format!("resend after {after}"),
            Work::Policy(_) => "policy".into(),
        })
        .collect()
}

#[test]
fn a_connection_subscribes_announces_and_resends_from_the_start() {
    let now = tokio::time::Instant::now();
    let mut st = SessionState::default();
    let actions = st.on_event(SessionEvent::Connected, DECLARATIONS, now);
    assert_eq!(
        actions,
        [Action::LinkUp, Action::Subscribe, Action::Announce]
    );
    assert!(st.connected && st.out.catching_up);
    assert_eq!(kinds(&st), ["resend after 0"]);
    // Declarations carry the connection they came on; other topics are not taken.
    st.on_event(message(DECLARATIONS, "d1"), DECLARATIONS, now);
    st.on_event(message("permitgate/c/verdicts", "x"), DECLARATIONS, now);
    assert_eq!(kinds(&st)[1..], ["declaration d1 on 1 with []"]);
}

#[test]
fn an_acknowledged_publication_travels_with_the_next_declaration() {
    let now = tokio::time::Instant::now();
    let mut st = SessionState::default();
    st.on_event(SessionEvent::Connected, DECLARATIONS, now);
    st.backlog.clear();
    st.out.handed.push_back(Some(41));
    st.out.handed_own();
    st.on_event(SessionEvent::Sent(7), DECLARATIONS, now);
    st.on_event(SessionEvent::Sent(8), DECLARATIONS, now);
    // The status's PUBACK names no queued publication; the verdict's does.
    st.on_event(SessionEvent::Acknowledged(8), DECLARATIONS, now);
    assert!(st.delivered.ids.is_empty());
    st.on_event(SessionEvent::Acknowledged(7), DECLARATIONS, now);
    assert_eq!(st.delivered.ids, [41]);
    assert_eq!(st.delivered.due, Some(now + ACKED_IDLE));
    st.on_event(message(DECLARATIONS, "d2"), DECLARATIONS, now);
    assert_eq!(kinds(&st), ["declaration d2 on 1 with [41]"]);
    assert!(st.delivered.ids.is_empty() && st.delivered.due.is_none());
}

#[test]
fn a_lost_connection_forgets_declarations_but_not_acknowledgements() {
    let now = tokio::time::Instant::now();
    let mut st = SessionState::default();
    st.on_event(SessionEvent::Connected, DECLARATIONS, now);
    st.backlog.clear();
    st.out.handed.push_back(Some(5));
    st.on_event(SessionEvent::Sent(1), DECLARATIONS, now);
    st.on_event(SessionEvent::Acknowledged(1), DECLARATIONS, now);
    st.on_event(message(DECLARATIONS, "d1"), DECLARATIONS, now);
    st.on_event(message(DECLARATIONS, "d2"), DECLARATIONS, now);
    st.out
        .acks
        .push_back(OwedAck::of(&received(b"d0".to_vec())));
    assert_eq!(
        st.on_event(SessionEvent::Lost, DECLARATIONS, now),
        [Action::LinkDown]
    );
    assert!(!st.connected);
    // The broker redelivers d1 and d2; the deletion of 5 still goes to the ledger.
    assert_eq!(kinds(&st), ["delivered [5]"]);
    assert!(
        st.out.acks.is_empty(),
        "PUBACKs of a lost connection are void"
    );
    // The next connection is another number.
    st.on_event(SessionEvent::Connected, DECLARATIONS, now);
    st.on_event(message(DECLARATIONS, "d1"), DECLARATIONS, now);
    assert_eq!(kinds(&st).last().unwrap(), "declaration d1 on 2 with []");
}

#[test]
fn a_stopping_daemon_takes_nothing_new() {
    let now = tokio::time::Instant::now();
    let mut st = SessionState {
        accepting: false,
        ..SessionState::default()
    };
    st.on_event(SessionEvent::Connected, DECLARATIONS, now);
    st.on_event(message(DECLARATIONS, "d1"), DECLARATIONS, now);
    assert!(st.backlog.is_empty(), "{:?}", kinds(&st));
    assert!(!st.out.catching_up, "no re-send is started while stopping");
}

#[test]
fn an_owed_puback_keeps_what_the_client_acknowledges_and_little_else() {
    let mut r = received(vec![b'x'; 4096]);
    r.publish.pkid = 4242;
    let owed = OwedAck::of(&r);
    let p = owed.as_publish();
    assert_eq!((p.pkid, p.qos), (4242, QoS::AtLeastOnce));
    assert_eq!(owed.connection, r.connection);
    // A flood holds many: each is a few bytes, not the message.
    assert!(std::mem::size_of::<OwedAck>() <= 16);
}

/// The stages' senders with queues of `verify` and `ledger` places.
fn two_stages(
    verify: usize,
    ledger: usize,
) -> (
    super::stages::Stages,
    tokio::sync::mpsc::Receiver<Work>,
    std::sync::mpsc::Receiver<Verified>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (vtx, vrx) = tokio::sync::mpsc::channel(verify);
    let (ltx, lrx) = sync_channel(ledger);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = super::stages::Stages::new(vtx, ltx, count.clone());
    (s, vrx, lrx, count)
}

fn declaration_work(id: &str) -> Work {
    Work::Declaration(received(id.as_bytes().to_vec()), Vec::new())
}

fn work_ids(rx: &mut tokio::sync::mpsc::Receiver<Work>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|w| match w {
            Work::Declaration(r, _) => String::from_utf8_lossy(&r.publish.payload).into_owned(),
            _ => "other".into(),
        })
        .collect()
}

#[test]
fn a_declaration_alone_skips_the_verify_stage_only_while_that_stage_holds_nothing() {
    let (stages, mut verify, ledger, in_verify) = two_stages(8, 8);
    let mut backlog = Backlog::default();
    // Alone, and the verify stage idle: straight to the ledger stage, unchecked.
    backlog.push(declaration_work("d1"));
    backlog.feed(&stages);
    let v = ledger.try_recv().expect("at the ledger stage");
    assert_eq!((ids(&v), v.is_checked()), (vec!["d1".to_string()], false));
    // Two together go to the verify stage; the second, though last, follows the first.
    backlog.push(declaration_work("d2"));
    backlog.push(declaration_work("d3"));
    backlog.feed(&stages);
    assert_eq!(work_ids(&mut verify), ["d2", "d3"]);
    assert!(ledger.try_recv().is_err());
    assert_eq!(in_verify.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Alone, but the verify stage has not passed those on: it waits behind them.
    backlog.push(declaration_work("d4"));
    backlog.feed(&stages);
    assert_eq!(work_ids(&mut verify), ["d4"]);
    assert!(ledger.try_recv().is_err());
    // Once it has, the next one alone takes the shortcut again.
    in_verify.fetch_sub(3, std::sync::atomic::Ordering::SeqCst);
    backlog.push(declaration_work("d5"));
    backlog.feed(&stages);
    assert_eq!(ids(&ledger.try_recv().expect("shortcut")), ["d5"]);
    assert!(backlog.is_empty());
}

#[test]
fn a_declaration_alone_waits_for_the_verify_stage_when_the_ledger_stage_is_full() {
    let (stages, mut verify, ledger, _) = two_stages(8, 1);
    let mut backlog = Backlog::default();
    backlog.push(declaration_work("d1"));
    backlog.feed(&stages);
    backlog.push(declaration_work("d2"));
    backlog.feed(&stages);
    assert_eq!(work_ids(&mut verify), ["d2"]);
    assert_eq!(ids(&ledger.try_recv().unwrap()), ["d1"]);
    // Neither with room: it stays in the backlog, nothing counted.
    let (stages, _verify, _ledger, in_verify) = two_stages(1, 1);
    for id in ["a", "b", "c"] {
        backlog.push(declaration_work(id));
    }
    backlog.feed(&stages);
    assert!(!backlog.is_empty());
    assert_eq!(in_verify.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn an_unchecked_declaration_is_decided_alone_and_checked_as_the_verify_stage_would() {
    let (tx, rx) = sync_channel(8);
    tx.send(batch(&["a"], &[])).unwrap();
    let mut unchecked = batch(&["b"], &[4]);
    unchecked.prepared.clear();
    tx.send(unchecked).unwrap();
    tx.send(batch(&["c"], &[])).unwrap();
    let mut carried = None;
    assert_eq!(ids(&next(&rx, &mut carried, 100)), ["a"]);
    let mut b = next(&rx, &mut carried, 100);
    assert_eq!((ids(&b), b.is_checked()), (vec!["b".to_string()], false));
    super::stages::complete(&mut b, &POLICY, 1 << 20);
    assert!(b.is_checked());
    // What the verify stage would have found: "b" is no declaration.
    assert_eq!(
        format!("{:?}", b.prepared[0]),
        format!("{:?}", gate::prepare(b"b", &POLICY, 1 << 20))
    );
    assert_eq!(ids(&next(&rx, &mut carried, 100)), ["c"]);
}
