//! Allocation drift: how the plan of one domain changes between two snapshots — argv,
//! device addresses and the guest's view — the question asked before a QEMU upgrade
//! (is the guest ABI stable?).
//!
//! This module does not depend on the planner: the caller turns each plan (or its
//! rejection) into a [`PlanOutcome`], and [`drift`] compares the two.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::diff::{Change, unified_lines};

/// The parts of a plan that drift looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// Canonical machine type.
    pub machine: String,
    /// QEMU arguments (after the binary).
    pub argv: Vec<String>,
    /// Device alias → address, rendered as text.
    pub devices: BTreeMap<String, String>,
    /// Guest-visible PCI functions, one line each, as the planner prints them.
    pub guest_pci: Vec<String>,
    /// Planner warnings.
    pub warnings: Vec<String>,
}

/// A plan or the reason it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum PlanOutcome {
    /// The domain was planned.
    Planned {
        /// The plan.
        plan: PlanView,
    },
    /// The planner rejected the domain.
    Rejected {
        /// The planner's error message.
        error: String,
    },
}

/// An address that moved, appeared or vanished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressChange {
    /// Device alias.
    pub device: String,
    /// Address with the old snapshot (`None`: device not placed).
    pub old: Option<String>,
    /// Address with the new snapshot.
    pub new: Option<String>,
}

/// Drift of one case between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Case name (directory name).
    pub case: String,
    /// Old snapshot id.
    pub from: String,
    /// New snapshot id.
    pub to: String,
    /// Plan with the old snapshot.
    pub from_outcome: PlanOutcome,
    /// Plan with the new snapshot.
    pub to_outcome: PlanOutcome,
    /// Acceptance changed (`planned` / `rejected`).
    pub acceptance: Option<Change<String>>,
    /// Canonical machine type changed (e.g. the `q35` alias moved to a newer version).
    pub machine: Option<Change<String>>,
    /// Unified diff of the argv, one option with its value per line; empty when equal.
    pub argv_diff: String,
    /// Device addresses that changed.
    pub addresses: Vec<AddressChange>,
    /// Unified diff of the guest's PCI view; empty when equal.
    pub guest_diff: String,
    /// Rejection message changed (both rejected).
    pub error: Option<Change<String>>,
    /// Warnings added or removed, as a unified diff; empty when equal.
    pub warnings_diff: String,
}

impl Drift {
    /// Nothing the guest can see changed: same acceptance, same machine type, same
    /// addresses and the same guest PCI view (the argv may still differ).
    pub fn guest_abi_stable(&self) -> bool {
        self.acceptance.is_none()
            && self.machine.is_none()
            && self.addresses.is_empty()
            && self.guest_diff.is_empty()
            && self.error.is_none()
    }

    /// Nothing at all changed.
    pub fn is_empty(&self) -> bool {
        self.guest_abi_stable() && self.argv_diff.is_empty() && self.warnings_diff.is_empty()
    }

    /// The kind of change, most important first.
    pub fn verdict(&self) -> Verdict {
        if self.acceptance.is_some() {
            Verdict::AcceptanceChanges
        } else if !self.addresses.is_empty() || !self.guest_diff.is_empty() {
            Verdict::GuestViewChanges
        } else if self.machine.is_some() {
            Verdict::MachineTypeMoves
        } else if self.error.is_some() {
            Verdict::ErrorChanges
        } else if !self.argv_diff.is_empty() || !self.warnings_diff.is_empty() {
            Verdict::ArgvOnly
        } else if matches!(self.from_outcome, PlanOutcome::Rejected { .. }) {
            Verdict::RejectedByBoth
        } else {
            Verdict::Unchanged
        }
    }
}

/// One-word classification of a [`Drift`], for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Accepted by one snapshot, rejected by the other.
    AcceptanceChanges,
    /// Device addresses or the guest's PCI view change.
    GuestViewChanges,
    /// Same addresses and guest view, but the machine type resolves to another version
    /// (an alias such as `q35` moved).
    MachineTypeMoves,
    /// Rejected by both, for different reasons.
    ErrorChanges,
    /// Only the argv or the warnings differ; the guest sees the same.
    ArgvOnly,
    /// Rejected by both with the same error.
    RejectedByBoth,
    /// Nothing changes.
    Unchanged,
}

impl Verdict {
    /// Label used in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::AcceptanceChanges => "ACCEPTANCE CHANGES",
            Verdict::GuestViewChanges => "GUEST VIEW CHANGES",
            Verdict::MachineTypeMoves => "machine type moves",
            Verdict::ErrorChanges => "error changes",
            Verdict::ArgvOnly => "argv only",
            Verdict::RejectedByBoth => "rejected by both",
            Verdict::Unchanged => "unchanged",
        }
    }
}

/// Groups an argv into display lines: an option followed by its value on one line.
pub fn argv_lines(argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        match argv.get(i + 1) {
            Some(v) if a.starts_with('-') && !v.starts_with('-') => {
                out.push(format!("{a} {v}"));
                i += 2;
            }
            _ => {
                out.push(a.clone());
                i += 1;
            }
        }
    }
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn status(o: &PlanOutcome) -> &'static str {
    match o {
        PlanOutcome::Planned { .. } => "planned",
        PlanOutcome::Rejected { .. } => "rejected",
    }
}

