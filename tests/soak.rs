//! Soak (SPEC §3, §4, §8): 600 concurrent connections over 3 rules with
//! random binary payloads of random sizes both ways, some half-closing,
//! some reset by the client or the target, some with slow readers, some
//! sending slowly; SIGINT while those still send; logs to a directory
//! rotated every second.
//! From the logs alone, per ConnID and direction: the decoded data is
//! exactly what the receiving peer got (for connections delivered whole),
//! never more than the sender sent nor less than the receiver got (for the
//! rest), one open and one close each, and every line sits in the file of
//! its own second.

use crate::util::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CONNECTIONS: u64 = 600;
const RULES: usize = 3;
const MAX_PAYLOAD: u64 = 64 * 1024;
/// What a trickling client sends, 2 KiB every 5 ms: about 0.6 s.
const TRICKLE_PAYLOAD: usize = 256 * 1024;

/// What each connection does, by its id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Both directions at once, FIN both ways.
    Duplex,
    /// The client sends everything and its FIN, then the target answers.
    HalfClose,
    /// The client reads the answer slowly.
    SlowReader,
    /// The client sends slowly, so it is still sending when SIGINT comes.
    Trickle,
    /// The client resets halfway through its payload.
    ClientReset,
    /// The target resets after half of the client's payload.
    TargetReset,
}

fn mode(id: u64) -> Mode {
    match id % 10 {
        0 => Mode::ClientReset,
        1 => Mode::TargetReset,
        2 => Mode::SlowReader,
        3 => Mode::Trickle,
        4 => Mode::HalfClose,
        _ => Mode::Duplex,
    }
}

/// The bytes the client sends: an 8-byte id header, then random bytes.
fn up_payload(id: u64) -> Vec<u8> {
    let mut rng = Rng::new(id * 2 + 1);
    let len = match mode(id) {
        Mode::Trickle => TRICKLE_PAYLOAD,
        _ => rng.below(MAX_PAYLOAD) as usize,
    };
    let mut bytes = id.to_le_bytes().to_vec();
    bytes.extend(rng.bytes(len));
    bytes
}

/// The bytes the target sends back.
fn down_payload(id: u64) -> Vec<u8> {
    let mut rng = Rng::new(id * 2 + 2);
    let len = rng.below(MAX_PAYLOAD) as usize;
    rng.bytes(len)
}

/// What one side of a connection received.
#[derive(Default, Clone)]
struct Seen {
    received: Vec<u8>,
}

type Record = Arc<Mutex<HashMap<u64, Seen>>>;

/// Reads to EOF or an error (slowly if asked).
fn read_all(stream: &mut TcpStream, into: &mut Vec<u8>, slow: bool) {
    let mut buf = vec![0u8; if slow { 4096 } else { 65536 }];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => into.extend_from_slice(&buf[..n]),
        }
        if slow {
            thread::sleep(Duration::from_millis(3));
        }
    }
}

/// Writes in random slices from a thread, then sends the FIN.
fn write_in_slices(mut stream: TcpStream, bytes: Vec<u8>, seed: u64) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut rng = Rng::new(seed);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(16 * 1024) as usize).min(rest.len());
                if stream.write_all(&rest[..n]).is_err() {
                    return;
                }
                rest = &rest[n..];
            }
            let _ = stream.shutdown(Shutdown::Write);
        })
        .expect("spawn writer")
}

/// The target side of one connection.
fn target_handler(mut stream: TcpStream, record: &Record) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    let id = u64::from_le_bytes(header);
    let mut seen = Seen {
        received: header.to_vec(),
    };
    let up_len = up_payload(id).len();
    match mode(id) {
        Mode::TargetReset => {
            let want = up_len / 2;
            let mut buf = vec![0u8; 65536];
            while seen.received.len() < want {
                match stream.read(&mut buf[..(want - seen.received.len()).min(65536)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.received.extend_from_slice(&buf[..n]),
                }
            }
            set_linger_zero(&stream);
        }
        Mode::HalfClose => {
            read_all(&mut stream, &mut seen.received, false);
            let _ = stream.write_all(&down_payload(id));
            let _ = stream.shutdown(Shutdown::Write);
        }
        _ => {
            let writer = write_in_slices(stream.try_clone().unwrap(), down_payload(id), id + 7);
            read_all(&mut stream, &mut seen.received, false);
            let _ = writer.join();
        }
    }
    record.lock().unwrap().insert(id, seen);
}

