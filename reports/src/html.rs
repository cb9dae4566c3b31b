//! The conformance matrix as one self-contained HTML page: rows are cases, columns are
//! QEMU version/arch, each cell shows one badge per stage (P = plan, L = live, G = guest)
//! and links to a detail section with the argv, the diff or message and QEMU's stderr.
//! The caps diffs of adjacent versions follow on the same page, and, when the run replayed
//! it, the libvirt-suite parity (libvirt's own test domains). No external assets and no
//! script.

use std::collections::{BTreeMap, BTreeSet};

use maud::{Markup, html};

use crate::diff::CapsDiff;
use crate::diff_render::{diff_anchor, html_fragment};
use crate::page::{AnchorSet, diff_block, document};
use crate::results::{Merged, Outcome, Stage, TrialRecord, version_key};
use crate::shell::shell_join;
use crate::suite::{SuiteClass, SuiteSection, SuiteSummary};

/// Information about the run shown at the top of the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageMeta {
    /// Page title.
    pub title: String,
    /// Run directory name (`run-...`), when written as a run.
    pub run_id: Option<String>,
    /// UTC time the report was written (`2025-01-31 12:00:00 UTC`).
    pub generated: Option<String>,
    /// Where the records came from (file names), for merged reports.
    pub sources: Vec<String>,
    /// The libvirt-suite tier's result, when the run replayed it (or why it did not).
    pub libvirt_suite: Option<SuiteSection>,
}

/// A column of the matrix: one QEMU version on one architecture.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    /// Architecture.
    pub arch: String,
    /// Numeric version key (for ordering).
    pub key: Vec<u64>,
    /// Version as written in the records.
    pub version: String,
}

impl Column {
    fn of(r: &TrialRecord) -> Column {
        Column {
            arch: r.arch.clone(),
            key: version_key(&r.qemu_version),
            version: r.qemu_version.clone(),
        }
    }
}

/// The matrix: sorted rows (cases), sorted columns (arch, then version) and the records of
/// each cell.
#[derive(Debug, Clone, Default)]
pub struct Matrix<'a> {
    /// Case names, sorted.
    pub rows: Vec<String>,
    /// Columns sorted by arch then numeric version.
    pub columns: Vec<Column>,
    /// Records per (row index, column index).
    pub cells: BTreeMap<(usize, usize), Vec<&'a TrialRecord>>,
}

