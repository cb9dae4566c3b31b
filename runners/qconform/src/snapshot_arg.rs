//! Snapshot arguments of the CLI: a caps snapshot file, or a short id (`11.1/x86_64`,
//! `11.1.3_x86_64`, `11.1.3/x86_64`, `caps_7.2.22_s390x.json`) resolved in the snapshot
//! directory (`--caps-dir`), where a version prefix picks the newest snapshot with that
//! prefix. Every subcommand resolves and reads snapshots here, by the rules of
//! [`qconform_caps::SnapshotId`] over the listing of [`load::snapshot_files`].

use std::path::{Path, PathBuf};

use qconform_caps::Snapshot;
use qconform_reports::load::{self, LoadError};

/// Resolves a path or a short id to a snapshot file.
pub(crate) fn resolve_snapshot(spec: &str, dir: &Path) -> Result<PathBuf, LoadError> {
    load::resolve_snapshot_path(spec, dir)
}

/// Resolves and reads a snapshot argument.
pub(crate) fn load_snapshot(spec: &str, dir: &Path) -> Result<Snapshot, LoadError> {
    load::read_snapshot(&resolve_snapshot(spec, dir)?)
}
