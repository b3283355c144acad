//! Per-call latency of `log()`: median, p90, p99 over individually timed calls.
//!
//! Criterion (`benches/log.rs`) reports time per call averaged over many calls, which folds the
//! rare slow call (a new queue block, a cache miss on a line the flush thread just read) into every
//! figure. This benchmark times each call with the CPU's timestamp counter (calibrated against the
//! monotonic clock, timer overhead subtracted) and reports the distribution. The flush thread runs
//! into a null sink, validating every event, as in production. Logging happens in chunks that fit
//! the queue with a flush between chunks (untimed), so every timed call is an accepted event.
//! Run: `cargo bench -p evlog-core --bench log_latency`.
#![allow(unsafe_code)] // the timestamp-counter intrinsic

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use evlog_core::Pipeline;

use self::common::{pipeline, EVENT};

const CALLS: usize = 500_000;
const CHUNK: usize = 10_000;

#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn ticks_per_ns() -> f64 {
    let (t0, i0) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_millis(200));
    (ticks() - t0) as f64 / i0.elapsed().as_nanos() as f64
}

/// Times `CALLS` calls from this thread; returns per-call ticks (timer overhead removed).
fn timed(p: &Pipeline, overhead: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(CALLS);
    for _ in 0..CALLS / CHUNK {
        for _ in 0..CHUNK {
            let a = ticks();
            let r = p.log_json("events", "page_view", EVENT);
            let b = ticks();
            assert!(r.is_ok(), "benchmark event refused: {r:?}");
            out.push((b - a).saturating_sub(overhead));
        }
        p.flush(Duration::from_secs(60));
    }
    out
}

fn report(label: &str, mut v: Vec<u64>, tpn: f64) {
    v.sort_unstable();
    let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize] as f64 / tpn;
    let mean = v.iter().map(|&t| t as f64).sum::<f64>() / v.len() as f64 / tpn;
    println!(
        "{label:<10} median {:>6.0} ns   p90 {:>6.0} ns   p99 {:>6.0} ns   p99.9 {:>7.0} ns   mean {:>5.0} ns   ({} calls)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        mean,
        v.len()
    );
}

fn main() {
    assert!(
        (190..=230).contains(&EVENT.len()),
        "event is {} bytes",
        EVENT.len()
    );
    let tpn = ticks_per_ns();
    let mut base: Vec<u64> = (0..100_000)
        .map(|_| {
            let a = ticks();
            let b = ticks();
            b - a
        })
        .collect();
    base.sort_unstable();
    let overhead = base[base.len() / 2];
    let p = pipeline();
    // Warm up: start the flush thread, fill the buffer pool, calibrate the clock.
    for _ in 0..50_000 {
        p.log_json("events", "page_view", EVENT).expect("warm-up");
    }
    p.flush(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(50));

    println!(
        "log() of a {}-byte event, flush thread validating into a null sink",
        EVENT.len()
    );
    report("1 thread", timed(&p, overhead), tpn);
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let run = || {
            barrier.wait();
            timed(&p, overhead)
        };
        let a = s.spawn(run);
        let b = s.spawn(run);
        (a.join().expect("thread a"), b.join().expect("thread b"))
    });
    let mut both = a;
    both.extend(b);
    report("2 threads", both, tpn);
    let s = p.stats();
    assert_eq!(s.dropped_total(), 0, "events were dropped: {s:?}");
}
