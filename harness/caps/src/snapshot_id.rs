//! Naming snapshots: the id a person types (`11.1/x86_64`, `11.1.3_x86_64`,
//! `caps_7.2.22_s390x.json`), the file name a snapshot is stored under
//! (`caps_<version>_<arch>.json`), how ids resolve against a list of file names, and the
//! one ordering of QEMU version strings.
//!
//! Pure: the caller lists the directory and hands the names over.

use std::cmp::Ordering;
use std::fmt;

/// A snapshot id: a version (full `11.1.3` or a prefix such as `11.1` or `11`) and an
/// architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotId {
    /// Dotted version or version prefix.
    pub version: String,
    /// Target architecture (`x86_64`, `s390x`, ...).
    pub arch: String,
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.version, self.arch)
    }
}

fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_arch(a: &str) -> bool {
    a.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl SnapshotId {
    /// Parses what a person types: `<version>/<arch>`, `<version>_<arch>` or a stored
    /// file name `caps_<version>_<arch>.json` (`11.1/x86_64`, `11.1.3_x86_64`,
    /// `caps_7.2.22_s390x.json`). The version is dotted digits (a prefix is allowed), the
    /// arch starts with a letter. `None` when the text is none of these.
    pub fn parse(spec: &str) -> Option<SnapshotId> {
        let core = spec.strip_prefix("caps_").unwrap_or(spec);
        let core = core.strip_suffix(".json").unwrap_or(core);
        let (version, arch) = core.split_once(['/', '_'])?;
        (is_version(version) && is_arch(arch)).then(|| SnapshotId {
            version: version.to_owned(),
            arch: arch.to_owned(),
        })
    }

    /// The id of a stored file name, strictly `caps_<version>_<arch>.json`.
    pub fn from_file_name(name: &str) -> Option<SnapshotId> {
        let core = name.strip_prefix("caps_")?.strip_suffix(".json")?;
        let (version, arch) = core.split_once('_')?;
        (is_version(version) && is_arch(arch)).then(|| SnapshotId {
            version: version.to_owned(),
            arch: arch.to_owned(),
        })
    }

    /// File name a snapshot of this id is stored under: `caps_<version>_<arch>.json`.
    pub fn file_name(&self) -> String {
        file_name(&self.version, &self.arch)
    }

    /// Whether a full version is this id's version or starts with it at a dot boundary
    /// (`11.1` matches `11.1.3`, not `11.10.0`).
    pub fn matches_version(&self, full: &str) -> bool {
        full == self.version
            || full
                .strip_prefix(self.version.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Picks, among stored file names, the snapshot this id names: same arch, a version
    /// this id matches, the newest when several do. Names that are not snapshot file names
    /// are ignored.
    pub fn resolve<'a, S: AsRef<str>>(&self, names: &'a [S]) -> Option<&'a str> {
        names
            .iter()
            .map(AsRef::as_ref)
            .filter_map(|n| SnapshotId::from_file_name(n).map(|id| (id, n)))
            .filter(|(id, _)| id.arch == self.arch && self.matches_version(&id.version))
            .max_by(|(a, _), (b, _)| compare_versions(&a.version, &b.version))
            .map(|(_, n)| n)
    }
}

/// File name of the snapshot of `version` (full, `11.1.3`) and `arch`.
pub fn file_name(version: &str, arch: &str) -> String {
    format!("caps_{version}_{arch}.json")
}

/// Whether a file name is a stored snapshot's (`caps_<version>_<arch>.json`).
pub fn is_snapshot_file_name(name: &str) -> bool {
    SnapshotId::from_file_name(name).is_some()
}

/// Numeric sort key of a dotted version string (`11.1.3` → `[11, 1, 3]`), so that
/// `7.2.0 < 10.0.0 < 11.1.3`; a part that is not a number sorts after every number.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split('.')
        .map(|p| p.parse::<u64>().unwrap_or(u64::MAX))
        .collect()
}

/// Compares two dotted version strings by [`version_key`].
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    version_key(a).cmp(&version_key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_every_spelling() {
        let want = SnapshotId {
            version: "11.1.3".into(),
            arch: "x86_64".into(),
        };
        for s in [
            "11.1.3/x86_64",
            "11.1.3_x86_64",
            "caps_11.1.3_x86_64.json",
            "caps_11.1.3_x86_64",
        ] {
            assert_eq!(SnapshotId::parse(s).as_ref(), Some(&want), "{s}");
        }
        assert_eq!(
            SnapshotId::parse("11.1/x86_64").map(|i| i.to_string()),
            Some("11.1/x86_64".to_owned())
        );
        for bad in [
            "x86_64",
            "x86/64",
            "11.1",
            "/x86_64",
            "11..1/x86_64",
            "a/b/c",
        ] {
            assert_eq!(SnapshotId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolve_picks_newest_on_a_prefix_and_respects_dot_boundaries() {
        let names = [
            "caps_11.1.2_x86_64.json",
            "caps_11.1.10_x86_64.json",
            "caps_11.10.0_x86_64.json",
            "caps_11.1.3_s390x.json",
            "notes.txt",
        ];
        let r = |s: &str| SnapshotId::parse(s).and_then(|i| i.resolve(&names));
        assert_eq!(r("11.1/x86_64"), Some("caps_11.1.10_x86_64.json"));
        assert_eq!(r("11/x86_64"), Some("caps_11.10.0_x86_64.json"));
        assert_eq!(r("11.1.2_x86_64"), Some("caps_11.1.2_x86_64.json"));
        assert_eq!(r("11.1/s390x"), Some("caps_11.1.3_s390x.json"));
        assert_eq!(r("11.1/aarch64"), None);
        assert_eq!(r("11.1.1/x86_64"), None);
    }

    #[test]
    fn version_order_is_numeric_and_unparsable_sorts_last() {
        let mut v = vec!["11.1.3", "7.2.0", "10.0.0", "10.0.x", "10.0.10"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["7.2.0", "10.0.0", "10.0.10", "10.0.x", "11.1.3"]);
    }
}
