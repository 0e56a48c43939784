//! Insider attacks: what someone holding a checkpoint's key (a stolen
//! gateway, a bribed operator) or replaying genuine messages can do to the
//! country. The design's contract ("Sync, and who trusts whom"): what a
//! stolen key signs may make licenses count as used (and is alerted), but
//! it never makes a used license clear, never silences the genuine post
//! and never stops the national feed; a genuine message re-published later
//! changes nothing.
//!
//! Each test runs against real mosquitto brokers (the national one with
//! the shipped ACL), a hub and two posts, and asserts the fixed behaviour.
//! Every unmet expectation of a test is collected and reported together
//! ([`Findings`]), so one run shows everything a fix still lacks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::country::*;
use common::forge::{self, record};
use common::*;
use ed25519_dalek::SigningKey;
use permitgate::record::Goods;
use permitgate::sync::protocol::{Ack, Backfill, Feed, HubTime, SyncTopics};

fn topics() -> SyncTopics {
    SyncTopics::new("permitgate")
}

fn reason(v: &serde_json::Value) -> &str {
    v["reasons"][0]["code"].as_str().unwrap_or("")
}

/// How long anything that goes through the hub may take on a loaded machine.
const SYNC_SECS: u64 = 40;

/// The unmet expectations of one test, reported together at its end.
struct Findings(Vec<String>);

impl Findings {
    fn new() -> Findings {
        Findings(Vec::new())
    }

    /// Notes `what` as unmet unless `ok`; returns `ok`.
    fn expect(&mut self, ok: bool, what: impl Into<String>) -> bool {
        if !ok {
            let what = what.into();
            eprintln!("UNMET: {what}");
            self.0.push(what);
        }
        ok
    }

