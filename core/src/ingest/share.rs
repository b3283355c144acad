//! Sharing the CPU during a long run of events on one thread.
//!
//! One wake-up of the SDK's flush thread brings up to 512 events to validate (~0.7 ms at
//! ~1.3 µs each); one collector request brings up to `collector.max_batch_events`. On a host
//! whose cores are all busy (a web host), a page's thread queued behind such a run on the same
//! core waits for all of it: that was most of a php-fpm page's p99 cost. [`CpuShare`] yields the
//! CPU (`sched_yield`) once a run has taken [`YIELD_AFTER`] since it started or last yielded,
//! so a waiting thread gets in within about that; when nothing else wants the CPU a yield is
//! one cheap syscall. Measured by time, not by a count of events, because an event costs
//! ~0.1 µs when kept as logged (the forward sink's `format = "events"`) and ~1–3 µs when
//! validated: a count right for one would yield every ~6 µs for the other, and those
//! switches raised the page's own CPU time (docs/php-cost.md, session 14).
//!
//! A yield that takes [`CONTENDED_AFTER`] or longer to come back found every core busy with
//! threads that each run a whole time slice (a saturated host): the rest of that run, and
//! this thread's runs for [`CONTENDED_FOR`] after it, keep the CPU; then a yield probes again.
//! There a yield lets no page in sooner, since the pages are the queue it joins, and each one
//! costs the run another trip through that queue: under 16 saturated php-fpm workers (null
//! sink) the flush threads yielding every 50 µs ran 8,400–12,300 times in 4 s, ~6 ms on the
//! run queue each time, and 2,600–5,400 times with this rule, with a lower and steadier p99 for
//! the pages (docs/php-cost.md, session 26).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a run holds the CPU before it yields.
pub const YIELD_AFTER: Duration = Duration::from_micros(50);
/// A yield that took this long to come back found the CPU contended (see the module docs).
/// One request at a time a yield comes back within a page's run, ~0.1 ms; on a saturated
/// 2-core host it takes ~6 ms.
pub const CONTENDED_AFTER: Duration = Duration::from_millis(1);
/// How long a thread whose yield found the CPU contended keeps it in its next runs.
pub const CONTENDED_FOR: Duration = Duration::from_millis(100);
/// Events between two readings of the clock (a reading is ~20–40 ns in a VM).
const CHECK_EVERY: u32 = 16;

