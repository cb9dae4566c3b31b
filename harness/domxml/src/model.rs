//! The typed domain model: what the allocator and argv generator need from a domain,
//! plus the source positions the writer needs to put addresses back.

use std::ops::Range;

/// A 1-based line/column position in the source document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct TextPos {
    /// Line.
    pub line: u32,
    /// Column.
    pub column: u32,
}

/// A parsed `<domain>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// `<domain type=...>` (`qemu`, `kvm`, ...).
    pub domain_type: String,
    /// `<name>`.
    pub name: Option<String>,
    /// `<os><type arch=...>`.
    pub arch: Option<String>,
    /// `<os><type machine=...>` as written (may be an alias such as `q35`).
    pub machine: Option<String>,
    /// Memory in KiB (`<memory>`), when given.
    pub memory_kib: Option<u64>,
    /// Maximum memory in KiB (`<maxMemory>`), when given.
    pub max_memory_kib: Option<u64>,
    /// Memory slots (`<maxMemory slots=...>`), when given.
    pub memory_slots: Option<u32>,
    /// Whether any `<graphics>` element is present.
    pub has_graphics: bool,
    /// `<os><boot dev=...>` values in document order (`fd`, `hd`, `cdrom`, `network`);
    /// empty when none is given (libvirt then boots from `hd` unless a device has
    /// `<boot order>`).
    pub boot_devs: Vec<String>,
    /// Number of `<cpu><numa><cell>` elements (guest NUMA nodes); 0 without `<numa>`.
    pub numa_cells: usize,
    /// Every device under `<devices>` that we model, in document order.
    pub devices: Vec<Device>,
    /// Elements under `<devices>` we do not model, kept so that they can be reported.
    pub unmodelled: Vec<Unmodelled>,
    /// Facts about host PCI devices given in `<metadata>` (see [`HOST_NS`]): whether each
    /// is PCI Express. libvirt reads them from the host; a plan cannot.
    pub host_pci: Vec<HostPciFact>,
    pub(crate) src: DomainSrc,
}

/// Namespace of qconform's own `<metadata>` element describing host devices:
///
/// ```xml
/// <metadata>
///   <qc:host xmlns:qc="urn:qconform:host">
///     <qc:pci address='0000:00:04.0' express='no' iommuGroup='12'/>
///   </qc:host>
/// </metadata>
/// ```
///
/// libvirt keeps metadata in foreign namespaces untouched, so such a domain stays valid.
pub const HOST_NS: &str = "urn:qconform:host";

/// What is known about one host PCI device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPciFact {
    /// Host address.
    pub address: HostPciAddress,
    /// Whether the device is PCI Express.
    pub express: bool,
    /// `iommuGroup`: the host IOMMU group (pSeries isolates host devices by it).
    pub iommu_group: Option<u32>,
}

/// Source positions of the domain-level elements the writer patches.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DomainSrc {
    /// Start tag of `<os><type>`.
    pub os_type_start: Option<Range<usize>>,
    /// Attributes of that start tag (name, byte range of `name='value'`).
    pub os_type_attrs: Vec<(String, Range<usize>)>,
    /// Position right after the `<os>` start tag, to insert a `<type>` when absent.
    pub os_insert: Option<(usize, String)>,
    /// Position of `</devices>` (or of the self-closing `<devices/>` tag) and its indentation.
    pub devices_close: Option<(Range<usize>, String, bool)>,
    /// Position of `</domain>` and the indentation of `<domain>`.
    pub domain_close: usize,
    /// Indentation used for children of `<domain>`.
    pub child_indent: String,
}

/// A device element under `<devices>` that we do not model.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmodelled {
    /// Element name.
    pub element: String,
    /// Position of the element.
    pub pos: TextPos,
    /// Its `<address>`, if any (parsed like any other address).
    pub address: Address,
}

/// One device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// What kind of device, with its kind-specific data.
    pub kind: DeviceKind,
    /// The guest address (`<address>` child).
    pub address: Address,
    /// A user alias (`<alias name='ua-...'/>`), if given.
    pub user_alias: Option<String>,
    /// `<boot order=...>`, if given.
    pub boot_order: Option<u32>,
    /// The numbers of an `<address type='virtio-serial'>` (which [`Address::Other`] keeps
    /// only by type).
    pub virtio_serial: Option<VirtioSerialAddress>,
    /// Position of the element (zero for devices not from the document).
    pub pos: TextPos,
    pub(crate) src: Option<DeviceSrc>,
}

