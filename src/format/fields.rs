//! A line's field names and their order (SPEC §4), as the bytes that stand
//! between one value and the next. The encoder writes lines from these
//! pieces and the decoder's fast path expects them, in the same order, so
//! a change here changes both; `format/tests.rs` holds the two together.
//!
//! In the order of a line: `TIME` time `CONN_ID` ConnID, then `DATA` data
//! or `EVENT` name, then `FROM` from `TO` to, then `END` (data, close), or
//! `LISTEN_PORT` port `}` (open). A control event (SPEC §7) has no ConnID:
//! `TIME` time `EVENT` name, then its own fields.

/// A line's start, before its time stamp.
pub const TIME: &[u8] = b"{\"time\":\"";
/// After the time stamp, before the ConnID.
pub const CONN_ID: &[u8] = b"\",\"ConnID\":\"";
/// After the ConnID, before a data line's encoded bytes.
pub const DATA: &[u8] = b"\",\"data\":\"";
/// After the ConnID (or a control event's time stamp), before the event's name.
pub const EVENT: &[u8] = b"\",\"event\":\"";
/// Before the sender's address.
pub const FROM: &[u8] = b"\",\"from\":\"";
/// Before the receiver's address.
pub const TO: &[u8] = b"\",\"to\":\"";
/// After an open line's `to`, before its port number and `}`.
pub const LISTEN_PORT: &[u8] = b"\",\"listen_port\":";
/// The end of a data or close line: the last string's quote, the object's brace.
pub const END: &[u8] = b"\"}";

/// After a logging event's name, before its directory (a string or `null`).
pub const DIRECTORY: &[u8] = b"\",\"directory\":";
/// After a `start-logging`'s directory, before its file name format.
pub const FILENAME_FORMAT: &[u8] = b",\"filename_format\":";
/// After `mcp-ready`, before the MCP endpoint.
pub const ENDPOINT: &[u8] = b"\",\"endpoint\":";

/// The events: the value of `event`.
pub const OPEN: &str = "open";
pub const CLOSE: &str = "close";
pub const START_LOGGING: &str = "start-logging";
pub const STOP_LOGGING: &str = "stop-logging";
pub const MCP_READY: &str = "mcp-ready";
