//! `permitgate run`: declarations in over MQTT, verdicts and alerts out.
//!
//! Two parts:
//! - the **connection task** owns rumqttc's event loop and is the only
//!   caller of the client, so acknowledgements and publications go out in
//!   the order it issues them;
//! - the **ledger worker** (a plain thread: rusqlite blocks) decides the
//!   declarations that arrived together in one transaction, commits, and
//!   only then hands the connection task their PUBACKs, in arrival order,
//!   with the verdicts to publish.
//!
//! Design: verdicts and alerts go through `publish_queue` in the ledger, in
//! the same transaction as the decision. A queued message is deleted only
//! when the broker's PUBACK for it arrives; after a restart or a reconnect
//! everything still queued is published again (at least once; consumers
//! deduplicate by `declaration_id`). rumqttc's own in-memory retransmission
//! queue is cleared on every connection loss, because the durable copy is
//! in SQLite.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, LastWill, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock, to_rfc3339};
use crate::config::Config;
use crate::gate;
use crate::in_force::PolicyInForce;
use crate::keys;
use crate::ledger::{Identity, Ledger, LedgerError};
use crate::telemetry::Telemetry;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The checkpoint key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The HTTP listener did not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// The MQTT topics of one checkpoint.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Declarations in.
    pub declarations: String,
    /// Verdicts out.
    pub verdicts: String,
    /// Alerts out.
    pub alerts: String,
    /// Retained status with last will.
    pub status: String,
}

impl Topics {
    /// Topics under `prefix` for `checkpoint`.
    pub fn new(prefix: &str, checkpoint: &str) -> Topics {
        let t = |leaf: &str| format!("{prefix}/{checkpoint}/{leaf}");
        Topics {
            declarations: t("declarations"),
            verdicts: t("verdicts"),
            alerts: t("alerts"),
            status: t("status"),
        }
    }
}

// Design: declarations are nearly all of the work; boxing them would cost
// an allocation each to save a few bytes on the rare other variants.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// A declaration, with the acknowledged publications (see
    /// [`Work::Delivered`]) that travel with it, so both are one hand-over.
    Declaration(Received, Vec<i64>),
    /// Publications the broker acknowledged: their queue rows can go.
    Delivered(Vec<i64>),
    /// Publish the queued messages with ids above this (0: start over).
    Resend(i64),
    /// A newer signed policy to decide under from now on.
    Policy(Box<crate::policy::Policy>),
}

/// A declaration and the connection it arrived on.
struct Received {
    publish: Publish,
    /// Which connection delivered it: a PUBACK is only valid on that one.
    connection: u64,
    /// When it arrived, for the decision latency metric.
    at: std::time::Instant,
}

struct Done {
    /// Declarations committed, in arrival order, payloads dropped.
    acks: Vec<Received>,
    publications: Vec<Publication>,
    /// Ledger totals after the commit.
    counts: Counts,
    /// A re-send was cut at this id; ask for the rest once these are out.
    more_after: Option<i64>,
    /// These publications were re-read from the ledger's queue.
    resent: bool,
    /// The ledger stopped or resumed committing.
    health: Option<LedgerHealth>,
}

/// A change in whether the ledger can commit.
#[derive(Debug, Clone)]
enum LedgerHealth {
    /// It cannot (why, as SQLite says it); declarations wait unacknowledged.
    Fault(String),
    /// It commits again.
    Recovered,
}

impl Done {
    /// Only new counts.
    fn counts(counts: Counts) -> Done {
        Done {
            acks: Vec::new(),
            publications: Vec::new(),
            counts,
            more_after: None,
            resent: false,
            health: None,
        }
    }
}

use crate::ledger::Publication;

/// Most publications the connection task holds in memory, and the most
/// re-read from the ledger's queue at once. Beyond it, new ones stay in
/// the ledger's queue (where they are durable anyway) and are re-read once
/// those held have gone out.
const RESEND_MAX: usize = 4096;
/// The embedded broker's largest payload: below the clients' packet limit,
/// so it never takes a message it could not deliver.
const EMBEDDED_PAYLOAD_MAX: usize = 16_000_000;
/// The policy to start with: the config's file, or the newest signed
/// bundle in the ledger when it is newer (and verifies with the root key).
///
/// Design: both were admitted when they arrived (the file by the operator,
/// the bundle through [`crate::in_force::admissible`]), so the newer wins
/// here without the step rule, which only guards what arrives later.
fn newest_policy(cfg: &Config, ledger: &Ledger) -> crate::policy::Policy {
    let Some(root) = &cfg.policy_root else {
        return cfg.policy.clone();
    };
    match ledger.newest_policy_bundle() {
        Ok(Some(bytes)) => match crate::bundle::open(&bytes, root) {
            Ok(p) if p.version > cfg.policy.version => {
                info!(
                    version = p.version,
                    "using the newest signed policy bundle from the ledger"
                );
                p
            }
            Ok(_) => cfg.policy.clone(),
            Err(e) => {
                warn!(error = %e, "the stored policy bundle does not verify; using the policy file");
                cfg.policy.clone()
            }
        },
        Ok(None) => cfg.policy.clone(),
        Err(e) => {
            warn!(error = %e, "cannot read stored policy bundles; using the policy file");
            cfg.policy.clone()
        }
    }
}

