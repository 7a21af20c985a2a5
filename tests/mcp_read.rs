//! SPEC §9, "MCP tools for reading": `list-connections` and
//! `read-connection` over raw HTTP on 127.0.0.1: every line logged before
//! the call is seen (even with a long flush interval), the rows and bytes
//! match the traffic, `max_bytes` cuts and `offset` continues, base64 gives
//! the exact bytes, every error is a `-32602` that says what to do, and the
//! reading runs off the loop (traffic and other MCP requests go on while a
//! 256 MiB capture is read). The official SDK drives them too, in
//! `mcp::official_python_sdk_drives_rawprox`.

use crate::hostile_read::mkfifo;
use crate::mcp::{Http, rule_args, start_mcp};
use crate::util::*;
use serde_json::{Value, json};
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A tool call over raw HTTP; the whole JSON-RPC answer.
fn tool(http: &mut Http, name: &str, args: Value) -> Value {
    http.rpc("tools/call", json!({"name": name, "arguments": args}))
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for group in text.trim().as_bytes().chunks(4) {
        let digits: Vec<u8> = group
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | u32::from(d) << (18 - 6 * i));
        for i in 0..digits.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The bytes of a one-side base64 answer: its text after the header line.
fn side_bytes(answer: &Value) -> Vec<u8> {
    let text = text(answer);
    let (_, body) = text.split_once('\n').expect("a header line");
    base64_decode(body)
}

#[test]
fn reading_tools_show_exactly_what_crossed_the_wire() {
    let target = echo_server("127.0.0.1");
    let logs = TempDir::new("mcp-read");
    let dir = path_str(&logs.join("logs"));
    // A minute's interval: only writing first lets a query see the lines.
    let (mut proxy, port) = start_mcp(&["--flush-millis", "60000"]);
    let mut http = Http::connect(port);

    let (code, message) = http.call_err("list-connections", json!({}));
    assert_eq!(code, -32602);
    assert!(
        message.contains("start-logging to a directory first"),
        "{message}"
    );

    http.call("start-logging", json!({"directory": dir}));
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    binary.extend(Rng::new(11).bytes(60_000));
    let binary_client = echo_once(local, &binary).to_string();
    let request = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let text_client = echo_once(local, request).to_string();

    let listed = tool(&mut http, "list-connections", json!({}));
    let rows = listed["result"]["structuredContent"]["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {listed}"));
    assert_eq!(rows.len(), 2, "{listed}");
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(a["client"], binary_client.as_str());
    assert_eq!(b["client"], text_client.as_str());
    for (row, len) in [(a, binary.len()), (b, request.len())] {
        assert_eq!(row["listen_port"], local);
        assert_eq!(row["bytes_client_to_target"], len);
        assert_eq!(row["bytes_target_to_client"], len);
        assert_eq!(row["closed_by"], "client");
        assert!(text(&listed).contains(row["ConnID"].as_str().unwrap()));
    }
    let only_a = tool(&mut http, "list-connections", json!({"limit": 1}));
    let rows = &only_a["result"]["structuredContent"]["connections"];
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["ConnID"], b["ConnID"], "newest last");
    let other_port = tool(&mut http, "list-connections", json!({"port": 1}));
    assert_eq!(
        other_port["result"]["structuredContent"]["connections"],
        json!([])
    );

    // Exact bytes, each side, in base64.
    let id_a = a["ConnID"].as_str().unwrap();
    for side in ["client", "target"] {
        let args = json!({"conn_id": id_a, "side": side, "format": "base64", "max_bytes": 1 << 20});
        let got = side_bytes(&tool(&mut http, "read-connection", args));
        assert_bytes_eq(&got, &binary, side);
    }
    // Cut at max_bytes, said so, continued from the offset given.
    let first = tool(
        &mut http,
        "read-connection",
        json!({"conn_id": id_a, "side": "client", "format": "base64", "max_bytes": 1000}),
    );
    assert!(
        text(&first).contains("cut at max_bytes 1000; continue with offset 1000"),
        "{}",
        text(&first)
    );
    assert_eq!(first["result"]["structuredContent"]["next_offset"], 1000);
    let rest = tool(
        &mut http,
        "read-connection",
        json!({"conn_id": id_a, "side": "client", "format": "base64", "offset": 1000, "max_bytes": 1 << 20}),
    );
    assert_eq!(rest["result"]["structuredContent"]["truncated"], false);
    let joined = [side_bytes(&first), side_bytes(&rest)].concat();
    assert_bytes_eq(&joined, &binary, "two pieces");

    // The conversation: text as text, hex as a dump, both sides in order.
    let id_b = b["ConnID"].as_str().unwrap();
    let talk = tool(&mut http, "read-connection", json!({"conn_id": id_b}));
    let shown = text(&talk);
    let asked = shown.find("> client").expect("the client's message");
    let echoed = shown.find("< target").expect("the target's message");
    assert!(asked < echoed, "{shown}");
    assert!(shown.contains("GET /index.html HTTP/1.1"), "{shown}");
    let hex = tool(
        &mut http,
        "read-connection",
        json!({"conn_id": id_b, "format": "hex"}),
    );
    assert!(text(&hex).contains("47 45 54 20 2f 69"), "{}", text(&hex));
    let binary_talk = tool(
        &mut http,
        "read-connection",
        json!({"conn_id": id_a, "max_bytes": 64}),
    );
    assert!(
        text(&binary_talk).contains("00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f"),
        "binary as a hex dump: {}",
        text(&binary_talk)
    );

    for (args, want) in [
        (json!({"conn_id": "zzzzzzzz"}), "unknown ConnID"),
        (json!({"conn_id": id_a, "side": "server"}), "side must be"),
        (json!({"conn_id": id_a, "format": "raw"}), "format must be"),
        (json!({"conn_id": id_a, "offset": -5}), "offset must be"),
        (json!({"side": "client"}), "missing argument conn_id"),
    ] {
        let (code, message) = http.call_err("read-connection", args.clone());
        assert_eq!(code, -32602, "{args}");
        assert!(message.contains(want), "{args}: {message}");
    }
    // A stopped directory of this run is still read.
    http.call("stop-logging", json!({"directory": dir}));
    let after = tool(&mut http, "list-connections", json!({}));
    let rows = after["result"]["structuredContent"]["connections"]
        .as_array()
        .map(Vec::len);
    assert_eq!(rows, Some(2), "{after}");
    proxy.stop();
}

