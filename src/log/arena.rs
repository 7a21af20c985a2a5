//! The log arena: the loop encodes every line straight into it, and at each
//! flush hands the whole arena to the writer thread (SPEC §5). Besides the
//! bytes it records where each second of log time begins, so the writer can
//! pick a file per rotation period without parsing lines.

use crate::log::connid::{ConnId, ConnIdSeq};
use crate::log::encode;
use crate::log::timefmt::LineClock;
use crate::log::writer::{DestKey, Destination};
use std::ops::Range;

/// Who a run of lines is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Traffic: every destination active at that point.
    Traffic,
    /// A control event: stdout as the controller's channel (`console`)
    /// and/or one destination, whether or not they take traffic.
    Control {
        console: bool,
        dest: Option<DestKey>,
    },
}

/// What the arena holds at one offset: lines, or a change of destinations
/// that applies to the lines after it.
#[derive(Debug)]
enum Item {
    /// Lines logged within second `secs`, up to the next item.
    Lines {
        secs: u64,
        route: Route,
    },
    Add(Destination),
    Remove(DestKey),
}

/// One step of an arena, in order, for the writer.
#[derive(Debug)]
pub enum Run<'a> {
    /// Lines of second `secs`: `range` of chunk `chunk`.
    Lines {
        secs: u64,
        chunk: usize,
        range: Range<usize>,
        route: &'a Route,
    },
    Add(&'a Destination),
    Remove(&'a DestKey),
}

/// Bytes in one chunk of an arena. A line is never split: one that might not
/// fit in what is left of a chunk starts the next.
pub const CHUNK_BYTES: usize = 1 << 20;

/// An empty chunk whose pages have all been touched once.
pub fn paged_chunk() -> Vec<u8> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    crate::sys::page_in(&mut chunk);
    chunk
}

/// Where an item starts: a chunk and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    chunk: usize,
    offset: usize,
}

/// Encoded lines in fixed-size chunks, cut into runs of one second and one
/// route, with the destination changes between them, in the order they
/// happened. Chunks never grow or move, so filling never copies; the chunks
/// of a written arena come back as spares, already paged in (a first touch
/// of memory costs far more than reuse).
#[derive(Debug, Default)]
pub struct Arena {
    /// `chunks[..used]` hold lines, the last of them is being filled; the
    /// rest are empty spares.
    chunks: Vec<Vec<u8>>,
    used: usize,
    /// Bytes in the used chunks before the last.
    bytes_before_last: usize,
    /// `(start, item)` in order.
    items: Vec<(Pos, Item)>,
}

impl Arena {
    /// The buffer to append one traffic line logged at `micros` to, with at
    /// least `room` bytes free.
    pub fn line(&mut self, micros: u64, room: usize) -> &mut Vec<u8> {
        self.line_for(micros, Route::Traffic, room)
    }

    /// The buffer to append one control line logged at `micros` to, with at
    /// least `room` bytes free.
    pub fn line_for(&mut self, micros: u64, route: Route, room: usize) -> &mut Vec<u8> {
        let fits = self.used > 0 && {
            let last = &self.chunks[self.used - 1];
            last.capacity() - last.len() >= room
        };
        if !fits {
            self.next_chunk(room);
        }
        let at = self.end();
        let secs = micros / 1_000_000;
        let same_run = matches!(self.items.last(),
            Some((p, Item::Lines { secs: s, route: r })) if p.chunk == at.chunk && *s == secs && *r == route);
        if !same_run {
            self.items.push((at, Item::Lines { secs, route }));
        }
        &mut self.chunks[self.used - 1]
    }

    /// Moves on to a spare chunk, or a new one, with `room` bytes free.
    fn next_chunk(&mut self, room: usize) {
        if let Some(last) = self.used.checked_sub(1) {
            self.bytes_before_last += self.chunks[last].len();
        }
        match self.chunks.get_mut(self.used) {
            Some(spare) => spare.reserve(room),
            None => self.chunks.push(Vec::with_capacity(CHUNK_BYTES.max(room))),
        }
        self.used += 1;
    }

    fn end(&self) -> Pos {
        match self.used {
            0 => Pos {
                chunk: 0,
                offset: 0,
            },
            n => Pos {
                chunk: n - 1,
                offset: self.chunks[n - 1].len(),
            },
        }
    }

    /// From here on, traffic lines also go to `destination`.
    pub fn add_destination(&mut self, destination: Destination) {
        self.items.push((self.end(), Item::Add(destination)));
    }

