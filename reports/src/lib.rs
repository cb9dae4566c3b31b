//! Reports: caps diffs between snapshots, allocation drift between snapshots, and
//! conformance results rendered as JUnit XML, JSON lines and one self-contained HTML page,
//! written into a run directory with a `latest` link.
//!
//! * [`results`]: the trial record contract, parsing and merging of shards;
//! * [`diff`] / [`diff_render`]: caps diff data and its text, Markdown, HTML, JSON forms;
//! * [`drift`]: how the plan of one domain changes between two snapshots;
//! * [`junit`], [`html`]: the matrix renderings; [`explore_section`]: the `qconform explore`
//!   summary section;
//! * [`page`]: what every HTML page shares (CSS, skeleton, anchors, diff blocks), used by
//!   [`html`] and [`diff_render`];
//! * [`shell`]: shell quoting of an argv for display;
//! * [`suite`]: the libvirt-suite tier's parity data (produced by the runner, shown in the
//!   report);
//! * [`render`]: the run directory ([`render::write_run`]);
//! * [`load`]: reading records, snapshots and text inputs from disk;
//! * [`output`]: writing an output file to a user's path without destroying what it is.
//!
//! Everything but [`render::write_run`], [`load`] and [`output`] is pure.

pub mod diff;
pub mod diff_render;
pub mod drift;
pub mod explore_section;
pub mod html;
pub mod junit;
pub mod load;
pub mod output;
pub mod page;
pub mod render;
pub mod results;
pub mod shell;
pub mod suite;
