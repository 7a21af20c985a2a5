//! Log files in `@LOG_DIRECTORY` (SPEC §5): the directory (and its parents)
//! is created, each run is framed by `start-logging` and `stop-logging`,
//! nothing but traffic goes to stdout, files are appended across runs, a
//! format with no specifier is one file, rotation by each line's own time,
//! the other specifiers (`%j`, `%%`), nothing written before the flush
//! interval, the first line written one interval after start-up, lines
//! written while a transfer that never pauses goes on, a directory removed
//! at run time is created again, a write failure ends the run with one
//! `Error:` line and exit 1, and a stdout nobody reads holds up only itself.

use std::fs;
use std::net::Shutdown;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    DEADLINE, Proxy, TempDir, check_line, connect, data_between, day_of_year, dir_files, dir_lines,
    echo_once, echo_roundtrip, echo_server, event, events, free_port, path_str, read_to_end, rule,
    wait_dir_line, wait_listening,
};

/// `(file name, parsed line)` of every line in `dir`.
fn dir_values(dir: &Path) -> Vec<(String, Value)> {
    dir_lines(dir)
        .into_iter()
        .map(|(name, raw)| (name, check_line(&raw)))
        .collect()
}

fn time_of(value: &Value) -> &str {
    value["time"].as_str().unwrap()
}

#[test]
fn directory_is_created_and_each_run_is_framed_by_start_and_stop() {
    let tmp = TempDir::new("dir-created");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    // Relative and nested: the events must carry the directory as given.
    let mut cmd = Proxy::command(["@logs/a/b".to_string(), rule(p, echo.port())]);
    cmd.current_dir(tmp.path());
    let mut proxy = Proxy::spawn(cmd);
    wait_listening(p);
    let dir = tmp.join("logs/a/b");
    assert!(dir.is_dir(), "{} not created at start-up", dir.display());

    let payload = b"to the files, not to stdout";
    let client = echo_once(p, payload).to_string();
    let stdout = proxy.stop();
    assert!(
        stdout.is_empty(),
        "stdout with a log directory: {stdout:#?}"
    );

    let lines = dir_values(&dir);
    for (name, value) in &lines {
        let t = time_of(value);
        let expected = format!(
            "rawprox_{}-{}-{}-{}.ndjson",
            &t[0..4],
            &t[5..7],
            &t[8..10],
            &t[11..13]
        );
        assert_eq!(name, &expected, "file of a line at {t}");
    }
    let (_, first) = lines.first().expect("log lines");
    assert_eq!(event(first), Some("start-logging"), "first line: {first}");
    assert_eq!(first["directory"], "logs/a/b");
    assert_eq!(first["filename_format"], "rawprox_%Y-%m-%d-%H.ndjson");
    let (_, last) = lines.last().unwrap();
    assert_eq!(event(last), Some("stop-logging"), "last line: {last}");
    assert_eq!(last["directory"], "logs/a/b");

    let values: Vec<Value> = lines.into_iter().map(|(_, v)| v).collect();
    assert_eq!(events(&values, "start-logging").len(), 1);
    assert_eq!(events(&values, "stop-logging").len(), 1);
    let opens = events(&values, "open");
    assert_eq!(opens.len(), 1, "one open");
    assert_eq!(opens[0]["from"], client.as_str());
    assert_eq!(events(&values, "close").len(), 1, "one close");
    let target = format!("127.0.0.1:{}", echo.port());
    assert_eq!(data_between(&values, &client, &target), payload);
    assert_eq!(data_between(&values, &target, &client), payload);
}

#[test]
fn runs_append_to_one_file_when_the_format_has_no_specifier() {
    let tmp = TempDir::new("append");
    let echo = echo_server("127.0.0.1");
    let dir = tmp.join("logs");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("capture.ndjson"), "pre-existing line\n").unwrap();
    let dir_arg = format!("@{}", path_str(&dir));

    let mut clients = Vec::new();
    for run in 0..2 {
        let p = free_port();
        let mut proxy = Proxy::start([
            "--filename-format",
            "capture.ndjson",
            &dir_arg,
            &rule(p, echo.port()),
        ]);
        wait_listening(p);
        clients.push(echo_once(p, format!("run {run}").as_bytes()).to_string());
        proxy.stop();
    }

    let files = dir_files(&dir).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["capture.ndjson"], "one file, named by the format");
    let text = &files[0].1;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("pre-existing line"), "file truncated");
    let values: Vec<Value> = lines.map(check_line).collect();
    let kinds: Vec<&str> = values.iter().filter_map(|v| event(v)).collect();
    assert_eq!(
        kinds,
        [
            "start-logging",
            "open",
            "close",
            "stop-logging",
            "start-logging",
            "open",
            "close",
            "stop-logging"
        ],
        "both runs, each framed, in order"
    );
    let opens = events(&values, "open");
    assert_eq!(opens[0]["from"], clients[0].as_str());
    assert_eq!(opens[1]["from"], clients[1].as_str());
    for v in events(&values, "start-logging") {
        assert_eq!(v["filename_format"], "capture.ndjson");
        assert_eq!(v["directory"], path_str(&dir).as_str());
    }
}

