//! Civil dates in UTC: the workspace's one conversion between days since the Unix epoch and
//! (year, month, day), and RFC 3339 UTC formatting built on it. Lease times in messages use
//! it here; gapreg's `Timestamp` uses it for its text form.
//!
//! The conversions are Howard Hinnant's `days_from_civil` and `civil_from_days` (proleptic
//! Gregorian calendar, exact for every `i64` day count that fits a year in `i64`).
//!
//! ```
//! use leaselock::time;
//! assert_eq!(time::days_from_civil(2026, 2, 28), 20_512);
//! assert_eq!(time::civil_from_days(20_512), (2026, 2, 28));
//! assert_eq!(time::days_in_month(2028, 2), 29);
//! let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_768_663_800_123);
//! assert_eq!(time::rfc3339_millis(t), "2026-01-17T15:30:00.123Z");
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of the date `y-m-d` (`m` in 1..=12, `d` in 1..=31; not checked:
/// see [`days_in_month`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` that is `days` days after 1970-01-01 (before it, if
/// negative).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are small and positive: a day of 1..=31, a month of 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days in month `m` (1..=12) of year `y`, with Gregorian leap years.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Formats whole seconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-02-28T14:05:00Z`.
pub fn rfc3339_secs(secs: u64) -> String {
    let (date, time) = civil_parts(secs);
    format!("{date}T{time}Z")
}

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-01-17T15:30:00.000Z` (a
/// time before 1970 shows as 1970-01-01T00:00:00.000Z).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let (date, time) = civil_parts(ms / 1000);
    format!("{date}T{time}.{:03}Z", ms % 1000)
}

/// `YYYY-MM-DD` and `hh:mm:ss` of `secs` after the epoch.
fn civil_parts(secs: u64) -> (String, String) {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_round_trip_over_centuries() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_768_663_800_123);
        assert_eq!(rfc3339_millis(t), "2026-01-17T15:30:00.123Z");
        assert_eq!(rfc3339_secs(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
    }
}
