//! `replay` (SPEC §10): sends captured conversations to a server again and
//! compares its answers with the captured ones, one row per connection.
//!
//! The shape, and why:
//! - The capture is read by threads (`feed`), the network by one mio loop
//!   here (no thread per connection). A first reading of the input, a sink
//!   on the read pipeline, yields each selected connection's `Plan` in open
//!   order; a small connection's plan carries its whole capture (up to
//!   64 KiB, within a budget for all held at once), so most connections
//!   cost one reading. A bigger one gets its own reading of the input when
//!   its replay starts, with only its ConnID selected (as `extract`
//!   reads), streaming its chunks into a small bounded channel and stopped
//!   as soon as the plan's totals are handed on.
//! - So no big conversation is held whole, and a connection that waits on
//!   its server (lockstep) never holds back the capture of another: each
//!   has its own feed, blocked only by its own channel. The price is that a
//!   big connection's reading goes from the start of the input (skipping
//!   other connections' lines unparsed); standard input, which cannot be
//!   read twice, is refused.
//! - Memory is bounded by `--concurrency` × (a feed's channel, `conn`'s
//!   `AHEAD_BYTES`, a pipe's pending bytes), plus the plans the first
//!   reading holds (`feed::INLINE_BUDGET`, `feed::PLANS_AHEAD`).
//! - Each connection (`conn`) reuses the proxy's `Pipe::pump` both ways:
//!   the captured client chunks to the socket, and the socket into
//!   `compare`, whose backpressure holds the server while its captured
//!   answer is still being read. `--log` is the proxy's own `Log`: new
//!   ConnIDs, the line format, the writer thread.

pub mod compare;
pub mod conn;
pub mod feed;

use super::input::Input;
use super::lines::Skipped;
use super::pipeline::Selection;
use super::{Error, extract};
use crate::format::connid::ConnId;
use crate::format::time::Time;
use crate::log::destination::Destination;
use crate::log::{self, Log};
use compare::{Ended, Excerpt, Verdict};
use conn::Conn;
use feed::{Plan, Planned, Wake};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// The readers' token; connections are their slab key.
const WAKER: Token = Token(usize::MAX);

/// When each client chunk goes (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Lockstep,
    Captured,
    Fast,
}

impl Pace {
    pub fn parse(text: &str) -> Option<Pace> {
        match text {
            "lockstep" => Some(Pace::Lockstep),
            "captured" => Some(Pace::Captured),
            "fast" => Some(Pace::Fast),
            _ => None,
        }
    }
}

/// What every connection of a replay shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--to` as logged: `host:port`, `[v6]:port`.
    pub to: String,
    pub pace: Pace,
    /// `--speed`, for the captured pace.
    pub speed: f64,
    /// `--wait-ms`.
    pub wait: Duration,
}

/// A replay's command line, checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub ids: Vec<ConnId>,
    pub port: Option<u16>,
    /// Only connections opened since then (MCP: this run's).
    pub since: Option<Time>,
    /// The addresses of `--to`, tried in turn.
    pub addrs: Vec<SocketAddr>,
    pub settings: Settings,
    pub concurrency: usize,
    /// `--log`: where the replayed conversations are logged.
    pub log: Option<Destination>,
}

/// One replayed connection's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub conn_id: ConnId,
    /// Its ConnID in `--log`.
    pub log_id: Option<String>,
    pub sent: u64,
    pub received: u64,
    pub captured: u64,
    pub verdict: Verdict,
    pub excerpt: Option<Excerpt>,
}

