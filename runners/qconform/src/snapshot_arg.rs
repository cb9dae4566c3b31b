//! Snapshot arguments of the CLI: a caps snapshot file, or a short id (`11.1/x86_64`,
//! `11.1.3_x86_64`, `caps_7.2.22_s390x.json`) resolved in a snapshot directory, where a
//! version prefix picks the newest snapshot with that prefix.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// All snapshot files of a directory, sorted by name.
pub(crate) fn snapshot_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read snapshot directory {}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("caps_") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// `caps_11.1.3_x86_64.json` → (`11.1.3`, `x86_64`).
pub(crate) fn file_id(path: &Path) -> Option<(String, String)> {
    let name = path.file_name()?.to_str()?;
    let core = name.strip_prefix("caps_")?.strip_suffix(".json")?;
    let (v, a) = core.split_once('_')?;
    Some((v.to_owned(), a.to_owned()))
}

pub(crate) fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Resolves a path or a short id (`11.1/x86_64`, `11.1.3_x86_64`) to a snapshot file.
pub(crate) fn resolve_snapshot(spec: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let core = spec.trim_start_matches("caps_").trim_end_matches(".json");
    let Some((version, arch)) = core.split_once(['/', '_', ' ']) else {
        bail!("{spec:?} is neither a file nor a snapshot id like 11.1/x86_64");
    };
    let files = snapshot_files(dir)?;
    let mut matches: Vec<(Vec<u64>, PathBuf)> = files
        .iter()
        .filter_map(|f| {
            let (v, a) = file_id(f)?;
            let prefix_ok = v == version || v.starts_with(&format!("{version}."));
            (a == arch && prefix_ok).then(|| (version_key(&v), f.clone()))
        })
        .collect();
    matches.sort();
    match matches.pop() {
        Some((_, f)) => Ok(f),
        None => {
            let known: Vec<String> = files
                .iter()
                .filter_map(|f| file_id(f).map(|(v, a)| format!("{v}/{a}")))
                .collect();
            bail!(
                "no snapshot {version}/{arch} in {} (have: {})",
                dir.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}
