//! Loading the case corpus: one directory per case with `domain.xml`, `case.toml` and
//! `expect/` (see `cases/README.md`).
//!
//! `case.toml` is read strictly (`deny_unknown_fields`) and validated after parsing: every
//! regex and glob is compiled here, so a typo fails when the corpus is loaded, with the file
//! and the key named, not halfway through a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qconform_reports::results::Stage;
use regex::Regex;
use serde::Deserialize;

/// File name of a case's domain.
pub const DOMAIN_FILE: &str = "domain.xml";
/// File name of a case's description.
pub const CASE_FILE: &str = "case.toml";
/// Directory of a case's goldens.
pub const EXPECT_DIR: &str = "expect";

/// A case that could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CaseError {
    /// Case directory name.
    pub case: String,
    /// The offending file, relative to the corpus parent (e.g. `cases/x/case.toml`).
    pub path: String,
    /// What is wrong, naming the key and value.
    pub message: String,
}

/// Topic of a case (the seed topics plus common topologies and bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    /// s390x zPCI uid/fid.
    Zpci,
    /// PCIe controllers.
    Pcie,
    /// vfio-ccw and CCW addressing.
    Ccw,
    /// Partial assignment of multifunction hostdevs.
    Hostdev,
    /// Machine-to-device-type fit.
    Fit,
    /// Common topologies.
    Common,
    /// Bad input the core must reject clearly.
    BadInput,
}

/// What `qconform plan` must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The plan is accepted.
    Accept,
    /// The plan is rejected with an error.
    Reject,
}

/// What real QEMU does with a rejected case's hand-written `[live] argv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveQemu {
    /// QEMU refuses it too (exit code 1, stderr matching `error`).
    Reject,
    /// QEMU accepts it: libvirt's rules are stricter than QEMU's here (recorded).
    Accept,
    /// The live stage cannot check this case (`reason` says why).
    Skip,
}

/// `case.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// One sentence: what the case checks.
    pub purpose: String,
    /// Topic.
    pub topic: Topic,
    /// Required capabilities of a snapshot.
    #[serde(default)]
    pub requires: Requires,
    /// Hand-written expectations.
    pub expect: Expect,
    /// What real QEMU does.
    #[serde(default)]
    pub live: Option<LiveSpec>,
    /// Expected failures.
    #[serde(default)]
    pub xfail: Vec<XfailSpec>,
}

/// `[requires]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Arches the case targets (default: the arch of `domain.xml`); snapshots of other
    /// arches get no trials for it.
    pub arch: Option<Vec<String>>,
    /// Machine name or alias that must exist and start (default: the machine of
    /// `domain.xml`; `"*"` for none).
    pub machine: Option<String>,
    /// Concrete QOM types the snapshot must have.
    #[serde(default)]
    pub types: Vec<String>,
    /// `<type>.<property>` that must exist.
    #[serde(default)]
    pub properties: Vec<String>,
    /// Types that must be absent.
    #[serde(default)]
    pub absent_types: Vec<String>,
}

/// `[expect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Accept or reject.
    pub outcome: Outcome,
    /// Reject only: regex the plan error must match.
    pub error: Option<String>,
    /// Include in the guest tier.
    #[serde(default)]
    pub guest: bool,
    /// Alias → expected address text (whitespace-separated tokens that must appear, in
    /// order and contiguous, on the alias's line of the address map).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
}

/// `[live]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSpec {
    /// For a rejected plan: the QEMU arguments a user would try (after the binary; the
    /// runner adds `-nodefaults -S -display none -qmp stdio`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// What QEMU does with `argv`; `skip` turns the live stage off for this case.
    pub qemu: Option<LiveQemu>,
    /// Regex QEMU's stderr must match when it refuses.
    pub error: Option<String>,
    /// Per-version regexes, first match wins, `error` is the fallback.
    #[serde(default)]
    pub errors: Vec<VersionedError>,
    /// How QEMU ends when it refuses (default: exit code 1). An integer is an exit code,
    /// a string names a signal (`"SIGABRT"`, `"signal 6"`) for a QEMU that crashes
    /// instead of refusing cleanly.
    pub exit: Option<ExitSpec>,
    /// Why `skip`.
    pub reason: Option<String>,
}

/// `[live] exit`: the exit code, or the signal, of a refusing QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExitSpec {
    /// Exit code.
    Code(i32),
    /// Signal name or `signal N`.
    Signal(String),
}

