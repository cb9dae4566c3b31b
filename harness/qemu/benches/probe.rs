//! Probe cost on the installed matrix (a benchmark, not a test: it reports, it does not
//! assert). Run with `cargo bench -p qconform-qemu --bench probe` (add `-- --jobs N` to change
//! the number of concurrent QEMU processes, default 2).
//!
//! Reports, per binary (medians; `--only 11.1/x86` selects binaries):
//! * launch floor: spawn → QMP greeting → capabilities → quit;
//! * cold `probe --machines none`: the binary-wide queries (two pipelined batches), the hash
//!   and the PCI identity launches (independent launches at once, `--jobs` at a time);
//! * warm: the same binary again, answered by the identity cache (`ProbeCache`: path, size,
//!   mtime of launcher and binary) without any QEMU launch;
//!
//! side by side, as multiples of the floor. `--full` adds one full probe of the whole matrix.
//!
//! Measured on the 2-core machine, idle (load average 1.5–2), 20 binaries, `--jobs 2`, two
//! runs: floor 20–36 ms per binary (558–569 ms summed), cold 0.28–0.77 s (10.2–10.9 s
//! summed: 18.3x–19.2x the floor; 12.0x–25.7x per binary, within 15x for the s390x binaries
//! of 10.0 and 11.1 and 5.2 aarch64 in both runs), warm 0.010–0.1 ms (0.001x: no launch).
//! The warm target (<= 1x) holds; the cold target (<= 15x) does not for x86_64, aarch64,
//! riscv64 and ppc64. Before the identity rounds (a refusal at the first device counts as
//! alone, types refused in company retried alone side by side, no bare machine launch,
//! expanders once the root bus is known, identity started after the first QMP batch, eight
//! devices to a holder port) the same run on a loaded machine gave 43.6x, and 10.0/x86_64
//! idle 40.9x (now 22.8x–24.1x). What is left is QEMU's own work, not waiting: on
//! 10.0/x86_64 the basic launch keeps one of the two slots 0.17 s (the QMP schema and 114
//! `device-list-properties` answers), and the 16 identity launches (about 170 devices, each
//! realized by QEMU in about 2 ms more in company, over a 34 ms bare q35 start) add up to
//! about 1 s of slot time, so no schedule on two CPUs finishes much under 0.6 s (21x).

use std::sync::Arc;
use std::time::{Duration, Instant};

use qconform_qemu::matrix::{self, MatrixEntry};
use qconform_qemu::probe::{
    MachineSelection, ProbeCache, ProbeConfig, ProbeTarget, probe_binary, sha256_file,
};
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

/// Launch floor of one binary: spawn, QMP greeting and capabilities, quit.
async fn floor_one(e: &MatrixEntry) -> Duration {
    let t0 = Instant::now();
    let q = Qemu::spawn(&e.launcher, &args(), Timeouts::default())
        .await
        .expect("launch");
    let _ = q.quit().await;
    t0.elapsed()
}

/// Cold `probe --machines none` of one binary (binary-wide queries, hash and the PCI
/// identity launches), `jobs` QEMU processes at once.
async fn cold_one(e: &MatrixEntry, jobs: usize) -> (Duration, qconform_caps::Snapshot) {
    let config = ProbeConfig {
        machines: MachineSelection::None,
        ..ProbeConfig::default()
    };
    let t = ProbeTarget {
        launcher: e.launcher.clone(),
        binary: e.binary.clone(),
    };
    let t0 = Instant::now();
    let s = probe_binary(
        &t,
        &config,
        Arc::new(Semaphore::new(jobs)),
        Arc::new(|_| {}),
    )
    .await
    .expect("probe");
    (t0.elapsed(), s)
}