/// SPEC §9: reading runs off the loop. A query over a 256 MiB capture is
/// answered later; meanwhile a keep-alive exchange through the proxy and
/// `tools/list` on another MCP connection keep answering.
#[test]
fn a_long_query_does_not_hold_up_traffic_or_other_requests() {
    let target = echo_server("127.0.0.1");
    let logs = TempDir::new("mcp-read-big");
    let dir = logs.join("logs");
    let (mut proxy, port) = start_mcp(&[&format!("@{}", path_str(&dir))]);
    let local = free_port();
    let mut http = Http::connect(port);
    http.call("add-port-rule", rule_args(local, target.port()));

    // A capture of this run: 8,200 data lines of 32 KiB, written beside the
    // proxy's own file (a query reads every *.ndjson file there).
    let start = now_micros();
    let payload = "x".repeat(32 * 1024);
    let file = fs::File::create(dir.join("big.ndjson")).expect("create the capture");
    let mut out = BufWriter::new(file);
    let from = "127.0.0.1:40000";
    let to = "127.0.0.1:9";
    let mut line = |t: u64, rest: &str| {
        writeln!(
            out,
            r#"{{"time":"{}","ConnID":"Synth001",{rest}}}"#,
            line_time(start + t)
        )
        .expect("write the capture");
    };
    line(
        0,
        &format!(r#""event":"open","from":"{from}","to":"{to}","listen_port":{local}"#),
    );
    let lines = 8200u64;
    for i in 1..=lines {
        line(
            i,
            &format!(r#""data":"{payload}","from":"{from}","to":"{to}""#),
        );
    }
    out.flush().expect("flush the capture");
    drop(out);
    let size = fs::metadata(dir.join("big.ndjson")).unwrap().len();
    assert!(size >= 256 << 20, "{size} bytes");

    let (done_tx, done_rx) = mpsc::channel();
    let asked = Instant::now();
    let query = thread::spawn(move || {
        let mut reader = Http::connect(port);
        // A debug build on a loaded machine reads this slowly.
        reader
            .stream
            .set_read_timeout(Some(Duration::from_secs(180)))
            .expect("a read timeout");
        let answer = tool(&mut reader, "list-connections", json!({}));
        let _ = done_tx.send(Instant::now());
        answer
    });
    let mut through = connect(local);
    let mut other = Http::connect(port);
    let (mut exchanges, mut lists) = (0, 0);
    let (mut worst_exchange, mut worst_list) = (Duration::ZERO, Duration::ZERO);
    let answered = loop {
        if let Ok(at) = done_rx.try_recv() {
            break at;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(180),
            "no answer in 180 s"
        );
        let t = Instant::now();
        through.write_all(b"ping through the proxy").unwrap();
        let mut back = [0u8; 22];
        through.read_exact(&mut back).unwrap();
        worst_exchange = worst_exchange.max(t.elapsed());
        exchanges += 1;
        let t = Instant::now();
        let tools = other.rpc("tools/list", json!({}));
        assert!(tools["result"]["tools"].is_array());
        worst_list = worst_list.max(t.elapsed());
        lists += 1;
        thread::sleep(Duration::from_millis(5));
    };
    let answer = query.join().expect("the query thread");
    let rows = answer["result"]["structuredContent"]["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    let synth = rows
        .iter()
        .find(|r| r["ConnID"] == "Synth001")
        .expect("the big connection listed");
    assert_eq!(synth["bytes_client_to_target"], lines * 32 * 1024);
    assert!(
        exchanges > 0 && lists > 0,
        "nothing answered while the query read"
    );
    eprintln!(
        "query over {} MiB answered in {:?}; meanwhile {exchanges} exchanges through the proxy (slowest {worst_exchange:?}) and {lists} tools/list (slowest {worst_list:?})",
        size >> 20,
        answered - asked
    );
    proxy.stop();
}

/// One `read`, again when a signal interrupted it (other tests' children
/// come and go while this one waits).
fn read_retrying(stream: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sends one JSON-RPC request on a new MCP connection and reads the head of
/// its answer, and the body only when it is small; the connection is kept
/// (and no more of it read), as a client that does not read would.
fn ask_without_reading(port: u16, request: &Value) -> (std::net::TcpStream, usize, Option<Value>) {
    let mut stream = connect(port);
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = request.to_string();
    let raw = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let head = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = read_retrying(&mut stream, &mut chunk).expect("the head of an answer");
        assert!(n > 0, "closed before an answer");
        got.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8_lossy(&got[..head]).to_ascii_lowercase();
    let length: usize = head_text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    if length > 64 * 1024 {
        return (stream, length, None);
    }
    while got.len() < head + length {
        let n = read_retrying(&mut stream, &mut chunk).expect("the body of an answer");
        assert!(n > 0, "closed mid-answer");
        got.extend_from_slice(&chunk[..n]);
    }
    let value = serde_json::from_slice(&got[head..head + length]).expect("a JSON answer");
    (stream, length, Some(value))
}

/// SPEC §7: what the server holds for clients that do not read is bounded
/// in total. Ten clients ask for a 21 MB hex dump (a 200-byte request)
/// and never read: an answer is sent while it fits (the first always; a
/// later one once the kernel's socket buffers have taken enough of those
/// before), the others get a `-32602` that says to ask for less; the proxy
/// stays small (unbounded, it held about 20 MiB more per client: 248 MiB
/// for twelve) and other clients are still answered.
#[test]
fn clients_that_do_not_read_cannot_make_the_server_hold_more_than_its_budget() {
    let logs = TempDir::new("mcp-read-budget");
    let dir = logs.join("logs");
    let (mut proxy, port) = start_mcp(&[&format!("@{}", path_str(&dir))]);
    // A 4 MiB connection of this run, written beside the proxy's own file.
    let start = now_micros();
    let mut capture = String::new();
    let (from, to) = ("127.0.0.1:40000", "127.0.0.1:9");
    capture.push_str(&format!(
        r#"{{"time":"{}","ConnID":"Synth002","event":"open","from":"{from}","to":"{to}","listen_port":1}}"#,
        line_time(start)
    ));
    capture.push('\n');
    let payload = "x".repeat(64 * 1024);
    for i in 1..=64 {
        capture.push_str(&format!(
            r#"{{"time":"{}","ConnID":"Synth002","data":"{payload}","from":"{from}","to":"{to}"}}"#,
            line_time(start + i)
        ));
        capture.push('\n');
    }
    fs::write(dir.join("big.ndjson"), capture).expect("write the capture");

    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "read-connection",
        "arguments": {"conn_id": "Synth002", "max_bytes": 4194304, "format": "hex"}}});
    let clients = 10;
    let mut held = Vec::new();
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..clients {
        let (stream, length, answer) = ask_without_reading(port, &big);
        match answer {
            None => {
                assert!(length > 20 << 20, "{length} bytes");
                answered += 1;
            }
            Some(answer) => {
                assert_eq!(answer["error"]["code"], -32602, "{answer}");
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains("ask for less"), "{message}");
                refused += 1;
            }
        }
        held.push(stream);
    }
    assert_eq!(answered + refused, clients);
    assert!(answered >= 1 && refused >= 1, "{answered} answered");
    let rss_mib = rss_kib(proxy.pid()) / 1024;
    assert!(rss_mib < 100, "the proxy holds {rss_mib} MiB");

    // Other clients are answered: a listing, and a small read.
    let mut http = Http::connect(port);
    http.stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let list = tool(&mut http, "list-connections", json!({}));
    assert!(text(&list).contains("Synth002"), "{list}");
    let small = tool(
        &mut http,
        "read-connection",
        json!({"conn_id": "Synth002", "max_bytes": 16}),
    );
    assert!(text(&small).contains("xxxxxxxxxxxxxxxx"), "{small}");
    eprintln!(
        "{clients} clients asked for 21 MB each and did not read: {answered} answered, {refused} refused, the proxy at {rss_mib} MiB"
    );
    drop(held);
    proxy.stop();
}

