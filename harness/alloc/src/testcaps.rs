//! Hand-built snapshots for unit tests of the allocator and the planner.
//!
//! They carry only what placement and the guest view read (machines, device types, machine
//! caps, PCI identities), with the values real QEMU binaries report: device type names as
//! `qom-list-types` lists them, machine names and aliases as `query-machines` gives them,
//! vendor:device and class as `query-pci` shows them, measured on the Debian builds of QEMU
//! 7.2, 10.0 and 11.1 whose snapshots are in `capsdata/`. Tests that need the full truth
//! use those recorded snapshots; these exist so that every rule can be tested in isolation,
//! including binaries the matrix does not have (no `pcie-pci-bridge`, no `zpci`, ...).

use std::collections::{BTreeMap, BTreeSet};

use qconform_caps::{
    Index, MachineCaps, MachineInfo, PciFunction, PciId, Placement, ProbeInfo, QemuVersion,
    QmpSchemaSummary, Raw, Snapshot, TypeInfo,
};
use serde_json::Value;

fn id(vendor: u16, device: u16, class: u16) -> PciId {
    PciId {
        vendor,
        device,
        subsystem_vendor: None,
        subsystem: None,
        class,
    }
}

/// Device types every PCI-capable test binary has.
const COMMON_PCI: &[&str] = &[
    "pci-bridge",
    "virtio-net-pci",
    "virtio-net-pci-transitional",
    "virtio-net-pci-non-transitional",
    "virtio-blk-pci",
    "virtio-blk-pci-transitional",
    "virtio-blk-pci-non-transitional",
    "virtio-balloon-pci",
    "virtio-balloon-pci-transitional",
    "virtio-balloon-pci-non-transitional",
    "virtio-rng-pci",
    "virtio-scsi-pci",
    "virtio-serial-pci",
    "virtio-gpu-pci",
    "virtio-keyboard-pci",
    "virtio-mouse-pci",
    "virtio-tablet-pci",
    "vhost-vsock-pci",
    "virtio-iommu-pci",
    "virtio-crypto-pci",
    "vfio-pci",
    "e1000",
    "e1000e",
    "rtl8139",
    "qemu-xhci",
    "nec-usb-xhci",
    "pci-ohci",
    "usb-ehci",
    "ahci",
    "nvme",
    "lsi53c895a",
    "pci-serial",
    "ivshmem-plain",
    "pvpanic-pci",
    "i6300esb",
    "pxb",
    "bochs-display",
    "usb-kbd",
    "usb-mouse",
    "usb-tablet",
    "scsi-hd",
    "scsi-cd",
    "nvme-ns",
    "virtserialport",
    "virtconsole",
];

const PCIE_PORTS: &[&str] = &[
    "pcie-root-port",
    "ioh3420",
    "x3130-upstream",
    "xio3130-downstream",
    "pcie-pci-bridge",
    "pxb-pcie",
];

/// Guest-visible identities shared by all test binaries.
fn pci_ids() -> BTreeMap<String, BTreeMap<Placement, PciId>> {
    let mut m: BTreeMap<String, BTreeMap<Placement, PciId>> = BTreeMap::new();
    let mut both = |ty: &str, root: PciId, port: PciId| {
        let e = m.entry(ty.to_string()).or_default();
        e.insert(Placement::Root, root);
        e.insert(Placement::PciePort, port);
    };
    both(
        "virtio-net-pci",
        id(0x1af4, 0x1000, 0x0200),
        id(0x1af4, 0x1041, 0x0200),
    );
    both(
        "virtio-blk-pci",
        id(0x1af4, 0x1001, 0x0100),
        id(0x1af4, 0x1042, 0x0100),
    );
    both(
        "virtio-balloon-pci",
        id(0x1af4, 0x1002, 0x00ff),
        id(0x1af4, 0x1045, 0x00ff),
    );
    both(
        "virtio-serial-pci",
        id(0x1af4, 0x1003, 0x0780),
        id(0x1af4, 0x1043, 0x0780),
    );
    both(
        "virtio-scsi-pci",
        id(0x1af4, 0x1004, 0x0100),
        id(0x1af4, 0x1048, 0x0100),
    );
    both(
        "virtio-rng-pci",
        id(0x1af4, 0x1005, 0x00ff),
        id(0x1af4, 0x1044, 0x00ff),
    );
    let mut one = |ty: &str, i: PciId| {
        m.entry(ty.to_string())
            .or_default()
            .insert(Placement::Root, i);
    };
    one("pcie-root-port", id(0x1b36, 0x000c, 0x0604));
    one("ioh3420", id(0x8086, 0x3420, 0x0604));
    one("x3130-upstream", id(0x104c, 0x8232, 0x0604));
    one("xio3130-downstream", id(0x104c, 0x8233, 0x0604));
    one("pcie-pci-bridge", id(0x1b36, 0x000e, 0x0604));
    one("pci-bridge", id(0x1b36, 0x0001, 0x0604));
    one("i82801b11-bridge", id(0x8086, 0x244e, 0x0604));
    one("e1000", id(0x8086, 0x100e, 0x0200));
    one("e1000e", id(0x8086, 0x10d3, 0x0200));
    one("rtl8139", id(0x10ec, 0x8139, 0x0200));
    one("qemu-xhci", id(0x1b36, 0x000d, 0x0c03));
    one("piix3-usb-uhci", id(0x8086, 0x7020, 0x0c03));
    one("ahci", id(0x8086, 0x2922, 0x0106));
    one("lsi53c895a", id(0x1000, 0x0012, 0x0100));
    one("VGA", id(0x1234, 0x1111, 0x0300));
    one("i6300esb", id(0x8086, 0x25ab, 0x0880));
    m
}

