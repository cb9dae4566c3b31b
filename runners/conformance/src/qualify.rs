//! Qualifying a QEMU build against a baseline: which recorded snapshot to compare with,
//! what disappeared from the caps (with QEMU's reason), and how every applicable case's plan
//! compares with the baseline's goldens once the names expected to differ between releases
//! (versioned machine types) are normalised.
//!
//! `qconform qualify` drives this (probe, replay here, live and guest on the binary), and
//! the plan stage of `qconform run` uses [`compare_with_baseline`] for a snapshot that has
//! no goldens of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use qconform_caps::{LaunchOutcome, QemuVersion, Snapshot, error_line};
use serde::Serialize;

use crate::case::{Case, EXPECT_DIR};
use crate::golden::{GOLDEN_EXTS, normalize};
use crate::planstage::golden_texts;
use crate::planview;
use crate::snapshots::LoadedSnapshot;

/// How a case's plan on the new snapshot compares with the baseline's goldens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseClass {
    /// Same argv, addresses, guest view (or the same refusal) after normalisation.
    Identical,
    /// Accepted by both, but argv, address or lspci lines changed.
    Drift,
    /// The baseline accepted the domain, the new build's plan refuses it.
    NewlyRefused,
    /// The baseline refused the domain, the new build's plan accepts it.
    NewlyAccepted,
    /// The baseline has no goldens for the case (it does not apply there).
    NoBaseline,
}

impl CaseClass {
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseClass::Identical => "identical",
            CaseClass::Drift => "drift",
            CaseClass::NewlyRefused => "newly_refused",
            CaseClass::NewlyAccepted => "newly_accepted",
            CaseClass::NoBaseline => "no_baseline",
        }
    }
}

/// One case compared with the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseComparison {
    /// Case name.
    pub case: String,
    /// The class.
    pub class: CaseClass,
    /// What changed: the changed golden lines (`-`/`+`, per file), or the new refusal.
    pub detail: String,
}

/// Picks the baseline of `new` among `recorded`: `explicit` (an id `<version>/<arch>`, a
/// version, or a snapshot file name) when given; else the recorded snapshot of the same
/// architecture and major.minor (the highest micro release not above the new one, else the
/// lowest above it); else the nearest older release of the architecture.
pub fn pick_baseline(
    new: &Snapshot,
    recorded: &[Arc<LoadedSnapshot>],
    explicit: Option<&str>,
) -> Result<Option<Arc<LoadedSnapshot>>, String> {
    let arch = new.probe.arch.as_str();
    if let Some(want) = explicit.filter(|w| *w != "auto") {
        let hit = recorded.iter().find(|s| {
            s.id == want
                || s.file_name == want
                || (s.arch == arch && s.version == want)
                || (s.arch == arch && s.major_minor() == want)
        });
        return match hit {
            Some(s) => Ok(Some(Arc::clone(s))),
            None => Err(format!(
                "--baseline {want}: no recorded snapshot has that id (known: {})",
                recorded
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    Ok(auto_baseline(new.probe.qemu_version, arch, recorded))
}

/// The automatic baseline (see [`pick_baseline`]).
pub fn auto_baseline(
    v: QemuVersion,
    arch: &str,
    recorded: &[Arc<LoadedSnapshot>],
) -> Option<Arc<LoadedSnapshot>> {
    let same_arch = || recorded.iter().filter(|s| s.arch == arch);
    let same_mm = || {
        same_arch().filter(|s| {
            let o = s.snapshot.probe.qemu_version;
            o.major == v.major && o.minor == v.minor
        })
    };
    same_mm()
        .filter(|s| s.snapshot.probe.qemu_version <= v)
        .max_by_key(|s| s.snapshot.probe.qemu_version)
        .or_else(|| same_mm().min_by_key(|s| s.snapshot.probe.qemu_version))
        .or_else(|| {
            same_arch()
                .filter(|s| s.snapshot.probe.qemu_version < v)
                .max_by_key(|s| s.snapshot.probe.qemu_version)
        })
        .cloned()
}

/// Whether two versions share major.minor (a stable update of the same release).
pub fn same_release(a: QemuVersion, b: QemuVersion) -> bool {
    a.major == b.major && a.minor == b.minor
}

/// Replaces versioned machine type names of either snapshot (`pc-q35-10.0`, `virt-7.2`,
/// `pseries-5.2`, `s390-ccw-virtio-11.1`) by `<base>-X.Y`, so that the same plan on two
/// releases reads the same.
pub fn normalise_machines(text: &str, machines: &BTreeSet<String>) -> String {
    let re = versioned_machine_re();
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let whole = c.get(0).map_or("", |m| m.as_str());
        if machines.contains(whole) {
            format!("{}-X.Y", c.get(1).map_or("", |m| m.as_str()))
        } else {
            whole.to_owned()
        }
    })
    .into_owned()
}

fn versioned_machine_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"\b([a-z][a-z0-9-]*?)-([0-9]+\.[0-9]+)\b").unwrap_or_else(|_| {
            // The pattern is a constant: this branch never runs.
            regex::Regex::new("$^").unwrap_or_else(|_| unreachable!())
        })
    })
}

