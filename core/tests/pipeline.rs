//! Pipeline behaviour: file sink output, exact flush, batching triggers, accounting under
//! concurrency and overflow, shutdown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evlog_core::config::{Config, SinkKind};
use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::memory::MemoryStore;
use evlog_core::{EventInput, LogError, Pipeline};
use serde_json::Value;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
}

fn schemas() -> SchemaRegistry {
    SchemaRegistry::load_dir(&schema_dir()).expect("test schemas load")
}

fn memory_pipeline(toml: &str) -> (Pipeline, Arc<MemoryStore>) {
    let config = Config::from_toml_str(toml).expect("test config");
    let store = MemoryStore::new();
    let p = Pipeline::with_parts(config, schemas(), store.factory());
    (p, store)
}

/// Polls `cond` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn file_sink_writes_bigquery_rows_per_table_and_day() {
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        "[sink]\nkind = \"file\"\n[sink.file]\ndir = {:?}\n[schemas]\ndir = {:?}\n",
        out.path(),
        schema_dir()
    );
    let config = Config::from_toml_str(&toml).unwrap();
    assert_eq!(config.sink.kind, SinkKind::File);
    let p = Pipeline::new(config).unwrap();

    // 2026-11-22T10:00:00.123Z and the next day.
    let day1 = 1_795_341_600_123_000;
    let day2 = day1 + 86_400_000_000;
    let mut ev = EventInput::new(
        "events",
        "transaction",
        r#"{"user_id": 42, "amount": "9.99", "coupon": "XMAS", "browser": "firefox",
            "items": [{"sku": "A1", "price": 1.5, "qty": 2, "gift": true}]}"#,
    );
    ev.time = Some(day1);
    ev.id = Some("order-1");
    p.log(ev.clone()).unwrap();
    ev.time = Some(day2);
    ev.id = Some("order-2");
    p.log(ev).unwrap();
    p.log_json(
        "events",
        "page_view",
        r#"{"url": "/home", "tags": ["a", "b"]}"#,
    )
    .unwrap();
    // Rejected: wrong type, missing required, unknown table, not JSON.
    p.log_json("events", "transaction", r#"{"user_id": "forty-two"}"#)
        .unwrap();
    p.log_json("events", "transaction", r#"{"amount": "1"}"#)
        .unwrap();
    p.log_json("events", "nosuchtable", r#"{"a": 1}"#).unwrap();
    p.log_json("events", "page_view", r#"{"url": "/x",}"#)
        .unwrap();

    assert!(p.flush(Duration::from_secs(10)));
    let s = p.stats();
    assert_eq!(s.accepted, 7);
    assert_eq!(s.delivered, 3);
    assert_eq!(s.rejected_total(), 4);
    assert!(s.is_settled(), "{s:?}");

    let dir = out.path().join("events");
    let rows1 = read_lines(&dir.join("transaction20261122.ndjson"));
    assert_eq!(rows1.len(), 1);
    let r = &rows1[0];
    assert_eq!(r["user_id"], 42);
    assert_eq!(r["amount"], "9.99");
    assert_eq!(r["event_id"], "order-1");
    assert_eq!(r["event_time"], "2026-11-22T10:00:00.123000Z");
    assert!(r["received_at"].as_str().unwrap().ends_with('Z'));
    let other: Value = serde_json::from_str(r["other"].as_str().unwrap()).unwrap();
    assert_eq!(other["browser"], "firefox");
    assert_eq!(other["items"][0]["gift"], true);
    assert_eq!(r["items"][0]["price"], "1.5");
    let rows2 = read_lines(&dir.join("transaction20261123.ndjson"));
    assert_eq!(rows2[0]["event_id"], "order-2");

    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    let views = read_lines(&dir.join(format!("page_view{today}.ndjson")));
    assert_eq!(views.len(), 1);
    assert_eq!(views[0]["tags"], serde_json::json!(["a", "b"]));
    // A generated id is a UUIDv7.
    assert_eq!(views[0]["event_id"].as_str().unwrap().len(), 36);

    let dead = read_lines(&dir.join("_evlog_rejected.ndjson"));
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        [
            "invalid_value",
            "missing_required",
            "unknown_table",
            "invalid_json"
        ]
    );
    assert_eq!(dead[0]["field"], "user_id");
    assert!(dead[0]["error"].as_str().unwrap().contains("forty-two"));
    // The raw envelope is kept and can be sent again.
    let raw: Value = serde_json::from_str(dead[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["event"]["user_id"], "forty-two");
    assert_eq!(raw["namespace"], "events");
    assert_eq!(s.rejected["unknown_table"], 1);
}

#[test]
fn log_refuses_bad_envelopes_and_counts_them() {
    let (p, _store) = memory_pipeline("");
    let cases: &[(&str, &str, &str, &str)] = &[
        ("../etc", "t", "{}", "namespace"),
        ("events", "a/b", "{}", "type"),
        ("events", "t", "[1]", "event"),
        ("events", "t", "42", "event"),
    ];
    for (ns, ty, body, field) in cases {
        match p.log_json(ns, ty, body) {
            Err(LogError::Invalid(e)) => assert_eq!(e.field, *field, "{e}"),
            other => panic!("{ns}/{ty}/{body}: {other:?}"),
        }
    }
    let mut ev = EventInput::new("events", "page_view", "{}");
    ev.id = Some("");
    assert!(matches!(p.log(ev.clone()), Err(LogError::Invalid(e)) if e.field == "id"));
    ev.id = None;
    ev.time = Some(i64::MAX);
    assert!(matches!(p.log(ev), Err(LogError::Invalid(e)) if e.field == "time"));
    let s = p.stats();
    assert_eq!(s.accepted, 6);
    assert_eq!(s.dropped["invalid_envelope"], 6);
    assert!(s.is_settled());
}

#[test]
fn flush_is_exact() {
    let (p, store) = memory_pipeline("[batch]\nmax_age = \"1h\"\nmax_rows = 50000\n");
    for round in 1..=5 {
        for i in 0..1000 {
            p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
                .unwrap();
        }
        // Without flush nothing would be delivered for an hour; flush must deliver all.
        assert!(p.flush(Duration::from_secs(10)));
        assert_eq!(store.row_count(), round * 1000);
        assert!(p.stats().is_settled());
    }
}

#[test]
fn batches_by_rows_bytes_and_age() {
    // Rows.
    let (p, store) = memory_pipeline("[batch]\nmax_rows = 10\nmax_age = \"1h\"\n");
    for i in 0..25 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || store.row_count() == 20));
    assert!(p.flush(Duration::from_secs(10)));
    let sizes: Vec<usize> = store
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.rows.len())
        .collect();
    assert_eq!(sizes, [10, 10, 5]);

    // Bytes: every batch stays at or under max_bytes.
    let (p, store) = memory_pipeline("[batch]\nmax_bytes = 2000\nmax_age = \"1h\"\n");
    let pad = "x".repeat(300);
    for _ in 0..40 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{pad}"}}"#))
            .unwrap();
    }
    assert!(p.flush(Duration::from_secs(10)));
    let batches = store.batches.lock().unwrap();
    assert_eq!(batches.iter().map(|b| b.rows.len()).sum::<usize>(), 40);
    assert!(batches.len() > 1);
    for b in batches.iter() {
        assert!(b.bytes <= 2000, "batch of {} bytes", b.bytes);
        assert_eq!(b.bytes, b.rows.iter().map(|r| r.json.len()).sum::<usize>());
    }
    drop(batches);

    // Age: delivered without flush once the oldest row is max_age old.
    let (p, store) = memory_pipeline("[batch]\nmax_age = \"50ms\"\n");
    let start = Instant::now();
    for i in 0..3 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || store.row_count() == 3));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn queued_bytes_wake_the_flush_thread_before_a_batch_of_events_waits() {
    // 40 events of ~310 bytes after a first one: far fewer than a batch's worth of events
    // (500), so only the bytes (`batch.max_bytes` queued) can wake the thread; with `max_age`
    // an hour, full batches arrive without a flush only if that wake-up happened.
    let (p, store) = memory_pipeline("[batch]\nmax_bytes = 2000\nmax_age = \"1h\"\n");
    // The first event wakes the idle thread, which opens a batch with it; once it is taken,
    // the events after it can only be taken by a wake-up (or the age, or a flush).
    p.log_json("events", "page_view", r#"{"url":"/first"}"#)
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || p.stats().queue_events == 0));
    let pad = "x".repeat(300);
    for _ in 0..40 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{pad}"}}"#))
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(20), || store.row_count() >= 20),
        "{} rows delivered without a flush",
        store.row_count()
    );
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(store.row_count(), 41);
}

