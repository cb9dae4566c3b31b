//! PCIe controllers: root ports given and auto-added, eight per slot, the spare hotplug
//! port, chassis/port defaults, pcie-root-port vs ioh3420, switches, hotplug off, limits,
//! pcie-to-pci-bridge and dmi-to-pci-bridge for conventional devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qconform_alloc::testcaps;

const X86: &str = "x86_64";

fn ctrl(index: u32, model: &str, extra: &str) -> String {
    format!("    <controller type='pci' index='{index}' model='{model}'>{extra}</controller>\n")
}

#[test]
fn test_one_root_port_per_pcie_device_plus_a_spare() {
    let xml = bare(X86, "q35", &(nic("virtio", "") + &nic("virtio", "")));
    for v in VERSIONS {
        let p = ok(&xml, snap(v, X86));
        assert_eq!(p.controllers_added, vec!["pci.1", "pci.2", "pci.3"]);
        assert_eq!(addr(&p, "pci.1"), "pci 00:01.0 bus=pcie.0 multifunction");
        assert_eq!(addr(&p, "pci.3"), "pci 00:01.2 bus=pcie.0");
        assert_eq!(addr(&p, "net0"), "pci 01:00.0 bus=pci.1");
        assert_eq!(addr(&p, "net1"), "pci 02:00.0 bus=pci.2");
        assert_eq!(
            device_arg(&p, "pci.1"),
            "pcie-root-port,port=0x8,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x1"
        );
        assert_eq!(
            device_arg(&p, "pci.3"),
            "pcie-root-port,port=0xa,chassis=3,id=pci.3,bus=pcie.0,addr=0x1.0x2"
        );
    }
}

#[test]
fn test_eight_ports_per_slot_then_the_next_slot() {
    let disks: String = (0..9u8)
        .map(|i| vdisk(&format!("vd{}", (b'a' + i) as char), ""))
        .collect();
    let p = ok(&bare(X86, "q35", &disks), latest(X86));
    // 9 disks + 1 spare = 10 ports: 00:01.0-7, 00:02.0-1.
    assert_eq!(p.controllers_added.len(), 10);
    assert_eq!(addr(&p, "pci.8"), "pci 00:01.7 bus=pcie.0");
    assert_eq!(addr(&p, "pci.9"), "pci 00:02.0 bus=pcie.0 multifunction");
    assert_eq!(addr(&p, "pci.10"), "pci 00:02.1 bus=pcie.0");
    assert!(device_arg(&p, "pci.9").starts_with("pcie-root-port,port=0x10,chassis=9,"));
    assert!(device_arg(&p, "pci.10").starts_with("pcie-root-port,port=0x11,chassis=10,"));
}

#[test]
fn test_given_ports_are_used_first_and_no_spare_is_added() {
    let xml = bare(
        X86,
        "q35",
        &(ctrl(1, "pcie-root-port", "") + &ctrl(2, "pcie-root-port", "") + &nic("virtio", "")),
    );
    let p = ok(&xml, latest(X86));
    assert!(p.controllers_added.is_empty(), "{:?}", p.controllers_added);
    assert_eq!(addr(&p, "net0"), "pci 01:00.0 bus=pci.1");
    assert_eq!(addr(&p, "pci.2"), "pci 00:01.1 bus=pcie.0");
}

#[test]
fn test_ioh3420_when_the_binary_lacks_pcie_root_port() {
    let caps = testcaps::without(testcaps::x86_64(7, 2), &["pcie-root-port"]);
    let p = ok(&bare(X86, "q35", &nic("virtio", "")), &caps);
    assert!(device_arg(&p, "pci.1").starts_with("ioh3420,port=0x8,chassis=1,id=pci.1,"));
    assert!(p.domain_xml.contains("<model name='ioh3420'/>"));
}

#[test]
fn test_model_name_given_by_the_user_is_kept_and_checked() {
    let xml = bare(
        X86,
        "q35",
        &ctrl(1, "pcie-root-port", "<model name='ioh3420'/>"),
    );
    let p = ok(&xml, latest(X86));
    assert!(device_arg(&p, "pci.1").starts_with("ioh3420,"));
    let xml = bare(
        X86,
        "q35",
        &ctrl(1, "pcie-root-port", "<model name='pci-bridge'/>"),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("is not valid for a PCI controller with model 'pcie-root-port'"),
        "{e}"
    );
    assert_eq!(e.problem.attribute.as_deref(), Some("name"));
}