/// Compares the plans of one case with two snapshots.
pub fn drift(
    case: &str,
    from: &str,
    from_outcome: &PlanOutcome,
    to: &str,
    to_outcome: &PlanOutcome,
) -> Drift {
    let labels = (from, to);
    let mut d = Drift {
        case: case.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        acceptance: None,
        machine: None,
        argv_diff: String::new(),
        addresses: Vec::new(),
        guest_diff: String::new(),
        error: None,
        warnings_diff: String::new(),
        from_outcome: from_outcome.clone(),
        to_outcome: to_outcome.clone(),
    };
    let (fs, ts) = (status(from_outcome), status(to_outcome));
    if fs != ts {
        d.acceptance = Some(Change {
            old: fs.to_owned(),
            new: ts.to_owned(),
        });
    }
    let empty = PlanView {
        machine: String::new(),
        argv: Vec::new(),
        devices: BTreeMap::new(),
        guest_pci: Vec::new(),
        warnings: Vec::new(),
    };
    let (a, b) = match (from_outcome, to_outcome) {
        (PlanOutcome::Rejected { error: e1 }, PlanOutcome::Rejected { error: e2 }) => {
            // Messages name the snapshot ("not available in QEMU 10.0.2/x86_64"): that
            // alone is no change.
            if e1.replace(from, "<qemu>") != e2.replace(to, "<qemu>") {
                d.error = Some(Change {
                    old: e1.clone(),
                    new: e2.clone(),
                });
            }
            return d;
        }
        (PlanOutcome::Planned { plan: a }, PlanOutcome::Planned { plan: b }) => (a, b),
        (PlanOutcome::Planned { plan: a }, PlanOutcome::Rejected { .. }) => (a, &empty),
        (PlanOutcome::Rejected { .. }, PlanOutcome::Planned { plan: b }) => (&empty, b),
    };
    if a.machine != b.machine && !a.machine.is_empty() && !b.machine.is_empty() {
        d.machine = Some(Change {
            old: a.machine.clone(),
            new: b.machine.clone(),
        });
    }
    d.argv_diff = unified_lines(
        &strs(&argv_lines(&a.argv)),
        &strs(&argv_lines(&b.argv)),
        labels,
        2,
    );
    let names: BTreeSet<&String> = a.devices.keys().chain(b.devices.keys()).collect();
    for n in names {
        let (o, nw) = (a.devices.get(n), b.devices.get(n));
        if o != nw {
            d.addresses.push(AddressChange {
                device: n.clone(),
                old: o.cloned(),
                new: nw.cloned(),
            });
        }
    }
    d.guest_diff = unified_lines(&strs(&a.guest_pci), &strs(&b.guest_pci), labels, 3);
    d.warnings_diff = unified_lines(&strs(&a.warnings), &strs(&b.warnings), labels, 0);
    d
}

/// Plain-text rendering of a drift.
pub fn text(d: &Drift) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "drift {}: {} -> {}", d.case, d.from, d.to);
    if d.is_empty() {
        let what = match &d.from_outcome {
            PlanOutcome::Planned { .. } => "same argv, addresses and guest view",
            PlanOutcome::Rejected { .. } => "rejected by both, with the same error",
        };
        let _ = writeln!(out, "  no change: {what} (guest ABI stable)");
        return out;
    }
    let verdict = d.verdict();
    if d.guest_abi_stable() {
        let _ = writeln!(
            out,
            "  guest ABI stable: same machine, addresses and guest view; only the argv differs"
        );
    } else {
        let _ = writeln!(out, "  {}", verdict.as_str());
    }
    if let Some(c) = &d.acceptance {
        let _ = writeln!(out, "  acceptance: {} -> {}", c.old, c.new);
        for (label, o) in [("old", &d.from_outcome), ("new", &d.to_outcome)] {
            if let PlanOutcome::Rejected { error } = o {
                let _ = writeln!(out, "  {label} error: {error}");
            }
        }
    }
    if let Some(c) = &d.error {
        let _ = writeln!(out, "  error: {} -> {}", c.old, c.new);
    }
    if let Some(c) = &d.machine {
        let _ = writeln!(
            out,
            "  machine: {} -> {} (the domain's machine type resolves to another version)",
            c.old, c.new
        );
    }
    if !d.addresses.is_empty() {
        let _ = writeln!(out, "  addresses:");
        for a in &d.addresses {
            let _ = writeln!(
                out,
                "    {}: {} -> {}",
                a.device,
                a.old.as_deref().unwrap_or("(none)"),
                a.new.as_deref().unwrap_or("(none)")
            );
        }
    }
    for (title, u) in [
        ("guest view", &d.guest_diff),
        ("argv", &d.argv_diff),
        ("warnings", &d.warnings_diff),
    ] {
        if !u.is_empty() {
            let _ = writeln!(out, "  {title}:");
            out.push_str(u);
        }
    }
    out
}
