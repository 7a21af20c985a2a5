//! The read side (SPEC §9, §10): `list`, `follow`, `extract` and `pcap`
//! turn NDJSON logs back into connections, conversations, bytes and
//! packets; `replay` sends them to a server again.
//! It shares only the line format with the proxy; nothing here touches the
//! event loop, the arena or the writer.
//!
//! | module | concern |
//! |---|---|
//! | `input` | files, directories, stdin as a stream of lines; skipped lines |
//! | `track` | connections held while streaming, retired after their close |
//! | `pipeline` | inputs → lines → connection events: the one loop every sink runs on |
//! | `list`, `follow`, `extract`, `pcap` | the sinks, as library functions |
//! | `replay` | the captured conversations sent again (SPEC §10): a mio loop fed by readers on the pipeline |
//!
//! The sinks print nothing of their own; the command line is `cli::read`.

pub mod extract;
pub mod follow;
pub mod input;
pub mod list;
pub mod pcap;
pub mod pipeline;
pub mod replay;
pub mod track;

pub use crate::error::Error;
pub use crate::format::connid::ConnId;

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
