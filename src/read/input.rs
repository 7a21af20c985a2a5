//! Where log lines come from (SPEC §9): files, directories (their `*.ndjson`
//! files in name order) and standard input, read as a stream of lines in a
//! buffer of fixed size, so memory never follows the size of a log. Also
//! the count of skipped lines and files, and the progress line on a terminal.
//!
//! Only regular files are read, each once (by identity: a link to a file
//! already listed adds nothing, and a file is read at its own name rather
//! than a link's), each up to the size it had when it was listed; a
//! directory is never entered twice, so a link cycle ends. For the MCP
//! tools, no link leads out of the run's directories (`expand_within`).

use super::Error;
use super::show::visible;
use crate::format::decode::bad::{Bad, MAX_LINE_BYTES};
use crate::format::fields;
use crate::format::time::TIME_LEN;
use crate::sys::{self, FileId};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a directory is skipped when none of its files is a log.
pub const NO_LOGS: &str = "holds no .ndjson file";

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
        /// The INPUT argument it came from (see `read_lines`).
        group: usize,
    },
    /// Something in a directory that is not read, and why: counted as
    /// skipped when its turn comes.
    Unread {
        path: PathBuf,
        why: String,
        group: usize,
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
            group: 0,
        }
    }

    /// The INPUT argument a file came from; `None` for the others.
    fn group(&self) -> Option<usize> {
        match self {
            Input::File { group, .. } | Input::Unread { group, .. } => Some(*group),
            Input::Stdin | Input::Bytes(_) => None,
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
    expand_in(args, None)
}

/// The log files of the directories `dirs`, as `expand` finds them, but
/// only those really inside one of them: a link that leads elsewhere is
/// not followed (SPEC §9: the MCP tools read this run's directories, so a
/// link planted there cannot make them read any other file).
pub fn expand_within(dirs: &[String]) -> Result<Vec<Input>, Error> {
    let roots: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| fs::canonicalize(d).ok())
        .collect();
    expand_in(dirs, Some(&roots))
}

