//! What the daemon tells its operators: Prometheus metrics, the health
//! verdict behind `/healthz`, and the live feed of the gate console.
//!
//! Design: the daemon's tasks update one shared [`Telemetry`] (atomics and
//! short locks, never I/O); the HTTP side only reads it. Ages (of the
//! policy, of the oldest unsynced record) are computed when asked, from
//! timestamps, so a stalled task cannot freeze them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::clock::UnixTime;
use crate::verdict::{Alert, Verdict};

/// Labels of the declarations counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    verdict: String,
    reason: String,
}

/// Labels naming an MQTT connection: `broker` (declarations) or `uplink` (sync).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    link: String,
}

/// Labels of the refused sync messages counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    /// Which kind of message: `ack`, `feed`, `alert`, `policy`.
    message: String,
    /// Why, as a short code.
    reason: String,
}

/// Something the gate console shows as it happens.
#[derive(Debug, Clone)]
pub enum ConsoleEvent {
    /// A verdict just committed.
    Verdict(Arc<Verdict>),
    /// An alert just raised.
    Alert(Arc<Alert>),
}

/// How well the daemon does its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Deciding, nothing needs attention.
    Ready,
    /// Deciding, but something needs attention.
    Degraded,
    /// Declarations are not being decided.
    Failing,
}

impl HealthState {
    /// The word `/healthz` and the console use.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ready => "ready",
            HealthState::Degraded => "degraded",
            HealthState::Failing => "failing",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which MQTT connection of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkName {
    /// The broker declarations come from.
    Broker,
    /// The broker the hub is reached through.
    Uplink,
}

/// Whether the daemon does its job, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Ready, degraded or failing.
    pub state: HealthState,
    /// What is wrong, in words for an operator.
    pub reasons: Vec<String>,
}

/// How many verdicts and alerts the console keeps for a new page.
pub const RECENT: usize = 50;
/// An uplink down for longer than this makes the daemon `degraded`.
const UPLINK_GRACE: i64 = 60;
/// An unsynced record older than this makes the daemon `degraded`.
const SYNC_LAG_MAX: i64 = 3600;

/// The shared state behind metrics, health and the console.
pub struct Telemetry {
    registry: Registry,
    declarations: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    ledger_verdicts: Gauge,
    ledger_consumed: Gauge,
    outbox_depth: Gauge,
    outbox_oldest_age: Gauge,
    last_sync: Gauge,
    policy_version: Gauge,
    policy_age: Gauge,
    connected: Family<LinkLabels, Gauge>,
    reconnects: Family<LinkLabels, Counter>,
    ledger_fault_gauge: Gauge,
    ledger_bytes: Gauge,
    refused: Family<RefusedLabels, Counter>,
    /// The ledger file, whose size (with its WAL) is reported.
    ledger_path: std::path::PathBuf,
    /// Unix seconds of the oldest consumption the hub has not acknowledged (0: none).
    oldest_unsynced: AtomicI64,
    /// Unix seconds the policy in force was issued.
    policy_issued_at: AtomicI64,
    /// The policy's `max_age`, seconds.
    policy_max_age: AtomicI64,
    /// Records waiting for the hub.
    outbox: AtomicU64,
    links: Mutex<Links>,
    fault: Mutex<Option<String>>,
    recent: Mutex<Recent>,
    events: broadcast::Sender<ConsoleEvent>,
    /// What the hub's signed time says of this clock.
    pub clock: crate::clock_trust::ClockTrust,
}

#[derive(Default)]
struct Links {
    /// Since when the broker is down (`None`: up).
    broker_down_since: Option<UnixTime>,
    /// The uplink, when sync is configured: since when it is down.
    uplink: Option<Option<UnixTime>>,
}

#[derive(Default)]
struct Recent {
    verdicts: VecDeque<Arc<Verdict>>,
    alerts: VecDeque<Arc<Alert>>,
}

