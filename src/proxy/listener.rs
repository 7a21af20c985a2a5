//! A listener for one port rule: binding with the spec's error messages, and
//! one accept with its outcome sorted (SPEC §3). Accepting in a loop, and
//! pausing on EMFILE, is the event loop's job.

use crate::proxy::rule::PortRule;
use mio::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

pub struct Listener {
    pub socket: TcpListener,
    pub rule: PortRule,
    /// The target as logged, shared by every pair of this rule.
    pub target_name: Rc<str>,
    /// The target address when the rule names an IP: no lookup needed.
    pub target_literal: Option<SocketAddr>,
}

/// What one `accept` came to.
pub enum Accept {
    Connection(TcpStream, SocketAddr),
    /// Nothing more to accept now.
    Drained,
    /// The connection went away before we took it: try the next.
    Retry,
    /// Out of file descriptors or memory: stop accepting for a while.
    Exhausted(io::Error),
}

impl Listener {
    /// Binds the rule's address. Errors read as SPEC §2 asks.
    pub fn bind(rule: PortRule) -> Result<Self, String> {
        let addr = rule.listen_addr();
        // SPEC §3: bursts of clients are not dropped (a backlog of 4096).
        let socket = crate::sys::bind_listener(addr).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                format!("Port {} is already in use", rule.local_port)
            } else {
                format!("cannot listen on port {} ({addr}): {e}", rule.local_port)
            }
        })?;
        Ok(Listener {
            socket,
            target_name: rule.target_display().into(),
            target_literal: rule.target_literal(),
            rule,
        })
    }

    pub fn accept(&self) -> Accept {
        accept_from(&self.socket)
    }
}

/// One accept on any listener (a rule's or the MCP server's), its outcome sorted.
pub fn accept_from(socket: &TcpListener) -> Accept {
    match socket.accept() {
        Ok((stream, addr)) => Accept::Connection(stream, addr),
        Err(e) => match e.kind() {
            io::ErrorKind::WouldBlock => Accept::Drained,
            io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset => Accept::Retry,
            // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected:
            // retrying at once would spin, so back off.
            _ => Accept::Exhausted(e),
        },
    }
}
