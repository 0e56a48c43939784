//! The agent's configuration file, read in two stages: raw TOML, then a
//! validated [`Config`] with the policy parsed and paths resolved.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::{Policy, PolicyError};

/// Longest checkpoint id, characters (it is part of MQTT topics and of records).
pub const CHECKPOINT_ID_MAX: usize = 64;
/// A configuration that cannot be used, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file itself is missing or invalid.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        /// The config file.
        file: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The policy file it names is invalid.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    checkpoint: String,
    ledger: PathBuf,
    policy: PathBuf,
    checkpoint_key: PathBuf,
    #[serde(default = "default_max_bytes")]
    max_declaration_bytes: usize,
    #[serde(default)]
    mqtt: MqttConfig,
    #[serde(default = "default_batch")]
    batch_max: usize,
    uplink: Option<MqttConfig>,
    #[serde(default)]
    sync: SyncConfig,
    log_level: Option<String>,
    http: Option<HttpConfig>,
    desk: Option<DeskConfig>,
}

/// The officers' desk on the gate console (`[desk]`): who may sign in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    /// How long a sign-in lasts, minutes (default 480: one shift).
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
    /// The officers who may sign in.
    #[serde(default)]
    pub officers: Vec<OfficerAccount>,
}

/// Checks a `[desk]` (or the hub's `[national]`) table against the `[http]` that serves it.
pub fn check_desk(table: &str, desk: &DeskConfig, http: Option<&HttpConfig>) -> Result<(), String> {
    match http {
        None => return Err(format!("`[{table}]` is served over HTTP: add `[http]`")),
        // Design: passwords and session cookies must not cross a network in clear.
        Some(h) if !h.listen.ip().is_loopback() && h.tls.is_none() => {
            return Err(format!(
                "`[{table}]` with `http.listen` beyond loopback ({}) needs HTTPS: set `http.tls_cert` and `http.tls_key`",
                h.listen
            ));
        }
        Some(_) => {}
    }
    for (n, o) in desk.officers.iter().enumerate() {
        if o.id.trim().is_empty() {
            return Err(format!("`{table}.officers[{n}].id` is empty"));
        }
        if let Err(e) = argon2::PasswordHash::new(&o.password_hash) {
            return Err(format!(
                "`{table}.officers[{n}].password_hash` (officer {}) is not a password hash ({e}); make one with `permitgate desk hash-password`",
                o.id
            ));
        }
    }
    Ok(())
}

fn default_session_minutes() -> u64 {
    480
}

/// One officer's account (`[[desk.officers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerAccount {
    /// The officer's id, as the signed log records it.
    pub id: String,
    /// What they may do.
    pub role: Role,
    /// Their password's argon2 hash (PHC string; `permitgate desk hash-password` makes one).
    pub password_hash: String,
}

/// What an officer may do at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Scan tokens, release or refuse holds, acknowledge alerts.
    Officer,
    /// All that, and seize, assign and close alerts.
    Supervisor,
}

/// The operators' HTTP listener (`[http]`): metrics, health, gate console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; loopback unless the operator opens it.
    pub listen: std::net::SocketAddr,
    /// Certificate chain (PEM) to serve HTTPS with; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PKCS#8 PEM, mode 0600).
    pub tls_key: Option<PathBuf>,
    /// The IANA time zone the pages show times in (default: the machine's).
    pub time_zone: Option<String>,
    /// The TLS configuration built from them at load.
    #[serde(skip)]
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The time zone, read at load.
    #[serde(skip)]
    pub tz: jiff::tz::TimeZone,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([127, 0, 0, 1], 9710).into(),
            tls_cert: None,
            tls_key: None,
            time_zone: None,
            tls: None,
            tz: jiff::tz::TimeZone::UTC,
        }
    }
}

impl HttpConfig {
    /// Builds the TLS configuration from `tls_cert` and `tls_key` (paths
    /// relative to `base`) and reads the time zone.
    pub fn load_tls(&mut self, base: &Path) -> Result<(), String> {
        self.tz = crate::ui::time_zone(self.time_zone.as_deref())?;
        self.tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some(std::sync::Arc::new(crate::tls::server_config(
                &base.join(c),
                &base.join(k),
            )?)),
            _ => return Err("`http.tls_cert` and `http.tls_key` go together".into()),
        };
        Ok(())
    }
}

