//! The libvirt-suite tier's result: libvirt's own test domains replayed through qconform and
//! compared with the argv (or refusal) libvirt expects. The replay itself lives in the
//! runner (`qconform_conformance::libvirt_suite`); this module holds the data it produces,
//! its one-line parity summary and its JSON form, so the run report can show it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How one libvirt test case compares with qconform's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteClass {
    /// Both accept and every compared device has the same address, or both refuse.
    Agree,
    /// libvirt generates an argv, qconform refuses the domain.
    RefusedByUsOnly,
    /// libvirt refuses the domain, qconform plans it.
    AcceptedByUsOnly,
    /// Both accept, some device is placed differently (or by one side only).
    Disagree,
    /// No fair comparison is possible; `detail` says why.
    NotComparable,
}

impl SuiteClass {
    /// Label used in text, HTML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteClass::Agree => "agree",
            SuiteClass::RefusedByUsOnly => "refused-by-us-only",
            SuiteClass::AcceptedByUsOnly => "accepted-by-us-only",
            SuiteClass::Disagree => "disagree",
            SuiteClass::NotComparable => "not-comparable",
        }
    }

    /// Whether the case counts as comparable.
    pub fn comparable(self) -> bool {
        self != SuiteClass::NotComparable
    }
}

/// One device placed differently: its libvirt alias and both placements (`None`: that side
/// does not place the device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDiff {
    /// libvirt's alias (`id=` on the command line).
    pub device: String,
    /// libvirt's placement (`pci 01:00.0`, `ccw fe.0.0001`, `zpci uid=0x1 fid=0x0`).
    pub libvirt: Option<String>,
    /// qconform's placement.
    pub ours: Option<String>,
}

/// One replayed case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteCaseResult {
    /// `<name>.<arch>-<version>[<variant>]`: the stem of libvirt's expected output file.
    pub id: String,
    /// Target architecture.
    pub arch: String,
    /// `args` (libvirt generates an argv) or `err` (libvirt refuses).
    pub expected: String,
    /// Snapshot planned on (`11.1.3/x86_64`), when one matched.
    pub snapshot: Option<String>,
    /// Outcome.
    pub class: SuiteClass,
    /// Why the case belongs to the addressing-related selection.
    pub selected_by: String,
    /// Our refusal, libvirt's refusal, or why the case is not comparable.
    pub detail: Option<String>,
    /// Devices whose placement was compared and found equal.
    pub devices_equal: usize,
    /// Devices placed differently.
    pub diffs: Vec<DeviceDiff>,
    /// The reason from the committed exception list, when the case is listed there.
    pub exception: Option<String>,
}

/// The parity counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parity {
    /// Cases replayed (the addressing-related selection).
    pub selected: usize,
    /// Comparable cases (every class but not-comparable).
    pub comparable: usize,
    /// Comparable cases that agree.
    pub agree: usize,
    /// libvirt accepts, qconform refuses.
    pub refused_by_us_only: usize,
    /// libvirt refuses, qconform accepts.
    pub accepted_by_us_only: usize,
    /// Both accept, addresses differ.
    pub disagree: usize,
    /// Not comparable.
    pub not_comparable: usize,
    /// Devices compared and equal, over all cases.
    pub devices_equal: usize,
    /// Non-agreeing comparable cases covered by a listed exception.
    pub listed_exceptions: usize,
}

impl Parity {
    /// Counts the classes of a set of results.
    pub fn of(cases: &[SuiteCaseResult]) -> Parity {
        let mut p = Parity {
            selected: cases.len(),
            ..Parity::default()
        };
        for c in cases {
            p.devices_equal += c.devices_equal;
            match c.class {
                SuiteClass::Agree => p.agree += 1,
                SuiteClass::RefusedByUsOnly => p.refused_by_us_only += 1,
                SuiteClass::AcceptedByUsOnly => p.accepted_by_us_only += 1,
                SuiteClass::Disagree => p.disagree += 1,
                SuiteClass::NotComparable => p.not_comparable += 1,
            }
            if c.class.comparable() {
                p.comparable += 1;
                if c.class != SuiteClass::Agree && c.exception.is_some() {
                    p.listed_exceptions += 1;
                }
            }
        }
        p
    }

    /// `114/137 agree, 5 refused by us only, 3 accepted by us only, 15 disagree, 13 not
    /// comparable`.
    pub fn line(&self) -> String {
        format!(
            "{}/{} agree, {} refused by us only, {} accepted by us only, {} disagree, {} not comparable",
            self.agree,
            self.comparable,
            self.refused_by_us_only,
            self.accepted_by_us_only,
            self.disagree,
            self.not_comparable
        )
    }
}

