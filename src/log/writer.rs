//! The writer thread (SPEC §5): owns every destination, takes full arenas
//! from the loop, writes them out, and hands the emptied chunks back for
//! reuse, early when it can. Each destination gets the traffic lines logged
//! while it was active plus its own control lines; stdout also carries the
//! control events meant for the controller. For a directory: open–append–
//! close once per file per flush, the file chosen by each line's own time;
//! the bytes go out through `WriteThrough`, past the page cache. Failures go
//! back to the loop over a channel plus the loop's `Waker`.

use super::arena::{Arena, Route, Run};
use super::chunk::paged_chunk;
use super::destination::{DestKey, Destination};
use super::timefmt::FilenameFormat;
use crate::sys::WriteThrough;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

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
    /// An arena is written; its chunks come back for reuse (those given
    /// back early as empty placeholders).
    Written(Vec<Vec<u8>>),
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
                            FromWriter::Written(arena.into_chunks())
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
        let single = self.list.iter().filter(|o| !o.pieces.is_empty()).count() == 1;
        let mut early = EarlyReturn {
            reports,
            wake,
            given_back: 0,
        };
        let mut stdout_closed = false;
        self.list.retain_mut(|output| {
            let result = output.write_pieces(arena, single.then_some(&mut early));
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

    /// Writes this flush's pieces. After each, `early` (if any) learns the
    /// lowest chunk that the pieces still to write read.
    fn write_pieces(
        &mut self,
        arena: &mut Arena,
        mut early: Option<&mut EarlyReturn>,
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
        // still_needed[j]: the lowest chunk that order[j..] reads (None past
        // the last piece: the rest go back with the arena).
        let mut still_needed: Vec<Option<usize>> = vec![None; order.len() + 1];
        for j in (0..order.len()).rev() {
            let chunk = order[j].chunk;
            still_needed[j] = Some(still_needed[j + 1].map_or(chunk, |c| c.min(chunk)));
        }
        let mut written = 0;
        for (name, list) in &files {
            let todo = &order[written..written + list.len()];
            let needed = &still_needed[written + 1..];
            match destination {
                Destination::Stdout => write_file(
                    &mut io::stdout().lock(),
                    arena,
                    todo,
                    needed,
                    early.as_deref_mut(),
                )?,
                Destination::Directory { dir, .. } => {
                    let mut file = open_append(&Path::new(dir).join(name))?;
                    write_file(&mut file, arena, todo, needed, early.as_deref_mut())?
                }
            }
            written += list.len();
        }
        Ok(())
    }
}

/// Writes `pieces` to `out`, telling `early` after piece `j` that the rest
/// read no chunk below `still_needed[j]`.
fn write_file<W: Write + AsFd>(
    out: &mut W,
    arena: &mut Arena,
    pieces: &[&Piece],
    still_needed: &[Option<usize>],
    mut early: Option<&mut EarlyReturn>,
) -> io::Result<()> {
    let mut through = WriteThrough::new(out);
    for (piece, &needed) in pieces.iter().zip(still_needed) {
        through.write(out, &arena.chunk(piece.chunk)[piece.range.clone()])?;
        if let (Some(early), Some(needed)) = (early.as_deref_mut(), needed) {
            early.done_below(arena, needed);
        }
    }
    out.flush()?;
    through.finish();
    Ok(())
}

/// Gives chunks back to the loop while their arena is still being written
/// (a chunk's life, step 4, in `chunk`): a few at a time, so the loop fills
/// them again while they are paged in, instead of fresh memory.
struct EarlyReturn<'a> {
    reports: &'a Sender<FromWriter>,
    wake: &'a dyn Fn(),
    /// The chunks below this one went back already.
    given_back: usize,
}

impl EarlyReturn<'_> {
    /// Nothing left to write reads a chunk below `needed_from`.
    fn done_below(&mut self, arena: &mut Arena, needed_from: usize) {
        if needed_from >= self.given_back + GIVE_BACK_CHUNKS {
            let chunks = arena.take_chunks(self.given_back..needed_from);
            let _ = self.reports.send(FromWriter::Chunks(chunks));
            (self.wake)();
            self.given_back = needed_from;
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
    use crate::log::chunk::{CHUNK_BYTES, ChunkPool};
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
            Ok(FromWriter::Written(_)) => {}
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
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.push(0, b"before\n", pool);
        arena.add_destination(Destination::Directory {
            dir: shown.clone(),
            format,
        });
        arena.push(1_000_000, b"one-a\n", pool);
        arena.push(2_000_000, b"two\n", pool);
        arena.push(1_000_001, b"one-b\n", pool);
        writer.send(arena);
        written(&writer);
        let mut again = Arena::default();
        again.push(1_000_000, b"one-c\n", pool);
        let own = Route::Control {
            console: false,
            dest: Some(DestKey::Dir(shown.clone())),
        };
        again
            .line(1_000_000, own, 64, pool)
            .extend_from_slice(b"own\n");
        again.remove_destination(DestKey::Dir(shown));
        again.push(1_000_000, b"after\n", pool);
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
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.add_destination(Destination::Directory { dir: shown, format });
        // A line per chunk: 20 in second 1, 20 in second 2, then one more in
        // second 1, which its file (written first) takes last.
        let seconds: Vec<u64> = [1; 20].into_iter().chain([2; 20]).chain([1]).collect();
        for (i, secs) in seconds.iter().enumerate() {
            let line = format!("{i}\n");
            arena
                .line(secs * 1_000_000, Route::Traffic, CHUNK_BYTES, pool)
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
        let mut back = ChunkPool::default();
        back.give_back(rest);
        assert!(early > 0, "no chunk came back before the whole arena");
        assert_eq!(
            early * CHUNK_BYTES + back.capacity(),
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
        let pool = &mut ChunkPool::default();
        let mut arena = Arena::default();
        arena.add_destination(Destination::Directory {
            dir: shown.clone(),
            format,
        });
        arena.push(0, b"x\n", pool);
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
