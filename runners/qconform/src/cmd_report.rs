//! `qconform report`: merge the trial records of one or more runs, shards or hosts and
//! write a run directory (`results.jsonl`, `junit.xml`, `report.html`, `caps-diff.json`)
//! with a `latest` link.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use qconform_reports::load;
use qconform_reports::render::{self, REPORT_HTML};
use qconform_reports::results::{Outcome, merge};

/// Arguments of `qconform report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    qconform report\n  \
    qconform report --results shard-1/ --results shard-2/ --results host-s390x/results.jsonl\n  \
    qconform report --caps-dir old-capsdata --out /tmp/reports\n\n\
    Exit status: 0 all trials passed (or were ignored), 1 a trial failed, 3 only the rig failed,\n\
    2 no records or unreadable input.")]
pub struct Args {
    /// Results to merge: files of JSON lines, JSON files with one record (or an array),
    /// or directories searched recursively for *.json and *.jsonl. Repeatable. Default:
    /// where the test runner writes them, `$QCONFORM_RESULTS_DIR`, else
    /// `$CARGO_TARGET_DIR/qconform-results`, else `target/qconform-results`.
    #[arg(long = "results")]
    pub results: Vec<PathBuf>,
    /// Directory of caps snapshots, for the caps diffs of adjacent versions.
    #[arg(
        long = "caps-dir",
        alias = "caps",
        value_name = "DIR",
        default_value = "capsdata"
    )]
    pub caps_dir: PathBuf,
    /// Root of run directories; the report goes to OUT/run-<UTC time>-<id>/ and OUT/latest
    /// points at it.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

/// Where the conformance runner writes its records unless told otherwise.
fn default_results_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("QCONFORM_RESULTS_DIR") {
        return PathBuf::from(d);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("qconform-results")
}

/// Runs the subcommand.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    if args.results.is_empty() {
        args.results.push(default_results_dir());
    }
    let loaded = load::read_results(&args.results)?;
    if loaded.records.is_empty() {
        bail!(
            "no trial records found in {}",
            args.results
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let snapshots = load::read_snapshot_dir(&args.caps_dir)?;
    let sources: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let merged = merge(loaded.records.iter().cloned());
    for c in &merged.conflicts {
        eprintln!(
            "qconform: warning: {} {} ran more than once with different results ({}); keeping {}",
            c.stage.as_str(),
            c.name,
            c.outcomes
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(" vs "),
            c.kept.outcome().as_str()
        );
    }
    let dir = render::write_run_with(&args.out, &loaded.records, &snapshots, sources)?;

    let count = |o: Outcome| merged.records.iter().filter(|r| r.outcome() == o).count();
    let (ok, xfail, failed, rig, ignored) = (
        count(Outcome::Ok),
        count(Outcome::Xfail),
        count(Outcome::Failed),
        count(Outcome::RigError),
        count(Outcome::Ignored),
    );
    crate::stdout::println(&format!(
        "{} trials from {} file(s): {ok} ok, {xfail} xfail, {failed} failed, {rig} rig errors, {ignored} ignored",
        merged.records.len(),
        loaded.files.len()
    ))?;
    crate::stdout::println(&dir.join(REPORT_HTML).display().to_string())?;
    Ok(if failed > 0 {
        ExitCode::from(crate::EXIT_FAILED)
    } else if rig > 0 {
        ExitCode::from(crate::EXIT_RIG)
    } else {
        ExitCode::SUCCESS
    })
}
