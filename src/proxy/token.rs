//! Tokens: slab key and socket side packed as `key << 1 | side`, with the
//! reserved tokens at the top of the range. Listeners use `Side::Client`.

use crate::format::side::Side;
use mio::Token;

/// Signals (SIGINT, SIGTERM) are readable.
pub const SIGNALS: Token = Token(usize::MAX);
/// A helper thread (resolver, writer) has news.
pub const WAKER: Token = Token(usize::MAX - 1);

pub fn token(key: usize, side: Side) -> Token {
    Token(key << 1 | side as usize)
}

/// The slot key and side of a non-reserved token.
pub fn split(token: Token) -> (usize, Side) {
    let side = if token.0 & 1 == 0 {
        Side::Client
    } else {
        Side::Target
    };
    (token.0 >> 1, side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for key in [0, 1, 12345] {
            for side in [Side::Client, Side::Target] {
                assert_eq!(split(token(key, side)), (key, side));
            }
        }
        assert_ne!(split(SIGNALS), split(WAKER));
    }
}
