//! Bounded alerting for refused messages: a flood of forgeries raises one
//! alert a minute per source and reason, carrying how many were held back,
//! not one alert each.
//!
//! Pure: the caller passes the time in.

use std::collections::HashMap;

use crate::clock::UnixTime;

/// How long one alert stands for its source and reason, seconds.
pub const WINDOW: i64 = 60;
/// Most (source, reason) pairs remembered; sources are named by the
/// network, so beyond this they share one catch-all slot per reason.
const MAX_KEYS: usize = 1024;
/// The source named for everything beyond [`MAX_KEYS`].
const OVERFLOW: &str = "(many sources)";
/// Longest source name kept: names come from the network.
const SOURCE_MAX: usize = 80;

#[derive(Debug, Clone, Copy)]
struct Slot {
    opened_at: UnixTime,
    held_back: u64,
}

/// Decides which refusals raise an alert now.
#[derive(Debug, Default)]
pub struct AlertThrottle {
    slots: HashMap<(String, &'static str), Slot>,
}

impl AlertThrottle {
    /// A refusal from `source` for `reason` at `now`: `Some(n)` if it should
    /// raise an alert, `n` being how many like it were held back since the
    /// last; `None` if it is only counted.
    pub fn admit(&mut self, source: &str, reason: &'static str, now: UnixTime) -> Option<u64> {
        let mut source = truncate(source, SOURCE_MAX).to_owned();
        if !self.slots.contains_key(&(source.clone(), reason)) && self.slots.len() >= MAX_KEYS {
            self.slots.retain(|_, s| now - s.opened_at < WINDOW);
            if self.slots.len() >= MAX_KEYS {
                source = OVERFLOW.to_owned();
            }
        }
        let slot = self.slots.entry((source, reason)).or_insert(Slot {
            opened_at: i64::MIN,
            held_back: 0,
        });
        if now.saturating_sub(slot.opened_at) >= WINDOW {
            let held = slot.held_back;
            *slot = Slot {
                opened_at: now,
                held_back: 0,
            };
            Some(held)
        } else {
            slot.held_back += 1;
            None
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest error detail kept in a verdict or alert, in characters.
pub const DETAIL_MAX: usize = 200;

/// An error detail cut to [`DETAIL_MAX`] characters, saying so when cut.
pub fn bounded_detail(detail: &str) -> String {
    if detail.chars().count() <= DETAIL_MAX {
        return detail.to_owned();
    }
    let cut: String = detail.chars().take(DETAIL_MAX).collect();
    format!("{cut}… (cut; {} bytes in all)", detail.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_a_minute_per_source_and_reason_with_the_count_held_back() {
        let mut t = AlertThrottle::default();
        assert_eq!(t.admit("feed", "bad_signature", 1000), Some(0));
        for i in 0..500 {
            assert_eq!(t.admit("feed", "bad_signature", 1000 + i % 59), None);
        }
        // Another reason or source is its own alert.
        assert_eq!(t.admit("feed", "unknown_signer", 1001), Some(0));
        assert_eq!(t.admit("ack", "bad_signature", 1001), Some(0));
        // A minute later: one alert, carrying what was held back.
        assert_eq!(t.admit("feed", "bad_signature", 1060), Some(500));
        assert_eq!(t.admit("feed", "bad_signature", 1061), None);
    }

    #[test]
    fn sources_named_by_the_network_cannot_grow_it_without_bound() {
        let mut t = AlertThrottle::default();
        for i in 0..10_000 {
            t.admit(&format!("forger-{i}"), "bad_signature", 5000);
        }
        assert!(t.slots.len() <= MAX_KEYS + 1);
        assert!(
            t.admit(&"x".repeat(10_000), "bad_signature", 5000)
                .is_none()
        );
    }

    #[test]
    fn details_are_cut_and_say_so() {
        assert_eq!(bounded_detail("short"), "short");
        let long = "é".repeat(250_000);
        let d = bounded_detail(&long);
        assert!(d.chars().count() < DETAIL_MAX + 40, "{}", d.len());
        assert!(d.contains("500000 bytes in all"));
        assert_eq!(truncate("aé", 2), "a");
    }
}
