//! Parser for HMP `info qtree` text: the device tree of a running machine.
//!
//! The text is indentation-structured, two spaces per level:
//!
//! ```text
//! bus: main-system-bus
//!   type System
//!   dev: q35-pcihost, id ""
//!     MCFG = -1 (0xffffffffffffffff)
//!     bus: pcie.0
//!       type PCIE
//!       dev: e1000, id "nic1"
//!         addr = 01.0
//!         class Ethernet controller, addr 00:01.0, pci id 8086:100e (sub 1af4:1100)
//! ```
//!
//! A bus line is followed by its `type` line; a device line is followed by its property
//! lines (`name = value`), GPIO/MMIO lines, the PCI summary line for PCI devices and its
//! child buses. Lines this parser does not know are skipped, so new QEMU output does not
//! break it.

use std::collections::BTreeMap;

/// A bus in `info qtree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QtreeBus {
    /// Bus id (`bus: <id>`).
    pub id: String,
    /// Bus type (`type <T>`).
    pub bus_type: String,
    /// Devices on the bus.
    pub devices: Vec<QtreeDevice>,
}

/// A device in `info qtree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QtreeDevice {
    /// Device type.
    pub ty: String,
    /// Device id (empty when none).
    pub id: String,
    /// PCI address `SS.F` within its bus, for PCI devices.
    pub pci_addr: Option<(u8, u8)>,
    /// `pci id VVVV:DDDD (sub SSSS:SSSS)` for PCI devices.
    pub pci_id: Option<(u16, u16, u16, u16)>,
    /// Class description for PCI devices (e.g. `Ethernet controller`, or `Class 0880` for
    /// classes QEMU has no name for).
    pub class_desc: Option<String>,
    /// Child buses.
    pub buses: Vec<QtreeBus>,
    /// Property lines `name = value`, value text as printed (e.g. `uid` → `3 (0x3)`,
    /// `target` → `"net0"`).
    pub properties: BTreeMap<String, String>,
}

impl QtreeBus {
    /// All buses of the tree in `info qtree` order (pre-order), each with the device that
    /// owns it (`None` for this root bus).
    pub fn walk_buses(&self) -> Vec<(Option<&QtreeDevice>, &QtreeBus)> {
        let mut out = Vec::new();
        fn rec<'a>(
            owner: Option<&'a QtreeDevice>,
            bus: &'a QtreeBus,
            out: &mut Vec<(Option<&'a QtreeDevice>, &'a QtreeBus)>,
        ) {
            out.push((owner, bus));
            for d in &bus.devices {
                for b in &d.buses {
                    rec(Some(d), b, out);
                }
            }
        }
        rec(None, self, &mut out);
        out
    }

    /// All devices of the tree in `info qtree` order, each with the bus it sits on.
    pub fn walk_devices(&self) -> Vec<(&QtreeBus, &QtreeDevice)> {
        self.walk_buses()
            .into_iter()
            .flat_map(|(_, bus)| bus.devices.iter().map(move |d| (bus, d)))
            .collect()
    }

    /// Finds a device by its id.
    pub fn find_device(&self, id: &str) -> Option<(&QtreeBus, &QtreeDevice)> {
        self.walk_devices().into_iter().find(|(_, d)| d.id == id)
    }
}

enum Node {
    Bus(usize),
    Dev(usize),
}

struct FlatBus {
    id: String,
    bus_type: String,
    devices: Vec<usize>,
}

struct FlatDev {
    dev: QtreeDevice,
    buses: Vec<usize>,
}

