//! The conformance matrix as one self-contained HTML page: rows are cases, columns are
//! QEMU version/arch, each cell shows one badge per stage (P = plan, L = live, G = guest)
//! and links to a detail section with the argv, the diff or message and QEMU's stderr.
//! The caps diffs of adjacent versions follow on the same page. No external assets and
//! no script.

use std::collections::{BTreeMap, BTreeSet};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::diff::CapsDiff;
use crate::diff_render::{diff_anchor, diff_block, html_fragment};
use crate::junit::shell_join;
use crate::results::{Merged, Outcome, Stage, TrialRecord, version_key};

/// Style sheet shared by every page we write.
pub const CSS: &str = r#"
:root { --ok:#1a7f37; --fail:#cf222e; --rig:#9a6700; --ign:#8c959f; --xf:#8250df; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em 2em; color:#1f2328; }
h1 { font-size: 1.6em; margin: 0 0 .2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
h3 { font-size: 1.1em; margin: 1.2em 0 .4em; }
.meta { color:#57606a; margin:.2em 0 1em; padding-left:1.2em; }
table { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid #d0d7de; padding: 3px 5px; }
table.matrix thead th { background:#f6f8fa; font-weight:600; white-space:nowrap; }
table.matrix th.case { text-align:left; font-weight:normal; font-family: ui-monospace, monospace; white-space:nowrap; }
table.matrix td.cell { text-align:center; white-space:nowrap; }
table.matrix td.empty { color:#d0d7de; }
table.matrix th.arch { border-bottom:none; }
table.matrix tfoot td.total { color:#57606a; font-size:.9em; text-align:center; }
table.matrix tfoot td.bad { color:var(--fail); font-weight:700; }
table.matrix tfoot th.foot { text-align:left; color:#57606a; font-size:.9em; }
table.matrix td.cell a { text-decoration:none; }
table.summary td, table.summary th { border:1px solid #d0d7de; padding:2px 8px; text-align:right; }
table.summary th:first-child { text-align:left; }
.b { display:inline-block; min-width:1.3em; margin:0 1px; padding:0 3px; border-radius:3px; color:#fff; font: 600 12px/1.5 ui-monospace, monospace; text-align:center; }
.b.ok { background:var(--ok); } .b.failed { background:var(--fail); } .b.rig-error { background:var(--rig); }
.b.ignored { background:var(--ign); } .b.xfail { background:var(--xf); }
.legend .b { margin-right:.3em; } .legend span.item { margin-right:1.2em; }
pre { background:#f6f8fa; padding:.6em .8em; overflow-x:auto; font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
pre.diff span.add { color:#116329; background:#dafbe1; } pre.diff span.del { color:#82071e; background:#ffebe9; }
pre.diff span.at { color:#0550ae; } pre.diff span.h { font-weight:600; }
section.cell, section.capsdiff { border-top:1px solid #d0d7de; margin-top:1em; }
div.trial { margin: .4em 0 .8em 1em; }
div.trial h4 { margin:.4em 0; font-size:1em; }
details > summary { cursor:pointer; font-weight:600; margin:.3em 0; }
p.label { font-family: ui-monospace, monospace; margin:.4em 0 0; }
a.top { font-size:.85em; margin-left:.6em; }
.failures li { font-family: ui-monospace, monospace; }
"#;

/// Turns any text into a valid, readable HTML id (`[A-Za-z0-9_.-]`, starting with a
/// letter); other characters become `_`. Not injective: callers that need unique ids
/// pass the result through an [`AnchorSet`].
pub fn anchor_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "x-");
    }
    out
}

/// Hands out unique ids: a base id already taken gets `-2`, `-3`, ... appended.
#[derive(Debug, Clone, Default)]
pub struct AnchorSet {
    used: BTreeSet<String>,
}

impl AnchorSet {
    /// Marks ids as taken (fixed section ids).
    pub fn reserve<'s>(&mut self, ids: impl IntoIterator<Item = &'s str>) {
        self.used.extend(ids.into_iter().map(str::to_owned));
    }

    /// A unique id derived from `text`.
    pub fn unique(&mut self, text: &str) -> String {
        let base = anchor_id(text);
        let mut id = base.clone();
        let mut n = 2;
        while self.used.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

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
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body id="top" {
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
            }
        }
    };
    page.into_string()
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
