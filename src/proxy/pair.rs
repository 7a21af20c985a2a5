//! A client/target pair: the connect phases, the two pipes, and the rules for
//! logging `open` and exactly one `close` (SPEC §3, §4). Sockets are registered
//! once for READABLE | WRITABLE (edge-triggered, as nginx does) and never
//! reregistered: `Pipe::pump` runs until WouldBlock (or, on epoll, a short
//! read that emptied the socket), so every edge is consumed and interest
//! never needs editing.

use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::now_micros;
use crate::log::Log;
use crate::proxy::pipe::{End, Pipe, Pump, Turn};
use crate::proxy::token::token;
use crate::proxy::unreachable::{self, Unreachable};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

/// What a pair handler leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Alive,
    /// Open, but a source was left unread because the log is full: call
    /// `resume` when there is room.
    Throttled,
    /// Open, and a source may have more to read than one turn takes: call
    /// `resume` after the other ready work.
    Yielded,
    /// Sockets closed and `close` logged if due; free the slot after the batch.
    Closed,
}

#[derive(Debug)]
pub enum Phase {
    /// Waiting for the resolver.
    Resolving,
    /// A connect to `addrs[next - 1]` is under way.
    Connecting {
        addrs: Vec<SocketAddr>,
        next: usize,
        /// Why the last address failed, for the user (SPEC §3).
        failed: Option<io::Error>,
    },
    Open,
    Closed,
}

/// What a handler needs from the loop.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub log: &'a mut Log,
    pub scratch: &'a mut [u8],
    pub unreachable: &'a mut Unreachable,
}

pub struct Pair {
    /// Tells this pair from a later one that reuses its slab key.
    pub serial: u64,
    /// The rule's local port, for `listen_port` and for removing a rule.
    pub listen_port: u16,
    pub phase: Phase,
    client: TcpStream,
    target: Option<TcpStream>,
    /// client -> target.
    up: Pipe,
    /// target -> client.
    down: Pipe,
    ends: Ends,
}

/// What the pair's log lines say about it; kept apart from the sockets so a
/// pump can borrow both.
struct Ends {
    client_addr: String,
    /// The target as written in the rule, `host:port`.
    target_name: Rc<str>,
    /// Taken when `open` is logged.
    conn_id: Option<ConnId>,
    close_logged: bool,
}

impl Ends {
    /// `(from, to)` for bytes or a close coming from `from`.
    fn addresses(&self, from: Side) -> (&str, &str) {
        match from {
            Side::Client => (&self.client_addr, &self.target_name),
            Side::Target => (&self.target_name, &self.client_addr),
        }
    }

    /// Logs `close` once, from `from` to the other side (SPEC §4); nothing
    /// if no `open` was logged.
    fn log_close(&mut self, log: &mut Log, from: Side) {
        let Some(id) = self.conn_id else { return };
        if !self.close_logged {
            self.close_logged = true;
            let (from, to) = self.addresses(from);
            log.close(now_micros(), &id, from, to);
        }
    }
}

