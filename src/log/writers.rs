//! The loop's side of the writer threads (SPEC §5): one thread per
//! destination, so that destinations are written independently. At each
//! flush the arena's lines are routed once into a batch per destination
//! (the chunks shared between them, never copied); this side knows what
//! each thread was given and has written, notices a thread that makes no
//! progress (said once on stderr; it no longer holds up answers that wait
//! for a flush), and at shutdown gives such a thread up after a bounded
//! wait. What the chunks are worth to the pool is `Log`'s business.

use super::arena::{Arena, Route, Run};
use super::destination::{DestKey, Destination};
use super::writer::{self, Batch, Chunk, FromWriter, Piece, ToWriter};
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A writer with something to write and no progress for this long is
/// stalled (SPEC §5: a stdout reader that stopped, a hung file system).
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// At shutdown, a writer that makes no progress for this long is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// Every writer thread, and the channel their reports come back on.
pub struct Writers {
    list: Vec<Handle>,
    next_id: usize,
    outbox: Sender<FromWriter>,
    pub reports: Receiver<FromWriter>,
    wake: Arc<dyn Fn() + Send + Sync>,
    interval: Duration,
}

/// One writer thread, as the loop sees it.
struct Handle {
    id: usize,
    destination: Destination,
    to_thread: Option<Sender<ToWriter>>,
    thread: Option<JoinHandle<()>>,
    /// Takes traffic lines, at the point of the arena being routed.
    active: bool,
    /// The last flush handed to it, and the last it has written.
    sent: u64,
    written: u64,
    /// Bytes handed to it and not yet written, by flush.
    backlog: VecDeque<(u64, usize)>,
    /// Since when it has had something to write without making progress.
    waiting_since: Option<Instant>,
    stalled: bool,
    stall_reported: bool,
}

impl Handle {
    fn busy(&self) -> bool {
        self.written < self.sent
    }

    fn backlog_bytes(&self) -> usize {
        self.backlog.iter().map(|&(_, bytes)| bytes).sum()
    }

    fn send(&self, message: ToWriter) {
        if let Some(tx) = &self.to_thread {
            // A send fails only if the thread is gone, and then there is
            // nowhere left to write.
            let _ = tx.send(message);
        }
    }

    /// It reported: it is moving.
    fn progress(&mut self, now: Instant) {
        self.waiting_since = self.busy().then_some(now);
        if !self.busy() {
            self.stalled = false;
        }
    }
}

/// Lines of one second for one writer: `range` of arena chunk `chunk`.
struct Span {
    secs: u64,
    chunk: usize,
    range: Range<usize>,
}

