//! The Windows side of `sys`: the console events that stand for SIGINT
//! (SPEC §1, §6), a listener with a real backlog (SPEC §3), and what
//! Windows does instead of the Unix calls it lacks (docs/PLATFORMS.md says
//! what each choice costs). Calls go straight to `windows-sys`, which mio
//! already brings in.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::windows::io::{FromRawSocket, RawSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::net::TcpListener;
use mio::{Registry, Token};
use windows_sys::Win32::Foundation::{ERROR_PIPE_NOT_CONNECTED, FALSE, TRUE};
use windows_sys::Win32::Networking::WinSock as ws;
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    ENABLE_VIRTUAL_TERMINAL_PROCESSING, GetConsoleMode, GetStdHandle, STD_ERROR_HANDLE,
    STD_OUTPUT_HANDLE, SetConsoleCtrlHandler, SetConsoleMode,
};
use windows_sys::core::BOOL;

/// mio on Windows re-arms a socket only after an operation on it returned
/// `WouldBlock`: a read that stops short of it leaves bytes behind with no
/// event to come (a bulk transfer stalls), so every turn reads on to
/// `WouldBlock`.
pub const SHORT_READ_DRAINS: bool = false;

/// A console event came and the loop has not taken it yet.
static PENDING: AtomicBool = AtomicBool::new(false);
/// Shutdown has started: the next event exits at once (SPEC §6).
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// Wakes the loop: console events arrive on a thread of their own.
type Wake = Arc<dyn Fn() + Send + Sync>;
static WAKE: Mutex<Option<Wake>> = Mutex::new(None);

/// Ctrl-C, Ctrl-Break, closing the console window, logoff and system
/// shutdown: each is SIGINT (SPEC §1). Windows calls the handler on a new
/// thread, which wakes the loop through its waker.
pub struct Signals(());

impl Signals {
    /// Installs the console handler; it wakes the loop with `wake`. (The
    /// registry and token are for platforms with a pollable signal source.)
    pub fn new(_registry: &Registry, _token: Token, wake: &Wake) -> io::Result<Self> {
        *WAKE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(wake));
        // SAFETY: plain calls with no pointers; the handler is a function
        // that lives as long as the program. A null handler with FALSE
        // turns Ctrl-C back on for a process started with it ignored (a
        // new process group); failing that changes nothing.
        unsafe {
            SetConsoleCtrlHandler(None, FALSE);
            if SetConsoleCtrlHandler(Some(on_console_event), TRUE) == 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Signals(()))
    }

    /// True if a console event came since the last call.
    pub fn pending(&mut self) -> bool {
        PENDING.swap(false, Ordering::SeqCst)
    }

    /// `pending` for a wake-up by the loop's waker, which is how the
    /// handler wakes the loop.
    pub fn pending_on_wake(&mut self) -> bool {
        self.pending()
    }

    /// Shutdown has started: from now on an event exits at once.
    pub fn shutdown_started(&self) {
        SHUTTING_DOWN.store(true, Ordering::SeqCst);
    }
}

/// What the handler does with one console event.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Ctrl-C, Ctrl-Break: shut down as SIGINT does, and say it was handled.
    ShutDown,
    /// Close, logoff, shutdown: Windows ends the process once the handler
    /// returns (or after its own time limit, a few seconds), so the handler
    /// shuts down as SIGINT does and then never returns; the process ends
    /// when the loop's shutdown is done and `main` returns.
    ShutDownThenHold,
    /// Not ours: the next handler (the default one) takes it.
    Pass,
}

fn action(event: u32) -> Action {
    match event {
        CTRL_C_EVENT | CTRL_BREAK_EVENT => Action::ShutDown,
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => Action::ShutDownThenHold,
        _ => Action::Pass,
    }
}

/// The console handler, called by Windows on a thread of its own.
unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let action = action(event);
    if action == Action::Pass {
        return FALSE;
    }
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        // SPEC §6: a second signal during shutdown exits at once.
        std::process::exit(130);
    }
    PENDING.store(true, Ordering::SeqCst);
    let wake = WAKE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(wake) = wake {
        wake();
    }
    if action == Action::ShutDownThenHold {
        loop {
            std::thread::park();
        }
    }
    TRUE
}

/// True if a write failed because the reader of the pipe went away (SPEC
/// §5: a clean end, not an error). Windows says so with ERROR_NO_DATA or
/// ERROR_BROKEN_PIPE (both `BrokenPipe`), or ERROR_PIPE_NOT_CONNECTED
/// (233: a named pipe whose other end disconnected; wine says it too).
pub fn reader_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
        || error.raw_os_error() == Some(ERROR_PIPE_NOT_CONNECTED as i32)
}

