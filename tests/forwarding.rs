//! Forwarding (SPEC §2 rules, §3): several rules at once, where rules listen
//! (all IPv4 interfaces, or the bind prefix), IPv6 targets, byte-exact large
//! payloads both ways, half-close in both directions, backpressure against a
//! slow reader with bounded memory, unreachable and unresolvable targets
//! (client closed, nothing logged), and accept errors that never spin.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    DEADLINE, Proxy, Rng, TempDir, assert_bytes_eq, clock_ticks_per_second, connect, connect_to,
    cpu_ticks, data_between, echo_once, echo_roundtrip, echo_server, events, expect_closed,
    free_port, lowest_free_fd, parse_lines, path_str, read_to_end, rss_kib, rule, serve,
    set_fd_limit, wait_listening,
};

#[test]
fn several_rules_forward_at_once() {
    let targets: Vec<_> = (0..3).map(|_| echo_server("127.0.0.1")).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut args = vec!["--flush-millis".to_string(), "0".to_string()];
    args.extend(ports.iter().zip(&targets).map(|(p, t)| rule(*p, t.port())));
    let mut proxy = Proxy::start(&args);
    for p in &ports {
        wait_listening(*p);
    }

    // One client per rule, all at the same time, each with its own payload.
    let clients: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            thread::spawn(move || {
                let data = Rng::new(100 + i as u64).bytes(256 * 1024);
                let mut stream = connect(p);
                let local = stream.local_addr().unwrap();
                echo_roundtrip(&mut stream, &data);
                stream.shutdown(Shutdown::Write).unwrap();
                assert!(read_to_end(&mut stream).is_empty());
                (local, data)
            })
        })
        .collect();
    let results: Vec<(SocketAddr, Vec<u8>)> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    let values = parse_lines(&proxy.stop());
    assert_eq!(events(&values, "open").len(), 3, "one open per connection");
    assert_eq!(
        events(&values, "close").len(),
        3,
        "one close per connection"
    );
    for (i, (client, data)) in results.iter().enumerate() {
        let from = client.to_string();
        let to = format!("127.0.0.1:{}", targets[i].port());
        let open = values
            .iter()
            .find(|v| v["event"] == "open" && v["from"] == from.as_str())
            .unwrap_or_else(|| panic!("no open line from {from}"));
        assert_eq!(open["to"], to.as_str(), "open of rule {i}");
        assert_eq!(open["listen_port"], ports[i], "open of rule {i}");
        assert_bytes_eq(
            &data_between(&values, &from, &to),
            data,
            "logged client data",
        );
        assert_bytes_eq(
            &data_between(&values, &to, &from),
            data,
            "logged reply data",
        );
    }
}

#[test]
fn plain_rule_listens_on_all_ipv4_interfaces() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, echo.port())]);
    let addrs = wait_listening(p);
    assert_eq!(
        addrs,
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        "listening addresses of port {p}"
    );
    echo_once(p, b"all interfaces");
    proxy.stop();
}

#[test]
fn bind_prefix_ipv4_listens_on_that_address_only() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start([
        "--flush-millis",
        "0",
        &format!("127.0.0.1:{p}:127.0.0.1:{}", echo.port()),
    ]);
    let addrs = wait_listening(p);
    assert_eq!(
        addrs,
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        "listening addresses of port {p}"
    );
    let client = echo_once(p, b"bound to loopback");
    let open = proxy.wait_open(client);
    assert_eq!(open["listen_port"], p);
    assert_eq!(open["to"], format!("127.0.0.1:{}", echo.port()).as_str());
    proxy.stop();
}

#[test]
fn bind_prefix_ipv6_listens_on_that_address_only() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start([
        "--flush-millis",
        "0",
        &format!("[::1]:{p}:127.0.0.1:{}", echo.port()),
    ]);
    let addrs = wait_listening(p);
    assert_eq!(
        addrs,
        vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        "listening addresses of port {p}"
    );

    let mut stream = connect_to(SocketAddr::from((Ipv6Addr::LOCALHOST, p)));
    let local = stream.local_addr().unwrap();
    echo_roundtrip(&mut stream, b"over ipv6");
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());

    let open = proxy.wait_open(local);
    assert!(
        open["from"].as_str().unwrap().starts_with("[::1]:"),
        "IPv6 client written [addr]:port"
    );
    assert_eq!(open["listen_port"], p);
    proxy.stop();
}