impl ExitSpec {
    /// The signal number of a [`ExitSpec::Signal`], if it names one.
    pub fn signal_number(&self) -> Option<i32> {
        let ExitSpec::Signal(s) = self else {
            return None;
        };
        let s = s.trim();
        if let Some(n) = s.strip_prefix("signal ") {
            return n.trim().parse().ok();
        }
        match s.trim_start_matches("SIG") {
            "HUP" => Some(1),
            "INT" => Some(2),
            "QUIT" => Some(3),
            "ILL" => Some(4),
            "TRAP" => Some(5),
            "ABRT" => Some(6),
            "BUS" => Some(7),
            "FPE" => Some(8),
            "KILL" => Some(9),
            "SEGV" => Some(11),
            "TERM" => Some(15),
            _ => None,
        }
    }

    /// Whether a process end matches.
    pub fn matches(&self, code: Option<i32>, signal: Option<i32>) -> bool {
        match self {
            ExitSpec::Code(c) => code == Some(*c),
            ExitSpec::Signal(_) => signal.is_some() && signal == self.signal_number(),
        }
    }
}

impl std::fmt::Display for ExitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitSpec::Code(c) => write!(f, "exit code {c}"),
            ExitSpec::Signal(s) => write!(f, "{s}"),
        }
    }
}

/// One entry of `[[live.errors]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionedError {
    /// Glob on `<version>/<arch>`.
    pub snapshots: String,
    /// Regex for QEMU's stderr on those snapshots.
    pub error: String,
}

/// One `[[xfail]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XfailSpec {
    /// Stage the failure is expected in.
    pub stage: Stage,
    /// Glob on `<version>/<arch>` (e.g. `7.2.*/x86_64`).
    pub snapshots: String,
    /// Why, and what would fix it.
    pub reason: String,
}

/// What `domain.xml` says about where it wants to run (read leniently; the core reports
/// real errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainHead {
    /// `<os><type arch=...>`.
    pub arch: Option<String>,
    /// `<os><type machine=...>`.
    pub machine: Option<String>,
}

impl DomainHead {
    /// Reads arch and machine from domain XML; `None` fields when absent or unreadable.
    pub fn read(xml: &str) -> DomainHead {
        let Ok(doc) = roxmltree::Document::parse(xml) else {
            return DomainHead::default();
        };
        let ty = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("os"))
            .and_then(|os| os.children().find(|n| n.has_tag_name("type")));
        DomainHead {
            arch: ty.and_then(|t| t.attribute("arch")).map(str::to_owned),
            machine: ty.and_then(|t| t.attribute("machine")).map(str::to_owned),
        }
    }
}

/// A compiled glob on `<version>/<arch>`.
#[derive(Debug, Clone)]
pub struct SnapshotGlob {
    /// The glob as written.
    pub text: String,
    matcher: globset::GlobMatcher,
}

impl SnapshotGlob {
    /// Compiles a glob; `*` does not cross `/`.
    pub fn new(text: &str) -> Result<SnapshotGlob, String> {
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SnapshotGlob {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `<version>/<arch>` matches.
    pub fn matches(&self, version_arch: &str) -> bool {
        self.matcher.is_match(version_arch)
    }
}

/// A compiled `[[xfail]]` entry.
#[derive(Debug, Clone)]
pub struct Xfail {
    /// Stage.
    pub stage: Stage,
    /// Snapshots it applies to.
    pub snapshots: SnapshotGlob,
    /// Reason.
    pub reason: String,
}

/// A compiled `[[live.errors]]` entry.
#[derive(Debug, Clone)]
pub struct LiveError {
    /// Snapshots it applies to.
    pub snapshots: SnapshotGlob,
    /// Regex.
    pub error: Regex,
}

/// One loaded, validated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name.
    pub name: String,
    /// Directory.
    pub dir: PathBuf,
    /// Path shown in messages (`cases/<name>`).
    pub display_dir: String,
    /// `case.toml`.
    pub spec: CaseSpec,
    /// `domain.xml` text.
    pub domain_xml: String,
    /// Arch and machine of `domain.xml`.
    pub head: DomainHead,
    /// `expect.error`, compiled.
    pub expect_error: Option<Regex>,
    /// `live.error`, compiled.
    pub live_error: Option<Regex>,
    /// `live.errors`, compiled.
    pub live_errors: Vec<LiveError>,
    /// `xfail`, compiled.
    pub xfail: Vec<Xfail>,
}

impl Case {
    /// The expect directory.
    pub fn expect_dir(&self) -> PathBuf {
        self.dir.join(EXPECT_DIR)
    }

