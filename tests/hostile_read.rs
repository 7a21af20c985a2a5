//! Issue 18 on the read side (SPEC §9): hostile and careless inputs for
//! `list`, `follow`, `extract` and `pcap`, run through the real binary on
//! logs written here. Directory link cycles end, each file is read once,
//! an output that is an input is refused untouched, FIFOs and devices are
//! never waited on, vanished files are skipped and counted, memory follows
//! the connections open at once, progress never lands in the output,
//! addresses reach no terminal raw, and the smaller points (no `.ndjson`
//! file, options twice, backwards time, a terminal as pcap output, a huge
//! host name for tshark).
//!
//! Every run has a deadline (`run`), so a hang fails the test instead of
//! stalling the suite.

use crate::read::{Ran, run, run_with, tshark};
use crate::util::*;
use serde_json::Value;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// 2025-10-22T15:32:47Z: the logs here start then.
const T0: u64 = 1_761_147_167_000_000;

/// A log line of connection `id` at `micros`.
fn line(micros: u64, id: &str, body: &str) -> String {
    format!(
        r#"{{"time":"{}","ConnID":"{id}",{body}}}"#,
        line_time(micros)
    )
}

fn open_line(micros: u64, id: &str, client: &str, target: &str, port: u16) -> String {
    line(
        micros,
        id,
        &format!(r#""event":"open","from":"{client}","to":"{target}","listen_port":{port}"#),
    )
}

fn data_line(micros: u64, id: &str, from: &str, to: &str, data: &str) -> String {
    line(
        micros,
        id,
        &format!(r#""data":"{data}","from":"{from}","to":"{to}""#),
    )
}

fn close_line(micros: u64, id: &str, from: &str, to: &str) -> String {
    line(
        micros,
        id,
        &format!(r#""event":"close","from":"{from}","to":"{to}""#),
    )
}

/// One whole connection on listen port 8080 from `t`: open, a request, a
/// reply, the client's close, a millisecond apart.
fn conn(id: &str, t: u64) -> Vec<String> {
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:9000");
    vec![
        open_line(t, id, c, s, 8080),
        data_line(t + 1000, id, c, s, "ping"),
        data_line(t + 2000, id, s, c, "pong!"),
        close_line(t + 3000, id, c, s),
    ]
}

fn write_log(path: &Path, lines: &[String]) {
    fs::write(path, lines.join("\n") + "\n").expect("write a log");
}

/// The rows of a `list --json` run.
fn rows(ran: &Ran) -> Vec<Value> {
    ran.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["ConnID"].as_str().expect("a ConnID"))
        .collect()
}

pub(crate) fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(name.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// An `Error:` exit: status 1, no output, one stderr line.
fn assert_refused(ran: &Ran, want: &str, what: &str) {
    assert_eq!(ran.status.code(), Some(1), "{what}: {}", ran.stderr);
    assert!(ran.stdout.is_empty(), "{what}: no output");
    assert_eq!(ran.stderr.lines().count(), 1, "{what}: {}", ran.stderr);
    assert!(
        ran.stderr.starts_with("Error: ") && ran.stderr.contains(want),
        "{what}: {}",
        ran.stderr
    );
}

#[test]
fn link_cycles_end_and_every_file_is_read_once() {
    let tmp = TempDir::new("cycles");
    // Two links back to the directory they are in, one file deeper.
    let s6 = tmp.join("s6");
    fs::create_dir_all(s6.join("sub")).unwrap();
    write_log(
        &s6.join("a.ndjson"),
        &[conn("A0000001", T0), conn("A0000002", T0 + 10_000)].concat(),
    );
    write_log(&s6.join("sub/b.ndjson"), &conn("B0000001", T0 + 20_000));
    symlink("../s6", s6.join("x")).unwrap();
    symlink("../s6", s6.join("y")).unwrap();
    let s6 = path_str(&s6);
    let ran = run(&["list", "--json", &s6]).ok("list of a directory with link cycles");
    assert_eq!(ids(&rows(&ran)), ["A0000001", "A0000002", "B0000001"]);
    assert_eq!(
        ran.stderr,
        format!(
            "Skipped 2 files; the first is {s6}/x: a link back to {s6} (a directory cycle): not entered\n"
        )
    );
    let followed = run(&["follow", &s6]).ok("follow").text();
    for id in ["A0000001", "A0000002", "B0000001"] {
        let headers = followed.matches(&format!("== {id} port 8080")).count();
        assert_eq!(headers, 1, "{id} once: {followed}");
    }

    // `cur -> .`, and `latest.ndjson` naming the newest file: a connection
    // that opens in the first file and ends in the second is one row, read
    // in time order (the file's own name, not the link's, sets its place).
    let l = tmp.join("L");
    fs::create_dir(&l).unwrap();
    let spanning = conn("C0000001", T0 + 10_000);
    write_log(
        &l.join("rawprox_2025-10-22-15.ndjson"),
        &[conn("C0000000", T0), spanning[..2].to_vec()].concat(),
    );
    write_log(
        &l.join("rawprox_2025-10-22-16.ndjson"),
        &[spanning[2..].to_vec(), conn("C0000002", T0 + 20_000)].concat(),
    );
    symlink(".", l.join("cur")).unwrap();
    symlink("rawprox_2025-10-22-16.ndjson", l.join("latest.ndjson")).unwrap();
    let l = path_str(&l);
    let ran = run(&["list", "--json", &l]).ok("list of a directory with latest.ndjson");
    let listed = rows(&ran);
    assert_eq!(ids(&listed), ["C0000000", "C0000001", "C0000002"]);
    for row in &listed {
        assert_eq!(row["listen_port"], 8080, "{row}");
        assert_eq!(row["bytes_client_to_target"], 4, "{row}");
        assert_eq!(row["bytes_target_to_client"], 5, "{row}");
        assert_eq!(row["closed_by"], "client", "{row}");
    }
    assert_eq!(
        ran.stderr,
        format!(
            "Skipped 1 file; the first is {l}/cur: a link back to {l} (a directory cycle): not entered\n"
        )
    );
    // A file named twice, by its name and by a link, is read once.
    let latest = format!("{l}/latest.ndjson");
    let newest = format!("{l}/rawprox_2025-10-22-16.ndjson");
    let ran = run(&["list", "--json", &latest, &newest]).ok("one file named twice");
    assert_eq!(ids(&rows(&ran)), ["C0000001", "C0000002"]);
    let extracted = run(&["extract", "C0000002", "--side", "target", &l, &latest]).ok("extract");
    assert_eq!(extracted.stdout, b"pong!", "each byte once");
}

#[test]
fn an_output_that_is_an_input_is_refused_and_left_untouched() {
    let tmp = TempDir::new("self-output");
    let dir = tmp.join("logs");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("self.ndjson");
    write_log(&file, &conn("S0000001", T0));
    let before = fs::read(&file).unwrap();
    symlink("self.ndjson", dir.join("link.ndjson")).unwrap();
    let (file, link, dir) = (
        path_str(&file),
        path_str(&dir.join("link.ndjson")),
        path_str(&dir),
    );
    let cases: [&[&str]; 7] = [
        &["extract", "S0000001", "-o", &file, &file],
        &["extract", "S0000001", "-o", &link, &file],
        &["extract", "S0000001", "-o", &file, &dir],
        &["pcap", "-o", &file, &file],
        &["pcap", "-o", &link, &file],
        &["pcap", "-o", &file, &dir],
        &["pcap", "-o", &file, "--port", "8080", &link],
    ];
    for args in cases {
        let ran = run(args);
        assert_refused(&ran, "give another -o", &format!("{args:?}"));
        assert_eq!(
            fs::read(&file).unwrap(),
            before,
            "{args:?}: the capture is untouched"
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{args:?}: the link is still a link"
        );
    }
    // Another file is written, of course.
    let out = path_str(&tmp.join("client.bin"));
    run(&["extract", "S0000001", "-o", &out, &dir]).ok("extract to another file");
    assert_eq!(fs::read(&out).unwrap(), b"ping");
}

#[test]
fn fifos_devices_and_dangling_links_in_a_directory_are_skipped_not_waited_on() {
    let tmp = TempDir::new("fifo");
    let dir = tmp.join("logs");
    fs::create_dir(&dir).unwrap();
    write_log(&dir.join("a.ndjson"), &conn("F0000001", T0));
    // Nothing ever writes to the FIFO: opening it to read would wait for ever.
    mkfifo(&dir.join("x.ndjson"));
    symlink("/dev/zero", dir.join("z.ndjson")).unwrap();
    symlink("gone.ndjson", dir.join("d.ndjson")).unwrap();
    let dir = path_str(&dir);
    let skipped = format!("Skipped 3 files; the first is {dir}/d.ndjson: cannot open: ");
    let ran = run(&["list", "--json", &dir]).ok("list");
    assert_eq!(ids(&rows(&ran)), ["F0000001"]);
    assert!(ran.stderr.starts_with(&skipped), "{}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    let ran = run(&["follow", &dir]).ok("follow");
    assert!(ran.text().contains("== F0000001 port 8080"));
    assert!(ran.stderr.starts_with(&skipped), "{}", ran.stderr);
    let ran = run(&["extract", "F0000001", &dir]).ok("extract");
    assert_eq!(ran.stdout, b"ping");
    let out = path_str(&tmp.join("out.pcapng"));
    let ran = run(&["pcap", "-o", &out, &dir]).ok("pcap");
    assert!(ran.stderr.starts_with(&skipped), "{}", ran.stderr);
    // Each of them named on the command line is an error, at once.
    for (name, want) in [
        ("z.ndjson", "is not a regular file"),
        ("d.ndjson", "cannot open"),
    ] {
        let ran = run(&["list", &format!("{dir}/{name}")]);
        assert_refused(&ran, want, name);
    }
}

#[test]
fn a_directory_holding_no_ndjson_file_says_so() {
    let tmp = TempDir::new("no-ndjson");
    let dir = tmp.join("logs");
    fs::create_dir(&dir).unwrap();
    write_log(&dir.join("cap-15.log"), &conn("N0000001", T0));
    fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    let dir = path_str(&dir);
    let why = format!(
        "Skipped 1 file; the first is {dir}: holds no .ndjson file (2 other files): only *.ndjson files are read"
    );
    let ran = run(&["list", &dir]).ok("list");
    assert_eq!(ran.text().lines().count(), 1, "the header only");
    assert_eq!(ran.stderr, format!("{why}\n"));
    // A ConnID then is not blamed alone.
    for args in [
        &["extract", "N0000001", &dir][..],
        &["follow", "N0000001", &dir],
    ] {
        let ran = run(args);
        assert_refused(
            &ran,
            "no connection N0000001 in the input",
            &format!("{args:?}"),
        );
        assert!(ran.stderr.contains(&why), "{args:?}: {}", ran.stderr);
    }
}

#[test]
fn an_option_given_twice_takes_its_last_value() {
    let tmp = TempDir::new("twice");
    let file = tmp.join("a.ndjson");
    let mut lines = conn("P0000001", T0);
    lines.push(open_line(
        T0 + 5000,
        "P0000002",
        "127.0.0.1:1",
        "127.0.0.1:2",
        9090,
    ));
    write_log(&file, &lines);
    let file = path_str(&file);
    let ran = run(&["list", "--json", "--port", "1", "--port", "9090", &file]).ok("list");
    assert_eq!(ids(&rows(&ran)), ["P0000002"]);
    let ran = run(&["list", "--json", "--port=9090", "--port", "8080", &file]).ok("list");
    assert_eq!(ids(&rows(&ran)), ["P0000001"]);
    let args = [
        "extract", "P0000001", "--side", "client", "--side", "target", &file,
    ];
    assert_eq!(run(&args).ok("extract").stdout, b"pong!");
    let (a, b) = (path_str(&tmp.join("a.bin")), path_str(&tmp.join("b.bin")));
    run(&["extract", "P0000001", "-o", &a, "-o", &b, &file]).ok("extract -o twice");
    assert_eq!(fs::read(&b).unwrap(), b"ping");
    assert!(!Path::new(&a).exists(), "the first -o is not created");
}

#[test]
fn backwards_timestamps_give_a_duration_of_zero() {
    let tmp = TempDir::new("backwards");
    let file = tmp.join("a.ndjson");
    // A clock stepped back: the data and the close are logged "before" the open.
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:9000");
    write_log(
        &file,
        &[
            open_line(T0 + 10_000_000, "B0000001", c, s, 8080),
            data_line(T0 + 5_000_000, "B0000001", c, s, "ping"),
            close_line(T0, "B0000001", c, s),
        ],
    );
    let file = path_str(&file);
    let ran = run(&["list", "--json", &file]).ok("list --json");
    assert!(
        ran.text().contains(r#""duration_seconds":0.000000,"#),
        "{}",
        ran.text()
    );
    assert_eq!(rows(&ran)[0]["duration_seconds"].as_f64(), Some(0.0));
    let table = run(&["list", &file]).ok("list").text();
    let row = table.lines().nth(1).expect("a row");
    let seconds = row.split_whitespace().nth(5);
    assert_eq!(seconds, Some("0.000"), "{row}");
}

#[test]
fn addresses_with_terminal_escapes_are_shown_not_obeyed() {
    let tmp = TempDir::new("escapes");
    let dir = tmp.join("logs");
    fs::create_dir(&dir).unwrap();
    // In the log, JSON escapes: ESC [31m, an OSC title ending in BEL, a newline.
    let (c, s) = (r"\u001b[31mEVIL:1", r"\u001b]0;pwned\u0007\nhost:2");
    write_log(
        &dir.join("a.ndjson"),
        &[
            open_line(T0, "E0000001", c, s, 8080),
            data_line(T0 + 1000, "E0000001", c, s, "hi"),
            close_line(T0 + 2000, "E0000001", c, s),
        ],
    );
    // A file name a terminal would obey too.
    symlink("nowhere", dir.join("\x1b[2J.ndjson")).unwrap();
    let dir = path_str(&dir);
    let raw = |bytes: &[u8]| bytes.iter().any(|&b| b == 0x1b || b == 0x07);
    let shown_client = r"\x1b[31mEVIL:1";
    let shown_target = r"\x1b]0;pwned\x07\nhost:2";

    let ran = run(&["list", &dir]).ok("list");
    assert!(!raw(&ran.stdout), "{:?}", ran.text());
    assert!(!raw(ran.stderr.as_bytes()), "{:?}", ran.stderr);
    let table = ran.text();
    assert_eq!(table.lines().count(), 2, "one row, one line: {table:?}");
    assert!(
        table.contains(shown_client) && table.contains(shown_target),
        "{table:?}"
    );
    assert!(ran.stderr.contains(r"\x1b[2J.ndjson"), "{:?}", ran.stderr);

    let ran = run(&["follow", &dir]).ok("follow");
    assert!(!raw(&ran.stdout), "{:?}", ran.text());
    assert!(
        ran.text().starts_with(&format!(
            "== E0000001 port 8080: {shown_client} -> {shown_target}, opened "
        )),
        "{:?}",
        ran.text()
    );
    // On a terminal only rawprox's own colours are escapes.
    let (_, shown, _) = run_on_pty(&["follow", &dir], Pty::Stdout);
    let shown = String::from_utf8_lossy(&shown);
    assert!(shown.contains("\x1b[1m== E0000001"), "{shown:?}");
    assert!(
        !shown.contains("\x1b[31mEVIL") && !shown.contains('\x07'),
        "{shown:?}"
    );
    let (_, shown, _) = run_on_pty(&["list", &dir], Pty::Stdout);
    assert!(!raw(&shown), "{:?}", String::from_utf8_lossy(&shown));

    // --json stays exact JSON.
    let row = &rows(&run(&["list", "--json", &dir]).ok("list --json"))[0];
    assert_eq!(row["client"], "\x1b[31mEVIL:1");
    assert_eq!(row["target"], "\x1b]0;pwned\x07\nhost:2");
}

#[test]
fn pcap_of_a_huge_host_name_is_a_file_tshark_reads() {
    let tmp = TempDir::new("huge-name");
    let file = tmp.join("a.ndjson");
    let huge = format!("{}:80", "a".repeat(70_000));
    let c = "127.0.0.1:40000";
    write_log(
        &file,
        &[
            open_line(T0, "H0000001", c, &huge, 8080),
            data_line(T0 + 1000, "H0000001", c, &huge, "GET"),
            close_line(T0 + 2000, "H0000001", c, &huge),
            // A NUL would end the name early in the file: it is cut there.
            open_line(T0 + 3000, "H0000002", c, r"b\u0000c:80", 8080),
            data_line(T0 + 4000, "H0000002", c, r"b\u0000c:80", "GET"),
        ],
    );
    let out = path_str(&tmp.join("a.pcapng"));
    run(&["pcap", "-o", &out, &path_str(&file)]).ok("pcap");
    let read = Command::new("tshark")
        .args(["-r", &out])
        .stdin(Stdio::null())
        .output()
        .expect("tshark (apt-get install tshark)");
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(
        read.status.success(),
        "tshark -r: {}\n{stderr}",
        read.status
    );
    assert!(
        !stderr.contains("damaged") && !stderr.contains("corrupt"),
        "{stderr}"
    );
    let hosts = tshark(&["-r", &out, "-q", "-z", "hosts"]);
    let names: Vec<&str> = hosts
        .lines()
        .filter_map(|l| l.strip_prefix("198.18.0."))
        .filter_map(|l| l.split_once('\t'))
        .map(|(_, name)| name)
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.len() >= 32 && n.bytes().all(|b| b == b'a')),
        "the huge name, cut: {hosts}"
    );
    assert!(names.contains(&"b"), "the name up to its NUL: {hosts}");
    let followed = tshark(&["-r", &out, "-q", "-z", "follow,tcp,ascii,0"]);
    assert!(followed.contains("GET"), "{followed}");
}

// ------------------------------------------------------------ terminals

/// Which of the child's outputs is the pseudo-terminal.
#[derive(Clone, Copy, PartialEq)]
enum Pty {
    /// stdout; stderr is a pipe.
    Stdout,
    /// stderr; stdout is a pipe.
    Stderr,
    /// Both, as in an interactive shell.
    Both,
}

/// Runs `rawprox ARGS` (within a deadline) with `on` a pseudo-terminal;
/// returns its status, what reached the terminal, and what reached the
/// pipe (stdout or stderr, whichever is not the terminal).
fn run_on_pty(args: &[&str], on: Pty) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    let (mut master, slave) = openpty();
    let mut cmd = rawprox_command();
    cmd.args(args).stdin(Stdio::null()).env_remove("NO_COLOR");
    match on {
        Pty::Stdout => cmd
            .stdout(slave.try_clone().unwrap())
            .stderr(Stdio::piped()),
        Pty::Stderr => cmd
            .stdout(Stdio::piped())
            .stderr(slave.try_clone().unwrap()),
        Pty::Both => cmd
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap()),
    };
    let mut child = cmd.spawn().expect("spawn rawprox on a terminal");
    // Reading the master ends (EIO) once no one holds the slave.
    drop(cmd);
    drop(slave);
    let pipe: Option<Box<dyn Read + Send>> = match on {
        Pty::Stdout => child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        Pty::Stderr => child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        Pty::Both => None,
    };
    let piped = thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    });
    let terminal = thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rawprox {args:?} on a terminal did not end");
        }
        thread::sleep(Duration::from_millis(5));
    };
    (
        status,
        terminal.join().expect("terminal reader"),
        piped.join().expect("pipe reader"),
    )
}

