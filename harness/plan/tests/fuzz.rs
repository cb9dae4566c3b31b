//! Property tests: parser, allocator and planner never panic, whatever the input, and
//! every accepted plan is consistent (no address used twice, every bus exists, unique
//! zPCI ids and CCW devnos, the xml2xml view plans to the same addresses).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use qconform_caps::Snapshot;

fn corpus() -> &'static Vec<String> {
    static C: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cases");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path().join("domain.xml")).ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        if v.is_empty() {
            v.push(domain("x86_64", "q35", &nic("virtio", "")));
        }
        v
    })
}

const ARCHES: [&str; 5] = ["x86_64", "s390x", "aarch64", "ppc64", "riscv64"];

/// Number of recorded snapshots the fuzz inputs are planned against.
const SNAPSHOTS: usize = VERSIONS.len() * ARCHES.len();

/// Snapshot `i` of the [`SNAPSHOTS`]: version `i % 4` of architecture `i / 4`.
fn caps_for(i: usize) -> &'static Snapshot {
    let n = VERSIONS.len();
    snap(VERSIONS[i % n], ARCHES[(i / n) % ARCHES.len()])
}

/// What is wrong with an accepted plan: an address or id used twice, in the plan or its
/// argv, or malformed guest lines.
fn plan_violation(p: &qconform_plan::Plan) -> Option<String> {
    if let Some(r) = argv_reuse(&p.argv) {
        return Some(format!("argv: {r}\n{}", p.argv.join(" ")));
    }
    let mut seen = BTreeSet::new();
    let mut uids = BTreeSet::new();
    let mut fids = BTreeSet::new();
    let mut devnos = BTreeSet::new();
    for (alias, a) in &p.devices {
        match a.kind.as_str() {
            "pci" => {
                let key = (a.bus, a.slot, a.function);
                if !seen.insert(key) {
                    return Some(format!(
                        "{alias}: {key:?} used twice\n{}",
                        p.addresses_text()
                    ));
                }
                if a.bus_alias.is_none() {
                    return Some(format!("{alias}: no bus alias"));
                }
                if let Some(u) = a.zpci_uid
                    && (u < 1 || !uids.insert(u) || !fids.insert(a.zpci_fid))
                {
                    return Some(format!("{alias}: zPCI uid {u} or fid reused"));
                }
            }
            "ccw" if !devnos.insert(a.ccw_devno.clone()) => {
                return Some(format!("{alias}: devno {:?} used twice", a.ccw_devno));
            }
            _ => {}
        }
    }
    guest(p)
        .into_iter()
        .find(|l| l.len() != "0000:00:00.0 0000: 0000:0000".len())
        .map(|l| format!("malformed guest line {l:?}"))
}

/// Checks the invariants of an accepted plan.
fn check(xml: &str, caps: &Snapshot) {
    let Ok(p) = qconform_plan::plan(xml, caps) else {
        return;
    };
    if let Some(v) = plan_violation(&p) {
        panic!("{v}");
    }
    let again = qconform_plan::plan(&p.domain_xml, caps)
        .unwrap_or_else(|e| panic!("xml2xml view refused: {e}\n{}", p.domain_xml));
    assert_eq!(
        p.devices, again.devices,
        "xml2xml view moved devices\n{}",
        p.domain_xml
    );
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Number(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Edit::Delete(a, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "<", ">", "/>", "'", "&", "<address type='pci'/>", "<zpci uid='0'/>",
                "<address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0001'/>",
                "<address type='unassigned'/>", "<controller type='pci' model='pcie-root-port'/>",
                "<interface type='user'><model type='e1000'/></interface>",
                "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='6' slot='0x12' function='1'/></source></hostdev>",
                " slot='0x1f'", " bus='0xff'", " function='7'", " multifunction='on'", " index='0'",
                "\u{00e9}", "\u{1F600}",
            ])
            .prop_map(str::to_string)
        )
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), any::<u32>()).prop_map(|(a, n)| Edit::Number(a, n)),
    ]
}