    /// From here on, traffic lines no longer go to `key`.
    pub fn remove_destination(&mut self, key: DestKey) {
        self.items.push((self.end(), Item::Remove(key)));
    }

    /// True when there is nothing for the writer: no lines, no changes.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of lines.
    pub fn len(&self) -> usize {
        self.bytes_before_last
            + self
                .used
                .checked_sub(1)
                .map_or(0, |last| self.chunks[last].len())
    }

    /// Empty chunks ready to be filled.
    pub fn spares(&self) -> usize {
        self.chunks.len() - self.used
    }

    pub fn has_spares(&self) -> bool {
        self.spares() > 0
    }

    /// Bytes held by spare chunks.
    #[cfg(test)]
    pub fn spare_capacity(&self) -> usize {
        self.chunks[self.used..].iter().map(Vec::capacity).sum()
    }

    /// Hands the lines over (for the writer) and keeps the spare chunks.
    pub fn take_lines(&mut self) -> Arena {
        let spares = self.chunks.split_off(self.used);
        std::mem::replace(
            self,
            Arena {
                chunks: spares,
                ..Arena::default()
            },
        )
    }

    /// Takes the chunks of a written arena back as spares. Spares beyond
    /// its count, plus one, are let go: the next flush likely needs about
    /// as many as the last one did.
    pub fn recycle(&mut self, written: Arena) {
        let keep = self.used + written.chunks.len() + 1;
        // Chunks given back early left empty ones in their place.
        let kept = written.chunks.into_iter().filter(|c| c.capacity() > 0);
        self.add_spares(kept.collect());
        self.chunks.truncate(keep);
    }

    /// Takes chunks `range` (clamped to the arena) out, leaving empty ones
    /// in their place so that positions stay valid.
    pub fn take_chunks(&mut self, range: Range<usize>) -> Vec<Vec<u8>> {
        let end = range.end.min(self.chunks.len());
        let start = range.start.min(end);
        self.chunks[start..end]
            .iter_mut()
            .map(std::mem::take)
            .collect()
    }

    /// Takes chunks given back early by the writer as spares.
    pub fn add_spares(&mut self, chunks: Vec<Vec<u8>>) {
        for mut chunk in chunks {
            chunk.clear();
            self.chunks.push(chunk);
        }
    }

    /// Lets go of the spare chunks.
    pub fn drop_spares(&mut self) {
        self.chunks.truncate(self.used);
    }

    /// Empties the arena, keeping its chunks as spares.
    pub fn clear(&mut self) {
        for chunk in &mut self.chunks[..self.used] {
            chunk.clear();
        }
        self.used = 0;
        self.bytes_before_last = 0;
        self.items.clear();
    }

    /// The runs and changes in order.
    pub fn runs(&self) -> impl Iterator<Item = Run<'_>> + '_ {
        self.items
            .iter()
            .enumerate()
            .map(|(i, (start, item))| match item {
                Item::Lines { secs, route } => {
                    let end = match self.items.get(i + 1) {
                        Some((next, _)) if next.chunk == start.chunk => next.offset,
                        _ => self.chunks[start.chunk].len(),
                    };
                    Run::Lines {
                        secs: *secs,
                        chunk: start.chunk,
                        range: start.offset..end,
                        route,
                    }
                }
                Item::Add(destination) => Run::Add(destination),
                Item::Remove(key) => Run::Remove(key),
            })
    }

    /// The bytes of chunk `i`.
    pub fn chunk(&self, i: usize) -> &[u8] {
        &self.chunks[i]
    }

    /// All the lines, copied into one buffer (for tests).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.chunks[..self.used].concat()
    }
}

/// Spare chunks the writer keeps paged in ahead of a filling arena.
pub const PAGE_AHEAD: usize = 16;

/// Room for everything in a line but its addresses, data and paths.
const LINE_FRAME: usize = 160;

/// The loop's logging front: the arena being filled, the timestamp cache
/// and the ConnID sequence.
#[derive(Debug)]
pub struct Logger {
    pub arena: Arena,
    /// `--max-buffer-mb` in bytes: the arena plus the one being written
    /// may hold this much before reading from sockets pauses.
    cap: Option<usize>,
    /// Bytes handed to the writer and not yet written.
    pub in_flight: usize,
    clock: LineClock,
    ids: ConnIdSeq,
}

