//! The probe plan: one QEMU binary in, one [`Snapshot`] out.
//!
//! 1. **Basic launch** `-machine none -nodefaults -S -display none -qmp stdio -accel A
//!    [-audio none]`, two pipelined batches: `query-version`, `query-target`,
//!    `query-machines`, `qom-list-types abstract=true`, `qom-list-types implements=X
//!    abstract=true` for [`IMPLEMENTS`] and HMP `info qdm` (all the identity plan needs, so
//!    identity launches start as soon as they are answered), then `query-qmp-schema`
//!    (summarised) and `device-list-properties` for the [`property_types`] the binary lists
//!    (every command used exists since QEMU 2.x; 5.2 answers all of them). The accelerator is the first of `tcg`, `qtest` that
//!    starts (TCG first so that "does this machine start" means the same on every version:
//!    Debian's 7.2 and 10.0 builds have no qtest accelerator). `-audio none` is used when
//!    the binary accepts it (10.0+ boards with sound refuse to start without an audio
//!    backend; 7.2 rejects the option but does not need it): detected, not hard-coded.
//! 2. **Per machine** (the same options with `-machine M`): outcome, exit status, stderr
//!    tail, `query-pci` and `info qtree`. Failures (refusals, aborts, hangs) are recorded.
//! 3. **PCI identity**: the device types of [`IDENTITY_TYPES`] that the binary has, plugged
//!    in batches on the reference machine of the architecture ([`identity_machine`]), at the
//!    `root` placement (the machine's default PCI bus) and at `pcie-port` (behind a
//!    `pcie-root-port`, eight devices to a port as the functions of its slot 0, where the
//!    binary has one). A type QEMU refuses is taken out
//!    of its launch with QEMU's message (found by its `-device` option string on stderr, or
//!    by halving the batch when QEMU does not say): refused as the first device of a launch
//!    it is refused alone (QEMU creates `-device` options in order), refused in company it
//!    is launched alone in a second round. A type the root bus refuses alone is tried alone
//!    on the architecture's fallback machines ([`identity_fallback_machines`], e.g. i440fx
//!    for `pxb`), still as `root`. The record's keys are described at `identity_placement`.
//!
//! Every launch goes through a shared semaphore so the number of QEMU processes stays
//! bounded whatever the number of binaries and machines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qconform_caps::{
    IdentityProbe, LaunchOutcome, MachineProbe, ProbeInfo, QemuVersion, QmpSchemaSummary, Raw,
    Snapshot, canonical_json, error_line,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::matrix::MatrixEntry;
use crate::qmp::{Qemu, QemuError, Timeouts};

/// Types asked with `qom-list-types implements=X` (an error reply is recorded for a type
/// the binary lacks, e.g. `cxl-device` before 7.x or `ccw-device` outside s390x).
pub const IMPLEMENTS: &[&str] = &[
    "bus",
    "ccw-device",
    "conventional-pci-device",
    "cxl-device",
    "device",
    "ide-device",
    "isa-device",
    "pci-device",
    "pci-express-device",
    "scsi-device",
    "sys-bus-device",
    "usb-device",
    "virtio-device",
];

/// PCI device types whose guest-visible identity is recorded (those the binary lacks are
/// skipped). Types that need host resources (vfio, vhost) are not here: their identity is
/// the host's.
pub const IDENTITY_TYPES: &[&str] = &[
    // bridges, ports, expanders
    "pcie-root-port",
    "ioh3420",
    "x3130-upstream",
    "xio3130-downstream",
    "pci-bridge",
    "pcie-pci-bridge",
    "i82801b11-bridge",
    "pxb",
    "pxb-pcie",
    // virtio (generic, transitional, non-transitional)
    "virtio-net-pci",
    "virtio-net-pci-transitional",
    "virtio-net-pci-non-transitional",
    "virtio-blk-pci",
    "virtio-blk-pci-transitional",
    "virtio-blk-pci-non-transitional",
    "virtio-scsi-pci",
    "virtio-scsi-pci-transitional",
    "virtio-scsi-pci-non-transitional",
    "virtio-serial-pci",
    "virtio-serial-pci-transitional",
    "virtio-serial-pci-non-transitional",
    "virtio-balloon-pci",
    "virtio-balloon-pci-transitional",
    "virtio-balloon-pci-non-transitional",
    "virtio-rng-pci",
    "virtio-rng-pci-transitional",
    "virtio-rng-pci-non-transitional",
    "virtio-gpu-pci",
    "virtio-vga",
    "virtio-keyboard-pci",
    "virtio-mouse-pci",
    "virtio-tablet-pci",
    "virtio-iommu-pci",
    // network
    "e1000",
    "e1000e",
    "igb",
    "rtl8139",
    "vmxnet3",
    "ne2k_pci",
    "pcnet",
    // USB controllers
    "qemu-xhci",
    "nec-usb-xhci",
    "piix3-usb-uhci",
    "piix4-usb-uhci",
    "ich9-usb-ehci1",
    "ich9-usb-ehci2",
    "ich9-usb-uhci1",
    "ich9-usb-uhci2",
    "ich9-usb-uhci3",
    "ich9-usb-uhci4",
    "ich9-usb-uhci5",
    "ich9-usb-uhci6",
    "usb-ehci",
    "pci-ohci",
    // storage
    "lsi53c895a",
    "lsi53c810",
    "megasas",
    "megasas-gen2",
    "mptsas1068",
    "am53c974",
    "dc390",
    "ich9-ahci",
    "nvme",
    // sound
    "ES1370",
    "AC97",
    "intel-hda",
    "ich9-intel-hda",
    // display
    "VGA",
    "cirrus-vga",
    "qxl-vga",
    "qxl",
    "bochs-display",
    "ati-vga",
    "secondary-vga",
    // misc
    "i6300esb",
    "pvpanic-pci",
    "pci-serial",
    "pci-serial-2x",
    "pci-serial-4x",
    "ivshmem-plain",
];

/// Device types whose `device-list-properties` is recorded: the identity types plus the
/// non-PCI types the allocator and argv generator may emit. A type `qom-list-types` does not
/// list is not asked (QEMU would search its module directory for it) and is recorded as
/// `{"absent": ABSENT_TYPE}`; an error reply for a listed type is recorded as it is.
pub const PROPERTY_TYPES_EXTRA: &[&str] = &[
    "zpci",
    "vfio-pci",
    "vfio-ccw",
    "virtio-net-ccw",
    "virtio-blk-ccw",
    "virtio-scsi-ccw",
    "virtio-serial-ccw",
    "virtio-balloon-ccw",
    "virtio-rng-ccw",
    "virtio-gpu-ccw",
    "virtio-keyboard-ccw",
    "virtio-mouse-ccw",
    "virtio-tablet-ccw",
    "virtio-net-device",
    "virtio-blk-device",
    "virtio-scsi-device",
    "virtio-rng-device",
    "virtio-balloon-device",
    "virtio-serial-device",
    "vhost-vsock-pci",
    "vhost-vsock-ccw",
    "virtio-9p-pci",
    "virtio-mem-pci",
    "virtio-pmem-pci",
    "isa-fdc",
    "floppy",
    "ide-hd",
    "ide-cd",
    "scsi-hd",
    "scsi-cd",
    "scsi-block",
    "usb-kbd",
    "usb-mouse",
    "usb-tablet",
    "usb-storage",
    "usb-hub",
    "usb-host",
    "isa-serial",
    "pvpanic",
    "ib700",
    "diag288",
    "intel-iommu",
    "spapr-pci-host-bridge",
    "spapr-vscsi",
    "spapr-vlan",
    "spapr-vty",
    "pxb-cxl",
    "cxl-rp",
    "cxl-upstream",
    "cxl-downstream",
    "cxl-type3",
    "ramfb",
];

