//! s390x zPCI: uid/fid assignment (ranges, lowest free, phase A/B, duplicates, uid 0),
//! zpci devices on the command line, the guest view, and capability gating.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qconform_alloc::testcaps;

const S390: &str = "s390x";
const M: &str = "s390-ccw-virtio";

#[test]
fn test_auto_ids_follow_iteration_order_not_slot_order() {
    // Slots: NICs before disks; ids: disks before NICs.
    let xml = bare(
        S390,
        M,
        &(nic("virtio", "<address type='pci'/>") + &vdisk("vda", "<address type='pci'/>")),
    );
    for v in VERSIONS {
        let p = ok(&xml, snap(v, S390));
        assert_eq!(
            addr(&p, "net0"),
            "pci 00:01.0 bus=pci.0 zpci uid=0x0002 fid=0x00000001"
        );
        assert_eq!(
            addr(&p, "virtio-disk0"),
            "pci 00:02.0 bus=pci.0 zpci uid=0x0001 fid=0x00000000"
        );
    }
}

#[test]
fn test_explicit_ids_are_kept_and_zpci_precedes_its_target() {
    let xml = bare(
        S390,
        M,
        &nic(
            "virtio",
            "<address type='pci'><zpci uid='0x0003' fid='0x27'/></address>",
        ),
    );
    let p = ok(&xml, latest(S390));
    let z = arg_pos(&p, "zpci3");
    assert_eq!(p.argv[z], "zpci,uid=3,fid=39,target=net0,id=zpci3");
    assert_eq!(arg_pos(&p, "net0"), z + 2, "{}", p.argv_text());
    assert_eq!(p.argv[z + 2], "virtio-net-pci,id=net0,bus=pci.0,addr=0x1");
}

#[test]
fn test_phase_a_fills_the_missing_half_with_the_lowest_free_value() {
    // net0 gives only uid 5 (fid → 0 at once); the disk gives only fid 0x10
    // (uid → 1); the balloon on PCI gets both in phase B: uid 2, fid 1.
    let xml = domain(
        S390,
        M,
        &(vdisk("vda", "<address type='pci'><zpci fid='0x10'/></address>")
            + &nic("virtio", "<address type='pci'><zpci uid='5'/></address>")
            + "    <memballoon model='virtio'><address type='pci'/></memballoon>\n"),
    );
    let p = ok(&xml, latest(S390));
    assert!(addr(&p, "virtio-disk0").ends_with("zpci uid=0x0001 fid=0x00000010"));
    assert!(addr(&p, "net0").ends_with("zpci uid=0x0005 fid=0x00000000"));
    assert!(addr(&p, "balloon0").ends_with("zpci uid=0x0002 fid=0x00000001"));
}

#[test]
fn test_duplicate_uid_and_fid_are_refused() {
    let both = |a: &str, b: &str| {
        bare(
            S390,
            M,
            &(nic(
                "virtio",
                &format!("<address type='pci'><zpci {a}/></address>"),
            ) + &nic(
                "virtio",
                &format!("<address type='pci'><zpci {b}/></address>"),
            )),
        )
    };
    let e = err(&both("uid='3' fid='39'", "uid='3' fid='40'"), latest(S390));
    assert!(
        e.problem
            .message
            .contains("zPCI uid 0x0003 is already reserved"),
        "{e}"
    );
    assert_eq!(e.problem.element.as_deref(), Some("zpci"));
    let e = err(&both("uid='3' fid='39'", "uid='4' fid='39'"), latest(S390));
    assert!(
        e.problem
            .message
            .contains("zPCI fid 0x00000027 is already reserved"),
        "{e}"
    );
    // Phase A order: a fid filled in for the first device collides with the second's.
    let e = err(&both("uid='3'", "fid='0'"), latest(S390));
    assert!(
        e.problem
            .message
            .contains("fid 0x00000000 is already reserved"),
        "{e}"
    );
}

#[test]
fn test_uid_range_is_checked_at_parse_time() {
    for uid in ["0", "0x0", "0x10000", "65536"] {
        let xml = bare(
            S390,
            M,
            &nic(
                "virtio",
                &format!("<address type='pci'><zpci uid='{uid}'/></address>"),
            ),
        );
        let e = err(&xml, latest(S390));
        assert!(
            e.problem.message.contains("must be > 0x0000 and <= 0xffff"),
            "{uid}: {e}"
        );
        assert_eq!(e.problem.attribute.as_deref(), Some("uid"));
        assert!(e.problem.line.is_some() && e.problem.column.is_some());
    }
}

#[test]
fn test_boundaries_are_passed_in_decimal() {
    let xml = bare(
        S390,
        M,
        &nic(
            "virtio",
            "<address type='pci'><zpci uid='0xffff' fid='0xffffffff'/></address>",
        ),
    );
    let p = ok(&xml, latest(S390));
    assert!(
        p.argv
            .iter()
            .any(|a| a == "zpci,uid=65535,fid=4294967295,target=net0,id=zpci65535")
    );
    assert_eq!(p.devices["net0"].zpci_uid, Some(0xffff));
    assert_eq!(p.devices["net0"].zpci_fid, Some(0xffff_ffff));
}

