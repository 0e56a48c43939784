//! Sync between checkpoints and the hub, with real mosquitto brokers and
//! real processes: each checkpoint has its own broker for declarations, and
//! all reach the hub through a national broker.

mod common;

use std::time::Duration;

use common::country::*;
use common::*;
use permitgate::record::ProvenRecord;
use permitgate::sync::protocol::SyncTopics;

fn reason(v: &serde_json::Value) -> (&str, &str) {
    (
        v["reasons"][0]["code"].as_str().unwrap_or(""),
        v["reasons"][0]["detail"].as_str().unwrap_or(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_post_cut_off_reach_the_hub_and_the_other_post() {
    let mut c = Country::start().await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;

    // The uplink goes away; the gate keeps clearing.
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();
    let tokens: Vec<String> = (0..100)
        .map(|i| c.a.token_for(&format!("LIC-A-{i:03}")))
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        officer_a
            .send(declaration(&format!("DA-{i}"), Some(t)))
            .await;
    }
    for i in 0..100 {
        let v = officer_a.verdict_for(&format!("DA-{i}")).await;
        assert_eq!(v["verdict"], "cleared", "{v}");
    }
    assert_eq!(
        c.a.outbox(),
        100,
        "records wait in the outbox while the uplink is down"
    );

    c.national.restart();
    let synced = eventually(10, || c.hub.records() == 100 && c.a.outbox() == 0).await;
    assert!(
        synced,
        "hub holds {}, A's outbox {}\nhub log:\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.hub.log()
    );
    assert!(
        eventually(10, || c.b.remote_consumptions() == 100).await,
        "B learned {}",
        c.b.remote_consumptions()
    );

    for (i, t) in tokens.iter().enumerate() {
        officer_b
            .send(declaration(&format!("DB-{i}"), Some(t)))
            .await;
    }
    for i in 0..100 {
        let v = officer_b.verdict_for(&format!("DB-{i}")).await;
        assert_eq!(v["verdict"], "rejected", "{v}");
        let (code, detail) = reason(&v);
        assert_eq!(code, "license_already_used");
        assert!(
            detail.contains("post-a") && detail.contains(&format!("DA-{i}")),
            "{detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_license_accepted_at_two_offline_posts_raises_one_double_use() {
    let mut c = Country::start().await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();

    let token = c.a.token_for("LIC-TWICE");
    officer_a.send(declaration("DA-1", Some(&token))).await;
    officer_b.send(declaration("DB-1", Some(&token))).await;
    assert_eq!(officer_a.verdict_for("DA-1").await["verdict"], "cleared");
    assert_eq!(officer_b.verdict_for("DB-1").await["verdict"], "cleared");

    c.national.restart();
    assert!(
        eventually(15, || c.hub.alerts_of("double_use") == 1).await,
        "{}",
        c.hub.log()
    );
    for officer in [&mut officer_a, &mut officer_b] {
        let alert = officer
            .next(|t, a| t.ends_with("/alerts") && a["kind"] == "double_use")
            .await;
        assert_eq!(alert["license_id"], "LIC-TWICE");
        let records = alert["records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        // Each record is proven by a head its checkpoint's key signed.
        let registry = c.registry();
        for r in records {
            let proven: ProvenRecord = serde_json::from_value(r["proven"].clone()).unwrap();
            let (rec, _) = proven.verify(&registry).unwrap();
            assert_eq!(rec.license_id, "LIC-TWICE");
            assert_eq!(rec.checkpoint, r["checkpoint"].as_str().unwrap());
        }
    }
    // Both records are kept; the alert is stored once at each post.
    assert_eq!(c.hub.records(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.hub.alerts_of("double_use"), 1);
    assert_eq!(c.a.alerts_of("double_use"), 1);
    assert_eq!(c.b.alerts_of("double_use"), 1);
}

/// The crash harness's hub case: the hub SIGKILLed again and again at
/// random moments while declarations keep arriving at post A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_again_and_again_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("PG_HUB_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut c = Country::start().await;
    let officer_a = Officer::connect_to(c.a.broker.port, "officer-ra", "post-a").await;
    let per_round = 40;
    let n = kills * per_round;
    let tokens: Vec<String> = (0..n)
        .map(|i| c.a.token_for(&format!("LIC-R-{i:04}")))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..kills {
        for (i, t) in tokens
            .iter()
            .enumerate()
            .skip(round * per_round)
            .take(per_round)
        {
            officer_a
                .send(declaration(&format!("DR-{i}"), Some(t)))
                .await;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(100 + seed % 600)).await;
        c.hub.kill();
        // Nothing is lost meanwhile: what the hub has not acknowledged waits in A's outbox.
        let consumed = c.a.ledger_strings("SELECT license_id FROM consumed").len();
        assert!(c.a.outbox() <= consumed);
        c.hub.start();
    }
    let done = eventually(30, || c.hub.records() == n && c.a.outbox() == 0).await;
    assert!(
        done,
        "hub {}, A's outbox {} of {n}\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.hub.log()
    );
    assert_eq!(
        c.hub.head(),
        n,
        "global numbers 1..={n}, no gaps or repeats"
    );
    assert!(eventually(15, || c.b.remote_consumptions() == n).await);
    eprintln!(
        "hub killed {kills} times: {n} records, each stored once, A's outbox empty, B learned all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_sync_loses_and_duplicates_nothing() {
    let mut c = Country::start().await;
    c.hub.kill();
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    const N: usize = 300;
    for i in 0..N {
        let t = c.a.token_for(&format!("LIC-K-{i:03}"));
        officer_a
            .send(declaration(&format!("DK-{i}"), Some(&t)))
            .await;
    }
    let last = format!("DK-{}", N - 1);
    officer_a.verdict_for(&last).await;
    assert!(eventually(10, || c.a.outbox() == N).await);

    // Killed as soon as it has stored some, then restarted.
    c.hub.start();
    assert!(
        eventually(10, || c.hub.records() > 0).await,
        "{}",
        c.hub.log()
    );
    c.hub.kill();
    let at_kill = c.hub.records();
    c.hub.start();
    let done = eventually(20, || c.hub.records() == N && c.a.outbox() == 0).await;
    assert!(
        done,
        "hub {} (had {at_kill} at the kill), outbox {}\n{}\nA:\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.hub.log(),
        c.a.log()
            .lines()
            .filter(|l| !l.contains("decision"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        c.hub.head(),
        N,
        "global numbers are 1..={N} without gaps or repeats"
    );
    assert!(eventually(10, || c.b.remote_consumptions() == N).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_restored_from_an_old_ledger_backfills_what_it_missed() {
    let mut c = Country::start().await;
    let officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    for i in 0..5 {
        let t = c.a.token_for(&format!("LIC-R-{i}"));
        officer_a
            .send(declaration(&format!("DR-{i}"), Some(&t)))
            .await;
    }
    assert!(eventually(10, || c.b.remote_consumptions() == 5).await);
    assert!(c.b.stop().success());
    let saved: Vec<Option<Vec<u8>>> =
        c.b.ledger_files()
            .iter()
            .map(|f| std::fs::read(f).ok())
            .collect();
    c.b.start();
    wait_online(c.b.broker.port).await;

    let late: Vec<String> = (5..10)
        .map(|i| c.a.token_for(&format!("LIC-R-{i}")))
        .collect();
    for (i, t) in late.iter().enumerate() {
        officer_a
            .send(declaration(&format!("DR-{}", i + 5), Some(t)))
            .await;
    }
    assert!(eventually(10, || c.b.remote_consumptions() == 10).await);

    // B's disk is restored from before the last five: they were delivered
    // to it already, so only a backfill can bring them back.
    assert!(c.b.stop().success());
    for (f, bytes) in c.b.ledger_files().iter().zip(&saved) {
        let _ = std::fs::remove_file(f);
        if let Some(b) = bytes {
            std::fs::write(f, b).unwrap();
        }
    }
    assert_eq!(c.b.remote_consumptions(), 5);
    c.b.start();
    assert!(
        eventually(15, || c.b.remote_consumptions() == 10).await,
        "B holds {} after restart\n{}",
        c.b.remote_consumptions(),
        c.b.log()
    );
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    officer_b.send(declaration("DB-9", Some(&late[4]))).await;
    let v = officer_b.verdict_for("DB-9").await;
    assert_eq!(reason(&v).0, "license_already_used", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_forged_and_unknown_records() {
    let c = Country::start().await;
    let (client, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let forged = |cp: &str, key: &ed25519_dalek::SigningKey| {
        forge::records_message(cp, key, &[forge::record(cp, 1, "LIC-FORGED")])
    };
    let wrong_key = permitgate::keys::generate();
    let topics = SyncTopics::new("permitgate");
    // A log signed as post-a with a key that is not post-a's; one of a checkpoint the hub does not know.
    for (topic, msg) in [
        (topics.records("post-a"), forged("post-a", &wrong_key)),
        (topics.records("post-z"), forged("post-z", &wrong_key)),
        (topics.records("post-a"), b"not even CBOR".to_vec()),
    ] {
        publish(&client, &topic, false, msg).await;
    }
    assert!(
        eventually(10, || c.hub.alerts_of("refused_record") == 3).await,
        "{}",
        c.hub.log()
    );
    assert_eq!(c.hub.records(), 0, "nothing forged is stored");
    // Post B never learns of the forged consumption.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.b.remote_consumptions(), 0);
}

/// `permitgate policy sign` on a copy of the post's policy with `edit` applied.
fn signed_bundle(
    post: &Post,
    root_key: &str,
    name: &str,
    edit: impl Fn(String) -> String,
) -> Vec<u8> {
    let dir = post.dir.path();
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), edit(text)).unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(["policy", "sign", "--key", root_key, "--in"])
        .arg(dir.join(format!("{name}.toml")))
        .arg("--out")
        .arg(dir.join(format!("{name}.cose")))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(dir.join(format!("{name}.cose"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_policy_bundles_apply_when_newer_and_genuine_and_survive_a_restart() {
    let national_dir = tempfile::tempdir().unwrap();
    let mut national = Broker::national(national_dir.path(), &["post-a"]);
    let mut a = Post::with("post-a", permitgate::keys::generate());
    let root = permitgate::keys::generate();
    permitgate::keys::write_keypair(a.dir.path(), "root", &root).unwrap();
    permitgate::keys::write_keypair(a.dir.path(), "impostor", &permitgate::keys::generate())
        .unwrap();
    a.enable_sync_with(national.port, "policy_root_key = \"root.pub.pem\"\n");
    a.start();
    wait_online(a.broker.port).await;
    let mut officer = Officer::connect_to(a.broker.port, "officer-a", "post-a").await;

    let revoke = |t: String| {
        t.replace("version = 7", "version = 8")
            .replace("revoked_licenses = [", "revoked_licenses = [\"LIC-P-2\", ")
    };
    let v8 = signed_bundle(&a, "root.key.pem", "v8", revoke);
    let old = signed_bundle(&a, "root.key.pem", "old", |t| {
        t.replace("version = 7", "version = 6")
    });
    let forged = signed_bundle(&a, "impostor.key.pem", "forged", |t| {
        t.replace("version = 7", "version = 9")
            .replace("revoked_licenses = [", "revoked_licenses = [\"LIC-P-3\", ")
    });

    let (authority, _) = national_client(national.port, "permitgate-authority", &[]).await;
    // A genuine bundle whose version would freeze every later update is refused.
    let frozen = signed_bundle(&a, "root.key.pem", "frozen", |t| {
        t.replace("version = 7", &format!("version = {}", i64::MAX))
    });
    publish(&authority, "permitgate/policy", true, frozen).await;
    assert!(
        eventually(15, || a.log().contains("more than 1000 ahead")).await,
        "{}",
        a.log()
    );
    publish(&authority, "permitgate/policy", true, v8).await;
    assert!(
        status_where(a.broker.port, 10, |s| s["policy_version"] == 8)
            .await
            .is_some(),
        "{}",
        a.log()
    );
    officer
        .send(declaration("DP-2", Some(&a.token_for("LIC-P-2"))))
        .await;
    let v = officer.verdict_for("DP-2").await;
    assert_eq!(
        (v["verdict"].as_str(), reason(&v).0),
        (Some("rejected"), "revoked"),
        "{v}"
    );

    // An older bundle and one signed by another key are refused; version 8 stays.
    publish(&authority, "permitgate/policy", true, old).await;
    publish(&authority, "permitgate/policy", true, forged).await;
    officer
        .send(declaration("DP-3", Some(&a.token_for("LIC-P-3"))))
        .await;
    assert_eq!(officer.verdict_for("DP-3").await["verdict"], "cleared");
    assert!(
        status_where(a.broker.port, 3, |s| s["policy_version"] != 8)
            .await
            .is_none()
    );
    assert!(a.log().contains("policy bundle refused"), "{}", a.log());

    // Restarted with the uplink gone, the post still decides under version 8.
    assert!(a.stop().success());
    let _ = national.child.kill();
    let _ = national.child.wait();
    a.start();
    assert!(
        status_where(a.broker.port, 10, |s| s["state"] == "online"
            && s["policy_version"] == 8)
        .await
        .is_some()
    );
    officer
        .send(declaration("DP-4", Some(&a.token_for("LIC-P-2"))))
        .await;
    assert_eq!(reason(&officer.verdict_for("DP-4").await).0, "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_share_the_load_and_one_store() {
    let c = Country::start().await;
    let mut second = Hub::sharing(&c.hub, "permitgate-hub-2");
    second.start();
    let officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    const N: usize = 150;
    for i in 0..N {
        let ta = c.a.token_for(&format!("LIC-SA-{i}"));
        let tb = c.b.token_for(&format!("LIC-SB-{i}"));
        officer_a
            .send(declaration(&format!("DSA-{i}"), Some(&ta)))
            .await;
        officer_b
            .send(declaration(&format!("DSB-{i}"), Some(&tb)))
            .await;
        if i % 10 == 0 {
            // Spread over time, so records go out in many messages.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let done = eventually(30, || {
        c.hub.records() == 2 * N && c.a.outbox() == 0 && c.b.outbox() == 0
    })
    .await;
    assert!(
        done,
        "store holds {}, outboxes {} {}\n{}\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.b.outbox(),
        c.hub.log(),
        second.log()
    );
    assert_eq!(c.hub.head(), 2 * N, "one gap-free global order");
    for (name, hub) in [("first", &c.hub), ("second", &second)] {
        assert!(
            hub.log().contains("records stored"),
            "the {name} hub stored nothing"
        );
    }
    assert!(
        eventually(10, || c.a.remote_consumptions() == N
            && c.b.remote_consumptions() == N)
        .await
    );
}

/// A second hub started by mistake with the first one's client id: the
/// broker hands the session back and forth, and both say why at ERROR
/// instead of flapping quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_with_one_client_id_say_so() {
    let c = Country::start().await;
    let mut twin = Hub::sharing(&c.hub, "permitgate-hub");
    twin.start();
    let said = "another client connected with this client id";
    let both = eventually(30, || {
        c.hub.log().contains(said) || twin.log().contains(said)
    })
    .await;
    twin.kill();
    assert!(both, "nothing said:\n{}\n{}", c.hub.log(), twin.log());
    assert!(
        format!("{}{}", c.hub.log(), twin.log()).contains("give each process its own `client_id`")
    );
}

/// A checkpoint key rotated by a newer signed policy: records the old key
/// signed inside its window are accepted, those it signs after are refused,
/// and the new key's records flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_checkpoint_key_counts_inside_its_window_only() {
    let mut c = Country::start().await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    officer_a.expect_cleared(&c.a, "DA-1").await;
    assert!(eventually(15, || c.b.remote_consumptions() == 1).await);

    // The authority retires A's key K1 at `t` and brings in K2 from then.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let t = now() + 3;
    let at = |s: i64| permitgate::clock::to_rfc3339(s);
    let k1 = permitgate::keys::load_signing_key(&c.a.dir.path().join("state/checkpoint.key.pem"))
        .unwrap();
    let k2 = permitgate::keys::generate();
    let retire = |text: String| {
        let new_entry = registry_toml(&[("post-a", k2.verifying_key())], &[]);
        format!(
            "{}{}valid_from = \"{}\"\n",
            text.replace("version = 7", "version = 8")
                .replace("clock_skew = \"5m\"", "clock_skew = \"1s\"")
                .replace(
                    "[[checkpoints]]\nid = \"post-a\"\n",
                    &format!(
                        "[[checkpoints]]\nid = \"post-a\"\nvalid_until = \"{}\"\n",
                        at(t)
                    ),
                ),
            new_entry,
            at(t)
        )
    };
    let text = std::fs::read_to_string(c.a.dir.path().join("policy.toml")).unwrap();
    std::fs::write(c.a.dir.path().join("v8.toml"), retire(text)).unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(["policy", "sign", "--key"])
        .arg(c.national_dir.path().join("root.key.pem"))
        .arg("--in")
        .arg(c.a.dir.path().join("v8.toml"))
        .arg("--out")
        .arg(c.a.dir.path().join("v8.cose"))
        .current_dir(c.a.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let v8 = std::fs::read(c.a.dir.path().join("v8.cose")).unwrap();
    let (authority, _) = national_client(c.national.port, "permitgate-authority", &[]).await;
    publish(&authority, "permitgate/policy", true, v8).await;
    for port in [c.a.broker.port, c.b.broker.port] {
        assert!(
            status_where(port, 15, |s| s["policy_version"] == 8)
                .await
                .is_some(),
            "{}",
            c.a.log()
        );
    }
    assert!(eventually(15, || c.hub.log().contains("bundle accepted")).await);
    while now() <= t + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (bridge, _) = national_client(c.national.port, BRIDGE, &[]).await;
    let topics = SyncTopics::new("permitgate");
    // K1 after its window (someone kept the old key): refused.
    let late = forge::records_message("post-a", &k1, &[forge::record("post-a", 9, "LIC-LATE")]);
    publish(&bridge, &topics.records("post-a"), false, late).await;
    assert!(
        eventually(15, || c.hub.log().contains("key_not_valid")).await,
        "{}",
        c.hub.log()
    );
    assert!(c.hub.alerts_of("refused_record") >= 1);
    assert_eq!(c.hub.records(), 1);
    // K1 inside its window: the record A made before the rotation still
    // verifies under the new policy, as B holds it.
    let v8_registry = permitgate::policy::Policy::load(&c.a.dir.path().join("v8.toml"))
        .unwrap()
        .registry;
    let held = c.b.ledger_strings("SELECT proven FROM remote_consumptions");
    let early: ProvenRecord = serde_json::from_str(&held[0]).unwrap();
    early.verify(&v8_registry).unwrap();

    // A runs on K2 now: its records flow to the hub and to B.
    c.a.kill();
    let state = c.a.dir.path().join("state");
    for f in ["checkpoint.key.pem", "checkpoint.pub.pem"] {
        std::fs::remove_file(state.join(f)).unwrap();
    }
    permitgate::keys::write_keypair(&state, "checkpoint", &k2).unwrap();
    c.a.start();
    assert!(online(c.a.broker.port).await, "{}", c.a.log());
    officer_a
        .send(declaration("DA-2", Some(&c.a.token_for("LIC-K2"))))
        .await;
    assert_eq!(officer_a.verdict_for("DA-2").await["verdict"], "cleared");
    assert!(
        eventually(20, || c.hub.records() == 2
            && c.b.remote_consumptions() == 2)
        .await,
        "hub {}, B {}\n{}",
        c.hub.records(),
        c.b.remote_consumptions(),
        c.hub.log()
    );
}
