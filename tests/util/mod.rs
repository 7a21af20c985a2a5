//! Helpers shared by the black-box tests: free ports, the `Proxy` process
//! guard (stdout lines, stderr, signals, exit with a deadline), target servers
//! and clients on 127.0.0.1/::1, `/proc` probes (listening sockets, RSS, CPU
//! time, open fds), temp directories, a tiny PRNG, and checks of the NDJSON
//! lines of SPEC §4 (field order, time format, the `data` encoding).
//!
//! Every wait here has a deadline and panics with a message saying what did
//! not happen; nothing synchronises on a bare sleep.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod reference;
pub use reference::{encode_data, percent_decode};

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often polling waits look again.
const POLL: Duration = Duration::from_millis(10);

/// The binary under test: cargo's native build, or a cross build named by
/// `RAWPROX_EXE` (`.ci/cross-test` sets it), run through `RAWPROX_RUNNER`
/// (`wine`, `qemu-aarch64`) when that is set.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var("RAWPROX_EXE") {
        // Absolute, as tests run it from other directories too.
        Ok(exe) => path_str(&std::path::absolute(exe).expect("RAWPROX_EXE as an absolute path")),
        Err(_) => env!("CARGO_BIN_EXE_rawprox").to_string(),
    })
}

/// The program that runs a cross build (`wine`, `qemu-aarch64`), if any.
pub fn runner() -> Option<String> {
    std::env::var("RAWPROX_RUNNER")
        .ok()
        .filter(|r| !r.is_empty())
}

/// True when the binary under test is the Windows build (run by wine).
pub fn windows() -> bool {
    runner().is_some_and(|r| r.contains("wine"))
}

/// `rawprox` (through the runner, if any) with no arguments yet.
pub fn rawprox_command() -> Command {
    match runner() {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.arg(bin());
            cmd
        }
        None => Command::new(bin()),
    }
}

/// `LOCAL:127.0.0.1:TARGET`, the usual rule of these tests.
pub fn rule(local_port: u16, target_port: u16) -> String {
    format!("{local_port}:127.0.0.1:{target_port}")
}

// ---------------------------------------------------------------- ports

/// A port that nothing listens on, for the proxy to bind.
///
/// Candidates are bind-probed (0.0.0.0 and ::). They come from below the
/// kernel's ephemeral range, so ports the system hands out for `bind(0)` or
/// `connect` (our targets and clients) never collide with them, and from a
/// process-wide counter, so parallel tests never get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, span) = port_pool();
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (low + (start + n) % span) as u16;
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span);
}

/// `(first port, count)` of the pool `free_port` draws from.
fn port_pool() -> (u32, u32) {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    if ephemeral_low >= 11000 {
        (10000, ephemeral_low - 10000)
    } else {
        (1024, 65535 - 1024)
    }
}

fn port_is_free(port: u16) -> bool {
    if !listening_addrs(port).is_empty() {
        return false;
    }
    if TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_err() {
        return false;
    }
    // The v4 probe is dropped before this one: a dual-stack `::` would clash with it.
    TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok()
}

// ---------------------------------------------------------------- /proc

/// Local addresses of the sockets in LISTEN state on `port`, from
/// `/proc/net/tcp` and `/proc/net/tcp6`. Looking there does not connect, so
/// it creates no log lines.
pub fn listening_addrs(port: u16) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[3] != "0A" {
                continue;
            }
            let Some((ip_hex, port_hex)) = fields[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(port_hex, 16) != Ok(port) {
                continue;
            }
            found.push(proc_ip(ip_hex));
        }
    }
    found
}

/// Decodes the address column of /proc/net/tcp{,6}: 32-bit words printed as
/// host-order hex, each holding four bytes of the address in network order.
fn proc_ip(hex: &str) -> IpAddr {
    let mut bytes = Vec::new();
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(&hex[i..i + 8], 16).expect("hex word in /proc/net/tcp");
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap()),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap()),
        n => panic!("address of {n} bytes in /proc/net/tcp"),
    }
}

