//! The reading subcommands' command line (SPEC §9): `list`, `follow`,
//! `extract`, `pcap` and `replay`, each with its own `--help`. It parses,
//! opens the inputs and the output, and runs the read side's sink; every
//! rejection is one `Error:` line and exit 1 (2 for `replay`, SPEC §10).

use super::{error_line, last_value, one_spelling};
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::log::destination::{Destination, prepare_directory};
use crate::log::filename::{DEFAULT_FILENAME_FORMAT, FilenameFormat};
use crate::proxy::rule::{host_port, parse_target};
use crate::read::Error;
use crate::read::extract::extract;
use crate::read::follow::follow;
use crate::read::input::{Input, expand};
use crate::read::lines::Skipped;
use crate::read::list::{Table, connections};
use crate::read::pcap::write_pcap;
use crate::read::pipeline::Selection;
use crate::read::replay::compare::Verdict;
use crate::read::replay::{Options, Pace, Settings, replay};
use std::ffi::OsString;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

/// The subcommands `main` hands to `main` here.
pub const SUBCOMMANDS: [&str; 5] = ["list", "follow", "extract", "pcap", "replay"];

const INPUT_HELP: &str = "\
INPUT is a log file or a directory (its *.ndjson files in name order,
searched into subdirectories); none, or -, reads standard input as it
arrives:
  rawprox.exe 127.0.0.1:8080:127.0.0.1:9000 | rawprox.exe follow
";

/// Each subcommand's `--help`.
fn help(command: &str) -> String {
    let body = match command {
        "list" => {
            "\
Usage: rawprox.exe list [--port N] [--json] [INPUT...]

One row per connection, in open order: ConnID, listen port, client, target,
open time, duration, bytes client->target, bytes target->client, and which
side closed first (or still open at the end of the log).

  --port N   only the connections of listen port N
  --json     one JSON object per row instead of the aligned table
"
        }
        "follow" => {
            "\
Usage: rawprox.exe follow [CONNID...] [--port N] [INPUT...]

The conversation of each selected connection (all, when none is named), as
Wireshark's \"Follow TCP Stream\" shows it: >> client to target, << target to
client, text as text with control bytes made visible, the rest as a hex dump.
Colours when stdout is a terminal (NO_COLOR turns them off). A CONNID the
input does not hold is an error.

  CONNID     a connection to show (8 letters and digits, from `list`)
  --port N   only the connections of listen port N
"
        }
        "extract" => {
            "\
Usage: rawprox.exe extract CONNID [--side client|target] [-o FILE] [INPUT...]

The exact bytes one side of a connection sent, for other tools to read.

  --side client|target   whose bytes: the client's (default) or the target's
  -o FILE                write them to FILE instead of stdout (- is stdout);
                         FILE may not be one of the inputs
"
        }
        "replay" => {
            "\
Usage: rawprox.exe replay [CONNID...] --to HOST:PORT [--port N]
                          [--pace lockstep|captured|fast] [--speed X]
                          [--concurrency N] [--wait-ms MS] [--json]
                          [--log FILE|@DIR] [INPUT...]

Sends the captured conversations to a server again: for each selected
connection (the CONNIDs named, else those of --port N, else all), connect
to --to, send what the client sent in the captured chunks (and its
half-close), and compare the server's answer byte for byte with the
captured one. One row per connection: bytes sent, bytes received of those
captured, and a verdict: same, differs at byte N (with both sides around
that byte), shorter, longer, refused, reset or timed out waiting.
Exit 0 when every connection is the same, 1 when any is not, 2 on an error.

  CONNID             a connection to replay (from `list`)
  --to HOST:PORT     the server to replay to (required; [v6]:PORT for IPv6)
  --port N           only the connections of listen port N
  --pace lockstep    before each client chunk, wait until the server has
                     answered as much as it had in the capture (default)
  --pace captured    keep the captured timing, divided by --speed
  --pace fast        as fast as the sockets take the bytes
  --speed X          for --pace captured: 10 replays ten times as fast (default 1)
  --concurrency N    at most N connections at once (default 16)
  --wait-ms MS       how long to wait for an answer in lockstep, and for a
                     server that stays open after answering (default 5000)
  --json             one JSON object per row
  --log FILE|@DIR    log the replayed conversations (new ConnIDs) to FILE,
                     or to hourly files in DIR, for list, follow, extract, pcap

INPUT is read more than once, so it must be log files or directories.
"
        }
        _ => {
            "\
Usage: rawprox.exe pcap [--port N] -o FILE.pcapng [INPUT...]

A pcapng file that Wireshark and tshark open as real TCP conversations,
synthesized from the log (the packets were never captured: the handshakes,
ACKs and FINs are made up to match the open, data and close lines).

  -o FILE    the pcapng file to write (required); - writes to stdout, which
             may not be a terminal; FILE may not be one of the inputs
  --port N   only the connections of listen port N
"
        }
    };
    format!("{body}\n{INPUT_HELP}")
}

