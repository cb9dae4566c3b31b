//! A QEMU process driven over QMP on its own stdin/stdout (`-qmp stdio`).
//!
//! The transport is ours rather than a generated client's because the harness talks to many
//! QEMU releases at once: every message is kept as a [`serde_json::Value`], events QEMU has
//! invented since are simply stored, lines may be long (`query-qmp-schema` is about 250 KB on
//! one line) but not endless ([`MAX_LINE`]), and every wait has a deadline.
//!
//! Process hygiene: QEMU is started in its own process group with `kill_on_drop`, its stderr
//! is read concurrently into a bounded tail, [`Qemu::quit`] sends QMP `quit`, waits, then
//! kills the whole group; dropping a [`Qemu`] kills the group too. A launcher script that
//! `exec`s QEMU works as well as the binary itself, and so does a launcher that does not
//! (its children share the group and die with it). Descendants that left the group (`setsid`)
//! are found by a per-launch environment mark and killed with it ([`LaunchMark`]), and QEMU
//! gets SIGKILL from the kernel if the thread that started it dies, so that killing
//! qconform with SIGKILL or SIGHUP does not leave QEMU running.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// Deadlines for the phases of a QEMU session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From spawn to the end of capability negotiation.
    pub startup: Duration,
    /// From sending a command to its reply.
    pub command: Duration,
    /// From sending `quit` (or killing) to the process having exited.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    /// Generous values meant for a loaded two-core machine: QEMU normally greets in
    /// ~20 ms and answers any introspection command in well under a second.
    fn default() -> Self {
        Timeouts {
            startup: Duration::from_secs(30),
            command: Duration::from_secs(30),
            shutdown: Duration::from_secs(10),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it (6 = SIGABRT, 9 = SIGKILL, ...).
    pub signal: Option<i32>,
}

impl Exit {
    fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        Exit {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}{}", signal_name(s)),
            (None, None) => write!(f, "unknown exit status"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// Errors of a QEMU session. Every variant that concerns a started process carries the
/// tail of its stderr, which is where QEMU explains itself.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The program could not be executed at all (missing, not executable, not a binary).
    #[error("cannot execute {program}: {source}{}", spawn_hint(source))]
    Spawn {
        /// Program path.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// QEMU exited (or died) before the session was set up or while a command was pending.
    /// For a refused configuration this holds QEMU's exit code and its error text.
    #[error("{} {exit} {phase}{}", program.display(), stderr_suffix(stderr))]
    Exited {
        /// Program path.
        program: PathBuf,
        /// What we were waiting for (e.g. `before the QMP greeting`).
        phase: String,
        /// How it ended.
        exit: Exit,
        /// Tail of stderr.
        stderr: String,
    },
    /// No answer in time; the process group was killed.
    #[error("{} did not answer {phase} within {}s (killed){}", program.display(), after.as_secs_f64(), stderr_suffix(stderr))]
    Timeout {
        /// Program path.
        program: PathBuf,
        /// What we were waiting for.
        phase: String,
        /// The deadline that passed.
        after: Duration,
        /// Tail of stderr.
        stderr: String,
    },
    /// The other side does not speak QMP (garbage on stdout, a reply that does not fit).
    #[error("{} does not speak QMP {phase}: {detail}{}", program.display(), stderr_suffix(stderr))]
    Protocol {
        /// Program path.
        program: PathBuf,
        /// What we were waiting for.
        phase: String,
        /// What was wrong (with the offending text, shortened).
        detail: String,
        /// Tail of stderr.
        stderr: String,
    },
    /// A command answered with a QMP error where the caller needed success.
    #[error("QMP command {command} failed: {}", error_desc(error))]
    Command {
        /// Command name.
        command: String,
        /// The QMP error object (`{"class": ..., "desc": ...}`).
        error: Value,
    },
    /// Writing to QEMU's stdin failed for a reason other than QEMU having exited.
    #[error("I/O error talking to {}: {source}", program.display())]
    Io {
        /// Program path.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn spawn_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(8) => " (it is not an executable program; is this a QEMU binary or launcher?)",
        Some(13) => " (permission denied: is it executable?)",
        Some(2) => " (no such file)",
        _ => "",
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{t}")
    }
}

/// The `desc` member of a QMP error object, or the object itself as text.
pub fn error_desc(error: &Value) -> String {
    error
        .get("desc")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned)
}

impl QemuError {
    /// How the process ended, when that is what went wrong.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            QemuError::Exited { exit, .. } => Some(*exit),
            _ => None,
        }
    }

    /// Tail of the process's stderr, when the error concerns a started process.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            QemuError::Exited { stderr, .. }
            | QemuError::Timeout { stderr, .. }
            | QemuError::Protocol { stderr, .. } => Some(stderr),
            _ => None,
        }
    }

    /// Whether the error is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, QemuError::Timeout { .. })
    }
}

