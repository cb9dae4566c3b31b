//! `qconform explore`: differential testing of the plan against the real binaries with
//! random domains nobody wrote.
//!
//! For each snapshot, [`generate::generate`] makes seeded random domains from the snapshot's
//! own vocabulary; [`verify::verify`] plans each one and checks the answer on the
//! snapshot's binary (the live stage's checks); every disagreement is minimised
//! ([`minimize`]) and written as a case directory skeleton ([`casedir`]). Identical
//! disagreements (same class and normalised message on one snapshot) are minimised once.
//!
//! Domains depend only on (seed, snapshot, index), never on `--jobs` or timing; with a
//! time budget the indices checked are a prefix `0..n`.

pub mod casedir;
pub mod generate;
pub mod minimize;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::binaries::Located;
use crate::rig::Rig;
use crate::snapshots::LoadedSnapshot;
use verify::{Class, Verdict};

/// How many domains to check per snapshot.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Exactly this many per snapshot.
    Count(u64),
    /// Until this instant (shared by all snapshots; each gets an equal share of what is
    /// left when it starts).
    Until(Instant),
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Run seed.
    pub seed: u64,
    /// Domains per snapshot.
    pub budget: Budget,
    /// Where minimised cases go (`None`: not written).
    pub out: Option<PathBuf>,
    /// Most launches spent minimising one disagreement.
    pub minimize_budget: usize,
    /// Worker threads (and concurrent QEMU processes, through the rig).
    pub jobs: usize,
    /// Set from outside (Ctrl-C) to stop after the domains in flight; their QEMU
    /// processes are stopped as usual.
    pub interrupt: std::sync::Arc<AtomicBool>,
}

/// Counts of one snapshot (or a whole run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Domains generated.
    pub generated: u64,
    /// Accepted by the plan.
    pub accepted: u64,
    /// Refused by the plan.
    pub refused: u64,
    /// Accepted plans QEMU started.
    pub started: u64,
    /// Plan and QEMU agreed (accepted and matched, or refused on both sides).
    pub agreed: u64,
    /// Accepted plans needing host resources (not started).
    pub not_runnable: u64,
    /// Refusals with no QEMU-side form (not checked on QEMU).
    pub unchecked_refusals: u64,
    /// Disagreements (every domain that disagreed, before de-duplication).
    pub disagreements: u64,
    /// Rig failures.
    pub rig_errors: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.generated += o.generated;
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.started += o.started;
        self.agreed += o.agreed;
        self.not_runnable += o.not_runnable;
        self.unchecked_refusals += o.unchecked_refusals;
        self.disagreements += o.disagreements;
        self.rig_errors += o.rig_errors;
    }

    /// JSON object of the counts.
    pub fn to_json(&self) -> Value {
        json!({
            "generated": self.generated,
            "accepted": self.accepted,
            "refused": self.refused,
            "started": self.started,
            "agreed": self.agreed,
            "not_runnable": self.not_runnable,
            "unchecked_refusals": self.unchecked_refusals,
            "disagreements": self.disagreements,
            "rig_errors": self.rig_errors,
        })
    }
}

/// One distinct disagreement, minimised.
#[derive(Debug, Clone)]
pub struct Disagreement {
    /// Snapshot id.
    pub snapshot: String,
    /// Kind.
    pub class: Class,
    /// Normalised key.
    pub key: String,
    /// Message of the minimised domain (of the original one when minimisation lost it).
    pub message: String,
    /// Domain index of the first domain that showed it.
    pub index: u64,
    /// Domains of this run that showed it.
    pub occurrences: u64,
    /// Minimised domain XML.
    pub domain_xml: String,
    /// Case directory written, if any.
    pub case_dir: Option<PathBuf>,
    /// Devices before and after minimisation.
    pub devices: (usize, usize),
}

impl Disagreement {
    /// JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "snapshot": self.snapshot,
            "class": self.class.as_str(),
            "key": self.key,
            "message": self.message,
            "index": self.index,
            "occurrences": self.occurrences,
            "devices_before": self.devices.0,
            "devices_after": self.devices.1,
            "case_dir": self.case_dir.as_ref().map(|p| p.display().to_string()),
        })
    }
}

