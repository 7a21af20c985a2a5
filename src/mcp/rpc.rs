//! JSON-RPC 2.0 and the MCP tools (SPEC §7, §9): a request body in, an
//! outcome out. What a tool does to the proxy goes through the `Control`
//! trait, so the dispatcher has no sockets and is tested with a fake. A
//! tool whose answer waits for the log says so in the outcome (`Later`);
//! keeping it until then is the server's job (`server.rs`).

use super::args;
use super::reading::{Capture, Query};
use crate::log::destination::{DestKey, Destination};
use crate::log::filename::{DEFAULT_FILENAME_FORMAT, FilenameFormat};
use crate::proxy::rule::PortRule;
use serde_json::{Map, Value, json};

/// Protocol versions served, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// What the tools can do to the running proxy. Each error is a message for
/// the client (`Port 9000 is already in use`).
pub trait Control {
    fn add_rule(&mut self, rule: PortRule) -> Result<(), String>;
    /// Returns how many open connections were closed.
    fn remove_rule(&mut self, local_port: u16) -> Result<usize, String>;
    fn start_logging(&mut self, destination: Destination) -> Result<(), String>;
    /// `None` stops every destination; returns those stopped. Their last
    /// lines are written by the flush `write_soon` returns.
    fn stop_logging(&mut self, which: Option<DestKey>) -> Result<Vec<DestKey>, String>;
    /// Shut down as on SIGINT, after this answer is sent.
    fn request_shutdown(&mut self);
    /// What the reading tools read (SPEC §9); an error says why there is
    /// nothing (no directory in this run).
    fn capture(&self) -> Result<Capture, String>;
    /// Asks for every line logged so far to be written as soon as it can
    /// be; returns the log flush that writes them.
    fn write_soon(&mut self) -> u64;
}

/// How to answer one message.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// 200 with this JSON-RPC response; `session` when it answers `initialize`.
    Reply { body: Value, session: bool },
    /// 400 with this JSON-RPC error: the body was not a JSON-RPC request.
    Invalid(Value),
    /// 202, no body: a notification or a response from the client.
    Accepted,
    /// A tool whose answer waits until the log's lines so far are written.
    Later(Later),
}

/// A tool's answer that comes later: once log flush `flush` is written
/// (every line logged before the call is then out), `then` gives it.
#[derive(Debug, PartialEq)]
pub struct Later {
    /// The request's id, for the reply.
    pub id: Value,
    pub flush: u64,
    pub then: Then,
}

/// What a `Later` does once its flush is written.
#[derive(Debug, PartialEq)]
pub enum Then {
    /// Reply with this tool result (`stop-logging`, SPEC §7: the stopped
    /// directories' files are whole when it answers).
    Reply(Value),
    /// Read the capture on the reader thread and reply with what it finds
    /// (the reading tools, SPEC §9).
    Read(Query, Capture),
}

