//! QEMU argv and guest-visible PCI prediction for a libvirt-style domain.
//!
//! [`plan`] parses the domain XML, places every device the way libvirt would for the QEMU
//! binary described by the snapshot ([`qconform_alloc`]), and returns a [`Plan`]: the
//! canonical machine, a command line that launches on that binary, the address of every
//! device, the controllers that were added, the PCI functions the guest will enumerate,
//! and the domain written back with every address filled in. A configuration libvirt (or
//! QEMU) would refuse gives a [`PlanError`] with libvirt's meaning instead.
//!
//! The crate is pure: no files, processes, clocks or environment; the same input and
//! snapshot always give byte-identical output.
//!
//! ```no_run
//! # fn demo(xml: &str, caps: &qconform_caps::Snapshot) {
//! match qconform_plan::plan(xml, caps) {
//!     Ok(p) => println!("{}", p.argv_text()),
//!     Err(e) => eprintln!("rejected: {e}"),
//! }
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod argv;
mod guest;
mod opts;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qconform_alloc::{Allocation, Attach, Origin};
use qconform_caps::Snapshot;
use qconform_domxml::{Address, Problem, Written};
use serde::Serialize;
use serde_json::{Value, json};

/// How a guest of machine type `machine` (canonical name or alias as QEMU lists it) on
/// `arch` finds its PCI functions: the rule the guest view applies (see [`Visibility`]).
pub fn machine_visibility(machine: &str, arch: &str) -> Visibility {
    visibility(qconform_alloc::Family::of(machine, arch))
}

pub use guest::{Visibility, visibility};
pub use opts::{Opts, escape};
pub use qconform_caps::GuestPciFunction;

/// The outcome of planning one domain against one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Canonical machine type.
    pub machine: String,
    /// Arguments after the binary; launchable as-is (see `host_resources`).
    pub argv: Vec<String>,
    /// Alias → address of every device.
    pub devices: BTreeMap<String, DeviceAddress>,
    /// Aliases of the PCI controllers added automatically, e.g. `pci.1`.
    pub controllers_added: Vec<String>,
    /// Guest view: the PCI functions the guest enumerates, sorted by address; each
    /// displays (and serialises) as `DDDD:BB:SS.F CCCC: VVVV:DDDD`.
    pub guest_pci: Vec<GuestPciFunction>,
    /// The domain with every address and added controller filled in (libvirt xml2xml).
    pub domain_xml: String,
    /// Things worth knowing: unmodelled elements kept, identities unknown, assumptions.
    pub warnings: Vec<String>,
    /// What the argv needs from the host to launch (vfio devices, paths, sockets); empty
    /// when it launches anywhere.
    pub host_resources: Vec<String>,
    /// Alias → what is emitted for the device: its QEMU type, and for PCI controllers the
    /// libvirt model and target (`pcie-root-port chassis=1 port=0x8`). Empty for devices
    /// not put on the command line.
    pub device_info: BTreeMap<String, String>,
}

/// How a device is addressed; serialised as `pci`, `ccw`, `unassigned` or `none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    /// A PCI address (with zPCI ids on s390x).
    Pci,
    /// A CCW device number.
    Ccw,
    /// A PCI host device managed but not given to the guest.
    Unassigned,
    /// Not addressed by the allocator (ISA, USB, drives, built-in, ...).
    #[default]
    None,
}

impl AddressKind {
    /// `pci`, `ccw`, `unassigned` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::Pci => "pci",
            AddressKind::Ccw => "ccw",
            AddressKind::Unassigned => "unassigned",
            AddressKind::None => "none",
        }
    }
}

impl std::fmt::Display for AddressKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address of one device. The JSON field names are a contract. The default is a device
/// the allocator does not address (kind `none`, every field empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceAddress {
    /// How the device is addressed.
    pub kind: AddressKind,
    /// PCI bus (the index of the controller providing it).
    pub bus: Option<u8>,
    /// PCI slot.
    pub slot: Option<u8>,
    /// PCI function.
    pub function: Option<u8>,
    /// QEMU name of the bus (`pcie.0`, `pci.1`, ...).
    pub bus_alias: Option<String>,
    /// Whether function 0 of a multifunction slot.
    pub multifunction: bool,
    /// zPCI uid.
    pub zpci_uid: Option<u32>,
    /// zPCI fid.
    pub zpci_fid: Option<u32>,
    /// CCW bus id, e.g. `fe.0.0001`.
    pub ccw_devno: Option<String>,
}

/// Whether the input could not be read or the configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanErrorKind {
    /// Not well-formed XML, or not a domain document.
    BadInput,
    /// Understood and refused: the product's answer for this configuration.
    Rejected,
}

/// Why a domain cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// Bad input or rejection.
    pub kind: PlanErrorKind,
    /// What is wrong and where.
    pub problem: Problem,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.problem, f)
    }
}

impl std::error::Error for PlanError {}

