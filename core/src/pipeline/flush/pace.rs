//! When the flush thread wakes: while events flow, by its own timer, paced to find about a
//! wake-up's worth of them ([`super::wake_batch`] events, or [`super::PACED_BYTES`] of bodies if
//! that comes first), instead of being woken by the producer that queues the last of them.
//!
//! A producer's wake-up is a `futex` system call and an interrupt to the other CPU, paid inside
//! the call that happens to reach the count: under php-fpm, one page in fifty paid 5–15 µs for it
//! in one of its `evlog_log()` calls (docs/php-cost.md, session 19). The thread's own timer costs
//! the page nothing. So:
//! - *Flowing* (the thread took events since it last parked): it sleeps for the time their rate
//!   takes to queue a wake-up's worth (at least 1 ms, at most 100 ms and a quarter of
//!   `batch.max_age`): the events' rate for the count, their bytes' rate for the bytes, so
//!   larger events do not outgrow a lane's ring between wake-ups (the producer then goes on in
//!   another ring, one more to allocate and to read on the other core), and
//!   producers wake it only past a high-water mark (twice that, at most a quarter of the
//!   queue), which a steady producer does not reach. A full batch is sent when the thread wakes:
//!   about when the rate fills one, at the high-water mark, or at most 100 ms later.
//! - *Not flowing* (it woke to nothing): the first event wakes it, as before (one wake-up per
//!   idle spell), and a batch that is open waits for a wake-up's worth or its age.
//!
//! A batch's age counts from a lower bound on its first event's arrival ([`Pace::arrivals_from`]:
//! the start of the last drain that emptied the queue, or the end of an idle sleep), not from
//! when the thread took it, so a paced sleep never makes an event wait longer than
//! `batch.max_age`; a batch may close up to one sleep early instead.

use std::time::{Duration, Instant};

/// Shortest paced sleep: at higher rates the producers' high-water mark wakes the thread.
const MIN_SLEEP: Duration = Duration::from_millis(1);
/// Longest paced sleep (unless a quarter of `batch.max_age` is shorter): how long a full batch
/// may wait for the thread when the rate rose less than the high-water mark shows. At a rate too
/// slow to queue a wake-up's worth in it, the thread wakes this often to take what came (10 times
/// a second at most, each costing the thread a few µs and the producers nothing).
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// The flush thread's pacing state (see the module docs).
#[derive(Debug)]
pub(super) struct Pace {
    /// Start of the interval whose events `taken` counts (the last park).
    from: Instant,
    /// Events taken since `from`.
    taken: u64,
    /// Their bodies' bytes.
    taken_bytes: u64,
    /// No event not yet taken arrived before this.
    arrivals_from: Instant,
}

/// How the thread parks: producers wake it when this many events wait (`1`: the first), and it
/// sleeps at most `sleep` (`None`: as long as its own deadlines allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) wake_at: u64,
    pub(super) sleep: Option<Duration>,
}

