//! Derivation of the [`Index`](crate::Index) from [`Raw`](crate::Raw) replies.
//!
//! Every field of the index follows from `raw` alone, so a fix here never needs a re-probe:
//! re-derive and compare (a test does so for every committed snapshot).
//!
//! Rules worth knowing:
//! * `implements[X]` keeps the concrete types of `qom-list-types implements=X`; an error
//!   reply (the type does not exist in this binary) leaves `X` out.
//! * `no_user` are the `info qdm` lines ending in `, no-user`.
//! * Machine caps come from the per-machine launch: buses from `info qtree` (pre-order),
//!   built-in PCI functions from `query-pci`, categories from the bus types with
//!   [`bus_categories`], the default PCI bus is the first `PCI`/`PCIE` bus in qtree order.
//! * PCI identity: at the `root` placement from `query-pci` (bus 0); at `pcie-port` from the
//!   `info qtree` PCI line of the device, because at `-S` `query-pci` lists bus 0 only. The
//!   qtree line has no class number: the class is taken from the same type's `root` launch
//!   (a function's class does not depend on where it sits), else from the class name via
//!   the name → number pairs `query-pci` printed in this snapshot; a type whose class cannot
//!   be told is left out. Devices are recognised by the `-device TYPE,id=...` options of the
//!   recorded argv.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{
    BusInfo, BusRef, IdentityProbe, Index, LaunchOutcome, MachineCaps, MachineInfo, MachineProbe,
    PciFunction, PciId, Placement, PropertyInfo, Raw, TypeInfo, parse_qtree,
};

/// Raw replies that do not have the shape the index needs.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// A reply lacks a member or has the wrong JSON type.
    #[error("{reply}: {problem}")]
    Shape {
        /// Which reply (e.g. `query-machines`).
        reply: String,
        /// What is wrong.
        problem: String,
    },
}

fn shape(reply: &str, problem: impl Into<String>) -> DeriveError {
    DeriveError::Shape {
        reply: reply.to_owned(),
        problem: problem.into(),
    }
}

impl Index {
    /// Derives the normalised index from raw replies.
    pub fn derive(raw: &Raw) -> Result<Index, DeriveError> {
        let (machines, aliases, default_machine) = derive_machines(&raw.query_machines)?;
        let types = derive_types(&raw.qom_types)?;
        let implements = raw
            .qom_implements
            .iter()
            .filter_map(|(iface, reply)| {
                let list = reply.as_array()?;
                let set: BTreeSet<String> = list
                    .iter()
                    .filter(|t| !t.get("abstract").and_then(Value::as_bool).unwrap_or(false))
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                Some((iface.clone(), set))
            })
            .collect();
        let device_properties = raw
            .device_properties
            .iter()
            .map(|(ty, reply)| (ty.clone(), derive_properties(reply)))
            .collect();
        let machine_caps = raw
            .machines
            .iter()
            .filter(|(_, p)| p.outcome != LaunchOutcome::Skipped)
            .map(|(name, p)| (name.clone(), derive_machine_caps(p)))
            .collect();
        Ok(Index {
            default_machine,
            aliases,
            machines,
            types,
            implements,
            no_user: no_user_devices(&raw.info_qdm),
            device_properties,
            qmp_commands: raw.qmp_schema.commands.iter().cloned().collect(),
            qmp_events: raw.qmp_schema.events.iter().cloned().collect(),
            machine_caps,
            pci_ids: derive_pci_ids(&raw.pci_identity),
        })
    }
}

type Machines = (
    BTreeMap<String, MachineInfo>,
    BTreeMap<String, String>,
    Option<String>,
);

