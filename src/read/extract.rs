//! One connection out of a log: `extract` (SPEC §9) writes the exact bytes
//! one side sent; `conversation` returns both sides' messages (or one
//! side's) as values, cut at a byte budget, for the MCP reading tools.
//!
//! Both follow the first connection with the ConnID (a later `open` with the
//! same ID is another run's). Lines of other connections are recognised by
//! the ConnID at its fixed place and skipped without being parsed, so only
//! this connection's lines are checked and counted when they do not decode.

use super::Error;
use super::input::Input;
use super::lines::Skipped;
use super::pipeline::{self, Selection};
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::io::Write;
use std::ops::ControlFlow;

/// What the lines of one connection say, in log order.
pub enum Event<'a> {
    Data {
        time: Time,
        side: Side,
        bytes: &'a [u8],
    },
    Close {
        time: Time,
        side: Side,
    },
}

/// Who the connection is between, once its first line is seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Peers {
    pub client: String,
    pub target: String,
    /// `None` when the `open` line is not in the input.
    pub listen_port: Option<u16>,
}

/// Calls `each` for every data and close line of the first connection `id`
/// in `inputs` that opened at or after `since`, if given (a later `open`
/// with the same ID is another run's: the reading stops there). Returns its
/// peers, or `None` if no line of it was found. `each` may stop early.
pub fn scan(
    inputs: &[Input],
    id: ConnId,
    since: Option<Time>,
    skipped: &mut Skipped,
    mut each: impl FnMut(Event) -> pipeline::Flow,
) -> Result<Option<Peers>, Error> {
    let mut peers: Option<Peers> = None;
    let select = Selection {
        ids: vec![id],
        port: None,
        since,
    };
    *skipped = pipeline::events::<()>(inputs, &select, |event| match event {
        pipeline::Event::Open { conn, .. } => {
            peers = Some(Peers {
                client: conn.client.to_string(),
                target: conn.target.to_string(),
                listen_port: conn.listen_port,
            });
            Ok(ControlFlow::Continue(()))
        }
        pipeline::Event::Data {
            time, side, bytes, ..
        } => each(Event::Data { time, side, bytes }),
        pipeline::Event::Close { time, side, .. } => each(Event::Close { time, side }),
        pipeline::Event::Retired { .. } => Ok(ControlFlow::Break(())),
        pipeline::Event::Caught => Ok(ControlFlow::Continue(())),
    })?;
    Ok(peers)
}

/// The error for a ConnID the input does not hold (SPEC §9).
pub fn not_found(id: ConnId) -> Error {
    Error::Message(format!(
        "no connection {id} in the input (`rawprox.exe list` shows the ConnIDs)"
    ))
}

/// `not_found`, saying what was skipped: the connection may be there (a
/// directory holding no `.ndjson` file, a file that could not be opened).
pub fn not_found_after(id: ConnId, skipped: &Skipped) -> Error {
    match (not_found(id), skipped.message()) {
        (Error::Message(m), Some(skipped)) => Error::Message(format!("{m}. {skipped}")),
        (error, _) => error,
    }
}

