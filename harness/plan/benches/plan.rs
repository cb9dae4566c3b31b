//! Plan throughput: domains × snapshots per second on one core.
//!
//! `typical` plans a corpus of everyday domains (pc and q35 with a few devices, a PCIe
//! switch, s390x with zPCI and CCW, aarch64 virt, pSeries) against the recorded snapshot
//! of their architecture; `q35-200` plans one q35 domain with 200 devices. Run with
//! `cargo bench -p qconform-plan`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qconform_caps::Snapshot;

fn snap(name: &str) -> Snapshot {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../capsdata")
        .join(name);
    Snapshot::from_json(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn domain(arch: &str, machine: &str, devices: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>bench</name>\n  <memory unit='KiB'>524288</memory>\n  <os>\n    <type arch='{arch}' machine='{machine}'>hvm</type>\n  </os>\n  <devices>\n{devices}  </devices>\n</domain>\n"
    )
}

fn disk(dev: &str, addr: &str) -> String {
    format!(
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='/var/lib/libvirt/images/{dev}.img'/>\n      <target dev='{dev}' bus='virtio'/>\n      {addr}\n    </disk>\n"
    )
}

fn nic(model: &str, n: usize, addr: &str) -> String {
    format!(
        "    <interface type='user'>\n      <mac address='52:54:00:00:{:02x}:{:02x}'/>\n      <model type='{model}'/>\n      {addr}\n    </interface>\n",
        n / 256,
        n % 256
    )
}

fn disk_name(i: usize) -> String {
    let mut s = String::from("vd");
    if i >= 26 {
        s.push((b'a' + (i / 26 - 1) as u8) as char);
    }
    s.push((b'a' + (i % 26) as u8) as char);
    s
}

fn typical() -> Vec<(String, &'static str)> {
    let x = "caps_11.1.3_x86_64.json";
    vec![
        (
            domain("x86_64", "pc", &(disk("vda", "") + &nic("e1000", 1, ""))),
            x,
        ),
        (
            domain(
                "x86_64",
                "q35",
                &(disk("vda", "")
                    + &disk("vdb", "")
                    + &nic("virtio", 1, "")
                    + &nic("e1000", 2, "")),
            ),
            x,
        ),
        (
            domain(
                "x86_64",
                "q35",
                "    <controller type='pci' index='1' model='pcie-root-port'/>\n    <controller type='pci' index='2' model='pcie-switch-upstream-port'/>\n    <controller type='pci' index='3' model='pcie-switch-downstream-port'/>\n    <controller type='pci' index='4' model='pcie-switch-downstream-port'/>\n    <interface type='user'><model type='virtio'/></interface>\n    <interface type='user'><model type='virtio'/></interface>\n",
            ),
            x,
        ),
        (
            domain(
                "s390x",
                "s390-ccw-virtio",
                &(disk("vda", "")
                    + &disk(
                        "vdb",
                        "<address type='pci'><zpci uid='3' fid='39'/></address>",
                    )
                    + &nic("virtio", 1, "")
                    + &nic("virtio", 2, "<address type='pci'/>")),
            ),
            "caps_11.1.3_s390x.json",
        ),
        (
            domain(
                "aarch64",
                "virt",
                &(disk("vda", "") + &nic("virtio", 1, "")),
            ),
            "caps_11.1.3_aarch64.json",
        ),
        (
            domain(
                "ppc64",
                "pseries",
                &(disk("vda", "") + &nic("virtio", 1, "")),
            ),
            "caps_11.1.3_ppc64.json",
        ),
    ]
}

fn q35_200() -> String {
    let mut devs = String::new();
    for i in 0..100 {
        devs.push_str(&disk(&disk_name(i), ""));
    }
    for i in 0..70 {
        devs.push_str(&nic("virtio", i, ""));
    }
    for i in 70..100 {
        devs.push_str(&nic("e1000", i, ""));
    }
    domain("x86_64", "q35", &devs)
}

fn bench(c: &mut Criterion) {
    let mut snaps: std::collections::BTreeMap<&str, Snapshot> = Default::default();
    let corpus = typical();
    for (_, s) in &corpus {
        snaps.entry(s).or_insert_with(|| snap(s));
    }
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(corpus.len() as u64));
    g.bench_function("typical", |b| {
        b.iter(|| {
            for (xml, s) in &corpus {
                black_box(qconform_plan::plan(black_box(xml), &snaps[s]).unwrap());
            }
        })
    });
    let big = q35_200();
    let x = &snaps["caps_11.1.3_x86_64.json"];
    let p = qconform_plan::plan(&big, x).unwrap();
    assert!(p.devices.len() > 200, "{}", p.devices.len());
    g.throughput(Throughput::Elements(1));
    g.bench_function("q35-200", |b| {
        b.iter(|| black_box(qconform_plan::plan(black_box(&big), x).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
