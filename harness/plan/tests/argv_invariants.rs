//! Property tests on the generated command line: whatever the domain, an accepted plan
//! pins every PCI device (`bus=` and `addr=` on each `-device` whose QEMU type is a PCI
//! device, so QEMU never picks a slot the plan gave another device), and no two
//! `-device`, `-drive` or `-netdev` options share an id (QEMU: "Duplicate ID").
//!
//! The domains mix what a hand-written or generated domain gets wrong: address types that
//! do not belong on the device's bus, unknown models, disk target names libvirt cannot
//! number or that number alike, floppies on one unit, repeated boot orders, odd MACs and
//! aliases, virtio-serial addresses naming missing controllers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use proptest::prelude::*;
use qconform_caps::Snapshot;

const ARCHES: [&str; 5] = ["x86_64", "s390x", "aarch64", "ppc64", "riscv64"];

/// Checks both invariants on an accepted plan; returns whether the plan was accepted.
fn check(xml: &str, caps: &Snapshot) -> bool {
    let Ok(p) = qconform_plan::plan(xml, caps) else {
        return false;
    };
    if let Some(v) = unpinned_pci_device(&p.argv, caps).or_else(|| argv_reuse(&p.argv)) {
        panic!("{}: {v}\n{}\n{xml}", caps.id(), p.argv_text());
    }
    true
}

#[test]
fn test_every_corpus_plan_pins_its_pci_devices_and_has_unique_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cases");
    let mut accepted = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let Ok(xml) = std::fs::read_to_string(e.unwrap().path().join("domain.xml")) else {
            continue;
        };
        for v in VERSIONS {
            for a in ARCHES {
                accepted += usize::from(check(&xml, snap(v, a)));
            }
        }
    }
    // The corpus has well over a hundred accepted (case, snapshot) pairs; an empty run
    // would prove nothing.
    assert!(accepted > 200, "only {accepted} accepted plans");
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(String::new()),
        2 => Just("<address type='pci'/>".to_string()),
        1 => Just("<address type='isa' iobase='0x300'/>".to_string()),
        1 => Just("<address type='usb' bus='0' port='1'/>".to_string()),
        1 => Just("<address type='drive' controller='0' bus='0' target='0' unit='0'/>".to_string()),
        1 => (0u32..3).prop_map(|c| format!(
            "<address type='virtio-serial' controller='{c}' bus='0' port='1'/>"
        )),
        1 => Just("<address type='ccid' controller='0' slot='0'/>".to_string()),
        1 => Just("<address type='spapr-vio' reg='0x2000'/>".to_string()),
        1 => Just("<address type='virtio-mmio'/>".to_string()),
        1 => Just("<address type='virtio-s390'/>".to_string()),
        1 => Just("<address type='ccw' cssid='0xfe' ssid='0' devno='0x0002'/>".to_string()),
        1 => Just("<address type='unassigned'/>".to_string()),
    ]
}

fn extras() -> impl Strategy<Value = String> {
    (
        prop::option::of(1u32..4),
        prop::option::of(prop::sample::select(vec![
            "ua-x",
            "ua-x",
            "ua-a.b",
            "ua-a,b",
            "foo",
            "ua-\u{00e9}",
        ])),
    )
        .prop_map(|(b, a)| {
            let mut s = String::new();
            if let Some(b) = b {
                s.push_str(&format!("<boot order='{b}'/>"));
            }
            if let Some(a) = a {
                s.push_str(&format!("<alias name='{a}'/>"));
            }
            s
        })
}

fn device() -> impl Strategy<Value = String> {
    let target = prop::sample::select(vec![
        "vda", "vda", "vdb", "vda1", "vd", "vdA", "xyz", "sda", "sdb", "hda", "fda", "fdb", "fdc",
    ]);
    let body = prop_oneof![
        (
            prop::sample::select(vec!["virtio", "e1000", "e1000e", "rtl8139", "foo", "usb-net"]),
            prop::sample::select(vec![
                "52:54:00:00:00:01",
                "52:54:00:00:00:02",
                "53:54:00:00:00:03",
                "52:54:00:00:00:0g",
                "52-54-00-00-00-05",
            ])
        )
            .prop_map(|(m, mac)| format!(
                "<interface type='user'><mac address='{mac}'/><model type='{m}'/>{{X}}{{A}}</interface>"
            )),
        (target, prop::sample::select(vec!["virtio", "sata", "scsi", "ide", "usb", ""]))
            .prop_map(|(t, b)| {
                let bus = if b.is_empty() { String::new() } else { format!(" bus='{b}'") };
                let dev = if t.starts_with("fd") { "floppy" } else { "disk" };
                format!(
                    "<disk type='file' device='{dev}'><source file='/var/lib/libvirt/images/{t}.img'/><target dev='{t}'{bus}/>{{X}}{{A}}</disk>"
                )
            }),
        prop::sample::select(vec!["pci-bridge", "pcie-root-port", "pci-root"]).prop_map(|m| {
            format!("<controller type='pci' model='{m}'>{{A}}</controller>")
        }),
        prop::sample::select(vec!["virtio", "foo", "virtio-transitional"]).prop_map(|m| format!(
            "<rng model='{m}'><backend model='random'>/dev/urandom</backend>{{A}}</rng>"
        )),
        prop::sample::select(vec!["virtio", "none"])
            .prop_map(|m| format!("<memballoon model='{m}'>{{A}}</memballoon>")),
        Just("<controller type='virtio-serial'>{A}</controller>".to_string()),
        prop::sample::select(vec!["virtio", "serial"]).prop_map(|t| format!(
            "<console type='pty'><target type='{t}'/>{{A}}</console>"
        )),
        Just("<channel type='pty'><target type='virtio' name='org.qemu.guest_agent.0'/>{A}</channel>".to_string()),
        Just("<watchdog model='i6300esb'>{A}</watchdog>".to_string()),
        Just("<video><model type='vga'/>{A}</video>".to_string()),
    ];
    (body, address(), extras()).prop_map(|(b, a, x)| b.replace("{A}", &a).replace("{X}", &x))
}

