//! The strftime subset of `--filename-format` (SPEC §5): a pattern parsed
//! once, and the file name it gives for a second, from the line format's
//! calendar.

use crate::format::time::Civil;
use std::fmt::Write;

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

/// A format's parts, split at `/` (and at `\\` on Windows, SPEC §1): none
/// empty (`/x`, `a//b`, `x/`), none `.` or `..`, no NUL. Specifiers render
/// digits (and `%%` a `%`), so no rendered name can be anything else.
fn stays_inside_the_directory(source: &str) -> Result<(), String> {
    let bad = source.contains('\0')
        || source
            .split(crate::sys::SEPARATORS)
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        let seps = if crate::sys::SEPARATORS.len() > 1 {
            "'/' or '\\'"
        } else {
            "'/'"
        };
        return Err(format!(
            "'{}' must name a file inside the log directory (no leading or trailing {seps}, no empty, '.' or '..' parts, no NUL)",
            source.escape_default()
        ));
    }
    Ok(())
}

/// SPEC §1: every part of every name the format makes is one this system
/// can create (on Windows: no `: * ? " < > |`, no device name such as
/// `CON`, no trailing dot or space). Specifiers only render digits of a
/// fixed width, so one rendering stands for all of them.
fn creatable(format: &FilenameFormat) -> Result<(), String> {
    let name = format.render(0);
    for part in name.split(crate::sys::SEPARATORS) {
        if let Some(why) = crate::sys::uncreatable(part) {
            return Err(format!(
                "'{}' makes names Windows cannot create ('{part}'): {why}",
                format.source
            ));
        }
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
        let format = FilenameFormat {
            source: source.to_owned(),
            pieces,
        };
        creatable(&format)?;
        Ok(format)
    }

    /// The pattern as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file name for a line logged at `unix_secs` (UTC).
    pub fn render(&self, unix_secs: u64) -> String {
        let t = Civil::logged(unix_secs);
        let mut out = String::with_capacity(self.source.len() + 8);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.write_str(s),
                Piece::Year => write!(out, "{:04}", t.year),
                Piece::Month => write!(out, "{:02}", t.month),
                Piece::Day => write!(out, "{:02}", t.day),
                Piece::Hour => write!(out, "{:02}", t.hour),
                Piece::Minute => write!(out, "{:02}", t.minute),
                Piece::Second => write!(out, "{:02}", t.second),
                Piece::DayOfYear => write!(out, "{:03}", t.day_of_year()),
            }
            .expect("writing to a String cannot fail");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-10-22T15:32:47Z
    const SECS: u64 = 1_761_147_167;

    #[test]
    fn filename_specifiers() {
        // No ':' between the hours, minutes and seconds: Windows refuses it.
        let f = FilenameFormat::parse("%Y-%m-%d %H.%M.%S day%j 100%%.log").unwrap();
        assert_eq!(f.render(SECS), "2025-10-22 15.32.47 day295 100%.log");
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
        for good in ["%Y/%m/x.log", "a/b.c/..d", ".hidden", "%%/x", "a.%Y"] {
            assert!(FilenameFormat::parse(good).is_ok(), "{good}");
        }
    }

    /// SPEC §1: on Windows a name Windows cannot create is refused like one
    /// outside the directory, and `\` separates parts under the same rules;
    /// elsewhere these are ordinary names.
    #[test]
    fn names_windows_cannot_create_are_refused_there() {
        for bad in [
            "a:b.log", "CON.log", "%Y/nul", "Aux.%H", "x.", "%Y ", "a*", "...",
        ] {
            let got = FilenameFormat::parse(bad);
            assert_eq!(got.is_err(), cfg!(windows), "{bad:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("Windows cannot create"), "{bad:?}: {e}");
            }
        }
        for bad in ["..\\x", "\\x", "a\\\\b", "a\\.\\b", "%Y\\"] {
            let got = FilenameFormat::parse(bad);
            assert_eq!(got.is_err(), cfg!(windows), "{bad:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("inside the log directory"), "{bad:?}: {e}");
            }
        }
        let f = FilenameFormat::parse("%Y\\%m\\x.log").unwrap();
        assert_eq!(f.render(SECS), "2025\\10\\x.log");
    }
}
