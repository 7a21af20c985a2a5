//! The log (SPEC §4, §5): lines encoded once into an arena, handed at each
//! flush to the writer threads (one per destination) that append them to
//! stdout or time-rotated files. `Log` owns all of it: the arena, the chunk
//! pool, the writers, the flush schedule and the destinations. The loop asks
//! it for its next deadline, tells it the time and what the writers
//! reported, and asks whether there is room.

pub mod arena;
pub mod chunk;
pub mod destination;
pub mod filename;
pub mod writer;
pub mod writers;

use crate::format::connid::{ConnId, ConnIdSeq};
use crate::format::encode;
use crate::format::fields;
use crate::format::time::{LineClock, now_micros};
use arena::{Arena, Route};
use chunk::{CHUNK_BYTES, ChunkPool, PAGE_AHEAD, TRIM_AFTER};
use destination::{DestKey, Destination};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use writer::{Chunk, FromWriter};
use writers::Writers;

/// Room for everything in a line but its addresses, data and paths.
const LINE_FRAME: usize = 160;

/// How the log is written, from the command line (SPEC §2, §5).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--flush-millis`: the least time from one write to the next.
    pub flush_interval: Duration,
    /// `--flush-mb` in bytes: write this much at once, interval or not
    /// (None: the interval alone).
    pub flush_bytes: Option<usize>,
    /// `--max-buffer-mb` in bytes: the arena plus the bytes in flight may
    /// hold this much before reading from sockets pauses.
    pub cap: Option<usize>,
}

/// When the pending lines are written (SPEC §5).
#[derive(Debug)]
struct Schedule {
    interval: Duration,
    /// When the arena last went from empty to holding something.
    pending_since: Option<Instant>,
    last_write_start: Option<Instant>,
    /// Write at once (control events on stdout, answers waiting for it).
    now: bool,
}

impl Schedule {
    /// One interval after the first pending line, and one interval after
    /// the previous write started; at once when asked, or when `full`.
    fn due(&self, full: bool, now: Instant) -> Instant {
        if self.now || full {
            return now;
        }
        let since = self.pending_since.unwrap_or(now) + self.interval;
        match self.last_write_start {
            Some(last) => since.max(last + self.interval),
            None => since,
        }
    }
}

/// What the writer's reports mean for the loop.
#[derive(Debug, Default, PartialEq)]
pub struct News {
    /// Room was freed: throttled pairs may read again.
    pub room: bool,
    /// A flush was written, or a writer stalled (see `flushed_through`).
    pub written: bool,
    /// A destination failed: shut down with this message, exit 1.
    pub failed: Option<String>,
    /// stdout's reader went away: shut down, exit 0 (SPEC §5).
    pub stdout_closed: bool,
}

/// The log's owner.
pub struct Log {
    /// The lines being filled.
    arena: Arena,
    pool: ChunkPool,
    writers: Writers,
    schedule: Schedule,
    /// Chunks in the last arena flushed, for how many spares to keep.
    flushed_chunks: usize,
    /// Arenas handed to the writers since start.
    flushes_sent: u64,
    /// Bytes handed to the writers whose chunks are not back yet.
    in_flight: usize,
    /// A writer is paging chunks in for the pool.
    paging: bool,
    /// `--max-buffer-mb` in bytes (see `Settings`).
    cap: Option<usize>,
    /// `--flush-mb` in bytes (see `Settings`).
    flush_bytes: Option<usize>,
    destinations: Vec<Destination>,
    /// Every directory logged to in this run, active or stopped.
    directories_this_run: Vec<String>,
    /// When this run started, for reading back only its lines.
    run_started_micros: u64,
    /// An MCP server runs: control events also go to stdout, at once.
    console: bool,
    /// stdout is a destination nobody asked for (no `@LOG_DIRECTORY`): a
    /// `start-logging` of stdout then succeeds once (SPEC §7).
    stdout_implicit: bool,
    clock: LineClock,
    ids: ConnIdSeq,
}

