//! The QMP client against real QEMU binaries of the installed matrix, and its fault handling
//! against programs that are not QEMU. Tests that need the matrix print why they are skipped
//! when it is absent (CI installs it, so they run there).

use std::path::Path;
use std::time::Duration;

use qconform_qemu::{Qemu, QemuError, Timeouts};
use serde_json::json;

mod common;
use common::{group_alive, group_exists, matrix_or_skip, script, script_pid};

fn base_args() -> Vec<String> {
    [
        "-machine",
        "none",
        "-nodefaults",
        "-S",
        "-display",
        "none",
        "-qmp",
        "stdio",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn short() -> Timeouts {
    Timeouts {
        startup: Duration::from_secs(2),
        command: Duration::from_secs(2),
        shutdown: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn test_session_against_every_binary() {
    let Some(m) = matrix_or_skip("test_session_against_every_binary") else {
        return;
    };
    for e in &m {
        let mut q = Qemu::spawn(&e.launcher, &base_args(), Timeouts::default())
            .await
            .unwrap_or_else(|err| panic!("{} {}: {err}", e.version, e.arch));
        assert!(q.greeting().get("QMP").is_some());
        let pgid = q.pid().expect("pid");
        let v = q
            .execute_ok("query-version", None)
            .await
            .expect("query-version");
        let major = v
            .pointer("/qemu/major")
            .and_then(|m| m.as_u64())
            .expect("major");
        assert_eq!(
            Some(major.to_string().as_str()),
            e.version.split('.').next()
        );
        // A big single-line reply goes through.
        let schema = q
            .execute_ok("query-qmp-schema", None)
            .await
            .expect("schema");
        assert!(
            schema.as_array().is_some_and(|a| a.len() > 500),
            "{}",
            e.arch
        );
        // A QMP error is a value, not a session failure.
        let err = q
            .execute(
                "device-list-properties",
                Some(json!({"typename": "no-such-device"})),
            )
            .await
            .expect("session alive")
            .expect_err("must be a QMP error");
        assert_eq!(
            err.get("class").and_then(|c| c.as_str()),
            Some("DeviceNotFound")
        );
        let text = q.hmp("info qdm").await.expect("hmp");
        assert!(text.contains("name \""), "{text}");
        let (exit, _stderr) = q.quit().await;
        assert_eq!(exit.code, Some(0), "{} {}", e.version, e.arch);
        assert!(!group_alive(pgid), "process group left behind");
    }
}

#[tokio::test]
async fn test_refused_configuration_reports_exit_code_and_text() {
    let Some(m) = matrix_or_skip("test_refused_configuration_reports_exit_code_and_text") else {
        return;
    };
    let e = m
        .iter()
        .find(|e| e.arch == "x86_64")
        .expect("x86_64 in matrix");
    let mut args = base_args();
    args.extend(["-device".to_owned(), "no-such-device".to_owned()]);
    let err = Qemu::spawn(&e.launcher, &args, Timeouts::default())
        .await
        .expect_err("QEMU must refuse");
    let exit = err.exit().expect("an exit");
    assert_eq!(exit.code, Some(1), "{err}");
    assert!(
        err.stderr()
            .is_some_and(|s| s.contains("'no-such-device' is not a valid device model name")),
        "{err}"
    );
}

#[tokio::test]
async fn test_hang_before_greeting_times_out_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A child process (sleep) that would survive its shell if only the shell were killed.
    let prog = script(dir.path(), "hang", "echo starting >&2\nsleep 1000\n");
    let err = Qemu::spawn(&prog, &[], short())
        .await
        .expect_err("must time out");
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.stderr().is_some_and(|s| s.contains("starting")),
        "{err}"
    );
    // The sleep is a grandchild in the same group: the whole group must be gone.
    assert!(
        !script_group_alive(dir.path()),
        "orphaned sleep left behind"
    );
}

/// Whether the process group of a fake script (which wrote its pid, also its pgid, to
/// `pid` in its directory) still has members.
fn script_group_alive(dir: &Path) -> bool {
    group_alive(script_pid(dir))
}

#[tokio::test]
async fn test_garbage_on_stdout_is_a_protocol_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = script(
        dir.path(),
        "garbage",
        "echo 'this is not QMP'\nsleep 1000\n",
    );
    let err = Qemu::spawn(&prog, &[], short())
        .await
        .expect_err("must fail");
    assert!(matches!(err, QemuError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("this is not QMP"), "{err}");
    assert!(!script_group_alive(dir.path()));
}

#[tokio::test]
async fn test_json_that_is_not_a_greeting_is_a_protocol_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = script(dir.path(), "json", "echo '{\"hello\": 1}'\nsleep 1000\n");
    let err = Qemu::spawn(&prog, &[], short())
        .await
        .expect_err("must fail");
    assert!(
        err.to_string().contains("expected the QMP greeting"),
        "{err}"
    );
    assert!(!script_group_alive(dir.path()));
}

#[tokio::test]
async fn test_program_that_exits_is_not_qemu() {
    let err = Qemu::spawn("/bin/true", &[], short())
        .await
        .expect_err("must fail");
    assert_eq!(err.exit().and_then(|e| e.code), Some(0), "{err}");
    assert!(err.to_string().contains("before the QMP greeting"), "{err}");
}

#[tokio::test]
async fn test_text_file_cannot_be_executed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "just text\n").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let err = Qemu::spawn(&p, &[], short()).await.expect_err("must fail");
    assert!(matches!(err, QemuError::Spawn { .. }), "{err}");
    assert!(
        err.to_string().contains("not an executable program"),
        "{err}"
    );
    let missing = Qemu::spawn(dir.path().join("nope"), &[], short())
        .await
        .expect_err("must fail");
    assert!(missing.to_string().contains("no such file"), "{missing}");
}

