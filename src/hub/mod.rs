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

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::in_force::PolicyInForce;
use crate::mqtt::{Session, SessionEvent, topic_of};
use crate::record::ConsumptionRecord;
use crate::sync::protocol::{Ack, Backfill, HubStatus, HubTime, Records, SyncTopics};
use crate::sync::verify::{log_inconsistent_alert, verify_post_head};
use crate::throttle::{AlertThrottle, bounded_detail};
use store::{Placed, Store, StoreError};

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
}

/// Runs the hub until `shutdown` completes.
pub async fn run(cfg: HubConfig, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
    let (key, created) = crate::keys::load_or_create_signing_key(&cfg.key_file)?;
    if created {
        info!(path = %cfg.key_file.display(), "created the hub's key");
    }
    let now = SystemClock.now();
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
    let http_task = match &cfg.http {
        Some(h) => Some(http::start(h.listen, telemetry.clone(), store.reader().await?).await?),
        None => None,
    };
    let mut hub = Hub {
        topics: SyncTopics::new(&cfg.mqtt.prefix),
        in_force: PolicyInForce::new(cfg.policy.clone()),
        cfg,
        store,
        key,
        throttle: AlertThrottle::default(),
        answered: HashMap::new(),
        telemetry: telemetry.clone(),
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
                    HubStatus::offline(&hub.cfg.kid, SystemClock.now()).seal(&hub.cfg.kid, &hub.key),
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
        match ev {
            Some(SessionEvent::Connected) => {
                telemetry.broker(true);
                let group = &hub.cfg.share_group;
                for t in [hub.topics.records_filter(), hub.topics.backfill()] {
                    let _ = session
                        .client
                        .try_subscribe(format!("$share/{group}/{t}"), QoS::AtLeastOnce);
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
                    HubStatus::online(&hub.cfg.kid, SystemClock.now()).seal(&hub.cfg.kid, &hub.key),
                );
            }
            Some(SessionEvent::Message(p)) => pending.push_back(p),
            // Unacknowledged messages come again on the next connection.
            Some(SessionEvent::Lost) => {
                telemetry.broker(false);
                pending.clear();
            }
            Some(SessionEvent::Other) | None => {}
        }
        while retry_at.is_none()
            && let Some(p) = pending.front()
        {
            // Design: a database that stops answering (a primary frozen
            // mid-failover) must not hold the hub for ever; the operation is
            // idempotent, so it is tried again.
            let started = Instant::now();
            let handled = tokio::time::timeout(STORE_TIMEOUT, hub.handle(p, SystemClock.now()))
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
                    telemetry.handled(started.elapsed().as_secs_f64(), pending.len() - 1);
                    // Stored (or nothing to store): only now may the broker forget it.
                    session.ack(p);
                    pending.pop_front();
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
                        telemetry.store_failing(Some(SystemClock.now()));
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
    async fn handle(&mut self, p: &Publish, now: UnixTime) -> Result<Vec<Out>, StoreError> {
        let topic = topic_of(p);
        if let Some(sender) = self.topics.checkpoint_of_records(topic) {
            let sender = sender.to_owned();
            return self.on_records(&sender, &p.payload, now).await;
        }
        if topic == self.topics.backfill() {
            return self.on_backfill(&p.payload, now).await;
        }
        if topic == self.topics.policy() {
            return self.on_policy(&p.payload, now);
        }
        Ok(Vec::new())
    }

    async fn on_records(
        &mut self,
        sender: &str,
        payload: &[u8],
        now: UnixTime,
    ) -> Result<Vec<Out>, StoreError> {
        let mut outs = Vec::new();
        let batch = match Records::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                self.refuse(
                    &mut outs,
                    sender,
                    "unreadable",
                    &e.to_string(),
                    payload,
                    now,
                )
                .await?;
                return Ok(outs);
            }
        };
        let registry = self.in_force.current().registry.clone();
        let head = match verify_post_head(&batch.head, &registry) {
            Ok((cp, _)) if cp != sender => {
                let why = format!("a head of `{cp}` sent on the topic of `{sender}`");
                self.refuse(&mut outs, sender, "wrong_topic", &why, payload, now)
                    .await?;
                return Ok(outs);
            }
            Ok((_, head)) => head,
            Err(e) => {
                let why = format!("sent on the topic of `{sender}`: {e}");
                self.refuse(&mut outs, sender, e.code(), &why, payload, now)
                    .await?;
                return Ok(outs);
            }
        };
        // Design: the checkpoint's log only ever grows. Each new head must
        // extend the newest one held, by a consistency proof from it; a head
        // that shrinks it or contradicts it is `log_inconsistent`.
        let held = self.store.post_head(sender).await?;
        if let Some((size, root, note)) = &held {
            let verdict = match (head.size.cmp(size), &batch.consistency) {
                (std::cmp::Ordering::Equal, _) => (head.root == *root).then_some(()).ok_or(
                    "two heads of the same size with different roots: the log was rewritten",
                ),
                // An older head: a message delayed, redelivered, or taken by
                // another hub first. It must agree with the head of its size
                // the hub holds, if any; otherwise it is sent again, current.
                (std::cmp::Ordering::Less, _) => {
                    match self.store.post_head_at(sender, head.size).await? {
                        Some(held_root) if held_root != head.root => Err(
                            "two heads of the same size with different roots: the log was rewritten",
                        ),
                        Some(_) => Ok(()),
                        None => {
                            outs.push(self.ack(sender, Some(note.clone()), true, now).await?);
                            return Ok(outs);
                        }
                    }
                }
                (std::cmp::Ordering::Greater, Some((from, proof))) if from == size => {
                    crate::merkle::verify_consistency(proof, *size, root, head.size, &head.root)
                        .map_err(|_| {
                            "its new head does not extend the one the hub holds: the log was rewritten"
                        })
                }
                (std::cmp::Ordering::Greater, _) => {
                    // No proof from the head the hub holds: ask for it.
                    outs.push(self.ack(sender, Some(note.clone()), true, now).await?);
                    return Ok(outs);
                }
            };
            if let Err(why) = verdict {
                let alert = log_inconsistent_alert(
                    "hub",
                    &format!("checkpoint `{sender}`: {why}"),
                    vec![note.clone(), batch.head.clone()],
                    now,
                );
                error!(
                    checkpoint = sender,
                    why, "hub: a checkpoint's log is inconsistent"
                );
                if self.store.record_alert(&alert, now).await? {
                    self.telemetry.alerted(alert.kind.as_str());
                    outs.push(Out {
                        topic: self.topics.alerts(),
                        payload: serde_json::to_vec(&alert).unwrap_or_default(),
                        retain: false,
                    });
                }
                return Ok(outs);
            }
        }
        self.store
            .keep_post_head(sender, &head, &batch.head, now)
            .await?;
        let skew = registry.skew();
        let mut placed = Vec::new();
        for (index, leaf, proof) in batch.records {
            let rec = match ConsumptionRecord::from_leaf(&leaf) {
                Ok(r) if r.checkpoint == sender => r,
                Ok(r) => {
                    let why = format!(
                        "record of `{}` sent on the topic of `{sender}`",
                        r.checkpoint
                    );
                    self.refuse(&mut outs, sender, "wrong_topic", &why, &leaf, now)
                        .await?;
                    continue;
                }
                Err(e) => {
                    self.refuse(&mut outs, sender, e.code(), &e.to_string(), &leaf, now)
                        .await?;
                    continue;
                }
            };
            // Design: a record already stored byte for byte was checked when
            // it was stored; a resent copy costs a lookup, not a proof.
            let known = self.store.held(sender, rec.seq).await?.as_ref() == Some(&leaf);
            if !known {
                if let Err(e) =
                    crate::merkle::verify_inclusion(&proof, head.size, &head.root, index, &leaf)
                {
                    let why = format!(
                        "record {} of `{sender}` is not in its signed log: {e}",
                        rec.seq
                    );
                    self.refuse(&mut outs, sender, "not_included", &why, &leaf, now)
                        .await?;
                    continue;
                }
                if rec.consumed_at > head.time.saturating_add(skew) {
                    let why = format!("record {} of `{sender}` is dated after its head", rec.seq);
                    self.refuse(&mut outs, sender, "after_head", &why, &leaf, now)
                        .await?;
                    continue;
                }
            }
            placed.push(Placed {
                record: rec,
                leaf,
                post_index: index,
                post_size: head.size,
                post_proof: proof,
            });
        }
        if placed.is_empty() {
            return Ok(outs);
        }
        let stored = self.store.store(&placed, &self.key, now).await?;
        for (cp, _) in &stored.contiguous {
            outs.push(self.ack(cp, Some(batch.head.clone()), false, now).await?);
        }
        if let Some(feed) = stored.feed {
            self.telemetry.stored(feed.entries.len() as u64);
            let head = feed.entries.last().map(|e| e.g).unwrap_or(0);
            info!(
                sender,
                stored = feed.entries.len(),
                head,
                "hub: records stored"
            );
            outs.push(Out {
                topic: self.topics.feed(),
                payload: feed.encode(),
                retain: false,
            });
        }
        for a in stored.alerts {
            self.telemetry.alerted(a.kind.as_str());
            warn!(license_id = a.license_id.as_deref().unwrap_or("-"), kind = ?a.kind, "hub: alert");
            outs.push(Out {
                topic: self.topics.alerts(),
                payload: serde_json::to_vec(&a).unwrap_or_default(),
                retain: false,
            });
        }
        Ok(outs)
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
        Ok(Out {
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
        })
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
                    Ok(_) => info!(version, "hub: signed policy bundle accepted"),
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
