//! The domain generator of `qconform explore`: a caps snapshot and a seed in, a libvirt
//! domain out. Pure and deterministic: the same snapshot, seed and index give the same
//! domain, byte for byte, on every host.
//!
//! The vocabulary is the snapshot's own: the machines it recorded as starting (`pc`,
//! `q35`, `virt`, `pseries`, `s390-ccw-virtio`), and device models whose QEMU type the
//! binary has. A small share of devices deliberately names a libvirt model whose QEMU type
//! the binary lacks, so that refusals with a QEMU-side form get exercised too.
//!
//! Everything stays inside what libvirt itself accepts at `virsh define` (libvirt's domain
//! schema and its define-time checks): unique disk targets with names libvirt parses,
//! unique MAC addresses, at most one `<memballoon>`, no boot order, no user aliases, one
//! primary video device, `ide`/floppy only on machines that have those buses. Whatever
//! else libvirt refuses (an explicit address that does not fit) is a refusal the plan has
//! to reproduce, so it is generated on purpose.

use qconform_caps::Snapshot;

/// A small, fast, portable PRNG (SplitMix64): the domains must not depend on a crate's
/// algorithm choice or version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let n = u64::try_from(items.len()).ok()?;
        items.get(usize::try_from(self.below(n)).ok()?)
    }
}

/// The seed of domain `index` of a run with `seed` on snapshot `snapshot_id`: every
/// (snapshot, index) pair gets its own stream, so domains do not depend on `--jobs`.
pub fn domain_seed(seed: u64, snapshot_id: &str, index: u64) -> u64 {
    // FNV-1a of the id, mixed with the seed and index through SplitMix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in snapshot_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut r = Rng::new(seed ^ h.rotate_left(17) ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}

/// One device element of a generated domain. The `<address>` is kept apart so that the
/// minimiser can turn an explicit address into an automatic one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenDevice {
    /// Element name (`interface`, `disk`, `controller`, ...).
    pub tag: String,
    /// Attributes of the element, rendered (` type='user'`).
    pub attrs: String,
    /// Child elements, one per line, without the address.
    pub children: Vec<String>,
    /// The `<address .../>` element (or `<address ...>...</address>`), if any.
    pub address: Option<String>,
}

impl GenDevice {
    fn new(tag: &str, attrs: impl Into<String>) -> GenDevice {
        GenDevice {
            tag: tag.to_owned(),
            attrs: attrs.into(),
            children: Vec::new(),
            address: None,
        }
    }

    fn child(mut self, line: impl Into<String>) -> GenDevice {
        self.children.push(line.into());
        self
    }

    fn render(&self, out: &mut String) {
        if self.children.is_empty() && self.address.is_none() {
            out.push_str(&format!("    <{}{}/>\n", self.tag, self.attrs));
            return;
        }
        out.push_str(&format!("    <{}{}>\n", self.tag, self.attrs));
        for c in &self.children {
            out.push_str(&format!("      {c}\n"));
        }
        if let Some(a) = &self.address {
            out.push_str(&format!("      {a}\n"));
        }
        out.push_str(&format!("    </{}>\n", self.tag));
    }
}

/// A generated domain: header facts and its device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenDomain {
    /// `<name>`.
    pub name: String,
    /// `<type arch=...>`.
    pub arch: String,
    /// The machine as a user writes it (an alias where the snapshot has one).
    pub machine: String,
    /// Devices in document order.
    pub devices: Vec<GenDevice>,
}

impl GenDomain {
    /// The domain XML text.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        out.push_str("<domain type='qemu'>\n");
        out.push_str(&format!("  <name>{}</name>\n", self.name));
        out.push_str("  <memory unit='MiB'>512</memory>\n  <vcpu>1</vcpu>\n  <os>\n");
        out.push_str(&format!(
            "    <type arch='{}' machine='{}'>hvm</type>\n",
            self.arch, self.machine
        ));
        out.push_str("  </os>\n  <devices>\n");
        for d in &self.devices {
            d.render(&mut out);
        }
        out.push_str("  </devices>\n</domain>\n");
        out
    }
}

