//! Writing an output file atomically: a temporary file in the same directory, synced,
//! then renamed over the path (an existing file keeps its permissions). The one writer of
//! the CLI's and the conformance runner's output files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `contents` to `path` atomically.
pub fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_file_tracked(path, contents, &mut |_, _| {})
}

/// [`write_file`] into `dir/name`, creating `dir` first when missing.
pub fn write_in(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_file(&dir.join(name), contents)
}

/// [`write_file`], telling `track` about the temporary file of an atomic write:
/// `track(tmp, true)` before it is created and `track(tmp, false)` once it is gone (renamed
/// or removed), so that a caller interrupted in between can remove it.
pub fn write_file_tracked(
    path: &Path,
    contents: &[u8],
    track: &mut dyn FnMut(&Path, bool),
) -> io::Result<()> {
    let permissions = fs::metadata(path).ok().map(|m| m.permissions());
    replace_atomically(path, contents, permissions, track)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn replace_atomically(
    path: &Path,
    contents: &[u8],
    permissions: Option<fs::Permissions>,
    track: &mut dyn FnMut(&Path, bool),
) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a file name", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = parent_of(path).join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    track(&tmp, true);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        if let Some(p) = permissions {
            f.set_permissions(p)?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    track(&tmp, false);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_and_regular_file() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("a.txt");
        write_file(&p, b"one").expect("new");
        write_file(&p, b"two").expect("replace");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(t.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "temporary files left: {names:?}");
    }
}
