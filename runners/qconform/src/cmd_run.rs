//! `qconform run` (not written yet).

use std::process::ExitCode;

/// Arguments of `qconform run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qconform run is not available in this build yet")
}
