//! Test helpers: a real Eclipse Mosquitto per test, checkpoints running the
//! real binary, and an officer client; each on its own port and directory.
#![allow(dead_code)]

pub mod browser;
pub mod country;
pub mod forge;
pub mod postgres;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub conf: PathBuf,
}

impl Broker {
    pub fn start(dir: &std::path::Path) -> Broker {
        Broker::start_with(dir, "", "")
    }

    /// A broker with a plain listener on `port`; `head` goes before it, `extra` after.
    pub fn start_with(dir: &std::path::Path, head: &str, extra: &str) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("{head}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 100000\nmax_inflight_messages 1000\n{extra}"),
        )
        .unwrap();
        let mut b = Broker {
            child: spawn_broker(&conf),
            port,
            conf,
        };
        b.wait_ready();
        b
    }

    pub fn wait_ready(&mut self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mosquitto did not start on port {}:\n{}",
            self.port,
            std::fs::read_to_string(self.conf.with_extension("log")).unwrap_or_default()
        );
    }

    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(500));
        self.child = spawn_broker(&self.conf);
        self.wait_ready();
    }
}

impl Broker {
    /// SIGTERM, as `systemctl restart mosquitto` does: a broker with
    /// persistence saves its sessions and queued messages first.
    pub fn restart_gracefully(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.child = spawn_broker(&self.conf);
        self.wait_ready();
    }
}

