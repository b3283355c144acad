//! The flush thread for a sink that takes events as they were logged (the forward sink's
//! `format = "events"`, [`Sink::takes_events`]): no validation here. Events taken from the lanes
//! (or the inbox, or a replayed raw spool record) are routed as usual (`[[routes]]`: `unrouted`
//! is still decided here), then kept as they are in [`Pending`], batched by `batch.max_rows`,
//! `batch.max_bytes` of body text and `batch.max_age`, and handed to the sink, which frames,
//! compresses and sends them; the destination validates them.
//!
//! What the sink reports is counted as for rows ([`ingest::deliver_events`]): delivered; stored
//! as dead letters by the destination (rejected, by its reason); refused without being kept
//! (made a dead letter here and stored through the sink's dead-letter path, like a row this
//! thread rejects, so it is rejected when stored, else spooled or dropped `dead_letter_failed`);
//! failed (spooled as a raw record, replayed the same way; without a spool dropped
//! `sink_error`). The breaker and probes are the rows' own.
//!
//! The choice is made once per destination when its thread starts: the sink must take events
//! and no `[[transforms]]` entry may apply to the destination's copies (no `destinations`, or
//! naming it): the SDK's transforms need the parsed event, so such a destination gets rows.

use std::time::{Duration, Instant};

use super::Worker;
use crate::counters::DropReason;
use crate::ingest::{self, Processor, RawEvent};
use crate::sink::Sink;

/// Events waiting to be sent as they are, batched.
#[derive(Debug)]
pub(super) struct Pending {
    open: Vec<RawEvent>,
    /// Body bytes in `open`.
    bytes: usize,
    /// When the first event of `open` came, or earlier: a lower bound
    /// ([`Pending::set_arrivals_from`]), so the age it gives is never short.
    since: Option<Instant>,
    /// What a batch opened from now on counts its age from (`None`: the moment it opens).
    arrivals_from: Option<Instant>,
    /// Closed batches, oldest first.
    ready: Vec<Vec<RawEvent>>,
    max_rows: usize,
    max_bytes: usize,
    /// This thread's buffers for the copies, back from delivered batches: a copy reuses one
    /// instead of a `malloc` here and a `free` after delivery (~180 instructions per event,
    /// `tests/examples/forward_callgrind.sh`). At most [`SPARE_BUFFERS`], each at most
    /// [`SPARE_MAX_CAPACITY`]: what a batch in flight held anyway.
    spare: Vec<String>,
}

/// Most copy buffers [`Pending`] keeps for reuse (a wake-up's worth of events).
const SPARE_BUFFERS: usize = 512;
/// Larger copies are freed after delivery, so one huge event does not pin memory.
const SPARE_MAX_CAPACITY: usize = 4096;

impl Pending {
    /// Batches for `sink` if it takes events and no transform applies to `destination`'s
    /// copies; `None`: rows.
    pub(super) fn for_sink(
        sink: &dyn Sink,
        processor: &Processor,
        destination: &str,
        max_rows: usize,
        max_bytes: usize,
    ) -> Option<Self> {
        if !sink.takes_events() || processor.transforms().touches(destination) {
            return None;
        }
        Some(Self {
            open: Vec::new(),
            bytes: 0,
            since: None,
            arrivals_from: None,
            ready: Vec::new(),
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            spare: Vec::new(),
        })
    }

    /// Keeps `raw` to send as it is and returns the producer's body buffer for reuse.
    ///
    /// What is kept is a copy of the body made here: the producer's buffer goes back to the pool
    /// at once instead of after the batch is delivered (up to `batch.max_age` and a round trip
    /// later). Held until then, a burst emptied the pool, so the producer (a PHP page) allocated
    /// every body afresh and this thread freed them into the producer's malloc arena: contended
    /// arena locks on the page's path and a heap that grew with the backlog. The copy is
    /// allocated and freed by this thread only, and its buffer reused once its batch is done
    /// ([`Pending::reuse`]).
    pub(super) fn keep(&mut self, mut raw: RawEvent) -> String {
        let copy = match self.spare.pop() {
            Some(mut spare) => {
                spare.clear();
                spare.push_str(&raw.body);
                spare
            }
            None => raw.body.as_str().to_owned(),
        };
        let producers = std::mem::replace(&mut raw.body, copy);
        self.add(raw);
        producers
    }

