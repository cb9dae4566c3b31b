//! libvirt's define-time checks that are not about placement (domain_conf.c parsing,
//! domain_postparse.c, domain_validate.c), and the two it leaves to QEMU at start that
//! would make QEMU refuse or misplace a device.
//!
//! Each rule is restated from libvirt's source with its message:
//!
//! * `<mac address>` must be six `:`-separated hex octets of one or two digits
//!   (virMacAddrParse), else "unable to parse mac address '…'"; a multicast address (low
//!   bit of the first octet set) is refused with "expected unicast mac address, found
//!   multicast '…'" (virDomainNetDefParseXML).
//! * At most one `<memballoon>` ("only a single memory balloon device is supported",
//!   virDomainDefParseXML).
//! * `<memballoon model>` is one of libvirt's models ("Invalid value for attribute 'model'
//!   in element 'memballoon': 'foo'.", virXMLPropEnum); 'xen' has no QEMU device.
//! * `<rng model>` is `virtio`, `virtio-transitional` or `virtio-non-transitional`
//!   ("unknown RNG model '…'", virDomainRNGDefParseXML).
//! * A `<boot order>` value is used once ("boot order '1' used for more than one device",
//!   virDomainDefCollectBootOrder in domain_postparse.c).
//! * A disk's target starts with `hd`, `sd`, `vd`, `xvd` or `ubd`, a floppy's with `fd`
//!   ("Invalid harddisk device name: xyz", virDomainDiskDefValidate).
//! * Two disks never share a `<target dev>` ("target 'vda' duplicated for disk sources
//!   '…' and '…'", virDomainDiskDefCheckDuplicateInfo) nor a drive address on the same
//!   bus ("Found duplicate drive address for disk with target name 'fda' controller='0'
//!   bus='0' target='0' unit='0'", virDomainDefDuplicateDriveAddressesValidate).
//! * A PCI controller's `<target index>` (the pSeries PHB index) is 0-30 ("PCI controller
//!   target index '31' out of range - must be 0-30"), and 0 exactly for the controller with
//!   index 0 ("Only the PCI controller with index 0 can have target index 0, and vice
//!   versa"; virDomainControllerDefValidate).
//! * The PCI controller with index 0 has no `<node>` ("The PCI controller with index=0
//!   can't be associated with a NUMA node"), and an expander's node is one of the
//!   `<cpu><numa>` cells ("pci-expander-bus with index 1 is configured for a NUMA node (1)
//!   not present in the domain's <cpu><numa> array (0)").
//! * A pSeries panic device has no address ("setting the panic device address is not
//!   supported for model 'pseries'").
//! * A host device (same mode and type, same PCI function, mdev UUID, vhost-scsi WWPN,
//!   USB bus location or vendor/product, SCSI adapter and address or iSCSI target) is
//!   assigned once: "Hostdev already exists in the domain configuration"
//!   (virDomainDefHostdevValidate).
//! * USB controllers (virDomainDefParseXML's controller loop): a `none` controller next
//!   to another one is refused ("Can't add another USB controller: USB is disabled for this
//!   domain"); when USB controllers are given, one of them must be a master, i.e. not a
//!   companion (`ich9-uhci1..3`, or any model with `<master startport>`): "No master USB
//!   controller specified". Companions share their master's index; two controllers that
//!   have their own ports (everything but the ICH9 UHCI companions) may not
//!   ("Duplicate USB controllers with index 0", virDomainUSBAddressSetAddController).

use std::collections::BTreeMap;

use qconform_domxml::{Address, DeviceKind, Domain};

use super::{Work, dev_err};
use crate::machine::Family;
use crate::{Error, classify};

