//! `qconform probe` and `qconform caps` as a user runs them: seed 004's questions answered
//! from the committed snapshots, clear errors for programs that are not QEMU, and Ctrl-C in
//! the middle of a probe (or SIGHUP) leaving neither a QEMU process nor a partial snapshot.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qconform() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qconform"))
}

fn capsdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capsdata")
}

fn show(args: &[&str]) -> String {
    let out = qconform()
        .args(["caps", "show"])
        .args(args)
        .arg("--caps-dir")
        .arg(capsdata())
        .output()
        .expect("run qconform");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn category_line(text: &str, cat: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(cat))
        .unwrap_or_else(|| panic!("no {cat} line in:\n{text}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn test_caps_show_answers_machine_fit_questions() {
    for v in ["7.2", "10.0", "11.1"] {
        let id = format!("{v}/x86_64");
        let pc = show(&[&id, "--machine", "pc"]);
        assert_eq!(category_line(&pc, "floppy"), "floppy yes", "{pc}");
        assert!(pc.contains("default PCI bus: pci.0 (PCI)"), "{pc}");
        let q35 = show(&[&id, "--machine", "q35"]);
        assert_eq!(category_line(&q35, "floppy"), "floppy no", "{q35}");
        assert_eq!(category_line(&q35, "pcie"), "pcie yes", "{q35}");
        assert!(q35.contains("default PCI bus: pcie.0 (PCIE)"), "{q35}");
        let s390 = show(&[&format!("{v}/s390x"), "--machine", "s390-ccw-virtio"]);
        assert!(s390.contains("default PCI bus: pci.0 (PCI)"), "{s390}");
        assert_eq!(category_line(&s390, "zpci"), "zpci yes");
        assert_eq!(category_line(&s390, "ccw"), "ccw yes");
    }
    let json = show(&["11.1.3_x86_64", "--machine", "q35", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["machine"], "pc-q35-11.1");
    assert_eq!(v["caps"]["default_pci_bus"]["id"], "pcie.0");
}

#[test]
fn test_caps_list_and_unknown_ids() {
    let out = qconform()
        .args(["caps", "list", "--caps-dir"])
        .arg(capsdata())
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 21, "{text}"); // header + 5 arches x 4 versions
    assert!(text.contains("11.1.3   s390x"), "{text}");
    let out = qconform()
        .args(["caps", "show", "9.9/x86_64", "--caps-dir"])
        .arg(capsdata())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot 9.9/x86_64"));
    let out = qconform()
        .args([
            "caps",
            "show",
            "11.1/x86_64",
            "--machine",
            "no-such",
            "--caps-dir",
        ])
        .arg(capsdata())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no machine \"no-such\""));
}

#[test]
fn test_probe_of_something_that_is_not_qemu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qconform()
        .args(["probe", "--qemu", "/bin/true", "--caps-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("before the QMP greeting"));
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello\n").expect("write");
    let out = qconform()
        .arg("probe")
        .arg("--qemu")
        .arg(&txt)
        .arg("--caps-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an ELF binary"));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

/// Pids of live processes whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for ent in rd.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()) {
            // Zombies awaiting their reaper no longer run anything.
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if !zombie {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn test_ctrl_c_mid_probe_leaves_no_qemu_and_no_file() {
    interrupt_mid_probe(rustix::process::Signal::INT);
}

/// A closed terminal (SIGHUP) stops a probe like Ctrl-C: before, SIGHUP killed the CLI
/// and left its QEMU processes running.
#[test]
fn test_sighup_mid_probe_leaves_no_qemu_and_no_file() {
    interrupt_mid_probe(rustix::process::Signal::HUP);
}

fn interrupt_mid_probe(signal: rustix::process::Signal) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let m = match qconform_qemu::matrix::installed() {
        Ok(m) => m,
        Err(e) => {
            assert!(!ci, "CI=true and no QEMU matrix: {e}");
            eprintln!("interrupt_mid_probe({signal:?}): skipped: {e}");
            return;
        }
    };
    let Some(e) = m.iter().find(|e| e.arch == "aarch64") else {
        assert!(!ci, "CI=true and no aarch64 binary in the matrix");
        eprintln!("no aarch64 binary in the matrix: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("QCONFORM_TEST_MARKER={}-{}", std::process::id(), line!());
    let (k, v) = marker.split_once('=').expect("marker");
    let mut child = qconform()
        .arg("probe")
        .arg("--qemu")
        .arg(format!("{}={}", e.launcher.display(), e.binary.display()))
        .arg("--caps-dir")
        .arg(dir.path())
        .args(["--jobs", "2"])
        .env(k, v)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qconform");
    let cli = child.id();
    // Wait until QEMU processes of this probe run, then interrupt the CLI.
    assert!(
        wait_for(Duration::from_secs(30), || marked_processes(&marker)
            .iter()
            .any(|p| *p != cli)),
        "no QEMU started"
    );
    let pid = rustix::process::Pid::from_raw(i32::try_from(cli).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, signal).expect("signal");
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        wait_for(Duration::from_secs(5), || marked_processes(&marker)
            .is_empty()),
        "QEMU processes left behind: {:?}",
        marked_processes(&marker)
    );
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
}

/// `probe` writes a snapshot through a symbolic link instead of replacing the link (the
/// link points into another directory; before, the link became a regular file).
#[test]
fn test_probe_writes_through_a_symlinked_snapshot() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let m = match qconform_qemu::matrix::installed() {
        Ok(m) => m,
        Err(e) => {
            assert!(!ci, "CI=true and no QEMU matrix: {e}");
            eprintln!("test_probe_writes_through_a_symlinked_snapshot: skipped: {e}");
            return;
        }
    };
    let Some(e) = m.iter().find(|e| e.arch == "aarch64") else {
        assert!(!ci, "CI=true and no aarch64 binary in the matrix");
        eprintln!("no aarch64 binary in the matrix: skipped");
        return;
    };
    let caps = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let probe = || {
        let out = qconform()
            .arg("probe")
            .arg("--qemu")
            .arg(format!("{}={}", e.launcher.display(), e.binary.display()))
            .args(["--machines", "none", "--no-identity", "--caps-dir"])
            .arg(caps.path())
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
    };
    probe();
    let files: Vec<PathBuf> = std::fs::read_dir(caps.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let [snap] = files.as_slice() else {
        panic!("one snapshot expected: {files:?}");
    };
    let bytes = std::fs::read(snap).expect("read");
    let target = elsewhere.path().join("kept-here.json");
    std::fs::write(&target, "stale\n").expect("write");
    std::fs::remove_file(snap).expect("rm");
    std::os::unix::fs::symlink(&target, snap).expect("symlink");
    probe();
    assert!(
        std::fs::symlink_metadata(snap)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(std::fs::read(&target).expect("read"), bytes);
    for d in [caps.path(), elsewhere.path()] {
        assert_eq!(std::fs::read_dir(d).expect("dir").count(), 1, "{d:?}");
    }
}
