//! `qconform explore`: random domains from each snapshot's vocabulary, planned and checked
//! on the real binary; every disagreement minimised into a case directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use qconform_conformance::binaries::BinaryIndex;
use qconform_conformance::explore::{self, Budget, Counts, Progress, Settings};
use qconform_conformance::load_snapshots;
use qconform_conformance::rig::Rig;
use qconform_conformance::snapshots::LoadedSnapshot;
use qconform_qemu::matrix;

use crate::snapshot_arg::resolve_snapshot;
use crate::{EXIT_FAILED, EXIT_RIG};

/// Arguments of `qconform explore`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Differential testing on inputs nobody wrote. For each caps snapshot, \
    generate seeded random libvirt domains from the snapshot's own vocabulary (its machines \
    and buses, the device models its binary has: NICs, disks on every bus, PCI controllers \
    of every model, USB, SCSI, virtio-serial, video, sound, watchdog, rng, input, balloon, \
    unassigned host devices; explicit, partial and automatic PCI addresses, zPCI ids, CCW \
    devnos, multifunction), plan each one, and check the answer on the binary the snapshot \
    was recorded from: an accepted plan must start and QEMU's PCI view (query-pci after \
    SeaBIOS on x86, info qtree elsewhere, zPCI uid/fid on s390x) and device placement must \
    equal the plan's; a refusal with a QEMU-side form (a device type the binary lacks) must \
    be refused by QEMU too.\n\n\
    Each distinct disagreement is minimised by delta debugging (devices, then explicit \
    addresses) and written to --out as a case directory (domain.xml + a case.toml skeleton \
    with the observed facts) ready to finish and move under cases/. The same seed gives the \
    same domains on every host, whatever --jobs is.\n\n\
    Examples:\n  \
    qconform explore --caps 11.1/x86_64 --count 50          # 50 domains on one snapshot\n  \
    qconform explore --count 200 --jobs 2                   # 200 per snapshot in capsdata/\n  \
    qconform explore --time 10m --out results/latest/explore --report results/latest\n  \
    \x20                                                       # what the nightly job does\n  \
    qconform explore --caps 7.2/s390x --seed 42 --format json\n  \
    qconform explore --caps 11.1/x86_64 --seed 7 --count 13 # replay domains 0-12 of seed 7\n\n\
    Output: a summary per snapshot (generated, accepted, refused, started, agreed,\n\
    disagreements) and each distinct disagreement with its case directory.\n\n\
    Exit status: 0 no disagreement, 1 at least one disagreement, 3 the rig is broken (a\n\
    snapshot's binary is not installed, QEMU could not be launched), 2 bad usage or input,\n\
    130 interrupted (Ctrl-C; every QEMU is stopped and the summary printed)."
)]
pub struct Args {
    /// Snapshot to explore: a file, an id resolved in --caps-dir (`11.1/x86_64`), or a
    /// directory of snapshots [default: every snapshot in --caps-dir].
    #[arg(long, value_name = "ID|DIR")]
    pub caps: Option<String>,
    /// Directory of caps snapshots, where ids are resolved.
    #[arg(long, default_value = "capsdata")]
    pub caps_dir: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Domains per snapshot [default: 100 unless --time is given].
    #[arg(long, conflicts_with = "time")]
    pub count: Option<u64>,
    /// Time budget for the whole run (`90s`, `10m`, `1h`), shared evenly by the snapshots.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub time: Option<Duration>,
    /// Concurrent QEMU processes [default: number of cores].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where minimised case directories are written.
    #[arg(long, default_value = "results/explore")]
    pub out: PathBuf,
    /// Output format: text or json (one object: counts and the disagreements).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Most QEMU launches spent minimising one disagreement.
    #[arg(long, default_value_t = 60)]
    pub minimize_budget: usize,
    /// Matrix root [default: $QCONFORM_MATRIX_ROOT, else ~/.cache/qconform/matrix].
    #[arg(long)]
    pub matrix_root: Option<PathBuf>,
    /// Seconds a live QEMU session may take per phase.
    #[arg(long, default_value_t = 120)]
    pub live_timeout: u64,
    /// A run directory of `qconform run`: the summary is also written to
    /// RUN_DIR/explore/summary.json and shown as a section of RUN_DIR/report.html, with
    /// links to the case directories (give --out RUN_DIR/explore so that they resolve).
    #[arg(long, value_name = "RUN_DIR")]
    pub report: Option<PathBuf>,
}

/// `90`, `90s`, `10m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" | "sec" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    if secs == 0 {
        return Err(format!("{s:?}: the time budget must be positive"));
    }
    Ok(Duration::from_secs(secs))
}

struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress for Bar {
    fn start(&self, snapshot: &str, total: Option<u64>) {
        if let Some(b) = &self.bar {
            b.reset();
            b.set_length(total.unwrap_or(0));
            b.set_prefix(snapshot.to_owned());
        }
    }
    fn tick(&self, c: &Counts) {
        if let Some(b) = &self.bar {
            b.set_position(c.generated);
            b.set_message(format!(
                "accepted {} refused {} agreed {} disagreements {}",
                c.accepted, c.refused, c.agreed, c.disagreements
            ));
        }
    }
    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("qconform explore: {text}"),
        }
    }
}

