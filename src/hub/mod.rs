//! `permitgate hub`: receives every checkpoint's signed consumption
//! records, verifies them against the registry the policy carries, stores
//! them once in a global order, acknowledges them to their checkpoint,
//! redistributes them to all, serves backfill, and raises double use.
//!
//! Design: a record batch is acknowledged to the broker only after the
//! store commits, so a hub killed mid-batch gets it again; storing is
//! idempotent. Acknowledgements to checkpoints are retained messages; the
//! feed is best-effort, and checkpoints backfill whatever they missed.
//! Acknowledgements and feed messages are sealed with the hub's key
//! ([`crate::sync::protocol`]): checkpoints act on nothing else.

mod config;
pub mod http;
pub mod intake;
mod national;
mod records;
pub mod store;

pub use config::HubConfig;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tracing::{error, info, warn};

use crate::clock::{Now, SystemClock};
use crate::in_force::PolicyInForce;
use crate::mqtt::{Session, SessionEvent, topic_of};
use crate::sync::protocol::{HubStatus, SyncTopics};
use intake::{Incoming, Intake, IntakeConfig};
use store::{Store, StoreError};

/// Why the hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP listener did not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// The hub's key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The policy does not list this hub's key: checkpoints would refuse everything it sends.
    #[error(
        "the policy ({policy}) does not list this hub's key as `{kid}` valid now in `[[hubs]]`; checkpoints would refuse every acknowledgement and feed message. Add an entry with id = \"{kid}\" and public_key_file = \"{public}\""
    )]
    NotRegistered {
        /// The policy file.
        policy: String,
        /// The configured kid.
        kid: String,
        /// The hub's public key file.
        public: String,
    },
}

/// Longest a message's handling may wait on the store before it is tried again.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Records messages stored in one transaction at most.
const GROUP_MAX: usize = 20;

/// Bytes of records messages stored in one transaction at most.
const GROUP_BYTES: usize = 8 << 20;

/// Runs the hub until `shutdown` completes.
pub async fn run(cfg: HubConfig, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
    run_with_clock(cfg, Arc::new(SystemClock), shutdown).await
}

