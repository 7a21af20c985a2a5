//! The MCP tools that read the capture (SPEC §9, §10): `list-connections`,
//! `read-connection` and `replay-connection`. Their arguments are checked
//! on the loop (`Query`);
//! the reading itself runs on a helper thread (`Reader`), which wakes the
//! loop with the answer, so traffic and other requests go on meanwhile.

use super::args;
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use crate::proxy::rule::{host_port, parse_target};
use crate::read::extract::{Conversation, conversation, not_found};
use crate::read::input::{Input, NO_LOGS, expand_within};
use crate::read::list::{ConnRow, connections, write_table};
use crate::read::replay::{Options, Pace, Settings, replay};
use crate::read::show::{is_mostly_text, push_hex_dump, push_text, visible};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

/// `list-connections`: rows shown by default, and at most.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 100_000;
/// `read-connection`: bytes read by default, and at most.
const DEFAULT_MAX_BYTES: u64 = 16 * 1024;
const MAX_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// `replay-connection`: the longest `wait_ms`.
const MAX_WAIT_MS: u64 = 600_000;

/// How `read-connection` shows bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// Text as text, a mostly binary message as a hex dump (as `follow`).
    Text,
    Hex,
    Base64,
}

/// A checked request of one of the two tools.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    List {
        port: Option<u16>,
        limit: usize,
    },
    Read {
        conn_id: ConnId,
        side: Option<Side>,
        offset: u64,
        max_bytes: usize,
        format: Format,
    },
    /// `replay-connection`: `to` is checked here, its host looked up on
    /// the reader thread.
    Replay {
        conn_id: ConnId,
        host: String,
        port: u16,
        pace: Pace,
        wait_ms: u64,
    },
}

/// What a query reads: this run's directory destinations (active or
/// stopped) and when the run started, so earlier runs appended to the same
/// files are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub directories: Vec<String>,
    pub run_started_micros: u64,
}

/// The `conn_id` argument.
fn conn_id(args: &Map<String, Value>) -> Result<ConnId, String> {
    match args.get("conn_id") {
        Some(Value::String(id)) => ConnId::parse(id.as_bytes()).ok_or_else(|| {
            format!("conn_id must be 8 letters and digits, as list-connections shows, not {id:?}")
        }),
        Some(other) => Err(format!("conn_id must be a string, not {other}")),
        None => Err("missing argument conn_id (list-connections shows them)".into()),
    }
}

/// A whole number argument within `range`, or its default when omitted.
fn number(
    args: &Map<String, Value>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
            format!(
                "{name} must be a whole number {}-{}, not {value}",
                range.start(),
                range.end()
            )
        }),
    }
}

