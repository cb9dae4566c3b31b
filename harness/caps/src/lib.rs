//! Caps snapshots: what one QEMU binary (one version, one target architecture) accepts.
//!
//! A [`Snapshot`] has two layers:
//! * [`Raw`]: the QMP replies (and HMP text) exactly as QEMU produced them, kept as
//!   [`serde_json::Value`] so that no QEMU version can break reading them;
//! * [`Index`]: our normalised view, derived from `raw` by [`Index::derive`]. A parser fix
//!   therefore never needs a re-probe: re-derive and compare.
//!
//! This crate is pure: it does no file, process, clock or environment access. Callers read
//! the bytes and hand them over ([`Snapshot::from_json`]) and write the bytes produced by
//! [`Snapshot::to_canonical_json`], which are deterministic (sorted keys, fixed layout,
//! trailing newline) so that the same binary always gives a byte-identical file.
//!
//! Readers are lenient for QEMU's data (every reply is a `Value`) and strict for our own
//! fields (`deny_unknown_fields`, a checked [`SCHEMA_VERSION`]).

mod derive;
mod guestview;
mod qtree;
mod snapshot_id;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use derive::{
    DeriveError, bus_categories, device_ids_of_argv, error_line, no_user_devices, placement_of_key,
    sriov_vf_offsets,
};
pub use guestview::GuestPciFunction;
pub use qtree::{QtreeBus, QtreeDevice, parse_qtree};
pub use snapshot_id::{
    SnapshotId, compare_versions, file_name as snapshot_file_name, is_snapshot_file_name,
    version_key,
};

/// Version of the snapshot file layout. Bump it when a field of ours changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors reading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// The text is not JSON, or it does not have the shape of a snapshot.
    #[error("not a caps snapshot: {0}")]
    Json(serde_json::Error),
    /// The JSON is not an object with the snapshot's fields (an array, `null`, a number,
    /// or an object without `schema_version`).
    #[error("{0}")]
    Shape(String),
    /// The file was written by a different layout version.
    #[error("snapshot schema_version {found} is not supported (this build reads {expected})")]
    SchemaVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The stored index does not follow from the raw replies.
    #[error("index cannot be derived from raw replies: {0}")]
    Derive(DeriveError),
}

// The inner errors are part of the message, not `source()`: callers that print the whole
// chain (`{:#}`) would otherwise show the same text twice.
impl From<serde_json::Error> for CapsError {
    fn from(e: serde_json::Error) -> CapsError {
        CapsError::Json(e)
    }
}

impl From<DeriveError> for CapsError {
    fn from(e: DeriveError) -> CapsError {
        CapsError::Derive(e)
    }
}

/// One caps snapshot: probe metadata, raw replies and the derived index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Layout version, see [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// How and from what the snapshot was recorded.
    pub probe: ProbeInfo,
    /// Verbatim replies.
    pub raw: Raw,
    /// Normalised view derived from `raw`.
    pub index: Index,
}

/// QEMU version triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Metadata of the probe run. Holds no timestamps and no host paths, so that the same
/// binary gives the same bytes on any machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeInfo {
    /// Version triple from `query-version`.
    pub qemu_version: QemuVersion,
    /// Package string from `query-version` (e.g. `Debian 1:11.1.3+ds-1`).
    pub package: String,
    /// Target architecture from `query-target` (e.g. `x86_64`, `s390x`).
    pub arch: String,
    /// File name of the probed binary (e.g. `qemu-system-x86_64`); never a full path.
    pub binary_name: String,
    /// Lowercase hex SHA-256 of the binary's bytes: the binary's identity.
    pub binary_sha256: String,
    /// Arguments of the binary-wide probe launch (after the binary itself).
    pub probe_argv: Vec<String>,
    /// Arguments of each per-machine launch; `{machine}` stands for the machine name.
    pub machine_argv: Vec<String>,
    /// Accelerator used for every launch (`qtest` or `tcg`).
    pub accel: String,
    /// Name and version of the tool that wrote the snapshot.
    pub tool: String,
}

