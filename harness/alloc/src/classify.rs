//! Device rules: which connect flags a device asks for, whether it can be a CCW device,
//! and where it sits in libvirt's placement and iteration orders.
//!
//! One `match` per question, so that the rule for any device kind reads in one place
//! (libvirt's qemuDomainDeviceCalculatePCIConnectFlags and friends).

use qconform_domxml::{Address, Controller, DeviceKind, HostPciAddress};

use crate::rules::{BaseFlags, Flags, PciModel, Step};

/// NIC models that are conventional PCI devices.
const PCI_NIC_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "rtl8139",
    "vmxnet3",
    "ne2k_pci",
    "pcnet",
    "i82550",
    "i82551",
    "i82557a",
    "i82557b",
    "i82557c",
    "i82558a",
    "i82558b",
    "i82559a",
    "i82559b",
    "i82559c",
    "i82559er",
    "i82562",
    "i82801",
    "tulip",
];

/// NIC models that are never PCI.
const NON_PCI_NIC_MODELS: &[&str] = &["usb-net", "spapr-vlan", "lan9118", "smc91c111"];

/// Whether a NIC model is a virtio model.
pub fn is_virtio_model(model: Option<&str>) -> bool {
    matches!(
        model,
        Some("virtio") | Some("virtio-transitional") | Some("virtio-non-transitional")
    )
}

/// Context for the flag rules.
pub struct Ctx<'a> {
    /// Base flag sets of the domain.
    pub base: BaseFlags,
    /// Host PCI devices known to be (or not be) PCI Express.
    pub host: &'a [qconform_domxml::HostPciFact],
}

impl Ctx<'_> {
    /// Whether the host device is PCI Express, when known.
    pub fn host_express(&self, a: Option<qconform_domxml::HostPciAddress>) -> Option<bool> {
        let a = a?;
        self.host.iter().find(|f| f.address == a).map(|f| f.express)
    }
}

/// The isolation group of a device on pSeries (qemuDomainFillDeviceIsolationGroup): a
/// PCI host device (`<hostdev mode='subsystem' type='pci'>`) is in its host IOMMU group
/// plus one, so that it never shares a bus with emulated devices (group 0); `None` for a
/// PCI host device whose IOMMU group is not described (libvirt then cannot read it and
/// leaves the device in group 0: "device won't be isolated"); `Some(0)` for the rest.
pub fn isolation_group(kind: &DeviceKind, host: &[qconform_domxml::HostPciFact]) -> Option<u32> {
    match kind {
        DeviceKind::Hostdev(h) if h.mode == "subsystem" && h.htype == "pci" => {
            let a = h.host_pci?;
            let g = host.iter().find(|f| f.address == a)?.iommu_group?;
            Some(g.saturating_add(1))
        }
        _ => Some(0),
    }
}

