//! CCW addressing on s390x: automatic devnos in libvirt's iteration order, explicit ones,
//! duplicates, partial and out-of-range addresses, vfio-ccw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qconform_alloc::testcaps;

const S390: &str = "s390x";
const M: &str = "s390-ccw-virtio";

fn ccw(devno: &str) -> String {
    format!("<address type='ccw' cssid='0xfe' ssid='0x0' devno='{devno}'/>")
}

fn vfio_ccw(address: &str) -> String {
    format!(
        "    <hostdev mode='subsystem' type='mdev' model='vfio-ccw'>\n      <source>\n        <address uuid='90c6c135-ad44-41d0-b1b7-bae47de48627'/>\n      </source>\n      {address}\n    </hostdev>\n"
    )
}

#[test]
fn test_auto_devnos_follow_iteration_order() {
    // XML order: NIC, disk, rng, virtio-serial; iteration order: disks, nets,
    // controllers, balloon, rngs.
    let xml = domain(
        S390,
        M,
        &(nic("virtio", "")
            + &vdisk("vda", "")
            + "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n"
            + "    <controller type='virtio-serial' index='0'/>\n"),
    );
    for v in VERSIONS {
        let p = ok(&xml, snap(v, S390));
        assert_eq!(addr(&p, "virtio-disk0"), "ccw fe.0.0000");
        assert_eq!(addr(&p, "net0"), "ccw fe.0.0001");
        assert_eq!(addr(&p, "virtio-serial0"), "ccw fe.0.0002");
        assert_eq!(addr(&p, "balloon0"), "ccw fe.0.0003");
        assert_eq!(addr(&p, "rng0"), "ccw fe.0.0004");
        assert_eq!(
            device_arg(&p, "net0"),
            "virtio-net-ccw,id=net0,devno=fe.0.0001"
        );
        assert!(p.guest_pci.is_empty());
    }
}

#[test]
fn test_explicit_devnos_are_kept_and_skipped() {
    let xml = domain(
        S390,
        M,
        &(vdisk("vda", &ccw("0x0000")) + &vdisk("vdb", "") + &nic("virtio", &ccw("0x0002"))),
    );
    let p = ok(&xml, latest(S390));
    assert_eq!(addr(&p, "virtio-disk0"), "ccw fe.0.0000");
    assert_eq!(addr(&p, "virtio-disk1"), "ccw fe.0.0001");
    assert_eq!(addr(&p, "net0"), "ccw fe.0.0002");
    assert_eq!(addr(&p, "balloon0"), "ccw fe.0.0003");
}

#[test]
fn test_other_subchannel_sets_are_passed_through() {
    let xml = domain(
        S390,
        M,
        &nic(
            "virtio",
            "<address type='ccw' cssid='0xfe' ssid='0x3' devno='0xffff'/>",
        ),
    );
    let p = ok(&xml, latest(S390));
    assert_eq!(addr(&p, "net0"), "ccw fe.3.ffff");
    assert!(device_arg(&p, "net0").ends_with("devno=fe.3.ffff"));
}

#[test]
fn test_duplicate_devno_is_refused() {
    let xml = domain(
        S390,
        M,
        &(vdisk("vda", &ccw("0x0001")) + &nic("virtio", &ccw("0x0001"))),
    );
    let e = err(&xml, latest(S390));
    assert!(
        e.problem
            .message
            .contains("The CCW devno 'fe.0.0001' is in use already"),
        "{e}"
    );
}

#[test]
fn test_partial_and_out_of_range_addresses_are_refused_at_parse_time() {
    let e = err(
        &domain(
            S390,
            M,
            &nic(
                "virtio",
                "<address type='ccw' cssid='0xfe' devno='0x0001'/>",
            ),
        ),
        latest(S390),
    );
    assert!(
        e.problem
            .message
            .contains("Invalid partial specification for virtio ccw address"),
        "{e}"
    );
    assert_eq!(e.problem.attribute.as_deref(), Some("ssid"));
    let e = err(
        &domain(
            S390,
            M,
            &nic(
                "virtio",
                "<address type='ccw' cssid='0xfe' ssid='0x4' devno='0x0001'/>",
            ),
        ),
        latest(S390),
    );
    assert!(
        e.problem.message.contains(
            "Invalid specification for virtio ccw address: cssid='0xfe' ssid='0x4' devno='0x0001'"
        ),
        "{e}"
    );
    let e = err(
        &domain(
            S390,
            M,
            &nic(
                "virtio",
                "<address type='ccw' cssid='0xff' ssid='0x0' devno='0x0001'/>",
            ),
        ),
        latest(S390),
    );
    assert_eq!(e.problem.attribute.as_deref(), Some("cssid"));
}

#[test]
fn test_ccw_addresses_only_on_s390_ccw_machines() {
    let e = err(
        &bare("x86_64", "q35", &nic("virtio", &ccw("0x0001"))),
        latest("x86_64"),
    );
    assert!(
        e.problem
            .message
            .contains("CCW addresses are only supported on s390-ccw machines"),
        "{e}"
    );
}

#[test]
fn test_vfio_ccw_gets_a_devno_and_needs_its_mediated_device() {
    let xml = domain(S390, M, &(vdisk("vda", "") + &vfio_ccw("")));
    let p = ok(&xml, latest(S390));
    assert_eq!(addr(&p, "hostdev0"), "ccw fe.0.0001");
    assert_eq!(
        device_arg(&p, "hostdev0"),
        "vfio-ccw,sysfsdev=/sys/bus/mdev/devices/90c6c135-ad44-41d0-b1b7-bae47de48627,id=hostdev0,devno=fe.0.0001"
    );
    assert_eq!(addr(&p, "balloon0"), "ccw fe.0.0002");
    assert!(p.host_resources.iter().any(|h| h.contains("90c6c135")));
    let p = ok(&domain(S390, M, &vfio_ccw(&ccw("0x1234"))), latest(S390));
    assert_eq!(addr(&p, "hostdev0"), "ccw fe.0.1234");
}

#[test]
fn test_vfio_ccw_needs_the_device_in_the_binary() {
    let caps = testcaps::without(testcaps::s390x(7, 2, true), &["vfio-ccw"]);
    let e = err(&domain(S390, M, &vfio_ccw("")), &caps);
    assert!(
        e.problem
            .message
            .contains("vfio-ccw devices are not supported by this QEMU binary"),
        "{e}"
    );
}

#[test]
fn test_boot_order_becomes_bootindex() {
    let d = "    <disk type='file' device='disk'>\n      <target dev='vda' bus='virtio'/>\n      <boot order='1'/>\n    </disk>\n";
    let p = ok(&domain(S390, M, d), latest(S390));
    assert_eq!(
        device_arg(&p, "virtio-disk0"),
        "virtio-blk-ccw,drive=drive-virtio-disk0,id=virtio-disk0,bootindex=1,devno=fe.0.0000"
    );
}

#[test]
fn test_transitional_models_have_no_ccw_form() {
    let e = err(
        &domain(S390, M, &nic("virtio-transitional", "")),
        latest(S390),
    );
    assert!(
        e.problem
            .message
            .contains("not supported for address type=ccw"),
        "{e}"
    );
}