/// Handles one POSTed body.
pub fn handle(body: &[u8], control: &mut dyn Control) -> Outcome {
    let message: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Outcome::Invalid(error(
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
            ));
        }
    };
    let Value::Object(message) = message else {
        let why = if message.is_array() {
            "Invalid request: batches are not supported; send one JSON-RPC message"
        } else {
            "Invalid request: expected a JSON-RPC 2.0 object"
        };
        return Outcome::Invalid(error(Value::Null, INVALID_REQUEST, why));
    };
    let id = message.get("id").cloned();
    let id_ok = matches!(id, None | Some(Value::String(_)) | Some(Value::Number(_)));
    let reply_id = if id_ok {
        id.clone().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if message.get("jsonrpc") != Some(&json!("2.0")) || !id_ok {
        let why = "Invalid request: needs \"jsonrpc\": \"2.0\" and a string or number \"id\"";
        return Outcome::Invalid(error(reply_id, INVALID_REQUEST, why));
    }
    let Some(method) = message.get("method") else {
        // A response from the client (to nothing we asked): accept it.
        if id.is_some() && (message.contains_key("result") || message.contains_key("error")) {
            return Outcome::Accepted;
        }
        return Outcome::Invalid(error(
            reply_id,
            INVALID_REQUEST,
            "Invalid request: \"method\" is missing",
        ));
    };
    let Some(method) = method.as_str() else {
        return Outcome::Invalid(error(
            reply_id,
            INVALID_REQUEST,
            "Invalid request: \"method\" must be a string",
        ));
    };
    let Some(id) = id else {
        return Outcome::Accepted; // A notification: nothing to answer.
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    if !(params.is_null() || params.is_object()) {
        return reply(
            id,
            Err((INVALID_PARAMS, "\"params\" must be an object".into())),
            false,
        );
    }
    match method {
        "initialize" => reply(id, Ok(initialize(&params)), true),
        "ping" => reply(id, Ok(json!({})), false),
        "tools/list" => reply(id, Ok(json!({ "tools": tools() })), false),
        "tools/call" => match call_tool(&params, control) {
            Ok(Called::Later(then)) => Outcome::Later(Later {
                id,
                flush: control.write_soon(),
                then,
            }),
            Ok(Called::Now(result)) => reply(id, Ok(result), false),
            Err(e) => reply(id, Err(e), false),
        },
        other => reply(
            id,
            Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
            false,
        ),
    }
}

fn reply(id: Value, result: Result<Value, (i64, String)>, session: bool) -> Outcome {
    match result {
        Ok(result) => Outcome::Reply {
            body: json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            session,
        },
        Err((code, message)) => Outcome::Reply {
            body: error(id, code, &message),
            session: false,
        },
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": {} },
        "serverInfo": { "name": "rawprox", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "rawprox is a capturing TCP proxy. Add port rules to forward and capture traffic; start and stop logging to stdout or to directories of NDJSON files."
    })
}

/// The tools with their JSON Schemas.
pub fn tools() -> Value {
    let port = |what: &str| json!({ "type": "integer", "minimum": 1, "maximum": 65535, "description": what });
    json!([
        {
            "name": "start-logging",
            "description": "Start logging traffic to a destination: a directory of time-rotated NDJSON files, or stdout when directory is null or omitted.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "directory": { "type": ["string", "null"], "description": "Log directory; null or omitted for stdout." },
                    "filename_format": { "type": "string", "description": format!("strftime pattern for file names (%Y %m %d %H %M %S %j %%), default {DEFAULT_FILENAME_FORMAT}. Only with a directory.") }
                },
                "required": []
            }
        },
        {
            "name": "stop-logging",
            "description": "Stop logging to a destination after writing what it has pending. Omit directory to stop all destinations; null stops stdout; a string stops that directory.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "directory": { "type": ["string", "null"], "description": "Directory to stop; null for stdout; omitted for all." }
                },
                "required": []
            }
        },
        {
            "name": "add-port-rule",
            "description": "Listen on local_port (all interfaces) and forward each connection to target_host:target_port, capturing the traffic.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "local_port": port("Port to listen on."),
                    "target_host": { "type": "string", "description": "Host name, IPv4 address or IPv6 address to forward to." },
                    "target_port": port("Port to forward to.")
                },
                "required": ["local_port", "target_host", "target_port"]
            }
        },
        {
            "name": "remove-port-rule",
            "description": "Stop listening on local_port; its open connections are closed and logged.",
            "inputSchema": {
                "type": "object",
                "properties": { "local_port": port("Port of the rule to remove.") },
                "required": ["local_port"]
            }
        },
        {
            "name": "shutdown",
            "description": "Shut rawprox down as on Ctrl-C: close every connection, write every buffered log line, exit.",
            "inputSchema": { "type": "object", "properties": {}, "required": [] }
        },
        {
            "name": "list-connections",
            "description": "The connections this run captured to its log directories, oldest first (the newest `limit`): ConnID, listen port, client, target, open time, duration, bytes each way, how it ended. Every line logged before the call is included. Needs a directory destination (start-logging to a directory first).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "port": port("Only connections of the rule listening on this port."),
                    "limit": { "type": "integer", "minimum": 1, "maximum": 100000, "description": "How many of the newest connections to show (default 100)." }
                },
                "required": []
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "connections": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "ConnID": { "type": "string" },
                                "listen_port": { "type": ["integer", "null"] },
                                "client": { "type": "string" },
                                "target": { "type": "string" },
                                "open_time": { "type": "string" },
                                "close_time": { "type": ["string", "null"] },
                                "duration_seconds": { "type": "number" },
                                "bytes_client_to_target": { "type": "integer" },
                                "bytes_target_to_client": { "type": "integer" },
                                "closed_by": { "type": ["string", "null"], "enum": ["client", "target", null] }
                            },
                            "required": ["ConnID", "listen_port", "client", "target", "open_time", "close_time", "duration_seconds", "bytes_client_to_target", "bytes_target_to_client", "closed_by"]
                        }
                    },
                    "total": { "type": "integer", "description": "Connections in this run's capture (before limit)." }
                },
                "required": ["connections", "total"]
            }
        },
        {
            "name": "read-connection",
            "description": "What crossed the wire on one connection of this run's capture: the conversation in log order, or one side's bytes, from byte offset on, cut at max_bytes (the answer then says so and gives the offset to continue from). Text as text and binary as a hex dump (format text), a hex dump (hex), or base64 (exact bytes).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "conn_id": { "type": "string", "description": "The ConnID, as list-connections shows it." },
                    "side": { "type": "string", "enum": ["client", "target"], "description": "Only the bytes this side sent; omitted for both, in log order." },
                    "offset": { "type": "integer", "minimum": 0, "description": "Bytes to skip, counted over the selected side(s) (default 0)." },
                    "max_bytes": { "type": "integer", "minimum": 1, "maximum": 4194304, "description": "Most bytes in the answer (default 16384)." },
                    "format": { "type": "string", "enum": ["text", "hex", "base64"], "description": "How bytes are shown (default text)." }
                },
                "required": ["conn_id"]
            }
        },
        {
            "name": "replay-connection",
            "description": "Replays one connection of this run's capture to a server (SPEC §10): connects to `to`, sends what the client sent in the captured chunks, and compares the server's answer byte for byte with the captured one. Answers with bytes sent, bytes received of those captured, and a verdict: same, differs at byte N (with both sides around it), shorter, longer, refused, reset or timed out waiting.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "conn_id": { "type": "string", "description": "The ConnID, as list-connections shows it." },
                    "to": { "type": "string", "description": "The server to replay to, HOST:PORT ([v6]:PORT for IPv6)." },
                    "pace": { "type": "string", "enum": ["lockstep", "captured", "fast"], "description": "lockstep (default): wait for each captured answer before the next chunk; captured: the captured timing; fast: as fast as the sockets take." },
                    "wait_ms": { "type": "integer", "minimum": 1, "maximum": 600000, "description": "How long to wait for an answer, and for a server that stays open (default 5000)." }
                },
                "required": ["conn_id", "to"]
            }
        }
    ])
}

