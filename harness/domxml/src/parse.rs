//! Domain XML → [`Domain`], with libvirt's parse-time checks (number syntax, PCI/CCW/zPCI
//! ranges) and positions on every error.

use std::cell::Cell;

use roxmltree::{Document, Node};

use crate::model::*;
use crate::{Error, Problem};

/// Parses a libvirt domain document.
pub fn parse(xml: &str) -> Result<Domain, Error> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, opts).map_err(|e| {
        let pos = e.pos();
        let mut p = Problem::new(format!("malformed XML: {e}"));
        p.line = Some(pos.row);
        p.column = Some(pos.col);
        Error::syntax(p)
    })?;
    let lines = std::iter::once(0)
        .chain(xml.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let p = Parser {
        doc: &doc,
        src: xml,
        lines,
        cursor: Cell::new((0, 0)),
    };
    p.domain()
}

struct Parser<'a, 'i> {
    doc: &'a Document<'i>,
    src: &'i str,
    /// Byte offset of the start of each line.
    lines: Vec<usize>,
    /// The last position computed: (byte offset, characters between its line start and
    /// it). Positions are asked for in document order, so counting on from the last one
    /// keeps the total work linear even when the whole document is one line.
    cursor: Cell<(usize, usize)>,
}

impl<'a, 'i> Parser<'a, 'i> {
    fn pos(&self, n: Node<'_, '_>) -> TextPos {
        self.pos_at(n.range().start)
    }

    /// Line and column (in characters) of a byte offset; roxmltree's own lookup scans
    /// from the start of the document every time.
    fn pos_at(&self, at: usize) -> TextPos {
        let line = self.lines.partition_point(|&s| s <= at).max(1);
        let start = self.line_start(line);
        let (from, chars) = match self.cursor.get() {
            (c, n) if c >= start && c <= at => (c, n),
            _ => (start, 0),
        };
        let column = chars + self.src.get(from..at).map_or(0, |t| t.chars().count());
        self.cursor.set((at, column));
        TextPos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    /// Byte offset where 1-based line `line` starts.
    fn line_start(&self, line: usize) -> usize {
        self.lines.get(line.saturating_sub(1)).copied().unwrap_or(0)
    }

    /// The whitespace between the start of the line holding `pos` and `pos`, if that is
    /// all whitespace; otherwise empty.
    fn indent(&self, pos: usize) -> &'i str {
        let line = self.lines.partition_point(|&s| s <= pos).max(1);
        indent_between(self.src, self.line_start(line), pos)
    }

    fn err(&self, n: Node<'_, '_>, message: impl Into<String>) -> Error {
        Error::invalid(message)
            .element(n.tag_name().name())
            .at(self.pos(n))
    }

    fn attr_err(&self, n: Node<'_, '_>, attr: &str, message: impl Into<String>) -> Error {
        let value = n.attribute(attr).unwrap_or_default();
        let mut e = self.err(n, message).attr(attr, value);
        if let Some(a) = n.attributes().find(|a| a.name() == attr) {
            let p = self.pos_at(a.range().start);
            e.problem.line = Some(p.line);
            e.problem.column = Some(p.column);
        }
        e
    }

