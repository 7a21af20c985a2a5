//! The loop as the MCP server sees it: `Control`, through which the tools
//! change the running proxy (SPEC §7, §9), and `Host`, the slots and log
//! progress the server (`mcp/server.rs`) needs to serve its connections.

use super::{EventLoop, Slot, Stop};
use crate::format::side::Side;
use crate::log::destination::{self, DestKey, Destination};
use crate::mcp::conn::McpConn;
use crate::mcp::reading::Capture;
use crate::mcp::rpc::Control;
use crate::mcp::server::{Host, Server};
use crate::proxy::listener::Listener;
use crate::proxy::rule::PortRule;
use crate::proxy::token;
use mio::Interest;

impl EventLoop {
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
            // One directory spelled two ways (`d`, `./d`, `d/`, absolute)
            // is one destination: as two, its files would get every line
            // twice.
            let same = |other: &str| {
                let canonical = |d: &str| std::fs::canonicalize(d).ok();
                canonical(other).is_some_and(|o| Some(o) == canonical(dir))
            };
            for key in self.log.destination_keys() {
                if let DestKey::Dir(other) = &key
                    && other != dir
                    && same(other)
                {
                    return Err(format!(
                        "already logging to {} (the same directory as '{dir}')",
                        key.describe()
                    ));
                }
            }
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
        Ok(keys)
    }

    fn request_shutdown(&mut self) {
        self.stop.get_or_insert(Stop::Clean);
    }

    fn capture(&self) -> Result<Capture, String> {
        let (directories, run_started_micros) = self.log.directories_this_run();
        if directories.is_empty() {
            return Err(
                "no directory destination in this run: start-logging to a directory first".into(),
            );
        }
        Ok(Capture {
            directories: directories.to_vec(),
            run_started_micros,
        })
    }

    fn write_soon(&mut self) -> u64 {
        self.log.write_soon()
    }
}

impl Host for EventLoop {
    fn server(&self) -> &Server {
        &self.mcp
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.mcp
    }

    fn conn(&self, key: usize) -> Option<&McpConn> {
        match self.slab.get(key) {
            Some(Slot::McpConn(conn)) => Some(conn),
            _ => None,
        }
    }

    fn conn_mut(&mut self, key: usize) -> Option<&mut McpConn> {
        match self.slab.get_mut(key) {
            Some(Slot::McpConn(conn)) => Some(conn),
            _ => None,
        }
    }

    fn insert_conn(&mut self, mut conn: McpConn) -> Option<usize> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut conn.socket,
                token::token(key, Side::Client),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        entry.insert(Slot::McpConn(conn));
        Some(key)
    }

    fn remove_conn(&mut self, key: usize) {
        if let Some(Slot::McpConn(mut conn)) = self.slab.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
    }

    fn flushed_through(&self) -> u64 {
        self.log.flushed_through()
    }
}
