//! `list` (SPEC §9): one row per connection, in open order, with its byte
//! counts and how it ended; an aligned table for people or one JSON object
//! per row. `connections` is the library side, for the MCP tools too.

use super::Error;
use super::input::Input;
use super::lines::Skipped;
use super::pipeline::{self, Event, Selection, events};
use super::show::visible;
use super::track::Conn;
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::collections::VecDeque;
use std::io::Write;
use std::ops::ControlFlow;

/// One connection of a capture.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnRow {
    pub conn_id: ConnId,
    /// The rule's local port; `None` when the `open` line is not in the input.
    pub listen_port: Option<u16>,
    /// The client's address (the sender of the first line when the `open`
    /// line is not in the input).
    pub client: String,
    pub target: String,
    /// Time of the `open` line (or of the first line seen).
    pub open_time: Time,
    /// Time of the connection's last line.
    pub last_time: Time,
    pub close_time: Option<Time>,
    /// The side that ended first; `None`: still open at the end of the log.
    pub closed_by: Option<Side>,
    pub bytes_client_to_target: u64,
    pub bytes_target_to_client: u64,
}

impl ConnRow {
    /// Seconds from the open to the connection's last line.
    pub fn duration_seconds(&self) -> f64 {
        self.open_time.seconds_until(self.last_time)
    }

    /// How it ended, in words.
    pub fn end(&self) -> &'static str {
        match self.closed_by {
            Some(Side::Client) => "client closed first",
            Some(Side::Target) => "target closed first",
            None => "still open",
        }
    }

    /// The `--json` form of the row: one compact object, its fields in the
    /// table's order.
    pub fn to_json(&self) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        format!(
            "{{\"ConnID\":\"{}\",\"listen_port\":{},\"client\":{},\"target\":{},\"open_time\":\"{}\",\"close_time\":{},\"duration_seconds\":{:.6},\"bytes_client_to_target\":{},\"bytes_target_to_client\":{},\"closed_by\":{}}}",
            self.conn_id,
            or_null(self.listen_port.map(|p| p.to_string())),
            text(&self.client),
            text(&self.target),
            self.open_time,
            or_null(self.close_time.map(|t| format!("\"{t}\""))),
            self.duration_seconds(),
            self.bytes_client_to_target,
            self.bytes_target_to_client,
            or_null(self.closed_by.map(|s| format!("\"{}\"", s.name()))),
        )
    }
}

/// What `list` counts of a connection while it is open.
#[derive(Default)]
struct Tally {
    open_time: Time,
    close_time: Option<Time>,
    bytes: [u64; 2],
}

impl ConnRow {
    fn of(conn_id: ConnId, conn: Conn<Tally>) -> ConnRow {
        ConnRow {
            conn_id,
            listen_port: conn.listen_port,
            client: conn.client.into(),
            target: conn.target.into(),
            open_time: conn.state.open_time,
            last_time: conn.last.max(conn.state.open_time),
            close_time: conn.state.close_time,
            closed_by: conn.closed_by,
            bytes_client_to_target: conn.state.bytes[Side::Client as usize],
            bytes_target_to_client: conn.state.bytes[Side::Target as usize],
        }
    }
}

