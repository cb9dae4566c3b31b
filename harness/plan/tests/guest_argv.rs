//! The guest view against topologies measured on real guests (firmware bus numbering,
//! virtio transitional vs modern), argv determinism and escaping, and the xml2xml view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const X86: &str = "x86_64";

fn pci(bus: u32, slot: u32, function: u32) -> String {
    format!(
        "<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x{function:x}'/>"
    )
}

/// The q35 topology measured after SeaBIOS on 7.2, 10.0 and 11.1: a root port with a
/// switch behind it (virtio-net and virtio-blk on the two downstream ports), and a root
/// port with a pcie-pci-bridge holding an e1000.
#[test]
fn test_q35_switch_and_bridge_topology_matches_the_measured_guest() {
    let devs = format!(
        "    <controller type='pci' index='1' model='pcie-root-port'><target chassis='1' port='0x10'/>{}</controller>\n\
         <controller type='pci' index='2' model='pcie-switch-upstream-port'>{}</controller>\n\
         <controller type='pci' index='3' model='pcie-switch-downstream-port'><target chassis='2'/>{}</controller>\n\
         <controller type='pci' index='4' model='pcie-switch-downstream-port'><target chassis='3'/>{}</controller>\n\
         <controller type='pci' index='5' model='pcie-root-port'><target chassis='4' port='0x11'/>{}</controller>\n\
         <controller type='pci' index='6' model='pcie-to-pci-bridge'>{}</controller>\n{}{}{}",
        pci(0, 2, 0),
        pci(1, 0, 0),
        pci(2, 0, 0),
        pci(2, 1, 0),
        pci(0, 3, 0),
        pci(5, 0, 0),
        nic("virtio", &pci(3, 0, 0)),
        vdisk("vda", &pci(4, 0, 0)),
        nic("e1000", &pci(6, 1, 0)),
    );
    let want = [
        "0000:00:00.0 0600: 8086:29c0",
        "0000:00:02.0 0604: 1b36:000c",
        "0000:00:03.0 0604: 1b36:000c",
        "0000:00:1f.0 0601: 8086:2918",
        "0000:00:1f.2 0106: 8086:2922",
        "0000:00:1f.3 0c05: 8086:2930",
        "0000:01:00.0 0604: 104c:8232",
        "0000:02:00.0 0604: 104c:8233",
        "0000:02:01.0 0604: 104c:8233",
        "0000:03:00.0 0200: 1af4:1041",
        "0000:04:00.0 0100: 1af4:1042",
        "0000:05:00.0 0604: 1b36:000e",
        "0000:06:01.0 0200: 8086:100e",
    ];
    for v in VERSIONS {
        let p = ok(&bare(X86, "q35", &devs), snap(v, X86));
        assert_eq!(guest(&p), want, "{v}");
        assert!(p.controllers_added.is_empty());
    }
}

/// The i440fx topology measured on 7.2, 10.0 and 11.1: a pci-bridge at slot 3 with an
/// e1000 and a virtio-net behind it, a virtio-blk at slot 4; virtio stays transitional.
#[test]
fn test_pc_bridge_topology_matches_the_measured_guest() {
    let devs = format!(
        "    <controller type='pci' index='1' model='pci-bridge'>{}</controller>\n{}{}{}",
        pci(0, 3, 0),
        nic("e1000", &pci(1, 1, 0)),
        nic("virtio", &pci(1, 2, 0)),
        vdisk("vda", &pci(0, 4, 0)),
    );
    for v in VERSIONS {
        let p = ok(&bare(X86, "pc", &devs), snap(v, X86));
        let g = guest(&p).join("\n");
        for l in [
            "0000:00:03.0 0604: 1b36:0001",
            "0000:00:04.0 0100: 1af4:1001",
            "0000:01:01.0 0200: 8086:100e",
            "0000:01:02.0 0200: 1af4:1000",
        ] {
            assert!(g.contains(l), "{v}: missing {l}\n{g}");
        }
        assert!(
            g.starts_with("0000:00:00.0 0600: 8086:1237\n0000:00:01.0 0601: 8086:7000"),
            "{g}"
        );
    }
}

#[test]
fn test_virtio_is_modern_only_behind_a_root_port() {
    let p = ok(&bare(X86, "q35", &nic("virtio", "")), latest(X86));
    assert!(guest(&p).contains(&"0000:01:00.0 0200: 1af4:1041".to_string()));
    let p = ok(
        &bare(X86, "q35", &nic("virtio-transitional", "")),
        latest(X86),
    );
    // Transitional: conventional PCI, behind a pcie-to-pci-bridge.
    assert!(device_arg(&p, "net0").starts_with("virtio-net-pci-transitional,"));
    assert_eq!(addr(&p, "net0"), "pci 02:01.0 bus=pci.2");
}