/// All types whose properties are recorded, sorted and without duplicates.
pub fn property_types() -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = IDENTITY_TYPES
        .iter()
        .chain(PROPERTY_TYPES_EXTRA)
        .copied()
        .collect();
    set.into_iter().collect()
}

/// Machine used for PCI identity launches on an architecture: the one whose root bus
/// libvirt uses by default (`q35` for x86: its `pcie.0` takes conventional devices as
/// integrated endpoints exactly as i440fx's `pci.0` does).
pub fn identity_machine(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" | "i386" => Some("q35"),
        "aarch64" | "arm" | "riscv64" | "riscv32" | "loongarch64" => Some("virt"),
        "ppc64" => Some("pseries"),
        "s390x" => Some("s390-ccw-virtio"),
        _ => None,
    }
}

/// Machines tried, in order, for a type the reference machine's root bus refuses even alone
/// (x86: `pxb` needs a conventional root bus, q35's is PCI Express). The identity read there
/// is recorded at the `root` placement under the key `root:TYPE@MACHINE`.
pub fn identity_fallback_machines(arch: &str) -> &'static [&'static str] {
    match arch {
        "x86_64" | "i386" => &["pc"],
        _ => &[],
    }
}

/// Which machines to launch one by one.
#[derive(Debug, Clone)]
pub enum MachineSelection {
    /// Every machine of `query-machines`.
    All,
    /// None (the snapshot records them as skipped).
    None,
    /// Machines whose canonical name or alias matches the glob.
    Glob(globset::GlobMatcher),
}

impl MachineSelection {
    fn selects(&self, name: &str, alias: Option<&str>) -> bool {
        match self {
            MachineSelection::All => true,
            MachineSelection::None => false,
            MachineSelection::Glob(g) => g.is_match(name) || alias.is_some_and(|a| g.is_match(a)),
        }
    }
}

/// What to probe: the program to execute and the real binary that identifies the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Program to execute (the binary itself or a launcher that `exec`s it).
    pub launcher: PathBuf,
    /// The real QEMU binary, hashed for [`ProbeInfo::binary_sha256`].
    pub binary: PathBuf,
}

/// Errors resolving a `--qemu` argument.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The path cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A launcher script whose real binary is unknown.
    #[error("{} is not an ELF binary, not a launcher of the installed matrix, and execs no ELF file it names; give it as {}=/path/to/the/real/qemu-system-ARCH so the snapshot records the real binary's identity", path.display(), path.display())]
    NotElf {
        /// The path.
        path: PathBuf,
    },
}

/// Resolves a `--qemu` argument: `BIN` (an ELF binary, or a launcher listed in the matrix)
/// or `LAUNCHER=REALBIN`.
pub fn resolve_target(spec: &str, matrix: &[MatrixEntry]) -> Result<ProbeTarget, TargetError> {
    if let Some((launcher, binary)) = spec.split_once('=') {
        let launcher = PathBuf::from(launcher);
        let binary = PathBuf::from(binary);
        for p in [&launcher, &binary] {
            std::fs::metadata(p).map_err(|source| TargetError::Read {
                path: p.clone(),
                source,
            })?;
        }
        return Ok(ProbeTarget { launcher, binary });
    }
    let path = PathBuf::from(spec);
    let canonical = std::fs::canonicalize(&path).map_err(|source| TargetError::Read {
        path: path.clone(),
        source,
    })?;
    let mut head = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&canonical).map_err(|source| TargetError::Read {
            path: path.clone(),
            source,
        })?;
        let _ = f.read(&mut head).map_err(|source| TargetError::Read {
            path: path.clone(),
            source,
        })?;
    }
    if head == *b"\x7fELF" {
        return Ok(ProbeTarget {
            launcher: path,
            binary: canonical,
        });
    }
    for e in matrix {
        if std::fs::canonicalize(&e.launcher).is_ok_and(|c| c == canonical) {
            return Ok(ProbeTarget {
                launcher: path,
                binary: e.binary.clone(),
            });
        }
    }
    if let Some(binary) = exec_target(&canonical) {
        return Ok(ProbeTarget {
            launcher: path,
            binary,
        });
    }
    Err(TargetError::NotElf { path })
}

/// The QEMU binary a launcher script `exec`s, when the script shows it: the last `exec` line's
/// words (shell quoting undone) that name an existing ELF file, preferring one called
/// `qemu-system-*` (a launcher may exec a dynamic loader with QEMU as its argument).
pub fn exec_target(script: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(script).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("exec "))?;
    let elves: Vec<PathBuf> = shell_words(line)
        .into_iter()
        .skip(1)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && is_elf(p))
        .collect();
    let named = |p: &&PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("qemu-system-"))
    };
    elves
        .iter()
        .find(named)
        .or_else(|| elves.first())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"\x7fELF"
}

/// Splits a shell command line into words: single and double quotes and backslashes are
/// undone; `$VAR` is left as it is (such a word names no file and is skipped by the caller).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Options of a probe run.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Machines to launch one by one.
    pub machines: MachineSelection,
    /// Whether to record PCI identities.
    pub identity: bool,
    /// Deadlines of the basic launch.
    pub timeouts: Timeouts,
    /// Deadlines of per-machine and identity launches (a hanging machine costs its startup
    /// deadline).
    pub machine_timeouts: Timeouts,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            machines: MachineSelection::All,
            identity: true,
            timeouts: Timeouts::default(),
            machine_timeouts: Timeouts {
                startup: Duration::from_secs(20),
                command: Duration::from_secs(20),
                shutdown: Duration::from_secs(5),
            },
        }
    }
}

/// Progress of one binary's probe.
#[derive(Debug, Clone)]
pub struct ProbeProgress {
    /// Launches finished.
    pub done: usize,
    /// Launches planned so far (grows when the plan is known).
    pub total: usize,
    /// What just finished.
    pub what: String,
}

/// Callback receiving progress.
pub type ProgressFn = Arc<dyn Fn(&ProbeProgress) + Send + Sync>;