fn load(args: &Args) -> anyhow::Result<Vec<Arc<LoadedSnapshot>>> {
    let (dir, only): (PathBuf, Option<Vec<String>>) = match &args.caps {
        Some(spec) if Path::new(spec).is_dir() => (PathBuf::from(spec), None),
        Some(spec) => {
            let file = resolve_snapshot(spec, &args.caps_dir)?;
            let name = file
                .file_name()
                .context("snapshot path has no file name")?
                .to_string_lossy()
                .into_owned();
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            (dir, Some(vec![name]))
        }
        None => (args.caps_dir.clone(), None),
    };
    let snaps = load_snapshots(&dir, only.as_deref());
    if let Some(e) = snaps.errors.first() {
        bail!("{}: {}", e.file, e.message);
    }
    if snaps.snapshots.is_empty() {
        bail!("no caps snapshot in {}", dir.display());
    }
    Ok(snaps.snapshots)
}

/// Runs `qconform explore`.
#[allow(clippy::needless_pass_by_value)] // the dispatcher hands every subcommand its Args
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let snaps = load(&args)?;
    let jobs = args
        .jobs
        .unwrap_or_else(qconform_conformance::config::default_qemu_slots)
        .max(1);
    let matrix_root = args.matrix_root.clone().or_else(matrix::default_root);
    let cache_dir = qconform_conformance::config::default_cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("qconform-cache"));
    let binaries = BinaryIndex::new(matrix_root.as_deref(), Some(&cache_dir));
    let timeout = Duration::from_secs(args.live_timeout.max(1));
    let rig = Rig::new(jobs, binaries, None, timeout, timeout)
        .context("cannot start the async runtime")?;
    let budget = match (args.count, args.time) {
        (_, Some(t)) => Budget::Until(Instant::now() + t),
        (Some(n), None) => Budget::Count(n),
        (None, None) => Budget::Count(100),
    };
    let settings = Settings {
        seed: args.seed,
        budget,
        out: Some(args.out.clone()),
        minimize_budget: args.minimize_budget,
        jobs,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    // QEMU runs in its own process group and does not get the terminal's SIGINT: on
    // Ctrl-C or SIGTERM no new domain starts, the ones in flight finish (their QEMU is
    // stopped as always) and the summary of what was checked is printed.
    {
        let flag = Arc::clone(&settings.interrupt);
        let _guard = rig.runtime.enter();
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot install the SIGINT handler")?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        rig.runtime.spawn(async move {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(b)
    } else {
        None
    };
    let progress = Bar { bar };
    let report = explore::explore(&snaps, &rig, &settings, &progress);
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    if args.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).context("JSON")?
        );
    } else {
        print!("{}", explore::summary_text(&report, None));
    }
    if let Some(run_dir) = &args.report {
        add_to_report(run_dir, &report.to_json())?;
    }
    let totals = report.totals();
    if settings.interrupt.load(Ordering::SeqCst) {
        eprintln!("qconform explore: interrupted; the summary covers the domains checked");
        return Ok(ExitCode::from(130));
    }
    Ok(if totals.rig_errors > 0 {
        ExitCode::from(EXIT_RIG)
    } else if totals.disagreements > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes the summary into a run directory and its section into the run's report page
/// (before `</body>`, replacing the section of an earlier explore run).
fn add_to_report(run_dir: &Path, summary: &serde_json::Value) -> anyhow::Result<()> {
    use qconform_conformance::golden::write_atomic;
    use qconform_reports::explore_section::{self, EXPLORE_DIR, SUMMARY_FILE};
    let edir = run_dir.join(EXPLORE_DIR);
    std::fs::create_dir_all(&edir).with_context(|| format!("cannot create {}", edir.display()))?;
    let text = serde_json::to_string_pretty(summary).context("JSON")? + "\n";
    write_atomic(&edir, SUMMARY_FILE, &text)
        .with_context(|| format!("cannot write {}", edir.join(SUMMARY_FILE).display()))?;
    let page = run_dir.join("report.html");
    let Ok(html) = std::fs::read_to_string(&page) else {
        eprintln!(
            "qconform explore: {} does not exist; the summary is in {}",
            page.display(),
            edir.join(SUMMARY_FILE).display()
        );
        return Ok(());
    };
    const BEGIN: &str = "<!-- qconform explore -->";
    const END: &str = "<!-- /qconform explore -->";
    let mut html = match (html.find(BEGIN), html.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{}", &html[..b], &html[e + END.len()..]),
        _ => html,
    };
    let section = format!(
        "{BEGIN}{}{END}",
        explore_section::render(summary).into_string()
    );
    match html.rfind("</body>") {
        Some(i) => html.insert_str(i, &section),
        None => html.push_str(&section),
    }
    write_atomic(run_dir, "report.html", &html)
        .with_context(|| format!("cannot write {}", page.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_duration() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