/// The log filter when neither `PERMITGATE_LOG` nor `log_level` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info,rumqttd=warn";

/// Sync with the hub (`[sync]`); it runs when `[uplink]` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often unsent records are sent and the hub's head is checked, ms.
    pub interval_ms: u64,
    /// Records not acknowledged by the hub within this long are sent again, seconds.
    pub resend_after_secs: u64,
    /// The authority's root public key (SPKI PEM file): signed policy
    /// bundles from the uplink are applied when it is set.
    pub policy_root_key: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_ms: 2000,
            resend_after_secs: 15,
            policy_root_key: None,
        }
    }
}

fn default_batch() -> usize {
    256
}

/// How the daemon reaches its MQTT broker (`[mqtt]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Stable client id for the persistent session; default `permitgate-{checkpoint}`.
    pub client_id: Option<String>,
    /// Topic prefix (`permitgate`).
    pub prefix: String,
    /// MQTT keep-alive, seconds.
    pub keep_alive_secs: u64,
    /// Most outgoing QoS 1 messages awaiting PUBACK.
    pub inflight: u16,
    /// User name, if the broker requires one.
    pub username: Option<String>,
    /// Password, if the broker requires one.
    pub password: Option<String>,
    /// Run an embedded broker on `host:port` (loopback only) instead of using an external one.
    pub embedded_broker: bool,
    /// TLS to the broker.
    pub tls: Option<TlsFiles>,
    /// Longest wait between reconnection attempts, seconds.
    pub reconnect_max_secs: u64,
}

/// PEM files for TLS to the broker (`[mqtt.tls]`); relative paths are taken from the config file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate, when the broker requires one.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: None,
            prefix: "permitgate".into(),
            keep_alive_secs: 30,
            inflight: 100,
            username: None,
            password: None,
            embedded_broker: false,
            tls: None,
            reconnect_max_secs: 30,
        }
    }
}

fn default_max_bytes() -> usize {
    256 * 1024
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// This checkpoint's id.
    pub checkpoint: String,
    /// Ledger database path.
    pub ledger: PathBuf,
    /// Policy file path.
    pub policy_file: PathBuf,
    /// The loaded policy.
    pub policy: Policy,
    /// Path of this checkpoint's signing key (created on first use).
    pub checkpoint_key: PathBuf,
    /// Largest declaration payload accepted.
    pub max_declaration_bytes: usize,
    /// The broker connection.
    pub mqtt: MqttConfig,
    /// Most declarations decided and committed in one transaction.
    pub batch_max: usize,
    /// The TLS client configuration, when `[mqtt.tls]` is set.
    pub mqtt_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The broker the hub is reached through (`[uplink]`), when sync is on.
    pub uplink: Option<MqttConfig>,
    /// TLS for the uplink, when `[uplink.tls]` is set.
    pub uplink_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Sync timing.
    pub sync: SyncConfig,
    /// The authority's root key for signed policy bundles, when configured.
    pub policy_root: Option<ed25519_dalek::VerifyingKey>,
    /// The log filter (`log_level`, tracing's `EnvFilter` syntax).
    pub log_level: String,
    /// The operators' HTTP listener, when `[http]` is set.
    pub http: Option<HttpConfig>,
    /// The officers' desk, when `[desk]` is set.
    pub desk: Option<DeskConfig>,
}

/// Parses TOML text read from `file`; an error names the file and line.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::File {
        file: file.to_owned(),
        line: e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        }),
        message: e.message().trim().to_owned(),
    })
}

/// Builds the TLS client configuration for `m.tls`, paths relative to `base`.
pub fn tls_for(
    base: &Path,
    m: &MqttConfig,
    table: &str,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    let Some(t) = &m.tls else { return Ok(None) };
    let client = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        _ => {
            return Err(format!(
                "`{table}.tls`: set both `cert_file` and `key_file`, or neither"
            ));
        }
    };
    let cfg = crate::tls::client_config(
        &base.join(&t.ca_file),
        client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )?;
    Ok(Some(std::sync::Arc::new(cfg)))
}

/// Checks the `[mqtt]`-style table `table` for values the client cannot use.
pub fn check_mqtt(m: &MqttConfig, table: &str) -> Result<(), String> {
    if m.inflight == 0 {
        return Err(format!("`{table}.inflight` must be at least 1"));
    }
    if m.reconnect_max_secs == 0 {
        return Err(format!("`{table}.reconnect_max_secs` must be at least 1"));
    }
    Ok(())
}

