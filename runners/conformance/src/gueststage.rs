//! Guest stage: boot a Debian kernel and the qconform initramfs with the planned argv
//! under TCG and compare the PCI functions the guest kernel enumerated with the
//! prediction (x86: exact bus numbers as the firmware and kernel assigned them; s390x:
//! domain = zPCI uid, and the fid the guest reads back; pSeries: domain = PHB index).
//! On s390x the CCW devices the guest lists are compared with the planned devnos too.

use std::collections::BTreeMap;

use qconform_qemu::guest::{self, GuestCcw, GuestError};
use qconform_qemu::live::ObservedFunction;

use crate::binaries::Located;
use crate::case::Case;
use crate::livestage::compare_view;
use crate::outcome::{StageResult, argv_line};
use crate::planview;
use crate::rig::Rig;
use crate::snapshots::LoadedSnapshot;

/// Whether the guest tier can boot a machine: x86_64 pc/q35, s390x s390-ccw-virtio,
/// aarch64 virt, ppc64 pseries and riscv64 virt.
pub fn machine_supported(arch: &str, canonical_machine: &str) -> bool {
    match arch {
        "x86_64" => {
            canonical_machine.starts_with("pc-i440fx")
                || canonical_machine.starts_with("pc-q35")
                || canonical_machine == "pc"
                || canonical_machine == "q35"
        }
        "s390x" => canonical_machine.starts_with("s390-ccw-virtio"),
        "aarch64" | "riscv64" => {
            canonical_machine == "virt" || canonical_machine.starts_with("virt-")
        }
        "ppc64" => canonical_machine == "pseries" || canonical_machine.starts_with("pseries-"),
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
    if snap.arch == "s390x" {
        failures.extend(compare_ccw(&plan.devices, &plan.argv, &boot.ccw));
    }
    if !failures.is_empty() {
        failures.push(format!("argv: {line}"));
    }
    let ccw_note = if snap.arch == "s390x" {
        format!(" and {} CCW devices", boot.ccw.len())
    } else {
        String::new()
    };
    let notes = vec![format!(
        "guest listed {} PCI functions{ccw_note} after {:.1}s",
        boot.functions.len(),
        boot.elapsed.as_secs_f64()
    )];
    StageResult::from_checks(failures, notes)
        .with_argv(boot.args)
        .with_stderr(&boot.stderr)
}

/// The bus-id a guest gives a planned CCW devno (`fe.1.0100` → `0.1.0100`). QEMU's virtual
/// channel subsystem is css `fe`, and a guest that has not enabled MCSS-E (Linux does not)
/// addresses it as css 0 (hw/s390x/css.c maps css 0 to the default css `fe`); subchannel
/// set and devno stay. Observed on 7.2, 10.0 and 11.1 with Debian's 6.1 s390x kernel:
/// `devno=fe.1.0100` is listed as `0.1.0100`.
pub fn guest_ccw_bus_id(devno: &str) -> Option<String> {
    let mut parts = devno.split('.');
    let (Some(css), Some(ssid), Some(dev), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let css = u8::from_str_radix(css, 16).ok()?;
    let ssid = u8::from_str_radix(ssid, 16).ok()?;
    let dev = u16::from_str_radix(dev, 16).ok()?;
    let css = if css == 0xfe { 0 } else { css };
    Some(format!("{css:x}.{ssid:x}.{dev:04x}"))
}

/// Virtio device id of a virtio-ccw type: the control unit model a guest reads
/// (`cutype=3832/<id>`; ids from the virtio specification, "Device Types").
fn virtio_ccw_id(qemu_type: &str) -> Option<u8> {
    Some(match qemu_type.strip_suffix("-ccw")? {
        "virtio-net" => 0x01,
        "virtio-blk" => 0x02,
        "virtio-serial" => 0x03,
        "virtio-rng" => 0x04,
        "virtio-balloon" => 0x05,
        "virtio-scsi" => 0x08,
        "virtio-9p" => 0x09,
        "virtio-gpu" => 0x10,
        "virtio-keyboard" | "virtio-mouse" | "virtio-tablet" => 0x12,
        "vhost-vsock" => 0x13,
        "virtio-crypto" => 0x14,
        _ => return None,
    })
}

/// QEMU type per `devno=` value of the argv's `-device` options.
fn ccw_types(argv: &[String]) -> BTreeMap<String, String> {
    argv.windows(2)
        .filter(|w| w[0] == "-device")
        .filter_map(|w| {
            let mut opts = w[1].split(',');
            let ty = opts.next()?.to_owned();
            let devno = opts.find_map(|o| o.strip_prefix("devno="))?;
            Some((devno.to_owned(), ty))
        })
        .collect()
}

/// Compares the guest's CCW list with the planned devnos: the same bus-ids, and for
/// virtio-ccw devices the control unit model of their type.
pub fn compare_ccw(
    devices: &BTreeMap<String, qconform_plan::DeviceAddress>,
    argv: &[String],
    seen: &[GuestCcw],
) -> Vec<String> {
    let types = ccw_types(argv);
    let mut failures = Vec::new();
    let mut want: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (alias, d) in devices {
        let Some(devno) = d.ccw_devno.as_deref() else {
            continue;
        };
        match guest_ccw_bus_id(devno) {
            Some(id) => {
                want.insert(id, (alias.clone(), devno.to_owned()));
            }
            None => failures.push(format!(
                "CCW: the plan gives {alias} devno {devno:?}, which is not C.S.DDDD"
            )),
        }
    }
    let got: BTreeMap<&str, &GuestCcw> = seen.iter().map(|c| (c.bus_id.as_str(), c)).collect();
    for (id, (alias, devno)) in &want {
        let Some(c) = got.get(id.as_str()) else {
            failures.push(format!(
                "CCW: the plan gives {alias} devno {devno}, but the guest lists no {id}"
            ));
            continue;
        };
        let expected = types
            .get(devno)
            .and_then(|t| virtio_ccw_id(t).map(|v| (t, format!("3832/{v:02x}"))));
        if let Some((ty, cutype)) = expected
            && c.cutype != cutype
        {
            failures.push(format!(
                "CCW: {alias} ({ty}) at {id}: the guest reads control unit {}, a {ty} is {cutype}",
                c.cutype
            ));
        }
    }
    for c in seen {
        if !want.contains_key(&c.bus_id) {
            failures.push(format!(
                "CCW: the guest lists {} (control unit {}), which the plan does not place",
                c.bus_id, c.cutype
            ));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use qconform_plan::{AddressKind, DeviceAddress};

    fn ccw(devno: &str) -> DeviceAddress {
        DeviceAddress {
            kind: AddressKind::Ccw,
            ccw_devno: Some(devno.into()),
            ..DeviceAddress::default()
        }
    }

    fn seen(id: &str, cutype: &str) -> GuestCcw {
        GuestCcw {
            bus_id: id.into(),
            cutype: cutype.into(),
            devtype: "n/a".into(),
            online: true,
        }
    }

    #[test]
    fn test_machines_the_guest_tier_boots() {
        for (arch, m) in [
            ("x86_64", "pc-q35-11.1"),
            ("x86_64", "pc-i440fx-7.2"),
            ("s390x", "s390-ccw-virtio-10.0"),
            ("aarch64", "virt-11.1"),
            ("ppc64", "pseries-7.2"),
            ("ppc64", "pseries"),
            ("riscv64", "virt"),
        ] {
            assert!(machine_supported(arch, m), "{arch} {m}");
        }
        for (arch, m) in [
            ("x86_64", "microvm"),
            ("ppc64", "powernv9"),
            ("riscv64", "spike"),
            ("aarch64", "sbsa-ref"),
        ] {
            assert!(!machine_supported(arch, m), "{arch} {m}");
        }
    }

    #[test]
    fn test_guest_ccw_bus_id_maps_css_fe_to_zero() {
        assert_eq!(guest_ccw_bus_id("fe.1.0100").as_deref(), Some("0.1.0100"));
        assert_eq!(guest_ccw_bus_id("fe.0.0000").as_deref(), Some("0.0.0000"));
        assert_eq!(guest_ccw_bus_id("0.3.fffe").as_deref(), Some("0.3.fffe"));
        assert_eq!(guest_ccw_bus_id("fe.0"), None);
        assert_eq!(guest_ccw_bus_id("fe.0.0.1"), None);
        assert_eq!(guest_ccw_bus_id("fe.0.zz"), None);
    }

    #[test]
    fn test_compare_ccw_reports_missing_extra_and_wrong_model() {
        let devices: BTreeMap<String, DeviceAddress> = [
            ("net0".to_owned(), ccw("fe.1.0100")),
            ("balloon0".to_owned(), ccw("fe.0.0000")),
        ]
        .into_iter()
        .collect();
        let argv: Vec<String> = [
            "-device",
            "virtio-net-ccw,netdev=hostnet0,id=net0,devno=fe.1.0100",
            "-device",
            "virtio-balloon-ccw,id=balloon0,devno=fe.0.0000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let good = [seen("0.0.0000", "3832/05"), seen("0.1.0100", "3832/01")];
        assert!(compare_ccw(&devices, &argv, &good).is_empty());
        let bad = [seen("0.0.0000", "3832/01"), seen("0.0.0002", "3832/04")];
        let f = compare_ccw(&devices, &argv, &bad);
        assert_eq!(f.len(), 3, "{f:#?}");
        assert!(f.iter().any(|m| m.contains("lists no 0.1.0100")));
        assert!(f.iter().any(|m| m.contains("reads control unit 3832/01")));
        assert!(f.iter().any(|m| m.contains("0.0.0002")));
    }
}