/// Waits until something listens on `port` (any address).
pub fn wait_listening(port: u16) -> Vec<IpAddr> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let addrs = listening_addrs(port);
        if !addrs.is_empty() {
            return addrs;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {DEADLINE:?}"
        );
        thread::sleep(POLL);
    }
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value")
}

/// User plus system CPU time of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK)");
    ticks as u64
}

/// Number of open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// The descriptor number the next `open`/`accept`/`socket` of `pid` would get.
pub fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..)
        .find(|fd| !used.contains(fd))
        .expect("a free descriptor number")
}

/// Sets the open-file limit (soft and hard) of the running process `pid`.
pub fn set_fd_limit(pid: u32, limit: u64) {
    let new = libc::rlimit {
        rlim_cur: limit as _,
        rlim_max: limit as _,
    };
    // SAFETY: `new` is a valid rlimit; a null old-limit pointer is allowed.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(
        rc,
        0,
        "prlimit({pid}, NOFILE, {limit}): {}",
        std::io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------- temp dirs

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "rawprox-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Lossless `&Path` to `String` for command lines (temp paths are UTF-8).
pub fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

// ---------------------------------------------------------------- PRNG

/// xorshift64*: deterministic test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Lower-case letters only: data that logs at one byte per byte.
    pub fn letters(&mut self, len: usize) -> Vec<u8> {
        self.bytes(len).into_iter().map(|b| b'a' + b % 26).collect()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

// ---------------------------------------------------------------- the proxy

/// A running rawprox. Its stdout is read line by line by a thread (unless the
/// test takes the raw pipe), its stderr is captured whole. Dropping the guard
/// kills the process if it has not exited, so no test leaks one.
pub struct Proxy {
    child: Child,
    lines: Option<Receiver<String>>,
    seen: Vec<String>,
    cursor: usize,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// What a run that ends by itself printed.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout_lines: Vec<String>,
    pub stderr: String,
}

impl Proxy {
    /// `rawprox ARGS` with stdin closed, not started yet.
    pub fn command<I, S>(args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = rawprox_command();
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// Starts `rawprox ARGS`, collecting stdout lines.
    pub fn start<I, S>(args: I) -> Proxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Proxy::spawn(Proxy::command(args))
    }

    pub fn spawn(cmd: Command) -> Proxy {
        Proxy::spawn_inner(cmd, true).0
    }

    /// Starts `cmd` and hands the test its raw stdout pipe.
    pub fn spawn_raw_stdout(cmd: Command) -> (Proxy, ChildStdout) {
        let (proxy, stdout) = Proxy::spawn_inner(cmd, false);
        (proxy, stdout.expect("stdout pipe"))
    }

    fn spawn_inner(mut cmd: Command, collect_stdout: bool) -> (Proxy, Option<ChildStdout>) {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rawprox");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });

        let stdout = child.stdout.take().expect("stdout pipe");
        let (lines, stdout) = if collect_stdout {
            (Some(collect_lines(stdout)), None)
        } else {
            (None, Some(stdout))
        };
        let proxy = Proxy {
            child,
            lines,
            seen: Vec::new(),
            cursor: 0,
            stderr,
            stderr_reader: Some(stderr_reader),
            status: None,
        };
        (proxy, stdout)
    }

    /// Runs `rawprox ARGS` to its end (it must end by itself within the deadline).
    pub fn run<I, S>(args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut proxy = Proxy::start(args);
        let status = proxy.wait_exit(DEADLINE);
        let stdout_lines = proxy.all_lines();
        Outcome {
            status,
            stdout_lines,
            stderr: proxy.stderr_text(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line, or `None` when stdout ended or `deadline` passed.
    pub fn next_line_by(&mut self, deadline: Instant) -> Option<String> {
        if self.cursor < self.seen.len() {
            self.cursor += 1;
            return Some(self.seen[self.cursor - 1].clone());
        }
        let rx = self.lines.as_ref().expect("stdout is collected");
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                self.seen.push(line.clone());
                self.cursor += 1;
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads stdout lines until one (parsed and checked) satisfies `pred`.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.next_line_by(deadline) {
                Some(line) => {
                    let value = check_line(&line);
                    if pred(&value) {
                        return value;
                    }
                }
                None => panic!(
                    "no stdout line with {what} within {DEADLINE:?}; lines so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_text()
                ),
            }
        }
    }

    /// Waits for the `open` line of the connection from `client` (its local address).
    pub fn wait_open(&mut self, client: SocketAddr) -> Value {
        let from = client.to_string();
        self.wait_line(&format!("an open from {from}"), |v| {
            v["event"] == "open" && v["from"] == from.as_str()
        })
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our own child,
        // not yet reaped (we reap only in wait_exit), so it cannot be recycled.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// The exit status, if the process has ended by now.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
            if self.status.is_some() {
                self.join_stderr();
            }
        }
        self.status
    }

    /// Waits for the process to end; kills it and fails if it takes longer than `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_stderr();
                panic!(
                    "rawprox did not exit within {within:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            thread::sleep(POLL);
        }
    }

    fn join_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }

    /// Sends `sig`, expects exit code 0, and returns every stdout line of the run.
    pub fn stop_with(&mut self, sig: libc::c_int) -> Vec<String> {
        self.signal(sig);
        let status = self.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after signal {sig}: {status}; stderr:\n{}",
            self.stderr_text()
        );
        self.all_lines()
    }

    /// SIGINT, exit 0, every stdout line of the run.
    pub fn stop(&mut self) -> Vec<String> {
        self.stop_with(libc::SIGINT)
    }

    /// After exit: every stdout line of the run, up to EOF.
    pub fn all_lines(&mut self) -> Vec<String> {
        assert!(self.status.is_some(), "all_lines before the process exited");
        let deadline = Instant::now() + DEADLINE;
        if let Some(rx) = self.lines.as_ref() {
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => self.seen.push(line),
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
                }
            }
        }
        self.cursor = self.seen.len();
        self.seen.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A thread that sends each stdout line (without its `\n`) over a channel.
