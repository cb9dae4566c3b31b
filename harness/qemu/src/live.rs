//! Live checks: run a QEMU command line on the real binary and observe what it built.
//!
//! * [`run_argv`] starts a planned argv with QMP on stdio and reads `query-pci` and
//!   `info qtree`. Where firmware numbers the PCI bridges (x86 SeaBIOS) QEMU runs without
//!   `-S` and `query-pci` is polled until every bridge has a secondary bus number (at `-S`
//!   only bus 0 is visible); elsewhere (s390x, ARM/RISC-V `virt` and pseries without
//!   firmware) QEMU stays at `-S` and the topology comes from `info qtree`.
//! * [`try_argv`] tells whether QEMU accepts a hand-written command line at all, with its
//!   exit status and error text when it refuses.
//! * [`observe_numbered`], [`observe_frozen`] and [`observe_zpci`] turn those replies into
//!   the functions of the guest view that the plan predicts, marking
//!   functions QEMU lists but a guest never enumerates (a function at slot ≠ 0 behind a
//!   PCIe root or downstream port) instead of dropping them.
//! * [`render_observed`] lines observed functions up with the predicted
//!   [`GuestPciFunction`]s for a text diff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use qconform_caps::{GuestPciFunction, QtreeBus, QtreeDevice, parse_qtree};
use serde_json::Value;
use tokio::time::Instant;

use crate::qmp::{Exit, Qemu, QemuError, Timeouts};

/// How bus numbers behind bridges become known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Firmware (SeaBIOS) numbers the bridges: run without `-S` and poll `query-pci`.
    Firmware,
    /// Nothing runs before the guest kernel: stay at `-S`; numbers are derived from the
    /// tree the way a guest kernel assigns them (depth first, in devfn order).
    Frozen,
}

/// What one live launch saw.
#[derive(Debug, Clone)]
pub struct LiveRun {
    /// Arguments QEMU was started with (after the program).
    pub args: Vec<String>,
    /// `query-pci` reply (after numbering, for [`Numbering::Firmware`]).
    pub query_pci: Value,
    /// `info qtree` text.
    pub qtree_text: String,
    /// Parsed tree (`None` when the text holds no bus).
    pub qtree: Option<QtreeBus>,
    /// Whether every bridge had a secondary bus number when `query-pci` was read
    /// (always true at `-S`, where nothing is numbered and nothing is expected to be).
    pub bridges_numbered: bool,
    /// Time from QMP ready until the bridges were numbered (or the wait gave up).
    pub numbering_wait: Duration,
    /// How QEMU ended after `quit`.
    pub exit: Exit,
    /// QEMU's stderr (tail).
    pub stderr: String,
}

/// Outcome of [`try_argv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// QEMU built the machine and answered QMP.
    Started {
        /// Arguments used.
        args: Vec<String>,
        /// stderr (warnings).
        stderr: String,
    },
    /// QEMU refused the configuration and exited.
    Refused {
        /// Arguments used.
        args: Vec<String>,
        /// Exit status.
        exit: Exit,
        /// stderr (the error).
        stderr: String,
    },
}

/// Options of the accelerator etc. that the live stage adds; never duplicated when the
/// argv already has them.
fn push_common(args: &mut Vec<String>, frozen: bool) {
    let has = |a: &[String], opt: &str| a.iter().any(|x| x == opt);
    if !has(args, "-nodefaults") {
        args.insert(0, "-nodefaults".into());
    }
    let has_accel = has(args, "-accel")
        || args
            .windows(2)
            .any(|w| matches!(w, [o, v] if (o == "-machine" || o == "-M") && v.contains("accel=")));
    if !has_accel {
        args.extend(["-accel".to_owned(), "tcg".to_owned()]);
    }
    if !has(args, "-display") {
        args.extend(["-display".to_owned(), "none".to_owned()]);
    }
    if frozen && !has(args, "-S") {
        args.push("-S".into());
    }
}