impl Row {
    /// The row for people: one line, then the excerpt of a difference.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}", self.conn_id);
        if let Some(id) = &self.log_id {
            text.push_str(&format!("  replayed as {id}"));
        }
        text.push_str(&format!(
            "  sent {}  received {} of {}  {}\n",
            self.sent, self.received, self.captured, self.verdict
        ));
        if let Some(excerpt) = &self.excerpt {
            let (captured, replayed) = excerpt.render();
            text.push_str(&format!("<< captured, from byte {}\n", excerpt.offset));
            text.push_str(&captured);
            text.push_str(&format!("<< replayed, from byte {}\n", excerpt.offset));
            text.push_str(&replayed);
        }
        text
    }

    /// The `--json` row: one compact object, its fields in the text row's
    /// order (as `list --json` keeps the table's).
    pub fn to_json(&self) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let differs_at = match self.verdict {
            Verdict::Differs(n) => n.to_string(),
            _ => "null".into(),
        };
        let excerpt = match &self.excerpt {
            None => "null".into(),
            Some(e) => {
                let (captured, replayed) = e.render();
                format!(
                    "{{\"offset\":{},\"captured\":{},\"replayed\":{}}}",
                    e.offset,
                    text(&captured),
                    text(&replayed)
                )
            }
        };
        format!(
            "{{\"ConnID\":\"{}\",\"replayed_as\":{},\"bytes_sent\":{},\"bytes_received\":{},\"bytes_captured\":{},\"verdict\":\"{}\",\"differs_at\":{},\"excerpt\":{}}}",
            self.conn_id,
            self.log_id.as_deref().map_or("null".into(), text),
            self.sent,
            self.received,
            self.captured,
            self.verdict,
            differs_at,
            excerpt
        )
    }
}

/// The connections still to start, in open order.
struct Plans {
    ready: VecDeque<Plan>,
    /// The first reading, when it runs beside the replay.
    streaming: Option<Receiver<Planned>>,
    skipped: Skipped,
}

impl Plans {
    /// The next plan, if one is known yet.
    fn peek(&mut self) -> Result<Option<&Plan>, Error> {
        if self.ready.is_empty()
            && let Some(rx) = &self.streaming
        {
            match rx.try_recv() {
                Ok(Planned::Plan(plan)) => self.ready.push_back(plan),
                Ok(Planned::Done(skipped)) => {
                    self.skipped = skipped;
                    self.streaming = None;
                }
                Ok(Planned::Failed(e)) => return Err(e),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.streaming = None,
            }
        }
        Ok(self.ready.front())
    }

    fn done(&self) -> bool {
        self.ready.is_empty() && self.streaming.is_none()
    }
}

