//! Sinks: where batches of validated rows go.
//!
//! # The contract
//!
//! The flush thread owns its sink (one per process, built again in a forked child by the
//! [`SinkFactory`]), hands it every batch that is due in one call (so a sink may send several
//! requests at once), and counts outcomes only from what the sink reports:
//!
//! - `delivered`: rows the destination acknowledged;
//! - `rejected`: rows the destination refused for good (they go to the dead-letter table);
//! - `rejected_stored`: rows the destination refused and stored as dead letters itself (counted
//!   rejected, not dead-lettered again);
//! - `failed`: rows not delivered within the sink's retry budget, with the error (the pipeline
//!   spools or drops them, counted).
//!
//! Dead letters ([`Sink::store_dead_letters`]) have the same three outcomes: stored in the
//! dataset's dead-letter table (counted `rejected`), refused for good by that table (counted
//! dropped, `dead_letter_failed`), or failed for now (the table cannot be written: the SDK keeps
//! them in its spool and the collector in its write-ahead log, and both try again later).
//!
//! A sink may instead take events as they were logged ([`Sink::takes_events`],
//! [`Sink::deliver_events`]: the forward sink with `format = "events"`, whose collector
//! validates them); its report ([`EventsOutcome`]) has the same outcomes, by position, plus the
//! events the destination refused without keeping them, which the pipeline dead-letters.
//!
//! A sink must not retry forever and must not panic on bad data. The collector's streamers use
//! the same sinks through the same [`Sink`] trait and [`SinkFactory`].
//!
//! # The shape of a sink
//!
//! A sink is a folder `core/src/sink/<name>/` with the same files:
//!
//! - `mod.rs`: the module doc (what the sink promises, how it behaves on failure, its wire or
//!   on-disk format), then `mod config; mod sink;` and `pub use` of the config and sink types;
//! - `config.rs`: `<Name>Config`, the `[sink.<name>]` section: serde, `deny_unknown_fields`,
//!   `default`, a doc comment on every field, `Default`, and `validate()` with the section's
//!   rules, returning [`ConfigError`](crate::config::ConfigError) that names the key (it takes
//!   `selected: bool` when a key is required only while `sink.kind` names this sink: every
//!   sink's section is checked, selected or not);
//! - `sink.rs`: the sink type, `new(&config, …) -> Result<Self, SinkError>` (checks what it can
//!   at startup) and `impl Sink`;
//! - `tests.rs`: its unit tests, when it has some;
//! - whatever else it needs, one concern per file (BigQuery: `request.rs` bodies, `service.rs`
//!   the calls and their answers; forward: `wire.rs`, the format it shares with the collector).
//!
//! Beside the folders: this file (the contract and the types every sink shares), `factory.rs`
//! (`[sink]`: the list of sinks, their configs, the factory), `http.rs` (what HTTP sinks
//! share) and `nodes.rs` (several base URLs behind one sink: round-robin over the healthy ones,
//! a backoff for the failed ones; the forward and OpenSearch sinks). A sink imports from `crate::config` only the leaf types (`config::units`, `config::retry`,
//! `config::error`); the configuration imports the sinks' configs, never the other way round.
//! Sinks that talk HTTP take their retry budget, status rules, `Retry-After`, runtime and gzip
//! from `http.rs`, and keep only their own answers and labels.
//!
//! To add one: copy `null/` to `<name>/`, rename the types, add `pub mod <name>;` here, then in
//! `factory.rs` a [`SinkKind`] variant, a field of [`SinkConfig`], its `validate()` call and its
//! arm in [`factory`]. A key that defaults to absent (an `Option`) also goes in `OPTIONAL_LEAVES`
//! in `config.rs`, so that `EVLOG_*` can set it; the PHP binding names its php.ini settings in
//! `bindings/php/src/ini.rs`. `memory/` has the same shape but no kind: it is a test sink that a
//! host builds itself ([`memory::MemoryStore::factory`]).

pub mod bigquery;
mod factory;
pub mod file;
mod follow;
pub mod forward;
pub(crate) mod http;
pub mod memory;
pub(crate) mod nodes;
pub mod null;
pub mod opensearch;
mod stop;