/// Longest QMP line accepted, in bytes. Every QMP message is one line, and the longest
/// QEMU sends us is the `query-qmp-schema` reply: 248,378 bytes measured on QEMU 11.1
/// (aarch64 and x86_64; `qom-list-types` is about 64 KB). 64 MiB is more than 250 times
/// that, room for many releases of growth, while a peer that streams bytes without a
/// newline is stopped long before memory runs out.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Bytes of stderr kept (the tail); QEMU's refusals are one line, warnings a few.
const STDERR_KEEP: usize = 64 * 1024;

#[derive(Debug, Default)]
struct StderrTail {
    bytes: Vec<u8>,
    dropped: bool,
}

/// A running QEMU with a negotiated QMP session on its stdio.
#[derive(Debug)]
pub struct Qemu {
    program: PathBuf,
    child: Child,
    pgid: Option<rustix::process::Pid>,
    mark: LaunchMark,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_task: Option<JoinHandle<()>>,
    timeouts: Timeouts,
    greeting: Value,
    events: Vec<Value>,
    next_id: u64,
    exit: Option<Exit>,
}

impl Qemu {
    /// Starts `program args...` (the args must contain `-qmp stdio`), waits for the QMP
    /// greeting and negotiates capabilities.
    ///
    /// Errors tell apart a program that cannot run ([`QemuError::Spawn`]), one that exits
    /// before QMP is up, e.g. an unknown machine or a refused `-device`
    /// ([`QemuError::Exited`] with exit status and stderr), one that hangs
    /// ([`QemuError::Timeout`]) and one that prints something else ([`QemuError::Protocol`]).
    /// In every error case the process group has been killed and reaped.
    pub async fn spawn(
        program: impl AsRef<Path>,
        args: &[String],
        timeouts: Timeouts,
    ) -> Result<Qemu, QemuError> {
        let program = program.as_ref().to_path_buf();
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mark = LaunchMark::apply(&mut cmd);
        let mut child = spawn_not_busy(&mut cmd)
            .await
            .map_err(|source| QemuError::Spawn {
                program: program.clone(),
                source,
            })?;
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Cannot happen with piped stdio; make sure nothing is left behind anyway.
            if let Some(p) = pgid {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
            mark.kill_all();
            return Err(QemuError::Io {
                program,
                source: std::io::Error::other("child stdio pipes missing"),
            });
        };
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        let stderr_task = tokio::spawn(read_stderr(stderr_pipe, Arc::clone(&stderr)));
        let mut qemu = Qemu {
            program,
            child,
            pgid,
            mark,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(256 * 1024, stdout),
            line: Vec::new(),
            stderr,
            stderr_task: Some(stderr_task),
            timeouts,
            greeting: Value::Null,
            events: Vec::new(),
            next_id: 1,
            exit: None,
        };
        let deadline = Instant::now() + timeouts.startup;
        match qemu.handshake(deadline).await {
            Ok(()) => Ok(qemu),
            Err(e) => {
                qemu.kill_and_reap_after(e.grace(timeouts)).await;
                Err(qemu.finish_error(e).await)
            }
        }
    }

