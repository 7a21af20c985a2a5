//! The writer thread (SPEC §5): owns every destination, takes full arenas
//! from the loop, writes them out, and hands the emptied arena back for
//! reuse. Each destination gets the traffic lines logged while it was active
//! plus its own control lines; stdout also carries the control events meant
//! for the controller. For a directory: open–append–close once per file per
//! flush, one write per file, the file chosen by each line's own time.
//! Failures go back to the loop over a channel plus the loop's `Waker`.

use crate::arena::{Arena, Route, Run};
use crate::timefmt::FilenameFormat;
use std::borrow::Cow;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Directory { dir: String, format: FilenameFormat },
}

/// Names a destination: stdout, or a directory as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestKey {
    Stdout,
    Dir(String),
}

impl Destination {
    pub fn key(&self) -> DestKey {
        match self {
            Destination::Stdout => DestKey::Stdout,
            Destination::Directory { dir, .. } => DestKey::Dir(dir.clone()),
        }
    }
}

impl DestKey {
    /// How the destination is named in messages.
    pub fn describe(&self) -> String {
        match self {
            DestKey::Stdout => "stdout".into(),
            DestKey::Dir(dir) => format!("log directory '{dir}'"),
        }
    }
}

/// What the writer tells the loop.
pub enum FromWriter {
    /// An arena is written; it comes back empty for reuse.
    Written(Arena),
    /// A destination failed and was dropped; the others go on.
    Failed {
        destination: DestKey,
        error: io::Error,
    },
    /// stdout was closed by its reader (EPIPE): not an error (SPEC §5).
    StdoutClosed,
}

