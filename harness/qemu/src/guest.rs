//! Guest boots: start a planned argv with a Debian kernel and the qconform initramfs
//! (`runners/scripts/install-guest.sh`), read the serial console until the initramfs has
//! listed the PCI functions the guest kernel enumerated (and, on s390x, the CCW devices),
//! and parse those lists.
//!
//! Per arch (console device, what else the boot needs):
//! - x86_64 `ttyS0`, aarch64 `ttyAMA0` (`-cpu max`), s390x `ttysclp0`: direct kernel boot.
//! - ppc64 `hvc0`: pseries' SLOF loads the ELF kernel and the initramfs (the sPAPR VTY the
//!   machine always has is the console; `-serial stdio` routes it).
//! - riscv64 `ttyS0`: virt's default firmware (OpenSBI, from the QEMU tree) starts the kernel.
//!
//! The console is QEMU's stdout (`-serial stdio`), so no QMP is used. QEMU runs in its own
//! process group, which is killed when the list is complete, on timeout, and on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use crate::live::{ClassObs, ObservedFunction, sanitize_argv};
use crate::qmp::Exit;

/// Line that starts the PCI list.
pub const BEGIN_MARKER: &str = "=== PCI-DEVICES-BEGIN";
/// Line that ends the PCI list.
pub const END_MARKER: &str = "=== PCI-DEVICES-END";
/// Line that starts the CCW list (s390x only, after the PCI list).
pub const CCW_BEGIN_MARKER: &str = "=== CCW-DEVICES-BEGIN";
/// Line that ends the CCW list.
pub const CCW_END_MARKER: &str = "=== CCW-DEVICES-END";

/// Environment variable naming the assets root.
pub const GUEST_ROOT_ENV: &str = "QCONFORM_GUEST_ROOT";

/// Kernel and initramfs of one guest arch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAssets {
    /// `vmlinuz`.
    pub kernel: PathBuf,
    /// `initrd.gz`.
    pub initrd: PathBuf,
    /// Kernel console device (`ttyS0`, `ttysclp0`, `ttyAMA0`, `hvc0`).
    pub console: &'static str,
    /// Whether the initramfs lists CCW devices after the PCI functions (s390x), so the boot
    /// waits for that list too.
    pub lists_ccw: bool,
    /// Kernel parameters the arch needs beyond the console (leading space when not empty).
    pub cmdline_extra: &'static str,
    /// How many times the caller's deadline a boot of this arch gets (pseries: 2, its
    /// firmware loads the 44 MB ELF kernel itself; measured 2.5-3.5 times an x86 or s390x
    /// boot of the same devices).
    pub deadline_factor: u32,
    /// Extra QEMU arguments the arch needs (e.g. `-cpu max` on aarch64), added only when
    /// the argv does not set them.
    pub extra: Vec<String>,
}

/// Console device per guest arch; `None` for arches without guest assets.
pub fn console_for(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("ttyS0"),
        "s390x" => Some("ttysclp0"),
        "aarch64" => Some("ttyAMA0"),
        "ppc64" => Some("hvc0"),
        "riscv64" => Some("ttyS0"),
        _ => None,
    }
}

/// Kernel parameters an arch's guest boot adds. x86_64: `no_timer_check` (Linux,
/// Documentation/admin-guide/kernel-parameters.txt: skips the test for broken timer IRQ
/// sources). Under TCG on a loaded host the test can see too few timer ticks and the kernel
/// panics with "IO-APIC + timer doesn't work!": observed in 8 of 21 q35/pc boots with
/// QEMU 7.2-11.1 at a load average of 17 on 2 cores.
pub fn cmdline_extra_for(arch: &str) -> &'static str {
    match arch {
        "x86_64" => " no_timer_check",
        _ => "",
    }
}

/// The default assets root: `$QCONFORM_GUEST_ROOT`, else `$HOME/.cache/qconform/guest`.
pub fn default_root() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os(GUEST_ROOT_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(r));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/qconform/guest"))
}