/// Machine names of both snapshots (canonical names and aliases).
fn machine_names(a: &Snapshot, b: &Snapshot) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for s in [a, b] {
        for (name, m) in &s.index.machines {
            set.insert(name.clone());
            if let Some(al) = &m.alias {
                set.insert(al.clone());
            }
        }
    }
    set
}

/// Reads the baseline's goldens of a case: extension → text (empty when it has none).
fn baseline_goldens(case: &Case, stem: &str) -> BTreeMap<&'static str, String> {
    let dir = case.expect_dir();
    let mut out = BTreeMap::new();
    for ext in GOLDEN_EXTS {
        if let Ok(t) = std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))) {
            out.insert(*ext, normalize(&t));
        }
    }
    out
}

/// Whether `dir` (a case's `expect/`) has any golden of `stem`.
pub fn has_goldens(case_dir: &Path, stem: &str) -> bool {
    GOLDEN_EXTS.iter().any(|ext| {
        case_dir
            .join(EXPECT_DIR)
            .join(format!("{stem}.{ext}"))
            .is_file()
    })
}

/// Plans `case` on `new` and compares the result with `baseline`'s goldens.
pub fn compare_with_baseline(
    case: &Case,
    new: &LoadedSnapshot,
    baseline: &LoadedSnapshot,
) -> CaseComparison {
    let result = planview::plan(&case.domain_xml, &new.snapshot);
    let produced: BTreeMap<&'static str, String> = golden_texts(&result)
        .into_iter()
        .map(|(e, t)| (e, normalize(&t)))
        .collect();
    let base = baseline_goldens(case, &baseline.golden_stem());
    let names = machine_names(&new.snapshot, &baseline.snapshot);
    // Messages name the snapshot (`QEMU 7.2.22/x86_64`): that differs by construction.
    let ids = [
        format!("QEMU {}/", new.version),
        format!("QEMU {}/", baseline.version),
    ];
    let norm = |t: &str| {
        let mut t = normalise_machines(t, &names);
        for id in &ids {
            t = t.replace(id.as_str(), "QEMU X.Y.Z/");
        }
        t
    };
    let mk = |class, detail: String| CaseComparison {
        case: case.name.clone(),
        class,
        detail,
    };
    if base.is_empty() {
        return mk(
            CaseClass::NoBaseline,
            format!("the baseline {} has no goldens for this case", baseline.id),
        );
    }
    let base_refused = base.contains_key("err");
    let new_refused = produced.contains_key("err");
    match (base_refused, new_refused) {
        (false, true) => mk(
            CaseClass::NewlyRefused,
            produced.get("err").cloned().unwrap_or_default(),
        ),
        (true, false) => mk(
            CaseClass::NewlyAccepted,
            format!(
                "the baseline refused it ({}); the plan now accepts it",
                base.get("err").map(|e| e.trim()).unwrap_or_default()
            ),
        ),
        _ => {
            let mut detail = String::new();
            let exts: BTreeSet<&str> = base.keys().chain(produced.keys()).copied().collect();
            for ext in exts {
                let old = norm(base.get(ext).map_or("", String::as_str));
                let new_text = norm(produced.get(ext).map_or("", String::as_str));
                if old == new_text {
                    continue;
                }
                detail.push_str(&format!("{ext}:\n"));
                detail.push_str(&changed_lines(&old, &new_text));
            }
            if detail.is_empty() {
                mk(CaseClass::Identical, String::new())
            } else {
                mk(CaseClass::Drift, detail)
            }
        }
    }
}

