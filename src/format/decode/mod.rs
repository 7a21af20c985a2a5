//! One log line in, one `Line` out (SPEC §4): the line decoder that the
//! read side, the MCP reading tools, the fuzz target and the bench share.
//! It knows the line format only; what a line means for a connection is
//! the callers' business.
//!
//! Lines as rawprox writes them (the field order of `fields.rs`, compact)
//! go through a fast path that borrows from the line and leaves the `data`
//! string encoded: decoding it is a second, separate step
//! (`Data::decode_in`), so a reader that skips a connection never pays for
//! its bytes. Any other line (another field order, spaces, another tool's
//! JSON) goes through `serde_json` and is judged by its fields.
//!
//! | module | concern |
//! |---|---|
//! | `line` | one line to a `Line`: the fast path and the `serde_json` one |
//! | `data` | a `data` string to bytes: the scalar decoder and its dispatch |
//! | `sse`, `avx2`, `portable` | block decoders for the `data` string: 16 and 32 bytes wide (x86-64), 64 bytes in `u64` arithmetic (every CPU) |
//! | `bad` | why a line was skipped |

pub mod bad;
pub mod data;
pub mod line;

mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod sse;
