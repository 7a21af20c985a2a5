//! The encoder and the decoder held together (SPEC §4): lines of every
//! shape the proxy writes (open lines with IPv4, IPv6 and host targets,
//! data of every byte value and every length class, close lines, the
//! control events) go through the real encoder, and every traffic line
//! comes back through the decoder's fast path, not the `serde_json` one,
//! with its exact fields and bytes. A field order or key that the encoder
//! and the fast path did not share would fail here, instead of quietly
//! sending every line to the slow path.

use super::connid::{ConnId, ConnIdSeq, ID_SPACE};
use super::decode::data::Decoder;
use super::decode::line::{Line, fast_parse, parse_line};
use super::encode::{
    push_close_line, push_data_line, push_logging_event, push_mcp_ready, push_open_line,
};
use super::fields::{START_LOGGING, STOP_LOGGING};
use super::time::{LineClock, Time};

/// What a line was encoded from, to be given back by the decoder.
#[derive(Debug)]
enum Sent {
    Open { port: u16 },
    Data { bytes: Vec<u8> },
    Close,
}

/// A traffic line's fields.
#[derive(Debug)]
struct Traffic {
    micros: u64,
    id: ConnId,
    from: &'static str,
    to: &'static str,
    sent: Sent,
}

impl Traffic {
    /// Appends this line, as the proxy's log writes it.
    fn push(&self, out: &mut Vec<u8>, clock: &mut LineClock) {
        let (micros, id, from, to) = (self.micros, &self.id, self.from, self.to);
        match &self.sent {
            Sent::Open { port } => push_open_line(out, clock, micros, id, from, to, *port),
            Sent::Data { bytes } => push_data_line(out, clock, micros, id, bytes, from, to),
            Sent::Close => push_close_line(out, clock, micros, id, from, to),
        }
    }
}

/// Client and target addresses as the proxy writes them: IPv4, IPv6 (with
/// a scope), and targets by address or by name.
const PEERS: [(&str, &str); 4] = [
    ("127.0.0.1:54321", "127.0.0.1:8080"),
    ("[::1]:40000", "[2001:db8::1]:443"),
    ("127.0.0.1:1", "example.com:80"),
    ("[fe80::1%2]:65535", "localhost:9"),
];

/// Moments with six digits to write: the epoch, the SPEC's example, the
/// last microsecond of a second, and the last one of year 9999.
const MOMENTS: [u64; 5] = [
    0,
    1_761_147_167_123_456,
    1_761_147_167_999_999,
    1_761_147_168_000_001,
    253_402_300_799_999_999,
];

/// Bytes spread over every value, the same on every run (Fibonacci
/// hashing of the position).
fn scrambled(i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Payloads of every byte value (alone, and all in a row both ways) and
/// of every length class the block encoders and decoders split at (0, 1,
/// under 16, 16, 31, 32, 33, 64, 32 KiB), as text, binary, a mix of the
/// two, and nothing but bytes that need an escape.
fn payloads() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    all.push((0..=255u8).collect());
    all.push((0..=255u8).rev().collect());
    let http = b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    let escapes = b"\"\\%\t\n\r\x00\x1F\x7F\x80\xFF";
    for len in [0, 1, 15, 16, 31, 32, 33, 64, 32 * 1024] {
        let text: Vec<u8> = http.iter().copied().cycle().take(len).collect();
        let binary: Vec<u8> = (0..len).map(|i| scrambled(i + len)).collect();
        let mixed: Vec<u8> = (0..len)
            .map(|i| match scrambled(i) % 8 {
                0 => scrambled(i + 1),
                _ => http[i % http.len()],
            })
            .collect();
        let escaped: Vec<u8> = escapes.iter().copied().cycle().take(len).collect();
        all.extend([text, binary, mixed, escaped]);
    }
    all
}

/// Connections in turn: each opens, sends some payloads one way or the
/// other, and closes from either side, with ConnIDs from just below the
/// wrap past `zzzzzzzz`.
fn traffic() -> Vec<Traffic> {
    let mut ids = ConnIdSeq::starting_at(ID_SPACE - 2);
    let mut lines = Vec::new();
    let mut moments = MOMENTS.iter().copied().cycle();
    let payloads = payloads();
    for (n, chunk) in payloads.chunks(40).enumerate() {
        let (client, target) = PEERS[n % PEERS.len()];
        let id = ids.take();
        let mut line = |from, to, sent| Traffic {
            micros: moments.next().expect("a cycle"),
            id,
            from,
            to,
            sent,
        };
        let port = [8080, 443, 1, 65535][n % 4];
        lines.push(line(client, target, Sent::Open { port }));
        for (k, bytes) in chunk.iter().enumerate() {
            let (from, to) = if k % 3 == 2 {
                (target, client)
            } else {
                (client, target)
            };
            let bytes = bytes.clone();
            lines.push(line(from, to, Sent::Data { bytes }));
        }
        let (from, to) = if n % 2 == 0 {
            (client, target)
        } else {
            (target, client)
        };
        lines.push(line(from, to, Sent::Close));
    }
    lines
}

