//! `list` (SPEC §9): one row per connection, in open order, with its byte
//! counts and how it ended; an aligned table for people or one JSON object
//! per row. `connections` is the library side, for the MCP tools too.

use super::decode::{ConnId, Line, Time, parse_line};
use super::input::{Input, Piece, Skipped, read_lines};
use super::{Error, Side};
use std::collections::HashMap;
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

/// Every connection of `inputs` (those of listen port `port`, if given), in
/// open order, and the lines skipped on the way. Holds one row per
/// connection; reads everything, so data that does not decode is counted.
pub fn connections(inputs: &[Input], port: Option<u16>) -> Result<(Vec<ConnRow>, Skipped), Error> {
    let mut rows: Vec<ConnRow> = Vec::new();
    // ConnID -> its row (the latest connection with that ID), or `None` for
    // a connection another port's filter left out.
    let mut by_id: HashMap<ConnId, Option<usize>> = HashMap::new();
    let mut skipped = Skipped::default();
    let mut scratch = Vec::new();
    read_lines(inputs, |place, piece| {
        let bytes = match piece {
            Piece::Line(bytes) => bytes,
            Piece::Unusable(why) => {
                skipped.note(place, why);
                return ControlFlow::Continue(());
            }
            Piece::Caught => return ControlFlow::Continue(()),
        };
        let line = match parse_line(bytes) {
            Ok(line) => line,
            Err(why) => {
                skipped.note(place, why);
                return ControlFlow::Continue(());
            }
        };
        match line {
            Line::Open {
                time,
                conn_id,
                from,
                to,
                listen_port,
            } => {
                let keep = port.is_none_or(|p| p == listen_port);
                by_id.insert(conn_id, keep.then_some(rows.len()));
                if keep {
                    rows.push(ConnRow {
                        conn_id,
                        listen_port: Some(listen_port),
                        client: from.into_owned(),
                        target: to.into_owned(),
                        open_time: time,
                        last_time: time,
                        close_time: None,
                        closed_by: None,
                        bytes_client_to_target: 0,
                        bytes_target_to_client: 0,
                    });
                }
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
                let Some(row) = row_of(&mut rows, &mut by_id, port, conn_id, time, &from, &to)
                else {
                    return ControlFlow::Continue(());
                };
                row.last_time = time;
                if *from == *row.client {
                    row.bytes_client_to_target += decoded.len() as u64;
                } else {
                    row.bytes_target_to_client += decoded.len() as u64;
                }
            }
            Line::Close {
                time,
                conn_id,
                from,
                to,
            } => {
                let Some(row) = row_of(&mut rows, &mut by_id, port, conn_id, time, &from, &to)
                else {
                    return ControlFlow::Continue(());
                };
                row.last_time = time;
                if row.close_time.is_none() {
                    row.close_time = Some(time);
                    row.closed_by = Some(if *from == *row.client {
                        Side::Client
                    } else {
                        Side::Target
                    });
                }
            }
            Line::RunStart | Line::RunEnd | Line::Other => {}
        }
        ControlFlow::Continue(())
    })?;
    Ok((rows, skipped))
}

/// The row of a data or close line; a connection whose `open` is not in
/// the input gets a row at its first line (not when a port filter is set).
fn row_of<'r>(
    rows: &'r mut Vec<ConnRow>,
    by_id: &mut HashMap<ConnId, Option<usize>>,
    port: Option<u16>,
    conn_id: ConnId,
    time: Time,
    from: &str,
    to: &str,
) -> Option<&'r mut ConnRow> {
    let index = match by_id.get(&conn_id) {
        Some(index) => (*index)?,
        None => {
            let index = port.is_none().then_some(rows.len());
            by_id.insert(conn_id, index);
            index?;
            rows.push(ConnRow {
                conn_id,
                listen_port: None,
                client: from.to_owned(),
                target: to.to_owned(),
                open_time: time,
                last_time: time,
                close_time: None,
                closed_by: None,
                bytes_client_to_target: 0,
                bytes_target_to_client: 0,
            });
            rows.len() - 1
        }
    };
    rows.get_mut(index)
}

/// Writes the rows as an aligned table with a header line.
pub fn write_table(rows: &[ConnRow], out: &mut impl Write) -> std::io::Result<()> {
    let header = [
        "CONNID", "PORT", "CLIENT", "TARGET", "OPENED", "SECONDS", "CLIENT>", "TARGET>", "END",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.conn_id.to_string(),
                r.listen_port.map_or("?".into(), |p| p.to_string()),
                r.client.clone(),
                r.target.clone(),
                r.open_time.to_string(),
                format!("{:.3}", r.duration_seconds()),
                r.bytes_client_to_target.to_string(),
                r.bytes_target_to_client.to_string(),
                r.end().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    // Numbers right-aligned: port, seconds, the two byte counts.
    let right = [false, true, false, false, false, true, true, true, false];
    let mut write_row = |row: &[&str]| -> std::io::Result<()> {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if i == row.len() - 1 {
                line.push_str(cell);
            } else if right[i] {
                line.push_str(&format!("{cell:>w$}", w = widths[i]));
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        writeln!(out, "{line}")
    };
    write_row(&header)?;
    for row in &cells {
        write_row(&row.each_ref().map(String::as_str))?;
    }
    Ok(())
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
        let (rows, skipped) = connections(&inputs, None).unwrap();
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
        let (rows, _) = connections(&inputs, Some(8081)).unwrap();
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