/// Result of one snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    /// Snapshot id.
    pub snapshot: String,
    /// Counts.
    pub counts: Counts,
    /// Distinct disagreements.
    pub disagreements: Vec<Disagreement>,
    /// First rig error, if any.
    pub rig_error: Option<String>,
    /// Why the snapshot was skipped (no binary, no machine the generator knows).
    pub skipped: Option<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Per snapshot.
    pub snapshots: Vec<SnapshotReport>,
}

impl Report {
    /// Totals over all snapshots.
    pub fn totals(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.snapshots {
            c.add(&s.counts);
        }
        c
    }

    /// Every distinct disagreement.
    pub fn disagreements(&self) -> impl Iterator<Item = &Disagreement> {
        self.snapshots.iter().flat_map(|s| s.disagreements.iter())
    }

    /// Number of distinct disagreements.
    pub fn distinct_disagreements(&self) -> usize {
        self.disagreements().count()
    }

    /// The one JSON object of `--format json` (and of the nightly report).
    pub fn to_json(&self) -> Value {
        let mut v = self.totals().to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("seed".into(), json!(self.seed));
            o.insert(
                "distinct_disagreements".into(),
                json!(self.distinct_disagreements()),
            );
            o.insert(
                "snapshots".into(),
                Value::Array(
                    self.snapshots
                        .iter()
                        .map(|s| {
                            let mut c = s.counts.to_json();
                            if let Some(m) = c.as_object_mut() {
                                m.insert("snapshot".into(), json!(s.snapshot));
                                m.insert("seconds".into(), json!(s.seconds));
                                m.insert("skipped".into(), json!(s.skipped));
                                m.insert("rig_error".into(), json!(s.rig_error));
                            }
                            c
                        })
                        .collect(),
                ),
            );
            o.insert(
                "disagreement_list".into(),
                Value::Array(self.disagreements().map(Disagreement::to_json).collect()),
            );
        }
        v
    }
}

/// Progress callbacks (a progress bar on a TTY, nothing otherwise).
pub trait Progress: Sync {
    /// A snapshot starts; `total` domains when known.
    fn start(&self, snapshot: &str, total: Option<u64>);
    /// One domain done.
    fn tick(&self, counts: &Counts);
    /// A message line (a new disagreement).
    fn line(&self, text: &str);
}

/// Progress that shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn tick(&self, _: &Counts) {}
    fn line(&self, _: &str) {}
}

