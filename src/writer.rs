//! The writer thread (SPEC §5): owns every destination, takes full arenas
//! from the loop, writes them out, and hands the emptied arena back for
//! reuse. For a directory: open–append–close once per file per flush, one
//! write per file, the file chosen by each line's own time. Failures go back
//! to the loop over a channel plus the loop's `Waker`; the loop decides.

use crate::arena::Arena;
use crate::timefmt::FilenameFormat;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

/// Where log lines go.
#[derive(Debug, Clone)]
pub enum Destination {
    Stdout,
    Directory { dir: String, format: FilenameFormat },
}

impl Destination {
    /// How the destination is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Destination::Stdout => "stdout".into(),
            Destination::Directory { dir, .. } => format!("log directory '{dir}'"),
        }
    }
}

/// What the loop sends the writer.
pub enum ToWriter {
    /// Write these lines to every live destination.
    Write(Arena),
}

/// What the writer tells the loop.
pub enum FromWriter {
    /// A `Write` is done; the arena comes back empty for reuse.
    Written(Arena),
    /// A destination failed and was dropped; the others go on.
    Failed {
        destination: String,
        error: io::Error,
    },
    /// stdout was closed by its reader (EPIPE): not an error (SPEC §5).
    StdoutClosed,
}

/// The loop's handle on the writer thread.
pub struct Writer {
    to_writer: Option<Sender<ToWriter>>,
    pub reports: Receiver<FromWriter>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread; `wake` is called after each report.
    pub fn spawn(
        destinations: Vec<Destination>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> io::Result<Self> {
        let (to_writer, inbox) = mpsc::channel::<ToWriter>();
        let (outbox, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("rawprox-writer".into())
            .spawn(move || {
                let mut outputs: Vec<Output> = destinations.into_iter().map(Output::new).collect();
                for message in inbox {
                    let ToWriter::Write(mut arena) = message;
                    outputs.retain_mut(|output| match output.write(&arena) {
                        Ok(()) => true,
                        Err(error) => {
                            let report = if matches!(output.destination, Destination::Stdout)
                                && error.kind() == io::ErrorKind::BrokenPipe
                            {
                                FromWriter::StdoutClosed
                            } else {
                                FromWriter::Failed {
                                    destination: output.destination.describe(),
                                    error,
                                }
                            };
                            let _ = outbox.send(report);
                            false
                        }
                    });
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
            // nowhere left to write: the loop learns it from the reports.
            let _ = tx.send(ToWriter::Write(arena));
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

/// A destination and what the writer keeps for it between flushes.
struct Output {
    destination: Destination,
    /// The last second rendered and its file name: one render per second.
    name_cache: Option<(u64, String)>,
}

impl Output {
    fn new(destination: Destination) -> Self {
        Output {
            destination,
            name_cache: None,
        }
    }

    fn write(&mut self, arena: &Arena) -> io::Result<()> {
        if arena.is_empty() {
            return Ok(());
        }
        let (dir, format) = match &self.destination {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(arena.bytes())?;
                return out.flush();
            }
            Destination::Directory { dir, format } => {
                (Path::new(dir).to_path_buf(), format.clone())
            }
        };
        // Group the arena's byte ranges by file, keeping first-seen order;
        // adjacent ranges for one file merge, so usually one write is one slice.
        let mut files: Vec<(String, Vec<Range<usize>>)> = Vec::new();
        for (secs, range) in arena.seconds() {
            let name = self.file_name(&format, secs);
            match files.iter_mut().find(|(n, _)| n == name) {
                Some((_, ranges)) => match ranges.last_mut() {
                    Some(last) if last.end == range.start => last.end = range.end,
                    _ => ranges.push(range),
                },
                None => files.push((name.to_owned(), vec![range])),
            }
        }
        let bytes = arena.bytes();
        for (name, ranges) in files {
            let path = dir.join(&name);
            if let [one] = ranges.as_slice() {
                append(&path, &bytes[one.clone()])?;
            } else {
                let joined: Vec<u8> = ranges
                    .into_iter()
                    .flat_map(|r| bytes[r].iter().copied())
                    .collect();
                append(&path, &joined)?;
            }
        }
        Ok(())
    }

    fn file_name(&mut self, format: &FilenameFormat, secs: u64) -> &str {
        if self.name_cache.as_ref().is_none_or(|(s, _)| *s != secs) {
            self.name_cache = Some((secs, format.render(secs)));
        }
        &self.name_cache.as_ref().expect("just filled").1
    }
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
    file.write_all(bytes)
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

    #[test]
    fn lines_go_to_the_file_of_their_second_and_append() {
        let dir = temp_dir("rotate");
        let format = FilenameFormat::parse("%S.log").unwrap();
        let destination = Destination::Directory {
            dir: dir.join("sub").to_string_lossy().into(),
            format,
        };
        let mut writer = Writer::spawn(vec![destination], Arc::new(|| {})).unwrap();
        let mut arena = Arena::default();
        arena.line(1_000_000).extend_from_slice(b"one-a\n");
        arena.line(2_000_000).extend_from_slice(b"two\n");
        arena.line(1_000_001).extend_from_slice(b"one-b\n");
        writer.send(arena);
        match writer.reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Written(back)) => assert!(back.is_empty()),
            Ok(_) => panic!("unexpected report"),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!("no report"),
        }
        let mut again = Arena::default();
        again.line(1_000_000).extend_from_slice(b"one-c\n");
        writer.send(again);
        writer.finish();
        let sub = dir.join("sub");
        assert_eq!(
            fs::read_to_string(sub.join("01.log")).unwrap(),
            "one-a\none-b\none-c\n"
        );
        assert_eq!(fs::read_to_string(sub.join("02.log")).unwrap(), "two\n");
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
        let destination = Destination::Directory {
            dir: shown.clone(),
            format,
        };
        let mut writer = Writer::spawn(vec![destination], Arc::new(|| {})).unwrap();
        let mut arena = Arena::default();
        arena.line(0).extend_from_slice(b"x\n");
        writer.send(arena);
        match writer.reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Failed { destination, .. }) => assert!(destination.contains(&shown)),
            _ => panic!("expected a failure report"),
        }
        writer.finish();
        fs::remove_dir_all(&dir).unwrap();
    }
}
