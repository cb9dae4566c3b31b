//! The trial list: every case × snapshot × stage, named
//! `<case>@<version>/<arch>[/<machine>]` with the stage as kind, each either runnable or
//! ignored with a reason decided when the list is built (capability gating, tier not
//! selected, binary or guest assets not installed).
//!
//! Two more kinds of plan trials carry no snapshot: one per case named `<case>` that
//! checks `expect/` as a whole (files no applicable snapshot produces), and one per case
//! or snapshot that failed to load, failing with the load error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use qconform_reports::results::{Event, Stage, TrialRecord};

use crate::binaries::Located;
use crate::case::{Case, Corpus, LiveQemu, Outcome, Xfail};
use crate::config::{Config, GuestSelection};
use crate::outcome::StageResult;
use crate::planstage::{self, PlanStageOptions};
use crate::rig::Rig;
use crate::snapshots::{LoadedSnapshot, Snapshots};
use crate::{gate, gueststage, livestage};

/// Cases booted by the default guest subset (on the newest QEMU of each arch). Guest
/// cases of an arch none of these covers add their first case by name, so every guest
/// arch is booted at least once.
pub const GUEST_SUBSET: &[&str] = &[
    // pc: the default bus of i440fx.
    "fit-default-bus-pc",
    // q35: root ports and a switch, numbered by SeaBIOS and kept by Linux.
    "pcie-switch-oracle",
    // q35: a conventional bus behind pcie-to-pci-bridge.
    "pcie-to-pci-bridge-e1000",
    // s390x: explicit and automatic zPCI uid/fid (domain = uid, function_id = fid).
    "zpci-explicit-uid-fid",
    "zpci-auto-uid-fid",
    // aarch64 virt: a switch numbered by the guest kernel.
    "pcie-virt-switch",
    // pseries: lone functions seen through the device tree, a PHB domain = its index.
    "pseries-lone-function",
    // riscv64 virt: a lone function hidden by the function-0 scan, a root port.
    "virt-lone-function-riscv64",
];

/// One trial.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    /// `<case>@<version>/<arch>[/<machine>]` (or the broken file for load errors).
    pub name: String,
    /// Stage (libtest-mimic kind).
    pub stage: Stage,
    /// Case directory name.
    pub case_name: String,
    /// The case (`None` for a load error).
    pub case: Option<Arc<Case>>,
    /// The snapshot (`None` for a load error).
    pub snap: Option<Arc<LoadedSnapshot>>,
    /// Canonical machine, when known before planning.
    pub machine: Option<String>,
    /// Why the trial does not run.
    pub ignore: Option<String>,
    /// Why the corpus or snapshot could not be loaded (the trial fails with it).
    pub load_error: Option<String>,
    /// Set on the case-level trial (named `<case>`, no snapshot) that checks `expect/` for
    /// files no applicable snapshot produces: the stems of the applicable snapshots.
    pub orphan_stems: Option<Arc<BTreeSet<String>>>,
    /// Stems of every loaded snapshot (goldens of others are not orphans).
    pub known_stems: Option<Arc<BTreeSet<String>>>,
    /// Plan trials of a snapshot no case has goldens of: the snapshot compared instead.
    pub baseline: Option<Arc<LoadedSnapshot>>,
    /// QEMU binary (live and guest).
    pub binary: Option<Located>,
}