#[test]
fn pcap_to_a_terminal_is_refused() {
    let tmp = TempDir::new("pcap-tty");
    let file = tmp.join("a.ndjson");
    write_log(&file, &conn("T0000001", T0));
    let (status, shown, stderr) = run_on_pty(&["pcap", "-o", "-", &path_str(&file)], Pty::Stdout);
    let stderr = String::from_utf8_lossy(&stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(shown.is_empty(), "nothing on the terminal: {shown:?}");
    assert!(
        stderr.starts_with("Error: pcap will not write binary to a terminal")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Into a pipe it is written.
    let ran =
        run_with(&["pcap", "-o", "-", &path_str(&file)], None, &[]).ok("pcap -o - into a pipe");
    assert_eq!(
        &ran.stdout[..4],
        &[0x0A, 0x0D, 0x0D, 0x0A],
        "a pcapng section header"
    );
}

// ------------------------------------------------------------ memory

/// `n` short connections one after another, never two open at once, a
/// millisecond apart: an open and a close each.
fn many_connections(path: &Path, n: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(fs::File::create(path).expect("create the log"));
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:9000");
    for i in 0..n {
        let id = format!("M{i:07}");
        let t = T0 + i * 1000;
        writeln!(out, "{}", open_line(t, &id, c, s, 8080)).unwrap();
        writeln!(out, "{}", close_line(t + 500, &id, c, s)).unwrap();
    }
    out.flush().expect("write the log");
}

/// Runs `rawprox ARGS` to its end with stdout into a pipe; returns its
/// status, stdout, and its peak resident set in KiB. The peak comes from
/// `wait4` in a small python3 parent: a child spawned straight from this
/// test process would count this process's own resident set (Linux records
/// the old memory's peak at `exec`).
fn run_measured(args: &[&str]) -> (ExitStatus, Vec<u8>, u64) {
    const MEASURE: &str = "import os, subprocess, sys\n\
        p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
        _, status, usage = os.wait4(p.pid, 0)\n\
        print(usage.ru_maxrss, file=sys.stderr)\n\
        sys.exit(os.waitstatus_to_exitcode(status) & 255)\n";
    let mut child = Command::new("python3")
        .args(["-c", MEASURE, bin()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3)");
    let mut out = child.stdout.take().expect("stdout pipe");
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut err = child.stderr.take().expect("stderr pipe");
    let errors = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rawprox {args:?} did not end");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let errors = errors.join().expect("stderr reader");
    let peak_kib = errors
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no peak from the measuring parent: {errors}"));
    (status, reader.join().expect("stdout reader"), peak_kib)
}

/// SPEC §9: memory follows the connections open at once, not the log.
/// 200,000 short connections, one at a time; `list` (both forms) and
/// `pcap` stay small and see every one. Then progress (shown on a terminal
/// for a run over a second) never lands in the output.
#[test]
fn many_short_connections_keep_memory_small_and_progress_out_of_the_output() {
    let tmp = TempDir::new("many");
    let file = tmp.join("many.ndjson");
    let n = 200_000u64;
    many_connections(&file, n);
    let file = path_str(&file);
    let limit_kib = 64 * 1024;
    let pcap = path_str(&tmp.join("many.pcapng"));
    for args in [
        &["list", "--json", &file][..],
        &["list", &file],
        &["pcap", "-o", &pcap, &file],
    ] {
        let (status, out, peak_kib) = run_measured(args);
        assert!(status.success(), "{args:?}: {status}");
        eprintln!("{args:?}: peak RSS {peak_kib} KiB over {n} connections");
        assert!(peak_kib < limit_kib, "{args:?}: peak RSS {peak_kib} KiB");
        let text = String::from_utf8(out).expect("UTF-8");
        match args[..2] {
            ["list", "--json"] => {
                let mut rows = text.lines();
                assert_eq!(text.lines().count() as u64, n);
                assert!(rows.next().unwrap().starts_with(r#"{"ConnID":"M0000000","#));
                assert!(rows.last().unwrap().starts_with(r#"{"ConnID":"M0199999","#));
            }
            ["list", _] => assert_eq!(
                text.lines().count() as u64,
                n + 1,
                "a header and a row each"
            ),
            _ => {}
        }
    }

    // Progress goes to a terminal's stderr only, and never when stdout is
    // the same terminal: the output is read back exactly.
    let want = run(&["list", "--json", &file]).ok("list").stdout;
    let (status, _, stdout) = run_on_pty(&["list", "--json", &file], Pty::Stderr);
    assert!(status.success());
    assert_eq!(stdout.len(), want.len(), "stdout holds the rows only");
    assert!(stdout == want, "stdout holds the rows only");
    let (status, shown, _) = run_on_pty(&["list", "--json", &file], Pty::Both);
    assert!(status.success());
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        !shown.contains("MiB (") && !shown.contains("\x1b[K"),
        "no progress among the rows"
    );
    assert_eq!(shown.lines().count() as u64, n);
}