/// Runs `rawprox.exe SUBCOMMAND ARGS...`; `args` starts with the subcommand.
pub fn main(args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|c| c == "replay") {
        return replay_main(args);
    }
    match run(args) {
        Ok(skipped) => {
            if let Some(message) = skipped.message() {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(Error::Message(m)) => {
            eprintln!("{}", error_line(&m));
            ExitCode::FAILURE
        }
    }
}

/// Options that take a value.
const VALUE_OPTIONS: [&str; 3] = ["--port", "--side", "-o"];

fn run(mut args: Vec<OsString>) -> Result<Skipped, Error> {
    let command = args.remove(0);
    let command = command.to_string_lossy().into_owned();
    let mut args = pico_args::Arguments::from_vec(one_spelling(args, &VALUE_OPTIONS));
    if args.contains(["-h", "--help"]) {
        print!("{}", help(&command));
        return Ok(Skipped::default());
    }
    let message = Error::Message;
    let port: Option<u16> = match command.as_str() {
        "list" | "follow" | "pcap" => {
            last_value(&mut args, "--port", |text| match text.parse::<u16>() {
                Ok(p @ 1..) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
                _ => Err(format!("'{text}' is not a port number (1-65535)")),
            })
            .map_err(message)?
        }
        _ => None,
    };
    let json = command == "list" && args.contains("--json");
    let side = match command.as_str() {
        "extract" => last_value(&mut args, "--side", |text| {
            Side::parse(text).ok_or(format!("'{text}' is not client or target"))
        })
        .map_err(message)?
        .unwrap_or(Side::Client),
        _ => Side::Client,
    };
    let output: Option<String> = match command.as_str() {
        "extract" | "pcap" => {
            last_value(&mut args, "-o", |text| Ok(text.to_owned())).map_err(message)?
        }
        _ => None,
    };
    let free = free_arguments(args, &command)?;
    match command.as_str() {
        "list" => {
            let inputs = open_inputs(&free)?;
            let mut out = BufWriter::new(io::stdout().lock());
            let skipped = if json {
                connections(&inputs, port, |row| {
                    writeln!(out, "{}", row.to_json()).map_err(Error::output)?;
                    Ok(ControlFlow::Continue(()))
                })?
            } else {
                let mut table = Table::new(&mut out);
                let skipped = connections(&inputs, port, |row| {
                    table.push(&row).map_err(Error::output)?;
                    Ok(ControlFlow::Continue(()))
                })?;
                table.finish().map_err(Error::output)?;
                skipped
            };
            out.flush().map_err(Error::output)?;
            Ok(skipped)
        }
        "follow" => {
            // Arguments that are ConnIDs (and not paths that exist) select
            // connections; the others are inputs.
            let (ids, inputs): (Vec<String>, Vec<String>) = free.into_iter().partition(|a| {
                ConnId::parse(a.as_bytes()).is_some() && !std::path::Path::new(a).exists()
            });
            let select = Selection {
                ids: ids
                    .iter()
                    .filter_map(|a| ConnId::parse(a.as_bytes()))
                    .collect(),
                port,
                ..Selection::default()
            };
            let inputs = open_inputs(&inputs)?;
            let colour = io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && crate::sys::enable_terminal_escapes();
            let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
            follow(&inputs, &select, colour, &mut out)
        }
        "extract" => {
            let Some(first) = free.first() else {
                return Err(Error::Message(
                    "extract needs a CONNID (rawprox.exe list shows them)".into(),
                ));
            };
            let id = ConnId::parse(first.as_bytes()).ok_or_else(|| {
                Error::Message(format!("'{first}' is not a ConnID (8 letters and digits)"))
            })?;
            let inputs = open_inputs(&free[1..])?;
            let (_, skipped) = match output.as_deref() {
                None | Some("-") => {
                    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
                    let done = extract(&inputs, id, side, &mut out)?;
                    out.flush().map_err(Error::output)?;
                    done
                }
                Some(path) => {
                    let mut out = BufWriter::with_capacity(1 << 20, create(path, &inputs)?);
                    let done = extract(&inputs, id, side, &mut out)?;
                    out.flush().map_err(Error::output)?;
                    done
                }
            };
            Ok(skipped)
        }
        "pcap" => {
            let Some(path) = output else {
                return Err(Error::Message(
                    "pcap needs -o FILE.pcapng (or -o - for standard output)".into(),
                ));
            };
            if path == "-" && io::stdout().is_terminal() {
                return Err(Error::Message(
                    "pcap will not write binary to a terminal: give -o FILE.pcapng, or pipe -o - into a program".into(),
                ));
            }
            let inputs = open_inputs(&free)?;
            let (_, skipped) = if path == "-" {
                write_pcap(
                    &inputs,
                    port,
                    BufWriter::with_capacity(1 << 20, io::stdout().lock()),
                )?
            } else {
                write_pcap(
                    &inputs,
                    port,
                    BufWriter::with_capacity(1 << 20, create(&path, &inputs)?),
                )?
            };
            Ok(skipped)
        }
        other => Err(Error::Message(format!("unknown command '{other}'"))),
    }
}

/// `rawprox.exe replay ...` (SPEC §10): exit 0 when every connection is
/// the same, 1 when any is not, 2 with one `Error:` line on an error.
fn replay_main(args: Vec<OsString>) -> ExitCode {
    let mut all_same = true;
    match run_replay(args, &mut all_same) {
        Ok(skipped) => {
            if let Some(message) = skipped.message() {
                eprintln!("{message}");
            }
            match all_same {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            }
        }
        Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(Error::Message(m)) => {
            eprintln!("{}", error_line(&m));
            ExitCode::from(2)
        }
    }
}

/// Options of `replay` that take a value.
const REPLAY_OPTIONS: [&str; 7] = [
    "--to",
    "--port",
    "--pace",
    "--speed",
    "--concurrency",
    "--wait-ms",
    "--log",
];

/// What `replay`'s command line says, checked; `None` for `--help`.
struct ReplayArgs {
    options: Options,
    json: bool,
    /// `--log FILE` (to be created once the inputs are known), or `@DIR`.
    log: Option<String>,
    inputs: Vec<String>,
}

fn parse_replay(args: Vec<OsString>) -> Result<Option<ReplayArgs>, Error> {
    let mut args = pico_args::Arguments::from_vec(one_spelling(args, &REPLAY_OPTIONS));
    if args.contains(["-h", "--help"]) {
        print!("{}", help("replay"));
        return Ok(None);
    }
    let message = Error::Message;
    let to = last_value(&mut args, "--to", |text| {
        parse_target(text).map(|(host, port)| (text.to_owned(), host, port))
    })
    .map_err(message)?;
    let port = last_value(&mut args, "--port", |text| match text.parse::<u16>() {
        Ok(p @ 1..) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("'{text}' is not a port number (1-65535)")),
    })
    .map_err(message)?;
    let pace = last_value(&mut args, "--pace", |text| {
        Pace::parse(text).ok_or(format!(
            "'{text}' is not a pace: lockstep, captured or fast"
        ))
    })
    .map_err(message)?
    .unwrap_or(Pace::Lockstep);
    let speed = last_value(&mut args, "--speed", |text| match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e6 => Ok(x),
        _ => Err(format!(
            "'{text}' is not a speed (a number above 0, as 2 or 0.5)"
        )),
    })
    .map_err(message)?
    .unwrap_or(1.0);
    let concurrency = last_value(&mut args, "--concurrency", |text| {
        match text.parse::<usize>() {
            Ok(n @ 1..=100_000) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(format!("'{text}' is not a concurrency (1-100000)")),
        }
    })
    .map_err(message)?
    .unwrap_or(16);
    let wait_ms = last_value(&mut args, "--wait-ms", |text| match text.parse::<u64>() {
        Ok(ms @ 1..=86_400_000) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(ms),
        _ => Err(format!(
            "'{text}' is not a time in milliseconds (1-86400000)"
        )),
    })
    .map_err(message)?
    .unwrap_or(5000);
    let json = args.contains("--json");
    let log = last_value(&mut args, "--log", |text| match text {
        "" | "@" => Err("--log needs a FILE or @DIR".into()),
        _ => Ok(text.to_owned()),
    })
    .map_err(message)?;
    let free = free_arguments(args, "replay")?;
    let Some((to, host, to_port)) = to else {
        return Err(Error::Message(
            "replay needs --to HOST:PORT, the server to replay to (it never goes to the captured target unless named)".into(),
        ));
    };
    if pace != Pace::Captured && speed != 1.0 {
        return Err(Error::Message("--speed goes with --pace captured".into()));
    }
    let (ids, inputs): (Vec<String>, Vec<String>) = free
        .into_iter()
        .partition(|a| ConnId::parse(a.as_bytes()).is_some() && !std::path::Path::new(a).exists());
    let ids: Vec<ConnId> = ids
        .iter()
        .filter_map(|a| ConnId::parse(a.as_bytes()))
        .collect();
    if !ids.is_empty() && port.is_some() {
        return Err(Error::Message("give CONNIDs or --port, not both".into()));
    }
    // Only the --to host is ever looked up (SPEC §10).
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, to_port)],
        Err(_) => (host.as_str(), to_port)
            .to_socket_addrs()
            .map_err(|e| Error::Message(format!("cannot resolve --to {to}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Error::Message(format!("--to {to} has no address")));
    }
    Ok(Some(ReplayArgs {
        options: Options {
            ids,
            port,
            since: None,
            addrs,
            settings: Settings {
                to: host_port(&host, to_port),
                pace,
                speed,
                wait: Duration::from_millis(wait_ms),
            },
            concurrency,
            log: None,
        },
        json,
        log,
        inputs,
    }))
}

fn run_replay(args: Vec<OsString>, all_same: &mut bool) -> Result<Skipped, Error> {
    let mut args = args;
    args.remove(0);
    let Some(mut replay_args) = parse_replay(args)? else {
        return Ok(Skipped::default());
    };
    // Refused before `open_inputs` would say it reads a terminal.
    if replay_args.inputs.is_empty() || replay_args.inputs.iter().any(|a| a == "-") {
        return Err(Error::Message(
            "replay reads its input more than once: give log files or directories, not standard input".into(),
        ));
    }
    let inputs = open_inputs(&replay_args.inputs)?;
    replay_args.options.log = match replay_args.log.as_deref() {
        None => None,
        Some(spec) => Some(log_destination(spec, &inputs)?),
    };
    let json = replay_args.json;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut rows = 0u64;
    let skipped = replay(inputs, &replay_args.options, |row| {
        rows += 1;
        *all_same &= row.verdict == Verdict::Same;
        match json {
            true => writeln!(out, "{}", row.to_json()),
            false => write!(out, "{}", row.to_text()),
        }
        .and_then(|()| out.flush())
        .map_err(Error::output)
    })?;
    if rows == 0 {
        eprintln!("rawprox: no connection to replay in the input");
    }
    Ok(skipped)
}

/// `--log FILE` or `--log @DIR` as a log destination (SPEC §10): a file is
/// a directory destination whose one file name is FILE's, started empty; it
/// may not be one of the inputs.
fn log_destination(spec: &str, inputs: &[Input]) -> Result<Destination, Error> {
    let message = Error::Message;
    if let Some(dir) = spec.strip_prefix('@') {
        prepare_directory(dir).map_err(message)?;
        let format = FilenameFormat::parse(DEFAULT_FILENAME_FORMAT).map_err(message)?;
        return Ok(Destination::Directory {
            dir: dir.to_owned(),
            format,
        });
    }
    let path = std::path::Path::new(spec);
    let (Some(name), parent) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Err(Error::Message(format!("--log {spec} does not name a file")));
    };
    let dir = match parent.and_then(|p| p.to_str()) {
        None | Some("") => ".",
        Some(dir) => dir,
    };
    create(spec, inputs).map_err(|e| match e {
        Error::Message(m) => Error::Message(m.replace("give another -o", "give another --log")),
        other => other,
    })?;
    prepare_directory(dir).map_err(message)?;
    let format = FilenameFormat::parse(&name.replace('%', "%%")).map_err(message)?;
    Ok(Destination::Directory {
        dir: dir.to_owned(),
        format,
    })
}

