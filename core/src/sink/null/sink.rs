//! The null sink itself.

use super::NullConfig;
use crate::sink::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError};

/// Counts rows as delivered and discards them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl NullSink {
    /// A null sink (nothing to check).
    pub fn new(_config: &NullConfig) -> Result<Self, SinkError> {
        Ok(NullSink)
    }
}

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
