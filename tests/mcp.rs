//! SPEC §7: the MCP control server, driven with raw HTTP over a TcpStream
//! on 127.0.0.1 (and once with the official Python SDK): the ready line,
//! the transport, the seven tools (the two reading tools in `mcp_read`), runtime rules and destinations, the
//! errors and the hardening, and that no request disturbs the traffic.

use crate::util::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{ChildStdout, Command};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// One HTTP response.
pub(crate) struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A keep-alive HTTP/1.1 connection to the MCP endpoint.
pub(crate) struct Http {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    pub(crate) fn connect(port: u16) -> Http {
        Http {
            stream: connect(port),
            buf: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, raw: &[u8]) -> Response {
        self.stream.write_all(raw).expect("write request");
        self.read_response().expect("a response before EOF")
    }

    /// The next response, or None at EOF.
    pub(crate) fn read_response(&mut self) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                parsed.parse(&self.buf).expect("valid HTTP response")
            {
                let status = parsed.code.expect("status");
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().expect("numeric Content-Length"))
                    .expect("every response has a Content-Length");
                if self.buf.len() >= head + len {
                    let body = self.buf[head..head + len].to_vec();
                    self.buf.drain(..head + len);
                    return Some(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading a response: {e}"),
            }
        }
    }

    pub(crate) fn post(&mut self, body: &str) -> Response {
        let raw = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(raw.as_bytes())
    }

    /// A JSON-RPC request; the 200 response's body.
    pub(crate) fn rpc(&mut self, method: &str, params: Value) -> Value {
        let body =
            json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string();
        let response = self.post(&body);
        assert_eq!(
            response.status,
            200,
            "{method}: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        let value = response.json();
        assert_eq!(value["id"], 7);
        assert_eq!(value["jsonrpc"], "2.0");
        value
    }

    /// A tool call that must succeed; its text.
    pub(crate) fn call(&mut self, tool: &str, args: Value) -> String {
        let value = self.rpc("tools/call", json!({"name": tool, "arguments": args}));
        assert!(
            value.get("error").is_none(),
            "{tool} {args} failed: {value}"
        );
        value["result"]["content"][0]["text"]
            .as_str()
            .expect("text content")
            .to_owned()
    }

    /// A tool call that must fail; (code, message).
    pub(crate) fn call_err(&mut self, tool: &str, args: Value) -> (i64, String) {
        let value = self.rpc("tools/call", json!({"name": tool, "arguments": args}));
        let code = value["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{tool} {args} did not fail: {value}"));
        (
            code,
            value["error"]["message"]
                .as_str()
                .expect("message")
                .to_owned(),
        )
    }
}

/// Starts rawprox with `--mcp-port 0` and `args`; returns it and the MCP port
/// from its `mcp-ready` line (checked to be the first line, field order
/// `time`, `event`, `endpoint`).
pub(crate) fn start_mcp(args: &[&str]) -> (Proxy, u16) {
    let mut all = vec!["--mcp-port", "0"];
    all.extend_from_slice(args);
    let mut proxy = Proxy::start(&all);
    let first = proxy
        .next_line_by(Instant::now() + DEADLINE)
        .unwrap_or_else(|| panic!("no mcp-ready line; stderr: {}", proxy.stderr_text()));
    let port = ready_port(&first);
    (proxy, port)
}

/// As `start_mcp`, but the test keeps stdout's pipe, read only up to the
/// `mcp-ready` line.
pub(crate) fn start_mcp_raw(args: &[&str]) -> (Proxy, u16, BufReader<ChildStdout>) {
    let mut all = vec!["--mcp-port", "0"];
    all.extend_from_slice(args);
    let (proxy, stdout) = Proxy::spawn_raw_stdout(Proxy::command(&all));
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    if stdout.read_line(&mut first).is_err() || !first.ends_with('\n') {
        panic!("no mcp-ready line; stderr: {}", proxy.stderr_text());
    }
    let port = ready_port(first.trim_end());
    (proxy, port, stdout)
}

/// The MCP port of an `mcp-ready` line.
fn ready_port(first: &str) -> u16 {
    let ready = check_line(first);
    assert_eq!(ready["event"], "mcp-ready", "{first}");
    let endpoint = ready["endpoint"].as_str().expect("endpoint");
    let port: u16 = endpoint
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("endpoint {endpoint}"));
    assert_ne!(port, 0);
    port
}

