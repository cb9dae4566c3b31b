//! Helpers shared by the plan tests: the recorded snapshots and small domain builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use qconform_caps::Snapshot;
use qconform_plan::{Plan, PlanError};

/// A recorded snapshot, `capsdata/caps_<version>_<arch>.json` (loaded once per process).
pub fn snap(version: &str, arch: &str) -> &'static Snapshot {
    static CACHE: OnceLock<Mutex<BTreeMap<String, &'static Snapshot>>> = OnceLock::new();
    let name = format!("caps_{version}_{arch}.json");
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .unwrap();
    if let Some(s) = cache.get(&name) {
        return s;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../capsdata")
        .join(&name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s: &'static Snapshot = Box::leak(Box::new(Snapshot::from_json(&text).unwrap()));
    cache.insert(name, s);
    s
}

/// Versions recorded for every architecture, oldest first.
pub const VERSIONS: [&str; 4] = ["5.2.0", "7.2.22", "10.0.2", "11.1.3"];

/// The newest recorded snapshot of an architecture.
pub fn latest(arch: &str) -> &'static Snapshot {
    snap(VERSIONS[VERSIONS.len() - 1], arch)
}

/// A domain document.
pub fn domain(arch: &str, machine: &str, devices: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>t</name>\n  <memory unit='KiB'>524288</memory>\n  <os>\n    <type arch='{arch}' machine='{machine}'>hvm</type>\n  </os>\n  <devices>\n{devices}  </devices>\n</domain>\n"
    )
}

/// A domain without the implicit USB controller and balloon (shorter address maps).
pub fn bare(arch: &str, machine: &str, devices: &str) -> String {
    domain(
        arch,
        machine,
        &format!(
            "{devices}    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n"
        ),
    )
}

/// A virtio disk.
pub fn vdisk(dev: &str, address: &str) -> String {
    format!(
        "    <disk type='file' device='disk'>\n      <source file='/var/lib/libvirt/images/{dev}.img'/>\n      <target dev='{dev}' bus='virtio'/>\n      {address}\n    </disk>\n"
    )
}

/// A NIC of a model.
pub fn nic(model: &str, address: &str) -> String {
    format!(
        "    <interface type='user'>\n      <model type='{model}'/>\n      {address}\n    </interface>\n"
    )
}

/// A PCI hostdev of a host function.
pub fn hostdev(host: &str, address: &str) -> String {
    let (dbs, f) = host.rsplit_once('.').unwrap();
    let parts: Vec<&str> = dbs.split(':').collect();
    format!(
        "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <driver name='vfio'/>\n      <source>\n        <address domain='0x{}' bus='0x{}' slot='0x{}' function='0x{f}'/>\n      </source>\n      {address}\n    </hostdev>\n",
        parts[0], parts[1], parts[2]
    )
}

/// Plans and expects success.
pub fn ok(xml: &str, caps: &Snapshot) -> Plan {
    qconform_plan::plan(xml, caps).unwrap_or_else(|e| panic!("plan refused: {e}\n{xml}"))
}

/// Plans and expects a rejection.
pub fn err(xml: &str, caps: &Snapshot) -> PlanError {
    match qconform_plan::plan(xml, caps) {
        Ok(p) => panic!("plan accepted:\n{}\n{xml}", p.argv_text()),
        Err(e) => e,
    }
}

/// The address text of a device.
pub fn addr(p: &Plan, alias: &str) -> String {
    p.devices
        .get(alias)
        .unwrap_or_else(|| panic!("no device {alias}:\n{}", p.addresses_text()))
        .text()
}

/// The `-device` argument whose `id=` is `id`.
pub fn device_arg<'a>(p: &'a Plan, id: &str) -> &'a str {
    let needle = format!("id={id},");
    let end = format!("id={id}");
    p.argv
        .iter()
        .find(|a| a.contains(&needle) || a.ends_with(&end))
        .unwrap_or_else(|| panic!("no -device with id={id}:\n{}", p.argv_text()))
}

/// Position of the argument whose `id=` is `id`.
pub fn arg_pos(p: &Plan, id: &str) -> usize {
    let a = device_arg(p, id);
    p.argv.iter().position(|x| x == a).unwrap()
}

/// The guest view as its lines (`DDDD:BB:SS.F CCCC: VVVV:DDDD`).
pub fn guest(p: &Plan) -> Vec<String> {
    p.guest_pci.iter().map(ToString::to_string).collect()
}

/// The first QEMU id used twice in an argv (`-device id=`, and likewise per option for
/// `-drive`, `-object`, `-netdev`, `-chardev`; `-blockdev node-name=`), or the first PCI slot and
/// function given twice on one bus, or a CCW device number given twice.
pub fn argv_reuse(argv: &[String]) -> Option<String> {
    let mut ids = BTreeSet::new();
    let mut slots = BTreeSet::new();
    let mut devnos = BTreeSet::new();
    for pair in argv.windows(2) {
        let [opt, value] = pair else { continue };
        let key = match opt.as_str() {
            "-device" | "-drive" | "-object" | "-netdev" | "-chardev" => "id",
            "-blockdev" => "node-name",
            _ => continue,
        };
        let props = qemu_opts(value);
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(id) = get(key)
            && !ids.insert((opt.clone(), id.to_owned()))
        {
            return Some(format!("{opt} {key}={id} used twice"));
        }
        if opt != "-device" {
            continue;
        }
        if let Some(addr) = get("addr") {
            let bus = get("bus").unwrap_or("").to_owned();
            let Some(sf) = pci_addr(addr) else {
                return Some(format!("bad addr={addr} in {value}"));
            };
            if !slots.insert((bus.clone(), sf)) {
                return Some(format!("bus={bus} addr={addr} used twice"));
            }
        }
        if let Some(devno) = get("devno")
            && !devnos.insert(devno.to_owned())
        {
            return Some(format!("devno={devno} used twice"));
        }
    }
    None
}

/// QEMU option syntax: `driver,name=value,...` with `,,` standing for a comma.
pub fn qemu_opts(value: &str) -> Vec<(String, String)> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                parts.last_mut().expect("non-empty").push(',');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut().expect("non-empty").push(c);
        }
    }
    parts
        .into_iter()
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// `0x1f.0x7` → (31, 7); `0x3` → (3, 0).
pub fn pci_addr(addr: &str) -> Option<(u32, u32)> {
    let num = |t: &str| u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok();
    match addr.split_once('.') {
        Some((s, f)) => Some((num(s)?, num(f)?)),
        None => Some((num(addr)?, 0)),
    }
}

/// The first `-device` whose QEMU type is a PCI device (per the snapshot) but that does not
/// carry both `bus=` and `addr=`: QEMU would pick its slot, possibly one the plan gave
/// another device.
pub fn unpinned_pci_device(argv: &[String], caps: &Snapshot) -> Option<String> {
    argv.windows(2)
        .filter(|w| w[0] == "-device")
        .map(|w| &w[1])
        .find(|value| {
            let ty = value.split(',').next().unwrap_or_default();
            let props = qemu_opts(value);
            let has = |k: &str| props.iter().any(|(n, _)| n == k);
            caps.implements(ty, "pci-device") && !(has("bus") && has("addr"))
        })
        .map(|value| format!("PCI device without bus= and addr=: {value}"))
}
