//! Steps 9 and 10: zPCI uid/fid and CCW devnos, given in libvirt's device iteration order.

use std::collections::{BTreeMap, BTreeSet};

use qconform_domxml::{Address, CcwAddress, PciAddress, Zpci};

use super::{Work, dev_err};
use crate::classify;
use crate::{Attach, Dev, Error};

impl Work<'_> {
    /// Position of each device within its libvirt list where that list is kept sorted
    /// (controllers by type and index, disks by bus and target); other devices keep their
    /// document index, which is their list order.
    pub(super) fn list_positions(&self) -> BTreeMap<usize, usize> {
        let mut pos: BTreeMap<usize, usize> = self
            .ctrl_order
            .iter()
            .enumerate()
            .map(|(p, &i)| (i, p))
            .collect();
        pos.extend(
            crate::names::libvirt_disk_order(&self.devs)
                .into_iter()
                .enumerate()
                .map(|(p, i)| (i, p)),
        );
        pos
    }

    /// Device indices in libvirt's iteration order.
    pub(super) fn iteration_order(&self) -> Vec<usize> {
        let list_pos = self.list_positions();
        let mut v: Vec<usize> = (0..self.devs.len()).collect();
        v.sort_by_key(|&i| {
            let k = &self.devs[i].device.kind;
            let pos = list_pos.get(&i).copied().unwrap_or(i);
            (classify::iteration_rank(k), pos)
        });
        v
    }

    pub(super) fn assign_zpci(&mut self) -> Result<(), Error> {
        if !self.features.zpci {
            return Ok(());
        }
        let order = self.iteration_order();
        let ext: Vec<bool> = self
            .devs
            .iter()
            .map(|d| d.attach == Attach::Pci && classify::zpci_capable(&d.device.kind))
            .collect();
        let explicit = |d: &Dev| match &d.device.address {
            Address::Pci(p) => p.zpci,
            _ => None,
        };
        let mut uids: BTreeSet<u32> = BTreeSet::new();
        let mut fids: BTreeSet<u32> = BTreeSet::new();
        let mut out: Vec<Option<Zpci>> = vec![None; self.devs.len()];
        // Phase A: devices with a uid or a fid get the other one filled in right away.
        for &i in &order {
            if !ext[i] {
                continue;
            }
            let d = &self.devs[i];
            let Some(z) = explicit(d) else { continue };
            if z.uid.is_none() && z.fid.is_none() {
                continue;
            }
            let uid = match z.uid {
                Some(u) => u,
                None => lowest_free(&uids, 1, 0xffff)
                    .ok_or_else(|| dev_err(d, "There is no more free uid."))?,
            };
            let fid = match z.fid {
                Some(f) => f,
                None => lowest_free(&fids, 0, u32::MAX)
                    .ok_or_else(|| dev_err(d, "There is no more free fid."))?,
            };
            reserve_id(&mut uids, uid, "uid", d)?;
            reserve_id(&mut fids, fid, "fid", d)?;
            out[i] = Some(Zpci {
                uid: Some(uid),
                fid: Some(fid),
            });
        }
        // Phase B: the others, in iteration order.
        for &i in &order {
            if !ext[i] || out[i].is_some() {
                continue;
            }
            let d = &self.devs[i];
            let uid = lowest_free(&uids, 1, 0xffff)
                .ok_or_else(|| dev_err(d, "There is no more free uid."))?;
            let fid = lowest_free(&fids, 0, u32::MAX)
                .ok_or_else(|| dev_err(d, "There is no more free fid."))?;
            uids.insert(uid);
            fids.insert(fid);
            out[i] = Some(Zpci {
                uid: Some(uid),
                fid: Some(fid),
            });
        }
        for (i, z) in out.into_iter().enumerate() {
            if let Some(z) = z {
                match &mut self.devs[i].device.address {
                    Address::Pci(p) => p.zpci = Some(z),
                    a => {
                        *a = Address::Pci(PciAddress {
                            zpci: Some(z),
                            ..PciAddress::default()
                        })
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn assign_ccw(&mut self) -> Result<(), Error> {
        let order = self.iteration_order();
        let mut used: BTreeSet<CcwAddress> = BTreeSet::new();
        for &i in &order {
            let d = &self.devs[i];
            if d.attach != Attach::Ccw {
                continue;
            }
            if let Address::Ccw(c) = &d.device.address
                && !used.insert(*c)
            {
                return Err(dev_err(d, format!("The CCW devno '{c}' is in use already"))
                    .element("address")
                    .attr("devno", format!("0x{:04x}", c.devno)));
            }
        }
        let mut next = CcwAddress {
            cssid: 0xfe,
            ssid: 0,
            devno: 0,
        };
        for &i in &order {
            if self.devs[i].attach != Attach::Ccw
                || matches!(self.devs[i].device.address, Address::Ccw(_))
            {
                continue;
            }
            while used.contains(&next) {
                if next.devno >= 0xffff {
                    return Err(dev_err(&self.devs[i], "There are no more free CCW devnos."));
                }
                next.devno += 1;
            }
            used.insert(next);
            self.devs[i].device.address = Address::Ccw(next);
        }
        Ok(())
    }
}

fn lowest_free(set: &BTreeSet<u32>, start: u32, end: u32) -> Option<u32> {
    let mut v = start;
    for &u in set.range(start..=end) {
        if u != v {
            break;
        }
        if v == end {
            return None;
        }
        v += 1;
    }
    Some(v)
}

fn reserve_id(set: &mut BTreeSet<u32>, v: u32, what: &str, d: &Dev) -> Result<(), Error> {
    if !set.insert(v) {
        let shown = if what == "uid" {
            format!("0x{v:04x}")
        } else {
            format!("0x{v:08x}")
        };
        return Err(
            dev_err(d, format!("zPCI {what} {shown} is already reserved"))
                .element("zpci")
                .attr(what, shown),
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_lowest_free() {
        let s: BTreeSet<u32> = [1, 2, 4].into_iter().collect();
        assert_eq!(lowest_free(&s, 1, 10), Some(3));
        assert_eq!(lowest_free(&s, 0, 10), Some(0));
        let full: BTreeSet<u32> = (1..=3).collect();
        assert_eq!(lowest_free(&full, 1, 3), None);
    }
}
