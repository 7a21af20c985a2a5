//! The `data` encoding of 16 bytes at a time with SSSE3: all of a payload
//! where the CPU lacks AVX-512, what the 64-byte AVX-512 blocks leave where
//! it has it; the byte-by-byte table costs about 3 cycles a byte.
//! Per block: classify each byte (literal, `\`-escape, `%XX`); a block of
//! literals is stored as it is; a block with no `%XX` (most blocks of HTTP
//! headers and JSON: CR LF, quotes) interleaves each byte's 1 or 2 output
//! bytes into pairs and squeezes each half of 8 pairs with a `pshufb` mask
//! chosen by which of them are escapes (256 masks); otherwise build each
//! byte's 1 to 3 output bytes in three vectors (`pshufb` looks up hex
//! digits and escape letters), interleave them into 4-byte slots, and
//! squeeze each group of 4 slots with a `pshufb` mask chosen by the group's
//! lengths (3^4 = 81 masks). The results are checked against the table
//! encoder in the tests of `encode.rs`.

use std::arch::x86_64::*;

/// Encodes the whole 16-byte blocks of `bytes` onto `out` and returns how
/// many bytes that was; 0 when the CPU lacks SSSE3.
pub fn push_blocks(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    if bytes.len() < 16 || !available() {
        return 0;
    }
    // SAFETY: the CPU has SSSE3 (checked just above).
    unsafe { push_blocks_ssse3(out, bytes) }
}

/// True when this CPU can run the SSSE3 block encoder.
pub fn available() -> bool {
    is_x86_feature_detected!("ssse3")
}

/// Length and squeeze mask of a group of 4 slots, by the group's index
/// (base 3, digit k = 0 literal, 1 `\`-escape, 2 `%XX`, for byte k).
struct Group {
    mask: [u8; 16],
    len: usize,
}

/// A mask that keeps nothing, the start of every entry below.
const NO_BYTES: Group = Group {
    mask: [0x80; 16],
    len: 0,
};

const GROUPS: [Group; 81] = {
    let mut groups = [NO_BYTES; 81];
    let mut index = 0;
    while index < 81 {
        let (mut digits, mut len, mut k) = (index, 0, 0);
        while k < 4 {
            let slot_len = digits % 3 + 1;
            let mut j = 0;
            while j < slot_len {
                groups[index].mask[len] = (4 * k + j) as u8;
                len += 1;
                j += 1;
            }
            digits /= 3;
            k += 1;
        }
        groups[index].len = len;
        index += 1;
    }
    groups
};

/// Length and squeeze mask of 8 pairs (first byte, second byte) by which
/// of them are `\`-escapes (bit k: pair k): a literal keeps its first
/// byte, an escape both.
const PAIRS: [Group; 256] = {
    let mut pairs = [NO_BYTES; 256];
    let mut escapes = 0;
    while escapes < 256 {
        let (mut k, mut len) = (0, 0);
        while k < 8 {
            pairs[escapes].mask[len] = 2 * k as u8;
            len += 1;
            if escapes >> k & 1 != 0 {
                pairs[escapes].mask[len] = 2 * k as u8 + 1;
                len += 1;
            }
            k += 1;
        }
        pairs[escapes].len = len;
        escapes += 1;
    }
    pairs
};

