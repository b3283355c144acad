//! Handing batches and dead letters to a sink, and counting what it reports (see the module docs
//! of [`crate::ingest`] for which counters move).

use std::time::Instant;

use super::RawEvent;
use crate::counters::{Counters, DropReason};
use crate::routing::Destination;
use crate::sink::{
    Batch, DeadLetterOutcome, EncodedRow, EventsOutcome, RejectedEvent, Sink, SinkError,
};

/// What became of a delivery round, counted; what is left to do with it is the caller's.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Rows acknowledged per destination (only destinations with some).
    pub delivered: Vec<(Destination, usize)>,
    /// Rows the destination refused for good: store them as dead letters
    /// ([`store_dead_letters`]).
    pub rejected: Vec<RejectedEvent>,
    /// Rows the destination refused and stored as dead letters itself: counted rejected
    /// already, never stored again.
    pub rejected_stored: Vec<RejectedEvent>,
    /// Rows not delivered, one batch per destination that failed.
    pub failed: Vec<FailedBatch>,
}

/// Rows the sink did not deliver within its retry budget.
#[derive(Debug)]
pub struct FailedBatch {
    /// The rows, as a batch for their destination (to spool or to try again).
    pub batch: Batch,
    /// What the sink reported, if anything.
    pub error: Option<SinkError>,
}

impl FailedBatch {
    /// What went wrong, for people: the sink's error, or that the delivery failed.
    pub fn message(&self) -> String {
        self.error
            .as_ref()
            .map_or_else(|| "delivery failed".into(), ToString::to_string)
    }
}

/// Hands `batches` to `sink` in one call and counts its report in `counters`: the call's
/// duration; per batch the rows delivered and retried, every failed attempt's error kind (or,
/// when the sink reports no attempts, the final error's), and the rows the destination stored
/// as dead letters itself. Rows to dead-letter and rows that failed are returned, not counted.
pub fn deliver(sink: &mut dyn Sink, batches: Vec<Batch>, counters: &Counters) -> Delivery {
    let dests: Vec<Destination> = batches.iter().map(|b| b.destination.clone()).collect();
    let started = Instant::now();
    let outcomes = sink.deliver(batches);
    counters.observe_flush(started.elapsed());
    let name = sink.name();
    let mut out = Delivery::default();
    for (o, dest) in outcomes.into_iter().zip(dests) {
        count_report(
            counters,
            name,
            o.delivered,
            o.retried,
            &o.attempt_errors,
            o.error.as_ref(),
            &o.rejected_stored,
        );
        out.rejected.extend(o.rejected);
        out.rejected_stored.extend(o.rejected_stored);
        if o.failed.is_empty() {
            if o.delivered > 0 {
                out.delivered.push((dest, o.delivered));
            }
            continue;
        }
        if o.delivered > 0 {
            out.delivered.push((dest.clone(), o.delivered));
        }
        out.failed.push(FailedBatch {
            batch: batch_of(dest, o.failed),
            error: o.error,
        });
    }
    out
}

/// Hands events as they were logged to `sink` ([`Sink::deliver_events`]) and counts its report
/// as [`deliver`] does: the call's duration, events delivered and retried, attempt errors, and
/// the events the destination stored as dead letters itself (rejected, by reason). Events it
/// refused without keeping them (`refused`: to dead-letter) and those that failed are returned,
/// not counted.
pub fn deliver_events(
    sink: &mut dyn Sink,
    events: &[RawEvent],
    counters: &Counters,
) -> EventsOutcome {
    let started = Instant::now();
    let o = sink.deliver_events(events);
    counters.observe_flush(started.elapsed());
    let name = sink.name();
    count_report(
        counters,
        name,
        o.delivered,
        o.retried,
        &o.attempt_errors,
        o.error.as_ref(),
        &o.rejected_stored,
    );
    if !o.refused.is_empty() {
        counters.sink_error(name, "event_refused");
    }
    o
}

/// Hands dead letters to `sink` ([`Sink::store_dead_letters`]) and counts its report in
/// `counters`: those stored as rejected (by reason); those refused for good as dropped
/// (`dead_letter_failed`) with a `dead_letter_invalid` sink error; for those failed, the error's
/// kind. Returns the report, with an error whenever some failed (the caller keeps those).
pub fn store_dead_letters(
    sink: &mut dyn Sink,
    events: Vec<RejectedEvent>,
    counters: &Counters,
) -> DeadLetterOutcome {
    let mut o = sink.store_dead_letters(events);
    let name = sink.name();
    for r in &o.stored {
        counters.reject(r.reason, 1);
    }
    if !o.refused.is_empty() {
        counters.sink_error(name, "dead_letter_invalid");
        counters.drop_events(DropReason::DeadLetterFailed, o.refused.len() as u64);
    }
    if o.failed.is_empty() {
        o.error = None;
    } else {
        let e = o
            .error
            .get_or_insert_with(|| SinkError::Other("dead letters not stored".into()));
        counters.sink_error(name, e.kind());
    }
    o
}

/// Rows for one destination as a batch.
fn batch_of(destination: Destination, rows: Vec<EncodedRow>) -> Batch {
    Batch {
        bytes: rows.iter().map(|r| r.json.len()).sum(),
        destination,
        rows,
    }
}

