//! One log line in, one `Line` out (SPEC §4): the line decoder that `list`,
//! `follow`, `extract`, `pcap`, the fuzz target, the bench and the MCP
//! reading tools share. It knows the line format only; what a line means for
//! a connection is the callers' business.
//!
//! Lines as rawprox writes them (fixed field order, compact) go through a
//! fast path that borrows from the line and leaves the `data` string
//! encoded: decoding it is a second, separate step (`Data::decode_in`),
//! so a reader that skips a connection never pays for its bytes. Any other
//! line (another field order, spaces, another tool's JSON) goes through
//! `serde_json` and is judged by its fields.

use super::connid::ConnId;
use super::time::{TIME_LEN, Time};
use std::borrow::Cow;
use std::fmt;

/// Why a line was skipped and counted (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not a JSON value at all.
    NotJson,
    /// JSON with a `ConnID`, but not an `open`, `close` or data line.
    NotALogLine,
    /// A `data` string that does not decode (a broken `%` or `\` escape).
    BadData,
    /// The last line of an input, with no final newline (a file still being
    /// written, or cut).
    Truncated,
    /// A line longer than `MAX_LINE_BYTES`; rawprox's are under 100 KiB.
    TooLong,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bad::NotJson => "not JSON",
            Bad::NotALogLine => "a ConnID line that is not open, close or data",
            Bad::BadData => "a data string that does not decode",
            Bad::Truncated => "a truncated last line",
            Bad::TooLong => "a line over 16 MiB",
        })
    }
}

/// Longest line the reader buffers; longer ones are skipped as `TooLong`.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One decoded log line. Addresses borrow from the line when they can.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    Open {
        time: Time,
        conn_id: ConnId,
        from: Cow<'a, str>,
        to: Cow<'a, str>,
        listen_port: u16,
    },
    Data {
        time: Time,
        conn_id: ConnId,
        data: Data<'a>,
        from: Cow<'a, str>,
        to: Cow<'a, str>,
    },
    Close {
        time: Time,
        conn_id: ConnId,
        from: Cow<'a, str>,
        to: Cow<'a, str>,
    },
    /// `start-logging`: a directory destination's run begins (SPEC §5).
    RunStart,
    /// `stop-logging`: a directory destination's run ends.
    RunEnd,
    /// Any other JSON (`mcp-ready`, another tool's line): skipped silently.
    Other,
}

impl Line<'_> {
    pub fn conn_id(&self) -> Option<ConnId> {
        match self {
            Line::Open { conn_id, .. }
            | Line::Data { conn_id, .. }
            | Line::Close { conn_id, .. } => Some(*conn_id),
            _ => None,
        }
    }
}

/// A `data` string, not decoded yet.
#[derive(Debug, PartialEq)]
pub struct Data<'a> {
    text: Cow<'a, [u8]>,
    /// `text` is the string as written in the line, JSON escapes and all;
    /// otherwise it is already JSON-decoded and only `%XX` remain.
    json_escaped: bool,
}

impl Data<'_> {
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
        if !self.json_escaped {
            scratch.clear();
            percent_decode(&self.text, scratch)?;
            return Ok(scratch);
        }
        let room = self.text.len() + 16;
        if scratch.len() < room {
            scratch.resize(room, 0);
        }
        match decode_escaped_to(&self.text, scratch, block_decoder_for(&self.text)) {
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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod sse;

/// A block decoder: decodes whole blocks of text from the start into the
/// output while it can; `(text used, bytes written)` (see `sse.rs`).
type Blocks = unsafe fn(&[u8], &mut [u8]) -> (usize, usize);

/// The widest block decoder this CPU has, if any: chosen once, not per
/// line.
fn block_decoder() -> Option<Blocks> {
    static CHOSEN: std::sync::OnceLock<Option<Blocks>> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                return Some(avx2::decode_blocks as Blocks);
            }
            if sse::available() {
                return Some(sse::decode_blocks as Blocks);
            }
        }
        None
    })
}

