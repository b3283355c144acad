//! A destination's delivery thread, with several destinations: the flush thread (the router,
//! `router`) sends it the events routed to it, in order, through its inbox; it validates,
//! batches, delivers, retries, spools and replays them as the single flush thread does with one
//! destination (the same [`Worker`], with its own sink, breakers, spool directory and
//! counters). It never waits for another destination, and the router never waits for it.
//!
//! The inbox carries, in order: events ([`Msg::Events`]), flush markers ([`Msg::Flush`]) and
//! the shutdown ([`Msg::Shutdown`], last). Since a marker follows every event the router sent
//! before it, answering a marker after processing everything before it is what makes
//! `flush()` exact per destination; the router joins the answers ([`FlushJoin`]).
//!
//! The inbox is bounded by `[queue]` (`capacity` events, `max_bytes` bytes), per destination:
//! the router counts what it sent and the thread what it took ([`DestShared`]); a copy that
//! does not fit is dropped, counted for the destination (`queue_full`), and makes the next
//! `flush()` answer false. So a destination whose sink is down for minutes holds at most its
//! own bound, and with its spool on, its breaker moves its batches to the spool within a
//! retry budget, so it keeps draining its inbox meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::{Worker, DRAIN_CHUNK, RAW_PER_RECORD};
use crate::counters::{Counters, DropReason, Stats};
use crate::ingest::RawEvent;

/// What the router sends a destination's thread.
pub(super) enum Msg {
    /// Events routed to it, in the order taken.
    Events(Vec<RawEvent>),
    /// Deliver everything before this, then answer.
    Flush(Arc<FlushJoin>),
    /// Deliver what is left until `deadline`, answer, stop.
    Shutdown {
        deadline: Instant,
        done: Sender<bool>,
    },
}

/// What the router, a destination's thread and `stats()` share about one destination.
#[derive(Debug)]
pub(in crate::pipeline) struct DestShared {
    /// The destination's name (a metric label).
    pub(super) name: String,
    /// Its counters: the copies routed to it and what became of them.
    pub(super) counters: Arc<Counters>,
    /// Copies in its inbox: sent by the router, not yet taken by its thread.
    events: AtomicU64,
    /// Their body bytes.
    bytes: AtomicU64,
    /// Copies the router dropped for it (inbox full) since its last flush() answer.
    lost: AtomicU64,
}

impl DestShared {
    pub(in crate::pipeline) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            counters: Arc::new(Counters::new()),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// The destination's name and reading (its inbox is its queue).
    pub(in crate::pipeline) fn snapshot(&self) -> (String, Stats) {
        let queued = self.events.load(Ordering::Relaxed);
        (self.name.clone(), self.counters.snapshot(queued))
    }

    /// Reserves room for one copy of `bytes` bytes in the inbox, if it fits the bound. Only
    /// the router adds, so checking then adding cannot overshoot.
    pub(super) fn admit(&self, bytes: u64, max_events: u64, max_bytes: u64) -> bool {
        if self.events.load(Ordering::Relaxed) >= max_events
            || self.bytes.load(Ordering::Relaxed) + bytes > max_bytes
        {
            return false;
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    /// A copy that did not fit: counted dropped for the destination.
    pub(super) fn refused(&self) {
        self.counters.drop_events(DropReason::QueueFull, 1);
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn release(&self, events: u64, bytes: u64) {
        self.events.fetch_sub(events, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One `flush()` round across destinations: answers the callers once every destination has.
#[derive(Debug)]
pub(super) struct FlushJoin {
    remaining: AtomicUsize,
    ok: AtomicBool,
    waiters: Mutex<Vec<Sender<bool>>>,
}

impl FlushJoin {
    pub(super) fn new(destinations: usize, waiters: Vec<Sender<bool>>) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(destinations),
            ok: AtomicBool::new(true),
            waiters: Mutex::new(waiters),
        })
    }

    /// One destination's answer; the last one answers the callers.
    pub(super) fn answer(&self, ok: bool) {
        if !ok {
            self.ok.store(false, Ordering::SeqCst);
        }
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            let ok = self.ok.load(Ordering::SeqCst);
            for w in self
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                let _ = w.send(ok);
            }
        }
    }
}

/// A destination thread's end of its inbox.
#[derive(Debug)]
pub(super) struct Inbox {
    rx: Receiver<Msg>,
    dest: Arc<DestShared>,
    /// Events received and not yet taken.
    backlog: VecDeque<RawEvent>,
}

impl Inbox {
    /// Its destination's name.
    pub(super) fn name(&self) -> &str {
        &self.dest.name
    }

