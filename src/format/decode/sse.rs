//! Decoding a `data` string 16 bytes of text at a time with SSE4.1, for
//! text that is mostly escapes (binary payloads), where the scalar decoder
//! stalls on a branch per byte. Per block: masks of `%`, `\` and control
//! bytes, and which bytes runs of backslashes escape (`escaped_bytes`);
//! each escape's byte built in place of its first character (`%XX`
//! from the hex values of the two bytes after it, `\c` from `c`); then the
//! characters after each escape squeezed out, 8 at a time, with a byte
//! shuffle from a table indexed by which of the 8 are kept. A block it does
//! not handle (`\u` or an unknown escape, a control byte, a bad hex digit,
//! a bare quote) is left to the scalar decoder, which also says what is wrong.
//! Checked against it in the tests of `data.rs`.

use super::portable::escaped_bytes;
use std::arch::x86_64::*;

/// True when this CPU can run `decode_blocks`.
pub fn available() -> bool {
    is_x86_feature_detected!("ssse3")
        && is_x86_feature_detected!("sse4.1")
        && is_x86_feature_detected!("popcnt")
}

/// For each set of kept bytes among 8 (bit k: byte k), the shuffle that
/// moves them to the front, in order.
pub(super) const COMPRESS: [[u8; 8]; 256] = {
    let mut table = [[0x80u8; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut k, mut n) = (0, 0);
        while k < 8 {
            if mask >> k & 1 != 0 {
                table[mask][n] = k as u8;
                n += 1;
            }
            k += 1;
        }
        mask += 1;
    }
    table
};

/// The escapes JSON allows but `\u`: `\c` and the byte it stands for.
const ESCAPES: [(u8, u8); 8] = [
    (b'"', b'"'),
    (b'\\', b'\\'),
    (b'/', b'/'),
    (b'b', 0x08),
    (b'f', 0x0C),
    (b'n', b'\n'),
    (b'r', b'\r'),
    (b't', b'\t'),
];

/// Where `\c`'s `c` goes in a 16-entry table: `((c >> 1) + (c >> 3)) &
/// 15`, which differs for the eight characters of `ESCAPES` (found by
/// search), so one byte shuffle looks an escape up. On vectors the shifts
/// are 16-bit and leak the next byte's bits into the top of each byte: the
/// low four bits of the sum do not see them.
pub(super) const fn escape_slot(c: u8) -> usize {
    (((c >> 1) + (c >> 3)) & 15) as usize
}

/// By `escape_slot`: the character escaped there (for a free slot, one
/// whose slot it is not, so it never matches), and the byte it stands for.
pub(super) const ESCAPE_TABLES: ([u8; 16], [u8; 16]) = {
    let mut chars = [0u8; 16];
    let mut bytes = [0u8; 16];
    let mut slot = 0;
    while slot < 16 {
        chars[slot] = if escape_slot(0) != slot { 0 } else { 0xFF };
        slot += 1;
    }
    let mut taken = [false; 16];
    let mut k = 0;
    while k < ESCAPES.len() {
        let (c, byte) = ESCAPES[k];
        assert!(!taken[escape_slot(c)], "two escapes share a slot");
        taken[escape_slot(c)] = true;
        chars[escape_slot(c)] = c;
        bytes[escape_slot(c)] = byte;
        k += 1;
    }
    (chars, bytes)
};

/// The byte `\c` stands for, by the tables (the scalar twin of the
/// vector lookup, for the tests).
#[cfg(test)]
fn escaped_byte(c: u8) -> Option<u8> {
    let slot = escape_slot(c);
    (ESCAPE_TABLES.0[slot] == c).then_some(ESCAPE_TABLES.1[slot])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables give each escape its byte, and nothing for any other
    /// character.
    #[test]
    fn the_escape_tables_know_exactly_the_json_escapes() {
        for c in 0..=255u8 {
            let want = ESCAPES.iter().find(|e| e.0 == c).map(|e| e.1);
            assert_eq!(escaped_byte(c), want, "\\{}", c as char);
        }
    }
}

/// Bit k set where byte k of `v` is a hex digit, and the digits' values.
#[target_feature(enable = "ssse3,sse4.1")]
fn hex_digits(v: __m128i) -> (u32, __m128i) {
    let num = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
    let is_num = _mm_cmpeq_epi8(_mm_min_epu8(num, _mm_set1_epi8(9)), num);
    let alpha = _mm_sub_epi8(
        _mm_or_si128(v, _mm_set1_epi8(0x20)),
        _mm_set1_epi8(b'a' as i8),
    );
    let is_alpha = _mm_cmpeq_epi8(_mm_min_epu8(alpha, _mm_set1_epi8(5)), alpha);
    let value = _mm_blendv_epi8(_mm_add_epi8(alpha, _mm_set1_epi8(10)), num, is_num);
    let mask = _mm_movemask_epi8(_mm_or_si128(is_num, is_alpha)) as u32;
    (mask, value)
}