/// The machine families the generator knows how to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// x86 i440fx (`pc`): conventional PCI root, IDE, ISA.
    Pc,
    /// x86 Q35: PCIe root, SATA, ISA.
    Q35,
    /// ARM or RISC-V `virt`: PCIe root, no ISA.
    Virt,
    /// POWER `pseries`: spapr PCI host bridges.
    Pseries,
    /// s390x: CCW, zPCI.
    S390,
}

/// Machines of a snapshot the generator can use: (alias as written, family), only those
/// the probe saw start.
pub fn machines(snap: &Snapshot) -> Vec<(String, Family)> {
    let want: &[(&str, Family)] = match snap.probe.arch.as_str() {
        "x86_64" | "i386" => &[("pc", Family::Pc), ("q35", Family::Q35)],
        "aarch64" | "riscv64" => &[("virt", Family::Virt)],
        "ppc64" | "ppc64le" => &[("pseries", Family::Pseries)],
        "s390x" => &[("s390-ccw-virtio", Family::S390)],
        _ => &[],
    };
    want.iter()
        .filter(|(alias, _)| {
            snap.resolve_machine(Some(alias))
                .and_then(|m| snap.machine_caps(m))
                .is_some_and(|c| c.starts)
        })
        .map(|(a, f)| ((*a).to_owned(), *f))
        .collect()
}

/// A PCI bus a device can be given an explicit address on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    /// Root bus: slots 1..=31 (conventional or PCIe root complex).
    Root,
    /// Conventional bridge: slots 1..=31.
    Bridge,
    /// Root port or switch downstream port: slot 0 only.
    Port,
    /// Switch upstream port: slots 0..=31 (downstream ports only).
    Upstream,
    /// Expander bus (pxb/pxb-pcie): slots 0..=31 (libvirt: 0 is usable).
    Expander,
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    family: Family,
    rng: Rng,
    devices: Vec<GenDevice>,
    buses: Vec<(u32, BusKind)>,
    next_index: u32,
    macs: u32,
    disk_names: Vec<String>,
    hostfn: u32,
    zpci_uids: Vec<u32>,
    devnos: Vec<u32>,
    balloon: bool,
    video: bool,
    scsi_ctrls: u32,
    channels: u32,
    usb: bool,
}

/// QEMU type behind a libvirt NIC model (`virtio` → `virtio-net-pci`).
fn nic_type(model: &str) -> String {
    match model {
        "virtio" => "virtio-net-pci".to_owned(),
        m => m.to_owned(),
    }
}

const NIC_MODELS: &[&str] = &[
    "virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "ne2k_pci", "pcnet", "igb",
];