/// `<address type='virtio-serial' controller bus port/>` (missing numbers are 0, the port
/// `None`, as libvirt reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioSerialAddress {
    /// Index of the virtio-serial controller.
    pub controller: u32,
    /// Bus of that controller.
    pub bus: u32,
    /// Port, when given.
    pub port: Option<u32>,
}

/// Source ranges of a device element, for the writer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DeviceSrc {
    /// The whole element.
    pub range: Range<usize>,
    /// The start tag.
    pub start_tag: Range<usize>,
    /// The `<address>` child.
    pub address: Option<Range<usize>>,
    /// The `<model>` child (controllers).
    pub model: Option<Range<usize>>,
    /// The `<target>` child (controllers).
    pub target: Option<Range<usize>>,
    /// Whether the element is written as `<x/>`.
    pub self_closing: bool,
    /// Indentation of the element's line.
    pub indent: String,
    /// Attributes of the start tag (name, byte range of `name='value'`); controllers only.
    pub attrs: Vec<(String, Range<usize>)>,
}

impl Device {
    /// A device that does not come from the document (implicit or auto-added).
    pub fn new(kind: DeviceKind) -> Device {
        Device {
            kind,
            address: Address::Absent,
            user_alias: None,
            boot_order: None,
            virtio_serial: None,
            pos: TextPos::default(),
            src: None,
        }
    }

    /// Whether the device comes from the parsed document.
    pub fn from_document(&self) -> bool {
        self.src.is_some()
    }

    /// The element name (`disk`, `controller`, ...).
    pub fn element(&self) -> &'static str {
        self.kind.element()
    }
}

/// The kinds of devices, with the data that decides placement and argv.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceKind {
    /// `<controller>`.
    Controller(Controller),
    /// `<disk>`.
    Disk(Disk),
    /// `<interface>`.
    Interface(Interface),
    /// `<hostdev>`.
    Hostdev(Hostdev),
    /// `<video>`.
    Video(Video),
    /// `<sound>`.
    Sound(Sound),
    /// `<memballoon>`.
    Memballoon(ModelOnly),
    /// `<rng>`.
    Rng(ModelOnly),
    /// `<watchdog>`.
    Watchdog(ModelOnly),
    /// `<input>`.
    Input(Input),
    /// `<filesystem>`.
    Filesystem(Filesystem),
    /// `<vsock>`.
    Vsock(Vsock),
    /// `<iommu>`.
    Iommu(ModelOnly),
    /// `<panic>`.
    Panic(ModelOnly),
    /// `<shmem>`.
    Shmem(Shmem),
    /// `<memory>` (memory devices: dimm, nvdimm, virtio-mem, virtio-pmem).
    Memory(MemoryDevice),
    /// `<serial>`, `<console>`, `<channel>`, `<parallel>`.
    Chr(Chr),
    /// `<crypto>`.
    Crypto(ModelOnly),
    /// Known elements that never take a PCI slot and have no guest address we manage
    /// (`graphics`, `tpm`, `hub`, `redirdev`, `smartcard`, `audio`, `nvram`, `lease`, ...).
    Other(String),
}

impl DeviceKind {
    /// The element name.
    pub fn element(&self) -> &'static str {
        match self {
            DeviceKind::Controller(_) => "controller",
            DeviceKind::Disk(_) => "disk",
            DeviceKind::Interface(_) => "interface",
            DeviceKind::Hostdev(_) => "hostdev",
            DeviceKind::Video(_) => "video",
            DeviceKind::Sound(_) => "sound",
            DeviceKind::Memballoon(_) => "memballoon",
            DeviceKind::Rng(_) => "rng",
            DeviceKind::Watchdog(_) => "watchdog",
            DeviceKind::Input(_) => "input",
            DeviceKind::Filesystem(_) => "filesystem",
            DeviceKind::Vsock(_) => "vsock",
            DeviceKind::Iommu(_) => "iommu",
            DeviceKind::Panic(_) => "panic",
            DeviceKind::Shmem(_) => "shmem",
            DeviceKind::Memory(_) => "memory",
            DeviceKind::Chr(c) => match c.element.as_str() {
                "console" => "console",
                "channel" => "channel",
                "parallel" => "parallel",
                _ => "serial",
            },
            DeviceKind::Crypto(_) => "crypto",
            DeviceKind::Other(_) => "device",
        }
    }
}

/// A device whose only placement-relevant datum is its model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelOnly {
    /// `model` attribute (or `<model type>` where libvirt puts it there).
    pub model: Option<String>,
}

