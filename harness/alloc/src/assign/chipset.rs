//! The chipset slots of pc (PIIX3) and q35 (ICH9), the machine's built-in functions, and the
//! preferred slots of the primary video, a dmi-to-pci-bridge and the first ich9 sound card
//! (qemuDomainValidateDevicePCISlotsPIIX3/Q35).

use qconform_domxml::DeviceKind;

use super::{Work, addr_err, dev_err};
use crate::classify;
use crate::machine::Family;
use crate::pci::{AddrSet, From, Loc};
use crate::rules::{Flags, PciModel};
use crate::{Attach, Dev, Error};

impl Work<'_> {
    /// The PIIX3 IDE and USB functions, which the chipset step reserves.
    pub(super) fn piix3_builtin(&self, d: &Dev, loc: Loc) -> bool {
        let Some(c) = d.controller() else {
            return false;
        };
        self.family == Family::Pc
            && c.index == Some(0)
            && loc.bus == 0
            && loc.slot == 1
            && classify::piix3_function(c) == Some(loc.function)
    }

    /// Built-in PCI functions of the machine on bus 0, from the snapshot or the family.
    pub(super) fn builtin(&self) -> Vec<Loc> {
        if let Some(mc) = self.caps.index.machine_caps.get(&self.machine)
            && mc.starts
        {
            return mc
                .builtin_pci
                .iter()
                .filter(|p| p.bus == 0)
                .map(|p| Loc {
                    bus: 0,
                    slot: p.slot,
                    function: p.function,
                })
                .collect();
        }
        let l = |slot, function| Loc {
            bus: 0,
            slot,
            function,
        };
        match self.family {
            Family::Pc => vec![l(0, 0), l(1, 0), l(1, 1), l(1, 3)],
            Family::Q35 => vec![l(0, 0), l(0x1f, 0), l(0x1f, 2), l(0x1f, 3)],
            _ => Vec::new(),
        }
    }

    /// Chipset slots (qemuDomainValidateDevicePCISlotsPIIX3/Q35).
    pub(super) fn chipset(&self, set: &mut AddrSet, locs: &mut [Option<Loc>]) -> Result<(), Error> {
        if set.buses.is_empty() {
            return Ok(());
        }
        let l = |slot, function| Loc {
            bus: 0,
            slot,
            function,
        };
        let mut claimed: Vec<(Loc, usize)> = Vec::new();
        let mut done: Vec<Loc> = Vec::new();
        match self.family {
            Family::Pc => {
                for (i, d) in self.devs.iter().enumerate() {
                    let Some(c) = d.controller() else { continue };
                    if c.index != Some(0) {
                        continue;
                    }
                    let Some(function) = classify::piix3_function(c) else {
                        continue;
                    };
                    let want = l(1, function);
                    let msg = if c.ctype == "ide" {
                        "Primary IDE controller must have PCI address 0:0:1.1"
                    } else {
                        "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2"
                    };
                    if let Some(have) = locs[i]
                        && have != want
                    {
                        return Err(addr_err(d, msg.into()));
                    }
                    locs[i] = Some(want);
                    claimed.push((want, i));
                }
            }
            Family::Q35 => {
                for (i, d) in self.devs.iter().enumerate() {
                    let Some(c) = d.controller() else { continue };
                    if c.ctype == "sata" && c.index == Some(0) {
                        let want = l(0x1f, 2);
                        if let Some(have) = locs[i]
                            && have != want
                        {
                            return Err(addr_err(
                                d,
                                "Primary SATA controller must have PCI address 0:0:1f.2".into(),
                            ));
                        }
                        let collected = locs[i].is_some();
                        locs[i] = Some(want);
                        if collected {
                            // Reserved with the other document addresses already.
                            done.push(want);
                        } else {
                            claimed.push((want, i));
                        }
                    }
                }
            }
            _ => {}
        }
        let chip_flags = match self.family {
            Family::Q35 => Flags::PCIE_DEVICE,
            _ => Flags::PCI_DEVICE,
        };
        let min_slot = set.buses[0].min_slot;
        let mut reserve: Vec<(Loc, Option<usize>)> = self
            .builtin()
            .into_iter()
            .filter(|b| b.slot >= min_slot)
            .map(|b| (b, None))
            .collect();
        for (loc, i) in &claimed {
            match reserve.iter_mut().find(|(b, _)| b == loc) {
                Some(entry) => entry.1 = Some(*i),
                None => reserve.push((*loc, Some(*i))),
            }
        }
        reserve.retain(|(l, _)| !done.contains(l));
        reserve.sort();
        for (loc, owner) in reserve {
            if let Err(m) = set.reserve(loc, chip_flags, From::Config) {
                // Say who else wanted the function the machine (or the chipset
                // controller) sits on.
                let other = locs
                    .iter()
                    .enumerate()
                    .find(|(j, l)| **l == Some(loc) && Some(*j) != owner)
                    .map(|(j, _)| j);
                let what = match owner {
                    Some(o) => format!("the chipset's {}", self.devs[o].alias),
                    None => "a built-in device of the machine".to_string(),
                };
                return Err(match other {
                    Some(j) => addr_err(
                        &self.devs[j],
                        format!("{m}: {loc} is taken by {what} on '{}'", self.machine),
                    ),
                    None => Error::new(m),
                });
            }
        }

        // An ich9-uhci1 without address → 00:1d.0, else 00:1a.0, if the slot is free
        // (q35; the first USB2 set's place on real hardware). Its companions join it later.
        if self.family == Family::Q35 {
            for &i in &self.ctrl_order {
                let d = &self.devs[i];
                let uhci1 = d
                    .controller()
                    .is_some_and(|c| c.ctype == "usb" && c.model.as_deref() == Some("ich9-uhci1"));
                if !uhci1 || locs[i].is_some() || d.attach != Attach::Pci {
                    continue;
                }
                if let Some(want) = [l(0x1d, 0), l(0x1a, 0)]
                    .into_iter()
                    .find(|w| !set.slot_in_use(*w))
                {
                    set.reserve(want, chip_flags, From::Config)
                        .map_err(|m| dev_err(d, m))?;
                    locs[i] = Some(want);
                }
            }
        }

        // dmi-to-pci-bridge without address → 00:1e.0 if free (q35).
        if self.family == Family::Q35 {
            for (i, d) in self.devs.iter().enumerate() {
                if d.pci_model() == Some(PciModel::DmiToPciBridge) && locs[i].is_none() {
                    let want = l(0x1e, 0);
                    if !set.slot_in_use(want) {
                        set.reserve(want, self.connect_flags[i], From::Config)
                            .map_err(|m| dev_err(d, m))?;
                        locs[i] = Some(want);
                    }
                }
            }
        }

        // Primary video: 00:02.0 on pc, 00:01.0 on q35.
        let video_slot = match self.family {
            Family::Pc => Some(2u8),
            Family::Q35 => Some(1u8),
            _ => None,
        };
        if let Some(slot) = video_slot
            && let Some(i) = self.primary_video()
            && locs[i].is_none()
            && self.devs[i].attach == Attach::Pci
        {
            let want = l(slot, 0);
            set.validate(want, chip_flags, From::Config)
                .map_err(|m| dev_err(&self.devs[i], m))?;
            if set.slot_in_use(want) {
                let got = set
                    .reserve_next(self.connect_flags[i])
                    .map_err(|m| dev_err(&self.devs[i], m))?;
                locs[i] = Some(got);
            } else {
                set.reserve(want, chip_flags, From::Config)
                    .map_err(|m| dev_err(&self.devs[i], m))?;
                locs[i] = Some(want);
            }
        }

        // First ich9 sound card → 00:1b.0 if free (q35).
        if self.family == Family::Q35 {
            let first = self
                .devs
                .iter()
                .enumerate()
                .find(|(_, d)| classify::is_ich9_sound(&d.device.kind));
            if let Some((i, d)) = first {
                let want = l(0x1b, 0);
                if locs[i].is_none() && d.attach == Attach::Pci && !set.slot_in_use(want) {
                    set.reserve(want, chip_flags, From::Config)
                        .map_err(|m| dev_err(d, m))?;
                    locs[i] = Some(want);
                }
            }
        }
        Ok(())
    }

    fn primary_video(&self) -> Option<usize> {
        let videos: Vec<usize> = self
            .devs
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d.device.kind, DeviceKind::Video(_)))
            .map(|(i, _)| i)
            .collect();
        let primary = videos
            .iter()
            .copied()
            .find(|&i| matches!(&self.devs[i].device.kind, DeviceKind::Video(v) if v.primary))
            .or_else(|| videos.first().copied())?;
        (!classify::is_slotless_video(&self.devs[primary].device.kind)).then_some(primary)
    }
}