/// Parses `info qtree` output into its root bus. Returns `None` when the text holds no
/// bus at all.
pub fn parse_qtree(text: &str) -> Option<QtreeBus> {
    let mut buses: Vec<FlatBus> = Vec::new();
    let mut devs: Vec<FlatDev> = Vec::new();
    let mut roots: Vec<usize> = Vec::new();
    // (indent, node) of the open nodes, innermost last.
    let mut stack: Vec<(usize, Node)> = Vec::new();

    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let content = line.trim_start();
        if content.is_empty() {
            continue;
        }
        let indent = line.len() - content.len();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        if let Some(id) = content.strip_prefix("bus: ") {
            let idx = buses.len();
            buses.push(FlatBus {
                id: id.trim().to_owned(),
                bus_type: String::new(),
                devices: Vec::new(),
            });
            match stack.last() {
                Some((_, Node::Dev(d))) => {
                    if let Some(dev) = devs.get_mut(*d) {
                        dev.buses.push(idx);
                    }
                }
                Some((_, Node::Bus(_))) => continue,
                None => roots.push(idx),
            }
            stack.push((indent, Node::Bus(idx)));
        } else if let Some(rest) = content.strip_prefix("dev: ") {
            let Some((_, Node::Bus(b))) = stack.last() else {
                continue;
            };
            let b = *b;
            let (ty, id) = parse_dev_line(rest);
            let idx = devs.len();
            devs.push(FlatDev {
                dev: QtreeDevice {
                    ty,
                    id,
                    pci_addr: None,
                    pci_id: None,
                    class_desc: None,
                    buses: Vec::new(),
                    properties: BTreeMap::new(),
                },
                buses: Vec::new(),
            });
            if let Some(bus) = buses.get_mut(b) {
                bus.devices.push(idx);
            }
            stack.push((indent, Node::Dev(idx)));
        } else {
            match stack.last() {
                Some((_, Node::Bus(b))) => {
                    if let Some(t) = content.strip_prefix("type ")
                        && let Some(bus) = buses.get_mut(*b)
                        && bus.bus_type.is_empty()
                    {
                        bus.bus_type = t.trim().to_owned();
                    }
                }
                Some((_, Node::Dev(d))) => {
                    if let Some(dev) = devs.get_mut(*d) {
                        apply_dev_line(&mut dev.dev, content);
                    }
                }
                None => {}
            }
        }
    }
    let root = *roots.first()?;
    Some(build_bus(root, &buses, &mut devs, 0))
}

fn build_bus(idx: usize, buses: &[FlatBus], devs: &mut [FlatDev], depth: usize) -> QtreeBus {
    let Some(fb) = buses.get(idx) else {
        return QtreeBus {
            id: String::new(),
            bus_type: String::new(),
            devices: Vec::new(),
        };
    };
    let mut devices = Vec::new();
    // Depth is bounded by the text's indentation; the guard only protects against a
    // malformed arena.
    if depth < 256 {
        for &d in &fb.devices {
            let child_buses: Vec<usize> =
                devs.get(d).map(|fd| fd.buses.clone()).unwrap_or_default();
            let built: Vec<QtreeBus> = child_buses
                .iter()
                .map(|&b| build_bus(b, buses, devs, depth + 1))
                .collect();
            if let Some(fd) = devs.get_mut(d) {
                let mut dev = fd.dev.clone();
                dev.buses = built;
                devices.push(dev);
            }
        }
    }
    QtreeBus {
        id: fb.id.clone(),
        bus_type: fb.bus_type.clone(),
        devices,
    }
}

/// `e1000, id "nic1"` → (`e1000`, `nic1`).
fn parse_dev_line(rest: &str) -> (String, String) {
    match rest.split_once(", id ") {
        Some((ty, id)) => (ty.trim().to_owned(), unquote(id.trim())),
        None => (rest.trim().to_owned(), String::new()),
    }
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_owned()
}

fn apply_dev_line(dev: &mut QtreeDevice, content: &str) {
    if let Some(rest) = content.strip_prefix("class ")
        && !rest.starts_with('=')
        && let Some((desc, tail)) = rest.split_once(", addr ")
    {
        dev.class_desc = Some(desc.trim().to_owned());
        let (addr, ids) = match tail.split_once(", pci id ") {
            Some((a, i)) => (a, Some(i)),
            None => (tail, None),
        };
        dev.pci_addr = parse_bdf(addr.trim());
        dev.pci_id = ids.and_then(parse_pci_ids);
        return;
    }
    if let Some((name, value)) = content.split_once(" = ") {
        let name = name.trim();
        if !name.is_empty() && !name.contains(' ') {
            dev.properties
                .insert(name.to_owned(), value.trim().to_owned());
        }
    }
}

/// `00:03.0` → (slot 3, function 0); the bus number is firmware's business and ignored.
fn parse_bdf(s: &str) -> Option<(u8, u8)> {
    let (_bus, sf) = s.split_once(':')?;
    let (slot, func) = sf.split_once('.')?;
    Some((
        u8::from_str_radix(slot, 16).ok()?,
        u8::from_str_radix(func, 16).ok()?,
    ))
}