/// Verbatim replies. Every QMP reply is the `return` member (or, for a failed command,
/// the whole `{"error": ...}` object), untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// The QMP greeting.
    pub greeting: Value,
    /// `query-version`.
    pub query_version: Value,
    /// `query-target`.
    pub query_target: Value,
    /// `query-machines`.
    pub query_machines: Value,
    /// `qom-list-types {"abstract": true}`: the whole type forest with parents.
    pub qom_types: Value,
    /// `qom-list-types {"implements": X, "abstract": true}` per interface or base type X.
    pub qom_implements: BTreeMap<String, Value>,
    /// `device-list-properties {"typename": T}` per device type T the allocator may emit.
    /// A type the binary lacks is recorded with its error reply, not left out.
    pub device_properties: BTreeMap<String, Value>,
    /// `query-qmp-schema`, summarised (the full schema is ~250 KB per binary).
    pub qmp_schema: QmpSchemaSummary,
    /// HMP `info qdm` text (the only place QEMU tells `no-user` devices).
    pub info_qdm: String,
    /// Per-machine launches, keyed by canonical machine name.
    pub machines: BTreeMap<String, MachineProbe>,
    /// PCI identity launches, keyed by placement name (see [`Placement`]). A device type
    /// that made the shared launch fail but may start on its own (e.g. a second display
    /// adapter) gets a launch of its own keyed `<placement>:<type>`; see
    /// [`placement_of_key`].
    pub pci_identity: BTreeMap<String, IdentityProbe>,
}

/// Summary of `query-qmp-schema`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QmpSchemaSummary {
    /// Lowercase hex SHA-256 of the canonical JSON of the full reply.
    pub sha256: String,
    /// Number of schema entries.
    pub entries: usize,
    /// Names of all commands, sorted.
    pub commands: Vec<String>,
    /// Names of all events, sorted.
    pub events: Vec<String>,
}

/// Outcome of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchOutcome {
    /// QMP came up and the queries were answered.
    Started,
    /// QEMU exited (or was killed by a signal) before answering.
    Failed,
    /// QEMU did not answer in time and was killed.
    Timeout,
    /// Not attempted (filtered out by the caller).
    Skipped,
}

/// One per-machine launch: `-machine M -nodefaults -S`, then `query-pci` and `info qtree`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineProbe {
    /// Arguments used (after the binary).
    pub argv: Vec<String>,
    /// What happened.
    pub outcome: LaunchOutcome,
    /// Exit code when QEMU exited by itself.
    pub exit_code: Option<i32>,
    /// Signal number when QEMU died from a signal (e.g. 6 for an abort).
    pub signal: Option<i32>,
    /// Standard error (trimmed; the last 4 KiB at most).
    pub stderr: String,
    /// `query-pci` reply, when started.
    pub query_pci: Option<Value>,
    /// HMP `info qtree` text, when started.
    pub info_qtree: Option<String>,
}

/// One PCI identity launch: many device types plugged at one [`Placement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProbe {
    /// Arguments used (after the binary).
    pub argv: Vec<String>,
    /// What happened.
    pub outcome: LaunchOutcome,
    /// Exit code when QEMU exited by itself.
    pub exit_code: Option<i32>,
    /// Standard error (trimmed).
    pub stderr: String,
    /// `query-pci` reply, when started.
    pub query_pci: Option<Value>,
    /// HMP `info qtree` text, when started.
    pub info_qtree: Option<String>,
    /// Device types that were left out of this launch because they alone made it fail,
    /// with the error text QEMU gave for them.
    pub rejected: BTreeMap<String, String>,
}

/// Where a device sits, as far as its guest-visible identity is concerned.
///
/// Virtio devices are transitional (`1af4:10xx`) on root and conventional buses and
/// modern-only (`1af4:1040+n`) behind a PCIe port; other devices mostly do not care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// On the machine's root PCI bus (`pci.0` or `pcie.0`), or a conventional bus below it.
    Root,
    /// On the secondary bus of a PCIe root port (or switch downstream port).
    PciePort,
}

impl Placement {
    /// Stable name used as a key in [`Raw::pci_identity`].
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Root => "root",
            Placement::PciePort => "pcie-port",
        }
    }
}

