//! The MCP server's side of the loop: accepting and serving its
//! connections, their idle deadlines, the answers that wait for the log to
//! be written or for the reader thread (`stop-logging`, the reading tools),
//! and `Control`, through which the tools change the running proxy (SPEC §7,
//! §9).

use super::{EventLoop, Slot, Stop};
use crate::log::destination::{self, DestKey, Destination};
use crate::mcp::reading::{Capture, Query, Reader};
use crate::mcp::rpc::{self, Control};
use crate::mcp::{self, Answer, McpConn, Next};
use crate::proxy::listener::{Accept, Listener, accept_from};
use crate::proxy::rule::PortRule;
use crate::proxy::token::{self, Side};
use mio::Interest;
use std::time::Instant;

impl EventLoop {
    /// Accepts MCP connections until the listener would block.
    pub(super) fn accept_mcp(&mut self, key: usize) {
        loop {
            let Some(Slot::McpListener(listener)) = self.slab.get(key) else {
                return;
            };
            let socket = match accept_from(listener) {
                Accept::Connection(socket, _) => socket,
                Accept::Drained => return,
                Accept::Retry => continue,
                Accept::Exhausted(e) => {
                    let port = listener.local_addr().map_or(0, |a| a.port());
                    self.pause_accepts(port, e);
                    return;
                }
            };
            let entry = self.slab.vacant_entry();
            let conn_key = entry.key();
            let mut conn = McpConn::new(socket, Instant::now());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(
                    &mut conn.socket,
                    token::token(conn_key, Side::Client),
                    interest,
                )
                .is_err()
            {
                continue; // Dropping the socket closes it.
            }
            entry.insert(Slot::McpConn(conn));
            self.mcp.conns.push(conn_key);
            self.on_mcp(conn_key);
        }
    }

    /// Serves an MCP connection: answers every whole request it has, one at
    /// a time, until it would block or is done.
    pub(super) fn on_mcp(&mut self, key: usize) {
        loop {
            let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) else {
                return;
            };
            match conn.next(Instant::now()) {
                Next::Wait => return,
                Next::Close => return self.close_mcp(key),
                Next::Request(request) => {
                    let mut answer = mcp::respond(&request, self);
                    let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) else {
                        return;
                    };
                    let read = self.mcp.read_asked.take();
                    match (
                        answer.later.take(),
                        self.mcp.answer_after_flush.take(),
                        read,
                    ) {
                        // SPEC §9: a query reads once every line so far is written.
                        (Some(id), _, Some((query, capture, flush))) => {
                            conn.await_answer();
                            let keep_alive = answer.keep_alive;
                            self.mcp.held.push(Held {
                                key,
                                flush,
                                waits: Waits::Read {
                                    id,
                                    keep_alive,
                                    query,
                                    capture,
                                },
                            });
                            self.release_held();
                        }
                        // SPEC §7: stop-logging answers once its lines are written.
                        (None, Some(flush), _) => {
                            conn.await_answer();
                            self.mcp.held.push(Held {
                                key,
                                flush,
                                waits: Waits::Answer(answer),
                            });
                        }
                        _ => conn.send(answer),
                    }
                }
            }
        }
    }

    fn close_mcp(&mut self, key: usize) {
        if let Some(Slot::McpConn(mut conn)) = self.slab.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
        self.mcp.conns.retain(|&k| k != key);
        self.mcp.held.retain(|h| h.key != key);
        self.mcp.reading.retain(|r| r.key != key);
    }

    /// Goes on with what waited for a flush the writer has finished: sends
    /// held answers, hands queries to the reader thread.
    pub(super) fn release_held(&mut self) {
        let written = self.log.flushed_through();
        let (ready, waiting): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.mcp.held)
            .into_iter()
            .partition(|h| h.flush <= written);
        self.mcp.held = waiting;
        for Held { key, waits, .. } in ready {
            match waits {
                Waits::Answer(answer) => self.answer(key, answer),
                Waits::Read {
                    id,
                    keep_alive,
                    query,
                    capture,
                } => {
                    let tag = self.next_serial;
                    self.next_serial += 1;
                    match self.reader_thread() {
                        Ok(reader) => reader.submit(tag, query, capture),
                        Err(e) => {
                            let body = rpc::tool_reply(id, Err(format!("cannot read: {e}")));
                            self.answer(key, Answer::json(&body, keep_alive));
                            continue;
                        }
                    }
                    self.mcp.reading.push(Reading {
                        key,
                        tag,
                        id,
                        keep_alive,
                    });
                }
            }
        }
    }

    /// The reader thread, started on first use.
    fn reader_thread(&mut self) -> std::io::Result<&Reader> {
        if self.mcp.reader.is_none() {
            self.mcp.reader = Some(Reader::spawn(std::sync::Arc::clone(&self.wake))?);
        }
        Ok(self.mcp.reader.as_ref().expect("just started"))
    }

    /// Answers the queries the reader thread has finished.
    pub(super) fn on_read_answers(&mut self) {
        let Some(reader) = &self.mcp.reader else {
            return;
        };
        let done: Vec<_> = reader.answers.try_iter().collect();
        for (tag, result) in done {
            let Some(i) = self.mcp.reading.iter().position(|r| r.tag == tag) else {
                continue; // Its connection closed meanwhile.
            };
            let Reading {
                key,
                id,
                keep_alive,
                ..
            } = self.mcp.reading.remove(i);
            let body = rpc::tool_reply(id, result);
            self.answer(key, Answer::json(&body, keep_alive));
        }
    }

    /// Sends an answer that was not ready when its request was taken.
    fn answer(&mut self, key: usize, answer: Answer) {
        if let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) {
            conn.send(answer);
            self.on_mcp(key);
        }
    }

    /// The earliest MCP connection deadline.
    pub(super) fn mcp_deadline(&self) -> Option<Instant> {
        self.mcp
            .conns
            .iter()
            .filter_map(|&key| match self.slab.get(key) {
                Some(Slot::McpConn(conn)) => conn.deadline(),
                _ => None,
            })
            .min()
    }

    /// SPEC §7: a connection idle for 30 s is closed.
    pub(super) fn close_idle_mcp(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .mcp
            .conns
            .iter()
            .copied()
            .filter(
                |&key| matches!(self.slab.get(key), Some(Slot::McpConn(c)) if c.deadline().is_some_and(|d| d <= now)),
            )
            .collect();
        for key in expired {
            if let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) {
                conn.time_out();
            }
            self.close_mcp(key);
        }
    }

    /// The slab key of the listener for `local_port`.
    fn listener_key(&self, local_port: u16) -> Option<usize> {
        self.slab.iter().find_map(|(key, slot)| match slot {
            Slot::Listener(l) if l.rule.local_port == local_port => Some(key),
            _ => None,
        })
    }
}

