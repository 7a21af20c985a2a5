//! The log arena: the loop encodes every line straight into it, and at each
//! flush hands the whole arena to the writer thread (SPEC §5). Besides the
//! bytes it records where each second of log time begins, so the writer can
//! pick a file per rotation period without parsing lines.

use crate::connid::{ConnId, ConnIdSeq};
use crate::encode;
use crate::timefmt::LineClock;
use std::ops::Range;

/// Encoded lines, plus `(offset, unix second)` marks: lines from `offset`
/// up to the next mark were logged during that second.
#[derive(Debug, Default)]
pub struct Arena {
    bytes: Vec<u8>,
    marks: Vec<(usize, u64)>,
}

impl Arena {
    /// The buffer to append one line logged at `micros` to.
    pub fn line(&mut self, micros: u64) -> &mut Vec<u8> {
        let secs = micros / 1_000_000;
        if self.marks.last().is_none_or(|&(_, s)| s != secs) {
            self.marks.push((self.bytes.len(), secs));
        }
        &mut self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the arena, keeping its capacity for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.marks.clear();
    }

    /// The byte ranges logged within one second each, in order.
    pub fn seconds(&self) -> impl Iterator<Item = (u64, Range<usize>)> + '_ {
        self.marks.iter().enumerate().map(|(i, &(start, secs))| {
            let end = self
                .marks
                .get(i + 1)
                .map_or(self.bytes.len(), |&(next, _)| next);
            (secs, start..end)
        })
    }

    /// All the bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The loop's logging front: the arena being filled, the timestamp cache
/// and the ConnID sequence.
#[derive(Debug)]
pub struct Logger {
    pub arena: Arena,
    clock: LineClock,
    ids: ConnIdSeq,
}

impl Logger {
    pub fn new(first_id_micros: u64) -> Self {
        Logger {
            arena: Arena::default(),
            clock: LineClock::default(),
            ids: ConnIdSeq::starting_at(first_id_micros),
        }
    }

    /// Logs an `open` and returns the connection's new ConnID.
    pub fn open(&mut self, micros: u64, from: &str, to: &str, listen_port: u16) -> ConnId {
        let id = self.ids.take();
        let out = self.arena.line(micros);
        encode::push_open_line(out, &mut self.clock, micros, &id, from, to, listen_port);
        id
    }

    pub fn data(&mut self, micros: u64, id: &ConnId, data: &[u8], from: &str, to: &str) {
        let out = self.arena.line(micros);
        encode::push_data_line(out, &mut self.clock, micros, id, data, from, to);
    }

    pub fn close(&mut self, micros: u64, id: &ConnId, from: &str, to: &str) {
        let out = self.arena.line(micros);
        encode::push_close_line(out, &mut self.clock, micros, id, from, to);
    }

    /// A `start-logging`/`stop-logging` event.
    pub fn logging_event(
        &mut self,
        micros: u64,
        event: &str,
        directory: Option<&str>,
        filename_format: Option<&str>,
    ) {
        let out = self.arena.line(micros);
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

    #[test]
    fn marks_split_the_bytes_by_second() {
        let mut arena = Arena::default();
        arena.line(1_000_000).extend_from_slice(b"a\n");
        arena.line(1_500_000).extend_from_slice(b"b\n");
        arena.line(2_000_000).extend_from_slice(b"c\n");
        arena.line(1_999_999).extend_from_slice(b"d\n");
        let runs: Vec<(u64, Range<usize>)> = arena.seconds().collect();
        assert_eq!(runs, vec![(1, 0..4), (2, 4..6), (1, 6..8)]);
        arena.clear();
        assert!(arena.is_empty());
        assert_eq!(arena.seconds().count(), 0);
    }

    #[test]
    fn ids_are_consecutive_across_opens() {
        let mut log = Logger::new(0);
        let a = log.open(5, "1.2.3.4:5", "h:1", 80);
        let b = log.open(6, "1.2.3.4:6", "h:1", 81);
        assert_eq!((a.as_str(), b.as_str()), ("00000000", "00000001"));
        let text = std::str::from_utf8(log.arena.bytes()).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