impl Logger {
    pub fn new(first_id_micros: u64, cap: Option<usize>) -> Self {
        Logger {
            arena: Arena::default(),
            cap,
            in_flight: 0,
            clock: LineClock::default(),
            ids: ConnIdSeq::starting_at(first_id_micros),
        }
    }

    /// False when the buffered log lines have reached `--max-buffer-mb`.
    pub fn has_room(&self) -> bool {
        self.cap
            .is_none_or(|cap| self.arena.len() + self.in_flight < cap)
    }

    /// Chunks worth paging in ahead of the arena: in a burst (more than a
    /// chunk of lines), enough to have `PAGE_AHEAD` spares, and no more than
    /// the room `--max-buffer-mb` leaves.
    pub fn chunks_to_page_ahead(&self) -> usize {
        let lines = self.arena.len();
        if lines <= CHUNK_BYTES {
            return 0;
        }
        let room = self.cap.map_or(PAGE_AHEAD, |cap| {
            cap.saturating_sub(lines + self.in_flight) / CHUNK_BYTES
        });
        PAGE_AHEAD.min(room).saturating_sub(self.arena.spares())
    }

    /// Logs an `open` and returns the connection's new ConnID.
    pub fn open(&mut self, micros: u64, from: &str, to: &str, listen_port: u16) -> ConnId {
        let id = self.ids.take();
        let out = self.arena.line(micros, LINE_FRAME + from.len() + to.len());
        encode::push_open_line(out, &mut self.clock, micros, &id, from, to, listen_port);
        id
    }

    pub fn data(&mut self, micros: u64, id: &ConnId, data: &[u8], from: &str, to: &str) {
        let room = LINE_FRAME + 3 * data.len() + from.len() + to.len();
        let out = self.arena.line(micros, room);
        encode::push_data_line(out, &mut self.clock, micros, id, data, from, to);
    }

    pub fn close(&mut self, micros: u64, id: &ConnId, from: &str, to: &str) {
        let out = self.arena.line(micros, LINE_FRAME + from.len() + to.len());
        encode::push_close_line(out, &mut self.clock, micros, id, from, to);
    }

    /// The `mcp-ready` event, for whom `route` says.
    pub fn mcp_ready(&mut self, route: Route, micros: u64, endpoint: &str) {
        let out = self
            .arena
            .line_for(micros, route, LINE_FRAME + endpoint.len());
        encode::push_mcp_ready(out, &mut self.clock, micros, endpoint);
    }