/// Bit k set where byte k of `v` equals `c`.
#[target_feature(enable = "ssse3,sse4.1")]
fn bits(v: __m128i, c: u8) -> u32 {
    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8))) as u32
}

/// Decodes whole 16-byte blocks of `text` into `out` from the start, as
/// long as each block is one it handles; returns `(text used, bytes
/// written)`, always at an escape boundary. `out` must hold at least
/// `text.len() + 8` bytes (a store may write past what it keeps).
///
/// # Safety
/// The CPU must have the features `available` checks.
#[target_feature(enable = "ssse3,sse4.1,popcnt")]
pub unsafe fn decode_blocks(text: &[u8], out: &mut [u8]) -> (usize, usize) {
    assert!(out.len() >= text.len() + 8, "room for the decoded bytes");
    let (mut i, mut j) = (0usize, 0usize);
    // SAFETY: each table is 16 bytes, what the loads read.
    let (chars, bytes) = unsafe {
        (
            _mm_loadu_si128(ESCAPE_TABLES.0.as_ptr().cast()),
            _mm_loadu_si128(ESCAPE_TABLES.1.as_ptr().cast()),
        )
    };
    // Each block reads `text[i..i + 18]` (the two bytes after it for the
    // last escape's digits), so it stops 18 bytes before the end.
    while i + 18 <= text.len() {
        // SAFETY: `i + 18 <= text.len()`, so the three 16-byte loads at i,
        // i + 1 and i + 2 are inside `text`.
        let (v, v1, v2) = unsafe {
            let at = text.as_ptr().add(i);
            (
                _mm_loadu_si128(at.cast()),
                _mm_loadu_si128(at.add(1).cast()),
                _mm_loadu_si128(at.add(2).cast()),
            )
        };
        let pct = bits(v, b'%');
        let bsl = bits(v, b'\\');
        let controls =
            _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v)) as u32;
        // Escaped bytes (bit 16: the byte after the block; a block never
        // starts inside an escape) and the backslashes that start one.
        let escapee = escaped_bytes(u64::from(bsl)) as u32;
        let starts = bsl & !escapee;
        // A quote no backslash escapes would have ended the string.
        let quotes = bits(v, b'"') & !escapee;
        // Those and control bytes are the scalar decoder's job.
        if controls | quotes != 0 {
            break;
        }
        // An escape may end past the block (its digits are in v1, v2).
        let digits = (pct << 1 | pct << 2) & 0x3FFFF;
        let (hex_high, high) = hex_digits(v1);
        let (hex_low, low) = hex_digits(v2);
        if pct & !(hex_high & hex_low) != 0 {
            break;
        }
        // The 16-bit shift moves a neighbour's bits into each byte's low
        // nibble: masked off.
        let hex = _mm_or_si128(
            _mm_and_si128(_mm_slli_epi16(high, 4), _mm_set1_epi8(0xF0u8 as i8)),
            low,
        );
        let mut decoded = _mm_blendv_epi8(v, hex, _mm_cmpeq_epi8(_mm_set1_epi8(b'%' as i8), v));
        if starts != 0 {
            // The escaped characters are in v1: each looked up by its slot.
            let slot = _mm_and_si128(
                _mm_add_epi8(_mm_srli_epi16(v1, 1), _mm_srli_epi16(v1, 3)),
                _mm_set1_epi8(15),
            );
            let is_escape = _mm_cmpeq_epi8(_mm_shuffle_epi8(chars, slot), v1);
            let mapped = _mm_and_si128(_mm_shuffle_epi8(bytes, slot), is_escape);
            if starts & !(_mm_movemask_epi8(is_escape) as u32) != 0 {
                break;
            }
            // Escaped backslashes get a byte too, squeezed out below.
            let at_bsl = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            decoded = _mm_blendv_epi8(decoded, mapped, at_bsl);
        }
        let keep = !(digits | escapee) & 0xFFFF;
        let (lo, hi) = (keep & 0xFF, keep >> 8);
        // SAFETY: each table row is 8 bytes, what `_mm_loadl_epi64` reads.
        let (shuffle_lo, shuffle_hi) = unsafe {
            (
                _mm_loadl_epi64(COMPRESS[lo as usize].as_ptr().cast()),
                _mm_add_epi8(
                    _mm_loadl_epi64(COMPRESS[hi as usize].as_ptr().cast()),
                    _mm_set1_epi8(8),
                ),
            )
        };
        let first = lo.count_ones() as usize;
        // SAFETY: `j <= i` (every byte written stands for at least one of
        // text used), so each 8-byte store ends by `i + 16 <= text.len() +
        // 8 <= out.len()`.
        unsafe {
            let at = out.as_mut_ptr().add(j);
            _mm_storel_epi64(at.cast(), _mm_shuffle_epi8(decoded, shuffle_lo));
            _mm_storel_epi64(at.add(first).cast(), _mm_shuffle_epi8(decoded, shuffle_hi));
        }
        // Text used: the block, and the tail of an escape that ends past it.
        i += 16 + ((digits | escapee) >> 16).count_ones() as usize;
        j += first + hi.count_ones() as usize;
    }
    (i, j)
}
