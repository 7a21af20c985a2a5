//! Reading log lines (SPEC §9): the inputs `input` lists, as a stream of
//! lines in a buffer of fixed size, so memory never follows the size of a
//! log; several INPUT arguments merged by time; the count of skipped lines
//! and files; the progress line on a terminal.

use super::Error;
use super::input::Input;
use super::show::visible;
use crate::format::decode::bad::{Bad, MAX_LINE_BYTES};
use crate::format::fields;
use crate::format::time::TIME_LEN;
use crate::sys;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Bytes read at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// Lines and files skipped and counted (SPEC §9), and the first one's place.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Skipped {
    /// Lines and files.
    pub count: u64,
    /// Of them, whole files (or directories) not read.
    pub files: u64,
    /// Input name, line number (from 1; 0 for a whole file), why.
    pub first: Option<(String, u64, String)>,
}

impl Skipped {
    pub fn note(&mut self, place: &Place, why: Bad) {
        self.note_at(place.input.name(), place.line, why.to_string());
    }

    fn note_at(&mut self, name: String, line: u64, why: String) {
        self.count += 1;
        self.files += u64::from(line == 0);
        if self.first.is_none() {
            self.first = Some((name, line, why));
        }
    }

    /// The one stderr line for the end of a run, if anything was skipped.
    pub fn message(&self) -> Option<String> {
        let (name, line, why) = self.first.as_ref()?;
        let plural = |n: u64, what: &str| match n {
            1 => format!("1 {what}"),
            n => format!("{n} {what}s"),
        };
        let lines = self.count - self.files;
        let what = match (lines, self.files) {
            (_, 0) => plural(lines, "unreadable line"),
            (0, files) => plural(files, "file"),
            (lines, files) => format!(
                "{} and {}",
                plural(lines, "unreadable line"),
                plural(files, "file")
            ),
        };
        // A file's name may hold anything a terminal obeys.
        let (name, why) = (visible(name), visible(why));
        let place = match line {
            0 => name.into_owned(),
            n => format!("{name} line {n}"),
        };
        Some(format!("Skipped {what}; the first is {place}: {why}"))
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
    /// Where the last line handed on is in `buf`.
    last: (usize, usize),
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
            last: (0, 0),
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
                self.last = (line_start, line_start + at);
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

    /// The last line `next` handed on, until the next call.
    pub fn last_line(&self) -> &[u8] {
        &self.buf[self.last.0..self.last.1]
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

/// Reads the inputs and hands each line to `each` with its place and the
/// count of skipped lines (for the lines it cannot use either); lines that
/// cannot be used, and files that cannot be read, are counted there before
/// `each` sees anything, and the count is returned. `Caught` comes after
/// each read is used up (a live view flushes then). `each` may stop the
/// reading early with `ControlFlow::Break`.
///
/// The files of one INPUT argument are read in turn (a directory's names
/// are in time order). Several file arguments are merged by the lines'
/// times, so events come in the order they happened across all of them
/// (SPEC §9: `list` rows in open order across inputs).
pub fn read_lines(
    inputs: &[Input],
    mut each: impl FnMut(&Place, Piece, &mut Skipped) -> ControlFlow<()>,
) -> Result<Skipped, Error> {
    let mut skipped = Skipped::default();
    let mut progress = Progress::new(inputs);
    let groups: Vec<&[Input]> = inputs
        .chunk_by(|a, b| a.group().is_some() && a.group() == b.group())
        .collect();
    let result = if groups.len() > 1 && inputs.iter().all(|i| i.group().is_some()) {
        merge(&groups, &mut skipped, &mut progress, &mut each)
    } else {
        let mut stream = Stream::new(inputs);
        loop {
            let piece = match stream.next(&mut skipped)? {
                None => break Ok(()),
                Some(Step::Line) => Piece::Line(stream.line()),
                Some(Step::Caught) => {
                    if let Some(p) = progress.as_mut() {
                        p.show(stream.bytes_read());
                    }
                    Piece::Caught
                }
            };
            if each(&stream.place(), piece, &mut skipped).is_break() {
                break Ok(());
            }
        }
    };
    if let Some(p) = progress.as_mut() {
        p.clear();
    }
    result.map(|()| skipped)
}

/// Several streams of lines merged by the time at the start of each line.
/// A stream's head line is copied out, so every stream's next line can be
/// compared; a line without a time keeps its place in its stream.
fn merge(
    groups: &[&[Input]],
    skipped: &mut Skipped,
    progress: &mut Option<Progress>,
    each: &mut impl FnMut(&Place, Piece, &mut Skipped) -> ControlFlow<()>,
) -> Result<(), Error> {
    struct Head<'a> {
        stream: Stream<'a>,
        line: Vec<u8>,
        /// The time of `line` (or of the stream's last line with one).
        time: Vec<u8>,
        live: bool,
    }
    let mut heads: Vec<Head> = groups
        .iter()
        .map(|g| Head {
            stream: Stream::new(g),
            line: Vec::new(),
            time: Vec::new(),
            live: true,
        })
        .collect();
    // Fills a head with its stream's next line; false at its end.
    let refill = |head: &mut Head, skipped: &mut Skipped| -> Result<bool, Error> {
        loop {
            match head.stream.next(skipped)? {
                None => return Ok(false),
                Some(Step::Line) => {
                    let line = head.stream.line();
                    if let Some(time) = line_time(line) {
                        head.time.clear();
                        head.time.extend_from_slice(time);
                    }
                    head.line.clear();
                    head.line.extend_from_slice(line);
                    return Ok(true);
                }
                Some(Step::Caught) => {} // files only: nothing is live here
            }
        }
    };
    for head in &mut heads {
        head.live = refill(head, skipped)?;
    }
    loop {
        let Some(next) = heads
            .iter_mut()
            .filter(|h| h.live)
            .min_by(|a, b| a.time.cmp(&b.time))
        else {
            return Ok(());
        };
        let place = next.stream.place();
        if each(&place, Piece::Line(&next.line), skipped).is_break() {
            return Ok(());
        }
        next.live = refill(next, skipped)?;
        if let Some(p) = progress.as_mut() {
            p.show(heads.iter().map(|h| h.stream.bytes_read()).sum());
        }
    }
}

/// The time stamp at the start of a line as rawprox writes it: its text
/// sorts in time order.
fn line_time(line: &[u8]) -> Option<&[u8]> {
    let time = line.strip_prefix(fields::TIME)?.get(..TIME_LEN)?;
    (time[TIME_LEN - 1] == b'Z').then_some(time)
}

/// The lines of some inputs, one after the other.
struct Stream<'a> {
    inputs: &'a [Input],
    /// The input being read (`inputs[at - 1]`) and its lines.
    at: usize,
    lines: Option<Lines<Box<dyn Read + 'a>>>,
    line: u64,
    /// Bytes of the inputs already finished.
    done: u64,
}

impl<'a> Stream<'a> {
    fn new(inputs: &'a [Input]) -> Self {
        Stream {
            inputs,
            at: 0,
            lines: None,
            line: 0,
            done: 0,
        }
    }

