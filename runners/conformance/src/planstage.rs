//! Plan stage (offline replay): plan the case's domain against one snapshot, check the
//! hand-written `[expect]` facts, and compare (or bless) the goldens.

use std::collections::BTreeSet;

use crate::case::{Case, Outcome};
use crate::golden::{self, GoldenDir};
use crate::outcome::StageResult;
use crate::planview::{self, PlanRejection, PlanView};
use crate::qualify::{self, CaseClass};
use crate::snapshots::LoadedSnapshot;

/// Inputs of one plan-stage run besides the case and snapshot.
#[derive(Debug, Clone, Copy)]
pub struct PlanStageOptions<'a> {
    /// Rewrite goldens.
    pub bless: bool,
    /// How to bless this case (appended to golden failures).
    pub hint: &'a str,
    /// Machine named in the trial, compared with the plan's.
    pub trial_machine: Option<&'a str>,
    /// Set when no case has goldens of this snapshot (a caps directory with a snapshot
    /// never blessed): the plan is compared with this baseline's goldens instead.
    pub baseline: Option<&'a LoadedSnapshot>,
}

/// Runs the plan stage.
pub fn run(case: &Case, snap: &LoadedSnapshot, opts: PlanStageOptions<'_>) -> StageResult {
    let result = planview::plan(&case.domain_xml, &snap.snapshot);
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    match (&result, case.spec.expect.outcome) {
        (Ok(p), Outcome::Accept) => {
            failures.extend(check_addresses(case, p));
            if let Some(m) = opts.trial_machine
                && m != p.machine
            {
                notes.push(format!(
                    "note: the trial is named after machine {m}, the plan chose {}",
                    p.machine
                ));
            }
        }
        (Ok(p), Outcome::Reject) => failures.push(format!(
            "[expect] outcome = \"reject\"{}, but the plan accepted the domain (machine {}):\n{}",
            case.expect_error
                .as_ref()
                .map(|r| format!(" (error matching /{r}/)"))
                .unwrap_or_default(),
            p.machine,
            p.argv_text.trim_end()
        )),
        (Err(e), Outcome::Accept) => failures.push(format!(
            "[expect] outcome = \"accept\", but the plan rejected the domain:\n{}",
            e.message
        )),
        (Err(e), Outcome::Reject) => {
            if let Some(re) = &case.expect_error
                && !re.is_match(&e.message)
            {
                failures.push(format!(
                    "[expect] error = /{re}/ does not match the plan's error:\n{}",
                    e.message
                ));
            }
        }
    }
    let produced = golden_texts(&result);
    let expect_dir = case.expect_dir();
    let display = format!("{}/{}", case.display_dir, crate::case::EXPECT_DIR);
    let gd = GoldenDir {
        dir: &expect_dir,
        display: &display,
        hint: opts.hint,
    };
    let produced_refs: Vec<(&str, String)> =
        produced.iter().map(|(e, t)| (*e, t.clone())).collect();
    // A plan that breaks a hand-written expectation is wrong: bless must not enshrine it
    // (and a trial expected to fail keeps failing until the plan is fixed).
    let bless = opts.bless && failures.is_empty();
    if opts.bless && !bless {
        notes.push(
            "not blessed: the hand-written [expect] checks fail, so the goldens were left as they are"
                .into(),
        );
    }
    let compared = match opts.baseline {
        Some(b) if !opts.bless => {
            let c = qualify::compare_with_baseline(case, snap, b);
            match c.class {
                CaseClass::NoBaseline => None,
                CaseClass::Identical => {
                    notes.push(format!(
                        "no goldens of {} yet: compared with the baseline {}'s goldens \
                         (versioned machine names normalised): identical",
                        snap.golden_stem(),
                        b.id
                    ));
                    Some(())
                }
                class => {
                    failures.push(format!(
                        "no goldens of {} yet: compared with the baseline {}'s goldens \
                         (versioned machine names normalised): {}\n{}{}",
                        snap.golden_stem(),
                        b.id,
                        class.as_str(),
                        c.detail.trim_end(),
                        if opts.hint.is_empty() {
                            String::new()
                        } else {
                            format!("\n{}", opts.hint)
                        }
                    ));
                    Some(())
                }
            }
        }
        _ => None,
    };
    if compared.is_none() {
        let g = golden::check(gd, &snap.golden_stem(), &produced_refs, bless);
        failures.extend(g.failures);
        notes.extend(g.blessed.iter().map(|b| format!("blessed: {b}")));
    }
    let argv = result.as_ref().map(|p| p.argv.clone()).unwrap_or_default();
    StageResult::from_checks(failures, notes).with_argv(argv)
}