/// Connect flags of a device if it is placed on PCI, `None` when it never takes a PCI
/// slot. `explicit_pci` tells whether the device has a PCI address in the document.
pub fn pci_flags(kind: &DeviceKind, address: &Address, ctx: &Ctx) -> Option<Flags> {
    let b = &ctx.base;
    let explicit_pci = matches!(address, Address::Pci(p) if !p.is_empty());
    match kind {
        DeviceKind::Controller(c) => match c.ctype.as_str() {
            "pci" => {
                let m = PciModel::parse(c.model.as_deref()?)?;
                if m.is_root() {
                    None
                } else {
                    Some(m.rule().plugs_as)
                }
            }
            "usb" => match c.model.as_deref() {
                Some("nec-xhci") | Some("qemu-xhci") => Some(b.pcie),
                Some("none") | Some("qusb1") | Some("qusb2") => None,
                Some("piix3-uhci")
                | Some("piix4-uhci")
                | Some("ehci")
                | Some("ich9-ehci1")
                | Some("ich9-uhci1")
                | Some("ich9-uhci2")
                | Some("ich9-uhci3")
                | Some("vt82c686b-uhci")
                | Some("pci-ohci")
                | Some("default")
                | None => Some(b.pci),
                Some(_) => None,
            },
            "scsi" => match c.model.as_deref() {
                Some("virtio-scsi") | Some("virtio-non-transitional") | None => Some(b.virtio),
                Some("virtio-transitional")
                | Some("lsilogic")
                | Some("lsisas1068")
                | Some("lsisas1078")
                | Some("buslogic")
                | Some("vmpvscsi")
                | Some("dc390")
                | Some("am53c974") => Some(b.pci),
                Some(_) => None,
            },
            "sata" | "ide" => Some(b.pci),
            "virtio-serial" => Some(b.virtio_model(c.model.as_deref())),
            "nvme" => Some(b.pcie),
            _ => None,
        },
        DeviceKind::Disk(d) => match d.bus.as_deref() {
            Some("virtio") => Some(b.virtio_model(d.model.as_deref())),
            _ => None,
        },
        DeviceKind::Interface(i) => {
            if i.itype == "hostdev" {
                return Some(hostdev_pci_flags(
                    explicit_pci,
                    false,
                    ctx.host_express(i.host_pci),
                    b,
                ));
            }
            match i.model.as_deref() {
                Some("virtio") | Some("virtio-non-transitional") => Some(b.virtio),
                Some("virtio-transitional") => Some(b.pci),
                Some("e1000e") | Some("igb") => Some(b.pcie),
                Some(m) if NON_PCI_NIC_MODELS.contains(&m) => None,
                Some(m) if PCI_NIC_MODELS.contains(&m) => Some(b.pci),
                Some(_) => Some(b.pcie),
                None => Some(b.pci),
            }
        }
        DeviceKind::Hostdev(h) => match (h.htype.as_str(), h.model.as_deref()) {
            ("pci", _) => Some(hostdev_pci_flags(
                explicit_pci,
                false,
                ctx.host_express(h.host_pci),
                b,
            )),
            ("mdev", Some("vfio-pci")) => Some(hostdev_pci_flags(explicit_pci, true, None, b)),
            ("scsi_host", _) => Some(b.virtio),
            _ => None,
        },
        DeviceKind::Video(v) => match v.model.as_deref() {
            Some("virtio") => Some(b.virtio),
            Some("vga") | Some("cirrus") | Some("vmvga") | Some("qxl") | Some("xen")
            | Some("vbox") | Some("parallels") => Some(b.pci),
            Some("bochs") => Some(b.pcie),
            _ => None,
        },
        DeviceKind::Sound(s) => match s.model.as_str() {
            "es1370" | "ac97" | "ich6" | "ich9" => Some(b.pci),
            "virtio" => Some(b.virtio),
            _ => None,
        },
        DeviceKind::Memballoon(m) | DeviceKind::Rng(m) => match m.model.as_deref() {
            Some("virtio") | Some("virtio-non-transitional") | None => Some(b.virtio),
            Some("virtio-transitional") => Some(b.pci),
            _ => None,
        },
        DeviceKind::Watchdog(m) => match m.model.as_deref() {
            Some("i6300esb") => Some(b.pci),
            _ => None,
        },
        DeviceKind::Input(i) => match i.bus.as_deref() {
            Some("virtio") => Some(b.virtio_model(i.model.as_deref())),
            _ => None,
        },
        DeviceKind::Filesystem(f) => match f.driver.as_deref() {
            Some("virtiofs") => Some(b.virtio),
            Some("mtp") | Some("loop") | Some("nbd") | Some("ploop") => None,
            _ => Some(b.virtio_model(f.model.as_deref())),
        },
        DeviceKind::Vsock(v) => Some(b.virtio_model(v.model.as_deref())),
        DeviceKind::Iommu(m) => match m.model.as_deref() {
            Some("virtio") => Some(b.virtio.with(Flags::INTEGRATED)),
            Some("amd") => Some(b.pci.with(Flags::INTEGRATED)),
            _ => None,
        },
        DeviceKind::Panic(m) => match m.model.as_deref() {
            Some("pvpanic") => Some(b.pci.with(Flags::INTEGRATED)),
            _ => None,
        },
        DeviceKind::Shmem(_) => Some(b.pci),
        DeviceKind::Memory(m) => match m.model.as_str() {
            "virtio-pmem" | "virtio-mem" => Some(b.virtio),
            _ => None,
        },
        DeviceKind::Chr(c) => match (c.element.as_str(), c.target_type.as_deref()) {
            ("serial", Some("pci-serial")) => Some(b.pci),
            _ => None,
        },
        DeviceKind::Crypto(_) => Some(b.pci),
        DeviceKind::Other(_) => None,
    }
}

