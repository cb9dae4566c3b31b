//! Reports: caps diffs between snapshots, allocation drift between snapshots, and
//! conformance results rendered as JUnit XML, JSON lines and one self-contained HTML page,
//! written into a run directory with a `latest` link.
//!
//! * [`results`]: the trial record contract, parsing and merging of shards;
//! * [`diff`] / [`diff_render`]: caps diff data and its text, Markdown, HTML, JSON forms;
//! * [`drift`]: how the plan of one domain changes between two snapshots;
//! * [`junit`], [`html`]: the matrix renderings; [`explore_section`]: the `qconform explore`
//!   summary section;
//! * [`render`]: the run directory ([`render::write_run`]);
//! * [`load`]: reading records and snapshots from disk.
//!
//! Everything but [`render::write_run`] and [`load`] is pure.

pub mod diff;
pub mod diff_render;
pub mod drift;
pub mod explore_section;
pub mod html;
pub mod junit;
pub mod load;
pub mod render;
pub mod results;
