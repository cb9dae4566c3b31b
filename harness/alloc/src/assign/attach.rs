//! Step 4: how each device attaches (PCI with its connect flags, CCW, unassigned, other),
//! and the checks that go with the attachment.

use qconform_domxml::{Address, DeviceKind};

use super::{Work, dev_err};
use crate::classify::{self, Ctx};
use crate::machine::Family;
use crate::rules::{BaseFlags, Flags, PciModel};
use crate::{Attach, Error};

impl Work<'_> {
    fn base(&self) -> BaseFlags {
        BaseFlags::new(
            self.root == Some(PciModel::PcieRoot),
            self.features.virtio_variants,
        )
    }

    /// The first `<console>` with target type `serial` (or none) is an alias of the first
    /// `<serial>` when there is one (virDomainDefAddConsoleCompat): QEMU gets one device,
    /// the serial's, and the console's own address is ignored
    /// (virDomainDeviceInfoIterateFlags skips that console).
    fn serial_console_alias(&self) -> Option<usize> {
        let chr = |d: &crate::Dev| match &d.device.kind {
            DeviceKind::Chr(c) => Some(c.clone()),
            _ => None,
        };
        let has_serial = self
            .devs
            .iter()
            .any(|d| chr(d).is_some_and(|c| c.element == "serial"));
        let (i, first) = self
            .devs
            .iter()
            .enumerate()
            .find_map(|(i, d)| chr(d).filter(|c| c.element == "console").map(|c| (i, c)))?;
        (has_serial && matches!(first.target_type.as_deref(), None | Some("serial"))).then_some(i)
    }

    pub(super) fn attach(&mut self) -> Result<(), Error> {
        let ctx = Ctx {
            base: self.base(),
            host: &self.host_facts,
        };
        let s390 = self.family == Family::S390;
        self.connect_flags = vec![Flags::NONE; self.devs.len()];
        let serial_alias = self.serial_console_alias();
        for i in 0..self.devs.len() {
            let d = &self.devs[i];
            let kind = &d.device.kind;
            if Some(i) == serial_alias {
                // Not a device of its own: libvirt skips it when it collects and
                // assigns addresses, whatever address it repeats.
                self.devs[i].attach = Attach::Other;
                continue;
            }
            let is_vfio_ccw = classify::is_vfio_ccw(kind);
            if is_vfio_ccw && !self.features.vfio_ccw {
                return Err(dev_err(
                    d,
                    "vfio-ccw devices are not supported by this QEMU binary",
                ));
            }
            let pci_flags = classify::pci_flags(kind, &d.device.address, &ctx);
            let attach = match &d.device.address {
                Address::Unassigned => {
                    if !classify::is_pci_hostdev(kind) {
                        return Err(dev_err(
                            d,
                            "address type 'unassigned' is only supported for PCI host devices",
                        )
                        .attr("type", "unassigned"));
                    }
                    Attach::Unassigned
                }
                Address::Pci(p) => {
                    if p.domain != 0 {
                        return Err(dev_err(
                            d,
                            format!(
                                "Invalid PCI address {:04x}:{:02x}:{:02x}.{}. Only PCI domain 0 is available",
                                p.domain, p.bus, p.slot, p.function
                            ),
                        )
                        .element("address")
                        .attr("domain", format!("0x{:04x}", p.domain)));
                    }
                    let Some(fl) = pci_flags else {
                        return Err(dev_err(
                            d,
                            format!("<{}> cannot have a PCI address", d.device.element()),
                        )
                        .attr("type", "pci"));
                    };
                    if p.zpci.is_some() && !self.features.zpci {
                        return Err(
                            dev_err(d, "This QEMU binary doesn't support zPCI").element("zpci")
                        );
                    }
                    self.connect_flags[i] = fl;
                    Attach::Pci
                }
                Address::Ccw(_) | Address::Other(_)
                    if matches!(&d.device.address, Address::Ccw(_))
                        || d.device.address.type_name() == "ccw" =>
                {
                    // A bare `<address type='ccw'/>` asks for a CCW devno (assign_ccw).
                    if !s390 {
                        return Err(dev_err(
                            d,
                            format!(
                                "CCW addresses are only supported on s390-ccw machines, not on '{}'",
                                self.machine
                            ),
                        )
                        .attr("type", "ccw"));
                    }
                    if !classify::ccw_capable(kind) {
                        return Err(dev_err(
                            d,
                            format!("<{}> cannot have a CCW address", d.device.element()),
                        )
                        .attr("type", "ccw"));
                    }
                    Attach::Ccw
                }
                // (A CCW address never gets here: the arm above takes every one.)
                Address::Drive(_) | Address::Other(_) | Address::Ccw(_) => {
                    let ty = d.device.address.type_name();
                    if ty == "virtio-s390" {
                        // qemuValidateDomainDeviceDefAddress.
                        return Err(
                            dev_err(d, "'virtio-s390' addresses are no longer supported")
                                .element("address")
                                .attr("type", ty.to_string()),
                        );
                    }
                    if ty == "virtio-mmio" && pci_flags.is_some() {
                        // libvirt builds the virtio-*-device form on the machine's MMIO
                        // transports; a plan only places PCI and CCW devices.
                        return Err(dev_err(
                            d,
                            "virtio-mmio addresses are not modelled: give the device <address type='pci'/> or no address",
                        )
                        .element("address")
                        .attr("type", ty.to_string()));
                    }
                    if let DeviceKind::Panic(m) = kind
                        && m.model.as_deref() == Some("pvpanic")
                    {
                        // qemuValidateDomainDefPanic.
                        return Err(
                            dev_err(d, "pvpanic is supported only with PCI address type")
                                .element("address")
                                .attr("type", ty.to_string()),
                        );
                    }
                    if let Some(what) = classify::pci_device_name(kind, pci_flags.is_some()) {
                        // libvirt keeps such an address and builds the device with it:
                        // QEMU either refuses the options it turns into (iobase=, a USB
                        // or virtio-serial bus=) or, for a drive address, places the
                        // device itself, on a slot the plan may have given to another.
                        return Err(dev_err(
                            d,
                            format!(
                                "{what} is a PCI device and cannot have an address of type '{ty}': give it <address type='pci'/> or no address"
                            ),
                        )
                        .element("address")
                        .attr("type", ty.to_string()));
                    }
                    Attach::Other
                }
                Address::Absent | Address::None => {
                    if is_vfio_ccw && !s390 {
                        return Err(dev_err(
                            d,
                            format!(
                                "vfio-ccw devices need an s390-ccw machine, not '{}'",
                                self.machine
                            ),
                        ));
                    }
                    if classify::is_vfio_ap(kind) {
                        Attach::Other
                    } else if s390 && classify::ccw_default(kind, self.features.vfio_ccw) {
                        Attach::Ccw
                    } else if let Some(fl) = pci_flags {
                        self.connect_flags[i] = fl;
                        Attach::Pci
                    } else {
                        Attach::Other
                    }
                }
            };
            if classify::wants_virtio_variant(kind) {
                if attach == Attach::Ccw {
                    return Err(dev_err(
                        d,
                        "virtio (non-)transitional models are not supported for address type=ccw",
                    ));
                }
                if !self.features.virtio_variants {
                    return Err(dev_err(
                        d,
                        "virtio (non-)transitional models are not supported by this QEMU binary",
                    ));
                }
            }
            self.devs[i].attach = attach;
        }
        self.locs = vec![None; self.devs.len()];
        Ok(())
    }

    /// Warns about PCI host devices placed as PCI Express only because nothing describes
    /// them. Runs after naming, so each warning starts with the device's alias.
    pub(super) fn warn_undescribed_hosts(&mut self) {
        if self.family == Family::Pseries {
            for d in &self.devs {
                // Only a device left to the allocator is placed by its group.
                if d.attach == Attach::Pci
                    && matches!(d.device.address, Address::Absent | Address::None)
                    && classify::isolation_group(&d.device.kind, &self.host_facts).is_none()
                {
                    let host = classify::host_pci_device(&d.device.kind)
                        .flatten()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    self.warnings.push(format!(
                        "{}: the IOMMU group of host device {host} is not described, so it is not isolated on a PHB of its own, as libvirt does when it cannot read the group (describe it in <metadata> with <qc:pci address='{host}' express='no' iommuGroup='N'/>, namespace {})",
                        d.alias,
                        qconform_domxml::HOST_NS
                    ));
                }
            }
        }
        let ctx = Ctx {
            base: self.base(),
            host: &self.host_facts,
        };
        if ctx.base.pci != ctx.base.pcie {
            for d in &self.devs {
                let Some(host) = classify::host_pci_device(&d.device.kind) else {
                    continue;
                };
                if d.attach == Attach::Pci
                    && matches!(d.device.address, Address::Absent | Address::None)
                    && ctx.host_express(host).is_none()
                {
                    let host = host.map(|a| a.to_string()).unwrap_or_default();
                    self.warnings.push(format!(
                        "{}: host device {host} is not described, so it is placed as PCI Express, as libvirt does for a host device it cannot find (describe it in <metadata> with <qc:pci address='{host}' express='no'/>, namespace {}, if it is conventional PCI)",
                        d.alias,
                        qconform_domxml::HOST_NS
                    ));
                }
            }
        }
    }
}