/// Finds the assets of an arch under `root`, or says what is missing.
pub fn assets(root: &Path, arch: &str) -> Result<GuestAssets, String> {
    let console =
        console_for(arch).ok_or_else(|| format!("the guest tier has no kernel for {arch}"))?;
    let dir = root.join(arch);
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.gz");
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            return Err(format!(
                "guest assets not installed: {} is missing (runners/scripts/install-guest.sh)",
                f.display()
            ));
        }
    }
    let extra = if arch == "aarch64" {
        vec!["-cpu".into(), "max".into()]
    } else {
        Vec::new()
    };
    Ok(GuestAssets {
        kernel,
        initrd,
        console,
        lists_ccw: arch == "s390x",
        cmdline_extra: cmdline_extra_for(arch),
        deadline_factor: if arch == "ppc64" { 2 } else { 1 },
        extra,
    })
}

/// The arguments a guest boot starts QEMU with.
pub fn guest_args(argv: &[String], assets: &GuestAssets) -> Vec<String> {
    let mut args: Vec<String> = sanitize_argv(argv, false)
        .into_iter()
        // The console must be ours: drop serial and console routing of the plan.
        .collect();
    drop_option(&mut args, "-serial");
    drop_option(&mut args, "-kernel");
    drop_option(&mut args, "-initrd");
    drop_option(&mut args, "-append");
    drop_flag(&mut args, "-no-shutdown");
    let has = |a: &[String], o: &str| a.iter().any(|x| x == o);
    if !has(&args, "-nodefaults") {
        args.insert(0, "-nodefaults".into());
    }
    let has_accel = has(&args, "-accel")
        || args
            .windows(2)
            .any(|w| matches!(w, [o, v] if (o == "-machine" || o == "-M") && v.contains("accel=")));
    if !has_accel {
        args.extend(["-accel".to_owned(), "tcg".to_owned()]);
    }
    if !has(&args, "-display") {
        args.extend(["-display".to_owned(), "none".to_owned()]);
    }
    if let Some(opt) = assets.extra.first()
        && !has(&args, opt)
    {
        args.extend(assets.extra.iter().cloned());
    }
    args.extend([
        "-m".to_owned(),
        "512".to_owned(),
        "-no-reboot".to_owned(),
        "-kernel".to_owned(),
        assets.kernel.display().to_string(),
        "-initrd".to_owned(),
        assets.initrd.display().to_string(),
        "-append".to_owned(),
        format!(
            "console={} panic=-1 quiet loglevel=3{}",
            assets.console, assets.cmdline_extra
        ),
        "-serial".to_owned(),
        "stdio".to_owned(),
    ]);
    args
}

fn drop_option(args: &mut Vec<String>, opt: &str) {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.drain(..);
    while let Some(a) = it.next() {
        if a == opt {
            it.next();
        } else {
            out.push(a);
        }
    }
    drop(it);
    *args = out;
}

fn drop_flag(args: &mut Vec<String>, flag: &str) {
    args.retain(|a| a != flag);
}

/// One `PCI ...` line of the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFunction {
    /// PCI domain.
    pub domain: u32,
    /// Bus.
    pub bus: u32,
    /// Slot.
    pub slot: u32,
    /// Function.
    pub function: u32,
    /// Vendor.
    pub vendor: u16,
    /// Device.
    pub device: u16,
    /// 24-bit class (base, sub, prog-if).
    pub class: u32,
    /// Revision.
    pub revision: u8,
    /// Subsystem vendor and id.
    pub subsystem: (u16, u16),
    /// Secondary bus number (bridges).
    pub sec: Option<u32>,
    /// zPCI uid (s390x).
    pub uid: Option<u32>,
    /// zPCI fid (s390x).
    pub fid: Option<u32>,
}

impl GuestFunction {
    /// As an observed function (class = base and subclass, as `lspci -n` prints it).
    pub fn observed(&self) -> ObservedFunction {
        ObservedFunction {
            domain: self.domain,
            bus: self.bus,
            slot: self.slot,
            function: self.function,
            class: ClassObs::Code(u16::try_from(self.class >> 8).unwrap_or(u16::MAX)),
            vendor: self.vendor,
            device: self.device,
            qdev_id: String::new(),
            hidden: None,
        }
    }
}