/// A last line with no `\n` is marked so that checking it fails.
fn collect_lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let complete = buf.last() == Some(&b'\n');
                    if complete {
                        buf.pop();
                    }
                    let mut line = String::from_utf8_lossy(&buf).into_owned();
                    if !complete {
                        line.insert_str(0, "<no final newline> ");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

// ---------------------------------------------------------------- targets

/// A target server in a thread: each accepted connection goes to `handler`
/// in its own thread. Stops accepting on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Serves `handler` on `ip` (`127.0.0.1` or `::1`) at a system-chosen port.
pub fn serve<F>(ip: &str, handler: F) -> Server
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let ip: IpAddr = ip.parse().expect("IP address");
    let listener = TcpListener::bind((ip, 0)).expect("bind target server");
    let addr = listener.local_addr().expect("local_addr");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = conn else { continue };
            let handler = handler.clone();
            thread::spawn(move || handler(stream));
        }
    });
    Server { addr, stop }
}

/// An echo server on `ip`: sends back what it reads, passes the FIN on.
pub fn echo_server(ip: &str) -> Server {
    serve(ip, echo)
}

pub fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------- clients

/// Connects to 127.0.0.1:`port`; reads and writes time out after the deadline.
pub fn connect(port: u16) -> TcpStream {
    connect_to(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

pub fn connect_to(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, DEADLINE)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Writes `data` (from a thread, so large payloads cannot deadlock) and
/// expects exactly `data` back.
pub fn echo_roundtrip(stream: &mut TcpStream, data: &[u8]) {
    let mut writer = stream.try_clone().expect("clone stream");
    let owned = data.to_vec();
    let sender = thread::spawn(move || writer.write_all(&owned));
    let mut got = vec![0u8; data.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("reading the echo of {} bytes: {e}", data.len()));
    sender
        .join()
        .expect("writer thread")
        .expect("write to proxy");
    assert_bytes_eq(&got, data, "echo through the proxy");
}

/// One connection through `port`: echo `data`, send FIN, expect EOF. Returns
/// the client's local address (the `from` of its open line).
pub fn echo_once(port: u16, data: &[u8]) -> SocketAddr {
    let mut stream = connect(port);
    let local = stream.local_addr().unwrap();
    echo_roundtrip(&mut stream, data);
    stream.shutdown(Shutdown::Write).unwrap();
    let rest = read_to_end(&mut stream);
    assert!(
        rest.is_empty(),
        "{} unexpected bytes after the echo",
        rest.len()
    );
    local
}

/// Makes closing `stream` send a reset (SO_LINGER 0) instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
}

/// Reads until EOF; fails if that takes longer than the stream's timeout.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read to EOF: {e}"));
    out
}

