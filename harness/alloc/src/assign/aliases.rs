//! Step 5: libvirt's device aliases (`net0`, `virtio-disk0`, `hostdev0`, `pci.1`, ...).

use std::collections::{BTreeMap, BTreeSet};

use qconform_domxml::{Address, DeviceKind};

use super::{Work, dev_err};
use crate::machine::Family;
use crate::names;
use crate::{Error, classify};

impl Work<'_> {
    pub(super) fn aliases(&mut self) -> Result<(), Error> {
        let q35 = self.family == Family::Q35;
        let net_hostdevs = self
            .devs
            .iter()
            .filter(|d| matches!(&d.device.kind, DeviceKind::Interface(i) if i.itype == "hostdev"))
            .count();
        let mut count: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut next = |key: &'static str| {
            let c = count.entry(key).or_insert(0);
            *c += 1;
            *c - 1
        };
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for d in &mut self.devs {
            let alias = match &d.device.kind {
                DeviceKind::Controller(c)
                    if c.ctype == "pci" && c.model.as_deref() == Some("pcie-root") =>
                {
                    "pcie.0".to_string()
                }
                DeviceKind::Controller(c) => {
                    names::controller_alias(&c.ctype, c.index.unwrap_or(0), q35)
                }
                DeviceKind::Disk(k) => {
                    let drive = match &d.device.address {
                        Address::Drive(a) => Some(*a),
                        _ => None,
                    };
                    names::disk_alias(k.bus.as_deref().unwrap_or(""), &k.dev, drive)
                }
                DeviceKind::Interface(i) => {
                    let n = next("net");
                    if i.itype == "hostdev" {
                        format!("hostdev{}", next("net-hostdev"))
                    } else {
                        format!("net{n}")
                    }
                }
                DeviceKind::Hostdev(_) => format!("hostdev{}", net_hostdevs + next("hostdev")),
                DeviceKind::Video(_) => format!("video{}", next("video")),
                DeviceKind::Sound(_) => format!("sound{}", next("sound")),
                DeviceKind::Memballoon(_) => format!("balloon{}", next("balloon")),
                DeviceKind::Rng(_) => format!("rng{}", next("rng")),
                DeviceKind::Watchdog(_) => format!("watchdog{}", next("watchdog")),
                DeviceKind::Input(_) => format!("input{}", next("input")),
                DeviceKind::Filesystem(_) => format!("fs{}", next("fs")),
                DeviceKind::Vsock(_) => format!("vsock{}", next("vsock")),
                DeviceKind::Iommu(_) => format!("iommu{}", next("iommu")),
                DeviceKind::Panic(_) => format!("panic{}", next("panic")),
                DeviceKind::Shmem(_) => format!("shmem{}", next("shmem")),
                DeviceKind::Memory(m) => match m.model.as_str() {
                    "virtio-mem" => format!("virtiomem{}", next("virtiomem")),
                    "virtio-pmem" => format!("virtiopmem{}", next("virtiopmem")),
                    "nvdimm" => format!("nvdimm{}", next("nvdimm")),
                    _ => format!("dimm{}", next("dimm")),
                },
                DeviceKind::Chr(c) => match c.element.as_str() {
                    "channel" => format!("channel{}", next("channel")),
                    "console" => format!("console{}", next("console")),
                    "parallel" => format!("parallel{}", next("parallel")),
                    _ => format!("serial{}", next("serial")),
                },
                DeviceKind::Crypto(_) => format!("crypto{}", next("crypto")),
                DeviceKind::Other(name) => {
                    let n = next("other");
                    format!("{name}{n}")
                }
            };
            d.alias = match &d.device.user_alias {
                Some(ua) if is_user_alias(ua) => ua.clone(),
                _ => alias,
            };
            if !seen.insert(d.alias.clone())
                && d.device.user_alias.as_deref() == Some(d.alias.as_str())
            {
                // virDomainDefValidateAliases.
                return Err(
                    dev_err(d, format!("non unique alias detected: {}", d.alias))
                        .element("alias")
                        .attr("name", d.alias.clone()),
                );
            }
        }
        for d in &self.devs {
            if let Some(ua) = &d.device.user_alias
                && !is_user_alias(ua)
            {
                self.warnings.push(format!(
                    "{}: user alias '{ua}' ignored, as libvirt ignores it: a user alias is 'ua-' followed by letters, digits, '_' and '-'",
                    d.alias
                ));
            }
        }
        Ok(())
    }
}

impl Work<'_> {
    /// Every device's alias is its QEMU id, so no two may share one. Two devices libvirt
    /// names alike (disk targets 'vda' and 'vda1' both number 0) pass libvirt's checks and
    /// QEMU refuses the second id with this text. Runs after the machine-fit step, which
    /// refuses some of those pairs with a better reason (an IDE controller on q35 next to
    /// the built-in SATA controller libvirt also calls 'ide').
    pub(super) fn check_ids(&self) -> Result<(), Error> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for d in &self.devs {
            // A USB companion controller gets no id: it names its master's bus.
            if d.controller()
                .is_some_and(|c| classify::usb_master_startport(c).is_some())
            {
                continue;
            }
            if !seen.insert(d.alias.as_str()) {
                return Err(dev_err(d, format!("Duplicate ID '{}' for device", d.alias)));
            }
        }
        Ok(())
    }
}

/// Whether libvirt keeps a user alias when it defines a domain (domain_conf.c,
/// virDomainDeviceInfoParseXML): the `ua-` prefix, then only ASCII letters, digits, `_`
/// and `-` (USER_ALIAS_CHARS). Any other alias is dropped and the device gets its own.
fn is_user_alias(ua: &str) -> bool {
    ua.starts_with("ua-")
        && ua
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
