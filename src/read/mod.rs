//! The read side (SPEC §9, §10): `list`, `follow`, `extract` and `pcap`
//! turn NDJSON logs back into connections, conversations, bytes and
//! packets; `replay` sends them to a server again.
//! It shares only the line format (`crate::format`) with the proxy; nothing
//! here touches the event loop, the arena or the writer.
//!
//! | module | concern |
//! |---|---|
//! | `input` | the inputs: files, directories (links followed, once), stdin |
//! | `lines` | the inputs as a stream of lines, merged by time; skipped lines; progress |
//! | `track` | connections held while streaming, retired after their close |
//! | `pipeline` | inputs → lines → connection events: the one loop every sink runs on |
//! | `list`, `follow`, `extract`, `pcap` | the sinks, as library functions |
//! | `show` | bytes and names shown to people: text, hex dumps, control characters made visible |
//! | `replay` | the captured conversations sent again (SPEC §10): a mio loop fed by readers on the pipeline |
//!
//! The sinks print nothing of their own; the command line is `cli::read`.

pub mod extract;
pub mod follow;
pub mod input;
pub mod lines;
pub mod list;
pub mod pcap;
pub mod pipeline;
pub mod replay;
pub mod show;
pub mod track;

pub use crate::error::Error;