use serde_json::json;
use thiserror::Error;

pub use self::factory::{factory, SinkConfig, SinkFactory, SinkKind};
/// Request body compression, as the HTTP sinks do it (public for benchmarks).
pub use self::http::Encoding;
pub use self::stop::StopSignal;
use crate::ingest::RawEvent;
use crate::routing::Destination;
use crate::time;

/// One row ready for a destination: BigQuery's `insertId` and the row as JSON object text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRow {
    /// The event id, used as `insertId` so BigQuery drops duplicates from retries.
    pub insert_id: String,
    /// The row, one JSON object, no trailing newline.
    pub json: String,
}

/// Rows for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Where the rows go.
    pub destination: Destination,
    /// The rows, in arrival order.
    pub rows: Vec<EncodedRow>,
    /// Sum of the rows' JSON lengths.
    pub bytes: usize,
}

/// An event that cannot be stored in its table, with why. Kept in the dataset's dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    /// The dataset whose dead-letter table receives it.
    pub dataset: String,
    /// The event id.
    pub event_id: String,
    /// Envelope namespace.
    pub namespace: String,
    /// Envelope type.
    pub type_name: String,
    /// Event time (µs), if known.
    pub event_time: Option<i64>,
    /// When evlog received it (µs).
    pub received_at: i64,
    /// Short label, also the `reason` of `evlog_events_rejected_total`.
    pub reason: &'static str,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// The full error message.
    pub error: String,
    /// The raw event: the envelope as JSON text (or the row, when the sink rejected it).
    pub raw: String,
}

