//! `qconform qualify` on a real QEMU build that is not in `capsdata/`: the qualify sample of
//! the matrix install (bookworm-security's QEMU 7.2 x86_64 build, an older point release
//! than the matrix's 7.2). Qualified as it is; regressed when the same build is started
//! without its ROM directory, naming the NIC types and QEMU's reason.
//!
//! Skipped with a message when the sample is not installed (runners/scripts/install-matrix.sh
//! installs it); under `CI=true` a missing sample fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn qconform() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qconform"))
}

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
}

/// (launcher, real binary) of the sample, or `None` (skip) when it is not installed.
fn sample(test: &str) -> Option<(PathBuf, PathBuf)> {
    let root = qconform_qemu::matrix::default_root();
    let row = root
        .as_ref()
        .and_then(|r| std::fs::read_to_string(r.join("samples.tsv")).ok())
        .and_then(|t| {
            t.lines()
                .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
                .find(|c| c.len() == 5 && c[1] == "x86_64")
        });
    match row {
        Some(c) => Some((PathBuf::from(&c[2]), PathBuf::from(&c[3]))),
        None => {
            let msg = format!(
                "{test}: the qualify sample is not installed (no samples.tsv under {:?}; run \
                 runners/scripts/install-matrix.sh install)",
                root
            );
            assert!(!ci(), "{msg}");
            eprintln!("{msg}: skipped");
            None
        }
    }
}

fn qualify(qemu: &str, tiers: &str, out: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = qconform()
        .current_dir(top())
        .args([
            "qualify", "--qemu", qemu, "--tiers", tiers, "--format", "json",
        ])
        .arg("--out")
        .arg(out)
        .args(["--jobs", "2"])
        .output()
        .expect("run qconform qualify");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (o.status.code(), v, stderr)
}

#[test]
fn test_qualify_a_build_not_in_capsdata_is_qualified() {
    let Some((launcher, _)) = sample("test_qualify_a_build_not_in_capsdata_is_qualified") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    // The launcher is a script: qualify follows its exec line to the real binary.
    let (code, v, stderr) = qualify(&launcher.to_string_lossy(), "plan,live", out.path());
    let shown = serde_json::to_string_pretty(&v).unwrap_or_default();
    assert_eq!(v["verdict"], "qualified", "{shown}\n{stderr}");
    assert_eq!(code, Some(0), "{shown}\n{stderr}");
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0), "{shown}");
    // Auto baseline: same arch and major.minor among the recorded snapshots.
    let baseline = v["baseline"].as_str().unwrap_or_default();
    assert!(
        baseline.starts_with("7.2.") && baseline.ends_with("/x86_64"),
        "{shown}"
    );
    assert_ne!(
        v["snapshot"], baseline,
        "the sample must not be a recorded build: {shown}"
    );
    for k in ["identical", "drift", "newly_refused", "newly_accepted"] {
        assert!(v["cases"][k].is_u64(), "cases.{k}: {shown}");
    }
    assert!(
        v["cases"]["identical"].as_u64().unwrap_or(0) > 10,
        "{shown}"
    );
    let report = PathBuf::from(v["report"].as_str().unwrap_or_default());
    let html = std::fs::read_to_string(&report).expect("report.html");
    assert!(
        html.contains("id=\"qualify\""),
        "no qualify summary on the page"
    );
    assert!(report.with_file_name("results.jsonl").is_file());
    assert!(report.with_file_name("junit.xml").is_file());
    // Second run: the probe is reused (no QEMU launched for it).
    let (_, again, _) = qualify(&launcher.to_string_lossy(), "plan", out.path());
    assert_eq!(again["probe_cached"], true, "{again}");
    assert_eq!(again["verdict"], "qualified", "{again}");
}

