//! Renderings of a [`DiffSet`]: plain text with unified diffs, Markdown, HTML (a fragment
//! for the report page, or a whole page) and JSON.

use std::fmt::Write as _;

use maud::{Markup, html};
use serde_json::Value;

use crate::diff::{CapsDiff, DiffSet, ListDiff, SnapshotRef};
use crate::page::{anchor_id, diff_block, document};

/// Output format of `qconform diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text with unified diffs.
    Text,
    /// Pretty JSON of the [`DiffSet`].
    Json,
    /// Markdown with fenced `diff` blocks.
    Markdown,
    /// One self-contained HTML page.
    Html,
}

/// Renders a diff set in the given format.
pub fn render(set: &DiffSet, format: Format) -> String {
    match format {
        Format::Text => text(set),
        Format::Json => json(set),
        Format::Markdown => markdown(set),
        Format::Html => html_page(set),
    }
}

/// Pretty JSON with a final newline (the documented, stable form). Members appear in the
/// order of the Rust structs, whatever `serde_json` features are enabled.
pub fn json(set: &DiffSet) -> String {
    let mut s = serde_json::to_string_pretty(set).unwrap_or_default();
    s.push('\n');
    s
}

fn short_sha(r: &SnapshotRef) -> &str {
    r.binary_sha256.get(..12).unwrap_or(&r.binary_sha256)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Up to `max` names, then how many more (the JSON form has them all).
fn name_list(names: &[String], max: usize) -> String {
    if names.len() <= max {
        names.join(", ")
    } else {
        format!(
            "{}, ... and {} more",
            names[..max].join(", "),
            names.len() - max
        )
    }
}

fn opt_text(v: Option<&str>) -> &str {
    v.unwrap_or("(none)")
}

/// A PCI identity, or `(none)` with QEMU's reason when the snapshot kept one.
fn id_text(v: Option<&str>, reason: Option<&str>) -> String {
    match (v, reason) {
        (Some(v), _) => v.to_owned(),
        (None, Some(r)) => format!("(none; QEMU: {r})"),
        (None, None) => "(none)".to_owned(),
    }
}

/// Lines `removed (<reason>): a, b, c`, one per distinct reason.
fn reason_lines(reasons: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (name, why) in reasons {
        by_reason.entry(why).or_default().push(name.clone());
    }
    by_reason
        .into_iter()
        .map(|(why, mut names)| {
            names.sort_by(|a, b| crate::diff::natural_cmp(a, b));
            format!("removed ({why}): {}", name_list(&names, 12))
        })
        .collect()
}

/// A section of a diff: a title and its lines (plain text; `unified` blocks kept apart
/// so each format can fence or colour them).
struct Section {
    title: String,
    lines: Vec<String>,
    unified: Vec<(String, String)>,
}

fn list_section(title: &str, d: &ListDiff) -> Option<Section> {
    if d.is_empty() {
        return None;
    }
    let mut s = Section {
        title: format!(
            "{title}: {} added, {} removed{}",
            d.added.len(),
            d.removed.len(),
            if d.reordered { " (reordered)" } else { "" }
        ),
        lines: Vec::new(),
        unified: Vec::new(),
    };
    if !d.unified.is_empty() {
        s.unified.push((String::new(), d.unified.clone()));
    } else {
        s.lines.extend(d.added.iter().map(|a| format!("+ {a}")));
        s.lines.extend(d.removed.iter().map(|r| format!("- {r}")));
    }
    Some(s)
}

fn sections(d: &CapsDiff) -> Vec<Section> {
    let mut out = Vec::new();
    let mt = &d.machine_types;
    if !mt.is_empty() {
        let mut s = Section {
            title: format!(
                "Machine types: {} added, {} removed, {} newly deprecated",
                mt.added.len(),
                mt.removed.len(),
                mt.newly_deprecated.len()
            ),
            lines: Vec::new(),
            unified: Vec::new(),
        };
        if !mt.newly_deprecated.is_empty() {
            s.lines.push(format!(
                "newly deprecated: {}",
                mt.newly_deprecated.join(", ")
            ));
        }
        if !mt.no_longer_deprecated.is_empty() {
            s.lines.push(format!(
                "no longer deprecated: {}",
                mt.no_longer_deprecated.join(", ")
            ));
        }
        if !mt.unified.is_empty() {
            s.unified.push((String::new(), mt.unified.clone()));
        } else {
            s.lines.extend(mt.added.iter().map(|a| format!("+ {a}")));
            s.lines.extend(mt.removed.iter().map(|r| format!("- {r}")));
        }
        s.lines.extend(reason_lines(&mt.removed_reasons));
        out.push(s);
    }
    if d.default_machine.is_some() || !d.aliases.is_empty() {
        let mut lines = Vec::new();
        if let Some(c) = &d.default_machine {
            lines.push(format!(
                "default machine: {} -> {}",
                opt_text(c.old.as_deref()),
                opt_text(c.new.as_deref())
            ));
        }
        for a in &d.aliases {
            lines.push(format!(
                "{}: {} -> {}",
                a.alias,
                opt_text(a.old.as_deref()),
                opt_text(a.new.as_deref())
            ));
        }
        out.push(Section {
            title: "Aliases and default machine".to_owned(),
            lines,
            unified: Vec::new(),
        });
    }
    if !d.pci_ids.is_empty() {
        let lines = d
            .pci_ids
            .iter()
            .map(|c| {
                format!(
                    "{} @ {}: {} -> {}",
                    c.device,
                    c.placement,
                    id_text(c.old.as_deref(), c.old_reason.as_deref()),
                    id_text(c.new.as_deref(), c.new_reason.as_deref())
                )
            })
            .collect();
        out.push(Section {
            title: format!("PCI identity: {} change(s)", d.pci_ids.len()),
            lines,
            unified: Vec::new(),
        });
    }
    if !d.machine_caps.is_empty() {
        let mut s = Section {
            title: format!(
                "Machine start-up (-nodefaults): {} machine(s) changed",
                d.machine_caps.len()
            ),
            lines: Vec::new(),
            unified: Vec::new(),
        };
        for m in &d.machine_caps {
            let name = match &m.via_alias {
                Some(a) => format!("{a} ({} -> {})", m.old_machine, m.machine),
                None => m.machine.clone(),
            };
            let mut what = Vec::new();
            if let Some(c) = &m.starts {
                let word = |b: bool| if b { "starts" } else { "does not start" };
                what.push(format!("{} -> {}", word(c.old), word(c.new)));
            }
            if let Some(c) = &m.error {
                what.push(format!(
                    "error {:?} -> {:?}",
                    opt_text(c.old.as_deref()),
                    opt_text(c.new.as_deref())
                ));
            }
            if let Some(c) = &m.default_pci_bus {
                what.push(format!(
                    "default PCI bus {} -> {}",
                    opt_text(c.old.as_deref()),
                    opt_text(c.new.as_deref())
                ));
            }
            if !m.categories.is_empty() {
                let mut cats: Vec<String> =
                    m.categories.added.iter().map(|c| format!("+{c}")).collect();
                cats.extend(m.categories.removed.iter().map(|c| format!("-{c}")));
                what.push(format!("categories {}", cats.join(" ")));
            }
            if !m.buses.is_empty() {
                what.push(format!(
                    "buses +{} -{}",
                    m.buses.added.len(),
                    m.buses.removed.len()
                ));
                s.unified
                    .push((format!("{name} buses"), m.buses.unified.clone()));
            }
            if !m.builtin_pci.is_empty() {
                what.push(format!(
                    "built-in PCI +{} -{}",
                    m.builtin_pci.added.len(),
                    m.builtin_pci.removed.len()
                ));
                s.unified.push((
                    format!("{name} built-in PCI"),
                    m.builtin_pci.unified.clone(),
                ));
            }
            s.lines.push(format!("{name}: {}", what.join("; ")));
        }
        out.push(s);
    }
    if let Some(s) = list_section("query-machines attributes", &d.machine_fields) {
        out.push(s);
    }
    if !d.machine_attributes.is_empty() {
        let lines = d
            .machine_attributes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} -> {} on {} machine(s): {}",
                    c.field,
                    value_text(&c.old),
                    value_text(&c.new),
                    c.machines.len(),
                    name_list(&c.machines, 12)
                )
            })
            .collect();
        out.push(Section {
            title: "Machine attribute changes".to_owned(),
            lines,
            unified: Vec::new(),
        });
    }
    if let Some(mut s) = list_section("Device types", &d.device_types) {
        s.lines
            .extend(reason_lines(&d.device_types_removed_reasons));
        out.push(s);
    }
    if let Some(s) = list_section("no-user device types", &d.no_user) {
        out.push(s);
    }
    if !d.interfaces.is_empty() {
        let mut s = Section {
            title: format!(
                "Interface membership: {} interface(s) changed",
                d.interfaces.len()
            ),
            lines: Vec::new(),
            unified: Vec::new(),
        };
        for i in &d.interfaces {
            s.lines.push(format!(
                "{}: {} added, {} removed",
                i.interface,
                i.members.added.len(),
                i.members.removed.len()
            ));
            s.unified
                .push((i.interface.clone(), i.members.unified.clone()));
        }
        out.push(s);
    }
    if !d.device_properties.is_empty() {
        let mut lines = Vec::new();
        for p in &d.device_properties {
            lines.push(format!("{}:", p.device));
            if let Some(c) = &p.present {
                let word = |b: bool| if b { "present" } else { "absent" };
                let why = p
                    .reason
                    .as_ref()
                    .map(|r| format!(" (QEMU: {r})"))
                    .unwrap_or_default();
                lines.push(format!("  type {} -> {}{why}", word(c.old), word(c.new)));
            }
            for a in &p.added {
                let def = a
                    .default
                    .as_ref()
                    .map(|v| format!(", default {}", value_text(v)))
                    .unwrap_or_default();
                lines.push(format!("  + {} ({}{def})", a.name, a.ty));
            }
            for r in &p.removed {
                lines.push(format!("  - {r}"));
            }
            for c in &p.changed {
                let mut what = Vec::new();
                if let Some(t) = &c.ty {
                    what.push(format!("type {} -> {}", t.old, t.new));
                }
                if let Some(df) = &c.default {
                    let show = |v: &Option<Value>| {
                        v.as_ref().map_or_else(|| "(none)".to_owned(), value_text)
                    };
                    what.push(format!("default {} -> {}", show(&df.old), show(&df.new)));
                }
                lines.push(format!("  ~ {}: {}", c.name, what.join("; ")));
            }
        }
        out.push(Section {
            title: format!(
                "Properties of probed device types: {} type(s) changed",
                d.device_properties.len()
            ),
            lines,
            unified: Vec::new(),
        });
    }
    if let Some(s) = list_section("QMP commands", &d.qmp_commands) {
        out.push(s);
    }
    if let Some(s) = list_section("QMP events", &d.qmp_events) {
        out.push(s);
    }
    out
}

