//! Logging set-up: `tracing` to stderr (journald takes it from there), as
//! text or JSON, with a filter that can be changed while running (SIGHUP).

use std::sync::OnceLock;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The environment variable that overrides the filter.
pub const ENV: &str = "PERMITGATE_LOG";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. `PERMITGATE_LOG` wins over `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env(ENV)
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_LEVEL));
    let (filter, handle) = reload::Layer::new(filter);
    use std::io::IsTerminal;
    // Colour only on a terminal: journald and log files get plain text.
    let layer = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json()).try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the filter of the running subscriber. Ignored (`Ok(false)`)
/// while `PERMITGATE_LOG` is set: the environment was the operator's choice.
pub fn set_level(level: &str) -> Result<bool, String> {
    if std::env::var_os(ENV).is_some() {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(h) => h.reload(filter).map(|_| true).map_err(|e| e.to_string()),
        None => Ok(false),
    }
}
