//! The wall clock `log()` stamps events with.
//!
//! `clock_gettime(CLOCK_REALTIME)` costs ~40 ns on the VMs evlog runs on, close to half of the
//! `log()` budget. On x86_64, when the kernel itself uses the TSC as its clocksource (so the TSC is
//! invariant and synchronised across CPUs), time is read from the TSC instead and converted with a
//! calibration against the real clock: ~10 ns.
//!
//! Calibration (a seqlock of base TSC, base time, and ns-per-tick in 32.32 fixed point) is taken
//! over the first 10 ms of use (the real clock serves until then) and refreshed by whichever caller
//! first notices it is more than a second old, so NTP adjustments are followed within a second and
//! the error between refreshes stays in the microseconds. Anything unexpected — no TSC clocksource,
//! a writer that vanished in a fork, a reader that keeps losing the race — falls back to the real
//! clock, never to a wrong time.
//!
//! Every calibration point is a bracketed sample: TSC, real clock, TSC again, kept only when the
//! two TSC reads are close (`MAX_SAMPLE_TICKS`). A thread preempted between reading the TSC and
//! the real clock (milliseconds on a busy machine) would otherwise pair a TSC value with a later
//! time, and a 10 ms calibration would be off by as much as the preemption: every stamp until the
//! next refresh would drift by that ratio. A rejected sample just serves the real clock.

