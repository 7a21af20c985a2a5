//! What the standard library does not offer: raising the open-file limit
//! (SPEC §3), telling the allocator to give big buffers back, and keeping
//! written log data from filling the page cache. The only `unsafe` in
//! rawprox lives here.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, RawFd};

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

/// Bytes written between two writeback steps of `write_through`.
const WRITE_PIECE: usize = 8 << 20;

/// Writes all of `bytes` to `out`. When `out` is a regular file the bytes go
/// in pieces, and what is written does not pile up in the page cache: each
/// piece's writeback starts once it is written, and the piece before it is
/// waited for and dropped from the cache. Nothing reads a log back soon, so
/// cached log pages would only push out other data; and cache pages that
/// are reused cost far less than fresh ones (on a VM that hands freed memory
/// back to the host, a fresh page costs about 1 s per GiB).
pub fn write_through<W: Write + AsFd>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    let fd = out.as_fd().as_raw_fd();
    let mut previous: Option<Range<i64>> = None;
    for piece in bytes.chunks(WRITE_PIECE) {
        out.write_all(piece)?;
        // SAFETY: lseek only reads the descriptor's offset; it fails on a
        // pipe or terminal, which have no cache to keep small.
        let end = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
        if end < 0 {
            continue;
        }
        let written = previous
            .as_ref()
            .map_or(end - piece.len() as i64, |p| p.end)..end;
        start_writeback(fd, &written);
        if let Some(before) = previous.replace(written) {
            finish_writeback_and_drop(fd, &before);
        }
    }
    Ok(())
}

/// Drops the file's cached pages that are already on disk: the last piece
/// `write_through` wrote there at the previous flush.
pub fn drop_cached(file: &File) {
    // SAFETY: advice only; the descriptor is open for the call.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_through_writes_every_piece_in_order() {
        let path =
            std::env::temp_dir().join(format!("rawprox-write-through-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = b"first flush\n".to_vec();
        let second: Vec<u8> = (0..WRITE_PIECE * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        for bytes in [&first, &second] {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .unwrap();
            drop_cached(&file);
            write_through(&mut file, bytes).unwrap();
        }
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.len(), first.len() + second.len());
        assert!(got[..first.len()] == first[..] && got[first.len()..] == second[..]);
    }
}