/// SPEC §9: a connection is one row whatever the number of directories
/// that hold it: sibling destinations (`d/a`, `d/b`), a destination nested
/// around them (`d`), and one directory spelled other ways (refused as a
/// second destination: its files would get every line twice).
#[test]
fn a_connection_is_one_row_whatever_the_directories_that_hold_it() {
    let target = echo_server("127.0.0.1");
    let tmp = TempDir::new("mcp-read-dirs");
    let d = path_str(&tmp.join("d"));
    let (a, b) = (format!("{d}/a"), format!("{d}/b"));
    let (mut proxy, port) = start_mcp(&[&format!("@{a}")]);
    let mut http = Http::connect(port);
    http.call("start-logging", json!({"directory": b}));
    http.call("start-logging", json!({"directory": d}));
    for spelling in [format!("{a}/"), format!("{d}/./a"), format!("{b}/../a")] {
        let (code, message) = http.call_err("start-logging", json!({"directory": spelling}));
        assert_eq!(code, -32602);
        assert!(message.starts_with("already logging to"), "{message}");
    }
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let payload = b"one connection, three directories".to_vec();
    let client = echo_once(local, &payload).to_string();

    let list = tool(&mut http, "list-connections", json!({}));
    let structured = &list["result"]["structuredContent"];
    let rows = structured["connections"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(structured["total"], 1);
    let row = &rows[0];
    assert_eq!(row["client"], client.as_str());
    assert_eq!(row["bytes_client_to_target"], payload.len());
    assert_eq!(row["bytes_target_to_client"], payload.len());
    let id = row["ConnID"].as_str().expect("a ConnID").to_owned();
    for side in ["client", "target"] {
        let args = json!({"conn_id": id, "side": side, "format": "base64"});
        let got = side_bytes(&tool(&mut http, "read-connection", args));
        assert_eq!(got, payload, "{side}");
    }

    // A second connection while only b and d log: still one row each.
    http.call("stop-logging", json!({"directory": a}));
    let second = echo_once(local, b"second").to_string();
    let list = tool(&mut http, "list-connections", json!({"port": local}));
    let rows = list["result"]["structuredContent"]["connections"]
        .as_array()
        .expect("rows")
        .clone();
    let clients: Vec<&str> = rows.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(clients, [client.as_str(), second.as_str()], "{list}");
    assert_eq!(rows[1]["bytes_client_to_target"], 6);
    // SPEC §7: a port may be a string of plain digits, as for the rules.
    let by_string = tool(
        &mut http,
        "list-connections",
        json!({"port": local.to_string()}),
    );
    assert_eq!(by_string["result"], list["result"]);
    let (code, message) = http.call_err("list-connections", json!({"port": "+1"}));
    assert_eq!(code, -32602);
    assert!(
        message.starts_with("port must be a port number"),
        "{message}"
    );
    proxy.stop();
}

/// Puts into log directory `dir` what issue 18 found there: two links back
/// to it (a cycle), `latest.ndjson` naming its newest file, a FIFO, a link
/// to `/dev/zero`, a dangling link, and links to a directory and to a log
/// outside it (`outside`, holding connection `Outside1` logged now).
pub(crate) fn plant_hostile_entries(dir: &Path, outside: &Path) {
    use std::os::unix::fs::symlink;
    let mut logs: Vec<String> = fs::read_dir(dir)
        .expect("the log directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".ndjson"))
        .collect();
    logs.sort();
    if let Some(newest) = logs.last() {
        symlink(newest, dir.join("latest.ndjson")).expect("latest.ndjson");
    }
    let name = dir.file_name().expect("a named directory");
    symlink(Path::new("..").join(name), dir.join("x")).expect("x -> ../dir");
    symlink(".", dir.join("cur")).expect("cur -> .");
    mkfifo(&dir.join("f.ndjson"));
    symlink("/dev/zero", dir.join("z.ndjson")).expect("z.ndjson -> /dev/zero");
    symlink("nowhere.ndjson", dir.join("d.ndjson")).expect("a dangling link");
    fs::create_dir_all(outside).expect("the outside directory");
    let secret = outside.join("secret.ndjson");
    let t = now_micros();
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:9");
    let lines = [
        format!(
            r#"{{"time":"{}","ConnID":"Outside1","event":"open","from":"{c}","to":"{s}","listen_port":9}}"#,
            line_time(t)
        ),
        format!(
            r#"{{"time":"{}","ConnID":"Outside1","data":"secret","from":"{c}","to":"{s}"}}"#,
            line_time(t + 1)
        ),
    ];
    fs::write(&secret, lines.join("\n") + "\n").expect("the outside log");
    symlink(&secret, dir.join("zzz.ndjson")).expect("zzz.ndjson -> outside");
    symlink(outside, dir.join("out")).expect("out -> outside");
}

/// The ConnIDs of a `list-connections` answer.
fn listed_ids(answer: &Value) -> Vec<String> {
    answer["result"]["structuredContent"]["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {answer}"))
        .iter()
        .map(|r| r["ConnID"].as_str().expect("a ConnID").to_owned())
        .collect()
}

/// Issue 18, points 1, 3, 8, 10 and 11 over MCP: run B reuses run A's
/// directory, which also holds link cycles, `latest.ndjson`, a FIFO, a
/// device, a dangling link, links outside and addresses with terminal
/// escapes. Both tools answer (each call has a deadline), see this run's
/// connections only, each once, and agree on what exists.
#[test]
fn reading_tools_read_this_run_inside_its_directories_only() {
    let target = echo_server("127.0.0.1");
    let logs = TempDir::new("mcp-read-hostile");
    let dir = logs.join("logs");
    let at = format!("@{}", path_str(&dir));

    // Run A: one connection, then gone.
    let (mut run_a, port) = start_mcp(&[&at]);
    let mut http = Http::connect(port);
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    echo_once(local, b"run A");
    let id_a = listed_ids(&tool(&mut http, "list-connections", json!({})))
        .pop()
        .expect("run A's connection");
    run_a.stop();
    drop(http);
    let lines_a: String = dir_lines(&dir).into_iter().map(|(_, l)| l).collect();
    assert!(
        lines_a.contains(&id_a),
        "run A's lines are in the directory"
    );

    // Run B, into the same directory (the same file, this hour).
    let (mut run_b, port) = start_mcp(&[&at]);
    let mut http = Http::connect(port);
    plant_hostile_entries(&dir, &logs.join("elsewhere"));
    let t = now_micros();
    let (c, s) = (r"\u001b[31mEVIL:1", r"\u001b]0;pwned\u0007host:2");
    fs::write(
        dir.join("evil.ndjson"),
        format!(
            r#"{{"time":"{}","ConnID":"Evil0001","event":"open","from":"{c}","to":"{s}","listen_port":9}}"#,
            line_time(t)
        ) + "\n",
    )
    .expect("a log with escapes in its addresses");
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    echo_once(local, b"run B");

    let listed = tool(&mut http, "list-connections", json!({}));
    let ids = listed_ids(&listed);
    assert_eq!(
        ids.len(),
        2,
        "run B's connection and Evil0001, once each: {ids:?}"
    );
    assert_eq!(ids[0], "Evil0001");
    let id_b = ids[1].clone();
    assert_ne!(id_b, id_a);
    // Addresses are shown, not obeyed; the structured rows stay exact.
    let shown = text(&listed);
    assert!(
        !shown.contains('\x1b') && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert!(shown.contains(r"\x1b[31mEVIL:1"), "{shown:?}");
    assert_eq!(
        listed["result"]["structuredContent"]["connections"][0]["client"],
        "\x1b[31mEVIL:1"
    );

    // read-connection agrees: run A's and the outside ConnIDs are unknown.
    for id in [id_a.as_str(), "Outside1"] {
        let (code, message) = http.call_err("read-connection", json!({"conn_id": id}));
        assert_eq!(code, -32602, "{id}");
        assert!(message.contains("unknown ConnID"), "{id}: {message}");
    }
    let args = json!({"conn_id": id_b, "side": "client", "format": "base64"});
    assert_eq!(
        side_bytes(&tool(&mut http, "read-connection", args)),
        b"run B"
    );
    let evil = tool(&mut http, "read-connection", json!({"conn_id": "Evil0001"}));
    assert!(!text(&evil).contains('\x1b'), "{}", text(&evil));

    // Still answering, again and again.
    for _ in 0..3 {
        assert_eq!(
            listed_ids(&tool(&mut http, "list-connections", json!({}))),
            ids
        );
    }
    run_b.stop();
}

/// Issue 18, point 13: a run whose files are not `*.ndjson` is not read,
/// and the answers say so instead of blaming the ConnID.
#[test]
fn a_directory_without_ndjson_files_is_named_not_the_conn_id() {
    let target = echo_server("127.0.0.1");
    let logs = TempDir::new("mcp-read-log");
    let dir = path_str(&logs.join("logs"));
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    http.call(
        "start-logging",
        json!({"directory": dir, "filename_format": "cap-%H.log"}),
    );
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    echo_once(local, b"hello");
    let listed = tool(&mut http, "list-connections", json!({}));
    assert!(listed_ids(&listed).is_empty());
    assert!(
        text(&listed).contains("holds no .ndjson file"),
        "{}",
        text(&listed)
    );
    let (code, message) = http.call_err("read-connection", json!({"conn_id": "Abcdefgh"}));
    assert_eq!(code, -32602);
    assert!(
        message.contains("unknown ConnID") && message.contains("holds no .ndjson file"),
        "{message}"
    );
    proxy.stop();
}