#[test]
fn accounting_holds_under_concurrency_and_overflow() {
    // A small queue and a slow-ish sink path make the queue overflow.
    let (p, store) =
        memory_pipeline("[queue]\ncapacity = 512\n[batch]\nmax_rows = 100\nmax_age = \"5ms\"\n");
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    let refused = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // Sample the counters while the writers run: never negative in-flight, never more in flight
    // than the queue plus open batches can hold.
    let monitor = {
        let p = p.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                let s = p.stats();
                assert!(s.in_flight >= 0, "double counting: {s:?}");
                assert!(s.queue_events <= 512, "queue over capacity: {s:?}");
                samples += 1;
                std::thread::yield_now();
            }
            samples
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let refused = refused.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let body = format!(r#"{{"url":"/t{t}/{i}","user_id":{i}}}"#);
                    match p.log_json("events", "page_view", &body) {
                        Ok(()) => {}
                        Err(LogError::QueueFull(_)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(p.flush(Duration::from_secs(30)));
    done.store(true, Ordering::SeqCst);
    assert!(monitor.join().unwrap() > 0);

    let s = p.stats();
    let total = (THREADS * PER_THREAD) as u64;
    assert_eq!(s.accepted, total);
    assert!(s.is_settled(), "{s:?}");
    let refused = refused.load(Ordering::Relaxed);
    assert!(
        refused > 0,
        "the queue never overflowed; the test proves nothing"
    );
    assert_eq!(s.dropped.get("queue_full").copied().unwrap_or(0), refused);
    assert_eq!(s.delivered, total - refused);
    assert_eq!(store.row_count() as u64, s.delivered);
    // Every delivered id is unique.
    let mut ids = store.insert_ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, s.delivered);
}

#[test]
fn sink_failures_are_counted_not_lost_silently() {
    let (p, store) = memory_pipeline("");
    store.fail.store(true, Ordering::SeqCst);
    for i in 0..10 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    // No spool: the failed events are dropped, so flush() must not say they made it.
    assert!(!p.flush(Duration::from_secs(10)));
    let s = p.stats();
    assert_eq!(s.dropped["sink_error"], 10);
    assert_eq!(
        s.sink_errors[&("memory".to_string(), "other".to_string())],
        1
    );
    assert!(s.is_settled());
    // Reported once: nothing was lost since, so the next flush is true again.
    assert!(p.flush(Duration::from_secs(10)));
    store.fail.store(false, Ordering::SeqCst);
    p.log_json("events", "page_view", r#"{"url":"/ok"}"#)
        .unwrap();
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(store.row_count(), 1);
}

#[test]
fn flush_is_false_when_events_were_dropped_before_it_was_called() {
    // The age trigger delivers (and the failing sink drops) the events on the flush thread's
    // own schedule, before flush() is called: they were still logged before the call.
    let (p, store) = memory_pipeline("[batch]\nmax_age = \"1ms\"\n");
    store.fail.store(true, Ordering::SeqCst);
    for i in 0..3 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), || p
            .stats()
            .dropped
            .get("sink_error")
            == Some(&3)),
        "{:?}",
        p.stats()
    );
    assert!(!p.flush(Duration::from_secs(10)));
}

