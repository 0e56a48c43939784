//! The checkpoint's sync task: sends its signed consumption records to the
//! hub until the hub acknowledges them, stores everyone's records from the
//! hub's feed, backfills gaps, and passes the hub's double-use alerts on.
//!
//! It has its own MQTT connection (the uplink may be another broker than
//! the declarations') and its own connection to the ledger file.
//!
//! Design: the broker is transport, never trust. An acknowledgement or a
//! feed message counts only if a hub key the policy names sealed it; every
//! record in the feed or in an alert is verified against the registry
//! before it is stored or acted on; anything else is refused, counted and
//! alerted at a bounded rate ([`crate::throttle`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::protocol::{Ack, BATCH_MAX, Backfill, Feed, HubStatus, HubTime, Records, SyncTopics};
use super::verify::{
    check_feed, log_inconsistent_alert, proven_double_use, refused_alert, verify_hub_head,
};

use crate::clock_trust::{judge, sample_words};
use crate::config::{MqttConfig, SyncConfig};
use crate::in_force::PolicyInForce;
use crate::ledger::{FeedConflict, Ledger, LedgerError, Publication};
use crate::merkle::head::Head;
use crate::mqtt::{Session, SessionEvent, topic_of};
use crate::registry::Registry;
use crate::throttle::{AlertThrottle, bounded_detail};
use crate::verdict::{Alert, AlertKind};

/// Everything the sync task needs.
pub struct Agent {
    /// This checkpoint's id.
    pub checkpoint: String,
    /// Its signing key, for backfill requests.
    pub key: SigningKey,
    /// The broker the hub is reached through.
    pub uplink: MqttConfig,
    /// TLS for the uplink.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Timing.
    pub sync: SyncConfig,
    /// Alerts to publish on the checkpoint's own alerts topic.
    pub publications: mpsc::Sender<Publication>,
    /// The authority's root key; signed policy bundles are applied when set.
    pub policy_root: Option<ed25519_dalek::VerifyingKey>,
    /// The policy in force: its registry says whose messages count.
    pub in_force: Arc<PolicyInForce>,
    /// Metrics and health.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Woken by the ledger stage when it commits consumptions: they go out at once.
    pub committed: Arc<tokio::sync::Notify>,
    /// Where the time is read.
    pub clock: crate::clock::SharedClock,
}

/// Most record batches sent per tick, so a long backlog goes out in steps.
const BATCHES_PER_TICK: usize = 20;
/// Records per batch.
const RECORDS_PER_BATCH: usize = BATCH_MAX;
/// A backfill request unanswered this long may be repeated.
const BACKFILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two backfill requests that a reply did not prompt.
const BACKFILL_GAP: Duration = Duration::from_millis(250);

struct State {
    /// Highest own record sent on this connection.
    sent_upto: u64,
    /// When the hub last moved our acknowledgement (or we last started over).
    last_progress: Instant,
    /// Wait before sending unacknowledged records again; doubles while the hub stays silent.
    resend_wait: Duration,
    /// A backfill request is out since then.
    backfill_since: Option<Instant>,
    /// The hub's head as last heard in a message it sealed.
    hub_head: u64,
    /// When the hub was last asked, gap or not.
    last_backfill: Instant,
    /// Which refusals raise an alert now.
    throttle: AlertThrottle,
    /// The hub head last published as this checkpoint's witness.
    witnessed: Option<String>,
    /// The `issued_at` of the last backfill request: its reply's sealed time answers it.
    asked_at: Option<i64>,
    /// The newest hub status seen (its time), so a replayed one changes nothing.
    hub_status_at: i64,
}

