//! Caps diff: what changed between two caps snapshots of the same architecture (usually
//! two QEMU releases), as data ([`CapsDiff`]) that the renderers in [`crate::diff_render`]
//! turn into text, Markdown, HTML or JSON.
//!
//! Everything here is pure: the functions take parsed [`Snapshot`]s and return values.
//! Every list is sorted (or kept in QEMU's order where the order means something, such as
//! the buses of a machine), so the same two snapshots always give the same diff.
//!
//! The JSON form of [`DiffSet`] is a stable, documented interface (see
//! `docs/reading-the-report.md`): fields are only ever added, and
//! [`DIFF_SCHEMA_VERSION`] changes when a field changes meaning.

use std::collections::{BTreeMap, BTreeSet};

use qconform_caps::{
    LaunchOutcome, MachineCaps, PciId, Placement, PropertyInfo, Snapshot, device_ids_of_argv,
    error_line, placement_of_key,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the JSON layout of [`DiffSet`] / [`CapsDiff`].
pub const DIFF_SCHEMA_VERSION: u32 = 1;

/// Which snapshot a side of a diff is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// `<version>/<arch>` (e.g. `11.1.3/x86_64`).
    pub id: String,
    /// QEMU version triple as text.
    pub qemu_version: String,
    /// Target architecture.
    pub arch: String,
    /// Package string from `query-version`.
    pub package: String,
    /// SHA-256 of the probed binary.
    pub binary_sha256: String,
}

impl SnapshotRef {
    /// Identifies a snapshot.
    pub fn of(snap: &Snapshot) -> SnapshotRef {
        SnapshotRef {
            id: snap.id(),
            qemu_version: snap.probe.qemu_version.to_string(),
            arch: snap.probe.arch.clone(),
            package: snap.probe.package.clone(),
            binary_sha256: snap.probe.binary_sha256.clone(),
        }
    }
}

/// An old and a new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    /// Value in the old snapshot.
    pub old: T,
    /// Value in the new snapshot.
    pub new: T,
}

/// Difference of two lists of names (or of one-line renderings of structured items).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDiff {
    /// Items only in the new list, sorted.
    pub added: Vec<String>,
    /// Items only in the old list, sorted.
    pub removed: Vec<String>,
    /// Same items, different order (only for lists whose order means something).
    #[serde(default)]
    pub reordered: bool,
    /// Unified diff of the two lists (one item per line), empty when they are equal.
    /// Not part of the JSON: it is a rendering aid.
    #[serde(skip)]
    pub unified: String,
}

impl ListDiff {
    /// Compares two sets of items. Items are listed in natural order (`pc-q35-2.12` before
    /// `pc-q35-10.0`); the unified diff shows one line of context.
    pub fn of_sets(old: &BTreeSet<String>, new: &BTreeSet<String>, labels: (&str, &str)) -> Self {
        let mut added: Vec<String> = new.difference(old).cloned().collect();
        let mut removed: Vec<String> = old.difference(new).cloned().collect();
        added.sort_by(|a, b| natural_cmp(a, b));
        removed.sort_by(|a, b| natural_cmp(a, b));
        let unified = if added.is_empty() && removed.is_empty() {
            String::new()
        } else {
            let mut o: Vec<&str> = old.iter().map(String::as_str).collect();
            let mut n: Vec<&str> = new.iter().map(String::as_str).collect();
            o.sort_by(|a, b| natural_cmp(a, b));
            n.sort_by(|a, b| natural_cmp(a, b));
            unified_lines(&o, &n, labels, 1)
        };
        ListDiff {
            added,
            removed,
            reordered: false,
            unified,
        }
    }

    /// Compares two ordered lists (duplicates allowed); order changes count as changes.
    pub fn of_lists(old: &[String], new: &[String], labels: (&str, &str)) -> Self {
        if old == new {
            return ListDiff::default();
        }
        let mut old_count: BTreeMap<&str, i64> = BTreeMap::new();
        for item in old {
            *old_count.entry(item).or_default() += 1;
        }
        let mut new_count: BTreeMap<&str, i64> = BTreeMap::new();
        for item in new {
            *new_count.entry(item).or_default() += 1;
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let keys: BTreeSet<&str> = old_count.keys().chain(new_count.keys()).copied().collect();
        for k in keys {
            let delta =
                new_count.get(k).copied().unwrap_or(0) - old_count.get(k).copied().unwrap_or(0);
            for _ in 0..delta.max(0) {
                added.push(k.to_owned());
            }
            for _ in 0..(-delta).max(0) {
                removed.push(k.to_owned());
            }
        }
        let reordered = added.is_empty() && removed.is_empty();
        let o: Vec<&str> = old.iter().map(String::as_str).collect();
        let n: Vec<&str> = new.iter().map(String::as_str).collect();
        ListDiff {
            added,
            removed,
            reordered,
            unified: unified_lines(&o, &n, labels, 3),
        }
    }

    /// Whether the lists are equal.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && !self.reordered
    }
}

