//! The allocation pipeline: normalise, add implicit devices, classify, name, check machine
//! fit, place on PCI (two passes), assign zPCI ids and CCW devnos, fill controller defaults.

use std::collections::{BTreeMap, BTreeSet};

use qconform_caps::Snapshot;
use qconform_domxml::{
    Address, CcwAddress, Controller, Device, DeviceKind, Domain, PciAddress, TextPos, Zpci,
};

use crate::classify::{self, Ctx};
use crate::machine::{self, Family, Features};
use crate::names;
use crate::pci::{AddrSet, Bus, From, Loc};
use crate::rules::{BaseFlags, Flags, PciModel, Step};
use crate::{Allocation, Attach, Dev, Error, Origin};

pub(crate) fn run(dom: &Domain, caps: &Snapshot) -> Result<Allocation, Error> {
    let mut w = Work::new(dom, caps)?;
    w.normalise(dom)?;
    w.add_implicit(dom)?;
    w.classify()?;
    w.name()?;
    w.warn_undescribed_hosts();
    w.check_fit()?;
    w.assign_pci()?;
    w.assign_zpci()?;
    w.assign_ccw()?;
    w.finish_pci()?;
    Ok(w.into_allocation())
}

struct Work<'c> {
    caps: &'c Snapshot,
    machine: String,
    arch: String,
    family: Family,
    f: Features,
    root: Option<PciModel>,
    devs: Vec<Dev>,
    /// Controllers in libvirt's controller-list order (indices into `devs`).
    ctrl_order: Vec<usize>,
    /// Connect flags of each device attached to PCI.
    flags: Vec<Flags>,
    /// Final PCI location of each device attached to PCI.
    locs: Vec<Option<Loc>>,
    warnings: Vec<String>,
    /// Explicit PCI addresses of unmodelled elements (reserved, never emitted).
    unmodelled: Vec<(String, TextPos, Loc)>,
    /// Host PCI facts from the domain's metadata.
    host: Vec<qconform_domxml::HostPciFact>,
    /// Bus categories of the machine.
    categories: BTreeSet<String>,
}

/// Highest controller index: PCI controller indexes are bus numbers.
const MAX_CONTROLLER_INDEX: u32 = 255;

fn arch_compatible(domain: &str, target: &str) -> bool {
    domain == target
        || matches!(
            (domain, target),
            ("i686", "x86_64")
                | ("i386", "x86_64")
                | ("ppc64le", "ppc64")
                | ("armv7l", "aarch64")
                | ("armv7l", "arm")
                | ("s390", "s390x")
        )
}

fn dev_err(d: &Dev, msg: impl Into<String>) -> Error {
    let m: String = msg.into();
    let m = if d.alias.is_empty() {
        m
    } else {
        format!("{}: {m}", d.alias)
    };
    Error::new(m).element(d.device.element()).at(d.device.pos)
}

fn loc_of(p: &PciAddress) -> Loc {
    Loc {
        bus: p.bus,
        slot: p.slot as u8,
        function: p.function as u8,
    }
}

