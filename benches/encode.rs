//! Criterion benches of the logging hot path, each against a baseline
//! measured in the same run: the `data` encoder on 32 KiB reads of text,
//! binary and mixed payloads against a plain copy of the same bytes (the
//! ceiling), and whole lines (timestamp, ConnID, addresses) per line.
//! After the run it prints each encoder's GB/s and its ratio to the copy,
//! `push_data`'s (AVX-512 where the CPU has it) and the portable encoder's
//! (what CPUs without SSSE3 run: ARM) against the SSSE3 path's
//! (`encode_ssse3_*`, what CPUs without AVX-512 run).
//!
//! Run: cargo bench --bench encode

mod common;

use common::mean_ns;
use criterion::{Criterion, Throughput, criterion_group};
use rawprox::format::connid::ConnId;
use rawprox::format::encode::{
    Encoder, push_data, push_data_line, push_data_portable, push_open_line,
};
use rawprox::format::time::LineClock;
use std::hint::black_box;

const CHUNK: usize = 32 * 1024;

/// Payloads like the ones rawprox sees: plain digits (iperf3's text), HTTP
/// text, random binary, and JSON-ish text with some UTF-8 and control bytes.
fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let http = b"GET /api/v1/items?page=2&sort=name HTTP/1.1\r\nHost: api.example.com\r\nAccept: application/json\r\nUser-Agent: bench/1.0\r\n\r\n";
    let text: Vec<u8> = http.iter().copied().cycle().take(CHUNK).collect();
    let binary: Vec<u8> = (0..CHUNK).map(|_| next() as u8).collect();
    let json = "{\"name\":\"Zoë \\\"quoted\\\"\",\"path\":\"C:\\\\dir\",\"pct\":\"100%\",\"tab\":\"a\tb\"}\n";
    let mixed: Vec<u8> = json.bytes().cycle().take(CHUNK).collect();
    // What benches/compare.py downloads as HTTP-like text: requests with
    // `%` (percent-encoded as `%25`), quotes, a backslash, tabs, CR LF, and
    // JSON lines.
    let request: Vec<u8> = (0..)
        .flat_map(|i| {
            format!(
                "GET /api/v1/items?id={i}&q=caf%C3%A9 HTTP/1.1\r\nHost: example.test\r\n\
                 User-Agent: \"bench\\1.0\"\tAccept: */*\r\nX-Ratio: 100%\r\n\r\n\
                 {{\"name\": \"item {i}\", \"path\": \"C:\\\\data\\\\{i}\"}}\n"
            )
            .into_bytes()
        })
        .take(CHUNK)
        .collect();
    // What iperf3 --repeating-payload sends: digits, nothing to escape.
    let plain: Vec<u8> = b"0123456789".iter().copied().cycle().take(CHUNK).collect();
    vec![
        ("plain", plain),
        ("text", text),
        ("request", request),
        ("binary", binary),
        ("mixed", mixed),
    ]
}

fn data_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_32KiB");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    let mut out = Vec::with_capacity(4 * CHUNK);
    for (name, bytes) in payloads() {
        group.bench_function(format!("copy_{name}"), |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&bytes));
                black_box(out.len())
            })
        });
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                push_data(&mut out, black_box(&bytes));
                black_box(out.len())
            })
        });
        // The SSSE3 path (what `push_data` takes on a CPU without AVX-512)
        // and the portable one (every CPU without SSSE3: ARM), measured
        // here beside it, the same payloads in the same run.
        if Encoder::Ssse3.runs_here() {
            group.bench_function(format!("encode_ssse3_{name}"), |b| {
                b.iter(|| {
                    out.clear();
                    Encoder::Ssse3.push(&mut out, black_box(&bytes));
                    black_box(out.len())
                })
            });
        }
        group.bench_function(format!("encode_portable_{name}"), |b| {
            b.iter(|| {
                out.clear();
                push_data_portable(&mut out, black_box(&bytes));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn lines(c: &mut Criterion) {
    let mut group = c.benchmark_group("line");
    group.throughput(Throughput::Elements(1));
    let id = ConnId(*b"0tK3XaB9");
    let (client, target) = ("127.0.0.1:54321", "api.example.com:443");
    let payload = &payloads()[1].1[..100];
    let mut clock = LineClock::default();
    let mut out = Vec::with_capacity(1 << 20);
    let mut micros = 1_761_147_167_000_000u64;
    group.bench_function("copy_100B", |b| {
        b.iter(|| {
            if out.len() > 1 << 19 {
                out.clear();
            }
            out.extend_from_slice(black_box(payload));
        })
    });
    group.bench_function("data_line_100B", |b| {
        b.iter(|| {
            if out.len() > 1 << 19 {
                out.clear();
            }
            micros += 7;
            push_data_line(
                &mut out,
                &mut clock,
                micros,
                &id,
                black_box(payload),
                client,
                target,
            );
        })
    });
    group.bench_function("open_line", |b| {
        b.iter(|| {
            if out.len() > 1 << 19 {
                out.clear();
            }
            micros += 7;
            push_open_line(&mut out, &mut clock, micros, &id, client, target, 8080);
        })
    });
    group.finish();
}

criterion_group!(benches, data_encoding, lines);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let chosen = Encoder::chosen();
    print_ratios(
        "push_data vs copy (same run):",
        ("encode", "push_data"),
        ("copy", "copy"),
    );
    print_ratios(
        &format!("\npush_data ({chosen:?} here) vs the SSSE3 path (same run):"),
        ("encode", "push_data"),
        ("encode_ssse3", "SSSE3"),
    );
    print_ratios(
        &format!(
            "\nportable encoder vs the SSSE3 path (same run; target 0.5; push_data here is {chosen:?}):"
        ),
        ("encode_portable", "portable"),
        ("encode_ssse3", "SSSE3"),
    );
    if let (Some(copy), Some(line)) = (
        mean_ns("line", "copy_100B"),
        mean_ns("line", "data_line_100B"),
    ) {
        println!(
            "  data line (100 B payload): {line:.1} ns per line, copy of the payload {copy:.1} ns"
        );
    }
    if let Some(open) = mean_ns("line", "open_line") {
        println!("  open line: {open:.1} ns per line");
    }
}

/// One row per payload: GB/s of the bench `measured` (prefix, label) and of
/// `baseline`, and baseline's time over measured's (the speed ratio).
fn print_ratios(title: &str, measured: (&str, &str), baseline: (&str, &str)) {
    println!("{title}");
    for (name, _) in payloads() {
        let (Some(ns), Some(base_ns)) = (
            mean_ns("data_32KiB", &format!("{}_{name}", measured.0)),
            mean_ns("data_32KiB", &format!("{}_{name}", baseline.0)),
        ) else {
            continue;
        };
        let gbs = |ns: f64| CHUNK as f64 / ns;
        println!(
            "  {name:7} {} {:6.2} GB/s, {} {:6.2} GB/s, ratio {:.3}",
            measured.1,
            gbs(ns),
            baseline.1,
            gbs(base_ns),
            base_ns / ns
        );
    }
}
