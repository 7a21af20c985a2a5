//! The log arena: the loop encodes every line straight into it, and at each
//! flush hands the whole arena to the writer thread (SPEC §5). Besides the
//! bytes it records where each second of log time begins, so the writer can
//! pick a file per rotation period without parsing lines.

use crate::connid::{ConnId, ConnIdSeq};
use crate::encode;
use crate::timefmt::LineClock;
use crate::writer::{DestKey, Destination};
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
    Lines {
        secs: u64,
        range: Range<usize>,
        route: &'a Route,
    },
    Add(&'a Destination),
    Remove(&'a DestKey),
}

/// Encoded lines, cut into runs of one second and one route, with the
/// destination changes between them, in the order they happened.
#[derive(Debug, Default)]
pub struct Arena {
    bytes: Vec<u8>,
    /// `(offset, item)`; offsets never decrease.
    items: Vec<(usize, Item)>,
}

impl Arena {
    /// The buffer to append one traffic line logged at `micros` to.
    pub fn line(&mut self, micros: u64) -> &mut Vec<u8> {
        self.line_for(micros, Route::Traffic)
    }

    /// The buffer to append one control line logged at `micros` to.
    pub fn line_for(&mut self, micros: u64, route: Route) -> &mut Vec<u8> {
        let secs = micros / 1_000_000;
        let same_run = matches!(self.items.last(), Some((_, Item::Lines { secs: s, route: r })) if *s == secs && *r == route);
        if !same_run {
            self.items
                .push((self.bytes.len(), Item::Lines { secs, route }));
        }
        &mut self.bytes
    }

    /// From here on, traffic lines also go to `destination`.
    pub fn add_destination(&mut self, destination: Destination) {
        self.items.push((self.bytes.len(), Item::Add(destination)));
    }

    /// From here on, traffic lines no longer go to `key`.
    pub fn remove_destination(&mut self, key: DestKey) {
        self.items.push((self.bytes.len(), Item::Remove(key)));
    }

    /// True when there is nothing for the writer: no lines, no changes.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes the arena can hold without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Moves this arena's lines into `roomier`, an emptied arena with more
    /// capacity, so that filling goes on in memory that is already paged in
    /// (a first touch costs far more than a copy), and returns the emptied
    /// smaller one for reuse.
    pub fn move_into(&mut self, mut roomier: Arena) -> Arena {
        roomier.clear();
        roomier.bytes.extend_from_slice(&self.bytes);
        roomier.items = std::mem::take(&mut self.items);
        std::mem::swap(self, &mut roomier);
        roomier.clear();
        roomier
    }

    /// Empties the arena, keeping its capacity for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// The runs and changes in order.
    pub fn runs(&self) -> impl Iterator<Item = Run<'_>> + '_ {
        self.items
            .iter()
            .enumerate()
            .map(|(i, (start, item))| match item {
                Item::Lines { secs, route } => {
                    let end = self
                        .items
                        .get(i + 1)
                        .map_or(self.bytes.len(), |&(next, _)| next);
                    Run::Lines {
                        secs: *secs,
                        range: *start..end,
                        route,
                    }
                }
                Item::Add(destination) => Run::Add(destination),
                Item::Remove(key) => Run::Remove(key),
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

    /// The `mcp-ready` event, for whom `route` says.
    pub fn mcp_ready(&mut self, route: Route, micros: u64, endpoint: &str) {
        let out = self.arena.line_for(micros, route);
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
        let out = self.arena.line_for(micros, route);
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
    fn runs_split_by_second_route_and_change() {
        let mut arena = Arena::default();
        arena.line(1_000_000).extend_from_slice(b"a\n");
        arena.line(1_500_000).extend_from_slice(b"b\n");
        arena.line(2_000_000).extend_from_slice(b"c\n");
        arena.add_destination(Destination::Stdout);
        arena.line(2_000_001).extend_from_slice(b"d\n");
        let console = Route::Control {
            console: true,
            dest: None,
        };
        arena
            .line_for(2_000_002, console.clone())
            .extend_from_slice(b"e\n");
        arena.remove_destination(DestKey::Stdout);
        let runs: Vec<String> = arena.runs().map(|r| format!("{r:?}")).collect();
        assert_eq!(
            runs,
            [
                "Lines { secs: 1, range: 0..4, route: Traffic }",
                "Lines { secs: 2, range: 4..6, route: Traffic }",
                "Add(Stdout)",
                "Lines { secs: 2, range: 6..8, route: Traffic }",
                "Lines { secs: 2, range: 8..10, route: Control { console: true, dest: None } }",
                "Remove(Stdout)",
            ]
        );
        arena.clear();
        assert!(arena.is_empty());
        assert_eq!(arena.runs().count(), 0);
    }

    #[test]
    fn moving_into_a_roomier_arena_keeps_lines_and_changes() {
        let mut small = Arena::default();
        small.line(1_000_000).extend_from_slice(b"a\n");
        small.add_destination(Destination::Stdout);
        small.line(2_000_000).extend_from_slice(b"b\n");
        let mut big = Arena::default();
        big.line(0).extend_from_slice(&[b'x'; 1000]);
        big.clear();
        let before: Vec<String> = small.runs().map(|r| format!("{r:?}")).collect();
        let spare = small.move_into(big);
        assert!(small.capacity() >= 1000, "now filling the roomier one");
        assert_eq!(small.bytes(), b"a\nb\n");
        assert_eq!(
            small.runs().map(|r| format!("{r:?}")).collect::<Vec<_>>(),
            before
        );
        assert!(spare.is_empty());
    }

    #[test]
    fn ids_are_consecutive_across_opens() {
        let mut log = Logger::new(0, None);
        let a = log.open(5, "1.2.3.4:5", "h:1", 80);
        let b = log.open(6, "1.2.3.4:6", "h:1", 81);
        assert_eq!((a.as_str(), b.as_str()), ("00000000", "00000001"));
        let text = std::str::from_utf8(log.arena.bytes()).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