pub(crate) fn rule_args(local_port: u16, target_port: u16) -> Value {
    json!({"local_port": local_port, "target_host": "127.0.0.1", "target_port": target_port})
}

#[test]
fn mcp_port_alone_runs_quietly_on_loopback() {
    let (mut proxy, port) = start_mcp(&[]);
    assert_eq!(
        wait_listening(port),
        vec![std::net::IpAddr::from([127, 0, 0, 1])]
    );
    let lines = parse_lines(&proxy.stop());
    // SPEC §7: the implicit stdout destination is not announced.
    assert!(
        events(&lines, "start-logging").is_empty(),
        "announced: {lines:#?}"
    );
    assert_eq!(lines.last().unwrap()["event"], "stop-logging");
    assert_eq!(lines.last().unwrap()["directory"], Value::Null);
    assert_eq!(proxy.stderr_text(), "", "no help text, no error");
}

/// SPEC §7 (and the upstream tool's controllers): asking for stdout while
/// it is only the implicit destination succeeds and is announced; from then
/// on it counts as asked for, and asking again is the "already logging" error.
#[test]
fn start_logging_of_the_implicit_stdout_is_announced_once() {
    let target = echo_server("127.0.0.1");
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    let text = http.call("start-logging", json!({"directory": null}));
    assert_eq!(text, "Logging to stdout started");
    let raw = proxy
        .next_line_by(Instant::now() + DEADLINE)
        .expect("the start-logging line");
    let started = check_line(&raw);
    assert_eq!(
        top_level_keys(&raw),
        ["time", "event", "directory"],
        "{raw}"
    );
    assert_eq!(started["event"], "start-logging");
    assert_eq!(started["directory"], Value::Null);
    let (code, message) = http.call_err("start-logging", json!({}));
    assert_eq!(code, -32602);
    assert_eq!(message, "already logging to stdout");
    // Still the one stdout destination: traffic is there once.
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let client = echo_once(local, b"once").to_string();
    let lines = parse_lines(&proxy.stop());
    let to = format!("127.0.0.1:{}", target.port());
    assert_eq!(data_between(&lines, &client, &to), b"once");
    assert_eq!(events(&lines, "start-logging").len(), 1, "announced once");
    assert_eq!(events(&lines, "stop-logging").len(), 1);
}

