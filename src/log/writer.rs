//! One writer thread (SPEC §5): it owns one destination, takes batches of
//! that destination's lines from the loop, writes them out and hands the
//! chunks back for reuse, early when it can. Each destination has a thread
//! of its own (see `writers`), so one that stalls (a stdout reader that
//! stopped reading, a hung file system) holds up only itself; its batches
//! queue up and are written together once it moves again, never sooner
//! than one interval after its previous write started. For a directory:
//! open–append–close once per file per write, the file chosen by each
//! line's own time; the bytes go out through `WriteThrough`, past the page
//! cache. Reports go back to the loop over a channel plus the loop's `Waker`.

use super::chunk::paged_chunk;
use super::destination::{DestKey, Destination};
use super::filename::FilenameFormat;
use crate::sys::{AsOutput, WriteThrough};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A chunk of a flushed arena, shared by the destinations that write it.
/// Only the loop drops these: a writer sends each of its clones back, so the
/// last one to come back gives the loop the chunk itself for reuse.
pub type Chunk = Arc<Vec<u8>>;

/// Lines logged in second `secs`: `range` of `chunk`.
pub struct Piece {
    pub secs: u64,
    pub chunk: Chunk,
    pub range: Range<usize>,
}

/// One flush's lines for one destination.
pub struct Batch {
    /// The flush's number.
    pub seq: u64,
    pub pieces: Vec<Piece>,
    /// Written at once, not one interval after the previous write started
    /// (control events, `--flush-mb`, a full log, shutdown).
    pub urgent: bool,
}

/// What the loop asks of a writer.
pub enum ToWriter {
    /// Write a batch; its chunks come back, the last in a `Written` report.
    Write(Batch),
    /// Page in this many fresh chunks and send them back in a `Paged`
    /// report (see `Log::page_ahead`).
    Page(usize),
}

/// What a writer tells the loop. `id` names the writer.
pub enum FromWriter {
    /// The batches up to flush `seq` are written (or dropped, once the
    /// destination has failed); the chunks they read still held come back.
    Written {
        id: usize,
        seq: u64,
        chunks: Vec<Chunk>,
    },
    /// Chunks that nothing left to write reads: back early, so the loop
    /// fills them instead of fresh memory.
    Chunks { id: usize, chunks: Vec<Chunk> },
    /// It waits until `until` to write what it has: not a stall.
    Waiting { id: usize, until: Instant },
    /// Empty chunks whose memory is paged in, as asked by `Page`.
    Paged(Vec<Vec<u8>>),
    /// The destination failed; its later batches are dropped.
    Failed {
        destination: DestKey,
        error: io::Error,
    },
    /// stdout was closed by its reader (EPIPE): not an error (SPEC §5).
    StdoutClosed,
}

/// Chunks (shares of chunks) a writer gives back at a time, while writing.
const GIVE_BACK_CHUNKS: usize = 8;

/// A writer that writes slowly still reports this often while it moves, so
/// the loop does not take it for stalled (see `writers::STALL_AFTER`).
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Starts the writer of `destination`: writes start at least `interval`
/// apart unless urgent; `wake` is called after each report.
pub fn spawn(
    id: usize,
    destination: Destination,
    interval: Duration,
    reports: Sender<FromWriter>,
    wake: Arc<dyn Fn() + Send + Sync>,
    inbox: Receiver<ToWriter>,
) -> io::Result<JoinHandle<()>> {
    let name = match destination {
        Destination::Stdout => "rawprox-stdout".to_owned(),
        Destination::Directory { .. } => format!("rawprox-dir-{id}"),
    };
    let mut writer = Writer {
        id,
        destination,
        interval,
        reports,
        wake,
        last_start: None,
        dead: false,
    };
    thread::Builder::new()
        .name(name)
        .spawn(move || writer.run(inbox))
}

struct Writer {
    id: usize,
    destination: Destination,
    interval: Duration,
    reports: Sender<FromWriter>,
    wake: Arc<dyn Fn() + Send + Sync>,
    last_start: Option<Instant>,
    /// The destination failed (or stdout's reader left): batches are dropped.
    dead: bool,
}

impl Writer {
    /// Until the loop lets go: takes what is queued, waits out the rest of
    /// the interval since the last write (taking what comes meanwhile)
    /// unless something is urgent, then writes it all at once.
    fn run(&mut self, inbox: Receiver<ToWriter>) {
        while let Ok(message) = inbox.recv() {
            let mut batches = Vec::new();
            self.take(message, &mut batches);
            while let Ok(message) = inbox.try_recv() {
                self.take(message, &mut batches);
            }
            if batches.is_empty() {
                continue;
            }
            // SPEC §5: writes never closer together than the interval.
            if let Some(at) = self.last_start.map(|t| t + self.interval) {
                if at > Instant::now() && !batches.iter().any(|b| b.urgent) {
                    self.report(FromWriter::Waiting {
                        id: self.id,
                        until: at,
                    });
                }
                while !batches.iter().any(|b| b.urgent) {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    match inbox.recv_timeout(at - now) {
                        Ok(message) => self.take(message, &mut batches),
                        // Due; or the loop let go (shutdown): write what is left.
                        Err(_) => break,
                    }
                }
            }
            self.last_start = Some(Instant::now());
            self.write(batches);
        }
    }

    fn take(&self, message: ToWriter, batches: &mut Vec<Batch>) {
        match message {
            ToWriter::Write(batch) => batches.push(batch),
            ToWriter::Page(n) => {
                self.report(FromWriter::Paged((0..n).map(|_| paged_chunk()).collect()))
            }
        }
    }

