//! A 20-second BigQuery outage under steady logging, for the outage tests of both write APIs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evlog_core::{EventInput, Pipeline};
use evlog_tests::bq::BqTestServer;
use evlog_tests::proc_stats::rss_kib;

use super::wait_for;

/// Logs ~2000 events/s while `server` is up, down for 20 s (REST and gRPC), then up again for
/// 2 s; asserts the spool absorbed the outage with the queue and RSS bounded. Returns how many
/// events were logged.
pub fn twenty_seconds_down(p: &Pipeline, server: &BqTestServer) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    // Steady logging: ~2000 events/s for the whole test.
    let writer = {
        let p = p.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let body = format!(r#"{{"url":"/steady/{n}","user_id":{n}}}"#);
                p.log(EventInput::new("events", "page_view", body))
                    .expect("accepted");
                n += 1;
                // Pace by elapsed time, not by sleeping a fixed amount per event.
                let due = start + Duration::from_micros(n * 500);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            n
        })
    };
    assert!(wait_for(Duration::from_secs(10), || p.stats().delivered > 1000));
    let rss_before = rss_kib();
    server.set_down(true);
    let outage = Instant::now();
    let mut max_queue = 0;
    let mut max_rss = 0;
    while outage.elapsed() < Duration::from_secs(20) {
        let s = p.stats();
        max_queue = max_queue.max(s.queue_events);
        max_rss = max_rss.max(rss_kib());
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = p.stats();
    server.set_down(false);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let logged = writer.join().unwrap();

    assert!(
        during.spooled > 10_000,
        "the spool absorbed the outage: {during:?}"
    );
    // Memory stays bounded: the queue never backs up and RSS does not grow with the backlog
    // (20 s × 2000 events/s ≈ 40k events went to disk instead).
    assert!(max_queue < 20_000, "queue backed up to {max_queue}");
    assert!(
        max_rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {max_rss} KiB"
    );
    logged
}

/// After [`twenty_seconds_down`]: everything drains (bounded wait), every event is accounted for
/// and nothing was dropped.
pub fn drained(p: &Pipeline, logged: u64) {
    assert!(
        wait_for(Duration::from_secs(90), || p.stats().delivered == logged),
        "not drained: logged {logged}, {:?}",
        p.stats()
    );
    let s = p.stats();
    assert_eq!(s.accepted, logged);
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
}