impl Ctx<'_> {
    fn has(&self, ty: &str) -> bool {
        self.snap.has_device(ty)
    }

    fn mac(&mut self) -> String {
        self.macs += 1;
        format!(
            "<mac address='52:54:00:00:{:02x}:{:02x}'/>",
            (self.macs >> 8) & 0xff,
            self.macs & 0xff
        )
    }

    /// A random explicit, partial or no PCI address for an endpoint device.
    fn pci_address(&mut self, allow_multifunction: bool) -> Option<String> {
        if self.family == Family::S390 {
            return self.zpci_address();
        }
        let roll = self.rng.below(100);
        if roll < 60 {
            return None;
        }
        let (bus, kind) = *self.rng.pick(&self.buses)?;
        let slot = match kind {
            BusKind::Port => 0,
            BusKind::Upstream | BusKind::Expander => self.rng.range(0, 31),
            BusKind::Root | BusKind::Bridge => self.rng.range(1, 31),
        };
        if roll < 66 {
            // Partial: only the bus (libvirt reads the missing slot as 0).
            return Some(format!("<address type='pci' bus='{bus:#04x}'/>"));
        }
        if roll < 72 {
            // Partial: only the slot, on bus 0.
            let slot = self.rng.range(1, 31);
            return Some(format!("<address type='pci' slot='{slot:#04x}'/>"));
        }
        let function = if self.rng.chance(10) {
            self.rng.range(1, 7)
        } else {
            0
        };
        let mf = if allow_multifunction && function == 0 && self.rng.chance(15) {
            " multifunction='on'"
        } else {
            ""
        };
        Some(format!(
            "<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='{function:#x}'{mf}/>"
        ))
    }

    fn zpci_address(&mut self) -> Option<String> {
        let roll = self.rng.below(100);
        if roll < 50 {
            return None;
        }
        let u = u32::try_from(self.rng.range(1, 0x40)).unwrap_or(1);
        let uid = if self.zpci_uids.contains(&u) {
            None
        } else {
            self.zpci_uids.push(u);
            Some(u)
        };
        let fid = u32::try_from(self.rng.range(0, 0x40)).unwrap_or(0) | 0x100;
        let zpci = match roll {
            50..=64 => format!("<zpci uid='{:#06x}'/>", uid?),
            65..=74 => format!("<zpci fid='{fid:#010x}'/>"),
            _ => format!("<zpci uid='{:#06x}' fid='{fid:#010x}'/>", uid?),
        };
        if roll >= 90 {
            let slot = self.rng.range(1, 31);
            let mf = if self.rng.chance(20) {
                " multifunction='on'"
            } else {
                ""
            };
            return Some(format!(
                "<address type='pci' domain='0x0000' bus='0x00' slot='{slot:#04x}' function='0x0'{mf}>{zpci}</address>"
            ));
        }
        Some(format!("<address type='pci'>{zpci}</address>"))
    }

    fn ccw_address(&mut self) -> Option<String> {
        if !self.rng.chance(35) {
            return None;
        }
        let devno = u32::try_from(self.rng.range(0, 0x30)).unwrap_or(0);
        if self.devnos.contains(&devno) {
            return None;
        }
        self.devnos.push(devno);
        Some(format!(
            "<address type='ccw' cssid='0xfe' ssid='0x0' devno='{devno:#06x}'/>"
        ))
    }

    /// An address for a virtio device: CCW or zPCI on s390x, PCI elsewhere.
    fn virtio_address(&mut self) -> Option<String> {
        if self.family == Family::S390 {
            if self.rng.chance(40) {
                // On PCI with zPCI: automatic (type='pci' only) or explicit.
                return self
                    .zpci_address()
                    .or_else(|| Some("<address type='pci'/>".to_owned()));
            }
            return self.ccw_address();
        }
        self.pci_address(true)
    }

    fn push(&mut self, d: GenDevice) {
        self.devices.push(d);
    }

    fn nic(&mut self) {
        let models: Vec<&str> = NIC_MODELS
            .iter()
            .copied()
            .filter(|m| self.has(&nic_type(m)))
            .collect();
        // A model the binary lacks now and then (the plan must refuse it as QEMU would).
        let model = if models.is_empty() || self.rng.chance(3) {
            *self.rng.pick(NIC_MODELS).unwrap_or(&"virtio")
        } else {
            *self.rng.pick(&models).unwrap_or(&"virtio")
        };
        let mac = self.mac();
        let mut d = GenDevice::new("interface", " type='user'")
            .child(mac)
            .child(format!("<model type='{model}'/>"));
        d.address = if model == "virtio" {
            self.virtio_address()
        } else {
            self.pci_address(true)
        };
        self.push(d);
    }

    fn disk_name(&mut self, prefix: &str, max: u32) -> Option<String> {
        for _ in 0..4 {
            let n = u32::try_from(self.rng.below(u64::from(max))).unwrap_or(0);
            let letter = char::from(b'a' + u8::try_from(n % 26).unwrap_or(0));
            let name = format!("{prefix}{letter}");
            if !self.disk_names.contains(&name) {
                self.disk_names.push(name.clone());
                return Some(name);
            }
        }
        None
    }

    fn disk(&mut self) {
        let mut buses = vec!["virtio"];
        match self.family {
            Family::Pc => buses.extend(["ide", "sata", "scsi", "usb", "fdc"]),
            Family::Q35 => buses.extend(["sata", "scsi", "usb", "fdc"]),
            Family::Virt => buses.extend(["scsi", "usb"]),
            Family::Pseries => buses.extend(["scsi", "usb"]),
            Family::S390 => buses.push("scsi"),
        }
        let bus = *self.rng.pick(&buses).unwrap_or(&"virtio");
        let (prefix, max) = match bus {
            "virtio" => ("vd", 26),
            "ide" => ("hd", 4),
            "fdc" => ("fd", 2),
            _ => ("sd", 26),
        };
        let Some(dev) = self.disk_name(prefix, max) else {
            return;
        };
        if bus == "usb" {
            self.need_usb();
        }
        let device = if bus == "fdc" { "floppy" } else { "disk" };
        let mut d = GenDevice::new("disk", format!(" type='file' device='{device}'"))
            .child("<driver name='qemu' type='raw'/>")
            .child(format!(
                "<source file='/var/lib/libvirt/images/{dev}.img'/>"
            ))
            .child(format!("<target dev='{dev}' bus='{bus}'/>"));
        d.address = match bus {
            "virtio" => self.virtio_address(),
            "scsi" if self.scsi_ctrls > 0 && self.rng.chance(30) => {
                let ctrl = self.rng.below(u64::from(self.scsi_ctrls));
                let unit = self.rng.range(0, 6);
                Some(format!(
                    "<address type='drive' controller='{ctrl}' bus='0' target='0' unit='{unit}'/>"
                ))
            }
            _ => None,
        };
        self.push(d);
    }

    fn pci_controller(&mut self, model: &str, kind: BusKind, target: Option<String>) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        let mut d = GenDevice::new(
            "controller",
            format!(" type='pci' index='{index}' model='{model}'"),
        );
        if let Some(t) = target {
            d.children.push(t);
        }
        self.push(d);
        self.buses.push((index, kind));
        index
    }

    fn pci_controllers(&mut self) {
        let n = self.rng.below(4);
        for _ in 0..n {
            match self.family {
                Family::Pc => {
                    if self.has("pxb") && self.rng.chance(20) {
                        let bus_nr = self.rng.range(180, 254);
                        self.pci_controller(
                            "pci-expander-bus",
                            BusKind::Expander,
                            Some(format!("<target busNr='{bus_nr}'/>")),
                        );
                    } else if self.has("pci-bridge") {
                        self.pci_controller("pci-bridge", BusKind::Bridge, None);
                    }
                }
                Family::Q35 | Family::Virt => {
                    let roll = self.rng.below(100);
                    if roll < 45 && self.has("pcie-root-port") {
                        self.pci_controller("pcie-root-port", BusKind::Port, None);
                    } else if roll < 60
                        && self.has("x3130-upstream")
                        && self.has("xio3130-downstream")
                        && self.has("pcie-root-port")
                    {
                        self.pci_controller("pcie-root-port", BusKind::Port, None);
                        self.pci_controller("pcie-switch-upstream-port", BusKind::Upstream, None);
                        for _ in 0..self.rng.range(1, 3) {
                            self.pci_controller("pcie-switch-downstream-port", BusKind::Port, None);
                        }
                    } else if roll < 70 && self.has("i82801b11-bridge") && self.has("pci-bridge") {
                        self.pci_controller("dmi-to-pci-bridge", BusKind::Bridge, None);
                        if self.rng.chance(50) {
                            self.pci_controller("pci-bridge", BusKind::Bridge, None);
                        }
                    } else if roll < 85 && self.has("pcie-pci-bridge") {
                        self.pci_controller("pcie-to-pci-bridge", BusKind::Bridge, None);
                    } else if self.has("pxb-pcie") && self.has("pcie-root-port") {
                        let bus_nr = self.rng.range(180, 254);
                        self.pci_controller(
                            "pcie-expander-bus",
                            BusKind::Expander,
                            Some(format!("<target busNr='{bus_nr}'/>")),
                        );
                        self.pci_controller("pcie-root-port", BusKind::Port, None);
                    }
                }
                Family::Pseries => {
                    if self.has("pci-bridge") {
                        self.pci_controller("pci-bridge", BusKind::Bridge, None);
                    }
                }
                Family::S390 => {
                    if self.has("pci-bridge") && self.rng.chance(30) {
                        self.pci_controller("pci-bridge", BusKind::Bridge, None);
                    }
                }
            }
        }
    }

    /// libvirt adds a default USB controller on pc, q35 and pseries only; elsewhere a USB
    /// device needs one in the domain (`a USB device is present but the domain has no USB
    /// controller`).
    fn need_usb(&mut self) {
        if self.family == Family::Virt && !self.usb {
            self.usb_controller();
        }
    }

    fn usb_controller(&mut self) {
        if self.usb {
            return;
        }
        let mut models: Vec<(&str, &str)> = vec![
            ("qemu-xhci", "qemu-xhci"),
            ("nec-xhci", "nec-usb-xhci"),
            ("ich9-ehci1", "ich9-usb-ehci1"),
        ];
        if self.family == Family::Pc {
            models.push(("piix3-uhci", "piix3-usb-uhci"));
        }
        if self.family == Family::Pseries {
            models.push(("pci-ohci", "pci-ohci"));
        }
        let models: Vec<&str> = models
            .iter()
            .filter(|(_, t)| self.has(t))
            .map(|(m, _)| *m)
            .collect();
        let Some(model) = self.rng.pick(&models).copied() else {
            return;
        };
        self.usb = true;
        let mut d = GenDevice::new(
            "controller",
            format!(" type='usb' index='0' model='{model}'"),
        );
        d.address = self.pci_address(false);
        self.push(d);
    }

    fn scsi_controller(&mut self) {
        let mut models: Vec<(&str, &str)> = vec![("virtio-scsi", "virtio-scsi-pci")];
        if self.family != Family::S390 {
            models.extend([
                ("lsilogic", "lsi53c895a"),
                ("lsisas1068", "mptsas1068"),
                ("lsisas1078", "megasas-gen2"),
            ]);
        }
        let models: Vec<&str> = models
            .iter()
            .filter(|(_, t)| {
                self.has(t) || (self.family == Family::S390 && *t == "virtio-scsi-pci")
            })
            .map(|(m, _)| *m)
            .collect();
        let Some(model) = self.rng.pick(&models).copied() else {
            return;
        };
        let index = self.scsi_ctrls;
        self.scsi_ctrls += 1;
        let mut d = GenDevice::new(
            "controller",
            format!(" type='scsi' index='{index}' model='{model}'"),
        );
        d.address = if model == "virtio-scsi" {
            self.virtio_address()
        } else {
            self.pci_address(true)
        };
        self.push(d);
    }

    fn virtio_serial(&mut self) {
        let mut d = GenDevice::new("controller", " type='virtio-serial' index='0'");
        d.address = self.virtio_address();
        self.push(d);
        if self.rng.chance(60) {
            // Channel names are unique in a domain (QEMU refuses a second port with one
            // name: `virtio-serial-bus: A port already exists by name ...`).
            self.channels += 1;
            let name = if self.channels == 1 {
                "org.qemu.guest_agent.0".to_owned()
            } else {
                format!("org.qconform.explore.{}", self.channels)
            };
            let mut ch = GenDevice::new("channel", " type='pty'")
                .child(format!("<target type='virtio' name='{name}'/>"));
            if self.rng.chance(30) {
                ch.address = Some(
                    "<address type='virtio-serial' controller='0' bus='0' port='1'/>".to_owned(),
                );
            }
            self.push(ch);
        }
    }

    fn video(&mut self) {
        if self.video {
            return;
        }
        self.video = true;
        let cands: &[(&str, &str)] = match self.family {
            Family::Pc | Family::Q35 => &[
                ("vga", "VGA"),
                ("cirrus", "cirrus-vga"),
                ("virtio", "virtio-vga"),
                ("bochs", "bochs-display"),
            ],
            Family::Virt | Family::Pseries => &[("virtio", "virtio-gpu-pci"), ("vga", "VGA")],
            Family::S390 => &[("virtio", "virtio-gpu-ccw")],
        };
        let models: Vec<&str> = cands
            .iter()
            .filter(|(_, t)| self.has(t))
            .map(|(m, _)| *m)
            .collect();
        let Some(model) = self.rng.pick(&models).copied() else {
            return;
        };
        let mut d = GenDevice::new("video", "").child(format!("<model type='{model}'/>"));
        d.address = if model == "virtio" {
            self.virtio_address()
        } else {
            self.pci_address(false)
        };
        self.push(d);
    }

    fn sound(&mut self) {
        let cands: &[(&str, &str)] = &[
            ("ich6", "intel-hda"),
            ("ich9", "ich9-intel-hda"),
            ("ac97", "AC97"),
            ("es1370", "ES1370"),
        ];
        let models: Vec<&str> = cands
            .iter()
            .filter(|(_, t)| self.has(t))
            .map(|(m, _)| *m)
            .collect();
        let Some(model) = self.rng.pick(&models).copied() else {
            return;
        };
        let mut d = GenDevice::new("sound", format!(" model='{model}'"));
        d.address = self.pci_address(true);
        self.push(d);
    }

    fn watchdog(&mut self) {
        let model = match self.family {
            Family::S390 => "diag288",
            Family::Pc if self.rng.chance(30) && self.has("ib700") => "ib700",
            _ => "i6300esb",
        };
        if !self.has(model) {
            return;
        }
        let mut d = GenDevice::new("watchdog", format!(" model='{model}' action='reset'"));
        if model == "i6300esb" {
            d.address = self.pci_address(true);
        }
        self.push(d);
    }

    fn rng_dev(&mut self) {
        let mut d = GenDevice::new("rng", " model='virtio'")
            .child("<backend model='random'>/dev/urandom</backend>");
        d.address = self.virtio_address();
        self.push(d);
    }

    fn input(&mut self) {
        let (ty, bus) = *self
            .rng
            .pick(&[
                ("tablet", "virtio"),
                ("keyboard", "virtio"),
                ("mouse", "virtio"),
                ("tablet", "usb"),
            ])
            .unwrap_or(&("tablet", "virtio"));
        if bus == "usb" && self.family == Family::S390 {
            return;
        }
        if bus == "usb" {
            self.need_usb();
        }
        let mut d = GenDevice::new("input", format!(" type='{ty}' bus='{bus}'"));
        if bus == "virtio" {
            d.address = self.virtio_address();
        }
        self.push(d);
    }

    fn balloon(&mut self) {
        if self.balloon {
            return;
        }
        self.balloon = true;
        if self.rng.chance(25) {
            self.push(GenDevice::new("memballoon", " model='none'"));
            return;
        }
        let mut d = GenDevice::new("memballoon", " model='virtio'");
        d.address = self.virtio_address();
        self.push(d);
    }

    fn hostdev(&mut self) {
        // Only unassigned functions start on a test host (nothing goes on the argv);
        // an assigned one needs the host function (vfio-pci).
        if matches!(self.family, Family::S390 | Family::Pseries) {
            return;
        }
        let f = self.hostfn;
        self.hostfn += 1;
        let mut d = GenDevice::new("hostdev", " mode='subsystem' type='pci' managed='yes'")
            .child("<driver name='vfio'/>")
            .child(format!(
                "<source><address domain='0x0000' bus='0x06' slot='{:#04x}' function='{:#x}'/></source>",
                0x12 + f / 8,
                f % 8
            ));
        d.address = Some("<address type='unassigned'/>".to_owned());
        self.push(d);
    }
}

