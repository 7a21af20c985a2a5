//! The connections the read pipeline holds while it goes
//! through a log: one entry per connection from its `open` until it is
//! retired, so memory follows the connections open at once, not the log.
//!
//! A `close` line is logged when the first side ends; the other side may
//! still send after it (SPEC §3, half-close), and no line says when it
//! ends. So a closed connection stays for `GRACE` of log time after its
//! last line (or until `MAX_CLOSED` closed ones are held), then is retired.
//! A new `open` with the same ConnID (another run) retires the old one.

use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::collections::{HashMap, VecDeque};

/// How long, in log time, a closed connection waits for more lines.
pub const GRACE_MICROS: i64 = 60 * 1_000_000;
/// Most closed connections held at once; the oldest go first.
pub const MAX_CLOSED: usize = 65_536;

/// One connection being followed.
pub struct Conn<T> {
    /// The client's address as logged (the `from` of `open`). A connection
    /// whose `open` is not in the log takes the sender of its first line.
    pub client: Box<str>,
    pub target: Box<str>,
    /// The rule's local port, from the `open` line.
    pub listen_port: Option<u16>,
    /// Its `open` line was seen.
    pub opened: bool,
    pub closed_by: Option<Side>,
    /// Time of its last line.
    pub last: Time,
    /// Its place in the order connections were taken up (from 1).
    pub generation: u64,
    pub state: T,
}

impl<T> Conn<T> {
    /// The side that sent a line with this `from`.
    pub fn side_of(&self, from: &str) -> Side {
        if *self.client == *from {
            Side::Client
        } else {
            Side::Target
        }
    }
}

pub struct Tracker<T> {
    conns: HashMap<ConnId, Conn<T>>,
    /// Closed connections in close order, with their generation (an entry
    /// whose connection was retired or replaced meanwhile is stale).
    closed: VecDeque<(ConnId, u64)>,
    next_generation: u64,
}

impl<T> Default for Tracker<T> {
    fn default() -> Self {
        Tracker {
            conns: HashMap::new(),
            closed: VecDeque::new(),
            next_generation: 0,
        }
    }
}

impl<T> Tracker<T> {
    /// Starts following a connection (with its listen port when its `open`
    /// line is seen); returns the one it replaces (the
    /// same ConnID in an earlier run), which the caller retires.
    pub fn insert(
        &mut self,
        id: ConnId,
        time: Time,
        client: &str,
        target: &str,
        listen_port: Option<u16>,
        state: T,
    ) -> Option<Conn<T>> {
        self.next_generation += 1;
        let conn = Conn {
            client: client.into(),
            target: target.into(),
            listen_port,
            opened: listen_port.is_some(),
            closed_by: None,
            last: time,
            generation: self.next_generation,
            state,
        };
        self.conns.insert(id, conn)
    }

    pub fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn<T>> {
        self.conns.get_mut(id)
    }

    pub fn contains(&self, id: &ConnId) -> bool {
        self.conns.contains_key(id)
    }

    /// Records the `close` line; the connection waits for late lines.
    pub fn close(&mut self, id: ConnId, by: Side) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.closed_by.is_none()
        {
            conn.closed_by = Some(by);
            self.closed.push_back((id, conn.generation));
        }
    }

    /// Retires the closed connections whose grace ran out by log time `now`
    /// (or past `MAX_CLOSED`), oldest close first.
    pub fn retire_due(&mut self, now: Time, mut retire: impl FnMut(ConnId, Conn<T>)) {
        while let Some(&(id, generation)) = self.closed.front() {
            let live = self.conns.get(&id).filter(|c| c.generation == generation);
            let due = match live {
                None => {
                    self.closed.pop_front();
                    continue;
                }
                Some(conn) => self.closed.len() > MAX_CLOSED || conn.last.0 + GRACE_MICROS < now.0,
            };
            if !due {
                break;
            }
            self.closed.pop_front();
            if let Some(conn) = self.conns.remove(&id) {
                retire(id, conn);
            }
        }
    }

    /// Everything still held, at the end of the input: closed connections in
    /// close order, then the open ones.
    pub fn drain(&mut self, mut retire: impl FnMut(ConnId, Conn<T>)) {
        while let Some((id, generation)) = self.closed.pop_front() {
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.generation == generation)
                && let Some(conn) = self.conns.remove(&id)
            {
                retire(id, conn);
            }
        }
        let mut open: Vec<(ConnId, Conn<T>)> = self.conns.drain().collect();
        open.sort_by_key(|(_, c)| c.generation);
        for (id, conn) in open {
            retire(id, conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ConnId {
        ConnId([b'0' + n; 8])
    }

    #[test]
    fn closed_connections_wait_for_late_lines_then_retire() {
        let mut t = Tracker::default();
        t.insert(id(1), Time(0), "c:1", "t:2", Some(9), ());
        t.insert(id(2), Time(0), "c:3", "t:2", Some(9), ());
        t.close(id(1), Side::Client);
        t.close(id(1), Side::Target); // a second close changes nothing
        let mut retired = Vec::new();
        t.retire_due(Time(GRACE_MICROS), |i, _| retired.push(i));
        assert!(retired.is_empty(), "within the grace");
        // A late line from the target keeps it.
        t.get_mut(&id(1)).unwrap().last = Time(10);
        t.retire_due(Time(GRACE_MICROS + 5), |i, _| retired.push(i));
        assert!(retired.is_empty());
        t.retire_due(Time(GRACE_MICROS + 11), |i, c| {
            assert_eq!(c.closed_by, Some(Side::Client));
            retired.push(i)
        });
        assert_eq!(retired, [id(1)]);
        assert!(!t.contains(&id(1)) && t.contains(&id(2)));
    }

    #[test]
    fn a_new_open_replaces_and_drain_keeps_order() {
        let mut t = Tracker::default();
        t.insert(id(1), Time(0), "c:1", "t:2", Some(9), 1);
        t.close(id(1), Side::Target);
        let old = t.insert(id(1), Time(5), "c:9", "t:2", Some(9), 2);
        assert_eq!(old.map(|c| c.state), Some(1));
        t.insert(id(3), Time(6), "c:3", "t:2", Some(9), 3);
        t.insert(id(2), Time(7), "c:2", "t:2", None, 4);
        t.close(id(2), Side::Client);
        let mut order = Vec::new();
        t.drain(|_, c| order.push(c.state));
        // The stale close of the replaced id(1) is ignored.
        assert_eq!(order, [4, 2, 3]);
        assert_eq!(t.get_mut(&id(1)).map(|c| c.side_of("c:9")), None);
    }
}
