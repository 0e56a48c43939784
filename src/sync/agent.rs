//! The checkpoint's sync task: sends its signed consumption records to the
//! hub until the hub acknowledges them, stores everyone's records from the
//! hub's feed, backfills gaps, and passes the hub's double-use alerts on.
//!
//! It has its own MQTT connection (the uplink may be another broker than
//! the declarations') and its own connection to the ledger file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::protocol::{Ack, BATCH_MAX, Backfill, Feed, Records, SyncTopics};
use crate::clock::{Clock, SystemClock};
use crate::config::{MqttConfig, SyncConfig};
use crate::ledger::{Ledger, LedgerError, Publication};
use crate::record::ConsumptionRecord;
use crate::verdict::{Alert, AlertKind};

/// Everything the sync task needs.
pub struct Agent {
    /// This checkpoint's id.
    pub checkpoint: String,
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
    /// The version of the policy in force (bundles must be newer).
    pub policy_version: Arc<AtomicU64>,
    /// Verified newer policies, for the decision worker.
    pub policies: mpsc::Sender<crate::policy::Policy>,
    /// Metrics and health.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// Most record batches sent per tick, so a long backlog goes out in steps.
const BATCHES_PER_TICK: usize = 10;
/// Records per batch.
const RECORDS_PER_BATCH: usize = 100;

struct State {
    link: crate::mqtt::Link,
    /// Highest own record sent on this connection.
    sent_upto: u64,
    /// When the hub last moved our acknowledgement (or we last started over).
    last_progress: Instant,
    /// Wait before sending unacknowledged records again; doubles while the hub stays silent.
    resend_wait: Duration,
    /// A backfill request is out since then.
    backfill_since: Option<Instant>,
    /// The hub's head as last heard.
    hub_head: u64,
    /// When the hub was last asked, gap or not.
    last_backfill: Instant,
}

/// Runs until `stop` turns true, on its own connection to the ledger.
pub async fn run(agent: Agent, mut ledger: Ledger, mut stop: watch::Receiver<bool>) {
    let topics = SyncTopics::new(&agent.uplink.prefix);
    let mut opts = crate::mqtt::options(
        &agent.uplink,
        agent.tls.as_ref(),
        format!("permitgate-{}-sync", agent.checkpoint),
    );
    opts.set_max_packet_size(4 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    eventloop.set_network_options(crate::mqtt::network_options());
    let reconnect_max = Duration::from_secs(agent.uplink.reconnect_max_secs);
    let resend_after = Duration::from_secs(agent.sync.resend_after_secs);
    let mut tick = tokio::time::interval(Duration::from_millis(agent.sync.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut st = State {
        link: crate::mqtt::Link::default(),
        sent_upto: 0,
        last_progress: Instant::now(),
        resend_wait: resend_after,
        backfill_since: None,
        hub_head: 0,
        last_backfill: Instant::now(),
    };
    // Design: besides gaps it sees in the feed, the agent asks the hub now
    // and then anyway, which is how it learns of entries it never heard of
    // (a broker restart without persistence, a ledger restored from a copy).
    let ask_every = Duration::from_millis(agent.sync.interval_ms.saturating_mul(10));
    let sync = Sync {
        agent: &agent,
        topics: &topics,
        client: &client,
    };
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if st.link.connected {
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
                }
                return;
            }
            _ = tick.tick(), if st.link.connected => {
                sync.send_records(&mut ledger, &mut st, resend_after);
                let periodic = st.last_backfill.elapsed() >= ask_every;
                sync.maybe_backfill(&ledger, &mut st, periodic);
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                    info!(uplink = %format!("{}:{}", agent.uplink.host, agent.uplink.port), "sync: connected to the uplink");
                    st.link.up();
                    agent.telemetry.link(true, true, SystemClock.now());
                    st.sent_upto = 0;
                    st.last_progress = Instant::now();
                    st.resend_wait = resend_after;
                    st.backfill_since = None;
                    for t in [topics.ack(&agent.checkpoint), topics.backfill_reply(&agent.checkpoint), topics.feed(), topics.alerts()] {
                        let _ = client.try_subscribe(t, QoS::AtLeastOnce);
                    }
                    if agent.policy_root.is_some() {
                        let _ = client.try_subscribe(topics.policy(), QoS::AtLeastOnce);
                    }
                    sync.send_records(&mut ledger, &mut st, resend_after);
                    sync.maybe_backfill(&ledger, &mut st, true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    sync.on_message(&mut ledger, &mut st, &p).await;
                    let _ = client.try_ack(&p);
                }
                Ok(_) => {}
                Err(e) => {
                    let wait = st.link.down(&mut eventloop, &e, "sync uplink", reconnect_max);
                    agent.telemetry.link(true, false, SystemClock.now());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
            },
        }
    }
}

struct Sync<'a> {
    agent: &'a Agent,
    topics: &'a SyncTopics,
    client: &'a AsyncClient,
}

impl Sync<'_> {
    /// Sends own records the hub has not acknowledged, in batches.
    fn send_records(&self, ledger: &mut Ledger, st: &mut State, resend_after: Duration) {
        let depth = self.agent.telemetry.outbox_depth();
        if depth > 0 && st.last_progress.elapsed() >= st.resend_wait {
            // No acknowledgement for a while: the hub (or a bridge) may have
            // lost them. Design: the wait doubles (to 64× `resend_after`), so a
            // hub that is down does not find its queue flooded with copies.
            debug!(depth, wait = ?st.resend_wait, "sync: no acknowledgement; sending the outbox again");
            st.sent_upto = 0;
            st.last_progress = Instant::now();
            st.resend_wait = (st.resend_wait * 2).min(resend_after * 64);
        }
        for _ in 0..BATCHES_PER_TICK {
            let batch = match blocking(|| ledger.outbox_after(st.sent_upto, RECORDS_PER_BATCH)) {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "sync: cannot read the outbox");
                    return;
                }
            };
            let Some(last) = batch.last().map(|r| r.0) else {
                return;
            };
            let msg = Records {
                records: batch.into_iter().map(|r| r.1).collect(),
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
            st.sent_upto = last;
        }
    }

    /// Asks the hub for feed entries this ledger lacks: on a timer, or when a gap shows.
    fn maybe_backfill(&self, ledger: &Ledger, st: &mut State, periodic: bool) {
        if st
            .backfill_since
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
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
        let req = Backfill {
            checkpoint: self.agent.checkpoint.clone(),
            after: high_water,
            limit: BATCH_MAX as u32,
        };
        if self
            .client
            .try_publish(
                self.topics.backfill(),
                QoS::AtLeastOnce,
                false,
                req.encode(),
            )
            .is_ok()
        {
            st.backfill_since = Some(Instant::now());
            st.last_backfill = Instant::now();
        }
    }

    async fn on_message(&self, ledger: &mut Ledger, st: &mut State, p: &Publish) {
        let cp = &self.agent.checkpoint;
        if p.topic == self.topics.ack(cp) {
            match Ack::decode(&p.payload) {
                Ok(ack) if ack.checkpoint == *cp => {
                    match blocking(|| ledger.acknowledge_outbox(ack.contiguous)) {
                        Ok(left) => {
                            let t = &self.agent.telemetry;
                            t.synced(SystemClock.now());
                            let before = t.outbox(left, ledger.oldest_unsynced().unwrap_or(None));
                            if left < before {
                                st.last_progress = Instant::now();
                                st.resend_wait =
                                    Duration::from_secs(self.agent.sync.resend_after_secs);
                            }
                            debug!(
                                contiguous = ack.contiguous,
                                left, "sync: hub acknowledged records"
                            );
                        }
                        Err(e) => error!(error = %e, "sync: cannot clear the outbox"),
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "sync: unreadable acknowledgement"),
            }
        } else if p.topic == self.topics.feed() || p.topic == self.topics.backfill_reply(cp) {
            let reply = p.topic != self.topics.feed();
            match Feed::decode(&p.payload) {
                Ok(feed) => {
                    st.hub_head = st.hub_head.max(feed.head);
                    self.store_feed(ledger, feed).await;
                    if reply {
                        st.backfill_since = None;
                    }
                    self.maybe_backfill(ledger, st, false);
                }
                Err(e) => warn!(error = %e, "sync: unreadable feed message"),
            }
        } else if p.topic == self.topics.policy() {
            self.on_policy(ledger, &p.payload).await;
        } else if p.topic == self.topics.alerts() {
            match serde_json::from_slice::<Alert>(&p.payload) {
                Ok(a) if a.kind == AlertKind::DoubleUse && a.alert_id.is_some() => {
                    match blocking(|| ledger.store_hub_alert(&a, SystemClock.now())) {
                        Ok(Some(publication)) => {
                            warn!(
                                license_id = a.license_id.as_deref().unwrap_or("-"),
                                "alert: double use reported by the hub"
                            );
                            let _ = self.agent.publications.send(publication).await;
                        }
                        Ok(None) => {}
                        Err(e) => error!(error = %e, "sync: cannot store the hub's alert"),
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "sync: unreadable hub alert"),
            }
        }
    }

    /// Applies a signed policy bundle if it verifies and is newer; keeps it in the ledger.
    async fn on_policy(&self, ledger: &mut Ledger, bundle: &[u8]) {
        let Some(root) = &self.agent.policy_root else {
            return;
        };
        let current = self.agent.policy_version.load(Ordering::Relaxed);
        match crate::bundle::open(bundle, root) {
            Ok(p) if p.version > current => {
                if let Err(e) =
                    blocking(|| ledger.store_policy_bundle(p.version, bundle, SystemClock.now()))
                {
                    error!(error = %e, "policy bundle verified but not stored; applying it anyway");
                }
                info!(version = p.version, "signed policy bundle accepted");
                self.agent
                    .policy_version
                    .store(p.version, Ordering::Relaxed);
                let _ = self.agent.policies.send(p).await;
            }
            Ok(p) => {
                if p.version < current {
                    warn!(
                        bundle = p.version,
                        current, "policy bundle older than the policy in force; refused"
                    );
                }
            }
            Err(e) => {
                warn!(error = %e, current, "policy bundle refused; keeping the current policy")
            }
        }
    }

    async fn store_feed(&self, ledger: &mut Ledger, feed: Feed) {
        let entries: Vec<(u64, ConsumptionRecord, Vec<u8>)> = feed
            .entries
            .into_iter()
            .filter_map(
                |(g, bytes)| match ConsumptionRecord::parse_unverified(&bytes) {
                    Ok(r) => Some((g, r, bytes)),
                    Err(e) => {
                        warn!(g, error = %e, "sync: unreadable record in the feed; skipped");
                        None
                    }
                },
            )
            .collect();
        if entries.is_empty() {
            return;
        }
        match blocking(|| ledger.store_feed(&entries, SystemClock.now())) {
            Ok(out) => {
                if out.stored > 0 {
                    debug!(
                        stored = out.stored,
                        high_water = out.high_water,
                        "sync: stored feed entries"
                    );
                }
                for p in out.publications {
                    warn!(
                        "alert: a license consumed here was also consumed at another checkpoint (double use)"
                    );
                    let _ = self.agent.publications.send(p).await;
                }
            }
            Err(e) => {
                error!(error = %e, "sync: cannot store feed entries; the hub will be asked again")
            }
        }
    }
}

/// Runs a short ledger operation without holding up the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
    tokio::task::block_in_place(f)
}