/// Nothing to raise: Windows has no per-process limit on sockets or file
/// handles below its 16 million handles.
pub fn raise_open_file_limit() {}

/// Nothing to do: the Windows heap gives blocks of about 1 MiB and more
/// (the log's chunks) their own mapping, returned when freed.
pub fn return_big_buffers_to_the_system() {}

/// The listen backlog asked for.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket with a backlog of `LISTEN_BACKLOG`. Windows
/// ignores a second `listen` (mio and std listen with 128, or 200 with
/// `SOMAXCONN`), so the socket is made here and listened on once with
/// `SOMAXCONN_HINT(LISTEN_BACKLOG)`, a negative backlog that Windows 8 and
/// later take as is (within 200..65535).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    // Let the standard library start Winsock (WSAStartup), as mio does.
    drop(std::net::UdpSocket::bind("127.0.0.1:0"));
    let family = if addr.is_ipv4() {
        ws::AF_INET
    } else {
        ws::AF_INET6
    };
    // SAFETY: creates a socket; no pointers but the null protocol info.
    let socket = unsafe {
        ws::WSASocketW(
            i32::from(family),
            ws::SOCK_STREAM,
            ws::IPPROTO_TCP,
            std::ptr::null(),
            0,
            ws::WSA_FLAG_OVERLAPPED | ws::WSA_FLAG_NO_HANDLE_INHERIT,
        )
    };
    if socket == ws::INVALID_SOCKET {
        return Err(last_socket_error());
    }
    // SAFETY: `socket` is a new socket that nothing else owns; the listener
    // closes it on every path from here.
    let listener = unsafe { std::net::TcpListener::from_raw_socket(socket as RawSocket) };
    let status = match addr {
        SocketAddr::V4(a) => {
            let raw = ws::SOCKADDR_IN {
                sin_family: ws::AF_INET,
                sin_port: a.port().to_be(),
                sin_addr: ws::IN_ADDR {
                    S_un: ws::IN_ADDR_0 {
                        S_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `raw` is a valid SOCKADDR_IN of the size given.
            unsafe {
                ws::bind(
                    socket,
                    (&raw as *const ws::SOCKADDR_IN).cast(),
                    size_of_val(&raw) as i32,
                )
            }
        }
        SocketAddr::V6(a) => {
            // `[::]` takes IPv4 too, as on Linux (its default): Windows
            // makes IPv6 sockets IPv6-only unless told.
            let off: u32 = 0;
            // SAFETY: `off` is a valid u32 option value of the size given.
            unsafe {
                ws::setsockopt(
                    socket,
                    ws::IPPROTO_IPV6,
                    ws::IPV6_V6ONLY,
                    (&off as *const u32).cast(),
                    size_of_val(&off) as i32,
                )
            };
            let raw = ws::SOCKADDR_IN6 {
                sin6_family: ws::AF_INET6,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: ws::IN6_ADDR {
                    u: ws::IN6_ADDR_0 {
                        Byte: a.ip().octets(),
                    },
                },
                Anonymous: ws::SOCKADDR_IN6_0 {
                    sin6_scope_id: a.scope_id(),
                },
            };
            // SAFETY: `raw` is a valid SOCKADDR_IN6 of the size given.
            unsafe {
                ws::bind(
                    socket,
                    (&raw as *const ws::SOCKADDR_IN6).cast(),
                    size_of_val(&raw) as i32,
                )
            }
        }
    };
    if status != 0 {
        return Err(last_socket_error());
    }
    // SAFETY: listen on the socket the listener owns.
    if unsafe { ws::listen(socket, -LISTEN_BACKLOG) } != 0 {
        return Err(last_socket_error());
    }
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener))
}

fn last_socket_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error.
    io::Error::from_raw_os_error(unsafe { ws::WSAGetLastError() })
}

/// What makes a file the same file whatever its name (SPEC §9: each file
/// is read once, a directory cycle is never entered): its canonical path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId(std::path::PathBuf);

/// The identity of the file `meta` (from `path`) describes.
pub fn file_id(path: &std::path::Path, _meta: &std::fs::Metadata) -> Option<FileId> {
    std::fs::canonicalize(path).ok().map(FileId)
}

