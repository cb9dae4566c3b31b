//! Reports: caps diffs between snapshots, and conformance results rendered as JUnit XML,
//! JSON lines and one self-contained HTML page.

pub mod results;
