//! Live stage: the real QEMU binary behind a snapshot.
//!
//! * Accepted plan: run the planned argv; QEMU must start, and the PCI functions it built
//!   (read after SeaBIOS numbered the bridges on x86; from `info qtree` at `-S` elsewhere;
//!   zPCI uid/fid from `info qtree` on s390x) must equal the predicted guest view. Placement
//!   of every PCI device (bus, slot, function) and every CCW devno is compared with the plan
//!   through `info qtree`. QEMU's functions are read by the guest's rule for the machine
//!   (`qconform_plan::machine_visibility`): functions QEMU lists but that guest never
//!   enumerates (slot ≠ 0 behind a PCIe port; a slot without function 0 where the guest
//!   scans from function 0) are recorded in the message, not a failure; pSeries PHBs are
//!   domains by index.
//! * Rejected plan: run the case's hand-written `[live] argv`; QEMU must refuse it with
//!   exit code 1 and an error matching the case's regex (`qemu = "reject"`), or accept it
//!   (`qemu = "accept"`: a place where libvirt's rules are stricter than QEMU's, recorded).

use std::collections::BTreeMap;

use qconform_caps::{GuestPciFunction, QtreeBus, Snapshot};
use qconform_plan::AddressKind;
use qconform_qemu::QemuError;
use qconform_qemu::live::{self, Attempt, Numbering, ObservedFunction};

use crate::binaries::Located;
use crate::case::{Case, LiveQemu};
use crate::golden::unified_diff;
use crate::outcome::{StageResult, argv_line};
use crate::planview::{self, PlanView};
use crate::rig::Rig;
use crate::snapshots::LoadedSnapshot;

/// How the live stage learns bus numbers on an arch.
pub fn numbering_for(arch: &str) -> Numbering {
    // SeaBIOS is the default firmware of pc and q35 and numbers every bridge within
    // milliseconds; other arches boot no firmware in a test launch.
    if arch == "x86_64" || arch == "i386" {
        Numbering::Firmware
    } else {
        Numbering::Frozen
    }
}

/// Whether a QOM type is a PCIe root or downstream port (a `pcie-slot`), below which a
/// guest scans slot 0 only.
pub fn is_pcie_slot(snap: &Snapshot, ty: &str) -> bool {
    let mut cur = Some(ty);
    let mut steps = 0;
    while let Some(t) = cur {
        if t == "pcie-slot" {
            return true;
        }
        steps += 1;
        if steps > 64 {
            break;
        }
        match snap.index.types.get(t) {
            Some(info) => cur = info.parent.as_deref(),
            None => {
                // Not in the index (not probed): the types QEMU has derived from pcie-slot.
                return matches!(
                    t,
                    "pcie-root-port"
                        | "ioh3420"
                        | "xio3130-downstream"
                        | "cxl-rp"
                        | "cxl-downstream"
                );
            }
        }
    }
    false
}

/// Runs the live stage.
pub fn run(case: &Case, snap: &LoadedSnapshot, bin: &Located, rig: &Rig) -> StageResult {
    match planview::plan(&case.domain_xml, &snap.snapshot) {
        Ok(plan) => run_accepted(case, snap, bin, rig, &plan),
        Err(rejection) => run_rejected(case, snap, bin, rig, &rejection.message),
    }
}