#[test]
fn test_switch_ports_get_chassis_and_port_defaults_and_guest_bus_numbers() {
    let xml = bare(
        X86,
        "q35",
        &(ctrl(1, "pcie-root-port", "")
            + &ctrl(2, "pcie-switch-upstream-port", "")
            + &ctrl(3, "pcie-switch-downstream-port", "")
            + &ctrl(4, "pcie-switch-downstream-port", "")
            + &nic("virtio", "")
            + &vdisk("vda", "")),
    );
    let p = ok(&xml, latest(X86));
    assert_eq!(addr(&p, "pci.2"), "pci 01:00.0 bus=pci.1");
    assert_eq!(addr(&p, "pci.3"), "pci 02:00.0 bus=pci.2");
    assert_eq!(addr(&p, "pci.4"), "pci 02:01.0 bus=pci.2");
    assert_eq!(
        device_arg(&p, "pci.2"),
        "x3130-upstream,id=pci.2,bus=pci.1,addr=0x0"
    );
    assert_eq!(
        device_arg(&p, "pci.4"),
        "xio3130-downstream,port=0x1,chassis=4,id=pci.4,bus=pci.2,addr=0x1"
    );
    assert_eq!(addr(&p, "net0"), "pci 03:00.0 bus=pci.3");
    assert_eq!(addr(&p, "virtio-disk0"), "pci 04:00.0 bus=pci.4");
    let g = guest(&p).join("\n");
    for l in [
        "0000:00:01.0 0604: 1b36:000c",
        "0000:01:00.0 0604: 104c:8232",
        "0000:02:00.0 0604: 104c:8233",
        "0000:02:01.0 0604: 104c:8233",
        "0000:03:00.0 0200: 1af4:1041",
        "0000:04:00.0 0100: 1af4:1042",
    ] {
        assert!(g.contains(l), "missing {l}:\n{g}");
    }
}

#[test]
fn test_hotplug_off_is_passed_on_and_the_port_still_used() {
    let xml = bare(
        X86,
        "q35",
        &(ctrl(1, "pcie-root-port", "<target hotplug='off'/>") + &nic("virtio", "")),
    );
    let p = ok(&xml, latest(X86));
    assert!(
        device_arg(&p, "pci.1").contains(",hotplug=off,"),
        "{}",
        p.argv_text()
    );
    assert_eq!(addr(&p, "net0"), "pci 01:00.0 bus=pci.1");
}

fn ports(n: u32) -> String {
    (1..=n).map(|i| ctrl(i, "pcie-root-port", "")).collect()
}

#[test]
fn test_240_root_ports_fit_on_pcie_0_and_241_do_not() {
    // Slots 1..=0x1e, eight functions each; 0x1f is the ICH9's.
    let p = ok(&bare(X86, "q35", &ports(240)), latest(X86));
    assert_eq!(addr(&p, "pci.240"), "pci 00:1e.7 bus=pcie.0");
    let e = err(&bare(X86, "q35", &ports(241)), latest(X86));
    assert!(e.problem.message.contains("pci.241"), "{e}");
    assert!(e.problem.message.contains("pcie-root-port"), "{e}");
}

#[test]
fn test_conventional_device_goes_behind_an_auto_added_pcie_to_pci_bridge() {
    let p = ok(&bare(X86, "q35", &nic("e1000", "")), latest(X86));
    assert_eq!(p.controllers_added, vec!["pci.1", "pci.2", "pci.3"]);
    assert_eq!(addr(&p, "pci.2"), "pci 01:00.0 bus=pci.1");
    assert_eq!(
        device_arg(&p, "pci.2"),
        "pcie-pci-bridge,id=pci.2,bus=pci.1,addr=0x0"
    );
    assert_eq!(addr(&p, "net0"), "pci 02:01.0 bus=pci.2");
}

#[test]
fn test_dmi_to_pci_bridge_when_the_binary_lacks_pcie_pci_bridge() {
    let caps = testcaps::without(testcaps::x86_64(7, 2), &["pcie-pci-bridge"]);
    let p = ok(&bare(X86, "q35", &nic("e1000", "")), &caps);
    // The third is the spare root port for hotplug.
    assert_eq!(p.controllers_added, vec!["pci.1", "pci.2", "pci.3"]);
    assert_eq!(addr(&p, "pci.3"), "pci 00:01.0 bus=pcie.0");
    assert_eq!(addr(&p, "pci.1"), "pci 00:1e.0 bus=pcie.0");
    assert_eq!(
        device_arg(&p, "pci.1"),
        "i82801b11-bridge,id=pci.1,bus=pcie.0,addr=0x1e"
    );
    assert_eq!(addr(&p, "pci.2"), "pci 01:00.0 bus=pci.1");
    assert!(device_arg(&p, "pci.2").starts_with("pci-bridge,chassis_nr=2,id=pci.2,bus=pci.1,"));
    assert_eq!(addr(&p, "net0"), "pci 02:01.0 bus=pci.2");
}

#[test]
fn test_slot_above_zero_on_a_root_port_is_refused() {
    let xml = bare(
        X86,
        "q35",
        &(ctrl(1, "pcie-root-port", "")
            + &vdisk(
                "vda",
                "<address type='pci' domain='0x0000' bus='0x01' slot='0x10' function='0x0'/>",
            )),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("Invalid PCI address 0000:01:10.0. slot must be <= 0"),
        "{e}"
    );
}

