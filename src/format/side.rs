//! The two sides of a connection (SPEC §4): the client, which connected to
//! rawprox, and the target, which rawprox connected to. A line's `from` and
//! `to` are these two sides' addresses; the proxy packs a side into its
//! tokens, the read side tells them apart by address.

/// A side of a connection. As an index: client 0, target 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client: for the proxy, the accepted socket (or the listener).
    Client = 0,
    /// The target: for the proxy, the socket it opened to the target.
    Target = 1,
}

impl Side {
    /// The spec's word for it.
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

    /// `client` or `target`, as `name` writes them.
    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "client" => Some(Side::Client),
            "target" => Some(Side::Target),
            _ => None,
        }
    }
}
