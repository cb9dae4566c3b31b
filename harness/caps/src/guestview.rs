//! One PCI function as a guest enumerates it: the unit of the guest view that the plan
//! predicts and the live and guest stages observe.

use std::fmt;

use serde::{Serialize, Serializer};

/// One line of the guest view, `DDDD:BB:SS.F CCCC: VVVV:DDDD` (`lspci -n` without
/// revisions). An identity field that cannot be known offline is `None` and prints as
/// `????`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPciFunction {
    /// PCI domain (the zPCI uid on s390x, the PHB on pSeries).
    pub domain: u32,
    /// Bus number as the guest's firmware or kernel assigns it.
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
    /// Base class << 8 | subclass.
    pub class: Option<u16>,
    /// Vendor id.
    pub vendor: Option<u16>,
    /// Device id.
    pub device: Option<u16>,
}

impl GuestPciFunction {
    /// `DDDD:BB:SS.F`, lowercase hex.
    pub fn address(&self) -> String {
        format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }

    /// Domain, bus, slot and function.
    pub fn key(&self) -> (u32, u32, u32, u32) {
        (self.domain, self.bus, self.slot, self.function)
    }
}

struct Hex4(Option<u16>);

impl fmt::Display for Hex4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(x) => write!(f, "{x:04x}"),
            None => f.write_str("????"),
        }
    }
}

impl fmt::Display for GuestPciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x} {}: {}:{}",
            self.domain,
            self.bus,
            self.slot,
            self.function,
            Hex4(self.class),
            Hex4(self.vendor),
            Hex4(self.device)
        )
    }
}

/// Serialised as its line (the `guest_pci` strings of `qconform plan --format json`).
impl Serialize for GuestPciFunction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_line_form_known_and_unknown() {
        let mut f = GuestPciFunction {
            domain: 0,
            bus: 1,
            slot: 0x1f,
            function: 2,
            class: Some(0x0200),
            vendor: Some(0x1af4),
            device: Some(0x1041),
        };
        assert_eq!(f.to_string(), "0000:01:1f.2 0200: 1af4:1041");
        assert_eq!(f.address(), "0000:01:1f.2");
        f.class = None;
        f.vendor = None;
        f.device = None;
        assert_eq!(f.to_string(), "0000:01:1f.2 ????: ????:????");
        assert_eq!(
            serde_json::to_string(&f).expect("json"),
            "\"0000:01:1f.2 ????: ????:????\""
        );
    }
}
