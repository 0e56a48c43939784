//! The connection task: the only caller of the MQTT client; takes the
//! session's events and carries out what the connection's state says.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;
use tracing::info;

use crate::clock::{SharedClock, to_rfc3339};
use crate::telemetry::LinkName;
use crate::telemetry::Telemetry;

use super::{Topics, sleep_until_some};
use super::{messages::*, session::*};

/// What the retained status says besides its state and counts.
pub(super) struct Status {
    pub(super) checkpoint: String,
}

impl Status {
    pub(super) fn render(
        &self,
        state: &str,
        c: Counts,
        reason: Option<&str>,
        now: crate::clock::UnixTime,
    ) -> String {
        let mut v = serde_json::json!({
            "state": state,
            "checkpoint": self.checkpoint,
            "version": env!("CARGO_PKG_VERSION"),
            "policy_version": c.policy_version,
            "ledger": {"verdicts": c.verdicts, "consumed": c.consumed, "outbox": c.outbox},
            "at": to_rfc3339(now),
        });
        if let Some(reason) = reason {
            v["reason"] = reason.into();
        }
        v.to_string()
    }
}

/// How often at most the retained status is refreshed while counts change.
pub(super) const STATUS_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Connection {
    /// Where the time is read.
    pub(super) clock: SharedClock,
    pub(super) client: AsyncClient,
    pub(super) topics: Topics,
    pub(super) status: Status,
    /// Most of our publications handed to the client and not yet acknowledged.
    pub(super) inflight: usize,
    /// Tells the ledger stage the daemon is stopping.
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) telemetry: Arc<Telemetry>,
}

