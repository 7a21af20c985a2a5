//! What the replay loop is fed from the capture (SPEC §10), by threads
//! that read the inputs so the loop never waits on a disk:
//!
//! - `plans`: one reading of the whole input, a sink on the pipeline,
//!   giving each selected connection's `Plan` (its totals, how it ended,
//!   and its whole capture when small) in open order, into a bounded
//!   channel;
//! - `script`: for each bigger connection being replayed, its own reading of the
//!   input (the pipeline with that one ConnID selected, as `extract` reads),
//!   giving its client chunks and captured answer as `Item`s into a small
//!   bounded channel. The reading stops once the connection's totals are
//!   all handed on.
//!
//! Both block when their channel is full: that is the backpressure that
//! bounds memory by the connections replayed at once, not by the capture.

use super::super::Error;
use super::super::extract::{self, scan};
use super::super::input::Input;
use super::super::lines::{Skipped, without_progress};
use super::super::pipeline::{Event, Selection, events};
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread;

/// Items a connection's reader may get ahead of its replay.
pub const ITEMS_AHEAD: usize = 32;
/// Plans the first reading may get ahead of the replay (with what they
/// carry, at most `PLANS_AHEAD` × `INLINE_BYTES` waiting in the channel).
pub const PLANS_AHEAD: usize = 64;
/// The most of one connection's capture a plan carries with it.
pub const INLINE_BYTES: usize = 64 * 1024;
/// The most the first reading holds of all the captures it carries.
pub const INLINE_BUDGET: usize = 32 * 1024 * 1024;

/// One selected connection, as the first reading found it.
#[derive(Debug)]
pub struct Plan {
    pub id: ConnId,
    pub listen_port: Option<u16>,
    pub open: Time,
    pub client_bytes: u64,
    pub target_bytes: u64,
    pub closed_by: Option<Side>,
    /// Its whole capture and its size in bytes, when small: no second
    /// reading is needed.
    pub script: Option<(Vec<Item>, usize)>,
}

/// A connection's capture, in log order.
#[derive(Debug)]
pub enum Item {
    /// A chunk the client sent, `at` micros after the open, when the
    /// target had sent `answered` bytes.
    Send {
        bytes: Vec<u8>,
        answered: u64,
        at: i64,
    },
    /// The client ended first (its half-close), at that point.
    ClientClose {
        answered: u64,
        at: i64,
    },
    /// Bytes the target sent.
    Answer(Vec<u8>),
    /// Nothing more.
    End,
    Failed(Error),
}

/// What the first reading hands on.
pub enum Planned {
    Plan(Plan),
    Done(Skipped),
    Failed(Error),
}

/// Wakes the replay loop after a send.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What the first reading keeps of a connection while it is open.
#[derive(Default)]
struct Gather {
    open: Time,
    bytes: [u64; 2],
    /// Its capture, while it fits (`None`: too big, its reader streams it).
    items: Option<Vec<Item>>,
    held: usize,
}

