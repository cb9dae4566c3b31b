//! One generated domain against the plan and the real binary.
//!
//! * The plan accepts: the argv is started through the live stage's own check
//!   ([`crate::livestage::verify_accepted`]): QEMU must start, and its PCI functions and
//!   device placement (query-pci after SeaBIOS on x86, `info qtree` elsewhere, zPCI
//!   uid/fid on s390x) must equal the plan's. A plan that needs host resources (vfio) is
//!   not started.
//! * The plan refuses with a QEMU-side form: the refusal is tried on QEMU, which must
//!   refuse too. Today that form is a device type the binary lacks (`device type 'X' is
//!   not available in QEMU ...`): `-machine M -device X` must not start.
//! * Any other refusal (libvirt's define-time rules) has no QEMU-side form and is counted
//!   as refused.

use std::panic::AssertUnwindSafe;

use qconform_qemu::live::{self, Attempt};

use crate::binaries::Located;
use crate::livestage;
use crate::planview;
use crate::rig::Rig;
use crate::snapshots::LoadedSnapshot;

/// Kinds of disagreement between the plan and QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// The plan accepted; QEMU refused the planned argv.
    QemuRefused,
    /// The plan accepted; QEMU's PCI functions differ from the predicted guest view.
    GuestView,
    /// The plan accepted; a device sits elsewhere in QEMU (bus, slot, function, devno).
    Placement,
    /// The plan accepted; zPCI uid/fid differ.
    Zpci,
    /// The plan refused with a QEMU-side form; QEMU accepted it.
    QemuAccepted,
    /// The plan panicked.
    PlanPanic,
    /// Anything else the live check reported.
    Other,
}

impl Class {
    /// Short name used in case directory names and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::QemuRefused => "qemu-refused",
            Class::GuestView => "guest-view",
            Class::Placement => "placement",
            Class::Zpci => "zpci",
            Class::QemuAccepted => "qemu-accepted",
            Class::PlanPanic => "plan-panic",
            Class::Other => "other",
        }
    }
}

/// What checking one domain found.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Accepted, started, and QEMU built what the plan says.
    Agreed,
    /// Accepted, but the argv needs host resources; not started.
    NotRunnable(String),
    /// Refused, and QEMU refused the QEMU-side form too.
    RefusalConfirmed(String),
    /// Refused by a libvirt rule with no QEMU-side form.
    Refused(String),
    /// Plan and QEMU disagree.
    Disagreement {
        /// Kind.
        class: Class,
        /// Normalised first line, to tell one disagreement from another.
        key: String,
        /// Full message.
        message: String,
        /// Whether QEMU started the accepted plan.
        started: bool,
        /// Whether the plan accepted.
        accepted: bool,
    },
    /// The rig failed (QEMU could not be launched or did not answer).
    Rig(String),
}

/// Checks one domain on a snapshot and its binary.
pub fn verify(domain_xml: &str, snap: &LoadedSnapshot, bin: &Located, rig: &Rig) -> Verdict {
    let planned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        planview::plan(domain_xml, &snap.snapshot)
    }));
    let planned = match planned {
        Ok(p) => p,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            return Verdict::Disagreement {
                class: Class::PlanPanic,
                key: normalize(&msg),
                message: format!("the plan panicked: {msg}"),
                started: false,
                accepted: false,
            };
        }
    };
    match planned {
        Ok(plan) => {
            if !plan.host_resources.is_empty() {
                return Verdict::NotRunnable(plan.host_resources.join(", "));
            }
            let r = livestage::verify_accepted(snap, bin, rig, &plan);
            if r.rig_error {
                return Verdict::Rig(r.message.unwrap_or_default());
            }
            if r.event == qconform_reports::results::Event::Ok {
                return Verdict::Agreed;
            }
            let message = r.message.unwrap_or_default();
            let (class, key) = classify(&message, r.stderr_tail.as_deref());
            Verdict::Disagreement {
                started: class != Class::QemuRefused,
                accepted: true,
                class,
                key,
                message,
            }
        }
        Err(rejection) => {
            let Some(ty) = missing_type(&rejection.message) else {
                return Verdict::Refused(rejection.message);
            };
            let machine = crate::case::DomainHead::read(domain_xml)
                .machine
                .unwrap_or_default();
            let argv = vec![
                "-machine".to_owned(),
                machine,
                "-device".to_owned(),
                ty.clone(),
            ];
            let attempt = {
                let _slot = rig.slots.acquire();
                rig.runtime
                    .block_on(live::try_argv(&bin.program, &argv, rig.timeouts()))
            };
            match attempt {
                Err(e) => Verdict::Rig(format!("cannot try `-device {ty}` on QEMU: {e}")),
                Ok(Attempt::Refused { stderr, .. }) => Verdict::RefusalConfirmed(format!(
                    "{}\nQEMU: {}",
                    rejection.message,
                    stderr.trim_end()
                )),
                Ok(Attempt::Started { .. }) => Verdict::Disagreement {
                    class: Class::QemuAccepted,
                    key: format!("device type {ty}"),
                    message: format!(
                        "the plan refuses ({}), but QEMU starts `-machine {} -device {ty}`",
                        rejection.message,
                        argv.get(1).map_or("", String::as_str)
                    ),
                    started: false,
                    accepted: false,
                },
            }
        }
    }
}

/// The device type of a "type not available" refusal.
fn missing_type(message: &str) -> Option<String> {
    let rest = message.split("device type '").nth(1)?;
    let (ty, tail) = rest.split_once('\'')?;
    tail.trim_start()
        .starts_with("is not available in QEMU")
        .then(|| ty.to_owned())
}

