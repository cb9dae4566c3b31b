//! The one crate that runs QEMU: it starts QEMU binaries (each in its own process group,
//! never left behind), talks QMP to them, probes a binary into a caps snapshot, checks a
//! planned command line on the real binary and boots a guest to read what it enumerates.
//! Every other crate of the harness is pure and gets QEMU's answers through this one.
//!
//! * [`qmp`]: the [`Qemu`] session handle (spawn, QMP and HMP over stdio, quit;
//!   process-group hygiene, deadlines on every wait).
//! * [`matrix`]: reading the installed matrix's `matrix.tsv`.
//! * [`probe`]: the probe plan that turns one binary into a [`qconform_caps::Snapshot`].
//! * [`live`]: the live tier: start an argv and read the PCI topology QEMU built
//!   (`query-pci`, `info qtree`), or tell whether QEMU refuses a command line and why.
//! * [`guest`]: the guest tier: boot a planned argv with a Debian kernel and the qconform
//!   initramfs and parse the PCI functions the guest listed on its serial console (no QMP).

pub mod guest;
pub mod live;
pub mod matrix;
pub mod probe;
pub mod qmp;

pub use qmp::{Exit, Qemu, QemuError, Timeouts};
