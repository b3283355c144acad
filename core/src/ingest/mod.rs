//! The seam between taking events and delivering them: process an event, batch rows, deliver a
//! batch, count the outcome. The SDK pipeline's flush thread and the collector's streamers both
//! go through it, so an event is validated, routed, delivered and counted the same way whoever
//! took it.
//!
//! ## Contract
//! - **An event**: the caller checks the envelope (`crate::envelope`'s rules) and builds a
//!   [`RawEvent`] from an [`EventInput`] and the time it received it ([`RawEvent::new`], or
//!   [`RawEvent::refill`] to reuse one buffer); an event without an id gets a UUIDv7 of that
//!   time. It counts the event accepted itself.
//! - **Processing**: [`Processor::process`] validates the body against its table's schema,
//!   converts it and routes it: a [`Destination`](crate::routing::Destination) and a row, or the
//!   [`RejectedEvent`](crate::sink::RejectedEvent) to keep as a dead letter (reasons in
//!   [`reasons`] and the schema's). [`Processor::check_row`] does the same for a row converted
//!   elsewhere. Processing moves no counter.
//! - **Batching**: [`Batcher`] groups rows per destination under `batch.max_rows` and
//!   `batch.max_bytes`.
//! - **Events as logged**: a sink that [takes events](crate::sink::Sink::takes_events) (the
//!   forward sink's `format = "events"`) gets them unprocessed through [`deliver_events`],
//!   counted the same way; the destination validates them. An event it refuses without keeping
//!   becomes a dead letter here ([`Processor::refused`]).
//! - **Sharing the CPU**: a thread that processes a run of events (the flush thread's drain, the
//!   collector's loop over a request) calls [`CpuShare::tick`] after each, so a run yields the
//!   CPU every [`YIELD_AFTER`] to threads waiting on the same core (a web page's).
//! - **Delivery**: [`deliver`] hands batches to a [`Sink`](crate::sink::Sink) in one call and
//!   counts what it reports ([`Delivery`]); [`store_dead_letters`] does the same for dead
//!   letters ([`DeadLetterOutcome`](crate::sink::DeadLetterOutcome), its `error` set whenever
//!   some failed). What the sink could not take now (failed rows, failed dead letters) is
//!   returned uncounted: the caller keeps it (the pipeline in its spool, the collector in its
//!   write-ahead log) or drops it, and counts that.
//!
//! ## Counters moved (`crate::counters`)
//! [`deliver`]:
//! - `evlog_flush_seconds`: one observation, the sink call's duration;
//! - `evlog_events_delivered_total`: rows the sink acknowledged;
//! - `evlog_events_retried_total`: rows the sink sent more than once;
//! - `evlog_sink_errors_total{sink,kind}`: every failed attempt's kind, or the final error's
//!   kind when the sink reports no attempts;
//! - `evlog_events_rejected_total{reason}`: rows the destination stored as dead letters itself
//!   (`rejected_stored`). Rows it refused (`rejected`) are counted when they are stored.
//!
//! [`deliver_events`]: the same, plus `evlog_sink_errors_total{sink,kind="event_refused"}` once
//! per call when the destination refused events without keeping them.
//!
//! [`store_dead_letters`]:
//! - `evlog_events_rejected_total{reason}`: dead letters stored;
//! - `evlog_events_dropped_total{reason="dead_letter_failed"}` and
//!   `evlog_sink_errors_total{sink,kind="dead_letter_invalid"}`: dead letters the table refused
//!   for good;
//! - `evlog_sink_errors_total{sink,kind}`: the error's kind, once, when some failed.
//!
//! With these and the caller's own counts (accepted when taken; spooled, dropped or waiting for
//! what comes back failed), every accepted event ends in exactly one of delivered, rejected or
//! dropped: `accepted = delivered + rejected + dropped + in_flight`.

mod batch;
mod deliver;
mod event;
mod process;
mod share;

pub use self::batch::Batcher;
pub use self::deliver::{deliver, deliver_events, store_dead_letters, Delivery, FailedBatch};
pub(crate) use self::event::EventId;
pub use self::event::{EventInput, RawEvent};
pub use self::process::{reasons, CheckedRow, Processor};
pub use self::share::{CpuShare, YIELD_AFTER};

/// The processor in use (schemas, routing, transforms), shared by whoever converts events and
/// the sinks that create or patch tables from its schemas. A reload (the collector's
/// `SIGHUP` or `POST /admin/reload`, the SDK flush thread noticing changed schema files)
/// builds a new [`Processor`], checks it, then stores it whole: an event is converted by one
/// processor or the other, never a mix.
pub type LiveProcessor = std::sync::Arc<arc_swap::ArcSwap<Processor>>;

/// A [`LiveProcessor`] holding `processor`, until a reload stores another.
pub fn live(processor: std::sync::Arc<Processor>) -> LiveProcessor {
    std::sync::Arc::new(arc_swap::ArcSwap::new(processor))
}
