//! The caps diff on the committed snapshots (`capsdata/`): every pair of adjacent recorded
//! versions per architecture is compared and rendered in every format, and facts known to
//! hold between the recorded QEMU releases are asserted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use qconform_caps::{Placement, Snapshot};
use qconform_reports::diff::{self, CapsDiff, DiffSet};
use qconform_reports::diff_render::{self, Format};
use qconform_reports::load;

fn capsdata() -> PathBuf {
    // QCONFORM_CAPSDATA points the test at another recording (e.g. a fresh probe).
    std::env::var_os("QCONFORM_CAPSDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../capsdata"),
        PathBuf::from,
    )
}

/// The snapshots, read once for all tests of this file.
fn snapshots() -> &'static [Snapshot] {
    static SNAPS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPS.get_or_init(|| {
        let dir = capsdata();
        let snaps = load::read_snapshot_dir(&dir).expect("committed snapshots parse");
        assert!(
            !snaps.is_empty(),
            "no caps_*.json in {}: record them with `qconform probe --matrix`",
            dir.display()
        );
        snaps
    })
}

/// The snapshot of `major.minor` on `arch`.
fn find<'a>(snaps: &'a [Snapshot], version: (u32, u32), arch: &str) -> &'a Snapshot {
    snaps
        .iter()
        .find(|s| {
            s.probe.arch == arch
                && (s.probe.qemu_version.major, s.probe.qemu_version.minor) == version
        })
        .unwrap_or_else(|| panic!("capsdata lacks QEMU {}.{} {arch}", version.0, version.1))
}

#[test]
fn every_adjacent_pair_diffs_and_renders() {
    let snaps = snapshots();
    let diffs = diff::adjacent(snaps);
    let mut per_arch: BTreeMap<&str, usize> = BTreeMap::new();
    for s in snaps {
        *per_arch.entry(s.probe.arch.as_str()).or_default() += 1;
    }
    let expected: usize = per_arch.values().map(|n| n.saturating_sub(1)).sum();
    assert_eq!(diffs.len(), expected);
    assert!(expected >= 2, "at least two adjacent pairs recorded");
    for d in &diffs {
        assert_eq!(d.old.arch, d.new.arch);
        assert!(
            !d.is_empty(),
            "{} -> {}: two releases never agree on everything",
            d.old.id,
            d.new.id
        );
        // Every release pair changes the QMP schema and the machine list.
        assert!(!d.qmp_commands.is_empty(), "{}", d.key());
        assert!(!d.machine_types.is_empty(), "{}", d.key());
        let set = DiffSet::of(vec![d.clone()]);
        for f in [Format::Text, Format::Markdown, Format::Html, Format::Json] {
            let out = diff_render::render(&set, f);
            assert!(out.contains(&d.new.id), "{f:?} names the new snapshot");
        }
        let json = diff_render::json(&set);
        let back: DiffSet = serde_json::from_str(&json).expect("JSON parses back");
        assert_eq!(diff_render::json(&back), json);
    }
    for s in snaps {
        assert!(
            diff::diff(s, s).is_empty(),
            "{} differs from itself",
            s.id()
        );
    }
}

#[test]
fn x86_64_11_1_dropped_the_2_x_era_pc_machine_types() {
    let snaps = snapshots();
    let old = find(snaps, (10, 0), "x86_64");
    let new = find(snaps, (11, 1), "x86_64");
    let d = diff::diff(old, new);
    let is_2x = |m: &str| m.starts_with("pc-i440fx-2.") || m.starts_with("pc-q35-2.");
    let old_2x: Vec<&String> = old.index.machines.keys().filter(|m| is_2x(m)).collect();
    assert!(
        old_2x.len() >= 10,
        "10.0 still had the 2.x pc machine types: {old_2x:?}"
    );
    for m in old_2x {
        assert!(
            d.machine_types.removed.contains(m),
            "{m} not reported removed"
        );
    }
    assert!(!new.index.machines.keys().any(|m| is_2x(m)));
    let alias = |a: &str| {
        d.aliases
            .iter()
            .find(|m| m.alias == a)
            .map(|m| (m.old.clone(), m.new.clone()))
    };
    assert_eq!(
        alias("q35"),
        Some((
            Some("pc-q35-10.0".to_owned()),
            Some("pc-q35-11.1".to_owned())
        ))
    );
    assert_eq!(
        alias("pc"),
        Some((
            Some("pc-i440fx-10.0".to_owned()),
            Some("pc-i440fx-11.1".to_owned())
        ))
    );
    let text = diff_render::text(&DiffSet::of(vec![d]));
    assert!(
        text.contains("\n-pc-i440fx-2.12\n"),
        "unified diff lists the removal"
    );
    assert!(text.contains("q35: pc-q35-10.0 -> pc-q35-11.1"));
}

