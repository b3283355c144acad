//! The flush thread: drains the queue, batches per destination, delivers, counts outcomes.
//!
//! With `[spool] enabled`, what the sink fails to take goes to the disk spool, and a circuit
//! breaker keeps an outage from stalling the thread: after a failed delivery, batches go straight
//! to the spool for a while (1 s, doubling up to `retry.cap`), then one probe with a single
//! attempt per request decides whether the sink is back. While it is healthy, spooled records are
//! replayed oldest first (this process's and those left by earlier ones), a bounded amount per
//! round so live events keep flowing.
//!
//! Rejected events take the same path: the dead letters a sink cannot store now (their table
//! cannot be written: no permission, BigQuery down) go to the spool as a dead-letter record,
//! counted in `evlog_dead_letters_waiting` and `evlog_sink_errors_total`, and a breaker of their
//! own (same intervals) keeps new rejects going straight to the spool while it is open. Replay
//! stops at a dead-letter record while that breaker is open and resumes there when it closes, so
//! nothing is skipped; rows keep flowing live meanwhile. Without a spool they are dropped,
//! counted as `dead_letter_failed`, as failed rows are.
//!
//! It parks when there is nothing to do. While no rows are pending it asks producers to wake it
//! on the first event; while rows are pending it sleeps until the oldest batch's age deadline and
//! asks to be woken only when a full batch (`batch.max_rows` events) is waiting, so a steady
//! producer pays for one wake-up per batch, not per event.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use super::lanes::Lanes;
use super::spooled::{Parts, Record};
use super::{ErrorSummary, FlushParts, Outcome, ProcState, RawEvent, Request, IDLE_PARK};
use crate::counters::DropReason;
use crate::routing::Destination;
use crate::sink::{Batch, EncodedRow, RejectedEvent, Sink, SinkError};
use crate::spool::{Spool, SpoolError, SpoolOptions};

/// Events processed between checks for requests and due batches.
const DRAIN_CHUNK: usize = 4096;
/// How long a stopping thread waits for producers that reserved room before it stopped to
/// publish their events (they are a few instructions away from it, unless descheduled).
const LEFTOVER_WAIT: Duration = Duration::from_millis(200);
/// While rows are pending, producers wake the thread once this many events wait (or a full batch,
/// if smaller): small enough that validating them is a short burst (tens of µs), not one that
/// holds a core a request needs for a millisecond.
const WAKE_BATCH: u64 = 64;
/// Spooled rows replayed per round.
const REPLAY_ROWS: usize = 5000;
/// First breaker interval after a failure.
const BREAKER_MIN: Duration = Duration::from_secs(1);
/// How often to look for spool segments (e.g. left by other processes) when none is known.
const SPOOL_SCAN: Duration = Duration::from_secs(5);

/// Asks Linux to treat this thread as batch work (`SCHED_BATCH`): it keeps its fair share of
/// the CPU but does not preempt the thread that woke it, so a request thread whose `log()` woke
/// it keeps its core while the batch is validated (a PHP page on 2 cores showed ~1 ms more at
/// p99 with 10 events per request). Failure is harmless: the thread stays a normal one.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is this thread.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

pub(super) fn spawn(parts: FlushParts, st: Arc<ProcState>) -> std::io::Result<()> {
    let st2 = Arc::clone(&st);
    let handle = std::thread::Builder::new()
        .name("evlog-flush".into())
        .spawn(move || {
            batch_scheduling();
            *st2.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
            Worker::new(parts, st2).run();
        })?;
    *st.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    Ok(())
}

struct Pending {
    rows: Vec<EncodedRow>,
    bytes: usize,
    since: Instant,
}