#[test]
fn test_argv_is_byte_identical_for_the_same_input() {
    let xml = domain(
        X86,
        "q35",
        &(nic("virtio", "") + &vdisk("vda", "") + &nic("e1000", "")),
    );
    let a = ok(&xml, latest(X86));
    let b = ok(&xml, latest(X86));
    assert_eq!(a, b);
    assert_eq!(a.to_json().to_string(), b.to_json().to_string());
}

#[test]
fn test_option_values_are_escaped() {
    let d = "    <disk type='file' device='disk'>\n      <target dev='vda' bus='virtio'/>\n      <serial>a,b</serial>\n    </disk>\n";
    let p = ok(&bare(X86, "pc", d), latest(X86));
    assert!(
        p.argv.iter().any(|a| a.contains("serial=a,,b,")),
        "{}",
        p.argv_text()
    );
    // A user alias with a comma is not an id libvirt keeps (only 'ua-' plus letters,
    // digits, '_' and '-'): the device keeps its own alias.
    let n = "    <interface type='user'>\n      <model type='e1000'/>\n      <alias name='ua-a,b'/>\n    </interface>\n";
    let p = ok(&bare(X86, "pc", n), latest(X86));
    assert!(p.devices.contains_key("net0"));
    assert!(!p.argv_text().contains("ua-a"), "{}", p.argv_text());
}

#[test]
fn test_argv_starts_with_machine_and_nodefaults_and_puts_controllers_first() {
    let p = ok(
        &domain(X86, "q35", &(vdisk("vda", "") + &nic("e1000", ""))),
        latest(X86),
    );
    assert_eq!(&p.argv[..3], &["-machine", "pc-q35-11.1", "-nodefaults"]);
    let last_ctrl = p.argv.iter().rposition(|a| a.starts_with("pcie-")).unwrap();
    let first_dev = p
        .argv
        .iter()
        .position(|a| a.starts_with("virtio-blk-pci"))
        .unwrap();
    assert!(last_ctrl < first_dev);
    assert!(
        p.argv
            .iter()
            .any(|a| a.starts_with("driver=null-co,node-name=drive-virtio-disk0,"))
    );
    assert!(p.host_resources.is_empty());
}