/// Hands `each` a row per connection of `inputs` (those of listen port
/// `port`, if given), in open order, once the connection is retired; a row
/// that closed behind a still-open earlier connection waits for it (SPEC
/// §9). Returns the lines skipped; every data line is decoded, so data
/// that does not decode is counted.
pub fn connections(
    inputs: &[Input],
    port: Option<u16>,
    mut each: impl FnMut(ConnRow) -> pipeline::Flow,
) -> Result<Skipped, Error> {
    // Rows in open order, from the connection numbered `first` on; `None`
    // while that connection is still held by the pipeline.
    let mut waiting: VecDeque<Option<ConnRow>> = VecDeque::new();
    let mut first = 1u64;
    let select = Selection {
        port,
        ..Selection::default()
    };
    events::<Tally>(inputs, &select, |event| {
        match event {
            Event::Open { time, conn, .. } => {
                conn.state.open_time = time;
                if waiting.is_empty() {
                    first = conn.generation;
                }
                waiting.push_back(None);
            }
            Event::Data {
                side, bytes, conn, ..
            } => conn.state.bytes[side as usize] += bytes.len() as u64,
            Event::Close { time, conn, .. } => conn.state.close_time = Some(time),
            Event::Retired { id, conn } => {
                let at = conn.generation.checked_sub(first).map(|n| n as usize);
                // Every retired connection was opened, so it has its slot.
                if let Some(slot) = at.and_then(|at| waiting.get_mut(at)) {
                    *slot = Some(ConnRow::of(id, conn));
                }
                while let Some(Some(_)) = waiting.front() {
                    let row = waiting.pop_front().flatten().expect("checked");
                    first += 1;
                    if each(row)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
            Event::Caught => {}
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// Every row of `connections`, in a `Vec`.
pub fn all_connections(
    inputs: &[Input],
    port: Option<u16>,
) -> Result<(Vec<ConnRow>, Skipped), Error> {
    let mut rows = Vec::new();
    let skipped = connections(inputs, port, |row| {
        rows.push(row);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((rows, skipped))
}

/// Rows a `Table` holds to size its columns before it writes any.
const ROWS_TO_SIZE: usize = 1000;

/// An aligned table written as rows come: the first `ROWS_TO_SIZE` rows
/// (or all, if fewer) set the column widths; a later, wider cell widens its
/// own line only. So memory stays bounded however many rows there are.
pub struct Table<W: Write> {
    out: W,
    held: Vec<[String; 9]>,
    widths: Option<[usize; 9]>,
}

const HEADER: [&str; 9] = [
    "CONNID", "PORT", "CLIENT", "TARGET", "OPENED", "SECONDS", "CLIENT>", "TARGET>", "END",
];
/// Numbers right-aligned: port, seconds, the two byte counts.
const RIGHT: [bool; 9] = [false, true, false, false, false, true, true, true, false];

impl<W: Write> Table<W> {
    pub fn new(out: W) -> Self {
        Table {
            out,
            held: Vec::new(),
            widths: None,
        }
    }

    pub fn push(&mut self, row: &ConnRow) -> std::io::Result<()> {
        let cells = cells(row);
        match self.widths {
            Some(widths) => write_row(
                &mut self.out,
                &widths,
                &cells.each_ref().map(String::as_str),
            ),
            None => {
                self.held.push(cells);
                if self.held.len() >= ROWS_TO_SIZE {
                    self.size_and_write()?;
                }
                Ok(())
            }
        }
    }

    /// Writes what is held (the header, at least) and hands back the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.widths.is_none() {
            self.size_and_write()?;
        }
        Ok(self.out)
    }

    fn size_and_write(&mut self) -> std::io::Result<()> {
        let mut widths = HEADER.map(str::len);
        for row in &self.held {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        self.widths = Some(widths);
        write_row(&mut self.out, &widths, &HEADER)?;
        for row in std::mem::take(&mut self.held) {
            write_row(&mut self.out, &widths, &row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }
}

fn cells(r: &ConnRow) -> [String; 9] {
    [
        r.conn_id.to_string(),
        r.listen_port.map_or("?".into(), |p| p.to_string()),
        // SPEC §9: addresses come from the log; no escape in one reaches
        // the terminal raw (`--json` escapes them as JSON does).
        visible(&r.client).into_owned(),
        visible(&r.target).into_owned(),
        r.open_time.to_string(),
        format!("{:.3}", r.duration_seconds()),
        r.bytes_client_to_target.to_string(),
        r.bytes_target_to_client.to_string(),
        r.end().to_string(),
    ]
}

fn write_row(out: &mut impl Write, widths: &[usize; 9], row: &[&str; 9]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        if i == row.len() - 1 {
            line.push_str(cell);
        } else if RIGHT[i] {
            line.push_str(&format!("{cell:>w$}", w = widths[i]));
        } else {
            line.push_str(&format!("{cell:<w$}", w = widths[i]));
        }
    }
    writeln!(out, "{line}")
}

/// Writes the rows as an aligned table with a header line.
pub fn write_table(rows: &[ConnRow], out: &mut impl Write) -> std::io::Result<()> {
    let mut table = Table::new(out);
    for row in rows {
        table.push(row)?;
    }
    table.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = concat!(
        r#"{"time":"2025-10-22T15:32:47.000000Z","ConnID":"0000000A","event":"open","from":"127.0.0.1:5","to":"localhost:80","listen_port":8080}"#,
        "\n",
        r#"{"time":"2025-10-22T15:32:47.500000Z","ConnID":"0000000A","data":"GET%25","from":"127.0.0.1:5","to":"localhost:80"}"#,
        "\n",
        r#"{"time":"2025-10-22T15:32:48.000000Z","ConnID":"0000000B","event":"open","from":"[::1]:6","to":"[::1]:81","listen_port":8081}"#,
        "\n",
        r#"{"time":"2025-10-22T15:32:48.250000Z","ConnID":"0000000A","event":"close","from":"127.0.0.1:5","to":"localhost:80"}"#,
        "\n",
        "garbage\n",
        r#"{"time":"2025-10-22T15:32:49.000000Z","ConnID":"0000000A","data":"ok\r\n","from":"localhost:80","to":"127.0.0.1:5"}"#,
        "\n",
        r#"{"time":"2025-10-22T15:32:49.000000Z","ConnID":"0000000C","data":"x","from":"1.2.3.4:5","to":"6.7.8.9:10"}"#,
        "\n",
    );

    #[test]
    fn rows_count_bytes_and_ends() {
        let inputs = [Input::Bytes(LOG.as_bytes().to_vec())];
        let (rows, skipped) = all_connections(&inputs, None).unwrap();
        assert_eq!(skipped.count, 1);
        assert_eq!(skipped.first.as_ref().map(|f| f.1), Some(5));
        let ids: Vec<&str> = rows.iter().map(|r| r.conn_id.as_str()).collect();
        assert_eq!(ids, ["0000000A", "0000000B", "0000000C"]);
        let a = &rows[0];
        assert_eq!((a.bytes_client_to_target, a.bytes_target_to_client), (4, 4));
        assert_eq!(a.closed_by, Some(Side::Client));
        assert_eq!(a.duration_seconds(), 2.0);
        assert_eq!(rows[1].closed_by, None);
        assert_eq!(rows[2].listen_port, None);
        let (rows, _) = all_connections(&inputs, Some(8081)).unwrap();
        assert_eq!(rows.len(), 1);
        let json: serde_json::Value = serde_json::from_str(&rows[0].to_json()).unwrap();
        assert_eq!(json["closed_by"], serde_json::Value::Null);
        assert_eq!(json["listen_port"], 8081);
        assert_eq!(json["client"], "[::1]:6");
        let mut table = Vec::new();
        write_table(&rows, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.starts_with("CONNID    PORT  CLIENT"), "{table}");
        assert!(table.contains("0000000B  8081  [::1]:6"), "{table}");
    }
}
