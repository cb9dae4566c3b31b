//! Helpers shared by the integration tests: snapshots built in code and sample records.

#![allow(dead_code)]

use std::collections::BTreeMap;

use qconform_caps::{
    Index, MachineCaps, MachineInfo, ProbeInfo, QemuVersion, QmpSchemaSummary, Raw, Snapshot,
    TypeInfo,
};
use qconform_reports::results::{Event, Stage, TrialRecord};
use serde_json::{Value, json};

/// An empty snapshot of a version and arch; tests fill in what they compare.
pub fn snapshot(version: (u32, u32, u32), arch: &str) -> Snapshot {
    Snapshot {
        schema_version: qconform_caps::SCHEMA_VERSION,
        probe: ProbeInfo {
            qemu_version: QemuVersion {
                major: version.0,
                minor: version.1,
                micro: version.2,
            },
            package: format!("test {}.{}.{}", version.0, version.1, version.2),
            arch: arch.to_owned(),
            binary_name: format!("qemu-system-{arch}"),
            binary_sha256: "0123456789abcdef".repeat(4),
            probe_argv: Vec::new(),
            machine_argv: Vec::new(),
            accel: "qtest".to_owned(),
            tool: "test".to_owned(),
        },
        raw: Raw {
            greeting: Value::Null,
            query_version: Value::Null,
            query_target: Value::Null,
            query_machines: json!([]),
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
            types: BTreeMap::new(),
            implements: BTreeMap::new(),
            no_user: Default::default(),
            device_properties: BTreeMap::new(),
            qmp_commands: Default::default(),
            qmp_events: Default::default(),
            machine_caps: BTreeMap::new(),
            pci_ids: BTreeMap::new(),
        },
    }
}

/// Adds a machine to both the raw `query-machines` reply and the index.
pub fn add_machine(
    s: &mut Snapshot,
    name: &str,
    alias: Option<&str>,
    deprecated: bool,
    acpi: Option<bool>,
) {
    let mut entry = json!({
        "name": name,
        "deprecated": deprecated,
        "cpu-max": 255,
        "hotpluggable-cpus": true,
    });
    if let Some(a) = alias {
        entry["alias"] = json!(a);
        s.index.aliases.insert(a.to_owned(), name.to_owned());
    }
    if let Some(a) = acpi {
        entry["acpi"] = json!(a);
    }
    if let Some(arr) = s.raw.query_machines.as_array_mut() {
        arr.push(entry);
    }
    s.index.machines.insert(
        name.to_owned(),
        MachineInfo {
            alias: alias.map(str::to_owned),
            is_default: false,
            deprecated,
            cpu_max: Some(255),
            default_cpu_type: None,
            acpi,
        },
    );
}

/// Adds a concrete device type whose parent is `device` (through `parent`).
pub fn add_device(s: &mut Snapshot, name: &str, parent: &str) {
    s.index
        .types
        .entry("device".to_owned())
        .or_insert(TypeInfo {
            parent: None,
            is_abstract: true,
        });
    s.index.types.insert(
        name.to_owned(),
        TypeInfo {
            parent: Some(parent.to_owned()),
            is_abstract: false,
        },
    );
}

/// Caps of a machine that started with the given buses `(id, type, owner)`.
pub fn caps(buses: &[(&str, &str, Option<&str>)], categories: &[&str]) -> MachineCaps {
    MachineCaps {
        starts: true,
        error: None,
        buses: buses
            .iter()
            .map(|(id, ty, owner)| qconform_caps::BusInfo {
                id: (*id).to_owned(),
                bus_type: (*ty).to_owned(),
                parent_type: owner.map(str::to_owned),
                parent_id: None,
            })
            .collect(),
        builtin_pci: Vec::new(),
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        default_pci_bus: None,
    }
}

/// A record for the matrix tests.
pub fn record(
    case: &str,
    version: &str,
    arch: &str,
    machine: Option<&str>,
    stage: Stage,
    event: Event,
) -> TrialRecord {
    let name = match machine {
        Some(m) => format!("{case}@{version}/{arch}/{m}"),
        None => format!("{case}@{version}/{arch}"),
    };
    TrialRecord {
        record_type: "test".to_owned(),
        event,
        name,
        exec_time: 0.25,
        stage,
        case: case.to_owned(),
        qemu_version: version.to_owned(),
        arch: arch.to_owned(),
        machine: machine.map(str::to_owned),
        xfail: false,
        rig_error: false,
        message: match event {
            Event::Failed => Some(
                "guest view differs\n--- expected\n+++ actual\n@@ -1 +1 @@\n-00:03.0 1af4:1000\n+00:04.0 1af4:1000\n"
                    .to_owned(),
            ),
            Event::Ignored => Some("needs machine family q35".to_owned()),
            Event::Ok => None,
        },
        argv: vec![
            "-machine".to_owned(),
            "q35".to_owned(),
            "-device".to_owned(),
            "virtio-net-pci,id=net0,bus=pcie.0,addr=0x3".to_owned(),
            "-name".to_owned(),
            "it's <b>&".to_owned(),
        ],
        stderr_tail: (event == Event::Failed).then(|| "qemu-system-x86_64: warning: <tag> & \"quote\"".to_owned()),
    }
}

/// A small matrix: 3 cases x 2 versions x 2 arches, with each outcome represented.
pub fn sample_records() -> Vec<TrialRecord> {
    let mut v = Vec::new();
    for case in ["pcie-root-ports", "zpci-explicit", "floppy-on-q35"] {
        for version in ["10.0.2", "11.1.3"] {
            for arch in ["x86_64", "s390x"] {
                let machine = if arch == "x86_64" {
                    "q35"
                } else {
                    "s390-ccw-virtio"
                };
                v.push(record(
                    case,
                    version,
                    arch,
                    Some(machine),
                    Stage::Plan,
                    Event::Ok,
                ));
                let live = if case == "floppy-on-q35" && version == "11.1.3" && arch == "x86_64" {
                    Event::Failed
                } else if case == "zpci-explicit" && arch == "x86_64" {
                    Event::Ignored
                } else {
                    Event::Ok
                };
                v.push(record(
                    case,
                    version,
                    arch,
                    Some(machine),
                    Stage::Live,
                    live,
                ));
            }
        }
    }
    // One guest trial, one rig error, one xfail.
    v.push(record(
        "pcie-root-ports",
        "11.1.3",
        "x86_64",
        Some("q35"),
        Stage::Guest,
        Event::Ok,
    ));
    let mut rig = record(
        "zpci-explicit",
        "11.1.3",
        "s390x",
        Some("s390-ccw-virtio"),
        Stage::Guest,
        Event::Failed,
    );
    rig.rig_error = true;
    rig.message = Some("could not launch qemu-system-s390x: No such file or directory".to_owned());
    v.push(rig);
    let mut xf = record(
        "floppy-on-q35",
        "10.0.2",
        "x86_64",
        Some("pc"),
        Stage::Plan,
        Event::Ok,
    );
    xf.xfail = true;
    v.push(xf);
    v
}
