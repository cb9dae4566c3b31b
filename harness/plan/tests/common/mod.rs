//! Helpers shared by the plan tests: the recorded snapshots and small domain builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
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
pub const VERSIONS: [&str; 3] = ["7.2.22", "10.0.2", "11.1.3"];

/// The newest recorded snapshot of an architecture.
pub fn latest(arch: &str) -> &'static Snapshot {
    snap(VERSIONS[2], arch)
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
