//! Parsing (numbers, addresses, positions, libvirt's parse-time checks) and writing back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use qconform_domxml::*;

fn dom(devices: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <devices>\n{devices}  </devices>\n</domain>\n"
    )
}

#[test]
fn test_numbers_follow_strtoul_base_0() {
    assert_eq!(parse_uint("0x1f"), Some(31));
    assert_eq!(parse_uint("010"), Some(8));
    assert_eq!(parse_uint("10"), Some(10));
    assert_eq!(parse_uint("0"), Some(0));
    for bad in ["", "0x", "-1", " 1", "1a", "09"] {
        assert_eq!(parse_uint(bad), None, "{bad:?}");
    }
}

#[test]
fn test_addresses_of_every_type() {
    let d = parse(&dom(
        "    <interface type='user'><address type='pci' domain='0' bus='0x01' slot='2' function='0x3' multifunction='on'><zpci uid='0x5' fid='7'/></address></interface>\n\
         <disk type='file' device='disk'><target dev='vda' bus='virtio'/><address type='ccw' cssid='0xfe' ssid='0x1' devno='0x0a0b'/></disk>\n\
         <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='6' slot='0x12' function='1'/></source><address type='unassigned'/></hostdev>\n\
         <disk type='file' device='disk'><target dev='sda' bus='scsi'/><address type='drive' controller='1' bus='0' target='2' unit='3'/></disk>\n\
         <input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/></input>\n",
    ))
    .unwrap();
    let a: Vec<&Address> = d.devices.iter().map(|x| &x.address).collect();
    assert_eq!(
        *a[0],
        Address::Pci(PciAddress {
            domain: 0,
            bus: 1,
            slot: 2,
            function: 3,
            multifunction: Some(true),
            zpci: Some(Zpci {
                uid: Some(5),
                fid: Some(7)
            }),
        })
    );
    assert_eq!(
        *a[1],
        Address::Ccw(CcwAddress {
            cssid: 0xfe,
            ssid: 1,
            devno: 0x0a0b
        })
    );
    assert_eq!(a[1].type_name(), "ccw");
    assert_eq!(*a[2], Address::Unassigned);
    assert_eq!(
        *a[3],
        Address::Drive(DriveAddress {
            controller: 1,
            bus: 0,
            target: 2,
            unit: 3
        })
    );
    assert_eq!(*a[4], Address::Other("usb".into()));
    let DeviceKind::Hostdev(h) = &d.devices[2].kind else {
        panic!()
    };
    assert_eq!(h.host_pci.unwrap().to_string(), "0000:06:12.1");
}

#[test]
fn test_errors_carry_element_attribute_value_and_position() {
    let e = parse(&dom(
        "    <interface type='user'>\n      <address type='pci' slot='0x20'/>\n    </interface>\n",
    ))
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.problem.element.as_deref(), Some("address"));
    assert_eq!(e.problem.attribute.as_deref(), Some("slot"));
    assert_eq!(e.problem.value.as_deref(), Some("0x20"));
    assert_eq!((e.problem.line, e.problem.column), (Some(7), Some(27)));
    assert_eq!(
        e.to_string(),
        "Invalid PCI address slot='0x20', must be <= 0x1F (element <address>, attribute slot='0x20', line 7, column 27)"
    );
    let e = parse("<domain><devices><disk></devices></domain>").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.problem.line, Some(1));
    let e = parse(&dom(
        "    <memballoon model='virtio'><address/></memballoon>\n",
    ))
    .unwrap_err();
    assert!(e.problem.message.contains("No type specified"), "{e}");
}

#[test]
fn test_unmodelled_elements_are_kept_with_their_address() {
    let d = parse(&dom(
        "    <frob><address type='pci' slot='3'/></frob>\n    <graphics type='vnc'/>\n",
    ))
    .unwrap();
    assert_eq!(d.unmodelled.len(), 1);
    assert_eq!(d.unmodelled[0].element, "frob");
    assert!(matches!(d.unmodelled[0].address, Address::Pci(p) if p.slot == 3));
    assert!(d.has_graphics);
}

#[test]
fn test_host_facts_from_metadata() {
    let xml = dom("").replace(
        "  <os>",
        "  <metadata>\n    <qc:host xmlns:qc='urn:qconform:host'><qc:pci address='0000:00:04.0' express='no'/></qc:host>\n    <other:x xmlns:other='urn:x'/>\n  </metadata>\n  <os>",
    );
    let d = parse(&xml).unwrap();
    assert_eq!(d.host_pci.len(), 1);
    assert_eq!(d.host_pci[0].address.to_string(), "0000:00:04.0");
    assert!(!d.host_pci[0].express);
    let bad = xml.replace("0000:00:04.0", "04.0");
    assert!(
        parse(&bad)
            .unwrap_err()
            .problem
            .message
            .contains("invalid host PCI address")
    );
}