/// Bit k set where byte k of a block is escaped, given bit k of
/// `backslashes` set where byte k is `\`: a run of backslashes escapes
/// every other byte from the one after its start, so the byte after the run
/// when the run is odd. A block never starts inside an escape, and bit 63
/// of `backslashes` must be clear. Branch-free, as simdjson finds escaped
/// quotes: adding the runs that start on an odd bit to the mask carries
/// each of them out of its run, which flips the even/odd pattern for it.
fn escaped_bytes(backslashes: u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let follows = backslashes << 1;
    let odd_starts = backslashes & !EVEN & !follows;
    let carried = odd_starts + backslashes;
    (EVEN ^ (carried << 1)) & follows
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

/// The block decoder for a text long enough to fill a block.
fn block_decoder_for(text: &[u8]) -> Option<Blocks> {
    if text.len() >= 18 {
        block_decoder()
    } else {
        None
    }
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
    // Where blocks are tried again after one the block decoder left to
    // this loop.
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
            blocks_from = i + 16;
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

// ---------------------------------------------------------------- lines

const TIME_KEY: &[u8] = b"{\"time\":\"";
const ID_KEY: &[u8] = b"\",\"ConnID\":\"";
/// Where the ConnID starts and ends in a line rawprox wrote.
const ID_AT: usize = TIME_KEY.len() + TIME_LEN + ID_KEY.len();
const AFTER_ID: usize = ID_AT + 8;

/// The ConnID of a line as rawprox writes it, read from its fixed place
/// without parsing the rest: lets a reader skip other connections' lines at
/// the speed of finding newlines. `None` means "parse it to know".
pub fn peek_conn_id(line: &[u8]) -> Option<ConnId> {
    if line.len() > AFTER_ID
        && line.starts_with(TIME_KEY)
        && &line[TIME_KEY.len() + TIME_LEN..ID_AT] == ID_KEY
    {
        ConnId::parse(&line[ID_AT..AFTER_ID])
    } else {
        None
    }
}

/// True when `line` (as rawprox writes it) is a data line: with
/// `peek_conn_id`, enough to skip it unparsed.
pub fn peek_is_data(line: &[u8]) -> bool {
    line.get(AFTER_ID..AFTER_ID + 10) == Some(b"\",\"data\":\"")
}

/// Decodes one line (without its `\n`; a trailing `\r` is allowed). The
/// `data` string is checked for the JSON string's end only: its escapes are
/// checked when it is decoded (`Data::decode_in`).
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, Bad> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match fast_parse(line) {
        Some(parsed) => Ok(parsed),
        None => slow_parse(line),
    }
}

/// A cursor over a line rawprox wrote: each step either matches exactly or
/// gives up, and `parse_line` falls back to `serde_json`.
struct Cursor<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn expect(&mut self, text: &[u8]) -> Option<()> {
        let end = self.at + text.len();
        (self.line.get(self.at..end)? == text).then(|| self.at = end)
    }

    /// A plain string value (an address): up to the next `"`, no escapes,
    /// ASCII. The cursor stops on the closing quote.
    fn plain_str(&mut self) -> Option<&'a str> {
        let rest = self.line.get(self.at..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' || !rest[..len].iter().all(|b| (0x20..0x7F).contains(b)) {
            return None;
        }
        self.at += len;
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// The data string of a data line and its two addresses, found from the
    /// line's end: it ends `","from":"FROM","to":"TO"}`, and addresses hold
    /// no quote or backslash, so the data string is what lies before, and
    /// is not searched at all. An unescaped `"` inside it (not a line
    /// rawprox wrote) is found by the decoder, which rejects it.
    fn data_and_addresses(&mut self) -> Option<(&'a [u8], &'a str, &'a str)> {
        let rest = self.line.get(self.at..)?.strip_suffix(b"\"}")?;
        let plain = |s: &'a [u8]| {
            s.iter()
                .all(|b| (0x20..0x7F).contains(b) && *b != b'\\')
                .then(|| std::str::from_utf8(s).ok())
                .flatten()
        };
        let to_at = memchr::memrchr(b'"', rest)?;
        let to = plain(&rest[to_at + 1..])?;
        let rest = rest[..=to_at].strip_suffix(b"\",\"to\":\"")?;
        let from_at = memchr::memrchr(b'"', rest)?;
        let from = plain(&rest[from_at + 1..])?;
        let text = rest[..=from_at].strip_suffix(b"\",\"from\":\"")?;
        // An odd run of backslashes at the end escapes the quote after it:
        // then this is not the string's end.
        let backslashes = text.iter().rev().take_while(|&&b| b == b'\\').count();
        if !backslashes.is_multiple_of(2) {
            return None;
        }
        self.at = self.line.len();
        Some((text, from, to))
    }
}