fn hex_u32(s: &str) -> Option<u32> {
    u32::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

fn hex_u16(s: &str) -> Option<u16> {
    u16::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// Parses one `PCI DDDD:BB:SS.F vendor=... device=... class=... revision=... subsystem=...
/// [sec=N] [uid=... fid=...]` line.
pub fn parse_pci_line(line: &str) -> Result<GuestFunction, String> {
    let bad = |why: &str| format!("guest line {line:?}: {why}");
    let mut words = line.split_whitespace();
    if words.next() != Some("PCI") {
        return Err(bad("does not start with PCI"));
    }
    let addr = words.next().ok_or_else(|| bad("no address"))?;
    let (domain, rest) = addr.split_once(':').ok_or_else(|| bad("address"))?;
    let (bus, rest) = rest.split_once(':').ok_or_else(|| bad("address"))?;
    let (slot, function) = rest.split_once('.').ok_or_else(|| bad("address"))?;
    let mut f = GuestFunction {
        domain: hex_u32(domain).ok_or_else(|| bad("domain"))?,
        bus: hex_u32(bus).ok_or_else(|| bad("bus"))?,
        slot: hex_u32(slot).ok_or_else(|| bad("slot"))?,
        function: hex_u32(function).ok_or_else(|| bad("function"))?,
        vendor: 0,
        device: 0,
        class: 0,
        revision: 0,
        subsystem: (0, 0),
        sec: None,
        uid: None,
        fid: None,
    };
    let mut seen = [false; 4];
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| bad("field without ="))?;
        match k {
            "vendor" => {
                f.vendor = hex_u16(v).ok_or_else(|| bad("vendor"))?;
                seen[0] = true;
            }
            "device" => {
                f.device = hex_u16(v).ok_or_else(|| bad("device"))?;
                seen[1] = true;
            }
            "class" => {
                f.class = hex_u32(v).ok_or_else(|| bad("class"))?;
                seen[2] = true;
            }
            "revision" => {
                f.revision = hex_u32(v)
                    .and_then(|r| u8::try_from(r).ok())
                    .ok_or_else(|| bad("revision"))?;
            }
            "subsystem" => {
                let (sv, sd) = v.split_once(':').ok_or_else(|| bad("subsystem"))?;
                f.subsystem = (
                    hex_u16(sv).ok_or_else(|| bad("subsystem"))?,
                    hex_u16(sd).ok_or_else(|| bad("subsystem"))?,
                );
                seen[3] = true;
            }
            "sec" => f.sec = Some(v.parse().map_err(|_| bad("sec"))?),
            "uid" => f.uid = Some(hex_u32(v).ok_or_else(|| bad("uid"))?),
            "fid" => f.fid = Some(hex_u32(v).ok_or_else(|| bad("fid"))?),
            // Fields added later by the initramfs do not break older parsers.
            _ => {}
        }
    }
    if seen[..3].iter().any(|s| !s) {
        return Err(bad("vendor, device and class are required"));
    }
    Ok(f)
}

/// Parses the console text between the markers. Errors when the END marker is missing.
pub fn parse_console(text: &str) -> Result<Vec<GuestFunction>, String> {
    let mut inside = false;
    let mut done = false;
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r').trim();
        if line.ends_with(BEGIN_MARKER) {
            inside = true;
            out.clear();
            continue;
        }
        if line.ends_with(END_MARKER) && inside {
            done = true;
            break;
        }
        if inside && let Some(pos) = line.find("PCI ") {
            // Kernel messages may share a line with ours; take from our marker word.
            if let Some(tail) = line.get(pos..) {
                out.push(parse_pci_line(tail)?);
            }
        }
    }
    if !done {
        return Err(if inside {
            format!("the console shows {BEGIN_MARKER} but not {END_MARKER}")
        } else {
            format!("the console never showed {BEGIN_MARKER}")
        });
    }
    out.sort_by_key(|f| (f.domain, f.bus, f.slot, f.function));
    Ok(out)
}

/// One `CCW ...` line of the initramfs (s390x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCcw {
    /// Bus-id as the guest numbers it: `C.S.DDDD` (channel subsystem, subchannel set, devno).
    pub bus_id: String,
    /// Control unit type and model (`3832/01` for virtio-net).
    pub cutype: String,
    /// Device type and model.
    pub devtype: String,
    /// Whether a driver set the device online.
    pub online: bool,
}

