//! The embedded MQTT broker (rumqttd, from the same project as rumqttc) for
//! a post with no broker of its own and for the development profile.
//!
//! It listens with MQTT 3.1.1 on the configured address (scanners and
//! officers' tools) and with MQTT 5 on a second, ephemeral loopback port
//! that only the daemon in the same process uses; both share one router.
//!
//! Design: it keeps sessions in memory only, so declarations queued for a
//! stopped daemon die with the process that hosts them. Gateways that must
//! ride out daemon restarts run a standalone broker (mosquitto) instead.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Its configuration was refused.
    #[error("embedded broker configuration: {0}")]
    Config(String),
    /// It did not start listening.
    #[error("embedded broker on {listen}: {reason}")]
    Start {
        /// The address it was to listen on.
        listen: SocketAddr,
        /// Why it failed.
        reason: String,
    },
}

/// Starts the broker on `listen` in its own threads; returns, once it
/// accepts connections, the loopback address of its MQTT 5 listener.
pub fn start(listen: SocketAddr, max_payload: usize) -> Result<SocketAddr, BrokerError> {
    let internal: SocketAddr = TcpListener::bind((listen.ip(), 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| BrokerError::Start {
            listen,
            reason: format!("no free port for the daemon's own listener: {e}"),
        })?;
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "embedded"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 100
dynamic_filters = true

[v5.1]
name = "daemon"
listen = "{internal}"
next_connection_delay_ms = 1
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|e| BrokerError::Config(e.to_string()))?;
    if TcpListener::bind(listen).is_err() {
        return Err(BrokerError::Start {
            listen,
            reason: "the address is already in use".into(),
        });
    }
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Start {
            listen,
            reason: e.to_string(),
        })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpListener::bind(listen).is_err() && TcpListener::bind(internal).is_err() {
            tracing::info!(%listen, "embedded broker listening");
            return Ok(internal);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::Start {
        listen,
        reason: "not listening after 5 s".into(),
    })
}
