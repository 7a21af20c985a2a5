//! Where log lines come from (SPEC §9): files, directories (their `*.ndjson`
//! files in name order) and standard input, listed as the inputs `lines`
//! reads.
//!
//! Only regular files are read, each once (by identity: a link to a file
//! already listed adds nothing, and a file is read at its own name rather
//! than a link's), each up to the size it had when it was listed; a
//! directory is never entered twice, so a link cycle ends. For the MCP
//! tools, no link leads out of the run's directories (`expand_within`).

use super::Error;
use crate::sys::{self, FileId};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Why a directory is skipped when none of its files is a log.
pub const NO_LOGS: &str = "holds no .ndjson file";

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
    pub(super) fn group(&self) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            // Windows names them with its own separator.
            .map(|i| i.name()[dir.to_str().unwrap().len() + 1..].replace('\\', "/"))
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
