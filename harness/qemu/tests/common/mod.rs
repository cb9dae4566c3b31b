//! Setup shared by the integration tests: the installed matrix (or a skip message), fake
//! "QEMU" scripts that record their pid, and process-group liveness checks.

// Each test target uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use qconform_qemu::matrix::{self, MatrixEntry};

/// The installed matrix, or `None` after printing why `test` is skipped.
pub fn matrix_or_skip(test: &str) -> Option<Vec<MatrixEntry>> {
    match matrix::installed() {
        Ok(m) if !m.is_empty() => Some(m),
        Ok(_) => {
            eprintln!("{test}: skipped: the QEMU matrix is empty");
            None
        }
        Err(e) => {
            eprintln!("{test}: skipped: {e}");
            None
        }
    }
}

/// Writes an executable shell script that first records its pid in `<dir>/pid`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    let body = format!(
        "#!/bin/sh\necho $$ > '{}'\n{body}",
        dir.join("pid").display()
    );
    std::fs::write(&p, body).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// The pid a [`script`] in `dir` recorded (also its process group id).
pub fn script_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("pid"))
        .expect("script wrote its pid")
        .trim()
        .parse()
        .expect("pid")
}

/// Whether any process of the group still exists, after giving the system up to 5 s to
/// reap what was killed (a killed grandchild stays a zombie member until init reaps it).
pub fn group_alive(pgid: u32) -> bool {
    for _ in 0..250 {
        if !group_exists(pgid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether the group is empty within those 5 s: the opposite of [`group_alive`].
pub fn group_gone(pgid: u32) -> bool {
    !group_alive(pgid)
}

/// Whether any process of the group exists right now.
pub fn group_exists(pgid: u32) -> bool {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process_group(pid).is_ok()
}
