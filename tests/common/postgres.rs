//! A private PostgreSQL cluster per test: `initdb` and `pg_ctl` (Debian's
//! `postgresql` package) as the unprivileged `postgres` user, in a
//! temporary directory, on a free port; a synchronous hot standby on
//! request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// Debian's PostgreSQL binaries (the newest installed major version).
fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql; .ci/run does it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions.last().unwrap().join("bin").join(name)
}

/// Runs a PostgreSQL program as the `postgres` user (PostgreSQL refuses root).
fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin(program));
    c
}

/// One PostgreSQL server.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Postgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        let st = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        dir
    }

    /// A fresh primary with database `permitgate`, trusting local connections.
    pub fn primary() -> Postgres {
        let dir = Postgres::private_dir();
        let data = dir.path().join("data");
        let st = as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb failed");
        std::fs::write(
            data.join("postgresql.auto.conf"),
            "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = on\nsynchronous_commit = on\n",
        )
        .unwrap();
        let mut pg = Postgres {
            dir,
            port: free_port(),
            child: None,
        };
        pg.start();
        let st = Command::new(bin("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(pg.port.to_string())
            .args(["-qc", "CREATE DATABASE permitgate"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        pg
    }

    /// A hot standby streaming from `primary`, which waits for it on every
    /// commit (synchronous replication).
    pub fn standby_of(primary: &Postgres) -> Postgres {
        let dir = Postgres::private_dir();
        let data = dir.path().join("data");
        let st = as_postgres("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint, not a spread one (a minute and more).
                "-c",
                "fast",
                "-p",
            ])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(&data)
            .status()
            .unwrap();
        assert!(st.success(), "pg_basebackup failed");
        let mut auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
        auto = auto.replace(
            "primary_conninfo = '",
            "primary_conninfo = 'application_name=standby ",
        );
        std::fs::write(data.join("postgresql.auto.conf"), auto).unwrap();
        let mut standby = Postgres {
            dir,
            port: free_port(),
            child: None,
        };
        standby.start();
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'");
        primary.sql("SELECT pg_reload_conf()");
        standby
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..300 {
            let ok = Command::new(bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start:\n{}", self.log());
    }

    /// Runs SQL as `postgres` on database `db`; returns psql's output.
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let o = Command::new(bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                db,
                "-tAc",
                sql,
                "-p",
            ])
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Runs SQL on the default database.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// The connection string of database `permitgate` here.
    pub fn uri(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/permitgate", self.port)
    }

    /// SIGKILL to every process of the server (the machine dies): it
    /// goes with whatever it had in hand.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().map(str::to_owned));
            if let Some(pid) = pid {
                // Its backends first, so none outlives it holding a connection.
                let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Promotes a standby to primary.
    pub fn promote(&self) {
        let st = as_postgres("pg_ctl")
            .args(["promote", "-w", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "promotion failed:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = as_postgres("pg_ctl")
                .args(["stop", "-m", "immediate", "-D"])
                .arg(self.data())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.kill();
        }
    }
}

/// One number from SQL run with psql against `uri` (0 when it fails: the
/// tables may not exist yet, or the server may be failing over).
pub fn query(uri: &str, sql: &str) -> i64 {
    query_text(uri, sql).parse().unwrap_or(0)
}

/// Text from SQL run with psql against `uri` (empty when it fails).
pub fn query_text(uri: &str, sql: &str) -> String {
    Command::new(bin("psql"))
        .args([uri, "-tAc", sql])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