    async fn handshake(&mut self, deadline: Instant) -> Result<(), Pending> {
        let phase = "before the QMP greeting";
        let greeting = self.read_message(deadline, phase).await?;
        if greeting.get("QMP").is_none() {
            return Err(Pending::Protocol {
                phase: phase.into(),
                detail: format!(
                    "expected the QMP greeting, got {}",
                    shorten(&greeting.to_string())
                ),
            });
        }
        self.greeting = greeting;
        let reply = self
            .round_trip(
                "qmp_capabilities",
                None,
                deadline,
                "during capability negotiation",
            )
            .await?;
        if let Err(err) = reply {
            return Err(Pending::Protocol {
                phase: "during capability negotiation".into(),
                detail: format!("qmp_capabilities failed: {}", error_desc(&err)),
            });
        }
        Ok(())
    }

    /// The QMP greeting (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Events received so far, in order, verbatim.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Takes the events received so far.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    /// Process id of QEMU (or of its launcher, if the launcher does not `exec`); it is also
    /// the process group id.
    pub fn pid(&self) -> Option<u32> {
        self.pgid.map(|p| p.as_raw_nonzero().get().unsigned_abs())
    }

    /// Program path this session was started from.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Current stderr tail (QEMU may still be writing to it).
    pub fn stderr_now(&self) -> String {
        tail_text(&self.stderr)
    }

