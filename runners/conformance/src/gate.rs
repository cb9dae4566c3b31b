//! Capability gating: whether a case applies to a snapshot, decided from the capabilities
//! the case requires (never from version numbers). A case that does not apply is shown as
//! an ignored trial with the reason.

use qconform_caps::Snapshot;

use crate::case::{Case, split_property};

/// Machine requirement meaning "none".
pub const ANY_MACHINE: &str = "*";

/// Whether a snapshot's arch is one the case targets: `requires.arch` when given, else
/// the arch of `domain.xml` (every arch when neither says). Snapshots of other arches get
/// no trials for the case at all: they are not part of its matrix.
pub fn targets_arch(case: &Case, snap: &Snapshot) -> bool {
    let arch = &snap.probe.arch;
    match (&case.spec.requires.arch, &case.head.arch) {
        (Some(list), _) => list.iter().any(|a| a == arch),
        (None, Some(domain_arch)) => domain_arch == arch,
        (None, None) => true,
    }
}

/// `Ok(())` when the case applies to a snapshot of an arch it targets, otherwise the
/// capability it lacks.
pub fn applies(case: &Case, snap: &Snapshot) -> Result<(), String> {
    let machine = match case.spec.requires.machine.as_deref() {
        Some(ANY_MACHINE) => None,
        Some(m) => Some(Some(m)),
        None => case.head.machine.as_deref().map(Some),
    };
    if let Some(wanted) = machine {
        let label = wanted.unwrap_or("(default machine)");
        let Some(canonical) = snap.resolve_machine(wanted) else {
            return Err(format!("machine {label} does not exist in this QEMU"));
        };
        match snap.index.machine_caps.get(canonical) {
            None => {
                return Err(format!(
                    "machine {label} ({canonical}) was not probed in this snapshot"
                ));
            }
            Some(mc) if !mc.starts => {
                return Err(format!(
                    "machine {label} ({canonical}) does not start with -nodefaults: {}",
                    mc.error.as_deref().unwrap_or("no reason recorded")
                ));
            }
            Some(_) => {}
        }
    }
    for t in &case.spec.requires.types {
        if !snap.has_type(t) {
            return Err(format!("requires QOM type {t}, which this QEMU lacks"));
        }
    }
    for p in &case.spec.requires.properties {
        if let Some((t, prop)) = split_property(p)
            && !snap.device_has_property(t, prop)
        {
            return Err(format!("requires property {p}, which this QEMU lacks"));
        }
    }
    for t in &case.spec.requires.absent_types {
        if snap.has_type(t) {
            return Err(format!(
                "requires QOM type {t} to be absent, and this QEMU has it"
            ));
        }
    }
    Ok(())
}

/// The canonical machine a case's domain runs on in a snapshot, when it can be named
/// before planning (the domain's machine, or the default one when the domain names none).
pub fn canonical_machine(case: &Case, snap: &Snapshot) -> Option<String> {
    if case.head.arch.is_none() && case.head.machine.is_none() && !has_os_type(&case.domain_xml) {
        // Unreadable domain: the plan is rejected before any machine is known.
        return None;
    }
    snap.resolve_machine(case.head.machine.as_deref())
        .map(str::to_owned)
}

fn has_os_type(xml: &str) -> bool {
    roxmltree::Document::parse(xml)
        .is_ok_and(|d| d.root_element().children().any(|n| n.has_tag_name("os")))
}
