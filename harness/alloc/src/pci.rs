//! The PCI address set: buses, slot/function reservations, the slot search and bus
//! growth (libvirt's virDomainPCIAddressSet and its helpers).

use crate::rules::{Flags, PciModel};

/// A PCI location: bus (= controller index), slot, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// Bus number (index of the PCI controller providing the bus).
    pub bus: u32,
    /// Slot.
    pub slot: u8,
    /// Function.
    pub function: u8,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.slot, self.function
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    functions: u8,
    aggregate: bool,
}

/// One bus of the set.
#[derive(Debug, Clone)]
pub struct Bus {
    /// Model of the controller providing the bus.
    pub model: PciModel,
    /// What the bus accepts.
    pub flags: Flags,
    /// Lowest usable slot.
    pub min_slot: u8,
    /// Highest usable slot.
    pub max_slot: u8,
    /// Isolation group of the devices on the bus (pSeries; 0 elsewhere): set by the
    /// first device reserved on an empty bus unless locked.
    pub isolation_group: u32,
    /// The group may not change (pSeries' default PHB keeps emulated devices' group 0).
    pub group_locked: bool,
    slots: [Slot; 32],
}

impl Bus {
    /// A bus of `model`.
    pub fn new(model: PciModel, hotplug_off: bool) -> Bus {
        let r = model.rule();
        Bus {
            model,
            flags: r.bus_flags(hotplug_off),
            min_slot: r.min_slot,
            max_slot: r.max_slot,
            isolation_group: 0,
            group_locked: false,
            slots: [Slot::default(); 32],
        }
    }

    /// Whether every usable slot has at least one function in use.
    pub fn fully_reserved(&self) -> bool {
        (self.min_slot..=self.max_slot).all(|s| self.slots[usize::from(s)].functions != 0)
    }

    /// Whether no function of the bus is in use.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.functions == 0)
    }
}

/// The address set of one pass.
#[derive(Debug, Clone)]
pub struct AddrSet {
    /// Buses by index.
    pub buses: Vec<Bus>,
    /// Pass 1: the set may grow and addresses are not kept.
    pub dry_run: bool,
    /// QEMU has pcie-pci-bridge.
    pub pcie_to_pci_bridge: bool,
    /// Several root buses allowed (pSeries PHBs).
    pub multiple_roots: bool,
    /// Isolation group of the device being placed (set by the caller; 0 but on pSeries).
    pub group: u32,
}

/// How an address is being reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The address was written by the user (lenient flag check, "XML error").
    Config,
    /// The address was chosen by the allocator.
    Auto,
}

/// The largest bus number a guest can have.
const MAX_BUS: u32 = 255;

impl AddrSet {
    /// Validates an address for a device with `flags` (virDomainPCIAddressValidate).
    pub fn validate(&self, loc: Loc, flags: Flags, from: From) -> Result<(), String> {
        if self.buses.is_empty() {
            return Err("No PCI buses available".into());
        }
        let Some(bus) = self.buses.get(loc.bus as usize) else {
            return Err(format!(
                "Invalid PCI address {loc}. Only PCI buses up to {} are available",
                self.buses.len() - 1
            ));
        };
        flags_compatible(loc, bus.flags, flags, from)?;
        if bus.min_slot > 0 && loc.slot < bus.min_slot {
            return Err(format!(
                "Invalid PCI address {loc}. slot must be >= {}",
                bus.min_slot
            ));
        }
        if loc.slot > bus.max_slot {
            return Err(format!(
                "Invalid PCI address {loc}. slot must be <= {}",
                bus.max_slot
            ));
        }
        if loc.function > 7 {
            return Err(format!("Invalid PCI address {loc}. function must be <= 7"));
        }
        Ok(())
    }

    /// Whether any function of the slot at `loc` is in use.
    pub fn slot_in_use(&self, loc: Loc) -> bool {
        self.buses
            .get(loc.bus as usize)
            .and_then(|b| b.slots.get(usize::from(loc.slot)))
            .is_some_and(|s| s.functions != 0)
    }

