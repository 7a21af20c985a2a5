//! Where log lines go (SPEC §5, §7): stdout, or a directory of time-rotated
//! files; how a destination is named; how a directory is prepared before
//! logging there starts.

use super::filename::FilenameFormat;
use std::fs;
use std::path::Path;

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

/// Creates a log directory (and its parents) and proves a file can be made
/// in it; checked before logging there starts (SPEC §2, §7).
pub fn prepare_directory(dir: &str) -> Result<(), String> {
    let path = Path::new(dir);
    if path.exists() && !path.is_dir() {
        return Err(format!(
            "log directory '{dir}' is a file, not a directory: give a directory (it is created if missing)"
        ));
    }
    fs::create_dir_all(path).map_err(|e| format!("cannot create log directory '{dir}': {e}"))?;
    let probe = path.join(format!(".rawprox-probe-{}", std::process::id()));
    fs::File::create(&probe).map_err(|e| format!("cannot write to log directory '{dir}': {e}"))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}