impl Query {
    /// `list-connections` arguments: `port`, `limit`.
    pub fn list(args: &Map<String, Value>) -> Result<Query, String> {
        let port = match args.get("port") {
            None | Some(Value::Null) => None,
            Some(value) => Some(args::port("port", value)?),
        };
        let limit = number(args, "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)? as usize;
        Ok(Query::List { port, limit })
    }

    /// `replay-connection` arguments: `conn_id`, `to`, `pace`, `wait_ms`.
    pub fn replay(args: &Map<String, Value>) -> Result<Query, String> {
        let conn_id = conn_id(args)?;
        let (host, port) = match args.get("to") {
            Some(Value::String(to)) => parse_target(to)?,
            Some(other) => return Err(format!("to must be a string, HOST:PORT, not {other}")),
            None => return Err("missing argument to, the server to replay to (HOST:PORT)".into()),
        };
        let pace = match args.get("pace") {
            None | Some(Value::Null) => Pace::Lockstep,
            Some(Value::String(p)) => Pace::parse(p).ok_or_else(|| {
                format!("pace must be \"lockstep\", \"captured\" or \"fast\", not {p:?}")
            })?,
            Some(other) => return Err(format!("pace must be a string, not {other}")),
        };
        let wait_ms = number(args, "wait_ms", 5000, 1..=MAX_WAIT_MS)?;
        Ok(Query::Replay {
            conn_id,
            host,
            port,
            pace,
            wait_ms,
        })
    }

    /// `read-connection` arguments: `conn_id`, `side`, `offset`,
    /// `max_bytes`, `format`.
    pub fn read(args: &Map<String, Value>) -> Result<Query, String> {
        let conn_id = conn_id(args)?;
        let side = match args.get("side") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "both" => None,
            Some(Value::String(s)) => Some(Side::parse(s).ok_or_else(|| {
                format!("side must be \"client\" or \"target\" (or omitted for both), not {s:?}")
            })?),
            Some(other) => return Err(format!("side must be a string, not {other}")),
        };
        let offset = number(args, "offset", 0, 0..=u64::MAX)?;
        let max_bytes = number(args, "max_bytes", DEFAULT_MAX_BYTES, 1..=MAX_MAX_BYTES)? as usize;
        let format = match args.get("format") {
            None | Some(Value::Null) => Format::Text,
            Some(Value::String(f)) => match f.as_str() {
                "text" => Format::Text,
                "hex" => Format::Hex,
                "base64" => Format::Base64,
                _ => {
                    return Err(format!(
                        "format must be \"text\", \"hex\" or \"base64\", not {f:?}"
                    ));
                }
            },
            Some(other) => return Err(format!("format must be a string, not {other}")),
        };
        Ok(Query::Read {
            conn_id,
            side,
            offset,
            max_bytes,
            format,
        })
    }
}

