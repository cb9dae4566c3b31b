//! The libvirt-suite tier in the test command: one trial that replays libvirt's own test
//! domains (installed by `runners/scripts/install-libvirt-tests.sh`) on the snapshots of
//! `capsdata/`, prints the parity line, and fails on a regression against the committed
//! baseline of `cases/libvirt-suite-exceptions.toml` (an unlisted non-agreeing case, a stale
//! exception, fewer agreeing cases than the baseline).
//!
//! ```text
//! cargo test -p qconform-conformance --test libvirt_suite
//! ```
//!
//! Environment: `QCONFORM_LIBVIRT_TESTS_ROOT` (default `~/.cache/qconform/libvirt-tests`),
//! `QCONFORM_CAPS_DIR` (default `capsdata/`). Without installed data the trial is ignored
//! with the reason, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use qconform_conformance::libvirt_suite::{
    EXCEPTIONS_FILE, Exceptions, Options, SuiteError, default_tests_root, load_test_data, replay,
};
use qconform_conformance::load_snapshots;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn parity(workspace: &Path) -> Result<Completion, Failed> {
    let Some(root) = default_tests_root() else {
        return Err("no QCONFORM_LIBVIRT_TESTS_ROOT and no HOME".into());
    };
    let data = match load_test_data(&root) {
        Ok(d) => d,
        Err(e @ SuiteError::NotInstalled { .. }) => {
            let msg = format!("{e}");
            if in_ci() {
                return Err(
                    format!("{msg}; CI=true requires the libvirt-suite tier to run").into(),
                );
            }
            eprintln!("libvirt-suite: not run: {msg}");
            return Ok(Completion::ignored_with(msg));
        }
        Err(e) => return Err(e.to_string().into()),
    };
    let exceptions =
        Exceptions::load(&workspace.join(EXCEPTIONS_FILE)).map_err(|e| e.to_string())?;
    let caps_dir = std::env::var_os("QCONFORM_CAPS_DIR")
        .map_or_else(|| workspace.join("capsdata"), PathBuf::from);
    let snaps = load_snapshots(&caps_dir, None);
    if snaps.snapshots.is_empty() {
        return Err(format!("no snapshots in {}", caps_dir.display()).into());
    }
    let summary =
        replay(&data, &snaps, &exceptions, Options::default()).map_err(|e| e.to_string())?;
    eprintln!("{}", summary.parity_line());
    for n in &summary.notes {
        eprintln!("libvirt-suite: note: {n}");
    }
    if summary.problems.is_empty() {
        Ok(Completion::Completed)
    } else {
        Err(format!(
            "{}\n{}\n(see `qconform libvirt-suite` for every case; {EXCEPTIONS_FILE} holds the baseline)",
            summary.parity_line(),
            summary
                .problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
        .into())
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let trials = vec![
        Trial::ignorable_test("libvirt-suite parity", move || parity(&workspace))
            .with_kind("libvirt-suite"),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