/// Writes the bytes `side` sent on connection `id` to `out`, exactly as
/// they crossed the wire; returns how many. An ID with no line in the
/// input is an error.
pub fn extract(
    inputs: &[Input],
    id: ConnId,
    side: Side,
    out: &mut impl Write,
) -> Result<(u64, Skipped), Error> {
    let mut skipped = Skipped::default();
    let mut written = 0u64;
    let peers = scan(inputs, id, None, &mut skipped, |event| {
        if let Event::Data { side: s, bytes, .. } = event
            && s == side
        {
            out.write_all(bytes).map_err(Error::output)?;
            written += bytes.len() as u64;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if peers.is_none() {
        return Err(not_found_after(id, &skipped));
    }
    Ok((written, skipped))
}

/// One data line of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub time: Time,
    /// The side that sent it.
    pub side: Side,
    /// Where `bytes` start in the stream of what this side sent.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// A connection's messages, or a cut of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub conn_id: ConnId,
    pub peers: Peers,
    /// The messages from the requested byte offset on, in log order; the
    /// first and last may be cut.
    pub messages: Vec<Message>,
    /// More bytes follow past `max_bytes`.
    pub truncated: bool,
    /// How it ended, if the log got that far (not known when truncated).
    pub closed_by: Option<Side>,
}

/// The conversation of connection `id` (the first that opened at or after
/// `since`, if given): the data both sides sent (or only `side`), skipping the first `offset` bytes of it (counted over the
/// selected sides, in log order) and holding at most `max_bytes`; reading
/// stops as soon as the budget is exceeded. An unknown ID is an error.
pub fn conversation(
    inputs: &[Input],
    id: ConnId,
    since: Option<Time>,
    side: Option<Side>,
    offset: u64,
    max_bytes: usize,
) -> Result<(Conversation, Skipped), Error> {
    let mut skipped = Skipped::default();
    let mut messages = Vec::new();
    let mut truncated = false;
    let mut closed_by = None;
    // Bytes of the selection seen so far; of each side's stream.
    let mut seen = 0u64;
    let mut kept = 0usize;
    let mut stream_offsets = [0u64; 2];
    let peers = scan(inputs, id, since, &mut skipped, |event| {
        match event {
            Event::Data {
                time,
                side: from,
                bytes,
            } => {
                let at = &mut stream_offsets[from as usize];
                let stream_offset = *at;
                *at += bytes.len() as u64;
                if side.is_some_and(|s| s != from) {
                    return Ok(ControlFlow::Continue(()));
                }
                let start = seen;
                seen += bytes.len() as u64;
                if seen <= offset {
                    return Ok(ControlFlow::Continue(()));
                }
                let skip = offset.saturating_sub(start) as usize;
                let room = max_bytes - kept;
                let take = (bytes.len() - skip).min(room);
                if take > 0 {
                    messages.push(Message {
                        time,
                        side: from,
                        offset: stream_offset + skip as u64,
                        bytes: bytes[skip..skip + take].to_vec(),
                    });
                    kept += take;
                }
                if skip + take < bytes.len() {
                    truncated = true;
                    return Ok(ControlFlow::Break(()));
                }
            }
            Event::Close { side, .. } => closed_by = closed_by.or(Some(side)),
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let peers = peers.ok_or_else(|| not_found(id))?;
    Ok((
        Conversation {
            conn_id: id,
            peers,
            messages,
            truncated,
            closed_by: if truncated { None } else { closed_by },
        },
        skipped,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<u8> {
        let lines = [
            r#"{"time":"2025-10-22T15:32:47.000000Z","ConnID":"0000000A","event":"open","from":"c:1","to":"t:2","listen_port":9}"#,
            r#"{"time":"2025-10-22T15:32:47.100000Z","ConnID":"0000000B","data":"other","from":"x:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.200000Z","ConnID":"0000000A","data":"hel","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.300000Z","ConnID":"0000000A","data":"%00%FF","from":"t:2","to":"c:1"}"#,
            r#"{"time":"2025-10-22T15:32:47.400000Z","ConnID":"0000000A","data":"lo%zz","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.500000Z","ConnID":"0000000A","data":"lo","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.600000Z","ConnID":"0000000A","event":"close","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:48.000000Z","ConnID":"0000000A","event":"open","from":"c:7","to":"t:2","listen_port":9}"#,
            r#"{"time":"2025-10-22T15:32:48.100000Z","ConnID":"0000000A","data":"next run","from":"c:7","to":"t:2"}"#,
        ];
        (lines.join("\n") + "\n").into_bytes()
    }

    #[test]
    fn extract_one_side_of_the_first_connection() {
        let inputs = [Input::Bytes(log())];
        let id = ConnId(*b"0000000A");
        let mut out = Vec::new();
        let (n, skipped) = extract(&inputs, id, Side::Client, &mut out).unwrap();
        assert_eq!((out.as_slice(), n), (&b"hello"[..], 5));
        assert_eq!(skipped.count, 1, "the broken %zz");
        out.clear();
        extract(&inputs, id, Side::Target, &mut out).unwrap();
        assert_eq!(out, b"\x00\xFF");
        let err = extract(&inputs, ConnId(*b"0000000Z"), Side::Client, &mut out);
        assert!(matches!(err, Err(Error::Message(m)) if m.contains("0000000Z")));
    }

    #[test]
    fn conversations_are_cut_at_offset_and_budget() {
        let inputs = [Input::Bytes(log())];
        let id = ConnId(*b"0000000A");
        let (all, _) = conversation(&inputs, id, None, None, 0, 100).unwrap();
        let parts: Vec<(Side, u64, &[u8])> = all
            .messages
            .iter()
            .map(|m| (m.side, m.offset, m.bytes.as_slice()))
            .collect();
        assert_eq!(
            parts,
            [
                (Side::Client, 0, &b"hel"[..]),
                (Side::Target, 0, &b"\x00\xFF"[..]),
                (Side::Client, 3, &b"lo"[..]),
            ]
        );
        assert_eq!((all.truncated, all.closed_by), (false, Some(Side::Client)));
        assert_eq!(all.peers.listen_port, Some(9));
        let (cut, _) = conversation(&inputs, id, None, None, 2, 2).unwrap();
        let parts: Vec<(u64, &[u8])> = cut
            .messages
            .iter()
            .map(|m| (m.offset, m.bytes.as_slice()))
            .collect();
        assert_eq!(parts, [(2, &b"l"[..]), (0, &b"\x00"[..])]);
        assert!(cut.truncated);
        let (client, _) = conversation(&inputs, id, None, Some(Side::Client), 1, 100).unwrap();
        let bytes: Vec<u8> = client
            .messages
            .iter()
            .flat_map(|m| m.bytes.clone())
            .collect();
        assert_eq!(bytes, b"ello");
    }
}