/// Explores one snapshot on its binary.
pub fn explore_snapshot(
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    settings: &Settings,
    deadline: Option<Instant>,
    progress: &dyn Progress,
) -> SnapshotReport {
    let started_at = Instant::now();
    let id = snap.snapshot.id();
    if generate::machines(&snap.snapshot).is_empty() {
        return SnapshotReport {
            snapshot: id,
            counts: Counts::default(),
            disagreements: Vec::new(),
            rig_error: None,
            skipped: Some("no machine the generator knows started on this binary".into()),
            seconds: 0.0,
        };
    }
    let count = match settings.budget {
        Budget::Count(n) => Some(n),
        Budget::Until(_) => None,
    };
    progress.start(&id, count);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let counts = Mutex::new(Counts::default());
    let found: Mutex<BTreeMap<(Class, String), Disagreement>> = Mutex::new(BTreeMap::new());
    let rig_error: Mutex<Option<String>> = Mutex::new(None);
    let worker = || {
        loop {
            if stop.load(Ordering::SeqCst) || settings.interrupt.load(Ordering::SeqCst) {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let index = next.fetch_add(1, Ordering::SeqCst);
            if count.is_some_and(|n| index >= n) {
                break;
            }
            let Some(dom) = generate::generate(&snap.snapshot, settings.seed, index) else {
                break;
            };
            let xml = dom.to_xml();
            let mut verdict = verify::verify(&xml, snap, bin, rig);
            if matches!(verdict, Verdict::Rig(_)) {
                // One retry: a QMP timeout on a loaded machine is not a broken rig.
                verdict = verify::verify(&xml, snap, bin, rig);
            }
            let mut c = Counts {
                generated: 1,
                ..Counts::default()
            };
            match &verdict {
                Verdict::Agreed => {
                    c.accepted = 1;
                    c.started = 1;
                    c.agreed = 1;
                }
                Verdict::NotRunnable(_) => {
                    c.accepted = 1;
                    c.not_runnable = 1;
                }
                Verdict::RefusalConfirmed(_) => {
                    c.refused = 1;
                    c.agreed = 1;
                }
                Verdict::Refused(_) => {
                    c.refused = 1;
                    c.unchecked_refusals = 1;
                }
                Verdict::Disagreement {
                    started, accepted, ..
                } => {
                    c.accepted = u64::from(*accepted);
                    c.refused = u64::from(!*accepted);
                    c.started = u64::from(*started);
                    c.disagreements = 1;
                }
                Verdict::Rig(msg) => {
                    c.rig_errors = 1;
                    let mut r = rig_error.lock().unwrap_or_else(|e| e.into_inner());
                    if r.is_none() {
                        *r = Some(msg.clone());
                    }
                    // A broken rig makes every further answer meaningless.
                    stop.store(true, Ordering::SeqCst);
                }
            }
            if let Verdict::Disagreement {
                class,
                key,
                message,
                ..
            } = verdict
            {
                let is_new = {
                    let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                    match f.get_mut(&(class, key.clone())) {
                        Some(d) => {
                            d.occurrences += 1;
                            false
                        }
                        None => {
                            // Placeholder so that a concurrent twin is counted, not minimised.
                            f.insert(
                                (class, key.clone()),
                                Disagreement {
                                    snapshot: id.clone(),
                                    class,
                                    key: key.clone(),
                                    message: message.clone(),
                                    index,
                                    occurrences: 1,
                                    domain_xml: xml.clone(),
                                    case_dir: None,
                                    devices: (dom.devices.len(), dom.devices.len()),
                                },
                            );
                            true
                        }
                    }
                };
                if is_new {
                    progress.line(&format!(
                        "{id}: {} disagreement in domain {index}: {}",
                        class.as_str(),
                        key
                    ));
                    let d = minimise_one(snap, bin, rig, settings, &dom, class, &key, &message);
                    let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(slot) = f.get_mut(&(class, key)) {
                        slot.message = d.1;
                        slot.domain_xml = d.0.to_xml();
                        slot.devices.1 = d.0.devices.len();
                        if let Some(out) = &settings.out {
                            let finding = casedir::Finding {
                                snapshot: &id,
                                arch: &snap.arch,
                                class,
                                message: &slot.message,
                                key: &slot.key,
                                accepted: d.2,
                                seed: settings.seed,
                                index,
                                devices: slot.devices,
                            };
                            match casedir::write_case(out, &finding, &slot.domain_xml) {
                                Ok(dir) => slot.case_dir = Some(dir),
                                Err(e) => progress.line(&format!(
                                    "cannot write the case of {id} domain {index} under {}: {e}",
                                    out.display()
                                )),
                            }
                        }
                    }
                }
            }
            let mut all = counts.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&c);
            progress.tick(&all);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..settings.jobs.max(1) {
            s.spawn(worker);
        }
    });
    let counts = counts.into_inner().unwrap_or_else(|e| e.into_inner());
    let disagreements = found
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect();
    SnapshotReport {
        snapshot: id,
        counts,
        disagreements,
        rig_error: rig_error.into_inner().unwrap_or_else(|e| e.into_inner()),
        skipped: None,
        seconds: started_at.elapsed().as_secs_f64(),
    }
}

/// Minimises one disagreement: (domain, message, whether the plan accepts it).
#[allow(clippy::too_many_arguments)]
fn minimise_one(
    snap: &LoadedSnapshot,
    bin: &Located,
    rig: &Rig,
    settings: &Settings,
    dom: &generate::GenDomain,
    class: Class,
    key: &str,
    message: &str,
) -> (generate::GenDomain, String, bool) {
    let mut budget = minimize::Budget::new(settings.minimize_budget);
    let min = minimize::minimize_domain(dom, &mut budget, &mut |d: &generate::GenDomain| {
        !settings.interrupt.load(Ordering::SeqCst)
            && matches!(
                verify::verify(&d.to_xml(), snap, bin, rig),
                Verdict::Disagreement { class: c, key: k, .. } if c == class && k == key
            )
    });
    // The message of the minimised domain itself; a disagreement that does not
    // reproduce keeps the original domain.
    match verify::verify(&min.to_xml(), snap, bin, rig) {
        Verdict::Disagreement {
            class: c,
            key: k,
            message: m,
            accepted,
            ..
        } if c == class && k == key => (min, m, accepted),
        _ => (
            dom.clone(),
            message.to_owned(),
            !matches!(class, Class::QemuAccepted | Class::PlanPanic),
        ),
    }
}