impl Log {
    /// Starts logging to `first`. With an MCP server
    /// (`mcp_endpoint`), the controller learns the endpoint at once, then a
    /// directory's `start-logging`; the implicit stdout is not announced
    /// (SPEC §7: the first `start-logging` a controller sees is its own).
    pub fn start(
        first: Destination,
        wake: Arc<dyn Fn() + Send + Sync>,
        settings: Settings,
        mcp_endpoint: Option<&str>,
    ) -> io::Result<Log> {
        let mut log = Log {
            arena: Arena::default(),
            pool: ChunkPool::default(),
            writers: Writers::new(wake, settings.flush_interval),
            schedule: Schedule {
                interval: settings.flush_interval,
                pending_since: None,
                last_write_start: None,
                now: false,
            },
            flushed_chunks: 0,
            flushes_sent: 0,
            in_flight: 0,
            paging: false,
            cap: settings.cap,
            flush_bytes: settings.flush_bytes,
            destinations: Vec::new(),
            directories_this_run: Vec::new(),
            run_started_micros: now_micros(),
            console: mcp_endpoint.is_some(),
            stdout_implicit: false,
            clock: LineClock::default(),
            ids: ConnIdSeq::starting_at(now_micros()),
        };
        if let Some(endpoint) = mcp_endpoint {
            // stdout is the controller's channel: it has a writer from the start.
            log.writers.ensure(&Destination::Stdout)?;
            log.mcp_ready(endpoint);
        }
        match first {
            Destination::Stdout => {
                log.writers.ensure(&Destination::Stdout)?;
                log.note_pending();
                log.arena.add_destination(Destination::Stdout);
                log.destinations.push(Destination::Stdout);
                log.stdout_implicit = true;
            }
            directory => log.add_destination(directory).map_err(io::Error::other)?,
        }
        Ok(log)
    }

    /// Records when lines start to wait, before anything is added to an
    /// empty arena: the flush is due one interval later.
    fn note_pending(&mut self) {
        if self.arena.is_empty() {
            self.schedule.pending_since = Some(Instant::now());
        }
    }

    /// The buffer to encode one line for `route` into, with `room` bytes
    /// free, and the clock that writes its time.
    fn line(&mut self, micros: u64, route: Route, room: usize) -> (&mut Vec<u8>, &mut LineClock) {
        self.note_pending();
        let out = self.arena.line(micros, route, room, &mut self.pool);
        (out, &mut self.clock)
    }

    /// False when the buffered log lines have reached `--max-buffer-mb`.
    pub fn has_room(&self) -> bool {
        self.cap
            .is_none_or(|cap| self.arena.len() + self.in_flight < cap)
    }

    /// Logs an `open` and returns the connection's new ConnID.
    pub fn open(&mut self, micros: u64, from: &str, to: &str, listen_port: u16) -> ConnId {
        let id = self.ids.take();
        let (out, clock) = self.line(micros, Route::Traffic, LINE_FRAME + from.len() + to.len());
        encode::push_open_line(out, clock, micros, &id, from, to, listen_port);
        id
    }

    pub fn data(&mut self, micros: u64, id: &ConnId, data: &[u8], from: &str, to: &str) {
        let room = LINE_FRAME + 3 * data.len() + from.len() + to.len();
        let (out, clock) = self.line(micros, Route::Traffic, room);
        encode::push_data_line(out, clock, micros, id, data, from, to);
    }

    pub fn close(&mut self, micros: u64, id: &ConnId, from: &str, to: &str) {
        let (out, clock) = self.line(micros, Route::Traffic, LINE_FRAME + from.len() + to.len());
        encode::push_close_line(out, clock, micros, id, from, to);
    }

    /// The `mcp-ready` event, for the controller on stdout, written at once.
    fn mcp_ready(&mut self, endpoint: &str) {
        let micros = now_micros();
        let route = Route::Control {
            console: true,
            dest: None,
        };
        let (out, clock) = self.line(micros, route, LINE_FRAME + endpoint.len());
        encode::push_mcp_ready(out, clock, micros, endpoint);
        self.schedule.now = true;
    }

    /// The active destinations.
    pub fn destination_keys(&self) -> Vec<DestKey> {
        self.destinations.iter().map(Destination::key).collect()
    }