#[test]
fn test_json_has_the_contract_fields() {
    let p = ok(&domain(X86, "q35", &nic("virtio", "")), latest(X86));
    let j = p.to_json();
    for k in [
        "machine",
        "argv",
        "devices",
        "controllers_added",
        "guest_pci",
        "warnings",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
    let d = &j["devices"]["net0"];
    assert_eq!(d["kind"], "pci");
    assert_eq!(d["bus"], 1);
    assert_eq!(d["slot"], 0);
    assert_eq!(d["function"], 0);
    assert_eq!(d["bus_alias"], "pci.1");
    assert_eq!(d["multifunction"], false);
    assert!(d["zpci_uid"].is_null() && d["ccw_devno"].is_null());
}

/// libvirt's xml2xml view is a fixed point: planning it again changes nothing and adds
/// no controller.
#[test]
fn test_xml2xml_is_a_fixed_point() {
    let inputs = [
        (
            X86,
            "q35",
            nic("virtio", "")
                + &nic("e1000", "")
                + &vdisk("vda", "")
                + &hostdev("0000:06:12.0", ""),
        ),
        (
            X86,
            "pc",
            nic("e1000", "")
                + &vdisk("vda", "")
                + "    <controller type='pci' index='1' model='pci-bridge'/>\n",
        ),
        (
            "s390x",
            "s390-ccw-virtio",
            nic("virtio", "<address type='pci'/>") + &vdisk("vda", ""),
        ),
        ("aarch64", "virt", nic("virtio", "") + &nic("e1000", "")),
        ("ppc64", "pseries", nic("virtio", "") + &vdisk("vda", "")),
    ];
    for (arch, m, devs) in inputs {
        let caps = latest(arch);
        let first = ok(&domain(arch, m, &devs), caps);
        let second = ok(&first.domain_xml, caps);
        assert_eq!(
            first.devices, second.devices,
            "{arch} {m}\n{}",
            first.domain_xml
        );
        assert_eq!(first.argv, second.argv, "{arch} {m}");
        assert!(
            second.controllers_added.is_empty(),
            "{arch} {m}: {:?}",
            second.controllers_added
        );
        assert_eq!(first.domain_xml, second.domain_xml, "{arch} {m}");
        assert!(
            first
                .domain_xml
                .contains(&format!("machine='{}'", first.machine))
        );
    }
}

#[test]
fn test_unmodelled_elements_are_kept_and_reported() {
    let xml = bare(
        X86,
        "pc",
        "    <frobnicator><address type='pci' slot='0x07'/></frobnicator>\n",
    );
    let p = ok(&xml, latest(X86));
    assert!(p.domain_xml.contains("<frobnicator>"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("<frobnicator>") && w.contains("reserved")),
        "{:?}",
        p.warnings
    );
    // Its slot is not handed out to another device.
    let xml = bare(
        X86,
        "pc",
        &("    <frobnicator><address type='pci' slot='0x02'/></frobnicator>\n".to_string()
            + &nic("e1000", "")),
    );
    let p = ok(&xml, latest(X86));
    assert_eq!(addr(&p, "net0"), "pci 00:03.0 bus=pci.0");
}

/// Measured on 11.1: behind a pxb, QEMU's internal pci-bridge sits at slot 0 of the
/// expander's root bus (busNr) and the devices on the bus after it.
#[test]
fn test_pxb_internal_bridge_in_the_guest_view() {
    let devs = "    <controller type='pci' index='1' model='pci-expander-bus'><target busNr='254'/></controller>\n"
        .to_string()
        + &nic("e1000", &pci(1, 0, 0));
    let p = ok(&bare(X86, "pc", &devs), latest(X86));
    assert!(
        guest(&p).contains(&"0000:fe:00.0 0604: 1b36:0001".to_string()),
        "{:?}",
        guest(&p)
    );
    assert!(
        guest(&p).contains(&"0000:ff:00.0 0200: 8086:100e".to_string()),
        "{:?}",
        guest(&p)
    );
}

/// The `-device` argument's `bootindex`, if any.
fn bootindex(p: &qconform_plan::Plan, id: &str) -> Option<String> {
    device_arg(p, id)
        .split(',')
        .find_map(|kv| kv.strip_prefix("bootindex="))
        .map(str::to_string)
}

fn with_os_boot(xml: &str, devs: &[&str]) -> String {
    let boots: String = devs
        .iter()
        .map(|d| format!("    <boot dev='{d}'/>\n"))
        .collect();
    xml.replace("  </os>", &format!("{boots}  </os>"))
}

fn disk_of(device: &str, dev: &str, bus: &str, extra: &str) -> String {
    format!(
        "    <disk type='file' device='{device}'>\n      <source file='/var/lib/libvirt/images/{dev}.img'/>\n      <target dev='{dev}' bus='{bus}'/>\n      {extra}\n    </disk>\n"
    )
}

/// libvirt's boot order: a domain with neither `<os><boot>` nor a per-device
/// `<boot order>` is read as `<os><boot dev='hd'/>` (libvirt src/conf/domain_conf.c,
/// where the boot devices are parsed), and that position goes to the first disk in
/// libvirt's disk order (measured with libvirt 9.0 `virsh domxml-to-native` on a q35 and a
/// pc domain with virtio disks and no `<boot>`: `bootindex=1` on virtio-disk0 only).
/// `<os><boot>` entries and per-device `<boot order>` are honoured.
#[test]
fn test_default_boot_index_follows_libvirt() {
    let caps = latest(X86);
    // Default: the first disk in libvirt's order (vda sorts before vdb), not the first
    // in the document; NICs get none.
    let devs = vdisk("vdb", "") + &vdisk("vda", "") + &nic("virtio", "");
    let p = ok(&domain(X86, "q35", &devs), caps);
    assert_eq!(bootindex(&p, "virtio-disk0").as_deref(), Some("1"));
    assert_eq!(bootindex(&p, "virtio-disk1"), None);
    assert_eq!(bootindex(&p, "net0"), None);

    // <os><boot> list: positions go to the first cdrom, disk and NIC.
    let devs = disk_of("disk", "sda", "sata", "")
        + &disk_of("cdrom", "sdb", "sata", "")
        + &disk_of("cdrom", "sdc", "sata", "")
        + &nic("virtio", "");
    let xml = with_os_boot(&domain(X86, "q35", &devs), &["cdrom", "network", "hd"]);
    let p = ok(&xml, caps);
    assert_eq!(bootindex(&p, "sata0-0-1").as_deref(), Some("1"));
    assert_eq!(bootindex(&p, "sata0-0-2"), None);
    assert_eq!(bootindex(&p, "net0").as_deref(), Some("2"));
    assert_eq!(bootindex(&p, "sata0-0-0").as_deref(), Some("3"));

    // Per-device <boot order> replaces the default entirely.
    let devs = vdisk("vda", "") + &nic("virtio", "<boot order='1'/>");
    let p = ok(&domain(X86, "q35", &devs), caps);
    assert_eq!(bootindex(&p, "net0").as_deref(), Some("1"));
    assert_eq!(bootindex(&p, "virtio-disk0"), None);

    // Both at once is libvirt's error.
    let xml = with_os_boot(&domain(X86, "q35", &devs), &["hd"]);
    let e = err(&xml, caps);
    assert!(
        e.to_string()
            .contains("per-device boot elements cannot be used together with os/boot elements"),
        "{e}"
    );
}
