//! The hub's intake as a state machine: messages in (records, backfill
//! requests, policy bundles), messages out (acknowledgements, the feed,
//! backfill replies, alerts), the time passed in. Its durable memory is
//! the [`Store`], passed in with each group of messages; what it keeps
//! besides (verified heads, the alert throttle, requests answered) is lost
//! with the process. [`super::run`] drives it over MQTT; the country
//! simulation ([`crate::sim`]) over a simulated broker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tracing::{info, warn};

use super::http::HubTelemetry;
use super::store::{self, Store, StoreError};
use crate::clock::{Millis, Now, UnixTime};
use crate::in_force::PolicyInForce;
use sha2::{Digest, Sha256};

use crate::sync::protocol::{
    Ack, BATCH_MAX, Backfill, HubStatus, HubTime, MESSAGE_MAX, REQUEST_MAX, SyncTopics,
};
use crate::throttle::{AlertThrottle, bounded_detail};

/// A message the hub received.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
}

/// A message the hub sends (QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retained.
    pub retain: bool,
}

/// The intake's settings.
pub struct IntakeConfig {
    /// The kid the policy lists this hub's key under.
    pub kid: String,
    /// The hub's signing key.
    pub key: SigningKey,
    /// The national broker's topic prefix.
    pub prefix: String,
    /// Shared-subscription group hub processes share the load in.
    pub share_group: String,
    /// The authority's root key: signed policy bundles are applied when set.
    pub policy_root: Option<ed25519_dalek::VerifyingKey>,
    /// The policy in force: its registry says whose records count.
    pub in_force: Arc<PolicyInForce>,
    /// Metrics and health.
    pub telemetry: Arc<HubTelemetry>,
}

/// Backfill requests of one checkpoint key answered in any second, at most
/// (one more when it is the key's newest request: see `on_backfill`).
pub const BACKFILL_RATE: usize = 50;

/// Backfill requests of one checkpoint key remembered, so that the same
/// request again (a replay, a duplicate) is not answered twice.
pub const BACKFILL_REMEMBERED: usize = 256;

/// What the hub remembers of one checkpoint key's backfill requests.
#[derive(Debug, Default)]
struct Asker {
    /// SHA-256 of the requests answered lately, oldest first.
    answered: VecDeque<[u8; 32]>,
    /// When replies went out in the last second.
    replies: VecDeque<Millis>,
    /// The newest `issued_at` among its requests answered.
    fresh_at: UnixTime,
}

/// The hub's intake, between groups of messages.
pub struct Intake {
    pub(super) cfg: IntakeConfig,
    pub(super) topics: SyncTopics,
    pub(super) throttle: AlertThrottle,
    /// Per checkpoint key: the backfill requests answered lately.
    askers: HashMap<String, Asker>,
    /// Every request remembered as answered, whoever asked.
    answered: std::collections::HashSet<[u8; 32]>,
    /// Checkpoint head notes already verified: (checkpoint, head).
    pub(super) heads: HashMap<String, (String, crate::merkle::head::Head)>,
    /// Heads verified in the group being handled, not yet stored.
    pub(super) group_heads: Vec<store::PostHead>,
}

impl Intake {
    /// An intake with nothing in memory.
    pub fn new(cfg: IntakeConfig) -> Intake {
        Intake {
            topics: SyncTopics::new(&cfg.prefix),
            cfg,
            throttle: AlertThrottle::default(),
            askers: HashMap::new(),
            answered: Default::default(),
            heads: HashMap::new(),
            group_heads: Vec::new(),
        }
    }

    /// What to subscribe to on (re)connecting.
    pub fn subscriptions(&self) -> Vec<String> {
        // Design: one share name per filter. MQTT keeps a group per
        // (name, filter) anyway; rumqttd (the embedded broker of
        // `permitgate dev country`) keys groups by name alone, and two
        // filters under one name starve one of them.
        let group = &self.cfg.share_group;
        let mut s = vec![
            format!("$share/{group}/{}", self.topics.records_filter()),
            format!("$share/{group}.backfill/{}", self.topics.backfill()),
        ];
        // Every hub process follows the policy, so not shared.
        if self.cfg.policy_root.is_some() {
            s.push(self.topics.policy());
        }
        s
    }

    /// The hub's sealed status (`online` on connecting, `offline` on
    /// leaving and as its last will), retained on the status topic.
    pub fn status(&self, online: bool, now: UnixTime) -> Out {
        let status = if online {
            HubStatus::online(&self.cfg.kid, now)
        } else {
            HubStatus::offline(&self.cfg.kid, now)
        };
        Out {
            topic: self.topics.hub_status(),
            payload: status.seal(&self.cfg.kid, &self.cfg.key),
            retain: true,
        }
    }