/// What a tool call came to.
enum Called {
    /// The result, now.
    Now(Value),
    /// The result comes once the lines logged so far are written.
    Later(Then),
}

/// A tool's result, or its error, as the JSON-RPC reply to `id`.
pub fn tool_reply(id: Value, result: Result<Value, String>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(message) => error(id, INVALID_PARAMS, &message),
    }
}

fn call_tool(params: &Value, control: &mut dyn Control) -> Result<Called, (i64, String)> {
    let invalid = |m: String| (INVALID_PARAMS, m);
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(invalid("tools/call needs \"name\", a string".into()));
    };
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(args)) => args,
        Some(_) => return Err(invalid("\"arguments\" must be an object".into())),
    };
    let tools = tools();
    let Some(tool) = tools
        .as_array()
        .and_then(|all| all.iter().find(|tool| tool["name"] == name))
    else {
        return Err((METHOD_NOT_FOUND, format!("Unknown tool: {name}")));
    };
    args::check(name, &tool["inputSchema"], args).map_err(invalid)?;
    let read = |query: Result<Query, String>, control: &mut dyn Control| {
        let query = query.map_err(invalid)?;
        let capture = control.capture().map_err(invalid)?;
        Ok(Called::Later(Then::Read(query, capture)))
    };
    let text = match name {
        "list-connections" => return read(Query::list(args), control),
        "read-connection" => return read(Query::read(args), control),
        "replay-connection" => return read(Query::replay(args), control),
        // SPEC §7: it answers once the stopped destinations are written.
        "stop-logging" => {
            let text = stop_logging(args, control).map_err(invalid)?;
            return Ok(Called::Later(Then::Reply(text_result(&text))));
        }
        "start-logging" => start_logging(args, control),
        "add-port-rule" => add_port_rule(args, control),
        "remove-port-rule" => {
            let port = port_arg(args, "local_port")?;
            control.remove_rule(port).map(|closed| {
                format!("Port rule on port {port} removed ({closed} open connections closed)")
            })
        }
        "shutdown" => {
            control.request_shutdown();
            Ok(
                "Shutting down: closing every connection and writing every buffered log line"
                    .into(),
            )
        }
        other => return Err((METHOD_NOT_FOUND, format!("Unknown tool: {other}"))),
    }
    .map_err(invalid)?;
    Ok(Called::Now(text_result(&text)))
}

