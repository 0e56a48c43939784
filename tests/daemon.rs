//! The daemon against a real Eclipse Mosquitto, each test on its own port
//! and in its own temporary directory.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clears_then_rejects_reuse_and_repeats_on_redelivery() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "officer-1").await;
    let token = post.token();

    officer.send(declaration("D-1", Some(&token))).await;
    let v = officer.verdict_for("D-1").await;
    assert_eq!(v["verdict"], "cleared", "{v}\n{}", post.log());

    officer.send(declaration("D-2", Some(&token))).await;
    let v = officer.verdict_for("D-2").await;
    assert_eq!(v["verdict"], "rejected");
    assert_eq!(v["reasons"][0]["code"], "license_already_used");
    let alert = officer
        .next(|t, a| t.ends_with("/alerts") && a["declaration_id"] == "D-2")
        .await;
    assert_eq!(alert["kind"], "suspicious_verdict");

    officer.send(declaration("D-1", Some(&token))).await;
    let again = officer.verdict_for("D-1").await;
    assert_eq!(again["verdict"], "cleared");

    // Malformed, unreadable and oversized payloads; the daemon keeps serving.
    let mut broken = declaration("D-3", Some(&token));
    broken.truncate(broken.len() / 2);
    officer.send(b"\x00\x01 not a declaration".to_vec()).await;
    officer.send(broken).await;
    officer.send(vec![b'x'; 70_000]).await;
    officer
        .send(b"{\"declaration_id\": \"D-5\"}".to_vec())
        .await;
    let v = officer.verdict_for("D-5").await;
    assert_eq!(v["reasons"][0]["code"], "malformed");
    officer.send(declaration("D-6", None)).await;
    let v = officer.verdict_for("D-6").await;
    assert_eq!(v["reasons"][0]["code"], "license_missing");
    let unreadable = officer
        .next(|t, a| t.ends_with("/alerts") && a["kind"] == "unreadable_payload")
        .await;
    assert_eq!(unreadable["payload_sha256"].as_str().unwrap().len(), 64);

    // The retained status follows the ledger while the daemon runs.
    let decided = post.ledger_count() as u64;
    let status = status_where(post.broker.port, 15, |s| {
        s["ledger"]["verdicts"] == decided && s["ledger"]["consumed"] == 1
    })
    .await;
    assert!(status.is_some(), "status never showed {decided} verdicts");

    assert!(post.stop().success(), "{}", post.log());
    let ids: Vec<_> = post
        .ledger_verdicts()
        .iter()
        .map(|v| v["declaration_id"].clone())
        .collect();
    assert_eq!(
        ids.iter().filter(|i| *i == "D-1").count(),
        1,
        "redelivery wrote nothing: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_sent_while_stopped_are_decided_after_restart() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    assert!(post.stop().success(), "{}", post.log());

    let mut officer = Officer::connect(post.broker.port, "officer-2").await;
    let token = post.token();
    officer.send(declaration("OFF-1", Some(&token))).await;
    officer.send(declaration("OFF-2", None)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    post.start();
    assert_eq!(officer.verdict_for("OFF-1").await["verdict"], "cleared");
    assert_eq!(officer.verdict_for("OFF-2").await["verdict"], "rejected");
    assert!(post.stop().success());
    assert_eq!(post.ledger_verdicts().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_restarts() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    // persistence is off: the restarted broker has no session, so the daemon must subscribe again.
    post.broker.restart();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "officer-3").await;
    officer.expect_cleared(&post, "AFTER-1").await;
    assert!(post.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_gate_clears_its_published_verdicts_from_the_ledger() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "officer-q").await;
    officer.expect_cleared(&post, "QUIET-1").await;
    // The broker has the verdict; with no next declaration to carry its
    // deletion, it goes alone after a second (ACKED_IDLE).
    assert!(
        eventually(3, || post.queued_publications() == 0).await,
        "published verdict still queued after 3 s\n{}",
        post.log()
    );
    assert!(post.stop().success());
}

/// Declarations in the SIGTERM burst: tens of thousands, so that on the
/// restart mosquitto redelivers far more than the daemon's queues hold.
const BURST: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_nothing_acknowledged() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    let officer = Officer::connect(post.broker.port, "officer-4").await;
    for n in 0..BURST {
        officer.send(declaration(&format!("B-{n}"), None)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = post.stop();
    assert!(status.success(), "exit {status:?}\n{}", post.log());
    let decided = post.ledger_count();
    // What was not decided is still with the broker: a restart decides the rest, once each.
    post.start();
    wait_online(post.broker.port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while post.ledger_count() < BURST && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let queued_at_restart = post.queued_publications();
    // Every verdict and alert goes out, however many were queued (more than
    // one re-read of the queue holds).
    while post.queued_publications() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        post.queued_publications(),
        0,
        "{queued_at_restart} were queued once all were decided"
    );
    let st = post.stop();
    assert!(
        st.success(),
        "{st:?}\n{}",
        post.log()
            .lines()
            .filter(|l| !l.contains("decision") && !l.contains("alert"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let all = post.ledger_verdicts();
    let mut ids: Vec<_> = all
        .iter()
        .map(|v| v["declaration_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), all.len()),
        (BURST, BURST),
        "decided before SIGTERM: {decided}\n{}",
        std::fs::read_to_string(post.dir.path().join("mosquitto.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("New c") && !l.contains("New conn"))
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sending_past_its_window_is_held_back_without_reconnecting() {
    // Debian's mosquitto 2.0.11 sends far more than `max_inflight_messages`
    // unacknowledged once a client acknowledges in order; a burst larger
    // than the daemon's backlog then arrives all at once.
    //
    // Design: the burst waits in the daemon's session while it is stopped
    // and arrives all at once when it starts: a daemon fast enough to keep
    // up with a burst sent while it runs would never fill its backlog.
    let mut post = Post::new();
    post.start_with(&[("PERMITGATE_LOG", "info,permitgate::daemon=debug")]);
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "officer-flood").await;
    assert!(post.stop().success());
    for n in 0..BURST {
        officer.send(declaration(&format!("F-{n}"), None)).await;
    }
    post.start_with(&[("PERMITGATE_LOG", "info,permitgate::daemon=debug")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut answered = std::collections::HashSet::new();
    while answered.len() < BURST && std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), officer.rx.recv()).await {
            Ok(Some((topic, v))) if topic.ends_with("/verdicts") => {
                answered.insert(v["declaration_id"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    let log = post.log();
    let notes: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("decision") && !l.contains("alert"))
        .collect();
    assert_eq!(answered.len(), BURST, "{}", notes.join("\n"));
    assert_eq!(post.ledger_count(), BURST);
    assert!(
        log.contains("backlog full: not reading from the broker"),
        "the burst never filled the backlog, so this test proved nothing:\n{}",
        notes.join("\n")
    );
    assert!(!log.contains("connection lost"), "{}", notes.join("\n"));
    assert!(post.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_it_is_ready_and_pings_the_watchdog() {
    let mut post = Post::new();
    let sock_path = post.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    post.start_with(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !(got.iter().any(|m: &String| m.contains("READY=1"))
        && got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; got {got:?}\n{}", post.log()));
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got[0].contains("READY=1"), "READY comes first: {got:?}");
    assert!(post.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_serves_a_post_with_no_broker_of_its_own() {
    let mut post = Post::new();
    // Stop mosquitto; the daemon brings its own broker on another port.
    post.broker.child.kill().unwrap();
    let _ = post.broker.child.wait();
    let port = free_port();
    post.write_config(&format!("port = {port}\nembedded_broker = true\n"));
    post.start();
    wait_online(port).await;
    let mut officer = Officer::connect(port, "officer-emb").await;
    officer.expect_cleared(&post, "EMB-1").await;
    assert!(post.stop().success(), "{}", post.log());
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_with_a_client_certificate() {
    let mut post = Post::new();
    let dir = post.dir.path().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &dir,
        &[
            &["req", "-x509", "-new"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext) in [
        ("server", Some("server.ext")),
        ("client", Some("client.ext")),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        openssl(
            &dir,
            &[
                &["req", "-new"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
        ];
        if let Some(e) = ext {
            args.extend(["-extfile", e]);
        }
        openssl(&dir, &args);
    }
    // mosquitto started as root drops to its own user, which must read the server's files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls_port = free_port();
    let tls = format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
        dir.display()
    );
    post.broker = Broker::start_with(&dir, "", &tls);
    post.write_config(&format!(
        "port = {tls_port}\n\n[mqtt.tls]\nca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"\n"
    ));
    post.start();
    assert!(online(post.broker.port).await, "{}", post.log());
    let mut officer = Officer::connect(post.broker.port, "officer-tls").await;
    officer.expect_cleared(&post, "TLS-1").await;
    assert!(post.stop().success(), "{}", post.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_committed_but_unpublished_go_out_after_restart() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    assert!(post.stop().success());
    // As if the process died between the commit and the broker's PUBACK.
    let db = rusqlite::Connection::open(post.dir.path().join("state/ledger.db")).unwrap();
    let stranded =
        serde_json::json!({"declaration_id": "STRANDED-1", "verdict": "cleared", "reasons": []});
    db.execute(
        "INSERT INTO publish_queue(kind, payload) VALUES ('verdict', ?1)",
        [stranded.to_string()],
    )
    .unwrap();
    let mut officer = Officer::connect(post.broker.port, "officer-5").await;
    post.start();
    assert_eq!(
        officer.verdict_for("STRANDED-1").await["verdict"],
        "cleared"
    );
    // Once the broker acknowledged it, the queue is empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = db
            .query_row("SELECT COUNT(*) FROM publish_queue", [], |r| r.get(0))
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} publications still queued\n{}",
            post.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(post.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_once_while_waiting_to_reconnect() {
    let mut post = Post::new();
    // Nothing listens here: every attempt fails and the waits double
    // (0.5, 1, 2, 4 s, then about 8 s, from about 7.5 s on).
    post.write_config(&format!("port = {}\n", free_port()));
    post.start();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let asked = std::time::Instant::now();
    assert!(post.stop().success(), "{}", post.log());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?} to stop while waiting to reconnect\n{}",
        asked.elapsed(),
        post.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_with_username_and_password() {
    let mut post = Post::new();
    let dir = post.dir.path().to_owned();
    let st = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.join("passwd"))
        .args(["gate", "s3cret"])
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("passwd"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let auth_port = free_port();
    post.broker = Broker::start_with(
        &dir,
        "per_listener_settings true\n",
        &format!(
            "listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {}/passwd\n",
            dir.display()
        ),
    );
    let mqtt = |password: &str| {
        format!("port = {auth_port}\nusername = \"gate\"\npassword = \"{password}\"\n")
    };
    // A wrong password never comes online, and the daemon keeps retrying rather than exiting.
    post.write_config(&mqtt("wrong"));
    post.start();
    assert!(!online_within(post.broker.port, 2).await);
    assert!(
        post.daemon.as_mut().unwrap().try_wait().unwrap().is_none(),
        "{}",
        post.log()
    );
    assert!(post.stop().success());
    post.write_config(&mqtt("s3cret"));
    post.start();
    assert!(online(post.broker.port).await, "{}", post.log());
    let mut officer = Officer::connect(post.broker.port, "officer-auth").await;
    officer.expect_cleared(&post, "AUTH-1").await;
    assert!(post.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_newer_policy_file_and_keeps_the_old_one_when_the_file_is_bad() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "officer-hup").await;
    let hup = |post: &Post| {
        let pid = post.daemon.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let file = post.dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("version = 7", "version = 8")
            .replace("revoked_licenses = [", "revoked_licenses = [\"LIC-HUP\", "),
    )
    .unwrap();
    hup(&post);
    assert!(
        status_where(post.broker.port, 15, |s| s["policy_version"] == 8)
            .await
            .is_some()
    );
    officer
        .send(declaration("HUP-1", Some(&post.token_for("LIC-HUP"))))
        .await;
    let v = officer.verdict_for("HUP-1").await;
    assert_eq!(v["reasons"][0]["code"], "revoked", "{v}");

    // A broken file is refused; the daemon keeps running under version 8.
    std::fs::write(&file, "version = \"nine\"\n").unwrap();
    hup(&post);
    officer
        .send(declaration("HUP-2", Some(&post.token_for("LIC-HUP"))))
        .await;
    assert_eq!(
        officer.verdict_for("HUP-2").await["reasons"][0]["code"],
        "revoked"
    );
    assert!(
        post.log().contains("SIGHUP: the policy file is invalid"),
        "{}",
        post.log()
    );
    assert!(post.stop().success());
}

/// A client logged in as `user` (password `pw-USER`), collecting what it receives.
async fn logged_in(
    port: u16,
    user: &str,
    subscribe: &[&str],
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)>,
) {
    let mut opts = rumqttc::MqttOptions::new(format!("{user}-client"), "127.0.0.1", port);
    opts.set_credentials(user, format!("pw-{user}"))
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let _ = tx.send((p.topic.clone(), v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    for t in subscribe {
        client
            .subscribe(*t, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        ready_rx.recv().await;
    }
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_mosquitto_acl_lets_only_the_agent_publish_verdicts() {
    let mut post = Post::new();
    let dir = post.dir.path().to_owned();
    let passwd = dir.join("passwd");
    for (n, user) in ["permitgate-agent", "scanner", "officer"]
        .iter()
        .enumerate()
    {
        let mut cmd = Command::new("mosquitto_passwd");
        if n == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg("-b")
            .arg(&passwd)
            .arg(user)
            .arg(format!("pw-{user}"))
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_passwd (package mosquitto)");
        assert!(st.success());
    }
    let acl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware-config/mosquitto/permitgate.acl"
    );
    post.broker = Broker::start_with(
        &dir,
        "user root\nper_listener_settings false\n",
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {acl}\n",
            passwd.display()
        ),
    );
    let port = post.broker.port;
    post.write_config(&format!(
        "port = {port}\nusername = \"permitgate-agent\"\npassword = \"pw-permitgate-agent\"\n"
    ));
    post.start();
    let (officer, mut seen) = logged_in(port, "officer", &["permitgate/#"]).await;
    let (scanner, _) = logged_in(port, "scanner", &[]).await;
    // The agent is subscribed once its status says online.
    loop {
        let (t, v) = tokio::time::timeout(Duration::from_secs(15), seen.recv())
            .await
            .expect("the agent comes online")
            .unwrap();
        if t.ends_with("/status") && v["state"] == "online" {
            break;
        }
    }
    let verdicts = "permitgate/lyg-port-01/verdicts";

    // A scanner (or anyone else) forging a verdict: the broker drops it.
    let forged = serde_json::json!({"declaration_id": "ACL-0", "verdict": "cleared"});
    for client in [&scanner, &officer] {
        client
            .publish(
                verdicts,
                rumqttc::QoS::AtLeastOnce,
                false,
                forged.to_string(),
            )
            .await
            .unwrap();
    }
    // The scanner's declaration reaches the agent, whose verdict reaches the officer.
    scanner
        .publish(
            "permitgate/lyg-port-01/declarations",
            rumqttc::QoS::AtLeastOnce,
            false,
            declaration("ACL-1", Some(&post.token())),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some((t, v))) if t == verdicts => {
                let done = v["declaration_id"] == "ACL-1";
                got.push(v);
                if done {
                    break;
                }
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "no verdict for ACL-1: {got:?}\n{}\n{}",
                post.log(),
                std::fs::read_to_string(post.broker.conf.with_extension("log")).unwrap_or_default()
            ),
        }
    }
    assert_eq!(got.len(), 1, "only the agent's verdict arrives: {got:?}");
    assert_eq!(got[0]["verdict"], "cleared");
    // An officer cannot inject a declaration either.
    officer
        .publish(
            "permitgate/lyg-port-01/declarations",
            rumqttc::QoS::AtLeastOnce,
            false,
            declaration("ACL-2", Some(&post.token_for("LIC-ACL-2"))),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        post.ledger_strings("SELECT declaration_id FROM audit WHERE declaration_id = 'ACL-2'")
            .is_empty(),
        "the officer's declaration never reached the agent"
    );
}
