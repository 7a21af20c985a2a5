//! Showing captured bytes and names to people (SPEC §9): text as text with
//! every control byte made visible, the rest as a hex dump, and addresses
//! and file names that can never move a terminal's cursor. Used by
//! `follow`, `list`, the skip line, `replay`'s excerpts and the MCP tools.

use std::borrow::Cow;

/// True when at least 90% of `bytes` are text: printable ASCII, tab, CR,
/// LF, or printable characters of valid UTF-8.
pub fn is_mostly_text(bytes: &[u8]) -> bool {
    let mut text_bytes = 0usize;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if matches!(c, '\t' | '\n' | '\r') || !c.is_control() {
                text_bytes += c.len_utf8();
            }
        }
    }
    text_bytes * 10 >= bytes.len() * 9
}

/// Appends `bytes` as text: printable characters as they are, tab and
/// newline as themselves, every other control byte, DEL and bytes that are
/// not UTF-8 made visible (`\r`, `\0`, `\xNN`), so nothing written can
/// move a terminal's cursor or change its colours.
pub fn push_text(bytes: &[u8], out: &mut String) {
    push_escaped(bytes, out, true);
}

/// `text` with every control character made visible, tab and newline too:
/// for the addresses and names a log or a directory gives, which must
/// neither reach a terminal raw nor break a table's row (SPEC §9).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    push_escaped(text.as_bytes(), &mut out, false);
    Cow::Owned(out)
}

/// `push_text`, with tab and newline kept as they are when `layout`.
fn push_escaped(bytes: &[u8], out: &mut String, layout: bool) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' if layout => out.push(c),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
}

/// Appends a hex dump of `bytes` as `hexdump -C` writes it: the offset
/// (from `first_offset`), 16 bytes in hex, and those bytes as ASCII with
/// `.` for the rest.
pub fn push_hex_dump(bytes: &[u8], first_offset: u64, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (n, row) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", first_offset + 16 * n as u64));
        for i in 0..16 {
            match row.get(i) {
                Some(&b) => {
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 0xF) as usize] as char);
                    out.push(' ');
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(row.iter().map(|&b| {
            if (0x20..0x7F).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shows_control_bytes() {
        let mut out = String::new();
        push_text(
            b"GET / HTTP/1.1\r\nA:\tb\x1b[31m\x00caf\xC3\xA9 \xFF\x7F",
            &mut out,
        );
        assert_eq!(out, "GET / HTTP/1.1\\r\nA:\tb\\x1b[31m\\0café \\xff\\x7f");
        assert_eq!(visible("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(
            visible("\u{1b}[31mEVIL\n\tcafé\u{9b}:1"),
            "\\x1b[31mEVIL\\n\\tcafé\\xc2\\x9b:1"
        );
        assert!(is_mostly_text(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(is_mostly_text("héllo wörld".as_bytes()));
        assert!(!is_mostly_text(&(0..=255).collect::<Vec<u8>>()));
    }

    #[test]
    fn hex_dump_as_hexdump_c() {
        let mut out = String::new();
        push_hex_dump(b"GET / HTTP/1.1\r\n\x00\xff", 0x20, &mut out);
        assert_eq!(
            out,
            "00000020  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n\
             00000030  00 ff                                             |..|\n"
        );
    }
}
