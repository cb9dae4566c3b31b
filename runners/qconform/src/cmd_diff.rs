//! `qconform diff`: what changed between two caps snapshots (or two directories of
//! snapshots, paired by architecture); and `qconform drift`: how the plan of a domain
//! changes between two snapshots.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use qconform_caps::Snapshot;
use qconform_plan::PlanErrorKind;
use qconform_reports::diff::{DiffSet, diff, diff_sets};
use qconform_reports::diff_render::{self, Format};
use qconform_reports::drift::{self, Drift, PlanOutcome, PlanView};
use qconform_reports::load::{self, DOMAIN_LIMIT};
use qconform_reports::output;

use crate::snapshot_arg::load_snapshot;
use crate::{EXIT_USAGE, stdout};

/// Output format of `qconform diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Plain text with unified diffs.
    Text,
    /// Stable JSON (schema in docs/reading-the-report.md).
    Json,
    /// Markdown with fenced diff blocks.
    Markdown,
    /// One self-contained HTML page.
    Html,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Html => Format::Html,
        }
    }
}

/// Arguments of `qconform diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    qconform diff 10.0/s390x 11.1/s390x\n  \
    qconform diff 10.0.2_x86_64 11.1.3/x86_64 --caps-dir capsdata\n  \
    qconform diff capsdata/caps_10.0.2_x86_64.json capsdata/caps_11.1.3_x86_64.json --format markdown\n  \
    qconform diff old-capsdata/ capsdata/ --format json --out caps-diff.json\n\n\
    --out writes a regular file atomically, writes through a symbolic link, named pipe or\n\
    device, and refuses a directory.\n\n\
    Exit status: 0 written (1 with --exit-code when the snapshots differ), 2 bad input.")]
