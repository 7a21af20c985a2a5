//! The time stamp (SPEC §4): `2025-10-22T15:32:47.123456Z`, UTC with
//! exactly six fractional digits. The encoder writes it (`LineClock`), the
//! decoder reads it back (`Time`), and both go through the one calendar
//! here (`Civil`), which the log's file names use too (SPEC §5). Times are
//! microseconds since the Unix epoch throughout.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a time stamp: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const TIME_LEN: usize = 27;

/// Microseconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Writes line timestamps, caching the `YYYY-MM-DDTHH:MM:SS.` part for the
/// current second so a line costs six digits, not a calendar conversion.
#[derive(Debug, Default)]
pub struct LineClock {
    cached_secs: Option<u64>,
    prefix: Vec<u8>,
}

impl LineClock {
    /// Appends `2025-10-22T15:32:47.123456Z` for `micros` to `out`.
    pub fn push_time(&mut self, micros: u64, out: &mut Vec<u8>) {
        let secs = micros / 1_000_000;
        if self.cached_secs != Some(secs) {
            self.prefix.clear();
            let t = Civil::logged(secs);
            let parts = [
                (t.year, 4, b'-'),
                (t.month, 2, b'-'),
                (t.day, 2, b'T'),
                (t.hour, 2, b':'),
                (t.minute, 2, b':'),
                (t.second, 2, b'.'),
            ];
            for (value, width, then) in parts {
                push_digits(&mut self.prefix, value as u32, width);
                self.prefix.push(then);
            }
            self.cached_secs = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        push_digits(out, (micros % 1_000_000) as u32, 6);
        out.push(b'Z');
    }
}

/// Microseconds since the Unix epoch, UTC: a line's `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub i64);

impl Time {
    /// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ`, exactly as SPEC §4 writes it.
    pub fn parse(text: &[u8]) -> Option<Time> {
        const SHAPE: &[u8; TIME_LEN] = b"0000-00-00T00:00:00.000000Z";
        if text.len() != SHAPE.len() {
            return None;
        }
        for (&c, &s) in text.iter().zip(SHAPE) {
            let ok = if s == b'0' {
                c.is_ascii_digit()
            } else {
                c == s
            };
            if !ok {
                return None;
            }
        }
        let num = |range: std::ops::Range<usize>| {
            text[range]
                .iter()
                .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))
        };
        let (month, day) = (num(5..7), num(8..10));
        let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let days = days_from_civil(num(0..4), month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        Some(Time(secs * 1_000_000 + num(20..26)))
    }

    /// Seconds (with six decimals) from `self` to `later`.
    pub fn seconds_until(self, later: Time) -> f64 {
        (later.0 - self.0) as f64 / 1e6
    }
}

impl fmt::Display for Time {
    /// The line format back: `2025-10-22T15:32:47.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = Civil::at(self.0.div_euclid(1_000_000));
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            self.0.rem_euclid(1_000_000)
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A moment's date and time of day, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

/// The last second of year 9999: later moments have no four-digit year.
const LAST_LOGGED_SECS: u64 = (days_from_civil(10_000, 1, 1) * 86_400 - 1) as u64;

impl Civil {
    /// The date and time `secs` after the epoch (before it, if negative).
    pub fn at(secs: i64) -> Civil {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// `at` for a moment rawprox logs or names a file by: a clock past
    /// year 9999 reads as the epoch, so years always have four digits.
    pub fn logged(unix_secs: u64) -> Civil {
        let secs = if unix_secs > LAST_LOGGED_SECS {
            0
        } else {
            unix_secs
        };
        Civil::at(secs as i64)
    }

    /// 1 on 1 January.
    pub fn day_of_year(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-10-22T15:32:47Z
    const SECS: u64 = 1_761_147_167;

    #[test]
    fn line_time_has_six_fraction_digits() {
        let mut clock = LineClock::default();
        let mut out = Vec::new();
        clock.push_time(SECS * 1_000_000 + 123_456, &mut out);
        assert_eq!(out, b"2025-10-22T15:32:47.123456Z");
        out.clear();
        // Same second, cached prefix, small fraction padded.
        clock.push_time(SECS * 1_000_000 + 7, &mut out);
        assert_eq!(out, b"2025-10-22T15:32:47.000007Z");
        out.clear();
        clock.push_time((SECS + 1) * 1_000_000, &mut out);
        assert_eq!(out, b"2025-10-22T15:32:48.000000Z");
        out.clear();
        clock.push_time(0, &mut out);
        assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn times_round_trip() {
        for t in [
            "1970-01-01T00:00:00.000000Z",
            "2000-02-29T23:59:59.999999Z",
            "2025-10-22T15:32:47.123456Z",
            "2099-12-31T00:00:01.000001Z",
        ] {
            let time = Time::parse(t.as_bytes()).expect(t);
            assert_eq!(time.to_string(), t);
        }
        assert_eq!(
            Time::parse(b"1970-01-02T00:00:01.000002Z"),
            Some(Time(86_401_000_002))
        );
        assert_eq!(Time::parse(b"2025-13-01T00:00:00.000000Z"), None);
    }

    /// What the clock writes, `Time` reads back to the same microsecond
    /// and writes the same way, across days, leap years and centuries up
    /// to the last four-digit year; past it the clock writes the epoch.
    #[test]
    fn the_clock_and_time_agree() {
        let mut clock = LineClock::default();
        let mut out = Vec::new();
        let mut micros = 0u64;
        while micros / 1_000_000 <= LAST_LOGGED_SECS {
            out.clear();
            clock.push_time(micros, &mut out);
            let time = Time::parse(&out).expect("a time stamp");
            assert_eq!(time, Time(micros as i64));
            assert_eq!(time.to_string().as_bytes(), &out[..]);
            micros += 13 * 86_400_000_000 - 1 - micros % 7_777_777;
        }
        out.clear();
        clock.push_time(LAST_LOGGED_SECS * 1_000_000 + 999_999, &mut out);
        assert_eq!(out, b"9999-12-31T23:59:59.999999Z");
        out.clear();
        clock.push_time((LAST_LOGGED_SECS + 1) * 1_000_000 + 5, &mut out);
        assert_eq!(out, b"1970-01-01T00:00:00.000005Z");
        assert_eq!(Civil::logged(SECS).day_of_year(), 295);
        assert_eq!(Civil::logged(0).day_of_year(), 1);
    }
}