/// Waits until the peer closes `stream`: a read returns 0 or an error
/// (reset). Fails if data arrives or the deadline passes.
pub fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: got {n} bytes instead of a close"),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("{what}: connection not closed within {DEADLINE:?}")
        }
        Err(_) => {} // reset: closed too
    }
}

pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {}; first difference at byte {first}",
            got.len(),
            want.len()
        );
    }
}

// ---------------------------------------------------------------- log lines

const OPEN_KEYS: [&str; 6] = ["time", "ConnID", "event", "from", "to", "listen_port"];
const CLOSE_KEYS: [&str; 5] = ["time", "ConnID", "event", "from", "to"];
const DATA_KEYS: [&str; 5] = ["time", "ConnID", "data", "from", "to"];
const START_KEYS: [&str; 4] = ["time", "event", "directory", "filename_format"];
const START_STDOUT_KEYS: [&str; 3] = ["time", "event", "directory"];
const STOP_KEYS: [&str; 3] = ["time", "event", "directory"];
const MCP_READY_KEYS: [&str; 3] = ["time", "event", "endpoint"];

/// Checks one raw log line against SPEC §4 and returns it parsed: compact
/// ASCII JSON, fields in the fixed order for its kind, the time format, the
/// ConnID alphabet, only the escapes the `data` encoding allows (never `\u`).
pub fn check_line(raw: &str) -> Value {
    assert!(raw.is_ascii(), "non-ASCII log line: {raw:?}");
    assert!(
        raw.starts_with("{\"time\":\""),
        "line does not start with the time: {raw}"
    );
    check_escapes(raw);
    let value: Value =
        serde_json::from_str(raw).unwrap_or_else(|e| panic!("line is not JSON ({e}): {raw}"));
    let keys = top_level_keys(raw);
    let time = value["time"]
        .as_str()
        .unwrap_or_else(|| panic!("time not a string: {raw}"));
    assert!(
        is_line_time(time),
        "time {time:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ: {raw}"
    );

    let expected: &[&str] = if let Some(id) = value.get("ConnID") {
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("ConnID not a string: {raw}"));
        assert!(
            id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "ConnID {id:?} is not 8 base-62 digits: {raw}"
        );
        match (value["event"].as_str(), value.get("data")) {
            (Some("open"), None) => {
                assert!(
                    value["listen_port"].is_u64(),
                    "listen_port not a number: {raw}"
                );
                &OPEN_KEYS
            }
            (Some("close"), None) => &CLOSE_KEYS,
            (None, Some(data)) => {
                percent_decode(
                    data.as_str()
                        .unwrap_or_else(|| panic!("data not a string: {raw}")),
                );
                &DATA_KEYS
            }
            _ => panic!("unknown traffic line: {raw}"),
        }
    } else {
        match value["event"].as_str() {
            // SPEC §7: stdout as a destination has a null directory and no format.
            Some("start-logging") if value["directory"].is_null() => &START_STDOUT_KEYS,
            Some("start-logging") => &START_KEYS,
            Some("stop-logging") => &STOP_KEYS,
            Some("mcp-ready") => &MCP_READY_KEYS,
            _ => panic!("unknown line: {raw}"),
        }
    };
    assert_eq!(keys, expected, "fields or their order in: {raw}");
    for key in ["from", "to"] {
        if expected.contains(&key) {
            assert!(value[key].is_string(), "{key} not a string: {raw}");
        }
    }
    value
}

/// Parses and checks every line.
pub fn parse_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| check_line(l)).collect()
}

