//! An officer's work from the command line at a running post: a hold
//! released is published and synced as a clearance, and stands; alerts are
//! worked and stay worked across a restart.

mod common;

use std::process::Command;

use common::country::*;
use common::*;

/// Runs `permitgate ARGS --config <post's config> REST…`: (success, stdout, stderr).
fn permitgate(post: &Post, what: &str, rest: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args([what, "--config"])
        .arg(post.dir.path().join("permitgate.toml"))
        .args(rest)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A declaration whose controlled goods carry no element breakdown: held.
fn unclassifiable(id: &str, token: &str) -> Vec<u8> {
    let mut d: serde_json::Value = serde_json::from_slice(&declaration(id, Some(token))).unwrap();
    d["items"][0]["elements"] = serde_json::json!([]);
    d.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_released_from_the_command_line_is_published_synced_and_stands() {
    let c = Country::start().await;
    let mut gate_a = Officer::connect_to(c.a.broker.port, "gate-a", "post-a").await;
    let mut gate_b = Officer::connect_to(c.b.broker.port, "gate-b", "post-b").await;
    let token = c.a.token_for("LIC-HELD-1");

    gate_a.send(unclassifiable("H-1", &token)).await;
    let held = gate_a.verdict_for("H-1").await;
    assert_eq!(held["verdict"], "hold", "{held}");
    let (ok, listed, _) = permitgate(&c.a, "hold", &["list"]);
    assert!(ok && listed.contains("H-1"), "{listed}");

    // Not on hold, or no note: refused, and nothing changes.
    let (ok, _, why) = permitgate(
        &c.a,
        "hold",
        &[
            "resolve",
            "NOPE",
            "--outcome",
            "release",
            "--officer",
            "o-7",
            "--note",
            "x",
        ],
    );
    assert!(!ok && why.contains("NOPE has no verdict"), "{why}");

    let (ok, out, why) = permitgate(
        &c.a,
        "hold",
        &[
            "resolve",
            "H-1",
            "--outcome",
            "release",
            "--officer",
            "o-7",
            "--note",
            "opened: NdFeB magnets, Dy as licensed",
        ],
    );
    assert!(ok, "{why}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["verdict"], "cleared");

    // The running daemon publishes the new verdict for the same declaration.
    let released = gate_a.verdict_for("H-1").await;
    assert_eq!(released["verdict"], "cleared", "{released}");
    assert_eq!(released["resolution"]["outcome"], "release");
    assert_eq!(released["resolution"]["officer"], "o-7");
    assert_eq!(released["resolution"]["held_at"], held["decided_at"]);

    // Its consumption reaches the hub and the other post, which refuses a reuse.
    assert!(
        eventually(20, || c.hub.records() == 1
            && c.b.remote_consumptions() == 1)
        .await,
        "hub {} records, post B learned {}\n{}",
        c.hub.records(),
        c.b.remote_consumptions(),
        c.a.log()
    );
    gate_b.send(declaration("B-1", Some(&token))).await;
    let reuse = gate_b.verdict_for("B-1").await;
    assert_eq!(
        reuse["reasons"][0]["code"], "license_already_used",
        "{reuse}"
    );

    // A redelivery of the held declaration gets the release; a second resolution is refused.
    gate_a.send(unclassifiable("H-1", &token)).await;
    assert_eq!(gate_a.verdict_for("H-1").await, released);
    let (ok, _, why) = permitgate(
        &c.a,
        "hold",
        &[
            "resolve",
            "H-1",
            "--outcome",
            "seize",
            "--officer",
            "o-8",
            "--note",
            "second look",
        ],
    );
    assert!(
        !ok && why.contains("already resolved: release by officer o-7"),
        "{why}"
    );
    c.a.assert_ledger_checks_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_worked_from_the_command_line_and_stay_worked_across_a_restart() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    let mut gate = Officer::connect(post.broker.port, "gate").await;
    gate.expect_cleared(&post, "D-1").await;
    gate.send(declaration("D-2", Some(&post.token()))).await;
    let reuse = gate.verdict_for("D-2").await;
    assert_eq!(reuse["reasons"][0]["code"], "license_already_used");
    assert!(eventually(10, || post.alerts_of("suspicious_verdict") == 1).await);

    let (ok, listed, _) = permitgate(&post, "alert", &["list"]);
    assert!(ok, "{listed}");
    let line = listed
        .lines()
        .find(|l| l.contains("D-2"))
        .unwrap_or_else(|| panic!("{listed}"));
    let id = line.split_whitespace().next().unwrap().to_owned();
    assert!(line.contains(" open "), "{line}");

    let (ok, _, why) = permitgate(
        &post,
        "alert",
        &["close", &id, "--officer", "o-7", "--note", ""],
    );
    assert!(!ok && why.contains("needs a note"), "{why}");
    let (ok, out, why) = permitgate(
        &post,
        "alert",
        &["assign", &id, "--to", "inv-3", "--officer", "o-7"],
    );
    assert!(ok && out.contains("acknowledged"), "{out}{why}");
    let (ok, out, why) = permitgate(
        &post,
        "alert",
        &[
            "close",
            &id,
            "--officer",
            "inv-3",
            "--note",
            "exporter questioned; case 2026-118 opened",
        ],
    );
    assert!(ok && out.contains("closed"), "{out}{why}");
    let (ok, _, why) = permitgate(&post, "alert", &["acknowledge", &id, "--officer", "o-9"]);
    assert!(!ok && why.contains("stays closed"), "{why}");

    post.stop();
    post.start();
    wait_online(post.broker.port).await;
    let (_, open, _) = permitgate(&post, "alert", &["list"]);
    assert!(
        !open.contains("D-2"),
        "a closed alert is not listed as open: {open}"
    );
    let (_, all, _) = permitgate(&post, "alert", &["list", "--all"]);
    assert!(
        all.contains("D-2") && all.contains("closed") && all.contains("assigned to inv-3"),
        "{all}"
    );
    // Who did what is in the signed log, and the log is intact.
    let actions =
        post.ledger_strings("SELECT officer || ':' || action FROM alert_actions ORDER BY id");
    assert_eq!(actions, ["o-7:assign", "inv-3:close"]);
    post.assert_ledger_checks_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_list_holds_a_near_name_for_the_officer_and_rejects_the_listed_one() {
    let mut post = Post::new();
    let list = post.dir.path().join("targets.simple.csv");
    std::fs::write(
        &list,
        "id,schema,name,aliases,birth_date,countries,addresses,identifiers,sanctions,phones,emails,dataset,first_seen,last_seen,last_change\n\
         NK-3,Company,Rostek Magnit Trading LLC,ООО Ростек Магнит Трейдинг,,ru,,RU-1027700132195,,,,ru_list,,,\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_permitgate"))
        .args(["policy", "import-denied", "--format", "csv"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut policy = std::fs::read_to_string(post.dir.path().join("policy.toml")).unwrap();
    policy.push('\n');
    policy.push_str(&String::from_utf8_lossy(&out.stdout));
    std::fs::write(post.dir.path().join("policy.toml"), policy).unwrap();
    post.start();
    wait_online(post.broker.port).await;
    let mut gate = Officer::connect(post.broker.port, "gate").await;

    let with_consignee = |id: &str, name: &str, token: Option<&str>| {
        let mut d: serde_json::Value = serde_json::from_slice(&declaration(id, token)).unwrap();
        d["consignee"]["name"] = name.into();
        d.to_string().into_bytes()
    };
    gate.send(with_consignee(
        "X-1",
        "ООО Ростек Магнит Трейдинг",
        Some(&post.token_for("LIC-X1")),
    ))
    .await;
    let exact = gate.verdict_for("X-1").await;
    assert_eq!(exact["reasons"][0]["code"], "denied_party", "{exact}");

    let token = post.token_for("LIC-X2");
    gate.send(with_consignee("X-2", "Rostec Magnit Trading", Some(&token)))
        .await;
    let near = gate.verdict_for("X-2").await;
    assert_eq!(near["verdict"], "hold", "{near}");
    let detail = near["reasons"][0]["detail"].as_str().unwrap();
    assert_eq!(near["reasons"][0]["code"], "possible_denied_party");
    assert!(
        detail.contains("Rostek Magnit Trading LLC") && detail.contains("score 0."),
        "{detail}"
    );
    // The verdict carries the two names side by side for the desk.
    let m = &near["reasons"][0]["name_match"];
    assert_eq!(m["role"], "consignee", "{m}");
    assert_eq!(m["listed"], "Rostek Magnit Trading LLC", "{m}");
    assert_eq!(m["entry_id"], "RU1027700132195", "{m}");
    let marks = |side: &str| -> Vec<String> {
        m["words"][side]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{}:{}",
                    w["text"].as_str().unwrap(),
                    w["mark"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        marks("declared"),
        ["rostec:alike", "magnit:same", "trading:same"]
    );
    assert_eq!(
        marks("listed"),
        ["rostek:alike", "magnit:same", "trading:same"]
    );

    // The officer checks the firm's papers and releases: the license is consumed.
    let (ok, _, why) = permitgate(
        &post,
        "hold",
        &[
            "resolve",
            "X-2",
            "--outcome",
            "release",
            "--officer",
            "o-7",
            "--note",
            "other firm: Rostec Magnit, Kazan, papers checked",
        ],
    );
    assert!(ok, "{why}");
    let released = gate.verdict_for("X-2").await;
    assert_eq!(released["verdict"], "cleared", "{released}");
    assert_eq!(
        post.ledger_strings("SELECT license_id FROM consumed"),
        ["LIC-X2"]
    );
}

/// A self-signed certificate for 127.0.0.1 in `dir` (`console.pem`, `console.key`).
fn self_signed(dir: &std::path::Path) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            "console.key",
            "-out",
            "console.pem",
            "-days",
            "2",
            "-subj",
            "/CN=post-console",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("console.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// One HTTPS request to 127.0.0.1:`port` trusting `ca`: the whole response as text.
async fn https(port: u16, ca: &std::path::Path, request: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_beyond_loopback_needs_https_and_gets_it() {
    let mut post = Post::new();
    let port = free_port();
    let hash = permitgate::signin::hash_password("correct horse battery").unwrap();
    let cfg = post.dir.path().join("permitgate.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let desk = format!(
        "\n[desk]\n[[desk.officers]]\nid = \"o-7\"\nrole = \"officer\"\npassword_hash = \"{hash}\"\n"
    );

    // Beyond loopback without TLS: refused, saying what to set.
    std::fs::write(
        &cfg,
        format!("{base}\n[http]\nlisten = \"0.0.0.0:{port}\"\n{desk}"),
    )
    .unwrap();
    let (ok, _, why) = permitgate(&post, "status", &[]);
    assert!(
        !ok && why.contains("needs HTTPS: set `http.tls_cert` and `http.tls_key`"),
        "{why}"
    );

    self_signed(post.dir.path());
    std::fs::write(
        &cfg,
        format!("{base}\n[http]\nlisten = \"0.0.0.0:{port}\"\ntls_cert = \"console.pem\"\ntls_key = \"console.key\"\n{desk}"),
    )
    .unwrap();
    post.start();
    wait_online(post.broker.port).await;
    let ca = post.dir.path().join("console.pem");
    let page = https(
        port,
        &ca,
        "GET /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("Sign in"),
        "{page}"
    );
    let body = "officer=o-7&password=correct+horse+battery";
    let signed_in = https(
        port,
        &ca,
        &format!("POST /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    let cookie = signed_in
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{signed_in}"));
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("; Secure"),
        "{cookie}"
    );
    // Plain HTTP on the same port gets no page.
    let plain = ureq::get(&format!("http://127.0.0.1:{port}/signin")).call();
    assert!(plain.is_err(), "plain HTTP was answered");
}
