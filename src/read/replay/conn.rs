//! One replayed connection (SPEC §10): a socket to `--to`, the captured
//! client chunks going out through one `Pipe` (the proxy's, SPEC §3) as
//! the pace allows, the server's answer coming in through another into
//! `Compare`. Its capture arrives from its reader thread as `Item`s; it
//! holds at most `AHEAD_BYTES` of them beyond the channel.
//!
//! `drive` is called on every readiness event of its socket, when its
//! reader sent something, when its deadline passed, and when the log has
//! room again; it does all that can be done now and says when it next
//! needs time (`deadline`). Once `ended` is set, the loop closes it.

use super::compare::{Compare, Ended};
use super::feed::{Item, Plan};
use super::{Pace, Settings};
use crate::format::connid::ConnId as LogId;
use crate::format::time::now_micros;
use crate::log::Log;
use crate::proxy::pipe::{End, Pipe, Pump, Turn};
use crate::read::Error;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Captured bytes a connection takes from its reader ahead of need.
const AHEAD_BYTES: usize = 1024 * 1024;

/// The client chunks as a source the up pipe reads: one chunk is let out
/// at a time, when the pace allows; `WouldBlock` until then.
#[derive(Default)]
struct Script {
    chunk: Vec<u8>,
    at: usize,
    /// The client's half-close is due: end of file once the chunk is out.
    fin: bool,
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.chunk.len() {
            let n = buf.len().min(self.chunk.len() - self.at);
            buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
            self.at += n;
            if self.at == self.chunk.len() {
                self.chunk = Vec::new();
                self.at = 0;
            }
            return Ok(n);
        }
        if self.fin {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Script {
    fn is_empty(&self) -> bool {
        self.at == self.chunk.len()
    }
}

pub struct Conn {
    pub plan: Plan,
    items: Receiver<Item>,
    /// Items taken from the channel, not yet due: sends and the half-close.
    ahead: VecDeque<Item>,
    ahead_bytes: usize,
    /// The reader sent `End`: `ahead` holds all that is left.
    fed: bool,
    addrs: Vec<SocketAddr>,
    pub socket: Option<TcpStream>,
    connected: bool,
    up: Pipe,
    down: Pipe,
    script: Script,
    pub compare: Compare,
    /// Client bytes handed to the socket (some may still be pending).
    sent: u64,
    /// Its ConnID in `--log`, and the addresses its lines name.
    pub log_id: Option<LogId>,
    local: String,
    close_logged: bool,
    /// When the replay of this connection started (captured pace counts from it).
    started: Instant,
    /// When the current connect started.
    connect_since: Instant,
    /// Since when the next item has waited for the server's answer (lockstep).
    gate_since: Option<Instant>,
    last_activity: Instant,
    pub ended: Option<Ended>,
    /// Its reader failed: the run stops with this error.
    pub failed: Option<Error>,
    /// `pump` yielded with more to do: drive again soon.
    pub again: bool,
}

impl Conn {
    /// A connection about to connect to `addrs` (tried in turn).
    pub fn new(plan: Plan, items: Receiver<Item>, addrs: Vec<SocketAddr>, now: Instant) -> Conn {
        let compare = Compare::new(plan.target_bytes);
        Conn {
            plan,
            items,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            fed: false,
            addrs,
            socket: None,
            connected: false,
            up: Pipe::default(),
            down: Pipe::default(),
            script: Script::default(),
            compare,
            sent: 0,
            log_id: None,
            local: String::new(),
            close_logged: false,
            started: now,
            connect_since: now,
            gate_since: None,
            last_activity: now,
            ended: None,
            failed: None,
            again: false,
        }
    }

    /// Client bytes the socket took.
    pub fn sent(&self) -> u64 {
        self.sent - self.up.pending_len() as u64
    }

    /// Starts a connect to the next address; `None` when none is left
    /// (the connection then ended as `refused`).
    pub fn connect(&mut self) -> Option<&mut TcpStream> {
        while !self.addrs.is_empty() {
            let addr = self.addrs.remove(0);
            self.connect_since = Instant::now();
            if let Ok(socket) = TcpStream::connect(addr) {
                self.socket = Some(socket);
                return self.socket.as_mut();
            }
        }
        self.ended = Some(Ended::Refused);
        None
    }

    /// After a readiness event while connecting: true once connected
    /// (mio's recipe: `take_error`, then `peer_addr`). On failure the
    /// socket is dropped and the caller connects again.
    fn check_connected(&mut self) -> Result<bool, ()> {
        let Some(socket) = &self.socket else {
            return Err(());
        };
        match socket.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Err(()),
        }
        match socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(_) => Err(()),
        }
    }

