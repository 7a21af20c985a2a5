//! What the standard library does not offer: raising the open-file limit
//! (SPEC §3) and telling the allocator to give big buffers back. The only
//! `unsafe` in rawprox lives here.

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
