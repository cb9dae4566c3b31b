//! Derivation of the [`Index`](crate::Index) from [`Raw`](crate::Raw) replies.
//! (Implementation owned by the probe work; see ARCHITECTURE.md.)

use crate::{Index, Raw};

/// Raw replies that do not have the shape the index needs.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// A reply lacks a member or has the wrong JSON type.
    #[error("{reply}: {problem}")]
    Shape {
        /// Which reply (e.g. `query-machines`).
        reply: String,
        /// What is wrong.
        problem: String,
    },
}

impl Index {
    /// Derives the normalised index from raw replies.
    pub fn derive(raw: &Raw) -> Result<Index, DeriveError> {
        let _ = raw;
        Err(DeriveError::Shape {
            reply: "all".into(),
            problem: "derivation not written yet".into(),
        })
    }
}
