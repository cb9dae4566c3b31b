//! The libvirt-suite tier: libvirt's own test domains as a second corpus.
//!
//! libvirt's source carries, in `tests/qemuxmlconfdata/`, the domains its developers wrote
//! (`NAME.xml`) with the QEMU argv libvirt generates for each (`NAME.<arch>-latest.args`,
//! `NAME.<arch>-X.Y.0.args` for a recorded QEMU release) or its refusal (`.err`);
//! `tests/qemuxmlconftest.c` declares each test and the capabilities it alters.
//! `runners/scripts/install-libvirt-tests.sh` installs both from Debian's libvirt source
//! package (default root `~/.cache/qconform/libvirt-tests`, env
//! [`TESTS_ROOT_ENV`]).
//!
//! [`replay`] plans every selected domain on the matching snapshot (`latest`: the newest
//! snapshot of that arch; `X.Y.0`: the snapshot of QEMU X.Y) and compares
//!
//! * acceptance: an argv expected and the plan accepted, or a refusal expected and the plan
//!   refused;
//! * placement, device by device (libvirt's aliases are the `id=` of every `-device`): the
//!   PCI bus (`bus=pci.N`/`pcie.0` → controller index N), slot and function (`addr=`) and
//!   `multifunction=`; zPCI `uid`/`fid` of the `zpci` device targeting it; the CCW `devno=`.
//!   Both sides are read from a command line with the same parser (libvirt's `.args` in
//!   either the JSON or the `key=value` `-device` syntax, ours from the plan's argv), so a
//!   device one side places and the other does not shows as a difference.
//!
//! Cases are classed agree / refused by us only / accepted by us only / disagree / not
//! comparable (with the reason), and checked against the committed exception list
//! (`cases/libvirt-suite-exceptions.toml`): every comparable case that does not agree must be
//! listed with its reason, a listed case that agrees now is stale, and the number of agreeing
//! cases must not fall below the committed baseline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use qconform_plan::{AddressKind, PlanError, PlanErrorKind, plan};
use qconform_reports::suite::{
    DeviceDiff, Parity, SuiteCaseResult, SuiteClass, SuiteSection, SuiteSummary,
};
use regex::Regex;
use serde::Deserialize;

use crate::snapshots::{LoadedSnapshot, Snapshots};

/// Environment variable naming the installed test data's root.
pub const TESTS_ROOT_ENV: &str = "QCONFORM_LIBVIRT_TESTS_ROOT";
/// Directory of the domains and expected outputs under the root.
pub const DATA_DIR: &str = "qemuxmlconfdata";
/// The test declarations under the root.
pub const TEST_SOURCE: &str = "qemuxmlconftest.c";
/// The installer's provenance line under the root.
pub const SOURCE_FILE: &str = "SOURCE";
/// The committed exception list, relative to the workspace.
pub const EXCEPTIONS_FILE: &str = "cases/libvirt-suite-exceptions.toml";
/// Its file name inside the corpus directory.
pub const EXCEPTIONS_NAME: &str = "libvirt-suite-exceptions.toml";

/// The selection rule, as documented and reported.
pub const SELECTION_RULE: &str = "a case is replayed when its name mentions PCI, CCW or \
controller placement (pci, pxb, ccw, hostdev, controller, usb, video, bridge, root-port, \
expander, multifunction, slot, address, phb, many-buses, many-devices, autoassign; zpci and \
pcie are covered by pci), or, for an expected refusal, libvirt's error mentions PCI, a bus, \
slot, controller, CCW, zPCI, devno, multifunction or USB";

/// Keywords of the case names selected (see [`SELECTION_RULE`]).
const NAME_KEYWORDS: &[&str] = &[
    "pci",
    "pxb",
    "ccw",
    "hostdev",
    "controller",
    "usb",
    "video",
    "bridge",
    "root-port",
    "expander",
    "multifunction",
    "slot",
    "address",
    "phb",
    "many-buses",
    "many-devices",
    "autoassign",
];

/// Default root of the installed test data: `$QCONFORM_LIBVIRT_TESTS_ROOT`, else
/// `~/.cache/qconform/libvirt-tests`.
pub fn default_tests_root() -> Option<PathBuf> {
    std::env::var_os(TESTS_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache/qconform/libvirt-tests"))
        })
}

/// Reading the test data or the exception list failed.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The data is not installed (the directory or a file is missing).
    #[error(
        "{path}: libvirt test data not installed (run runners/scripts/install-libvirt-tests.sh)"
    )]
    NotInstalled {
        /// What is missing.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The exception list is malformed.
    #[error("{path}: {message}")]
    Exceptions {
        /// File.
        path: PathBuf,
        /// What is wrong (names the key and value).
        message: String,
    },
}

fn read(path: &Path) -> Result<String, SuiteError> {
    std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

// ---- test data ---------------------------------------------------------------------------

/// What libvirt expects of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An argv (`.args`).
    Args,
    /// A refusal (`.err`).
    Err,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Args => "args",
            Expect::Err => "err",
        }
    }
}

/// One expected output of libvirt's test data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteCase {
    /// `<name>.<arch>-<version>[<variant>][.abi-update]`: the output file's stem.
    pub id: String,
    /// The domain's name (`NAME` of `NAME.xml`).
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// `latest` or `X.Y.Z`.
    pub version: String,
    /// Capability variant (`+amdsev`), when any.
    pub variant: Option<String>,
    /// The domain is parsed as newly defined (`.abi-update`).
    pub abi_update: bool,
    /// Argv or refusal.
    pub expect: Expect,
    /// `NAME.xml`.
    pub domain: PathBuf,
    /// The `.args` or `.err` file.
    pub expected: PathBuf,
}