struct Worker {
    parts: FlushParts,
    st: Arc<ProcState>,
    /// The consumer side of the producers' lanes.
    lanes: Lanes,
    sink: Result<Box<dyn Sink>, SinkError>,
    pending: HashMap<Destination, Pending>,
    pending_rows: usize,
    ready: Vec<Batch>,
    rejects: Vec<RejectedEvent>,
    /// Summaries for the error hook, sent after each delivery round.
    report: Vec<ErrorSummary>,
    /// Refusals by `log()` already reported: (queue_full, invalid_envelope).
    reported_refusals: (u64, u64),
    spool: Option<Spool>,
    /// Deliveries go straight to the spool until then.
    breaker_until: Option<Instant>,
    breaker_wait: Duration,
    /// The same for dead letters: their table could not be written.
    dl_breaker_until: Option<Instant>,
    dl_breaker_wait: Duration,
    /// When to look at the spool next for records to replay.
    next_replay: Instant,
    /// Identifies this flush thread's spool records (see `spooled`, the record format).
    writer: u64,
    /// Events this thread put in the spool that have not been replayed yet. flush() and
    /// shutdown() answer true only when it is 0: a spooled event has not reached the sink, even
    /// if it was spooled before the call (e.g. while the breaker was open).
    own_spooled: u64,
    /// Events this thread took and then dropped (the sink failed them with no spool, their dead
    /// letters could not be stored, the spool was full) since flush() last answered. flush() and
    /// shutdown() answer false while it is not 0: those events were logged before the call and
    /// will never reach the sink.
    lost: u64,
    /// Dead letters taken from this process's spool for another attempt: still counted in
    /// `evlog_dead_letters_waiting` until the attempt settles them (stored, dropped or spooled
    /// again), so the gauge does not dip while the attempt is in flight.
    dl_retrying: u64,
}