fn machine() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(vec![
        ("x86_64", "pc"),
        ("x86_64", "q35"),
        ("s390x", "s390-ccw-virtio"),
        ("aarch64", "virt"),
        ("ppc64", "pseries"),
        ("riscv64", "virt"),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_accepted_plans_pin_pci_devices_and_have_unique_ids(
        (arch, m) in machine(),
        v in 0usize..VERSIONS.len(),
        devs in prop::collection::vec(device(), 1..8),
    ) {
        let body: String = devs.iter().map(|d| format!("    {d}\n")).collect();
        check(&domain(arch, m, &body), snap(VERSIONS[v], arch));
    }
}

#[test]
fn test_the_generator_reaches_accepted_and_refused_plans() {
    // A generator whose every domain is refused would make the property above vacuous.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..200 {
        let (arch, m) = machine().new_tree(&mut runner).unwrap().current();
        let devs = prop::collection::vec(device(), 1..4)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let body: String = devs.iter().map(|d| format!("    {d}\n")).collect();
        if check(&domain(arch, m, &body), latest(arch)) {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        ok >= 20 && refused >= 20,
        "accepted {ok}, refused {refused}"
    );
}

#[test]
fn test_a_type_qemu_refused_at_probe_time_is_refused_with_its_text() {
    // A balloon forced onto zPCI: the s390x snapshots record whether QEMU took
    // virtio-balloon-pci on the root bus when launched with it alone.
    let xml = domain(
        "s390x",
        "s390-ccw-virtio",
        "    <memballoon model='virtio'><address type='pci'/></memballoon>\n",
    );
    let (mut refused, mut accepted) = (0, 0);
    for v in VERSIONS {
        let caps = snap(v, "s390x");
        let solo = caps.raw.pci_identity.get("root:virtio-balloon-pci");
        let recorded = solo.filter(|p| p.outcome != qconform_caps::LaunchOutcome::Started);
        match (recorded, qconform_plan::plan(&xml, caps)) {
            (Some(probe), Err(e)) => {
                let text = probe.stderr.rsplit(": ").next().unwrap().trim();
                assert!(e.to_string().contains(text), "{v}: {e} lacks '{text}'");
                refused += 1;
            }
            (None, Ok(p)) => {
                assert!(p.argv.iter().any(|a| a.starts_with("virtio-balloon-pci,")));
                accepted += 1;
            }
            (r, p) => panic!(
                "{v}: recorded refusal {:?}, plan {:?}",
                r.map(|p| &p.stderr),
                p.err()
            ),
        }
    }
    assert!(
        refused >= 1 && accepted >= 1,
        "{refused} refused, {accepted} accepted"
    );
}

#[test]
fn test_multifunction_is_not_passed_on_s390x() {
    let xml = domain(
        "s390x",
        "s390-ccw-virtio",
        "    <interface type='user'><model type='virtio'/><address type='pci' domain='0' bus='0' slot='1' function='0' multifunction='on'/></interface>\n",
    );
    for v in VERSIONS {
        let p = qconform_plan::plan(&xml, snap(v, "s390x")).unwrap();
        assert!(
            !p.argv_text().contains("multifunction"),
            "{}",
            p.argv_text()
        );
    }
    // Elsewhere it is.
    let xml = domain(
        "x86_64",
        "pc",
        "    <interface type='user'><model type='e1000'/><address type='pci' domain='0' bus='0' slot='5' function='0' multifunction='on'/></interface>\n",
    );
    let p = qconform_plan::plan(&xml, latest("x86_64")).unwrap();
    assert!(
        p.argv_text().contains("multifunction=on"),
        "{}",
        p.argv_text()
    );
}