    /// Reserves one function (virDomainPCIAddressReserveAddrInternal). In a dry run an
    /// address on a bus beyond the set grows the set up to it; the device may then land
    /// one bus further (a conventional device on a pure PCIe topology gets a port and a
    /// bridge), so the address actually reserved is returned.
    pub fn reserve(&mut self, loc: Loc, flags: Flags, from: From) -> Result<Loc, String> {
        let mut loc = loc;
        if self.dry_run && loc.bus as usize >= self.buses.len() && !self.buses.is_empty() {
            loc.bus = self.grow(loc.bus, flags)?;
        }
        self.validate(loc, flags, from)?;
        let group = self.group;
        let Some(bus) = self.buses.get_mut(loc.bus as usize) else {
            return Err(format!("Invalid PCI address {loc}"));
        };
        let s = bus.slots[usize::from(loc.slot)];
        if s.functions & (1 << loc.function) != 0 {
            return Err(format!("Attempted double use of PCI Address {loc}"));
        }
        if bus.is_empty() && !bus.group_locked {
            // The first device decides the bus' isolation group.
            bus.isolation_group = group;
        } else if bus.isolation_group != group && from == From::Config {
            // A user address mixes groups: the bus is no longer isolated.
            bus.isolation_group = 0;
        }
        let slot = &mut bus.slots[usize::from(loc.slot)];
        if slot.functions == 0 && flags.any(Flags::AGGREGATE_SLOT) {
            slot.aggregate = true;
        }
        slot.functions |= 1 << loc.function;
        Ok(loc)
    }

    /// Finds the next free address for a device with `flags`, growing the set in a dry
    /// run (virDomainPCIAddressGetNextAddr).
    pub fn next_addr(&mut self, flags: Flags) -> Result<Loc, String> {
        if self.buses.is_empty() {
            return Err("No PCI buses available".into());
        }
        // First the buses of the device's isolation group, then an empty bus whose
        // group may still change (virDomainPCIAddressGetNextAddr).
        for (i, bus) in self.buses.iter().enumerate() {
            let Ok(bus_idx) = u32::try_from(i) else { break };
            if bus.isolation_group != self.group {
                continue;
            }
            if let Some(loc) = find_on_bus(bus, bus_idx, flags) {
                return Ok(loc);
            }
        }
        for (i, bus) in self.buses.iter().enumerate() {
            let Ok(bus_idx) = u32::try_from(i) else { break };
            if !bus.is_empty() || bus.group_locked {
                continue;
            }
            if let Some(loc) = find_on_bus(bus, bus_idx, flags) {
                return Ok(loc);
            }
        }
        if self.dry_run {
            let bus = self.grow(self.buses.len() as u32, flags)?;
            let min = self.buses[bus as usize].min_slot;
            return Ok(Loc {
                bus,
                slot: min,
                function: 0,
            });
        }
        Err("No more available PCI slots".into())
    }

    /// [`AddrSet::next_addr`] and [`AddrSet::reserve`] in one.
    pub fn reserve_next(&mut self, flags: Flags) -> Result<Loc, String> {
        let loc = self.next_addr(flags)?;
        self.reserve(loc, flags, From::Auto)
    }

    /// Adds buses up to `bus` for a device with `flags`; returns the bus the device goes
    /// on (virDomainPCIAddressSetGrow).
    fn grow(&mut self, bus: u32, flags: Flags) -> Result<u32, String> {
        let first_new = self.buses.len() as u32;
        let add = (bus + 1).saturating_sub(first_new).max(1);
        let mut new: Vec<Bus> = Vec::new();
        let model;
        if flags.any(Flags::PCI_DEVICE) {
            if self.multiple_roots {
                model = PciModel::PciRoot;
            } else if add == 1 && !self.buses.iter().any(|b| b.flags.any(Flags::PCI_BRIDGE)) {
                // A pure PCIe topology: a conventional device needs a bridge below a
                // PCIe slot first.
                if self.pcie_to_pci_bridge {
                    let mut port = Bus::new(PciModel::PcieRootPort, false);
                    // Only the bridge may use this port, so that the hotplug reserve
                    // cannot take it.
                    port.flags = Flags::PCIE_TO_PCI_BRIDGE;
                    new.push(port);
                    model = PciModel::PcieToPciBridge;
                } else {
                    new.push(Bus::new(PciModel::DmiToPciBridge, false));
                    model = PciModel::PciBridge;
                }
            } else {
                model = PciModel::PciBridge;
            }
        } else if flags.any(Flags::PCIE_DEVICE.with(Flags::SWITCH_UPSTREAM_PORT)) {
            model = PciModel::PcieRootPort;
        } else {
            return Err(cannot_grow(flags));
        }
        for _ in 0..add {
            new.push(Bus::new(model, false));
        }
        if first_new + new.len() as u32 - 1 > MAX_BUS {
            return Err(format!(
                "No more available PCI buses: a guest has at most {} buses",
                MAX_BUS + 1
            ));
        }
        let dev_bus = first_new + new.len() as u32 - 1;
        self.buses.extend(new);
        Ok(dev_bus)
    }
}

