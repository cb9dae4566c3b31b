//! libvirt's own placement for six domains (cases a to f2), measured with libvirt 9.0 +
//! QEMU 7.2: `virsh define`, then `virsh dumpxml --inactive` (libvirt 12.8 + QEMU 11.1 gives
//! the same addresses). The address maps must match exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use qconform_alloc::{Attach, allocate, testcaps};
use qconform_domxml::Address;

/// `alias @ BB:SS.F [mf]` lines for every device with a PCI address, plus controller
/// defaults, in device order.
fn map(xml: &str, caps: &qconform_caps::Snapshot) -> Vec<String> {
    let dom = qconform_domxml::parse(xml).expect("parse");
    let a = allocate(&dom, caps).expect("allocate");
    let mut out = Vec::new();
    for d in &a.devices {
        let Address::Pci(p) = &d.device.address else {
            continue;
        };
        if d.attach != Attach::Pci {
            continue;
        }
        let mut line = format!(
            "{} @ {:02x}:{:02x}.{:x}",
            d.alias, p.bus, p.slot, p.function
        );
        if p.multifunction == Some(true) {
            line.push_str(" mf");
        }
        if let Some(c) = d.controller()
            && c.ctype == "pci"
        {
            line.push_str(&format!(" {}", c.model.as_deref().unwrap_or("")));
            if let Some(n) = &c.model_name {
                line.push_str(&format!(" qemu={n}"));
            }
            if let Some(ch) = c.target.chassis {
                line.push_str(&format!(" chassis={ch}"));
            }
            if let Some(port) = c.target.port {
                line.push_str(&format!(" port=0x{port:x}"));
            }
            if let Some(n) = c.target.chassis_nr {
                line.push_str(&format!(" chassisNr={n}"));
            }
        }
        out.push(line);
    }
    out.sort();
    out
}

fn domain(machine: &str, devices: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>t</name>\n  <memory unit='KiB'>262144</memory>\n  <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n  </os>\n  <devices>\n{devices}  </devices>\n</domain>\n"
    )
}

fn disk(dev: &str) -> String {
    format!(
        "    <disk type='file' device='disk'>\n      <source file='/img/{dev}.img'/>\n      <target dev='{dev}' bus='virtio'/>\n    </disk>\n"
    )
}