    /// Where the last piece came from.
    fn place(&self) -> Place<'a> {
        Place {
            input: &self.inputs[self.at.max(1) - 1],
            line: self.line,
        }
    }

    fn bytes_read(&self) -> u64 {
        self.done + self.lines.as_ref().map_or(0, |l| l.bytes_read)
    }

    /// The next line (then `line()`) or `Caught`, opening the inputs in
    /// turn; unusable lines and inputs are counted in `skipped`.
    fn next(&mut self, skipped: &mut Skipped) -> Result<Option<Step>, Error> {
        loop {
            let Some(lines) = self.lines.as_mut() else {
                let Some(input) = self.inputs.get(self.at) else {
                    return Ok(None);
                };
                self.at += 1;
                self.line = 0;
                self.lines = open(input, skipped)?;
                continue;
            };
            let input = &self.inputs[self.at - 1];
            let step = match lines.next() {
                Err(e) => {
                    return Err(Error::Message(format!("cannot read {}: {e}", input.name())));
                }
                Ok(None) => None,
                Ok(Some(Piece::Caught)) => return Ok(Some(Step::Caught)),
                Ok(Some(Piece::Unusable(why))) => Some(Err(why)),
                Ok(Some(Piece::Line(_))) => Some(Ok(())),
            };
            match step {
                None => {
                    self.done += lines.bytes_read;
                    self.lines = None;
                }
                Some(Err(why)) => {
                    self.line += 1;
                    let place = Place {
                        input,
                        line: self.line,
                    };
                    skipped.note(&place, why);
                }
                Some(Ok(())) => {
                    self.line += 1;
                    return Ok(Some(Step::Line));
                }
            }
        }
    }

    /// The line `next` found last.
    fn line(&self) -> &[u8] {
        self.lines.as_ref().map_or(&[], |l| l.last_line())
    }
}

/// What `Stream::next` found.
enum Step {
    Line,
    Caught,
}

/// Opens one input for reading; `None` when it is skipped (and counted).
fn open<'a>(
    input: &'a Input,
    skipped: &mut Skipped,
) -> Result<Option<Lines<Box<dyn Read + 'a>>>, Error> {
    let source: Box<dyn Read + 'a> = match input {
        Input::Stdin => Box::new(io::stdin().lock()),
        Input::File {
            path, len, found, ..
        } => {
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
                    return Ok(None);
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
            return Ok(None);
        }
        Input::Bytes(bytes) => Box::new(bytes.as_slice()),
    };
    // Bytes in memory need no buffer bigger than themselves.
    let buffer = match input {
        Input::Bytes(bytes) => bytes.len().saturating_add(1).min(READ_CHUNK),
        _ => READ_CHUNK,
    };
    Ok(Some(Lines::with_buffer(source, buffer)))
}

