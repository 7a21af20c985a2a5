//! The `data` encoding of 64 bytes at a time with AVX-512 (BW, VBMI,
//! VBMI2): all of a payload where the CPU has them. Per block: classify each
//! byte (literal, `\`-escape, `%XX`) into mask registers. A block of
//! literals is stored as it is. A block with no `%XX` (most blocks of HTTP
//! headers and JSON) interleaves each byte's first and second output byte
//! into pairs, one byte permute per half, and squeezes out the unused
//! second bytes with one `vpcompressb`. Otherwise build each byte's 1 to 3
//! output bytes in three vectors, as the SSSE3 encoder does; then, for each
//! quarter of 16 bytes, gather those into 4-byte slots with two byte
//! permutes and squeeze with one `vpcompressb`, whose mask says which bytes
//! of each slot are kept. The results are checked against the table encoder
//! in the tests of `encode.rs`.

use std::arch::x86_64::*;

/// Encodes the whole 64-byte blocks of `bytes` onto `out` and returns how
/// many bytes that was; 0 when the CPU lacks the features.
pub fn push_blocks(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    if bytes.len() < 64 || !available() {
        return 0;
    }
    // SAFETY: the CPU has every feature the function enables (checked above).
    unsafe { push_blocks_avx512(out, bytes) }
}

/// True when this CPU can run the AVX-512 block encoder.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi")
        && is_x86_feature_detected!("avx512vbmi2")
        && is_x86_feature_detected!("bmi2")
}

/// For quarter `q` of a block: byte `4k + j` of the slots takes, for input
/// byte `16q + k`, its first output byte (j = 0, from `first`), its second
/// (j = 1, index + 64: from `second`) or its third (j = 2, from the hex
/// digit vector in a separate permute); byte 3 is never kept.
const SLOT_INDEX: [[u8; 64]; 4] = {
    let mut table = [[0u8; 64]; 4];
    let mut q = 0;
    while q < 4 {
        let mut k = 0;
        while k < 16 {
            let byte = (16 * q + k) as u8;
            table[q][4 * k] = byte;
            table[q][4 * k + 1] = byte + 64;
            table[q][4 * k + 2] = byte;
            k += 1;
        }
        q += 1;
    }
    table
};

/// For half `h` of a block: byte `2k` takes input byte `32h + k` from
/// `first`, byte `2k + 1` the same from `second` (index + 64).
const PAIR_INDEX: [[u8; 64]; 2] = {
    let mut table = [[0u8; 64]; 2];
    let mut h = 0;
    while h < 2 {
        let mut k = 0;
        while k < 32 {
            table[h][2 * k] = (32 * h + k) as u8;
            table[h][2 * k + 1] = (32 * h + k) as u8 + 64;
            k += 1;
        }
        h += 1;
    }
    table
};

/// The first byte of every pair.
const EVENS: u64 = 0x5555_5555_5555_5555;

/// Byte 0 / 1 / 2 of every 4-byte slot.
const FIRSTS: u64 = 0x1111_1111_1111_1111;
const SECONDS: u64 = FIRSTS << 1;
const THIRDS: u64 = FIRSTS << 2;

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,bmi2,popcnt")]
fn push_blocks_avx512(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let blocks = bytes.len() / 64;
    // A block takes at most 192 bytes; the last store writes 64 from its start.
    out.reserve(192 * blocks + 64);
    let start = out.len();
    let mut w = 0;
    let set = |b: u8| _mm512_set1_epi8(b as i8);
    // A 16-byte lookup table in each 128-bit lane, for `vpshufb`.
    let table = |bytes: &[u8; 16]| {
        // SAFETY: `bytes` is 16 readable bytes.
        _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) })
    };
    let hex_digits = table(b"0123456789ABCDEF");
    // The letter after `\`, by the low nibble: `"` 0x22, `\` 0x5C, tab 0x09,
    // newline 0x0A and carriage return 0x0D all differ there.
    let escape_letters = table(b"\0\0\"\0\0\0\0\0\0tn\0\\r\0\0");
    let nibble = set(0x0F);
    let slot_index = SLOT_INDEX.map(|index| {
        // SAFETY: `index` is 64 readable bytes.
        unsafe { _mm512_loadu_si512(index.as_ptr().cast()) }
    });
    let pair_index = PAIR_INDEX.map(|index| {
        // SAFETY: `index` is 64 readable bytes.
        unsafe { _mm512_loadu_si512(index.as_ptr().cast()) }
    });
    for block in bytes.chunks_exact(64) {
        // SAFETY: `block` holds 64 readable bytes.
        let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
        let is = |b: u8| _mm512_cmpeq_epi8_mask(v, set(b));
        let short = is(b'"') | is(b'\\') | is(b'\t') | is(b'\n') | is(b'\r');
        let printable = _mm512_cmpge_epu8_mask(v, set(0x20)) & _mm512_cmple_epu8_mask(v, set(0x7E));
        let literal = printable & !short & !is(b'%');
        if literal == !0 {
            // Every byte stands for itself: the block as it is.
            // SAFETY: start + w + 64 is within the capacity reserved above:
            // w grows by at most 192 per block.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(start + w).cast(), v) };
            w += 64;
            continue;
        }
        let letter = _mm512_shuffle_epi8(escape_letters, _mm512_and_si512(v, nibble));
        let hex = !(literal | short);
        if hex == 0 {
            let first = _mm512_mask_mov_epi8(v, short, set(b'\\'));
            let second = _mm512_maskz_mov_epi8(short, letter);
            for (h, index) in pair_index.iter().enumerate() {
                let pairs = _mm512_permutex2var_epi8(first, *index, second);
                let keep = EVENS | _pdep_u64(short >> (32 * h) & 0xFFFF_FFFF, !EVENS);
                let squeezed = _mm512_maskz_compress_epi8(keep, pairs);
                // SAFETY: start + w + 64 is within the capacity reserved
                // above: w grows by at most 64 per half, 128 per block.
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(start + w).cast(), squeezed) };
                w += keep.count_ones() as usize;
            }
            continue;
        }
        let low = _mm512_shuffle_epi8(hex_digits, _mm512_and_si512(v, nibble));
        let high = _mm512_shuffle_epi8(
            hex_digits,
            _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble),
        );
        let first = _mm512_mask_mov_epi8(
            _mm512_mask_mov_epi8(set(b'%'), literal, v),
            short,
            set(b'\\'),
        );
        let second = _mm512_mask_mov_epi8(high, short, letter);
        for (q, index) in slot_index.iter().enumerate() {
            let pairs = _mm512_permutex2var_epi8(first, *index, second);
            let slots = _mm512_mask_permutexvar_epi8(pairs, THIRDS, *index, low);
            let two_or_more = (short | hex) >> (16 * q) & 0xFFFF;
            let three = hex >> (16 * q) & 0xFFFF;
            let keep = FIRSTS | _pdep_u64(two_or_more, SECONDS) | _pdep_u64(three, THIRDS);
            let squeezed = _mm512_maskz_compress_epi8(keep, slots);
            // SAFETY: start + w + 64 is within the capacity reserved above:
            // w grows by at most 48 per quarter, 192 per block.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(start + w).cast(), squeezed) };
            w += keep.count_ones() as usize;
        }
    }
    // SAFETY: every byte up to start + w was written by the stores above.
    unsafe { out.set_len(start + w) };
    64 * blocks
}
