//! Case corpus loading and the replay, live and guest stages of the conformance runner.
//!
//! The corpus (`cases/<name>/{domain.xml,case.toml,expect/}`) is crossed with the caps
//! snapshots (`capsdata/`) into trials named `<case>@<version>/<arch>[/<machine>]`, one per
//! stage:
//!
//! * **plan** ([`planstage`]): offline replay through `qconform_plan::plan`, hand-written
//!   `[expect]` checks, goldens compared with a unified diff or blessed;
//! * **live** ([`livestage`]): the argv on the real binary behind the snapshot (found by
//!   its sha256 in the installed matrix), compared with QEMU's `query-pci`/`info qtree`;
//! * **guest** ([`gueststage`]): a Debian kernel booted with the argv, compared with what
//!   the guest kernel enumerated.
//!
//! A second corpus, libvirt's own test domains with the argv libvirt expects, is replayed
//! by [`libvirt_suite`] and summarised as a parity line.
//!
//! Capability gating ([`gate`]) marks trials that do not apply as ignored with the
//! reason; `[[xfail]]` entries are checked both ways ([`trials::apply_xfail`]). Every
//! trial ends in a [`qconform_reports::results::TrialRecord`], collected by
//! [`results::ResultsWriter`] into one JSON-lines file per process.
//!
//! Used by the libtest-mimic target `tests/conformance.rs` (so `cargo test` and `cargo
//! nextest` run the matrix) and by `qconform run`.

pub mod binaries;
pub mod case;
pub mod config;
pub mod explore;
pub mod gate;
pub mod golden;
pub mod gueststage;
pub mod libvirt_suite;
pub mod livestage;
pub mod outcome;
pub mod planstage;
pub mod planview;
pub mod qualify;
pub mod results;
pub mod rig;
pub mod snapshots;
pub mod trials;

pub use case::{Case, Corpus, load_corpus};
pub use config::{Config, GuestSelection, Tiers};
pub use snapshots::{LoadedSnapshot, Snapshots, load_snapshots};
pub use trials::{TrialSpec, build_trials};
