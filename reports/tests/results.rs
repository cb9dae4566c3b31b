//! Trial records: JSON lines round-trip, libtest stream compatibility, clear errors and
//! the merge rules for shards.

mod common;

use common::{record, sample_records};
use qconform_reports::results::{Event, Outcome, Stage, merge, parse_records, to_json_lines};

#[test]
fn json_lines_round_trip() {
    let records = sample_records();
    let text = to_json_lines(&records);
    assert_eq!(text.lines().count(), records.len());
    let back = parse_records("results.jsonl", &text).expect("parses");
    assert_eq!(back, records);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(v["type"], "test", "libtest shape");
        assert!(matches!(
            v["event"].as_str(),
            Some("ok" | "failed" | "ignored")
        ));
        assert!(v["name"].is_string() && v["exec_time"].is_number());
    }
}

#[test]
fn libtest_suite_and_started_events_are_skipped() {
    let r = record("c", "11.1.3", "x86_64", None, Stage::Plan, Event::Ok);
    let text = format!(
        "{{\"type\":\"suite\",\"event\":\"started\",\"test_count\":1}}\n\
         {{\"type\":\"test\",\"event\":\"started\",\"name\":\"c@11.1.3/x86_64\"}}\n\
         {}\n\
         {{\"type\":\"suite\",\"event\":\"ok\",\"passed\":1,\"failed\":0}}\n",
        serde_json::to_string(&r).expect("json")
    );
    assert_eq!(parse_records("shard", &text).expect("parses"), vec![r]);
}

#[test]
fn one_document_or_an_array_is_read_too() {
    let r = record("c", "11.1.3", "x86_64", None, Stage::Live, Event::Failed);
    let pretty = serde_json::to_string_pretty(&r).expect("json");
    assert_eq!(
        parse_records("one.json", &pretty).expect("one"),
        vec![r.clone()]
    );
    let array = serde_json::to_string_pretty(&vec![r.clone(), r.clone()]).expect("json");
    assert_eq!(parse_records("many.json", &array).expect("array").len(), 2);
}

#[test]
fn a_bad_line_is_named() {
    let good = to_json_lines(&[record(
        "c",
        "11.1.3",
        "x86_64",
        None,
        Stage::Plan,
        Event::Ok,
    )]);
    let text = format!("{good}\n{{\"type\":\"test\",\"event\":\"ok\",\"name\":\"x\"}}\nnot json\n");
    let err = parse_records("shard-2.jsonl", &text).expect_err("missing fields");
    let msg = err.to_string();
    assert!(
        msg.starts_with("shard-2.jsonl:3: not a trial record"),
        "{msg}"
    );
    let text = format!("{good}not json\n");
    let msg = parse_records("s.jsonl", &text)
        .expect_err("bad json")
        .to_string();
    assert!(msg.starts_with("s.jsonl:2: not JSON"), "{msg}");
}

#[test]
fn merge_dedupes_and_does_not_depend_on_order() {
    let records = sample_records();
    let mut doubled = records.clone();
    let mut again = records.clone();
    for r in &mut again {
        r.exec_time += 1.0; // a re-read of the same trial, timed differently
    }
    doubled.extend(again);
    let m = merge(doubled.clone());
    assert_eq!(m.records.len(), records.len());
    assert_eq!(m.duplicates, records.len());
    assert!(m.conflicts.is_empty());
    doubled.reverse();
    assert_eq!(merge(doubled).records.len(), m.records.len());
}

#[test]
fn a_run_result_supersedes_an_ignored_one_silently() {
    let ignored = record("c", "11.1.3", "s390x", None, Stage::Live, Event::Ignored);
    let ran = record("c", "11.1.3", "s390x", None, Stage::Live, Event::Ok);
    let m = merge(vec![ignored, ran.clone()]);
    assert_eq!(m.records, vec![ran]);
    assert_eq!(m.superseded, 1);
    assert!(m.conflicts.is_empty());
}

#[test]
fn disagreeing_runs_are_a_conflict_and_the_failure_wins() {
    let ok = record("c", "11.1.3", "x86_64", None, Stage::Live, Event::Ok);
    let failed = record("c", "11.1.3", "x86_64", None, Stage::Live, Event::Failed);
    for input in [
        vec![ok.clone(), failed.clone()],
        vec![failed.clone(), ok.clone()],
    ] {
        let m = merge(input);
        assert_eq!(m.records, vec![failed.clone()]);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].outcomes, vec![Outcome::Failed, Outcome::Ok]);
    }
}

#[test]
fn merged_records_sort_by_case_then_numeric_version() {
    let a = record("c", "10.0.2", "x86_64", None, Stage::Plan, Event::Ok);
    let b = record("c", "7.2.0", "x86_64", None, Stage::Plan, Event::Ok);
    let c = record("b", "11.1.3", "x86_64", None, Stage::Plan, Event::Ok);
    let m = merge(vec![a, b, c]);
    let order: Vec<&str> = m.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        order,
        vec!["b@11.1.3/x86_64", "c@7.2.0/x86_64", "c@10.0.2/x86_64"]
    );
}
