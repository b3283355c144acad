//! The flush thread: drains the queue, batches per destination, delivers, counts outcomes.
//!
//! It parks when there is nothing to do. While no rows are pending it asks producers to wake it
//! on the first event; while rows are pending it sleeps until the oldest batch's age deadline and
//! asks to be woken only when a full batch (`batch.max_rows` events) is waiting, so a steady
//! producer pays for one wake-up per batch, not per event.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{ErrorSummary, FlushParts, Outcome, ProcState, Request, IDLE_PARK};
use crate::counters::DropReason;
use crate::routing::Destination;
use crate::sink::{Batch, EncodedRow, RejectedEvent, Sink, SinkError};

/// Events processed between checks for requests and due batches.
const DRAIN_CHUNK: usize = 4096;

pub(super) fn spawn(parts: FlushParts, st: Arc<ProcState>) -> std::io::Result<()> {
    let st2 = Arc::clone(&st);
    let handle = std::thread::Builder::new()
        .name("evlog-flush".into())
        .spawn(move || {
            *st2.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
            Worker::new(parts, st2).run();
        })?;
    *st.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    Ok(())
}

/// Settles events still in the queue after the thread stopped: counted as dropped for `reason`.
pub(super) fn drop_leftovers(st: &ProcState, reason: DropReason) {
    let mut events = 0;
    let mut bytes = 0;
    while let Some(e) = st.queue.pop() {
        events += 1;
        bytes += e.body.len() as u64;
    }
    if events > 0 {
        st.release(events, bytes);
        st.counters.drop_events(reason, events);
    }
}

struct Pending {
    rows: Vec<EncodedRow>,
    bytes: usize,
    since: Instant,
}

struct Worker {
    parts: FlushParts,
    st: Arc<ProcState>,
    sink: Result<Box<dyn Sink>, SinkError>,
    pending: HashMap<Destination, Pending>,
    pending_rows: usize,
    ready: Vec<Batch>,
    rejects: Vec<RejectedEvent>,
    /// Summaries for the error hook, sent after each delivery round.
    report: Vec<ErrorSummary>,
    /// Refusals by `log()` already reported: (queue_full, invalid_envelope).
    reported_refusals: (u64, u64),
}

impl Worker {
    fn new(parts: FlushParts, st: Arc<ProcState>) -> Self {
        let sink = (parts.sink_factory)();
        Self {
            parts,
            st,
            sink,
            pending: HashMap::new(),
            pending_rows: 0,
            ready: Vec::new(),
            rejects: Vec::new(),
            report: Vec::new(),
            reported_refusals: (0, 0),
        }
    }

    fn run(mut self) {
        loop {
            let mut flush_waiters = Vec::new();
            let mut shutdown = None;
            while let Ok(req) = self.st.requests.1.try_recv() {
                match req {
                    Request::Flush(tx) => flush_waiters.push(tx),
                    Request::Shutdown { deadline, done } => shutdown = Some((deadline, done)),
                }
            }
            if let Some((deadline, done)) = shutdown {
                let ok = self.stop(deadline);
                for w in flush_waiters {
                    let _ = w.send(());
                }
                let _ = done.send(ok);
                return;
            }
            if !flush_waiters.is_empty() {
                // Everything pushed before the request is among the first `len` events (FIFO).
                let n = self.st.queue.len();
                self.drain(n);
                self.deliver_all();
                for w in flush_waiters {
                    let _ = w.send(());
                }
                continue;
            }

            let drained = self.drain(DRAIN_CHUNK);
            let now = Instant::now();
            self.deliver_due(now);
            if drained == DRAIN_CHUNK {
                continue;
            }
            self.park(now);
        }
    }

