//! The read side's one pipeline (SPEC §9): inputs → lines → decoded
//! connection events. Every reading command is a sink on it: `list`,
//! `follow`, `extract`, `pcap` (and the MCP reading tools and `replay`
//! through them).
//!
//! What the pipeline does so that no sink has to:
//! - reads the inputs as a stream of lines (`input`), never a whole log;
//! - skips, unparsed, the lines of connections the selection leaves out
//!   (known by the ConnID at its fixed place);
//! - parses and decodes the rest, counting the lines that do not parse or
//!   whose `data` does not decode (`Skipped`);
//! - adopts a connection whose `open` is not in the input at its first
//!   line (not when a port is selected: its port is not known);
//! - tracks each connection from its first line until it is retired
//!   (`track`), so memory follows the connections open at once.
//!
//! A sink sees, per connection: one `Open`, its `Data` in log order, at
//! most one `Close` (the first close line: the side that ended first), and
//! one `Retired` when it leaves. `Caught` says that everything read so far
//! was handed on (a live view flushes then).

use super::Error;
use super::input::Input;
use super::lines::{Piece, Skipped, read_lines};
use super::track::{Conn, Tracker};
use crate::format::connid::ConnId;
use crate::format::decode::data::Data;
use crate::format::decode::line::{Line, parse_line, peek_conn_id, peek_is_data};
use crate::format::side::Side;
use crate::format::time::Time;
use std::ops::ControlFlow;

/// Which connections to hand on: all when `ids` is empty, `port` and
/// `since` are `None`.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub ids: Vec<ConnId>,
    pub port: Option<u16>,
    /// Only connections that opened at or after this time (their `open`
    /// line, or their first line when the `open` is not in the input): the
    /// MCP tools read this run's lines only (SPEC §9), where earlier runs
    /// may have written to the same files.
    pub since: Option<Time>,
}

impl Selection {
    pub fn wants_id(&self, id: &ConnId) -> bool {
        self.ids.is_empty() || self.ids.contains(id)
    }

    /// True when a connection taken up at `time` is recent enough.
    fn wants_time(&self, time: Time) -> bool {
        self.since.is_none_or(|since| time >= since)
    }
}

/// What a sink is told, in log order. `conn.state` is the sink's own per
/// connection, `T::default()` at `Open`.
pub enum Event<'a, T> {
    /// A connection starts: at its `open` line (`conn.opened`), or at its
    /// first line when the `open` is not in the input.
    Open {
        id: ConnId,
        time: Time,
        conn: &'a mut Conn<T>,
    },
    /// One data line: the bytes `side` sent, decoded.
    Data {
        id: ConnId,
        time: Time,
        side: Side,
        bytes: &'a [u8],
        conn: &'a mut Conn<T>,
    },
    /// The connection's first `close` line: `side` ended first.
    Close {
        id: ConnId,
        time: Time,
        side: Side,
        conn: &'a mut Conn<T>,
    },
    /// The connection leaves: its grace after the close ran out, a new
    /// `open` took its ConnID (another run), or the input ended.
    Retired { id: ConnId, conn: Conn<T> },
    /// Everything read so far was handed on.
    Caught,
}

/// What a sink answers: go on, stop reading (`Break`), or fail.
pub type Flow = Result<ControlFlow<()>, Error>;

