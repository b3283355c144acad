//! The flush thread's pacing seen from the producers' side (`flush::pace`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Pipeline;
use crate::config::Config;
use crate::schema::SchemaRegistry;
use crate::sink::memory::MemoryStore;

/// A pipeline on the test schemas into a memory sink, with `toml`'s config.
fn memory_pipeline(toml: &str) -> (Pipeline, std::sync::Arc<MemoryStore>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    let config = Config::from_toml_str(toml).unwrap();
    let store = MemoryStore::new();
    let schemas = SchemaRegistry::load_dir(&dir).unwrap();
    (
        Pipeline::with_parts(config, schemas, store.factory()),
        store,
    )
}

fn producer_wakeups(p: &Pipeline) -> u64 {
    p.shared
        .state
        .load()
        .producer_wakeups
        .load(Ordering::Relaxed)
}

/// A steady producer (10 events every 2 ms, 5,000 a second, 1.2 s) with batches of 100: before
/// pacing it woke the thread for every 100 events it queued (60 times); paced, the thread wakes
/// itself about when 100 wait and the producers only at 200. What is left is the first event,
/// the rate's first estimate (taken over the idle start) and any sleep the thread overran by a
/// whole wake-up's worth on a busy machine, which the bound leaves room for.
#[test]
fn a_steady_producer_rarely_wakes_the_flush_thread_and_every_event_arrives() {
    let (p, store) = memory_pipeline("[batch]\nmax_rows = 100\nmax_age = \"1s\"\n");
    let start = Instant::now();
    let mut logged = 0usize;
    let mut tick = start;
    while start.elapsed() < Duration::from_millis(1200) {
        for _ in 0..10 {
            p.log_json("events", "page_view", &format!(r#"{{"url":"/{logged}"}}"#))
                .unwrap();
            logged += 1;
        }
        tick += Duration::from_millis(2);
        // Steady, not catching up: a producer held up logs its 10 late instead of in a burst.
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        tick = tick.max(Instant::now());
    }
    let wakeups = producer_wakeups(&p);
    eprintln!("{wakeups} producer wake-ups for {logged} events");
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(store.row_count(), logged);
    assert!(p.stats().is_settled());
    assert!(
        wakeups <= 10,
        "{wakeups} producer wake-ups for {logged} events in batches of 100"
    );
}

/// Pacing leaves the batch limits as they were: a burst of a full batch and a bit wakes the
/// thread (it was not flowing), which sends the full batch at once; the rest waits for its age.
#[test]
fn a_full_batch_is_sent_without_waiting_for_its_age() {
    let (p, store) = memory_pipeline("[batch]\nmax_rows = 10\nmax_age = \"1h\"\n");
    p.log_json("events", "page_view", r#"{"url":"/first"}"#)
        .unwrap();
    // Let the thread take it and go back to sleep, paced or not.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..12 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.row_count() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(store.row_count(), 10, "one full batch sent, the rest waits");
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(store.row_count(), 13);
}