#[test]
fn test_a_pci_bridge_gets_its_own_zpci_device() {
    // An address on bus 1 makes libvirt add a pci-bridge, which is a PCI device too.
    let xml = bare(
        S390,
        M,
        &nic(
            "virtio",
            "<address type='pci' domain='0' bus='1' slot='1' function='0'/>",
        ),
    );
    let p = ok(&xml, latest(S390));
    assert_eq!(p.controllers_added, vec!["pci.1".to_string()]);
    assert_eq!(
        addr(&p, "pci.1"),
        "pci 00:01.0 bus=pci.0 zpci uid=0x0002 fid=0x00000001"
    );
    assert_eq!(
        addr(&p, "net0"),
        "pci 01:01.0 bus=pci.1 zpci uid=0x0001 fid=0x00000000"
    );
    let z = arg_pos(&p, "zpci2");
    assert!(p.argv[z + 2].starts_with("pci-bridge,chassis_nr=1,id=pci.1,"));
    // Measured: the guest lists the endpoint in its own domain, never the bridge.
    assert_eq!(guest(&p), vec!["0001:00:00.0 0200: 1af4:1041".to_string()]);
}

#[test]
fn test_virtio_is_ccw_unless_forced_onto_pci() {
    let xml = domain(
        S390,
        M,
        &(vdisk("vda", "") + &vdisk("vdb", "<address type='pci'/>")),
    );
    let p = ok(&xml, latest(S390));
    assert_eq!(addr(&p, "virtio-disk0"), "ccw fe.0.0000");
    assert!(device_arg(&p, "virtio-disk0").starts_with("virtio-blk-ccw,"));
    assert!(addr(&p, "virtio-disk1").starts_with("pci 00:01.0 bus=pci.0 zpci uid=0x0001"));
    assert!(device_arg(&p, "virtio-disk1").starts_with("virtio-blk-pci,"));
    assert_eq!(addr(&p, "balloon0"), "ccw fe.0.0001");
}

#[test]
fn test_guest_sees_one_domain_per_uid_with_the_binary_s_virtio_ids() {
    let xml = bare(
        S390,
        M,
        &nic(
            "virtio",
            "<address type='pci'><zpci uid='3' fid='39'/></address>",
        ),
    );
    // QEMU 7.2 and 10.0 keep virtio transitional on s390x, 11.1 makes it modern.
    let p = ok(&xml, snap("7.2.22", S390));
    assert_eq!(guest(&p), vec!["0003:00:00.0 0200: 1af4:1000".to_string()]);
    let p = ok(&xml, snap("11.1.3", S390));
    assert_eq!(guest(&p), vec!["0003:00:00.0 0200: 1af4:1041".to_string()]);
}

#[test]
fn test_zpci_is_refused_where_the_binary_has_none() {
    let xml = bare(
        "x86_64",
        "q35",
        &nic(
            "virtio",
            "<address type='pci'><zpci uid='1' fid='1'/></address>",
        ),
    );
    let e = err(&xml, latest("x86_64"));
    assert!(
        e.problem
            .message
            .contains("This QEMU binary doesn't support zPCI"),
        "{e}"
    );
}

#[test]
fn test_s390x_has_a_pci_root_only_with_zpci() {
    let with = ok(&domain(S390, M, ""), &testcaps::s390x(7, 2, true));
    assert!(with.domain_xml.contains("model='pci-root'"));
    let without = ok(&domain(S390, M, ""), &testcaps::s390x(7, 2, false));
    assert!(
        !without.domain_xml.contains("pci-root"),
        "{}",
        without.domain_xml
    );
    let e = err(
        &domain(S390, M, &nic("virtio", "<address type='pci'/>")),
        &testcaps::s390x(7, 2, false),
    );
    assert!(e.problem.message.contains("No PCI buses available"), "{e}");
}

#[test]
fn test_no_pcie_topology_on_s390x() {
    let xml = domain(
        S390,
        M,
        "    <controller type='pci' index='1' model='pcie-root-port'/>\n",
    );
    let e = err(&xml, latest(S390));
    assert!(
        e.problem.message.contains(
            "a PCI slot is needed to connect a PCI controller model='pcie-root-port', but none is available, and it cannot be automatically added"
        ),
        "{e}"
    );
}

#[test]
fn test_multifunction_is_refused_on_s390x() {
    let xml = bare(
        S390,
        M,
        &(nic(
            "virtio",
            "<address type='pci' slot='2' function='0' multifunction='on'/>",
        ) + &nic("virtio", "<address type='pci' slot='2' function='1'/>")),
    );
    let e = err(&xml, latest(S390));
    assert!(
        e.problem
            .message
            .contains("multifunction not supported in s390"),
        "{e}"
    );
}

#[test]
fn test_vfio_pci_hostdev_on_s390x_gets_zpci_and_unknown_guest_ids() {
    let xml = bare(
        S390,
        M,
        &hostdev(
            "0001:00:00.0",
            "<address type='pci'><zpci uid='7'/></address>",
        ),
    );
    let p = ok(&xml, latest(S390));
    assert_eq!(
        addr(&p, "hostdev0"),
        "pci 00:01.0 bus=pci.0 zpci uid=0x0007 fid=0x00000000"
    );
    assert!(device_arg(&p, "hostdev0").starts_with("vfio-pci,host=0001:00:00.0,"));
    assert_eq!(guest(&p), vec!["0007:00:00.0 ????: ????:????".to_string()]);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("cannot be known offline"))
    );
    assert!(!p.host_resources.is_empty());
}
