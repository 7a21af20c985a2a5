//! One HTTP connection to the MCP endpoint (SPEC §7): its buffers,
//! keep-alive, idle deadline, and the answer it waits for. What to answer
//! is the server's business (`server.rs`); this file only moves bytes.

use super::http::{self, Parsed, Request};
use super::rpc::Then;
use mio::net::TcpStream;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// SPEC §7: a connection idle this long is closed; a request must also
/// arrive whole within this time of its first byte (no slowloris).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from an MCP socket per call.
const READ_SIZE: usize = 16 * 1024;

/// The answer to one request: response bytes, and whether the connection
/// stays open after them.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub keep_alive: bool,
}

/// An answer that comes later, kept with its connection until it is sent.
#[derive(Debug)]
pub struct Pending {
    /// The request's id, for the reply.
    pub id: Value,
    /// The connection stays open after the reply.
    pub keep_alive: bool,
    pub step: Step,
}

/// What a `Pending` answer waits for now.
#[derive(Debug)]
pub enum Step {
    /// Log flush `flush` to be written; then `then`.
    Flush { flush: u64, then: Then },
    /// The reader thread's answer to the query tagged `tag`.
    Reading { tag: u64 },
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
    /// log or the reader thread): nothing is read or parsed until `send`.
    pub pending: Option<Pending>,
}

/// What a connection needs next.
pub enum Next {
    /// A whole request to answer (`server::respond`).
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
            pending: None,
        }
    }

    /// When this connection is closed if nothing happens; none while its
    /// answer is being prepared.
    pub fn deadline(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        Some(match self.request_started {
            Some(start) => start + IDLE_TIMEOUT,
            None => self.last_activity + IDLE_TIMEOUT,
        })
    }

    /// Queues a response; `close` ends the connection once it is written.
    pub fn send(&mut self, answer: Answer) {
        if self.output.is_empty() {
            self.output = answer.bytes; // No copy of a big answer.
        } else {
            self.output.extend_from_slice(&answer.bytes);
        }
        self.close_when_written |= !answer.keep_alive;
    }

    /// Response bytes queued and not yet written: what this connection
    /// holds for a client that does not read.
    pub fn unsent(&self) -> usize {
        self.output.len() - self.written
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
        if self.pending.is_some() {
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
