//! Throughput of `qconform explore`: domains generated, planned and verified on the real
//! QEMU binary per second, with 2 concurrent QEMU processes (the CI machine's cores).
//!
//! Not a criterion benchmark: one verified domain costs a QEMU launch (hundreds of
//! milliseconds), so the bench runs a fixed count per snapshot and prints the rates.
//! `cargo bench -p qconform-conformance --bench explore [-- COUNT]`; needs the QEMU matrix
//! (runners/scripts/install-matrix.sh).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use qconform_conformance::binaries::BinaryIndex;
use qconform_conformance::config::default_cache_dir;
use qconform_conformance::explore::{self, Budget, Quiet, Settings};
use qconform_conformance::load_snapshots;
use qconform_conformance::rig::Rig;

fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let caps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capsdata");
    let wanted = [
        "caps_11.1.3_x86_64.json".to_owned(),
        "caps_11.1.3_aarch64.json".to_owned(),
        "caps_11.1.3_s390x.json".to_owned(),
    ];
    let snaps = load_snapshots(&caps, Some(&wanted));
    let matrix = qconform_qemu::matrix::default_root();
    let binaries = BinaryIndex::new(matrix.as_deref(), default_cache_dir().as_deref());
    let rig = Rig::new(
        2,
        binaries,
        None,
        Duration::from_secs(120),
        Duration::from_secs(120),
    )
    .expect("runtime");
    let settings = Settings {
        seed: 1,
        budget: Budget::Count(count),
        out: None,
        minimize_budget: 0,
        jobs: 2,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    println!("explore throughput, 2 jobs, {count} domains per snapshot (minimisation off)");
    let mut total_started = 0;
    let mut total_generated = 0;
    let t0 = Instant::now();
    for snap in &snaps.snapshots {
        let bin = match rig.binaries.locate(snap) {
            Ok(b) => b,
            Err(e) => {
                println!("{:<16} skipped: {e}", snap.id);
                continue;
            }
        };
        let r = explore::explore_snapshot(snap, &bin, &rig, &settings, None, &Quiet);
        let c = &r.counts;
        total_started += c.started;
        total_generated += c.generated;
        println!(
            "{:<16} {:>4} domains in {:>6.1}s: {:>5.2} domains/s, {:>5.2} verified on QEMU/s ({} started, {} refused by the plan)",
            r.snapshot,
            c.generated,
            r.seconds,
            c.generated as f64 / r.seconds.max(1e-9),
            c.started as f64 / r.seconds.max(1e-9),
            c.started,
            c.refused
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "total            {total_generated:>4} domains in {secs:>6.1}s: {:>5.2} domains/s, {:>5.2} verified on QEMU/s",
        total_generated as f64 / secs.max(1e-9),
        total_started as f64 / secs.max(1e-9)
    );
}
