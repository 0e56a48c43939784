//! Resource faults on the ledger's disk, made real with a small tmpfs
//! mounted under the checkpoint's state directory (the tests run as root,
//! as CI does): a full disk holds declarations unacknowledged, alerts, and
//! resumes by itself when space returns; a read-only ledger stops start-up.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "these tests mount a tmpfs for the ledger, which needs root (CI runs as root)"
        );
        Tmpfs(at.to_owned())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The `ledger_fault` alert and the retained status both say the disk is full.
async fn reported_full(port: u16, alert: &serde_json::Value) {
    assert!(
        alert["detail"].as_str().unwrap().contains("full"),
        "{alert}"
    );
    let degraded = status_where(port, 15, |v| v["state"] == "degraded")
        .await
        .expect("the retained status says degraded");
    assert!(
        degraded["reason"].as_str().unwrap().contains("full"),
        "{degraded}"
    );
}

/// How many `decision` events the daemon logged for declaration `id`.
fn decision_events(log: &str, id: &str) -> usize {
    let id = format!("declaration_id=\"{id}\"");
    log.lines()
        .filter(|l| l.contains(": decision ") && l.contains(&id))
        .count()
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // The last partial chunk may have gone through: small writes too.
    while f.write_all(&chunk[..512]).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_declarations_alerts_and_resumes_when_space_returns() {
    let mut post = Post::new();
    let state = post.dir.path().join("state");
    let _disk = Tmpfs::mount(&state, "3m");
    post.start();
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "faults-officer").await;
    officer.expect_cleared(&post, "DF-before").await;

    let filler = fill(&state);
    // Enough declarations that the WAL must grow past what it has.
    let ids: Vec<String> = (0..60).map(|i| format!("DF-{i}")).collect();
    for id in &ids {
        officer
            .send(declaration(id, Some(&post.token_for(&format!("LIC-{id}")))))
            .await;
    }
    let alert = officer
        .next(|t, v| t.ends_with("/alerts") && v["kind"] == "ledger_fault")
        .await;
    assert_eq!(alert["checkpoint"], "lyg-port-01");
    reported_full(post.broker.port, &alert).await;
    assert!(
        post.log().contains("ledger: cannot commit"),
        "{}",
        post.log()
    );

    // While full, nothing more is decided: what is held stays unacknowledged.
    let held_at = post.ledger_count();
    eprintln!("held with {held_at} verdicts in the ledger");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(post.ledger_count(), held_at, "nothing commits while full");
    assert!(held_at < ids.len() + 1, "some declarations are held");

    // Space returns: the daemon resumes by itself and decides every one, once.
    std::fs::remove_file(filler).unwrap();
    for id in &ids {
        let v = officer.verdict_for(id).await;
        assert_eq!(v["verdict"], "cleared", "{v}");
    }
    assert!(
        status_where(post.broker.port, 15, |v| v["state"] == "online")
            .await
            .is_some(),
        "the status is back to online"
    );
    let log = post.log();
    assert!(log.contains("ledger: committing again"));
    assert_eq!(
        post.ledger_count(),
        ids.len() + 1,
        "each decided exactly once"
    );
    // The batch held was tried several times; its declarations are logged
    // once each, when they commit.
    for id in &ids {
        assert_eq!(decision_events(&log, id), 1, "{id}:\n{log}");
    }
    assert_eq!(
        post.ledger_strings("SELECT license_id FROM consumed").len(),
        ids.len() + 1
    );
    assert!(post.stop().success(), "{}", post.log());
    post.assert_ledger_checks_clean();
}

