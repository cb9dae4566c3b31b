//! The HTML report in a real headless Chromium: it renders, the matrix has the expected
//! number of cells, and every in-page link resolves to an element id.
//!
//! Skips with a message when no Chromium is installed, except under CI (`CI=true`), where
//! a missing browser is a failure.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{add_machine, sample_records, snapshot};
use qconform_reports::render::{REPORT_HTML, write_run};

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed, and CI=true requires the browser test to run");
        }
        eprintln!(
            "SKIPPED: chromium not found in PATH (install Debian's `chromium` package to run the browser test)"
        );
    }
    found
}

/// Runs Chromium headless with its own profile directory, in its own process group, and
/// kills that group if it does not finish in time.
fn chromium(bin: &Path, profile: &Path, extra: &[String], url: &str) -> (String, String) {
    use std::os::unix::process::CommandExt as _;
    let out_file = profile.join("stdout.txt");
    let err_file = profile.join("stderr.txt");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).expect("stdout file"))
        .stderr(std::fs::File::create(&err_file).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let pgid = child.id();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The browser is gone; make sure no helper of its group lingers.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    (stdout, stderr)
}

fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = snapshot((10, 0, 2), "x86_64");
    add_machine(&mut a, "pc-q35-10.0", Some("q35"), false, None);
    let mut b = snapshot((11, 1, 3), "x86_64");
    add_machine(&mut b, "pc-q35-11.1", Some("q35"), false, Some(true));
    let run = write_run(&tmp.path().join("results"), &sample_records(), &[a, b]).expect("run");
    let page = run.join(REPORT_HTML);
    let url = format!("file://{}", page.display());

    let (dom, stderr) = chromium(&bin, tmp.path(), &["--dump-dom".to_owned()], &url);
    assert!(
        dom.contains("<table class=\"matrix\">"),
        "no matrix in the rendered DOM:\n{stderr}\n{dom}"
    );
    // 3 cases x 4 columns, every one rendered as a cell.
    assert_eq!(dom.matches("<td class=\"cell").count(), 12, "{dom}");
    assert!(dom.contains("<title>qconform conformance report</title>"));
    // Badges carry their outcome class in the DOM the browser built (a repeated class
    // attribute would be dropped here and leave them uncoloured).
    for class in ["b ok", "b failed", "b ignored", "b rig-error"] {
        assert!(
            dom.contains(&format!("class=\"{class}\"")),
            "no badge {class}"
        );
    }
    let ids: BTreeSet<String> = attr_values(&dom, "id").into_iter().collect();
    let hrefs = attr_values(&dom, "href");
    assert!(hrefs.len() >= 12, "cells link to their details");
    for h in &hrefs {
        let target = h
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local link {h}"));
        assert!(ids.contains(target), "link #{target} has no element");
    }

    let shot = tmp.path().join("shot.png");
    chromium(
        &bin,
        tmp.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".to_owned(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to a few hundred bytes; a rendered matrix does not.
    assert!(
        png.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
}
