//! The read side (SPEC §9): `list`, `follow`, `extract` and `pcap` on real
//! captures made through the real binary over 127.0.0.1 and ::1.
//!
//! One capture is made once and shared (`capture()`): two runs into one
//! directory, files rotated every second, four rules (HTTP text from a tiny
//! server, random binary both ways with a half-close to a target named
//! `localhost`, IPv6, a reset), with the test's own record of every byte
//! each side sent. Each test reads it back and compares with that record.

use crate::util::*;
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Files rotate every second, so a capture of a few seconds spans several.
const FORMAT: &str = "cap-%H%M%S.ndjson";

/// One connection of the capture, as the test's clients and servers saw it.
struct Recorded {
    what: &'static str,
    conn_id: String,
    listen_port: u16,
    /// The client's address as logged, and the target as written in the rule.
    client: String,
    target: String,
    /// Client to target, and target to client.
    sent: Vec<u8>,
    received: Vec<u8>,
    closed_by: &'static str,
}

struct Capture {
    dir: PathBuf,
    conns: Vec<Recorded>,
}

impl Capture {
    fn dir(&self) -> String {
        path_str(&self.dir)
    }

    fn conn(&self, what: &str) -> &Recorded {
        self.conns
            .iter()
            .find(|c| c.what == what)
            .unwrap_or_else(|| panic!("no {what} connection"))
    }

    /// The capture's files, in name order.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .expect("read capture dir")
            .map(|e| path_str(&e.expect("dir entry").path()))
            .collect();
        names.sort();
        names
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(make_capture)
}

const HTTP_REQUEST: &[u8] =
    b"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: rawprox-test\r\n\r\n";

fn http_response() -> Vec<u8> {
    let body = "<html><body><p>Hello, caf\u{e9} 100%</p></body></html>\n";
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Every byte value, then random bytes.
fn binary(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
    bytes.extend(Rng::new(seed).bytes(len));
    bytes
}

/// A tiny HTTP server: reads one request, answers, and closes first.
fn http_server() -> Server {
    serve("127.0.0.1", |mut stream| {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(&http_response());
    })
}

/// Reads to EOF (counting into `received`), then sends `reply` and closes:
/// the client ends first and the target still sends after it.
fn binary_server(received: Arc<AtomicUsize>, reply: Vec<u8>) -> Server {
    serve("127.0.0.1", move |mut stream| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    received.fetch_add(n, Ordering::SeqCst);
                }
                Err(_) => return,
            }
        }
        let _ = stream.write_all(&reply);
    })
}

/// Waits until the wall clock is in a later second than now: lines logged
/// before and after land in different files of `FORMAT`.
fn wait_next_second() {
    let second = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    };
    let start = second();
    let deadline = Instant::now() + Duration::from_secs(3);
    while second() == start {
        assert!(Instant::now() < deadline, "the clock did not move on");
        thread::sleep(Duration::from_millis(5));
    }
}

