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
//! held more than one round takes), at the thread's next idle moment (nothing queued, no batch
//! pending), at most once per [`TRIM_EVERY`] process-wide; and unless the backlog was a burst
//! (full rounds in a row adding up to [`TRIM_BURST`] events), only once no round has taken a
//! backlog for [`TRIM_QUIET`]. A steady flow never pays for it. Counting events "since
//! the thread was last idle", as this did first, made steady flows trim too: paced, the thread
//! takes about a wake-up's worth per round, and the events logged during its delivery keep the
//! queue from being empty for seconds, so the count crossed the mark (php-fpm, one request at a
//! time: a trim of ~33 `madvise` calls every few seconds per worker, and 2.6 times the flush
//! threads' page faults; docs/php-cost.md, session 20). Trimming at the first idle moment after
//! a backlog, as it did next, made a saturated host trim over and over: there a flush thread
//! that waited for a CPU finds a full chunk now and then, and gave back at once the pages the
//! next backlog faulted in again (16 php-fpm workers at saturation: 2–17 trims and 45–436
//! `madvise` calls in 5 s, about half after this rule; session 21). A trim that is due but
//! deferred (by the quiet time or the rate limit) runs at a later idle moment: the idle park
//! comes back within [`TRIM_EVERY`] while one is pending, so memory goes back within ~2 s of a
//! burst's end, and within `TRIM_QUIET` + ~2 s of a smaller backlog's.

use std::time::{Duration, Instant};

use super::DRAIN_CHUNK;

/// A round that takes this many events (a full chunk) found a burst or a backlog.
const TRIM_BACKLOG: usize = DRAIN_CHUNK;
/// At most one trim per this interval, process-wide.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(1);
/// A backlog that came in full rounds adding up to this many events (or one round that took
/// them, as `flush()` does after a burst) is a burst: trimmed at the next idle moment.
const TRIM_BURST: usize = 4 * DRAIN_CHUNK;
/// A smaller backlog is trimmed only once no round has taken one for this long: it is more
/// likely a thread that keeps falling behind on a saturated host, which would fault the pages
/// in again, than a burst that is over.
const TRIM_QUIET: Duration = Duration::from_secs(5);

/// Whether a trim is due, and the trim itself (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Trim {
    /// A burst ([`TRIM_BURST`]) since the last trim: no quiet time to wait for.
    burst: bool,
    /// Events taken by the current run of full rounds.
    run: usize,
    /// When a round last took a backlog, if one has since the last trim (a trim is pending).
    last_backlog: Option<Instant>,
}

impl Trim {
    /// A round took `n` events.
    pub(super) fn took(&mut self, n: usize) {
        if n >= TRIM_BACKLOG {
            self.took_backlog_at(n, Instant::now());
        } else {
            self.run = 0;
        }
    }

    fn took_backlog_at(&mut self, n: usize, now: Instant) {
        self.run = self.run.saturating_add(n);
        self.burst |= self.run >= TRIM_BURST;
        self.last_backlog = Some(now);
    }

    /// Whether a trim is due at `now`: a burst since the last one, or a backlog and none for
    /// [`TRIM_QUIET`].
    fn due(&self, now: Instant) -> bool {
        self.last_backlog
            .is_some_and(|t| self.burst || now.saturating_duration_since(t) >= TRIM_QUIET)
    }

    /// The thread is about to park with nothing queued.
    pub(super) fn idle(&mut self) {
        if !self.due(Instant::now()) {
            return;
        }
        static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.last_backlog = None;
        self.burst = false;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim has no preconditions; it only takes glibc's arena locks.
            #[allow(unsafe_code)]
            let _ = unsafe { libc::malloc_trim(0) };
        }
    }

    /// Whether a trim is waiting for an idle moment (the idle park then comes back sooner).
    pub(super) fn is_pending(&self) -> bool {
        self.last_backlog.is_some()
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
    fn a_trim_waits_until_backlogs_stop_for_the_quiet_time() {
        let mut trim = Trim::default();
        let t0 = Instant::now();
        trim.took_backlog_at(TRIM_BACKLOG, t0);
        trim.took(3);
        assert!(trim.is_pending());
        assert!(!trim.due(t0), "not at the backlog's own idle moment");
        assert!(!trim.due(t0 + TRIM_QUIET - Duration::from_millis(1)));
        // A thread that keeps falling behind (a saturated host) keeps putting it off.
        let t1 = t0 + TRIM_QUIET / 2;
        trim.took_backlog_at(TRIM_BACKLOG + 10, t1);
        trim.took(3);
        assert!(!trim.due(t0 + TRIM_QUIET));
        assert!(!trim.due(t1 + TRIM_QUIET - Duration::from_millis(1)));
        assert!(trim.due(t1 + TRIM_QUIET), "due once the backlogs stopped");
    }

    #[test]
    fn a_burst_is_trimmed_at_the_next_idle_moment() {
        // Full rounds in a row that add up to a burst (the producer outran the thread)...
        let mut trim = Trim::default();
        let t0 = Instant::now();
        for _ in 0..TRIM_BURST / TRIM_BACKLOG {
            trim.took_backlog_at(TRIM_BACKLOG, t0);
        }
        trim.took(3);
        assert!(trim.due(t0), "no quiet time after a burst");
        // ... or one round that took it all (`flush()` after a burst).
        let mut trim = Trim::default();
        trim.took_backlog_at(TRIM_BURST, t0);
        assert!(trim.due(t0));
        // Full rounds with short ones between them are a thread falling behind, not a burst.
        let mut trim = Trim::default();
        for _ in 0..10 {
            trim.took_backlog_at(TRIM_BACKLOG, t0);
            trim.took(3);
        }
        assert!(!trim.due(t0));
    }

    #[test]
    fn a_full_chunk_asks_for_one_trim_at_an_idle_moment_after_the_quiet_time() {
        let mut trim = Trim::default();
        trim.took(TRIM_BACKLOG);
        trim.took(3);
        assert!(
            trim.is_pending(),
            "a backlog is remembered until the thread is idle"
        );
        trim.idle();
        assert!(trim.is_pending(), "the quiet time has not passed");
        // As if the backlog had come TRIM_QUIET ago (Instant counts from boot, well past it).
        let earlier = Instant::now().checked_sub(TRIM_QUIET).expect("uptime");
        trim.took_backlog_at(TRIM_BACKLOG, earlier);
        trim.took(3);
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
