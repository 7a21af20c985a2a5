//! The Unix side of `sys` (Linux with glibc or musl): raising the open-file
//! limit and the listen backlog (SPEC §3), signals for the loop (SPEC §6),
//! telling the allocator to give big buffers back, paging memory in ahead
//! of use, keeping written log data from filling the page cache, and a
//! file's identity and opening it without waiting for a writer (SPEC §9).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// epoll's edge-triggered mode reports new bytes even after a read that
/// stopped short of `WouldBlock`, so a short read may end a turn (see
/// `Turn::short_read_drains`): it saves the read that would only say
/// `WouldBlock`, which the keep-alive bench shows pays.
pub const SHORT_READ_DRAINS: bool = true;

/// SIGINT, SIGTERM and SIGHUP (SPEC §6: a closed terminal shuts down like
/// SIGTERM), reported to the loop by a readiness event on their token.
pub struct Signals {
    signals: signal_hook_mio::v1_0::Signals,
    /// Set when shutdown starts: a second signal then exits at once.
    shutting_down: Arc<AtomicBool>,
}

impl Signals {
    /// Starts catching the signals; `registry` reports `token` when one
    /// comes. (`_wake` is for platforms without a pollable signal source.)
    pub fn new(
        registry: &Registry,
        token: Token,
        _wake: &Arc<dyn Fn() + Send + Sync>,
    ) -> io::Result<Self> {
        let shutting_down = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // SPEC §6: a second signal during shutdown exits at once.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                130,
                Arc::clone(&shutting_down),
            )?;
        }
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(Signals {
            signals,
            shutting_down,
        })
    }

    /// True if a shutdown signal came since the last call.
    pub fn pending(&mut self) -> bool {
        self.signals.pending().next().is_some()
    }

    /// `pending` for a wake-up by the loop's waker: never, as signals come
    /// by their own token here (and the waker wakes for every writer report).
    pub fn pending_on_wake(&mut self) -> bool {
        false
    }

    /// Shutdown has started: from now on a signal exits at once.
    pub fn shutdown_started(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// True if a write failed because the reader of the pipe went away (EPIPE,
/// as with `| head`): SPEC §5 makes that a clean end, not an error.
pub fn reader_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

/// Terminals on Unix take ANSI escapes as they are.
pub fn enable_terminal_escapes() -> bool {
    true
}

/// Raises the open-file soft limit to the hard limit. Best effort: on
/// failure rawprox runs with the limit it was given.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit read above; only the soft limit changed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

/// The listen backlog asked for; the kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket with a backlog of `LISTEN_BACKLOG` (mio and
/// std listen with 128): on Linux a second `listen` on a listening socket
/// only sets the backlog.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // SAFETY: listen on a valid descriptor, borrowed for the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

/// Pages in the whole pages of `buf`'s spare capacity, so their first touch
/// (the kernel zeroing them, and on a VM often the host supplying them) is
/// paid by the caller's thread, not by whoever fills `buf` later. Best
/// effort: before Linux 5.14 nothing happens.
pub fn page_in(buf: &mut Vec<u8>) {
    const PAGE: usize = 4096;
    let spare = buf.spare_capacity_mut();
    let start = spare.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + spare.len()) / PAGE * PAGE;
    if end > first {
        // SAFETY: [first, end) lies in memory `buf` owns and nothing else
        // refers to; MADV_POPULATE_WRITE only faults its pages in, and the
        // bytes are spare capacity, never read before they are written.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                end - first,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

/// Makes glibc serve allocations of 256 KiB and more (log arenas after a
/// burst of traffic) with their own mappings, returned to the system when
/// freed. By default glibc raises that threshold after the first such free,
/// and memory freed after a burst then stays with the process.
pub fn return_big_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once at start-up,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Bytes `WriteThrough` writes between two writeback steps.
const WRITE_PIECE: usize = 8 << 20;

/// Pieces whose writeback may be under way at once before the oldest is
/// waited for.
const PIECES_IN_FLIGHT: usize = 2;

/// What `WriteThrough` writes to: a file or stdout, by its descriptor.
pub trait AsOutput: AsFd {}
impl<T: AsFd> AsOutput for T {}

/// Writes a flush to one destination in pieces, and keeps what is written
/// from piling up in the page cache when the destination is a regular file:
/// each piece's writeback starts once it is written, and the piece two
/// before it is waited for and dropped from the cache (so the disk has two
/// pieces to work on while the next is copied); what earlier flushes left
/// there is dropped at the start. Nothing reads a log back soon, so cached
/// log pages would only push out other data; and cache pages that are
/// reused cost far less than fresh ones (on a VM that hands freed memory
/// back to the host, a fresh page costs about 1 s per GiB).
pub struct WriteThrough {
    fd: RawFd,
    /// Pieces being written back, oldest first, waiting to be dropped.
    in_flight: VecDeque<Range<i64>>,
    /// Bytes written since the last piece ended.
    unsynced: usize,
}

impl WriteThrough {
    pub fn new(out: &impl AsOutput) -> Self {
        let fd = out.as_fd().as_raw_fd();
        // SAFETY: advice only; the descriptor is open for the call. A pipe
        // or terminal makes it fail, changing nothing.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        WriteThrough {
            fd,
            in_flight: VecDeque::new(),
            unsynced: 0,
        }
    }

    /// Writes all of `bytes` to `out`, the descriptor given to `new`.
    pub fn write(&mut self, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
        for part in bytes.chunks(WRITE_PIECE) {
            out.write_all(part)?;
            self.unsynced += part.len();
            if self.unsynced >= WRITE_PIECE {
                self.end_piece();
            }
        }
        Ok(())
    }

    /// Starts the writeback of the last piece, once `out` is flushed.
    pub fn finish(mut self) {
        if self.unsynced > 0 {
            self.end_piece();
        }
    }

    fn end_piece(&mut self) {
        // SAFETY: lseek only reads the descriptor's offset; it fails on a
        // pipe or terminal, which have no cache to keep small.
        let end = unsafe { libc::lseek(self.fd, 0, libc::SEEK_CUR) };
        let start = self
            .in_flight
            .back()
            .map_or(end - self.unsynced as i64, |p| p.end);
        self.unsynced = 0;
        if end < 0 || start < 0 {
            return;
        }
        start_writeback(self.fd, &(start..end));
        self.in_flight.push_back(start..end);
        if self.in_flight.len() > PIECES_IN_FLIGHT
            && let Some(oldest) = self.in_flight.pop_front()
        {
            finish_writeback_and_drop(self.fd, &oldest);
        }
    }
}

fn start_writeback(fd: RawFd, range: &Range<i64>) {
    // SAFETY: asks the kernel to start writing a range of an open file; a
    // file system that cannot just fails the call (advice only).
    unsafe {
        libc::sync_file_range(
            fd,
            range.start,
            range.end - range.start,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

fn finish_writeback_and_drop(fd: RawFd, range: &Range<i64>) {
    let len = range.end - range.start;
    let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: as above; then advice to drop the now clean pages.
    unsafe {
        libc::sync_file_range(fd, range.start, len, wait);
        libc::posix_fadvise(fd, range.start, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// What makes a file the same file whatever its name (SPEC §9: each file
/// is read once, a directory cycle is never entered): device and inode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId((u64, u64));

/// The identity of the file `meta` (from `path`) describes.
pub fn file_id(_path: &std::path::Path, meta: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId((meta.dev(), meta.ino())))
}

/// Opens a file to read without waiting for a writer: a FIFO put where a
/// log file was listed would otherwise block `open` for ever (SPEC §9: only
/// regular files are read). Fails unless it is a regular file.
pub fn open_regular(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_through_writes_every_piece_in_order() {
        let path =
            std::env::temp_dir().join(format!("rawprox-write-through-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = b"first flush\n".to_vec();
        let big: Vec<u8> = (0..WRITE_PIECE * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let flushes = [vec![&first[..]], vec![&big[..], b"tail\n", &big[..7]]];
        for pieces in &flushes {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .unwrap();
            let mut through = WriteThrough::new(&file);
            for bytes in pieces {
                through.write(&mut file, bytes).unwrap();
            }
            through.finish();
        }
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let want: Vec<u8> = flushes.concat().concat();
        assert!(
            got == want,
            "{} bytes written, {} wanted",
            got.len(),
            want.len()
        );
    }
}