#[test]
fn files_rotate_by_each_lines_own_time() {
    let tmp = TempDir::new("rotate");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let mut proxy = Proxy::start([
        "--flush-millis",
        "3000",
        "--filename-format",
        "rawprox_%Y%m%d-%H%M%S.ndjson",
        &format!("@{}", path_str(&dir)),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);

    // Traffic spread over more than two seconds (paced, not synchronised on).
    let mut stream = connect(p);
    let client = stream.local_addr().unwrap().to_string();
    let begin = Instant::now();
    let mut sent = Vec::new();
    let mut i = 0;
    while begin.elapsed() < Duration::from_millis(2500) {
        let tick = format!("tick {i}\n");
        echo_roundtrip(&mut stream, tick.as_bytes());
        sent.extend_from_slice(tick.as_bytes());
        i += 1;
        thread::sleep(Duration::from_millis(200));
    }
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());
    proxy.stop();

    let lines = dir_values(&dir);
    let mut names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    assert!(
        names.len() >= 3,
        "traffic over 2.5 s should span 3+ files: {names:?}"
    );
    for (name, value) in &lines {
        let t = time_of(value);
        let expected = format!(
            "rawprox_{}{}{}-{}{}{}.ndjson",
            &t[0..4],
            &t[5..7],
            &t[8..10],
            &t[11..13],
            &t[14..16],
            &t[17..19]
        );
        assert_eq!(name, &expected, "file of the line at {t}: {value}");
    }
    assert_eq!(event(&lines[0].1), Some("start-logging"));
    assert_eq!(event(&lines[lines.len() - 1].1), Some("stop-logging"));
    let values: Vec<Value> = lines.into_iter().map(|(_, v)| v).collect();
    let target = format!("127.0.0.1:{}", echo.port());
    assert_eq!(
        data_between(&values, &client, &target),
        sent,
        "all ticks logged once"
    );
}