/// Errors of a probe run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The binary could not be hashed.
    #[error("cannot read {} to hash it: {source}", path.display())]
    Hash {
        /// The binary.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The basic launch failed (the program is not a working QEMU).
    #[error("{0}")]
    Launch(#[from] QemuError),
    /// A reply QEMU must give had another shape.
    #[error("{}: {command}: {detail}", program.display())]
    Reply {
        /// Program.
        program: PathBuf,
        /// Command.
        command: String,
        /// What is wrong.
        detail: String,
    },
    /// The snapshot could not be built from the replies.
    #[error("{}: {source}", program.display())]
    Snapshot {
        /// Program.
        program: PathBuf,
        /// The error.
        source: qconform_caps::CapsError,
    },
}

/// Arguments shared by every launch, after `-machine M`.
fn common_args(accel: &str, audio_none: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "-nodefaults",
        "-S",
        "-display",
        "none",
        "-qmp",
        "stdio",
        "-accel",
        accel,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if audio_none {
        v.extend(["-audio".to_owned(), "none".to_owned()]);
    }
    v
}

fn machine_args(machine: &str, common: &[String]) -> Vec<String> {
    let mut v = vec!["-machine".to_owned(), machine.to_owned()];
    v.extend_from_slice(common);
    v
}

/// Keeps the last `max` bytes of `s`, trimmed, starting at a line boundary.
fn tail(s: &str, max: usize) -> String {
    let t = s.trim();
    if t.len() <= max {
        return t.to_owned();
    }
    let mut start = t.len() - max;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    let cut = t.get(start..).unwrap_or_default();
    match cut.find('\n') {
        Some(p) => cut.get(p + 1..).unwrap_or_default().to_owned(),
        None => cut.to_owned(),
    }
}

const STDERR_RECORD: usize = 4096;

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Summarises a `query-qmp-schema` reply.
pub fn summarize_schema(schema: &Value) -> QmpSchemaSummary {
    let canonical = canonical_json(schema);
    let mut h = Sha256::new();
    h.update(canonical.as_bytes());
    let entries = schema.as_array().map_or(0, Vec::len);
    let mut commands = BTreeSet::new();
    let mut events = BTreeSet::new();
    for e in schema.as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(name), Some(mt)) = (
            e.get("name").and_then(Value::as_str),
            e.get("meta-type").and_then(Value::as_str),
        ) else {
            continue;
        };
        match mt {
            "command" => {
                commands.insert(name.to_owned());
            }
            "event" => {
                events.insert(name.to_owned());
            }
            _ => {}
        }
    }
    QmpSchemaSummary {
        sha256: hex(&h.finalize()),
        entries,
        commands: commands.into_iter().collect(),
        events: events.into_iter().collect(),
    }
}

/// A QMP answer as stored in raw: the return value, or `{"error": {...}}`.
fn stored(reply: Result<Value, Value>) -> Value {
    match reply {
        Ok(v) => v,
        Err(e) => json!({ "error": e }),
    }
}

struct Tracker {
    progress: ProgressFn,
    done: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

impl Tracker {
    fn add(&self, n: usize) {
        self.total.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
    fn finished(&self, what: String) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let total = self.total.load(std::sync::atomic::Ordering::SeqCst);
        (self.progress)(&ProbeProgress { done, total, what });
    }
}

/// Probes one binary into a snapshot.
pub async fn probe_binary(
    target: &ProbeTarget,
    config: &ProbeConfig,
    limit: Arc<Semaphore>,
    progress: ProgressFn,
) -> Result<Snapshot, ProbeError> {
    let tracker = Arc::new(Tracker {
        progress,
        done: 0.into(),
        total: 1.into(),
    });
    let bin = target.binary.clone();
    let hash_task = tokio::task::spawn_blocking(move || sha256_file(&bin));

    // The basic launch holds one slot for its whole life. Its first batch is all the
    // identity plan needs, so identity launches start while it answers the rest.
    let basic_permit = limit.acquire().await;
    let mut session = start_basic(&target.launcher, config.timeouts).await?;
    let mut basic = basic_first(&mut session).await?;
    let reply_err = |command: &str, detail: &str| ProbeError::Reply {
        program: target.launcher.clone(),
        command: command.to_owned(),
        detail: detail.to_owned(),
    };
    let version = &basic.query_version;
    let qv = |k: &str| {
        version
            .pointer(&format!("/qemu/{k}"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| reply_err("query-version", &format!("no qemu.{k}")))
    };
    let qemu_version = QemuVersion {
        major: qv("major")?,
        minor: qv("minor")?,
        micro: qv("micro")?,
    };
    let arch = basic
        .query_target
        .get("arch")
        .and_then(Value::as_str)
        .ok_or_else(|| reply_err("query-target", "no arch"))?
        .to_owned();
    let machines_list: Vec<(String, Option<String>)> = basic
        .query_machines
        .as_array()
        .ok_or_else(|| reply_err("query-machines", "not a list"))?
        .iter()
        .filter_map(|m| {
            Some((
                m.get("name")?.as_str()?.to_owned(),
                m.get("alias").and_then(Value::as_str).map(str::to_owned),
            ))
        })
        .collect();

    let common = common_args(&session.accel, session.audio_none);
    let mut machine_argv = vec!["-machine".to_owned(), "{machine}".to_owned()];
    machine_argv.extend(common.iter().cloned());

    // Per-machine launches and identity launches run concurrently, bounded by `limit`.
    let mut machines: BTreeMap<String, MachineProbe> = BTreeMap::new();
    let mut set: JoinSet<(String, MachineProbe)> = JoinSet::new();
    for (name, alias) in &machines_list {
        if !config.machines.selects(name, alias.as_deref()) {
            machines.insert(
                name.clone(),
                MachineProbe {
                    argv: Vec::new(),
                    outcome: LaunchOutcome::Skipped,
                    exit_code: None,
                    signal: None,
                    stderr: String::new(),
                    query_pci: None,
                    info_qtree: None,
                },
            );
            continue;
        }
        tracker.add(1);
        let launcher = target.launcher.clone();
        let args = machine_args(name, &common);
        let limit = Arc::clone(&limit);
        let timeouts = config.machine_timeouts;
        let name = name.clone();
        let tracker = Arc::clone(&tracker);
        set.spawn(async move {
            let probe = {
                let _permit = limit.acquire().await;
                probe_machine(&launcher, args, timeouts).await
            };
            tracker.finished(format!("machine {name}"));
            (name, probe)
        });
    }

    // In a JoinSet, so that returning early (the basic launch's second batch failed) or
    // being dropped (Ctrl-C) stops the identity launches with it.
    let mut identity: JoinSet<BTreeMap<String, IdentityProbe>> = JoinSet::new();
    if config.identity {
        let ctx = IdentityContext {
            launcher: target.launcher.clone(),
            common: common.clone(),
            timeouts: config.machine_timeouts,
            limit: Arc::clone(&limit),
            tracker: Arc::clone(&tracker),
        };
        let plan = identity_plan(&basic, &arch, &machines_list);
        identity.spawn(async move { run_identity(ctx, plan).await });
    }

    let rest = basic_rest(&mut session, &basic).await;
    let _ = session.q.quit().await;
    drop(basic_permit);
    let (qmp_schema, device_properties) = rest?;
    basic.qmp_schema = qmp_schema;
    basic.device_properties = device_properties;
    tracker.finished("basic queries".into());

    let sha = match hash_task.await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(ProbeError::Hash {
                path: target.binary.clone(),
                source,
            });
        }
        Err(e) => {
            return Err(ProbeError::Hash {
                path: target.binary.clone(),
                source: std::io::Error::other(e.to_string()),
            });
        }
    };

    while let Some(joined) = set.join_next().await {
        if let Ok((name, probe)) = joined {
            machines.insert(name, probe);
        }
    }
    let pci_identity = identity
        .join_next()
        .await
        .and_then(Result::ok)
        .unwrap_or_default();

    let probe = ProbeInfo {
        qemu_version,
        package: version
            .get("package")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        arch,
        binary_name: target
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        binary_sha256: sha,
        probe_argv: session.argv.clone(),
        machine_argv,
        accel: session.accel.clone(),
        tool: format!("qconform {}", env!("CARGO_PKG_VERSION")),
    };
    let raw = Raw {
        greeting: session.greeting,
        query_version: basic.query_version,
        query_target: basic.query_target,
        query_machines: basic.query_machines,
        qom_types: basic.qom_types,
        qom_implements: basic.qom_implements,
        device_properties: basic.device_properties,
        qmp_schema: basic.qmp_schema,
        info_qdm: basic.info_qdm,
        machines,
        pci_identity,
    };
    Snapshot::new(probe, raw).map_err(|source| ProbeError::Snapshot {
        program: target.launcher.clone(),
        source,
    })
}

