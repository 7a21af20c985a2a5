//! A `data` string to the bytes it stands for (SPEC §4: the JSON string,
//! then `%XX`). Whole blocks go through the widest block decoder the CPU
//! has (`avx2.rs`, `sse.rs`, or `portable.rs` on every other CPU), chosen
//! once; the scalar loop here takes the rest and says what is wrong with a
//! string that does not decode. `\u`
//! escapes, which rawprox never writes, go through `serde_json` first.

use super::bad::Bad;
use super::portable;
#[cfg(target_arch = "x86_64")]
use super::{avx2, sse};
use std::borrow::Cow;

/// A `data` string, not decoded yet.
#[derive(Debug, PartialEq)]
pub struct Data<'a> {
    text: Cow<'a, [u8]>,
    /// `text` is the string as written in the line, JSON escapes and all;
    /// otherwise it is already JSON-decoded and only `%XX` remain.
    json_escaped: bool,
}

impl<'a> Data<'a> {
    /// A string body as the line has it, JSON escapes and all.
    pub(super) fn as_written(text: &'a [u8]) -> Data<'a> {
        Data {
            text: Cow::Borrowed(text),
            json_escaped: true,
        }
    }

    /// A string that `serde_json` has decoded: only `%XX` remain.
    pub(super) fn json_decoded(text: String) -> Data<'a> {
        Data {
            text: Cow::Owned(text.into_bytes()),
            json_escaped: false,
        }
    }

    /// The encoded text, as the line has it (or JSON-decoded, for lines
    /// that came through `serde_json`). Its length bounds the decoded length.
    pub fn encoded(&self) -> &[u8] {
        &self.text
    }

    /// The bytes this string stands for (SPEC §4: JSON string, then
    /// percent-decoding), decoded into `scratch`: for a caller that decodes
    /// line after line into one buffer: it is not cleared or zeroed per
    /// line, only grown when a line needs more room (or refilled, for the
    /// rare lines with `\u` escapes or through `serde_json`); what it held
    /// is not kept.
    pub fn decode_in<'s>(&self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], Bad> {
        self.decode_in_with(scratch, Decoder::chosen())
    }

    /// `decode_in` with the given decoder (`Decoder::Portable`: what every
    /// CPU that is not x86-64 runs); one the CPU lacks is not used (the
    /// scalar loop decodes all, the same bytes).
    pub fn decode_in_with<'s>(
        &self,
        scratch: &'s mut Vec<u8>,
        decoder: Decoder,
    ) -> Result<&'s [u8], Bad> {
        if !self.json_escaped {
            scratch.clear();
            percent_decode(&self.text, scratch)?;
            return Ok(scratch);
        }
        let room = self.text.len() + 16;
        if scratch.len() < room {
            scratch.resize(room, 0);
        }
        let blocks = decoder.blocks().filter(|_| decoder.takes(&self.text));
        match decode_escaped_to(&self.text, scratch, blocks) {
            Ok(len) => Ok(&scratch[..len]),
            Err(Stop::Bad(why)) => Err(why),
            Err(Stop::JsonFirst) => {
                scratch.clear();
                slow_decode(&self.text, scratch)?;
                Ok(scratch)
            }
        }
    }

    /// The decoded bytes in a new `Vec`.
    pub fn decode(&self) -> Result<Vec<u8>, Bad> {
        let mut out = Vec::new();
        let len = self.decode_in(&mut out)?.len();
        out.truncate(len);
        Ok(out)
    }
}

/// A block decoder: decodes whole blocks of text from the start into the
/// output while it can; `(text used, bytes written)` (see `sse.rs`).
type Blocks = unsafe fn(&[u8], &mut [u8]) -> (usize, usize);

/// The decoders `decode_in` chooses from: each a block decoder for whole
/// blocks, with the scalar loop (`decode_escaped_to`) for the rest. Public
/// so that `cargo bench --bench decode` measures each one this CPU runs
/// beside the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// 32 bytes a step (`avx2.rs`).
    Avx2,
    /// 16 bytes a step (`sse.rs`: SSSE3, SSE4.1).
    Sse,
    /// 64 bytes a step in `u64` arithmetic (`portable.rs`): every CPU that
    /// is not x86-64 (ARM).
    Portable,
}