/// The connections of `inputs` that `select` selects, in open order, a
/// sink on the read pipeline (a ConnID met again, in another run, is
/// another connection). A connection whose capture is small
/// (`INLINE_BYTES`, within `INLINE_BUDGET` for all held at once) comes
/// with it, so the input is read only once for it.
pub fn read_plans(
    inputs: &[Input],
    select: &Selection,
    mut each: impl FnMut(Plan) -> bool,
) -> Result<Skipped, Error> {
    // Plans in open order from connection number `first` on; `None` while
    // that connection is still open (as `list` holds its rows).
    let mut waiting: VecDeque<Option<Plan>> = VecDeque::new();
    let mut first = 1u64;
    // Bytes of captures held, in `Gather`s and `waiting`.
    let mut held = 0usize;
    let keep = |g: &mut Gather, held: &mut usize, item: Item, len: usize| {
        let Some(items) = &mut g.items else { return };
        if g.held + len > INLINE_BYTES || *held + len > INLINE_BUDGET {
            *held -= g.held;
            g.held = 0;
            g.items = None;
        } else {
            g.held += len;
            *held += len;
            items.push(item);
        }
    };
    events::<Gather>(inputs, select, |event| {
        match event {
            Event::Open { time, conn, .. } => {
                conn.state.open = time;
                conn.state.items = Some(Vec::new());
                if waiting.is_empty() {
                    first = conn.generation;
                }
                waiting.push_back(None);
            }
            Event::Data {
                time,
                side,
                bytes,
                conn,
                ..
            } => {
                let g = &mut conn.state;
                g.bytes[side as usize] += bytes.len() as u64;
                let item = match side {
                    Side::Client => Item::Send {
                        bytes: bytes.to_vec(),
                        answered: g.bytes[Side::Target as usize],
                        at: time.0 - g.open.0,
                    },
                    Side::Target => Item::Answer(bytes.to_vec()),
                };
                keep(g, &mut held, item, bytes.len());
            }
            Event::Close {
                time,
                side: Side::Client,
                conn,
                ..
            } => {
                let g = &mut conn.state;
                let item = Item::ClientClose {
                    answered: g.bytes[Side::Target as usize],
                    at: time.0 - g.open.0,
                };
                keep(g, &mut held, item, 0);
            }
            Event::Close { .. } | Event::Caught => {}
            Event::Retired { id, conn } => {
                let at = conn.generation.checked_sub(first).map(|n| n as usize);
                let g = conn.state;
                let plan = Plan {
                    id,
                    listen_port: conn.listen_port,
                    open: g.open,
                    client_bytes: g.bytes[Side::Client as usize],
                    target_bytes: g.bytes[Side::Target as usize],
                    closed_by: conn.closed_by,
                    script: g.items.map(|items| (items, g.held)),
                };
                if let Some(slot) = at.and_then(|at| waiting.get_mut(at)) {
                    *slot = Some(plan);
                }
                while let Some(Some(_)) = waiting.front() {
                    let plan = waiting.pop_front().flatten().expect("checked");
                    first += 1;
                    held -= plan.script.as_ref().map_or(0, |(_, bytes)| *bytes);
                    if !each(plan) {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// Starts the first reading on its own thread.
pub fn spawn_plans(
    inputs: Arc<Vec<Input>>,
    select: Selection,
    wake: Wake,
) -> Result<Receiver<Planned>, Error> {
    let (tx, rx) = sync_channel(PLANS_AHEAD);
    thread::Builder::new()
        .name("rawprox-plans".into())
        .spawn(move || {
            let done = read_plans(&inputs, &select, |plan| {
                let sent = tx.send(Planned::Plan(plan)).is_ok();
                wake();
                sent
            });
            let _ = tx.send(match done {
                Ok(skipped) => Planned::Done(skipped),
                Err(e) => Planned::Failed(e),
            });
            wake();
        })
        .map_err(|e| Error::Message(format!("cannot start a reading thread: {e}")))?;
    Ok(rx)
}

/// The capture of one connection: the one its plan carries, or a reading
/// of it on its own thread, which ends when the replay drops the receiver.
pub fn spawn_script(
    inputs: Arc<Vec<Input>>,
    plan: &mut Plan,
    wake: Wake,
) -> Result<Receiver<Item>, Error> {
    if let Some((items, _)) = plan.script.take() {
        let (tx, rx) = channel();
        for item in items.into_iter().chain([Item::End]) {
            let _ = tx.send(item); // the receiver is right here
        }
        return Ok(rx);
    }
    let (tx, rx) = sync_channel(ITEMS_AHEAD);
    let plan = Plan {
        script: None,
        ..*plan
    };
    thread::Builder::new()
        .name("rawprox-script".into())
        .spawn(move || {
            // The first reading shows the run's progress; this one does not.
            let read = || script(&inputs, &plan, &tx, &wake);
            let last = match without_progress(read) {
                Ok(()) => Item::End,
                Err(e) => Item::Failed(e),
            };
            let _ = tx.send(last);
            wake();
        })
        .map_err(|e| Error::Message(format!("cannot start a reading thread: {e}")))?;
    Ok(rx)
}

fn script(inputs: &[Input], plan: &Plan, tx: &SyncSender<Item>, wake: &Wake) -> Result<(), Error> {
    let mut bytes = [0u64; 2];
    let mut closed = false;
    let mut skipped = Skipped::default();
    let since_open = |time: Time| time.0 - plan.open.0;
    // From its open on: an earlier run's connection with its ConnID is not it.
    let found = scan(inputs, plan.id, Some(plan.open), &mut skipped, |event| {
        let item = match event {
            extract::Event::Data {
                time,
                side,
                bytes: data,
            } => {
                bytes[side as usize] += data.len() as u64;
                Some(match side {
                    Side::Client => Item::Send {
                        bytes: data.to_vec(),
                        answered: bytes[Side::Target as usize],
                        at: since_open(time),
                    },
                    Side::Target => Item::Answer(data.to_vec()),
                })
            }
            extract::Event::Close { time, side } => {
                closed = true;
                // The target ending first needs nothing sent: the server
                // closes on its own.
                (side == Side::Client).then(|| Item::ClientClose {
                    answered: bytes[Side::Target as usize],
                    at: since_open(time),
                })
            }
        };
        if let Some(item) = item {
            if tx.send(item).is_err() {
                return Ok(ControlFlow::Break(())); // the replay is over
            }
            wake();
        }
        // Everything the first reading counted is handed on: stop here
        // instead of reading the rest of the input.
        let all = bytes == [plan.client_bytes, plan.target_bytes] && closed;
        Ok(match all {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        })
    })?;
    match found {
        Some(_) => Ok(()),
        None => Err(extract::not_found(plan.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(micros: u32, id: &str, body: &str) -> String {
        format!(r#"{{"time":"2025-10-22T15:32:47.{micros:06}Z","ConnID":"{id}",{body}}}"#) + "\n"
    }

    /// A opens first and closes last; B is small; C is too big to carry;
    /// A's ConnID comes again in another run.
    fn log() -> Vec<u8> {
        let big = "x".repeat(INLINE_BYTES + 1);
        [
            line(
                1,
                "0000000A",
                r#""event":"open","from":"c:1","to":"t:2","listen_port":9"#,
            ),
            line(
                2,
                "0000000B",
                r#""event":"open","from":"c:3","to":"t:2","listen_port":9"#,
            ),
            line(3, "0000000B", r#""data":"hi","from":"c:3","to":"t:2""#),
            line(4, "0000000B", r#""data":"ho","from":"t:2","to":"c:3""#),
            line(5, "0000000B", r#""event":"close","from":"c:3","to":"t:2""#),
            line(
                6,
                "0000000C",
                r#""event":"open","from":"c:4","to":"t:2","listen_port":8"#,
            ),
            line(
                7,
                "0000000C",
                &format!(r#""data":"{big}","from":"c:4","to":"t:2""#),
            ),
            line(8, "0000000A", r#""data":"a","from":"c:1","to":"t:2""#),
            line(9, "0000000A", r#""event":"close","from":"t:2","to":"c:1""#),
            line(
                10,
                "0000000A",
                r#""event":"open","from":"c:5","to":"t:2","listen_port":9"#,
            ),
        ]
        .concat()
        .into_bytes()
    }

    fn plans(ids: &[ConnId], port: Option<u16>) -> Vec<Plan> {
        let mut all = Vec::new();
        let select = Selection {
            ids: ids.to_vec(),
            port,
            since: None,
        };
        read_plans(&[Input::Bytes(log())], &select, |plan| {
            all.push(plan);
            true
        })
        .unwrap();
        all
    }

    #[test]
    fn plans_come_in_open_order_small_ones_with_their_capture() {
        let all = plans(&[], None);
        let ids: Vec<String> = all.iter().map(|p| p.id.to_string()).collect();
        assert_eq!(ids, ["0000000A", "0000000B", "0000000C", "0000000A"]);
        let (a, b, c) = (&all[0], &all[1], &all[2]);
        assert_eq!(all[3].client_bytes, 0, "A again, in another run");
        assert_eq!((a.client_bytes, a.target_bytes), (1, 0));
        assert_eq!(a.closed_by, Some(Side::Target));
        let (items, bytes) = b.script.as_ref().expect("B is carried");
        assert_eq!(*bytes, 4);
        assert!(matches!(
            items.as_slice(),
            [
                Item::Send { answered: 0, at: 1, .. },
                Item::Answer(answer),
                Item::ClientClose { answered: 2, at: 3 }
            ] if answer == b"ho"
        ));
        assert!(c.script.is_none(), "C is read again when replayed");
        assert_eq!(c.client_bytes, INLINE_BYTES as u64 + 1);
        let port_8 = plans(&[], Some(8));
        assert_eq!(port_8.len(), 1);
        assert_eq!(port_8[0].id, ConnId(*b"0000000C"));
        let named = plans(&[ConnId(*b"0000000B")], None);
        assert_eq!(named.len(), 1);
        let mut later = Vec::new();
        let select = Selection {
            ids: vec![ConnId(*b"0000000A")],
            port: None,
            since: Some(Time::parse(b"2025-10-22T15:32:47.000010Z").unwrap()),
        };
        read_plans(&[Input::Bytes(log())], &select, |plan| {
            later.push(plan.open);
            true
        })
        .unwrap();
        assert_eq!(later.len(), 1, "only the run since then");
    }
}