/// PCI hostdevs: conventional on PCI-only machines; Express when the user gave a guest
/// address (libvirt is lenient there) or for mdevs. Otherwise libvirt looks at the host
/// device: Express or not as the device says, and Express when the device does not
/// exist on the host ("the overwhelming majority of assignable devices are PCIe"). A plan
/// cannot look, so it uses the domain's `<metadata>` host facts and otherwise libvirt's
/// answer for a device it cannot find.
fn hostdev_pci_flags(
    explicit_pci: bool,
    mdev: bool,
    express: Option<bool>,
    b: &BaseFlags,
) -> Flags {
    if b.pci == b.pcie {
        b.pci
    } else if explicit_pci || mdev {
        b.pcie
    } else if express == Some(false) {
        b.pci
    } else {
        b.pcie
    }
}

/// How an error names a device that takes a PCI slot (`<interface> model 'e1000'`,
/// `<controller type='pci' model='pci-bridge'>`, `<memballoon>`), `None` for a device
/// that never takes one. `takes_pci` is whether [`pci_flags`] gave it flags.
pub fn pci_device_name(kind: &DeviceKind, takes_pci: bool) -> Option<String> {
    if let DeviceKind::Controller(c) = kind
        && c.ctype == "pci"
    {
        // The root controllers take no slot; the check for them is libvirt's own.
        return takes_pci.then(|| {
            format!(
                "<controller type='pci' model='{}'>",
                c.model.as_deref().unwrap_or_default()
            )
        });
    }
    if !takes_pci {
        return None;
    }
    let model = match kind {
        DeviceKind::Controller(c) => {
            return Some(format!(
                "<controller type='{}'{}>",
                c.ctype,
                c.model
                    .as_deref()
                    .map(|m| format!(" model='{m}'"))
                    .unwrap_or_default()
            ));
        }
        DeviceKind::Interface(i) => i.model.clone(),
        DeviceKind::Video(v) => v.model.clone(),
        DeviceKind::Sound(s) => Some(s.model.clone()),
        DeviceKind::Memballoon(m)
        | DeviceKind::Rng(m)
        | DeviceKind::Watchdog(m)
        | DeviceKind::Iommu(m)
        | DeviceKind::Panic(m)
        | DeviceKind::Crypto(m) => m.model.clone(),
        DeviceKind::Memory(m) => Some(m.model.clone()),
        DeviceKind::Hostdev(h) => return Some(format!("<hostdev type='{}'>", h.htype)),
        _ => None,
    };
    Some(match model {
        Some(m) => format!("<{}> model '{m}'", kind.element()),
        None => format!("<{}>", kind.element()),
    })
}

/// Whether a device without an address becomes a CCW device on an s390-ccw machine.
pub fn ccw_default(kind: &DeviceKind, vfio_ccw: bool) -> bool {
    match kind {
        DeviceKind::Disk(d) => d.bus.as_deref() == Some("virtio"),
        DeviceKind::Interface(i) => i.itype != "hostdev" && is_virtio_model(i.model.as_deref()),
        DeviceKind::Video(v) => v.model.as_deref() == Some("virtio"),
        DeviceKind::Input(i) => i.bus.as_deref() == Some("virtio"),
        DeviceKind::Controller(c) => match c.ctype.as_str() {
            "virtio-serial" => true,
            "scsi" => matches!(
                c.model.as_deref(),
                Some("virtio-scsi") | Some("virtio-non-transitional") | Some("virtio-transitional")
            ),
            _ => false,
        },
        DeviceKind::Hostdev(h) => h.htype == "scsi_host" || (is_vfio_ccw(kind) && vfio_ccw),
        DeviceKind::Memballoon(m) | DeviceKind::Rng(m) => {
            m.model.as_deref().is_none_or(|s| s.starts_with("virtio"))
        }
        DeviceKind::Memory(m) => matches!(m.model.as_str(), "virtio-pmem" | "virtio-mem"),
        DeviceKind::Filesystem(_) | DeviceKind::Vsock(_) | DeviceKind::Crypto(_) => true,
        DeviceKind::Sound(s) => s.model == "virtio",
        _ => false,
    }
}

/// Whether a device may carry an explicit CCW address.
pub fn ccw_capable(kind: &DeviceKind) -> bool {
    match kind {
        DeviceKind::Hostdev(h) => h.htype == "scsi_host" || is_vfio_ccw(kind),
        other => ccw_default(other, true),
    }
}

