//! Loading caps snapshots from `capsdata/` (the pure caps crate parses; the directory is
//! listed by [`qconform_reports::load::snapshot_files`], the one listing the CLI uses too).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qconform_caps::Snapshot;

/// A snapshot with where it came from.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// File it was read from.
    pub path: PathBuf,
    /// File name (`caps_11.1.3_x86_64.json`).
    pub file_name: String,
    /// `<version>/<arch>` (`11.1.3/x86_64`).
    pub id: String,
    /// `11.1.3`.
    pub version: String,
    /// `x86_64`.
    pub arch: String,
}

impl LoadedSnapshot {
    /// Stem of this snapshot's golden files: `<arch>-<version>`.
    pub fn golden_stem(&self) -> String {
        format!("{}-{}", self.arch, self.version)
    }

    /// Wraps a snapshot read or probed from `path` (kept for messages).
    pub fn new(snapshot: Snapshot, path: PathBuf) -> LoadedSnapshot {
        LoadedSnapshot {
            id: snapshot.id(),
            file_name: snapshot.file_name(),
            path,
            version: snapshot.probe.qemu_version.to_string(),
            arch: snapshot.probe.arch.clone(),
            snapshot,
        }
    }

    /// `major.minor` of the QEMU version (the matrix is keyed by it).
    pub fn major_minor(&self) -> String {
        let v = self.snapshot.probe.qemu_version;
        format!("{}.{}", v.major, v.minor)
    }
}

/// A snapshot file that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SnapshotError {
    /// File name.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// All snapshots of a directory.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Loaded snapshots, sorted by arch then version.
    pub snapshots: Vec<Arc<LoadedSnapshot>>,
    /// Files that failed to load.
    pub errors: Vec<SnapshotError>,
}

impl Snapshots {
    /// The newest version per arch (for the guest subset).
    pub fn newest_of_arch(&self, arch: &str) -> Option<&Arc<LoadedSnapshot>> {
        self.snapshots
            .iter()
            .filter(|s| s.arch == arch)
            .max_by_key(|s| s.snapshot.probe.qemu_version)
    }
}

/// Whether a file name is a stored snapshot's (`caps_<version>_<arch>.json`).
pub fn is_snapshot_file(name: &str) -> bool {
    qconform_caps::is_snapshot_file_name(name)
}

/// File name a snapshot of `<version>/<arch>` is stored under.
pub fn file_name_for(version: &str, arch: &str) -> String {
    qconform_caps::snapshot_file_name(version, arch)
}

/// Loads every `caps_*.json` of a directory (a missing directory is an empty set).
/// `only` restricts loading to the given file names. Files are parsed on a few threads:
/// a snapshot is large and parsing dominates.
pub fn load_snapshots(dir: &Path, only: Option<&[String]>) -> Snapshots {
    let mut files = Vec::new();
    let mut out = Snapshots::default();
    let listed = match qconform_reports::load::snapshot_files(dir) {
        Ok(l) => l,
        Err(qconform_reports::load::LoadError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return out;
        }
        Err(e) => {
            out.errors.push(SnapshotError {
                file: dir.display().to_string(),
                message: format!("cannot read directory: {e}"),
            });
            return out;
        }
    };
    for path in listed {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if only.is_some_and(|o| !o.iter().any(|n| n == &name)) {
            continue;
        }
        files.push((name, path));
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4);
    let chunks: Vec<Vec<(String, PathBuf)>> = {
        let mut c = vec![Vec::new(); threads];
        for (i, f) in files.into_iter().enumerate() {
            if let Some(slot) = c.get_mut(i % threads) {
                slot.push(f);
            }
        }
        c
    };
    let results: Vec<Result<LoadedSnapshot, SnapshotError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(name, path)| load_one(&name, &path))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(SnapshotError {
                        file: "capsdata".into(),
                        message: "snapshot loader thread panicked".into(),
                    })]
                })
            })
            .collect()
    });
    for r in results {
        match r {
            Ok(s) => out.snapshots.push(Arc::new(s)),
            Err(e) => out.errors.push(e),
        }
    }
    out.snapshots.sort_by(|a, b| {
        (a.arch.as_str(), a.snapshot.probe.qemu_version)
            .cmp(&(b.arch.as_str(), b.snapshot.probe.qemu_version))
    });
    out.errors.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

fn load_one(name: &str, path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    let err = |message: String| SnapshotError {
        file: name.to_owned(),
        message,
    };
    let text = qconform_reports::load::read_text(
        path,
        qconform_reports::load::SNAPSHOT_LIMIT,
        "a caps snapshot",
    )
    .map_err(|e| err(error_chain(&e)))?;
    let snapshot = Snapshot::from_json(&text).map_err(|e| err(e.to_string()))?;
    if snapshot.file_name() != name {
        return Err(err(format!(
            "holds {} (it would be stored as {}); snapshots are written by `qconform probe` only",
            snapshot.id(),
            snapshot.file_name()
        )));
    }
    let version = snapshot.probe.qemu_version.to_string();
    let arch = snapshot.probe.arch.clone();
    Ok(LoadedSnapshot {
        id: snapshot.id(),
        file_name: name.to_owned(),
        path: path.to_path_buf(),
        version,
        arch,
        snapshot,
    })
}

/// An error and its sources, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
