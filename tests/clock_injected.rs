//! Time is injected: a daemon run with a test's clock decides at the time
//! that clock says, and moving the clock moves its decisions (a license
//! past its `exp` is refused), with no change to the machine's clock.

mod common;

use common::free_port;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use permitgate::clock::{FixedClock, parse_rfc3339};

/// `permitgate dev declare` against the daemon; the verdict it prints.
async fn declare(cfg: &Path, declaration: &Path, id: &str) -> serde_json::Value {
    let (cfg, declaration, id) = (cfg.to_owned(), declaration.to_owned(), id.to_owned());
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["dev", "declare", "--config"])
            .arg(cfg)
            .arg("--declaration")
            .arg(declaration)
            .args(["--id", &id])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_decides_at_the_time_its_clock_says() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/dev");
    for f in ["policy.toml", "dev-issuer.pub.pem", "declaration.json"] {
        std::fs::copy(dev.join(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint = \"clock-test\"\nledger = \"state/ledger.db\"\npolicy = \"policy.toml\"\ncheckpoint_key = \"state/checkpoint.key.pem\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nembedded_broker = true\n",
            free_port()
        ),
    )
    .unwrap();
    let decl = dir.path().join("declaration.json");

    let start = parse_rfc3339("2027-06-01T08:00:00Z").unwrap();
    let clock = Arc::new(FixedClock::at(start));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(permitgate::daemon::run_with_clock(
        permitgate::config::Config::load(&cfg).unwrap(),
        clock.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    // The sample's license (valid until 2030-12-31) clears, dated by the test's clock.
    let v = declare(&cfg, &decl, "CLOCK-1").await;
    assert_eq!(v["verdict"], "cleared", "{v:#}");
    assert_eq!(v["decided_at"], "2027-06-01T08:00:00Z");

    // In 2031 the same kind of license is past its `exp`.
    clock.set(parse_rfc3339("2031-02-01T00:00:00Z").unwrap());
    let key = permitgate::keys::load_signing_key(&dev.join("dev-issuer.key.pem")).unwrap();
    let claims =
        include_str!("../firmware-config/dev/claims.json").replace("LIC-DEV-000001", "LIC-CLOCK-2");
    let license = permitgate::token::License::from_claims_json(&claims).unwrap();
    let token =
        permitgate::token::text::encode(&permitgate::token::issue(&license, "dev-issuer", &key));
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&decl).unwrap()).unwrap();
    d["license"] = token.into();
    let later = dir.path().join("later.json");
    std::fs::write(&later, d.to_string()).unwrap();
    let v = declare(&cfg, &later, "CLOCK-2").await;
    assert_eq!(v["decided_at"], "2031-02-01T00:00:00Z");
    let codes: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert!(codes.contains(&"expired"), "{v:#}");

    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
}
