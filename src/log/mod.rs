//! The log: lines encoded once into an arena, handed at each flush to a
//! writer thread that appends them to stdout or time-rotated files (SPEC §4, §5).

pub mod arena;
pub mod connid;
pub mod encode;
pub mod timefmt;
pub mod writer;
