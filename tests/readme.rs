//! The README is true (issue 22): its shell examples are run from the
//! README's own text, so it cannot drift from the executable.
//!
//! Every ```sh block of README.md and docs/GUIDE.md says on the line above
//! it whether it runs: `<!-- run: exit N -->` or `<!-- no-run: why -->`. A
//! `run` block is run with `bash -euo pipefail -c` in a fresh directory,
//! with `rawprox.exe` on the PATH (a link to the binary under test), in a
//! process group of its own that is killed at the end, and must exit with
//! N within a minute. The ports the documents use (7777, 8080, 8081, 9000,
//! 9001) are replaced by free ones, so examples never collide with other
//! tests or with anything else on the machine; everything else runs as
//! written. Examples talk to 127.0.0.1 only.
//!
//! Also: the block marked `<!-- help: examples -->` in each document is,
//! line for line, the `Examples:` list of `rawprox.exe --help`, the README
//! shows the help's usage line, and its Guarantees name every fuzz target.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{TempDir, bin, free_port, rawprox_command, runner};

/// How long one example may run.
const EXAMPLE_DEADLINE: Duration = Duration::from_secs(60);

/// The ports the documents' examples use, replaced by free ones.
const DOC_PORTS: [&str; 5] = ["7777", "8080", "8081", "9000", "9001"];

/// One fenced code block of a Markdown file.
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The fence's info string: `sh`, `text`, `json`.
    lang: String,
    /// The HTML comment on the last non-blank line before the fence, if any.
    marker: Option<String>,
    body: String,
}

fn read_doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    let mut last_text_line = "";
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            Some(mut block) => {
                if line.trim_end() == "```" {
                    found.push(block);
                } else {
                    block.body.push_str(line);
                    block.body.push('\n');
                    open = Some(block);
                }
            }
            None => {
                if let Some(lang) = line.strip_prefix("```") {
                    let marker = last_text_line.trim();
                    open = Some(Block {
                        line: i + 1,
                        lang: lang.trim().to_string(),
                        marker: (marker.starts_with("<!--") && marker.ends_with("-->"))
                            .then(|| marker.to_string()),
                        body: String::new(),
                    });
                } else if !line.trim().is_empty() {
                    last_text_line = line;
                }
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    found
}

/// `<!-- run: exit N -->` gives N; `<!-- no-run: why -->` gives None; a
/// shell block with neither is a failure: each says whether it runs.
fn expected_exit(doc: &str, block: &Block) -> Option<i32> {
    let marker = block.marker.as_deref().unwrap_or("");
    let inner = marker
        .strip_prefix("<!--")
        .and_then(|m| m.strip_suffix("-->"))
        .map(str::trim)
        .unwrap_or("");
    if let Some(code) = inner.strip_prefix("run: exit ") {
        return Some(
            code.parse()
                .unwrap_or_else(|_| panic!("{doc}:{}: bad marker {marker:?}", block.line)),
        );
    }
    assert!(
        inner.starts_with("no-run: ") && inner.len() > "no-run: ".len(),
        "{doc}:{}: a ```sh block needs `<!-- run: exit N -->` or `<!-- no-run: why -->` \
         on the line above it, found {marker:?}",
        block.line
    );
    None
}

/// `script` with each of `DOC_PORTS` (as a whole number, not part of a
/// longer one) replaced by its free port.
fn with_ports(script: &str, ports: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let digits = &rest[start..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        let number = &digits[..end];
        match ports.iter().find(|(doc, _)| *doc == number) {
            Some((_, free)) => out.push_str(free),
            None => out.push_str(number),
        }
        rest = &digits[end..];
    }
    out.push_str(rest);
    out
}

/// The processes (not zombies) in process group `pgid`, from /proc.
fn group_members(pgid: u32) -> Vec<String> {
    let mut members = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(format!("{head})"));
        }
    }
    members
}