/// Schema of the dead-letter table (BigQuery JSON schema format). evlog owns this table: the
/// BigQuery sink creates it (ingestion-time partitioned by day) when it is missing, whatever
/// `create_tables` says. README.md documents each column.
pub const DEAD_LETTER_SCHEMA: &str = r#"[
  {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
  {"name": "namespace", "type": "STRING", "mode": "REQUIRED"},
  {"name": "type", "type": "STRING", "mode": "REQUIRED"},
  {"name": "event_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
  {"name": "received_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
  {"name": "rejected_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
  {"name": "reason", "type": "STRING", "mode": "REQUIRED"},
  {"name": "field", "type": "STRING", "mode": "NULLABLE"},
  {"name": "error", "type": "STRING", "mode": "REQUIRED"},
  {"name": "raw", "type": "STRING", "mode": "REQUIRED"}
]"#;

impl RejectedEvent {
    /// A row the destination refused for good, as a dead letter. The row knows its destination,
    /// not its envelope: namespace and type are the destination's dataset and table; the times
    /// are the row's `event_time` and `received_at` (or `now`); `raw` is the row.
    pub fn refused_row(
        destination: &Destination,
        row: EncodedRow,
        reason: &'static str,
        field: Option<String>,
        error: String,
        now: i64,
    ) -> Self {
        let parsed: Option<serde_json::Value> = serde_json::from_str(&row.json).ok();
        let time = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(serde_json::Value::as_str)
                .and_then(|t| time::parse_timestamp(t).ok())
        };
        RejectedEvent {
            dataset: destination.dataset.to_string(),
            event_id: row.insert_id,
            namespace: destination.dataset.to_string(),
            type_name: destination.table.to_string(),
            event_time: time(crate::schema::EVENT_TIME),
            received_at: time(crate::schema::RECEIVED_AT).unwrap_or(now),
            reason,
            field,
            error,
            raw: row.json,
        }
    }

    /// The dead-letter row (see [`DEAD_LETTER_SCHEMA`]) as JSON object text.
    pub fn to_row_json(&self, rejected_at: i64) -> String {
        let mut row = json!({
            "event_id": self.event_id,
            "namespace": self.namespace,
            "type": self.type_name,
            "received_at": time::format_timestamp(self.received_at),
            "rejected_at": time::format_timestamp(rejected_at),
            "reason": self.reason,
            "error": self.error,
            "raw": self.raw,
        });
        if let Some(t) = self.event_time {
            row["event_time"] = json!(time::format_timestamp(t));
        }
        if let Some(f) = &self.field {
            row["field"] = json!(f);
        }
        row.to_string()
    }
}

/// What became of one batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Rows acknowledged.
    pub delivered: usize,
    /// Rows refused for good by the destination (the pipeline stores them with `dead_letter`).
    pub rejected: Vec<RejectedEvent>,
    /// Rows the destination refused and already stored in its own dead-letter table (the
    /// collector does, for the forward sink): counted rejected, never handed to `dead_letter`.
    pub rejected_stored: Vec<RejectedEvent>,
    /// Rows not delivered within the retry budget.
    pub failed: Vec<EncodedRow>,
    /// Why `failed` is not empty (or the last error seen).
    pub error: Option<SinkError>,
    /// Rows that were sent more than once before the outcome.
    pub retried: usize,
    /// The `kind` of every failed attempt, retried ones included (for `evlog_sink_errors_total`).
    pub attempt_errors: Vec<&'static str>,
}

impl BatchOutcome {
    /// Everything delivered.
    pub fn delivered(n: usize) -> Self {
        Self {
            delivered: n,
            ..Self::default()
        }
    }

    /// Nothing delivered: all rows failed with `error`.
    pub fn failed(rows: Vec<EncodedRow>, error: SinkError) -> Self {
        Self {
            failed: rows,
            error: Some(error),
            ..Self::default()
        }
    }
}

/// What became of events handed to [`Sink::deliver_events`] as they were logged (indexes are
/// positions in the slice handed over).
#[derive(Debug, Default)]
pub struct EventsOutcome {
    /// Events the destination took (checked and stored, or kept for later by it).
    pub delivered: usize,
    /// Events the destination refused and stored as dead letters itself: counted rejected,
    /// never handed to `dead_letter`.
    pub rejected_stored: Vec<RejectedEvent>,
    /// Events the destination refused for good *without* keeping them (the pipeline dead-letters
    /// them itself): index, reason label, field at fault, the destination's message.
    pub refused: Vec<RefusedEvent>,
    /// Events not delivered within the retry budget (the pipeline spools or drops them).
    pub failed: Vec<std::ops::Range<usize>>,
    /// Why `failed` is not empty (or the last error seen).
    pub error: Option<SinkError>,
    /// Events that were sent more than once before the outcome.
    pub retried: usize,
    /// The `kind` of every failed attempt, retried ones included.
    pub attempt_errors: Vec<&'static str>,
}

/// One event a destination refused without keeping it (see [`EventsOutcome::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// Position in the events handed over.
    pub index: usize,
    /// Reason label (the destination's, interned).
    pub reason: &'static str,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// The destination's message.
    pub error: String,
}

/// What became of dead letters handed to [`Sink::store_dead_letters`].
#[derive(Debug, Default)]
pub struct DeadLetterOutcome {
    /// Stored in their dead-letter tables.
    pub stored: Vec<RejectedEvent>,
    /// Refused for good by the dead-letter table (e.g. a row it finds invalid), with its message:
    /// trying again cannot help.
    pub refused: Vec<(RejectedEvent, String)>,
    /// Not stored for now (table unreachable, no permission, out of retries): keep and retry.
    pub failed: Vec<RejectedEvent>,
    /// Why `failed` is not empty.
    pub error: Option<SinkError>,
}

impl DeadLetterOutcome {
    /// Everything stored.
    pub fn stored(events: Vec<RejectedEvent>) -> Self {
        Self {
            stored: events,
            ..Self::default()
        }
    }

    /// Nothing stored: all failed with `error`.
    pub fn failed(events: Vec<RejectedEvent>, error: SinkError) -> Self {
        Self {
            failed: events,
            error: Some(error),
            ..Self::default()
        }
    }

    /// As [`Sink::dead_letter`] answers: the failure if some failed, else the first refusal
    /// (as a remote error of kind `refused_kind`), else `Ok`.
    pub fn into_result(self, refused_kind: &'static str) -> Result<(), SinkError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.refused.into_iter().next() {
            Some((_, message)) => Err(SinkError::Remote {
                kind: refused_kind,
                message,
            }),
            None => Ok(()),
        }
    }
}