/// `<controller>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Controller {
    /// `type`: `pci`, `usb`, `scsi`, `sata`, `ide`, `virtio-serial`, `nvme`, `fdc`, `ccid`, ...
    pub ctype: String,
    /// `index`; `None` when not given (filled in by the allocator).
    pub index: Option<u32>,
    /// `model`.
    pub model: Option<String>,
    /// `<model name=...>`: the QEMU device name of a PCI controller.
    pub model_name: Option<String>,
    /// `<target>` attributes of a PCI controller.
    pub target: ControllerTarget,
    /// `<serial>` (nvme).
    pub serial: Option<String>,
    /// `ports` attribute (usb, virtio-serial).
    pub ports: Option<u32>,
    /// `<master startport=...>` (a USB companion controller).
    pub master_startport: Option<u32>,
}

/// `<target>` of a PCI controller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerTarget {
    /// `chassisNr` (pci-bridge).
    pub chassis_nr: Option<u32>,
    /// `chassis` (root and downstream ports).
    pub chassis: Option<u32>,
    /// `port` (root and downstream ports).
    pub port: Option<u32>,
    /// `busNr` (expander buses).
    pub bus_nr: Option<u32>,
    /// `index` (pSeries PHB target index).
    pub index: Option<u32>,
    /// `hotplug` (`on`/`off`).
    pub hotplug: Option<bool>,
    /// `<node>` child (expander buses).
    pub numa_node: Option<u32>,
}

/// `<disk>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disk {
    /// `device`: `disk`, `cdrom`, `floppy`, `lun`.
    pub device: String,
    /// `<target bus>`; `None` when not given (derived from `dev`).
    pub bus: Option<String>,
    /// `<target dev>`.
    pub dev: String,
    /// `<source file|dev|dir|name|volume>`, when given.
    pub source: Option<String>,
    /// `model` attribute (`virtio`, `virtio-transitional`, `virtio-non-transitional`).
    pub model: Option<String>,
    /// `<readonly/>` present.
    pub readonly: bool,
    /// `<serial>`.
    pub serial: Option<String>,
}

/// `<interface>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// `type` (`user`, `network`, `bridge`, `hostdev`, ...).
    pub itype: String,
    /// `<model type>`.
    pub model: Option<String>,
    /// `<mac address>`.
    pub mac: Option<String>,
    /// For `type='hostdev'`: the host PCI address of the source.
    pub host_pci: Option<HostPciAddress>,
}

/// A host PCI address (`<source><address domain bus slot function/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HostPciAddress {
    /// Domain.
    pub domain: u32,
    /// Bus.
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
}

impl std::fmt::Display for HostPciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// `<hostdev>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hostdev {
    /// `mode` (`subsystem`, `capabilities`).
    pub mode: String,
    /// `type` (`pci`, `mdev`, `usb`, `scsi`, `scsi_host`).
    pub htype: String,
    /// `model` of an mdev (`vfio-pci`, `vfio-ccw`, `vfio-ap`).
    pub model: Option<String>,
    /// Host PCI address of a PCI hostdev.
    pub host_pci: Option<HostPciAddress>,
    /// `<source><address uuid>` of an mdev.
    pub uuid: Option<String>,
    /// `<source wwpn>` of a scsi_host (vhost-scsi) hostdev.
    pub wwpn: Option<String>,
    /// The host device a `usb` or `scsi` hostdev names, normalised so that two hostdevs
    /// naming the same one compare equal: `usb bus=B device=D` (host bus location) or
    /// `usb vendor=V product=P`, `scsi adapter=A bus=B target=T unit=U`, or
    /// `iscsi host=H name=N`. `None` when the source names no device.
    pub source_key: Option<String>,
    /// `<driver name>`.
    pub driver: Option<String>,
}

/// `<video>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Video {
    /// `<model type>`; `None` when absent.
    pub model: Option<String>,
    /// `<model primary='yes'>`.
    pub primary: bool,
}

/// `<sound>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sound {
    /// `model`.
    pub model: String,
    /// `<codec type>` children.
    pub codecs: Vec<String>,
}

/// `<input>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    /// `type` (`mouse`, `keyboard`, `tablet`, `passthrough`, `evdev`).
    pub itype: String,
    /// `bus` (`ps2`, `usb`, `virtio`, ...).
    pub bus: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `<source evdev>` for passthrough.
    pub evdev: Option<String>,
}

