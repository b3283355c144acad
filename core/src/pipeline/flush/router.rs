//! The flush thread with several destinations: the router. It drains the lanes as the single
//! flush thread does, decides each event's destinations ([`Processor::route`]: globs, `where`,
//! `sample`; no validation), and sends each destination its copy through that destination's
//! inbox (`inbox`), where the destination's own thread validates, batches and delivers it.
//!
//! The router never waits for a destination: sending is a channel push, and a copy that does
//! not fit the destination's inbox bound is dropped and counted for that destination. So a
//! destination retrying or backing off for minutes never slows another, whatever its sink
//! does. Counting: an event no route takes is dropped, `unrouted` (the pipeline's counters);
//! each copy is counted accepted by its destination, and an event sent to `k` destinations
//! adds `k - 1` to `fanned_out` (see `crate::counters`).
//!
//! `flush()`: the router takes every event published before the call, sends it, then a flush
//! marker to every destination; the callers are answered when every destination has answered
//! (without the router waiting). Shutdown: the router sends what is queued (until the
//! deadline; the rest is still sent, for the destinations to spool, or dropped if they cannot),
//! stops taking events, sends each destination its shutdown, and waits for their answers until
//! the deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::inbox::{DestShared, FlushJoin, Inbox, Msg};
use super::report::Report;
use super::{drop_leftovers, take_requests, Worker, DRAIN_CHUNK, LEFTOVER_WAIT};
use crate::counters::{Counters, DropReason};
use crate::ingest::RawEvent;
use crate::pipeline::lanes::Lanes;
use crate::pipeline::{FlushParts, ProcState, IDLE_PARK};

/// See the module docs.
pub(super) struct Router {
    parts: FlushParts,
    st: Arc<ProcState>,
    lanes: Lanes,
    outs: Vec<Out>,
    report: Report,
    /// Events no route took since the last report.
    unrouted: u64,
    /// When to wake while events flow (as the single flush thread does).
    pace: super::pace::Pace,
    /// Gives memory back when the router goes idle after a backlog (as the single flush
    /// thread does).
    trim: super::trim::Trim,
    /// Checks the schema files (the router reads the lanes).
    watcher: Option<crate::pipeline::reload::Watcher>,
}

/// One destination, as the router sees it.
struct Out {
    shared: Arc<DestShared>,
    tx: Sender<Msg>,
    /// Copies taken this round, sent together at its end.
    buf: Vec<RawEvent>,
    /// Copies dropped (inbox full) since the last report.
    full: u64,
}

/// A destination's thread before it starts: it builds its sink and opens its spool itself.
pub(super) struct Start {
    parts: FlushParts,
    st: Arc<ProcState>,
    inbox: Inbox,
    counters: Arc<Counters>,
}

impl Start {
    /// Runs the destination's thread (see `inbox`).
    pub(super) fn run(self) {
        Worker::new(self.parts, self.st, self.counters, Some(self.inbox)).run_inbox();
    }
}

impl Router {
    /// The router and, per destination, its name and the start of its thread.
    pub(super) fn new(parts: FlushParts, st: Arc<ProcState>) -> (Self, Vec<(String, Start)>) {
        let parts_watch = parts
            .watch
            .clone()
            .map(crate::pipeline::reload::Watcher::new);
        let mut outs = Vec::new();
        let mut starts = Vec::new();
        for ((name, factory, spool), shared) in parts.destinations.iter().zip(&st.dests) {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut own = parts.clone();
            own.sink_factory = Arc::clone(factory);
            own.spool = spool.clone();
            starts.push((
                name.clone(),
                Start {
                    parts: own,
                    st: Arc::clone(&st),
                    inbox: Inbox::new(rx, Arc::clone(shared)),
                    counters: Arc::clone(&shared.counters),
                },
            ));
            outs.push(Out {
                shared: Arc::clone(shared),
                tx,
                buf: Vec::new(),
                full: 0,
            });
        }
        let router = Self {
            parts,
            st,
            lanes: Lanes::default(),
            outs,
            report: Report::new(),
            unrouted: 0,
            pace: super::pace::Pace::new(Instant::now()),
            trim: super::trim::Trim::default(),
            watcher: parts_watch,
        };
        (router, starts)
    }

