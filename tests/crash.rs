//! Crash consistency, proven by killing: a real daemon against a real
//! mosquitto is SIGKILLed at random moments while a stream of declarations
//! (valid, reused, forged, malformed, uncontrolled) keeps arriving, and
//! restarted each time. Afterwards the ledger must hold exactly what the
//! stream deserves. `PG_CRASH_KILLS` sets the number of kills (default 50).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Valid,
    Reused,
    Forged,
    Malformed,
    Uncontrolled,
}

/// What the harness does to the running system, again and again.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Disruption {
    /// SIGKILL the daemon and start it again.
    DaemonKilled,
    /// Stop mosquitto (it saves its persistent sessions) and start it again;
    /// the daemon keeps running and reconnects by itself.
    BrokerRestarted,
}

fn rounds_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_consumes_nothing_twice() {
    harness(
        Disruption::DaemonKilled,
        rounds_from_env("PG_CRASH_KILLS", 50),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_nothing_and_consume_nothing_twice() {
    harness(
        Disruption::BrokerRestarted,
        rounds_from_env("PG_BROKER_RESTARTS", 8),
    )
    .await;
}

/// The scanner's client: a persistent session, so a broker restart keeps
/// (and the client re-sends) what it published and has not had acknowledged.
/// A clean-session client drops those on reconnect.
fn scanner(port: u16) -> rumqttc::AsyncClient {
    let mut opts = rumqttc::MqttOptions::new("crash-scanner", "127.0.0.1", port);
    opts.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

async fn harness(disruption: Disruption, kills: usize) {
    let mut post = Post::new();
    if disruption == Disruption::BrokerRestarted {
        // A broker that keeps its sessions and queued messages across a restart.
        post.broker = Broker::start_with(
            post.dir.path(),
            "",
            &format!(
                // `user root`: mosquitto started as root otherwise drops to
                // its own user, which cannot write the test's directory.
                "user root\npersistence true\npersistence_location {}/\n",
                post.dir.path().display()
            ),
        );
        post.write_config(&format!(
            "port = {}\nreconnect_max_secs = 1\n",
            post.broker.port
        ));
    }
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "crash-officer").await;

    // The stream, prepared in advance: (declaration id, kind, license id, payload).
    let impostor = permitgate::keys::generate();
    let mut stream = Vec::new();
    let mut licenses: Vec<(String, String)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..kills * 40 {
        let id = format!("CR-{i}");
        let (kind, lic, payload) = match rand() % 10 {
            0 | 1 if !licenses.is_empty() => {
                let (lic, tok) = licenses[rand() as usize % licenses.len()].clone();
                (Kind::Reused, Some(lic), declaration(&id, Some(&tok)))
            }
            2 => {
                let lic = format!("LIC-FORGED-{i}");
                let mut l =
                    permitgate::token::License::from_claims_json(include_str!("data/claims.json"))
                        .unwrap();
                l.license_id = lic.clone();
                let tok = permitgate::token::text::encode(&permitgate::token::issue(
                    &l,
                    "mofcom-2025-1",
                    &impostor,
                ));
                (Kind::Forged, Some(lic), declaration(&id, Some(&tok)))
            }
            3 => (
                Kind::Malformed,
                None,
                format!("{{\"declaration_id\": \"{id}\", \"items\": 7}}").into_bytes(),
            ),
            4 => {
                let mut d: serde_json::Value =
                    serde_json::from_slice(&declaration(&id, None)).unwrap();
                d["items"] = serde_json::json!([{"hs_code": "850519", "description": "ferrite", "net_kg": 10, "elements": ["Fe"]}]);
                (Kind::Uncontrolled, None, d.to_string().into_bytes())
            }
            _ => {
                let lic = format!("LIC-CR-{i}");
                let tok = post.token_for(&lic);
                licenses.push((lic.clone(), tok.clone()));
                (Kind::Valid, Some(lic), declaration(&id, Some(&tok)))
            }
        };
        stream.push((id, kind, lic, payload));
    }

    // Sent in the background, spread over the kills.
    let sender = {
        let client = scanner(post.broker.port);
        let topic = "permitgate/lyg-port-01/declarations".to_owned();
        let payloads: Vec<Vec<u8>> = stream.iter().map(|s| s.3.clone()).collect();
        tokio::spawn(async move {
            for chunk in payloads.chunks(40) {
                for p in chunk {
                    client
                        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, p.clone())
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        })
    };
    for k in 0..kills {
        match disruption {
            Disruption::DaemonKilled => {
                tokio::time::sleep(Duration::from_millis(60 + rand() % 300)).await;
                post.kill();
                if k + 1 < kills {
                    post.start();
                }
            }
            Disruption::BrokerRestarted => {
                tokio::time::sleep(Duration::from_millis(200 + rand() % 1200)).await;
                post.broker.restart_gracefully();
            }
        }
    }
    sender.await.unwrap();
    if disruption == Disruption::DaemonKilled {
        post.start();
    }
    let n = stream.len();
    let all_decided = eventually(120, || {
        post.ledger_strings(
            "SELECT DISTINCT declaration_id FROM audit WHERE declaration_id IS NOT NULL",
        )
        .len()
            == n
    })
    .await;
    if !all_decided {
        let decided: HashSet<String> = post
            .ledger_strings(
                "SELECT DISTINCT declaration_id FROM audit WHERE declaration_id IS NOT NULL",
            )
            .into_iter()
            .collect();
        let missing: Vec<&str> = stream
            .iter()
            .map(|s| s.0.as_str())
            .filter(|id| !decided.contains(*id))
            .collect();
        panic!(
            "decided {} of {n}; missing {:?}…\nbroker log:\n{}\ndaemon log (end):\n{}",
            decided.len(),
            &missing[..missing.len().min(20)],
            std::fs::read_to_string(post.broker.conf.with_extension("log")).unwrap_or_default(),
            post.log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Every queued verdict and alert reaches the broker (its PUBACK empties the queue).
    assert!(
        eventually(60, || post.queued_publications() == 0).await,
        "{} publications still queued",
        post.queued_publications()
    );
    // Let the last verdicts reach the officer, then stop cleanly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(post.stop().success(), "{}", post.log());

    // Every well-formed declaration has exactly one verdict, recorded once.
    let audit_ids =
        post.ledger_strings("SELECT declaration_id FROM audit WHERE declaration_id IS NOT NULL");
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for id in &audit_ids {
        *per_id.entry(id).or_default() += 1;
    }
    let standing: HashSet<String> = post
        .ledger_strings("SELECT declaration_id FROM declarations")
        .into_iter()
        .collect();
    let stored: HashMap<String, serde_json::Value> = post
        .ledger_verdicts()
        .into_iter()
        .filter_map(|v| Some((v["declaration_id"].as_str()?.to_owned(), v)))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (id, kind, _, _) in &stream {
        let v = &stored[id];
        let verdict = v["verdict"].as_str().unwrap();
        match kind {
            Kind::Malformed => assert_eq!(v["reasons"][0]["code"], "malformed", "{id}"),
            _ => {
                assert_eq!(
                    per_id[id.as_str()],
                    1,
                    "{id} recorded {} times",
                    per_id[id.as_str()]
                );
                assert!(standing.contains(id), "{id} has no standing verdict");
            }
        }
        let expected_ok = match kind {
            Kind::Valid => verdict == "cleared",
            Kind::Reused | Kind::Forged => verdict == "rejected",
            Kind::Uncontrolled => verdict == "not_required",
            Kind::Malformed => verdict == "rejected",
        };
        assert!(expected_ok, "{id} ({kind:?}) got {v}");
        *counts.entry(verdict).or_default() += 1;
    }

    // No license consumed by two declarations; every valid license consumed once.
    let consumed = post.ledger_strings("SELECT license_id FROM consumed");
    let unique: HashSet<&String> = consumed.iter().collect();
    assert_eq!(unique.len(), consumed.len());
    assert_eq!(
        consumed.len(),
        licenses.len(),
        "every fresh license consumed exactly once"
    );
    let cleared_per_license = post.ledger_strings(
        "SELECT license_id FROM audit WHERE verdict = 'cleared' GROUP BY license_id HAVING COUNT(*) > 1",
    );
    assert!(
        cleared_per_license.is_empty(),
        "cleared twice: {cleared_per_license:?}"
    );

    // Every verdict the officer received is the one in the ledger.
    let mut received = 0;
    while let Ok((topic, v)) = officer.rx.try_recv() {
        officer.seen.push((topic, v));
    }
    for (topic, v) in &officer.seen {
        if !topic.ends_with("/verdicts") {
            continue;
        }
        let Some(id) = v["declaration_id"].as_str() else {
            continue;
        };
        if let Some(kind) = stream.iter().find(|s| s.0 == id).map(|s| s.1)
            && kind != Kind::Malformed
        {
            assert_eq!(v["verdict"], stored[id]["verdict"], "{id}");
            received += 1;
        }
    }

    // The audit chain is intact, and the outbox holds every consumption (no hub here).
    post.assert_ledger_checks_clean();
    assert_eq!(post.outbox(), consumed.len());
    eprintln!(
        "crash harness ({disruption:?}): {kills} times, {n} declarations, verdicts {counts:?}, {} licenses consumed once each, {received} verdicts the officer received match the ledger, audit chain intact",
        consumed.len()
    );
}