/// `/healthz`, polled until its answer satisfies `want` or `secs` pass; the last answer.
async fn health_until(
    base: &str,
    secs: u64,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let url = format!("{base}/healthz");
        let h = tokio::task::spawn_blocking(move || {
            let body = match ureq::get(&url).timeout(Duration::from_secs(2)).call() {
                Ok(r) => r.into_string().unwrap_or_default(),
                // 503 is an answer here: failing.
                Err(ureq::Error::Status(_, r)) => r.into_string().unwrap_or_default(),
                Err(_) => String::new(),
            };
            serde_json::from_str(&body).unwrap_or_default()
        })
        .await
        .unwrap();
        if want(&h) || std::time::Instant::now() >= deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A clean stop publishes an `offline` status of its own moment (the last
/// will carries the connection's start). After a restart the disk fills:
/// the status says `degraded` as soon as `/healthz` says `failing`, and
/// `online` again as soon as it says `ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_status_follows_health_through_a_full_disk_at_once() {
    let mut post = Post::new();
    let base = post.enable_http();
    let state = post.dir.path().join("state");
    let _disk = Tmpfs::mount(&state, "3m");
    post.start();
    let port = post.broker.port;
    let online = status_where(port, 15, |v| v["state"] == "online")
        .await
        .expect("the daemon comes online");
    let mut officer = Officer::connect(port, "faults-restart").await;
    officer.expect_cleared(&post, "DR-before").await;
    // A second later, so the stop's time differs from the connection's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(post.stop().success(), "{}", post.log());
    let offline = status_where(port, 5, |v| v["state"] == "offline")
        .await
        .expect("the retained status says offline after a clean stop");
    // The last will would say 0: it was rendered before the first decision.
    assert_eq!(offline["ledger"]["verdicts"], 1, "{offline}");
    assert_eq!(offline["ledger"]["consumed"], 1, "{offline}");
    assert!(
        offline["at"].as_str() > online["at"].as_str(),
        "offline {offline} is not later than online {online}"
    );

    // Soon after the restart, with a verdict just counted: the status's
    // periodic refresh has just gone out, and the next is 5 s away.
    post.start();
    wait_online(port).await;
    officer
        .send(declaration(
            "DR-after",
            Some(&post.token_for("LIC-DR-after")),
        ))
        .await;
    assert_eq!(officer.verdict_for("DR-after").await["verdict"], "cleared");
    let filler = fill(&state);
    // Enough declarations that the WAL must grow past what it has.
    let ids: Vec<String> = (0..60).map(|i| format!("DR-{i}")).collect();
    for id in &ids {
        officer
            .send(declaration(id, Some(&post.token_for(&format!("LIC-{id}")))))
            .await;
    }
    let health = health_until(&base, 30, |h| {
        h["reasons"].to_string().contains("ledger cannot commit")
    })
    .await;
    assert_eq!(health["state"], "failing", "{health}\n{}", post.log());
    let status = status_where(port, 1, |v| v["state"] != "online")
        .await
        .expect("the status still says online a second after /healthz said failing");
    assert_eq!(status["state"], "degraded", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("full"),
        "{status}"
    );

    // Space returns: both say so.
    std::fs::remove_file(filler).unwrap();
    let health = health_until(&base, 15, |h| h["state"] == "ready").await;
    assert_eq!(health["state"], "ready", "{health}");
    assert!(
        status_where(port, 1, |v| v["state"] == "online")
            .await
            .is_some(),
        "the status is not back to online a second after /healthz said ready"
    );
    for id in &ids {
        assert_eq!(officer.verdict_for(id).await["verdict"], "cleared");
    }
    assert!(post.stop().success(), "{}", post.log());
}

/// The disk fills while a flood has reads paused (the backlog is full):
/// the fault reaches the officers within seconds, the connection is kept,
/// and once space returns every declaration is decided exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_a_flood_is_reported_and_nothing_is_lost() {
    const FLOOD: usize = 20_000;
    let mut post = Post::new();
    let state = post.dir.path().join("state");
    let _disk = Tmpfs::mount(&state, "256m");
    post.start_with(&[("PERMITGATE_LOG", "warn,permitgate::daemon=debug")]);
    wait_online(post.broker.port).await;
    let mut officer = Officer::connect(post.broker.port, "faults-flood").await;
    for n in 0..FLOOD {
        officer.send(declaration(&format!("FF-{n}"), None)).await;
    }
    // Design: a daemon fast enough may commit the whole flood into WAL space
    // it had before any commit fails; more follow, a thousand at a time,
    // until one does (at most 3× the flood).
    let mut sent = FLOOD;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut answered = std::collections::HashSet::new();
    // When the disk was filled, and the filler while it is there.
    let mut filled: Option<(std::time::Instant, Option<PathBuf>)> = None;
    let mut fault_alert = None;
    // When the daemon first logged that it cannot commit (the WAL may
    // first reuse space it has, so this can come well after the fill).
    let mut fault_at: Option<std::time::Instant> = None;
    let mut log_checked = std::time::Instant::now();
    while answered.len() < sent && std::time::Instant::now() < deadline {
        if filled.is_some()
            && fault_at.is_none()
            && answered.len() + 1_000 >= sent
            && sent < 3 * FLOOD
        {
            for n in sent..sent + 1_000 {
                officer.send(declaration(&format!("FF-{n}"), None)).await;
            }
            sent += 1_000;
        }
        if filled.is_some()
            && fault_at.is_none()
            && log_checked.elapsed() > Duration::from_millis(100)
        {
            log_checked = std::time::Instant::now();
            if post.log().contains("ledger: cannot commit") {
                fault_at = Some(std::time::Instant::now());
            }
        }
        if filled.is_none() && log_checked.elapsed() > Duration::from_millis(100) {
            log_checked = std::time::Instant::now();
            // Best mid-flood, with reads paused; a machine fast enough never
            // to pause still gets its disk filled halfway through.
            if post
                .log()
                .contains("backlog full: not reading from the broker")
                || answered.len() > FLOOD / 4
            {
                filled = Some((std::time::Instant::now(), Some(fill(&state))));
            }
        }
        match tokio::time::timeout(Duration::from_millis(200), officer.rx.recv()).await {
            Ok(Some((topic, v))) if topic.ends_with("/verdicts") => {
                answered.insert(v["declaration_id"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Some((topic, v))) if topic.ends_with("/alerts") && v["kind"] == "ledger_fault" => {
                reported_full(post.broker.port, &v).await;
                let held = post.ledger_count();
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(post.ledger_count(), held, "nothing commits while full");
                fault_alert = Some(v);
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
        // Space returns once the fault was reported.
        if fault_alert.is_some()
            && let Some((_, filler)) = &mut filled
            && let Some(f) = filler.take()
        {
            std::fs::remove_file(f).unwrap();
        }
        if let Some((at, _)) = &filled {
            assert!(
                fault_at.is_some()
                    || answered.len() == sent
                    || at.elapsed() < Duration::from_secs(120),
                "no commit failed in the 120 s after the disk filled"
            );
        }
        if let Some(at) = fault_at {
            if fault_alert.is_none() && at.elapsed() >= Duration::from_secs(20) {
                let log = post.log();
                let notes: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("decision") && !l.contains("alert"))
                    .collect();
                panic!(
                    "no ledger_fault alert 20 s after the daemon could not commit:\n{}",
                    notes.join("\n")
                );
            }
        }
    }
    let log = post.log();
    let notes: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("decision") && !l.contains("alert"))
        .collect();
    assert!(filled.is_some(), "the disk was never filled");
    assert!(fault_alert.is_some(), "{}", notes.join("\n"));
    assert_eq!(answered.len(), sent, "{}", notes.join("\n"));
    assert_eq!(post.ledger_count(), sent, "each decided exactly once");
    assert!(
        log.contains("ledger: committing again"),
        "{}",
        notes.join("\n")
    );
    assert!(!log.contains("connection lost"), "{}", notes.join("\n"));
    assert!(post.stop().success(), "{}", post.log());
    post.assert_ledger_checks_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_ledger_stops_start_up_with_a_clear_error() {
    let mut post = Post::new();
    let state = post.dir.path().join("state");
    let disk = Tmpfs::mount(&state, "8m");
    post.start();
    wait_online(post.broker.port).await;
    assert!(post.stop().success(), "{}", post.log());

    disk.remount("ro");
    // The daemon exits instead of running on a read-only ledger.
    starts_and_fails(&mut post, 10, &["ledger.db", "read-only"]);
}

#[test]
fn a_checkpoint_key_others_may_read_stops_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let mut post = Post::new();
    let state = post.dir.path().join("state");
    permitgate::keys::write_keypair(&state, "checkpoint", &permitgate::keys::generate()).unwrap();
    let key = state.join("checkpoint.key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    post.start();
    let mut daemon = post.daemon.take().unwrap();
    let status = daemon.wait().unwrap();
    assert!(!status.success());
    let log = post.log();
    assert!(
        log.contains("checkpoint.key.pem") && log.contains("readable by others"),
        "{log}"
    );
}

/// Starts the daemon and checks it exits unsuccessfully within `secs`,
/// with a log that says every one of `says`.
fn starts_and_fails(post: &mut Post, secs: u64, says: &[&str]) {
    post.start();
    let status = exits_within(post, secs)
        .unwrap_or_else(|| panic!("still running after {secs} s:\n{}", post.log()));
    assert!(!status.success());
    let log = post.log();
    assert!(says.iter().all(|s| log.contains(s)), "{log}");
}

/// Waits up to `secs` for the daemon to exit on its own; its status.
fn exits_within(post: &mut Post, secs: u64) -> Option<std::process::ExitStatus> {
    let mut daemon = post.daemon.take().unwrap();
    for _ in 0..secs * 10 {
        if let Some(st) = daemon.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_damaged_where_start_up_does_not_read_stops_the_daemon_and_stays_refused() {
    let mut post = Post::new();
    post.start();
    wait_online(post.broker.port).await;
    assert!(post.stop().success(), "{}", post.log());

    // What start-up reads is intact; a page in the middle is not.
    damage_a_ledger(&post.dir.path().join("state/ledger.db"));

    starts_and_fails(
        &mut post,
        30,
        &["damaged; stopping", "integrity check failed"],
    );
    let marker = post.dir.path().join("state/ledger.db.damaged");
    assert!(marker.exists());

    // From then on it is refused at once, naming the marker.
    starts_and_fails(
        &mut post,
        10,
        &["restore it from a backup", "ledger.db.damaged"],
    );
}

#[test]
fn a_damaged_ledger_found_by_the_check_after_start_is_marked_and_refused_from_then_on() {
    use permitgate::ledger::Ledger;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    drop(Ledger::open(&path, "p1").unwrap());
    damage_a_ledger(&path);
    let ledger = Ledger::open_checking_later(&path, "p1").unwrap();
    assert_eq!(
        ledger.counts().unwrap(),
        permitgate::ledger::LedgerCounts {
            verdicts: 0,
            consumed: 20_000,
            outbox: 0
        }
    );
    let e = ledger.integrity_check().unwrap_err().to_string();
    assert!(
        e.contains("integrity check failed") && e.contains("l.db"),
        "{e}"
    );
    drop(ledger);
    assert!(dir.path().join("l.db.damaged").exists());
    for e in [
        Ledger::open_checking_later(&path, "p1").err().unwrap(),
        Ledger::open(&path, "p1").err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("restore it from a backup") && e.contains("l.db.damaged"),
            "{e}"
        );
    }
    // A read-only look (export, show) still checks the file and says what is wrong.
    let e = Ledger::open_read_only(&path).err().unwrap().to_string();
    assert!(e.contains("integrity check failed"), "{e}");
}
