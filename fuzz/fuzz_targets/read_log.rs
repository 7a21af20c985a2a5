//! The read side (SPEC §9): any bytes as a log. Every line decodes or is
//! skipped with a reason, never a panic; each subcommand's library function
//! reads them to the end; what a data string decodes to is no longer than
//! its text, and the same decoded alone or into a reused buffer.
//!
//! One input in 16 also becomes a small directory tree (files holding the
//! input, subdirectories, links to `.`, `..` and earlier entries, FIFOs):
//! listing it ends, lists each regular file once and no FIFO, and the MCP
//! tools' listing (`expand_within`) stays inside the tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::format::decode::data::Decoder;
use rawprox::format::decode::line::{Line, parse_line};
use rawprox::read::input::{Input, expand, expand_within};
use rawprox::read::lines::{Lines, Piece};
use rawprox::read::pipeline::Selection;
use rawprox::format::connid::ConnId;
use rawprox::format::side::Side;

fuzz_target!(|input: &[u8]| {
    let mut lines = Lines::with_buffer(input, 4096);
    let mut first_id = None;
    let mut scratch = Vec::new();
    while let Some(piece) = lines.next().expect("reading memory cannot fail") {
        let Piece::Line(line) = piece else { continue };
        let Ok(parsed) = parse_line(line) else { continue };
        first_id = first_id.or(parsed.conn_id());
        if let Line::Data { data, .. } = &parsed {
            let decoded = data.decode();
            if let Ok(bytes) = &decoded {
                assert!(bytes.len() <= data.encoded().len(), "escapes only shrink");
            }
            // One scratch buffer for every line, as the readers use it.
            let in_scratch = data.decode_in(&mut scratch).map(<[u8]>::to_vec);
            assert_eq!(in_scratch, decoded, "the same bytes either way");
            // Every decoder, the portable one (ARM) among them: the same
            // bytes or the same error.
            for decoder in [Decoder::Avx2, Decoder::Sse, Decoder::Portable] {
                let other = data.decode_in_with(&mut scratch, decoder).map(<[u8]>::to_vec);
                assert_eq!(other, decoded, "{decoder:?} decodes as decode_in does");
            }
        }
    }
    let inputs = [Input::Bytes(input.to_vec())];
    let _ = rawprox::read::list::all_connections(&inputs, None);
    let _ = rawprox::read::follow::follow(&inputs, &Selection::default(), true, &mut std::io::sink());
    let _ = rawprox::read::pcap::write_pcap(&inputs, None, std::io::sink());
    let id = first_id.unwrap_or(ConnId(*b"00000000"));
    let _ = rawprox::read::extract::extract(&inputs, id, Side::Target, &mut std::io::sink());
    let _ = rawprox::read::extract::conversation(&inputs, id, None, None, 3, 100);
    if input.len() > 1 && input[0] & 0x0F == 0 {
        tree(input);
    }
});

/// Builds a tree from `input[1..9]` (one entry a byte) and reads it.
fn tree(input: &[u8]) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
    use std::path::PathBuf;
    let root = std::env::temp_dir().join(format!("rawprox-fuzz-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir(&root).expect("a temp directory");
    let mut dirs = vec![root.clone()];
    let mut entries: Vec<PathBuf> = Vec::new();
    for (i, &b) in input[1..input.len().min(9)].iter().enumerate() {
        let parent = dirs[usize::from(b >> 3) % dirs.len()].clone();
        // Links lead to `.`, to `..` (but never out of the tree) or to an
        // earlier entry.
        let to = match (usize::from(b >> 5), entries.len()) {
            (0, _) | (_, 0) => PathBuf::from("."),
            (1, _) if parent != root => PathBuf::from(".."),
            (n, len) => entries[n % len].clone(),
        };
        let path = match b % 5 {
            0 => {
                let path = parent.join(format!("{i}.ndjson"));
                std::fs::write(&path, input).expect("a file");
                path
            }
            1 => {
                let path = parent.join(format!("d{i}"));
                std::fs::create_dir(&path).expect("a directory");
                dirs.push(path.clone());
                path
            }
            2 => {
                let path = parent.join(format!("l{i}.ndjson"));
                symlink(&to, &path).expect("a link");
                path
            }
            3 => {
                let path = parent.join(format!("s{i}"));
                symlink(&to, &path).expect("a link");
                path
            }
            _ => {
                let path = parent.join(format!("f{i}.ndjson"));
                let name = std::ffi::CString::new(path.to_str().expect("UTF-8")).expect("no NUL");
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0, "mkfifo");
                path
            }
        };
        entries.push(path);
    }
    let arg = [root.to_str().expect("UTF-8").to_string()];
    let real_root = std::fs::canonicalize(&root).expect("the root");
    for (inputs, within) in [(expand(&arg), false), (expand_within(&arg), true)] {
        let inputs = inputs.expect("a directory of the tree lists");
        let mut ids = std::collections::HashSet::new();
        for input in &inputs {
            let Input::File { path, .. } = input else { continue };
            let meta = std::fs::metadata(path).expect("a listed file");
            assert!(meta.is_file() && !meta.file_type().is_fifo(), "{path:?}");
            assert!(ids.insert((meta.dev(), meta.ino())), "{path:?} listed twice");
            if within {
                let real = std::fs::canonicalize(path).expect("a listed file");
                assert!(real.starts_with(&real_root), "{path:?} outside");
            }
        }
        let _ = rawprox::read::list::all_connections(&inputs, None);
    }
    let _ = std::fs::remove_dir_all(&root);
}