#[test]
fn day_of_year_and_percent_specifiers_in_file_names() {
    let tmp = TempDir::new("specifiers");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let mut proxy = Proxy::start([
        "--filename-format",
        "day%j-%%-%Y.log",
        &format!("@{}", path_str(&dir)),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);
    echo_once(p, b"specifiers");
    proxy.stop();

    let lines = dir_values(&dir);
    assert!(
        lines.len() >= 5,
        "start, open, data, close, stop: {lines:?}"
    );
    for (name, value) in &lines {
        let t = time_of(value);
        let expected = format!("day{:03}-%-{}.log", day_of_year(t), &t[0..4]);
        assert_eq!(name, &expected, "file of the line at {t}");
    }
}

#[test]
fn nothing_is_written_before_the_flush_interval() {
    let tmp = TempDir::new("flush-wait");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let mut proxy = Proxy::start([
        "--flush-millis",
        "10000",
        &format!("@{}", path_str(&dir)),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);
    let client = echo_once(p, b"held back").to_string();

    // Right after the round trip: the traffic lines wait for the next flush.
    for (name, text) in dir_files(&dir).unwrap_or_default() {
        assert!(
            !text.contains("\"ConnID\""),
            "{name} has traffic lines long before the 10 s flush: {text}"
        );
    }

    proxy.stop();
    let values: Vec<Value> = dir_values(&dir).into_iter().map(|(_, v)| v).collect();
    let opens = events(&values, "open");
    assert_eq!(opens.len(), 1, "the open written at shutdown");
    assert_eq!(opens[0]["from"], client.as_str());
    assert!(
        values.iter().any(|v| v.get("data").is_some()),
        "data lines written at shutdown"
    );
}

/// SPEC §5: the run's first line keeps the rule of every line: written at
/// the first flush, one interval after start-up (here 3 s: the file exists
/// by then, and long before two intervals).
#[test]
fn the_first_file_exists_one_interval_after_start_up() {
    let tmp = TempDir::new("first-flush");
    let p = free_port();
    let dir = tmp.join("logs");
    let started = Instant::now();
    let mut proxy = Proxy::start([
        "--flush-millis",
        "3000",
        &format!("@{}", path_str(&dir)),
        &rule(p, 9),
    ]);
    let first = loop {
        let files = dir_files(&dir).unwrap_or_default();
        if files.iter().any(|(_, text)| text.contains("start-logging")) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_millis(5500),
            "no start-logging line in {} after 5.5 s (an interval is 3 s)",
            dir.display()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        first >= Duration::from_millis(2900),
        "written after {first:?}, before the 3 s interval"
    );
    proxy.stop();
}

/// A client that sends as fast as the proxy takes and a target that reads as
/// fast as it can: the proxy's reads never find the socket empty. The flush
/// must still come on time, not when the transfer ends.
#[test]
fn lines_are_written_while_a_transfer_that_never_pauses_goes_on() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = TempDir::new("flush-busy");
    let sink = crate::util::serve("127.0.0.1", |mut s| {
        let mut buf = vec![0u8; 256 * 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let p = free_port();
    let dir = tmp.join("logs");
    let _proxy = Proxy::start([
        "--flush-millis",
        "100",
        &format!("@{}", path_str(&dir)),
        &rule(p, sink.port()),
    ]);
    wait_listening(p);
    let stop = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicBool::new(true));
    let mut client = connect(p);
    let sender = {
        let (stop, sending) = (stop.clone(), sending.clone());
        thread::spawn(move || {
            let chunk = vec![0xFF; 256 * 1024]; // slow to encode: the proxy is the bottleneck
            let until = Instant::now() + 3 * DEADLINE;
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                if client.write_all(&chunk).is_err() {
                    break;
                }
            }
            sending.store(false, Ordering::SeqCst);
        })
    };

    // Only the start of each file is read: the log grows fast.
    let has_data_line = || {
        fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let mut head = Vec::new();
                fs::File::open(entry.path())
                    .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
                    .is_ok()
                    && head.windows(8).any(|w| w == b"\"data\":\"")
            })
    };
    let deadline = Instant::now() + DEADLINE;
    while !has_data_line() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let still_sending = sending.load(Ordering::SeqCst);
    let written = has_data_line();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    assert!(
        written,
        "no data line written within {DEADLINE:?} of a 100 ms flush interval"
    );
    assert!(
        still_sending,
        "the client must still be sending when the first data line is written"
    );
}

#[test]
fn a_removed_directory_is_created_again() {
    let tmp = TempDir::new("recreate");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs/nested");
    let mut proxy = Proxy::start([
        "--flush-millis",
        "100",
        &format!("@{}", path_str(&dir)),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);

    let first = echo_once(p, b"before removal").to_string();
    wait_dir_line(&dir, "the first open", |v| {
        v["event"] == "open" && v["from"] == first.as_str()
    });

    // Remove the whole tree (retrying if a flush recreates part of it meanwhile).
    let deadline = Instant::now() + DEADLINE;
    while let Err(e) = fs::remove_dir_all(tmp.join("logs")) {
        assert!(
            Instant::now() < deadline,
            "cannot remove the log directory: {e}"
        );
    }

    let second = echo_once(p, b"after removal").to_string();
    wait_dir_line(&dir, "the second open", |v| {
        v["event"] == "open" && v["from"] == second.as_str()
    });
    proxy.stop();
    let lines = dir_values(&dir);
    let (_, last) = lines.last().expect("lines after re-creation");
    assert_eq!(event(last), Some("stop-logging"), "last line: {last}");
}

#[test]
fn a_write_failure_is_reported_and_ends_the_run_with_exit_1() {
    let tmp = TempDir::new("write-failure");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let shown = path_str(&dir);
    let mut proxy = Proxy::start([
        "--flush-millis",
        "100",
        &format!("@{shown}"),
        &rule(p, echo.port()),
    ]);
    wait_listening(p);
    let first = echo_once(p, b"before the failure").to_string();
    wait_dir_line(&dir, "the first open", |v| {
        v["event"] == "open" && v["from"] == first.as_str()
    });

    // Running as root, permissions do not stop a write: put a regular file
    // where the directory was, so neither the file nor the directory can be made.
    fs::remove_dir_all(&dir).unwrap();
    fs::write(&dir, b"not a directory").unwrap();
    echo_once(p, b"after the failure");

    let status = proxy.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1), "stderr: {}", proxy.stderr_text());
    let stderr = proxy.stderr_text();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(lines[0].starts_with("Error: "), "{stderr}");
    assert!(lines[0].contains(&shown), "names the destination: {stderr}");
    assert!(proxy.all_lines().is_empty(), "nothing on stdout");
}