fn apply(mut s: String, edits: &[Edit]) -> String {
    for e in edits {
        let len = s.len().max(1);
        let at = |a: usize| {
            let mut p = a % len;
            while p > 0 && !s.is_char_boundary(p) {
                p -= 1;
            }
            p.min(s.len())
        };
        match e {
            Edit::Delete(a, n) => {
                let p = at(*a);
                let mut q = (p + n).min(s.len());
                while !s.is_char_boundary(q) {
                    q += 1;
                }
                s.replace_range(p..q, "");
            }
            Edit::Insert(a, t) => {
                let p = at(*a);
                s.insert_str(p, t);
            }
            Edit::Number(a, n) => {
                // Replace the first digit run after the position by another number.
                let p = at(*a);
                if let Some(off) = s[p..].find(|c: char| c.is_ascii_digit()) {
                    let start = p + off;
                    let end = s[start..]
                        .find(|c: char| !c.is_ascii_hexdigit() && c != 'x')
                        .map_or(s.len(), |e| start + e);
                    s.replace_range(start..end, &n.to_string());
                }
            }
        }
    }
    s
}

/// A random device element with a random (often invalid) address.
fn device() -> impl Strategy<Value = String> {
    // Mostly no address (where the allocator works), sometimes explicit and sometimes
    // out of range.
    let addr = prop_oneof![
        24 => Just(String::new()),
        3 => Just("<address type='pci'/>".to_string()),
        3 => (0u32..3, 0u32..33, 0u32..9, prop::option::of(any::<bool>())).prop_map(|(b, s, f, m)| {
            let m = match m {
                Some(true) => " multifunction='on'",
                Some(false) => " multifunction='off'",
                None => "",
            };
            format!("<address type='pci' domain='0' bus='{b}' slot='{s}' function='{f}'{m}/>")
        }),
        2 => (prop::option::of(0u32..70000), prop::option::of(0u32..4)).prop_map(|(u, f)| {
            let u = u.map(|u| format!(" uid='{u}'")).unwrap_or_default();
            let f = f.map(|f| format!(" fid='{f}'")).unwrap_or_default();
            format!("<address type='pci'><zpci{u}{f}/></address>")
        }),
        1 => (0xfdu32..0x100, 0u32..5, 0u32..4).prop_map(|(c, s, d)| format!(
            "<address type='ccw' cssid='{c}' ssid='{s}' devno='{d}'/>"
        )),
        1 => Just("<address type='unassigned'/>".to_string()),
    ];
    let body = prop_oneof![
        prop::sample::select(vec!["virtio", "e1000", "e1000e", "rtl8139", "virtio-transitional"])
            .prop_map(|m| format!("<interface type='user'><model type='{m}'/>{{A}}</interface>")),
        (0u8..26).prop_map(|i| format!(
            "<disk type='file' device='disk'><target dev='vd{}' bus='virtio'/>{{A}}</disk>",
            (b'a' + i) as char
        )),
        (0u32..4, prop::sample::select(vec![
            "pcie-root-port", "pci-bridge", "pcie-switch-upstream-port",
            "pcie-switch-downstream-port", "pcie-to-pci-bridge", "dmi-to-pci-bridge",
            "pci-expander-bus", "pcie-expander-bus", "pci-root", "pcie-root",
        ]))
        .prop_map(|(i, m)| format!("<controller type='pci' index='{i}' model='{m}'>{{A}}</controller>")),
        (0u32..3).prop_map(|f| format!(
            "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='6' slot='0x12' function='{f}'/></source>{{A}}</hostdev>"
        )),
        Just("<hostdev mode='subsystem' type='mdev' model='vfio-ccw'><source><address uuid='90c6c135-ad44-41d0-b1b7-bae47de48627'/></source>{A}</hostdev>".to_string()),
        prop::sample::select(vec!["qemu-xhci", "piix3-uhci", "ich9-ehci1", "none"])
            .prop_map(|m| format!("<controller type='usb' model='{m}'>{{A}}</controller>")),
        Just("<controller type='scsi' model='virtio-scsi'>{A}</controller>".to_string()),
        Just("<controller type='virtio-serial'>{A}</controller>".to_string()),
        prop::sample::select(vec!["vga", "virtio", "qxl", "bochs", "none"])
            .prop_map(|m| format!("<video><model type='{m}'/>{{A}}</video>")),
        Just("<memballoon model='virtio'>{A}</memballoon>".to_string()),
        Just("<rng model='virtio'><backend model='random'>/dev/urandom</backend>{A}</rng>".to_string()),
        Just("<watchdog model='i6300esb'>{A}</watchdog>".to_string()),
        Just("<sound model='ich9'>{A}</sound>".to_string()),
        Just("<input type='tablet' bus='virtio'>{A}</input>".to_string()),
        Just("<disk type='file' device='floppy'><target dev='fda'/>{A}</disk>".to_string()),
        Just("<disk type='file' device='disk'><target dev='sda' bus='sata'/></disk>".to_string()),
    ];
    (body, addr).prop_map(|(b, a)| b.replace("{A}", &a))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}", i in 0usize..SNAPSHOTS) {
        let _ = qconform_plan::plan(&s, caps_for(i));
    }

    #[test]
    fn mutated_corpus_never_panics(c in any::<usize>(), i in 0usize..SNAPSHOTS, edits in prop::collection::vec(edit(), 1..6)) {
        let cases = corpus();
        let xml = apply(cases[c % cases.len()].clone(), &edits);
        if let Ok(p) = qconform_plan::plan(&xml, caps_for(i)) {
            prop_assert!(plan_violation(&p).is_none(), "{}\n{xml}", plan_violation(&p).unwrap_or_default());
        }
    }

    #[test]
    fn generated_domains_are_consistent(
        arch_machine in prop::sample::select(vec![
            ("x86_64", "pc"), ("x86_64", "q35"), ("s390x", "s390-ccw-virtio"),
            ("aarch64", "virt"), ("ppc64", "pseries"), ("riscv64", "virt"),
        ]),
        v in 0usize..VERSIONS.len(),
        devices in prop::collection::vec(device(), 0..16),
    ) {
        let (arch, machine) = arch_machine;
        let xml = domain(arch, machine, &devices.join("\n"));
        check(&xml, snap(VERSIONS[v], arch));
    }
}