    /// The `[[xfail]]` entry that applies to a stage on a snapshot, if any.
    pub fn xfail_for(&self, stage: Stage, version_arch: &str) -> Option<&Xfail> {
        self.xfail
            .iter()
            .find(|x| x.stage == stage && x.snapshots.matches(version_arch))
    }

    /// How a refusing QEMU must end (`[live] exit`, default exit code 1).
    pub fn live_exit(&self) -> ExitSpec {
        self.spec
            .live
            .as_ref()
            .and_then(|l| l.exit.clone())
            .unwrap_or(ExitSpec::Code(1))
    }

    /// The regex QEMU's stderr must match for a refused `[live] argv` on a snapshot.
    pub fn live_error_for(&self, version_arch: &str) -> Option<&Regex> {
        self.live_errors
            .iter()
            .find(|e| e.snapshots.matches(version_arch))
            .map(|e| &e.error)
            .or(self.live_error.as_ref())
    }

    /// What QEMU is expected to do with the live stage (`None`: no `[live]` section or no
    /// `qemu` key).
    pub fn live_qemu(&self) -> Option<LiveQemu> {
        self.spec.live.as_ref().and_then(|l| l.qemu)
    }
}

/// The corpus: loaded cases and the ones that failed to load.
#[derive(Debug, Default)]
pub struct Corpus {
    /// Valid cases, sorted by name.
    pub cases: Vec<Case>,
    /// Cases that could not be loaded, sorted by name.
    pub errors: Vec<CaseError>,
}

/// Whether a case directory name is kebab-case (`[a-z0-9]+(-[a-z0-9]+)*`).
pub fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Loads every case directory of `dir` (entries that are not directories are skipped).
/// `only` restricts loading to the named cases (used when one trial is run by name).
pub fn load_corpus(dir: &Path, only: Option<&[String]>) -> Result<Corpus, std::io::Error> {
    let display_root = dir
        .file_name()
        .map_or_else(|| "cases".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Some(only) = only
            && !only.iter().any(|o| o == &name)
        {
            continue;
        }
        names.push(name);
    }
    names.sort();
    let mut corpus = Corpus::default();
    for name in names {
        match load_case(&dir.join(&name), &name, &format!("{display_root}/{name}")) {
            Ok(c) => corpus.cases.push(c),
            Err(e) => corpus.errors.push(e),
        }
    }
    Ok(corpus)
}

/// Loads and validates one case directory.
pub fn load_case(dir: &Path, name: &str, display_dir: &str) -> Result<Case, CaseError> {
    let err = |file: &str, message: String| CaseError {
        case: name.to_owned(),
        path: if file.is_empty() {
            display_dir.to_owned()
        } else {
            format!("{display_dir}/{file}")
        },
        message,
    };
    if !is_kebab(name) {
        return Err(err(
            "",
            format!(
                "case directory name {name:?} is not kebab-case ([a-z0-9] words joined by '-')"
            ),
        ));
    }
    let toml_text = std::fs::read_to_string(dir.join(CASE_FILE))
        .map_err(|e| err(CASE_FILE, format!("cannot read: {e}")))?;
    let domain_xml = std::fs::read_to_string(dir.join(DOMAIN_FILE))
        .map_err(|e| err(DOMAIN_FILE, format!("cannot read: {e}")))?;
    let spec: CaseSpec =
        toml::from_str(&toml_text).map_err(|e| err(CASE_FILE, toml_error_text(&e)))?;
    let e = |m: String| err(CASE_FILE, m);
    if spec.purpose.trim().is_empty() {
        return Err(e("key `purpose`: must be one non-empty sentence".into()));
    }
    let expect_error = match (&spec.expect.outcome, &spec.expect.error) {
        (Outcome::Accept, Some(v)) => {
            return Err(e(format!(
                "key `expect.error` = {v:?}: only allowed with expect.outcome = \"reject\""
            )));
        }
        (_, Some(v)) => Some(compile_regex("expect.error", v).map_err(e)?),
        (_, None) => None,
    };
    if spec.expect.outcome == Outcome::Reject && !spec.expect.addresses.is_empty() {
        return Err(e(
            "key `expect.addresses`: a rejected plan has no addresses (expect.outcome = \"reject\")"
                .into(),
        ));
    }
    if spec.expect.outcome == Outcome::Reject && spec.expect.guest {
        return Err(e(
            "key `expect.guest` = true: a rejected plan cannot boot a guest".into(),
        ));
    }
    for p in &spec.requires.properties {
        if split_property(p).is_none() {
            return Err(e(format!(
                "key `requires.properties`: {p:?} is not \"<type>.<property>\""
            )));
        }
    }
    if let Some(arches) = &spec.requires.arch
        && arches.is_empty()
    {
        return Err(e(
            "key `requires.arch` = []: matches no snapshot; leave it out to use the domain's arch"
                .into(),
        ));
    }
    let mut live_error = None;
    let mut live_errors = Vec::new();
    if let Some(live) = &spec.live {
        match live.qemu {
            Some(LiveQemu::Skip) => {
                if live.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err(e(
                        "key `live.reason`: required (non-empty) when live.qemu = \"skip\"".into(),
                    ));
                }
            }
            Some(LiveQemu::Accept) => {
                if live.error.is_some() || !live.errors.is_empty() {
                    return Err(e(
                        "key `live.error`: only allowed with live.qemu = \"reject\"".into(),
                    ));
                }
            }
            Some(LiveQemu::Reject) => {}
            None => {
                if !live.argv.is_empty() {
                    return Err(e(
                        "key `live.qemu`: required when live.argv is given (\"reject\" or \"accept\")"
                            .into(),
                    ));
                }
            }
        }
        if !live.argv.is_empty() && spec.expect.outcome == Outcome::Accept {
            return Err(e(
                "key `live.argv`: only used for rejected plans; an accepted plan runs its own argv"
                    .into(),
            ));
        }
        if spec.expect.outcome == Outcome::Reject
            && matches!(live.qemu, Some(LiveQemu::Reject | LiveQemu::Accept))
            && live.argv.is_empty()
        {
            return Err(e(
                "key `live.argv`: required for a rejected plan whose live.qemu is \"reject\" or \"accept\""
                    .into(),
            ));
        }
        if let Some(x) = &live.exit {
            if live.qemu != Some(LiveQemu::Reject) {
                return Err(e(
                    "key `live.exit`: only allowed with live.qemu = \"reject\"".into(),
                ));
            }
            if matches!(x, ExitSpec::Signal(_)) && x.signal_number().is_none() {
                return Err(e(format!(
                    "key `live.exit` = {x}: expected an exit code, a signal name (\"SIGABRT\") or \"signal N\""
                )));
            }
        }
        if let Some(v) = &live.error {
            live_error = Some(compile_regex("live.error", v).map_err(e)?);
        }
        for (i, ve) in live.errors.iter().enumerate() {
            live_errors.push(LiveError {
                snapshots: SnapshotGlob::new(&ve.snapshots).map_err(|m| {
                    err(
                        CASE_FILE,
                        format!("key `live.errors[{i}].snapshots` = {:?}: {m}", ve.snapshots),
                    )
                })?,
                error: compile_regex(&format!("live.errors[{i}].error"), &ve.error).map_err(e)?,
            });
        }
    }
    let mut xfail = Vec::new();
    for (i, x) in spec.xfail.iter().enumerate() {
        if x.reason.trim().is_empty() {
            return Err(e(format!(
                "key `xfail[{i}].reason`: say why it fails and what would fix it"
            )));
        }
        xfail.push(Xfail {
            stage: x.stage,
            snapshots: SnapshotGlob::new(&x.snapshots).map_err(|m| {
                err(
                    CASE_FILE,
                    format!("key `xfail[{i}].snapshots` = {:?}: {m}", x.snapshots),
                )
            })?,
            reason: x.reason.clone(),
        });
    }
    let head = DomainHead::read(&domain_xml);
    Ok(Case {
        name: name.to_owned(),
        dir: dir.to_path_buf(),
        display_dir: display_dir.to_owned(),
        spec,
        domain_xml,
        head,
        expect_error,
        live_error,
        live_errors,
        xfail,
    })
}

