//! Local wall-clock time: what the embedded robot tells users who ask for the time or date, and
//! what the chat client prints in its reply headers.
//!
//! The standard library knows nothing about time zones, so the conversion goes through the C
//! library's `localtime_r`, which honours `TZ` and `/etc/localtime` like every other program on the
//! machine.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A moment broken down into local calendar and clock fields.
///
/// # Example
///
/// ```
/// use robochat::clock::LocalTime;
///
/// let t = LocalTime { year: 2026, month: 11, day: 26, hour: 12, minute: 0, second: 5, weekday: 4 };
/// assert_eq!(t.date(), "2026-11-26");
/// assert_eq!(t.time(), "12:00:05");
/// assert_eq!(t.to_string(), "2026-11-26 12:00:05");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalTime {
    /// The year, such as 2026.
    pub year: i32,
    /// The month, 1 (January) to 12 (December).
    pub month: u32,
    /// The day of the month, 1 to 31.
    pub day: u32,
    /// The hour, 0 to 23.
    pub hour: u32,
    /// The minute, 0 to 59.
    pub minute: u32,
    /// The second, 0 to 60 (60 only during a leap second).
    pub second: u32,
    /// The day of the week, 0 (Sunday) to 6 (Saturday).
    pub weekday: u32,
}

impl LocalTime {
    /// The current local time.
    pub fn now() -> Self {
        // A clock set before 1970 is broken beyond what we can fix; 1970 is as good an answer as any.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self::from_unix(secs)
    }

    /// The local time `secs` seconds after 1970-01-01 00:00:00 UTC.
    ///
    /// Falls back to UTC if the C library cannot convert the moment (which happens only for
    /// absurd values), so that this never fails.
    pub fn from_unix(secs: i64) -> Self {
        local_from_unix(secs).unwrap_or_else(|| utc_from_unix(secs))
    }

    /// The date as `YYYY-MM-DD`, such as `2026-11-26`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The time of day as `HH:MM:SS`, such as `12:00:05`.
    pub fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

impl fmt::Display for LocalTime {
    /// Formats as `YYYY-MM-DD HH:MM:SS`, such as `2026-11-26 12:00:05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date(), self.time())
    }
}

/// Converts with the C library, which knows the local time zone; `None` if it cannot.
fn local_from_unix(secs: i64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `libc::tm` is a plain C struct of integers (plus, on some systems, a `tm_zone`
    // pointer that may be null), so all-zero bytes are a valid value. `localtime_r` only reads `t`
    // and writes into the `tm` we own; unlike `localtime` it uses no shared static buffer, which
    // matters because several worker threads may ask for the time at once.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(LocalTime {
        year: tm.tm_year.checked_add(1900)?,
        month: u32::try_from(tm.tm_mon).ok()?.checked_add(1)?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        second: u32::try_from(tm.tm_sec).ok()?,
        weekday: u32::try_from(tm.tm_wday).ok()?,
    })
}

/// Converts to UTC without the C library (Howard Hinnant's `civil_from_days`).
fn utc_from_unix(secs: i64) -> LocalTime {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400); // 0..86_400, so the casts below cannot truncate
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    LocalTime {
        year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
        month: month as u32,
        day: day as u32,
        hour: (of_day / 3600) as u32,
        minute: (of_day % 3600 / 60) as u32,
        second: (of_day % 60) as u32,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_zero_padding() {
        let t = LocalTime {
            year: 2026,
            month: 1,
            day: 5,
            hour: 7,
            minute: 3,
            second: 9,
            weekday: 1,
        };
        assert_eq!(t.date(), "2026-01-05");
        assert_eq!(t.time(), "07:03:09");
        assert_eq!(t.to_string(), "2026-01-05 07:03:09");
    }

    #[test]
    fn utc_conversion_matches_known_dates() {
        let epoch = utc_from_unix(0);
        assert_eq!(epoch.to_string(), "1970-01-01 00:00:00");
        assert_eq!(epoch.weekday, 4);
        // 2026-11-26 12:00:05 UTC, a Thursday.
        let t = utc_from_unix(1_795_694_405);
        assert_eq!(t.to_string(), "2026-11-26 12:00:05");
        assert_eq!(t.weekday, 4);
        // Before the epoch, and a leap day.
        assert_eq!(utc_from_unix(-1).to_string(), "1969-12-31 23:59:59");
        assert_eq!(utc_from_unix(951_782_400).date(), "2000-02-29");
    }

    #[test]
    fn extreme_values_do_not_panic() {
        for secs in [i64::MIN, i64::MAX, -62_135_596_800, 253_402_300_799] {
            let _ = LocalTime::from_unix(secs);
            let _ = utc_from_unix(secs);
        }
    }

    #[test]
    fn now_is_plausible() {
        let now = LocalTime::now();
        assert!(now.year >= 2024);
        assert!((1..=12).contains(&now.month));
        assert!((1..=31).contains(&now.day));
        assert!(now.hour < 24 && now.minute < 60 && now.second <= 60);
        assert!(now.weekday < 7);
    }
}
