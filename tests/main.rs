//! Black-box tests of the `rawprox` binary: one test crate (see Cargo.toml,
//! `autotests = false`) that runs the real executable with real arguments and
//! talks to it over real sockets on 127.0.0.1 and ::1 only.
//!
//! Shared helpers live in `util`; `docs` checks that the repository cites its
//! own contract; `readme` runs the README's and the guide's examples; each
//! other module covers one part of that contract, docs/SPEC.md.

mod util;

mod careless;
mod cli;
mod destinations;
mod docs;
mod faults;
mod forwarding;
mod hostile_read;
mod logging;
mod mcp;
mod mcp_read;
mod platform;
mod read;
mod readme;
mod replay;
mod shutdown;
mod soak;
