//! MQTT client settings shared by the daemon, its uplink and the hub, and
//! the session the uplink and the hub run their loops on.
//!
//! Every client speaks MQTT 5 so that it can announce its Maximum Packet
//! Size in CONNECT: the broker then never delivers a larger packet to it
//! (mosquitto drops it and logs `Dropping too large outgoing PUBLISH`),
//! so no message can put a client into a reconnect loop.

use std::sync::Arc;
use std::time::Duration;

use rand_core::RngCore;
use rumqttc::NetworkOptions;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

use crate::config::MqttConfig;

/// Largest MQTT packet any permitgate client accepts; announced to the
/// broker in CONNECT. Shipped broker configs set `message_size_limit`
/// below it (16,000,000 bytes of payload), so a message the broker takes
/// is never too large for a client.
pub const PACKET_MAX: u32 = 16 * 1024 * 1024;

/// Client options for `m`: MQTT 5, persistent session (never expiring)
/// under its `client_id` (or `default_id`), manual acknowledgements, the
/// Maximum Packet Size, credentials and TLS when configured.
pub fn options(
    m: &MqttConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    default_id: String,
) -> MqttOptions {
    let client_id = m.client_id.clone().unwrap_or(default_id);
    let mut opts = MqttOptions::new(client_id, m.host.clone(), m.port);
    // Design: in MQTT 5 a session ends with its connection unless an
    // expiry is set; declarations queued while the daemon restarts must not.
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(u32::MAX))
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(m.keep_alive_secs.max(5)))
        .set_outgoing_inflight_upper_limit(m.inflight)
        .set_max_packet_size(Some(PACKET_MAX))
        .set_network_options(network_options());
    if let Some(tls) = tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    if let (Some(u), Some(p)) = (&m.username, &m.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    opts
}

/// TCP_NODELAY on: without it every request/response waits ~40–90 ms.
pub fn network_options() -> NetworkOptions {
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net
}

/// A publication's topic as text (MQTT topics are UTF-8; anything else matches no topic of ours).
pub fn topic_of(p: &Publish) -> &str {
    std::str::from_utf8(&p.topic).unwrap_or("")
}

/// Capped exponential backoff with ±25 % jitter: 0.5 s, 1 s, 2 s … `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let cap = max.as_millis().min(u64::MAX as u128) as u64;
    let base = 500u64
        .saturating_mul(1 << failures.min(16).saturating_sub(1))
        .min(cap.max(1));
    let jitter = rand_core::OsRng.next_u32() as u64 % (base / 2 + 1);
    Duration::from_millis(base - base / 4 + jitter)
}

/// Connection state shared by every client loop: connected or not, and
/// how many attempts have failed since the last success.
#[derive(Debug, Default)]
pub struct Link {
    /// A CONNACK was received and no error since.
    pub connected: bool,
    failures: u32,
    /// When the connection in hand was accepted.
    since: Option<std::time::Instant>,
    /// Accepted connections in a row that the broker closed within [`SHORT_LIVED`].
    short_lived: u32,
}

/// A connection the broker closes sooner than this after accepting it counts as flapping.
const SHORT_LIVED: Duration = Duration::from_secs(10);
/// Flapping connections in a row before it is called a configuration error.
const FLAPS_REPORTED: u32 = 3;

/// Whether the broker said it closed the connection because another client
/// connected with the same client id (MQTT 5 reason code 0x8E; mosquitto
/// closes without saying).
pub fn taken_over(error: &rumqttc::v5::ConnectionError) -> bool {
    matches!(
        error,
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code: rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver,
            ..
        })
    )
}

impl Link {
    /// A successful CONNACK.
    pub fn up(&mut self) {
        self.connected = true;
        self.failures = 0;
        self.since = Some(std::time::Instant::now());
    }

