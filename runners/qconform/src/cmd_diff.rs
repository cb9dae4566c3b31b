//! `qconform diff` and `qconform drift` (not written yet).

use std::process::ExitCode;

/// Arguments of `qconform diff`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Arguments of `qconform drift`.
#[derive(Debug, clap::Args)]
pub struct DriftArgs {}

/// Runs `diff`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qconform diff is not available in this build yet")
}

/// Runs `drift`.
pub fn run_drift(_args: DriftArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qconform drift is not available in this build yet")
}
