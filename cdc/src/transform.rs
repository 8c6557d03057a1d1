//! The transform stage, between capture and routing: the place where per-table, per-column rules will
//! rewrite row values before anything leaves the primary, so Kafka and every shard see the same
//! transformed values (routing still reads the original ones). No rule kinds exist yet — the
//! transforms issue adds them and their configuration — so [`Transforms::apply`] passes every row
//! through unchanged. The pump already calls it for every row change.

use shared::RowChange;

/// The transform rules of every table.
#[derive(Debug, Default, Clone)]
pub struct Transforms {}

impl Transforms {
    /// No rules: every value passes unchanged.
    pub fn none() -> Self {
        Transforms {}
    }

    /// The row as it may leave the primary.
    pub fn apply(&self, row: RowChange) -> RowChange {
        row
    }
}
