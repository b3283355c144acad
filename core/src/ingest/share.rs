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

use std::time::{Duration, Instant};

/// How long a run holds the CPU before it yields.
pub const YIELD_AFTER: Duration = Duration::from_micros(50);
/// Events between two readings of the clock (a reading is ~20–40 ns in a VM).
const CHECK_EVERY: u32 = 16;

/// Yields the CPU every [`YIELD_AFTER`] of a run; [`CpuShare::tick`] after each event.
#[derive(Debug)]
pub struct CpuShare {
    since: Instant,
    after: Duration,
    unchecked: u32,
}

impl CpuShare {
    /// A run starting now.
    pub fn new() -> Self {
        Self::with_period(YIELD_AFTER)
    }

    /// A run starting now that yields every `after`.
    pub fn with_period(after: Duration) -> Self {
        Self {
            since: Instant::now(),
            after,
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
        std::thread::yield_now();
        self.since = Instant::now();
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

    #[test]
    fn yields_only_once_the_period_has_passed_and_then_restarts_it() {
        let mut share = CpuShare::with_period(Duration::from_secs(3600));
        assert!((0..1000).all(|_| !share.tick()), "an hour has not passed");
        let mut share = CpuShare::with_period(Duration::ZERO);
        let yielded: Vec<bool> = (0..CHECK_EVERY * 2).map(|_| share.tick()).collect();
        let at: Vec<usize> = (0..yielded.len()).filter(|&i| yielded[i]).collect();
        assert_eq!(at, [CHECK_EVERY as usize - 1, 2 * CHECK_EVERY as usize - 1]);
    }

    #[test]
    fn a_run_that_is_behind_keeps_the_cpu() {
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
