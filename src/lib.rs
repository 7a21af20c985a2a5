//! rawprox: a transparent TCP proxy that logs every byte as NDJSON.
//! `run` takes a validated `Config`, checks what touches the system (log
//! directory, ports), and runs the event loop until shutdown.

pub mod arena;
pub mod cli;
pub mod connid;
pub mod encode;
pub mod event_loop;
pub mod listener;
pub mod mcp;
pub mod pair;
pub mod pipe;
pub mod read;
pub mod resolve;
pub mod rule;
pub mod sys;
pub mod timefmt;
pub mod token;
pub mod writer;

use cli::Config;
use event_loop::{EventLoop, Stop};
use listener::Listener;
use std::fmt;
use std::process::ExitCode;
use writer::Destination;

/// A start-up or run-time failure; `main` prints it as `Error: {it}`.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the proxy until SIGINT/SIGTERM or a failure (SPEC §2–§6).
pub fn run(config: Config) -> Result<ExitCode, Error> {
    sys::raise_open_file_limit();
    sys::return_big_buffers_to_the_system();
    // SPEC §2: the log directory is checked before any port is bound.
    let destination = match config.log_dir {
        Some(dir) => {
            writer::prepare_directory(&dir).map_err(Error)?;
            Destination::Directory {
                dir,
                format: config.filename_format,
            }
        }
        None => Destination::Stdout,
    };
    // Binding stops at the first failure; the listeners bound so far are
    // dropped with the Vec, so nothing is left listening.
    let listeners = config
        .rules
        .into_iter()
        .map(Listener::bind)
        .collect::<Result<Vec<_>, String>>()
        .map_err(Error)?;
    let mcp_listener = config.mcp_port.map(bind_mcp).transpose()?;
    let max_buffer_bytes = config
        .max_buffer_mb
        .map(|mb| (mb as usize).saturating_mul(1024 * 1024));
    let event_loop = EventLoop::new(
        listeners,
        mcp_listener,
        destination,
        config.flush_millis,
        max_buffer_bytes,
    )
    .map_err(|e| Error(format!("cannot start the event loop: {e}")))?;
    match event_loop.run() {
        Stop::Clean => Ok(ExitCode::SUCCESS),
        Stop::Failed(message) => Err(Error(message)),
    }
}

/// Binds the MCP server on 127.0.0.1 only (SPEC §7); port 0 lets the system choose.
fn bind_mcp(port: u16) -> Result<mio::net::TcpListener, Error> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    mio::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error(format!("Port {port} is already in use"))
        } else {
            Error(format!("cannot listen on MCP port {port}: {e}"))
        }
    })
}