impl Telemetry {
    /// Fresh telemetry for the ledger at `ledger`; `uplink` says whether sync is configured.
    pub fn new(ledger: &std::path::Path, uplink: bool, now: UnixTime) -> Arc<Telemetry> {
        let mut registry = Registry::with_prefix("permitgate");
        let declarations = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "declarations",
            "Declarations decided, by verdict and first reason",
            declarations.clone(),
        );
        // 0.5 ms to ~4 s.
        let decision_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "decision_seconds",
            "Time from a declaration's arrival to its committed verdict",
            decision_seconds.clone(),
        );
        let g = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let ledger_verdicts = g(&mut registry, "ledger_verdicts", "Verdicts in the ledger");
        let ledger_consumed = g(
            &mut registry,
            "ledger_consumed_licenses",
            "Licenses consumed at this checkpoint",
        );
        let outbox_depth = g(
            &mut registry,
            "outbox_depth",
            "Consumption records the hub has not acknowledged",
        );
        let outbox_oldest_age = g(
            &mut registry,
            "outbox_oldest_age_seconds",
            "Age of the oldest consumption record the hub has not acknowledged (0: none)",
        );
        let last_sync = g(
            &mut registry,
            "last_sync_timestamp_seconds",
            "When the hub last acknowledged records or sent the feed (Unix time, 0: never)",
        );
        let policy_version = g(
            &mut registry,
            "policy_version",
            "Version of the policy in force",
        );
        let policy_age = g(
            &mut registry,
            "policy_age_seconds",
            "Age of the policy in force (since its issued_at)",
        );
        let connected = Family::<LinkLabels, Gauge>::default();
        registry.register(
            "mqtt_connected",
            "1 while the MQTT connection is up",
            connected.clone(),
        );
        let reconnects = Family::<LinkLabels, Counter>::default();
        registry.register(
            "mqtt_connection_losses",
            "MQTT connections lost",
            reconnects.clone(),
        );
        let ledger_fault_gauge = g(
            &mut registry,
            "ledger_fault",
            "1 while the ledger cannot commit (disk full, read-only)",
        );
        let ledger_bytes = g(
            &mut registry,
            "ledger_bytes",
            "Size of the ledger file and its write-ahead log",
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "sync_refused_messages",
            "Sync messages and records refused (forged, unknown signer, contradicting what is held, unreadable)",
            refused.clone(),
        );
        let (events, _) = broadcast::channel(256);
        let links = Links {
            broker_down_since: Some(now),
            uplink: uplink.then_some(Some(now)),
        };
        Arc::new(Telemetry {
            registry,
            declarations,
            decision_seconds,
            ledger_verdicts,
            ledger_consumed,
            outbox_depth,
            outbox_oldest_age,
            last_sync,
            policy_version,
            policy_age,
            connected,
            reconnects,
            ledger_fault_gauge,
            ledger_bytes,
            refused,
            ledger_path: ledger.to_owned(),
            oldest_unsynced: AtomicI64::new(0),
            policy_issued_at: AtomicI64::new(0),
            policy_max_age: AtomicI64::new(0),
            outbox: AtomicU64::new(0),
            links: Mutex::new(links),
            fault: Mutex::new(None),
            recent: Mutex::new(Recent::default()),
            events,
            clock: crate::clock_trust::ClockTrust::default(),
        })
    }

    /// A verdict committed `latency` after its declaration arrived.
    pub fn decided(&self, v: Arc<Verdict>, latency: Option<Duration>) {
        let reason = v.reasons.first().map(|r| r.code.as_str()).unwrap_or("none");
        self.declarations
            .get_or_create(&DecisionLabels {
                verdict: v.verdict.as_str().to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        if let Some(l) = latency {
            self.decision_seconds.observe(l.as_secs_f64());
        }
        let mut recent = lock(&self.recent);
        if recent.verdicts.len() == RECENT {
            recent.verdicts.pop_back();
        }
        recent.verdicts.push_front(v.clone());
        drop(recent);
        let _ = self.events.send(ConsoleEvent::Verdict(v));
    }

    /// An alert raised (here, or passed on from the hub).
    pub fn alerted(&self, a: Arc<Alert>) {
        let mut recent = lock(&self.recent);
        if recent.alerts.len() == RECENT {
            recent.alerts.pop_back();
        }
        recent.alerts.push_front(a.clone());
        drop(recent);
        let _ = self.events.send(ConsoleEvent::Alert(a));
    }

    /// Seeds the console with what the ledger already holds (newest first).
    pub fn seed(&self, verdicts: Vec<Verdict>, alerts: Vec<Alert>) {
        let mut recent = lock(&self.recent);
        recent.verdicts = verdicts.into_iter().take(RECENT).map(Arc::new).collect();
        recent.alerts = alerts.into_iter().take(RECENT).map(Arc::new).collect();
    }

    /// The latest verdicts and alerts, newest first.
    pub fn recent(&self) -> (Vec<Arc<Verdict>>, Vec<Arc<Alert>>) {
        let r = lock(&self.recent);
        (
            r.verdicts.iter().cloned().collect(),
            r.alerts.iter().cloned().collect(),
        )
    }

    /// Live console events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.events.subscribe()
    }

    /// Ledger totals after a commit.
    pub fn ledger_counts(&self, verdicts: u64, consumed: u64) {
        self.ledger_verdicts.set(verdicts as i64);
        self.ledger_consumed.set(consumed as i64);
    }

    /// The outbox's depth and its oldest record's time (`None`: empty);
    /// returns the depth it had.
    pub fn outbox(&self, depth: u64, oldest: Option<UnixTime>) -> u64 {
        let before = self.outbox.swap(depth, Ordering::Relaxed);
        self.outbox_depth.set(depth as i64);
        self.oldest_unsynced
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
        before
    }

    /// Consumption records waiting for the hub.
    pub fn outbox_depth(&self) -> u64 {
        self.outbox.load(Ordering::Relaxed)
    }

    /// Records were consumed at `now`: the outbox has one at least that old.
    pub fn consumed_at(&self, now: UnixTime, added: u64) {
        let depth = self.outbox.fetch_add(added, Ordering::Relaxed) + added;
        self.outbox_depth.set(depth as i64);
        let _ = self
            .oldest_unsynced
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A sync message (or one record in it) of kind `message` was refused for `reason`.
    pub fn refused(&self, message: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                message: message.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The hub answered at `now`.
    pub fn synced(&self, now: UnixTime) {
        self.last_sync.set(now);
    }

    /// The policy now in force.
    pub fn policy(&self, version: u64, issued_at: UnixTime, max_age: i64) {
        self.policy_version.set(version as i64);
        self.policy_issued_at.store(issued_at, Ordering::Relaxed);
        self.policy_max_age.store(max_age, Ordering::Relaxed);
    }

    /// The broker or the uplink went up or down at `now`.
    pub fn link(&self, which: LinkName, up: bool, now: UnixTime) {
        let uplink = which == LinkName::Uplink;
        let name = if uplink { "uplink" } else { "broker" };
        let label = LinkLabels { link: name.into() };
        self.connected.get_or_create(&label).set(i64::from(up));
        let mut links = lock(&self.links);
        let slot = if uplink {
            links.uplink.get_or_insert(None)
        } else {
            &mut links.broker_down_since
        };
        match (up, *slot) {
            (true, _) => *slot = None,
            (false, None) => {
                *slot = Some(now);
                self.reconnects.get_or_create(&label).inc();
            }
            (false, Some(_)) => {}
        }
    }

    /// The ledger cannot commit (`Some(why)`), or can again.
    pub fn ledger_fault(&self, why: Option<String>) {
        self.ledger_fault_gauge.set(i64::from(why.is_some()));
        *lock(&self.fault) = why;
    }

    /// The health verdict at `now`.
    pub fn health(&self, now: UnixTime) -> Health {
        let mut failing = Vec::new();
        let mut degraded = Vec::new();
        if let Some(why) = lock(&self.fault).clone() {
            failing.push(format!("ledger cannot commit: {why}"));
        }
        let links = lock(&self.links);
        if let Some(since) = links.broker_down_since {
            failing.push(format!("broker down {}", human(now - since)));
        }
        let waiting = self.outbox.load(Ordering::Relaxed);
        if let Some(Some(since)) = links.uplink
            && now - since >= UPLINK_GRACE
        {
            degraded.push(format!(
                "uplink down {}, {waiting} records waiting",
                human(now - since)
            ));
        }
        // Design: a stand-alone post (no uplink) keeps its records by design;
        // their age is not a fault, or every such post would alarm for ever.
        let syncing = links.uplink.is_some();
        drop(links);
        let oldest = self.oldest_unsynced.load(Ordering::Relaxed);
        if syncing
            && oldest > 0
            && waiting > 0
            && now - oldest >= SYNC_LAG_MAX
            && degraded.is_empty()
        {
            degraded.push(format!(
                "{waiting} records unsynced, the oldest {}",
                human(now - oldest)
            ));
        }
        let issued = self.policy_issued_at.load(Ordering::Relaxed);
        let max_age = self.policy_max_age.load(Ordering::Relaxed);
        if issued > 0 && max_age > 0 && now - issued > max_age {
            degraded.push(format!(
                "policy is {} old (max_age {}): clearances are held",
                human(now - issued),
                human(max_age)
            ));
        }
        if let Some(why) = self.clock.status().describe() {
            degraded.push(format!(
                "clock untrusted: {why}; controlled shipments are held"
            ));
        }
        let state = if !failing.is_empty() {
            HealthState::Failing
        } else if !degraded.is_empty() {
            HealthState::Degraded
        } else {
            HealthState::Ready
        };
        failing.extend(degraded);
        Health {
            state,
            reasons: failing,
        }
    }

    /// Policy age and outbox age in seconds at `now`, for the console strip.
    pub fn ages(&self, now: UnixTime) -> (Option<i64>, Option<i64>, u64) {
        let issued = self.policy_issued_at.load(Ordering::Relaxed);
        let oldest = self.oldest_unsynced.load(Ordering::Relaxed);
        let waiting = self.outbox.load(Ordering::Relaxed);
        (
            (issued > 0).then(|| now - issued),
            (oldest > 0 && waiting > 0).then(|| now - oldest),
            waiting,
        )
    }

    /// Whether sync with a hub is configured.
    pub fn has_uplink(&self) -> bool {
        lock(&self.links).uplink.is_some()
    }

    /// The policy version in force.
    pub fn policy_version(&self) -> i64 {
        self.policy_version.get()
    }

    /// The metrics in the OpenMetrics text format, ages computed at `now`.
    pub fn render_metrics(&self, now: UnixTime) -> String {
        let (policy_age, outbox_age, _) = self.ages(now);
        self.policy_age.set(policy_age.unwrap_or(0));
        self.outbox_oldest_age.set(outbox_age.unwrap_or(0));
        let size = |suffix: &str| {
            let mut p = self.ledger_path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        self.ledger_bytes.set((size("") + size("-wal")) as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A short human duration: `40 s`, `12 min`, `3 h`, `2 d`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind: use it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = 1_790_000_000;

    #[test]
    fn health_says_what_is_wrong() {
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), true, T0);
        t.policy(7, T0 - 86_400, 30 * 86_400);
        // Nothing connected yet: failing on the broker.
        let h = t.health(T0 + 5);
        assert_eq!(h.state, HealthState::Failing);
        assert_eq!(h.reasons, ["broker down 5 s"]);

        t.link(LinkName::Broker, true, T0 + 5);
        t.link(LinkName::Uplink, true, T0 + 5);
        assert_eq!(t.health(T0 + 6).state, HealthState::Ready);

        // Uplink lost with records waiting: degraded once past the grace period.
        t.consumed_at(T0 + 10, 412);
        t.link(LinkName::Uplink, false, T0 + 10);
        assert_eq!(t.health(T0 + 20).state, HealthState::Ready);
        let h = t.health(T0 + 10 + 3 * 3600);
        assert_eq!(h.state, HealthState::Degraded);
        assert_eq!(h.reasons, ["uplink down 3 h, 412 records waiting"]);

        // The ledger failing outranks everything.
        t.ledger_fault(Some("database or disk is full".into()));
        let h = t.health(T0 + 10 + 3 * 3600);
        assert_eq!(h.state, HealthState::Failing);
        assert!(h.reasons[0].contains("disk is full"), "{h:?}");
        t.ledger_fault(None);

        // Back up, synced, but the policy has grown too old.
        t.link(LinkName::Uplink, true, T0 + 40 * 86_400);
        t.outbox(0, None);
        let h = t.health(T0 + 40 * 86_400);
        assert_eq!(h.state, HealthState::Degraded);
        assert!(h.reasons[0].starts_with("policy is 41 d old"), "{h:?}");
    }

    #[test]
    fn a_stand_alone_post_is_ready_however_old_its_records() {
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), false, T0);
        t.policy(7, T0, 30 * 86_400);
        t.link(LinkName::Broker, true, T0);
        t.consumed_at(T0, 3);
        let h = t.health(T0 + 10 * 86_400);
        assert_eq!((h.state, h.reasons), (HealthState::Ready, vec![]));
        assert!(!t.has_uplink());

        // The same records at a post that syncs: degraded after an hour.
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), true, T0);
        t.policy(7, T0, 30 * 86_400);
        t.link(LinkName::Broker, true, T0);
        t.link(LinkName::Uplink, true, T0);
        t.consumed_at(T0, 3);
        assert_eq!(t.health(T0 + 3599).state, HealthState::Ready);
        let h = t.health(T0 + 2 * 3600);
        assert_eq!(h.state, HealthState::Degraded);
        assert_eq!(h.reasons, ["3 records unsynced, the oldest 2 h"]);
    }

    #[test]
    fn metrics_render_in_the_openmetrics_text_format() {
        let t = Telemetry::new(std::path::Path::new("/nonexistent"), false, T0);
        t.link(LinkName::Broker, true, T0);
        t.link(LinkName::Broker, false, T0 + 1);
        t.policy(7, T0 - 100, 86_400);
        t.ledger_counts(10, 4);
        let v: Verdict = serde_json::from_value(serde_json::json!({
            "declaration_id": "D-1", "verdict": "rejected", "license_id": "L-1",
            "checkpoint": "c", "decided_at": "2026-01-01T00:00:00Z", "policy_version": 7,
            "reasons": [{"code": "license_already_used", "detail": "x"}]
        }))
        .unwrap();
        t.decided(Arc::new(v), Some(Duration::from_millis(2)));
        let m = t.render_metrics(T0 + 1);
        for line in [
            "permitgate_declarations_total{verdict=\"rejected\",reason=\"license_already_used\"} 1",
            "permitgate_decision_seconds_count 1",
            "permitgate_ledger_verdicts 10",
            "permitgate_policy_version 7",
            "permitgate_policy_age_seconds 101",
            "permitgate_mqtt_connected{link=\"broker\"} 0",
            "permitgate_mqtt_connection_losses_total{link=\"broker\"} 1",
            "# EOF",
        ] {
            assert!(m.contains(line), "{line} missing from:\n{m}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(40), "40 s");
        assert_eq!(human(720), "12 min");
        assert_eq!(human(3 * 3600 + 5), "3 h");
        assert_eq!(human(3 * 86_400), "3 d");
    }
}
