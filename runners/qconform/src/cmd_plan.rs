//! `qconform plan`: plan one libvirt-style domain against one caps snapshot.

use std::path::PathBuf;
use std::process::ExitCode;

use qconform_plan::{PlanErrorKind, plan};
use qconform_reports::load::{self, DOMAIN_LIMIT};

use crate::snapshot_arg::load_snapshot;
use crate::{EXIT_FAILED, EXIT_USAGE, stdout};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Sections: argv, addresses, controllers added, guest view, warnings.
    Text,
    /// One JSON object (see `--help`).
    Json,
}

/// Arguments of `qconform plan`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Prints what the QEMU binary of SNAPSHOT would be given and what the guest would see:
the QEMU argv (one option per line), the address of every device (libvirt aliases:
net0, virtio-disk0, hostdev0, pci.1, ...), the PCI controllers added automatically,
and the guest's PCI functions (DDDD:BB:SS.F CCCC: VVVV:DDDD, firmware bus numbers;
on s390x the domain is the zPCI uid).

The JSON format is one object:
  {\"machine\", \"argv\": [..], \"devices\": {alias: {kind, bus, slot, function,
   bus_alias, multifunction, zpci_uid, zpci_fid, ccw_devno}}, \"controllers_added\": [..],
   \"guest_pci\": [..], \"warnings\": [..], \"host_resources\": [..]}
or, when the domain cannot be planned, {\"error\": message, \"kind\", \"element\",
\"attribute\", \"value\", \"line\", \"column\"}.

Exit status:
  0  planned
  1  the configuration is refused (libvirt or QEMU would refuse it); the message says why
  2  bad input: unreadable, oversized (domain over 16 MiB, snapshot over 64 MiB) or
     non-UTF-8 file, malformed XML, not a caps snapshot (or one whose file name names
     another version or arch), an unknown snapshot id

Examples:
  qconform plan cases/zpci-auto-uid-fid/domain.xml --caps capsdata/caps_11.1.3_s390x.json
  qconform plan cases/fit-floppy-pc/domain.xml --caps 11.1/x86_64
  qconform plan cases/q35-oracle-mixed/domain.xml --caps capsdata/caps_7.2.22_x86_64.json --format json
  qconform plan cases/pcie-switch-oracle/domain.xml --caps capsdata/caps_10.0.2_x86_64.json --xml
  qconform plan cases/fit-floppy-pc/domain.xml --caps 10.0_x86_64 --caps-dir old-capsdata")]
pub struct Args {
    /// Domain XML (libvirt format).
    pub domain: PathBuf,
    /// Caps snapshot to plan against: a file (capsdata/caps_<version>_<arch>.json) or a
    /// short id resolved in --caps-dir: 11.1/x86_64, 11.1.3_x86_64, 7.2/s390x (a version
    /// prefix matches the newest snapshot with that prefix).
    #[arg(long, value_name = "SNAPSHOT")]
    pub caps: String,
    /// Directory short snapshot ids are resolved in.
    #[arg(long, value_name = "DIR", default_value = "capsdata")]
    pub caps_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Text format: also print the domain XML with every address filled in.
    #[arg(long)]
    pub xml: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        domain,
        caps: caps_spec,
        caps_dir,
        format,
        xml: with_xml,
    } = args;
    let caps = match load_snapshot(&caps_spec, &caps_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qconform plan: --caps: {:#}", anyhow::Error::new(e));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let xml = match load::read_text(&domain, DOMAIN_LIMIT, "domain XML") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("qconform plan: {:#}", anyhow::Error::new(e));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    match plan(&xml, &caps) {
        Ok(p) => {
            match format {
                Format::Json => {
                    stdout::println(qconform_caps::canonical_json(&p.to_json()).trim_end())?;
                }
                Format::Text => {
                    let mut out = String::new();
                    out.push_str(&format!("# machine\n{}\n", p.machine));
                    out.push_str("\n# argv\n");
                    out.push_str(&p.argv_text());
                    out.push_str("\n# addresses\n");
                    out.push_str(&p.addresses_text());
                    if !p.controllers_added.is_empty() {
                        out.push_str("\n# controllers added\n");
                        for c in &p.controllers_added {
                            out.push_str(c);
                            out.push('\n');
                        }
                    }
                    out.push_str("\n# guest view\n");
                    out.push_str(&p.guest_text());
                    if !p.host_resources.is_empty() {
                        out.push_str("\n# host resources needed to launch\n");
                        for h in &p.host_resources {
                            out.push_str(h);
                            out.push('\n');
                        }
                    }
                    if !p.warnings.is_empty() {
                        out.push_str("\n# warnings\n");
                        for w in &p.warnings {
                            out.push_str(w);
                            out.push('\n');
                        }
                    }
                    if with_xml {
                        out.push_str("\n# domain xml\n");
                        out.push_str(&p.domain_xml);
                    }
                    stdout::print(&out)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let code = match e.kind {
                PlanErrorKind::BadInput => EXIT_USAGE,
                PlanErrorKind::Rejected => EXIT_FAILED,
            };
            match format {
                Format::Json => {
                    let mut v = e.to_json();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("file".into(), domain.display().to_string().into());
                    }
                    stdout::println(qconform_caps::canonical_json(&v).trim_end())?;
                }
                Format::Text => {
                    let what = match e.kind {
                        PlanErrorKind::BadInput => "bad input",
                        PlanErrorKind::Rejected => "rejected",
                    };
                    eprintln!("qconform plan: {}: {what}: {e}", domain.display());
                }
            }
            Ok(ExitCode::from(code))
        }
    }
}