impl Worker {
    fn new(parts: FlushParts, st: Arc<ProcState>) -> Self {
        let sink = (parts.sink_factory)();
        let spool = parts.spool.enabled.then(|| {
            Spool::open(SpoolOptions {
                dir: parts.spool.dir.clone(),
                max_bytes: parts.spool.max_bytes.0,
                segment_bytes: parts.spool.segment_bytes.0,
                fsync: parts.spool.fsync,
            })
        });
        let spool = match spool {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                // Without its spool the pipeline still delivers; failures are then dropped.
                st.counters.sink_error("spool", "io");
                let _ = e;
                None
            }
            None => None,
        };
        Self {
            parts,
            st,
            lanes: Lanes::default(),
            sink,
            pending: HashMap::new(),
            pending_rows: 0,
            ready: Vec::new(),
            rejects: Vec::new(),
            report: Vec::new(),
            reported_refusals: (0, 0),
            spool,
            breaker_until: None,
            breaker_wait: BREAKER_MIN,
            dl_breaker_until: None,
            dl_breaker_wait: BREAKER_MIN,
            next_replay: Instant::now(),
            writer: crate::ids::random_u64(),
            own_spooled: 0,
            lost: 0,
            dl_retrying: 0,
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
                    let _ = w.send(ok);
                }
                let _ = done.send(ok);
                return;
            }
            if !flush_waiters.is_empty() {
                self.drain_published();
                self.deliver_all();
                // Spooled or dropped is not delivered: say so.
                let ok = self.own_spooled == 0 && self.lost == 0;
                self.lost = 0;
                for w in flush_waiters {
                    let _ = w.send(ok);
                }
                continue;
            }

            self.spill();
            let drained = self.drain(DRAIN_CHUNK);
            let now = Instant::now();
            self.deliver_due(now);
            let replayed = self.replay(now);
            if drained == DRAIN_CHUNK || replayed {
                continue;
            }
            self.park(now);
        }
    }

    fn park(&self, now: Instant) {
        let max_age = self.parts.batch.max_age;
        let (wake_at, mut timeout) = match self.pending.values().map(|p| p.since).min() {
            None => (1, IDLE_PARK),
            Some(oldest) => (
                (self.parts.batch.max_rows as u64).min(WAKE_BATCH),
                (oldest + max_age).saturating_duration_since(now),
            ),
        };
        if self.spool.is_some() {
            // Come back to replay when the breaker closes or the next scan is due.
            let next = self
                .breaker_until
                .unwrap_or(self.next_replay)
                .max(self.next_replay);
            timeout = timeout.min(
                next.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
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

    /// With `queue.overflow = "spool"`: when the queue is three quarters full, moves events to the
    /// spool unvalidated (cheap) until it is half full, so `log()` keeps accepting.
    fn spill(&mut self) {
        if self.parts.queue.overflow != crate::config::Overflow::Spool || self.spool.is_none() {
            return;
        }
        let capacity = self.parts.queue.capacity as u64;
        if self.st.queued_events() < capacity / 4 * 3 {
            return;
        }
        while self.st.queued_events() > capacity / 2 {
            let (raws, bytes) = self.take_raw(1000);
            if raws.is_empty() {
                break;
            }
            self.st.release(raws.len() as u64, bytes);
            let n = raws.len();
            self.spool_record(
                &Record::from_raw(&raws, self.writer),
                n,
                DropReason::QueueFull,
            );
            for e in raws {
                self.st.recycle(e.body);
            }
        }
    }

    /// Takes up to `max` events as they are (for the spool), with their body bytes.
    fn take_raw(&mut self, max: usize) -> (Vec<RawEvent>, u64) {
        let mut raws = Vec::new();
        let mut bytes = 0;
        self.lanes.take(&self.st, max, |e| {
            bytes += e.body.len() as u64;
            raws.push(e);
            None
        });
        (raws, bytes)
    }

    /// Takes up to `max` events, validating and batching them. Returns how many were taken.
    fn drain(&mut self, max: usize) -> usize {
        self.drain_with(|lanes, st, f| lanes.take(st, max, f))
    }

    /// Takes every event published before the call (for an exact `flush()`).
    fn drain_published(&mut self) -> usize {
        let bound = self.st.queued_events();
        self.drain_with(|lanes, st, f| lanes.take_published(st, bound, f))
    }

    fn drain_with(
        &mut self,
        take: impl FnOnce(&mut Lanes, &ProcState, &mut dyn FnMut(RawEvent) -> Option<String>) -> usize,
    ) -> usize {
        let mut lanes = std::mem::take(&mut self.lanes);
        let st = Arc::clone(&self.st);
        let mut bytes = 0u64;
        let n = take(&mut lanes, &st, &mut |raw| {
            bytes += raw.body.len() as u64;
            match self.parts.processor.process(&raw) {
                Ok((dest, row)) => self.add_row(dest, row),
                Err(rejected) => self.rejects.push(*rejected),
            }
            Some(raw.body)
        });
        self.lanes = lanes;
        if n > 0 {
            st.release(n as u64, bytes);
        }
        n
    }

    /// After `finished` is set: waits briefly for producers that reserved room before it to
    /// publish, and counts every event still queued as dropped for `reason`.
    fn drop_leftovers(&mut self, reason: DropReason) {
        let give_up = Instant::now() + LEFTOVER_WAIT;
        loop {
            let mut bytes = 0u64;
            let st = Arc::clone(&self.st);
            let n = self.lanes.take(&st, usize::MAX, |e| {
                bytes += e.body.len() as u64;
                None
            });
            if n > 0 {
                st.release(n as u64, bytes);
                st.counters.drop_events(reason, n as u64);
            }
            if st.queued_events() == 0 || Instant::now() >= give_up {
                // Nothing will be logged here any more: free the recycled buffers.
                while st.pool.pop().is_some() {}
                return;
            }
            std::thread::yield_now();
        }
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

    fn breaker_open(&self, now: Instant) -> bool {
        self.breaker_until.is_some_and(|t| now < t)
    }

    fn trip_breaker(&mut self) {
        if self.spool.is_none() {
            return;
        }
        self.breaker_until = Some(Instant::now() + self.breaker_wait);
        self.breaker_wait = (self.breaker_wait * 2).min(self.parts.retry.cap.max(BREAKER_MIN));
    }

    fn reset_breaker(&mut self) {
        self.breaker_until = None;
        self.breaker_wait = BREAKER_MIN;
    }

    /// Appends a record to the spool; counts the events as spooled, or dropped when it cannot.
    fn spool_record(&mut self, record: &Record, n: usize, fallback: DropReason) -> bool {
        let counters = &self.st.counters;
        let Some(spool) = &mut self.spool else {
            counters.drop_events(fallback, n as u64);
            self.lost += n as u64;
            return false;
        };
        match spool.append(&[&record.encode()]) {
            Ok(()) => {
                counters.spool(n as u64);
                self.own_spooled += n as u64;
                true
            }
            Err(e) => {
                let reason = match e {
                    SpoolError::Full { .. } => DropReason::SpoolFull,
                    _ => fallback,
                };
                counters.sink_error(
                    "spool",
                    if reason == DropReason::SpoolFull {
                        "full"
                    } else {
                        "io"
                    },
                );
                counters.drop_events(reason, n as u64);
                self.lost += n as u64;
                self.report.push(ErrorSummary {
                    outcome: Outcome::Dropped,
                    reason: reason.as_str().into(),
                    count: n as u64,
                    message: e.to_string(),
                });
                false
            }
        }
    }

    /// Delivers batches, counting outcomes; failed rows go to the spool (or are dropped).
    /// Returns whether everything was accepted by the sink.
    fn deliver_batches(&mut self, batches: Vec<Batch>) -> bool {
        let now = Instant::now();
        if self.spool.is_some() && self.breaker_open(now) {
            for b in &batches {
                self.spool_record(
                    &Record::from_batch(b, self.writer),
                    b.rows.len(),
                    DropReason::SinkError,
                );
            }
            return false;
        }
        let probing = self.breaker_until.is_some();
        let dests: Vec<Destination> = batches.iter().map(|b| b.destination.clone()).collect();
        let counters = &self.st.counters;
        let started = Instant::now();
        let outcomes = match &mut self.sink {
            Ok(sink) => {
                sink.set_probe(probing);
                let o = sink.deliver(batches);
                sink.set_probe(false);
                o
            }
            Err(e) => {
                let message = format!("sink unavailable: {e}");
                counters.sink_error("unavailable", e.kind());
                batches
                    .into_iter()
                    .map(|b| {
                        crate::sink::BatchOutcome::failed(b.rows, SinkError::Other(message.clone()))
                    })
                    .collect()
            }
        };
        counters.observe_flush(started.elapsed());
        let name = self.sink.as_ref().map_or("unavailable", |s| s.name());
        let mut all_ok = true;
        let mut stored = Vec::new();
        for (o, dest) in outcomes.into_iter().zip(dests) {
            let counters = &self.st.counters;
            counters.deliver(o.delivered as u64);
            counters.retry(o.retried as u64);
            self.rejects.extend(o.rejected);
            // Already stored by the destination (a collector): count them, do not send them again.
            stored.extend(o.rejected_stored);
            for kind in &o.attempt_errors {
                counters.sink_error(name, kind);
            }
            if let (Some(e), true) = (&o.error, o.attempt_errors.is_empty()) {
                counters.sink_error(name, e.kind());
            }
            if !o.failed.is_empty() {
                all_ok = false;
                let n = o.failed.len();
                let batch = Batch {
                    bytes: o.failed.iter().map(|r| r.json.len()).sum(),
                    destination: dest,
                    rows: o.failed,
                };
                let message = o
                    .error
                    .as_ref()
                    .map_or_else(|| "delivery failed".into(), |e| e.to_string());
                if self.spool.is_some() {
                    self.spool_record(
                        &Record::from_batch(&batch, self.writer),
                        n,
                        DropReason::SinkError,
                    );
                } else {
                    self.st
                        .counters
                        .drop_events(DropReason::SinkError, n as u64);
                    self.lost += n as u64;
                    self.report.push(ErrorSummary {
                        outcome: Outcome::Dropped,
                        reason: DropReason::SinkError.as_str().into(),
                        count: n as u64,
                        message,
                    });
                }
            }
        }
        self.count_rejected(&stored);
        if all_ok {
            self.reset_breaker();
        } else {
            self.trip_breaker();
        }
        all_ok
    }

    /// Replays a bounded amount of spooled records while the sink is healthy. Returns whether
    /// there may be more to replay right away.
    fn replay(&mut self, now: Instant) -> bool {
        if self.spool.is_none() || self.breaker_open(now) || now < self.next_replay {
            return false;
        }
        let segment = match self.spool.as_mut().map(Spool::next_segment) {
            Some(Ok(Some(seg))) => seg,
            Some(Ok(None)) | None => {
                self.next_replay = now + SPOOL_SCAN;
                return false;
            }
            Some(Err(_)) => {
                self.st.counters.sink_error("spool", "io");
                self.next_replay = now + SPOOL_SCAN;
                return false;
            }
        };
        let mut seg = segment;
        let mut rows = 0;
        while rows < REPLAY_ROWS && !self.breaker_open(Instant::now()) {
            let next = {
                let Some(spool) = &self.spool else { break };
                seg.next(&spool.counters)
            };
            let rec = match next {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = seg.commit(0); // deletes the segment once all of it is done
                    return true;
                }
                Err(_) => {
                    self.st.counters.sink_error("spool", "io");
                    break;
                }
            };
            let Some(record) = Record::decode(&rec.payload) else {
                // A valid frame with a payload we cannot read: skip it (counted) rather than
                // block the spool forever.
                self.st.counters.sink_error("spool", "undecodable");
                let _ = seg.commit(rec.end);
                continue;
            };
            if record.is_dead_letters() {
                if let Some(until) = self.dl_breaker_until.filter(|t| Instant::now() < *t) {
                    // Their table still cannot be written: stop here, uncommitted, and come
                    // back when the breaker closes (keeps the order, skips nothing).
                    self.next_replay = until;
                    return false;
                }
            }
            let n = record.len();
            rows += n;
            if !record.foreign(self.writer) {
                // Settled below or spooled again (and counted again).
                self.own_spooled = self.own_spooled.saturating_sub(n as u64);
            }
            if record.foreign(self.writer) {
                self.st.counters.accept_n(n as u64);
            } else if record.is_dead_letters() {
                self.dl_retrying += n as u64;
            }
            // What fails again is re-spooled as a new record and this one committed, so every
            // event is counted once whatever happens.
            match record.into_parts() {
                Parts::Rows(batch) => {
                    self.deliver_batches(vec![batch]);
                }
                Parts::DeadLetters(events) => self.rejects.extend(events),
                Parts::Raw(raws) => {
                    for raw in raws {
                        match self.parts.processor.process(&raw) {
                            Ok((dest, row)) => self.add_row(dest, row),
                            Err(r) => self.rejects.push(*r),
                        }
                    }
                    self.deliver_all();
                }
            }
            self.dead_letter_rejects();
            // Those not spooled again were stored or dropped: no longer waiting.
            let settled = std::mem::take(&mut self.dl_retrying);
            self.st.counters.dead_letters_settled(settled);
            let _ = seg.commit(rec.end);
        }
        true
    }

    /// Hands ready batches to the sink and counts what it reports; then dead-letters rejects.
    fn ship(&mut self) {
        if !self.ready.is_empty() {
            let batches = std::mem::take(&mut self.ready);
            self.deliver_batches(batches);
        }
        self.dead_letter_rejects();
        self.send_report();
    }

    /// Counts events stored as dead letters as rejected, for the counters and the error hook.
    fn count_rejected(&mut self, rejects: &[RejectedEvent]) {
        let mut by_reason: Vec<ErrorSummary> = Vec::new();
        for r in rejects {
            self.st.counters.reject(r.reason, 1);
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

    /// Stores pending rejects in their dead-letter tables and counts them; what cannot be stored
    /// now goes to the spool (see the module docs).
    fn dead_letter_rejects(&mut self) {
        if self.rejects.is_empty() {
            return;
        }
        let rejects = std::mem::take(&mut self.rejects);
        let now = Instant::now();
        if self.spool.is_some() && self.dl_breaker_until.is_some_and(|t| now < t) {
            self.spool_dead_letters(&rejects);
            return;
        }
        let probing = self.dl_breaker_until.is_some();
        let outcome = match &mut self.sink {
            Ok(sink) => {
                sink.set_probe(probing);
                let o = sink.store_dead_letters(rejects);
                sink.set_probe(false);
                o
            }
            Err(e) => crate::sink::DeadLetterOutcome::failed(
                rejects,
                SinkError::Other(format!("sink unavailable: {e}")),
            ),
        };
        let name = self.sink.as_ref().map_or("unavailable", |s| s.name());
        self.count_rejected(&outcome.stored);
        let counters = &self.st.counters;
        if let Some((_, message)) = outcome.refused.first() {
            // The dead-letter table itself refuses them: trying again cannot help.
            let n = outcome.refused.len() as u64;
            counters.sink_error(name, "dead_letter_invalid");
            counters.drop_events(DropReason::DeadLetterFailed, n);
            self.lost += n;
            self.report.push(ErrorSummary {
                outcome: Outcome::Dropped,
                reason: DropReason::DeadLetterFailed.as_str().into(),
                count: n,
                message: message.clone(),
            });
        }
        if outcome.failed.is_empty() {
            self.dl_breaker_until = None;
            self.dl_breaker_wait = BREAKER_MIN;
            return;
        }
        let error = outcome
            .error
            .unwrap_or_else(|| SinkError::Other("dead letters not stored".into()));
        counters.sink_error(name, error.kind());
        if self.spool.is_some() {
            self.spool_dead_letters(&outcome.failed);
            let until = Instant::now() + self.dl_breaker_wait;
            self.dl_breaker_until = Some(until);
            self.dl_breaker_wait =
                (self.dl_breaker_wait * 2).min(self.parts.retry.cap.max(BREAKER_MIN));
            // Try them again from the spool as soon as the breaker closes.
            self.next_replay = self.next_replay.min(until);
        } else {
            let n = outcome.failed.len() as u64;
            counters.drop_events(DropReason::DeadLetterFailed, n);
            self.lost += n;
            self.report.push(ErrorSummary {
                outcome: Outcome::Dropped,
                reason: DropReason::DeadLetterFailed.as_str().into(),
                count: n,
                message: format!("dead-letter table cannot be written: {error}"),
            });
        }
    }

    /// Keeps dead letters in the spool for a later attempt (dropped, counted, when it cannot).
    fn spool_dead_letters(&mut self, events: &[RejectedEvent]) {
        let n = events.len();
        // Those back from the spool are already counted waiting; only new ones are added.
        let carried = self.dl_retrying.min(n as u64);
        self.dl_retrying -= carried;
        let record = Record::from_rejected(events, self.writer);
        if self.spool_record(&record, n, DropReason::DeadLetterFailed) {
            self.st.counters.dead_letters_wait(n as u64 - carried);
        } else {
            self.st.counters.dead_letters_settled(carried); // dropped, counted
        }
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
            let drained = self.drain(DRAIN_CHUNK);
            if self.st.queued_events() == 0 || Instant::now() >= deadline {
                break;
            }
            if drained == 0 {
                // Producers are between their reservation and their push.
                std::thread::yield_now();
            }
            // Ship as we go so a large backlog does not sit in memory.
            self.deliver_due(Instant::now());
        }
        let mut ok = true;
        if Instant::now() < deadline {
            self.deliver_all();
            self.dead_letter_rejects();
        } else {
            ok = false;
        }
        // Past the deadline: rows go to the spool if there is one, else they are dropped.
        let mut left: Vec<Batch> = std::mem::take(&mut self.ready);
        left.extend(self.pending.drain().map(|(destination, p)| Batch {
            destination,
            rows: p.rows,
            bytes: p.bytes,
        }));
        self.pending_rows = 0;
        for b in &left {
            ok = false;
            self.spool_record(
                &Record::from_batch(b, self.writer),
                b.rows.len(),
                DropReason::ShutdownDeadline,
            );
        }
        if !self.rejects.is_empty() {
            ok = false;
            let rejects = std::mem::take(&mut self.rejects);
            if self.spool.is_some() {
                self.spool_dead_letters(&rejects);
            } else {
                self.st
                    .counters
                    .drop_events(DropReason::ShutdownDeadline, rejects.len() as u64);
            }
        }
        if self.spool.is_some() {
            // Events still queued (not even validated) are kept raw.
            let (raws, bytes) = self.take_raw(usize::MAX);
            if !raws.is_empty() {
                ok = false;
                self.st.release(raws.len() as u64, bytes);
                for chunk in raws.chunks(1000) {
                    self.spool_record(
                        &Record::from_raw(chunk, self.writer),
                        chunk.len(),
                        DropReason::ShutdownDeadline,
                    );
                }
            }
        }
        if self.own_spooled > 0 || self.lost > 0 {
            ok = false;
        }
        self.send_report();
        if let Ok(sink) = &mut self.sink {
            if let Err(e) = sink.close() {
                self.st.counters.sink_error(sink.name(), e.kind());
                ok = false;
            }
        }
        // SeqCst pairs with producers' reservations: a producer either sees `finished` and
        // backs out, or its reservation is counted in `queued_events` below and waited for.
        self.st.finished.store(true, Ordering::SeqCst);
        let before = self.st.queued_events();
        self.drop_leftovers(DropReason::ShutdownDeadline);
        ok && before == 0
    }
}
