//! The memory sink itself and the store it writes into.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::MemoryConfig;
use crate::sink::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError, SinkFactory};

/// What a [`MemorySink`] has received.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Delivered batches, in delivery order.
    pub batches: Mutex<Vec<Batch>>,
    /// Dead-lettered events.
    pub rejected: Mutex<Vec<RejectedEvent>>,
    /// While true, every delivery fails.
    pub fail: AtomicBool,
    /// While true, every dead-letter write fails (as when the dead-letter table cannot be
    /// written); rows are unaffected.
    pub fail_dead_letters: AtomicBool,
}

impl MemoryStore {
    /// A new, shared, empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A factory whose sinks write into this store.
    pub fn factory(self: &Arc<Self>) -> SinkFactory {
        let store = self.clone();
        Arc::new(move || {
            MemorySink::new(&MemoryConfig::default(), store.clone())
                .map(|s| Box::new(s) as Box<dyn Sink>)
        })
    }

    /// Number of rows delivered so far.
    pub fn row_count(&self) -> usize {
        lock(&self.batches).iter().map(|b| b.rows.len()).sum()
    }

    /// Every delivered row's insert id.
    pub fn insert_ids(&self) -> Vec<String> {
        lock(&self.batches)
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.insert_id.clone()))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes into a [`MemoryStore`].
#[derive(Debug)]
pub struct MemorySink {
    store: Arc<MemoryStore>,
}

impl MemorySink {
    /// A sink writing into `store`.
    pub fn new(_config: &MemoryConfig, store: Arc<MemoryStore>) -> Result<Self, SinkError> {
        Ok(Self { store })
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        batches
            .into_iter()
            .map(|b| {
                if self.store.fail.load(Ordering::SeqCst) {
                    BatchOutcome::failed(
                        b.rows,
                        SinkError::Other("memory sink told to fail".into()),
                    )
                } else {
                    let n = b.rows.len();
                    lock(&self.store.batches).push(b);
                    BatchOutcome::delivered(n)
                }
            })
            .collect()
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        if self.store.fail_dead_letters.load(Ordering::SeqCst) {
            return Err(SinkError::Other(
                "memory sink told to fail dead letters".into(),
            ));
        }
        lock(&self.store.rejected).extend_from_slice(events);
        Ok(())
    }
}
