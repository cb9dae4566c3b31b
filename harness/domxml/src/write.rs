//! The libvirt "xml2xml" view: the document written back with every address and every
//! implicit or auto-added device filled in.
//!
//! The writer patches the source text instead of re-serialising a tree: everything the
//! model does not own (comments, unknown elements, formatting) is kept byte for byte, and
//! only `<address>`, the start tags and `<model>`/`<target>` of controllers, and the
//! machine attribute change. New devices go at the end of `<devices>`.

use std::fmt::Write as _;
use std::ops::Range;

use crate::model::*;

/// One device of the final domain: either an updated version of a document device
/// (`original` = its index in [`Domain::devices`]) or a new one.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    /// Index of the device in the parsed document, `None` for a new device.
    pub original: Option<usize>,
    /// The device as it should appear.
    pub device: &'a Device,
}

/// Writes `src` (the text `dom` was parsed from) back with the final devices and machine.
pub fn write_back(
    src: &str,
    dom: &Domain,
    machine: Option<&str>,
    arch: Option<&str>,
    devices: &[Written<'_>],
) -> String {
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();

    if let Some(range) = &dom.src.os_type_start {
        let mut set: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = arch {
            set.push(("arch", a));
        }
        if let Some(m) = machine {
            set.push(("machine", m));
        }
        let self_closing = src.get(range.clone()).is_some_and(|t| t.ends_with("/>"));
        edits.push((
            range.clone(),
            start_tag(src, "type", &dom.src.os_type_attrs, &set, self_closing),
        ));
    } else if let (Some((pos, indent)), Some(m)) = (&dom.src.os_insert, machine) {
        let mut t = format!("\n{indent}<type");
        if let Some(a) = arch {
            let _ = write!(t, " arch='{}'", esc(a));
        }
        let _ = write!(t, " machine='{}'>hvm</type>", esc(m));
        edits.push((*pos..*pos, t));
    }

    let mut appended = String::new();
    let dev_indent = match &dom.src.devices_close {
        Some((_, indent, _)) => format!("{indent}  "),
        None => format!("{}  ", dom.src.child_indent),
    };
    for w in devices {
        match w.original.and_then(|i| dom.devices.get(i).map(|d| (i, d))) {
            Some((_, orig)) => {
                if let Some(src_info) = &orig.src {
                    patch_device(src, src_info, orig, w.device, &mut edits);
                }
            }
            None => {
                appended.push_str(&dev_indent);
                appended.push_str(&device_xml(w.device, &dev_indent));
                appended.push('\n');
            }
        }
    }
    if !appended.is_empty() {
        match &dom.src.devices_close {
            Some((range, indent, false)) => {
                // Insert before `</devices>`, keeping the closing tag's own indentation.
                let line_start = range.start - indent.len();
                let at_line_start = src.get(line_start..range.start) == Some(indent.as_str())
                    && (line_start == 0 || src.as_bytes().get(line_start - 1) == Some(&b'\n'));
                if at_line_start {
                    edits.push((line_start..line_start, appended));
                } else {
                    edits.push((range.start..range.start, format!("\n{appended}{indent}")));
                }
            }
            Some((range, indent, true)) => {
                edits.push((
                    range.clone(),
                    format!("<devices>\n{appended}{indent}</devices>"),
                ));
            }
            None => {
                let indent = dom.src.child_indent.clone();
                edits.push((
                    dom.src.domain_close..dom.src.domain_close,
                    format!("{indent}<devices>\n{appended}{indent}</devices>\n"),
                ));
            }
        }
    }

    apply(src, edits)
}

fn apply(src: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    // Stable: insertions at the same offset keep the order they were pushed in.
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(src.len() + edits.iter().map(|e| e.1.len()).sum::<usize>());
    let mut at = 0usize;
    for (r, text) in edits {
        if r.start < at {
            continue; // overlapping edit; the model never produces one
        }
        out.push_str(src.get(at..r.start).unwrap_or(""));
        out.push_str(&text);
        at = r.end;
    }
    out.push_str(src.get(at..).unwrap_or(""));
    out
}

fn patch_device(
    src: &str,
    s: &DeviceSrc,
    orig: &Device,
    new: &Device,
    edits: &mut Vec<(Range<usize>, String)>,
) {
    let name = orig.element();
    let child_indent = format!("{}  ", s.indent);
    // Children to insert (when the element lacks them); replacements go to `edits`.
    let mut inserts: Vec<String> = Vec::new();
    let mut start_set: Vec<(&str, String)> = Vec::new();

    if let (DeviceKind::Controller(oc), DeviceKind::Controller(nc)) = (&orig.kind, &new.kind) {
        if oc.index != nc.index || oc.model != nc.model {
            if let Some(i) = nc.index {
                start_set.push(("index", i.to_string()));
            }
            if let Some(m) = &nc.model {
                start_set.push(("model", m.clone()));
            }
        }
        if oc.model_name != nc.model_name
            && let Some(n) = &nc.model_name
        {
            let x = format!("<model name='{}'/>", esc(n));
            match &s.model {
                Some(r) => edits.push((r.clone(), x)),
                None => inserts.push(x),
            }
        }
        if oc.target != nc.target
            && let Some(x) = target_xml(&nc.target, &child_indent)
        {
            match &s.target {
                Some(r) => edits.push((r.clone(), x)),
                None => inserts.push(x),
            }
        }
    }
    if orig.address != new.address && new.address != Address::Absent {
        let x = address_xml(&new.address, &child_indent);
        match &s.address {
            Some(r) => edits.push((r.clone(), x)),
            None => inserts.push(x),
        }
    }

    let set_ref: Vec<(&str, &str)> = start_set.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut body = String::new();
    for x in &inserts {
        let _ = writeln!(body, "{child_indent}{x}");
    }
    if s.self_closing {
        if inserts.is_empty() {
            if !set_ref.is_empty() {
                edits.push((
                    s.range.clone(),
                    start_tag(src, name, &s.attrs, &set_ref, true),
                ));
            }
            return;
        }
        let tag = if set_ref.is_empty() {
            // Keep the original start tag text, minus the `/`.
            let t = src.get(s.range.clone()).unwrap_or("");
            let t = t.strip_suffix("/>").unwrap_or(t).trim_end();
            format!("{t}>")
        } else {
            start_tag(src, name, &s.attrs, &set_ref, false)
        };
        edits.push((
            s.range.clone(),
            format!("{tag}\n{body}{}</{name}>", s.indent),
        ));
        return;
    }
    if !set_ref.is_empty() {
        edits.push((
            s.start_tag.clone(),
            start_tag(src, name, &s.attrs, &set_ref, false),
        ));
    }
    if inserts.is_empty() {
        return;
    }
    let end_tag = src
        .get(s.range.clone())
        .and_then(|t| t.rfind("</"))
        .map_or(s.range.end, |i| s.range.start + i);
    let line_start = end_tag.saturating_sub(s.indent.len());
    let own_line = src.get(line_start..end_tag) == Some(s.indent.as_str())
        && (line_start == 0 || src.as_bytes().get(line_start - 1) == Some(&b'\n'));
    if own_line {
        edits.push((line_start..line_start, body));
    } else {
        edits.push((end_tag..end_tag, format!("\n{body}{}", s.indent)));
    }
}

/// Builds a start tag from the original attributes (copied verbatim) with `set` applied.
fn start_tag(
    src: &str,
    name: &str,
    attrs: &[(String, Range<usize>)],
    set: &[(&str, &str)],
    self_closing: bool,
) -> String {
    let mut t = format!("<{name}");
    for (aname, r) in attrs {
        t.push(' ');
        match set.iter().find(|(k, _)| k == aname) {
            Some((k, v)) => {
                let _ = write!(t, "{k}='{}'", esc(v));
            }
            None => t.push_str(src.get(r.clone()).unwrap_or("")),
        }
    }
    for (k, v) in set {
        if !attrs.iter().any(|(a, _)| a == k) {
            let _ = write!(t, " {k}='{}'", esc(v));
        }
    }
    t.push_str(if self_closing { "/>" } else { ">" });
    t
}

/// Escapes text for an attribute value quoted with `'`.
pub fn esc(s: &str) -> String {
    if !s.contains(['&', '<', '>', '\'', '"']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<address>` element for an address (empty for [`Address::Absent`]).
pub fn address_xml(a: &Address, indent: &str) -> String {
    match a {
        Address::Absent => String::new(),
        Address::None => "<address type='none'/>".into(),
        Address::Unassigned => "<address type='unassigned'/>".into(),
        Address::Pci(p) => {
            let mut t = format!(
                "<address type='pci' domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'",
                p.domain, p.bus, p.slot, p.function
            );
            match p.multifunction {
                Some(true) => t.push_str(" multifunction='on'"),
                Some(false) => t.push_str(" multifunction='off'"),
                None => {}
            }
            match p.zpci {
                None => t.push_str("/>"),
                Some(z) => {
                    t.push_str(">\n");
                    t.push_str(indent);
                    t.push_str("  <zpci");
                    if let Some(u) = z.uid {
                        let _ = write!(t, " uid='0x{u:04x}'");
                    }
                    if let Some(f) = z.fid {
                        let _ = write!(t, " fid='0x{f:08x}'");
                    }
                    t.push_str("/>\n");
                    t.push_str(indent);
                    t.push_str("</address>");
                }
            }
            t
        }
        Address::Ccw(c) => format!(
            "<address type='ccw' cssid='0x{:x}' ssid='0x{:x}' devno='0x{:04x}'/>",
            c.cssid, c.ssid, c.devno
        ),
        Address::Drive(d) => format!(
            "<address type='drive' controller='{}' bus='{}' target='{}' unit='{}'/>",
            d.controller, d.bus, d.target, d.unit
        ),
        Address::Other(t) => format!("<address type='{}'/>", esc(t)),
    }
}

fn target_xml(t: &ControllerTarget, indent: &str) -> Option<String> {
    let mut x = String::from("<target");
    let mut any = false;
    let mut num = |name: &str, v: Option<u32>, hex: bool| {
        if let Some(v) = v {
            any = true;
            if hex {
                let _ = write!(x, " {name}='0x{v:x}'");
            } else {
                let _ = write!(x, " {name}='{v}'");
            }
        }
    };
    num("chassisNr", t.chassis_nr, false);
    num("chassis", t.chassis, false);
    num("port", t.port, true);
    num("busNr", t.bus_nr, false);
    num("index", t.index, false);
    if let Some(h) = t.hotplug {
        any = true;
        x.push_str(if h { " hotplug='on'" } else { " hotplug='off'" });
    }
    match t.numa_node {
        Some(n) => {
            let _ = write!(x, ">\n{indent}  <node>{n}</node>\n{indent}</target>");
            Some(x)
        }
        None if any => {
            x.push_str("/>");
            Some(x)
        }
        None => None,
    }
}

/// Serialises a device that does not come from the document (implicit or auto-added).
pub fn device_xml(d: &Device, indent: &str) -> String {
    let ci = format!("{indent}  ");
    let mut children: Vec<String> = Vec::new();
    let name = d.element();
    let mut attrs = String::new();
    match &d.kind {
        DeviceKind::Controller(c) => {
            let _ = write!(attrs, " type='{}'", esc(&c.ctype));
            if let Some(i) = c.index {
                let _ = write!(attrs, " index='{i}'");
            }
            if let Some(m) = &c.model {
                let _ = write!(attrs, " model='{}'", esc(m));
            }
            if let Some(n) = &c.model_name {
                children.push(format!("<model name='{}'/>", esc(n)));
            }
            if let Some(t) = target_xml(&c.target, &ci) {
                children.push(t);
            }
        }
        DeviceKind::Memballoon(m)
        | DeviceKind::Panic(m)
        | DeviceKind::Watchdog(m)
        | DeviceKind::Rng(m)
        | DeviceKind::Iommu(m)
        | DeviceKind::Crypto(m) => {
            if let Some(model) = &m.model {
                let _ = write!(attrs, " model='{}'", esc(model));
            }
        }
        DeviceKind::Input(i) => {
            let _ = write!(attrs, " type='{}'", esc(&i.itype));
            if let Some(b) = &i.bus {
                let _ = write!(attrs, " bus='{}'", esc(b));
            }
        }
        DeviceKind::Disk(k) => {
            let _ = write!(attrs, " type='file' device='{}'", esc(&k.device));
            let mut t = format!("<target dev='{}'", esc(&k.dev));
            if let Some(b) = &k.bus {
                let _ = write!(t, " bus='{}'", esc(b));
            }
            t.push_str("/>");
            children.push(t);
        }
        DeviceKind::Interface(i) => {
            let _ = write!(attrs, " type='{}'", esc(&i.itype));
            if let Some(m) = &i.model {
                children.push(format!("<model type='{}'/>", esc(m)));
            }
        }
        DeviceKind::Video(v) => {
            if let Some(m) = &v.model {
                children.push(format!("<model type='{}'/>", esc(m)));
            }
        }
        DeviceKind::Sound(s) => {
            let _ = write!(attrs, " model='{}'", esc(&s.model));
        }
        _ => {}
    }
    if !matches!(d.address, Address::Absent) {
        children.push(address_xml(&d.address, &ci));
    }
    if children.is_empty() {
        format!("<{name}{attrs}/>")
    } else {
        let mut t = format!("<{name}{attrs}>\n");
        for c in children {
            let _ = writeln!(t, "{ci}{c}");
        }
        let _ = write!(t, "{indent}</{name}>");
        t
    }
}