/// Options of a planned argv that cannot work in a test launch (a management monitor,
/// daemonizing, another stdio user) are left out; `-S` is left out where firmware must
/// run. Everything else is passed as planned.
pub fn sanitize_argv(argv: &[String], keep_s: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter().peekable();
    // A leading program name (not an option) is not an argument.
    if it.peek().is_some_and(|a| !a.starts_with('-')) {
        it.next();
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "-S" if !keep_s => {}
            "-daemonize" => {}
            "-qmp" | "-monitor" | "-pidfile" => {
                it.next();
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// The arguments [`run_argv`] starts QEMU with.
pub fn live_args(argv: &[String], numbering: Numbering) -> Vec<String> {
    let frozen = numbering == Numbering::Frozen;
    let mut args = sanitize_argv(argv, frozen);
    push_common(&mut args, frozen);
    args.extend(["-qmp".to_owned(), "stdio".to_owned()]);
    args
}

/// Starts `program` with a planned argv and observes the machine it built. A refused
/// configuration comes back as [`QemuError::Exited`] with QEMU's exit status and error;
/// the process group is killed in every case.
pub async fn run_argv(
    program: &Path,
    argv: &[String],
    numbering: Numbering,
    timeouts: Timeouts,
    numbering_deadline: Duration,
) -> Result<LiveRun, QemuError> {
    let args = live_args(argv, numbering);
    let mut qemu = Qemu::spawn(program, &args, timeouts).await?;
    let ready = Instant::now();
    let mut query_pci = qemu.execute_ok("query-pci", None).await?;
    let mut bridges_numbered = true;
    if numbering == Numbering::Firmware {
        // SeaBIOS first parks every bridge at secondary 255, then numbers them depth
        // first: wait until every bridge is numbered consistently and two readings in a
        // row agree.
        let mut previous: Option<BusSignature> = None;
        loop {
            let sig = bus_signature(&query_pci);
            if all_bridges_numbered(&query_pci) && previous.as_ref() == Some(&sig) {
                break;
            }
            if ready.elapsed() >= numbering_deadline {
                bridges_numbered = false;
                break;
            }
            previous = Some(sig);
            tokio::time::sleep(Duration::from_millis(20)).await;
            query_pci = qemu.execute_ok("query-pci", None).await?;
        }
    }
    let numbering_wait = ready.elapsed();
    let qtree_text = qemu.hmp("info qtree").await?;
    let (exit, stderr) = qemu.quit().await;
    let qtree = parse_qtree(&qtree_text);
    Ok(LiveRun {
        args,
        query_pci,
        qtree_text,
        qtree,
        bridges_numbered,
        numbering_wait,
        exit,
        stderr,
    })
}

/// Tries a hand-written command line (after the program, without `-nodefaults`, `-S`,
/// `-display` and `-qmp`, which are added) and tells whether QEMU accepts it. QEMU
/// answers QMP only after every `-device` is realized, so a completed handshake means the
/// configuration was accepted.
pub async fn try_argv(
    program: &Path,
    argv: &[String],
    timeouts: Timeouts,
) -> Result<Attempt, QemuError> {
    let mut args = sanitize_argv(argv, true);
    push_common(&mut args, true);
    args.extend(["-qmp".to_owned(), "stdio".to_owned()]);
    match Qemu::spawn(program, &args, timeouts).await {
        Ok(mut q) => {
            // One round trip more: a refusal that races the greeting shows up here.
            let status = q.execute("query-status", None).await;
            match status {
                Ok(_) => {
                    let (_, stderr) = q.quit().await;
                    Ok(Attempt::Started { args, stderr })
                }
                Err(QemuError::Exited { exit, stderr, .. }) => {
                    Ok(Attempt::Refused { args, exit, stderr })
                }
                Err(e) => Err(e),
            }
        }
        Err(QemuError::Exited { exit, stderr, .. }) => Ok(Attempt::Refused { args, exit, stderr }),
        Err(e) => Err(e),
    }
}

/// Whether every bridge in a `query-pci` reply is numbered consistently: a non-zero
/// secondary bus, a subordinate bus not below it, and the functions behind it on that
/// secondary bus.
pub fn all_bridges_numbered(query_pci: &Value) -> bool {
    fn devices_ok(devs: &Value) -> bool {
        devs.as_array().is_none_or(|list| {
            list.iter().all(|d| match d.get("pci_bridge") {
                None => true,
                Some(b) => {
                    let num = |k: &str| {
                        b.get("bus")
                            .and_then(|bus| bus.get(k))
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                    };
                    let (sec, sub) = (num("secondary"), num("subordinate"));
                    let children_on_sec =
                        b.get("devices").and_then(Value::as_array).is_none_or(|c| {
                            c.iter()
                                .all(|f| f.get("bus").and_then(Value::as_u64) == Some(sec))
                        });
                    sec != 0
                        && sub >= sec
                        && children_on_sec
                        && b.get("devices").is_none_or(devices_ok)
                }
            })
        })
    }
    query_pci.as_array().is_some_and(|hosts| {
        hosts
            .iter()
            .all(|h| h.get("devices").is_none_or(devices_ok))
    })
}

/// (bus, slot, function, secondary, subordinate) of every function of a `query-pci` reply.
type BusSignature = Vec<(u32, u32, u32, u32, u32)>;

/// Bus numbering of a `query-pci` reply, to tell when the firmware has stopped changing it.
fn bus_signature(query_pci: &Value) -> BusSignature {
    fn walk(devs: &Value, out: &mut Vec<(u32, u32, u32, u32, u32)>, depth: usize) {
        let Some(list) = devs.as_array() else { return };
        if depth > 64 {
            return;
        }
        for d in list {
            let n = |v: &Value, k: &str| json_u32(v, k).unwrap_or(u32::MAX);
            let bus = d.get("pci_bridge").and_then(|b| b.get("bus"));
            out.push((
                n(d, "bus"),
                n(d, "slot"),
                n(d, "function"),
                bus.map_or(0, |b| n(b, "secondary")),
                bus.map_or(0, |b| n(b, "subordinate")),
            ));
            if let Some(c) = d.get("pci_bridge").and_then(|b| b.get("devices")) {
                walk(c, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(hosts) = query_pci.as_array() {
        for h in hosts {
            if let Some(d) = h.get("devices") {
                walk(d, &mut out, 0);
            }
        }
    }
    out
}

/// Vendor id of a function that is not there: a guest's config read of an absent function
/// returns all ones, and so do QEMU's SR-IOV virtual functions until the guest enables
/// them (`igb` on QEMU 10.0+ creates its virtual functions at realize and `query-pci` lists
/// them as `ffff:ffff`; pcie_sriov.c). No guest enumerates such a function.
const ABSENT_VENDOR: u16 = 0xffff;

/// A PCI function's class as observed: a number where QEMU gave one (`query-pci`, guest
/// sysfs), otherwise QEMU's class description from `info qtree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassObs {
    /// Base class << 8 | subclass.
    Code(u16),
    /// `info qtree` description (`Ethernet controller`, `Class 0880`).
    Desc(String),
}

/// One PCI function as a guest would address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFunction {
    /// PCI domain (the zPCI uid on s390x).
    pub domain: u32,
    /// Bus number.
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
    /// Class.
    pub class: ClassObs,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// qdev id (empty when none).
    pub qdev_id: String,
    /// Why a guest does not enumerate this function even though QEMU lists it.
    pub hidden: Option<String>,
}

impl ObservedFunction {
    /// `DDDD:BB:SS.F`.
    pub fn address(&self) -> String {
        format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// QEMU's class descriptions (`pci_class_descriptions` in hw/pci/pci.c), which `info qtree`
/// prints for a function whose class word is in that table; any other class prints as
/// `Class %04x` (measured on QEMU 5.2-11.1: `Class 0880`, `Class 0980`, `Class 00ff`).
const CLASS_DESCRIPTIONS: &[(u16, &str)] = &[
    (0x0001, "VGA controller"),
    (0x0100, "SCSI controller"),
    (0x0101, "IDE controller"),
    (0x0102, "Floppy controller"),
    (0x0103, "IPI controller"),
    (0x0104, "RAID controller"),
    (0x0106, "SATA controller"),
    (0x0107, "SAS controller"),
    (0x0180, "Storage controller"),
    (0x0200, "Ethernet controller"),
    (0x0201, "Token Ring controller"),
    (0x0202, "FDDI controller"),
    (0x0203, "ATM controller"),
    (0x0280, "Network controller"),
    (0x0300, "VGA controller"),
    (0x0301, "XGA controller"),
    (0x0302, "3D controller"),
    (0x0380, "Display controller"),
    (0x0400, "Video controller"),
    (0x0401, "Audio controller"),
    (0x0402, "Phone"),
    (0x0403, "Audio controller"),
    (0x0480, "Multimedia controller"),
    (0x0500, "RAM controller"),
    (0x0501, "Flash controller"),
    (0x0580, "Memory controller"),
    (0x0600, "Host bridge"),
    (0x0601, "ISA bridge"),
    (0x0602, "EISA bridge"),
    (0x0603, "MC bridge"),
    (0x0604, "PCI bridge"),
    (0x0605, "PCMCIA bridge"),
    (0x0606, "NUBUS bridge"),
    (0x0607, "CARDBUS bridge"),
    (0x0608, "RACEWAY bridge"),
    (0x0680, "Bridge"),
    (0x0700, "Serial port"),
    (0x0701, "Parallel port"),
    (0x0800, "Interrupt controller"),
    (0x0801, "DMA controller"),
    (0x0802, "Timer"),
    (0x0803, "RTC"),
    (0x0900, "Keyboard"),
    (0x0901, "Pen"),
    (0x0902, "Mouse"),
    (0x0a00, "Dock station"),
    (0x0b00, "i386 cpu"),
    // Spelled "Fireware contorller" before QEMU 7.1.
    (0x0c00, "Firewire controller"),
    (0x0c00, "Fireware contorller"),
    (0x0c01, "Access bus controller"),
    (0x0c02, "SSA controller"),
    (0x0c03, "USB controller"),
    (0x0c04, "Fibre channel controller"),
    (0x0c05, "SMBus"),
];

/// The description `info qtree` prints for a class.
pub fn class_description(class: u16) -> String {
    CLASS_DESCRIPTIONS
        .iter()
        .find(|(c, _)| *c == class)
        .map_or_else(|| format!("Class {class:04x}"), |(_, d)| (*d).to_owned())
}

/// The class an `info qtree` description stands for: `Class XXXX` gives its number, a name
/// of QEMU's table the one class it names. A name two classes share (`VGA controller`:
/// 0001 and 0300, `Audio controller`: 0401 and 0403) stays a description, which
/// [`class_matches`] compares by name.
pub fn class_from_description(desc: &str) -> ClassObs {
    if let Some(hex) = desc.strip_prefix("Class ")
        && hex.len() == 4
        && let Ok(c) = u16::from_str_radix(hex, 16)
    {
        return ClassObs::Code(c);
    }
    let mut codes = CLASS_DESCRIPTIONS
        .iter()
        .filter(|(_, d)| *d == desc)
        .map(|(c, _)| *c);
    match (codes.next(), codes.next()) {
        (Some(c), None) => ClassObs::Code(c),
        _ => ClassObs::Desc(desc.to_owned()),
    }
}

fn class_matches(obs: &ClassObs, code: u16) -> bool {
    match obs {
        ClassObs::Code(c) => *c == code,
        ClassObs::Desc(d) => CLASS_DESCRIPTIONS
            .iter()
            .any(|(c, name)| *c == code && name == d),
    }
}

fn json_u32(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn json_u16(v: &Value, key: &str) -> Option<u16> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

/// One function of a `query-pci` reply, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPciFunction {
    /// Bus number as programmed.
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
    /// Class.
    pub class: u16,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// qdev id.
    pub qdev_id: String,
    /// qdev id of the bridge this function sits behind (`None` on a root bus).
    pub parent: Option<String>,
    /// Index of the host bridge (top-level entry) it belongs to.
    pub host: usize,
}

/// Flattens a `query-pci` reply (devices behind bridges are nested in the reply).
pub fn flatten_query_pci(query_pci: &Value) -> Result<Vec<QueryPciFunction>, String> {
    fn walk(
        devs: &Value,
        parent: Option<&str>,
        host: usize,
        out: &mut Vec<QueryPciFunction>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 64 {
            return Err("query-pci nests bridges more than 64 deep".into());
        }
        let Some(list) = devs.as_array() else {
            return Ok(());
        };
        for d in list {
            let f = QueryPciFunction {
                bus: json_u32(d, "bus").ok_or("query-pci device without bus")?,
                slot: json_u32(d, "slot").ok_or("query-pci device without slot")?,
                function: json_u32(d, "function").ok_or("query-pci device without function")?,
                class: d
                    .get("class_info")
                    .and_then(|c| json_u16(c, "class"))
                    .ok_or("query-pci device without class_info.class")?,
                vendor: d
                    .get("id")
                    .and_then(|i| json_u16(i, "vendor"))
                    .ok_or("query-pci device without id.vendor")?,
                device: d
                    .get("id")
                    .and_then(|i| json_u16(i, "device"))
                    .ok_or("query-pci device without id.device")?,
                qdev_id: d
                    .get("qdev_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                parent: parent.map(str::to_owned),
                host,
            };
            let id = f.qdev_id.clone();
            out.push(f);
            if let Some(b) = d.get("pci_bridge")
                && let Some(children) = b.get("devices")
            {
                walk(children, Some(&id), host, out, depth + 1)?;
            }
        }
        Ok(())
    }
    let hosts = query_pci
        .as_array()
        .ok_or("query-pci reply is not a list")?;
    let mut out = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        if let Some(devs) = h.get("devices") {
            walk(devs, None, i, &mut out, 0)?;
        }
    }
    Ok(out)
}

fn device_types(tree: &QtreeBus) -> BTreeMap<String, String> {
    tree.walk_devices()
        .into_iter()
        .filter(|(_, d)| !d.id.is_empty())
        .map(|(_, d)| (d.id.clone(), d.ty.clone()))
        .collect()
}

/// What the guest platform does with what QEMU built, so that the observed view is the one
/// the guest enumerates (the plan's guest view applies the same rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestScan {
    /// The guest scans each slot from function 0 and skips a slot whose function 0 is
    /// missing (x86, ARM and RISC-V `virt`): functions of such a slot, and whatever sits
    /// behind them, are marked hidden.
    pub from_function_zero: bool,
    /// Each root bus is a PCI domain numbered by its host bridge's `index` property
    /// (pSeries PHBs), not by its place in `info qtree`.
    pub domain_by_index: bool,
}

fn lone_reason(slot: u32, function: u32) -> String {
    format!(
        "QEMU lists it at slot {slot:#04x} function {function}, but that slot has no \
         function 0 and a guest scans each slot from function 0"
    )
}

fn hidden_reason(slot: u32, port_id: &str, port_ty: &str) -> String {
    format!(
        "QEMU lists it at slot {slot} behind {port_ty} {port_id:?}, but a guest scans only \
         slot 0 below a PCIe root or downstream port"
    )
}

/// Guest view of a machine whose firmware has numbered the bridges: `query-pci` as is.
/// `is_pcie_slot` tells whether a QOM type is a PCIe root or downstream port; functions
/// at slot ≠ 0 behind one (and everything behind those) are marked hidden, and so are
/// the functions of a slot without function 0 when `scan` says the guest skips those.
pub fn observe_numbered(
    query_pci: &Value,
    tree: Option<&QtreeBus>,
    is_pcie_slot: &dyn Fn(&str) -> bool,
    scan: GuestScan,
) -> Result<Vec<ObservedFunction>, String> {
    let flat = flatten_query_pci(query_pci)?;
    let types = tree.map(device_types).unwrap_or_default();
    let with_function_zero: BTreeSet<(usize, u32, u32)> = flat
        .iter()
        .filter(|f| f.function == 0 && f.vendor != ABSENT_VENDOR)
        .map(|f| (f.host, f.bus, f.slot))
        .collect();
    let mut hidden_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for f in &flat {
        let mut hidden = f.parent.as_ref().and_then(|p| hidden_ids.get(p).cloned());
        if hidden.is_none()
            && scan.from_function_zero
            && !with_function_zero.contains(&(f.host, f.bus, f.slot))
        {
            hidden = Some(lone_reason(f.slot, f.function));
        }
        if hidden.is_none()
            && f.slot != 0
            && let Some(p) = &f.parent
            && let Some(ty) = types.get(p)
            && is_pcie_slot(ty)
        {
            hidden = Some(hidden_reason(f.slot, p, ty));
        }
        if let Some(h) = &hidden
            && !f.qdev_id.is_empty()
        {
            hidden_ids.insert(
                f.qdev_id.clone(),
                format!("behind hidden {}: {h}", f.qdev_id),
            );
        }
        if f.vendor == ABSENT_VENDOR {
            continue;
        }
        out.push(ObservedFunction {
            // Expander host bridges share domain 0; their buses carry their own numbers.
            domain: 0,
            bus: f.bus,
            slot: f.slot,
            function: f.function,
            class: ClassObs::Code(f.class),
            vendor: f.vendor,
            device: f.device,
            qdev_id: f.qdev_id.clone(),
            hidden,
        });
    }
    sort_observed(&mut out);
    Ok(out)
}

fn is_pci_bus(bus: &QtreeBus) -> bool {
    matches!(bus.bus_type.as_str(), "PCI" | "PCIE") || bus.bus_type.starts_with("PXB")
}

/// Guest view of a machine at `-S` (no firmware has run): bus numbers are assigned the way
/// a guest kernel does (each bridge, depth first in devfn order, takes the next number; an
/// expander bus takes its `bus_nr`), identities come from `info qtree`, and classes from
/// `query-pci` where QEMU lists the function there (bus 0) and from qtree's description
/// otherwise.
pub fn observe_frozen(
    query_pci: &Value,
    tree: &QtreeBus,
    is_pcie_slot: &dyn Fn(&str) -> bool,
    scan: GuestScan,
) -> Result<Vec<ObservedFunction>, String> {
    let flat = flatten_query_pci(query_pci)?;
    let classes: BTreeMap<String, u16> = flat
        .iter()
        .filter(|f| !f.qdev_id.is_empty())
        .map(|f| (f.qdev_id.clone(), f.class))
        .collect();
    // Functions without an id (host bridges, built-ins) are found by their place on a
    // root bus, which is all `query-pci` lists at -S.
    let root_classes: BTreeMap<(u32, u32, u32), u16> = flat
        .iter()
        .filter(|f| f.parent.is_none())
        .map(|f| {
            (
                (
                    u32::try_from(f.host).unwrap_or(u32::MAX),
                    f.slot,
                    f.function,
                ),
                f.class,
            )
        })
        .collect();
    // Root PCI buses: PCI buses not owned by a PCI function.
    let mut roots: Vec<(Option<&QtreeDevice>, &QtreeBus)> = Vec::new();
    for (owner, bus) in tree.walk_buses() {
        if is_pci_bus(bus) && owner.is_none_or(|o| o.pci_addr.is_none()) {
            roots.push((owner, bus));
        }
    }
    let mut out = Vec::new();
    // Each further root bus (a second host bridge) is a PCI domain of its own: numbered
    // by its host bridge's index where the guest does so, else in tree order.
    for (place, (owner, root)) in roots.iter().enumerate() {
        let by_index = owner
            .filter(|_| scan.domain_by_index)
            .and_then(|o| o.properties.get("index"))
            .and_then(|v| parse_qtree_number(v));
        let mut ctx = FrozenCtx {
            classes: &classes,
            root_classes: &root_classes,
            is_pcie_slot,
            out: &mut out,
            domain: by_index.unwrap_or_else(|| u32::try_from(place).unwrap_or(u32::MAX)),
            host: place,
            scan,
        };
        let mut counter = 0u32;
        walk_frozen(&mut ctx, root, 0, None, None, &mut counter, 0)?;
    }
    sort_observed(&mut out);
    Ok(out)
}

struct FrozenCtx<'a> {
    classes: &'a BTreeMap<String, u16>,
    root_classes: &'a BTreeMap<(u32, u32, u32), u16>,
    is_pcie_slot: &'a dyn Fn(&str) -> bool,
    out: &'a mut Vec<ObservedFunction>,
    domain: u32,
    /// Index of the root bus in tree order (how `query-pci` lists host bridges).
    host: usize,
    scan: GuestScan,
}

fn walk_frozen(
    ctx: &mut FrozenCtx<'_>,
    bus: &QtreeBus,
    number: u32,
    owner: Option<&QtreeDevice>,
    hidden_from: Option<&str>,
    counter: &mut u32,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err("info qtree nests PCI buses more than 64 deep".into());
    }
    let mut devs: Vec<&QtreeDevice> = bus
        .devices
        .iter()
        .filter(|d| d.pci_addr.is_some())
        .collect();
    devs.sort_by_key(|d| d.pci_addr);
    let with_function_zero: BTreeSet<u8> = devs
        .iter()
        .filter(|d| d.pci_id.is_none_or(|(v, ..)| v != ABSENT_VENDOR))
        .filter_map(|d| d.pci_addr.filter(|(_, f)| *f == 0).map(|(s, _)| s))
        .collect();
    let owner_is_slot = owner.is_some_and(|o| (ctx.is_pcie_slot)(&o.ty));
    for d in devs {
        let Some((slot, function)) = d.pci_addr else {
            continue;
        };
        let (vendor, device) = d.pci_id.map_or((0, 0), |(v, dv, _, _)| (v, dv));
        if vendor == ABSENT_VENDOR {
            continue;
        }
        let by_place = if owner.is_none() {
            ctx.root_classes.get(&(
                u32::try_from(ctx.host).unwrap_or(u32::MAX),
                u32::from(slot),
                u32::from(function),
            ))
        } else {
            None
        };
        let class = ctx
            .classes
            .get(&d.id)
            .filter(|_| !d.id.is_empty())
            .or(by_place)
            .map(|c| ClassObs::Code(*c))
            .or_else(|| d.class_desc.as_deref().map(class_from_description))
            .unwrap_or(ClassObs::Desc(String::new()));
        let hidden = match hidden_from {
            Some(h) => Some(h.to_owned()),
            None if owner_is_slot && slot != 0 => {
                owner.map(|o| hidden_reason(u32::from(slot), &o.id, &o.ty))
            }
            None if ctx.scan.from_function_zero && !with_function_zero.contains(&slot) => {
                Some(lone_reason(u32::from(slot), u32::from(function)))
            }
            None => None,
        };
        ctx.out.push(ObservedFunction {
            domain: ctx.domain,
            bus: number,
            slot: u32::from(slot),
            function: u32::from(function),
            class,
            vendor,
            device,
            qdev_id: d.id.clone(),
            hidden: hidden.clone(),
        });
        for child in d.buses.iter().filter(|b| is_pci_bus(b)) {
            if let Some(h) = &hidden {
                // A bridge a guest never sees takes no bus number; its children are
                // listed (with bus 0) as hidden for the same reason.
                let reason = format!("behind hidden {}: {h}", d.id);
                walk_frozen(ctx, child, 0, Some(d), Some(&reason), counter, depth + 1)?;
                continue;
            }
            let nr = match d.properties.get("bus_nr") {
                Some(v) => parse_qtree_number(v).unwrap_or_else(|| {
                    *counter += 1;
                    *counter
                }),
                None => {
                    *counter += 1;
                    *counter
                }
            };
            if nr > *counter {
                *counter = nr;
            }
            walk_frozen(ctx, child, nr, Some(d), None, counter, depth + 1)?;
        }
    }
    Ok(())
}

/// `3 (0x3)` → 3; `"net0"` is not a number.
pub fn parse_qtree_number(v: &str) -> Option<u32> {
    let first = v.split_whitespace().next()?;
    first.parse::<u32>().ok().or_else(|| {
        first
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    })
}

/// `"net0"` → `net0`.
pub fn qtree_string(v: &str) -> String {
    v.trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v.trim())
        .to_owned()
}

/// One zPCI device as QEMU configured it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZpciObs {
    /// qdev id of the zpci device (empty when auto-created).
    pub id: String,
    /// uid.
    pub uid: u32,
    /// fid.
    pub fid: u32,
    /// qdev id of the PCI function it pairs with.
    pub target: String,
}

/// zPCI devices of an s390x machine from `info qtree`.
pub fn zpci_devices(tree: &QtreeBus) -> Vec<ZpciObs> {
    let mut out: Vec<ZpciObs> = tree
        .walk_devices()
        .into_iter()
        .filter(|(_, d)| d.ty == "zpci")
        .map(|(_, d)| ZpciObs {
            id: d.id.clone(),
            uid: d
                .properties
                .get("uid")
                .and_then(|v| parse_qtree_number(v))
                .unwrap_or(0),
            fid: d
                .properties
                .get("fid")
                .and_then(|v| parse_qtree_number(v))
                .unwrap_or(0),
            target: d
                .properties
                .get("target")
                .map(|v| qtree_string(v))
                .unwrap_or_default(),
        })
        .collect();
    out.sort();
    out
}

/// Guest view of an s390x machine: every zPCI device is one function at
/// `<uid>:00:00.0` with its target's identity.
pub fn observe_zpci(
    query_pci: &Value,
    tree: &QtreeBus,
) -> Result<(Vec<ObservedFunction>, Vec<ZpciObs>), String> {
    let classes: BTreeMap<String, u16> = flatten_query_pci(query_pci)?
        .into_iter()
        .filter(|f| !f.qdev_id.is_empty())
        .map(|f| (f.qdev_id, f.class))
        .collect();
    let zpci = zpci_devices(tree);
    let mut out = Vec::new();
    for z in &zpci {
        let Some((_, dev)) = tree.find_device(&z.target) else {
            return Err(format!(
                "zpci {} (uid {:#x}) targets {:?}, which is not a device of the machine",
                z.id, z.uid, z.target
            ));
        };
        let (vendor, device) = dev.pci_id.map_or((0, 0), |(v, d, _, _)| (v, d));
        let class = classes
            .get(&z.target)
            .map(|c| ClassObs::Code(*c))
            .or_else(|| dev.class_desc.as_deref().map(class_from_description))
            .unwrap_or(ClassObs::Desc(String::new()));
        // Measured on s390x guests (7.2-11.1): a PCI bridge paired with a zpci device is
        // not listed by the guest; only the functions behind it are, each under its uid.
        let is_bridge = class == ClassObs::Code(0x0604)
            || class == ClassObs::Desc(class_description(0x0604))
            || dev.buses.iter().any(is_pci_bus);
        let hidden = is_bridge.then(|| {
            format!(
                "QEMU pairs zpci uid {:#x} with PCI bridge {:?}, but an s390x guest lists no \
                 bridges, only the functions behind them",
                z.uid, z.target
            )
        });
        out.push(ObservedFunction {
            domain: z.uid,
            bus: 0,
            slot: 0,
            function: 0,
            class,
            vendor,
            device,
            qdev_id: z.target.clone(),
            hidden,
        });
    }
    sort_observed(&mut out);
    Ok((out, zpci))
}

fn sort_observed(v: &mut [ObservedFunction]) {
    v.sort_by_key(|f| (f.domain, f.bus, f.slot, f.function));
}

/// Renders the visible observed functions as guest-view lines, lined up with the
/// prediction so that a text comparison is meaningful: a `????` field of the predicted
/// line at the same address is rendered as `????`, and a class known only by description
/// is rendered as the predicted code when the descriptions agree (otherwise as
/// `[description]`, which differs visibly).
pub fn render_observed(
    expected: &[GuestPciFunction],
    observed: &[ObservedFunction],
) -> Vec<String> {
    let by_addr: BTreeMap<(u32, u32, u32, u32), &GuestPciFunction> =
        expected.iter().map(|l| (l.key(), l)).collect();
    let mut out = Vec::new();
    for f in observed.iter().filter(|f| f.hidden.is_none()) {
        let addr = f.address();
        let exp = by_addr.get(&(f.domain, f.bus, f.slot, f.function));
        let class = match (exp.map(|e| e.class), &f.class) {
            (Some(None), _) => "????".to_owned(),
            (Some(Some(c)), obs) if class_matches(obs, c) => format!("{c:04x}"),
            (_, ClassObs::Code(c)) => format!("{c:04x}"),
            (_, ClassObs::Desc(d)) => format!("[{d}]"),
        };
        let vendor = match exp.map(|e| e.vendor) {
            Some(None) => "????".to_owned(),
            _ => format!("{:04x}", f.vendor),
        };
        let device = match exp.map(|e| e.device) {
            Some(None) => "????".to_owned(),
            _ => format!("{:04x}", f.device),
        };
        out.push(format!("{addr} {class}: {vendor}:{device}"));
    }
    out
}

/// Sorted set of the addresses of hidden functions with their reasons.
pub fn hidden_functions(observed: &[ObservedFunction]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    observed
        .iter()
        .filter_map(|f| {
            f.hidden.as_ref().map(|h| {
                let id = if f.qdev_id.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.qdev_id)
                };
                let class = match &f.class {
                    ClassObs::Code(c) => format!("{c:04x}"),
                    ClassObs::Desc(d) => d.clone(),
                };
                format!(
                    "{} {class}: {:04x}:{:04x}{id}: {h}",
                    f.address(),
                    f.vendor,
                    f.device
                )
            })
        })
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(
        (domain, bus, slot, function): (u32, u32, u32, u32),
        id: Option<(u16, u16, u16)>,
    ) -> GuestPciFunction {
        GuestPciFunction {
            domain,
            bus,
            slot,
            function,
            class: id.map(|i| i.0),
            vendor: id.map(|i| i.1),
            device: id.map(|i| i.2),
        }
    }

    fn dev(bus: u64, slot: u64, class: u64, vendor: u64, device: u64, id: &str) -> Value {
        json!({"bus": bus, "slot": slot, "function": 0, "class_info": {"class": class},
               "id": {"vendor": vendor, "device": device}, "qdev_id": id})
    }

    #[test]
    fn test_class_text_of_info_qtree_reads_as_class_numbers() {
        assert_eq!(class_from_description("Keyboard"), ClassObs::Code(0x0900));
        assert_eq!(class_from_description("Mouse"), ClassObs::Code(0x0902));
        assert_eq!(class_from_description("Class 0880"), ClassObs::Code(0x0880));
        assert_eq!(class_from_description("Class 00ff"), ClassObs::Code(0x00ff));
        assert_eq!(
            class_from_description("Fireware contorller"),
            ClassObs::Code(0x0c00)
        );
        assert_eq!(
            class_from_description("Firewire controller"),
            ClassObs::Code(0x0c00)
        );
        // Two classes share these names.
        let vga = class_from_description("VGA controller");
        assert_eq!(vga, ClassObs::Desc("VGA controller".into()));
        assert!(class_matches(&vga, 0x0300) && class_matches(&vga, 0x0001));
        assert!(!class_matches(&vga, 0x0380));
        assert_eq!(class_description(0x0880), "Class 0880");
        assert_eq!(class_description(0x0902), "Mouse");
    }

    #[test]
    fn test_numbering_poll_condition() {
        let mut port = dev(0, 2, 0x604, 0x1b36, 0xc, "pci.1");
        port["pci_bridge"] = json!({"bus": {"number": 0, "secondary": 0, "subordinate": 0}});
        let reply = json!([{"bus": 0, "devices": [port.clone()]}]);
        assert!(!all_bridges_numbered(&reply));
        // SeaBIOS parks bridges at 255 (subordinate 0) before numbering them.
        port["pci_bridge"] = json!({"bus": {"number": 0, "secondary": 255, "subordinate": 0},
            "devices": [dev(255, 0, 0x200, 0x8086, 0x100e, "nic")]});
        let reply = json!([{"bus": 0, "devices": [port.clone()]}]);
        assert!(!all_bridges_numbered(&reply));
        port["pci_bridge"] = json!({"bus": {"number": 0, "secondary": 1, "subordinate": 1},
            "devices": [dev(1, 0, 0x200, 0x8086, 0x100e, "nic")]});
        let reply = json!([{"bus": 0, "devices": [port]}]);
        assert!(all_bridges_numbered(&reply));
        assert!(all_bridges_numbered(&json!([{"bus": 0, "devices": []}])));
    }

    #[test]
    fn test_a_slot_without_function_zero_is_hidden_where_the_guest_scans_from_it() {
        // q35 with an e1000 alone at 00:03.1 (QEMU lists it; Linux skips slot 3).
        let mut lone = dev(0, 3, 0x200, 0x8086, 0x100e, "net0");
        lone["function"] = json!(1);
        let reply = json!([{"bus": 0, "devices": [dev(0, 0, 0x600, 0x8086, 0x29c0, ""), lone,
            dev(0, 4, 0x200, 0x8086, 0x100e, "net1")]}]);
        let scan = GuestScan {
            from_function_zero: true,
            domain_by_index: false,
        };
        let obs = observe_numbered(&reply, None, &|_| false, scan).expect("obs");
        let hidden = hidden_functions(&obs);
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert!(
            hidden[0].starts_with("0000:00:03.1 0200: 8086:100e (net0)"),
            "{hidden:?}"
        );
        assert!(hidden[0].contains("no function 0"), "{hidden:?}");
        // pSeries-like guests see it: nothing hidden.
        let obs = observe_numbered(&reply, None, &|_| false, GuestScan::default()).expect("obs");
        assert!(hidden_functions(&obs).is_empty());
        // The same at -S from info qtree (ARM/RISC-V virt).
        let text = "bus: main-system-bus\n  type System\n  dev: gpex-pcihost, id \"\"\n    bus: pcie.0\n      type PCIE\n      dev: e1000, id \"net0\"\n        class Ethernet controller, addr 00:03.1, pci id 8086:100e (sub 1af4:1100)\n      dev: gpex-root, id \"\"\n        class Host bridge, addr 00:00.0, pci id 1b36:0008 (sub 0000:0000)\n";
        let tree = parse_qtree(text).expect("tree");
        let qp = json!([{"bus": 0, "devices": [dev(0, 0, 0x600, 0x1b36, 8, "")]}]);
        let obs = observe_frozen(&qp, &tree, &|_| false, scan).expect("obs");
        let hidden = hidden_functions(&obs);
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert!(hidden[0].starts_with("0000:00:03.1"), "{hidden:?}");
    }

    #[test]
    fn test_pseries_domains_follow_the_phb_index_not_the_tree_order() {
        // info qtree lists the PHB with index 2 before the default one (index 0).
        let text = "bus: main-system-bus\n  type System\n  dev: spapr-pci-host-bridge, id \"pci.1\"\n    index = 2 (0x2)\n    bus: pci.1.0\n      type PCI\n      dev: virtio-net-pci, id \"net1\"\n        class Ethernet controller, addr 00:01.2, pci id 1af4:1000 (sub 1af4:0001)\n  dev: spapr-pci-host-bridge, id \"\"\n    index = 0 (0x0)\n    bus: pci.0\n      type PCI\n      dev: e1000, id \"net0\"\n        class Ethernet controller, addr 00:03.1, pci id 8086:100e (sub 1af4:1100)\n";
        let tree = parse_qtree(text).expect("tree");
        let qp = json!([{"bus": 0, "devices": []}, {"bus": 0, "devices": []}]);
        let by_index = GuestScan {
            from_function_zero: false,
            domain_by_index: true,
        };
        let obs = observe_frozen(&qp, &tree, &|_| false, by_index).expect("obs");
        let addrs: Vec<String> = obs.iter().map(ObservedFunction::address).collect();
        assert_eq!(addrs, ["0000:00:03.1", "0002:00:01.2"]);
        let obs = observe_frozen(&qp, &tree, &|_| false, GuestScan::default()).expect("obs");
        let addrs: Vec<String> = obs.iter().map(ObservedFunction::address).collect();
        assert_eq!(addrs, ["0000:00:01.2", "0001:00:03.1"]);
    }

    #[test]
    fn test_hidden_function_behind_root_port_is_marked_not_dropped() {
        let mut port = dev(0, 4, 0x604, 0x1b36, 0xc, "pci.4");
        port["pci_bridge"] = json!({"bus": {"number": 0, "secondary": 7, "subordinate": 7},
            "devices": [dev(7, 1, 0x200, 0x8086, 0x100e, "nic2")]});
        let reply = json!([{"bus": 0, "devices": [dev(0, 0, 0x600, 0x8086, 0x29c0, ""), port]}]);
        let tree = parse_qtree(
            "bus: main-system-bus\n  type System\n  dev: q35-pcihost, id \"\"\n    bus: pcie.0\n      type PCIE\n      dev: pcie-root-port, id \"pci.4\"\n        class PCI bridge, addr 00:04.0, pci id 1b36:000c (sub 0000:0000)\n        bus: pci.4\n          type PCIE\n          dev: e1000, id \"nic2\"\n            class Ethernet controller, addr 07:01.0, pci id 8086:100e (sub 1af4:1100)\n",
        )
        .expect("tree");
        let obs = observe_numbered(
            &reply,
            Some(&tree),
            &|t| t == "pcie-root-port",
            GuestScan::default(),
        )
        .expect("obs");
        assert_eq!(obs.len(), 3);
        let hidden = hidden_functions(&obs);
        assert_eq!(hidden.len(), 1);
        assert!(
            hidden[0].starts_with("0000:07:01.0 0200: 8086:100e (nic2)"),
            "{hidden:?}"
        );
        let exp = [
            view((0, 0, 0, 0), Some((0x600, 0x8086, 0x29c0))),
            view((0, 0, 4, 0), Some((0x604, 0x1b36, 0xc))),
        ];
        assert_eq!(
            render_observed(&exp, &obs),
            [
                "0000:00:00.0 0600: 8086:29c0",
                "0000:00:04.0 0604: 1b36:000c"
            ]
        );
    }

    #[test]
    fn test_frozen_numbering_is_depth_first_in_devfn_order() {
        let text = "bus: main-system-bus\n  type System\n  dev: gpex-pcihost, id \"\"\n    bus: pcie.0\n      type PCIE\n      dev: pcie-root-port, id \"pci.2\"\n        class PCI bridge, addr 00:03.0, pci id 1b36:000c (sub 0000:0000)\n        bus: pci.2\n          type PCIE\n          dev: virtio-net-pci, id \"net1\"\n            class Ethernet controller, addr 00:00.0, pci id 1af4:1041 (sub 1af4:1100)\n      dev: pcie-root-port, id \"pci.1\"\n        class PCI bridge, addr 00:02.0, pci id 1b36:000c (sub 0000:0000)\n        bus: pci.1\n          type PCIE\n          dev: x3130-upstream, id \"up\"\n            class PCI bridge, addr 00:00.0, pci id 104c:8232 (sub 0000:0000)\n            bus: up\n              type PCIE\n              dev: xio3130-downstream, id \"dn\"\n                class PCI bridge, addr 00:00.0, pci id 104c:8233 (sub 0000:0000)\n                bus: dn\n                  type PCIE\n      dev: gpex-root, id \"\"\n        class Host bridge, addr 00:00.0, pci id 1b36:0008 (sub 0000:0000)\n";
        let tree = parse_qtree(text).expect("tree");
        let qp = json!([{"bus": 0, "devices": [dev(0, 0, 0x600, 0x1b36, 8, ""),
            dev(0, 2, 0x604, 0x1b36, 0xc, "pci.1"), dev(0, 3, 0x604, 0x1b36, 0xc, "pci.2")]}]);
        let obs = observe_frozen(
            &qp,
            &tree,
            &|t| t == "pcie-root-port" || t == "xio3130-downstream",
            GuestScan::default(),
        )
        .expect("obs");
        let exp = [
            view((0, 0, 0, 0), Some((0x600, 0x1b36, 8))),
            view((0, 4, 0, 0), Some((0x200, 0x1af4, 0x1041))),
        ];
        assert_eq!(
            render_observed(&exp, &obs),
            [
                "0000:00:00.0 0600: 1b36:0008",
                "0000:00:02.0 0604: 1b36:000c",
                "0000:00:03.0 0604: 1b36:000c",
                "0000:01:00.0 0604: 104c:8232",
                "0000:02:00.0 0604: 104c:8233",
                "0000:04:00.0 0200: 1af4:1041",
            ]
        );
    }

    #[test]
    fn test_zpci_view_uses_uid_as_domain() {
        let text = "bus: main-system-bus\n  type System\n  dev: s390-pcihost, id \"\"\n    bus: s390-pcibus.0\n      type s390-pcibus\n      dev: zpci, id \"zpci3\"\n        uid = 3 (0x3)\n        fid = 39 (0x27)\n        target = \"net0\"\n    bus: pci.0\n      type PCI\n      dev: virtio-net-pci, id \"net0\"\n        class Ethernet controller, addr 00:00.0, pci id 1af4:1000 (sub 1af4:0001)\n";
        let tree = parse_qtree(text).expect("tree");
        let qp = json!([{"bus": 0, "devices": [dev(0, 0, 0x200, 0x1af4, 0x1000, "net0")]}]);
        let (obs, z) = observe_zpci(&qp, &tree).expect("obs");
        assert_eq!(
            z,
            [ZpciObs {
                id: "zpci3".into(),
                uid: 3,
                fid: 0x27,
                target: "net0".into()
            }]
        );
        assert_eq!(render_observed(&[], &obs), ["0003:00:00.0 0200: 1af4:1000"]);

        // A bridge with its own zpci device: QEMU has it, the guest does not list it.
        let text = "bus: main-system-bus\n  type System\n  dev: s390-pcihost, id \"\"\n    bus: s390-pcibus.0\n      type s390-pcibus\n      dev: zpci, id \"zpci2\"\n        uid = 2 (0x2)\n        fid = 1 (0x1)\n        target = \"pci.1\"\n      dev: zpci, id \"zpci1\"\n        uid = 1 (0x1)\n        fid = 0 (0x0)\n        target = \"net0\"\n    bus: pci.0\n      type PCI\n      dev: pci-bridge, id \"pci.1\"\n        class PCI bridge, addr 00:01.0, pci id 1b36:0001 (sub 0000:0000)\n        bus: pci.1\n          type PCI\n          dev: virtio-net-pci, id \"net0\"\n            class Ethernet controller, addr 01:01.0, pci id 1af4:1041 (sub 1af4:1100)\n";
        let tree = parse_qtree(text).expect("tree");
        let mut bridge = dev(0, 1, 0x604, 0x1b36, 1, "pci.1");
        bridge["pci_bridge"] = json!({"bus": {"number": 0, "secondary": 1, "subordinate": 1},
            "devices": [dev(1, 1, 0x200, 0x1af4, 0x1041, "net0")]});
        let (obs, _) = observe_zpci(&json!([{"bus": 0, "devices": [bridge]}]), &tree).expect("obs");
        assert_eq!(render_observed(&[], &obs), ["0001:00:00.0 0200: 1af4:1041"]);
        let hidden = hidden_functions(&obs);
        assert_eq!(hidden.len(), 1);
        assert!(
            hidden[0].starts_with("0002:00:00.0 0604: 1b36:0001 (pci.1)"),
            "{hidden:?}"
        );
    }

    #[test]
    fn test_unknown_predicted_identity_is_rendered_as_wildcards() {
        let l = view((0, 1, 0, 0), None);
        let obs = [ObservedFunction {
            domain: 0,
            bus: 1,
            slot: 0,
            function: 0,
            class: ClassObs::Code(0x200),
            vendor: 0x8086,
            device: 0x100e,
            qdev_id: "hostdev0".into(),
            hidden: None,
        }];
        assert_eq!(
            render_observed(&[l], &obs),
            ["0000:01:00.0 ????: ????:????"]
        );
    }

    #[test]
    fn test_sanitize_and_live_args() {
        let argv: Vec<String> = [
            "qemu-system-x86_64",
            "-S",
            "-machine",
            "pc-q35-11.1",
            "-daemonize",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            live_args(&argv, Numbering::Firmware),
            [
                "-nodefaults",
                "-machine",
                "pc-q35-11.1",
                "-accel",
                "tcg",
                "-display",
                "none",
                "-qmp",
                "stdio"
            ]
        );
        let frozen = live_args(&argv, Numbering::Frozen);
        assert!(frozen.contains(&"-S".to_owned()));
    }

    /// The launcher of an installed matrix binary, or `None` (the test then has nothing to
    /// run against and says so; the test command installs the matrix).
    fn installed(version: &str, arch: &str) -> Option<std::path::PathBuf> {
        let entries = match crate::matrix::installed() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("no QEMU matrix installed ({e}); skipping");
                return None;
            }
        };
        crate::matrix::find(&entries, version, arch).map(|e| e.launcher.clone())
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn test_real_q35_seabios_numbers_bridges_and_hides_slot_1() {
        let Some(q) = installed("11.1", "x86_64") else {
            return;
        };
        let a = argv(&[
            "-machine",
            "q35",
            "-device",
            "pcie-root-port,id=pci.1,bus=pcie.0,addr=0x2,chassis=1,port=0x10",
            "-device",
            "x3130-upstream,id=up1,bus=pci.1",
            "-device",
            "xio3130-downstream,id=dn1,bus=up1,addr=0x0,chassis=2",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,id=net0,bus=dn1,netdev=n0",
            "-device",
            "pcie-root-port,id=pci.4,bus=pcie.0,addr=0x4,chassis=4,port=0x12",
            "-netdev",
            "user,id=n1",
            "-device",
            "e1000,id=nic2,bus=pci.4,addr=0x1,netdev=n1",
        ]);
        let run = run_argv(
            &q,
            &a,
            Numbering::Firmware,
            Timeouts::default(),
            Duration::from_secs(60),
        )
        .await
        .expect("QEMU runs the topology");
        assert!(run.bridges_numbered);
        let tree = run.qtree.as_ref().expect("qtree");
        let slot = |t: &str| t == "pcie-root-port" || t == "xio3130-downstream";
        let obs = observe_numbered(&run.query_pci, Some(tree), &slot, GuestScan::default())
            .expect("observe");
        let lines = render_observed(&[], &obs);
        for want in [
            "0000:00:02.0 0604: 1b36:000c",
            "0000:01:00.0 0604: 104c:8232",
            "0000:02:00.0 0604: 104c:8233",
            "0000:03:00.0 0200: 1af4:1041",
            "0000:00:04.0 0604: 1b36:000c",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} not in {lines:?}");
        }
        let hidden = hidden_functions(&obs);
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        assert!(
            hidden[0].starts_with("0000:04:01.0 0200: 8086:100e (nic2)"),
            "{hidden:?}"
        );
    }

    #[tokio::test]
    async fn test_real_s390x_zpci_uid_fid_from_qtree() {
        let Some(q) = installed("11.1", "s390x") else {
            return;
        };
        let a = argv(&[
            "-machine",
            "s390-ccw-virtio",
            "-device",
            "zpci,uid=3,fid=0x27,target=net0",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,id=net0,netdev=n0",
            "-netdev",
            "user,id=n1",
            "-device",
            "virtio-net-pci,id=net1,netdev=n1",
        ]);
        let run = run_argv(
            &q,
            &a,
            Numbering::Frozen,
            Timeouts::default(),
            Duration::from_secs(60),
        )
        .await
        .expect("QEMU runs");
        let tree = run.qtree.as_ref().expect("qtree");
        let (obs, z) = observe_zpci(&run.query_pci, tree).expect("observe");
        assert_eq!(
            z.iter()
                .map(|z| (z.uid, z.fid, z.target.as_str()))
                .collect::<Vec<_>>(),
            [(1, 0, "net1"), (3, 0x27, "net0")]
        );
        assert_eq!(
            render_observed(&[], &obs),
            [
                "0001:00:00.0 0200: 1af4:1041",
                "0003:00:00.0 0200: 1af4:1041"
            ]
        );
    }

    #[tokio::test]
    async fn test_real_refusal_and_acceptance() {
        let Some(q) = installed("11.1", "x86_64") else {
            return;
        };
        let refused = try_argv(
            &q,
            &argv(&["-machine", "q35", "-device", "floppy"]),
            Timeouts::default(),
        )
        .await
        .expect("QEMU runs");
        match refused {
            Attempt::Refused { exit, stderr, .. } => {
                assert_eq!(exit.code, Some(1));
                assert!(stderr.contains("No 'floppy-bus' bus found"), "{stderr}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let started = try_argv(&q, &argv(&["-machine", "pc"]), Timeouts::default())
            .await
            .expect("QEMU runs");
        assert!(matches!(started, Attempt::Started { .. }), "{started:?}");
    }
}