/// One fuzz input: a domain text and the index of the snapshot to plan it against.
fn fuzz_input() -> impl Strategy<Value = (String, usize)> {
    let generated = (
        prop::sample::select(vec![
            ("x86_64", "pc"),
            ("x86_64", "q35"),
            ("s390x", "s390-ccw-virtio"),
            ("aarch64", "virt"),
            ("ppc64", "pseries"),
            ("riscv64", "virt"),
        ]),
        prop::collection::vec(device(), 0..24),
        prop::collection::vec(edit(), 0..3),
    )
        .prop_map(|((arch, machine), devices, edits)| {
            apply(domain(arch, machine, &devices.join("\n")), &edits)
        });
    let mutated = (any::<usize>(), prop::collection::vec(edit(), 1..5)).prop_map(|(c, edits)| {
        let cases = corpus();
        apply(cases[c % cases.len()].clone(), &edits)
    });
    let text = prop_oneof![
        5 => mutated,
        4 => generated,
        1 => ".{0,400}".prop_map(|s: String| s),
    ];
    // Mostly a snapshot of the domain's own architecture (so that plans get as far as the
    // allocator and the argv), sometimes any of them.
    (text, 0usize..SNAPSHOTS, prop::bool::weighted(0.8)).prop_map(|(xml, any, own)| {
        let arch = ARCHES
            .iter()
            .position(|a| xml.contains(&format!("arch='{a}'")));
        let i = match arch {
            Some(a) if own => a * VERSIONS.len() + any % VERSIONS.len(),
            _ => any,
        };
        (xml, i)
    })
}

#[derive(Debug, Default)]
struct Counts {
    inputs: u64,
    accepted: u64,
    rejected: u64,
    panics: u64,
    timeouts: u64,
    reuses: u64,
    other: u64,
}

