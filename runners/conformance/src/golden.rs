//! Golden files: `cases/<case>/expect/<arch>-<version>.{argv,addr,lspci,err,warn}`.
//!
//! Without the bless switch a difference fails with a unified diff and a hint, a missing
//! golden fails (never created silently) and a golden the plan no longer produces fails as
//! stale. With the bless switch the goldens are rewritten (atomically, only when they
//! change) and stale ones are removed.

use std::collections::BTreeSet;
use std::path::Path;

/// Extensions of golden files, in the order they are checked.
pub const GOLDEN_EXTS: &[&str] = &["argv", "addr", "lspci", "warn", "err"];

/// Longest diff kept in a failure message, in lines.
const MAX_DIFF_LINES: usize = 400;

/// Result of checking (or blessing) the goldens of one trial.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GoldenOutcome {
    /// Failure texts (diffs, missing or stale files).
    pub failures: Vec<String>,
    /// What bless changed (`wrote x`, `removed y`).
    pub blessed: Vec<String>,
}

/// Where the goldens of one case are and how to name them in messages.
#[derive(Debug, Clone, Copy)]
pub struct GoldenDir<'a> {
    /// The `expect/` directory.
    pub dir: &'a Path,
    /// How to show it (`cases/<case>/expect`).
    pub display: &'a str,
    /// Hint appended to failures (how to bless this case).
    pub hint: &'a str,
}

/// Normalises golden text: `\n` line ends, exactly one final newline unless empty.
pub fn normalize(text: &str) -> String {
    let t = text.replace("\r\n", "\n");
    let t = t.trim_end_matches('\n');
    if t.is_empty() {
        String::new()
    } else {
        format!("{t}\n")
    }
}

/// Unified diff from `expected` to `actual`, shortened when very long.
pub fn unified_diff(
    expected: &str,
    actual: &str,
    expected_name: &str,
    actual_name: &str,
) -> String {
    let text =
        qconform_reports::diff::unified_text(expected, actual, (expected_name, actual_name), 3);
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= MAX_DIFF_LINES {
        return text;
    }
    let mut out = lines.get(..MAX_DIFF_LINES).unwrap_or_default().join("\n");
    out.push_str(&format!(
        "\n... ({} more diff lines)\n",
        lines.len() - MAX_DIFF_LINES
    ));
    out
}

/// Checks (or, with `bless`, writes) the goldens of one snapshot: `produced` holds the
/// extension and text of every golden the plan produced; goldens of other extensions with
/// the same stem are stale.
pub fn check(
    gd: GoldenDir<'_>,
    stem: &str,
    produced: &[(&str, String)],
    bless: bool,
) -> GoldenOutcome {
    let mut out = GoldenOutcome::default();
    for (ext, text) in produced {
        let name = format!("{stem}.{ext}");
        let path = gd.dir.join(&name);
        let shown = format!("{}/{name}", gd.display);
        let actual = normalize(text);
        let expected = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                out.failures
                    .push(format!("cannot read golden {shown}: {e}"));
                continue;
            }
        };
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if bless {
            match write_atomic(gd.dir, &name, &actual) {
                Ok(()) => out.blessed.push(format!("wrote {shown}")),
                Err(e) => out
                    .failures
                    .push(format!("cannot write golden {shown}: {e}")),
            }
            continue;
        }
        match expected {
            None => out.failures.push(format!(
                "missing golden {shown}; the plan produced:\n{}\n{}",
                indent_block(&actual),
                gd.hint
            )),
            Some(exp) => out.failures.push(format!(
                "golden {shown} differs from the plan:\n{}{}",
                unified_diff(&exp, &actual, &format!("expected: {shown}"), "actual: plan"),
                gd.hint
            )),
        }
    }
    for ext in GOLDEN_EXTS {
        if produced.iter().any(|(e, _)| e == ext) {
            continue;
        }
        let name = format!("{stem}.{ext}");
        let path = gd.dir.join(&name);
        if !path.exists() {
            continue;
        }
        let shown = format!("{}/{name}", gd.display);
        if bless {
            match std::fs::remove_file(&path) {
                Ok(()) => out.blessed.push(format!("removed stale {shown}")),
                Err(e) => out
                    .failures
                    .push(format!("cannot remove stale {shown}: {e}")),
            }
        } else {
            out.failures.push(format!(
                "stale golden {shown}: the plan produces no .{ext} for this snapshot any more\n{}",
                gd.hint
            ));
        }
    }
    out
}