/// Runs one example; returns a description of what went wrong, if anything.
fn run_example(doc: &str, block: &Block, exit: i32) -> Option<String> {
    let dir = TempDir::new("readme");
    let work = dir.join("work");
    let bin_dir = dir.join("bin");
    fs::create_dir_all(&work).expect("create the example's directory");
    fs::create_dir_all(&bin_dir).expect("create the bin directory");
    let exe = bin_dir.join("rawprox.exe");
    match runner() {
        None => std::os::unix::fs::symlink(bin(), &exe).expect("link rawprox.exe"),
        // A cross build (tests/util's RAWPROX_RUNNER): rawprox.exe runs it.
        Some(runner) => {
            let script = format!("#!/bin/sh\nexec {runner} '{}' \"$@\"\n", bin());
            fs::write(&exe, script).expect("write rawprox.exe");
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            fs::set_permissions(&exe, mode).expect("make rawprox.exe executable");
        }
    }
    let ports: Vec<(&str, String)> = DOC_PORTS
        .iter()
        .map(|p| (*p, free_port().to_string()))
        .collect();
    let script = with_ports(&block.body, &ports);
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = fs::File::create(dir.join("stdout")).expect("create stdout file");
    let stderr = fs::File::create(dir.join("stderr")).expect("create stderr file");
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("run bash");
    let pgid = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > EXAMPLE_DEADLINE {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    // An example stops what it started; give its last kills a moment to land.
    let settled = Instant::now() + Duration::from_secs(5);
    let mut left = group_members(pgid);
    while !left.is_empty() && Instant::now() < settled {
        thread::sleep(Duration::from_millis(50));
        left = group_members(pgid);
    }
    // SAFETY: kill(2) with a negative pid signals only our example's group.
    unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
    let _ = child.wait();

    let output = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let problem = match status {
        None => Some(format!("did not finish within {EXAMPLE_DEADLINE:?}")),
        Some(status) if status.code() != Some(exit) => {
            Some(format!("exited with {status}, documented: exit {exit}"))
        }
        Some(_) if !left.is_empty() => Some(format!("left processes running: {}", left.join(", "))),
        Some(_) => None,
    };
    problem.map(|why| {
        format!(
            "{doc}:{}: the example {why}\n--- script (ports {ports:?})\n{script}--- stdout\n{}--- stderr\n{}",
            block.line,
            output("stdout"),
            output("stderr")
        )
    })
}

/// Every tool the run examples call besides rawprox and bash's builtins.
fn require_tools() {
    for tool in ["python3", "curl", "jq"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "the documents' examples need {tool}: install it (bash .ci/run does)"
        );
    }
}