/// On SIGHUP, applies the config file's `log_level`, and reads the policy
/// file again and offers it to the policy in force (it replaces it only if
/// newer; a signed bundle may be newer still).
async fn reload_on_sighup(
    config_file: std::path::PathBuf,
    file: std::path::PathBuf,
    in_force: Arc<PolicyInForce>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            warn!("cannot listen for SIGHUP; the policy file is read at start-up only");
            return;
        };
        while hup.recv().await.is_some() {
            match crate::config::log_level_of(&config_file)
                .map_err(|e| e.to_string())
                .and_then(|level| crate::logging::set_level(&level).map(|set| (level, set)))
            {
                // At WARN, so the line survives the level it sets.
                Ok((level, true)) => warn!(log_level = %level, "SIGHUP: log level set"),
                Ok((_, false)) => {
                    info!("SIGHUP: log level left as {} sets it", crate::logging::ENV)
                }
                Err(e) => {
                    error!(error = %e, "SIGHUP: cannot apply `log_level`; the level in force is kept")
                }
            }
            match crate::policy::Policy::load(&file) {
                Ok(p) => match in_force.offer(p, SystemClock.now()) {
                    Ok(p) => {
                        info!(file = %file.display(), version = p.version, "SIGHUP: policy file reloaded");
                    }
                    Err(e) => warn!(
                        file = %file.display(),
                        error = %e,
                        "SIGHUP: the policy file does not replace the policy in force; kept"
                    ),
                },
                Err(e) => {
                    error!(error = %e, "SIGHUP: the policy file is invalid; the policy in force is kept")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (config_file, file, in_force);
}

/// Capacity of the queues between the connection task and the worker.
const QUEUE: usize = 4096;
/// Most work the connection task holds while the worker's queue is full.
/// When it is reached the daemon stops reading from the broker until half
/// of it has gone to the worker: TCP then holds the broker back.
///
/// Design: a broker should keep no more than its in-flight window
/// unacknowledged with us, but mosquitto 2.0.11 (Debian 12) was measured
/// sending 50,000 in a burst. Dropping the connection instead (as this
/// once did) made it redeliver them all at once, again and again.
const BACKLOG_MAX: usize = 2048;
/// The same bound in payload bytes.
const BACKLOG_BYTES: usize = 8 * 1024 * 1024;
/// How often the event loop is polled while reads are paused.
const PAUSED_POLL_EVERY: Duration = Duration::from_millis(200);

/// Runs the daemon until `shutdown` completes; then drains and exits cleanly.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let (key, created) = keys::load_or_create_signing_key(&cfg.checkpoint_key)?;
    if created {
        info!(path = %cfg.checkpoint_key.display(), "created checkpoint key");
    }
    let identity = Identity {
        checkpoint: cfg.checkpoint.clone(),
        key,
    };
    let mut ledger = Ledger::open_checking_later(&cfg.ledger, &cfg.checkpoint)?;
    let upgraded = ledger.upgrade_log(&identity.key, SystemClock.now())?;
    if upgraded > 0 {
        info!(
            leaves = upgraded,
            "ledger upgraded: its verdicts and consumptions are now leaves of its log; consumptions go to the hub again"
        );
    }
    // Design: the cheap part of `ledger check` runs before any decision; a
    // ledger that contradicts its own last signed head is not decided on.
    let policy = newest_policy(&cfg, &ledger);
    let mut own_keys = policy.registry.all_checkpoint_keys(&cfg.checkpoint);
    own_keys.push(identity.key.verifying_key());
    if let Err(why) = ledger.check_own_head(&own_keys) {
        return Err(LedgerError::Unusable {
            path: cfg.ledger.clone(),
            message: format!(
                "contradicts its own last signed head ({why}); examine it with `permitgate ledger check` and restore it from a backup"
            ),
        }
        .into());
    }
    let check = integrity_check_in_background(&ledger, own_keys)?;
    let (verdicts, consumed, outbox) = ledger.counts()?;
    info!(
        checkpoint = %cfg.checkpoint,
        ledger = %cfg.ledger.display(),
        policy_version = policy.version,
        verdicts, consumed, outbox,
        "ledger open, policy loaded"
    );
    let telemetry = Telemetry::new(&cfg.ledger, cfg.uplink.is_some(), SystemClock.now());
    telemetry.policy(policy.version, policy.issued_at, policy.max_age);
    telemetry.ledger_counts(verdicts, consumed);
    telemetry.outbox(outbox, ledger.oldest_unsynced().unwrap_or(None));
    let http_task = match &cfg.http {
        Some(http) => {
            match (
                ledger.recent_verdicts(crate::telemetry::RECENT),
                ledger.recent_alerts(crate::telemetry::RECENT),
            ) {
                (Ok(v), Ok(a)) => telemetry.seed(v, a),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(error = %e, "cannot read recent verdicts for the console")
                }
            }
            Some(crate::http::start(http.listen, telemetry.clone(), &cfg.checkpoint).await?)
        }
        None => None,
    };
    // With the embedded broker, the daemon itself uses its MQTT 5 listener.
    let mut mqtt = cfg.mqtt.clone();
    if cfg.mqtt.embedded_broker {
        let ip: std::net::IpAddr = cfg.mqtt.host.parse().map_err(|_| {
            crate::broker::BrokerError::Config(format!("`{}` is not an IP address", cfg.mqtt.host))
        })?;
        let own = crate::broker::start((ip, cfg.mqtt.port).into(), EMBEDDED_PAYLOAD_MAX)?;
        mqtt.host = own.ip().to_string();
        mqtt.port = own.port();
    }
    let topics = Topics::new(&cfg.mqtt.prefix, &cfg.checkpoint);
    let status = Status {
        checkpoint: cfg.checkpoint.clone(),
    };
    let counts = Counts {
        verdicts,
        consumed,
        outbox,
        policy_version: policy.version,
    };

    let mut opts = crate::mqtt::options(
        &mqtt,
        cfg.mqtt_tls.as_ref(),
        format!("permitgate-{}", cfg.checkpoint),
    );
    // Design: the client reads packets far larger than a declaration may
    // be, so an oversized one gets a `malformed` verdict; larger ones the
    // broker never delivers (the Maximum Packet Size in CONNECT).
    opts.set_last_will(LastWill::new(
        &topics.status,
        status.render("offline", counts, None),
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, QUEUE * 2);
    // Alerts the sync task stores go out on this connection.
    let (sync_pubs_tx, sync_pubs_rx) = mpsc::channel::<Publication>(256);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let in_force = PolicyInForce::new(policy.clone());
    let policy_rx = in_force.watch();
    let reload_task = tokio::spawn(reload_on_sighup(
        cfg.file.clone(),
        cfg.policy_file.clone(),
        in_force.clone(),
    ));
    let committed = Arc::new(tokio::sync::Notify::new());
    let sync_ledger = match &cfg.uplink {
        Some(_) => Some(ledger.second_handle()?),
        None => None,
    };
    let sync_task = cfg
        .uplink
        .clone()
        .zip(sync_ledger)
        .map(|(uplink, sync_ledger)| {
            tokio::spawn(crate::sync::agent::run(
                crate::sync::agent::Agent {
                    checkpoint: cfg.checkpoint.clone(),
                    key: identity.key.clone(),
                    uplink,
                    tls: cfg.uplink_tls.clone(),
                    sync: cfg.sync.clone(),
                    publications: sync_pubs_tx,
                    policy_root: cfg.policy_root,
                    in_force,
                    committed: committed.clone(),
                    telemetry: telemetry.clone(),
                },
                sync_ledger,
                stop_rx,
            ))
        });

    let (work_tx, work_rx) = mpsc::channel::<Work>(QUEUE);
    let (done_tx, done_rx) = mpsc::channel::<Done>(64);
    let max_bytes = cfg.max_declaration_bytes;
    let batch_max = cfg.batch_max;
    let stopping = Arc::new(AtomicBool::new(false));
    let (staged_tx, staged_rx) = std::sync::mpsc::sync_channel::<Verified>(STAGED_BATCHES);
    let cannot_start = |e: std::io::Error| LedgerError::Unusable {
        path: cfg.ledger.clone(),
        message: format!("cannot start a worker thread: {e}"),
    };
    let verify_policy = policy.clone();
    let worker_stopping = stopping.clone();
    let worker_telemetry = telemetry.clone();
    let verifier = std::thread::Builder::new()
        .name("verify".into())
        .spawn(move || verify_stage(verify_policy, max_bytes, batch_max, work_rx, staged_tx))
        .map_err(cannot_start)?;
    let worker = std::thread::Builder::new()
        .name("ledger".into())
        .spawn(move || {
            ledger_stage(
                Worker {
                    ledger,
                    policy,
                    identity,
                    counts,
                    stopping: worker_stopping,
                    telemetry: worker_telemetry,
                    batch_max,
                    committed,
                },
                staged_rx,
                done_tx,
            )
        })
        .map_err(cannot_start)?;

    // READY once the ledger is open and the policy loaded (systemd Type=notify).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let conn = Connection {
        client,
        topics,
        status,
        inflight: cfg.mqtt.inflight as usize,
        reconnect_max: Duration::from_secs(cfg.mqtt.reconnect_max_secs),
        stopping,
        telemetry: telemetry.clone(),
    };
    let damaged = conn
        .drive(
            &mut eventloop,
            counts,
            work_tx,
            done_rx,
            (sync_pubs_rx, policy_rx),
            stop_if_damaged(check, shutdown),
        )
        .await
        .flatten();
    let _ = stop_tx.send(true);
    reload_task.abort();
    if let Some(task) = sync_task
        && tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
    {
        warn!("the sync task did not stop in time");
    }
    if verifier.join().is_err() || worker.join().is_err() {
        error!("a worker thread panicked");
    }
    if let Some(task) = http_task {
        task.abort();
    }
    if let Some(e) = damaged {
        return Err(e.into());
    }
    info!("stopped");
    Ok(())
}

