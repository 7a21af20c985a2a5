//! One direction of a connection pair: bytes read from `src` are logged and
//! written to `dst`; only what `dst` did not take is kept, and reading stops
//! until it is sent (backpressure, SPEC §3). The pipe knows nothing of
//! sockets or the loop: `pump` works on any `Read`/`Write`, so it is tested
//! with in-memory fakes. What an outcome means for the pair is `pair.rs`'s call.

use std::io::{self, Read, Write};

/// The most one read takes (SPEC §4: a data line is at most 32 KiB).
pub const READ_CHUNK: usize = 32 * 1024;

/// A socket that can end its sending direction (pass a FIN on).
pub trait HalfClose {
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl HalfClose for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// Reads one `pump` call makes at most before it yields, so one fast
/// connection cannot hold the loop (and the flush timer) for long.
pub const READS_PER_TURN: usize = 16;

/// What one `pump` call may do.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// False when the log is full: nothing is read.
    pub may_read: bool,
    /// A read shorter than asked means `src` is empty for now: stop there
    /// instead of reading again to see `WouldBlock` (edge-triggered events
    /// announce new bytes). Only where `sys::SHORT_READ_DRAINS` allows:
    /// mio on Windows re-arms a socket only after `WouldBlock`.
    pub short_read_drains: bool,
}

/// Which end of a pipe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// What one `pump` call came to.
#[derive(Debug)]
pub enum Pump {
    /// Nothing more can move now; a readiness event will resume us.
    Blocked,
    /// Reading stopped because the log is full (`--max-buffer-mb`); no
    /// event will resume us: the caller must call `pump` again when there
    /// is room.
    Throttled,
    /// `READS_PER_TURN` reads were made and `src` may have more: no event
    /// will say so, the caller must call `pump` again after other work.
    Yielded,
    /// `src` has ended, every byte was delivered and the FIN was passed on.
    Finished,
    /// An I/O error on one end (reset, broken pipe...).
    Failed(End, io::Error),
}

#[derive(Debug, Default)]
pub struct Pipe {
    /// Bytes read but not yet taken by `dst`; empty (no allocation) when idle.
    pending: Vec<u8>,
    /// How much of `pending` has been written.
    sent: usize,
    /// `src` returned end of file.
    pub eof: bool,
    /// `dst.shutdown(Write)` has been done.
    pub fin_sent: bool,
}

