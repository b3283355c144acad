//! The Storage Write API path of the BigQuery sink (`api = "storage_write"`).
//!
//! Files: `descriptor.rs` (a table's columns and the protobuf descriptor of its rows),
//! `encode.rs` (row JSON text to protobuf bytes).

pub(crate) mod descriptor;
pub(crate) mod encode;
mod streams;
mod write;
#[cfg(test)]
mod tests;

use thiserror::Error;

pub(crate) use self::write::StorageWriter;

/// Errors of the Storage Write path before anything is sent.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The table's schema cannot be written through the Storage Write API.
    #[error("Storage Write schema: {0}")]
    Schema(String),
}