    /// A `start-logging`/`stop-logging` event, for whom `route` says.
    pub fn logging_event(
        &mut self,
        route: Route,
        micros: u64,
        event: &str,
        directory: Option<&str>,
        filename_format: Option<&str>,
    ) {
        // JSON escapes take at most 6 bytes per byte (`\u001F`).
        let text = directory.map_or(0, str::len) + filename_format.map_or(0, str::len);
        let out = self.arena.line_for(micros, route, LINE_FRAME + 6 * text);
        encode::push_logging_event(
            out,
            &mut self.clock,
            micros,
            event,
            directory,
            filename_format,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(arena: &Arena) -> Vec<String> {
        arena.runs().map(|r| format!("{r:?}")).collect()
    }

    #[test]
    fn runs_split_by_second_route_and_change() {
        let mut arena = Arena::default();
        arena.line(1_000_000, 2).extend_from_slice(b"a\n");
        arena.line(1_500_000, 2).extend_from_slice(b"b\n");
        arena.line(2_000_000, 2).extend_from_slice(b"c\n");
        arena.add_destination(Destination::Stdout);
        arena.line(2_000_001, 2).extend_from_slice(b"d\n");
        let console = Route::Control {
            console: true,
            dest: None,
        };
        arena
            .line_for(2_000_002, console.clone(), 2)
            .extend_from_slice(b"e\n");
        arena.remove_destination(DestKey::Stdout);
        assert_eq!(
            runs(&arena),
            [
                "Lines { secs: 1, chunk: 0, range: 0..4, route: Traffic }",
                "Lines { secs: 2, chunk: 0, range: 4..6, route: Traffic }",
                "Add(Stdout)",
                "Lines { secs: 2, chunk: 0, range: 6..8, route: Traffic }",
                "Lines { secs: 2, chunk: 0, range: 8..10, route: Control { console: true, dest: None } }",
                "Remove(Stdout)",
            ]
        );
        assert_eq!(arena.len(), 10);
        arena.clear();
        assert!(arena.is_empty());
        assert_eq!(arena.runs().count(), 0);
        assert_eq!(arena.len(), 0);
    }

    #[test]
    fn a_line_that_might_not_fit_starts_the_next_chunk() {
        let mut arena = Arena::default();
        let almost = vec![b'x'; CHUNK_BYTES - 10];
        arena.line(0, almost.len()).extend_from_slice(&almost);
        arena.line(0, 11).extend_from_slice(b"y\n");
        // Bigger than a chunk: that chunk is made big enough.
        let huge = vec![b'z'; CHUNK_BYTES + 5];
        arena.line(0, huge.len()).extend_from_slice(&huge);
        assert_eq!(
            runs(&arena),
            [
                format!(
                    "Lines {{ secs: 0, chunk: 0, range: 0..{}, route: Traffic }}",
                    almost.len()
                ),
                "Lines { secs: 0, chunk: 1, range: 0..2, route: Traffic }".into(),
                format!(
                    "Lines {{ secs: 0, chunk: 2, range: 0..{}, route: Traffic }}",
                    huge.len()
                ),
            ]
        );
        assert_eq!(arena.len(), almost.len() + 2 + huge.len());
        assert_eq!(arena.to_bytes(), [&almost[..], b"y\n", &huge[..]].concat());
    }

    #[test]
    fn written_chunks_come_back_as_spares_without_moving() {
        let mut arena = Arena::default();
        arena.line(0, CHUNK_BYTES).extend_from_slice(b"one\n");
        arena.line(0, CHUNK_BYTES).extend_from_slice(b"two\n");
        let mut full = arena.take_lines();
        assert!(arena.is_empty());
        assert_eq!(full.to_bytes(), b"one\ntwo\n");
        let addresses: Vec<*const u8> = full.chunks.iter().map(|c| c.as_ptr()).collect();
        full.clear();
        arena.recycle(full);
        assert_eq!(arena.spare_capacity(), 2 * CHUNK_BYTES);
        // Filling goes on in the returned chunks, in place.
        arena.line(0, 4).extend_from_slice(b"new\n");
        assert!(addresses.contains(&arena.chunks[0].as_ptr()));
        assert_eq!(arena.spare_capacity(), CHUNK_BYTES);
        // Spares beyond what the last flush needed, plus one, are let go.
        let mut many = Arena::default();
        for _ in 0..5 {
            many.line(0, CHUNK_BYTES).push(b'\n');
        }
        arena.recycle(many);
        let small = Arena::default();
        arena.recycle(small);
        assert_eq!(arena.spare_capacity(), CHUNK_BYTES);
        arena.drop_spares();
        assert_eq!(arena.spare_capacity(), 0);
        assert_eq!(arena.to_bytes(), b"new\n");
    }

    #[test]
    fn chunks_are_paged_ahead_only_in_a_burst_and_within_the_cap() {
        let fill = |log: &mut Logger, chunks: usize| {
            for _ in 0..chunks {
                log.arena.line(0, CHUNK_BYTES).resize(CHUNK_BYTES, b'x');
            }
        };
        let mut log = Logger::new(0, None);
        log.arena.line(0, 8).extend_from_slice(b"trickle\n");
        assert_eq!(log.chunks_to_page_ahead(), 0);
        fill(&mut log, 1);
        assert_eq!(log.chunks_to_page_ahead(), PAGE_AHEAD);
        log.arena
            .add_spares((0..3).map(|_| paged_chunk()).collect());
        assert_eq!(log.chunks_to_page_ahead(), PAGE_AHEAD - 3);
        // 6 MiB of lines and 2 in flight leave room for 2 chunks under 10.
        let mut capped = Logger::new(0, Some(10 * CHUNK_BYTES));
        fill(&mut capped, 6);
        capped.in_flight = 2 * CHUNK_BYTES;
        assert_eq!(capped.chunks_to_page_ahead(), 2);
        fill(&mut capped, 2);
        assert_eq!(capped.chunks_to_page_ahead(), 0);
    }

    #[test]
    fn ids_are_consecutive_across_opens() {
        let mut log = Logger::new(0, None);
        let a = log.open(5, "1.2.3.4:5", "h:1", 80);
        let b = log.open(6, "1.2.3.4:6", "h:1", 81);
        assert_eq!((a.as_str(), b.as_str()), ("00000000", "00000001"));
        let bytes = log.arena.to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
