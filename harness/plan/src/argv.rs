//! The QEMU command line of an allocation.
//!
//! Every device gets an explicit `id=`, `bus=` and `addr=` (or `devno=` on CCW), in QemuOpts
//! syntax, which every supported QEMU version accepts. Backends need no host resources
//! where that is possible (null block driver, builtin RNG, null chardevs, no netdev); the
//! ones that inherently need the host (vfio, vhost, 9p/virtiofs paths) are listed in
//! `host_resources`.

use std::collections::BTreeMap;

use qconform_alloc::{Allocation, Attach, Dev, Family, PciModel};
use qconform_caps::{LaunchOutcome, Placement, Snapshot, device_ids_of_argv, placement_of_key};
use qconform_domxml::{Address, DeviceKind, Domain};

use crate::opts::Opts;

/// What [`build`] produces.
#[derive(Debug, Default)]
pub struct Emitted {
    /// Arguments after the binary.
    pub argv: Vec<String>,
    /// What the argv needs from the host to launch (vfio devices, paths, sockets).
    pub host_resources: Vec<String>,
    /// Notes about what was not emitted and why.
    pub warnings: Vec<String>,
    /// The QEMU device type emitted for each allocation device (`None`: nothing emitted,
    /// e.g. built-in functions, unassigned hostdevs).
    pub drivers: Vec<Option<String>>,
}

/// A rejection found while building the command line.
#[derive(Debug)]
pub struct ArgvError {
    /// Device index in the allocation.
    pub device: usize,
    /// What is wrong.
    pub message: String,
}

struct B<'a> {
    a: &'a Allocation,
    caps: &'a Snapshot,
    out: Emitted,
    audiodev: bool,
    blockdevs: usize,
    /// Options devices add to `-machine`, as (key, value) in the order they were added.
    machine_opts: Vec<(&'static str, &'static str)>,
    fdc_added: bool,
    /// Effective `bootindex` of each device (see [`boot_indexes`]).
    boot: Vec<Option<u32>>,
}

type R<T> = Result<T, ArgvError>;

fn variant(base: &str, model: Option<&str>) -> String {
    match model {
        Some("virtio-transitional") => format!("{base}-transitional"),
        Some("virtio-non-transitional") => format!("{base}-non-transitional"),
        _ => base.to_string(),
    }
}

/// `virtio-<x>-pci[-variant]` or `virtio-<x>-ccw`.
fn virtio_dev(x: &str, d: &Dev, model: Option<&str>) -> String {
    if d.attach == Attach::Ccw {
        format!("{x}-ccw")
    } else {
        variant(&format!("{x}-pci"), model)
    }
}

/// Emission order: iommu, controllers by type then index, then devices by class.
fn emit_rank(d: &Dev) -> (u8, u32) {
    match &d.device.kind {
        DeviceKind::Iommu(_) => (0, 0),
        DeviceKind::Controller(c) => {
            let r = match c.ctype.as_str() {
                "pci" => 1,
                "usb" => 2,
                "scsi" => 3,
                "ide" => 4,
                "sata" => 5,
                "virtio-serial" => 6,
                "nvme" => 7,
                _ => 8,
            };
            (r, c.index.unwrap_or(0))
        }
        DeviceKind::Disk(_) => (10, 0),
        DeviceKind::Filesystem(_) => (11, 0),
        DeviceKind::Interface(_) => (12, 0),
        DeviceKind::Chr(c) => match c.element.as_str() {
            "serial" => (13, 0),
            "parallel" => (14, 0),
            "channel" => (15, 0),
            _ => (16, 0),
        },
        DeviceKind::Input(_) => (17, 0),
        DeviceKind::Sound(_) => (18, 0),
        DeviceKind::Video(_) => (19, 0),
        DeviceKind::Watchdog(_) => (20, 0),
        DeviceKind::Hostdev(_) => (21, 0),
        DeviceKind::Memballoon(_) => (22, 0),
        DeviceKind::Rng(_) => (23, 0),
        DeviceKind::Shmem(_) => (24, 0),
        DeviceKind::Vsock(_) => (25, 0),
        DeviceKind::Memory(_) => (26, 0),
        DeviceKind::Crypto(_) => (27, 0),
        DeviceKind::Panic(_) => (28, 0),
        DeviceKind::Other(_) => (29, 0),
    }
}

/// Builds the command line.
pub fn build(a: &Allocation, dom: &Domain, caps: &Snapshot) -> Result<Emitted, ArgvError> {
    let mut b = B {
        a,
        caps,
        out: Emitted {
            drivers: vec![None; a.devices.len()],
            ..Emitted::default()
        },
        audiodev: false,
        blockdevs: 0,
        machine_opts: Vec::new(),
        fdc_added: false,
        boot: boot_indexes(a, dom),
    };
    // Disks in libvirt's disk-list order, everything else in document order.
    let disk_pos: BTreeMap<usize, usize> = qconform_alloc::libvirt_disk_order(&a.devices)
        .into_iter()
        .enumerate()
        .map(|(p, i)| (i, p))
        .collect();
    let mut order: Vec<usize> = (0..a.devices.len()).collect();
    order.sort_by_key(|&i| {
        (
            emit_rank(&a.devices[i]),
            disk_pos.get(&i).copied().unwrap_or(i),
        )
    });
    let mut devices: Vec<String> = Vec::new();
    for i in order {
        let args = b.device(i)?;
        devices.extend(args);
    }
    let mut argv: Vec<String> = Vec::new();
    let mut machine = Opts::new(&a.machine);
    for (k, v) in &b.machine_opts {
        machine = machine.kv(k, v);
    }
    argv.push("-machine".into());
    argv.push(machine.finish());
    argv.push("-nodefaults".into());
    argv.push("-display".into());
    argv.push("none".into());
    if let Some(m) = memory_arg(a, dom) {
        argv.push("-m".into());
        argv.push(m);
    }
    if a.family == Family::Pc
        && let Some(hotplug) = a
            .pci_controller(0)
            .and_then(|d| d.controller())
            .and_then(|c| c.target.hotplug)
    {
        argv.push("-global".into());
        argv.push(format!(
            "PIIX4_PM.acpi-root-pci-hotplug={}",
            if hotplug { "on" } else { "off" }
        ));
    }
    argv.extend(devices);
    b.out.argv = argv;
    Ok(b.out)
}

