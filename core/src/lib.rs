//! evlog core: envelope, schemas, validation, routing and the in-process pipeline.
//!
//! - [`envelope`]: the unit of input and its rules.
//! - [`schema`]: BigQuery JSON schema files; validation and conversion of an event to a row.
//! - [`routing`]: dataset, table and day shard of a row (`[routing]`).
//! - [`destinations`]: named sinks and the `[[routes]]` that say which receive an event.
//! - [`transform`]: `[[transforms]]`, declarative changes to an event's fields per table and destination.
//! - [`pipeline`]: `log()` → lock-free queue → flush thread → [`sink`].
//! - [`ingest`]: the seam the flush thread and the collector share: the event type, processing
//!   (validation, conversion, routing), batching, delivery and the counting of its outcome.
//! - [`counters`]: the counters (docs/contracts.md) and the accounting invariant.
//! - [`config`]: the TOML configuration with `EVLOG_*` overrides.
//!
//! This crate has no FFI code; bindings and the collector adapt it.

pub mod clock;
pub mod config;
pub mod counters;
pub mod destinations;
pub mod envelope;
mod fork;
mod fsync;
pub mod ids;
pub mod ingest;
pub mod json;
pub mod pipeline;
pub mod routing;
pub mod schema;
pub mod sink;
pub mod spool;
pub mod time;
pub mod transform;

pub use config::Config;
pub use counters::{DropReason, Stats};
pub use envelope::{Envelope, EnvelopeError};
pub use ingest::EventInput;
pub use pipeline::{ErrorHook, ErrorSummary, LogError, Outcome, Pipeline, PipelineError};