/// The relative path of a case directory from a report directory, for links.
pub fn relative_to(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Explores every snapshot in order, each on the binary the snapshot was recorded from.
/// A snapshot whose binary cannot be found is a rig error of that snapshot (the others
/// still run). With a time budget each snapshot gets an equal share of what is left.
pub fn explore(
    snaps: &[std::sync::Arc<LoadedSnapshot>],
    rig: &Rig,
    settings: &Settings,
    progress: &dyn Progress,
) -> Report {
    let mut out = Vec::new();
    for (i, snap) in snaps.iter().enumerate() {
        if settings.interrupt.load(Ordering::SeqCst) {
            break;
        }
        let deadline = match settings.budget {
            Budget::Count(_) => None,
            Budget::Until(until) => {
                let now = Instant::now();
                let left = until.saturating_duration_since(now);
                let share = left / u32::try_from(snaps.len() - i).unwrap_or(1).max(1);
                Some(now + share)
            }
        };
        match rig.binaries.locate(snap) {
            Ok(bin) => out.push(explore_snapshot(
                snap, &bin, rig, settings, deadline, progress,
            )),
            Err(e) => {
                progress.line(&format!("{}: {e}", snap.snapshot.id()));
                out.push(SnapshotReport {
                    snapshot: snap.snapshot.id(),
                    counts: Counts {
                        rig_errors: 1,
                        ..Counts::default()
                    },
                    disagreements: Vec::new(),
                    rig_error: Some(e),
                    skipped: None,
                    seconds: 0.0,
                });
            }
        }
    }
    Report {
        seed: settings.seed,
        snapshots: out,
    }
}

/// The text summary `qconform explore` prints.
pub fn summary_text(report: &Report, base: Option<&Path>) -> String {
    let mut t = String::new();
    for s in &report.snapshots {
        let c = &s.counts;
        if let Some(why) = &s.skipped {
            t.push_str(&format!("{:<16} skipped: {why}\n", s.snapshot));
            continue;
        }
        t.push_str(&format!(
            "{:<16} generated {:>4}  accepted {:>4}  refused {:>4}  started {:>4}  agreed {:>4}  disagreements {:>3}  ({:.0}s)\n",
            s.snapshot, c.generated, c.accepted, c.refused, c.started, c.agreed, c.disagreements, s.seconds
        ));
        if let Some(e) = &s.rig_error {
            t.push_str(&format!(
                "  rig error: {}\n",
                e.lines().next().unwrap_or_default()
            ));
        }
    }
    let c = report.totals();
    t.push_str(&format!(
        "\nseed {}: generated {}, accepted {}, refused {}, started {}, agreed {}, disagreements {} ({} distinct)\n",
        report.seed,
        c.generated,
        c.accepted,
        c.refused,
        c.started,
        c.agreed,
        c.disagreements,
        report.distinct_disagreements()
    ));
    if c.not_runnable + c.unchecked_refusals > 0 {
        t.push_str(&format!(
            "not started (need host resources): {}; refusals with no QEMU-side form: {}\n",
            c.not_runnable, c.unchecked_refusals
        ));
    }
    for d in report.disagreements() {
        t.push_str(&format!(
            "\n{} {} (domain {}, seen {}x, {} -> {} devices)\n  {}\n",
            d.snapshot,
            d.class.as_str(),
            d.index,
            d.occurrences,
            d.devices.0,
            d.devices.1,
            d.key
        ));
        if let Some(dir) = &d.case_dir {
            let shown = base.map_or_else(|| dir.display().to_string(), |b| relative_to(dir, b));
            t.push_str(&format!("  case: {shown}\n"));
        }
    }
    t
}