fn header_lines(d: &CapsDiff) -> Vec<String> {
    vec![
        format!(
            "old: {} ({}, sha256 {})",
            d.old.id,
            d.old.package,
            short_sha(&d.old)
        ),
        format!(
            "new: {} ({}, sha256 {})",
            d.new.id,
            d.new.package,
            short_sha(&d.new)
        ),
        format!("summary: {}", d.summary()),
    ]
}

fn unpaired_lines(set: &DiffSet) -> Vec<String> {
    let mut v = Vec::new();
    for r in &set.unpaired_old {
        v.push(format!("only in old: {}", r.id));
    }
    for r in &set.unpaired_new {
        v.push(format!("only in new: {}", r.id));
    }
    v
}

/// Plain text with unified diffs.
pub fn text(set: &DiffSet) -> String {
    let mut out = String::new();
    for d in &set.diffs {
        let _ = writeln!(out, "caps diff {} -> {}", d.old.id, d.new.id);
        for l in header_lines(d) {
            let _ = writeln!(out, "  {l}");
        }
        for s in sections(d) {
            let _ = writeln!(out, "\n== {}", s.title);
            for l in &s.lines {
                let _ = writeln!(out, "  {l}");
            }
            for (label, u) in &s.unified {
                if !label.is_empty() {
                    let _ = writeln!(out, "  [{label}]");
                }
                out.push_str(u);
            }
        }
        out.push('\n');
    }
    for l in unpaired_lines(set) {
        let _ = writeln!(out, "{l}");
    }
    if set.diffs.is_empty() && set.unpaired_old.is_empty() && set.unpaired_new.is_empty() {
        out.push_str("nothing to compare\n");
    }
    out
}