/// A successful tool result: one sentence saying what was done (SPEC §7).
fn text_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }] })
}

fn port_arg(args: &Map<String, Value>, name: &str) -> Result<u16, (i64, String)> {
    let value = args
        .get(name)
        .ok_or_else(|| (INVALID_PARAMS, format!("missing argument {name}")))?;
    args::port(name, value).map_err(|m| (INVALID_PARAMS, m))
}

fn add_port_rule(args: &Map<String, Value>, control: &mut dyn Control) -> Result<String, String> {
    let local = port_arg(args, "local_port").map_err(|e| e.1)?;
    let port = port_arg(args, "target_port").map_err(|e| e.1)?;
    let host = match args.get("target_host") {
        Some(Value::String(h)) => h.trim(),
        Some(other) => return Err(format!("target_host must be a string, not {other}")),
        None => return Err("missing argument target_host".into()),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let rule = PortRule::parse(&format!("{local}:{host}:{port}"))?;
    let shown = format!("{} -> {}", rule.local_port, rule.target_display());
    control.add_rule(rule)?;
    Ok(format!("Port rule added: {shown}"))
}

/// `directory`: a string, null or omitted, each with its own meaning.
enum DirectoryArg {
    Omitted,
    Stdout,
    Dir(String),
}

fn directory_arg(args: &Map<String, Value>) -> Result<DirectoryArg, String> {
    match args.get("directory") {
        None => Ok(DirectoryArg::Omitted),
        Some(Value::Null) => Ok(DirectoryArg::Stdout),
        Some(Value::String(d)) if !d.is_empty() => Ok(DirectoryArg::Dir(d.clone())),
        Some(other) => Err(format!(
            "directory must be a non-empty string or null, not {other}"
        )),
    }
}

fn start_logging(args: &Map<String, Value>, control: &mut dyn Control) -> Result<String, String> {
    let format = match args.get("filename_format") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.as_str()),
        Some(other) => return Err(format!("filename_format must be a string, not {other}")),
    };
    match directory_arg(args)? {
        DirectoryArg::Omitted | DirectoryArg::Stdout => {
            if format.is_some() {
                return Err("filename_format needs a directory".into());
            }
            control.start_logging(Destination::Stdout)?;
            Ok("Logging to stdout started".into())
        }
        DirectoryArg::Dir(dir) => {
            let format = FilenameFormat::parse(format.unwrap_or(DEFAULT_FILENAME_FORMAT))
                .map_err(|why| format!("invalid filename_format: {why}"))?;
            let text = format!(
                "Logging to directory '{dir}' started (file names {})",
                format.source()
            );
            control.start_logging(Destination::Directory { dir, format })?;
            Ok(text)
        }
    }
}