    /// Runs a QMP command. The outer `Result` is about the session (QEMU died, timed out,
    /// spoke garbage; the process group is killed in those cases), the inner one is QEMU's
    /// answer: `Ok(return value)` or `Err(error object {"class", "desc"})`.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Result<Value, Value>, QemuError> {
        let deadline = Instant::now() + self.timeouts.command;
        let phase = format!("to {command}");
        match self.round_trip(command, arguments, deadline, &phase).await {
            Ok(r) => Ok(r),
            Err(p) => {
                self.kill_and_reap_after(p.grace(self.timeouts)).await;
                Err(self.finish_error(p).await)
            }
        }
    }

    /// Runs several QMP commands pipelined: all are written at once, then the replies are
    /// read (QEMU answers a non-OOB session in order). One deadline covers the batch (the
    /// command timeout, plus one more per 32 commands). Same error contract as
    /// [`Qemu::execute`]; the answers come back in the order of `commands`.
    pub async fn execute_pipelined(
        &mut self,
        commands: &[(&str, Option<Value>)],
    ) -> Result<Vec<Result<Value, Value>>, QemuError> {
        let n = u32::try_from(commands.len() / 32).unwrap_or(u32::MAX);
        let deadline = Instant::now() + self.timeouts.command.saturating_mul(n.saturating_add(1));
        match self.pipelined(commands, deadline).await {
            Ok(r) => Ok(r),
            Err(p) => {
                self.kill_and_reap_after(p.grace(self.timeouts)).await;
                Err(self.finish_error(p).await)
            }
        }
    }

    async fn pipelined(
        &mut self,
        commands: &[(&str, Option<Value>)],
        deadline: Instant,
    ) -> Result<Vec<Result<Value, Value>>, Pending> {
        let first = self.next_id;
        let mut bytes = Vec::new();
        for (command, arguments) in commands {
            let id = self.next_id;
            self.next_id += 1;
            let mut msg = json!({ "execute": command, "id": id });
            if let (Some(args), Some(obj)) = (arguments.clone(), msg.as_object_mut()) {
                obj.insert("arguments".into(), args);
            }
            bytes.extend_from_slice(msg.to_string().as_bytes());
            bytes.push(b'\n');
        }
        let Some(mut stdin) = self.stdin.take() else {
            return Err(Pending::Write(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            )));
        };
        // Write and read at once: QEMU stops reading while its replies fill the pipe.
        let writer = async move {
            let r = async {
                stdin.write_all(&bytes).await?;
                stdin.flush().await
            }
            .await;
            (stdin, r)
        };
        let phase = format!("to a pipelined batch of {} commands", commands.len());
        let reader = async {
            let mut out: Vec<Option<Result<Value, Value>>> = vec![None; commands.len()];
            let mut got = 0;
            while got < commands.len() {
                let mut reply = self.read_message(deadline, &phase).await?;
                let Some(obj) = reply.as_object_mut() else {
                    return Err(Pending::Protocol {
                        phase: phase.clone(),
                        detail: format!("not a JSON object: {}", shorten(&reply.to_string())),
                    });
                };
                if obj.contains_key("event") {
                    self.events.push(reply);
                    continue;
                }
                let slot = obj
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|id| id.checked_sub(first))
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| out.get_mut(i))
                    .filter(|s| s.is_none());
                let answer = if let Some(ret) = obj.remove("return") {
                    Ok(ret)
                } else if let Some(err) = obj.remove("error") {
                    Err(err)
                } else {
                    return Err(Pending::Protocol {
                        phase: phase.clone(),
                        detail: format!(
                            "reply with neither return nor error: {}",
                            shorten(&reply.to_string())
                        ),
                    });
                };
                let Some(slot) = slot else {
                    return Err(Pending::Protocol {
                        phase: phase.clone(),
                        detail: "reply for another request".into(),
                    });
                };
                *slot = Some(answer);
                got += 1;
            }
            Ok(out.into_iter().flatten().collect::<Vec<_>>())
        };
        let ((stdin, written), read) = tokio::join!(writer, reader);
        self.stdin = Some(stdin);
        // A failed read (QEMU exited) says more than the broken pipe it caused.
        let out = read?;
        written.map_err(Pending::Write)?;
        Ok(out)
    }

    /// Runs a QMP command that must succeed: a QMP error becomes [`QemuError::Command`].
    pub async fn execute_ok(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QemuError> {
        self.execute(command, arguments)
            .await?
            .map_err(|error| QemuError::Command {
                command: command.to_owned(),
                error,
            })
    }

    /// Runs an HMP command line through `human-monitor-command` and returns its text.
    pub async fn hmp(&mut self, command_line: &str) -> Result<String, QemuError> {
        let reply = self
            .execute_ok(
                "human-monitor-command",
                Some(json!({ "command-line": command_line })),
            )
            .await?;
        match reply {
            Value::String(s) => Ok(s),
            other => Err(QemuError::Protocol {
                program: self.program.clone(),
                phase: format!("to human-monitor-command {command_line}"),
                detail: format!("expected a string, got {}", shorten(&other.to_string())),
                stderr: self.stderr_now(),
            }),
        }
    }

    /// Ends the session: QMP `quit`, wait for the exit (up to the shutdown timeout), then
    /// kill the process group whatever happened. Returns how QEMU ended and its stderr tail.
    pub async fn quit(mut self) -> (Exit, String) {
        if self.exit.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let msg = json!({ "execute": "quit", "id": id });
            // QEMU may already be gone; the wait below tells.
            let _ = self.send(&msg).await;
            let deadline = Instant::now() + self.timeouts.shutdown;
            if let Ok(Ok(status)) = timeout_at(deadline, self.child.wait()).await {
                self.exit = Some(Exit::from_status(status));
            }
        }
        self.kill_and_reap().await;
        self.drain_stderr().await;
        let exit = self.exit.unwrap_or(Exit {
            code: None,
            signal: None,
        });
        (exit, tail_text(&self.stderr))
    }

    /// Waits up to `limit` for QEMU to exit by itself (e.g. after a `-device` that QEMU
    /// refused once the monitor was already up). Returns `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<Exit> {
        if let Some(e) = self.exit {
            return Some(e);
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => {
                let e = Exit::from_status(status);
                self.exit = Some(e);
                self.kill_group();
                self.drain_stderr().await;
                Some(e)
            }
            _ => None,
        }
    }

    /// Kills the process group now and reaps QEMU.
    pub async fn kill(mut self) -> (Exit, String) {
        self.kill_and_reap().await;
        self.drain_stderr().await;
        let exit = self.exit.unwrap_or(Exit {
            code: None,
            signal: None,
        });
        (exit, tail_text(&self.stderr))
    }

    async fn round_trip(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        deadline: Instant,
        phase: &str,
    ) -> Result<Result<Value, Value>, Pending> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let (Some(args), Some(obj)) = (arguments, msg.as_object_mut()) {
            obj.insert("arguments".into(), args);
        }
        self.send(&msg).await.map_err(Pending::Write)?;
        loop {
            let mut reply = self.read_message(deadline, phase).await?;
            let Some(obj) = reply.as_object_mut() else {
                return Err(Pending::Protocol {
                    phase: phase.into(),
                    detail: format!("not a JSON object: {}", shorten(&reply.to_string())),
                });
            };
            if obj.contains_key("event") {
                self.events.push(reply);
                continue;
            }
            if obj.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(Pending::Protocol {
                    phase: phase.into(),
                    detail: format!("reply for another request: {}", shorten(&reply.to_string())),
                });
            }
            if let Some(ret) = obj.remove("return") {
                return Ok(Ok(ret));
            }
            if let Some(err) = obj.remove("error") {
                return Ok(Err(err));
            }
            return Err(Pending::Protocol {
                phase: phase.into(),
                detail: format!(
                    "reply with neither return nor error: {}",
                    shorten(&reply.to_string())
                ),
            });
        }
    }

    async fn send(&mut self, msg: &Value) -> std::io::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        };
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        stdin.write_all(&bytes).await?;
        stdin.flush().await
    }

    /// Reads one non-empty line (at most [`MAX_LINE`] bytes) and parses it as JSON.
    async fn read_message(&mut self, deadline: Instant, phase: &str) -> Result<Value, Pending> {
        loop {
            self.line.clear();
            // One byte more than the bound tells a line of exactly MAX_LINE bytes from a
            // longer one.
            let mut bounded = (&mut self.stdout).take(MAX_LINE as u64 + 1);
            let n = match timeout_at(deadline, bounded.read_until(b'\n', &mut self.line)).await {
                Err(_) => {
                    return Err(Pending::Timeout {
                        phase: phase.into(),
                    });
                }
                Ok(Err(e)) => return Err(Pending::Read(e, phase.into())),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(Pending::Eof {
                    phase: phase.into(),
                });
            }
            if self.line.len() > MAX_LINE {
                let start =
                    String::from_utf8_lossy(self.line.get(..200).unwrap_or_default()).into_owned();
                self.line = Vec::new();
                return Err(Pending::Protocol {
                    phase: phase.into(),
                    detail: format!(
                        "a line longer than {} MiB (no newline), starting: {}",
                        MAX_LINE >> 20,
                        shorten(&start)
                    ),
                });
            }
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text).map_err(|e| Pending::Protocol {
                phase: phase.into(),
                detail: format!("not JSON ({e}): {}", shorten(text)),
            });
        }
    }

    fn kill_group(&self) {
        if let Some(p) = self.pgid {
            // ESRCH (group already gone) is the normal case after a clean quit.
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
        self.mark.kill_all();
    }

    /// Kills the group and reaps QEMU. `grace` is how long QEMU may take to finish exiting
    /// by itself first (after stdout closed, the exit status is a moment away and is the
    /// information the caller wants, not our SIGKILL).
    async fn kill_and_reap_after(&mut self, grace: Duration) {
        self.stdin = None;
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(Exit::from_status(status));
            } else if !grace.is_zero()
                && let Ok(Ok(status)) = tokio::time::timeout(grace, self.child.wait()).await
            {
                self.exit = Some(Exit::from_status(status));
            }
        }
        self.kill_group();
        if self.exit.is_none() {
            let _ = self.child.start_kill();
            if let Ok(Ok(status)) =
                tokio::time::timeout(self.timeouts.shutdown, self.child.wait()).await
            {
                self.exit = Some(Exit::from_status(status));
            }
        }
    }

    async fn kill_and_reap(&mut self) {
        self.kill_and_reap_after(Duration::ZERO).await;
    }

    async fn drain_stderr(&mut self) {
        if let Some(task) = self.stderr_task.take() {
            // Once the group is dead the pipe closes; the bound only guards against a
            // stray process that escaped the group and holds the pipe open.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Turns a pending failure into the public error once the process is reaped.
    async fn finish_error(&mut self, p: Pending) -> QemuError {
        self.drain_stderr().await;
        let stderr = tail_text(&self.stderr);
        let program = self.program.clone();
        match p {
            Pending::Timeout { phase } => QemuError::Timeout {
                program,
                after: if phase.starts_with("before") || phase.starts_with("during") {
                    self.timeouts.startup
                } else {
                    self.timeouts.command
                },
                phase,
                stderr,
            },
            Pending::Read(e, phase) if self.exit.is_none() => QemuError::Protocol {
                program,
                phase,
                detail: format!("reading stdout failed: {e}"),
                stderr,
            },
            Pending::Eof { phase } | Pending::Read(_, phase) => match self.exit {
                Some(exit) => QemuError::Exited {
                    program,
                    phase,
                    exit,
                    stderr,
                },
                None => QemuError::Protocol {
                    program,
                    phase,
                    detail: "stdout closed but the process did not exit".into(),
                    stderr,
                },
            },
            Pending::Write(source) => match self.exit {
                Some(exit) => QemuError::Exited {
                    program,
                    phase: "while a command was sent".into(),
                    exit,
                    stderr,
                },
                None => QemuError::Io { program, source },
            },
            Pending::Protocol { phase, detail } => QemuError::Protocol {
                program,
                phase,
                detail,
                stderr,
            },
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill_group();
        } else {
            // QEMU is gone, but something it (or its launcher) started in another
            // session may not be.
            self.mark.kill_all();
        }
        if let Some(t) = self.stderr_task.take() {
            t.abort();
        }
        // kill_on_drop covers the direct child; tokio reaps it in the background.
    }
}

/// Failure inside a session before it is turned into a [`QemuError`].
enum Pending {
    Timeout { phase: String },
    Eof { phase: String },
    Read(std::io::Error, String),
    Write(std::io::Error),
    Protocol { phase: String, detail: String },
}

impl Pending {
    /// How long to let QEMU finish exiting by itself before killing it.
    fn grace(&self, timeouts: Timeouts) -> Duration {
        match self {
            Pending::Eof { .. } | Pending::Read(..) | Pending::Write(_) => timeouts.shutdown,
            Pending::Timeout { .. } | Pending::Protocol { .. } => Duration::ZERO,
        }
    }
}

async fn read_stderr(mut pipe: tokio::process::ChildStderr, tail: Arc<Mutex<StderrTail>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut t) = tail.lock() else { break };
                let chunk = buf.get(..n).unwrap_or_default();
                t.bytes.extend_from_slice(chunk);
                if t.bytes.len() > STDERR_KEEP * 2 {
                    let cut = t.bytes.len() - STDERR_KEEP;
                    t.bytes.drain(..cut);
                    t.dropped = true;
                }
            }
        }
    }
}