/// Natural order: runs of digits compare as numbers (`2.12 < 10.0`), the rest as text;
/// ties fall back to plain byte order so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            let boundary =
                i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit();
            if boundary {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, dx), (true, dy)) => {
                let tx = dx.trim_start_matches('0');
                let ty = dy.trim_start_matches('0');
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            ((_, sx), (_, sy)) => sx.cmp(sy),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Unified diff (`similar`) of two lists of lines, with `---`/`+++` headers.
pub fn unified_lines(old: &[&str], new: &[&str], labels: (&str, &str), context: usize) -> String {
    let mut a = old.join("\n");
    if !old.is_empty() {
        a.push('\n');
    }
    let mut b = new.join("\n");
    if !new.is_empty() {
        b.push('\n');
    }
    unified_text(&a, &b, labels, context)
}

/// Unified diff (`similar`) of two texts, with `---`/`+++` headers; empty when equal.
pub fn unified_text(old: &str, new: &str, labels: (&str, &str), context: usize) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(context)
        .header(labels.0, labels.1)
        .missing_newline_hint(false)
        .to_string()
}

/// Machine types added, removed and (un)deprecated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineTypesDiff {
    /// Canonical names only in the new snapshot.
    pub added: Vec<String>,
    /// Canonical names only in the old snapshot.
    pub removed: Vec<String>,
    /// Present in both, deprecated only in the new one.
    pub newly_deprecated: Vec<String>,
    /// Present in both, deprecated only in the old one.
    pub no_longer_deprecated: Vec<String>,
    /// Why each removed machine type is gone, in QEMU's terms: the new binary does not
    /// list it in `query-machines`, and whether the old one had marked it deprecated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_reasons: BTreeMap<String, String>,
    /// Unified diff of the machine name lists (rendering aid, not in JSON).
    #[serde(skip)]
    pub unified: String,
}

impl MachineTypesDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.newly_deprecated.is_empty()
            && self.no_longer_deprecated.is_empty()
    }
}

/// An alias (`pc`, `q35`, `virt`, `s390-ccw-virtio`) that points at another machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMove {
    /// The alias.
    pub alias: String,
    /// Canonical machine it resolved to in the old snapshot (`None`: no such alias).
    pub old: Option<String>,
    /// Canonical machine it resolves to in the new snapshot.
    pub new: Option<String>,
}

/// One attribute of `query-machines` entries that changed, grouped over machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineFieldChange {
    /// Attribute name as in `query-machines` (`acpi`, `cpu-max`, `default-cpu-type`, ...).
    pub field: String,
    /// Old value (`null` when absent).
    pub old: Value,
    /// New value (`null` when absent).
    pub new: Value,
    /// Machines (present in both snapshots) with exactly this change, sorted.
    pub machines: Vec<String>,
}

/// Membership change of one interface or base type (`pci-express-device`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDiff {
    /// Interface or base type name.
    pub interface: String,
    /// Concrete types that started or stopped implementing it.
    pub members: ListDiff,
}

/// A device property as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertySummary {
    /// Property name.
    pub name: String,
    /// QAPI/QOM type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default value, when QEMU reports one.
    pub default: Option<Value>,
}

/// A property present in both snapshots whose type or default changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyChange {
    /// Property name.
    pub name: String,
    /// Type change, when the type changed.
    #[serde(rename = "type")]
    pub ty: Option<Change<String>>,
    /// Default change, when the default changed.
    pub default: Option<Change<Option<Value>>>,
}

/// Property changes of one probed device type (the types the allocator may emit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePropertiesDiff {
    /// Device type.
    pub device: String,
    /// Whether the binary has the type (old, new), when that changed.
    pub present: Option<Change<bool>>,
    /// QEMU's reply to `device-list-properties` on the side that lacks the type
    /// (`Device 'qxl' not found`), when `present` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Properties only in the new snapshot.
    pub added: Vec<PropertySummary>,
    /// Properties only in the old snapshot.
    pub removed: Vec<String>,
    /// Properties whose type or default changed.
    pub changed: Vec<PropertyChange>,
}

