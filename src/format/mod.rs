//! The line format (SPEC §4): what a log line is, written and read back.
//! The proxy's log encodes lines with it and the read side decodes them;
//! it knows nothing of sockets, the arena or the subcommands.
//!
//! | module | concern |
//! |---|---|
//! | `connid` | the ConnID and the sequence that hands them out |
//! | `fields` | the field names and their order, for the encoder and the decoder |
//! | `side` | client and target |
//! | `time` | the time stamp, written and read, and its calendar |
//! | `encode` | lines appended to a `Vec<u8>`, the `data` encoding (+ SIMD) |
//! | `decode` | one line to a `Line`; the `data` string to bytes (+ SIMD) |

pub mod connid;
pub mod decode;
pub mod encode;
pub mod fields;
pub mod side;
pub mod time;

/// The `data` encoding written from SPEC §4 alone, shared with the
/// black-box tests: what the encoder and the decoder are tested against.
#[cfg(test)]
#[path = "../../tests/util/reference.rs"]
mod reference;

#[cfg(test)]
mod tests;
