//! `qconform libvirt-suite`: replay libvirt's own test domains (installed by
//! `runners/scripts/install-libvirt-tests.sh`) on the snapshots and print the parity with
//! libvirt's expected argv and refusals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use qconform_conformance::libvirt_suite::{
    EXCEPTIONS_FILE, Exceptions, Options, default_tests_root, load_test_data, replay,
};
use qconform_conformance::load_snapshots;

use crate::stdout;
use crate::{EXIT_FAILED, EXIT_RIG, EXIT_USAGE};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The parity line, problems, then every case that does not agree.
    Text,
    /// The whole result as one JSON object.
    Json,
}

/// Arguments of `qconform libvirt-suite`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
libvirt's source carries, in tests/qemuxmlconfdata/, the domains its developers wrote with
the QEMU argv libvirt generates for each (NAME.<arch>-latest.args, NAME.<arch>-X.Y.0.args)
or its refusal (.err). Each selected domain is planned on the matching snapshot (latest: the
newest snapshot of the arch; X.Y.0: the snapshot of QEMU X.Y) and compared: acceptance, and
device by device (libvirt's aliases) the PCI bus/slot/function and multifunction, the zPCI
uid/fid and the CCW devno.

Classes: agree, refused by us only, accepted by us only, disagree (with the devices), not
comparable (with the reason). Every comparable case that does not agree must be listed with
its reason in cases/libvirt-suite-exceptions.toml; a listed case that agrees now is stale;
the number of agreeing cases must not fall below [baseline] agree there.

Exit status:
  0  parity holds against the committed baseline
  1  a regression: an unlisted non-agreeing case, a stale exception, fewer agreeing cases
  2  bad usage or an unreadable exception list / snapshot directory
  3  the test data is not installed

Examples:
  runners/scripts/install-libvirt-tests.sh
  qconform libvirt-suite
  qconform libvirt-suite --format json > parity.json
  qconform libvirt-suite --list        # every case with its class
  qconform libvirt-suite --all         # every case, not only the addressing-related ones")]
pub struct Args {
    /// Root of the installed test data (holds qemuxmlconfdata/ and qemuxmlconftest.c)
    /// [default: $QCONFORM_LIBVIRT_TESTS_ROOT, else ~/.cache/qconform/libvirt-tests].
    #[arg(long, value_name = "DIR")]
    pub tests_dir: Option<PathBuf>,
    /// Directory of caps snapshots.
    #[arg(long, value_name = "DIR", default_value = "capsdata")]
    pub caps_dir: PathBuf,
    /// The exception list and baseline.
    #[arg(long, value_name = "FILE", default_value = EXCEPTIONS_FILE)]
    pub exceptions: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Text format: list every case, the agreeing ones too.
    #[arg(long)]
    pub list: bool,
    /// Replay every case of the data, not only the addressing-related selection (the
    /// baseline is then not checked).
    #[arg(long)]
    pub all: bool,
}

/// Runs the subcommand.
#[allow(clippy::needless_pass_by_value)] // the dispatcher hands every subcommand its Args
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(root) = args.tests_dir.clone().or_else(default_tests_root) else {
        eprintln!("qconform libvirt-suite: no --tests-dir and no HOME to find the default");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let data = match load_test_data(&root) {
        Ok(d) => d,
        Err(e @ qconform_conformance::libvirt_suite::SuiteError::NotInstalled { .. }) => {
            eprintln!("qconform libvirt-suite: {e}");
            return Ok(ExitCode::from(EXIT_RIG));
        }
        Err(e) => return Err(e.into()),
    };
    let exceptions = Exceptions::load(&args.exceptions)?;
    let snaps = load_snapshots(&args.caps_dir, None);
    for e in &snaps.errors {
        eprintln!("qconform libvirt-suite: snapshot skipped: {e}");
    }
    if snaps.snapshots.is_empty() {
        eprintln!(
            "qconform libvirt-suite: no snapshots in {}",
            args.caps_dir.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let summary = replay(&data, &snaps, &exceptions, Options { all: args.all })
        .with_context(|| format!("replaying {}", root.display()))?;
    match args.format {
        Format::Json => stdout::print(&summary.to_json())?,
        Format::Text => stdout::print(&summary.text(args.list))?,
    }
    Ok(if summary.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