fn program_name(bin: &Located) -> String {
    bin.program
        .file_name()
        .map_or_else(|| "qemu".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn qemu_error_result(e: &QemuError, bin: &Located, args: &[String], what: &str) -> StageResult {
    let line = argv_line(&program_name(bin), args);
    match e {
        QemuError::Spawn { .. } => {
            StageResult::rig(format!("cannot launch QEMU ({}): {e}", bin.source))
        }
        QemuError::Exited { exit, stderr, .. } => StageResult::fail(format!(
            "QEMU refused {what} ({exit}):\n{}\n\nargv: {line}",
            stderr.trim_end()
        ))
        .with_stderr(stderr),
        QemuError::Timeout { stderr, .. } => StageResult::rig(format!(
            "QEMU did not answer in time (the machine may be overloaded; \
             QCONFORM_LIVE_TIMEOUT raises the limit): {e}\n\nargv: {line}"
        ))
        .with_stderr(stderr),
        QemuError::Protocol { stderr, .. } => {
            StageResult::rig(format!("QMP session broke: {e}\n\nargv: {line}")).with_stderr(stderr)
        }
        QemuError::Command { .. } | QemuError::Io { .. } => {
            StageResult::fail(format!("{e}\n\nargv: {line}"))
        }
    }
}

fn run_accepted(
    case: &Case,
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    plan: &PlanView,
) -> StageResult {
    if let Some(LiveQemu::Skip) = case.live_qemu() {
        let reason = case
            .spec
            .live
            .as_ref()
            .and_then(|l| l.reason.clone())
            .unwrap_or_default();
        return StageResult::ignored(format!("live stage skipped by case.toml: {reason}"));
    }
    if let Some(LiveQemu::Reject) = case.live_qemu() {
        return run_refusal_of_plan(case, snap, bin, rig, plan);
    }
    if !plan.host_resources.is_empty() {
        return StageResult::ignored(format!(
            "the planned argv needs host resources a test host lacks ({}); \
             [live] qemu = \"reject\" with QEMU's error checks its refusal instead",
            plan.host_resources.join(", ")
        ));
    }
    verify_accepted(snap, bin, rig, plan)
}

/// Starts an accepted plan's argv on the snapshot's binary and compares what QEMU built
/// with the plan: QEMU must start, its PCI functions must equal the predicted guest view,
/// every device must sit where the plan put it (bus, slot, function, CCW devno, zPCI
/// uid/fid). Used by the live stage and by `qconform explore`.
pub fn verify_accepted(
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    plan: &PlanView,
) -> StageResult {
    let numbering = numbering_for(&snap.arch);
    let args = live::live_args(&plan.argv, numbering);
    let run = {
        let _slot = rig.slots.acquire();
        rig.runtime.block_on(live::run_argv(
            &bin.program,
            &plan.argv,
            numbering,
            rig.timeouts(),
            rig.live_timeout,
        ))
    };
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            return qemu_error_result(&e, bin, &args, "the planned argv").with_argv(args);
        }
    };
    let line = argv_line(&program_name(bin), &run.args);
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    if !run.bridges_numbered {
        failures.push(format!(
            "the firmware had not numbered every bridge {:.1}s after QEMU started; \
             query-pci is incomplete",
            run.numbering_wait.as_secs_f64()
        ));
    }
    let Some(tree) = run.qtree.as_ref() else {
        return StageResult::fail(format!(
            "`info qtree` could not be parsed:\n{}\n\nargv: {line}",
            run.qtree_text
        ))
        .with_argv(run.args.clone())
        .with_stderr(&run.stderr);
    };
    let slot_pred = |t: &str| is_pcie_slot(&snap.snapshot, t);
    let scan = guest_scan(&plan.machine, &snap.arch);
    let observed: Result<Vec<ObservedFunction>, String> = if snap.arch == "s390x" {
        live::observe_zpci(&run.query_pci, tree).map(|(obs, zpci)| {
            failures.extend(compare_zpci(plan, &zpci));
            obs
        })
    } else {
        match numbering {
            Numbering::Firmware => {
                live::observe_numbered(&run.query_pci, Some(tree), &slot_pred, scan)
            }
            Numbering::Frozen => live::observe_frozen(&run.query_pci, tree, &slot_pred, scan),
        }
    };
    match observed {
        Err(e) => failures.push(format!("cannot read QEMU's PCI functions: {e}")),
        Ok(obs) => {
            if let Some(diff) = compare_view(&plan.guest_pci, &obs, "actual: QEMU") {
                failures.push(format!(
                    "QEMU's PCI functions differ from the predicted guest view ({}):\n{diff}",
                    source_of(snap, numbering)
                ));
            }
            for h in live::hidden_functions(&obs) {
                notes.push(format!("recorded difference: {h}"));
            }
        }
    }
    failures.extend(compare_placement(plan, tree));
    if !failures.is_empty() {
        failures.push(format!("argv: {line}"));
    }
    StageResult::from_checks(failures, notes)
        .with_argv(run.args.clone())
        .with_stderr(&run.stderr)
}

/// The guest's scanning rule for the machine, as the plan's guest view applies it, so that
/// QEMU's functions are read the way that guest enumerates them.
fn guest_scan(machine: &str, arch: &str) -> live::GuestScan {
    match qconform_plan::machine_visibility(machine, arch) {
        qconform_plan::Visibility::ScanFromFunctionZero => live::GuestScan {
            from_function_zero: true,
            domain_by_index: false,
        },
        qconform_plan::Visibility::DeviceTree => live::GuestScan {
            from_function_zero: false,
            domain_by_index: true,
        },
        qconform_plan::Visibility::IsolatedFunctions => live::GuestScan::default(),
    }
}