/// The placement step of a device that wants a PCI slot.
pub fn step(kind: &DeviceKind) -> Option<Step> {
    Some(match kind {
        DeviceKind::Controller(c) => {
            if c.ctype == "pci" {
                Step::PciControllers
            } else if c.ctype == "ide" && c.index == Some(0) {
                // The PIIX3 IDE function; placed with the chipset slots.
                return None;
            } else {
                Step::Controllers
            }
        }
        DeviceKind::Filesystem(_) => Step::Filesystems,
        DeviceKind::Interface(i) if i.itype == "hostdev" => Step::Hostdevs,
        DeviceKind::Interface(_) => Step::Nets,
        DeviceKind::Sound(_) => Step::Sounds,
        DeviceKind::Disk(_) => Step::Disks,
        DeviceKind::Hostdev(_) => Step::Hostdevs,
        DeviceKind::Memballoon(_) => Step::Memballoon,
        DeviceKind::Rng(_) => Step::Rngs,
        DeviceKind::Watchdog(_) => Step::Watchdogs,
        DeviceKind::Video(_) => Step::Videos,
        DeviceKind::Shmem(_) => Step::Shmems,
        DeviceKind::Input(_) => Step::Inputs,
        DeviceKind::Chr(_) => Step::Serials,
        DeviceKind::Iommu(_) => Step::Iommus,
        DeviceKind::Vsock(_) => Step::Vsock,
        DeviceKind::Memory(_) => Step::Memories,
        DeviceKind::Crypto(_) => Step::Cryptos,
        DeviceKind::Panic(_) => Step::Panics,
        DeviceKind::Other(_) => return None,
    })
}

/// Rank of a device kind in libvirt's device iteration order (virDomainDeviceInfoIterate),
/// which decides zPCI uid/fid and CCW devno assignment order.
pub fn iteration_rank(kind: &DeviceKind) -> u8 {
    match kind {
        DeviceKind::Disk(_) => 0,
        DeviceKind::Interface(_) => 1,
        DeviceKind::Sound(_) => 2,
        DeviceKind::Hostdev(_) => 3,
        DeviceKind::Video(_) => 4,
        DeviceKind::Controller(_) => 5,
        DeviceKind::Chr(c) => match c.element.as_str() {
            "serial" => 7,
            "parallel" => 8,
            "channel" => 9,
            _ => 10,
        },
        DeviceKind::Input(_) => 11,
        DeviceKind::Filesystem(_) => 12,
        DeviceKind::Watchdog(_) => 13,
        DeviceKind::Memballoon(_) => 14,
        DeviceKind::Rng(_) => 16,
        DeviceKind::Shmem(_) => 18,
        DeviceKind::Panic(_) => 20,
        DeviceKind::Memory(_) => 21,
        DeviceKind::Vsock(_) => 23,
        DeviceKind::Iommu(_) => 24,
        DeviceKind::Crypto(_) => 25,
        DeviceKind::Other(_) => 30,
    }
}

/// Whether a device may get a zPCI extension (libvirt: every PCI device but character
/// devices).
pub fn zpci_capable(kind: &DeviceKind) -> bool {
    !matches!(kind, DeviceKind::Chr(_))
}

/// Whether a device is a vfio-ccw mediated device (an s390x channel device).
pub fn is_vfio_ccw(kind: &DeviceKind) -> bool {
    matches!(kind, DeviceKind::Hostdev(h)
        if h.htype == "mdev" && h.model.as_deref() == Some("vfio-ccw"))
}

/// Whether a device is a vfio-ap mediated device (an s390x crypto adapter, on no bus we
/// address).
pub fn is_vfio_ap(kind: &DeviceKind) -> bool {
    matches!(kind, DeviceKind::Hostdev(h)
        if h.htype == "mdev" && h.model.as_deref() == Some("vfio-ap"))
}

/// Whether a device is a PCI host device (`<hostdev type='pci'>`), the only kind that may
/// be `unassigned`.
pub fn is_pci_hostdev(kind: &DeviceKind) -> bool {
    matches!(kind, DeviceKind::Hostdev(h) if h.htype == "pci")
}

