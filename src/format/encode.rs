//! NDJSON traffic lines (SPEC §4), appended straight to a `Vec<u8>` with no
//! intermediate `String`. The field order is fixed, so lines are written by
//! hand from the pieces in `fields.rs`, which the decoder's fast path
//! expects too; `serde_json` is kept for the control events' strings.
//!
//! Address strings are trusted: client addresses come from `SocketAddr` and
//! targets from a validated `PortRule`, neither holds `"` or `\`.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod ssse3;

use crate::format::connid::ConnId;
use crate::format::fields;
use crate::format::time::LineClock;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// How each byte is written inside the `data` string (SPEC §4), packed in a
/// u32: the text in the low three bytes (little-endian), its length in the
/// top byte. The encoder stores all four bytes and advances by the length,
/// so the top byte is always overwritten or cut off.
const ENCODED: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let (text, len): ([u8; 3], u32) = match b {
            b'"' => ([b'\\', b'"', 0], 2),
            b'\\' => ([b'\\', b'\\', 0], 2),
            b'\t' => ([b'\\', b't', 0], 2),
            b'\n' => ([b'\\', b'n', 0], 2),
            b'\r' => ([b'\\', b'r', 0], 2),
            0x20..=0x7E if b != b'%' => ([b, 0, 0], 1),
            // `%`, the other controls, 0x7F and 0x80-0xFF.
            _ => ([b'%', HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]], 3),
        };
        table[i] = text[0] as u32 | (text[1] as u32) << 8 | (text[2] as u32) << 16 | len << 24;
        i += 1;
    }
    table
};

/// The top bit of each byte in a u64.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Non-zero when some of the 8 bytes in `word` needs escaping: is outside
/// 0x20..=0x7E, or is `"`, `\\` or `%` (SWAR: a byte-wise test on a u64).
fn needs_escape(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // High bit of a byte set where that byte of `v` is zero.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let special = zero(word ^ (ONES * 0x22))
        | zero(word ^ (ONES * 0x5C))
        | zero(word ^ (ONES * 0x25))
        | zero(word ^ (ONES * 0x7F));
    (below_space | special | word) & HIGHS
}

/// Appends the `data` encoding of `bytes` (without quotes) to `out`, with
/// the fastest encoder this CPU runs (`Encoder::chosen`).
pub fn push_data(out: &mut Vec<u8>, bytes: &[u8]) {
    Encoder::chosen().push(out, bytes);
}

