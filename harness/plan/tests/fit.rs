//! Machine-to-device fit: floppy on pc vs q35 vs virt, ISA devices, IDE, USB, devices the
//! binary lacks, machine and arch resolution, the default bus per family.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qconform_plan::PlanErrorKind;

const X86: &str = "x86_64";

fn floppy() -> &'static str {
    "    <disk type='file' device='floppy'>\n      <source file='/var/lib/libvirt/images/fda.img'/>\n      <target dev='fda' bus='fdc'/>\n    </disk>\n"
}

#[test]
fn test_floppy_uses_the_builtin_controller_on_pc() {
    let p = ok(&bare(X86, "pc", floppy()), latest(X86));
    assert_eq!(
        device_arg(&p, "fdc0-0-0"),
        "floppy,unit=0,drive=drive-fdc0-0-0,id=fdc0-0-0"
    );
    assert!(!p.argv.iter().any(|a| a.starts_with("isa-fdc")));
}

#[test]
fn test_floppy_on_q35_gets_an_isa_fdc() {
    let p = ok(&bare(X86, "q35", floppy()), latest(X86));
    let fdc = p
        .argv
        .iter()
        .position(|a| a == "isa-fdc,id=fdc0")
        .expect("isa-fdc");
    assert_eq!(fdc + 2, arg_pos(&p, "fdc0-0-0"));
}

#[test]
fn test_floppy_on_virt_is_refused() {
    let xml = bare("aarch64", "virt", floppy());
    let e = err(&xml, latest("aarch64"));
    assert!(e.problem.message.contains("no floppy controller"), "{e}");
    assert_eq!(e.problem.element.as_deref(), Some("disk"));
    assert!(e.problem.line.is_some());
}

#[test]
fn test_ib700_only_on_i440fx() {
    let w = "    <watchdog model='ib700' action='reset'/>\n";
    let p = ok(&bare(X86, "pc", w), latest(X86));
    assert_eq!(device_arg(&p, "watchdog0"), "ib700,id=watchdog0");
    let e = err(&bare(X86, "q35", w), latest(X86));
    assert!(
        e.problem.message.contains("only supported on i440fx"),
        "{e}"
    );
    let e = err(&bare("aarch64", "virt", w), latest("aarch64"));
    assert!(e.problem.message.contains("ib700"), "{e}");
}

#[test]
fn test_ide_only_where_the_machine_has_it() {
    let d =
        "    <disk type='file' device='disk'>\n      <target dev='hda' bus='ide'/>\n    </disk>\n";
    let p = ok(&bare(X86, "pc", d), latest(X86));
    assert_eq!(
        device_arg(&p, "ide0-0-0"),
        "ide-hd,bus=ide.0,unit=0,drive=drive-ide0-0-0,id=ide0-0-0,bootindex=1"
    );
    let e = err(&bare(X86, "q35", d), latest(X86));
    assert!(
        e.problem
            .message
            .contains("IDE controllers are unsupported"),
        "{e}"
    );
}

#[test]
fn test_sata_on_q35_uses_the_builtin_ahci() {
    let d = "    <disk type='file' device='cdrom'>\n      <target dev='sdb' bus='sata'/>\n      <readonly/>\n    </disk>\n";
    let p = ok(&bare(X86, "q35", d), latest(X86));
    assert_eq!(
        device_arg(&p, "sata0-0-1"),
        "ide-cd,bus=ide.1,drive=drive-sata0-0-1,id=sata0-0-1"
    );
    assert!(p.argv.iter().any(|a| a.contains("read-only=on")));
    assert!(!p.argv.iter().any(|a| a.starts_with("ich9-ahci")));
    // On pc the SATA controller is an added AHCI, a conventional PCI device.
    let p = ok(&bare(X86, "pc", d), latest(X86));
    assert!(device_arg(&p, "sata0").starts_with("ich9-ahci,id=sata0,bus=pci.0,addr=0x"));
}

#[test]
fn test_usb_devices_need_a_usb_controller() {
    let t = "    <input type='tablet' bus='usb'/>\n";
    let p = ok(&domain(X86, "q35", t), latest(X86));
    assert_eq!(device_arg(&p, "input0"), "usb-tablet,bus=usb.0,id=input0");
    let e = err(&bare(X86, "q35", t), latest(X86));
    assert!(e.problem.message.contains("USB is disabled"), "{e}");
}

#[test]
fn test_devices_the_binary_lacks_are_refused() {
    let e = err(
        &domain(
            "s390x",
            "s390-ccw-virtio",
            &nic("e1000", "<address type='pci'/>"),
        ),
        latest("s390x"),
    );
    assert!(
        e.problem
            .message
            .contains("device type 'e1000' is not available"),
        "{e}"
    );
    let e = err(&bare(X86, "pc", &nic("nosuchnic", "")), latest(X86));
    assert!(e.problem.message.contains("'nosuchnic'"), "{e}");
}

#[test]
fn test_machine_aliases_and_default_resolve_through_the_snapshot() {
    for v in VERSIONS {
        let s = snap(v, X86);
        let major_minor: String = v.rsplit_once('.').unwrap().0.to_string();
        assert_eq!(
            ok(&bare(X86, "q35", ""), s).machine,
            format!("pc-q35-{major_minor}")
        );
        assert_eq!(
            ok(&bare(X86, "pc", ""), s).machine,
            format!("pc-i440fx-{major_minor}")
        );
        let no_machine = bare(X86, "q35", "").replace(" machine='q35'", "");
        assert_eq!(
            ok(&no_machine, s).machine,
            s.index.default_machine.clone().unwrap()
        );
    }
}

#[test]
fn test_unknown_machine_and_wrong_arch_are_refused() {
    let e = err(&bare(X86, "no-such-machine", ""), latest(X86));
    assert!(
        e.problem
            .message
            .contains("unsupported machine type 'no-such-machine'"),
        "{e}"
    );
    assert_eq!(e.problem.attribute.as_deref(), Some("machine"));
    assert_eq!(e.kind, PlanErrorKind::Rejected);
    let e = err(&bare("aarch64", "virt", ""), latest(X86));
    assert!(e.problem.message.contains("does not match"), "{e}");
}

#[test]
fn test_default_bus_of_each_family() {
    let cases = [
        (X86, "pc", "pci 00:02.0 bus=pci.0"),
        (X86, "q35", "pci 01:00.0 bus=pci.1"),
        ("aarch64", "virt", "pci 01:00.0 bus=pci.1"),
        ("riscv64", "virt", "pci 01:00.0 bus=pci.1"),
        ("ppc64", "pseries", "pci 00:01.0 bus=pci.0"),
    ];
    for (arch, m, want) in cases {
        let p = ok(&bare(arch, m, &nic("virtio", "")), latest(arch));
        assert_eq!(addr(&p, "net0"), want, "{arch} {m}");
    }
    let p = ok(
        &bare("s390x", "s390-ccw-virtio", &nic("virtio", "")),
        latest("s390x"),
    );
    assert_eq!(addr(&p, "net0"), "ccw fe.0.0000");
}

#[test]
fn test_pcie_devices_on_pc_go_on_pci_0() {
    let p = ok(&bare(X86, "pc", &nic("e1000e", "")), latest(X86));
    assert_eq!(addr(&p, "net0"), "pci 00:02.0 bus=pci.0");
}