    /// Unsigned integer attribute with C `strtoul(..., 0)` syntax (hex `0x`, octal `0`,
    /// decimal), as libvirt reads addresses.
    fn uint(&self, n: Node<'_, '_>, attr: &str) -> Result<Option<u64>, Error> {
        let Some(text) = n.attribute(attr) else {
            return Ok(None);
        };
        match parse_uint(text) {
            Some(v) => Ok(Some(v)),
            None => Err(self.attr_err(
                n,
                attr,
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': '{text}'. Expected non-negative integer value",
                    n.tag_name().name()
                ),
            )),
        }
    }

    fn uint32(&self, n: Node<'_, '_>, attr: &str) -> Result<Option<u32>, Error> {
        match self.uint(n, attr)? {
            None => Ok(None),
            Some(v) => u32::try_from(v).map(Some).map_err(|_| {
                self.attr_err(
                    n,
                    attr,
                    format!(
                        "Invalid value for attribute '{attr}' in element '{}': '{}'. Expected a 32-bit value",
                        n.tag_name().name(),
                        n.attribute(attr).unwrap_or_default()
                    ),
                )
            }),
        }
    }

    fn onoff(&self, n: Node<'_, '_>, attr: &str) -> Result<Option<bool>, Error> {
        match n.attribute(attr) {
            None => Ok(None),
            Some("on") | Some("yes") => Ok(Some(true)),
            Some("off") | Some("no") => Ok(Some(false)),
            Some(v) => Err(self.attr_err(
                n,
                attr,
                format!(
                    "Invalid value for attribute '{attr}' in element '{}': '{v}'. Expected 'on' or 'off'",
                    n.tag_name().name()
                ),
            )),
        }
    }

    fn domain(&self) -> Result<Domain, Error> {
        let root = self.doc.root_element();
        if root.tag_name().name() != "domain" {
            return Err(Error::syntax(
                self.err(
                    root,
                    format!(
                        "expected a <domain> document, found <{}>",
                        root.tag_name().name()
                    ),
                )
                .problem,
            ));
        }
        let mut dom = Domain {
            domain_type: root.attribute("type").unwrap_or("qemu").to_string(),
            name: None,
            arch: None,
            machine: None,
            memory_kib: None,
            max_memory_kib: None,
            memory_slots: None,
            has_graphics: false,
            boot_devs: Vec::new(),
            numa_cells: 0,
            devices: Vec::new(),
            unmodelled: Vec::new(),
            host_pci: Vec::new(),
            src: DomainSrc::default(),
        };
        dom.src.domain_close = end_tag_start(self.src, root);
        dom.src.child_indent = format!("{}  ", self.indent(root.range().start));
        if let Some(first) = root.first_element_child() {
            dom.src.child_indent = self.indent(first.range().start).to_string();
        }
        let mut devices_node = None;
        for c in root.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "name" => dom.name = c.text().map(|t| t.trim().to_string()),
                "memory" => dom.memory_kib = self.size_kib(c)?,
                "maxMemory" => {
                    dom.max_memory_kib = self.size_kib(c)?;
                    dom.memory_slots = self.uint32(c, "slots")?;
                }
                "os" => self.os(c, &mut dom)?,
                "cpu" => {
                    dom.numa_cells = child(c, "numa").map_or(0, |n| children(n, "cell").count());
                }
                "metadata" => self.metadata(c, &mut dom)?,
                "devices" => devices_node = Some(c),
                _ => {}
            }
        }
        if let Some(devs) = devices_node {
            let self_closing = !devs.has_children() && self.src[devs.range()].ends_with("/>");
            let close = if self_closing {
                devs.range()
            } else {
                let s = end_tag_start(self.src, devs);
                s..devs.range().end
            };
            dom.src.devices_close = Some((
                close,
                self.indent(devs.range().start).to_string(),
                self_closing,
            ));
            for d in devs.children().filter(Node::is_element) {
                self.device(d, &mut dom)?;
            }
        }
        if !dom.boot_devs.is_empty()
            && let Some(b) = root
                .children()
                .filter(|c| c.has_tag_name("os"))
                .flat_map(|os| os.children())
                .find(|c| c.has_tag_name("boot"))
            && dom.devices.iter().any(|d| d.boot_order.is_some())
        {
            return Err(self.err(
                b,
                "per-device boot elements cannot be used together with os/boot elements",
            ));
        }
        Ok(dom)
    }

    fn size_kib(&self, n: Node<'_, '_>) -> Result<Option<u64>, Error> {
        let Some(text) = n.text().map(str::trim) else {
            return Ok(None);
        };
        let Some(v) = parse_uint(text) else {
            return Err(self.err(n, format!("invalid size '{text}'")).attr("", text));
        };
        let unit = n.attribute("unit").unwrap_or("KiB");
        let mult: u64 = match unit {
            "b" | "bytes" => return Ok(Some(v / 1024)),
            "k" | "KiB" => 1,
            "KB" => return Ok(Some(v.saturating_mul(1000) / 1024)),
            "M" | "MiB" => 1024,
            "MB" => return Ok(Some(v.saturating_mul(1_000_000) / 1024)),
            "G" | "GiB" => 1024 * 1024,
            "GB" => return Ok(Some(v.saturating_mul(1_000_000_000) / 1024)),
            "T" | "TiB" => 1024 * 1024 * 1024,
            _ => {
                return Err(self.attr_err(n, "unit", format!("unknown size unit '{unit}'")));
            }
        };
        Ok(Some(v.saturating_mul(mult)))
    }

    /// qconform's host facts in `<metadata>` ([`HOST_NS`]).
    fn metadata(&self, m: Node<'_, '_>, dom: &mut Domain) -> Result<(), Error> {
        for host in m
            .children()
            .filter(|c| c.is_element() && c.tag_name().namespace() == Some(HOST_NS))
        {
            for pci in host
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "pci")
            {
                let text = pci.attribute("address").unwrap_or_default();
                let address = parse_host_pci(text).ok_or_else(|| {
                    self.attr_err(
                        pci,
                        "address",
                        format!("invalid host PCI address '{text}', expected DDDD:BB:SS.F"),
                    )
                })?;
                let express = self.onoff(pci, "express")?.ok_or_else(|| {
                    self.err(pci, "host device fact without express='yes|no'")
                        .attr("express", "")
                })?;
                let iommu_group = self.uint32(pci, "iommuGroup")?;
                dom.host_pci.push(HostPciFact {
                    address,
                    express,
                    iommu_group,
                });
            }
        }
        Ok(())
    }

    fn os(&self, os: Node<'_, '_>, dom: &mut Domain) -> Result<(), Error> {
        let start_end = start_tag_end(self.src, os);
        dom.src.os_insert = Some((start_end, format!("{}  ", self.indent(os.range().start))));
        if let Some(t) = child(os, "type") {
            dom.arch = t.attribute("arch").map(str::to_string);
            dom.machine = t.attribute("machine").map(str::to_string);
            dom.src.os_type_start = Some(t.range().start..start_tag_end(self.src, t));
            dom.src.os_type_attrs = attr_ranges(t);
        }
        for b in os.children().filter(|c| c.has_tag_name("boot")) {
            match b.attribute("dev") {
                Some(v @ ("fd" | "hd" | "cdrom" | "network")) => dom.boot_devs.push(v.to_string()),
                Some(v) => {
                    return Err(self.attr_err(b, "dev", format!("unknown boot device '{v}'")));
                }
                None => return Err(self.err(b, "missing boot device")),
            }
        }
        Ok(())
    }

    fn device(&self, d: Node<'_, '_>, dom: &mut Domain) -> Result<(), Error> {
        let name = d.tag_name().name();
        let kind = match name {
            "controller" => DeviceKind::Controller(self.controller(d)?),
            "disk" => DeviceKind::Disk(self.disk(d)?),
            "interface" => DeviceKind::Interface(self.interface(d)?),
            "hostdev" => DeviceKind::Hostdev(self.hostdev(d)?),
            "video" => DeviceKind::Video(self.video(d)),
            "sound" => DeviceKind::Sound(Sound {
                model: d.attribute("model").unwrap_or("").to_string(),
                codecs: children(d, "codec")
                    .filter_map(|c| c.attribute("type").map(str::to_string))
                    .collect(),
            }),
            "memballoon" => DeviceKind::Memballoon(model_attr(d)),
            "rng" => DeviceKind::Rng(model_attr(d)),
            "watchdog" => DeviceKind::Watchdog(model_attr(d)),
            "iommu" => DeviceKind::Iommu(model_attr(d)),
            "panic" => DeviceKind::Panic(model_attr(d)),
            "crypto" => DeviceKind::Crypto(model_attr(d)),
            "input" => DeviceKind::Input(Input {
                itype: d.attribute("type").unwrap_or("").to_string(),
                bus: d.attribute("bus").map(str::to_string),
                model: d.attribute("model").map(str::to_string),
                evdev: child(d, "source")
                    .and_then(|s| s.attribute("evdev"))
                    .map(str::to_string),
            }),
            "filesystem" => DeviceKind::Filesystem(Filesystem {
                fstype: d.attribute("type").unwrap_or("mount").to_string(),
                driver: child(d, "driver")
                    .and_then(|c| c.attribute("type"))
                    .map(str::to_string),
                model: d.attribute("model").map(str::to_string),
                source: child(d, "source")
                    .and_then(|c| c.attribute("dir").or_else(|| c.attribute("socket")))
                    .map(str::to_string),
                target: child(d, "target")
                    .and_then(|c| c.attribute("dir"))
                    .map(str::to_string),
                accessmode: d.attribute("accessmode").map(str::to_string),
            }),
            "vsock" => DeviceKind::Vsock(Vsock {
                model: d.attribute("model").map(str::to_string),
                cid: match child(d, "cid") {
                    Some(c) => self.uint32(c, "address")?,
                    None => None,
                },
            }),
            "shmem" => DeviceKind::Shmem(Shmem {
                name: d.attribute("name").unwrap_or("").to_string(),
                model: child(d, "model")
                    .and_then(|c| c.attribute("type"))
                    .map(str::to_string),
                size_bytes: match child(d, "size") {
                    Some(s) => self.size_kib(s)?.map(|k| k.saturating_mul(1024)),
                    None => None,
                },
            }),
            "memory" => DeviceKind::Memory(self.memory(d)?),
            "serial" | "console" | "channel" | "parallel" => {
                let target = child(d, "target");
                DeviceKind::Chr(Chr {
                    element: name.to_string(),
                    ctype: d.attribute("type").unwrap_or("pty").to_string(),
                    target_type: target.and_then(|t| t.attribute("type")).map(str::to_string),
                    target_name: target.and_then(|t| t.attribute("name")).map(str::to_string),
                    target_port: match target {
                        Some(t) => self.uint32(t, "port")?,
                        None => None,
                    },
                })
            }
            "graphics" => {
                dom.has_graphics = true;
                DeviceKind::Other(name.to_string())
            }
            "emulator" => return Ok(()),
            "tpm" | "hub" | "redirdev" | "redirfilter" | "smartcard" | "audio" | "nvram"
            | "lease" | "pstore" => DeviceKind::Other(name.to_string()),
            _ => {
                let address = match child(d, "address") {
                    Some(a) => self.address(a)?,
                    None => Address::Absent,
                };
                dom.unmodelled.push(Unmodelled {
                    element: name.to_string(),
                    pos: self.pos(d),
                    address,
                });
                return Ok(());
            }
        };
        let address = match child(d, "address") {
            Some(a) => self.address(a)?,
            None => Address::Absent,
        };
        let user_alias = child(d, "alias")
            .and_then(|a| a.attribute("name"))
            .map(str::to_string);
        let boot_order = match child(d, "boot") {
            Some(b) => self.uint32(b, "order")?,
            None => None,
        };
        let virtio_serial = match child(d, "address") {
            Some(a) if a.attribute("type") == Some("virtio-serial") => Some(VirtioSerialAddress {
                controller: self.uint32(a, "controller")?.unwrap_or(0),
                bus: self.uint32(a, "bus")?.unwrap_or(0),
                port: self.uint32(a, "port")?,
            }),
            _ => None,
        };
        let range = d.range();
        let self_closing = !d.has_children() && self.src[range.clone()].ends_with("/>");
        let src = DeviceSrc {
            start_tag: range.start..start_tag_end(self.src, d),
            range,
            address: child(d, "address").map(|a| a.range()),
            model: child(d, "model").map(|a| a.range()),
            target: child(d, "target").map(|a| a.range()),
            self_closing,
            indent: self.indent(d.range().start).to_string(),
            attrs: if name == "controller" {
                attr_ranges(d)
            } else {
                Vec::new()
            },
        };
        dom.devices.push(Device {
            kind,
            address,
            user_alias,
            boot_order,
            virtio_serial,
            pos: self.pos(d),
            src: Some(src),
        });
        Ok(())
    }

    fn controller(&self, d: Node<'_, '_>) -> Result<Controller, Error> {
        let ctype = d
            .attribute("type")
            .ok_or_else(|| self.err(d, "controller type is missing").attr("type", ""))?;
        let mut c = Controller {
            ctype: ctype.to_string(),
            index: self.uint32(d, "index")?,
            model: d.attribute("model").map(str::to_string),
            model_name: child(d, "model")
                .and_then(|m| m.attribute("name"))
                .map(str::to_string),
            serial: child(d, "serial")
                .and_then(|s| s.text())
                .map(|t| t.trim().to_string()),
            ports: self.uint32(d, "ports")?,
            master_startport: match child(d, "master") {
                Some(m) => self.uint32(m, "startport")?,
                None => None,
            },
            ..Controller::default()
        };
        if let Some(t) = child(d, "target") {
            c.target = ControllerTarget {
                chassis_nr: self.uint32(t, "chassisNr")?,
                chassis: self.uint32(t, "chassis")?,
                port: self.uint32(t, "port")?,
                bus_nr: self.uint32(t, "busNr")?,
                index: self.uint32(t, "index")?,
                hotplug: self.onoff(t, "hotplug")?,
                numa_node: match child(t, "node") {
                    Some(n) => n
                        .text()
                        .and_then(|x| parse_uint(x.trim()))
                        .and_then(|v| u32::try_from(v).ok()),
                    None => None,
                },
            };
        }
        Ok(c)
    }

    fn disk(&self, d: Node<'_, '_>) -> Result<Disk, Error> {
        let target = child(d, "target");
        let dev = target
            .and_then(|t| t.attribute("dev"))
            .ok_or_else(|| self.err(d, "disk has no <target dev=...>"))?;
        Ok(Disk {
            device: d.attribute("device").unwrap_or("disk").to_string(),
            bus: target.and_then(|t| t.attribute("bus")).map(str::to_string),
            dev: dev.to_string(),
            source: child(d, "source").and_then(|s| {
                ["file", "dev", "dir", "name", "volume"]
                    .iter()
                    .find_map(|a| s.attribute(*a))
                    .map(str::to_string)
            }),
            model: d.attribute("model").map(str::to_string),
            readonly: child(d, "readonly").is_some(),
            serial: child(d, "serial")
                .and_then(|s| s.text())
                .map(|t| t.trim().to_string()),
        })
    }

    fn interface(&self, d: Node<'_, '_>) -> Result<Interface, Error> {
        let itype = d.attribute("type").unwrap_or("user").to_string();
        let host_pci = if itype == "hostdev" {
            match child(d, "source").and_then(|s| child(s, "address")) {
                Some(a) => Some(self.host_pci(a)?),
                None => None,
            }
        } else {
            None
        };
        Ok(Interface {
            itype,
            model: child(d, "model")
                .and_then(|m| m.attribute("type"))
                .map(str::to_string),
            mac: child(d, "mac")
                .and_then(|m| m.attribute("address"))
                .map(str::to_string),
            host_pci,
        })
    }

    fn hostdev(&self, d: Node<'_, '_>) -> Result<Hostdev, Error> {
        let mut h = Hostdev {
            mode: d.attribute("mode").unwrap_or("subsystem").to_string(),
            htype: d.attribute("type").unwrap_or("").to_string(),
            model: d.attribute("model").map(str::to_string),
            driver: child(d, "driver")
                .and_then(|x| x.attribute("name"))
                .map(str::to_string),
            ..Hostdev::default()
        };
        if let Some(src) = child(d, "source") {
            match h.htype.as_str() {
                "pci" => {
                    if let Some(a) = child(src, "address") {
                        h.host_pci = Some(self.host_pci(a)?);
                    }
                }
                "mdev" => {
                    h.uuid = child(src, "address")
                        .and_then(|a| a.attribute("uuid"))
                        .map(str::to_string);
                }
                "scsi_host" => h.wwpn = src.attribute("wwpn").map(str::to_string),
                "usb" | "scsi" => h.source_key = hostdev_source_key(&h.htype, src),
                _ => {}
            }
        }
        Ok(h)
    }

    fn host_pci(&self, a: Node<'_, '_>) -> Result<HostPciAddress, Error> {
        Ok(HostPciAddress {
            domain: self.uint32(a, "domain")?.unwrap_or(0),
            bus: self.uint32(a, "bus")?.unwrap_or(0),
            slot: self.uint32(a, "slot")?.unwrap_or(0),
            function: self.uint32(a, "function")?.unwrap_or(0),
        })
    }

    fn video(&self, d: Node<'_, '_>) -> Video {
        let m = child(d, "model");
        Video {
            model: m.and_then(|m| m.attribute("type")).map(str::to_string),
            primary: m.and_then(|m| m.attribute("primary")) == Some("yes"),
        }
    }

    fn memory(&self, d: Node<'_, '_>) -> Result<MemoryDevice, Error> {
        let target = child(d, "target");
        Ok(MemoryDevice {
            model: d.attribute("model").unwrap_or("dimm").to_string(),
            size_kib: match target.and_then(|t| child(t, "size")) {
                Some(s) => self.size_kib(s)?,
                None => None,
            },
            node: target
                .and_then(|t| child(t, "node"))
                .and_then(|n| n.text())
                .and_then(|t| parse_uint(t.trim()))
                .and_then(|v| u32::try_from(v).ok()),
            path: child(d, "source")
                .and_then(|s| child(s, "path"))
                .and_then(|p| p.text())
                .map(|t| t.trim().to_string()),
        })
    }

    /// `<address>`: parses the type and checks the ranges libvirt checks at parse time.
    fn address(&self, a: Node<'_, '_>) -> Result<Address, Error> {
        let Some(ty) = a.attribute("type") else {
            return Err(self
                .err(a, "No type specified for device address")
                .attr("type", ""));
        };
        match ty {
            "none" => Ok(Address::None),
            "unassigned" => Ok(Address::Unassigned),
            "pci" => self.pci_address(a).map(Address::Pci),
            // virCCWDeviceAddressParseXML: no cssid, ssid or devno at all is a CCW
            // address to be assigned (kept as the bare type); a partial one is an error.
            "ccw"
                if ["cssid", "ssid", "devno"]
                    .iter()
                    .all(|n| a.attribute(*n).is_none()) =>
            {
                Ok(Address::Other("ccw".to_string()))
            }
            "ccw" => self.ccw_address(a).map(Address::Ccw),
            "drive" => Ok(Address::Drive(DriveAddress {
                controller: self.uint32(a, "controller")?.unwrap_or(0),
                bus: self.uint32(a, "bus")?.unwrap_or(0),
                target: self.uint32(a, "target")?.unwrap_or(0),
                unit: self.uint32(a, "unit")?.unwrap_or(0),
            })),
            "usb" | "virtio-serial" | "ccid" | "spapr-vio" | "virtio-s390" | "virtio-mmio"
            | "isa" | "dimm" => Ok(Address::Other(ty.to_string())),
            other => Err(self.attr_err(a, "type", format!("unknown address type '{other}'"))),
        }
    }

    fn pci_address(&self, a: Node<'_, '_>) -> Result<PciAddress, Error> {
        let get = |attr: &str| self.uint32(a, attr).map(Option::unwrap_or_default);
        let addr = PciAddress {
            domain: get("domain")?,
            bus: get("bus")?,
            slot: get("slot")?,
            function: get("function")?,
            multifunction: self.onoff(a, "multifunction")?,
            zpci: None,
        };
        // libvirt's virPCIDeviceAddressIsValid wording.
        if addr.domain > 0xFFFF {
            return Err(self.attr_err(
                a,
                "domain",
                format!(
                    "Invalid PCI address domain='0x{:x}', must be <= 0xFFFF",
                    addr.domain
                ),
            ));
        }
        if addr.bus > 0xFF {
            return Err(self.attr_err(
                a,
                "bus",
                format!(
                    "Invalid PCI address bus='0x{:x}', must be <= 0xFF",
                    addr.bus
                ),
            ));
        }
        if addr.slot > 0x1F {
            return Err(self.attr_err(
                a,
                "slot",
                format!(
                    "Invalid PCI address slot='0x{:x}', must be <= 0x1F",
                    addr.slot
                ),
            ));
        }
        if addr.function > 7 {
            return Err(self.attr_err(
                a,
                "function",
                format!(
                    "Invalid PCI address function=0x{:x}, must be <= 7",
                    addr.function
                ),
            ));
        }
        let zpci = match child(a, "zpci") {
            None => None,
            Some(z) => {
                let uid = self.uint(z, "uid")?;
                let fid = self.uint(z, "fid")?;
                if let Some(u) = uid
                    && (u == 0 || u > 0xFFFF)
                {
                    return Err(self.attr_err(
                        z,
                        "uid",
                        format!(
                            "Invalid PCI address uid='0x{u:04x}', must be > 0x0000 and <= 0xffff"
                        ),
                    ));
                }
                if let Some(f) = fid
                    && f > u64::from(u32::MAX)
                {
                    return Err(self.attr_err(
                        z,
                        "fid",
                        format!("Invalid PCI address fid='0x{f:x}', must be <= 0xffffffff"),
                    ));
                }
                Some(Zpci {
                    uid: uid.and_then(|v| u32::try_from(v).ok()),
                    fid: fid.and_then(|v| u32::try_from(v).ok()),
                })
            }
        };
        Ok(PciAddress { zpci, ..addr })
    }

    fn ccw_address(&self, a: Node<'_, '_>) -> Result<CcwAddress, Error> {
        let cssid = self.uint(a, "cssid")?;
        let ssid = self.uint(a, "ssid")?;
        let devno = self.uint(a, "devno")?;
        match (cssid, ssid, devno) {
            (Some(c), Some(s), Some(d)) => {
                if c > 0xfe || s > 3 || d > 0xffff {
                    let attr = if c > 0xfe {
                        "cssid"
                    } else if s > 3 {
                        "ssid"
                    } else {
                        "devno"
                    };
                    return Err(self.attr_err(
                        a,
                        attr,
                        format!(
                            "Invalid specification for virtio ccw address: cssid='0x{c:x}' ssid='0x{s:x}' devno='0x{d:04x}'"
                        ),
                    ));
                }
                Ok(CcwAddress {
                    cssid: c as u32,
                    ssid: s as u32,
                    devno: d as u32,
                })
            }
            _ => {
                let missing: Vec<&str> = [("cssid", cssid), ("ssid", ssid), ("devno", devno)]
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                Err(self
                    .err(
                        a,
                        format!(
                            "Invalid partial specification for virtio ccw address: {} missing",
                            missing.join(", ")
                        ),
                    )
                    .attr(missing.first().copied().unwrap_or("devno"), ""))
            }
        }
    }
}