/// The basic launch: the running QEMU and how it was started.
struct BasicSession {
    q: Qemu,
    argv: Vec<String>,
    accel: String,
    audio_none: bool,
    greeting: Value,
}

/// Replies of the basic launch (`qmp_schema` and `device_properties` are filled by its
/// second part, [`basic_rest`]).
struct Basic {
    query_version: Value,
    query_target: Value,
    query_machines: Value,
    qom_types: Value,
    qom_implements: BTreeMap<String, Value>,
    device_properties: BTreeMap<String, Value>,
    qmp_schema: QmpSchemaSummary,
    info_qdm: String,
}

/// Starts the binary with `-machine none`, trying the accelerator/audio variants in order.
async fn start_basic(launcher: &Path, timeouts: Timeouts) -> Result<BasicSession, QemuError> {
    let variants = [
        ("tcg", true),
        ("tcg", false),
        ("qtest", true),
        ("qtest", false),
    ];
    let mut last = None;
    for (accel, audio) in variants {
        let args = machine_args("none", &common_args(accel, audio));
        match Qemu::spawn(launcher, &args, timeouts).await {
            Ok(q) => {
                return Ok(BasicSession {
                    greeting: q.greeting().clone(),
                    q,
                    argv: args,
                    accel: accel.to_owned(),
                    audio_none: audio,
                });
            }
            // A refusal of an option: try the next variant. Anything else (cannot run,
            // hangs, speaks no QMP) will not get better with other options.
            Err(e @ QemuError::Exited { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| QemuError::Io {
        program: launcher.to_path_buf(),
        source: std::io::Error::other("no launch variant"),
    }))
}

/// The answer recorded for a property type the binary does not list (`qom-list-types`):
/// not asked, so that QEMU does not search its module directory for it. Readers see a
/// non-list value, i.e. "no properties", exactly as for an error reply.
pub const ABSENT_TYPE: &str = "not listed by qom-list-types";

/// First pipelined batch: everything the identity plan needs (version, target, machines,
/// types, `info qdm`).
async fn basic_first(s: &mut BasicSession) -> Result<Basic, ProbeError> {
    let mut first: Vec<(&str, Option<Value>)> = vec![
        ("query-version", None),
        ("query-target", None),
        ("query-machines", None),
        ("qom-list-types", Some(json!({ "abstract": true }))),
    ];
    for iface in IMPLEMENTS {
        first.push((
            "qom-list-types",
            Some(json!({ "implements": iface, "abstract": true })),
        ));
    }
    first.push((
        "human-monitor-command",
        Some(json!({ "command-line": "info qdm" })),
    ));
    let mut replies = s.q.execute_pipelined(&first).await?.into_iter();
    let mut next = || replies.next().unwrap_or(Ok(Value::Null));
    let query_version = stored(next());
    let query_target = stored(next());
    let query_machines = stored(next());
    let qom_types = stored(next());
    let mut qom_implements = BTreeMap::new();
    for iface in IMPLEMENTS {
        qom_implements.insert((*iface).to_owned(), stored(next()));
    }
    let info_qdm = match next() {
        Ok(Value::String(text)) => text,
        Ok(other) => {
            return Err(ProbeError::Reply {
                program: s.q.program().to_path_buf(),
                command: "human-monitor-command info qdm".into(),
                detail: format!("expected a string, got {other}"),
            });
        }
        Err(error) => {
            return Err(QemuError::Command {
                command: "human-monitor-command info qdm".into(),
                error,
            }
            .into());
        }
    };
    Ok(Basic {
        query_version,
        query_target,
        query_machines,
        qom_types,
        qom_implements,
        device_properties: BTreeMap::new(),
        qmp_schema: QmpSchemaSummary::default(),
        info_qdm: info_qdm.replace("\r\n", "\n"),
    })
}

/// Second pipelined batch: the QMP schema and the properties of the types the binary lists.
async fn basic_rest(
    s: &mut BasicSession,
    basic: &Basic,
) -> Result<(QmpSchemaSummary, BTreeMap<String, Value>), ProbeError> {
    let listed: BTreeSet<&str> = basic
        .qom_types
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    let all = property_types();
    let asked: Vec<&str> = all.iter().copied().filter(|t| listed.contains(t)).collect();
    let mut batch: Vec<(&str, Option<Value>)> = vec![("query-qmp-schema", None)];
    batch.extend(
        asked
            .iter()
            .map(|t| ("device-list-properties", Some(json!({ "typename": t })))),
    );
    let mut answers = s.q.execute_pipelined(&batch).await?.into_iter();
    let schema = answers
        .next()
        .unwrap_or(Ok(Value::Null))
        .map_err(|error| QemuError::Command {
            command: "query-qmp-schema".into(),
            error,
        })?;
    let mut device_properties = BTreeMap::new();
    for (ty, r) in asked.iter().zip(answers) {
        device_properties.insert((*ty).to_owned(), stored(r));
    }
    for ty in all {
        device_properties
            .entry(ty.to_owned())
            .or_insert_with(|| json!({ "absent": ABSENT_TYPE }));
    }
    Ok((summarize_schema(&schema), device_properties))
}

/// One launch with the given arguments (normally `-machine M` + the common options): start,
/// `query-pci`, `info qtree`, quit. Never fails: a refusal, crash or hang is recorded.
pub async fn probe_machine(launcher: &Path, args: Vec<String>, timeouts: Timeouts) -> MachineProbe {
    let mut out = MachineProbe {
        argv: args.clone(),
        outcome: LaunchOutcome::Failed,
        exit_code: None,
        signal: None,
        stderr: String::new(),
        query_pci: None,
        info_qtree: None,
    };
    let mut q = match Qemu::spawn(launcher, &args, timeouts).await {
        Ok(q) => q,
        Err(e) => {
            record_failure(&mut out, &e);
            return out;
        }
    };
    match q.execute("query-pci", None).await {
        Ok(r) => out.query_pci = Some(stored(r)),
        Err(e) => {
            record_failure(&mut out, &e);
            return out;
        }
    }
    match q.hmp("info qtree").await {
        Ok(t) => out.info_qtree = Some(t.replace("\r\n", "\n")),
        // An HMP error leaves the tree unknown (never seen; raw fields stay verbatim).
        Err(QemuError::Command { .. }) => {}
        Err(e) => {
            record_failure(&mut out, &e);
            return out;
        }
    }
    let (exit, stderr) = q.quit().await;
    out.outcome = LaunchOutcome::Started;
    out.exit_code = exit.code;
    out.signal = exit.signal;
    out.stderr = tail(&stderr, STDERR_RECORD);
    out
}

fn record_failure(out: &mut MachineProbe, e: &QemuError) {
    out.outcome = if e.is_timeout() {
        LaunchOutcome::Timeout
    } else {
        LaunchOutcome::Failed
    };
    if let Some(exit) = e.exit() {
        out.exit_code = exit.code;
        out.signal = exit.signal;
    }
    out.stderr = tail(failure_text(e).as_str(), STDERR_RECORD);
}

/// QEMU's own words for a failure: its stderr, or (for a protocol problem or timeout with a
/// silent stderr) our description, which holds no host path.
fn failure_text(e: &QemuError) -> String {
    match e {
        QemuError::Exited { stderr, .. } => stderr.clone(),
        QemuError::Timeout {
            stderr,
            after,
            phase,
            ..
        } => {
            format!(
                "{}\n(no answer {phase} within {}s)",
                stderr.trim(),
                after.as_secs()
            )
        }
        QemuError::Protocol {
            stderr,
            detail,
            phase,
            ..
        } => {
            format!("{}\n(not QMP {phase}: {detail})", stderr.trim())
        }
        QemuError::Command { command, error } => {
            format!("{command}: {}", crate::qmp::error_desc(error))
        }
        QemuError::Spawn { source, .. } | QemuError::Io { source, .. } => source.to_string(),
    }
}

// ---- PCI identity ------------------------------------------------------------------------

struct IdentityContext {
    launcher: PathBuf,
    common: Vec<String>,
    timeouts: Timeouts,
    limit: Arc<Semaphore>,
    tracker: Arc<Tracker>,
}

struct IdentityPlan {
    machine: Option<String>,
    /// Fallback machines of the architecture the binary has.
    fallback: Vec<String>,
    types: Vec<String>,
    pcie_port: bool,
}

fn identity_plan(basic: &Basic, arch: &str, machines: &[(String, Option<String>)]) -> IdentityPlan {
    let machine = identity_machine(arch)
        .filter(|m| {
            machines
                .iter()
                .any(|(n, a)| n == m || a.as_deref() == Some(*m))
        })
        .map(str::to_owned);
    let fallback: Vec<String> = identity_fallback_machines(arch)
        .iter()
        .filter(|m| {
            machines
                .iter()
                .any(|(n, a)| n == *m || a.as_deref() == Some(**m))
        })
        .map(|m| (*m).to_owned())
        .collect();
    let concrete: BTreeSet<&str> = basic
        .qom_types
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|t| !t.get("abstract").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    let pci: BTreeSet<&str> = basic
        .qom_implements
        .get("pci-device")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    let no_user = qconform_caps::no_user_devices(&basic.info_qdm);
    let types: Vec<String> = IDENTITY_TYPES
        .iter()
        .filter(|t| concrete.contains(*t) && pci.contains(*t) && !no_user.contains(**t))
        .map(|t| (*t).to_owned())
        .collect();
    let pcie_port = concrete.contains("pcie-root-port") && !no_user.contains("pcie-root-port");
    IdentityPlan {
        machine,
        fallback,
        types,
        pcie_port,
    }
}

/// Devices per identity launch: leaves room on any root bus (32 slots) for built-in
/// functions, and behind-port launches use one root-bus slot per holder port. A larger launch
/// saves QEMU's fixed start-up cost, but every device costs more in company (each PCI device
/// adds an address space that QEMU renders again on every memory-map update), so the total
/// stops falling near this size (measured on x86_64 q35: 17 devices 56 ms, 28 devices 96 ms,
/// against 34 ms for the bare machine).
const BATCH: usize = 16;
/// Bound on launches per placement, whatever QEMU does.
const MAX_LAUNCHES: usize = 200;
/// Devices behind one holder port at `pcie-port`: the eight functions of its slot 0.
const HOLDER_FUNCTIONS: usize = 8;

/// Types whose device adds a PCI root bus of its own (expanders). qdev's search for a
/// default bus visits the newest child of the system bus first, so a device given without
/// `bus=` after one of these can land on the expander's bus: they are launched only once
/// a started launch has shown the machine's root bus, and every device of such a launch
/// names it.
const ROOT_BUS_MAKERS: &[&str] = &["pxb", "pxb-pcie"];

async fn run_identity(ctx: IdentityContext, plan: IdentityPlan) -> BTreeMap<String, IdentityProbe> {
    let mut out = BTreeMap::new();
    let Some(machine) = plan.machine.clone() else {
        return out;
    };
    let mut placements = vec!["root"];
    if plan.pcie_port {
        placements.push("pcie-port");
    }
    let ctx = Arc::new(ctx);
    let fallback = Arc::new(plan.fallback.clone());
    let mut set = JoinSet::new();
    for placement in placements {
        let ctx = Arc::clone(&ctx);
        let machine = machine.clone();
        let types = plan.types.clone();
        let fallback = Arc::clone(&fallback);
        set.spawn(async move {
            let mut out = identity_placement(&ctx, &machine, placement, &types).await;
            if placement == "root" {
                out.extend(identity_fallback(&ctx, &fallback, &types, &out).await);
            }
            out
        });
    }
    while let Some(j) = set.join_next().await {
        if let Ok(m) = j {
            out.extend(m);
        }
    }
    out
}

/// Types the root bus refused alone, each tried alone on the fallback machines in order
/// until one starts (every attempt is recorded, as `root:TYPE@MACHINE`).
async fn identity_fallback(
    ctx: &Arc<IdentityContext>,
    fallback: &Arc<Vec<String>>,
    types: &[String],
    root: &BTreeMap<String, IdentityProbe>,
) -> Vec<(String, IdentityProbe)> {
    let refused: Vec<String> = types
        .iter()
        .filter(|t| {
            root.get(&format!("root:{t}"))
                .is_some_and(|p| p.outcome != LaunchOutcome::Started)
        })
        .cloned()
        .collect();
    ctx.tracker.add(refused.len() * fallback.len());
    let mut set = JoinSet::new();
    for ty in refused {
        let ctx = Arc::clone(ctx);
        let fallback = Arc::clone(fallback);
        set.spawn(async move {
            let mut tried = Vec::new();
            for m in fallback.iter() {
                let probe =
                    match identity_launch(&ctx, m, "root", None, std::slice::from_ref(&ty)).await {
                        IdentityRun::Started(p) => p,
                        IdentityRun::Refused { probe, .. } => probe,
                    };
                let started = probe.outcome == LaunchOutcome::Started;
                tried.push((format!("root:{ty}@{m}"), probe));
                if started {
                    break;
                }
            }
            tried
        });
    }
    let mut out = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(tried) = j {
            out.extend(tried);
        }
    }
    out
}

/// One identity launch's argv and, per device type, the `-device` option strings that
/// belong to it: its holder port first (at `pcie-port`), then the device itself.
fn identity_argv(
    machine: &str,
    common: &[String],
    placement: &str,
    root_bus: Option<&str>,
    types: &[String],
) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    // An explicit bus keeps devices on the root bus even after an expander (pxb-pcie)
    // has added another root bus to the machine.
    let on_root = root_bus.map(|b| format!(",bus={b}")).unwrap_or_default();
    if types.is_empty() && placement == "pcie-port" {
        // The bare check of this placement: can the machine take a root port at all?
        // (pseries has the type but refuses it.)
        let mut argv = machine_args(machine, common);
        argv.extend([
            "-device".to_owned(),
            "pcie-root-port,id=qcport0,chassis=1".to_owned(),
        ]);
        return (argv, Vec::new());
    }
    let mut argv = machine_args(machine, common);
    let mut opts = Vec::new();
    for (i, ty) in types.iter().enumerate() {
        let n = i + 1;
        let id = format!("qc{n}");
        let mut extra = Vec::new();
        let mut params = String::new();
        match ty.as_str() {
            "pcie-root-port" | "ioh3420" | "xio3130-downstream" => {
                params = format!(",chassis={}", 100 + n);
            }
            "pci-bridge" => params = format!(",chassis_nr={}", 100 + n),
            "pxb" | "pxb-pcie" => params = format!(",bus_nr={}", 100 + 4 * n),
            "nvme" => {
                extra.extend([
                    "-blockdev".to_owned(),
                    format!("driver=null-co,node-name=qcd{n},read-zeroes=on"),
                ]);
                params = format!(",drive=qcd{n},serial=qc{n}");
            }
            t if t.starts_with("virtio-blk-pci") => {
                extra.extend([
                    "-blockdev".to_owned(),
                    format!("driver=null-co,node-name=qcd{n},read-zeroes=on"),
                ]);
                params = format!(",drive=qcd{n}");
            }
            "ivshmem-plain" => {
                extra.extend([
                    "-object".to_owned(),
                    format!("memory-backend-ram,id=qcm{n},size=1M"),
                ]);
                params = format!(",memdev=qcm{n}");
            }
            _ => {}
        }
        let mut device_opts = Vec::new();
        if placement == "pcie-port" {
            // Up to eight devices share a holder port, as the functions of its slot 0: a
            // device's identity behind a port does not depend on its function number
            // (virtio picks modern-only from the bus being PCI Express and not a root
            // bus), and each holder port costs QEMU as much as a device.
            let (p, f) = (i / HOLDER_FUNCTIONS + 1, i % HOLDER_FUNCTIONS);
            if f == 0 {
                let port = format!("pcie-root-port,id=qcport{p},chassis={p}{on_root}");
                argv.extend(["-device".to_owned(), port.clone()]);
                device_opts.push(port);
                params.push_str(&format!(",bus=qcport{p},addr=0.0,multifunction=on"));
            } else {
                params.push_str(&format!(",bus=qcport{p},addr=0.{f}"));
            }
        } else {
            params.push_str(&on_root);
        }
        argv.extend(extra);
        let opt = format!("{ty},id={id}{params}");
        argv.extend(["-device".to_owned(), opt.clone()]);
        device_opts.push(opt);
        opts.push((ty.clone(), device_opts));
    }
    (argv, opts)
}

