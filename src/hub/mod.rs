//! `permitgate hub`: receives every checkpoint's signed consumption
//! records, verifies them against its registry of checkpoint keys, stores
//! them once in a global order, acknowledges them to their checkpoint,
//! redistributes them to all, serves backfill, and raises double use.
//!
//! Design: a record batch is acknowledged to the broker only after the
//! store commits, so a hub killed mid-batch gets it again; storing is
//! idempotent. Acknowledgements to checkpoints are retained messages; the
//! feed is best-effort, and checkpoints backfill whatever they missed.

pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet, Publish, QoS};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock, to_rfc3339};
use crate::config::{ConfigError, MqttConfig};
use crate::record::ConsumptionRecord;
use crate::sync::protocol::{Ack, Backfill, Feed, Records, SyncTopics};
use crate::verdict::{Alert, AlertKind};
use store::{HubStore, StoreError};

/// The hub's configuration file.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The SQLite store.
    pub store: PathBuf,
    /// The national broker.
    pub mqtt: MqttConfig,
    /// TLS to it.
    pub mqtt_tls: Option<Arc<rustls::ClientConfig>>,
    /// Checkpoint id → public key: whose records are accepted.
    pub checkpoints: HashMap<String, VerifyingKey>,
    /// Shared-subscription group hub processes share the load in.
    pub share_group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    store: PathBuf,
    #[serde(default)]
    mqtt: MqttConfig,
    #[serde(default = "default_group")]
    share_group: String,
    checkpoints: HashMap<String, String>,
}

fn default_group() -> String {
    "permitgate-hub".into()
}

impl HubConfig {
    /// Reads and validates a hub config; relative paths are taken from its directory.
    pub fn load(file: &Path) -> Result<HubConfig, ConfigError> {
        let bad = |message: String| ConfigError::File {
            file: file.to_owned(),
            line: None,
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| bad(format!("cannot read: {e}")))?;
        let raw: RawHub = crate::config::parse_toml(file, &text)?;
        crate::config::check_mqtt(&raw.mqtt, "mqtt").map_err(bad)?;
        if raw.mqtt.embedded_broker {
            return Err(bad(
                "`mqtt.embedded_broker`: the hub uses the national broker".into(),
            ));
        }
        if !crate::mqtt::topic_level_ok(&raw.share_group) {
            return Err(bad(format!(
                "`share_group`: `{}` cannot be a topic level",
                raw.share_group
            )));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let mqtt_tls = crate::config::tls_for(base, &raw.mqtt, "mqtt").map_err(bad)?;
        let mut checkpoints = HashMap::new();
        for (id, key) in raw.checkpoints {
            if !crate::mqtt::topic_level_ok(&id) {
                return Err(bad(format!(
                    "`checkpoints.{id}`: not a usable checkpoint id"
                )));
            }
            let pem = if key.trim_start().starts_with("-----BEGIN") {
                key
            } else {
                std::fs::read_to_string(base.join(&key))
                    .map_err(|e| bad(format!("`checkpoints.{id}`: cannot read {key}: {e}")))?
            };
            let vk = crate::keys::parse_public_pem(&pem)
                .map_err(|e| bad(format!("`checkpoints.{id}`: {e}")))?;
            checkpoints.insert(id, vk);
        }
        Ok(HubConfig {
            store: base.join(raw.store),
            mqtt: raw.mqtt,
            mqtt_tls,
            checkpoints,
            share_group: raw.share_group,
        })
    }
}

/// Why the hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A message the hub sends after a commit.
struct Out {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Runs the hub until `shutdown` completes.
pub async fn run(cfg: HubConfig, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
    let mut store = HubStore::open(&cfg.store)?;
    let (records, alerts) = store.counts()?;
    info!(store = %cfg.store.display(), records, alerts, checkpoints = cfg.checkpoints.len(), "hub store open");
    let topics = SyncTopics::new(&cfg.mqtt.prefix);
    let mut opts = crate::mqtt::options(&cfg.mqtt, cfg.mqtt_tls.as_ref(), "permitgate-hub".into());
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    eventloop.set_network_options(crate::mqtt::network_options());
    let reconnect_max = Duration::from_secs(cfg.mqtt.reconnect_max_secs);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::pin!(shutdown);
    let mut link = crate::mqtt::Link::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("hub shutting down");
                if link.connected {
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
                }
                return Ok(());
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                    info!(broker = %format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port), "hub connected to broker");
                    link.up();
                    for t in [topics.records_filter(), topics.backfill()] {
                        let _ = client.try_subscribe(format!("$share/{}/{t}", cfg.share_group), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    match tokio::task::block_in_place(|| handle(&cfg, &topics, &mut store, &p)) {
                        Ok(outs) => {
                            // Stored (or nothing to store): only now may the broker forget it.
                            let _ = client.try_ack(&p);
                            for o in outs {
                                tracing::debug!(topic = %o.topic, bytes = o.payload.len(), "hub: publishing");
                                if client.try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload).is_err() {
                                    warn!("hub: outgoing queue full; checkpoints will backfill");
                                }
                            }
                        }
                        Err(e) => error!(error = %e, "hub: could not store records; not acknowledging them"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tokio::time::sleep(link.down(&mut eventloop, &e, "hub", reconnect_max)).await;
                }
            },
        }
    }
}

