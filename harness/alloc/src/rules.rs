//! The placement rules, in one place: connect flags, what each bus model accepts, what each
//! PCI controller needs from its parent, and which flags each device asks for.
//!
//! These are libvirt's rules (domain_addr.c, qemu_domain_address.c); DESIGN.md explains
//! them. Everything else in the crate consults these tables instead of testing models.

use std::fmt;

/// A set of connect flags (libvirt's `virDomainPCIConnectFlags`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// On a bus: endpoints may be auto-placed here. On a device: it is being auto-placed.
    pub const AUTOASSIGN: Flags = Flags(1 << 0);
    /// On a bus: slots support hotplug. On a device: hotplug is required.
    pub const HOTPLUGGABLE: Flags = Flags(1 << 1);
    /// The device must sit on bus 0.
    pub const INTEGRATED: Flags = Flags(1 << 2);
    /// Devices of this kind may share a slot, one per function (pcie-root-port).
    pub const AGGREGATE_SLOT: Flags = Flags(1 << 3);
    /// Conventional PCI endpoint.
    pub const PCI_DEVICE: Flags = Flags(1 << 4);
    /// PCI Express endpoint.
    pub const PCIE_DEVICE: Flags = Flags(1 << 5);
    /// pcie-root-port.
    pub const PCIE_ROOT_PORT: Flags = Flags(1 << 6);
    /// pcie-switch-upstream-port.
    pub const SWITCH_UPSTREAM_PORT: Flags = Flags(1 << 7);
    /// pcie-switch-downstream-port.
    pub const SWITCH_DOWNSTREAM_PORT: Flags = Flags(1 << 8);
    /// dmi-to-pci-bridge.
    pub const DMI_TO_PCI_BRIDGE: Flags = Flags(1 << 9);
    /// pci-expander-bus.
    pub const PCI_EXPANDER_BUS: Flags = Flags(1 << 10);
    /// pcie-expander-bus.
    pub const PCIE_EXPANDER_BUS: Flags = Flags(1 << 11);
    /// pci-bridge.
    pub const PCI_BRIDGE: Flags = Flags(1 << 12);
    /// pcie-to-pci-bridge.
    pub const PCIE_TO_PCI_BRIDGE: Flags = Flags(1 << 13);
    /// Every connection-type bit.
    pub const TYPES_MASK: Flags = Flags(0x3ff0);
    /// Conventional and Express endpoints.
    pub const TYPES_ENDPOINT: Flags = Flags((1 << 4) | (1 << 5));

    /// Whether any bit of `other` is set.
    pub const fn any(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Union.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Difference.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Intersection.
    pub const fn and(self, other: Flags) -> Flags {
        Flags(self.0 & other.0)
    }

    /// The name libvirt uses in "It requires a controller that accepts a ..." messages.
    pub fn requirement_name(self) -> &'static str {
        const ORDER: [(Flags, &str); 10] = [
            (Flags::PCI_DEVICE, "standard PCI device"),
            (Flags::PCIE_DEVICE, "PCI Express device"),
            (Flags::PCIE_ROOT_PORT, "pcie-root-port"),
            (Flags::SWITCH_UPSTREAM_PORT, "pcie-switch-upstream-port"),
            (Flags::SWITCH_DOWNSTREAM_PORT, "pcie-switch-downstream-port"),
            (Flags::DMI_TO_PCI_BRIDGE, "dmi-to-pci-bridge"),
            (Flags::PCIE_TO_PCI_BRIDGE, "pcie-to-pci-bridge"),
            (Flags::PCI_EXPANDER_BUS, "pci-expander-bus"),
            (Flags::PCIE_EXPANDER_BUS, "pcie-expander-bus"),
            (Flags::PCI_BRIDGE, "pci-bridge"),
        ];
        ORDER
            .iter()
            .find(|(f, _)| self.any(*f))
            .map_or("PCI device", |(_, n)| n)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags(0x{:04x})", self.0)
    }
}

/// The ten PCI controller models libvirt knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PciModel {
    /// Conventional root bus (`pci.0`); on pSeries also an extra PHB.
    PciRoot,
    /// PCI Express root complex (`pcie.0`).
    PcieRoot,
    /// Conventional PCI-PCI bridge.
    PciBridge,
    /// Conventional expander bus (pxb).
    PciExpanderBus,
    /// Express expander bus (pxb-pcie).
    PcieExpanderBus,
    /// DMI-to-PCI bridge (i82801b11-bridge).
    DmiToPciBridge,
    /// PCIe-to-PCI bridge (pcie-pci-bridge).
    PcieToPciBridge,
    /// PCIe root port.
    PcieRootPort,
    /// PCIe switch upstream port.
    SwitchUpstreamPort,
    /// PCIe switch downstream port.
    SwitchDownstreamPort,
}

impl PciModel {
    /// Every model.
    pub const ALL: [PciModel; 10] = [
        PciModel::PciRoot,
        PciModel::PcieRoot,
        PciModel::PciBridge,
        PciModel::PciExpanderBus,
        PciModel::PcieExpanderBus,
        PciModel::DmiToPciBridge,
        PciModel::PcieToPciBridge,
        PciModel::PcieRootPort,
        PciModel::SwitchUpstreamPort,
        PciModel::SwitchDownstreamPort,
    ];