/// Normalised view derived from [`Raw`]. Everything is sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Canonical name of the default machine (`is-default`), if any.
    pub default_machine: Option<String>,
    /// Alias → canonical machine name (e.g. `q35` → `pc-q35-11.1`).
    pub aliases: BTreeMap<String, String>,
    /// Machine types by canonical name.
    pub machines: BTreeMap<String, MachineInfo>,
    /// Every QOM type (abstract ones too) with its parent.
    pub types: BTreeMap<String, TypeInfo>,
    /// Interface or base type → concrete types implementing it (from `qom-list-types
    /// implements=`).
    pub implements: BTreeMap<String, BTreeSet<String>>,
    /// Device types marked `no-user` in `info qdm`.
    pub no_user: BTreeSet<String>,
    /// Properties of each probed device type; `None` when the binary lacks the type.
    pub device_properties: BTreeMap<String, Option<BTreeMap<String, PropertyInfo>>>,
    /// QMP command names.
    pub qmp_commands: BTreeSet<String>,
    /// QMP event names.
    pub qmp_events: BTreeSet<String>,
    /// What each probed machine offers with `-nodefaults`.
    pub machine_caps: BTreeMap<String, MachineCaps>,
    /// Guest-visible identity of device types per placement.
    pub pci_ids: BTreeMap<String, BTreeMap<Placement, PciId>>,
}

/// One `query-machines` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineInfo {
    /// Alias (`pc`, `q35`, `virt`, ...).
    pub alias: Option<String>,
    /// Whether this is the default machine.
    pub is_default: bool,
    /// Whether QEMU marks it deprecated.
    pub deprecated: bool,
    /// Maximum number of CPUs.
    pub cpu_max: Option<i64>,
    /// Default CPU type (4.2+).
    pub default_cpu_type: Option<String>,
    /// Whether the machine supports ACPI (8.0+; `None` before).
    pub acpi: Option<bool>,
}

/// One QOM type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeInfo {
    /// Parent type.
    pub parent: Option<String>,
    /// Whether the type is abstract.
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
}

/// One device property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyInfo {
    /// QAPI/QOM type name of the property.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default value, when QEMU reports one (5.0+).
    pub default: Option<Value>,
}

/// What one machine offers with `-nodefaults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineCaps {
    /// Whether the machine started.
    pub starts: bool,
    /// Why it did not start: the first line of QEMU's error (or `timeout`, `signal N`).
    pub error: Option<String>,
    /// Buses present right after machine init, in `info qtree` order.
    pub buses: Vec<BusInfo>,
    /// PCI functions present with `-nodefaults` (bus 0 as seen by `query-pci` at `-S`).
    pub builtin_pci: Vec<PciFunction>,
    /// Device categories that can be plugged without adding a controller
    /// (`pci`, `pcie`, `isa`, `ide`, `floppy`, `usb`, `scsi`, `ccw`, `sysbus`, `virtio-mmio`, ...).
    pub categories: BTreeSet<String>,
    /// Bus a PCI device lands on when no `bus=` is given (the first PCI/PCIe bus).
    pub default_pci_bus: Option<BusRef>,
}

/// A bus of a running machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusInfo {
    /// Bus id as used in `bus=` (e.g. `pcie.0`, `ide.1`, `virtual-css`).
    pub id: String,
    /// Bus QOM type name as printed by QEMU (e.g. `PCIE`, `PCI`, `IDE`, `floppy-bus`).
    pub bus_type: String,
    /// Type of the device that owns the bus (`None` for the main system bus).
    pub parent_type: Option<String>,
    /// Id of the device that owns the bus, when it has one.
    pub parent_id: Option<String>,
}

/// A bus by id and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusRef {
    /// Bus id.
    pub id: String,
    /// Bus type.
    pub bus_type: String,
}

/// A PCI function as QEMU reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciFunction {
    /// Bus number.
    pub bus: u8,
    /// Slot.
    pub slot: u8,
    /// Function.
    pub function: u8,
    /// Identity.
    pub id: PciId,
    /// qdev id (empty when none).
    pub qdev_id: String,
}

/// Guest-visible identity of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id, when known.
    pub subsystem_vendor: Option<u16>,
    /// Subsystem id, when known.
    pub subsystem: Option<u16>,
    /// Class (base class << 8 | subclass), as `lspci -n` prints it.
    pub class: u16,
}

impl Snapshot {
    /// Parses a snapshot, checking our own fields strictly.
    pub fn from_json(text: &str) -> Result<Snapshot, CapsError> {
        // Check the version before the full parse so that an old file says so clearly.
        let head: Value = serde_json::from_str(text)?;
        let Some(obj) = head.as_object() else {
            let what = match &head {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            };
            return Err(CapsError::Shape(format!(
                "the document is {what}, not an object with schema_version, probe, raw and index"
            )));
        };
        let Some(version) = obj.get("schema_version") else {
            let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
            return Err(CapsError::Shape(format!(
                "the object has no schema_version (its keys: {}); a snapshot has schema_version, probe, raw and index",
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            )));
        };
        let Some(found) = version.as_u64() else {
            return Err(CapsError::Shape(format!(
                "schema_version is {version}, not a number"
            )));
        };
        if found != u64::from(SCHEMA_VERSION) {
            return Err(CapsError::SchemaVersion {
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: SCHEMA_VERSION,
            });
        }
        Ok(serde_json::from_value(head)?)
    }

