//! PCI host devices: partial assignment of multifunction devices with
//! `<address type='unassigned'/>`, alias numbering, guest functions, host facts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const X86: &str = "x86_64";
const UNASSIGNED: &str = "<address type='unassigned'/>";

fn four(second: &str, fourth: &str) -> String {
    hostdev("0000:06:12.0", "")
        + &hostdev("0000:06:12.1", second)
        + &hostdev("0000:06:12.2", "")
        + &hostdev("0000:06:12.3", fourth)
}

#[test]
fn test_unassigned_function_takes_no_slot_but_keeps_its_alias_number() {
    let p = ok(&domain(X86, "pc", &four(UNASSIGNED, "")), latest(X86));
    assert_eq!(addr(&p, "hostdev0"), "pci 00:02.0 bus=pci.0");
    assert_eq!(addr(&p, "hostdev1"), "unassigned");
    assert_eq!(addr(&p, "hostdev2"), "pci 00:03.0 bus=pci.0");
    assert_eq!(addr(&p, "hostdev3"), "pci 00:04.0 bus=pci.0");
    assert_eq!(addr(&p, "balloon0"), "pci 00:05.0 bus=pci.0");
    assert!(
        !p.argv.iter().any(|a| a.contains("id=hostdev1")),
        "{}",
        p.argv_text()
    );
    assert!(!p.argv.iter().any(|a| a.contains("0000:06:12.1")));
    assert_eq!(
        p.argv.iter().filter(|a| a.starts_with("vfio-pci,")).count(),
        3
    );
    // The guest sees the three assigned functions, with unknown IDs.
    let unknown = p
        .guest_pci
        .iter()
        .filter(|f| (f.class, f.vendor, f.device) == (None, None, None))
        .count();
    assert_eq!(unknown, 3);
    assert!(!p.host_resources.is_empty());
}

#[test]
fn test_partial_assignment_on_q35_gives_each_function_a_root_port() {
    let p = ok(
        &domain(X86, "q35", &four(UNASSIGNED, UNASSIGNED)),
        latest(X86),
    );
    assert_eq!(addr(&p, "usb"), "pci 01:00.0 bus=pci.1");
    assert_eq!(addr(&p, "hostdev0"), "pci 02:00.0 bus=pci.2");
    assert_eq!(addr(&p, "hostdev1"), "unassigned");
    assert_eq!(addr(&p, "hostdev2"), "pci 03:00.0 bus=pci.3");
    assert_eq!(addr(&p, "hostdev3"), "unassigned");
    assert_eq!(addr(&p, "balloon0"), "pci 04:00.0 bus=pci.4");
    // An undescribed host device is assumed to be PCI Express, as libvirt does for a
    // device it cannot find.
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("0000:06:12.0") && w.contains("PCI Express"))
    );
    // Each such warning names its device.
    let host: Vec<&String> = p
        .warnings
        .iter()
        .filter(|w| w.contains("is not described"))
        .collect();
    assert_eq!(host.len(), 2, "{:?}", p.warnings);
    assert!(
        host[0].starts_with("hostdev0: host device 0000:06:12.0 "),
        "{host:?}"
    );
    assert!(host[1].starts_with("hostdev2: host device "), "{host:?}");
}

#[test]
fn test_host_facts_in_metadata_decide_express_or_not() {
    let xml = domain(X86, "q35", &hostdev("0000:00:04.0", "")).replace(
        "  <os>",
        "  <metadata>\n    <qc:host xmlns:qc='urn:qconform:host'>\n      <qc:pci address='0000:00:04.0' express='no'/>\n    </qc:host>\n  </metadata>\n  <os>",
    );
    let p = ok(&xml, latest(X86));
    assert_eq!(addr(&p, "hostdev0"), "pci 03:01.0 bus=pci.3");
    assert!(device_arg(&p, "pci.3").starts_with("pcie-pci-bridge,"));
    assert!(!p.warnings.iter().any(|w| w.contains("PCI Express")));
}

#[test]
fn test_all_functions_unassigned() {
    let p = ok(
        &domain(
            X86,
            "pc",
            &four(UNASSIGNED, UNASSIGNED)
                .replace(
                    &hostdev("0000:06:12.0", ""),
                    &hostdev("0000:06:12.0", UNASSIGNED),
                )
                .replace(
                    &hostdev("0000:06:12.2", ""),
                    &hostdev("0000:06:12.2", UNASSIGNED),
                ),
        ),
        latest(X86),
    );
    for i in 0..4 {
        assert_eq!(addr(&p, &format!("hostdev{i}")), "unassigned");
    }
    assert!(!p.argv.iter().any(|a| a.starts_with("vfio-pci")));
    assert!(p.host_resources.is_empty());
}

