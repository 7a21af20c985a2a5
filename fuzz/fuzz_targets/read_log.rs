//! The read side (SPEC §9): any bytes as a log. Every line decodes or is
//! skipped with a reason, never a panic; each subcommand's library function
//! reads them to the end; what a data string decodes to is no longer than
//! its text, and the same decoded alone or into a reused buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::read::decode::{Line, parse_line};
use rawprox::read::input::{Input, Lines, Piece};
use rawprox::read::pipeline::Selection;
use rawprox::read::{ConnId, Side};

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
        }
    }
    let inputs = [Input::Bytes(input.to_vec())];
    let _ = rawprox::read::list::all_connections(&inputs, None);
    let _ = rawprox::read::follow::follow(&inputs, &Selection::default(), true, &mut std::io::sink());
    let _ = rawprox::read::pcap::write_pcap(&inputs, None, std::io::sink());
    let id = first_id.unwrap_or(ConnId(*b"00000000"));
    let _ = rawprox::read::extract::extract(&inputs, id, Side::Target, &mut std::io::sink());
    let _ = rawprox::read::extract::conversation(&inputs, id, None, None, 3, 100);
});