/// `<filesystem>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filesystem {
    /// `type` (`mount`, ...).
    pub fstype: String,
    /// `<driver type>` (`path`, `handle`, `virtiofs`, `mtp`, `loop`, `nbd`, `ploop`).
    pub driver: Option<String>,
    /// `model` (`virtio`, `virtio-transitional`, `virtio-non-transitional`).
    pub model: Option<String>,
    /// `<source dir>` (or `socket`).
    pub source: Option<String>,
    /// `<target dir>`: the mount tag.
    pub target: Option<String>,
    /// `accessmode`.
    pub accessmode: Option<String>,
}

/// `<vsock>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vsock {
    /// `model`.
    pub model: Option<String>,
    /// `<cid address>`.
    pub cid: Option<u32>,
}

/// `<shmem>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shmem {
    /// `name`.
    pub name: String,
    /// `<model type>` (`ivshmem`, `ivshmem-plain`, `ivshmem-doorbell`).
    pub model: Option<String>,
    /// `<size>` in bytes.
    pub size_bytes: Option<u64>,
}

/// `<memory>` device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryDevice {
    /// `model` (`dimm`, `nvdimm`, `virtio-pmem`, `virtio-mem`, ...).
    pub model: String,
    /// `<target><size>` in KiB.
    pub size_kib: Option<u64>,
    /// `<target><node>`.
    pub node: Option<u32>,
    /// `<source><path>` (pmem/nvdimm).
    pub path: Option<String>,
}

/// A character device (`<serial>`, `<console>`, `<channel>`, `<parallel>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chr {
    /// Element name.
    pub element: String,
    /// `type` (`pty`, `unix`, `null`, ...).
    pub ctype: String,
    /// `<target type>` (`isa-serial`, `pci-serial`, `usb-serial`, `virtio`, `sclp`, `serial`, ...).
    pub target_type: Option<String>,
    /// `<target name>` (channels).
    pub target_name: Option<String>,
    /// `<target port>`.
    pub target_port: Option<u32>,
}

/// A guest address (`<address>` child of a device).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Address {
    /// No `<address>` element.
    #[default]
    Absent,
    /// `type='none'`: no address wanted.
    None,
    /// `type='unassigned'` (PCI hostdevs only): managed, but not given to the guest.
    Unassigned,
    /// `type='pci'`.
    Pci(PciAddress),
    /// `type='ccw'`.
    Ccw(CcwAddress),
    /// `type='drive'`.
    Drive(DriveAddress),
    /// Any other type (`usb`, `virtio-serial`, `isa`, `spapr-vio`, ...), kept as written.
    Other(String),
}

impl Address {
    /// The `type` attribute value this address is written with.
    pub fn type_name(&self) -> &str {
        match self {
            Address::Absent => "",
            Address::None => "none",
            Address::Unassigned => "unassigned",
            Address::Pci(_) => "pci",
            Address::Ccw(_) => "ccw",
            Address::Drive(_) => "drive",
            Address::Other(t) => t,
        }
    }
}

/// A guest PCI address, as written (missing numbers default to 0, like libvirt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciAddress {
    /// Domain.
    pub domain: u32,
    /// Bus (the index of the PCI controller).
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
    /// `multifunction` (`on`/`off`) when given.
    pub multifunction: Option<bool>,
    /// `<zpci>` child.
    pub zpci: Option<Zpci>,
}

impl PciAddress {
    /// libvirt's "empty" address: all numbers zero. Such an address still wants a slot.
    pub fn is_empty(&self) -> bool {
        self.domain == 0 && self.bus == 0 && self.slot == 0 && self.function == 0
    }
}

/// zPCI identifiers (`<zpci uid fid/>`), either may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Zpci {
    /// uid (1..=0xffff).
    pub uid: Option<u32>,
    /// fid.
    pub fid: Option<u32>,
}

/// A CCW address (`cssid.ssid.devno`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CcwAddress {
    /// Channel subsystem id (0..=0xfe).
    pub cssid: u32,
    /// Subchannel set id (0..=3).
    pub ssid: u32,
    /// Device number (0..=0xffff).
    pub devno: u32,
}

impl std::fmt::Display for CcwAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{:x}.{:04x}", self.cssid, self.ssid, self.devno)
    }
}

/// A drive address (`controller`, `bus`, `target`, `unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriveAddress {
    /// Controller index.
    pub controller: u32,
    /// Bus.
    pub bus: u32,
    /// Target.
    pub target: u32,
    /// Unit.
    pub unit: u32,
}
