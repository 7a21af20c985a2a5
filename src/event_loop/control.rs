//! The MCP server's side of the loop: accepting and serving its
//! connections, their idle deadlines, and `Control`, through which the
//! tools change the running proxy (SPEC §7).

use super::{EventLoop, Slot, Stop};
use crate::log::destination::{self, DestKey, Destination};
use crate::mcp::rpc::Control;
use crate::mcp::{self, McpConn, Next};
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
            self.mcp_conns.push(conn_key);
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
                    let answer = mcp::respond(&request, self);
                    let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) else {
                        return;
                    };
                    match self.answer_after_flush.take() {
                        // SPEC §7: stop-logging answers once its lines are written.
                        Some(flush) => {
                            conn.await_answer();
                            self.held_answers.push((key, flush, answer));
                        }
                        None => conn.send(answer),
                    }
                }
            }
        }
    }

    fn close_mcp(&mut self, key: usize) {
        if let Some(Slot::McpConn(mut conn)) = self.slab.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
        self.mcp_conns.retain(|&k| k != key);
        self.held_answers.retain(|&(k, _, _)| k != key);
    }

    /// Sends the answers that waited for a flush the writer has finished.
    pub(super) fn release_held_answers(&mut self) {
        let written = self.log.flushed_through();
        let (ready, waiting) = std::mem::take(&mut self.held_answers)
            .into_iter()
            .partition(|&(_, flush, _)| flush <= written);
        self.held_answers = waiting;
        for (key, _, answer) in ready {
            if let Some(Slot::McpConn(conn)) = self.slab.get_mut(key) {
                conn.send(answer);
                self.on_mcp(key);
            }
        }
    }

    /// The earliest MCP connection deadline.
    pub(super) fn mcp_deadline(&self) -> Option<Instant> {
        self.mcp_conns
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
            .mcp_conns
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
        self.answer_after_flush = Some(self.log.next_flush());
        Ok(keys)
    }

    fn shutdown(&mut self) {
        self.stop.get_or_insert(Stop::Clean);
    }
}
