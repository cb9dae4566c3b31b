//! `qconform plan` (not written yet).

use std::process::ExitCode;

/// Arguments of `qconform plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qconform plan is not available in this build yet")
}
