//! `follow` (SPEC §9): the conversation of each selected connection in log
//! order, as Wireshark's "Follow TCP Stream" shows it: a header per
//! connection, then each data line as a direction marker, time and byte
//! count, and its bytes (text as text, the rest as a hex dump). What is
//! read is written out after each read of the input, so a pipe from a
//! running rawprox is a live view. The payload renderers are public for
//! the MCP reading tools.

use super::decode::{ConnId, Line, Time, parse_line, peek_conn_id, peek_is_data};
use super::input::{Input, Piece, Skipped, read_lines};
use super::track::Tracker;
use super::{Error, Side};
use std::io::Write;
use std::ops::ControlFlow;

/// Which connections to show: all when `ids` is empty and `port` is `None`.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub ids: Vec<ConnId>,
    pub port: Option<u16>,
}

impl Selection {
    fn wants_id(&self, id: &ConnId) -> bool {
        self.ids.is_empty() || self.ids.contains(id)
    }
}

/// Wireshark's colours: client to target red, target to client blue.
const RED: &str = "\x1b[31m";
const BLUE: &str = "\x1b[34m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Per connection: how far each side's stream has got (hex offsets).
#[derive(Default)]
struct Streams {
    offsets: [u64; 2],
}

/// Writes the conversations of the selected connections in `inputs` to
/// `out`, in colour when `colour`, flushing after each read of the input.
pub fn follow(
    inputs: &[Input],
    select: &Selection,
    colour: bool,
    out: &mut impl Write,
) -> Result<Skipped, Error> {
    let mut skipped = Skipped::default();
    let mut tracker: Tracker<Streams> = Tracker::default();
    let mut scratch = Vec::new();
    let mut text = String::new();
    let mut failed: Option<std::io::Error> = None;
    read_lines(inputs, |place, piece| {
        let raw = match piece {
            Piece::Line(raw) => raw,
            Piece::Unusable(why) => {
                skipped.note(place, why);
                return ControlFlow::Continue(());
            }
            Piece::Caught => {
                return match out.flush() {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                };
            }
        };
        // Other connections' lines, known by their ConnID, go unparsed.
        if let Some(id) = peek_conn_id(raw)
            && (!select.wants_id(&id)
                || (select.port.is_some() && peek_is_data(raw) && !tracker.contains(&id)))
        {
            return ControlFlow::Continue(());
        }
        let line = match parse_line(raw) {
            Ok(line) => line,
            Err(why) => {
                skipped.note(place, why);
                return ControlFlow::Continue(());
            }
        };
        text.clear();
        let time = match line {
            Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            } => {
                if !select.wants_id(&conn_id) || select.port.is_some_and(|p| p != listen_port) {
                    return ControlFlow::Continue(());
                }
                tracker.insert(conn_id, time, &from, &to, true, Streams::default());
                header(
                    &mut text,
                    colour,
                    conn_id,
                    Some(listen_port),
                    &from,
                    &to,
                    time,
                );
                time
            }
            Line::Data {
                time,
                conn_id,
                data,
                from,
                to,
            } => {
                let decoded = match data.decode_in(&mut scratch) {
                    Ok(decoded) => decoded,
                    Err(why) => {
                        skipped.note(place, why);
                        return ControlFlow::Continue(());
                    }
                };
                if !adopt(
                    &mut tracker,
                    select,
                    conn_id,
                    time,
                    &from,
                    &to,
                    &mut text,
                    colour,
                ) {
                    return ControlFlow::Continue(());
                }
                let conn = tracker.get_mut(&conn_id).expect("adopted above");
                conn.last = time;
                let side = conn.side_of(&from);
                let offset = &mut conn.state.offsets[side as usize];
                message(&mut text, colour, conn_id, side, time, decoded, *offset);
                *offset += decoded.len() as u64;
                time
            }
            Line::Close {
                time,
                conn_id,
                from,
                to,
            } => {
                if !adopt(
                    &mut tracker,
                    select,
                    conn_id,
                    time,
                    &from,
                    &to,
                    &mut text,
                    colour,
                ) {
                    return ControlFlow::Continue(());
                }
                let conn = tracker.get_mut(&conn_id).expect("adopted above");
                conn.last = time;
                let side = conn.side_of(&from);
                if colour {
                    text.push_str(BOLD);
                }
                text.push_str(&format!(
                    "== {conn_id} {} closed first, at {time}",
                    side.name()
                ));
                if colour {
                    text.push_str(RESET);
                }
                text.push('\n');
                tracker.close(conn_id, side);
                time
            }
            Line::RunStart | Line::RunEnd | Line::Other => return ControlFlow::Continue(()),
        };
        tracker.retire_due(time, |_, _| {});
        if let Err(e) = out.write_all(text.as_bytes()) {
            failed = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(Error::output(e));
    }
    out.flush().map_err(Error::output)?;
    Ok(skipped)
}

/// Makes sure a data or close line's connection is followed: a connection
/// whose `open` is not in the input is taken up at its first line (with a
/// header), unless a port is selected (its port is not known). False when
/// the line is not to be shown.
#[allow(clippy::too_many_arguments)]
fn adopt(
    tracker: &mut Tracker<Streams>,
    select: &Selection,
    id: ConnId,
    time: Time,
    from: &str,
    to: &str,
    text: &mut String,
    colour: bool,
) -> bool {
    if tracker.contains(&id) {
        return true;
    }
    if select.port.is_some() || !select.wants_id(&id) {
        return false;
    }
    tracker.insert(id, time, from, to, false, Streams::default());
    header(text, colour, id, None, from, to, time);
    true
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
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c),
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
            },
            false,
        );
        assert!(!port.contains("0000000B"), "{port}");
        let ids = followed(
            &Selection {
                ids: vec![ConnId(*b"0000000B")],
                port: None,
            },
            true,
        );
        assert!(!ids.contains("0000000A"), "{ids}");
        assert!(ids.contains(&format!("{RED}>> 0000000B")), "{ids:?}");
    }
}