impl<'c> Work<'c> {
    fn new(dom: &Domain, caps: &'c Snapshot) -> Result<Work<'c>, Error> {
        let arch = caps.probe.arch.clone();
        if let Some(a) = &dom.arch
            && !arch_compatible(a, &arch)
        {
            return Err(Error::new(format!(
                "the domain's architecture '{a}' does not match this QEMU binary's target '{arch}'"
            ))
            .element("type")
            .attr("arch", a.clone()));
        }
        let Some(machine) = caps.resolve_machine(dom.machine.as_deref()) else {
            return Err(match &dom.machine {
                Some(m) => Error::new(format!(
                    "unsupported machine type '{m}': QEMU {} has no such machine",
                    caps.id()
                ))
                .element("type")
                .attr("machine", m.clone()),
                None => Error::new(format!(
                    "no machine type given and QEMU {} has no default machine",
                    caps.id()
                ))
                .element("type"),
            });
        };
        let machine = machine.to_string();
        if let Some(mc) = caps.index.machine_caps.get(&machine)
            && !mc.starts
        {
            return Err(Error::new(format!(
                "machine type '{machine}' does not start with -nodefaults on QEMU {}: {}",
                caps.id(),
                mc.error.as_deref().unwrap_or("unknown error")
            ))
            .element("type")
            .attr("machine", dom.machine.clone().unwrap_or_default()));
        }
        let family = Family::of(&machine, &arch);
        let f = Features::of(caps);
        Ok(Work {
            caps,
            machine,
            arch,
            family,
            f,
            root: None,
            devs: Vec::new(),
            ctrl_order: Vec::new(),
            flags: Vec::new(),
            locs: Vec::new(),
            warnings: Vec::new(),
            unmodelled: Vec::new(),
            host: dom.host_pci.clone(),
            categories: BTreeSet::new(),
        })
    }

    // ---------------------------------------------------------------- normalise

    fn normalise(&mut self, dom: &Domain) -> Result<(), Error> {
        for (i, d) in dom.devices.iter().enumerate() {
            self.devs.push(Dev {
                device: d.clone(),
                origin: Origin::Document(i),
                alias: String::new(),
                attach: Attach::Other,
            });
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
            if let DeviceKind::Controller(c) = &d.device.kind
                && let Some(i) = c.index
                && !used.entry(c.ctype.clone()).or_default().insert(i)
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
        let machine_root = machine::root_model(self.family, &self.f);
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
                    (Some(m), None) if self.family == Family::S390 => {
                        let _ = m;
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
        let video_default = machine::default_video_model(self.family);
        let family = self.family;
        for d in &mut self.devs {
            let origin_ok = true;
            let _ = origin_ok;
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
                    "usb" if c.model.is_none() => c.model = Some(usb_default.to_string()),
                    "scsi" if c.model.is_none() => c.model = Some(scsi_default.to_string()),
                    _ => {}
                },
                DeviceKind::Disk(k) => {
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
                    match (&d.device.address, bus.as_str()) {
                        (Address::Absent | Address::None, "ide" | "sata" | "scsi" | "fdc") => {
                            let idx = names::disk_index(&k.dev).ok_or_else(|| {
                                Error::new(format!(
                                    "cannot derive a drive address from disk target '{}'",
                                    k.dev
                                ))
                                .element("target")
                                .attr("dev", k.dev.clone())
                                .at(d.device.pos)
                            })?;
                            if let Some(da) = names::drive_address(&bus, idx) {
                                d.device.address = Address::Drive(da);
                            }
                        }
                        (
                            a @ (Address::Pci(_)
                            | Address::Ccw(_)
                            | Address::Absent
                            | Address::None),
                            "virtio",
                        ) => {
                            let _ = a;
                        }
                        (a, "virtio") => {
                            return Err(Error::new(format!(
                                "virtio disk cannot have an address of type '{}'",
                                a.type_name()
                            ))
                            .element("address")
                            .attr("type", a.type_name().to_string())
                            .at(d.device.pos));
                        }
                        _ => {}
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
    fn insert_ctrl(&mut self, new: usize) {
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

    fn push(&mut self, device: Device, origin: Origin) -> usize {
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

    // ---------------------------------------------------------------- implicit devices

    fn add_implicit(&mut self, dom: &Domain) -> Result<(), Error> {
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
        // virtio-serial for virtio consoles and channels.
        let needs_vserial = self.devs.iter().any(|d| {
            matches!(&d.device.kind, DeviceKind::Chr(c)
                if (c.element == "channel" || c.element == "console")
                    && c.target_type.as_deref() == Some("virtio"))
        });
        if needs_vserial && !self.has_ctrl("virtio-serial", 0) {
            self.push(
                machine::controller("virtio-serial", 0, None),
                Origin::Implicit,
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------- classify

    fn base(&self) -> BaseFlags {
        BaseFlags::new(
            self.root == Some(PciModel::PcieRoot),
            self.f.virtio_variants,
        )
    }

    fn classify(&mut self) -> Result<(), Error> {
        let ctx = Ctx {
            base: self.base(),
            host: &self.host,
        };
        let s390 = self.family == Family::S390;
        self.flags = vec![Flags::NONE; self.devs.len()];
        for i in 0..self.devs.len() {
            let d = &self.devs[i];
            let kind = &d.device.kind;
            let is_vfio_ccw = matches!(kind, DeviceKind::Hostdev(h)
                if h.htype == "mdev" && h.model.as_deref() == Some("vfio-ccw"));
            let is_vfio_ap = matches!(kind, DeviceKind::Hostdev(h)
                if h.htype == "mdev" && h.model.as_deref() == Some("vfio-ap"));
            if is_vfio_ccw && !self.f.vfio_ccw {
                return Err(dev_err(
                    d,
                    "vfio-ccw devices are not supported by this QEMU binary",
                ));
            }
            let pci_flags = classify::pci_flags(kind, &d.device.address, &ctx);
            let attach = match &d.device.address {
                Address::Unassigned => {
                    let pci_hostdev = matches!(kind, DeviceKind::Hostdev(h) if h.htype == "pci");
                    if !pci_hostdev {
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
                    if p.zpci.is_some() && !self.f.zpci {
                        return Err(
                            dev_err(d, "This QEMU binary doesn't support zPCI").element("zpci")
                        );
                    }
                    self.flags[i] = fl;
                    Attach::Pci
                }
                Address::Ccw(_) => {
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
                Address::Drive(_) | Address::Other(_) => Attach::Other,
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
                    if is_vfio_ap {
                        Attach::Other
                    } else if s390 && classify::ccw_default(kind, self.f.vfio_ccw) {
                        Attach::Ccw
                    } else if let Some(fl) = pci_flags {
                        self.flags[i] = fl;
                        Attach::Pci
                    } else {
                        Attach::Other
                    }
                }
            };
            // virtio variants need the QEMU devices, and have no CCW form.
            let variant = match kind {
                DeviceKind::Disk(k) => k.model.as_deref(),
                DeviceKind::Interface(n) => n.model.as_deref(),
                DeviceKind::Memballoon(m) | DeviceKind::Rng(m) => m.model.as_deref(),
                DeviceKind::Input(n) => n.model.as_deref(),
                DeviceKind::Filesystem(fs) => fs.model.as_deref(),
                DeviceKind::Vsock(v) => v.model.as_deref(),
                DeviceKind::Controller(c) if c.ctype != "pci" => c.model.as_deref(),
                _ => None,
            };
            if matches!(
                variant,
                Some("virtio-transitional") | Some("virtio-non-transitional")
            ) {
                if attach == Attach::Ccw {
                    return Err(dev_err(
                        d,
                        "virtio (non-)transitional models are not supported for address type=ccw",
                    ));
                }
                if !self.f.virtio_variants {
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
    fn warn_undescribed_hosts(&mut self) {
        let ctx = Ctx {
            base: self.base(),
            host: &self.host,
        };
        if ctx.base.pci != ctx.base.pcie {
            for d in &self.devs {
                let host = match &d.device.kind {
                    DeviceKind::Hostdev(h) if h.htype == "pci" => h.host_pci,
                    DeviceKind::Interface(n) if n.itype == "hostdev" => n.host_pci,
                    _ => continue,
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

    // ---------------------------------------------------------------- names

    fn name(&mut self) -> Result<(), Error> {
        let q35 = self.family == Family::Q35;
        let net_hostdevs = self
            .devs
            .iter()
            .filter(|d| matches!(&d.device.kind, DeviceKind::Interface(i) if i.itype == "hostdev"))
            .count();
        let mut count: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut next = |key: &'static str| {
            let c = count.entry(key).or_insert(0);
            *c += 1;
            *c - 1
        };
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for d in &mut self.devs {
            let alias = match &d.device.kind {
                DeviceKind::Controller(c)
                    if c.ctype == "pci" && c.model.as_deref() == Some("pcie-root") =>
                {
                    "pcie.0".to_string()
                }
                DeviceKind::Controller(c) => {
                    names::controller_alias(&c.ctype, c.index.unwrap_or(0), q35)
                }
                DeviceKind::Disk(k) => {
                    let drive = match &d.device.address {
                        Address::Drive(a) => Some(*a),
                        _ => None,
                    };
                    names::disk_alias(k.bus.as_deref().unwrap_or(""), &k.dev, drive)
                }
                DeviceKind::Interface(i) => {
                    let n = next("net");
                    if i.itype == "hostdev" {
                        format!("hostdev{}", next("net-hostdev"))
                    } else {
                        format!("net{n}")
                    }
                }
                DeviceKind::Hostdev(_) => format!("hostdev{}", net_hostdevs + next("hostdev")),
                DeviceKind::Video(_) => format!("video{}", next("video")),
                DeviceKind::Sound(_) => format!("sound{}", next("sound")),
                DeviceKind::Memballoon(_) => format!("balloon{}", next("balloon")),
                DeviceKind::Rng(_) => format!("rng{}", next("rng")),
                DeviceKind::Watchdog(_) => format!("watchdog{}", next("watchdog")),
                DeviceKind::Input(_) => format!("input{}", next("input")),
                DeviceKind::Filesystem(_) => format!("fs{}", next("fs")),
                DeviceKind::Vsock(_) => format!("vsock{}", next("vsock")),
                DeviceKind::Iommu(_) => format!("iommu{}", next("iommu")),
                DeviceKind::Panic(_) => format!("panic{}", next("panic")),
                DeviceKind::Shmem(_) => format!("shmem{}", next("shmem")),
                DeviceKind::Memory(m) => match m.model.as_str() {
                    "virtio-mem" => format!("virtiomem{}", next("virtiomem")),
                    "virtio-pmem" => format!("virtiopmem{}", next("virtiopmem")),
                    "nvdimm" => format!("nvdimm{}", next("nvdimm")),
                    _ => format!("dimm{}", next("dimm")),
                },
                DeviceKind::Chr(c) => match c.element.as_str() {
                    "channel" => format!("channel{}", next("channel")),
                    "console" => format!("console{}", next("console")),
                    "parallel" => format!("parallel{}", next("parallel")),
                    _ => format!("serial{}", next("serial")),
                },
                DeviceKind::Crypto(_) => format!("crypto{}", next("crypto")),
                DeviceKind::Other(name) => {
                    let n = next("other");
                    format!("{name}{n}")
                }
            };
            d.alias = match &d.device.user_alias {
                Some(ua) if ua.starts_with("ua-") => ua.clone(),
                _ => alias,
            };
            if !seen.insert(d.alias.clone()) && d.device.user_alias.is_some() {
                return Err(
                    dev_err(d, format!("non unique alias detected: {}", d.alias))
                        .element("alias")
                        .attr("name", d.alias.clone()),
                );
            }
        }
        for d in &self.devs {
            if let Some(ua) = &d.device.user_alias
                && !ua.starts_with("ua-")
            {
                self.warnings.push(format!(
                    "{}: user alias '{ua}' ignored: user aliases must start with 'ua-'",
                    d.alias
                ));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- machine fit

    fn check_fit(&mut self) -> Result<(), Error> {
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

    // ---------------------------------------------------------------- PCI

    fn pci_ctrls(&self) -> BTreeMap<u32, usize> {
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
        AddrSet {
            buses,
            dry_run,
            pcie_to_pci_bridge: self.f.pcie_pci_bridge,
            multiple_roots: self.family == Family::Pseries,
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

    /// Device indices in libvirt's iteration order.
    fn iteration_order(&self) -> Vec<usize> {
        let ctrl_pos: BTreeMap<usize, usize> = self
            .ctrl_order
            .iter()
            .enumerate()
            .map(|(p, &i)| (i, p))
            .collect();
        let mut v: Vec<usize> = (0..self.devs.len()).collect();
        v.sort_by_key(|&i| {
            let k = &self.devs[i].device.kind;
            let pos = ctrl_pos.get(&i).copied().unwrap_or(i);
            (classify::iteration_rank(k), pos)
        });
        v
    }

    /// Devices wanting a PCI slot, in libvirt's assignment order.
    fn assignment_order(&self) -> Vec<usize> {
        let ctrl_pos: BTreeMap<usize, usize> = self
            .ctrl_order
            .iter()
            .enumerate()
            .map(|(p, &i)| (i, p))
            .collect();
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
            v.push((step, sub, ctrl_pos.get(&i).copied().unwrap_or(i), i));
        }
        v.sort();
        v.into_iter().map(|t| t.3).collect()
    }

    /// Reserves the addresses given in the document. In the dry run a reservation may
    /// grow the bus set and move a conventional device one bus down (behind the bridge
    /// added for it), which libvirt keeps: the moves are returned.
    fn collect(
        &self,
        set: &mut AddrSet,
        locs: &mut [Option<Loc>],
    ) -> Result<Vec<(usize, Loc)>, Error> {
        let mut moved = Vec::new();
        for i in self.iteration_order() {
            let Some(loc) = locs[i] else { continue };
            let d = &self.devs[i];
            if self.piix3_builtin(d, loc) {
                continue;
            }
            let got = set
                .reserve(loc, self.flags[i], From::Config)
                .map_err(|m| self.addr_err(d, m))?;
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

    /// The PIIX3 IDE and USB functions, which the chipset step reserves.
    fn piix3_builtin(&self, d: &Dev, loc: Loc) -> bool {
        let Some(c) = d.controller() else {
            return false;
        };
        self.family == Family::Pc
            && c.index == Some(0)
            && loc.bus == 0
            && loc.slot == 1
            && ((c.ctype == "ide" && loc.function == 1)
                || (c.ctype == "usb"
                    && c.model.as_deref() == Some("piix3-uhci")
                    && loc.function == 2))
    }

    fn addr_err(&self, d: &Dev, m: String) -> Error {
        let mut e = dev_err(d, m);
        if let Address::Pci(p) = &d.device.address
            && !p.is_empty()
        {
            e.element = Some("address".into());
            e.attribute = Some("slot".into());
            e.value = Some(format!("0x{:02x}", p.slot));
        }
        e
    }

    /// Built-in PCI functions of the machine on bus 0, from the snapshot or the family.
    fn builtin(&self) -> Vec<Loc> {
        if let Some(mc) = self.caps.index.machine_caps.get(&self.machine)
            && mc.starts
        {
            return mc
                .builtin_pci
                .iter()
                .filter(|p| p.bus == 0)
                .map(|p| Loc {
                    bus: 0,
                    slot: p.slot,
                    function: p.function,
                })
                .collect();
        }
        let l = |slot, function| Loc {
            bus: 0,
            slot,
            function,
        };
        match self.family {
            Family::Pc => vec![l(0, 0), l(1, 0), l(1, 1), l(1, 3)],
            Family::Q35 => vec![l(0, 0), l(0x1f, 0), l(0x1f, 2), l(0x1f, 3)],
            _ => Vec::new(),
        }
    }

    /// Chipset slots (qemuDomainValidateDevicePCISlotsPIIX3/Q35).
    fn chipset(&self, set: &mut AddrSet, locs: &mut [Option<Loc>]) -> Result<(), Error> {
        if set.buses.is_empty() {
            return Ok(());
        }
        let l = |slot, function| Loc {
            bus: 0,
            slot,
            function,
        };
        let mut claimed: Vec<(Loc, usize)> = Vec::new();
        let mut done: Vec<Loc> = Vec::new();
        match self.family {
            Family::Pc => {
                for (i, d) in self.devs.iter().enumerate() {
                    let Some(c) = d.controller() else { continue };
                    if c.index != Some(0) {
                        continue;
                    }
                    let (want, msg) = match (c.ctype.as_str(), c.model.as_deref()) {
                        ("ide", _) => (
                            l(1, 1),
                            "Primary IDE controller must have PCI address 0:0:1.1",
                        ),
                        ("usb", Some("piix3-uhci")) => (
                            l(1, 2),
                            "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2",
                        ),
                        _ => continue,
                    };
                    if let Some(have) = locs[i]
                        && have != want
                    {
                        return Err(self.addr_err(d, msg.into()));
                    }
                    locs[i] = Some(want);
                    claimed.push((want, i));
                }
            }
            Family::Q35 => {
                for (i, d) in self.devs.iter().enumerate() {
                    let Some(c) = d.controller() else { continue };
                    if c.ctype == "sata" && c.index == Some(0) {
                        let want = l(0x1f, 2);
                        if let Some(have) = locs[i]
                            && have != want
                        {
                            return Err(self.addr_err(
                                d,
                                "Primary SATA controller must have PCI address 0:0:1f.2".into(),
                            ));
                        }
                        let collected = locs[i].is_some();
                        locs[i] = Some(want);
                        if collected {
                            // Reserved with the other document addresses already.
                            done.push(want);
                        } else {
                            claimed.push((want, i));
                        }
                    }
                }
            }
            _ => {}
        }
        let chip_flags = match self.family {
            Family::Q35 => Flags::PCIE_DEVICE,
            _ => Flags::PCI_DEVICE,
        };
        let min_slot = set.buses[0].min_slot;
        let mut reserve: Vec<(Loc, Option<usize>)> = self
            .builtin()
            .into_iter()
            .filter(|b| b.slot >= min_slot)
            .map(|b| (b, None))
            .collect();
        for (loc, i) in &claimed {
            match reserve.iter_mut().find(|(b, _)| b == loc) {
                Some(entry) => entry.1 = Some(*i),
                None => reserve.push((*loc, Some(*i))),
            }
        }
        reserve.retain(|(l, _)| !done.contains(l));
        reserve.sort();
        for (loc, owner) in reserve {
            if let Err(m) = set.reserve(loc, chip_flags, From::Config) {
                // Say who else wanted the function the machine (or the chipset
                // controller) sits on.
                let other = locs
                    .iter()
                    .enumerate()
                    .find(|(j, l)| **l == Some(loc) && Some(*j) != owner)
                    .map(|(j, _)| j);
                let what = match owner {
                    Some(o) => format!("the chipset's {}", self.devs[o].alias),
                    None => "a built-in device of the machine".to_string(),
                };
                return Err(match other {
                    Some(j) => self.addr_err(
                        &self.devs[j],
                        format!("{m}: {loc} is taken by {what} on '{}'", self.machine),
                    ),
                    None => Error::new(m),
                });
            }
        }

        // dmi-to-pci-bridge without address → 00:1e.0 if free (q35).
        if self.family == Family::Q35 {
            for (i, d) in self.devs.iter().enumerate() {
                if d.pci_model() == Some(PciModel::DmiToPciBridge) && locs[i].is_none() {
                    let want = l(0x1e, 0);
                    if !set.slot_in_use(want) {
                        set.reserve(want, self.flags[i], From::Config)
                            .map_err(|m| dev_err(d, m))?;
                        locs[i] = Some(want);
                    }
                }
            }
        }

        // Primary video: 00:02.0 on pc, 00:01.0 on q35.
        let video_slot = match self.family {
            Family::Pc => Some(2u8),
            Family::Q35 => Some(1u8),
            _ => None,
        };
        if let Some(slot) = video_slot
            && let Some(i) = self.primary_video()
            && locs[i].is_none()
            && self.devs[i].attach == Attach::Pci
        {
            let want = l(slot, 0);
            set.validate(want, chip_flags, From::Config)
                .map_err(|m| dev_err(&self.devs[i], m))?;
            if set.slot_in_use(want) {
                let got = set
                    .reserve_next(self.flags[i])
                    .map_err(|m| dev_err(&self.devs[i], m))?;
                locs[i] = Some(got);
            } else {
                set.reserve(want, chip_flags, From::Config)
                    .map_err(|m| dev_err(&self.devs[i], m))?;
                locs[i] = Some(want);
            }
        }

        // First ich9 sound card → 00:1b.0 if free (q35).
        if self.family == Family::Q35 {
            let first =
                self.devs.iter().enumerate().find(
                    |(_, d)| matches!(&d.device.kind, DeviceKind::Sound(s) if s.model == "ich9"),
                );
            if let Some((i, d)) = first {
                let want = l(0x1b, 0);
                if locs[i].is_none() && d.attach == Attach::Pci && !set.slot_in_use(want) {
                    set.reserve(want, chip_flags, From::Config)
                        .map_err(|m| dev_err(d, m))?;
                    locs[i] = Some(want);
                }
            }
        }
        Ok(())
    }

    fn primary_video(&self) -> Option<usize> {
        let videos: Vec<usize> = self
            .devs
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d.device.kind, DeviceKind::Video(_)))
            .map(|(i, _)| i)
            .collect();
        let primary = videos
            .iter()
            .copied()
            .find(|&i| matches!(&self.devs[i].device.kind, DeviceKind::Video(v) if v.primary))
            .or_else(|| videos.first().copied())?;
        match &self.devs[primary].device.kind {
            DeviceKind::Video(v) if matches!(v.model.as_deref(), Some("none") | Some("ramfb")) => {
                None
            }
            _ => Some(primary),
        }
    }

    fn assign_slots(&self, set: &mut AddrSet, locs: &mut [Option<Loc>]) -> Result<(), Error> {
        for i in self.assignment_order() {
            if locs[i].is_some() {
                continue;
            }
            let d = &self.devs[i];
            let flags = self.flags[i];
            if let Some((func, idx)) = usb_companion(d) {
                let mate = self.devs.iter().enumerate().find_map(|(j, o)| {
                    let (_, oidx) = usb_companion(o)?;
                    (j != i && oidx == idx).then_some(locs[j]).flatten()
                });
                let base = match mate {
                    Some(m) => m,
                    None => set.next_addr(flags).map_err(|m| dev_err(d, m))?,
                };
                let loc = Loc {
                    function: func,
                    ..base
                };
                set.reserve(loc, flags, From::Auto)
                    .map_err(|m| dev_err(d, m))?;
                locs[i] = Some(loc);
                continue;
            }
            let loc = set.reserve_next(flags).map_err(|m| dev_err(d, m))?;
            locs[i] = Some(loc);
        }
        Ok(())
    }

    fn assign_pci(&mut self) -> Result<(), Error> {
        let any_pci = self.devs.iter().any(|d| d.attach == Attach::Pci);
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
        let _ = any_pci;
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
            // One spare conventional slot so that a pci-bridge can always be added later.
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
                self.flags.push(fl);
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
        Ok(())
    }

    // ---------------------------------------------------------------- zPCI

    fn assign_zpci(&mut self) -> Result<(), Error> {
        if !self.f.zpci {
            return Ok(());
        }
        let order = self.iteration_order();
        let ext: Vec<bool> = self
            .devs
            .iter()
            .map(|d| d.attach == Attach::Pci && classify::zpci_capable(&d.device.kind))
            .collect();
        let explicit = |d: &Dev| match &d.device.address {
            Address::Pci(p) => p.zpci,
            _ => None,
        };
        let mut uids: BTreeSet<u32> = BTreeSet::new();
        let mut fids: BTreeSet<u32> = BTreeSet::new();
        let mut out: Vec<Option<Zpci>> = vec![None; self.devs.len()];
        // Phase A: devices with a uid or a fid get the other one filled in right away.
        for &i in &order {
            if !ext[i] {
                continue;
            }
            let d = &self.devs[i];
            let Some(z) = explicit(d) else { continue };
            if z.uid.is_none() && z.fid.is_none() {
                continue;
            }
            let uid = match z.uid {
                Some(u) => u,
                None => lowest_free(&uids, 1, 0xffff)
                    .ok_or_else(|| dev_err(d, "There is no more free uid."))?,
            };
            let fid = match z.fid {
                Some(f) => f,
                None => lowest_free(&fids, 0, u32::MAX)
                    .ok_or_else(|| dev_err(d, "There is no more free fid."))?,
            };
            reserve_id(&mut uids, uid, "uid", d)?;
            reserve_id(&mut fids, fid, "fid", d)?;
            out[i] = Some(Zpci {
                uid: Some(uid),
                fid: Some(fid),
            });
        }
        // Phase B: the others, in iteration order.
        for &i in &order {
            if !ext[i] || out[i].is_some() {
                continue;
            }
            let d = &self.devs[i];
            let uid = lowest_free(&uids, 1, 0xffff)
                .ok_or_else(|| dev_err(d, "There is no more free uid."))?;
            let fid = lowest_free(&fids, 0, u32::MAX)
                .ok_or_else(|| dev_err(d, "There is no more free fid."))?;
            uids.insert(uid);
            fids.insert(fid);
            out[i] = Some(Zpci {
                uid: Some(uid),
                fid: Some(fid),
            });
        }
        for (i, z) in out.into_iter().enumerate() {
            if let Some(z) = z {
                match &mut self.devs[i].device.address {
                    Address::Pci(p) => p.zpci = Some(z),
                    a => {
                        *a = Address::Pci(PciAddress {
                            zpci: Some(z),
                            ..PciAddress::default()
                        })
                    }
                }
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- CCW

    fn assign_ccw(&mut self) -> Result<(), Error> {
        let order = self.iteration_order();
        let mut used: BTreeSet<CcwAddress> = BTreeSet::new();
        for &i in &order {
            let d = &self.devs[i];
            if d.attach != Attach::Ccw {
                continue;
            }
            if let Address::Ccw(c) = &d.device.address
                && !used.insert(*c)
            {
                return Err(dev_err(d, format!("The CCW devno '{c}' is in use already"))
                    .element("address")
                    .attr("devno", format!("0x{:04x}", c.devno)));
            }
        }
        let mut next = CcwAddress {
            cssid: 0xfe,
            ssid: 0,
            devno: 0,
        };
        for &i in &order {
            if self.devs[i].attach != Attach::Ccw
                || matches!(self.devs[i].device.address, Address::Ccw(_))
            {
                continue;
            }
            while used.contains(&next) {
                if next.devno >= 0xffff {
                    return Err(dev_err(&self.devs[i], "There are no more free CCW devnos."));
                }
                next.devno += 1;
            }
            used.insert(next);
            self.devs[i].device.address = Address::Ccw(next);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- finish

    fn finish_pci(&mut self) -> Result<(), Error> {
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
        let root_port_device = self.f.root_port_device;
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
                        PciModel::PciRoot if idx == 0 => None,
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

    fn into_allocation(self) -> Allocation {
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
            features: self.f,
            root: self.root,
            devices: self.devs,
            controllers_added: added.into_iter().map(|a| a.1).collect(),
            warnings: self.warnings,
            categories: self.categories,
            pci_controllers,
        }
    }
}

fn usb_companion(d: &Dev) -> Option<(u8, u32)> {
    let c = d.controller()?;
    if c.ctype != "usb" {
        return None;
    }
    let f = match c.model.as_deref()? {
        "ich9-uhci1" => 0,
        "ich9-uhci2" => 1,
        "ich9-uhci3" => 2,
        "ich9-ehci1" => 7,
        _ => return None,
    };
    Some((f, c.index.unwrap_or(0)))
}

fn lowest_free(set: &BTreeSet<u32>, start: u32, end: u32) -> Option<u32> {
    let mut v = start;
    for &u in set.range(start..=end) {
        if u != v {
            break;
        }
        if v == end {
            return None;
        }
        v += 1;
    }
    Some(v)
}

fn reserve_id(set: &mut BTreeSet<u32>, v: u32, what: &str, d: &Dev) -> Result<(), Error> {
    if !set.insert(v) {
        let shown = if what == "uid" {
            format!("0x{v:04x}")
        } else {
            format!("0x{v:08x}")
        };
        return Err(
            dev_err(d, format!("zPCI {what} {shown} is already reserved"))
                .element("zpci")
                .attr(what, shown),
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_lowest_free() {
        let s: BTreeSet<u32> = [1, 2, 4].into_iter().collect();
        assert_eq!(lowest_free(&s, 1, 10), Some(3));
        assert_eq!(lowest_free(&s, 0, 10), Some(0));
        let full: BTreeSet<u32> = (1..=3).collect();
        assert_eq!(lowest_free(&full, 1, 3), None);
    }
}