/// SPEC §9: with files as input and stderr a terminal, a run that takes more
/// than a second shows how much it has read, on one line it clears at the end.
/// Not when stdout is a terminal too: output lines would land on its line
/// (and there the output shows the progress).
struct Progress {
    total: u64,
    started: Instant,
    last_shown: Option<Instant>,
}

thread_local! {
    /// Set by `without_progress` for the readings of this thread.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read` with no progress line: for a reading beside another that
/// shows the run's progress (`replay` reads a big connection again while
/// its first reading goes on), so two never draw on one line.
pub fn without_progress<T>(read: impl FnOnce() -> T) -> T {
    QUIET.with(|quiet| quiet.set(true));
    let result = read();
    QUIET.with(|quiet| quiet.set(false));
    result
}

impl Progress {
    fn new(inputs: &[Input]) -> Option<Progress> {
        if QUIET.with(|quiet| quiet.get())
            || !io::stderr().is_terminal()
            || io::stdout().is_terminal()
            || inputs
                .iter()
                .any(|i| matches!(i, Input::Stdin | Input::Bytes(_)))
            || !crate::sys::enable_terminal_escapes()
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
            started: Instant::now(),
            last_shown: None,
        })
    }

    /// Shows `read` bytes of the total read, at most five times a second.
    fn show(&mut self, read: u64) {
        let now = Instant::now();
        if now.duration_since(self.started) < Duration::from_secs(1)
            || self
                .last_shown
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(200))
        {
            return;
        }
        self.last_shown = Some(now);
        let percent = read * 100 / self.total.max(1);
        let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
        let _ = write!(
            io::stderr(),
            "\r\x1b[Kread {:.0} of {:.0} MiB ({percent}%)",
            mib(read),
            mib(self.total)
        );
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
    use crate::read::input::expand;

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
        skipped.note_at("logs/\x1b[2J.ndjson".into(), 0, "cannot open".into());
        assert_eq!(
            skipped.message().unwrap(),
            "Skipped 2 unreadable lines and 1 file; the first is logs/a.ndjson line 7: not JSON"
        );
        let mut files = Skipped::default();
        files.note_at("logs/\x1b[2J.ndjson".into(), 0, "cannot open".into());
        assert_eq!(
            files.message().unwrap(),
            "Skipped 1 file; the first is logs/\\x1b[2J.ndjson: cannot open",
            "a name is shown, never obeyed"
        );
    }

    #[test]
    fn a_file_gone_since_it_was_listed_is_skipped_and_counted() {
        // SPEC §9: an archiver may move a file between the listing and the
        // reading; only a file named on the command line is an error.
        let gone = std::env::temp_dir().join(format!("rawprox-gone-{}.ndjson", std::process::id()));
        let found = Input::File {
            path: gone.clone(),
            len: Some(10),
            found: true,
            group: 0,
        };
        let mut lines = 0;
        let skipped = read_lines(&[found, Input::Bytes(b"x\n".to_vec())], |_, piece, _| {
            lines += matches!(piece, Piece::Line(_)) as usize;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            (skipped.count, lines),
            (1, 1),
            "skipped, and the next input read"
        );
        let (name, line, why) = skipped.first.unwrap();
        assert_eq!((name, line), (gone.display().to_string(), 0));
        assert!(why.starts_with("cannot open"), "{why}");
        let named = Input::File {
            path: gone,
            len: Some(10),
            found: false,
            group: 0,
        };
        let err = read_lines(&[named], |_, _, _| ControlFlow::Continue(())).unwrap_err();
        assert!(
            matches!(&err, Error::Message(m) if m.starts_with("cannot open")),
            "{err}"
        );
    }

    #[test]
    fn several_inputs_are_merged_by_time() {
        let dir = std::env::temp_dir().join(format!("rawprox-read-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        let line = |s: u32| format!("{{\"time\":\"2025-10-22T15:32:{s:02}.000000Z\",\"n\":{s}}}\n");
        // A directory of two files (read in turn) and a file beside it.
        std::fs::write(dir.join("d/a.ndjson"), line(1) + &line(4)).unwrap();
        std::fs::write(dir.join("d/b.ndjson"), line(5) + "no time\n" + &line(9)).unwrap();
        std::fs::write(dir.join("c.ndjson"), line(2) + &line(6) + &line(7)).unwrap();
        let args = [dir.join("d"), dir.join("c.ndjson")].map(|p| p.to_str().unwrap().to_string());
        let inputs = expand(&args).unwrap();
        let mut seen = Vec::new();
        read_lines(&inputs, |place, piece, _| {
            if let Piece::Line(line) = piece {
                let text = String::from_utf8_lossy(line);
                let n = text
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .trim_end_matches('}')
                    .to_string();
                seen.push(format!("{n}@{}", place.line));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            seen,
            ["1@1", "2@1", "4@2", "5@1", "no time@2", "6@2", "7@3", "9@3"]
        );
    }
}
