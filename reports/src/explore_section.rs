//! The `qconform explore` section of the report page: the run's counts per snapshot and
//! each distinct disagreement with a link to its minimised case directory.
//!
//! Input is the JSON object `qconform explore --format json` prints (the nightly job keeps
//! it as `explore/summary.json` in the run directory); case links are made relative to the
//! run directory. Pure: the caller reads the file.

use maud::{Markup, html};
use serde_json::Value;

/// File name of the summary inside the explore directory of a run.
pub const SUMMARY_FILE: &str = "summary.json";
/// Directory of explore's output inside a run directory.
pub const EXPLORE_DIR: &str = "explore";

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Link target of a case directory: the part from `explore/` on, so that the link works
/// from `report.html` whatever absolute path explore was given.
pub fn case_link(case_dir: &str) -> String {
    let marker = format!("{EXPLORE_DIR}/");
    match case_dir.rfind(&marker) {
        Some(i) => case_dir[i..].to_owned(),
        None => case_dir.to_owned(),
    }
}

/// Renders the section.
pub fn render(summary: &Value) -> Markup {
    let total_dis = n(summary, "disagreements");
    let snaps: Vec<&Value> = summary
        .get("snapshots")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let list: Vec<&Value> = summary
        .get("disagreement_list")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    html! {
        section #explore {
            h2 { "Explore: random domains on the real binaries" }
            p {
                "seed " (n(summary, "seed")) ": generated " (n(summary, "generated"))
                ", accepted " (n(summary, "accepted"))
                ", refused " (n(summary, "refused"))
                ", started " (n(summary, "started"))
                ", agreed " (n(summary, "agreed"))
                ", disagreements " (total_dis)
                " (" (list.len()) " distinct)"
                @if n(summary, "rig_errors") > 0 { ", rig errors " (n(summary, "rig_errors")) }
            }
            table {
                thead { tr {
                    th { "snapshot" } th { "generated" } th { "accepted" } th { "refused" }
                    th { "started" } th { "agreed" } th { "disagreements" } th { "note" }
                } }
                tbody {
                    @for sn in &snaps {
                        tr class=(if n(sn, "disagreements") > 0 { "failed" } else { "ok" }) {
                            td { (s(sn, "snapshot")) }
                            td { (n(sn, "generated")) } td { (n(sn, "accepted")) }
                            td { (n(sn, "refused")) } td { (n(sn, "started")) }
                            td { (n(sn, "agreed")) } td { (n(sn, "disagreements")) }
                            td { (s(sn, "skipped")) (s(sn, "rig_error").lines().next().unwrap_or("")) }
                        }
                    }
                }
            }
            @if !list.is_empty() {
                ul {
                    @for d in &list {
                        li {
                            b { (s(d, "snapshot")) " " (s(d, "class")) }
                            " (domain " (n(d, "index")) ", seen " (n(d, "occurrences")) "x, "
                            (n(d, "devices_before")) " → " (n(d, "devices_after")) " devices): "
                            code { (s(d, "key")) }
                            @if let Some(dir) = d.get("case_dir").and_then(Value::as_str) {
                                " " a href=(case_link(dir)) { "case" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_section_shows_counts_and_links_cases() {
        let v = json!({
            "seed": 3, "generated": 10, "accepted": 7, "refused": 3, "started": 7,
            "agreed": 8, "disagreements": 2, "rig_errors": 0,
            "snapshots": [{"snapshot": "11.1.3/x86_64", "generated": 10, "disagreements": 2}],
            "disagreement_list": [{
                "snapshot": "11.1.3/x86_64", "class": "qemu-refused", "key": "PCI: slot N <x>",
                "index": 4, "occurrences": 2, "devices_before": 9, "devices_after": 2,
                "case_dir": "/srv/results/run-1/explore/explore-11.1.3-x86_64-qemu-refused-s3-4"
            }]
        });
        let html = render(&v).into_string();
        assert!(html.contains("generated 10"), "{html}");
        assert!(html.contains("disagreements 2 (1 distinct)"), "{html}");
        assert!(
            html.contains("href=\"explore/explore-11.1.3-x86_64-qemu-refused-s3-4\""),
            "{html}"
        );
        assert!(html.contains("PCI: slot N &lt;x&gt;"), "{html}");
    }
}