/// The lines only in `old` (`-`) and only in `new` (`+`), in diff order.
fn changed_lines(old: &str, new: &str) -> String {
    let diff = qconform_reports::diff::unified_text(old, new, ("baseline", "new"), 0);
    let mut out = String::new();
    for l in diff.lines() {
        if l.starts_with("---") || l.starts_with("+++") {
            continue;
        }
        if let Some(rest) = l.strip_prefix('-') {
            out.push_str(&format!("  - {rest}\n"));
        } else if let Some(rest) = l.strip_prefix('+') {
            out.push_str(&format!("  + {rest}\n"));
        }
    }
    out
}

/// Something of the baseline that the new build no longer has, with QEMU's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disappeared {
    /// `machine` (no longer listed or no longer starts), `device` (type gone) or
    /// `pci_identity` (the type no longer starts at a placement).
    pub kind: String,
    /// Machine or device type (with `@placement` for identities).
    pub name: String,
    /// QEMU's own words (first error line of its stderr), or what the snapshot shows.
    pub reason: String,
}

/// What the baseline had and the new snapshot lacks: machine types (gone or no longer
/// starting), device types, and PCI identities (a type that no longer starts at a placement),
/// each with QEMU's reason where the new snapshot recorded one.
pub fn disappeared(baseline: &Snapshot, new: &Snapshot) -> Vec<Disappeared> {
    let mut out = Vec::new();
    for (name, caps) in &baseline.index.machine_caps {
        if !caps.starts {
            continue;
        }
        match new.index.machine_caps.get(name) {
            None if !new.index.machines.contains_key(name) => out.push(Disappeared {
                kind: "machine".into(),
                name: name.clone(),
                reason: "not listed by query-machines".into(),
            }),
            Some(c) if !c.starts => out.push(Disappeared {
                kind: "machine".into(),
                name: name.clone(),
                reason: c.error.clone().unwrap_or_else(|| "does not start".into()),
            }),
            _ => {}
        }
    }
    let old_types: BTreeSet<&String> = concrete(baseline);
    let new_types: BTreeSet<&String> = concrete(new);
    for t in old_types.difference(&new_types) {
        out.push(Disappeared {
            kind: "device".into(),
            name: (*t).clone(),
            reason: "not listed by qom-list-types".into(),
        });
    }
    for (ty, places) in &baseline.index.pci_ids {
        for placement in places.keys() {
            let still = new
                .index
                .pci_ids
                .get(ty)
                .is_some_and(|p| p.contains_key(placement));
            if still || !new_types.contains(ty) {
                continue;
            }
            let p = placement_name(*placement);
            out.push(Disappeared {
                kind: "pci_identity".into(),
                name: format!("{ty}@{p}"),
                reason: identity_reason(new, ty, &p),
            });
        }
    }
    out
}

fn concrete(s: &Snapshot) -> BTreeSet<&String> {
    s.index
        .types
        .iter()
        .filter(|(_, t)| !t.is_abstract)
        .map(|(n, _)| n)
        .collect()
}

fn placement_name(p: qconform_caps::Placement) -> String {
    p.as_str().to_owned()
}

/// QEMU's reason a type has no identity at a placement (without the `-device OPTIONS: `
/// prefix naming our probe's option string).
fn identity_reason(s: &Snapshot, ty: &str, placement: &str) -> String {
    let r = identity_reason_raw(s, ty, placement);
    match r.strip_prefix("-device ").and_then(|t| t.split_once(": ")) {
        Some((_, msg)) => msg.to_owned(),
        None => r,
    }
}