/// The only escapes a line may hold are `\"`, `\\`, `\t`, `\n`, `\r` (SPEC §4).
fn check_escapes(raw: &str) {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let next = bytes.get(i + 1).copied().unwrap_or(b'?');
            assert!(
                matches!(next, b'"' | b'\\' | b't' | b'n' | b'r'),
                "escape \\{} in: {raw}",
                next as char
            );
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// Keys of a compact, flat JSON object, in the order they appear in the text.
pub fn top_level_keys(raw: &str) -> Vec<String> {
    let b = raw.as_bytes();
    assert_eq!(b.first(), Some(&b'{'), "not an object: {raw}");
    let mut keys = Vec::new();
    let mut i = 1;
    if b.get(i) == Some(&b'}') {
        return keys;
    }
    loop {
        assert_eq!(
            b.get(i),
            Some(&b'"'),
            "expected a key at byte {i} (not compact?): {raw}"
        );
        let end = string_end(b, i);
        keys.push(raw[i + 1..end].to_string());
        i = end + 1;
        assert_eq!(b.get(i), Some(&b':'), "expected ':' at byte {i}: {raw}");
        i += 1;
        match b.get(i) {
            Some(b'"') => i = string_end(b, i) + 1,
            Some(b'{' | b'[') => panic!("nested value in a log line: {raw}"),
            _ => {
                while !matches!(b.get(i), Some(b',' | b'}') | None) {
                    i += 1;
                }
            }
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') if i == b.len() - 1 => return keys,
            _ => panic!("unexpected text at byte {i}: {raw}"),
        }
    }
}

/// Index of the closing quote of the JSON string opening at `start`.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    panic!("unterminated string in {:?}", String::from_utf8_lossy(b));
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`
pub fn is_line_time(t: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00.000000Z";
    t.len() == SHAPE.len()
        && t.bytes().zip(SHAPE).all(|(c, &s)| {
            if s == b'0' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const BASE62_SPACE: u64 = 62u64.pow(8);

pub fn base62_value(id: &str) -> u64 {
    id.bytes().fold(0, |acc, c| {
        let digit = BASE62
            .iter()
            .position(|&d| d == c)
            .unwrap_or_else(|| panic!("{id:?} not base 62"));
        acc * 62 + digit as u64
    })
}

pub fn event(value: &Value) -> Option<&str> {
    value.get("event").and_then(Value::as_str)
}

/// Lines with the given `event`.
pub fn events<'a>(values: &'a [Value], name: &str) -> Vec<&'a Value> {
    values.iter().filter(|v| event(v) == Some(name)).collect()
}

/// Concatenated decoded `data` of the lines sent from `from` to `to`.
pub fn data_between(values: &[Value], from: &str, to: &str) -> Vec<u8> {
    values
        .iter()
        .filter(|v| v.get("data").is_some() && v["from"] == from && v["to"] == to)
        .flat_map(|v| percent_decode(v["data"].as_str().unwrap()))
        .collect()
}

/// The lines of one connection, by ConnID.
pub fn lines_of<'a>(values: &'a [Value], conn_id: &str) -> Vec<&'a Value> {
    values.iter().filter(|v| v["ConnID"] == conn_id).collect()
}

/// Every line of every file in `dir`, files in name order, with the file name.
/// Each file must end with a newline.
pub fn dir_lines(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, text) in dir_files(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} does not end with a newline"
        );
        out.extend(text.lines().map(|l| (name.clone(), l.to_string())));
    }
    out
}

/// `(name, contents)` of the files in `dir`, in name order.
pub fn dir_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().into_string().expect("UTF-8 file name"));
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let text = fs::read_to_string(dir.join(&name))?;
        out.push((name, text));
    }
    Ok(out)
}

/// Polls the files of `dir` (which may be missing for a while) until a
/// complete line satisfies `pred`.
pub fn wait_dir_line(dir: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        for (_, text) in dir_files(dir).unwrap_or_default() {
            // Only whole lines: a flush may be under way.
            for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                let value = check_line(line.trim_end_matches('\n'));
                if pred(&value) {
                    return value;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no line with {what} in {} after {DEADLINE:?}",
            dir.display()
        );
        thread::sleep(POLL);
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Microseconds since the Unix epoch of a line's `time` (already checked by
/// `is_line_time`).
pub fn line_time_micros(t: &str) -> u64 {
    let num = |range: std::ops::Range<usize>| -> i64 { t[range].parse().expect("digits") };
    let days = days_from_civil(num(0..4), num(5..7), num(8..10));
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    secs as u64 * 1_000_000 + num(20..26) as u64
}

/// `2025-10-22T15:32:47.123456Z` for `micros` since the epoch.
pub fn line_time(micros: u64) -> String {
    let secs = (micros / 1_000_000) as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        micros % 1_000_000
    )
}

/// Day of the year (1-366) of a line's `time`.
pub fn day_of_year(t: &str) -> i64 {
    let num = |range: std::ops::Range<usize>| -> i64 { t[range].parse().expect("digits") };
    let year = num(0..4);
    days_from_civil(year, num(5..7), num(8..10)) - days_from_civil(year, 1, 1) + 1
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The helpers above judge the proxy, so they are checked too.
mod self_check {
    use super::*;
    use std::panic::catch_unwind;

    const OPEN: &str = r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","event":"open","from":"127.0.0.1:54321","to":"example.com:80","listen_port":8080}"#;

    #[test]
    fn data_encoding_helpers_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        let parsed: String = serde_json::from_str(&format!("\"{}\"", encode_data(&all))).unwrap();
        assert_eq!(percent_decode(&parsed), all);
        assert_eq!(
            encode_data(b"caf\xC3\xA9 100%\0\"\\\t"),
            r#"caf%C3%A9 100%25%00\"\\\t"#
        );
        assert!(
            catch_unwind(|| percent_decode("%0a")).is_err(),
            "lower-case hex"
        );
        assert!(
            catch_unwind(|| percent_decode("\u{1}")).is_err(),
            "raw control byte"
        );
    }

    #[test]
    fn line_check_rejects_wrong_shapes() {
        check_line(OPEN);
        let swapped = OPEN.replace(
            r#""from":"127.0.0.1:54321","to":"example.com:80""#,
            r#""to":"example.com:80","from":"127.0.0.1:54321""#,
        );
        let short_time = OPEN.replace(".123456Z", ".123Z");
        let local_time = OPEN.replace(".123456Z", ".123456+00:00");
        let long_id = OPEN.replace("0tK3XaB9", "0tK3XaB9a");
        let spaced = OPEN.replace(",\"from\"", ", \"from\"");
        let quoted_port = OPEN.replace(":8080}", ":\"8080\"}");
        let data = |d: &str| {
            format!(
                r#"{{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","data":"{d}","from":"a:1","to":"b:2"}}"#
            )
        };
        for bad in [
            swapped,
            short_time,
            local_time,
            long_id,
            spaced,
            quoted_port,
            data(r"\u0001"),
            data(r"\b"),
        ] {
            assert!(
                catch_unwind(|| check_line(&bad)).is_err(),
                "accepted: {bad}"
            );
        }
        // An escaped backslash followed by `u` is data, not a \u escape.
        check_line(&data(r"\\u0041"));
    }

    #[test]
    fn proc_addresses_times_and_ids_decode() {
        if cfg!(target_endian = "little") {
            assert_eq!(proc_ip("0100007F"), IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert_eq!(
                proc_ip("00000000000000000000000001000000"),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            );
        }
        assert_eq!(
            line_time_micros("1970-01-02T00:00:01.000002Z"),
            86_401_000_002
        );
        assert_eq!(
            line_time_micros("2000-03-01T00:00:00.000000Z"),
            951_868_800_000_000
        );
        assert_eq!(day_of_year("2024-12-31T23:59:59.999999Z"), 366);
        assert_eq!(day_of_year("2025-03-01T00:00:00.000000Z"), 60);
        assert_eq!(base62_value("00000010"), 62);
        assert_eq!(base62_value("zzzzzzzz"), BASE62_SPACE - 1);
    }
}

/// A new pseudo-terminal: its master (the test's side) and its slave (for
/// the child's stdin, stdout or stderr).
pub fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the given ints; the
    // name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned here only.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}
