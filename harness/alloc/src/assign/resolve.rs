//! Step 1: the machine type (name or alias, through the snapshot) and the domain's
//! architecture against the binary's target.

use std::collections::BTreeSet;

use qconform_caps::Snapshot;
use qconform_domxml::Domain;

use super::Work;
use crate::Error;
use crate::machine::{Family, Features};

impl<'c> Work<'c> {
    pub(super) fn new(dom: &Domain, caps: &'c Snapshot) -> Result<Work<'c>, Error> {
        let arch = caps.probe.arch.clone();
        if let Some(a) = &dom.arch
            && !arch_compatible(a, &arch)
        {
            return Err(Error::new(format!(
                "the domain's architecture '{a}' does not match this QEMU binary's target '{arch}'"
            ))
            .element("type")
            .attr("arch", a.clone()));
        }
        let Some(machine) = caps.resolve_machine(dom.machine.as_deref()) else {
            return Err(match &dom.machine {
                Some(m) => Error::new(format!(
                    "unsupported machine type '{m}': QEMU {} has no such machine",
                    caps.id()
                ))
                .element("type")
                .attr("machine", m.clone()),
                None => Error::new(format!(
                    "no machine type given and QEMU {} has no default machine",
                    caps.id()
                ))
                .element("type"),
            });
        };
        let machine = machine.to_string();
        if let Some(mc) = caps.index.machine_caps.get(&machine)
            && !mc.starts
        {
            return Err(Error::new(format!(
                "machine type '{machine}' does not start with -nodefaults on QEMU {}: {}",
                caps.id(),
                mc.error.as_deref().unwrap_or("unknown error")
            ))
            .element("type")
            .attr("machine", dom.machine.clone().unwrap_or_default()));
        }
        let family = Family::of(&machine, &arch);
        let features = Features::of(caps);
        Ok(Work {
            caps,
            machine,
            arch,
            family,
            features,
            root: None,
            devs: Vec::new(),
            ctrl_order: Vec::new(),
            connect_flags: Vec::new(),
            locs: Vec::new(),
            warnings: Vec::new(),
            unmodelled: Vec::new(),
            host_facts: dom.host_pci.clone(),
            numa_cells: dom.numa_cells,
            categories: BTreeSet::new(),
        })
    }
}

fn arch_compatible(domain: &str, target: &str) -> bool {
    domain == target
        || matches!(
            (domain, target),
            ("i686", "x86_64")
                | ("i386", "x86_64")
                | ("ppc64le", "ppc64")
                | ("armv7l", "aarch64")
                | ("armv7l", "arm")
                | ("s390", "s390x")
        )
}