/// libvirt's virMacAddrParse: six octets of one or two hex digits separated by `:`;
/// whitespace (or nothing) after the last one.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for (i, o) in out.iter_mut().enumerate() {
        let mut p = parts.next()?;
        if i == 5 {
            p = p.trim_end_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
        }
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Work<'_> {
    /// Checks libvirt makes while parsing the document.
    pub(super) fn check_parse(&self, dom: &Domain) -> Result<(), Error> {
        let mut balloons = 0;
        let (mut usb_none, mut usb_other, mut usb_master) = (false, false, false);
        let mut first_usb = None;
        for d in &dom.devices {
            match &d.kind {
                DeviceKind::Controller(c) if c.ctype == "usb" => {
                    first_usb.get_or_insert(d.pos);
                    let none = c.model.as_deref() == Some("none");
                    if usb_none || (none && usb_other) {
                        return Err(Error::new(
                            "Can't add another USB controller: USB is disabled for this domain",
                        )
                        .element("controller")
                        .at(d.pos));
                    }
                    if none {
                        usb_none = true;
                    } else {
                        usb_other = true;
                    }
                    if classify::usb_master_startport(c).is_none() {
                        usb_master = true;
                    }
                }
                DeviceKind::Interface(n) => {
                    if let Some(mac) = &n.mac {
                        let e = || {
                            Error::new(String::new())
                                .element("mac")
                                .attr("address", mac.clone())
                                .at(d.pos)
                        };
                        let Some(octets) = parse_mac(mac) else {
                            return Err(Error {
                                message: format!("unable to parse mac address '{mac}'"),
                                ..e()
                            });
                        };
                        if octets[0] & 1 == 1 {
                            return Err(Error {
                                message: format!(
                                    "expected unicast mac address, found multicast '{mac}'"
                                ),
                                ..e()
                            });
                        }
                    }
                }
                DeviceKind::Memballoon(m) => {
                    match m.model.as_deref() {
                        None
                        | Some("virtio")
                        | Some("virtio-transitional")
                        | Some("virtio-non-transitional")
                        | Some("none") => {}
                        Some("xen") => {
                            return Err(Error::new(
                                "memory balloon model 'xen' has no QEMU device: use 'virtio' or 'none'",
                            )
                            .element("memballoon")
                            .attr("model", "xen")
                            .at(d.pos));
                        }
                        Some(other) => {
                            // virXMLPropEnum's wording.
                            return Err(Error::new(format!(
                                "Invalid value for attribute 'model' in element 'memballoon': '{other}'."
                            ))
                            .element("memballoon")
                            .attr("model", other)
                            .at(d.pos));
                        }
                    }
                    balloons += 1;
                    if balloons > 1 {
                        return Err(
                            Error::new("only a single memory balloon device is supported")
                                .element("memballoon")
                                .at(d.pos),
                        );
                    }
                }
                DeviceKind::Rng(m) => match m.model.as_deref() {
                    None
                    | Some("virtio")
                    | Some("virtio-transitional")
                    | Some("virtio-non-transitional") => {}
                    Some(other) => {
                        return Err(Error::new(format!("unknown RNG model '{other}'"))
                            .element("rng")
                            .attr("model", other)
                            .at(d.pos));
                    }
                },
                _ => {}
            }
        }
        if usb_other && !usb_master {
            let mut e = Error::new("No master USB controller specified").element("controller");
            if let Some(p) = first_usb {
                e = e.at(p);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Checks libvirt makes after filling in defaults (post-parse and validation): boot
    /// orders, disk targets and drive addresses.
    pub(super) fn check_define(&self) -> Result<(), Error> {
        let mut boot: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, d) in self.devs.iter().enumerate() {
            if let Some(o) = d.device.boot_order
                && boot.insert(o, i).is_some()
            {
                return Err(
                    dev_err(d, format!("boot order '{o}' used for more than one device"))
                        .element("boot")
                        .attr("order", o.to_string()),
                );
            }
        }
        // virDomainControllerDefValidate: a PCI controller's target index (the pSeries PHB
        // index) is 0-30, and 0 exactly for the controller with index 0.
        for d in &self.devs {
            let Some(c) = d.controller() else { continue };
            let (true, Some(t), Some(idx)) = (c.ctype == "pci", c.target.index, c.index) else {
                continue;
            };
            let at = |msg: String| {
                dev_err(d, msg)
                    .element("target")
                    .attr("index", t.to_string())
            };
            if t > 30 {
                return Err(at(format!(
                    "PCI controller target index '{t}' out of range - must be 0-30"
                )));
            }
            if (idx == 0) != (t == 0) {
                return Err(at(
                    "Only the PCI controller with index 0 can have target index 0, and vice versa"
                        .to_owned(),
                ));
            }
        }
        // The default PHB (or root bus) carries no NUMA node, and an expander's node is
        // one of the guest's (virDomainControllerDefValidate, qemuValidateDomainDef).
        for d in &self.devs {
            let Some(c) = d.controller() else { continue };
            let (true, Some(node), Some(idx)) = (c.ctype == "pci", c.target.numa_node, c.index)
            else {
                continue;
            };
            let at = |msg: String| dev_err(d, msg).element("node");
            if idx == 0 {
                return Err(at(
                    "The PCI controller with index=0 can't be associated with a NUMA node"
                        .to_owned(),
                ));
            }
            let cells = self.numa_cells;
            if usize::try_from(node).map_or(true, |n| n >= cells) {
                let model = c.model.as_deref().unwrap_or("pci");
                return Err(at(format!(
                    "{model} with index {idx} is configured for a NUMA node ({node}) not present in the domain's <cpu><numa> array ({cells})"
                )));
            }
        }
        // qemuValidateDomainDeviceDefPanic: the pSeries panic device has no address.
        if self.family == Family::Pseries {
            for d in &self.devs {
                if let DeviceKind::Panic(p) = &d.device.kind
                    && p.model.as_deref().is_none_or(|m| m == "pseries")
                    && !matches!(d.device.address, Address::Absent | Address::None)
                {
                    return Err(dev_err(
                        d,
                        "setting the panic device address is not supported for model 'pseries'",
                    )
                    .element("address"));
                }
            }
        }
        // virDomainDefHostdevValidate / virDomainHostdevMatch: one host source, once.
        let hostdevs: Vec<_> = self
            .devs
            .iter()
            .filter_map(|d| match &d.device.kind {
                DeviceKind::Hostdev(h) => Some((d, h)),
                _ => None,
            })
            .collect();
        for (n, (_, a)) in hostdevs.iter().enumerate() {
            for (db, b) in &hostdevs[n + 1..] {
                let same_source = a.mode == b.mode
                    && a.htype == b.htype
                    && match a.htype.as_str() {
                        "pci" => a.host_pci.is_some() && a.host_pci == b.host_pci,
                        "mdev" => a.uuid.is_some() && a.uuid == b.uuid,
                        "scsi_host" => a.wwpn.is_some() && a.wwpn == b.wwpn,
                        "usb" | "scsi" => a.source_key.is_some() && a.source_key == b.source_key,
                        _ => false,
                    };
                if same_source {
                    return Err(
                        dev_err(db, "Hostdev already exists in the domain configuration")
                            .element("source"),
                    );
                }
            }
        }
        let mut usb_buses: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, d) in self.devs.iter().enumerate() {
            if let Some(c) = d.controller()
                && c.ctype == "usb"
                && classify::usb_ports(c) > 0
                && let Some(idx) = c.index
                && usb_buses.insert(idx, i).is_some()
            {
                return Err(
                    dev_err(d, format!("Duplicate USB controllers with index {idx}"))
                        .attr("index", idx.to_string()),
                );
            }
        }
        for d in &self.devs {
            let DeviceKind::Disk(k) = &d.device.kind else {
                continue;
            };
            // virDomainDiskDefValidate.
            let msg = match k.device.as_str() {
                "disk" | "lun"
                    if !["hd", "sd", "vd", "xvd", "ubd"]
                        .iter()
                        .any(|p| k.dev.starts_with(p)) =>
                {
                    format!("Invalid harddisk device name: {}", k.dev)
                }
                "floppy" if !k.dev.starts_with("fd") => {
                    format!("Invalid floppy device name: {}", k.dev)
                }
                _ => continue,
            };
            return Err(dev_err(d, msg).element("target").attr("dev", k.dev.clone()));
        }
        let disks: Vec<_> = self
            .devs
            .iter()
            .filter_map(|d| match &d.device.kind {
                DeviceKind::Disk(k) => Some((d, k)),
                _ => None,
            })
            .collect();
        for (n, (da, a)) in disks.iter().enumerate() {
            for (_, b) in &disks[n + 1..] {
                if a.dev == b.dev {
                    let src = |s: &Option<String>| s.clone().unwrap_or_else(|| "<null>".into());
                    return Err(dev_err(
                        da,
                        format!(
                            "target '{}' duplicated for disk sources '{}' and '{}'",
                            a.dev,
                            src(&a.source),
                            src(&b.source)
                        ),
                    )
                    .element("target")
                    .attr("dev", a.dev.clone()));
                }
            }
        }
        for (n, (da, a)) in disks.iter().enumerate() {
            let Address::Drive(x) = &da.device.address else {
                continue;
            };
            for (db, b) in &disks[n + 1..] {
                if a.bus == b.bus && db.device.address == da.device.address {
                    return Err(dev_err(
                        da,
                        format!(
                            "Found duplicate drive address for disk with target name '{}' controller='{}' bus='{}' target='{}' unit='{}'",
                            a.dev, x.controller, x.bus, x.target, x.unit
                        ),
                    )
                    .element("target")
                    .attr("dev", a.dev.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn mac_syntax_is_libvirts() {
        assert_eq!(
            parse_mac("52:54:00:00:00:01"),
            Some([0x52, 0x54, 0, 0, 0, 1])
        );
        assert_eq!(parse_mac("2:4:0:0:0:a"), Some([2, 4, 0, 0, 0, 0xa]));
        assert_eq!(
            parse_mac("52:54:00:00:00:01 "),
            Some([0x52, 0x54, 0, 0, 0, 1])
        );
        for bad in [
            "",
            "52:54:00:00:00",
            "52:54:00:00:00:01:02",
            "52-54-00-00-00-01",
            "52:54:00:00:00:001",
            "52:54:00:00:00:zz",
            "+2:54:00:00:00:01",
            "52::00:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
