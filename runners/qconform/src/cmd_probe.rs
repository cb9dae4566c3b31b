//! `qconform probe`: probe QEMU binaries over QMP and write one caps snapshot per binary.

use std::io::{IsTerminal, Write};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use qconform_caps::{LaunchOutcome, Snapshot};
use qconform_qemu::matrix::{self, MatrixEntry};
use qconform_qemu::probe::{
    MachineSelection, ProbeCache, ProbeConfig, ProbeProgress, ProbeTarget, probe_binary,
    resolve_target,
};
use qconform_reports::output;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{EXIT_RIG, EXIT_USAGE};

/// Arguments of `qconform probe`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Each binary is started with -nodefaults over QMP on its stdio: once with -machine none for the
binary-wide queries, once per machine, and a few times to read PCI identities. The snapshot
(caps_<version>_<arch>.json) holds the raw replies and an index derived from them. Same binary,
same bytes. Files are written atomically (through a symbolic link to a file); Ctrl-C, SIGTERM
or SIGHUP kills every QEMU and leaves no partial file (exit status 130).

Examples:
  qconform probe --matrix                          # every binary of the installed matrix
  qconform probe --matrix --machines 'pc*' --caps-dir /tmp/caps
  qconform probe --qemu /usr/bin/qemu-system-x86_64 --machines none
  qconform probe --qemu ./run-qemu.sh=/opt/qemu/bin/qemu-system-s390x")]
pub struct Args {
    /// QEMU to probe: an ELF binary, a launcher of the installed matrix, or
    /// LAUNCHER=REALBIN for any other launcher script (REALBIN is hashed to identify the
    /// build). Repeatable.
    #[arg(long = "qemu", value_name = "BIN")]
    qemu: Vec<String>,
    /// Probe every binary listed in the installed matrix's matrix.tsv.
    #[arg(long)]
    matrix: bool,
    /// Matrix root [default: $QCONFORM_MATRIX_ROOT, else ~/.cache/qconform/matrix].
    #[arg(long, value_name = "DIR")]
    matrix_root: Option<PathBuf>,
    /// Directory the snapshots are written to.
    #[arg(
        long = "caps-dir",
        alias = "out",
        value_name = "DIR",
        default_value = "capsdata"
    )]
    caps_dir: PathBuf,
    /// Maximum number of QEMU processes at once [default: number of CPUs].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Machines to launch one by one: all, none, or a glob on machine names and aliases
    /// (e.g. 'pc-q35-*' or '{q35,pc,virt}').
    #[arg(long, value_name = "all|none|GLOB", default_value = "all")]
    machines: String,
    /// Do not record PCI identities (faster; the snapshot's pci_ids stay empty).
    #[arg(long)]
    no_identity: bool,
    /// Probe even binaries whose snapshot in the output directory was recorded from the
    /// same launcher and binary (same path, size and mtime) with the same options; without
    /// it those are kept and not launched at all.
    #[arg(long)]
    no_cache: bool,
}

