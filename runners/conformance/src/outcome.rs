//! What one stage run of one trial produced, before xfail handling turns it into a
//! [`qconform_reports::results::TrialRecord`].

use qconform_reports::results::Event;

/// Result of running one stage for one (case, snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct StageResult {
    /// Outcome.
    pub event: Event,
    /// Failure text, reason for ignoring, or notes of a pass (recorded differences,
    /// blessed files).
    pub message: Option<String>,
    /// The rig failed, not the product.
    pub rig_error: bool,
    /// QEMU argv involved.
    pub argv: Vec<String>,
    /// QEMU stderr tail.
    pub stderr_tail: Option<String>,
}

impl StageResult {
    /// A pass, optionally with notes.
    pub fn pass(notes: Option<String>) -> StageResult {
        StageResult {
            event: Event::Ok,
            message: notes,
            rig_error: false,
            argv: Vec::new(),
            stderr_tail: None,
        }
    }

    /// A product failure.
    pub fn fail(message: impl Into<String>) -> StageResult {
        StageResult {
            event: Event::Failed,
            message: Some(message.into()),
            rig_error: false,
            argv: Vec::new(),
            stderr_tail: None,
        }
    }

    /// A rig failure.
    pub fn rig(message: impl Into<String>) -> StageResult {
        StageResult {
            event: Event::Failed,
            message: Some(message.into()),
            rig_error: true,
            argv: Vec::new(),
            stderr_tail: None,
        }
    }

    /// Not run, with the reason.
    pub fn ignored(reason: impl Into<String>) -> StageResult {
        StageResult {
            event: Event::Ignored,
            message: Some(reason.into()),
            rig_error: false,
            argv: Vec::new(),
            stderr_tail: None,
        }
    }

    /// Pass when `failures` is empty, else fail with all of them; `notes` are kept either way.
    pub fn from_checks(failures: Vec<String>, notes: Vec<String>) -> StageResult {
        if failures.is_empty() {
            StageResult::pass((!notes.is_empty()).then(|| notes.join("\n")))
        } else {
            let mut all = failures;
            all.extend(notes);
            StageResult::fail(all.join("\n\n"))
        }
    }

    /// Attaches the argv.
    pub fn with_argv(mut self, argv: Vec<String>) -> StageResult {
        self.argv = argv;
        self
    }

    /// Attaches a stderr tail (trimmed; empty is dropped).
    pub fn with_stderr(mut self, stderr: &str) -> StageResult {
        let t = stderr_tail(stderr);
        self.stderr_tail = (!t.is_empty()).then_some(t);
        self
    }
}

/// The last lines of a stderr text.
pub fn stderr_tail(stderr: &str) -> String {
    const LINES: usize = 30;
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let start = lines.len().saturating_sub(LINES);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// Shell-like one-line rendering of an argv for messages: the program as given, then the
/// arguments quoted by [`qconform_reports::shell::shell_join`].
pub fn argv_line(program: &str, args: &[String]) -> String {
    if args.is_empty() {
        return program.to_owned();
    }
    format!("{program} {}", qconform_reports::shell::shell_join(args))
}