    /// Builds a snapshot from raw replies, deriving the index.
    pub fn new(probe: ProbeInfo, raw: Raw) -> Result<Snapshot, CapsError> {
        let index = Index::derive(&raw)?;
        Ok(Snapshot {
            schema_version: SCHEMA_VERSION,
            probe,
            raw,
            index,
        })
    }

    /// Deterministic bytes: keys sorted at every level, two-space indentation, final newline.
    pub fn to_canonical_json(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        canonical_json(&value)
    }

    /// This snapshot's [`SnapshotId`] (full version and arch).
    pub fn snapshot_id(&self) -> SnapshotId {
        SnapshotId {
            version: self.probe.qemu_version.to_string(),
            arch: self.probe.arch.clone(),
        }
    }

    /// Stable identifier, `<version>/<arch>` (e.g. `11.1.3/x86_64`).
    pub fn id(&self) -> String {
        format!("{}/{}", self.probe.qemu_version, self.probe.arch)
    }

    /// File name this snapshot is stored under: `caps_<version>_<arch>.json`.
    pub fn file_name(&self) -> String {
        snapshot_id::file_name(&self.probe.qemu_version.to_string(), &self.probe.arch)
    }

    /// Resolves a machine name or alias to the canonical name; `None` asks for the
    /// default machine. Returns `None` when the binary has no such machine.
    pub fn resolve_machine(&self, name: Option<&str>) -> Option<&str> {
        match name {
            None => self.index.default_machine.as_deref(),
            Some(n) => {
                if let Some((k, _)) = self.index.machines.get_key_value(n) {
                    Some(k.as_str())
                } else {
                    self.index.aliases.get(n).map(String::as_str)
                }
            }
        }
    }

    /// Whether the binary has a concrete QOM type of this name.
    pub fn has_type(&self, name: &str) -> bool {
        self.index.types.get(name).is_some_and(|t| !t.is_abstract)
    }

    /// Whether the binary has a concrete, user-creatable device type of this name.
    pub fn has_device(&self, name: &str) -> bool {
        self.has_type(name)
            && !self.index.no_user.contains(name)
            && self
                .index
                .implements
                .get("device")
                .is_none_or(|s| s.contains(name))
    }

    /// Whether `ty` implements the interface (or has the base type) `iface`.
    pub fn implements(&self, ty: &str, iface: &str) -> bool {
        self.index
            .implements
            .get(iface)
            .is_some_and(|s| s.contains(ty))
    }

    /// Whether a probed device type has a property (false when not probed or absent).
    pub fn device_has_property(&self, ty: &str, prop: &str) -> bool {
        self.index
            .device_properties
            .get(ty)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.contains_key(prop))
    }

    /// Guest-visible identity of a device type at a placement. Falls back to the root
    /// placement when the binary could not plug the type behind a PCIe port.
    pub fn pci_id(&self, ty: &str, placement: Placement) -> Option<PciId> {
        let ids = self.index.pci_ids.get(ty)?;
        ids.get(&placement)
            .or_else(|| ids.get(&Placement::Root))
            .copied()
    }

    /// Devfn offsets, from the physical function, of the SR-IOV virtual functions this
    /// binary creates when it realizes a device of type `ty` (see [`sriov_vf_offsets`]).
    pub fn sriov_vf_offsets(&self, ty: &str) -> Vec<u8> {
        sriov_vf_offsets(&self.raw.pci_identity, ty)
    }

    /// Caps of a machine (canonical name or alias).
    pub fn machine_caps(&self, name: &str) -> Option<&MachineCaps> {
        let canonical = self.resolve_machine(Some(name))?;
        self.index.machine_caps.get(canonical)
    }
}

/// Serialises a JSON value deterministically: object keys sorted at every level
/// (whatever `serde_json` features are enabled elsewhere in the build), two-space
/// indentation and a final newline.
pub fn canonical_json(value: &Value) -> String {
    let sorted = sort_keys(value);
    let mut out = serde_json::to_string_pretty(&sorted).unwrap_or_default();
    out.push('\n');
    out
}

fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = serde_json::Map::new();
            for (k, v) in entries {
                out.insert(k.clone(), sort_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}
