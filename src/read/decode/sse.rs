//! Decoding a `data` string 16 bytes of text at a time with SSE4.1, for
//! text that is mostly escapes (binary payloads), where the scalar decoder
//! stalls on a branch per byte. Per block: masks of `%`, `\` and control
//! bytes, and which bytes runs of backslashes escape (`escaped_bytes`);
//! each escape's byte built in place of its first character (`%XX`
//! from the hex values of the two bytes after it, `\c` from `c`); then the
//! characters after each escape squeezed out, 8 at a time, with a byte
//! shuffle from a table indexed by which of the 8 are kept. A block it does
//! not handle (`\u`, a control byte, a bad hex digit, a bare quote) is
//! left to the scalar decoder, which also says what is wrong.
//! Checked against it in the tests of `decode.rs`.

use super::escaped_bytes;
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
pub(super) const ESCAPES: [(u8, u8); 8] = [
    (b'"', b'"'),
    (b'\\', b'\\'),
    (b'/', b'/'),
    (b'b', 0x08),
    (b'f', 0x0C),
    (b'n', b'\n'),
    (b'r', b'\r'),
    (b't', b'\t'),
];

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
            let mut mapped = _mm_setzero_si128();
            for (c, byte) in ESCAPES {
                let is = _mm_cmpeq_epi8(v1, _mm_set1_epi8(c as i8));
                mapped = _mm_or_si128(mapped, _mm_and_si128(is, _mm_set1_epi8(byte as i8)));
            }
            let unmapped = _mm_movemask_epi8(_mm_cmpeq_epi8(mapped, _mm_setzero_si128())) as u32;
            if starts & unmapped != 0 {
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