    fn park(&self, now: Instant) {
        let max_age = self.parts.batch.max_age;
        let (wake_at, timeout) = match self.pending.values().map(|p| p.since).min() {
            None => (1, IDLE_PARK),
            Some(oldest) => (
                self.parts.batch.max_rows as u64,
                (oldest + max_age).saturating_duration_since(now),
            ),
        };
        self.st.wake_at.store(wake_at, Ordering::SeqCst);
        // Re-check after publishing `wake_at`, so an event pushed just before is not missed.
        if self.st.queued_events() >= wake_at || !self.st.requests.1.is_empty() {
            self.st.wake_at.store(u64::MAX, Ordering::SeqCst);
            return;
        }
        if !timeout.is_zero() {
            std::thread::park_timeout(timeout);
        }
        self.st.wake_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// Pops up to `max` events, validating and batching them. Returns how many were popped.
    fn drain(&mut self, max: usize) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        while n < max {
            let Some(raw) = self.st.queue.pop() else {
                break;
            };
            n += 1;
            bytes += raw.body.len() as u64;
            match self.parts.processor.process(&raw) {
                Ok((dest, row)) => self.add_row(dest, row),
                Err(rejected) => self.rejects.push(*rejected),
            }
            self.st.recycle(raw.body);
        }
        if n > 0 {
            self.st.release(n as u64, bytes);
        }
        n
    }

    fn add_row(&mut self, dest: Destination, row: EncodedRow) {
        let max_rows = self.parts.batch.max_rows;
        let max_bytes = self.parts.batch.max_bytes.0 as usize;
        let len = row.json.len();
        let pending = self.pending.entry(dest.clone()).or_insert_with(|| Pending {
            rows: Vec::new(),
            bytes: 0,
            since: Instant::now(),
        });
        if !pending.rows.is_empty() && pending.bytes + len > max_bytes {
            // Keep every request under the byte limit: ship what is there first.
            let full = std::mem::replace(
                pending,
                Pending {
                    rows: Vec::new(),
                    bytes: 0,
                    since: Instant::now(),
                },
            );
            self.pending_rows -= full.rows.len();
            self.ready.push(Batch {
                destination: dest.clone(),
                rows: full.rows,
                bytes: full.bytes,
            });
        }
        pending.rows.push(row);
        pending.bytes += len;
        self.pending_rows += 1;
        if pending.rows.len() >= max_rows || pending.bytes >= max_bytes {
            if let Some(full) = self.pending.remove(&dest) {
                self.pending_rows -= full.rows.len();
                self.ready.push(Batch {
                    destination: dest,
                    rows: full.rows,
                    bytes: full.bytes,
                });
            }
        }
    }