    /// Routes until shutdown; `threads` are the destinations' threads, in order.
    pub(super) fn run(mut self, threads: Vec<JoinHandle<()>>) {
        loop {
            let (flush_waiters, shutdown) = take_requests(&self.st);
            if let Some((deadline, done)) = shutdown {
                let ok = self.stop(deadline, threads);
                for w in flush_waiters {
                    let _ = w.send(ok);
                }
                let _ = done.send(ok);
                return;
            }
            if !flush_waiters.is_empty() {
                self.take_published();
                self.send();
                let join = FlushJoin::new(self.outs.len(), flush_waiters);
                for o in &self.outs {
                    if o.tx.send(Msg::Flush(Arc::clone(&join))).is_err() {
                        join.answer(false); // its thread is gone
                    }
                }
                self.report_round();
                continue;
            }
            if let Some(w) = &mut self.watcher {
                w.tick(Instant::now(), &self.st.counters, &self.parts.hook);
            }
            let started = Instant::now();
            let (taken, bytes) = self.take(DRAIN_CHUNK);
            self.pace.took(started, taken, bytes, DRAIN_CHUNK);
            self.send();
            self.report_round();
            self.trim.took(taken);
            if taken == DRAIN_CHUNK {
                continue;
            }
            if self.st.queued_events() == 0 {
                self.trim.idle();
            }
            self.park(Instant::now());
        }
    }

    /// Waits for events: while they flow, for about a wake-up's worth at their recent rate, at
    /// most 100 ms and a quarter of `batch.max_age` (what the router may add to a row's age; see
    /// [`super::pace`]); idle, until the first.
    fn park(&mut self, now: Instant) {
        let idle = match &self.watcher {
            Some(w) => IDLE_PARK.min(w.due_in(now).max(Duration::from_millis(1))),
            None => IDLE_PARK,
        };
        super::park(&self.st, &self.parts, &mut self.pace, now, false, idle);
    }

    /// Takes up to `max` events from the lanes and routes them. Returns how many, and their
    /// bytes.
    fn take(&mut self, max: usize) -> (usize, u64) {
        let mut lanes = std::mem::take(&mut self.lanes);
        let st = Arc::clone(&self.st);
        let mut bytes = 0u64;
        let n = lanes.take(&st, max, |raw| {
            bytes += raw.body.len() as u64;
            self.route(raw)
        });
        self.lanes = lanes;
        if n > 0 {
            st.release(n as u64, bytes);
        }
        (n, bytes)
    }

    /// Takes every event published before the call (an exact `flush()`).
    fn take_published(&mut self) -> usize {
        let mut lanes = std::mem::take(&mut self.lanes);
        let st = Arc::clone(&self.st);
        let bound = st.queued_events();
        let (mut events, mut bytes) = (0u64, 0u64);
        let n = lanes.take_published(&st, bound, |raw| {
            events += 1;
            bytes += raw.body.len() as u64;
            let body = self.route(raw);
            if events == DRAIN_CHUNK as u64 {
                // A flush of a full queue frees room for producers and hands events on every
                // chunk, so the destinations deliver while the router still takes.
                st.release(events, bytes);
                (events, bytes) = (0, 0);
                self.send();
            }
            body
        });
        self.lanes = lanes;
        if events > 0 {
            st.release(events, bytes);
        }
        n
    }

    /// Gives `raw` to the destinations its routes select (copies to all but the last);
    /// returns its body when none took it, for reuse.
    fn route(&mut self, raw: RawEvent) -> Option<String> {
        let to = self.parts.processor.load().route(&raw);
        if to.is_empty() {
            self.st.counters.drop_events(DropReason::Unrouted, 1);
            self.unrouted += 1;
            return Some(raw.body);
        }
        let k = to.len();
        if k > 1 {
            self.st.counters.fan_out(k as u64 - 1);
        }
        let mut last = 0;
        for (n, i) in to.iter().enumerate() {
            if n + 1 == k {
                last = i;
                break;
            }
            let mut body = self.st.pool.pop().unwrap_or_default();
            body.clear();
            body.push_str(&raw.body);
            let copy = RawEvent {
                namespace: raw.namespace.clone(),
                type_name: raw.type_name.clone(),
                time: raw.time,
                received_at: raw.received_at,
                id: raw.id.clone(),
                body,
            };
            self.give(i, copy);
        }
        self.give(last, raw);
        None
    }

