//! Conformance results: one record per trial, written as JSON lines by the runners and
//! merged by the report. The shape mirrors libtest's JSON events (`type`, `event`,
//! `name`, `exec_time`) with our axes added, so existing tooling can read the stream.

use serde::{Deserialize, Serialize};

/// Stage of a trial (libtest-mimic `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Offline replay: plan the domain against the snapshot, compare with the goldens.
    Plan,
    /// Launch the argv on the real binary and compare `query-pci` / the error.
    Live,
    /// Boot a real guest kernel and compare what it enumerates.
    Guest,
}

impl Stage {
    /// Name used as libtest-mimic kind and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Live => "live",
            Stage::Guest => "guest",
        }
    }
}

/// libtest event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// Passed (including an expected failure that failed as expected: see `xfail`).
    Ok,
    /// Failed: the product disagrees with its goldens or with QEMU.
    Failed,
    /// Not run: capability-gated or tier not selected; `message` says why.
    Ignored,
}

/// One finished trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Always `"test"` (libtest's JSON shape).
    #[serde(rename = "type")]
    pub record_type: String,
    /// Outcome.
    pub event: Event,
    /// Trial name: `<case>@<version>/<arch>[/<machine>]`.
    pub name: String,
    /// Seconds the trial took (libtest's `exec_time`).
    pub exec_time: f64,
    /// Stage (kind).
    pub stage: Stage,
    /// Case directory name relative to `cases/`.
    pub case: String,
    /// QEMU version (`11.1.3`).
    pub qemu_version: String,
    /// Target architecture.
    pub arch: String,
    /// Canonical machine type, when the trial has one.
    pub machine: Option<String>,
    /// The trial was an expected failure (`xfail` in `case.toml`) that failed as expected.
    #[serde(default)]
    pub xfail: bool,
    /// The rig, not the product, failed (QEMU could not be launched, assets missing).
    #[serde(default)]
    pub rig_error: bool,
    /// Failure text (a unified diff where there is one) or the reason for ignoring.
    pub message: Option<String>,
    /// The QEMU argv involved, when any.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Last lines of QEMU's standard error, when QEMU ran.
    pub stderr_tail: Option<String>,
}
