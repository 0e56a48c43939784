//! MQTT client settings shared by the daemon, its uplink and the hub.

use std::sync::Arc;
use std::time::Duration;

use rand_core::RngCore;
use rumqttc::{MqttOptions, NetworkOptions};

use crate::config::MqttConfig;

/// Client options for `m`: persistent session under its `client_id` (or
/// `default_id`), manual acknowledgements, credentials and TLS when configured.
pub fn options(
    m: &MqttConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    default_id: String,
) -> MqttOptions {
    let client_id = m.client_id.clone().unwrap_or(default_id);
    let mut opts = MqttOptions::new(client_id, m.host.clone(), m.port);
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(m.keep_alive_secs.max(5)))
        .set_inflight(m.inflight);
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
}

impl Link {
    /// A successful CONNACK.
    pub fn up(&mut self) {
        self.connected = true;
        self.failures = 0;
    }

    /// The connection failed: logs the first failure only (not every retry),
    /// drops rumqttc's in-memory retransmissions (the durable copies are the
    /// caller's), and returns how long to wait before the next attempt.
    pub fn down(
        &mut self,
        eventloop: &mut rumqttc::EventLoop,
        error: &dyn std::fmt::Display,
        what: &str,
        max: Duration,
    ) -> Duration {
        if self.connected || self.failures == 0 {
            tracing::warn!(error = %error, "{what}: connection lost; retrying with backoff");
        }
        self.connected = false;
        self.failures = self.failures.saturating_add(1);
        eventloop.clean();
        eventloop.pending.clear();
        backoff(self.failures, max)
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
