//! libvirt-compatible PCI/PCIe, zPCI and CCW address allocator.
//!
//! [`allocate`] takes a parsed domain and a caps snapshot and decides, the way libvirt does
//! for the same XML and the same QEMU capabilities:
//! * the canonical machine type and its family ([`Family`]);
//! * libvirt's implicit devices (root PCI controller, default USB controller, SATA on q35,
//!   memory balloon, ...) and aliases (`net0`, `virtio-disk0`, `hostdev0`, `pci.1`, ...);
//! * a PCI address for every device that takes a PCI slot, growing the topology with
//!   pcie-root-ports, pci-bridges, pcie-to-pci-bridges (or dmi-to-pci-bridge + pci-bridge)
//!   as needed, in libvirt's two-pass order;
//! * zPCI uid/fid on s390x, CCW device numbers, controller defaults (chassis, port, QEMU
//!   device name), multifunction bits;
//! * or a rejection with libvirt's meaning.
//!
//! The rules live in [`rules`] (bus models) and `classify` (devices); DESIGN.md beside this
//! crate explains them. The crate is pure: no I/O, deterministic output.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod assign;
mod classify;
mod machine;
mod names;
mod pci;
pub mod rules;
#[cfg(any(test, feature = "testcaps"))]
pub mod testcaps;

use qconform_caps::Snapshot;
use qconform_domxml::{Address, Device, DeviceKind, Domain};

pub use classify::{is_virtio_model, usb_master_startport};
pub use machine::{Family, Features, usb_qemu_device};
pub use names::{disk_index, libvirt_disk_order};
pub use pci::Loc;
pub use rules::{Flags, PciModel};

/// A rejection: what is wrong and where (one sentence, with libvirt's wording where
/// libvirt has a message for the case, and the offending element, attribute, value and
/// position). The located error shared with the parser and the planner.
pub type Error = qconform_domxml::Problem;

/// Where a device of the allocation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From the document: index in [`Domain::devices`].
    Document(usize),
    /// Added by libvirt's defaults (implicit root, USB, SATA, balloon, ...).
    Implicit,
    /// A PCI controller added while placing devices.
    AutoAdded,
}

/// How a device is attached to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// On a PCI bus: the device's address is [`Address::Pci`].
    Pci,
    /// On the virtual channel subsystem: [`Address::Ccw`].
    Ccw,
    /// A PCI host device managed but not given to the guest: no `-device`.
    Unassigned,
    /// Not addressed by this allocator (ISA, USB, IDE/SATA/SCSI drives, system bus,
    /// built-in, ...).
    Other,
}

/// One device of the final domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Dev {
    /// The device with its final address and, for controllers, filled-in defaults.
    pub device: Device,
    /// Where it comes from.
    pub origin: Origin,
    /// libvirt's alias (or the user's `ua-` alias).
    pub alias: String,
    /// How it is attached.
    pub attach: Attach,
}

impl Dev {
    /// The controller data, when the device is a controller.
    pub fn controller(&self) -> Option<&qconform_domxml::Controller> {
        match &self.device.kind {
            DeviceKind::Controller(c) => Some(c),
            _ => None,
        }
    }

    /// The PCI controller model, when the device is a PCI controller.
    pub fn pci_model(&self) -> Option<PciModel> {
        let c = self.controller()?;
        if c.ctype != "pci" {
            return None;
        }
        PciModel::parse(c.model.as_deref()?)
    }

    /// The final PCI address, when attached to PCI.
    pub fn pci(&self) -> Option<&qconform_domxml::PciAddress> {
        match &self.device.address {
            Address::Pci(p) if self.attach == Attach::Pci => Some(p),
            _ => None,
        }
    }
}

/// The result of [`allocate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Canonical machine type.
    pub machine: String,
    /// Target architecture of the binary.
    pub arch: String,
    /// Machine family.
    pub family: Family,
    /// What the binary offers.
    pub features: Features,
    /// Model of the root PCI controller, `None` when the machine has no PCI here.
    pub root: Option<PciModel>,
    /// Every device: document devices in document order, then implicit and auto-added
    /// ones.
    pub devices: Vec<Dev>,
    /// Aliases of the PCI controllers added while placing devices, in index order.
    pub controllers_added: Vec<String>,
    /// Things worth knowing that are not errors (unmodelled elements kept, assumptions).
    pub warnings: Vec<String>,
    /// Bus categories the machine offers with `-nodefaults` (`floppy`, `isa`, `ide`, ...).
    pub categories: std::collections::BTreeSet<String>,
    /// PCI controller index → position in `devices`.
    pub pci_controllers: std::collections::BTreeMap<u32, usize>,
}

impl Allocation {
    /// The PCI controller with this index.
    pub fn pci_controller(&self, index: u32) -> Option<&Dev> {
        self.pci_controllers
            .get(&index)
            .and_then(|&i| self.devices.get(i))
    }

    /// The controller of a type and index.
    pub fn controller(&self, ty: &str, index: u32) -> Option<&Dev> {
        self.devices.iter().find(|d| {
            d.controller()
                .is_some_and(|c| c.ctype == ty && c.index == Some(index))
        })
    }

    /// QEMU bus name of PCI bus `index` (`pcie.0`, `pci.0`, `pci.3`; `pci.N.0` behind an
    /// extra pSeries PHB).
    pub fn pci_bus_name(&self, index: u32) -> String {
        if index == 0 {
            return match self.root {
                Some(PciModel::PcieRoot) => "pcie.0".into(),
                _ => "pci.0".into(),
            };
        }
        match self.pci_controller(index) {
            Some(d) if d.pci_model() == Some(PciModel::PciRoot) => format!("{}.0", d.alias),
            Some(d) => d.alias.clone(),
            None => format!("pci.{index}"),
        }
    }
}

/// Places every device of `dom` for the QEMU binary described by `caps`.
pub fn allocate(dom: &Domain, caps: &Snapshot) -> Result<Allocation, Error> {
    assign::run(dom, caps)
}
