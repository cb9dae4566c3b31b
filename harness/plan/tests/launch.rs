//! Launches the generated argv on the real QEMU binaries of the matrix: every accepted
//! plan of the case corpus that needs no host resource must start (`-S`, TCG) and answer
//! QMP. Needs the installed matrix (runners/scripts/install-matrix.sh), so it is opt-in:
//!
//! ```text
//! cargo test -p qconform-plan --test launch -- --ignored
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use qconform_caps::Snapshot;
use qconform_qemu::live::{Attempt, try_argv};
use qconform_qemu::matrix;
use qconform_qemu::qmp::Timeouts;

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
    let matrix = matrix::installed().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut started, mut failures) = (0, Vec::new());
    for s in &snaps {
        let caps = Snapshot::from_json(&std::fs::read_to_string(s).unwrap()).unwrap();
        let v = caps.probe.qemu_version;
        let mm = format!("{}.{}", v.major, v.minor);
        let Some(entry) = matrix::find(&matrix, &mm, &caps.probe.arch) else {
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
            // Started at -S with TCG and QMP on stdio; QEMU answers QMP only once every
            // device is realized.
            let attempt = runtime.block_on(try_argv(&entry.launcher, &p.argv, Timeouts::default()));
            let refusal = match attempt {
                Ok(Attempt::Started { .. }) => {
                    started += 1;
                    continue;
                }
                Ok(Attempt::Refused { exit, stderr, .. }) => format!("{exit}: {}", stderr.trim()),
                Err(e) => e.to_string(),
            };
            failures.push(format!(
                "{} on {}: {refusal}\n  {}",
                c.display(),
                caps.id(),
                p.argv.join(" ")
            ));
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