/// Files of `expect/` that belong to no applicable snapshot (`stems`) or are not goldens
/// at all. With `bless` they are removed; otherwise each one is a failure. When `known`
/// (the stems of every loaded snapshot) is given, goldens of snapshots that are not loaded
/// (a caps directory holding only some of them) are left alone.
pub fn check_orphans(
    gd: GoldenDir<'_>,
    stems: &BTreeSet<String>,
    known: Option<&BTreeSet<String>>,
    bless: bool,
) -> GoldenOutcome {
    let mut out = GoldenOutcome::default();
    let entries = match std::fs::read_dir(gd.dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.failures
                .push(format!("cannot read {}: {e}", gd.display));
            return out;
        }
    };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.file_type().is_ok_and(|t| t.is_dir()),
            )
        })
        .collect();
    names.sort();
    for (name, is_dir) in names {
        let belongs = !is_dir
            && name.rsplit_once('.').is_some_and(|(stem, ext)| {
                GOLDEN_EXTS.contains(&ext)
                    && (stems.contains(stem) || known.is_some_and(|k| !k.contains(stem)))
            });
        if belongs {
            continue;
        }
        let shown = format!("{}/{name}", gd.display);
        if bless && !is_dir {
            match std::fs::remove_file(gd.dir.join(&name)) {
                Ok(()) => out.blessed.push(format!("removed unused {shown}")),
                Err(e) => out
                    .failures
                    .push(format!("cannot remove unused {shown}: {e}")),
            }
        } else {
            out.failures.push(format!(
                "unused file {shown}: no applicable snapshot produces it (goldens are \
                 <arch>-<version>.{{{}}} for the snapshots the case applies to)\n{}",
                GOLDEN_EXTS.join(","),
                gd.hint
            ));
        }
    }
    out
}

/// Writes `dir/name` atomically (creating `dir`), by the shared rules of
/// [`qconform_reports::output::write_file`].
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    qconform_reports::output::write_in(dir, name, text.as_bytes())
}

fn indent_block(text: &str) -> String {
    if text.is_empty() {
        return "    (empty)".into();
    }
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gd(dir: &Path) -> GoldenDir<'_> {
        GoldenDir {
            dir,
            display: "cases/x/expect",
            hint: "hint: bless",
        }
    }

    #[test]
    fn test_missing_golden_fails_and_bless_creates_it() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("expect");
        let produced = [("argv", "-a\n-b".to_owned())];
        let r = check(gd(&d), "x86_64-11.1.3", &produced, false);
        assert_eq!(r.failures.len(), 1);
        assert!(r.failures[0].contains("missing golden cases/x/expect/x86_64-11.1.3.argv"));
        assert!(!d.exists(), "no silent create");
        let r = check(gd(&d), "x86_64-11.1.3", &produced, true);
        assert!(r.failures.is_empty());
        assert_eq!(r.blessed, ["wrote cases/x/expect/x86_64-11.1.3.argv"]);
        assert_eq!(
            std::fs::read_to_string(d.join("x86_64-11.1.3.argv")).expect("read"),
            "-a\n-b\n"
        );
        let r = check(gd(&d), "x86_64-11.1.3", &produced, false);
        assert_eq!(r, GoldenOutcome::default());
    }

    #[test]
    fn test_difference_shows_unified_diff() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("s.argv"), "-a\n-b\n").expect("write");
        let r = check(gd(t.path()), "s", &[("argv", "-a\n-c\n".into())], false);
        assert_eq!(r.failures.len(), 1);
        let f = &r.failures[0];
        assert!(f.contains("-b\n+-c"), "{f}");
        assert!(f.contains("--- expected: cases/x/expect/s.argv"), "{f}");
        assert!(f.ends_with("hint: bless"), "{f}");
    }

    #[test]
    fn test_stale_same_stem_and_orphans() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("s.err"), "old error\n").expect("write");
        std::fs::write(t.path().join("s.argv"), "-a\n").expect("write");
        std::fs::write(t.path().join("gone-1.0.0.argv"), "-a\n").expect("write");
        std::fs::write(t.path().join("notes.txt"), "x").expect("write");
        let r = check(gd(t.path()), "s", &[("argv", "-a".into())], false);
        assert_eq!(r.failures.len(), 1);
        assert!(r.failures[0].contains("stale golden cases/x/expect/s.err"));
        let stems: BTreeSet<String> = ["s".to_owned()].into();
        let r = check_orphans(gd(t.path()), &stems, None, false);
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        let r = check_orphans(gd(t.path()), &stems, None, true);
        assert_eq!(r.blessed.len(), 2);
        let r = check(gd(t.path()), "s", &[("argv", "-a".into())], true);
        assert_eq!(r.blessed, ["removed stale cases/x/expect/s.err"]);
        let left: BTreeSet<String> = std::fs::read_dir(t.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["s.argv".to_owned()].into());
    }

    #[test]
    fn test_normalize() {
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("\n\n"), "");
        assert_eq!(normalize("a\r\nb"), "a\nb\n");
        assert_eq!(normalize("a\n\n"), "a\n");
    }
}