fn wait_count(counter: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while counter.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: not there after {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh directory for the shared capture under cargo's temp dir for
/// tests (captures of earlier test runs are removed).
fn capture_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = fs::read_dir(base) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("read-capture-")
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("read-capture-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create capture dir");
    dir
}

fn make_capture() -> Capture {
    let dir = capture_dir();
    let dir_arg = format!("@{}", path_str(&dir));
    let http = http_server();
    let bin_received = Arc::new(AtomicUsize::new(0));
    let bin_reply = binary(2, 70_000);
    let bin = binary_server(bin_received.clone(), bin_reply.clone());
    let echo6 = echo_server("::1");
    let echo4 = echo_server("127.0.0.1");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let rules = [
        format!("{}:127.0.0.1:{}", ports[0], http.port()),
        format!("{}:localhost:{}", ports[1], bin.port()),
        format!("[::1]:{}:[::1]:{}", ports[2], echo6.port()),
        format!("{}:127.0.0.1:{}", ports[3], echo4.port()),
    ];
    // A port rule first: the reading subcommands did not take its place.
    let mut proxy = Proxy::start([
        rules[0].as_str(),
        &rules[1],
        &rules[2],
        &rules[3],
        &dir_arg,
        "--filename-format",
        FORMAT,
        "--flush-millis",
        "100",
    ]);
    for port in &ports {
        wait_listening(*port);
    }
    // Each connection as recorded; its ConnID is read from the log at the end.
    let mut clients: Vec<Recorded> = Vec::new();
    let record =
        |what, listen_port, client: SocketAddr, target, sent, received, closed_by| Recorded {
            what,
            conn_id: String::new(),
            listen_port,
            client: client.to_string(),
            target,
            sent,
            received,
            closed_by,
        };

    // HTTP text: the server answers and closes first.
    let mut stream = connect(ports[0]);
    let local = stream.local_addr().expect("local addr");
    stream.write_all(HTTP_REQUEST).expect("send request");
    let response = read_to_end(&mut stream);
    assert_bytes_eq(&response, &http_response(), "HTTP response through rawprox");
    drop(stream);
    clients.push(record(
        "http",
        ports[0],
        local,
        format!("127.0.0.1:{}", http.port()),
        HTTP_REQUEST.to_vec(),
        response,
        "target",
    ));

    // Binary both ways to `localhost`, over two rotated files: half, the
    // clock's next second, the rest, then the client's FIN (half-close),
    // after which the target sends its reply.
    let sent = binary(1, 50_000);
    let half = sent.len() / 2;
    let mut stream = connect(ports[1]);
    let local = stream.local_addr().expect("local addr");
    stream.write_all(&sent[..half]).expect("send first half");
    wait_count(&bin_received, half, "the first half at the target");
    wait_next_second();
    stream.write_all(&sent[half..]).expect("send second half");
    stream.shutdown(Shutdown::Write).expect("FIN");
    let reply = read_to_end(&mut stream);
    assert_bytes_eq(&reply, &bin_reply, "binary reply through rawprox");
    clients.push(record(
        "binary",
        ports[1],
        local,
        format!("localhost:{}", bin.port()),
        sent,
        reply,
        "client",
    ));

    // IPv6.
    let data = [b"hello over IPv6\n".to_vec(), binary(3, 1000)].concat();
    let mut stream = connect_to(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, ports[2])));
    let local = stream.local_addr().expect("local addr");
    echo_roundtrip(&mut stream, &data);
    stream.shutdown(Shutdown::Write).expect("FIN");
    assert!(read_to_end(&mut stream).is_empty());
    clients.push(record(
        "ipv6",
        ports[2],
        local,
        format!("[::1]:{}", echo6.port()),
        data.clone(),
        data,
        "client",
    ));

    // A reset: the echo comes back, then the client resets.
    let data = b"reset after this\x00\xff".to_vec();
    let mut stream = connect(ports[3]);
    let local = stream.local_addr().expect("local addr");
    echo_roundtrip(&mut stream, &data);
    set_linger_zero(&stream);
    drop(stream);
    clients.push(record(
        "reset",
        ports[3],
        local,
        format!("127.0.0.1:{}", echo4.port()),
        data.clone(),
        data,
        "client",
    ));
    // The reset's close line is logged before the shutdown's.
    wait_dir_line(&dir, "the reset's close", |v| {
        v["event"] == "close" && v["from"] == local.to_string()
    });
    proxy.stop();

    // A second run into the same directory.
    let port = free_port();
    let rule = format!("{port}:127.0.0.1:{}", echo4.port());
    let mut proxy = Proxy::start([rule.as_str(), &dir_arg, "--filename-format", FORMAT]);
    wait_listening(port);
    let data = b"second run, plain text\n".to_vec();
    let local = echo_once(port, &data);
    let target = format!("127.0.0.1:{}", echo4.port());
    clients.push(record(
        "second run",
        port,
        local,
        target,
        data.clone(),
        data,
        "client",
    ));
    proxy.stop();

    // ConnIDs from the open lines.
    let lines: Vec<Value> = dir_lines(&dir).iter().map(|(_, l)| check_line(l)).collect();
    for conn in &mut clients {
        let open = lines
            .iter()
            .find(|v| v["event"] == "open" && v["from"] == conn.client.as_str())
            .unwrap_or_else(|| panic!("no open line from {}", conn.client));
        conn.conn_id = open["ConnID"].as_str().expect("ConnID").to_string();
    }
    let conns = clients;
    Capture { dir, conns }
}

// ---------------------------------------------------------------- running

pub(crate) struct Ran {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("UTF-8 output")
    }

    pub(crate) fn ok(self, what: &str) -> Ran {
        assert!(
            self.status.success(),
            "{what}: {}; stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// Runs `rawprox ARGS` to its end (within the deadline) with `stdin` as
/// its standard input, and `env` set.
pub(crate) fn run_with(args: &[&str], stdin: Option<Vec<u8>>, env: &[(&str, &str)]) -> Ran {
    let mut cmd = rawprox_command();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NO_COLOR");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("spawn rawprox");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let stdout = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rawprox {args:?} did not end within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ran {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

pub(crate) fn run(args: &[&str]) -> Ran {
    run_with(args, None, &[])
}

/// Runs `rawprox ARGS` with its stdout on a pseudo-terminal; returns what
/// it wrote there.
fn run_on_terminal(args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let (mut master, slave) = openpty();
    let mut cmd = rawprox_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null())
        .env_remove("NO_COLOR");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("spawn rawprox on a terminal");
    // `cmd` holds the parent's copy of the slave: drop it, so reading the
    // master ends (EIO) once the child has exited.
    drop(cmd);
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rawprox {args:?} on a terminal did not end");
        }
        thread::sleep(Duration::from_millis(5));
    }
    reader.join().expect("terminal reader")
}

