//! The `rawprox` executable: parse the command line, run, and turn the
//! outcome into one `Error:` line and an exit code. A first argument of
//! `list`, `follow`, `extract`, `pcap` or `replay` goes to the read side
//! instead.

use rawprox::cli::{self, proxy::Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // SPEC §9: a reading subcommand is a word; a port rule always holds `:`.
    if args
        .first()
        .is_some_and(|first| cli::read::SUBCOMMANDS.iter().any(|c| first == c))
    {
        return cli::read::main(args);
    }
    let config = match cli::proxy::parse(args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::proxy::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rawprox {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::NothingToDo) => {
            eprint!("{}", cli::proxy::HELP);
            return ExitCode::FAILURE;
        }
        Err(message) => {
            eprintln!("{}", cli::error_line(&message));
            return ExitCode::FAILURE;
        }
    };
    match rawprox::run(config) {
        Ok(code) => code,
        Err(rawprox::Error::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", cli::error_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