/// Capabilities a test declaration adds or removes (`ARG_QEMU_CAPS`, `ARG_QEMU_CAPS_DEL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decl {
    /// Added capability flags.
    pub caps_added: Vec<String>,
    /// Removed capability flags.
    pub caps_removed: Vec<String>,
}

/// The installed test data.
#[derive(Debug, Clone)]
pub struct TestData {
    /// Root directory.
    pub root: PathBuf,
    /// The installer's provenance line.
    pub source: String,
    /// Every expected output with its domain, sorted by id.
    pub cases: Vec<SuiteCase>,
    /// Output stem → capabilities the declaration alters (only declarations that do).
    pub decls: BTreeMap<String, Decl>,
}

/// `NAME.ARCH-VERSION[+VARIANT][.abi-update].(args|err)`; NAME may contain dots.
static OUTPUT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?P<name>.+)\.(?P<arch>[a-z0-9_]+)-(?P<ver>latest|[0-9]+\.[0-9]+\.[0-9]+)(?P<var>\+[A-Za-z0-9_]+)?(?P<abi>\.abi-update)?\.(?P<ext>args|err)$",
    )
    .unwrap_or_else(|e| panic!("output file pattern: {e}"))
});

fn output_name_re() -> &'static Regex {
    &OUTPUT_NAME
}

/// Lists the cases of an installed data root.
pub fn load_test_data(root: &Path) -> Result<TestData, SuiteError> {
    let dir = root.join(DATA_DIR);
    if !dir.is_dir() {
        return Err(SuiteError::NotInstalled { path: dir });
    }
    let source_path = root.join(SOURCE_FILE);
    let source = if source_path.is_file() {
        read(&source_path)?.trim().to_owned()
    } else {
        "libvirt (unknown source)".to_owned()
    };
    let test_c = root.join(TEST_SOURCE);
    if !test_c.is_file() {
        return Err(SuiteError::NotInstalled { path: test_c });
    }
    let decls = parse_decls(&read(&test_c)?);
    let re = output_name_re();
    let entries = std::fs::read_dir(&dir).map_err(|source| SuiteError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut cases = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(c) = re.captures(&file) else {
            continue;
        };
        let name = c["name"].to_owned();
        let domain = dir.join(format!("{name}.xml"));
        if !domain.is_file() {
            continue;
        }
        let id = file
            .strip_suffix(".args")
            .or_else(|| file.strip_suffix(".err"))
            .unwrap_or(&file)
            .to_owned();
        cases.push(SuiteCase {
            id,
            arch: c["arch"].to_owned(),
            version: c["ver"].to_owned(),
            variant: c.name("var").map(|m| m.as_str().to_owned()),
            abi_update: c.name("abi").is_some(),
            expect: if &c["ext"] == "args" {
                Expect::Args
            } else {
                Expect::Err
            },
            domain,
            expected: e.path(),
            name,
        });
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(TestData {
        root: root.to_path_buf(),
        source,
        cases,
        decls,
    })
}

/// Removes C comments and preprocessor blocks (with their continuation lines).
fn strip_c(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i + 2..]
            .find("*/")
            .map_or("", |j| &rest[i + 2 + j + 2..]);
    }
    out.push_str(rest);
    let mut kept = String::with_capacity(out.len());
    let mut in_pp = false;
    for line in out.lines() {
        let t = line.trim_start();
        if in_pp || t.starts_with('#') {
            in_pp = t.trim_end().ends_with('\\');
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// Splits the argument list of a call (text after the opening parenthesis) at top-level
/// commas, up to the closing parenthesis.
fn call_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for ch in text.chars() {
        if in_str {
            cur.push(ch);
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => {
                in_str = true;
                cur.push(ch);
            }
            '(' => {
                depth += 1;
                cur.push(ch);
            }
            ')' if depth == 0 => break,
            ')' => {
                depth -= 1;
                cur.push(ch);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(ch),
        }
    }
    let last = cur.trim();
    if !last.is_empty() {
        args.push(last.to_owned());
    }
    args
}

/// The value of a C string literal argument (`"x86_64"` → `x86_64`), adjacent literals
/// joined; `None` for anything else.
fn c_string(arg: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = arg.trim();
    if !rest.starts_with('"') {
        return None;
    }
    while let Some(r) = rest.strip_prefix('"') {
        let end = r.find('"')?;
        out.push_str(&r[..end]);
        rest = r[end + 1..].trim_start();
    }
    rest.is_empty().then_some(out)
}

/// Reads the declarations of `qemuxmlconftest.c` that alter capabilities: the three macros
/// taking extra arguments (`DO_TEST_FULL(name, suffix, ...)`,
/// `DO_TEST_CAPS_ARCH_LATEST_FULL(name, arch, ...)`,
/// `DO_TEST_CAPS_ARCH_VER_FULL(name, arch, ver, ...)`), keyed by the stem of the output
/// they produce (`name.arch-ver[+variant]`).
pub fn parse_decls(src: &str) -> BTreeMap<String, Decl> {
    let code = strip_c(src);
    let mut out = BTreeMap::new();
    for (mac, fixed) in [
        ("DO_TEST_FULL(", 2usize),
        ("DO_TEST_CAPS_ARCH_LATEST_FULL(", 2),
        ("DO_TEST_CAPS_ARCH_VER_FULL(", 3),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(mac) {
            let start = from + i + mac.len();
            from = start;
            // a longer macro name ending in this one is not this one
            let before = code[..start - mac.len()].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let args = call_args(&code[start..]);
            let Some(name) = args.first().and_then(|a| c_string(a)) else {
                continue;
            };
            let stem_suffix = match mac {
                "DO_TEST_FULL(" => args.get(1).and_then(|a| c_string(a)),
                "DO_TEST_CAPS_ARCH_LATEST_FULL(" => args
                    .get(1)
                    .and_then(|a| c_string(a))
                    .map(|a| format!(".{a}-latest")),
                _ => match (
                    args.get(1).and_then(|a| c_string(a)),
                    args.get(2).and_then(|a| c_string(a)),
                ) {
                    (Some(a), Some(v)) => Some(format!(".{a}-{v}")),
                    _ => None,
                },
            };
            let Some(suffix) = stem_suffix else { continue };
            let mut decl = Decl::default();
            let mut variant = String::new();
            let mut it = args.iter().skip(fixed).peekable();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "ARG_QEMU_CAPS" | "ARG_QEMU_CAPS_DEL" => {
                        let list = if a == "ARG_QEMU_CAPS" {
                            &mut decl.caps_added
                        } else {
                            &mut decl.caps_removed
                        };
                        for f in it.by_ref() {
                            if f == "QEMU_CAPS_LAST" {
                                break;
                            }
                            list.push(f.clone());
                        }
                    }
                    "ARG_CAPS_VARIANT" => {
                        if let Some(v) = it.next().and_then(|v| c_string(v)) {
                            variant = v;
                        }
                    }
                    _ => {}
                }
            }
            if decl != Decl::default() {
                out.insert(format!("{name}{suffix}{variant}"), decl);
            }
        }
    }
    out
}

