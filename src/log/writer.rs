//! The writer thread (SPEC §5): owns every destination, takes full arenas
//! from the loop, writes them out, and hands the emptied chunks back for
//! reuse, early when it can. Each destination gets the traffic lines logged
//! while it was active plus its own control lines; stdout also carries the
//! control events meant for the controller. For a directory: open–append–
//! close once per file per flush, the file chosen by each line's own time;
//! the bytes go out through `WriteThrough`, past the page cache. Failures go
//! back to the loop over a channel plus the loop's `Waker`.

use crate::log::arena::{Arena, Route, Run, paged_chunk};
use crate::log::timefmt::FilenameFormat;
use crate::sys::WriteThrough;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsFd;
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

/// What the loop asks of the writer.
pub enum ToWriter {
    /// Write an arena; it comes back in a `Written` report.
    Write(Arena),
    /// Page in this many fresh chunks and send them back in a `Paged`
    /// report (see `Writer::page`).
    Page(usize),
}

/// What the writer tells the loop.
pub enum FromWriter {
    /// An arena is written; it comes back empty for reuse.
    Written(Arena),
    /// Chunks of the arena being written that nothing left to write needs:
    /// back early, so the loop fills them instead of fresh memory.
    Chunks(Vec<Vec<u8>>),
    /// Empty chunks whose memory is paged in, as asked by `Writer::page`.
    Paged(Vec<Vec<u8>>),
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
    to_writer: Option<Sender<ToWriter>>,
    pub reports: Receiver<FromWriter>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread with no destination; the arenas add them. `wake`
    /// is called after each report.
    pub fn spawn(wake: Arc<dyn Fn() + Send + Sync>) -> io::Result<Self> {
        let (to_writer, inbox) = mpsc::channel::<ToWriter>();
        let (outbox, reports) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("rawprox-writer".into())
            .spawn(move || {
                let mut outputs = Outputs::default();
                for message in inbox {
                    let report = match message {
                        ToWriter::Write(mut arena) => {
                            outputs.write(&mut arena, &outbox, &*wake);
                            arena.clear();
                            FromWriter::Written(arena)
                        }
                        ToWriter::Page(n) => {
                            FromWriter::Paged((0..n).map(|_| paged_chunk()).collect())
                        }
                    };
                    let _ = outbox.send(report);
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
        self.ask(ToWriter::Write(arena));
    }

    /// Asks for `n` chunks whose memory is paged in, in a `Paged` report.
    /// The first touch of a page costs far more than later ones (the kernel
    /// zeroes it, and a VM's host may have to supply it); the writer pays
    /// that while it has nothing to write, instead of the loop.
    pub fn page(&self, n: usize) {
        self.ask(ToWriter::Page(n));
    }

    fn ask(&self, message: ToWriter) {
        if let Some(tx) = &self.to_writer {
            // A send fails only if the thread is gone, and then there is
            // nowhere left to write.
            let _ = tx.send(message);
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

/// Chunks the writer gives back to the loop at a time, while writing.
const GIVE_BACK_CHUNKS: usize = 8;

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
    fn write(&mut self, arena: &mut Arena, reports: &Sender<FromWriter>, wake: &dyn Fn()) {
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
        // With one destination to write (the usual case), chunks go back as
        // soon as it is past them; with more, the arena comes back whole.
        // (Past the last piece, `needed_from` is usize::MAX: the arena
        // itself goes back then.)
        let single = self.list.iter().filter(|o| !o.pieces.is_empty()).count() == 1;
        let mut given_back = 0;
        let mut give_back = |arena: &mut Arena, needed_from: usize| {
            if single && needed_from != usize::MAX && needed_from >= given_back + GIVE_BACK_CHUNKS {
                let _ = reports.send(FromWriter::Chunks(
                    arena.take_chunks(given_back..needed_from),
                ));
                wake();
                given_back = needed_from;
            }
        };
        let mut stdout_closed = false;
        self.list.retain_mut(|output| {
            let result = output.write_pieces(arena, &mut give_back);
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

    /// Writes this flush's pieces. After each, `give_back` learns the
    /// lowest chunk that the pieces still to write read.
    fn write_pieces(
        &mut self,
        arena: &mut Arena,
        give_back: &mut dyn FnMut(&mut Arena, usize),
    ) -> io::Result<()> {
        let Output {
            destination,
            pieces,
            names,
            ..
        } = self;
        // Stdout takes the pieces as they come; a directory groups them by
        // file, in first-seen order: `(file name, piece indices)`.
        let mut files: Vec<(String, Vec<usize>)> = Vec::new();
        match destination {
            Destination::Stdout if pieces.is_empty() => {}
            Destination::Stdout => files.push((String::new(), (0..pieces.len()).collect())),
            Destination::Directory { format, .. } => {
                for (i, piece) in pieces.iter().enumerate() {
                    let name = names.name(format, piece.secs);
                    match files.iter_mut().find(|(n, _)| n == name) {
                        Some((_, list)) => list.push(i),
                        None => files.push((name.to_owned(), vec![i])),
                    }
                }
            }
        }
        let order: Vec<&Piece> = files
            .iter()
            .flat_map(|(_, list)| list.iter().map(|&i| &pieces[i]))
            .collect();
        // still_needed[j]: the lowest chunk that order[j..] reads.
        let mut still_needed = vec![usize::MAX; order.len() + 1];
        for j in (0..order.len()).rev() {
            still_needed[j] = still_needed[j + 1].min(order[j].chunk);
        }
        let mut written = 0;
        for (name, list) in &files {
            let todo = &order[written..written + list.len()];
            let needed = &still_needed[written + 1..];
            match destination {
                Destination::Stdout => {
                    write_file(&mut io::stdout().lock(), arena, todo, needed, give_back)?
                }
                Destination::Directory { dir, .. } => {
                    let mut file = open_append(&Path::new(dir).join(name))?;
                    write_file(&mut file, arena, todo, needed, give_back)?
                }
            }
            written += list.len();
        }
        Ok(())
    }
}

/// Writes `pieces` to `out`, telling `give_back` after piece `j` that the
/// rest read no chunk below `still_needed[j]`.
fn write_file<W: Write + AsFd>(
    out: &mut W,
    arena: &mut Arena,
    pieces: &[&Piece],
    still_needed: &[usize],
    give_back: &mut dyn FnMut(&mut Arena, usize),
) -> io::Result<()> {
    let mut through = WriteThrough::new(out);
    for (piece, &needed) in pieces.iter().zip(still_needed) {
        through.write(out, &arena.chunk(piece.chunk)[piece.range.clone()])?;
        give_back(arena, needed);
    }
    out.flush()?;
    through.finish();
    Ok(())
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

/// Opens a log file in append mode. A missing directory (moved or deleted
/// since) is created again (SPEC §5).
fn open_append(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().append(true).create(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            open()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::arena::CHUNK_BYTES;
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
    fn paged_chunks_come_back_empty_with_a_whole_chunk_of_room() {
        let mut writer = Writer::spawn(Arc::new(|| {})).unwrap();
        writer.page(3);
        match writer.reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Paged(chunks)) => {
                assert_eq!(chunks.len(), 3);
                assert!(
                    chunks
                        .iter()
                        .all(|c| c.is_empty() && c.capacity() >= CHUNK_BYTES)
                );
            }
            Ok(_) => panic!("unexpected report"),
            Err(_) => panic!("no report"),
        }
        writer.finish();
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
    fn chunks_come_back_as_soon_as_the_rest_no_longer_reads_them() {
        let dir = temp_dir("give-back");
        let format = FilenameFormat::parse("%S.log").unwrap();
        let shown = dir.to_string_lossy().to_string();
        let mut writer = Writer::spawn(Arc::new(|| {})).unwrap();
        let mut arena = Arena::default();
        arena.add_destination(Destination::Directory { dir: shown, format });
        // A line per chunk: 20 in second 1, 20 in second 2, then one more in
        // second 1, which its file (written first) takes last.
        let seconds: Vec<u64> = [1; 20].into_iter().chain([2; 20]).chain([1]).collect();
        for (i, secs) in seconds.iter().enumerate() {
            let line = format!("{i}\n");
            arena
                .line(secs * 1_000_000, CHUNK_BYTES)
                .extend_from_slice(line.as_bytes());
        }
        writer.send(arena);
        let mut early = 0;
        let rest = loop {
            match writer.reports.recv_timeout(Duration::from_secs(10)) {
                Ok(FromWriter::Chunks(chunks)) => {
                    assert!(chunks.iter().all(|c| c.capacity() >= CHUNK_BYTES));
                    early += chunks.len();
                }
                Ok(FromWriter::Written(back)) => break back,
                Ok(_) => panic!("unexpected report"),
                Err(_) => panic!("no report"),
            }
        };
        writer.finish();
        let mut back = Arena::default();
        back.recycle(rest);
        assert!(early > 0, "no chunk came back before the whole arena");
        assert_eq!(
            early * CHUNK_BYTES + back.spare_capacity(),
            seconds.len() * CHUNK_BYTES
        );
        let lines = |secs: u64| -> String {
            let mine = seconds.iter().enumerate().filter(|(_, s)| **s == secs);
            mine.map(|(i, _)| format!("{i}\n")).collect()
        };
        assert_eq!(fs::read_to_string(dir.join("01.log")).unwrap(), lines(1));
        assert_eq!(fs::read_to_string(dir.join("02.log")).unwrap(), lines(2));
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