    /// libvirt's model name.
    pub fn as_str(self) -> &'static str {
        self.rule().name
    }

    /// Parses libvirt's model name.
    pub fn parse(name: &str) -> Option<PciModel> {
        PciModel::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// This model's row of [`MODEL_RULES`].
    pub fn rule(self) -> &'static ModelRule {
        // The table is indexed in `ALL` order; see the test `table_order`.
        &MODEL_RULES[self as usize]
    }

    /// Whether the model is a root bus (never plugged into another bus).
    pub fn is_root(self) -> bool {
        matches!(self, PciModel::PciRoot | PciModel::PcieRoot)
    }

    /// Whether the device plugged in the secondary bus counts as "behind a PCIe port" for
    /// its guest-visible identity (virtio modern-only, Express endpoint capability).
    pub fn is_pcie_port(self) -> bool {
        matches!(
            self,
            PciModel::PcieRootPort | PciModel::SwitchDownstreamPort
        )
    }
}

/// One row of the placement table: a PCI controller model as a bus (what it accepts
/// downstream) and as a device (what it needs upstream), and its QEMU device names.
#[derive(Debug)]
pub struct ModelRule {
    /// libvirt model name.
    pub name: &'static str,
    /// Connection types accepted on the bus it provides.
    pub accepts: Flags,
    /// Whether endpoints may be auto-placed on its bus.
    pub autoassign: bool,
    /// Whether its slots support hotplug (unless `<target hotplug='off'/>`).
    pub hotplug: bool,
    /// Lowest usable slot.
    pub min_slot: u8,
    /// Highest usable slot.
    pub max_slot: u8,
    /// Flags it needs from its parent bus (empty for roots).
    pub plugs_as: Flags,
    /// QEMU device names, preferred first (libvirt picks the first the binary has).
    pub qemu: &'static [&'static str],
}

const PCI_ANY: Flags = Flags::PCI_DEVICE.with(Flags::PCI_BRIDGE);
const PORT_ACCEPTS: Flags = Flags::PCIE_DEVICE
    .with(Flags::SWITCH_UPSTREAM_PORT)
    .with(Flags::PCIE_TO_PCI_BRIDGE);

/// The table, in [`PciModel::ALL`] order.
pub static MODEL_RULES: [ModelRule; 10] = [
    ModelRule {
        name: "pci-root",
        accepts: PCI_ANY.with(Flags::PCI_EXPANDER_BUS),
        autoassign: true,
        hotplug: true,
        min_slot: 1,
        max_slot: 31,
        plugs_as: Flags::NONE,
        qemu: &["spapr-pci-host-bridge"],
    },
    ModelRule {
        name: "pcie-root",
        accepts: Flags::PCIE_DEVICE
            .with(Flags::PCIE_ROOT_PORT)
            .with(Flags::DMI_TO_PCI_BRIDGE)
            .with(Flags::PCIE_EXPANDER_BUS),
        autoassign: false,
        hotplug: false,
        min_slot: 1,
        max_slot: 31,
        plugs_as: Flags::NONE,
        qemu: &[],
    },
    ModelRule {
        name: "pci-bridge",
        accepts: PCI_ANY,
        autoassign: true,
        hotplug: true,
        min_slot: 1,
        max_slot: 31,
        plugs_as: Flags::PCI_BRIDGE,
        qemu: &["pci-bridge"],
    },
    ModelRule {
        name: "pci-expander-bus",
        accepts: PCI_ANY,
        autoassign: true,
        hotplug: true,
        min_slot: 0,
        max_slot: 31,
        plugs_as: Flags::PCI_EXPANDER_BUS,
        qemu: &["pxb"],
    },
    ModelRule {
        name: "pcie-expander-bus",
        accepts: Flags::PCIE_ROOT_PORT.with(Flags::DMI_TO_PCI_BRIDGE),
        autoassign: false,
        hotplug: false,
        min_slot: 0,
        max_slot: 31,
        plugs_as: Flags::PCIE_EXPANDER_BUS,
        qemu: &["pxb-pcie"],
    },
    ModelRule {
        name: "dmi-to-pci-bridge",
        accepts: PCI_ANY,
        autoassign: false,
        hotplug: false,
        min_slot: 0,
        max_slot: 31,
        plugs_as: Flags::DMI_TO_PCI_BRIDGE,
        qemu: &["i82801b11-bridge"],
    },
    ModelRule {
        name: "pcie-to-pci-bridge",
        accepts: PCI_ANY,
        autoassign: true,
        hotplug: true,
        min_slot: 1,
        max_slot: 31,
        plugs_as: Flags::PCIE_TO_PCI_BRIDGE,
        qemu: &["pcie-pci-bridge"],
    },
    ModelRule {
        name: "pcie-root-port",
        accepts: PORT_ACCEPTS,
        autoassign: true,
        hotplug: true,
        min_slot: 0,
        max_slot: 0,
        plugs_as: Flags::PCIE_ROOT_PORT.with(Flags::AGGREGATE_SLOT),
        qemu: &["pcie-root-port", "ioh3420"],
    },
    ModelRule {
        name: "pcie-switch-upstream-port",
        accepts: Flags::SWITCH_DOWNSTREAM_PORT,
        autoassign: false,
        hotplug: false,
        min_slot: 0,
        max_slot: 31,
        plugs_as: Flags::SWITCH_UPSTREAM_PORT,
        qemu: &["x3130-upstream"],
    },
    ModelRule {
        name: "pcie-switch-downstream-port",
        accepts: PORT_ACCEPTS,
        autoassign: true,
        hotplug: true,
        min_slot: 0,
        max_slot: 0,
        plugs_as: Flags::SWITCH_DOWNSTREAM_PORT,
        qemu: &["xio3130-downstream"],
    },
];

