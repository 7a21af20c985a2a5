//! The log arena: the loop encodes every line straight into it, and at each
//! flush the whole arena goes to the writer thread (SPEC §5). Besides the
//! bytes it records where each second of log time begins and who each run
//! of lines is for, so the writer can pick a file per rotation period and a
//! destination per line without parsing lines.

use super::chunk::ChunkPool;
use super::destination::{DestKey, Destination};
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

/// Where an item starts: a chunk and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    chunk: usize,
    offset: usize,
}

/// Encoded lines in chunks (see `chunk`), cut into runs of one second and
/// one route, with the destination changes between them, in the order they
/// happened. Chunks never grow or move, so filling never copies.
#[derive(Debug, Default)]
pub struct Arena {
    /// Chunks holding lines; the last is being filled.
    chunks: Vec<Vec<u8>>,
    /// Bytes in the chunks before the last.
    bytes_before_last: usize,
    /// `(start, item)` in order.
    items: Vec<(Pos, Item)>,
}

impl Arena {
    /// The buffer to append one line logged at `micros` for `route` to,
    /// with at least `room` bytes free; a new chunk comes from `pool`.
    pub fn line(
        &mut self,
        micros: u64,
        route: Route,
        room: usize,
        pool: &mut ChunkPool,
    ) -> &mut Vec<u8> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|last| last.capacity() - last.len() >= room);
        if !fits {
            if let Some(last) = self.chunks.last() {
                self.bytes_before_last += last.len();
            }
            self.chunks.push(pool.take(room));
        }
        let at = self.end();
        let secs = micros / 1_000_000;
        let same_run = matches!(self.items.last(),
            Some((p, Item::Lines { secs: s, route: r })) if p.chunk == at.chunk && *s == secs && *r == route);
        if !same_run {
            self.items.push((at, Item::Lines { secs, route }));
        }
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    fn end(&self) -> Pos {
        match self.chunks.len() {
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
        self.bytes_before_last + self.chunks.last().map_or(0, Vec::len)
    }

    /// Chunks holding lines.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Replaces each chunk less than half full with an exact copy, giving
    /// the chunk back to `pool`: lines waiting for a stalled destination
    /// then hold their own size in memory, not a chunk each flush. The
    /// bytes and positions stay as they were.
    pub fn shrink_partly_filled(&mut self, pool: &mut ChunkPool) {
        for chunk in &mut self.chunks {
            if chunk.len() < chunk.capacity() / 2 {
                let copy = chunk.to_vec();
                pool.give_back([std::mem::replace(chunk, copy)]);
            }
        }
    }

    /// The chunks, to be written.
    pub fn into_chunks(self) -> Vec<Vec<u8>> {
        self.chunks
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
        self.chunks.concat()
    }

    /// Appends a traffic line (for tests).
    #[cfg(test)]
    pub fn push(&mut self, micros: u64, line: &[u8], pool: &mut ChunkPool) {
        self.line(micros, Route::Traffic, line.len(), pool)
            .extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::chunk::CHUNK_BYTES;

    fn runs(arena: &Arena) -> Vec<String> {
        arena.runs().map(|r| format!("{r:?}")).collect()
    }

    #[test]
    fn runs_split_by_second_route_and_change() {
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.push(1_000_000, b"a\n", pool);
        arena.push(1_500_000, b"b\n", pool);
        arena.push(2_000_000, b"c\n", pool);
        arena.add_destination(Destination::Stdout);
        arena.push(2_000_001, b"d\n", pool);
        let console = Route::Control {
            console: true,
            dest: None,
        };
        arena
            .line(2_000_002, console.clone(), 2, pool)
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
        let empty = Arena::default();
        assert!(empty.is_empty());
        assert_eq!(empty.runs().count(), 0);
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn a_line_that_might_not_fit_starts_the_next_chunk() {
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        let almost = vec![b'x'; CHUNK_BYTES - 10];
        arena.push(0, &almost, pool);
        arena
            .line(0, Route::Traffic, 11, pool)
            .extend_from_slice(b"y\n");
        // Bigger than a chunk: that chunk is made big enough.
        let huge = vec![b'z'; CHUNK_BYTES + 5];
        arena.push(0, &huge, pool);
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
        assert_eq!(arena.chunk_count(), 3);
        assert_eq!(arena.to_bytes(), [&almost[..], b"y\n", &huge[..]].concat());
    }

    #[test]
    fn partly_filled_chunks_become_exact_copies_and_the_chunks_go_back() {
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        let full = vec![b'x'; CHUNK_BYTES - 1];
        arena.push(0, &full, pool);
        arena.push(1_000_000, b"a\n", pool);
        arena.push(2_000_000, b"b\n", pool);
        let before = runs(&arena);
        arena.shrink_partly_filled(pool);
        assert_eq!(runs(&arena), before, "positions stay");
        assert_eq!(arena.to_bytes(), [&full[..], b"a\nb\n"].concat());
        assert_eq!(pool.len(), 1, "the partly filled chunk is back");
        let chunks = arena.into_chunks();
        assert!(chunks[0].capacity() >= CHUNK_BYTES, "a full chunk stays");
        assert!(chunks[1].capacity() < CHUNK_BYTES, "a copy of its size");
        // The copy is not kept as a spare.
        pool.give_back(chunks);
        assert_eq!(pool.len(), 2);
    }
}
