//! SIGHUP: the log level and the policy file, read again.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::clock::SharedClock;
use crate::in_force::PolicyInForce;

/// On SIGHUP, applies the config file's `log_level`, and reads the policy
/// file again and offers it to the policy in force (it replaces it only if
/// newer; a signed bundle may be newer still).
pub(super) async fn reload_on_sighup(
    config_file: std::path::PathBuf,
    file: std::path::PathBuf,
    in_force: Arc<PolicyInForce>,
    clock: SharedClock,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            warn!("cannot listen for SIGHUP; the policy file is read at start-up only");
            return;
        };
        while hup.recv().await.is_some() {
            match crate::config::log_level_of(&config_file)
                .map_err(|e| e.to_string())
                .and_then(|level| crate::logging::set_level(&level).map(|set| (level, set)))
            {
                // At WARN, so the line survives the level it sets.
                Ok((level, true)) => warn!(log_level = %level, "SIGHUP: log level set"),
                Ok((_, false)) => {
                    info!("SIGHUP: log level left as {} sets it", crate::logging::ENV)
                }
                Err(e) => {
                    error!(error = %e, "SIGHUP: cannot apply `log_level`; the level in force is kept")
                }
            }
            match crate::policy::Policy::load(&file) {
                Ok(p) => match in_force.offer(p, clock.now()) {
                    Ok(p) => {
                        info!(file = %file.display(), version = p.version, "SIGHUP: policy file reloaded");
                    }
                    Err(e) => warn!(
                        file = %file.display(),
                        error = %e,
                        "SIGHUP: the policy file does not replace the policy in force; kept"
                    ),
                },
                Err(e) => {
                    error!(error = %e, "SIGHUP: the policy file is invalid; the policy in force is kept")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (config_file, file, in_force, clock);
}