/// The case-level check: every file of `expect/` is a golden of an applicable snapshot
/// (`stems`); bless removes the others.
pub fn run_case_level(
    case: &Case,
    stems: &BTreeSet<String>,
    known: Option<&BTreeSet<String>>,
    bless: bool,
    hint: &str,
) -> StageResult {
    let expect_dir = case.expect_dir();
    let display = format!("{}/{}", case.display_dir, crate::case::EXPECT_DIR);
    let gd = GoldenDir {
        dir: &expect_dir,
        display: &display,
        hint,
    };
    let o = golden::check_orphans(gd, stems, known, bless);
    let notes = o.blessed.iter().map(|b| format!("blessed: {b}")).collect();
    StageResult::from_checks(o.failures, notes)
}

/// The golden files a plan result produces: `.argv`, `.addr`, `.lspci` (and `.warn` when
/// the plan warns) for an accepted plan, `.err` for a rejected one.
pub fn golden_texts(result: &Result<PlanView, PlanRejection>) -> Vec<(&'static str, String)> {
    match result {
        Ok(p) => {
            let mut v = vec![
                ("argv", p.argv_text.clone()),
                ("addr", p.addresses_text.clone()),
                ("lspci", lines_text(&p.guest_pci)),
            ];
            if !p.warnings.is_empty() {
                v.push(("warn", lines_text(&p.warnings)));
            }
            v
        }
        Err(e) => vec![("err", e.message.clone())],
    }
}

fn lines_text(lines: &[impl std::fmt::Display]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// Checks `[expect] addresses`: the expected text's whitespace-separated tokens must
/// appear, contiguous and in order, on the alias's line of the address map (after the
/// alias itself).
pub fn check_addresses(case: &Case, plan: &PlanView) -> Vec<String> {
    let mut failures = Vec::new();
    for (alias, want) in &case.spec.expect.addresses {
        let line = plan
            .addresses_text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(alias.as_str()));
        let Some(line) = line else {
            let aliases: Vec<&str> = plan
                .addresses_text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            failures.push(format!(
                "[expect] addresses.{alias}: the address map has no alias {alias:?} (it has: {})",
                aliases.join(", ")
            ));
            continue;
        };
        let have: Vec<&str> = line.split_whitespace().skip(1).collect();
        let want_tokens: Vec<&str> = want.split_whitespace().collect();
        if !contains_run(&have, &want_tokens) {
            failures.push(format!(
                "[expect] addresses.{alias} = {want:?}, but the address map says:\n    {}",
                line.trim_end()
            ));
        }
    }
    failures
}

fn contains_run(have: &[&str], want: &[&str]) -> bool {
    want.is_empty() || have.windows(want.len()).any(|w| w == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_contains_run() {
        let have = ["pci", "0000:01:00.0", "uid=0x0003", "fid=0x00000027"];
        assert!(contains_run(&have, &["pci", "0000:01:00.0"]));
        assert!(contains_run(&have, &["uid=0x0003", "fid=0x00000027"]));
        assert!(!contains_run(&have, &["pci", "uid=0x0003"]));
        assert!(!contains_run(&have, &["0000:01:00"]));
    }
}
