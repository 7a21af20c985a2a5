//! Why a line of a log was skipped (SPEC §9): the decoder's errors, and
//! the reader's for lines it cannot hand over whole.

use std::fmt;

/// Why a line was skipped and counted (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not a JSON value at all.
    NotJson,
    /// JSON with a `ConnID`, but not an `open`, `close` or data line.
    NotALogLine,
    /// A `data` string that does not decode (a broken `%` or `\` escape).
    BadData,
    /// The last line of an input, with no final newline (a file still being
    /// written, or cut).
    Truncated,
    /// A line longer than `MAX_LINE_BYTES`; rawprox's are under 100 KiB.
    TooLong,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bad::NotJson => "not JSON",
            Bad::NotALogLine => "a ConnID line that is not open, close or data",
            Bad::BadData => "a data string that does not decode",
            Bad::Truncated => "a truncated last line",
            Bad::TooLong => "a line over 16 MiB",
        })
    }
}

/// Longest line the reader buffers; longer ones are skipped as `TooLong`.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
