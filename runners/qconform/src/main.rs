//! The `qconform` command line: probe QEMU binaries into caps snapshots, plan domains
//! against them, run the conformance matrix, and report.
//!
//! Each subcommand lives in its own module with an `Args` struct and a `run` function.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_caps;
mod cmd_diff;
mod cmd_explore;
mod cmd_plan;
mod cmd_probe;
mod cmd_report;
mod cmd_run;
mod snapshot_arg;

/// Exit status for "the product failed" (a check disagreed).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad usage or bad input (unreadable file, malformed XML, ...).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for "the rig is broken" (QEMU could not be launched, assets missing).
pub const EXIT_RIG: u8 = 3;

/// Tells, before a guest boots, what a QEMU build accepts and what the guest will see.
///
/// Typical flow: `qconform probe --matrix` records caps snapshots into capsdata/,
/// `qconform plan domain.xml --caps capsdata/caps_11.1.3_x86_64.json` predicts the QEMU
/// argv and the guest's PCI devices, `qconform run` replays every case against every
/// snapshot and verifies on real QEMU, `qconform diff` compares two QEMU releases.
#[derive(Debug, Parser)]
#[command(name = "qconform", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe QEMU binaries over QMP and write caps snapshots.
    Probe(cmd_probe::Args),
    /// Inspect caps snapshots: which machines, which devices fit, the default bus.
    Caps(cmd_caps::Args),
    /// Plan a libvirt-style domain against a snapshot: argv, addresses, guest view.
    Plan(cmd_plan::Args),
    /// Run the conformance matrix (replay, live, guest) and write a report.
    Run(cmd_run::Args),
    /// Compare two snapshots (or two directories of snapshots).
    Diff(cmd_diff::Args),
    /// Show how a case's plan changes between two snapshots (guest ABI drift).
    Drift(cmd_diff::DriftArgs),
    /// Render or merge conformance results into JUnit, JSON lines and HTML.
    Report(cmd_report::Args),
    /// Check random domains from each snapshot's vocabulary on the real binaries.
    Explore(cmd_explore::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(a) => cmd_probe::run(a),
        Command::Caps(a) => cmd_caps::run(a),
        Command::Plan(a) => cmd_plan::run(a),
        Command::Run(a) => cmd_run::run(a),
        Command::Diff(a) => cmd_diff::run(a),
        Command::Drift(a) => cmd_diff::run_drift(a),
        Command::Report(a) => cmd_report::run(a),
        Command::Explore(a) => cmd_explore::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("qconform: error: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
