//! NDJSON traffic lines (SPEC §4), appended straight to a `Vec<u8>` with no
//! intermediate `String`. The field order is fixed, so lines are written by
//! hand; `serde_json` is kept for the rare control events.
//!
//! Address strings are trusted: client addresses come from `SocketAddr` and
//! targets from a validated `PortRule`, neither holds `"` or `\`.

use crate::connid::ConnId;
use crate::timefmt::LineClock;

/// How one byte is written inside the `data` string: `len` bytes of `text`,
/// or, when `len == 0`, the byte itself.
#[derive(Clone, Copy)]
struct Escape {
    len: u8,
    text: [u8; 3],
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

const fn escape_of(b: u8) -> Escape {
    match b {
        b'"' => Escape {
            len: 2,
            text: [b'\\', b'"', 0],
        },
        b'\\' => Escape {
            len: 2,
            text: [b'\\', b'\\', 0],
        },
        b'\t' => Escape {
            len: 2,
            text: [b'\\', b't', 0],
        },
        b'\n' => Escape {
            len: 2,
            text: [b'\\', b'n', 0],
        },
        b'\r' => Escape {
            len: 2,
            text: [b'\\', b'r', 0],
        },
        b'%' => Escape {
            len: 3,
            text: [b'%', b'2', b'5'],
        },
        0x20..=0x7E => Escape {
            len: 0,
            text: [0; 3],
        },
        _ => Escape {
            len: 3,
            text: [b'%', HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]],
        },
    }
}

const ESCAPES: [Escape; 256] = {
    let mut table = [Escape {
        len: 0,
        text: [0; 3],
    }; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = escape_of(i as u8);
        i += 1;
    }
    table
};

/// Appends the `data` encoding of `bytes` (without quotes) to `out`: runs of
/// bytes that stand for themselves are copied in one go.
pub fn push_data(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + bytes.len() / 8);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = &ESCAPES[b as usize];
        if esc.len != 0 {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(&esc.text[..esc.len as usize]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

fn push_head(out: &mut Vec<u8>, clock: &mut LineClock, micros: u64, id: &ConnId) {
    out.extend_from_slice(b"{\"time\":\"");
    clock.push_time(micros, out);
    out.extend_from_slice(b"\",\"ConnID\":\"");
    out.extend_from_slice(&id.0);
}

fn push_from_to(out: &mut Vec<u8>, from: &str, to: &str) {
    out.extend_from_slice(b"\",\"from\":\"");
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(b"\",\"to\":\"");
    out.extend_from_slice(to.as_bytes());
    out.push(b'"');
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
    out.extend_from_slice(b"\",\"event\":\"open");
    push_from_to(out, from, to);
    out.extend_from_slice(b",\"listen_port\":");
    out.extend_from_slice(listen_port.to_string().as_bytes());
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
    out.extend_from_slice(b"\",\"data\":\"");
    push_data(out, data);
    push_from_to(out, from, to);
    out.extend_from_slice(b"}\n");
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
    out.extend_from_slice(b"\",\"event\":\"close");
    push_from_to(out, from, to);
    out.extend_from_slice(b"}\n");
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
    out.extend_from_slice(b"{\"time\":\"");
    clock.push_time(micros, out);
    out.extend_from_slice(b"\",\"event\":\"");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\",\"directory\":");
    push_json_value(out, &directory.map_or(serde_json::Value::Null, Into::into));
    if let Some(format) = filename_format {
        out.extend_from_slice(b",\"filename_format\":");
        push_json_value(out, &format.into());
    }
    out.extend_from_slice(b"}\n");
}

/// `{"time":…,"event":"mcp-ready","endpoint":"http://127.0.0.1:PORT/mcp"}` (SPEC §7).
pub fn push_mcp_ready(out: &mut Vec<u8>, clock: &mut LineClock, micros: u64, endpoint: &str) {
    out.extend_from_slice(b"{\"time\":\"");
    clock.push_time(micros, out);
    out.extend_from_slice(b"\",\"event\":\"mcp-ready\",\"endpoint\":");
    push_json_value(out, &endpoint.into());
    out.extend_from_slice(b"}\n");
}

fn push_json_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail");
}

/// Percent-decodes a JSON-decoded `data` string back to the bytes on the wire.
/// Returns None if a `%` is not followed by two hex digits.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_data(&mut out, bytes);
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

    #[test]
    fn every_byte_round_trips_through_json() {
        let all: Vec<u8> = (0..=255).collect();
        let text = format!("\"{}\"", encoded(&all));
        assert!(!text.contains("\\u"));
        let parsed: String = serde_json::from_str(&text).unwrap();
        assert_eq!(percent_decode(&parsed).unwrap(), all);
    }

    #[test]
    fn random_bytes_round_trip() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in [1usize, 7, 100, 4096, 32 * 1024] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let text = format!("\"{}\"", encoded(&bytes));
            let parsed: String = serde_json::from_str(&text).unwrap();
            assert_eq!(percent_decode(&parsed).unwrap(), bytes, "length {len}");
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
    fn bad_percent_escapes_do_not_decode() {
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("a%41"), Some(b"aA".to_vec()));
    }
}