/// [`Hostdev::source_key`] of a `usb` or `scsi` hostdev's `<source>` (numbers in any base
/// libvirt accepts are compared by value).
fn hostdev_source_key(htype: &str, src: Node<'_, '_>) -> Option<String> {
    let num = |n: Option<Node<'_, '_>>, attr: &str| {
        n.and_then(|n| n.attribute(attr)).map(|v| {
            let v = v.trim();
            parse_uint(v).map_or_else(|| v.to_string(), |u| u.to_string())
        })
    };
    let addr = child(src, "address");
    if htype == "usb" {
        if let (Some(bus), Some(device)) = (num(addr, "bus"), num(addr, "device")) {
            return Some(format!("usb bus={bus} device={device}"));
        }
        let vendor = num(child(src, "vendor"), "id")?;
        let product = num(child(src, "product"), "id")?;
        return Some(format!("usb vendor={vendor} product={product}"));
    }
    if src.attribute("protocol") == Some("iscsi") {
        let host = child(src, "host").and_then(|h| h.attribute("name"))?;
        let name = src.attribute("name")?;
        return Some(format!("iscsi host={host} name={name}"));
    }
    let adapter = child(src, "adapter").and_then(|a| a.attribute("name"))?;
    let (bus, target, unit) = (num(addr, "bus")?, num(addr, "target")?, num(addr, "unit")?);
    Some(format!(
        "scsi adapter={adapter} bus={bus} target={target} unit={unit}"
    ))
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(n, name).next()
}

