//! The policy in force, and the one rule by which a newer one replaces it.
//!
//! Design: the policy file (at start-up and on SIGHUP) and the authority's
//! signed bundles (from the uplink, or stored in the ledger) all go through
//! [`PolicyInForce::offer`], one compare-and-swap under a lock, so a reload
//! racing a bundle can never leave the older of the two in force. The
//! stages that decide learn of a change through [`PolicyInForce::watch`],
//! which always yields the policy in force, never an older one in transit.

use std::sync::Arc;

use crate::clock::{UnixTime, to_rfc3339};
use crate::policy::Policy;

/// The largest step by which a new policy's version may exceed the one in
/// force: a version far ahead (2^63−1, signed by mistake or by a stolen
/// root key) would otherwise make every later policy look older.
pub const MAX_VERSION_STEP: u64 = 1000;
/// How far ahead of this clock a policy's `issued_at` may be.
pub const MAX_ISSUED_AHEAD: i64 = 86_400;

/// Why an offered policy was not put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not newer than the policy in force (a replay, or an older copy).
    #[error("version {offered} is not newer than version {in_force} in force")]
    NotNewer {
        /// The offered version.
        offered: u64,
        /// The version in force.
        in_force: u64,
    },
    /// Newer by more than [`MAX_VERSION_STEP`].
    #[error(
        "version {offered} is more than {MAX_VERSION_STEP} ahead of version {in_force} in force"
    )]
    TooFarAhead {
        /// The offered version.
        offered: u64,
        /// The version in force.
        in_force: u64,
    },
    /// Issued more than [`MAX_ISSUED_AHEAD`] after this clock's time.
    #[error("issued at {issued_at}, more than a day ahead of this clock ({now})")]
    IssuedInTheFuture {
        /// The offered policy's `issued_at`, RFC 3339.
        issued_at: String,
        /// This clock, RFC 3339.
        now: String,
    },
}

/// The rule, without state: may `offered` replace `in_force` at `now`?
pub fn admissible(in_force: &Policy, offered: &Policy, now: UnixTime) -> Result<(), Refusal> {
    if offered.version <= in_force.version {
        return Err(Refusal::NotNewer {
            offered: offered.version,
            in_force: in_force.version,
        });
    }
    if offered.version - in_force.version > MAX_VERSION_STEP {
        return Err(Refusal::TooFarAhead {
            offered: offered.version,
            in_force: in_force.version,
        });
    }
    if offered.issued_at > now.saturating_add(MAX_ISSUED_AHEAD) {
        return Err(Refusal::IssuedInTheFuture {
            issued_at: to_rfc3339(offered.issued_at),
            now: to_rfc3339(now),
        });
    }
    Ok(())
}

/// The policy in force, shared by every task of a process.
#[derive(Debug)]
pub struct PolicyInForce {
    // Design: the watch channel's value is the one copy; swapping it and
    // telling the watchers is one step under the channel's lock.
    current: tokio::sync::watch::Sender<Arc<Policy>>,
}

impl PolicyInForce {
    /// Starts with `policy` in force.
    pub fn new(policy: Policy) -> Arc<PolicyInForce> {
        Arc::new(PolicyInForce {
            current: tokio::sync::watch::Sender::new(Arc::new(policy)),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.current.borrow().clone()
    }

    /// A receiver that wakes when a newer policy is put in force.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Arc<Policy>> {
        self.current.subscribe()
    }

    /// Puts `offered` in force if [`admissible`] against the one in force, atomically.
    pub fn offer(&self, offered: Policy, now: UnixTime) -> Result<Arc<Policy>, Refusal> {
        let mut outcome = None;
        self.current
            .send_if_modified(|cur| match admissible(cur, &offered, now) {
                Ok(()) => {
                    *cur = Arc::new(offered);
                    outcome = Some(Ok(cur.clone()));
                    true
                }
                Err(refusal) => {
                    outcome = Some(Err(refusal));
                    false
                }
            });
        outcome.unwrap_or_else(|| Ok(self.current()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(version: u64, issued_at: UnixTime) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = crate::policy::tests::sample(dir.path());
        let mut p = Policy::load(&path).unwrap();
        p.version = version;
        p.issued_at = issued_at;
        p
    }

    #[test]
    fn only_a_bounded_step_forward_is_taken() {
        let now = 1_800_000_000;
        let f = PolicyInForce::new(policy(7, now - 10));
        assert!(matches!(
            f.offer(policy(7, now), now),
            Err(Refusal::NotNewer { .. })
        ));
        assert!(matches!(
            f.offer(policy(6, now), now),
            Err(Refusal::NotNewer { .. })
        ));
        // The version that would freeze every later update.
        assert!(matches!(
            f.offer(policy(i64::MAX as u64, now), now),
            Err(Refusal::TooFarAhead { .. })
        ));
        assert!(matches!(
            f.offer(policy(8, now + 2 * 86_400), now),
            Err(Refusal::IssuedInTheFuture { .. })
        ));
        assert_eq!(f.current().version, 7);
        assert_eq!(f.offer(policy(8, now), now).unwrap().version, 8);
        assert_eq!(
            f.offer(policy(8 + MAX_VERSION_STEP, now), now)
                .unwrap()
                .version,
            1008
        );
        assert_eq!(f.current().version, 1008);
    }

    #[test]
    fn racing_offers_leave_the_newest_in_force() {
        let now = 1_800_000_000;
        for _ in 0..50 {
            let f = PolicyInForce::new(policy(1, now));
            let offers: Vec<Policy> = (2..=20).map(|v| policy(v, now)).collect();
            std::thread::scope(|s| {
                for p in offers.into_iter().rev() {
                    let f = &f;
                    s.spawn(move || {
                        let _ = f.offer(p, now);
                    });
                }
            });
            assert_eq!(f.current().version, 20);
        }
    }

    #[test]
    fn a_watcher_sees_only_the_newest() {
        let now = 1_800_000_000;
        let f = PolicyInForce::new(policy(1, now));
        let mut w = f.watch();
        assert!(!w.has_changed().unwrap());
        f.offer(policy(3, now), now).unwrap();
        assert!(f.offer(policy(2, now), now).is_err());
        assert!(w.has_changed().unwrap());
        assert_eq!(w.borrow_and_update().version, 3);
        assert!(!w.has_changed().unwrap(), "a refused offer wakes nobody");
    }
}
