//! `qconform explore` as a user runs it: a few random domains on one real snapshot and its
//! binary from the installed matrix, with the summary as JSON and every disagreement as a
//! case directory; bad usage exits 2.

use std::path::PathBuf;
use std::process::Command;

fn qconform() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qconform"))
}

fn capsdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capsdata")
}

/// Whether the matrix has the binary of the 11.1 x86_64 snapshot. Under CI=true a missing
/// matrix fails the test instead of skipping it.
fn matrix_ready() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let entries = qconform_qemu::matrix::default_root()
        .ok_or_else(|| "no matrix root".to_owned())
        .and_then(|r| qconform_qemu::matrix::read_matrix(&r).map_err(|e| e.to_string()));
    match entries {
        Ok(e) if e.iter().any(|x| x.version == "11.1" && x.arch == "x86_64") => true,
        Ok(_) | Err(_) if ci => panic!(
            "CI=true but the QEMU matrix (11.1 x86_64) is not installed: run runners/scripts/install-matrix.sh"
        ),
        _ => {
            eprintln!("skipped: the QEMU matrix (11.1 x86_64) is not installed");
            false
        }
    }
}

#[test]
fn test_explore_checks_random_domains_on_the_real_binary() {
    if !matrix_ready() {
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let res = qconform()
        .arg("explore")
        .arg("--caps")
        .arg(capsdata().join("caps_11.1.3_x86_64.json"))
        .args([
            "--count", "8", "--jobs", "2", "--seed", "5", "--format", "json",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run qconform");
    let stderr = String::from_utf8_lossy(&res.stderr);
    let code = res.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?} (3 = rig broken):\n{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).expect("one JSON object");
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("no count {k} in {v}"))
    };
    assert_eq!(n("generated"), 8, "{v}");
    assert_eq!(n("accepted") + n("refused"), 8, "{v}");
    assert!(n("started") <= n("accepted"), "{v}");
    assert_eq!(n("rig_errors"), 0, "{v}");
    // Every accepted plan that could run was started: domains on this snapshot need no
    // host resources (unassigned host devices only).
    assert_eq!(n("not_runnable"), 0, "{v}");
    assert_eq!(
        n("agreed") + n("disagreements"),
        n("accepted") + n("refused") - n("unchecked_refusals"),
        "{v}"
    );
    let list = v["disagreement_list"]
        .as_array()
        .expect("disagreement_list");
    assert_eq!(code == Some(1), n("disagreements") > 0, "{v}");
    for d in list {
        let dir = PathBuf::from(d["case_dir"].as_str().expect("case_dir"));
        assert!(dir.starts_with(out.path()), "{}", dir.display());
        let xml = std::fs::read_to_string(dir.join("domain.xml")).expect("domain.xml");
        assert!(xml.contains("<domain type='qemu'>"), "{xml}");
        let toml = std::fs::read_to_string(dir.join("case.toml")).expect("case.toml");
        assert!(toml.contains("[expect]"), "{toml}");
    }
}

#[test]
fn test_explore_bad_usage_exits_2() {
    for args in [
        &["--count", "3", "--time", "10s"][..],
        &["--time", "5d"][..],
        &["--caps", "9.9/x86_64"][..],
        &["--format", "yaml"][..],
    ] {
        let res = qconform()
            .arg("explore")
            .args(args)
            .arg("--caps-dir")
            .arg(capsdata())
            .output()
            .expect("run qconform");
        assert_eq!(
            res.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
}
