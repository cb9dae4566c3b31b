//! Step 3: libvirt's implicit devices (qemuDomainDefAddDefaultDevices) and the controllers
//! that disks and virtio consoles/channels imply (virDomainDefAddImplicitControllers).

use qconform_domxml::{Address, Device, DeviceKind, Domain};

use super::{MAX_CONTROLLER_INDEX, Work, dev_err};
use crate::machine::{self};
use crate::{Attach, Dev, Error, Origin};

impl Work<'_> {
    pub(super) fn push(&mut self, device: Device, origin: Origin) -> usize {
        self.devs.push(Dev {
            device,
            origin,
            alias: String::new(),
            attach: Attach::Other,
        });
        let i = self.devs.len() - 1;
        if matches!(self.devs[i].device.kind, DeviceKind::Controller(_)) {
            self.insert_ctrl(i);
        }
        i
    }

    fn has_ctrl(&self, ty: &str, idx: u32) -> bool {
        self.devs.iter().any(|d| {
            d.controller()
                .is_some_and(|c| c.ctype == ty && c.index == Some(idx))
        })
    }

    pub(super) fn add_implicit(&mut self, dom: &Domain) -> Result<(), Error> {
        let existing: Vec<&Device> = self.devs.iter().map(|d| &d.device).collect();
        for d in machine::default_devices(
            self.family,
            self.root,
            self.caps,
            dom.has_graphics,
            &existing,
        ) {
            self.push(d, Origin::Implicit);
        }
        // Controllers implied by disks (virDomainDefAddImplicitControllers).
        let scsi_default = machine::default_scsi_model(self.family, self.caps);
        for bus in ["ide", "sata", "scsi", "fdc"] {
            let max = self
                .devs
                .iter()
                .filter_map(|d| match (&d.device.kind, &d.device.address) {
                    (DeviceKind::Disk(k), Address::Drive(a)) if k.bus.as_deref() == Some(bus) => {
                        Some(a.controller)
                    }
                    _ => None,
                })
                .max();
            if let Some(max) = max {
                if max > MAX_CONTROLLER_INDEX {
                    return Err(Error::new(format!(
                        "disks on bus '{bus}' need {bus} controller {max}, which is out of range"
                    )));
                }
                for idx in 0..=max {
                    if !self.has_ctrl(bus, idx) {
                        let model = (bus == "scsi").then_some(scsi_default);
                        self.push(machine::controller(bus, idx, model), Origin::Implicit);
                    }
                }
            }
        }
        // virtio-serial for virtio consoles and channels: the controller their
        // virtio-serial address names, 0 without one (virDomainDefMaybeAddVirtioSerialController).
        let mut vserial: Vec<u32> = self
            .devs
            .iter()
            .filter(|d| {
                matches!(&d.device.kind, DeviceKind::Chr(c)
                    if (c.element == "channel" || c.element == "console")
                        && c.target_type.as_deref() == Some("virtio"))
            })
            .map(|d| d.device.virtio_serial.map_or(0, |a| a.controller))
            .collect();
        vserial.sort_unstable();
        vserial.dedup();
        for idx in vserial {
            if idx > MAX_CONTROLLER_INDEX {
                return Err(Error::new(format!(
                    "virtio-serial controller {idx} is out of range"
                )));
            }
            if !self.has_ctrl("virtio-serial", idx) {
                self.push(
                    machine::controller("virtio-serial", idx, None),
                    Origin::Implicit,
                );
            }
        }
        // Any other device with a virtio-serial address needs that controller too:
        // libvirt looks it up when it builds the command line (virDomainControllerAliasFind).
        for d in &self.devs {
            if let Some(a) = d.device.virtio_serial
                && !self.has_ctrl("virtio-serial", a.controller)
            {
                return Err(dev_err(
                    d,
                    format!(
                        "Could not find virtio-serial controller with index {} required for device",
                        a.controller
                    ),
                )
                .element("address")
                .attr("controller", a.controller.to_string()));
            }
        }
        Ok(())
    }
}
