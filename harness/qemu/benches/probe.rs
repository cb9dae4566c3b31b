//! Probe cost on the installed matrix (a benchmark, not a test: it reports, it does not
//! assert). Run with `cargo bench -p qconform-qemu --bench probe` (add `-- --jobs N` to change
//! the number of concurrent QEMU processes, default 2).
//!
//! Reports, each as the median of several rounds:
//! * launch floor: every binary spawned → QMP greeting → capabilities → quit;
//! * basic probe: every binary's binary-wide queries (`--machines none`, no identity), with
//!   the binary hash; also without the hash, to show what hashing costs;
//! * full probe: every machine of every binary plus the PCI identity launches (one round).

use std::sync::Arc;
use std::time::{Duration, Instant};

use qconform_qemu::matrix::{self, MatrixEntry};
use qconform_qemu::probe::{MachineSelection, ProbeConfig, ProbeTarget, probe_binary, sha256_file};
use qconform_qemu::{Qemu, Timeouts};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

fn args() -> Vec<String> {
    [
        "-machine",
        "none",
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
    .collect()
}

async fn floor(m: &[MatrixEntry], jobs: usize) -> Duration {
    let limit = Arc::new(Semaphore::new(jobs));
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for e in m {
        let limit = Arc::clone(&limit);
        let launcher = e.launcher.clone();
        set.spawn(async move {
            let _p = limit.acquire().await;
            let q = Qemu::spawn(&launcher, &args(), Timeouts::default())
                .await
                .expect("launch");
            let _ = q.quit().await;
        });
    }
    while set.join_next().await.is_some() {}
    t0.elapsed()
}

async fn probe_all(m: &[MatrixEntry], jobs: usize, config: ProbeConfig) -> Duration {
    let limit = Arc::new(Semaphore::new(jobs));
    let config = Arc::new(config);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for e in m {
        let limit = Arc::clone(&limit);
        let config = Arc::clone(&config);
        let t = ProbeTarget {
            launcher: e.launcher.clone(),
            binary: e.binary.clone(),
        };
        set.spawn(async move {
            probe_binary(&t, &config, limit, Arc::new(|_| {}))
                .await
                .expect("probe")
        });
    }
    while set.join_next().await.is_some() {}
    t0.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let mut jobs = 2usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--jobs" {
            jobs = it.next().and_then(|n| n.parse().ok()).unwrap_or(2);
        }
    }
    let m = match matrix::installed() {
        Ok(m) if !m.is_empty() => m,
        Ok(_) | Err(_) => {
            eprintln!("probe bench: skipped: the QEMU matrix is not installed");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rounds = 5;
    let basic = ProbeConfig {
        machines: MachineSelection::None,
        identity: false,
        ..ProbeConfig::default()
    };
    // Warm the page cache once so that no round pays for the first read of the binaries.
    rt.block_on(floor(&m, jobs));
    let hash_t0 = Instant::now();
    for e in &m {
        let _ = sha256_file(&e.binary);
    }
    let hash = hash_t0.elapsed();
    let floors: Vec<Duration> = (0..rounds).map(|_| rt.block_on(floor(&m, jobs))).collect();
    let basics: Vec<Duration> = (0..rounds)
        .map(|_| rt.block_on(probe_all(&m, jobs, basic.clone())))
        .collect();
    let full = rt.block_on(probe_all(&m, jobs, ProbeConfig::default()));
    let f = median(floors);
    let b = median(basics);
    println!(
        "probe bench: {} binaries, {jobs} concurrent QEMU processes, {} CPUs",
        m.len(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "  launch floor (spawn -> greeting -> quit), whole matrix: {:8.3} s",
        f.as_secs_f64()
    );
    println!(
        "  basic probe (-machine none queries + hash), whole matrix: {:8.3} s  ({:.2}x floor)",
        b.as_secs_f64(),
        b.as_secs_f64() / f.as_secs_f64().max(1e-9)
    );
    println!(
        "    of which hashing the binaries (sequential, measured apart): {:8.3} s",
        hash.as_secs_f64()
    );
    println!(
        "  full probe (every machine + PCI identity), whole matrix: {:8.3} s",
        full.as_secs_f64()
    );
}
