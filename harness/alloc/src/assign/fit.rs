//! Step 6: machine fit: the buses (floppy, ISA, IDE, USB) and machine families that
//! devices need.

use qconform_domxml::DeviceKind;

use super::{Work, dev_err};
use crate::Error;
use crate::machine::{self, Family};

impl Work<'_> {
    pub(super) fn check_fit(&mut self) -> Result<(), Error> {
        let (cats, probed) = machine::categories(self.caps, &self.machine, self.family);
        self.categories = cats.iter().cloned().collect();
        let has = |c: &str| cats.iter().any(|x| x == c);
        let usb_state = {
            let usb: Vec<&str> = self
                .devs
                .iter()
                .filter_map(|d| d.controller().filter(|c| c.ctype == "usb"))
                .map(|c| c.model.as_deref().unwrap_or(""))
                .collect();
            if usb.is_empty() {
                None
            } else {
                Some(usb.iter().any(|m| *m != "none"))
            }
        };
        let mut needs_probe_note = false;
        let floppy_ok = has("floppy") || (has("isa") && self.caps.has_device("isa-fdc"));
        for d in &self.devs {
            let m = &self.machine;
            let fail = |why: String| Err(dev_err(d, why));
            let isa = |what: &str| -> Result<(), Error> {
                if has("isa") {
                    Ok(())
                } else {
                    Err(dev_err(
                        d,
                        format!("{what} needs an ISA bus, which machine '{m}' does not have"),
                    ))
                }
            };
            let mut usb_dev = false;
            match &d.device.kind {
                DeviceKind::Disk(k) => match k.bus.as_deref() {
                    Some("fdc") => {
                        needs_probe_note = true;
                        // Without a built-in controller libvirt adds an isa-fdc, which
                        // needs an ISA bus.
                        if !floppy_ok {
                            return fail(format!(
                                "machine '{m}' has no floppy controller and no ISA bus for an isa-fdc, so floppy disk '{}' cannot be attached",
                                k.dev
                            ));
                        }
                    }
                    Some("ide") if self.family != Family::Pc => {
                        return fail(format!(
                            "IDE controllers are unsupported for this QEMU binary or machine type ('{m}'): disk '{}' cannot use bus='ide'",
                            k.dev
                        ));
                    }
                    Some("usb") => usb_dev = true,
                    Some("xen") | Some("uml") | Some("sd") => {
                        return fail(format!(
                            "disk bus '{}' is not supported by QEMU machine '{m}'",
                            k.bus.as_deref().unwrap_or("")
                        ));
                    }
                    _ => {}
                },
                DeviceKind::Controller(c) => match c.ctype.as_str() {
                    "ide" if self.family != Family::Pc => {
                        return fail(format!(
                            "IDE controllers are unsupported for this QEMU binary or machine type ('{m}')"
                        ));
                    }
                    "ide" if c.index.unwrap_or(0) > 0 => {
                        return fail(
                            "Only a single IDE controller is supported for this machine type"
                                .into(),
                        );
                    }
                    "fdc" if !floppy_ok => {
                        return fail(format!(
                            "machine '{m}' has no floppy controller and no ISA bus for an isa-fdc"
                        ));
                    }
                    _ => {}
                },
                DeviceKind::Panic(p) if p.model.as_deref() == Some("isa") => {
                    isa("panic model 'isa' (pvpanic)")?
                }
                DeviceKind::Watchdog(w) => match w.model.as_deref() {
                    Some("ib700") if self.family != Family::Pc => {
                        return fail(format!(
                            "watchdog model 'ib700' is only supported on i440fx-based machines, not '{m}'"
                        ));
                    }
                    Some("ib700") => isa("watchdog model 'ib700'")?,
                    Some("itco") if self.family != Family::Q35 => {
                        return fail(
                            "Watchdog model 'itco' is only supported on q35 machines".into(),
                        );
                    }
                    Some("diag288") if self.family != Family::S390 => {
                        return fail("Watchdog model 'diag288' is only supported on s390x".into());
                    }
                    _ => {}
                },
                DeviceKind::Sound(s) => match s.model.as_str() {
                    "sb16" => isa("sound model 'sb16'")?,
                    "usb" => usb_dev = true,
                    _ => {}
                },
                DeviceKind::Chr(c) => match (c.element.as_str(), c.target_type.as_deref()) {
                    ("serial", Some("isa-serial")) => isa("serial port of type 'isa-serial'")?,
                    ("parallel", _) => isa("parallel port")?,
                    ("serial", Some("usb-serial")) => usb_dev = true,
                    _ => {}
                },
                DeviceKind::Iommu(i) => match i.model.as_deref() {
                    Some("intel") if self.family != Family::Q35 => {
                        return fail(
                            "IOMMU device: 'intel' is only supported with Q35 machines".into(),
                        );
                    }
                    Some("smmuv3") if self.family != Family::ArmVirt => {
                        return fail(
                            "IOMMU device: 'smmuv3' is only supported with ARM Virt machines"
                                .into(),
                        );
                    }
                    _ => {}
                },
                DeviceKind::Input(i) => match i.bus.as_deref() {
                    Some("usb") => usb_dev = true,
                    Some("ps2") if !self.family.is_x86() => {
                        return fail(format!("ps2 {} is only available on x86 machines", i.itype));
                    }
                    _ => {}
                },
                DeviceKind::Hostdev(h) if h.htype == "usb" => usb_dev = true,
                _ => {}
            }
            if usb_dev {
                match usb_state {
                    Some(true) => {}
                    Some(false) => {
                        return fail(
                            "USB is disabled for this domain, but USB devices are present in the domain XML".into(),
                        );
                    }
                    None => {
                        return fail(
                            "a USB device is present but the domain has no USB controller".into(),
                        );
                    }
                }
            }
        }
        if needs_probe_note && !probed {
            self.warnings.push(format!(
                "machine '{}' was not probed in this snapshot: its buses are taken from the '{}' family defaults",
                self.machine,
                self.family.as_str()
            ));
        }
        Ok(())
    }
}