#[tokio::test]
async fn test_drop_kills_the_process_group() {
    let Some(m) = matrix_or_skip("test_drop_kills_the_process_group") else {
        return;
    };
    let e = m.first().expect("entry");
    let q = Qemu::spawn(&e.launcher, &base_args(), Timeouts::default())
        .await
        .expect("spawn");
    let pgid = q.pid().expect("pid");
    assert!(group_exists(pgid));
    drop(q);
    assert!(!group_alive(pgid), "QEMU survived the drop of its handle");
}

#[tokio::test]
async fn test_endless_line_is_a_protocol_error_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A hostile peer: a valid greeting, then bytes without a newline, forever. Without a
    // bound the reader grows until the allocator aborts the whole process.
    let prog = script(
        dir.path(),
        "endless",
        "echo '{\"QMP\": {\"version\": {}, \"capabilities\": []}}'\n\
         yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | tr -d '\\n'\n",
    );
    let err = Qemu::spawn(&prog, &[], Timeouts::default())
        .await
        .expect_err("must fail");
    assert!(matches!(err, QemuError::Protocol { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("endless"), "names the binary: {text}");
    assert!(
        text.contains(&format!(
            "longer than {} MiB",
            qconform_qemu::qmp::MAX_LINE >> 20
        )),
        "{text}"
    );
    assert!(text.contains("xxxxxxxx"), "shows how it started: {text}");
    assert!(!script_group_alive(dir.path()), "the peer was left running");
}

/// Whether the process `pid` is gone or a zombie, after giving it up to 5 s.
fn process_ended(pid: u32) -> bool {
    for _ in 0..250 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            // The state follows the parenthesised command name.
            Ok(stat)
                if stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

fn read_pid(path: &Path) -> u32 {
    for _ in 0..250 {
        if let Ok(t) = std::fs::read_to_string(path)
            && let Ok(p) = t.trim().parse()
        {
            return p;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} was not written", path.display());
}

#[tokio::test]
async fn test_a_descendant_that_left_the_group_dies_with_the_launch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gpid = dir.path().join("gpid");
    // The launcher starts a process in a session of its own (so killing the launch's
    // process group does not reach it), then fails to speak QMP.
    let prog = script(
        dir.path(),
        "escaper",
        &format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 1000' </dev/null >/dev/null 2>&1 &\n\
             while [ ! -s {} ]; do sleep 0.01; done\n\
             echo 'not QMP'\nsleep 1000\n",
            gpid.display(),
            gpid.display()
        ),
    );
    let err = Qemu::spawn(&prog, &[], short())
        .await
        .expect_err("must fail");
    assert!(matches!(err, QemuError::Protocol { .. }), "{err}");
    let escaped = read_pid(&gpid);
    let alive = !process_ended(escaped);
    if alive {
        // Ours: the test started it.
        let _ = std::process::Command::new("kill")
            .args(["-9", &escaped.to_string()])
            .status();
    }
    assert!(
        !alive,
        "the setsid grandchild {escaped} survived the launch"
    );
}

#[tokio::test]
async fn test_a_descendant_that_left_the_group_dies_when_qemu_quits() {
    let Some(m) = matrix_or_skip("test_a_descendant_that_left_the_group_dies_when_qemu_quits")
    else {
        return;
    };
    let e = m.first().expect("entry");
    let dir = tempfile::tempdir().expect("tempdir");
    let gpid = dir.path().join("gpid");
    let prog = script(
        dir.path(),
        "launcher",
        &format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 1000' </dev/null >/dev/null 2>&1 &\n\
             exec '{}' \"$@\"\n",
            gpid.display(),
            e.launcher.display()
        ),
    );
    let q = Qemu::spawn(&prog, &base_args(), Timeouts::default())
        .await
        .expect("spawn");
    let escaped = read_pid(&gpid);
    let (exit, stderr) = q.quit().await;
    assert!(exit.success(), "{exit}: {stderr}");
    let alive = !process_ended(escaped);
    if alive {
        let _ = std::process::Command::new("kill")
            .args(["-9", &escaped.to_string()])
            .status();
    }
    assert!(
        !alive,
        "the setsid grandchild {escaped} survived the session"
    );
}

#[test]
fn test_qemu_dies_with_the_thread_that_started_it() {
    let Some(m) = matrix_or_skip("test_qemu_dies_with_the_thread_that_started_it") else {
        return;
    };
    let e = m.first().expect("entry").clone();
    // Start QEMU on a thread of its own, then lose the handle without dropping it (as a
    // SIGKILL of qconform would: no destructor, no kill) and let the thread end.
    let pid = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let q = rt
            .block_on(Qemu::spawn(&e.launcher, &base_args(), Timeouts::default()))
            .expect("spawn");
        let pid = q.pid().expect("pid");
        std::mem::forget(q);
        pid
    })
    .join()
    .expect("thread");
    let ended = process_ended(pid);
    if !ended {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(ended, "QEMU {pid} outlived the thread that started it");
}