#[test]
fn ipv6_target_in_brackets() {
    let echo = echo_server("::1");
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &format!("{p}:[::1]:{}", echo.port())]);
    wait_listening(p);
    let data = Rng::new(7).bytes(100_000);
    let client = echo_once(p, &data);
    let open = proxy.wait_open(client);
    let to = format!("[::1]:{}", echo.port());
    assert_eq!(open["to"], to.as_str());
    let values = parse_lines(&proxy.stop());
    assert_bytes_eq(
        &data_between(&values, &client.to_string(), &to),
        &data,
        "logged to [::1]",
    );
}

#[test]
fn large_payloads_are_byte_exact_both_ways() {
    const SIZE: usize = 3 * 1024 * 1024;
    let upload = Rng::new(1).bytes(SIZE);
    let download = Arc::new(Rng::new(2).bytes(SIZE));

    // The target writes its payload while it reads the client's, then sends FIN.
    let (received_tx, received_rx) = mpsc::channel();
    let reply = download.clone();
    let target = serve("127.0.0.1", move |mut stream: TcpStream| {
        let mut writer = stream.try_clone().unwrap();
        let reply = reply.clone();
        let sender = thread::spawn(move || {
            writer.write_all(&reply).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        received_tx.send(got).unwrap();
    });

    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, target.port())]);
    wait_listening(p);

    let mut stream = connect(p);
    let local = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = upload.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_to_end(&mut stream);
    sender.join().expect("client writer");
    assert_bytes_eq(&got, &download, "target to client");
    let at_target = received_rx
        .recv_timeout(DEADLINE)
        .expect("target got the upload");
    assert_bytes_eq(&at_target, &upload, "client to target");

    let values = parse_lines(&proxy.stop());
    let (from, to) = (local.to_string(), format!("127.0.0.1:{}", target.port()));
    assert_bytes_eq(&data_between(&values, &from, &to), &upload, "logged upload");
    assert_bytes_eq(
        &data_between(&values, &to, &from),
        &download,
        "logged download",
    );
    assert_eq!(events(&values, "close").len(), 1, "exactly one close");
}

#[test]
fn half_close_by_client_still_gets_the_reply() {
    const REPLY: usize = 2 * 1024 * 1024;
    let request = Rng::new(3).bytes(100_000);
    let reply = Arc::new(Rng::new(4).bytes(REPLY));

    // The target reads the whole request (to the client's FIN), then replies and closes.
    let (request_tx, request_rx) = mpsc::channel();
    let body = reply.clone();
    let target = serve("127.0.0.1", move |mut stream: TcpStream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        request_tx.send(got).unwrap();
        stream.write_all(&body).unwrap();
    });

    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, target.port())]);
    wait_listening(p);

    let mut stream = connect(p);
    let local = stream.local_addr().unwrap();
    stream.write_all(&request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut stream);
    assert_bytes_eq(&got, &reply, "reply after the client's FIN");
    let at_target = request_rx
        .recv_timeout(DEADLINE)
        .expect("target read the request");
    assert_bytes_eq(&at_target, &request, "request");

    let values = parse_lines(&proxy.stop());
    let (from, to) = (local.to_string(), format!("127.0.0.1:{}", target.port()));
    let closes = events(&values, "close");
    assert_eq!(closes.len(), 1, "exactly one close: {closes:?}");
    assert_eq!(closes[0]["from"], from.as_str(), "the client ended first");
    assert_eq!(closes[0]["to"], to.as_str());
    assert_bytes_eq(&data_between(&values, &to, &from), &reply, "logged reply");
}

