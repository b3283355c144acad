//! The flush thread: drains the queue, batches per destination, delivers, counts outcomes.
//!
//! **Destinations** (`crate::destinations`). With one (`[sink]`, or a single
//! `[destinations.<name>]`) the flush thread is the [`Worker`] below: it takes events from the
//! lanes, drops those no route takes (`unrouted`), and validates, batches and delivers the rest.
//! With several, the flush thread is a router (`router`) and each destination has a thread of
//! its own running the same [`Worker`] on an inbox (`inbox`): its own sink, batches, retries,
//! breakers, spool (`spool.dir/<name>/`) and counters. The router never waits for a
//! destination, so one retrying or backing off for minutes never slows another; each
//! destination's inbox is bounded by `[queue]`, and a copy that does not fit is dropped,
//! counted for that destination (`queue_full`). `flush()` and `shutdown()` answer once every
//! destination has.
//!
//! A sink that takes events as they were logged (the forward sink's `format = "events"`) gets
//! them unvalidated: the worker routes them and batches them as they are (`events`).
//!
//! Processing, batching, delivery and the counting of what the sink reports go through
//! [`crate::ingest`], as in the collector; this module decides what happens around them: when to
//! deliver, what to spool, when to replay, what to tell the error hook.
//!
//! With a spool (`[spool]`: by default for network sinks, opened lazily so its directory is made
//! only when first needed), what the sink fails to take goes to the disk spool, and a circuit
//! breaker (`breaker`) keeps an outage from stalling the thread: after a failed delivery, batches
//! go straight to the spool for a while (1 s, doubling up to `retry.cap`), then one probe with a
//! single attempt per request decides whether the sink is back. While it is healthy, spooled
//! records are replayed oldest first (this process's and those left by earlier ones), a bounded
//! amount per round so live events keep flowing (`replay`).
//!
//! Rejected events take the same path: the dead letters a sink cannot store now (their table
//! cannot be written: no permission, BigQuery down) go to the spool as a dead-letter record,
//! counted in `evlog_dead_letters_waiting` and `evlog_sink_errors_total`, and a breaker of their
//! own (same intervals) keeps new rejects going straight to the spool while it is open. Replay
//! stops at a dead-letter record while that breaker is open and resumes there when it closes, so
//! nothing is skipped; rows keep flowing live meanwhile. Without a spool they are dropped,
//! counted as `dead_letter_failed`, as failed rows are.
//!
//! After each delivery round the error hook hears what was rejected or dropped (`report`).
//!
//! Shutdown (`stop`): the pipeline has raised the sink's `StopSignal`, so each request gets one
//! attempt bounded by the deadline; what fails is spooled (or, without a spool, counted
//! dropped: `sink_error`, `shutdown_deadline` once the deadline has passed) before the thread
//! answers.
//!
//! It parks when there is nothing to do. While no rows are pending it asks producers to wake it
//! on the first event; while rows are pending it sleeps until the oldest batch's age deadline and
//! asks to be woken only when a full batch (`batch.max_rows` events) is waiting, so a steady
//! producer pays for one wake-up per batch, not per event.

mod breaker;
mod deliver;
mod events;
mod inbox;
mod pace;
mod replay;
mod report;
mod router;
mod trim;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::breaker::Breaker;
pub(super) use self::inbox::DestShared;
use self::inbox::Inbox;
use self::pace::Pace;
use self::report::Report;
use super::lanes::Lanes;
use super::{FlushParts, ProcState, Request, IDLE_PARK};
use crate::counters::{Counters, DropReason};
use crate::ingest::{Batcher, CpuShare, RawEvent};
use crate::sink::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError};
use crate::spool::{Spool, SpoolOptions};