fn nic(model: &str) -> String {
    format!("    <interface type='user'>\n      <model type='{model}'/>\n    </interface>\n")
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn case_a_q35_mixed() {
    let devs = format!(
        "{}{}{}{}",
        disk("vda"),
        nic("virtio"),
        nic("virtio"),
        nic("e1000")
    );
    let got = map(&domain("q35", &devs), &testcaps::x86_64(7, 2));
    let want = sorted(&[
        "pci.1 @ 00:01.0 mf pcie-root-port qemu=pcie-root-port chassis=1 port=0x8",
        "pci.2 @ 00:01.1 pcie-root-port qemu=pcie-root-port chassis=2 port=0x9",
        "pci.3 @ 00:01.2 pcie-root-port qemu=pcie-root-port chassis=3 port=0xa",
        "pci.4 @ 01:00.0 pcie-to-pci-bridge qemu=pcie-pci-bridge",
        "pci.5 @ 00:01.3 pcie-root-port qemu=pcie-root-port chassis=5 port=0xb",
        "pci.6 @ 00:01.4 pcie-root-port qemu=pcie-root-port chassis=6 port=0xc",
        "pci.7 @ 00:01.5 pcie-root-port qemu=pcie-root-port chassis=7 port=0xd",
        "pci.8 @ 00:01.6 pcie-root-port qemu=pcie-root-port chassis=8 port=0xe",
        "usb @ 05:00.0",
        "ide @ 00:1f.2",
        "net0 @ 02:00.0",
        "net1 @ 03:00.0",
        "net2 @ 04:01.0",
        "virtio-disk0 @ 06:00.0",
        "balloon0 @ 07:00.0",
    ]);
    assert_eq!(got, want);
}

#[test]
fn case_b_pc_disks_e1000() {
    let devs = format!(
        "{}{}{}{}{}",
        disk("vda"),
        disk("vdb"),
        disk("vdc"),
        nic("e1000"),
        nic("e1000")
    );
    let got = map(&domain("pc", &devs), &testcaps::x86_64(7, 2));
    let want = sorted(&[
        "virtio-disk0 @ 00:04.0",
        "virtio-disk1 @ 00:05.0",
        "virtio-disk2 @ 00:06.0",
        "usb @ 00:01.2",
        "net0 @ 00:02.0",
        "net1 @ 00:03.0",
        "balloon0 @ 00:07.0",
    ]);
    assert_eq!(got, want);
}

#[test]
fn case_c_q35_switch() {
    let devs = format!(
        "    <controller type='pci' index='0' model='pcie-root'/>\n    <controller type='pci' index='1' model='pcie-root-port'/>\n    <controller type='pci' index='2' model='pcie-switch-upstream-port'/>\n    <controller type='pci' index='3' model='pcie-switch-downstream-port'/>\n    <controller type='pci' index='4' model='pcie-switch-downstream-port'/>\n{}{}",
        nic("virtio"),
        nic("virtio")
    );
    let got = map(&domain("q35", &devs), &testcaps::x86_64(7, 2));
    let want = sorted(&[
        "pci.1 @ 00:01.0 mf pcie-root-port qemu=pcie-root-port chassis=1 port=0x8",
        "pci.2 @ 01:00.0 pcie-switch-upstream-port qemu=x3130-upstream",
        "pci.3 @ 02:00.0 pcie-switch-downstream-port qemu=xio3130-downstream chassis=3 port=0x0",
        "pci.4 @ 02:01.0 pcie-switch-downstream-port qemu=xio3130-downstream chassis=4 port=0x1",
        "usb @ 05:00.0",
        "ide @ 00:1f.2",
        "pci.5 @ 00:01.1 pcie-root-port qemu=pcie-root-port chassis=5 port=0x9",
        "pci.6 @ 00:01.2 pcie-root-port qemu=pcie-root-port chassis=6 port=0xa",
        "net0 @ 03:00.0",
        "net1 @ 04:00.0",
        "balloon0 @ 06:00.0",
    ]);
    assert_eq!(got, want);
}

#[test]
fn case_d_q35_40_disks() {
    let names: Vec<String> = (0..40u32)
        .map(|i| {
            if i < 26 {
                format!("vd{}", (b'a' + i as u8) as char)
            } else {
                format!("vda{}", (b'a' + (i - 26) as u8) as char)
            }
        })
        .collect();
    let devs: String = names.iter().map(|n| disk(n)).collect();
    let got = map(&domain("q35", &devs), &testcaps::x86_64(7, 2));
    let mut want: Vec<String> = Vec::new();
    for i in 0..40u32 {
        want.push(format!("virtio-disk{i} @ {:02x}:00.0", i + 2));
    }
    want.push("usb @ 01:00.0".into());
    want.push("ide @ 00:1f.2".into());
    want.push("balloon0 @ 2a:00.0".into());
    for idx in 1..=43u32 {
        let n = idx - 1;
        let slot = 1 + n / 8;
        let func = n % 8;
        let mf = if func == 0 { " mf" } else { "" };
        want.push(format!(
            "pci.{idx} @ 00:{slot:02x}.{func:x}{mf} pcie-root-port qemu=pcie-root-port chassis={idx} port=0x{:x}",
            (slot << 3) + func
        ));
    }
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn case_e_pc_bridge_35_e1000() {
    let mut devs = String::from("    <controller type='pci' index='1' model='pci-bridge'/>\n");
    for _ in 0..35 {
        devs.push_str(&nic("e1000"));
    }
    let got = map(&domain("pc", &devs), &testcaps::x86_64(7, 2));
    let mut want: Vec<String> = vec![
        "pci.1 @ 00:02.0 pci-bridge qemu=pci-bridge chassisNr=1".into(),
        "usb @ 00:01.2".into(),
    ];
    for i in 0..29u32 {
        want.push(format!("net{i} @ 00:{:02x}.0", i + 3));
    }
    for i in 29..35u32 {
        want.push(format!("net{i} @ 01:{:02x}.0", i - 28));
    }
    want.push("balloon0 @ 01:07.0".into());
    want.sort();
    assert_eq!(got, want);
}

/// On the recording host, 0000:00:04.0 exists and has a 256-byte config space, so libvirt
/// read it as conventional PCI and put it behind a pcie-to-pci-bridge. A plan learns that
/// from the domain's metadata.
#[test]
fn case_f2_q35_hostdev_vfio() {
    let devs = "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <driver name='vfio'/>\n      <source>\n        <address domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n      </source>\n    </hostdev>\n";
    let xml = domain("q35", devs).replace(
        "  <os>",
        "  <metadata>\n    <qc:host xmlns:qc='urn:qconform:host'>\n      <qc:pci address='0000:00:04.0' express='no'/>\n    </qc:host>\n  </metadata>\n  <os>",
    );
    let got = map(&xml, &testcaps::x86_64(7, 2));
    let want = sorted(&[
        "pci.1 @ 00:01.0 mf pcie-root-port qemu=pcie-root-port chassis=1 port=0x8",
        "pci.2 @ 00:01.1 pcie-root-port qemu=pcie-root-port chassis=2 port=0x9",
        "pci.3 @ 01:00.0 pcie-to-pci-bridge qemu=pcie-pci-bridge",
        "pci.4 @ 00:01.2 pcie-root-port qemu=pcie-root-port chassis=4 port=0xa",
        "pci.5 @ 00:01.3 pcie-root-port qemu=pcie-root-port chassis=5 port=0xb",
        "usb @ 02:00.0",
        "ide @ 00:1f.2",
        "hostdev0 @ 03:01.0",
        "balloon0 @ 04:00.0",
    ]);
    assert_eq!(got, want);
}
