//! Standard output that a closed pipe or a full disk cannot turn into a panic.
//!
//! `print!` panics when stdout cannot be written (`qconform plan … | head -c1`,
//! `> /dev/full`). Every subcommand prints through [`print`] instead: a reader that went
//! away (EPIPE) ends output quietly and the command keeps its exit status; any other
//! failure (ENOSPC, EIO) is an error naming standard output.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

/// Set once the reader of stdout has gone away: later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> anyhow::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

/// [`print`] with a final newline.
pub fn println(text: &str) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}