/// `push_data` with no SIMD: the whole encoder of every CPU that is not
/// x86-64 (ARM edge boxes, Windows on ARM), and of an x86-64 without SSSE3.
///
/// 8 bytes at a time: a run of two words or more whose bytes stand for
/// themselves is copied in one go; other words go in groups of up to 16,
/// each by the cheapest way its bytes allow: a word with a byte of 0x80 or
/// more byte by byte through `ENCODED`, a plain word in one store, a text
/// word that needs escaping two bytes at a time through `ascii_pairs`.
/// Stores are 8 bytes wide and written straight into `out`'s spare
/// capacity: no bounds check and no copy from a buffer (issue 19: HTTP
/// text 2.6 -> 3.9 GB/s, mixed JSON 1.7 -> 3.2, binary 1.8 -> 2.5 in
/// `cargo bench --bench encode`).
pub fn push_data_portable(out: &mut Vec<u8>, bytes: &[u8]) {
    const GROUP: usize = 16;
    let words = bytes.len() / 8;
    // A word's output is at most 24 bytes, and its last store starts within
    // them: 24 per word plus one 8-byte store holds every store below.
    out.reserve(24 * words + 8);
    let start = out.len();
    let room = out.capacity() - start;
    let word = |i: usize| {
        let word: [u8; 8] = bytes[8 * i..8 * i + 8].try_into().expect("8 bytes");
        u64::from_le_bytes(word)
    };
    let plain_run_at =
        |i: usize| i + 2 <= words && (needs_escape(word(i)) | needs_escape(word(i + 1))) == 0;
    let pairs = ascii_pairs();
    let base = out.as_mut_ptr();
    let store = |w: usize, v: u64| {
        debug_assert!(w + 8 <= room);
        // SAFETY: before word i, w is at most 24 * i, and each store starts
        // within the word's 24 bytes, so it ends within the room reserved.
        unsafe { base.add(start + w).cast::<u64>().write_unaligned(v.to_le()) }
    };
    let mut w = 0usize;
    let mut i = 0;
    while i < words {
        if plain_run_at(i) {
            let first = i;
            i += 2;
            // Four words per step while all are plain, then one.
            while i + 4 <= words
                && (needs_escape(word(i))
                    | needs_escape(word(i + 1))
                    | needs_escape(word(i + 2))
                    | needs_escape(word(i + 3)))
                    == 0
            {
                i += 4;
            }
            while i < words && needs_escape(word(i)) == 0 {
                i += 1;
            }
            let run = &bytes[8 * first..8 * i];
            debug_assert!(w + run.len() <= room);
            // SAFETY: as for `store`, the run's words take 8 bytes each.
            unsafe {
                base.add(start + w)
                    .copy_from_nonoverlapping(run.as_ptr(), run.len())
            };
            w += run.len();
            continue;
        }
        for i in i..words.min(i + GROUP) {
            let v = word(i);
            if v & HIGHS != 0 {
                // Binary, or UTF-8: byte by byte.
                for b in v.to_le_bytes() {
                    let packed = ENCODED[b as usize];
                    store(w, packed as u64);
                    w += (packed >> 24 & 3) as usize;
                }
            } else if needs_escape(v) == 0 {
                store(w, v);
                w += 8;
            } else {
                // Text: four lookups of two bytes each. Each byte's top bit
                // is clear, so squeezing it out leaves 14-bit pair indexes.
                let squeezed = (v & 0x007F_007F_007F_007F) | (v >> 1 & 0x3F80_3F80_3F80_3F80);
                for k in 0..4 {
                    let packed = pairs[(squeezed >> (16 * k)) as usize & 0x3FFF];
                    store(w, packed);
                    w += (packed >> 56) as usize;
                }
            }
        }
        i = words.min(i + GROUP);
    }
    // SAFETY: the w bytes after `start` were all written above.
    unsafe { out.set_len(start + w) };
    push_table(out, &bytes[8 * words..]);
}

/// `ENCODED` for two bytes below 0x80 at once, indexed by `a | b << 7`:
/// up to 6 bytes of text (little-endian), their length in the top byte.
/// 128 KiB, built on first use: only CPUs that run the portable encoder
/// pay for it.
fn ascii_pairs() -> &'static [u64; 1 << 14] {
    static PAIRS: std::sync::OnceLock<Box<[u64; 1 << 14]>> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| {
        // Made on the heap: not 128 KiB on a thread's stack first.
        let mut table: Box<[u64; 1 << 14]> = vec![0u64; 1 << 14]
            .into_boxed_slice()
            .try_into()
            .expect("16,384 entries");
        for (i, slot) in table.iter_mut().enumerate() {
            let (a, b) = (ENCODED[i & 0x7F] as u64, ENCODED[i >> 7] as u64);
            let (a_len, b_len) = (a >> 24, b >> 24);
            let text = (a & 0xFF_FFFF) | (b & 0xFF_FFFF) << (8 * a_len);
            *slot = text | (a_len + b_len) << 56;
        }
        table
    })
}

/// The encoders `push_data` chooses from. Public so that `cargo bench
/// --bench encode` measures each one this CPU runs beside the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoder {
    /// The AVX-512 block encoder over the whole payload, 64 bytes at a
    /// time; SSSE3 blocks and the table for what is left.
    Avx512,
    /// The SSSE3 block encoder over the whole payload.
    Ssse3,
    /// `push_data_portable`.
    Portable,
}

