//! Shutdown (SPEC §5, §6): SIGINT (Ctrl-C on Windows) and SIGTERM close the connections still
//! open (logging their `close` from client to target), write every buffered
//! line even with a long flush interval, to stdout or to a directory, and exit
//! 0; a closed stdout (`| head`) ends the proxy with exit 0 and no message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    DEADLINE, Proxy, TempDir, check_line, connect, data_between, dir_lines, echo_once,
    echo_roundtrip, echo_server, event, events, expect_closed, free_port, parse_lines, path_str,
    rule, wait_listening,
};

/// Two connections left open, a signal, then: clients closed, exit 0, and for
/// each connection its open, its data both ways and one close (client to target).
fn open_connections_are_closed_and_logged(sig: libc::c_int) {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "10000", &rule(p, echo.port())]);
    wait_listening(p);

    let mut streams: Vec<TcpStream> = (0..2).map(|_| connect(p)).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        echo_roundtrip(stream, format!("ping {i}").as_bytes());
    }
    let clients: Vec<String> = streams
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();

    let values = parse_lines(&proxy.stop_with(sig));
    for stream in &mut streams {
        expect_closed(stream, "client after shutdown");
    }
    let target = format!("127.0.0.1:{}", echo.port());
    assert_eq!(events(&values, "open").len(), 2, "two opens");
    for (i, client) in clients.iter().enumerate() {
        let closes = events(&values, "close")
            .into_iter()
            .filter(|v| v["from"] == client.as_str() && v["to"] == target.as_str())
            .count();
        assert_eq!(
            closes, 1,
            "one close from client {client} to {target}: {values:#?}"
        );
        let ping = format!("ping {i}");
        assert_eq!(data_between(&values, client, &target), ping.as_bytes());
        assert_eq!(data_between(&values, &target, client), ping.as_bytes());
    }
    assert_eq!(events(&values, "close").len(), 2, "one close per open");
}

/// Under wine (`.ci/cross-test`) SIGINT reaches rawprox.exe as the console's
/// CTRL_C_EVENT: the `sigint_` tests are the end-to-end proof that Ctrl-C on
/// Windows takes the graceful path (every line written, exit 0), where
/// Windows' default handler would end the process with 0xC000013A.
#[test]
fn sigint_closes_open_connections_and_writes_everything() {
    open_connections_are_closed_and_logged(libc::SIGINT);
}

#[test]
fn sigterm_closes_open_connections_and_writes_everything() {
    open_connections_are_closed_and_logged(libc::SIGTERM);
}

#[test]
fn sigint_writes_everything_to_the_directory() {
    everything_goes_to_the_directory(libc::SIGINT);
}

#[test]
fn sigterm_writes_everything_to_the_directory() {
    everything_goes_to_the_directory(libc::SIGTERM);
}

/// One connection left open, a signal, then the directory holds the run
/// whole: start-logging, open, data, close, stop-logging.
fn everything_goes_to_the_directory(sig: libc::c_int) {
    let tmp = TempDir::new("signal-dir");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let mut proxy = Proxy::start([
        "--flush-millis",
        "10000",
        &format!("@{}", path_str(&dir)),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);
    let mut stream = connect(p);
    echo_roundtrip(&mut stream, b"still open");
    let client = stream.local_addr().unwrap().to_string();

    let stdout = proxy.stop_with(sig);
    assert!(
        stdout.is_empty(),
        "stdout with a log directory: {stdout:#?}"
    );
    expect_closed(&mut stream, &format!("client after signal {sig}"));

    let values: Vec<Value> = dir_lines(&dir)
        .iter()
        .map(|(_, raw)| check_line(raw))
        .collect();
    let kinds: Vec<&str> = values.iter().filter_map(|v| event(v)).collect();
    assert_eq!(
        kinds,
        ["start-logging", "open", "close", "stop-logging"],
        "{values:#?}"
    );
    let target = format!("127.0.0.1:{}", echo.port());
    let close = events(&values, "close")[0];
    assert_eq!(close["from"], client.as_str());
    assert_eq!(close["to"], target.as_str());
    assert_eq!(data_between(&values, &client, &target), b"still open");
    assert_eq!(data_between(&values, &target, &client), b"still open");
}

/// Echo traffic that tolerates a proxy going away.
fn try_echo(port: u16) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(b"more traffic");
    let mut buf = [0u8; 64];
    let _ = stream.read(&mut buf);
}

#[test]
fn closed_stdout_ends_the_proxy_with_exit_0() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let cmd = Proxy::command(["--flush-millis", "0", &rule(p, echo.port())]);
    let (mut proxy, stdout) = Proxy::spawn_raw_stdout(cmd);
    wait_listening(p);

    // Like `| head -1`: read one line, then close the pipe (once our first
    // connection is done, so that it is not cut short).
    let (first_tx, first_rx) = mpsc::channel();
    let (close_tx, close_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = first_tx.send(line);
        let _ = close_rx.recv_timeout(DEADLINE);
        // `reader` is dropped here: the read end of the pipe closes.
    });
    echo_once(p, b"first");
    let first = first_rx
        .recv_timeout(DEADLINE)
        .expect("a first stdout line");
    assert_eq!(
        event(&check_line(first.trim_end())),
        Some("open"),
        "first line: {first}"
    );
    close_tx.send(()).unwrap();
    reader.join().expect("reader thread");

    // More traffic, so that the proxy writes to the closed pipe.
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = proxy.try_exit() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "proxy still running {DEADLINE:?} after stdout closed"
        );
        try_echo(p);
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status: {status}; stderr: {}",
        proxy.stderr_text()
    );
    assert_eq!(proxy.stderr_text(), "", "no message for a closed stdout");
}