fn expand_in(args: &[String], within: Option<&[PathBuf]>) -> Result<Vec<Input>, Error> {
    if args.is_empty() {
        return Ok(vec![Input::Stdin]);
    }
    let mut inputs = Vec::new();
    let mut seen = Seen::default();
    for (group, arg) in args.iter().enumerate() {
        if arg == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        let meta =
            fs::metadata(path).map_err(|e| Error::Message(format!("cannot open {arg}: {e}")))?;
        if meta.is_dir() {
            let before = inputs.len();
            let mut walk = Walk {
                seen: &mut seen,
                found: Vec::new(),
                links: Vec::new(),
                others: 0,
                within,
            };
            walk.enter(path, &meta, false)
                .map_err(|e| Error::Message(format!("cannot read directory {arg}: {e}")))?;
            walk.follow_links();
            let (mut found, others) = (walk.found, walk.others);
            found.sort_by(|a, b| a.path().cmp(b.path()));
            // A file reached both by its own name and through a link is read
            // at its own name, where name order is time order
            // (`latest.ndjson -> rawprox_….ndjson`).
            let direct: HashSet<FileId> = found
                .iter()
                .filter_map(|f| match f {
                    Found::Log(path, meta, false) => sys::file_id(path, meta),
                    _ => None,
                })
                .collect();
            for found in found {
                match found {
                    Found::Unread(path, why) => inputs.push(Input::Unread { path, why, group }),
                    Found::Log(path, meta, link) => match sys::file_id(&path, &meta) {
                        Some(id) if link && direct.contains(&id) => {}
                        Some(id) if seen.files.contains(&id) => {} // read once already
                        id => {
                            seen.files.extend(id);
                            inputs.push(Input::File {
                                path,
                                len: Some(meta.len()),
                                found: true,
                                group,
                            });
                        }
                    },
                }
            }
            if inputs.len() == before && others > 0 {
                inputs.push(Input::Unread {
                    path: path.to_path_buf(),
                    why: format!("{NO_LOGS} ({others} other files): only *.ndjson files are read"),
                    group,
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
            group,
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

/// The files and directories already listed; each directory with the
/// path it was first entered by.
#[derive(Default)]
struct Seen {
    files: HashSet<FileId>,
    dirs: HashMap<FileId, PathBuf>,
}

/// One directory argument's walk: the `*.ndjson` regular files under it,
/// at any depth. Links are followed after every real directory has been
/// entered, so a directory is listed by its own name where it has one, and
/// none is entered twice: a link cycle ends.
struct Walk<'a> {
    seen: &'a mut Seen,
    found: Vec<Found>,
    /// Links met and not followed yet.
    links: Vec<PathBuf>,
    /// Files that are not logs.
    others: usize,
    /// When set, links leading outside these (canonical) directories are
    /// not followed.
    within: Option<&'a [PathBuf]>,
}

impl Walk<'_> {
    /// Lists the entries of `dir` (reached through a link when `link`),
    /// unless it was entered already: its subdirectories are entered in
    /// turn, its links kept for `follow_links`, other files counted in
    /// `others`.
    fn enter(&mut self, dir: &Path, meta: &fs::Metadata, link: bool) -> io::Result<()> {
        if let Some(id) = sys::file_id(dir, meta) {
            if self.seen.dirs.contains_key(&id) {
                return Ok(());
            }
            self.seen.dirs.insert(id, dir.to_path_buf());
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // A type that cannot be known is taken for a link: checked.
            let is_link = entry.file_type().map_or(true, |t| t.is_symlink());
            entries.push((entry.path(), is_link));
        }
        for (path, is_link) in entries {
            if is_link {
                self.links.push(path);
                continue;
            }
            match fs::metadata(&path) {
                // A subdirectory that cannot be read is skipped, not fatal.
                Ok(meta) if meta.is_dir() => {
                    if let Err(e) = self.enter(&path, &meta, link) {
                        let why = format!("cannot read directory: {e}");
                        self.found.push(Found::Unread(path, why));
                    }
                }
                Ok(meta) => self.file(path, meta, link),
                Err(e) if is_log(&path) => {
                    self.found
                        .push(Found::Unread(path, format!("cannot open: {e}")));
                }
                Err(_) => self.others += 1,
            }
        }
        Ok(())
    }

    /// A `*.ndjson` regular file is a log; one that is not regular is
    /// listed as not read; any other file is counted.
    fn file(&mut self, path: PathBuf, meta: fs::Metadata, link: bool) {
        if !is_log(&path) {
            self.others += 1;
        } else if meta.is_file() {
            self.found.push(Found::Log(path, meta, link));
        } else {
            let why = "not a regular file: not read".to_string();
            self.found.push(Found::Unread(path, why));
        }
    }

    /// Follows the links met, and those met behind them: one leading
    /// nowhere, outside `within`, or back to a directory it is in, is
    /// listed as not read (a link to a directory already entered by another
    /// name adds nothing).
    fn follow_links(&mut self) {
        while let Some(path) = self.links.pop() {
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if is_log(&path) => {
                    let why = format!("cannot open: {e}");
                    self.found.push(Found::Unread(path, why));
                    continue;
                }
                Err(_) => {
                    self.others += 1;
                    continue;
                }
            };
            if !self.inside(&path) {
                if is_log(&path) || meta.is_dir() {
                    let why = "a link that leads outside the directory: not read".to_string();
                    self.found.push(Found::Unread(path, why));
                } else {
                    self.others += 1;
                }
                continue;
            }
            if !meta.is_dir() {
                self.file(path, meta, true);
                continue;
            }
            let entered = sys::file_id(&path, &meta).and_then(|id| self.seen.dirs.get(&id));
            if let Some(first) = entered {
                if let (Ok(from), Ok(to)) = (
                    fs::canonicalize(path.parent().unwrap_or(&path)),
                    fs::canonicalize(&path),
                ) && from.starts_with(&to)
                {
                    let why = format!(
                        "a link back to {} (a directory cycle): not entered",
                        first.display()
                    );
                    self.found.push(Found::Unread(path, why));
                }
                continue;
            }
            if let Err(e) = self.enter(&path, &meta, true) {
                let why = format!("cannot read directory: {e}");
                self.found.push(Found::Unread(path, why));
            }
        }
    }

    /// True when `path`, links resolved, lies in one of the `within`
    /// directories (always, without them).
    fn inside(&self, path: &Path) -> bool {
        let Some(roots) = self.within else {
            return true;
        };
        fs::canonicalize(path).is_ok_and(|real| roots.iter().any(|r| real.starts_with(r)))
    }
}

fn is_log(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "ndjson")
}

/// What a directory walk finds: a log file to read (reached through a
/// link, or not), or a path not read.
enum Found {
    Log(PathBuf, fs::Metadata, bool),
    Unread(PathBuf, String),
}

impl Found {
    fn path(&self) -> &Path {
        match self {
            Found::Log(path, ..) | Found::Unread(path, _) => path,
        }
    }
}

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

    #[cfg(unix)]
    #[test]
    fn within_a_directory_no_link_leads_out_of_it() {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("rawprox-within-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (dir, outside) = (base.join("run"), base.join("elsewhere"));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(dir.join("a.ndjson"), b"").unwrap();
        fs::write(dir.join("sub/b.ndjson"), b"").unwrap();
        fs::write(outside.join("secret.ndjson"), b"").unwrap();
        symlink(outside.join("secret.ndjson"), dir.join("zzz.ndjson")).unwrap();
        symlink(&outside, dir.join("out")).unwrap();
        symlink("a.ndjson", dir.join("latest.ndjson")).unwrap();
        symlink("sub", dir.join("inner")).unwrap();
        let arg = [dir.to_str().unwrap().to_string()];
        let described = |inputs: Vec<Input>| -> Vec<String> {
            inputs
                .iter()
                .map(|i| {
                    let name = i.name()[arg[0].len() + 1..].to_string();
                    match i {
                        Input::Unread { .. } => format!("unread {name}"),
                        _ => name,
                    }
                })
                .collect()
        };
        assert_eq!(
            described(expand_within(&arg).unwrap()),
            [
                "a.ndjson",
                "unread out",
                "sub/b.ndjson",
                "unread zzz.ndjson"
            ],
            "each file once, none outside"
        );
        // The command line reads where the user's links lead.
        assert_eq!(
            described(expand(&arg).unwrap()),
            ["a.ndjson", "out/secret.ndjson", "sub/b.ndjson"]
        );
        fs::remove_dir_all(&base).unwrap();
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
