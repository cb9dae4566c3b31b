//! The PCI functions a guest will enumerate (`lspci -n` without revisions).
//!
//! Bus numbers are the firmware's: bus 0 is scanned in slot/function order and each bridge
//! gets the next bus number when it is reached, its secondary bus being scanned right away
//! (depth first, as SeaBIOS and Linux do). Identities come from the snapshot's recorded
//! PCI IDs, at the placement that decides them (behind a PCIe root/downstream port or
//! not).
//!
//! # Which functions a guest sees, per platform
//!
//! How the guest finds its PCI functions differs per platform, and so does what it misses.
//! [`visibility`] picks one of three rules from the machine family; each rule below names
//! its sources. "Observed" means booting the Debian kernels of the guest tier
//! (`runners/scripts/install-guest.sh`: bookworm's 6.1 kernels for amd64, arm64, s390x and
//! ppc64el, trixie's 6.12 for riscv64) under QEMU 7.2, 10.0 and 11.1 (TCG) and reading
//! `/sys/bus/pci/devices`.
//!
//! - [`Visibility::ScanFromFunctionZero`], x86 `pc`/`q35`, arm and riscv `virt` (and any
//!   machine not modelled otherwise). The guest probes PCI configuration space slot by slot,
//!   and a slot whose function 0 does not answer is skipped whole: Linux's
//!   `pci_scan_slot()` (drivers/pci/probe.c) stops at a missing function 0 unless
//!   `hypervisor_isolated_pci_functions()` says otherwise, which only Jailhouse does on x86.
//!   x86 reaches that code through the ACPI host bridge, arm and riscv `virt` through the
//!   generic ECAM host driver (drivers/pci/controller/pci-host-common.c) bound to QEMU's
//!   gpex. So a function ≠ 0 whose slot has no function 0 is not seen, and the plan warns.
//!   Observed on q35 (e1000 alone at 00:03.1, virtio-net alone at 00:04.2: neither listed),
//!   on riscv64 virt (same devices: neither listed) and on aarch64 virt.
//! - [`Visibility::DeviceTree`], ppc64 `pseries`. The guest does not probe slots: it builds
//!   one PCI device per device-tree node below each PHB (arch/powerpc/kernel/pci_of_scan.c,
//!   `of_scan_bus()`), and QEMU writes one node for every device plugged into the PHB's bus
//!   and the buses behind its bridges (hw/ppc/spapr_pci.c, `spapr_dt_pci_bus()`), whatever
//!   its function number. So a lone function ≠ 0 is seen where it is. Each PHB is a PCI
//!   domain of its own, numbered by the PHB's index: Linux takes the domain from the low
//!   bits of the second cell of the PHB node's `reg` (arch/powerpc/kernel/pci-common.c,
//!   `get_phb_number()`), which QEMU sets to the PHB's BUID, a fixed base plus the `index`
//!   of `spapr-pci-host-bridge` (hw/ppc/spapr_pci.c), and libvirt's `<target index>` is that
//!   index. Observed: e1000 alone at 00:03.1 of the default PHB listed as 0000:00:03.1; a
//!   virtio-net alone at 01.2 of the PHB with index 1 listed as 0001:00:01.2; a pci-bridge
//!   on that PHB numbered bus 1 of domain 0001. The PHB itself is not a function.
//! - [`Visibility::IsolatedFunctions`], s390x. Every zPCI function is a PCI domain of its
//!   own numbered by its uid, at 00:00.0 whatever its slot on `pci.0` (arch/s390/pci/
//!   pci_bus.c; QEMU's hw/s390x/s390-pci-bus.c presents each function alone), and bridges
//!   are not functions the guest is told about. Observed on 7.2, 10.0 and 11.1: only the
//!   endpoints are listed, as `<uid>:00:00.0`. (libvirt refuses a function ≠ 0 on s390x.)

use std::collections::{BTreeMap, BTreeSet};

use qconform_alloc::{Allocation, Attach, Family, PciModel};
use qconform_caps::{GuestPciFunction, PciId, Placement, Snapshot};
use qconform_domxml::DeviceKind;

