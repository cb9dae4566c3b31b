//! `qconform qualify`: one QEMU build (or several) against a recorded baseline.
//!
//! Probe (cached by identity), pick the baseline, diff the caps (what disappeared, with
//! QEMU's reason), replay every applicable case and compare with the baseline's goldens
//! (`qconform_conformance::qualify`), verify live (and the guest subset) on the binary
//! itself, and write the same run directory as `run` with the qualify summary on top.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use qconform_caps::Snapshot;
use qconform_conformance::binaries::{BinaryIndex, Located};
use qconform_conformance::config::{Config, GuestSelection, Tiers};

use crate::rig_args::RigArgs;
use qconform_conformance::qualify::{self, CaseClass, CaseComparison, ClassCounts, Disappeared};
use qconform_conformance::rig::Rig;
use qconform_conformance::snapshots::LoadedSnapshot;
use qconform_conformance::{Snapshots, TrialSpec, build_trials, load_corpus, load_snapshots};
use qconform_qemu::matrix;
use qconform_qemu::probe::{ProbeCache, ProbeConfig, ProbeTarget, probe_binary, resolve_target};
use qconform_reports::render::{self, REPORT_HTML};
use qconform_reports::results::{Event, Stage, TrialRecord};
use serde::Serialize;
use serde_json::json;

use crate::{EXIT_FAILED, EXIT_RIG, EXIT_USAGE};

/// Arguments of `qconform qualify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    qconform qualify --qemu /usr/bin/qemu-system-x86_64\n  \
    qconform qualify --qemu ./my-qemu.sh=/opt/qemu/bin/qemu-system-s390x --baseline 10.0.2/s390x\n  \
    qconform qualify --qemu build/qemu-system-aarch64 --tiers plan,live,guest --format json\n\n\
    The binary is probed once (a probe is reused while the launcher and binary keep their path,\n\
    size and mtime, or their sha256); a launcher script is followed to the binary it execs.\n\
    The baseline is the recorded snapshot (--caps-dir) of the same arch and major.minor, else\n\
    the nearest older release. Every applicable case is planned on the new build and compared\n\
    with the baseline's goldens (versioned machine names normalised): identical, drift,\n\
    newly refused, newly accepted. Regressions: newly refused cases, anything that disappeared\n\
    from the caps and drift (both only against a baseline of the same major.minor for the\n\
    last two), and every failed live or guest trial.\n\n\
    Exit status: 0 qualified, 1 regressions, 2 bad usage, 3 the rig is broken.")]
pub struct Args {
    /// QEMU to qualify: an ELF binary, a launcher script that execs one, or
    /// LAUNCHER=REALBIN. Repeatable (each is qualified against its own baseline).
    #[arg(long = "qemu", value_name = "PATH[=REAL]", required = true)]
    pub qemu: Vec<String>,
    /// Baseline: `auto`, or a recorded snapshot (`10.0.2/x86_64`, `10.0.2`, `10.0`,
    /// `caps_10.0.2_x86_64.json`).
    #[arg(long, default_value = "auto")]
    pub baseline: String,
    /// Tiers, comma-separated: plan (replay vs the baseline), live, guest.
    #[arg(long, default_value = "plan,live")]
    pub tiers: String,
    /// Root of run directories (as `run`: OUT/run-<UTC time>-<id>/, OUT/latest).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Output on stdout: text, or json (one object; a stable contract).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Directory of the recorded snapshots (the baselines).
    #[arg(long = "caps-dir", default_value = "capsdata")]
    pub caps_dir: PathBuf,
    /// Case corpus directory.
    #[arg(long, default_value = "cases")]
    pub cases: PathBuf,
    /// Concurrent QEMU processes [default: number of cores].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where the binaries and guest assets are; timeouts.
    #[command(flatten)]
    pub rig: RigArgs,
}

/// One failure of the verdict (JSON contract: `case`, `stage`, `message`).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Case name, or `caps:<kind> <name>` for something that disappeared from the caps.
    pub case: String,
    /// `caps`, `plan`, `live` or `guest`.
    pub stage: String,
    /// What went wrong, in QEMU's words where it gave them.
    pub message: String,
}

