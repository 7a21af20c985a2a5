//! What differs by platform (SPEC §1): the log file names Windows cannot
//! create are refused there, on the command line and over MCP, as a name
//! outside the log directory is (SPEC §5), and `\` separates parts of a
//! format there; elsewhere the same formats are ordinary names. Each test
//! asserts the behaviour of the platform under test: the Windows build under
//! wine (`.ci/cross-test`), or the Linux build natively and under qemu.

use serde_json::json;
use std::fs;

use crate::mcp::{Http, start_mcp};
use crate::util::{Outcome, Proxy, TempDir, dir_lines, free_port, listening_addrs, path_str};
use crate::util::{check_line, event, rule, wait_listening, windows};

/// Formats Windows cannot turn into a file inside the log directory: a
/// character it refuses, a device name (any case, any extension, in a
/// subdirectory too), a trailing dot or space, or a `\` path that leaves the
/// directory or has an empty part.
const REFUSED_ON_WINDOWS: &[&str] = &[
    "a:b.log",
    "a*.log",
    "a?.log",
    "a\"b.log",
    "<a>.log",
    "a|b.log",
    "CON.log",
    "sub/nul",
    "Aux.%Y.log",
    "COM1",
    "lpt9.ndjson",
    "x.",
    "x ",
    "%Y.",
    "..\\x.log",
    "\\x.log",
    "a\\\\b.log",
    "sub\\..\\x.log",
    "C:\\x.log",
];

#[test]
fn windows_refuses_names_it_cannot_create_before_binding() {
    if !windows() {
        return formats_are_ordinary_names_elsewhere();
    }
    let tmp = TempDir::new("format-windows");
    let dir = format!("@{}", path_str(&tmp.join("logs")));
    for format in REFUSED_ON_WINDOWS {
        let p = free_port();
        let Outcome { status, stderr, .. } = Proxy::run([
            rule(p, 9),
            dir.clone(),
            "--filename-format".into(),
            format.to_string(),
        ]);
        assert_eq!(status.code(), Some(1), "{format:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{format:?}: {stderr}");
        assert!(
            stderr.starts_with("Error:")
                && (stderr.contains("cannot create")
                    || stderr.contains("inside the log directory")),
            "{format:?}: {stderr}"
        );
        assert!(listening_addrs(p).is_empty(), "{format:?}: port {p} bound");
    }
}

#[test]
fn windows_refuses_names_it_cannot_create_over_mcp() {
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    let logs = TempDir::new("mcp-format-windows");
    let dir = path_str(&logs.join("logs"));
    for format in REFUSED_ON_WINDOWS {
        let args = json!({"directory": dir, "filename_format": format});
        if windows() {
            let (code, message) = http.call_err("start-logging", args);
            assert_eq!(code, -32602, "{format:?}: {message}");
            assert!(
                message.contains("cannot create") || message.contains("inside the log directory"),
                "{format:?}: {message}"
            );
        } else {
            // Elsewhere these are names like any other: logging starts.
            http.call("start-logging", args);
            http.call("stop-logging", json!({"directory": dir}));
        }
    }
    proxy.stop();
}

/// On Windows `\` makes subdirectories as `/` does.
#[test]
fn a_backslash_makes_subdirectories_on_windows_only() {
    let tmp = TempDir::new("format-backslash");
    let logs = tmp.join("logs");
    let p = free_port();
    let mut proxy = Proxy::start([
        rule(p, 9),
        format!("@{}", path_str(&logs)),
        "--filename-format".into(),
        "sub\\x.log".into(),
    ]);
    wait_listening(p);
    proxy.stop();
    let dir = if windows() {
        logs.join("sub")
    } else {
        logs.clone()
    };
    let lines = dir_lines(&dir);
    let name = if windows() { "x.log" } else { "sub\\x.log" };
    let events: Vec<_> = lines
        .iter()
        .map(|(file, line)| {
            assert_eq!(file, name, "in {}", dir.display());
            event(&check_line(line)).map(str::to_owned)
        })
        .collect();
    assert_eq!(
        events,
        [Some("start-logging".into()), Some("stop-logging".into())]
    );
}

/// Linux creates every one of Windows' refused names that stays inside the
/// directory there (`\` is an ordinary character): `CON.log` is a file.
fn formats_are_ordinary_names_elsewhere() {
    let tmp = TempDir::new("format-elsewhere");
    let logs = tmp.join("logs");
    let p = free_port();
    let mut proxy = Proxy::start([
        rule(p, 9),
        format!("@{}", path_str(&logs)),
        "--filename-format".into(),
        "CON.log".into(),
    ]);
    wait_listening(p);
    proxy.stop();
    let text = fs::read_to_string(logs.join("CON.log")).expect("CON.log is a file");
    assert_eq!(text.lines().count(), 2, "start and stop: {text}");
}