impl Pace {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            from: now,
            taken: 0,
            taken_bytes: 0,
            arrivals_from: now,
        }
    }

    /// A lower bound on the arrival of every event not yet taken: what a batch opened by them
    /// counts its age from.
    pub(super) fn arrivals_from(&self) -> Instant {
        self.arrivals_from
    }

    /// Records a drain that started at `started` and took `n` events (`bytes` of bodies) of at
    /// most `max`. One that took fewer emptied the queue: what comes next was queued after it
    /// started.
    pub(super) fn took(&mut self, started: Instant, n: usize, bytes: u64, max: usize) {
        self.taken += n as u64;
        self.taken_bytes += bytes;
        if n < max {
            self.arrivals_from = started;
        }
    }

    /// How to park at `now`: `wake_batch` events or `wake_bytes` of bodies make a wake-up's
    /// worth, `high_water` the most a steady producer may queue before it wakes the thread,
    /// `batch_open` whether events wait in a batch.
    pub(super) fn plan(
        &mut self,
        now: Instant,
        max_age: Duration,
        (wake_batch, wake_bytes): (u64, u64),
        high_water: u64,
        batch_open: bool,
    ) -> Plan {
        let (taken, since) = (self.taken, now.saturating_duration_since(self.from));
        let taken_bytes = self.taken_bytes;
        self.from = now;
        self.taken = 0;
        self.taken_bytes = 0;
        if taken == 0 {
            return Plan {
                wake_at: if batch_open { wake_batch } else { 1 },
                sleep: None,
            };
        }
        let longest = (max_age / 4).min(MAX_SLEEP).max(MIN_SLEEP);
        // The time the last interval's rate takes to queue a wake-up's worth: of events, or of
        // bytes if that comes first.
        let mut nanos = since.as_nanos() * u128::from(wake_batch) / u128::from(taken);
        if taken_bytes > 0 {
            nanos = nanos.min(since.as_nanos() * u128::from(wake_bytes) / u128::from(taken_bytes));
        }
        let sleep = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            .clamp(MIN_SLEEP, longest);
        Plan {
            wake_at: high_water.max(wake_batch),
            sleep: Some(sleep),
        }
    }

    /// After a park planned with `plan`: an idle thread was woken by the first event (or its
    /// timeout), so what it takes next arrived from about now.
    pub(super) fn woke(&mut self, plan: Plan, now: Instant) {
        if plan.wake_at == 1 {
            self.arrivals_from = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(1);
    /// A wake-up's worth: 512 events, or more bytes than a test queues unless it means to.
    const W: (u64, u64) = (512, 1 << 40);

    #[test]
    fn a_thread_that_took_nothing_is_woken_by_the_first_event_or_a_wake_ups_worth() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let plan = p.plan(t0, AGE, W, 1024, false);
        assert_eq!(
            plan,
            Plan {
                wake_at: 1,
                sleep: None
            }
        );
        assert_eq!(p.plan(t0, AGE, W, 1024, true).wake_at, 512);
        // Events taken, then a sleep that found none: no longer flowing.
        p.took(t0, 10, 0, 4096);
        assert!(p.plan(t0 + AGE / 8, AGE, W, 1024, true).sleep.is_some());
        let plan = p.plan(t0 + AGE / 4, AGE, W, 1024, true);
        assert_eq!(
            plan,
            Plan {
                wake_at: 512,
                sleep: None
            }
        );
    }

    #[test]
    fn a_flowing_thread_sleeps_for_a_wake_ups_worth_at_the_recent_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        // 100 events in 10 ms: 512 take 51.2 ms.
        p.took(t0 + Duration::from_millis(5), 100, 0, 4096);
        let plan = p.plan(t0 + Duration::from_millis(10), AGE, W, 1024, true);
        assert_eq!(plan.wake_at, 1024);
        assert_eq!(plan.sleep, Some(Duration::from_micros(51_200)));
        // A slow trickle: at most MAX_SLEEP, or a quarter of max_age if shorter.
        p.took(t0 + Duration::from_millis(20), 1, 0, 4096);
        let plan = p.plan(t0 + Duration::from_millis(60), AGE, W, 1024, false);
        assert_eq!(plan.sleep, Some(MAX_SLEEP));
        p.took(t0 + Duration::from_millis(61), 1, 0, 4096);
        let short = Duration::from_millis(200);
        let plan = p.plan(t0 + Duration::from_millis(62), short, W, 1024, false);
        assert_eq!(plan.sleep, Some(short / 4));
        // A torrent: at least MIN_SLEEP (the high-water mark wakes it sooner).
        p.took(t0 + Duration::from_millis(62), 4000, 0, 4096);
        let plan = p.plan(t0 + Duration::from_millis(62), AGE, W, 1024, true);
        assert_eq!(plan.sleep, Some(MIN_SLEEP));
        // The high-water mark is never below a wake-up's worth.
        p.took(t0 + Duration::from_millis(63), 1, 0, 4096);
        assert_eq!(
            p.plan(t0 + Duration::from_millis(64), AGE, W, 8, true)
                .wake_at,
            512
        );
    }

    #[test]
    fn arrivals_count_from_the_last_drain_that_emptied_the_queue_or_an_idle_wake() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let t1 = t0 + Duration::from_millis(3);
        p.took(t1, 4096, 0, 4096);
        assert_eq!(
            p.arrivals_from(),
            t0,
            "a full drain left events older than it"
        );
        let t2 = t0 + Duration::from_millis(4);
        p.took(t2, 7, 0, 4096);
        assert_eq!(p.arrivals_from(), t2);
        let plan = p.plan(t2, AGE, W, 1024, true);
        let t3 = t0 + Duration::from_millis(50);
        p.woke(plan, t3);
        assert_eq!(p.arrivals_from(), t2, "a paced sleep keeps the bound");
        let idle = p.plan(t0 + 2 * AGE, AGE, W, 1024, false);
        let t4 = t0 + 3 * AGE;
        p.woke(idle, t4);
        assert_eq!(
            p.arrivals_from(),
            t4,
            "after an idle sleep, from the wake-up"
        );
    }

    #[test]
    fn large_events_pace_the_thread_by_their_bytes() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let ms = Duration::from_millis;
        // Each interval is 10 ms; a wake-up's worth is 512 events or 32,000 bytes.
        let intervals = [
            // 100 events of 1,000 bytes: 512 events take 51.2 ms, 32,000 bytes 3.2 ms.
            (100, 100_000, Duration::from_micros(3_200)),
            // Small events: the count comes first, as without the bytes.
            (100, 5_000, Duration::from_micros(51_200)),
            // The bytes are counted per interval, like the events (320 ms, at most 100).
            (10, 1_000, MAX_SLEEP),
        ];
        for (i, (events, bytes, sleep)) in intervals.into_iter().enumerate() {
            let start = t0 + ms(10 * i as u64);
            p.took(start + ms(5), events, bytes, 4096);
            let plan = p.plan(start + ms(10), AGE, (512, 32_000), 1024, true);
            assert_eq!(plan.sleep, Some(sleep), "interval {i}");
        }
    }
}