/// Parses one `CCW C.S.DDDD cutype=TTTT/MM devtype=TTTT/MM online=N` line.
pub fn parse_ccw_line(line: &str) -> Result<GuestCcw, String> {
    let bad = |why: &str| format!("guest line {line:?}: {why}");
    let mut words = line.split_whitespace();
    if words.next() != Some("CCW") {
        return Err(bad("does not start with CCW"));
    }
    let bus_id = words.next().ok_or_else(|| bad("no bus-id"))?;
    let parts: Vec<&str> = bus_id.split('.').collect();
    let ok = matches!(parts.as_slice(), [c, s, d]
        if u8::from_str_radix(c, 16).is_ok() && u8::from_str_radix(s, 16).is_ok()
            && d.len() == 4 && u16::from_str_radix(d, 16).is_ok());
    if !ok {
        return Err(bad("bus-id is not C.S.DDDD"));
    }
    let mut c = GuestCcw {
        bus_id: bus_id.to_ascii_lowercase(),
        cutype: String::new(),
        devtype: String::new(),
        online: false,
    };
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| bad("field without ="))?;
        match k {
            "cutype" => c.cutype = v.to_owned(),
            "devtype" => c.devtype = v.to_owned(),
            "online" => c.online = v == "1",
            _ => {}
        }
    }
    if c.cutype.is_empty() {
        return Err(bad("cutype is required"));
    }
    Ok(c)
}

/// Parses the CCW list of the console; errors when its END marker is missing.
pub fn parse_ccw_console(text: &str) -> Result<Vec<GuestCcw>, String> {
    let mut inside = false;
    let mut done = false;
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r').trim();
        if line.ends_with(CCW_BEGIN_MARKER) {
            inside = true;
            out.clear();
            continue;
        }
        if line.ends_with(CCW_END_MARKER) && inside {
            done = true;
            break;
        }
        if inside
            && let Some(pos) = line.find("CCW ")
            && let Some(tail) = line.get(pos..)
        {
            out.push(parse_ccw_line(tail)?);
        }
    }
    if !done {
        return Err(if inside {
            format!("the console shows {CCW_BEGIN_MARKER} but not {CCW_END_MARKER}")
        } else {
            format!("the console never showed {CCW_BEGIN_MARKER}")
        });
    }
    out.sort_by(|a, b| a.bus_id.cmp(&b.bus_id));
    Ok(out)
}

/// What a guest boot produced.
#[derive(Debug, Clone)]
pub struct GuestBoot {
    /// Arguments QEMU was started with.
    pub args: Vec<String>,
    /// The functions the guest listed.
    pub functions: Vec<GuestFunction>,
    /// The CCW devices the guest listed (s390x; empty elsewhere).
    pub ccw: Vec<GuestCcw>,
    /// Time from spawn to the END marker.
    pub elapsed: Duration,
    /// Console tail (for failure messages).
    pub console_tail: String,
    /// stderr tail.
    pub stderr: String,
}

/// Why a guest boot produced no list.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// QEMU could not be executed.
    #[error("cannot execute {program}: {source}")]
    Spawn {
        /// Program.
        program: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// QEMU exited before the list was complete.
    #[error(
        "QEMU {exit} before the guest finished listing PCI devices{}",
        tails(console, stderr)
    )]
    Exited {
        /// How it ended.
        exit: Exit,
        /// Console tail.
        console: String,
        /// stderr tail.
        stderr: String,
    },
    /// The list was not complete in time.
    #[error("no complete PCI list on the console within {}s (killed){}", after.as_secs(), tails(console, stderr))]
    Timeout {
        /// Deadline.
        after: Duration,
        /// Console tail.
        console: String,
        /// stderr tail.
        stderr: String,
    },
    /// The list could not be parsed.
    #[error("{message}{}", tails(console, ""))]
    Parse {
        /// What is wrong.
        message: String,
        /// Console tail.
        console: String,
    },
}

impl GuestError {
    /// Whether the rig (not the product) failed: QEMU could not be executed.
    pub fn is_rig(&self) -> bool {
        matches!(self, GuestError::Spawn { .. })
    }

