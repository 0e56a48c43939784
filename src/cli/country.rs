//! `permitgate dev`: a whole country on one machine (a broker, a national
//! hub and two posts, each with its console), and a way to hand a running
//! post a declaration and read the verdict it publishes.
//!
//! Design: every part runs as the operators run it: the hub and the posts
//! are separate `permitgate` processes with their own config files, keys
//! and logs; only the broker (the embedded one) lives in this process. The
//! keys, the policy (with the registry of the posts' and the hub's keys),
//! the authority's signed bundle and a license are made on first run and
//! kept in the state folder, so a second run continues where the first
//! stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use ed25519_dalek::SigningKey;

use super::Outcome;
use crate::config::Config;
use crate::keys;

/// `permitgate dev` actions.
#[derive(Debug, Subcommand)]
pub enum DevAction {
    /// A broker, a national hub and two posts (post-a, post-b) with their
    /// consoles, on this machine; keys, policy and a license are made on
    /// first run. Ctrl-C stops them all.
    Country {
        /// Where the country keeps its keys, configs, ledgers and logs.
        #[arg(long, default_value = "firmware-config/dev-state/country")]
        dir: PathBuf,
        /// The broker's port for scanners and MQTT tools (MQTT 3.1.1).
        #[arg(long, default_value_t = 18840)]
        port: u16,
        /// The hub's HTTP port; post-a and post-b take the next two.
        #[arg(long, default_value_t = 9720)]
        http_port: u16,
    },
    /// Send a declaration to a running post through its broker and print
    /// the verdict it publishes (exit 0: cleared or not_required, 1: other).
    Declare {
        /// The post's config file.
        #[arg(long)]
        config: PathBuf,
        /// The declaration (JSON or CBOR).
        #[arg(long)]
        declaration: PathBuf,
        /// Send it under this declaration id instead of its own (JSON only).
        #[arg(long)]
        id: Option<String>,
        /// Put this token (a file with its `PG1:` text) in the declaration's `license` (JSON only).
        #[arg(long)]
        license: Option<PathBuf>,
        /// How long to wait for the verdict, seconds.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Run the deterministic simulation of a country (posts, hubs, a faulty
    /// broker, crashes, a stolen key, replays) over many seeds, or replay
    /// one seed step by step (exit 1: an invariant broke).
    Simulate(super::simulate::SimulateArgs),
}

/// How long `dev declare` waits for a verdict before sending the declaration again.
const RESEND_EVERY: Duration = Duration::from_secs(3);

/// The two posts of the demonstration country.
pub const POSTS: [&str; 2] = ["post-a", "post-b"];
/// The kid the country's license issuer signs under.
const ISSUER_KID: &str = "country-issuer";
/// The kid the hub's key is listed under.
const HUB_KID: &str = "hub-1";

/// Runs a `permitgate dev` action.
pub fn run(action: DevAction) -> Result<Outcome> {
    // The simulation runs on threads of its own, with no runtime.
    let action = match action {
        DevAction::Simulate(args) => return super::simulate::run(args),
        other => other,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match action {
        DevAction::Simulate(args) => super::simulate::run(args),
        DevAction::Country {
            dir,
            port,
            http_port,
        } => rt.block_on(country(&dir, port, http_port)),
        DevAction::Declare {
            config,
            declaration,
            id,
            license,
            wait_secs,
        } => {
            let cfg = Config::load(&config)?;
            let payload = std::fs::read(&declaration)
                .with_context(|| format!("reading {}", declaration.display()))?;
            let license = match license {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            };
            let (payload, id) = with_changes(payload, id, license)
                .with_context(|| format!("reading {}", declaration.display()))?;
            rt.block_on(declare(&cfg, payload, &id, Duration::from_secs(wait_secs)))
        }
    }
}

/// The payload to send and its declaration id, with `id` and `license` put in when given.
fn with_changes(
    payload: Vec<u8>,
    id: Option<String>,
    license: Option<String>,
) -> Result<(Vec<u8>, String)> {
    let parsed = crate::declaration::parse(&payload, usize::MAX).map_err(|e| anyhow!("{e}"))?;
    if id.is_none() && license.is_none() {
        return Ok((payload, parsed.declaration.declaration_id));
    }
    let mut json: serde_json::Value = serde_json::from_slice(&payload)
        .context("`--id` and `--license` need a JSON declaration")?;
    if let Some(id) = id {
        json["declaration_id"] = id.into();
    }
    if let Some(token) = license {
        json["license"] = token.into();
    }
    let id = parsed.declaration.declaration_id;
    let id = json["declaration_id"].as_str().map_or(id, str::to_owned);
    Ok((serde_json::to_vec(&json)?, id))
}

/// Loads `dir/NAME.key.pem`, making the pair on first use.
fn key(dir: &Path, name: &str) -> Result<SigningKey> {
    let path = dir.join(format!("{name}.key.pem"));
    if path.exists() {
        return Ok(keys::load_signing_key(&path)?);
    }
    let key = keys::generate();
    keys::write_keypair(dir, name, &key)?;
    Ok(key)
}

/// Writes everything the country's processes read; `v5` is the broker's
/// MQTT 5 port (ephemeral, so the configs are written on every run).
fn prepare(dir: &Path, v5: u16, http_port: u16) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let issuer = key(dir, "issuer")?;
    let root = key(dir, "root")?;
    let hub = key(dir, "hub")?;
    let mut registry = String::new();
    for post in POSTS {
        let k = key(dir, post)?;
        registry.push_str(&format!(
            "\n[[checkpoints]]\nid = \"{post}\"\npublic_key = \"\"\"\n{}\"\"\"\n",
            keys::public_pem(&k.verifying_key())
        ));
    }
    registry.push_str(&format!(
        "\n[[hubs]]\nid = \"{HUB_KID}\"\npublic_key = \"\"\"\n{}\"\"\"\n",
        keys::public_pem(&hub.verifying_key())
    ));
    let policy = include_str!("../../firmware-config/dev/policy.toml")
        .replace("kid = \"dev-issuer\"", &format!("kid = \"{ISSUER_KID}\""))
        .replace("dev-issuer.pub.pem", "issuer.pub.pem");
    let policy_file = dir.join("policy.toml");
    write(
        &policy_file,
        &format!("# Written by `permitgate dev country` on every run.\n{policy}{registry}"),
    )?;
    let bundle = crate::bundle::sign(&policy_file, &root, crate::bundle::DEFAULT_KID)?;
    std::fs::write(dir.join("policy.bundle"), bundle).context("writing policy.bundle")?;

    let license = crate::token::License::from_claims_json(include_str!(
        "../../firmware-config/dev/claims.json"
    ))
    .map_err(|e| anyhow!("the sample claims: {e}"))?;
    let token = crate::token::text::encode(&crate::token::issue(&license, ISSUER_KID, &issuer));
    write(&dir.join("license.txt"), &format!("{token}\n"))?;
    let mut declaration: serde_json::Value =
        serde_json::from_str(include_str!("../../firmware-config/dev/declaration.json"))?;
    declaration["license"] = token.into();
    write(
        &dir.join("declaration.json"),
        &serde_json::to_string_pretty(&declaration)?,
    )?;

    let mqtt = |client_id: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {v5}\nclient_id = \"{client_id}\"\nreconnect_max_secs = 2\n"
        )
    };
    write(
        &dir.join("hub.toml"),
        &format!(
            "# Written by `permitgate dev country` on every run.\nstore = \"hub.db\"\npolicy = \"policy.toml\"\npolicy_root_key = \"root.pub.pem\"\nhub_key = \"hub.key.pem\"\nhub_kid = \"{HUB_KID}\"\n\n[mqtt]\n{}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            mqtt("permitgate-hub-1")
        ),
    )?;
    for (n, post) in (1u16..).zip(POSTS) {
        write(
            &dir.join(format!("{post}.toml")),
            &format!(
                "# Written by `permitgate dev country` on every run.\ncheckpoint = \"{post}\"\nledger = \"{post}/ledger.db\"\npolicy = \"policy.toml\"\ncheckpoint_key = \"{post}.key.pem\"\n\n[mqtt]\n{}\n[uplink]\n{}\n[sync]\ninterval_ms = 500\npolicy_root_key = \"root.pub.pem\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
                mqtt(&format!("permitgate-{post}")),
                mqtt(&format!("permitgate-{post}-sync")),
                http_port + n
            ),
        )?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One process of the country.
struct Member {
    name: String,
    child: Child,
    http: u16,
}

/// Starts the country and keeps it running until Ctrl-C (or SIGTERM), or
/// until one of its processes stops by itself.
async fn country(dir: &Path, port: u16, http_port: u16) -> Result<Outcome> {
    let v5 = crate::broker::start(([127, 0, 0, 1], port).into(), 16_000_000)?;
    prepare(dir, v5.port(), http_port)?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut members = Vec::new();
    let parts = [("hub", "hub".to_owned())]
        .into_iter()
        .chain(POSTS.map(|p| ("run", p.to_owned())));
    for (n, (command, name)) in (0u16..).zip(parts) {
        let config = dir.join(format!(
            "{}.toml",
            if name == "hub" { "hub" } else { &name }
        ));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .with_context(|| format!("opening {name}.log"))?;
        let child = Process::new(&exe)
            .args([command, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        members.push(Member {
            name,
            child,
            http: http_port + n,
        });
    }
    let outcome = supervise(dir, port, &mut members).await;
    for m in &mut members {
        stop(&mut m.child).await;
    }
    outcome
}

async fn supervise(dir: &Path, port: u16, members: &mut [Member]) -> Result<Outcome> {
    // Ready when every console answers (the posts open theirs once their ledger is open).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for m in members.iter_mut() {
        while tokio::net::TcpStream::connect(("127.0.0.1", m.http))
            .await
            .is_err()
        {
            if let Some(status) = m.child.try_wait()? {
                bail!(
                    "{} stopped ({status}); see {}",
                    m.name,
                    dir.join(format!("{}.log", m.name)).display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not open its console within a minute", m.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let d = dir.display();
    println!("A country on this machine; its state is in {d}/");
    println!("  broker  127.0.0.1:{port} (MQTT 3.1.1, for scanners and mosquitto_pub)");
    for m in members.iter() {
        println!(
            "  {:<7} http://127.0.0.1:{}/   log {d}/{}.log",
            m.name, m.http, m.name
        );
    }
    println!("A license for the sample shipment is in {d}/license.txt, and a declaration");
    println!("carrying it in {d}/declaration.json. In another terminal:");
    println!(
        "  permitgate dev declare --config {d}/post-a.toml --declaration {d}/declaration.json"
    );
    println!("Ctrl-C stops the country.");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => {
                println!("stopping the country");
                return Ok(Outcome::Ok);
            }
            _ = tick.tick() => {
                for m in members.iter_mut() {
                    if let Some(status) = m.child.try_wait()? {
                        bail!("{} stopped ({status}); see {d}/{}.log", m.name, m.name);
                    }
                }
            }
        }
    }
}

/// SIGTERM, and SIGKILL if it has not stopped within ten seconds.
async fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait()
        && let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..100 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// What the connection of `dev declare` saw.
enum Wire {
    /// Connected, subscribed, and the declaration handed to the client.
    Connected,
    /// A message on one of the subscribed topics: (topic, payload).
    Message(String, Vec<u8>),
    /// The connection failed; why.
    Failed(String),
}

/// Connects to the post's broker, subscribes to its verdicts and alerts,
/// publishes `payload` once connected, and forwards what arrives.
///
/// Design: an embedded broker serves scanners MQTT 3.1.1 on its configured
/// address (the daemon reaches it over MQTT 5 inside the process), so that
/// is spoken to it; any other broker (mosquitto, the country's) gets MQTT 5.
/// Each event loop runs in a task of its own: rumqttc's poll is not
/// cancel-safe (see `mqtt::Session`).
fn connect(
    cfg: &Config,
    topics: &crate::daemon::Topics,
    payload: Vec<u8>,
) -> (
    tokio::sync::mpsc::Receiver<Wire>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // Its own short session: never the post's client id, which would take the post's session.
    let id = format!("permitgate-declare-{}", std::process::id());
    let m = &cfg.mqtt;
    let subscriptions = [topics.verdicts.clone(), topics.alerts.clone()];
    let target = topics.declarations.clone();
    let task = if m.embedded_broker {
        use rumqttc::{Event, Packet, QoS};
        let mut opts = rumqttc::MqttOptions::new(id, m.host.clone(), m.port);
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(
                crate::mqtt::PACKET_MAX as usize,
                crate::mqtt::PACKET_MAX as usize,
            );
        if let (Some(u), Some(p)) = (&m.username, &m.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
        eventloop.set_network_options(crate::mqtt::network_options());
        tokio::spawn(async move {
            loop {
                let wire = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &subscriptions {
                            let _ = client.try_subscribe(t.as_str(), QoS::AtLeastOnce);
                        }
                        let _ =
                            client.try_publish(&target, QoS::AtLeastOnce, false, payload.clone());
                        Wire::Connected
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Wire::Message(p.topic.clone(), p.payload.to_vec())
                    }
                    Ok(_) => continue,
                    Err(e) => Wire::Failed(e.to_string()),
                };
                let failed = matches!(wire, Wire::Failed(_));
                if tx.send(wire).await.is_err() || failed {
                    return;
                }
            }
        })
    } else {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        let mut plain = m.clone();
        plain.client_id = None;
        let mut opts = crate::mqtt::options(&plain, cfg.mqtt_tls.as_ref(), id);
        opts.set_clean_start(true)
            .set_session_expiry_interval(None)
            .set_manual_acks(false);
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 16);
        tokio::spawn(async move {
            loop {
                let wire = match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &subscriptions {
                            let _ = client.try_subscribe(t.as_str(), QoS::AtLeastOnce);
                        }
                        let _ =
                            client.try_publish(&target, QoS::AtLeastOnce, false, payload.clone());
                        Wire::Connected
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                        Wire::Message(crate::mqtt::topic_of(&p).to_owned(), p.payload.to_vec())
                    }
                    Ok(_) => continue,
                    Err(e) => Wire::Failed(e.to_string()),
                };
                let failed = matches!(wire, Wire::Failed(_));
                if tx.send(wire).await.is_err() || failed {
                    return;
                }
            }
        })
    };
    (rx, task)
}

