//! Where log lines come from (SPEC §9): files, directories (their `*.ndjson`
//! files in name order) and standard input, read as a stream of lines in a
//! buffer of fixed size, so memory never follows the size of a log. Also
//! the count of skipped lines and files, and the progress line on a terminal.
//!
//! Only regular files are read, each once (by identity: a link to a file
//! already listed adds nothing), each up to the size it had when it was
//! listed; a directory is never entered twice, so a link cycle ends.

use super::Error;
use super::decode::{Bad, MAX_LINE_BYTES};
use crate::sys::{self, FileId};
use std::collections::HashSet;
use std::fs::{self, File};
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
    /// A log file, read up to `len` bytes (its size when listed: a file
    /// still being written does not keep the reader going). A file `found`
    /// in a directory that cannot be opened when its turn comes is skipped
    /// and counted; a named one is an error. `len` is `None` for a named
    /// pipe (`<(command)`), read to its end.
    File {
        path: PathBuf,
        len: Option<u64>,
        found: bool,
    },
    /// Something in a directory that is not read, and why: counted as
    /// skipped when its turn comes.
    Unread {
        path: PathBuf,
        why: String,
    },
    /// Bytes already in memory (tests, the fuzz target).
    Bytes(Vec<u8>),
}

impl Input {
    /// A named log file, as a test or a caller that checked it gives it.
    pub fn file(path: impl Into<PathBuf>) -> Input {
        Input::File {
            path: path.into(),
            len: None,
            found: false,
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File { path, .. } | Input::Unread { path, .. } => path.display().to_string(),
            Input::Bytes(_) => "<memory>".into(),
        }
    }

    /// True when this input is the file at `path`, by any name or link.
    pub fn is_file(&self, path: &Path) -> bool {
        let Input::File { path: mine, .. } = self else {
            return false;
        };
        let id = |p: &Path| fs::metadata(p).ok().and_then(|m| sys::file_id(p, &m));
        id(mine).is_some_and(|mine| id(path) == Some(mine))
    }
}

/// Turns the command line's INPUT arguments into inputs: none or `-` is
/// standard input, a directory is its `*.ndjson` files (subdirectories too,
/// as `--filename-format` may make them) in name order, anything else a
/// file. A named file that cannot be opened, or that is neither a regular
/// file nor a pipe, is an error before anything is read.
pub fn expand(args: &[String]) -> Result<Vec<Input>, Error> {
    if args.is_empty() {
        return Ok(vec![Input::Stdin]);
    }
    let mut inputs = Vec::new();
    let mut seen = Seen::default();
    for arg in args {
        if arg == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        let meta =
            fs::metadata(path).map_err(|e| Error::Message(format!("cannot open {arg}: {e}")))?;
        if meta.is_dir() {
            let before = inputs.len();
            let mut others = 0;
            let mut found = Vec::new();
            walk(
                path,
                &meta,
                &mut seen,
                &mut Vec::new(),
                &mut found,
                &mut others,
            )
            .map_err(|e| Error::Message(format!("cannot read directory {arg}: {e}")))?;
            found.sort_by(|a, b| a.path().cmp(b.path()));
            for found in found {
                match found {
                    Found::Unread(path, why) => inputs.push(Input::Unread { path, why }),
                    Found::Log(path, meta) => match sys::file_id(&path, &meta) {
                        Some(id) if seen.files.contains(&id) => {} // read once already
                        id => {
                            seen.files.extend(id);
                            inputs.push(Input::File {
                                path,
                                len: Some(meta.len()),
                                found: true,
                            });
                        }
                    },
                }
            }
            if inputs.len() == before && others > 0 {
                inputs.push(Input::Unread {
                    path: path.to_path_buf(),
                    why: format!(
                        "holds no .ndjson file ({others} other files): only *.ndjson files are read"
                    ),
                });
            }
            continue;
        }
        // The file itself is opened here, so that a missing or unreadable
        // one is an error before anything is read.
        File::open(path).map_err(|e| Error::Message(format!("cannot open {arg}: {e}")))?;
        let len = if meta.is_file() {
            Some(meta.len())
        } else if is_pipe(&meta) {
            None
        } else {
            return Err(Error::Message(format!(
                "{arg} is not a regular file: give a log file, a directory or -"
            )));
        };
        if let Some(id) = sys::file_id(path, &meta)
            && !seen.files.insert(id)
        {
            continue; // the same file named twice: read once
        }
        inputs.push(Input::File {
            path: path.to_path_buf(),
            len,
            found: false,
        });
    }
    Ok(inputs)
}

