//! The hub's configuration file, validated: the store, the national
//! broker, the policy whose registry says whose records count, and the key
//! the hub seals its acknowledgements and feed with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::config::{ConfigError, MqttConfig};
use crate::policy::Policy;

/// The hub's configuration file.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The store: a SQLite file (relative to the config's directory), or a
    /// PostgreSQL connection string (`postgresql://…`, libpq's multi-host
    /// form for failover).
    pub store: String,
    /// The national broker.
    pub mqtt: MqttConfig,
    /// TLS to it.
    pub mqtt_tls: Option<Arc<rustls::ClientConfig>>,
    /// The policy file, whose `[[checkpoints]]` and `[[hubs]]` are the registry.
    pub policy_file: PathBuf,
    /// The loaded policy.
    pub policy: Policy,
    /// The authority's root key: signed policy bundles are applied when set.
    pub policy_root: Option<VerifyingKey>,
    /// This hub's signing key (PKCS#8 PEM; created on first run).
    pub key_file: PathBuf,
    /// The kid the policy's `[[hubs]]` lists this hub's key under.
    pub kid: String,
    /// Shared-subscription group hub processes share the load in.
    pub share_group: String,
    /// The HTTP listener (`[http]`): metrics, health, the national view's API.
    pub http: Option<crate::config::HttpConfig>,
    /// Who may sign in to the national view (`[national]`); without it the view is open on loopback.
    pub national: Option<crate::config::DeskConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    store: String,
    policy: PathBuf,
    hub_key: PathBuf,
    hub_kid: String,
    policy_root_key: Option<PathBuf>,
    #[serde(default)]
    mqtt: MqttConfig,
    #[serde(default = "default_group")]
    share_group: String,
    /// Where the registry was before it moved into the policy.
    checkpoints: Option<toml::Value>,
    http: Option<crate::config::HttpConfig>,
    national: Option<crate::config::DeskConfig>,
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
        if raw.checkpoints.is_some() {
            return Err(bad(
                "`[checkpoints]`: the registry of checkpoint keys is part of the policy now; move each to a `[[checkpoints]]` entry there".into(),
            ));
        }
        crate::config::check_mqtt(&raw.mqtt, "mqtt").map_err(bad)?;
        if raw.mqtt.embedded_broker {
            return Err(bad(
                "`mqtt.embedded_broker`: the hub uses the national broker".into(),
            ));
        }
        for (key, value) in [("share_group", &raw.share_group), ("hub_kid", &raw.hub_kid)] {
            if !crate::mqtt::topic_level_ok(value) {
                return Err(bad(format!(
                    "`{key}`: `{value}` must be 1 to 64 characters without `/`, `+` or `#`"
                )));
            }
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let mqtt_tls = crate::config::tls_for(base, &raw.mqtt, "mqtt").map_err(bad)?;
        let mut http = raw.http;
        if let Some(h) = &mut http {
            h.load_tls(base).map_err(bad)?;
        }
        match (&raw.national, &http) {
            (Some(n), _) => crate::config::check_desk("national", n, http.as_ref()).map_err(bad)?,
            // Design: who used which license, and where goods went, is not
            // served to a network without a sign-in.
            (None, Some(h)) if !h.listen.ip().is_loopback() => {
                return Err(bad(format!(
                    "`http.listen` {} is beyond loopback: the national view and the API need sign-in there; add `[national]` with its officers (and HTTPS)",
                    h.listen
                )));
            }
            _ => {}
        }
        let policy_file = base.join(&raw.policy);
        let policy = Policy::load(&policy_file)?;
        let policy_root = match &raw.policy_root_key {
            Some(f) => Some(
                crate::keys::load_verifying_key(&base.join(f))
                    .map_err(|e| bad(format!("`policy_root_key`: {e}")))?,
            ),
            None => None,
        };
        Ok(HubConfig {
            store: if super::store::is_postgres(&raw.store) {
                raw.store
            } else {
                base.join(&raw.store).to_string_lossy().into_owned()
            },
            mqtt: raw.mqtt,
            mqtt_tls,
            policy_file,
            policy,
            policy_root,
            key_file: base.join(raw.hub_key),
            kid: raw.hub_kid,
            share_group: raw.share_group,
            http,
            national: raw.national,
        })
    }
}
