//! `qconform run`: the main job. Installs what is missing (when asked), probes installed
//! QEMU binaries that have no snapshot yet, replays every case against every snapshot,
//! verifies on the real binaries and in booted guests, and writes the report.
//!
//! Tiers run one after the other (plan, then live, then guest) so that each has its own
//! wall time; within a tier trials run on `--jobs` threads and at most `--jobs` QEMU
//! processes exist at once.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use qconform_conformance::binaries::BinaryIndex;
use qconform_conformance::config::{Config, GuestSelection, Tiers};

use crate::rig_args::RigArgs;
use qconform_conformance::libvirt_suite;
use qconform_conformance::rig::Rig;
use qconform_conformance::trials::Counts;
use qconform_conformance::{TrialSpec, build_trials, load_corpus, load_snapshots};
use qconform_qemu::matrix;
use qconform_qemu::probe::{ProbeConfig, ProbeTarget, probe_binary};
use qconform_reports::render::{self, REPORT_HTML};
use qconform_reports::results::{Event, Stage, TrialRecord};
use qconform_reports::suite::SuiteSection;

use crate::stdout;
use crate::{EXIT_FAILED, EXIT_RIG, EXIT_USAGE};

/// Arguments of `qconform run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    qconform run                                  # replay, live and the guest subset\n  \
    qconform run --tiers plan                     # offline replay only (seconds)\n  \
    qconform run --bless --tiers plan --filter zpci-   # rewrite goldens of the zpci cases\n  \
    qconform run --install --guest all            # what the nightly job does\n  \
    qconform run --tiers plan --caps-dir old-capsdata\n\n\
    With the plan tier and no --filter or --bless, the run also replays libvirt's own test\n\
    domains when installed (see `qconform libvirt-suite`): the parity goes into the summary,\n\
    report.html and libvirt-suite.json, and a regression against the committed baseline fails\n\
    the run.\n\n\
    Exit status: 0 every trial passed (or was ignored), 1 the product failed, 3 the rig is\n\
    broken (QEMU could not be launched, an install step failed), 2 bad usage or input (a\n\
    corrupt or misnamed snapshot in --caps-dir, a report that cannot be written under --out).")]
pub struct Args {
    /// Case corpus directory.
    #[arg(long, default_value = "cases")]
    pub cases: PathBuf,
    /// Caps snapshot directory (missing snapshots of installed binaries are recorded here).
    #[arg(
        long = "caps-dir",
        alias = "caps",
        value_name = "DIR",
        default_value = "capsdata"
    )]
    pub caps_dir: PathBuf,
    /// Tiers to run, comma-separated: plan, live, guest.
    #[arg(long, default_value = "plan,live,guest")]
    pub tiers: String,
    /// Guest trials: subset (a few cases on the newest QEMU per arch), all, or none.
    #[arg(long, default_value = "subset")]
    pub guest: String,
    /// Trial threads and concurrent QEMU processes [default: number of cores].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Root of run directories: the report goes to OUT/run-<UTC time>-<id>/, OUT/latest
    /// points at it.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Rewrite goldens (and remove stale ones) instead of comparing them.
    #[arg(long)]
    pub bless: bool,
    /// Run only trials whose name (`[stage] case@version/arch/machine`) contains this
    /// text; repeatable (any match).
    #[arg(long)]
    pub filter: Vec<String>,
    /// Install the QEMU matrix, guest assets and libvirt's test data first
    /// (runners/scripts/install-*.sh).
    #[arg(long)]
    pub install: bool,
    /// Do not probe installed binaries that have no snapshot.
    #[arg(long)]
    pub no_probe: bool,
    /// Where the binaries and guest assets are; timeouts.
    #[command(flatten)]
    pub rig: RigArgs,
}

