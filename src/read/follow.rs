//! `follow` (SPEC §9): the conversation of each selected connection in log
//! order, as Wireshark's "Follow TCP Stream" shows it: a header per
//! connection, then each data line as a direction marker, time and byte
//! count, and its bytes (text as text, the rest as a hex dump). What is
//! read is written out after each read of the input, so a pipe from a
//! running rawprox is a live view. The payload renderers are public for
//! the MCP reading tools.

use super::Error;
use super::input::{Input, Skipped};
use super::pipeline::{Event, Selection, events};
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::borrow::Cow;
use std::io::Write;
use std::ops::ControlFlow;

/// Wireshark's colours: client to target red, target to client blue.
const RED: &str = "\x1b[31m";
const BLUE: &str = "\x1b[34m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Writes the conversations of the selected connections in `inputs` to
/// `out`, in colour when `colour`, flushing after each read of the input.
/// A named ConnID that the input does not hold is an error (SPEC §9).
pub fn follow(
    inputs: &[Input],
    select: &Selection,
    colour: bool,
    out: &mut impl Write,
) -> Result<Skipped, Error> {
    let mut text = String::new();
    let mut found: Vec<ConnId> = Vec::new();
    // Per connection: how far each side's stream has got (hex offsets).
    let skipped = events::<[u64; 2]>(inputs, select, |event| {
        text.clear();
        match event {
            Event::Open { id, time, conn } => {
                if !select.ids.is_empty() && !found.contains(&id) {
                    found.push(id);
                }
                let port = conn.listen_port.filter(|_| conn.opened);
                header(
                    &mut text,
                    colour,
                    id,
                    port,
                    &conn.client,
                    &conn.target,
                    time,
                );
            }
            Event::Data {
                id,
                time,
                side,
                bytes,
                conn,
            } => {
                let offset = &mut conn.state[side as usize];
                message(&mut text, colour, id, side, time, bytes, *offset);
                *offset += bytes.len() as u64;
            }
            Event::Close { id, time, side, .. } => {
                if colour {
                    text.push_str(BOLD);
                }
                text.push_str(&format!("== {id} {} closed first, at {time}", side.name()));
                if colour {
                    text.push_str(RESET);
                }
                text.push('\n');
            }
            Event::Retired { .. } => return Ok(ControlFlow::Continue(())),
            Event::Caught => {
                out.flush().map_err(Error::output)?;
                return Ok(ControlFlow::Continue(()));
            }
        }
        out.write_all(text.as_bytes()).map_err(Error::output)?;
        Ok(ControlFlow::Continue(()))
    })?;
    out.flush().map_err(Error::output)?;
    if let Some(missing) = select.ids.iter().find(|id| !found.contains(id)) {
        return Err(super::extract::not_found_after(*missing, &skipped));
    }
    Ok(skipped)
}

fn header(
    text: &mut String,
    colour: bool,
    id: ConnId,
    port: Option<u16>,
    client: &str,
    target: &str,
    time: Time,
) {
    if colour {
        text.push_str(BOLD);
    }
    // SPEC §9: addresses come from the log; no escape in one reaches the
    // terminal raw.
    let (client, target) = (visible(client), visible(target));
    match port {
        Some(port) => text.push_str(&format!(
            "== {id} port {port}: {client} -> {target}, opened {time}"
        )),
        None => text.push_str(&format!(
            "== {id} {client} -> {target} (its open is not in the input), first seen {time}"
        )),
    }
    if colour {
        text.push_str(RESET);
    }
    text.push('\n');
}

/// One data line: the marker (`>>` client to target, `<<` target to
/// client), then the bytes as text or as a hex dump.
fn message(
    text: &mut String,
    colour: bool,
    id: ConnId,
    side: Side,
    time: Time,
    bytes: &[u8],
    stream_offset: u64,
) {
    let (marker, way, paint) = match side {
        Side::Client => (">>", "client -> target", RED),
        Side::Target => ("<<", "target -> client", BLUE),
    };
    if colour {
        text.push_str(paint);
    }
    let as_text = is_mostly_text(bytes);
    text.push_str(&format!(
        "{marker} {id} {time} {} bytes {way}{}\n",
        bytes.len(),
        if as_text { "" } else { ", hex" }
    ));
    if as_text {
        push_text(bytes, text);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    } else {
        push_hex_dump(bytes, stream_offset, text);
    }
    if colour {
        text.push_str(RESET);
    }
}

/// True when at least 90% of `bytes` are text: printable ASCII, tab, CR,
/// LF, or printable characters of valid UTF-8.
pub fn is_mostly_text(bytes: &[u8]) -> bool {
    let mut text_bytes = 0usize;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if matches!(c, '\t' | '\n' | '\r') || !c.is_control() {
                text_bytes += c.len_utf8();
            }
        }
    }
    text_bytes * 10 >= bytes.len() * 9
}