/// The `-device` option QEMU complained about, by the device type it belongs to.
#[derive(Debug, Clone)]
struct Culprit {
    ty: String,
    message: String,
    /// The complaint was about the type's holder port, not the type.
    holder: bool,
}

enum IdentityRun {
    Started(IdentityProbe),
    /// QEMU refused; `culprit` names the `-device` option it complained about.
    Refused {
        probe: IdentityProbe,
        culprit: Option<Culprit>,
    },
}

async fn identity_launch(
    ctx: &IdentityContext,
    machine: &str,
    placement: &str,
    root_bus: Option<&str>,
    types: &[String],
) -> IdentityRun {
    let (argv, opts) = identity_argv(machine, &ctx.common, placement, root_bus, types);
    let _permit = ctx.limit.acquire().await;

    let mut probe = IdentityProbe {
        argv: argv.clone(),
        outcome: LaunchOutcome::Failed,
        exit_code: None,
        stderr: String::new(),
        query_pci: None,
        info_qtree: None,
        rejected: BTreeMap::new(),
    };
    let result = async {
        let mut q = Qemu::spawn(&ctx.launcher, &argv, ctx.timeouts).await?;
        // `-device` errors can come right after the greeting: make sure QEMU is still up.
        let pci = q.execute("query-pci", None).await?;
        let qtree = q.hmp("info qtree").await?;
        let (exit, stderr) = q.quit().await;
        Ok::<_, QemuError>((stored(pci), qtree, exit, stderr))
    }
    .await;
    ctx.tracker.finished(format!("identity {placement}"));
    match result {
        Ok((pci, qtree, exit, stderr)) => {
            probe.outcome = LaunchOutcome::Started;
            probe.exit_code = exit.code;
            probe.stderr = tail(&stderr, STDERR_RECORD);
            probe.query_pci = Some(pci);
            probe.info_qtree = Some(qtree.replace("\r\n", "\n"));
            IdentityRun::Started(probe)
        }
        Err(e) => {
            probe.outcome = if e.is_timeout() {
                LaunchOutcome::Timeout
            } else {
                LaunchOutcome::Failed
            };
            probe.exit_code = e.exit().and_then(|x| x.code);
            let text = failure_text(&e);
            probe.stderr = tail(&text, STDERR_RECORD);
            let culprit = opts.iter().find_map(|(ty, dev_opts)| {
                let last = dev_opts.len().saturating_sub(1);
                dev_opts.iter().enumerate().find_map(|(i, o)| {
                    let needle = format!("-device {o}: ");
                    text.lines().find_map(|l| {
                        l.split_once(&needle).map(|(_, msg)| Culprit {
                            ty: ty.clone(),
                            message: msg.trim().to_owned(),
                            holder: i < last,
                        })
                    })
                })
            });
            IdentityRun::Refused { probe, culprit }
        }
    }
}

