//! The OpenSearch sink: documents into OpenSearch (or Elasticsearch) with the `_bulk` API.
//!
//! Contract:
//! - Every row becomes a `create` action with `_id` = the event id (the row's `insert_id`), so a
//!   retry never makes a duplicate: a `create` whose id exists answers 409
//!   (`version_conflict_engine_exception`), which counts as delivered (the document is there,
//!   from an attempt whose answer was lost). `_bulk` bodies are NDJSON (`request.rs`), sent as
//!   `application/x-ndjson`, gzip-compressed with `gzip` (`Content-Encoding: gzip`).
//! - Index: the `index` pattern with `{namespace}`, `{type}` (the batch's destination dataset and
//!   table: the namespace and type unless `[routing.tables]` maps them elsewhere) and `{date}`
//!   (the UTC day of `event_time`, `YYYY.MM.DD`), lowercased: `{namespace}-{type}-{date}` →
//!   `events-transaction-2026.12.02` (`index.rs`). With `data_stream = true` the pattern names a
//!   data stream (no `{date}`): data streams take only `create`, which is what the sink sends,
//!   and need a `@timestamp`, which the sink adds to every document (the row's `event_time`);
//!   OpenSearch creates the data stream on the first write when an index template with
//!   `data_stream` matches it (`install_templates` puts one). `_id` de-duplication then holds
//!   within a backing index: a retry that crosses a rollover can store a second copy.
//! - Documents are the rows, byte for byte, except JSON and GEOGRAPHY columns, which BigQuery
//!   keeps as text and OpenSearch indexes as values (`document.rs`).
//! - A batch is split into requests of at most `max_docs_per_request` documents and
//!   `max_bytes_per_request` bytes; up to `workers` requests are in flight at once, on a
//!   current-thread tokio runtime owned by the flush thread.
//! - Per-item results (`request.rs`, [`request::Verdict`]): 2xx and 409 delivered; 408, 429
//!   (`es_rejected_execution_exception`: a full write queue) and 5xx sent again, alone (the
//!   delivered ones are not resent), after a full-jitter backoff; 400 and other 4xx refused for
//!   their content (`mapper_parsing_exception`, `illegal_argument_exception`, …): rejected with
//!   reason `opensearch_refused`, OpenSearch's type and reason in the error and the field it
//!   names in `field`, and dead-lettered; 401, 403 and 404 (permissions, an index that may not be
//!   created) failed at once and kept (spool, write-ahead log), since they are not the
//!   document's fault.
//! - Whole requests: connect errors, timeouts, dropped connections, 408, 429 and 5xx are retried
//!   by the policy every HTTP sink shares (`sink/http.rs`: `[retry]`, full jitter,
//!   `Retry-After`); other statuses (401, 403, 413, …) and a 2xx that is not a `_bulk` answer for
//!   what was sent are not. Nothing is retried beyond `retry.max_attempts` (one attempt while the
//!   pipeline probes): what is left is reported failed (the pipeline spools or drops it).
//! - Nodes (`urls`): requests are spread round-robin over the nodes that are up
//!   (`sink/nodes.rs`, shared with the forward sink); a node that refuses the connection is put
//!   down for a backoff and skipped at once for the next one (each at most once per attempt);
//!   after a 5xx or a timeout it is put down and the retry goes to another node. Auth: basic, `Authorization: ApiKey <key>` or `Bearer <token>`; TLS
//!   with the built-in roots plus `ca_file`.
//! - Dead letters: OpenSearch has no dead-letter table, so they go to the index
//!   `dead_letter_index` (`{namespace}-_evlog_rejected` by default: `{namespace}` is the
//!   dead letter's dataset, `{date}` the UTC day it is written) as the dead-letter row
//!   ([`DEAD_LETTER_SCHEMA`](crate::sink::DEAD_LETTER_SCHEMA)), `_id` = event id, by the same
//!   path: stored, refused (a 4xx from that index: dropped and counted by the caller) or failed
//!   (kept by the caller for later).
//! - Templates (`template.rs`): with `install_templates`, an index template per table, generated
//!   from its schema file, and one for the dead-letter indices, are put
//!   (`PUT _index_template/<name>`) before the first document is sent, by each sink instance (a
//!   PUT replaces, so every process putting them is harmless). A template that cannot be put
//!   fails the deliveries (their rows are kept, the error names the template and OpenSearch's
//!   reason) and is tried again at the next delivery.
//!
//! Where osmem-server (the in-memory OpenSearch the tests run) differs from OpenSearch, as seen
//! with osmem-server 0.1.6 (reporting 3.8.0):
//! - No data streams: a write to one answers 400 `unsupported_operation_exception`; the data
//!   stream path is checked in unit tests only.
//! - Documents are searchable as soon as `_bulk` answers, without a refresh.
//! - A non-finite `double` (`"NaN"`, `"Infinity"`, which BigQuery FLOAT64 allows) is accepted;
//!   OpenSearch refuses it (only finite values), so such rows are dead-lettered there.
//! - A number literal out of the double range (`1e400`) makes it drop the connection; evlog never
//!   writes one (FLOAT64 infinities are strings).
//!
//! Settings: `[sink.opensearch]` ([`OpenSearchConfig`]); retries: `[retry]`. Files: `config.rs`
//! the section and its rules, `index.rs` index name patterns, `document.rs` rows as documents,
//! `request.rs` `_bulk` bodies and answers, `template.rs` index templates, `service.rs` the client
//! and the nodes, `sink.rs` requests, retries and outcomes.

mod config;
mod document;
mod index;
mod request;
mod service;
mod sink;
mod template;
#[cfg(test)]
mod tests;

pub use self::config::{JsonMapping, OpenSearchAuth, OpenSearchConfig, REQUEST_LIMIT};
pub use self::sink::{OpenSearchSink, REJECT_REASON};
pub use self::template::{catalog, Catalog};