/// libvirt's effective boot index of each device. Per-device `<boot order>` wins; without
/// it the `<os><boot dev>` list applies (`hd` alone when none is given): the position of
/// `hd` goes to the first disk (or lun), `cdrom` to the first cdrom, `fd` to the first
/// floppy, all in libvirt's disk order, and `network` to the first interface.
fn boot_indexes(a: &Allocation, dom: &Domain) -> Vec<Option<u32>> {
    let mut out: Vec<Option<u32>> = a.devices.iter().map(|d| d.device.boot_order).collect();
    if out.iter().any(Option::is_some) {
        return out;
    }
    let mut by_dev: BTreeMap<&str, u32> = BTreeMap::new();
    let default = ["hd".to_string()];
    let devs: &[String] = if dom.boot_devs.is_empty() {
        &default
    } else {
        &dom.boot_devs
    };
    for (n, v) in devs.iter().enumerate() {
        // A later repetition wins for disks, the first for the network, as in libvirt.
        let pos = u32::try_from(n + 1).unwrap_or(u32::MAX);
        if v == "network" {
            by_dev.entry("network").or_insert(pos);
        } else {
            by_dev.insert(v.as_str(), pos);
        }
    }
    for i in qconform_alloc::libvirt_disk_order(&a.devices) {
        let DeviceKind::Disk(k) = &a.devices[i].device.kind else {
            continue;
        };
        let key = match k.device.as_str() {
            "cdrom" => "cdrom",
            "floppy" => "fd",
            _ => "hd",
        };
        if let Some(b) = by_dev.remove(key) {
            out[i] = Some(b);
        }
    }
    if let Some(b) = by_dev.remove("network")
        && let Some(i) = a
            .devices
            .iter()
            .position(|d| matches!(d.device.kind, DeviceKind::Interface(_)))
    {
        out[i] = Some(b);
    }
    out
}

/// `-m` is only needed when memory devices need slots.
fn memory_arg(a: &Allocation, dom: &Domain) -> Option<String> {
    let mems: Vec<u64> = a
        .devices
        .iter()
        .filter_map(|d| match &d.device.kind {
            DeviceKind::Memory(m) => Some(m.size_kib.unwrap_or(131072)),
            _ => None,
        })
        .collect();
    if mems.is_empty() {
        return None;
    }
    let base = dom.memory_kib.unwrap_or(262144);
    let max = dom
        .max_memory_kib
        .unwrap_or_else(|| base + mems.iter().sum::<u64>());
    let slots = dom.memory_slots.unwrap_or(16);
    Some(format!("size={base}k,slots={slots},maxmem={max}k"))
}

