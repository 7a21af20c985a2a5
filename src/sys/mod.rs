//! What the standard library does not offer, one small interface over each
//! platform (`unix.rs`, `windows.rs`). These are the platform calls that
//! need `unsafe`; the only other `unsafe` is the SIMD code of the line
//! format's encoder and decoder.
//!
//! The interface, the same on each platform:
//!
//! - `Signals`: what shuts the proxy down from outside (SPEC §6): SIGINT,
//!   SIGTERM and SIGHUP on Unix; Ctrl-C, Ctrl-Break, closing the console,
//!   logoff and system shutdown on Windows (SPEC §1). `new` makes the loop
//!   wake (by its `SIGNALS` token or its waker), `pending` and
//!   `pending_on_wake` say whether one came, `shutdown_started` makes the
//!   next one exit at once.
//! - `SHORT_READ_DRAINS`: whether a read shorter than asked may be taken as
//!   "the socket is empty" (see `Turn::short_read_drains`).
//! - `bind_listener`: a listener with a backlog of at least 1024 (SPEC §3);
//!   `[::]` takes IPv4 too, as on Linux.
//! - `raise_open_file_limit`, `return_big_buffers_to_the_system`,
//!   `page_in`: start-up tuning and first-touch paging, best effort.
//! - `WriteThrough` (over an `AsOutput`): how a flush is written to a file
//!   or stdout, keeping log pages out of the cache where the system allows;
//!   `reader_gone`: whether a failed write means stdout's reader left.
//! - `FileId`, `file_id`, `open_regular`: a file's identity whatever its
//!   name, and opening a log to read without waiting for a writer (SPEC §9).
//! - `enable_terminal_escapes`: whether colours and line clearing may be
//!   written to a terminal (Windows' console must be asked first).
//! - `SEPARATORS`, `uncreatable`: which characters of `--filename-format`
//!   make subdirectories, and which names the system cannot create (SPEC §1,
//!   §5); the Windows rules live in `names.rs`, compiled everywhere so they
//!   are tested everywhere.
//!
//! What each platform does instead of a call it lacks, and what it costs,
//! is in docs/PLATFORMS.md.

pub mod names;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// The characters that separate the parts of a `--filename-format`: `/`
/// everywhere, and `\` too on Windows (SPEC §1).
pub const SEPARATORS: &[char] = if cfg!(windows) { &['/', '\\'] } else { &['/'] };

/// Why this system cannot create a file or directory named `part` (one
/// part of a path, no separator), if it cannot. Unix can create any name
/// without `/` or NUL, which `--filename-format` checks on its own.
pub fn uncreatable(part: &str) -> Option<&'static str> {
    if cfg!(windows) {
        names::windows_problem(part)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The platform rule of `Turn::short_read_drains`: only where the
    /// poller reports new bytes after a read that stopped short of
    /// `WouldBlock` (epoll). mio on Windows re-arms a socket only after an
    /// operation returned `WouldBlock`, so a short read taken as "drained"
    /// would leave a socket with bytes and no event to come: a bulk
    /// transfer stalls (seen under wine after about 88 KB).
    #[test]
    fn a_short_read_drains_only_where_edges_come_with_new_bytes() {
        assert_eq!(SHORT_READ_DRAINS, cfg!(unix));
    }

    #[test]
    fn backslash_separates_only_on_windows() {
        assert!(SEPARATORS.contains(&'/'));
        assert_eq!(SEPARATORS.contains(&'\\'), cfg!(windows));
    }

    #[test]
    fn windows_names_are_refused_only_on_windows() {
        assert_eq!(uncreatable("CON").is_some(), cfg!(windows));
        assert_eq!(uncreatable("a:b").is_some(), cfg!(windows));
        assert_eq!(uncreatable("x.log"), None);
    }
}