/// Caps diff summary (JSON contract).
#[derive(Debug, Clone, Serialize)]
pub struct CapsDiffSummary {
    /// One line (`machine types +3 -12, ...` or `no differences`).
    pub summary: String,
    /// What the baseline had and the new build lacks, with QEMU's reason.
    pub disappeared: Vec<Disappeared>,
}

/// The result of qualifying one binary (JSON contract).
#[derive(Debug, Clone, Serialize)]
pub struct Qualification {
    /// `qualified` or `regressed`.
    pub verdict: String,
    /// The binary as given.
    pub qemu: String,
    /// The new snapshot's id (`<version>/<arch>`) and package string.
    pub snapshot: String,
    /// Package string of the new build.
    pub package: String,
    /// The baseline snapshot id, `null` when none was recorded for the arch.
    pub baseline: Option<String>,
    /// Whether the probe was reused (no QEMU launched for it).
    pub probe_cached: bool,
    /// Caps diff against the baseline.
    pub caps_diff: CapsDiffSummary,
    /// Case counts.
    pub cases: ClassCounts,
    /// Every regression.
    pub failures: Vec<Failure>,
}

/// Where snapshots probed by `qualify` are kept, and the probe cache file.
fn cache_paths() -> (PathBuf, PathBuf) {
    let dir = qconform_conformance::config::default_cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("qconform-cache"));
    (dir.join("qualify"), dir.join("probe-cache.tsv"))
}