/// SPEC §5: destinations are written independently. stdout goes to a reader
/// that stopped (a pipe this test reads only the `mcp-ready` line of, as a
/// paused terminal would be) beside a directory: the directory still gets
/// every line, `list-connections` still answers, and SIGTERM still ends the
/// run, writing the directory whole and giving stdout up, said on stderr.
#[test]
fn a_stdout_nobody_reads_holds_up_only_itself() {
    use crate::mcp::{Http, start_mcp_raw};
    use serde_json::json;

    let tmp = TempDir::new("stalled-stdout");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    let (mut proxy, port, stdout) =
        start_mcp_raw(&["--flush-millis", "200", &rule(p, echo.port())]);
    wait_listening(p);
    let mut http = Http::connect(port);
    http.call("start-logging", json!({"directory": path_str(&dir)}));

    // 4 MiB each way: far more log than the 64 KiB a pipe holds.
    let payload: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let target = format!("127.0.0.1:{}", echo.port());
    let mut clients = Vec::new();
    for data in [&payload[..], b"after the stall"] {
        let client = echo_once(p, data).to_string();
        wait_dir_line(&dir, &format!("the close of {client}"), |v| {
            v["event"] == "close" && v["from"] == client.as_str()
        });
        let values: Vec<Value> = dir_values(&dir).into_iter().map(|(_, v)| v).collect();
        assert_eq!(data_between(&values, &client, &target), data, "client side");
        assert_eq!(data_between(&values, &target, &client), data, "target side");
        clients.push(client);
    }

    let listed = http.rpc(
        "tools/call",
        json!({"name": "list-connections", "arguments": {}}),
    );
    let rows = &listed["result"]["structuredContent"]["connections"];
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{listed}");
    let stalled = "stdout has taken no log lines";
    let stderr = proxy.stderr_text();
    assert_eq!(stderr.matches(stalled).count(), 1, "said once: {stderr}");

    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(2 * DEADLINE);
    let stderr = proxy.stderr_text();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("gave up writing to stdout"),
        "stdout given up: {stderr}"
    );
    let lines = dir_values(&dir);
    let (_, last) = lines.last().expect("lines in the directory");
    assert_eq!(event(last), Some("stop-logging"), "last line: {last}");
    let opens: Vec<&str> = lines
        .iter()
        .filter(|(_, v)| event(v) == Some("open"))
        .map(|(_, v)| v["from"].as_str().unwrap())
        .collect();
    assert_eq!(opens, clients);
    drop(stdout);
}

/// SPEC §5, the other way round: a directory whose log file is a FIFO that
/// nobody opens for reading blocks its writer in `open`, as a hung file
/// system would. stdout still gets every line on schedule, and SIGTERM ends
/// the run, giving the directory up, said on stderr.
#[test]
fn a_directory_that_hangs_holds_up_only_itself() {
    use crate::mcp::{Http, start_mcp};
    use serde_json::json;
    use std::ffi::CString;

    let tmp = TempDir::new("hung-dir");
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let dir = tmp.join("logs");
    fs::create_dir_all(&dir).unwrap();
    let fifo = CString::new(path_str(&dir.join("hung.ndjson"))).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let (mut proxy, port) = start_mcp(&["--flush-millis", "200", &rule(p, echo.port())]);
    wait_listening(p);
    let mut http = Http::connect(port);
    let args = json!({"directory": path_str(&dir), "filename_format": "hung.ndjson"});
    http.call("start-logging", args);

    for data in [&b"first"[..], b"after the stall"] {
        let client = echo_once(p, data).to_string();
        proxy.wait_line(&format!("the close of {client}"), |v| {
            v["event"] == "close" && v["from"] == client.as_str()
        });
    }
    let shown = format!("log directory '{}'", path_str(&dir));
    let stalled = format!("{shown} has taken no log lines");
    let deadline = Instant::now() + DEADLINE;
    while !proxy.stderr_text().contains(&stalled) {
        assert!(Instant::now() < deadline, "{stalled}: not said");
        thread::sleep(Duration::from_millis(50));
    }
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(2 * DEADLINE);
    let stderr = proxy.stderr_text();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr.matches(&stalled).count(), 1, "said once: {stderr}");
    assert!(
        stderr.contains(&format!("gave up writing to {shown}")),
        "the directory given up: {stderr}"
    );
    let lines = proxy.all_lines();
    let last = check_line(lines.last().expect("stdout lines"));
    assert_eq!(event(&last), Some("stop-logging"), "last line: {last}");
}
