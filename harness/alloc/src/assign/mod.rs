//! The allocation pipeline, one file per step (DESIGN.md, "The pipeline"):
//!
//! 1. [`resolve`]: the machine type and the architecture;
//! 2. [`normalise`]: controller indexes, the root controller, default models, disk buses
//!    and drive addresses, with libvirt's parse-time and define-time checks of
//!    [`validate`] around it;
//! 3. [`implicit`]: libvirt's implicit devices and the controllers devices imply;
//! 4. [`attach`]: how each device attaches (PCI, CCW, unassigned, other);
//! 5. [`aliases`]: libvirt's aliases;
//! 6. [`fit`]: buses the machine must have for the devices;
//! 7. [`place`]: PCI placement, a dry run that grows the topology, then the real pass,
//!    with the chipset slots of [`chipset`];
//! 8. [`ids`]: zPCI uid/fid and CCW devnos;
//! 9. [`finish`]: final addresses, multifunction, controller defaults.

use std::collections::BTreeSet;

use qconform_caps::Snapshot;
use qconform_domxml::{Address, Domain, PciAddress, TextPos};

use crate::machine::{Family, Features};
use crate::pci::Loc;
use crate::rules::{Flags, PciModel};
use crate::{Allocation, Dev, Error};

mod aliases;
mod attach;
mod chipset;
mod finish;
mod fit;
mod ids;
mod implicit;
mod normalise;
mod place;
mod resolve;
mod validate;

pub(crate) fn run(dom: &Domain, caps: &Snapshot) -> Result<Allocation, Error> {
    let mut w = Work::new(dom, caps)?;
    w.check_parse(dom)?;
    w.normalise(dom)?;
    w.check_define()?;
    w.add_implicit(dom)?;
    w.attach()?;
    w.aliases()?;
    w.warn_undescribed_hosts();
    w.check_fit()?;
    w.check_ids()?;
    w.assign_pci()?;
    w.assign_zpci()?;
    w.assign_ccw()?;
    w.finish_pci()?;
    Ok(w.into_allocation())
}

/// The state the steps share.
struct Work<'c> {
    caps: &'c Snapshot,
    /// Canonical machine type name.
    machine: String,
    /// The binary's target architecture.
    arch: String,
    family: Family,
    /// What the snapshot offers that placement depends on.
    features: Features,
    /// Model of the root PCI controller (`None`: the machine has no PCI bus).
    root: Option<PciModel>,
    devs: Vec<Dev>,
    /// Controllers in libvirt's controller-list order (indices into `devs`).
    ctrl_order: Vec<usize>,
    /// Connect flags of each device attached to PCI.
    connect_flags: Vec<Flags>,
    /// Final PCI location of each device attached to PCI.
    locs: Vec<Option<Loc>>,
    warnings: Vec<String>,
    /// Explicit PCI addresses of unmodelled elements (reserved, never emitted).
    unmodelled: Vec<(String, TextPos, Loc)>,
    /// Host PCI facts from the domain's metadata.
    host_facts: Vec<qconform_domxml::HostPciFact>,
    /// Guest NUMA nodes (`<cpu><numa><cell>` elements).
    numa_cells: usize,
    /// Bus categories of the machine.
    categories: BTreeSet<String>,
}

/// Highest controller index: PCI controller indexes are bus numbers.
const MAX_CONTROLLER_INDEX: u32 = 255;

/// An error about one device, prefixed with its alias once it has one.
fn dev_err(d: &Dev, msg: impl Into<String>) -> Error {
    let m: String = msg.into();
    let m = if d.alias.is_empty() {
        m
    } else {
        format!("{}: {m}", d.alias)
    };
    Error::new(m).element(d.device.element()).at(d.device.pos)
}

/// An error about a device's PCI address: it points at the slot the document gave.
fn addr_err(d: &Dev, msg: String) -> Error {
    let e = dev_err(d, msg);
    match &d.device.address {
        Address::Pci(p) if !p.is_empty() => e
            .element("address")
            .attr("slot", format!("0x{:02x}", p.slot)),
        _ => e,
    }
}

fn loc_of(p: &PciAddress) -> Loc {
    Loc {
        bus: p.bus,
        slot: p.slot as u8,
        function: p.function as u8,
    }
}
