//! The `qconform` command line: probe QEMU binaries into caps snapshots (`probe`), read
//! them (`caps list`, `caps show`), plan domains against them (`plan`), compare two
//! snapshots or two directories of them (`diff`) and a domain's plan across two snapshots
//! (`drift`), run the conformance matrix (`run`), and merge results into a report
//! (`report`).
//!
//! Each subcommand lives in its own `cmd_*` module with an `Args` struct and a `run`
//! function returning the exit status; an error it returns is printed once and exits 2.
//! Shared by all of them:
//! * `snapshot_arg`: a snapshot argument (file or id such as `11.1/x86_64`) resolved in
//!   the snapshot directory, which every subcommand takes as `--caps-dir DIR`;
//! * `stdout`: printing that a closed pipe or a full disk cannot turn into a panic;
//! * files given by the user are written with `qconform_reports::output::write_file`
//!   (atomic for regular files, through symlinks, FIFOs and devices, never over a
//!   directory) and read with `qconform_reports::load` (bounded, UTF-8 checked).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_caps;
mod cmd_diff;
mod cmd_explore;
mod cmd_libvirt_suite;
mod cmd_plan;
mod cmd_probe;
mod cmd_qualify;
mod cmd_report;
mod cmd_run;
mod rig_args;
mod snapshot_arg;
mod stdout;

/// Exit status for "the product failed" (a check disagreed).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad usage or bad input (unreadable file, malformed XML, ...).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for "the rig is broken" (QEMU could not be launched, assets missing).
pub const EXIT_RIG: u8 = 3;

/// Tells, before a guest boots, what a QEMU build accepts and what the guest will see.
///
/// Typical flow: `qconform probe --matrix` records caps snapshots into capsdata/,
/// `qconform plan domain.xml --caps 11.1/x86_64` predicts the QEMU argv and the guest's
/// PCI devices, `qconform run` replays every case against every
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
    /// Qualify a QEMU build against a recorded baseline: probe, replay, live; a verdict.
    Qualify(cmd_qualify::Args),
    /// Render or merge conformance results into JUnit, JSON lines and HTML.
    Report(cmd_report::Args),
    /// Replay libvirt's own test domains and print the parity with libvirt's argv.
    LibvirtSuite(cmd_libvirt_suite::Args),
    /// Check random domains from each snapshot's vocabulary on the real binaries.
    Explore(cmd_explore::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version land here too: print them without ignoring a full disk.
            let code = u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
            return match e.print() {
                Err(io) if io.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("qconform: error: cannot write to standard output: {io}");
                    ExitCode::from(EXIT_USAGE)
                }
                _ => ExitCode::from(code),
            };
        }
    };
    let result = match cli.command {
        Command::Probe(a) => cmd_probe::run(a),
        Command::Caps(a) => cmd_caps::run(a),
        Command::Plan(a) => cmd_plan::run(a),
        Command::Run(a) => cmd_run::run(a),
        Command::Diff(a) => cmd_diff::run(a),
        Command::Drift(a) => cmd_diff::run_drift(a),
        Command::Qualify(a) => cmd_qualify::run(a),
        Command::Report(a) => cmd_report::run(a),
        Command::LibvirtSuite(a) => cmd_libvirt_suite::run(a),
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