/// Publishes `payload` to the post's declarations topic and waits for the
/// verdict on declaration `id`; prints it, and any alert about it.
async fn declare(cfg: &Config, payload: Vec<u8>, id: &str, wait: Duration) -> Result<Outcome> {
    let topics = crate::daemon::Topics::new(&cfg.mqtt.prefix, &cfg.checkpoint);
    let (mut events, mut task) = connect(cfg, &topics, payload.clone());
    // Why the broker could not be reached, while it is retried (a post just started).
    let mut unreachable = None;
    let broker = format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port);
    let deadline = tokio::time::Instant::now() + wait;
    let mut alerts = Vec::new();
    let mut verdict = None;
    // After the verdict, alerts about it (sent in the same commit) get a moment.
    let mut until = deadline;
    // Design: a post that is starting may not have subscribed yet when the
    // declaration arrives, and a broker drops what nobody is subscribed to.
    // Without a verdict it is sent again; a post that has it already
    // answers the redelivery with the stored verdict.
    let mut again_at = tokio::time::Instant::now() + RESEND_EVERY;
    loop {
        let wake = if verdict.is_none() {
            until.min(again_at)
        } else {
            until
        };
        let (topic, payload) = match tokio::time::timeout_at(wake, events.recv()).await {
            Ok(Some(Wire::Message(topic, payload))) => (topic, payload),
            Ok(Some(Wire::Connected)) => {
                unreachable = None;
                continue;
            }
            Ok(Some(Wire::Failed(e))) => {
                unreachable = Some(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                (events, task) = connect(cfg, &topics, payload.clone());
                continue;
            }
            Ok(None) => bail!("the connection to {broker} ended"),
            Err(_) if verdict.is_some() => break,
            Err(_) if tokio::time::Instant::now() < until => {
                task.abort();
                again_at = tokio::time::Instant::now() + RESEND_EVERY;
                (events, task) = connect(cfg, &topics, payload.clone());
                continue;
            }
            Err(_) => {
                task.abort();
                match unreachable {
                    Some(e) => bail!("cannot reach the post's broker at {broker}: {e}"),
                    None => bail!(
                        "no verdict for {id} within {} s: is the post running on {broker}?",
                        wait.as_secs()
                    ),
                }
            }
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        if json["declaration_id"] != id {
            continue;
        }
        if topic == topics.alerts {
            alerts.push(json);
        } else if verdict.is_none() {
            verdict = Some(json);
            until = tokio::time::Instant::now() + Duration::from_millis(500);
        }
    }
    task.abort();
    let verdict = verdict.unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    for a in &alerts {
        eprintln!("ALERT: {a}");
    }
    Ok(match verdict["verdict"].as_str() {
        Some("cleared" | "not_required") => Outcome::Ok,
        _ => Outcome::Refused,
    })
}
