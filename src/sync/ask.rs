//! Asking the hub, from the command line, which of this checkpoint's heads
//! it holds: the retained, sealed acknowledgement on the uplink.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;

use super::protocol::{Ack, SyncTopics};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::mqtt::{Session, SessionEvent, topic_of};

/// Why the hub could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No `[uplink]` in the config.
    #[error("no [uplink] is configured")]
    NoUplink,
    /// The runtime could not start.
    #[error("cannot start: {0}")]
    Runtime(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer from the hub within {0:?}")]
    Timeout(Duration),
    /// The answer was not a genuine acknowledgement.
    #[error("the hub's acknowledgement was refused: {0}")]
    Refused(String),
}

/// The newest of this checkpoint's signed heads the hub holds, as its
/// sealed, retained acknowledgement says; `None` if it holds none.
pub fn held_head(cfg: &Config, wait: Duration) -> Result<Option<String>, AskError> {
    let uplink = cfg.uplink.clone().ok_or(AskError::NoUplink)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut opts = crate::mqtt::options(&uplink, cfg.uplink_tls.as_ref(), String::new());
        // A throwaway session of its own: never the daemon's.
        opts.set_client_id(format!(
            "permitgate-{}-check-{}",
            cfg.checkpoint,
            std::process::id()
        ))
        .set_clean_start(true)
        .set_session_expiry_interval(None);
        let mut session = Session::new(opts, 16, "ledger check", Duration::from_secs(1));
        let topic = SyncTopics::new(&uplink.prefix).ack(&cfg.checkpoint);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            let ev = tokio::select! {
                _ = &mut deadline => {
                    session.close().await;
                    return Err(AskError::Timeout(wait));
                }
                ev = session.next() => ev,
            };
            match ev {
                SessionEvent::Connected => {
                    let _ = session
                        .client
                        .try_subscribe(topic.clone(), QoS::AtLeastOnce);
                }
                SessionEvent::Message(p) if topic_of(&p) == topic => {
                    session.ack(&p);
                    session.close().await;
                    let ack = Ack::open(&p.payload, &cfg.policy.registry, SystemClock.now())
                        .map_err(|e| AskError::Refused(e.to_string()))?;
                    return Ok(ack.post_head);
                }
                _ => {}
            }
        }
    })
}
