//! The caps diff gives QEMU's own reason for every PCI identity, device type and machine
//! type that disappeared or could not be read, on real snapshots: the committed ones
//! (`capsdata/`) and a probe of QEMU 10.0.2 x86_64 started without its iPXE ROM directory
//! (`tests/data/no-rom/`, see the README there).

use std::path::PathBuf;

use qconform_caps::Snapshot;
use qconform_reports::diff::{self, CapsDiff, DiffSet};
use qconform_reports::diff_render::{self, Format};
use qconform_reports::load;

fn committed(file: &str) -> Snapshot {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../capsdata")
        .join(file);
    load::read_snapshot(&p).expect("committed snapshot parses")
}

fn without_roms() -> Snapshot {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/no-rom/caps_10.0.2_x86_64.json");
    load::read_snapshot(&p).expect("no-rom snapshot parses")
}

/// 10.0.2 x86_64 as recorded, against the same build probed without its ROM directory.
fn rom_diff() -> CapsDiff {
    diff::diff(&committed("caps_10.0.2_x86_64.json"), &without_roms())
}

/// The NIC models of the ROM-less probe; QEMU's ROM file name for each
/// (the device classes in QEMU's `hw/net/*.c` set `romfile` to `efi-<model>.rom`; the virtio
/// NICs share `efi-virtio.rom`, set in `hw/virtio/virtio-net-pci.c`).
const NICS: &[(&str, &str)] = &[
    ("e1000", "efi-e1000.rom"),
    ("e1000e", "efi-e1000e.rom"),
    ("ne2k_pci", "efi-ne2k_pci.rom"),
    ("pcnet", "efi-pcnet.rom"),
    ("rtl8139", "efi-rtl8139.rom"),
    ("virtio-net-pci", "efi-virtio.rom"),
    ("virtio-net-pci-non-transitional", "efi-virtio.rom"),
    ("virtio-net-pci-transitional", "efi-virtio.rom"),
    ("vmxnet3", "efi-vmxnet3.rom"),
];

#[test]
fn a_nic_without_its_rom_names_the_romfile() {
    let d = rom_diff();
    for (nic, rom) in NICS {
        let changes: Vec<_> = d.pci_ids.iter().filter(|c| c.device == *nic).collect();
        assert!(!changes.is_empty(), "{nic}: no PCI identity change");
        for c in changes {
            assert!(c.old.is_some(), "{nic} @ {}: recorded before", c.placement);
            assert_eq!(c.new, None, "{nic} @ {}", c.placement);
            assert_eq!(c.old_reason, None);
            assert_eq!(
                c.new_reason.as_deref(),
                Some(format!("failed to find romfile \"{rom}\"").as_str()),
                "{nic} @ {}",
                c.placement
            );
        }
    }
    // Only the NICs lost their identity.
    assert!(
        d.pci_ids
            .iter()
            .all(|c| NICS.iter().any(|(n, _)| *n == c.device)),
        "{:?}",
        d.pci_ids
    );
}

#[test]
fn the_reason_is_in_every_format() {
    let set = DiffSet::of(vec![rom_diff()]);
    let text = diff_render::render(&set, Format::Text);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("e1000 @ root:"))
        .unwrap_or_else(|| panic!("no e1000 line in\n{text}"));
    assert_eq!(
        line.trim(),
        "e1000 @ root: 8086:100e subsys 1af4:1100 class 0200 -> \
         (none; QEMU: failed to find romfile \"efi-e1000.rom\")"
    );
    let md = diff_render::render(&set, Format::Markdown);
    assert!(md.contains("failed to find romfile"), "{md}");
    let html = diff_render::render(&set, Format::Html);
    assert!(
        html.contains("(none; QEMU: failed to find romfile &quot;efi-e1000.rom&quot;)"),
        "html lacks the reason"
    );
    let json: serde_json::Value =
        serde_json::from_str(&diff_render::render(&set, Format::Json)).expect("json");
    let e1000 = json["diffs"][0]["pci_ids"]
        .as_array()
        .expect("pci_ids")
        .iter()
        .find(|c| c["device"] == "e1000" && c["placement"] == "root")
        .expect("e1000 @ root");
    // The existing fields are kept as they were; the reason is an added field.
    assert_eq!(e1000["old"], "8086:100e subsys 1af4:1100 class 0200");
    assert_eq!(e1000["new"], serde_json::Value::Null);
    assert_eq!(
        e1000["new_reason"],
        "failed to find romfile \"efi-e1000.rom\""
    );
    assert!(e1000.get("old_reason").is_none(), "{e1000}");
    let back: DiffSet = serde_json::from_value(json).expect("JSON reads back");
    assert_eq!(back.diffs[0].pci_ids, set.diffs[0].pci_ids);
}