impl ModelRule {
    /// The bus flags of a bus of this model (`hotplug_off` from `<target hotplug='off'/>`).
    pub fn bus_flags(&self, hotplug_off: bool) -> Flags {
        let mut f = self.accepts;
        if self.autoassign {
            f = f.with(Flags::AUTOASSIGN);
        }
        if self.hotplug && !hotplug_off {
            f = f.with(Flags::HOTPLUGGABLE);
        }
        f
    }
}

/// Per-domain base flag sets (libvirt computes these once per domain).
#[derive(Debug, Clone, Copy)]
pub struct BaseFlags {
    /// Conventional PCI endpoint, auto-placed.
    pub pci: Flags,
    /// PCI Express endpoint, auto-placed (= `pci` when the domain has no pcie-root).
    pub pcie: Flags,
    /// Flags of a virtio device that is neither `-transitional` nor forced conventional.
    pub virtio: Flags,
}

impl BaseFlags {
    /// Base sets for a domain with or without pcie-root, on a QEMU with or without the
    /// virtio non-transitional devices.
    pub fn new(has_pcie_root: bool, virtio_non_transitional: bool) -> BaseFlags {
        let pci = Flags::PCI_DEVICE.with(Flags::AUTOASSIGN);
        let pcie = if has_pcie_root {
            Flags::PCIE_DEVICE.with(Flags::AUTOASSIGN)
        } else {
            pci
        };
        BaseFlags {
            pci,
            pcie,
            virtio: if virtio_non_transitional { pcie } else { pci },
        }
    }

    /// Flags of a virtio device with the given `model` (`virtio-transitional` → pci).
    pub fn virtio_model(&self, model: Option<&str>) -> Flags {
        if model == Some("virtio-transitional") {
            self.pci
        } else {
            self.virtio
        }
    }
}

/// Which step of libvirt's assignment order (qemuDomainAssignDevicePCISlots) a device
/// belongs to; lower steps are placed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// PCI controllers.
    PciControllers = 1,
    /// Filesystems.
    Filesystems,
    /// Network interfaces.
    Nets,
    /// Sound cards.
    Sounds,
    /// Other controllers.
    Controllers,
    /// virtio disks.
    Disks,
    /// Host devices.
    Hostdevs,
    /// Memory balloon.
    Memballoon,
    /// RNGs.
    Rngs,
    /// Watchdogs (i6300esb).
    Watchdogs,
    /// Videos.
    Videos,
    /// shmem.
    Shmems,
    /// virtio inputs.
    Inputs,
    /// PCI serial ports.
    Serials,
    /// IOMMUs.
    Iommus,
    /// vsock.
    Vsock,
    /// Memory devices.
    Memories,
    /// Crypto.
    Cryptos,
    /// pvpanic-pci.
    Panics,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_order() {
        for m in PciModel::ALL {
            assert_eq!(PciModel::parse(m.as_str()), Some(m));
            assert_eq!(m.rule().name, m.as_str());
        }
    }

    #[test]
    fn root_port_bus_takes_one_pcie_device() {
        let r = PciModel::PcieRootPort.rule();
        assert_eq!((r.min_slot, r.max_slot), (0, 0));
        assert!(r.bus_flags(false).any(Flags::PCIE_DEVICE));
        assert!(!r.bus_flags(false).any(Flags::PCI_DEVICE));
        assert!(!r.bus_flags(true).any(Flags::HOTPLUGGABLE));
    }

    #[test]
    fn pcie_root_refuses_auto_placed_endpoints() {
        let f = PciModel::PcieRoot.rule().bus_flags(false);
        assert!(!f.any(Flags::AUTOASSIGN));
        assert!(f.any(Flags::PCIE_ROOT_PORT));
    }

    #[test]
    fn requirement_names_follow_libvirt_order() {
        assert_eq!(
            Flags::PCI_DEVICE
                .with(Flags::PCIE_DEVICE)
                .requirement_name(),
            "standard PCI device"
        );
        assert_eq!(Flags::PCIE_ROOT_PORT.requirement_name(), "pcie-root-port");
    }
}