/// The arguments left when the options are taken: ConnIDs and inputs. An
/// option left over is one `command` does not have.
fn free_arguments(args: pico_args::Arguments, command: &str) -> Result<Vec<String>, Error> {
    let mut free = Vec::new();
    for arg in args.finish() {
        let arg = arg
            .into_string()
            .map_err(|a| Error::Message(format!("argument {a:?} is not valid UTF-8")))?;
        if arg.starts_with('-') && arg != "-" {
            return Err(Error::Message(format!(
                "unknown option '{arg}' for {command} (see rawprox.exe {command} --help)"
            )));
        }
        free.push(arg);
    }
    Ok(free)
}

/// The inputs of the command line; with standard input a terminal, says on
/// stderr that it is read (SPEC §9), so a forgotten INPUT is not a mute wait.
fn open_inputs(args: &[String]) -> Result<Vec<Input>, Error> {
    let inputs = expand(args)?;
    if inputs.iter().any(|i| matches!(i, Input::Stdin)) && io::stdin().is_terminal() {
        eprintln!(
            "rawprox: reading a log from standard input (end it with Ctrl-D, or Ctrl-Z then Enter on Windows; give a file or directory to read that instead)"
        );
    }
    Ok(inputs)
}

/// Creates the output file, refusing one of the inputs (SPEC §9): nothing
/// is created or truncated then.
fn create(path: &str, inputs: &[Input]) -> Result<std::fs::File, Error> {
    if let Some(input) = inputs
        .iter()
        .find(|i| i.is_file(std::path::Path::new(path)))
    {
        return Err(Error::Message(format!(
            "the output {path} is the input {}: give another -o",
            input.name()
        )));
    }
    std::fs::File::create(path).map_err(|e| Error::Message(format!("cannot create {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_strs(args: &[&str]) -> Result<Skipped, Error> {
        run(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn argument_errors_name_their_culprit() {
        let cases: &[(&[&str], &str)] = &[
            (&["list", "--bogus"], "'--bogus'"),
            (&["list", "--port", "0"], "'0'"),
            (&["list", "--port", "+80"], "'+80'"),
            (&["follow", "--port"], "--port needs a value"),
            (&["extract"], "needs a CONNID"),
            (&["extract", "abc"], "'abc' is not a ConnID"),
            (&["extract", "0000000A", "--side", "server"], "'server'"),
            (&["pcap", "x.ndjson"], "needs -o"),
            (
                &["list", "/nonexistent/rawprox.ndjson"],
                "cannot open /nonexistent",
            ),
        ];
        for (args, want) in cases {
            match run_strs(args) {
                Err(Error::Message(m)) => assert!(m.contains(want), "{args:?}: {m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn replay_arguments_are_checked() {
        let parse = |args: &[&str]| parse_replay(args.iter().map(OsString::from).collect());
        let Ok(Some(ok)) = parse(&[
            "--to=[::1]:9",
            "--pace",
            "captured",
            "--speed",
            "2.5",
            "--concurrency",
            "4",
            "--wait-ms",
            "100",
            "0000000A",
            "x.ndjson",
        ]) else {
            panic!("a good replay command line");
        };
        assert_eq!(ok.options.settings.to, "[::1]:9");
        assert_eq!(ok.options.addrs, ["[::1]:9".parse().unwrap()]);
        assert_eq!(ok.options.settings.pace, Pace::Captured);
        assert_eq!(ok.options.settings.speed, 2.5);
        assert_eq!(ok.options.concurrency, 4);
        assert_eq!(ok.options.settings.wait, Duration::from_millis(100));
        assert_eq!(ok.options.ids, [ConnId(*b"0000000A")]);
        assert_eq!(ok.inputs, ["x.ndjson"]);
        let cases: &[(&[&str], &str)] = &[
            (&["x"], "needs --to"),
            (&["--to", "h"], "invalid target"),
            (&["--to", "127.0.0.1:1", "--pace", "slow"], "'slow'"),
            (
                &["--to", "127.0.0.1:1", "--speed", "2"],
                "--speed goes with --pace captured",
            ),
            (
                &["--to", "127.0.0.1:1", "--pace", "captured", "--speed", "-1"],
                "'-1'",
            ),
            (&["--to", "127.0.0.1:1", "--concurrency", "0"], "'0'"),
            (&["--to", "127.0.0.1:1", "--wait-ms", "0"], "'0'"),
            (&["--to", "127.0.0.1:1", "--log", "@"], "--log needs"),
            (
                &["--to", "127.0.0.1:1", "--port", "9", "0000000A"],
                "not both",
            ),
            (&["--to", "127.0.0.1:1", "--bogus"], "'--bogus'"),
        ];
        for (args, want) in cases {
            match parse(args) {
                Err(Error::Message(m)) => assert!(m.contains(want), "{args:?}: {m}"),
                Err(other) => panic!("{args:?}: {other:?}"),
                Ok(_) => panic!("{args:?} was taken"),
            }
        }
    }

    #[test]
    fn every_subcommand_has_its_own_help() {
        for command in SUBCOMMANDS {
            let text = help(command);
            assert!(
                text.starts_with(&format!("Usage: rawprox.exe {command} ")),
                "{text}"
            );
        }
        assert!(help("list").contains("--json"));
        assert!(help("extract").contains("--side"));
        assert!(help("pcap").contains("-o FILE"));
    }
}