/// The message recorded when the batch dropped the type, else the first error line of its
/// launch alone.
fn identity_reason_raw(s: &Snapshot, ty: &str, placement: &str) -> String {
    let ids = &s.raw.pci_identity;
    if let Some(alone) = ids.get(&format!("{placement}:{ty}"))
        && alone.outcome != LaunchOutcome::Started
        && let Some(l) = error_line(&alone.stderr)
    {
        return l;
    }
    for (key, p) in ids {
        if (key == placement || key.starts_with(&format!("{placement}:")))
            && let Some(m) = p.rejected.get(ty)
        {
            return m.clone();
        }
    }
    if let Some(first) = ids.get(placement)
        && first.outcome != LaunchOutcome::Started
    {
        return error_line(&first.stderr)
            .unwrap_or_else(|| format!("the bare {placement} launch did not start"));
    }
    "not recorded (the type was not probed at this placement)".into()
}

/// Replays every case that targets the new snapshot's architecture and compares it with
/// the baseline's goldens. A case the capability gate now refuses, but that the baseline
/// accepted, is newly refused (with the gate's reason); cases neither applies to are left out.
pub fn replay(
    corpus: &crate::case::Corpus,
    new: &LoadedSnapshot,
    baseline: &LoadedSnapshot,
) -> Vec<CaseComparison> {
    let mut out = Vec::new();
    for case in &corpus.cases {
        if !crate::gate::targets_arch(case, &new.snapshot) {
            continue;
        }
        match crate::gate::applies(case, &new.snapshot) {
            Ok(()) => out.push(compare_with_baseline(case, new, baseline)),
            Err(reason) => {
                let base = baseline_goldens(case, &baseline.golden_stem());
                if !base.is_empty() && !base.contains_key("err") {
                    out.push(CaseComparison {
                        case: case.name.clone(),
                        class: CaseClass::NewlyRefused,
                        detail: format!("the case no longer applies: {reason}"),
                    });
                }
            }
        }
    }
    out
}

/// Counts of case classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    /// Identical.
    pub identical: usize,
    /// Drift.
    pub drift: usize,
    /// Newly refused.
    pub newly_refused: usize,
    /// Newly accepted.
    pub newly_accepted: usize,
}

impl ClassCounts {
    /// Counts a list of comparisons (cases without baseline goldens are not counted).
    pub fn of(c: &[CaseComparison]) -> ClassCounts {
        let mut n = ClassCounts::default();
        for x in c {
            match x.class {
                CaseClass::Identical => n.identical += 1,
                CaseClass::Drift => n.drift += 1,
                CaseClass::NewlyRefused => n.newly_refused += 1,
                CaseClass::NewlyAccepted => n.newly_accepted += 1,
                CaseClass::NoBaseline => {}
            }
        }
        n
    }
}

/// Whether a comparison is a regression: a newly refused domain always; drift only against
/// a baseline of the same major.minor (a stable update must not move the guest ABI; across
/// releases drift is reported, and versioned machine types keep old guests where they were).
pub fn is_regression(class: CaseClass, same_release: bool) -> bool {
    match class {
        CaseClass::NewlyRefused => true,
        CaseClass::Drift => same_release,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_machine_names_are_normalised_only_when_they_are_machines() {
        let machines: BTreeSet<String> = ["pc-q35-10.0", "pc-q35-10.1", "virt-10.1", "q35"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            normalise_machines("-machine pc-q35-10.1,usb=off", &machines),
            "-machine pc-q35-X.Y,usb=off"
        );
        assert_eq!(
            normalise_machines("virt-10.1 virt-9.9 e1000-1.2", &machines),
            "virt-X.Y virt-9.9 e1000-1.2"
        );
    }

    #[test]
    fn changed_lines_lists_only_changes() {
        let out = changed_lines("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(out, "  - b\n  + B\n");
    }
}
