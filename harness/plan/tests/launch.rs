//! Launches the generated argv on the real QEMU binaries of the matrix: every accepted
//! plan of the case corpus that needs no host resource must start (`-S`, TCG) and answer
//! QMP. Needs the installed matrix (runners/scripts/install-matrix.sh), so it is opt-in:
//!
//! ```text
//! cargo test -p qconform-plan --test launch -- --ignored
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qconform_caps::Snapshot;

fn matrix_root() -> PathBuf {
    match std::env::var_os("QCONFORM_MATRIX_ROOT") {
        Some(r) => PathBuf::from(r),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/qconform/matrix")
        }
    }
}

/// (version major.minor, arch) → launcher.
fn launchers() -> Vec<(String, String, PathBuf)> {
    let tsv = matrix_root().join("matrix.tsv");
    let text = std::fs::read_to_string(&tsv)
        .unwrap_or_else(|e| panic!("{}: {e} (install the matrix first)", tsv.display()));
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[1].to_string(), PathBuf::from(f[2])))
        })
        .collect()
}

/// Starts QEMU with `argv -S -accel tcg -qmp stdio`, negotiates QMP and quits. Returns
/// QEMU's stderr on failure.
fn launch(launcher: &Path, argv: &[String]) -> Result<(), String> {
    let mut child = Command::new(launcher)
        .args(argv)
        .args(["-S", "-accel", "tcg", "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", launcher.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // QEMU reads these after its greeting; quit makes it exit 0.
        let _ = stdin.write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no exit within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "launches QEMU from the installed matrix"]
fn generated_argv_starts_on_the_real_binaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(root.join("capsdata"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    snaps.sort();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path().join("domain.xml")))
        .filter(|p| p.exists())
        .collect();
    cases.sort();
    let launchers = launchers();
    let (mut started, mut failures) = (0, Vec::new());
    for s in &snaps {
        let caps = Snapshot::from_json(&std::fs::read_to_string(s).unwrap()).unwrap();
        let v = caps.probe.qemu_version;
        let mm = format!("{}.{}", v.major, v.minor);
        let Some((_, _, launcher)) = launchers
            .iter()
            .find(|(ver, arch, _)| *ver == mm && *arch == caps.probe.arch)
        else {
            continue;
        };
        for c in &cases {
            let xml = std::fs::read_to_string(c).unwrap();
            let Ok(p) = qconform_plan::plan(&xml, &caps) else {
                continue;
            };
            if !p.host_resources.is_empty() {
                continue;
            }
            match launch(launcher, &p.argv) {
                Ok(()) => started += 1,
                Err(e) => failures.push(format!(
                    "{} on {}: {e}\n  {}",
                    c.display(),
                    caps.id(),
                    p.argv.join(" ")
                )),
            }
        }
    }
    assert!(started > 0, "nothing launched");
    assert!(
        failures.is_empty(),
        "{} launches failed ({started} started):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{started} generated command lines started");
}