/// The client side of one connection.
/// Connects, waits until every client is connected (so all connections are
/// open at once), then plays its mode.
fn client(id: u64, port: u16, record: &Record, trickled: &AtomicUsize, all_connected: &Barrier) {
    let stream = TcpStream::connect(("127.0.0.1", port));
    all_connected.wait();
    let Ok(mut stream) = stream else { return };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let up = up_payload(id);
    let mut seen = Seen::default();
    match mode(id) {
        Mode::ClientReset => {
            let half = up.len() / 2;
            let _ = stream.write_all(&up[..half]);
            // Give the proxy a moment to forward, then reset.
            thread::sleep(Duration::from_millis(20));
            set_linger_zero(&stream);
        }
        Mode::Trickle => {
            let mut reader = stream.try_clone().unwrap();
            let echo = thread::spawn(move || {
                let mut got = Vec::new();
                read_all(&mut reader, &mut got, false);
                got
            });
            for chunk in up.chunks(2048) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
                trickled.fetch_add(chunk.len(), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
            }
            let _ = stream.shutdown(Shutdown::Write);
            seen.received = echo.join().unwrap();
        }
        Mode::HalfClose => {
            let _ = stream.write_all(&up);
            let _ = stream.shutdown(Shutdown::Write);
            read_all(&mut stream, &mut seen.received, false);
        }
        m => {
            let writer = write_in_slices(stream.try_clone().unwrap(), up, id + 11);
            read_all(&mut stream, &mut seen.received, m == Mode::SlowReader);
            let _ = writer.join();
        }
    }
    record.lock().unwrap().insert(id, seen);
}

fn is_prefix(short: &[u8], long: &[u8]) -> bool {
    short.len() <= long.len() && long[..short.len()] == *short
}

