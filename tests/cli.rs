//! The command line (SPEC §2): help and version, "nothing to do", every
//! start-up error (exit 1, stdout empty, one `Error:` line naming the
//! culprit), a port already in use, nothing left listening after a failed
//! start, and the accepted spellings of `--flush-millis`.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};

use crate::util::{
    Outcome, Proxy, TempDir, echo_once, echo_server, free_port, listening_addrs, path_str, rule,
    wait_listening,
};

/// Every argument the help text must name.
fn assert_is_help(text: &str, channel: &str) {
    for word in [
        "--mcp-port",
        "--flush-millis",
        "--filename-format",
        "--help",
        "--version",
    ] {
        assert!(
            text.contains(word),
            "help on {channel} does not mention {word}:\n{text}"
        );
    }
    assert!(
        text.contains("PORT_RULE") || text.contains("LOCAL_PORT"),
        "help on {channel} does not describe the port rule:\n{text}"
    );
    assert!(
        text.split(|c: char| c.is_whitespace() || c == '[')
            .any(|w| w.starts_with('@') && w.len() > 1),
        "help on {channel} does not show the @LOG_DIRECTORY argument:\n{text}"
    );
}

#[test]
fn help_goes_to_stdout_with_exit_0() {
    let long = Proxy::run(["--help"]);
    let short = Proxy::run(["-h"]);
    for (flag, out) in [("--help", &long), ("-h", &short)] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flag}: exit status; stderr: {}",
            out.stderr
        );
        assert_eq!(out.stderr, "", "{flag}: stderr");
        assert_is_help(&out.stdout_lines.join("\n"), "stdout");
    }
    assert_eq!(
        long.stdout_lines, short.stdout_lines,
        "-h and --help print the same text"
    );
}

#[test]
fn version_goes_to_stdout_with_exit_0() {
    for flag in ["--version", "-V"] {
        let out = Proxy::run([flag]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flag}: exit status; stderr: {}",
            out.stderr
        );
        assert_eq!(out.stderr, "", "{flag}: stderr");
        assert_eq!(
            out.stdout_lines.len(),
            1,
            "{flag}: one line: {:?}",
            out.stdout_lines
        );
        let line = &out.stdout_lines[0];
        assert!(
            line.contains("rawprox") && line.contains(env!("CARGO_PKG_VERSION")),
            "{flag}: {line:?} should name rawprox and version {}",
            env!("CARGO_PKG_VERSION")
        );
    }
}

/// What a newcomer asks first (issue 22): the help says it, in any wrapping.
#[test]
fn help_answers_a_newcomers_questions() {
    let out = Proxy::run(["--help"]);
    let words = out.stdout_lines.join(" ");
    let help = words.split_whitespace().collect::<Vec<_>>().join(" ");
    for (question, answer) in [
        (
            "rules with --mcp-port",
            "With --mcp-port, PORT_RULEs are optional",
        ),
        (
            "where the listener binds",
            "binds every interface (0.0.0.0) unless BIND_ADDRESS is given",
        ),
        ("how to write to stdout", "-o - writes to stdout"),
        (
            "what a directory INPUT reads",
            "searching into subdirectories",
        ),
        ("when lines appear", "up to 2 s after the traffic"),
    ] {
        assert!(
            help.contains(answer),
            "--help does not answer {question}: no {answer:?} in\n{}",
            out.stdout_lines.join("\n")
        );
    }
}

#[test]
fn nothing_to_do_prints_help_to_stderr_with_exit_1() {
    let cases: [&[&str]; 2] = [&[], &["--flush-millis", "10"]];
    for args in cases {
        let out = Proxy::run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: exit status");
        assert!(
            out.stdout_lines.is_empty(),
            "{args:?}: stdout {:?}",
            out.stdout_lines
        );
        assert_is_help(&out.stderr, "stderr");
    }
}

/// Exit 1, nothing on stdout, exactly one stderr line: `Error:` and one of `culprits`.
fn assert_error(args: &[String], culprits: &[String]) {
    let Outcome {
        status,
        stdout_lines,
        stderr,
    } = Proxy::run(args);
    assert_eq!(
        status.code(),
        Some(1),
        "{args:?}: exit status; stderr: {stderr}"
    );
    assert!(
        stdout_lines.is_empty(),
        "{args:?}: stdout should be empty: {stdout_lines:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && stderr.ends_with('\n'),
        "{args:?}: stderr should be one line: {stderr:?}"
    );
    assert!(
        lines[0].starts_with("Error:"),
        "{args:?}: {:?} does not start with Error:",
        lines[0]
    );
    assert!(
        culprits.iter().any(|c| lines[0].contains(c)),
        "{args:?}: {:?} does not name the culprit (one of {culprits:?})",
        lines[0]
    );
}

