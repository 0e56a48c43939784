//! `permitgate run`: declarations in over MQTT, verdicts and alerts out.
//!
//! One module per stage: `startup` and `reload` (the policy in force,
//! the integrity check, SIGHUP), `messages` (what stages hand each other,
//! with every queue's bound), `session` (the connection's state, pure),
//! `connection` (the task that takes the MQTT session's events and
//! carries them out), `verify` and `ledger_stage`. This file wires them.
//!
//! Two parts:
//! - the **connection task** takes the events of the MQTT session
//!   ([`crate::mqtt::Session`], whose own task polls rumqttc) and is the
//!   only caller of the client, so acknowledgements and publications go
//!   out in the order it issues them;
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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::in_force::PolicyInForce;
use crate::keys;
use crate::ledger::{Identity, Ledger, LedgerError};
use crate::telemetry::Telemetry;

mod connection;
mod ledger_stage;
mod messages;
mod reload;
mod session;
mod stages;
mod startup;
#[cfg(test)]
mod tests;
mod verify;
use self::{connection::*, ledger_stage::*, messages::*, reload::*, startup::*, verify::*};
pub use startup::newest_policy;

/// The name of the async runtime's threads `permitgate run` starts (the
/// connection task, the MQTT session, the console, sync).
pub const RUNTIME_THREAD: &str = "async";

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
    /// A thread of the daemon could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// Why the system refused it.
        source: std::io::Error,
    },
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

/// The embedded broker's largest payload: below the clients' packet limit,
/// so it never takes a message it could not deliver.
pub(super) const EMBEDDED_PAYLOAD_MAX: usize = 16_000_000;

/// Runs the daemon until `shutdown` completes; then drains and exits cleanly.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    run_with_clock(cfg, Arc::new(SystemClock), shutdown).await
}

/// [`run`], reading the time from `clock` everywhere (tests drive it).
pub async fn run_with_clock(
    cfg: Config,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (key, created) = keys::load_or_create_signing_key(&cfg.checkpoint_key)?;
    if created {
        info!(path = %cfg.checkpoint_key.display(), "created checkpoint key");
    }
    let identity = Identity {
        checkpoint: cfg.checkpoint.clone(),
        key,
    };
    let mut ledger = Ledger::open_checking_later(&cfg.ledger, &cfg.checkpoint)?;
    let upgraded = ledger.upgrade_log(&identity.key, clock.now())?;
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
        return Err(LedgerError::unusable(&cfg.ledger, crate::ledger::Operation::Open, format!(
                "contradicts its own last signed head ({why}); examine it with `permitgate ledger check` and restore it from a backup"
            ))
        .into());
    }
    let check = integrity_check_in_background(&ledger, own_keys)?;
    let crate::ledger::LedgerCounts {
        verdicts,
        consumed,
        outbox,
    } = ledger.counts()?;
    info!(
        checkpoint = %cfg.checkpoint,
        ledger = %cfg.ledger.display(),
        policy_version = policy.version,
        verdicts, consumed, outbox,
        "ledger open, policy loaded"
    );
    let telemetry = Telemetry::new(&cfg.ledger, cfg.uplink.is_some(), clock.now());
    telemetry.policy(policy.version, policy.issued_at, policy.max_age);
    telemetry.ledger_counts(verdicts, consumed);
    telemetry.outbox(outbox, ledger.oldest_unsynced().unwrap_or(None));
    let in_force = PolicyInForce::new(policy.clone());
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
            let desk = match &cfg.desk {
                Some(d) => Some(Arc::new(crate::desk::Desk::new(
                    d.clone(),
                    ledger.second_handle()?,
                    identity.clone(),
                    in_force.watch(),
                    clock.clone(),
                ))),
                None => None,
            };
            Some(
                crate::http::start(
                    http,
                    crate::http::Sources {
                        telemetry: telemetry.clone(),
                        checkpoint: cfg.checkpoint.clone(),
                        clock: clock.clone(),
                        desk,
                        ledger: ledger.second_handle().ok(),
                    },
                )
                .await?,
            )
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
        status.render("offline", counts, None, clock.now()),
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let mut session = crate::mqtt::Session::tracking(
        opts,
        QUEUE * 2,
        "broker",
        Duration::from_secs(cfg.mqtt.reconnect_max_secs),
        BROKER_EVENTS,
    );
    // Alerts the sync task stores go out on this connection.
    let (sync_pubs_tx, sync_pubs_rx) = mpsc::channel::<Publication>(256);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let policy_rx = in_force.watch();
    let reload_task = tokio::spawn(reload_on_sighup(
        cfg.file.clone(),
        cfg.policy_file.clone(),
        in_force.clone(),
        clock.clone(),
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
                    clock: clock.clone(),
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
    let in_verify = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stages = stages::Stages::new(work_tx, staged_tx.clone(), in_verify.clone());
    let cannot_start = |what| move |source| DaemonError::Thread { what, source };
    let verify_policy = policy.clone();
    let worker_stopping = stopping.clone();
    let worker_telemetry = telemetry.clone();
    let worker_clock = clock.clone();
    let verifier = std::thread::Builder::new()
        .name("verify".into())
        .spawn(move || {
            verify_stage(
                verify_policy,
                max_bytes,
                batch_max,
                work_rx,
                staged_tx,
                in_verify,
            )
        })
        .map_err(cannot_start("verify"))?;
    let worker = std::thread::Builder::new()
        .name("ledger".into())
        .spawn(move || {
            ledger_stage(
                Worker {
                    clock: worker_clock,
                    ledger,
                    policy,
                    identity,
                    counts,
                    stopping: worker_stopping,
                    telemetry: worker_telemetry,
                    batch_max,
                    committed,
                    max_bytes,
                },
                staged_rx,
                done_tx,
            )
        })
        .map_err(cannot_start("ledger"))?;

    // READY once the ledger is open and the policy loaded (systemd Type=notify).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let conn = Connection {
        clock: clock.clone(),
        client: session.client.clone(),
        topics,
        status,
        inflight: cfg.mqtt.inflight as usize,
        stopping,
        telemetry: telemetry.clone(),
    };
    let damaged = conn
        .drive(
            &mut session,
            counts,
            stages,
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
pub(super) async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