/// Replays the selected connections of `inputs` and hands each row to
/// `each` as its connection ends. Errors (SPEC §10): a ConnID named that
/// the input does not hold or that has no client bytes, an input that
/// fails, a `--log` that cannot be written.
pub fn replay(
    inputs: Vec<Input>,
    options: &Options,
    mut each: impl FnMut(&Row) -> Result<(), Error>,
) -> Result<Skipped, Error> {
    if inputs.iter().any(|i| matches!(i, Input::Stdin)) {
        return Err(Error::Message(
            "replay reads its input more than once: give log files or directories, not standard input".into(),
        ));
    }
    let inputs = Arc::new(inputs);
    let failed = |what: &str, e: std::io::Error| Error::Message(format!("{what}: {e}"));
    let mut poll = Poll::new().map_err(|e| failed("cannot start the replay loop", e))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKER)
            .map_err(|e| failed("cannot start the replay loop", e))?,
    );
    let wake: Wake = Arc::new(move || {
        let _ = waker.wake();
    });
    let mut plans = Plans {
        ready: VecDeque::new(),
        streaming: None,
        skipped: Skipped::default(),
    };
    let select = Selection {
        ids: options.ids.clone(),
        port: options.port,
        since: options.since,
    };
    if options.ids.is_empty() {
        plans.streaming = Some(feed::spawn_plans(inputs.clone(), select, wake.clone())?);
    } else {
        // Named connections are few: check them all before any is replayed.
        plans.skipped = feed::read_plans(&inputs, &select, |plan| {
            plans.ready.push_back(plan);
            true
        })?;
        for id in &options.ids {
            let mut named = plans.ready.iter().filter(|p| p.id == *id).peekable();
            if named.peek().is_none() {
                return Err(extract::not_found(*id));
            }
            if named.all(|p| p.client_bytes == 0) {
                return Err(Error::Message(format!(
                    "connection {id} has no client bytes to replay (`rawprox.exe follow {id}` shows it)"
                )));
            }
        }
    }
    let mut log = match &options.log {
        None => None,
        Some(destination) => {
            let settings = log::Settings {
                flush_interval: Duration::from_millis(500),
                flush_bytes: Some(4 << 20),
                cap: Some(64 << 20),
            };
            Some(
                Log::start(destination.clone(), wake.clone(), settings, None)
                    .map_err(|e| failed("cannot start the log", e))?,
            )
        }
    };
    let settings = &options.settings;
    let mut conns: Slab<Conn> = Slab::new();
    let mut scratch = vec![0u8; crate::proxy::pipe::READ_CHUNK];
    let mut events = Events::with_capacity(256);
    // Captured pace: the first connection's open time, and when it started.
    let mut base: Option<(Time, Instant)> = None;
    loop {
        let now = Instant::now();
        // Start what may start: in open order, at most --concurrency.
        let mut start_at: Option<Instant> = None;
        while conns.len() < options.concurrency.max(1) {
            let Some(plan) = plans.peek()? else { break };
            if settings.pace == Pace::Captured {
                let (open, started) = *base.get_or_insert((plan.open, now));
                let micros = (plan.open.0 - open.0).max(0) as f64 / settings.speed;
                let due = started + Duration::from_micros(micros as u64);
                if due > now {
                    start_at = Some(due);
                    break;
                }
            }
            let mut plan = plans.ready.pop_front().expect("peeked");
            let items = feed::spawn_script(inputs.clone(), &mut plan, wake.clone())?;
            let entry = conns.vacant_entry();
            let token = Token(entry.key());
            let mut conn = Conn::new(plan, items, options.addrs.clone(), now);
            if let Some(socket) = conn.connect()
                && poll
                    .registry()
                    .register(socket, token, Interest::READABLE | Interest::WRITABLE)
                    .is_err()
            {
                conn.ended = Some(Ended::Refused);
            }
            entry.insert(conn);
        }
        if conns.is_empty() && plans.done() {
            break;
        }
        let soonest = conns
            .iter()
            .filter_map(
                |(_, c)| match c.again || c.ended.is_some() || c.failed.is_some() {
                    true => Some(now),
                    false => c.deadline(settings),
                },
            )
            .chain(start_at)
            .chain(log.as_ref().and_then(|l| l.deadline(now)))
            .min();
        let timeout = soonest.map(|at| at.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(failed("the replay loop failed", e));
        }
        let now = Instant::now();
        let mut drive_all = false;
        let mut woken: Vec<usize> = Vec::new();
        for event in events.iter() {
            match event.token() {
                WAKER => drive_all = true,
                Token(key) => woken.push(key),
            }
        }
        woken.sort_unstable();
        if let Some(log) = log.as_mut() {
            let news = log.on_writer_reports();
            if let Some(message) = news.failed {
                return Err(Error::Message(message));
            }
            drive_all |= news.room;
        }
        // An event, a reader's news, a deadline, or a pump that yielded.
        for (key, conn) in conns.iter_mut() {
            let due = conn.deadline(settings).is_some_and(|at| at <= now);
            if drive_all || due || conn.again || woken.binary_search(&key).is_ok() {
                conn.drive(
                    settings,
                    &mut scratch,
                    log.as_mut(),
                    poll.registry(),
                    Token(key),
                    now,
                );
            }
        }
        if let Some(log) = log.as_mut() {
            log.run_due(now);
        }
        let ended: Vec<usize> = conns
            .iter()
            .filter(|(_, c)| c.ended.is_some() || c.failed.is_some())
            .map(|(key, _)| key)
            .collect();
        for key in ended {
            let mut conn = conns.remove(key);
            if let Some(e) = conn.failed.take() {
                return Err(e);
            }
            conn.close(log.as_mut(), settings, poll.registry());
            let ended = conn.ended.expect("ended");
            let row = Row {
                conn_id: conn.plan.id,
                log_id: conn.log_id.map(|id| id.as_str().to_owned()),
                sent: conn.sent(),
                received: conn.compare.received,
                captured: conn.plan.target_bytes,
                verdict: conn.compare.verdict(ended),
                excerpt: conn.compare.excerpt(),
            };
            each(&row)?;
        }
    }
    if let Some(log) = log.as_mut()
        && let Some(message) = log.finish().failed
    {
        return Err(Error::Message(message));
    }
    Ok(plans.skipped)
}