    /// The connection failed: logs the first failure only (not every retry),
    /// drops rumqttc's in-memory retransmissions (the durable copies are the
    /// caller's), and returns how long to wait before the next attempt.
    ///
    /// Design: two processes with one client id take the session from each
    /// other for ever, each connection accepted and closed moments later.
    /// That is a configuration error: said at ERROR on each such loss once
    /// it has happened `FLAPS_REPORTED` times in a row, and the back-off
    /// grows with them instead of restarting at each accepted connection.
    pub fn down(
        &mut self,
        eventloop: &mut EventLoop,
        error: &rumqttc::v5::ConnectionError,
        what: &str,
        max: Duration,
    ) -> Duration {
        let brief = self.since.take().is_some_and(|t| t.elapsed() < SHORT_LIVED);
        if taken_over(error) {
            self.short_lived = self.short_lived.max(FLAPS_REPORTED - 1) + 1;
        } else if brief {
            self.short_lived += 1;
        } else if self.connected {
            self.short_lived = 0;
        }
        if self.connected && self.short_lived >= FLAPS_REPORTED {
            tracing::error!(
                client_id = eventloop.options.client_id(),
                times = self.short_lived,
                error = %error,
                "{what}: the broker keeps closing this connection moments after accepting it; \
                 most likely another client connected with this client id: \
                 give each process its own `client_id`"
            );
        } else if self.connected || self.failures == 0 {
            tracing::warn!(error = %error, "{what}: connection lost; retrying with backoff");
        }
        self.connected = false;
        self.failures = self.failures.saturating_add(1);
        eventloop.clean();
        eventloop.pending.clear();
        backoff(self.failures.max(self.short_lived), max)
    }
}

/// What a [`Session`] saw.
// Design: messages are most of the events; they are not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionEvent {
    /// Connected; subscribe now (the broker may have kept the session, but
    /// subscribing again costs nothing).
    Connected,
    /// A message; acknowledge it with [`Session::ack`] once handled.
    Message(Publish),
    /// The connection failed; it is tried again after the back-off.
    Lost,
    /// One of our QoS 1 publications went out under this packet id
    /// (only from a session that tracks publications).
    Sent(u16),
    /// The broker acknowledged our publication with this packet id
    /// (only from a session that tracks publications).
    Acknowledged(u16),
    /// The broker refused one of our publications (its PUBACK reason, such
    /// as `PacketTooLarge` or `NotAuthorized`); logged already, and the
    /// connection goes on (only from a session that does not track).
    Refused(String),
}

/// Events a [`Session`] holds for its loop before it stops reading the
/// broker; the broker's flow control (unacknowledged messages) bounds them
/// long before this.
const SESSION_EVENTS: usize = 256;

/// One MQTT connection with reconnection and back-off: the daemon's, the
/// uplink's and the hub's.
///
/// Design: rumqttc's `EventLoop::poll` is not cancel-safe. Dropped while it
/// writes (a `select!` whose other branch won, with the socket's buffer
/// full), it loses the request it had taken: that publish never leaves,
/// its packet id stays in flight for ever, and once the ids wrap round
/// the collision stops every later publish on the connection. So the event
/// loop runs in a task of its own that nothing cancels, and hands events
/// over a channel; it also keeps sending (acknowledgements, pings) while
/// the loop that owns the session is busy.
pub struct Session {
    /// The client, for publishing and subscribing.
    pub client: AsyncClient,
    events: tokio::sync::mpsc::Receiver<SessionEvent>,
    connected: bool,
    driver: tokio::task::JoinHandle<()>,
}

impl Session {
    /// A session with `opts`; `what` names it in logs; requests queue up to `cap`.
    pub fn new(
        opts: MqttOptions,
        cap: usize,
        what: &'static str,
        reconnect_max: Duration,
    ) -> Session {
        Session::start(opts, cap, what, reconnect_max, SESSION_EVENTS, false)
    }

    /// A session that also reports each publication's packet id and its
    /// PUBACK ([`SessionEvent::Sent`], [`SessionEvent::Acknowledged`]),
    /// holding at most `events` undelivered events: while its owner takes
    /// none, the session stops reading from the broker, and TCP holds the
    /// broker back.
    pub fn tracking(
        opts: MqttOptions,
        cap: usize,
        what: &'static str,
        reconnect_max: Duration,
        events: usize,
    ) -> Session {
        Session::start(opts, cap, what, reconnect_max, events.max(1), true)
    }

