//! Replay cost: every case of `cases/` planned against every applicable snapshot of
//! `capsdata/` (the plan tier without file I/O), and the whole plan tier as the runner
//! runs it (plans plus golden comparison). Loading the snapshots is measured once.
//!
//! `cargo bench -p qconform-conformance --bench replay`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use qconform_conformance::config::{Config, GuestSelection, Tiers};
use qconform_conformance::{build_trials, gate, load_corpus, load_snapshots, planview};
use qconform_reports::results::Stage;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn replay(c: &mut Criterion) {
    let ws = workspace();
    let t0 = Instant::now();
    let snaps = load_snapshots(&ws.join("capsdata"), None);
    eprintln!(
        "loading {} snapshots took {:.2}s",
        snaps.snapshots.len(),
        t0.elapsed().as_secs_f64()
    );
    let corpus = load_corpus(&ws.join("cases"), None).unwrap_or_default();
    let pairs: Vec<_> = corpus
        .cases
        .iter()
        .flat_map(|case| {
            snaps
                .snapshots
                .iter()
                .filter(|s| {
                    gate::targets_arch(case, &s.snapshot)
                        && gate::applies(case, &s.snapshot).is_ok()
                })
                .map(move |s| (case, s))
        })
        .collect();
    eprintln!(
        "{} cases, {} (case, snapshot) pairs",
        corpus.cases.len(),
        pairs.len()
    );

    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.bench_function("plan every case against every snapshot", |b| {
        b.iter(|| {
            for (case, snap) in &pairs {
                let _ = black_box(planview::plan(&case.domain_xml, &snap.snapshot));
            }
        });
    });

    let cfg = Config {
        cases_dir: ws.join("cases"),
        caps_dir: ws.join("capsdata"),
        results_dir: std::env::temp_dir(),
        cache_dir: std::env::temp_dir(),
        bless: false,
        tiers: Tiers {
            plan: true,
            live: false,
            guest: false,
        },
        guest: GuestSelection::None,
        matrix_root: None,
        guest_root: None,
        qemu_slots: 1,
        live_timeout: std::time::Duration::from_secs(1),
        guest_timeout: std::time::Duration::from_secs(1),
        bless_hint: String::new(),
    };
    let trials: Vec<_> = build_trials(&cfg, &corpus, &snaps, None)
        .into_iter()
        .filter(|t| t.stage == Stage::Plan && t.ignore.is_none())
        .collect();
    group.bench_function("plan tier (plans, [expect] checks, goldens)", |b| {
        b.iter(|| {
            for t in &trials {
                black_box(t.run(&cfg, None));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
