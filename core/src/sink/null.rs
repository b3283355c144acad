//! The null sink: acknowledges every row and keeps nothing (benchmarks, dry runs).

use super::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError};

/// Counts rows as delivered and discards them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        batches
            .into_iter()
            .map(|b| BatchOutcome::delivered(b.rows.len()))
            .collect()
    }

    fn dead_letter(&mut self, _events: &[RejectedEvent]) -> Result<(), SinkError> {
        Ok(())
    }
}