fn acpi_appears(d: &CapsDiff, old: &Snapshot, new: &Snapshot) {
    assert_eq!(d.machine_fields.added, vec!["acpi"], "{}", d.key());
    assert!(
        old.index.machines.values().all(|m| m.acpi.is_none()),
        "7.2 has no acpi"
    );
    assert!(
        new.index.machines.values().all(|m| m.acpi.is_some()),
        "10.0 reports acpi"
    );
    let machines_with_change: usize = d
        .machine_attributes
        .iter()
        .filter(|c| c.field == "acpi" && c.old.is_null())
        .map(|c| c.machines.len())
        .sum();
    let common = old
        .index
        .machines
        .keys()
        .filter(|m| new.index.machines.contains_key(*m))
        .count();
    assert_eq!(
        machines_with_change, common,
        "every machine in both gains acpi"
    );
}

#[test]
fn acpi_appears_in_query_machines_after_7_2() {
    let snaps = snapshots();
    let mut checked = 0;
    for arch in ["x86_64", "aarch64", "ppc64", "s390x", "riscv64"] {
        let has = |v: (u32, u32)| {
            snaps.iter().any(|s| {
                s.probe.arch == arch
                    && (s.probe.qemu_version.major, s.probe.qemu_version.minor) == v
            })
        };
        if !(has((7, 2)) && has((10, 0))) {
            continue;
        }
        let (old, new) = (find(snaps, (7, 2), arch), find(snaps, (10, 0), arch));
        acpi_appears(&diff::diff(old, new), old, new);
        checked += 1;
    }
    assert!(checked >= 1, "x86_64 7.2 and 10.0 at least");
    let old = find(snaps, (7, 2), "x86_64");
    let new = find(snaps, (10, 0), "x86_64");
    assert_eq!(
        old.index.machines.get("pc-q35-7.2").map(|m| m.acpi),
        Some(None)
    );
    assert_eq!(
        new.index.machines.get("pc-q35-10.0").map(|m| m.acpi),
        Some(Some(true))
    );
}

#[test]
fn s390x_virtio_pci_turns_modern_only_in_11_1() {
    let snaps = snapshots();
    let d = diff::diff(find(snaps, (10, 0), "s390x"), find(snaps, (11, 1), "s390x"));
    let virtio: Vec<&diff::PciIdChange> = d
        .pci_ids
        .iter()
        .filter(|c| c.device.starts_with("virtio-") && c.placement == "root")
        .collect();
    let net = virtio
        .iter()
        .find(|c| c.device == "virtio-net-pci")
        .expect("virtio-net-pci identity changes");
    assert!(
        net.old
            .as_deref()
            .is_some_and(|s| s.starts_with("1af4:1000 ")),
        "{net:?}"
    );
    assert!(
        net.new
            .as_deref()
            .is_some_and(|s| s.starts_with("1af4:1041 ")),
        "{net:?}"
    );
    assert!(
        virtio.len() >= 4,
        "net, blk, scsi, balloon, ...: {virtio:?}"
    );
    let new = find(snaps, (11, 1), "s390x");
    for c in &virtio {
        let id = new
            .pci_id(&c.device, Placement::Root)
            .expect("recorded in 11.1");
        assert!(
            id.device >= 0x1040,
            "{} is modern-only (0x1040+): {:04x}",
            c.device,
            id.device
        );
    }
    // x86_64 keeps transitional virtio on the root bus across the same releases.
    let x = diff::diff(
        find(snaps, (10, 0), "x86_64"),
        find(snaps, (11, 1), "x86_64"),
    );
    assert!(
        !x.pci_ids.iter().any(|c| c.device == "virtio-net-pci"),
        "{:?}",
        x.pci_ids
    );
}

#[test]
fn directories_pair_every_arch() {
    let snaps = snapshots();
    let (old, new): (Vec<Snapshot>, Vec<Snapshot>) = snaps
        .iter()
        .filter(|s| s.probe.qemu_version.major >= 10)
        .cloned()
        .partition(|s| s.probe.qemu_version.major == 10);
    let set = diff::diff_sets(&old, &new);
    assert_eq!(set.diffs.len(), old.len().min(new.len()));
    assert!(set.unpaired_old.is_empty() && set.unpaired_new.is_empty());
}