impl Decoder {
    /// The widest this CPU has: chosen once, not per line.
    pub fn chosen() -> Decoder {
        static CHOSEN: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            [Decoder::Avx2, Decoder::Sse]
                .into_iter()
                .find(|d| d.runs_here())
                .unwrap_or(Decoder::Portable)
        })
    }

    /// True when this CPU has what the decoder needs.
    pub fn runs_here(self) -> bool {
        self.blocks().is_some()
    }

    /// Its block decoder, if the CPU can run it.
    fn blocks(self) -> Option<Blocks> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Decoder::Avx2 if avx2::available() => Some(avx2::decode_blocks as Blocks),
            #[cfg(target_arch = "x86_64")]
            Decoder::Sse if sse::available() => Some(sse::decode_blocks as Blocks),
            Decoder::Portable => Some(portable::decode_blocks as Blocks),
            _ => None,
        }
    }

    /// True when `text` fills a block of its block decoder and the two
    /// bytes after it (the last escape's digits).
    fn takes(self, text: &[u8]) -> bool {
        let block = match self {
            Decoder::Avx2 => 32,
            Decoder::Sse => 16,
            Decoder::Portable => 64,
        };
        text.len() >= block + 2
    }
}

/// Value of a hex digit, or 0xFF. Upper case is what rawprox writes; lower
/// case is accepted as percent-decoders do.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'A' as usize + i] = 10 + i as u8;
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// High bit set in each byte of `word` that is `%`, `\`, `"` or a control
/// byte below 0x20 (SWAR): the bytes the decoder must stop at.
fn specials(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    // Below 0x20 only for bytes under 0x80: the high bit of `!word` says so.
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space
        | zero(word ^ (ONES * 0x25))
        | zero(word ^ (ONES * 0x5C))
        | zero(word ^ (ONES * 0x22))
}

/// Why `decode_escaped_to` stopped short.
enum Stop {
    Bad(Bad),
    /// A `\u` escape, which may stand for a `%` or a hex digit: the whole
    /// string must be JSON-decoded before the percent escapes.
    JsonFirst,
}

/// Decodes a `data` string body as written in a line (JSON escapes, then
/// `%XX`) into `buf`, which holds at least `text.len() + 16` bytes (the
/// decoded bytes are never more than the text); returns how many bytes
/// the text stands for. The block decoder, if given (it must be one the
/// CPU can run), takes whole blocks while it can; this loop takes the
/// rest, 8 bytes at a time: it stores 8 and advances the write position
/// only past those that stand for themselves, so no copy has a variable
/// length.
fn decode_escaped_to(text: &[u8], buf: &mut [u8], blocks: Option<Blocks>) -> Result<usize, Stop> {
    assert!(buf.len() >= text.len() + 16, "room for the decoded bytes");
    let (mut i, mut j) = (0usize, 0usize);
    // Where blocks are tried again after the block decoder left one to
    // this loop: 1 KiB on, since the portable decoder leaves text with few
    // escapes here (HTTP headers, JSON) and costs a block's masks each time
    // it looks whether a binary body follows in the same string.
    let mut blocks_from = 0usize;
    while i < text.len() {
        if let Some(decode_blocks) = blocks
            && i >= blocks_from
        {
            // SAFETY: the caller picked a decoder the CPU can run;
            // `buf[j..]` holds at least `text.len() - i + 16` bytes (j <= i).
            let (used, written) = unsafe { decode_blocks(&text[i..], &mut buf[j..]) };
            i += used;
            j += written;
            blocks_from = i + 1024;
            if i >= text.len() {
                break;
            }
        }
        if let Some(chunk) = text.get(i..i + 8) {
            let chunk: [u8; 8] = chunk.try_into().expect("8 bytes");
            buf[j..j + 8].copy_from_slice(&chunk);
            let stops = specials(u64::from_le_bytes(chunk));
            if stops == 0 {
                i += 8;
                j += 8;
                continue;
            }
            // Bytes before the first stop stand for themselves.
            let run = (stops.trailing_zeros() / 8) as usize;
            i += run;
            j += run;
        }
        // Escapes in a row (binary data is mostly `%XX`) without going
        // back to the word loop.
        loop {
            match text[i] {
                b'%' => {
                    let (hi, lo) = match text.get(i + 1..i + 3) {
                        Some(&[hi, lo]) => (HEX_VALUE[hi as usize], HEX_VALUE[lo as usize]),
                        _ => return Err(Stop::Bad(Bad::BadData)),
                    };
                    if (hi | lo) > 0xF {
                        // `%\u0034\u0031` or `%4\u0031`: a digit may be a
                        // JSON escape, so JSON-decode first (SPEC §4).
                        if text[i + 1..i + 3].contains(&b'\\') {
                            return Err(Stop::JsonFirst);
                        }
                        return Err(Stop::Bad(Bad::BadData));
                    }
                    buf[j] = hi << 4 | lo;
                    i += 3;
                }
                b'\\' => {
                    buf[j] = match text.get(i + 1) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0C,
                        // `\u` may stand for a `%` or a hex digit: decode the
                        // JSON string first, then the percent escapes.
                        Some(b'u') => return Err(Stop::JsonFirst),
                        _ => return Err(Stop::Bad(Bad::BadData)),
                    };
                    i += 2;
                }
                // A control byte, or a quote no backslash escapes: the
                // string (or the line) is not JSON.
                c if c < 0x20 || c == b'"' => return Err(Stop::Bad(Bad::NotJson)),
                c => {
                    // The tail under 8 bytes, or a byte of 0x80 or more
                    // (rawprox never writes one; taken as it is).
                    buf[j] = c;
                    i += 1;
                }
            }
            j += 1;
            if !matches!(text.get(i), Some(b'%' | b'\\')) {
                break;
            }
        }
    }
    Ok(j)
}

