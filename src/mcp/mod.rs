//! The MCP control server on the event loop (SPEC §7): its connections'
//! buffers, keep-alive, and idle deadline. Framing is `http.rs`, the
//! JSON-RPC dispatch `rpc.rs`; `respond` joins them without sockets.

pub mod http;
pub mod reading;
pub mod rpc;

use crate::log::timefmt::now_micros;
use http::{Parsed, Request};
use mio::net::TcpStream;
use rpc::{Control, Outcome};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// SPEC §7: a connection idle this long is closed; a request must also
/// arrive whole within this time of its first byte (no slowloris).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from an MCP socket per call.
const READ_SIZE: usize = 16 * 1024;

/// The answer to one request: response bytes, and whether the connection
/// stays open after them. Empty `bytes` and `later`: it comes later.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub keep_alive: bool,
    /// The id of a request whose answer comes later (`Outcome::Later`).
    pub later: Option<serde_json::Value>,
}

impl Answer {
    /// A JSON-RPC message, 200.
    pub fn json(body: &serde_json::Value, keep_alive: bool) -> Answer {
        let bytes = http::response(200, &[], body.to_string().as_bytes(), true, keep_alive);
        Answer {
            bytes,
            keep_alive,
            later: None,
        }
    }
}

/// A new `Mcp-Session-Id`: the server keeps no state per session, so it
/// only needs to be unique (SPEC §7).
fn new_session_id() -> String {
    static SESSIONS: AtomicU64 = AtomicU64::new(0);
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:08x}", now_micros())
}

/// Answers one complete request: HTTP checks, then the JSON-RPC message.
pub fn respond(req: &Request, control: &mut dyn Control) -> Answer {
    let keep_alive = req.keep_alive;
    let plain = |status: u16, extra: &[(&str, &str)], text: &str| Answer {
        bytes: http::response(status, extra, text.as_bytes(), false, keep_alive),
        keep_alive,
        later: None,
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
    let json = |status: u16, extra: &[(&str, &str)], body: &serde_json::Value| Answer {
        bytes: http::response(status, extra, body.to_string().as_bytes(), true, keep_alive),
        keep_alive,
        later: None,
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
        Outcome::Accepted => Answer {
            bytes: http::response(202, &[], b"", false, keep_alive),
            keep_alive,
            later: None,
        },
        Outcome::Later(id) => Answer {
            bytes: Vec::new(),
            keep_alive,
            later: Some(id),
        },
    }
}

/// One HTTP connection to the MCP endpoint.
pub struct McpConn {
    pub socket: TcpStream,
    /// Bytes read and not yet parsed; bounded by the limits of `http::parse`.
    input: Vec<u8>,
    /// Response bytes not yet written.
    output: Vec<u8>,
    written: usize,
    last_activity: Instant,
    /// When the first byte of the request in `input` arrived.
    request_started: Option<Instant>,
    /// Close once `output` is written (rejected request, `Connection: close`).
    close_when_written: bool,
    /// The peer ended its side.
    eof: bool,
    /// The answer to the last request is not ready yet (it waits for the
    /// log to be written): nothing is read or parsed until `send`.
    awaiting: bool,
}

/// What a connection needs next.
pub enum Next {
    /// A whole request to answer with `respond`.
    Request(Request),
    /// Nothing to do until the socket is ready again.
    Wait,
    /// Done: deregister and free it.
    Close,
}

impl McpConn {
    pub fn new(socket: TcpStream, now: Instant) -> Self {
        McpConn {
            socket,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            last_activity: now,
            request_started: None,
            close_when_written: false,
            eof: false,
            awaiting: false,
        }
    }

    /// When this connection is closed if nothing happens; none while its
    /// answer is being prepared.
    pub fn deadline(&self) -> Option<Instant> {
        if self.awaiting {
            return None;
        }
        Some(match self.request_started {
            Some(start) => start + IDLE_TIMEOUT,
            None => self.last_activity + IDLE_TIMEOUT,
        })
    }

    /// Queues a response; `close` ends the connection once it is written.
    pub fn send(&mut self, answer: Answer) {
        self.output.extend_from_slice(&answer.bytes);
        self.close_when_written |= !answer.keep_alive;
        self.awaiting = false;
    }

    /// The answer to the request just taken comes later, with `send`.
    pub fn await_answer(&mut self) {
        self.awaiting = true;
    }

    /// Called on each readiness event and after each answer: writes what is
    /// queued, then reads until a request is whole or the socket would
    /// block. One request at a time: nothing more is parsed while an answer
    /// is unsent.
    pub fn next(&mut self, now: Instant) -> Next {
        match self.write_output(now) {
            Ok(true) => {}
            Ok(false) => return Next::Wait,
            Err(_) => return Next::Close,
        }
        if self.close_when_written {
            return Next::Close;
        }
        if self.awaiting {
            return Next::Wait;
        }
        loop {
            let parsed = match http::parse(&self.input) {
                Parsed::Incomplete if self.eof && self.input.is_empty() => return Next::Close,
                // The peer ended mid-request: say so before closing.
                Parsed::Incomplete if self.eof => {
                    Parsed::Reject(400, "request ended before it was complete")
                }
                parsed => parsed,
            };
            match parsed {
                Parsed::Complete(req, used) => {
                    self.input.drain(..used);
                    self.request_started = (!self.input.is_empty()).then_some(now);
                    return Next::Request(req);
                }
                Parsed::Reject(status, why) => {
                    self.input = Vec::new();
                    let bytes =
                        http::response(status, &[], format!("{why}\n").as_bytes(), false, false);
                    self.send(Answer {
                        bytes,
                        keep_alive: false,
                        later: None,
                    });
                    return self.next(now);
                }
                Parsed::Incomplete => {}
            }
            match self.read_some(now) {
                Ok(true) => continue,
                Ok(false) => return Next::Wait,
                Err(_) => return Next::Close,
            }
        }
    }

    /// Closes a connection that missed its deadline: a half-sent request
    /// gets 408 first (best effort).
    pub fn time_out(&mut self) {
        if self.request_started.is_some() && self.output.is_empty() {
            let bytes = http::response(408, &[], b"request not completed in time\n", false, false);
            let _ = self.socket.write(&bytes);
        }
    }

    /// Writes queued output; true when all of it is out.
    fn write_output(&mut self, now: Instant) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.socket.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.last_activity = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output = Vec::new();
        self.written = 0;
        Ok(true)
    }

    /// Reads one chunk into `input`; false when the socket would block.
    fn read_some(&mut self, now: Instant) -> io::Result<bool> {
        let mut chunk = [0u8; READ_SIZE];
        loop {
            match self.socket.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    if self.input.is_empty() {
                        self.request_started = Some(now);
                    }
                    self.input.extend_from_slice(&chunk[..n]);
                    self.last_activity = now;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