fn tail_text(tail: &Arc<Mutex<StderrTail>>) -> String {
    let Ok(t) = tail.lock() else {
        return String::new();
    };
    let start = t.bytes.len().saturating_sub(STDERR_KEEP);
    let mut bytes = t.bytes.get(start..).unwrap_or_default();
    if t.dropped || start > 0 {
        // Start at a line boundary so the tail does not begin mid-line.
        if let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            bytes = bytes.get(pos + 1..).unwrap_or_default();
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push_str("...");
        out
    }
}

/// Spawns `cmd`, retrying briefly while the program file is "busy" (`ETXTBSY`).
///
/// Linux refuses to execute a file that some process holds open for writing. A launcher or
/// script that was written a moment ago can still be open in a child forked concurrently by
/// another thread of this process (until that child execs), so a short retry turns that
/// race into a delay instead of a spurious launch failure.
pub(crate) async fn spawn_not_busy(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    refuse_unknown_format(Path::new(cmd.as_std().get_program()))?;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Fails with `ENOEXEC` for a program file that is neither a script (`#!`) nor ELF.
///
/// The kernel refuses such a file with `ENOEXEC`, but a spawn with a `pre_exec` hook (see
/// [`die_with_parent`]) goes through the C library's `execvp`, which then runs the file
/// with `/bin/sh` instead, so a text file given as a QEMU binary would be run as a shell
/// script. Checked by path only; a bare name found through `PATH` is left to `execvp`, and
/// a file we cannot read is left to the kernel to judge.
fn refuse_unknown_format(program: &Path) -> std::io::Result<()> {
    use std::io::Read;
    if program.components().count() < 2 {
        return Ok(());
    }
    let Ok(mut f) = std::fs::File::open(program) else {
        return Ok(());
    };
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match f.read(head.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            // A directory and the like: the kernel's refusal is the better message.
            Err(_) => return Ok(()),
        }
    }
    let head = head.get(..n).unwrap_or_default();
    if head.starts_with(b"#!") || head == b"\x7fELF" {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(
            rustix::io::Errno::NOEXEC.raw_os_error(),
        ))
    }
}

