//! The memory sink: keeps every batch and dead-letter row in a shared [`MemoryStore`], for tests
//! and for embedding evlog where the host wants the rows itself. Can be told to fail, to exercise
//! the pipeline's error paths.
//!
//! Contract: while the store's `fail` is off, every batch is kept whole, in delivery order, and
//! reported delivered; while it is on, every row is reported failed with a
//! [`SinkError::Other`](crate::sink::SinkError::Other). Dead letters are kept (or fail while
//! `fail_dead_letters` is on) all or nothing. Nothing is written to disk.
//!
//! It has no `sink.kind`: the host builds its factory with [`MemoryStore::factory`] and hands it
//! to [`Pipeline::with_parts`](crate::Pipeline::with_parts).

mod config;
mod sink;

pub use self::config::MemoryConfig;
pub use self::sink::{MemorySink, MemoryStore};