impl<'a> Matrix<'a> {
    /// Builds the matrix of a set of records.
    pub fn of(records: &'a [TrialRecord]) -> Matrix<'a> {
        let rows: Vec<String> = records
            .iter()
            .map(|r| r.case.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let columns: Vec<Column> = records
            .iter()
            .map(Column::of)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let row_ix: BTreeMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let col_ix: BTreeMap<&Column, usize> =
            columns.iter().enumerate().map(|(i, c)| (c, i)).collect();
        let mut cells: BTreeMap<(usize, usize), Vec<&TrialRecord>> = BTreeMap::new();
        for r in records {
            let col = Column::of(r);
            if let (Some(&ri), Some(&ci)) = (row_ix.get(r.case.as_str()), col_ix.get(&col)) {
                cells.entry((ri, ci)).or_default().push(r);
            }
        }
        Matrix {
            rows,
            columns,
            cells,
        }
    }
}

/// Consecutive columns of one architecture: (arch, number of columns).
fn arch_spans(columns: &[Column]) -> Vec<(&str, usize)> {
    let mut out: Vec<(&str, usize)> = Vec::new();
    for c in columns {
        match out.last_mut() {
            Some((a, n)) if *a == c.arch => *n += 1,
            _ => out.push((&c.arch, 1)),
        }
    }
    out
}

/// Unique ids of the cells and trials of a matrix.
struct Ids {
    cells: BTreeMap<(usize, usize), String>,
    trials: BTreeMap<(Stage, String), String>,
}

impl Ids {
    fn of(m: &Matrix<'_>, diffs: &[CapsDiff]) -> Ids {
        let mut set = AnchorSet::default();
        set.reserve(FIXED_IDS.iter().copied());
        let diff_ids: Vec<String> = diffs.iter().map(diff_anchor).collect();
        set.reserve(diff_ids.iter().map(String::as_str));
        let mut cells = BTreeMap::new();
        let mut trials = BTreeMap::new();
        for (&(ri, ci), recs) in &m.cells {
            let (Some(case), Some(col)) = (m.rows.get(ri), m.columns.get(ci)) else {
                continue;
            };
            let id = set.unique(&format!("cell-{case}-{}-{}", col.version, col.arch));
            cells.insert((ri, ci), id);
            for r in recs {
                let id = set.unique(&format!("t-{}-{}", r.stage.as_str(), r.name));
                trials.insert((r.stage, r.name.clone()), id);
            }
        }
        Ids { cells, trials }
    }

    fn cell(&self, ri: usize, ci: usize) -> &str {
        self.cells.get(&(ri, ci)).map_or("top", String::as_str)
    }

    fn trial(&self, r: &TrialRecord) -> &str {
        self.trials
            .get(&(r.stage, r.name.clone()))
            .map_or("top", String::as_str)
    }
}

/// Ids of the fixed sections of the page.
const FIXED_IDS: &[&str] = &[
    "top",
    "summary",
    "matrix",
    "failures",
    "conflicts",
    "details",
    "capsdiff",
    "libvirt-suite",
];

const STAGES: [Stage; 3] = [Stage::Plan, Stage::Live, Stage::Guest];

fn stage_letter(s: Stage) -> &'static str {
    match s {
        Stage::Plan => "P",
        Stage::Live => "L",
        Stage::Guest => "G",
    }
}

/// Worst outcome of a stage within a cell, with the count of trials.
fn stage_summary(recs: &[&TrialRecord], stage: Stage) -> Option<(Outcome, usize, usize)> {
    let of_stage: Vec<&&TrialRecord> = recs.iter().filter(|r| r.stage == stage).collect();
    let worst = of_stage
        .iter()
        .map(|r| r.outcome())
        .max_by_key(|o| o.severity())?;
    let passed = of_stage
        .iter()
        .filter(|r| matches!(r.outcome(), Outcome::Ok | Outcome::Xfail))
        .count();
    Some((worst, passed, of_stage.len()))
}

fn looks_like_diff(s: &str) -> bool {
    s.lines().any(|l| l.starts_with("@@")) || s.lines().any(|l| l.starts_with("--- "))
}

fn message_block(msg: &str) -> Markup {
    if looks_like_diff(msg) {
        diff_block(msg)
    } else {
        html! { pre { (msg) } }
    }
}

/// Counts of outcomes per stage.
fn counts(records: &[TrialRecord]) -> BTreeMap<Stage, BTreeMap<Outcome, usize>> {
    let mut out: BTreeMap<Stage, BTreeMap<Outcome, usize>> = BTreeMap::new();
    for r in records {
        *out.entry(r.stage)
            .or_default()
            .entry(r.outcome())
            .or_default() += 1;
    }
    out
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Ok,
    Outcome::Xfail,
    Outcome::Failed,
    Outcome::RigError,
    Outcome::Ignored,
];

/// Renders the whole report page.
pub fn report_page(merged: &Merged, diffs: &[CapsDiff], meta: &PageMeta) -> String {
    let records = &merged.records;
    let m = Matrix::of(records);
    let ids = Ids::of(&m, diffs);
    let counts = counts(records);
    let diff_to: BTreeMap<(String, String), String> = diffs
        .iter()
        .filter(|d| d.old.arch == d.new.arch)
        .map(|d| {
            (
                (d.new.arch.clone(), d.new.qemu_version.clone()),
                diff_anchor(d),
            )
        })
        .collect();
    let failures: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| matches!(r.outcome(), Outcome::Failed | Outcome::RigError))
        .collect();
    let title = if meta.title.is_empty() {
        "qconform conformance report"
    } else {
        meta.title.as_str()
    };
    let body = html! {
                h1 { (title) }
                ul.meta {
                    @if let Some(id) = &meta.run_id { li { "run " code { (id) } } }
                    @if let Some(g) = &meta.generated { li { "written " (g) } }
                    li { (records.len()) " trials, " (m.rows.len()) " cases, "
                         (m.columns.len()) " QEMU version/arch columns" }
                    @if !meta.sources.is_empty() {
                        li { "merged from " (meta.sources.len()) " file(s): " (meta.sources.join(", ")) }
                    }
                    @if merged.duplicates > 0 || merged.superseded > 0 {
                        li { (merged.duplicates) " duplicate record(s) dropped, "
                             (merged.superseded) " ignored record(s) superseded by a run" }
                    }
                }
                nav {
                    a href="#matrix" { "Matrix" } " · "
                    a href="#failures" { "Failures (" (failures.len()) ")" } " · "
                    @if !merged.conflicts.is_empty() {
                        a href="#conflicts" { "Conflicts (" (merged.conflicts.len()) ")" } " · "
                    }
                    @if meta.libvirt_suite.is_some() {
                        a href="#libvirt-suite" { "libvirt suite" } " · "
                    }
                    a href="#details" { "Details" } " · "
                    a href="#capsdiff" { "Caps diffs (" (diffs.len()) ")" }
                }
                h2 id="summary" { "Summary" }
                table.summary {
                    thead { tr { th { "stage" } @for o in OUTCOMES { th { (o.as_str()) } } th { "total" } } }
                    tbody {
                        @for s in STAGES {
                            @if let Some(c) = counts.get(&s) {
                                tr {
                                    th { (s.as_str()) }
                                    @for o in OUTCOMES { td { (c.get(&o).copied().unwrap_or(0)) } }
                                    td { (c.values().sum::<usize>()) }
                                }
                            }
                        }
                    }
                }
                h2 id="matrix" { "Matrix" }
                p.legend {
                    span.item { span.b.ok { "P" } "plan · " span.b.ok { "L" } "live · " span.b.ok { "G" } "guest" }
                    @for o in OUTCOMES { span.item { span class={ "b " (o.as_str()) } { "·" } (o.as_str()) } }
                }
                p.legend { "Columns are QEMU version / architecture; a column heading links to the caps diff from the previous version. Each cell links to its details." }
                table.matrix {
                    thead {
                        tr {
                            th rowspan="2" { "case" }
                            @for (arch, span) in arch_spans(&m.columns) {
                                @if arch.is_empty() {
                                    th.arch colspan=(span) title="trials that need no QEMU binary (checks of the case itself)" { "case-wide" }
                                } @else {
                                    th.arch colspan=(span) { (arch) }
                                }
                            }
                        }
                        tr {
                            @for c in &m.columns {
                                th.col {
                                    @if let Some(a) = diff_to.get(&(c.arch.clone(), c.version.clone())) {
                                        a href={ "#" (a) } title="caps diff from the previous version" { (c.version) }
                                    } @else if c.version.is_empty() { "—" } @else { (c.version) }
                                }
                            }
                        }
                    }
                    tfoot {
                        tr {
                            th.foot { "failed" }
                            @for ci in 0..m.columns.len() {
                                @let failed = m.cells.iter()
                                    .filter(|((_, c), _)| *c == ci)
                                    .flat_map(|(_, recs)| recs.iter())
                                    .filter(|r| matches!(r.outcome(), Outcome::Failed | Outcome::RigError))
                                    .count();
                                td.total.bad[failed > 0] { (failed) }
                            }
                        }
                    }
                    tbody {
                        @for (ri, case) in m.rows.iter().enumerate() {
                            tr {
                                th.case { (case) }
                                @for (ci, col) in m.columns.iter().enumerate() {
                                    @if let Some(recs) = m.cells.get(&(ri, ci)) {
                                        td.cell title={ (case) " @ " (col.version) "/" (col.arch) } {
                                            a href={ "#" (ids.cell(ri, ci)) } {
                                                @for s in STAGES {
                                                    @if let Some((o, pass, n)) = stage_summary(recs, s) {
                                                        span class={ "b " (o.as_str()) }
                                                            title={ (s.as_str()) ": " (o.as_str()) " (" (pass) "/" (n) " passed)" }
                                                            { (stage_letter(s)) }
                                                    }
                                                }
                                            }
                                        }
                                    } @else {
                                        td.cell.empty title="no trial" { "·" }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 id="failures" { "Failures" }
                @if failures.is_empty() {
                    p { "No failures." }
                } @else {
                    ul.failures {
                        @for r in &failures {
                            li {
                                span class={ "b " (r.outcome().as_str()) } { (stage_letter(r.stage)) } " "
                                a href={ "#" (ids.trial(r)) } { (r.name) }
                                " — " (r.message.as_deref().and_then(|m| m.lines().next()).unwrap_or(""))
                            }
                        }
                    }
                }
                @if !merged.conflicts.is_empty() {
                    h2 id="conflicts" { "Conflicts between merged results" }
                    p { "The same trial ran more than once with different results; the worst outcome is shown." }
                    ul {
                        @for c in &merged.conflicts {
                            li {
                                a href={ "#" (ids.trial(&c.kept)) } { (c.stage.as_str()) " " (c.name) } ": "
                                (c.outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(" vs "))
                            }
                        }
                    }
                }
                @if let Some(section) = &meta.libvirt_suite { (suite_section(section)) }
                h2 id="details" { "Details" }
                @for (ri, case) in m.rows.iter().enumerate() {
                    @for (ci, col) in m.columns.iter().enumerate() {
                        @if let Some(recs) = m.cells.get(&(ri, ci)) {
                            section.cell id=(ids.cell(ri, ci)) {
                                h3 {
                                    (case)
                                    @if !col.version.is_empty() || !col.arch.is_empty() { " @ " (col.version) "/" (col.arch) }
                                    a.top href="#matrix" { "↑ matrix" }
                                }
                                @for r in recs { (trial_block(r, ids.trial(r))) }
                            }
                        }
                    }
                }
                h2 id="capsdiff" { "Caps diffs between adjacent versions" }
                @if diffs.is_empty() {
                    p { "No snapshots to compare." }
                }
                @for d in diffs { (html_fragment(d)) }
    };
    document(title, Some("top"), &body)
}

fn trial_block(r: &TrialRecord, id: &str) -> Markup {
    let o = r.outcome();
    let open = matches!(o, Outcome::Failed | Outcome::RigError);
    html! {
        div.trial id=(id) {
            h4 {
                span class={ "b " (o.as_str()) } { (stage_letter(r.stage)) } " "
                (r.stage.as_str()) " " (o.as_str())
                @if let Some(m) = &r.machine { " · machine " code { (m) } }
                " · " (format!("{:.2}", r.exec_time)) " s · " code { (r.name) }
            }
            @if let Some(msg) = &r.message {
                @if o == Outcome::Ignored {
                    p { "Ignored: " (msg) }
                } @else {
                    details open[open] { summary { "message" } (message_block(msg)) }
                }
            }
            @if !r.argv.is_empty() {
                details open[open] { summary { "argv" } pre { (shell_join(&r.argv)) } }
            }
            @if let Some(t) = r.stderr_tail.as_deref().filter(|t| !t.is_empty()) {
                details open[open] { summary { "QEMU stderr (tail)" } pre { (t) } }
            }
        }
    }
}

/// Badge class of a libvirt-suite case: agree ok, a listed exception xfail, an unlisted
/// difference failed, not comparable ignored.
fn suite_badge(class: SuiteClass, listed: bool) -> &'static str {
    match class {
        SuiteClass::Agree => "ok",
        SuiteClass::NotComparable => "ignored",
        _ if listed => "xfail",
        _ => "failed",
    }
}

/// The libvirt-suite section: the parity counts, what breaks the baseline, and every case
/// that does not agree (the not-comparable ones folded).
fn suite_section(section: &SuiteSection) -> Markup {
    html! {
        h2 id="libvirt-suite" { "libvirt test suite parity" }
        @match section {
            SuiteSection::NotRun(why) => p { "Not run: " (why) },
            SuiteSection::Ran(s) => (suite_body(s)),
        }
    }
}

fn suite_body(s: &SuiteSummary) -> Markup {
    let p = &s.parity;
    let differing: Vec<_> = s
        .cases
        .iter()
        .filter(|c| c.class.comparable() && c.class != SuiteClass::Agree)
        .collect();
    let not_comparable: Vec<_> = s.cases.iter().filter(|c| !c.class.comparable()).collect();
    html! {
        p.legend {
            "libvirt's own test domains (" code { (s.source) } ") planned on the snapshots and compared with the argv or refusal libvirt expects: acceptance, and per device the PCI bus/slot/function, zPCI uid/fid and CCW devno. "
            "Selection: " (s.selection) "."
        }
        table.summary {
            thead { tr {
                th { "agree / comparable" } th { "refused by us only" } th { "accepted by us only" }
                th { "disagree" } th { "not comparable" } th { "devices equal" } th { "listed exceptions" } th { "baseline agree" }
            } }
            tbody { tr {
                td { (p.agree) " / " (p.comparable) } td { (p.refused_by_us_only) } td { (p.accepted_by_us_only) }
                td { (p.disagree) } td { (p.not_comparable) } td { (p.devices_equal) } td { (p.listed_exceptions) } td { (s.baseline_agree) }
            } }
        }
        @if s.problems.is_empty() {
            p { "No regression against the committed baseline." }
        } @else {
            p { b { (s.problems.len()) " regression(s) against the committed baseline:" } }
            ul.failures { @for pr in &s.problems { li { (pr) } } }
        }
        @for n in &s.notes { p { "Note: " (n) } }
        @if !differing.is_empty() {
            h3 { "Cases that do not agree (" (differing.len()) ")" }
            ul.failures {
                @for c in &differing {
                    li {
                        span class={ "b " (suite_badge(c.class, c.exception.is_some())) } { (c.class.as_str()) } " "
                        (c.id) " on " (c.snapshot.as_deref().unwrap_or("-"))
                        @if let Some(d) = &c.detail { " — " (d) }
                        @for d in &c.diffs {
                            br; "\u{a0}\u{a0}" (d.device) ": libvirt " (d.libvirt.as_deref().unwrap_or("(not placed)"))
                            ", qconform " (d.ours.as_deref().unwrap_or("(not placed)"))
                        }
                        @if let Some(e) = &c.exception { br; "\u{a0}\u{a0}listed: " (e) }
                    }
                }
            }
        }
        @if !not_comparable.is_empty() {
            details {
                summary { "Not comparable (" (not_comparable.len()) ")" }
                ul.failures {
                    @for c in &not_comparable {
                        li { (c.id) " — " (c.detail.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::merge;
    use crate::suite::{DeviceDiff, Parity, SuiteCaseResult};

    fn case(id: &str, class: SuiteClass, exception: Option<&str>) -> SuiteCaseResult {
        SuiteCaseResult {
            id: id.into(),
            arch: "x86_64".into(),
            expected: "args".into(),
            snapshot: Some("11.1.3/x86_64".into()),
            class,
            selected_by: "name (pci)".into(),
            detail: None,
            devices_equal: 1,
            diffs: if class == SuiteClass::Disagree {
                vec![DeviceDiff {
                    device: "video0".into(),
                    libvirt: Some("pci 00:02.0".into()),
                    ours: None,
                }]
            } else {
                Vec::new()
            },
            exception: exception.map(str::to_owned),
        }
    }

    #[test]
    fn the_libvirt_suite_section_shows_parity_differences_and_exceptions() {
        let cases = vec![
            case("a.x86_64-latest", SuiteClass::Agree, None),
            case(
                "b.x86_64-latest",
                SuiteClass::Disagree,
                Some("class 1: no default video"),
            ),
            case("c.ppc-latest", SuiteClass::NotComparable, None),
        ];
        let summary = SuiteSummary {
            source: "libvirt 11.3.0-2~bpo12+1 libvirt_11.3.0.orig.tar.xz sha256:00".into(),
            selection: "names".into(),
            parity: Parity::of(&cases),
            baseline_agree: 1,
            cases,
            problems: vec!["stale exception x".into()],
            notes: Vec::new(),
        };
        let meta = PageMeta {
            libvirt_suite: Some(SuiteSection::Ran(Box::new(summary))),
            ..PageMeta::default()
        };
        let page = report_page(&merge(Vec::new()), &[], &meta);
        assert!(page.contains(r##"<a href="#libvirt-suite">"##), "nav link");
        assert!(page.contains(r#"<h2 id="libvirt-suite">"#));
        assert!(page.contains("<td>1 / 2</td>"), "agree / comparable");
        assert!(page.contains("class 1: no default video"));
        assert!(page.contains("video0: libvirt pci 00:02.0, qconform (not placed)"));
        assert!(page.contains("stale exception x"));
        assert!(page.contains(r#"<span class="b xfail">disagree</span>"#));
        assert!(page.contains("Not comparable (1)"));

        let meta = PageMeta {
            libvirt_suite: Some(SuiteSection::NotRun("data not installed".into())),
            ..PageMeta::default()
        };
        let page = report_page(&merge(Vec::new()), &[], &meta);
        assert!(page.contains("Not run: data not installed"));
        let page = report_page(&merge(Vec::new()), &[], &PageMeta::default());
        assert!(!page.contains("libvirt-suite"));
    }
}