/// Microseconds since the Unix epoch.
#[inline]
pub fn now_micros() -> i64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(us) = tsc::now_micros() {
        return us;
    }
    crate::time::now_micros()
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    use std::sync::atomic::{fence, AtomicI64, AtomicU64, AtomicU8, Ordering};

    use crate::fork;

    const UNKNOWN: u8 = 0;
    const USABLE: u8 = 1;
    const UNUSABLE: u8 = 2;
    /// How long the first calibration observes the TSC.
    const FIRST_CALIBRATION_NS: i64 = 10_000_000;
    /// Age after which a caller refreshes the calibration.
    const REFRESH_NS: i64 = 1_000_000_000;
    /// Most TSC ticks between the two reads that bracket a real-clock read for the sample to be
    /// used (~20-50 µs at 1-2.5 GHz; an undisturbed bracket takes well under 1 µs).
    const MAX_SAMPLE_TICKS: u64 = 50_000;

    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static BASE_TSC: AtomicU64 = AtomicU64::new(0);
    static BASE_NS: AtomicI64 = AtomicI64::new(0);
    /// ns per tick, 32.32 fixed point; 0 while uncalibrated.
    static MULT: AtomicU64 = AtomicU64::new(0);
    /// Writer lock: 0 free, else the fork generation of the holder + 1 (a holder from before a
    /// fork does not exist in the child, so its lock may be taken over).
    static WRITER: AtomicU64 = AtomicU64::new(0);

    #[inline]
    fn rdtsc() -> u64 {
        // SAFETY: RDTSC is available on every x86_64 CPU and has no memory effects.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }

    fn real_ns() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// A calibration point: the real time and the TSC at (the middle of) the same instant, or
    /// only the real time when the thread was interrupted between the reads.
    fn sample() -> (i64, Option<u64>) {
        let t0 = rdtsc();
        let real = real_ns();
        let t1 = rdtsc();
        let ticks = t1.wrapping_sub(t0);
        let tsc = (ticks <= MAX_SAMPLE_TICKS).then(|| t0 + ticks / 2);
        (real, tsc)
    }

    #[cold]
    fn probe() -> bool {
        let usable = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc");
        STATE.store(if usable { USABLE } else { UNUSABLE }, Ordering::Relaxed);
        usable
    }

    /// Reads the calibration consistently, or None if a write is in progress for too long.
    #[inline]
    fn read() -> Option<(u64, i64, u64)> {
        for _ in 0..64 {
            let s1 = SEQ.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let t = BASE_TSC.load(Ordering::Relaxed);
                let n = BASE_NS.load(Ordering::Relaxed);
                let m = MULT.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if SEQ.load(Ordering::Relaxed) == s1 {
                    return Some((t, n, m));
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Publishes a calibration if the writer lock can be had.
    fn write(base_tsc: u64, base_ns: i64, mult: u64) {
        let me = fork::generation() + 1;
        let held = WRITER.load(Ordering::Acquire);
        if held == me
            || WRITER
                .compare_exchange(held, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return; // someone in this process is writing
        }
        let odd = SEQ.load(Ordering::Relaxed) | 1;
        SEQ.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        BASE_TSC.store(base_tsc, Ordering::Relaxed);
        BASE_NS.store(base_ns, Ordering::Relaxed);
        MULT.store(mult, Ordering::Relaxed);
        SEQ.store(odd.wrapping_add(1), Ordering::Release);
        WRITER.store(0, Ordering::Release);
    }

    fn mult_between(t0: u64, n0: i64, t1: u64, n1: i64) -> Option<u64> {
        let ticks = t1.checked_sub(t0).filter(|&t| t > 0)?;
        let ns = u64::try_from(n1.checked_sub(n0)?).ok().filter(|&n| n > 0)?;
        u64::try_from((u128::from(ns) << 32) / u128::from(ticks)).ok()
    }

    #[inline]
    pub(super) fn now_micros() -> Option<i64> {
        match STATE.load(Ordering::Relaxed) {
            USABLE => {}
            UNKNOWN if probe() => {}
            _ => return None,
        }
        let (base_tsc, base_ns, mult) = read()?;
        if mult == 0 {
            return Some(calibrate_first(base_tsc, base_ns));
        }
        let ticks = rdtsc().wrapping_sub(base_tsc);
        let ns = base_ns + ((u128::from(ticks) * u128::from(mult)) >> 32) as i64;
        if ns - base_ns > REFRESH_NS || ticks > (1 << 62) {
            return Some(refresh(base_tsc, base_ns) / 1000);
        }
        Some(ns / 1000)
    }

    /// Before the rate is known: serve the real clock, and set the rate once 10 ms have passed.
    #[cold]
    fn calibrate_first(base_tsc: u64, base_ns: i64) -> i64 {
        let (real, tsc) = sample();
        let Some(now_tsc) = tsc else {
            return real / 1000; // interrupted mid-sample: try again on a later call
        };
        if base_tsc == 0 {
            write(now_tsc, real, 0);
        } else if real - base_ns >= FIRST_CALIBRATION_NS {
            match mult_between(base_tsc, base_ns, now_tsc, real) {
                Some(m) => write(now_tsc, real, m),
                None => STATE.store(UNUSABLE, Ordering::Relaxed),
            }
        }
        real / 1000
    }

    /// The calibration is over a second old: measure the rate over the last period and re-anchor.
    #[cold]
    fn refresh(base_tsc: u64, base_ns: i64) -> i64 {
        let (real, tsc) = sample();
        let Some(now_tsc) = tsc else {
            return real; // interrupted mid-sample: a later call refreshes
        };
        // Concurrent refreshers race for the writer lock in `write`; losers just use `real`.
        match mult_between(base_tsc, base_ns, now_tsc, real) {
            Some(m) => write(now_tsc, real, m),
            // The real clock stepped backwards: start calibrating again.
            None => write(now_tsc, real, 0),
        }
        real
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn agrees_with_the_real_clock() {
        // Covers the uncalibrated phase, the first calibration and the calibrated phase.
        let deadline = std::time::Instant::now() + Duration::from_millis(60);
        while std::time::Instant::now() < deadline {
            let before = crate::time::now_micros();
            let fast = super::now_micros();
            let after = crate::time::now_micros();
            // Between two real-clock reads, give or take a millisecond of calibration error
            // (preemption between the reads widens the window, not the error).
            assert!(
                fast >= before - 1_000 && fast <= after + 1_000,
                "fast {fast} outside real [{before}, {after}]"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn is_monotonic_enough_for_ordering_within_a_thread() {
        let mut last = super::now_micros();
        for _ in 0..100_000 {
            let now = super::now_micros();
            // Re-anchoring may step by a few microseconds; never by more.
            assert!(now >= last - 50, "went back from {last} to {now}");
            last = now;
        }
    }
}