/// What changed in one machine's `-nodefaults` start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineCapsDiff {
    /// Canonical machine name in the new snapshot.
    pub machine: String,
    /// Canonical machine name in the old snapshot (differs when compared through an alias).
    pub old_machine: String,
    /// The alias through which the two were paired, when the names differ.
    pub via_alias: Option<String>,
    /// Whether it starts (old, new), when that changed.
    pub starts: Option<Change<bool>>,
    /// First line of the start error, when that changed.
    pub error: Option<Change<Option<String>>>,
    /// Buses after machine init (`id: TYPE (owner type)`), in QEMU's order.
    pub buses: ListDiff,
    /// Pluggable device categories.
    pub categories: ListDiff,
    /// Built-in PCI functions (`BB:SS.F vvvv:dddd class cccc`).
    pub builtin_pci: ListDiff,
    /// Default PCI bus (`id (TYPE)`), when it changed.
    pub default_pci_bus: Option<Change<Option<String>>>,
}

impl MachineCapsDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.starts.is_none()
            && self.error.is_none()
            && self.buses.is_empty()
            && self.categories.is_empty()
            && self.builtin_pci.is_empty()
            && self.default_pci_bus.is_none()
    }
}

/// Guest-visible identity of a device type at a placement that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciIdChange {
    /// Device type.
    pub device: String,
    /// Placement (`root`, `pcie-port`).
    pub placement: String,
    /// Old identity (`vvvv:dddd subsys ssss:ssss class cccc`), `None` when not recorded.
    pub old: Option<String>,
    /// New identity.
    pub new: Option<String>,
    /// When `old` is `None`: why the old snapshot has no identity, in QEMU's words (the
    /// error of the probe launch that carried the type, or `device-list-properties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_reason: Option<String>,
    /// When `new` is `None`: why the new snapshot has no identity (e.g. `failed to find
    /// romfile "efi-e1000.rom"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_reason: Option<String>,
}

/// Everything that differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapsDiff {
    /// Old side.
    pub old: SnapshotRef,
    /// New side.
    pub new: SnapshotRef,
    /// Machine types added, removed, newly deprecated.
    pub machine_types: MachineTypesDiff,
    /// Default machine, when it moved.
    pub default_machine: Option<Change<Option<String>>>,
    /// Aliases whose target changed (appeared, vanished or moved).
    pub aliases: Vec<AliasMove>,
    /// Attribute names seen in `query-machines` entries (e.g. `acpi` appearing).
    pub machine_fields: ListDiff,
    /// Attribute changes of machines present in both snapshots.
    pub machine_attributes: Vec<MachineFieldChange>,
    /// Concrete device types added or removed.
    pub device_types: ListDiff,
    /// Why each removed device type is gone: QEMU's `device-list-properties` error where
    /// the type was probed, otherwise that `qom-list-types` no longer lists it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_types_removed_reasons: BTreeMap<String, String>,
    /// Device types that became (or stopped being) `no-user`.
    pub no_user: ListDiff,
    /// Interface membership changes, by interface.
    pub interfaces: Vec<InterfaceDiff>,
    /// Property changes of the probed device types.
    pub device_properties: Vec<DevicePropertiesDiff>,
    /// Per-machine start status, buses, categories and default bus changes.
    pub machine_caps: Vec<MachineCapsDiff>,
    /// PCI identity changes.
    pub pci_ids: Vec<PciIdChange>,
    /// QMP commands added or removed.
    pub qmp_commands: ListDiff,
    /// QMP events added or removed.
    pub qmp_events: ListDiff,
}

impl CapsDiff {
    /// Whether the two snapshots agree on everything this diff looks at.
    pub fn is_empty(&self) -> bool {
        self.machine_types.is_empty()
            && self.default_machine.is_none()
            && self.aliases.is_empty()
            && self.machine_fields.is_empty()
            && self.machine_attributes.is_empty()
            && self.device_types.is_empty()
            && self.no_user.is_empty()
            && self.interfaces.is_empty()
            && self.device_properties.is_empty()
            && self.machine_caps.is_empty()
            && self.pci_ids.is_empty()
            && self.qmp_commands.is_empty()
            && self.qmp_events.is_empty()
    }