// ---- command lines -----------------------------------------------------------------------

/// Splits a libvirt `.args` file into words the way the shell would (single and double
/// quotes, backslash escapes, backslash-newline continuations).
pub fn split_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(x) => {
                    cur.push(x);
                    word = true;
                }
            },
            '\'' => {
                word = true;
                for x in chars.by_ref() {
                    if x == '\'' {
                        break;
                    }
                    cur.push(x);
                }
            }
            '"' => {
                word = true;
                while let Some(x) = chars.next() {
                    match x {
                        '"' => break,
                        '\\' => {
                            if let Some(y) = chars.next() {
                                cur.push(y);
                            }
                        }
                        _ => cur.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if word {
                    out.push(std::mem::take(&mut cur));
                    word = false;
                }
            }
            _ => {
                cur.push(c);
                word = true;
            }
        }
    }
    if word {
        out.push(cur);
    }
    out
}

/// The properties of one `-device` value, in either syntax: JSON
/// (`{"driver":"virtio-net-pci","id":"net0","bus":"pci.0","addr":"0x3"}`) or QEMU's
/// `driver,key=value,...` (a doubled comma is a literal one). Numbers are kept as written
/// in decimal, booleans become `on`/`off`. `None` when the value cannot be read.
pub fn device_props(value: &str) -> Option<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    if value.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(value).ok()?;
        for (k, v) in v.as_object()? {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => if *b { "on" } else { "off" }.to_owned(),
                other => other.to_string(),
            };
            m.insert(k.clone(), s);
        }
        return Some(m);
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    for (i, p) in parts.into_iter().enumerate() {
        match p.split_once('=') {
            Some((k, v)) => {
                let v = match v {
                    "true" => "on",
                    "false" => "off",
                    other => other,
                };
                m.insert(k.to_owned(), v.to_owned());
            }
            None if i == 0 => {
                m.insert("driver".to_owned(), p);
            }
            None => {
                m.insert(p, "on".to_owned());
            }
        }
    }
    Some(m)
}

fn parse_num(s: &str) -> Option<u64> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

