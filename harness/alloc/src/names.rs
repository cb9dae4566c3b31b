//! libvirt's device aliases and disk drive addresses.

use qconform_domxml::DriveAddress;

/// Index of a disk target name (`vda` → 0, `sdb` → 1, `hdaa` → 26), libvirt's
/// virDiskNameToIndex; `None` when the name does not follow the scheme.
pub fn disk_index(dev: &str) -> Option<u32> {
    let rest = ["xvd", "ubd", "hd", "sd", "vd", "fd"]
        .iter()
        .find_map(|p| dev.strip_prefix(p))?;
    let letters: &str = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut idx: u32 = 0;
    for (i, b) in letters.bytes().enumerate() {
        let v = u32::from(b - b'a');
        idx = if i == 0 {
            v
        } else {
            idx.checked_add(1)?.checked_mul(26)?.checked_add(v)?
        };
    }
    Some(idx)
}

/// Default bus of a disk target name (`hd*` → ide, `sd*` → scsi, `vd*` → virtio, `fd*` →
/// fdc, `xvd*` → xen, `ubd*` → uml).
pub fn disk_default_bus(dev: &str) -> Option<&'static str> {
    if dev.starts_with("xvd") {
        Some("xen")
    } else if dev.starts_with("ubd") {
        Some("uml")
    } else if dev.starts_with("hd") {
        Some("ide")
    } else if dev.starts_with("sd") {
        Some("scsi")
    } else if dev.starts_with("vd") {
        Some("virtio")
    } else if dev.starts_with("fd") {
        Some("fdc")
    } else {
        None
    }
}

/// Drive address of a disk with no address (virDomainDiskDefAssignAddress).
pub fn drive_address(bus: &str, idx: u32) -> Option<DriveAddress> {
    Some(match bus {
        "ide" => DriveAddress {
            controller: idx / 4,
            bus: (idx % 4) / 2,
            target: 0,
            unit: idx % 2,
        },
        "sata" => DriveAddress {
            controller: idx / 6,
            bus: 0,
            target: 0,
            unit: idx % 6,
        },
        "scsi" => DriveAddress {
            controller: idx / 7,
            bus: 0,
            target: 0,
            unit: idx % 7,
        },
        "fdc" => DriveAddress {
            controller: 0,
            bus: 0,
            target: 0,
            unit: idx % 2,
        },
        _ => return None,
    })
}

/// Alias of a disk (`virtio-disk0`, `sata0-0-1`, `scsi0-0-0-2`, `ide0-1-0`, `fdc0-0-0`).
pub fn disk_alias(bus: &str, dev: &str, drive: Option<DriveAddress>) -> String {
    // libvirt prints virDiskNameToIndex's -1 for a name it cannot number (such a disk
    // needs an explicit address): 'virtio-disk-1'.
    let idx = disk_index(dev).map_or(-1, i64::from);
    match (bus, drive) {
        ("virtio", _) => format!("virtio-disk{idx}"),
        ("usb", _) => format!("usb-disk{idx}"),
        ("scsi", Some(d)) => format!("scsi{}-{}-{}-{}", d.controller, d.bus, d.target, d.unit),
        (b, Some(d)) => format!("{b}{}-{}-{}", d.controller, d.bus, d.unit),
        (b, None) => format!("{b}-disk{idx}"),
    }
}

/// Alias of a controller (`pci.1`, `usb`, `usb1`, `ide`, `sata1`, `scsi0`, ...).
pub fn controller_alias(ty: &str, index: u32, q35_sata0_is_ide: bool) -> String {
    match ty {
        "pci" => format!("pci.{index}"),
        "usb" if index == 0 => "usb".into(),
        "ide" if index == 0 => "ide".into(),
        "sata" if index == 0 && q35_sata0_is_ide => "ide".into(),
        "xenbus" => "xenbus".into(),
        other => format!("{other}{index}"),
    }
}

/// Disks of `devs` in libvirt's disk-list order (virDomainDiskInsertPreAlloced, called for
/// every `<disk>` as the domain is parsed): each disk, in document order, goes before the
/// earliest disk of its bus with a higher target index that follows the last lower one,
/// else right after the last disk of its bus, else at the end. libvirt assigns PCI slots,
/// CCW devnos and boot indexes, and writes `-device` options, in this order, so `vdb`
/// written after `vdc` still comes first.
pub fn libvirt_disk_order(devs: &[crate::Dev]) -> Vec<usize> {
    use qconform_domxml::DeviceKind;
    let key = |i: usize| match &devs[i].device.kind {
        DeviceKind::Disk(k) => (
            k.bus.clone().unwrap_or_default(),
            disk_index(&k.dev).unwrap_or(u32::MAX),
        ),
        _ => (String::new(), u32::MAX),
    };
    let mut order: Vec<usize> = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        if !matches!(d.device.kind, DeviceKind::Disk(_)) {
            continue;
        }
        let (bus, idx) = key(i);
        let mut at: Option<usize> = None;
        for (p, &j) in order.iter().enumerate().rev() {
            let (jbus, jidx) = key(j);
            if jbus != bus {
                continue;
            }
            if jidx > idx {
                at = Some(p);
            } else if at.is_none() {
                at = Some(p + 1);
            }
        }
        match at {
            Some(p) => order.insert(p, i),
            None => order.push(i),
        }
    }
    order
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_disk_index() {
        assert_eq!(disk_index("vda"), Some(0));
        assert_eq!(disk_index("vdz"), Some(25));
        assert_eq!(disk_index("vdaa"), Some(26));
        assert_eq!(disk_index("vdan"), Some(39));
        assert_eq!(disk_index("hdc"), Some(2));
        assert_eq!(disk_index("xyz"), None);
        assert_eq!(disk_index("vd"), None);
    }

    #[test]
    fn test_aliases() {
        assert_eq!(disk_alias("virtio", "vdb", None), "virtio-disk1");
        assert_eq!(disk_alias("virtio", "xyz", None), "virtio-disk-1");
        let d = drive_address("ide", 2).unwrap();
        assert_eq!(disk_alias("ide", "hdc", Some(d)), "ide0-1-0");
        let d = drive_address("sata", 1).unwrap();
        assert_eq!(disk_alias("sata", "sdb", Some(d)), "sata0-0-1");
        assert_eq!(controller_alias("pci", 3, false), "pci.3");
        assert_eq!(controller_alias("sata", 0, true), "ide");
        assert_eq!(controller_alias("sata", 1, true), "sata1");
        assert_eq!(controller_alias("usb", 0, false), "usb");
    }
}