    /// Does all that can be done now (see the module comment). `registry`
    /// is for a new socket when an address failed; `log` is `--log`.
    pub fn drive(
        &mut self,
        settings: &Settings,
        scratch: &mut [u8],
        mut log: Option<&mut Log>,
        registry: &mio::Registry,
        token: mio::Token,
        now: Instant,
    ) {
        self.again = false;
        if self.ended.is_some() {
            return;
        }
        if !self.connected {
            let late = now >= self.connect_since + settings.wait;
            match self.check_connected().and_then(|done| match done || !late {
                true => Ok(done),
                false => Err(()),
            }) {
                Ok(true) => {
                    self.connected = true;
                    self.last_activity = now;
                    let socket = self.socket.as_ref().expect("connected");
                    self.local = socket
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    if let Some(log) = log.as_deref_mut() {
                        let port = self.plan.listen_port.unwrap_or(0);
                        self.log_id = Some(log.open(now_micros(), &self.local, &settings.to, port));
                    }
                }
                Ok(false) => return,
                Err(()) => {
                    self.socket = None;
                    if let Some(socket) = self.connect() {
                        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                        if registry.register(socket, token, interest).is_err() {
                            self.ended = Some(Ended::Refused);
                        }
                    }
                    return;
                }
            }
        }
        self.take_items();
        let may_read = log.as_deref().is_none_or(Log::has_room);
        let turn = Turn {
            may_read,
            short_read_drains: false,
        };
        // The answer first: lockstep waits on it.
        if !self.down.eof {
            let socket = self.socket.as_mut().expect("connected");
            let received = self.compare.received;
            let (id, local, to) = (self.log_id, &self.local, &settings.to);
            let mut log_answer = |bytes: &[u8]| {
                if let (Some(log), Some(id)) = (log.as_deref_mut(), &id) {
                    log.data(now_micros(), id, bytes, to, local);
                }
                log.as_deref().is_none_or(Log::has_room)
            };
            let outcome = self
                .down
                .pump(socket, &mut self.compare, scratch, turn, &mut log_answer);
            if self.compare.received > received {
                self.last_activity = now;
                // More answer may open the gate of the next chunk.
                self.take_items();
            }
            match outcome {
                Pump::Finished => {
                    // SPEC §10: a connection ends when the server closes.
                    self.log_close(log.as_deref_mut(), settings, false);
                    self.ended = Some(Ended::ServerClosed);
                    return;
                }
                Pump::Failed(..) => {
                    self.ended = Some(Ended::Reset);
                    return;
                }
                Pump::Yielded => self.again = true,
                Pump::Blocked | Pump::Throttled => {}
            }
        }
        loop {
            if !self.script.is_empty() || self.script.fin {
                let socket = self.socket.as_mut().expect("connected");
                let (id, local, to) = (self.log_id, &self.local, &settings.to);
                let mut sent = 0u64;
                let mut log_sent = |bytes: &[u8]| {
                    sent += bytes.len() as u64;
                    if let (Some(log), Some(id)) = (log.as_deref_mut(), &id) {
                        log.data(now_micros(), id, bytes, local, to);
                    }
                    log.as_deref().is_none_or(Log::has_room)
                };
                let outcome = self
                    .up
                    .pump(&mut self.script, socket, scratch, turn, &mut log_sent);
                if sent > 0 {
                    self.sent += sent;
                    self.last_activity = now;
                }
                match outcome {
                    Pump::Finished => {
                        // The capture's client half-close, passed on.
                        if !self.close_logged {
                            self.log_close(log.as_deref_mut(), settings, true);
                        }
                    }
                    Pump::Failed(End::Dst, _) | Pump::Failed(End::Src, _) => {
                        self.ended = Some(Ended::Reset);
                        return;
                    }
                    Pump::Yielded => {
                        self.again = true;
                        break;
                    }
                    Pump::Throttled => break,
                    Pump::Blocked => {}
                }
                // Still bytes pending for the socket: its writable event resumes us.
                if self.up.pending_len() > 0 || !self.script.is_empty() {
                    break;
                }
                if self.script.fin {
                    break; // nothing more is sent after the half-close
                }
            }
            if !self.next_due(settings, now) {
                break;
            }
        }
        // Captured bytes that came meanwhile let the held answer through.
        self.again |= self.down.pending_len() > 0 && self.compare.held() > 0;
        if self.idle_due(settings).is_some_and(|at| at <= now) {
            self.ended = Some(Ended::Waited);
        }
    }