// ---------------------------------------------------------------- tests

#[test]
fn extract_gives_exactly_what_each_side_sent() {
    let cap = capture();
    let dir = cap.dir();
    for conn in &cap.conns {
        let client = run(&["extract", &conn.conn_id, &dir]).ok("extract");
        assert_bytes_eq(
            &client.stdout,
            &conn.sent,
            &format!("{} client side", conn.what),
        );
        assert_eq!(client.stderr, "", "nothing skipped");
        let target = run(&["extract", &conn.conn_id, "--side", "target", &dir]).ok("extract");
        assert_bytes_eq(
            &target.stdout,
            &conn.received,
            &format!("{} target side", conn.what),
        );
    }
    // The files named one by one, and -o FILE.
    let binary = cap.conn("binary");
    let files = cap.files();
    let with_id: Vec<&String> = files
        .iter()
        .filter(|f| {
            fs::read_to_string(f)
                .expect("read log")
                .contains(&binary.conn_id)
        })
        .collect();
    assert!(
        with_id.len() >= 2,
        "the binary connection spans rotated files: {with_id:?}"
    );
    let tmp = TempDir::new("extract");
    let out = path_str(&tmp.join("out.bin"));
    let mut args = vec![
        "extract",
        binary.conn_id.as_str(),
        "--side=target",
        "-o",
        &out,
    ];
    args.extend(files.iter().map(String::as_str));
    let ran = run(&args).ok("extract -o");
    assert!(ran.stdout.is_empty(), "-o writes nothing to stdout");
    assert_bytes_eq(
        &fs::read(&out).expect("read -o file"),
        &binary.received,
        "extract -o",
    );
    // Standard input: the files concatenated, through `-` and through no INPUT.
    let all: Vec<u8> = files
        .iter()
        .flat_map(|f| fs::read(f).expect("read log"))
        .collect();
    for args in [
        vec!["extract", &binary.conn_id, "-"],
        vec!["extract", &binary.conn_id],
    ] {
        let ran = run_with(&args, Some(all.clone()), &[]).ok("extract from stdin");
        assert_bytes_eq(&ran.stdout, &binary.sent, "extract from stdin");
    }
    // An unknown ConnID is an error.
    let ran = run(&["extract", "zzzzzzzz", &dir]);
    assert_eq!(ran.status.code(), Some(1));
    assert!(
        ran.stderr.starts_with("Error: no connection zzzzzzzz"),
        "{}",
        ran.stderr
    );
}