    fn add(&mut self, raw: RawEvent) {
        if self.open.is_empty() {
            self.since = Some(self.arrivals_from.unwrap_or_else(Instant::now));
            self.open.reserve(self.max_rows.min(4096));
        }
        self.bytes += raw.body.len();
        self.open.push(raw);
        if self.open.len() >= self.max_rows || self.bytes >= self.max_bytes {
            self.close();
        }
    }

    fn close(&mut self) {
        if !self.open.is_empty() {
            self.ready.push(std::mem::take(&mut self.open));
        }
        self.bytes = 0;
        self.since = None;
    }

    /// Takes back the copies of a batch that is done with (delivered, spooled or dropped).
    fn reuse(&mut self, events: Vec<RawEvent>) {
        for raw in events {
            if self.spare.len() >= SPARE_BUFFERS {
                break;
            }
            if raw.body.capacity() <= SPARE_MAX_CAPACITY {
                self.spare.push(raw.body);
            }
        }
    }

    /// Events kept from now on came no earlier than `from` (as
    /// [`crate::ingest::Batcher::set_arrivals_from`]).
    pub(super) fn set_arrivals_from(&mut self, from: Instant) {
        self.arrivals_from = Some(from);
    }

    /// When the oldest waiting event came (`None`: none waits).
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.since
    }
}

