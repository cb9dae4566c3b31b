//! Caps diff on snapshots built in code: every section reports what changed, and nothing
//! when nothing changed.

mod common;

use std::collections::BTreeMap;

use common::{add_device, add_machine, caps, snapshot};
use qconform_caps::{PciId, Placement, PropertyInfo, Snapshot};
use qconform_reports::diff::{self, DiffSet};
use qconform_reports::diff_render::{self, Format};
use serde_json::json;

fn pair() -> (Snapshot, Snapshot) {
    let mut old = snapshot((10, 0, 2), "x86_64");
    add_machine(&mut old, "pc-i440fx-2.12", None, true, None);
    add_machine(&mut old, "pc-i440fx-10.0", Some("pc"), false, None);
    add_machine(&mut old, "pc-q35-10.0", Some("q35"), false, None);
    add_machine(&mut old, "pc-q35-9.2", None, false, None);
    old.index.default_machine = Some("pc-i440fx-10.0".into());
    add_device(&mut old, "virtio-net-pci", "device");
    add_device(&mut old, "isa-fdc", "device");
    add_device(&mut old, "pcie-root-port", "device");
    old.index.implements.insert(
        "pci-express-device".into(),
        ["pcie-root-port".to_owned()].into_iter().collect(),
    );
    old.index.qmp_commands = ["query-pci", "query-old"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    old.index.qmp_events = ["RESET"].iter().map(|s| s.to_string()).collect();
    let mut props = BTreeMap::new();
    props.insert(
        "chassis".to_owned(),
        PropertyInfo {
            ty: "uint8".into(),
            default: Some(json!(0)),
        },
    );
    props.insert(
        "x-gone".to_owned(),
        PropertyInfo {
            ty: "bool".into(),
            default: None,
        },
    );
    old.index
        .device_properties
        .insert("pcie-root-port".into(), Some(props));
    old.index.device_properties.insert("zpci".into(), None);
    old.index.machine_caps.insert(
        "pc-q35-10.0".into(),
        caps(
            &[
                ("main-system-bus", "System", None),
                ("pcie.0", "PCIE", Some("q35-pcihost")),
            ],
            &["pci", "pcie"],
        ),
    );
    old.index.machine_caps.insert(
        "pc-q35-9.2".into(),
        caps(&[("pcie.0", "PCIE", Some("q35-pcihost"))], &["pcie"]),
    );
    old.index.pci_ids.insert(
        "virtio-net-pci".into(),
        [(
            Placement::Root,
            PciId {
                vendor: 0x1af4,
                device: 0x1000,
                subsystem_vendor: Some(0x1af4),
                subsystem: Some(1),
                class: 0x0200,
            },
        )]
        .into_iter()
        .collect(),
    );

    let mut new = snapshot((11, 1, 3), "x86_64");
    add_machine(&mut new, "pc-i440fx-11.1", Some("pc"), false, Some(true));
    add_machine(&mut new, "pc-q35-11.1", Some("q35"), false, Some(true));
    add_machine(&mut new, "pc-q35-10.0", None, false, Some(true));
    add_machine(&mut new, "pc-q35-9.2", None, true, Some(true));
    new.index.default_machine = Some("pc-i440fx-11.1".into());
    add_device(&mut new, "virtio-net-pci", "device");
    add_device(&mut new, "pcie-root-port", "device");
    add_device(&mut new, "virtio-iommu-pci", "device");
    new.index.implements.insert(
        "pci-express-device".into(),
        ["pcie-root-port".to_owned(), "virtio-iommu-pci".to_owned()]
            .into_iter()
            .collect(),
    );
    new.index.qmp_commands = ["query-pci", "query-new"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    new.index.qmp_events = ["RESET"].iter().map(|s| s.to_string()).collect();
    let mut props = BTreeMap::new();
    props.insert(
        "chassis".to_owned(),
        PropertyInfo {
            ty: "uint8".into(),
            default: Some(json!(1)),
        },
    );
    props.insert(
        "hotplug".to_owned(),
        PropertyInfo {
            ty: "bool".into(),
            default: Some(json!(true)),
        },
    );
    new.index
        .device_properties
        .insert("pcie-root-port".into(), Some(props));
    new.index.device_properties.insert("zpci".into(), None);
    new.index.machine_caps.insert(
        "pc-q35-11.1".into(),
        caps(
            &[
                ("main-system-bus", "System", None),
                ("pcie.0", "PCIE", Some("q35-pcihost")),
                ("ide.0", "IDE", Some("ich9-ahci")),
            ],
            &["pci", "pcie", "ide"],
        ),
    );
    let mut broken = caps(&[], &[]);
    broken.starts = false;
    broken.error = Some("machine type is gone".into());
    new.index.machine_caps.insert("pc-q35-9.2".into(), broken);
    new.index.pci_ids.insert(
        "virtio-net-pci".into(),
        [(
            Placement::Root,
            PciId {
                vendor: 0x1af4,
                device: 0x1041,
                subsystem_vendor: Some(0x1af4),
                subsystem: Some(0x1100),
                class: 0x0200,
            },
        )]
        .into_iter()
        .collect(),
    );
    (old, new)
}

#[test]
fn every_section_reports_its_change() {
    let (old, new) = pair();
    let d = diff::diff(&old, &new);
    assert_eq!(d.old.id, "10.0.2/x86_64");
    assert_eq!(d.new.id, "11.1.3/x86_64");
    assert_eq!(d.machine_types.added, vec!["pc-i440fx-11.1", "pc-q35-11.1"]);
    assert_eq!(
        d.machine_types.removed,
        vec!["pc-i440fx-2.12", "pc-i440fx-10.0"]
    );
    assert_eq!(d.machine_types.newly_deprecated, vec!["pc-q35-9.2"]);
    assert!(
        d.machine_types.unified.contains("-pc-i440fx-2.12"),
        "{}",
        d.machine_types.unified
    );
    let dm = d.default_machine.as_ref().expect("default moved");
    assert_eq!(dm.old.as_deref(), Some("pc-i440fx-10.0"));
    assert_eq!(dm.new.as_deref(), Some("pc-i440fx-11.1"));
    let aliases: Vec<(&str, Option<&str>, Option<&str>)> = d
        .aliases
        .iter()
        .map(|a| (a.alias.as_str(), a.old.as_deref(), a.new.as_deref()))
        .collect();
    assert_eq!(
        aliases,
        vec![
            ("pc", Some("pc-i440fx-10.0"), Some("pc-i440fx-11.1")),
            ("q35", Some("pc-q35-10.0"), Some("pc-q35-11.1")),
        ]
    );
    assert_eq!(d.machine_fields.added, vec!["acpi"]);
    let acpi = d
        .machine_attributes
        .iter()
        .find(|c| c.field == "acpi")
        .expect("acpi change");
    assert_eq!(acpi.old, serde_json::Value::Null);
    assert_eq!(acpi.new, json!(true));
    assert_eq!(acpi.machines, vec!["pc-q35-9.2", "pc-q35-10.0"]);
    assert_eq!(d.device_types.added, vec!["virtio-iommu-pci"]);
    assert_eq!(d.device_types.removed, vec!["isa-fdc"]);
    assert_eq!(d.interfaces.len(), 1);
    assert_eq!(d.interfaces[0].interface, "pci-express-device");
    assert_eq!(d.interfaces[0].members.added, vec!["virtio-iommu-pci"]);
    assert_eq!(
        d.device_properties.len(),
        1,
        "zpci absent on both sides is no change"
    );
    let p = &d.device_properties[0];
    assert_eq!(p.device, "pcie-root-port");
    assert_eq!(
        p.added.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        vec!["hotplug"]
    );
    assert_eq!(p.removed, vec!["x-gone"]);
    assert_eq!(p.changed.len(), 1);
    assert_eq!(p.changed[0].name, "chassis");
    assert!(p.changed[0].ty.is_none());
    let caps_by: BTreeMap<&str, &diff::MachineCapsDiff> = d
        .machine_caps
        .iter()
        .map(|m| (m.machine.as_str(), m))
        .collect();
    let q35 = caps_by
        .get("pc-q35-11.1")
        .expect("q35 compared through its alias");
    assert_eq!(q35.via_alias.as_deref(), Some("q35"));
    assert_eq!(q35.old_machine, "pc-q35-10.0");
    assert_eq!(q35.categories.added, vec!["ide"]);
    assert_eq!(q35.buses.added, vec!["ide.0: IDE (ich9-ahci)"]);
    let old92 = caps_by
        .get("pc-q35-9.2")
        .expect("same-name machine compared");
    assert_eq!(
        old92.starts.as_ref().map(|c| (c.old, c.new)),
        Some((true, false))
    );
    assert_eq!(d.pci_ids.len(), 1);
    assert_eq!(
        d.pci_ids[0].old.as_deref(),
        Some("1af4:1000 subsys 1af4:0001 class 0200")
    );
    assert_eq!(
        d.pci_ids[0].new.as_deref(),
        Some("1af4:1041 subsys 1af4:1100 class 0200")
    );
    assert_eq!(d.qmp_commands.added, vec!["query-new"]);
    assert_eq!(d.qmp_commands.removed, vec!["query-old"]);
    assert!(d.qmp_events.is_empty());
    assert!(!d.is_empty());
}

#[test]
fn a_snapshot_against_itself_is_empty() {
    let (old, _) = pair();
    let d = diff::diff(&old, &old);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(d.summary(), "no differences");
    let text = diff_render::text(&DiffSet::of(vec![d]));
    assert!(text.contains("summary: no differences"), "{text}");
}

#[test]
fn text_uses_unified_diffs() {
    let (old, new) = pair();
    let text = diff_render::render(&DiffSet::of(vec![diff::diff(&old, &new)]), Format::Text);
    assert!(
        text.starts_with("caps diff 10.0.2/x86_64 -> 11.1.3/x86_64\n"),
        "{text}"
    );
    assert!(
        text.contains("--- 10.0.2/x86_64\n+++ 11.1.3/x86_64\n"),
        "{text}"
    );
    assert!(text.contains("\n+virtio-iommu-pci\n"), "{text}");
    assert!(text.contains("\n-isa-fdc\n"), "{text}");
    assert!(text.contains("q35: pc-q35-10.0 -> pc-q35-11.1"), "{text}");
    assert!(text.contains("virtio-net-pci @ root: 1af4:1000"), "{text}");
    assert!(text.contains("~ chassis: default 0 -> 1"), "{text}");
    assert!(
        text.contains("acpi: (absent) -> true on 2 machine(s)"),
        "{text}"
    );
}

#[test]
fn json_is_stable_and_round_trips() {
    let (old, new) = pair();
    let set = DiffSet::of(vec![diff::diff(&old, &new)]);
    let a = diff_render::json(&set);
    let back: DiffSet = serde_json::from_str(&a).expect("parses back");
    assert_eq!(diff_render::json(&back), a, "rendering is a fixed point");
    let v: serde_json::Value = serde_json::from_str(&a).expect("json");
    assert_eq!(v["schema_version"], json!(1));
    let d = &v["diffs"][0];
    for key in [
        "old",
        "new",
        "machine_types",
        "default_machine",
        "aliases",
        "machine_fields",
        "machine_attributes",
        "device_types",
        "no_user",
        "interfaces",
        "device_properties",
        "machine_caps",
        "pci_ids",
        "qmp_commands",
        "qmp_events",
    ] {
        assert!(d.get(key).is_some(), "missing {key} in {d}");
    }
    assert!(
        d["device_types"].get("unified").is_none(),
        "rendering aid stays out of JSON"
    );
    assert_eq!(
        d["machine_types"]["removed"],
        json!(["pc-i440fx-2.12", "pc-i440fx-10.0"])
    );
}

#[test]
fn markdown_and_html_carry_the_same_facts() {
    let (old, new) = pair();
    let set = DiffSet::of(vec![diff::diff(&old, &new)]);
    let md = diff_render::render(&set, Format::Markdown);
    assert!(md.contains("## 10.0.2/x86_64 → 11.1.3/x86_64"), "{md}");
    assert!(md.contains("```diff\n"), "{md}");
    assert!(md.contains("+virtio-iommu-pci"), "{md}");
    let html = diff_render::render(&set, Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains(r#"<span class="add">+virtio-iommu-pci</span>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="diff-x86_64-10.0.2-11.1.3""#), "{html}");
    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[test]
fn directories_pair_by_arch() {
    let (old, new) = pair();
    let mut s390_old = snapshot((10, 0, 2), "s390x");
    add_machine(
        &mut s390_old,
        "s390-ccw-virtio-10.0",
        Some("s390-ccw-virtio"),
        false,
        None,
    );
    let lonely = snapshot((11, 1, 3), "riscv64");
    let set = diff::diff_sets(&[old, s390_old], &[new, lonely]);
    assert_eq!(set.diffs.len(), 1);
    assert_eq!(set.diffs[0].new.arch, "x86_64");
    assert_eq!(
        set.unpaired_old
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["10.0.2/s390x"]
    );
    assert_eq!(
        set.unpaired_new
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["11.1.3/riscv64"]
    );
    let text = diff_render::text(&set);
    assert!(text.contains("only in old: 10.0.2/s390x"), "{text}");
}

#[test]
fn adjacent_pairs_follow_version_order_per_arch() {
    let a = snapshot((7, 2, 0), "x86_64");
    let b = snapshot((10, 0, 2), "x86_64");
    let c = snapshot((11, 1, 3), "x86_64");
    let s = snapshot((11, 1, 3), "s390x");
    let diffs = diff::adjacent(&[c.clone(), s, a.clone(), b.clone()]);
    let ids: Vec<(String, String)> = diffs
        .iter()
        .map(|d| (d.old.id.clone(), d.new.id.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("7.2.0/x86_64".to_owned(), "10.0.2/x86_64".to_owned()),
            ("10.0.2/x86_64".to_owned(), "11.1.3/x86_64".to_owned()),
        ]
    );
}

#[test]
fn device_types_fall_back_to_the_parent_chain_and_survive_cycles() {
    let mut s = snapshot((11, 1, 3), "x86_64");
    add_device(&mut s, "pci-device", "device");
    add_device(&mut s, "e1000", "pci-device");
    s.index.types.insert(
        "loop-a".into(),
        qconform_caps::TypeInfo {
            parent: Some("loop-b".into()),
            is_abstract: false,
        },
    );
    s.index.types.insert(
        "loop-b".into(),
        qconform_caps::TypeInfo {
            parent: Some("loop-a".into()),
            is_abstract: false,
        },
    );
    let types = diff::device_types(&s);
    assert!(types.contains("e1000"));
    assert!(!types.contains("loop-a"));
}

#[test]
#[ignore = "prints the sample renderings for a human to read"]
fn show_text() {
    let (old, new) = pair();
    println!(
        "{}",
        diff_render::text(&DiffSet::of(vec![diff::diff(&old, &new)]))
    );
}

#[test]
fn natural_order_puts_2_12_before_10_0() {
    let mut v = vec![
        "pc-q35-10.0",
        "pc-q35-2.12",
        "pc-q35-2.4",
        "pc-q35-4.0.1",
        "pc-q35-4.0",
        "isapc",
    ];
    v.sort_by(|a, b| diff::natural_cmp(a, b));
    assert_eq!(
        v,
        vec![
            "isapc",
            "pc-q35-2.4",
            "pc-q35-2.12",
            "pc-q35-4.0",
            "pc-q35-4.0.1",
            "pc-q35-10.0"
        ]
    );
    assert_eq!(diff::natural_cmp("", "a"), std::cmp::Ordering::Less);
    assert_eq!(
        diff::natural_cmp("a01", "a1"),
        diff::natural_cmp("a01", "a1")
    );
    assert_ne!(
        diff::natural_cmp("a01", "a1"),
        std::cmp::Ordering::Equal,
        "total order"
    );
}
