//! Finding the QEMU binary behind a snapshot: the build whose sha256 the snapshot recorded,
//! among the installed matrix (`matrix.tsv` real_binary column, launched through its
//! launcher), or the binary named by `QCONFORM_QEMU_<major>_<minor>[_<micro>]_<arch>`.
//!
//! Hashes are cached by (path, size, mtime) in a small TSV so that every test process of a
//! nextest run does not hash 20–60 MB binaries again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use qconform_qemu::matrix::{MatrixEntry, read_matrix};
use qconform_qemu::probe::sha256_file;

use crate::snapshots::LoadedSnapshot;

/// A binary to launch for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// What to execute (a matrix launcher or the binary itself).
    pub program: PathBuf,
    /// Where it came from, for messages.
    pub source: String,
}

/// Binaries available to the live and guest stages.
#[derive(Debug)]
pub struct BinaryIndex {
    matrix: Result<Vec<MatrixEntry>, String>,
    cache_file: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, (u64, u128, String)>>,
    /// Programs given for snapshot ids (`qconform qualify` runs the binary it was given).
    overrides: BTreeMap<String, Located>,
}

/// Name of the environment override for a snapshot, most specific first.
pub fn env_names(snap: &LoadedSnapshot) -> [String; 2] {
    let v = snap.snapshot.probe.qemu_version;
    [
        format!(
            "QCONFORM_QEMU_{}_{}_{}_{}",
            v.major, v.minor, v.micro, snap.arch
        ),
        format!("QCONFORM_QEMU_{}_{}_{}", v.major, v.minor, snap.arch),
    ]
}

impl BinaryIndex {
    /// Reads the matrix under `matrix_root` (if any); hashes are cached in `cache_dir`.
    pub fn new(matrix_root: Option<&Path>, cache_dir: Option<&Path>) -> BinaryIndex {
        let matrix = match matrix_root {
            None => Err("no matrix root (set QCONFORM_MATRIX_ROOT or HOME)".to_owned()),
            Some(root) => read_matrix(root).map_err(|e| e.to_string()),
        };
        let cache_file = cache_dir.map(|d| d.join("binary-sha256.tsv"));
        let cache = cache_file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse_cache(&t))
            .unwrap_or_default();
        BinaryIndex {
            matrix,
            cache_file,
            cache: Mutex::new(cache),
            overrides: BTreeMap::new(),
        }
    }

    /// Runs `program` for the snapshot `id` (`<version>/<arch>`), whatever the matrix and
    /// environment say.
    #[must_use]
    pub fn with_override(mut self, id: &str, program: Located) -> BinaryIndex {
        self.overrides.insert(id.to_owned(), program);
        self
    }

    /// The binary for a snapshot, or why there is none ("binary not installed: ...").
    pub fn locate(&self, snap: &LoadedSnapshot) -> Result<Located, String> {
        if let Some(l) = self.overrides.get(&snap.id) {
            return Ok(l.clone());
        }
        for name in env_names(snap) {
            let value = std::env::var_os(&name)
                .or_else(|| std::env::var_os(name.to_uppercase()))
                .filter(|v| !v.is_empty());
            if let Some(v) = value {
                let p = PathBuf::from(v);
                if !p.exists() {
                    return Err(format!(
                        "binary not installed: {name} names {}, which does not exist",
                        p.display()
                    ));
                }
                return Ok(Located {
                    program: p,
                    source: format!("${name}"),
                });
            }
        }
        let want = &snap.snapshot.probe.binary_sha256;
        let entries = match &self.matrix {
            Ok(e) => e,
            Err(e) => return Err(format!("binary not installed: no QEMU matrix ({e})")),
        };
        let mm = snap.major_minor();
        let candidates: Vec<&MatrixEntry> = entries
            .iter()
            .filter(|e| e.version == mm && e.arch == snap.arch)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "binary not installed: the matrix has no QEMU {mm} for {} (install it with \
                 runners/scripts/install-matrix.sh, or set {})",
                snap.arch,
                env_names(snap)[1]
            ));
        }
        let mut seen = Vec::new();
        for c in candidates {
            match self.sha256(&c.binary) {
                Ok(h) if &h == want => {
                    return Ok(Located {
                        program: c.launcher.clone(),
                        source: format!("matrix {} {} ({})", c.version, c.arch, c.full_version),
                    });
                }
                Ok(h) => seen.push(format!("{} has sha256 {h}", c.binary.display())),
                Err(e) => seen.push(format!("{}: {e}", c.binary.display())),
            }
        }
        Err(format!(
            "binary not installed: the snapshot was recorded from sha256 {want}, but {}; \
             re-probe with `qconform probe` or install that build",
            seen.join("; ")
        ))
    }

    /// SHA-256 of a file, cached by (path, size, mtime).
    pub fn sha256(&self, path: &Path) -> std::io::Result<String> {
        let meta = std::fs::metadata(path)?;
        let size = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = path.to_string_lossy().into_owned();
        if let Ok(c) = self.cache.lock()
            && let Some((s, m, h)) = c.get(&key)
            && *s == size
            && *m == mtime
        {
            return Ok(h.clone());
        }
        let hash = sha256_file(path)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, (size, mtime, hash.clone()));
            if let Some(f) = &self.cache_file {
                // A cache that cannot be written only costs time.
                let _ = write_cache(f, &c);
            }
        }
        Ok(hash)
    }
}

fn parse_cache(text: &str) -> BTreeMap<String, (u64, u128, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let (p, s, m, h) = (it.next()?, it.next()?, it.next()?, it.next()?);
            Some((
                p.to_owned(),
                (s.parse().ok()?, m.parse().ok()?, h.to_owned()),
            ))
        })
        .collect()
}

fn write_cache(file: &Path, c: &BTreeMap<String, (u64, u128, String)>) -> std::io::Result<()> {
    let mut text = String::new();
    for (p, (s, m, h)) in c {
        text.push_str(&format!("{p}\t{s}\t{m}\t{h}\n"));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().map_or_else(
        || "binary-sha256.tsv".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    crate::golden::write_atomic(dir, &name, &text)
}