/// Runs the subcommand.
#[allow(clippy::needless_pass_by_value)] // the dispatcher hands every subcommand its Args
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.qemu.is_empty() && !args.matrix {
        eprintln!("qconform probe: nothing to probe: give --matrix or --qemu BIN (see --help)");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let machines = match args.machines.as_str() {
        "all" => MachineSelection::All,
        "none" => MachineSelection::None,
        glob => MachineSelection::Glob(
            globset::Glob::new(glob)
                .with_context(|| format!("--machines {glob:?} is not a valid glob"))?
                .compile_matcher(),
        ),
    };
    let root = args.matrix_root.clone().or_else(matrix::default_root);
    let entries: Vec<MatrixEntry> = match (&root, args.matrix) {
        (Some(r), true) => matrix::read_matrix(r)?,
        (Some(r), false) => matrix::read_matrix(r).unwrap_or_default(),
        (None, true) => bail!("--matrix: no matrix root (set HOME or --matrix-root)"),
        (None, false) => Vec::new(),
    };
    let mut targets: Vec<ProbeTarget> = Vec::new();
    if args.matrix {
        if entries.is_empty() {
            bail!(
                "the matrix under {} lists no binaries",
                root.unwrap_or_default().display()
            );
        }
        targets.extend(entries.iter().map(|e| ProbeTarget {
            launcher: e.launcher.clone(),
            binary: e.binary.clone(),
        }));
    }
    for spec in &args.qemu {
        targets.push(resolve_target(spec, &entries).with_context(|| format!("--qemu {spec}"))?);
    }
    std::fs::create_dir_all(&args.caps_dir)
        .with_context(|| format!("cannot create output directory {}", args.caps_dir.display()))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let config = ProbeConfig {
        machines,
        identity: !args.no_identity,
        ..ProbeConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cache = (!args.no_cache)
        .then(qconform_conformance::config::default_cache_dir)
        .flatten()
        .map(|d| ProbeCache::open(&d.join("probe-cache.tsv")));
    let failed = runtime.block_on(probe_all(targets, config, jobs, args.caps_dir, cache))?;
    Ok(match failed {
        Outcome::Done(0) => ExitCode::SUCCESS,
        Outcome::Done(_) => ExitCode::from(EXIT_RIG),
        Outcome::Interrupted => ExitCode::from(130),
    })
}

enum Outcome {
    /// All probes ran; this many failed.
    Done(usize),
    /// Ctrl-C.
    Interrupted,
}

/// Reports progress either as bars (TTY) or as plain lines.
#[derive(Clone)]
enum Reporter {
    Bars(MultiProgress),
    Lines,
}

impl Reporter {
    fn line(&self, text: &str) {
        match self {
            Reporter::Bars(m) => {
                let _ = m.println(text);
            }
            Reporter::Lines => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }
}

async fn probe_all(
    targets: Vec<ProbeTarget>,
    config: ProbeConfig,
    jobs: usize,
    out: PathBuf,
    cache: Option<ProbeCache>,
) -> anyhow::Result<Outcome> {
    let key = config.cache_key();
    let cache = cache.map(|c| Arc::new(Mutex::new(c)));
    let reporter = if std::io::stderr().is_terminal() {
        Reporter::Bars(MultiProgress::new())
    } else {
        Reporter::Lines
    };
    let limit = Arc::new(Semaphore::new(jobs));
    let config = Arc::new(config);
    let temps: Arc<Mutex<Vec<PathBuf>>> = Arc::new(Mutex::new(Vec::new()));
    let started = std::time::Instant::now();
    // Installed before any QEMU starts, so an early Ctrl-C is handled too (QEMU runs in its
    // own process group and does not get the terminal's SIGINT: we must stop it).
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    // A closed terminal (SIGHUP) stops the probe like Ctrl-C: no QEMU is left behind.
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let mut set: JoinSet<bool> = JoinSet::new();
    for target in targets {
        let label = target.launcher.file_name().map_or_else(
            || target.launcher.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bar = match &reporter {
            Reporter::Bars(m) => {
                let b = m.add(ProgressBar::new(1));
                b.set_style(
                    ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(label.clone());
                Some(b)
            }
            Reporter::Lines => None,
        };
        let progress: qconform_qemu::probe::ProgressFn = {
            let bar = bar.clone();
            Arc::new(move |p: &ProbeProgress| {
                if let Some(b) = &bar {
                    b.set_length(p.total as u64);
                    b.set_position(p.done as u64);
                    b.set_message(p.what.clone());
                }
            })
        };
        let config = Arc::clone(&config);
        let limit = Arc::clone(&limit);
        let out = out.clone();
        let temps = Arc::clone(&temps);
        let reporter = reporter.clone();
        let cache = cache.clone();
        let key = key.clone();
        set.spawn(async move {
            let t0 = std::time::Instant::now();
            // Unchanged launcher and binary, same options, snapshot still in place: no launch.
            let hit = cache.as_ref().and_then(|c| {
                let c = c.lock().ok()?;
                let (_, path) = c.lookup(&target, &key)?;
                (path.parent() == Some(out.as_path())).then_some(path)
            });
            if let Some(path) = hit {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                reporter.line(&format!(
                    "{label}: unchanged since {} was recorded; not probed ({:.3}s; --no-cache probes it)",
                    path.display(),
                    t0.elapsed().as_secs_f64()
                ));
                return true;
            }
            let result = probe_binary(&target, &config, limit, progress).await;
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            match result {
                Ok(snap) => match write_snapshot(&out, &snap, &temps) {
                    Ok((path, bytes)) => {
                        if let Some(Ok(mut c)) = cache.as_ref().map(|c| c.lock()) {
                            // A cache that cannot be written only costs time next run.
                            let _ = c.record(&target, &key, &snap.probe.binary_sha256, &path);
                        }
                        reporter.line(&format!(
                            "{label}: wrote {} ({}; {} KiB) in {:.1}s",
                            path.display(),
                            summary(&snap),
                            bytes / 1024,
                            t0.elapsed().as_secs_f64()
                        ));
                        true
                    }
                    Err(e) => {
                        reporter.line(&format!("{label}: error: {e:#}"));
                        false
                    }
                },
                Err(e) => {
                    reporter.line(&format!("{label}: error: {e}"));
                    false
                }
            }
        });
    }
    let mut failed = 0;
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                None => break,
                Some(Ok(true)) => {}
                Some(_) => failed += 1,
            },
            _ = async {
                tokio::select! {
                    _ = sigint.recv() => {},
                    _ = sigterm.recv() => {},
                    _ = sighup.recv() => {},
                }
            } => {
                // Dropping the tasks drops every Qemu handle, which kills its process group.
                set.abort_all();
                while set.join_next().await.is_some() {}
                if let Ok(list) = temps.lock() {
                    for t in list.iter() {
                        let _ = std::fs::remove_file(t);
                    }
                }
                reporter.line("interrupted: every QEMU was stopped, no snapshot was left half-written");
                return Ok(Outcome::Interrupted);
            }
        }
    }
    reporter.line(&format!(
        "probe finished in {:.1}s ({} failed)",
        started.elapsed().as_secs_f64(),
        failed
    ));
    Ok(Outcome::Done(failed))
}

fn summary(s: &Snapshot) -> String {
    let probed: Vec<_> = s
        .raw
        .machines
        .values()
        .filter(|m| m.outcome != LaunchOutcome::Skipped)
        .collect();
    let ok = probed
        .iter()
        .filter(|m| m.outcome == LaunchOutcome::Started)
        .count();
    format!(
        "{} {}, {} machines, {} probed, {} started, {} PCI identities",
        s.probe.qemu_version,
        s.probe.arch,
        s.raw.machines.len(),
        probed.len(),
        ok,
        s.index.pci_ids.len()
    )
}

/// Writes `<out>/<file_name>` by the rules of [`output::write_file`] (atomically for a
/// regular file), keeping the temporary file's name in `temps` while it exists so that an
/// interrupt can remove it.
fn write_snapshot(
    out: &Path,
    snap: &Snapshot,
    temps: &Mutex<Vec<PathBuf>>,
) -> anyhow::Result<(PathBuf, usize)> {
    let text = snap.to_canonical_json();
    let path = out.join(snap.file_name());
    output::write_file_tracked(&path, text.as_bytes(), &mut |tmp, exists| {
        if let Ok(mut l) = temps.lock() {
            if exists {
                l.push(tmp.to_path_buf());
            } else {
                l.retain(|t| t != tmp);
            }
        }
    })
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, text.len()))
}
