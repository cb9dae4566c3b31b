//! QEMU processes and QMP: start QEMU binaries, talk QMP over their stdio, probe them into
//! caps snapshots.
//!
//! * [`qmp`]: the [`Qemu`] session handle (spawn, execute, HMP, quit; process-group hygiene).
//! * [`matrix`]: reading the installed matrix's `matrix.tsv`.
//! * [`probe`]: the probe plan that turns one binary into a [`qconform_caps::Snapshot`].

pub mod guest;
pub mod live;
pub mod matrix;
pub mod probe;
pub mod qmp;

pub use qmp::{Exit, Qemu, QemuError, Timeouts};