impl Encoder {
    /// The one `push_data` takes on this CPU: decided once, not per line.
    /// The widest the CPU runs: on an AVX-512 Xeon (`cargo bench --bench
    /// encode`, same run) the AVX-512 blocks took every shape at 1.5 to 2.7
    /// times the SSSE3 blocks' speed (issue 19).
    pub fn chosen() -> Encoder {
        static CHOSEN: std::sync::OnceLock<Encoder> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            [Encoder::Avx512, Encoder::Ssse3]
                .into_iter()
                .find(|e| e.runs_here())
                .unwrap_or(Encoder::Portable)
        })
    }

    /// True when this CPU has what the encoder needs.
    pub fn runs_here(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Encoder::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Encoder::Ssse3 => ssse3::available(),
            Encoder::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Appends the `data` encoding of `bytes` with this encoder; one the
    /// CPU lacks leaves its blocks to the table (the same bytes, slower).
    pub fn push(self, out: &mut Vec<u8>, bytes: &[u8]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Encoder::Avx512 => {
                let bytes = &bytes[avx512::push_blocks(out, bytes)..];
                let bytes = &bytes[ssse3::push_blocks(out, bytes)..];
                push_table(out, bytes);
            }
            #[cfg(target_arch = "x86_64")]
            Encoder::Ssse3 => {
                let done = ssse3::push_blocks(out, bytes);
                push_table(out, &bytes[done..]);
            }
            _ => push_data_portable(out, bytes),
        }
    }
}

fn push_table(out: &mut Vec<u8>, bytes: &[u8]) {
    for group in bytes.chunks(32) {
        push_through_table(out, group);
    }
}

/// Encodes up to 32 bytes through the table.
fn push_through_table(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= 32);
    // 32 bytes take at most 96, plus the 4th byte of the last store.
    let mut buf = [0u8; 100];
    let mut w = 0;
    for &b in bytes {
        let packed = ENCODED[b as usize];
        buf[w..w + 4].copy_from_slice(&packed.to_le_bytes());
        // Lengths are 1 to 3; the mask lets the compiler see it (measured:
        // HTTP text 1.1 -> 1.35 GB/s).
        w += (packed >> 24 & 3) as usize;
    }
    out.extend_from_slice(&buf[..w]);
}

fn push_head(out: &mut Vec<u8>, clock: &mut LineClock, micros: u64, id: &ConnId) {
    out.extend_from_slice(fields::TIME);
    clock.push_time(micros, out);
    out.extend_from_slice(fields::CONN_ID);
    out.extend_from_slice(&id.0);
}

/// Appends `n` in decimal, without allocating.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_from_to(out: &mut Vec<u8>, from: &str, to: &str) {
    out.extend_from_slice(fields::FROM);
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(fields::TO);
    out.extend_from_slice(to.as_bytes());
}

fn push_event(out: &mut Vec<u8>, event: &str) {
    out.extend_from_slice(fields::EVENT);
    out.extend_from_slice(event.as_bytes());
}

/// `{"time":…,"ConnID":…,"event":"open","from":…,"to":…,"listen_port":N}`
pub fn push_open_line(
    out: &mut Vec<u8>,
    clock: &mut LineClock,
    micros: u64,
    id: &ConnId,
    from: &str,
    to: &str,
    listen_port: u16,
) {
    push_head(out, clock, micros, id);
    push_event(out, fields::OPEN);
    push_from_to(out, from, to);
    out.extend_from_slice(fields::LISTEN_PORT);
    push_decimal(out, listen_port);
    out.extend_from_slice(b"}\n");
}

/// `{"time":…,"ConnID":…,"data":"…","from":…,"to":…}` for one read.
pub fn push_data_line(
    out: &mut Vec<u8>,
    clock: &mut LineClock,
    micros: u64,
    id: &ConnId,
    data: &[u8],
    from: &str,
    to: &str,
) {
    push_head(out, clock, micros, id);
    out.extend_from_slice(fields::DATA);
    push_data(out, data);
    push_from_to(out, from, to);
    out.extend_from_slice(fields::END);
    out.push(b'\n');
}

