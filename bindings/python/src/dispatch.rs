//! Error summaries from the flush thread to the Python `on_error` callback.
//!
//! Core calls the error hook on its flush thread, which must never wait for the GIL. The hook
//! only `try_send`s the summary into a bounded channel (a full channel counts the summary as
//! missed) and writes one byte to a non-blocking wake-up socket. A Python daemon thread started
//! by `evlog._start_dispatcher` waits for that byte *in Python* (`select` on [`ErrorFeed`]'s
//! `fileno()`), takes the queued summaries with [`ErrorFeed::take`] (never blocks, never releases
//! the GIL) and calls the callback, logging its exceptions.
//!
//! Why the wait is not in Rust: CPython ends a daemon thread that tries to take the GIL during
//! interpreter finalization with `pthread_exit`, a forced unwind. If that thread is inside a
//! pyo3 method (`allow_threads` retaking the GIL), pyo3's `catch_unwind` trampoline catches the
//! forced unwind and cannot rethrow it: glibc aborts the process ("FATAL: exception not
//! rethrown", SIGABRT). So the dispatcher never holds a Rust frame across a GIL release; and the
//! interpreter-exit hook stops it ([`Dispatch::stop`] after the final shutdown) and joins it
//! before finalization, so it delivers the last summaries and is gone before daemon threads are
//! ended.
//!
//! Accounting: a summary is either queued for a running dispatcher or counted in
//! `evlog_on_error_missed_total` (channel full, or the dispatcher has exited: [`ErrorFeed::close`]
//! counts what it leaves behind and every later summary), never stranded uncounted.
//!
//! Fork: the channel is per process. `evlog`'s `os.register_at_fork(after_in_child=...)` calls
//! [`Dispatch::after_fork_child`], which installs a fresh channel and wake-up socket (the
//! parent's may be locked by a thread that does not exist in the child, and its socket is shared
//! with the parent) and marks the dispatcher as needed; the child's first `log()` starts its own
//! dispatcher thread. The parent's channel and thread are never touched from the child.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use evlog_core::{ErrorHook, ErrorSummary, Outcome};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Summaries waiting for the callback; beyond this they are counted as missed.
const CAPACITY: usize = 1024;

/// The two ends of the wake-up socket, both non-blocking.
#[derive(Debug)]
struct Wake {
    /// Written by the hook (one byte per summary; a full buffer already means "wake up").
    tx: UnixStream,
    /// Waited on by the Python dispatcher (`select`), drained by [`Channel::take`].
    rx: UnixStream,
}

impl Wake {
    fn new() -> std::io::Result<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Self { tx, rx })
    }
}

#[derive(Debug)]
struct Channel {
    tx: Sender<ErrorSummary>,
    rx: Receiver<ErrorSummary>,
    /// None when the socket could not be created: no dispatcher can run, so `closed` starts true.
    wake: Option<Wake>,
    /// The client is shut down or gone: the dispatcher delivers what is queued, then exits.
    stopping: AtomicBool,
    /// The dispatcher has exited (or cannot exist). Held while posting, so a summary is either
    /// queued before [`Channel::close`] drains (and counts) the channel, or counted after.
    closed: Mutex<bool>,
}

