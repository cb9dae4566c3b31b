//! Step 11: final PCI addresses, multifunction bits, controller defaults (QEMU device name,
//! chassis, port, busNr, PHB target index), and the allocation handed back.

use std::collections::{BTreeMap, BTreeSet};

use qconform_domxml::{Address, Controller, DeviceKind, PciAddress};

use super::{Work, dev_err};
use crate::machine::Family;
use crate::rules::PciModel;
use crate::{Allocation, Attach, Error, Origin};

impl Work<'_> {
    pub(super) fn finish_pci(&mut self) -> Result<(), Error> {
        // Write the final addresses.
        for i in 0..self.devs.len() {
            if self.devs[i].attach != Attach::Pci {
                continue;
            }
            let Some(loc) = self.locs.get(i).copied().flatten() else {
                // A root controller or a PHB: no address of its own.
                if self.devs[i].pci_model().is_some_and(PciModel::is_root) {
                    self.devs[i].attach = Attach::Other;
                    continue;
                }
                return Err(dev_err(&self.devs[i], "was not given a PCI address"));
            };
            let (multi, zpci) = match &self.devs[i].device.address {
                Address::Pci(p) => (p.multifunction, p.zpci),
                _ => (None, None),
            };
            self.devs[i].device.address = Address::Pci(PciAddress {
                domain: 0,
                bus: loc.bus,
                slot: u32::from(loc.slot),
                function: u32::from(loc.function),
                multifunction: multi,
                zpci,
            });
        }
        // Multifunction: function 0 of a slot with other functions in use gets it.
        let mut by_slot: BTreeMap<(u32, u8), Vec<(u8, usize)>> = BTreeMap::new();
        for (i, d) in self.devs.iter().enumerate() {
            if let Some(p) = d.pci() {
                by_slot
                    .entry((p.bus, p.slot as u8))
                    .or_default()
                    .push((p.function as u8, i));
            }
        }
        let builtin = self.builtin();
        for ((bus, slot), funcs) in &by_slot {
            if *bus == 0 && builtin.iter().any(|b| b.slot == *slot) {
                // A chipset slot (PIIX3 at 00:01, ICH9 at 00:1f): QEMU's own
                // multifunction device.
                continue;
            }
            let others: Vec<u8> = funcs
                .iter()
                .filter(|(f, _)| *f != 0)
                .map(|(f, _)| *f)
                .collect();
            if others.is_empty() {
                continue;
            }
            if self.family == Family::S390 {
                let (_, i) = funcs
                    .iter()
                    .find(|(f, _)| *f != 0)
                    .copied()
                    .unwrap_or(funcs[0]);
                return Err(dev_err(
                    &self.devs[i],
                    "multifunction not supported in s390: a zPCI device must be function 0",
                ));
            }
            // No function 0: whether a guest sees the other functions depends on the
            // platform, so the guest view (qconform-plan) decides and warns.
            let Some(&(_, i0)) = funcs.iter().find(|(f, _)| *f == 0) else {
                continue;
            };
            if let Address::Pci(p) = &mut self.devs[i0].device.address {
                if p.multifunction == Some(false) {
                    let f = others[0];
                    return Err(dev_err(
                        &self.devs[i0],
                        format!(
                            "has multifunction='off' but function {f} of slot {bus:02x}:{slot:02x} is in use; QEMU refuses this (PCI: {slot:x}.0 indicates single function, but {slot:x}.{f:x} is already populated)"
                        ),
                    )
                    .attr("multifunction", "off"));
                }
                p.multifunction = Some(true);
            }
        }
        self.controller_defaults()?;
        Ok(())
    }

    fn controller_defaults(&mut self) -> Result<(), Error> {
        let pseries = self.family == Family::Pseries;
        let root_port_device = self.features.root_port_device;
        // pSeries PHB target indexes in use.
        let mut phb_used: BTreeSet<u32> = BTreeSet::new();
        let mut lowest_bus_nr: u32 = 256;
        for d in &self.devs {
            if let Some(c) = d.controller()
                && c.ctype == "pci"
            {
                if let Some(t) = c.target.index {
                    phb_used.insert(t);
                }
                if let Some(b) = c.target.bus_nr {
                    lowest_bus_nr = lowest_bus_nr.min(b);
                }
            }
        }
        let mut chassis_seen: BTreeMap<u32, String> = BTreeMap::new();
        let order: Vec<usize> = self.pci_ctrls().into_values().collect();
        for i in order {
            let model = match self.devs[i].pci_model() {
                Some(m) => m,
                None => continue,
            };
            let addr = self.devs[i].pci().copied();
            let idx = self.devs[i].controller().and_then(|c| c.index).unwrap_or(0);
            let d = &self.devs[i];
            let mut c: Controller = d.controller().cloned().unwrap_or_default();

            // QEMU device name.
            let allowed = model.rule().qemu;
            match &c.model_name {
                Some(n) => {
                    if !allowed.contains(&n.as_str()) {
                        return Err(dev_err(
                            d,
                            format!(
                                "PCI controller model name '{n}' is not valid for a PCI controller with model '{}'",
                                model.as_str()
                            ),
                        )
                        .element("model")
                        .attr("name", n.clone()));
                    }
                    if !self.caps.has_device(n) {
                        return Err(dev_err(
                            d,
                            format!("the '{n}' device is not supported by this QEMU binary"),
                        )
                        .element("model")
                        .attr("name", n.clone()));
                    }
                }
                None => {
                    c.model_name = match model {
                        PciModel::PcieRoot => None,
                        // Every pSeries PHB, the implicit one included, is named.
                        PciModel::PciRoot if pseries => Some("spapr-pci-host-bridge".into()),
                        PciModel::PciRoot => None,
                        PciModel::PcieRootPort => match root_port_device {
                            Some(n) => Some(n.to_string()),
                            None => {
                                return Err(dev_err(
                                    d,
                                    "this QEMU binary has neither pcie-root-port nor ioh3420",
                                ));
                            }
                        },
                        m => Some(m.rule().qemu[0].to_string()),
                    };
                }
            }

            // Target defaults.
            let t = &mut c.target;
            match model {
                PciModel::PciBridge => {
                    let n = *t.chassis_nr.get_or_insert(idx);
                    if !(1..=255).contains(&n) {
                        return Err(dev_err(
                            d,
                            format!("PCI controller chassisNr '{n}' out of range - must be 1-255"),
                        )
                        .element("target")
                        .attr("chassisNr", n.to_string()));
                    }
                }
                PciModel::PcieRootPort | PciModel::SwitchDownstreamPort => {
                    let chassis = *t.chassis.get_or_insert(idx);
                    let port = *t.port.get_or_insert(match (model, addr) {
                        (PciModel::PcieRootPort, Some(a)) => (a.slot << 3) + a.function,
                        (_, Some(a)) => a.slot,
                        _ => 0,
                    });
                    if chassis > 255 {
                        return Err(dev_err(
                            d,
                            format!(
                                "PCI controller chassis '{chassis}' out of range - must be 0-255"
                            ),
                        )
                        .element("target")
                        .attr("chassis", chassis.to_string()));
                    }
                    if port > 255 {
                        return Err(dev_err(
                            d,
                            format!("PCI controller port '{port}' out of range - must be 0-255"),
                        )
                        .element("target")
                        .attr("port", format!("0x{port:x}")));
                    }
                    // QEMU refuses two ports with the same (chassis, slot); libvirt
                    // never sets slot, so equal chassis numbers collide.
                    if let Some(other) = chassis_seen.insert(chassis, d.alias.clone()) {
                        return Err(dev_err(
                            d,
                            format!(
                                "chassis {chassis} is already used by {other}; QEMU refuses two PCIe ports with the same chassis and slot (Can't add chassis slot, error -16)"
                            ),
                        )
                        .element("target")
                        .attr("chassis", chassis.to_string()));
                    }
                }
                PciModel::PciExpanderBus | PciModel::PcieExpanderBus if t.bus_nr.is_none() => {
                    if lowest_bus_nr <= 2 {
                        return Err(dev_err(
                            d,
                            format!(
                                "No free busNr lower than current lowest busNr is available to auto-assign to bus {idx}. Must be manually assigned"
                            ),
                        ));
                    }
                    lowest_bus_nr -= 2;
                    t.bus_nr = Some(lowest_bus_nr);
                }
                // libvirt gives the implicit PHB target index 0.
                PciModel::PciRoot if pseries && idx == 0 && t.index.is_none() => {
                    phb_used.insert(0);
                    t.index = Some(0);
                }
                PciModel::PciRoot if pseries && idx > 0 && t.index.is_none() => {
                    let ti = (1..=30u32)
                        .find(|x| !phb_used.contains(x))
                        .ok_or_else(|| dev_err(d, "no free pSeries PHB target index (1-30)"))?;
                    phb_used.insert(ti);
                    t.index = Some(ti);
                }
                _ => {}
            }

            // A bridge must sit on a bus with a lower index.
            if let Some(a) = addr
                && a.bus >= idx
            {
                return Err(dev_err(
                        d,
                        format!(
                            "PCI controller at index {idx} (0x{idx:02x}) has bus='0x{:02x}', but index must be larger than bus",
                            a.bus
                        ),
                    )
                    .element("address")
                    .attr("bus", format!("0x{:02x}", a.bus)));
            }
            if let DeviceKind::Controller(slot) = &mut self.devs[i].device.kind {
                *slot = c;
            }
        }
        Ok(())
    }

    pub(super) fn into_allocation(self) -> Allocation {
        let mut added: Vec<(u32, String)> = self
            .devs
            .iter()
            .filter(|d| d.origin == Origin::AutoAdded)
            .map(|d| {
                (
                    d.controller().and_then(|c| c.index).unwrap_or(0),
                    d.alias.clone(),
                )
            })
            .collect();
        added.sort();
        let pci_controllers = self.pci_ctrls();
        Allocation {
            machine: self.machine,
            arch: self.arch,
            family: self.family,
            features: self.features,
            root: self.root,
            devices: self.devs,
            controllers_added: added.into_iter().map(|a| a.1).collect(),
            warnings: self.warnings,
            categories: self.categories,
            pci_controllers,
        }
    }
}
