//! The proxy's command line (SPEC §2): `pico-args` in, a `Command` out.
//! Every rejection is one message for `main` to print after `Error: `.
//! Checks that touch the system (the log directory, binding) happen later,
//! in `run`.

use super::{last_value, one_spelling};
use crate::log::filename::{DEFAULT_FILENAME_FORMAT, FilenameFormat};
use crate::proxy::rule::PortRule;
use std::ffi::OsString;

/// Default `--flush-millis`.
pub const DEFAULT_FLUSH_MILLIS: u64 = 2000;
/// Longest accepted `--flush-millis`: one day.
pub const MAX_FLUSH_MILLIS: u64 = 86_400_000;
/// Largest accepted `--max-buffer-mb` and `--flush-mb`: 1 TiB.
pub const MAX_BUFFER_MB: u64 = 1024 * 1024;
/// Default `--flush-mb`: a flush starts once this many MiB are pending.
pub const DEFAULT_FLUSH_MB: u64 = 64;

/// The help text. Its `Examples:` list is the one the README's command-line
/// section shows, line for line (tests/readme.rs checks both ways).
pub const HELP: &str = "\
rawprox - a transparent TCP proxy that logs every byte as NDJSON

Usage:
  rawprox.exe [--mcp-port PORT] [--flush-millis MS] [--flush-mb N] [--max-buffer-mb N] [--filename-format FORMAT] [PORT_RULE...] [@LOG_DIRECTORY]

Arguments (in any order):
  PORT_RULE                 [BIND_ADDRESS:]LOCAL_PORT:TARGET_HOST:TARGET_PORT
                            Listen on LOCAL_PORT and forward each connection to
                            TARGET_HOST:TARGET_PORT. The listener binds every interface
                            (0.0.0.0) unless BIND_ADDRESS is given: 127.0.0.1 keeps it local.
                            Write IPv6 addresses in brackets: 8080:[::1]:80, [::1]:8080:host:80.
  @LOG_DIRECTORY            Log to time-rotated files in this directory instead of stdout.
  --mcp-port PORT           Also run the MCP control server on 127.0.0.1:PORT (0: any free
                            port). With --mcp-port, PORT_RULEs are optional: add them over MCP.
  --flush-millis MS         Minimum interval between log writes, default 2000; 0 writes at once.
                            Also --flush-millis=MS and --flush-interval-ms=MS.
  --flush-mb N              Also write as soon as N MiB of lines are pending, without waiting
                            for the interval (default 64; 0: the interval alone).
  --max-buffer-mb N         Cap buffered log lines at N MiB: past it, rawprox stops reading
                            from sockets until the log is written (default: no cap).
  --filename-format FORMAT  Log file name pattern (strftime subset %Y %m %d %H %M %S %j %%),
                            default rawprox_%Y-%m-%d-%H.ndjson (hourly). Needs @LOG_DIRECTORY.
  -h, --help                Print this help.
  -V, --version             Print the version.

Logs go to stdout unless @LOG_DIRECTORY is given: one JSON object per line for
every connection open, every read of data and every close, written at most
once per --flush-millis (so up to 2 s after the traffic by default). An option
given more than once counts with its last value.

Reading a capture (each subcommand has its own --help):
  rawprox.exe list    [--port N] [--json] [INPUT...]           one row per connection
  rawprox.exe follow  [CONNID...] [--port N] [INPUT...]        conversations, text or hex
  rawprox.exe extract CONNID [--side client|target] [-o FILE] [INPUT...]   exact bytes
  rawprox.exe pcap    [--port N] -o FILE.pcapng [INPUT...]     packets for Wireshark
INPUT is a log file or a directory, whose *.ndjson files are read searching into
subdirectories; no INPUT, or -, reads stdin. -o - writes to stdout.

Examples:
  rawprox.exe 127.0.0.1:8080:127.0.0.1:9000
  rawprox.exe 8080:db.internal:5432 8443:api.internal:443 @./logs
  rawprox.exe 127.0.0.1:8080:[::1]:9000 --flush-millis 0 > capture.ndjson
  rawprox.exe 127.0.0.1:8080:127.0.0.1:9000 @logs --filename-format rawprox_%Y-%m-%d.ndjson
  rawprox.exe --mcp-port 7777 @logs
  rawprox.exe 127.0.0.1:8080:127.0.0.1:9000 | rawprox.exe follow
  rawprox.exe list logs
  rawprox.exe extract CONNID --side target -o reply.bin logs
  rawprox.exe pcap logs -o - | wireshark -k -i -
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `--help`: help on stdout, exit 0.
    Help,
    /// `--version`: version on stdout, exit 0.
    Version,
    /// Nothing to do: help on stderr, exit 1.
    NothingToDo,
    Run(Config),
}