/// What one placement's launches found, merged in a fixed order (round, then batch) so the
/// record never depends on timing.
#[derive(Default)]
struct BatchResult {
    started: Vec<IdentityProbe>,
    /// Every refusal QEMU gave, by type (the last one wins).
    rejected: BTreeMap<String, String>,
    /// Types refused as the first device of their launch: nothing but the machine (and, at
    /// `pcie-port`, the type's own holder port) had been created when QEMU refused them, as
    /// QEMU creates `-device` options in command-line order, so this is the refusal of the
    /// type alone. The failed launch is kept as the record.
    alone: Vec<(String, IdentityProbe)>,
    /// Types refused in company: tried again in the next round.
    deferred: Vec<String>,
    /// The placement itself failed (the machine does not start, or refuses the holder port
    /// in front of the first device).
    placement_failed: Option<IdentityProbe>,
    launches: usize,
}

/// Placement-wide state shared by the batches of a round.
struct PlacementRun<'a> {
    ctx: &'a IdentityContext,
    machine: &'a str,
    placement: &'static str,
    root_bus: Option<String>,
    /// The bare machine's launch (with one holder port at `pcie-port`), made once and only
    /// when needed: a launch failed without naming a device, or expanders are left and no
    /// launch has started to show the root bus. `(started, launch)`.
    bare: tokio::sync::OnceCell<(bool, IdentityProbe)>,
}