/// An accepted plan whose argv needs a host resource a test host lacks (a vfio host
/// function, a mediated device): `[live] qemu = "reject"` says so, and QEMU's own refusal
/// of the planned argv is checked (exit code 1, stderr matching the case's regex). The
/// argv starts at `-S`, so nothing runs.
fn run_refusal_of_plan(
    case: &Case,
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    plan: &PlanView,
) -> StageResult {
    let attempt = {
        let _slot = rig.slots.acquire();
        rig.runtime
            .block_on(live::try_argv(&bin.program, &plan.argv, rig.timeouts()))
    };
    let attempt = match attempt {
        Ok(a) => a,
        Err(e) => return qemu_error_result(&e, bin, &plan.argv, "the planned argv"),
    };
    check_refusal(case, snap, &program_name(bin), attempt, "the planned argv")
}

/// Checks that QEMU refused with exit code 1 and an error matching the case's regex.
fn check_refusal(
    case: &Case,
    snap: &LoadedSnapshot,
    name: &str,
    attempt: Attempt,
    what: &str,
) -> StageResult {
    match attempt {
        Attempt::Started { args, stderr } => StageResult::fail(format!(
            "case.toml says QEMU refuses {what} (live.qemu = \"reject\"), but QEMU started:\n{}",
            argv_line(name, &args)
        ))
        .with_argv(args)
        .with_stderr(&stderr),
        Attempt::Refused { args, exit, stderr } => {
            let mut failures = Vec::new();
            let want = case.live_exit();
            if !want.matches(exit.code, exit.signal) {
                failures.push(format!(
                    "QEMU ended with {exit}, expected {want} ([live] exit)"
                ));
            }
            if let Some(re) = case.live_error_for(&snap.id)
                && !re.is_match(&stderr)
            {
                failures.push(format!(
                    "QEMU's error does not match /{re}/ (live.error{}):\n{}",
                    if case.live_errors.is_empty() {
                        ""
                    } else {
                        " or live.errors"
                    },
                    stderr.trim_end()
                ));
            }
            if !failures.is_empty() {
                failures.push(format!("argv: {}", argv_line(name, &args)));
            }
            StageResult::from_checks(failures, Vec::new())
                .with_argv(args)
                .with_stderr(&stderr)
        }
    }
}

fn source_of(snap: &LoadedSnapshot, numbering: Numbering) -> &'static str {
    if snap.arch == "s390x" {
        "zPCI functions from info qtree, classes from query-pci"
    } else if numbering == Numbering::Firmware {
        "query-pci after the firmware numbered the bridges"
    } else {
        "info qtree at -S, numbered depth first as a guest kernel does"
    }
}

/// Compares the predicted guest view with observed functions: `None` when equal, the
/// diff of their lines when not.
pub fn compare_view(
    predicted: &[GuestPciFunction],
    observed: &[ObservedFunction],
    actual_name: &str,
) -> Option<String> {
    let mut exp_lines: Vec<String> = predicted.iter().map(ToString::to_string).collect();
    exp_lines.sort();
    let mut act_lines = live::render_observed(predicted, observed);
    act_lines.sort();
    if exp_lines == act_lines {
        return None;
    }
    let e = exp_lines.join("\n") + "\n";
    let a = act_lines.join("\n") + "\n";
    Some(unified_diff(
        &e,
        &a,
        "expected: plan guest view",
        actual_name,
    ))
}

/// Compares the zPCI uid/fid of the plan with QEMU's zpci devices.
fn compare_zpci(plan: &PlanView, zpci: &[live::ZpciObs]) -> Vec<String> {
    let by_target: BTreeMap<&str, &live::ZpciObs> =
        zpci.iter().map(|z| (z.target.as_str(), z)).collect();
    let mut out = Vec::new();
    for (alias, d) in &plan.devices {
        let (Some(uid), Some(fid)) = (d.zpci_uid, d.zpci_fid) else {
            continue;
        };
        match by_target.get(alias.as_str()) {
            None => out.push(format!(
                "zPCI: the plan gives {alias} uid {uid:#06x} fid {fid:#010x}, but QEMU has no zpci device targeting {alias}"
            )),
            Some(z) if z.uid != uid || z.fid != fid => out.push(format!(
                "zPCI: the plan gives {alias} uid {uid:#06x} fid {fid:#010x}, QEMU has uid {:#06x} fid {:#010x} ({})",
                z.uid,
                z.fid,
                if z.id.is_empty() { "auto-created".to_owned() } else { format!("zpci {}", z.id) }
            )),
            Some(_) => {}
        }
    }
    out
}