/// Environment variable that marks every process of one launch (its value is unique per
/// launch). Descendants inherit it through `fork` and `exec`, including those that leave the
/// process group with `setsid`, so the launch can find and kill all of them. A descendant
/// that clears its environment escapes the mark (no QEMU launcher does that).
pub const LAUNCH_ENV: &str = "QCONFORM_LAUNCH";

/// The mark of one launch; see [`LAUNCH_ENV`].
#[derive(Debug, Clone)]
pub(crate) struct LaunchMark {
    /// `QCONFORM_LAUNCH=<value>`, as it appears in `/proc/<pid>/environ`.
    entry: Vec<u8>,
}

impl LaunchMark {
    /// Marks `cmd` with a fresh launch mark and makes its process die with this thread.
    pub(crate) fn apply(cmd: &mut Command) -> LaunchMark {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let value = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cmd.env(LAUNCH_ENV, &value);
        die_with_parent(cmd);
        LaunchMark {
            entry: format!("{LAUNCH_ENV}={value}").into_bytes(),
        }
    }

    /// SIGKILLs every process that carries this mark. Passes repeat until one finds none
    /// alive, so that a process forked during a pass is caught by the next; a killed
    /// process cannot fork any more, so this ends. Processes of other users cannot be read
    /// and cannot carry our mark.
    pub(crate) fn kill_all(&self) {
        for _ in 0..10 {
            let marked = self.find();
            if marked.is_empty() {
                return;
            }
            for pid in marked {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// Live processes carrying the mark (zombies have an empty environment).
    fn find(&self) -> Vec<rustix::process::Pid> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let own = std::process::id();
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != own)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == self.entry))
            })
            .filter_map(|pid| rustix::process::Pid::from_raw(i32::try_from(pid).ok()?))
            .collect()
    }
}

