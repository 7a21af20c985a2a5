//! The command line (SPEC §2): any arguments (NUL-separated in the input,
//! not necessarily UTF-8) parse without panicking, and every rejection is
//! one non-empty line for `Error: `. A rule that parses displays as text
//! that parses back to the same rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::cli;
use rawprox::proxy::rule::PortRule;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// What `main` prints for a rejection: one `Error:` line with something said.
fn assert_one_error_line(message: &str) {
    let line = cli::error_line(message);
    assert!(line.len() > "Error: ".len() && line.starts_with("Error: "), "{line:?}");
    assert!(!line.contains(['\n', '\r']), "one line: {line:?}");
}

fuzz_target!(|input: &[u8]| {
    let args: Vec<OsString> = input.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    if let Err(message) = cli::proxy::parse(args) {
        assert_one_error_line(&message);
    }
    if let Ok(text) = std::str::from_utf8(input) {
        match PortRule::parse(text) {
            Ok(rule) => assert_eq!(PortRule::parse(&rule.to_string()).as_ref(), Ok(&rule)),
            Err(message) => assert_one_error_line(&message),
        }
    }
});