/// The loop's handle on the writer thread.
pub struct Writer {
    to_writer: Option<Sender<Arena>>,
    pub reports: Receiver<FromWriter>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread with no destination; the arenas add them. `wake`
    /// is called after each report.
    pub fn spawn(wake: Arc<dyn Fn() + Send + Sync>) -> io::Result<Self> {
        let (to_writer, inbox) = mpsc::channel::<Arena>();
        let (outbox, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("rawprox-writer".into())
            .spawn(move || {
                let mut outputs = Outputs::default();
                for mut arena in inbox {
                    outputs.write(&arena, &outbox);
                    arena.clear();
                    let _ = outbox.send(FromWriter::Written(arena));
                    wake();
                }
            })?;
        Ok(Writer {
            to_writer: Some(to_writer),
            reports,
            thread: Some(thread),
        })
    }

    /// Hands an arena over; it comes back in a `Written` report.
    pub fn send(&self, arena: Arena) {
        if let Some(tx) = &self.to_writer {
            // A send fails only if the thread is gone, and then there is
            // nowhere left to write.
            let _ = tx.send(arena);
        }
    }

    /// Lets the thread finish what it was given, and waits for it.
    pub fn finish(&mut self) {
        self.to_writer = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every destination the writer knows, and stdout as the console.
#[derive(Default)]
struct Outputs {
    list: Vec<Output>,
    /// stdout's reader went away: nothing goes there any more.
    stdout_closed: bool,
}

/// A destination and what the writer keeps for it.
struct Output {
    destination: Destination,
    /// Takes traffic lines (stdout may be here only as the console).
    active: bool,
    /// This flush's pieces: `(second, byte range)`, adjacent ones merged.
    pieces: Vec<(u64, Range<usize>)>,
    names: FileNames,
}

impl Outputs {
    fn find(&mut self, key: &DestKey) -> Option<&mut Output> {
        self.list.iter_mut().find(|o| o.destination.key() == *key)
    }

    /// The output for `destination`, created inactive if new.
    fn get_or_add(&mut self, destination: &Destination) -> &mut Output {
        let key = destination.key();
        match self.list.iter().position(|o| o.destination.key() == key) {
            Some(i) => &mut self.list[i],
            None => {
                self.list.push(Output {
                    destination: destination.clone(),
                    active: false,
                    pieces: Vec::new(),
                    names: FileNames::default(),
                });
                self.list.last_mut().expect("just pushed")
            }
        }
    }

    /// Sorts the arena's runs into each destination's pieces, then writes
    /// each destination once.
    fn write(&mut self, arena: &Arena, reports: &Sender<FromWriter>) {
        for run in arena.runs() {
            match run {
                Run::Add(destination) => self.get_or_add(destination).active = true,
                Run::Remove(key) => {
                    if let Some(output) = self.find(key) {
                        output.active = false;
                    }
                }
                Run::Lines { secs, range, route } => match route {
                    Route::Traffic => {
                        for output in self.list.iter_mut().filter(|o| o.active) {
                            output.push(secs, range.clone());
                        }
                    }
                    Route::Control { console, dest } => {
                        if *console && !self.stdout_closed {
                            self.get_or_add(&Destination::Stdout)
                                .push(secs, range.clone());
                        }
                        if let Some(output) = dest.as_ref().and_then(|key| self.find(key)) {
                            output.push(secs, range.clone());
                        }
                    }
                },
            }
        }
        let bytes = arena.bytes();
        let mut stdout_closed = false;
        self.list.retain_mut(|output| {
            let result = output.write_pieces(bytes);
            output.pieces.clear();
            output.names.rendered.clear();
            match result {
                Ok(()) => output.active || output.destination == Destination::Stdout,
                Err(error) => {
                    let report = if output.destination == Destination::Stdout {
                        stdout_closed = true;
                        if error.kind() == io::ErrorKind::BrokenPipe {
                            FromWriter::StdoutClosed
                        } else {
                            FromWriter::Failed {
                                destination: DestKey::Stdout,
                                error,
                            }
                        }
                    } else {
                        FromWriter::Failed {
                            destination: output.destination.key(),
                            error,
                        }
                    };
                    let _ = reports.send(report);
                    false
                }
            }
        });
        self.stdout_closed |= stdout_closed;
    }
}

impl Output {
    /// Adds a range of lines logged in second `secs`; adjacent ranges merge
    /// (across seconds only for stdout, where no file name depends on them).
    fn push(&mut self, secs: u64, range: Range<usize>) {
        let any_second = self.destination == Destination::Stdout;
        match self.pieces.last_mut() {
            Some((s, last)) if (any_second || *s == secs) && last.end == range.start => {
                last.end = range.end
            }
            _ => self.pieces.push((secs, range)),
        }
    }

    fn write_pieces(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Output {
            destination,
            pieces,
            names,
            ..
        } = self;
        match destination {
            Destination::Stdout => {
                // Each piece is a run of adjacent lines (`push` merged them):
                // written straight from the arena.
                let mut out = io::stdout().lock();
                for (_, range) in pieces.iter() {
                    crate::sys::write_through(&mut out, &bytes[range.clone()])?;
                }
                out.flush()
            }
            Destination::Directory { dir, format } => {
                // Group the ranges by file, keeping first-seen order; adjacent
                // ranges for one file merge, so usually a file is one slice.
                let mut files: Vec<(String, Vec<Range<usize>>)> = Vec::new();
                for (secs, range) in pieces.iter() {
                    let name = names.name(format, *secs);
                    match files.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, ranges)) => match ranges.last_mut() {
                            Some(last) if last.end == range.start => last.end = range.end,
                            _ => ranges.push(range.clone()),
                        },
                        None => files.push((name.to_owned(), vec![range.clone()])),
                    }
                }
                for (name, ranges) in files {
                    append(&Path::new(dir).join(&name), &gather(bytes, &ranges))?;
                }
                Ok(())
            }
        }
    }
}

/// File names by second: each second is rendered once.
#[derive(Default)]
struct FileNames {
    rendered: Vec<(u64, String)>,
}

impl FileNames {
    fn name(&mut self, format: &FilenameFormat, secs: u64) -> &str {
        let i = match self.rendered.iter().position(|(s, _)| *s == secs) {
            Some(i) => i,
            None => {
                self.rendered.push((secs, format.render(secs)));
                self.rendered.len() - 1
            }
        };
        &self.rendered[i].1
    }
}