    /// Anchor-friendly key: `<arch>-<old version>-<new version>`.
    pub fn key(&self) -> String {
        if self.old.arch == self.new.arch {
            format!(
                "{}-{}-{}",
                self.old.arch, self.old.qemu_version, self.new.qemu_version
            )
        } else {
            format!(
                "{}-{}-{}-{}",
                self.old.arch, self.old.qemu_version, self.new.arch, self.new.qemu_version
            )
        }
    }

    /// One-line summary (`machine types +3 -12 (1 newly deprecated), aliases moved 2, ...`).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut plus_minus = |what: &str, added: usize, removed: usize| {
            if added + removed > 0 {
                parts.push(format!("{what} +{added} -{removed}"));
            }
        };
        let mt = &self.machine_types;
        plus_minus("machine types", mt.added.len(), mt.removed.len());
        plus_minus(
            "device types",
            self.device_types.added.len(),
            self.device_types.removed.len(),
        );
        plus_minus(
            "QMP commands",
            self.qmp_commands.added.len(),
            self.qmp_commands.removed.len(),
        );
        plus_minus(
            "QMP events",
            self.qmp_events.added.len(),
            self.qmp_events.removed.len(),
        );
        let mut count = |what: &str, n: usize| {
            if n > 0 {
                parts.push(format!("{what} {n}"));
            }
        };
        count("newly deprecated", mt.newly_deprecated.len());
        count(
            "aliases/default moved",
            self.aliases.len() + usize::from(self.default_machine.is_some()),
        );
        count("interfaces changed", self.interfaces.len());
        count(
            "devices with property changes",
            self.device_properties.len(),
        );
        count("machines with start-up changes", self.machine_caps.len());
        count("PCI identity changes", self.pci_ids.len());
        if parts.is_empty() {
            "no differences".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A set of diffs, the top-level JSON document of `qconform diff --format json` and of
/// `caps-diff.json` in a run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffSet {
    /// See [`DIFF_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The diffs, sorted by architecture then old version.
    pub diffs: Vec<CapsDiff>,
    /// Old snapshots that had no partner of the same architecture.
    pub unpaired_old: Vec<SnapshotRef>,
    /// New snapshots that had no partner of the same architecture.
    pub unpaired_new: Vec<SnapshotRef>,
}

impl DiffSet {
    /// Wraps diffs without unpaired snapshots.
    pub fn of(diffs: Vec<CapsDiff>) -> DiffSet {
        DiffSet {
            schema_version: DIFF_SCHEMA_VERSION,
            diffs,
            unpaired_old: Vec::new(),
            unpaired_new: Vec::new(),
        }
    }
}