#[test]
fn half_close_by_target_still_takes_the_upload() {
    let greeting = Rng::new(5).bytes(500_000);
    let upload = Rng::new(6).bytes(1_000_000);

    // The target sends its greeting and FIN first, then reads the client to EOF.
    let (upload_tx, upload_rx) = mpsc::channel();
    let hello = greeting.clone();
    let target = serve("127.0.0.1", move |mut stream: TcpStream| {
        stream.write_all(&hello).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        upload_tx.send(got).unwrap();
    });

    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, target.port())]);
    wait_listening(p);

    let mut stream = connect(p);
    let local = stream.local_addr().unwrap();
    let got = read_to_end(&mut stream);
    assert_bytes_eq(&got, &greeting, "greeting up to the target's FIN");
    stream.write_all(&upload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let at_target = upload_rx
        .recv_timeout(DEADLINE)
        .expect("target read the upload");
    assert_bytes_eq(&at_target, &upload, "upload after the target's FIN");

    let values = parse_lines(&proxy.stop());
    let (from, to) = (local.to_string(), format!("127.0.0.1:{}", target.port()));
    let closes = events(&values, "close");
    assert_eq!(closes.len(), 1, "exactly one close: {closes:?}");
    assert_eq!(closes[0]["from"], to.as_str(), "the target ended first");
    assert_eq!(closes[0]["to"], from.as_str());
    assert_bytes_eq(&data_between(&values, &from, &to), &upload, "logged upload");
}

#[test]
fn slow_reader_gets_backpressure_and_memory_stays_bounded() {
    const TOTAL: u64 = 64 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    const SEED: u64 = 99;
    let written = Arc::new(AtomicU64::new(0));

    // The target writes TOTAL bytes as fast as it can, then closes.
    let counter = written.clone();
    let target = serve("127.0.0.1", move |mut stream: TcpStream| {
        let mut rng = Rng::new(SEED);
        while counter.load(Ordering::SeqCst) < TOTAL {
            if stream.write_all(&rng.letters(CHUNK)).is_err() {
                return;
            }
            counter.fetch_add(CHUNK as u64, Ordering::SeqCst);
        }
    });

    let tmp = TempDir::new("backpressure");
    let p = free_port();
    let dir = format!("@{}", path_str(&tmp.join("logs")));
    let mut proxy = Proxy::start(["--flush-millis", "100", &dir, &rule(p, target.port())]);
    wait_listening(p);
    let pid = proxy.pid();
    let rss_before = rss_kib(pid);

    // Connect and do not read: wait until the target is stalled (no progress for
    // half a second) or has written everything (no backpressure at all).
    let mut stream = connect(p);
    let deadline = Instant::now() + 2 * DEADLINE;
    let (mut last, mut still_since, mut rss_max) = (0, Instant::now(), rss_before);
    loop {
        thread::sleep(Duration::from_millis(50));
        rss_max = rss_max.max(rss_kib(pid));
        let now = written.load(Ordering::SeqCst);
        if now != last || now == 0 {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() >= Duration::from_millis(500) {
            break;
        }
        if now >= TOTAL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "target neither stalled nor finished; wrote {now}"
        );
    }
    let stalled_at = written.load(Ordering::SeqCst);
    let grown_kib = rss_max.saturating_sub(rss_before);
    assert!(
        stalled_at < TOTAL,
        "the target wrote all {TOTAL} bytes to a client that reads nothing: no backpressure"
    );
    assert!(
        grown_kib < 64 * 1024,
        "proxy RSS grew by {grown_kib} KiB while the client did not read (before {rss_before} KiB)"
    );

    // Now read everything: byte-exact.
    let mut expected = Rng::new(SEED);
    let mut chunk = vec![0u8; CHUNK];
    for i in 0..TOTAL / CHUNK as u64 {
        stream
            .read_exact(&mut chunk)
            .unwrap_or_else(|e| panic!("reading chunk {i} of the slow reader: {e}"));
        assert_bytes_eq(&chunk, &expected.letters(CHUNK), &format!("chunk {i}"));
    }
    assert!(read_to_end(&mut stream).is_empty(), "bytes past the end");
    drop(stream);
    proxy.stop();
}

/// A rule whose target cannot be reached: the client is closed, nothing is
/// logged, and the next good connection's open is the first line.
fn assert_unreachable_target_not_logged(target: &str) {
    let echo = echo_server("127.0.0.1");
    let (bad, good) = (free_port(), free_port());
    let mut proxy = Proxy::start([
        "--flush-millis".to_string(),
        "0".to_string(),
        format!("{bad}:{target}"),
        rule(good, echo.port()),
    ]);
    wait_listening(bad);
    wait_listening(good);

    let mut stream = connect(bad);
    let _ = stream.write_all(b"anyone there?");
    expect_closed(&mut stream, &format!("client of unreachable {target}"));

    let client = echo_once(good, b"reachable");
    let lines = proxy.stop();
    let values = parse_lines(&lines);
    assert!(!values.is_empty(), "no lines at all");
    assert_eq!(values[0]["event"], "open", "first line: {}", lines[0]);
    assert_eq!(
        values[0]["from"],
        client.to_string().as_str(),
        "first line: {}",
        lines[0]
    );
    assert_eq!(
        events(&values, "open").len(),
        1,
        "only the reachable connection is logged"
    );
    assert!(
        values.iter().all(|v| v["listen_port"] != bad),
        "an open line for the unreachable target"
    );
}

