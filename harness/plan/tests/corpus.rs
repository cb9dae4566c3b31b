//! Replays the case corpus (`cases/`) against every recorded snapshot (`capsdata/`) and
//! checks the hand-written expectations of each `case.toml`: accept or reject, and the
//! address of every listed device. Goldens are the runner's business; this test keeps
//! the core honest against the same facts without QEMU.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use qconform_caps::Snapshot;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn snapshots() -> Vec<Snapshot> {
    let mut v = Vec::new();
    let dir = root().join("capsdata");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        if f.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&f).unwrap();
            v.push(Snapshot::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        }
    }
    v
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn applies(spec: &toml::Value, dom: &qconform_domxml::Domain, caps: &Snapshot) -> bool {
    let req = spec.get("requires");
    let get = |k: &str| req.and_then(|r| r.get(k));
    let arch = strings(get("arch"));
    if !arch.is_empty() && !arch.contains(&caps.probe.arch) {
        return false;
    }
    if strings(get("types")).iter().any(|t| !caps.has_type(t)) {
        return false;
    }
    if strings(get("absent_types"))
        .iter()
        .any(|t| caps.has_type(t))
    {
        return false;
    }
    for p in strings(get("properties")) {
        if let Some((t, prop)) = p.split_once('.')
            && !caps.device_has_property(t, prop)
        {
            return false;
        }
    }
    match get("machine").and_then(|m| m.as_str()) {
        Some("*") => true,
        Some(m) => caps.resolve_machine(Some(m)).is_some(),
        None => caps.resolve_machine(dom.machine.as_deref()).is_some(),
    }
}

#[test]
fn corpus_expectations_hold_on_every_snapshot() {
    let snaps = snapshots();
    if snaps.is_empty() {
        eprintln!("no snapshots in capsdata/: nothing to replay");
        return;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("cases"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.sort();
    let mut failures: Vec<String> = Vec::new();
    let mut trials = 0;
    for dir in dirs {
        let (Ok(xml), Ok(spec)) = (
            std::fs::read_to_string(dir.join("domain.xml")),
            std::fs::read_to_string(dir.join("case.toml")),
        ) else {
            continue;
        };
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let spec: toml::Value = toml::from_str(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dom = qconform_domxml::parse(&xml).ok();
        let expect = spec.get("expect");
        let outcome = expect
            .and_then(|e| e.get("outcome"))
            .and_then(|o| o.as_str())
            .unwrap_or("accept");
        for caps in &snaps {
            if let Some(d) = &dom {
                if !applies(&spec, d, caps) {
                    continue;
                }
            } else if !strings(spec.get("requires").and_then(|r| r.get("arch")))
                .is_empty_or_contains(&caps.probe.arch)
            {
                continue;
            }
            trials += 1;
            let id = format!("{name}@{}", caps.id());
            match (qconform_plan::plan(&xml, caps), outcome) {
                (Ok(p), "accept") => {
                    let map = p.addresses_text();
                    if let Some(addrs) = expect
                        .and_then(|e| e.get("addresses"))
                        .and_then(|a| a.as_table())
                    {
                        for (alias, want) in addrs {
                            let want = want.as_str().unwrap_or_default();
                            let line = map
                                .lines()
                                .find(|l| l.split_whitespace().next() == Some(alias.as_str()));
                            match line {
                                Some(l) if l.contains(want) => {}
                                Some(l) => failures.push(format!(
                                    "{id}: {alias}: want '{want}', got '{}'",
                                    l.trim()
                                )),
                                None => failures
                                    .push(format!("{id}: {alias}: missing from the address map")),
                            }
                        }
                    }
                }
                (Ok(_), _) => {
                    failures.push(format!("{id}: expected a rejection, the plan accepted"))
                }
                (Err(e), "accept") => {
                    failures.push(format!("{id}: expected acceptance, rejected: {e}"))
                }
                (Err(_), _) => {}
            }
        }
    }
    assert!(trials > 0, "no trial ran");
    assert!(
        failures.is_empty(),
        "{} of {trials} trials disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

trait EmptyOr {
    fn is_empty_or_contains(&self, s: &str) -> bool;
}

impl EmptyOr for Vec<String> {
    fn is_empty_or_contains(&self, s: &str) -> bool {
        self.is_empty() || self.iter().any(|x| x == s)
    }
}