impl Pipe {
    /// Bytes held for a slow `dst`.
    pub fn pending_len(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// True while `dst` has bytes or a FIN to take: only then does `dst`
    /// becoming writable give `pump` something to do.
    pub fn waits_to_write(&self) -> bool {
        self.pending_len() > 0 || (self.eof && !self.fin_sent)
    }

    /// Moves bytes from `src` to `dst` until one of them would block, `src`
    /// ends, or an error occurs. Each read is passed to `log` before it is
    /// written; `log` answers whether the log has room for more, and reading
    /// stops when it has not (as it does when `turn.may_read` is false
    /// from the start). Called on every readiness event of either end;
    /// always safe to call again.
    pub fn pump<S, D>(
        &mut self,
        src: &mut S,
        dst: &mut D,
        scratch: &mut [u8],
        turn: Turn,
        log: &mut impl FnMut(&[u8]) -> bool,
    ) -> Pump
    where
        S: Read,
        D: Write + HalfClose,
    {
        let mut may_read = turn.may_read;
        let mut drained = false;
        let mut reads_left = READS_PER_TURN;
        loop {
            if self.pending_len() > 0 {
                match dst.write(&self.pending[self.sent..]) {
                    Ok(0) => return Pump::Failed(End::Dst, io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.sent += n;
                        if self.sent == self.pending.len() {
                            // Drained: give the memory back, an idle pipe holds nothing.
                            self.pending = Vec::new();
                            self.sent = 0;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Blocked,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Pump::Failed(End::Dst, e),
                }
            }
            if self.eof {
                if !self.fin_sent {
                    // SPEC §3: pass the FIN on once everything before it is sent.
                    if let Err(e) = dst.shutdown_write() {
                        return Pump::Failed(End::Dst, e);
                    }
                    self.fin_sent = true;
                }
                return Pump::Finished;
            }
            if drained {
                return Pump::Blocked;
            }
            if !may_read {
                return Pump::Throttled;
            }
            if reads_left == 0 {
                return Pump::Yielded;
            }
            reads_left -= 1;
            let limit = READ_CHUNK.min(scratch.len());
            let chunk = &mut scratch[..limit];
            let n = match src.read(chunk) {
                Ok(0) => {
                    self.eof = true;
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Pump::Failed(End::Src, e),
            };
            may_read = log(&chunk[..n]);
            drained = turn.short_read_drains && n < limit;
            let taken = match dst.write(&chunk[..n]) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Pump::Failed(End::Dst, e),
            };
            if taken < n {
                // Keep only the rest; the loop above tries it once more and
                // stops at WouldBlock, so reading pauses until it is sent.
                self.pending.extend_from_slice(&chunk[taken..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A source that hands out scripted chunks, then WouldBlock, or EOF.
    struct FakeSrc {
        chunks: VecDeque<io::Result<Vec<u8>>>,
    }

    impl Read for FakeSrc {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.chunks.pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Err(e)) => Err(e),
                Some(Ok(mut chunk)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.chunks.push_front(Ok(chunk.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    /// A destination that takes at most `room` bytes, then blocks.
    #[derive(Default)]
    struct FakeDst {
        got: Vec<u8>,
        room: usize,
        fin: bool,
        fail: Option<io::ErrorKind>,
    }

    impl Write for FakeDst {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl HalfClose for FakeDst {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.fin = true;
            Ok(())
        }
    }

    const READ: Turn = Turn {
        may_read: true,
        short_read_drains: false,
    };
    const PAUSED: Turn = Turn {
        may_read: false,
        ..READ
    };

    /// One `pump` with a scratch buffer of one read, counting the reads.
    fn pump_counting(
        pipe: &mut Pipe,
        s: &mut FakeSrc,
        d: &mut FakeDst,
        turn: Turn,
        reads: &mut usize,
    ) -> Pump {
        let mut scratch = vec![0; READ_CHUNK];
        pipe.pump(s, d, &mut scratch, turn, &mut |_: &[u8]| {
            *reads += 1;
            true
        })
    }

    fn src(chunks: Vec<io::Result<Vec<u8>>>) -> FakeSrc {
        FakeSrc {
            chunks: chunks.into(),
        }
    }

    #[test]
    fn forwards_and_logs_each_read() {
        let mut pipe = Pipe::default();
        let mut s = src(vec![Ok(b"hello ".to_vec()), Ok(b"world".to_vec())]);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let mut logged = Vec::new();
        let mut scratch = vec![0; READ_CHUNK];
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |b: &[u8]| {
            logged.push(b.to_vec());
            true
        });
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(d.got, b"hello world");
        assert_eq!(logged, vec![b"hello ".to_vec(), b"world".to_vec()]);
        assert_eq!(pipe.pending_len(), 0);
    }

    #[test]
    fn short_write_keeps_the_rest_and_stops_reading() {
        let mut pipe = Pipe::default();
        let mut s = src(vec![Ok(vec![1; 100]), Ok(vec![2; 100])]);
        let mut d = FakeDst {
            room: 30,
            ..Default::default()
        };
        let mut reads = 0;
        let out = pump_counting(&mut pipe, &mut s, &mut d, READ, &mut reads);
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(reads, 1, "must not read while bytes are pending");
        assert_eq!(pipe.pending_len(), 70);
        assert_eq!(s.chunks.len(), 1);
        // The destination frees up: pending goes first, then the next read.
        d.room = usize::MAX;
        let out = pump_counting(&mut pipe, &mut s, &mut d, READ, &mut reads);
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(reads, 2);
        let mut want = vec![1; 100];
        want.extend(vec![2; 100]);
        assert_eq!(d.got, want);
        assert_eq!(pipe.pending.capacity(), 0, "an idle pipe holds no buffer");
    }

    #[test]
    fn eof_passes_the_fin_on_after_pending_bytes() {
        let mut pipe = Pipe::default();
        let mut s = src(vec![Ok(b"abc".to_vec()), Ok(Vec::new())]);
        let mut d = FakeDst {
            room: 1,
            ..Default::default()
        };
        let mut scratch = vec![0; READ_CHUNK];
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| true);
        assert!(matches!(out, Pump::Blocked));
        assert!(!d.fin);
        d.room = usize::MAX;
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| true);
        assert!(matches!(out, Pump::Finished));
        assert!(pipe.eof && pipe.fin_sent && d.fin);
        assert_eq!(d.got, b"abc");
        // Calling again is harmless.
        assert!(matches!(
            pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| true),
            Pump::Finished
        ));
    }

    #[test]
    fn errors_name_the_failing_end() {
        let mut scratch = vec![0; READ_CHUNK];
        let mut pipe = Pipe::default();
        let mut s = src(vec![Err(io::ErrorKind::ConnectionReset.into())]);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| true);
        assert!(matches!(out, Pump::Failed(End::Src, _)));

        let mut pipe = Pipe::default();
        let mut s = src(vec![Ok(b"x".to_vec())]);
        let mut d = FakeDst {
            fail: Some(io::ErrorKind::BrokenPipe),
            ..Default::default()
        };
        let mut logged = 0;
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| {
            logged += 1;
            true
        });
        assert!(matches!(out, Pump::Failed(End::Dst, _)));
        assert_eq!(logged, 1, "bytes read are logged even if the peer is gone");
    }

    #[test]
    fn reads_are_at_most_one_chunk() {
        let mut pipe = Pipe::default();
        let mut s = src(vec![Ok(vec![7; READ_CHUNK * 2 + 5])]);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let mut sizes = Vec::new();
        let mut scratch = vec![0; READ_CHUNK * 4];
        pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |b: &[u8]| {
            sizes.push(b.len());
            true
        });
        assert_eq!(sizes, vec![READ_CHUNK, READ_CHUNK, 5]);
    }

    #[test]
    fn a_full_log_stops_reading_until_called_again() {
        let mut pipe = Pipe::default();
        let mut s = src(vec![
            Ok(b"one".to_vec()),
            Ok(b"two".to_vec()),
            Ok(Vec::new()),
        ]);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let mut scratch = vec![0; READ_CHUNK];
        // Full from the start: nothing is read.
        let out = pipe.pump(&mut s, &mut d, &mut scratch, PAUSED, &mut |_: &[u8]| true);
        assert!(matches!(out, Pump::Throttled));
        assert!(d.got.is_empty());
        // Full after the first read: that read is delivered, no other.
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| false);
        assert!(matches!(out, Pump::Throttled));
        assert_eq!(d.got, b"one");
        let out = pipe.pump(&mut s, &mut d, &mut scratch, READ, &mut |_: &[u8]| true);
        assert!(matches!(out, Pump::Finished));
        assert_eq!(d.got, b"onetwo");
    }

    #[test]
    fn a_source_that_never_blocks_yields_after_a_turn() {
        let mut pipe = Pipe::default();
        let chunks = (0..READS_PER_TURN + 3)
            .map(|i| Ok(vec![i as u8; 10]))
            .collect();
        let mut s = src(chunks);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let mut reads = 0;
        let out = pump_counting(&mut pipe, &mut s, &mut d, READ, &mut reads);
        assert!(matches!(out, Pump::Yielded));
        assert_eq!(reads, READS_PER_TURN);
        // The next turn goes on where this one stopped.
        let out = pump_counting(&mut pipe, &mut s, &mut d, READ, &mut reads);
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(reads, READS_PER_TURN + 3);
        let want: Vec<u8> = (0..READS_PER_TURN + 3)
            .flat_map(|i| vec![i as u8; 10])
            .collect();
        assert_eq!(d.got, want);
    }

    #[test]
    fn a_short_read_ends_the_turn_when_it_drains_the_source() {
        let mut s = src(vec![
            Ok(vec![1; READ_CHUNK]),
            Ok(b"short".to_vec()),
            Ok(b"later".to_vec()),
        ]);
        let mut d = FakeDst {
            room: usize::MAX,
            ..Default::default()
        };
        let drains = Turn {
            short_read_drains: true,
            ..READ
        };
        let mut reads = 0;
        let mut pipe = Pipe::default();
        let out = pump_counting(&mut pipe, &mut s, &mut d, drains, &mut reads);
        // A full read goes on; the short one ends the turn, no read after it.
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(reads, 2);
        assert_eq!(d.got.len(), READ_CHUNK + 5);
        // Without the promise, reading goes on to WouldBlock.
        let out = pump_counting(&mut pipe, &mut s, &mut d, READ, &mut reads);
        assert!(matches!(out, Pump::Blocked));
        assert_eq!(reads, 3);
        assert!(d.got.ends_with(b"shortlater"));
    }
}