/// A `'static` label for a rejection reason read back from disk or the wire (counters take
/// static labels). Reasons are few; past a bound, unknown ones share one label so memory stays
/// bounded.
pub fn intern_reason(reason: &str) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = seen.iter().find(|s| **s == reason) {
        return s;
    }
    if seen.len() >= 64 || reason.len() > 64 {
        return "forwarded_other";
    }
    let s: &'static str = Box::leak(reason.to_string().into_boxed_str());
    seen.push(s);
    s
}

/// Sink errors. `kind()` is the `kind` label of `evlog_sink_errors_total`.
#[derive(Debug, Error)]
pub enum SinkError {
    /// A file could not be written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sink is misconfigured.
    #[error("sink configuration: {0}")]
    Config(String),
    /// The destination answered with an error (or did not answer).
    #[error("{message}")]
    Remote {
        /// Metrics label, e.g. `http_5xx`, `timeout`, `connect`.
        kind: &'static str,
        /// What happened, with the status and BigQuery's reason and message.
        message: String,
    },
    /// Anything else the destination reported.
    #[error("{0}")]
    Other(String),
}

impl SinkError {
    /// Metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Io { .. } => "io",
            SinkError::Config(_) => "config",
            SinkError::Remote { kind, .. } => kind,
            SinkError::Other(_) => "other",
        }
    }
}

/// A destination for batches. See the module docs for the contract.
pub trait Sink: Send {
    /// Short name for metrics (`file`, `bigquery`, …).
    fn name(&self) -> &'static str;

    /// Delivers the batches; returns one outcome per batch, in order.
    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome>;

    /// Whether this sink takes events as they were logged ([`Sink::deliver_events`]) instead of
    /// validated rows: the flush thread then hands it events without processing them. Only the
    /// forward sink with `format = "events"` does.
    fn takes_events(&self) -> bool {
        false
    }

    /// Delivers events as they were logged (envelope and body text, not validated); the
    /// destination validates them. Called only when [`Sink::takes_events`] says so; the default
    /// fails them all.
    fn deliver_events(&mut self, events: &[RawEvent]) -> EventsOutcome {
        EventsOutcome {
            failed: std::iter::once(0..events.len()).collect(),
            error: Some(SinkError::Config(format!(
                "the {} sink takes rows, not events",
                self.name()
            ))),
            ..EventsOutcome::default()
        }
    }

    /// Stores rejected events in their datasets' dead-letter tables, all or nothing.
    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError>;

    /// Stores rejected events in their datasets' dead-letter tables and says what became of each
    /// (see [`DeadLetterOutcome`]). The default is all or nothing through [`Sink::dead_letter`];
    /// a sink that can tell partial outcomes apart (BigQuery) overrides it.
    fn store_dead_letters(&mut self, events: Vec<RejectedEvent>) -> DeadLetterOutcome {
        match self.dead_letter(&events) {
            Ok(()) => DeadLetterOutcome::stored(events),
            Err(e) => DeadLetterOutcome::failed(events, e),
        }
    }

    /// While `probe` is set, make a single attempt per request: the destination has been failing
    /// and the pipeline only wants to know whether it is back (what fails goes to the spool).
    fn set_probe(&mut self, probe: bool) {
        let _ = probe;
    }

    /// Gives the sink the pipeline's shutdown signal: once it is raised, make no more retries
    /// and let no attempt run past its deadline (see [`StopSignal`]). A sink whose calls are
    /// quick (file, memory) may ignore it.
    fn watch_stop(&mut self, stop: std::sync::Arc<StopSignal>) {
        let _ = stop;
    }

    /// How often this sink wants the process's own counters ([`Sink::report`]); `None` (the
    /// default): never.
    fn report_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Hands the process's counters to the destination (the forward sink posts them to its
    /// collector, `POST /v1/report`); `last` at shutdown. Best effort and bounded: a report
    /// that fails is not retried, the next one carries the totals.
    fn report(&mut self, stats: &crate::counters::Stats, last: bool) {
        let _ = (stats, last);
    }

    /// Makes everything written so far durable and releases resources.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
