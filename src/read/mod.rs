//! The read side (SPEC §9): `list`, `follow`, `extract` and `pcap` turn
//! NDJSON logs back into connections, conversations, bytes and packets.
//! It shares only the line format with the proxy; nothing here touches the
//! event loop, the arena or the writer.
//!
//! | module | concern |
//! |---|---|
//! | `decode` | one line to a `Line`; the `data` string to bytes |
//! | `input` | files, directories, stdin as a stream of lines; skipped lines |
//! | `track` | connections held while streaming, retired after their close |
//! | `list`, `follow`, `extract`, `pcap` | the four subcommands, as library functions |
//!
//! The library functions (`connections`, `conversation`, `extract`,
//! `follow`, `write_pcap`) print nothing; `main` is the command line.

pub mod decode;
pub mod extract;
pub mod follow;
pub mod input;
pub mod list;
pub mod pcap;
pub mod track;

pub use decode::{Bad, ConnId, Line, Time, parse_line};
pub use extract::{Conversation, Message, Peers, conversation, extract};
pub use follow::{Selection, follow, is_mostly_text, push_hex_dump, push_text};
pub use input::{Input, Skipped, expand};
pub use list::{ConnRow, connections};
pub use pcap::{PcapStats, write_pcap};

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

/// The subcommands `main` hands to `read::main`.
pub const SUBCOMMANDS: [&str; 4] = ["list", "follow", "extract", "pcap"];

/// A side of a connection. As an index: client 0, target 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client = 0,
    Target = 1,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Target => "target",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Target,
            Side::Target => Side::Client,
        }
    }

    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "client" => Some(Side::Client),
            "target" => Some(Side::Target),
            _ => None,
        }
    }
}

/// Why a reading command stopped.
#[derive(Debug, PartialEq)]
pub enum Error {
    /// For the user, after `Error: `; exit 1.
    Message(String),
    /// The output was closed (`| head`): not an error, exit 0 quietly.
    OutputClosed,
}

impl Error {
    /// A failed write of the output.
    pub fn output(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::OutputClosed
        } else {
            Error::Message(format!("cannot write the output: {e}"))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(m) => f.write_str(m),
            Error::OutputClosed => f.write_str("the output was closed"),
        }
    }
}

const USAGE: &str = "\
Usage:
  rawprox.exe list    [--port N] [--json] [INPUT...]
  rawprox.exe follow  [CONNID...] [--port N] [INPUT...]
  rawprox.exe extract CONNID [--side client|target] [-o FILE] [INPUT...]
  rawprox.exe pcap    [--port N] -o FILE.pcapng [INPUT...]

INPUT is a log file or a directory (its *.ndjson files in name order); none,
or -, reads standard input as it arrives:
  rawprox.exe 8080:127.0.0.1:9000 | rawprox.exe follow
";

/// Runs `rawprox.exe SUBCOMMAND ARGS...`; `args` starts with the subcommand.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match run(args) {
        Ok(skipped) => {
            if let Some(message) = skipped.message() {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(Error::Message(m)) => {
            // One line, whatever the message holds (a path with a newline).
            let line: String = m
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect();
            eprintln!("Error: {line}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Vec<OsString>) -> Result<Skipped, Error> {
    let command = args.remove(0);
    let command = command.to_string_lossy();
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return Ok(Skipped::default());
    }
    let port: Option<u16> = match command.as_ref() {
        "list" | "follow" | "pcap" => args
            .opt_value_from_fn("--port", |text: &str| match text.parse::<u16>() {
                Ok(p @ 1..) => Ok(p),
                _ => Err(format!("'{text}' is not a port number (1-65535)")),
            })
            .map_err(|e| option_error(e, "--port"))?,
        _ => None,
    };
    let json = command == "list" && args.contains("--json");
    let side = match command.as_ref() {
        "extract" => args
            .opt_value_from_fn("--side", |text: &str| {
                Side::parse(text).ok_or(format!("'{text}' is not client or target"))
            })
            .map_err(|e| option_error(e, "--side"))?
            .unwrap_or(Side::Client),
        _ => Side::Client,
    };
    let output: Option<String> = match command.as_ref() {
        "extract" | "pcap" => args
            .opt_value_from_str("-o")
            .map_err(|e| option_error(e, "-o"))?,
        _ => None,
    };
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
    match command.as_ref() {
        "list" => {
            let inputs = expand(&free)?;
            let (rows, skipped) = connections(&inputs, port)?;
            let mut out = BufWriter::new(io::stdout().lock());
            if json {
                for row in &rows {
                    writeln!(out, "{}", row.to_json()).map_err(Error::output)?;
                }
            } else {
                list::write_table(&rows, &mut out).map_err(Error::output)?;
            }
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
            };
            let inputs = expand(&inputs)?;
            let colour = io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
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
            let inputs = expand(&free[1..])?;
            let (_, skipped) = match output.as_deref() {
                None | Some("-") => {
                    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
                    let done = extract(&inputs, id, side, &mut out)?;
                    out.flush().map_err(Error::output)?;
                    done
                }
                Some(path) => {
                    let file = create(path)?;
                    let mut out = BufWriter::with_capacity(1 << 20, file);
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
            let inputs = expand(&free)?;
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
                    BufWriter::with_capacity(1 << 20, create(&path)?),
                )?
            };
            Ok(skipped)
        }
        other => Err(Error::Message(format!("unknown command '{other}'"))),
    }
}

fn create(path: &str) -> Result<std::fs::File, Error> {
    std::fs::File::create(path).map_err(|e| Error::Message(format!("cannot create {path}: {e}")))
}

fn option_error(e: pico_args::Error, name: &str) -> Error {
    Error::Message(match e {
        pico_args::Error::OptionWithoutAValue(_) | pico_args::Error::MissingOption(_) => {
            format!("{name} needs a value")
        }
        pico_args::Error::Utf8ArgumentParsingFailed { value, cause } => {
            format!("invalid value '{value}' for {name}: {cause}")
        }
        other => format!("{name}: {other}"),
    })
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
}