/// Markdown: one `##` heading per pair, `###` per section, fenced `diff` blocks.
pub fn markdown(set: &DiffSet) -> String {
    let mut out = String::from("# Caps diff\n\n");
    for d in &set.diffs {
        let _ = writeln!(out, "## {} → {}\n", d.old.id, d.new.id);
        for l in header_lines(d) {
            let _ = writeln!(out, "- {}", md_escape(&l));
        }
        out.push('\n');
        for s in sections(d) {
            let _ = writeln!(out, "### {}\n", md_escape(&s.title));
            if !s.lines.is_empty() {
                out.push_str("```\n");
                for l in &s.lines {
                    let _ = writeln!(out, "{l}");
                }
                out.push_str("```\n\n");
            }
            for (label, u) in &s.unified {
                if !label.is_empty() {
                    let _ = writeln!(out, "`{label}`:\n");
                }
                out.push_str("```diff\n");
                out.push_str(u);
                out.push_str("```\n\n");
            }
        }
    }
    let unpaired = unpaired_lines(set);
    if !unpaired.is_empty() {
        out.push_str("## Unpaired snapshots\n\n");
        for l in unpaired {
            let _ = writeln!(out, "- {l}");
        }
    }
    out
}

fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Anchor id of a diff in a page (`diff-<arch>-<old>-<new>`, sanitised).
pub fn diff_anchor(d: &CapsDiff) -> String {
    anchor_id(&format!("diff-{}", d.key()))
}

