//! The installed QEMU matrix: `matrix.tsv` written by `runners/scripts/install-matrix.sh`.
//!
//! One row per (version, arch), TAB-separated: `version` (major.minor), `arch`, launcher path,
//! real binary path (the ELF inside the installed tree), full version string.

use std::path::{Path, PathBuf};

/// Environment variable naming the matrix root.
pub const MATRIX_ROOT_ENV: &str = "QCONFORM_MATRIX_ROOT";

/// One installed (version, arch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixEntry {
    /// `major.minor`, e.g. `11.1`.
    pub version: String,
    /// Target architecture, e.g. `x86_64`.
    pub arch: String,
    /// Launcher to execute (sets module/firmware paths, then `exec`s QEMU).
    pub launcher: PathBuf,
    /// The real QEMU binary (hashed to identify the build).
    pub binary: PathBuf,
    /// `QEMU emulator version ...` line.
    pub full_version: String,
}

/// Errors reading the matrix.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The file could not be read.
    #[error("cannot read {}: {source} (install the matrix with runners/scripts/install-matrix.sh, or set {MATRIX_ROOT_ENV})", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A row does not have the five columns.
    #[error("{}:{line}: expected 5 TAB-separated columns (version arch launcher binary full_version), got {found}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Number of columns found.
        found: usize,
    },
}

/// The default matrix root: `$QCONFORM_MATRIX_ROOT`, else `$HOME/.cache/qconform/matrix`.
pub fn default_root() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os(MATRIX_ROOT_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(r));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/qconform/matrix"))
}

/// Reads `<root>/matrix.tsv`.
pub fn read_matrix(root: &Path) -> Result<Vec<MatrixEntry>, MatrixError> {
    let path = root.join("matrix.tsv");
    let text = std::fs::read_to_string(&path).map_err(|source| MatrixError::Read {
        path: path.clone(),
        source,
    })?;
    parse_matrix(&text, &path)
}

/// Parses the text of a `matrix.tsv` (`path` is only used in error messages).
pub fn parse_matrix(text: &str, path: &Path) -> Result<Vec<MatrixEntry>, MatrixError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [version, arch, launcher, binary, full_version] = cols.as_slice() else {
            return Err(MatrixError::Row {
                path: path.to_path_buf(),
                line: i + 1,
                found: cols.len(),
            });
        };
        out.push(MatrixEntry {
            version: (*version).to_owned(),
            arch: (*arch).to_owned(),
            launcher: PathBuf::from(launcher),
            binary: PathBuf::from(binary),
            full_version: (*full_version).to_owned(),
        });
    }
    Ok(out)
}

/// Reads the matrix at the default root, or returns `None` (with the reason) when it is not
/// installed. Meant for tests that skip without a matrix.
pub fn installed() -> Result<Vec<MatrixEntry>, String> {
    let root = default_root().ok_or_else(|| "no HOME and no QCONFORM_MATRIX_ROOT".to_owned())?;
    read_matrix(&root).map_err(|e| e.to_string())
}

/// Finds the entry of a `major.minor` version and arch.
pub fn find<'a>(entries: &'a [MatrixEntry], version: &str, arch: &str) -> Option<&'a MatrixEntry> {
    entries
        .iter()
        .find(|e| e.version == version && e.arch == arch)
}
