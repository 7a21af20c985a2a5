//! The `rawprox` executable: parse the command line, run, and turn the
//! outcome into one `Error:` line and an exit code.

use rawprox::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let config = match cli::parse(args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rawprox {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::NothingToDo) => {
            eprint!("{}", cli::HELP);
            return ExitCode::FAILURE;
        }
        Err(message) => {
            eprintln!("{}", cli::error_line(&message));
            return ExitCode::FAILURE;
        }
    };
    match rawprox::run(config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", cli::error_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