/// SPEC §3: an unreachable target is said on stderr (the rule, the target,
/// the reason), at most once a second per rule, with a count of the ones
/// held back.
#[test]
fn an_unreachable_target_is_said_on_stderr_at_most_once_a_second() {
    let dead = free_port();
    let bad = free_port();
    let started = Instant::now();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(bad, dead)]);
    wait_listening(bad);
    for _ in 0..5 {
        let mut stream = connect(bad);
        expect_closed(&mut stream, "client of a refused target");
    }
    proxy.stop();
    let seconds = started.elapsed().as_secs();
    let stderr = proxy.stderr_text();
    let lines: Vec<&str> = stderr.lines().collect();
    let want = format!("rawprox: {bad} -> 127.0.0.1:{dead}: connection refused");
    assert!(!lines.is_empty(), "nothing said on stderr");
    assert!(lines.iter().all(|l| l.starts_with(&want)), "{stderr}");
    assert!(
        lines.len() as u64 <= 1 + seconds,
        "{} lines in {seconds} s: {stderr}",
        lines.len()
    );
}

#[test]
fn refused_target_closes_client_and_logs_nothing() {
    // A port nobody listens on.
    let refused = free_port();
    assert_unreachable_target_not_logged(&format!("127.0.0.1:{refused}"));
}

#[test]
fn unresolvable_target_closes_client_and_logs_nothing() {
    // A DNS label holds at most 63 bytes (RFC 1035), so the C library
    // refuses this name itself, asking no name server: the test sends no
    // packet off the machine (`.ci/run` runs the tests with loopback only).
    let name = format!("{}.invalid", "a".repeat(64));
    assert_unreachable_target_not_logged(&format!("{name}:80"));
}

#[test]
fn accept_errors_do_not_spin() {
    const LIMIT: u64 = 64;
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut cmd = Proxy::command(["--flush-millis", "0", &rule(p, echo.port())]);
    // Start with a low limit, soft and hard (rawprox raises soft to hard).
    // SAFETY: setrlimit is async-signal-safe; the closure touches no other state.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT as _,
                rlim_max: LIMIT as _,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut proxy = Proxy::spawn(cmd);
    wait_listening(p);
    let pid = proxy.pid();

    // A few served connections, then no descriptor left: the limit is pinned at
    // the lowest free descriptor number, so exhaustion lasts (nothing the
    // proxy can close would free one) instead of depending on timing...
    let mut served: Vec<TcpStream> = (0..3).map(|_| connect(p)).collect();
    for stream in &mut served {
        echo_roundtrip(stream, b"x");
    }
    set_fd_limit(pid, lowest_free_fd(pid));
    // ...then queue clients it cannot accept.
    let waiting: Vec<TcpStream> = (0..100).map(|_| connect(p)).collect();

    let deadline = Instant::now() + DEADLINE;
    let mentions_error = |text: &str| {
        let text = text.to_lowercase();
        text.contains("too many open files")
            || text.contains("emfile")
            || text.contains("os error 24")
    };
    while !mentions_error(&proxy.stderr_text()) {
        assert!(
            Instant::now() < deadline,
            "stderr does not report the accept error: {:?}",
            proxy.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }

    let window = Duration::from_millis(1500);
    let before = cpu_ticks(pid);
    thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    let hz = clock_ticks_per_second();
    assert!(
        used < hz / 2,
        "proxy used {used} ticks ({hz}/s) of CPU in {window:?} while out of descriptors"
    );

    // The connections it has are still served.
    for stream in &mut served {
        echo_roundtrip(stream, b"still served");
    }

    drop(waiting);
    drop(served);
    let data = Rng::new(24).bytes(64 * 1024);
    echo_once(p, &data);
    proxy.stop();
}