fn handle(
    cfg: &HubConfig,
    topics: &SyncTopics,
    store: &mut HubStore,
    p: &Publish,
) -> Result<Vec<Out>, StoreError> {
    let now = SystemClock.now();
    if let Some(sender) = topics.checkpoint_of_records(&p.topic) {
        return on_records(cfg, topics, store, sender, &p.payload, now);
    }
    if p.topic == topics.backfill() {
        let req = match Backfill::decode(&p.payload) {
            Ok(r) if cfg.checkpoints.contains_key(&r.checkpoint) => r,
            Ok(r) => {
                warn!(checkpoint = %r.checkpoint, "hub: backfill request from an unknown checkpoint; ignored");
                return Ok(Vec::new());
            }
            Err(e) => {
                warn!(error = %e, "hub: unreadable backfill request; ignored");
                return Ok(Vec::new());
            }
        };
        let entries = store.feed_after(req.after, req.limit as usize)?;
        let head = store.head()?;
        return Ok(vec![Out {
            topic: topics.backfill_reply(&req.checkpoint),
            payload: Feed { entries, head }.encode(),
            retain: false,
        }]);
    }
    Ok(Vec::new())
}

fn on_records(
    cfg: &HubConfig,
    topics: &SyncTopics,
    store: &mut HubStore,
    sender: &str,
    payload: &[u8],
    now: i64,
) -> Result<Vec<Out>, StoreError> {
    let mut outs = Vec::new();
    let mut refuse =
        |store: &mut HubStore, detail: String, bytes: &[u8]| -> Result<(), StoreError> {
            warn!(sender, %detail, "hub: record refused");
            let alert = Alert {
                kind: AlertKind::RefusedRecord,
                checkpoint: "hub".into(),
                raised_at: to_rfc3339(now),
                declaration_id: None,
                license_id: None,
                reasons: Vec::new(),
                payload_sha256: Some(hex::encode(Sha256::digest(bytes))),
                alert_id: Some(hex::encode(Sha256::digest(
                    [b"refused:".as_slice(), bytes].concat(),
                ))),
                records: Vec::new(),
                detail: Some(detail),
            };
            if store.record_alert(&alert, now)? {
                outs.push(Out {
                    topic: topics.alerts(),
                    payload: serde_json::to_vec(&alert).unwrap_or_default(),
                    retain: false,
                });
            }
            Ok(())
        };
    let batch = match Records::decode(payload) {
        Ok(b) => b,
        Err(e) => {
            refuse(store, format!("from topic of `{sender}`: {e}"), payload)?;
            return Ok(outs);
        }
    };
    let mut valid = Vec::new();
    for bytes in batch.records {
        match ConsumptionRecord::verify(&bytes, |kid| cfg.checkpoints.get(kid).copied()) {
            Ok(rec) if rec.checkpoint == sender => valid.push((rec, bytes)),
            Ok(rec) => refuse(
                store,
                format!(
                    "record of `{}` sent on the topic of `{sender}`",
                    rec.checkpoint
                ),
                &bytes,
            )?,
            Err(e) => refuse(
                store,
                format!("sent on the topic of `{sender}`: {e}"),
                &bytes,
            )?,
        }
    }
    if valid.is_empty() {
        return Ok(outs);
    }
    let stored = store.store(&valid, now)?;
    for (cp, contiguous) in &stored.contiguous {
        outs.push(Out {
            topic: topics.ack(cp),
            payload: Ack {
                checkpoint: cp.clone(),
                contiguous: *contiguous,
            }
            .encode(),
            retain: true,
        });
    }
    if !stored.new_entries.is_empty() {
        let head = stored.new_entries.iter().map(|e| e.0).max().unwrap_or(0);
        info!(
            sender,
            stored = stored.new_entries.len(),
            head,
            "hub: records stored"
        );
        outs.push(Out {
            topic: topics.feed(),
            payload: Feed {
                entries: stored.new_entries,
                head,
            }
            .encode(),
            retain: false,
        });
    }
    for a in stored.alerts {
        warn!(license_id = a.license_id.as_deref().unwrap_or("-"), kind = ?a.kind, "hub: alert");
        outs.push(Out {
            topic: topics.alerts(),
            payload: serde_json::to_vec(&a).unwrap_or_default(),
            retain: false,
        });
    }
    Ok(outs)
}
