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

impl TrialRecord {
    /// Outcome label used in reports: `ok`, `xfail`, `failed`, `rig-error`, `ignored`.
    pub fn outcome(&self) -> Outcome {
        match self.event {
            Event::Ok if self.xfail => Outcome::Xfail,
            Event::Ok => Outcome::Ok,
            Event::Failed if self.rig_error => Outcome::RigError,
            Event::Failed => Outcome::Failed,
            Event::Ignored => Outcome::Ignored,
        }
    }

    /// Numeric version triple parsed from `qemu_version` (missing parts are 0), for
    /// sorting `7.2.0 < 10.0.0 < 11.1.3`; unparsable parts sort last.
    pub fn version_key(&self) -> Vec<u64> {
        version_key(&self.qemu_version)
    }

    /// Sort key: case, version (numeric), arch, machine, stage, name.
    fn sort_key(&self) -> (&str, Vec<u64>, &str, Option<&str>, Stage, &str) {
        (
            &self.case,
            self.version_key(),
            &self.arch,
            self.machine.as_deref(),
            self.stage,
            &self.name,
        )
    }

    /// Whether two records say the same thing (everything but `exec_time` equal).
    pub fn same_result(&self, other: &TrialRecord) -> bool {
        let mut a = self.clone();
        a.exec_time = other.exec_time;
        a == *other
    }
}

/// Numeric key of a dotted version string (`11.1.3` → `[11, 1, 3]`): the one version
/// ordering, [`qconform_caps::version_key`].
pub use qconform_caps::version_key;

/// What a record means for a reader, one step finer than [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Not run (capability-gated, tier not selected, binary not installed).
    Ignored,
    /// Passed.
    Ok,
    /// Expected failure that failed as expected.
    Xfail,
    /// The rig failed (QEMU could not be launched, assets missing).
    RigError,
    /// The product disagrees with its goldens or with QEMU.
    Failed,
}

impl Outcome {
    /// Short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ignored => "ignored",
            Outcome::Ok => "ok",
            Outcome::Xfail => "xfail",
            Outcome::RigError => "rig-error",
            Outcome::Failed => "failed",
        }
    }

    /// Rank used when merging and aggregating: a failure outranks a rig error, which
    /// outranks a pass, which outranks a trial that was not run.
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Ignored => 0,
            Outcome::Ok => 1,
            Outcome::Xfail => 2,
            Outcome::RigError => 3,
            Outcome::Failed => 4,
        }
    }
}

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ParseError {
    /// File (or other source) name.
    pub source_name: String,
    /// 1-based line number (0 when the whole text was one JSON document).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn record_from_value(
    source_name: &str,
    line: usize,
    value: serde_json::Value,
) -> Result<Option<TrialRecord>, ParseError> {
    // libtest streams also carry `suite` events and `started` test events: skip those,
    // and anything else that is not a finished test (e.g. a caps-diff.json).
    let is_test = value.get("type").and_then(serde_json::Value::as_str) == Some("test");
    let event = value.get("event").and_then(serde_json::Value::as_str);
    if !is_test || !matches!(event, Some("ok" | "failed" | "ignored")) {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ParseError {
            source_name: source_name.to_owned(),
            line,
            message: format!("not a trial record: {e}"),
        })
}

/// Reads trial records from text: JSON lines, one JSON record, or a JSON array of records.
/// Objects that are not finished-test events (libtest `suite` and `started` events, other
/// documents) are skipped; a finished-test event without our fields is an error naming
/// the source and line.
pub fn parse_records(source_name: &str, text: &str) -> Result<Vec<TrialRecord>, ParseError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| ParseError {
                source_name: source_name.to_owned(),
                line: e.line(),
                message: format!("not a JSON array of trial records: {e}"),
            })?;
        let mut out = Vec::new();
        for v in values {
            out.extend(record_from_value(source_name, 0, v)?);
        }
        return Ok(out);
    }
    // A single pretty-printed document spans several lines: try the whole text first.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(record_from_value(source_name, 0, v)?.into_iter().collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| ParseError {
            source_name: source_name.to_owned(),
            line: i + 1,
            message: format!("not JSON: {e}"),
        })?;
        out.extend(record_from_value(source_name, i + 1, v)?);
    }
    Ok(out)
}

/// JSON lines, one record per line, in the order given.
pub fn to_json_lines(records: &[TrialRecord]) -> String {
    let mut out = String::new();
    for r in records {
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Two or more records for the same trial that say different things.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// Trial name.
    pub name: String,
    /// Stage.
    pub stage: Stage,
    /// Outcomes of all the differing records, sorted by severity (worst first).
    pub outcomes: Vec<Outcome>,
    /// The record that was kept.
    pub kept: TrialRecord,
}

/// Records of several shards or hosts merged into one set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// One record per (stage, trial name), sorted by case, version, arch, machine, stage.
    pub records: Vec<TrialRecord>,
    /// Records dropped because another record said the same thing (re-read files).
    pub duplicates: usize,
    /// Records superseded by a run result (an `ignored` record next to a run one: typical
    /// when each host runs only its own architectures).
    pub superseded: usize,
    /// Trials run more than once with different results.
    pub conflicts: Vec<Conflict>,
}

/// Merges records from several shards or hosts.
///
/// Records are keyed by (stage, name). For each key:
/// * records that agree in everything but `exec_time` are duplicates: one is kept;
/// * `ignored` records give way to records of a trial that ran, silently (one host per
///   architecture ignores what another host runs);
/// * records of trials that ran and disagree are a [`Conflict`]: the worst outcome is
///   kept (failed > rig error > xfail > ok), so a merge never hides a failure, and the
///   conflict is listed in the report.
///
/// The result does not depend on the order of the input.
pub fn merge(records: impl IntoIterator<Item = TrialRecord>) -> Merged {
    let mut groups: std::collections::BTreeMap<(Stage, String), Vec<TrialRecord>> =
        std::collections::BTreeMap::new();
    for r in records {
        groups.entry((r.stage, r.name.clone())).or_default().push(r);
    }
    let mut merged = Merged::default();
    for ((stage, name), mut group) in groups {
        // Deterministic order regardless of input order: worst first, then by content.
        group.sort_by(|a, b| {
            b.outcome()
                .severity()
                .cmp(&a.outcome().severity())
                .then_with(|| {
                    let ja = serde_json::to_string(a).unwrap_or_default();
                    let jb = serde_json::to_string(b).unwrap_or_default();
                    ja.cmp(&jb)
                })
        });
        let mut distinct: Vec<TrialRecord> = Vec::new();
        for r in group {
            if distinct.iter().any(|d| d.same_result(&r)) {
                merged.duplicates += 1;
            } else {
                distinct.push(r);
            }
        }
        let ran: Vec<&TrialRecord> = distinct
            .iter()
            .filter(|r| r.event != Event::Ignored)
            .collect();
        if !ran.is_empty() {
            merged.superseded += distinct.len() - ran.len();
        }
        if ran.len() > 1 {
            merged.conflicts.push(Conflict {
                name: name.clone(),
                stage,
                outcomes: ran.iter().map(|r| r.outcome()).collect(),
                kept: ran[0].clone(),
            });
        } else if ran.is_empty() && distinct.len() > 1 {
            // Several different reasons to ignore: keep the first, no conflict.
            merged.superseded += distinct.len() - 1;
        }
        if let Some(first) = distinct.into_iter().next() {
            merged.records.push(first);
        }
    }
    merged
        .records
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    merged
}
