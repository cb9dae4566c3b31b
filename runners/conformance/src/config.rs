//! Run configuration: where the corpus, snapshots, results and QEMU live, and what to run.
//! Built from the environment by the test target and from flags by `qconform run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bless switch.
pub const BLESS_ENV: &str = "QCONFORM_BLESS";
/// Guest selection (`subset`, `all`, `none`).
pub const GUEST_ENV: &str = "QCONFORM_GUEST";
/// Tier selection (comma list of `plan`, `live`, `guest`).
pub const TIERS_ENV: &str = "QCONFORM_TIERS";
/// Results directory.
pub const RESULTS_ENV: &str = "QCONFORM_RESULTS_DIR";
/// Corpus directory.
pub const CASES_ENV: &str = "QCONFORM_CASES_DIR";
/// Snapshot directory.
pub const CAPS_ENV: &str = "QCONFORM_CAPS_DIR";
/// Guest assets root.
pub const GUEST_ROOT_ENV: &str = "QCONFORM_GUEST_ROOT";
/// Maximum concurrent QEMU processes.
pub const QEMU_JOBS_ENV: &str = "QCONFORM_QEMU_JOBS";
/// Live stage deadline in seconds.
pub const LIVE_TIMEOUT_ENV: &str = "QCONFORM_LIVE_TIMEOUT";
/// Guest stage deadline in seconds.
pub const GUEST_TIMEOUT_ENV: &str = "QCONFORM_GUEST_TIMEOUT";

/// Which guest trials run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestSelection {
    /// The fixed subset (a few cases, newest version per arch).
    Subset,
    /// Every guest case on every snapshot.
    All,
    /// None.
    None,
}

impl GuestSelection {
    /// Parses `subset`, `all` or `none`.
    pub fn parse(s: &str) -> Result<GuestSelection, String> {
        match s {
            "subset" => Ok(GuestSelection::Subset),
            "all" => Ok(GuestSelection::All),
            "none" => Ok(GuestSelection::None),
            other => Err(format!(
                "guest selection {other:?}: expected subset, all or none"
            )),
        }
    }

    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestSelection::Subset => "subset",
            GuestSelection::All => "all",
            GuestSelection::None => "none",
        }
    }
}

/// Which stages build trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    /// Offline replay.
    pub plan: bool,
    /// Real QEMU.
    pub live: bool,
    /// Guest boots.
    pub guest: bool,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            plan: true,
            live: true,
            guest: true,
        }
    }
}

impl Tiers {
    /// Parses a comma list (`plan,live`).
    pub fn parse(s: &str) -> Result<Tiers, String> {
        let mut t = Tiers {
            plan: false,
            live: false,
            guest: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "plan" => t.plan = true,
                "live" => t.live = true,
                "guest" => t.guest = true,
                other => {
                    return Err(format!(
                        "tier {other:?}: expected a comma list of plan, live, guest"
                    ));
                }
            }
        }
        if !(t.plan || t.live || t.guest) {
            return Err(format!("tier list {s:?} selects nothing"));
        }
        Ok(t)
    }
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Corpus directory (`cases/`).
    pub cases_dir: PathBuf,
    /// Snapshot directory (`capsdata/`).
    pub caps_dir: PathBuf,
    /// Where trial records are written.
    pub results_dir: PathBuf,
    /// Where caches (binary hashes) are kept (default `$HOME/.cache/qconform`).
    pub cache_dir: PathBuf,
    /// Rewrite goldens instead of comparing.
    pub bless: bool,
    /// Stages to build trials for.
    pub tiers: Tiers,
    /// Guest trial selection.
    pub guest: GuestSelection,
    /// Matrix root (`matrix.tsv`), when known.
    pub matrix_root: Option<PathBuf>,
    /// Guest assets root (`<arch>/{vmlinuz,initrd.gz}`), when known.
    pub guest_root: Option<PathBuf>,
    /// Maximum QEMU processes at once, across trials.
    pub qemu_slots: usize,
    /// Deadline of one live trial's QEMU session phases.
    pub live_timeout: Duration,
    /// Deadline of one guest boot.
    pub guest_timeout: Duration,
    /// How to bless, shown in golden failures (`{case}` is replaced by the case name).
    pub bless_hint: String,
}

/// Whether an env var is set to a true value (`1`, `true`, `yes`).
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_secs(name: &str, default: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{name}={v:?}: expected a positive number of seconds")),
        _ => Ok(Duration::from_secs(default)),
    }
}

/// Default number of concurrent QEMU processes: the number of cores.
pub fn default_qemu_slots() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Where caches (binary hashes) live by default: `$HOME/.cache/qconform`, beside the
/// matrix, so every checkout and test process of the machine shares them.
pub fn default_cache_dir() -> Option<PathBuf> {
    env_path("HOME").map(|h| h.join(".cache/qconform"))
}

/// Default guest assets root: `$QCONFORM_GUEST_ROOT`, else `$HOME/.cache/qconform/guest`.
pub fn default_guest_root() -> Option<PathBuf> {
    env_path(GUEST_ROOT_ENV).or_else(|| env_path("HOME").map(|h| h.join(".cache/qconform/guest")))
}

impl Config {
    /// Defaults for a workspace checkout, overridden by the `QCONFORM_*` environment.
    /// `target_dir` is cargo's target directory (results and caches go below it).
    pub fn from_env(workspace: &Path, target_dir: &Path) -> Result<Config, String> {
        let guest = match std::env::var(GUEST_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                GuestSelection::parse(v.trim()).map_err(|e| format!("{GUEST_ENV}: {e}"))?
            }
            _ => GuestSelection::Subset,
        };
        let tiers = match std::env::var(TIERS_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                Tiers::parse(&v).map_err(|e| format!("{TIERS_ENV}: {e}"))?
            }
            _ => Tiers::default(),
        };
        let qemu_slots = match std::env::var(QEMU_JOBS_ENV) {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{QEMU_JOBS_ENV}={v:?}: expected a positive number"))?,
            _ => default_qemu_slots(),
        };
        Ok(Config {
            cases_dir: env_path(CASES_ENV).unwrap_or_else(|| workspace.join("cases")),
            caps_dir: env_path(CAPS_ENV).unwrap_or_else(|| workspace.join("capsdata")),
            results_dir: env_path(RESULTS_ENV)
                .unwrap_or_else(|| target_dir.join("qconform-results")),
            cache_dir: default_cache_dir().unwrap_or_else(|| target_dir.join("qconform-cache")),
            bless: env_flag(BLESS_ENV),
            tiers,
            guest,
            matrix_root: qconform_qemu::matrix::default_root(),
            guest_root: default_guest_root(),
            qemu_slots,
            live_timeout: env_secs(LIVE_TIMEOUT_ENV, 120)?,
            guest_timeout: env_secs(GUEST_TIMEOUT_ENV, 300)?,
            bless_hint: "hint: if the new output is right, bless it with \
                `QCONFORM_BLESS=1 cargo test -p qconform-conformance --test conformance -- {case}@` \
                (or `qconform run --bless --filter {case}@`) and review `git diff cases/{case}/expect`"
                .into(),
        })
    }

    /// The bless hint for one case.
    pub fn hint_for(&self, case: &str) -> String {
        self.bless_hint.replace("{case}", case)
    }
}
