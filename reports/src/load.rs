//! Reading inputs from disk: trial records (files of JSON lines or one JSON document per
//! trial, anywhere under a directory tree), caps snapshots (`caps_<ver>_<arch>.json`
//! files, by path or by a short id such as `10.0/s390x`, see [`SnapshotId`]) and text
//! inputs such as domain XML ([`read_text`]: bounded, UTF-8 checked with a position).
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
    /// A snapshot's file name names another version or arch than its content.
    #[error(
        "{path}: the file name says {named} but the snapshot holds {holds} (it would be stored as {file_name}); snapshots are written by `qconform probe` only"
    )]
    Misnamed {
        /// Snapshot file.
        path: PathBuf,
        /// Id from the file name.
        named: String,
        /// Id from the content.
        holds: String,
        /// Name the content would be stored under.
        file_name: String,
    },
    /// An input is not something that can be read as a file (a directory, a device).
    #[error("{path} is {kind}, not {wanted}")]
    NotAFile {
        /// Path given.
        path: PathBuf,
        /// What it is (`a directory`, `a character device`, ...).
        kind: &'static str,
        /// What was expected.
        wanted: &'static str,
    },
    /// An input is larger than what is read of it.
    #[error("{path}: larger than {limit_mib} MiB, the most read of {what} (is it the right file?)")]
    TooLarge {
        /// Path given.
        path: PathBuf,
        /// What the input should be.
        what: &'static str,
        /// Limit in MiB.
        limit_mib: u64,
    },
    /// An input is not UTF-8 text.
    #[error("{path}: {detail}")]
    NotUtf8 {
        /// Path given.
        path: PathBuf,
        /// What is wrong and where.
        detail: String,
    },
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

/// Most bytes read of one caps snapshot (the largest recorded one is about 4 MiB).
pub const SNAPSHOT_LIMIT: u64 = 64 << 20;
/// Most bytes read of one domain XML (real domains are a few KiB).
pub const DOMAIN_LIMIT: u64 = 16 << 20;

/// What a file-system object is, for messages (`a directory`, `a character device`, ...).
pub fn kind_of(meta: &fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_fifo() {
            return "a named pipe";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Reads a text input (domain XML, snapshot JSON) of at most `limit` bytes: a larger input
/// is refused without reading the rest, and bytes that are not UTF-8 are refused with
/// their position (byte offset, line and column), UTF-16 named as such. `what` names the
/// input in messages (`domain XML`, `a caps snapshot`).
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, LoadError> {
    use std::io::Read as _;
    let f = fs::File::open(path).map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    if meta.is_dir() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
            kind: "a directory",
            wanted: what,
        });
    }
    let mut bytes = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit_mib: limit >> 20,
        });
    }
    text_of(path, bytes)
}

/// Checks that bytes are UTF-8, saying where they are not.
fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, LoadError> {
    let bad = |detail: String| LoadError::NotUtf8 {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(bad(
            "the text is UTF-16 (byte order mark at byte 0, line 1, column 1); save it as UTF-8"
                .to_owned(),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = bytes.get(..at).unwrap_or_default();
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        let byte = bytes.get(at).copied().unwrap_or(0);
        let utf16 = bytes.len() >= 2 && bytes.iter().take(64).filter(|&&b| b == 0).count() >= 8;
        bad(format!(
            "not UTF-8: byte 0x{byte:02x} at offset {at} (line {line}, column {column}){}",
            if utf16 {
                "; it looks like UTF-16, save it as UTF-8"
            } else {
                ""
            }
        ))
    })
}

/// Reads one snapshot file: a regular file or a pipe holding a snapshot, whose file name,
/// when it has the stored form `caps_<version>_<arch>.json`, agrees with its content.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, LoadError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.is_dir() || kind_of(&meta).ends_with("device") || kind_of(&meta) == "a socket" {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
            wanted: "a caps snapshot file",
        });
    }
    let text = read_text(path, SNAPSHOT_LIMIT, "a caps snapshot")?;
    let snapshot = Snapshot::from_json(&text).map_err(|source| LoadError::Caps {
        path: path.to_path_buf(),
        source,
    })?;
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(SnapshotId::from_file_name);
    if let Some(named) = named.filter(|n| *n != snapshot.snapshot_id()) {
        return Err(LoadError::Misnamed {
            path: path.to_path_buf(),
            named: named.to_string(),
            holds: snapshot.id(),
            file_name: snapshot.file_name(),
        });
    }
    Ok(snapshot)
}

/// Whether a directory entry is listed as a snapshot: `caps_*.json` (a misnamed one is
/// listed too, so that reading it says what is wrong).
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
