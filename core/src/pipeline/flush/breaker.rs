//! The flush thread's circuit breaker (one for rows, one for dead letters), so an outage does not
//! stall the thread.
//!
//! - **Closed** (the start, and after a success): deliveries go to the sink.
//! - **Open** for an interval after a failed delivery: deliveries skip the sink (the caller
//!   spools them). The first interval is [`BREAKER_MIN`]; each failure in a row doubles it, up to
//!   `retry.cap` (never below the first).
//! - **Half-open** once the interval has passed: the next delivery is a probe (one attempt per
//!   request, [`Breaker::probing`]); its success closes the breaker and starts the intervals from
//!   the first again, its failure opens it for the doubled interval.
//!
//! Time is the caller's: every transition takes the `Instant` it happens at.

use std::time::{Duration, Instant};

/// First interval after a failure.
pub(super) const BREAKER_MIN: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Debug)]
pub(super) struct Breaker {
    /// Set by a failure: deliveries skip the sink until then, and probe after.
    until: Option<Instant>,
    /// The interval the next failure opens it for.
    wait: Duration,
    /// The longest interval.
    cap: Duration,
}

impl Breaker {
    /// A closed breaker whose intervals grow up to `cap`.
    pub(super) fn new(cap: Duration) -> Self {
        Self {
            until: None,
            wait: BREAKER_MIN,
            cap: cap.max(BREAKER_MIN),
        }
    }

    /// Whether deliveries skip the sink at `now`.
    pub(super) fn is_open(&self, now: Instant) -> bool {
        self.open_until(now).is_some()
    }

    /// When it stops skipping the sink, if it does at `now`.
    pub(super) fn open_until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|t| now < *t)
    }

    /// When the last failure's interval ends (past or not); `None` while closed.
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Whether a delivery now is a probe: the last one failed (half-open once the interval has
    /// passed; while open, deliveries do not reach the sink at all).
    pub(super) fn probing(&self) -> bool {
        self.until.is_some()
    }

    /// A delivery failed at `now`: open for the current interval and double the next one.
    /// Returns when it becomes half-open.
    pub(super) fn trip(&mut self, now: Instant) -> Instant {
        let until = now + self.wait;
        self.until = Some(until);
        self.wait = (self.wait * 2).min(self.cap);
        until
    }

    /// A delivery succeeded: closed, and the next failure opens it for the first interval.
    pub(super) fn reset(&mut self) {
        self.until = None;
        self.wait = BREAKER_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn closed_until_a_failure_then_open_for_the_first_interval() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(30));
        assert!(!b.is_open(t0) && !b.probing() && b.until().is_none());
        assert_eq!(b.trip(t0), t0 + BREAKER_MIN);
        assert!(b.is_open(t0) && b.is_open(t0 + BREAKER_MIN - Duration::from_millis(1)));
        assert_eq!(b.open_until(t0), Some(t0 + BREAKER_MIN));
        assert!(
            b.probing(),
            "the first delivery after the interval is a probe"
        );
    }

    #[test]
    fn half_open_after_the_interval() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(30));
        b.trip(t0);
        let later = t0 + BREAKER_MIN;
        assert!(!b.is_open(later) && b.open_until(later).is_none());
        assert!(b.probing());
        assert_eq!(b.until(), Some(later));
    }

    #[test]
    fn a_probe_that_succeeds_closes_it_and_restarts_the_intervals() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(30));
        b.trip(t0);
        b.trip(t0 + S); // a failed probe: 2 s now
        b.reset();
        assert!(!b.is_open(t0 + S) && !b.probing() && b.until().is_none());
        let t1 = t0 + 10 * S;
        assert_eq!(b.trip(t1), t1 + BREAKER_MIN, "back to the first interval");
    }

    #[test]
    fn a_probe_that_fails_opens_it_for_twice_as_long_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(5));
        let mut now = t0;
        let mut intervals = Vec::new();
        for _ in 0..5 {
            let until = b.trip(now);
            intervals.push((until - now).as_secs());
            assert!(b.is_open(now));
            now = until; // half-open: the probe fails again
            assert!(!b.is_open(now) && b.probing());
        }
        assert_eq!(intervals, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn a_cap_below_the_first_interval_is_the_first_interval() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_millis(10));
        assert_eq!(b.trip(t0), t0 + BREAKER_MIN);
        assert_eq!(b.trip(t0), t0 + BREAKER_MIN);
    }
}