impl TrialSpec {
    /// libtest-mimic kind.
    pub fn kind(&self) -> &'static str {
        self.stage.as_str()
    }

    /// Name as libtest-mimic lists it: `[kind] name`.
    pub fn full_name(&self) -> String {
        format!("[{}] {}", self.kind(), self.name)
    }

    fn base_record(&self) -> TrialRecord {
        TrialRecord {
            record_type: "test".into(),
            event: Event::Ignored,
            name: self.name.clone(),
            exec_time: 0.0,
            stage: self.stage,
            case: self.case_name.clone(),
            qemu_version: self
                .snap
                .as_ref()
                .map(|s| s.version.clone())
                .unwrap_or_default(),
            arch: self
                .snap
                .as_ref()
                .map(|s| s.arch.clone())
                .unwrap_or_default(),
            machine: self.machine.clone(),
            xfail: false,
            rig_error: false,
            message: None,
            argv: Vec::new(),
            stderr_tail: None,
        }
    }

    /// The record of a trial that is not run.
    pub fn ignored_record(&self) -> TrialRecord {
        let mut r = self.base_record();
        r.message = self.ignore.clone();
        r
    }

    /// Runs the trial (an ignored trial is not run: its record says why).
    pub fn run(&self, cfg: &Config, rig: Option<&Rig>) -> TrialRecord {
        let start = Instant::now();
        let (result, xfail) = self.run_stage(cfg, rig);
        let mut r = self.base_record();
        r.exec_time = start.elapsed().as_secs_f64();
        r.event = result.event;
        r.message = result.message;
        r.rig_error = result.rig_error;
        r.argv = result.argv;
        r.stderr_tail = result.stderr_tail;
        r.xfail = xfail;
        r
    }

    fn run_stage(&self, cfg: &Config, rig: Option<&Rig>) -> (StageResult, bool) {
        if let Some(e) = &self.load_error {
            return (StageResult::fail(e.clone()), false);
        }
        if let Some(reason) = &self.ignore {
            return (StageResult::ignored(reason.clone()), false);
        }
        if let (Some(case), None, Some(stems)) = (&self.case, &self.snap, &self.orphan_stems) {
            return (
                planstage::run_case_level(
                    case,
                    stems,
                    self.known_stems.as_deref(),
                    cfg.bless,
                    &cfg.hint_for(&case.name),
                ),
                false,
            );
        }
        let (Some(case), Some(snap)) = (&self.case, &self.snap) else {
            return (StageResult::fail("trial without case or snapshot"), false);
        };
        let result = match self.stage {
            Stage::Plan => {
                let hint = cfg.hint_for(&case.name);
                planstage::run(
                    case,
                    snap,
                    PlanStageOptions {
                        bless: cfg.bless,
                        hint: &hint,
                        trial_machine: self.machine.as_deref(),
                        baseline: self.baseline.as_deref(),
                    },
                )
            }
            Stage::Live | Stage::Guest => {
                let (Some(rig), Some(bin)) = (rig, &self.binary) else {
                    return (
                        StageResult::rig("no QEMU rig was set up for this run"),
                        false,
                    );
                };
                if self.stage == Stage::Live {
                    livestage::run(case, snap, bin, rig)
                } else {
                    gueststage::run(case, snap, bin, rig)
                }
            }
        };
        apply_xfail(result, case.xfail_for(self.stage, &snap.id))
    }
}

/// Turns a stage result into the final one under an `[[xfail]]` entry: a failure becomes
/// an expected failure (passes, `xfail` set), a pass becomes a failure telling the author
/// to remove the entry. Rig errors and ignored trials are left alone.
pub fn apply_xfail(r: StageResult, x: Option<&Xfail>) -> (StageResult, bool) {
    let Some(x) = x else {
        return (r, false);
    };
    if r.event == Event::Ignored || r.rig_error {
        return (r, false);
    }
    let entry = format!(
        "[[xfail]] stage = \"{}\", snapshots = \"{}\"",
        x.stage.as_str(),
        x.snapshots.text
    );
    if r.event == Event::Failed {
        let mut out = r;
        out.event = Event::Ok;
        out.message = Some(format!(
            "expected failure ({entry}; reason: {}):\n{}",
            x.reason,
            out.message.unwrap_or_default()
        ));
        return (out, true);
    }
    let mut out = r;
    out.event = Event::Failed;
    out.message = Some(format!(
        "this trial passed, but case.toml expects it to fail ({entry}; reason: {}). \
         The expected failure is fixed: remove the entry from case.toml.{}",
        x.reason,
        out.message.map(|m| format!("\n{m}")).unwrap_or_default()
    ));
    (out, false)
}

fn trial_name(case: &str, snap: &LoadedSnapshot, machine: Option<&str>) -> String {
    match machine {
        Some(m) => format!("{case}@{}/{}/{m}", snap.version, snap.arch),
        None => format!("{case}@{}/{}", snap.version, snap.arch),
    }
}

/// Which guest cases run in the default subset on a snapshot.
fn in_guest_subset(
    case: &Case,
    snap: &LoadedSnapshot,
    snaps: &Snapshots,
    guest_cases_by_arch: &BTreeMap<String, Vec<String>>,
) -> bool {
    if snaps
        .newest_of_arch(&snap.arch)
        .is_none_or(|n| n.id != snap.id)
    {
        return false;
    }
    if GUEST_SUBSET.contains(&case.name.as_str()) {
        return true;
    }
    let Some(names) = guest_cases_by_arch.get(&snap.arch) else {
        return false;
    };
    let covered = names.iter().any(|n| GUEST_SUBSET.contains(&n.as_str()));
    !covered && names.first() == Some(&case.name)
}