fn parse_hex(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// libvirt's PCI bus names to the controller index: `pcie.0` and `pci.N`; `None` for
/// buses that are not PCI (`usb.0`, `ide.0`, `scsi0.0`, `virtio-serial0.0`, ...).
/// A pSeries host bridge `pci.N` provides the bus `pci.N.0`, which is also index N.
pub fn pci_bus_index(bus: &str) -> Option<u32> {
    if bus == "pcie.0" {
        return Some(0);
    }
    let rest = bus.strip_prefix("pci.")?;
    rest.strip_suffix(".0").unwrap_or(rest).parse().ok()
}

/// Where one device is placed on a command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// PCI: controller index of the bus, slot, function, multifunction.
    pub pci: Option<(u32, u32, u32, bool)>,
    /// zPCI uid and fid (of the `zpci` device targeting this one).
    pub zpci: Option<(u64, u64)>,
    /// CCW bus id (`fe.0.0001`).
    pub ccw: Option<String>,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((b, s, fun, mf)) = self.pci {
            parts.push(format!(
                "pci {b:02x}:{s:02x}.{fun:x}{}",
                if mf { " multifunction" } else { "" }
            ));
        }
        if let Some((u, fid)) = self.zpci {
            parts.push(format!("zpci uid=0x{u:x} fid=0x{fid:x}"));
        }
        if let Some(c) = &self.ccw {
            parts.push(format!("ccw {c}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A placed device: its QEMU driver and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// `driver` of the `-device`.
    pub driver: String,
    /// The device has no `id=` (keyed by `<driver> (no id)`).
    pub anonymous: bool,
    /// Where.
    pub at: Placement,
}

/// Device id → placement of every `-device` of a command line that has a PCI, zPCI or CCW
/// address. A device without `id=` is keyed `<driver> (no id)` (libvirt gives some devices,
/// e.g. `pvpanic-pci`, no id); [`compare`] pairs it by driver.
pub fn placements(argv: &[String]) -> BTreeMap<String, Placed> {
    let mut out: BTreeMap<String, Placed> = BTreeMap::new();
    let mut zpci: Vec<(String, (u64, u64))> = Vec::new();
    for w in argv.windows(2) {
        let [opt, value] = w else { continue };
        if opt != "-device" {
            continue;
        }
        let Some(p) = device_props(value) else {
            continue;
        };
        let driver = p.get("driver").cloned().unwrap_or_default();
        if driver == "zpci" {
            if let (Some(t), Some(u), Some(fid)) = (
                p.get("target"),
                p.get("uid").and_then(|u| parse_num(u)),
                p.get("fid").and_then(|f| parse_num(f)),
            ) {
                zpci.push((t.clone(), (u, fid)));
            }
            continue;
        }
        let (key, anonymous) = match p.get("id") {
            Some(id) => (id.clone(), false),
            None => (format!("{driver} (no id)"), true),
        };
        let mut at = Placement::default();
        if let Some(d) = p.get("devno") {
            at.ccw = Some(d.to_ascii_lowercase());
        }
        if let (Some(bus), Some(addr)) =
            (p.get("bus").and_then(|b| pci_bus_index(b)), p.get("addr"))
        {
            let (s, f) = addr.split_once('.').unwrap_or((addr.as_str(), "0"));
            if let (Some(s), Some(f)) = (parse_hex(s), parse_hex(f)) {
                let mf = p.get("multifunction").is_some_and(|m| m == "on");
                at.pci = Some((bus, s, f, mf));
            }
        }
        if at != Placement::default() {
            out.insert(
                key,
                Placed {
                    driver,
                    anonymous,
                    at,
                },
            );
        }
    }
    for (target, uf) in zpci {
        out.entry(target).or_default().at.zpci = Some(uf);
    }
    out
}

/// Compares two placement maps device by device: (devices equal, differences). Devices
/// are paired by id; a device one side gives no id is paired with the only unpaired device
/// of the same driver on the other side.
pub fn compare(
    libvirt: &BTreeMap<String, Placed>,
    ours: &BTreeMap<String, Placed>,
) -> (usize, Vec<DeviceDiff>) {
    let mut pairs: Vec<(String, Option<&Placed>, Option<&Placed>)> = Vec::new();
    let mut lone_l: Vec<(&String, &Placed)> = Vec::new();
    let mut lone_o: Vec<(&String, &Placed)> = ours
        .iter()
        .filter(|(k, _)| !libvirt.contains_key(*k))
        .collect();
    for (k, l) in libvirt {
        match ours.get(k) {
            Some(o) => pairs.push((k.clone(), Some(l), Some(o))),
            None => lone_l.push((k, l)),
        }
    }
    let mut still_l = Vec::new();
    for (k, l) in lone_l {
        let same: Vec<usize> = lone_o
            .iter()
            .enumerate()
            .filter(|(_, (_, o))| o.driver == l.driver && (l.anonymous || o.anonymous))
            .map(|(i, _)| i)
            .collect();
        if let [i] = same[..] {
            let (ok, o) = lone_o.remove(i);
            let name = if l.anonymous { ok.clone() } else { k.clone() };
            pairs.push((
                format!("{name} ({}, no id on one side)", l.driver),
                Some(l),
                Some(o),
            ));
        } else {
            still_l.push((k, l));
        }
    }
    for (k, l) in still_l {
        pairs.push((k.clone(), Some(l), None));
    }
    for (k, o) in lone_o {
        pairs.push((k.clone(), None, Some(o)));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut equal = 0;
    let mut diffs = Vec::new();
    for (device, l, o) in pairs {
        let (la, oa) = (l.map(|p| &p.at), o.map(|p| &p.at));
        if la == oa {
            equal += 1;
        } else {
            diffs.push(DeviceDiff {
                device,
                libvirt: la.map(ToString::to_string),
                ours: oa.map(ToString::to_string),
            });
        }
    }
    (equal, diffs)
}

// ---- selection ---------------------------------------------------------------------------

fn error_mentions_addressing(err: &str) -> bool {
    let e = err.to_ascii_lowercase();
    [
        "pci",
        "bus",
        "slot",
        "controller",
        "ccw",
        "zpci",
        "devno",
        "multifunction",
        "usb",
    ]
    .iter()
    .any(|k| e.contains(k))
}

/// Why a case belongs to the addressing-related selection, `None` when it does not
/// (see [`SELECTION_RULE`]).
pub fn selected_by(case: &SuiteCase, expected: &str) -> Option<String> {
    let lname = case.name.to_ascii_lowercase();
    if let Some(k) = NAME_KEYWORDS.iter().find(|k| lname.contains(*k)) {
        return Some(format!("name ({k})"));
    }
    if case.expect == Expect::Err && error_mentions_addressing(expected) {
        return Some("libvirt error".to_owned());
    }
    None
}

// ---- exceptions --------------------------------------------------------------------------

/// The committed exception list and baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    /// The committed baseline counts.
    pub baseline: Baseline,
    /// Case id → reason.
    #[serde(default)]
    pub exceptions: BTreeMap<String, String>,
}

/// Counts the replay must not fall below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Minimum number of agreeing cases.
    pub agree: usize,
}

impl Exceptions {
    /// Parses the exception list (`path` names the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Exceptions, SuiteError> {
        let e: Exceptions = toml::from_str(text).map_err(|e| SuiteError::Exceptions {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (id, reason) in &e.exceptions {
            if reason.trim().is_empty() {
                return Err(SuiteError::Exceptions {
                    path: path.to_path_buf(),
                    message: format!("[exceptions] {id:?}: the reason is empty"),
                });
            }
        }
        Ok(e)
    }

    /// Reads the exception list.
    pub fn load(path: &Path) -> Result<Exceptions, SuiteError> {
        Exceptions::parse(&read(path)?, path)
    }
}

// ---- replay ------------------------------------------------------------------------------

/// Replay options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replay every case, not only the addressing-related selection.
    pub all: bool,
}

/// The snapshot a case is planned on: `latest` → the newest of the arch, `X.Y.Z` → the
/// newest with major.minor X.Y. Err: why none matches.
fn snapshot_for<'s>(case: &SuiteCase, snaps: &'s Snapshots) -> Result<&'s LoadedSnapshot, String> {
    let of_arch: Vec<&LoadedSnapshot> = snaps
        .snapshots
        .iter()
        .filter(|s| s.arch == case.arch)
        .map(AsRef::as_ref)
        .collect();
    if of_arch.is_empty() {
        return Err(format!("no snapshot of arch {}", case.arch));
    }
    if case.version == "latest" {
        return of_arch
            .iter()
            .max_by_key(|s| s.snapshot.probe.qemu_version)
            .copied()
            .ok_or_else(|| format!("no snapshot of arch {}", case.arch));
    }
    let mm: String = case
        .version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    of_arch
        .iter()
        .filter(|s| s.major_minor() == mm)
        .max_by_key(|s| s.snapshot.probe.qemu_version)
        .copied()
        .ok_or_else(|| {
            let have: Vec<String> = of_arch.iter().map(|s| s.major_minor()).collect();
            format!(
                "no snapshot of QEMU {mm} for {} (have {})",
                case.arch,
                have.join(", ")
            )
        })
}