fn derive_machines(reply: &Value) -> Result<Machines, DeriveError> {
    let list = reply
        .as_array()
        .ok_or_else(|| shape("query-machines", "expected a list"))?;
    let mut machines = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    let mut default = None;
    for m in list {
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("query-machines", format!("entry without a name: {m}")))?;
        let alias = m.get("alias").and_then(Value::as_str).map(str::to_owned);
        let is_default = m
            .get("is-default")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(a) = &alias {
            aliases.insert(a.clone(), name.to_owned());
        }
        if is_default {
            default = Some(name.to_owned());
        }
        machines.insert(
            name.to_owned(),
            MachineInfo {
                alias,
                is_default,
                deprecated: m
                    .get("deprecated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                cpu_max: m.get("cpu-max").and_then(Value::as_i64),
                default_cpu_type: m
                    .get("default-cpu-type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                acpi: m.get("acpi").and_then(Value::as_bool),
            },
        );
    }
    Ok((machines, aliases, default))
}

fn derive_types(reply: &Value) -> Result<BTreeMap<String, TypeInfo>, DeriveError> {
    let list = reply
        .as_array()
        .ok_or_else(|| shape("qom-list-types", "expected a list"))?;
    let mut out = BTreeMap::new();
    for t in list {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("qom-list-types", format!("entry without a name: {t}")))?;
        out.insert(
            name.to_owned(),
            TypeInfo {
                parent: t.get("parent").and_then(Value::as_str).map(str::to_owned),
                is_abstract: t.get("abstract").and_then(Value::as_bool).unwrap_or(false),
            },
        );
    }
    Ok(out)
}

fn derive_properties(reply: &Value) -> Option<BTreeMap<String, PropertyInfo>> {
    let list = reply.as_array()?;
    Some(
        list.iter()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?;
                Some((
                    name.to_owned(),
                    PropertyInfo {
                        ty: p
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        default: p.get("default-value").cloned(),
                    },
                ))
            })
            .collect(),
    )
}

/// Device names of `info qdm` lines ending in `, no-user`
/// (`name "ich9-lpc", bus PCI, no-user`).
pub fn no_user_devices(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.trim_end().ends_with(", no-user"))
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("name \"")?;
            let end = rest.find('"')?;
            rest.get(..end).map(str::to_owned)
        })
        .collect()
}

/// Device categories a bus of this type accepts, as used in [`MachineCaps::categories`].
///
/// | bus type (as `info qtree` prints it) | categories |
/// |---|---|
/// | `PCI` | `pci` (conventional PCI) |
/// | `PCIE` | `pcie`, `pci` (a conventional device fits a PCIe root bus as an integrated endpoint) |
/// | `IDE` | `ide` |
/// | `ISA` | `isa` |
/// | `floppy-bus` | `floppy` |
/// | `usb-bus` | `usb` |
/// | `SCSI` | `scsi` |
/// | `virtual-css-bus` | `ccw` |
/// | `virtio-mmio-bus` | `virtio-mmio` |
/// | `System` | `sysbus` |
/// | `s390-pcibus` | `zpci` |
/// | `i2c-bus` | `i2c` |
/// | `spapr-vio-bus` | `spapr-vio` |
/// | `HDA` | `hda` |
/// | `s390-sclp-events-bus` | `sclp-events` |
/// | `virtio-pci-bus`, `virtio-ccw-bus` | none: the bus inside a virtio proxy holds exactly its own backend |
/// | anything else | the bus type itself, lowercased |
pub fn bus_categories(bus_type: &str) -> Vec<String> {
    let fixed: &[&str] = match bus_type {
        "PCI" => &["pci"],
        "PCIE" => &["pcie", "pci"],
        "IDE" => &["ide"],
        "ISA" => &["isa"],
        "floppy-bus" => &["floppy"],
        "usb-bus" => &["usb"],
        "SCSI" => &["scsi"],
        "virtual-css-bus" => &["ccw"],
        "virtio-mmio-bus" => &["virtio-mmio"],
        "System" => &["sysbus"],
        "s390-pcibus" => &["zpci"],
        "i2c-bus" => &["i2c"],
        "spapr-vio-bus" => &["spapr-vio"],
        "HDA" => &["hda"],
        "s390-sclp-events-bus" => &["sclp-events"],
        "virtio-pci-bus" | "virtio-ccw-bus" => &[],
        other => return vec![other.to_ascii_lowercase()],
    };
    fixed.iter().map(|s| (*s).to_owned()).collect()
}

