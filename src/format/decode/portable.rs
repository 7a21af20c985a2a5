//! Decoding a `data` string 64 bytes of text at a time with plain `u64`
//! arithmetic: the block decoder of every CPU without SSE (ARM edge boxes,
//! Windows on ARM). The scalar loop of `data.rs` takes escapes one at a
//! time and mispredicts a branch at the end of nearly every run of them in
//! binary payloads; here the part every byte plays is known from bit masks
//! before any byte is written, so nothing waits on the escape before it.
//!
//! Per block: bit masks of `%`, `\`, quotes and control bytes (8 bytes a
//! word, exact per byte), which bytes runs of backslashes escape
//! (`escaped_bytes`), each escape's byte looked up and written in place of
//! its first character, then the kept bytes copied one by one, each found
//! by its bit (`trailing_zeros`), with no branch on which they are. A
//! block it does not handle (`\u` or an unknown escape, a control byte, a
//! bad hex digit, a bare quote) is left to the scalar loop, which also says
//! what is wrong, as with `sse.rs`; so is a block with few escapes (HTTP
//! headers, most JSON), which that loop takes faster, skipping plain
//! words. Checked against the scalar loop in the tests of `data.rs`.

/// Bit k set where byte k of a block is escaped, given bit k of
/// `backslashes` set where byte k is `\`: a run of backslashes escapes
/// every other byte from the one after its start, so the byte after the run
/// when the run is odd. A block never starts inside an escape, and bit 63
/// of `backslashes` must be clear. Branch-free, as simdjson finds escaped
/// quotes: adding the runs that start on an odd bit to the mask carries
/// each of them out of its run, which flips the even/odd pattern for it.
pub(super) fn escaped_bytes(backslashes: u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let follows = backslashes << 1;
    let odd_starts = backslashes & !EVEN & !follows;
    let carried = odd_starts + backslashes;
    (EVEN ^ (carried << 1)) & follows
}

const LOWS: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// High bit set in each byte of `word` that is zero, and in no other: exact
/// per byte (no borrow from one byte to the next, unlike the usual test).
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOWS) + LOWS) | word) & HIGHS
}