/// Events processed between checks for requests and due batches.
const DRAIN_CHUNK: usize = 4096;
/// How long a stopping thread waits for producers that reserved room before it stopped to
/// publish their events (they are a few instructions away from it, unless descheduled).
const LEFTOVER_WAIT: Duration = Duration::from_millis(200);
/// A wake-up's worth of events: what the thread aims to find each time it wakes (or a full
/// batch, or a quarter of the queue, if smaller; see [`wake_batch`]). While events flow it
/// wakes on its own timer, paced to find about this many, and producers wake it only at twice
/// this ([`pace`]); while idle, a batch that is open waits for this many or its age. A wake-up
/// by a producer is not cheap for the thread that does it: under php-fpm on a 2-core VM each
/// cost the page's thread ~37 µs of CPU (the futex wake and the cross-CPU interrupt, then the
/// flush thread running beside the page). At 64 (one wake-up per ~6 pages of 10 events) that
/// was most of what 10 `evlog_log()` calls added to a page; at 512 the page's p50 cost fell
/// from +17 to +6 µs (null sink, docs/php-cost.md, session 13); paced, no page pays one while
/// events flow (session 19).
const WAKE_BATCH: u64 = 512;
/// Bodies' bytes that make a wake-up's worth while events flow, when they come before
/// [`WAKE_BATCH`] events: half a lane's ring, so a steady producer stays in one ring and the
/// other half is room for the records' envelopes and a late wake-up. Paced by the count alone,
/// 512 events fitted the body arena's first size (64 KiB) only for bodies of up to 128 bytes;
/// events of ~390 bytes sent half their bodies the slower way, in buffers of their own
/// (docs/php-cost.md, session 24).
const PACED_BYTES: u64 = super::lanes::RING_BYTES as u64 / 2;
/// A drain that finds more than this many events queued beyond the ones it took does not yield
/// the CPU ([`CpuShare::tick_unless`]): producers are outpacing it. A wake-up's worth: under 16
/// saturated php-fpm workers this kept the steady memory per worker at +2.1 … +2.3 MiB PSS
/// (+3.2 … +4.2 when always yielding, +1.0 never), and one request at a time it never triggers, so the page's
/// p99 keeps the yield's gain; at 64 the memory was that of never yielding but the p99 cost
/// came back to +130 µs (docs/php-cost.md, session 14).
const BEHIND_EVENTS: u64 = WAKE_BATCH;
/// Raw events per spool record (queue overflow, leftovers at shutdown).
const RAW_PER_RECORD: usize = 1000;
/// How many waiting events make a producer wake the thread while a batch is open: a full batch,
/// at most [`WAKE_BATCH`], and at most a quarter of the queue, so the thread takes them long
/// before the queue fills (and before `queue.overflow = "spool"` starts spilling at three
/// quarters).
fn wake_batch(parts: &FlushParts) -> u64 {
    let quarter = (parts.queue.capacity as u64 / 4).max(1);
    (parts.batch.max_rows as u64).min(WAKE_BATCH).min(quarter)
}

/// Queued bytes that make a producer wake the parked thread (`pipeline::wake_bytes`).
fn wake_bytes(parts: &FlushParts) -> u64 {
    super::wake_bytes(&parts.batch, &parts.queue)
}

/// Parks the flush thread (or the router) as [`Pace::plan`] says at `now`, for at most
/// `longest`: publishes when producers should wake it, then re-checks, so an event pushed just
/// before is not missed.
fn park(
    st: &ProcState,
    parts: &FlushParts,
    pace: &mut Pace,
    now: Instant,
    batch_open: bool,
    longest: Duration,
) {
    let wake_batch = wake_batch(parts);
    let quarter = (parts.queue.capacity as u64 / 4).max(1);
    let high_water = (2 * wake_batch).min(quarter);
    let plan = pace.plan(
        now,
        parts.batch.max_age,
        (wake_batch, PACED_BYTES),
        high_water,
        batch_open,
    );
    let timeout = plan.sleep.map_or(longest, |s| s.min(longest));
    st.wake_at.store(plan.wake_at, Ordering::SeqCst);
    if st.would_wake(plan.wake_at, wake_bytes(parts)) || !st.requests.1.is_empty() {
        st.wake_at.store(u64::MAX, Ordering::SeqCst);
        return;
    }
    if !timeout.is_zero() {
        std::thread::park_timeout(timeout);
    }
    st.wake_at.store(u64::MAX, Ordering::SeqCst);
    pace.woke(plan, Instant::now());
}

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

