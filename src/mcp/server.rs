//! The MCP server's half that runs on the event loop (SPEC §7, §9): it
//! takes each connection the loop accepted on the MCP port, answers its
//! requests one at a time, keeps an answer that waits (for a log flush to
//! be written, then perhaps for the reader thread) with its connection, and
//! closes connections left idle. The loop lends it what it needs through
//! `Host`: the proxy the tools change, the slots the connections live in,
//! and how far the log is written.

use super::conn::{Answer, McpConn, Next, Pending, Step};
use super::http::{self, Request};
use super::reading::Reader;
use super::rpc::{self, Control, Outcome, Then};
use crate::format::time::now_micros;
use mio::net::TcpStream;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// SPEC §7: the most the server holds, in all, for clients that do not
/// read their answers (a `read-connection` answer can be 21 MB).
pub const HELD_BUDGET: usize = 32 * 1024 * 1024;

/// What the server needs from the loop that runs it.
pub trait Host: Control {
    fn server(&self) -> &Server;
    fn server_mut(&mut self) -> &mut Server;
    /// The MCP connection in slot `key`, if that slot still holds one.
    fn conn(&self, key: usize) -> Option<&McpConn>;
    fn conn_mut(&mut self, key: usize) -> Option<&mut McpConn>;
    /// Puts `conn` in a slot watched for reads and writes and returns its
    /// key; `None` when it cannot be watched (dropping it closes it).
    fn insert_conn(&mut self, conn: McpConn) -> Option<usize>;
    /// Stops watching the connection in slot `key` and frees the slot.
    fn remove_conn(&mut self, key: usize);
    /// How many log flushes the writer has finished.
    fn flushed_through(&self) -> u64;
}

/// The server's own state; its connections live in the loop's slots.
pub struct Server {
    /// Slot keys of the open connections.
    conns: Vec<usize>,
    /// The thread that reads captures for the reading tools, once used.
    reader: Option<Reader>,
    /// Tags the queries handed to the reader.
    next_tag: u64,
    /// Wakes the loop; the reader calls it with each answer.
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Server {
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Server {
        Server {
            conns: Vec::new(),
            reader: None,
            next_tag: 0,
            wake,
        }
    }

    /// The reader threads, started on first use.
    fn reader(&mut self) -> std::io::Result<&mut Reader> {
        if self.reader.is_none() {
            self.reader = Some(Reader::spawn(Arc::clone(&self.wake))?);
        }
        Ok(self.reader.as_mut().expect("just started"))
    }
}

/// What a request came to.
pub enum Response {
    /// The answer, to send now.
    Now(Answer),
    /// An answer that waits; the connection keeps it until it is ready.
    Later(Pending),
}

/// A new `Mcp-Session-Id`: the server keeps no state per session, so it
/// only needs to be unique (SPEC §7).
fn new_session_id() -> String {
    static SESSIONS: AtomicU64 = AtomicU64::new(0);
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:08x}", now_micros())
}

/// The answer carrying the JSON-RPC message `body`; one that does not fit
/// in `room` bytes (what is left of `HELD_BUDGET`) becomes a `-32602` error
/// to the same request, saying to ask for less (SPEC §7).
fn json_answer(
    status: u16,
    extra: &[(&str, &str)],
    body: &Value,
    keep_alive: bool,
    room: usize,
) -> Answer {
    let mut text = body.to_string();
    if text.len() > room {
        let id = body.get("id").cloned().unwrap_or(Value::Null);
        let message = format!(
            "the answer is {} bytes, more than the {room} bytes the MCP server can still hold \
             for clients that have not read their answers ({} MiB in all): ask for less \
             (a smaller max_bytes or limit), or read the answers already sent",
            text.len(),
            HELD_BUDGET >> 20
        );
        text = rpc::tool_reply(id, Err(message)).to_string();
    }
    Answer {
        bytes: http::response(status, extra, text.as_bytes(), true, keep_alive),
        keep_alive,
    }
}

/// Bytes the connections hold for their clients: answers not yet written.
fn held(host: &impl Host) -> usize {
    host.server()
        .conns
        .iter()
        .filter_map(|&key| host.conn(key))
        .map(McpConn::unsent)
        .sum()
}