/// Runs the pipeline over `inputs` and hands every event of the selected
/// connections to `sink`; returns the lines skipped. A sink's error stops
/// the reading and is returned.
pub fn events<T: Default>(
    inputs: &[Input],
    select: &Selection,
    mut sink: impl FnMut(Event<'_, T>) -> Flow,
) -> Result<Skipped, Error> {
    run(inputs, select, &mut sink)
}

/// `events`, made once per kind of connection state rather than once per
/// sink: the sink is called through a pointer (one indirect call per line,
/// next to parsing and decoding it), so the pipeline is not copied into
/// every caller (SPEC §1: the executable stays within 1.5 MiB).
#[inline(never)]
fn run<T: Default>(
    inputs: &[Input],
    select: &Selection,
    mut sink: &mut dyn FnMut(Event<'_, T>) -> Flow,
) -> Result<Skipped, Error> {
    let mut tracker: Tracker<T> = Tracker::default();
    let mut scratch = Vec::new();
    // Set when a sink stopped the reading: `Ok` for a `Break`.
    let mut stopped: Option<Result<(), Error>> = None;
    // Runs a sink call; false when the reading must stop.
    let go_on = |flow: Flow, stopped: &mut Option<Result<(), Error>>| match flow {
        Ok(ControlFlow::Continue(())) => true,
        Ok(ControlFlow::Break(())) => {
            *stopped = Some(Ok(()));
            false
        }
        Err(e) => {
            *stopped = Some(Err(e));
            false
        }
    };
    let skipped = read_lines(inputs, |place, piece, skipped| {
        let raw = match piece {
            Piece::Line(raw) => raw,
            Piece::Unusable(_) => return ControlFlow::Continue(()), // counted by read_lines
            Piece::Caught => {
                return match go_on(sink(Event::Caught), &mut stopped) {
                    true => ControlFlow::Continue(()),
                    false => ControlFlow::Break(()),
                };
            }
        };
        // Lines of connections left out, known by their ConnID, go unparsed.
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
        let mut flow = Ok(ControlFlow::Continue(()));
        let time = match line {
            Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            } => {
                if !select.wants_id(&conn_id)
                    || select.port.is_some_and(|p| p != listen_port)
                    || !select.wants_time(time)
                {
                    return ControlFlow::Continue(());
                }
                let replaced =
                    tracker.insert(conn_id, time, &from, &to, Some(listen_port), T::default());
                if let Some(old) = replaced
                    && !go_on(
                        sink(Event::Retired {
                            id: conn_id,
                            conn: old,
                        }),
                        &mut stopped,
                    )
                {
                    return ControlFlow::Break(());
                }
                let conn = tracker.get_mut(&conn_id).expect("just inserted");
                flow = sink(Event::Open {
                    id: conn_id,
                    time,
                    conn,
                });
                time
            }
            Line::Data {
                time,
                conn_id,
                data: _,
                ref from,
                ref to,
            }
            | Line::Close {
                time,
                conn_id,
                ref from,
                ref to,
            } => {
                // A data line that does not decode is counted, and takes
                // up no connection.
                let bytes = match data_of(&line).map(|data| data.decode_in(&mut scratch)) {
                    Some(Err(why)) => {
                        skipped.note(place, why);
                        return ControlFlow::Continue(());
                    }
                    Some(Ok(bytes)) => Some(bytes),
                    None => None,
                };
                let Some(adopted) =
                    adopt(&mut tracker, select, conn_id, time, (from, to), &mut sink)
                else {
                    return ControlFlow::Continue(());
                };
                if !go_on(adopted, &mut stopped) {
                    return ControlFlow::Break(());
                }
                let conn = tracker.get_mut(&conn_id).expect("adopted");
                conn.last = time;
                let side = conn.side_of(from);
                if let Some(bytes) = bytes {
                    flow = sink(Event::Data {
                        id: conn_id,
                        time,
                        side,
                        bytes,
                        conn,
                    });
                } else if conn.closed_by.is_none() {
                    tracker.close(conn_id, side);
                    let conn = tracker.get_mut(&conn_id).expect("still held");
                    flow = sink(Event::Close {
                        id: conn_id,
                        time,
                        side,
                        conn,
                    });
                }
                time
            }
            Line::RunStart | Line::RunEnd | Line::Other => return ControlFlow::Continue(()),
        };
        if !go_on(flow, &mut stopped) {
            return ControlFlow::Break(());
        }
        let mut stop = false;
        tracker.retire_due(time, |id, conn| {
            if !stop {
                stop = !go_on(sink(Event::Retired { id, conn }), &mut stopped);
            }
        });
        if stop {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(stopped) = stopped {
        // A sink that stopped the reading wants nothing more.
        return stopped.map(|()| skipped);
    }
    let mut result = Ok(());
    tracker.drain(|id, conn| {
        if result.is_ok() {
            result = sink(Event::Retired { id, conn }).map(|_| ());
        }
    });
    result?;
    Ok(skipped)
}

/// The `data` string of a data line.
fn data_of<'l, 'a>(line: &'l Line<'a>) -> Option<&'l Data<'a>> {
    match line {
        Line::Data { data, .. } => Some(data),
        _ => None,
    }
}

/// Makes sure a data or close line's connection is tracked: one whose
/// `open` is not in the input is taken up at its first line and announced
/// to the sink, unless a port is selected (its port is not known) or the
/// line is older than the selection's `since`. `None`:
/// the line is not to be handed on; else what the sink answered (`Continue`
/// for a connection already tracked).
fn adopt<T: Default>(
    tracker: &mut Tracker<T>,
    select: &Selection,
    id: ConnId,
    time: Time,
    (from, to): (&str, &str),
    sink: &mut dyn FnMut(Event<'_, T>) -> Flow,
) -> Option<Flow> {
    if tracker.contains(&id) {
        return Some(Ok(ControlFlow::Continue(())));
    }
    if select.port.is_some() || !select.wants_id(&id) || !select.wants_time(time) {
        return None;
    }
    tracker.insert(id, time, from, to, None, T::default());
    let conn = tracker.get_mut(&id).expect("just inserted");
    Some(sink(Event::Open { id, time, conn }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<u8> {
        let lines = [
            r#"{"time":"2025-10-22T15:32:47.000000Z","ConnID":"0000000A","event":"open","from":"c:1","to":"t:2","listen_port":9}"#,
            r#"{"time":"2025-10-22T15:32:47.100000Z","ConnID":"0000000A","data":"hi","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:47.150000Z","ConnID":"0000000B","data":"late","from":"x:1","to":"t:2"}"#,
            "not json",
            r#"{"time":"2025-10-22T15:32:47.200000Z","ConnID":"0000000A","data":"%zz","from":"t:2","to":"c:1"}"#,
            r#"{"time":"2025-10-22T15:32:47.300000Z","ConnID":"0000000A","event":"close","from":"t:2","to":"c:1"}"#,
            r#"{"time":"2025-10-22T15:32:47.400000Z","ConnID":"0000000A","event":"close","from":"c:1","to":"t:2"}"#,
            r#"{"time":"2025-10-22T15:32:48.000000Z","ConnID":"0000000A","event":"open","from":"c:7","to":"t:2","listen_port":9}"#,
        ];
        (lines.join("\n") + "\n").into_bytes()
    }

    /// Every event as a line of text.
    fn trace(select: &Selection) -> (Vec<String>, u64) {
        let mut seen = Vec::new();
        let skipped = events::<()>(&[Input::Bytes(log())], select, |event| {
            match event {
                Event::Open { id, conn, .. } => seen.push(format!(
                    "open {id} {} {:?} {}",
                    conn.client, conn.listen_port, conn.opened
                )),
                Event::Data {
                    id, side, bytes, ..
                } => seen.push(format!(
                    "data {id} {} {}",
                    side.name(),
                    String::from_utf8_lossy(bytes)
                )),
                Event::Close { id, side, .. } => seen.push(format!("close {id} {}", side.name())),
                Event::Retired { id, conn } => {
                    seen.push(format!("retired {id} {:?}", conn.closed_by))
                }
                Event::Caught => {}
            }
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        (seen, skipped.count)
    }

    #[test]
    fn every_connection_opens_once_closes_once_and_retires() {
        let (seen, skipped) = trace(&Selection::default());
        assert_eq!(
            seen,
            [
                "open 0000000A c:1 Some(9) true",
                "data 0000000A client hi",
                "open 0000000B x:1 None false",
                "data 0000000B client late",
                "close 0000000A target",
                "retired 0000000A Some(Target)",
                "open 0000000A c:7 Some(9) true",
                "retired 0000000B None",
                "retired 0000000A None",
            ]
        );
        assert_eq!(skipped, 2, "the line that is not JSON and the bad %zz");
    }

    #[test]
    fn a_selection_leaves_the_rest_out() {
        let (seen, _) = trace(&Selection {
            ids: vec![],
            port: Some(9),
            ..Selection::default()
        });
        assert!(seen.iter().all(|e| !e.contains("0000000B")), "{seen:?}");
        let (seen, _) = trace(&Selection {
            ids: vec![ConnId(*b"0000000B")],
            port: None,
            ..Selection::default()
        });
        assert_eq!(
            seen,
            [
                "open 0000000B x:1 None false",
                "data 0000000B client late",
                "retired 0000000B None"
            ]
        );
    }

    #[test]
    fn since_leaves_out_connections_taken_up_before_it() {
        // SPEC §9: the MCP tools read this run's lines only. Lines before
        // `since` take up nothing; a line after it whose `open` came
        // before takes up a connection whose open is not in the input.
        let (seen, _) = trace(&Selection {
            since: Some(Time(1_761_147_167_350_000)), // 15:32:47.350000
            ..Selection::default()
        });
        assert_eq!(
            seen,
            [
                "open 0000000A c:1 None false",
                "close 0000000A client",
                "retired 0000000A Some(Client)",
                "open 0000000A c:7 Some(9) true",
                "retired 0000000A None",
            ]
        );
        let (seen, _) = trace(&Selection {
            since: Some(Time(1_761_147_167_900_000)), // 15:32:47.900000
            ..Selection::default()
        });
        assert_eq!(
            seen,
            ["open 0000000A c:7 Some(9) true", "retired 0000000A None"]
        );
    }

    #[test]
    fn a_sink_stops_the_reading_or_fails_it() {
        let mut n = 0;
        events::<()>(&[Input::Bytes(log())], &Selection::default(), |_| {
            n += 1;
            Ok(ControlFlow::Break(()))
        })
        .unwrap();
        assert_eq!(n, 1);
        let err = events::<()>(&[Input::Bytes(log())], &Selection::default(), |_| {
            Err(Error::Message("full".into()))
        });
        assert!(matches!(err, Err(Error::Message(m)) if m == "full"));
    }
}
