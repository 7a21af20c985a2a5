//! Faults from peers and destinations (SPEC §3, §5, §8): a target that
//! resets, a target that never answers the SYN (the 10 s connect timeout,
//! with other traffic unaffected meanwhile), a failing log directory next to
//! a healthy one, and `--max-buffer-mb` against a slow stdout reader.
//! (Refused and unresolvable targets, descriptor exhaustion, a removed log
//! directory and a closed stdout are covered in forwarding, destinations
//! and shutdown.)

use crate::util::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Closes `stream` with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    set_linger_zero(&stream);
    drop(stream);
}

#[test]
fn a_target_reset_closes_the_client_and_logs_one_close_from_the_target() {
    // Reads a little, then resets.
    let target = serve("127.0.0.1", |mut stream| {
        let mut buf = [0u8; 5];
        let _ = stream.read_exact(&mut buf);
        let _ = stream.write_all(b"reply before the reset");
        thread::sleep(Duration::from_millis(50));
        reset(stream);
    });
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, target.port())]);
    wait_listening(p);
    let mut client = connect(p);
    let from = client.local_addr().unwrap().to_string();
    client.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got); // ends with EOF or a reset
    assert_eq!(got, b"reply before the reset");
    let target_name = format!("127.0.0.1:{}", target.port());
    let close = proxy.wait_line("the close", |v| v["event"] == "close");
    assert_eq!(
        (close["from"].as_str(), close["to"].as_str()),
        (Some(target_name.as_str()), Some(from.as_str()))
    );
    let lines = parse_lines(&proxy.stop());
    assert_eq!(events(&lines, "open").len(), 1);
    assert_eq!(events(&lines, "close").len(), 1);
    assert_eq!(data_between(&lines, &from, &target_name), b"hello");
    assert_eq!(
        data_between(&lines, &target_name, &from),
        b"reply before the reset"
    );
}

#[test]
fn a_client_reset_mid_stream_closes_the_target_side() {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let target = serve("127.0.0.1", move |mut stream| {
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got); // EOF or reset once the proxy closes us
        let _ = seen_tx.send(got.len());
    });
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, target.port())]);
    wait_listening(p);
    let mut client = connect(p);
    let from = client.local_addr().unwrap().to_string();
    client.write_all(&vec![b'x'; 100_000]).unwrap();
    proxy.wait_line("some data", |v| v.get("data").is_some());
    reset(client);
    let close = proxy.wait_line("the close", |v| v["event"] == "close");
    assert_eq!(
        close["from"],
        from.as_str(),
        "the failing side is the client"
    );
    let len = seen_rx
        .recv_timeout(DEADLINE)
        .expect("the target side is closed too");
    assert!(len <= 100_000);
    let lines = parse_lines(&proxy.stop());
    assert_eq!(events(&lines, "close").len(), 1);
}

/// A listener on 127.0.0.1 whose accept queue is full: further SYNs get no
/// answer, so a connect to it hangs. Returns the socket (keep it) and its
/// address, and the connections that fill the queue.
fn unanswering_listener() -> (OwnedFd, SocketAddr, Vec<TcpStream>) {
    // SAFETY: plain socket calls on a fd we own; addresses are sized correctly.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let owned = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut bound_len = len;
        assert_eq!(
            libc::getsockname(
                fd,
                (&mut bound as *mut libc::sockaddr_in).cast(),
                &mut bound_len
            ),
            0
        );
        let port = u16::from_be(bound.sin_port);
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&target, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => return (owned, target, fillers), // full: SYNs go unanswered
            }
        }
        panic!("the accept queue never filled");
    }
}

#[test]
fn a_target_that_never_answers_times_out_after_10s_and_stalls_nothing() {
    let (_listener, silent, _fillers) = unanswering_listener();
    let echo = echo_server("127.0.0.1");
    let (p_silent, p_echo) = (free_port(), free_port());
    let mut proxy = Proxy::start([
        "--flush-millis",
        "0",
        &rule(p_silent, silent.port()),
        &rule(p_echo, echo.port()),
    ]);
    wait_listening(p_silent);
    wait_listening(p_echo);
    let started = Instant::now();
    let mut waiting = connect(p_silent);
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Meanwhile the other rule is served at once.
    let data = Rng::new(9).bytes(200_000);
    let client = echo_once(p_echo, &data);
    proxy.wait_open(client);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "other traffic waited on the connect"
    );

    let mut buf = [0u8; 16];
    let n = waiting.read(&mut buf).unwrap_or(0);
    let elapsed = started.elapsed();
    assert_eq!(n, 0, "closed without data");
    assert!(
        elapsed >= Duration::from_secs(9),
        "given up after only {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "given up only after {elapsed:?}"
    );
    let lines = parse_lines(&proxy.stop());
    let opens = events(&lines, "open");
    assert_eq!(
        opens.len(),
        1,
        "only the served connection logged: {opens:?}"
    );
    assert_eq!(opens[0]["listen_port"], p_echo);
}