    fn start(
        opts: MqttOptions,
        cap: usize,
        what: &'static str,
        reconnect_max: Duration,
        events: usize,
        track: bool,
    ) -> Session {
        let (client, eventloop) = AsyncClient::new(opts, cap);
        let (tx, events) = tokio::sync::mpsc::channel(events);
        let driver = tokio::spawn(drive(eventloop, tx, what, reconnect_max, track));
        Session {
            client,
            events,
            connected: false,
            driver,
        }
    }

    /// True while connected (as far as the events taken so far tell).
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The next event. Cancel-safe: a `select!` on a stop signal beside it
    /// stops at once, also while it waits to reconnect.
    pub async fn next(&mut self) -> SessionEvent {
        match self.events.recv().await {
            Some(ev) => self.took(ev),
            // The driver ended (it never does while the session lives).
            None => std::future::pending().await,
        }
    }

    /// The next event if one has already arrived.
    pub fn try_next(&mut self) -> Option<SessionEvent> {
        self.events.try_recv().ok().map(|ev| self.took(ev))
    }

    fn took(&mut self, ev: SessionEvent) -> SessionEvent {
        match ev {
            SessionEvent::Connected => self.connected = true,
            SessionEvent::Lost => self.connected = false,
            _ => {}
        }
        ev
    }

    /// Acknowledges a message (PUBACK) without blocking.
    pub fn ack(&self, p: &Publish) {
        if self.client.try_ack(p).is_err() {
            tracing::warn!("request queue full; the broker will redeliver");
        }
    }

    /// Disconnects, giving the DISCONNECT (and what is queued before it) a second to go out.
    pub async fn close(&mut self) {
        self.close_within(Duration::from_secs(1)).await;
    }

    /// Disconnects, giving what is queued and the DISCONNECT up to `grace` to go out.
    pub async fn close_within(&mut self, grace: Duration) {
        if self.connected && self.client.try_disconnect().is_ok() {
            // Events still undelivered would hold the driver: they are let go.
            let drain = async { while self.events.recv().await.is_some() {} };
            let _ =
                tokio::time::timeout(grace, async { tokio::join!(drain, &mut self.driver) }).await;
        }
        self.driver.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Polls `eventloop` until the session is dropped or disconnects, waiting
/// out the back-off after each failure.
async fn drive(
    mut eventloop: EventLoop,
    tx: tokio::sync::mpsc::Sender<SessionEvent>,
    what: &'static str,
    reconnect_max: Duration,
    track: bool,
) {
    let mut link = Link::default();
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack)))
                if ack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success =>
            {
                if !link.connected {
                    tracing::info!(session_present = ack.session_present, "{what}: connected");
                }
                link.up();
                SessionEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => SessionEvent::Message(p),
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if track => {
                SessionEvent::Sent(pkid)
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                use rumqttc::v5::mqttbytes::v5::PubAckReason;
                let refused = !matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                );
                // Design: a publication the broker refuses is said with its
                // real reason, once, and never ends the connection.
                if refused {
                    tracing::warn!(
                        packet = ack.pkid,
                        reason = ?ack.reason,
                        "{what}: the broker refused a publication"
                    );
                }
                match (track, refused) {
                    (true, _) => SessionEvent::Acknowledged(ack.pkid),
                    (false, true) => SessionEvent::Refused(format!("{:?}", ack.reason)),
                    (false, false) => continue,
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let wait = link.down(&mut eventloop, &e, what, reconnect_max);
                if tx.send(SessionEvent::Lost).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// True if `s` can stand inside a topic level (no separators or wildcards).
pub fn topic_level_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let max = Duration::from_secs(30);
        for (failures, nominal) in [
            (1u32, 500u64),
            (2, 1000),
            (3, 2000),
            (7, 30_000),
            (40, 30_000),
        ] {
            let d = backoff(failures, max).as_millis() as u64;
            assert!(
                d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                "{failures}: {d}"
            );
        }
        assert!(backoff(9, Duration::from_secs(2)) <= Duration::from_millis(2500));
    }
}
