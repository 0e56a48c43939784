//! The sync attacks: someone who can publish to the national broker (here a
//! misconfigured bridge the ACL lets write anything under `permitgate/`)
//! tries to make the hub or a post accept, refuse, forget or alert
//! something. Each runs against real mosquitto brokers, a hub and two posts.

mod common;

use std::time::Duration;

use common::country::*;
use common::forge::{self, now, record};
use common::*;
use ed25519_dalek::SigningKey;
use permitgate::record::ConsumptionRecord;
use permitgate::sync::protocol::{Ack, SyncTopics};

fn topics() -> SyncTopics {
    SyncTopics::new("permitgate")
}

/// Feed messages carrying `records` as entries 1..=n: one whose national
/// log a stranger signed, and one whose hub head is genuine-looking but
/// whose records come from logs a stranger signed.
/// Publishes each of `messages` on each of `on`, round after round, until
/// post B has refused a record (at most `rounds`): B's uplink may still be
/// subscribing when the country is up, and these topics are not retained.
async fn send_until_b_refuses(
    c: &Country,
    bridge: &rumqttc::AsyncClient,
    on: &[&str],
    messages: &[Vec<u8>],
    rounds: usize,
) -> bool {
    for _ in 0..rounds {
        for msg in messages {
            for topic in on {
                publish(bridge, topic, false, msg.clone()).await;
            }
        }
        if eventually(1, || c.b.alerts_of("refused_record") >= 1).await {
            return true;
        }
    }
    false
}

fn forged_feeds(hub_key: &SigningKey, records: &[ConsumptionRecord]) -> Vec<Vec<u8>> {
    let stranger = permitgate::keys::generate();
    vec![
        forge::feed_message(&stranger, &stranger, records),
        forge::feed_message(hub_key, &stranger, records),
    ]
}

fn reason(v: &serde_json::Value) -> &str {
    v["reasons"][0]["code"].as_str().unwrap_or("")
}

/// Attack 1: a made-up feed entry naming an unused license must not make
/// the genuine declaration with that license fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_feed_entry_does_not_consume_a_license() {
    let c = Country::start().await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    // Signed by a stranger as the hub: a record of an unknown checkpoint,
    // and one of a real checkpoint from a log a stranger signed.
    let mut feeds = forged_feeds(
        &permitgate::keys::generate(),
        &[record("post-z", 1, "LIC-INNOCENT")],
    );
    feeds.extend(forged_feeds(
        &c.hub.key,
        &[record("post-a", 1, "LIC-INNOCENT")],
    ));
    // Sent again until B has refused it: the feed is not retained, and B's
    // uplink may still be subscribing when the country is up.
    let feed = topics().feed();
    let reply = topics().backfill_reply("post-b");
    let refused = send_until_b_refuses(&c, &bridge, &[&feed, &reply], &feeds, 30).await;
    assert!(
        refused,
        "B refuses the forged feed and says so\n{}",
        c.b.log()
    );
    assert_eq!(c.b.remote_consumptions(), 0, "nothing forged is stored");
    let mut officer = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    officer
        .send(declaration("DB-1", Some(&c.b.token_for("LIC-INNOCENT"))))
        .await;
    let v = officer.verdict_for("DB-1").await;
    assert_eq!(v["verdict"], "cleared", "{v}");
}

/// Attack 2: forged entries occupying a real checkpoint's next numbers must
/// not push out its genuine record: a license consumed at A stays consumed at B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_entries_cannot_take_a_real_checkpoints_numbers() {
    let c = Country::start().await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let records: Vec<ConsumptionRecord> = (1..=3)
        .map(|seq| record("post-a", seq, &format!("LIC-JUNK-{seq}")))
        .collect();
    // Sent again until B has refused them: B's uplink may still be
    // subscribing when the country is up, and the feed is not retained.
    let feeds = forged_feeds(&c.hub.key, &records);
    assert!(send_until_b_refuses(&c, &bridge, &[&topics().feed()], &feeds, 15).await);

    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let token = c.a.token_for("LIC-ONCE");
    officer_a.send(declaration("DA-1", Some(&token))).await;
    assert_eq!(officer_a.verdict_for("DA-1").await["verdict"], "cleared");
    assert!(
        eventually(15, || c.b.remote_consumptions() == 1).await,
        "B learns A's genuine record\n{}",
        c.b.log()
    );
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    officer_b.send(declaration("DB-1", Some(&token))).await;
    let v = officer_b.verdict_for("DB-1").await;
    assert_eq!(reason(&v), "license_already_used", "{v}");
}

