//! What operators see: `/metrics`, `/healthz` and the gate console page,
//! and a log level changed by SIGHUP, against a real daemon and mosquitto.

mod common;

use std::time::Duration;

use common::*;

/// GET `url`: (status, body). Error statuses are answers here, not failures.
fn get(url: &str) -> (u16, String) {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

async fn get_async(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(&url))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_console_follow_the_gate() {
    let mut post = Post::new();
    let base = post.enable_http();
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "ops-officer").await;

    let (code, body) = get_async(format!("{base}/healthz")).await;
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["state"], "ready", "{h}");

    let token = post.token();
    officer.expect_cleared(&post, "OPS-1").await;
    officer.send(declaration("OPS-2", Some(&token))).await;
    assert_eq!(officer.verdict_for("OPS-2").await["verdict"], "rejected");

    let (code, m) = get_async(format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    for line in [
        "permitgate_declarations_total{verdict=\"cleared\",reason=\"none\"} 1",
        "permitgate_declarations_total{verdict=\"rejected\",reason=\"license_already_used\"} 1",
        "permitgate_decision_seconds_count 2",
        "permitgate_ledger_verdicts 2",
        "permitgate_ledger_consumed_licenses 1",
        "permitgate_outbox_depth 1",
        "permitgate_policy_version 7",
        "permitgate_mqtt_connected{link=\"broker\"} 1",
        "permitgate_ledger_fault 0",
        "permitgate_ledger_bytes ",
    ] {
        assert!(m.contains(line), "{line} missing from:\n{m}");
    }

    // The console lists both verdicts, and the reuse alert among the open ones.
    let (code, page) = get_async(format!("{base}/")).await;
    assert_eq!(code, 200);
    let alerts = &page[page.find("id=\"alerts\"").unwrap()..page.find("id=\"verdicts\"").unwrap()];
    assert!(
        alerts.contains("suspicious verdict") && alerts.contains("OPS-2"),
        "{alerts}"
    );
    assert!(page.contains("data-declaration=\"OPS-1\""), "{page}");

    // The officer's command line: status from the ledger and /healthz ...
    let cfg = post.dir.path().join("permitgate.toml");
    let pg = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let cfg = cfg.to_str().unwrap();
    let (code, out) = pg(&["status", "--config", cfg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("verdicts 2, licenses consumed 1")
            && out.contains("stand-alone post: no hub configured")
            && !out.contains("waiting for the hub")
            && out.contains("daemon: ready"),
        "{out}"
    );
    // ... the investigator's queries: one license, one party in a time range, alerts.
    let (_, out) = pg(&["ledger", "--config", cfg, "show", "LIC-2025-000123"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["used_for"]["end_user"], "DE-HRB-20002", "{report:#}");
    assert_eq!(report["consumed_here"]["declaration_id"], "OPS-1");
    assert_eq!(report["reuse_attempts"][0]["declaration_id"], "OPS-2");
    let (_, out) = pg(&[
        "ledger",
        "--config",
        cfg,
        "export",
        "--party",
        "de-hrb-20002",
        "--since",
        "2020-01-01",
        "--format",
        "csv",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("exporter,end_user") && lines[1].contains("OPS-1"),
        "{out}"
    );
    let (_, out) = pg(&["ledger", "--config", cfg, "export", "--party", "NOBODY"]);
    assert!(out.is_empty(), "{out}");
    let (_, out) = pg(&["ledger", "--config", cfg, "export", "--until", "2020-01-01"]);
    assert!(out.is_empty(), "{out}");
    let (_, out) = pg(&[
        "ledger",
        "--config",
        cfg,
        "alerts",
        "--since",
        "2020-01-01",
        "--format",
        "csv",
    ]);
    assert!(
        out.lines().count() == 2 && out.contains("suspicious_verdict,OPS-2"),
        "{out}"
    );

    // The broker gone: failing, with the reason, and 503.
    post.broker.child.kill().unwrap();
    let _ = post.broker.child.wait();
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = get_async(format!("{base}/healthz")).await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1.contains("\"failing\"") && last.1.contains("broker down"),
        "{}",
        last.1
    );
    let (code, out) = pg(&["status", "--config", cfg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("daemon: failing") && out.contains("broker down"),
        "{out}"
    );
    let (_, m) = get_async(format!("{base}/metrics")).await;
    assert!(
        m.contains("permitgate_mqtt_connected{link=\"broker\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("permitgate_mqtt_connection_losses_total{link=\"broker\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_log_level_without_dropping_a_declaration() {
    let mut post = Post::new();
    let cfg = post.dir.path().join("permitgate.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("log_level = \"info\"\n{text}")).unwrap();
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "hup-officer").await;
    officer.expect_cleared(&post, "HUP-1").await;
    assert!(post.log().contains("declaration_id=\"HUP-1\""));

    std::fs::write(&cfg, format!("log_level = \"warn\"\n{text}")).unwrap();
    let pid = post.daemon.as_ref().unwrap().id().to_string();
    // Declarations keep flowing while the signal lands.
    officer
        .send(declaration("HUP-2", Some(&post.token_for("LIC-HUP-2"))))
        .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(eventually(10, || post.log().contains("SIGHUP: log level set")).await);
    officer
        .send(declaration("HUP-3", Some(&post.token_for("LIC-HUP-3"))))
        .await;
    for id in ["HUP-2", "HUP-3"] {
        assert_eq!(officer.verdict_for(id).await["verdict"], "cleared");
    }
    assert!(
        !post.log().contains("declaration_id=\"HUP-3\""),
        "info lines are gone at warn:\n{}",
        post.log()
    );

    // An invalid level is refused and the one in force kept.
    std::fs::write(&cfg, format!("log_level = \"no such level=[\"\n{text}")).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(eventually(10, || post.log().contains("cannot apply `log_level`")).await);
    assert!(post.stop().success());
}