/// Makes the child get SIGKILL when the thread that spawns it dies, however it dies
/// (`prctl(PR_SET_PDEATHSIG)`; the setting survives the `exec` of QEMU or of a launcher
/// and of the launcher's `exec` of QEMU). Without it a qconform killed by SIGKILL, or by a
/// signal it does not handle, leaves QEMU running, reparented to init: QEMU sits in its own
/// process group, so no terminal signal reaches it either.
///
/// Callers spawn from tokio worker threads or from a thread that `block_on`s the session,
/// both of which live as long as the session's handle, so the signal does not come early.
///
/// The only `unsafe` in the workspace. The parent-death signal must be set in the child,
/// between `fork` and `exec`, and the only hook there is `pre_exec`, which is `unsafe`
/// because the closure runs in a forked copy of a multi-threaded process. A safe launcher
/// step (util-linux `setpriv --pdeathsig PROGRAM`) was rejected: it adds a run-time
/// dependency, and as the program is then started by another process, a missing or
/// unexecutable program becomes exit 127 with text on stderr instead of the spawn error,
/// and `ETXTBSY` is no longer seen by [`spawn_not_busy`].
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure only makes two system calls (`prctl`, `getppid`) through rustix,
    // which neither allocate nor take locks, so it is async-signal-safe as `pre_exec`
    // requires; it touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died between fork and prctl: then no signal would come.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
}