#[test]
fn test_guest_functions_of_one_slot_get_multifunction_on_function_0() {
    let xml = domain(
        X86,
        "pc",
        &(hostdev(
            "0000:06:12.0",
            "<address type='pci' domain='0' bus='0' slot='5' function='0'/>",
        ) + &hostdev(
            "0000:06:12.1",
            "<address type='pci' domain='0' bus='0' slot='5' function='1'/>",
        )),
    );
    let p = ok(&xml, latest(X86));
    assert_eq!(addr(&p, "hostdev0"), "pci 00:05.0 bus=pci.0 multifunction");
    assert!(device_arg(&p, "hostdev0").ends_with("bus=pci.0,multifunction=on,addr=0x5"));
    assert!(device_arg(&p, "hostdev1").ends_with("bus=pci.0,addr=0x5.0x1"));
}

#[test]
fn test_a_lone_function_above_0_is_not_seen_by_the_guest() {
    let xml = domain(
        X86,
        "pc",
        &hostdev(
            "0000:06:12.1",
            "<address type='pci' domain='0' bus='0' slot='5' function='1'/>",
        ),
    );
    let p = ok(&xml, latest(X86));
    assert!(
        !guest(&p).iter().any(|l| l.starts_with("0000:00:05.")),
        "{:?}",
        guest(&p)
    );
    assert!(p.warnings.iter().any(|w| w.contains("no function 0")));
}

#[test]
fn test_a_lone_function_above_0_is_seen_on_pseries_in_its_phb_domain() {
    // pSeries guests build PCI devices from the device tree, one node per function, and
    // name each PHB's domain by its index (observed booting Debian 6.1 on QEMU 7.2-11.1).
    let phb = "    <controller type='pci' index='1' model='pci-root'>\n      <model name='spapr-pci-host-bridge'/>\n      <target index='2'/>\n    </controller>\n";
    let devices = format!(
        "{phb}{}{}",
        hostdev(
            "0000:06:12.2",
            "<address type='pci' domain='0' bus='1' slot='1' function='2'/>",
        ),
        nic(
            "e1000",
            "<address type='pci' domain='0' bus='0' slot='3' function='1'/>"
        ),
    );
    let p = ok(&bare("ppc64", "pseries", &devices), latest("ppc64"));
    let seen: Vec<String> = p.guest_pci.iter().map(ToString::to_string).collect();
    assert!(
        seen.contains(&"0000:00:03.1 0200: 8086:100e".to_string()),
        "{seen:?}"
    );
    assert!(
        p.guest_pci.iter().any(|f| f.key() == (2, 0, 1, 2)),
        "{seen:?}"
    );
    assert!(
        !p.warnings.iter().any(|w| w.contains("no function 0")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn test_a_lone_function_above_0_is_not_seen_on_arm_or_riscv_virt() {
    for arch in ["aarch64", "riscv64"] {
        let devices = nic(
            "e1000",
            "<address type='pci' domain='0' bus='0' slot='3' function='1'/>",
        );
        let p = ok(&bare(arch, "virt", &devices), latest(arch));
        assert!(
            !p.guest_pci
                .iter()
                .any(|f| (f.domain, f.bus, f.slot) == (0, 0, 3)),
            "{arch}: {:?}",
            p.guest_pci
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w == "slot 00:03 has no function 0, so a guest will not see net0"),
            "{arch}: {:?}",
            p.warnings
        );
    }
}

#[test]
fn test_multifunction_off_with_other_functions_is_refused() {
    let xml = domain(
        X86,
        "pc",
        &(hostdev(
            "0000:06:12.0",
            "<address type='pci' slot='5' function='0' multifunction='off'/>",
        ) + &hostdev(
            "0000:06:12.1",
            "<address type='pci' slot='5' function='1'/>",
        )),
    );
    let e = err(&xml, latest(X86));
    assert!(
        e.problem.message.contains("indicates single function"),
        "{e}"
    );
}

#[test]
fn test_interface_hostdevs_are_numbered_first() {
    let iface = "    <interface type='hostdev' managed='yes'>\n      <source>\n        <address type='pci' domain='0x0000' bus='0x06' slot='0x13' function='0x0'/>\n      </source>\n    </interface>\n";
    let xml = domain(
        X86,
        "pc",
        &(hostdev("0000:06:12.0", "") + iface + &nic("e1000", "")),
    );
    let p = ok(&xml, latest(X86));
    assert!(device_arg(&p, "hostdev0").contains("host=0000:06:13.0"));
    assert!(device_arg(&p, "hostdev1").contains("host=0000:06:12.0"));
    // The NIC after the hostdev interface is the second interface.
    assert!(p.devices.contains_key("net1"));
    assert!(!p.devices.contains_key("net0"));
}

#[test]
fn test_unassigned_only_for_pci_hostdevs() {
    let e = err(&domain(X86, "pc", &vdisk("vda", UNASSIGNED)), latest(X86));
    assert!(e.problem.message.contains("unassigned"), "{e}");
}
