//! The spool as the pipeline uses it: what one pipeline could not deliver, a later one (here a
//! second pipeline on the same directory, as a restarted process would be) replays; and queue
//! overflow spilled to disk instead of dropped.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::memory::MemoryStore;
use evlog_core::{Config, Pipeline};

fn schemas() -> SchemaRegistry {
    SchemaRegistry::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas"))
        .expect("schemas")
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn config(spool: &Path, extra: &str) -> Config {
    Config::from_toml_str(&format!(
        "[spool]\nenabled = true\ndir = {spool:?}\nfsync = false\n[batch]\nmax_age = \"10ms\"\n{extra}"
    ))
    .expect("config")
}

#[test]
fn a_later_pipeline_replays_what_an_earlier_one_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let down = MemoryStore::new();
    down.fail.store(true, Ordering::SeqCst);
    let first = Pipeline::with_parts(config(dir.path(), ""), schemas(), down.factory());
    for i in 0..300 {
        first
            .log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    assert!(
        !first.shutdown(Duration::from_secs(10)),
        "not delivered: spooled"
    );
    let s = first.stats();
    assert_eq!((s.accepted, s.delivered, s.spooled), (300, 0, 300), "{s:?}");
    assert_eq!(s.dropped_total(), 0);
    assert_eq!(s.in_flight, 300, "spooled events are still in flight");
    drop(first);

    let up = MemoryStore::new();
    let second = Pipeline::with_parts(config(dir.path(), ""), schemas(), up.factory());
    second
        .log_json("events", "page_view", r#"{"url":"/new"}"#)
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || up.row_count() == 301));
    let s = second.stats();
    // The replayed events count as accepted here, so this pipeline's books balance too.
    assert_eq!((s.accepted, s.delivered), (301, 301), "{s:?}");
    assert!(s.is_settled());
    let mut ids = up.insert_ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 301, "each event once");
    assert!(wait_for(Duration::from_secs(5), || std::fs::read_dir(
        dir.path()
    )
    .unwrap()
    .filter_map(Result::ok)
    .all(|e| !e.file_name().to_string_lossy().ends_with(".evs"))));
}

#[test]
fn overflow_spills_to_the_spool_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let p = Pipeline::with_parts(
        config(dir.path(), "[queue]\ncapacity = 64\noverflow = \"spool\"\n"),
        schemas(),
        store.factory(),
    );
    // Each producer logs at least 5000 events, and goes on until the flush thread has spilled
    // (on a busy machine it may not run at all during the first 20,000: the queue then only
    // refuses, which proves nothing), with a deadline.
    let logged = std::sync::atomic::AtomicU64::new(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (p, logged) = (&p, &logged);
            s.spawn(move || {
                for i in 0.. {
                    let _ = p.log_json("events", "page_view", &format!(r#"{{"url":"/{t}/{i}"}}"#));
                    logged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= 5000
                        && i % 100 == 0
                        && (p.stats().spooled > 0 || std::time::Instant::now() > deadline)
                    {
                        break;
                    }
                }
            });
        }
    });
    let logged = logged.into_inner();
    let s = p.stats();
    assert!(s.spooled > 0, "the queue overflowed into the spool: {s:?}");
    let dropped = s.dropped_total();
    assert!(wait_for(Duration::from_secs(60), || p.stats().delivered
        + dropped
        == logged));
    let s = p.stats();
    assert!(s.is_settled(), "{s:?}");
    assert_eq!(store.row_count() as u64, s.delivered);
    assert!(
        Config::from_toml_str("[queue]\noverflow = \"spool\"\n")
            .unwrap_err()
            .to_string()
            .contains("spool.enabled"),
        "overflow to the spool needs a spool"
    );
}

#[test]
fn flush_is_false_while_earlier_events_wait_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let down = MemoryStore::new();
    down.fail.store(true, Ordering::SeqCst);
    let p = Pipeline::with_parts(config(dir.path(), ""), schemas(), down.factory());
    for i in 0..10 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    // The flush thread spools them on its own (age trigger, failing sink) before flush() asks.
    assert!(wait_for(Duration::from_secs(20), || p.stats().spooled == 10));
    assert!(
        !p.flush(Duration::from_secs(10)),
        "spooled events have not reached the sink"
    );
    assert!(!p.shutdown(Duration::from_secs(10)));
}

#[test]
fn dead_letters_that_cannot_be_written_wait_in_the_spool_for_a_later_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    store.fail_dead_letters.store(true, Ordering::SeqCst);
    let first = Pipeline::with_parts(config(dir.path(), ""), schemas(), store.factory());
    for i in 0..10 {
        first
            .log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    for i in 0..4 {
        // No `url`, which is REQUIRED: rejected.
        first
            .log_json("events", "page_view", &format!(r#"{{"user_id":{i}}}"#))
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = first.stats();
            s.delivered == 10 && s.dead_letters_waiting == 4
        }),
        "{:?}",
        first.stats()
    );
    assert!(!first.shutdown(Duration::from_secs(5)), "dead letters wait");
    let s = first.stats();
    assert_eq!((s.rejected_total(), s.dropped_total()), (0, 0), "{s:?}");
    assert_eq!(s.in_flight, 4, "{s:?}");
    assert!(
        s.sink_errors
            .get(&("memory".to_string(), "other".to_string()))
            .is_some_and(|n| *n >= 1),
        "the failure is counted: {s:?}"
    );
    drop(first);
    assert!(lock(&store.rejected).is_empty());

    // The next process (a second pipeline on the same spool) stores them once its sink can.
    store.fail_dead_letters.store(false, Ordering::SeqCst);
    let second = Pipeline::with_parts(config(dir.path(), ""), schemas(), store.factory());
    // The flush thread starts with the first event.
    second
        .log_json("events", "page_view", r#"{"url":"/new"}"#)
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || lock(&store.rejected).len() == 4
            && second.stats().is_settled()),
        "{:?}",
        second.stats()
    );
    let s = second.stats();
    // Replayed from another writer: accepted and rejected here, so the books balance.
    assert_eq!((s.accepted, s.delivered), (5, 1), "{s:?}");
    assert_eq!(s.rejected.get("missing_required"), Some(&4), "{s:?}");
    assert_eq!(s.dead_letters_waiting, 0, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    for r in lock(&store.rejected).iter() {
        assert_eq!(r.field.as_deref(), Some("url"), "{r:?}");
        assert!(r.raw.contains("user_id"), "{r:?}");
    }
    assert!(second.shutdown(Duration::from_secs(5)));
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process exiting while its sink is down (a collector on a port nothing listens on) hands
/// what it holds to the spool within the shutdown deadline: at shutdown every request is one
/// attempt, not the retry budget (here ~13 s of backoff on average, longer than the 2 s given).
#[test]
fn shutdown_with_the_sink_down_spools_at_once_instead_of_waiting_out_retries() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = format!(
        "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = \"http://127.0.0.1:{port}\"\n\
         [retry]\nbase = \"1s\"\ncap = \"5s\"\nmax_attempts = 8\n[schemas]\ndir = {:?}\n",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
    );
    let p = Pipeline::new(config(dir.path(), &extra)).expect("pipeline");
    p.log_json("events", "page_view", r#"{"url":"/bye"}"#)
        .unwrap();
    assert!(!p.shutdown(Duration::from_secs(2)), "not delivered");
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered, s.spooled), (1, 0, 1), "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
}
