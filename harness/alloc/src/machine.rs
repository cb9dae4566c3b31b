//! Machine families, what the snapshot offers, and libvirt's implicit devices.

use qconform_caps::Snapshot;
use qconform_domxml::{Controller, Device, DeviceKind, Input, ModelOnly};

use crate::rules::PciModel;

/// The machine families whose placement rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// x86 `pc` (i440fx + PIIX3).
    Pc,
    /// x86 `q35` (ICH9).
    Q35,
    /// aarch64/arm `virt` (gpex PCIe host).
    ArmVirt,
    /// riscv64 `virt` (gpex PCIe host).
    RiscvVirt,
    /// ppc64 `pseries` (spapr PHBs).
    Pseries,
    /// s390x `s390-ccw-virtio` (CCW, zPCI).
    S390,
    /// Any other machine: no implicit PCI root.
    Other,
}

impl Family {
    /// Family of a canonical machine name on a target architecture.
    pub fn of(machine: &str, arch: &str) -> Family {
        match arch {
            "x86_64" | "i386" | "i686" => {
                if machine.contains("q35") {
                    Family::Q35
                } else if machine == "pc" || machine.contains("i440fx") || is_old_pc(machine) {
                    Family::Pc
                } else {
                    Family::Other
                }
            }
            "aarch64" | "arm" | "armv7l" => {
                if machine == "virt" || machine.starts_with("virt-") {
                    Family::ArmVirt
                } else {
                    Family::Other
                }
            }
            "riscv64" | "riscv32" => {
                if machine == "virt" || machine.starts_with("virt-") {
                    Family::RiscvVirt
                } else {
                    Family::Other
                }
            }
            "ppc64" | "ppc64le" => {
                if machine.starts_with("pseries") {
                    Family::Pseries
                } else {
                    Family::Other
                }
            }
            "s390x" | "s390" => {
                if machine.starts_with("s390-ccw-virtio") {
                    Family::S390
                } else {
                    Family::Other
                }
            }
            _ => Family::Other,
        }
    }

    /// Short name (`pc`, `q35`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Pc => "pc",
            Family::Q35 => "q35",
            Family::ArmVirt => "arm-virt",
            Family::RiscvVirt => "riscv-virt",
            Family::Pseries => "pseries",
            Family::S390 => "s390-ccw-virtio",
            Family::Other => "other",
        }
    }

    /// Whether the family is x86.
    pub fn is_x86(self) -> bool {
        matches!(self, Family::Pc | Family::Q35)
    }
}

/// Old i440fx names: `pc-0.15`, `pc-1.3`.
fn is_old_pc(machine: &str) -> bool {
    machine
        .strip_prefix("pc-")
        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// What the QEMU binary offers, as far as placement and argv care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// The `zpci` device (s390x zPCI).
    pub zpci: bool,
    /// The `vfio-ccw` device.
    pub vfio_ccw: bool,
    /// `pcie-pci-bridge`.
    pub pcie_pci_bridge: bool,
    /// The virtio `-transitional`/`-non-transitional` device variants.
    pub virtio_variants: bool,
    /// The gpex PCIe host (arm/riscv `virt` get a pcie-root only with it).
    pub gpex: bool,
    /// Device used for pcie-root-port: `pcie-root-port`, else `ioh3420`.
    pub root_port_device: Option<&'static str>,
}

impl Features {
    /// Reads the features from a snapshot.
    pub fn of(caps: &Snapshot) -> Features {
        let root_port_device = if caps.has_device("pcie-root-port") {
            Some("pcie-root-port")
        } else if caps.has_device("ioh3420") {
            Some("ioh3420")
        } else {
            None
        };
        Features {
            zpci: caps.has_device("zpci"),
            vfio_ccw: caps.has_device("vfio-ccw"),
            pcie_pci_bridge: caps.has_device("pcie-pci-bridge"),
            virtio_variants: caps.has_type("virtio-net-pci-non-transitional")
                || caps.has_type("virtio-blk-pci-non-transitional"),
            gpex: caps.has_type("gpex-pcihost"),
            root_port_device,
        }
    }
}

