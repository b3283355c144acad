//! The Storage Write API path of the BigQuery sink (`api = "storage_write"`): rows as protobuf
//! through gRPC `BigQueryWrite.AppendRows`, with the same outcomes as insertAll (delivered /
//! rejected / failed), so the SDK's spool and the collector's write-ahead log keep failures.
//!
//! # Contract
//!
//! - **Client**: gcp-bigquery-client's generated `BigQueryWriteClient` over evlog's own tonic
//!   channel to `storage_url` (TLS with the system roots for `https://`, plaintext for
//!   `http://`), connected lazily, on the sink's runtime. The crate's `StorageApi` wrapper is
//!   not used: it has no offsets, no nested types and a fixed endpoint. Every call carries
//!   `authorization: Bearer <token>` from the sink's token source (`service.rs`, refreshed by
//!   yup-oauth2) and the `x-goog-request-params` routing header; the token is read per call
//!   rather than by a tonic interceptor because interceptors are synchronous and the token
//!   source is not. With `gzip` (the default) requests are sent as gzip-compressed gRPC
//!   messages.
//! - **Rows**: each table's descriptor is made from its schema (`descriptor.rs`: the catalog's
//!   schema file, the dead-letter schema, or `tables.get` for a table no schema file maps) and
//!   rows are transcoded from their JSON text (`encode.rs`). A row that cannot be encoded is
//!   rejected (dead-lettered) with the reason. Every request carries `write_stream` and
//!   `writer_schema` (a few hundred bytes), so any stream can take any request.
//! - **Requests**: a job (the insertAll path's request: `max_rows_per_request`,
//!   `max_bytes_per_request`) is cut again if its protobuf passes 10 MB less a margin; up to
//!   `workers` jobs run at once, each on its own AppendRows stream, one request in flight per
//!   stream, so answers come one per request, in order. Streams are kept and reused across
//!   batches, and opened again after 20 minutes (their bearer token is fixed when they open)
//!   or when the token changed; a stream the server closed is replaced at once.
//! - **Answers**: an `append_result` delivers the request's rows. `row_errors` reject those rows
//!   (dead-letter table, BigQuery's message, reason `bigquery_invalid`) and the rest are sent
//!   again at once (BigQuery stored none of them). UNAVAILABLE, INTERNAL, ABORTED,
//!   DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, and a stream that broke (closed, reset, UNKNOWN,
//!   CANCELLED, no answer within `request_timeout`) are retried by `[retry]` (full jitter, the
//!   policy of `sink/http.rs`); other codes fail the rows at once. A schema mismatch because
//!   the table lacks a column of the schema files (`SCHEMA_MISMATCH_EXTRA_FIELDS`) patches the
//!   table once (`schema_sync.rs`) and retries, as insertAll does for "no such field".
//!   `updated_schema` replaces the descriptor of a table no schema file describes, and its
//!   rows are encoded again and re-sent with it; for tables with a schema file the file's
//!   descriptor stays (it is what the rows hold, and a table that grew still takes it).
//! - **Tables**: NOT_FOUND creates the base table with `create_tables` (and always the
//!   dead-letter table), as insertAll does. Day shards: the Storage Write API has no template
//!   tables, so before the first append to `<table>YYYYMMDD` the sink creates it with the base
//!   table's schema as BigQuery has it (`tables.get`), which is what insertAll's
//!   `templateSuffix` does; once per shard and process.
//!
//! # Exactly once (`exactly_once = true`)
//!
//! - Rows go to COMMITTED streams (`CreateWriteStream`) with an offset on every request. A
//!   stream belongs to one table and takes one request at a time; the sink keeps idle ones per
//!   table and reuses them across batches (so at most `workers` per table, created on demand,
//!   not an RPC per batch), and finalizes them at `close()` (`FinalizeWriteStream`).
//! - A request's offset is the stream's end as this writer knows it. `append_result` and
//!   `ALREADY_EXISTS` (the offset holds rows: an earlier attempt of these very rows whose
//!   answer was lost) both mean delivered, and move the end on. `OUT_OF_RANGE` (the stream ends
//!   before the offset, so the rows are not in it) is reconciled with `GetWriteStream` (its
//!   state goes in the message) and the rows go to a new stream. A retry sends exactly the
//!   rows of the attempt before it (after `row_errors`, which store nothing, the rest at the
//!   same offset), so an offset never holds other rows than the ones retried at it.
//! - When a request runs out of attempts without an answer, its rows may or may not be in the
//!   stream: the stream is abandoned (never appended to again, never finalized) and the rows
//!   are remembered with their stream and offset (`streams.rs`, `Unsettled`, by their insert
//!   ids, the last 4096 runs). They are reported failed, so the collector retries them from its
//!   write-ahead log and the SDK spools them; when the same rows come back to this sink (the
//!   collector's retry, the SDK replaying its spool) they are sent alone to that stream at that
//!   offset, and `ALREADY_EXISTS` tells that they had landed. Rows are matched as a whole run,
//!   in order, which retries, spool records and the log preserve.
//! - **Across crashes** (`positions_dir`): every request's run, stream and offset is written
//!   and fsync'd to this process's positions file *before* the request is sent
//!   (`positions.rs`), and stays there after it is delivered (the caller may replay those rows
//!   until its spool or log has committed them). A new process reads the directory at start
//!   and remembers every run in it, taking over the files of processes that are gone. So a
//!   record the SDK replays again after a SIGKILL, or rows the collector's log sends again after
//!   a crash between BigQuery's answer and its commit, go to the same offset and meet
//!   `ALREADY_EXISTS`. The spool and the log themselves are unchanged: the run (its rows' insert
//!   ids, in order) is the link between a record and its position. A remembered stream is used
//!   for its run only, never pooled again (other runs may follow it there); if it was finalized
//!   meanwhile (`STREAM_FINALIZED`), the run is in it, since evlog finalizes only streams whose
//!   every request was answered and keeps only runs that were not refused. Tested with
//!   SIGKILL: `tests/tests/bq_storage_write_crash.rs` (an SDK mid-replay) and
//!   `bq_storage_write_collector_crash.rs` (a collector mid-stream, half the answers lost);
//!   without `positions_dir` both store rows twice.
//!
//! **Limits**: runs are found only whole and in order, so rows replayed in another grouping
//! (a run cut in two by a replay's batch boundary) go to a new stream, at least once; only the
//! last 4096 runs are kept (about 2 million rows at 500 per request) — a spool replayed after
//! more than that was sent meets no positions for its oldest records. Without `positions_dir`
//! the runs live in memory: exactly once within a process, at least once across a crash.
//!
//! Files: `descriptor.rs` (a table's columns and the protobuf descriptor of its rows),
//! `encode.rs` (row JSON text to protobuf bytes), `streams.rs` (which stream and offset rows go
//! to: `_default`, COMMITTED streams, remembered runs), `positions.rs` (the positions file),
//! `write.rs` (the client, the stream pool, one job's attempts and outcomes).

pub(crate) mod descriptor;
pub(crate) mod encode;
mod positions;
mod streams;
#[cfg(test)]
mod tests;
mod write;

use thiserror::Error;

pub(crate) use self::write::StorageWriter;

/// Errors of the Storage Write path before anything is sent.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The table's schema cannot be written through the Storage Write API.
    #[error("Storage Write schema: {0}")]
    Schema(String),
}
