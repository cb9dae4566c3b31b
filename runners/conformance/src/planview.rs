//! The runner's view of a plan: the texts the goldens hold and the facts the live and
//! guest stages compare, taken from `qconform_plan::plan`.

use std::collections::BTreeMap;

use qconform_caps::Snapshot;

/// Where the core placed one device, as the runner uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// Address kind (`pci`, `ccw`, `drive`, ...).
    pub kind: String,
    /// QEMU bus id the device is plugged into (`pcie.0`, `pci.1`, ...), when known.
    pub bus_alias: Option<String>,
    /// Index of the controller providing the PCI bus.
    pub bus: Option<u32>,
    /// Slot.
    pub slot: Option<u32>,
    /// Function.
    pub function: Option<u32>,
    /// zPCI uid (s390x).
    pub zpci_uid: Option<u32>,
    /// zPCI fid (s390x).
    pub zpci_fid: Option<u32>,
    /// CCW devno (`fe.0.0001`).
    pub ccw_devno: Option<String>,
}

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
    /// Guest view lines.
    pub guest_pci: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Host resources the argv needs to launch (vfio devices, paths); empty when it
    /// launches anywhere.
    pub host_resources: Vec<String>,
    /// Devices by alias.
    pub devices: BTreeMap<String, DeviceView>,
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
            devices: p
                .devices
                .iter()
                .map(|(alias, d)| {
                    (
                        alias.clone(),
                        DeviceView {
                            kind: d.kind.clone(),
                            bus_alias: d.bus_alias.clone(),
                            bus: d.bus.map(u32::from),
                            slot: d.slot.map(u32::from),
                            function: d.function.map(u32::from),
                            zpci_uid: d.zpci_uid,
                            zpci_fid: d.zpci_fid,
                            ccw_devno: d.ccw_devno.clone(),
                        },
                    )
                })
                .collect(),
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