#[test]
fn shutdown_is_false_when_events_were_dropped() {
    let (p, store) = memory_pipeline("[batch]\nmax_age = \"1h\"\n");
    store.fail.store(true, Ordering::SeqCst);
    p.log_json("events", "page_view", r#"{"url":"/"}"#).unwrap();
    assert!(!p.shutdown(Duration::from_secs(10)));
    assert_eq!(p.stats().dropped["sink_error"], 1);
}

#[test]
fn shutdown_delivers_then_refuses() {
    let (p, store) = memory_pipeline("[batch]\nmax_age = \"1h\"\n");
    for i in 0..500 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    assert!(p.shutdown(Duration::from_secs(10)));
    assert_eq!(store.row_count(), 500);
    assert_eq!(
        p.log_json("events", "page_view", r#"{"url":"/late"}"#),
        Err(LogError::ShutDown)
    );
    let s = p.stats();
    assert_eq!(s.dropped["shut_down"], 1);
    assert!(s.is_settled(), "{s:?}");
    // A second shutdown is harmless, and flush after shutdown answers at once.
    assert!(p.shutdown(Duration::from_secs(1)));
    let t = Instant::now();
    assert!(p.flush(Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn dropping_the_pipeline_delivers_what_was_logged() {
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        "[sink.file]\ndir = {:?}\n[schemas]\ndir = {:?}\n[batch]\nmax_age = \"1h\"\n",
        out.path(),
        schema_dir()
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).unwrap()).unwrap();
    for i in 0..100 {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .unwrap();
    }
    drop(p);
    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    let rows = read_lines(&out.path().join(format!("events/page_view{today}.ndjson")));
    assert_eq!(rows.len(), 100);
}

#[test]
fn malformed_schema_is_a_startup_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("events")).unwrap();
    std::fs::write(
        dir.path().join("events/bad.json"),
        r#"[{"name": "x", "type": "MONEY"}]"#,
    )
    .unwrap();
    let toml = format!(
        "[schemas]\ndir = {:?}\n[sink]\nkind = \"null\"\n",
        dir.path()
    );
    let err = Pipeline::new(Config::from_toml_str(&toml).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.json") && err.contains("MONEY"), "{err}");
}

#[test]
fn error_hook_hears_about_rejections_and_drops() {
    let (p, store) = memory_pipeline("");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    p.set_error_hook(Some(Arc::new(move |s: &evlog_core::ErrorSummary| {
        sink.lock().unwrap().push(s.clone());
    })));
    p.log_json("events", "nosuchtable", "{}").unwrap();
    p.log_json("events", "nosuchtable", "{}").unwrap();
    assert!(p.log_json("bad ns", "t", "{}").is_err());
    assert!(p.flush(Duration::from_secs(10)));
    store.fail.store(true, Ordering::SeqCst);
    p.log_json("events", "page_view", r#"{"url":"/"}"#).unwrap();
    assert!(!p.flush(Duration::from_secs(10)), "an event was dropped");
    let seen = seen.lock().unwrap();
    // Delivery rounds may split one reason over several summaries: add them up.
    let total = |reason: &str| -> (u64, Vec<evlog_core::ErrorSummary>) {
        let hits: Vec<_> = seen
            .iter()
            .filter(|s| s.reason == reason)
            .cloned()
            .collect();
        (hits.iter().map(|s| s.count).sum(), hits)
    };
    let (n, unknown) = total("unknown_table");
    assert_eq!(n, 2);
    assert!(unknown
        .iter()
        .all(|s| s.outcome == evlog_core::Outcome::Rejected));
    assert!(unknown[0].message.contains("nosuchtable"));
    assert_eq!(total("invalid_envelope").0, 1);
    let (n, failed) = total("sink_error");
    assert_eq!(n, 1);
    assert_eq!(failed[0].outcome, evlog_core::Outcome::Dropped);
}

#[test]
fn an_event_no_route_takes_is_counted_unrouted_not_lost() {
    // `[sink]` is the destination "default"; routes send it some tables, some of the time.
    let (p, store) = memory_pipeline(
        r#"
        [batch]
        max_age = "10ms"
        [[routes]]
        tables = ["events.page_view"]
        to = ["default"]
        where = { field = "url", equals = "/" }
        [[routes]]
        tables = ["events.t*"]
        to = ["default"]
        sample = 0.5
        "#,
    );
    let seen = Arc::new(std::sync::Mutex::new(0u64));
    let heard = seen.clone();
    p.set_error_hook(Some(Arc::new(move |s: &evlog_core::ErrorSummary| {
        if s.reason == "unrouted" {
            *heard.lock().unwrap() += s.count;
        }
    })));
    p.log_json("events", "page_view", r#"{"url":"/"}"#).unwrap();
    p.log_json("events", "page_view", r#"{"url":"/other"}"#)
        .unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("t-{i}")).collect();
    for id in &ids {
        let mut e = EventInput::new("events", "transaction", r#"{"user_id":1,"amount":"1.00"}"#);
        e.id = Some(id);
        p.log(e).unwrap();
    }
    assert!(
        p.flush(Duration::from_secs(10)),
        "unrouted is not a failure"
    );
    let sampled = ids
        .iter()
        .filter(|id| evlog_core::destinations::sampled(id, 0.5))
        .count();
    assert!((60..140).contains(&sampled), "{sampled}");
    let mut want: Vec<String> = ids
        .iter()
        .filter(|id| evlog_core::destinations::sampled(id, 0.5))
        .cloned()
        .collect();
    let mut got: Vec<String> = store
        .insert_ids()
        .into_iter()
        .filter(|id| id.starts_with("t-"))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the sampled ids, and only those");
    let s = p.stats();
    let unrouted = (1 + 200 - sampled) as u64;
    assert_eq!(s.dropped["unrouted"], unrouted);
    assert_eq!(s.delivered, 1 + sampled as u64);
    assert!(s.is_settled(), "{s:?}");
    assert_eq!(*seen.lock().unwrap(), unrouted, "the hook hears of them");
}
