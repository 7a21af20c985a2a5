//! The `data` encoding (SPEC §4): the output is a valid JSON string body
//! with no `\u` escape, and JSON-decoding then percent-decoding it gives
//! the input back; so does every decoder of the read side, from a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::format::connid::ConnId;
use rawprox::format::decode::data::Decoder;
use rawprox::format::decode::line::{Line, parse_line};
use rawprox::format::encode::{Encoder, push_data, push_data_line};
use rawprox::format::time::LineClock;

/// SPEC §4's encoding and its inverse, shared with the tests.
#[allow(dead_code)]
#[path = "../../tests/util/reference.rs"]
mod reference;

/// The character after each escaping backslash.
fn escapes(text: &str) -> impl Iterator<Item = u8> + '_ {
    let mut bytes = text.bytes();
    std::iter::from_fn(move || {
        loop {
            match bytes.next()? {
                b'\\' => return bytes.next(),
                _ => continue,
            }
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let mut out = Vec::new();
    push_data(&mut out, input);
    // Every encoder gives the same bytes, the portable one (ARM) among them.
    for encoder in [Encoder::Avx512, Encoder::Ssse3, Encoder::Portable] {
        let mut other = Vec::new();
        encoder.push(&mut other, input);
        assert_eq!(other, out, "{encoder:?} gives what push_data gives");
    }
    assert!(
        out.iter().all(|b| (0x20..0x7F).contains(b)),
        "output is printable ASCII"
    );
    let text = std::str::from_utf8(&out).expect("ASCII is UTF-8");
    assert!(
        escapes(text).all(|e| matches!(e, b'"' | b'\\' | b't' | b'n' | b'r')),
        "only JSON's short escapes, never \\u"
    );
    let decoded: String =
        serde_json::from_str(&format!("\"{text}\"")).expect("a valid JSON string body");
    assert_eq!(
        reference::percent_decode(&decoded),
        input,
        "well-formed percent escapes, the input back"
    );
    // Every decoder reads the bytes back from a data line, the portable
    // one (ARM) among them.
    let mut line = Vec::new();
    let id = ConnId(*b"0tK3XaB9");
    push_data_line(
        &mut line,
        &mut LineClock::default(),
        1_761_147_167_123_456,
        &id,
        input,
        "127.0.0.1:1",
        "127.0.0.1:2",
    );
    let Ok(Line::Data { data, .. }) = parse_line(line.strip_suffix(b"\n").unwrap_or(&line)) else {
        panic!("a data line parses as one");
    };
    let mut scratch = Vec::new();
    for decoder in [Decoder::Avx2, Decoder::Sse, Decoder::Portable] {
        assert_eq!(
            data.decode_in_with(&mut scratch, decoder),
            Ok(input),
            "{decoder:?} decodes the input back"
        );
    }
});