/// `{"time":…,"ConnID":…,"event":"close","from":…,"to":…}`
pub fn push_close_line(
    out: &mut Vec<u8>,
    clock: &mut LineClock,
    micros: u64,
    id: &ConnId,
    from: &str,
    to: &str,
) {
    push_head(out, clock, micros, id);
    push_event(out, fields::CLOSE);
    push_from_to(out, from, to);
    out.extend_from_slice(fields::END);
    out.push(b'\n');
}

/// A control event (SPEC §7): `{"time":…,"event":NAME,"directory":…[,"filename_format":…]}`.
/// `directory` None is written as `null`.
pub fn push_logging_event(
    out: &mut Vec<u8>,
    clock: &mut LineClock,
    micros: u64,
    event: &str,
    directory: Option<&str>,
    filename_format: Option<&str>,
) {
    out.extend_from_slice(fields::TIME);
    clock.push_time(micros, out);
    push_event(out, event);
    out.extend_from_slice(fields::DIRECTORY);
    push_json_value(out, &directory.map_or(serde_json::Value::Null, Into::into));
    if let Some(format) = filename_format {
        out.extend_from_slice(fields::FILENAME_FORMAT);
        push_json_value(out, &format.into());
    }
    out.extend_from_slice(b"}\n");
}

/// `{"time":…,"event":"mcp-ready","endpoint":"http://127.0.0.1:PORT/mcp"}` (SPEC §7).
pub fn push_mcp_ready(out: &mut Vec<u8>, clock: &mut LineClock, micros: u64, endpoint: &str) {
    out.extend_from_slice(fields::TIME);
    clock.push_time(micros, out);
    push_event(out, fields::MCP_READY);
    out.extend_from_slice(fields::ENDPOINT);
    push_json_value(out, &endpoint.into());
    out.extend_from_slice(b"}\n");
}