/// Attack 3: forged entries with high global numbers must not move B's
/// high-water mark past entries it does not hold: an entry B missed while
/// away is still backfilled when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_global_numbers_cannot_hide_an_entry_from_backfill() {
    let mut c = Country::start().await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let (_watcher, mut requests) =
        national_client(c.national.port, "investigator", &[&topics().backfill()]).await;
    let records: Vec<ConsumptionRecord> = (1..=50)
        .map(|g| record("post-z", g, &format!("LIC-Z-{g}")))
        .collect();
    // Sent again until B has refused them: B's uplink may still be
    // subscribing when the country is up, and the feed is not retained.
    let feeds = forged_feeds(&c.hub.key, &records);
    assert!(send_until_b_refuses(&c, &bridge, &[&topics().feed()], &feeds, 15).await);
    // A head far ahead of the hub's starts no exchange that does not end:
    // over three seconds the posts ask about as often as their timers say
    // (every 3 s each here), not thousands of times.
    while requests.try_recv().is_ok() {}
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut asked = 0;
    while requests.try_recv().is_ok() {
        asked += 1;
    }
    assert!(asked <= 6, "{asked} backfill requests in 3 s");

    // B goes away, and the broker forgets its session (no persistence), so
    // only a backfill can bring it what A consumes meanwhile.
    assert!(c.b.stop().success());
    c.national.restart();
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let token = c.a.token_for("LIC-MISSED");
    officer_a.send(declaration("DA-1", Some(&token))).await;
    assert_eq!(officer_a.verdict_for("DA-1").await["verdict"], "cleared");
    assert!(
        eventually(20, || c.hub.records() == 1).await,
        "{}",
        c.hub.log()
    );

    c.b.start();
    wait_online(c.b.broker.port).await;
    assert!(
        eventually(20, || c.b.remote_consumptions() == 1).await,
        "B backfills the entry it missed\n{}",
        c.b.log()
    );
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    officer_b.send(declaration("DB-1", Some(&token))).await;
    assert_eq!(
        reason(&officer_b.verdict_for("DB-1").await),
        "license_already_used"
    );
}

/// Attack 4: a `double_use` alert published on the hub's alerts topic with
/// junk evidence is neither stored nor passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_double_use_alert_is_neither_stored_nor_republished() {
    let c = Country::start().await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let stranger = permitgate::keys::generate();
    let evidence = |cp: &str, seq: u64| {
        let proven = forge::proven(cp, &stranger, &[record(cp, seq, "LIC-FRAMED")]).remove(0);
        serde_json::json!({
            "checkpoint": cp, "seq": seq, "declaration_id": "D-X",
            "consumed_at": "2026-11-30T00:00:00Z",
            "proven": proven,
        })
    };
    let forged = |records: serde_json::Value| {
        serde_json::json!({
            "kind": "double_use", "checkpoint": "hub", "raised_at": "2026-11-30T00:00:00Z",
            "declaration_id": null, "license_id": "LIC-FRAMED",
            "alert_id": "00", "records": records,
        })
        .to_string()
        .into_bytes()
    };
    // Junk evidence, and records of real checkpoints signed by another key,
    // sent again until B has refused them (its uplink may still be subscribing).
    let alerts = [
        forged(
            serde_json::json!([{"checkpoint": "post-a", "seq": 1, "declaration_id": "D", "consumed_at": "x", "cose_hex": "00ff"}]),
        ),
        forged(serde_json::json!([
            evidence("post-a", 1),
            evidence("post-b", 1)
        ])),
    ];
    assert!(
        send_until_b_refuses(&c, &bridge, &[&topics().alerts()], &alerts, 15).await,
        "{}",
        c.b.log()
    );
    assert_eq!(c.b.alerts_of("double_use"), 0);
    assert_eq!(c.a.alerts_of("double_use"), 0);
    // What the officer sees: the refusal, never a double use.
    let refused = officer_b
        .next(|t, a| {
            t.ends_with("/alerts")
                && a["kind"] == "refused_record"
                && a["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("unproven_alert")
        })
        .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or("")
            .contains("evidence"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !officer_b
            .seen
            .iter()
            .any(|(_, a)| a["kind"] == "double_use"),
        "{:?}",
        officer_b.seen
    );
}