#[test]
fn soak_600_connections_three_rules_sigint_under_load() {
    let clients: Record = Arc::default();
    let targets: Record = Arc::default();
    let servers: Vec<Server> = (0..RULES)
        .map(|_| {
            let targets = Arc::clone(&targets);
            serve("127.0.0.1", move |stream| target_handler(stream, &targets))
        })
        .collect();
    let ports: Vec<u16> = (0..RULES).map(|_| free_port()).collect();
    let target_ports: Vec<u16> = servers.iter().map(Server::port).collect();
    let tmp = TempDir::new("soak");
    let dir = tmp.join("logs");
    let mut args = vec![
        format!("@{}", path_str(&dir)),
        "--filename-format".into(),
        "soak-%H%M%S.ndjson".into(),
        "--flush-millis".into(),
        "200".into(),
    ];
    args.extend(ports.iter().zip(&servers).map(|(p, s)| rule(*p, s.port())));
    let mut proxy = Proxy::start(&args);
    for &p in &ports {
        wait_listening(p);
    }

    // The start-logging line is in this second's file; SIGINT waits for
    // the next second, so the run spans two files even when it is quick
    // (a release build: .ci/cross-test runs this against one).
    let unix_secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    };
    let first_second = unix_secs();

    let trickled = Arc::new(AtomicUsize::new(0));
    let all_connected = Arc::new(Barrier::new(CONNECTIONS as usize));
    let started = Instant::now();
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|id| {
            let (clients, trickled, barrier) = (
                Arc::clone(&clients),
                Arc::clone(&trickled),
                Arc::clone(&all_connected),
            );
            let port = ports[id as usize % RULES];
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(id, port, &clients, &trickled, &barrier))
                .expect("spawn client")
        })
        .collect();
    // SIGINT while traffic still flows: the trickling clients are a quarter through.
    let trickle_total = (0..CONNECTIONS)
        .filter(|&id| mode(id) == Mode::Trickle)
        .count()
        * TRICKLE_PAYLOAD;
    // ...and a quarter of the clients are done, so that many connections
    // are checked whole however busy the machine is.
    let quarter = (CONNECTIONS / 4) as usize;
    while trickled.load(Ordering::SeqCst) < trickle_total / 4
        || clients.lock().unwrap().len() < quarter
        || unix_secs() == first_second
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "traffic stalled"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let finished_before_signal = clients.lock().unwrap().len();
    let signalled = Instant::now();
    proxy.signal(libc::SIGINT);
    assert_eq!(
        proxy.wait_exit(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        proxy.stderr_text()
    );
    let shutdown_took = signalled.elapsed();
    for handle in handles {
        handle.join().expect("client thread");
    }
    drop(servers);
    // Target handlers finish once the proxy has closed their sockets.
    thread::sleep(Duration::from_millis(200));

    // Read the logs: every line in the file of its own second.
    let mut lines: Vec<Value> = Vec::new();
    let mut files = 0;
    for (name, text) in dir_files(&dir).expect("log files") {
        files += 1;
        for raw in text.lines() {
            let value = check_line(raw);
            let time = value["time"].as_str().unwrap();
            let want = format!(
                "soak-{}{}{}.ndjson",
                &time[11..13],
                &time[14..16],
                &time[17..19]
            );
            assert_eq!(name, want, "line in the wrong file: {raw}");
            lines.push(value);
        }
    }
    assert!(files >= 2, "per-second rotation produced {files} file(s)");

    // Per ConnID: one open first, one close, data by direction.
    struct Conn {
        client: String,
        up: Vec<u8>,
        down: Vec<u8>,
        opens: usize,
        closes: usize,
    }
    let mut conns: HashMap<String, Conn> = HashMap::new();
    for v in &lines {
        let Some(id) = v["ConnID"].as_str() else {
            continue;
        };
        if v["event"] == "open" {
            let listen = v["listen_port"].as_u64().unwrap() as u16;
            let rule = ports
                .iter()
                .position(|&p| p == listen)
                .expect("a rule's port");
            assert_eq!(v["to"], format!("127.0.0.1:{}", target_ports[rule]));
            let conn = conns.entry(id.to_owned()).or_insert_with(|| Conn {
                client: v["from"].as_str().unwrap().to_owned(),
                up: Vec::new(),
                down: Vec::new(),
                opens: 0,
                closes: 0,
            });
            conn.opens += 1;
            continue;
        }
        let conn = conns
            .get_mut(id)
            .unwrap_or_else(|| panic!("line before its open: {v}"));
        if v["event"] == "close" {
            conn.closes += 1;
        } else if let Some(data) = v["data"].as_str() {
            let bytes = percent_decode(data);
            if v["from"] == conn.client.as_str() {
                conn.up.extend(bytes);
            } else {
                conn.down.extend(bytes);
            }
        }
    }
    for (id, conn) in &conns {
        assert_eq!(
            (conn.opens, conn.closes),
            (1, 1),
            "ConnID {id}: opens and closes"
        );
    }

    // Match the log with what the peers saw.
    let clients = clients.lock().unwrap();
    let targets = targets.lock().unwrap();
    let by_test_id: HashMap<u64, &Conn> = conns
        .values()
        .filter(|c| c.up.len() >= 8)
        .map(|c| (u64::from_le_bytes(c.up[..8].try_into().unwrap()), c))
        .collect();
    let (mut exact, mut resets, mut cut_by_signal, mut bytes_checked) = (0, 0, 0, 0usize);
    let empty = Seen::default();
    for id in 0..CONNECTIONS {
        let client = clients.get(&id).unwrap_or(&empty);
        let target = targets.get(&id).unwrap_or(&empty);
        let (up_sent, down_sent) = (up_payload(id), down_payload(id));
        let Some(conn) = by_test_id.get(&id) else {
            assert!(
                client.received.is_empty(),
                "connection {id} got bytes but is not in the log"
            );
            assert!(
                target.received.is_empty(),
                "connection {id} reached its target but is not in the log"
            );
            continue;
        };
        // Every byte a peer received was sent by the other, unchanged, and logged.
        assert!(
            is_prefix(&target.received, &conn.up),
            "{id}: target got bytes not logged"
        );
        assert!(
            is_prefix(&conn.up, &up_sent),
            "{id}: logged bytes the client did not send"
        );
        assert!(
            is_prefix(&client.received, &conn.down),
            "{id}: client got bytes not logged"
        );
        assert!(
            is_prefix(&conn.down, &down_sent),
            "{id}: logged bytes the target did not send"
        );
        // Delivered whole before the signal (a FIN at shutdown looks like
        // the end to a peer, so compare the bytes, not how it ended).
        if target.received == up_sent && client.received == down_sent {
            assert_bytes_eq(
                &conn.up,
                &target.received,
                &format!("{id} up: log vs target"),
            );
            assert_bytes_eq(&conn.up, &up_sent, &format!("{id} up: log vs client"));
            assert_bytes_eq(
                &conn.down,
                &client.received,
                &format!("{id} down: log vs client"),
            );
            assert_bytes_eq(&conn.down, &down_sent, &format!("{id} down: log vs target"));
            exact += 1;
        } else if matches!(mode(id), Mode::ClientReset | Mode::TargetReset) {
            resets += 1;
        } else {
            cut_by_signal += 1;
        }
        bytes_checked += conn.up.len() + conn.down.len();
    }
    // A quarter were done before SIGINT; at most a fifth of all are resets.
    assert!(
        exact >= (CONNECTIONS / 4 - CONNECTIONS / 5) as usize,
        "only {exact} connections delivered whole"
    );
    eprintln!(
        "soak: {CONNECTIONS} concurrent connections, {} logged, {exact} delivered whole and logged exactly, \
         {resets} reset, {cut_by_signal} cut by SIGINT (logged bytes between received and sent), \
         {finished_before_signal} clients done before SIGINT, {bytes_checked} logged bytes checked, \
         {files} log files, 0 bytes lost, shutdown took {shutdown_took:?}, all took {:?}",
        conns.len(),
        started.elapsed()
    );
}