impl Channel {
    fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
        let wake = Wake::new().ok();
        let closed = wake.is_none();
        Arc::new(Self {
            tx,
            rx,
            wake,
            stopping: AtomicBool::new(false),
            closed: Mutex::new(closed),
        })
    }

    fn lock_closed(&self) -> std::sync::MutexGuard<'_, bool> {
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hook's side: queue or count, then wake the dispatcher. Never blocks.
    fn post(&self, s: &ErrorSummary, missed: &AtomicU64) {
        {
            let closed = self.lock_closed();
            if *closed || self.tx.try_send(s.clone()).is_err() {
                missed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            // WouldBlock: the buffer is full of unread bytes, so the dispatcher wakes anyway.
            let _ = (&w.tx).write_all(&[1]);
        }
    }

    /// The dispatcher's side: everything queued now, without waiting.
    fn take(&self) -> Vec<ErrorSummary> {
        // Drain the wake-up bytes first: a summary posted after this drain writes a new byte,
        // so the next `select` returns; one posted before it is in the channel below.
        if let Some(w) = &self.wake {
            let mut buf = [0u8; 256];
            while matches!((&w.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
        self.rx.try_iter().collect()
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake();
    }

    fn close(&self, missed: &AtomicU64) {
        let mut closed = self.lock_closed();
        *closed = true;
        let left = self.rx.try_iter().count() as u64;
        missed.fetch_add(left, Ordering::Relaxed);
    }
}

/// The per-client error forwarding state.
#[derive(Debug)]
pub struct Dispatch {
    channel: Arc<ArcSwap<Channel>>,
    missed: Arc<AtomicU64>,
    /// Set when a dispatcher thread should be started by the next `log()` in this process.
    needed: AtomicBool,
    /// The pid whose dispatcher is running (0: none).
    pid: AtomicU32,
    /// [`Dispatch::stop`] was called: no dispatcher is started any more, in this process or a
    /// forked child.
    stopped: AtomicBool,
}

impl Dispatch {
    /// A dispatcher that will be started by the first `log()`.
    pub fn new() -> Self {
        Self {
            channel: Arc::new(ArcSwap::new(Channel::new())),
            missed: Arc::new(AtomicU64::new(0)),
            needed: AtomicBool::new(true),
            pid: AtomicU32::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether a dispatcher can run (false if the wake-up socket could not be created).
    pub fn is_available(&self) -> bool {
        self.channel.load().wake.is_some()
    }

    /// The hook to install on the pipeline: forwards without ever blocking.
    pub fn hook(&self) -> ErrorHook {
        let channel = Arc::clone(&self.channel);
        let missed = Arc::clone(&self.missed);
        Arc::new(move |s: &ErrorSummary| channel.load().post(s, &missed))
    }

    /// Whether `log()` must start a dispatcher thread (cheap; checked on every call).
    #[inline]
    pub fn needs_start(&self) -> bool {
        self.needed.load(Ordering::Relaxed)
    }

    /// Claims the start for this process: true once per process (pid check), so exactly one
    /// caller starts the thread.
    pub fn claim_start(&self) -> bool {
        self.needed.store(false, Ordering::Relaxed);
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        let me = std::process::id();
        self.pid.swap(me, Ordering::AcqRel) != me
    }

    /// What this process's dispatcher thread reads from.
    pub fn feed(&self) -> ErrorFeed {
        ErrorFeed {
            channel: self.channel.load_full(),
            missed: Arc::clone(&self.missed),
        }
    }

    /// After the client's final shutdown (or when it is dropped): the dispatcher delivers what
    /// is queued and exits; no dispatcher is started again.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.needed.store(false, Ordering::Relaxed);
        self.channel.load().stop();
    }

    /// Called in a forked child (Python's at-fork hook): fresh channel, dispatcher needed
    /// (unless the client was stopped before the fork).
    pub fn after_fork_child(&self) {
        let channel = Channel::new();
        let stopped = self.stopped.load(Ordering::Acquire);
        if stopped {
            channel.stop();
        }
        self.channel.store(channel);
        self.missed.store(0, Ordering::Relaxed);
        self.needed.store(!stopped, Ordering::Relaxed);
    }

    /// Summaries the callback did not get: the channel was full, or no dispatcher was left.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        // The client is gone: its dispatcher thread (which holds only a weak reference to the
        // client) must not wait for summaries that can no longer come.
        self.stop();
    }
}

/// What the `evlog-on-error` thread reads: one process's channel of one client. Every method
/// returns at once and keeps the GIL, so the thread never retakes the GIL inside Rust (see the
/// module docs); it waits in Python with `select.select([feed], [], [])`.
#[pyclass(module = "evlog", name = "_ErrorFeed", frozen)]
#[derive(Debug)]
pub struct ErrorFeed {
    channel: Arc<Channel>,
    missed: Arc<AtomicU64>,
}

#[pymethods]
impl ErrorFeed {
    /// The wake-up socket: readable when summaries may be queued or the feed is stopping.
    fn fileno(&self) -> PyResult<i32> {
        match &self.channel.wake {
            Some(w) => Ok(w.rx.as_raw_fd()),
            None => {
                Err(crate::error::Error::Dispatch("the on_error feed has no wake-up socket").into())
            }
        }
    }

    /// Every summary queued now, as dicts (`outcome`, `reason`, `count`, `message`).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.channel
            .take()
            .into_iter()
            .map(|s| summary_dict(py, s))
            .collect()
    }

    /// The client was shut down or dropped: deliver what `take()` returns, then exit.
    #[getter]
    fn stopping(&self) -> bool {
        self.channel.stopping.load(Ordering::Acquire)
    }

    /// The dispatcher is exiting: what is left, and every later summary, counts as missed.
    fn close(&self) {
        self.channel.close(&self.missed);
    }
}

fn summary_dict(py: Python<'_>, s: ErrorSummary) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("outcome", outcome_str(s.outcome))?;
    out.set_item("reason", s.reason)?;
    out.set_item("count", s.count)?;
    out.set_item("message", s.message)?;
    Ok(out)
}

/// `rejected` / `dropped`, the words of docs/contracts.md.
pub fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Rejected => "rejected",
        Outcome::Dropped => "dropped",
        Outcome::ReloadRefused => "reload_refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(n: u64) -> ErrorSummary {
        ErrorSummary {
            outcome: Outcome::Dropped,
            reason: "queue_full".into(),
            count: n,
            message: "full".into(),
        }
    }

    fn readable(feed: &ErrorFeed) -> bool {
        let mut b = [0u8; 1];
        let rx = &feed.channel.wake.as_ref().unwrap().rx;
        // peek would be nicer; a read that finds a byte proves the wake-up, take() drains anyway.
        matches!((&*rx).read(&mut b), Ok(1))
    }

    #[test]
    fn hook_never_blocks_and_counts_what_it_cannot_keep() {
        let d = Dispatch::new();
        let hook = d.hook();
        for i in 0..(CAPACITY as u64 + 5) {
            hook(&summary(i));
        }
        assert_eq!(d.missed(), 5);
        let got = d.feed().channel.take();
        assert_eq!(got.len(), CAPACITY);
        assert_eq!(got[0].count, 0);
    }

    #[test]
    fn a_summary_or_a_stop_wakes_the_feed() {
        let d = Dispatch::new();
        let feed = d.feed();
        assert!(!readable(&feed), "nothing posted yet");
        d.hook()(&summary(1));
        assert!(readable(&feed));
        assert_eq!(feed.channel.take().len(), 1);
        assert!(!readable(&feed), "take() drained the wake-up bytes");
        d.stop();
        assert!(readable(&feed));
        assert!(feed.channel.stopping.load(Ordering::Acquire));
        assert!(!d.claim_start(), "a stopped client starts no dispatcher");
    }

    #[test]
    fn after_close_every_summary_is_counted_as_missed() {
        let d = Dispatch::new();
        let feed = d.feed();
        let hook = d.hook();
        hook(&summary(1));
        hook(&summary(2));
        feed.channel.close(&feed.missed);
        assert_eq!(d.missed(), 2, "left in the channel");
        hook(&summary(3));
        assert_eq!(d.missed(), 3, "posted after the dispatcher exited");
        assert!(feed.channel.take().is_empty());
    }

    #[test]
    fn after_fork_child_replaces_the_channel_and_asks_for_a_new_thread() {
        let d = Dispatch::new();
        assert!(d.claim_start());
        assert!(!d.claim_start(), "one start per process");
        let parent = d.feed();
        d.hook()(&summary(1));
        d.after_fork_child();
        assert!(d.needs_start());
        assert!(
            d.feed().channel.take().is_empty(),
            "parent's summaries stay behind"
        );
        assert_ne!(
            d.feed().channel.wake.as_ref().unwrap().rx.as_raw_fd(),
            parent.channel.wake.as_ref().unwrap().rx.as_raw_fd(),
            "the child has its own wake-up socket"
        );
    }

    #[test]
    fn a_client_stopped_before_the_fork_starts_no_dispatcher_in_the_child() {
        let d = Dispatch::new();
        d.stop();
        d.after_fork_child();
        assert!(!d.needs_start());
        assert!(d.feed().channel.stopping.load(Ordering::Acquire));
    }
}