/// Runs until `stop` turns true, on its own connection to the ledger.
pub async fn run(agent: Agent, mut ledger: Ledger, mut stop: watch::Receiver<bool>) {
    let topics = SyncTopics::new(&agent.uplink.prefix);
    let opts = crate::mqtt::options(
        &agent.uplink,
        agent.tls.as_ref(),
        format!("permitgate-{}-sync", agent.checkpoint),
    );
    let mut session = Session::new(
        opts,
        1024,
        "sync uplink",
        Duration::from_secs(agent.uplink.reconnect_max_secs),
    );
    let resend_after = Duration::from_secs(agent.sync.resend_after_secs);
    let mut tick = tokio::time::interval(Duration::from_millis(agent.sync.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut st = State {
        sent_upto: 0,
        last_progress: Instant::now(),
        resend_wait: resend_after,
        backfill_since: None,
        hub_head: 0,
        last_backfill: Instant::now(),
        throttle: AlertThrottle::default(),
        witnessed: None,
        asked_at: None,
        hub_status_at: 0,
    };
    if agent.in_force.current().registry.hub_keys() == 0 {
        warn!(
            "sync: the policy names no hub key ([[hubs]]); no acknowledgement or feed from the hub can be accepted"
        );
    }
    // Design: besides gaps it sees in the feed, the agent asks the hub now
    // and then anyway, which is how it learns of entries it never heard of
    // (a broker restart without persistence, a ledger restored from a copy).
    let ask_every = Duration::from_millis(agent.sync.interval_ms.saturating_mul(10));
    loop {
        let ev = tokio::select! {
            _ = stop.changed() => {
                session.close().await;
                return;
            }
            _ = agent.committed.notified(), if session.connected() => {
                // Design: new consumptions go at once, not at the next tick,
                // so another post knows of them within a fraction of a second.
                let sync = Sync { agent: &agent, topics: &topics, client: &session.client };
                sync.send_records(&mut ledger, &mut st, resend_after);
                continue;
            }
            _ = tick.tick(), if session.connected() => {
                let sync = Sync { agent: &agent, topics: &topics, client: &session.client };
                sync.send_records(&mut ledger, &mut st, resend_after);
                let periodic = st.last_backfill.elapsed() >= ask_every;
                sync.maybe_backfill(&ledger, &mut st, periodic);
                continue;
            }
            ev = session.next() => ev,
        };
        let sync = Sync {
            agent: &agent,
            topics: &topics,
            client: &session.client,
        };
        match ev {
            SessionEvent::Connected => {
                agent
                    .telemetry
                    .link(crate::telemetry::LinkName::Uplink, true, agent.clock.now());
                st.sent_upto = 0;
                st.last_progress = Instant::now();
                st.resend_wait = resend_after;
                st.backfill_since = None;
                for t in [
                    topics.ack(&agent.checkpoint),
                    topics.backfill_reply(&agent.checkpoint),
                    topics.feed(),
                    topics.alerts(),
                    topics.witness_filter(),
                    topics.hub_status(),
                ] {
                    let _ = session.client.try_subscribe(t, QoS::AtLeastOnce);
                }
                if agent.policy_root.is_some() {
                    let _ = session
                        .client
                        .try_subscribe(topics.policy(), QoS::AtLeastOnce);
                }
                sync.send_records(&mut ledger, &mut st, resend_after);
                sync.maybe_backfill(&ledger, &mut st, true);
            }
            SessionEvent::Message(p) => {
                sync.on_message(&mut ledger, &mut st, &p).await;
                session.ack(&p);
            }
            SessionEvent::Lost => {
                agent
                    .telemetry
                    .link(crate::telemetry::LinkName::Uplink, false, agent.clock.now())
            }
            // Not a tracking session: never reported.
            SessionEvent::Sent(_) | SessionEvent::Acknowledged(_) => {}
        }
    }
}

struct Sync<'a> {
    agent: &'a Agent,
    topics: &'a SyncTopics,
    client: &'a AsyncClient,
}

impl Sync<'_> {
    /// Sends own records not yet in the hub's log, in batches, each with
    /// its inclusion proof against the newest signed head and, once, the
    /// proof that this head extends the one the hub holds.
    fn send_records(&self, ledger: &mut Ledger, st: &mut State, resend_after: Duration) {
        let depth = self.agent.telemetry.outbox_depth();
        if depth > 0 && st.last_progress.elapsed() >= st.resend_wait {
            // Nothing of ours reached the hub's log for a while: the hub (or a
            // bridge) may have lost them. Design: the wait doubles (to 64×
            // `resend_after`), so a hub that is down does not find its queue
            // flooded with copies.
            debug!(depth, wait = ?st.resend_wait, "sync: no progress; sending the outbox again");
            st.sent_upto = 0;
            st.last_progress = Instant::now();
            st.resend_wait = (st.resend_wait * 2).min(resend_after * 64);
        }
        let holds = blocking(|| ledger.hub_holds_head())
            .ok()
            .flatten()
            .and_then(|n| Head::peek(n.as_bytes()).ok());
        for _ in 0..BATCHES_PER_TICK {
            let batch = match blocking(|| ledger.outbox_proofs(st.sent_upto, RECORDS_PER_BATCH)) {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    error!(error = %e, "sync: cannot read the outbox");
                    return;
                }
            };
            let Some(last) = batch.records.last().map(|r| r.0) else {
                return;
            };
            let consistency = match &holds {
                Some(h) if h.size > 0 && h.size < batch.size => {
                    match blocking(|| ledger.log_consistency(h.size, batch.size)) {
                        Ok(p) => Some((h.size, p)),
                        Err(e) => {
                            warn!(error = %e, "sync: cannot prove this log extends the head the hub holds");
                            None
                        }
                    }
                }
                _ => None,
            };
            let msg = Records {
                head: batch.head,
                consistency,
                records: batch
                    .records
                    .into_iter()
                    .map(|(_, n, leaf, proof)| (n, leaf, proof))
                    .collect(),
            };
            if self
                .client
                .try_publish(
                    self.topics.records(&self.agent.checkpoint),
                    QoS::AtLeastOnce,
                    false,
                    msg.encode(),
                )
                .is_err()
            {
                return;
            }
            if let Err(e) = blocking(|| ledger.note_sent(last)) {
                error!(error = %e, "sync: cannot note what was sent");
            }
            st.sent_upto = last;
        }
    }

    /// Asks the hub for feed entries this ledger lacks: on a timer, or when a gap shows.
    ///
    /// Design: at most one request is out at a time, and one not prompted
    /// by a reply waits [`BACKFILL_GAP`] after the last; a reply asks again
    /// only if it brought something ([`Sync::on_feed`]). So no message, true
    /// or forged, can start an exchange that does not end.
    fn maybe_backfill(&self, ledger: &Ledger, st: &mut State, periodic: bool) {
        if st
            .backfill_since
            .is_some_and(|t| t.elapsed() < BACKFILL_TIMEOUT)
        {
            return;
        }
        if !periodic && st.last_backfill.elapsed() < BACKFILL_GAP {
            return;
        }
        let high_water = match blocking(|| ledger.feed_high_water()) {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "sync: cannot read the feed high-water mark");
                return;
            }
        };
        // The periodic request doubles as learning the hub's head after a restart.
        if !periodic && st.hub_head <= high_water {
            return;
        }
        self.ask(st, high_water);
    }

    fn ask(&self, st: &mut State, after: u64) {
        let issued_at = self.agent.clock.now();
        let req = Backfill {
            checkpoint: self.agent.checkpoint.clone(),
            after,
            limit: BATCH_MAX as u32,
            issued_at,
        };
        if self
            .client
            .try_publish(
                self.topics.backfill(),
                QoS::AtLeastOnce,
                false,
                req.seal(&self.agent.key),
            )
            .is_ok()
        {
            st.backfill_since = Some(Instant::now());
            st.last_backfill = Instant::now();
            st.asked_at = Some(issued_at);
        }
    }

    /// The hub's sealed time in a backfill reply: judges this clock, if it
    /// answers the request this checkpoint made last (not a replay).
    fn judge_clock(&self, st: &mut State, sealed: &[u8], registry: &Registry) {
        let now = self.agent.clock.now();
        let Ok(t) = HubTime::open(sealed, registry, now) else {
            // A hub key retired meanwhile, or a forgery: no judgement either way.
            return;
        };
        if t.checkpoint != self.agent.checkpoint || Some(t.asked_at) != st.asked_at {
            return;
        }
        st.asked_at = None;
        let status = judge(t.asked_at, now, t.hub_time, registry.skew());
        debug!(sample = %sample_words(t.asked_at, now, t.hub_time), ?status, "sync: the hub's time");
        self.agent.telemetry.clock.set(status);
    }

    async fn on_message(&self, ledger: &mut Ledger, st: &mut State, p: &Publish) {
        let cp = &self.agent.checkpoint;
        let topic = topic_of(p);
        if topic == self.topics.ack(cp) {
            self.on_ack(ledger, st, &p.payload).await;
        } else if topic == self.topics.feed() || topic == self.topics.backfill_reply(cp) {
            self.on_feed(ledger, st, &p.payload, topic != self.topics.feed())
                .await;
        } else if topic == self.topics.policy() {
            self.on_policy(ledger, st, &p.payload).await;
        } else if topic == self.topics.alerts() {
            self.on_hub_alert(ledger, st, &p.payload).await;
        } else if topic == self.topics.hub_status() {
            self.on_hub_status(ledger, st, &p.payload);
        } else if topic.ends_with("/sync/witness") && topic != self.topics.witness(cp) {
            self.on_witness(ledger, st, &p.payload).await;
        }
    }

    async fn on_ack(&self, ledger: &mut Ledger, st: &mut State, payload: &[u8]) {
        let cp = &self.agent.checkpoint;
        let now = self.agent.clock.now();
        let ack = match Ack::open(payload, &self.registry(), now) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(ledger, st, "ack", e.code(), &e.to_string(), payload)
                    .await;
            }
        };
        if ack.checkpoint != *cp {
            let why = format!(
                "an acknowledgement for `{}` on this checkpoint's topic",
                ack.checkpoint
            );
            return self
                .refuse(ledger, st, "ack", "wrong_checkpoint", &why, payload)
                .await;
        }
        // Design: an acknowledgement deletes nothing (records leave the
        // outbox only once seen in the hub's signed log); it says which of
        // our heads the hub holds, so the next proof starts from it.
        if let Some(note) = &ack.post_head {
            let origin = crate::merkle::head::checkpoint_origin(cp);
            match Head::open(note.as_bytes(), &origin, &[self.agent.key.verifying_key()]) {
                Ok(_) => {
                    if let Err(e) = blocking(|| ledger.set_hub_holds_head(note)) {
                        error!(error = %e, "sync: cannot keep the head the hub holds");
                    }
                }
                Err(e) => {
                    let why =
                        format!("the hub says it holds a head this checkpoint did not sign: {e}");
                    return self
                        .refuse(ledger, st, "ack", "bad_signature", &why, payload)
                        .await;
                }
            }
        }
        if ack.resend {
            // The hub could not place records without a proof from the head it holds.
            st.sent_upto = 0;
        }
        self.agent.telemetry.synced(now);
        debug!(
            contiguous = ack.contiguous,
            "sync: hub acknowledged records"
        );
    }

    async fn on_feed(&self, ledger: &mut Ledger, st: &mut State, payload: &[u8], reply: bool) {
        let now = self.agent.clock.now();
        let registry = self.registry();
        let feed = match Feed::decode(payload) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .refuse(ledger, st, "feed", "unreadable", &e.to_string(), payload)
                    .await;
            }
        };
        let checked = match check_feed(&feed, &registry) {
            Ok(c) => c,
            Err(e) => {
                let code = match e {
                    crate::merkle::head::HeadError::Unverified { .. } => "bad_signature",
                    crate::merkle::head::HeadError::WrongLog { .. } => "wrong_log",
                    crate::merkle::head::HeadError::Malformed(_) => "unreadable",
                };
                return self
                    .refuse(ledger, st, "feed", code, &e.to_string(), payload)
                    .await;
            }
        };
        if reply {
            st.backfill_since = None;
            if let Some(t) = &feed.time {
                self.judge_clock(st, t, &registry);
            }
        }
        st.hub_head = st.hub_head.max(checked.hub_head.size);
        for (_, code, why) in &checked.refused {
            self.refuse(ledger, st, "feed", code, why, payload).await;
        }
        let before = blocking(|| ledger.feed_high_water()).unwrap_or(0);
        let hub_head = (&checked.hub_head, checked.hub_note.as_str());
        let out = match blocking(|| ledger.store_feed(&checked.entries, Some(hub_head), now)) {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "sync: cannot store feed entries; the hub will be asked again");
                return;
            }
        };
        let progress = out.stored > 0 || out.high_water > before;
        if out.stored > 0 {
            debug!(
                stored = out.stored,
                high_water = out.high_water,
                "sync: stored feed entries"
            );
            self.agent.telemetry.synced(now);
        }
        if out.included > 0 {
            let t = &self.agent.telemetry;
            let left = blocking(|| ledger.outbox_depth()).unwrap_or(0);
            t.outbox(left, ledger.oldest_unsynced().unwrap_or(None));
            st.last_progress = Instant::now();
            st.resend_wait = Duration::from_secs(self.agent.sync.resend_after_secs);
        }
        self.conflicts(ledger, st, &out.conflicts, payload).await;
        for p in out.publications {
            warn!(
                "alert: a license consumed here was also consumed at another checkpoint (double use)"
            );
            let _ = self.agent.publications.send(p).await;
        }
        self.witness(ledger, st);
        // A reply that brought nothing ends the exchange until the next
        // periodic request, whatever head it claims.
        if !reply || progress {
            self.maybe_backfill(ledger, st, false);
        }
    }

    /// The hub came back: what waits goes at once, not after the back-off.
    fn on_hub_status(&self, ledger: &mut Ledger, st: &mut State, payload: &[u8]) {
        let Ok(status) = HubStatus::open(payload, &self.registry(), self.agent.clock.now()) else {
            // Unsealed or stale: a hub status proves nothing, and costs nothing to ignore.
            self.agent.telemetry.refused("hub_status", "bad_signature");
            return;
        };
        if status.issued_at <= st.hub_status_at {
            return;
        }
        st.hub_status_at = status.issued_at;
        if status.state == "online" {
            info!(kid = %status.kid, "sync: the hub is back; sending what waits");
            st.sent_upto = 0;
            st.last_progress = Instant::now();
            st.resend_wait = Duration::from_secs(self.agent.sync.resend_after_secs);
            self.send_records(ledger, st, st.resend_wait);
            self.maybe_backfill(ledger, st, true);
        }
    }

    /// Publishes (retained) the newest hub head the replica matched, so
    /// other checkpoints can check the hub shows them the same history.
    fn witness(&self, ledger: &Ledger, st: &mut State) {
        let Ok(Some(note)) = blocking(|| ledger.newest_hub_head()) else {
            return;
        };
        if st.witnessed.as_deref() == Some(note.as_str()) {
            return;
        }
        if self
            .client
            .try_publish(
                self.topics.witness(&self.agent.checkpoint),
                QoS::AtLeastOnce,
                true,
                note.clone().into_bytes(),
            )
            .is_ok()
        {
            st.witnessed = Some(note);
        }
    }

    /// Another checkpoint's witnessed hub head: checked against this replica.
    async fn on_witness(&self, ledger: &mut Ledger, st: &mut State, payload: &[u8]) {
        let note = String::from_utf8_lossy(payload).into_owned();
        let head = match verify_hub_head(&note, &self.registry()) {
            Ok(h) => h,
            Err(e) => {
                return self
                    .refuse(
                        ledger,
                        st,
                        "witness",
                        "bad_signature",
                        &e.to_string(),
                        payload,
                    )
                    .await;
            }
        };
        match blocking(|| ledger.witness_hub_head(&head, &note, self.agent.clock.now())) {
            Ok(conflicts) => self.conflicts(ledger, st, &conflicts, payload).await,
            Err(e) => error!(error = %e, "sync: cannot keep a witnessed hub head"),
        }
    }

    /// Raises what a feed or a witnessed head contradicted.
    async fn conflicts(
        &self,
        ledger: &mut Ledger,
        st: &mut State,
        conflicts: &[FeedConflict],
        payload: &[u8],
    ) {
        for c in conflicts {
            match c {
                FeedConflict::GlobalNumber { .. } => {
                    self.refuse(
                        ledger,
                        st,
                        "feed",
                        "conflicting_entry",
                        &c.to_string(),
                        payload,
                    )
                    .await
                }
                FeedConflict::Record { .. } => {
                    self.refuse(
                        ledger,
                        st,
                        "feed",
                        "conflicting_record",
                        &c.to_string(),
                        payload,
                    )
                    .await
                }
                FeedConflict::LostOwn { .. } | FeedConflict::HubLog { .. } => {
                    let now = self.agent.clock.now();
                    let heads = match c {
                        FeedConflict::HubLog { head, earlier, .. } => {
                            let mut h = vec![head.clone()];
                            h.extend(earlier.clone());
                            h
                        }
                        FeedConflict::LostOwn { head, .. } => {
                            let mut h = vec![head.clone()];
                            h.extend(blocking(|| ledger.log_head()).ok().flatten().map(|x| x.1));
                            h
                        }
                        _ => Vec::new(),
                    };
                    let alert =
                        log_inconsistent_alert(&self.agent.checkpoint, &c.to_string(), heads, now);
                    error!(detail = %c, "alert: a log is inconsistent");
                    self.agent.telemetry.refused("feed", "log_inconsistent");
                    match blocking(|| ledger.queue_sync_alert(&alert, now)) {
                        Ok(Some(p)) => {
                            let _ = self.agent.publications.send(p).await;
                        }
                        Ok(None) => {}
                        Err(e) => error!(error = %e, "sync: cannot store the alert"),
                    }
                }
            }
        }
    }

    /// A `double_use` alert from the hub counts only through its evidence:
    /// every record in it verified, two or more for one license. The alert
    /// stored and passed on is rebuilt from those records.
    async fn on_hub_alert(&self, ledger: &mut Ledger, st: &mut State, payload: &[u8]) {
        let alert = match serde_json::from_slice::<Alert>(payload) {
            Ok(a) => a,
            Err(e) => {
                let why = format!("not an alert: {e}");
                return self
                    .refuse(ledger, st, "alert", "unreadable", &why, payload)
                    .await;
            }
        };
        // The hub's other alerts concern the hub (records it refused).
        if alert.kind != AlertKind::DoubleUse {
            return;
        }
        let now = self.agent.clock.now();
        match proven_double_use(&alert, &self.registry(), now) {
            Ok(rebuilt) => match blocking(|| ledger.queue_sync_alert(&rebuilt, now)) {
                Ok(Some(publication)) => {
                    warn!(
                        license_id = rebuilt.license_id.as_deref().unwrap_or("-"),
                        "alert: double use reported by the hub, evidence verified"
                    );
                    let _ = self.agent.publications.send(publication).await;
                }
                Ok(None) => {}
                Err(e) => error!(error = %e, "sync: cannot store the hub's alert"),
            },
            Err(why) => {
                self.refuse(ledger, st, "alert", "unproven_alert", &why, payload)
                    .await
            }
        }
    }

    /// Applies a signed policy bundle if it verifies and may replace the
    /// policy in force ([`crate::in_force`]); keeps it in the ledger.
    async fn on_policy(&self, ledger: &mut Ledger, st: &mut State, bundle: &[u8]) {
        let Some(root) = &self.agent.policy_root else {
            return;
        };
        let now = self.agent.clock.now();
        let p = match crate::bundle::open(bundle, root) {
            Ok(p) => p,
            Err(e) => {
                let current = self.agent.in_force.current().version;
                warn!(error = %e, current, "policy bundle refused; keeping the current policy");
                return self
                    .refuse(ledger, st, "policy", "bad_bundle", &e.to_string(), bundle)
                    .await;
            }
        };
        let version = p.version;
        // The decision stages watch the policy in force; putting it there is all.
        match self.agent.in_force.offer(p, now) {
            Ok(_) => {
                if let Err(e) = blocking(|| ledger.store_policy_bundle(version, bundle, now)) {
                    error!(error = %e, "policy bundle verified but not stored; applying it anyway");
                }
                info!(version, "signed policy bundle accepted");
            }
            // The retained bundle comes again on every connection.
            Err(crate::in_force::Refusal::NotNewer { offered, in_force })
                if offered == in_force => {}
            Err(e) => {
                warn!(error = %e, "policy bundle refused; keeping the current policy");
                self.agent.telemetry.refused("policy", "not_admissible");
            }
        }
    }

    fn registry(&self) -> Registry {
        self.agent.in_force.current().registry.clone()
    }

    /// A refused message or record: counted always, logged and alerted
    /// (`refused_record`, with the payload's SHA-256) at most once a minute
    /// per kind of message and reason.
    async fn refuse(
        &self,
        ledger: &mut Ledger,
        st: &mut State,
        message: &'static str,
        reason: &'static str,
        detail: &str,
        payload: &[u8],
    ) {
        self.agent.telemetry.refused(message, reason);
        let now = self.agent.clock.now();
        let Some(held_back) = st.throttle.admit(message, reason, now) else {
            return;
        };
        let detail = bounded_detail(detail);
        warn!(message, reason, %detail, held_back, "sync: refused");
        let alert = refused_alert(
            &self.agent.checkpoint,
            message,
            reason,
            &detail,
            held_back,
            payload,
            now,
        );
        match blocking(|| ledger.queue_sync_alert(&alert, now)) {
            Ok(Some(p)) => {
                let _ = self.agent.publications.send(p).await;
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "sync: cannot store a refusal alert"),
        }
    }
}

/// Runs a short ledger operation without holding up the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
    tokio::task::block_in_place(f)
}