thread_local! {
    /// Until when this thread's runs keep the CPU: set by a yield that found it contended.
    static KEEP_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Yields the CPU every [`YIELD_AFTER`] of a run, until a yield finds it contended;
/// [`CpuShare::tick`] after each event.
#[derive(Debug)]
pub struct CpuShare {
    since: Instant,
    after: Duration,
    contended_after: Duration,
    contended_for: Duration,
    unchecked: u32,
}

impl CpuShare {
    /// A run starting now.
    pub fn new() -> Self {
        Self::with_period(YIELD_AFTER)
    }

    /// A run starting now that yields every `after`.
    pub fn with_period(after: Duration) -> Self {
        Self::with_limits(after, CONTENDED_AFTER, CONTENDED_FOR)
    }

    /// A run starting now that yields every `after`, unless a yield of this thread's took
    /// `contended_after` or longer, in this run or less than `contended_for` ago.
    fn with_limits(after: Duration, contended_after: Duration, contended_for: Duration) -> Self {
        let since = Instant::now();
        let keep = KEEP_UNTIL
            .with(|k| k.get())
            .is_some_and(|until| since < until);
        Self {
            since,
            after: if keep { Duration::MAX } else { after },
            contended_after,
            contended_for,
            unchecked: 0,
        }
    }

    /// One more event done: yields if the run has held the CPU for the period. Returns whether
    /// it yielded.
    #[inline]
    pub fn tick(&mut self) -> bool {
        self.tick_unless(|| false)
    }

    /// As [`tick`](Self::tick), but does not yield when `behind()` says the run is late (asked
    /// only once the period has passed). A thread that yields on a host whose cores are all
    /// busy gets the CPU back only after other threads' time slices, several ms each: when the
    /// events it serves arrive faster than that, yielding lets them pile up (under 16 saturated
    /// php-fpm workers, always yielding raised each worker's steady memory by 2.2–3.2 MiB), so a
    /// late run keeps the CPU until it has caught up.
    #[inline]
    pub fn tick_unless(&mut self, behind: impl FnOnce() -> bool) -> bool {
        self.unchecked += 1;
        if self.unchecked < CHECK_EVERY {
            return false;
        }
        self.unchecked = 0;
        if self.since.elapsed() < self.after {
            return false;
        }
        self.since = Instant::now();
        if behind() {
            return false;
        }
        let asked = Instant::now();
        std::thread::yield_now();
        self.since = Instant::now();
        if self.since.duration_since(asked) >= self.contended_after {
            self.after = Duration::MAX;
            KEEP_UNTIL.with(|k| k.set(Some(self.since + self.contended_for)));
        }
        true
    }
}

impl Default for CpuShare {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forgets an earlier contended yield of this thread: with `--test-threads=1` the tests
    /// share one thread, and its KEEP_UNTIL with it.
    fn fresh_thread_state() {
        KEEP_UNTIL.with(|k| k.set(None));
    }

    #[test]
    fn yields_only_once_the_period_has_passed_and_then_restarts_it() {
        fresh_thread_state();
        let mut share = CpuShare::with_period(Duration::from_secs(3600));
        assert!((0..1000).all(|_| !share.tick()), "an hour has not passed");
        // Never contended, however long a yield takes on a busy test machine.
        let mut share = CpuShare::with_limits(Duration::ZERO, Duration::MAX, Duration::ZERO);
        let yielded: Vec<bool> = (0..CHECK_EVERY * 2).map(|_| share.tick()).collect();
        let at: Vec<usize> = (0..yielded.len()).filter(|&i| yielded[i]).collect();
        assert_eq!(at, [CHECK_EVERY as usize - 1, 2 * CHECK_EVERY as usize - 1]);
    }

    #[test]
    fn a_yield_that_found_the_cpu_contended_is_the_last_for_a_while() {
        fresh_thread_state();
        // Every yield counts as contended here (`contended_after` zero): the first is the
        // run's only one.
        let hour = Duration::from_secs(3600);
        let mut share = CpuShare::with_limits(Duration::ZERO, Duration::ZERO, hour);
        assert_eq!((0..CHECK_EVERY * 4).filter(|_| share.tick()).count(), 1);
        // The thread's next runs keep the CPU while `contended_for` lasts...
        let mut share = CpuShare::with_limits(Duration::ZERO, Duration::ZERO, hour);
        assert!((0..CHECK_EVERY * 4).all(|_| !share.tick()));
        // ...and another thread's do not.
        std::thread::spawn(move || {
            let mut share = CpuShare::with_limits(Duration::ZERO, Duration::MAX, hour);
            assert!((0..CHECK_EVERY).any(|_| share.tick()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn after_contended_for_a_run_yields_again() {
        fresh_thread_state();
        let mut share = CpuShare::with_limits(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert_eq!((0..CHECK_EVERY * 4).filter(|_| share.tick()).count(), 1);
        // `contended_for` zero: over at once, so the next run probes with a yield again.
        let mut share = CpuShare::with_limits(Duration::ZERO, Duration::MAX, Duration::ZERO);
        assert!((0..CHECK_EVERY).any(|_| share.tick()));
    }

    #[test]
    fn a_run_that_is_behind_keeps_the_cpu() {
        fresh_thread_state();
        let mut share = CpuShare::with_period(Duration::ZERO);
        let mut asked = 0;
        for _ in 0..CHECK_EVERY * 3 {
            assert!(!share.tick_unless(|| {
                asked += 1;
                true
            }));
        }
        assert_eq!(asked, 3, "asked once per check, when the period has passed");
    }
}