/// Bit k set where byte k of `word` has its high bit set in `highs`, a
/// word with nothing but high bits: the eight bits gathered by one multiply
/// (each lands on its own bit of the top byte, no two sums overlap).
fn gather(highs: u64) -> u64 {
    ((highs >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Masks of one block, bit k for byte k.
struct Masks {
    percents: u64,
    backslashes: u64,
    /// Quotes and bytes below 0x20: not JSON unless escaped.
    not_json: u64,
}

fn masks(block: &[u8; 64]) -> Masks {
    let (mut percents, mut backslashes, mut not_json) = (0, 0, 0);
    for (k, word) in block.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // Below 0x20: the low seven bits under 0x20 and the high bit clear.
        let control = !(((word & LOWS) + ONES * 0x60) | word) & HIGHS;
        let quote = zero_bytes(word ^ (ONES * b'"' as u64));
        percents |= gather(zero_bytes(word ^ (ONES * b'%' as u64))) << (8 * k);
        backslashes |= gather(zero_bytes(word ^ (ONES * b'\\' as u64))) << (8 * k);
        not_json |= gather(control | quote) << (8 * k);
    }
    Masks {
        percents,
        backslashes,
        not_json,
    }
}

/// Marks a table entry that is no hex digit, or no escape.
const INVALID: u16 = 0x100;

/// A hex digit's value, or `INVALID` (upper case is what rawprox writes;
/// lower case is accepted as percent-decoders do).
const HEX: [u16; 256] = {
    let mut table = [INVALID; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            b'0'..=b'9' => c as u16 - b'0' as u16,
            b'A'..=b'F' => c as u16 - b'A' as u16 + 10,
            b'a'..=b'f' => c as u16 - b'a' as u16 + 10,
            _ => INVALID,
        };
        c += 1;
    }
    table
};

/// The byte `\c` stands for, by `c`, or `INVALID` (`\u` among them: the
/// scalar loop's work).
const ESCAPED: [u16; 256] = {
    let mut table = [INVALID; 256];
    table[b'"' as usize] = b'"' as u16;
    table[b'\\' as usize] = b'\\' as u16;
    table[b'/' as usize] = b'/' as u16;
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0C;
    table[b'n' as usize] = b'\n' as u16;
    table[b'r' as usize] = b'\r' as u16;
    table[b't' as usize] = b'\t' as u16;
    table
};

/// Decodes whole 64-byte blocks of `text` into `out` from the start, as
/// long as each block is one it handles; returns `(text used, bytes
/// written)`, always at an escape boundary. `out` must hold at least
/// `text.len() + 8` bytes (a store may write past what it keeps).
pub fn decode_blocks(text: &[u8], out: &mut [u8]) -> (usize, usize) {
    assert!(out.len() >= text.len() + 8, "room for the decoded bytes");
    let (mut i, mut j) = (0usize, 0usize);
    // Each block reads `text[i..i + 66]` (the two bytes after it for the
    // last escape's digits), so it stops 66 bytes before the end.
    while let Some(window) = text.get(i..i + 66) {
        let window: &[u8; 66] = window.try_into().expect("66 bytes");
        let mut block: [u8; 64] = window[..64].try_into().expect("64 bytes");
        let m = masks(&block);
        // A first block with fewer than 8 escapes (HTTP headers, most
        // JSON; binary has one every 3 to 4 characters): the scalar loop
        // takes such text faster, skipping plain words. Once in binary,
        // blocks go on without asking.
        if i == 0 && (m.percents | m.backslashes).count_ones() < 8 {
            break;
        }
        // `j <= i` (every byte written stands for at least one of text
        // used), so the block's bytes fit.
        let dest: &mut [u8; 64] = (&mut out[j..j + 64]).try_into().expect("64 bytes");
        // Bit 63 is left out of the runs (see `escaped_bytes`); a
        // backslash there is escaped or starts an escape past the block.
        let escaped = escaped_bytes(m.backslashes & !(1 << 63));
        let starts = m.backslashes & !escaped;
        let percents = m.percents & !escaped;
        // A quote or a control byte no backslash escapes: not JSON.
        let mut bad = u16::from(m.not_json & !escaped != 0) << 8;
        // Each escape's byte in place of its first character, found from
        // the one or two characters after it, which may be past the block.
        // Both kinds worked out and one kept, so that a mix of `%XX` and
        // `\c` costs no branch.
        let mut escapes = starts | percents;
        while escapes != 0 {
            let k = escapes.trailing_zeros() as usize & 63;
            escapes &= escapes - 1;
            let (c1, c2) = (usize::from(window[k + 1]), usize::from(window[k + 2]));
            let percent = 0u16.wrapping_sub((percents >> k & 1) as u16);
            let byte = (HEX[c1] << 4 | HEX[c2]) & percent | ESCAPED[c1] & !percent;
            bad |= byte;
            block[k] = byte as u8;
        }
        if bad >= INVALID {
            break;
        }
        // The characters after each escape's first, bits 64 and 65 for
        // those past the block.
        let dropped = escaped | percents << 1 | percents << 2;
        let past = (starts >> 63) + (percents >> 62 & 1) + (percents >> 63) * 2;
        // The kept bytes one by one, each found by its bit: no branch on
        // which they are.
        let (mut keep, mut n) = (!dropped, 0);
        while keep != 0 {
            dest[n & 63] = block[keep.trailing_zeros() as usize & 63];
            keep &= keep - 1;
            n += 1;
        }
        j += n;
        i += 64 + past as usize;
    }
    (i, j)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `escaped_bytes` against a byte-by-byte walk, for every 16-bit mask
    /// and random 32-bit ones.
    #[test]
    fn runs_of_backslashes_escape_every_other_byte() {
        let walk = |bsl: u64| {
            let (mut escaped, mut k) = (0u64, 0);
            while k < 63 {
                if bsl >> k & 1 != 0 {
                    escaped |= 1 << (k + 1);
                    k += 2;
                } else {
                    k += 1;
                }
            }
            escaped
        };
        for bsl in 0..=0xFFFFu64 {
            assert_eq!(escaped_bytes(bsl), walk(bsl), "{bsl:#b}");
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bsl = seed & seed >> 32 & 0xFFFF_FFFF | seed >> 40 & 0xFFFF_FFFF;
            assert_eq!(escaped_bytes(bsl), walk(bsl), "{bsl:#b}");
        }
    }

    /// The masks name exactly the bytes they say, for every byte value at
    /// every place of a block, among neighbours that are zero, 0x01 or
    /// 0xFF (where the usual zero-byte test borrows or carries).
    #[test]
    fn masks_are_exact_per_byte() {
        for value in 0..=255u8 {
            for fill in [0u8, 1, 0x7F, 0x80, 0xFF, b'%' + 1, b'a'] {
                for at in 0..64 {
                    let mut block = [fill; 64];
                    block[at] = value;
                    let m = masks(&block);
                    let want = |f: &dyn Fn(u8) -> bool| {
                        (0..64).fold(0u64, |mask, k| mask | u64::from(f(block[k])) << k)
                    };
                    assert_eq!(m.percents, want(&|b| b == b'%'));
                    assert_eq!(m.backslashes, want(&|b| b == b'\\'));
                    assert_eq!(m.not_json, want(&|b| b < 0x20 || b == b'"'));
                }
            }
        }
    }
}