    /// Adds a log destination: traffic logged from now on goes there too
    /// (SPEC §5, §7). A directory's first line is its `start-logging`.
    /// Asking for the implicit stdout makes it asked for, and announced.
    pub fn add_destination(&mut self, destination: Destination) -> Result<(), String> {
        let key = destination.key();
        if key == DestKey::Stdout && std::mem::take(&mut self.stdout_implicit) {
            self.logging_event(&key, "start-logging", None, None);
            return Ok(());
        }
        if self.destination_keys().contains(&key) {
            return Err(format!("already logging to {}", key.describe()));
        }
        self.writers
            .ensure(&destination)
            .map_err(|e| format!("cannot start a writer for {}: {e}", key.describe()))?;
        self.note_pending();
        self.arena.add_destination(destination.clone());
        let (directory, format) = match &destination {
            Destination::Stdout => (None, None),
            Destination::Directory { dir, format } => (Some(dir.as_str()), Some(format.source())),
        };
        self.logging_event(&key, fields::START_LOGGING, directory, format);
        if let Some(dir) = directory
            && !self.directories_this_run.iter().any(|d| d == dir)
        {
            self.directories_this_run.push(dir.to_owned());
        }
        self.destinations.push(destination);
        Ok(())
    }

    /// Every directory logged to in this run, and when the run started.
    pub fn directories_this_run(&self) -> (&[String], u64) {
        (&self.directories_this_run, self.run_started_micros)
    }

    /// Removes a log destination after what was logged for it; its last
    /// line is its `stop-logging`. To have it written at once and know
    /// when, `write_soon` then `flushed_through` (SPEC §7: the controller
    /// may move the files when stop-logging answers).
    pub fn remove_destination(&mut self, key: &DestKey) -> Result<(), String> {
        let Some(i) = self.destinations.iter().position(|d| d.key() == *key) else {
            return Err(format!("not logging to {}", key.describe()));
        };
        let destination = self.destinations.remove(i);
        self.stdout_implicit &= *key != DestKey::Stdout;
        let directory = match &destination {
            Destination::Stdout => None,
            Destination::Directory { dir, .. } => Some(dir.as_str()),
        };
        self.logging_event(key, fields::STOP_LOGGING, directory, None);
        self.note_pending();
        self.arena.remove_destination(key.clone());
        Ok(())
    }

    /// Asks for the lines logged so far to be handed to the writers at
    /// once, interval or not; returns the flush that writes them:
    /// they are written once `flushed_through` reaches it.
    pub fn write_soon(&mut self) -> u64 {
        if self.arena.is_empty() {
            return self.flushes_sent; // All of it was handed over already.
        }
        self.schedule.now = true;
        self.flushes_sent + 1
    }

    /// How many flushes are written: by every writer, except one that has
    /// stalled (SPEC §5: a stalled destination holds up only itself).
    pub fn flushed_through(&self) -> u64 {
        self.writers.flushed_through(self.flushes_sent)
    }

    /// Logs a control event for the destination it concerns and, with MCP,
    /// for the controller on stdout, written at once (SPEC §5).
    fn logging_event(
        &mut self,
        key: &DestKey,
        event: &str,
        directory: Option<&str>,
        format: Option<&str>,
    ) {
        let dest = matches!(key, DestKey::Dir(_)).then(|| key.clone());
        if dest.is_none() && !self.console {
            return; // Without MCP only traffic lines reach stdout.
        }
        let route = Route::Control {
            console: self.console,
            dest,
        };
        let micros = now_micros();
        // JSON escapes take at most 6 bytes per byte (`\u001F`).
        let text = directory.map_or(0, str::len) + format.map_or(0, str::len);
        let (out, clock) = self.line(micros, route, LINE_FRAME + 6 * text);
        encode::push_logging_event(out, clock, micros, event, directory, format);
        self.schedule.now |= self.console;
    }

