//! Criterion bench of the read side's line decoder (SPEC §9), in bytes of
//! log per second, against a baseline measured in the same run: finding the
//! newlines of the same log (what `wc -l` does, the floor of any reader).
//! Logs of 32 KiB reads of HTTP text, of random binary, a mix of both
//! with small lines (opens, closes, short requests), and HTTP responses
//! (header lines, then a binary body in the same read), written by the
//! proxy's encoder. Each log is decoded whole: every line parsed, every
//! `data` string decoded. Beside `decode_in` (the widest block decoder
//! this CPU has), the 16-byte SSE one and the portable loop alone (what
//! every CPU that is not x86-64 runs), with their ratio at the end.
//!
//! Run: cargo bench --bench decode

mod common;

use common::mean_ns;
use criterion::{Criterion, Throughput, criterion_group};
use rawprox::format::connid::ConnId;
use rawprox::format::decode::data::Decoder;
use rawprox::format::decode::line::{Line, parse_line};
use rawprox::format::encode;
use rawprox::format::time::LineClock;
use std::hint::black_box;

const CHUNK: usize = 32 * 1024;
/// Bytes of log in each bench input.
const LOG_BYTES: usize = 8 << 20;

fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// The log's one connection, at one moment: the bench measures the
/// decoder, not the variety of its input.
const MICROS: u64 = 1_761_147_167_123_456;
const ID: ConnId = ConnId(*b"0tK3XaB9");
const CLIENT: &str = "127.0.0.1:54321";
const TARGET: &str = "api.example.com:443";

fn push_data_line(out: &mut Vec<u8>, clock: &mut LineClock, payload: &[u8]) {
    encode::push_data_line(out, clock, MICROS, &ID, payload, CLIENT, TARGET);
}

/// About `LOG_BYTES` of log lines.
fn logs() -> Vec<(&'static str, Vec<u8>)> {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let http = b"GET /api/v1/items?page=2&sort=name HTTP/1.1\r\nHost: api.example.com\r\nAccept: application/json\r\nUser-Agent: bench/1.0\r\n\r\n";
    let text: Vec<u8> = http.iter().copied().cycle().take(CHUNK).collect();
    let binary: Vec<u8> = (0..CHUNK).map(|_| next() as u8).collect();
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 32579\r\nCache-Control: max-age=3600\r\n\r\n";
    let response: Vec<u8> = head.iter().chain(&binary).copied().take(CHUNK).collect();
    let make = |payloads: &[&[u8]], small_lines: bool| {
        let mut out = Vec::with_capacity(LOG_BYTES + 4 * CHUNK);
        let clock = &mut LineClock::default();
        let mut i = 0;
        while out.len() < LOG_BYTES {
            if small_lines && i % 4 == 0 {
                encode::push_open_line(&mut out, clock, MICROS, &ID, CLIENT, TARGET, 8080);
                push_data_line(&mut out, clock, &http[..70]);
                encode::push_close_line(&mut out, clock, MICROS, &ID, CLIENT, TARGET);
            }
            push_data_line(&mut out, clock, payloads[i % payloads.len()]);
            i += 1;
        }
        out
    };
    vec![
        ("text", make(&[&text], false)),
        ("binary", make(&[&binary], false)),
        ("mixed", make(&[&text, &binary], true)),
        ("response", make(&[&response], false)),
    ]
}

/// Parses every line and decodes every `data` string; returns the bytes.
/// Into one scratch buffer, as the subcommands decode, with `decoder`.
fn decode_all(log: &[u8], scratch: &mut Vec<u8>, decoder: Decoder) -> usize {
    let mut total = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', log) {
        let line = &log[start..end];
        start = end + 1;
        if let Ok(Line::Data { data, .. }) = parse_line(line)
            && let Ok(bytes) = data.decode_in_with(scratch, decoder)
        {
            total += bytes.len();
        }
    }
    total
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_log");
    let mut out = Vec::with_capacity(2 * CHUNK);
    for (name, log) in logs() {
        group.throughput(Throughput::Bytes(log.len() as u64));
        group.bench_function(format!("newlines_{name}"), |b| {
            b.iter(|| memchr::memchr_iter(b'\n', black_box(&log)).count())
        });
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| decode_all(black_box(&log), &mut out, Decoder::chosen()))
        });
        // The 16-byte block decoder (CPUs without AVX2) and the portable
        // loop alone (every CPU that is not x86-64: ARM), the same log in
        // the same run.
        if Decoder::Sse.runs_here() {
            group.bench_function(format!("decode_sse_{name}"), |b| {
                b.iter(|| decode_all(black_box(&log), &mut out, Decoder::Sse))
            });
        }
        group.bench_function(format!("decode_portable_{name}"), |b| {
            b.iter(|| decode_all(black_box(&log), &mut out, Decoder::Portable))
        });
    }
    group.finish();
}

criterion_group!(benches, decoding);

fn main() {
    let sizes: Vec<(&str, usize)> = logs().iter().map(|(n, l)| (*n, l.len())).collect();
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\ndecoder vs finding newlines (same run), GB/s of log:");
    for &(name, len) in &sizes {
        let (Some(lines), Some(decode)) = (
            mean_ns("decode_log", &format!("newlines_{name}")),
            mean_ns("decode_log", &format!("decode_{name}")),
        ) else {
            continue;
        };
        let gbs = |ns: f64| len as f64 / ns;
        println!(
            "  {name:7} decode {:6.2} GB/s, newlines {:6.2} GB/s, ratio {:.3}",
            gbs(decode),
            gbs(lines),
            lines / decode
        );
    }
    println!(
        "\nportable decoder vs the SSE path (same run; target 0.5; decode_in here is {:?}):",
        Decoder::chosen()
    );
    for &(name, len) in &sizes {
        let (Some(sse), Some(portable)) = (
            mean_ns("decode_log", &format!("decode_sse_{name}")),
            mean_ns("decode_log", &format!("decode_portable_{name}")),
        ) else {
            continue;
        };
        let gbs = |ns: f64| len as f64 / ns;
        println!(
            "  {name:7} portable {:6.2} GB/s, SSE {:6.2} GB/s, ratio {:.3}",
            gbs(portable),
            gbs(sse),
            sse / portable
        );
    }
}
