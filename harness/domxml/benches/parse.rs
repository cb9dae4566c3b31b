//! Parse time against document size: a domain written on one line with 100k, 200k and 400k
//! sibling device elements. Time per element should stay flat as the count grows (the
//! parse is linear); a position lookup that scans the line from its start for every
//! element would make it grow with the count. Run with `cargo bench -p qconform-domxml`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// One line: `<domain><os>…</os><devices>` then `n` devices (modelled and unmodelled
/// kinds alternating), no newline anywhere.
fn one_line_domain(n: usize) -> String {
    let mut s = String::with_capacity(40 * n + 200);
    s.push_str("<domain type='qemu'><name>wide</name><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>");
    for i in 0..n {
        match i % 4 {
            0 => s.push_str("<watchdog model='i6300esb'/>"),
            1 => s.push_str("<input type='tablet' bus='usb'/>"),
            2 => s.push_str("<memballoon model='none'/>"),
            _ => s.push_str("<someday model='x'/>"),
        }
    }
    s.push_str("</devices></domain>");
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("one-line");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in [100_000usize, 200_000, 400_000] {
        let xml = one_line_domain(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &xml, |b, xml| {
            b.iter(|| black_box(qconform_domxml::parse(black_box(xml)).unwrap()));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