#[test]
fn initialize_negotiates_versions_on_one_keep_alive_connection() {
    let (_proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    for (asked, want) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("1999-01-01", "2025-06-18"),
    ] {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion": asked, "capabilities": {}, "clientInfo": {"name":"test","version":"1"}}});
        let response = http.post(&body.to_string());
        assert_eq!(response.status, 200);
        assert!(
            response
                .header("Mcp-Session-Id")
                .is_some_and(|s| !s.is_empty())
        );
        let result = &response.json()["result"];
        assert_eq!(result["protocolVersion"], want, "asked {asked}");
        assert_eq!(result["capabilities"], json!({"tools": {}}));
        assert_eq!(result["serverInfo"]["name"], "rawprox");
        assert!(result["serverInfo"]["version"].is_string());
    }
    // Stateless: no session id needed, on the same connection.
    let tools = http.rpc("tools/list", json!({}));
    let tools = tools["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "start-logging",
            "stop-logging",
            "add-port-rule",
            "remove-port-rule",
            "shutdown",
            "list-connections",
            "read-connection",
            "replay-connection"
        ]
    );
    for tool in tools {
        let schema = &tool["inputSchema"];
        assert_eq!(schema["type"], "object", "{tool}");
        assert!(
            schema["properties"].is_object() && schema["required"].is_array(),
            "{tool}"
        );
        assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let add = &tools[2]["inputSchema"];
    assert_eq!(
        add["required"],
        json!(["local_port", "target_host", "target_port"])
    );
    assert_eq!(tools[3]["inputSchema"]["required"], json!(["local_port"]));
    assert_eq!(tools[4]["inputSchema"]["properties"], json!({}));

    let note = http.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!((note.status, note.body.len()), (202, 0));
    let reply = http.post(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#);
    assert_eq!((reply.status, reply.body.len()), (202, 0));
    let get = http.send(b"GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
    assert_eq!(get.status, 405);
    // Still the same connection: keep-alive all along.
    assert_eq!(http.rpc("ping", json!({}))["result"], json!({}));
}

#[test]
fn errors_are_json_rpc_errors_and_http_statuses() {
    let (_proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    let parse = http.post("{not json");
    assert_eq!(parse.status, 400);
    assert_eq!(parse.json()["error"]["code"], -32700);
    let invalid = http.post(r#"{"id":1,"method":"tools/list"}"#);
    assert_eq!(invalid.json()["error"]["code"], -32600);
    assert_eq!(
        http.rpc("no/such/method", json!({}))["error"]["code"],
        -32601
    );
    let (code, message) = http.call_err("no-such-tool", json!({}));
    assert_eq!(code, -32601);
    assert!(message.contains("no-such-tool"), "{message}");
    for (tool, args, want) in [
        (
            "add-port-rule",
            json!({"local_port": 1, "target_port": 2}),
            "target_host",
        ),
        (
            "add-port-rule",
            json!({"local_port": 0, "target_host": "h", "target_port": 2}),
            "local_port",
        ),
        (
            "add-port-rule",
            json!({"local_port": "x", "target_host": "h", "target_port": 2}),
            "local_port",
        ),
        (
            "remove-port-rule",
            json!({"local_port": 9}),
            "No port rule on port 9",
        ),
        ("start-logging", json!({"directory": 5}), "directory"),
        (
            "stop-logging",
            json!({"directory": "/never/started"}),
            "/never/started",
        ),
        // SPEC §7: plain digits only, as on the command line.
        (
            "remove-port-rule",
            json!({"local_port": " 20002"}),
            "local_port",
        ),
        (
            "remove-port-rule",
            json!({"local_port": "+20009"}),
            "local_port",
        ),
    ] {
        let (code, message) = http.call_err(tool, args.clone());
        assert_eq!(code, -32602, "{tool} {args}");
        assert!(message.contains(want), "{tool} {args}: {message}");
    }
    // SPEC §5: a format whose names would not be files inside the
    // directory is refused at once, never a failure at a flush.
    let logs = TempDir::new("mcp-bad-format");
    let dir = path_str(&logs.join("logs"));
    for format in ["/", "%Y/", ".", "..", "/etc/../tmp/x.ndjson", "a\0b"] {
        let args = json!({"directory": dir, "filename_format": format});
        let (code, message) = http.call_err("start-logging", args);
        assert_eq!(code, -32602, "{format:?}");
        assert!(
            message.contains("inside the log directory"),
            "{format:?}: {message}"
        );
    }
    // SPEC §7: the id exactly as sent, past 2^64 too.
    let huge = http.post(r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#);
    let text = String::from_utf8_lossy(&huge.body).to_string();
    assert!(text.contains(r#""id":18446744073709551616"#), "{text}");
    // A curl-style form content type is fine.
    let raw = "POST /mcp HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
    assert_eq!(http.send(raw.as_bytes()).status, 200);
    let foreign = http
        .send(b"POST /mcp HTTP/1.1\r\nOrigin: http://evil.example\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(foreign.status, 403);
    let local = "POST /mcp HTTP/1.1\r\nOrigin: http://localhost:5173\r\nContent-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
    assert_eq!(http.send(local.as_bytes()).status, 200);
    assert_eq!(
        http.send(b"POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .status,
        404
    );

    let mut big = Http::connect(port);
    let too_big = big.send(
        format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024 + 1
        )
        .as_bytes(),
    );
    assert_eq!(too_big.status, 413);
    assert!(big.read_response().is_none(), "closed after 413");
    let mut garbage = Http::connect(port);
    assert_eq!(
        garbage
            .send(b"\x16\x03\x01 definitely not HTTP\r\n\r\n")
            .status,
        400
    );
    assert!(garbage.read_response().is_none(), "closed after 400");
    // The first connection is still served.
    assert_eq!(http.rpc("ping", json!({}))["result"], json!({}));
}

/// SPEC §7: a call missing several arguments names them all in one error,
/// and an argument the tool does not have is refused, naming it: a typo
/// (`port` for `local_port`) never passes silently, and nothing is done.
#[test]
fn every_missing_argument_is_named_and_an_unknown_one_refused() {
    let target = echo_server("127.0.0.1");
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    let (code, message) = http.call_err("add-port-rule", json!({"target_host": "127.0.0.1"}));
    assert_eq!(code, -32602);
    assert_eq!(message, "missing arguments local_port, target_port");
    let local = free_port();
    let typo = json!({"port": local, "target_host": "127.0.0.1", "target_port": target.port()});
    let (code, message) = http.call_err("add-port-rule", typo);
    assert_eq!(code, -32602);
    assert!(
        message.starts_with(r#"unknown argument "port" (add-port-rule takes local_port"#),
        "{message}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", local)).is_err(),
        "the rule was added anyway"
    );
    for (tool, args, name) in [
        (
            "remove-port-rule",
            json!({"local_port": 1, "force": true}),
            "force",
        ),
        ("start-logging", json!({"dir": "x"}), "dir"),
        (
            "stop-logging",
            json!({"directory": null, "all": true}),
            "all",
        ),
        ("list-connections", json!({"limit": 5, "since": 0}), "since"),
        (
            "read-connection",
            json!({"conn_id": "zzzzzzzz", "bytes": 1}),
            "bytes",
        ),
        ("shutdown", json!({"now": true}), "now"),
    ] {
        let (code, message) = http.call_err(tool, args.clone());
        assert_eq!(code, -32602, "{tool} {args}");
        let want = format!("unknown argument \"{name}\" ({tool} takes ");
        assert!(message.starts_with(&want), "{tool} {args}: {message}");
    }
    // The shutdown with a stray argument did nothing: still answering.
    assert_eq!(http.rpc("ping", json!({}))["result"], json!({}));
    proxy.stop();
}

#[test]
fn rules_are_added_and_removed_at_run_time() {
    let target = echo_server("127.0.0.1");
    let (mut proxy, port) = start_mcp(&["--flush-millis", "0"]);
    let mut http = Http::connect(port);
    let local = free_port();
    let text = http.call("add-port-rule", rule_args(local, target.port()));
    assert_eq!(
        text,
        format!("Port rule added: {local} -> 127.0.0.1:{}", target.port())
    );
    let client = echo_once(local, b"through a rule added at run time");
    let open = proxy.wait_open(client);
    assert_eq!(open["listen_port"], local);

    let (code, message) = http.call_err("add-port-rule", rule_args(local, target.port()));
    assert_eq!(
        (code, message),
        (-32602, format!("Port {local} is already in use"))
    );
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let taken_port = taken.local_addr().unwrap().port();
    let (_, message) = http.call_err("add-port-rule", rule_args(taken_port, target.port()));
    assert_eq!(message, format!("Port {taken_port} is already in use"));

    // Removing the rule closes its open connection, with its close line.
    let mut open_conn = connect(local);
    echo_roundtrip(&mut open_conn, b"still open");
    let client = open_conn.local_addr().unwrap().to_string();
    let removed = http.call("remove-port-rule", json!({"local_port": local}));
    assert!(removed.contains(&local.to_string()), "{removed}");
    expect_closed(&mut open_conn, "a connection of a removed rule");
    let close = proxy.wait_line("the close of the removed rule's connection", |v| {
        v["event"] == "close" && (v["from"] == client.as_str() || v["to"] == client.as_str())
    });
    assert_eq!(close["from"], client.as_str());
    assert!(
        TcpStream::connect(("127.0.0.1", local)).is_err(),
        "nothing listens after removal"
    );
    let (_, message) = http.call_err("remove-port-rule", json!({"local_port": local}));
    assert_eq!(message, format!("No port rule on port {local}"));

    let lines = parse_lines(&proxy.stop());
    let opens = events(&lines, "open").len();
    assert_eq!(opens, events(&lines, "close").len(), "one close per open");
}

/// An existing client starts a directory and reads the first
/// `start-logging` it sees on stdout: it must be its own.
#[test]
fn a_directory_started_over_mcp_is_the_first_start_logging_on_stdout() {
    let dir = TempDir::new("mcp-first-start");
    let logs = path_str(&dir.join("logs"));
    let (mut proxy, port) = start_mcp(&[]);
    let mut http = Http::connect(port);
    http.call("start-logging", json!({"directory": logs}));
    let started = proxy.wait_line("a start-logging", |v| v["event"] == "start-logging");
    assert_eq!(started["directory"], logs.as_str(), "{started}");
    proxy.stop();
}

/// SPEC §7: when stop-logging answers, the directory holds every line
/// logged before the call and ends with `stop-logging`, so the controller
/// may move it at once; nothing re-creates it behind the controller.
#[test]
fn stop_logging_answers_once_its_lines_are_written() {
    let target = echo_server("127.0.0.1");
    let tmp = TempDir::new("mcp-stop-promise");
    let dir = path_str(&tmp.join("logs"));
    let (mut proxy, port) = start_mcp(&[&format!("@{dir}"), "--flush-millis", "2000"]);
    let mut http = Http::connect(port);
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let payload = rng_payload(7, 4 << 20);
    let client = echo_once(local, &payload).to_string();
    let asked = Instant::now();
    let text = http.call("stop-logging", json!({"directory": dir}));
    assert!(text.contains(&dir), "{text}");
    let waited = asked.elapsed();
    // Moved the moment the answer came, as a controller would.
    let moved = tmp.join("moved");
    std::fs::rename(&dir, &moved).expect("move the log directory");
    let lines = file_lines(&moved);
    assert_eq!(lines.first().unwrap()["event"], "start-logging");
    assert_eq!(lines.last().unwrap()["event"], "stop-logging", "last line");
    let to = format!("127.0.0.1:{}", target.port());
    assert_eq!(data_between(&lines, &client, &to).len(), payload.len());
    assert_eq!(data_between(&lines, &to, &client).len(), payload.len());
    assert_eq!(events(&lines, "close").len(), 1);
    // Past the next interval, the directory is still gone.
    thread::sleep(Duration::from_millis(2500));
    assert!(
        !Path::new(&dir).exists(),
        "{dir} was created again after stop-logging"
    );
    proxy.stop();
    eprintln!("stop-logging answered in {waited:?}");
}

/// SPEC §7: `stop-logging` with nothing to stop, or nothing pending, answers
/// at once, not at some later flush (here none would come for ten minutes).
#[test]
fn stop_logging_with_nothing_to_stop_answers_at_once() {
    let tmp = TempDir::new("mcp-stop-nothing");
    let dir = path_str(&tmp.join("logs"));
    let (mut proxy, port) = start_mcp(&[&format!("@{dir}"), "--flush-millis", "600000"]);
    let mut http = Http::connect(port);
    // A read that waits past the deadline fails the test instead of hanging.
    http.stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let text = http.call("stop-logging", json!({}));
    assert!(text.contains(&dir), "{text}");
    let lines = file_lines(Path::new(&dir));
    assert_eq!(lines.last().unwrap()["event"], "stop-logging");
    // Nothing is active now: every one of these answers without a flush.
    let askers: Vec<_> = (0..10)
        .map(|i| {
            thread::spawn(move || {
                let mut http = Http::connect(port);
                http.stream.set_read_timeout(Some(DEADLINE)).unwrap();
                let args = if i % 2 == 0 {
                    json!({})
                } else {
                    json!({"directory": null})
                };
                let value = http.rpc(
                    "tools/call",
                    json!({"name": "stop-logging", "arguments": args}),
                );
                value.to_string()
            })
        })
        .collect();
    for asker in askers {
        let answer = asker.join().expect("an answer before the deadline");
        // `{}` stops nothing; `null` asks for a stdout that is not active.
        let expected = ["No log destination was active", "not logging to stdout"];
        assert!(expected.iter().any(|e| answer.contains(e)), "{answer}");
    }
    let text = http.call("stop-logging", json!({}));
    assert_eq!(text, "No log destination was active");
    proxy.stop();
}

#[test]
fn destinations_start_and_stop_at_run_time() {
    let target = echo_server("127.0.0.1");
    let dir_a = TempDir::new("mcp-dest-a");
    let dir_b = TempDir::new("mcp-dest-b");
    let (a, b) = (path_str(&dir_a.join("logs")), path_str(&dir_b.join("logs")));
    let (mut proxy, port) = start_mcp(&[&format!("@{a}"), "--flush-millis", "50"]);
    // No rule yet: the directory starts at once.
    let first = wait_dir_line(Path::new(&a), "the start-logging of A", |v| {
        v["event"] == "start-logging"
    });
    assert_eq!(first["directory"], a.as_str());

    let mut http = Http::connect(port);
    let text = http.call(
        "start-logging",
        json!({"directory": b, "filename_format": "b-%Y%m%d.ndjson"}),
    );
    assert!(text.contains(&b), "{text}");
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let both = rng_payload(1, 40_000);
    let client_both = echo_once(local, &both).to_string();
    wait_dir_line(Path::new(&b), "the close in B", |v| {
        v["event"] == "close" && v["from"] == client_both.as_str()
    });

    let stopped = http.call("stop-logging", json!({"directory": a}));
    assert!(stopped.contains(&a), "{stopped}");
    let only_b = rng_payload(2, 10_000);
    let client_b = echo_once(local, &only_b).to_string();
    wait_dir_line(Path::new(&b), "the close of the second", |v| {
        v["event"] == "close" && v["from"] == client_b.as_str()
    });
    http.call("start-logging", json!({"directory": null}));
    let all = http.call("stop-logging", json!({}));
    assert!(all.contains("stdout") && all.contains(&b), "{all}");
    let lines = parse_lines(&proxy.stop());

    let lines_a = file_lines(Path::new(&a));
    let lines_b = file_lines(Path::new(&b));
    assert_eq!(lines_a.first().unwrap()["event"], "start-logging");
    assert_eq!(lines_a.last().unwrap()["event"], "stop-logging");
    assert_eq!(lines_b.first().unwrap()["event"], "start-logging");
    assert_eq!(
        lines_b.first().unwrap()["filename_format"],
        "b-%Y%m%d.ndjson"
    );
    assert_eq!(lines_b.last().unwrap()["event"], "stop-logging");
    // The shared connection is in both, byte-exact; the second only in B.
    for lines in [&lines_a, &lines_b] {
        assert_eq!(
            data_between(lines, &client_both, &format!("127.0.0.1:{}", target.port())),
            both
        );
    }
    assert!(!lines_a.iter().any(|v| v["from"] == client_b.as_str()));
    assert_eq!(
        data_between(&lines_b, &client_b, &format!("127.0.0.1:{}", target.port())),
        only_b
    );
    // Every traffic line of A is also in B, the same text: encoded once, shared.
    let traffic = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|v| v.get("ConnID").is_some())
            .map(Value::to_string)
            .collect()
    };
    let (ta, tb) = (traffic(&lines_a), traffic(&lines_b));
    assert_eq!(tb[..ta.len()], ta[..]);
    // stdout carried the control events, in order.
    let control: Vec<(String, Value)> = lines
        .iter()
        .filter(|v| v.get("ConnID").is_none() && v["event"] != "mcp-ready")
        .map(|v| {
            (
                v["event"].as_str().unwrap().to_owned(),
                v["directory"].clone(),
            )
        })
        .collect();
    let want = [
        ("start-logging", json!(a)),
        ("start-logging", json!(b)),
        ("stop-logging", json!(a)),
        ("start-logging", Value::Null),
        ("stop-logging", json!(b)),
        ("stop-logging", Value::Null),
    ];
    let want: Vec<(String, Value)> = want.into_iter().map(|(e, d)| (e.to_owned(), d)).collect();
    let mut got = control.clone();
    // The order of the two stops of "stop all" is not part of the contract.
    got[4..].sort_by_key(|(_, d)| d.is_null());
    assert_eq!(got, want, "control events on stdout");
}

#[test]
fn shutdown_tool_shuts_down_like_sigint() {
    let target = echo_server("127.0.0.1");
    let (mut proxy, port) = start_mcp(&["--flush-millis", "10000"]);
    let mut http = Http::connect(port);
    let local = free_port();
    http.call("add-port-rule", rule_args(local, target.port()));
    let mut open_conn = connect(local);
    echo_roundtrip(&mut open_conn, b"open at shutdown");
    let client = open_conn.local_addr().unwrap().to_string();
    let text = http.call("shutdown", json!({}));
    assert!(text.to_lowercase().contains("shutting down"), "{text}");
    let status = proxy.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr: {}", proxy.stderr_text());
    expect_closed(&mut open_conn, "a connection at shutdown");
    let lines = parse_lines(&proxy.all_lines());
    let close = events(&lines, "close");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0]["from"], client.as_str());
    assert_eq!(
        data_between(&lines, &client, &format!("127.0.0.1:{}", target.port())),
        b"open at shutdown"
    );
}

#[test]
fn idle_and_slow_connections_are_closed_after_30_seconds() {
    let (_proxy, port) = start_mcp(&[]);
    let started = Instant::now();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nContent-Le").unwrap();
    let mut trickle = slow.try_clone().unwrap();
    // Slowloris: a byte every few seconds never completes the request.
    let trickler = thread::spawn(move || {
        for b in b"ngth: 2\r\n" {
            thread::sleep(Duration::from_secs(4));
            if trickle.write_all(&[*b]).is_err() {
                break;
            }
        }
    });
    for (stream, what) in [(&mut idle, "idle"), (&mut slow, "slow")] {
        stream
            .set_read_timeout(Some(Duration::from_secs(45)))
            .unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(29),
            "{what} closed after {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(45),
            "{what} still open after {elapsed:?}"
        );
        if what == "slow" {
            assert!(
                got.starts_with(b"HTTP/1.1 408"),
                "{:?}",
                String::from_utf8_lossy(&got)
            );
        } else {
            assert!(got.is_empty());
        }
    }
    trickler.join().unwrap();
}

/// One bad request on its own connection: sends `raw` (then a FIN if
/// `fin`), returns the status and body of the answer.
fn exchange(port: u16, raw: &[u8], fin: bool) -> (u16, Vec<u8>) {
    let mut http = Http::connect(port);
    http.stream.write_all(raw).expect("write request");
    if fin {
        http.stream.shutdown(Shutdown::Write).expect("FIN");
    }
    let response = http.read_response().unwrap_or_else(|| {
        panic!(
            "no answer to {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        )
    });
    (response.status, response.body)
}

/// A request with a JSON body, closing the connection after it.
fn post_closing(body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The kinds of bad request, each with the answer it must get: an HTTP
/// status, and for JSON-RPC errors the code.
fn bad_requests() -> Vec<(Vec<u8>, bool, u16, Option<i64>)> {
    let call = |args: &str| {
        post_closing(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{args}}}"#
        ))
    };
    vec![
        (b"garbage\r\n\r\n".to_vec(), false, 400, None),
        (b"\x00\x01\x02\x03\r\n\r\n".to_vec(), false, 400, None),
        (b"POST /mcp HTTP/1.1\r\nContent-Le".to_vec(), true, 400, None),
        (format!("POST /mcp HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000)).into_bytes(), false, 431, None),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"short\":1}".to_vec(), true, 400, None),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(), false, 400, None),
        (b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(), false, 400, None),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n".to_vec(), false, 413, None),
        (post_closing("{not json"), false, 400, Some(-32700)),
        (post_closing("[1,2,3]"), false, 400, Some(-32600)),
        (post_closing("null"), false, 400, Some(-32600)),
        (post_closing(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), false, 400, Some(-32600)),
        (call(r#""x""#), false, 200, Some(-32602)),
        (call(r#"{"name":"no-such-tool"}"#), false, 200, Some(-32601)),
        (call(r#"{"name":"add-port-rule","arguments":{"local_port":0,"target_host":"h","target_port":1}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"add-port-rule","arguments":{"local_port":[],"target_host":{},"target_port":null}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"stop-logging","arguments":{"directory":42}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"list-connections","arguments":{"limit":-1}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"read-connection","arguments":{"conn_id":5}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"read-connection","arguments":{"conn_id":"zzzzzzzz","side":"server"}}"#), false, 200, Some(-32602)),
        (call(r#"{"name":"read-connection","arguments":{"conn_id":"zzzzzzzz","format":"raw","offset":"x"}}"#), false, 200, Some(-32602)),
        // Issue 18: the log directory holds link cycles, a FIFO, a device
        // and a link to a log outside it (`plant_hostile_entries`); the
        // reading tools answer, and never read outside.
        (call(r#"{"name":"list-connections","arguments":{}}"#), false, 200, None),
        (call(r#"{"name":"read-connection","arguments":{"conn_id":"Outside1"}}"#), false, 200, Some(-32602)),
        (post_closing(r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#), false, 200, Some(-32601)),
        (b"GET /mcp HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), false, 405, None),
        (b"DELETE /mcp HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), false, 405, None),
        (b"POST /elsewhere HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(), false, 404, None),
        (b"POST /mcp HTTP/1.1\r\nOrigin: http://evil.example\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}".to_vec(), false, 403, None),
    ]
}

/// Sends `rounds` rounds of every bad request from 4 threads, checking each answer.
fn abuse(port: u16, rounds: usize) -> usize {
    let kinds = Arc::new(bad_requests());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let kinds = Arc::clone(&kinds);
            thread::spawn(move || {
                let mut sent = 0;
                for round in 0..rounds {
                    for (i, (raw, fin, status, code)) in kinds.iter().enumerate() {
                        if (round * kinds.len() + i) % 4 != t {
                            continue;
                        }
                        let (got, body) = exchange(port, raw, *fin);
                        let what = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
                        assert_eq!(got, *status, "status for {what:?}");
                        if let Some(code) = code {
                            let value: Value =
                                serde_json::from_slice(&body).expect("a JSON-RPC error body");
                            assert_eq!(value["error"]["code"], *code, "code for {what:?}");
                            assert!(
                                value["error"]["message"]
                                    .as_str()
                                    .is_some_and(|m| !m.is_empty())
                            );
                        }
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("abuse thread"))
        .sum()
}

#[test]
fn a_thousand_bad_requests_get_their_errors_and_never_disturb_the_traffic() {
    let target = echo_server("127.0.0.1");
    let logs = TempDir::new("mcp-abuse");
    let dir = logs.join("logs");
    let (proxy, port) = start_mcp(&["--flush-millis", "100"]);
    let local = free_port();
    let mut http = Http::connect(port);
    http.call("add-port-rule", rule_args(local, target.port()));
    // A directory of this run, with one connection and issue 18's hostile
    // entries; stopped, so the traffic below does not grow it and each
    // reading request stays cheap.
    http.call("start-logging", json!({"directory": path_str(&dir)}));
    echo_once(local, b"before the abuse");
    http.call("stop-logging", json!({"directory": path_str(&dir)}));
    let listed = http.rpc(
        "tools/call",
        json!({"name": "list-connections", "arguments": {}}),
    );
    let first = listed["result"]["structuredContent"]["connections"][0]["ConnID"].clone();
    assert!(first.is_string(), "{listed}");
    crate::mcp_read::plant_hostile_entries(&dir, &logs.join("elsewhere"));
    // Warm up, so that the allocator has seen every kind once.
    abuse(port, 3);
    let baseline_kib = rss_kib(proxy.pid());

    // Slowloris connections stay open through the abuse.
    let slow: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /mcp HTTP/1.1\r\nContent-").unwrap();
            s
        })
        .collect();
    let payload = rng_payload(3, 4 * 1024 * 1024);
    let mut stream = connect(local);
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.clone();
    // Traffic flows in slices while the abuse goes on.
    let sender = thread::spawn(move || {
        for chunk in sent.chunks(64 * 1024) {
            writer.write_all(chunk).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // The loop stays responsive: a ping on a keep-alive connection is
    // answered again and again meanwhile.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut http = Http::connect(port);
            let mut pings = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(http.rpc("ping", json!({}))["result"], json!({}));
                pings += 1;
            }
            pings
        })
    };
    let answered = abuse(port, 1000 / bad_requests().len() + 1);
    assert!(answered >= 1000, "{answered}");
    let mut got = vec![0u8; payload.len()];
    stream.read_exact(&mut got).unwrap();
    sender.join().unwrap();
    assert_bytes_eq(&got, &payload, "traffic during the abuse");
    assert!(read_to_end(&mut stream).is_empty());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let pings = pinger.join().expect("pings answered throughout");
    assert!(pings > 0);
    drop(slow);
    // The reading tools still answer, with this run's connections only.
    let listed = http.rpc(
        "tools/call",
        json!({"name": "list-connections", "arguments": {}}),
    );
    let rows = &listed["result"]["structuredContent"]["connections"];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(rows[0]["ConnID"], first);
    let (code, _) = http.call_err("read-connection", json!({"conn_id": "Outside1"}));
    assert_eq!(code, -32602);

    // Memory returns to its baseline once the connections are gone.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now_kib = rss_kib(proxy.pid());
        if now_kib <= baseline_kib + 2048 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS {now_kib} KiB, baseline {baseline_kib} KiB"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The MCP Python SDK's streamable HTTP client and ClientSession drive a
/// whole session (tests/sdk/mcp_client.py). `bash .ci/test` installs the SDK
/// into target/mcp-venv; RAWPROX_MCP_PYTHON may name another interpreter.
#[test]
fn official_python_sdk_drives_rawprox() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("RAWPROX_MCP_PYTHON")
        .unwrap_or_else(|_| path_str(&root.join("target/mcp-venv/bin/python")));
    assert!(
        Path::new(&python).exists(),
        "{python} not found: run `bash .ci/test` (it installs the MCP Python SDK) or set RAWPROX_MCP_PYTHON"
    );
    let logs = TempDir::new("mcp-sdk");
    let dir = path_str(&logs.join("logs"));
    let output = Command::new(&python)
        .arg(root.join("tests/sdk/mcp_client.py"))
        .arg(bin())
        .arg(&dir)
        .output()
        .expect("run the SDK client");
    assert!(
        output.status.success(),
        "SDK client failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
}

fn rng_payload(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Every line of every file in `dir`, in file-name order, parsed and checked.
fn file_lines(dir: &Path) -> Vec<Value> {
    let raw: Vec<String> = dir_lines(dir).into_iter().map(|(_, line)| line).collect();
    parse_lines(&raw)
}