/// The bytes of `ranges`, borrowed when there is only one.
fn gather<'a>(bytes: &'a [u8], ranges: &[Range<usize>]) -> Cow<'a, [u8]> {
    match ranges {
        [one] => Cow::Borrowed(&bytes[one.clone()]),
        many => {
            let mut joined = Vec::with_capacity(many.iter().map(|r| r.len()).sum());
            for range in many {
                joined.extend_from_slice(&bytes[range.clone()]);
            }
            Cow::Owned(joined)
        }
    }
}

/// Creates a log directory (and its parents) and proves a file can be made
/// in it; checked before logging there starts (SPEC §2, §7).
pub fn prepare_directory(dir: &str) -> Result<(), String> {
    let path = Path::new(dir);
    fs::create_dir_all(path).map_err(|e| format!("cannot create log directory '{dir}': {e}"))?;
    let probe = path.join(format!(".rawprox-probe-{}", std::process::id()));
    fs::File::create(&probe).map_err(|e| format!("cannot write to log directory '{dir}': {e}"))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Open in append mode, one write, close. A missing directory (moved or
/// deleted since) is created again (SPEC §5).
fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let open = || OpenOptions::new().append(true).create(true).open(path);
    let mut file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            open()?
        }
        other => other?,
    };
    crate::sys::drop_cached(&file);
    crate::sys::write_through(&mut file, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Duration;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rawprox-writer-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn written(writer: &Writer) {
        match writer.reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Written(back)) => assert!(back.is_empty()),
            Ok(_) => panic!("unexpected report"),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!("no report"),
        }
    }

    #[test]
    fn lines_go_to_the_file_of_their_second_and_append() {
        let dir = temp_dir("rotate");
        let format = FilenameFormat::parse("%S.log").unwrap();
        let shown = dir.join("sub").to_string_lossy().to_string();
        let mut writer = Writer::spawn(Arc::new(|| {})).unwrap();
        let mut arena = Arena::default();
        arena.line(0).extend_from_slice(b"before\n");
        arena.add_destination(Destination::Directory {
            dir: shown.clone(),
            format,
        });
        arena.line(1_000_000).extend_from_slice(b"one-a\n");
        arena.line(2_000_000).extend_from_slice(b"two\n");
        arena.line(1_000_001).extend_from_slice(b"one-b\n");
        writer.send(arena);
        written(&writer);
        let mut again = Arena::default();
        again.line(1_000_000).extend_from_slice(b"one-c\n");
        let own = Route::Control {
            console: false,
            dest: Some(DestKey::Dir(shown.clone())),
        };
        again.line_for(1_000_000, own).extend_from_slice(b"own\n");
        again.remove_destination(DestKey::Dir(shown));
        again.line(1_000_000).extend_from_slice(b"after\n");
        writer.send(again);
        writer.finish();
        let sub = dir.join("sub");
        assert_eq!(
            fs::read_to_string(sub.join("01.log")).unwrap(),
            "one-a\none-b\none-c\nown\n"
        );
        assert_eq!(fs::read_to_string(sub.join("02.log")).unwrap(), "two\n");
        assert!(!sub.join("00.log").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_directory_is_reported_by_name() {
        let dir = temp_dir("fail");
        fs::create_dir_all(&dir).unwrap();
        let blocker = dir.join("file");
        fs::write(&blocker, b"").unwrap();
        let format = FilenameFormat::parse("x.log").unwrap();
        let shown = blocker.join("sub").to_string_lossy().to_string();
        let mut writer = Writer::spawn(Arc::new(|| {})).unwrap();
        let mut arena = Arena::default();
        arena.add_destination(Destination::Directory {
            dir: shown.clone(),
            format,
        });
        arena.line(0).extend_from_slice(b"x\n");
        writer.send(arena);
        match writer.reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Failed { destination, .. }) => {
                assert_eq!(destination, DestKey::Dir(shown))
            }
            _ => panic!("expected a failure report"),
        }
        written(&writer);
        writer.finish();
        fs::remove_dir_all(&dir).unwrap();
    }
}