fn base_snapshot(arch: &str, version: QemuVersion, types: &[&str]) -> Snapshot {
    let mut t: BTreeMap<String, TypeInfo> = BTreeMap::new();
    for ty in types {
        t.insert(
            (*ty).to_string(),
            TypeInfo {
                parent: Some("device".into()),
                is_abstract: false,
            },
        );
    }
    let devices: BTreeSet<String> = types.iter().map(|s| s.to_string()).collect();
    let mut implements = BTreeMap::new();
    implements.insert("device".to_string(), devices);
    Snapshot {
        schema_version: qconform_caps::SCHEMA_VERSION,
        probe: ProbeInfo {
            qemu_version: version,
            package: "test".into(),
            arch: arch.into(),
            binary_name: format!("qemu-system-{arch}"),
            binary_sha256: String::new(),
            probe_argv: Vec::new(),
            machine_argv: Vec::new(),
            accel: "qtest".into(),
            tool: "testcaps".into(),
        },
        raw: Raw {
            greeting: Value::Null,
            query_version: Value::Null,
            query_target: Value::Null,
            query_machines: Value::Null,
            qom_types: Value::Null,
            qom_implements: BTreeMap::new(),
            device_properties: BTreeMap::new(),
            qmp_schema: QmpSchemaSummary {
                sha256: String::new(),
                entries: 0,
                commands: Vec::new(),
                events: Vec::new(),
            },
            info_qdm: String::new(),
            machines: BTreeMap::new(),
            pci_identity: BTreeMap::new(),
        },
        index: Index {
            default_machine: None,
            aliases: BTreeMap::new(),
            machines: BTreeMap::new(),
            types: t,
            implements,
            no_user: BTreeSet::new(),
            device_properties: BTreeMap::new(),
            qmp_commands: BTreeSet::new(),
            qmp_events: BTreeSet::new(),
            machine_caps: BTreeMap::new(),
            pci_ids: pci_ids(),
        },
    }
}

fn add_machine(
    s: &mut Snapshot,
    name: &str,
    alias: Option<&str>,
    default: bool,
    builtin: &[(u8, u8, PciId)],
    categories: &[&str],
) {
    s.index.machines.insert(
        name.to_string(),
        MachineInfo {
            alias: alias.map(str::to_string),
            is_default: default,
            deprecated: false,
            cpu_max: Some(1),
            default_cpu_type: None,
            acpi: None,
        },
    );
    if let Some(a) = alias {
        s.index.aliases.insert(a.to_string(), name.to_string());
    }
    if default {
        s.index.default_machine = Some(name.to_string());
    }
    s.index.machine_caps.insert(
        name.to_string(),
        MachineCaps {
            starts: true,
            error: None,
            buses: Vec::new(),
            builtin_pci: builtin
                .iter()
                .map(|(slot, function, id)| PciFunction {
                    bus: 0,
                    slot: *slot,
                    function: *function,
                    id: *id,
                    qdev_id: String::new(),
                })
                .collect(),
            categories: categories.iter().map(|s| s.to_string()).collect(),
            default_pci_bus: None,
        },
    );
}

fn version(major: u32, minor: u32) -> QemuVersion {
    QemuVersion {
        major,
        minor,
        micro: 0,
    }
}

/// An x86_64 binary with `pc-i440fx-M.m` (alias `pc`, default) and `pc-q35-M.m` (`q35`).
pub fn x86_64(major: u32, minor: u32) -> Snapshot {
    let mut types: Vec<&str> = COMMON_PCI.to_vec();
    types.extend_from_slice(PCIE_PORTS);
    types.extend_from_slice(&[
        "piix3-usb-uhci",
        "piix4-usb-uhci",
        "ich9-usb-ehci1",
        "ich9-usb-uhci1",
        "ich9-usb-uhci2",
        "ich9-usb-uhci3",
        "i82801b11-bridge",
        "VGA",
        "cirrus-vga",
        "qxl-vga",
        "qxl",
        "virtio-vga",
        "intel-hda",
        "ich9-intel-hda",
        "hda-duplex",
        "AC97",
        "ES1370",
        "ib700",
        "pvpanic",
        "intel-iommu",
        "amd-iommu",
        "isa-serial",
        "floppy",
        "ide-hd",
        "ide-cd",
        "sb16",
        "gpex-pcihost",
    ]);
    let mut s = base_snapshot("x86_64", version(major, minor), &types);
    let pc = format!("pc-i440fx-{major}.{minor}");
    let q35 = format!("pc-q35-{major}.{minor}");
    add_machine(
        &mut s,
        &pc,
        Some("pc"),
        true,
        &[
            (0, 0, id(0x8086, 0x1237, 0x0600)),
            (1, 0, id(0x8086, 0x7000, 0x0601)),
            (1, 1, id(0x8086, 0x7010, 0x0101)),
            (1, 3, id(0x8086, 0x7113, 0x0680)),
        ],
        &["pci", "isa", "ide", "floppy", "sysbus"],
    );
    add_machine(
        &mut s,
        &q35,
        Some("q35"),
        false,
        &[
            (0, 0, id(0x8086, 0x29c0, 0x0600)),
            (0x1f, 0, id(0x8086, 0x2918, 0x0601)),
            (0x1f, 2, id(0x8086, 0x2922, 0x0106)),
            (0x1f, 3, id(0x8086, 0x2930, 0x0c05)),
        ],
        &["pci", "pcie", "isa", "ide", "sysbus"],
    );
    s
}

