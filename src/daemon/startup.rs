//! Start-up: the policy to begin with, and the ledger's integrity check beside the first decisions.

use std::future::Future;

use tracing::{error, info, warn};

use super::DaemonError;
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError};

/// The policy to start with: the config's file, or the newest signed
/// bundle in the ledger when it is newer (and verifies with the root key).
///
/// Design: both were admitted when they arrived (the file by the operator,
/// the bundle through [`crate::in_force::admissible`]), so the newer wins
/// here without the step rule, which only guards what arrives later.
pub fn newest_policy(cfg: &Config, ledger: &Ledger) -> crate::policy::Policy {
    let Some(root) = &cfg.policy_root else {
        return cfg.policy.clone();
    };
    match ledger.newest_policy_bundle() {
        Ok(Some(bytes)) => match crate::bundle::open(&bytes, root) {
            Ok(p) if p.version > cfg.policy.version => {
                info!(
                    version = p.version,
                    "using the newest signed policy bundle from the ledger"
                );
                p
            }
            Ok(_) => cfg.policy.clone(),
            Err(e) => {
                warn!(error = %e, "the stored policy bundle does not verify; using the policy file");
                cfg.policy.clone()
            }
        },
        Ok(None) => cfg.policy.clone(),
        Err(e) => {
            warn!(error = %e, "cannot read stored policy bundles; using the policy file");
            cfg.policy.clone()
        }
    }
}

/// Checks the whole ledger file on a thread of its own while the daemon
/// decides; the answer comes on the channel.
///
/// Design: on ten million rows the check takes seconds and start-up to
/// ready must not. SQLite still refuses any damaged page a decision reads;
/// what the check adds is finding damage anywhere in the file, and the
/// daemon stops when it does.
pub(super) fn integrity_check_in_background(
    ledger: &Ledger,
    keys: Vec<ed25519_dalek::VerifyingKey>,
) -> Result<tokio::sync::oneshot::Receiver<Result<(), LedgerError>>, DaemonError> {
    let reader = ledger.second_handle()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ledger-check".into())
        .spawn(move || {
            // Lowest CPU priority for this thread alone (Linux's setpriority
            // on a thread id): decisions go first, the check uses what is left.
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            {
                warn!(error = %e, "ledger: cannot lower the integrity check's priority");
            }
            let started = std::time::Instant::now();
            let mut result = reader.integrity_check();
            if result.is_ok() {
                info!(
                    ms = started.elapsed().as_millis() as u64,
                    "ledger: integrity check of the whole file passed"
                );
                // Then its tables against its log (what `ledger check` does).
                result = match reader.check_log(&keys, &[]) {
                    Ok(Ok(r)) => {
                        info!(
                            leaves = r.leaves,
                            ms = started.elapsed().as_millis() as u64,
                            "ledger: its tables are what its log says"
                        );
                        Ok(())
                    }
                    Ok(Err(why)) => {
                        Err(reader.mark_damaged(&format!("its tables contradict its log: {why}")))
                    }
                    Err(e) => Err(e),
                };
            }
            let _ = tx.send(result);
        })
        .map_err(|source| DaemonError::Thread {
            what: "ledger-check",
            source,
        })?;
    Ok(rx)
}

/// `shutdown`, or sooner, with the error, if the integrity check finds the
/// ledger damaged.
pub(super) async fn stop_if_damaged(
    check: tokio::sync::oneshot::Receiver<Result<(), LedgerError>>,
    shutdown: impl Future<Output = ()>,
) -> Option<LedgerError> {
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return None,
        result = check => {
            if let Ok(Err(e)) = result {
                error!(error = %e, "ledger: damaged; stopping, so no decision rests on it");
                return Some(e);
            }
        }
    }
    shutdown.await;
    None
}
