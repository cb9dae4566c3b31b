//! Guest stage: boot a Debian kernel and the qconform initramfs with the planned argv
//! under TCG and compare the PCI functions the guest kernel enumerated with the
//! prediction (x86: exact bus numbers as the firmware and kernel assigned them; s390x:
//! domain = zPCI uid, and the fid the guest reads back).

use std::collections::BTreeMap;

use qconform_qemu::guest::{self, GuestError};
use qconform_qemu::live::ObservedFunction;

use crate::binaries::Located;
use crate::case::Case;
use crate::livestage::compare_view;
use crate::outcome::{StageResult, argv_line};
use crate::planview;
use crate::rig::Rig;
use crate::snapshots::LoadedSnapshot;

/// Whether the guest tier can boot a machine: x86_64 pc/q35, s390x s390-ccw-virtio,
/// aarch64 virt.
pub fn machine_supported(arch: &str, canonical_machine: &str) -> bool {
    match arch {
        "x86_64" => {
            canonical_machine.starts_with("pc-i440fx")
                || canonical_machine.starts_with("pc-q35")
                || canonical_machine == "pc"
                || canonical_machine == "q35"
        }
        "s390x" => canonical_machine.starts_with("s390-ccw-virtio"),
        "aarch64" => canonical_machine == "virt" || canonical_machine.starts_with("virt-"),
        _ => false,
    }
}

/// Runs the guest stage.
pub fn run(case: &Case, snap: &LoadedSnapshot, bin: &Located, rig: &Rig) -> StageResult {
    let plan = match planview::plan(&case.domain_xml, &snap.snapshot) {
        Ok(p) => p,
        Err(e) => {
            return StageResult::ignored(format!(
                "the plan rejects this domain, so there is no guest to boot: {}",
                e.message
            ));
        }
    };
    if !plan.host_resources.is_empty() {
        return StageResult::ignored(format!(
            "the planned argv needs host resources a test host lacks ({})",
            plan.host_resources.join(", ")
        ));
    }
    let Some(root) = rig.guest_root.as_deref() else {
        return StageResult::rig("no guest assets root (set QCONFORM_GUEST_ROOT or HOME)");
    };
    let assets = match guest::assets(root, &snap.arch) {
        Ok(a) => a,
        Err(e) => return StageResult::rig(e),
    };
    let args = guest::guest_args(&plan.argv, &assets);
    let name = bin
        .program
        .file_name()
        .map_or_else(|| "qemu".to_owned(), |n| n.to_string_lossy().into_owned());
    let line = argv_line(&name, &args);
    let booted = {
        let _slot = rig.slots.acquire();
        rig.runtime.block_on(guest::boot(
            &bin.program,
            &plan.argv,
            &assets,
            rig.guest_timeout,
        ))
    };
    let boot = match booted {
        Ok(b) => b,
        Err(e) => {
            let stderr = e.stderr().unwrap_or_default().to_owned();
            let msg = format!("{e}\n\nargv: {line}");
            let r = match e {
                GuestError::Spawn { .. } | GuestError::Timeout { .. } => StageResult::rig(msg),
                GuestError::Exited { .. } | GuestError::Parse { .. } => StageResult::fail(msg),
            };
            return r.with_argv(args).with_stderr(&stderr);
        }
    };
    let observed: Vec<ObservedFunction> = boot.functions.iter().map(|f| f.observed()).collect();
    let mut failures = Vec::new();
    if let Some(diff) = compare_view(&plan.guest_pci, &observed, "actual: guest sysfs") {
        failures.push(format!(
            "the guest enumerated other PCI functions than predicted:\n{diff}"
        ));
    }
    if snap.arch == "s390x" {
        let fids: BTreeMap<u32, Option<u32>> = boot
            .functions
            .iter()
            .map(|f| (f.uid.unwrap_or(f.domain), f.fid))
            .collect();
        for (alias, d) in &plan.devices {
            let (Some(uid), Some(fid)) = (d.zpci_uid, d.zpci_fid) else {
                continue;
            };
            match fids.get(&uid) {
                Some(Some(got)) if *got == fid => {}
                Some(Some(got)) => failures.push(format!(
                    "zPCI: the plan gives {alias} fid {fid:#010x}, the guest reads fid {got:#010x} for uid {uid:#06x}"
                )),
                Some(None) => failures.push(format!(
                    "zPCI: the guest shows no function_id for uid {uid:#06x} ({alias})"
                )),
                None => {} // The line comparison above already reports the missing function.
            }
        }
    }
    if !failures.is_empty() {
        failures.push(format!("argv: {line}"));
    }
    let notes = vec![format!(
        "guest listed {} PCI functions after {:.1}s",
        boot.functions.len(),
        boot.elapsed.as_secs_f64()
    )];
    StageResult::from_checks(failures, notes)
        .with_argv(boot.args)
        .with_stderr(&boot.stderr)
}