/// A snapshot for the target: recorded already (a matrix launcher whose binary's sha256 a
/// snapshot of the caps dir was recorded from), cached by identity, or probed now.
fn snapshot_for(
    target: &ProbeTarget,
    recorded: &Snapshots,
    matrix_entries: &[matrix::MatrixEntry],
    binaries: &BinaryIndex,
    jobs: usize,
) -> anyhow::Result<(LoadedSnapshot, bool)> {
    let config = ProbeConfig::default();
    let key = config.cache_key();
    let (store, cache_file) = cache_paths();
    let mut cache = ProbeCache::open(&cache_file);
    if let Some((_, path)) = cache.lookup_hashing(target, &key) {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Ok(s) = Snapshot::from_json(&text) {
            return Ok((LoadedSnapshot::new(s, path), true));
        }
    }
    let is_matrix_launcher = matrix_entries.iter().any(|e| {
        std::fs::canonicalize(&e.launcher).ok() == std::fs::canonicalize(&target.launcher).ok()
            && e.binary == target.binary
    });
    if is_matrix_launcher && let Ok(sha) = binaries.sha256(&target.binary) {
        for s in &recorded.snapshots {
            if s.snapshot.probe.binary_sha256 == sha {
                return Ok((
                    LoadedSnapshot::new(s.snapshot.clone(), s.path.clone()),
                    true,
                ));
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let t0 = Instant::now();
    eprintln!("qconform qualify: probing {}", target.launcher.display());
    let snap = runtime
        .block_on(probe_binary(target, &config, limit, Arc::new(|_| {})))
        .map_err(|e| RigError(format!("probing {} failed: {e}", target.launcher.display())))?;
    // One directory per (launcher, build): the same binary behind another launcher (other
    // firmware directories) is another snapshot.
    let tag = {
        let mut h = sha2_hex(target.launcher.to_string_lossy().as_bytes());
        h.truncate(12);
        format!(
            "{}-{h}",
            snap.probe.binary_sha256.get(..12).unwrap_or_default()
        )
    };
    let dir = store.join(tag);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    qconform_conformance::golden::write_atomic(&dir, &snap.file_name(), &snap.to_canonical_json())
        .with_context(|| format!("cannot write {}", dir.join(snap.file_name()).display()))?;
    let path = dir.join(snap.file_name());
    // A cache that cannot be written only costs a probe next time.
    let _ = cache.record(target, &key, &snap.probe.binary_sha256, &path);
    eprintln!(
        "qconform qualify: recorded {} in {:.1}s",
        path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok((LoadedSnapshot::new(snap, path), false))
}

fn sha2_hex(bytes: &[u8]) -> String {
    qconform_qemu::probe::sha256_bytes(bytes)
}

/// The rig is broken (exit 3).
#[derive(Debug)]
struct RigError(String);

impl std::fmt::Display for RigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RigError {}

fn plan_record(new: &LoadedSnapshot, c: &CaseComparison, failed: bool) -> TrialRecord {
    TrialRecord {
        record_type: "test".into(),
        event: if failed { Event::Failed } else { Event::Ok },
        name: format!("{}@{}/{}", c.case, new.version, new.arch),
        exec_time: 0.0,
        stage: Stage::Plan,
        case: c.case.clone(),
        qemu_version: new.version.clone(),
        arch: new.arch.clone(),
        machine: None,
        xfail: false,
        rig_error: false,
        message: Some(if c.detail.is_empty() {
            format!("qualify: {}", c.class.as_str())
        } else {
            format!("qualify: {}\n{}", c.class.as_str(), c.detail.trim_end())
        }),
        argv: Vec::new(),
        stderr_tail: None,
    }
}

/// Runs the subcommand.
#[allow(clippy::needless_pass_by_value, clippy::too_many_lines)]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json_out = match args.format.as_str() {
        "json" => true,
        "text" => false,
        other => {
            eprintln!("qconform qualify: --format {other}: expected text or json");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let tiers = match Tiers::parse(&args.tiers) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("qconform qualify: --tiers: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let jobs = args
        .jobs
        .unwrap_or_else(qconform_conformance::config::default_qemu_slots)
        .max(1);
    let matrix_root = args.rig.matrix_root();
    let guest_root = args.rig.guest_root();
    let matrix_entries = matrix_root
        .as_deref()
        .and_then(|r| matrix::read_matrix(r).ok())
        .unwrap_or_default();
    let mut targets = Vec::new();
    for spec in &args.qemu {
        match resolve_target(spec, &matrix_entries) {
            Ok(t) => targets.push((spec.clone(), t)),
            Err(e) => {
                eprintln!("qconform qualify: --qemu {spec}: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    if !args.cases.is_dir() {
        eprintln!(
            "qconform qualify: {}: no such case directory (give --cases)",
            args.cases.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let recorded = load_snapshots(&args.caps_dir, None);
    if let Some(e) = recorded.errors.first() {
        eprintln!(
            "qconform qualify: {}: snapshot {e}",
            args.caps_dir.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let corpus = load_corpus(&args.cases, None)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;
    let cache_dir = qconform_conformance::config::default_cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("qconform-cache"));
    let hashes = BinaryIndex::new(matrix_root.as_deref(), Some(&cache_dir));

    let started = Instant::now();
    let mut results: Vec<Qualification> = Vec::new();
    let mut records: Vec<TrialRecord> = Vec::new();
    let mut report_snaps: Vec<Snapshot> = Vec::new();
    let mut rig_broken = false;
    for (spec, target) in &targets {
        let (new, cached) = match snapshot_for(target, &recorded, &matrix_entries, &hashes, jobs) {
            Ok(x) => x,
            Err(e) if e.downcast_ref::<RigError>().is_some() => {
                eprintln!("qconform qualify: {e}");
                return Ok(ExitCode::from(EXIT_RIG));
            }
            Err(e) => return Err(e),
        };
        let baseline = match qualify::pick_baseline(
            &new.snapshot,
            &recorded.snapshots,
            Some(args.baseline.as_str()),
        ) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("qconform qualify: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        };
        let mut failures = Vec::new();
        let (caps_diff, comparisons) = match &baseline {
            Some(b) => {
                let same = qualify::same_release(
                    b.snapshot.probe.qemu_version,
                    new.snapshot.probe.qemu_version,
                );
                let diff = qconform_reports::diff::diff(&b.snapshot, &new.snapshot);
                let gone = qualify::disappeared(&b.snapshot, &new.snapshot);
                if same {
                    for d in &gone {
                        failures.push(Failure {
                            case: format!("caps:{} {}", d.kind, d.name),
                            stage: "caps".into(),
                            message: format!(
                                "{} {} of the baseline {} is gone: {}",
                                d.kind.replace('_', " "),
                                d.name,
                                b.id,
                                d.reason
                            ),
                        });
                    }
                }
                let comps = if tiers.plan {
                    qualify::replay(&corpus, &new, b)
                } else {
                    Vec::new()
                };
                for c in &comps {
                    let failed = qualify::is_regression(c.class, same);
                    if failed {
                        failures.push(Failure {
                            case: c.case.clone(),
                            stage: "plan".into(),
                            message: format!("{}: {}", c.class.as_str(), c.detail.trim_end()),
                        });
                    }
                    if c.class != CaseClass::NoBaseline {
                        records.push(plan_record(&new, c, failed));
                    }
                }
                report_snaps.push(b.snapshot.clone());
                (
                    CapsDiffSummary {
                        summary: diff.summary(),
                        disappeared: gone,
                    },
                    comps,
                )
            }
            None => (
                CapsDiffSummary {
                    summary: format!("no recorded snapshot of {} to compare with", new.arch),
                    disappeared: Vec::new(),
                },
                Vec::new(),
            ),
        };
        report_snaps.push(new.snapshot.clone());

        // Live and guest on the binary itself.
        if tiers.live || tiers.guest {
            let binaries = BinaryIndex::new(matrix_root.as_deref(), Some(&cache_dir))
                .with_override(
                    &new.id,
                    Located {
                        program: target.launcher.clone(),
                        source: format!("qualify --qemu {spec}"),
                    },
                );
            let cfg = Config {
                cases_dir: args.cases.clone(),
                caps_dir: args.caps_dir.clone(),
                results_dir: args.out.clone(),
                cache_dir: cache_dir.clone(),
                bless: false,
                tiers: Tiers {
                    plan: false,
                    live: tiers.live,
                    guest: tiers.guest,
                },
                guest: GuestSelection::Subset,
                matrix_root: matrix_root.clone(),
                guest_root: guest_root.clone(),
                qemu_slots: jobs,
                live_timeout: args.rig.live_timeout(),
                guest_timeout: args.rig.guest_timeout(),
                bless_hint: String::new(),
            };
            let rig = Rig::new(
                jobs,
                binaries,
                cfg.guest_root.clone(),
                cfg.live_timeout,
                cfg.guest_timeout,
            )
            .context("cannot start the async runtime")?;
            let snaps = Snapshots {
                snapshots: vec![Arc::new(LoadedSnapshot::new(
                    new.snapshot.clone(),
                    new.path.clone(),
                ))],
                errors: Vec::new(),
            };
            let trials = build_trials(&cfg, &corpus, &snaps, Some(&rig));
            let recs = run_trials(&trials, &cfg, &rig, jobs);
            for r in &recs {
                if r.event == Event::Failed {
                    if r.rig_error {
                        rig_broken = true;
                    }
                    failures.push(Failure {
                        case: r.case.clone(),
                        stage: r.stage.as_str().to_owned(),
                        message: format!(
                            "{}{}",
                            r.message.as_deref().unwrap_or_default().trim_end(),
                            r.stderr_tail
                                .as_deref()
                                .map(|t| format!("\nQEMU stderr (tail):\n{t}"))
                                .unwrap_or_default()
                        ),
                    });
                }
            }
            records.extend(recs);
        }

        let counts = ClassCounts::of(&comparisons);
        results.push(Qualification {
            verdict: if failures.is_empty() {
                "qualified".into()
            } else {
                "regressed".into()
            },
            qemu: spec.clone(),
            snapshot: new.id.clone(),
            package: new.snapshot.probe.package.clone(),
            baseline: baseline.as_ref().map(|b| b.id.clone()),
            probe_cached: cached,
            caps_diff,
            cases: counts,
            failures,
        });
    }

    let report_dir = if records.is_empty() {
        None
    } else {
        match render::write_run_with(&args.out, &records, &report_snaps, Vec::new()) {
            Ok(d) => {
                if let Err(e) = add_summary(&d, &results) {
                    eprintln!("qconform qualify: cannot add the summary to the report: {e}");
                }
                Some(d)
            }
            Err(e) => {
                eprintln!("qconform qualify: cannot write the report: {e}");
                None
            }
        }
    };
    let report = report_dir.as_ref().map(|d| d.join(REPORT_HTML));
    let regressed = results.iter().any(|r| r.verdict != "qualified");
    if json_out {
        let body = if results.len() == 1 {
            let mut v = serde_json::to_value(&results[0])?;
            if let Some(o) = v.as_object_mut() {
                o.insert("report".into(), json!(report));
            }
            v
        } else {
            json!({
                "verdict": if regressed { "regressed" } else { "qualified" },
                "binaries": results,
                "report": report,
            })
        };
        println!("{body}");
    } else {
        print!("{}", text_summary(&results));
        println!(
            "  finished in {:.1}s{}",
            started.elapsed().as_secs_f64(),
            report
                .as_ref()
                .map(|r| format!("; report {}", r.display()))
                .unwrap_or_default()
        );
    }
    Ok(if regressed {
        ExitCode::from(EXIT_FAILED)
    } else if rig_broken {
        ExitCode::from(EXIT_RIG)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_trials(trials: &[TrialSpec], cfg: &Config, rig: &Rig, jobs: usize) -> Vec<TrialRecord> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(trials.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(t) = trials.get(i) else { break };
                    let r = if t.ignore.is_some() {
                        t.ignored_record()
                    } else {
                        t.run(cfg, Some(rig))
                    };
                    if let Ok(mut v) = out.lock() {
                        v.push(r);
                    }
                }
            });
        }
    });
    let mut v = out.into_inner().unwrap_or_default();
    v.sort_by(|a, b| (a.stage.as_str(), &a.name).cmp(&(b.stage.as_str(), &b.name)));
    v
}

/// The text form of the verdicts.
pub fn text_summary(results: &[Qualification]) -> String {
    let mut s = String::new();
    for r in results {
        s.push_str(&format!(
            "qualify {} ({} {}): {}\n",
            r.qemu,
            r.snapshot,
            r.package,
            r.verdict.to_uppercase()
        ));
        s.push_str(&format!(
            "  baseline  {}{}\n",
            r.baseline.as_deref().unwrap_or("(none)"),
            if r.probe_cached {
                " (probe reused: binary unchanged)"
            } else {
                ""
            }
        ));
        s.push_str(&format!("  caps diff {}\n", r.caps_diff.summary));
        for d in &r.caps_diff.disappeared {
            s.push_str(&format!("    gone: {} {}: {}\n", d.kind, d.name, d.reason));
        }
        s.push_str(&format!(
            "  cases     {} identical, {} drift, {} newly refused, {} newly accepted\n",
            r.cases.identical, r.cases.drift, r.cases.newly_refused, r.cases.newly_accepted
        ));
        if !r.failures.is_empty() {
            s.push_str(&format!("  failures  {}\n", r.failures.len()));
            for f in &r.failures {
                let first = f.message.lines().next().unwrap_or_default();
                s.push_str(&format!("    [{}] {}: {first}\n", f.stage, f.case));
            }
        }
    }
    s
}

/// Puts the qualify summary on top of the run's HTML page and beside it as `qualify.json`.
fn add_summary(dir: &Path, results: &[Qualification]) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(results).unwrap_or_default();
    qconform_conformance::golden::write_atomic(dir, "qualify.json", &format!("{json}\n"))?;
    let page_path = dir.join(REPORT_HTML);
    let page = std::fs::read_to_string(&page_path)?;
    let text = text_summary(results);
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let section = format!("<section id=\"qualify\"><h2>Qualify</h2><pre>{escaped}</pre></section>");
    let page = match page.find("<body>") {
        Some(i) => format!("{}{section}{}", &page[..i + 6], &page[i + 6..]),
        None => format!("{section}{page}"),
    };
    qconform_conformance::golden::write_atomic(dir, REPORT_HTML, &page)
}