/// Runs every `run` example of `doc`; fails naming each broken one.
fn check_examples(doc: &str, at_least: usize) {
    require_tools();
    let text = read_doc(doc);
    let mut ran = 0;
    let mut broken = Vec::new();
    for block in blocks(&text).iter().filter(|b| b.lang == "sh") {
        if let Some(exit) = expected_exit(doc, block) {
            ran += 1;
            broken.extend(run_example(doc, block, exit));
        }
    }
    assert!(
        ran >= at_least,
        "{doc}: only {ran} examples are marked `<!-- run: exit N -->`, expected {at_least} or more"
    );
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

#[test]
fn readme_examples_run_as_documented() {
    check_examples("README.md", 4);
}

#[test]
fn guide_examples_run_as_documented() {
    check_examples("docs/GUIDE.md", 2);
}

#[test]
fn a_broken_example_is_caught() {
    let doc = "<!-- run: exit 0 -->\n```sh\nrawprox.exe 8080:127.0.0.1\n```\n\
               <!-- run: exit 1 -->\n```sh\nrawprox.exe --version\n```\n\
               <!-- run: exit 0 -->\n```sh\npython3 -m http.server 9000 --bind 127.0.0.1 >/dev/null 2>&1 &\n```\n\
               <!-- run: exit 0 -->\n```sh\nrawprox.exe --version >/dev/null\n```\n";
    let found = blocks(doc);
    assert_eq!(found.len(), 4);
    let verdicts: Vec<Option<String>> = found
        .iter()
        .map(|b| run_example("test", b, expected_exit("test", b).expect("a run marker")))
        .collect();
    assert!(
        verdicts[0]
            .as_deref()
            .is_some_and(|v| v.contains("exited with")),
        "an error run as if it succeeded: {verdicts:?}"
    );
    assert!(
        verdicts[1]
            .as_deref()
            .is_some_and(|v| v.contains("exited with")),
        "a success documented as an error: {verdicts:?}"
    );
    assert!(
        verdicts[2]
            .as_deref()
            .is_some_and(|v| v.contains("left processes running")),
        "a server left running: {verdicts:?}"
    );
    assert_eq!(verdicts[3], None, "a working example");
}

#[test]
fn ports_are_replaced_as_whole_numbers() {
    let ports = [("8080", "41000".to_string()), ("9000", "41001".to_string())];
    assert_eq!(
        with_ports("a 127.0.0.1:8080:127.0.0.1:9000 18080 80800 8080", &ports),
        "a 127.0.0.1:41000:127.0.0.1:41001 18080 80800 41000"
    );
}

#[test]
#[should_panic(expected = "needs `<!-- run: exit N -->`")]
fn a_shell_block_must_say_whether_it_runs() {
    let doc = "Some text.\n```sh\nrawprox.exe --version\n```\n";
    for block in blocks(doc) {
        expected_exit("test", &block);
    }
}

/// The lines of `rawprox.exe --help`.
fn help_text() -> String {
    let out = rawprox_command()
        .arg("--help")
        .output()
        .expect("run rawprox --help");
    assert!(out.status.success(), "--help exits 0");
    String::from_utf8(out.stdout).expect("help in UTF-8")
}

#[test]
fn help_and_readme_show_the_same_examples_and_usage() {
    let help = help_text();
    let help_examples: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Examples:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.strip_prefix("  ")
                .unwrap_or_else(|| panic!("an example not indented by two spaces: {l:?}"))
        })
        .collect();
    assert!(
        help_examples.len() >= 5,
        "--help shows fewer than 5 examples: {help_examples:?}"
    );
    for doc in ["README.md", "docs/GUIDE.md"] {
        let text = read_doc(doc);
        let marked: Vec<Block> = blocks(&text)
            .into_iter()
            .filter(|b| b.marker.as_deref() == Some("<!-- help: examples -->"))
            .collect();
        assert_eq!(
            marked.len(),
            1,
            "{doc} has one block marked <!-- help: examples -->"
        );
        let doc_examples: Vec<&str> = marked[0].body.lines().collect();
        assert_eq!(
            doc_examples, help_examples,
            "{doc}'s examples (line {}) and --help's differ: keep one list",
            marked[0].line
        );
    }
    let readme = read_doc("README.md");
    let usage = help
        .lines()
        .skip_while(|l| *l != "Usage:")
        .nth(1)
        .expect("a usage line after Usage:")
        .trim();
    assert!(
        readme.lines().any(|l| l == usage),
        "README.md does not show --help's usage line {usage:?}"
    );
}

#[test]
fn readme_guarantees_name_every_fuzz_target() {
    let readme = read_doc("README.md");
    let guarantees = readme
        .split("## Guarantees")
        .nth(1)
        .expect("README.md has a Guarantees section");
    let guarantees = guarantees.split("\n## ").next().unwrap_or(guarantees);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut targets = 0;
    for entry in fs::read_dir(&dir).expect("list fuzz/fuzz_targets") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        targets += 1;
        assert!(
            guarantees.contains(&format!("`{stem}`")),
            "README.md's Guarantees do not name the fuzz target `{stem}`"
        );
    }
    assert!(targets >= 5, "found only {targets} fuzz targets");
}