    pub(super) fn new(rx: Receiver<Msg>, dest: Arc<DestShared>) -> Self {
        Self {
            rx,
            dest,
            backlog: VecDeque::new(),
        }
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Events(v) => write!(f, "Events({})", v.len()),
            Msg::Flush(_) => f.write_str("Flush"),
            Msg::Shutdown { deadline, .. } => write!(f, "Shutdown({deadline:?})"),
        }
    }
}

impl Worker {
    fn inbox(&mut self) -> &mut Inbox {
        self.inbox
            .as_mut()
            .expect("a destination's thread has an inbox")
    }

    /// A destination's thread (see the module docs): until the shutdown message, or until the
    /// router is gone without one (it could not start every thread).
    pub(super) fn run_inbox(mut self) {
        let rx = self.inbox().rx.clone();
        loop {
            let mut msgs = Vec::new();
            if self.inbox().backlog.is_empty() {
                match rx.recv_timeout(self.wait_time(Instant::now())) {
                    Ok(m) => msgs.push(m),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.stop_inbox(Instant::now());
                        return;
                    }
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) if msgs.is_empty() => {
                        self.stop_inbox(Instant::now());
                        return;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            for m in msgs {
                match m {
                    Msg::Events(events) => self.inbox().backlog.extend(events),
                    Msg::Flush(join) => {
                        self.take_backlog(usize::MAX);
                        self.deliver_all();
                        let lost = self.inbox().dest.lost.swap(0, Ordering::Relaxed);
                        // Spooled or dropped is not delivered: say so.
                        join.answer(self.own_spooled == 0 && self.lost == 0 && lost == 0);
                        self.lost = 0;
                    }
                    Msg::Shutdown { deadline, done } => {
                        let ok = self.stop_inbox(deadline);
                        let _ = done.send(ok);
                        return;
                    }
                }
            }
            self.spill_inbox();
            self.take_backlog(DRAIN_CHUNK);
            let now = Instant::now();
            self.deliver_due(now);
            self.replay(now);
        }
    }

    /// Validates and batches up to `max` events of the backlog. Returns how many.
    fn take_backlog(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(raw) = self.inbox().backlog.pop_front() else {
                break;
            };
            self.inbox().dest.release(1, raw.body.len() as u64);
            if let Some(body) = self.process(raw) {
                self.st.recycle(body);
            }
            n += 1;
        }
        n
    }

    /// With `queue.overflow = "spool"`: when the inbox is three quarters full, moves events to
    /// the spool unvalidated until it is half full (as the single flush thread does with the
    /// queue).
    fn spill_inbox(&mut self) {
        if self.parts.queue.overflow != crate::config::Overflow::Spool || self.spool.is_none() {
            return;
        }
        let capacity = self.parts.queue.capacity as u64;
        let waiting = |w: &mut Self| w.inbox().dest.events.load(Ordering::Relaxed);
        if waiting(self) < capacity / 4 * 3 {
            return;
        }
        while waiting(self) > capacity / 2 {
            let raws = self.take_raw_backlog(RAW_PER_RECORD);
            if raws.is_empty() {
                break;
            }
            self.spool_raw(&raws, DropReason::QueueFull);
            for e in raws {
                self.st.recycle(e.body);
            }
        }
    }

    /// Takes up to `max` events of the backlog as they are.
    fn take_raw_backlog(&mut self, max: usize) -> Vec<RawEvent> {
        let inbox = self.inbox();
        let n = max.min(inbox.backlog.len());
        let raws: Vec<RawEvent> = inbox.backlog.drain(..n).collect();
        let bytes = raws.iter().map(|e| e.body.len() as u64).sum();
        inbox.dest.release(raws.len() as u64, bytes);
        raws
    }

    /// Shutdown of a destination's thread: everything the router sent is in the backlog (the
    /// shutdown message is the last). Delivers until the deadline, keeps or drops the rest
    /// (counted), closes the sink.
    fn stop_inbox(&mut self, deadline: Instant) -> bool {
        self.stopping = self.spool.is_some();
        while let Ok(Msg::Events(events)) = self.inbox().rx.try_recv() {
            // Only when the router went away without a shutdown message.
            self.inbox().backlog.extend(events);
        }
        loop {
            self.take_backlog(DRAIN_CHUNK);
            if self.inbox().backlog.is_empty() || Instant::now() >= deadline {
                break;
            }
            self.deliver_due(Instant::now());
        }
        let mut ok = self.settle(deadline);
        let raws = self.take_raw_backlog(usize::MAX);
        if !raws.is_empty() {
            ok = false;
            // Kept raw in the spool, or counted dropped (`shutdown_deadline`).
            self.keep_raw(&raws);
        }
        ok &= self.inbox().dest.lost.swap(0, Ordering::Relaxed) == 0;
        ok & self.close()
    }
}
