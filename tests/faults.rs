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
    assert!(
        alert["detail"].as_str().unwrap().contains("full"),
        "{alert}"
    );
    let degraded = status_where(post.broker.port, 15, |v| v["state"] == "degraded")
        .await
        .expect("the retained status says degraded");
    assert!(
        degraded["reason"].as_str().unwrap().contains("full"),
        "{degraded}"
    );
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
    assert!(post.log().contains("ledger: committing again"));
    assert_eq!(
        post.ledger_count(),
        ids.len() + 1,
        "each decided exactly once"
    );
    assert_eq!(
        post.ledger_strings("SELECT license_id FROM consumed").len(),
        ids.len() + 1
    );
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
    post.start();
    let status = exits_within(&mut post, 10)
        .expect("the daemon exits instead of running on a read-only ledger");
    assert!(!status.success());
    let log = post.log();
    eprintln!("{log}");
    assert!(
        log.contains("ledger.db") && log.contains("read-only"),
        "{log}"
    );
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

    // Twenty thousand consumptions, then one page in the middle of the file
    // overwritten: what start-up reads (schema, counts, newest rows) is intact.
    let path = post.dir.path().join("state/ledger.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        let tx = db.unchecked_transaction().unwrap();
        for i in 1..=20_000i64 {
            tx.execute(
                "INSERT INTO consumed(license_id, declaration_id, consumed_at, seq, audit_id, record) VALUES (?1, ?2, 1700000000, ?3, 0, x'00')",
                rusqlite::params![format!("LIC-{i:08}"), format!("D-{i:08}"), i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        db.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 4096 / 2 * 4096;
    bytes[middle..middle + 4096].fill(0xa5);
    std::fs::write(&path, bytes).unwrap();

    post.start();
    let status = exits_within(&mut post, 30).expect("the daemon stops on a damaged ledger");
    assert!(!status.success());
    let log = post.log();
    assert!(
        log.contains("damaged; stopping") && log.contains("integrity check failed"),
        "{log}"
    );
    let marker = post.dir.path().join("state/ledger.db.damaged");
    assert!(marker.exists());

    // From then on it is refused at once, naming the marker.
    post.start();
    let status = exits_within(&mut post, 10).expect("refused at start");
    assert!(!status.success());
    let log = post.log();
    assert!(
        log.contains("restore it from a backup") && log.contains("ledger.db.damaged"),
        "{log}"
    );
}