#[test]
fn list_shows_every_connection_once_with_its_bytes_and_end() {
    let cap = capture();
    let dir = cap.dir();
    let ran = run(&["list", "--json", &dir]).ok("list --json");
    let rows: Vec<Value> = ran
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        rows.len(),
        cap.conns.len(),
        "one row per connection: {rows:?}"
    );
    let mut previous_open = String::new();
    for row in &rows {
        let open = row["open_time"].as_str().expect("open_time").to_string();
        assert!(open >= previous_open, "rows in open order");
        previous_open = open;
    }
    for conn in &cap.conns {
        let found: Vec<&Value> = rows
            .iter()
            .filter(|r| r["ConnID"] == conn.conn_id.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{} listed once", conn.what);
        let row = found[0];
        assert_eq!(row["listen_port"], conn.listen_port, "{}", conn.what);
        assert_eq!(row["client"], conn.client.as_str(), "{}", conn.what);
        assert_eq!(row["target"], conn.target.as_str(), "{}", conn.what);
        assert_eq!(
            row["bytes_client_to_target"],
            conn.sent.len(),
            "{}",
            conn.what
        );
        assert_eq!(
            row["bytes_target_to_client"],
            conn.received.len(),
            "{}",
            conn.what
        );
        assert_eq!(row["closed_by"], conn.closed_by, "{}", conn.what);
        assert!(row["close_time"].is_string(), "{}", conn.what);
        assert!(row["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0));
    }
    // The binary transfer waited for a clock second in the middle.
    let binary = cap.conn("binary");
    let row = rows
        .iter()
        .find(|r| r["ConnID"] == binary.conn_id.as_str())
        .expect("row");
    assert!(row["duration_seconds"].as_f64().expect("number") > 0.0);

    // The table: a header, then one aligned row per connection.
    let table = run(&["list", &dir]).ok("list").text();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + cap.conns.len(), "{table}");
    assert!(lines[0].starts_with("CONNID"), "{table}");
    let opened_at = lines[0].find("OPENED").expect("OPENED column");
    for conn in &cap.conns {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&conn.conn_id))
            .unwrap_or_else(|| panic!("{} not in the table:\n{table}", conn.what));
        let row = rows
            .iter()
            .find(|r| r["ConnID"] == conn.conn_id.as_str())
            .expect("JSON row");
        let open_time = row["open_time"].as_str().expect("open_time");
        assert_eq!(
            line.find(open_time),
            Some(opened_at),
            "aligned OPENED: {line}"
        );
        let end = format!("{} closed first", conn.closed_by);
        assert!(line.ends_with(&end), "{line}");
        assert!(line.contains(&format!(" {} ", conn.sent.len())), "{line}");
        assert!(
            line.contains(&format!(" {} ", conn.received.len())),
            "{line}"
        );
    }
    // --port picks one rule's connections.
    let http = cap.conn("http");
    let port = http.listen_port.to_string();
    let ran = run(&["list", "--port", &port, "--json", &dir]).ok("list --port");
    let ids: Vec<Value> = ran
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON row")["ConnID"].clone())
        .collect();
    assert_eq!(ids, [Value::from(http.conn_id.as_str())]);
}