/// What is left of `HELD_BUDGET`.
fn room(host: &impl Host) -> usize {
    HELD_BUDGET.saturating_sub(held(host))
}

/// Answers one complete request: HTTP checks, then the JSON-RPC message,
/// whose answer must fit in `room` bytes.
pub fn respond(req: &Request, control: &mut dyn Control, room: usize) -> Response {
    let keep_alive = req.keep_alive;
    let plain = |status: u16, extra: &[(&str, &str)], text: &str| {
        Response::Now(Answer {
            bytes: http::response(status, extra, text.as_bytes(), false, keep_alive),
            keep_alive,
        })
    };
    if !http::origin_allowed(req.origin.as_deref()) {
        return plain(403, &[], "Forbidden: Origin is not a localhost origin\n");
    }
    if req.path != "/mcp" {
        return plain(404, &[], "Not found: the MCP endpoint is /mcp\n");
    }
    if req.method != "POST" {
        // No server-initiated stream (GET) and no session to delete.
        return plain(
            405,
            &[("Allow", "POST")],
            "Method not allowed: POST one JSON-RPC message to /mcp\n",
        );
    }
    let json = |status: u16, extra: &[(&str, &str)], body: &Value| {
        Response::Now(json_answer(status, extra, body, keep_alive, room))
    };
    match rpc::handle(&req.body, control) {
        Outcome::Reply {
            body,
            session: true,
        } => json(200, &[("Mcp-Session-Id", &new_session_id())], &body),
        Outcome::Reply {
            body,
            session: false,
        } => json(200, &[], &body),
        Outcome::Invalid(body) => json(400, &[], &body),
        Outcome::Accepted => Response::Now(Answer {
            bytes: http::response(202, &[], b"", false, keep_alive),
            keep_alive,
        }),
        Outcome::Later(later) => Response::Later(Pending {
            id: later.id,
            keep_alive,
            step: Step::Flush {
                flush: later.flush,
                then: later.then,
            },
        }),
    }
}

/// Takes a connection the loop accepted on the MCP port and serves it.
pub fn welcome(host: &mut impl Host, socket: TcpStream) {
    let Some(key) = host.insert_conn(McpConn::new(socket, Instant::now())) else {
        return;
    };
    host.server_mut().conns.push(key);
    serve(host, key);
}

/// Called on each readiness event of the connection in slot `key` and
/// after its pending answer is sent: writes what is queued, then answers
/// every whole request it has, one at a time, until it would block, waits
/// for an answer, or is done.
pub fn serve(host: &mut impl Host, key: usize) {
    loop {
        let Some(conn) = host.conn_mut(key) else {
            return;
        };
        let request = match conn.next(Instant::now()) {
            Next::Wait => return,
            Next::Close => return close(host, key),
            Next::Request(request) => request,
        };
        let room = room(host);
        let response = respond(&request, host, room);
        let Some(conn) = host.conn_mut(key) else {
            return;
        };
        match response {
            Response::Now(answer) => conn.send(answer),
            Response::Later(pending) => {
                conn.pending = Some(pending);
                // SPEC §7, §9: when what it waits for is written already
                // (nothing was pending), it goes on at once.
                advance(host, key);
            }
        }
    }
}