impl PlanError {
    /// JSON form: `{"error": message, "kind", "element", ...}`.
    pub fn to_json(&self) -> Value {
        let p = &self.problem;
        json!({
            "error": self.to_string(),
            "message": p.message,
            "kind": self.kind,
            "element": p.element,
            "attribute": p.attribute,
            "value": p.value,
            "line": p.line,
            "column": p.column,
        })
    }
}

impl From<qconform_domxml::Error> for PlanError {
    fn from(e: qconform_domxml::Error) -> PlanError {
        PlanError {
            kind: match e.kind {
                qconform_domxml::ErrorKind::Syntax => PlanErrorKind::BadInput,
                qconform_domxml::ErrorKind::Invalid => PlanErrorKind::Rejected,
            },
            problem: e.problem,
        }
    }
}

impl From<qconform_alloc::Error> for PlanError {
    fn from(e: qconform_alloc::Error) -> PlanError {
        PlanError {
            kind: PlanErrorKind::Rejected,
            problem: e,
        }
    }
}

/// Plans `domain_xml` for the QEMU binary described by `caps`.
pub fn plan(domain_xml: &str, caps: &Snapshot) -> Result<Plan, PlanError> {
    let dom = qconform_domxml::parse(domain_xml)?;
    let alloc = qconform_alloc::allocate(&dom, caps)?;
    let emitted = argv::build(&alloc, &dom, caps).map_err(|e| {
        let d = &alloc.devices[e.device];
        PlanError {
            kind: PlanErrorKind::Rejected,
            problem: Problem::new(format!("{}: {}", d.alias, e.message))
                .element(d.device.element())
                .at(d.device.pos),
        }
    })?;
    let g = guest::guest_view(&alloc, caps, &emitted.drivers);
    if let Some((i, message)) = g.unnumbered {
        let d = &alloc.devices[i];
        let bus_nr = d.controller().and_then(|c| c.target.bus_nr);
        let mut problem = Problem::new(message).element("controller").at(d.device.pos);
        if let Some(b) = bus_nr {
            problem = problem.attr("busNr", b.to_string());
        }
        return Err(PlanError {
            kind: PlanErrorKind::Rejected,
            problem,
        });
    }
    let devices = device_map(&alloc);
    let device_info = device_info(&alloc, &emitted.drivers);
    let written: Vec<Written<'_>> = alloc
        .devices
        .iter()
        .map(|d| Written {
            original: match d.origin {
                Origin::Document(i) => Some(i),
                _ => None,
            },
            device: &d.device,
        })
        .collect();
    let arch = dom.arch.clone().unwrap_or_else(|| alloc.arch.clone());
    let domain_xml = qconform_domxml::write_back(
        domain_xml,
        &dom,
        Some(&alloc.machine),
        Some(&arch),
        &written,
    );
    let mut warnings = alloc.warnings.clone();
    warnings.extend(emitted.warnings);
    warnings.extend(g.warnings);
    Ok(Plan {
        machine: alloc.machine.clone(),
        argv: emitted.argv,
        devices,
        controllers_added: alloc.controllers_added.clone(),
        guest_pci: g.functions,
        domain_xml,
        warnings,
        host_resources: emitted.host_resources,
        device_info,
    })
}

fn device_info(a: &Allocation, drivers: &[Option<String>]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (d, drv) in a.devices.iter().zip(drivers) {
        let Some(drv) = drv else { continue };
        let mut s = drv.clone();
        if let Some(c) = d.controller().filter(|c| c.ctype == "pci") {
            if let Some(model) = &c.model
                && model != drv
            {
                let _ = write!(s, " ({model})");
            }
            let t = &c.target;
            if let Some(n) = t.chassis_nr {
                let _ = write!(s, " chassisNr={n}");
            }
            if let Some(n) = t.chassis {
                let _ = write!(s, " chassis={n}");
            }
            if let Some(n) = t.port {
                let _ = write!(s, " port=0x{n:x}");
            }
            if let Some(n) = t.bus_nr {
                let _ = write!(s, " busNr={n}");
            }
            if let Some(h) = t.hotplug {
                let _ = write!(s, " hotplug={}", if h { "on" } else { "off" });
            }
        }
        m.insert(map_key(d), s);
    }
    m
}

/// The key of a device in the address map: its alias, except for a USB companion
/// controller, which shares its master's alias (libvirt names every controller of a USB
/// index alike; only the master has a QEMU id): `usb/ich9-uhci1`.
fn map_key(d: &qconform_alloc::Dev) -> String {
    match d.controller() {
        Some(c) if qconform_alloc::usb_master_startport(c).is_some() => {
            format!("{}/{}", d.alias, c.model.as_deref().unwrap_or("usb"))
        }
        _ => d.alias.clone(),
    }
}