/// Opens a file to read, failing unless it is a regular file (SPEC §9).
/// Opening a named pipe does not wait for a writer on Windows.
pub fn open_regular(path: &std::path::Path) -> io::Result<std::fs::File> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Makes the consoles behind stdout and stderr, if they are consoles,
/// interpret ANSI escapes (colours, clearing a line), as Windows 10 and
/// later can once asked; true if they do (or are no consoles).
pub fn enable_terminal_escapes() -> bool {
    [STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
        .into_iter()
        .all(|which| {
            let mut mode = 0;
            // SAFETY: a standard handle, and a valid place for its mode;
            // GetConsoleMode fails on a handle that is no console.
            unsafe {
                let handle = GetStdHandle(which);
                GetConsoleMode(handle, &mut mode) == 0
                    || mode & ENABLE_VIRTUAL_TERMINAL_PROCESSING != 0
                    || SetConsoleMode(handle, mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING) != 0
            }
        })
}

/// Touches one byte in each page of `buf`'s spare capacity, so the first
/// touch of its pages is paid by the caller's thread (the writer), not by
/// the loop that fills `buf` later. Windows has no call that faults pages
/// in without touching them.
pub fn page_in(buf: &mut Vec<u8>) {
    const PAGE: usize = 4096;
    for byte in buf.spare_capacity_mut().iter_mut().step_by(PAGE) {
        byte.write(0);
    }
}

/// What `WriteThrough` writes to: any writer.
pub trait AsOutput {}
impl<T: ?Sized> AsOutput for T {}

/// Writes a flush to one destination as it is. Windows has no advice to
/// keep written pages out of its cache; its cache manager writes them
/// back lazily and hands the pages to whoever needs memory.
pub struct WriteThrough(());

impl WriteThrough {
    pub fn new(_out: &impl AsOutput) -> Self {
        WriteThrough(())
    }

    /// Writes all of `bytes` to `out`.
    pub fn write(&mut self, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
        out.write_all(bytes)
    }

    pub fn finish(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Every console event that stands for SIGINT (SPEC §1) reaches the
    /// loop: the handler says so and wakes it. Wine delivers only Ctrl-C
    /// (from `kill -INT`; the black-box tests cover it), so the handler is
    /// called here with each event.
    #[test]
    fn each_console_event_shuts_down() {
        let (woke, wakes) = mpsc::channel();
        let woke = Mutex::new(woke);
        let wake: Wake = Arc::new(move || {
            let _ = woke.lock().unwrap().send(());
        });
        *WAKE.lock().unwrap() = Some(wake);
        for event in [CTRL_C_EVENT, CTRL_BREAK_EVENT] {
            assert_eq!(action(event), Action::ShutDown);
            // SAFETY: the handler takes any event number.
            assert_eq!(unsafe { on_console_event(event) }, TRUE, "event {event}");
            wakes
                .recv_timeout(Duration::from_secs(10))
                .expect("the loop is woken");
            assert!(
                PENDING.swap(false, Ordering::SeqCst),
                "event {event} is pending"
            );
        }
        for event in [CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT] {
            assert_eq!(action(event), Action::ShutDownThenHold);
            // The handler never returns: the process ends from `main`.
            // SAFETY: as above.
            let held = std::thread::spawn(move || unsafe { on_console_event(event) });
            wakes
                .recv_timeout(Duration::from_secs(10))
                .expect("the loop is woken");
            assert!(
                PENDING.swap(false, Ordering::SeqCst),
                "event {event} is pending"
            );
            assert!(
                !held.is_finished(),
                "the handler for event {event} returned"
            );
        }
        // SAFETY: as above.
        assert_eq!(
            unsafe { on_console_event(99) },
            FALSE,
            "an unknown event is passed on"
        );
        assert!(!PENDING.load(Ordering::SeqCst));
    }

    #[test]
    fn a_pipe_without_reader_is_a_clean_end() {
        for code in [109, 232, 233] {
            assert!(reader_gone(&io::Error::from_raw_os_error(code)), "{code}");
        }
        assert!(!reader_gone(&io::Error::from_raw_os_error(112))); // disk full
    }

    #[test]
    fn listeners_bind_and_report_a_port_in_use() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let err = bind_listener(addr).err().expect("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let v6 = bind_listener("[::1]:0".parse().unwrap()).unwrap();
        std::net::TcpStream::connect(v6.local_addr().unwrap()).unwrap();
        // `[::]` takes IPv4 clients too, as on Linux.
        let any = bind_listener("[::]:0".parse().unwrap()).unwrap();
        let port = any.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn pipes_take_escapes_as_they_are() {
        // Under `cargo test` stdout and stderr are pipes, not consoles.
        assert!(enable_terminal_escapes());
    }
}
