//! `follow` (SPEC §9): the conversation of each selected connection in log
//! order, as Wireshark's "Follow TCP Stream" shows it: a header per
//! connection, then each data line as a direction marker, time and byte
//! count, and its bytes (text as text, the rest as a hex dump). What is
//! read is written out after each read of the input, so a pipe from a
//! running rawprox is a live view. The payload renderers are public for
//! the MCP reading tools.

use super::Error;
use super::input::Input;
use super::lines::Skipped;
use super::pipeline::{Event, Selection, events};
use super::show::{is_mostly_text, push_hex_dump, push_text, visible};
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
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

#[cfg(test)]
mod tests {
    use super::*;

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