/// HTML fragment for one diff, for embedding in a page that carries [`crate::page::CSS`].
/// Long sections are collapsed in `<details>`.
pub fn html_fragment(d: &CapsDiff) -> Markup {
    let secs = sections(d);
    html! {
        section.capsdiff id=(diff_anchor(d)) {
            h3 { "Caps diff " (d.old.id) " → " (d.new.id) }
            ul.meta {
                @for l in header_lines(d) { li { (l) } }
            }
            @if secs.is_empty() {
                p.same { "No differences." }
            }
            @for s in &secs {
                @let size = s.lines.len() + s.unified.iter().map(|u| u.1.lines().count()).sum::<usize>();
                details open[size <= 40] {
                    summary { (s.title) }
                    @if !s.lines.is_empty() {
                        pre.lines { @for l in &s.lines { (l) "\n" } }
                    }
                    @for (label, u) in &s.unified {
                        @if !label.is_empty() { p.label { (label) } }
                        (diff_block(u))
                    }
                }
            }
        }
    }
}

/// A whole self-contained HTML page for a diff set.
pub fn html_page(set: &DiffSet) -> String {
    let title = match set.diffs.as_slice() {
        [one] => format!("qconform caps diff {} → {}", one.old.id, one.new.id),
        _ => "qconform caps diff".to_owned(),
    };
    let body = html! {
                h1 { (title) }
                @if set.diffs.len() > 1 {
                    nav { ul { @for d in &set.diffs {
                        li { a href={ "#" (diff_anchor(d)) } { (d.old.id) " → " (d.new.id) } ": " (d.summary()) }
                    } } }
                }
                @for d in &set.diffs { (html_fragment(d)) }
                @let unpaired = unpaired_lines(set);
                @if !unpaired.is_empty() {
                    h2 { "Unpaired snapshots" }
                    ul { @for l in &unpaired { li { (l) } } }
                }
    };
    document(&title, None, &body)
}