/// Directory of the install scripts: `./runners/scripts` when run from a checkout, else the
/// one this binary was built from.
fn scripts_dir() -> PathBuf {
    let here = PathBuf::from("runners/scripts");
    if here.join("install-matrix.sh").is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn install(matrix_root: Option<&Path>, guest_root: Option<&Path>) -> anyhow::Result<bool> {
    let dir = scripts_dir();
    for (script, env_name, root) in [
        ("install-matrix.sh", "QCONFORM_MATRIX_ROOT", matrix_root),
        ("install-guest.sh", "QCONFORM_GUEST_ROOT", guest_root),
        (
            "install-libvirt-tests.sh",
            "QCONFORM_LIBVIRT_TESTS_ROOT",
            None,
        ),
    ] {
        let path = dir.join(script);
        eprintln!("qconform run: {} install", path.display());
        let mut cmd = Command::new("bash");
        cmd.arg(&path).arg("install");
        if let Some(r) = root {
            cmd.env(env_name, r);
        }
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", path.display()))?;
        if !status.success() {
            eprintln!("qconform run: {} failed ({status})", path.display());
            return Ok(false);
        }
    }
    Ok(true)
}

/// Probes the installed binaries that no snapshot of `caps` was recorded from. Returns
/// whether every probe worked.
fn probe_missing(
    caps: &Path,
    matrix_root: Option<&Path>,
    binaries: &BinaryIndex,
    recorded: &[String],
    jobs: usize,
) -> anyhow::Result<bool> {
    let Some(root) = matrix_root else {
        return Ok(true);
    };
    let Ok(entries) = matrix::read_matrix(root) else {
        return Ok(true);
    };
    let mut targets = Vec::new();
    for e in entries {
        match binaries.sha256(&e.binary) {
            Ok(h) if recorded.contains(&h) => {}
            Ok(_) => targets.push(ProbeTarget {
                launcher: e.launcher.clone(),
                binary: e.binary.clone(),
            }),
            Err(err) => {
                eprintln!(
                    "qconform run: cannot hash {} ({err}); not probing it",
                    e.binary.display()
                );
            }
        }
    }
    if targets.is_empty() {
        return Ok(true);
    }
    eprintln!(
        "qconform run: probing {} installed binaries without a snapshot",
        targets.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let config = ProbeConfig::default();
    let mut ok = true;
    for t in targets {
        let t0 = Instant::now();
        let progress: qconform_qemu::probe::ProgressFn = Arc::new(|_| {});
        let result = runtime.block_on(probe_binary(&t, &config, Arc::clone(&limit), progress));
        match result {
            Ok(snap) => {
                qconform_reports::output::write_in(
                    caps,
                    &snap.file_name(),
                    snap.to_canonical_json().as_bytes(),
                )
                .with_context(|| {
                    format!("cannot write {}", caps.join(snap.file_name()).display())
                })?;
                eprintln!(
                    "qconform run: recorded {} from {} in {:.1}s",
                    snap.file_name(),
                    t.launcher.display(),
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                ok = false;
                eprintln!("qconform run: probing {} failed: {e}", t.launcher.display());
            }
        }
    }
    Ok(ok)
}

/// Shows progress: a bar on a terminal, one line per finished trial otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(stage: Stage, total: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>6} [{bar:40}] {pos}/{len} {elapsed} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.as_str());
        Progress { bar: Some(bar) }
    }

    fn finished(&self, r: &TrialRecord) {
        let label = outcome_label(r);
        let line = format!(
            "{label:<7} [{}] {} ({:.2}s)",
            r.stage.as_str(),
            r.name,
            r.exec_time
        );
        match &self.bar {
            Some(b) => {
                if r.event == Event::Failed {
                    b.println(line);
                }
                b.set_message(r.name.clone());
                b.inc(1);
            }
            None => {
                if r.event != Event::Ignored {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn outcome_label(r: &TrialRecord) -> &'static str {
    match r.event {
        Event::Ok if r.xfail => "xfail",
        Event::Ok => "ok",
        Event::Failed if r.rig_error => "RIG",
        Event::Failed => "FAILED",
        Event::Ignored => "ignored",
    }
}

/// Runs trials on `jobs` threads.
fn run_tier(
    stage: Stage,
    trials: &[TrialSpec],
    cfg: &Config,
    rig: &Rig,
    jobs: usize,
) -> Vec<TrialRecord> {
    let progress = Progress::new(stage, trials.len());
    let next = AtomicUsize::new(0);
    let records = Mutex::new(Vec::with_capacity(trials.len()));
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(trials.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(t) = trials.get(i) else { break };
                    let r = if t.ignore.is_some() {
                        t.ignored_record()
                    } else {
                        t.run(cfg, Some(rig))
                    };
                    progress.finished(&r);
                    if let Ok(mut v) = records.lock() {
                        v.push(r);
                    }
                }
            });
        }
    });
    progress.done();
    let mut v = records.into_inner().unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Runs the subcommand.
#[allow(clippy::needless_pass_by_value)] // the dispatcher hands every subcommand its Args
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tiers = Tiers::parse(&args.tiers).map_err(|e| anyhow::anyhow!("--tiers: {e}"))?;
    let guest = GuestSelection::parse(&args.guest).map_err(|e| anyhow::anyhow!("--guest: {e}"))?;
    let jobs = args
        .jobs
        .unwrap_or_else(qconform_conformance::config::default_qemu_slots)
        .max(1);
    let matrix_root = args.rig.matrix_root();
    let guest_root = args.rig.guest_root();
    let started = Instant::now();

    if args.install && !install(matrix_root.as_deref(), guest_root.as_deref())? {
        eprintln!("qconform run: the rig could not be installed");
        return Ok(ExitCode::from(EXIT_RIG));
    }
    if !args.cases.is_dir() {
        bail!(
            "{}: no such case directory (give --cases)",
            args.cases.display()
        );
    }
    let cache_dir = qconform_conformance::config::default_cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("qconform-cache"));
    let binaries = BinaryIndex::new(matrix_root.as_deref(), Some(&cache_dir));

    let mut rig_broken = false;
    let mut snaps = load_snapshots(&args.caps_dir, None);
    if !args.no_probe && (tiers.live || tiers.guest) {
        let recorded: Vec<String> = snaps
            .snapshots
            .iter()
            .map(|s| s.snapshot.probe.binary_sha256.clone())
            .collect();
        let t0 = Instant::now();
        if !probe_missing(
            &args.caps_dir,
            matrix_root.as_deref(),
            &binaries,
            &recorded,
            jobs,
        )? {
            rig_broken = true;
        }
        if t0.elapsed() > Duration::from_secs(1) {
            snaps = load_snapshots(&args.caps_dir, None);
        }
    }
    if !snaps.errors.is_empty() {
        // A corrupt or misnamed snapshot is bad input, not a product failure.
        for e in &snaps.errors {
            eprintln!("qconform run: snapshot {e}");
        }
        eprintln!(
            "qconform run: {} snapshot file(s) in {} cannot be used; fix or remove them (snapshots are written by `qconform probe`)",
            snaps.errors.len(),
            args.caps_dir.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let corpus = load_corpus(&args.cases, None)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;

    let cfg = Config {
        cases_dir: args.cases.clone(),
        caps_dir: args.caps_dir.clone(),
        results_dir: args.out.clone(),
        cache_dir,
        bless: args.bless,
        tiers,
        guest,
        matrix_root,
        guest_root,
        qemu_slots: jobs,
        live_timeout: args.rig.live_timeout(),
        guest_timeout: args.rig.guest_timeout(),
        bless_hint: "hint: if the new output is right, bless it with \
            `qconform run --bless --tiers plan --filter {case}@` and review `git diff cases/{case}/expect`"
            .into(),
    };
    let rig = Rig::new(
        jobs,
        binaries,
        cfg.guest_root.clone(),
        cfg.live_timeout,
        cfg.guest_timeout,
    )
    .context("cannot start the async runtime")?;
    let all = build_trials(&cfg, &corpus, &snaps, Some(&rig));
    let selected: Vec<TrialSpec> = all
        .into_iter()
        .filter(|t| {
            args.filter.is_empty() || {
                let full = t.full_name();
                args.filter.iter().any(|f| full.contains(f.as_str()))
            }
        })
        .collect();
    eprintln!(
        "qconform run: {} cases, {} snapshots, {} trials selected; {jobs} jobs; guest {}; bless {}",
        corpus.cases.len(),
        snaps.snapshots.len(),
        selected.len(),
        guest.as_str(),
        if cfg.bless { "on" } else { "off" }
    );

    let mut records: Vec<TrialRecord> = Vec::new();
    let mut tier_lines = Vec::new();
    for stage in [Stage::Plan, Stage::Live, Stage::Guest] {
        let trials: Vec<TrialSpec> = selected
            .iter()
            .filter(|t| t.stage == stage)
            .cloned()
            .collect();
        if trials.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let recs = run_tier(stage, &trials, &cfg, &rig, jobs);
        let wall = t0.elapsed();
        let mut c = Counts::default();
        for r in &recs {
            c.add(r);
        }
        tier_lines.push(format!(
            "{:<6} {:>5} trials: {:>5} passed, {:>3} failed, {:>3} rig errors, {:>3} xfail, {:>5} ignored in {:>7.2}s",
            stage.as_str(),
            recs.len(),
            c.passed,
            c.failed,
            c.rig,
            c.xfail,
            c.ignored,
            wall.as_secs_f64()
        ));
        records.extend(recs);
    }

    let failures: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| r.event == Event::Failed)
        .collect();
    if !failures.is_empty() {
        let mut text = String::from("\nfailures:\n\n");
        for r in &failures {
            text.push_str(&format!(
                "---- [{}] {}{} ----\n{}\n",
                r.stage.as_str(),
                r.name,
                if r.rig_error { " (rig error)" } else { "" },
                r.message.as_deref().unwrap_or("").trim_end()
            ));
            if let Some(t) = &r.stderr_tail {
                text.push_str(&format!("\nQEMU stderr (tail):\n{t}\n"));
            }
            text.push('\n');
        }
        stdout::print(&text)?;
    }

    // The libvirt-suite tier: offline, seconds; replayed with the plan tier of a whole run of
    // a corpus that carries its exception list and baseline.
    let with_suite = tiers.plan
        && args.filter.is_empty()
        && !args.bless
        && args.cases.join(libvirt_suite::EXCEPTIONS_NAME).is_file();
    let suite = with_suite.then(|| {
        libvirt_suite::run_section(None, &snaps, &args.cases).unwrap_or_else(|e| {
            eprintln!("qconform run: libvirt-suite: {e}");
            SuiteSection::NotRun(format!("error: {e}"))
        })
    });

    let mut report_failed = false;
    let report_dir = if records.is_empty() {
        None
    } else {
        let snapshots: Vec<qconform_caps::Snapshot> =
            snaps.snapshots.iter().map(|s| s.snapshot.clone()).collect();
        match render::write_run_full(&args.out, &records, &snapshots, Vec::new(), suite.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!(
                    "qconform run: cannot write the report under {}: {:#}",
                    args.out.display(),
                    anyhow::Error::new(e)
                );
                report_failed = true;
                None
            }
        }
    };

    let mut text = String::from("summary:\n");
    for l in &tier_lines {
        text.push_str(&format!("  {l}\n"));
    }
    let mut total = Counts::default();
    for r in &records {
        total.add(r);
    }
    text.push_str(&format!(
        "  total  {:>5} trials: {} passed, {} failed, {} rig errors, {} xfail, {} ignored in {:.2}s\n",
        records.len(),
        total.passed,
        total.failed,
        total.rig,
        total.xfail,
        total.ignored,
        started.elapsed().as_secs_f64()
    ));
    let mut suite_failed = false;
    match &suite {
        Some(SuiteSection::Ran(s)) => {
            text.push_str(&format!("  {}\n", s.parity_line()));
            for p in &s.problems {
                text.push_str(&format!("    libvirt-suite regression: {p}\n"));
            }
            suite_failed = !s.problems.is_empty();
        }
        Some(SuiteSection::NotRun(why)) => {
            text.push_str(&format!("  libvirt-suite: not run: {why}\n"));
            // a missing part fails under CI; a broken exception list is bad input
            if why.starts_with("error: ") {
                report_failed = true;
            } else if std::env::var("CI").is_ok_and(|v| v == "true") {
                rig_broken = true;
            }
        }
        None => {}
    }
    if let Some(d) = &report_dir {
        text.push_str(&format!("  report {}\n", d.join(REPORT_HTML).display()));
    }
    stdout::print(&text)?;
    Ok(if total.failed > 0 || suite_failed {
        ExitCode::from(EXIT_FAILED)
    } else if report_failed {
        ExitCode::from(EXIT_USAGE)
    } else if total.rig > 0 || rig_broken {
        ExitCode::from(EXIT_RIG)
    } else {
        ExitCode::SUCCESS
    })
}