/// The bytes of a hex dump's rows (`hexdump -C` layout), with their offsets.
fn hex_rows(text: &str) -> Vec<(u64, Vec<u8>)> {
    text.lines()
        .filter(|l| {
            l.len() > 10 && l.as_bytes()[8] == b' ' && l[..8].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|l| {
            let offset = u64::from_str_radix(&l[..8], 16).expect("offset");
            let hex = &l[10..l.find(" |").expect("ASCII column")];
            let bytes = hex
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
                .collect();
            (offset, bytes)
        })
        .collect()
}

#[test]
fn follow_shows_text_as_text_and_binary_as_hex() {
    let cap = capture();
    let dir = cap.dir();
    let http = cap.conn("http");
    let text = run(&["follow", &http.conn_id, &dir]).ok("follow").text();
    assert!(!text.contains('\x1b'), "no colours into a pipe");
    let header = format!(
        "== {} port {}: {} -> {}, opened 20",
        http.conn_id, http.listen_port, http.client, http.target
    );
    assert!(text.starts_with(&header), "{text}");
    let request_marker = format!(">> {} 20", http.conn_id);
    assert!(text.contains(&request_marker), "{text}");
    assert!(
        text.contains(&format!(
            "{} bytes client -> target\nGET /hello HTTP/1.1\\r\nHost: localhost\\r\n",
            HTTP_REQUEST.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("bytes target -> client\nHTTP/1.1 200 OK\\r\n"),
        "{text}"
    );
    assert!(
        text.contains("<p>Hello, café 100%</p>"),
        "UTF-8 as text: {text}"
    );
    assert!(
        text.contains(&format!("== {} target closed first, at 20", http.conn_id)),
        "{text}"
    );

    // Binary: hex dumps whose bytes and offsets are the stream's.
    let binary = cap.conn("binary");
    let text = run(&["follow", &binary.conn_id, &dir]).ok("follow").text();
    let mut client = Vec::new();
    let mut target = Vec::new();
    let mut to = &mut client;
    for block in text.split_inclusive('\n') {
        if block.starts_with(">> ") {
            assert!(block.ends_with("client -> target, hex\n"), "{block}");
            to = &mut client;
        } else if block.starts_with("<< ") {
            assert!(block.ends_with("target -> client, hex\n"), "{block}");
            to = &mut target;
        } else if let Some((offset, bytes)) = hex_rows(block).pop() {
            assert_eq!(offset, to.len() as u64, "hex offsets follow the stream");
            to.extend(bytes);
        }
    }
    assert_bytes_eq(&client, &binary.sent, "hex dump of the client's bytes");
    assert_bytes_eq(&target, &binary.received, "hex dump of the target's bytes");

    // All connections, by port, several IDs.
    let all = run(&["follow", &dir]).ok("follow all").text();
    for conn in &cap.conns {
        assert!(
            all.contains(&format!("== {} port {}", conn.conn_id, conn.listen_port)),
            "{}",
            conn.what
        );
    }
    let reset = cap.conn("reset");
    let two = run(&["follow", &reset.conn_id, &http.conn_id, &dir])
        .ok("follow two")
        .text();
    let headers: Vec<&str> = two.lines().filter(|l| l.contains(", opened ")).collect();
    assert_eq!(headers.len(), 2, "{two}");
    let port = reset.listen_port.to_string();
    let one = run(&["follow", "--port", &port, &dir])
        .ok("follow --port")
        .text();
    assert!(
        one.contains(&reset.conn_id) && !one.contains(&http.conn_id),
        "{one}"
    );
}

#[test]
fn follow_colours_only_on_a_terminal_without_no_color() {
    let cap = capture();
    let dir = cap.dir();
    let http = cap.conn("http");
    let shown = run_on_terminal(&["follow", &http.conn_id, &dir], &[]);
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        shown.contains("\x1b[31m>> "),
        "client -> target in red: {shown:?}"
    );
    assert!(
        shown.contains("\x1b[34m<< "),
        "target -> client in blue: {shown:?}"
    );
    let plain = run_on_terminal(&["follow", &http.conn_id, &dir], &[("NO_COLOR", "1")]);
    let plain = String::from_utf8_lossy(&plain);
    assert!(
        plain.contains(">> ") && !plain.contains('\x1b'),
        "NO_COLOR: {plain:?}"
    );
}

#[test]
fn live_follow_shows_data_within_a_flush() {
    let echo = echo_server("127.0.0.1");
    let port = free_port();
    let mut cmd = Proxy::command([
        rule(port, echo.port()),
        "--flush-millis".into(),
        "200".into(),
    ]);
    cmd.stdin(Stdio::null());
    let (mut proxy, proxy_out) = Proxy::spawn_raw_stdout(cmd);
    let mut follow_cmd = rawprox_command();
    follow_cmd.arg("follow").stdin(Stdio::from(proxy_out));
    let mut follower = Proxy::spawn(follow_cmd);
    wait_listening(port);
    let mut stream = connect(port);
    echo_roundtrip(&mut stream, b"hello, live view\n");
    // The connection stays open: the line must come from a flush, not
    // from the end of the input.
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "hello, live view") {
        match follower.next_line_by(deadline) {
            Some(line) => seen.push(line),
            None => panic!("follow showed no data line; it showed: {seen:?}"),
        }
    }
    assert!(
        seen[0].starts_with("== ") && seen[0].contains(", opened 20"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with(">> ")), "{seen:?}");
    drop(stream);
    proxy.stop();
    let status = follower.wait_exit(DEADLINE);
    assert!(status.success(), "follow at the end of the input: {status}");
}

pub(crate) fn tshark(args: &[&str]) -> String {
    let output = match Command::new("tshark")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "tshark is not installed: the pcap tests need it. Install it with \
             `apt-get install tshark` (.ci/run does)"
        ),
        Err(e) => panic!("tshark: {e}"),
    };
    assert!(
        output.status.success(),
        "tshark {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tshark output is UTF-8")
}

/// `-z follow,tcp,raw,N` output: node 0's bytes, node 1's bytes.
fn followed_raw(text: &str, stream: u64) -> (Vec<u8>, Vec<u8>) {
    let filter = format!("Filter: tcp.stream eq {stream}\n");
    let start = text
        .find(&filter)
        .unwrap_or_else(|| panic!("no follow of stream {stream}:\n{text}"));
    let body = &text[start..];
    let body = &body[body.find("Node 1:").expect("Node 1")..];
    let body = &body[body.find('\n').expect("line end") + 1..];
    let (mut node0, mut node1) = (Vec::new(), Vec::new());
    for line in body.lines() {
        if line.starts_with("=====") {
            break;
        }
        let (to, hex) = match line.strip_prefix('\t') {
            Some(hex) => (&mut node1, hex),
            None => (&mut node0, line),
        };
        for i in (0..hex.len()).step_by(2) {
            to.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
        }
    }
    (node0, node1)
}