/// The line of QEMU's stderr that says why it stopped: the last line that is not a
/// warning (else the last line), without the `qemu-system-<arch>: ` prefix.
pub fn error_line(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .rev()
        .find(|l| !l.contains("warning:"))
        .or_else(|| lines.last())?;
    let text = match pick.split_once(": ") {
        Some((prog, rest)) if prog.starts_with("qemu-system-") || prog == "qemu" => rest,
        _ => pick,
    };
    Some(text.to_owned())
}

fn derive_machine_caps(p: &MachineProbe) -> MachineCaps {
    let starts = p.outcome == LaunchOutcome::Started;
    let error = if starts {
        None
    } else {
        let line = error_line(&p.stderr);
        Some(match (p.outcome, p.signal, line) {
            (LaunchOutcome::Timeout, _, _) => "timeout".to_owned(),
            (_, Some(sig), Some(l)) => format!("signal {sig}: {l}"),
            (_, Some(sig), None) => format!("signal {sig}"),
            (_, None, Some(l)) => l,
            (_, None, None) => match p.exit_code {
                Some(c) => format!("exit code {c}"),
                None => "failed".to_owned(),
            },
        })
    };
    let mut buses = Vec::new();
    let mut categories = BTreeSet::new();
    let mut default_pci_bus = None;
    if let Some(tree) = p.info_qtree.as_deref().and_then(parse_qtree) {
        for (owner, bus) in tree.walk_buses() {
            buses.push(BusInfo {
                id: bus.id.clone(),
                bus_type: bus.bus_type.clone(),
                parent_type: owner.map(|d| d.ty.clone()),
                parent_id: owner.map(|d| d.id.clone()).filter(|i| !i.is_empty()),
            });
            categories.extend(bus_categories(&bus.bus_type));
            if default_pci_bus.is_none() && matches!(bus.bus_type.as_str(), "PCI" | "PCIE") {
                default_pci_bus = Some(BusRef {
                    id: bus.id.clone(),
                    bus_type: bus.bus_type.clone(),
                });
            }
        }
    }
    let mut builtin_pci = p.query_pci.as_ref().map(pci_functions).unwrap_or_default();
    builtin_pci.sort();
    MachineCaps {
        starts,
        error,
        buses,
        builtin_pci,
        categories,
        default_pci_bus,
    }
}

/// All functions of a `query-pci` reply, bridges' secondary buses included.
fn pci_functions(reply: &Value) -> Vec<PciFunction> {
    let mut out = Vec::new();
    fn walk(devices: &[Value], out: &mut Vec<PciFunction>) {
        for d in devices {
            if let Some(f) = pci_function(d) {
                out.push(f);
            }
            if let Some(sub) = d.pointer("/pci_bridge/devices").and_then(Value::as_array) {
                walk(sub, out);
            }
        }
    }
    for bus in reply.as_array().map(Vec::as_slice).unwrap_or_default() {
        if let Some(devs) = bus.get("devices").and_then(Value::as_array) {
            walk(devs, &mut out);
        }
    }
    out
}