pub struct Args {
    /// Old snapshot: a file, a directory of snapshots, or an id such as `10.0/s390x`,
    /// `10.0.2_s390x` (looked up in --caps-dir; a version prefix picks the newest).
    pub old: String,
    /// New snapshot: same forms as OLD (two directories are paired by architecture).
    pub new: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Directory where snapshot ids are looked up.
    #[arg(
        long = "caps-dir",
        alias = "caps",
        value_name = "DIR",
        default_value = "capsdata"
    )]
    pub caps_dir: PathBuf,
    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit with status 1 when the snapshots differ (like `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

/// A snapshot argument resolved: one snapshot or a directory of them.
enum Side {
    One(Box<Snapshot>),
    Many(Vec<Snapshot>),
}

fn load_side(spec: &str, caps: &Path) -> anyhow::Result<Side> {
    let p = Path::new(spec);
    if p.is_dir() {
        let snaps = load::read_snapshot_dir(p)?;
        if snaps.is_empty() {
            bail!("{spec}: directory holds no caps_*.json snapshot");
        }
        return Ok(Side::Many(snaps));
    }
    Ok(Side::One(Box::new(load_snapshot(spec, caps)?)))
}

fn emit(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(p) => output::write_file(p, text.as_bytes())
            .with_context(|| format!("cannot write --out {}", p.display())),
        None => stdout::print(text),
    }
}

/// Runs `diff`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        old: old_spec,
        new: new_spec,
        format,
        caps_dir,
        out,
        exit_code,
    } = args;
    let old = load_side(&old_spec, &caps_dir)?;
    let new = load_side(&new_spec, &caps_dir)?;
    let set = match (old, new) {
        (Side::One(a), Side::One(b)) => {
            if a.probe.arch != b.probe.arch {
                eprintln!(
                    "qconform: warning: comparing different architectures ({} vs {})",
                    a.probe.arch, b.probe.arch
                );
            }
            DiffSet::of(vec![diff(&a, &b)])
        }
        (Side::Many(a), Side::Many(b)) => diff_sets(&a, &b),
        _ => bail!(
            "OLD and NEW must both be snapshots or both be directories ({old_spec} vs {new_spec})"
        ),
    };
    emit(&diff_render::render(&set, format.into()), out.as_deref())?;
    let differs = set.diffs.iter().any(|d| !d.is_empty())
        || !set.unpaired_old.is_empty()
        || !set.unpaired_new.is_empty();
    Ok(if exit_code && differs {
        ExitCode::from(crate::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `qconform drift`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    qconform drift cases/pcie-root-ports --from 10.0/x86_64 --to 11.1/x86_64\n  \
    qconform drift --all --from 10.0/s390x --to 11.1/s390x --format json\n  \
    qconform drift cases/fit-floppy-pc --from 10.0.2_x86_64 --to 11.1/x86_64 --caps-dir capsdata\n\n\
    Exit status: 0 compared (1 with --exit-code when the guest ABI changes), 2 bad input\n\
    (an unreadable or malformed domain, an unknown or corrupt snapshot). With --all, a case\n\
    whose domain is malformed is named on stderr and left out.")]
pub struct DriftArgs {
    /// Case directory (holding domain.xml) or a domain XML file.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub case: Option<PathBuf>,
    /// Every case under --cases.
    #[arg(long)]
    pub all: bool,
    /// Old snapshot (file or id such as `10.0/x86_64`, looked up in --caps-dir).
    #[arg(long)]
    pub from: String,
    /// New snapshot.
    #[arg(long)]
    pub to: String,
    /// Directory where snapshot ids are looked up.
    #[arg(
        long = "caps-dir",
        alias = "caps",
        value_name = "DIR",
        default_value = "capsdata"
    )]
    pub caps_dir: PathBuf,
    /// Case corpus for --all.
    #[arg(long, default_value = "cases")]
    pub cases: PathBuf,
    /// Output format (text or json).
    #[arg(long, value_enum, default_value_t = DriftFormat::Text)]
    pub format: DriftFormat,
    /// Only list cases whose guest ABI changes (with --all).
    #[arg(long)]
    pub changed_only: bool,
    /// Exit with status 1 when a guest-visible change is found.
    #[arg(long)]
    pub exit_code: bool,
}

/// Output format of `qconform drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftFormat {
    /// Plain text with unified diffs.
    Text,
    /// JSON array of drifts.
    Json,
}

/// Plans a domain and keeps what drift compares; a domain that is bad input (malformed
/// XML) also gives the error.
fn plan_outcome(xml: &str, snap: &Snapshot) -> (PlanOutcome, Option<String>) {
    let outcome = match qconform_plan::plan(xml, snap) {
        Ok(p) => PlanOutcome::Planned {
            plan: PlanView {
                devices: p
                    .devices
                    .iter()
                    .map(|(alias, a)| (alias.clone(), a.text()))
                    .collect(),
                machine: p.machine,
                argv: p.argv,
                guest_pci: p.guest_pci.iter().map(ToString::to_string).collect(),
                warnings: p.warnings,
            },
        },
        Err(e) => {
            let bad = (e.kind == PlanErrorKind::BadInput).then(|| e.to_string());
            return (
                PlanOutcome::Rejected {
                    error: e.to_string(),
                },
                bad,
            );
        }
    };
    (outcome, None)
}

/// Case directories (holding `domain.xml`) under `cases`, sorted by name.
fn case_dirs(cases: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs::read_dir(cases)
        .with_context(|| format!("cannot read the case corpus {}", cases.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("domain.xml").is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("{}: no case directory with a domain.xml", cases.display());
    }
    Ok(out)
}

/// `(case name, domain.xml path)` of a CASE argument: a case directory or an XML file.
fn case_of(path: &Path) -> anyhow::Result<(String, PathBuf)> {
    let xml = if path.is_dir() {
        path.join("domain.xml")
    } else {
        path.to_path_buf()
    };
    if !xml.is_file() {
        bail!("{}: no such domain XML file", xml.display());
    }
    let name_from = if path.is_dir() {
        path
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(path)
    };
    let name = name_from.file_name().map_or_else(
        || xml.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((name, xml))
}

/// Runs `drift`.
pub fn run_drift(args: DriftArgs) -> anyhow::Result<ExitCode> {
    let DriftArgs {
        case,
        all,
        from,
        to,
        caps_dir,
        cases,
        format,
        changed_only,
        exit_code,
    } = args;
    let from_snap = load_snapshot(&from, &caps_dir).context("--from")?;
    let to_snap = load_snapshot(&to, &caps_dir).context("--to")?;
    let targets: Vec<(String, PathBuf)> = if all {
        case_dirs(&cases)?
            .iter()
            .map(|d| case_of(d))
            .collect::<anyhow::Result<_>>()?
    } else {
        let Some(c) = case else {
            bail!("give a CASE_DIR or --all");
        };
        vec![case_of(&c)?]
    };
    let (from_id, to_id) = (from_snap.id(), to_snap.id());
    let mut drifts: Vec<Drift> = Vec::new();
    let mut bad_input = 0;
    for (name, xml_path) in &targets {
        let xml = load::read_text(xml_path, DOMAIN_LIMIT, "domain XML")?;
        let (a, bad_a) = plan_outcome(&xml, &from_snap);
        let (b, bad_b) = plan_outcome(&xml, &to_snap);
        // Refused as bad input by both snapshots: the domain itself is broken, which is
        // not a drift between the two.
        // With --all, such a case (the corpus keeps some on purpose) is named and left
        // out; a single CASE that is bad input is an error (exit 2).
        if let (Some(e), Some(_)) = (bad_a, bad_b) {
            eprintln!(
                "qconform drift: {}: bad input{}: {e}",
                xml_path.display(),
                if all { ", left out" } else { "" }
            );
            bad_input += 1;
            continue;
        }
        drifts.push(drift::drift(name, &from_id, &a, &to_id, &b));
    }
    if bad_input > 0 && !all {
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let changed = drifts.iter().filter(|d| !d.guest_abi_stable()).count();
    let mut out = String::new();
    match format {
        DriftFormat::Json => {
            let with_verdicts: Vec<serde_json::Value> = drifts
                .iter()
                .map(|d| {
                    let mut v = serde_json::to_value(d)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("verdict".to_owned(), serde_json::to_value(d.verdict())?);
                    }
                    Ok(v)
                })
                .collect::<Result<_, serde_json::Error>>()?;
            out = serde_json::to_string_pretty(&with_verdicts)?;
            out.push('\n');
        }
        DriftFormat::Text if !all => {
            for d in &drifts {
                out.push_str(&drift::text(d));
            }
        }
        DriftFormat::Text => {
            use std::fmt::Write as _;
            let width = drifts.iter().map(|d| d.case.len()).max().unwrap_or(0);
            let _ = writeln!(out, "drift {from_id} -> {to_id}, {} case(s)", drifts.len());
            for d in &drifts {
                if !changed_only || !d.guest_abi_stable() {
                    let _ = writeln!(out, "  {:<width$}  {}", d.case, d.verdict().as_str());
                }
            }
            for d in drifts.iter().filter(|d| !d.is_empty()) {
                if !changed_only || !d.guest_abi_stable() {
                    out.push('\n');
                    out.push_str(&drift::text(d));
                }
            }
            let mut counts: std::collections::BTreeMap<drift::Verdict, usize> = Default::default();
            for d in &drifts {
                *counts.entry(d.verdict()).or_default() += 1;
            }
            let summary: Vec<String> = counts
                .iter()
                .map(|(k, n)| format!("{n} {}", k.as_str()))
                .collect();
            let _ = writeln!(out, "\n{}", summary.join(", "));
        }
    }
    emit(&out, None)?;
    Ok(if exit_code && changed > 0 {
        ExitCode::from(crate::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