/// The guest view and what could not be predicted.
#[derive(Debug, Default)]
pub struct Guest {
    /// The functions, sorted by domain, bus, slot and function.
    pub functions: Vec<GuestPciFunction>,
    /// Unknown identities, invisible functions.
    pub warnings: Vec<String>,
    /// An expander bus whose busNr leaves too few bus numbers for the buses behind it (or
    /// behind the bus below it): the firmware cannot number them, so the guest cannot see
    /// what the plan places there. `(device index, message)`.
    pub unnumbered: Option<(usize, String)>,
}

/// How a platform's guest finds its PCI functions (see the module documentation for the
/// rules and their sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Slot by slot from function 0: a slot without function 0 is not seen at all.
    ScanFromFunctionZero,
    /// One device per device-tree node: every function is seen; each PHB is a domain
    /// numbered by its index.
    DeviceTree,
    /// Every function alone in a domain named by its zPCI uid; no bridges.
    IsolatedFunctions,
}

/// The visibility rule of a machine family.
pub fn visibility(family: Family) -> Visibility {
    match family {
        Family::Pseries => Visibility::DeviceTree,
        Family::S390 => Visibility::IsolatedFunctions,
        Family::Pc | Family::Q35 | Family::ArmVirt | Family::RiscvVirt | Family::Other => {
            Visibility::ScanFromFunctionZero
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Builtin(PciId),
    Device(usize),
}

type Key = (u32, u32, u32, u32);

struct Walk<'a> {
    a: &'a Allocation,
    caps: &'a Snapshot,
    drivers: &'a [Option<String>],
    children: BTreeMap<u32, Vec<(u8, u8, Item)>>,
    out: BTreeMap<Key, GuestPciFunction>,
    warnings: Vec<String>,
    visibility: Visibility,
    /// Slots (libvirt bus index, slot) already reported as having no function 0.
    unseen_slots: BTreeSet<(u32, u8)>,
    unnumbered: Option<(usize, String)>,
}

/// Computes the guest view of an allocation; `drivers` are the QEMU types emitted per device.
pub fn guest_view(a: &Allocation, caps: &Snapshot, drivers: &[Option<String>]) -> Guest {
    let mut w = Walk {
        a,
        caps,
        drivers,
        children: BTreeMap::new(),
        out: BTreeMap::new(),
        warnings: Vec::new(),
        visibility: visibility(a.family),
        unseen_slots: BTreeSet::new(),
        unnumbered: None,
    };
    if a.root.is_none() {
        return Guest::default();
    }
    match w.visibility {
        Visibility::IsolatedFunctions => w.s390(),
        Visibility::ScanFromFunctionZero | Visibility::DeviceTree => w.tree(),
    }
    Guest {
        functions: w.out.into_values().collect(),
        warnings: w.warnings,
        unnumbered: w.unnumbered,
    }
}

fn line(k: Key, id: Option<PciId>) -> GuestPciFunction {
    let (domain, bus, slot, function) = k;
    GuestPciFunction {
        domain,
        bus,
        slot,
        function,
        class: id.map(|id| id.class),
        vendor: id.map(|id| id.vendor),
        device: id.map(|id| id.device),
    }
}

impl Walk<'_> {
    fn identity(&mut self, i: usize, placement: Placement) -> Option<PciId> {
        let d = &self.a.devices[i];
        let ty = self.drivers.get(i).cloned().flatten()?;
        if ty == "vfio-pci" {
            let host = match &d.device.kind {
                DeviceKind::Hostdev(h) => h.host_pci.map(|x| x.to_string()),
                DeviceKind::Interface(n) => n.host_pci.map(|x| x.to_string()),
                _ => None,
            }
            .unwrap_or_else(|| "a mediated device".into());
            self.warnings.push(format!(
                "{}: the guest sees the IDs of host device {host}, which cannot be known offline",
                d.alias
            ));
            return None;
        }
        let id = self.caps.pci_id(&ty, placement);
        if id.is_none() {
            self.warnings.push(format!(
                "{}: QEMU {} has no recorded PCI identity for '{ty}'",
                d.alias,
                self.caps.id()
            ));
        }
        id
    }

    fn s390(&mut self) {
        for i in 0..self.a.devices.len() {
            let d = &self.a.devices[i];
            if d.attach != Attach::Pci || self.drivers.get(i).cloned().flatten().is_none() {
                continue;
            }
            // A bridge is not a zPCI function the guest is told about: measured on 7.2
            // and 11.1, the guest lists only the endpoints, each in its own domain.
            if d.pci_model().is_some() {
                continue;
            }
            let Some(uid) = d.pci().and_then(|p| p.zpci).and_then(|z| z.uid) else {
                continue;
            };
            let id = self.identity(i, Placement::Root);
            let k = (uid, 0, 0, 0);
            self.out.insert(k, line(k, id));
        }
    }

    fn tree(&mut self) {
        if let Some(mc) = self.caps.index.machine_caps.get(&self.a.machine) {
            for f in mc.builtin_pci.iter().filter(|f| f.bus == 0) {
                self.children
                    .entry(0)
                    .or_default()
                    .push((f.slot, f.function, Item::Builtin(f.id)));
            }
        } else {
            self.warnings.push(format!(
                "machine '{}' was not probed in this snapshot: its built-in PCI functions are missing from the guest view",
                self.a.machine
            ));
        }
        for (i, d) in self.a.devices.iter().enumerate() {
            if d.attach != Attach::Pci || self.drivers.get(i).cloned().flatten().is_none() {
                continue;
            }
            if let Some(p) = d.pci() {
                self.children.entry(p.bus).or_default().push((
                    p.slot as u8,
                    p.function as u8,
                    Item::Device(i),
                ));
            }
        }
        for v in self.children.values_mut() {
            v.sort_by_key(|(s, f, _)| (*s, *f));
        }
        // Each pSeries PHB is a PCI domain of its own, numbered by the PHB's index (its
        // libvirt target index; the implicit PHB has index 0). Roots are (domain, bus index).
        let mut roots: Vec<(u32, u32)> = vec![(0, 0)];
        if self.visibility == Visibility::DeviceTree {
            let mut phbs: Vec<(u32, u32)> = self
                .a
                .devices
                .iter()
                .filter(|d| d.pci_model() == Some(PciModel::PciRoot))
                .filter_map(|d| d.controller())
                .filter_map(|c| {
                    let idx = c.index.filter(|i| *i > 0)?;
                    Some((c.target.index.unwrap_or(idx), idx))
                })
                .collect();
            phbs.sort();
            roots.extend(phbs);
        }
        let mut expanders: Vec<(u32, u32, PciModel)> = Vec::new();
        // The last bus number the root segment of domain 0 uses.
        let mut root_last = 0u32;
        for (domain, idx) in roots {
            let mut next = 0u32;
            self.walk(domain, idx, 0, &mut next, None, &mut expanders);
            if domain == 0 {
                root_last = next;
            }
        }
        expanders.sort();
        // Each expander's buses are numbered from its busNr up; they must end below the
        // next expander's busNr (or at 0xff), and the root segment below the lowest busNr,
        // or the firmware has no number for a bus (libvirt picks busNr as the lowest one
        // taken minus 2, qemuDomainAddressFindNewBusNr in src/qemu/qemu_domain_address.c,
        // and leaves a larger need to the user).
        let starts: Vec<u32> = expanders.iter().map(|e| e.0).collect();
        if let Some(&lowest) = starts.first()
            && root_last >= lowest
            && let Some(i) = self.expander_device(expanders[0].1)
        {
            self.unnumbered = Some((
                i,
                format!(
                    "the buses behind the root bus need numbers up to {root_last}, but {} starts at busNr {lowest}: the guest firmware cannot number them",
                    self.a.devices[i].alias
                ),
            ));
        }
        for (n, (bus_nr, idx, model)) in expanders.into_iter().enumerate() {
            // An expander's root bus has the number given by busNr. Behind a conventional
            // one (pxb) QEMU puts an internal pci-bridge at slot 0 and the devices on its
            // secondary bus (measured on 11.1: bridge fe:00.0, device ff:00.0).
            let mut next = bus_nr;
            let mut more = Vec::new();
            if model == PciModel::PciExpanderBus {
                let k = (0, bus_nr, 0, 0);
                let id = self.caps.pci_id("pci-bridge", Placement::Root);
                self.out.insert(k, line(k, id));
                next += 1;
                self.walk(
                    0,
                    idx,
                    bus_nr + 1,
                    &mut next,
                    Some(PciModel::PciBridge),
                    &mut more,
                );
            } else {
                self.walk(0, idx, bus_nr, &mut next, None, &mut more);
            }
            let limit = starts.get(n + 1).map_or(0xff, |s| s.saturating_sub(1));
            if next > limit
                && self.unnumbered.is_none()
                && let Some(i) = self.expander_device(idx)
            {
                self.unnumbered = Some((
                    i,
                    format!(
                        "{} has busNr {bus_nr} and {} buses behind it, so they would need bus numbers up to {next}, past {limit}: the guest firmware cannot number them (set a lower busNr)",
                        self.a.devices[i].alias,
                        next - bus_nr
                    ),
                ));
            }
        }
    }

    /// Warns once per slot that its functions are not seen (the function-0 rule).
    fn warn_no_function_zero(&mut self, bus_idx: u32, slot: u8, items: &[(u8, u8, Item)]) {
        if !self.unseen_slots.insert((bus_idx, slot)) {
            return;
        }
        let aliases: Vec<&str> = items
            .iter()
            .filter(|(s, _, _)| *s == slot)
            .filter_map(|(_, _, item)| match item {
                Item::Device(i) => Some(self.a.devices[*i].alias.as_str()),
                Item::Builtin(_) => None,
            })
            .collect();
        self.warnings.push(format!(
            "slot {bus_idx:02x}:{slot:02x} has no function 0, so a guest will not see {}",
            aliases.join(", ")
        ));
    }

    /// The allocation's device that is the expander bus with controller index `idx`.
    fn expander_device(&self, idx: u32) -> Option<usize> {
        self.a.devices.iter().position(|d| {
            matches!(
                d.pci_model(),
                Some(PciModel::PciExpanderBus | PciModel::PcieExpanderBus)
            ) && d.controller().and_then(|c| c.index) == Some(idx)
        })
    }

    fn walk(
        &mut self,
        domain: u32,
        bus_idx: u32,
        guest_bus: u32,
        next: &mut u32,
        parent: Option<PciModel>,
        expanders: &mut Vec<(u32, u32, PciModel)>,
    ) {
        // Every bus is walked once (bridges plug into lower-numbered buses).
        let items = self.children.remove(&bus_idx).unwrap_or_default();
        let behind_port = parent.is_some_and(PciModel::is_pcie_port);
        let placement = if behind_port {
            Placement::PciePort
        } else {
            Placement::Root
        };
        for (slot, func, item) in items.iter().copied() {
            if behind_port && slot != 0 {
                if let Item::Device(i) = item {
                    let alias = self.a.devices[i].alias.clone();
                    self.warnings.push(format!(
                        "{alias}: slot {slot} behind a PCIe port is not enumerated by the guest"
                    ));
                }
                continue;
            }
            if func != 0
                && self.visibility == Visibility::ScanFromFunctionZero
                && !items.iter().any(|(s, f, _)| *s == slot && *f == 0)
            {
                self.warn_no_function_zero(bus_idx, slot, &items);
                continue;
            }
            let k = (domain, guest_bus, u32::from(slot), u32::from(func));
            match item {
                Item::Builtin(id) => {
                    self.out.insert(k, line(k, Some(id)));
                }
                Item::Device(i) => {
                    let id = self.identity(i, placement);
                    self.out.insert(k, line(k, id));
                    let d = &self.a.devices[i];
                    let Some(model) = d.pci_model() else { continue };
                    let idx = d.controller().and_then(|c| c.index).unwrap_or(0);
                    match model {
                        PciModel::PciBridge
                        | PciModel::PcieRootPort
                        | PciModel::SwitchUpstreamPort
                        | PciModel::SwitchDownstreamPort
                        | PciModel::DmiToPciBridge
                        | PciModel::PcieToPciBridge => {
                            *next += 1;
                            let sec = *next;
                            self.walk(domain, idx, sec, next, Some(model), expanders);
                        }
                        PciModel::PciExpanderBus | PciModel::PcieExpanderBus => {
                            let bus_nr =
                                d.controller().and_then(|c| c.target.bus_nr).unwrap_or(254);
                            expanders.push((bus_nr, idx, model));
                        }
                        PciModel::PciRoot | PciModel::PcieRoot => {}
                    }
                }
            }
        }
    }
}
