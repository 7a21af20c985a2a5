//! The one readiness loop: owns `Poll`, the slab of listeners and pairs, the
//! log arena, the deadlines and the shutdown sequence. Everything on the
//! network happens on this thread; disk, stdout and name lookups happen on
//! helper threads that wake it.

use crate::format::side::Side;
use crate::log::destination::Destination;
use crate::log::{Log, News, Settings};
use crate::mcp::conn::McpConn;
use crate::mcp::server::{self, Server};
use crate::proxy::listener::{Accept, Listener, accept_from};
use crate::proxy::pair::{Ctx, Pair, Phase, Status};
use crate::proxy::pipe::READ_CHUNK;
use crate::proxy::resolve::{Request, Resolved, Resolver};
use crate::proxy::token::{self, SIGNALS, WAKER};
use crate::proxy::unreachable::{self, Unreachable};
use crate::sys::Signals;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SPEC §3: a target that has not answered by then is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepting pauses after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

mod control;

pub enum Slot {
    Listener(Listener),
    Pair(Pair),
    McpListener(TcpListener),
    McpConn(McpConn),
}

/// Why the loop stops.
#[derive(Debug)]
pub enum Stop {
    /// SIGINT, SIGTERM or a closed stdout: exit 0.
    Clean,
    /// A destination failed or the loop itself did: exit 1 with this message.
    Failed(String),
}

pub struct EventLoop {
    poll: Poll,
    slab: Slab<Slot>,
    log: Log,
    /// The one buffer every read goes through.
    scratch: Box<[u8]>,
    /// Reports targets that cannot be reached (SPEC §3).
    unreachable: Unreachable,
    resolver: Resolver,
    /// Pairs still resolving or connecting, oldest first: (deadline, key, serial).
    connect_deadlines: VecDeque<(Instant, usize, u64)>,
    accepts_paused_until: Option<Instant>,
    /// An accept error was printed and no listener has drained since.
    accept_error_reported: bool,
    /// Slots closed during this batch, freed after it.
    to_free: Vec<usize>,
    next_serial: u64,
    /// SIGINT, SIGTERM, SIGHUP, or their Windows console events (SPEC §6).
    signals: Signals,
    stop: Option<Stop>,
    /// Pairs that stopped reading because the log was full: (key, serial).
    throttled: Vec<(usize, u64)>,
    /// Pairs that yielded with more to read: pumped again next turn.
    yielded: Vec<(usize, u64)>,
    /// The MCP server's own state (its connections are slots).
    mcp: Server,
}