    /// stderr tail, when QEMU ran.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            GuestError::Exited { stderr, .. } | GuestError::Timeout { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

fn tails(console: &str, stderr: &str) -> String {
    let mut s = String::new();
    if !console.trim().is_empty() {
        s.push_str(&format!("\nconsole (tail):\n{}", console.trim_end()));
    }
    if !stderr.trim().is_empty() {
        s.push_str(&format!("\nstderr (tail):\n{}", stderr.trim_end()));
    }
    s
}

const TAIL_LINES: usize = 40;

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// Boots `program` with a planned argv plus the guest assets and returns what the guest
/// listed. The process group is killed in every case. The boot gets `deadline` times the
/// arch's `deadline_factor`.
pub async fn boot(
    program: &Path,
    argv: &[String],
    assets: &GuestAssets,
    deadline: Duration,
) -> Result<GuestBoot, GuestError> {
    let deadline = deadline.saturating_mul(assets.deadline_factor.max(1));
    let args = guest_args(argv, assets);
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mark = crate::qmp::LaunchMark::apply(&mut cmd);
    let start = Instant::now();
    let mut child = crate::qmp::spawn_not_busy(&mut cmd)
        .await
        .map_err(|source| GuestError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    let kill_group = move || {
        if let Some(p) = pgid {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
        mark.kill_all();
    };
    let stderr_buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stderr_task = child.stderr.take().map(|mut pipe| {
        let buf = Arc::clone(&stderr_buf);
        tokio::spawn(async move {
            let mut chunk = vec![0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if b.len() > 256 * 1024 {
                        let cut = b.len() - 128 * 1024;
                        b.drain(..cut);
                    }
                }
            }
        })
    });
    let stderr_text = |buf: &Arc<Mutex<Vec<u8>>>| {
        buf.lock()
            .map(|b| tail_lines(&String::from_utf8_lossy(&b), TAIL_LINES))
            .unwrap_or_default()
    };
    let mut console = String::new();
    let result = match child.stdout.take() {
        None => Err(None),
        Some(out) => {
            let mut reader = BufReader::new(out);
            let mut line = Vec::new();
            let until = start + deadline;
            let last_marker = if assets.lists_ccw {
                CCW_END_MARKER
            } else {
                END_MARKER
            };
            loop {
                line.clear();
                match tokio::time::timeout_at(until, reader.read_until(b'\n', &mut line)).await {
                    Err(_) => break Err(None),
                    Ok(Err(_)) | Ok(Ok(0)) => break Err(Some(())),
                    Ok(Ok(_)) => {
                        let text = String::from_utf8_lossy(&line);
                        console.push_str(&text);
                        if console.len() > 1 << 20 {
                            let cut = console.len() - (512 << 10);
                            let cut = (cut..console.len())
                                .find(|i| console.is_char_boundary(*i))
                                .unwrap_or(0);
                            console.drain(..cut);
                        }
                        if text.trim_end().ends_with(last_marker) {
                            break Ok(());
                        }
                    }
                }
            }
        }
    };
    let elapsed = start.elapsed();
    // Whatever happened, nothing of this boot survives it.
    kill_group();
    let _ = child.start_kill();
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .ok()
        .and_then(Result::ok)
        .map(exit_of);
    if let Some(t) = stderr_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let stderr = stderr_text(&stderr_buf);
    let console_tail = tail_lines(&console, TAIL_LINES);
    match result {
        Ok(()) => {
            let parse_err = |message| GuestError::Parse {
                message,
                console: console_tail.clone(),
            };
            let functions = parse_console(&console).map_err(parse_err)?;
            let ccw = if assets.lists_ccw {
                parse_ccw_console(&console).map_err(parse_err)?
            } else {
                Vec::new()
            };
            Ok(GuestBoot {
                args,
                functions,
                ccw,
                elapsed,
                console_tail,
                stderr,
            })
        }
        Err(Some(())) => Err(GuestError::Exited {
            exit: exit.unwrap_or(Exit {
                code: None,
                signal: None,
            }),
            console: console_tail,
            stderr,
        }),
        Err(None) => Err(GuestError::Timeout {
            after: deadline,
            console: console_tail,
            stderr,
        }),
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    Exit {
        code: status.code(),
        signal: status.signal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parses_console_between_markers() {
        let text = "SeaBIOS\r\n[    1.0] noise\r\n=== PCI-DEVICES-BEGIN\r\nPCI 0000:00:00.0 vendor=0x8086 device=0x29c0 class=0x060000 revision=0x00 subsystem=1af4:1100\r\nPCI 0000:00:02.0 vendor=0x1b36 device=0x000c class=0x060400 revision=0x00 subsystem=1b36:0000 sec=1\r\nPCI 0003:00:00.0 vendor=0x1af4 device=0x1041 class=0x020000 revision=0x01 subsystem=1af4:1100 uid=0x3 fid=0x00000027\r\n=== PCI-DEVICES-END\r\n";
        let f = parse_console(text).expect("list");
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].sec, Some(1));
        assert_eq!(f[2].uid, Some(3));
        assert_eq!(f[2].fid, Some(0x27));
        assert_eq!(f[2].observed().class, ClassObs::Code(0x0200));
        assert!(
            parse_console(
                "=== PCI-DEVICES-BEGIN\nPCI 0000:00:00.0 vendor=0x1 device=0x2 class=0x3\n"
            )
            .is_err()
        );
        assert!(parse_console("nothing").is_err());
        assert!(
            parse_console("=== PCI-DEVICES-BEGIN\nPCI 0000:00 vendor\n=== PCI-DEVICES-END\n")
                .is_err()
        );
    }

    #[test]
    fn test_parses_ccw_list_after_pci_list() {
        let text = "=== PCI-DEVICES-BEGIN\r\n=== PCI-DEVICES-END\r\n[ 2.0] noise=== CCW-DEVICES-BEGIN\r\nCCW 0.1.0100 cutype=3832/01 devtype=0000/00 online=1\r\nCCW 0.0.0000 cutype=3832/05 devtype=0000/00 online=1\r\n=== CCW-DEVICES-END\r\n";
        assert_eq!(parse_console(text).expect("pci"), Vec::new());
        let c = parse_ccw_console(text).expect("ccw");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].bus_id, "0.0.0000");
        assert_eq!(c[0].cutype, "3832/05");
        assert!(c[1].online);
        assert!(parse_ccw_console("=== CCW-DEVICES-BEGIN\nCCW 0.0.0000 cutype=3832/05\n").is_err());
        assert!(
            parse_ccw_console("=== CCW-DEVICES-BEGIN\nCCW 0.0.00 cutype=1\n=== CCW-DEVICES-END\n")
                .is_err()
        );
        assert!(parse_ccw_console("=== PCI-DEVICES-END\n").is_err());
    }

