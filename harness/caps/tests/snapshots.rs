//! Every committed snapshot in `capsdata/` reads back strictly, re-serialises to the same
//! bytes, and its stored index is exactly what [`Index::derive`] gives from its raw replies.
//! Also checks, on real recorded data, the machine facts the suite relies on (seed 004).

use std::path::PathBuf;

use qconform_caps::{Index, Snapshot};

fn capsdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capsdata")
}

fn snapshots() -> Vec<(PathBuf, String, Snapshot)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(capsdata())
        .expect("capsdata/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let snap =
                Snapshot::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text, snap)
        })
        .collect()
}

fn find<'a>(all: &'a [(PathBuf, String, Snapshot)], id: &str) -> &'a Snapshot {
    &all.iter()
        .find(|(_, _, s)| s.id() == id)
        .unwrap_or_else(|| panic!("snapshot {id} is committed"))
        .2
}

#[test]
fn test_index_rederives_from_raw_for_every_snapshot() {
    let all = snapshots();
    assert_eq!(all.len(), 20, "the matrix has 20 (version, arch) snapshots");
    for (path, text, snap) in &all {
        let derived =
            Index::derive(&snap.raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            derived == snap.index,
            "{}: stored index differs from the one derived from raw (re-record with qconform probe)",
            path.display()
        );
        assert_eq!(
            &snap.to_canonical_json(),
            text,
            "{}: not in canonical form",
            path.display()
        );
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(snap.file_name().as_str())
        );
    }
}

#[test]
fn test_snapshots_hold_no_host_paths() {
    for (path, text, _) in &snapshots() {
        for needle in ["/root/", "/home/", "/tmp/", ".cache/qconform"] {
            assert!(
                !text.contains(needle),
                "{} mentions {needle}",
                path.display()
            );
        }
    }
}

#[test]
fn test_machine_fit_facts_from_recorded_data() {
    let all = snapshots();
    for v in ["7.2.22", "10.0.2", "11.1.3"] {
        let x86 = find(&all, &format!("{v}/x86_64"));
        let pc = x86.machine_caps("pc").expect("pc probed");
        let q35 = x86.machine_caps("q35").expect("q35 probed");
        assert!(pc.starts && q35.starts);
        assert!(pc.categories.contains("floppy"), "{v}: floppy fits pc");
        assert!(
            !q35.categories.contains("floppy"),
            "{v}: no floppy bus on q35 with -nodefaults"
        );
        assert!(q35.categories.contains("pcie") && !pc.categories.contains("pcie"));
        assert_eq!(
            q35.default_pci_bus.as_ref().map(|b| b.id.as_str()),
            Some("pcie.0")
        );
        assert_eq!(
            pc.default_pci_bus.as_ref().map(|b| b.bus_type.as_str()),
            Some("PCI")
        );

        let s390 = find(&all, &format!("{v}/s390x"));
        let ccw = s390
            .machine_caps("s390-ccw-virtio")
            .expect("s390-ccw-virtio probed");
        assert!(ccw.categories.contains("ccw") && ccw.categories.contains("zpci"));
        assert_eq!(
            ccw.default_pci_bus.as_ref().map(|b| b.id.as_str()),
            Some("pci.0")
        );

        // Virtio identity depends on placement: transitional on the root bus, modern behind
        // a root port (x86 q35).
        let root = x86
            .pci_id("virtio-net-pci", qconform_caps::Placement::Root)
            .expect("id");
        let port = x86
            .pci_id("virtio-net-pci", qconform_caps::Placement::PciePort)
            .expect("id");
        assert_eq!((root.vendor, root.device), (0x1af4, 0x1000), "{v}");
        assert_eq!((port.vendor, port.device), (0x1af4, 0x1041), "{v}");
        assert_eq!(root.class, 0x0200);
    }
    // Failures are recorded with QEMU's words, not dropped.
    let arm = find(&all, "11.1.3/aarch64");
    let canon = arm.machine_caps("canon-a1100").expect("probed");
    assert!(!canon.starts);
    assert!(
        canon
            .error
            .as_deref()
            .is_some_and(|e| e.contains("canon-a1100-rom1.bin"))
    );
}