/// Starts the flush thread: with one destination, the thread that also delivers; with
/// several, one delivery thread per destination and the flush thread as their router
/// (`router`). On an error, threads already started see their inbox closed and stop.
pub(super) fn spawn(parts: FlushParts, st: Arc<ProcState>) -> std::io::Result<()> {
    let st2 = Arc::clone(&st);
    let run: Box<dyn FnOnce() + Send> = if st.dests.is_empty() {
        let st = Arc::clone(&st);
        Box::new(move || {
            let counters = Arc::clone(&st.counters);
            Worker::new(parts, st, counters, None).run();
        })
    } else {
        let (router, workers) = router::Router::new(parts, Arc::clone(&st));
        let mut handles = Vec::with_capacity(workers.len());
        for (name, start) in workers {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("evlog-dest-{name}"))
                    .spawn(move || {
                        batch_scheduling();
                        start.run();
                    })?,
            );
        }
        Box::new(move || router.run(handles))
    };
    let handle = std::thread::Builder::new()
        .name("evlog-flush".into())
        .spawn(move || {
            batch_scheduling();
            *st.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
            run();
        })?;
    *st2.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    Ok(())
}

/// After `finished` is set: waits briefly for producers that reserved room before it to
/// publish, and counts every event still queued as dropped for `reason`.
fn drop_leftovers(lanes: &mut Lanes, st: &ProcState, reason: DropReason) {
    let give_up = Instant::now() + LEFTOVER_WAIT;
    loop {
        let mut bytes = 0u64;
        let n = lanes.take(st, usize::MAX, |e| {
            bytes += e.body.len() as u64;
            st.counters
                .drop_meant_for(&e.namespace, &e.type_name, reason, 1);
            None
        });
        if n > 0 {
            st.release(n as u64, bytes);
        }
        if st.queued_events() == 0 || Instant::now() >= give_up {
            // Nothing will be logged here any more: free the recycled buffers.
            while st.pool.pop().is_some() {}
            return;
        }
        std::thread::yield_now();
    }
}

/// Stands in for a sink that could not be built: every delivery fails with why.
struct Unavailable {
    message: String,
}

impl Sink for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        batches
            .into_iter()
            .map(|b| BatchOutcome::failed(b.rows, SinkError::Other(self.message.clone())))
            .collect()
    }

    fn dead_letter(&mut self, _: &[RejectedEvent]) -> Result<(), SinkError> {
        Err(SinkError::Other(self.message.clone()))
    }
}

struct Worker {
    parts: FlushParts,
    st: Arc<ProcState>,
    /// Where outcomes are counted: the pipeline's counters with one destination, the
    /// destination's own with several.
    counters: Arc<Counters>,
    /// The consumer side of the producers' lanes (with one destination).
    lanes: Lanes,
    /// With several destinations: the events the router sent this destination. Such events
    /// were routed already; with one destination, each is routed here.
    inbox: Option<Inbox>,
    /// The sink, or [`Unavailable`] when it could not be built.
    sink: Box<dyn Sink>,
    /// Why the sink could not be built (its error's kind): counted on every delivery round.
    sink_broken: Option<&'static str>,
    batcher: Batcher,
    /// Events waiting to be sent as they are, when the sink takes events (`events`); `None`:
    /// events are validated and batched as rows.
    events: Option<events::Pending>,
    rejects: Vec<RejectedEvent>,
    /// Summaries for the error hook, sent after each delivery round.
    report: Report,
    spool: Option<Spool>,
    /// Deliveries go straight to the spool while it is open.
    breaker: Breaker,
    /// The same for dead letters: their table could not be written.
    dl_breaker: Breaker,
    /// When to look at the spool next for records to replay.
    next_replay: Instant,
    /// When to wake while events flow, and what a new batch counts its age from.
    pace: Pace,
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
    /// Events no route took since the last report (counted when taken, told to the hook once
    /// per round). Not a loss for flush(): the configuration sends them nowhere.
    unrouted: u64,
    /// Set by `stop()` when there is a spool: every delivery is then one attempt per request
    /// (as a breaker probe), so a failing sink hands its rows to the spool at once instead of
    /// waiting out the retry budget, which can outlast the shutdown deadline (the process would
    /// exit mid-backoff with the rows neither delivered, spooled nor counted).
    stopping: bool,
    /// Gives memory back when the thread goes idle after a backlog.
    trim: trim::Trim,
    /// Checks the schema files, when this thread reads the lanes (one destination).
    watcher: Option<super::reload::Watcher>,
    /// When the sink gets the process's counters next ([`Sink::report`]).
    next_report: Instant,
}

