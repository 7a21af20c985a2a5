//! The writer thread (SPEC §5): owns every destination, takes full arenas
//! from the loop, writes them out, and hands the emptied arena back for
//! reuse. Each destination gets the traffic lines logged while it was active
//! plus its own control lines; stdout also carries the control events meant
//! for the controller. For a directory: open–append–close once per file per
//! flush, one write per file, the file chosen by each line's own time.
//! Failures go back to the loop over a channel plus the loop's `Waker`.

use crate::arena::{Arena, Route, Run};
use crate::sys::WriteThrough;
use crate::timefmt::FilenameFormat;
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

/// Lines logged in second `secs`: `range` of arena chunk `chunk`.
struct Piece {
    secs: u64,
    chunk: usize,
    range: Range<usize>,
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
    /// This flush's pieces, adjacent ones merged.
    pieces: Vec<Piece>,
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
                Run::Lines {
                    secs,
                    chunk,
                    range,
                    route,
                } => {
                    let piece = || Piece {
                        secs,
                        chunk,
                        range: range.clone(),
                    };
                    match route {
                        Route::Traffic => {
                            for output in self.list.iter_mut().filter(|o| o.active) {
                                output.push(piece());
                            }
                        }
                        Route::Control { console, dest } => {
                            if *console && !self.stdout_closed {
                                self.get_or_add(&Destination::Stdout).push(piece());
                            }
                            if let Some(output) = dest.as_ref().and_then(|key| self.find(key)) {
                                output.push(piece());
                            }
                        }
                    }
                }
            }
        }
        let mut stdout_closed = false;
        self.list.retain_mut(|output| {
            let result = output.write_pieces(arena);
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
    /// Adds a piece of lines; adjacent pieces merge (across seconds only for
    /// stdout, where no file name depends on them).
    fn push(&mut self, piece: Piece) {
        let any_second = self.destination == Destination::Stdout;
        match self.pieces.last_mut() {
            Some(last)
                if (any_second || last.secs == piece.secs)
                    && last.chunk == piece.chunk
                    && last.range.end == piece.range.start =>
            {
                last.range.end = piece.range.end
            }
            _ => self.pieces.push(piece),
        }
    }

    fn write_pieces(&mut self, arena: &Arena) -> io::Result<()> {
        let Output {
            destination,
            pieces,
            names,
            ..
        } = self;
        let bytes = |p: &Piece| &arena.chunk(p.chunk)[p.range.clone()];
        match destination {
            Destination::Stdout => {
                // Written straight from the arena, piece by piece.
                let mut out = io::stdout().lock();
                let mut through = WriteThrough::new(&out);
                for piece in pieces.iter() {
                    through.write(&mut out, bytes(piece))?;
                }
                out.flush()?;
                through.finish();
                Ok(())
            }
            Destination::Directory { dir, format } => {
                // Group the pieces by file, keeping first-seen order.
                let mut files: Vec<(String, Vec<&Piece>)> = Vec::new();
                for piece in pieces.iter() {
                    let name = names.name(format, piece.secs);
                    match files.iter_mut().find(|(n, _)| n == name) {
                        Some((_, list)) => list.push(piece),
                        None => files.push((name.to_owned(), vec![piece])),
                    }
                }
                for (name, list) in files {
                    append(&Path::new(dir).join(name), list.into_iter().map(bytes))?;
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

/// Open in append mode, write the pieces, close. A missing directory (moved
/// or deleted since) is created again (SPEC §5).
fn append<'a>(path: &Path, pieces: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
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
    let mut through = WriteThrough::new(&file);
    for bytes in pieces {
        through.write(&mut file, bytes)?;
    }
    through.finish();
    Ok(())
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
        arena.line(0, 64).extend_from_slice(b"before\n");
        arena.add_destination(Destination::Directory {
            dir: shown.clone(),
            format,
        });
        arena.line(1_000_000, 64).extend_from_slice(b"one-a\n");
        arena.line(2_000_000, 64).extend_from_slice(b"two\n");
        arena.line(1_000_001, 64).extend_from_slice(b"one-b\n");
        writer.send(arena);
        written(&writer);
        let mut again = Arena::default();
        again.line(1_000_000, 64).extend_from_slice(b"one-c\n");
        let own = Route::Control {
            console: false,
            dest: Some(DestKey::Dir(shown.clone())),
        };
        again
            .line_for(1_000_000, own, 64)
            .extend_from_slice(b"own\n");
        again.remove_destination(DestKey::Dir(shown));
        again.line(1_000_000, 64).extend_from_slice(b"after\n");
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
        arena.line(0, 64).extend_from_slice(b"x\n");
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
