//! JUnit XML parses back as XML with the expected suites, cases, failures and skips.

mod common;

use common::sample_records;
use qconform_reports::junit::junit;
use qconform_reports::results::{Event, merge};
use qconform_reports::shell::shell_join;

#[test]
fn junit_has_one_suite_per_version_arch_and_the_right_counts() {
    let records = merge(sample_records()).records;
    let xml = junit(&records, "qconform").expect("serialises");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<&str> = suites.iter().filter_map(|s| s.attribute("name")).collect();
    assert_eq!(
        names,
        vec![
            "10.0.2/s390x",
            "11.1.3/s390x",
            "10.0.2/x86_64",
            "11.1.3/x86_64"
        ]
    );
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), records.len());
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    let errors = doc
        .descendants()
        .filter(|n| n.has_tag_name("error"))
        .count();
    let skipped = doc
        .descendants()
        .filter(|n| n.has_tag_name("skipped"))
        .count();
    let want_failed = records
        .iter()
        .filter(|r| r.event == Event::Failed && !r.rig_error)
        .count();
    let want_rig = records.iter().filter(|r| r.rig_error).count();
    let want_ignored = records.iter().filter(|r| r.event == Event::Ignored).count();
    assert_eq!(
        (failures, errors, skipped),
        (want_failed, want_rig, want_ignored)
    );
    assert!(
        want_failed > 0 && want_rig > 0 && want_ignored > 0,
        "sample covers every kind"
    );
    let total: usize = suites
        .iter()
        .filter_map(|s| s.attribute("tests")?.parse::<usize>().ok())
        .sum();
    assert_eq!(total, records.len());

    // The failure carries the diff; system-out carries the argv and the stderr tail.
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("failure");
    assert_eq!(failure.attribute("message"), Some("guest view differs"));
    assert!(failure.text().unwrap_or("").contains("+00:04.0 1af4:1000"));
    let case = failure.parent().expect("testcase");
    assert_eq!(case.attribute("classname"), Some("live"));
    let out = case
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect("system-out");
    assert!(
        out.contains("argv: -machine q35 -device virtio-net-pci,id=net0,bus=pcie.0,addr=0x3"),
        "{out}"
    );
    assert!(out.contains("'it'\\''s <b>&'"), "{out}");
    assert!(
        out.contains("--- QEMU stderr (tail) ---\nqemu-system-x86_64: warning: <tag> & \"quote\""),
        "{out}"
    );
}

#[test]
fn negative_or_nan_times_do_not_panic() {
    let mut records = sample_records();
    records[0].exec_time = -1.0;
    records[1].exec_time = f64::NAN;
    let xml = junit(&records, "x").expect("serialises");
    roxmltree::Document::parse(&xml).expect("well-formed");
}

#[test]
fn shell_join_quotes_only_what_needs_it() {
    let argv: Vec<String> = ["-drive", "file=/a b.img,if=none", "", "x'y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        shell_join(&argv),
        r#"-drive 'file=/a b.img,if=none' '' 'x'\''y'"#
    );
}
