//! JUnit XML for CI dashboards: one `<testsuite>` per QEMU version/arch, one `<testcase>`
//! per trial (classname = stage, name = trial name), failure text = the message (a unified
//! diff where there is one), `system-out` = the argv and QEMU's standard error tail.

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::results::{Outcome, TrialRecord};
use crate::shell::shell_join;

/// JUnit serialisation failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write JUnit XML: {0}")]
pub struct JunitError(#[from] quick_junit::SerializeError);

/// Text of `system-out`: the argv, then QEMU's stderr tail.
pub fn system_out(r: &TrialRecord) -> Option<String> {
    let mut out = String::new();
    if !r.argv.is_empty() {
        out.push_str("argv: ");
        out.push_str(&shell_join(&r.argv));
        out.push('\n');
    }
    if let Some(tail) = r.stderr_tail.as_deref().filter(|t| !t.is_empty()) {
        out.push_str("--- QEMU stderr (tail) ---\n");
        out.push_str(tail);
        if !tail.ends_with('\n') {
            out.push('\n');
        }
    }
    (!out.is_empty()).then_some(out)
}

fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Renders records as a JUnit report named `name`. Suites are sorted by arch then version,
/// cases keep the order given.
pub fn junit(records: &[TrialRecord], name: &str) -> Result<String, JunitError> {
    let mut suites: BTreeMap<(String, Vec<u64>, String), Vec<&TrialRecord>> = BTreeMap::new();
    for r in records {
        suites
            .entry((r.arch.clone(), r.version_key(), r.qemu_version.clone()))
            .or_default()
            .push(r);
    }
    let mut report = Report::new(name);
    let mut total = 0.0;
    for ((arch, _, version), recs) in suites {
        // Trials that need no binary (checks of the case itself) have neither axis.
        let suite_name = if version.is_empty() && arch.is_empty() {
            "case-wide".to_owned()
        } else {
            format!("{version}/{arch}")
        };
        let mut suite = TestSuite::new(suite_name);
        suite.add_property(Property::new("qemu_version", version.as_str()));
        suite.add_property(Property::new("arch", arch.as_str()));
        let mut suite_time = 0.0;
        for r in recs {
            let status = match r.outcome() {
                Outcome::Ok | Outcome::Xfail => TestCaseStatus::success(),
                Outcome::Failed | Outcome::RigError => {
                    let kind = if r.rig_error {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    let msg = r.message.as_deref().unwrap_or("failed");
                    s.set_message(first_line(msg));
                    s.set_type(if r.rig_error { "rig-error" } else { "mismatch" });
                    s.set_description(msg);
                    s
                }
                Outcome::Ignored => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(m) = r.message.as_deref() {
                        s.set_message(first_line(m));
                    }
                    s
                }
            };
            let mut case = TestCase::new(r.name.as_str(), status);
            case.set_classname(r.stage.as_str());
            case.set_time(duration(r.exec_time));
            if r.xfail {
                case.add_property(Property::new("xfail", "true"));
            }
            if let Some(m) = &r.machine {
                case.add_property(Property::new("machine", m.as_str()));
            }
            if let Some(out) = system_out(r) {
                case.set_system_out(out);
            }
            suite_time += r.exec_time.max(0.0);
            suite.add_test_case(case);
        }
        suite.set_time(duration(suite_time));
        total += suite_time;
        report.add_test_suite(suite);
    }
    report.set_time(duration(total));
    Ok(report.to_string()?)
}