    fn report(&self, report: FromWriter) {
        // A send fails only once the loop is gone, and then nobody listens.
        let _ = self.reports.send(report);
        (self.wake)();
    }

    /// Writes the batches' lines as one write, then reports them written.
    fn write(&mut self, batches: Vec<Batch>) {
        let seq = batches.last().map_or(0, |b| b.seq);
        let pieces = batches.into_iter().flat_map(|b| b.pieces);
        let mut back = GiveBack {
            id: self.id,
            reports: &self.reports,
            wake: &*self.wake,
            chunks: Vec::new(),
            since: Instant::now(),
        };
        let mut failure = None;
        if self.dead {
            back.chunks.extend(pieces.map(|p| p.chunk));
        } else {
            let files = group_by_file(&self.destination, pieces);
            failure = write_files(&self.destination, files, &mut back).err();
        }
        let chunks = back.chunks;
        if let Some(error) = failure {
            self.dead = true;
            self.report(match (&self.destination, error.kind()) {
                (Destination::Stdout, _) if crate::sys::reader_gone(&error) => {
                    FromWriter::StdoutClosed
                }
                (destination, _) => FromWriter::Failed {
                    destination: destination.key(),
                    error,
                },
            });
        }
        self.report(FromWriter::Written {
            id: self.id,
            seq,
            chunks,
        });
    }
}

/// The pieces by file, in first-seen order: `(file name, pieces)`; stdout
/// takes them all as they come.
fn group_by_file(
    destination: &Destination,
    pieces: impl Iterator<Item = Piece>,
) -> Vec<(String, Vec<Piece>)> {
    let Destination::Directory { format, .. } = destination else {
        return vec![(String::new(), pieces.collect())];
    };
    let mut names = FileNames::default();
    let mut files: Vec<(String, Vec<Piece>)> = Vec::new();
    for piece in pieces {
        let name = names.name(format, piece.secs);
        match files.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) => list.push(piece),
            None => files.push((name.to_owned(), vec![piece])),
        }
    }
    files
}

/// Writes each file's pieces; on a failure, the pieces not written go to
/// `back` all the same.
fn write_files(
    destination: &Destination,
    files: Vec<(String, Vec<Piece>)>,
    back: &mut GiveBack,
) -> io::Result<()> {
    let mut files = files.into_iter();
    let mut result = Ok(());
    for (name, pieces) in files.by_ref() {
        result = match destination {
            Destination::Stdout => write_file(&mut io::stdout().lock(), pieces, back),
            Destination::Directory { dir, .. } => match open_append(&Path::new(dir).join(name)) {
                Ok(mut file) => write_file(&mut file, pieces, back),
                Err(e) => {
                    back.keep(pieces);
                    Err(e)
                }
            },
        };
        if result.is_err() {
            break;
        }
    }
    for (_, pieces) in files {
        back.keep(pieces);
    }
    result
}

/// Writes `pieces` to `out`, giving each back once written.
fn write_file<W: Write + AsOutput>(
    out: &mut W,
    pieces: Vec<Piece>,
    back: &mut GiveBack,
) -> io::Result<()> {
    let mut through = WriteThrough::new(out);
    let mut pieces = pieces.into_iter();
    while let Some(piece) = pieces.next() {
        if let Err(e) = through.write(out, &piece.chunk[piece.range.clone()]) {
            back.keep([piece].into_iter().chain(pieces));
            return Err(e);
        }
        back.written(piece);
    }
    out.flush()?;
    through.finish();
    Ok(())
}

/// Gives chunks back to the loop while a write goes on (a chunk's life,
/// step 4, in `chunk`): a few at a time, so the loop fills them again while
/// they are paged in, instead of fresh memory. What is left goes back with
/// the `Written` report.
struct GiveBack<'a> {
    id: usize,
    reports: &'a Sender<FromWriter>,
    wake: &'a dyn Fn(),
    chunks: Vec<Chunk>,
    /// When chunks last went back (or the write started).
    since: Instant,
}

impl GiveBack<'_> {
    fn written(&mut self, piece: Piece) {
        self.chunks.push(piece.chunk);
        if self.chunks.len() >= GIVE_BACK_CHUNKS || self.since.elapsed() >= REPORT_EVERY {
            let chunks = std::mem::take(&mut self.chunks);
            let _ = self.reports.send(FromWriter::Chunks {
                id: self.id,
                chunks,
            });
            (self.wake)();
            self.since = Instant::now();
        }
    }

    /// Pieces not written (a failure): their chunks go back with the rest.
    fn keep(&mut self, pieces: impl IntoIterator<Item = Piece>) {
        self.chunks.extend(pieces.into_iter().map(|p| p.chunk));
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
    use crate::log::chunk::CHUNK_BYTES;
    use std::sync::mpsc;

    #[test]
    fn paged_chunks_come_back_empty_with_a_whole_chunk_of_room() {
        let (tx, inbox) = mpsc::channel();
        let (outbox, reports) = mpsc::channel();
        let thread = spawn(
            0,
            Destination::Stdout,
            Duration::ZERO,
            outbox,
            Arc::new(|| {}),
            inbox,
        )
        .unwrap();
        tx.send(ToWriter::Page(3)).unwrap();
        match reports.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWriter::Paged(chunks)) => {
                assert_eq!(chunks.len(), 3);
                let whole = |c: &Vec<u8>| c.is_empty() && c.capacity() >= CHUNK_BYTES;
                assert!(chunks.iter().all(whole));
            }
            Ok(_) => panic!("unexpected report"),
            Err(_) => panic!("no report"),
        }
        drop(tx);
        thread.join().unwrap();
    }
}