/// Compares where the plan put each device (QEMU bus id, slot, function; CCW devno) with
/// `info qtree`.
fn compare_placement(plan: &PlanView, tree: &QtreeBus) -> Vec<String> {
    let mut out = Vec::new();
    let all = tree.walk_devices();
    for (alias, d) in &plan.devices {
        // QEMU may give one id to two devices (a pxb and the bridge it creates behind
        // itself): the one where the plan put it counts.
        let candidates: Vec<_> = all.iter().filter(|(_, dev)| dev.id == *alias).collect();
        let placed = |bus: &QtreeBus, dev: &qconform_caps::QtreeDevice| {
            d.bus_alias.as_ref().is_none_or(|b| &bus.id == b)
                && match (d.slot, d.function, dev.pci_addr) {
                    (Some(s), Some(f), Some((qs, qf))) => (qs, qf) == (s, f),
                    _ => true,
                }
        };
        let Some((bus, dev)) = candidates
            .iter()
            .find(|(b, dev)| placed(b, dev))
            .or_else(|| candidates.first())
            .map(|(b, dev)| (*b, *dev))
        else {
            continue;
        };
        if d.kind == AddressKind::Pci {
            if let Some(want_bus) = &d.bus_alias
                && &bus.id != want_bus
            {
                out.push(format!(
                    "placement: the plan puts {alias} on bus {want_bus}, QEMU has it on {}",
                    bus.id
                ));
            }
            if let (Some(slot), Some(function), Some((s, f))) = (d.slot, d.function, dev.pci_addr)
                && (s, f) != (slot, function)
            {
                out.push(format!(
                    "placement: the plan puts {alias} at slot {slot:#04x} function {function}, \
                         QEMU has slot {s:#04x} function {f}"
                ));
            }
        }
        if let Some(devno) = &d.ccw_devno {
            let have = ["dev_id", "devno"]
                .iter()
                .find_map(|k| dev.properties.get(*k))
                .map(|v| live::qtree_string(v));
            match have {
                Some(h) if h.eq_ignore_ascii_case(devno) => {}
                Some(h) => out.push(format!(
                    "placement: the plan gives {alias} devno {devno}, QEMU has {h}"
                )),
                None => {}
            }
        }
    }
    out
}

fn run_rejected(
    case: &Case,
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    plan_error: &str,
) -> StageResult {
    let Some(live_spec) = case.spec.live.as_ref() else {
        return StageResult::ignored(
            "the plan rejects this domain and case.toml has no [live] argv to try on QEMU",
        );
    };
    let expected = match live_spec.qemu {
        None => {
            return StageResult::ignored(
                "the plan rejects this domain and case.toml has no [live] argv to try on QEMU",
            );
        }
        Some(LiveQemu::Skip) => {
            return StageResult::ignored(format!(
                "live stage skipped by case.toml: {}",
                live_spec.reason.as_deref().unwrap_or_default()
            ));
        }
        Some(q) => q,
    };
    let attempt = {
        let _slot = rig.slots.acquire();
        rig.runtime.block_on(live::try_argv(
            &bin.program,
            &live_spec.argv,
            rig.timeouts(),
        ))
    };
    let attempt = match attempt {
        Ok(a) => a,
        Err(e) => return qemu_error_result(&e, bin, &live_spec.argv, "[live] argv"),
    };
    let name = program_name(bin);
    match (attempt, expected) {
        (Attempt::Started { args, stderr }, _) => StageResult::pass(Some(format!(
            "recorded difference: QEMU accepts `{}`, which qconform rejects:\n{plan_error}",
            argv_line(&name, &args)
        )))
        .with_argv(args)
        .with_stderr(&stderr),
        (attempt, LiveQemu::Reject) => check_refusal(case, snap, &name, attempt, "[live] argv"),
        (Attempt::Refused { args, exit, stderr }, _) => StageResult::fail(format!(
            "case.toml says QEMU accepts [live] argv (live.qemu = \"accept\"), but QEMU refused it ({exit}):\n{}\n\nargv: {}",
            stderr.trim_end(),
            argv_line(&name, &args)
        ))
        .with_argv(args)
        .with_stderr(&stderr),
    }
}