/// Builds the trial list. `rig` is needed to locate binaries for the live and guest
/// stages (without it those trials are ignored).
pub fn build_trials(
    cfg: &Config,
    corpus: &Corpus,
    snaps: &Snapshots,
    rig: Option<&Rig>,
) -> Vec<TrialSpec> {
    let mut out = Vec::new();
    for e in &corpus.errors {
        out.push(TrialSpec {
            name: e.case.clone(),
            stage: Stage::Plan,
            case_name: e.case.clone(),
            case: None,
            snap: None,
            machine: None,
            ignore: None,
            load_error: Some(e.to_string()),
            orphan_stems: None,
            known_stems: None,
            baseline: None,
            binary: None,
        });
    }
    for e in &snaps.errors {
        out.push(TrialSpec {
            name: format!("capsdata/{}", e.file),
            stage: Stage::Plan,
            case_name: String::new(),
            case: None,
            snap: None,
            machine: None,
            ignore: None,
            load_error: Some(format!("snapshot {e}")),
            orphan_stems: None,
            known_stems: None,
            baseline: None,
            binary: None,
        });
    }
    // Guest cases per arch (for the subset's fallback), in name order.
    let mut guest_cases_by_arch: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for case in &corpus.cases {
        if !case.spec.expect.guest {
            continue;
        }
        for snap in &snaps.snapshots {
            if gate::targets_arch(case, &snap.snapshot)
                && gate::applies(case, &snap.snapshot).is_ok()
            {
                let v = guest_cases_by_arch.entry(snap.arch.clone()).or_default();
                if !v.contains(&case.name) {
                    v.push(case.name.clone());
                }
            }
        }
    }
    // Snapshots no case has goldens of (a caps directory with a snapshot never blessed):
    // their plans are compared with a baseline's goldens instead of failing as missing.
    let known_stems: Arc<BTreeSet<String>> =
        Arc::new(snaps.snapshots.iter().map(|s| s.golden_stem()).collect());
    let without_goldens = baselines_for_unblessed(corpus, snaps);
    let mut located: BTreeMap<String, Result<Located, String>> = BTreeMap::new();
    let mut locate = |snap: &LoadedSnapshot| -> Result<Located, String> {
        located
            .entry(snap.id.clone())
            .or_insert_with(|| match rig {
                Some(r) => r.binaries.locate(snap),
                None => Err("binary not installed: live and guest tiers are not set up".into()),
            })
            .clone()
    };
    for case in &corpus.cases {
        let case = Arc::new(case.clone());
        let gates: Vec<(Arc<LoadedSnapshot>, Result<(), String>)> = snaps
            .snapshots
            .iter()
            .filter(|s| gate::targets_arch(&case, &s.snapshot))
            .map(|s| (Arc::clone(s), gate::applies(&case, &s.snapshot)))
            .collect();
        let stems: Arc<BTreeSet<String>> = Arc::new(
            gates
                .iter()
                .filter(|(_, g)| g.is_ok())
                .map(|(s, _)| s.golden_stem())
                .collect(),
        );
        if cfg.tiers.plan {
            out.push(TrialSpec {
                name: case.name.clone(),
                stage: Stage::Plan,
                case_name: case.name.clone(),
                case: Some(Arc::clone(&case)),
                snap: None,
                machine: None,
                ignore: None,
                load_error: None,
                orphan_stems: Some(Arc::clone(&stems)),
                known_stems: Some(Arc::clone(&known_stems)),
                baseline: None,
                binary: None,
            });
        }
        for (snap, gate_result) in &gates {
            let machine = gate::canonical_machine(&case, &snap.snapshot);
            let name = trial_name(&case.name, snap, machine.as_deref());
            let base = TrialSpec {
                name,
                stage: Stage::Plan,
                case_name: case.name.clone(),
                case: Some(Arc::clone(&case)),
                snap: Some(Arc::clone(snap)),
                machine: machine.clone(),
                ignore: gate_result.as_ref().err().cloned(),
                load_error: None,
                orphan_stems: None,
                known_stems: None,
                baseline: without_goldens.get(&snap.id).and_then(Clone::clone),
                binary: None,
            };
            if cfg.tiers.plan {
                out.push(base.clone());
            }
            if cfg.tiers.live {
                let mut t = base.clone();
                t.stage = Stage::Live;
                if t.ignore.is_none() {
                    t.ignore = live_ignore(&case);
                }
                if t.ignore.is_none() {
                    match locate(snap) {
                        Ok(b) => t.binary = Some(b),
                        Err(e) => t.ignore = Some(e),
                    }
                }
                out.push(t);
            }
            if cfg.tiers.guest && case.spec.expect.guest {
                let mut t = base.clone();
                t.stage = Stage::Guest;
                if t.ignore.is_none() {
                    t.ignore = guest_ignore(
                        cfg,
                        &case,
                        snap,
                        machine.as_deref(),
                        snaps,
                        &guest_cases_by_arch,
                    );
                }
                if t.ignore.is_none() {
                    match locate(snap) {
                        Ok(b) => t.binary = Some(b),
                        Err(e) => t.ignore = Some(e),
                    }
                }
                out.push(t);
            }
        }
    }
    out
}