#[test]
fn test_two_ports_with_one_chassis_are_refused() {
    let xml = bare(
        X86,
        "q35",
        &(ctrl(1, "pcie-root-port", "<target chassis='5'/>")
            + &ctrl(2, "pcie-root-port", "<target chassis='5'/>")),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem
            .message
            .contains("chassis 5 is already used by pci.1"),
        "{e}"
    );
}

#[test]
fn test_virt_has_the_gpex_host_bridge_and_root_ports() {
    let xml = bare("aarch64", "virt", &nic("virtio", ""));
    for v in VERSIONS {
        let p = ok(&xml, snap(v, "aarch64"));
        assert_eq!(addr(&p, "net0"), "pci 01:00.0 bus=pci.1");
        assert_eq!(guest(&p)[0], "0000:00:00.0 0600: 1b36:0008");
        assert!(guest(&p).contains(&"0000:01:00.0 0200: 1af4:1041".to_string()));
    }
    let p = ok(
        &bare("riscv64", "virt", &nic("virtio", "")),
        latest("riscv64"),
    );
    assert_eq!(addr(&p, "net0"), "pci 01:00.0 bus=pci.1");
}

#[test]
fn test_pseries_places_everything_on_the_phb() {
    let xml = bare("ppc64", "pseries", &(nic("virtio", "") + &vdisk("vda", "")));
    let p = ok(&xml, latest("ppc64"));
    assert_eq!(addr(&p, "net0"), "pci 00:01.0 bus=pci.0");
    assert_eq!(addr(&p, "virtio-disk0"), "pci 00:02.0 bus=pci.0");
    assert!(p.controllers_added.is_empty());
}

/// libvirt 9.0 and 12.8 (define + dumpxml) give a pSeries domain a qemu-xhci USB
/// controller and name the implicit PHB, with target index 0; slots do not move.
#[test]
fn test_pseries_implicit_devices_match_libvirt() {
    let xml = domain("ppc64", "pseries", &(nic("virtio", "") + &vdisk("vda", "")));
    for v in VERSIONS {
        let p = ok(&xml, snap(v, "ppc64"));
        assert!(
            device_arg(&p, "usb").starts_with("qemu-xhci,"),
            "{v}: {}",
            p.argv_text()
        );
        assert_eq!(addr(&p, "net0"), "pci 00:01.0 bus=pci.0", "{v}");
        assert!(
            p.domain_xml
                .contains("<controller type='usb' index='0' model='qemu-xhci'>"),
            "{v}:\n{}",
            p.domain_xml
        );
        let root = "<controller type='pci' index='0' model='pci-root'>\n      <model name='spapr-pci-host-bridge'/>\n      <target index='0'/>\n    </controller>";
        assert!(p.domain_xml.contains(root), "{v}:\n{}", p.domain_xml);
        // The implicit PHB is the machine's own: never a -device.
        assert!(
            !p.argv
                .iter()
                .any(|a| a.starts_with("spapr-pci-host-bridge")),
            "{v}: {}",
            p.argv_text()
        );
    }
}

#[test]
fn test_pseries_adds_a_phb_when_the_first_is_full() {
    // 31 slots on the first PHB; the spare slot kept in pass 1 already makes libvirt add
    // a second PHB for 31 devices, which stays empty. 32 use it.
    let nics: String = (0..32).map(|_| nic("e1000", "")).collect();
    let p = ok(&bare("ppc64", "pseries", &nics), latest("ppc64"));
    assert_eq!(p.controllers_added, vec!["pci.1"]);
    assert!(device_arg(&p, "pci.1").starts_with("spapr-pci-host-bridge,index=1,id=pci.1"));
    assert_eq!(addr(&p, "net30"), "pci 00:1f.0 bus=pci.0");
    assert_eq!(addr(&p, "net31"), "pci 01:01.0 bus=pci.1.0");
    assert!(device_arg(&p, "net31").contains("bus=pci.1.0,addr=0x1"));
    assert!(
        guest(&p).contains(&"0001:00:01.0 0200: 8086:100e".to_string()),
        "{:?}",
        guest(&p)
    );
}

#[test]
fn test_pc_bridges_are_added_when_pci_0_is_full() {
    // pci.0 has slots 2..=31 free (30); one is kept for a future bridge in pass 1.
    let nics: String = (0..30).map(|_| nic("e1000", "")).collect();
    let p = ok(&bare(X86, "pc", &nics), latest(X86));
    assert_eq!(p.controllers_added, vec!["pci.1"]);
    assert_eq!(addr(&p, "pci.1"), "pci 00:02.0 bus=pci.0");
    assert_eq!(addr(&p, "net0"), "pci 00:03.0 bus=pci.0");
    assert_eq!(addr(&p, "net28"), "pci 00:1f.0 bus=pci.0");
    assert_eq!(addr(&p, "net29"), "pci 01:01.0 bus=pci.1");
    assert_eq!(
        device_arg(&p, "pci.1"),
        "pci-bridge,chassis_nr=1,id=pci.1,bus=pci.0,addr=0x2"
    );
}