#[target_feature(enable = "ssse3")]
fn push_blocks_ssse3(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let blocks = bytes.len() / 16;
    // A block takes at most 48 bytes; the last store writes 16 from its start.
    out.reserve(48 * blocks + 16);
    let start = out.len();
    let mut w = 0;
    let set = |b: u8| _mm_set1_epi8(b as i8);
    let hex_digits = _mm_setr_epi8(
        b'0' as i8, b'1' as i8, b'2' as i8, b'3' as i8, b'4' as i8, b'5' as i8, b'6' as i8,
        b'7' as i8, b'8' as i8, b'9' as i8, b'A' as i8, b'B' as i8, b'C' as i8, b'D' as i8,
        b'E' as i8, b'F' as i8,
    );
    // The letter after `\`, by the low nibble: `"` 0x22, `\` 0x5C, tab 0x09,
    // newline 0x0A and carriage return 0x0D all differ there.
    let escape_letters = _mm_setr_epi8(
        0,
        0,
        b'"' as i8,
        0,
        0,
        0,
        0,
        0,
        0,
        b't' as i8,
        b'n' as i8,
        0,
        b'\\' as i8,
        b'r' as i8,
        0,
        0,
    );
    let nibble = set(0x0F);
    for block in bytes.chunks_exact(16) {
        // SAFETY: `block` holds 16 readable bytes.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast()) };
        let is = |b: u8| _mm_cmpeq_epi8(v, set(b));
        let short = _mm_or_si128(
            _mm_or_si128(is(b'"'), is(b'\\')),
            _mm_or_si128(is(b'\t'), _mm_or_si128(is(b'\n'), is(b'\r'))),
        );
        // 0x20..=0x7E: above 0x1F as a signed byte (0x80.. are negative), not 0x7F.
        let printable = _mm_andnot_si128(is(0x7F), _mm_cmpgt_epi8(v, set(0x1F)));
        let literal = _mm_andnot_si128(_mm_or_si128(short, is(b'%')), printable);
        if _mm_movemask_epi8(literal) == 0xFFFF {
            // Every byte stands for itself: the block as it is.
            // SAFETY: start + w + 16 is within the capacity reserved above.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(start + w).cast(), v) };
            w += 16;
            continue;
        }
        let letter = _mm_shuffle_epi8(escape_letters, _mm_and_si128(v, nibble));
        let hex = _mm_andnot_si128(_mm_or_si128(literal, short), set(0xFF));
        if _mm_movemask_epi8(hex) == 0 {
            let escapes = _mm_movemask_epi8(short) as usize;
            // Literals and `\`-escapes only: 1 or 2 bytes each, as pairs.
            let first = _mm_or_si128(_mm_and_si128(literal, v), _mm_and_si128(short, set(b'\\')));
            let second = _mm_and_si128(short, letter);
            let halves = [
                (_mm_unpacklo_epi8(first, second), escapes & 0xFF),
                (_mm_unpackhi_epi8(first, second), escapes >> 8),
            ];
            for (pairs, escapes) in halves {
                let half = &PAIRS[escapes];
                // SAFETY: `half.mask` is 16 readable bytes.
                let mask = unsafe { _mm_loadu_si128(half.mask.as_ptr().cast()) };
                // SAFETY: start + w + 16 is within the capacity reserved
                // above: w grows by at most 16 per half, 32 per block.
                unsafe {
                    _mm_storeu_si128(
                        out.as_mut_ptr().add(start + w).cast(),
                        _mm_shuffle_epi8(pairs, mask),
                    )
                };
                w += half.len;
            }
            continue;
        }
        let low = _mm_shuffle_epi8(hex_digits, _mm_and_si128(v, nibble));
        let high = _mm_shuffle_epi8(hex_digits, _mm_and_si128(_mm_srli_epi16(v, 4), nibble));
        let first = _mm_or_si128(
            _mm_and_si128(literal, v),
            _mm_or_si128(
                _mm_and_si128(short, set(b'\\')),
                _mm_and_si128(hex, set(b'%')),
            ),
        );
        let second = _mm_or_si128(_mm_and_si128(short, letter), _mm_and_si128(hex, high));
        // Slots of 4 bytes: first, second, low digit, unused.
        let pairs_lo = _mm_unpacklo_epi8(first, second);
        let pairs_hi = _mm_unpackhi_epi8(first, second);
        let thirds_lo = _mm_unpacklo_epi8(low, _mm_setzero_si128());
        let thirds_hi = _mm_unpackhi_epi8(low, _mm_setzero_si128());
        let slots = [
            _mm_unpacklo_epi16(pairs_lo, thirds_lo),
            _mm_unpackhi_epi16(pairs_lo, thirds_lo),
            _mm_unpacklo_epi16(pairs_hi, thirds_hi),
            _mm_unpackhi_epi16(pairs_hi, thirds_hi),
        ];
        // Each group's index in base 3 (digit k: 0 literal, 1 `\`-escape,
        // 2 `%XX`, for byte k), by two multiply-adds: d0 + 3 d1 in each
        // 16-bit lane, then (d0 + 3 d1) + 9 (d2 + 3 d3) in each 32-bit lane.
        let digits = _mm_or_si128(_mm_and_si128(short, set(1)), _mm_and_si128(hex, set(2)));
        let pairs = _mm_maddubs_epi16(digits, _mm_set1_epi16(0x0301));
        let indexes = _mm_madd_epi16(pairs, _mm_set1_epi32(0x0009_0001));
        let mut index = [0u32; 4];
        // SAFETY: `index` is 16 writable bytes.
        unsafe { _mm_storeu_si128(index.as_mut_ptr().cast(), indexes) };
        for (slot, index) in slots.into_iter().zip(index) {
            let group = &GROUPS[index as usize];
            // SAFETY: `group.mask` is 16 readable bytes.
            let mask = unsafe { _mm_loadu_si128(group.mask.as_ptr().cast()) };
            let squeezed = _mm_shuffle_epi8(slot, mask);
            // SAFETY: start + w + 16 is within the capacity reserved above:
            // w grows by at most 12 per group, 48 per block.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(start + w).cast(), squeezed) };
            w += group.len;
        }
    }
    // SAFETY: every byte up to start + w was written by the stores above.
    unsafe { out.set_len(start + w) };
    16 * blocks
}