/// Removes device types from a snapshot (to model older or smaller builds).
pub fn without(mut s: Snapshot, types: &[&str]) -> Snapshot {
    for t in types {
        s.index.types.remove(*t);
        for set in s.index.implements.values_mut() {
            set.remove(*t);
        }
        s.index.pci_ids.remove(*t);
    }
    s
}

/// An s390x binary with `s390-ccw-virtio-M.m` (alias `s390-ccw-virtio`, default);
/// `zpci` selects whether it has the zPCI device.
pub fn s390x(major: u32, minor: u32, zpci: bool) -> Snapshot {
    let mut types: Vec<&str> = vec![
        "virtio-net-ccw",
        "virtio-blk-ccw",
        "virtio-balloon-ccw",
        "virtio-rng-ccw",
        "virtio-scsi-ccw",
        "virtio-serial-ccw",
        "virtio-gpu-ccw",
        "virtio-keyboard-ccw",
        "virtio-mouse-ccw",
        "virtio-tablet-ccw",
        "vhost-vsock-ccw",
        "vfio-ccw",
        "vfio-ap",
        "diag288",
        "sclpconsole",
        "virtio-net-pci",
        "virtio-net-pci-transitional",
        "virtio-net-pci-non-transitional",
        "virtio-blk-pci",
        "virtio-blk-pci-non-transitional",
        "virtio-balloon-pci",
        "virtio-rng-pci",
        "virtio-scsi-pci",
        "virtio-serial-pci",
        "vfio-pci",
        "pci-bridge",
        "scsi-hd",
        "scsi-cd",
        "virtserialport",
        "virtconsole",
    ];
    if zpci {
        types.push("zpci");
    }
    let mut s = base_snapshot("s390x", version(major, minor), &types);
    let m = format!("s390-ccw-virtio-{major}.{minor}");
    add_machine(
        &mut s,
        &m,
        Some("s390-ccw-virtio"),
        true,
        &[],
        &["ccw", "pci", "sysbus"],
    );
    s
}

/// An aarch64 binary with `virt-M.m` (alias `virt`).
pub fn aarch64(major: u32, minor: u32) -> Snapshot {
    let mut types: Vec<&str> = COMMON_PCI.to_vec();
    types.extend_from_slice(PCIE_PORTS);
    types.extend_from_slice(&["gpex-pcihost", "ramfb"]);
    let mut s = base_snapshot("aarch64", version(major, minor), &types);
    let m = format!("virt-{major}.{minor}");
    add_machine(
        &mut s,
        &m,
        Some("virt"),
        false,
        &[(0, 0, id(0x1b36, 0x0008, 0x0600))],
        &["pci", "pcie", "sysbus"],
    );
    s
}

/// A riscv64 binary with `virt`.
pub fn riscv64(major: u32, minor: u32) -> Snapshot {
    let mut types: Vec<&str> = COMMON_PCI.to_vec();
    types.extend_from_slice(PCIE_PORTS);
    types.push("gpex-pcihost");
    let mut s = base_snapshot("riscv64", version(major, minor), &types);
    add_machine(
        &mut s,
        "virt",
        None,
        true,
        &[(0, 0, id(0x1b36, 0x0008, 0x0600))],
        &["pci", "pcie", "sysbus"],
    );
    s
}

/// A ppc64 binary with `pseries-M.m` (alias `pseries`, default).
pub fn ppc64(major: u32, minor: u32) -> Snapshot {
    let mut types: Vec<&str> = COMMON_PCI.to_vec();
    types.extend_from_slice(&[
        "spapr-pci-host-bridge",
        "spapr-vlan",
        "spapr-vscsi",
        "spapr-vty",
        "VGA",
    ]);
    let mut s = base_snapshot("ppc64", version(major, minor), &types);
    let m = format!("pseries-{major}.{minor}");
    add_machine(
        &mut s,
        &m,
        Some("pseries"),
        true,
        &[],
        &["pci", "spapr-vio", "sysbus"],
    );
    s
}