pub fn spawn_broker(conf: &std::path::Path) -> Child {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mosquitto is installed (apt-get install mosquitto; .ci/run does it)");
    Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(conf.with_extension("log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Post {
    pub checkpoint: String,
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub daemon: Option<Child>,
    pub issuer: ed25519_dalek::SigningKey,
}

impl Post {
    pub fn new() -> Post {
        Post::with("lyg-port-01", permitgate::keys::generate())
    }

    /// A post for `checkpoint` whose policy trusts `issuer`, with its own broker.
    pub fn with(checkpoint: &str, issuer: ed25519_dalek::SigningKey) -> Post {
        let dir = tempfile::tempdir().unwrap();
        permitgate::keys::write_keypair(dir.path(), "issuer", &issuer).unwrap();
        std::fs::write(
            dir.path().join("policy.toml"),
            include_str!("../data/policy.toml"),
        )
        .unwrap();
        let broker = Broker::start(dir.path());
        let post = Post {
            checkpoint: checkpoint.to_owned(),
            dir,
            broker,
            daemon: None,
            issuer,
        };
        post.write_config(&format!("port = {}\n", post.broker.port));
        post
    }

    /// Writes the daemon's config with `mqtt` as the body of its `[mqtt]` table (sub-tables may follow).
    pub fn write_config(&self, mqtt: &str) {
        std::fs::write(
            self.dir.path().join("permitgate.toml"),
            format!(
                "checkpoint = \"{}\"\nledger = \"state/ledger.db\"\npolicy = \"policy.toml\"\ncheckpoint_key = \"state/checkpoint.key.pem\"\nmax_declaration_bytes = 65536\n\n[mqtt]\n{mqtt}",
                self.checkpoint
            ),
        )
        .unwrap();
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Turns on the HTTP listener on a free loopback port, returning the base URL.
    pub fn enable_http(&self) -> String {
        let port = free_port();
        let cfg = self.dir.path().join("permitgate.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(cfg, text).unwrap();
        format!("http://127.0.0.1:{port}")
    }

    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        let child = Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(self.dir.path().join("permitgate.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
    }

    /// SIGKILL: the daemon gets no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs SQL on the ledger and returns the rows' first columns as text.
    pub fn ledger_strings(&self, sql: &str) -> Vec<String> {
        let db = rusqlite::Connection::open(self.dir.path().join("state/ledger.db")).unwrap();
        let mut st = db.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        for _ in 0..200 {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!(
            "daemon did not stop within 10 s after SIGTERM:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// `permitgate ledger check` passes: the file is sound and the audit chain intact.
    pub fn assert_ledger_checks_clean(&self) {
        let check = Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["ledger", "--config"])
            .arg(self.dir.path().join("permitgate.toml"))
            .arg("check")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    pub fn token(&self) -> String {
        self.token_for("LIC-2025-000123")
    }

    /// A fresh valid token for license `license_id`.
    pub fn token_for(&self, license_id: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut lic =
            permitgate::token::License::from_claims_json(include_str!("../data/claims.json"))
                .unwrap();
        lic.issued_at = now - 3600;
        lic.not_before = None;
        lic.expires = now + 86_400 * 30;
        lic.license_id = license_id.to_owned();
        permitgate::token::text::encode(&permitgate::token::issue(
            &lic,
            "mofcom-2025-1",
            &self.issuer,
        ))
    }

    pub fn ledger_count(&self) -> usize {
        let db = rusqlite::Connection::open(self.dir.path().join("state/ledger.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    }

    /// Verdicts and alerts committed but not yet acknowledged by the broker.
    pub fn queued_publications(&self) -> usize {
        let db = rusqlite::Connection::open(self.dir.path().join("state/ledger.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM publish_queue", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as usize
    }

    pub fn ledger_verdicts(&self) -> Vec<serde_json::Value> {
        let db = rusqlite::Connection::open(self.dir.path().join("state/ledger.db")).unwrap();
        let mut st = db
            .prepare("SELECT verdict_json FROM audit ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Post {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn declaration(id: &str, token: Option<&str>) -> Vec<u8> {
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("../data/declaration.json")).unwrap();
    d["declaration_id"] = id.into();
    if let Some(t) = token {
        d["license"] = t.into();
    }
    d.to_string().into_bytes()
}

/// A test client: publishes declarations, collects (topic, JSON) from verdicts and alerts.
pub struct Officer {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    /// Messages received but not yet asked for.
    pub seen: Vec<(String, serde_json::Value)>,
    pub checkpoint: String,
}

impl Officer {
    pub async fn connect(port: u16, name: &str) -> Officer {
        Officer::connect_to(port, name, "lyg-port-01").await
    }

    /// An officer at `checkpoint`'s broker on `port`.
    pub async fn connect_to(port: u16, name: &str, checkpoint: &str) -> Officer {
        let mut opts = MqttOptions::new(name, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(opts, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let resubscribe = client.clone();
        let topics = [
            format!("permitgate/{checkpoint}/verdicts"),
            format!("permitgate/{checkpoint}/alerts"),
        ];
        let mut connections = 0;
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    // A clean session loses its subscriptions with the connection.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connections += 1;
                        if connections > 1 {
                            for t in &topics {
                                let _ = resubscribe.try_subscribe(t, QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        let _ = tx.send((p.topic.clone(), v));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(
                format!("permitgate/{checkpoint}/verdicts"),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
        client
            .subscribe(format!("permitgate/{checkpoint}/alerts"), QoS::AtLeastOnce)
            .await
            .unwrap();
        ready_rx.recv().await;
        ready_rx.recv().await;
        Officer {
            client,
            rx,
            seen: Vec::new(),
            checkpoint: checkpoint.to_owned(),
        }
    }

    pub async fn send(&self, payload: Vec<u8>) {
        self.client
            .publish(
                format!("permitgate/{}/declarations", self.checkpoint),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// Sends a declaration carrying a fresh valid license and expects `cleared`.
    pub async fn expect_cleared(&mut self, post: &Post, id: &str) {
        self.send(declaration(id, Some(&post.token()))).await;
        let v = self.verdict_for(id).await;
        assert_eq!(v["verdict"], "cleared", "{v}\n{}", post.log());
    }

    /// The next verdict for `id` (alerts are skipped), within 15 s.
    pub async fn verdict_for(&mut self, id: &str) -> serde_json::Value {
        eprintln!("waiting for the verdict on {id}");
        self.next(|t, v| t.ends_with("/verdicts") && v["declaration_id"] == id)
            .await
    }

    pub async fn next(
        &mut self,
        want: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(i) = self.seen.iter().position(|(t, v)| want(t, v)) {
            return self.seen.remove(i).1;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((t, v))) if want(&t, &v) => return v,
                Ok(Some(m)) => self.seen.push(m),
                _ => panic!("no matching message within 15 s"),
            }
        }
    }
}

/// Waits until the daemon's persistent session exists (its first status publication).
pub async fn wait_online(port: u16) {
    assert!(online(port).await, "daemon did not come online");
}

/// True once the daemon publishes its online status, false after 15 s.
pub async fn online(port: u16) -> bool {
    online_within(port, 15).await
}

/// True once the daemon publishes its online status, false after `secs`.
pub async fn online_within(port: u16, secs: u64) -> bool {
    status_where(port, secs, |v| v["state"] == "online")
        .await
        .is_some()
}

/// The first retained or live status that satisfies `want` within `secs`.
pub async fn status_where(
    port: u16,
    secs: u64,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let mut opts = MqttOptions::new(format!("probe-{port}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 10);
    client
        .subscribe("permitgate/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                if want(&v) {
                    return Some(v);
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

impl Post {
    /// Installs the checkpoint's signing key before the first start, so a hub can list it.
    pub fn checkpoint_key(&self) -> ed25519_dalek::VerifyingKey {
        let key = permitgate::keys::generate();
        permitgate::keys::write_keypair(&self.dir.path().join("state"), "checkpoint", &key)
            .unwrap();
        key.verifying_key()
    }

    /// Turns sync on: the uplink is the broker on `uplink_port`; fast timings for tests.
    pub fn enable_sync(&self, uplink_port: u16) {
        self.enable_sync_with(uplink_port, "");
    }

    /// Turns sync on with `extra` lines in the `[sync]` table; the uplink
    /// logs in as the checkpoint (password `pw-CHECKPOINT`).
    pub fn enable_sync_with(&self, uplink_port: u16, extra: &str) {
        self.write_config(&format!(
            "port = {}\nreconnect_max_secs = 1\n\n[uplink]\nport = {uplink_port}\nreconnect_max_secs = 1\nusername = \"{cp}\"\npassword = \"pw-{cp}\"\n\n[sync]\ninterval_ms = 300\nresend_after_secs = 3\n{extra}",
            self.broker.port,
            cp = self.checkpoint,
        ));
    }

    fn query(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("state/ledger.db")).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Own records the hub has not acknowledged.
    pub fn outbox(&self) -> usize {
        self.query("SELECT COUNT(*) FROM outbox") as usize
    }

    /// Consumption records learned from other checkpoints.
    pub fn remote_consumptions(&self) -> usize {
        self.query("SELECT COUNT(*) FROM remote_consumptions") as usize
    }

    /// Stored alerts of one kind.
    pub fn alerts_of(&self, kind: &str) -> usize {
        self.query(&format!(
            "SELECT COUNT(*) FROM alerts WHERE kind = '{kind}'"
        )) as usize
    }

    /// The ledger file and its WAL companions.
    pub fn ledger_files(&self) -> Vec<PathBuf> {
        ["ledger.db", "ledger.db-wal", "ledger.db-shm"]
            .iter()
            .map(|f| self.dir.path().join("state").join(f))
            .collect()
    }
}

/// The registry entries of a policy (inline PEM keys): checkpoints and hub keys.
pub fn registry_toml(
    checkpoints: &[(&str, ed25519_dalek::VerifyingKey)],
    hubs: &[(&str, ed25519_dalek::VerifyingKey)],
) -> String {
    let mut t = String::new();
    for (table, entries) in [("checkpoints", checkpoints), ("hubs", hubs)] {
        for (id, key) in entries {
            t.push_str(&format!(
                "\n[[{table}]]\nid = \"{id}\"\npublic_key = \"\"\"\n{}\"\"\"\n",
                permitgate::keys::public_pem(key)
            ));
        }
    }
    t
}

/// Creates mosquitto users in `dir/passwd`, each with password `pw-USER`.
pub fn passwords(dir: &std::path::Path, users: &[&str]) -> PathBuf {
    let passwd = dir.join("passwd");
    for (n, user) in users.iter().enumerate() {
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
    passwd
}

/// The user of the national broker that plays the attacker: a misconfigured
/// bridge allowed to publish anything under `permitgate/`.
pub const BRIDGE: &str = "bridge";

impl Broker {
    /// The national broker with the shipped ACL (`firmware-config/mosquitto/national.acl`),
    /// users `permitgate-hub`, `permitgate-authority`, `investigator`, each of
    /// `checkpoints`, and [`BRIDGE`].
    pub fn national(dir: &std::path::Path, checkpoints: &[&str]) -> Broker {
        let mut users = vec![
            "permitgate-hub",
            "permitgate-authority",
            "investigator",
            BRIDGE,
        ];
        users.extend_from_slice(checkpoints);
        let passwd = passwords(dir, &users);
        let shipped = include_str!("../../firmware-config/mosquitto/national.acl");
        let acl = dir.join("national.acl");
        std::fs::write(
            &acl,
            format!("{shipped}\n# Tests only: the attacker.\nuser {BRIDGE}\ntopic readwrite permitgate/#\n"),
        )
        .unwrap();
        Broker::start_with(
            dir,
            "per_listener_settings false\n",
            &format!(
                "allow_anonymous false\npassword_file {}\nacl_file {}\n",
                passwd.display(),
                acl.display()
            ),
        )
    }
}

impl Post {
    /// Appends `text` (registry entries, say) to the post's policy file.
    pub fn add_to_policy(&self, text: &str) {
        let p = self.dir.path().join("policy.toml");
        let mut policy = std::fs::read_to_string(&p).unwrap();
        policy.push_str(text);
        std::fs::write(p, policy).unwrap();
    }
}

/// A `permitgate hub` process on the broker at `port`.
pub struct Hub {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// The hub's signing key.
    pub key: ed25519_dalek::SigningKey,
    /// The registry in its policy, for the posts' policies.
    pub registry: String,
    /// The PostgreSQL connection string, when the store is not the SQLite file `hub.db`.
    pub pg: Option<String>,
}

/// The kid the test hubs sign with.
pub const HUB_KID: &str = "hub-1";

impl Hub {
    /// A hub whose policy lists `checkpoints` (id, public key) and its own key.
    pub fn new(port: u16, checkpoints: &[(&str, ed25519_dalek::VerifyingKey)]) -> Hub {
        Hub::with_store(port, checkpoints, None)
    }

    /// The same, storing in PostgreSQL at `pg` (a connection string) when given.
    pub fn with_store(
        port: u16,
        checkpoints: &[(&str, ed25519_dalek::VerifyingKey)],
        pg: Option<String>,
    ) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let key = permitgate::keys::generate();
        permitgate::keys::write_keypair(dir.path(), "hub", &key).unwrap();
        permitgate::keys::write_keypair(dir.path(), "issuer", &permitgate::keys::generate())
            .unwrap();
        let registry = registry_toml(checkpoints, &[(HUB_KID, key.verifying_key())]);
        std::fs::write(
            dir.path().join("policy.toml"),
            format!("{}{registry}", include_str!("../data/policy.toml")),
        )
        .unwrap();
        let store = pg.clone().unwrap_or_else(|| "hub.db".into());
        std::fs::write(
            dir.path().join("hub.toml"),
            format!("store = \"{store}\"\npolicy = \"policy.toml\"\nhub_key = \"hub.key.pem\"\nhub_kid = \"{HUB_KID}\"\n\n[mqtt]\nport = {port}\nreconnect_max_secs = 1\nusername = \"permitgate-hub\"\npassword = \"pw-permitgate-hub\"\n"),
        )
        .unwrap();
        Hub {
            dir,
            child: None,
            key,
            registry,
            pg,
        }
    }

    /// A second hub process sharing `other`'s store, policy and key, under its own client id.
    pub fn sharing(other: &Hub, client_id: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let conf = std::fs::read_to_string(other.dir.path().join("hub.toml")).unwrap();
        let o = other.dir.path();
        let conf = conf
            .replace(
                "store = \"hub.db\"",
                &format!("store = \"{}\"", o.join("hub.db").display()),
            )
            .replace(
                "policy = \"policy.toml\"",
                &format!("policy = \"{}\"", o.join("policy.toml").display()),
            )
            .replace(
                "hub_key = \"hub.key.pem\"",
                &format!("hub_key = \"{}\"", o.join("hub.key.pem").display()),
            )
            .replace(
                "policy_root_key = \"root.pub.pem\"",
                &format!("policy_root_key = \"{}\"", o.join("root.pub.pem").display()),
            )
            .replace(
                "[mqtt]\n",
                &format!("[mqtt]\nclient_id = \"{client_id}\"\n"),
            );
        std::fs::write(dir.path().join("hub.toml"), conf).unwrap();
        Hub {
            dir,
            child: None,
            key: other.key.clone(),
            registry: other.registry.clone(),
            pg: other.pg.clone(),
        }
    }

    /// Turns on the hub's HTTP listener on a free loopback port; returns its base URL.
    pub fn enable_http(&self) -> String {
        let port = free_port();
        let p = self.dir.path().join("hub.toml");
        let mut conf = std::fs::read_to_string(&p).unwrap();
        conf.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(p, conf).unwrap();
        format!("http://127.0.0.1:{port}")
    }

    /// Appends `text` to the hub's config (a `policy_root_key`, say: before any table).
    pub fn configure(&self, top: &str) {
        let p = self.dir.path().join("hub.toml");
        let conf = std::fs::read_to_string(&p).unwrap();
        std::fs::write(p, format!("{top}\n{conf}")).unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hub.log"))
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_permitgate"))
                .args(["hub", "--config"])
                .arg(self.dir.path().join("hub.toml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn query(&self, sql: &str) -> i64 {
        if let Some(uri) = &self.pg {
            return postgres::query(uri, sql);
        }
        let path = self.dir.path().join("hub.db");
        if !path.exists() {
            return 0;
        }
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    }

    /// Records stored.
    pub fn records(&self) -> usize {
        self.query("SELECT COUNT(*) FROM records") as usize
    }

    /// The highest global number; equals `records()` when there are no gaps.
    pub fn head(&self) -> usize {
        self.query("SELECT COALESCE(MAX(g), 0) FROM records") as usize
    }

    /// Alerts of one kind stored at the hub.
    pub fn alerts_of(&self, kind: &str) -> usize {
        self.query(&format!(
            "SELECT COUNT(*) FROM alerts WHERE kind = '{kind}'"
        )) as usize
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    /// The first stored alert of one kind, as JSON.
    pub fn alert_json(&self, kind: &str) -> serde_json::Value {
        if let Some(uri) = &self.pg {
            let text = postgres::query_text(
                uri,
                &format!("SELECT alert_json FROM alerts WHERE kind = '{kind}' ORDER BY id LIMIT 1"),
            );
            return serde_json::from_str(&text).unwrap();
        }
        let db = rusqlite::Connection::open(self.dir.path().join("hub.db")).unwrap();
        let json: String = db
            .query_row(
                "SELECT alert_json FROM alerts WHERE kind = ?1 ORDER BY id LIMIT 1",
                [kind],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_str(&json).unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` every 100 ms for up to `secs`; true once it holds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

/// Writes twenty thousand consumptions into the ledger at `path` (which
/// exists), then overwrites one page in the middle of the file: what
/// start-up reads (schema, counts, newest rows) stays intact, a whole-file
/// check does not.
pub fn damage_a_ledger(path: &std::path::Path) {
    {
        let db = rusqlite::Connection::open(path).unwrap();
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
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 4096 / 2 * 4096;
    bytes[middle..middle + 4096].fill(0xa5);
    std::fs::write(path, bytes).unwrap();
}

/// Environment that runs a daemon with its wall clock shifted by `offset`
/// (libfaketime syntax: `+2h`, `+50y`, `-10m`), monotonic time untouched.
pub fn shifted_clock(offset: &str) -> Vec<(&'static str, String)> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libfaketime is installed (apt-get install faketime; .ci/run does it)");
    vec![
        ("LD_PRELOAD", lib.to_owned()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ]
}

impl Post {
    /// Starts the daemon with its clock shifted by `offset` (see [`shifted_clock`]).
    pub fn start_shifted(&mut self, offset: &str) {
        let env = shifted_clock(offset);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.start_with(&env);
    }

    /// Runs `permitgate ARGS… --config` this post's config (inserted after the subcommand words).
    pub fn cli(&self, words: &[&str], rest: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(words)
            .arg("--config")
            .arg(self.dir.path().join("permitgate.toml"))
            .args(rest)
            .output()
            .unwrap()
    }
}
