//! Drives the real `permitgate` binary the way a customs IT engineer would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Post {
    dir: tempfile::TempDir,
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_permitgate"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("permitgate runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

impl Post {
    /// A checkpoint with an issuer key made by `keygen` and a policy trusting it.
    fn new() -> Post {
        let post = Post {
            dir: tempfile::tempdir().unwrap(),
        };
        let o = run(&["keygen", "--out", post.s("keys"), "--name", "issuer"]);
        assert!(o.status.success(), "{}", stderr(&o));
        post.write_config("keys/issuer.pub.pem");
        post
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> &str {
        let p = self.p(rel);
        Box::leak(p.to_string_lossy().into_owned().into_boxed_str())
    }

    fn write_config(&self, pubkey: &str) {
        let policy = include_str!("data/policy.toml").replace("issuer.pub.pem", pubkey);
        std::fs::write(self.p("policy.toml"), policy).unwrap();
        std::fs::write(
            self.p("permitgate.toml"),
            "checkpoint = \"lyg-port-01\"\nledger = \"state/ledger.db\"\npolicy = \"policy.toml\"\ncheckpoint_key = \"state/checkpoint.key.pem\"\n",
        )
        .unwrap();
    }

    fn issue(&self, key: &str, kid: &str) -> String {
        self.issue_with(key, kid, None)
    }

    /// A token for license `license_id` (the sample claims otherwise).
    fn issue_license(&self, key: &str, license_id: &str) -> String {
        self.issue_with(key, "mofcom-2025-1", Some(license_id))
    }

    fn issue_with(&self, key: &str, kid: &str, license_id: Option<&str>) -> String {
        // Dates around the real clock: the binary decides with the system time.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims: serde_json::Value =
            serde_json::from_str(include_str!("data/claims.json")).unwrap();
        claims["iat"] = (now - 86_400).into();
        claims["nbf"] = (now - 86_400).into();
        claims["exp"] = (now + 180 * 86_400).into();
        if let Some(id) = license_id {
            claims["license_id"] = id.into();
        }
        std::fs::write(self.p("claims.json"), claims.to_string()).unwrap();
        let args = [
            "issue",
            "--key",
            self.s(key),
            "--kid",
            kid,
            "--claims",
            self.s("claims.json"),
        ];
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o).trim().to_owned();
        std::fs::write(self.p("token.txt"), &text).unwrap();
        // `--out` writes the same token's COSE bytes instead of printing it.
        let o = run(&[&args[..], &["--out", self.s("token.cose")]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), "", "--out prints nothing");
        assert_eq!(
            std::fs::read(self.p("token.cose")).unwrap(),
            permitgate::token::text::to_cose_bytes(text.as_bytes()).unwrap()
        );
        text
    }

    fn declaration(&self, name: &str, id: &str, token: Option<&str>) -> &str {
        let mut d: serde_json::Value =
            serde_json::from_str(include_str!("data/declaration.json")).unwrap();
        d["declaration_id"] = id.into();
        if let Some(t) = token {
            d["license"] = t.into();
        }
        std::fs::write(self.p(name), d.to_string()).unwrap();
        self.s(name)
    }

    fn decide(&self, decl: &str) -> Output {
        run(&[
            "decide",
            "--config",
            self.s("permitgate.toml"),
            "--declaration",
            decl,
        ])
    }
}

fn assert_verdict(o: &Output, verdict: &str, code: i32) -> serde_json::Value {
    let v = json(o);
    assert_eq!(v["verdict"], verdict, "{v:#}\nstderr: {}", stderr(o));
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    v
}