/// Moves the pending answer of the connection in slot `key` on once its
/// flush is written: sends a ready reply (SPEC §7: `stop-logging`), or
/// hands a query to the reader thread (SPEC §9). Sending is left to the
/// caller's next `serve`.
fn advance(host: &mut impl Host, key: usize) {
    let written = host.flushed_through();
    let room = room(host);
    let Some(conn) = host.conn_mut(key) else {
        return;
    };
    let (id, keep_alive, then) = match conn.pending.take() {
        Some(Pending {
            id,
            keep_alive,
            step: Step::Flush { flush, then },
        }) if flush <= written => (id, keep_alive, then),
        not_yet => {
            conn.pending = not_yet;
            return;
        }
    };
    let (query, capture) = match then {
        Then::Reply(result) => {
            let body = rpc::tool_reply(id, Ok(result));
            return conn.send(json_answer(200, &[], &body, keep_alive, room));
        }
        Then::Read(query, capture) => (query, capture),
    };
    let server = host.server_mut();
    let tag = server.next_tag;
    server.next_tag += 1;
    let submitted = server
        .reader()
        .map(|reader| reader.submit(tag, query, capture));
    let Some(conn) = host.conn_mut(key) else {
        return;
    };
    match submitted {
        Ok(()) => {
            conn.pending = Some(Pending {
                id,
                keep_alive,
                step: Step::Reading { tag },
            })
        }
        Err(e) => {
            let body = rpc::tool_reply(id, Err(format!("cannot read: {e}")));
            conn.send(json_answer(200, &[], &body, keep_alive, room));
        }
    }
}

/// Called when the log writer has finished a flush: moves on the answers
/// that waited for it.
pub fn on_flush_written(host: &mut impl Host) {
    let written = host.flushed_through();
    let due: Vec<usize> = host
        .server()
        .conns
        .iter()
        .copied()
        .filter(|&key| {
            matches!(host.conn(key).and_then(|c| c.pending.as_ref()),
                Some(Pending { step: Step::Flush { flush, .. }, .. }) if *flush <= written)
        })
        .collect();
    for key in due {
        advance(host, key);
        serve(host, key);
    }
}

/// Called when the loop is woken: answers the queries the reader thread
/// has finished.
pub fn on_reader_answers(host: &mut impl Host) {
    let Some(reader) = &host.server().reader else {
        return;
    };
    let done: Vec<_> = reader.answers.try_iter().collect();
    for (tag, result) in done {
        let waiting = |key: &usize| {
            matches!(host.conn(*key).and_then(|c| c.pending.as_ref()),
                Some(Pending { step: Step::Reading { tag: t }, .. }) if *t == tag)
        };
        let Some(key) = host.server().conns.iter().copied().find(waiting) else {
            continue; // Its connection closed meanwhile.
        };
        let room = room(host);
        let conn = host.conn_mut(key).expect("found above");
        let pending = conn.pending.take().expect("found above");
        let body = rpc::tool_reply(pending.id, result);
        conn.send(json_answer(200, &[], &body, pending.keep_alive, room));
        serve(host, key);
    }
}

/// The earliest idle deadline of the connections.
pub fn deadline(host: &impl Host) -> Option<Instant> {
    host.server()
        .conns
        .iter()
        .filter_map(|&key| host.conn(key)?.deadline())
        .min()
}

/// SPEC §7: a connection idle for 30 s is closed.
pub fn close_idle(host: &mut impl Host, now: Instant) {
    let expired: Vec<usize> = host
        .server()
        .conns
        .iter()
        .copied()
        .filter(|&key| {
            host.conn(key)
                .and_then(McpConn::deadline)
                .is_some_and(|d| d <= now)
        })
        .collect();
    for key in expired {
        if let Some(conn) = host.conn_mut(key) {
            conn.time_out();
        }
        close(host, key);
    }
}

/// Frees a connection, and with it any answer it was waiting for.
fn close(host: &mut impl Host, key: usize) {
    host.remove_conn(key);
    host.server_mut().conns.retain(|&k| k != key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body_of(answer: &Answer) -> Value {
        let text = String::from_utf8_lossy(&answer.bytes).into_owned();
        let (_, body) = text.split_once("\r\n\r\n").expect("a head");
        serde_json::from_str(body).expect("a JSON body")
    }

    #[test]
    fn an_answer_past_the_budget_is_an_error_to_the_same_request() {
        let reply = rpc::tool_reply(json!("r1"), Ok(json!({"text": "x".repeat(1000)})));
        let fits = json_answer(200, &[], &reply, true, 2000);
        assert_eq!(body_of(&fits), reply);
        let refused = body_of(&json_answer(200, &[], &reply, true, 999));
        assert_eq!(refused["id"], "r1");
        assert_eq!(refused["error"]["code"], rpc::INVALID_PARAMS);
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("ask for less"), "{message}");
    }
}