fn push_json_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::reference::{encode_data, percent_decode};

    fn encoded(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_data(&mut out, bytes);
        // Every encoder, whichever `push_data` takes on this CPU.
        for encoder in [Encoder::Avx512, Encoder::Ssse3, Encoder::Portable] {
            let mut other = Vec::new();
            encoder.push(&mut other, bytes);
            assert_eq!(out, other, "{encoder:?} gives what push_data gives");
        }
        let mut portable = Vec::new();
        push_data_portable(&mut portable, bytes);
        assert_eq!(
            out, portable,
            "push_data_portable gives what push_data gives"
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spec_examples() {
        let table: &[(&[u8], &str)] = &[
            (b"caf\xC3\xA9", "caf%C3%A9"),
            (b"\x00", "%00"),
            (b"100%", "100%25"),
            (b"say \"hi\"", "say \\\"hi\\\""),
            (b"a\\b", "a\\\\b"),
            (b"\t\n\r", "\\t\\n\\r"),
            (b"\x7F\x1F\xFF", "%7F%1F%FF"),
            (
                b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
                "GET / HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n",
            ),
            (b" ~", " ~"),
            (b"", ""),
        ];
        for (input, want) in table {
            assert_eq!(encoded(input), *want, "input {input:?}");
        }
    }

    /// A xorshift generator: the same numbers on every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn fast_paths_match_the_reference_at_every_alignment() {
        let mut next = xorshift(0x1234_5678_9ABC_DEF1);
        // Mostly plain text with a special byte here and there, so that both
        // the 8-byte path and the table path run, at every offset.
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| match next() % 16 {
                    0 => next() as u8,
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            assert_eq!(encoded(&bytes), encode_data(&bytes), "{bytes:?}");
        }
        for b in 0..=255u8 {
            let word = [b'x', b'y', b, b'z', b'q', b'r', b's', b't'];
            assert_eq!(
                encoded(&word),
                encode_data(&word),
                "byte {b:#04x} inside a word"
            );
        }
        let mut out = b"prefix".to_vec();
        push_data(&mut out, b"a\x00");
        assert_eq!(out, b"prefixa%00");
    }

    /// A block encoder, then the table for what it leaves.
    #[cfg(target_arch = "x86_64")]
    type Blocks = fn(&mut Vec<u8>, &[u8]) -> usize;

    #[cfg(target_arch = "x86_64")]
    fn through(blocks: Blocks, bytes: &[u8]) -> String {
        let mut out = b"=".to_vec();
        let done = blocks(&mut out, bytes);
        push_table(&mut out, &bytes[done..]);
        String::from_utf8(out).unwrap()
    }

    /// The block encoders, each checked on its own (one the CPU lacks
    /// encodes nothing and leaves all to the table): random bytes at every
    /// length and offset, every byte value at every position of a block in
    /// binary and in plain text (blocks that need no escape beside it), and
    /// every mix of the three kinds of byte in a group of four, at every
    /// place in a block.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn block_encoders_match_the_reference() {
        let kernels: [(Blocks, usize); 2] = [(ssse3::push_blocks, 16), (avx512::push_blocks, 64)];
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let random: Vec<u8> = (0..600).map(|_| next() as u8).collect();
        for (blocks, size) in kernels {
            let check = |bytes: &[u8]| {
                assert_eq!(
                    through(blocks, bytes),
                    format!("={}", encode_data(bytes)),
                    "{bytes:?}"
                );
            };
            for offset in 0..size {
                for len in 0..=4 * size + 8 {
                    check(&random[offset..offset + len]);
                }
            }
            for b in 0..=255u8 {
                for at in 0..2 * size {
                    for around in [0xFF, b'a'] {
                        let mut bytes = vec![around; 2 * size + 8];
                        bytes[at] = b;
                        check(&bytes);
                    }
                }
            }
            let kinds = [
                b'a', b'"', b'\\', b'\t', b'\n', b'\r', b'%', 0x00, 0x7F, 0x80, 0xFF,
            ];
            let mut bytes = vec![0x01u8; size];
            for pattern in 0..kinds.len().pow(4) {
                for place in 0..size / 4 {
                    bytes.fill(0x01);
                    for k in 0..4 {
                        bytes[4 * place + k] =
                            kinds[pattern / kinds.len().pow(k as u32) % kinds.len()];
                    }
                    check(&bytes);
                }
            }
            // Blocks of literals and `\`-escapes only (the pairs path), from
            // one escape in 16 bytes to nothing else.
            let shorts = [b'"', b'\\', b'\t', b'\n', b'\r'];
            for one_in in [1, 2, 3, 16] {
                let text: Vec<u8> = (0..4 * size + 8)
                    .map(|_| match next() % one_in {
                        0 => shorts[(next() % 5) as usize],
                        _ => b' ' + (next() % 95) as u8,
                    })
                    .filter(|&b| b != b'%' && b != 0x7F)
                    .collect();
                for offset in 0..size {
                    check(&text[offset..]);
                }
            }
        }
        // And the whole path, as lines use it.
        for len in 0..=300 {
            let bytes = &random[..len];
            assert_eq!(encoded(bytes), encode_data(bytes), "{bytes:?}");
        }
    }

    /// The portable encoder (what ARM runs) against the reference and every
    /// encoder this CPU has: every byte value at every position of its
    /// groups and plain runs (in plain text, in binary, and one word from a
    /// run of plain words), and random bytes of every density of escapes at
    /// every length and offset.
    #[test]
    fn portable_encoder_matches_the_reference_and_the_simd_paths() {
        let check = |bytes: &[u8]| {
            let want = encode_data(bytes);
            for encoder in [Encoder::Portable, Encoder::Ssse3, Encoder::Avx512] {
                let mut out = b"=".to_vec();
                encoder.push(&mut out, bytes);
                assert_eq!(out[1..], *want.as_bytes(), "{encoder:?} {bytes:?}");
            }
        };
        for b in 0..=255u8 {
            for around in [b'a', 0xFF, b'%'] {
                for len in [150, 67] {
                    for at in 0..len {
                        let mut bytes = vec![around; len];
                        bytes[at] = b;
                        check(&bytes);
                    }
                }
            }
        }
        let mut next = xorshift(0xD1B5_4A32_D192_ED03);
        for one_in in [1u64, 2, 4, 8, 16, 64] {
            let bytes: Vec<u8> = (0..400)
                .map(|_| match next() % one_in {
                    0 => next() as u8,
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            for offset in 0..9 {
                for len in (0..=300).step_by(7).chain(300..=310) {
                    check(&bytes[offset..offset + len]);
                }
            }
        }
    }

    /// The portable encoder's pair table: every two bytes below 0x80 in
    /// each of a word's four pairs (even offsets), and split across pairs
    /// (odd ones).
    #[test]
    fn portable_encoder_takes_every_ascii_pair() {
        let pairs: Vec<u8> = (0..1u16 << 14)
            .flat_map(|i| [(i & 0x7F) as u8, (i >> 7) as u8])
            .collect();
        for offset in 0..8 {
            let bytes = &pairs[offset..];
            let mut out = b"=".to_vec();
            push_data_portable(&mut out, bytes);
            assert_eq!(out[1..], *encode_data(bytes).as_bytes(), "offset {offset}");
        }
    }

    #[test]
    fn every_byte_round_trips_through_json() {
        let all: Vec<u8> = (0..=255).collect();
        let text = format!("\"{}\"", encoded(&all));
        assert!(!text.contains("\\u"));
        let parsed: String = serde_json::from_str(&text).unwrap();
        assert_eq!(percent_decode(&parsed), all);
    }

    #[test]
    fn random_bytes_round_trip() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for len in [1usize, 7, 100, 4096, 32 * 1024] {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let text = format!("\"{}\"", encoded(&bytes));
            let parsed: String = serde_json::from_str(&text).unwrap();
            assert_eq!(percent_decode(&parsed), bytes, "length {len}");
        }
    }

    #[test]
    fn lines_have_the_fixed_field_order() {
        let mut clock = LineClock::default();
        let id = ConnId(*b"0tK3XaB9");
        let micros = 1_761_147_167_123_456;
        let mut out = Vec::new();
        push_open_line(
            &mut out,
            &mut clock,
            micros,
            &id,
            "127.0.0.1:54321",
            "example.com:80",
            8080,
        );
        push_data_line(
            &mut out,
            &mut clock,
            micros,
            &id,
            b"hi\n",
            "127.0.0.1:54321",
            "example.com:80",
        );
        push_close_line(
            &mut out,
            &mut clock,
            micros,
            &id,
            "example.com:80",
            "127.0.0.1:54321",
        );
        push_logging_event(
            &mut out,
            &mut clock,
            micros,
            "start-logging",
            Some("./lo\"gs"),
            Some("x.log"),
        );
        push_logging_event(&mut out, &mut clock, micros, "stop-logging", None, None);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","event":"open","from":"127.0.0.1:54321","to":"example.com:80","listen_port":8080}"#
        );
        assert_eq!(
            lines[1],
            r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","data":"hi\n","from":"127.0.0.1:54321","to":"example.com:80"}"#
        );
        assert_eq!(
            lines[2],
            r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","event":"close","from":"example.com:80","to":"127.0.0.1:54321"}"#
        );
        assert_eq!(
            lines[3],
            r#"{"time":"2025-10-22T15:32:47.123456Z","event":"start-logging","directory":"./lo\"gs","filename_format":"x.log"}"#
        );
        assert_eq!(
            lines[4],
            r#"{"time":"2025-10-22T15:32:47.123456Z","event":"stop-logging","directory":null}"#
        );
        for line in lines {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn decimal_ports() {
        for n in [0u16, 7, 10, 8080, 65535] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