fn reason_codes(v: &serde_json::Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keygen_issue_verify_decide_then_reuse_is_rejected() {
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    assert!(token.starts_with("PG1:"));
    let cfg = post.s("permitgate.toml");

    // Token alone, then against the declaration: a dry run that consumes nothing.
    let o = run(&["verify", "--config", cfg, "--token", post.s("token.txt")]);
    let v = assert_verdict(&o, "cleared", 0);
    assert_eq!(v["license"]["terms"]["end_user"]["id"], "DE-HRB-20002");
    let bare = post.declaration("bare.json", "CN-LYG-2025-000123", None);
    let o = run(&[
        "verify",
        "--config",
        cfg,
        "--token",
        post.s("token.cose"),
        "--declaration",
        bare,
    ]);
    assert_verdict(&o, "cleared", 0);

    let first = post.declaration("first.json", "CN-LYG-2025-000123", Some(&token));
    let v = assert_verdict(&post.decide(first), "cleared", 0);
    assert_eq!(v["license_id"], "LIC-2025-000123");
    assert_eq!(v["checkpoint"], "lyg-port-01");

    // The same license on another declaration: reuse, with where and when.
    let second = post.declaration("second.json", "CN-LYG-2025-000999", Some(&token));
    let o = post.decide(second);
    let v = assert_verdict(&o, "rejected", 1);
    assert_eq!(reason_codes(&v), ["license_already_used"]);
    assert_eq!(
        v["reasons"][0]["previous_use"]["declaration_id"],
        "CN-LYG-2025-000123"
    );
    assert!(stderr(&o).contains("ALERT"), "{}", stderr(&o));

    // Now verify reports it used too, still without consuming anything.
    let o = run(&["verify", "--config", cfg, "--token", post.s("token.txt")]);
    assert_eq!(
        reason_codes(&assert_verdict(&o, "rejected", 1)),
        ["license_already_used"]
    );

    // Redelivery of the first declaration: its stored verdict, nothing consumed.
    let o = post.decide(first);
    let again = assert_verdict(&o, "cleared", 0);
    let stored: serde_json::Value = json(&post.decide(first));
    assert_eq!(again, stored);
    assert!(stderr(&o).contains("already decided"));

    let o = run(&["ledger", "--config", cfg, "show", "LIC-2025-000123"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = json(&o);
    assert_eq!(
        report["consumed_here"]["declaration_id"],
        "CN-LYG-2025-000123"
    );
    assert_eq!(
        report["verdicts"].as_array().unwrap().len(),
        2,
        "one clearance, one reuse; repeats add nothing"
    );

    let o = run(&["ledger", "--config", cfg, "export"]);
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = run(&["ledger", "--config", cfg, "export", "--format", "csv"]);
    assert!(
        stdout(&o)
            .lines()
            .nth(2)
            .unwrap()
            .contains("license_already_used")
    );
    let o = run(&["ledger", "--config", cfg, "check"]);
    assert!(
        o.status.success()
            && stdout(&o).contains("log intact")
            && stdout(&o).contains("2 verdicts, 1 licenses consumed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn openssl_generated_keys_issue_and_are_trusted() {
    let post = Post::new();
    let key = post.p("ossl.key.pem");
    let public = post.p("ossl.pub.pem");
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(st.success());
    post.write_config("ossl.pub.pem");
    let token = post.issue("ossl.key.pem", "mofcom-2025-1");
    let d = post.declaration("d.json", "D-OSSL-1", Some(&token));
    assert_verdict(&post.decide(d), "cleared", 0);
}

#[test]
fn ledger_check_finds_an_edited_row_and_a_deleted_one() {
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    for (n, t) in [
        (1, Some(token.as_str())),
        (2, Some(token.as_str())),
        (3, None),
    ] {
        let d = post.declaration(&format!("d{n}.json"), &format!("D-{n}"), t);
        post.decide(d);
    }
    let cfg = post.s("permitgate.toml");
    assert!(run(&["ledger", "--config", cfg, "check"]).status.success());

    let db = rusqlite::Connection::open(post.p("state/ledger.db")).unwrap();
    db.execute(
        "UPDATE audit SET verdict_json = replace(verdict_json, 'rejected', 'cleared') WHERE id = 2",
        [],
    )
    .unwrap();
    let o = run(&["ledger", "--config", cfg, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("audit row 2") && stderr(&o).contains("edited"),
        "{}",
        stderr(&o)
    );

    db.execute(
        "UPDATE audit SET verdict_json = replace(verdict_json, 'cleared', 'rejected') WHERE id = 2",
        [],
    )
    .unwrap();
    assert!(run(&["ledger", "--config", cfg, "check"]).status.success());
    db.execute("DELETE FROM audit WHERE id = 3", []).unwrap();
    let o = run(&["ledger", "--config", cfg, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("deleted"), "{}", stderr(&o));
}

/// The tamperings an insider with the files (and the key) can do, against
/// a head exported before: `ledger head` then `ledger check --against`.
#[test]
fn ledger_check_against_an_exported_head_catches_erased_decisions() {
    let post = Post::new();
    let cfg = post.s("permitgate.toml");
    let first = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    let d = post.declaration("d1.json", "D-1", Some(&first));
    assert_verdict(&post.decide(d), "cleared", 0);
    let before = run(&["ledger", "--config", cfg, "head"]);
    assert!(before.status.success());
    let second = post.issue_license("keys/issuer.key.pem", "LIC-2025-000777");
    let d = post.declaration("d2.json", "D-2", Some(&second));
    assert_verdict(&post.decide(d), "cleared", 0);
    let head = run(&["ledger", "--config", cfg, "head"]);
    let note = stdout(&head);
    assert!(
        note.starts_with("permitgate/checkpoint/lyg-port-01\n4\n"),
        "{note}"
    );
    std::fs::write(post.p("exported.head"), &note).unwrap();
    let against = [
        "ledger",
        "--config",
        cfg,
        "check",
        "--against",
        post.s("exported.head"),
    ];
    let o = run(&against);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("consistent with the head in"),
        "{}",
        stdout(&o)
    );

    // The second decision erased, the log rolled back to the first head.
    let db = rusqlite::Connection::open(post.p("state/ledger.db")).unwrap();
    for sql in [
        "DELETE FROM audit WHERE declaration_id = 'D-2'",
        "DELETE FROM declarations WHERE declaration_id = 'D-2'",
        "DELETE FROM consumed WHERE declaration_id = 'D-2'",
        "DELETE FROM outbox WHERE seq = 2",
        "DELETE FROM log_leaves WHERE n >= 2",
        "DELETE FROM log_hashes WHERE idx >= 3",
        "DELETE FROM log_heads WHERE size > 2",
    ] {
        db.execute(sql, []).unwrap();
    }
    drop(db);
    // It agrees with itself…
    assert!(run(&["ledger", "--config", cfg, "check"]).status.success());
    // …not with the head that left.
    let o = run(&against);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("removed or rolled back"),
        "{}",
        stderr(&o)
    );
    // A head that is not this checkpoint's, or not a head: refused, not intact / bad input.
    std::fs::write(
        post.p("other.head"),
        note.replace("lyg-port-01", "other-post"),
    )
    .unwrap();
    let o = run(&[
        "ledger",
        "--config",
        cfg,
        "check",
        "--against",
        post.s("other.head"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::write(post.p("junk.head"), "not a head").unwrap();
    let o = run(&[
        "ledger",
        "--config",
        cfg,
        "check",
        "--against",
        post.s("junk.head"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A consumed row deleted: the license would clear again.
    let db = rusqlite::Connection::open(post.p("state/ledger.db")).unwrap();
    db.execute("DELETE FROM consumed WHERE declaration_id = 'D-1'", [])
        .unwrap();
    let o = run(&["ledger", "--config", cfg, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("LIC-2025-000123") && stderr(&o).contains("clear again"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn clear_errors_for_bad_inputs() {
    let post = Post::new();
    let cfg = post.s("permitgate.toml");

    // Missing config: exit 2, names the file.
    let o = run(&[
        "decide",
        "--config",
        post.s("nope.toml"),
        "--declaration",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));

    // Bad policy: exit 2, names the file, the line and the key.
    let text = std::fs::read_to_string(post.p("policy.toml")).unwrap();
    std::fs::write(
        post.p("policy.toml"),
        text.replace("max_age = \"3650d\"", "max_age = \"ten years\""),
    )
    .unwrap();
    let o = run(&["verify", "--config", cfg, "--token", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("policy.toml:4:") && stderr(&o).contains("max_age"),
        "{}",
        stderr(&o)
    );
    // Said once, on one line.
    assert_eq!(stderr(&o).matches("max_age").count(), 1, "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    std::fs::write(post.p("policy.toml"), text).unwrap();

    // Unknown kid.
    post.issue("keys/issuer.key.pem", "no-such-kid");
    let o = run(&["verify", "--config", cfg, "--token", post.s("token.txt")]);
    assert_eq!(
        reason_codes(&assert_verdict(&o, "rejected", 1)),
        ["unknown_issuer"]
    );
    assert!(
        json(&o)["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no-such-kid")
    );

    // Truncated token.
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    std::fs::write(post.p("short.txt"), &token[..token.len() - 20]).unwrap();
    let o = run(&["verify", "--config", cfg, "--token", post.s("short.txt")]);
    assert_eq!(
        reason_codes(&assert_verdict(&o, "rejected", 1)),
        ["malformed"]
    );

    // Declaration missing a required field: a malformed verdict naming it.
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("data/declaration.json")).unwrap();
    d.as_object_mut().unwrap().remove("end_user");
    std::fs::write(post.p("bad.json"), d.to_string()).unwrap();
    let o = post.decide(post.s("bad.json"));
    let v = assert_verdict(&o, "rejected", 1);
    assert!(
        v["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("end_user"),
        "{v}"
    );

    // Unreadable declaration file: exit 2.
    let o = post.decide(post.s("missing.json"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.json"));
}

#[test]
fn standard_input_and_cbor_declarations() {
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("data/declaration.json")).unwrap();
    d["license"] = token.into();
    let cbor = serde_cbor_like(&d);
    let mut child = bin()
        .args([
            "decide",
            "--config",
            post.s("permitgate.toml"),
            "--declaration",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&cbor).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_verdict(&o, "cleared", 0);
    assert!(
        Path::new(&post.p("state/checkpoint.key.pem")).exists(),
        "checkpoint key created on first use"
    );
}

#[test]
fn verify_reads_a_cbor_declaration_whose_license_is_raw_cose_bytes() {
    use permitgate::codec::Value;
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    let cose = permitgate::token::text::to_cose_bytes(token.trim().as_bytes()).unwrap();
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("data/declaration.json")).unwrap();
    d["license"] = "placeholder".into();
    let mut v = permitgate::codec::decode_value(&serde_cbor_like(&d)).unwrap();
    if let Value::Map(entries) = &mut v {
        for (k, val) in entries.iter_mut() {
            if matches!(k, Value::Text(t) if t == "license") {
                *val = Value::Bytes(cose.clone());
            }
        }
    }
    std::fs::write(post.p("d.cbor"), permitgate::codec::encode_value(&v)).unwrap();
    std::fs::write(post.p("t.cose"), &cose).unwrap();
    let o = run(&[
        "verify",
        "--config",
        post.s("permitgate.toml"),
        "--token",
        post.s("t.cose"),
        "--declaration",
        post.s("d.cbor"),
    ]);
    assert_verdict(&o, "cleared", 0);
}

/// CBOR of a JSON value, through the crate's codec.
fn serde_cbor_like(v: &serde_json::Value) -> Vec<u8> {
    permitgate::codec::to_vec(v).unwrap()
}

#[test]
fn shipped_profiles_and_policies_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config");
    permitgate::policy::Policy::load(&root.join("policy.toml")).expect("example policy loads");
    let cfg = permitgate::config::Config::load(&root.join("dev.toml")).expect("dev profile loads");
    assert_eq!(cfg.checkpoint, "dev-laptop");
    // The walk-through's dev token verifies against the dev profile (a dry run: nothing written).
    let o = run(&[
        "issue",
        "--key",
        root.join("dev/dev-issuer.key.pem").to_str().unwrap(),
        "--kid",
        "dev-issuer",
        "--claims",
        root.join("dev/claims.json").to_str().unwrap(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), &o.stdout).unwrap();
    // The dev profile as shipped, but with its state in a fresh directory: a
    // developer's own dev-state/ (perhaps of an older schema) is not read.
    let mut profile: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("dev.toml")).unwrap()).unwrap();
    let policy = root.join(profile["policy"].as_str().unwrap());
    profile.insert("policy".into(), policy.to_str().unwrap().into());
    std::fs::write(
        dir.path().join("dev.toml"),
        toml::to_string(&profile).unwrap(),
    )
    .unwrap();
    let o = run(&[
        "verify",
        "--config",
        dir.path().join("dev.toml").to_str().unwrap(),
        "--token",
        dir.path().join("t.txt").to_str().unwrap(),
        "--declaration",
        root.join("dev/declaration.json").to_str().unwrap(),
    ]);
    let v = json(&o);
    // The sample declaration names BL-778812 as the licensed shipment; with no ledger yet it clears.
    assert_eq!(v["verdict"], "cleared", "{v:#}");
    // The production profiles name files under /etc: check they are TOML with the expected tables.
    for (profile, keys) in [
        (
            "port-gateway.toml",
            &["checkpoint", "mqtt", "uplink", "sync"][..],
        ),
        (
            "border-post.toml",
            &["checkpoint", "mqtt", "uplink", "sync"],
        ),
        (
            "hub.toml",
            &["store", "mqtt", "policy", "hub_key", "hub_kid", "http"],
        ),
    ] {
        let text = std::fs::read_to_string(root.join(profile)).unwrap();
        let table: toml::Table = toml::from_str(&text).expect(profile);
        for k in keys {
            assert!(table.contains_key(*k), "{profile}: {k}");
        }
    }
    // The Debian package's default config loads as installed (its /etc and
    // /var/lib paths moved into a scratch root).
    let scratch = tempfile::tempdir().unwrap();
    let etc = scratch.path().join("etc/permitgate");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(root.join("policy.toml"), etc.join("policy.toml")).unwrap();
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/permitgate.toml"),
    )
    .unwrap()
    .replace("/etc/", &format!("{}/etc/", scratch.path().display()))
    .replace("/var/", &format!("{}/var/", scratch.path().display()));
    std::fs::write(etc.join("permitgate.toml"), packaged).unwrap();
    let cfg = permitgate::config::Config::load(&etc.join("permitgate.toml"))
        .expect("the packaged config loads");
    assert_eq!(
        cfg.http.map(|h| h.listen.to_string()),
        Some("127.0.0.1:9710".to_owned())
    );
}

/// The benchmark is a tool, not a timed test: this only checks that it runs
/// end to end and that every verdict it collects is the expected one.
#[test]
fn the_benchmark_runs_end_to_end_and_checks_every_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = run(&[
        "bench",
        "--declarations",
        "300",
        "--reused",
        "0.1",
        "--forged",
        "0.1",
        "--not-required",
        "0.1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["declarations"], 300);
    assert_eq!(report["wrong_verdicts"], 0);
    for key in [
        "sustained_per_sec",
        "latency_ms_p99",
        "daemon_peak_rss_mib",
        "verify_strict_per_sec",
        "exact_check_to_verify_strict",
        "disk_fsync_ms_p50",
        "disk_fsync_ms_p99",
    ] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report}"
        );
    }
    // The host's speed from before to after the run: a rate both times.
    assert!(
        report["verify_strict_change_percent"]
            .as_f64()
            .is_some_and(|v| v.is_finite() && v > -100.0),
        "{report}"
    );
    // What the latency figures stand on: a share of the machine's CPU.
    assert!(
        report["cpu_steal_percent"]
            .as_f64()
            .is_some_and(|v| (0.0..=100.0).contains(&v)),
        "{report}"
    );
    assert!(
        report["disk_fsync_ms_p50"].as_f64() <= report["disk_fsync_ms_p99"].as_f64(),
        "{report}"
    );
    // Where the CPU went, per declaration: every stage did some work, and
    // the verify stage at least the signature checks (tens of µs each).
    let cpu = &report["cpu_us_per_declaration"];
    for place in ["verify", "ledger", "async", "mosquitto", "generator"] {
        assert!(
            cpu[place].as_f64().is_some_and(|v| v > 0.0),
            "{place}: {report}"
        );
    }
    assert!(cpu["verify"].as_f64().is_some_and(|v| v >= 5.0), "{report}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("declarations/s")
            && out.contains("one core's verify_strict")
            && out.contains("the gate's exact check")
            && out.contains("write+fdatasync")
            && out.contains("stolen by the host")
            && out.contains("CPU per declaration, µs verify"),
        "{out}"
    );
}

#[test]
fn issue_draws_a_qr_code_that_scans_back_to_a_token_verify_accepts() {
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    let o = run(&[
        "issue",
        "--key",
        post.s("keys/issuer.key.pem"),
        "--kid",
        "mofcom-2025-1",
        "--claims",
        post.s("claims.json"),
        "--qr",
        post.s("token.png"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let issued = stdout(&o).trim().to_owned();
    assert!(issued.starts_with("PG1:") && issued.len() == token.len());

    // Scan the PNG with an independent QR decoder.
    let decoder = png::Decoder::new(std::io::Cursor::new(
        std::fs::read(post.p("token.png")).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, scanned) = grids[0].decode().unwrap();
    assert_eq!(scanned, issued);

    // What the scanner read is what `verify --token` takes.
    std::fs::write(post.p("scanned.txt"), format!("{scanned}\n")).unwrap();
    let o = run(&[
        "verify",
        "--config",
        post.s("permitgate.toml"),
        "--token",
        post.s("scanned.txt"),
    ]);
    assert_verdict(&o, "cleared", 0);

    // `--qr -` draws it on the terminal (standard error), the token stays on standard output.
    let o = run(&[
        "issue",
        "--key",
        post.s("keys/issuer.key.pem"),
        "--kid",
        "mofcom-2025-1",
        "--claims",
        post.s("claims.json"),
        "--qr",
        "-",
    ]);
    assert!(stderr(&o).contains('\u{2588}') || stderr(&o).contains('\u{2580}'));
    assert!(stdout(&o).trim().starts_with("PG1:"));
}

#[test]
fn completions_and_man_page_come_from_the_command_definitions() {
    let o = run(&["completions", "bash"]);
    assert!(o.status.success());
    let bash = stdout(&o);
    for sub in ["issue", "verify", "run", "hub", "bench", "ledger"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let o = run(&["man"]);
    assert!(o.status.success());
    let man = stdout(&o);
    assert!(
        man.contains(".TH permitgate 1") && man.contains("policy"),
        "{man}"
    );
    assert_eq!(
        run(&["completions", "no-such-shell"]).status.code(),
        Some(2)
    );

    // Every page the top page (and each page) refers to exists.
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(pages.len() > 15, "{pages:?}");
    let mut references = 0;
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        // References read `permitgate\-policy\-sign(1)` in roff.
        let plain = text.replace("\\-", "-");
        for (at, _) in plain.match_indices("(1)") {
            let name: String = plain[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if name.starts_with("permitgate") {
                references += 1;
                assert!(
                    pages.contains(&format!("{name}.1")),
                    "{page} names {name}(1), which is not written"
                );
            }
        }
    }
    assert!(references >= pages.len() - 1, "{references} references");
    // One page to standard output, by its subcommand path.
    let o = run(&["man", "policy", "sign"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains(".TH permitgate-policy-sign 1"),
        "{}",
        stdout(&o)
    );
    let o = run(&["man", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`nope` is not a subcommand"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `permitgate man | head`, `permitgate ledger export | head`: the
    // reader is gone before the writer writes.
    let post = Post::new();
    let token = post.issue("keys/issuer.key.pem", "mofcom-2025-1");
    let decl = post.declaration("d.json", "CN-LYG-2025-000123", Some(&token));
    assert_verdict(&post.decide(decl), "cleared", 0);
    // More verdicts than one buffer holds, so the export writes while reading.
    for i in 0..40 {
        let decl = post.declaration("r.json", &format!("CN-LYG-2025-9{i:05}"), None);
        assert!(post.decide(decl).status.code().is_some());
    }
    let cfg = post.s("permitgate.toml");
    for args in [vec!["man"], vec!["ledger", "--config", cfg, "export"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bin()
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            stderr(&out),
            "",
            "{args:?}: no error for a reader that stopped reading"
        );
        assert!(out.status.success(), "{args:?}");
    }
}
