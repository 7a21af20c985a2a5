//! Time as rawprox writes it: the line timestamp (SPEC §4, UTC with six
//! fractional digits) and the strftime subset of `--filename-format` (SPEC §5).
//! Both work from microseconds since the Unix epoch; `time` does the calendar.

use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Microseconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn civil(unix_secs: u64) -> OffsetDateTime {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
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
            let t = civil(secs);
            push_digits(&mut self.prefix, t.year().clamp(0, 9999) as u32, 4);
            self.prefix.push(b'-');
            push_digits(&mut self.prefix, u8::from(t.month()) as u32, 2);
            self.prefix.push(b'-');
            push_digits(&mut self.prefix, t.day() as u32, 2);
            self.prefix.push(b'T');
            push_digits(&mut self.prefix, t.hour() as u32, 2);
            self.prefix.push(b':');
            push_digits(&mut self.prefix, t.minute() as u32, 2);
            self.prefix.push(b':');
            push_digits(&mut self.prefix, t.second() as u32, 2);
            self.prefix.push(b'.');
            self.cached_secs = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        push_digits(out, (micros % 1_000_000) as u32, 6);
        out.push(b'Z');
    }
}

/// A parsed `--filename-format`: literal text and the supported specifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameFormat {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfYear,
}

pub const DEFAULT_FILENAME_FORMAT: &str = "rawprox_%Y-%m-%d-%H.ndjson";

/// A format's `/`-separated parts: none empty (`/x`, `a//b`, `x/`), none
/// `.` or `..`, no NUL. Specifiers render digits (and `%%` a `%`), so no
/// rendered name can be anything else.
fn stays_inside_the_directory(source: &str) -> Result<(), String> {
    let bad = source.contains('\0')
        || source
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(format!(
            "'{}' must name a file inside the log directory (no leading or trailing '/', no empty, '.' or '..' parts, no NUL)",
            source.escape_default()
        ));
    }
    Ok(())
}

impl FilenameFormat {
    /// Parses a pattern; the error says which specifier is not supported.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("the file name format is empty".into());
        }
        stays_inside_the_directory(source)?;
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let piece = match chars.next() {
                None => return Err(format!("'{source}' ends with a lone '%'")),
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('Y') => Piece::Year,
                Some('m') => Piece::Month,
                Some('d') => Piece::Day,
                Some('H') => Piece::Hour,
                Some('M') => Piece::Minute,
                Some('S') => Piece::Second,
                Some('j') => Piece::DayOfYear,
                Some(other) => {
                    return Err(format!(
                        "'%{other}' in '{source}' is not supported (use %Y %m %d %H %M %S %j %%)"
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(FilenameFormat {
            source: source.to_owned(),
            pieces,
        })
    }

    /// The pattern as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file name for a line logged at `unix_secs` (UTC).
    pub fn render(&self, unix_secs: u64) -> String {
        let t = civil(unix_secs);
        let mut out = Vec::with_capacity(self.source.len() + 8);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Year => push_digits(&mut out, t.year().clamp(0, 9999) as u32, 4),
                Piece::Month => push_digits(&mut out, u8::from(t.month()) as u32, 2),
                Piece::Day => push_digits(&mut out, t.day() as u32, 2),
                Piece::Hour => push_digits(&mut out, t.hour() as u32, 2),
                Piece::Minute => push_digits(&mut out, t.minute() as u32, 2),
                Piece::Second => push_digits(&mut out, t.second() as u32, 2),
                Piece::DayOfYear => push_digits(&mut out, t.ordinal() as u32, 3),
            }
        }
        String::from_utf8(out).expect("literals come from a str and digits are ASCII")
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
    fn filename_specifiers() {
        let f = FilenameFormat::parse("%Y-%m-%d %H:%M:%S day%j 100%%.log").unwrap();
        assert_eq!(f.render(SECS), "2025-10-22 15:32:47 day295 100%.log");
        let f = FilenameFormat::parse(DEFAULT_FILENAME_FORMAT).unwrap();
        assert_eq!(f.render(SECS), "rawprox_2025-10-22-15.ndjson");
        assert_eq!(f.source(), DEFAULT_FILENAME_FORMAT);
        let f = FilenameFormat::parse("%j").unwrap();
        assert_eq!(f.render(0), "001");
    }

    #[test]
    fn format_without_specifier_is_one_file() {
        let f = FilenameFormat::parse("capture.ndjson").unwrap();
        assert_eq!(f.render(0), "capture.ndjson");
        assert_eq!(f.render(SECS), "capture.ndjson");
    }

    #[test]
    fn bad_formats_are_rejected() {
        assert!(
            FilenameFormat::parse("log%")
                .unwrap_err()
                .contains("lone '%'")
        );
        assert!(
            FilenameFormat::parse("%Q.log")
                .unwrap_err()
                .contains("'%Q'")
        );
        assert!(FilenameFormat::parse("").is_err());
    }

    /// SPEC §5: every name a format can produce is a file inside the log
    /// directory; subdirectories are fine.
    #[test]
    fn names_outside_the_directory_or_not_files_are_rejected() {
        for bad in [
            "/",
            "%Y/",
            ".",
            "..",
            "/etc/x.log",
            "/etc/../tmp/x.ndjson",
            "a//b",
            "../x",
            "a/./b",
            "a/..",
            "x\0.log",
            "a/",
        ] {
            let bad = bad.replace("\\0", "\0");
            let err = FilenameFormat::parse(&bad).unwrap_err();
            assert!(err.contains("inside the log directory"), "{bad:?}: {err}");
        }
        for good in ["%Y/%m/x.log", "a/b.c/..d", ".hidden", "...", "%%/x", "a.%Y"] {
            assert!(FilenameFormat::parse(good).is_ok(), "{good}");
        }
    }
}
