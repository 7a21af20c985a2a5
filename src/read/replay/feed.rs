//! What the replay loop is fed from the capture (SPEC §10), by threads
//! that read the inputs so the loop never waits on a disk:
//!
//! - `plans`: one reading of the whole input through `list`'s sink on the
//!   pipeline, giving each selected connection's `Plan` (its totals and how
//!   it ended) in open order, into a bounded channel;
//! - `script`: for each connection being replayed, its own reading of the
//!   input (the pipeline with that one ConnID selected, as `extract` reads),
//!   giving its client chunks and captured answer as `Item`s into a small
//!   bounded channel. The reading stops once the connection's totals are
//!   all handed on.
//!
//! Both block when their channel is full: that is the backpressure that
//! bounds memory by the connections replayed at once, not by the capture.

use super::super::decode::{ConnId, Time};
use super::super::extract::{self, scan};
use super::super::input::{Input, Skipped};
use super::super::list::connections;
use super::super::{Error, Side};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

/// Items a connection's reader may get ahead of its replay.
pub const ITEMS_AHEAD: usize = 32;
/// Plans the first reading may get ahead of the replay.
pub const PLANS_AHEAD: usize = 256;

/// One selected connection, as the first reading found it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: ConnId,
    pub listen_port: Option<u16>,
    pub open: Time,
    pub client_bytes: u64,
    pub target_bytes: u64,
    pub closed_by: Option<Side>,
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

/// The selected connections of `inputs`, in open order (`ids` empty: all
/// those of `port`, or all): each ConnID once, the first connection with it.
pub fn read_plans(
    inputs: &[Input],
    ids: &[ConnId],
    port: Option<u16>,
    mut each: impl FnMut(Plan) -> bool,
) -> Result<Skipped, Error> {
    // A ConnID met again is another run's; it is not the one named.
    let mut seen: HashSet<ConnId> = HashSet::new();
    connections(inputs, port, |row| {
        if (!ids.is_empty() && !ids.contains(&row.conn_id)) || !seen.insert(row.conn_id) {
            return Ok(ControlFlow::Continue(()));
        }
        let plan = Plan {
            id: row.conn_id,
            listen_port: row.listen_port,
            open: row.open_time,
            client_bytes: row.bytes_client_to_target,
            target_bytes: row.bytes_target_to_client,
            closed_by: row.closed_by,
        };
        Ok(match each(plan) {
            true => ControlFlow::Continue(()),
            false => ControlFlow::Break(()),
        })
    })
}

/// Starts the first reading on its own thread.
pub fn spawn_plans(
    inputs: Arc<Vec<Input>>,
    port: Option<u16>,
    wake: Wake,
) -> Result<Receiver<Planned>, Error> {
    let (tx, rx) = sync_channel(PLANS_AHEAD);
    thread::Builder::new()
        .name("rawprox-plans".into())
        .spawn(move || {
            let done = read_plans(&inputs, &[], port, |plan| {
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

/// Starts the reading of one connection's capture on its own thread; it
/// ends when the replay drops the receiver.
pub fn spawn_script(
    inputs: Arc<Vec<Input>>,
    plan: &Plan,
    wake: Wake,
) -> Result<Receiver<Item>, Error> {
    let (tx, rx) = sync_channel(ITEMS_AHEAD);
    let plan = plan.clone();
    thread::Builder::new()
        .name("rawprox-script".into())
        .spawn(move || {
            let last = match script(&inputs, &plan, &tx, &wake) {
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
    let found = scan(inputs, plan.id, &mut skipped, |event| {
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