/// The root PCI controller model of a family on this binary (`None`: no PCI).
pub fn root_model(family: Family, f: &Features) -> Option<PciModel> {
    match family {
        Family::Pc | Family::Pseries => Some(PciModel::PciRoot),
        Family::Q35 => Some(PciModel::PcieRoot),
        Family::ArmVirt | Family::RiscvVirt => f.gpex.then_some(PciModel::PcieRoot),
        Family::S390 => f.zpci.then_some(PciModel::PciRoot),
        Family::Other => None,
    }
}

/// libvirt's default USB controller model for a family (`none` when there is none).
pub fn default_usb_model(family: Family, caps: &Snapshot) -> &'static str {
    let first = |names: &[&'static str], fallback: &'static str| {
        names
            .iter()
            .copied()
            .find(|n| caps.has_device(usb_qemu_device(n)))
            .unwrap_or(fallback)
    };
    match family {
        Family::Pc => "piix3-uhci",
        Family::Q35 => first(&["qemu-xhci", "nec-xhci", "ich9-ehci1"], "none"),
        Family::ArmVirt | Family::RiscvVirt => first(&["qemu-xhci", "nec-xhci"], "none"),
        // libvirt 9.0 and 12.8 both pick qemu-xhci first on pSeries (checked with
        // define + dumpxml); pci-ohci only when the binary lacks qemu-xhci.
        Family::Pseries => first(&["qemu-xhci", "pci-ohci"], "none"),
        Family::S390 | Family::Other => "none",
    }
}

/// The model libvirt gives a USB controller the document writes without one
/// (qemuDomainControllerDefPostParse; the implicit controller gets
/// [`default_usb_model`] instead): piix3-uhci when the binary has it, else pci-ohci off
/// x86 when the binary has it; then on s390x `none` unless the controller has an
/// address, on ppc64 pci-ohci, on aarch64 qemu-xhci (else nec-xhci), on loongarch64
/// qemu-xhci. `default` when nothing applies (QEMU's own `-usb`).
pub fn user_usb_model(arch: &str, caps: &Snapshot, has_address: bool) -> &'static str {
    let has = |m: &str| caps.has_device(usb_qemu_device(m));
    let x86 = matches!(arch, "x86_64" | "i686");
    let mut model = if has("piix3-uhci") {
        "piix3-uhci"
    } else if !x86 && has("pci-ohci") {
        "pci-ohci"
    } else {
        "default"
    };
    if arch.starts_with("s390") {
        if !has_address {
            model = "none";
        }
    } else if arch.starts_with("ppc64") {
        model = if has("pci-ohci") {
            "pci-ohci"
        } else {
            "default"
        };
    } else if arch == "aarch64" {
        if has("qemu-xhci") {
            model = "qemu-xhci";
        } else if has("nec-xhci") {
            model = "nec-xhci";
        }
    } else if arch == "loongarch64" && has("qemu-xhci") {
        model = "qemu-xhci";
    }
    model
}

/// QEMU device of a libvirt USB controller model.
pub fn usb_qemu_device(model: &str) -> &'static str {
    match model {
        "piix3-uhci" => "piix3-usb-uhci",
        "piix4-uhci" => "piix4-usb-uhci",
        "ehci" => "usb-ehci",
        "ich9-ehci1" => "ich9-usb-ehci1",
        "ich9-uhci1" => "ich9-usb-uhci1",
        "ich9-uhci2" => "ich9-usb-uhci2",
        "ich9-uhci3" => "ich9-usb-uhci3",
        "vt82c686b-uhci" => "vt82c686b-usb-uhci",
        "pci-ohci" => "pci-ohci",
        "nec-xhci" => "nec-usb-xhci",
        "qemu-xhci" => "qemu-xhci",
        "qusb1" | "qusb2" => "",
        _ => "",
    }
}

/// libvirt's default SCSI controller model for a family.
pub fn default_scsi_model(family: Family, caps: &Snapshot) -> &'static str {
    match family {
        Family::Pseries => "ibmvscsi",
        Family::Pc | Family::Q35 if caps.has_device("lsi53c895a") => "lsilogic",
        _ => "virtio-scsi",
    }
}

/// libvirt's default NIC model (qemuDomainDefaultNetModel).
pub fn default_nic_model(family: Family, arch: &str, caps: &Snapshot) -> &'static str {
    match family {
        Family::S390 | Family::ArmVirt | Family::RiscvVirt => "virtio",
        _ if arch.starts_with("arm") || arch == "aarch64" => "lan9118",
        _ => {
            if caps.has_device("rtl8139") {
                "rtl8139"
            } else if caps.has_device("e1000") {
                "e1000"
            } else {
                "virtio"
            }
        }
    }
}