/// Generates domain `index` of a run with `seed` on `snap`; `None` when the snapshot has no
/// machine the generator knows (an arch without `pc`/`q35`/`virt`/`pseries`/s390x).
pub fn generate(snap: &Snapshot, seed: u64, index: u64) -> Option<GenDomain> {
    let id = snap.id();
    let mut rng = Rng::new(domain_seed(seed, &id, index));
    let machines = machines(snap);
    let (machine, family) = rng.pick(&machines)?.clone();
    let mut cx = Ctx {
        snap,
        family,
        rng,
        devices: Vec::new(),
        buses: vec![(0, BusKind::Root)],
        next_index: 1,
        macs: 0,
        disk_names: Vec::new(),
        hostfn: 0,
        zpci_uids: Vec::new(),
        devnos: Vec::new(),
        balloon: false,
        video: false,
        scsi_ctrls: 0,
        channels: 0,
        usb: false,
    };
    if family != Family::S390 {
        cx.pci_controllers();
    }
    if cx.rng.chance(25) {
        cx.usb_controller();
    }
    if cx.rng.chance(20) {
        cx.scsi_controller();
    }
    let endpoints = cx.rng.range(1, 10);
    for _ in 0..endpoints {
        match cx.rng.below(100) {
            0..=29 => cx.nic(),
            30..=54 => cx.disk(),
            55..=59 => cx.scsi_controller(),
            60..=64 => cx.virtio_serial(),
            65..=69 => cx.video(),
            70..=74 => cx.sound(),
            75..=79 => cx.watchdog(),
            80..=84 => cx.rng_dev(),
            85..=89 => cx.input(),
            90..=94 => cx.balloon(),
            _ => cx.hostdev(),
        }
    }
    // virtio-serial only once (libvirt refuses two controllers with one index).
    let mut seen_vs = false;
    cx.devices.retain(|d| {
        if d.tag == "controller" && d.attrs.contains("virtio-serial") {
            if seen_vs {
                return false;
            }
            seen_vs = true;
        }
        true
    });
    let mut channel_port = 0;
    for d in &mut cx.devices {
        if d.tag == "channel" {
            channel_port += 1;
            if !seen_vs {
                d.address = None;
            } else if d.address.is_some() {
                d.address = Some(format!(
                    "<address type='virtio-serial' controller='0' bus='0' port='{channel_port}'/>"
                ));
            }
        }
    }
    Some(GenDomain {
        name: format!("explore-{index}"),
        arch: snap.probe.arch.clone(),
        machine,
        devices: cx.devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rng_is_splitmix64() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn test_domain_seed_depends_on_every_input() {
        let a = domain_seed(1, "11.1.3/x86_64", 0);
        assert_ne!(a, domain_seed(2, "11.1.3/x86_64", 0));
        assert_ne!(a, domain_seed(1, "11.1.3/s390x", 0));
        assert_ne!(a, domain_seed(1, "11.1.3/x86_64", 1));
        assert_eq!(a, domain_seed(1, "11.1.3/x86_64", 0));
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use std::path::PathBuf;

    fn snapshots() -> Vec<std::sync::Arc<crate::LoadedSnapshot>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capsdata");
        let s = crate::load_snapshots(&dir, None);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(!s.snapshots.is_empty(), "no snapshot in {}", dir.display());
        s.snapshots
    }

    #[test]
    fn test_same_seed_same_domains_and_seeds_differ() {
        for snap in snapshots() {
            let a: Vec<String> = (0..40)
                .filter_map(|i| generate(&snap.snapshot, 9, i).map(|d| d.to_xml()))
                .collect();
            let b: Vec<String> = (0..40)
                .filter_map(|i| generate(&snap.snapshot, 9, i).map(|d| d.to_xml()))
                .collect();
            assert_eq!(a.len(), 40, "{}: a machine the generator knows", snap.id);
            assert_eq!(a, b, "{}", snap.id);
            let c: Vec<String> = (0..40)
                .filter_map(|i| generate(&snap.snapshot, 10, i).map(|d| d.to_xml()))
                .collect();
            assert_ne!(a, c, "{}: another seed gives other domains", snap.id);
        }
    }

    #[test]
    fn test_generated_domains_parse_and_mostly_plan() {
        // Every domain is well-formed libvirt XML the plan reads (no bad-input answer),
        // and the vocabulary is the snapshot's: most domains are accepted.
        for snap in snapshots() {
            let mut accepted = 0;
            for i in 0..100 {
                let xml = generate(&snap.snapshot, 3, i).expect("domain").to_xml();
                match qconform_plan::plan(&xml, &snap.snapshot) {
                    Ok(_) => accepted += 1,
                    Err(e) => assert_eq!(
                        e.kind,
                        qconform_plan::PlanErrorKind::Rejected,
                        "{}: domain {i} is not readable: {e}\n{xml}",
                        snap.id
                    ),
                }
            }
            assert!(accepted >= 30, "{}: only {accepted}/100 accepted", snap.id);
        }
    }
}