fn main() {
    let mut jobs = 2usize;
    let mut full = false;
    let mut only: Option<String> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jobs" => jobs = it.next().and_then(|n| n.parse().ok()).unwrap_or(2),
            "--full" => full = true,
            "--only" => only = it.next(),
            _ => {}
        }
    }
    let m = match matrix::installed() {
        Ok(m) if !m.is_empty() => m,
        Ok(_) | Err(_) => {
            eprintln!("probe bench: skipped: the QEMU matrix is not installed");
            return;
        }
    };
    let m: Vec<MatrixEntry> = m
        .into_iter()
        .filter(|e| {
            only.as_deref()
                .is_none_or(|o| format!("{}/{}", e.version, e.arch).contains(o))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache_dir = tempfile_dir();
    println!(
        "probe bench: {} binaries, {jobs} concurrent QEMU processes, {} CPUs (medians)",
        m.len(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "  {:<16} {:>9} {:>10} {:>7} {:>10} {:>7}",
        "binary", "floor ms", "cold ms", "cold/x", "warm ms", "warm/x"
    );
    let (mut sf, mut sc, mut sw) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for e in &m {
        // Warm the page cache once so that no round pays for the first read of the binary.
        rt.block_on(floor_one(e));
        let f = median((0..5).map(|_| rt.block_on(floor_one(e))).collect());
        let mut last = None;
        let c = median(
            (0..3)
                .map(|_| {
                    let (d, s) = rt.block_on(cold_one(e, jobs));
                    last = Some(s);
                    d
                })
                .collect(),
        );
        // Warm: the same binary again, answered from the identity cache without a launch.
        let snap = last.expect("one cold round");
        let t = ProbeTarget {
            launcher: e.launcher.clone(),
            binary: e.binary.clone(),
        };
        let key = ProbeConfig {
            machines: MachineSelection::None,
            ..ProbeConfig::default()
        }
        .cache_key();
        let file = cache_dir.join(snap.file_name());
        std::fs::write(&file, snap.to_canonical_json()).expect("write snapshot");
        let mut cache = ProbeCache::open(&cache_dir.join("probe-cache.tsv"));
        cache
            .record(&t, &key, &snap.probe.binary_sha256, &file)
            .expect("record");
        let w = median(
            (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    let cache = ProbeCache::open(&cache_dir.join("probe-cache.tsv"));
                    let hit = cache.lookup(&t, &key);
                    let d = t0.elapsed();
                    assert!(hit.is_some(), "warm lookup missed");
                    d
                })
                .collect(),
        );
        let ratio = |d: Duration| d.as_secs_f64() / f.as_secs_f64().max(1e-9);
        println!(
            "  {:<16} {:>9.1} {:>10.1} {:>6.1}x {:>10.3} {:>6.3}x",
            format!("{}/{}", e.version, e.arch),
            f.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            ratio(c),
            w.as_secs_f64() * 1e3,
            ratio(w)
        );
        sf += f;
        sc += c;
        sw += w;
    }
    let r = |d: Duration| d.as_secs_f64() / sf.as_secs_f64().max(1e-9);
    println!(
        "  {:<16} {:>9.1} {:>10.1} {:>6.1}x {:>10.3} {:>6.3}x",
        "sum",
        sf.as_secs_f64() * 1e3,
        sc.as_secs_f64() * 1e3,
        r(sc),
        sw.as_secs_f64() * 1e3,
        r(sw)
    );
    println!("  targets: cold <= 15x floor, warm <= 1x floor (no QEMU launch)");
    let _ = std::fs::remove_dir_all(&cache_dir);
    if full {
        let hash_t0 = Instant::now();
        for e in &m {
            let _ = sha256_file(&e.binary);
        }
        let hash = hash_t0.elapsed();
        let fl = rt.block_on(floor(&m, jobs));
        let all = rt.block_on(probe_all(&m, jobs, ProbeConfig::default()));
        println!(
            "  whole matrix: floor {:.3} s, full probe (every machine + PCI identity) {:.3} s, hashing {:.3} s",
            fl.as_secs_f64(),
            all.as_secs_f64(),
            hash.as_secs_f64()
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("qconform-probe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