    /// One copy for destination `i`: counted routed there, then into its inbox if it fits the
    /// bound, else dropped (counted for it).
    fn give(&mut self, i: usize, raw: RawEvent) {
        let Some(out) = self.outs.get_mut(i) else {
            return;
        };
        out.shared.counters.accept_n(1);
        let queue = &self.parts.queue;
        if out.shared.admit(
            raw.body.len() as u64,
            queue.capacity as u64,
            queue.max_bytes.0,
        ) {
            out.buf.push(raw);
        } else {
            out.shared.refused();
            out.full += 1;
            self.st.recycle(raw.body);
        }
    }

    /// Sends each destination the copies taken this round.
    fn send(&mut self) {
        for out in &mut self.outs {
            if out.buf.is_empty() {
                continue;
            }
            let events = std::mem::take(&mut out.buf);
            if let Err(e) = out.tx.send(Msg::Events(events)) {
                // Its thread is gone (it could not start): the copies are lost, counted.
                if let Msg::Events(events) = e.0 {
                    for _ in &events {
                        out.shared.refused();
                    }
                    out.full += events.len() as u64;
                }
            }
        }
    }

    /// Tells the hook what this round left unrouted or could not hand to a destination, and
    /// what `log()` refused.
    fn report_round(&mut self) {
        if self.unrouted > 0 {
            let n = std::mem::take(&mut self.unrouted);
            let message = "no route takes these events ([[routes]])".to_string();
            self.report.dropped(DropReason::Unrouted, n, message);
        }
        for out in &mut self.outs {
            if out.full > 0 {
                let n = std::mem::take(&mut out.full);
                let message = format!(
                    "destination {:?} is not keeping up: its queue is full (queue.capacity, \
                     queue.max_bytes per destination), copies for it were dropped",
                    out.shared.name
                );
                self.report.dropped(DropReason::QueueFull, n, message);
            }
        }
        self.report.send(&self.parts.hook, &self.st.counters);
    }

    /// See the module docs. True when every destination delivered everything in time.
    fn stop(&mut self, deadline: Instant, threads: Vec<JoinHandle<()>>) -> bool {
        loop {
            let (taken, _) = self.take(DRAIN_CHUNK);
            self.send();
            if self.st.queued_events() == 0 || Instant::now() >= deadline {
                break;
            }
            if taken == 0 {
                // Producers are between their reservation and their push.
                std::thread::yield_now();
            }
        }
        // Past the deadline too, the rest goes on: the destinations spool it raw (or count
        // it dropped). Sending costs no more than dropping here.
        let give_up = Instant::now() + LEFTOVER_WAIT;
        while self.take(usize::MAX).0 > 0 && Instant::now() < give_up {}
        self.send();
        // SeqCst pairs with producers' reservations (see the single flush thread's `stop`).
        self.st.finished.store(true, Ordering::SeqCst);
        let before = self.st.queued_events();
        drop_leftovers(&mut self.lanes, &self.st, DropReason::ShutdownDeadline);
        let mut answers = Vec::with_capacity(self.outs.len());
        for out in &self.outs {
            let (done, rx) = crossbeam_channel::bounded(1);
            let sent = out.tx.send(Msg::Shutdown { deadline, done }).is_ok();
            answers.push(sent.then_some(rx));
        }
        let mut ok = before == 0;
        for (rx, thread) in answers.into_iter().zip(threads) {
            let wait = deadline.saturating_duration_since(Instant::now())
                + crate::pipeline::SHUTDOWN_GRACE / 2;
            match rx.map(|rx| rx.recv_timeout(wait)) {
                Some(Ok(answer)) => {
                    ok &= answer;
                    // It has answered and is returning.
                    let _ = thread.join();
                }
                _ => ok = false, // still in a sink call past the deadline: left to finish
            }
        }
        self.report_round();
        ok
    }
}
