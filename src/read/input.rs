//! Where log lines come from (SPEC §9): files, directories (their `*.ndjson`
//! files in name order) and standard input, read as a stream of lines in a
//! buffer of fixed size, so memory never follows the size of a log. Also
//! the count of skipped lines and the progress line on a terminal.

use super::Error;
use super::decode::{Bad, MAX_LINE_BYTES};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes read at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// One input of a reading command.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    File(PathBuf),
    /// Bytes already in memory (tests, the fuzz target).
    Bytes(Vec<u8>),
}

impl Input {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File(path) => path.display().to_string(),
            Input::Bytes(_) => "<memory>".into(),
        }
    }
}

/// Turns the command line's INPUT arguments into inputs: none or `-` is
/// standard input, a directory is its `*.ndjson` files (subdirectories too,
/// as `--filename-format` may make them) in name order, anything else a
/// file. Each file is opened once here, so a missing or unreadable one is
/// an error before anything is read.
pub fn expand(args: &[String]) -> Result<Vec<Input>, Error> {
    if args.is_empty() {
        return Ok(vec![Input::Stdin]);
    }
    let mut inputs = Vec::new();
    for arg in args {
        if arg == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        if path.is_dir() {
            let mut files = Vec::new();
            log_files(path, &mut files)
                .map_err(|e| Error::Message(format!("cannot read directory {arg}: {e}")))?;
            files.sort();
            inputs.extend(files.into_iter().map(Input::File));
        } else {
            inputs.push(Input::File(path.to_path_buf()));
        }
    }
    for input in &inputs {
        if let Input::File(path) = input {
            File::open(path)
                .map_err(|e| Error::Message(format!("cannot open {}: {e}", path.display())))?;
        }
    }
    Ok(inputs)
}

/// The `*.ndjson` files under `dir`, at any depth.
fn log_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            log_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ndjson") {
            out.push(path);
        }
    }
    Ok(())
}

/// Lines skipped and counted (SPEC §9), and the first one's place.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Skipped {
    pub count: u64,
    /// Input name, line number (from 1), why.
    pub first: Option<(String, u64, Bad)>,
}

impl Skipped {
    pub fn note(&mut self, place: &Place, why: Bad) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((place.input.name(), place.line, why));
        }
    }

    /// The one stderr line for the end of a run, if anything was skipped.
    pub fn message(&self) -> Option<String> {
        let (name, line, why) = self.first.as_ref()?;
        let lines = if self.count == 1 { "line" } else { "lines" };
        Some(format!(
            "Skipped {} unreadable {lines}; the first is {name} line {line}: {why}",
            self.count
        ))
    }
}

/// Where a line is: its input and line number (from 1).
pub struct Place<'a> {
    pub input: &'a Input,
    pub line: u64,
}

/// What the reader hands on.
pub enum Piece<'a> {
    /// A complete line, without its `\n`.
    Line(&'a [u8]),
    /// A line that cannot be used: the last one of an input without its
    /// `\n`, or one over `MAX_LINE_BYTES`.
    Unusable(Bad),
    /// Everything read so far has been handed on: a live reader flushes.
    Caught,
}

/// Lines of one `Read`, in a buffer of fixed size (longer lines grow it up
/// to `MAX_LINE_BYTES`). `next` lends each line until the next call.
pub struct Lines<R> {
    source: R,
    buf: Vec<u8>,
    /// Unhanded bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Skipping the rest of a line over `MAX_LINE_BYTES`.
    skipping: bool,
    /// `Caught` is due: something was read since the last one.
    fresh: bool,
    /// Bytes read so far.
    pub bytes_read: u64,
}

impl<R: Read> Lines<R> {
    /// Reads `READ_CHUNK` bytes at a time.
    pub fn new(source: R) -> Self {
        Lines::with_buffer(source, READ_CHUNK)
    }

    /// Starts with a buffer of `bytes` (at least 16); it grows for longer lines.
    pub fn with_buffer(source: R, bytes: usize) -> Self {
        Lines {
            source,
            buf: vec![0; bytes.max(16)],
            start: 0,
            end: 0,
            eof: false,
            skipping: false,
            fresh: false,
            bytes_read: 0,
        }
    }