    /// Panics listing every unmet expectation, with `context` (logs).
    fn finish(self, context: impl FnOnce() -> String) {
        if self.0.is_empty() {
            return;
        }
        panic!(
            "{} expectation(s) unmet:\n- {}\n\n{}",
            self.0.len(),
            self.0.join("\n- "),
            context()
        );
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The hub's and both posts' logs, shortened.
fn logs(c: &Country) -> String {
    format!(
        "--- hub log (tail) ---\n{}\n--- post-a log (tail) ---\n{}\n--- post-b log (tail) ---\n{}",
        tail(&c.hub.log(), 40),
        tail(&c.a.log(), 40),
        tail(&c.b.log(), 40)
    )
}

/// A country whose hub serves HTTP (returned: its base URL); `national_extra`
/// is appended to the national broker's config (which is restarted) first.
async fn country_with_hub_http(national_extra: &str) -> (Country, String) {
    let mut c = Country::configured("");
    if !national_extra.is_empty() {
        let mut conf = std::fs::read_to_string(&c.national.conf).unwrap();
        conf.push_str(national_extra);
        std::fs::write(&c.national.conf, conf).unwrap();
        c.national.restart();
    }
    let base = c.hub.enable_http();
    c.hub.start();
    c.a.start();
    c.b.start();
    wait_online(c.a.broker.port).await;
    wait_online(c.b.broker.port).await;
    (c, base)
}

/// GET `url`: status, body as JSON (null if not), body as text; `None` if
/// nothing answers.
fn try_get(url: &str) -> Option<(u16, serde_json::Value, String)> {
    let (code, body) = match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
        Err(_) => return None,
    };
    Some((code, serde_json::from_str(&body).unwrap_or_default(), body))
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(base: &str, series: &str) -> Option<f64> {
    let (_, _, text) = try_get(&format!("{base}/metrics"))?;
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The checkpoints the hub's API lists as having consumed `license`.
fn hub_uses(base: &str, license: &str) -> Vec<String> {
    let Some((_, story, _)) = try_get(&format!("{base}/api/licenses/{license}")) else {
        return Vec::new();
    };
    story["uses"]
        .as_array()
        .map(|uses| {
            uses.iter()
                .filter_map(|u| u["checkpoint"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `post` holds a record of `license` learned from another checkpoint.
fn learned(post: &Post, license: &str) -> bool {
    !post
        .ledger_strings(&format!(
            "SELECT license_id FROM remote_consumptions WHERE license_id = '{license}'"
        ))
        .is_empty()
}

/// Presents `license` at `post` in declaration `id`; its verdict.
async fn present(officer: &mut Officer, post: &Post, id: &str, license: &str) -> serde_json::Value {
    officer
        .send(declaration(id, Some(&post.token_for(license))))
        .await;
    officer.verdict_for(id).await
}

/// Moves what the officer received into `seen`.
fn drain(officer: &mut Officer) {
    while let Ok(m) = officer.rx.try_recv() {
        officer.seen.push(m);
    }
}

/// The alerts the officer received so far.
fn alerts_seen(officer: &mut Officer) -> Vec<serde_json::Value> {
    drain(officer);
    officer
        .seen
        .iter()
        .filter(|(t, _)| t.ends_with("/alerts"))
        .map(|(_, a)| a.clone())
        .collect()
}

/// The first alert the officer receives that satisfies `want`, within `secs`.
async fn alert_within(
    officer: &mut Officer,
    secs: u64,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(a) = alerts_seen(officer).into_iter().find(|a| want(a)) {
            return Some(a);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn detail(a: &serde_json::Value) -> &str {
    a["detail"].as_str().unwrap_or("")
}

/// Alerts in short: kind and detail.
fn summary(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| format!("{}: {}", a["kind"].as_str().unwrap_or("?"), detail(a)))
        .collect()
}

/// Attack 1: a stolen post key, used before the real post's first record,
/// must not silence the real post. The record it signed counts (its license
/// is used), the two logs under one key are equivocation (alerted at the
/// hub and at the post), and the genuine post's records still reach the
/// national log and every other post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_post_key_does_not_silence_the_real_post() {
    let (c, hub_http) = country_with_hub_http("").await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let mut found = Findings::new();

    // The thief: post-a's key and post-a's broker login. Before post-a's
    // first record, a one-leaf log of its own: record 1 consumes U.
    let key_a = Country::key_of(&c.a);
    let (thief, _) = national_client(c.national.port, "post-a", &[]).await;
    let forged = forge::records_message("post-a", &key_a, &[record("post-a", 1, "LIC-U")]);
    publish(&thief, &topics().records("post-a"), false, forged).await;
    // What the key signed counts: the hub stores it and post-b learns it.
    assert!(
        eventually(SYNC_SECS, || learned(&c.b, "LIC-U")).await,
        "post-b learns the record post-a's key signed\n{}",
        logs(&c)
    );

    // The genuine post-a goes on clearing.
    let v = present(&mut officer_a, &c.a, "DA-X", "LIC-X").await;
    found.expect(v["verdict"] == "cleared", format!("post-a clears X: {v}"));
    let v = present(&mut officer_a, &c.a, "DA-Y", "LIC-Y").await;
    found.expect(v["verdict"] == "cleared", format!("post-a clears Y: {v}"));
    let b_learns = eventually(SYNC_SECS, || {
        learned(&c.b, "LIC-X") && learned(&c.b, "LIC-Y")
    })
    .await;
    found.expect(
        b_learns,
        format!(
            "post-b learns X and Y within {SYNC_SECS} s (learned X: {}, Y: {}; hub holds X at {:?}, Y at {:?})",
            learned(&c.b, "LIC-X"),
            learned(&c.b, "LIC-Y"),
            hub_uses(&hub_http, "LIC-X"),
            hub_uses(&hub_http, "LIC-Y"),
        ),
    );
    for (id, license) in [("DB-X", "LIC-X"), ("DB-Y", "LIC-Y"), ("DB-U", "LIC-U")] {
        let v = present(&mut officer_b, &c.b, id, license).await;
        found.expect(
            reason(&v) == "license_already_used",
            format!("{license} presented at post-b is rejected as license_already_used: {v}"),
        );
    }
    let outbox_empty = eventually(SYNC_SECS, || c.a.outbox() == 0).await;
    found.expect(
        outbox_empty,
        format!(
            "post-a's outbox empties (its records reach the hub's log); {} left",
            c.a.outbox()
        ),
    );

    // The hub keeps the evidence and says whose key equivocated.
    let equivocation_url = format!("{hub_http}/api/alerts?kind=log_equivocation");
    let hub_alerted = eventually(SYNC_SECS, || {
        try_get(&equivocation_url).is_some_and(|(_, body, _)| {
            body["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["signer"] == "post-a"))
        })
    })
    .await;
    found.expect(
        hub_alerted,
        format!(
            "the hub raises log_equivocation with signer \"post-a\" (GET /api/alerts?kind=log_equivocation: {})",
            try_get(&equivocation_url)
                .map(|r| r.2)
                .unwrap_or_else(|| "no answer".into())
        ),
    );

    // Post-a says its key is used elsewhere, never that it lost decisions.
    let elsewhere = alert_within(&mut officer_a, SYNC_SECS, |a| {
        a["kind"] == "log_equivocation" && detail(a).contains("is being used elsewhere")
    })
    .await;
    let seen = alerts_seen(&mut officer_a);
    found.expect(
        elsewhere.is_some(),
        format!(
            "post-a publishes a log_equivocation alert saying its key \"is being used elsewhere\"; it published: {:?}",
            summary(&seen)
        ),
    );
    let lost: Vec<String> = summary(&seen)
        .into_iter()
        .filter(|a| a.contains("lost or erased"))
        .collect();
    found.expect(
        lost.is_empty(),
        format!("post-a never says its decisions were lost or erased: {lost:?}"),
    );
    found.finish(|| logs(&c));
}

/// Target size of the attacker's records message: within the shipped
/// broker's `message_size_limit` (16,000,000), but its feed entry and
/// backfill replies, with heads and proofs around it, are not.
const HUGE: usize = 15_999_966;

/// A valid records message of post-a (signed with `key`) of exactly
/// `size` bytes: one consumption record of `license` with a very long
/// goods list, in a one-leaf log.
fn huge_records_message(key: &SigningKey, license: &str, size: usize) -> Vec<u8> {
    let item = Goods {
        hs_code: "850511".into(),
        elements: vec!["Nd".into(), "Dy".into()],
        net_kg: 480.0,
    };
    let mut rec = record("post-a", 1, license);
    // The message is the leaf plus a fixed overhead (head, framing) once
    // the leaf is long; the leaf grows by one item's bytes per item.
    rec.goods = vec![item.clone(); 100_000];
    let leaf_100k = rec.to_leaf().len();
    let overhead =
        forge::records_message("post-a", key, std::slice::from_ref(&rec)).len() - leaf_100k;
    rec.goods.push(item.clone());
    let per_item = rec.to_leaf().len() - leaf_100k;
    let want_leaf = size - overhead;
    // Some items short, made up by a longer declaration id.
    let items = 100_000 + (want_leaf - leaf_100k) / per_item - 1;
    rec.goods = vec![item; items];
    let base_id = rec.declaration_id.clone();
    let mut pad = want_leaf - rec.to_leaf().len();
    for _ in 0..4 {
        rec.declaration_id = format!("{base_id}-{}", "x".repeat(pad));
        let len = rec.to_leaf().len();
        if len == want_leaf {
            break;
        }
        pad = (pad as i64 + want_leaf as i64 - len as i64) as usize;
    }
    let msg = forge::records_message("post-a", key, &[rec]);
    assert_eq!(
        msg.len(),
        size,
        "the attacker's message has the size wanted"
    );
    msg
}

/// Attack 2: one valid but huge record, signed with a stolen key, must not
/// stop the national feed: the hub refuses it where it is admitted
/// (`too_large`), keeps its broker connection, and the feed flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_huge_valid_record_does_not_stop_the_national_feed() {
    // The national broker as shipped: message_size_limit 16000000.
    let (c, hub_http) = country_with_hub_http("message_size_limit 16000000\n").await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let mut found = Findings::new();
    const CONNECTED: &str = "permitgate_hub_broker_connected";
    const TOO_LARGE: &str = "permitgate_hub_refused_total{reason=\"too_large\"}";
    assert!(
        eventually(SYNC_SECS, || metric(&hub_http, CONNECTED) == Some(1.0)).await,
        "the hub connects to the national broker\n{}",
        c.hub.log()
    );
    let hub_log_before = c.hub.log().len();

    // From now on the hub's broker connection is watched.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        let base = hub_http.clone();
        std::thread::spawn(move || {
            let mut down = Vec::new();
            while watching.load(Ordering::Relaxed) {
                // (No answer at all is not counted: other checks catch a dead hub.)
                if let Some(v) = metric(&base, CONNECTED)
                    && v != 1.0
                {
                    down.push(v);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            down
        })
    };

    let key_a = Country::key_of(&c.a);
    let huge = huge_records_message(&key_a, "LIC-HUGE", HUGE);
    let (thief, _) = national_client(c.national.port, "post-a", &[]).await;
    publish(&thief, &topics().records("post-a"), false, huge).await;
    let refused = eventually(SYNC_SECS, || {
        metric(&hub_http, TOO_LARGE).is_some_and(|n| n >= 1.0)
    })
    .await;
    found.expect(
        refused,
        format!(
            "the hub refuses the {HUGE}-byte records message: {TOO_LARGE} ≥ 1 (it is {:?}; the hub holds LIC-HUGE at {:?})",
            metric(&hub_http, TOO_LARGE),
            hub_uses(&hub_http, "LIC-HUGE")
        ),
    );

    // The feed still flows, both ways.
    let v = present(&mut officer_b, &c.b, "DB-P", "LIC-P").await;
    found.expect(v["verdict"] == "cleared", format!("post-b clears P: {v}"));
    let v = present(&mut officer_a, &c.a, "DA-Q", "LIC-Q").await;
    found.expect(v["verdict"] == "cleared", format!("post-a clears Q: {v}"));
    let a_learns = eventually(SYNC_SECS, || learned(&c.a, "LIC-P")).await;
    found.expect(
        a_learns,
        format!(
            "post-a learns P (consumed at post-b) within {SYNC_SECS} s; the hub holds it at {:?}",
            hub_uses(&hub_http, "LIC-P")
        ),
    );
    let b_learns = eventually(SYNC_SECS, || learned(&c.b, "LIC-Q")).await;
    found.expect(
        b_learns,
        format!(
            "post-b learns Q (consumed at post-a) within {SYNC_SECS} s; the hub holds it at {:?}",
            hub_uses(&hub_http, "LIC-Q")
        ),
    );
    let v = present(&mut officer_a, &c.a, "DA-P", "LIC-P").await;
    found.expect(
        reason(&v) == "license_already_used",
        format!("P presented at post-a is rejected as license_already_used: {v}"),
    );
    let v = present(&mut officer_b, &c.b, "DB-Q", "LIC-Q").await;
    found.expect(
        reason(&v) == "license_already_used",
        format!("Q presented at post-b is rejected as license_already_used: {v}"),
    );

    // The huge record was refused: its license is used nowhere.
    let hub_holds = hub_uses(&hub_http, "LIC-HUGE");
    found.expect(
        hub_holds.is_empty(),
        format!("the hub holds no use of LIC-HUGE: {hub_holds:?}"),
    );
    for (name, post) in [("post-a", &c.a), ("post-b", &c.b)] {
        found.expect(
            !learned(post, "LIC-HUGE"),
            format!("{name} has not learned LIC-HUGE"),
        );
    }
    let v = present(&mut officer_b, &c.b, "DB-HUGE", "LIC-HUGE").await;
    found.expect(
        v["verdict"] == "cleared",
        format!("LIC-HUGE presented at post-b clears: {v}"),
    );

    // And the hub never lost its broker connection over it.
    watching.store(false, Ordering::Relaxed);
    let down = watcher.join().unwrap();
    let mut values = down.clone();
    values.dedup();
    found.expect(
        down.is_empty(),
        format!(
            "{CONNECTED} stays 1 throughout; {} sample(s) of 200 ms said otherwise ({values:?})",
            down.len()
        ),
    );
    // The hub's session logs a lost connection as "connection lost" (or, when
    // it keeps happening, "keeps closing this connection") and each new one
    // as "hub: connected".
    let hub_log = c.hub.log();
    let after = &hub_log[hub_log_before.min(hub_log.len())..];
    let (lost, closing, reconnected) = (
        after.matches("connection lost").count(),
        after.matches("keeps closing this connection").count(),
        after.matches("hub: connected").count(),
    );
    found.expect(
        lost + closing + reconnected == 0,
        format!(
            "the hub's log after the attack: \"connection lost\" {lost} time(s), \"keeps closing this connection\" {closing}, \"hub: connected\" {reconnected}"
        ),
    );
    found.finish(|| {
        let broker =
            std::fs::read_to_string(c.national.conf.with_extension("log")).unwrap_or_default();
        format!(
            "{}\n--- national broker log (tail) ---\n{}",
            logs(&c),
            tail(&broker, 20)
        )
    });
}

/// Attack 3: post-a's first genuine acknowledgement, replayed over and over
/// while it clears new licenses, must change nothing: every new record
/// reaches the hub and every other post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_genuine_ack_does_not_roll_a_post_back() {
    let (c, hub_http) = country_with_hub_http("").await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let mut found = Findings::new();

    // Post-a's first clearance, synced.
    let v = present(&mut officer_a, &c.a, "DA-0", "LIC-ACK-0").await;
    assert_eq!(v["verdict"], "cleared", "{v}");
    assert!(
        eventually(SYNC_SECS, || hub_uses(&hub_http, "LIC-ACK-0") == ["post-a"]
            && c.a.outbox() == 0)
        .await,
        "post-a's first record reaches the hub's log\n{}",
        logs(&c)
    );
    // Its genuine sealed acknowledgement, as the broker keeps it.
    let ack_topic = topics().ack("post-a");
    let (_investigator, mut acks) =
        national_client(c.national.port, "investigator", &[&ack_topic]).await;
    let (_, genuine) = tokio::time::timeout(Duration::from_secs(10), acks.recv())
        .await
        .expect("the retained acknowledgement of post-a")
        .unwrap();
    let ack = Ack::open(&genuine, &c.registry(), forge::now()).expect("sealed by the hub");
    assert_eq!(ack.contiguous, 1, "{ack:?}");
    assert!(ack.post_head.is_some(), "{ack:?}");

    // Replayed every 20 ms from now on.
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let replayer = tokio::spawn(async move {
        loop {
            let _ = bridge
                .publish(
                    ack_topic.as_str(),
                    rumqttc::QoS::AtMostOnce,
                    false,
                    genuine.clone(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let licenses = ["LIC-ACK-1", "LIC-ACK-2", "LIC-ACK-3"];
    for (i, license) in licenses.iter().enumerate() {
        let v = present(&mut officer_a, &c.a, &format!("DA-{}", i + 1), license).await;
        found.expect(
            v["verdict"] == "cleared",
            format!("post-a clears {license}: {v}"),
        );
    }
    let all_at_hub = eventually(SYNC_SECS, || {
        licenses
            .iter()
            .all(|l| hub_uses(&hub_http, l) == ["post-a"])
    })
    .await;
    let at_hub: Vec<(&str, Vec<String>)> = licenses
        .iter()
        .map(|l| (*l, hub_uses(&hub_http, l)))
        .collect();
    found.expect(
        all_at_hub,
        format!(
            "all three records reach the hub within {SYNC_SECS} s under the replay (the hub's uses: {at_hub:?}; post-a's outbox: {})",
            c.a.outbox()
        ),
    );
    let b_learns = eventually(SYNC_SECS, || licenses.iter().all(|l| learned(&c.b, l))).await;
    found.expect(
        b_learns,
        format!(
            "post-b learns all three within {SYNC_SECS} s (learned: {:?})",
            licenses
                .iter()
                .filter(|l| learned(&c.b, l))
                .collect::<Vec<_>>()
        ),
    );
    for (i, license) in licenses.iter().enumerate() {
        let v = present(&mut officer_b, &c.b, &format!("DB-{}", i + 1), license).await;
        found.expect(
            reason(&v) == "license_already_used",
            format!("{license} presented at post-b is rejected as license_already_used: {v}"),
        );
    }
    replayer.abort();
    found.finish(|| logs(&c));
}

/// The next backfill request post-b sends with `after`, sealed as sent.
async fn next_request_of_b(
    c: &Country,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    after: u64,
) -> (Vec<u8>, Backfill) {
    let registry = c.registry();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SYNC_SECS);
    loop {
        let (topic, payload) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "post-b asks for backfill after {after} within {SYNC_SECS} s\n{}",
                    logs(c)
                )
            })
            .unwrap();
        if topic != topics().backfill() {
            continue;
        }
        if let Ok(req) = Backfill::open(&payload, &registry, forge::now())
            && req.checkpoint == "post-b"
            && req.after == after
        {
            return (payload, req);
        }
    }
}

/// Attack 4: two of post-b's genuine backfill requests, replayed
/// alternately, must not make the hub answer again and again: each sealed
/// request is answered at most once (and at most 10 replies a second per
/// checkpoint key), and post-b still syncs afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_backfill_requests_are_not_answered_again() {
    let c = Country::start().await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let reply_topic = topics().backfill_reply("post-b");
    let (_investigator, mut rx) = national_client(
        c.national.port,
        "investigator",
        &[&topics().backfill(), &reply_topic],
    )
    .await;
    let mut found = Findings::new();

    // Post-b asks now and then (every 10 × interval_ms, 3 s here): one
    // request while the national log is empty, one after it learned a record.
    let (first, req0) = next_request_of_b(&c, &mut rx, 0).await;
    let v = present(&mut officer_a, &c.a, "DA-1", "LIC-BF-1").await;
    assert_eq!(v["verdict"], "cleared", "{v}");
    assert!(
        eventually(SYNC_SECS, || learned(&c.b, "LIC-BF-1")).await,
        "{}",
        logs(&c)
    );
    let (second, req1) = next_request_of_b(&c, &mut rx, 1).await;
    // One more record, so that both requests have something to answer.
    let v = present(&mut officer_a, &c.a, "DA-2", "LIC-BF-2").await;
    assert_eq!(v["verdict"], "cleared", "{v}");
    assert!(
        eventually(SYNC_SECS, || learned(&c.b, "LIC-BF-2")).await,
        "{}",
        logs(&c)
    );

    // Both replayed alternately every 40 ms for 2 s.
    while rx.try_recv().is_ok() {}
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let replay_started = std::time::Instant::now();
    let mut sent = 0;
    while replay_started.elapsed() < Duration::from_secs(2) {
        let msg = if sent % 2 == 0 { &first } else { &second };
        publish(&bridge, &topics().backfill(), false, msg.clone()).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Replies still on their way are counted too: a window of 2 s more.
    let window_end = tokio::time::Instant::now() + Duration::from_secs(2);
    let registry = c.registry();
    let (mut replies, mut to_replays) = (0, 0);
    while let Ok(Some((topic, payload))) = tokio::time::timeout_at(window_end, rx.recv()).await {
        if topic != reply_topic {
            continue;
        }
        replies += 1;
        // A reply names the request it answers by its `issued_at` (sealed).
        let asked_at = Feed::decode(&payload)
            .ok()
            .and_then(|f| f.time)
            .and_then(|t| HubTime::open(&t, &registry, forge::now()).ok())
            .map(|t| t.asked_at);
        if asked_at.is_none_or(|t| t == req0.issued_at || t == req1.issued_at) {
            to_replays += 1;
        }
    }
    found.expect(
        to_replays <= 2,
        format!(
            "the hub answers each replayed request at most once: {to_replays} replies to the {sent} replayed requests ({replies} replies to post-b in all) during the 2 s replay and 2 s after"
        ),
    );

    // Post-b still syncs.
    let v = present(&mut officer_a, &c.a, "DA-3", "LIC-BF-3").await;
    found.expect(
        v["verdict"] == "cleared",
        format!("post-a clears LIC-BF-3: {v}"),
    );
    let b_learns = eventually(SYNC_SECS, || learned(&c.b, "LIC-BF-3")).await;
    found.expect(
        b_learns,
        format!("post-b learns a new clearance at post-a within {SYNC_SECS} s"),
    );
    found.finish(|| logs(&c));
}