impl Worker {
    /// The oldest row or event waiting to be sent.
    pub(super) fn oldest(&self) -> Option<Instant> {
        let events = self.events.as_ref().and_then(Pending::oldest);
        match (self.batcher.oldest(), events) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes the open batch of events if it is older than `max_age` (`None`: whatever its age).
    pub(super) fn close_events(&mut self, now: Instant, max_age: Option<Duration>) {
        if let Some(p) = &mut self.events {
            if max_age.is_none_or(|age| p.since.is_some_and(|t| now >= t + age)) {
                p.close();
            }
        }
    }

    /// Hands the closed batches of events to the sink.
    pub(super) fn ship_events(&mut self) {
        let ready = match &mut self.events {
            Some(p) if !p.ready.is_empty() => std::mem::take(&mut p.ready),
            _ => return,
        };
        for batch in ready {
            self.deliver_events(batch);
        }
    }

    /// At shutdown past the deadline: the events still waiting go to the spool (or are dropped,
    /// counted). True when there were none.
    pub(super) fn spool_pending_events(&mut self) -> bool {
        let ready = match &mut self.events {
            Some(p) => {
                p.close();
                std::mem::take(&mut p.ready)
            }
            None => return true,
        };
        let none = ready.is_empty();
        for batch in ready {
            self.spool_raw(&batch, DropReason::ShutdownDeadline);
        }
        none
    }

    /// Delivers one batch of events, counting outcomes (see the module docs); then its copies'
    /// buffers go back to [`Pending`] for reuse.
    fn deliver_events(&mut self, events: Vec<RawEvent>) {
        self.deliver_events_in(&events);
        if let Some(p) = &mut self.events {
            p.reuse(events);
        }
    }

    fn deliver_events_in(&mut self, events: &[RawEvent]) {
        if self.spool.is_some() && self.breaker.is_open(Instant::now()) {
            self.spool_raw(events, DropReason::SinkError);
            return;
        }
        if let Some(kind) = self.sink_broken {
            self.counters.sink_error("unavailable", kind);
        }
        self.sink.set_probe(self.stopping || self.breaker.probing());
        let outcome = ingest::deliver_events(self.sink.as_mut(), events, &self.counters);
        self.sink.set_probe(false);
        self.report.rejected(&outcome.rejected_stored);
        for r in outcome.refused {
            if let Some(raw) = events.get(r.index) {
                let dead = self
                    .parts
                    .processor
                    .load()
                    .refused(raw, r.reason, r.field, r.error);
                self.rejects.push(*dead);
            }
        }
        let all_ok = outcome.failed.is_empty();
        let message = outcome
            .error
            .as_ref()
            .map_or_else(|| "delivery failed".into(), ToString::to_string);
        // Without a spool, events a shutdown cut off (the sink gave up at the deadline) are
        // counted as such, not as the sink's failure (as for rows, `deliver_batches`).
        let reason = if self.st.stop.past_deadline() {
            DropReason::ShutdownDeadline
        } else {
            DropReason::SinkError
        };
        for range in outcome.failed {
            let Some(failed) = events.get(range) else {
                continue;
            };
            if self.spool.is_some() {
                self.spool_raw(failed, DropReason::SinkError);
            } else {
                self.dropped(reason, failed.len() as u64, message.clone());
            }
        }
        if all_ok {
            self.breaker.reset();
        } else if self.spool.is_some() {
            self.breaker.trip(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(max_rows: usize) -> Pending {
        Pending {
            open: Vec::new(),
            bytes: 0,
            since: None,
            arrivals_from: None,
            ready: Vec::new(),
            max_rows,
            max_bytes: usize::MAX,
            spare: Vec::new(),
        }
    }

    fn event(i: usize, body: String) -> RawEvent {
        RawEvent::numbered(i, body)
    }

    fn text(i: usize) -> String {
        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50))
    }

    #[test]
    fn copies_reuse_delivered_buffers_and_keep_each_events_text() {
        let mut p = pending(4);
        for round in 0..3 {
            for i in 0..8 {
                let n = round * 8 + i;
                let producers = p.keep(event(n, text(n)));
                // The producer's buffer comes back with its text, for the pool to clear.
                assert_eq!(producers, text(n));
            }
            let ready = std::mem::take(&mut p.ready);
            assert_eq!(ready.len(), 2, "two full batches of 4");
            for (b, batch) in ready.iter().enumerate() {
                for (i, raw) in batch.iter().enumerate() {
                    let n = round * 8 + b * 4 + i;
                    assert_eq!(raw.body, text(n), "round {round}");
                    assert_eq!(raw.received_at, n as i64);
                }
            }
            let kept: Vec<*const u8> = ready.iter().flatten().map(|r| r.body.as_ptr()).collect();
            for batch in ready {
                p.reuse(batch);
            }
            assert_eq!(p.spare.len(), 8);
            // The next copies are written into these buffers, not new ones.
            let next = p.keep(event(100, text(1)));
            assert_eq!(next, text(1));
            assert!(kept.contains(&p.open[0].body.as_ptr()));
            p.open.clear();
        }
    }

    #[test]
    fn spare_buffers_are_bounded_in_number_and_size() {
        let mut p = pending(usize::MAX);
        let big = "y".repeat(SPARE_MAX_CAPACITY + 1);
        let batch: Vec<RawEvent> = (0..SPARE_BUFFERS + 10)
            .map(|i| event(i, if i % 2 == 0 { big.clone() } else { text(i) }))
            .collect();
        p.reuse(batch);
        assert!(p.spare.iter().all(|s| s.capacity() <= SPARE_MAX_CAPACITY));
        assert_eq!(p.spare.len(), (SPARE_BUFFERS + 10) / 2);
        let many: Vec<RawEvent> = (0..2 * SPARE_BUFFERS).map(|i| event(i, text(i))).collect();
        p.reuse(many);
        assert_eq!(p.spare.len(), SPARE_BUFFERS);
    }
}
