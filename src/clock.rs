//! Time as the rest of the crate sees it: whole seconds since the Unix epoch.
//!
//! Design: decisions take `now` as an argument; only the binary's edge asks
//! the system clock, through [`Clock`], so tests pass any time they like.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since 1970-01-01T00:00:00Z.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// Milliseconds on a monotonic clock (a driver's, or the simulation's): timers only.
pub type Millis = u64;

/// The time an input to a state machine happens at: monotonic for its
/// timers, the wall clock for what it signs and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds.
    pub mono: Millis,
    /// Unix seconds.
    pub unix: UnixTime,
}

/// The clock a process's tasks share: the system's, or a test's.
pub type SharedClock = std::sync::Arc<dyn Clock>;

/// A clock that says what it is told: tests drive time with it.
#[derive(Debug, Default)]
pub struct FixedClock(std::sync::atomic::AtomicI64);

impl FixedClock {
    /// A clock standing at `t`.
    pub fn at(t: UnixTime) -> FixedClock {
        FixedClock(std::sync::atomic::AtomicI64::new(t))
    }

    /// Moves it to `t`.
    pub fn set(&self, t: UnixTime) {
        self.0.store(t, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Formats a time as RFC 3339 UTC (`2025-11-01T08:00:00Z`).
pub fn to_rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{t}"))
}

/// Parses an RFC 3339 time (any offset) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<UnixTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 time ({e}); write e.g. 2025-11-01T00:00:00Z")
        })
}

/// Parses a duration such as `90s`, `15m`, `12h`, `30d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 300s, 15m, 12h or 30d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2025-11-01T08:30:00Z").unwrap();
        assert_eq!(t, 1_761_985_800);
        assert_eq!(to_rfc3339(t), "2025-11-01T08:30:00Z");
        assert_eq!(parse_rfc3339("2025-11-01T10:30:00+02:00").unwrap(), t);
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), 300);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("30d").unwrap(), 2_592_000);
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
    }
}
