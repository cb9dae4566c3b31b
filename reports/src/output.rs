//! Writing an output file to a path a person gave, without destroying what the path is.
//!
//! * a new path or a regular file: written atomically (a temporary file in the same
//!   directory, synced, then renamed over the path; an existing file keeps its permissions);
//! * a symbolic link: the link stays; its target is written by these same rules;
//! * a FIFO, character or block device or socket: written through (opened and written, the
//!   node stays what it is: `--out /dev/stdout` or a named pipe work);
//! * a directory: refused with an error of kind [`std::io::ErrorKind::IsADirectory`].

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Symbolic links followed before giving up (as the kernel's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// Writes `contents` to `path` (see the module documentation for what happens to each kind
/// of path).
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
    let mut target = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match fs::symlink_metadata(&target) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return replace_atomically(&target, contents, None, track);
            }
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = fs::read_link(&target)?;
            target = if link.is_absolute() {
                link
            } else {
                parent_of(&target).join(link)
            };
            continue;
        }
        if ft.is_file() {
            return replace_atomically(&target, contents, Some(meta.permissions()), track);
        }
        if ft.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!(
                    "{} is a directory; give a file path to write to",
                    target.display()
                ),
            ));
        }
        // FIFO, device node or socket: write through, leave the node as it is.
        let mut f = fs::OpenOptions::new().write(true).open(&target)?;
        f.write_all(contents)?;
        return f.flush();
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{}: more than {MAX_LINKS} symbolic links to follow",
            path.display()
        ),
    ))
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
    fn new_file_regular_file_and_symlink() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("a.txt");
        write_file(&p, b"one").expect("new");
        write_file(&p, b"two").expect("replace");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        #[cfg(unix)]
        {
            let link = t.path().join("link");
            std::os::unix::fs::symlink("a.txt", &link).expect("symlink");
            write_file(&link, b"three").expect("through link");
            assert!(
                fs::symlink_metadata(&link)
                    .expect("meta")
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(fs::read(&p).expect("read"), b"three");
            let dangling = t.path().join("dangling");
            std::os::unix::fs::symlink("new.txt", &dangling).expect("symlink");
            write_file(&dangling, b"four").expect("dangling link");
            assert_eq!(fs::read(t.path().join("new.txt")).expect("read"), b"four");
        }
        let e = write_file(t.path(), b"x").expect_err("a directory");
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        let names: Vec<_> = fs::read_dir(t.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "temporary files left: {names:?}");
    }
}