    /// The next piece, or `None` at the end of the input.
    #[allow(clippy::should_implement_trait)] // it lends, so it cannot be an Iterator
    pub fn next(&mut self) -> io::Result<Option<Piece<'_>>> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                self.start += at + 1;
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Ok(Some(Piece::Line(&self.buf[line_start..line_start + at])));
            }
            if self.eof {
                let rest = self.end - self.start;
                self.start = self.end;
                if rest > 0 && !std::mem::take(&mut self.skipping) {
                    return Ok(Some(Piece::Unusable(Bad::Truncated)));
                }
                return Ok(None);
            }
            if self.fresh {
                self.fresh = false;
                return Ok(Some(Piece::Caught));
            }
            // No newline in what is held: all of it belongs to one line.
            if self.skipping {
                self.start = self.end;
            } else if self.end - self.start >= MAX_LINE_BYTES {
                self.skipping = true;
                self.start = self.end;
                return Ok(Some(Piece::Unusable(Bad::TooLong)));
            }
            self.fill()?;
        }
    }

    /// Reads more: moves the partial line to the front, grows the buffer
    /// if the line fills it, then one `read`.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        } else {
            self.end += n;
            self.bytes_read += n as u64;
            self.fresh = true;
        }
        Ok(())
    }
}

/// Reads every input in turn and hands each piece to `each` with its place
/// (the caller counts `Unusable` ones in its `Skipped`). `Caught` comes
/// after each read is used up (a live view flushes then). `each` may stop
/// the reading early with `ControlFlow::Break`.
pub fn read_lines(
    inputs: &[Input],
    mut each: impl FnMut(&Place, Piece) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut progress = Progress::new(inputs);
    for input in inputs {
        let source: Box<dyn Read> = match input {
            Input::Stdin => Box::new(io::stdin().lock()),
            Input::File(path) => Box::new(
                File::open(path)
                    .map_err(|e| Error::Message(format!("cannot open {}: {e}", path.display())))?,
            ),
            Input::Bytes(bytes) => Box::new(bytes.as_slice()),
        };
        // Bytes in memory need no buffer bigger than themselves.
        let buffer = match input {
            Input::Bytes(bytes) => bytes.len().saturating_add(1).min(READ_CHUNK),
            _ => READ_CHUNK,
        };
        let mut lines = Lines::with_buffer(source, buffer);
        let mut place = Place { input, line: 0 };
        loop {
            let piece = lines
                .next()
                .map_err(|e| Error::Message(format!("cannot read {}: {e}", input.name())))?;
            let flow = match piece {
                None => break,
                Some(Piece::Caught) => {
                    if let Some(p) = progress.as_mut() {
                        p.show(lines.bytes_read);
                    }
                    each(&place, Piece::Caught)
                }
                Some(piece) => {
                    place.line += 1;
                    each(&place, piece)
                }
            };
            if flow.is_break() {
                if let Some(p) = progress.as_mut() {
                    p.clear();
                }
                return Ok(());
            }
        }
        if let Some(p) = progress.as_mut() {
            p.next_input(lines.bytes_read);
        }
    }
    if let Some(p) = progress.as_mut() {
        p.clear();
    }
    Ok(())
}

/// SPEC §9: with files as input and stderr a terminal, a run that takes more
/// than a second shows how much it has read, on one line it clears at the end.
struct Progress {
    total: u64,
    /// Bytes of the inputs already finished.
    done: u64,
    started: Instant,
    last_shown: Option<Instant>,
}

impl Progress {
    fn new(inputs: &[Input]) -> Option<Progress> {
        if !io::stderr().is_terminal() || inputs.iter().any(|i| !matches!(i, Input::File(_))) {
            return None;
        }
        let total = inputs
            .iter()
            .filter_map(|i| match i {
                Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
                _ => None,
            })
            .sum();
        Some(Progress {
            total,
            done: 0,
            started: Instant::now(),
            last_shown: None,
        })
    }

