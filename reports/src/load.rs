//! Reading inputs from disk: trial records (files of JSON lines or one JSON document per
//! trial, anywhere under a directory tree), caps snapshots (`caps_<ver>_<arch>.json`
//! files, by path or by a short id such as `10.0/s390x`, see [`SnapshotId`]).
//!
//! [`snapshot_files`] is the one listing of a snapshot directory: the CLI and the
//! conformance runner both use it.

use std::fs;
use std::path::{Path, PathBuf};

use qconform_caps::{CapsError, Snapshot, SnapshotId};

use crate::results::{ParseError, TrialRecord, parse_records};

/// Reading an input failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// File system error (the cause is the error's source).
    #[error("cannot read {path}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A results file holds something that is not a trial record.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A snapshot file is not a valid snapshot (the cause is the error's source).
    #[error("{path}: not a usable caps snapshot")]
    Caps {
        /// Snapshot file.
        path: PathBuf,
        /// Cause.
        source: CapsError,
    },
    /// A snapshot id did not resolve.
    #[error("{0}")]
    Resolve(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Records read from some files.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// All records, in file order (unmerged).
    pub records: Vec<TrialRecord>,
    /// Files that were read, in order.
    pub files: Vec<PathBuf>,
}

/// Collects `*.json` and `*.jsonl` files under a path (the path itself when it is a
/// file), sorted. Symbolic links to directories are not followed, so the `latest` link
/// of a results root does not count a run twice.
pub fn result_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io(&dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        entries.sort();
        for p in entries {
            let lmeta = fs::symlink_metadata(&p).map_err(io(&p))?;
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if lmeta.is_dir() {
                stack.push(p);
            } else if lmeta.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "jsonl")
                )
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every record found under the given files and directories.
pub fn read_results(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for p in paths {
        for f in result_files(p)? {
            let text = fs::read_to_string(&f).map_err(io(&f))?;
            loaded
                .records
                .extend(parse_records(&f.display().to_string(), &text)?);
            loaded.files.push(f);
        }
    }
    Ok(loaded)
}

/// Reads one snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, LoadError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    Snapshot::from_json(&text).map_err(|source| LoadError::Caps {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether a directory entry is listed as a snapshot: `caps_*.json`.
fn listed_as_snapshot(name: &str) -> bool {
    name.starts_with("caps_") && name.ends_with(".json")
}

/// Snapshot files (`caps_*.json`) in a directory, sorted by name: the one listing of a
/// snapshot directory.
pub fn snapshot_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(listed_as_snapshot)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads every snapshot of a directory; a missing directory gives none.
pub fn read_snapshot_dir(dir: &Path) -> Result<Vec<Snapshot>, LoadError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    snapshot_files(dir)?
        .iter()
        .map(|p| read_snapshot(p))
        .collect()
}

/// Resolves a snapshot argument: an existing path, or a [`SnapshotId`] (`11.1/x86_64`,
/// `11.1.3_x86_64`, `11.1.3/x86_64`, `caps_11.1.3_x86_64.json`) looked up in `caps_dir`,
/// where a version prefix picks the newest snapshot with that prefix.
pub fn resolve_snapshot_path(spec: &str, caps_dir: &Path) -> Result<PathBuf, LoadError> {
    let as_path = Path::new(spec);
    if fs::metadata(as_path).is_ok() {
        return Ok(as_path.to_path_buf());
    }
    let Some(id) = SnapshotId::parse(spec) else {
        return Err(LoadError::Resolve(format!(
            "{spec:?}: no such file, and not a snapshot id such as 11.1/x86_64, 11.1.3_x86_64 or caps_11.1.3_x86_64.json (VERSION/ARCH)"
        )));
    };
    let files = snapshot_files(caps_dir)?;
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    if let Some(name) = id.resolve(&names) {
        return Ok(caps_dir.join(name));
    }
    let mut known: Vec<SnapshotId> = names
        .iter()
        .filter_map(|n| SnapshotId::from_file_name(n))
        .collect();
    known.sort_by(|a, b| {
        a.arch
            .cmp(&b.arch)
            .then_with(|| qconform_caps::compare_versions(&a.version, &b.version))
    });
    Err(LoadError::Resolve(format!(
        "no snapshot {id} in {} (recorded: {})",
        caps_dir.display(),
        if known.is_empty() {
            "none".to_owned()
        } else {
            known
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    )))
}