/// Splits `"<type>.<property>"` at the last dot.
pub fn split_property(p: &str) -> Option<(&str, &str)> {
    let (t, prop) = p.rsplit_once('.')?;
    (!t.is_empty() && !prop.is_empty()).then_some((t, prop))
}

fn compile_regex(key: &str, value: &str) -> Result<Regex, String> {
    Regex::new(value).map_err(|e| format!("key `{key}` = {value:?}: not a valid regex: {e}"))
}

/// toml's message, on one logical block (it already names the line, column and key).
fn toml_error_text(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_case(dir: &Path, name: &str, toml: &str) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(CASE_FILE), toml).expect("write toml");
        std::fs::write(
            d.join(DOMAIN_FILE),
            "<domain type='qemu'><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>",
        )
        .expect("write xml");
        d
    }

    #[test]
    fn test_loads_valid_case_and_reads_head() {
        let t = tempfile::tempdir().expect("tempdir");
        write_case(
            t.path(),
            "q35-basic",
            "purpose = \"x\"\ntopic = \"common\"\n[expect]\noutcome = \"accept\"\n",
        );
        let c = load_corpus(t.path(), None).expect("read");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.cases.len(), 1);
        assert_eq!(c.cases[0].head.machine.as_deref(), Some("q35"));
        assert_eq!(c.cases[0].head.arch.as_deref(), Some("x86_64"));
    }

    #[test]
    fn test_unknown_key_names_file_and_key() {
        let t = tempfile::tempdir().expect("tempdir");
        write_case(
            t.path(),
            "bad-key",
            "purpose = \"x\"\ntopic = \"common\"\n[expect]\noutcome = \"accept\"\nguset = true\n",
        );
        let c = load_corpus(t.path(), None).expect("read");
        assert_eq!(c.errors.len(), 1);
        let msg = c.errors[0].to_string();
        assert!(msg.contains("bad-key/case.toml"), "{msg}");
        assert!(msg.contains("guset"), "{msg}");
    }

    #[test]
    fn test_bad_regex_and_glob_are_load_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        write_case(
            t.path(),
            "bad-regex",
            "purpose = \"x\"\ntopic = \"bad-input\"\n[expect]\noutcome = \"reject\"\nerror = \"(\"\n",
        );
        write_case(
            t.path(),
            "bad-glob",
            "purpose = \"x\"\ntopic = \"common\"\n[expect]\noutcome = \"accept\"\n[[xfail]]\nstage = \"live\"\nsnapshots = \"[\"\nreason = \"r\"\n",
        );
        let c = load_corpus(t.path(), None).expect("read");
        assert_eq!(c.errors.len(), 2);
        assert!(c.errors[0].message.contains("xfail[0].snapshots"));
        assert!(c.errors[1].message.contains("expect.error"));
    }

    #[test]
    fn test_skip_needs_reason_and_error_needs_reject() {
        let t = tempfile::tempdir().expect("tempdir");
        write_case(
            t.path(),
            "a",
            "purpose = \"x\"\ntopic = \"common\"\n[expect]\noutcome = \"accept\"\n[live]\nqemu = \"skip\"\n",
        );
        write_case(
            t.path(),
            "b",
            "purpose = \"x\"\ntopic = \"common\"\n[expect]\noutcome = \"accept\"\nerror = \"x\"\n",
        );
        let c = load_corpus(t.path(), None).expect("read");
        assert_eq!(c.errors.len(), 2);
        assert!(c.errors[0].message.contains("live.reason"));
        assert!(c.errors[1].message.contains("expect.error"));
    }

    #[test]
    fn test_live_exit_code_or_signal() {
        let t = tempfile::tempdir().expect("tempdir");
        let head = "purpose = \"x\"\ntopic = \"ccw\"\n[expect]\noutcome = \"reject\"\n[live]\nargv = [\"-machine\", \"x\"]\nqemu = \"reject\"\n";
        write_case(t.path(), "a", &format!("{head}exit = \"SIGABRT\"\n"));
        write_case(t.path(), "b", &format!("{head}exit = \"SIGNOPE\"\n"));
        write_case(t.path(), "c", head);
        let c = load_corpus(t.path(), None).expect("read");
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(c.errors[0].message.contains("live.exit"));
        let abrt = c.cases[0].live_exit();
        assert!(abrt.matches(None, Some(6)));
        assert!(!abrt.matches(Some(1), None));
        let default = c.cases[1].live_exit();
        assert!(default.matches(Some(1), None));
        assert!(!default.matches(None, Some(6)));
    }

    #[test]
    fn test_globs_do_not_cross_slash() {
        let g = SnapshotGlob::new("7.2.*/x86_64").expect("glob");
        assert!(g.matches("7.2.11/x86_64"));
        assert!(!g.matches("7.2.11/s390x"));
        let g = SnapshotGlob::new("*").expect("glob");
        assert!(!g.matches("7.2.11/x86_64"));
        let g = SnapshotGlob::new("*/*").expect("glob");
        assert!(g.matches("7.2.11/x86_64"));
    }

    #[test]
    fn test_kebab() {
        assert!(is_kebab("zpci-explicit-2"));
        assert!(!is_kebab("Zpci"));
        assert!(!is_kebab("a--b"));
        assert!(!is_kebab("a_b"));
    }
}