fn fast_parse(line: &[u8]) -> Option<Line<'_>> {
    let conn_id = peek_conn_id(line)?;
    let time = Time::parse(&line[TIME_KEY.len()..TIME_KEY.len() + TIME_LEN])?;
    let mut c = Cursor { line, at: AFTER_ID };
    c.expect(b"\",\"")?;
    match line.get(c.at)? {
        b'd' => {
            c.expect(b"data\":\"")?;
            let (text, from, to) = c.data_and_addresses()?;
            (c.at == line.len()).then_some(Line::Data {
                time,
                conn_id,
                data: Data {
                    text: Cow::Borrowed(text),
                    json_escaped: true,
                },
                from: Cow::Borrowed(from),
                to: Cow::Borrowed(to),
            })
        }
        b'e' => {
            c.expect(b"event\":\"")?;
            let open = match line.get(c.at)? {
                b'o' => c.expect(b"open").map(|_| true)?,
                _ => c.expect(b"close").map(|_| false)?,
            };
            c.expect(b"\",\"from\":\"")?;
            let from = Cow::Borrowed(c.plain_str()?);
            c.expect(b"\",\"to\":\"")?;
            let to = Cow::Borrowed(c.plain_str()?);
            if !open {
                c.expect(b"\"}")?;
                return (c.at == line.len()).then_some(Line::Close {
                    time,
                    conn_id,
                    from,
                    to,
                });
            }
            c.expect(b"\",\"listen_port\":")?;
            let digits = line.get(c.at..line.len().checked_sub(1)?)?;
            if line.last() != Some(&b'}') || digits.is_empty() || digits.len() > 5 {
                return None;
            }
            let listen_port = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some(Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            })
        }
        _ => None,
    }
}

