//! The checkpoint's sync task: drives [`super::post::PostSync`] over its
//! own MQTT connection (the uplink may be another broker than the
//! declarations') and its own connection to the ledger file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{mpsc, watch};

use super::post::{Input, Now, Output, PostSync, PostSyncConfig};
use crate::config::{MqttConfig, SyncConfig};
use crate::in_force::PolicyInForce;
use crate::ledger::{Ledger, Publication};
use crate::mqtt::{Session, SessionEvent, topic_of};

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

/// Runs until `stop` turns true, on its own connection to the ledger.
pub async fn run(agent: Agent, mut ledger: Ledger, mut stop: watch::Receiver<bool>) {
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
    let started = Instant::now();
    let now = || Now {
        mono: started.elapsed().as_millis() as u64,
        unix: agent.clock.now(),
    };
    let mut machine = PostSync::new(
        PostSyncConfig {
            checkpoint: agent.checkpoint.clone(),
            key: agent.key.clone(),
            prefix: agent.uplink.prefix.clone(),
            interval_ms: agent.sync.interval_ms,
            resend_after_ms: agent.sync.resend_after_secs.saturating_mul(1000),
            policy_root: agent.policy_root,
            in_force: agent.in_force.clone(),
            telemetry: agent.telemetry.clone(),
        },
        now(),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(agent.sync.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        let woke = tokio::select! {
            _ = stop.changed() => {
                session.close().await;
                return;
            }
            _ = agent.committed.notified(), if session.connected() => Woke::Committed,
            _ = tick.tick(), if session.connected() => Woke::Tick,
            ev = session.next() => Woke::Session(ev),
        };
        let input = match &woke {
            Woke::Committed => Input::Committed,
            Woke::Tick => Input::Tick,
            Woke::Session(SessionEvent::Connected) => Input::Connected,
            Woke::Session(SessionEvent::Lost) => Input::Lost,
            Woke::Session(SessionEvent::Message(p)) => Input::Message {
                topic: topic_of(p),
                payload: &p.payload,
            },
            // Not a tracking session: never reported.
            Woke::Session(SessionEvent::Refused(reason)) => {
                agent.telemetry.refused("publish", "refused_by_broker");
                tracing::debug!(%reason, "sync: a publication was refused");
                continue;
            }
            Woke::Session(SessionEvent::Sent(_) | SessionEvent::Acknowledged(_)) => continue,
        };
        // Design: the machine reads and writes the ledger (short SQLite
        // transactions); the runtime's other tasks are not held up.
        tokio::task::block_in_place(|| machine.handle(input, &mut ledger, now(), &mut out));
        // Handled: only now may the broker forget it.
        if let Woke::Session(SessionEvent::Message(p)) = &woke {
            session.ack(p);
        }
        if !perform(&session, &agent, &mut out).await {
            tokio::task::block_in_place(|| {
                machine.handle(Input::NotSent, &mut ledger, now(), &mut out)
            });
            out.clear();
        }
    }
}

/// What woke the task.
// Design: one lives for one turn of the loop; boxing the message would cost
// an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Woke {
    Committed,
    Tick,
    Session(SessionEvent),
}

/// Does what the machine asked, in order; false if a publication could not be queued.
async fn perform(session: &Session, agent: &Agent, out: &mut Vec<Output>) -> bool {
    let mut all_sent = true;
    for o in out.drain(..) {
        match o {
            Output::Subscribe(t) => {
                let _ = session.client.try_subscribe(t, QoS::AtLeastOnce);
            }
            Output::Publish {
                topic,
                payload,
                retain,
            } => {
                if session
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                    .is_err()
                {
                    all_sent = false;
                }
            }
            Output::Alert(p) => {
                let _ = agent.publications.send(p).await;
            }
        }
    }
    all_sent
}