impl PlacementRun<'_> {
    async fn bare(&self) -> &(bool, IdentityProbe) {
        self.bare
            .get_or_init(|| async {
                self.ctx.tracker.add(1);
                match identity_launch(self.ctx, self.machine, self.placement, None, &[]).await {
                    IdentityRun::Started(p) => (true, p),
                    IdentityRun::Refused { probe, .. } => (false, probe),
                }
            })
            .await
    }

    async fn bare_failure(&self) -> Option<IdentityProbe> {
        let (started, probe) = self.bare().await;
        (!started).then(|| probe.clone())
    }

    /// One batch: launched, and on a refusal the culprit taken out (or the batch halved when
    /// QEMU does not name it) until what is left starts.
    async fn batch(&self, batch: Vec<String>, max_launches: usize) -> BatchResult {
        let mut queue: std::collections::VecDeque<Vec<String>> = [batch].into();
        let mut out = BatchResult::default();
        while let Some(mut batch) = queue.pop_front() {
            while !batch.is_empty() && out.launches < max_launches {
                out.launches += 1;
                let run = identity_launch(
                    self.ctx,
                    self.machine,
                    self.placement,
                    self.root_bus.as_deref(),
                    &batch,
                )
                .await;
                match run {
                    IdentityRun::Started(p) => {
                        out.started.push(p);
                        break;
                    }
                    IdentityRun::Refused {
                        probe,
                        culprit: Some(c),
                    } => {
                        let first = batch.first() == Some(&c.ty);
                        if c.holder
                            && first
                            && let Some(bare) = self.bare_failure().await
                        {
                            // The machine takes no holder port at all (pseries).
                            out.placement_failed = Some(bare);
                            return out;
                        }
                        batch.retain(|t| *t != c.ty);
                        out.rejected.insert(c.ty.clone(), c.message);
                        if first {
                            out.alone.push((c.ty, probe));
                        } else {
                            out.deferred.push(c.ty);
                        }
                        self.ctx.tracker.add(1);
                    }
                    IdentityRun::Refused {
                        probe,
                        culprit: None,
                    } => {
                        if let Some(bare) = self.bare_failure().await {
                            out.placement_failed = Some(bare);
                            return out;
                        }
                        if batch.len() == 1 {
                            let ty = batch.remove(0);
                            let msg = error_line(&probe.stderr).unwrap_or_else(|| {
                                match probe.exit_code {
                                    Some(c) => format!("exit code {c}"),
                                    None => "killed by a signal".to_owned(),
                                }
                            });
                            out.rejected.insert(ty.clone(), msg);
                            out.alone.push((ty, probe));
                        } else {
                            // QEMU did not say which device: halve the batch.
                            let second = batch.split_off(batch.len() / 2);
                            queue.push_front(second);
                            queue.push_front(std::mem::take(&mut batch));
                            self.ctx.tracker.add(2);
                        }
                        break;
                    }
                }
            }
        }
        out
    }
}

/// The machine's root PCI bus, as a started launch shows it: the first PCI bus of its tree.
fn root_bus_of(p: &IdentityProbe) -> Option<String> {
    p.info_qtree
        .as_deref()
        .and_then(qconform_caps::parse_qtree)
        .and_then(|t| {
            t.walk_buses()
                .into_iter()
                .find(|(_, b)| matches!(b.bus_type.as_str(), "PCI" | "PCIE"))
                .map(|(_, b)| b.id.clone())
        })
}

/// Every type of a placement, in rounds. The first round deals the types into batches of
/// at most [`BATCH`] in turn (type 1 to batch 1, type 2 to batch 2, ...), so that neighbours
/// in [`IDENTITY_TYPES`], often variants that exclude one another (one balloon per
/// machine), start in different launches; the batches run at once. A type refused as the
/// first device of its launch is refused alone; one refused in company is launched alone
/// in the second round, next to the others so refused. Expanders ([`ROOT_BUS_MAKERS`])
/// wait for the first started launch to show the root bus. The machine alone is launched
/// only to tell a refusal of the machine (or of its holder port) from one of a device.
///
/// Recorded under `PLACEMENT` (the first started launch, which also carries every refusal
/// text of the placement in `rejected`, the last one QEMU gave for each type),
/// `PLACEMENT:N` (the other started launches, in round then batch order) and
/// `PLACEMENT:TYPE` (the launch that refused TYPE alone). When the placement itself fails,
/// `PLACEMENT` is that failed launch and nothing else is recorded.
async fn identity_placement(
    ctx: &Arc<IdentityContext>,
    machine: &str,
    placement: &'static str,
    types: &[String],
) -> BTreeMap<String, IdentityProbe> {
    let mut out = BTreeMap::new();
    let order: BTreeMap<&str, usize> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let (mut makers, mut pending): (Vec<String>, Vec<String>) = types
        .iter()
        .cloned()
        .partition(|t| ROOT_BUS_MAKERS.contains(&t.as_str()));
    let mut run = PlacementRun {
        ctx,
        machine,
        placement,
        root_bus: None,
        bare: tokio::sync::OnceCell::new(),
    };
    let mut started: Vec<IdentityProbe> = Vec::new();
    let mut rejected: BTreeMap<String, String> = BTreeMap::new();
    let mut alone: Vec<(String, IdentityProbe)> = Vec::new();
    let mut launches = 0;
    let mut round = 0;
    loop {
        if !makers.is_empty() && pending.is_empty() && run.root_bus.is_none() {
            // Only expanders are left and no launch has shown the root bus yet.
            match run.bare().await {
                (true, p) => {
                    run.root_bus = root_bus_of(p);
                    if run.root_bus.is_none() {
                        // No PCI bus in its tree: nothing to keep them off, launch them as they are.
                        pending.append(&mut makers);
                    }
                }
                (false, p) => {
                    out.insert(placement.to_owned(), p.clone());
                    return out;
                }
            }
        }
        if run.root_bus.is_some() {
            pending.append(&mut makers);
        }
        if pending.is_empty() {
            break;
        }
        pending.sort_by_key(|t| order.get(t.as_str()).copied().unwrap_or(usize::MAX));
        let budget = MAX_LAUNCHES.saturating_sub(launches);
        if budget == 0 {
            for t in pending.drain(..) {
                rejected
                    .entry(t)
                    .or_insert_with(|| "not probed: the placement's launch budget ran out".into());
            }
            break;
        }
        // The first round deals everything into batches; later rounds hold the types
        // refused in company, few and likely to clash again, each launched alone so that
        // they settle at once and side by side.
        let n = if round == 0 {
            pending.len().div_ceil(BATCH)
        } else {
            pending.len()
        };
        round += 1;
        let batches: Vec<Vec<String>> = (0..n)
            .map(|i| pending.iter().skip(i).step_by(n).cloned().collect())
            .collect();
        pending.clear();
        ctx.tracker.add(n);
        let per_batch = (budget / n).max(1);
        let results = futures_join_all(batches.into_iter().map(|b| run.batch(b, per_batch))).await;
        for r in results {
            launches += r.launches;
            if let Some(failed) = r.placement_failed {
                out.clear();
                out.insert(placement.to_owned(), failed);
                return out;
            }
            started.extend(r.started);
            rejected.extend(r.rejected);
            alone.extend(r.alone);
            pending.extend(r.deferred);
        }
        if run.root_bus.is_none() {
            run.root_bus = started.first().and_then(root_bus_of);
        }
    }
    for (i, p) in started.into_iter().enumerate() {
        let key = if i == 0 {
            placement.to_owned()
        } else {
            format!("{placement}:{}", i + 1)
        };
        out.insert(key, p);
    }
    for (ty, p) in alone {
        out.insert(format!("{placement}:{ty}"), p);
    }
    // Every rejection of the placement is recorded on its first launch.
    if let Some(first) = out.get_mut(placement) {
        for (t, m) in rejected {
            first.rejected.entry(t).or_insert(m);
        }
    }
    out
}

/// Runs futures at once on the current task and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

// ---- identity cache ----------------------------------------------------------------------

/// Version of what the probe records; part of every cache key, so that snapshots recorded by
/// an older probe plan are never reused as if fresh.
pub const PROBE_FORMAT: u32 = 4;

/// Identity of a probe target: a recorded snapshot still holds while the launcher and the real
/// binary keep their path, size and modification time (or, when only those changed, while the
/// binary keeps its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetIdentity {
    /// The program executed.
    pub launcher: PathBuf,
    /// Its size in bytes.
    pub launcher_size: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub launcher_mtime: u128,
    /// The real binary.
    pub binary: PathBuf,
    /// Its size in bytes.
    pub binary_size: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub binary_mtime: u128,
}

