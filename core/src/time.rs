//! Integer simulated time: microseconds since the start of a run, never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in simulated time, in microseconds since the run started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(pub u64);

/// A span of simulated time, in microseconds.
pub type Micros = u64;

pub const MICROS_PER_MS: u64 = 1_000;
pub const MICROS_PER_S: u64 = 1_000_000;

/// A parameter's milliseconds as a span (a negative value counts as 0; too many saturate).
pub fn ms(v: i64) -> Micros {
    (v.max(0) as u64).saturating_mul(MICROS_PER_MS)
}

impl Time {
    pub const ZERO: Time = Time(0);
    pub const MAX: Time = Time(u64::MAX);

    pub fn from_ms(ms: u64) -> Time {
        Time(ms.saturating_mul(MICROS_PER_MS))
    }
    pub fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(MICROS_PER_S))
    }
    pub fn micros(self) -> u64 {
        self.0
    }
    pub fn as_ms(self) -> u64 {
        self.0 / MICROS_PER_MS
    }
    /// The whole seconds elapsed (the key of per-second tallies).
    pub fn whole_secs(self) -> u64 {
        self.0 / MICROS_PER_S
    }
    /// Seconds as a float, for display and charts only.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_S as f64
    }
    pub fn plus(self, d: Micros) -> Time {
        Time(self.0.saturating_add(d))
    }
    pub fn since(self, earlier: Time) -> Micros {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us.is_multiple_of(MICROS_PER_S) {
            write!(f, "{}s", us / MICROS_PER_S)
        } else if us.is_multiple_of(MICROS_PER_MS) {
            write!(f, "{}.{:03}s", us / MICROS_PER_S, (us % MICROS_PER_S) / MICROS_PER_MS)
        } else {
            write!(f, "{}.{:06}s", us / MICROS_PER_S, us % MICROS_PER_S)
        }
    }
}

/// Parses a duration such as `30s`, `1500ms`, `250us`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("us") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, MICROS_PER_MS)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, MICROS_PER_S)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60 * MICROS_PER_S)
    } else {
        (t, MICROS_PER_S)
    };
    let value: u64 =
        num.trim().parse().map_err(|_| format!("`{text}` is not a duration; write it like 30s, 1500ms or 2m"))?;
    value.checked_mul(mult).ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_compactly() {
        assert_eq!(Time::from_secs(3).to_string(), "3s");
        assert_eq!(Time::from_ms(1500).to_string(), "1.500s");
        assert_eq!(Time(1_000_001).to_string(), "1.000001s");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(30 * MICROS_PER_S));
        assert_eq!(parse_duration("1500ms"), Ok(1_500_000));
        assert_eq!(parse_duration("7us"), Ok(7));
        assert_eq!(parse_duration("2m"), Ok(120 * MICROS_PER_S));
        assert_eq!(parse_duration("12"), Ok(12 * MICROS_PER_S));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
