//! `qconform caps`: read caps snapshots for a person — which machines a binary has, and for a
//! machine which buses it has with `-nodefaults`, which device categories fit without adding a
//! controller, its built-in PCI devices and its default PCI bus.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qconform_caps::{MachineCaps, Snapshot, version_key};
use qconform_reports::load;

use crate::EXIT_USAGE;
use crate::snapshot_arg::load_snapshot;
use crate::stdout;

/// Arguments of `qconform caps`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  qconform caps list
  qconform caps show 11.1/x86_64                   # machines of QEMU 11.1 x86_64
  qconform caps show 11.1/x86_64 --machine q35     # buses, categories, built-in PCI, default bus
  qconform caps show 7.2.22_s390x --machine s390-ccw-virtio --format json
  qconform caps show capsdata/caps_10.0.2_aarch64.json --machine virt
  qconform caps list --caps-dir old-capsdata

Exit status: 0 shown; 2 bad input (unknown id or machine, unreadable or corrupt snapshot:
`caps list` still lists the others)")]
pub struct Args {
    #[command(subcommand)]
    command: CapsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CapsCommand {
    /// List the snapshots of a directory: version, arch, machines, default machine, binary.
    List {
        /// Directory holding caps_<version>_<arch>.json files.
        #[arg(
            long = "caps-dir",
            alias = "dir",
            value_name = "DIR",
            default_value = "capsdata"
        )]
        caps_dir: PathBuf,
    },
    /// Show one snapshot: its machines, or what one machine offers.
    Show {
        /// A snapshot file, or a short id resolved in --caps-dir: 11.1/x86_64,
        /// 11.1.3_x86_64, 7.2/s390x (a version prefix matches the newest snapshot with that
        /// prefix).
        snapshot: String,
        /// Machine name or alias (q35, pc, virt, s390-ccw-virtio, ...); "default" for the
        /// binary's default machine.
        #[arg(long, value_name = "M")]
        machine: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Directory short ids are resolved in.
        #[arg(
            long = "caps-dir",
            alias = "dir",
            value_name = "DIR",
            default_value = "capsdata"
        )]
        caps_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Categories always shown with yes/no in `show --machine`, so that "no" is said out loud.