/// The message for a device whose bus libvirt cannot add.
fn cannot_grow(flags: Flags) -> String {
    let model = if flags.any(Flags::PCIE_ROOT_PORT) {
        Some("pcie-root-port")
    } else if flags.any(Flags::SWITCH_DOWNSTREAM_PORT) {
        Some("pcie-switch-downstream-port")
    } else if flags.any(Flags::DMI_TO_PCI_BRIDGE) {
        Some("dmi-to-pci-bridge")
    } else if flags.any(Flags::PCIE_TO_PCI_BRIDGE) {
        Some("pcie-to-pci-bridge")
    } else if flags.any(Flags::PCI_EXPANDER_BUS) {
        Some("pci-expander-bus")
    } else if flags.any(Flags::PCIE_EXPANDER_BUS) {
        Some("pcie-expander-bus")
    } else if flags.any(Flags::PCI_BRIDGE) {
        Some("pci-bridge")
    } else {
        None
    };
    match model {
        Some(m) => format!(
            "a PCI slot is needed to connect a PCI controller model='{m}', but none is available, and it cannot be automatically added"
        ),
        None => format!(
            "Cannot automatically add a new PCI bus for a device with connect flags {:02x}",
            flags.0
        ),
    }
}

/// Why a device does not fit a bus (formatted only when reported).
#[derive(Debug, Clone, Copy)]
enum Misfit {
    NotIntegrated,
    NoAutoassign,
    NoHotplug,
    Type(Flags),
}

impl Misfit {
    fn message(self, loc: Loc) -> String {
        match self {
            Misfit::NotIntegrated => {
                format!("The device at PCI address {loc} needs to be an integrated device (bus=0)")
            }
            Misfit::NoAutoassign => format!(
                "The device at PCI address {loc} was auto-assigned this address, but the PCI controller with index='{}' doesn't allow auto-assignment",
                loc.bus
            ),
            Misfit::NoHotplug => format!(
                "The device at PCI address {loc} requires hotplug capability, but the PCI controller with index='{}' doesn't support hotplug",
                loc.bus
            ),
            Misfit::Type(dev) => format!(
                "The device at PCI address {loc} cannot be plugged into the PCI controller with index='{}'. It requires a controller that accepts a {}.",
                loc.bus,
                dev.requirement_name()
            ),
        }
    }
}

/// virDomainPCIAddressFlagsCompatible.
fn flags_compatible(
    loc: Loc,
    bus_flags: Flags,
    dev_flags: Flags,
    from: From,
) -> Result<(), String> {
    fits(loc.bus, bus_flags, dev_flags, from).map_err(|m| m.message(loc))
}

fn fits(bus: u32, bus_flags: Flags, dev_flags: Flags, from: From) -> Result<(), Misfit> {
    let mut bus_flags = bus_flags;
    let mut dev_flags = dev_flags;
    if dev_flags.any(Flags::INTEGRATED) {
        if bus == 0 {
            // pcie-root refuses auto-placed endpoints and conventional PCI devices, but
            // integrated ones of both kinds belong there.
            bus_flags = bus_flags.with(Flags::AUTOASSIGN).with(Flags::PCI_DEVICE);
        } else {
            return Err(Misfit::NotIntegrated);
        }
    }
    match from {
        From::Config => {
            if bus_flags.any(Flags::TYPES_ENDPOINT) {
                bus_flags = bus_flags.with(Flags::TYPES_ENDPOINT);
            }
            if dev_flags.any(Flags::HOTPLUGGABLE) {
                bus_flags = bus_flags.with(Flags::HOTPLUGGABLE);
            }
            if dev_flags.any(Flags::PCI_BRIDGE) {
                dev_flags = dev_flags.with(Flags::PCI_DEVICE);
            }
        }
        From::Auto => {
            if dev_flags.any(Flags::AUTOASSIGN) && !bus_flags.any(Flags::AUTOASSIGN) {
                return Err(Misfit::NoAutoassign);
            }
        }
    }
    if dev_flags.any(Flags::HOTPLUGGABLE) && !bus_flags.any(Flags::HOTPLUGGABLE) {
        return Err(Misfit::NoHotplug);
    }
    if !dev_flags.and(bus_flags).any(Flags::TYPES_MASK) {
        return Err(Misfit::Type(dev_flags));
    }
    Ok(())
}