/// Attacks 5 and 6: a retained acknowledgement claiming everything, and a
/// stream of fake ones while licenses clear, delete nothing from the
/// outbox: every consumption reaches the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_acknowledgements_delete_nothing_from_the_outbox() {
    let mut c = Country::start().await;
    c.hub.kill();
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let ack_topic = topics().ack("post-a");
    let claim = |contiguous: u64| Ack {
        checkpoint: "post-a".into(),
        contiguous,
        post_head: None,
        resend: false,
        issued_at: now(),
    };
    // (5) Retained, claiming 2^63−1, unsealed and sealed by a stranger.
    let stranger = permitgate::keys::generate();
    publish(&bridge, &ack_topic, true, claim(i64::MAX as u64).encode()).await;
    publish(
        &bridge,
        &ack_topic,
        true,
        claim(i64::MAX as u64).seal(HUB_KID, &stranger),
    )
    .await;
    // (6) Fake acknowledgements keep coming while licenses clear.
    let faker = bridge.clone();
    let topic = ack_topic.clone();
    let fakes = tokio::spawn(async move {
        for n in 1u64.. {
            let a = claim(n);
            let msg = if n % 2 == 0 {
                a.encode()
            } else {
                a.seal(HUB_KID, &stranger)
            };
            publish(&faker, &topic, false, msg).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    const N: usize = 40;
    for i in 0..N {
        officer
            .send(declaration(
                &format!("DA-{i}"),
                Some(&c.a.token_for(&format!("LIC-ACK-{i}"))),
            ))
            .await;
    }
    for i in 0..N {
        assert_eq!(
            officer.verdict_for(&format!("DA-{i}")).await["verdict"],
            "cleared"
        );
    }
    // Several sync ticks under the fakes: nothing leaves the outbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.a.outbox(), N, "{}", c.a.log());
    assert!(c.a.alerts_of("refused_record") >= 1);
    fakes.abort();
    c.hub.start();
    assert!(
        eventually(30, || c.hub.records() == N && c.a.outbox() == 0).await,
        "hub {}, outbox {}\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.hub.log()
    );
}

/// Attack 7: an oversized message on any topic a client reads never puts it
/// into a reconnect loop; one large but within the limit is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_never_wedge_a_client() {
    let c = Country::start().await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let huge = vec![b'x'; 17 << 20];
    let large = vec![0xa5u8; 5 << 20];
    // The post's own broker: 17 MiB, then 5 MiB, on the declarations topic.
    let mut officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let (scanner, _) = raw_client(c.a.broker.port, None, &[]).await;
    for msg in [&huge, &large] {
        publish(
            &scanner,
            "permitgate/post-a/declarations",
            false,
            msg.clone(),
        )
        .await;
    }
    // The national broker: the policy topic (retained) and the hub's records topic.
    for msg in [&huge, &large] {
        publish(&bridge, &topics().policy(), true, msg.clone()).await;
        publish(&bridge, &topics().records("post-a"), false, msg.clone()).await;
    }
    // The authority's 5 MiB of garbage on the policy topic is refused by both posts.
    assert!(
        eventually(15, || c.a.alerts_of("refused_record") >= 1
            && c.b.alerts_of("refused_record") >= 1)
        .await,
        "{}",
        c.a.log()
    );
    // The 5 MiB declaration is answered `malformed`.
    let v = officer
        .next(|t, v| t.ends_with("/verdicts") && v["declaration_id"].is_null())
        .await;
    assert_eq!(reason(&v), "malformed", "{v}");
    assert!(
        eventually(15, || c.hub.alerts_of("refused_record") >= 1).await,
        "the hub refuses the 5 MiB records message\n{}",
        c.hub.log()
    );
    // Everything goes on within seconds: A decides, the hub stores, B learns.
    let token = c.a.token_for("LIC-AFTER");
    officer.send(declaration("DA-1", Some(&token))).await;
    assert_eq!(officer.verdict_for("DA-1").await["verdict"], "cleared");
    assert!(
        eventually(15, || c.hub.records() == 1
            && c.b.remote_consumptions() == 1)
        .await,
        "hub {}, B {}\n{}\n{}",
        c.hub.records(),
        c.b.remote_consumptions(),
        c.hub.log(),
        c.a.log()
    );
    // And no client ever lost its connection over it.
    for (who, log) in [("A", c.a.log()), ("B", c.b.log()), ("hub", c.hub.log())] {
        assert!(
            !log.contains("connection lost"),
            "{who} reconnected:\n{log}"
        );
    }
    // The broker says what it dropped.
    let broker_log =
        std::fs::read_to_string(c.a.broker.conf.with_extension("log")).unwrap_or_default();
    assert!(
        broker_log.contains("Dropping too large outgoing PUBLISH"),
        "{broker_log}"
    );
}

/// A record the hub receives straight from the bridge, signed by a key
/// the registry does not hold for that checkpoint, is refused and never
/// reaches the other post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_records_of_real_checkpoints_signed_by_other_keys() {
    let c = Country::start().await;
    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let msg = forge::records_message(
        "post-a",
        &permitgate::keys::generate(),
        &[record("post-a", 1, "LIC-X")],
    );
    publish(&bridge, &topics().records("post-a"), false, msg).await;
    assert!(eventually(15, || c.hub.alerts_of("refused_record") == 1).await);
    assert_eq!(c.hub.records(), 0);
    assert_eq!(c.b.remote_consumptions(), 0);
}