/// q35's PCI Express root bus refuses `pxb`; its identity is read on i440fx's `pci.0` and
/// recorded at the `root` placement (the host bridge 1b36:0009).
#[test]
fn test_pxb_identity_comes_from_the_fallback_machine() {
    let all = snapshots();
    let mut seen = 0;
    for (path, _, s) in &all {
        if s.probe.arch != "x86_64" {
            continue;
        }
        seen += 1;
        let id = s
            .pci_id("pxb", qconform_caps::Placement::Root)
            .unwrap_or_else(|| panic!("{}: no root identity for pxb", path.display()));
        assert_eq!((id.vendor, id.device, id.class), (0x1b36, 0x0009, 0x0600));
        let fallback = &s.raw.pci_identity["root:pxb@pc"];
        assert_eq!(fallback.outcome, qconform_caps::LaunchOutcome::Started);
        assert!(fallback.argv.iter().any(|a| a.starts_with("pc")));
    }
    assert!(seen >= 3, "{seen} x86_64 snapshots");
}

#[test]
fn test_igb_virtual_functions_are_read_from_the_identity_probe() {
    let all = snapshots();
    // QEMU 10.0+ creates igb's eight virtual functions at realize, at devfn + 0x80 with
    // stride 2 (hw/net/igb.c); 7.2 has no igb.
    let vfs: Vec<u8> = (0..8).map(|k| 0x80 + 2 * k).collect();
    // Every 10.0 and 11.1 snapshot of every arch that has igb: the functions are found
    // whether QEMU leaves them without an id (10.0) or names them `auto_…` (11.1), behind
    // a PCIe port or in the root launch (pSeries, s390x).
    let mut seen = 0;
    for (path, _, s) in &all {
        let v = s.id();
        if (v.starts_with("10.0") || v.starts_with("11.1")) && s.has_type("igb") {
            seen += 1;
            assert_eq!(s.sriov_vf_offsets("igb"), vfs, "{}", path.display());
        }
    }
    assert!(seen >= 10, "{seen} snapshots with igb");
    assert!(
        find(&all, "7.2.22/x86_64")
            .sriov_vf_offsets("igb")
            .is_empty()
    );
    assert!(
        find(&all, "11.1.3/x86_64")
            .sriov_vf_offsets("e1000e")
            .is_empty()
    );
}

#[test]
fn test_every_refusal_alone_is_qemu_refusing_that_type_first() {
    // The probe counts a type as refused alone when QEMU refused it as the first device of a
    // launch (it creates `-device` options in command-line order). Every such record must
    // show it: the type's own option comes first (after its holder port at `pcie-port`) and
    // QEMU's error names that option, so the text is about the type and not a neighbour.
    let all = snapshots();
    let mut seen = 0;
    for (path, _, s) in &all {
        for (key, p) in &s.raw.pci_identity {
            let Some((_, rest)) = key.split_once(':') else {
                continue;
            };
            let ty = rest.split('@').next().unwrap_or_default();
            if p.outcome == qconform_caps::LaunchOutcome::Started || ty.parse::<u32>().is_ok() {
                continue;
            }
            let first = p
                .argv
                .windows(2)
                .filter(|w| w[0] == "-device" && !w[1].contains("id=qcport"))
                .map(|w| w[1].as_str())
                .next()
                .unwrap_or_default();
            assert!(
                first.starts_with(&format!("{ty},")),
                "{}: {key}: first device is {first}",
                path.display()
            );
            let timed_out = p.outcome == qconform_caps::LaunchOutcome::Timeout;
            assert!(
                timed_out || p.stderr.contains(&format!("-device {first}: ")),
                "{}: {key}: QEMU's error is not about {first}: {}",
                path.display(),
                p.stderr
            );
            seen += 1;
        }
    }
    assert!(seen >= 20, "{seen} refusals alone");
}

#[test]
fn test_no_identity_record_is_a_bare_machine_unless_the_placement_failed() {
    // The bare machine is launched only to tell a machine's refusal from a device's: a
    // started record always carries devices.
    for (path, _, s) in &snapshots() {
        for (key, p) in &s.raw.pci_identity {
            if p.outcome == qconform_caps::LaunchOutcome::Started {
                let devices = p.argv.iter().filter(|a| *a == "-device").count();
                assert!(devices > 0, "{}: {key} is a bare launch", path.display());
            }
        }
    }
}