#[test]
fn pcap_is_the_logged_tcp_streams_for_tshark() {
    let cap = capture();
    let dir = cap.dir();
    let tmp = TempDir::new("pcap");
    let file = path_str(&tmp.join("capture.pcapng"));
    let ran = run(&["pcap", "-o", &file, &dir]).ok("pcap");
    assert_eq!(ran.stderr, "");
    let bytes = fs::read(&file).expect("read pcapng");
    let says = b"Synthesized by rawprox";
    assert!(
        bytes.windows(says.len()).any(|w| w == says),
        "the file says it is synthesized"
    );

    // Streams by the first packet's comment, which holds the ConnID.
    let frames = tshark(&[
        "-r",
        &file,
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "frame.comment",
    ]);
    let mut stream_of: HashMap<String, u64> = HashMap::new();
    let mut first_seen: Vec<u64> = Vec::new();
    for line in frames.lines() {
        let (stream, comment) = line.split_once('\t').unwrap_or((line, ""));
        let stream: u64 = stream
            .parse()
            .unwrap_or_else(|_| panic!("stream number: {line}"));
        let first = !first_seen.contains(&stream);
        if first {
            first_seen.push(stream);
            let id = comment
                .strip_prefix("ConnID ")
                .and_then(|c| c.split(' ').next())
                .unwrap_or_else(|| {
                    panic!("first packet of stream {stream} without its ConnID: {line:?}")
                });
            stream_of.insert(id.to_string(), stream);
        } else {
            assert_eq!(comment, "", "a comment past the first packet: {line}");
        }
    }
    assert_eq!(
        stream_of.len(),
        cap.conns.len(),
        "one TCP stream per connection"
    );

    // Follow each stream: exactly the bytes each way.
    let mut args = vec!["-r".to_string(), file.clone(), "-q".into()];
    for conn in &cap.conns {
        let stream = stream_of[&conn.conn_id];
        args.extend(["-z".into(), format!("follow,tcp,raw,{stream}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let followed = tshark(&args);
    for conn in &cap.conns {
        let (client, target) = followed_raw(&followed, stream_of[&conn.conn_id]);
        assert_bytes_eq(
            &client,
            &conn.sent,
            &format!("tshark follow of {}, client", conn.what),
        );
        assert_bytes_eq(
            &target,
            &conn.received,
            &format!("tshark follow of {}, target", conn.what),
        );
    }

    // Expert analysis, with checksums checked: nothing missing, unseen, out
    // of order, retransmitted, or with a bad checksum.
    let expert = tshark(&[
        "-r",
        &file,
        "-q",
        "-z",
        "expert",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
    ]);
    assert!(
        expert.contains("Connection establish request (SYN)"),
        "{expert}"
    );
    for bad in [
        "not captured",
        "unseen",
        "out-of-order",
        "checksum",
        "retransmission",
        "lost",
        "dup ack",
    ] {
        assert!(
            !expert.to_lowercase().contains(bad),
            "expert says {bad}:\n{expert}"
        );
    }

    // IPv6 as IPv6, the others as IPv4.
    for conn in &cap.conns {
        let stream = stream_of[&conn.conn_id];
        let filter = format!("tcp.stream == {stream}");
        let sources = tshark(&[
            "-r", &file, "-Y", &filter, "-T", "fields", "-e", "ip.src", "-e", "ipv6.src",
        ]);
        let v6 = conn.what == "ipv6";
        assert!(
            !sources.is_empty()
                && sources.lines().all(|l| if v6 {
                    l == "\t::1"
                } else {
                    l == "127.0.0.1\t" || l.starts_with("198.18.")
                }),
            "{}: sources {sources:?}",
            conn.what
        );
    }

    // The stand-in for `localhost` resolves back to it (from the file's
    // name resolution block, no lookups).
    let binary = cap.conn("binary");
    let names = tshark(&[
        "-r",
        &file,
        "-N",
        "n",
        "-o",
        "nameres.use_external_name_resolver:FALSE",
        "-Y",
        &format!(
            "tcp.stream == {} && tcp.flags.syn == 1 && tcp.flags.ack == 0",
            stream_of[&binary.conn_id]
        ),
        "-T",
        "fields",
        "-e",
        "ip.dst",
        "-e",
        "ip.dst_host",
    ]);
    let (addr, name) = names
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("{names:?}"));
    let addr: std::net::Ipv4Addr = addr.parse().expect("an IPv4 stand-in");
    assert_eq!(
        &addr.octets()[..1],
        &[198],
        "stand-in {addr} in 198.18.0.0/15"
    );
    assert_eq!(
        addr.octets()[1] & 0xFE,
        18,
        "stand-in {addr} in 198.18.0.0/15"
    );
    assert_eq!(name, "localhost");

    // HTTP is dissected as HTTP.
    let http = tshark(&[
        "-r",
        &file,
        "-Y",
        "http.request",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "http.request.uri",
    ]);
    assert_eq!(
        http.trim_end(),
        format!("{}\t/hello", stream_of[&cap.conn("http").conn_id])
    );

    // --port: one rule's connections only.
    let one = path_str(&tmp.join("one.pcapng"));
    let port = binary.listen_port.to_string();
    run(&["pcap", "--port", &port, "-o", &one, &dir]).ok("pcap --port");
    let streams = tshark(&["-r", &one, "-T", "fields", "-e", "tcp.stream"]);
    assert!(
        !streams.is_empty() && streams.lines().all(|l| l == "0"),
        "one stream: {streams}"
    );
}

#[test]
fn bad_lines_are_skipped_and_counted_on_one_line() {
    let cap = capture();
    let http = cap.conn("http");
    let mut lines: Vec<String> = dir_lines(&cap.dir).into_iter().map(|(_, l)| l).collect();
    // A copy of one of the HTTP connection's data lines with a broken escape.
    let data_key = format!("\"ConnID\":\"{}\",\"data\":\"", http.conn_id);
    let broken = lines
        .iter()
        .find(|l| l.contains(&data_key))
        .expect("an HTTP data line")
        .replacen(&data_key, &format!("{data_key}%G"), 1);
    let last = lines.last().expect("a line").clone();
    lines.insert(2, "this is not JSON".into());
    lines.insert(4, r#"{"level":"info","msg":"another tool's line"}"#.into());
    lines.insert(6, broken);
    let tmp = TempDir::new("bad");
    let file = tmp.join("mixed.ndjson");
    let mut text = lines.join("\n") + "\n";
    text.push_str(&last[..last.len() / 2]); // a truncated last line
    fs::write(&file, text).expect("write mixed log");
    let file = path_str(&file);
    let want = format!("Skipped 3 unreadable lines; the first is {file} line 3: not JSON\n");
    let ran = run(&["extract", &http.conn_id, "--side", "client", &file]).ok("extract");
    assert_bytes_eq(&ran.stdout, &http.sent, "extract past bad lines");
    assert_eq!(ran.stderr, want);
    let ran = run(&["list", "--json", &file]).ok("list");
    assert_eq!(ran.text().lines().count(), cap.conns.len());
    assert_eq!(ran.stderr, want);
    let out = path_str(&tmp.join("x.pcapng"));
    assert_eq!(run(&["pcap", "-o", &out, &file]).ok("pcap").stderr, want);
    assert_eq!(run(&["follow", &file]).ok("follow").stderr, want);

    // An input that cannot be opened: one Error line, exit 1, no output.
    let missing = path_str(&tmp.join("missing.ndjson"));
    for cmd in ["list", "follow"] {
        let ran = run(&[cmd, &file, &missing]);
        assert_eq!(ran.status.code(), Some(1), "{cmd}");
        assert!(ran.stdout.is_empty(), "{cmd}: no output");
        assert_eq!(ran.stderr.lines().count(), 1, "{cmd}: {}", ran.stderr);
        assert!(
            ran.stderr
                .starts_with(&format!("Error: cannot open {missing}")),
            "{}",
            ran.stderr
        );
    }
    // Nothing at all on stdin, and bytes that are no log: exit 0.
    let ran = run_with(&["list"], Some(Vec::new()), &[]).ok("list of nothing");
    assert_eq!(ran.text().lines().count(), 1, "the header only");
    let ran = run_with(&["follow"], Some(vec![0xFF, 0, b'\n', b'{']), &[]).ok("follow of noise");
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr
            .starts_with("Skipped 2 unreadable lines; the first is <stdin> line 1"),
        "{}",
        ran.stderr
    );
}

/// SPEC §9: a capture whose lines end in CRLF (saved by a Windows editor)
/// reads exactly as the one it was made from: every subcommand writes the
/// same bytes, and skips nothing.
#[test]
fn crlf_line_ends_read_the_same() {
    let cap = capture();
    let tmp = TempDir::new("crlf");
    for file in cap.files() {
        let path = Path::new(&file);
        let text = fs::read_to_string(path).expect("read capture file");
        assert!(!text.contains('\r'), "{file} has CR already");
        let crlf = text.replace('\n', "\r\n");
        fs::write(tmp.join(&path.file_name().unwrap().to_string_lossy()), crlf)
            .expect("write CRLF copy");
    }
    let lf = cap.dir();
    let crlf = path_str(tmp.path());
    let http = &cap.conn("http").conn_id;
    let pcap_lf = path_str(&tmp.join("lf.pcapng"));
    let pcap_crlf = path_str(&tmp.join("crlf.pcapng"));
    let cases: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--json"],
        vec!["follow"],
        vec!["follow", http],
        vec!["extract", http],
        vec!["extract", http, "--side", "target"],
    ];
    for args in cases {
        let want = run(&[&args[..], &[&lf]].concat()).ok("LF");
        let got = run(&[&args[..], &[&crlf]].concat()).ok("CRLF");
        assert_eq!(got.stderr, "", "{args:?}: nothing skipped");
        assert!(!want.stdout.is_empty(), "{args:?}: some output");
        assert_bytes_eq(&got.stdout, &want.stdout, &format!("{args:?} on CRLF"));
    }
    run(&["pcap", "-o", &pcap_lf, &lf]).ok("pcap LF");
    let ran = run(&["pcap", "-o", &pcap_crlf, &crlf]).ok("pcap CRLF");
    assert_eq!(ran.stderr, "", "pcap: nothing skipped");
    let want = fs::read(&pcap_lf).expect("LF pcapng");
    assert_bytes_eq(
        &fs::read(&pcap_crlf).expect("CRLF pcapng"),
        &want,
        "pcap on CRLF",
    );
}

#[test]
fn help_names_the_subcommands() {
    let help = Proxy::run(["--help"]);
    let text = help.stdout_lines.join("\n");
    for cmd in ["list", "follow", "extract", "pcap"] {
        assert!(
            text.contains(&format!("rawprox.exe {cmd} ")),
            "--help names {cmd}"
        );
    }
    // Each subcommand has its own help, explaining its options (SPEC §9).
    for (cmd, usage, option) in [
        ("list", "list [--port N] [--json] [INPUT...]", "--json "),
        (
            "follow",
            "follow [CONNID...] [--port N] [INPUT...]",
            "--port N ",
        ),
        (
            "extract",
            "extract CONNID [--side client|target] [-o FILE] [INPUT...]",
            "--side client|target ",
        ),
        (
            "pcap",
            "pcap [--port N] -o FILE.pcapng [INPUT...]",
            "-o FILE ",
        ),
    ] {
        let ran = run(&[cmd, "--help"]).ok("SUBCOMMAND --help");
        let text = ran.text();
        assert!(
            text.starts_with(&format!("Usage: rawprox.exe {usage}\n")),
            "{text}"
        );
        assert!(text.contains(&format!("\n  {option}")), "{cmd}: {text}");
    }
    let ran = run(&["list", "--bogus"]);
    assert_eq!(ran.status.code(), Some(1));
    assert!(
        ran.stderr.starts_with("Error: unknown option '--bogus'"),
        "{}",
        ran.stderr
    );
}

/// SPEC §9: a ConnID named to `follow` that the input does not hold is an
/// error, as it is for `extract`.
#[test]
fn follow_of_an_unknown_conn_id_is_an_error() {
    let dir = capture().dir();
    for cmd in ["follow", "extract"] {
        let ran = run(&[cmd, "ZZZZZZZZ", &dir]);
        assert_eq!(ran.status.code(), Some(1), "{cmd}: {}", ran.stderr);
        assert!(
            ran.stderr
                .starts_with("Error: no connection ZZZZZZZZ in the input"),
            "{cmd}: {}",
            ran.stderr
        );
    }
}

/// SPEC §9: with no INPUT and stdin a terminal, a subcommand says on stderr
/// that it reads stdin (and how to end it) instead of waiting mutely.
#[test]
fn a_subcommand_reading_a_terminal_says_so() {
    let (mut master, slave) = openpty();
    let mut cmd = rawprox_command();
    cmd.arg("list")
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Proxy::spawn(cmd);
    let deadline = Instant::now() + DEADLINE;
    while !child
        .stderr_text()
        .starts_with("rawprox: reading a log from standard input (end it with Ctrl-D")
    {
        assert!(
            Instant::now() < deadline,
            "nothing said; stderr: {}",
            child.stderr_text()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Ctrl-D at the start of a line ends the input: an empty list.
    master.write_all(b"\x04").expect("write Ctrl-D");
    let status = child.wait_exit(DEADLINE);
    assert!(status.success(), "{status}: {}", child.stderr_text());
}

/// SPEC §9: `list` rows are in open order across all inputs, whatever order
/// the inputs are named in.
#[test]
fn list_rows_are_in_open_order_across_inputs() {
    let cap = capture();
    let mut files = cap.files();
    assert!(files.len() > 1, "the capture spans several files");
    let whole = run(&["list", "--json", &cap.dir()]).ok("list DIR").text();
    files.reverse();
    let mut args = vec!["list", "--json"];
    args.extend(files.iter().map(String::as_str));
    let reversed = run(&args).ok("list FILES reversed").text();
    assert_eq!(reversed, whole);
}