const SHOWN_CATEGORIES: &[&str] = &[
    "pci",
    "pcie",
    "isa",
    "ide",
    "floppy",
    "usb",
    "scsi",
    "ccw",
    "zpci",
    "virtio-mmio",
    "spapr-vio",
    "sysbus",
];

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CapsCommand::List { caps_dir } => list(&caps_dir),
        CapsCommand::Show {
            snapshot,
            machine,
            format,
            caps_dir,
        } => {
            let snap = match load_snapshot(&snapshot, &caps_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("qconform caps show: {:#}", anyhow::Error::new(e));
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            match machine {
                None => {
                    stdout::print(&render_overview(&snap, format)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(m) => {
                    let name = if m == "default" {
                        None
                    } else {
                        Some(m.as_str())
                    };
                    let Some(canonical) = snap.resolve_machine(name) else {
                        eprintln!(
                            "qconform caps show: {} has no machine {m:?} (see `qconform caps show {snapshot}`)",
                            snap.id()
                        );
                        return Ok(ExitCode::from(EXIT_USAGE));
                    };
                    stdout::print(&render_machine(&snap, canonical, format)?)?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let files = load::snapshot_files(dir)?;
    if files.is_empty() {
        eprintln!(
            "qconform caps list: no caps_*.json in {} (record some with `qconform probe`)",
            dir.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let mut rows = Vec::new();
    let mut bad = 0;
    for f in &files {
        let s = match load::read_snapshot(f) {
            Ok(s) => s,
            Err(e) => {
                // One corrupt file does not hide the others: flag it, list the rest.
                eprintln!("qconform caps list: {:#}", anyhow::Error::new(e));
                bad += 1;
                continue;
            }
        };
        let probed = s.index.machine_caps.len();
        let started = s.index.machine_caps.values().filter(|c| c.starts).count();
        rows.push((
            version_key(&s.probe.qemu_version.to_string()),
            s.probe.arch.clone(),
            [
                s.probe.qemu_version.to_string(),
                s.probe.arch.clone(),
                s.index.machines.len().to_string(),
                format!("{started}/{probed}"),
                s.index
                    .default_machine
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
                s.probe.binary_name.clone(),
                s.probe.binary_sha256.chars().take(12).collect(),
                s.probe.package.clone(),
            ],
        ));
    }
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let header = [
        "VERSION", "ARCH", "MACHINES", "STARTED", "DEFAULT", "BINARY", "SHA256", "PACKAGE",
    ];
    let table: Vec<Vec<String>> = rows.into_iter().map(|r| r.2.to_vec()).collect();
    stdout::print(&format_table(&header, &table))?;
    if bad > 0 {
        eprintln!(
            "qconform caps list: {bad} of {} snapshot file(s) in {} could not be read",
            files.len(),
            dir.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    Ok(ExitCode::SUCCESS)
}

fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn start_text(caps: Option<&MachineCaps>) -> (String, String) {
    match caps {
        None => ("not probed".to_owned(), String::new()),
        Some(c) if c.starts => ("yes".to_owned(), String::new()),
        Some(c) => ("no".to_owned(), c.error.clone().unwrap_or_default()),
    }
}

fn render_overview(s: &Snapshot, format: Format) -> anyhow::Result<String> {
    if format == Format::Json {
        let machines: serde_json::Map<String, serde_json::Value> = s
            .index
            .machines
            .iter()
            .map(|(name, m)| {
                let caps = s.index.machine_caps.get(name);
                (
                    name.clone(),
                    serde_json::json!({
                        "alias": m.alias,
                        "default": m.is_default,
                        "deprecated": m.deprecated,
                        "starts": caps.map(|c| c.starts),
                        "error": caps.and_then(|c| c.error.clone()),
                    }),
                )
            })
            .collect();
        let v = serde_json::json!({
            "id": s.id(),
            "qemu_version": s.probe.qemu_version.to_string(),
            "package": s.probe.package,
            "arch": s.probe.arch,
            "binary_sha256": s.probe.binary_sha256,
            "accel": s.probe.accel,
            "default_machine": s.index.default_machine,
            "machines": machines,
        });
        return Ok(qconform_caps::canonical_json(&v));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "QEMU {} ({}), {}; {} {}",
        s.probe.qemu_version,
        s.probe.package,
        s.probe.arch,
        s.probe.binary_name,
        s.probe.binary_sha256.chars().take(12).collect::<String>()
    );
    let _ = writeln!(
        out,
        "probed with: -machine {{machine}} {}",
        s.probe
            .machine_argv
            .iter()
            .skip(2)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        out,
        "default machine: {}\n",
        s.index.default_machine.as_deref().unwrap_or("none")
    );
    let rows: Vec<Vec<String>> = s
        .index
        .machines
        .iter()
        .map(|(name, m)| {
            let (starts, error) = start_text(s.index.machine_caps.get(name));
            let mut flags = Vec::new();
            if m.is_default {
                flags.push("default");
            }
            if m.deprecated {
                flags.push("deprecated");
            }
            vec![
                name.clone(),
                m.alias.clone().unwrap_or_default(),
                flags.join(","),
                starts,
                error,
            ]
        })
        .collect();
    out.push_str(&format_table(
        &["MACHINE", "ALIAS", "FLAGS", "STARTS", "ERROR"],
        &rows,
    ));
    Ok(out)
}

fn render_machine(s: &Snapshot, name: &str, format: Format) -> anyhow::Result<String> {
    let info = s.index.machines.get(name);
    let caps = s.index.machine_caps.get(name);
    if format == Format::Json {
        let v = serde_json::json!({
            "snapshot": s.id(),
            "machine": name,
            "info": info,
            "caps": caps,
        });
        return Ok(qconform_caps::canonical_json(&v));
    }
    let mut out = String::new();
    let alias = info.and_then(|i| i.alias.as_deref());
    let _ = writeln!(
        out,
        "{name}{} on QEMU {} {}{}{}",
        alias.map(|a| format!(" (alias {a})")).unwrap_or_default(),
        s.probe.qemu_version,
        s.probe.arch,
        if info.is_some_and(|i| i.is_default) {
            ", default machine"
        } else {
            ""
        },
        if info.is_some_and(|i| i.deprecated) {
            ", deprecated"
        } else {
            ""
        },
    );
    let Some(caps) = caps else {
        let _ = writeln!(
            out,
            "not probed one by one in this snapshot (re-probe with --machines '{name}')"
        );
        return Ok(out);
    };
    if !caps.starts {
        let _ = writeln!(
            out,
            "does NOT start with -nodefaults: {}",
            caps.error.as_deref().unwrap_or("unknown error")
        );
        return Ok(out);
    }
    let _ = writeln!(out, "starts with -nodefaults: yes");
    let _ = writeln!(
        out,
        "default PCI bus: {}",
        caps.default_pci_bus.as_ref().map_or_else(
            || "none (no PCI bus)".to_owned(),
            |b| format!("{} ({})", b.id, b.bus_type)
        )
    );
    let _ = writeln!(out, "\npluggable without adding a controller:");
    for c in SHOWN_CATEGORIES {
        let yes = caps.categories.contains(*c);
        let _ = writeln!(out, "  {c:<12} {}", if yes { "yes" } else { "no" });
    }
    let others: Vec<&String> = caps
        .categories
        .iter()
        .filter(|c| !SHOWN_CATEGORIES.contains(&c.as_str()))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "  also: {}",
            others
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(out, "\nbuses:");
    let rows: Vec<Vec<String>> = caps
        .buses
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.bus_type.clone(),
                match (&b.parent_type, &b.parent_id) {
                    (None, _) => "(machine)".to_owned(),
                    (Some(t), Some(i)) => format!("{t} id={i}"),
                    (Some(t), None) => t.clone(),
                },
            ]
        })
        .collect();
    for l in format_table(&["ID", "TYPE", "OWNER"], &rows).lines() {
        let _ = writeln!(out, "  {l}");
    }
    let _ = writeln!(out, "\nbuilt-in PCI functions (query-pci at -S):");
    if caps.builtin_pci.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        for f in &caps.builtin_pci {
            let _ = writeln!(
                out,
                "  {:02x}:{:02x}.{} {:04x}:{:04x} class {:04x}{}",
                f.bus,
                f.slot,
                f.function,
                f.id.vendor,
                f.id.device,
                f.id.class,
                if f.qdev_id.is_empty() {
                    String::new()
                } else {
                    format!(" id={}", f.qdev_id)
                }
            );
        }
    }
    Ok(out)
}
