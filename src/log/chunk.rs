//! The chunks that log lines are encoded into, and the pool that keeps them
//! between uses.
//!
//! A chunk's life, whole:
//!
//! 1. **Taken**: the arena takes a chunk from the pool when the next line
//!    might not fit in its last one: a spare if there is one, else fresh
//!    memory (whose first touch, a page fault per 4 KiB, costs more than
//!    filling it).
//! 2. **Filled** by the loop, line after line; a line never spans two.
//! 3. **Handed over** with its arena to the writer thread at a flush.
//! 4. **Written**, then **given back**: each destination's writer sends its
//!    share back as soon as it has written it, and the chunk returns to the
//!    pool when the last destination that reads it is done. A chunk less
//!    than half full is copied out at the flush and returns at once.
//! 5. **Kept** in the pool as a spare, its memory still paged in, and taken
//!    again (1). After a flush is written the pool keeps as many spares as
//!    that flush used, plus `PAGE_AHEAD`; the rest are let go. With only
//!    one more, the chunks paged in ahead during a steady stream were let
//!    go at each flush and paged in again in the next interval: 18% of the
//!    chunks of a 10 s keep-alive run were fresh (benches/README.md).
//! 6. **Paged in ahead**: in a burst, while the writer has nothing to write,
//!    it makes fresh chunks and touches their pages, so the loop's first
//!    touches happen on the writer's core; they join the pool as spares.
//! 7. **Trimmed**: once logging has been idle for `TRIM_AFTER`, the spares
//!    are let go, so an idle proxy returns to its baseline memory.

use std::time::Duration;

/// Bytes in one chunk. A line that might not fit in what is left of a chunk
/// starts the next; a line bigger than a chunk gets a chunk of its own size.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Spare chunks the writer keeps paged in ahead of a filling arena.
pub const PAGE_AHEAD: usize = 16;

/// How long logging must be idle before the spares are let go.
pub const TRIM_AFTER: Duration = Duration::from_secs(1);

/// An empty chunk whose pages have all been touched once (step 6).
pub fn paged_chunk() -> Vec<u8> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    crate::sys::page_in(&mut chunk);
    chunk
}

/// Empty chunks ready to be filled again (steps 5–7).
#[derive(Debug, Default)]
pub struct ChunkPool {
    spares: Vec<Vec<u8>>,
}

impl ChunkPool {
    /// A chunk with at least `room` bytes free: a spare, else a new one.
    pub fn take(&mut self, room: usize) -> Vec<u8> {
        match self.spares.pop() {
            Some(mut spare) => {
                spare.reserve(room);
                spare
            }
            None => Vec::with_capacity(CHUNK_BYTES.max(room)),
        }
    }

    /// Takes chunks back as spares, emptied. Buffers smaller than a chunk
    /// (the copies `Arena::shrink_partly_filled` makes) are dropped.
    pub fn give_back(&mut self, chunks: impl IntoIterator<Item = Vec<u8>>) {
        for mut chunk in chunks {
            if chunk.capacity() >= CHUNK_BYTES {
                chunk.clear();
                self.spares.push(chunk);
            }
        }
    }

    /// Lets go of spares beyond `n`.
    pub fn keep_at_most(&mut self, n: usize) {
        self.spares.truncate(n);
    }

    /// Spares ready to be filled.
    pub fn len(&self) -> usize {
        self.spares.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spares.is_empty()
    }

    /// Bytes held by the spares.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.spares.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_reused_in_place_and_small_buffers_dropped() {
        let mut pool = ChunkPool::default();
        let mut a = pool.take(10);
        assert!(a.capacity() >= CHUNK_BYTES);
        a.extend_from_slice(b"lines\n");
        let at = a.as_ptr();
        pool.give_back([a, Vec::new(), b"copy".to_vec()]);
        assert_eq!(pool.len(), 1);
        let again = pool.take(10);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty());
        // A line bigger than a chunk gets a chunk of its size.
        assert!(pool.take(CHUNK_BYTES + 5).capacity() >= CHUNK_BYTES + 5);
        pool.give_back([paged_chunk(), paged_chunk(), paged_chunk()]);
        pool.keep_at_most(1);
        assert_eq!(pool.capacity(), CHUNK_BYTES);
    }
}