/// Reads only `log_level` from the config file (for a reload on SIGHUP).
pub fn log_level_of(file: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::File {
        file: file.to_owned(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let table: toml::Table = parse_toml(file, &text)?;
    match table.get("log_level") {
        None => Ok(DEFAULT_LOG_LEVEL.to_owned()),
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ConfigError::File {
            file: file.to_owned(),
            line: None,
            message: "`log_level` must be a string".into(),
        }),
    }
}

impl Config {
    /// Reads and validates a config file; relative paths are taken from its directory.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let bad = |line: Option<usize>, message: String| ConfigError::File {
            file: file.to_owned(),
            line,
            message,
        };
        let text =
            std::fs::read_to_string(file).map_err(|e| bad(None, format!("cannot read: {e}")))?;
        let raw: RawConfig = parse_toml(file, &text)?;
        let id_ok = !raw.checkpoint.is_empty()
            && raw.checkpoint.len() <= CHECKPOINT_ID_MAX
            && raw
                .checkpoint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(bad(
                None,
                format!(
                    "`checkpoint`: `{}` must be 1 to {CHECKPOINT_ID_MAX} of A-Z a-z 0-9 - _ (it is part of MQTT topics)",
                    raw.checkpoint
                ),
            ));
        }
        if raw.max_declaration_bytes < 1024 {
            return Err(bad(
                None,
                "`max_declaration_bytes` must be at least 1024".into(),
            ));
        }
        if raw.batch_max == 0 || raw.batch_max > 10_000 {
            return Err(bad(None, "`batch_max` must be 1 to 10000".into()));
        }
        if raw.mqtt.embedded_broker
            && !raw
                .mqtt
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        {
            return Err(bad(
                None,
                format!(
                    "`mqtt.host`: the embedded broker listens on loopback only; `{}` is not a loopback address",
                    raw.mqtt.host
                ),
            ));
        }
        check_mqtt(&raw.mqtt, "mqtt").map_err(|m| bad(None, m))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mqtt_tls = tls_for(base, &raw.mqtt, "mqtt").map_err(|m| bad(None, m))?;
        let uplink_tls = match &raw.uplink {
            Some(u) => {
                check_mqtt(u, "uplink").map_err(|m| bad(None, m))?;
                if u.embedded_broker {
                    return Err(bad(
                        None,
                        "`uplink.embedded_broker`: the uplink is another machine's broker".into(),
                    ));
                }
                tls_for(base, u, "uplink").map_err(|m| bad(None, m))?
            }
            None => None,
        };
        if raw.sync.interval_ms < 50 || raw.sync.resend_after_secs == 0 {
            return Err(bad(
                None,
                "`sync.interval_ms` must be at least 50 and `sync.resend_after_secs` at least 1"
                    .into(),
            ));
        }
        let policy_root = match &raw.sync.policy_root_key {
            Some(f) => Some(
                crate::keys::load_verifying_key(&base.join(f))
                    .map_err(|e| bad(None, format!("`sync.policy_root_key`: {e}")))?,
            ),
            None => None,
        };
        let log_level = raw
            .log_level
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(bad(None, format!("`log_level`: `{log_level}`: {e}")));
        }
        let mut http = raw.http;
        if let Some(h) = &mut http {
            h.load_tls(base).map_err(|m| bad(None, m))?;
        }
        if let Some(desk) = &raw.desk {
            check_desk("desk", desk, http.as_ref()).map_err(|m| bad(None, m))?;
        }
        let policy_file = base.join(&raw.policy);
        let policy = Policy::load(&policy_file)?;
        Ok(Config {
            file: file.to_owned(),
            checkpoint: raw.checkpoint,
            ledger: base.join(raw.ledger),
            policy_file,
            policy,
            checkpoint_key: base.join(raw.checkpoint_key),
            max_declaration_bytes: raw.max_declaration_bytes,
            mqtt: raw.mqtt,
            batch_max: raw.batch_max,
            mqtt_tls,
            uplink: raw.uplink,
            uplink_tls,
            sync: raw.sync,
            policy_root,
            log_level,
            http,
            desk: raw.desk,
        })
    }
}