/// Any JSON: judged by its fields, in any order.
fn slow_parse(line: &[u8]) -> Result<Line<'_>, Bad> {
    use serde_json::Value;
    if line.iter().all(u8::is_ascii_whitespace) {
        // A blank line: nothing there to lose.
        return Ok(Line::Other);
    }
    let value: Value = serde_json::from_slice(line).map_err(|_| Bad::NotJson)?;
    let Value::Object(mut fields) = value else {
        return Ok(Line::Other);
    };
    let Some(id) = fields.get("ConnID") else {
        return Ok(match fields.get("event").and_then(Value::as_str) {
            Some("start-logging") => Line::RunStart,
            Some("stop-logging") => Line::RunEnd,
            _ => Line::Other,
        });
    };
    let conn_id = id
        .as_str()
        .and_then(|s| ConnId::parse(s.as_bytes()))
        .ok_or(Bad::NotALogLine)?;
    let time = fields
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| Time::parse(t.as_bytes()))
        .ok_or(Bad::NotALogLine)?;
    let mut take_str = |key: &str| match fields.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Bad::NotALogLine),
    };
    let from = Cow::Owned(take_str("from")?);
    let to = Cow::Owned(take_str("to")?);
    if let Some(data) = fields.remove("data") {
        let Value::String(text) = data else {
            return Err(Bad::NotALogLine);
        };
        return Ok(Line::Data {
            time,
            conn_id,
            data: Data {
                text: Cow::Owned(text.into_bytes()),
                json_escaped: false,
            },
            from,
            to,
        });
    }
    match fields.get("event").and_then(Value::as_str) {
        Some("open") => {
            let listen_port = fields
                .get("listen_port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(Bad::NotALogLine)?;
            Ok(Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            })
        }
        Some("close") => Ok(Line::Close {
            time,
            conn_id,
            from,
            to,
        }),
        _ => Err(Bad::NotALogLine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","event":"open","from":"127.0.0.1:54321","to":"example.com:80","listen_port":8080}"#;
    const DATA: &str = r#"{"time":"2025-10-22T15:32:47.234567Z","ConnID":"0tK3XaB9","data":"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n","from":"127.0.0.1:54321","to":"example.com:80"}"#;
    const CLOSE: &str = r#"{"time":"2025-10-22T15:32:48.456789Z","ConnID":"0tK3XaB9","event":"close","from":"example.com:80","to":"127.0.0.1:54321"}"#;

    /// The `data` encoding of SPEC §4, written here independently of the
    /// proxy's encoder.
    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for &b in bytes {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'%' => out.push_str("%25"),
                b'\t' => out.push_str("\\t"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                0x20..=0x7E => out.push(b as char),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// The block decoder (where the CPU has it) gives what the scalar
    /// decoder gives, bytes or error, for every byte value at every place
    /// of a block, a backslash before every byte value, text of every
    /// length, valid and broken escapes and runs of backslashes at the
    /// edges of blocks, and `\u` escapes that it leaves to the scalar
    /// decoder.
    #[test]
    fn blocks_decode_as_the_scalar_decoder_does() {
        let mut decoders: Vec<(&str, Blocks)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if sse::available() {
                decoders.push(("sse", sse::decode_blocks));
            }
            if avx2::available() {
                decoders.push(("avx2", avx2::decode_blocks));
            }
        }
        if decoders.is_empty() {
            eprintln!("no block decoder runs on this CPU");
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
                let text = encode(&bytes);
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
                    encode(&(0..60).map(|_| next() as u8).collect::<Vec<u8>>()).into_bytes();
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
                let text = encode(&bytes);
                let mut out = Vec::new();
                decode_escaped_with(text.as_bytes(), &mut out, Some(decoder)).unwrap();
                assert_eq!(out, bytes);
                check(text.as_bytes());
            }
        }
        // Broken and unusual text at every place of a block.
        let base = encode(&(0..120).map(|_| next() as u8).collect::<Vec<u8>>());
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
        let mut decoders: Vec<Blocks> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if sse::available() {
                decoders.push(sse::decode_blocks);
            }
            if avx2::available() {
                decoders.push(avx2::decode_blocks);
            }
        }
        for decoder in decoders {
            let mut out = vec![0u8; text.len() + 16];
            // SAFETY: only decoders this CPU has; `out` has the room.
            let (used, written) = unsafe { decoder(text.as_bytes(), &mut out) };
            assert!(
                used + 40 > text.len(),
                "stopped at {used} of {}",
                text.len()
            );
            let mut rest = Vec::new();
            decode_escaped_with(&text.as_bytes()[used..], &mut rest, None).unwrap();
            assert_eq!([&out[..written], &rest[..]].concat(), bytes);
        }
    }

    /// The data string is found from the line's end; what only a search
    /// from the start would have caught, the decoder rejects.
    #[test]
    fn the_data_string_is_found_from_the_lines_end() {
        let line = data_line(r#"a\"b\\"#);
        assert_eq!(decoded(&line), Ok(b"a\"b\\".to_vec()));
        let inner = data_line(r#"x\",\"from\":\"y"#);
        assert_eq!(decoded(&inner), Ok(br#"x","from":"y"#.to_vec()));
        for bad in [
            r#"a"b"#,
            &format!("{}\"{}", "%41".repeat(20), "b".repeat(40)),
        ] {
            assert!(decoded(&data_line(bad)).is_err(), "{bad}");
        }
        // A quote escaped by the last backslash is not the end.
        let odd = r#"{"time":"2025-10-22T15:32:47.234567Z","ConnID":"0tK3XaB9","data":"a\","from":"a:1","to":"b:2"}"#;
        assert!(decoded(odd).is_err());
    }

    fn data_line(encoded: &str) -> String {
        format!(
            r#"{{"time":"2025-10-22T15:32:47.234567Z","ConnID":"0tK3XaB9","data":"{encoded}","from":"a:1","to":"b:2"}}"#
        )
    }

    /// One scratch buffer for line after line, long ones then short
    /// ones, through every path (blocks, the scalar loop, `\u`, a line
    /// through serde, a broken one): each gives its own bytes, nothing of
    /// the line before.
    #[test]
    fn a_reused_scratch_buffer_gives_each_line_its_own_bytes() {
        let long: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let reordered = r#"{"ConnID": "0tK3XaB9", "from": "a:1", "to": "b:2", "data": "%41b", "time": "2025-10-22T15:32:47.234567Z"}"#;
        let cases: [(String, Result<&[u8], Bad>); 7] = [
            (data_line(&encode(&long)), Ok(&long)),
            (data_line("short"), Ok(b"short")),
            (data_line(r"%\u00341\u0041"), Ok(b"AA")),
            (data_line(&encode(&long[..100])), Ok(&long[..100])),
            (data_line("%4"), Err(Bad::BadData)),
            (reordered.to_string(), Ok(b"Ab")),
            (data_line(""), Ok(b"")),
        ];
        let mut scratch = Vec::new();
        for (line, want) in cases {
            let Line::Data { data, .. } = parse_line(line.as_bytes()).unwrap() else {
                panic!("not data: {line}");
            };
            assert_eq!(data.decode_in(&mut scratch), want, "{line}");
        }
    }

    fn decoded(line: &str) -> Result<Vec<u8>, Bad> {
        match parse_line(line.as_bytes())? {
            Line::Data { data, .. } => data.decode(),
            other => panic!("not data: {other:?}"),
        }
    }

    #[test]
    fn spec_lines() {
        let id = ConnId(*b"0tK3XaB9");
        match parse_line(OPEN.as_bytes()) {
            Ok(Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            }) => {
                assert_eq!(time.to_string(), "2025-10-22T15:32:47.123456Z");
                assert_eq!(
                    (conn_id, &*from, &*to, listen_port),
                    (id, "127.0.0.1:54321", "example.com:80", 8080)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decoded(DATA).unwrap(),
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        assert!(matches!(
            parse_line(CLOSE.as_bytes()),
            Ok(Line::Close { from, .. }) if from == "example.com:80"
        ));
    }

    #[test]
    fn every_byte_value_round_trips_at_every_alignment() {
        let all: Vec<u8> = (0..=255).collect();
        for skip in 0..16 {
            let bytes = &all[skip..];
            assert_eq!(decoded(&data_line(&encode(bytes))).unwrap(), bytes);
        }
        let text = b"plain text with no escapes at all, longer than a word".repeat(3);
        assert_eq!(decoded(&data_line(&encode(&text))).unwrap(), text);
    }

    #[test]
    fn other_shapes_and_orders_go_through_serde() {
        // Another field order and spaces: still this connection's data.
        let reordered = r#"{"ConnID": "0tK3XaB9", "from": "a:1", "to": "b:2", "data": "100%25 caf%C3%A9", "time": "2025-10-22T15:32:47.234567Z"}"#;
        assert_eq!(decoded(reordered).unwrap(), b"100% caf\xC3\xA9");
        // `\u` escapes (rawprox never writes them) are JSON-decoded first.
        assert_eq!(decoded(&data_line(r"%\u00341\u0041")).unwrap(), b"AA");
        assert_eq!(decoded(&data_line(r"%4\u0031")).unwrap(), b"A");
        assert_eq!(decoded(&data_line(r"\/\b\f")).unwrap(), b"/\x08\x0C");
        for other in [
            r#"{"time":"2025-10-22T15:32:47.123456Z","event":"mcp-ready","endpoint":"http://127.0.0.1:1/mcp"}"#,
            r#"{"level":"info","msg":"another tool"}"#,
            "[1,2,3]",
            "42",
            "",
            "   ",
        ] {
            assert_eq!(parse_line(other.as_bytes()), Ok(Line::Other), "{other}");
        }
        let start = r#"{"time":"2025-10-22T15:32:47.123456Z","event":"start-logging","directory":"logs","filename_format":"x"}"#;
        assert_eq!(parse_line(start.as_bytes()), Ok(Line::RunStart));
        assert_eq!(
            parse_line(format!("{OPEN}\r").as_bytes()).map(|l| l.conn_id()),
            Ok(Some(ConnId(*b"0tK3XaB9")))
        );
    }

    #[test]
    fn bad_lines_say_why() {
        let cases: &[(&str, Bad)] = &[
            ("not json at all", Bad::NotJson),
            (&OPEN[..OPEN.len() - 10], Bad::NotJson),
            (&OPEN.replace("0tK3XaB9", "short"), Bad::NotALogLine),
            (&OPEN.replace(".123456Z", ".123Z"), Bad::NotALogLine),
            (&OPEN.replace("open", "opened"), Bad::NotALogLine),
            (&OPEN.replace(":8080}", ":70000}"), Bad::NotALogLine),
            (
                &CLOSE.replace(r#","to":"127.0.0.1:54321""#, ""),
                Bad::NotALogLine,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()).err(), Some(*want), "{line}");
        }
        for broken in ["%", "%4", "%G1", "ab%zz", r"\x", "a%\"0", "\u{1}"] {
            let line = data_line(broken);
            let got = decoded(&line);
            assert!(
                matches!(got, Err(Bad::BadData | Bad::NotJson)),
                "{broken}: {got:?}"
            );
        }
    }

    #[test]
    fn doubts_in_the_middle_of_long_strings_are_settled() {
        let all: Vec<u8> = (0..=255).collect();
        let body = encode(&all);
        for at in [0, 1, 7, 100, body.len() - 3, body.len()] {
            // Split only between escapes.
            let at = (at..=body.len())
                .find(|&k| body.is_char_boundary(k) && body.get(..k).is_some_and(decodable))
                .unwrap();
            let (a, b) = body.split_at(at);
            let broken = format!("{a}%G1{b}");
            assert_eq!(decoded(&data_line(&broken)), Err(Bad::BadData), "at {at}");
            let unicode = format!("{a}\\u0041%\\u00341{b}");
            let mut want = decoded(&data_line(a)).unwrap();
            want.extend_from_slice(b"AA");
            want.extend(decoded(&data_line(b)).unwrap());
            assert_eq!(decoded(&data_line(&unicode)).unwrap(), want, "at {at}");
            let control = format!("{a}\u{1}{b}");
            assert_eq!(decoded(&data_line(&control)), Err(Bad::NotJson), "at {at}");
        }
    }

    /// True when `prefix` ends between two escapes.
    fn decodable(prefix: &str) -> bool {
        decoded(&data_line(prefix)).is_ok()
    }

    #[test]
    fn rawprox_lines_take_the_fast_path() {
        let all: Vec<u8> = (0..=255).cycle().take(5000).collect();
        for line in [OPEN, DATA, CLOSE, &data_line(&encode(&all))] {
            assert!(fast_parse(line.as_bytes()).is_some(), "{line}");
        }
    }

    #[test]
    fn peeking_finds_the_id_and_kind() {
        assert_eq!(peek_conn_id(DATA.as_bytes()), Some(ConnId(*b"0tK3XaB9")));
        assert!(peek_is_data(DATA.as_bytes()));
        assert!(!peek_is_data(OPEN.as_bytes()));
        assert_eq!(peek_conn_id(b"{\"time\":\"x\"}"), None);
    }
}