/// The loop's MCP bookkeeping: its connections, and the requests whose
/// answers wait for the log to be written or for the reader thread.
#[derive(Default)]
pub(super) struct McpState {
    /// Keys of the MCP connections, for their idle deadlines.
    pub conns: Vec<usize>,
    /// Set by a tool whose answer waits until the log's lines so far are
    /// written (`stop-logging`): the flush to wait for.
    pub answer_after_flush: Option<u64>,
    /// Set by a reading tool: what to read once flush `.2` is written.
    pub read_asked: Option<(Query, Capture, u64)>,
    /// Requests waiting for a flush to be written.
    pub held: Vec<Held>,
    /// Queries on the reader thread.
    pub reading: Vec<Reading>,
    /// The thread that reads captures for the reading tools, once used.
    pub reader: Option<Reader>,
}

/// What an MCP request waits for after its lines are written.
pub(super) enum Waits {
    /// Only the flush: the answer is ready (`stop-logging`).
    Answer(Answer),
    /// Then reading the capture (the reading tools).
    Read {
        id: serde_json::Value,
        keep_alive: bool,
        query: Query,
        capture: Capture,
    },
}

/// An MCP request waiting for flush `flush` to be written.
pub(super) struct Held {
    pub key: usize,
    pub flush: u64,
    pub waits: Waits,
}

/// A query on the reader thread, for the MCP connection `key`.
pub(super) struct Reading {
    pub key: usize,
    pub tag: u64,
    pub id: serde_json::Value,
    pub keep_alive: bool,
}

impl Control for EventLoop {
    fn add_rule(&mut self, rule: PortRule) -> Result<(), String> {
        if self.listener_key(rule.local_port).is_some() {
            return Err(format!("Port {} is already in use", rule.local_port));
        }
        let mut listener = Listener::bind(rule)?;
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut listener.socket,
                token::token(key, Side::Client),
                Interest::READABLE,
            )
            .map_err(|e| format!("cannot watch port {}: {e}", listener.rule.local_port))?;
        entry.insert(Slot::Listener(listener));
        self.accept_all(key);
        Ok(())
    }

    fn remove_rule(&mut self, local_port: u16) -> Result<usize, String> {
        let key = self
            .listener_key(local_port)
            .ok_or_else(|| format!("No port rule on port {local_port}"))?;
        if let Some(Slot::Listener(mut listener)) = self.slab.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        let pairs: Vec<usize> = self
            .slab
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Pair(pair) if pair.listen_port == local_port && !pair.is_closed() => {
                    Some(key)
                }
                _ => None,
            })
            .collect();
        for &key in &pairs {
            self.with_pair(key, |pair, ctx| pair.close(ctx, Side::Client));
        }
        Ok(pairs.len())
    }

    fn start_logging(&mut self, destination: Destination) -> Result<(), String> {
        if let Destination::Directory { dir, .. } = &destination {
            destination::prepare_directory(dir)?;
        }
        self.log.add_destination(destination)
    }

    fn stop_logging(&mut self, which: Option<DestKey>) -> Result<Vec<DestKey>, String> {
        let keys = match which {
            Some(key) => vec![key],
            None => self.log.destination_keys(),
        };
        for key in &keys {
            self.log.remove_destination(key)?;
        }
        self.mcp.answer_after_flush = Some(self.log.write_soon());
        Ok(keys)
    }

    fn shutdown(&mut self) {
        self.stop.get_or_insert(Stop::Clean);
    }

    fn read_capture(&mut self, query: Query) -> Result<(), String> {
        let (directories, run_started_micros) = self.log.directories_this_run();
        if directories.is_empty() {
            return Err(
                "no directory destination in this run: start-logging to a directory first".into(),
            );
        }
        let capture = Capture {
            directories: directories.to_vec(),
            run_started_micros,
        };
        let flush = self.log.write_soon();
        self.mcp.read_asked = Some((query, capture, flush));
        Ok(())
    }
}