#[test]
fn a_failing_directory_ends_the_run_and_the_other_gets_every_line() {
    let echo = echo_server("127.0.0.1");
    let tmp = TempDir::new("fail-one-of-two");
    let (bad, good) = (tmp.join("bad"), tmp.join("good"));
    let (bad_s, good_s) = (path_str(&bad), path_str(&good));
    let p = free_port();
    let mut proxy = Proxy::start([
        "--mcp-port",
        "0",
        "--flush-millis",
        "100",
        &format!("@{bad_s}"),
        &rule(p, echo.port()),
    ]);
    let ready = proxy.wait_line("mcp-ready", |v| v["event"] == "mcp-ready");
    let endpoint = ready["endpoint"].as_str().unwrap().to_owned();
    let port: u16 = endpoint
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"start-logging","arguments":{{"directory":"{good_s}"}}}}}}"#
    );
    let mut http = connect(port);
    write!(
        http,
        "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let reply = String::from_utf8(read_to_end(&mut http)).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("Logging to directory"),
        "{reply}"
    );
    wait_listening(p);

    let first = Rng::new(1).bytes(30_000);
    let c1 = echo_once(p, &first).to_string();
    wait_dir_line(&bad, "the first close", |v| {
        v["event"] == "close" && v["from"] == c1.as_str()
    });
    std::fs::remove_dir_all(&bad).unwrap();
    std::fs::write(&bad, b"a file where the directory was").unwrap();
    let second = Rng::new(2).bytes(30_000);
    let c2 = echo_once(p, &second).to_string();

    let status = proxy.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1));
    let stderr = proxy.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: ") && stderr.contains(&bad_s),
        "{stderr}"
    );

    let lines: Vec<Value> = dir_lines(Path::new(&good))
        .into_iter()
        .map(|(_, l)| check_line(&l))
        .collect();
    assert_eq!(lines.first().unwrap()["event"], "start-logging");
    assert_eq!(
        lines.last().unwrap()["event"],
        "stop-logging",
        "the good directory got its last line"
    );
    let target = format!("127.0.0.1:{}", echo.port());
    assert_eq!(data_between(&lines, &c2, &target), second);
    assert_eq!(data_between(&lines, &target, &c2), second);
    assert_eq!(events(&lines, "open").len(), events(&lines, "close").len());
}

/// Peak resident memory of `pid` (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn max_buffer_mb_holds_memory_near_the_cap_with_a_slow_stdout_and_loses_nothing() {
    const CAP_MB: u64 = 4;
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut cmd = Proxy::command([
        "--flush-millis",
        "100",
        "--max-buffer-mb",
        &CAP_MB.to_string(),
        &rule(p, echo.port()),
    ]);
    cmd.stdin(std::process::Stdio::null());
    let (mut proxy, mut stdout) = Proxy::spawn_raw_stdout(cmd);
    wait_listening(p);
    // A slow destination: about 8 MB/s.
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            thread::sleep(Duration::from_millis(8));
        }
    });
    // 24 MiB of text each way: about 48 MiB of log lines, far over the cap.
    let payload = Rng::new(5).letters(24 * 1024 * 1024);
    let mut stream = connect(p);
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let client = stream.local_addr().unwrap().to_string();
    echo_roundtrip(&mut stream, &payload);
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());
    let peak_kib = peak_rss_kib(proxy.pid());

    proxy.signal(libc::SIGINT);
    assert_eq!(
        proxy.wait_exit(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        proxy.stderr_text()
    );
    let out = reader.join().unwrap();
    let text = String::from_utf8(out).expect("UTF-8 log");
    let lines: Vec<Value> = text.lines().map(check_line).collect();
    let target = format!("127.0.0.1:{}", echo.port());
    assert_bytes_eq(
        &data_between(&lines, &client, &target),
        &payload,
        "client bytes in the log",
    );
    assert_bytes_eq(
        &data_between(&lines, &target, &client),
        &payload,
        "target bytes in the log",
    );
    // The arena being filled and the one being written hold at most the cap
    // together; each may keep its pages, so allow twice the cap over a base.
    let limit_kib = (2 * CAP_MB + 12) * 1024;
    assert!(
        peak_kib < limit_kib,
        "peak RSS {peak_kib} KiB over {limit_kib} KiB with a {CAP_MB} MiB cap"
    );
}
