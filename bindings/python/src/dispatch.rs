//! Error summaries from the flush thread to the Python `on_error` callback.
//!
//! Core calls the error hook on its flush thread, which must never wait for the GIL. The hook
//! only `try_send`s the summary into a bounded channel (a full channel counts the summary as
//! missed); a Python daemon thread started by `evlog._start_dispatcher` takes summaries with the
//! GIL released and calls the callback, logging its exceptions.
//!
//! Fork: the channel is per process. `evlog`'s `os.register_at_fork(after_in_child=...)` calls
//! [`Dispatch::after_fork_child`], which installs a fresh channel (the parent's may be locked by
//! a thread that does not exist in the child) and marks the dispatcher as needed; the child's
//! first `log()` starts its own dispatcher thread. The parent's channel and thread are never
//! touched from the child.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use evlog_core::{ErrorHook, ErrorSummary, Outcome};

/// Summaries waiting for the callback; beyond this they are counted as missed.
const CAPACITY: usize = 1024;

#[derive(Debug)]
struct Channel {
    tx: Sender<ErrorSummary>,
    rx: Receiver<ErrorSummary>,
}

impl Channel {
    fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
        Arc::new(Self { tx, rx })
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
}

impl Dispatch {
    /// A dispatcher that will be started by the first `log()`.
    pub fn new() -> Self {
        Self {
            channel: Arc::new(ArcSwap::new(Channel::new())),
            missed: Arc::new(AtomicU64::new(0)),
            needed: AtomicBool::new(true),
            pid: AtomicU32::new(0),
        }
    }

    /// The hook to install on the pipeline: forwards without ever blocking.
    pub fn hook(&self) -> ErrorHook {
        let channel = Arc::clone(&self.channel);
        let missed = Arc::clone(&self.missed);
        Arc::new(move |s: &ErrorSummary| {
            if channel.load().tx.try_send(s.clone()).is_err() {
                missed.fetch_add(1, Ordering::Relaxed);
            }
        })
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
        let me = std::process::id();
        self.pid.swap(me, Ordering::AcqRel) != me
    }

    /// Called in a forked child (Python's at-fork hook): fresh channel, dispatcher needed.
    pub fn after_fork_child(&self) {
        self.channel.store(Channel::new());
        self.missed.store(0, Ordering::Relaxed);
        self.needed.store(true, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for the next summary. Call with the GIL released.
    pub fn next(&self, timeout: Duration) -> Option<ErrorSummary> {
        let channel = self.channel.load_full();
        channel.rx.recv_timeout(timeout).ok()
    }

    /// Whether the dispatcher thread of this process should keep running.
    pub fn is_current(&self) -> bool {
        self.pid.load(Ordering::Acquire) == std::process::id()
    }

    /// Summaries lost because the callback fell behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Self::new()
    }
}

/// `rejected` / `dropped`, the words DESIGN.md uses.
pub fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Rejected => "rejected",
        Outcome::Dropped => "dropped",
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

    #[test]
    fn hook_never_blocks_and_counts_what_it_cannot_keep() {
        let d = Dispatch::new();
        let hook = d.hook();
        for i in 0..(CAPACITY as u64 + 5) {
            hook(&summary(i));
        }
        assert_eq!(d.missed(), 5);
        assert_eq!(d.next(Duration::ZERO).unwrap().count, 0);
    }

    #[test]
    fn after_fork_child_replaces_the_channel_and_asks_for_a_new_thread() {
        let d = Dispatch::new();
        assert!(d.claim_start());
        assert!(!d.claim_start(), "one start per process");
        d.hook()(&summary(1));
        d.after_fork_child();
        assert!(d.needs_start());
        assert!(
            d.next(Duration::ZERO).is_none(),
            "parent's summaries stay behind"
        );
    }
}