/// `\u` escapes: JSON-decode the whole string with serde_json, then
/// percent-decode. Rare (rawprox never writes `\u`), so simple.
fn slow_decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), Bad> {
    let mut quoted = Vec::with_capacity(text.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(text);
    quoted.push(b'"');
    let decoded: String = serde_json::from_slice(&quoted).map_err(|_| Bad::BadData)?;
    percent_decode(decoded.as_bytes(), out)
}

/// `%XX` to bytes; every other byte stands for itself.
fn percent_decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), Bad> {
    out.reserve(text.len());
    let mut i = 0;
    while i < text.len() {
        let Some(at) = memchr::memchr(b'%', &text[i..]) else {
            out.extend_from_slice(&text[i..]);
            break;
        };
        out.extend_from_slice(&text[i..i + at]);
        i += at;
        let (hi, lo) = match text.get(i + 1..i + 3) {
            Some(&[hi, lo]) => (HEX_VALUE[hi as usize], HEX_VALUE[lo as usize]),
            _ => return Err(Bad::BadData),
        };
        if (hi | lo) > 0xF {
            return Err(Bad::BadData);
        }
        out.push(hi << 4 | lo);
        i += 3;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::reference::encode_data;

    /// The block decoder (where the CPU has it) gives what the scalar
    /// decoder gives, bytes or error, for every byte value at every place
    /// of a block, a backslash before every byte value, text of every
    /// length, valid and broken escapes and runs of backslashes at the
    /// edges of blocks, and `\u` escapes that it leaves to the scalar
    /// decoder.
    #[test]
    fn blocks_decode_as_the_scalar_decoder_does() {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut decoders: Vec<(&str, Blocks)> = vec![("portable", portable::decode_blocks)];
        #[cfg(target_arch = "x86_64")]
        {
            if sse::available() {
                decoders.push(("sse", sse::decode_blocks));
            }
            if avx2::available() {
                decoders.push(("avx2", avx2::decode_blocks));
            }
        }
        for (name, decoder) in decoders {
            eprintln!("checking the {name} block decoder");
            blocks_match_scalar(decoder);
        }
    }

    /// Appends what `text` decodes to to `out`, with the given block
    /// decoder or none.
    fn decode_escaped_with(
        text: &[u8],
        out: &mut Vec<u8>,
        blocks: Option<Blocks>,
    ) -> Result<(), Bad> {
        let start = out.len();
        out.resize(start + text.len() + 16, 0);
        match decode_escaped_to(text, &mut out[start..], blocks) {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(Stop::Bad(why)) => Err(why),
            Err(Stop::JsonFirst) => {
                out.truncate(start);
                slow_decode(text, out)
            }
        }
    }

    fn blocks_match_scalar(decoder: Blocks) {
        let check = |text: &[u8]| {
            let (mut a, mut b) = (vec![7u8], vec![7u8]);
            let scalar = decode_escaped_with(text, &mut a, None);
            let blocks = decode_escaped_with(text, &mut b, Some(decoder));
            assert_eq!(blocks, scalar, "{:?}", String::from_utf8_lossy(text));
            // After an error the partial output does not count.
            if scalar.is_ok() {
                assert_eq!(b, a, "{:?}", String::from_utf8_lossy(text));
            }
        };
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Every byte value at every place of a block, in binary around it.
        for value in 0..=255u8 {
            for at in 0..70 {
                let mut bytes: Vec<u8> = (0..70).map(|_| next() as u8).collect();
                bytes[at] = value;
                let text = encode_data(&bytes);
                check(text.as_bytes());
                let decoded = decode_escaped_with(text.as_bytes(), &mut Vec::new(), Some(decoder));
                assert_eq!(decoded, Ok(()));
            }
        }
        // A backslash before every byte value (an escape or not), at every
        // place of a block.
        for value in 0..=255u8 {
            for at in 0..70 {
                let mut text =
                    encode_data(&(0..60).map(|_| next() as u8).collect::<Vec<u8>>()).into_bytes();
                let at = (0..=at.min(text.len()))
                    .rev()
                    .find(|&k| decode_escaped_with(&text[..k], &mut Vec::new(), None).is_ok())
                    .expect("the empty text decodes");
                text.splice(at..at, [b'\\', value]);
                check(&text);
            }
        }
        // Lengths and mixes: text, binary, escapes only.
        for len in 0..300 {
            let kinds: [&dyn Fn(u64) -> u8; 3] = [
                &|r| b" GET/%\\\"abc\r\n\t"[(r % 14) as usize],
                &|r| r as u8,
                &|r| [b'%', b'"', b'\\', 0, 0xFF][(r % 5) as usize],
            ];
            for kind in kinds {
                let bytes: Vec<u8> = (0..len).map(|_| kind(next())).collect();
                let text = encode_data(&bytes);
                let mut out = Vec::new();
                decode_escaped_with(text.as_bytes(), &mut out, Some(decoder)).unwrap();
                assert_eq!(out, bytes);
                check(text.as_bytes());
            }
        }
        // Broken and unusual text at every place of a block.
        let base = encode_data(&(0..120).map(|_| next() as u8).collect::<Vec<u8>>());
        for odd in [
            "%",
            "%4",
            "%G1",
            "%4g",
            "\\\\",
            "\\u0041",
            "\\x",
            "\u{1}",
            "%\\u0034",
            "%4\\u0031",
            // Runs of backslashes: escaped ones, then a quote escaped or
            // not, a `%` escaped (broken) or not.
            "\\\\\\\\",
            "\\\\\\\"",
            "\\\\\"",
            "\\\\\\",
            "\\\\%41",
            "\\\\\\%41",
            "\\\\\\\\\\\\\\\\\\\\n",
        ] {
            for at in 0..base.len().min(130) {
                if !base.is_char_boundary(at) {
                    continue;
                }
                let text = format!("{}{odd}{}", &base[..at], &base[at..]);
                check(text.as_bytes());
                check(&text.as_bytes()[..at + odd.len()]);
            }
        }
    }

    /// Every escape but `\u`, runs of backslashes among them, is the block
    /// decoders' work, not left to the scalar decoder: text full of them is
    /// decoded in blocks to its last block.
    #[test]
    fn blocks_take_every_escape_and_runs_of_backslashes() {
        let pieces: [(&str, u8); 10] = [
            ("\\\\", b'\\'),
            ("\\\"", b'"'),
            ("\\/", b'/'),
            ("\\b", 0x08),
            ("\\f", 0x0C),
            ("\\n", b'\n'),
            ("\\r", b'\r'),
            ("\\t", b'\t'),
            ("%FF", 0xFF),
            ("x", b'x'),
        ];
        let (mut text, mut bytes) = (String::new(), Vec::new());
        for i in 0..4000u32 {
            let (piece, byte) = pieces[(i * 7 % 13 % 10) as usize];
            text.push_str(piece);
            bytes.push(byte);
        }
        // Each decoder with how near the end it may stop: its block and the
        // digits after it, and some.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut decoders: Vec<(Blocks, usize)> = vec![(portable::decode_blocks, 70)];
        #[cfg(target_arch = "x86_64")]
        {
            if sse::available() {
                decoders.push((sse::decode_blocks, 40));
            }
            if avx2::available() {
                decoders.push((avx2::decode_blocks, 40));
            }
        }
        for (decoder, near_end) in decoders {
            let mut out = vec![0u8; text.len() + 16];
            // SAFETY: only decoders this CPU has; `out` has the room.
            let (used, written) = unsafe { decoder(text.as_bytes(), &mut out) };
            assert!(
                used + near_end > text.len(),
                "stopped at {used} of {}",
                text.len()
            );
            let mut rest = Vec::new();
            decode_escaped_with(&text.as_bytes()[used..], &mut rest, None).unwrap();
            assert_eq!([&out[..written], &rest[..]].concat(), bytes);
        }
    }

    #[test]
    fn bad_percent_escapes_do_not_decode() {
        let decode = |text: &str| {
            let mut out = Vec::new();
            percent_decode(text.as_bytes(), &mut out).map(|()| out)
        };
        assert_eq!(decode("%4"), Err(Bad::BadData));
        assert_eq!(decode("%zz"), Err(Bad::BadData));
        assert_eq!(decode("a%41"), Ok(b"aA".to_vec()));
    }
}