/// Fuzzes parser, allocator and argv for `QCONFORM_FUZZ_SECS` seconds (default 60):
/// `QCONFORM_FUZZ_SECS=600 cargo test -p qconform-plan --release --test fuzz -- --ignored
/// --nocapture`. Inputs are mutated corpus domains (`cases/*/domain.xml`), generated
/// domains and arbitrary text, each planned against one of the 20 recorded snapshots.
/// Fails on a panic, on an input that takes longer than `QCONFORM_FUZZ_INPUT_SECS`
/// (default 10) or on an accepted plan whose argv or addresses use a QEMU id, a PCI
/// bus/slot/function or a CCW devno twice; the offending inputs are printed.
#[test]
#[ignore = "runs for QCONFORM_FUZZ_SECS seconds; run with --ignored"]
fn fuzz_for_a_while() {
    let secs = |var: &str, default: u64| {
        std::env::var(var).ok().map_or(default, |v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{var}={v}: not a number"))
        })
    };
    let budget = Duration::from_secs(secs("QCONFORM_FUZZ_SECS", 60));
    let cap = Duration::from_secs(secs("QCONFORM_FUZZ_INPUT_SECS", 10));
    // Load every snapshot before the clock starts.
    for i in 0..SNAPSHOTS {
        caps_for(i);
    }
    corpus();

    // The planner runs on a worker thread so that an input that never ends is seen.
    let (to_worker, inputs) = mpsc::channel::<(String, usize)>();
    let (to_main, outcomes) = mpsc::channel::<Result<Result<Option<String>, ()>, String>>();
    std::thread::spawn(move || {
        for (xml, i) in inputs {
            let caps = caps_for(i);
            let r = std::panic::catch_unwind(|| match qconform_plan::plan(&xml, caps) {
                Ok(p) => Ok(plan_violation(&p)),
                Err(_) => Err(()),
            })
            .map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            });
            if to_main.send(r).is_err() {
                break;
            }
        }
    });

    let strategy = fuzz_input();
    let mut runner = TestRunner::default();
    let mut n = Counts::default();
    let mut bad: Vec<String> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let (xml, i) = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        n.inputs += 1;
        to_worker.send((xml.clone(), i)).expect("worker alive");
        let snapshot = format!(
            "{:?} {}",
            caps_for(i).probe.qemu_version,
            caps_for(i).probe.arch
        );
        match outcomes.recv_timeout(cap) {
            Ok(Ok(Ok(None))) => n.accepted += 1,
            Ok(Ok(Err(()))) => n.rejected += 1,
            Ok(Ok(Ok(Some(v)))) => {
                n.accepted += 1;
                let what = if v.contains("used twice") || v.contains("reused") {
                    n.reuses += 1;
                    "reuse"
                } else {
                    n.other += 1;
                    "invariant"
                };
                keep(
                    &mut bad,
                    format!("{what} ({snapshot} #{i}): {v}\ninput:\n{xml}"),
                );
            }
            Ok(Err(msg)) => {
                n.panics += 1;
                keep(
                    &mut bad,
                    format!("panic ({snapshot} #{i}): {msg}\ninput:\n{xml}"),
                );
            }
            Err(_) => {
                n.timeouts += 1;
                bad.push(format!(
                    "timeout ({snapshot} #{i}): over {}s\ninput:\n{xml}",
                    cap.as_secs()
                ));
                // The worker is stuck; stop here.
                break;
            }
        }
    }
    eprintln!(
        "fuzz: {} inputs in {:.0}s: {} accepted, {} rejected, {} panics, {} timeouts, {} accepted plans reusing an id or address, {} other invariant violations",
        n.inputs,
        start.elapsed().as_secs_f64(),
        n.accepted,
        n.rejected,
        n.panics,
        n.timeouts,
        n.reuses,
        n.other
    );
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// Keeps the first few findings (all are counted).
fn keep(bad: &mut Vec<String>, finding: String) {
    if bad.len() < 10 {
        bad.push(finding);
    }
}

/// Found by the fuzz target: a virtio disk whose target name has no index (here empty) got
/// `virtio-disk0`, the ids of `vda`. libvirt refuses such a name when no address is given
/// (virDomainDiskDefAssignAddress in src/conf/domain_conf.c).
#[test]
fn disk_target_without_index_is_refused_not_numbered_zero() {
    let disks = "<disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>\n\
                 <disk type='file' device='disk'><target dev='' bus='virtio'/></disk>";
    let xml = domain("x86_64", "q35", disks);
    match qconform_plan::plan(&xml, latest("x86_64")) {
        Ok(p) => panic!(
            "accepted: {}",
            argv_reuse(&p.argv).unwrap_or_else(|| p.argv.join(" "))
        ),
        Err(e) => assert!(e.to_string().contains("Unknown disk name ''"), "{e}"),
    }
}

#[test]
fn argv_reuse_sees_ids_and_addresses() {
    let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        argv_reuse(&argv(
            "-device a,id=x,bus=pci.0,addr=0x1 -device b,id=y,bus=pci.0,addr=0x1.0x1"
        )),
        None
    );
    assert!(argv_reuse(&argv("-device a,id=x -device b,id=x")).is_some());
    assert!(
        argv_reuse(&argv(
            "-device a,id=x,bus=pci.0,addr=0x2 -device b,id=y,bus=pci.0,addr=0x2.0x0"
        ))
        .is_some()
    );
    assert!(argv_reuse(&argv("-blockdev node-name=n -blockdev node-name=n")).is_some());
    // `,,` is an escaped comma inside a value, not a separator.
    assert_eq!(
        argv_reuse(&argv("-device a,serial=1,,id=x,id=y -device b,id=x")),
        None
    );
}
