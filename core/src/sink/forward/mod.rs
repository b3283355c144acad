//! The forward sink: the SDK's `forward` mode sends events to an evlog collector, which holds
//! the cloud credentials. Two formats (`sink.forward.format`):
//!
//! - `"events"` (default): the events as they were logged, framed as envelopes, to
//!   `POST <url>/v1/batch` (NDJSON; `events`, format in [`wire`]). The flush thread neither
//!   parses nor validates them ([`Sink::takes_events`](crate::sink::Sink::takes_events)); the
//!   collector does, with its schemas, routes and transforms. Measured on the project's VM
//!   (`tests/examples/forward_cpu.rs`): the flush thread's CPU per event falls several-fold
//!   (README, "Forward mode"). Per event: 2xx delivered; 422 stored by the collector as a dead
//!   letter, reported `rejected_stored` (counted rejected by its reason); 400/403/413 refused
//!   *without* being kept, reported `refused`: the pipeline makes it a dead letter and stores
//!   it through [`ForwardSink`]'s dead-letter path below (`/v1/rows`, which needs a key with
//!   role `"sdk"`; with a `"client"` key that fails and the event is counted dropped,
//!   `dead_letter_failed`, with the collector's message: never lost silently). Whole-request
//!   failures, retries, `bad_answer` and the spool are as for rows; failed events are spooled
//!   as raw records and replayed the same way. A destination that some SDK `[[transforms]]`
//!   entry applies to sends rows (its transforms need the parsed event).
//! - `"rows"`: events validated and converted by the SDK, as rows to `POST <url>/v1/rows`
//!   (key role `"sdk"`). The contract below is this format's; rows spooled by it are replayed
//!   this way whatever the format.
//!
//! Contract of `/v1/rows` (same shape as the BigQuery sink):
//! - A batch is split into requests of at most `max_rows_per_request` rows; up to `workers`
//!   requests are in flight at once on a current-thread tokio runtime owned by the flush thread,
//!   over keep-alive connections. Bodies are compressed by `compression`
//!   ([`Compression`]: zstd by default unless every collector is on loopback; a collector
//!   that answers 415 to zstd is sent gzip from then on, the same request at once). The API key goes
//!   in `Authorization: Bearer <key>`.
//! - Only the collector's answer counts (see [`wire::RowsAnswer`]): a 2xx whose body is a JSON
//!   object with `accepted` equal to the rows plus dead letters sent means the collector has them
//!   in its write-ahead log. Rows listed in its `refused` were stored as dead letters by the
//!   collector: they are reported `rejected_stored` (counted rejected, not sent again); the other
//!   rows count as delivered here (the collector counts them again on its side).
//! - Any other answer is a failure whose error names the URL, the status and an excerpt of the
//!   body. A 2xx that is not the collector's answer (a web server or proxy answering 204, an HTML
//!   page, a wrong count) is not retried (kind `bad_answer`): a wrong server does not become
//!   right, so the rows are reported failed (the pipeline spools them, or drops and counts them),
//!   never delivered. Redirects are not followed (kind `http_3xx`, not retried).
//! - Retries: exponential backoff with full jitter (`[retry]`) on connect errors, timeouts,
//!   dropped connections, 408, 429 and 5xx (a collector being redeployed behind a proxy answers
//!   502 for a while); `Retry-After` is honoured. Other 4xx answers are not retried. What is left
//!   after `max_attempts` is reported failed (the pipeline spools it).
//! - Dead letters (events the SDK rejected) are sent in the same request format and stored by the
//!   collector through its own sink's dead-letter path; its answer is checked the same way.
//! - The URL is checked when the config is read ([`ForwardConfig::validate`]) and again when the
//!   sink is built: a base URL, not an endpoint.
//!
//! Several collectors (`urls` instead of `url`; both formats): each attempt goes to the
//! collector `sink/nodes.rs` picks, round-robin over the ones up. An attempt that
//! fails for a reason of the collector's (connect error, timeout, dropped connection, 5xx, 429)
//! puts it down for a backoff (`[retry]`'s `base` plus full jitter growing with its consecutive
//! failures, up to `cap`, at least its `Retry-After`; counted once per fall as sink error kind
//! `url_down`), after which it gets a request again (a probe). The failed request goes to
//! another collector that is up at once, without a backoff; that is one of its
//! `retry.max_attempts` and its events count `retried`. When none is up, `[retry]`'s backoff
//! and the spool apply as with one URL. While the pipeline probes, one attempt per collector.
//! A request a collector stored but did not answer (killed in between) is sent again and stored
//! twice: delivery is at least once, duplicates carry the same event id (BigQuery's insertId,
//! OpenSearch's `_id`), see docs/operations.md. Other failures (4xx, `bad_answer`) are the
//! request's, not the collector's: not retried elsewhere.
//!
//! Wire format: [`wire`], the `POST /v1/rows` request and answer, shared with the collector,
//! and the `/v1/batch` lines and answer.
//! Settings: `[sink.forward]` ([`ForwardConfig`]); retries: `[retry]`, by the policy every HTTP
//! sink shares (`sink/http.rs`).

mod config;
mod events;
#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod failover_tests;
mod report;
mod sink;
#[cfg(test)]
mod tests;
pub mod wire;

pub use self::config::{Compression, ForwardConfig, ForwardFormat, Gzip};
pub use self::sink::ForwardSink;