impl Writers {
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>, interval: Duration) -> Writers {
        let (outbox, reports) = mpsc::channel();
        Writers {
            list: Vec::new(),
            next_id: 0,
            outbox,
            reports,
            wake,
            interval,
        }
    }

    fn index(&self, key: &DestKey) -> Option<usize> {
        self.list.iter().position(|h| h.destination.key() == *key)
    }

    fn by_id(&mut self, id: usize) -> Option<&mut Handle> {
        self.list.iter_mut().find(|h| h.id == id)
    }

    /// Makes sure `destination` has a writer thread: the one it has (lines
    /// of an earlier run may still be on their way there), or a new one.
    pub fn ensure(&mut self, destination: &Destination) -> io::Result<()> {
        if self.index(&destination.key()).is_some() {
            return Ok(());
        }
        let (to_thread, inbox) = mpsc::channel();
        let id = self.next_id;
        let thread = writer::spawn(
            id,
            destination.clone(),
            self.interval,
            self.outbox.clone(),
            Arc::clone(&self.wake),
            inbox,
        )?;
        self.next_id += 1;
        self.list.push(Handle {
            id,
            destination: destination.clone(),
            to_thread: Some(to_thread),
            thread: Some(thread),
            active: false,
            sent: 0,
            written: 0,
            backlog: VecDeque::new(),
            waiting_since: None,
            stalled: false,
            stall_reported: false,
        });
        Ok(())
    }

    /// Routes the arena's lines into one batch per destination, flush
    /// `seq`, and hands each its own; returns the chunks no batch reads.
    /// Traffic goes to every destination active at that point, a control
    /// event to stdout as the console and/or to its own destination.
    pub fn dispatch(&mut self, arena: Arena, seq: u64, urgent: bool, now: Instant) -> Vec<Vec<u8>> {
        let mut spans: Vec<Vec<Span>> = self.list.iter().map(|_| Vec::new()).collect();
        let stdout = self.index(&DestKey::Stdout);
        for run in arena.runs() {
            match run {
                Run::Add(destination) => self.set_active(&destination.key(), true),
                Run::Remove(key) => self.set_active(key, false),
                Run::Lines {
                    secs,
                    chunk,
                    range,
                    route,
                } => {
                    let mut to =
                        |i: usize| push_span(&mut spans[i], Some(i) == stdout, secs, chunk, &range);
                    match route {
                        Route::Traffic => {
                            let active = self.list.iter().enumerate().filter(|(_, h)| h.active);
                            active.for_each(|(i, _)| to(i));
                        }
                        Route::Control { console, dest } => {
                            if let Some(i) = stdout.filter(|_| *console) {
                                to(i);
                            }
                            if let Some(i) = dest.as_ref().and_then(|key| self.index(key)) {
                                to(i);
                            }
                        }
                    }
                }
            }
        }
        let chunks: Vec<Chunk> = arena.into_chunks().into_iter().map(Arc::new).collect();
        for (handle, spans) in self.list.iter_mut().zip(spans) {
            if spans.is_empty() {
                continue;
            }
            let bytes = spans.iter().map(|s| s.range.len()).sum();
            let pieces = spans
                .into_iter()
                .map(|s| Piece {
                    secs: s.secs,
                    chunk: Arc::clone(&chunks[s.chunk]),
                    range: s.range,
                })
                .collect();
            handle.send(ToWriter::Write(Batch {
                seq,
                pieces,
                urgent,
            }));
            handle.sent = seq;
            handle.backlog.push_back((seq, bytes));
            handle.waiting_since.get_or_insert(now);
        }
        // The batches hold the others; each comes back in a report.
        chunks
            .into_iter()
            .filter_map(|c| Arc::try_unwrap(c).ok())
            .collect()
    }

    fn set_active(&mut self, key: &DestKey, active: bool) {
        if let Some(i) = self.index(key) {
            self.list[i].active = active;
        }
    }

    /// Asks an idle writer to page in `n` chunks; false when none is idle.
    pub fn page(&self, n: usize) -> bool {
        match self.list.iter().find(|h| !h.busy()) {
            Some(handle) => {
                handle.send(ToWriter::Page(n));
                true
            }
            None => false,
        }
    }

    /// A writer reported something (chunks written, or flushes through
    /// `seq`): it is making progress.
    pub fn on_progress(&mut self, id: usize, written_through: Option<u64>, now: Instant) {
        if let Some(handle) = self.by_id(id) {
            if let Some(seq) = written_through {
                handle.written = handle.written.max(seq);
                while handle.backlog.front().is_some_and(|&(s, _)| s <= seq) {
                    handle.backlog.pop_front();
                }
            }
            handle.progress(now);
        }
    }

    /// A writer waits out its interval until `until`: no progress is due
    /// before then.
    pub fn on_waiting(&mut self, id: usize, until: Instant) {
        if let Some(handle) = self.by_id(id).filter(|h| h.busy()) {
            handle.waiting_since = Some(until);
        }
    }

    /// True when no writer has anything left to write.
    pub fn all_idle(&self) -> bool {
        !self.list.iter().any(Handle::busy)
    }

    /// True when no writer but a stalled one has anything left to write.
    pub fn all_idle_or_stalled(&self) -> bool {
        !self.list.iter().any(|h| h.busy() && !h.stalled)
    }

    /// The last flush written by every writer that is not stalled, given
    /// `sent` flushes in all.
    pub fn flushed_through(&self, sent: u64) -> u64 {
        let moving = self.list.iter().filter(|h| h.busy() && !h.stalled);
        moving.map(|h| h.written).fold(sent, u64::min)
    }

    /// When a busy writer will count as stalled if it makes no progress.
    pub fn stall_deadline(&self) -> Option<Instant> {
        let waiting = self.list.iter().filter(|h| !h.stalled);
        waiting
            .filter_map(|h| h.waiting_since)
            .map(|since| since + STALL_AFTER)
            .min()
    }

    /// Marks the writers stalled at `now`; says so on stderr, once per
    /// destination (SPEC §5). True if any is newly stalled.
    pub fn check_stalls(&mut self, now: Instant) -> bool {
        let mut any = false;
        for handle in &mut self.list {
            let due = handle.waiting_since.is_some_and(|t| t + STALL_AFTER <= now);
            if due && !handle.stalled {
                handle.stalled = true;
                any = true;
                if !handle.stall_reported {
                    handle.stall_reported = true;
                    eprintln!(
                        "rawprox: {} has taken no log lines for {} s; its lines wait in memory, the other destinations go on",
                        handle.destination.key().describe(),
                        STALL_AFTER.as_secs()
                    );
                }
            }
        }
        any
    }

    /// Ends the threads of directories that are no longer logged to
    /// (`in_use` false) once they have written everything.
    pub fn retire_idle(&mut self, in_use: impl Fn(&DestKey) -> bool) {
        self.list.retain_mut(|h| {
            let key = h.destination.key();
            let done = key != DestKey::Stdout && !h.active && !h.busy() && !in_use(&key);
            if done {
                h.to_thread = None;
                if let Some(thread) = h.thread.take() {
                    let _ = thread.join();
                }
            }
            !done
        });
    }

    /// Lets every thread finish what it was given (SPEC §6).
    pub fn close_all(&mut self) {
        for handle in &mut self.list {
            handle.to_thread = None;
        }
    }

    /// At shutdown, since `since`: when the next busy writer is to be given
    /// up if it makes no progress; None once every writer is done.
    pub fn give_up_deadline(&self, since: Instant) -> Option<Instant> {
        let busy = self.list.iter().filter(|h| h.busy());
        busy.map(|h| h.waiting_since.unwrap_or(since).max(since) + GIVE_UP_AFTER)
            .min()
    }

    /// Gives up the writers with no progress by `now` (SPEC §5: a stalled
    /// destination is given up after a bounded wait), saying so on stderr.
    /// Their threads are left behind, blocked; the process ends anyway.
    pub fn give_up(&mut self, since: Instant, now: Instant) {
        self.list.retain(|h| {
            let since = h.waiting_since.unwrap_or(since).max(since);
            let given_up = h.busy() && since + GIVE_UP_AFTER <= now;
            if given_up {
                eprintln!(
                    "rawprox: gave up writing to {} after {} s without progress; {} of log lines were not written",
                    h.destination.key().describe(),
                    GIVE_UP_AFTER.as_secs(),
                    amount(h.backlog_bytes())
                );
            }
            !given_up
        });
    }

    /// Waits for the threads that are done (after `close_all`).
    pub fn join_all(&mut self) {
        for handle in &mut self.list {
            handle.to_thread = None;
            if let Some(thread) = handle.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Bytes for people: KiB (rounded up) under a MiB, else MiB.
fn amount(bytes: usize) -> String {
    match bytes {
        0..1048576 => format!("{} KiB", bytes.div_ceil(1024)),
        _ => format!("{:.1} MiB", bytes as f64 / 1048576.0),
    }
}

/// Adds a span to a writer's, merging it into the last when adjacent (across
/// seconds only for stdout, where no file name depends on them).
fn push_span(spans: &mut Vec<Span>, stdout: bool, secs: u64, chunk: usize, range: &Range<usize>) {
    match spans.last_mut() {
        Some(last)
            if (stdout || last.secs == secs)
                && last.chunk == chunk
                && last.range.end == range.start =>
        {
            last.range.end = range.end
        }
        _ => spans.push(Span {
            secs,
            chunk,
            range: range.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::chunk::{CHUNK_BYTES, ChunkPool};
    use crate::log::filename::FilenameFormat;
    use std::fs;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rawprox-writers-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn directory(dir: &str, format: &str) -> Destination {
        Destination::Directory {
            dir: dir.to_owned(),
            format: FilenameFormat::parse(format).unwrap(),
        }
    }

    /// Takes reports until flush `seq` is written: (chunks back early,
    /// chunks back with `Written`, failures).
    fn until_written(writers: &mut Writers, seq: u64) -> (Vec<Chunk>, Vec<Chunk>, Vec<DestKey>) {
        let (mut early, mut rest, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            match writers.reports.recv_timeout(Duration::from_secs(10)) {
                Ok(FromWriter::Chunks { chunks, .. }) => early.extend(chunks),
                Ok(FromWriter::Written { id, seq: s, chunks }) => {
                    rest.extend(chunks);
                    writers.on_progress(id, Some(s), Instant::now());
                    if s >= seq {
                        return (early, rest, failed);
                    }
                }
                Ok(FromWriter::Failed { destination, .. }) => failed.push(destination),
                Ok(_) => panic!("unexpected report"),
                Err(_) => panic!("no report"),
            }
        }
    }

    #[test]
    fn lines_go_to_the_file_of_their_second_and_append() {
        let dir = temp_dir("rotate");
        let shown = dir.join("sub").to_string_lossy().to_string();
        let destination = directory(&shown, "%S.log");
        let mut writers = Writers::new(Arc::new(|| {}), Duration::ZERO);
        writers.ensure(&destination).unwrap();
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.push(0, b"before\n", pool);
        arena.add_destination(destination);
        arena.push(1_000_000, b"one-a\n", pool);
        arena.push(2_000_000, b"two\n", pool);
        arena.push(1_000_001, b"one-b\n", pool);
        writers.dispatch(arena, 1, false, Instant::now());
        until_written(&mut writers, 1);
        let mut again = Arena::default();
        again.push(1_000_000, b"one-c\n", pool);
        let own = Route::Control {
            console: false,
            dest: Some(DestKey::Dir(shown.clone())),
        };
        again
            .line(1_000_000, own, 64, pool)
            .extend_from_slice(b"own\n");
        again.remove_destination(DestKey::Dir(shown));
        again.push(1_000_000, b"after\n", pool);
        writers.dispatch(again, 2, false, Instant::now());
        until_written(&mut writers, 2);
        assert!(writers.all_idle());
        writers.retire_idle(|_| false);
        assert!(writers.list.is_empty(), "an idle stopped directory retires");
        let sub = dir.join("sub");
        assert_eq!(
            fs::read_to_string(sub.join("01.log")).unwrap(),
            "one-a\none-b\none-c\nown\n"
        );
        assert_eq!(fs::read_to_string(sub.join("02.log")).unwrap(), "two\n");
        assert!(!sub.join("00.log").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chunks_come_back_as_soon_as_they_are_written_and_whole() {
        let dir = temp_dir("give-back");
        let destination = directory(&dir.to_string_lossy(), "%S.log");
        let mut writers = Writers::new(Arc::new(|| {}), Duration::ZERO);
        writers.ensure(&destination).unwrap();
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.add_destination(destination);
        // A line per chunk: 20 in second 1, 20 in second 2, then one more in
        // second 1, which its file (written first) takes last.
        let seconds: Vec<u64> = [1; 20].into_iter().chain([2; 20]).chain([1]).collect();
        for (i, secs) in seconds.iter().enumerate() {
            let line = format!("{i}\n");
            arena
                .line(secs * 1_000_000, Route::Traffic, CHUNK_BYTES, pool)
                .extend_from_slice(line.as_bytes());
        }
        let unread = writers.dispatch(arena, 1, false, Instant::now());
        assert!(unread.is_empty());
        let (early, rest, _) = until_written(&mut writers, 1);
        writers.close_all();
        writers.join_all();
        assert!(
            !early.is_empty(),
            "no chunk came back before the whole flush"
        );
        // Only this destination read them: each comes back as the chunk.
        let whole: Vec<Vec<u8>> = early
            .into_iter()
            .chain(rest)
            .map(|c| Arc::try_unwrap(c).expect("the last holder"))
            .collect();
        assert_eq!(whole.len(), seconds.len());
        assert!(whole.iter().all(|c| c.capacity() >= CHUNK_BYTES));
        let lines = |secs: u64| -> String {
            let mine = seconds.iter().enumerate().filter(|(_, s)| **s == secs);
            mine.map(|(i, _)| format!("{i}\n")).collect()
        };
        assert_eq!(fs::read_to_string(dir.join("01.log")).unwrap(), lines(1));
        assert_eq!(fs::read_to_string(dir.join("02.log")).unwrap(), lines(2));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_directory_is_reported_by_name_and_another_goes_on() {
        let dir = temp_dir("fail");
        fs::create_dir_all(&dir).unwrap();
        let blocker = dir.join("file");
        fs::write(&blocker, b"").unwrap();
        let bad = blocker.join("sub").to_string_lossy().to_string();
        let good = dir.join("good").to_string_lossy().to_string();
        let mut writers = Writers::new(Arc::new(|| {}), Duration::ZERO);
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        for destination in [directory(&bad, "x.log"), directory(&good, "x.log")] {
            writers.ensure(&destination).unwrap();
            arena.add_destination(destination);
        }
        arena.push(0, b"x\n", pool);
        writers.dispatch(arena, 1, true, Instant::now());
        let mut failed = Vec::new();
        while !writers.all_idle() {
            failed.extend(until_written(&mut writers, 1).2);
        }
        assert_eq!(failed, [DestKey::Dir(bad)]);
        assert_eq!(fs::read_to_string(dir.join("good/x.log")).unwrap(), "x\n");
        writers.close_all();
        writers.join_all();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stalled_writer_no_longer_holds_up_the_flushes_written() {
        let mut writers = Writers::new(Arc::new(|| {}), Duration::ZERO);
        let start = Instant::now();
        for (id, (sent, written)) in [(5, 5), (5, 3), (4, 2)].into_iter().enumerate() {
            writers.list.push(Handle {
                id,
                destination: directory(&format!("d{id}"), "x.log"),
                to_thread: None,
                thread: None,
                active: true,
                sent,
                written,
                backlog: VecDeque::from([(sent, 10)]),
                waiting_since: (written < sent).then_some(start),
                stalled: false,
                stall_reported: false,
            });
        }
        assert_eq!(writers.flushed_through(5), 2);
        assert_eq!(writers.stall_deadline(), Some(start + STALL_AFTER));
        assert!(!writers.check_stalls(start + STALL_AFTER / 2));
        writers.on_progress(1, Some(4), start + STALL_AFTER / 2);
        assert_eq!(writers.flushed_through(5), 2);
        assert!(writers.check_stalls(start + STALL_AFTER));
        assert_eq!(writers.flushed_through(5), 4, "writer 2 stalled");
        assert!(!writers.all_idle_or_stalled(), "writer 1 is busy");
        assert_eq!(writers.stall_deadline(), Some(start + STALL_AFTER * 3 / 2));
        writers.on_progress(1, Some(5), start + STALL_AFTER);
        assert!(writers.all_idle_or_stalled() && !writers.all_idle());
        assert_eq!(writers.flushed_through(5), 5);
        assert_eq!(writers.stall_deadline(), None, "only the stalled one left");
        // Moving a little, it is still stalled until it has caught up.
        writers.on_progress(2, Some(3), start + STALL_AFTER);
        assert!(writers.list[2].stalled);
        assert!(!writers.check_stalls(start + STALL_AFTER * 4), "said once");
        // At shutdown it is given up once it has not moved for a while.
        let since = start + STALL_AFTER * 2;
        let deadline = writers.give_up_deadline(since).unwrap();
        assert_eq!(deadline, since + GIVE_UP_AFTER);
        writers.give_up(since, deadline - Duration::from_millis(1));
        assert_eq!(writers.list.len(), 3, "not yet");
        writers.give_up(since, deadline);
        assert!(writers.all_idle());
        assert_eq!(writers.list.len(), 2);
        assert_eq!(amount(10), "1 KiB");
        assert_eq!(amount(3 << 20), "3.0 MiB");
    }
}