/// `8086:100e (sub 1af4:1100)` → (0x8086, 0x100e, 0x1af4, 0x1100).
fn parse_pci_ids(s: &str) -> Option<(u16, u16, u16, u16)> {
    let (vd, sub) = s.split_once(" (sub ")?;
    let sub = sub.trim().strip_suffix(')')?;
    let (v, d) = vd.trim().split_once(':')?;
    let (sv, sd) = sub.split_once(':')?;
    Some((
        u16::from_str_radix(v, 16).ok()?,
        u16::from_str_radix(d, 16).ok()?,
        u16::from_str_radix(sv, 16).ok()?,
        u16::from_str_radix(sd, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "bus: main-system-bus\n  type System\n  dev: hpet, id \"\"\n    gpio-in \"\" 2\n    timers = 3 (0x3)\n  dev: q35-pcihost, id \"\"\n    MCFG = -1 (0xffffffffffffffff)\n    bus: pcie.0\n      type PCIE\n      dev: pcie-root-port, id \"pci.1\"\n        chassis = 1 (0x1)\n        addr = 02.0\n        class PCI bridge, addr 00:02.0, pci id 1b36:000c (sub 0000:0000)\n        bar 0: mem at 0xffffffffffffffff [0xffe]\n        bus: pci.1\n          type PCIE\n          dev: virtio-blk-pci, id \"blk0\"\n            class = 0 (0x0)\n            class SCSI controller, addr 00:00.0, pci id 1af4:1042 (sub 1af4:1100)\n            bus: virtio-bus\n              type virtio-pci-bus\n              dev: virtio-blk-device, id \"\"\n                drive = \"nb0\"\n      dev: ich9-ahci, id \"\"\n        class SATA controller, addr 00:1f.2, pci id 8086:2922 (sub 1af4:1100)\n        bus: ide.0\n          type IDE\n";

    #[test]
    fn test_parses_buses_devices_and_pci_lines() {
        let root = parse_qtree(SAMPLE).expect("a tree");
        assert_eq!(root.id, "main-system-bus");
        assert_eq!(root.bus_type, "System");
        assert_eq!(root.devices.len(), 2);
        let buses: Vec<(Option<&str>, &str, &str)> = root
            .walk_buses()
            .into_iter()
            .map(|(o, b)| (o.map(|d| d.ty.as_str()), b.id.as_str(), b.bus_type.as_str()))
            .collect();
        assert_eq!(
            buses,
            vec![
                (None, "main-system-bus", "System"),
                (Some("q35-pcihost"), "pcie.0", "PCIE"),
                (Some("pcie-root-port"), "pci.1", "PCIE"),
                (Some("virtio-blk-pci"), "virtio-bus", "virtio-pci-bus"),
                (Some("ich9-ahci"), "ide.0", "IDE"),
            ]
        );
        let (bus, blk) = root.find_device("blk0").expect("blk0");
        assert_eq!(bus.id, "pci.1");
        assert_eq!(blk.pci_id, Some((0x1af4, 0x1042, 0x1af4, 0x1100)));
        assert_eq!(blk.pci_addr, Some((0, 0)));
        assert_eq!(blk.class_desc.as_deref(), Some("SCSI controller"));
        // `class = 0` is a property, not the PCI summary line.
        assert_eq!(
            blk.properties.get("class").map(String::as_str),
            Some("0 (0x0)")
        );
        let (_, port) = root.find_device("pci.1").expect("port");
        assert_eq!(port.pci_addr, Some((2, 0)));
        assert_eq!(
            port.properties.get("chassis").map(String::as_str),
            Some("1 (0x1)")
        );
        let (_, ahci) = root
            .walk_devices()
            .into_iter()
            .find(|(_, d)| d.ty == "ich9-ahci")
            .expect("ahci");
        assert_eq!(ahci.pci_addr, Some((0x1f, 2)));
    }

    #[test]
    fn test_garbage_and_empty_input_do_not_panic() {
        assert_eq!(parse_qtree(""), None);
        assert_eq!(parse_qtree("no bus here\n  dev: x"), None);
        let odd = "bus: a\n      dev: deep, id \"x\"\n  type T\n    bus: b\n class , addr zz:zz.z, pci id q\n";
        let t = parse_qtree(odd).expect("tree");
        assert_eq!(t.id, "a");
    }
}
