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
                push_device(&mut appended, w.device, &dev_indent);
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
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '\'', '"']) {
        return std::borrow::Cow::Borrowed(s);
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
    std::borrow::Cow::Owned(out)
}

/// The `<address>` element for an address (empty for [`Address::Absent`]).
pub fn address_xml(a: &Address, indent: &str) -> String {
    let mut t = String::with_capacity(96);
    push_address(&mut t, a, indent);
    t
}

fn push_address(t: &mut String, a: &Address, indent: &str) {
    match a {
        Address::Absent => {}
        Address::None => t.push_str("<address type='none'/>"),
        Address::Unassigned => t.push_str("<address type='unassigned'/>"),
        Address::Pci(p) => {
            let _ = write!(
                t,
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
        }
        Address::Ccw(c) => {
            let _ = write!(
                t,
                "<address type='ccw' cssid='0x{:x}' ssid='0x{:x}' devno='0x{:04x}'/>",
                c.cssid, c.ssid, c.devno
            );
        }
        Address::Drive(d) => {
            let _ = write!(
                t,
                "<address type='drive' controller='{}' bus='{}' target='{}' unit='{}'/>",
                d.controller, d.bus, d.target, d.unit
            );
        }
        Address::Other(ty) => {
            let _ = write!(t, "<address type='{}'/>", esc(ty));
        }
    }
}

fn target_xml(t: &ControllerTarget, indent: &str) -> Option<String> {
    let mut x = String::new();
    push_target(&mut x, t, indent).then_some(x)
}

/// Writes `<target .../>`; false (and nothing written) when there is nothing to say.
fn push_target(x: &mut String, t: &ControllerTarget, indent: &str) -> bool {
    let any = t.chassis_nr.is_some()
        || t.chassis.is_some()
        || t.port.is_some()
        || t.bus_nr.is_some()
        || t.index.is_some()
        || t.hotplug.is_some()
        || t.numa_node.is_some();
    if !any {
        return false;
    }
    x.push_str("<target");
    if let Some(v) = t.chassis_nr {
        let _ = write!(x, " chassisNr='{v}'");
    }
    if let Some(v) = t.chassis {
        let _ = write!(x, " chassis='{v}'");
    }
    if let Some(v) = t.port {
        let _ = write!(x, " port='0x{v:x}'");
    }
    if let Some(v) = t.bus_nr {
        let _ = write!(x, " busNr='{v}'");
    }
    if let Some(v) = t.index {
        let _ = write!(x, " index='{v}'");
    }
    if let Some(h) = t.hotplug {
        x.push_str(if h { " hotplug='on'" } else { " hotplug='off'" });
    }
    match t.numa_node {
        Some(n) => {
            let _ = write!(x, ">\n{indent}  <node>{n}</node>\n{indent}</target>");
        }
        None => x.push_str("/>"),
    }
    true
}

/// Serialises a device that does not come from the document (implicit or auto-added).
pub fn device_xml(d: &Device, indent: &str) -> String {
    let mut out = String::with_capacity(256);
    push_device(&mut out, d, indent);
    out
}

fn push_device(out: &mut String, d: &Device, indent: &str) {
    let name = d.element();
    let mut ci = String::with_capacity(indent.len() + 2);
    ci.push_str(indent);
    ci.push_str("  ");
    let attr = |out: &mut String, k: &str, v: &str| {
        out.push(' ');
        out.push_str(k);
        out.push_str("='");
        out.push_str(&esc(v));
        out.push('\'');
    };
    out.push('<');
    out.push_str(name);
    // Children are written after the start tag; collect which ones first.
    let mut body = String::new();
    let child = |body: &mut String, f: &dyn Fn(&mut String)| {
        body.push_str(&ci);
        f(body);
        body.push('\n');
    };
    match &d.kind {
        DeviceKind::Controller(c) => {
            attr(out, "type", &c.ctype);
            if let Some(i) = c.index {
                let _ = write!(out, " index='{i}'");
            }
            if let Some(m) = &c.model {
                attr(out, "model", m);
            }
            if let Some(n) = &c.model_name {
                child(&mut body, &|b: &mut String| {
                    let _ = write!(b, "<model name='{}'/>", esc(n));
                });
            }
            let mut t = String::new();
            if push_target(&mut t, &c.target, &ci) {
                child(&mut body, &|b: &mut String| b.push_str(&t));
            }
        }
        DeviceKind::Memballoon(m)
        | DeviceKind::Panic(m)
        | DeviceKind::Watchdog(m)
        | DeviceKind::Rng(m)
        | DeviceKind::Iommu(m)
        | DeviceKind::Crypto(m) => {
            if let Some(model) = &m.model {
                attr(out, "model", model);
            }
        }
        DeviceKind::Input(i) => {
            attr(out, "type", &i.itype);
            if let Some(b) = &i.bus {
                attr(out, "bus", b);
            }
        }
        DeviceKind::Disk(k) => {
            out.push_str(" type='file'");
            attr(out, "device", &k.device);
            child(&mut body, &|b: &mut String| {
                let _ = write!(b, "<target dev='{}'", esc(&k.dev));
                if let Some(bus) = &k.bus {
                    let _ = write!(b, " bus='{}'", esc(bus));
                }
                b.push_str("/>");
            });
        }
        DeviceKind::Interface(i) => {
            attr(out, "type", &i.itype);
            if let Some(m) = &i.model {
                child(&mut body, &|b: &mut String| {
                    let _ = write!(b, "<model type='{}'/>", esc(m));
                });
            }
        }
        DeviceKind::Video(v) => {
            if let Some(m) = &v.model {
                child(&mut body, &|b: &mut String| {
                    let _ = write!(b, "<model type='{}'/>", esc(m));
                });
            }
        }
        DeviceKind::Sound(s) => attr(out, "model", &s.model),
        _ => {}
    }
    if !matches!(d.address, Address::Absent) {
        child(&mut body, &|b: &mut String| {
            push_address(b, &d.address, &ci)
        });
    }
    if body.is_empty() {
        out.push_str("/>");
    } else {
        out.push_str(">\n");
        out.push_str(&body);
        out.push_str(indent);
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}