/// The class of a failed live check, and a key that tells two disagreements of one class
/// apart without depending on numbers (slots, ids).
fn classify(message: &str, stderr: Option<&str>) -> (Class, String) {
    let first = message.lines().next().unwrap_or_default();
    if first.starts_with("QEMU refused") {
        let err = stderr
            .and_then(|s| s.lines().find(|l| !l.trim().is_empty()))
            .or_else(|| message.lines().nth(1))
            .unwrap_or_default();
        return (Class::QemuRefused, normalize(&qemu_error_core(err)));
    }
    let line = message
        .lines()
        .find(|l| {
            l.starts_with("placement:")
                || l.starts_with("zPCI:")
                || l.starts_with("QEMU's PCI functions differ")
        })
        .unwrap_or(first);
    let class = if line.starts_with("placement:") {
        Class::Placement
    } else if line.starts_with("zPCI:") {
        Class::Zpci
    } else if line.starts_with("QEMU's PCI functions differ") {
        Class::GuestView
    } else {
        Class::Other
    };
    let key = if class == Class::GuestView {
        guest_view_key(message)
    } else {
        normalize(line)
    };
    (class, key)
}

/// What kind of guest-view difference a diff shows, without addresses: the changed lines'
/// class and ids (`+ 0200: ffff:ffff` for functions only QEMU has, `- 0900: 1af4:1052`
/// for ones only the plan has), de-duplicated and sorted.
fn guest_view_key(message: &str) -> String {
    let mut parts: Vec<String> = message
        .lines()
        .filter(|l| {
            (l.starts_with('+') && !l.starts_with("+++"))
                || (l.starts_with('-') && !l.starts_with("---"))
        })
        .map(|l| {
            let (sign, rest) = l.split_at(1);
            let rest = rest.trim();
            // Drop the address (`0000:00:13.0 `).
            let what = rest.split_once(' ').map_or(rest, |(_, w)| w);
            format!("{sign} {what}")
        })
        .collect();
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        return "guest view".to_owned();
    }
    format!("guest view: {}", parts.join(", "))
}

/// QEMU's error without the program name and the option it quotes
/// (`qemu-system-x86_64: -device e1000,...: PCI: slot 2 ...` → `PCI: slot 2 ...`).
fn qemu_error_core(line: &str) -> String {
    let mut parts: Vec<&str> = line.split(": ").collect();
    while parts.len() > 1
        && parts
            .first()
            .is_some_and(|p| p.starts_with("qemu-system") || p.starts_with('-'))
    {
        parts.remove(0);
    }
    parts.join(": ")
}

/// Digits become `N`, so that `slot 2` and `slot 5`, `net0` and `net3` share a key.
pub fn normalize(s: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_missing_type_reads_the_plan_wording() {
        assert_eq!(
            missing_type(
                "net0: device type 'e1000' is not available in QEMU 7.2.22/s390x (element <interface>)"
            )
            .as_deref(),
            Some("e1000")
        );
        assert_eq!(
            missing_type("boot order '1' used for more than one device"),
            None
        );
    }

    #[test]
    fn test_classify_keys_ignore_numbers_and_the_quoted_option() {
        let (c, k) = classify(
            "QEMU refused the planned argv (exit code 1):\nx",
            Some(
                "qemu-system-x86_64: -device e1000,id=net3,bus=pci.0,addr=0x2: PCI: slot 2 function 0 not available for e1000, in use by virtio-net-pci,id=net0\n",
            ),
        );
        assert_eq!(c, Class::QemuRefused);
        assert_eq!(
            k,
            "PCI: slot N function N not available for eN, in use by virtio-net-pci,id=netN"
        );
        let (c, _) = classify(
            "placement: the plan puts net0 on bus pci.1, QEMU has it on pci.0\n\nargv: x",
            None,
        );
        assert_eq!(c, Class::Placement);
        let (c, k) = classify(
            "QEMU's PCI functions differ from the predicted guest view (x):\n--- expected: plan guest view\n+++ actual: QEMU\n@@ -1 +1 @@\n 0000:00:02.0 0200: 8086:10c9\n+0000:00:13.0 0200: ffff:ffff\n+0000:00:13.2 0200: ffff:ffff\n-0000:01:00.0 0900: 1af4:1052\n",
            None,
        );
        assert_eq!(c, Class::GuestView);
        assert_eq!(k, "guest view: + 0200: ffff:ffff, - 0900: 1af4:1052");
        let (c, k) = classify(
            "QEMU's PCI functions differ from the predicted guest view (x):\n--- expected: plan guest view\n+++ actual: QEMU\n@@ -1 +1 @@\n 0000:00:01.0 0604: 1b36:000c\n+0000:00:0b.6 00ff: 1af4:1002\n\n\nargv: x",
            None,
        );
        // The live check marks a lone function hidden itself, so one that still shows is a
        // disagreement like any other.
        assert_eq!(c, Class::GuestView);
        assert_eq!(k, "guest view: + 00ff: 1af4:1002");
        // A class that reads differently is a disagreement (the live check reads info
        // qtree's class text as a number).
        let (c, _) = classify(
            "QEMU's PCI functions differ from the predicted guest view (x):\n--- expected: plan guest view\n+++ actual: QEMU\n@@ -1 +1 @@\n-0000:01:00.0 0900: 1af4:1052\n+0000:01:00.0 [Pen]: 1af4:1052\n\n\nargv: x",
            None,
        );
        assert_eq!(c, Class::GuestView);
        // A function 0 QEMU has and the plan lacks is a disagreement.
        let (c, _) = classify(
            "QEMU's PCI functions differ from the predicted guest view (x):\n--- a\n+++ b\n@@ -1 +1 @@\n+0000:00:0b.0 00ff: 1af4:1002\n+0000:00:0b.6 00ff: 1af4:1002\n",
            None,
        );
        assert_eq!(c, Class::GuestView);
    }
}