/// A validated configuration for `run`.
#[derive(Debug, PartialEq)]
pub struct Config {
    pub rules: Vec<PortRule>,
    /// The `@LOG_DIRECTORY`, as given (without the `@`).
    pub log_dir: Option<String>,
    pub filename_format: FilenameFormat,
    pub flush_millis: u64,
    /// `--mcp-port`: run the MCP control server on 127.0.0.1 (0: any port).
    pub mcp_port: Option<u16>,
    /// `--max-buffer-mb`: cap on buffered log lines; past it, reading pauses.
    pub max_buffer_mb: Option<u64>,
    /// `--flush-mb`: write once this many MiB are pending (0: never early).
    pub flush_mb: u64,
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    let mut args = pico_args::Arguments::from_vec(one_spelling(args, &VALUE_OPTIONS));
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let flush_millis = last_value(&mut args, "--flush-millis", |text| {
        match text.parse::<u64>() {
            Ok(ms) if ms <= MAX_FLUSH_MILLIS => Ok(ms),
            Ok(_) => Err(format!("'{text}' is out of range (0-{MAX_FLUSH_MILLIS})")),
            Err(_) => Err(format!("'{text}' is not a whole number of milliseconds")),
        }
    })?
    .unwrap_or(DEFAULT_FLUSH_MILLIS);
    let mcp_port = last_value(&mut args, "--mcp-port", |text| match text.parse::<u16>() {
        Ok(port) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("'{text}' is not a port number (0-65535)")),
    })?;
    let max_buffer_mb = last_value(&mut args, "--max-buffer-mb", |text| match mib(text) {
        Some(mb @ 1..) => Ok(mb),
        _ => Err(format!(
            "'{text}' is not a number of MiB (1-{MAX_BUFFER_MB})"
        )),
    })?;
    let flush_mb = last_value(&mut args, "--flush-mb", |text| {
        mib(text).ok_or_else(|| format!("'{text}' is not a number of MiB (0-{MAX_BUFFER_MB})"))
    })?
    .unwrap_or(DEFAULT_FLUSH_MB);
    let filename_format = last_value(&mut args, "--filename-format", |text| Ok(text.to_owned()))?;

    let mut rules: Vec<PortRule> = Vec::new();
    let mut log_dir: Option<String> = None;
    for arg in args.finish() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        if arg.starts_with('-') {
            return Err(format!("unknown option '{arg}' (see --help)"));
        }
        if let Some(dir) = arg.strip_prefix('@') {
            if dir.is_empty() {
                return Err("'@' needs a directory name, as in @./logs".into());
            }
            if let Some(first) = &log_dir {
                return Err(format!(
                    "two log directories given: '@{first}' and '{arg}'; give at most one"
                ));
            }
            log_dir = Some(dir.to_owned());
            continue;
        }
        // SPEC §9: a word is a subcommand, a rule always holds `:`.
        if !arg.contains(':') && arg.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "'{arg}' is neither a subcommand ({}) nor a port rule LOCAL_PORT:TARGET_HOST:TARGET_PORT (see --help)",
                super::read::SUBCOMMANDS.join(", ")
            ));
        }
        let rule = PortRule::parse(&arg).map_err(|why| format!("{why} (see --help)"))?;
        if rules.iter().any(|r| r.local_port == rule.local_port) {
            return Err(format!(
                "local port {} is used by more than one rule",
                rule.local_port
            ));
        }
        rules.push(rule);
    }

    if filename_format.is_some() && log_dir.is_none() {
        return Err("--filename-format needs a @LOG_DIRECTORY".into());
    }
    let filename_format = FilenameFormat::parse(
        filename_format
            .as_deref()
            .unwrap_or(DEFAULT_FILENAME_FORMAT),
    )
    .map_err(|why| format!("invalid --filename-format: {why}"))?;
    if rules.is_empty() && mcp_port.is_none() {
        if let Some(dir) = log_dir {
            return Err(format!(
                "log directory '@{dir}' given but no port rule to capture"
            ));
        }
        return Ok(Command::NothingToDo);
    }
    Ok(Command::Run(Config {
        rules,
        log_dir,
        filename_format,
        flush_millis,
        mcp_port,
        max_buffer_mb,
        flush_mb,
    }))
}

/// Options that take a value.
const VALUE_OPTIONS: [&str; 5] = [
    "--mcp-port",
    "--flush-millis",
    "--flush-mb",
    "--max-buffer-mb",
    "--filename-format",
];