#[test]
fn every_identity_missing_between_releases_has_a_reason() {
    let snaps =
        load::read_snapshot_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../capsdata"))
            .expect("committed snapshots parse");
    let mut seen = 0;
    for d in diff::adjacent(&snaps) {
        for c in &d.pci_ids {
            if c.old.is_none() {
                seen += 1;
                assert!(c.old_reason.is_some(), "{}: {c:?}", d.key());
            }
            if c.new.is_none() {
                seen += 1;
                assert!(c.new_reason.is_some(), "{}: {c:?}", d.key());
            }
        }
    }
    assert!(seen > 0, "the committed releases differ in some identity");
}

#[test]
fn qemu_reasons_between_recorded_releases() {
    // QEMU 7.2's s390x build has no e1000e (qom-list-types does not list it, so the probe
    // records it as absent instead of asking device-list-properties) and refuses virtio PCI
    // devices without MSI-X (hw/s390x/s390-pci-bus.c); 10.0 has both.
    let d = diff::diff(
        &committed("caps_7.2.22_s390x.json"),
        &committed("caps_10.0.2_s390x.json"),
    );
    let id = |dev: &str| {
        d.pci_ids
            .iter()
            .find(|c| c.device == dev && c.placement == "root")
            .unwrap_or_else(|| panic!("{dev} @ root unchanged"))
    };
    assert_eq!(
        id("e1000e").old_reason.as_deref(),
        Some("not listed by qom-list-types")
    );
    assert_eq!(
        id("virtio-balloon-pci").old_reason.as_deref(),
        Some("MSI-X support is mandatory in the S390 architecture")
    );
    let props = d
        .device_properties
        .iter()
        .find(|p| p.device == "e1000e")
        .expect("e1000e appeared");
    assert_eq!(
        props.reason.as_deref(),
        Some("not listed by qom-list-types")
    );
    let text = diff_render::render(&DiffSet::of(vec![d.clone()]), Format::Text);
    assert!(
        text.contains("type absent -> present (QEMU: not listed by qom-list-types)"),
        "{text}"
    );
}

#[test]
fn removed_machine_and_device_types_say_why() {
    let d = diff::diff(
        &committed("caps_10.0.2_s390x.json"),
        &committed("caps_11.1.3_s390x.json"),
    );
    let mt = &d.machine_types;
    assert!(!mt.removed.is_empty());
    for m in &mt.removed {
        let why = mt
            .removed_reasons
            .get(m)
            .unwrap_or_else(|| panic!("{m}: no reason"));
        assert!(
            why.starts_with("not listed by query-machines of 11.1.3/s390x"),
            "{why}"
        );
    }
    // s390-ccw-virtio-5.0 was deprecated in 10.0 and is gone in 11.1.
    assert_eq!(
        mt.removed_reasons
            .get("s390-ccw-virtio-5.0")
            .map(String::as_str),
        Some("not listed by query-machines of 11.1.3/s390x; deprecated in 10.0.2/s390x")
    );
    for t in &d.device_types.removed {
        assert!(
            d.device_types_removed_reasons.contains_key(t),
            "{t}: no reason"
        );
    }
    let text = diff_render::render(&DiffSet::of(vec![d.clone()]), Format::Text);
    assert!(
        text.contains(
            "removed (not listed by query-machines of 11.1.3/s390x; deprecated in 10.0.2/s390x): "
        ),
        "{text}"
    );
}
