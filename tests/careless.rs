//! Hostile and careless use, second pass (SPEC §2, §3, §5, §6): a file
//! name format that would leave the log directory is refused before any
//! port is bound, SIGHUP shuts down like SIGTERM with every line written,
//! a burst of clients fits in the listen backlog while rawprox is stopped,
//! and an option given twice counts with its last value.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    DEADLINE, Outcome, Proxy, TempDir, check_line, data_between, dir_lines, echo_once, echo_server,
    event, events, free_port, listening_addrs, path_str, rule, wait_listening,
};

#[test]
fn a_format_that_leaves_the_directory_is_refused_before_binding() {
    let tmp = TempDir::new("format-outside");
    let dir = format!("@{}", path_str(&tmp.join("logs")));
    for format in ["/", "%Y/", ".", "..", "/etc/../tmp/x.ndjson", "a//b"] {
        let p = free_port();
        let Outcome { status, stderr, .. } = Proxy::run([
            rule(p, 9),
            dir.clone(),
            "--filename-format".into(),
            format.into(),
        ]);
        assert_eq!(status.code(), Some(1), "{format:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{format:?}: {stderr}");
        assert!(
            stderr.starts_with("Error:") && stderr.contains("inside the log directory"),
            "{format:?}: {stderr}"
        );
        assert!(listening_addrs(p).is_empty(), "{format:?}: port {p} bound");
    }
}

#[test]
fn sighup_shuts_down_like_sigterm_and_loses_nothing() {
    let tmp = TempDir::new("sighup");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    // A long interval: everything is still buffered when the signal comes.
    let mut proxy = Proxy::start([
        "--flush-millis".to_string(),
        "60000".into(),
        format!("@{}", path_str(&dir)),
        rule(p, echo.port()),
    ]);
    wait_listening(p);
    let payload = b"buffered when the terminal closed";
    let client = echo_once(p, payload).to_string();
    proxy.signal(libc::SIGHUP);
    let status = proxy.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr: {}", proxy.stderr_text());
    assert_eq!(proxy.stderr_text(), "");
    let values: Vec<Value> = dir_lines(&dir).iter().map(|(_, l)| check_line(l)).collect();
    assert_eq!(events(&values, "open").len(), 1, "{values:#?}");
    assert_eq!(events(&values, "close").len(), 1, "{values:#?}");
    let target = format!("127.0.0.1:{}", echo.port());
    assert_eq!(data_between(&values, &client, &target), payload);
    assert_eq!(
        values.last().and_then(event),
        Some("stop-logging"),
        "{values:#?}"
    );
}

/// Raises this test process's open-file limit (the burst needs over 1,024
/// sockets at once).
fn raise_own_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit for getrlimit to fill, then set back.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(want.max(limit.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// SPEC §3: the backlog is at least 1024 (or the system's maximum). While
/// rawprox is stopped, nothing is accepted, so every client that completes
/// its handshake sits in the backlog; with the old 128, the 130th connect
/// would hang on SYN retries.
#[test]
fn a_burst_of_clients_fits_in_the_listen_backlog() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let want = 1024.min(somaxconn);
    assert!(
        raise_own_fd_limit(want as u64 + 200) as usize > want + 50,
        "cannot open {want} sockets in this test"
    );
    let p = free_port();
    // The target refuses: once resumed, rawprox closes each client.
    let mut proxy = Proxy::start([rule(p, free_port())]);
    wait_listening(p);
    proxy.signal(libc::SIGSTOP);
    let addr = SocketAddr::from(([127, 0, 0, 1], p));
    let started = Instant::now();
    let mut clients: Vec<TcpStream> = Vec::with_capacity(want);
    // A backlog of N holds N + 1 connections.
    while clients.len() < want {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => clients.push(stream),
            Err(e) => {
                proxy.signal(libc::SIGCONT);
                panic!(
                    "connect {} of {want} failed while rawprox was stopped: {e}",
                    clients.len() + 1
                );
            }
        }
        assert!(started.elapsed() < DEADLINE, "the burst took too long");
    }
    proxy.signal(libc::SIGCONT);
    drop(clients);
    proxy.stop();
}

#[test]
fn an_option_given_twice_counts_with_its_last_value() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start([
        "--flush-millis".to_string(),
        "60000".into(),
        "--flush-millis".into(),
        "0".into(),
        rule(p, echo.port()),
    ]);
    wait_listening(p);
    // With 60 s, the open would wait a minute; with the last value, 0, it
    // is written at once.
    let client = echo_once(p, b"twice");
    proxy.wait_open(client);
    proxy.stop();
}
