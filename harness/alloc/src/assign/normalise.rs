//! Step 2: controller indexes, the root controller, default models of PCI, USB, SCSI
//! controllers, NICs and videos, disk buses and drive addresses; libvirt's controller order.

use std::collections::{BTreeMap, BTreeSet};

use qconform_domxml::{Address, Device, DeviceKind, Domain, Video};

use super::{MAX_CONTROLLER_INDEX, Work, dev_err, loc_of};
use crate::machine::{self, Family};
use crate::names;
use crate::rules::PciModel;
use crate::{Attach, Dev, Error, Origin};

impl Work<'_> {
    pub(super) fn normalise(&mut self, dom: &Domain) -> Result<(), Error> {
        for (i, d) in dom.devices.iter().enumerate() {
            self.devs.push(Dev {
                device: d.clone(),
                origin: Origin::Document(i),
                alias: String::new(),
                attach: Attach::Other,
            });
        }
        // virDomainDefAddImplicitVideo: with <graphics> and no <video>, one video device
        // of the default model, after the document's devices.
        if dom.has_graphics
            && !self
                .devs
                .iter()
                .any(|d| matches!(d.device.kind, DeviceKind::Video(_)))
        {
            self.devs.push(Dev {
                device: Device::new(DeviceKind::Video(Video::default())),
                origin: Origin::Implicit,
                alias: String::new(),
                attach: Attach::Other,
            });
        }
        // virDomainDefParseXML inserts a primary video first: it is video0 and the first
        // video in libvirt's device order.
        let videos: Vec<usize> = (0..self.devs.len())
            .filter(|&i| matches!(self.devs[i].device.kind, DeviceKind::Video(_)))
            .collect();
        let primaries: Vec<usize> = videos
            .iter()
            .copied()
            .filter(|&i| matches!(&self.devs[i].device.kind, DeviceKind::Video(v) if v.primary))
            .collect();
        if primaries.len() > 1 {
            // virDomainDefVideoValidate.
            return Err(dev_err(
                &self.devs[primaries[1]],
                "Only one primary video device is supported",
            )
            .element("model")
            .attr("primary", "yes"));
        }
        if let (Some(&first), Some(&p)) = (videos.first(), primaries.first())
            && p != first
        {
            let d = self.devs.remove(p);
            self.devs.insert(first, d);
        }
        for u in &dom.unmodelled {
            let mut w = format!(
                "<{}> at line {} is not modelled: kept in the domain XML, not placed and not put on the command line",
                u.element, u.pos.line
            );
            if let Address::Pci(p) = &u.address
                && !p.is_empty()
            {
                self.unmodelled.push((u.element.clone(), u.pos, loc_of(p)));
                w.push_str(&format!("; its PCI address {} is reserved", loc_of(p)));
            }
            self.warnings.push(w);
        }

        // Controller indexes: missing ones get the lowest unused index of their type.
        let mut used: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for d in &self.devs {
            if let DeviceKind::Controller(c) = &d.device.kind
                && let Some(i) = c.index
                && i > MAX_CONTROLLER_INDEX
            {
                return Err(dev_err(
                    d,
                    format!(
                        "controller index {i} is out of range: a guest has at most {} buses",
                        MAX_CONTROLLER_INDEX + 1
                    ),
                )
                .attr("index", i.to_string()));
            }
            if let DeviceKind::Disk(k) = &d.device.kind
                && let Address::Drive(a) = &d.device.address
                && a.controller > MAX_CONTROLLER_INDEX
            {
                return Err(dev_err(
                    d,
                    format!(
                        "disk '{}' refers to controller {}, which is out of range",
                        k.dev, a.controller
                    ),
                )
                .element("address")
                .attr("controller", a.controller.to_string()));
            }
            // virDomainDefRejectDuplicateControllers: USB controllers may share an index
            // (an EHCI master and its UHCI companions).
            if let DeviceKind::Controller(c) = &d.device.kind
                && let Some(i) = c.index
                && !used.entry(c.ctype.clone()).or_default().insert(i)
                && c.ctype != "usb"
            {
                return Err(dev_err(
                    d,
                    format!("Multiple '{}' controllers with index '{i}'", c.ctype),
                )
                .attr("index", i.to_string()));
            }
        }
        for d in &mut self.devs {
            if let DeviceKind::Controller(c) = &mut d.device.kind
                && c.index.is_none()
            {
                let set = used.entry(c.ctype.clone()).or_default();
                let i = (0u32..).find(|i| !set.contains(i)).unwrap_or(0);
                set.insert(i);
                c.index = Some(i);
            }
        }

        // The root controller: the machine's, unless the document gives index 0.
        let machine_root = machine::root_model(self.family, &self.features);
        let mut root = machine_root;
        for d in &self.devs {
            let DeviceKind::Controller(c) = &d.device.kind else {
                continue;
            };
            if c.ctype != "pci" {
                continue;
            }
            let idx = c.index.unwrap_or(0);
            let model = match c.model.as_deref() {
                None => None,
                Some(m) => Some(PciModel::parse(m).ok_or_else(|| {
                    dev_err(d, format!("Unknown PCI controller model '{m}'")).attr("model", m)
                })?),
            };
            match model {
                Some(m)
                    if m.is_root()
                        && idx != 0
                        && !(m == PciModel::PciRoot && self.family == Family::Pseries) =>
                {
                    return Err(dev_err(
                        d,
                        "pci-root and pcie-root controllers should have index 0",
                    )
                    .attr("index", idx.to_string()));
                }
                Some(m)
                    if m.is_root()
                        && !matches!(d.device.address, Address::Absent | Address::None) =>
                {
                    // virDomainControllerDefValidate.
                    return Err(dev_err(
                        d,
                        "pci-root and pcie-root controllers should not have an address",
                    )
                    .element("address")
                    .attr("type", d.device.address.type_name().to_string()));
                }
                _ => {}
            }
            if idx == 0 {
                let m = model.or(machine_root);
                match (m, machine_root) {
                    (Some(m), Some(r)) if m != r => {
                        return Err(dev_err(
                            d,
                            format!(
                                "The PCI controller with index='0' must be model='{}' for this machine type, but model='{}' was found instead",
                                r.as_str(),
                                m.as_str()
                            ),
                        )
                        .attr("model", m.as_str()));
                    }
                    (Some(_), None) if self.family == Family::S390 => {
                        return Err(dev_err(
                            d,
                            "This QEMU binary doesn't support zPCI, so s390-ccw machines have no PCI root",
                        ));
                    }
                    (Some(m), None) if !m.is_root() => {
                        return Err(dev_err(
                            d,
                            format!("The PCI controller with index='0' must be a root controller, but model='{}' was found", m.as_str()),
                        ).attr("model", m.as_str()));
                    }
                    (Some(m), _) => root = Some(m),
                    (None, _) => {
                        return Err(dev_err(
                            d,
                            format!(
                                "machine '{}' has no PCI root controller on this QEMU binary",
                                self.machine
                            ),
                        ));
                    }
                }
            }
        }
        self.root = root;

        let pcie = root == Some(PciModel::PcieRoot);
        let usb_default = machine::default_usb_model(self.family, self.caps);
        let scsi_default = machine::default_scsi_model(self.family, self.caps);
        let nic_default = machine::default_nic_model(self.family, &self.arch, self.caps);
        let video_default = machine::default_video_model(self.family, &self.arch, self.caps);
        let family = self.family;
        let (arch, caps) = (self.arch.clone(), self.caps);
        for d in &mut self.devs {
            match &mut d.device.kind {
                DeviceKind::Controller(c) => match c.ctype.as_str() {
                    "pci" if c.model.is_none() => {
                        let idx = c.index.unwrap_or(0);
                        let m = if idx == 0 {
                            root
                        } else if family == Family::Pseries {
                            Some(PciModel::PciRoot)
                        } else if pcie {
                            Some(PciModel::PcieRootPort)
                        } else {
                            Some(PciModel::PciBridge)
                        };
                        c.model = m.map(|m| m.as_str().to_string());
                    }
                    "usb" if c.model.is_none() => {
                        let m = if matches!(d.origin, Origin::Document(_)) {
                            let addressed =
                                !matches!(d.device.address, Address::Absent | Address::None);
                            machine::user_usb_model(&arch, caps, addressed)
                        } else {
                            usb_default
                        };
                        c.model = Some(m.to_string());
                    }
                    "scsi" if c.model.is_none() => c.model = Some(scsi_default.to_string()),
                    _ => {}
                },
                DeviceKind::Disk(k) => {
                    // virDomainDiskDefAssignAddress (post-parse): a disk without an
                    // address needs a target name libvirt can number.
                    let idx = names::disk_index(&k.dev);
                    if idx.is_none() && matches!(d.device.address, Address::Absent | Address::None)
                    {
                        return Err(Error::new(format!(
                            "Unknown disk name '{}' and no address specified",
                            k.dev
                        ))
                        .element("target")
                        .attr("dev", k.dev.clone())
                        .at(d.device.pos));
                    }
                    if k.bus.is_none() {
                        let b = if k.device == "floppy" {
                            Some("fdc")
                        } else {
                            names::disk_default_bus(&k.dev)
                        };
                        let Some(b) = b else {
                            let dev = k.dev.clone();
                            return Err(Error::new(format!(
                                "cannot infer the bus of disk '{dev}': give <target bus=...>"
                            ))
                            .element("target")
                            .attr("dev", dev)
                            .at(d.device.pos));
                        };
                        k.bus = Some(b.to_string());
                    }
                    let bus = k.bus.clone().unwrap_or_default();
                    // virDomainDiskAddressDiskBusCompatibility (domain_validate.c): drive
                    // buses take drive addresses, usb disks usb ones, virtio disks PCI,
                    // CCW, virtio-s390 or virtio-mmio ones.
                    let ty = d.device.address.type_name();
                    let compatible = match bus.as_str() {
                        _ if matches!(d.device.address, Address::Absent | Address::None) => true,
                        "ide" | "fdc" | "scsi" | "sata" => ty == "drive",
                        "usb" => ty == "usb",
                        "virtio" => matches!(ty, "pci" | "ccw" | "virtio-s390" | "virtio-mmio"),
                        _ => true,
                    };
                    if !compatible {
                        return Err(Error::new(format!(
                            "Invalid address type '{ty}' for the disk '{}' with the bus type '{bus}'",
                            k.dev
                        ))
                        .element("address")
                        .attr("type", ty.to_string())
                        .at(d.device.pos));
                    }
                    if let (Address::Absent | Address::None, "ide" | "sata" | "scsi" | "fdc") =
                        (&d.device.address, bus.as_str())
                        && let Some(da) = idx.and_then(|idx| names::drive_address(&bus, idx))
                    {
                        d.device.address = Address::Drive(da);
                    }
                }
                DeviceKind::Interface(i) if i.itype != "hostdev" && i.model.is_none() => {
                    i.model = Some(nic_default.to_string());
                }
                DeviceKind::Video(v) if v.model.is_none() => {
                    v.model = Some(video_default.to_string());
                }
                _ => {}
            }
        }
        for i in 0..self.devs.len() {
            if matches!(self.devs[i].device.kind, DeviceKind::Controller(_)) {
                self.insert_ctrl(i);
            }
        }
        Ok(())
    }

    /// libvirt's controller insertion: after the last controller of the same type with a
    /// lower or equal index, else before the first of that type with a higher index, else
    /// at the end.
    pub(super) fn insert_ctrl(&mut self, new: usize) {
        let key = |d: &Dev| {
            d.controller()
                .map(|c| (c.ctype.clone(), c.index.unwrap_or(0)))
        };
        let Some((ty, idx)) = key(&self.devs[new]) else {
            return;
        };
        let mut insert_at = None;
        for pos in (0..self.ctrl_order.len()).rev() {
            if let Some((cty, cidx)) = key(&self.devs[self.ctrl_order[pos]])
                && cty == ty
            {
                if cidx <= idx {
                    insert_at = Some(pos + 1);
                    break;
                }
                insert_at = Some(pos);
            }
        }
        match insert_at {
            Some(p) => self.ctrl_order.insert(p, new),
            None => self.ctrl_order.push(new),
        }
    }
}
