//! Allocation drift: the classification of changes, on plans built in code and on real
//! plans of the core against the committed snapshots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qconform_reports::drift::{PlanOutcome, PlanView, Verdict, drift, text};

fn view(machine: &str, addr: &str, guest: &str) -> PlanOutcome {
    PlanOutcome::Planned {
        plan: PlanView {
            machine: machine.to_owned(),
            argv: vec![
                "-machine".into(),
                machine.into(),
                "-device".into(),
                format!("virtio-net-pci,addr={addr}"),
            ],
            devices: [("net0".to_owned(), format!("pci 00:{addr}.0 bus=pcie.0"))]
                .into_iter()
                .collect(),
            guest_pci: vec![format!("0000:00:{addr}.0 0200: {guest}")],
            warnings: Vec::new(),
        },
    }
}

#[test]
fn identical_plans_are_unchanged() {
    let a = view("pc-q35-11.1", "03", "1af4:1000");
    let d = drift("c", "10.0.2/x86_64", &a, "11.1.3/x86_64", &a);
    assert!(d.is_empty() && d.guest_abi_stable());
    assert_eq!(d.verdict(), Verdict::Unchanged);
    assert!(text(&d).contains("no change"), "{}", text(&d));
}

#[test]
fn a_moved_address_changes_the_guest_view() {
    let a = view("pc-q35-11.1", "03", "1af4:1000");
    let b = view("pc-q35-11.1", "04", "1af4:1000");
    let d = drift("c", "old", &a, "new", &b);
    assert_eq!(d.verdict(), Verdict::GuestViewChanges);
    assert_eq!(d.addresses.len(), 1);
    assert_eq!(
        d.addresses[0].old.as_deref(),
        Some("pci 00:03.0 bus=pcie.0")
    );
    assert!(
        d.guest_diff
            .contains("-0000:00:03.0 0200: 1af4:1000\n+0000:00:04.0 0200: 1af4:1000"),
        "{}",
        d.guest_diff
    );
    assert!(
        d.argv_diff
            .contains("--device virtio-net-pci,addr=03\n+-device virtio-net-pci,addr=04"),
        "{}",
        d.argv_diff
    );
}

#[test]
fn only_the_machine_version_moving_is_its_own_verdict() {
    let a = view("pc-q35-10.0", "03", "1af4:1000");
    let b = view("pc-q35-11.1", "03", "1af4:1000");
    let d = drift("c", "old", &a, "new", &b);
    assert_eq!(d.verdict(), Verdict::MachineTypeMoves);
    assert!(!d.guest_abi_stable());
}

#[test]
fn rejections_that_only_name_the_snapshot_are_the_same() {
    let a = PlanOutcome::Rejected {
        error: "type 'x' is not available in QEMU 10.0.2/x86_64".into(),
    };
    let b = PlanOutcome::Rejected {
        error: "type 'x' is not available in QEMU 11.1.3/x86_64".into(),
    };
    let d = drift("c", "10.0.2/x86_64", &a, "11.1.3/x86_64", &b);
    assert_eq!(d.verdict(), Verdict::RejectedByBoth);
    let c = PlanOutcome::Rejected {
        error: "something else".into(),
    };
    assert_eq!(
        drift("c", "10.0.2/x86_64", &a, "11.1.3/x86_64", &c).verdict(),
        Verdict::ErrorChanges
    );
}

#[test]
fn acceptance_changes_come_first() {
    let a = view("pc-q35-10.0", "03", "1af4:1000");
    let b = PlanOutcome::Rejected {
        error: "no such device".into(),
    };
    let d = drift("c", "old", &a, "new", &b);
    assert_eq!(d.verdict(), Verdict::AcceptanceChanges);
    let t = text(&d);
    assert!(
        t.contains("acceptance: planned -> rejected") && t.contains("new error: no such device"),
        "{t}"
    );
}

fn real_plan(xml: &str, file: &str) -> PlanOutcome {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../capsdata")
        .join(file);
    let snap = qconform_reports::load::read_snapshot(&path).expect("committed snapshot");
    match qconform_plan::plan(xml, &snap) {
        Ok(p) => PlanOutcome::Planned {
            plan: PlanView {
                devices: p
                    .devices
                    .iter()
                    .map(|(k, a)| (k.clone(), a.text()))
                    .collect::<BTreeMap<_, _>>(),
                machine: p.machine,
                argv: p.argv,
                guest_pci: p.guest_pci.iter().map(ToString::to_string).collect(),
                warnings: p.warnings,
            },
        },
        Err(e) => PlanOutcome::Rejected {
            error: e.to_string(),
        },
    }
}

fn snapshot_file(major_minor: &str, arch: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../capsdata");
    let prefix = format!("caps_{major_minor}.");
    let suffix = format!("_{arch}.json");
    std::fs::read_dir(&dir)
        .expect("capsdata")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no {major_minor} {arch} snapshot"))
}

const S390X_VIRTIO_PCI_DISK: &str = "<domain type='qemu'>
  <name>drift</name>
  <memory unit='MiB'>512</memory>
  <os><type arch='s390x' machine='s390-ccw-virtio'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/vda.img'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci'/>
    </disk>
  </devices>
</domain>";

#[test]
fn s390x_virtio_on_pci_changes_identity_from_10_0_to_11_1() {
    let a = real_plan(S390X_VIRTIO_PCI_DISK, &snapshot_file("10.0", "s390x"));
    let b = real_plan(S390X_VIRTIO_PCI_DISK, &snapshot_file("11.1", "s390x"));
    let d = drift("virtio-disk-on-zpci", "10.0/s390x", &a, "11.1/s390x", &b);
    assert_eq!(d.verdict(), Verdict::GuestViewChanges, "{}", text(&d));
    assert!(
        d.guest_diff.contains("1af4:1001") && d.guest_diff.contains("1af4:1042"),
        "{}",
        d.guest_diff
    );
    assert!(
        d.addresses.is_empty(),
        "same addresses, new identity: {:?}",
        d.addresses
    );
}

const Q35_ONE_NIC: &str = "<domain type='qemu'>
  <name>drift</name>
  <memory unit='MiB'>512</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <interface type='user'><model type='virtio'/></interface>
  </devices>
</domain>";

#[test]
fn a_pinned_q35_machine_keeps_its_guest_view_on_x86_64() {
    let a = real_plan(Q35_ONE_NIC, &snapshot_file("10.0", "x86_64"));
    let b = real_plan(Q35_ONE_NIC, &snapshot_file("11.1", "x86_64"));
    let d = drift("q35-nic", "10.0/x86_64", &a, "11.1/x86_64", &b);
    assert!(matches!(a, PlanOutcome::Planned { .. }), "{a:?}");
    assert!(d.guest_abi_stable(), "{}", text(&d));
}