/// virDomainPCIAddressFindUnusedFunctionOnBus for function 0 requests.
fn find_on_bus(bus: &Bus, bus_idx: u32, flags: Flags) -> Option<Loc> {
    if fits(bus_idx, bus.flags, flags, From::Auto).is_err() {
        return None;
    }
    for slot in bus.min_slot..=bus.max_slot {
        let s = bus.slots[usize::from(slot)];
        if s.functions == 0 {
            return Some(Loc {
                bus: bus_idx,
                slot,
                function: 0,
            });
        }
        if flags.any(Flags::AGGREGATE_SLOT)
            && s.aggregate
            && let Some(f) = (0..8u8).find(|f| s.functions & (1 << f) == 0)
        {
            return Some(Loc {
                bus: bus_idx,
                slot,
                function: f,
            });
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(models: &[PciModel], dry: bool) -> AddrSet {
        AddrSet {
            buses: models.iter().map(|m| Bus::new(*m, false)).collect(),
            dry_run: dry,
            pcie_to_pci_bridge: true,
            multiple_roots: false,
            group: 0,
        }
    }

    const PCI: Flags = Flags::PCI_DEVICE.with(Flags::AUTOASSIGN);
    const PCIE: Flags = Flags::PCIE_DEVICE.with(Flags::AUTOASSIGN);
    const PORT: Flags = Flags::PCIE_ROOT_PORT.with(Flags::AGGREGATE_SLOT);

    #[test]
    fn test_isolation_groups_keep_host_devices_off_the_locked_bus() {
        // pSeries: pci.0 locked to group 0, one user PHB (pci.1), growth adds PHBs.
        let mut s = set(&[PciModel::PciRoot, PciModel::PciRoot], true);
        s.multiple_roots = true;
        s.buses[0].group_locked = true;
        let emulated = s.reserve_next(PCI).unwrap();
        assert_eq!((emulated.bus, emulated.slot), (0, 1));
        s.group = 11;
        let a = s.reserve_next(PCI).unwrap();
        assert_eq!(
            (a.bus, a.slot),
            (1, 1),
            "an empty unlocked bus takes the group"
        );
        s.group = 12;
        let b = s.reserve_next(PCI).unwrap();
        assert_eq!((b.bus, b.slot), (2, 1), "another group grows a new bus");
        s.group = 11;
        let c = s.reserve_next(PCI).unwrap();
        assert_eq!((c.bus, c.slot), (1, 2), "a group shares its bus");
        s.group = 0;
        let d = s.reserve_next(PCI).unwrap();
        assert_eq!(
            (d.bus, d.slot),
            (0, 2),
            "emulated devices stay on the default bus"
        );
    }

    #[test]
    fn test_integrated_conventional_device_goes_on_pcie_root() {
        let mut s = set(&[PciModel::PcieRoot], false);
        let l = s.reserve_next(PCI.with(Flags::INTEGRATED)).unwrap();
        assert_eq!((l.bus, l.slot), (0, 1));
    }

    #[test]
    fn test_pci_root_fills_from_slot_1() {
        let mut s = set(&[PciModel::PciRoot], false);
        let l = s.reserve_next(PCI).unwrap();
        assert_eq!((l.bus, l.slot, l.function), (0, 1, 0));
        let l = s.reserve_next(PCI).unwrap();
        assert_eq!(l.slot, 2);
    }

    #[test]
    fn test_root_ports_aggregate_eight_per_slot() {
        let mut s = set(&[PciModel::PcieRoot], false);
        let locs: Vec<Loc> = (0..9).map(|_| s.reserve_next(PORT).unwrap()).collect();
        assert_eq!(
            locs[0],
            Loc {
                bus: 0,
                slot: 1,
                function: 0
            }
        );
        assert_eq!(
            locs[7],
            Loc {
                bus: 0,
                slot: 1,
                function: 7
            }
        );
        assert_eq!(
            locs[8],
            Loc {
                bus: 0,
                slot: 2,
                function: 0
            }
        );
    }

    #[test]
    fn test_endpoint_never_auto_placed_on_pcie_root() {
        let mut s = set(&[PciModel::PcieRoot], false);
        assert_eq!(
            s.next_addr(PCIE).unwrap_err(),
            "No more available PCI slots"
        );
        let mut s = set(&[PciModel::PcieRoot], true);
        let l = s.reserve_next(PCIE).unwrap();
        assert_eq!((l.bus, l.slot), (1, 0));
        assert_eq!(s.buses[1].model, PciModel::PcieRootPort);
    }

    #[test]
    fn test_conventional_device_on_pcie_grows_port_and_bridge() {
        let mut s = set(&[PciModel::PcieRoot], true);
        let l = s.reserve_next(PCI).unwrap();
        assert_eq!((l.bus, l.slot), (2, 1));
        assert_eq!(s.buses[1].model, PciModel::PcieRootPort);
        assert_eq!(s.buses[1].flags, Flags::PCIE_TO_PCI_BRIDGE);
        assert_eq!(s.buses[2].model, PciModel::PcieToPciBridge);
        s.pcie_to_pci_bridge = false;
        let mut s2 = set(&[PciModel::PcieRoot], true);
        s2.pcie_to_pci_bridge = false;
        let l = s2.reserve_next(PCI).unwrap();
        assert_eq!((l.bus, l.slot), (2, 1));
        assert_eq!(s2.buses[1].model, PciModel::DmiToPciBridge);
        assert_eq!(s2.buses[2].model, PciModel::PciBridge);
    }

    #[test]
    fn test_explicit_address_checks() {
        let mut s = set(&[PciModel::PcieRoot, PciModel::PcieRootPort], false);
        let e = s
            .reserve(
                Loc {
                    bus: 1,
                    slot: 0x10,
                    function: 0,
                },
                PCIE,
                From::Config,
            )
            .unwrap_err();
        assert_eq!(e, "Invalid PCI address 0000:01:10.0. slot must be <= 0");
        // Lenient: a conventional device may be put on pcie.0 by hand.
        s.reserve(
            Loc {
                bus: 0,
                slot: 5,
                function: 0,
            },
            PCI,
            From::Config,
        )
        .unwrap();
        let e = s
            .reserve(
                Loc {
                    bus: 0,
                    slot: 5,
                    function: 0,
                },
                PCI,
                From::Config,
            )
            .unwrap_err();
        assert_eq!(e, "Attempted double use of PCI Address 0000:00:05.0");
        let e = s
            .reserve(
                Loc {
                    bus: 4,
                    slot: 0,
                    function: 0,
                },
                PCI,
                From::Config,
            )
            .unwrap_err();
        assert_eq!(
            e,
            "Invalid PCI address 0000:04:00.0. Only PCI buses up to 1 are available"
        );
        let e = s
            .reserve(
                Loc {
                    bus: 1,
                    slot: 0,
                    function: 0,
                },
                PORT,
                From::Config,
            )
            .unwrap_err();
        assert!(
            e.contains("It requires a controller that accepts a pcie-root-port."),
            "{e}"
        );
    }

    #[test]
    fn test_integrated_devices_only_on_bus_0() {
        let mut s = set(&[PciModel::PcieRoot, PciModel::PcieRootPort], false);
        let f = PCIE.with(Flags::INTEGRATED);
        let l = s.reserve_next(f).unwrap();
        assert_eq!((l.bus, l.slot), (0, 1));
        let e = s
            .reserve(
                Loc {
                    bus: 1,
                    slot: 0,
                    function: 0,
                },
                f,
                From::Config,
            )
            .unwrap_err();
        assert!(e.contains("needs to be an integrated device (bus=0)"));
    }
}
