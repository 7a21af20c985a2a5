//! The MCP control server (SPEC §7, §9). `http.rs` frames requests and
//! responses, `rpc.rs` dispatches JSON-RPC to the tools (`args.rs` holds
//! the argument kinds they share), `reading.rs` runs
//! the reading tools on a helper thread, `conn.rs` is one connection's
//! buffers and deadline, and `server.rs` serves the connections on the
//! event loop, keeping each deferred answer with its connection.

pub mod args;
pub mod conn;
pub mod http;
pub mod reading;
pub mod rpc;
pub mod server;
