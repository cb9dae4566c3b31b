//! The HTML report's structure: a full matrix, unique ids, links that resolve, escaped
//! text, no external assets; and the run directory with its `latest` link.

mod common;

use std::collections::BTreeSet;

use common::{add_machine, sample_records, snapshot};
use qconform_reports::html::{PageMeta, report_page};
use qconform_reports::render::{self, render_run, write_run};
use qconform_reports::results::{merge, parse_records};

/// Values of `attr="..."` in an HTML text (our pages quote every attribute).
pub fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

fn page() -> String {
    let mut a = snapshot((10, 0, 2), "x86_64");
    add_machine(&mut a, "pc-q35-10.0", Some("q35"), false, None);
    let mut b = snapshot((11, 1, 3), "x86_64");
    add_machine(&mut b, "pc-q35-11.1", Some("q35"), false, Some(true));
    let diffs = qconform_reports::diff::adjacent(&[a, b]);
    report_page(&merge(sample_records()), &diffs, &PageMeta::default())
}

#[test]
fn matrix_has_one_cell_per_case_and_column() {
    let html = page();
    let cells = html.matches("<td class=\"cell").count();
    // 3 cases x (2 versions x 2 arches)
    assert_eq!(cells, 3 * 4, "{html}");
    let rows = html.matches("<th class=\"case\">").count();
    assert_eq!(rows, 3);
    assert!(html.contains("<th class=\"case\">floppy-on-q35</th>"));
}

#[test]
fn ids_are_unique_and_every_link_resolves() {
    let html = page();
    let ids = attr_values(&html, "id");
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids");
    let hrefs = attr_values(&html, "href");
    assert!(hrefs.len() > 12, "cells, failures and nav link somewhere");
    for h in &hrefs {
        let target = h
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external link {h}"));
        assert!(
            unique.contains(&target.to_owned()),
            "dangling link #{target}"
        );
    }
    // The caps diff is on the page, linked from the 11.1.3 x86_64 column.
    assert!(hrefs.iter().any(|h| h == "#diff-x86_64-10.0.2-11.1.3"));
}

#[test]
fn page_is_self_contained_and_escaped() {
    let html = page();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"));
    assert!(!html.contains(" src="));
    assert!(!html.contains("<link"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("s &lt;b&gt;&amp;'"), "argv escaped");
    assert!(!html.contains("<b>&"), "raw markup from data must not leak");
    assert!(
        html.contains("<span class=\"add\">+00:04.0 1af4:1000</span>"),
        "diff coloured"
    );
}

#[test]
fn summary_counts_match_the_records() {
    let html = page();
    // plan: 12 ok + 1 xfail; live: 1 failed, 2 ignored, 9 ok; guest: 1 ok, 1 rig error
    assert!(
        html.contains(
            "<tr><th>plan</th><td>12</td><td>1</td><td>0</td><td>0</td><td>0</td><td>13</td></tr>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<tr><th>live</th><td>9</td><td>0</td><td>1</td><td>0</td><td>2</td><td>12</td></tr>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<tr><th>guest</th><td>1</td><td>0</td><td>0</td><td>1</td><td>0</td><td>2</td></tr>"
        ),
        "{html}"
    );
}

#[test]
fn conflicts_are_listed() {
    let mut records = sample_records();
    let mut other = records[1].clone();
    other.event = qconform_reports::results::Event::Failed;
    other.message = Some("shard 2 saw a different guest".into());
    records.push(other);
    let m = merge(records);
    assert_eq!(m.conflicts.len(), 1);
    let html = report_page(&m, &[], &PageMeta::default());
    assert!(html.contains("id=\"conflicts\""));
    assert!(html.contains("failed vs ok"), "{html}");
}

#[test]
fn run_directory_is_complete_and_latest_moves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("results");
    let records = sample_records();
    let first = write_run(&root, &records, &[]).expect("first run");
    let name = first
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert!(
        name.starts_with("run-") && name.len() == "run-20250131T120000Z-0123abcd".len(),
        "{name}"
    );
    for f in [
        render::RESULTS_JSONL,
        render::JUNIT_XML,
        render::REPORT_HTML,
        render::CAPS_DIFF_JSON,
    ] {
        let p = first.join(f);
        assert!(
            p.metadata().is_ok_and(|m| m.len() > 0),
            "{} missing",
            p.display()
        );
    }
    let latest = root.join(render::LATEST);
    assert_eq!(
        std::fs::read_link(&latest).expect("symlink"),
        std::path::PathBuf::from(&name)
    );
    let jsonl = std::fs::read_to_string(latest.join(render::RESULTS_JSONL)).expect("read");
    assert_eq!(
        parse_records("results.jsonl", &jsonl).expect("parse").len(),
        records.len()
    );

    let second = write_run(&root, &records[..3], &[]).expect("second run");
    assert_ne!(first, second);
    let target = std::fs::read_link(&latest).expect("symlink");
    assert_eq!(Some(target.as_os_str()), second.file_name());
    // No temporary leftovers.
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Reading the whole results root back does not count `latest` twice.
    let loaded = qconform_reports::load::read_results(std::slice::from_ref(&root)).expect("load");
    assert_eq!(loaded.records.len(), records.len() + 3);
}

#[test]
fn render_run_is_deterministic() {
    let meta = PageMeta {
        title: "t".into(),
        ..PageMeta::default()
    };
    let a = render_run(&sample_records(), &[], &meta).expect("render");
    let mut reversed = sample_records();
    reversed.reverse();
    let b = render_run(&reversed, &[], &meta).expect("render");
    assert_eq!(a.report_html, b.report_html);
    assert_eq!(a.junit_xml, b.junit_xml);
    assert_eq!(a.results_jsonl, b.results_jsonl);
}

#[test]
fn no_tag_repeats_an_attribute() {
    let html = page();
    for tag in html.split('<').skip(1) {
        let Some(end) = tag.find('>') else { continue };
        let head = &tag[..end];
        for attr in ["class", "id", "href", "title"] {
            let n = head.matches(&format!(" {attr}=\"")).count();
            assert!(n <= 1, "<{head}> repeats {attr}");
        }
    }
}

#[test]
fn case_wide_trials_get_a_labelled_column() {
    let mut records = sample_records();
    let mut wide = common::record(
        "floppy-on-q35",
        "",
        "",
        None,
        qconform_reports::results::Stage::Plan,
        qconform_reports::results::Event::Ok,
    );
    wide.name = "floppy-on-q35".into();
    records.push(wide);
    let html = report_page(&merge(records.clone()), &[], &PageMeta::default());
    assert!(html.contains(">case-wide</th>"), "{html}");
    assert_eq!(html.matches("<td class=\"cell").count(), 3 * 5);
    let xml = qconform_reports::junit::junit(&merge(records).records, "x").expect("junit");
    assert!(xml.contains("<testsuite name=\"case-wide\""), "{xml}");
}