fn device_map(a: &Allocation) -> BTreeMap<String, DeviceAddress> {
    let mut m = BTreeMap::new();
    for d in &a.devices {
        let none = DeviceAddress::default();
        let addr = match (&d.device.address, d.attach) {
            (Address::Pci(p), Attach::Pci) => DeviceAddress {
                kind: AddressKind::Pci,
                bus: u8::try_from(p.bus).ok(),
                slot: u8::try_from(p.slot).ok(),
                function: u8::try_from(p.function).ok(),
                bus_alias: Some(a.pci_bus_name(p.bus)),
                multifunction: p.multifunction == Some(true),
                zpci_uid: p.zpci.and_then(|z| z.uid),
                zpci_fid: p.zpci.and_then(|z| z.fid),
                ..none
            },
            (Address::Ccw(c), Attach::Ccw) => DeviceAddress {
                kind: AddressKind::Ccw,
                ccw_devno: Some(c.to_string()),
                ..none
            },
            (_, Attach::Unassigned) => DeviceAddress {
                kind: AddressKind::Unassigned,
                ..none
            },
            _ => none,
        };
        m.insert(map_key(d), addr);
    }
    m
}

impl DeviceAddress {
    /// One-line form: `pci 01:00.0 bus=pci.1 multifunction zpci uid=0x0001
    /// fid=0x00000000`, `ccw fe.0.0001`, `unassigned` or `none`. The bus number is the
    /// index of the controller providing the bus, as in libvirt's XML.
    pub fn text(&self) -> String {
        let mut s = self.kind.as_str().to_owned();
        if let (Some(b), Some(sl), Some(f)) = (self.bus, self.slot, self.function) {
            let _ = write!(s, " {b:02x}:{sl:02x}.{f:x}");
        }
        if let Some(b) = &self.bus_alias {
            let _ = write!(s, " bus={b}");
        }
        if self.multifunction {
            s.push_str(" multifunction");
        }
        if let Some(u) = self.zpci_uid {
            let _ = write!(s, " zpci uid=0x{u:04x}");
        }
        if let Some(f) = self.zpci_fid {
            let _ = write!(s, " fid=0x{f:08x}");
        }
        if let Some(c) = &self.ccw_devno {
            let _ = write!(s, " {c}");
        }
        s
    }

    fn sort_key(&self) -> (u8, u32, u32, u32, String) {
        match self.kind {
            AddressKind::Pci => (
                0,
                u32::from(self.bus.unwrap_or(0)),
                u32::from(self.slot.unwrap_or(0)),
                u32::from(self.function.unwrap_or(0)),
                String::new(),
            ),
            AddressKind::Ccw => (1, 0, 0, 0, self.ccw_devno.clone().unwrap_or_default()),
            AddressKind::Unassigned => (2, 0, 0, 0, String::new()),
            AddressKind::None => (3, 0, 0, 0, String::new()),
        }
    }
}

impl Plan {
    /// JSON form: `{"machine", "argv", "devices", "controllers_added", "guest_pci",
    /// "warnings", "host_resources"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "machine": self.machine,
            "argv": self.argv,
            "devices": self.devices,
            "controllers_added": self.controllers_added,
            "guest_pci": self.guest_pci,
            "warnings": self.warnings,
            "host_resources": self.host_resources,
        })
    }

    /// The address map, one device per line in topology order:
    /// `alias  pci 01:00.0 bus=pci.1  virtio-net-pci` (the last column is what is
    /// emitted for the device, see [`Plan::device_info`]).
    pub fn addresses_text(&self) -> String {
        let mut rows: Vec<(&String, &DeviceAddress)> = self.devices.iter().collect();
        rows.sort_by_key(|(alias, a)| (a.sort_key(), (*alias).clone()));
        let width = rows.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
        let texts: Vec<String> = rows.iter().map(|(_, a)| a.text()).collect();
        let twidth = texts.iter().map(String::len).max().unwrap_or(0);
        let mut out = String::new();
        for ((alias, _), t) in rows.iter().zip(&texts) {
            match self.device_info.get(*alias) {
                Some(info) => {
                    let _ = writeln!(out, "{alias:<width$}  {t:<twidth$}  {info}");
                }
                None => {
                    let _ = writeln!(out, "{alias:<width$}  {t}");
                }
            }
        }
        out
    }

    /// The argv, one option and its value per line.
    pub fn argv_text(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.argv.len() {
            let a = &self.argv[i];
            let value = self.argv.get(i + 1).filter(|v| !v.starts_with('-'));
            match value {
                Some(v) if a.starts_with('-') => {
                    let _ = writeln!(out, "{a} {v}");
                    i += 2;
                }
                _ => {
                    let _ = writeln!(out, "{a}");
                    i += 1;
                }
            }
        }
        out
    }

    /// The guest view, one function per line.
    pub fn guest_text(&self) -> String {
        let mut out = String::new();
        for f in &self.guest_pci {
            let _ = writeln!(out, "{f}");
        }
        out
    }
}
