//! The `data` encoding (SPEC §4): the output is a valid JSON string body
//! with no `\u` escape, and JSON-decoding then percent-decoding it gives
//! the input back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::format::encode::{Encoder, push_data};

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
    assert!(out.iter().all(|b| (0x20..0x7F).contains(b)), "output is printable ASCII");
    let text = std::str::from_utf8(&out).expect("ASCII is UTF-8");
    assert!(escapes(text).all(|e| matches!(e, b'"' | b'\\' | b't' | b'n' | b'r')), "only JSON's short escapes, never \\u");
    let decoded: String = serde_json::from_str(&format!("\"{text}\"")).expect("a valid JSON string body");
    assert_eq!(reference::percent_decode(&decoded), input, "well-formed percent escapes, the input back");
});
