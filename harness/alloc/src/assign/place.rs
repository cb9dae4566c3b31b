//! Steps 7 and 8: PCI placement. A dry run reserves the document's addresses, the chipset
//! slots and a slot for every device, growing the bus set; the controllers for the new buses
//! are added; then the real pass places everything with the final controller list.

use std::collections::BTreeMap;

use qconform_domxml::{Address, DeviceKind};

use super::{Work, addr_err, dev_err, loc_of};
use crate::classify;
use crate::machine::{self, Family};
use crate::names;
use crate::pci::{AddrSet, Bus, From, Loc};
use crate::rules::{Flags, PciModel, Step};
use crate::{Attach, Error, Origin};

impl Work<'_> {
    pub(super) fn pci_ctrls(&self) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for (i, d) in self.devs.iter().enumerate() {
            if let Some(c) = d.controller()
                && c.ctype == "pci"
            {
                m.insert(c.index.unwrap_or(0), i);
            }
        }
        m
    }

    fn default_bus_model(&self) -> PciModel {
        if self.family == Family::Pseries {
            PciModel::PciRoot
        } else if self.root == Some(PciModel::PcieRoot) {
            PciModel::PcieRootPort
        } else {
            PciModel::PciBridge
        }
    }

    fn build_set(&self, dry_run: bool) -> AddrSet {
        let ctrls = self.pci_ctrls();
        let max = ctrls.keys().next_back().copied().unwrap_or(0);
        let mut buses = Vec::new();
        for idx in 0..=max {
            let bus = match ctrls.get(&idx).map(|&i| &self.devs[i]) {
                Some(d) => {
                    let model = d.pci_model().unwrap_or(PciModel::PciBridge);
                    let off = d.controller().and_then(|c| c.target.hotplug) == Some(false);
                    Bus::new(model, off)
                }
                None if idx == 0 => Bus::new(PciModel::PciRoot, false),
                None => Bus::new(self.default_bus_model(), false),
            };
            buses.push(bus);
        }
        // qemuDomainSetupIsolationGroups: pSeries' default PHB keeps group 0, so that
        // host devices never share it with emulated ones.
        if self.family == Family::Pseries
            && let Some(b) = buses.first_mut()
        {
            b.group_locked = true;
        }
        AddrSet {
            buses,
            dry_run,
            pcie_to_pci_bridge: self.features.pcie_pci_bridge,
            multiple_roots: self.family == Family::Pseries,
            group: 0,
        }
    }

    /// Explicit PCI addresses from the document.
    fn initial_locs(&self) -> Vec<Option<Loc>> {
        self.devs
            .iter()
            .map(|d| match (&d.device.address, d.attach) {
                (Address::Pci(p), Attach::Pci) if !p.is_empty() => Some(loc_of(p)),
                _ => None,
            })
            .collect()
    }

    /// Devices wanting a PCI slot, in libvirt's assignment order.
    fn assignment_order(&self) -> Vec<usize> {
        let list_pos = self.list_positions();
        let mut v: Vec<(Step, u8, usize, usize)> = Vec::new();
        for (i, d) in self.devs.iter().enumerate() {
            if d.attach != Attach::Pci {
                continue;
            }
            let Some(step) = classify::step(&d.device.kind) else {
                continue;
            };
            let sub = match &d.device.kind {
                DeviceKind::Hostdev(_) => 1,
                _ => 0,
            };
            v.push((step, sub, list_pos.get(&i).copied().unwrap_or(i), i));
        }
        v.sort();
        v.into_iter().map(|t| t.3).collect()
    }

    /// Reserves the addresses given in the document. In the dry run a reservation may
    /// grow the bus set and move a conventional device one bus down (behind the bridge
    /// added for it), which libvirt keeps: the moves are returned.
    pub(super) fn collect(
        &self,
        set: &mut AddrSet,
        locs: &mut [Option<Loc>],
    ) -> Result<Vec<(usize, Loc)>, Error> {
        let mut moved = Vec::new();
        let groups = self.isolation_groups();
        for i in self.iteration_order() {
            let Some(loc) = locs[i] else { continue };
            let d = &self.devs[i];
            if self.piix3_builtin(d, loc) {
                continue;
            }
            set.group = groups[i];
            let got = set.reserve(loc, self.connect_flags[i], From::Config);
            set.group = 0;
            let got = got.map_err(|m| addr_err(d, m))?;
            if got != loc {
                locs[i] = Some(got);
                moved.push((i, got));
            }
        }
        for (el, pos, loc) in &self.unmodelled {
            set.reserve(*loc, Flags::PCI_DEVICE, From::Config)
                .map_err(|m| Error::new(format!("<{el}>: {m}")).element(el).at(*pos))?;
        }
        Ok(moved)
    }

    fn assign_slots(&self, set: &mut AddrSet, locs: &mut [Option<Loc>]) -> Result<(), Error> {
        let groups = self.isolation_groups();
        for i in self.assignment_order() {
            if locs[i].is_some() {
                continue;
            }
            let d = &self.devs[i];
            let flags = self.connect_flags[i];
            if let Some((func, idx)) = classify::usb_companion(&d.device.kind) {
                let mate = self.devs.iter().enumerate().find_map(|(j, o)| {
                    let (_, oidx) = classify::usb_companion(&o.device.kind)?;
                    (j != i && oidx == idx).then_some(locs[j]).flatten()
                });
                // qemuDomainAssignDevicePCISlots: a companion joins the slot of the
                // first USB2 controller of its index that has an address (reserved as
                // an address from the document), else takes a free slot.
                let (base, from) = match mate {
                    Some(m) => (m, From::Config),
                    None => (set.next_addr(flags).map_err(|m| dev_err(d, m))?, From::Auto),
                };
                let loc = Loc {
                    function: func,
                    ..base
                };
                set.reserve(loc, flags, from).map_err(|m| dev_err(d, m))?;
                locs[i] = Some(loc);
                continue;
            }
            set.group = groups[i];
            let loc = set.reserve_next(flags);
            set.group = 0;
            locs[i] = Some(loc.map_err(|m| dev_err(d, m))?);
        }
        Ok(())
    }

    /// Each device's isolation group (qemuDomainSetupIsolationGroups): 0 but for PCI
    /// host devices on pSeries whose IOMMU group the document describes.
    fn isolation_groups(&self) -> Vec<u32> {
        self.devs
            .iter()
            .map(|d| {
                if self.family == Family::Pseries {
                    classify::isolation_group(&d.device.kind, &self.host_facts).unwrap_or(0)
                } else {
                    0
                }
            })
            .collect()
    }

    pub(super) fn assign_pci(&mut self) -> Result<(), Error> {
        let Some(root) = self.root else {
            if let Some(d) = self.devs.iter().find(|d| d.attach == Attach::Pci) {
                let why = if self.family == Family::S390 {
                    "this QEMU binary has no zpci device, so the machine has no PCI bus".to_string()
                } else {
                    format!(
                        "machine '{}' has no PCI bus on this QEMU binary",
                        self.machine
                    )
                };
                return Err(dev_err(
                    d,
                    format!(
                        "No PCI buses available: <{}> needs a PCI slot, but {why}",
                        d.device.element()
                    ),
                ));
            }
            return Ok(());
        };
        let max_idx = self.pci_ctrls().keys().next_back().copied().unwrap_or(0);

        // Pass 1: dry run, to find out which controllers to add.
        let mut locs = self.initial_locs();
        let mut set = self.build_set(true);
        let moved = self.collect(&mut set, &mut locs)?;
        for (i, loc) in moved {
            if let Address::Pci(p) = &mut self.devs[i].device.address {
                p.bus = loc.bus;
            }
        }
        self.chipset(&mut set, &mut locs)?;
        if root == PciModel::PciRoot && !set.buses.iter().all(Bus::fully_reserved) {
            // One spare conventional slot so that a pci-bridge can always be added later;
            // when none is free there is simply no spare.
            let _ = set.reserve_next(Flags::PCI_DEVICE.with(Flags::AUTOASSIGN));
        }
        self.assign_slots(&mut set, &mut locs)?;
        let initial_buses = (max_idx + 1) as usize;
        if root == PciModel::PcieRoot && max_idx == 0 && set.buses.len() > initial_buses {
            // One empty pcie-root-port for hotplug.
            set.reserve_next(Flags::PCIE_DEVICE.with(Flags::AUTOASSIGN))
                .map_err(Error::new)?;
        }
        let have = self.pci_ctrls();
        let mut idx = 0usize;
        while idx + 1 < set.buses.len() {
            idx += 1;
            let bus = idx as u32;
            if !have.contains_key(&bus) {
                let model = set.buses[idx].model;
                let mut dev = machine::controller("pci", bus, Some(model.as_str()));
                if let DeviceKind::Controller(c) = &mut dev.kind {
                    c.index = Some(bus);
                }
                let i = self.push(dev, Origin::AutoAdded);
                self.devs[i].alias = names::controller_alias("pci", bus, false);
                let fl = model.rule().plugs_as;
                self.connect_flags.push(fl);
                self.locs.push(None);
                locs.push(None);
                if model.is_root() {
                    // A pSeries PHB: a root of its own, it takes no slot.
                    continue;
                }
                self.devs[i].attach = Attach::Pci;
                let loc = set
                    .reserve_next(fl)
                    .map_err(|m| dev_err(&self.devs[i], m))?;
                locs[i] = Some(loc);
            }
        }

        // Pass 2: the real assignment with the final controller list.
        let mut locs = self.initial_locs();
        let mut set = self.build_set(false);
        self.collect(&mut set, &mut locs)?;
        self.chipset(&mut set, &mut locs)?;
        self.assign_slots(&mut set, &mut locs)?;
        self.locs = locs;
        self.check_sriov_vfs()
    }

    /// A device whose QEMU type has SR-IOV virtual functions in this binary (`igb` on
    /// QEMU 10.0 and later) takes, when QEMU realizes it, the functions at the offsets the
    /// snapshot recorded (for `igb`: devfn + 0x80, stride 2, 8 functions, hw/net/igb.c and
    /// hw/pci/pcie_sriov.c). libvirt does not know them, so QEMU refuses what lands there,
    /// and refuses the device itself when the last of them is past function 0x1f.7.
    fn check_sriov_vfs(&self) -> Result<(), Error> {
        // Virtual functions already created: (bus, devfn) → the physical function's index.
        let mut taken: BTreeMap<(u32, u16), usize> = BTreeMap::new();
        for (i, d) in self.devs.iter().enumerate() {
            let ty = match &d.device.kind {
                DeviceKind::Interface(n) if n.itype != "hostdev" => n.model.as_deref(),
                _ => None,
            };
            let (Some(ty @ "igb"), Some(pf)) = (ty, self.locs[i]) else {
                continue;
            };
            let offsets = self.caps.sriov_vf_offsets(ty);
            let Some(&last) = offsets.last() else {
                continue;
            };
            let devfn = u16::from(pf.slot) * 8 + u16::from(pf.function);
            if devfn + u16::from(last) > 0xff {
                return Err(addr_err(
                    d,
                    format!(
                        "VF addr overflows: QEMU creates the SR-IOV virtual functions of {ty} at \
                         function offsets up to 0x{last:02x} from its address, and slot 0x{:02x} \
                         function {} puts the last of them past slot 0x1f function 7",
                        pf.slot, pf.function
                    ),
                ));
            }
            for off in offsets {
                let vf = devfn + u16::from(off);
                let (slot, function) = ((vf / 8) as u8, (vf % 8) as u8);
                if let Some(&j) = taken.get(&(pf.bus, vf)) {
                    return Err(dev_err(
                        d,
                        format!(
                            "PCI: slot {slot} function {function} not available for igbvf, in \
                             use by igbvf: the SR-IOV virtual functions of {ty} '{}' and of \
                             '{}' (created when QEMU realizes them) overlap on bus {}",
                            d.alias, self.devs[j].alias, pf.bus
                        ),
                    ));
                }
                taken.insert((pf.bus, vf), i);
                let clash = self.devs.iter().enumerate().find(|&(j, _)| {
                    j != i
                        && self.locs[j].is_some_and(|l| {
                            l.bus == pf.bus && l.slot == slot && l.function == function
                        })
                });
                if let Some((_, o)) = clash {
                    return Err(addr_err(
                        o,
                        format!(
                            "PCI: slot {slot} function {function} not available: it is an SR-IOV \
                             virtual function of {ty} '{}' (slot 0x{:02x} function {}), which \
                             QEMU creates when it realizes that device",
                            d.alias, pf.slot, pf.function
                        ),
                    ));
                }
                // A function above 0 makes its slot multifunction: a device QEMU builds as
                // single-function at function 0 of that slot is refused ("PCI: 13.0
                // indicates single function, but 13.1 is already populated", measured on
                // QEMU 10.0 riscv64 virt; found by qconform explore).
                let single = (function != 0)
                    .then(|| {
                        self.devs.iter().enumerate().find(|&(j, _)| {
                            j != i
                                && self.locs[j].is_some_and(|l| {
                                    l.bus == pf.bus && l.slot == slot && l.function == 0
                                })
                        })
                    })
                    .flatten();
                if let Some((_, o)) = single {
                    return Err(addr_err(
                        o,
                        format!(
                            "PCI: {slot:02x}.0 indicates single function, but {slot:02x}.{function} \
                             is already populated: an SR-IOV virtual function of {ty} '{}' (slot \
                             0x{:02x} function {}), which QEMU creates when it realizes that device",
                            d.alias, pf.slot, pf.function
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
