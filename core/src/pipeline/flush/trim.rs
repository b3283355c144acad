//! Giving memory back after a burst.
//!
//! The bodies of a burst are allocated by the logging threads and freed by the flush thread;
//! glibc keeps freed memory in its arenas and returns a heap's pages only from its top, which
//! live allocations made late in the burst pin, so without a trim a php-fpm worker kept +16 to
//! +30 MiB of free-but-resident heap for its whole life after one burst of 100k events
//! (docs/php-cost.md, section 2). `malloc_trim(0)` returns those pages at once.
//!
//! A trim is not free: it walks every arena (a millisecond or so on a large heap, most of it in
//! `madvise` calls), and the pages it hands back are faulted in again by the next batches. So it
//! runs only after a backlog, a round that took [`TRIM_BACKLOG`] events (a full chunk: the queue
//! held more than one round takes), then at the thread's next idle moment (nothing queued, no
//! batch pending), at most once per [`TRIM_EVERY`] process-wide. A steady flow never pays for
//! it. Counting events "since the thread was last idle", as this did before, made steady flows
//! trim too: paced, the thread takes about a wake-up's worth per round, and the events logged
//! during its delivery keep the queue from being empty for seconds, so the count crossed the
//! mark (php-fpm, one request at a time: a trim of ~33 `madvise` calls every few seconds per
//! worker, and 2.6 times the flush threads' page faults; docs/php-cost.md, session 20). A trim
//! deferred by the rate limit runs at a later idle moment (the idle park is bounded, so within
//! seconds).

use std::time::{Duration, Instant};

use super::DRAIN_CHUNK;

/// A round that takes this many events (a full chunk) found a burst or a backlog.
const TRIM_BACKLOG: usize = DRAIN_CHUNK;
/// At most one trim per this interval, process-wide.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Whether a trim is due, and the trim itself (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Trim {
    /// A round took a backlog since the last trim.
    pending: bool,
}

impl Trim {
    /// A round took `n` events.
    pub(super) fn took(&mut self, n: usize) {
        self.pending |= n >= TRIM_BACKLOG;
    }

    /// The thread is about to park with nothing queued.
    pub(super) fn idle(&mut self) {
        if !self.pending {
            return;
        }
        static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.pending = false;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim has no preconditions; it only takes glibc's arena locks.
            #[allow(unsafe_code)]
            let _ = unsafe { libc::malloc_trim(0) };
        }
    }

    /// Whether a trim is waiting for an idle moment (the idle park then comes back sooner).
    pub(super) fn is_pending(&self) -> bool {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_never_asks_for_a_trim() {
        let mut trim = Trim::default();
        // Paced rounds of a wake-up's worth, never an idle moment between them: the flow of
        // session 20's php-fpm pages, which the old count ("since last idle") trimmed.
        for _ in 0..1000 {
            trim.took(512);
        }
        assert!(!trim.is_pending());
        trim.took(TRIM_BACKLOG - 1);
        assert!(!trim.is_pending());
    }

    #[test]
    fn a_full_chunk_asks_for_one_trim_at_the_next_idle_moment() {
        let mut trim = Trim::default();
        trim.took(TRIM_BACKLOG);
        trim.took(3);
        assert!(
            trim.is_pending(),
            "a backlog is remembered until the thread is idle"
        );
        // The rate limit is process-wide: wait until a trim is allowed (bounded: TRIM_EVERY).
        let deadline = Instant::now() + TRIM_EVERY * 5;
        while trim.is_pending() && Instant::now() < deadline {
            trim.idle();
            if trim.is_pending() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(
            !trim.is_pending(),
            "the idle moment trims and clears the backlog"
        );
        trim.idle();
        assert!(!trim.is_pending());
    }
}
