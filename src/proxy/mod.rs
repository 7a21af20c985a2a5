//! The proxy: port rules, their listeners, and the connection pairs that
//! move bytes between a client and its target (SPEC §3).

pub mod listener;
pub mod pair;
pub mod pipe;
pub mod resolve;
pub mod rule;
pub mod token;
pub mod unreachable;