impl Connection {
    /// Runs the connection until `shutdown` completes and everything in
    /// hand is committed and acknowledged; returns what `shutdown` gave.
    pub(super) async fn drive<S>(
        &self,
        session: &mut crate::mqtt::Session,
        mut counts: Counts,
        work_tx: super::stages::Stages,
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
        let mut work_tx = Some(work_tx);
        // The counts the retained status last went out with.
        let mut announced: Option<Counts> = None;
        // Why the ledger cannot commit, while it cannot.
        let mut fault: Option<String> = None;
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        let mut worker_done = false;
        // Pinged from this loop, so a stuck event loop stops the pings and systemd restarts us.
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
        let mut paused_tick = tokio::time::interval(PAUSED_POLL_EVERY);
        // Work the worker's queue had no room for, in arrival order (never
        // dropped: a declaration left unacknowledged on a live connection is
        // not redelivered until the next one), and all else held for the broker.
        let mut st = SessionState::default();

        loop {
            st.reads.follow(&st.backlog);
            // While reads are paused and the ledger cannot commit, the fault's
            // alert and status handed to the client are still polled out at
            // once: rumqttc sends a request only once the events it read are
            // taken, so this admits a few messages more (about two for each
            // request ahead of it, of which there are at most `inflight`).
            let rush = st.reads.paused() && fault.is_some() && st.out.own_in_hand();
            counts.outbox = self.telemetry.outbox_depth();
            // A clone, so the shutdown branch can drop `work_tx` meanwhile.
            let feed = work_tx.clone().filter(|_| !st.backlog.is_empty());
            tokio::select! {
                _ = paused_tick.tick(), if st.reads.paused() => st.reads.allow_one(),
                _ = sleep_until_some(st.delivered.due), if st.delivered.due.is_some() && work_tx.is_some() => {
                    st.backlog.push_delivered(&mut st.delivered);
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                _ = status_tick.tick(), if st.connected && announced != Some(counts) => {
                    tracing::debug!(
                        backlog = st.backlog.items.len(),
                        backlog_bytes = st.backlog.bytes,
                        acks = st.out.acks.len(),
                        publications = st.out.publications.len(),
                        awaiting = st.out.awaiting.len(),
                        "queues"
                    );
                    if self.announce(counts, fault.as_deref()) {
                        st.out.handed_own();
                        announced = Some(counts);
                    }
                }
                why = &mut shutdown, if work_tx.is_some() => {
                    stopped_by = Some(why);
                    info!("shutting down: no new declarations; finishing those in hand");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                    // Not yet with the worker, so not committed: the broker keeps them.
                    st.backlog.clear();
                    // Best effort: one not deleted is only published again after the restart.
                    if let Some(tx) = &work_tx && let Some(w) = st.delivered.work() {
                        let _ = tx.try_send(w, false);
                    }
                    // Dropping the sender lets the worker finish its queue and stop.
                    work_tx = None;
                    st.accepting = false;
                    self.stopping.store(true, Ordering::Relaxed);
                }
                Some((stages, permit)) = async move {
                    match feed {
                        Some(stages) => stages.reserve().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(w) = st.backlog.pop() {
                        stages.send_reserved(permit, w);
                    }
                }
                Some(p) = sync_pubs.recv(), if st.out.publications.len() < RESEND_MAX => {
                    if let Ok(a) = serde_json::from_str::<crate::verdict::Alert>(&p.payload) {
                        self.telemetry.alerted(Arc::new(a));
                    }
                    st.out.publications.push_back(p);
                }
                // Design: the watch yields the policy in force, so the stages
                // take newer policies in order and never an older one.
                Ok(()) = policies.changed(), if work_tx.is_some() => {
                    let p = policies.borrow_and_update().clone();
                    st.backlog.push(Work::Policy(Box::new((*p).clone())));
                }
                // Always taken: what it publishes is bounded by RESEND_MAX (the
                // rest is re-read from the ledger), and while reads are paused
                // the worker's progress is what lets the backlog drain.
                done = done_rx.recv(), if !worker_done => match done {
                    Some(done) => {
                        // The outbox is the telemetry's (sync lowers it), as at the loop's top.
                        counts = Counts { outbox: self.telemetry.outbox_depth(), ..done.counts };
                        let health_changed = done.health.is_some();
                        match done.health {
                            Some(LedgerHealth::Fault(why)) => {
                                let alert = self.ledger_fault_alert(&why);
                                st.out.alerts.push_back(serde_json::to_string(&alert).unwrap_or_default());
                                self.telemetry.alerted(Arc::new(alert));
                                self.telemetry.ledger_fault(Some(why.clone()));
                                fault = Some(why);
                            }
                            Some(LedgerHealth::Recovered) => {
                                self.telemetry.ledger_fault(None);
                                fault = None;
                            }
                            None => {}
                        }
                        // Design: the retained status changes with `/healthz`,
                        // not at the next refresh (up to STATUS_EVERY later).
                        // While offline, the announcement on reconnecting
                        // carries it.
                        if health_changed {
                            announced = None;
                            if st.connected && self.announce(counts, fault.as_deref()) {
                                st.out.handed_own();
                                announced = Some(counts);
                            }
                        }
                        st.out.take(done.acks, done.publications, done.more_after, done.resent);
                    }
                    None => worker_done = true,
                },
                // Taken whenever the backlog has room, and every
                // PAUSED_POLL_EVERY while it has not: the PUBACKs for our own
                // publications arrive here too. Design: the session's event
                // loop runs in its own task (rumqttc's poll is not
                // cancel-safe) and holds few events, so not taking them
                // stops reads from the broker.
                ev = session.next(), if st.reads.may_poll(rush) => {
                    for action in st.on_event(ev, &self.topics.declarations, tokio::time::Instant::now()) {
                        match action {
                            Action::LinkUp => self.telemetry.link(LinkName::Broker, true, self.clock.now()),
                            Action::LinkDown => self.telemetry.link(LinkName::Broker, false, self.clock.now()),
                            Action::Subscribe => {
                                let _ = self.client.try_subscribe(&self.topics.declarations, QoS::AtLeastOnce);
                            }
                            Action::Announce => {
                                if self.announce(counts, fault.as_deref()) {
                                    st.out.handed_own();
                                    announced = Some(counts);
                                }
                            }
                        }
                    }
                }
            }
            if work_tx.is_some()
                && let Some(after) = st.out.resend_due()
            {
                st.backlog.push_delivered(&mut st.delivered);
                st.backlog.push(Work::Resend(after));
            }
            if let Some(tx) = &work_tx {
                st.backlog.feed(tx);
            }
            if st.connected {
                self.flush(&mut st.out, st.connection);
            }
            // Stopping: the worker has committed everything in hand; leave once
            // its PUBACKs are with the client (or the connection is gone).
            if worker_done && work_tx.is_none() && (st.out.acks.is_empty() || !st.connected) {
                self.finish(session, st.connected, counts).await;
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
    pub(super) fn flush(&self, out: &mut Outbound, connection: u64) {
        while let Some(r) = out.acks.front() {
            // A packet id from an earlier connection may name another message
            // now; the broker redelivers that declaration instead.
            if r.connection == connection && self.client.try_ack(&r.as_publish()).is_err() {
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
            let Some(p) = out.publications.pop_front() else {
                return;
            };
            let topic = match p.kind {
                PublicationKind::Alert => &self.topics.alerts,
                PublicationKind::Verdict => &self.topics.verdicts,
            };
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, p.payload.clone())
            {
                Ok(()) => out.handed.push_back(Some(p.id)),
                Err(_) => {
                    out.publications.push_front(p);
                    return;
                }
            }
        }
    }

    /// Hands the retained status to the client: `online`, or `degraded`
    /// with the reason while the ledger cannot commit.
    pub(super) fn announce(&self, counts: Counts, fault: Option<&str>) -> bool {
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
                self.status.render(state, counts, fault, self.clock.now()),
            )
            .is_ok()
    }

    /// The alert for a ledger that cannot commit.
    pub(super) fn ledger_fault_alert(&self, why: &str) -> crate::verdict::Alert {
        crate::verdict::Alert {
            kind: crate::verdict::AlertKind::LedgerFault,
            checkpoint: self.status.checkpoint.clone(),
            raised_at: to_rfc3339(self.clock.now()),
            declaration_id: None,
            license_id: None,
            reasons: Vec::new(),
            payload_sha256: None,
            alert_id: None,
            records: Vec::new(),
            signer: None,
            fork: None,
            heads: Vec::new(),
            detail: Some(format!(
                "{why}; declarations are held unacknowledged until the ledger commits again"
            )),
        }
    }

    /// Publishes the offline status and disconnects, giving PUBACKs a moment to arrive.
    pub(super) async fn finish(
        &self,
        session: &mut crate::mqtt::Session,
        connected: bool,
        counts: Counts,
    ) {
        if connected {
            let _ = self.client.try_publish(
                &self.topics.status,
                QoS::AtLeastOnce,
                true,
                self.status
                    .render("offline", counts, None, self.clock.now()),
            );
        }
        session.close_within(Duration::from_secs(3)).await;
    }
}