/// Compares two snapshots.
pub fn diff(old: &Snapshot, new: &Snapshot) -> CapsDiff {
    let oid = old.id();
    let nid = new.id();
    let labels = (oid.as_str(), nid.as_str());
    let (oi, ni) = (&old.index, &new.index);

    let old_machines: BTreeSet<String> = oi.machines.keys().cloned().collect();
    let new_machines: BTreeSet<String> = ni.machines.keys().cloned().collect();
    let names = ListDiff::of_sets(&old_machines, &new_machines, labels);
    let mut newly_deprecated = Vec::new();
    let mut no_longer_deprecated = Vec::new();
    for (name, o) in &oi.machines {
        if let Some(n) = ni.machines.get(name) {
            if n.deprecated && !o.deprecated {
                newly_deprecated.push(name.clone());
            }
            if o.deprecated && !n.deprecated {
                no_longer_deprecated.push(name.clone());
            }
        }
    }
    newly_deprecated.sort_by(|a, b| natural_cmp(a, b));
    no_longer_deprecated.sort_by(|a, b| natural_cmp(a, b));
    let removed_reasons = names
        .removed
        .iter()
        .map(|m| {
            let deprecated = oi.machines.get(m).is_some_and(|i| i.deprecated);
            let mut why = format!("not listed by query-machines of {nid}");
            if deprecated {
                why.push_str(&format!("; deprecated in {oid}"));
            }
            (m.clone(), why)
        })
        .collect();
    let machine_types = MachineTypesDiff {
        added: names.added,
        removed: names.removed,
        newly_deprecated,
        no_longer_deprecated,
        removed_reasons,
        unified: names.unified,
    };

    let default_machine = (oi.default_machine != ni.default_machine).then(|| Change {
        old: oi.default_machine.clone(),
        new: ni.default_machine.clone(),
    });

    let alias_names: BTreeSet<&String> = oi.aliases.keys().chain(ni.aliases.keys()).collect();
    let aliases: Vec<AliasMove> = alias_names
        .into_iter()
        .filter_map(|a| {
            let o = oi.aliases.get(a).cloned();
            let n = ni.aliases.get(a).cloned();
            (o != n).then(|| AliasMove {
                alias: a.clone(),
                old: o,
                new: n,
            })
        })
        .collect();

    let machine_fields = ListDiff::of_sets(
        &query_machines_fields(old),
        &query_machines_fields(new),
        labels,
    );
    let machine_attributes = machine_attribute_changes(old, new);

    let device_types = ListDiff::of_sets(&device_types(old), &device_types(new), labels);
    let device_types_removed_reasons = device_types
        .removed
        .iter()
        .map(|t| {
            let why = properties_error(new, t)
                .unwrap_or_else(|| format!("not listed by qom-list-types of {nid}"));
            (t.clone(), why)
        })
        .collect();
    let no_user = ListDiff::of_sets(&oi.no_user, &ni.no_user, labels);

    let empty = BTreeSet::new();
    let iface_names: BTreeSet<&String> = oi
        .implements
        .keys()
        .chain(ni.implements.keys())
        .filter(|k| k.as_str() != "device")
        .collect();
    let interfaces: Vec<InterfaceDiff> = iface_names
        .into_iter()
        .filter_map(|iface| {
            let members = ListDiff::of_sets(
                oi.implements.get(iface).unwrap_or(&empty),
                ni.implements.get(iface).unwrap_or(&empty),
                labels,
            );
            (!members.is_empty()).then(|| InterfaceDiff {
                interface: iface.clone(),
                members,
            })
        })
        .collect();

    let dev_names: BTreeSet<&String> = oi
        .device_properties
        .keys()
        .chain(ni.device_properties.keys())
        .collect();
    let device_properties: Vec<DevicePropertiesDiff> = dev_names
        .into_iter()
        .filter_map(|d| {
            let mut p = property_diff(
                d,
                oi.device_properties.get(d).and_then(Option::as_ref),
                ni.device_properties.get(d).and_then(Option::as_ref),
                oi.device_properties.contains_key(d),
                ni.device_properties.contains_key(d),
            )?;
            if let Some(c) = &p.present {
                let lacking = if c.new { old } else { new };
                p.reason = properties_error(lacking, d);
            }
            Some(p)
        })
        .collect();

    let machine_caps = machine_caps_changes(old, new, labels);
    let pci_ids = pci_id_changes(old, new);

    CapsDiff {
        old: SnapshotRef::of(old),
        new: SnapshotRef::of(new),
        machine_types,
        default_machine,
        aliases,
        machine_fields,
        machine_attributes,
        device_types,
        device_types_removed_reasons,
        no_user,
        interfaces,
        device_properties,
        machine_caps,
        pci_ids,
        qmp_commands: ListDiff::of_sets(&oi.qmp_commands, &ni.qmp_commands, labels),
        qmp_events: ListDiff::of_sets(&oi.qmp_events, &ni.qmp_events, labels),
    }
}

/// Pairs two sets of snapshots by architecture and compares each pair. When one side has
/// several snapshots of an architecture, the newest of each side is used and the others
/// are listed as unpaired.
pub fn diff_sets(old: &[Snapshot], new: &[Snapshot]) -> DiffSet {
    let newest = |set: &[Snapshot]| -> BTreeMap<String, usize> {
        let mut by_arch: BTreeMap<String, usize> = BTreeMap::new();
        for (i, s) in set.iter().enumerate() {
            let e = by_arch.entry(s.probe.arch.clone()).or_insert(i);
            if set[*e].probe.qemu_version < s.probe.qemu_version {
                *e = i;
            }
        }
        by_arch
    };
    let o = newest(old);
    let n = newest(new);
    let mut diffs = Vec::new();
    let mut unpaired_old = Vec::new();
    let mut unpaired_new = Vec::new();
    for (i, s) in old.iter().enumerate() {
        match (o.get(&s.probe.arch), n.get(&s.probe.arch)) {
            (Some(&oi), Some(&ni)) if oi == i => diffs.push(diff(s, &new[ni])),
            _ => unpaired_old.push(SnapshotRef::of(s)),
        }
    }
    for (i, s) in new.iter().enumerate() {
        let paired = o.contains_key(&s.probe.arch) && n.get(&s.probe.arch) == Some(&i);
        if !paired {
            unpaired_new.push(SnapshotRef::of(s));
        }
    }
    diffs.sort_by(|a, b| {
        (&a.old.arch, &a.old.qemu_version).cmp(&(&b.old.arch, &b.old.qemu_version))
    });
    unpaired_old.sort_by(|a, b| a.id.cmp(&b.id));
    unpaired_new.sort_by(|a, b| a.id.cmp(&b.id));
    DiffSet {
        schema_version: DIFF_SCHEMA_VERSION,
        diffs,
        unpaired_old,
        unpaired_new,
    }
}