fn u16_at(v: &Value, ptr: &str) -> Option<u16> {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

fn u8_at(v: &Value, ptr: &str) -> Option<u8> {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .and_then(|n| u8::try_from(n).ok())
}

fn pci_function(d: &Value) -> Option<PciFunction> {
    Some(PciFunction {
        bus: u8_at(d, "/bus")?,
        slot: u8_at(d, "/slot")?,
        function: u8_at(d, "/function")?,
        id: PciId {
            vendor: u16_at(d, "/id/vendor")?,
            device: u16_at(d, "/id/device")?,
            subsystem_vendor: u16_at(d, "/id/subsystem-vendor"),
            subsystem: u16_at(d, "/id/subsystem"),
            class: u16_at(d, "/class_info/class")?,
        },
        qdev_id: d
            .get("qdev_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Placement of a `pci_identity` key: the part before `:` (`root`, `pcie-port`,
/// `root:qxl-vga` for a type retried alone, `root:pxb@pc` for a type the reference
/// machine's root bus refuses, read alone on a fallback machine's root bus).
pub fn placement_of_key(key: &str) -> Option<Placement> {
    match key.split(':').next() {
        Some("root") => Some(Placement::Root),
        Some("pcie-port") => Some(Placement::PciePort),
        _ => None,
    }
}

/// `-device TYPE,id=ID,...` options of an argv: id → type.
pub fn device_ids_of_argv(argv: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a != "-device" {
            continue;
        }
        let Some(opt) = it.next() else { break };
        let mut parts = opt.split(',');
        let ty = parts.next().unwrap_or_default();
        let ty = ty.strip_prefix("driver=").unwrap_or(ty);
        if let Some(id) = parts.find_map(|p| p.strip_prefix("id=")) {
            out.insert(id.to_owned(), ty.to_owned());
        }
    }
    out
}

/// A PCI identity read from `info qtree`: type, placement, ids, class name.
type QtreeId = (String, Placement, (u16, u16, u16, u16), Option<String>);

fn derive_pci_ids(
    probes: &BTreeMap<String, IdentityProbe>,
) -> BTreeMap<String, BTreeMap<Placement, PciId>> {
    let mut out: BTreeMap<String, BTreeMap<Placement, PciId>> = BTreeMap::new();
    // Class name → numbers seen in any query-pci of this snapshot.
    let mut class_by_desc: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut qtree_ids: Vec<QtreeId> = Vec::new();

    for (key, probe) in probes {
        let Some(placement) = placement_of_key(key) else {
            continue;
        };
        if probe.outcome != LaunchOutcome::Started {
            continue;
        }
        let ids = device_ids_of_argv(&probe.argv);
        if let Some(q) = &probe.query_pci {
            for bus in q.as_array().map(Vec::as_slice).unwrap_or_default() {
                for d in bus
                    .get("devices")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if let (Some(desc), Some(class)) = (
                        d.pointer("/class_info/desc").and_then(Value::as_str),
                        u16_at(d, "/class_info/class"),
                    ) {
                        class_by_desc
                            .entry(desc.to_owned())
                            .or_default()
                            .insert(class);
                    }
                    if placement != Placement::Root {
                        continue;
                    }
                    let Some(f) = pci_function(d) else { continue };
                    if let Some(ty) = ids.get(&f.qdev_id) {
                        out.entry(ty.clone()).or_default().insert(placement, f.id);
                    }
                }
            }
        }
        if placement == Placement::PciePort
            && let Some(tree) = probe.info_qtree.as_deref().and_then(parse_qtree)
        {
            for (_, dev) in tree.walk_devices() {
                let (Some(ty), Some(pid)) = (ids.get(&dev.id), dev.pci_id) else {
                    continue;
                };
                // The holder ports themselves sit on the root bus; only what is behind
                // them has this placement.
                if ty == "pcie-root-port" && dev.id.starts_with("qcport") {
                    continue;
                }
                qtree_ids.push((ty.clone(), placement, pid, dev.class_desc.clone()));
            }
        }
    }
    for (ty, placement, (vendor, device, sv, sd), desc) in qtree_ids {
        let root = out.get(&ty).and_then(|m| m.get(&Placement::Root)).copied();
        let class = match root {
            Some(r) => Some(r.class),
            None => desc
                .as_deref()
                .and_then(|d| class_from_desc(d, &class_by_desc)),
        };
        let Some(class) = class else { continue };
        // query-pci reports subsystem ids only for functions with a type-0 header; follow
        // the root launch of the same type so both placements agree on presence.
        let has_sub = root.is_none_or(|r| r.subsystem_vendor.is_some());
        let id = PciId {
            vendor,
            device,
            subsystem_vendor: has_sub.then_some(sv),
            subsystem: has_sub.then_some(sd),
            class,
        };
        out.entry(ty).or_default().insert(placement, id);
    }
    out
}

fn class_from_desc(desc: &str, known: &BTreeMap<String, BTreeSet<u16>>) -> Option<u16> {
    if let Some(hex) = desc.strip_prefix("Class ") {
        return u16::from_str_radix(hex.trim(), 16).ok();
    }
    let set = known.get(desc)?;
    if set.len() == 1 {
        set.first().copied()
    } else {
        None
    }
}

/// Devfn offsets, from the physical function, of the SR-IOV virtual functions QEMU creates
/// for a device type when it realizes it, read from the identity probes: the functions the
/// probe did not create (no id, or QEMU's own `auto_…` one) reading `ffff:ffff` (an unenabled virtual function) on the bus of the type's
/// function, after it. The probe behind a PCIe port, where the type sits alone on its bus,
/// is read first; a binary without one (pSeries, s390x) is read from the root launch, where
/// the only type of the probe list with virtual functions is `igb`. Empty when the binary
/// creates none (QEMU before 10.0 creates them only when the guest enables them; measured
/// with `igb` on QEMU 7.2, 10.0 and 11.1).
pub fn sriov_vf_offsets(probes: &BTreeMap<String, IdentityProbe>, ty: &str) -> Vec<u8> {
    let mut order: Vec<(&String, &IdentityProbe)> = probes
        .iter()
        .filter(|(k, p)| placement_of_key(k).is_some() && p.outcome == LaunchOutcome::Started)
        .collect();
    order.sort_by_key(|(k, _)| placement_of_key(k) != Some(Placement::PciePort));
    for (_, probe) in order {
        let ids = device_ids_of_argv(&probe.argv);
        let Some(tree) = probe.info_qtree.as_deref().and_then(parse_qtree) else {
            continue;
        };
        for (_, bus) in tree.walk_buses() {
            let Some(pf) = bus
                .devices
                .iter()
                .find(|d| ids.get(&d.id).is_some_and(|t| t == ty))
            else {
                continue;
            };
            let Some((ps, pf_fn)) = pf.pci_addr else {
                continue;
            };
            let pf_devfn = u16::from(ps) * 8 + u16::from(pf_fn);
            let mut out: Vec<u8> = bus
                .devices
                .iter()
                .filter(|d| {
                    // Made by QEMU, not by the probe: no id (10.0) or `auto_…` (11.1).
                    !ids.contains_key(&d.id)
                        && d.pci_id
                            .is_some_and(|(v, dv, _, _)| v == 0xffff && dv == 0xffff)
                })
                .filter_map(|d| d.pci_addr)
                .map(|(s, f)| u16::from(s) * 8 + u16::from(f))
                .filter(|&devfn| devfn > pf_devfn)
                .filter_map(|devfn| u8::try_from(devfn - pf_devfn).ok())
                .collect();
            out.sort_unstable();
            return out;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_user_lines() {
        let qdm = "Controller/Bridge/Hub devices:\nname \"ich9-lpc\", bus PCI, no-user\nname \"pcie-root-port\", bus PCI, desc \"PCI Express Root Port\"\nname \"isa-fdc\", bus ISA, desc \"virtual floppy controller\"\nname \"q35-pcihost\", bus System, no-user\n";
        let got = no_user_devices(qdm);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["ich9-lpc".to_owned(), "q35-pcihost".to_owned()]
        );
    }

    #[test]
    fn test_error_line_skips_warnings_and_prefix() {
        let s = "qemu-system-aarch64: warning: missing SecureDigital device\nqemu-system-aarch64: Kernel or Flash image must be specified\n";
        assert_eq!(
            error_line(s).as_deref(),
            Some("Kernel or Flash image must be specified")
        );
        let abort = "Unexpected error in audio_init() at audio/audio.c:106:\nqemu-system-aarch64: no default audio driver available\n";
        assert_eq!(
            error_line(abort).as_deref(),
            Some("no default audio driver available")
        );
        assert_eq!(error_line("  \n"), None);
    }

    #[test]
    fn test_categories_table() {
        assert_eq!(bus_categories("PCIE"), vec!["pcie", "pci"]);
        assert_eq!(bus_categories("floppy-bus"), vec!["floppy"]);
        assert!(bus_categories("virtio-pci-bus").is_empty());
        assert_eq!(bus_categories("Weird-Bus"), vec!["weird-bus"]);
    }

    #[test]
    fn test_device_ids_of_argv() {
        let argv: Vec<String> = [
            "-device",
            "e1000,id=qc1,bus=pcie.0",
            "-device",
            "virtio-net-pci",
            "-device",
            "driver=nvme,id=qc2",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let ids = device_ids_of_argv(&argv);
        assert_eq!(ids.get("qc1").map(String::as_str), Some("e1000"));
        assert_eq!(ids.get("qc2").map(String::as_str), Some("nvme"));
        assert_eq!(ids.len(), 2);
    }
}