/// Completes at `at`, or never when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Checks the whole ledger file on a thread of its own while the daemon
/// decides; the answer comes on the channel.
///
/// Design: on ten million rows the check takes seconds and start-up to
/// ready must not. SQLite still refuses any damaged page a decision reads;
/// what the check adds is finding damage anywhere in the file, and the
/// daemon stops when it does.
fn integrity_check_in_background(
    ledger: &Ledger,
    keys: Vec<ed25519_dalek::VerifyingKey>,
) -> Result<tokio::sync::oneshot::Receiver<Result<(), LedgerError>>, LedgerError> {
    let reader = ledger.second_handle()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ledger-check".into())
        .spawn(move || {
            // Lowest CPU priority for this thread alone (Linux's setpriority
            // on a thread id): decisions go first, the check uses what is left.
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            {
                warn!(error = %e, "ledger: cannot lower the integrity check's priority");
            }
            let started = std::time::Instant::now();
            let mut result = reader.integrity_check();
            if result.is_ok() {
                info!(
                    ms = started.elapsed().as_millis() as u64,
                    "ledger: integrity check of the whole file passed"
                );
                // Then its tables against its log (what `ledger check` does).
                result = match reader.check_log(&keys, &[]) {
                    Ok(Ok(r)) => {
                        info!(
                            leaves = r.leaves,
                            ms = started.elapsed().as_millis() as u64,
                            "ledger: its tables are what its log says"
                        );
                        Ok(())
                    }
                    Ok(Err(why)) => {
                        Err(reader.mark_damaged(&format!("its tables contradict its log: {why}")))
                    }
                    Err(e) => Err(e),
                };
            }
            let _ = tx.send(result);
        })
        .map_err(|e| LedgerError::Unusable {
            path: ledger.path().to_owned(),
            message: format!("cannot start the integrity check: {e}"),
        })?;
    Ok(rx)
}

/// `shutdown`, or sooner, with the error, if the integrity check finds the
/// ledger damaged.
async fn stop_if_damaged(
    check: tokio::sync::oneshot::Receiver<Result<(), LedgerError>>,
    shutdown: impl Future<Output = ()>,
) -> Option<LedgerError> {
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return None,
        result = check => {
            if let Ok(Err(e)) = result {
                error!(error = %e, "ledger: damaged; stopping, so no decision rests on it");
                return Some(e);
            }
        }
    }
    shutdown.await;
    None
}

/// What the retained status says besides its state and counts.
struct Status {
    checkpoint: String,
}

/// Ledger totals and the policy in force, as the status reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    verdicts: u64,
    consumed: u64,
    outbox: u64,
    policy_version: u64,
}

impl Status {
    fn render(&self, state: &str, c: Counts, reason: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "state": state,
            "checkpoint": self.checkpoint,
            "version": env!("CARGO_PKG_VERSION"),
            "policy_version": c.policy_version,
            "ledger": {"verdicts": c.verdicts, "consumed": c.consumed, "outbox": c.outbox},
            "at": to_rfc3339(SystemClock.now()),
        });
        if let Some(reason) = reason {
            v["reason"] = reason.into();
        }
        v.to_string()
    }
}

/// How often at most the retained status is refreshed while counts change.
const STATUS_EVERY: Duration = Duration::from_secs(5);

struct Connection {
    client: AsyncClient,
    topics: Topics,
    status: Status,
    /// Most of our publications handed to the client and not yet acknowledged.
    inflight: usize,
    /// Longest wait between reconnection attempts.
    reconnect_max: Duration,
    /// Tells the ledger stage the daemon is stopping.
    stopping: Arc<AtomicBool>,
    telemetry: Arc<Telemetry>,
}

/// What the connection task holds for the broker: what it still has to hand
/// to the client, and what the client has in flight for it.
#[derive(Default)]
struct Outbound {
    /// PUBACKs for committed declarations, in arrival order.
    acks: VecDeque<Received>,
    /// Verdicts and alerts to publish: (queue id, kind, payload).
    publications: VecDeque<Publication>,
    /// Alerts about the daemon itself, not queued in the ledger (it may be
    /// the ledger that fails): sent once, on this connection.
    alerts: VecDeque<String>,
    /// Publications handed to the client, in order, until rumqttc gives them
    /// a packet id (`None`: not from the ledger's queue).
    handed: VecDeque<Option<i64>>,
    /// Publications sent and not yet acknowledged, by packet id.
    awaiting: HashMap<u16, Option<i64>>,
    /// Publications above this id are still in the ledger's queue only: ask
    /// for them once those held are out.
    more_after: Option<i64>,
    /// True while publications are re-read from the ledger's queue (after a
    /// connect, or when more were made than are held): new ones are left
    /// there for the re-send to pick up, in order.
    catching_up: bool,
    /// The newest publication id held (or already sent).
    last_held: i64,
}

impl Outbound {
    /// A new connection: the client's in-flight state is gone, and queued
    /// publications are re-read from the ledger (`resending`: from the start).
    fn connected(&mut self, resending: bool) {
        self.handed.clear();
        self.awaiting.clear();
        self.publications.clear();
        self.more_after = None;
        if resending {
            self.catching_up = true;
        }
    }

    /// The connection is gone. Unsent PUBACKs go too: the broker redelivers
    /// those declarations, and the ledger answers them with the stored verdict.
    fn lost(&mut self) {
        self.handed.clear();
        self.awaiting.clear();
        self.acks.clear();
    }

    /// A message of the daemon's own (status, alert), not from the ledger's
    /// queue, was handed to the client.
    fn handed_own(&mut self) {
        self.handed.push_back(None);
    }

    /// Whether one of the daemon's own messages still waits for a packet id.
    fn own_in_hand(&self) -> bool {
        self.handed.contains(&None)
    }

    /// rumqttc gave the oldest publication handed to it this packet id.
    fn sent(&mut self, pkid: u16) {
        if let Some(id) = self.handed.pop_front() {
            self.awaiting.insert(pkid, id);
        }
    }

    /// The broker acknowledged `pkid`: the queue id it was sent from, if any.
    fn acknowledged(&mut self, pkid: u16) -> Option<i64> {
        self.awaiting.remove(&pkid).flatten()
    }

    /// Takes what the ledger stage committed or re-read. New publications
    /// are held only while the re-send has caught up and they fit in
    /// [`RESEND_MAX`]; otherwise they are left in the ledger's queue and a
    /// re-send after the newest held picks them up, in order.
    fn take(
        &mut self,
        acks: Vec<Received>,
        publications: Vec<Publication>,
        more_after: Option<i64>,
        resent: bool,
    ) {
        self.more_after = more_after.or(self.more_after);
        self.acks.extend(acks);
        let newest = publications.last().map(|p| p.0);
        let hold = if resent {
            self.catching_up = more_after.is_some();
            true
        } else if self.catching_up {
            false
        } else if self.publications.len() + publications.len() > RESEND_MAX {
            self.catching_up = true;
            self.more_after = Some(self.last_held);
            false
        } else {
            true
        };
        if hold {
            self.last_held = self.last_held.max(newest.unwrap_or(0));
            self.publications.extend(publications);
        }
    }

    /// Where the next re-send starts, once everything held is out.
    fn resend_due(&mut self) -> Option<i64> {
        if self.publications.is_empty() {
            self.more_after.take()
        } else {
            None
        }
    }
}

