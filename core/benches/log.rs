//! `log()` cost with the flush thread running into a null sink.
//!
//! Each sample logs in chunks that fit the queue and flushes between chunks (untimed), so every
//! timed call is an accepted event, never a cheap queue-full refusal. The flush thread validates
//! and batches concurrently, as in production. Run: `cargo bench -p evlog-core --bench log`.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evlog_core::Pipeline;

use self::common::{pipeline, EVENT};

const CHUNK: u64 = 10_000;

/// Logs `n` events from one thread in queue-sized chunks; returns the time spent inside `log()`.
fn timed_logs(p: &Pipeline, n: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..k {
            let r = p.log_json("events", "page_view", EVENT);
            debug_assert!(r.is_ok());
            std::hint::black_box(r).ok();
        }
        spent += start.elapsed();
        left -= k;
        p.flush(Duration::from_secs(60));
    }
    spent
}

fn bench(c: &mut Criterion) {
    assert!(
        (190..=230).contains(&EVENT.len()),
        "event is {} bytes",
        EVENT.len()
    );
    let p = pipeline();
    p.log_json("events", "page_view", EVENT).expect("warm-up");
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1_thread", |b| b.iter_custom(|iters| timed_logs(&p, iters)));
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            // Both threads log `iters` events at once; report the slower thread's time per call.
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                let a = s.spawn(|| {
                    barrier.wait();
                    timed_logs(&p, iters)
                });
                let b = s.spawn(|| {
                    barrier.wait();
                    timed_logs(&p, iters)
                });
                a.join().expect("thread a").max(b.join().expect("thread b"))
            })
        })
    });
    g.finish();
    let s = p.stats();
    assert_eq!(s.dropped_total(), 0, "benchmark events were dropped: {s:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
