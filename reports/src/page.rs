//! What every HTML page we write shares: the style sheet, the page skeleton, readable
//! unique anchors and the classed rendering of a unified diff. Both the conformance report
//! ([`crate::html`]) and the caps diff page ([`crate::diff_render`]) build on this module;
//! it depends on neither.

use std::collections::BTreeSet;

use maud::{DOCTYPE, Markup, PreEscaped, html};

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

/// A `<pre>` block with each line of a unified diff classed by its kind.
pub fn diff_block(unified: &str) -> Markup {
    html! {
        pre.diff {
            @for line in unified.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") {
                    "h"
                } else if line.starts_with("@@") {
                    "at"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else {
                    "ctx"
                };
                span class=(class) { (line) } "\n"
            }
        }
    }
}

/// A whole self-contained page: doctype, `<head>` with charset, viewport, `title` and the
/// [`CSS`], then `body` (with `body_id` as the body's id when given).
pub fn document(title: &str, body_id: Option<&str>, body: &Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body id=[body_id] {
                (body)
            }
        }
    }
    .into_string()
}