/// Diffs of every pair of adjacent versions per architecture (sorted by arch, version).
pub fn adjacent(snapshots: &[Snapshot]) -> Vec<CapsDiff> {
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.probe.arch, a.probe.qemu_version).cmp(&(&b.probe.arch, b.probe.qemu_version))
    });
    sorted
        .windows(2)
        .filter(|w| w[0].probe.arch == w[1].probe.arch)
        .map(|w| diff(w[0], w[1]))
        .collect()
}

/// Concrete device types of a snapshot: the `implements device` list when recorded,
/// otherwise the concrete types whose parent chain reaches `device`.
pub fn device_types(snap: &Snapshot) -> BTreeSet<String> {
    if let Some(set) = snap.index.implements.get("device") {
        return set.clone();
    }
    let types = &snap.index.types;
    types
        .iter()
        .filter(|(_, t)| !t.is_abstract)
        .filter(|(name, _)| {
            let mut cur = name.as_str();
            // Bounded walk: a malformed (cyclic) parent chain must not hang us.
            for _ in 0..types.len() {
                if cur == "device" {
                    return true;
                }
                match types.get(cur).and_then(|t| t.parent.as_deref()) {
                    Some(p) => cur = p,
                    None => return false,
                }
            }
            false
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Names of the attributes present in any `query-machines` entry of the raw reply.
pub fn query_machines_fields(snap: &Snapshot) -> BTreeSet<String> {
    snap.raw
        .query_machines
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// `query-machines` entries keyed by name (from the raw reply).
fn raw_machines(snap: &Snapshot) -> BTreeMap<String, &serde_json::Map<String, Value>> {
    snap.raw
        .query_machines
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|m| Some((m.get("name")?.as_str()?.to_owned(), m)))
        .collect()
}

fn machine_attribute_changes(old: &Snapshot, new: &Snapshot) -> Vec<MachineFieldChange> {
    // `name` identifies the entry; `deprecated` and `alias`/`is-default` are reported
    // in their own sections.
    const SKIP: &[&str] = &["name", "deprecated", "alias", "is-default"];
    let o = raw_machines(old);
    let n = raw_machines(new);
    // (field, old as text, new as text) -> (old, new, machines)
    type Group = (Value, Value, Vec<String>);
    let mut grouped: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    for (name, om) in &o {
        let Some(nm) = n.get(name) else { continue };
        let fields: BTreeSet<&String> = om.keys().chain(nm.keys()).collect();
        for f in fields {
            if SKIP.contains(&f.as_str()) {
                continue;
            }
            let ov = om.get(f).cloned().unwrap_or(Value::Null);
            let nv = nm.get(f).cloned().unwrap_or(Value::Null);
            if ov != nv {
                let key = (f.clone(), ov.to_string(), nv.to_string());
                grouped
                    .entry(key)
                    .or_insert_with(|| (ov, nv, Vec::new()))
                    .2
                    .push(name.clone());
            }
        }
    }
    grouped
        .into_iter()
        .map(|((field, _, _), (old, new, mut machines))| {
            machines.sort_by(|a, b| natural_cmp(a, b));
            MachineFieldChange {
                field,
                old,
                new,
                machines,
            }
        })
        .collect()
}

fn property_diff(
    device: &str,
    old: Option<&BTreeMap<String, PropertyInfo>>,
    new: Option<&BTreeMap<String, PropertyInfo>>,
    old_probed: bool,
    new_probed: bool,
) -> Option<DevicePropertiesDiff> {
    // A type probed on one side only is not a change of the binary, just of the probe
    // list; report presence only when both sides probed it.
    let present = (old_probed && new_probed && old.is_some() != new.is_some()).then(|| Change {
        old: old.is_some(),
        new: new.is_some(),
    });
    let empty = BTreeMap::new();
    let (o, n) = match (old, new) {
        (Some(o), Some(n)) => (o, n),
        _ => (&empty, &empty),
    };
    let added: Vec<PropertySummary> = n
        .iter()
        .filter(|(k, _)| !o.contains_key(*k))
        .map(|(k, p)| PropertySummary {
            name: k.clone(),
            ty: p.ty.clone(),
            default: p.default.clone(),
        })
        .collect();
    let removed: Vec<String> = o.keys().filter(|k| !n.contains_key(*k)).cloned().collect();
    let changed: Vec<PropertyChange> = o
        .iter()
        .filter_map(|(k, op)| {
            let np = n.get(k)?;
            let ty = (op.ty != np.ty).then(|| Change {
                old: op.ty.clone(),
                new: np.ty.clone(),
            });
            let default = (op.default != np.default).then(|| Change {
                old: op.default.clone(),
                new: np.default.clone(),
            });
            (ty.is_some() || default.is_some()).then(|| PropertyChange {
                name: k.clone(),
                ty,
                default,
            })
        })
        .collect();
    let any = present.is_some() || !added.is_empty() || !removed.is_empty() || !changed.is_empty();
    any.then(|| DevicePropertiesDiff {
        device: device.to_owned(),
        present,
        reason: None,
        added,
        removed,
        changed,
    })
}

fn bus_lines(caps: &MachineCaps) -> Vec<String> {
    caps.buses
        .iter()
        .map(|b| match &b.parent_type {
            Some(p) => format!("{}: {} ({})", b.id, b.bus_type, p),
            None => format!("{}: {}", b.id, b.bus_type),
        })
        .collect()
}

fn builtin_lines(caps: &MachineCaps) -> Vec<String> {
    let mut v: Vec<String> = caps
        .builtin_pci
        .iter()
        .map(|f| {
            format!(
                "{:02x}:{:02x}.{} {}",
                f.bus,
                f.slot,
                f.function,
                format_pci_id(&f.id)
            )
        })
        .collect();
    v.sort();
    v
}

/// One-line rendering of a PCI identity: `vvvv:dddd subsys ssss:ssss class cccc`.
pub fn format_pci_id(id: &PciId) -> String {
    let mut s = format!("{:04x}:{:04x}", id.vendor, id.device);
    match (id.subsystem_vendor, id.subsystem) {
        (Some(v), Some(d)) => s.push_str(&format!(" subsys {v:04x}:{d:04x}")),
        (Some(v), None) => s.push_str(&format!(" subsys {v:04x}:????")),
        (None, Some(d)) => s.push_str(&format!(" subsys ????:{d:04x}")),
        (None, None) => {}
    }
    s.push_str(&format!(" class {:04x}", id.class));
    s
}

fn caps_diff_of(
    old_name: &str,
    new_name: &str,
    via_alias: Option<&str>,
    o: &MachineCaps,
    n: &MachineCaps,
    labels: (&str, &str),
) -> MachineCapsDiff {
    let starts = (o.starts != n.starts).then_some(Change {
        old: o.starts,
        new: n.starts,
    });
    let error = (o.error != n.error).then(|| Change {
        old: o.error.clone(),
        new: n.error.clone(),
    });
    let bus_ref = |c: &MachineCaps| {
        c.default_pci_bus
            .as_ref()
            .map(|b| format!("{} ({})", b.id, b.bus_type))
    };
    let (ob, nb) = (bus_ref(o), bus_ref(n));
    MachineCapsDiff {
        machine: new_name.to_owned(),
        old_machine: old_name.to_owned(),
        via_alias: via_alias.map(str::to_owned),
        starts,
        error,
        buses: ListDiff::of_lists(&bus_lines(o), &bus_lines(n), labels),
        categories: ListDiff::of_sets(&o.categories, &n.categories, labels),
        builtin_pci: ListDiff::of_lists(&builtin_lines(o), &builtin_lines(n), labels),
        default_pci_bus: (ob != nb).then_some(Change { old: ob, new: nb }),
    }
}

fn machine_caps_changes(
    old: &Snapshot,
    new: &Snapshot,
    labels: (&str, &str),
) -> Vec<MachineCapsDiff> {
    let (oi, ni) = (&old.index, &new.index);
    let mut out = Vec::new();
    // Through aliases first: "what does `q35` give me now" is the upgrade question.
    for (alias, nt) in &ni.aliases {
        let Some(ot) = oi.aliases.get(alias) else {
            continue;
        };
        if ot == nt {
            continue;
        }
        if let (Some(o), Some(n)) = (oi.machine_caps.get(ot), ni.machine_caps.get(nt)) {
            let d = caps_diff_of(ot, nt, Some(alias), o, n, labels);
            if !d.is_empty() {
                out.push(d);
            }
        }
    }
    for (name, o) in &oi.machine_caps {
        if let Some(n) = ni.machine_caps.get(name) {
            let d = caps_diff_of(name, name, None, o, n, labels);
            if !d.is_empty() {
                out.push(d);
            }
        }
    }
    out
}

fn pci_id_changes(old: &Snapshot, new: &Snapshot) -> Vec<PciIdChange> {
    let (oi, ni) = (&old.index, &new.index);
    let empty = BTreeMap::new();
    let devices: BTreeSet<&String> = oi.pci_ids.keys().chain(ni.pci_ids.keys()).collect();
    let mut out = Vec::new();
    for d in devices {
        let o = oi.pci_ids.get(d).unwrap_or(&empty);
        let n = ni.pci_ids.get(d).unwrap_or(&empty);
        let placements: BTreeSet<&Placement> = o.keys().chain(n.keys()).collect();
        for p in placements {
            let ov = o.get(p).map(format_pci_id);
            let nv = n.get(p).map(format_pci_id);
            if ov != nv {
                let why = |snap: &Snapshot, v: &Option<String>| {
                    v.is_none().then(|| pci_id_reason(snap, d, *p)).flatten()
                };
                out.push(PciIdChange {
                    device: d.clone(),
                    placement: p.as_str().to_owned(),
                    old_reason: why(old, &ov),
                    new_reason: why(new, &nv),
                    old: ov,
                    new: nv,
                });
            }
        }
    }
    out
}

/// The `desc` of QEMU's error reply to `device-list-properties` for `device`, when the
/// probe asked and QEMU refused (`Device 'qxl' not found`).
pub fn properties_error(snap: &Snapshot, device: &str) -> Option<String> {
    let reply = snap.raw.device_properties.get(device)?;
    // A type the binary does not list is not asked (recorded as `{"absent": why}`).
    if let Some(why) = reply.get("absent").and_then(Value::as_str) {
        return Some(why.to_owned());
    }
    let err = reply.get("error")?;
    let desc = err.get("desc").and_then(Value::as_str);
    let class = err.get("class").and_then(Value::as_str);
    match (desc, class) {
        (Some(d), _) => Some(d.to_owned()),
        (None, Some(c)) => Some(c.to_owned()),
        (None, None) => Some(err.to_string()),
    }
}

/// Why `snap` records no PCI identity for `device` at `placement`, in QEMU's words, from
/// what the probe kept: the error QEMU gave when the type was left out of a shared launch
/// (`rejected`), the error of a failed launch that carried the type (its own or a shared
/// one), or QEMU's `device-list-properties` error for the type. `None` when the snapshot
/// holds no such reason (the type was not probed at that placement).
pub fn pci_id_reason(snap: &Snapshot, device: &str, placement: Placement) -> Option<String> {
    let launches = snap
        .raw
        .pci_identity
        .iter()
        .filter(|(key, _)| placement_of_key(key) == Some(placement));
    let mut failed = None;
    for (_, probe) in launches {
        if let Some(why) = probe.rejected.get(device) {
            return Some(why.clone());
        }
        // A failed launch explains the device's absence when QEMU's error is about the
        // device, or when the device was all it carried (the other types of a launch
        // refused at its first device were never created).
        let carried = device_ids_of_argv(&probe.argv);
        let about = carried.values().any(|t| t == device)
            && (carried
                .keys()
                .filter(|id| !id.starts_with("qcport"))
                .count()
                == 1
                || probe.stderr.contains(&format!("-device {device},"))
                || probe.outcome == LaunchOutcome::Timeout);
        if about && failed.is_none() {
            failed = match probe.outcome {
                LaunchOutcome::Failed => error_line(&probe.stderr),
                LaunchOutcome::Timeout => Some("timeout (QEMU did not answer)".to_owned()),
                LaunchOutcome::Started | LaunchOutcome::Skipped => None,
            };
        }
    }
    failed.or_else(|| properties_error(snap, device))
}
