//! Whether this post's clock agrees with the hub's signed time.
//!
//! The hub seals its current time into every backfill reply, with the time
//! the post put in its request: the hub signed between the post's sending
//! and its receiving, so a post whose clock reads more than the allowed
//! skew outside that window is wrong. A replayed reply names another
//! request and is not used.
//!
//! Design: the judgement is pure ([`judge`]); [`ClockTrust`] only keeps the
//! latest one for the tasks that decide.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::{UnixTime, to_rfc3339};

/// How long a judgement by the hub's time stands without a new one.
pub const TRUST_FOR: Duration = Duration::from_secs(3600);

/// What the hub's signed time says of this clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStatus {
    /// No recent word from the hub: the clock is neither confirmed nor refuted.
    Unknown,
    /// Within the allowed skew of the hub's signed time.
    Trusted,
    /// Off by about this many seconds (positive: this clock is ahead).
    Untrusted {
        /// Local minus hub, seconds (the smallest the sample allows).
        offset: i64,
    },
}

impl ClockStatus {
    /// In words, for a verdict's detail and for `/healthz`.
    pub fn describe(&self) -> Option<String> {
        match self {
            ClockStatus::Untrusted { offset } if *offset > 0 => Some(format!(
                "the local clock is about {offset} s ahead of the hub's signed time"
            )),
            ClockStatus::Untrusted { offset } => Some(format!(
                "the local clock is about {} s behind the hub's signed time",
                -offset
            )),
            _ => None,
        }
    }
}

/// The judgement of one exchange: this post sent its request at local
/// time `sent`, received the reply at `received`, and the hub signed
/// `hub_time` in between.
pub fn judge(sent: UnixTime, received: UnixTime, hub_time: UnixTime, skew: i64) -> ClockStatus {
    if sent > hub_time.saturating_add(skew) {
        ClockStatus::Untrusted {
            offset: sent - hub_time,
        }
    } else if received < hub_time.saturating_sub(skew) {
        ClockStatus::Untrusted {
            offset: received - hub_time,
        }
    } else {
        ClockStatus::Trusted
    }
}

/// The latest judgement, shared by the sync task (which makes it) and
/// the decisions (which use it).
#[derive(Debug, Default)]
pub struct ClockTrust {
    latest: Mutex<Option<(ClockStatus, Instant)>>,
}

impl ClockTrust {
    /// Keeps a new judgement.
    pub fn set(&self, status: ClockStatus) {
        let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if l.is_none_or(|(old, _)| old != status) {
            match status.describe() {
                Some(why) => {
                    tracing::error!(%why, "clock: untrusted; controlled shipments are held")
                }
                None => tracing::info!("clock: agrees with the hub's signed time"),
            }
        }
        *l = Some((status, Instant::now()));
    }

    /// The judgement standing now: the latest, if younger than [`TRUST_FOR`].
    pub fn status(&self) -> ClockStatus {
        let l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match *l {
            Some((s, at)) if at.elapsed() < TRUST_FOR => s,
            _ => ClockStatus::Unknown,
        }
    }
}

/// The hub's time as the post last saw it, in words (for logs).
pub fn sample_words(sent: UnixTime, received: UnixTime, hub_time: UnixTime) -> String {
    format!(
        "asked at {}, answered at {}, the hub signed {}",
        to_rfc3339(sent),
        to_rfc3339(received),
        to_rfc3339(hub_time)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_judged_by_the_window_the_hub_signed_in() {
        let skew = 300;
        assert_eq!(judge(1000, 1001, 1000, skew), ClockStatus::Trusted);
        // A slow network is not a wrong clock.
        assert_eq!(judge(1000, 1200, 1100, skew), ClockStatus::Trusted);
        assert_eq!(
            judge(8200, 8201, 1000, skew),
            ClockStatus::Untrusted { offset: 7200 }
        );
        assert_eq!(
            judge(1000, 1001, 9000, skew),
            ClockStatus::Untrusted { offset: -7999 }
        );
        assert_eq!(judge(1300, 1300, 1000, skew), ClockStatus::Trusted);
        assert_eq!(
            judge(1301, 1301, 1000, skew),
            ClockStatus::Untrusted { offset: 301 }
        );
        assert!(
            ClockStatus::Untrusted { offset: 7200 }
                .describe()
                .unwrap()
                .contains("ahead")
        );
        assert!(
            ClockStatus::Untrusted { offset: -10 }
                .describe()
                .unwrap()
                .contains("behind")
        );
    }

    #[test]
    fn the_latest_judgement_stands_until_replaced() {
        let t = ClockTrust::default();
        assert_eq!(t.status(), ClockStatus::Unknown);
        t.set(ClockStatus::Untrusted { offset: 60 });
        assert_eq!(t.status(), ClockStatus::Untrusted { offset: 60 });
        t.set(ClockStatus::Trusted);
        assert_eq!(t.status(), ClockStatus::Trusted);
    }
}
