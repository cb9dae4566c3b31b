//! The `qconform` command line.
fn main() {}
