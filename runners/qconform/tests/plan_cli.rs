//! `qconform plan --caps` as a user runs it: a short snapshot id resolves in `--caps-dir`
//! as in `qconform caps show`, and an unknown id is a usage error that lists the snapshots.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plan(caps: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qconform"))
        .arg("plan")
        .arg(root().join("cases/q35-oracle-mixed/domain.xml"))
        .args(["--caps", caps])
        .args(extra)
        .output()
        .expect("run qconform")
}

#[test]
fn test_plan_caps_accepts_a_short_snapshot_id() {
    let dir = root().join("capsdata");
    let dir = dir.to_str().expect("utf-8 path");
    let file = root().join("capsdata/caps_11.1.3_x86_64.json");
    let by_file = plan(file.to_str().expect("utf-8 path"), &[]);
    assert!(
        by_file.status.success(),
        "{}",
        String::from_utf8_lossy(&by_file.stderr)
    );
    for id in ["11.1/x86_64", "11.1.3_x86_64", "caps_11.1.3_x86_64.json"] {
        let by_id = plan(id, &["--caps-dir", dir]);
        assert!(
            by_id.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&by_id.stderr)
        );
        assert_eq!(by_id.stdout, by_file.stdout, "{id}");
    }
    // A version prefix picks the newest snapshot with that prefix: 7.2 is 7.2.22.
    let short = plan("7.2/x86_64", &["--caps-dir", dir]);
    let long = plan(
        root()
            .join("capsdata/caps_7.2.22_x86_64.json")
            .to_str()
            .expect("utf-8 path"),
        &[],
    );
    assert!(short.status.success());
    assert_eq!(short.stdout, long.stdout);
}

#[test]
fn test_plan_caps_unknown_id_is_a_usage_error() {
    let dir = root().join("capsdata");
    let out = plan(
        "9.9/x86_64",
        &["--caps-dir", dir.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot 9.9/x86_64"), "{err}");
    assert!(err.contains("11.1.3/x86_64"), "{err}");
}