    /// Whether what it remembers is within its bounds (the simulation
    /// checks it after every step): verified heads, and per checkpoint key
    /// the requests it answered and when.
    pub fn within_bounds(&self) -> Result<(), String> {
        if self.heads.len() > super::records::HEADS_KEPT {
            return Err(format!("{} verified heads kept", self.heads.len()));
        }
        for (cp, a) in &self.askers {
            if a.answered.len() > BACKFILL_REMEMBERED || a.replies.len() > BACKFILL_RATE + 1 {
                return Err(format!(
                    "{} requests and {} replies remembered for {cp}",
                    a.answered.len(),
                    a.replies.len()
                ));
            }
        }
        if self.answered.len() > BACKFILL_REMEMBERED * self.askers.len() {
            return Err(format!(
                "{} requests remembered in all",
                self.answered.len()
            ));
        }
        Ok(())
    }

    /// Whether a message on `topic` carries records (and may be stored in a group with others).
    pub fn is_records(&self, topic: &str) -> bool {
        self.topics.checkpoint_of_records(topic).is_some()
    }

    /// Handles a group of messages: consecutive records messages are
    /// checked one by one and stored in one transaction; anything else
    /// comes alone. What to publish once the group is acknowledged comes back.
    pub async fn handle_group(
        &mut self,
        store: &mut Store,
        group: &[Incoming<'_>],
        now: Now,
    ) -> Result<Vec<Out>, StoreError> {
        let started = std::time::Instant::now();
        self.group_heads.clear();
        let mut outs = Vec::new();
        let mut checked = Vec::new();
        for m in group {
            let Some(sender) = self.topics.checkpoint_of_records(m.topic) else {
                outs.extend(self.handle(store, m, now).await?);
                continue;
            };
            let sender = sender.to_owned();
            if let Some(c) = self
                .check_records(store, &sender, m.payload, now.unix, &mut outs)
                .await?
            {
                checked.push(c);
            }
        }
        let checked_at = std::time::Instant::now();
        let records: usize = checked.iter().map(|c| c.placed_len()).sum();
        self.store_checked(store, checked, now.unix, &mut outs)
            .await?;
        tracing::debug!(
            messages = group.len(),
            records,
            check_ms = (checked_at - started).as_millis() as u64,
            store_ms = checked_at.elapsed().as_millis() as u64,
            "hub: group handled"
        );
        Ok(outs)
    }

    async fn handle(
        &mut self,
        store: &mut Store,
        m: &Incoming<'_>,
        now: Now,
    ) -> Result<Vec<Out>, StoreError> {
        if m.topic == self.topics.backfill() {
            return self.on_backfill(store, m.payload, now).await;
        }
        if m.topic == self.topics.policy() {
            self.on_policy(m.payload, now.unix);
        }
        Ok(Vec::new())
    }

    /// The sealed acknowledgement of `contiguous` records of `checkpoint`,
    /// naming the head of its that the message acknowledged carried.
    pub(super) fn ack_at(
        &self,
        checkpoint: &str,
        contiguous: u64,
        post_head: Option<String>,
        now: UnixTime,
    ) -> Out {
        Out {
            topic: self.topics.ack(checkpoint),
            payload: Ack {
                checkpoint: checkpoint.to_owned(),
                contiguous,
                post_head,
                resend: false,
                issued_at: now,
            }
            .seal(&self.cfg.kid, &self.cfg.key),
            retain: true,
        }
    }

    /// Answers a sealed backfill request with at most one feed message.
    ///
    /// Design: the request is sealed by its checkpoint; the same request
    /// again is not answered while it is remembered (the last
    /// [`BACKFILL_REMEMBERED`] of each checkpoint key), and no key gets more
    /// than [`BACKFILL_RATE`] replies in any second, so neither a forgery
    /// nor replays nor a key-holder's flood can make the hub talk more; and
    /// the key's newest request is answered whatever else arrived, so
    /// replays cannot starve the post that made it.
    async fn on_backfill(
        &mut self,
        store: &mut Store,
        payload: &[u8],
        now: Now,
    ) -> Result<Vec<Out>, StoreError> {
        let mut outs = Vec::new();
        if payload.len() > REQUEST_MAX {
            let why = format!(
                "a backfill request of {} bytes, more than {REQUEST_MAX}",
                payload.len()
            );
            self.refuse(
                store,
                &mut outs,
                "backfill",
                "too_large",
                &why,
                &payload[..64],
                now.unix,
            )
            .await?;
            return Ok(outs);
        }
        // Design: a request answered before was verified before: its bytes
        // again are a replay or a duplicate, ignored without a signature check.
        let digest: [u8; 32] = Sha256::digest(payload).into();
        if self.answered.contains(&digest) {
            self.cfg.telemetry.backfill_ignored("repeated");
            return Ok(outs);
        }
        let registry = self.cfg.in_force.current().registry.clone();
        let req = match Backfill::open(payload, &registry, now.unix) {
            Ok(r) => r,
            Err(e) => {
                let why = e.to_string();
                self.refuse(
                    store,
                    &mut outs,
                    "backfill",
                    e.code(),
                    &why,
                    payload,
                    now.unix,
                )
                .await?;
                return Ok(outs);
            }
        };
        let skew = registry.skew();
        let asker = self.askers.entry(req.checkpoint.clone()).or_default();
        while asker
            .replies
            .front()
            .is_some_and(|t| now.mono.saturating_sub(*t) >= 1_000)
        {
            asker.replies.pop_front();
        }
        // Design: a request newer than any answered for this key (and not
        // from the future) is answered even over the rate, so replays of
        // old requests, however many, cannot starve the post: it gets one
        // reply a second at least. (Its holder can only take that turn.)
        let fresh = req.issued_at > asker.fresh_at && req.issued_at <= now.unix + skew;
        if asker.replies.len() >= BACKFILL_RATE && !fresh {
            self.cfg.telemetry.backfill_ignored("rate");
            return Ok(outs);
        }
        let Some(mut feed) = store.feed_after(req.after, req.limit as usize).await? else {
            return Ok(outs);
        };
        // Answered (the store read succeeded): remembered only now, so a
        // request the store failed on is answered when it is tried again.
        let asker = self.askers.entry(req.checkpoint.clone()).or_default();
        if fresh {
            asker.fresh_at = req.issued_at;
        }
        asker.replies.push_back(now.mono);
        if asker.replies.len() > BACKFILL_RATE + 1 {
            asker.replies.pop_front();
        }
        if asker.answered.len() >= BACKFILL_REMEMBERED
            && let Some(old) = asker.answered.pop_front()
        {
            self.answered.remove(&old);
        }
        asker.answered.push_back(digest);
        self.answered.insert(digest);
        // The hub's time, for the checkpoint to check its clock against.
        feed.time = Some(
            HubTime {
                checkpoint: req.checkpoint.clone(),
                asked_at: req.issued_at,
                hub_time: now.unix,
            }
            .seal(&self.cfg.kid, &self.cfg.key),
        );
        // As many entries as fit one message; the post asks for the rest.
        if let Some(reply) = super::records::split_feed(feed, BATCH_MAX, MESSAGE_MAX)
            .into_iter()
            .next()
        {
            outs.push(Out {
                topic: self.topics.backfill_reply(&req.checkpoint),
                payload: reply.encode(),
                retain: false,
            });
        }
        Ok(outs)
    }

    /// Follows the authority's signed policy bundles: a new checkpoint's key, a retired one.
    fn on_policy(&mut self, bundle: &[u8], now: UnixTime) {
        let Some(root) = &self.cfg.policy_root else {
            return;
        };
        match crate::bundle::open(bundle, root) {
            Ok(p) => {
                let version = p.version;
                match self.cfg.in_force.offer(p, now) {
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
    }

    /// A refused record or request: logged and alerted (`refused_record`)
    /// at most once a minute per sender and reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn refuse(
        &mut self,
        store: &mut Store,
        outs: &mut Vec<Out>,
        sender: &str,
        reason: &'static str,
        detail: &str,
        payload: &[u8],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.cfg.telemetry.refused(reason);
        let Some(held_back) = self.throttle.admit(sender, reason, now) else {
            return Ok(());
        };
        let detail = bounded_detail(detail);
        warn!(sender = %crate::throttle::truncate(sender, 80), reason, %detail, held_back, "hub: refused");
        let alert = crate::sync::verify::refused_alert(
            "hub", "record", reason, &detail, held_back, payload, now,
        );
        if store.record_alert(&alert, now).await? {
            outs.push(Out {
                topic: self.topics.alerts(),
                payload: crate::sync::verify::alert_json_within(&alert, MESSAGE_MAX),
                retain: false,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