    #[test]
    fn test_consoles_of_the_five_arches() {
        for (arch, console) in [
            ("x86_64", "ttyS0"),
            ("s390x", "ttysclp0"),
            ("aarch64", "ttyAMA0"),
            ("ppc64", "hvc0"),
            ("riscv64", "ttyS0"),
        ] {
            assert_eq!(console_for(arch), Some(console), "{arch}");
        }
        assert_eq!(console_for("mips"), None);
    }

    #[test]
    fn test_guest_args_replace_console_and_add_assets() {
        let assets = GuestAssets {
            kernel: "/k".into(),
            initrd: "/i".into(),
            console: "ttyAMA0",
            lists_ccw: false,
            cmdline_extra: "",
            deadline_factor: 1,
            extra: vec!["-cpu".into(), "max".into()],
        };
        let argv: Vec<String> = ["-S", "-machine", "virt", "-serial", "pty", "-no-shutdown"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let a = guest_args(&argv, &assets);
        assert!(!a.contains(&"-S".to_owned()));
        assert!(!a.contains(&"pty".to_owned()));
        assert!(!a.contains(&"-no-shutdown".to_owned()));
        assert!(a.windows(2).any(|w| w == ["-cpu", "max"]));
        assert!(a.windows(2).any(|w| w == ["-serial", "stdio"]));
        assert!(a.contains(&"console=ttyAMA0 panic=-1 quiet loglevel=3".to_owned()));
    }
}