/// [`run`], reading the time from `clock` everywhere (tests drive it).
pub async fn run_with_clock(
    cfg: HubConfig,
    clock: crate::clock::SharedClock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HubError> {
    let (key, created) = crate::keys::load_or_create_signing_key(&cfg.key_file)?;
    if created {
        info!(path = %cfg.key_file.display(), "created the hub's key");
    }
    let now = clock.now();
    if cfg
        .policy
        .registry
        .hub_key_at(&cfg.kid, now)
        .ok()
        .is_none_or(|k| k != key.verifying_key())
    {
        let file = cfg.key_file.to_string_lossy();
        let public = file
            .strip_suffix(".key.pem")
            .map(|s| format!("{s}.pub.pem"))
            .unwrap_or_else(|| "(the public half of the hub's key)".into());
        return Err(HubError::NotRegistered {
            policy: cfg.policy_file.display().to_string(),
            kid: cfg.kid.clone(),
            public,
        });
    }
    let mut store = Store::open(&cfg.store).await?;
    store.ensure_head(&key, now).await?;
    let (records, alerts) = store.counts().await?;
    info!(
        store = %store::redacted(&cfg.store),
        records,
        alerts,
        checkpoints = cfg.policy.registry.checkpoint_ids().len(),
        kid = %cfg.kid,
        "hub store open"
    );
    let mut opts = crate::mqtt::options(&cfg.mqtt, cfg.mqtt_tls.as_ref(), "permitgate-hub".into());
    // If this hub dies, the broker says so for it (sealed now, so only a
    // genuine hub's will counts).
    opts.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        SyncTopics::new(&cfg.mqtt.prefix).hub_status(),
        HubStatus::offline(&cfg.kid, now).seal(&cfg.kid, &key),
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let mut session = Session::new(
        opts,
        10_000,
        "hub",
        Duration::from_secs(cfg.mqtt.reconnect_max_secs),
    );
    let telemetry = http::HubTelemetry::new();
    let in_force = PolicyInForce::new(cfg.policy.clone());
    let http_task = match &cfg.http {
        Some(h) => Some(
            http::start(
                h,
                http::Sources {
                    telemetry: telemetry.clone(),
                    reader: store.reader().await?,
                    clock: clock.clone(),
                    signin: cfg
                        .national
                        .clone()
                        .map(|n| Arc::new(crate::signin::SignIn::new(n, clock.clone()))),
                    in_force: in_force.clone(),
                },
            )
            .await?,
        ),
        None => None,
    };
    let mut intake = Intake::new(IntakeConfig {
        kid: cfg.kid.clone(),
        key,
        prefix: cfg.mqtt.prefix.clone(),
        share_group: cfg.share_group.clone(),
        policy_root: cfg.policy_root,
        in_force,
        telemetry: telemetry.clone(),
    });
    let started = Instant::now();
    let now = || Now {
        mono: started.elapsed().as_millis() as u64,
        unix: clock.now(),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::pin!(shutdown);
    // Messages received and not yet handled, in arrival order (PUBACKs go
    // out in that order). Design: while the store fails (a database
    // failing over), they wait here unacknowledged and are tried again,
    // and the session is still polled, so the broker keeps the connection.
    let mut pending: VecDeque<Publish> = VecDeque::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut failures = 0u32;
    loop {
        let due = retry_at.unwrap_or_else(tokio::time::Instant::now);
        let ev = tokio::select! {
            _ = &mut shutdown => {
                info!("hub shutting down");
                let o = intake.status(false, clock.now());
                let _ = session.client.try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload);
                session.close().await;
                if let Some(t) = http_task {
                    t.abort();
                }
                return Ok(());
            }
            ev = session.next() => Some(ev),
            _ = tokio::time::sleep_until(due), if retry_at.is_some() => {
                retry_at = None;
                None
            }
        };
        // Design: every message already received is taken before any is
        // handled, so that consecutive records messages form one group.
        let mut ev = ev;
        loop {
            match ev {
                Some(SessionEvent::Connected) => {
                    telemetry.broker(true);
                    for t in intake.subscriptions() {
                        let _ = session.client.try_subscribe(t, QoS::AtLeastOnce);
                    }
                    // Checkpoints that see the hub back send what waits at once.
                    let o = intake.status(true, clock.now());
                    let _ =
                        session
                            .client
                            .try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload);
                }
                Some(SessionEvent::Message(p)) => pending.push_back(p),
                // Unacknowledged messages come again on the next connection.
                Some(SessionEvent::Lost) => {
                    telemetry.broker(false);
                    pending.clear();
                }
                // Not a tracking session: never reported.
                Some(SessionEvent::Refused(reason)) => telemetry.publish_refused(&reason),
                Some(SessionEvent::Sent(_) | SessionEvent::Acknowledged(_)) | None => {}
            }
            if pending.len() >= GROUP_MAX {
                break;
            }
            match session.try_next() {
                Some(next) => ev = Some(next),
                None => break,
            }
        }
        while retry_at.is_none() && !pending.is_empty() {
            // Design: consecutive records messages waiting are stored in one
            // transaction (a group commit) and acknowledged together after it.
            let mut records = 0;
            let group = pending
                .iter()
                .take_while(|p| {
                    records += p.payload.len();
                    intake.is_records(topic_of(p)) && records <= GROUP_BYTES
                })
                .take(GROUP_MAX)
                .count()
                .max(1);
            let group: Vec<Publish> = pending.range(..group).cloned().collect();
            // Design: a database that stops answering (a primary frozen
            // mid-failover) must not hold the hub for ever; the operation is
            // idempotent, so it is tried again.
            let started = Instant::now();
            let incoming: Vec<Incoming> = group
                .iter()
                .map(|p| Incoming {
                    topic: topic_of(p),
                    payload: &p.payload,
                })
                .collect();
            let handled = tokio::time::timeout(
                STORE_TIMEOUT,
                intake.handle_group(&mut store, &incoming, now()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StoreError {
                    path: std::path::PathBuf::from(store::redacted(&cfg.store)),
                    message: format!("no answer within {STORE_TIMEOUT:?}"),
                })
            });
            match handled {
                Ok(outs) => {
                    if failures > 0 {
                        info!(after = failures, "hub: the store works again");
                        failures = 0;
                        telemetry.store_failing(None);
                    }
                    telemetry.handled(started.elapsed().as_secs_f64(), pending.len() - group.len());
                    // Stored (or nothing to store): only now may the broker forget them.
                    for p in pending.drain(..group.len()) {
                        session.ack(&p);
                    }
                    for o in outs {
                        tracing::debug!(topic = %o.topic, bytes = o.payload.len(), "hub: publishing");
                        if session
                            .client
                            .try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload)
                            .is_err()
                        {
                            warn!("hub: outgoing queue full; checkpoints will backfill");
                        }
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        error!(error = %e, waiting = pending.len(), "hub: the store fails; holding messages unacknowledged and trying again");
                        telemetry.store_failing(Some(clock.now()));
                    }
                    failures = failures.saturating_add(1);
                    let wait =
                        Duration::from_millis(250 << failures.min(5)).min(Duration::from_secs(5));
                    retry_at = Some(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
}