/// For each loaded snapshot of which no case has a golden: the baseline its plans are
/// compared with (`None` when no blessed snapshot of the arch qualifies).
fn baselines_for_unblessed(
    corpus: &Corpus,
    snaps: &Snapshots,
) -> BTreeMap<String, Option<Arc<LoadedSnapshot>>> {
    let blessed: Vec<Arc<LoadedSnapshot>> = snaps
        .snapshots
        .iter()
        .filter(|s| {
            let stem = s.golden_stem();
            corpus
                .cases
                .iter()
                .any(|c| crate::qualify::has_goldens(&c.dir, &stem))
        })
        .cloned()
        .collect();
    snaps
        .snapshots
        .iter()
        .filter(|s| !blessed.iter().any(|b| b.id == s.id))
        .map(|s| {
            let base =
                crate::qualify::auto_baseline(s.snapshot.probe.qemu_version, &s.arch, &blessed);
            (s.id.clone(), base)
        })
        .collect()
}

fn live_ignore(case: &Case) -> Option<String> {
    match (case.spec.expect.outcome, case.live_qemu()) {
        (_, Some(LiveQemu::Skip)) => Some(format!(
            "live stage skipped by case.toml: {}",
            case.spec
                .live
                .as_ref()
                .and_then(|l| l.reason.as_deref())
                .unwrap_or_default()
        )),
        (Outcome::Reject, None) => Some(
            "the case expects the plan to reject the domain and has no [live] argv to try on QEMU"
                .into(),
        ),
        _ => None,
    }
}

fn guest_ignore(
    cfg: &Config,
    case: &Case,
    snap: &LoadedSnapshot,
    machine: Option<&str>,
    snaps: &Snapshots,
    guest_cases_by_arch: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    if !machine.is_some_and(|m| gueststage::machine_supported(&snap.arch, m)) {
        return Some(format!(
            "the guest tier boots x86_64 pc/q35, s390x s390-ccw-virtio, aarch64 virt, ppc64 pseries and riscv64 virt; not {} {}",
            snap.arch,
            machine.unwrap_or("(unknown machine)")
        ));
    }
    match cfg.guest {
        GuestSelection::None => {
            return Some("guest tier not selected (QCONFORM_GUEST=none)".into());
        }
        GuestSelection::Subset => {
            if !in_guest_subset(case, snap, snaps, guest_cases_by_arch) {
                return Some(
                    "not in the default guest subset (QCONFORM_GUEST=all or `qconform run --guest all` boots it)"
                        .into(),
                );
            }
        }
        GuestSelection::All => {}
    }
    let Some(root) = cfg.guest_root.as_deref() else {
        return Some("guest assets not installed: no QCONFORM_GUEST_ROOT or HOME".into());
    };
    qconform_qemu::guest::assets(root, &snap.arch).err()
}

/// Counts of a finished run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed (product).
    pub failed: usize,
    /// Failed (rig).
    pub rig: usize,
    /// Ignored.
    pub ignored: usize,
    /// Expected failures.
    pub xfail: usize,
}

impl Counts {
    /// Adds one record.
    pub fn add(&mut self, r: &TrialRecord) {
        match r.event {
            Event::Ok if r.xfail => self.xfail += 1,
            Event::Ok => self.passed += 1,
            Event::Failed if r.rig_error => self.rig += 1,
            Event::Failed => self.failed += 1,
            Event::Ignored => self.ignored += 1,
        }
    }
}