/// libvirt's default video model for a family.
pub fn default_video_model(family: Family, arch: &str, caps: &Snapshot) -> &'static str {
    // qemuDomainDefaultVideoDevice (qemu_postparse.c): VGA on ppc64, virtio on ARM,
    // RISC-V and LoongArch virt and on s390x, else cirrus when the binary has cirrus-vga,
    // else VGA.
    if arch.starts_with("ppc64") {
        return "vga";
    }
    match family {
        Family::ArmVirt | Family::RiscvVirt | Family::S390 => "virtio",
        _ if caps.has_type("cirrus-vga") => "cirrus",
        _ => "vga",
    }
}

/// The implicit devices of qemuDomainDefAddDefaultDevices, in the order libvirt adds them.
pub fn default_devices(
    family: Family,
    root: Option<PciModel>,
    caps: &Snapshot,
    has_graphics: bool,
    existing: &[&Device],
) -> Vec<Device> {
    let mut out = Vec::new();
    let has_ctrl = |ty: &str, idx: u32| {
        existing.iter().any(|d| {
            matches!(&d.kind, DeviceKind::Controller(c) if c.ctype == ty && c.index == Some(idx))
        })
    };
    let add_usb = matches!(family, Family::Pc | Family::Q35 | Family::Pseries);
    if add_usb && !has_ctrl("usb", 0) {
        let model = default_usb_model(family, caps);
        if model != "none" {
            out.push(controller("usb", 0, Some(model)));
        }
    }
    if family == Family::Q35 && !has_ctrl("sata", 0) {
        out.push(controller("sata", 0, None));
    }
    if let Some(r) = root
        && !has_ctrl("pci", 0)
    {
        out.push(controller("pci", 0, Some(r.as_str())));
    }
    if family == Family::Pseries && has_graphics {
        for t in ["keyboard", "mouse"] {
            let present = existing.iter().any(|d| {
                matches!(&d.kind, DeviceKind::Input(i) if i.itype == t && i.bus.as_deref() == Some("usb"))
            });
            if !present {
                out.push(Device::new(DeviceKind::Input(Input {
                    itype: t.to_string(),
                    bus: Some("usb".into()),
                    model: None,
                    evdev: None,
                })));
            }
        }
    }
    let add_balloon = matches!(
        family,
        Family::Pc | Family::Q35 | Family::Pseries | Family::S390
    );
    if add_balloon
        && !existing
            .iter()
            .any(|d| matches!(d.kind, DeviceKind::Memballoon(_)))
    {
        out.push(Device::new(DeviceKind::Memballoon(ModelOnly {
            model: Some("virtio".into()),
        })));
    }
    let panic_model = match family {
        Family::Pseries => Some("pseries"),
        Family::S390 => Some("s390"),
        _ => None,
    };
    if let Some(pm) = panic_model
        && !existing
            .iter()
            .any(|d| matches!(d.kind, DeviceKind::Panic(_)))
    {
        out.push(Device::new(DeviceKind::Panic(ModelOnly {
            model: Some(pm.into()),
        })));
    }
    out
}

/// A new controller device.
pub fn controller(ty: &str, index: u32, model: Option<&str>) -> Device {
    Device::new(DeviceKind::Controller(Controller {
        ctype: ty.to_string(),
        index: Some(index),
        model: model.map(str::to_string),
        ..Controller::default()
    }))
}

/// Bus categories a machine offers with `-nodefaults`, from the snapshot when probed,
/// otherwise from what is known of the family. Returns whether the snapshot had them.
pub fn categories(caps: &Snapshot, machine: &str, family: Family) -> (Vec<String>, bool) {
    if let Some(mc) = caps.index.machine_caps.get(machine)
        && mc.starts
    {
        return (mc.categories.iter().cloned().collect(), true);
    }
    let v: &[&str] = match family {
        Family::Pc => &["pci", "isa", "ide", "floppy"],
        Family::Q35 => &["pci", "pcie", "isa", "ide"],
        Family::ArmVirt | Family::RiscvVirt => &["pci", "pcie"],
        Family::Pseries => &["pci", "spapr-vio"],
        Family::S390 => &["ccw"],
        Family::Other => &[],
    };
    (v.iter().map(|s| s.to_string()).collect(), false)
}