    /// When the log next needs the loop: a flush, letting spares go, or
    /// noticing a writer that stalled.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        let flush = self.may_flush().then(|| self.flush_due(now));
        let stall = self.writers.stall_deadline();
        flush.into_iter().chain(self.trim_due()).chain(stall).min()
    }

    /// Each flush goes to every writer on schedule, busy or not: a busy one
    /// queues it (SPEC §5: destinations are written independently).
    fn may_flush(&self) -> bool {
        !self.arena.is_empty()
    }

    /// True when the flush is due at once: `--flush-mb` of pending lines,
    /// so a bulk transfer does not hold seconds of log in memory; or a full
    /// log (`--max-buffer-mb`) once the writers are free, which the cap
    /// would otherwise throttle to one cap's worth per interval.
    fn urgent(&self) -> bool {
        let big = self
            .flush_bytes
            .is_some_and(|bytes| self.arena.len() >= bytes);
        big || (!self.has_room() && self.writers.all_idle())
    }

    fn flush_due(&self, now: Instant) -> Instant {
        self.schedule.due(self.urgent(), now)
    }

    /// Spares are let go once logging has been idle for `TRIM_AFTER` (a
    /// stalled writer does not count: it may never move again).
    fn trim_due(&self) -> Option<Instant> {
        let idle = self.writers.all_idle_or_stalled() && self.arena.is_empty();
        (idle && !self.pool.is_empty()).then(|| {
            self.schedule
                .last_write_start
                .map_or(Instant::now(), |t| t + TRIM_AFTER)
        })
    }

    /// Does what is due at `now`: the flush, letting spares go, paging in,
    /// noticing a stalled writer (news: answers waiting for a flush no
    /// longer wait for it).
    pub fn run_due(&mut self, now: Instant) -> News {
        if self.may_flush() && self.flush_due(now) <= now {
            self.flush(now);
        }
        if self.trim_due().is_some_and(|at| at <= now) {
            self.pool.keep_at_most(0);
        }
        self.page_ahead();
        News {
            written: self.writers.check_stalls(now),
            ..News::default()
        }
    }

    /// Swaps the arena for an empty one and hands its lines to the writers.
    fn flush(&mut self, now: Instant) {
        let urgent = self.schedule.now || self.urgent();
        let mut full = std::mem::take(&mut self.arena);
        full.shrink_partly_filled(&mut self.pool);
        self.in_flight += full.len();
        self.flushed_chunks = full.chunk_count();
        self.flushes_sent += 1;
        let unread = self.writers.dispatch(full, self.flushes_sent, urgent, now);
        self.take_back(unread);
        self.schedule.last_write_start = Some(now);
        self.schedule.pending_since = None;
        self.schedule.now = false;
    }

    /// Chunks are back from the writers: those no writer holds any more go
    /// to the pool (only the loop drops chunks, see `writer::Chunk`).
    fn take_back(&mut self, chunks: impl IntoIterator<Item = Vec<u8>>) {
        for chunk in chunks {
            self.in_flight = self.in_flight.saturating_sub(chunk.len());
            self.pool.give_back([chunk]);
        }
    }

    fn take_back_shared(&mut self, chunks: Vec<Chunk>) {
        let last = chunks.into_iter().filter_map(|c| Arc::try_unwrap(c).ok());
        let last: Vec<Vec<u8>> = last.collect();
        self.take_back(last);
    }

    /// Chunks worth paging in ahead of the arena: in a burst (more than a
    /// chunk of lines), enough to have `PAGE_AHEAD` spares, and no more than
    /// the room `--max-buffer-mb` leaves.
    fn chunks_to_page_ahead(&self) -> usize {
        let lines = self.arena.len();
        if lines <= CHUNK_BYTES {
            return 0;
        }
        let room = self.cap.map_or(PAGE_AHEAD, |cap| {
            cap.saturating_sub(lines + self.in_flight) / CHUNK_BYTES
        });
        PAGE_AHEAD.min(room).saturating_sub(self.pool.len())
    }

    /// In a burst, until its first flush, every chunk the arena fills is
    /// memory never touched before. A writer with nothing to write pages
    /// chunks in ahead of the loop (a chunk's life, step 6).
    fn page_ahead(&mut self) {
        if self.paging {
            return;
        }
        let n = self.chunks_to_page_ahead();
        if n > 0 && self.writers.page(n) {
            self.paging = true;
        }
    }

    /// Takes in what the writers reported since the last call.
    pub fn on_writer_reports(&mut self) -> News {
        let mut news = News::default();
        while let Ok(report) = self.writers.reports.try_recv() {
            self.on_report(report, &mut news);
        }
        news
    }

    fn on_report(&mut self, report: FromWriter, news: &mut News) {
        match report {
            FromWriter::Written { id, seq, chunks } => {
                self.writers.on_progress(id, Some(seq), Instant::now());
                self.take_back_shared(chunks);
                // The spares paged in ahead stay for the next interval (a
                // chunk's life, step 5).
                self.pool.keep_at_most(self.flushed_chunks + PAGE_AHEAD);
                let destinations = &self.destinations;
                self.writers
                    .retire_idle(|key| destinations.iter().any(|d| d.key() == *key));
                news.room = true;
                news.written = true;
            }
            FromWriter::Chunks { id, chunks } => {
                self.writers.on_progress(id, None, Instant::now());
                self.take_back_shared(chunks);
                news.room = true;
            }
            FromWriter::Waiting { id, until } => self.writers.on_waiting(id, until),
            FromWriter::Paged(chunks) => {
                self.paging = false;
                self.pool.give_back(chunks);
            }
            FromWriter::Failed { destination, error } => {
                let message = format!("cannot write to {}: {error}", destination.describe());
                news.failed.get_or_insert(message);
            }
            FromWriter::StdoutClosed => news.stdout_closed = true,
        }
    }

    /// SPEC §6: ends every destination (its `stop-logging`), writes out
    /// every buffered line and stops the writers. A writer that makes no
    /// progress for `GIVE_UP_AFTER` is given up (SPEC §5), said on stderr.
    pub fn finish(&mut self) -> News {
        for key in self.destination_keys() {
            let _ = self.remove_destination(&key);
        }
        let mut news = News::default();
        if !self.arena.is_empty() {
            self.schedule.now = true;
            self.flush(Instant::now());
        }
        self.writers.close_all();
        let since = Instant::now();
        while let Some(deadline) = self.writers.give_up_deadline(since) {
            let now = Instant::now();
            if deadline <= now {
                self.writers.give_up(since, now);
                continue;
            }
            // Never disconnected: `writers` keeps a sender for new threads.
            if let Ok(report) = self.writers.reports.recv_timeout(deadline - now) {
                self.on_report(report, &mut news);
            }
        }
        self.writers.join_all();
        while let Ok(report) = self.writers.reports.try_recv() {
            self.on_report(report, &mut news);
        }
        news
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunk::paged_chunk;

    fn quiet_log(cap: Option<usize>) -> Log {
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
        let settings = Settings {
            flush_interval: Duration::from_secs(60),
            flush_bytes: Some(4 * CHUNK_BYTES),
            cap,
        };
        let mut log = Log::start(Destination::Stdout, wake, settings, None).unwrap();
        // Nothing of these tests is written: the arena starts over.
        log.arena = Arena::default();
        log
    }

    fn fill(log: &mut Log, chunks: usize) {
        for _ in 0..chunks {
            log.line(0, Route::Traffic, CHUNK_BYTES)
                .0
                .resize(CHUNK_BYTES, b'x');
        }
    }

    #[test]
    fn chunks_are_paged_ahead_only_in_a_burst_and_within_the_cap() {
        let mut log = quiet_log(None);
        log.line(0, Route::Traffic, 8)
            .0
            .extend_from_slice(b"trickle\n");
        assert_eq!(log.chunks_to_page_ahead(), 0);
        fill(&mut log, 1);
        assert_eq!(log.chunks_to_page_ahead(), PAGE_AHEAD);
        log.pool.give_back((0..3).map(|_| paged_chunk()));
        assert_eq!(log.chunks_to_page_ahead(), PAGE_AHEAD - 3);
        // 6 MiB of lines and 2 in flight leave room for 2 chunks under 10.
        let mut capped = quiet_log(Some(10 * CHUNK_BYTES));
        fill(&mut capped, 6);
        capped.in_flight = 2 * CHUNK_BYTES;
        assert_eq!(capped.chunks_to_page_ahead(), 2);
        fill(&mut capped, 2);
        assert_eq!(capped.chunks_to_page_ahead(), 0);
        assert!(!capped.has_room());
    }

    #[test]
    fn a_written_flush_keeps_the_spares_paged_ahead() {
        let mut log = quiet_log(None);
        log.flushed_chunks = 4;
        // The flush's chunks are back, beside those paged in ahead meanwhile.
        log.pool
            .give_back((0..4 + PAGE_AHEAD + 3).map(|_| paged_chunk()));
        let mut news = News::default();
        let written = FromWriter::Written {
            id: usize::MAX,
            seq: 1,
            chunks: Vec::new(),
        };
        log.on_report(written, &mut news);
        assert!(news.written && news.room);
        assert_eq!(log.pool.len(), 4 + PAGE_AHEAD);
    }

    #[test]
    fn ids_are_consecutive_across_opens() {
        let mut log = quiet_log(None);
        log.ids = ConnIdSeq::starting_at(0);
        let a = log.open(5, "1.2.3.4:5", "h:1", 80);
        let b = log.open(6, "1.2.3.4:6", "h:1", 81);
        assert_eq!((a.as_str(), b.as_str()), ("00000000", "00000001"));
        let bytes = log.arena.to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn the_first_flush_is_one_interval_after_the_first_line() {
        let start = Instant::now();
        let mut log = quiet_log(None);
        assert_eq!(log.deadline(start), None, "nothing pending");
        log.open(0, "1.2.3.4:5", "h:1", 80);
        let due = log.deadline(start).expect("a flush is due");
        let interval = Duration::from_secs(60);
        assert!(due >= start + interval && due <= Instant::now() + interval);
        // The interval counts from the first pending line, not from when
        // the loop first looked.
        let later = start + Duration::from_secs(30);
        assert_eq!(log.deadline(later), Some(due));
    }

    #[test]
    fn flush_mb_of_pending_lines_are_due_at_once() {
        let now = Instant::now();
        let mut log = quiet_log(None);
        fill(&mut log, 3);
        assert!(log.deadline(now).is_some_and(|due| due > now));
        fill(&mut log, 1);
        assert_eq!(log.deadline(now), Some(now), "4 MiB pending");
        log.flush_bytes = None;
        assert!(log.deadline(now).is_some_and(|due| due > now));
    }

    #[test]
    fn the_implicit_stdout_is_not_announced_a_directory_is() {
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
        let endpoint = Some("http://127.0.0.1:1/mcp");
        let settings = Settings {
            flush_interval: Duration::ZERO,
            flush_bytes: None,
            cap: None,
        };
        let mut log = Log::start(Destination::Stdout, wake.clone(), settings, endpoint).unwrap();
        let text = String::from_utf8(log.arena.to_bytes()).unwrap();
        assert!(text.contains(r#""event":"mcp-ready""#), "{text}");
        assert!(!text.contains("start-logging"), "{text}");
        // Asked for once, it is announced; asked again, it is an error.
        assert_eq!(log.add_destination(Destination::Stdout), Ok(()));
        let text = String::from_utf8(log.arena.to_bytes()).unwrap();
        assert!(
            text.contains(r#""event":"start-logging","directory":null}"#),
            "{text}"
        );
        assert!(log.add_destination(Destination::Stdout).is_err());
        assert_eq!(log.destination_keys(), [DestKey::Stdout]);
        let dir = Destination::Directory {
            dir: "unused".into(),
            format: filename::FilenameFormat::parse("x.log").unwrap(),
        };
        let log = Log::start(dir, wake, settings, endpoint).unwrap();
        let text = String::from_utf8(log.arena.to_bytes()).unwrap();
        let ready = text.find("mcp-ready").expect("mcp-ready");
        let started = text.find(r#""event":"start-logging","directory":"unused""#);
        assert!(started.is_some_and(|at| at > ready), "{text}");
    }
}
