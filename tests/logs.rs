//! Verifiable logs across machines: a post that rewrites or loses its
//! history is caught by the hub (and by `ledger check` against the head
//! the hub holds); a hub that shows two posts different histories is caught
//! by both; evidence of a double use holds up offline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::country::*;
use common::*;
use permitgate::merkle::head::HUB_ORIGIN;
use permitgate::sync::protocol::SyncTopics;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(args)
        .output()
        .unwrap()
}

fn config(post: &Post) -> String {
    post.dir
        .path()
        .join("permitgate.toml")
        .to_string_lossy()
        .into_owned()
}

/// A clearance at `post` of a fresh license, waited for.
async fn clear(officer: &mut Officer, post: &Post, id: &str, license: &str) {
    officer
        .send(declaration(id, Some(&post.token_for(license))))
        .await;
    let v = officer.verdict_for(id).await;
    assert_eq!(v["verdict"], "cleared", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_erases_its_last_decision_is_caught_by_the_hub_and_by_ledger_check() {
    let mut c = Country::start().await;
    let mut officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    clear(&mut officer, &c.a, "DA-1", "LIC-E-1").await;
    clear(&mut officer, &c.a, "DA-2", "LIC-E-2").await;
    assert!(
        eventually(15, || c.hub.records() == 2 && c.a.outbox() == 0).await,
        "{}",
        c.hub.log()
    );
    assert!(c.a.stop().success());
    // Online, the check asks the hub for the head it holds: intact now.
    let cfg = config(&c.a);
    let o = cli(&["ledger", "--config", &cfg, "check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("the head the hub acknowledged"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // An insider erases DA-2 and rolls the log back to the head before it.
    let db = rusqlite::Connection::open(c.a.dir.path().join("state/ledger.db")).unwrap();
    for sql in [
        "DELETE FROM audit WHERE declaration_id = 'DA-2'",
        "DELETE FROM declarations WHERE declaration_id = 'DA-2'",
        "DELETE FROM consumed WHERE declaration_id = 'DA-2'",
        "DELETE FROM log_leaves WHERE n >= 2",
        "DELETE FROM log_hashes WHERE idx >= 3",
        "DELETE FROM log_heads WHERE size > 2",
    ] {
        db.execute(sql, []).unwrap();
    }
    drop(db);
    let o = cli(&["ledger", "--config", &cfg, "check", "--offline"]);
    assert!(o.status.success(), "locally it agrees with itself");
    let o = cli(&["ledger", "--config", &cfg, "check"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rolled back"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Back at work, its next head contradicts the one the hub holds: its
    // key signed two histories. Both are kept (the erased license stays
    // used, the new one counts too), and the hub proves the equivocation.
    c.a.start();
    assert!(online(c.a.broker.port).await, "{}", c.a.log());
    clear(&mut officer, &c.a, "DA-3", "LIC-E-3").await;
    assert!(
        eventually(15, || c.hub.alerts_of("log_equivocation") >= 1
            && c.hub.records() == 3)
        .await,
        "{}",
        c.hub.log()
    );
    let alert = c.hub.alert_json("log_equivocation");
    assert_eq!(alert["signer"], "post-a");
    let heads = alert["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2, "both heads, as evidence");
    let registry = c.registry();
    for h in heads {
        let (cp, _) =
            permitgate::sync::verify::verify_post_head(h.as_str().unwrap(), &registry).unwrap();
        assert_eq!(cp, "post-a");
    }
    let alert: permitgate::verdict::Alert = serde_json::from_value(alert).unwrap();
    permitgate::sync::equivocation::verify(&alert, &registry, "test", 0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_lost_with_the_wal_are_caught_by_the_hub() {
    let mut c = Country::start().await;
    let mut officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    clear(&mut officer, &c.a, "DA-1", "LIC-W-1").await;
    assert!(eventually(15, || c.hub.records() == 1).await);
    // What is committed so far goes into the file itself…
    let db = rusqlite::Connection::open(c.a.dir.path().join("state/ledger.db")).unwrap();
    let (busy, _, _): (i64, i64, i64) = db
        .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    drop(db);
    // …the next commit stays in the WAL, and reaches the hub.
    clear(&mut officer, &c.a, "DA-2", "LIC-W-2").await;
    assert!(eventually(15, || c.hub.records() == 2).await);
    // SIGKILL (the WAL is not checkpointed into the file), then the WAL is lost.
    c.a.kill();
    let wal = c.a.dir.path().join("state/ledger.db-wal");
    assert!(wal.exists());
    std::fs::remove_file(&wal).unwrap();
    let _ = std::fs::remove_file(c.a.dir.path().join("state/ledger.db-shm"));
    let o = cli(&["ledger", "--config", &config(&c.a), "check"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rolled back"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    c.a.start();
    assert!(online(c.a.broker.port).await, "{}", c.a.log());
    clear(&mut officer, &c.a, "DA-3", "LIC-W-3").await;
    // Number 2 again, for another license: the key signed two histories.
    // Both records stand, and the hub proves it.
    assert!(
        eventually(15, || c.hub.alerts_of("log_equivocation") >= 1
            && c.hub.records() == 3)
        .await,
        "{}",
        c.hub.log()
    );
}

/// A hub (here the test, holding the hub's key) that shows post A one
/// history and post B another: each post witnesses the head it verified,
/// and each finds the other's contradicts its own replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_forks_its_log_is_caught_by_both_posts() {
    let mut c = Country::start().await;
    c.hub.kill();
    let key_a = Country::key_of(&c.a);
    let history = |license: &str| {
        common::forge::feed_message(
            &c.hub.key,
            &key_a,
            &[common::forge::record("post-a", 1, license)],
        )
    };
    let (hub, _) = national_client(c.national.port, "permitgate-hub", &[]).await;
    let topics = SyncTopics::new("permitgate");
    publish(
        &hub,
        &topics.backfill_reply("post-a"),
        false,
        history("LIC-X"),
    )
    .await;
    publish(
        &hub,
        &topics.backfill_reply("post-b"),
        false,
        history("LIC-Y"),
    )
    .await;
    for post in [&c.a, &c.b] {
        assert!(
            eventually(20, || post.alerts_of("log_inconsistent") >= 1).await,
            "{}",
            post.log()
        );
    }
    let alert: serde_json::Value = serde_json::from_str(
        &c.b.ledger_strings("SELECT alert_json FROM alerts WHERE kind = 'log_inconsistent'")[0],
    )
    .unwrap();
    // The evidence is two heads the hub signed for one size with different roots.
    let heads: Vec<permitgate::merkle::head::Head> = alert["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            permitgate::sync::verify::verify_hub_head(h.as_str().unwrap(), &c.registry()).unwrap()
        })
        .collect();
    assert_eq!(heads.len(), 2);
    assert!(heads.iter().all(|h| h.origin == HUB_ORIGIN && h.size == 1));
    assert_ne!(heads[0].root, heads[1].root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_a_double_use_proves_both_uses_offline_and_any_flipped_byte_fails() {
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
        eventually(20, || c.a.alerts_of("double_use") == 1
            && c.a.remote_consumptions() == 1)
        .await
    );
    // The authority's signed policy: the registry the evidence rests on.
    let dir = c.national_dir.path();
    std::fs::copy(c.a.dir.path().join("policy.toml"), dir.join("policy.toml")).unwrap();
    std::fs::copy(
        c.a.dir.path().join("issuer.pub.pem"),
        dir.join("issuer.pub.pem"),
    )
    .unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args([
            "policy",
            "sign",
            "--key",
            "root.key.pem",
            "--in",
            "policy.toml",
            "--out",
            "policy.cose",
        ])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let out = dir.join("LIC-TWICE.evidence");
    let o = cli(&[
        "evidence",
        "export",
        "--config",
        &config(&c.a),
        "LIC-TWICE",
        "--out",
        out.to_str().unwrap(),
        "--policy-bundle",
        dir.join("policy.cose").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = dir.join("root.pub.pem");
    let o = cli(&[
        "evidence",
        "verify",
        out.to_str().unwrap(),
        "--policy-root-key",
        root.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("DOUBLE USE"), "{said}");
    assert!(
        said.contains("checkpoint post-a by declaration DA-1"),
        "{said}"
    );
    assert!(
        said.contains("checkpoint post-b by declaration DB-1"),
        "{said}"
    );
    assert!(said.contains("of the national log"), "{said}");
    // Another root key proves nothing; every single flipped byte fails.
    let other = permitgate::keys::generate().verifying_key();
    let bytes = std::fs::read(&out).unwrap();
    let root_key = permitgate::keys::load_verifying_key(&root).unwrap();
    assert!(permitgate::evidence::verify(&bytes, &root_key).is_ok());
    assert!(permitgate::evidence::verify(&bytes, &other).is_err());
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(
            permitgate::evidence::verify(&b, &root_key).is_err(),
            "a flip of byte {i} still verifies"
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A post whose clock runs ahead of the hub's signed time holds controlled
/// shipments and says why on `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_clock_runs_ahead_of_the_hubs_holds_controlled_shipments() {
    let mut c = Country::configured("");
    let http = c.a.enable_http();
    c.hub.start();
    c.a.start_shifted("+2h");
    wait_online(c.a.broker.port).await;
    let health = || {
        ureq::get(&format!("{http}/healthz"))
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_else(|e| match e {
                ureq::Error::Status(_, r) => r.into_string().unwrap_or_default(),
                other => other.to_string(),
            })
    };
    assert!(
        eventually(20, || health().contains("clock untrusted")).await,
        "{}\n{}",
        health(),
        c.a.log()
    );
    let mut officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    officer
        .send(declaration("DA-1", Some(&c.a.token_for("LIC-C-1"))))
        .await;
    let v = officer.verdict_for("DA-1").await;
    assert_eq!(v["verdict"], "hold", "{v}");
    assert_eq!(v["reasons"][0]["code"], "clock_untrusted", "{v}");
    assert!(
        v["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("ahead"),
        "{v}"
    );
}

/// A decision made while the clock ran 50 years ahead holds later
/// clearances (the clock reads behind the ledger) until an officer
/// confirms the clock, an action recorded in the signed log; a post that
/// hears the hub's signed time needs no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_dated_fifty_years_ahead_is_recovered_by_a_recorded_confirmation_or_by_the_hub()
{
    let mut c = Country::configured("");
    c.b.start_shifted("+50y");
    wait_online(c.b.broker.port).await;
    let mut officer = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    officer
        .send(b"{\"declaration_id\": \"DB-GARBLED\"}".to_vec())
        .await;
    let v = officer.verdict_for("DB-GARBLED").await;
    assert!(v["decided_at"].as_str().unwrap().starts_with("2076"), "{v}");
    assert!(c.b.stop().success());

    // Offline (no hub), with the right clock: held until an officer confirms.
    c.b.start();
    wait_online(c.b.broker.port).await;
    officer
        .send(declaration("DB-1", Some(&c.b.token_for("LIC-F-1"))))
        .await;
    let v = officer.verdict_for("DB-1").await;
    assert_eq!(v["reasons"][0]["code"], "clock_behind_ledger", "{v}");
    let o = c.b.cli(
        &["clock", "confirm"],
        &["--officer", "O-7", "--note", "checked against GPS"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2076"));
    officer
        .send(declaration("DB-2", Some(&c.b.token_for("LIC-F-2"))))
        .await;
    assert_eq!(officer.verdict_for("DB-2").await["verdict"], "cleared");
    // The confirmation is a leaf of the signed log: the ledger checks intact.
    let o = c.b.cli(&["ledger"], &["check", "--offline"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A at 50 years ahead too, then with the right clock and the hub: no confirmation needed.
    c.a.start_shifted("+50y");
    wait_online(c.a.broker.port).await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    officer_a
        .send(b"{\"declaration_id\": \"DA-GARBLED\"}".to_vec())
        .await;
    officer_a.verdict_for("DA-GARBLED").await;
    assert!(c.a.stop().success());
    c.hub.start();
    c.a.start();
    wait_online(c.a.broker.port).await;
    assert!(
        eventually(20, || c
            .a
            .log()
            .contains("clock: agrees with the hub's signed time"))
        .await,
        "{}",
        c.a.log()
    );
    officer_a
        .send(declaration("DA-1", Some(&c.a.token_for("LIC-F-3"))))
        .await;
    assert_eq!(officer_a.verdict_for("DA-1").await["verdict"], "cleared");
}