fn size_mtime(p: &Path) -> std::io::Result<(u64, u128)> {
    let m = std::fs::metadata(p)?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((m.len(), mtime))
}

impl TargetIdentity {
    /// Reads the identity of a target (two `stat` calls, no hashing).
    pub fn of(t: &ProbeTarget) -> std::io::Result<TargetIdentity> {
        let (launcher_size, launcher_mtime) = size_mtime(&t.launcher)?;
        let (binary_size, binary_mtime) = size_mtime(&t.binary)?;
        Ok(TargetIdentity {
            launcher: t.launcher.clone(),
            launcher_size,
            launcher_mtime,
            binary: t.binary.clone(),
            binary_size,
            binary_mtime,
        })
    }
}

/// One row of the cache: a target identity, the probe options, the binary's SHA-256 and the
/// snapshot file recorded from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    /// Identity at the time of the probe.
    pub identity: TargetIdentity,
    /// Probe options ([`ProbeConfig::cache_key`]).
    pub options: String,
    /// SHA-256 of the binary.
    pub sha256: String,
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// `size:mtime` of the snapshot file (a file rewritten since is not reused).
    pub snapshot_stamp: String,
}

/// The probe identity cache: a TSV file of [`CacheRow`]s (`probe-cache.tsv` beside the other
/// caches). A target whose identity and options match a row whose snapshot file is unchanged
/// needs no QEMU launch at all.
#[derive(Debug, Clone, Default)]
pub struct ProbeCache {
    file: Option<PathBuf>,
    rows: Vec<CacheRow>,
}

impl ProbeConfig {
    /// Key of the options that change a snapshot's content (with [`PROBE_FORMAT`]).
    pub fn cache_key(&self) -> String {
        let machines = match &self.machines {
            MachineSelection::All => "all".to_owned(),
            MachineSelection::None => "none".to_owned(),
            MachineSelection::Glob(g) => format!("glob:{}", g.glob().glob()),
        };
        format!(
            "format={PROBE_FORMAT} machines={machines} identity={}",
            u8::from(self.identity)
        )
    }
}

impl ProbeCache {
    /// Opens (reads) the cache file; a missing or unreadable file is an empty cache.
    pub fn open(file: &Path) -> ProbeCache {
        let rows = std::fs::read_to_string(file)
            .map(|t| t.lines().filter_map(parse_row).collect())
            .unwrap_or_default();
        ProbeCache {
            file: Some(file.to_path_buf()),
            rows,
        }
    }

    /// The snapshot recorded for a target with these options, by identity only (no hashing,
    /// no launch): `Some((binary sha256, snapshot path))` when the launcher and binary are
    /// unchanged and the snapshot file still holds the recorded bytes.
    pub fn lookup(&self, t: &ProbeTarget, options: &str) -> Option<(String, PathBuf)> {
        let id = TargetIdentity::of(t).ok()?;
        let row = self
            .rows
            .iter()
            .find(|r| r.identity == id && r.options == options)?;
        snapshot_unchanged(row).then(|| (row.sha256.clone(), row.snapshot.clone()))
    }

    /// Like [`ProbeCache::lookup`], but when the binary's size or modification time changed
    /// (copied, touched) its SHA-256 decides: same hash, same build.
    pub fn lookup_hashing(&self, t: &ProbeTarget, options: &str) -> Option<(String, PathBuf)> {
        if let Some(hit) = self.lookup(t, options) {
            return Some(hit);
        }
        let id = TargetIdentity::of(t).ok()?;
        let candidates: Vec<&CacheRow> = self
            .rows
            .iter()
            .filter(|r| {
                r.options == options
                    && r.identity.launcher == id.launcher
                    && r.identity.launcher_size == id.launcher_size
                    && r.identity.launcher_mtime == id.launcher_mtime
                    && r.identity.binary == id.binary
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let sha = sha256_file(&t.binary).ok()?;
        candidates
            .into_iter()
            .find(|r| r.sha256 == sha && snapshot_unchanged(r))
            .map(|r| (r.sha256.clone(), r.snapshot.clone()))
    }

    /// Records (replaces) the row of a target and writes the cache file atomically. Several
    /// processes may record at once (parallel tests, two `qualify` runs): the file is
    /// re-read under an exclusive lock (`<file>.lock`) and this row merged into what is
    /// there, so no process drops another's row. Rows whose snapshot file is gone or was
    /// rewritten since are dropped on the way.
    pub fn record(
        &mut self,
        t: &ProbeTarget,
        options: &str,
        sha256: &str,
        snapshot: &Path,
    ) -> std::io::Result<()> {
        let identity = TargetIdentity::of(t)?;
        let snapshot_stamp = file_stamp(snapshot)?;
        let row = CacheRow {
            identity,
            options: options.to_owned(),
            sha256: sha256.to_owned(),
            snapshot: snapshot.to_path_buf(),
            snapshot_stamp,
        };
        let Some(file) = self.file.clone() else {
            self.merge(row, None);
            return Ok(());
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut lock_name = file.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(lock_name))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let on_disk: Vec<CacheRow> = std::fs::read_to_string(&file)
            .map(|t| t.lines().filter_map(parse_row).collect())
            .unwrap_or_default();
        self.merge(row, Some(on_disk));
        let mut text = String::new();
        for r in &self.rows {
            let i = &r.identity;
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                i.launcher.display(),
                i.launcher_size,
                i.launcher_mtime,
                i.binary.display(),
                i.binary_size,
                i.binary_mtime,
                r.options,
                r.sha256,
                r.snapshot.display(),
                r.snapshot_stamp
            ));
        }
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &file)
        // The lock is released when `lock` is dropped, after the rename.
    }

    /// Replaces the row of the same launcher and options with `row`, starting from the rows
    /// read from disk when given (dropping those whose snapshot no longer holds).
    fn merge(&mut self, row: CacheRow, on_disk: Option<Vec<CacheRow>>) {
        if let Some(rows) = on_disk {
            self.rows = rows;
            self.rows.retain(snapshot_unchanged);
        }
        self.rows.retain(|r| {
            !(r.identity.launcher == row.identity.launcher && r.options == row.options)
        });
        self.rows.push(row);
    }
}

fn file_stamp(p: &Path) -> std::io::Result<String> {
    let (size, mtime) = size_mtime(p)?;
    Ok(format!("{size}:{mtime}"))
}

fn snapshot_unchanged(r: &CacheRow) -> bool {
    file_stamp(&r.snapshot).is_ok_and(|s| s == r.snapshot_stamp)
}

fn parse_row(line: &str) -> Option<CacheRow> {
    let f: Vec<&str> = line.split('\t').collect();
    let [l, ls, lm, b, bs, bm, o, sha, snap, stamp] = f.as_slice() else {
        return None;
    };
    Some(CacheRow {
        identity: TargetIdentity {
            launcher: PathBuf::from(l),
            launcher_size: ls.parse().ok()?,
            launcher_mtime: lm.parse().ok()?,
            binary: PathBuf::from(b),
            binary_size: bs.parse().ok()?,
            binary_mtime: bm.parse().ok()?,
        },
        options: (*o).to_owned(),
        sha256: (*sha).to_owned(),
        snapshot: PathBuf::from(snap),
        snapshot_stamp: (*stamp).to_owned(),
    })
}
