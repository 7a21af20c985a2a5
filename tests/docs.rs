//! The repository holds its own contract, docs/SPEC.md, and cites only it:
//! no tracked file names a contract outside the repository or a path of one
//! particular machine, and every `§N` cited in the Rust sources names a
//! section docs/SPEC.md has.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The section numbers of docs/SPEC.md, from its `## N. Title` headings.
fn spec_sections() -> Vec<u32> {
    let path = root().join("docs/SPEC.md");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|heading| heading.split_once(". "))
        .filter_map(|(number, _title)| number.parse().ok())
        .collect()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The section numbers cited in `text`: every `§` followed by digits (a
/// citation may wrap, `SPEC` at one line's end and `§N` on the next, and
/// one may list several, `SPEC §2, §7`, or a range, `SPEC §2–§6`).
fn cited_sections(text: &str) -> Vec<u32> {
    text.split('§')
        .skip(1)
        .filter_map(|after| {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn spec_sections_are_numbered_from_1_without_gaps() {
    let sections = spec_sections();
    let expected: Vec<u32> = (1..=sections.len() as u32).collect();
    assert!(
        sections.len() >= 10,
        "docs/SPEC.md has fewer than the 10 sections code cites: {sections:?}"
    );
    assert_eq!(
        sections, expected,
        "docs/SPEC.md's sections must stay numbered 1, 2, 3, … in order (code cites them)"
    );
}

#[test]
fn every_cited_section_exists_in_spec() {
    let sections: BTreeSet<u32> = spec_sections().into_iter().collect();
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz/fuzz_targets"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut citations = 0;
    let mut missing = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for n in cited_sections(&text) {
            citations += 1;
            if !sections.contains(&n) {
                let name = file.strip_prefix(root()).unwrap_or(file);
                missing.push(format!("{}: §{n}", name.display()));
            }
        }
    }
    assert!(
        citations > 50,
        "found only {citations} citations of the contract in the sources"
    );
    assert!(
        missing.is_empty(),
        "cited sections that docs/SPEC.md does not have:\n{}",
        missing.join("\n")
    );
}

#[test]
fn cited_sections_are_found_in_every_form() {
    let text = "(SPEC\n/// §2): x (SPEC §5, §7) y (SPEC §2–§6) `SPEC §N` §10.";
    assert_eq!(cited_sections(text), [2, 5, 7, 2, 6, 10]);
}

#[test]
fn no_tracked_file_names_an_outside_contract_or_a_machine_path() {
    // Spelled in pieces so that this file does not name them itself.
    let forbidden = [concat!("..", "/shared"), concat!("/wo", "rk/")];
    let listing = match Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("git is not installed: tracked files not checked");
            return;
        }
        Err(e) => panic!("cannot run git ls-files: {e}"),
        Ok(out) if !out.status.success() => {
            // A source tree without its history (a crate download, a tarball).
            eprintln!(
                "not a git checkout, tracked files not checked: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Ok(out) => out.stdout,
    };
    let files: Vec<&str> = listing
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| std::str::from_utf8(name).expect("a tracked file name in UTF-8"))
        .collect();
    assert!(
        files.contains(&"docs/SPEC.md"),
        "docs/SPEC.md is not tracked by git"
    );
    let mut found = Vec::new();
    for name in &files {
        let bytes = match fs::read(root().join(name)) {
            Ok(bytes) => bytes,
            // Deleted in the work tree but not yet in the index: nothing to check.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {name}: {e}"),
        };
        for needle in forbidden {
            for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                if line.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{name}:{}: {needle}", i + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "tracked files name a path outside the repository (cite docs/SPEC.md instead):\n{}",
        found.join("\n")
    );
}