fn attr_ranges(n: Node<'_, '_>) -> Vec<(String, std::ops::Range<usize>)> {
    n.attributes()
        .map(|a| (a.name().to_string(), a.range()))
        .collect()
}

fn model_attr(d: Node<'_, '_>) -> ModelOnly {
    ModelOnly {
        model: d
            .attribute("model")
            .or_else(|| child(d, "model").and_then(|m| m.attribute("type")))
            .map(str::to_string),
    }
}

/// `DDDD:BB:SS.F` (hex).
fn parse_host_pci(text: &str) -> Option<HostPciAddress> {
    let (dbs, f) = text.rsplit_once('.')?;
    let mut it = dbs.split(':');
    let (d, b, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let h = |x: &str| u32::from_str_radix(x, 16).ok();
    Some(HostPciAddress {
        domain: h(d)?,
        bus: h(b)?,
        slot: h(s)?,
        function: h(f)?,
    })
}

/// C `strtoul(s, .., 0)` syntax without the sign and whitespace leniency: `0x..` hex,
/// `0..` octal, otherwise decimal.
pub fn parse_uint(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if text.len() > 1 && text.starts_with('0') {
        return u64::from_str_radix(&text[1..], 8).ok();
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Byte offset right after the start tag of `n` (after `>` or `/>`).
fn start_tag_end(src: &str, n: Node<'_, '_>) -> usize {
    let r = n.range();
    let from = n
        .attributes()
        .map(|a| a.range().end)
        .max()
        .unwrap_or(r.start + 1 + n.tag_name().name().len());
    match src.get(from..r.end).and_then(|s| s.find('>')) {
        Some(i) => from + i + 1,
        None => r.end,
    }
}

/// Byte offset of the `</name>` end tag of `n` (its range end when self-closing).
fn end_tag_start(src: &str, n: Node<'_, '_>) -> usize {
    let r = n.range();
    match src.get(r.start..r.end).and_then(|s| s.rfind("</")) {
        Some(i) if n.has_children() => r.start + i,
        _ => r.end,
    }
}

/// `src[line_start..pos]` if that is all blanks; otherwise empty. The check stops at the
/// first other character, so it costs little on a long line.
fn indent_between(src: &str, line_start: usize, pos: usize) -> &str {
    let ws = src.get(line_start..pos).unwrap_or("");
    if ws.chars().all(|c| c == ' ' || c == '\t') {
        ws
    } else {
        ""
    }
}