impl B<'_> {
    fn err(&self, i: usize, message: impl Into<String>) -> ArgvError {
        ArgvError {
            device: i,
            message: message.into(),
        }
    }

    /// Checks that the binary has the device type.
    fn have(&self, i: usize, driver: &str) -> R<()> {
        if self.caps.has_device(driver) {
            Ok(())
        } else {
            Err(self.err(
                i,
                format!(
                    "device type '{driver}' is not available in QEMU {}",
                    self.caps.id()
                ),
            ))
        }
    }

    /// `bus=..,[multifunction=on,]addr=..` or `devno=..`, after a `zpci` device when
    /// the device has a zPCI address. Returns the zpci argument pair too.
    fn place(&self, i: usize, o: Opts) -> (Vec<String>, Opts) {
        let d = &self.a.devices[i];
        let mut pre = Vec::new();
        match (&d.device.address, d.attach) {
            (Address::Pci(p), Attach::Pci) => {
                if let Some(z) = p.zpci {
                    let uid = z.uid.unwrap_or(0);
                    pre.push("-device".to_string());
                    pre.push(
                        Opts::new("zpci")
                            .kv("uid", uid.to_string())
                            .kv("fid", z.fid.unwrap_or(0).to_string())
                            .kv("target", &d.alias)
                            .kv("id", format!("zpci{uid}"))
                            .finish(),
                    );
                }
                let mut o = o.kv("bus", self.a.pci_bus_name(p.bus));
                // libvirt never asks for multifunction on s390x, where a zPCI device is
                // function 0 alone; some QEMU releases refuse the option there
                // ("multifunction not supported in s390").
                if p.multifunction == Some(true) && self.a.family != Family::S390 {
                    o = o.kv("multifunction", "on");
                }
                let addr = if p.function == 0 {
                    format!("0x{:x}", p.slot)
                } else {
                    format!("0x{:x}.0x{:x}", p.slot, p.function)
                };
                (pre, o.kv("addr", addr))
            }
            (Address::Ccw(c), Attach::Ccw) => (pre, o.kv("devno", c.to_string())),
            _ => (pre, o),
        }
    }

    /// QEMU's own refusal of `driver` where device `i` sits, when the snapshot recorded
    /// one (see [`recorded_refusal`]).
    fn refused_here(&self, i: usize, driver: &str) -> R<()> {
        let d = &self.a.devices[i];
        let Some(p) = d.pci() else { return Ok(()) };
        let behind_port = self
            .a
            .pci_controller(p.bus)
            .and_then(Dev::pci_model)
            .is_some_and(PciModel::is_pcie_port);
        let placement = if behind_port {
            Placement::PciePort
        } else {
            Placement::Root
        };
        match recorded_refusal(self.caps, self.a.family, driver, placement) {
            Some(msg) => Err(self.err(
                i,
                format!(
                    "QEMU {} refuses {driver} here: {msg} (recorded when the snapshot was probed)",
                    self.caps.id()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Emits `-device` for device `i` with QEMU type `driver` and its own properties.
    fn dev(&mut self, i: usize, driver: &str, props: Opts) -> R<Vec<String>> {
        self.have(i, driver)?;
        self.refused_here(i, driver)?;
        if self.a.devices[i].attach != Attach::Pci && self.caps.implements(driver, "pci-device") {
            // Without bus= and addr= QEMU would pick a slot itself, maybe one the plan
            // gave another device.
            return Err(self.err(
                i,
                format!("{driver} is a PCI device but the plan has no PCI address for it"),
            ));
        }
        self.out.drivers[i] = Some(driver.to_string());
        let d = &self.a.devices[i];
        let companion = d
            .controller()
            .is_some_and(|c| qconform_alloc::usb_master_startport(c).is_some());
        let mut o = if companion {
            props
        } else {
            props.kv("id", &d.alias)
        };
        if let Some(b) = self.boot.get(i).copied().flatten() {
            o = o.kv("bootindex", b.to_string());
        }
        let (mut v, o) = self.place(i, o);
        v.push("-device".into());
        v.push(o.finish());
        Ok(v)
    }

    fn host(&mut self, what: String) {
        if !self.out.host_resources.contains(&what) {
            self.out.host_resources.push(what);
        }
    }

    fn warn(&mut self, what: String) {
        self.out.warnings.push(what);
    }

    fn usb_bus(&self, i: usize) -> R<String> {
        match self.a.controller("usb", 0) {
            Some(u) if u.controller().and_then(|c| c.model.as_deref()) != Some("none") => {
                Ok(format!("{}.0", u.alias))
            }
            _ => Err(self.err(i, "a USB device needs a USB controller")),
        }
    }

    fn audio(&mut self) -> Vec<String> {
        if self.audiodev {
            return Vec::new();
        }
        self.audiodev = true;
        vec!["-audiodev".into(), "none,id=audio1".into()]
    }

    fn device(&mut self, i: usize) -> R<Vec<String>> {
        let a = self.a;
        let d = &a.devices[i];
        if d.attach == Attach::Unassigned {
            return Ok(Vec::new());
        }
        let alias = d.alias.clone();
        match &d.device.kind {
            DeviceKind::Controller(c) => self.controller(i, c),
            DeviceKind::Disk(k) => self.disk(i, k),
            DeviceKind::Interface(n) => {
                if n.itype == "hostdev" {
                    let Some(h) = n.host_pci else {
                        return Err(
                            self.err(i, "interface type='hostdev' has no <source><address>")
                        );
                    };
                    self.host(format!("{alias}: host PCI device {h} bound to vfio-pci"));
                    return self.dev(
                        i,
                        "vfio-pci",
                        Opts::new("vfio-pci").kv("host", h.to_string()),
                    );
                }
                let model = n.model.as_deref().unwrap_or("rtl8139");
                let driver = if qconform_alloc::is_virtio_model(Some(model)) {
                    virtio_dev("virtio-net", d, Some(model))
                } else {
                    model.to_string()
                };
                let o = Opts::new(&driver).opt("mac", n.mac.as_deref());
                let mut v = Vec::new();
                if model == "usb-net" {
                    let bus = self.usb_bus(i)?;
                    v.extend(self.dev(i, &driver, o.kv("bus", bus))?);
                } else {
                    v.extend(self.dev(i, &driver, o)?);
                }
                Ok(v)
            }
            DeviceKind::Hostdev(h) => match (h.htype.as_str(), h.model.as_deref()) {
                ("pci", _) => {
                    let Some(src) = h.host_pci else {
                        return Err(self.err(i, "PCI hostdev has no <source><address>"));
                    };
                    self.host(format!("{alias}: host PCI device {src} bound to vfio-pci"));
                    self.dev(
                        i,
                        "vfio-pci",
                        Opts::new("vfio-pci").kv("host", src.to_string()),
                    )
                }
                ("mdev", model) => {
                    let Some(uuid) = &h.uuid else {
                        return Err(self.err(i, "mdev hostdev has no <source><address uuid=...>"));
                    };
                    let sysfs = format!("/sys/bus/mdev/devices/{uuid}");
                    self.host(format!("{alias}: mediated device {sysfs}"));
                    let driver = match model {
                        Some("vfio-ccw") => "vfio-ccw",
                        Some("vfio-ap") => "vfio-ap",
                        _ => "vfio-pci",
                    };
                    self.dev(i, driver, Opts::new(driver).kv("sysfsdev", sysfs))
                }
                ("scsi_host", _) => {
                    let wwpn = h.wwpn.clone().unwrap_or_default();
                    self.host(format!("{alias}: vhost-scsi target {wwpn}"));
                    let driver = virtio_dev("vhost-scsi", d, None);
                    self.dev(i, &driver, Opts::new(&driver).kv("wwpn", wwpn))
                }
                (t, _) => {
                    self.warn(format!(
                        "{alias}: hostdev type '{t}' is not put on the command line"
                    ));
                    Ok(Vec::new())
                }
            },
            DeviceKind::Video(v) => {
                let primary = a
                    .devices
                    .iter()
                    .position(|x| matches!(&x.device.kind, DeviceKind::Video(w) if w.primary))
                    .or_else(|| {
                        a.devices
                            .iter()
                            .position(|x| matches!(x.device.kind, DeviceKind::Video(_)))
                    })
                    == Some(i);
                let driver = match v.model.as_deref() {
                    Some("vga") => "VGA".to_string(),
                    Some("cirrus") => "cirrus-vga".into(),
                    Some("vmvga") => "vmware-svga".into(),
                    Some("qxl") if primary => "qxl-vga".into(),
                    Some("qxl") => "qxl".into(),
                    Some("bochs") => "bochs-display".into(),
                    Some("ramfb") => "ramfb".into(),
                    Some("virtio") if d.attach == Attach::Ccw => "virtio-gpu-ccw".into(),
                    Some("virtio")
                        if primary && a.family.is_x86() && self.caps.has_device("virtio-vga") =>
                    {
                        "virtio-vga".into()
                    }
                    Some("virtio") => "virtio-gpu-pci".into(),
                    Some("none") | None => return Ok(Vec::new()),
                    Some(m) => {
                        return Err(
                            self.err(i, format!("video model '{m}' is not supported by QEMU"))
                        );
                    }
                };
                self.dev(i, &driver, Opts::new(&driver))
            }
            DeviceKind::Sound(s) => self.sound(i, s),
            DeviceKind::Memballoon(m) => match m.model.as_deref() {
                Some("none") => Ok(Vec::new()),
                model => {
                    let driver = virtio_dev("virtio-balloon", d, model);
                    self.dev(i, &driver, Opts::new(&driver))
                }
            },
            DeviceKind::Rng(m) => {
                let obj = format!("obj{alias}");
                let driver = virtio_dev("virtio-rng", d, m.model.as_deref());
                let mut v = vec![
                    "-object".to_string(),
                    Opts::new("rng-builtin").kv("id", &obj).finish(),
                ];
                v.extend(self.dev(i, &driver, Opts::new(&driver).kv("rng", &obj))?);
                Ok(v)
            }
            DeviceKind::Watchdog(m) => match m.model.as_deref() {
                Some("i6300esb") => self.dev(i, "i6300esb", Opts::new("i6300esb")),
                Some("ib700") => self.dev(i, "ib700", Opts::new("ib700")),
                Some("diag288") => self.dev(i, "diag288", Opts::new("diag288")),
                Some("itco") => Ok(Vec::new()),
                other => Err(self.err(
                    i,
                    format!("watchdog model '{}' is not supported", other.unwrap_or("")),
                )),
            },
            DeviceKind::Input(n) => self.input(i, n),
            DeviceKind::Filesystem(f) => self.filesystem(i, f),
            DeviceKind::Vsock(v) => {
                let driver = virtio_dev("vhost-vsock", d, v.model.as_deref());
                self.host(format!("{alias}: /dev/vhost-vsock"));
                let cid = v.cid.unwrap_or(3).to_string();
                self.dev(i, &driver, Opts::new(&driver).kv("guest-cid", cid))
            }
            DeviceKind::Iommu(m) => match m.model.as_deref() {
                Some("intel") => self.dev(i, "intel-iommu", Opts::new("intel-iommu")),
                Some("virtio") => self.dev(i, "virtio-iommu-pci", Opts::new("virtio-iommu-pci")),
                Some("amd") => self.dev(i, "amd-iommu", Opts::new("amd-iommu")),
                Some("smmuv3") => {
                    self.machine_opts.push(("iommu", "smmuv3"));
                    Ok(Vec::new())
                }
                other => Err(self.err(
                    i,
                    format!("IOMMU model '{}' is not supported", other.unwrap_or("")),
                )),
            },
            DeviceKind::Panic(m) => match m.model.as_deref() {
                Some("isa") => self.dev(i, "pvpanic", Opts::new("pvpanic")),
                Some("pvpanic") => self.dev(i, "pvpanic-pci", Opts::new("pvpanic-pci")),
                _ => Ok(Vec::new()),
            },
            DeviceKind::Shmem(s) => {
                let model = s.model.as_deref().unwrap_or("ivshmem-plain");
                match model {
                    "ivshmem-plain" => {
                        let mem = format!("shmmem-{alias}");
                        let size = s.size_bytes.unwrap_or(4 << 20);
                        let mut v = vec![
                            "-object".to_string(),
                            Opts::new("memory-backend-ram")
                                .kv("id", &mem)
                                .kv("size", size.to_string())
                                .kv("share", "on")
                                .finish(),
                        ];
                        v.extend(self.dev(
                            i,
                            "ivshmem-plain",
                            Opts::new("ivshmem-plain").kv("memdev", &mem),
                        )?);
                        Ok(v)
                    }
                    "ivshmem-doorbell" => {
                        let chr = format!("charshmem-{alias}");
                        let path = format!("/var/lib/libvirt/shmem-{}-sock", s.name);
                        self.host(format!("{alias}: ivshmem server socket {path}"));
                        let mut v = vec![
                            "-chardev".to_string(),
                            Opts::new("socket")
                                .kv("id", &chr)
                                .kv("path", &path)
                                .finish(),
                        ];
                        v.extend(self.dev(
                            i,
                            "ivshmem-doorbell",
                            Opts::new("ivshmem-doorbell").kv("chardev", &chr),
                        )?);
                        Ok(v)
                    }
                    m => Err(self.err(i, format!("shmem model '{m}' is not supported by QEMU"))),
                }
            }
            DeviceKind::Memory(m) => {
                let size = m.size_kib.unwrap_or(131072);
                let mem = format!("mem{alias}");
                let (driver, backend) = match m.model.as_str() {
                    "virtio-mem" => (virtio_dev("virtio-mem", d, None), "memory-backend-ram"),
                    "virtio-pmem" => (virtio_dev("virtio-pmem", d, None), "memory-backend-file"),
                    "nvdimm" => ("nvdimm".to_string(), "memory-backend-file"),
                    _ => ("pc-dimm".to_string(), "memory-backend-ram"),
                };
                let mut obj = Opts::new(backend)
                    .kv("id", &mem)
                    .kv("size", format!("{size}k"));
                if backend == "memory-backend-file" {
                    let p = m.path.clone().unwrap_or_else(|| "/tmp".into());
                    self.host(format!("{alias}: backing file {p}"));
                    obj = obj.kv("mem-path", p);
                }
                let mut v = vec!["-object".to_string(), obj.finish()];
                let mut o = Opts::new(&driver).kv("memdev", &mem);
                if let Some(n) = m.node {
                    o = o.kv("node", n.to_string());
                }
                v.extend(self.dev(i, &driver, o)?);
                Ok(v)
            }
            DeviceKind::Chr(c) => self.chr(i, c),
            DeviceKind::Crypto(_) => {
                let obj = format!("obj{alias}");
                let driver = virtio_dev("virtio-crypto", d, None);
                let mut v = vec![
                    "-object".to_string(),
                    Opts::new("cryptodev-backend-builtin")
                        .kv("id", &obj)
                        .finish(),
                ];
                v.extend(self.dev(i, &driver, Opts::new(&driver).kv("cryptodev", &obj))?);
                Ok(v)
            }
            DeviceKind::Other(name) => {
                if name != "graphics" && name != "audio" {
                    self.warn(format!("{alias}: <{name}> is not put on the command line"));
                }
                Ok(Vec::new())
            }
        }
    }

    fn controller(&mut self, i: usize, c: &qconform_domxml::Controller) -> R<Vec<String>> {
        let a = self.a;
        let d = &a.devices[i];
        let idx = c.index.unwrap_or(0);
        match c.ctype.as_str() {
            "pci" => {
                let Some(model) = d.pci_model() else {
                    return Ok(Vec::new());
                };
                let name = c.model_name.clone().unwrap_or_default();
                let t = &c.target;
                let o = match model {
                    PciModel::PcieRoot => return Ok(Vec::new()),
                    PciModel::PciRoot => {
                        if idx == 0 || a.family != Family::Pseries {
                            return Ok(Vec::new());
                        }
                        let o = Opts::new(&name).kv("index", t.index.unwrap_or(idx).to_string());
                        return self.dev(i, &name, o);
                    }
                    PciModel::PciBridge => {
                        Opts::new(&name).kv("chassis_nr", t.chassis_nr.unwrap_or(idx).to_string())
                    }
                    PciModel::PciExpanderBus | PciModel::PcieExpanderBus => Opts::new(&name)
                        .kv("bus_nr", t.bus_nr.unwrap_or(254).to_string())
                        .opt("numa_node", t.numa_node.map(|n| n.to_string())),
                    PciModel::PcieRootPort | PciModel::SwitchDownstreamPort => {
                        let mut o = Opts::new(&name)
                            .kv("port", format!("0x{:x}", t.port.unwrap_or(0)))
                            .kv("chassis", t.chassis.unwrap_or(idx).to_string());
                        if let Some(h) = t.hotplug {
                            let probed = self.caps.index.device_properties.get(&name);
                            let has_prop = self.caps.device_has_property(&name, "hotplug");
                            if matches!(probed, Some(Some(_))) && !has_prop {
                                return Err(self.err(
                                    i,
                                    format!(
                                        "hotplug='{}' is not supported by QEMU {}: '{name}' has no 'hotplug' property",
                                        if h { "on" } else { "off" },
                                        self.caps.id()
                                    ),
                                ));
                            }
                            o = o.kv("hotplug", if h { "on" } else { "off" });
                        }
                        o
                    }
                    PciModel::DmiToPciBridge
                    | PciModel::PcieToPciBridge
                    | PciModel::SwitchUpstreamPort => Opts::new(&name),
                };
                self.dev(i, &name, o)
            }
            "usb" => {
                let model = c.model.as_deref().unwrap_or("none");
                if model == "none" {
                    return Ok(Vec::new());
                }
                let driver = qconform_alloc::usb_qemu_device(model);
                if driver.is_empty() {
                    return Err(self.err(
                        i,
                        format!("USB controller model '{model}' is not supported by QEMU"),
                    ));
                }
                let mut o = Opts::new(driver);
                // qemuBuildUSBControllerDevProps: a companion names the bus of the first
                // controller of its index that is not a companion itself, and has no id.
                if let Some(fp) = qconform_alloc::usb_master_startport(c) {
                    let master = a
                        .devices
                        .iter()
                        .find(|x| {
                            x.controller().is_some_and(|k| {
                                k.ctype == "usb"
                                    && k.index == Some(idx)
                                    && qconform_alloc::usb_master_startport(k).is_none()
                            })
                        })
                        .map(|x| x.alias.clone());
                    let Some(m) = master else {
                        return Err(self.err(i, "masterbus not found".to_string()));
                    };
                    o = o
                        .kv("masterbus", format!("{m}.0"))
                        .kv("firstport", fp.to_string());
                }
                self.dev(i, driver, o)
            }
            "scsi" => {
                let model = c.model.as_deref().unwrap_or("virtio-scsi");
                let driver = match model {
                    "virtio-scsi" | "virtio-transitional" | "virtio-non-transitional" => {
                        let m = (model != "virtio-scsi").then_some(model);
                        virtio_dev("virtio-scsi", d, m)
                    }
                    "lsilogic" => "lsi53c895a".into(),
                    "lsisas1068" => "mptsas1068".into(),
                    "lsisas1078" => "megasas-gen2".into(),
                    "vmpvscsi" => "pvscsi".into(),
                    "ibmvscsi" => "spapr-vscsi".into(),
                    "am53c974" => "am53c974".into(),
                    "dc390" => "dc390".into(),
                    m => {
                        return Err(self.err(
                            i,
                            format!("SCSI controller model '{m}' is not supported by QEMU"),
                        ));
                    }
                };
                self.dev(i, &driver, Opts::new(&driver))
            }
            "sata" => {
                if a.family == Family::Q35 && idx == 0 {
                    return Ok(Vec::new());
                }
                self.dev(i, "ich9-ahci", Opts::new("ich9-ahci"))
            }
            "ide" | "fdc" | "xenbus" => Ok(Vec::new()),
            "virtio-serial" => {
                let driver = virtio_dev("virtio-serial", d, c.model.as_deref());
                self.dev(i, &driver, Opts::new(&driver))
            }
            "nvme" => {
                let serial = c
                    .serial
                    .clone()
                    .unwrap_or_else(|| format!("qconform-{}", d.alias));
                self.dev(i, "nvme", Opts::new("nvme").kv("serial", serial))
            }
            "ccid" => {
                let bus = self.usb_bus(i)?;
                self.dev(i, "usb-ccid", Opts::new("usb-ccid").kv("bus", bus))
            }
            t => {
                self.warn(format!(
                    "{}: controller type '{t}' is not put on the command line",
                    d.alias
                ));
                Ok(Vec::new())
            }
        }
    }

    fn disk(&mut self, i: usize, k: &qconform_domxml::Disk) -> R<Vec<String>> {
        let a = self.a;
        let d = &a.devices[i];
        let ro = k.readonly || k.device == "cdrom";
        self.blockdevs += 1;
        let node = node_name(&d.alias, self.blockdevs);
        let mut v = vec![
            "-blockdev".to_string(),
            Opts::kv_first("driver", "null-co")
                .kv("node-name", &node)
                .kv("read-only", if ro { "on" } else { "off" })
                .kv("read-zeroes", "on")
                .finish(),
        ];
        let cd = k.device == "cdrom";
        let drive = match &d.device.address {
            Address::Drive(x) => Some(*x),
            _ => None,
        };
        let bus = k.bus.as_deref().unwrap_or("");
        let args = match bus {
            "virtio" => {
                let driver = virtio_dev("virtio-blk", d, k.model.as_deref());
                let o = Opts::new(&driver)
                    .kv("drive", &node)
                    .opt("serial", k.serial.as_deref());
                self.dev(i, &driver, o)?
            }
            "sata" | "ide" => {
                let Some(x) = drive else {
                    return Err(self.err(i, "disk has no drive address"));
                };
                let ctrl = a.controller(bus, x.controller).ok_or_else(|| {
                    self.err(
                        i,
                        format!("no {bus} controller with index {}", x.controller),
                    )
                })?;
                let driver = if cd { "ide-cd" } else { "ide-hd" };
                let mut o = Opts::new(driver);
                o = if bus == "sata" {
                    o.kv("bus", format!("{}.{}", ctrl.alias, x.unit))
                } else {
                    o.kv("bus", format!("ide.{}", x.bus))
                        .kv("unit", x.unit.to_string())
                };
                self.dev(i, driver, o.kv("drive", &node))?
            }
            "scsi" => {
                let Some(x) = drive else {
                    return Err(self.err(i, "disk has no drive address"));
                };
                let ctrl = a.controller("scsi", x.controller).ok_or_else(|| {
                    self.err(i, format!("no scsi controller with index {}", x.controller))
                })?;
                let driver = if cd { "scsi-cd" } else { "scsi-hd" };
                let model = ctrl
                    .controller()
                    .and_then(|c| c.model.clone())
                    .unwrap_or_default();
                if model == "lsisas1068" && x.unit > 0 {
                    // libvirt passes the unit as `lun=` (qemuBuildDeviceAddressProps), but
                    // mptsas1068 has one LUN per target (hw/scsi/mptsas.c: max_lun 0), so
                    // QEMU refuses the device.
                    return Err(self.err(
                        i,
                        format!(
                            "bad scsi device lun: {}: <address type='drive' unit='{}'/> on \
                             controller model 'lsisas1068' (QEMU mptsas1068 has LUN 0 only)",
                            x.unit, x.unit
                        ),
                    ));
                }
                let mut o = Opts::new(driver).kv("bus", format!("{}.0", ctrl.alias));
                o = if model == "lsilogic" {
                    o.kv("scsi-id", x.unit.to_string())
                } else {
                    o.kv("channel", x.bus.to_string())
                        .kv("scsi-id", x.target.to_string())
                        .kv("lun", x.unit.to_string())
                };
                self.dev(i, driver, o.kv("drive", &node))?
            }
            "fdc" => {
                let unit = drive.map_or(0, |x| x.unit);
                let mut pre = Vec::new();
                if !a.categories.contains("floppy") && !self.fdc_added {
                    // No built-in floppy controller (q35): an isa-fdc, as libvirt adds.
                    self.fdc_added = true;
                    self.have(i, "isa-fdc")?;
                    pre.push("-device".to_string());
                    pre.push(Opts::new("isa-fdc").kv("id", "fdc0").finish());
                }
                let o = Opts::new("floppy")
                    .kv("unit", unit.to_string())
                    .kv("drive", &node);
                pre.extend(self.dev(i, "floppy", o)?);
                pre
            }
            "usb" => {
                let b = self.usb_bus(i)?;
                self.dev(
                    i,
                    "usb-storage",
                    Opts::new("usb-storage").kv("bus", b).kv("drive", &node),
                )?
            }
            "nvme" => {
                let c = drive.map_or(0, |x| x.controller);
                let ctrl = a
                    .controller("nvme", c)
                    .ok_or_else(|| self.err(i, format!("no nvme controller with index {c}")))?;
                let bus = ctrl.alias.clone();
                self.dev(
                    i,
                    "nvme-ns",
                    Opts::new("nvme-ns").kv("bus", bus).kv("drive", &node),
                )?
            }
            b => return Err(self.err(i, format!("disk bus '{b}' is not supported"))),
        };
        v.extend(args);
        Ok(v)
    }

    fn sound(&mut self, i: usize, s: &qconform_domxml::Sound) -> R<Vec<String>> {
        let d = &self.a.devices[i];
        let alias = d.alias.clone();
        let mut v = Vec::new();
        match s.model.as_str() {
            "ich6" | "ich9" | "ich7" => {
                let driver = if s.model == "ich6" {
                    "intel-hda"
                } else {
                    "ich9-intel-hda"
                };
                v.extend(self.audio());
                v.extend(self.dev(i, driver, Opts::new(driver))?);
                let codecs: Vec<String> = if s.codecs.is_empty() {
                    vec!["duplex".into()]
                } else {
                    s.codecs.clone()
                };
                for (n, c) in codecs.iter().enumerate() {
                    let cd = match c.as_str() {
                        "micro" => "hda-micro",
                        "output" => "hda-output",
                        _ => "hda-duplex",
                    };
                    self.have(i, cd)?;
                    v.push("-device".into());
                    v.push(
                        Opts::new(cd)
                            .kv("id", format!("{alias}-codec{n}"))
                            .kv("bus", format!("{alias}.0"))
                            .kv("cad", n.to_string())
                            .kv("audiodev", "audio1")
                            .finish(),
                    );
                }
            }
            "ac97" | "es1370" | "sb16" | "virtio" => {
                let driver = match s.model.as_str() {
                    "ac97" => "AC97".to_string(),
                    "es1370" => "ES1370".into(),
                    "sb16" => "sb16".into(),
                    _ => virtio_dev("virtio-sound", d, None),
                };
                v.extend(self.audio());
                v.extend(self.dev(i, &driver, Opts::new(&driver).kv("audiodev", "audio1"))?);
            }
            "usb" => {
                let bus = self.usb_bus(i)?;
                v.extend(self.audio());
                v.extend(
                    self.dev(
                        i,
                        "usb-audio",
                        Opts::new("usb-audio")
                            .kv("bus", bus)
                            .kv("audiodev", "audio1"),
                    )?,
                );
            }
            "pcspk" => {
                v.extend(self.audio());
                self.machine_opts.push(("pcspk-audiodev", "audio1"));
            }
            m => return Err(self.err(i, format!("sound model '{m}' is not supported by QEMU"))),
        }
        Ok(v)
    }

    fn input(&mut self, i: usize, n: &qconform_domxml::Input) -> R<Vec<String>> {
        let d = &self.a.devices[i];
        match n.bus.as_deref() {
            Some("virtio") => {
                let base = match n.itype.as_str() {
                    "keyboard" => "virtio-keyboard",
                    "mouse" => "virtio-mouse",
                    "tablet" => "virtio-tablet",
                    "passthrough" => "virtio-input-host",
                    t => {
                        return Err(
                            self.err(i, format!("virtio input type '{t}' is not supported"))
                        );
                    }
                };
                let driver = virtio_dev(base, d, n.model.as_deref());
                let mut o = Opts::new(&driver);
                if n.itype == "passthrough" {
                    let ev = n.evdev.clone().unwrap_or_default();
                    self.host(format!("{}: input device {ev}", d.alias));
                    o = o.kv("evdev", ev);
                }
                self.dev(i, &driver, o)
            }
            Some("usb") => {
                let driver = match n.itype.as_str() {
                    "keyboard" => "usb-kbd",
                    "mouse" => "usb-mouse",
                    "tablet" => "usb-tablet",
                    t => return Err(self.err(i, format!("USB input type '{t}' is not supported"))),
                };
                let bus = self.usb_bus(i)?;
                self.dev(i, driver, Opts::new(driver).kv("bus", bus))
            }
            _ => Ok(Vec::new()),
        }
    }

    fn filesystem(&mut self, i: usize, f: &qconform_domxml::Filesystem) -> R<Vec<String>> {
        let d = &self.a.devices[i];
        let alias = d.alias.clone();
        let tag = f.target.clone().unwrap_or_else(|| alias.clone());
        let src = f.source.clone().unwrap_or_else(|| "/".into());
        match f.driver.as_deref() {
            Some("virtiofs") => {
                let chr = format!("chr-vu-{alias}");
                self.host(format!("{alias}: virtiofsd socket {src}"));
                let driver = virtio_dev("vhost-user-fs", d, None);
                let mut v = vec![
                    "-chardev".to_string(),
                    Opts::new("socket").kv("id", &chr).kv("path", &src).finish(),
                ];
                v.extend(self.dev(
                    i,
                    &driver,
                    Opts::new(&driver).kv("chardev", &chr).kv("tag", tag),
                )?);
                Ok(v)
            }
            Some("mtp") | Some("loop") | Some("nbd") | Some("ploop") => {
                self.warn(format!(
                    "{alias}: filesystem driver '{}' is not put on the command line",
                    f.driver.as_deref().unwrap_or("")
                ));
                Ok(Vec::new())
            }
            _ => {
                let fsdev = format!("fsdev-{alias}");
                let model = match f.accessmode.as_deref() {
                    Some("mapped") => "mapped-xattr",
                    Some("squash") => "none",
                    _ => "passthrough",
                };
                self.host(format!("{alias}: host directory {src}"));
                let driver = virtio_dev("virtio-9p", d, f.model.as_deref());
                let mut v = vec![
                    "-fsdev".to_string(),
                    Opts::new("local")
                        .kv("id", &fsdev)
                        .kv("path", &src)
                        .kv("security_model", model)
                        .finish(),
                ];
                v.extend(self.dev(
                    i,
                    &driver,
                    Opts::new(&driver).kv("fsdev", &fsdev).kv("mount_tag", tag),
                )?);
                Ok(v)
            }
        }
    }

    fn chr(&mut self, i: usize, c: &qconform_domxml::Chr) -> R<Vec<String>> {
        let a = self.a;
        let d = &a.devices[i];
        let alias = d.alias.clone();
        let chr = format!("char{alias}");
        let chardev = vec![
            "-chardev".to_string(),
            Opts::new("null").kv("id", &chr).finish(),
        ];
        let default_serial = match a.family {
            Family::Pc | Family::Q35 => "isa-serial",
            Family::Pseries => "spapr-vio-serial",
            Family::S390 => "sclp-serial",
            _ => "system-serial",
        };
        let (driver, extra): (&str, Opts) = match c.element.as_str() {
            "serial" => match c.target_type.as_deref().unwrap_or(default_serial) {
                "isa-serial" => ("isa-serial", Opts::new("isa-serial")),
                "pci-serial" => ("pci-serial", Opts::new("pci-serial")),
                "usb-serial" => {
                    let bus = self.usb_bus(i)?;
                    ("usb-serial", Opts::new("usb-serial").kv("bus", bus))
                }
                "spapr-vio-serial" => ("spapr-vty", Opts::new("spapr-vty")),
                "sclp-serial" => ("sclpconsole", Opts::new("sclpconsole")),
                "sclplm-serial" => ("sclplmconsole", Opts::new("sclplmconsole")),
                _ => {
                    let mut v = chardev;
                    v.push("-serial".into());
                    v.push(format!("chardev:{chr}"));
                    return Ok(v);
                }
            },
            "parallel" => ("isa-parallel", Opts::new("isa-parallel")),
            "channel" | "console" => match c.target_type.as_deref() {
                Some("virtio") => {
                    let console = c.element == "console";
                    let driver = if console {
                        "virtconsole"
                    } else {
                        "virtserialport"
                    };
                    let at = d.device.virtio_serial.unwrap_or_default();
                    let vs = a
                        .controller("virtio-serial", at.controller)
                        .map(|x| x.alias.clone())
                        .ok_or_else(|| {
                            self.err(
                                i,
                                format!(
                                    "Could not find virtio-serial controller with index {} required for device",
                                    at.controller
                                ),
                            )
                        })?;
                    // Ports in document order: 0 is the console's, channels from 1.
                    let earlier = a.devices[..i]
                        .iter()
                        .filter(|x| {
                            matches!(&x.device.kind, DeviceKind::Chr(k)
                            if k.element == "channel" && k.target_type.as_deref() == Some("virtio"))
                        })
                        .count() as u32;
                    let nr =
                        at.port
                            .or(c.target_port)
                            .unwrap_or(if console { 0 } else { 1 + earlier });
                    let mut o = Opts::new(driver)
                        .kv("bus", format!("{vs}.{}", at.bus))
                        .kv("nr", nr.to_string());
                    if let Some(n) = &c.target_name {
                        o = o.kv("name", n);
                    }
                    (driver, o)
                }
                Some("sclp") => ("sclpconsole", Opts::new("sclpconsole")),
                Some("sclplm") => ("sclplmconsole", Opts::new("sclplmconsole")),
                _ => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        };
        let mut v = chardev;
        v.extend(self.dev(i, driver, extra.kv("chardev", &chr))?);
        Ok(v)
    }
}

/// QEMU's refusal of device type `ty` at `placement` on a machine of `family`, as the
/// snapshot's PCI identity launches recorded it: a launch at that placement refused the
/// type with QEMU's error text (`rejected`), and no launch there that started carried it
/// (in company, alone, or alone on another machine: `<placement>:<type>@<machine>`).
/// Launches on a machine of another family say nothing about this one (q35's `pcie.0`
/// refuses what pc's `pci.0` takes).
fn recorded_refusal<'c>(
    caps: &'c Snapshot,
    family: Family,
    ty: &str,
    placement: Placement,
) -> Option<&'c str> {
    let arch = caps.probe.arch.as_str();
    let family_of = |argv: &[String]| {
        let m = argv
            .iter()
            .position(|a| a == "-machine")
            .and_then(|p| argv.get(p + 1))?;
        let name = m.split(',').next().unwrap_or_default();
        let name = caps.resolve_machine(Some(name)).unwrap_or(name);
        Some(Family::of(name, arch))
    };
    let mut refusal = None;
    for (k, probe) in &caps.raw.pci_identity {
        if placement_of_key(k) != Some(placement) || family_of(&probe.argv) != Some(family) {
            continue;
        }
        if probe.outcome == LaunchOutcome::Started
            && device_ids_of_argv(&probe.argv).values().any(|t| t == ty)
        {
            return None;
        }
        if let Some(msg) = probe.rejected.get(ty) {
            refusal = Some(msg.as_str());
        }
    }
    refusal
}

/// A node name QEMU accepts: letters, digits, `-`, `_`, `.`, at most 31 bytes, starting with
/// a letter.
fn node_name(alias: &str, n: usize) -> String {
    let candidate = format!("drive-{alias}");
    let ok = candidate.len() <= 31
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok { candidate } else { format!("drive{n}") }
}
