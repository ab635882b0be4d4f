//! [`Timestamp`]: UTC seconds, written as RFC 3339 (`2026-02-28T14:05:00Z`). The calendar
//! arithmetic is leaselock's ([`leaselock::time`]), the workspace's one date conversion.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leaselock::time::{self, days_from_civil, days_in_month};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The last second RFC 3339's four-digit years can show: 9999-12-31T23:59:59Z. Later times
/// (a huge TTL) are clamped to it, so every timestamp written can be read back. Leap seconds
/// (`:60`) are refused when parsing for the same reason.
const MAX_SECS: u64 = 253_402_300_799;

/// A point in time with one-second resolution, shown and stored as RFC 3339 UTC
/// (`2026-02-28T14:05:00Z`). A bare date (`2026-02-28`) parses as its midnight.
///
/// ```
/// use gapreg::Timestamp;
/// let t: Timestamp = "2026-02-28T14:05:00Z".parse()?;
/// assert_eq!(t.to_string(), "2026-02-28T14:05:00Z");
/// assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
/// assert!("2026-02-30T00:00:00Z".parse::<Timestamp>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current time (a clock before 1970 reads as 1970).
    pub fn now() -> Timestamp {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// Seconds since the Unix epoch.
    pub fn from_unix(secs: u64) -> Timestamp {
        Timestamp(secs.min(MAX_SECS))
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> u64 {
        self.0
    }

    /// This time plus `d` (rounded up to whole seconds, saturating).
    pub fn after(self, d: Duration) -> Timestamp {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Timestamp(self.0.saturating_add(secs).min(MAX_SECS))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&time::rfc3339_secs(self.0))
    }
}

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Timestamp, String> {
        let bad = || format!("invalid time {s:?}: expected RFC 3339 UTC like 2026-02-28T14:05:00Z");
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
            let part = s.get(r).ok_or_else(bad)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let (y, m, d) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
        if y < 1970 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return Err(bad());
        }
        let (hh, mm, ss) = if b.len() == 10 {
            (0, 0, 0)
        } else if b.len() == 20 && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z'
        {
            (num(11..13)?, num(14..16)?, num(17..19)?)
        } else {
            return Err(bad());
        };
        if hh > 23 || mm > 59 || ss > 59 {
            return Err(bad());
        }
        let days = days_from_civil(y, m, d) as u64;
        Ok(Timestamp(
            days * 86_400 + u64::from(hh) * 3600 + u64::from(mm) * 60 + u64::from(ss),
        ))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC time like 2026-02-28T14:05:00Z")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for secs in [
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            1_772_287_500,
            4_102_444_800,
        ] {
            let t = Timestamp(secs);
            assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t), "{t}");
        }
        // Found by fuzzing: a leap second rolled 9999-12-31 into a year that cannot be read
        // back, and so could a huge TTL. Both are refused or clamped now.
        assert!("9999-12-31T23:59:60Z".parse::<Timestamp>().is_err());
        let far = Timestamp::now().after(Duration::from_secs(u64::MAX / 2));
        assert_eq!(far.to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(far.to_string().parse::<Timestamp>(), Ok(far));
        assert_eq!(Timestamp::from_unix(u64::MAX), far);
        assert_eq!(
            "2026-02-28".parse::<Timestamp>().map(|t| t.to_string()),
            Ok("2026-02-28T00:00:00Z".to_owned())
        );
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-29",
            "x026-01-01",
            "2026-01-01T00:00:00",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }
}
