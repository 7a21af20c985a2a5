//! `replay` (SPEC §10) against servers in this process on 127.0.0.1 and
//! ::1: captures are written as NDJSON lines (the format of SPEC §4), the
//! real binary replays them, and its rows, exit code and `--log` are
//! checked. Order is checked in the `--log` capture, never by timing.

use crate::util::*;
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A capture being written: lines one after the other, a millisecond apart.
struct Capture {
    text: String,
    millis: u64,
}

const CLIENT: &str = "127.0.0.1:50000";
const TARGET: &str = "127.0.0.1:9";

impl Capture {
    fn new() -> Capture {
        Capture {
            text: String::new(),
            millis: 0,
        }
    }

    fn line(&mut self, id: &str, body: &str) -> &mut Self {
        self.millis += 1;
        let time = line_time(1_761_147_167_000_000 + self.millis * 1000);
        self.text
            .push_str(&format!(r#"{{"time":"{time}","ConnID":"{id}",{body}}}"#));
        self.text.push('\n');
        self
    }

    fn open(&mut self, id: &str, client: &str) -> &mut Self {
        self.line(
            id,
            &format!(r#""event":"open","from":"{client}","to":"{TARGET}","listen_port":8080"#),
        )
    }

    fn client(&mut self, id: &str, client: &str, bytes: &[u8]) -> &mut Self {
        let data = encode_data(bytes);
        self.line(
            id,
            &format!(r#""data":"{data}","from":"{client}","to":"{TARGET}""#),
        )
    }

    fn target(&mut self, id: &str, client: &str, bytes: &[u8]) -> &mut Self {
        let data = encode_data(bytes);
        self.line(
            id,
            &format!(r#""data":"{data}","from":"{TARGET}","to":"{client}""#),
        )
    }

    fn client_closes(&mut self, id: &str, client: &str) -> &mut Self {
        self.line(
            id,
            &format!(r#""event":"close","from":"{client}","to":"{TARGET}""#),
        )
    }

    fn write(&self, dir: &TempDir) -> String {
        let path = dir.join("capture.ndjson");
        fs::write(&path, &self.text).expect("write the capture");
        path_str(&path)
    }
}

/// One request and its answer, then the client's close.
fn one_exchange(id: &str, request: &[u8], answer: &[u8]) -> Capture {
    let mut c = Capture::new();
    c.open(id, CLIENT)
        .client(id, CLIENT, request)
        .target(id, CLIENT, answer)
        .client_closes(id, CLIENT);
    c
}

fn replay(args: &[&str]) -> Outcome {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    Proxy::run(all)
}

fn json_rows(outcome: &Outcome) -> Vec<Value> {
    outcome
        .stdout_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn log_lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).expect("read the --log file");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn an_echo_server_answers_the_same_and_the_log_holds_both_ways() {
    let server = echo_server("127.0.0.1");
    let dir = TempDir::new("replay-same");
    let id = "0000000A";
    let mut c = Capture::new();
    c.open(id, CLIENT)
        .client(id, CLIENT, b"hello\n")
        .target(id, CLIENT, b"hello\n")
        .client(id, CLIENT, b"\x00\xffbinary%\n")
        .target(id, CLIENT, b"\x00\xffbinary%\n")
        .client_closes(id, CLIENT);
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let log = dir.join("replayed.ndjson");
    let out = replay(&["--to", &to, "--log", &path_str(&log), "--json", &input]);
    assert!(out.status.success(), "{out:?}", out = out.stderr);
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ConnID"], id);
    assert_eq!(rows[0]["verdict"], "same");
    assert_eq!(rows[0]["bytes_sent"], 16);
    assert_eq!(rows[0]["bytes_received"], 16);
    assert_eq!(rows[0]["bytes_captured"], 16);

    let lines = log_lines(&log);
    let open = events(&lines, "open");
    assert_eq!(open.len(), 1, "{lines:?}");
    let new_id = open[0]["ConnID"].as_str().unwrap();
    assert_ne!(new_id, id, "a new ConnID");
    assert_eq!(rows[0]["replayed_as"], new_id);
    assert_eq!(open[0]["to"], to.as_str());
    assert_eq!(open[0]["listen_port"], 8080);
    let client = open[0]["from"].as_str().unwrap();
    let sent = data_between(&lines, client, &to);
    let received = data_between(&lines, &to, client);
    assert_bytes_eq(&sent, b"hello\n\x00\xffbinary%\n", "client bytes in --log");
    assert_bytes_eq(&received, b"hello\n\x00\xffbinary%\n", "answer in --log");
    assert_eq!(events(&lines, "close").len(), 1, "one close line");
    // The replay's log reads back as a capture.
    let listed = Proxy::run(["list", "--json", &path_str(&log)]);
    assert!(listed.status.success(), "{}", listed.stderr);
    assert_eq!(listed.stdout_lines.len(), 1, "{:?}", listed.stdout_lines);
    assert!(listed.stdout_lines[0].contains(new_id));
}

#[test]
fn a_changed_byte_is_found_with_both_sides_around_it() {
    let server = serve("127.0.0.1", |mut stream: TcpStream| {
        let mut request = [0u8; 7];
        if stream.read_exact(&mut request).is_ok() {
            let _ = stream.write_all(b"HTTP/1.0 500 OK\r\n\r\nhello");
        }
    });
    let dir = TempDir::new("replay-differs");
    let input = one_exchange("0000000B", b"GET /\r\n", b"HTTP/1.0 200 OK\r\n\r\nhello").write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let out = replay(&["--to", &to, &input]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let text = out.stdout_lines.join("\n");
    assert!(
        text.starts_with("0000000B  sent 7  received 24 of 24  differs at byte 9"),
        "{text}"
    );
    assert!(
        text.contains("<< captured, from byte 0\nHTTP/1.0 200 OK\\r\n\\r\nhello"),
        "{text}"
    );
    assert!(
        text.contains("<< replayed, from byte 0\nHTTP/1.0 500 OK\\r\n\\r\nhello"),
        "{text}"
    );
    let out = replay(&["--to", &to, "--json", &input]);
    let rows = json_rows(&out);
    assert_eq!(rows[0]["verdict"], "differs at byte 9");
    assert_eq!(rows[0]["differs_at"], 9);
    assert_eq!(rows[0]["excerpt"]["offset"], 0);
}

#[test]
fn lockstep_waits_for_each_answer_of_a_slow_server() {
    // Each answer comes a while after its request: a replay that did not
    // wait would send every request before the first answer.
    let server = serve("127.0.0.1", |mut stream: TcpStream| {
        let mut request = [0u8; 2];
        while stream.read_exact(&mut request).is_ok() {
            thread::sleep(Duration::from_millis(50));
            request[0] = b'a';
            if stream.write_all(&request).is_err() {
                return;
            }
        }
    });
    let dir = TempDir::new("replay-lockstep");
    let id = "0000000C";
    let mut c = Capture::new();
    c.open(id, CLIENT);
    for n in b"123" {
        c.client(id, CLIENT, &[b'q', *n])
            .target(id, CLIENT, &[b'a', *n]);
    }
    c.client_closes(id, CLIENT);
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let log = dir.join("replayed.ndjson");
    let out = replay(&["--to", &to, "--log", &path_str(&log), &input]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout_lines[0].ends_with("same"),
        "{:?}",
        out.stdout_lines
    );
    let order: Vec<String> = log_lines(&log)
        .iter()
        .filter_map(|v| v.get("data").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(order, ["q1", "a1", "q2", "a2", "q3", "a3"]);
}

#[test]
fn the_client_half_close_is_passed_on() {
    // This server answers only once the client has ended its side.
    let server = serve("127.0.0.1", |mut stream: TcpStream| {
        let mut all = Vec::new();
        if stream.read_to_end(&mut all).is_ok() {
            let _ = stream.write_all(format!("got {}", all.len()).as_bytes());
        }
        let _ = stream.shutdown(Shutdown::Write);
    });
    let dir = TempDir::new("replay-half-close");
    let id = "0000000D";
    let mut c = Capture::new();
    c.open(id, CLIENT)
        .client(id, CLIENT, b"abcde")
        .client_closes(id, CLIENT)
        .target(id, CLIENT, b"got 5");
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let logs = dir.join("logs");
    let at_dir = format!("@{}", path_str(&logs));
    let out = replay(&["--to", &to, "--json", "--log", &at_dir, &input]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(json_rows(&out)[0]["verdict"], "same");
    // --log @DIR: the proxy's hourly files, framed by start- and stop-logging.
    let lines: Vec<Value> = dir_lines(&logs)
        .iter()
        .map(|(_, l)| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(event(&lines[0]), Some("start-logging"), "{lines:?}");
    assert_eq!(event(lines.last().unwrap()), Some("stop-logging"));
    let close = events(&lines, "close");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0]["to"], to.as_str(), "the client closed first");
}

#[test]
fn ipv6_targets_are_replayed_to() {
    let server = echo_server("::1");
    let dir = TempDir::new("replay-ipv6");
    let input = one_exchange("0000000E", b"over v6", b"over v6").write(&dir);
    let to = format!("[::1]:{}", server.port());
    let log = dir.join("v6.ndjson");
    let out = replay(&["--to", &to, "--log", &path_str(&log), &input]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines = log_lines(&log);
    assert_eq!(events(&lines, "open")[0]["to"], to.as_str());
}

#[test]
fn verdicts_for_refused_shorter_longer_and_silent_servers() {
    let dir = TempDir::new("replay-verdicts");
    let input = one_exchange("0000000F", b"ping", b"pong!").write(&dir);
    let refused = format!("127.0.0.1:{}", free_port());
    let out = replay(&["--to", &refused, "--json", &input]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(json_rows(&out)[0]["verdict"], "refused");

    let answering = |answer: &'static [u8], then_close: bool| {
        serve("127.0.0.1", move |mut stream: TcpStream| {
            let mut request = [0u8; 4];
            if stream.read_exact(&mut request).is_ok() {
                let _ = stream.write_all(answer);
            }
            if !then_close {
                // Stays open until the replay closes.
                let _ = stream.read_to_end(&mut Vec::new());
            }
        })
    };
    let resetting = serve("127.0.0.1", |mut stream: TcpStream| {
        let mut request = [0u8; 4];
        let _ = stream.read_exact(&mut request);
        set_linger_zero(&stream);
    });
    let to = format!("127.0.0.1:{}", resetting.port());
    let out = replay(&["--to", &to, "--json", &input]);
    assert_eq!(json_rows(&out)[0]["verdict"], "reset", "{}", out.stderr);

    // A capture where the client never closed: the replay sends no FIN, so
    // the server that stays open stays open until the replay gives up.
    let mut open = Capture::new();
    open.open("0000000F", CLIENT)
        .client("0000000F", CLIENT, b"ping")
        .target("0000000F", CLIENT, b"pong!");
    let open_dir = TempDir::new("replay-verdicts-open");
    let never_closed = open.write(&open_dir);
    let cases: [(&'static [u8], bool, &str, &str); 3] = [
        (b"pon", true, "shorter", &input),
        (b"pong!!", true, "longer", &input),
        (b"pon", false, "timed out waiting", &never_closed),
    ];
    for (answer, then_close, verdict, input) in cases {
        let server = answering(answer, then_close);
        let to = format!("127.0.0.1:{}", server.port());
        let out = replay(&["--to", &to, "--json", "--wait-ms", "200", input]);
        assert_eq!(out.status.code(), Some(1), "{verdict}: {}", out.stderr);
        assert_eq!(json_rows(&out)[0]["verdict"], verdict);
    }
}

#[test]
fn concurrency_is_never_exceeded() {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now2, most2) = (now.clone(), most.clone());
    let server = serve("127.0.0.1", move |stream: TcpStream| {
        let at_once = now2.fetch_add(1, Ordering::SeqCst) + 1;
        most2.fetch_max(at_once, Ordering::SeqCst);
        // Held a little, so connections overlap if the replay lets them.
        thread::sleep(Duration::from_millis(30));
        now2.fetch_sub(1, Ordering::SeqCst);
        echo(stream);
    });
    let dir = TempDir::new("replay-concurrency");
    let mut c = Capture::new();
    let ids: Vec<String> = (0..8).map(|n| format!("0000001{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let client = format!("127.0.0.1:{}", 50_000 + n);
        c.open(id, &client)
            .client(id, &client, b"x")
            .target(id, &client, b"x")
            .client_closes(id, &client);
    }
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let out = replay(&["--to", &to, "--concurrency", "3", "--pace", "fast", &input]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout_lines.len(), 8, "{:?}", out.stdout_lines);
    let at_most = most.load(Ordering::SeqCst);
    assert!((1..=3).contains(&at_most), "{at_most} connections at once");
    // The captured pace (a thousand times as fast) replays them the same.
    let out = replay(&[
        "--to",
        &to,
        "--pace",
        "captured",
        "--speed",
        "1000",
        "--concurrency",
        "3",
        &input,
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout_lines.len(), 8, "{:?}", out.stdout_lines);
    assert!(most.load(Ordering::SeqCst) <= 3);
    // A port selects connections too.
    let out = replay(&["--to", &to, "--port", "8081", &input]);
    assert!(out.status.success() && out.stdout_lines.is_empty());
}

#[test]
fn bad_arguments_are_one_error_line_and_exit_2() {
    let dir = TempDir::new("replay-bad");
    let mut c = one_exchange("0000000G", b"ping", b"pong");
    c.open("0000000H", "127.0.0.1:50001").line(
        "0000000H",
        r#""event":"close","from":"127.0.0.1:9","to":"127.0.0.1:50001""#,
    );
    let input = c.write(&dir);
    let to = "127.0.0.1:9";
    let cases: &[(&[&str], &str)] = &[
        (&[&input], "needs --to"),
        (&["--to", "127.0.0.1", &input], "invalid target"),
        (&["--to", "[::1:5", &input], "invalid target"),
        (
            &["--to", to, "--pace", "slow", &input],
            "'slow' is not a pace",
        ),
        (
            &["--to", to, "--pace", "captured", "--speed", "0", &input],
            "'0' is not a speed",
        ),
        (
            &["--to", to, "--concurrency", "0", &input],
            "'0' is not a concurrency",
        ),
        (&["--to", to, "--wait-ms", "x", &input], "'x'"),
        (&["--to", to, "--bogus", &input], "'--bogus'"),
        (&["--to", to, "0000000Z", &input], "no connection 0000000Z"),
        (
            &["--to", to, "0000000H", &input],
            "0000000H has no client bytes",
        ),
        (&["--to", to, "--log", &input, &input], "is the input"),
        (&["--to", to, "-"], "not standard input"),
        (&["--to", to], "not standard input"),
    ];
    for (args, want) in cases {
        let out = replay(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(
            lines[0].starts_with("Error: ") && lines[0].contains(want),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout_lines.is_empty(), "{args:?}");
    }
    let help = Proxy::run(["replay", "--help"]);
    assert!(help.status.success());
    assert!(help.stdout_lines[0].starts_with("Usage: rawprox.exe replay"));
}

/// SPEC §10 over MCP: `replay-connection` replays one connection of this
/// run's capture and answers its row; bad arguments are `-32602` errors.
#[test]
fn the_mcp_tool_replays_one_connection_of_this_run() {
    use crate::mcp::{Http, rule_args, start_mcp};
    use serde_json::json;
    let target = echo_server("127.0.0.1");
    let changed = serve("127.0.0.1", |mut stream: TcpStream| {
        let mut request = [0u8; 12];
        if stream.read_exact(&mut request).is_ok() {
            let _ = stream.write_all(b"hello REPLAY");
        }
    });
    let logs = TempDir::new("replay-mcp");
    let dir = path_str(&logs.join("logs"));
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    http.call("start-logging", json!({"directory": dir}));
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    echo_once(local, b"hello replay");
    let listed = http.rpc(
        "tools/call",
        json!({"name": "list-connections", "arguments": {}}),
    );
    let id = listed["result"]["structuredContent"]["connections"][0]["ConnID"]
        .as_str()
        .unwrap_or_else(|| panic!("no row: {listed}"))
        .to_owned();
    let replay = |http: &mut Http, to: u16| {
        let args = json!({"conn_id": id, "to": format!("127.0.0.1:{to}"), "wait_ms": 2000});
        http.rpc(
            "tools/call",
            json!({"name": "replay-connection", "arguments": args}),
        )
    };
    let same = replay(&mut http, target.port());
    assert_eq!(
        same["result"]["structuredContent"]["verdict"], "same",
        "{same}"
    );
    assert_eq!(same["result"]["structuredContent"]["bytes_received"], 12);
    let differs = replay(&mut http, changed.port());
    let row = &differs["result"]["structuredContent"];
    assert_eq!(row["verdict"], "differs at byte 6", "{differs}");
    let text = differs["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("hello REPLAY") && text.contains("hello replay"),
        "{text}"
    );
    for (args, want) in [
        (
            json!({"conn_id": "zzzzzzzz", "to": "127.0.0.1:9"}),
            "unknown ConnID",
        ),
        (json!({"conn_id": id, "to": "127.0.0.1"}), "invalid target"),
        (
            json!({"conn_id": id, "to": "127.0.0.1:9", "pace": "slow"}),
            "pace must be",
        ),
        (json!({"conn_id": id}), "missing argument to"),
    ] {
        let (code, message) = http.call_err("replay-connection", args.clone());
        assert_eq!(code, -32602, "{args}");
        assert!(message.contains(want), "{args}: {message}");
    }
    proxy.stop();
}

/// A connection too big to come with its plan is read again on its own
/// (SPEC §10: streamed, never held whole): 1 MiB each way, in 32 KiB
/// chunks, with one byte changed far into the answer.
#[test]
fn a_big_connection_is_streamed_and_compared_to_its_end() {
    let payload = Rng::new(21).bytes(1 << 20);
    let mut changed_answer = payload.clone();
    changed_answer[700_000] ^= 0x55;
    let changed = serve("127.0.0.1", move |mut stream: TcpStream| {
        let mut writer = stream.try_clone().expect("clone");
        let answer = changed_answer.clone();
        let sender = thread::spawn(move || writer.write_all(&answer));
        let _ = stream.read_to_end(&mut Vec::new());
        let _ = sender.join();
    });
    let echo = echo_server("127.0.0.1");
    let dir = TempDir::new("replay-big");
    let id = "0000000I";
    let mut c = Capture::new();
    c.open(id, CLIENT);
    for chunk in payload.chunks(32 * 1024) {
        c.client(id, CLIENT, chunk).target(id, CLIENT, chunk);
    }
    c.client_closes(id, CLIENT);
    let input = c.write(&dir);
    let log = dir.join("big-replayed.ndjson");
    let to = format!("127.0.0.1:{}", echo.port());
    let out = replay(&[
        "--to",
        &to,
        "--pace",
        "fast",
        "--json",
        "--log",
        &path_str(&log),
        &input,
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = &json_rows(&out)[0];
    assert_eq!(row["verdict"], "same", "{row}");
    assert_eq!(row["bytes_received"], 1 << 20);
    let lines = log_lines(&log);
    let client = events(&lines, "open")[0]["from"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_bytes_eq(
        &data_between(&lines, &client, &to),
        &payload,
        "sent, in --log",
    );
    assert_bytes_eq(
        &data_between(&lines, &to, &client),
        &payload,
        "answer, in --log",
    );

    let to = format!("127.0.0.1:{}", changed.port());
    let out = replay(&["--to", &to, "--json", &input]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let row = &json_rows(&out)[0];
    assert_eq!(row["verdict"], "differs at byte 700000", "{row}");
    assert_eq!(row["excerpt"]["offset"], 700_000 - 32);
}

/// A captured answer bigger than what a connection reads ahead, from a
/// server that now sends only its start and stays open: the replay does not
/// hang, it says `timed out waiting` after --wait-ms.
#[test]
fn a_server_short_of_a_big_answer_times_out() {
    let answer: Vec<u8> = b"0123456789abcdef".repeat(128 * 1024); // 2 MiB
    let start = answer[..5].to_vec();
    let server = serve("127.0.0.1", move |mut stream: TcpStream| {
        let mut request = [0u8; 3];
        if stream.read_exact(&mut request).is_ok() {
            let _ = stream.write_all(&start);
        }
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let dir = TempDir::new("replay-big-answer");
    let id = "0000000J";
    let mut c = Capture::new();
    c.open(id, CLIENT).client(id, CLIENT, b"get");
    for chunk in answer.chunks(32 * 1024) {
        c.target(id, CLIENT, chunk);
    }
    c.client(id, CLIENT, b"bye").client_closes(id, CLIENT);
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let out = replay(&["--to", &to, "--wait-ms", "300", "--json", &input]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let row = &json_rows(&out)[0];
    assert_eq!(row["verdict"], "timed out waiting", "{row}");
    assert_eq!(row["bytes_received"], 5);
}

/// SPEC §10: a connection whose client sent nothing, selected as one of
/// all, is replayed as an open and a close (here the server greets first).
#[test]
fn a_connection_without_client_bytes_is_an_open_and_a_close() {
    let server = serve("127.0.0.1", |mut stream: TcpStream| {
        let _ = stream.write_all(b"220 hello\r\n");
    });
    let dir = TempDir::new("replay-greeting");
    let id = "0000000K";
    let mut c = Capture::new();
    c.open(id, CLIENT)
        .target(id, CLIENT, b"220 hello\r\n")
        .line(
            id,
            &format!(r#""event":"close","from":"{TARGET}","to":"{CLIENT}""#),
        );
    let input = c.write(&dir);
    let to = format!("127.0.0.1:{}", server.port());
    let out = replay(&["--to", &to, "--json", &input]);
    assert!(out.status.success(), "{}", out.stderr);
    let row = &json_rows(&out)[0];
    assert_eq!(
        (row["verdict"].as_str(), row["bytes_sent"].as_u64()),
        (Some("same"), Some(0))
    );
}
