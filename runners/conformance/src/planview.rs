//! The runner's view of a plan: the texts the goldens hold and the facts the live and
//! guest stages compare, taken from `qconform_plan::plan`.

use std::collections::BTreeMap;

use qconform_caps::{GuestPciFunction, Snapshot};
use qconform_plan::DeviceAddress;

/// An accepted plan.
#[derive(Debug, Clone)]
pub struct PlanView {
    /// Canonical machine type.
    pub machine: String,
    /// QEMU arguments (after the binary).
    pub argv: Vec<String>,
    /// Golden text of the argv.
    pub argv_text: String,
    /// Golden text of the address map.
    pub addresses_text: String,
    /// Guest view: the functions the guest enumerates.
    pub guest_pci: Vec<GuestPciFunction>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Host resources the argv needs to launch (vfio devices, paths); empty when it
    /// launches anywhere.
    pub host_resources: Vec<String>,
    /// Where the core placed each device, by alias.
    pub devices: BTreeMap<String, DeviceAddress>,
}

/// A rejected plan: the error as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRejection {
    /// The full error text (`Display` of the core's error).
    pub message: String,
}

/// Plans a domain against a snapshot through the core.
pub fn plan(domain_xml: &str, snap: &Snapshot) -> Result<PlanView, PlanRejection> {
    match qconform_plan::plan(domain_xml, snap) {
        Ok(p) => Ok(PlanView {
            argv_text: p.argv_text(),
            addresses_text: p.addresses_text(),
            devices: p.devices,
            machine: p.machine,
            argv: p.argv,
            guest_pci: p.guest_pci,
            warnings: p.warnings,
            host_resources: p.host_resources,
        }),
        Err(e) => Err(PlanRejection {
            message: e.to_string(),
        }),
    }
}