#[cfg(unix)]
fn is_pipe(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_pipe(_: &fs::Metadata) -> bool {
    false
}

/// The files and directories already listed.
#[derive(Default)]
struct Seen {
    files: HashSet<FileId>,
    dirs: HashSet<FileId>,
}

/// The `*.ndjson` regular files under `dir`, at any depth, following links
/// but entering no directory twice; `ancestors` are the directories being
/// walked, so a link back to one is named as a cycle. Other files are
/// counted in `others`; a `*.ndjson` that is not a regular file, or whose
/// link leads nowhere, is listed as `Unread`.
fn walk(
    dir: &Path,
    meta: &fs::Metadata,
    seen: &mut Seen,
    ancestors: &mut Vec<(FileId, PathBuf)>,
    found: &mut Vec<Found>,
    others: &mut usize,
) -> io::Result<()> {
    let id = sys::file_id(dir, meta);
    if let Some(id) = &id {
        if !seen.dirs.insert(id.clone()) {
            if let Some((_, first)) = ancestors.iter().find(|(a, _)| a == id) {
                found.push(Found::Unread(
                    dir.to_path_buf(),
                    format!(
                        "a link back to {} (a directory cycle): not entered",
                        first.display()
                    ),
                ));
            }
            return Ok(());
        }
        ancestors.push((id.clone(), dir.to_path_buf()));
    }
    let mut entries: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir)? {
        entries.push(entry?.path());
    }
    for path in entries {
        let is_log = path.extension().is_some_and(|e| e == "ndjson");
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                // A subdirectory that cannot be read is skipped, not fatal.
                if let Err(e) = walk(&path, &meta, seen, ancestors, found, others) {
                    found.push(Found::Unread(path, format!("cannot read directory: {e}")));
                }
            }
            Ok(meta) if meta.is_file() && is_log => found.push(Found::Log(path, meta)),
            Ok(_) if is_log => {
                found.push(Found::Unread(path, "not a regular file: not read".into()))
            }
            Err(e) if is_log => found.push(Found::Unread(path, format!("cannot open: {e}"))),
            _ => *others += 1,
        }
    }
    if id.is_some() {
        ancestors.pop();
    }
    Ok(())
}

/// What a directory walk finds: a log file to read, or a path not read.
enum Found {
    Log(PathBuf, fs::Metadata),
    Unread(PathBuf, String),
}

impl Found {
    fn path(&self) -> &Path {
        match self {
            Found::Log(path, _) | Found::Unread(path, _) => path,
        }
    }
}

/// Lines and files skipped and counted (SPEC §9), and the first one's place.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Skipped {
    pub count: u64,
    /// Input name, line number (from 1; 0 for a whole file), why.
    pub first: Option<(String, u64, String)>,
}

impl Skipped {
    pub fn note(&mut self, place: &Place, why: Bad) {
        self.note_at(place.input.name(), place.line, why.to_string());
    }

    fn note_at(&mut self, name: String, line: u64, why: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((name, line, why));
        }
    }

    /// The one stderr line for the end of a run, if anything was skipped.
    pub fn message(&self) -> Option<String> {
        let (name, line, why) = self.first.as_ref()?;
        let lines = if self.count == 1 { "line" } else { "lines" };
        let place = match line {
            0 => name.clone(),
            n => format!("{name} line {n}"),
        };
        Some(format!(
            "Skipped {} unreadable {lines}; the first is {place}: {why}",
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

/// Reads every input in turn and hands each line to `each` with its
/// place and the count of skipped lines (for the lines it cannot use
/// either); lines that cannot be used, and files that cannot be read, are
/// counted there before `each` sees anything, and the count is returned. `Caught` comes after each read is used up (a live
/// view flushes then). `each` may stop the reading early with
/// `ControlFlow::Break`.
pub fn read_lines(
    inputs: &[Input],
    mut each: impl FnMut(&Place, Piece, &mut Skipped) -> ControlFlow<()>,
) -> Result<Skipped, Error> {
    let mut skipped = Skipped::default();
    let mut progress = Progress::new(inputs);
    for input in inputs {
        let source: Box<dyn Read> = match input {
            Input::Stdin => Box::new(io::stdin().lock()),
            Input::File { path, len, found } => {
                let opened = match len {
                    Some(_) => sys::open_regular(path),
                    None => File::open(path),
                };
                match (opened, len) {
                    (Ok(file), Some(len)) => Box::new(file.take(*len)),
                    (Ok(file), None) => Box::new(file),
                    // SPEC §9: a file that vanished from a directory, or
                    // cannot be opened now, is skipped and counted.
                    (Err(e), _) if *found => {
                        skipped.note_at(input.name(), 0, format!("cannot open: {e}"));
                        continue;
                    }
                    (Err(e), _) => {
                        return Err(Error::Message(format!(
                            "cannot open {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            Input::Unread { why, .. } => {
                skipped.note_at(input.name(), 0, why.clone());
                continue;
            }
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
                    each(&place, Piece::Caught, &mut skipped)
                }
                Some(Piece::Unusable(why)) => {
                    place.line += 1;
                    skipped.note(&place, why);
                    ControlFlow::Continue(())
                }
                Some(piece) => {
                    place.line += 1;
                    each(&place, piece, &mut skipped)
                }
            };
            if flow.is_break() {
                if let Some(p) = progress.as_mut() {
                    p.clear();
                }
                return Ok(skipped);
            }
        }
        if let Some(p) = progress.as_mut() {
            p.next_input(lines.bytes_read);
        }
    }
    if let Some(p) = progress.as_mut() {
        p.clear();
    }
    Ok(skipped)
}

/// SPEC §9: with files as input and stderr a terminal, a run that takes more
/// than a second shows how much it has read, on one line it clears at the end.
/// Not when stdout is a terminal too: output lines would land on its line
/// (and there the output shows the progress).
struct Progress {
    total: u64,
    /// Bytes of the inputs already finished.
    done: u64,
    started: Instant,
    last_shown: Option<Instant>,
}

impl Progress {
    fn new(inputs: &[Input]) -> Option<Progress> {
        if !io::stderr().is_terminal()
            || io::stdout().is_terminal()
            || inputs
                .iter()
                .any(|i| matches!(i, Input::Stdin | Input::Bytes(_)))
        {
            return None;
        }
        let total = inputs
            .iter()
            .filter_map(|i| match i {
                Input::File { len, .. } => *len,
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
        let input = Input::file("logs/a.ndjson");
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