    fn show(&mut self, read_of_this_input: u64) {
        let now = Instant::now();
        if now.duration_since(self.started) < Duration::from_secs(1)
            || self
                .last_shown
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(200))
        {
            return;
        }
        self.last_shown = Some(now);
        let read = self.done + read_of_this_input;
        let percent = read * 100 / self.total.max(1);
        let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
        let _ = write!(
            io::stderr(),
            "\r\x1b[Kread {:.0} of {:.0} MiB ({percent}%)",
            mib(read),
            mib(self.total)
        );
    }

    fn next_input(&mut self, read: u64) {
        self.done += read;
    }

    fn clear(&mut self) {
        if self.last_shown.take().is_some() {
            let _ = write!(io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of `bytes` read `chunk` bytes at a time.
    fn pieces(bytes: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, Bad>> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut lines = Lines::with_buffer(Trickle(bytes, chunk), 16);
        let mut out = Vec::new();
        while let Some(piece) = lines.next().unwrap() {
            match piece {
                Piece::Line(l) => out.push(Ok(l.to_vec())),
                Piece::Unusable(why) => out.push(Err(why)),
                Piece::Caught => {}
            }
        }
        out
    }

    #[test]
    fn lines_whole_split_and_truncated() {
        for chunk in [1, 3, 1 << 20] {
            assert_eq!(
                pieces(b"a\n\nbc\nde", chunk),
                vec![
                    Ok(b"a".to_vec()),
                    Ok(b"".to_vec()),
                    Ok(b"bc".to_vec()),
                    Err(Bad::Truncated)
                ],
                "chunk {chunk}"
            );
        }
        assert_eq!(pieces(b"", 5), vec![]);
        assert_eq!(pieces(b"x\n", 5), vec![Ok(b"x".to_vec())]);
    }

    #[test]
    fn long_lines_grow_the_buffer_and_huge_ones_are_skipped() {
        let long = vec![b'x'; 3 * READ_CHUNK];
        let mut bytes = long.clone();
        bytes.extend_from_slice(b"\nend\n");
        assert_eq!(pieces(&bytes, 1 << 20), vec![Ok(long), Ok(b"end".to_vec())]);
        let mut huge = vec![b'y'; MAX_LINE_BYTES + READ_CHUNK + 5];
        huge.extend_from_slice(b"\nafter\n");
        assert_eq!(
            pieces(&huge, 1 << 20),
            vec![Err(Bad::TooLong), Ok(b"after".to_vec())]
        );
    }

    #[test]
    fn skipped_names_the_first() {
        let input = Input::File("logs/a.ndjson".into());
        let mut skipped = Skipped::default();
        assert_eq!(skipped.message(), None);
        skipped.note(
            &Place {
                input: &input,
                line: 7,
            },
            Bad::NotJson,
        );
        skipped.note(
            &Place {
                input: &input,
                line: 9,
            },
            Bad::BadData,
        );
        assert_eq!(
            skipped.message().unwrap(),
            "Skipped 2 unreadable lines; the first is logs/a.ndjson line 7: not JSON"
        );
    }

    #[test]
    fn directories_are_their_log_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("rawprox-read-expand-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("2025/10")).unwrap();
        for name in ["b.ndjson", "a.ndjson", "notes.txt", "2025/10/22.ndjson"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let arg = dir.to_str().unwrap().to_string();
        let names: Vec<String> = expand(&[arg])
            .unwrap()
            .iter()
            .map(|i| i.name()[dir.to_str().unwrap().len() + 1..].to_string())
            .collect();
        assert_eq!(names, ["2025/10/22.ndjson", "a.ndjson", "b.ndjson"]);
        let missing = dir.join("missing.ndjson").to_str().unwrap().to_string();
        let err = expand(&[missing]).unwrap_err();
        assert!(
            matches!(&err, Error::Message(m) if m.starts_with("cannot open ")),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(expand(&[]).unwrap()[..], [Input::Stdin]));
    }
}
