//! Delta debugging (Zeller and Hildebrandt's `ddmin`) over a domain's device list, then
//! over each device's explicit address: the smallest domain that still shows the same
//! disagreement. Pure: the caller's predicate does the launching.

use super::generate::{GenDevice, GenDomain};

/// A predicate with a budget: tests beyond `budget` answer `false` without running.
pub struct Budget {
    /// Tests left.
    pub left: usize,
    /// Tests run.
    pub used: usize,
}

impl Budget {
    /// A budget of `n` tests.
    pub fn new(n: usize) -> Budget {
        Budget { left: n, used: 0 }
    }

    fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.used += 1;
        true
    }
}

/// `ddmin`: a 1-minimal subsequence of `items` for which `test` holds (assumed to hold for
/// `items`). Order is kept. Stops early when the budget runs out.
pub fn ddmin<T: Clone>(
    items: &[T],
    budget: &mut Budget,
    test: &mut dyn FnMut(&[T]) -> bool,
) -> Vec<T> {
    let mut cur: Vec<T> = items.to_vec();
    if cur.is_empty() {
        return cur;
    }
    if budget.take() && test(&[]) {
        return Vec::new();
    }
    let mut n = 2usize;
    while cur.len() >= 2 {
        let chunks = split(&cur, n);
        let mut reduced = false;
        for c in &chunks {
            if !budget.take() {
                return cur;
            }
            if test(c) {
                cur.clone_from(c);
                n = 2;
                reduced = true;
                break;
            }
        }
        if !reduced && n > 2 {
            for i in 0..chunks.len() {
                let complement: Vec<T> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, c)| c.iter().cloned())
                    .collect();
                if !budget.take() {
                    return cur;
                }
                if test(&complement) {
                    cur = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (n * 2).min(cur.len());
        }
    }
    cur
}

fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.min(items.len()).max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + (items.len() - start) / (n - i);
        out.push(items[start..end].to_vec());
        start = end;
    }
    out
}

/// Minimises a domain: first its device list, then each remaining explicit address
/// (dropped when the disagreement survives without it).
pub fn minimize_domain(
    dom: &GenDomain,
    budget: &mut Budget,
    still_fails: &mut dyn FnMut(&GenDomain) -> bool,
) -> GenDomain {
    let mut with = |devs: &[GenDevice]| {
        let mut d = dom.clone();
        d.devices = devs.to_vec();
        still_fails(&d)
    };
    let devices = ddmin(&dom.devices, budget, &mut with);
    let mut out = dom.clone();
    out.devices = devices;
    for i in 0..out.devices.len() {
        if out.devices[i].address.is_none()
            || out.devices[i]
                .address
                .as_deref()
                .is_some_and(|a| a.contains("unassigned"))
        {
            continue;
        }
        let mut trial = out.clone();
        trial.devices[i].address = None;
        if !budget.take() {
            break;
        }
        if still_fails(&trial) {
            out = trial;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ddmin_finds_the_pair_that_fails_together() {
        // Fails when both 3 and 7 are present, whatever else is.
        let items: Vec<u32> = (0..16).collect();
        let mut runs = 0;
        let mut b = Budget::new(1000);
        let got = ddmin(&items, &mut b, &mut |s: &[u32]| {
            runs += 1;
            s.contains(&3) && s.contains(&7)
        });
        assert_eq!(got, vec![3, 7]);
        assert_eq!(runs, b.used);
    }

    #[test]
    fn test_ddmin_keeps_a_single_culprit_and_order() {
        let items = vec!["a", "b", "c", "d", "e"];
        let mut b = Budget::new(1000);
        let got = ddmin(&items, &mut b, &mut |s: &[&str]| s.contains(&"d"));
        assert_eq!(got, vec!["d"]);
        let got = ddmin(&items, &mut Budget::new(1000), &mut |s: &[&str]| {
            s.contains(&"e") && s.contains(&"a")
        });
        assert_eq!(got, vec!["a", "e"]);
    }

    #[test]
    fn test_ddmin_empty_when_nothing_is_needed() {
        let got = ddmin(&[1, 2, 3], &mut Budget::new(10), &mut |_: &[i32]| true);
        assert!(got.is_empty());
    }

    #[test]
    fn test_ddmin_stops_at_the_budget() {
        let items: Vec<u32> = (0..64).collect();
        let mut b = Budget::new(3);
        let got = ddmin(&items, &mut b, &mut |s: &[u32]| s.contains(&40));
        assert_eq!(b.used, 3);
        assert!(got.contains(&40));
        assert!(got.len() < 64);
    }

    #[test]
    fn test_minimize_domain_drops_devices_and_addresses_not_needed() {
        let dev = |tag: &str, addr: Option<&str>| GenDevice {
            tag: tag.to_owned(),
            attrs: String::new(),
            children: Vec::new(),
            address: addr.map(str::to_owned),
        };
        let dom = GenDomain {
            name: "x".into(),
            arch: "x86_64".into(),
            machine: "pc".into(),
            devices: vec![
                dev("disk", Some("<address type='pci' slot='0x03'/>")),
                dev("interface", Some("<address type='pci' slot='0x05'/>")),
                dev("sound", None),
                dev("video", Some("<address type='pci' slot='0x07'/>")),
            ],
        };
        // The "bug": an interface at slot 5 together with any video device.
        let got = minimize_domain(&dom, &mut Budget::new(100), &mut |d: &GenDomain| {
            d.devices.iter().any(|x| {
                x.tag == "interface" && x.address.as_deref().is_some_and(|a| a.contains("0x05"))
            }) && d.devices.iter().any(|x| x.tag == "video")
        });
        let tags: Vec<&str> = got.devices.iter().map(|d| d.tag.as_str()).collect();
        assert_eq!(tags, vec!["interface", "video"]);
        assert!(got.devices[0].address.is_some());
        assert!(got.devices[1].address.is_none());
    }
}