/// Runs `query` on `capture`: the tool's result (`content`, and
/// `structuredContent`), or the message of a `-32602` error.
pub fn answer(query: &Query, capture: &Capture) -> Result<Value, String> {
    let groups = groups(capture)?;
    let since = Time(capture.run_started_micros as i64);
    match query {
        Query::List { port, limit } => {
            let (shown, total) = list(&groups, *port, *limit, since)?;
            let mut result = list_result(&shown, total);
            let note = no_logs(&groups);
            if total == 0 && !note.is_empty() {
                let text = &mut result["content"][0]["text"];
                *text = Value::from(format!(
                    "{}{}\n",
                    text.as_str().unwrap_or_default(),
                    note.trim_start()
                ));
            }
            Ok(result)
        }
        Query::Read {
            conn_id,
            side,
            offset,
            max_bytes,
            format,
        } => {
            // The most of it any directory holds (see `groups`).
            let mut best: Option<Conversation> = None;
            for inputs in &groups {
                match conversation(inputs, *conn_id, Some(since), *side, *offset, *max_bytes) {
                    Ok((talk, _)) => {
                        if best.as_ref().is_none_or(|b| fullness(&talk) > fullness(b)) {
                            best = Some(talk);
                        }
                    }
                    Err(e) if e == not_found(*conn_id) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            match best {
                Some(talk) => Ok(read_result(&talk, *side, *offset, *max_bytes, *format)),
                None => Err(format!(
                    "unknown ConnID {conn_id} in this run's capture: list-connections shows the ConnIDs{}",
                    no_logs(&groups)
                )),
            }
        }
        Query::Replay {
            conn_id,
            host,
            port,
            pace,
            wait_ms,
        } => {
            // The directory that holds the most of it (see `groups`).
            let mut best: Option<(usize, (bool, bool, u64))> = None;
            for (i, inputs) in groups.iter().enumerate() {
                let mut found = None;
                connections(inputs, None, |row| {
                    if row.conn_id == *conn_id && row.open_time >= since {
                        found = Some(row_fullness(&row));
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok(ControlFlow::Continue(()))
                })
                .map_err(|e| e.to_string())?;
                if let Some(f) = found
                    && best.is_none_or(|(_, b)| f > b)
                {
                    best = Some((i, f));
                }
            }
            let Some((i, _)) = best else {
                return Err(format!(
                    "unknown ConnID {conn_id} in this run's capture: list-connections shows the ConnIDs"
                ));
            };
            replay_one(
                groups[i].clone(),
                *conn_id,
                since,
                host,
                *port,
                *pace,
                *wait_ms,
            )
        }
    }
}

/// Replays one connection (SPEC §10) and answers its row.
fn replay_one(
    inputs: Vec<Input>,
    conn_id: ConnId,
    since: Time,
    host: &str,
    port: u16,
    pace: Pace,
    wait_ms: u64,
) -> Result<Value, String> {
    let to = host_port(host, port);
    // Only the `to` host is ever looked up.
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve to {to}: {e}"))?
            .collect(),
    };
    let options = Options {
        ids: vec![conn_id],
        port: None,
        since: Some(since),
        addrs,
        settings: Settings {
            to,
            pace,
            speed: 1.0,
            wait: Duration::from_millis(wait_ms),
        },
        concurrency: 1,
        log: None,
    };
    let mut answer = None;
    replay(inputs, &options, |row| {
        answer = Some(row.clone());
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let row = answer.ok_or_else(|| format!("connection {conn_id} was not replayed"))?;
    Ok(json!({
        "content": [{ "type": "text", "text": row.to_text() }],
        "structuredContent": serde_json::from_str::<Value>(&row.to_json()).unwrap_or(Value::Null)
    }))
}

/// The capture's log files, one group per directory: a directory spelled
/// several ways (`d`, `./d`, `d/`, its absolute path) is one, and each file
/// is in one group only, the deepest directory's when destinations nest.
/// Every directory destination gets every line, so a connection may be in
/// several groups: the tools show it once (SPEC §9).
fn groups(capture: &Capture) -> Result<Vec<Vec<Input>>, String> {
    // A directory moved or deleted since holds nothing to read.
    let mut dirs: Vec<PathBuf> = capture
        .directories
        .iter()
        .filter_map(|dir| fs::canonicalize(dir).ok())
        .filter(|dir| dir.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    // Deepest first: `expand` lists a file once, under the first argument
    // that holds it, and does not enter a directory it has walked. Only
    // files inside the directories are read (`expand_within`: SPEC §9).
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    let args: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let mut groups: Vec<Vec<Input>> = args.iter().map(|_| Vec::new()).collect();
    for input in expand_within(&args).map_err(|e| e.to_string())? {
        match &input {
            Input::File { group, .. } | Input::Unread { group, .. } => groups[*group].push(input),
            Input::Stdin | Input::Bytes(_) => {}
        }
    }
    groups.retain(|inputs| !inputs.is_empty());
    Ok(groups)
}

/// What to add when nothing is found: a directory of the run whose files
/// are not `.ndjson` (a `filename_format` with another extension) is not
/// read (SPEC §9), and the user is told so rather than left to doubt the
/// ConnID.
fn no_logs(groups: &[Vec<Input>]) -> String {
    groups
        .iter()
        .flatten()
        .find_map(|input| match input {
            Input::Unread { path, why, .. } if why.starts_with(NO_LOGS) => Some(format!(
                " ({} {why}: give start-logging a filename_format ending in .ndjson)",
                path.display()
            )),
            _ => None,
        })
        .unwrap_or_default()
}

/// The newest `limit` connections of this run (on `port`, if given), in
/// open order, and how many there are. A connection several groups hold
/// is one row: the fullest (`row_fullness`).
fn list(
    groups: &[Vec<Input>],
    port: Option<u16>,
    limit: usize,
    since: Time,
) -> Result<(Vec<ConnRow>, usize), String> {
    // Each group's newest `limit` rows: the newest `limit` of all are among
    // them, as ConnIDs count up in open order within a run.
    let mut newest: BTreeMap<ConnId, ConnRow> = BTreeMap::new();
    let mut ids: HashSet<ConnId> = HashSet::new();
    let mut total = 0;
    for inputs in groups {
        // Only the newest `limit` rows are kept (SPEC §9: memory does not
        // follow the size of the capture).
        let mut shown: VecDeque<ConnRow> = VecDeque::new();
        connections(inputs, port, |row| {
            if row.open_time >= since {
                // One group (the usual case) needs no set to count.
                if groups.len() == 1 || ids.insert(row.conn_id) {
                    total += 1;
                }
                if shown.len() == limit {
                    shown.pop_front();
                }
                if limit > 0 {
                    shown.push_back(row);
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| e.to_string())?;
        if groups.len() == 1 {
            return Ok((Vec::from(shown), total));
        }
        for row in shown {
            match newest.get(&row.conn_id) {
                Some(kept) if row_fullness(kept) >= row_fullness(&row) => {}
                _ => {
                    newest.insert(row.conn_id, row);
                }
            }
        }
    }
    let rows: Vec<ConnRow> = newest.into_values().collect();
    let skip = rows.len().saturating_sub(limit);
    Ok((rows.into_iter().skip(skip).collect(), total))
}

/// How much of a connection a row saw: its `open`, its `close`, its bytes.
fn row_fullness(row: &ConnRow) -> (bool, bool, u64) {
    (
        row.listen_port.is_some(),
        row.close_time.is_some(),
        row.bytes_client_to_target + row.bytes_target_to_client,
    )
}

/// How much of a connection a conversation saw: its `open`, more than was
/// asked for, the bytes kept.
fn fullness(talk: &Conversation) -> (bool, bool, usize) {
    let kept = talk.messages.iter().map(|m| m.bytes.len()).sum();
    (talk.peers.listen_port.is_some(), talk.truncated, kept)
}

fn list_result(rows: &[ConnRow], total: usize) -> Value {
    let mut table = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_table(rows, &mut table);
    let mut text = String::from_utf8_lossy(&table).into_owned();
    if rows.len() < total {
        text.push_str(&format!(
            "(the newest {} of {total} connections; raise limit for more)\n",
            rows.len()
        ));
    }
    let structured: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(&r.to_json()).unwrap_or(Value::Null))
        .collect();
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": { "connections": structured, "total": total }
    })
}

fn read_result(
    talk: &Conversation,
    side: Option<Side>,
    offset: u64,
    max_bytes: usize,
    format: Format,
) -> Value {
    let kept: usize = talk.messages.iter().map(|m| m.bytes.len()).sum();
    let next = offset + kept as u64;
    let which = side.map_or("both sides", Side::name);
    let mut text = format!(
        "ConnID {} ({} -> {}), {which}, bytes {offset} to {next}",
        talk.conn_id,
        visible(&talk.peers.client),
        visible(&talk.peers.target)
    );
    if talk.truncated {
        text.push_str(&format!(
            ": cut at max_bytes {max_bytes}; continue with offset {next}\n"
        ));
    } else {
        text.push_str(": the end of what was logged\n");
    }
    match (format, side) {
        // One side's bytes in one piece, for a client to decode.
        (Format::Base64, Some(_)) => {
            let bytes: Vec<u8> = talk.messages.iter().flat_map(|m| m.bytes.clone()).collect();
            text.push_str(&base64(&bytes));
            text.push('\n');
        }
        _ => {
            for m in &talk.messages {
                let arrow = if m.side == Side::Client { '>' } else { '<' };
                text.push_str(&format!(
                    "{arrow} {} {} bytes at {}\n",
                    m.side.name(),
                    m.bytes.len(),
                    m.time
                ));
                match format {
                    Format::Base64 => {
                        text.push_str(&base64(&m.bytes));
                        text.push('\n');
                    }
                    Format::Hex => push_hex_dump(&m.bytes, m.offset, &mut text),
                    Format::Text if is_mostly_text(&m.bytes) => {
                        push_text(&m.bytes, &mut text);
                        if !text.ends_with('\n') {
                            text.push('\n');
                        }
                    }
                    Format::Text => push_hex_dump(&m.bytes, m.offset, &mut text),
                }
            }
        }
    }
    let mut structured = json!({
        "conn_id": talk.conn_id.as_str(),
        "side": side.map_or("both", Side::name),
        "offset": offset,
        "bytes": kept,
        "truncated": talk.truncated,
    });
    if talk.truncated {
        structured["next_offset"] = json!(next);
    }
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured
    })
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A query handed to the reader thread, tagged for its answer.
struct Job {
    tag: u64,
    query: Query,
    capture: Capture,
}

/// What a reader does with a query.
type Work = fn(&Query, &Capture) -> Result<Value, String>;

/// Most queries read at once. A query that cannot finish (a file system
/// that hangs) holds one reader; the next query takes another.
const MAX_READERS: usize = 4;

/// The loop's handle on the reader threads: queries wait in one queue;
/// a new thread is started when every reader is busy, up to `MAX_READERS`.
pub struct Reader {
    jobs: Sender<Job>,
    inbox: Arc<Mutex<Receiver<Job>>>,
    outbox: Sender<(u64, Result<Value, String>)>,
    /// `(tag, answer)` of each finished query.
    pub answers: Receiver<(u64, Result<Value, String>)>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// What a reader does with a query: `answer` (a stand-in in tests).
    work: Work,
    /// Readers started, and those not busy with a query.
    started: usize,
    idle: Arc<AtomicUsize>,
}

impl Reader {
    /// Starts the first reader; `wake` is called after each answer.
    pub fn spawn(wake: Arc<dyn Fn() + Send + Sync>) -> io::Result<Reader> {
        Reader::spawn_with(wake, answer)
    }

    fn spawn_with(wake: Arc<dyn Fn() + Send + Sync>, work: Work) -> io::Result<Reader> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, answers) = mpsc::channel();
        let mut reader = Reader {
            jobs,
            inbox: Arc::new(Mutex::new(inbox)),
            outbox,
            answers,
            wake,
            work,
            started: 0,
            idle: Arc::new(AtomicUsize::new(0)),
        };
        reader.start_one()?;
        Ok(reader)
    }

    fn start_one(&mut self) -> io::Result<()> {
        let work = self.work;
        let (inbox, outbox, wake, idle) = (
            Arc::clone(&self.inbox),
            self.outbox.clone(),
            Arc::clone(&self.wake),
            Arc::clone(&self.idle),
        );
        idle.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name("rawprox-reader".into())
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for a job.
                    let job = match inbox.lock() {
                        Ok(inbox) => inbox.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    idle.fetch_sub(1, Ordering::SeqCst);
                    let result = work(&job.query, &job.capture);
                    idle.fetch_add(1, Ordering::SeqCst);
                    if outbox.send((job.tag, result)).is_err() {
                        return;
                    }
                    wake();
                }
            });
        if let Err(e) = spawned {
            // No new reader after all: it is not idle.
            self.idle.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        self.started += 1;
        Ok(())
    }

    /// Queues a query; its answer comes back with `tag`.
    pub fn submit(&mut self, tag: u64, query: Query, capture: Capture) {
        if self.idle.load(Ordering::SeqCst) == 0 && self.started < MAX_READERS {
            // Best effort: without a new thread the query waits its turn.
            let _ = self.start_one();
        }
        // A send fails only if every reader is gone; the query then never
        // answers, and its MCP connection times out like an idle one.
        let _ = self.jobs.send(Job {
            tag,
            query,
            capture,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §9: a query that cannot finish holds one reader; the next
    /// query is answered by another.
    #[test]
    fn a_stuck_query_does_not_block_the_next() {
        static RELEASE: Mutex<bool> = Mutex::new(false);
        fn work(query: &Query, _: &Capture) -> Result<Value, String> {
            if matches!(query, Query::List { limit: 1, .. }) {
                // Stuck until the test lets it go.
                while !*RELEASE.lock().unwrap() {
                    thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            Ok(json!(format!("{query:?}")))
        }
        let mut reader = Reader::spawn_with(Arc::new(|| {}), work).unwrap();
        let capture = Capture {
            directories: vec![],
            run_started_micros: 0,
        };
        let list = |limit| Query::List { port: None, limit };
        reader.submit(1, list(1), capture.clone());
        // Wait until the first query has taken its reader.
        while reader.idle.load(Ordering::SeqCst) != 0 {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        reader.submit(2, list(2), capture.clone());
        let (tag, _) = reader
            .answers
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second query is answered while the first is stuck");
        assert_eq!(tag, 2);
        *RELEASE.lock().unwrap() = true;
        let (tag, _) = reader.answers.recv().unwrap();
        assert_eq!(tag, 1);
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0xFF, 0xFE, 0x00], "//4A"),
        ] {
            assert_eq!(base64(raw), want, "{raw:?}");
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn arguments_are_checked_with_messages_that_say_what_to_do() {
        let ok = Query::read(&args(json!({"conn_id": "0tK3XaB9"}))).unwrap();
        assert_eq!(
            ok,
            Query::Read {
                conn_id: ConnId(*b"0tK3XaB9"),
                side: None,
                offset: 0,
                max_bytes: 16384,
                format: Format::Text
            }
        );
        for (bad, want) in [
            (json!({}), "missing argument conn_id"),
            (json!({"conn_id": 5}), "conn_id must be a string"),
            (json!({"conn_id": "short"}), "8 letters and digits"),
            (
                json!({"conn_id": "0tK3XaB9", "side": "server"}),
                "side must be",
            ),
            (
                json!({"conn_id": "0tK3XaB9", "format": "raw"}),
                "format must be",
            ),
            (
                json!({"conn_id": "0tK3XaB9", "offset": -1}),
                "offset must be",
            ),
            (
                json!({"conn_id": "0tK3XaB9", "offset": "3"}),
                "offset must be",
            ),
            (
                json!({"conn_id": "0tK3XaB9", "max_bytes": 0}),
                "max_bytes must be",
            ),
        ] {
            let err = Query::read(&args(bad.clone())).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert_eq!(
            Query::list(&args(json!({"port": 8080, "limit": 5}))),
            Ok(Query::List {
                port: Some(8080),
                limit: 5
            })
        );
        assert_eq!(
            Query::list(&args(json!({"port": "8080"}))),
            Ok(Query::List {
                port: Some(8080),
                limit: 100
            })
        );
        assert!(Query::list(&args(json!({"limit": 0}))).is_err());
        assert_eq!(
            Query::replay(&args(json!({"conn_id": "0tK3XaB9", "to": "[::1]:80"}))),
            Ok(Query::Replay {
                conn_id: ConnId(*b"0tK3XaB9"),
                host: "::1".into(),
                port: 80,
                pace: Pace::Lockstep,
                wait_ms: 5000
            })
        );
        for (bad, want) in [
            (json!({"to": "h:1"}), "missing argument conn_id"),
            (json!({"conn_id": "0tK3XaB9"}), "missing argument to"),
            (json!({"conn_id": "0tK3XaB9", "to": "h"}), "invalid target"),
            (
                json!({"conn_id": "0tK3XaB9", "to": "h:1", "pace": "slow"}),
                "pace must be",
            ),
            (
                json!({"conn_id": "0tK3XaB9", "to": "h:1", "wait_ms": 0}),
                "wait_ms must be",
            ),
        ] {
            let err = Query::replay(&args(bad.clone())).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert!(Query::list(&args(json!({"port": 70000}))).is_err());
    }
}