/// Whether the event loop is polled for more from the broker.
///
/// Design: reads pause while the backlog is full and resume once it is
/// half empty, so a backlog at the edge does not flap. While paused the
/// loop is still polled once every [`PAUSED_POLL_EVERY`], so pings, the
/// status and alerts (say, of a full disk that stalls the worker) still go
/// out; each such poll admits at most one message.
struct Reads {
    reading: bool,
    poll_once: bool,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            reading: true,
            poll_once: false,
        }
    }
}

impl Reads {
    /// Pauses reads when the backlog is full, resumes them when it is half empty.
    fn follow(&mut self, backlog: &Backlog) {
        if self.reading && backlog.is_full() {
            self.reading = false;
            tracing::debug!(
                backlog = backlog.items.len(),
                "backlog full: not reading from the broker until the worker catches up"
            );
        } else if !self.reading && backlog.is_half_empty() {
            self.reading = true;
        }
        if self.reading {
            self.poll_once = false;
        }
    }

    fn paused(&self) -> bool {
        !self.reading
    }

    /// A pause interval has passed: one poll is allowed.
    fn allow_one(&mut self) {
        self.poll_once = true;
    }

    /// Whether the event loop may be polled now; `rush` polls it while paused.
    fn may_poll(&self, rush: bool) -> bool {
        self.reading || self.poll_once || rush
    }

    /// The event loop was polled.
    fn polled(&mut self) {
        self.poll_once = false;
    }
}

/// Work waiting for room in the worker's queue, bounded by count and bytes.
#[derive(Default)]
struct Backlog {
    items: VecDeque<Work>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, w: Work) {
        self.bytes += work_bytes(&w);
        self.items.push_back(w);
    }

    /// Queues the acknowledged publications held so far, if any.
    fn push_delivered(&mut self, delivered: &mut Acknowledged) {
        if let Some(w) = delivered.work() {
            self.push(w);
        }
    }

    fn pop(&mut self) -> Option<Work> {
        let w = self.items.pop_front()?;
        self.bytes -= work_bytes(&w);
        Some(w)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn is_full(&self) -> bool {
        self.items.len() >= BACKLOG_MAX || self.bytes >= BACKLOG_BYTES
    }

    fn is_half_empty(&self) -> bool {
        self.items.len() <= BACKLOG_MAX / 2 && self.bytes <= BACKLOG_BYTES / 2
    }

    /// Moves what fits into the worker's queue, keeping the order.
    fn feed(&mut self, tx: &mpsc::Sender<Work>) {
        while let Some(w) = self.pop() {
            if let Err(e) = tx.try_send(w) {
                let w = match e {
                    mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w) => w,
                };
                self.bytes += work_bytes(&w);
                self.items.push_front(w);
                return;
            }
        }
    }

    /// Declarations of a lost connection: the broker redelivers them (the
    /// acknowledgements they carried stay).
    fn forget_declarations(&mut self) {
        self.items = std::mem::take(&mut self.items)
            .into_iter()
            .filter_map(|w| match w {
                Work::Declaration(_, ids) if ids.is_empty() => None,
                Work::Declaration(_, ids) => Some(Work::Delivered(ids)),
                other => Some(other),
            })
            .collect();
        self.bytes = self.items.iter().map(work_bytes).sum();
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}

/// How long acknowledged publications wait for a declaration to travel
/// with before they go to the ledger on their own.
const ACKED_IDLE: Duration = Duration::from_secs(1);

/// Publications the broker acknowledged, not yet handed to the worker.
///
/// Design: they travel with the next declaration, so both stages wake once
/// for the two and the deletion rides in that declaration's transaction (a
/// transaction of its own costs an fsync per declaration at a quiet gate);
/// only after [`ACKED_IDLE`] without one do they go alone. One lost only
/// means the message is published again.
#[derive(Default)]
struct Acknowledged {
    ids: Vec<i64>,
    /// When they go alone: [`ACKED_IDLE`] after the first was held.
    due: Option<tokio::time::Instant>,
}

impl Acknowledged {
    fn add(&mut self, id: i64) {
        if self.ids.is_empty() {
            self.due = Some(tokio::time::Instant::now() + ACKED_IDLE);
        }
        self.ids.push(id);
    }

    fn take(&mut self) -> Vec<i64> {
        self.due = None;
        std::mem::take(&mut self.ids)
    }

    /// All of them as work for the worker, if there are any.
    fn work(&mut self) -> Option<Work> {
        (!self.ids.is_empty()).then(|| Work::Delivered(self.take()))
    }
}

fn work_bytes(w: &Work) -> usize {
    match w {
        Work::Declaration(r, _) => r.publish.payload.len(),
        _ => 0,
    }
}