/// Counts what one sink report says, the same for rows and events: delivered, retried, each
/// attempt's error kind (or the final error's when no attempt was made), and what the
/// destination stored as dead letters itself (rejected, by reason).
fn count_report(
    counters: &Counters,
    sink: &'static str,
    delivered: usize,
    retried: usize,
    attempt_errors: &[&'static str],
    error: Option<&SinkError>,
    rejected_stored: &[RejectedEvent],
) {
    counters.deliver(delivered as u64);
    counters.retry(retried as u64);
    for kind in attempt_errors {
        counters.sink_error(sink, kind);
    }
    if let (Some(e), true) = (error, attempt_errors.is_empty()) {
        counters.sink_error(sink, e.kind());
    }
    for r in rejected_stored {
        counters.reject(r.reason, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PartitionKind;
    use crate::sink::BatchOutcome;

    /// Answers with what it is given.
    struct Scripted {
        batches: Vec<BatchOutcome>,
        dead_letters: Option<DeadLetterOutcome>,
    }

    impl Sink for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn deliver(&mut self, _: Vec<Batch>) -> Vec<BatchOutcome> {
            std::mem::take(&mut self.batches)
        }
        fn dead_letter(&mut self, _: &[RejectedEvent]) -> Result<(), SinkError> {
            Ok(())
        }
        fn store_dead_letters(&mut self, _: Vec<RejectedEvent>) -> DeadLetterOutcome {
            self.dead_letters.take().unwrap_or_default()
        }
    }

    fn dest(t: &str) -> Destination {
        Destination {
            dataset: "events".into(),
            table: t.into(),
            partitioning: PartitionKind::DayShard,
            day: "20261122".into(),
        }
    }

    fn row(id: &str) -> EncodedRow {
        EncodedRow {
            insert_id: id.into(),
            json: r#"{"a":1}"#.into(),
        }
    }

    fn rejected(reason: &'static str) -> RejectedEvent {
        RejectedEvent {
            dataset: "events".into(),
            event_id: "x".into(),
            namespace: "events".into(),
            type_name: "t".into(),
            event_time: None,
            received_at: 1,
            reason,
            field: None,
            error: "bad".into(),
            raw: "{}".into(),
        }
    }

    fn batch(t: &str, n: usize) -> Batch {
        batch_of(dest(t), (0..n).map(|i| row(&i.to_string())).collect())
    }

    fn sink_errors(c: &Counters, kind: &str) -> Option<u64> {
        let s = c.snapshot(0);
        s.sink_errors
            .get(&("scripted".to_string(), kind.to_string()))
            .copied()
    }

    #[test]
    fn a_round_is_counted_and_what_is_left_returned() {
        let mut sink = Scripted {
            batches: vec![
                BatchOutcome {
                    delivered: 2,
                    retried: 1,
                    attempt_errors: vec!["http_5xx"],
                    rejected: vec![rejected("invalid_value")],
                    rejected_stored: vec![rejected("missing_required")],
                    ..BatchOutcome::default()
                },
                BatchOutcome {
                    delivered: 1,
                    ..BatchOutcome::failed(
                        vec![row("f1"), row("f2")],
                        SinkError::Other("down".into()),
                    )
                },
            ],
            dead_letters: None,
        };
        let c = Counters::new();
        let d = deliver(&mut sink, vec![batch("a", 4), batch("b", 3)], &c);
        assert_eq!(d.delivered, vec![(dest("a"), 2), (dest("b"), 1)]);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected_stored.len(), 1);
        assert_eq!(d.failed.len(), 1);
        let f = &d.failed[0];
        assert_eq!(
            (f.batch.destination.clone(), f.batch.rows.len()),
            (dest("b"), 2)
        );
        assert_eq!(f.batch.bytes, 2 * r#"{"a":1}"#.len());
        assert_eq!(f.message(), "down");
        let s = c.snapshot(0);
        assert_eq!(s.delivered, 3);
        assert_eq!(s.retried, 1);
        assert_eq!(s.rejected.values().sum::<u64>(), 1, "only the stored one");
        assert_eq!(sink_errors(&c, "http_5xx"), Some(1));
        assert_eq!(sink_errors(&c, "other"), Some(1));
        assert_eq!(s.flush_seconds_buckets.last(), Some(&1), "one call timed");
    }

    #[test]
    fn dead_letters_are_counted_by_outcome() {
        let mut sink = Scripted {
            batches: Vec::new(),
            dead_letters: Some(DeadLetterOutcome {
                stored: vec![rejected("invalid_value"), rejected("invalid_value")],
                refused: vec![(rejected("x"), "refused: bad row".into())],
                failed: vec![rejected("y")],
                error: None,
            }),
        };
        let c = Counters::new();
        let d = store_dead_letters(&mut sink, Vec::new(), &c);
        assert_eq!(d.stored.len(), 2);
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.failed.len(), 1);
        assert_eq!(
            d.error.as_ref().map(ToString::to_string).as_deref(),
            Some("dead letters not stored")
        );
        let s = c.snapshot(0);
        assert_eq!(s.rejected.get("invalid_value"), Some(&2));
        assert_eq!(s.dropped.get("dead_letter_failed"), Some(&1));
        assert_eq!(sink_errors(&c, "dead_letter_invalid"), Some(1));
        assert_eq!(sink_errors(&c, "other"), Some(1));
    }
}