/// For a device passed through from a host PCI device (`<hostdev type='pci'>`,
/// `<interface type='hostdev'>`), the host address when the document gives one; `None`
/// for every other device.
pub fn host_pci_device(kind: &DeviceKind) -> Option<Option<HostPciAddress>> {
    match kind {
        DeviceKind::Hostdev(h) if h.htype == "pci" => Some(h.host_pci),
        DeviceKind::Interface(n) if n.itype == "hostdev" => Some(n.host_pci),
        _ => None,
    }
}

/// Whether a device asks for a virtio (non-)transitional model, which needs the QEMU
/// variant devices and has no CCW form.
pub fn wants_virtio_variant(kind: &DeviceKind) -> bool {
    let model = match kind {
        DeviceKind::Disk(k) => k.model.as_deref(),
        DeviceKind::Interface(n) => n.model.as_deref(),
        DeviceKind::Memballoon(m) | DeviceKind::Rng(m) => m.model.as_deref(),
        DeviceKind::Input(n) => n.model.as_deref(),
        DeviceKind::Filesystem(fs) => fs.model.as_deref(),
        DeviceKind::Vsock(v) => v.model.as_deref(),
        DeviceKind::Controller(c) if c.ctype != "pci" => c.model.as_deref(),
        _ => None,
    };
    matches!(
        model,
        Some("virtio-transitional") | Some("virtio-non-transitional")
    )
}

/// The PIIX3 function a pc machine's controller 0 of this kind must sit on (slot 00:01):
/// the IDE controller on function 1, a piix3-uhci USB controller on function 2.
pub fn piix3_function(c: &Controller) -> Option<u8> {
    match (c.ctype.as_str(), c.model.as_deref()) {
        ("ide", _) => Some(1),
        ("usb", Some("piix3-uhci")) => Some(2),
        _ => None,
    }
}

/// An ICH9 USB companion controller: its function in the shared slot (uhci1-3 on 0-2,
/// ehci1 on 7) and its index, which pairs the companions.
pub fn usb_companion(kind: &DeviceKind) -> Option<(u8, u32)> {
    let DeviceKind::Controller(c) = kind else {
        return None;
    };
    if c.ctype != "usb" {
        return None;
    }
    let function = match c.model.as_deref()? {
        "ich9-uhci1" => 0,
        "ich9-uhci2" => 1,
        "ich9-uhci3" => 2,
        "ich9-ehci1" => 7,
        _ => return None,
    };
    Some((function, c.index.unwrap_or(0)))
}

/// Whether a USB controller is a companion of another one (libvirt's mastertype USB):
/// `ich9-uhci1..3` always are (virDomainControllerDefParseXML gives them startport 0, 2,
/// 4), any other model when the document gives `<master startport=...>`. A companion
/// has no QEMU id of its own: it names its master's bus instead.
pub fn usb_master_startport(c: &qconform_domxml::Controller) -> Option<u32> {
    if c.ctype != "usb" {
        return None;
    }
    c.master_startport.or(match c.model.as_deref() {
        Some("ich9-uhci1") => Some(0),
        Some("ich9-uhci2") => Some(2),
        Some("ich9-uhci3") => Some(4),
        _ => None,
    })
}

/// Ports of a USB controller's own bus (domain_addr.c,
/// virDomainUSBAddressControllerModelToPorts); 0 for the ICH9 UHCI companions, whose
/// ports belong to their EHCI master's bus, and for `none`.
pub fn usb_ports(c: &qconform_domxml::Controller) -> u32 {
    match c.model.as_deref() {
        None
        | Some("default")
        | Some("piix3-uhci")
        | Some("piix4-uhci")
        | Some("vt82c686b-uhci") => 2,
        Some("ehci") | Some("ich9-ehci1") => 6,
        Some("pci-ohci") => 3,
        Some("nec-xhci") | Some("qemu-xhci") => c.ports.unwrap_or(4),
        Some("qusb1") | Some("qusb2") => c.ports.unwrap_or(8),
        _ => 0,
    }
}

/// Whether a device is an ich9 sound card (the first goes to 00:1b.0 on q35 when free).
pub fn is_ich9_sound(kind: &DeviceKind) -> bool {
    matches!(kind, DeviceKind::Sound(s) if s.model == "ich9")
}

/// Whether a primary video device takes no chipset video slot (`none`, `ramfb`).
pub fn is_slotless_video(kind: &DeviceKind) -> bool {
    matches!(kind, DeviceKind::Video(v)
        if matches!(v.model.as_deref(), Some("none") | Some("ramfb")))
}