impl Worker {
    fn new(
        parts: FlushParts,
        st: Arc<ProcState>,
        counters: Arc<Counters>,
        inbox: Option<Inbox>,
    ) -> Self {
        let (mut sink, sink_broken) = match (parts.sink_factory)() {
            Ok(sink) => (sink, None),
            Err(e) => {
                let sink = Unavailable {
                    message: format!("sink unavailable: {e}"),
                };
                (Box::new(sink) as Box<dyn Sink>, Some(e.kind()))
            }
        };
        sink.watch_stop(Arc::clone(&st.stop));
        // Opened without touching the disk: the directory is made by the first append, so a
        // process whose sink never fails creates nothing. A directory that cannot be made then
        // is an error on that append: the events are dropped, counted (`sink_error`, and
        // `evlog_sink_errors_total{sink="spool"}`), and the hook told why (naming spool.dir).
        let spool = parts.spool.as_ref().map(|place| {
            Spool::open_lazily(
                SpoolOptions {
                    dir: place.dir.clone(),
                    max_bytes: place.options.max_bytes.0,
                    segment_bytes: place.options.segment_bytes.0,
                    fsync: place.options.fsync,
                },
                place.private,
            )
        });
        let destination = match &inbox {
            Some(inbox) => inbox.name(),
            None => parts.destinations[0].0.as_str(),
        };
        let events = events::Pending::for_sink(
            sink.as_ref(),
            &parts.processor.load(),
            destination,
            parts.batch.max_rows,
            parts.batch.max_bytes.0 as usize,
        );
        let watcher = match &inbox {
            None => parts.watch.clone().map(super::reload::Watcher::new),
            Some(_) => None,
        };
        let next_report = Instant::now() + sink.report_interval().unwrap_or_default();
        Self {
            events,
            batcher: Batcher::new(parts.batch.max_rows, parts.batch.max_bytes.0 as usize),
            breaker: Breaker::new(parts.retry.cap),
            dl_breaker: Breaker::new(parts.retry.cap),
            report: match &inbox {
                None => Report::new(),
                Some(i) => Report::for_destination(i.name()),
            },
            parts,
            st,
            counters,
            inbox,
            lanes: Lanes::default(),
            sink,
            sink_broken,
            rejects: Vec::new(),
            spool,
            next_replay: Instant::now(),
            pace: Pace::new(Instant::now()),
            writer: crate::ids::random_u64(),
            own_spooled: 0,
            lost: 0,
            dl_retrying: 0,
            unrouted: 0,
            stopping: false,
            trim: trim::Trim::default(),
            watcher,
            // The first report after one interval: a process that logs nothing has nothing
            // to tell, and a short one tells it in its last report.
            next_report,
        }
    }

