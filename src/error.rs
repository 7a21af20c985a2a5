//! Why rawprox stops without success, for the proxy and the reading
//! subcommands alike: a message for one `Error:` line (exit 1), or an
//! output its reader closed (exit 0 without a word, as with `| head`:
//! SPEC §5, §9).

use std::fmt;
use std::io;

#[derive(Debug, PartialEq)]
pub enum Error {
    /// For the user, after `Error: `; exit 1.
    Message(String),
    /// The output was closed (`| head`): not an error, exit 0 quietly.
    OutputClosed,
}

impl Error {
    /// A failed write of the output.
    pub fn output(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::OutputClosed
        } else {
            Error::Message(format!("cannot write the output: {e}"))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(m) => f.write_str(m),
            Error::OutputClosed => f.write_str("the output was closed"),
        }
    }
}
