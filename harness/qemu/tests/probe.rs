//! The probe plan against real QEMU: deterministic snapshots, agreement with the committed
//! ones, and recorded (never fatal) failures for machines that abort, hang or speak no QMP.
//! Skipped with a message when the QEMU matrix is not installed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use qconform_caps::{LaunchOutcome, Snapshot};
use qconform_qemu::Timeouts;
use qconform_qemu::matrix::{self, MatrixEntry};
use qconform_qemu::probe::{
    MachineSelection, ProbeConfig, ProbeError, ProbeTarget, probe_binary, probe_machine,
};
use tokio::sync::Semaphore;

mod common;
use common::{group_gone, matrix_or_skip, script, script_pid};

fn target(e: &MatrixEntry) -> ProbeTarget {
    ProbeTarget {
        launcher: e.launcher.clone(),
        binary: e.binary.clone(),
    }
}

fn glob(g: &str) -> MachineSelection {
    MachineSelection::Glob(globset::Glob::new(g).expect("glob").compile_matcher())
}

async fn probe(t: &ProbeTarget, config: &ProbeConfig) -> Result<Snapshot, ProbeError> {
    probe_binary(t, config, Arc::new(Semaphore::new(2)), Arc::new(|_| {})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_same_binary_gives_identical_bytes_and_matches_committed_snapshot() {
    let Some(m) = matrix_or_skip("test_same_binary_gives_identical_bytes") else {
        return;
    };
    let e = matrix::find(&m, "11.1", "x86_64").expect("11.1 x86_64 installed");
    let config = ProbeConfig {
        machines: glob("{pc,q35,isapc}"),
        ..ProbeConfig::default()
    };
    let a = probe(&target(e), &config).await.expect("probe 1");
    let b = probe(&target(e), &config).await.expect("probe 2");
    assert_eq!(
        a.to_canonical_json(),
        b.to_canonical_json(),
        "probe is not deterministic"
    );
    assert_eq!(
        a.raw
            .machines
            .values()
            .filter(|p| p.outcome == LaunchOutcome::Started)
            .count(),
        3
    );
    assert!(
        a.raw
            .machines
            .values()
            .any(|p| p.outcome == LaunchOutcome::Skipped)
    );

    // Same binary as the committed snapshot: the launches made must have given the same
    // records (the committed file probed every machine).
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../capsdata")
        .join(a.file_name());
    let Ok(text) = std::fs::read_to_string(&committed) else {
        eprintln!("no committed {}: comparison skipped", committed.display());
        return;
    };
    let c = Snapshot::from_json(&text).expect("committed snapshot reads");
    if c.probe.binary_sha256 != a.probe.binary_sha256 {
        eprintln!("installed binary differs from the committed snapshot's: comparison skipped");
        return;
    }
    for (name, p) in &a.raw.machines {
        if p.outcome != LaunchOutcome::Skipped {
            assert_eq!(Some(p), c.raw.machines.get(name), "machine {name}");
        }
    }
    assert_eq!(a.raw.pci_identity, c.raw.pci_identity);
    assert_eq!(a.index.pci_ids, c.index.pci_ids);
    assert_eq!(a.raw.qmp_schema, c.raw.qmp_schema);
}

#[tokio::test]
async fn test_musicpal_abort_is_a_recorded_failure() {
    let Some(m) = matrix_or_skip("test_musicpal_abort_is_a_recorded_failure") else {
        return;
    };
    for v in ["10.0", "11.1"] {
        let Some(e) = matrix::find(&m, v, "aarch64") else {
            eprintln!("{v} aarch64 not installed: skipped");
            continue;
        };
        // Without -audio none these releases abort in audio_init() on musicpal.
        let args: Vec<String> = [
            "-machine",
            "musicpal",
            "-nodefaults",
            "-S",
            "-display",
            "none",
            "-qmp",
            "stdio",
            "-accel",
            "tcg",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let p = probe_machine(&e.launcher, args, Timeouts::default()).await;
        assert_eq!(p.outcome, LaunchOutcome::Failed, "{v}");
        assert_eq!(p.signal, Some(6), "{v}: {p:?}");
        assert_eq!(p.exit_code, None);
        assert!(p.stderr.contains("audio"), "{v}: {}", p.stderr);
        assert!(p.query_pci.is_none() && p.info_qtree.is_none());
    }
}

#[tokio::test]
async fn test_hanging_machine_is_a_recorded_timeout_without_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = script(dir.path(), "hang", "echo 'about to hang' >&2\nsleep 1000\n");
    let t = Timeouts {
        startup: Duration::from_secs(1),
        command: Duration::from_secs(1),
        shutdown: Duration::from_secs(5),
    };
    let p = probe_machine(&prog, vec!["-machine".into(), "x".into()], t).await;
    assert_eq!(p.outcome, LaunchOutcome::Timeout);
    assert!(p.stderr.contains("about to hang"), "{}", p.stderr);
    assert!(group_gone(script_pid(dir.path())), "sleep left behind");
}

#[tokio::test]
async fn test_garbage_on_qmp_is_a_recorded_failure_without_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = script(
        dir.path(),
        "noise",
        "echo '<html>not qmp</html>'\nsleep 1000\n",
    );
    let p = probe_machine(&prog, Vec::new(), Timeouts::default()).await;
    assert_eq!(p.outcome, LaunchOutcome::Failed);
    assert!(p.stderr.contains("not QMP"), "{}", p.stderr);
    assert!(group_gone(script_pid(dir.path())), "sleep left behind");
}

#[tokio::test]
async fn test_program_that_is_not_qemu_is_a_clear_probe_error() {
    let t = ProbeTarget {
        launcher: PathBuf::from("/bin/true"),
        binary: PathBuf::from("/bin/true"),
    };
    let err = probe(&t, &ProbeConfig::default())
        .await
        .expect_err("not QEMU");
    let text = err.to_string();
    assert!(
        text.contains("/bin/true") && text.contains("before the QMP greeting"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let txt = dir.path().join("qemu.txt");
    std::fs::write(&txt, "not a program\n").expect("write");
    let t = ProbeTarget {
        launcher: txt.clone(),
        binary: txt,
    };
    let err = probe(&t, &ProbeConfig::default())
        .await
        .expect_err("not QEMU");
    assert!(err.to_string().contains("cannot execute"), "{err}");
}
