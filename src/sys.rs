//! What the standard library does not offer: raising the open-file limit
//! (SPEC §3). The only `unsafe` in rawprox lives here.

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
