//! The `data` encoding of SPEC §4, written from its table and independently
//! of `src/format`: the one reference the encoder and the decoder are held
//! against. The black-box tests use it through `tests/util`; the unit tests
//! (`src/format/mod.rs`) and the `encode_data` fuzz target include this file
//! by its path, so there is no second copy to drift.

/// Decodes a parsed `data` string: `%XX` (upper-case hex) is a byte, every
/// other character must be one the encoding writes as itself.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .unwrap_or_else(|| panic!("truncated %XX in {s:?}"));
            assert!(
                hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')),
                "bad escape %{} in data",
                String::from_utf8_lossy(hex)
            );
            out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
            i += 3;
        } else {
            assert!(
                matches!(c, 0x20..=0x7E | b'\t' | b'\n' | b'\r'),
                "byte {c:#04x} written as itself in data"
            );
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The `data` value exactly as SPEC §4 says it appears in the line's text
/// (between the quotes, JSON escapes included).
pub fn encode_data(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'%' => out.push_str("%25"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7E => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
