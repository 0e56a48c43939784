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
mod national;
mod records;
pub mod store;

pub use config::HubConfig;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tracing::{error, info, warn};

use crate::clock::{SystemClock, UnixTime};
use crate::in_force::PolicyInForce;
use crate::mqtt::{Session, SessionEvent, topic_of};
use crate::sync::protocol::{Ack, Backfill, HubStatus, HubTime, SyncTopics};
use crate::throttle::{AlertThrottle, bounded_detail};
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

/// A message the hub sends after a commit.
struct Out {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Longest a message's handling may wait on the store before it is tried again.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Records messages stored in one transaction at most.
const GROUP_MAX: usize = 20;

/// Bytes of records messages stored in one transaction at most.
const GROUP_BYTES: usize = 8 << 20;

/// The same backfill request answered again within this is ignored (a replay).
const BACKFILL_REPEAT: Duration = Duration::from_secs(1);

/// What the hub's message handling owns.
struct Hub {
    cfg: HubConfig,
    topics: SyncTopics,
    store: Store,
    key: SigningKey,
    in_force: Arc<PolicyInForce>,
    throttle: AlertThrottle,
    /// Per checkpoint: the last backfill answered, and when.
    answered: HashMap<String, (u64, Instant)>,
    /// Metrics and health.
    telemetry: Arc<http::HubTelemetry>,
    /// Checkpoint head notes already verified: (checkpoint, head).
    heads: HashMap<String, (String, crate::merkle::head::Head)>,
    /// Heads verified in the group being handled, not yet stored.
    group_heads: Vec<store::PostHead>,
}

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
    let mut hub = Hub {
        topics: SyncTopics::new(&cfg.mqtt.prefix),
        in_force,
        cfg,
        store,
        key,
        throttle: AlertThrottle::default(),
        answered: HashMap::new(),
        telemetry: telemetry.clone(),
        heads: HashMap::new(),
        group_heads: Vec::new(),
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
                let _ = session.client.try_publish(
                    hub.topics.hub_status(),
                    QoS::AtLeastOnce,
                    true,
                    HubStatus::offline(&hub.cfg.kid, clock.now()).seal(&hub.cfg.kid, &hub.key),
                );
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
                    // Design: one share name per filter. MQTT keeps a group per
                    // (name, filter) anyway; rumqttd (the embedded broker of
                    // `permitgate dev country`) keys groups by name alone, and
                    // two filters under one name starve one of them.
                    let group = &hub.cfg.share_group;
                    for (t, name) in [
                        (hub.topics.records_filter(), group.clone()),
                        (hub.topics.backfill(), format!("{group}.backfill")),
                    ] {
                        let _ = session
                            .client
                            .try_subscribe(format!("$share/{name}/{t}"), QoS::AtLeastOnce);
                    }
                    // Every hub process follows the policy, so not shared.
                    if hub.cfg.policy_root.is_some() {
                        let _ = session
                            .client
                            .try_subscribe(hub.topics.policy(), QoS::AtLeastOnce);
                    }
                    // Checkpoints that see the hub back send what waits at once.
                    let _ = session.client.try_publish(
                        hub.topics.hub_status(),
                        QoS::AtLeastOnce,
                        true,
                        HubStatus::online(&hub.cfg.kid, clock.now()).seal(&hub.cfg.kid, &hub.key),
                    );
                }
                Some(SessionEvent::Message(p)) => pending.push_back(p),
                // Unacknowledged messages come again on the next connection.
                Some(SessionEvent::Lost) => {
                    telemetry.broker(false);
                    pending.clear();
                }
                // Not a tracking session: never reported.
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
                    hub.is_records(p) && records <= GROUP_BYTES
                })
                .take(GROUP_MAX)
                .count()
                .max(1);
            let group: Vec<Publish> = pending.range(..group).cloned().collect();
            // Design: a database that stops answering (a primary frozen
            // mid-failover) must not hold the hub for ever; the operation is
            // idempotent, so it is tried again.
            let started = Instant::now();
            let handled =
                tokio::time::timeout(STORE_TIMEOUT, hub.handle_group(&group, clock.now()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError {
                            path: std::path::PathBuf::from(store::redacted(&hub.cfg.store)),
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

impl Hub {
    /// Whether `p` carries records (and may be stored in a group with others).
    fn is_records(&self, p: &Publish) -> bool {
        self.topics.checkpoint_of_records(topic_of(p)).is_some()
    }

    /// Handles a group of messages: consecutive records messages are
    /// checked one by one and stored in one transaction; anything else
    /// comes alone.
    async fn handle_group(
        &mut self,
        group: &[Publish],
        now: UnixTime,
    ) -> Result<Vec<Out>, StoreError> {
        let started = Instant::now();
        self.group_heads.clear();
        let mut outs = Vec::new();
        let mut checked = Vec::new();
        for p in group {
            let Some(sender) = self.topics.checkpoint_of_records(topic_of(p)) else {
                outs.extend(self.handle(p, now).await?);
                continue;
            };
            let sender = sender.to_owned();
            if let Some(c) = self
                .check_records(&sender, &p.payload, now, &mut outs)
                .await?
            {
                checked.push(c);
            }
        }
        let checked_at = Instant::now();
        let records: usize = checked.iter().map(|c| c.placed_len()).sum();
        self.store_checked(checked, now, &mut outs).await?;
        tracing::debug!(
            messages = group.len(),
            records,
            check_ms = (checked_at - started).as_millis() as u64,
            store_ms = checked_at.elapsed().as_millis() as u64,
            "hub: group handled"
        );
        Ok(outs)
    }

    async fn handle(&mut self, p: &Publish, now: UnixTime) -> Result<Vec<Out>, StoreError> {
        let topic = topic_of(p);
        if topic == self.topics.backfill() {
            return self.on_backfill(&p.payload, now).await;
        }
        if topic == self.topics.policy() {
            return self.on_policy(&p.payload, now);
        }
        Ok(Vec::new())
    }

    /// The sealed acknowledgement for `checkpoint`: what the hub holds of it.
    async fn ack(
        &mut self,
        checkpoint: &str,
        post_head: Option<String>,
        resend: bool,
        now: UnixTime,
    ) -> Result<Out, StoreError> {
        let contiguous = self.store.contiguous(checkpoint).await?;
        let post_head = match post_head {
            Some(h) => Some(h),
            None => self.store.post_head(checkpoint).await?.map(|h| h.2),
        };
        Ok(self.ack_at(checkpoint, contiguous, post_head, resend, now))
    }

    /// The sealed acknowledgement of `contiguous` records of `checkpoint`.
    fn ack_at(
        &self,
        checkpoint: &str,
        contiguous: u64,
        post_head: Option<String>,
        resend: bool,
        now: UnixTime,
    ) -> Out {
        Out {
            topic: self.topics.ack(checkpoint),
            payload: Ack {
                checkpoint: checkpoint.to_owned(),
                contiguous,
                post_head,
                resend,
                issued_at: now,
            }
            .seal(&self.cfg.kid, &self.key),
            retain: true,
        }
    }

    /// Answers a sealed backfill request with at most one feed message.
    ///
    /// Design: the request is sealed by its checkpoint, and the same one
    /// again within [`BACKFILL_REPEAT`] is not answered, so neither a
    /// forgery nor a replayed request can make the hub talk on its own.
    async fn on_backfill(&mut self, payload: &[u8], now: UnixTime) -> Result<Vec<Out>, StoreError> {
        let registry = self.in_force.current().registry.clone();
        let req = match Backfill::open(payload, &registry, now) {
            Ok(r) => r,
            Err(e) => {
                let mut outs = Vec::new();
                self.refuse(
                    &mut outs,
                    "backfill",
                    e.code(),
                    &e.to_string(),
                    payload,
                    now,
                )
                .await?;
                return Ok(outs);
            }
        };
        if let Some((after, at)) = self.answered.get(&req.checkpoint)
            && *after == req.after
            && at.elapsed() < BACKFILL_REPEAT
        {
            return Ok(Vec::new());
        }
        self.answered
            .insert(req.checkpoint.clone(), (req.after, Instant::now()));
        let Some(mut feed) = self.store.feed_after(req.after, req.limit as usize).await? else {
            return Ok(Vec::new());
        };
        // The hub's time, for the checkpoint to check its clock against.
        feed.time = Some(
            HubTime {
                checkpoint: req.checkpoint.clone(),
                asked_at: req.issued_at,
                hub_time: now,
            }
            .seal(&self.cfg.kid, &self.key),
        );
        Ok(vec![Out {
            topic: self.topics.backfill_reply(&req.checkpoint),
            payload: feed.encode(),
            retain: false,
        }])
    }

    /// Follows the authority's signed policy bundles: a new checkpoint's key, a retired one.
    fn on_policy(&mut self, bundle: &[u8], now: UnixTime) -> Result<Vec<Out>, StoreError> {
        let Some(root) = &self.cfg.policy_root else {
            return Ok(Vec::new());
        };
        match crate::bundle::open(bundle, root) {
            Ok(p) => {
                let version = p.version;
                match self.in_force.offer(p, now) {
                    Ok(_) => {
                        // Keys may have been retired: verify heads again.
                        self.heads.clear();
                        info!(version, "hub: signed policy bundle accepted");
                    }
                    Err(crate::in_force::Refusal::NotNewer { offered, in_force })
                        if offered == in_force => {}
                    Err(e) => warn!(error = %e, "hub: policy bundle refused"),
                }
            }
            Err(e) => warn!(error = %e, "hub: policy bundle refused"),
        }
        Ok(Vec::new())
    }

    /// A refused record or request: logged and alerted (`refused_record`)
    /// at most once a minute per sender and reason.
    async fn refuse(
        &mut self,
        outs: &mut Vec<Out>,
        sender: &str,
        reason: &'static str,
        detail: &str,
        payload: &[u8],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.telemetry.refused(reason);
        let Some(held_back) = self.throttle.admit(sender, reason, now) else {
            return Ok(());
        };
        let detail = bounded_detail(detail);
        warn!(sender = %crate::throttle::truncate(sender, 80), reason, %detail, held_back, "hub: refused");
        let alert = crate::sync::verify::refused_alert(
            "hub", "record", reason, &detail, held_back, payload, now,
        );
        if self.store.record_alert(&alert, now).await? {
            outs.push(Out {
                topic: self.topics.alerts(),
                payload: serde_json::to_vec(&alert).unwrap_or_default(),
                retain: false,
            });
        }
        Ok(())
    }
}
