//! The BigQuery sink: streaming inserts (`tabledata.insertAll`, the default) or the Storage
//! Write API (`api = "storage_write"`, gRPC; see `storage/`).
//!
//! Contract (insertAll; the Storage Write path keeps the same outcomes, dead letters, table
//! creation and schema patching, and its own wire rules, documented in `storage/mod.rs`):
//! - Rows carry `insertId` = event id, so BigQuery drops duplicates created by retries; day-sharded
//!   tables are written through `templateSuffix` = `YYYYMMDD` (BigQuery creates the day's table
//!   from the base table).
//! - A batch is split into requests of at most `max_rows_per_request` rows and
//!   `max_bytes_per_request` bytes; up to `workers` requests are in flight at once, on one
//!   current-thread tokio runtime owned by the flush thread. Bodies are gzip-compressed.
//! - Retries: exponential backoff with full jitter (`[retry]` base, cap, max_attempts) on
//!   connect errors, timeouts, dropped connections, 408/429/5xx and BigQuery's retryable reasons
//!   (backendError, internalError, rateLimitExceeded, tableUnavailable); `Retry-After` is
//!   honoured. Per-row `insertErrors`: rows marked `invalid` are rejected (dead-lettered with
//!   BigQuery's message), every other marked row (`stopped`, …) is sent again. Nothing is retried
//!   beyond `max_attempts`; what is left is reported as failed (the pipeline spools or drops it).
//! - Dead letters go to `<dataset>.<dead_letter_table>` by the same path. evlog owns that table:
//!   a `notFound` answer creates it (with [`DEAD_LETTER_SCHEMA`](crate::sink::DEAD_LETTER_SCHEMA),
//!   ingestion-time partitioned by day) whatever `create_tables` says, and tries again. Dead
//!   letters that still cannot be written (no permission, BigQuery down) are reported as failed
//!   and kept by the caller (SDK spool, collector write-ahead log) for a later attempt; only rows
//!   the dead-letter table refuses as `invalid` are reported as refused for good.
//! - With `create_tables`, a `notFound` answer creates the base table from its schema file
//!   (time-partitioned by day for partitioned tables), and its dataset if that is missing too,
//!   and tries again. Without it, evlog never creates a dataset.
//!
//! On the official `gcp-bigquery-client` crate: evlog uses its wire models (the insertAll
//! response is parsed with them) and the same OAuth2 library (yup-oauth2) for service-account
//! and application-default credentials, but sends insertAll itself, because the crate's
//! `insert_all` (a) never retries, (b) reports per-row `insertErrors` inside an Ok response, (c)
//! loses the HTTP status when an error body is not JSON and hides `Retry-After`, and (d) would
//! re-parse every row into a `serde_json::Value`, while evlog's rows are already JSON text.
//!
//! On the Storage Write API: evlog uses gcp-bigquery-client's *generated* gRPC client
//! (`google::cloud::bigquery::storage::v1::big_query_write_client::BigQueryWriteClient`, with the
//! crate's vendored protos) over a tonic channel evlog builds itself, not the crate's
//! `StorageApi` wrapper, which has no offsets (so no exactly-once), flattens rows into
//! top-level fields (no nested RECORD types in its descriptors) and connects only to Google's
//! fixed endpoint (no proxy, no test server). Descriptors and row encoding are evlog's own.
//!
//! - Schema evolution: the sink follows the processor in use ([`BigQuerySink::following`]);
//!   after a reload it patches (`tables.patch`, additive changes only) the tables whose schema
//!   gained columns or relaxed modes before sending them rows, and retries rows BigQuery
//!   refuses with "no such field" for such a column while the change propagates (never
//!   dead-letters them). See `schema_sync.rs`.
//!
//! Settings: `[sink.bigquery]` ([`BigQueryConfig`]); retries: `[retry]`, by the policy every HTTP
//! sink shares (`sink/http.rs`). Files: `request.rs` builds insertAll bodies, `service.rs` makes
//! one call (tokens, the answer and what it means), `sink.rs` drives requests, retries, table
//! creation and outcomes, `schema_sync.rs` patches tables after schema changes, `storage/` is
//! the Storage Write API path.

mod config;
mod request;
mod schema_sync;
mod service;
mod sink;
mod storage;
#[cfg(test)]
mod tests;

pub use self::config::{AuthMethod, BigQueryConfig, WriteApi, REQUEST_LIMIT};
pub use self::sink::{catalog, BigQuerySink, TableCatalog, REJECT_REASON};