#[test]
fn invalid_arguments_give_one_error_line_and_exit_1() {
    let tmp = TempDir::new("cli-errors");
    let p = free_port();
    let good = rule(p, 9);
    let dir_a = path_str(&tmp.join("a"));
    let dir_b = path_str(&tmp.join("b"));
    let blocker = tmp.join("file");
    fs::write(&blocker, b"a regular file, not a directory").unwrap();
    let under_file = path_str(&blocker.join("sub"));

    let owned = |v: &[&str]| -> Vec<String> { v.iter().map(|a| a.to_string()).collect() };
    let with_good = |v: &[&str]| -> Vec<String> {
        let mut args = vec![good.clone()];
        args.extend(v.iter().map(|a| a.to_string()));
        args
    };
    let dir_a_arg = format!("@{dir_a}");
    // (arguments, the culprits of which the error line must name one)
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (vec![format!("{p}:host")], vec![format!("{p}:host")]),
        (owned(&["0:127.0.0.1:80"]), owned(&["0:127.0.0.1:80"])),
        (
            owned(&["70000:127.0.0.1:80"]),
            owned(&["70000:127.0.0.1:80"]),
        ),
        (owned(&["abc:127.0.0.1:80"]), owned(&["abc:127.0.0.1:80"])),
        (vec![format!("{p}::80")], vec![format!("{p}::80")]),
        (vec![format!("{p}:[::1:80")], vec![format!("{p}:[::1:80")]),
        (
            vec![format!("{p}:127.0.0.1:0")],
            vec![format!("{p}:127.0.0.1:0")],
        ),
        (
            vec![format!("{p}:127.0.0.1:9"), format!("{p}:127.0.0.1:10")],
            vec![p.to_string()],
        ),
        (with_good(&["--bogus"]), owned(&["--bogus"])),
        (with_good(&["--flush-millis"]), owned(&["--flush-millis"])),
        (with_good(&["--flush-millis", "abc"]), owned(&["abc"])),
        (
            with_good(&["--flush-millis", "99999999999999999999999"]),
            owned(&["99999999999999999999999"]),
        ),
        (
            with_good(&["--filename-format"]),
            owned(&["--filename-format"]),
        ),
        (
            with_good(&[&dir_a_arg, &format!("@{dir_b}")]),
            vec![dir_a.clone(), dir_b.clone()],
        ),
        (
            with_good(&["--filename-format", "x.log"]),
            owned(&["--filename-format"]),
        ),
        (vec![dir_a_arg.clone()], vec![dir_a.clone()]),
        (
            with_good(&[&dir_a_arg, "--filename-format", "cap_%Q.log"]),
            owned(&["%Q"]),
        ),
        (
            with_good(&[&dir_a_arg, "--filename-format", "cap_%"]),
            owned(&["cap_%"]),
        ),
        (
            with_good(&[&format!("@{under_file}")]),
            vec![under_file.clone()],
        ),
    ];
    for (args, culprits) in &cases {
        assert_error(args, culprits);
        assert!(
            listening_addrs(p).is_empty(),
            "{args:?}: port {p} left listening"
        );
    }
}

#[test]
fn port_in_use_is_reported_by_number() {
    let p = free_port();
    let _occupier = TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).expect("occupy the port");
    let out = Proxy::run([rule(p, 9)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status; stderr: {}",
        out.stderr
    );
    assert!(
        out.stdout_lines.is_empty(),
        "stdout: {:?}",
        out.stdout_lines
    );
    assert_eq!(out.stderr, format!("Error: Port {p} is already in use\n"));
}

#[test]
fn failed_start_leaves_nothing_listening() {
    let first = free_port();
    let taken = free_port();
    let _occupier = TcpListener::bind((Ipv4Addr::UNSPECIFIED, taken)).expect("occupy the port");
    let out = Proxy::run([rule(first, 9), rule(taken, 9)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status; stderr: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr,
        format!("Error: Port {taken} is already in use\n")
    );
    assert!(
        listening_addrs(first).is_empty(),
        "port {first} of the first rule is still listening after the failed start"
    );
}

#[test]
fn flush_millis_spellings_are_accepted() {
    let echo = echo_server("127.0.0.1");
    let spellings: [&[&str]; 3] = [
        &["--flush-millis", "0"],
        &["--flush-millis=0"],
        &["--flush-interval-ms=0"],
    ];
    for flag in spellings {
        let p = free_port();
        let mut args: Vec<String> = flag.iter().map(|a| a.to_string()).collect();
        args.push(rule(p, echo.port()));
        let mut proxy = Proxy::start(&args);
        wait_listening(p);
        let client = echo_once(p, b"spelling check");
        proxy.wait_open(client);
        proxy.stop();
    }
}

/// SPEC §2, §9: a newcomer's mistakes get messages that say what is wrong
/// and what to do, each its exact first words.
#[test]
fn mistakes_get_messages_that_say_what_to_do() {
    let first_line = |args: &[&str]| {
        let out = Proxy::run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stdout_lines.is_empty(),
            "{args:?}: {:?}",
            out.stdout_lines
        );
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        out.stderr
    };
    let err = first_line(&["lst", "logs"]);
    assert!(
        err.starts_with("Error: 'lst' is neither a subcommand (list, follow, extract, pcap"),
        "{err}"
    );
    let err = first_line(&["32030:127.0.0.1:32001:x"]);
    assert!(
        err.starts_with(
            "Error: invalid port rule '32030:127.0.0.1:32001:x': with 4 parts it reads as BIND_ADDRESS:LOCAL_PORT:TARGET_HOST:TARGET_PORT, and bind address '32030' is not"
        ),
        "{err}"
    );
    assert!(err.trim_end().ends_with("(see --help)"), "{err}");
    let err = first_line(&["1:a"]);
    assert!(err.trim_end().ends_with("(see --help)"), "{err}");

    let dir = TempDir::new("cli-afile");
    let file = dir.join("afile.txt");
    fs::write(&file, b"notes").expect("write a file");
    let p = free_port();
    let err = first_line(&[&rule(p, 9), &format!("@{}", path_str(&file))]);
    assert!(
        err.starts_with(&format!(
            "Error: log directory '{}' is a file, not a directory",
            path_str(&file)
        )),
        "{err}"
    );
    assert!(listening_addrs(p).is_empty(), "port {p} left listening");

    let taken = free_port();
    let _occupier = TcpListener::bind((Ipv4Addr::LOCALHOST, taken)).expect("occupy the port");
    let err = first_line(&["--mcp-port", &taken.to_string()]);
    assert!(
        err.starts_with(&format!(
            "Error: Port {taken} is already in use: it is the --mcp-port"
        )),
        "{err}"
    );
}