    /// Takes items from the reader while there is room ahead; the target's
    /// captured bytes go to `compare` at once.
    fn take_items(&mut self) {
        while !self.fed && self.ahead_bytes + self.compare.held() < AHEAD_BYTES {
            match self.items.try_recv() {
                Ok(Item::Answer(bytes)) => self.compare.expect(bytes),
                Ok(Item::End) => self.fed = true,
                Ok(Item::Failed(e)) => {
                    self.failed = Some(e);
                    self.fed = true;
                }
                Ok(item) => {
                    if let Item::Send { bytes, .. } = &item {
                        self.ahead_bytes += bytes.len();
                    }
                    self.ahead.push_back(item);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.fed = true,
            }
        }
    }

    /// When the next item may go: the pace's rule (SPEC §10).
    fn due_at(&self, settings: &Settings, answered: u64, at: i64) -> Option<Instant> {
        match settings.pace {
            Pace::Fast => None,
            Pace::Lockstep if self.compare.received >= answered => None,
            Pace::Lockstep => Some(self.gate_since.unwrap_or(Instant::now()) + settings.wait),
            Pace::Captured => {
                let micros = at.max(0) as f64 / settings.speed;
                Some(self.started + Duration::from_micros(micros as u64))
            }
        }
    }

    /// Lets the next item out if it is due; true when it did.
    fn next_due(&mut self, settings: &Settings, now: Instant) -> bool {
        let (answered, at) = match self.ahead.front() {
            Some(Item::Send { answered, at, .. } | Item::ClientClose { answered, at }) => {
                (*answered, *at)
            }
            _ => return false,
        };
        if settings.pace == Pace::Lockstep && self.gate_since.is_none() {
            self.gate_since = Some(now);
        }
        if self
            .due_at(settings, answered, at)
            .is_some_and(|due| due > now)
        {
            return false;
        }
        self.gate_since = None;
        match self.ahead.pop_front() {
            Some(Item::Send { bytes, .. }) => {
                self.ahead_bytes -= bytes.len();
                self.script.chunk = bytes;
                self.script.at = 0;
            }
            Some(Item::ClientClose { .. }) => self.script.fin = true,
            _ => unreachable!("the front was a send or the half-close"),
        }
        self.take_items();
        true
    }

    /// When nothing more will come of waiting: the server has been quiet
    /// for `--wait-ms` while no chunk is due (everything sent, or the
    /// server takes nothing, or its captured answer fills the room ahead)
    /// and the capture is not still being read.
    fn idle_due(&self, settings: &Settings) -> Option<Instant> {
        let front_due = matches!(
            self.ahead.front(),
            Some(Item::Send { .. } | Item::ClientClose { .. })
        ) && self.script.is_empty()
            && self.up.pending_len() == 0;
        let waiting_on_feed = !self.fed
            && self.ahead.is_empty()
            && self.ahead_bytes + self.compare.held() < AHEAD_BYTES;
        (self.connected && !front_due && !waiting_on_feed)
            .then(|| self.last_activity + settings.wait)
    }

    /// When `drive` next needs to run without an event.
    pub fn deadline(&self, settings: &Settings) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        if !self.connected {
            // A connect not taken within --wait-ms tries the next address.
            return Some(self.connect_since + settings.wait);
        }
        let next = match self.ahead.front() {
            Some(Item::Send { answered, at, .. } | Item::ClientClose { answered, at })
                if self.script.is_empty() && self.up.pending_len() == 0 =>
            {
                self.due_at(settings, *answered, *at)
            }
            _ => None,
        };
        next.into_iter().chain(self.idle_due(settings)).min()
    }

    /// Logs the connection's one `close` line: the side that ended first.
    fn log_close(&mut self, log: Option<&mut Log>, settings: &Settings, client_first: bool) {
        if self.close_logged {
            return;
        }
        self.close_logged = true;
        if let (Some(log), Some(id)) = (log, &self.log_id) {
            let (from, to) = match client_first {
                true => (self.local.as_str(), settings.to.as_str()),
                false => (settings.to.as_str(), self.local.as_str()),
            };
            log.close(now_micros(), id, from, to);
        }
    }

    /// Closes the socket (rawprox ends a connection it ended).
    pub fn close(&mut self, log: Option<&mut Log>, settings: &Settings, registry: &mio::Registry) {
        if self.connected {
            self.log_close(log, settings, true);
        }
        if let Some(mut socket) = self.socket.take() {
            let _ = registry.deregister(&mut socket);
        }
    }
}
