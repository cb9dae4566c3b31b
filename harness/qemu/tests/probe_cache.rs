//! The probe identity cache on disk: rows survive writers that opened the file at the same
//! time, and rows whose snapshot is gone are dropped. No QEMU needed: the "binaries" are
//! plain files (the cache only reads their path, size and modification time).

use std::path::Path;

use qconform_qemu::probe::{ProbeCache, ProbeTarget};

fn target(dir: &Path, name: &str) -> ProbeTarget {
    let bin = dir.join(name);
    std::fs::write(&bin, name).expect("write binary");
    ProbeTarget {
        launcher: bin.clone(),
        binary: bin,
    }
}

fn snapshot(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, "{}").expect("write snapshot");
    p
}

/// A cache file and two targets with a snapshot each, in a fresh directory.
struct Fixture {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    a: ProbeTarget,
    b: ProbeTarget,
    sa: std::path::PathBuf,
    sb: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    Fixture {
        file: p.join("probe-cache.tsv"),
        a: target(p, "a"),
        b: target(p, "b"),
        sa: snapshot(p, "a"),
        sb: snapshot(p, "b"),
        _dir: dir,
    }
}

#[test]
fn test_two_writers_opened_together_keep_both_rows() {
    let f = fixture();
    let (file, a, b, sa, sb) = (&f.file, &f.a, &f.b, &f.sa, &f.sb);
    // Both open the (empty) file before either records, as two processes started together.
    let mut first = ProbeCache::open(file);
    let mut second = ProbeCache::open(file);
    first.record(a, "opts", "aaaa", sa).expect("record a");
    second.record(b, "opts", "bbbb", sb).expect("record b");
    let read = ProbeCache::open(file);
    assert_eq!(read.lookup(a, "opts").map(|h| h.0), Some("aaaa".into()));
    assert_eq!(read.lookup(b, "opts").map(|h| h.0), Some("bbbb".into()));
    // Each writer's own view holds both rows too.
    assert!(second.lookup(a, "opts").is_some());
}

#[test]
fn test_rows_of_removed_snapshots_are_dropped_and_a_target_has_one_row() {
    let f = fixture();
    let (file, a, b, sa, sb) = (&f.file, &f.a, &f.b, &f.sa, &f.sb);
    let mut cache = ProbeCache::open(file);
    cache.record(a, "opts", "aaaa", sa).expect("record a");
    std::fs::remove_file(sa).expect("remove snapshot a");
    cache.record(b, "opts", "bbbb", sb).expect("record b");
    cache.record(b, "opts", "cccc", sb).expect("record b again");
    let text = std::fs::read_to_string(file).expect("cache file");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\tcccc\t"), "{text}");
}