/// A number of MiB, 0 to `MAX_BUFFER_MB`, in plain digits.
fn mib(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    text.parse::<u64>()
        .ok()
        .filter(|&mb| digits && mb <= MAX_BUFFER_MB)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::error_line;

    fn parse_strs(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn config(args: &[&str]) -> Config {
        match parse_strs(args) {
            Ok(Command::Run(c)) => c,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn help_version_and_nothing_to_do() {
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["8080:a:1", "-h"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["-V"]), Ok(Command::Version));
        assert_eq!(parse_strs(&[]), Ok(Command::NothingToDo));
        assert_eq!(
            parse_strs(&["--flush-millis", "5"]),
            Ok(Command::NothingToDo)
        );
    }

    #[test]
    fn options_in_any_order() {
        let c = config(&[
            "@logs",
            "--flush-millis=5",
            "1:a:2",
            "--filename-format",
            "x.log",
            "3:b:4",
        ]);
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.log_dir.as_deref(), Some("logs"));
        assert_eq!(c.flush_millis, 5);
        assert_eq!(c.filename_format.source(), "x.log");
        let c = config(&["1:a:2"]);
        assert_eq!(c.flush_millis, DEFAULT_FLUSH_MILLIS);
        assert_eq!(c.filename_format.source(), DEFAULT_FILENAME_FORMAT);
        assert_eq!(config(&["1:a:2", "--flush-millis", "0"]).flush_millis, 0);
        assert_eq!(config(&["1:a:2", "--flush-interval-ms=7"]).flush_millis, 7);
        assert_eq!(
            config(&["1:a:2", "--max-buffer-mb=16"]).max_buffer_mb,
            Some(16)
        );
        assert_eq!(config(&["1:a:2"]).max_buffer_mb, None);
        assert_eq!(config(&["1:a:2"]).flush_mb, DEFAULT_FLUSH_MB);
        assert_eq!(config(&["1:a:2", "--flush-mb", "0"]).flush_mb, 0);
        let c = config(&["--mcp-port", "0"]);
        assert_eq!((c.mcp_port, c.rules.len()), (Some(0), 0));
        let c = config(&["--mcp-port=9999", "@logs"]);
        assert_eq!(
            (c.mcp_port, c.log_dir.as_deref()),
            (Some(9999), Some("logs"))
        );
    }

    /// SPEC §2: an option given more than once counts with its last value,
    /// in any spelling.
    #[test]
    fn the_last_value_of_an_option_counts_in_any_spelling() {
        let flush = |args: &[&str]| config(&[&["1:a:2"], args].concat()).flush_millis;
        assert_eq!(flush(&["--flush-millis", "1", "--flush-millis", "2"]), 2);
        assert_eq!(flush(&["--flush-millis=1", "--flush-interval-ms=2"]), 2);
        assert_eq!(flush(&["--flush-interval-ms", "3", "--flush-millis=1"]), 1);
        assert_eq!(
            flush(&["--flush-interval-ms=3", "--flush-interval-ms", "4"]),
            4
        );
        let c = config(&["--mcp-port", "1", "--mcp-port=2", "--max-buffer-mb=3"]);
        assert_eq!(c.mcp_port, Some(2));
        let c = config(&["1:a:2", "--max-buffer-mb=3", "--max-buffer-mb", "4"]);
        assert_eq!(c.max_buffer_mb, Some(4));
        let c = config(&[
            "1:a:2",
            "@l",
            "--filename-format",
            "a.log",
            "--filename-format=b.log",
        ]);
        assert_eq!(c.filename_format.source(), "b.log");
        // Every value is checked, not only the last.
        let err = parse_strs(&["1:a:2", "--flush-millis=x", "--flush-millis=5"]).unwrap_err();
        assert!(err.contains("'x'"), "{err}");
    }

    #[test]
    fn error_lines_are_one_line() {
        let err = parse_strs(&["1:a\nb:2"]).unwrap_err();
        assert_eq!(error_line(&err).lines().count(), 1);
        assert!(error_line(&err).contains("a\\nb"), "{}", error_line(&err));
        assert_eq!(
            error_line("Port 1 is already in use"),
            "Error: Port 1 is already in use"
        );
    }

    #[test]
    fn every_error_names_its_culprit() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus", "1:a:2"], "'--bogus'"),
            (&["1:a:2", "--flush-millis"], "--flush-millis needs a value"),
            (&["1:a:2", "--flush-millis", "abc"], "'abc'"),
            (&["1:a:2", "--flush-millis", "99999999999"], "out of range"),
            (&["1:a:2", "@x", "@y"], "'@x' and '@y'"),
            (
                &["1:a:2", "--filename-format", "x.log"],
                "needs a @LOG_DIRECTORY",
            ),
            (&["@logs"], "no port rule"),
            (&["1:a:2", "@l", "--filename-format", "%Q"], "'%Q'"),
            (&["1:a:2", "@l", "--filename-format", "x%"], "lone '%'"),
            (&["1:a:2", "1:b:3"], "local port 1"),
            (&["1:a"], "'1:a'"),
            (&["1:a:2", "@"], "'@'"),
            (&["--mcp-port"], "--mcp-port needs a value"),
            (&["1:a:2", "--max-buffer-mb", "0"], "'0'"),
            (&["1:a:2", "--max-buffer-mb", "x"], "'x'"),
            (&["--mcp-port", "65536"], "'65536'"),
            (&["--mcp-port", "-1"], "'-1'"),
            (&["--mcp-port", "+80"], "'+80'"),
            (&["1:a:2", "--flush-mb", "-1"], "'-1'"),
            (&["1:a:2", "--flush-mb", "+5"], "'+5'"),
            (&["1:a:2", "--flush-mb"], "--flush-mb needs a value"),
            (
                &["1:a:2", "@l", "--filename-format", "/"],
                "--filename-format",
            ),
            (
                &["--mcp-port", "0", "--filename-format", "x"],
                "needs a @LOG_DIRECTORY",
            ),
        ];
        for (args, want) in cases {
            let err = parse_strs(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err} should contain {want}");
        }
    }
}