impl Pair {
    pub fn new(
        serial: u64,
        listen_port: u16,
        client: TcpStream,
        client_addr: SocketAddr,
        target_name: Rc<str>,
    ) -> Self {
        Pair {
            serial,
            listen_port,
            phase: Phase::Resolving,
            client,
            target: None,
            up: Pipe::default(),
            down: Pipe::default(),
            ends: Ends {
                client_addr: client_addr.to_string(),
                target_name,
                conn_id: None,
                close_logged: false,
            },
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Starts connecting to the first of `addrs` that takes a connect.
    /// Called once the addresses are known.
    pub fn start_connecting(
        &mut self,
        key: usize,
        addrs: Vec<SocketAddr>,
        ctx: &mut Ctx,
    ) -> Status {
        self.phase = Phase::Connecting {
            addrs,
            next: 0,
            failed: None,
        };
        self.connect_next(key, ctx)
    }

    /// Tries the next address; with none left the client is closed and
    /// nothing is logged (SPEC §3).
    fn connect_next(&mut self, key: usize, ctx: &mut Ctx) -> Status {
        if let Some(mut old) = self.target.take() {
            let _ = ctx.registry.deregister(&mut old);
        }
        let Phase::Connecting {
            addrs,
            next,
            failed,
        } = &mut self.phase
        else {
            return Status::Alive;
        };
        while let Some(&addr) = addrs.get(*next) {
            *next += 1;
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    *failed = Some(e);
                    continue;
                }
            };
            if ctx
                .registry
                .register(
                    &mut stream,
                    token(key, Side::Target),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok()
            {
                self.target = Some(stream);
                return Status::Alive;
            }
        }
        let reason = match failed {
            Some(e) => unreachable::reason(e),
            None => "no address to connect to".into(),
        };
        self.give_up(ctx, &reason)
    }

    /// The target cannot be reached: says so on stderr (at most once a
    /// second per rule), closes the client and logs nothing (SPEC §3).
    pub fn give_up(&mut self, ctx: &mut Ctx, reason: &str) -> Status {
        ctx.unreachable
            .report(self.listen_port, &self.ends.target_name, reason);
        self.close(ctx, Side::Client)
    }

    /// Notes why the connect under way failed, before the next address is tried.
    fn connect_failed(&mut self, e: io::Error) {
        if let Phase::Connecting { failed, .. } = &mut self.phase {
            *failed = Some(e);
        }
    }

    /// Called for every readiness event on either socket of this pair.
    pub fn on_event(&mut self, key: usize, side: Side, event: &Event, ctx: &mut Ctx) -> Status {
        match self.phase {
            Phase::Connecting { .. } if side == Side::Target => self.check_connect(key, event, ctx),
            Phase::Open => {
                let failed = event.is_error();
                let readable = failed || event.is_readable() || event.is_read_closed();
                let writable = failed || event.is_writable() || event.is_write_closed();
                // Readable client or writable target moves bytes up, and the
                // other way round for down; writable counts only for a pipe
                // that waits to write (epoll reports it with every event).
                let (up, down) = match side {
                    Side::Client => (readable, writable && self.down.waits_to_write()),
                    Side::Target => (writable && self.up.waits_to_write(), readable),
                };
                // Edge-triggered: a read shorter than asked emptied the
                // socket, and new bytes will bring a new event. A FIN that
                // came before this event brings none: then read to the end.
                let drained = (readable && !failed && !event.is_read_closed()).then_some(side);
                self.pump_both(up, down, drained, ctx)
            }
            _ => Status::Alive,
        }
    }

    /// An event on the connecting target: mio's recipe, `take_error`, then
    /// `peer_addr` (`NotConnected` means not yet).
    fn check_connect(&mut self, key: usize, event: &Event, ctx: &mut Ctx) -> Status {
        let Some(target) = &self.target else {
            return Status::Alive;
        };
        match target.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.connect_failed(e);
                return self.connect_next(key, ctx);
            }
        }
        match target.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Status::Alive,
            Err(e) => {
                self.connect_failed(e);
                return self.connect_next(key, ctx);
            }
        }
        // Bytes the target sent already came with this event (epoll reports
        // the state when it is read); later ones bring an event of their own.
        let target_readable = event.is_readable() || event.is_read_closed();
        self.open(key, target_readable, ctx)
    }

    /// The target accepted: log `open`, start watching the client, and move
    /// whatever the client sent meanwhile (and what the target sent, if
    /// `target_readable`).
    fn open(&mut self, key: usize, target_readable: bool, ctx: &mut Ctx) -> Status {
        if ctx
            .registry
            .register(
                &mut self.client,
                token(key, Side::Client),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return self.close(ctx, Side::Client);
        }
        let _ = self.client.set_nodelay(true);
        if let Some(target) = &self.target {
            let _ = target.set_nodelay(true);
        }
        self.phase = Phase::Open;
        let (from, to) = self.ends.addresses(Side::Client);
        let id = ctx.log.open(now_micros(), from, to, self.listen_port);
        self.ends.conn_id = Some(id);
        // The client was registered just now: a short read empties it, and
        // anything later brings an event.
        self.pump_both(true, target_readable, Some(Side::Client), ctx)
    }

    /// Moves bytes in the directions an event may have unblocked. A source
    /// that ended gets its `close` logged before the other direction moves,
    /// so lines stay in the order things happened.
    /// `drained`: the side whose socket a short read empties (see `on_event`).
    fn pump_both(&mut self, up: bool, down: bool, drained: Option<Side>, ctx: &mut Ctx) -> Status {
        let (Some(target), Some(id)) = (self.target.as_mut(), self.ends.conn_id) else {
            return Status::Alive;
        };
        let log = &mut *ctx.log;
        let mut status = Status::Alive;
        for (run, src) in [(up, Side::Client), (down, Side::Target)] {
            if !run {
                continue;
            }
            let (from, to) = self.ends.addresses(src);
            let may_read = log.has_room();
            let mut log_data = |data: &[u8]| {
                log.data(now_micros(), &id, data, from, to);
                log.has_room()
            };
            let pipe = match src {
                Side::Client => &mut self.up,
                Side::Target => &mut self.down,
            };
            let turn = Turn {
                may_read,
                // Off where the poller needs a WouldBlock to re-arm (Windows).
                short_read_drains: crate::sys::SHORT_READ_DRAINS && drained == Some(src),
            };
            let outcome = match src {
                Side::Client => {
                    pipe.pump(&mut self.client, target, ctx.scratch, turn, &mut log_data)
                }
                Side::Target => {
                    pipe.pump(target, &mut self.client, ctx.scratch, turn, &mut log_data)
                }
            };
            match outcome {
                Pump::Failed(end, _) => {
                    let failed = if end == End::Src { src } else { src.other() };
                    return self.close(ctx, failed);
                }
                Pump::Throttled if status == Status::Alive => status = Status::Throttled,
                Pump::Throttled => {}
                Pump::Yielded => status = Status::Yielded,
                Pump::Blocked | Pump::Finished => {
                    if pipe.eof {
                        self.ends.log_close(log, src);
                    }
                }
            }
        }
        if self.up.fin_sent && self.down.fin_sent {
            // SPEC §3: both directions ended: close both sockets.
            return self.close(ctx, Side::Client);
        }
        status
    }

    /// Called when the log has room again after `Status::Throttled`, or on
    /// the next turn after `Status::Yielded`: reads what waited (no
    /// readiness event will say it is there).
    pub fn resume(&mut self, ctx: &mut Ctx) -> Status {
        match self.phase {
            Phase::Open => self.pump_both(true, true, None, ctx),
            Phase::Closed => Status::Closed,
            _ => Status::Alive,
        }
    }

    /// Closes both sockets now (the client's fd goes with the slot); logs `close` (from `from`) if the pair was
    /// open and it was not logged yet. Called on errors, on the end of both
    /// directions, at shutdown (from = client, SPEC §4) and when a connect
    /// fails (nothing logged: no `open` was).
    pub fn close(&mut self, ctx: &mut Ctx, from: Side) -> Status {
        if matches!(self.phase, Phase::Closed) {
            return Status::Closed;
        }
        self.ends.log_close(ctx.log, from);
        // Closing a socket takes it out of epoll: no deregister needed.
        self.target = None;
        self.up = Pipe::default();
        self.down = Pipe::default();
        self.phase = Phase::Closed;
        Status::Closed
    }
}