fn stop_logging(args: &Map<String, Value>, control: &mut dyn Control) -> Result<String, String> {
    let which = match directory_arg(args)? {
        DirectoryArg::Omitted => None,
        DirectoryArg::Stdout => Some(DestKey::Stdout),
        DirectoryArg::Dir(dir) => Some(DestKey::Dir(dir)),
    };
    let stopped = control.stop_logging(which)?;
    if stopped.is_empty() {
        return Ok("No log destination was active".into());
    }
    let names: Vec<String> = stopped.iter().map(DestKey::describe).collect();
    Ok(format!("Logging stopped: {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the tools asked for; fails on cue.
    #[derive(Default)]
    struct FakeControl {
        rules: Vec<PortRule>,
        destinations: Vec<DestKey>,
        shut_down: bool,
    }

    impl Control for FakeControl {
        fn add_rule(&mut self, rule: PortRule) -> Result<(), String> {
            if self.rules.iter().any(|r| r.local_port == rule.local_port) {
                return Err(format!("Port {} is already in use", rule.local_port));
            }
            self.rules.push(rule);
            Ok(())
        }
        fn remove_rule(&mut self, port: u16) -> Result<usize, String> {
            let before = self.rules.len();
            self.rules.retain(|r| r.local_port != port);
            if before == self.rules.len() {
                Err(format!("No port rule on port {port}"))
            } else {
                Ok(0)
            }
        }
        fn start_logging(&mut self, d: Destination) -> Result<(), String> {
            self.destinations.push(d.key());
            Ok(())
        }
        fn stop_logging(&mut self, which: Option<DestKey>) -> Result<Vec<DestKey>, String> {
            match which {
                None => Ok(std::mem::take(&mut self.destinations)),
                Some(key) if self.destinations.contains(&key) => {
                    self.destinations.retain(|d| *d != key);
                    Ok(vec![key])
                }
                Some(key) => Err(format!("not logging to {}", key.describe())),
            }
        }
        fn capture(&self) -> Result<Capture, String> {
            Err("no directory destination in this run: start-logging to a directory first".into())
        }
        fn write_soon(&mut self) -> u64 {
            0
        }
        fn request_shutdown(&mut self) {
            self.shut_down = true;
        }
    }

    /// The reply to `body`; one that waits for the log gets it at once, as
    /// after its flush.
    fn call(control: &mut FakeControl, body: Value) -> Value {
        match handle(body.to_string().as_bytes(), control) {
            Outcome::Reply { body, .. } => body,
            Outcome::Later(Later {
                id,
                then: Then::Reply(result),
                ..
            }) => tool_reply(id, Ok(result)),
            other => panic!("{other:?}"),
        }
    }

    fn tool(control: &mut FakeControl, name: &str, args: Value) -> Value {
        call(
            control,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":args}}),
        )
    }

    #[test]
    fn initialize_negotiates_the_version() {
        let mut c = FakeControl::default();
        for (asked, got) in [
            ("2024-11-05", "2024-11-05"),
            ("2025-03-26", "2025-03-26"),
            ("2025-06-18", "2025-06-18"),
            ("1999-01-01", "2025-06-18"),
        ] {
            let body = json!({"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":asked,"capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
            match handle(body.to_string().as_bytes(), &mut c) {
                Outcome::Reply { body, session } => {
                    assert!(session);
                    assert_eq!(body["id"], "a");
                    assert_eq!(body["result"]["protocolVersion"], got);
                    assert_eq!(body["result"]["serverInfo"]["name"], "rawprox");
                    assert_eq!(body["result"]["capabilities"], json!({"tools":{}}));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn tools_list_has_the_seven_tools() {
        let mut c = FakeControl::default();
        let r = call(
            &mut c,
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        );
        let tools = r["result"]["tools"].as_array().unwrap();
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
        for t in tools {
            assert_eq!(t["inputSchema"]["type"], "object");
            assert!(t["inputSchema"]["properties"].is_object());
            assert!(t["inputSchema"]["required"].is_array());
            assert!(t["description"].is_string());
        }
        assert_eq!(
            tools[2]["inputSchema"]["required"],
            json!(["local_port", "target_host", "target_port"])
        );
    }

    #[test]
    fn tools_act_and_answer_in_text() {
        let mut c = FakeControl::default();
        let r = tool(
            &mut c,
            "add-port-rule",
            json!({"local_port":9000,"target_host":"api.example.com","target_port":443}),
        );
        assert_eq!(
            r["result"]["content"][0]["text"],
            "Port rule added: 9000 -> api.example.com:443"
        );
        let r = tool(
            &mut c,
            "add-port-rule",
            json!({"local_port":"9001","target_host":"::1","target_port":80}),
        );
        assert_eq!(
            r["result"]["content"][0]["text"],
            "Port rule added: 9001 -> [::1]:80"
        );
        let r = tool(
            &mut c,
            "add-port-rule",
            json!({"local_port":9000,"target_host":"x","target_port":1}),
        );
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        assert_eq!(r["error"]["message"], "Port 9000 is already in use");
        let r = tool(&mut c, "remove-port-rule", json!({"local_port":9000}));
        assert!(
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("9000")
        );
        let r = tool(&mut c, "remove-port-rule", json!({"local_port":9000}));
        assert_eq!(r["error"]["message"], "No port rule on port 9000");

        tool(&mut c, "start-logging", json!({"directory":"./logs"}));
        tool(&mut c, "start-logging", json!({"directory":null}));
        tool(&mut c, "start-logging", json!({}));
        assert_eq!(
            c.destinations,
            [
                DestKey::Dir("./logs".into()),
                DestKey::Stdout,
                DestKey::Stdout
            ]
        );
        let r = tool(&mut c, "stop-logging", json!({"directory":null}));
        assert_eq!(r["result"]["content"][0]["text"], "Logging stopped: stdout");
        let r = tool(&mut c, "stop-logging", json!({}));
        assert!(
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("./logs")
        );
        let r = tool(&mut c, "shutdown", json!({}));
        assert!(r["result"]["content"][0]["text"].is_string());
        assert!(c.shut_down);
    }

    /// SPEC §7: the id exactly as sent, any JSON string or number.
    #[test]
    fn the_id_comes_back_exactly_as_sent() {
        let mut c = FakeControl::default();
        for id in ["18446744073709551616", "-5", "1.50", r#""x\u00e9""#, "0"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let Outcome::Reply { body, .. } = handle(body.as_bytes(), &mut c) else {
                panic!("no reply for id {id}");
            };
            let text = body.to_string();
            let want = if id.starts_with('"') {
                r#""id":"xé""#.to_string()
            } else {
                format!(r#""id":{id}"#)
            };
            assert!(text.contains(&want), "{id}: {text}");
        }
    }

    #[test]
    fn reading_tools_answer_later_or_say_what_to_do() {
        let mut c = FakeControl::default();
        let r = tool(&mut c, "list-connections", json!({}));
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("start-logging to a directory first"),
            "{r}"
        );
        let r = tool(&mut c, "read-connection", json!({"conn_id": "nope"}));
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        struct Reads;
        impl Control for Reads {
            fn add_rule(&mut self, _: PortRule) -> Result<(), String> {
                unreachable!()
            }
            fn remove_rule(&mut self, _: u16) -> Result<usize, String> {
                unreachable!()
            }
            fn start_logging(&mut self, _: Destination) -> Result<(), String> {
                unreachable!()
            }
            fn stop_logging(&mut self, _: Option<DestKey>) -> Result<Vec<DestKey>, String> {
                unreachable!()
            }
            fn request_shutdown(&mut self) {}
            fn capture(&self) -> Result<Capture, String> {
                Ok(Capture {
                    directories: vec!["d".into()],
                    run_started_micros: 1,
                })
            }
            fn write_soon(&mut self) -> u64 {
                3
            }
        }
        let body = json!({"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"list-connections","arguments":{}}});
        assert_eq!(
            handle(body.to_string().as_bytes(), &mut Reads),
            Outcome::Later(Later {
                id: json!("q"),
                flush: 3,
                then: Then::Read(
                    Query::List {
                        port: None,
                        limit: 100
                    },
                    Reads.capture().unwrap()
                )
            })
        );
        let list = &tools()[5];
        assert_eq!(list["outputSchema"]["type"], "object");
        assert_eq!(
            tool_reply(json!(1), Err("unknown ConnID".into()))["error"]["code"],
            INVALID_PARAMS
        );
    }

    #[test]
    fn bad_arguments_are_invalid_params() {
        let mut c = FakeControl::default();
        let cases = [
            (
                "add-port-rule",
                json!({"local_port":0,"target_host":"h","target_port":1}),
                "local_port",
            ),
            (
                "add-port-rule",
                json!({"local_port":1,"target_host":5,"target_port":1}),
                "target_host",
            ),
            (
                "add-port-rule",
                json!({"local_port":1,"target_port":1}),
                "target_host",
            ),
            (
                "add-port-rule",
                json!({"local_port":1,"target_host":"a b","target_port":1}),
                "not a valid host name",
            ),
            (
                "add-port-rule",
                json!({"local_port":1,"target_host":"h","target_port":70000}),
                "target_port",
            ),
            ("remove-port-rule", json!({}), "local_port"),
            (
                "remove-port-rule",
                json!({"local_port":" 20002"}),
                "local_port",
            ),
            (
                "remove-port-rule",
                json!({"local_port":"+20009"}),
                "local_port",
            ),
            ("remove-port-rule", json!({"local_port":""}), "local_port"),
            (
                "remove-port-rule",
                json!({"local_port":"1e3"}),
                "local_port",
            ),
            ("start-logging", json!({"directory":7}), "directory"),
            (
                "start-logging",
                json!({"directory":"d","filename_format":"/etc/../tmp/x.ndjson"}),
                "inside the log directory",
            ),
            (
                "start-logging",
                json!({"directory":"d","filename_format":"%Y/"}),
                "inside the log directory",
            ),
            (
                "start-logging",
                json!({"directory":"d","filename_format":"%Q"}),
                "'%Q'",
            ),
            (
                "start-logging",
                json!({"filename_format":"x"}),
                "needs a directory",
            ),
            (
                "stop-logging",
                json!({"directory":"nope"}),
                "not logging to",
            ),
            // SPEC §7: every missing argument named, an unknown one refused.
            (
                "add-port-rule",
                json!({}),
                "missing arguments local_port, target_host, target_port",
            ),
            (
                "add-port-rule",
                json!({"port":9000,"target_host":"h","target_port":1}),
                r#"unknown argument "port" (add-port-rule takes local_port, target_host, target_port); missing argument local_port"#,
            ),
            (
                "shutdown",
                json!({"now":true}),
                "shutdown takes no arguments",
            ),
            ("list-connections", json!({"ports":80}), r#""ports""#),
            (
                "read-connection",
                json!({"id":"0tK3XaB9"}),
                "missing argument conn_id",
            ),
        ];
        for (name, args, want) in cases {
            let r = tool(&mut c, name, args.clone());
            assert_eq!(r["error"]["code"], INVALID_PARAMS, "{name} {args}");
            let message = r["error"]["message"].as_str().unwrap();
            assert!(message.contains(want), "{name} {args}: {message}");
        }
        let r = call(
            &mut c,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}),
        );
        assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
        let r = call(
            &mut c,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shutdown","arguments":[]}}),
        );
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let r = call(
            &mut c,
            json!({"jsonrpc":"2.0","id":1,"method":"resources/list"}),
        );
        assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
        assert!(!c.shut_down);
    }

    #[test]
    fn malformed_messages() {
        let mut c = FakeControl::default();
        let invalid = |body: &[u8], c: &mut FakeControl| match handle(body, c) {
            Outcome::Invalid(v) => v["error"]["code"].as_i64().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(invalid(b"{not json", &mut c), PARSE_ERROR);
        assert_eq!(invalid(b"", &mut c), PARSE_ERROR);
        assert_eq!(invalid(b"[]", &mut c), INVALID_REQUEST);
        assert_eq!(invalid(b"42", &mut c), INVALID_REQUEST);
        assert_eq!(
            invalid(br#"{"id":1,"method":"ping"}"#, &mut c),
            INVALID_REQUEST
        );
        assert_eq!(
            invalid(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, &mut c),
            INVALID_REQUEST
        );
        assert_eq!(
            invalid(br#"{"jsonrpc":"2.0","id":1,"method":5}"#, &mut c),
            INVALID_REQUEST
        );
        assert_eq!(
            invalid(br#"{"jsonrpc":"2.0","id":1}"#, &mut c),
            INVALID_REQUEST
        );
        assert_eq!(
            handle(
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &mut c
            ),
            Outcome::Accepted
        );
        assert_eq!(
            handle(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#, &mut c),
            Outcome::Accepted
        );
        let r = call(
            &mut c,
            json!({"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}),
        );
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let r = call(&mut c, json!({"jsonrpc":"2.0","id":9,"method":"ping"}));
        assert_eq!(r, json!({"jsonrpc":"2.0","id":9,"result":{}}));
    }
}