/// The whole replay: where the data came from, the counts, every case, and what breaks the
/// committed baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteSummary {
    /// `libvirt <debian version> <tarball> sha256:<hex>` (the installer's SOURCE line).
    pub source: String,
    /// The selection rule, in words.
    pub selection: String,
    /// Counts.
    pub parity: Parity,
    /// The committed minimum of agreeing cases.
    pub baseline_agree: usize,
    /// Every case, sorted by id.
    pub cases: Vec<SuiteCaseResult>,
    /// Regressions against the baseline: an unlisted non-agreeing case, a stale exception,
    /// fewer agreeing cases than the baseline. Empty when the tier passes.
    pub problems: Vec<String>,
    /// Worth knowing, not a failure (the baseline can be raised, ...).
    pub notes: Vec<String>,
}

impl SuiteSummary {
    /// `libvirt-suite: 114/137 agree, ... (libvirt 11.3.0-2~bpo12+1; 150 cases, 718 devices
    /// equal; 23 listed exceptions; 0 problems)`.
    pub fn parity_line(&self) -> String {
        let version = self
            .source
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "libvirt-suite: {} ({}; {} cases, {} devices equal; {} listed exceptions; {} problems)",
            self.parity.line(),
            if version.is_empty() {
                "libvirt ?"
            } else {
                &version
            },
            self.parity.selected,
            self.parity.devices_equal,
            self.parity.listed_exceptions,
            self.problems.len()
        )
    }

    /// Plain text: the parity line, the problems, then one block per case that does not
    /// agree (every case with `all`).
    pub fn text(&self, all: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.parity_line());
        let _ = writeln!(out, "source: {}", self.source);
        let _ = writeln!(out, "selection: {}", self.selection);
        for p in &self.problems {
            let _ = writeln!(out, "PROBLEM: {p}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for c in &self.cases {
            if !all && c.class == SuiteClass::Agree {
                continue;
            }
            let _ = write!(
                out,
                "\n{:<20} {} [{} on {}]",
                c.class.as_str(),
                c.id,
                c.expected,
                c.snapshot.as_deref().unwrap_or("-")
            );
            if c.devices_equal > 0 {
                let _ = write!(out, " {} devices equal", c.devices_equal);
            }
            out.push('\n');
            if let Some(d) = &c.detail {
                let _ = writeln!(out, "    {d}");
            }
            for d in &c.diffs {
                let _ = writeln!(
                    out,
                    "    {}: libvirt {}, qconform {}",
                    d.device,
                    d.libvirt.as_deref().unwrap_or("(not placed)"),
                    d.ours.as_deref().unwrap_or("(not placed)")
                );
            }
            if let Some(e) = &c.exception {
                let _ = writeln!(out, "    listed exception: {e}");
            }
        }
        out
    }

    /// Pretty JSON (the run directory's `libvirt-suite.json`).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        s.push('\n');
        s
    }
}

/// What the run report shows for the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteSection {
    /// The replay ran.
    Ran(Box<SuiteSummary>),
    /// It did not; why (data not installed, ...).
    NotRun(String),
}

impl SuiteSection {
    /// JSON form: the summary, or `{"not_run": reason}`.
    pub fn to_json(&self) -> String {
        match self {
            SuiteSection::Ran(s) => s.to_json(),
            SuiteSection::NotRun(r) => {
                let mut s = serde_json::json!({ "not_run": r }).to_string();
                s.push('\n');
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, class: SuiteClass, exception: bool) -> SuiteCaseResult {
        SuiteCaseResult {
            id: id.into(),
            arch: "x86_64".into(),
            expected: "args".into(),
            snapshot: Some("11.1.3/x86_64".into()),
            class,
            selected_by: "name".into(),
            detail: None,
            devices_equal: 2,
            diffs: Vec::new(),
            exception: exception.then(|| "reason".to_owned()),
        }
    }

    #[test]
    fn parity_counts_and_line() {
        let cases = vec![
            case("a", SuiteClass::Agree, false),
            case("b", SuiteClass::Disagree, true),
            case("c", SuiteClass::RefusedByUsOnly, false),
            case("d", SuiteClass::NotComparable, false),
            case("e", SuiteClass::AcceptedByUsOnly, true),
        ];
        let p = Parity::of(&cases);
        assert_eq!(p.selected, 5);
        assert_eq!(p.comparable, 4);
        assert_eq!(p.listed_exceptions, 2);
        assert_eq!(p.devices_equal, 10);
        assert_eq!(
            p.line(),
            "1/4 agree, 1 refused by us only, 1 accepted by us only, 1 disagree, 1 not comparable"
        );
    }
}
