//! A minimised disagreement as a ready case directory: `domain.xml` and a `case.toml`
//! skeleton holding what was observed (the plan's answer, QEMU's answer, the message),
//! for a developer to finish (purpose, the libvirt answer) and move under `cases/`.

use std::path::{Path, PathBuf};

use super::verify::Class;
use crate::golden::write_atomic;

/// What a case skeleton records.
#[derive(Debug, Clone)]
pub struct Finding<'a> {
    /// Snapshot id (`11.1.3/x86_64`).
    pub snapshot: &'a str,
    /// Arch.
    pub arch: &'a str,
    /// Kind of disagreement.
    pub class: Class,
    /// The check's message for the minimised domain.
    pub message: &'a str,
    /// The normalised key of the disagreement (one line).
    pub key: &'a str,
    /// Whether the plan accepted the minimised domain.
    pub accepted: bool,
    /// Run seed and domain index the finding came from.
    pub seed: u64,
    /// Domain index.
    pub index: u64,
    /// Devices before and after minimisation.
    pub devices: (usize, usize),
}

fn toml_str(s: &str) -> String {
    // A TOML basic string.
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The case directory name: `explore-<version>-<arch>-<class>-s<seed>-<index>`.
pub fn case_name(f: &Finding<'_>) -> String {
    format!(
        "explore-{}-{}-s{}-{}",
        f.snapshot.replace('/', "-"),
        f.class.as_str(),
        f.seed,
        f.index
    )
}

/// `case.toml` skeleton text.
pub fn case_toml(f: &Finding<'_>) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "# Found by `qconform explore --seed {} --caps {}` (domain {}), minimised from {} to {} devices.\n",
        f.seed, f.snapshot, f.index, f.devices.0, f.devices.1
    ));
    t.push_str("# Finish it: write the purpose, set [expect] to what libvirt does, rename the\n");
    t.push_str("# directory to <topic>-<what>, move it under cases/ and bless.\n");
    t.push_str(&format!(
        "purpose = {}\n",
        toml_str(&format!("(explore {}) {}", f.class.as_str(), f.key))
    ));
    t.push_str("topic = 'fit'\n\n[requires]\n");
    t.push_str(&format!("arch = ['{}']\n\n", f.arch));
    t.push_str("[expect]\n");
    t.push_str(&format!(
        "# observed: the plan {} this domain on {}\n",
        if f.accepted { "accepts" } else { "refuses" },
        f.snapshot
    ));
    t.push_str(&format!(
        "outcome = '{}'\n\n",
        if f.accepted { "accept" } else { "reject" }
    ));
    t.push_str("[live]\n");
    match f.class {
        Class::QemuRefused => {
            let err = f
                .message
                .lines()
                .nth(1)
                .map(|l| {
                    let core: Vec<&str> = l.split(": ").collect();
                    core.last().copied().unwrap_or(l).to_owned()
                })
                .unwrap_or_default();
            t.push_str("# observed: QEMU refuses the planned argv\n");
            t.push_str("qemu = 'reject'\n");
            t.push_str(&format!("error = {}\n", toml_str(&regex_escape(&err))));
        }
        Class::QemuAccepted => {
            t.push_str("# observed: QEMU accepts the QEMU-side form of the refusal\n");
            t.push_str("qemu = 'accept'\n");
        }
        _ => {
            t.push_str("# observed: QEMU starts the planned argv, but builds something else\n");
        }
    }
    t.push_str("\n# Observed message:\n");
    for l in f.message.lines() {
        t.push_str(&format!("# {l}\n"));
    }
    t
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Writes `<out>/<name>/{domain.xml,case.toml}` atomically; returns the directory.
pub fn write_case(out: &Path, f: &Finding<'_>, domain_xml: &str) -> std::io::Result<PathBuf> {
    let dir = out.join(case_name(f));
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir, "domain.xml", domain_xml)?;
    write_atomic(&dir, "case.toml", &case_toml(f))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_toml_is_valid_toml_with_the_observed_facts() {
        let f = Finding {
            snapshot: "11.1.3/x86_64",
            arch: "x86_64",
            class: Class::QemuRefused,
            key: "PCI: slot N",
            message: "QEMU refused the planned argv (exit code 1):\nqemu-system-x86_64: -device e1000,id=net0: PCI: slot 2 function 0 not available for e1000, in use by \"x\"\n\nargv: q",
            accepted: true,
            seed: 7,
            index: 12,
            devices: (9, 2),
        };
        let text = case_toml(&f);
        let v: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(v["expect"]["outcome"].as_str(), Some("accept"));
        assert_eq!(v["live"]["qemu"].as_str(), Some("reject"));
        let re = regex::Regex::new(v["live"]["error"].as_str().expect("error")).expect("regex");
        assert!(re.is_match("PCI: slot 2 function 0 not available for e1000, in use by \"x\""));
        assert_eq!(case_name(&f), "explore-11.1.3-x86_64-qemu-refused-s7-12");
    }
}