impl EventLoop {
    /// Sets up the loop around listeners that are already bound; nothing is
    /// accepted until `run`.
    pub fn new(
        listeners: Vec<Listener>,
        mcp_listener: Option<TcpListener>,
        destination: Destination,
        log_settings: Settings,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = waker.wake();
        });
        let signals = Signals::new(poll.registry(), SIGNALS, &wake)?;

        let mut slab = Slab::new();
        for mut listener in listeners {
            let entry = slab.vacant_entry();
            poll.registry().register(
                &mut listener.socket,
                token::token(entry.key(), Side::Client),
                Interest::READABLE,
            )?;
            entry.insert(Slot::Listener(listener));
        }
        let mcp_port = match mcp_listener {
            Some(mut socket) => {
                let port = socket.local_addr()?.port();
                let entry = slab.vacant_entry();
                poll.registry().register(
                    &mut socket,
                    token::token(entry.key(), Side::Client),
                    Interest::READABLE,
                )?;
                entry.insert(Slot::McpListener(socket));
                Some(port)
            }
            None => None,
        };
        let endpoint = mcp_port.map(|port| format!("http://127.0.0.1:{port}/mcp"));
        let log = Log::start(
            destination,
            Arc::clone(&wake),
            log_settings,
            endpoint.as_deref(),
        )?;
        Ok(EventLoop {
            poll,
            slab,
            log,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            unreachable: Unreachable::default(),
            resolver: Resolver::new(Arc::clone(&wake)),
            connect_deadlines: VecDeque::new(),
            accepts_paused_until: None,
            accept_error_reported: false,
            to_free: Vec::new(),
            next_serial: 0,
            signals,
            stop: None,
            throttled: Vec::new(),
            yielded: Vec::new(),
            mcp: Server::new(wake),
        })
    }

    /// Runs until a signal or a failure, then shuts down (SPEC §6).
    pub fn run(mut self) -> Stop {
        let mut events = Events::with_capacity(1024);
        // Pending connections may already wait on the listeners.
        self.accept_on_all();
        while self.stop.is_none() {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.stop = Some(Stop::Failed(format!("waiting for events failed: {e}")));
                break;
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signals(),
                    WAKER => {
                        // Windows' console handler wakes the loop this way.
                        if self.signals.pending_on_wake() {
                            self.stop.get_or_insert(Stop::Clean);
                        }
                        self.on_resolved();
                        server::on_reader_answers(&mut self);
                        let news = self.log.on_writer_reports();
                        self.on_log_news(news);
                    }
                    t => self.on_socket(t, event),
                }
            }
            self.resume_yielded();
            self.run_due(Instant::now());
            self.free_closed();
        }
        self.shutdown()
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.yielded.is_empty() {
            return Some(Duration::ZERO); // Just look for events, then go on.
        }
        let connect = self
            .connect_deadlines
            .front()
            .map(|&(deadline, _, _)| deadline);
        [
            self.log.deadline(now),
            connect,
            self.accepts_paused_until,
            server::deadline(self),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    fn on_signals(&mut self) {
        if self.signals.pending() {
            self.stop.get_or_insert(Stop::Clean);
        }
    }

    fn on_socket(&mut self, token: mio::Token, event: &mio::event::Event) {
        let (key, side) = token::split(token);
        match self.slab.get_mut(key) {
            // While accepts are paused, the resume deadline accepts instead.
            Some(Slot::Listener(_)) if self.accepts_paused_until.is_none() => self.accept_all(key),
            Some(Slot::Listener(_)) => {}
            Some(Slot::Pair(_)) => {
                self.with_pair(key, |pair, ctx| pair.on_event(key, side, event, ctx))
            }
            Some(Slot::McpListener(_)) if self.accepts_paused_until.is_none() => {
                self.accept_all(key)
            }
            Some(Slot::McpListener(_)) => {}
            Some(Slot::McpConn(_)) => server::serve(self, key),
            // A stale event for a freed slot (mio's examples ignore them too).
            None => {}
        }
    }

    fn accept_on_all(&mut self) {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter_map(|(key, slot)| {
                matches!(slot, Slot::Listener(_) | Slot::McpListener(_)).then_some(key)
            })
            .collect();
        for key in keys {
            self.accept_all(key);
        }
    }

    /// Accepts until the listener would block (edge-triggered), or backs off
    /// on EMFILE and the like without spinning (SPEC §3, nginx's approach).
    /// A rule's connection becomes a pair; an MCP one goes to the server.
    fn accept_all(&mut self, key: usize) {
        loop {
            let accepted = match self.slab.get(key) {
                Some(Slot::Listener(listener)) => listener.accept(),
                Some(Slot::McpListener(socket)) => accept_from(socket),
                _ => return,
            };
            match accepted {
                Accept::Connection(stream, addr) => {
                    if matches!(self.slab.get(key), Some(Slot::McpListener(_))) {
                        server::welcome(self, stream);
                    } else {
                        self.open_pair(key, stream, addr);
                    }
                }
                Accept::Drained => {
                    // A listener drained without error: the episode is over.
                    self.accept_error_reported = false;
                    return;
                }
                Accept::Retry => continue,
                Accept::Exhausted(e) => {
                    let port = match self.slab.get(key) {
                        Some(Slot::Listener(listener)) => listener.rule.local_port,
                        Some(Slot::McpListener(socket)) => {
                            socket.local_addr().map_or(0, |a| a.port())
                        }
                        _ => 0,
                    };
                    self.pause_accepts(port, e);
                    return;
                }
            }
        }
    }

    /// Starts the pair for a connection accepted on the rule listener
    /// `key`: it connects at once to a literal address, or after a lookup.
    fn open_pair(&mut self, key: usize, stream: mio::net::TcpStream, addr: SocketAddr) {
        let Some(Slot::Listener(listener)) = self.slab.get(key) else {
            return;
        };
        let listen_port = listener.rule.local_port;
        let target_name = Rc::clone(&listener.target_name);
        let literal = listener.target_literal;
        let host = listener.rule.target_host.clone();
        let port = listener.rule.target_port;

        let serial = self.next_serial;
        self.next_serial += 1;
        let pair_key = self.slab.insert(Slot::Pair(Pair::new(
            serial,
            listen_port,
            stream,
            addr,
            target_name,
        )));
        self.connect_deadlines
            .push_back((Instant::now() + CONNECT_TIMEOUT, pair_key, serial));
        match literal {
            Some(addr) => self.with_pair(pair_key, |pair, ctx| {
                pair.start_connecting(pair_key, vec![addr], ctx)
            }),
            None => {
                let request = Request {
                    key: pair_key,
                    serial,
                    host,
                    port,
                };
                if self.resolver.lookup(request).is_err() {
                    self.with_pair(pair_key, |pair, ctx| {
                        pair.give_up(ctx, "the name resolver is gone")
                    });
                }
            }
        }
    }

    /// Stops accepting on every listener for a while (EMFILE and the like):
    /// one stderr line per episode, never a busy loop.
    fn pause_accepts(&mut self, port: u16, e: io::Error) {
        if !self.accept_error_reported {
            eprintln!(
                "rawprox: cannot accept on port {port}: {e}; pausing accepts until connections close"
            );
            self.accept_error_reported = true;
        }
        self.accepts_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
    }

    /// Runs `f` on the pair at `key` with a handler context; queues the slot
    /// for freeing if it closed, or for resuming if the log was full.
    fn with_pair(&mut self, key: usize, f: impl FnOnce(&mut Pair, &mut Ctx) -> Status) {
        let Some(Slot::Pair(pair)) = self.slab.get_mut(key) else {
            return;
        };
        let mut ctx = Ctx {
            registry: self.poll.registry(),
            log: &mut self.log,
            scratch: &mut self.scratch,
            unreachable: &mut self.unreachable,
        };
        match f(pair, &mut ctx) {
            Status::Alive => {}
            Status::Closed => self.to_free.push(key),
            Status::Throttled => self.throttled.push((key, pair.serial)),
            Status::Yielded => self.yielded.push((key, pair.serial)),
        }
    }

    /// The writer caught up: pairs that stopped reading for a full log
    /// read again, while there is room.
    fn resume_throttled(&mut self) {
        while self.log.has_room() {
            let Some((key, serial)) = self.throttled.pop() else {
                return;
            };
            if matches!(self.slab.get(key), Some(Slot::Pair(p)) if p.serial == serial) {
                self.with_pair(key, |pair, ctx| pair.resume(ctx));
            }
        }
    }

    /// Gives the pairs that yielded last turn their next turn.
    fn resume_yielded(&mut self) {
        let mut yielded = std::mem::take(&mut self.yielded);
        // A pair that also had an event may have yielded twice.
        yielded.sort_unstable();
        yielded.dedup();
        for (key, serial) in yielded {
            if matches!(self.slab.get(key), Some(Slot::Pair(p)) if p.serial == serial) {
                self.with_pair(key, |pair, ctx| pair.resume(ctx));
            }
        }
    }

    fn is_connecting(&self, key: usize, serial: u64) -> bool {
        matches!(self.slab.get(key), Some(Slot::Pair(p))
            if p.serial == serial && matches!(p.phase, Phase::Resolving | Phase::Connecting { .. }))
    }

    fn on_resolved(&mut self) {
        while let Ok(Resolved { key, serial, addrs }) = self.resolver.answers.try_recv() {
            let is_resolving = matches!(self.slab.get(key), Some(Slot::Pair(p))
                if p.serial == serial && matches!(p.phase, Phase::Resolving));
            if !is_resolving {
                continue; // The pair timed out or closed meanwhile.
            }
            match addrs {
                Ok(addrs) if !addrs.is_empty() => {
                    self.with_pair(key, |pair, ctx| pair.start_connecting(key, addrs, ctx))
                }
                // SPEC §3: unresolvable: say so, close the client, log nothing.
                Ok(_) => self.with_pair(key, |pair, ctx| {
                    pair.give_up(ctx, "cannot resolve: no address")
                }),
                Err(e) => {
                    let reason = format!("cannot resolve: {}", unreachable::reason(&e));
                    self.with_pair(key, |pair, ctx| pair.give_up(ctx, &reason))
                }
            }
        }
    }

    /// What the writer reported: room for throttled pairs, or a reason to stop.
    fn on_log_news(&mut self, news: News) {
        if news.room {
            self.resume_throttled();
        }
        if news.written {
            server::on_flush_written(self);
        }
        if let Some(message) = news.failed
            && !matches!(self.stop, Some(Stop::Failed(_)))
        {
            self.stop = Some(Stop::Failed(message));
        }
        if news.stdout_closed {
            self.stop.get_or_insert(Stop::Clean);
        }
    }

    /// Runs what is due: connect timeouts, resumed accepts, the log's flush.
    fn run_due(&mut self, now: Instant) {
        while let Some(&(deadline, key, serial)) = self.connect_deadlines.front() {
            if !self.is_connecting(key, serial) {
                self.connect_deadlines.pop_front(); // Opened or closed already.
            } else if deadline <= now {
                self.connect_deadlines.pop_front();
                // SPEC §3: timed out: say so, close the client, log nothing.
                self.with_pair(key, |pair, ctx| {
                    pair.give_up(ctx, "connect timed out after 10 s")
                });
            } else {
                break;
            }
        }
        server::close_idle(self, now);
        if self.accepts_paused_until.is_some_and(|until| until <= now) {
            self.accepts_paused_until = None;
            self.accept_on_all();
        }
        let news = self.log.run_due(now);
        self.on_log_news(news);
    }

    fn free_closed(&mut self) {
        for key in self.to_free.drain(..) {
            self.slab.try_remove(key);
        }
    }

    /// SPEC §6: stop accepting, close every connection (logging its
    /// `close`), write out every buffered line, and report how it ended.
    fn shutdown(mut self) -> Stop {
        self.signals.shutdown_started();
        let keys: Vec<usize> = self.slab.iter().map(|(key, _)| key).collect();
        for key in keys {
            match self.slab.get_mut(key) {
                Some(Slot::Listener(listener)) => {
                    let _ = self.poll.registry().deregister(&mut listener.socket);
                }
                Some(Slot::McpListener(socket)) => {
                    let _ = self.poll.registry().deregister(socket);
                }
                Some(Slot::McpConn(conn)) => {
                    let _ = self.poll.registry().deregister(&mut conn.socket);
                }
                Some(Slot::Pair(_)) => {
                    self.with_pair(key, |pair, ctx| pair.close(ctx, Side::Client))
                }
                None => {}
            }
        }
        self.slab.clear();
        let news = self.log.finish();
        self.on_log_news(news);
        self.stop.unwrap_or(Stop::Clean)
    }
}