impl Connection {
    /// Runs the connection until `shutdown` completes and everything in
    /// hand is committed and acknowledged; returns what `shutdown` gave.
    async fn drive<S>(
        &self,
        eventloop: &mut EventLoop,
        mut counts: Counts,
        work_tx: mpsc::Sender<Work>,
        mut done_rx: mpsc::Receiver<Done>,
        (mut sync_pubs, mut policies): (
            mpsc::Receiver<Publication>,
            tokio::sync::watch::Receiver<Arc<crate::policy::Policy>>,
        ),
        shutdown: impl Future<Output = S>,
    ) -> Option<S> {
        tokio::pin!(shutdown);
        // What `shutdown` completed with, once it has.
        let mut stopped_by = None;
        // When to try the broker again after a failed connection.
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut work_tx = Some(work_tx);
        // The counts the retained status last went out with.
        let mut announced: Option<Counts> = None;
        // Why the ledger cannot commit, while it cannot.
        let mut fault: Option<String> = None;
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        let mut link = crate::mqtt::Link::default();
        // Numbers the connections, so a PUBACK never goes out on a later one.
        let mut connection = 0u64;
        let mut worker_done = false;
        let mut out = Outbound::default();
        // Work the worker's queue had no room for, in arrival order. Never
        // dropped: a declaration left unacknowledged on a live connection is
        // not redelivered until the next one.
        let mut backlog = Backlog::default();
        // Pinged from this loop, so a stuck event loop stops the pings and systemd restarts us.
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
        let mut reads = Reads::default();
        let mut paused_tick = tokio::time::interval(PAUSED_POLL_EVERY);
        let mut delivered = Acknowledged::default();

        loop {
            reads.follow(&backlog);
            // While reads are paused and the ledger cannot commit, the fault's
            // alert and status handed to the client are still polled out at
            // once: rumqttc sends a request only once the events it read are
            // taken, so this admits a few messages more (about two for each
            // request ahead of it, of which there are at most `inflight`).
            let rush = reads.paused() && fault.is_some() && out.own_in_hand();
            counts.outbox = self.telemetry.outbox_depth();
            // A clone, so the shutdown branch can drop `work_tx` meanwhile.
            let feed = work_tx.clone().filter(|_| !backlog.is_empty());
            tokio::select! {
                _ = paused_tick.tick(), if reads.paused() => reads.allow_one(),
                _ = sleep_until_some(delivered.due), if delivered.due.is_some() && work_tx.is_some() => {
                    backlog.push_delivered(&mut delivered);
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                _ = status_tick.tick(), if link.connected && announced != Some(counts) => {
                    tracing::debug!(
                        backlog = backlog.items.len(),
                        backlog_bytes = backlog.bytes,
                        acks = out.acks.len(),
                        publications = out.publications.len(),
                        awaiting = out.awaiting.len(),
                        "queues"
                    );
                    if self.announce(counts, fault.as_deref()) {
                        out.handed_own();
                        announced = Some(counts);
                    }
                }
                why = &mut shutdown, if work_tx.is_some() => {
                    stopped_by = Some(why);
                    info!("shutting down: no new declarations; finishing those in hand");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                    // Not yet with the worker, so not committed: the broker keeps them.
                    backlog.clear();
                    // Best effort: one not deleted is only published again after the restart.
                    if let Some(tx) = &work_tx && let Some(w) = delivered.work() {
                        let _ = tx.try_send(w);
                    }
                    // Dropping the sender lets the worker finish its queue and stop.
                    work_tx = None;
                    self.stopping.store(true, Ordering::Relaxed);
                }
                Ok(permit) = async move {
                    match feed {
                        Some(tx) => tx.reserve_owned().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(w) = backlog.pop() {
                        permit.send(w);
                    }
                }
                Some(p) = sync_pubs.recv(), if out.publications.len() < RESEND_MAX => {
                    if let Ok(a) = serde_json::from_str::<crate::verdict::Alert>(&p.2) {
                        self.telemetry.alerted(Arc::new(a));
                    }
                    out.publications.push_back(p);
                }
                // Design: the watch yields the policy in force, so the stages
                // take newer policies in order and never an older one.
                Ok(()) = policies.changed(), if work_tx.is_some() => {
                    let p = policies.borrow_and_update().clone();
                    backlog.push(Work::Policy(Box::new((*p).clone())));
                }
                // Always taken: what it publishes is bounded by RESEND_MAX (the
                // rest is re-read from the ledger), and while reads are paused
                // the worker's progress is what lets the backlog drain.
                done = done_rx.recv(), if !worker_done => match done {
                    Some(done) => {
                        counts = done.counts;
                        match done.health {
                            Some(LedgerHealth::Fault(why)) => {
                                let alert = self.ledger_fault_alert(&why);
                                out.alerts.push_back(serde_json::to_string(&alert).unwrap_or_default());
                                self.telemetry.alerted(Arc::new(alert));
                                self.telemetry.ledger_fault(Some(why.clone()));
                                fault = Some(why);
                                // The next tick announces the degraded state.
                                announced = None;
                            }
                            Some(LedgerHealth::Recovered) => {
                                self.telemetry.ledger_fault(None);
                                fault = None;
                                announced = None;
                            }
                            None => {}
                        }
                        out.take(done.acks, done.publications, done.more_after, done.resent);
                    }
                    None => worker_done = true,
                },
                _ = sleep_until_some(retry_at), if retry_at.is_some() => {
                    retry_at = None;
                }
                // Polled whenever the backlog has room, and every
                // PAUSED_POLL_EVERY while it has not: the PUBACKs for our own
                // publications arrive here too.
                ev = eventloop.poll(), if reads.may_poll(rush) && retry_at.is_none() => {
                    reads.polled();
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            if ack.code != ConnectReturnCode::Success {
                                continue;
                            }
                            if !link.connected {
                                info!(session_present = ack.session_present, "connected to broker");
                            }
                            link.up();
                            self.telemetry.link(false, true, SystemClock.now());
                            connection += 1;
                            // Queued publications are re-read from the ledger (Resend below).
                            out.connected(work_tx.is_some());
                            let _ = self.client.try_subscribe(&self.topics.declarations, QoS::AtLeastOnce);
                            if self.announce(counts, fault.as_deref()) {
                                out.handed_own();
                                announced = Some(counts);
                            }
                            if work_tx.is_some() {
                                // Deleted first, so what the broker already has is not read again.
                                backlog.push_delivered(&mut delivered);
                                backlog.push(Work::Resend(0));
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if work_tx.is_none() || crate::mqtt::topic_of(&p) != self.topics.declarations {
                                continue;
                            }
                            let r = Received { publish: p, connection, at: std::time::Instant::now() };
                            backlog.push(Work::Declaration(r, delivered.take()));
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => out.sent(pkid),
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(id) = out.acknowledged(ack.pkid) && work_tx.is_some() {
                                delivered.add(id);
                                if delivered.ids.len() >= RESEND_MAX {
                                    backlog.push_delivered(&mut delivered);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            // The durable copies are in the ledger: rumqttc's are dropped.
                            let wait = link.down(eventloop, &e, "broker", self.reconnect_max);
                            self.telemetry.link(false, false, SystemClock.now());
                            out.lost();
                            // The broker redelivers them.
                            backlog.forget_declarations();
                            // Waited for in the select, so a SIGTERM meanwhile stops at once.
                            retry_at = Some(tokio::time::Instant::now() + wait);
                        }
                    }
                }
            }
            if work_tx.is_some()
                && let Some(after) = out.resend_due()
            {
                backlog.push_delivered(&mut delivered);
                backlog.push(Work::Resend(after));
            }
            if let Some(tx) = &work_tx {
                backlog.feed(tx);
            }
            if link.connected {
                self.flush(&mut out, connection);
            }
            // Stopping: the worker has committed everything in hand; leave once
            // its PUBACKs are with the client (or the connection is gone).
            if worker_done && work_tx.is_none() && (out.acks.is_empty() || !link.connected) {
                self.finish(eventloop, link.connected, counts).await;
                return stopped_by;
            }
        }
    }

    /// Hands queued PUBACKs (all, in order) and publications (up to the
    /// in-flight limit) to the client without ever blocking the event loop.
    ///
    /// Design: a PUBACK is never dropped. A dropped one would hold one of the
    /// broker's in-flight slots for this client until the next reconnect,
    /// and enough of them stall delivery altogether.
    fn flush(&self, out: &mut Outbound, connection: u64) {
        while let Some(r) = out.acks.front() {
            // A packet id from an earlier connection may name another message
            // now; the broker redelivers that declaration instead.
            if r.connection == connection && self.client.try_ack(&r.publish).is_err() {
                return;
            }
            out.acks.pop_front();
        }
        while out.handed.len() + out.awaiting.len() < self.inflight {
            let Some(alert) = out.alerts.pop_front() else {
                break;
            };
            if self
                .client
                .try_publish(&self.topics.alerts, QoS::AtLeastOnce, false, alert.clone())
                .is_err()
            {
                out.alerts.push_front(alert);
                return;
            }
            out.handed_own();
        }
        while out.handed.len() + out.awaiting.len() < self.inflight {
            let Some((id, kind, payload)) = out.publications.pop_front() else {
                return;
            };
            let topic = if kind == "alert" {
                &self.topics.alerts
            } else {
                &self.topics.verdicts
            };
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
            {
                Ok(()) => out.handed.push_back(Some(id)),
                Err(_) => {
                    out.publications.push_front((id, kind, payload));
                    return;
                }
            }
        }
    }

    /// Hands the retained status to the client: `online`, or `degraded`
    /// with the reason while the ledger cannot commit.
    fn announce(&self, counts: Counts, fault: Option<&str>) -> bool {
        let state = if fault.is_some() {
            "degraded"
        } else {
            "online"
        };
        self.client
            .try_publish(
                &self.topics.status,
                QoS::AtLeastOnce,
                true,
                self.status.render(state, counts, fault),
            )
            .is_ok()
    }

    /// The alert for a ledger that cannot commit.
    fn ledger_fault_alert(&self, why: &str) -> crate::verdict::Alert {
        crate::verdict::Alert {
            kind: crate::verdict::AlertKind::LedgerFault,
            checkpoint: self.status.checkpoint.clone(),
            raised_at: to_rfc3339(SystemClock.now()),
            declaration_id: None,
            license_id: None,
            reasons: Vec::new(),
            payload_sha256: None,
            alert_id: None,
            records: Vec::new(),
            heads: Vec::new(),
            detail: Some(format!(
                "{why}; declarations are held unacknowledged until the ledger commits again"
            )),
        }
    }

    /// Publishes the offline status and disconnects, giving PUBACKs a moment to arrive.
    async fn finish(&self, eventloop: &mut EventLoop, connected: bool, counts: Counts) {
        if connected {
            let _ = self.client.try_publish(
                &self.topics.status,
                QoS::AtLeastOnce,
                true,
                self.status.render("offline", counts, None),
            );
            let _ = self.client.try_disconnect();
            let deadline = tokio::time::sleep(Duration::from_secs(3));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    ev = eventloop.poll() => match ev {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

/// What the ledger worker owns.
struct Worker {
    ledger: Ledger,
    policy: crate::policy::Policy,
    identity: Identity,
    counts: Counts,
    /// Set when the daemon stops: a batch held by a storage fault is let go.
    stopping: Arc<AtomicBool>,
    telemetry: Arc<Telemetry>,
    /// Most declarations joined into one transaction (the last batch joined may pass it).
    batch_max: usize,
    /// Wakes the sync task when consumptions are committed.
    committed: Arc<tokio::sync::Notify>,
}

/// One batch after the CPU-bound stage, in arrival order.
struct Verified {
    declarations: Vec<Received>,
    prepared: Vec<gate::Prepared>,
    delivered: Vec<i64>,
    resend: Option<i64>,
    new_policy: Option<Box<crate::policy::Policy>>,
}

impl Verified {
    /// Whether `next` may join this batch's transaction: only while no
    /// re-send or policy change has to happen between the two.
    fn can_take(&self, next: &Verified) -> bool {
        self.resend.is_none() && self.new_policy.is_none() && next.resend.is_none()
    }

    /// Appends `next` (checked with [`Verified::can_take`]); its policy
    /// change, if any, still comes after all these declarations.
    fn take(&mut self, next: Verified) {
        self.declarations.extend(next.declarations);
        self.prepared.extend(next.prepared);
        self.delivered.extend(next.delivered);
        self.new_policy = next.new_policy;
    }
}

/// Takes the next batch and joins to it the batches verified while the last
/// commit ran (group commit: one transaction, one fsync); a batch that
/// cannot join is kept in `carried` for the next turn. `None` once the
/// verify stage has stopped.
fn next_batch(
    rx: &std::sync::mpsc::Receiver<Verified>,
    carried: &mut Option<Verified>,
    batch_max: usize,
) -> Option<Verified> {
    let mut batch = match carried.take() {
        Some(b) => b,
        None => rx.recv().ok()?,
    };
    while batch.declarations.len() < batch_max {
        match rx.try_recv() {
            Ok(next) if batch.can_take(&next) => batch.take(next),
            Ok(next) => {
                *carried = Some(next);
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Batches that may wait between the two stages: one being verified while
/// one commits is the overlap that matters.
const STAGED_BATCHES: usize = 2;

/// The CPU-bound stage: gathers what arrived together into a batch, parses
/// and verifies its declarations on every core, and hands it on in order.
///
/// Design: it runs beside the ledger stage, so the signature checks of one
/// batch overlap the commit (fsync) of the one before.
fn verify_stage(
    mut policy: crate::policy::Policy,
    max_bytes: usize,
    batch_max: usize,
    mut rx: mpsc::Receiver<Work>,
    tx: std::sync::mpsc::SyncSender<Verified>,
) {
    use rayon::prelude::*;
    while let Some(first) = rx.blocking_recv() {
        let mut declarations = Vec::new();
        let mut delivered = Vec::new();
        let mut resend = None;
        let mut new_policy = None;
        let mut next = Some(first);
        while let Some(w) = next {
            match w {
                Work::Declaration(r, ids) => {
                    declarations.push(r);
                    delivered.extend(ids);
                }
                Work::Delivered(ids) => delivered.extend(ids),
                Work::Resend(after) => resend = Some(after),
                // Declarations before it are decided under the old policy, the rest under it.
                Work::Policy(p) => new_policy = Some(p),
            }
            next = if declarations.len() < batch_max && new_policy.is_none() {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        // One alone is checked here: handing it to the pool costs a
        // thread wake-up, which is most of a quiet gate's latency.
        let prepare = |r: &Received| gate::prepare(&r.publish.payload, &policy, max_bytes);
        let prepared: Vec<gate::Prepared> = if declarations.len() == 1 {
            declarations.iter().map(prepare).collect()
        } else {
            declarations.par_iter().map(prepare).collect()
        };
        if let Some(p) = &new_policy {
            policy = (**p).clone();
        }
        let batch = Verified {
            declarations,
            prepared,
            delivered,
            resend,
            new_policy,
        };
        if tx.send(batch).is_err() {
            return;
        }
    }
}

/// The ledger stage: decides each verified batch in one transaction,
/// commits, and hands the connection task the PUBACKs and publications.
fn ledger_stage(w: Worker, rx: std::sync::mpsc::Receiver<Verified>, tx: mpsc::Sender<Done>) {
    let Worker {
        mut ledger,
        mut policy,
        identity,
        mut counts,
        stopping,
        telemetry,
        batch_max,
        committed: committed_wake,
    } = w;
    let mut carried = None;
    while let Some(batch) = next_batch(&rx, &mut carried, batch_max) {
        let Verified {
            mut declarations,
            prepared,
            mut delivered,
            resend,
            new_policy,
        } = batch;
        // Acknowledged publications ride in the decision transaction, but go
        // alone before a re-send reads the queue (what the broker has is not
        // read again to be sent once more).
        if resend.is_some() {
            delete_delivered(&mut ledger, &mut delivered);
        }
        if let Some(after) = resend {
            // Up to the newest: while a re-send runs, the connection task
            // leaves new publications to it rather than holding them twice.
            let publications = ledger
                .last_publication_id()
                .and_then(|upto| ledger.pending_publications(after, upto, RESEND_MAX))
                .unwrap_or_else(|e| {
                    error!(error = %e, "could not read the publication queue; it is sent again on the next connection");
                    Vec::new()
                });
            if after == 0 && !publications.is_empty() {
                info!(
                    count = publications.len(),
                    "publishing queued verdicts and alerts"
                );
            }
            let more_after = (publications.len() == RESEND_MAX)
                .then(|| publications.last().map(|p| p.0))
                .flatten();
            let done = Done {
                publications,
                more_after,
                resent: true,
                ..Done::counts(counts)
            };
            if tx.blocking_send(done).is_err() {
                return;
            }
        }
        // When it is not committed, nothing is acknowledged: the broker keeps
        // the declarations and redelivers them on the next connection.
        let committed = (!declarations.is_empty())
            .then(|| {
                commit_batch(
                    &mut ledger,
                    (&policy, telemetry.clock.status()),
                    &identity,
                    &prepared,
                    &delivered,
                    (counts, &stopping),
                    &tx,
                )
            })
            .flatten();
        // Nothing to ride in, or it was not committed: they go alone.
        if committed.is_none() {
            delete_delivered(&mut ledger, &mut delivered);
        }
        if let Some(committed) = committed {
            let Committed {
                publications,
                added,
                decided,
                alerts,
            } = committed;
            counts.verdicts += added.verdicts;
            counts.consumed += added.consumed;
            telemetry.ledger_counts(counts.verdicts, counts.consumed);
            if added.outbox > 0 {
                telemetry.consumed_at(SystemClock.now(), added.outbox);
                committed_wake.notify_one();
            }
            for (r, v) in declarations.iter().zip(decided) {
                if let Some(v) = v {
                    telemetry.decided(v, Some(r.at.elapsed()));
                }
            }
            for a in alerts {
                telemetry.alerted(a);
            }
            for r in &mut declarations {
                // Only the packet id is needed to acknowledge. Design: the
                // topic goes too: in MQTT 5 it is a slice of the read buffer,
                // and would keep the whole buffer alive until the PUBACK.
                r.publish.payload = Default::default();
                r.publish.topic = Default::default();
            }
            let done = Done {
                acks: declarations,
                publications,
                ..Done::counts(counts)
            };
            if tx.blocking_send(done).is_err() {
                return;
            }
        }
        if let Some(p) = new_policy {
            info!(
                from = policy.version,
                to = p.version,
                "policy updated; deciding under the new one from now on"
            );
            policy = *p;
            counts.policy_version = policy.version;
            telemetry.policy(policy.version, policy.issued_at, policy.max_age);
            if tx.blocking_send(Done::counts(counts)).is_err() {
                return;
            }
        }
    }
}

/// Deletes publications the broker acknowledged, in a transaction of their own.
fn delete_delivered(ledger: &mut Ledger, delivered: &mut Vec<i64>) {
    if delivered.is_empty() {
        return;
    }
    if let Err(e) = ledger.delete_publications(delivered) {
        error!(error = %e, "could not clear published messages; they will be sent again");
    }
    delivered.clear();
}

/// First and longest wait between attempts to commit while the ledger's storage fails.
const FAULT_RETRY: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

/// Decides and commits one batch. While the storage fails (disk full,
/// read-only) it holds the batch and tries again, reporting the fault and
/// the recovery to the connection task, until it commits or the daemon
/// stops; `None` when the batch was not committed.
///
/// Design: holding the batch (rather than dropping it) keeps its
/// declarations unacknowledged on the live connection, so the broker keeps
/// them and sends no more than its in-flight window; nothing is lost if the
/// process dies meanwhile.
fn commit_batch(
    ledger: &mut Ledger,
    (policy, clock): (&crate::policy::Policy, crate::clock_trust::ClockStatus),
    identity: &Identity,
    prepared: &[gate::Prepared],
    delivered: &[i64],
    (counts, stopping): (Counts, &AtomicBool),
    tx: &mpsc::Sender<Done>,
) -> Option<Committed> {
    let mut wait = FAULT_RETRY.0;
    let mut faulted = false;
    loop {
        match decide_batch(ledger, (policy, clock), identity, prepared, delivered) {
            Ok(out) => {
                if faulted {
                    info!(
                        count = prepared.len(),
                        "ledger: committing again; the declarations held are decided"
                    );
                    let _ = tx.blocking_send(Done {
                        health: Some(LedgerHealth::Recovered),
                        ..Done::counts(counts)
                    });
                }
                return Some(out);
            }
            Err(e) if e.is_storage_fault() && !stopping.load(Ordering::Relaxed) => {
                if !faulted {
                    error!(error = %e, count = prepared.len(), "ledger: cannot commit; holding these declarations unacknowledged and retrying until it can");
                    faulted = true;
                    let _ = tx.blocking_send(Done {
                        health: Some(LedgerHealth::Fault(e.to_string())),
                        ..Done::counts(counts)
                    });
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(FAULT_RETRY.1);
            }
            Err(e) => {
                error!(error = %e, count = prepared.len(), "could not commit decisions; not acknowledging them");
                return None;
            }
        }
    }
}

fn decide_batch(
    ledger: &mut Ledger,
    (policy, clock): (&crate::policy::Policy, crate::clock_trust::ClockStatus),
    identity: &Identity,
    prepared: &[gate::Prepared],
    delivered: &[i64],
) -> Result<Committed, LedgerError> {
    let now = SystemClock.now();
    let mut added = Counts {
        verdicts: 0,
        consumed: 0,
        outbox: 0,
        policy_version: policy.version,
    };
    let mut batch = ledger.begin(identity)?;
    batch.clock = clock;
    batch.delete_publications(delivered)?;
    let mut publications = Vec::with_capacity(prepared.len());
    let mut decided = Vec::with_capacity(prepared.len());
    let mut alerts = Vec::new();
    for prepared in prepared {
        let mut out = gate::decide_and_record(&mut batch, prepared, policy, identity, now)?;
        added.verdicts += u64::from(out.recorded.audit_id.is_some());
        let consumed = u64::from(out.recorded.consumed_seq.is_some());
        added.consumed += consumed;
        added.outbox += consumed;
        let v = &out.verdict;
        info!(
            declaration_id = v.declaration_id.as_deref().unwrap_or("-"),
            license_id = v.license_id.as_deref().unwrap_or("-"),
            verdict = v.verdict.as_str(),
            reasons = %v.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(","),
            repeated = out.repeated,
            "decision"
        );
        let json = out
            .recorded
            .verdict_json
            .take()
            .unwrap_or_else(|| serde_json::to_string(v).unwrap_or_default());
        publications.push((
            batch.enqueue_publication("verdict", &json)?,
            "verdict".into(),
            json,
        ));
        if let Some(alert) = out.alert {
            warn!(declaration_id = v.declaration_id.as_deref().unwrap_or("-"), kind = ?alert.kind, "alert");
            let json = serde_json::to_string(&alert).unwrap_or_default();
            publications.push((
                batch.enqueue_publication("alert", &json)?,
                "alert".into(),
                json,
            ));
            alerts.push(Arc::new(alert));
        }
        // A redelivery's stored verdict is an answer, not a new decision.
        decided.push((!out.repeated).then(|| Arc::new(out.verdict)));
    }
    batch.commit()?;
    Ok(Committed {
        publications,
        added,
        decided,
        alerts,
    })
}

/// What one committed batch produced.
struct Committed {
    publications: Vec<Publication>,
    /// What the batch added to the ledger's totals.
    added: Counts,
    /// Per declaration, in order: the new verdict (`None` for a repeated one).
    decided: Vec<Option<Arc<crate::verdict::Verdict>>>,
    alerts: Vec<Arc<crate::verdict::Alert>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn policy() -> crate::policy::Policy {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = crate::policy::tests::sample(dir.path());
        crate::policy::Policy::load(&p).unwrap()
    }

    fn received(payload: Vec<u8>) -> Received {
        Received {
            publish: Publish::new("d", QoS::AtLeastOnce, payload, None),
            connection: 1,
            at: std::time::Instant::now(),
        }
    }

    fn batch(ids: &[&str], delivered: &[i64]) -> Verified {
        let declarations: Vec<Received> = ids
            .iter()
            .map(|id| received(id.as_bytes().to_vec()))
            .collect();
        let prepared = ids
            .iter()
            .map(|id| gate::prepare(id.as_bytes(), &POLICY, 1 << 20))
            .collect();
        Verified {
            declarations,
            prepared,
            delivered: delivered.to_vec(),
            resend: None,
            new_policy: None,
        }
    }

    static POLICY: std::sync::LazyLock<crate::policy::Policy> = std::sync::LazyLock::new(policy);

    fn ids(v: &Verified) -> Vec<String> {
        v.declarations
            .iter()
            .map(|r| String::from_utf8_lossy(&r.publish.payload).into_owned())
            .collect()
    }

    fn next(
        rx: &std::sync::mpsc::Receiver<Verified>,
        carried: &mut Option<Verified>,
        max: usize,
    ) -> Verified {
        next_batch(rx, carried, max).expect("a batch")
    }

    fn publications(ids: std::ops::RangeInclusive<i64>) -> Vec<Publication> {
        ids.map(|id| (id, "verdict".to_string(), format!("v{id}")))
            .collect()
    }

    fn held(out: &Outbound) -> Vec<i64> {
        out.publications.iter().map(|p| p.0).collect()
    }

    #[test]
    fn new_publications_beyond_what_is_held_are_left_to_a_resend_in_order() {
        let mut out = Outbound::default();
        let max = RESEND_MAX as i64;
        out.take(Vec::new(), publications(1..=max - 1), None, false);
        out.take(Vec::new(), publications(max..=max), None, false);
        assert_eq!(held(&out).len(), RESEND_MAX);
        // One more does not fit: it stays in the ledger's queue, and so does
        // every newer one until a re-send from the newest held catches up.
        out.take(Vec::new(), publications(max + 1..=max + 1), None, false);
        out.take(Vec::new(), publications(max + 2..=max + 2), None, false);
        assert_eq!(held(&out).len(), RESEND_MAX);
        assert_eq!(out.resend_due(), None, "not while some are held");
        out.publications.clear();
        assert_eq!(out.resend_due(), Some(max));
        assert_eq!(out.resend_due(), None, "asked once");
        // The re-send brings them back in order; it reached the newest, so new
        // ones are held again.
        out.take(Vec::new(), publications(max + 1..=max + 2), None, true);
        out.take(Vec::new(), publications(max + 3..=max + 3), None, false);
        assert_eq!(held(&out), [max + 1, max + 2, max + 3]);
    }

    #[test]
    fn a_resend_cut_short_asks_for_the_rest_and_new_ones_wait_for_it() {
        let mut out = Outbound::default();
        out.connected(true);
        // The first page of the queue, cut at 40.
        out.take(Vec::new(), publications(1..=40), Some(40), true);
        // Made meanwhile: left in the ledger, where the next page finds them.
        out.take(Vec::new(), publications(90..=91), None, false);
        assert_eq!(held(&out), (1..=40).collect::<Vec<_>>());
        out.publications.clear();
        assert_eq!(out.resend_due(), Some(40));
        out.take(Vec::new(), publications(41..=91), None, true);
        out.take(Vec::new(), publications(92..=92), None, false);
        assert_eq!(held(&out), (41..=92).collect::<Vec<_>>());
    }

    #[test]
    fn a_puback_names_the_queued_publication_handed_in_that_order() {
        let mut out = Outbound::default();
        // The status (not from the queue), then two verdicts.
        out.handed.extend([None, Some(7), Some(8)]);
        out.sent(11);
        out.sent(12);
        out.sent(13);
        assert_eq!(out.acknowledged(13), Some(8));
        assert_eq!(out.acknowledged(11), None);
        assert_eq!(out.acknowledged(12), Some(7));
        assert_eq!(out.acknowledged(12), None, "acknowledged once");
        // A new connection forgets what the old one had in flight, and what
        // was held: the queue is read again from the start.
        out.handed.push_back(Some(9));
        out.sent(1);
        out.take(Vec::new(), publications(10..=10), None, false);
        out.connected(true);
        assert_eq!(out.acknowledged(1), None);
        assert!(out.publications.is_empty() && out.handed.is_empty());
    }

    #[test]
    fn reads_pause_while_the_backlog_is_full_and_resume_when_it_is_half_empty() {
        let mut backlog = Backlog::default();
        let mut reads = Reads::default();
        for _ in 0..BACKLOG_MAX - 1 {
            backlog.push(Work::Resend(0));
        }
        reads.follow(&backlog);
        assert!(reads.may_poll(false));
        backlog.push(Work::Resend(0));
        reads.follow(&backlog);
        assert!(reads.paused() && !reads.may_poll(false));
        assert!(reads.may_poll(true), "a rush polls while paused");
        // One poll per pause interval.
        reads.allow_one();
        assert!(reads.may_poll(false));
        reads.polled();
        assert!(!reads.may_poll(false));
        // Still paused until half of it has gone to the worker.
        while backlog.items.len() > BACKLOG_MAX / 2 + 1 {
            backlog.pop();
        }
        reads.follow(&backlog);
        assert!(reads.paused());
        backlog.pop();
        reads.follow(&backlog);
        assert!(!reads.paused() && reads.may_poll(false));
        // A few large declarations fill it by bytes alone.
        backlog.clear();
        backlog.push(Work::Declaration(
            received(vec![0u8; BACKLOG_BYTES]),
            vec![3],
        ));
        reads.follow(&backlog);
        assert!(reads.paused());
        // A lost connection forgets the declaration but keeps its acknowledgements.
        backlog.forget_declarations();
        assert!(matches!(backlog.items.front(), Some(Work::Delivered(ids)) if ids == &[3]));
        reads.follow(&backlog);
        assert!(!reads.paused());
    }

    #[test]
    fn batches_waiting_together_are_committed_together_in_order() {
        let (tx, rx) = sync_channel(8);
        tx.send(batch(&["a"], &[1])).unwrap();
        tx.send(batch(&["b", "c"], &[2])).unwrap();
        tx.send(batch(&[], &[3])).unwrap();
        let mut carried = None;
        let b = next(&rx, &mut carried, 100);
        assert_eq!(ids(&b), ["a", "b", "c"]);
        assert_eq!(b.prepared.len(), 3);
        assert_eq!(b.delivered, [1, 2, 3]);
        assert!(carried.is_none());
        drop(tx);
        assert!(next_batch(&rx, &mut carried, 100).is_none());
    }

    #[test]
    fn a_full_batch_is_not_joined_and_a_resend_waits_its_turn() {
        let (tx, rx) = sync_channel(8);
        tx.send(batch(&["a", "b"], &[])).unwrap();
        tx.send(batch(&["c"], &[])).unwrap();
        let mut resend = batch(&["d"], &[]);
        resend.resend = Some(7);
        tx.send(resend).unwrap();
        tx.send(batch(&["e"], &[])).unwrap();
        let mut carried = None;
        // Full at two: "c" waits for the next turn.
        assert_eq!(ids(&next(&rx, &mut carried, 2)), ["a", "b"]);
        // "c" may not be joined by a batch that re-sends first.
        let c = next(&rx, &mut carried, 100);
        assert_eq!(ids(&c), ["c"]);
        assert_eq!(carried.as_ref().and_then(|b| b.resend), Some(7));
        // The re-sending batch comes alone, then the rest.
        let d = next(&rx, &mut carried, 100);
        assert_eq!((ids(&d), d.resend), (vec!["d".to_string()], Some(7)));
        assert_eq!(ids(&next(&rx, &mut carried, 100)), ["e"]);
    }

    #[test]
    fn a_policy_change_ends_the_joined_batch_after_its_declarations() {
        let (tx, rx) = sync_channel(8);
        tx.send(batch(&["a"], &[])).unwrap();
        let mut change = batch(&["b"], &[]);
        change.new_policy = Some(Box::new(POLICY.clone()));
        tx.send(change).unwrap();
        tx.send(batch(&["c"], &[])).unwrap();
        let mut carried = None;
        // "b" was decided under the old policy: it joins, and nothing after it does.
        let b = next(&rx, &mut carried, 100);
        assert_eq!(ids(&b), ["a", "b"]);
        assert!(b.new_policy.is_some());
        assert_eq!(ids(&next(&rx, &mut carried, 100)), ["c"]);
    }
}
