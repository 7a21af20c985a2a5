//! The file and directory names Windows cannot create (SPEC §1): the rule
//! alone, with no system call, so it is compiled and tested on every
//! platform; `sys::uncreatable` applies it on Windows only.
//!
//! Windows refuses (or silently changes) a name that holds a character
//! from `< > : " / \ | ? *` or a control character, that ends with a dot or
//! a space (they are dropped, so `x.` and `x` are one file), or whose part
//! before the first dot, trailing spaces dropped, is a device name: `CON`,
//! `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9` (and the superscript
//! digits ¹ ² ³), `CONIN$`, `CONOUT$`, in any case. `CON.log` opens the
//! console, not a file.

const DEVICES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// Why Windows cannot create a file or directory named `part` (one part of
/// a path, no separator), if it cannot.
pub fn windows_problem(part: &str) -> Option<&'static str> {
    if part
        .chars()
        .any(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') || c.is_ascii_control())
    {
        return Some("a name on Windows holds none of : * ? \" < > | and no control character");
    }
    if part.ends_with(['.', ' ']) {
        return Some("a name on Windows does not end with a dot or a space");
    }
    let base = part.split('.').next().unwrap_or("").trim_end_matches(' ');
    if is_device(base) {
        return Some(
            "CON, PRN, AUX, NUL, COM0-9 and LPT0-9 name devices on Windows, with any extension",
        );
    }
    None
}

fn is_device(base: &str) -> bool {
    if DEVICES.iter().any(|d| base.eq_ignore_ascii_case(d)) {
        return true;
    }
    let mut chars = base.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix.eq_ignore_ascii_case("COM") || prefix.eq_ignore_ascii_case("LPT"))
        && matches!(rest.as_slice(), ['0'..='9' | '¹' | '²' | '³'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_windows_cannot_create() {
        for bad in [
            "a:b",
            "C:",
            "a*",
            "a?",
            "a\"b",
            "<a",
            "a>",
            "a|b",
            "a\tb",
            "x.",
            "x ",
            "x. ",
            "...",
            "CON",
            "con",
            "Con.log",
            "NUL.tar.gz",
            "aux",
            "PRN.x",
            "COM1",
            "com9.log",
            "COM0",
            "LPT1",
            "lpt9.txt",
            "COM¹",
            "LPT³.x",
            "CONIN$",
            "conout$.log",
            "CON .log",
            "NUL ",
        ] {
            assert!(windows_problem(bad).is_some(), "{bad:?} is accepted");
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "x.log",
            "rawprox_2025-10-22-15.ndjson",
            ".hidden",
            "CONSOLE.log",
            "COM10",
            "LPT12.log",
            "COMA",
            "icon.log",
            "a.con",
            "null.log",
            "100%",
            "a b.log",
            "ünïcode.log",
        ] {
            assert_eq!(windows_problem(good), None, "{good:?}");
        }
    }
}