/// A refusal of ours that is about something else than addressing: the reason it makes
/// the case not comparable.
///
/// * the domain is not readable by our model at all;
/// * the snapshot lacks a device type libvirt's capabilities have (the snapshot was probed
///   from a build without that module, e.g. qxl in `qemu-system-modules-spice`);
/// * the snapshot lacks the machine type (a versioned machine QEMU has since removed, or a
///   machine of a future QEMU).
fn unrelated_refusal(e: &PlanError) -> Option<String> {
    if e.kind == PlanErrorKind::BadInput {
        return Some(format!("qconform cannot read the domain: {e}"));
    }
    if e.problem.message.contains("is not available in QEMU") {
        return Some(format!(
            "the snapshot lacks a device type libvirt's capabilities have: {}",
            e.problem.message
        ));
    }
    if e.problem.message.contains("has no such machine") {
        return Some(format!(
            "the snapshot lacks the machine type: {}",
            e.problem.message
        ));
    }
    None
}

/// Replays one case.
fn replay_case(
    case: &SuiteCase,
    snaps: &Snapshots,
    decls: &BTreeMap<String, Decl>,
    selected_by: String,
    domain_xml: &str,
    expected: &str,
) -> SuiteCaseResult {
    let mut r = SuiteCaseResult {
        id: case.id.clone(),
        arch: case.arch.clone(),
        expected: case.expect.as_str().to_owned(),
        snapshot: None,
        class: SuiteClass::NotComparable,
        selected_by,
        detail: None,
        devices_equal: 0,
        diffs: Vec::new(),
        exception: None,
    };
    if let Some(v) = &case.variant {
        r.detail = Some(format!(
            "libvirt tests it with the capability variant {v}, which no snapshot records"
        ));
        return r;
    }
    let decl = decls
        .get(&case.id)
        .or_else(|| decls.get(case.id.trim_end_matches(".abi-update")));
    if let Some(d) = decl {
        let mut what = Vec::new();
        if !d.caps_added.is_empty() {
            what.push(format!("adds {}", d.caps_added.join(", ")));
        }
        if !d.caps_removed.is_empty() {
            what.push(format!("removes {}", d.caps_removed.join(", ")));
        }
        r.detail = Some(format!(
            "libvirt's test {} to the recorded capabilities; no snapshot matches",
            what.join(" and ")
        ));
        return r;
    }
    let snap = match snapshot_for(case, snaps) {
        Ok(s) => s,
        Err(why) => {
            r.detail = Some(why);
            return r;
        }
    };
    r.snapshot = Some(snap.id.clone());
    let planned = plan(domain_xml, &snap.snapshot);
    match (case.expect, planned) {
        (Expect::Err, Err(_)) => {
            r.class = SuiteClass::Agree;
        }
        (Expect::Err, Ok(_)) => {
            r.class = SuiteClass::AcceptedByUsOnly;
            r.detail = Some(format!("libvirt: {}", first_line(expected)));
        }
        (Expect::Args, Err(e)) => match unrelated_refusal(&e) {
            Some(why) => r.detail = Some(why),
            None => {
                r.class = SuiteClass::RefusedByUsOnly;
                r.detail = Some(format!("qconform: {e}"));
            }
        },
        (Expect::Args, Ok(p)) => {
            let theirs = placements(&split_args(expected));
            let ours = placements(&p.argv);
            let modelled = p.devices.contains_key("pci.0")
                || p.devices.contains_key("pcie.0")
                || p.devices
                    .values()
                    .any(|d| matches!(d.kind, AddressKind::Pci | AddressKind::Ccw));
            if !modelled && ours.is_empty() && !theirs.is_empty() {
                r.detail = Some(format!(
                    "qconform models no PCI or CCW bus on machine {} (libvirt places {} devices)",
                    p.machine,
                    theirs.len()
                ));
                return r;
            }
            let (equal, diffs) = compare(&theirs, &ours);
            r.devices_equal = equal;
            r.class = if diffs.is_empty() {
                SuiteClass::Agree
            } else {
                SuiteClass::Disagree
            };
            r.diffs = diffs;
        }
    }
    r
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Replays the selected cases of `data` on `snaps`, checks them against `exceptions`.
pub fn replay(
    data: &TestData,
    snaps: &Snapshots,
    exceptions: &Exceptions,
    opts: Options,
) -> Result<SuiteSummary, SuiteError> {
    let mut cases = Vec::new();
    for c in &data.cases {
        let expected = read(&c.expected)?;
        let by = match selected_by(c, &expected) {
            Some(b) => b,
            None if opts.all => "all".to_owned(),
            None => continue,
        };
        let xml = read(&c.domain)?;
        let mut r = replay_case(c, snaps, &data.decls, by, &xml, &expected);
        r.exception = exceptions.exceptions.get(&r.id).cloned();
        cases.push(r);
    }
    let parity = Parity::of(&cases);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let by_id: BTreeMap<&str, &SuiteCaseResult> =
        cases.iter().map(|c| (c.id.as_str(), c)).collect();
    for c in &cases {
        if c.class.comparable() && c.class != SuiteClass::Agree && c.exception.is_none() {
            let what = c
                .detail
                .clone()
                .or_else(|| {
                    c.diffs.first().map(|d| {
                        format!(
                            "{}: libvirt {}, qconform {}",
                            d.device,
                            d.libvirt.as_deref().unwrap_or("(not placed)"),
                            d.ours.as_deref().unwrap_or("(not placed)")
                        )
                    })
                })
                .unwrap_or_default();
            problems.push(format!(
                "{} {} and is not a listed exception: {what}",
                c.id,
                c.class.as_str()
            ));
        }
    }
    for id in exceptions.exceptions.keys() {
        match by_id.get(id.as_str()) {
            None => problems.push(format!(
                "stale exception {id}: no such case in the replay (remove it from {EXCEPTIONS_FILE})"
            )),
            Some(c) if c.class == SuiteClass::Agree => problems.push(format!(
                "stale exception {id}: it agrees now (remove it from {EXCEPTIONS_FILE} and raise [baseline] agree)"
            )),
            Some(c) if !c.class.comparable() => problems.push(format!(
                "stale exception {id}: it is not comparable now ({})",
                c.detail.as_deref().unwrap_or("")
            )),
            Some(_) => {}
        }
    }
    if !opts.all {
        if parity.agree < exceptions.baseline.agree {
            problems.push(format!(
                "{} cases agree, fewer than the baseline {} of {EXCEPTIONS_FILE}",
                parity.agree, exceptions.baseline.agree
            ));
        } else if parity.agree > exceptions.baseline.agree {
            notes.push(format!(
                "{} cases agree, more than the baseline {}: raise [baseline] agree in {EXCEPTIONS_FILE}",
                parity.agree, exceptions.baseline.agree
            ));
        }
    }
    Ok(SuiteSummary {
        source: data.source.clone(),
        selection: if opts.all {
            "every case (--all)".to_owned()
        } else {
            SELECTION_RULE.to_owned()
        },
        parity,
        baseline_agree: exceptions.baseline.agree,
        cases,
        problems,
        notes,
    })
}

/// The tier as the run report shows it: the replay of the selection with the data under
/// `root` (default [`default_tests_root`]) and the exception list of the corpus directory
/// `cases_dir`; [`SuiteSection::NotRun`] when the data is not installed.
pub fn run_section(
    root: Option<&Path>,
    snaps: &Snapshots,
    cases_dir: &Path,
) -> Result<SuiteSection, SuiteError> {
    let Some(root) = root.map(Path::to_path_buf).or_else(default_tests_root) else {
        return Ok(SuiteSection::NotRun(format!(
            "no {TESTS_ROOT_ENV} and no HOME to find the data"
        )));
    };
    let data = match load_test_data(&root) {
        Ok(d) => d,
        Err(e @ SuiteError::NotInstalled { .. }) => return Ok(SuiteSection::NotRun(e.to_string())),
        Err(e) => return Err(e),
    };
    let exceptions = Exceptions::load(&cases_dir.join(EXCEPTIONS_NAME))?;
    let summary = replay(&data, snaps, &exceptions, Options::default())?;
    Ok(SuiteSection::Ran(Box::new(summary)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        split_args(s)
    }

    #[test]
    fn splits_libvirt_args_files() {
        let text = "LC_ALL=C \\\nPATH=/bin \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=a,debug-threads=on \\\n-device '{\"driver\":\"virtio-net-pci\",\"id\":\"net0\",\"bus\":\"pci.0\",\"addr\":\"0x3\"}' \\\n-msg timestamp=on\n";
        let a = argv(text);
        assert_eq!(
            a.get(2).map(String::as_str),
            Some("/usr/bin/qemu-system-x86_64")
        );
        assert_eq!(
            a.get(6).map(String::as_str),
            Some(
                "{\"driver\":\"virtio-net-pci\",\"id\":\"net0\",\"bus\":\"pci.0\",\"addr\":\"0x3\"}"
            )
        );
        assert_eq!(a.len(), 9);
    }

    #[test]
    fn reads_both_device_syntaxes() {
        let json = device_props(
            r#"{"driver":"pcie-root-port","port":8,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x1"}"#,
        )
        .expect("json");
        assert_eq!(json.get("port").map(String::as_str), Some("8"));
        assert_eq!(json.get("multifunction").map(String::as_str), Some("on"));
        let kv =
            device_props("virtio-net-pci,netdev=a,,b,id=net0,bus=pci.2,addr=0x1.0x3").expect("kv");
        assert_eq!(kv.get("driver").map(String::as_str), Some("virtio-net-pci"));
        assert_eq!(kv.get("netdev").map(String::as_str), Some("a,b"));
        assert_eq!(kv.get("addr").map(String::as_str), Some("0x1.0x3"));
    }

    #[test]
    fn places_pci_zpci_and_ccw_devices() {
        let a = vec![
            "-device".to_owned(),
            r#"{"driver":"zpci","uid":25,"fid":31,"target":"hostdev0","id":"zpci25"}"#.to_owned(),
            "-device".to_owned(),
            r#"{"driver":"vfio-pci","host":"0000:00:00.0","id":"hostdev0","bus":"pci.0","addr":"0x8"}"#.to_owned(),
            "-device".to_owned(),
            "virtio-balloon-ccw,id=balloon0,devno=FE.0.0000".to_owned(),
            "-device".to_owned(),
            "usb-tablet,id=input0,bus=usb.0,port=1".to_owned(),
            "-device".to_owned(),
            "pcie-root-port,id=pci.1,bus=pcie.0,addr=0x1.0x2,multifunction=on".to_owned(),
        ];
        let p = placements(&a);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(
            p["hostdev0"].at.to_string(),
            "pci 00:08.0 zpci uid=0x19 fid=0x1f"
        );
        assert_eq!(p["balloon0"].at.to_string(), "ccw fe.0.0000");
        assert_eq!(p["pci.1"].at.to_string(), "pci 00:01.2 multifunction");
        assert!(!p.contains_key("input0"));
    }

    #[test]
    fn compares_device_by_device() {
        let l = placements(&argv(
            "-device '{\"driver\":\"VGA\",\"id\":\"video0\",\"bus\":\"pci.0\",\"addr\":\"0x2\"}' -device '{\"driver\":\"e1000\",\"id\":\"net0\",\"bus\":\"pci.0\",\"addr\":\"0x3\"}'",
        ));
        let o = placements(&argv("-device e1000,id=net0,bus=pci.0,addr=0x4"));
        let (eq, d) = compare(&l, &o);
        assert_eq!(eq, 0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].device, "net0");
        assert_eq!(d[0].libvirt.as_deref(), Some("pci 00:03.0"));
        assert_eq!(d[0].ours.as_deref(), Some("pci 00:04.0"));
        assert_eq!(d[1].ours, None);
    }

    #[test]
    fn reads_output_names() {
        let re = output_name_re();
        let c = re
            .captures("x86_64-default-cpu-kvm-pc-4.2.x86_64-latest.args")
            .expect("match");
        assert_eq!(&c["name"], "x86_64-default-cpu-kvm-pc-4.2");
        let c = re.captures("a.x86_64-latest+amdsev.args").expect("variant");
        assert_eq!(c.name("var").map(|m| m.as_str()), Some("+amdsev"));
        let c = re.captures("a.ppc64-latest.abi-update.err").expect("abi");
        assert!(c.name("abi").is_some());
        assert_eq!(&c["ver"], "latest");
        let c = re.captures("b.x86_64-7.2.0.args").expect("versioned");
        assert_eq!(&c["ver"], "7.2.0");
        assert!(re.captures("b.x86_64-latest.xml").is_none());
    }

    #[test]
    fn reads_declarations_that_alter_capabilities() {
        let src = r#"
# define DO_TEST_CAPS_ARCH_LATEST_FULL(name, arch, ...) \
    DO_TEST_FULL(name, "." arch "-latest", __VA_ARGS__)
    /* DO_TEST_FULL("commented", ".x86_64-latest", ARG_QEMU_CAPS_DEL, X, QEMU_CAPS_LAST); */
    DO_TEST_FULL("usb-x", ".x86_64-latest",
                 ARG_CAPS_ARCH, "x86_64",
                 ARG_QEMU_CAPS_DEL, QEMU_CAPS_PIIX3_USB_UHCI, QEMU_CAPS_LAST,
                 ARG_END);
    DO_TEST_CAPS_ARCH_VER_FULL("chardev", "x86_64", "9.1.0", ARG_QEMU_CAPS, QEMU_CAPS_CHARDEV_JSON, QEMU_CAPS_LAST);
    DO_TEST_CAPS_ARCH_LATEST_FULL("sev", "x86_64", ARG_CAPS_VARIANT, "+amdsev", ARG_QEMU_CAPS, QEMU_CAPS_SEV_GUEST, QEMU_CAPS_LAST);
    DO_TEST_CAPS_ARCH_LATEST_FULL("plain", "x86_64", ARG_END);
"#;
        let d = parse_decls(src);
        assert_eq!(
            d.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "chardev.x86_64-9.1.0",
                "sev.x86_64-latest+amdsev",
                "usb-x.x86_64-latest"
            ]
        );
        assert_eq!(
            d["usb-x.x86_64-latest"].caps_removed,
            vec!["QEMU_CAPS_PIIX3_USB_UHCI"]
        );
        assert_eq!(
            d["chardev.x86_64-9.1.0"].caps_added,
            vec!["QEMU_CAPS_CHARDEV_JSON"]
        );
    }

    #[test]
    fn exception_list_is_strict() {
        let p = Path::new("x.toml");
        let e = Exceptions::parse(
            "[baseline]\nagree = 3\n[exceptions]\n\"a.x86_64-latest\" = \"why\"\n",
            p,
        )
        .expect("parses");
        assert_eq!(e.baseline.agree, 3);
        assert_eq!(e.exceptions.len(), 1);
        let err = Exceptions::parse("[baseline]\nagree = 3\n[exceptions]\n\"a\" = \" \"\n", p)
            .expect_err("empty reason");
        assert!(err.to_string().contains("\"a\""), "{err}");
        assert!(Exceptions::parse("[baseline]\nagre = 3\n", p).is_err());
    }

    #[test]
    fn pairs_a_device_without_id_by_driver() {
        let l = placements(&argv(
            "-device '{\"driver\":\"pvpanic-pci\",\"bus\":\"pcie.0\",\"addr\":\"0x1\"}'",
        ));
        let o = placements(&argv("-device pvpanic-pci,id=panic0,bus=pcie.0,addr=0x1"));
        assert_eq!(compare(&l, &o), (1, Vec::new()));
        let o = placements(&argv("-device pvpanic-pci,id=panic0,bus=pci.2,addr=0x1"));
        let (eq, d) = compare(&l, &o);
        assert_eq!(eq, 0);
        assert_eq!(d[0].device, "panic0 (pvpanic-pci, no id on one side)");
        // pSeries host bridges: the bus of `pci.2` is `pci.2.0`
        assert_eq!(pci_bus_index("pci.2.0"), Some(2));
        assert_eq!(pci_bus_index("pcie.0"), Some(0));
        assert_eq!(pci_bus_index("usb.0"), None);
    }

    const DOMAIN: &str = "<domain type='qemu'><name>a</name><memory>524288</memory>\
        <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
        <controller type='usb' model='none'/><memballoon model='none'/>\
        <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>\
        </devices></domain>";

    fn net_args(slot: u32) -> String {
        format!(
            "/usr/bin/qemu-system-x86_64 \\\n-device '{{\"driver\":\"virtio-net-pci\",\"netdev\":\"n\",\"id\":\"net0\",\"bus\":\"pci.0\",\"addr\":\"0x{slot:x}\"}}' \\\n-msg timestamp=on\n"
        )
    }

    /// A replay over a made-up data root: one agreeing case, one disagreeing, one refused by
    /// both, one on an arch without snapshots; checked against exception lists.
    #[test]
    fn replay_classes_and_checks_the_baseline() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join(DATA_DIR);
        std::fs::create_dir_all(&data).expect("mkdir");
        let w = |n: &str, t: &str| std::fs::write(data.join(n), t).expect("write");
        for n in ["pci-a", "pci-b", "pci-c", "pci-d"] {
            w(&format!("{n}.xml"), DOMAIN);
        }
        w("pci-a.x86_64-latest.args", &net_args(2));
        w("pci-b.x86_64-latest.args", &net_args(3));
        w(
            "pci-c.xml",
            &DOMAIN.replace("machine='pc'", "machine='nosuch'"),
        );
        w(
            "pci-c.x86_64-latest.err",
            "unsupported configuration: no machine\n",
        );
        w("pci-d.sparc-latest.args", &net_args(2));
        w("unrelated.xml", DOMAIN);
        w("unrelated.x86_64-latest.args", &net_args(2));
        std::fs::write(tmp.path().join(TEST_SOURCE), "").expect("write");
        let td = load_test_data(tmp.path()).expect("data");
        assert_eq!(td.cases.len(), 5);
        let caps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../capsdata");
        let snaps = crate::load_snapshots(&caps, Some(&["caps_11.1.3_x86_64.json".to_owned()]));
        assert_eq!(snaps.snapshots.len(), 1, "{:?}", snaps.errors);

        let none = Exceptions::parse("[baseline]\nagree = 2\n", Path::new("e.toml")).expect("e");
        let s = replay(&td, &snaps, &none, Options::default()).expect("replay");
        let classes: Vec<(&str, SuiteClass)> =
            s.cases.iter().map(|c| (c.id.as_str(), c.class)).collect();
        assert_eq!(
            classes,
            vec![
                ("pci-a.x86_64-latest", SuiteClass::Agree),
                ("pci-b.x86_64-latest", SuiteClass::Disagree),
                ("pci-c.x86_64-latest", SuiteClass::Agree),
                ("pci-d.sparc-latest", SuiteClass::NotComparable),
            ]
        );
        assert_eq!(
            s.parity.line(),
            "2/3 agree, 0 refused by us only, 0 accepted by us only, 1 disagree, 1 not comparable"
        );
        assert_eq!(s.cases[1].diffs[0].libvirt.as_deref(), Some("pci 00:03.0"));
        assert_eq!(s.cases[1].diffs[0].ours.as_deref(), Some("pci 00:02.0"));
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(
            s.problems[0].starts_with("pci-b.x86_64-latest disagree"),
            "{:?}",
            s.problems
        );

        let listed = Exceptions::parse(
            "[baseline]\nagree = 2\n[exceptions]\n\"pci-b.x86_64-latest\" = \"why\"\n",
            Path::new("e.toml"),
        )
        .expect("e");
        let s = replay(&td, &snaps, &listed, Options::default()).expect("replay");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.parity.listed_exceptions, 1);

        let stale = Exceptions::parse(
            "[baseline]\nagree = 3\n[exceptions]\n\"pci-b.x86_64-latest\" = \"why\"\n\"pci-a.x86_64-latest\" = \"old\"\n",
            Path::new("e.toml"),
        )
        .expect("e");
        let s = replay(&td, &snaps, &stale, Options::default()).expect("replay");
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(
            s.problems
                .iter()
                .any(|p| p.contains("stale exception pci-a"))
        );
        assert!(
            s.problems
                .iter()
                .any(|p| p.contains("fewer than the baseline 3"))
        );

        let all = replay(&td, &snaps, &listed, Options { all: true }).expect("replay");
        assert_eq!(all.cases.len(), 5);
    }
}
