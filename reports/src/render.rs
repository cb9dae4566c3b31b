//! A run directory: `results/run-<UTC timestamp>-<short id>/` holding `results.jsonl`,
//! `junit.xml`, `report.html`, `caps-diff.json` and, when the run replayed libvirt's test
//! suite, `libvirt-suite.json`, written atomically (built in a hidden
//! temporary directory, then renamed into place), and a `latest` symbolic link to it that
//! is replaced atomically (a new link under a temporary name, then renamed over the old).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use qconform_caps::Snapshot;

use crate::diff::{DiffSet, adjacent};
use crate::diff_render;
use crate::html::{PageMeta, report_page};
use crate::junit::{JunitError, junit};
use crate::results::{Merged, TrialRecord, merge, to_json_lines};
use crate::suite::SuiteSection;

/// File names inside a run directory.
pub const RESULTS_JSONL: &str = "results.jsonl";
/// JUnit XML file name.
pub const JUNIT_XML: &str = "junit.xml";
/// HTML report file name.
pub const REPORT_HTML: &str = "report.html";
/// Caps diff JSON file name.
pub const CAPS_DIFF_JSON: &str = "caps-diff.json";
/// libvirt-suite parity JSON file name (see [`crate::suite::SuiteSummary`]).
pub const LIBVIRT_SUITE_JSON: &str = "libvirt-suite.json";
/// Name of the link to the newest run.
pub const LATEST: &str = "latest";

/// Writing a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file system operation failed (the cause is the error's source).
    #[error("cannot write {path}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// JUnit serialisation failed.
    #[error(transparent)]
    Junit(#[from] JunitError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The rendered contents of a run directory (pure: no file access).
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// Merged records.
    pub merged: Merged,
    /// `results.jsonl`.
    pub results_jsonl: String,
    /// `junit.xml`.
    pub junit_xml: String,
    /// `report.html`.
    pub report_html: String,
    /// `caps-diff.json`.
    pub caps_diff_json: String,
    /// `libvirt-suite.json`, when the page's meta carries the tier's result.
    pub libvirt_suite_json: Option<String>,
}

/// Merges records and renders every file of a run. Caps diffs are those of adjacent
/// versions per architecture among `snapshots`.
pub fn render_run(
    records: &[TrialRecord],
    snapshots: &[Snapshot],
    meta: &PageMeta,
) -> Result<RunFiles, RenderError> {
    let merged = merge(records.iter().cloned());
    let diffs = adjacent(snapshots);
    let report_html = report_page(&merged, &diffs, meta);
    let caps_diff_json = diff_render::json(&DiffSet::of(diffs));
    let name = meta.run_id.as_deref().unwrap_or("qconform");
    let junit_xml = junit(&merged.records, name)?;
    Ok(RunFiles {
        libvirt_suite_json: meta.libvirt_suite.as_ref().map(SuiteSection::to_json),
        results_jsonl: to_json_lines(&merged.records),
        junit_xml,
        report_html,
        caps_diff_json,
        merged,
    })
}

/// Civil UTC date and time of seconds since the epoch: (y, m, d, H, M, S).
fn civil_utc(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let to32 = |v: i64| u32::try_from(v).unwrap_or(0);
    let rem32 = |v: u64| u32::try_from(v).unwrap_or(0);
    (
        y,
        to32(m),
        to32(d),
        rem32(rem / 3600),
        rem32(rem % 3600 / 60),
        rem32(rem % 60),
    )
}

/// `20250131T120000Z` for a time.
pub fn compact_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil_utc(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2025-01-31 12:00:00 UTC` for a time.
pub fn readable_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil_utc(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// Eight hex digits that differ between runs started in the same second.
fn short_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:08x}", h.finish() & 0xffff_ffff)
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<(), RenderError> {
    let path = dir.join(name);
    let mut f = fs::File::create(&path).map_err(io(&path))?;
    f.write_all(contents.as_bytes()).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(())
}

/// Writes a run directory under `out_root` (created if missing) and points
/// `out_root/latest` at it. Returns the run directory's path.
///
/// The records are merged first (see [`crate::results::merge`]), so shards can be passed
/// as they are. `snapshots` supply the caps diffs of adjacent versions.
pub fn write_run(
    out_root: &Path,
    records: &[TrialRecord],
    snapshots: &[Snapshot],
) -> Result<PathBuf, RenderError> {
    write_run_with(out_root, records, snapshots, Vec::new())
}

/// [`write_run`], listing the files the records came from on the page.
pub fn write_run_with(
    out_root: &Path,
    records: &[TrialRecord],
    snapshots: &[Snapshot],
    sources: Vec<String>,
) -> Result<PathBuf, RenderError> {
    write_run_full(out_root, records, snapshots, sources, None)
}

/// [`write_run_with`], with the libvirt-suite tier's result (a section of the page and
/// `libvirt-suite.json`).
pub fn write_run_full(
    out_root: &Path,
    records: &[TrialRecord],
    snapshots: &[Snapshot],
    sources: Vec<String>,
    libvirt_suite: Option<SuiteSection>,
) -> Result<PathBuf, RenderError> {
    fs::create_dir_all(out_root).map_err(io(out_root))?;
    let now = SystemTime::now();
    let id = short_id();
    let run_name = format!("run-{}-{id}", compact_utc(now));
    let meta = PageMeta {
        title: "qconform conformance report".to_owned(),
        run_id: Some(run_name.clone()),
        generated: Some(readable_utc(now)),
        sources,
        libvirt_suite,
    };
    let files = render_run(records, snapshots, &meta)?;

    let tmp = out_root.join(format!(".tmp-{run_name}"));
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        write_file(&tmp, RESULTS_JSONL, &files.results_jsonl)?;
        write_file(&tmp, JUNIT_XML, &files.junit_xml)?;
        write_file(&tmp, REPORT_HTML, &files.report_html)?;
        write_file(&tmp, CAPS_DIFF_JSON, &files.caps_diff_json)?;
        if let Some(j) = &files.libvirt_suite_json {
            write_file(&tmp, LIBVIRT_SUITE_JSON, j)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let final_dir = out_root.join(&run_name);
    if let Err(e) = fs::rename(&tmp, &final_dir) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(io(&final_dir)(e));
    }
    update_latest(out_root, &run_name)?;
    Ok(final_dir)
}

/// Points `out_root/latest` at `target` (a name relative to `out_root`) atomically.
pub fn update_latest(out_root: &Path, target: &str) -> Result<(), RenderError> {
    let link = out_root.join(LATEST);
    let tmp = out_root.join(format!(".{LATEST}.tmp-{}", short_id()));
    symlink(Path::new(target), &tmp).map_err(io(&tmp))?;
    if let Err(e) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(io(&link)(e));
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symbolic links are only made on Unix",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_utc(0), (1970, 1, 1, 0, 0, 0));
        // 2000-02-29 12:34:56 UTC (leap day).
        assert_eq!(civil_utc(951_827_696), (2000, 2, 29, 12, 34, 56));
        // 2024-12-31 23:59:59 UTC.
        assert_eq!(civil_utc(1_735_689_599), (2024, 12, 31, 23, 59, 59));
    }
}