/// The decoder's fast path takes `line` and gives back what `sent` was
/// encoded from; encoding what it gave back writes the same line again.
fn check_fast_path(line: &[u8], sent: &Traffic) {
    let shown = || String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned();
    let parsed = fast_parse(line).unwrap_or_else(|| panic!("not the fast path: {}", shown()));
    let mut again = Vec::new();
    let mut clock = LineClock::default();
    let time = Time(sent.micros as i64);
    let (from, to) = (sent.from, sent.to);
    match (&sent.sent, parsed) {
        (
            Sent::Open { port },
            Line::Open {
                time: t,
                conn_id,
                from: f,
                to: tt,
                listen_port,
            },
        ) => {
            assert_eq!(
                (t, conn_id, &*f, &*tt, listen_port),
                (time, sent.id, from, to, *port)
            );
            let micros = t.0 as u64;
            push_open_line(
                &mut again,
                &mut clock,
                micros,
                &conn_id,
                &f,
                &tt,
                listen_port,
            );
        }
        (
            Sent::Data { bytes },
            Line::Data {
                time: t,
                conn_id,
                data,
                from: f,
                to: tt,
            },
        ) => {
            assert_eq!((t, conn_id, &*f, &*tt), (time, sent.id, from, to));
            let decoded = data.decode().expect("the data string decodes");
            assert!(decoded == *bytes, "other bytes back: {}", shown());
            // Into a scratch buffer that held something else, as readers do.
            let mut scratch = vec![0xA5; 3];
            assert_eq!(data.decode_in(&mut scratch), Ok(&bytes[..]));
            // Every decoder, the portable one (what ARM runs) among them.
            for decoder in [Decoder::Avx2, Decoder::Sse, Decoder::Portable] {
                let got = data.decode_in_with(&mut scratch, decoder);
                assert_eq!(got, Ok(&bytes[..]), "{decoder:?}: {}", shown());
            }
            let micros = t.0 as u64;
            push_data_line(&mut again, &mut clock, micros, &conn_id, &decoded, &f, &tt);
        }
        (
            Sent::Close,
            Line::Close {
                time: t,
                conn_id,
                from: f,
                to: tt,
            },
        ) => {
            assert_eq!((t, conn_id, &*f, &*tt), (time, sent.id, from, to));
            push_close_line(&mut again, &mut clock, t.0 as u64, &conn_id, &f, &tt);
        }
        (sent, parsed) => panic!("sent {sent:?}, got {parsed:?}: {}", shown()),
    }
    assert!(
        again == [line, b"\n"].concat(),
        "written again otherwise: {}",
        shown()
    );
}

#[test]
fn every_line_the_encoder_writes_takes_the_fast_path_back() {
    let traffic = traffic();
    let mut clock = LineClock::default();
    let mut log = Vec::new();
    for line in &traffic {
        line.push(&mut log, &mut clock);
    }
    let lines = split_lines(&log);
    assert_eq!(
        lines.len(),
        traffic.len(),
        "one line each, newline-terminated"
    );
    for (line, sent) in lines.iter().zip(&traffic) {
        check_fast_path(line, sent);
    }
}

/// Control events have no ConnID: the fast path leaves them to
/// `serde_json`, which tells a run's start and end from the rest.
#[test]
fn control_events_decode_as_what_they_are() {
    let (clock, micros) = (&mut LineClock::default(), MOMENTS[1]);
    let mut log = Vec::new();
    push_mcp_ready(&mut log, clock, micros, "http://127.0.0.1:1234/mcp");
    push_logging_event(
        &mut log,
        clock,
        micros,
        START_LOGGING,
        Some("./lo\"gs"),
        Some("%Y.log"),
    );
    push_logging_event(&mut log, clock, micros, START_LOGGING, None, None);
    push_logging_event(&mut log, clock, micros, STOP_LOGGING, Some("logs"), None);
    push_logging_event(&mut log, clock, micros, STOP_LOGGING, None, None);
    let want = [
        Line::Other,
        Line::RunStart,
        Line::RunStart,
        Line::RunEnd,
        Line::RunEnd,
    ];
    let lines = split_lines(&log);
    assert_eq!(lines.len(), want.len(), "one line each, newline-terminated");
    for (line, want) in lines.into_iter().zip(want) {
        let shown = String::from_utf8_lossy(line);
        assert_eq!(fast_parse(line), None, "{shown}");
        assert_eq!(parse_line(line), Ok(want), "{shown}");
    }
}

/// The lines of a log, each of which ends in a newline.
fn split_lines(log: &[u8]) -> Vec<&[u8]> {
    let body = log.strip_suffix(b"\n").expect("a last newline");
    body.split(|&b| b == b'\n').collect()
}