/// Appends `bytes` as text: printable characters as they are, tab and
/// newline as themselves, every other control byte, DEL and bytes that are
/// not UTF-8 made visible (`\r`, `\0`, `\xNN`), so nothing written can
/// move a terminal's cursor or change its colours.
pub fn push_text(bytes: &[u8], out: &mut String) {
    push_escaped(bytes, out, true);
}

/// `text` with every control character made visible, tab and newline too:
/// for the addresses and names a log or a directory gives, which must
/// neither reach a terminal raw nor break a table's row (SPEC §9).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    push_escaped(text.as_bytes(), &mut out, false);
    Cow::Owned(out)
}

/// `push_text`, with tab and newline kept as they are when `layout`.
fn push_escaped(bytes: &[u8], out: &mut String, layout: bool) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' if layout => out.push(c),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
}

/// Appends a hex dump of `bytes` as `hexdump -C` writes it: the offset
/// (from `first_offset`), 16 bytes in hex, and those bytes as ASCII with
/// `.` for the rest.
pub fn push_hex_dump(bytes: &[u8], first_offset: u64, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (n, row) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", first_offset + 16 * n as u64));
        for i in 0..16 {
            match row.get(i) {
                Some(&b) => {
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 0xF) as usize] as char);
                    out.push(' ');
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(row.iter().map(|&b| {
            if (0x20..0x7F).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shows_control_bytes() {
        let mut out = String::new();
        push_text(
            b"GET / HTTP/1.1\r\nA:\tb\x1b[31m\x00caf\xC3\xA9 \xFF\x7F",
            &mut out,
        );
        assert_eq!(out, "GET / HTTP/1.1\\r\nA:\tb\\x1b[31m\\0café \\xff\\x7f");
        assert_eq!(visible("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(
            visible("\u{1b}[31mEVIL\n\tcafé\u{9b}:1"),
            "\\x1b[31mEVIL\\n\\tcafé\\xc2\\x9b:1"
        );
        assert!(is_mostly_text(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(is_mostly_text("héllo wörld".as_bytes()));
        assert!(!is_mostly_text(&(0..=255).collect::<Vec<u8>>()));
    }

    #[test]
    fn hex_dump_as_hexdump_c() {
        let mut out = String::new();
        push_hex_dump(b"GET / HTTP/1.1\r\n\x00\xff", 0x20, &mut out);
        assert_eq!(
            out,
            "00000020  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n\
             00000030  00 ff                                             |..|\n"
        );
    }

    fn log() -> Vec<u8> {
        let lines = [
            r#"{"time":"2025-10-22T15:32:47.000000Z","ConnID":"0000000A","event":"open","from":"c:1","to":"t:2","listen_port":9}"#,
            r#"{"time":"2025-10-22T15:32:47.100000Z","ConnID":"0000000A","data":"hi\r\n","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.150000Z","ConnID":"0000000B","data":"late","from":"x:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.200000Z","ConnID":"0000000A","data":"%00%01%02%03","from":"t:2","to":"c:1"}"#,
            r#"{"time":"2025-10-22T15:32:47.300000Z","ConnID":"0000000A","event":"close","from":"t:2","to":"c:1"}"#,
        ];
        (lines.join("\n") + "\n").into_bytes()
    }

    fn followed(select: &Selection, colour: bool) -> String {
        let mut out = Vec::new();
        follow(&[Input::Bytes(log())], select, colour, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn conversation_in_log_order() {
        let all = followed(&Selection::default(), false);
        assert_eq!(
            all,
            "== 0000000A port 9: c:1 -> t:2, opened 2025-10-22T15:32:47.000000Z\n\
             >> 0000000A 2025-10-22T15:32:47.100000Z 4 bytes client -> target\n\
             hi\\r\n\
             == 0000000B x:1 -> t:2 (its open is not in the input), first seen 2025-10-22T15:32:47.150000Z\n\
             >> 0000000B 2025-10-22T15:32:47.150000Z 4 bytes client -> target\n\
             late\n\
             << 0000000A 2025-10-22T15:32:47.200000Z 4 bytes target -> client, hex\n\
             00000000  00 01 02 03                                       |....|\n\
             == 0000000A target closed first, at 2025-10-22T15:32:47.300000Z\n"
        );
        let port = followed(
            &Selection {
                ids: vec![],
                port: Some(9),
                ..Selection::default()
            },
            false,
        );
        assert!(!port.contains("0000000B"), "{port}");
        let ids = followed(
            &Selection {
                ids: vec![ConnId(*b"0000000B")],
                port: None,
                ..Selection::default()
            },
            true,
        );
        let mut out = Vec::new();
        let unknown = Selection {
            ids: vec![ConnId(*b"0000000Z")],
            port: None,
            ..Selection::default()
        };
        let err = follow(&[Input::Bytes(log())], &unknown, false, &mut out).unwrap_err();
        assert!(
            matches!(&err, Error::Message(m) if m.contains("no connection 0000000Z")),
            "{err}"
        );
        assert!(!ids.contains("0000000A"), "{ids}");
        assert!(ids.contains(&format!("{RED}>> 0000000B")), "{ids:?}");
    }
}
