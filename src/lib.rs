//! `SPEC §N` in this crate's comments means section N of docs/SPEC.md.
//! rawprox: a transparent TCP proxy that logs every byte as NDJSON.
//! `run` takes a validated `Config`, checks what touches the system (log
//! directory, ports), and runs the event loop until shutdown.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
mod error;
pub mod event_loop;
pub mod format;
pub mod log;
pub mod mcp;
pub mod proxy;
pub mod read;
pub mod sys;

use cli::proxy::Config;
use event_loop::{EventLoop, Stop};
use log::destination::{self, Destination};
use proxy::listener::Listener;
use std::process::ExitCode;
use std::time::Duration;

pub use error::Error;

/// Runs the proxy until SIGINT/SIGTERM or a failure (SPEC §2–§6).
pub fn run(config: Config) -> Result<ExitCode, Error> {
    sys::raise_open_file_limit();
    sys::return_big_buffers_to_the_system();
    // SPEC §2: the log directory is checked before any port is bound.
    let destination = match config.log_dir {
        Some(dir) => {
            destination::prepare_directory(&dir).map_err(Error::Message)?;
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
        .map_err(Error::Message)?;
    let mcp_listener = config.mcp_port.map(bind_mcp).transpose()?;
    let mib = |mb: u64| (mb as usize).saturating_mul(1024 * 1024);
    let log_settings = log::Settings {
        flush_interval: Duration::from_millis(config.flush_millis),
        flush_bytes: (config.flush_mb > 0).then(|| mib(config.flush_mb)),
        cap: config.max_buffer_mb.map(mib),
    };
    let event_loop = EventLoop::new(listeners, mcp_listener, destination, log_settings)
        .map_err(|e| Error::Message(format!("cannot start the event loop: {e}")))?;
    match event_loop.run() {
        Stop::Clean => Ok(ExitCode::SUCCESS),
        Stop::Failed(message) => Err(Error::Message(message)),
    }
}

/// Binds the MCP server on 127.0.0.1 only (SPEC §7); port 0 lets the system choose.
fn bind_mcp(port: u16) -> Result<mio::net::TcpListener, Error> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    mio::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::Message(format!(
                "Port {port} is already in use: it is the --mcp-port (0 lets the system choose a free one)"
            ))
        } else {
            Error::Message(format!("cannot listen on MCP port {port}: {e}"))
        }
    })
}