#[test]
fn test_qualify_without_the_rom_directory_is_regressed_naming_nics_and_reason() {
    let Some((launcher, binary)) =
        sample("test_qualify_without_the_rom_directory_is_regressed_naming_nics_and_reason")
    else {
        return;
    };
    let tree = binary
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("tree of usr/bin/qemu-system-x86_64")
        .to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    // The same build, run from a directory whose relative data dir does not exist (QEMU also
    // looks for firmware beside its executable), with a data dir holding everything of the
    // tree's usr/share/qemu except the option ROMs.
    let bin_dir = dir.path().join("usr/bin");
    std::fs::create_dir_all(&bin_dir).expect("mkdir");
    let copy = bin_dir.join("qemu-system-x86_64");
    if std::fs::hard_link(&binary, &copy).is_err() {
        std::fs::copy(&binary, &copy).expect("copy the binary");
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for e in std::fs::read_dir(tree.join("usr/share/qemu")).expect("usr/share/qemu") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("efi-") || name.starts_with("pxe-")) && name.ends_with(".rom") {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), data.join(&name)).expect("symlink");
    }
    let script = dir.path().join("qemu-no-roms");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nQEMU_MODULE_DIR='{}'\nexport QEMU_MODULE_DIR\nexec '{}' -L '{}' -L '{}' \"$@\"\n",
            tree.join("usr/lib/x86_64-linux-gnu/qemu").display(),
            copy.display(),
            data.display(),
            tree.join("usr/share/seabios").display()
        ),
    )
    .expect("write launcher");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let _ = launcher;
    let out = tempfile::tempdir().expect("tempdir");
    let (code, v, stderr) = qualify(&script.to_string_lossy(), "plan", out.path());
    let shown = serde_json::to_string_pretty(&v).unwrap_or_default();
    assert_eq!(v["verdict"], "regressed", "{shown}\n{stderr}");
    assert_eq!(code, Some(1), "{shown}\n{stderr}");
    let failures = v["failures"].as_array().cloned().unwrap_or_default();
    for nic in ["e1000", "rtl8139", "virtio-net-pci"] {
        let f = failures
            .iter()
            .find(|f| {
                f["stage"] == "caps"
                    && f["case"]
                        .as_str()
                        .is_some_and(|c| c.ends_with(&format!(" {nic}@root")))
            })
            .unwrap_or_else(|| panic!("no caps failure for {nic}: {shown}"));
        let msg = f["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("failed to find romfile") && msg.contains(".rom"),
            "{nic}: QEMU's reason missing: {msg}"
        );
    }
}

/// Writes `snap` (a real snapshot with its version changed, i.e. a build no case has goldens
/// of) into `dir`, with the 10.0.2 x86_64 snapshot beside it as its baseline.
fn partial_caps_dir(dir: &Path, edit: impl FnOnce(&mut qconform_caps::Raw)) {
    let base = top().join("capsdata/caps_10.0.2_x86_64.json");
    std::fs::copy(&base, dir.join("caps_10.0.2_x86_64.json")).expect("copy");
    let text = std::fs::read_to_string(&base).expect("read");
    let s = qconform_caps::Snapshot::from_json(&text).expect("snapshot");
    let mut probe = s.probe.clone();
    probe.qemu_version.micro = 9;
    let mut raw = s.raw.clone();
    edit(&mut raw);
    let new = qconform_caps::Snapshot::new(probe, raw).expect("derive");
    std::fs::write(dir.join(new.file_name()), new.to_canonical_json()).expect("write");
}

fn run_plan(caps: &Path, out: &Path) -> (Option<i32>, String) {
    let o = qconform()
        .current_dir(top())
        .args(["run", "--tiers", "plan", "--no-probe", "--filter", "x86_64"])
        .arg("--caps-dir")
        .arg(caps)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run qconform run");
    (
        o.status.code(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn test_run_over_a_partial_caps_dir_compares_an_unblessed_snapshot_with_its_baseline() {
    // Only two snapshots: the goldens of the 18 others are not "unused files"; the 10.0.9
    // snapshot has no goldens and is compared with 10.0.2's.
    let caps = tempfile::tempdir().expect("tempdir");
    partial_caps_dir(caps.path(), |_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let (code, text) = run_plan(caps.path(), out.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    // The comparison is real: without the recorded e1000 identities the 10.0.9 plans of the
    // cases with an e1000 differ from 10.0.2's goldens.
    let caps = tempfile::tempdir().expect("tempdir");
    partial_caps_dir(caps.path(), |raw| {
        for p in raw.pci_identity.values_mut() {
            if let Some(pci) = p.query_pci.as_mut() {
                strip_device(pci, 0x100e);
            }
        }
    });
    let (code, text) = run_plan(caps.path(), out.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("compared with the baseline 10.0.2/x86_64's goldens"),
        "{text}"
    );
    assert!(text.contains("@10.0.9/x86_64"), "{text}");
}

/// Removes the functions of PCI device id `device` (vendor 0x8086) from a `query-pci` reply.
fn strip_device(v: &mut serde_json::Value, device: u64) {
    match v {
        serde_json::Value::Array(items) => {
            items.retain(|i| {
                !(i["id"]["device"].as_u64() == Some(device)
                    && i["id"]["vendor"].as_u64() == Some(0x8086))
            });
            for i in items {
                strip_device(i, device);
            }
        }
        serde_json::Value::Object(m) => {
            for (_, x) in m.iter_mut() {
                strip_device(x, device);
            }
        }
        _ => {}
    }
}