    /// Ships full batches and batches older than `max_age`.
    fn deliver_due(&mut self, now: Instant) {
        let max_age = self.parts.batch.max_age;
        let aged: Vec<Destination> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= max_age)
            .map(|(d, _)| d.clone())
            .collect();
        for dest in aged {
            self.take_pending(dest);
        }
        self.ship();
    }

    fn deliver_all(&mut self) {
        let all: Vec<Destination> = self.pending.keys().cloned().collect();
        for dest in all {
            self.take_pending(dest);
        }
        self.ship();
    }

    fn take_pending(&mut self, dest: Destination) {
        if let Some(p) = self.pending.remove(&dest) {
            self.pending_rows -= p.rows.len();
            self.ready.push(Batch {
                destination: dest,
                rows: p.rows,
                bytes: p.bytes,
            });
        }
    }

    /// Hands ready batches to the sink and counts what it reports; then dead-letters rejects.
    fn ship(&mut self) {
        let counters = &self.st.counters;
        if !self.ready.is_empty() {
            let batches = std::mem::take(&mut self.ready);
            let started = Instant::now();
            let outcomes = match &mut self.sink {
                Ok(sink) => sink.deliver(batches),
                Err(e) => {
                    let n: usize = batches.iter().map(|b| b.rows.len()).sum();
                    counters.sink_error("unavailable", e.kind());
                    counters.drop_events(DropReason::SinkError, n as u64);
                    self.report.push(ErrorSummary {
                        outcome: Outcome::Dropped,
                        reason: DropReason::SinkError.as_str().into(),
                        count: n as u64,
                        message: format!("sink unavailable: {e}"),
                    });
                    Vec::new()
                }
            };
            counters.observe_flush(started.elapsed());
            let name = self.sink.as_ref().map_or("unavailable", |s| s.name());
            for o in outcomes {
                counters.deliver(o.delivered as u64);
                counters.retry(o.retried as u64);
                self.rejects.extend(o.rejected);
                if !o.failed.is_empty() {
                    counters.drop_events(DropReason::SinkError, o.failed.len() as u64);
                    self.report.push(ErrorSummary {
                        outcome: Outcome::Dropped,
                        reason: DropReason::SinkError.as_str().into(),
                        count: o.failed.len() as u64,
                        message: o
                            .error
                            .as_ref()
                            .map_or_else(|| "delivery failed".into(), |e| e.to_string()),
                    });
                }
                if let Some(e) = o.error {
                    counters.sink_error(name, e.kind());
                }
            }
        }
        if !self.rejects.is_empty() {
            let rejects = std::mem::take(&mut self.rejects);
            let result = match &mut self.sink {
                Ok(sink) => sink.dead_letter(&rejects),
                Err(e) => Err(SinkError::Other(e.to_string())),
            };
            match result {
                Ok(()) => {
                    let mut by_reason: Vec<ErrorSummary> = Vec::new();
                    for r in &rejects {
                        counters.reject(r.reason, 1);
                        match by_reason.iter_mut().find(|s| s.reason == r.reason) {
                            Some(s) => s.count += 1,
                            None => by_reason.push(ErrorSummary {
                                outcome: Outcome::Rejected,
                                reason: r.reason.into(),
                                count: 1,
                                message: r.error.clone(),
                            }),
                        }
                    }
                    self.report.extend(by_reason);
                }
                Err(e) => {
                    counters.sink_error(
                        self.sink.as_ref().map_or("unavailable", |s| s.name()),
                        e.kind(),
                    );
                    counters.drop_events(DropReason::DeadLetterFailed, rejects.len() as u64);
                    self.report.push(ErrorSummary {
                        outcome: Outcome::Dropped,
                        reason: DropReason::DeadLetterFailed.as_str().into(),
                        count: rejects.len() as u64,
                        message: e.to_string(),
                    });
                }
            }
        }
        self.send_report();
    }

    /// Tells the error hook what this round rejected or dropped, including refusals by `log()`.
    fn send_report(&mut self) {
        let hook = self.parts.hook.load();
        let Some(hook) = hook.as_ref() else {
            self.report.clear();
            return;
        };
        let s = self.st.counters.snapshot(0);
        let count = |r: DropReason| s.dropped.get(r.as_str()).copied().unwrap_or(0);
        let full = count(DropReason::QueueFull);
        let invalid = count(DropReason::InvalidEnvelope);
        let (seen_full, seen_invalid) = self.reported_refusals;
        let refusals = [
            (
                DropReason::QueueFull,
                full,
                seen_full,
                "log() refused events: the queue was full",
            ),
            (
                DropReason::InvalidEnvelope,
                invalid,
                seen_invalid,
                "log() refused events with an invalid envelope",
            ),
        ];
        for (reason, now, seen, message) in refusals {
            if now > seen {
                self.report.push(ErrorSummary {
                    outcome: Outcome::Dropped,
                    reason: reason.as_str().into(),
                    count: now - seen,
                    message: message.into(),
                });
            }
        }
        self.reported_refusals = (full, invalid);
        for summary in self.report.drain(..) {
            // A panicking hook must not take the flush thread down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&summary)));
        }
    }

    /// Shutdown: drain everything (including events whose producers are mid-push), deliver until
    /// the deadline, count the rest as dropped, close the sink.
    fn stop(&mut self, deadline: Instant) -> bool {
        loop {
            self.drain(DRAIN_CHUNK);
            if self.st.queued_events() == 0 || Instant::now() >= deadline {
                break;
            }
            if self.st.queue.is_empty() {
                std::thread::yield_now();
            }
            // Ship as we go so a large backlog does not sit in memory.
            self.deliver_due(Instant::now());
        }
        let mut ok = true;
        if Instant::now() < deadline {
            self.deliver_all();
        } else {
            ok = false;
        }
        let left = self.pending_rows
            + self.ready.iter().map(|b| b.rows.len()).sum::<usize>()
            + self.rejects.len();
        if left > 0 {
            ok = false;
            self.st
                .counters
                .drop_events(DropReason::ShutdownDeadline, left as u64);
            self.pending.clear();
            self.ready.clear();
            self.rejects.clear();
            self.pending_rows = 0;
        }
        if let Ok(sink) = &mut self.sink {
            if let Err(e) = sink.close() {
                self.st.counters.sink_error(sink.name(), e.kind());
                ok = false;
            }
        }
        self.st.finished.store(true, Ordering::SeqCst);
        let before = self.st.queued_events();
        drop_leftovers(&self.st, DropReason::ShutdownDeadline);
        ok && before == 0
    }
}
