//! The README's country walk-through, as a newcomer runs it: one command
//! starts a broker, a hub and two posts; a license used at post-a is
//! refused at post-b with the evidence of the first use; Ctrl-C stops all.

mod common;

use common::free_port;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(args)
        .output()
        .unwrap()
}

/// Polls `check` until it holds or `secs` pass.
fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

#[test]
fn a_country_in_one_command_catches_a_second_use_with_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("country");
    let ds = d.to_str().unwrap().to_owned();
    let http = free_port();
    let mut country = Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(["dev", "country", "--dir", &ds])
        .args(["--port", &free_port().to_string()])
        .args(["--http-port", &http.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The banner ends with how to stop it, once every console answers.
    let mut banner = String::new();
    let mut out = BufReader::new(country.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        banner.push_str(&line);
        if line.contains("Ctrl-C stops the country") {
            break;
        }
        line.clear();
    }
    assert!(banner.contains("post-b"), "{banner}");
    let cfg = |post: &str| format!("{ds}/{post}.toml");
    let decl = format!("{ds}/declaration.json");

    // The license's first use, at post-a: cleared.
    let o = pg(&[
        "dev",
        "declare",
        "--config",
        &cfg("post-a"),
        "--declaration",
        &decl,
    ]);
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(first["verdict"], "cleared", "{first:#}");
    assert_eq!(o.status.code(), Some(0));

    // Once the hub has passed it on, post-b knows it ...
    let knows = eventually(60, || {
        let o = pg(&[
            "ledger",
            "--config",
            &cfg("post-b"),
            "show",
            "LIC-DEV-000001",
        ]);
        String::from_utf8_lossy(&o.stdout).contains("\"post-a\"")
    });
    assert!(knows, "post-b never learned of post-a's use");
    // ... and refuses the same license on another shipment, naming the first use.
    let o = pg(&[
        "dev",
        "declare",
        "--config",
        &cfg("post-b"),
        "--declaration",
        &decl,
        "--id",
        "CN-LYG-2025-000124",
    ]);
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(second["verdict"], "rejected");
    let reason = &second["reasons"][0];
    assert_eq!(reason["code"], "license_already_used", "{second:#}");
    assert_eq!(reason["previous_use"]["checkpoint"], "post-a");
    assert_eq!(
        reason["previous_use"]["declaration_id"],
        "CN-LYG-2025-000123"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ALERT"));

    // The evidence of the first use, checked offline with the authority's key.
    let evidence = format!("{ds}/evidence.cbor");
    let o = pg(&[
        "evidence",
        "export",
        "--config",
        &cfg("post-b"),
        "LIC-DEV-000001",
        "--out",
        &evidence,
        "--policy-bundle",
        &format!("{ds}/policy.bundle"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pg(&[
        "evidence",
        "verify",
        &evidence,
        "--policy-root-key",
        &format!("{ds}/root.pub.pem"),
    ]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("Consumed at checkpoint post-a by declaration CN-LYG-2025-000123"),
        "{said}"
    );

    // Ctrl-C (SIGINT) stops the hub, both posts and the broker.
    let pid = rustix::process::Pid::from_raw(country.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let stopped = eventually(30, || country.try_wait().unwrap().is_some());
    assert!(stopped, "the country did not stop");
    assert!(country.wait().unwrap().success());
    assert!(
        eventually(10, || std::net::TcpStream::connect(("127.0.0.1", http))
            .is_err()),
        "the hub still answers"
    );
}

/// The five-minute walk-through, step by step, on the development profile's
/// embedded broker (MQTT 3.1.1 for scanners): a license clears once, its
/// redelivery gets the stored verdict, another shipment with it is refused.
#[test]
fn dev_declare_speaks_to_the_embedded_broker_of_the_development_profile() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/dev");
    for f in ["policy.toml", "dev-issuer.pub.pem", "declaration.json"] {
        std::fs::copy(dev.join(f), dir.path().join(f)).unwrap();
    }
    let port = free_port();
    let cfg = dir.path().join("dev.toml");
    std::fs::write(
        &cfg,
        format!(
            "checkpoint = \"dev-laptop\"\nledger = \"state/ledger.db\"\npolicy = \"policy.toml\"\ncheckpoint_key = \"state/checkpoint.key.pem\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nembedded_broker = true\n"
        ),
    )
    .unwrap();
    let _daemon = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cfg = cfg.to_str().unwrap();
    let decl = dir.path().join("declaration.json");
    let decl = decl.to_str().unwrap();
    let declare = |extra: &[&str]| {
        let mut args = vec!["dev", "declare", "--config", cfg, "--declaration", decl];
        args.extend(extra);
        let o = pg(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code(), v)
    };
    let (code, first) = declare(&[]);
    assert_eq!(
        (code, first["verdict"].as_str()),
        (Some(0), Some("cleared")),
        "{first:#}"
    );
    let (code, again) = declare(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        again["decided_at"], first["decided_at"],
        "the stored verdict"
    );
    let (code, other) = declare(&["--id", "CN-LYG-2025-000124"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        other["reasons"][0]["code"], "license_already_used",
        "{other:#}"
    );

    // Steps 4 to 6: a license of one's own, checked, used, and the ledger asked.
    let claims = std::fs::read_to_string(dev.join("claims.json"))
        .unwrap()
        .replace("LIC-DEV-000001", "LIC-DEV-000002");
    std::fs::write(dir.path().join("claims.json"), claims).unwrap();
    let o = pg(&[
        "issue",
        "--key",
        dev.join("dev-issuer.key.pem").to_str().unwrap(),
        "--kid",
        "dev-issuer",
        "--claims",
        dir.path().join("claims.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = dir.path().join("token.txt");
    std::fs::write(&token, &o.stdout).unwrap();
    let token = token.to_str().unwrap();
    let o = pg(&["verify", "--config", cfg, "--token", token]);
    let dry: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (o.status.code(), dry["verdict"].as_str()),
        (Some(0), Some("cleared"))
    );
    let (code, own) = declare(&["--id", "CN-LYG-2025-000125", "--license", token]);
    assert_eq!(code, Some(0), "{own:#}");
    assert_eq!(own["license_id"], "LIC-DEV-000002");
    let o = pg(&["status", "--config", cfg]);
    let status = String::from_utf8_lossy(&o.stdout);
    assert!(
        status.contains("verdicts 3, licenses consumed 2"),
        "{status}"
    );
    let o = pg(&["ledger", "--config", cfg, "show", "LIC-DEV-000001"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        shown["reuse_attempts"][0]["declaration_id"],
        "CN-LYG-2025-000124"
    );
    assert!(pg(&["ledger", "--config", cfg, "check"]).status.success());
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
