//! One log line in, one `Line` out (SPEC §4). Lines as rawprox writes
//! them (fixed field order, compact) go through a fast path that borrows
//! from the line and leaves the `data` string encoded (`data.rs` decodes it
//! when asked); any other line (another field order, spaces, another
//! tool's JSON) goes through `serde_json` and is judged by its fields.

use super::bad::Bad;
use super::data::Data;
use crate::format::connid::ConnId;
use crate::format::fields;
use crate::format::time::{TIME_LEN, Time};
use std::borrow::Cow;

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

/// Where the ConnID starts and ends in a line rawprox wrote.
const ID_AT: usize = fields::TIME.len() + TIME_LEN + fields::CONN_ID.len();
const AFTER_ID: usize = ID_AT + 8;

/// The ConnID of a line as rawprox writes it, read from its fixed place
/// without parsing the rest: lets a reader skip other connections' lines at
/// the speed of finding newlines. `None` means "parse it to know".
pub fn peek_conn_id(line: &[u8]) -> Option<ConnId> {
    if line.len() > AFTER_ID
        && line.starts_with(fields::TIME)
        && &line[fields::TIME.len() + TIME_LEN..ID_AT] == fields::CONN_ID
    {
        ConnId::parse(&line[ID_AT..AFTER_ID])
    } else {
        None
    }
}

/// True when `line` (as rawprox writes it) is a data line: with
/// `peek_conn_id`, enough to skip it unparsed.
pub fn peek_is_data(line: &[u8]) -> bool {
    line.get(AFTER_ID..AFTER_ID + fields::DATA.len()) == Some(fields::DATA)
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
        let rest = self.line.get(self.at..)?.strip_suffix(fields::END)?;
        let plain = |s: &'a [u8]| {
            s.iter()
                .all(|b| (0x20..0x7F).contains(b) && *b != b'\\')
                .then(|| std::str::from_utf8(s).ok())
                .flatten()
        };
        let to_at = memchr::memrchr(b'"', rest)?;
        let to = plain(&rest[to_at + 1..])?;
        let rest = rest[..=to_at].strip_suffix(fields::TO)?;
        let from_at = memchr::memrchr(b'"', rest)?;
        let from = plain(&rest[from_at + 1..])?;
        let text = rest[..=from_at].strip_suffix(fields::FROM)?;
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

/// The fast path alone: the line as rawprox writes it, or None for any
/// other (which `parse_line` hands to `serde_json`). Seen by the format's
/// tests, which hold every line the encoder writes to it.
pub(in crate::format) fn fast_parse(line: &[u8]) -> Option<Line<'_>> {
    let conn_id = peek_conn_id(line)?;
    let time = Time::parse(&line[fields::TIME.len()..fields::TIME.len() + TIME_LEN])?;
    let mut c = Cursor { line, at: AFTER_ID };
    if c.expect(fields::DATA).is_some() {
        let (text, from, to) = c.data_and_addresses()?;
        return (c.at == line.len()).then_some(Line::Data {
            time,
            conn_id,
            data: Data::as_written(text),
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
        });
    }
    c.expect(fields::EVENT)?;
    let open = match c.expect(fields::OPEN.as_bytes()) {
        Some(()) => true,
        None => c.expect(fields::CLOSE.as_bytes()).map(|()| false)?,
    };
    c.expect(fields::FROM)?;
    let from = Cow::Borrowed(c.plain_str()?);
    c.expect(fields::TO)?;
    let to = Cow::Borrowed(c.plain_str()?);
    if !open {
        c.expect(fields::END)?;
        return (c.at == line.len()).then_some(Line::Close {
            time,
            conn_id,
            from,
            to,
        });
    }
    c.expect(fields::LISTEN_PORT)?;
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
            Some(fields::START_LOGGING) => Line::RunStart,
            Some(fields::STOP_LOGGING) => Line::RunEnd,
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
            data: Data::json_decoded(text),
            from,
            to,
        });
    }
    match fields.get("event").and_then(Value::as_str) {
        Some(fields::OPEN) => {
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
        Some(fields::CLOSE) => Ok(Line::Close {
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
    use crate::format::reference::encode_data;

    const OPEN: &str = r#"{"time":"2025-10-22T15:32:47.123456Z","ConnID":"0tK3XaB9","event":"open","from":"127.0.0.1:54321","to":"example.com:80","listen_port":8080}"#;
    const DATA: &str = r#"{"time":"2025-10-22T15:32:47.234567Z","ConnID":"0tK3XaB9","data":"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n","from":"127.0.0.1:54321","to":"example.com:80"}"#;
    const CLOSE: &str = r#"{"time":"2025-10-22T15:32:48.456789Z","ConnID":"0tK3XaB9","event":"close","from":"example.com:80","to":"127.0.0.1:54321"}"#;

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
            (data_line(&encode_data(&long)), Ok(&long)),
            (data_line("short"), Ok(b"short")),
            (data_line(r"%\u00341\u0041"), Ok(b"AA")),
            (data_line(&encode_data(&long[..100])), Ok(&long[..100])),
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
            assert_eq!(decoded(&data_line(&encode_data(bytes))).unwrap(), bytes);
        }
        let text = b"plain text with no escapes at all, longer than a word".repeat(3);
        assert_eq!(decoded(&data_line(&encode_data(&text))).unwrap(), text);
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
        let body = encode_data(&all);
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
        for line in [OPEN, DATA, CLOSE, &data_line(&encode_data(&all))] {
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
