//! `sse.rs`'s block decoder, 32 bytes of text at a time with AVX2: the same
//! masks and escapes built in place, on twice the width; the squeeze stays
//! 8 bytes at a time (AVX2 shuffles within 16-byte lanes). Checked against
//! the scalar decoder in the tests of `data.rs`.

use super::portable::escaped_bytes;
use super::sse::{COMPRESS, ESCAPE_TABLES};
use std::arch::x86_64::*;

/// True when this CPU can run `decode_blocks`.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
}

/// Bit k set where byte k of `v` is a hex digit, and the digits' values.
#[target_feature(enable = "avx2")]
fn hex_digits(v: __m256i) -> (u32, __m256i) {
    let num = _mm256_sub_epi8(v, _mm256_set1_epi8(b'0' as i8));
    let is_num = _mm256_cmpeq_epi8(_mm256_min_epu8(num, _mm256_set1_epi8(9)), num);
    let alpha = _mm256_sub_epi8(
        _mm256_or_si256(v, _mm256_set1_epi8(0x20)),
        _mm256_set1_epi8(b'a' as i8),
    );
    let is_alpha = _mm256_cmpeq_epi8(_mm256_min_epu8(alpha, _mm256_set1_epi8(5)), alpha);
    let value = _mm256_blendv_epi8(_mm256_add_epi8(alpha, _mm256_set1_epi8(10)), num, is_num);
    let mask = _mm256_movemask_epi8(_mm256_or_si256(is_num, is_alpha)) as u32;
    (mask, value)
}

/// Bit k set where byte k of `v` equals `c`.
#[target_feature(enable = "avx2")]
fn bits(v: __m256i, c: u8) -> u32 {
    _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8))) as u32
}

/// Squeezes the `keep` bytes of `half` (16 bytes) to `out`; returns how
/// many. Writes 8 bytes past them at most.
///
/// # Safety
/// `out` must be valid for 8 bytes past the kept ones of each 8-byte group.
#[target_feature(enable = "avx2,popcnt")]
unsafe fn squeeze(half: __m128i, keep: u32, out: *mut u8) -> usize {
    let (lo, hi) = ((keep & 0xFF) as usize, (keep >> 8 & 0xFF) as usize);
    let first = lo.count_ones() as usize;
    // SAFETY: the table rows are 8 bytes, what `_mm_loadl_epi64` reads;
    // the stores are within what the caller vouches for.
    unsafe {
        let shuffle_lo = _mm_loadl_epi64(COMPRESS[lo].as_ptr().cast());
        let shuffle_hi = _mm_add_epi8(
            _mm_loadl_epi64(COMPRESS[hi].as_ptr().cast()),
            _mm_set1_epi8(8),
        );
        _mm_storel_epi64(out.cast(), _mm_shuffle_epi8(half, shuffle_lo));
        _mm_storel_epi64(out.add(first).cast(), _mm_shuffle_epi8(half, shuffle_hi));
    }
    first + hi.count_ones() as usize
}

/// As `sse::decode_blocks`, 32 bytes of text per block: `(text used,
/// bytes written)`; `out` must hold at least `text.len() + 8` bytes.
///
/// # Safety
/// The CPU must have the features `available` checks.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn decode_blocks(text: &[u8], out: &mut [u8]) -> (usize, usize) {
    assert!(out.len() >= text.len() + 8, "room for the decoded bytes");
    let (mut i, mut j) = (0usize, 0usize);
    // SAFETY: each table is 16 bytes, what the loads read; both lanes get
    // the table (the shuffle looks up within each 16-byte lane).
    let (chars, bytes) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(ESCAPE_TABLES.0.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(ESCAPE_TABLES.1.as_ptr().cast())),
        )
    };
    while i + 34 <= text.len() {
        // SAFETY: `i + 34 <= text.len()`: the loads at i, i + 1 and i + 2
        // are inside `text`.
        let (v, v1, v2) = unsafe {
            let at = text.as_ptr().add(i);
            (
                _mm256_loadu_si256(at.cast()),
                _mm256_loadu_si256(at.add(1).cast()),
                _mm256_loadu_si256(at.add(2).cast()),
            )
        };
        let pct = u64::from(bits(v, b'%'));
        let bsl = u64::from(bits(v, b'\\'));
        let controls = _mm256_movemask_epi8(_mm256_cmpeq_epi8(
            _mm256_min_epu8(v, _mm256_set1_epi8(0x1F)),
            v,
        )) as u32;
        // Escaped bytes (bit 32: the byte after the block) and the
        // backslashes that start an escape.
        let escapee = escaped_bytes(bsl);
        let starts = bsl & !escapee;
        let quotes = u64::from(bits(v, b'"')) & !escapee;
        if controls != 0 || quotes != 0 {
            break;
        }
        let digits = pct << 1 | pct << 2;
        let (hex_high, high) = hex_digits(v1);
        let (hex_low, low) = hex_digits(v2);
        if pct & !u64::from(hex_high & hex_low) != 0 {
            break;
        }
        let hex = _mm256_or_si256(
            _mm256_and_si256(_mm256_slli_epi16(high, 4), _mm256_set1_epi8(0xF0u8 as i8)),
            low,
        );
        let at_pct = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'%' as i8));
        let mut decoded = _mm256_blendv_epi8(v, hex, at_pct);
        if starts != 0 {
            // The escaped characters are in v1: each looked up by its slot
            // (`sse::escape_slot`).
            let slot = _mm256_and_si256(
                _mm256_add_epi8(_mm256_srli_epi16(v1, 1), _mm256_srli_epi16(v1, 3)),
                _mm256_set1_epi8(15),
            );
            let is_escape = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(chars, slot), v1);
            let mapped = _mm256_and_si256(_mm256_shuffle_epi8(bytes, slot), is_escape);
            if starts & !u64::from(_mm256_movemask_epi8(is_escape) as u32) != 0 {
                break;
            }
            // Escaped backslashes get a byte too, squeezed out below.
            let at_bsl = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
            decoded = _mm256_blendv_epi8(decoded, mapped, at_bsl);
        }
        let keep = (!(digits | escapee) & 0xFFFF_FFFF) as u32;
        // SAFETY: `j <= i` (each byte written stands for at least one of
        // text used): the squeezes write by `i + 32 + 8 <= text.len() + 8
        // <= out.len()`.
        let written = unsafe {
            let at = out.as_mut_ptr().add(j);
            let first = squeeze(_mm256_castsi256_si128(decoded), keep & 0xFFFF, at);
            first
                + squeeze(
                    _mm256_extracti128_si256(decoded, 1),
                    keep >> 16,
                    at.add(first),
                )
        };
        i += 32 + ((digits | escapee) >> 32).count_ones() as usize;
        j += written;
    }
    (i, j)
}