    fn run(mut self) {
        loop {
            let (flush_waiters, shutdown) = take_requests(&self.st);
            if let Some((deadline, done)) = shutdown {
                let ok = self.stop(deadline);
                for w in flush_waiters {
                    let _ = w.send(ok);
                }
                let _ = done.send(ok);
                return;
            }
            if !flush_waiters.is_empty() {
                // Counted for the trim too: a producer that outran this thread leaves its
                // backlog to the flush() that follows (a PHP burst ending in evlog_flush()).
                let (drained, _) = self.drain_published();
                self.trim.took(drained);
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
            let now = Instant::now();
            if let Some(w) = &mut self.watcher {
                w.tick(now, &self.st.counters, &self.parts.hook);
            }
            self.report_due(now, false);
            self.set_arrivals_from(self.pace.arrivals_from());
            let (drained, bytes) = self.drain(DRAIN_CHUNK);
            self.pace.took(now, drained, bytes, DRAIN_CHUNK);
            let now = Instant::now();
            self.deliver_due(now);
            let replayed = self.replay(now);
            self.trim.took(drained);
            if drained == DRAIN_CHUNK || replayed {
                continue;
            }
            if self.st.queued_events() == 0 && self.batcher.oldest().is_none() {
                self.trim.idle();
            }
            self.park(now);
        }
    }

    /// Hands the process's counters to a sink that wants them ([`Sink::report_interval`])
    /// when it is time, and always when `last` (at shutdown).
    fn report_due(&mut self, now: Instant, last: bool) {
        let Some(every) = self.sink.report_interval() else {
            return;
        };
        if !last && now < self.next_report {
            return;
        }
        self.next_report = now + every;
        let stats = self.st.stats(self.st.queued_events());
        self.sink.report(&stats, last);
    }

    /// What a batch opened by the next events counts its age from ([`Pace::arrivals_from`]).
    fn set_arrivals_from(&mut self, from: Instant) {
        self.batcher.set_arrivals_from(from);
        if let Some(events) = &mut self.events {
            events.set_arrivals_from(from);
        }
    }

    fn park(&mut self, now: Instant) {
        let (batch_open, longest) = (self.oldest().is_some(), self.wait_time(now));
        park(
            &self.st,
            &self.parts,
            &mut self.pace,
            now,
            batch_open,
            longest,
        );
    }

    /// How long the thread may wait at `now` for events before it has work of its own: the
    /// oldest batch's age deadline, the breaker's reopening, the next spool scan.
    fn wait_time(&self, now: Instant) -> Duration {
        let mut timeout = match self.oldest() {
            None if self.trim.is_pending() => trim::TRIM_EVERY,
            None => IDLE_PARK,
            Some(oldest) => (oldest + self.parts.batch.max_age).saturating_duration_since(now),
        };
        if let Some(w) = &self.watcher {
            timeout = timeout.min(w.due_in(now).max(Duration::from_millis(1)));
        }
        if self.spool.is_some() {
            // Come back to replay when the breaker closes or the next scan is due.
            let next = self
                .breaker
                .until()
                .unwrap_or(self.next_replay)
                .max(self.next_replay);
            timeout = timeout.min(
                next.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        timeout
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
            let (raws, bytes) = self.take_raw(RAW_PER_RECORD);
            if raws.is_empty() {
                break;
            }
            self.st.release(raws.len() as u64, bytes);
            self.spool_raw(&raws, DropReason::QueueFull);
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
    fn drain(&mut self, max: usize) -> (usize, u64) {
        self.drain_with(|lanes, st, f| lanes.take(st, max, f))
    }

    /// Takes every event published before the call (for an exact `flush()`).
    fn drain_published(&mut self) -> (usize, u64) {
        let bound = self.st.queued_events();
        self.drain_with(|lanes, st, f| lanes.take_published(st, bound, f))
    }

    fn drain_with(
        &mut self,
        take: impl FnOnce(&mut Lanes, &ProcState, &mut dyn FnMut(RawEvent) -> Option<String>) -> usize,
    ) -> (usize, u64) {
        let mut lanes = std::mem::take(&mut self.lanes);
        let st = Arc::clone(&self.st);
        let (mut events, mut bytes, mut all_bytes) = (0u64, 0u64, 0u64);
        let mut share = CpuShare::new();
        let n = take(&mut lanes, &st, &mut |raw| {
            events += 1;
            bytes += raw.body.len() as u64;
            all_bytes += raw.body.len() as u64;
            let body = self.process(raw);
            // Behind: more than a wake-up's worth waits beyond what this drain took.
            share.tick_unless(|| st.queued_events().saturating_sub(events) > BEHIND_EVENTS);
            if events == DRAIN_CHUNK as u64 {
                // A long take (a flush of a full queue) frees room for producers and ships full
                // batches every chunk, so it holds at most a chunk of rows and shows progress in
                // the counters instead of validating the whole queue before delivering any.
                st.release(events, bytes);
                (events, bytes) = (0, 0);
                self.deliver_due(Instant::now());
            }
            body
        });
        self.lanes = lanes;
        if events > 0 {
            st.release(events, bytes);
        }
        (n, all_bytes)
    }

    /// Routes one event, then keeps it as it is when the sink takes events (`events`), else
    /// validates it: its row joins a batch, or it waits to be dead-lettered. An event no route
    /// takes (`[[routes]]`) is counted dropped, `unrouted`. Returns the body when the event is
    /// not kept, for reuse.
    fn process(&mut self, raw: RawEvent) -> Option<String> {
        // One processor for the whole event, even if a reload stores another meanwhile.
        let processor = self.parts.processor.load();
        if self.inbox.is_none() && processor.route(&raw).is_empty() {
            self.counters.drop_events(DropReason::Unrouted, 1);
            self.unrouted += 1;
            return Some(raw.body);
        }
        // Kept as it is when the sink takes events (a copy: the buffer goes back at once).
        if let Some(events) = &mut self.events {
            return Some(events.keep(raw));
        }
        // The copy is this destination's: its own `[[transforms]]` apply too.
        let destination = match &self.inbox {
            Some(inbox) => inbox.name(),
            None => self.parts.destinations[0].0.as_str(),
        };
        match processor.process_for(&raw, Some(destination), &self.counters) {
            Ok((dest, row)) => self.batcher.add(&dest, row),
            Err(rejected) => self.rejects.push(*rejected),
        }
        Some(raw.body)
    }

    /// Shutdown: drain everything (including events whose producers are mid-push), deliver until
    /// the deadline, count the rest as dropped, close the sink.
    fn stop(&mut self, deadline: Instant) -> bool {
        self.stopping = self.spool.is_some();
        loop {
            let (drained, _) = self.drain(DRAIN_CHUNK);
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
        let mut ok = self.settle(deadline);
        if self.spool.is_some() {
            // Events still queued (not even validated) are kept raw.
            let (raws, bytes) = self.take_raw(usize::MAX);
            if !raws.is_empty() {
                ok = false;
                self.st.release(raws.len() as u64, bytes);
                self.keep_raw(&raws);
            }
        }
        // SeqCst pairs with producers' reservations: a producer either sees `finished` and
        // backs out, or its reservation is counted in `queued_events` below and waited for.
        self.st.finished.store(true, Ordering::SeqCst);
        let before = self.st.queued_events();
        drop_leftovers(&mut self.lanes, &self.st, DropReason::ShutdownDeadline);
        // Last: the sink's last report then carries every count, leftovers included.
        ok &= self.close();
        ok && before == 0
    }

    /// At shutdown, once everything was taken: delivers what is batched and dead-letters what
    /// was rejected if the deadline allows; past it, spools them (or drops them, counted).
    /// True when everything was delivered or stored.
    fn settle(&mut self, deadline: Instant) -> bool {
        let mut ok = true;
        if Instant::now() < deadline {
            self.deliver_all();
            self.dead_letter_rejects();
        } else {
            ok = false;
        }
        // Past the deadline: rows go to the spool if there is one, else they are dropped.
        self.batcher.close_all();
        for b in &self.batcher.take_ready() {
            ok = false;
            self.spool_batch(b, DropReason::ShutdownDeadline);
        }
        ok &= self.spool_pending_events();
        if !self.rejects.is_empty() {
            ok = false;
            let rejects = std::mem::take(&mut self.rejects);
            if self.spool.is_some() {
                self.spool_dead_letters(&rejects);
            } else {
                self.counters
                    .drop_events(DropReason::ShutdownDeadline, rejects.len() as u64);
            }
        }
        ok
    }

    /// Keeps events not yet validated in the spool, in records of [`RAW_PER_RECORD`] (dropped,
    /// counted `shutdown_deadline`, when they cannot be).
    fn keep_raw(&mut self, raws: &[RawEvent]) {
        for chunk in raws.chunks(RAW_PER_RECORD) {
            self.spool_raw(chunk, DropReason::ShutdownDeadline);
        }
    }

    /// The end: tells the hook, closes the sink. True when nothing this thread took was
    /// spooled or dropped since the last flush() answer, and the sink closed cleanly.
    fn close(&mut self) -> bool {
        let mut ok = self.own_spooled == 0 && self.lost == 0;
        self.report.send(&self.parts.hook, &self.counters);
        self.report_due(Instant::now(), true);
        if let Err(e) = self.sink.close() {
            self.counters.sink_error(self.sink.name(), e.kind());
            ok = false;
        }
        ok
    }
}

/// The requests waiting for a flush thread: the `flush()` callers to answer, and the
/// `shutdown()` (deadline, answer) if one came.
#[allow(clippy::type_complexity)]
fn take_requests(
    st: &ProcState,
) -> (
    Vec<crossbeam_channel::Sender<bool>>,
    Option<(Instant, crossbeam_channel::Sender<bool>)>,
) {
    let mut flush_waiters = Vec::new();
    let mut shutdown = None;
    while let Ok(req) = st.requests.1.try_recv() {
        match req {
            Request::Flush(tx) => flush_waiters.push(tx),
            Request::Shutdown { deadline, done } => shutdown = Some((deadline, done)),
        }
    }
    (flush_waiters, shutdown)
}