#[test]
fn test_write_back_patches_only_what_changed() {
    let src = dom(
        "    <!-- kept -->\n    <memballoon model='virtio'/>\n    <interface type='user'>\n      <model type='e1000'/>\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n    </interface>\n",
    );
    let d = parse(&src).unwrap();
    let mut balloon = d.devices[0].clone();
    balloon.address = Address::Pci(PciAddress {
        slot: 6,
        ..PciAddress::default()
    });
    let nic = d.devices[1].clone();
    let mut ctrl = Device::new(DeviceKind::Controller(Controller {
        ctype: "pci".into(),
        index: Some(1),
        model: Some("pcie-root-port".into()),
        model_name: Some("pcie-root-port".into()),
        target: ControllerTarget {
            chassis: Some(1),
            port: Some(8),
            ..ControllerTarget::default()
        },
        ..Controller::default()
    }));
    ctrl.address = Address::Pci(PciAddress {
        slot: 1,
        multifunction: Some(true),
        ..PciAddress::default()
    });
    let out = write_back(
        &src,
        &d,
        Some("pc-q35-11.1"),
        Some("x86_64"),
        &[
            Written {
                original: Some(0),
                device: &balloon,
            },
            Written {
                original: Some(1),
                device: &nic,
            },
            Written {
                original: None,
                device: &ctrl,
            },
        ],
    );
    let want = "<domain type='kvm'>\n  <os>\n    <type arch='x86_64' machine='pc-q35-11.1'>hvm</type>\n  </os>\n  <devices>\n    <!-- kept -->\n    <memballoon model='virtio'>\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>\n    </memballoon>\n    <interface type='user'>\n      <model type='e1000'/>\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n    </interface>\n    <controller type='pci' index='1' model='pcie-root-port'>\n      <model name='pcie-root-port'/>\n      <target chassis='1' port='0x8'/>\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0' multifunction='on'/>\n    </controller>\n  </devices>\n</domain>\n";
    assert_eq!(out, want);
    // The result parses again, with the new addresses.
    let again = parse(&out).unwrap();
    assert_eq!(again.devices.len(), 3);
    assert_eq!(again.machine.as_deref(), Some("pc-q35-11.1"));
}

#[test]
fn test_write_back_adds_devices_to_an_empty_devices_element() {
    let src = "<domain type='qemu'><os><type arch='x86_64'>hvm</type></os><devices/></domain>";
    let d = parse(src).unwrap();
    let b = Device::new(DeviceKind::Memballoon(ModelOnly {
        model: Some("virtio".into()),
    }));
    let out = write_back(
        src,
        &d,
        Some("pc-i440fx-11.1"),
        None,
        &[Written {
            original: None,
            device: &b,
        }],
    );
    assert!(out.contains("machine='pc-i440fx-11.1'"), "{out}");
    assert!(
        out.contains("<devices>\n  <memballoon model='virtio'/>\n</devices>"),
        "{out}"
    );
    parse(&out).unwrap();
}

#[test]
fn test_escaping_in_written_values() {
    assert_eq!(esc("a'b<c>&\""), "a&apos;b&lt;c&gt;&amp;&quot;");
    assert_eq!(esc("plain"), "plain");
}

/// Columns count characters, not bytes, and stay right when the whole document is one line
/// (positions are counted on from the previous one there, not from the line start).
#[test]
fn test_positions_on_one_long_line_count_characters() {
    let mut xml = String::from(
        "<domain type='qemu'><name>é–ü</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>",
    );
    let mut starts = Vec::new();
    for i in 0..50 {
        starts.push(xml.chars().count() + 1);
        if i % 2 == 0 {
            xml.push_str("<watchdog model='i6300esb'/>");
        } else {
            xml.push_str("<someday model='ü'/>");
        }
    }
    xml.push_str("</devices></domain>\n<!-- ü -->\n");
    let dom = parse(&xml).expect("parses");
    let modelled: Vec<u32> = dom.devices.iter().map(|d| d.pos.column).collect();
    let unmodelled: Vec<u32> = dom.unmodelled.iter().map(|u| u.pos.column).collect();
    let want = |parity: usize| -> Vec<u32> {
        starts
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, &c)| u32::try_from(c).expect("small"))
            .collect()
    };
    assert_eq!(modelled, want(0));
    assert_eq!(unmodelled, want(1));
    assert!(dom.devices.iter().all(|d| d.pos.line == 1));

    // An error after many positions were computed still points at the right column.
    let bad = xml.replacen(
        "</devices>",
        "<watchdog model='x'><address type='pci' slot='0x20'/></watchdog></devices>",
        1,
    );
    let e = parse(&bad).expect_err("slot out of range");
    let col = bad
        .find("slot='0x20'")
        .map(|b| bad.get(..b).expect("boundary").chars().count() + 1)
        .expect("present");
    assert_eq!(
        (e.problem.line, e.problem.column),
        (Some(1), Some(u32::try_from(col).expect("small")))
    );
}
