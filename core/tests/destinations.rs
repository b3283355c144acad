//! Several destinations in one pipeline: each has its own thread, batches, retries, breaker and
//! spool, so one failing for a while never slows or loses another's events; copies are counted
//! per destination; routes and sampling decide the same way in every pipeline.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evlog_core::config::Config;
use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::memory::MemoryStore;
use evlog_core::sink::{Batch, BatchOutcome, RejectedEvent, Sink, SinkError, SinkFactory};
use evlog_core::{EventInput, Pipeline};

fn schemas() -> SchemaRegistry {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    SchemaRegistry::load_dir(&dir).expect("test schemas load")
}

/// A sink that, while its store's `fail` is set, takes `delay` (a retry budget spent) and then
/// fails every row; otherwise keeps rows in its store.
struct Flaky {
    store: Arc<MemoryStore>,
    delay: Duration,
}

impl Sink for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        if self.store.fail.load(Ordering::SeqCst) {
            std::thread::sleep(self.delay);
            return batches
                .into_iter()
                .map(|b| BatchOutcome::failed(b.rows, SinkError::Other("down".into())))
                .collect();
        }
        batches
            .into_iter()
            .map(|b| {
                let n = b.rows.len();
                self.store.batches.lock().unwrap().push(b);
                BatchOutcome::delivered(n)
            })
            .collect()
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        self.store
            .rejected
            .lock()
            .unwrap()
            .extend_from_slice(events);
        Ok(())
    }
}

fn flaky(store: &Arc<MemoryStore>, delay: Duration) -> SinkFactory {
    let store = store.clone();
    Arc::new(move || {
        Ok(Box::new(Flaky {
            store: store.clone(),
            delay,
        }) as Box<dyn Sink>)
    })
}

fn ids(store: &MemoryStore) -> BTreeSet<String> {
    store.insert_ids().into_iter().collect()
}

fn txn(p: &Pipeline, id: &str) {
    let mut e = EventInput::new("events", "transaction", r#"{"user_id":1,"amount":"1.00"}"#);
    e.id = Some(id);
    p.log(e).expect("logged");
}

fn two_destinations(spool: Option<&Path>, routes: &str) -> Config {
    let spool = match spool {
        Some(dir) => format!("[spool]\nenabled = true\ndir = {:?}\nfsync = false\n", dir),
        None => String::new(),
    };
    Config::from_toml_str(&format!(
        r#"
        [batch]
        max_rows = 50
        max_age = "20ms"
        [retry]
        cap = "200ms"
        {spool}
        [destinations.good]
        kind = "null"
        [destinations.bad]
        kind = "null"
        {routes}
        "#
    ))
    .expect("config")
}

const BOTH: &str = "[[routes]]\ntables = [\"*\"]\nto = [\"good\", \"bad\"]\n";

#[test]
fn a_failing_destination_never_slows_the_other_and_drains_after() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (MemoryStore::new(), MemoryStore::new());
    bad.fail.store(true, Ordering::SeqCst);
    let p = Pipeline::with_destinations(
        two_destinations(Some(dir.path()), BOTH),
        schemas(),
        vec![
            ("good".into(), good.factory()),
            // Every failed delivery takes 400 ms: with one thread for both, "good" would wait.
            ("bad".into(), flaky(&bad, Duration::from_millis(400))),
        ],
    )
    .unwrap();
    let mut logged = Vec::new();
    let mut worst = Duration::ZERO;
    for round in 0..20 {
        for i in 0..50 {
            let id = format!("e-{round}-{i}");
            txn(&p, &id);
            logged.push(id);
        }
        // "good" has every event so far within its batch age and a little.
        let start = Instant::now();
        while good.row_count() < logged.len() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "good fell behind: {} of {}",
                good.row_count(),
                logged.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        worst = worst.max(start.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(worst < Duration::from_millis(300), "worst wait {worst:?}");
    // While "bad" fails, a flush says not everything made it (its copies are spooled).
    assert!(!p.flush(Duration::from_secs(10)));
    let s = p.stats();
    assert_eq!(s.destinations["good"].delivered, 1000);
    assert_eq!(s.destinations["bad"].delivered, 0);
    assert!(s.destinations["bad"].spooled > 0, "{s:?}");
    assert!(s.dropped_total() == 0, "nothing lost: {s:?}");
    assert!(
        std::fs::read_dir(dir.path().join("bad")).unwrap().count() > 0,
        "bad spools in its own directory"
    );

    // Back: its spool drains, every event once.
    bad.fail.store(false, Ordering::SeqCst);
    let start = Instant::now();
    while bad.row_count() < 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bad did not drain: {}",
            bad.row_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.flush(Duration::from_secs(10)));
    let want: BTreeSet<String> = logged.iter().cloned().collect();
    assert_eq!(ids(&good), want);
    assert_eq!(ids(&bad), want);
    assert_eq!(good.row_count(), 1000, "once each");
    assert_eq!(bad.row_count(), 1000, "once each");
    let s = p.stats();
    assert!(s.is_settled(), "{s:?}");
    for d in ["good", "bad"] {
        let ds = &s.destinations[d];
        assert_eq!(
            (ds.accepted, ds.delivered, ds.in_flight),
            (1000, 1000, 0),
            "{d}"
        );
    }
    assert_eq!(
        (s.accepted, s.fanned_out, s.delivered),
        (1000, 1000, 2000),
        "totals count copies"
    );
    assert!(p.shutdown(Duration::from_secs(10)));
}

#[test]
fn copies_and_losses_are_counted_per_destination() {
    let (good, bad) = (MemoryStore::new(), MemoryStore::new());
    bad.fail.store(true, Ordering::SeqCst);
    let routes = r#"
        [[routes]]
        tables = ["events.transaction"]
        to = ["good", "bad"]
        [[routes]]
        tables = ["events.page_view"]
        to = ["good"]
        "#;
    // No spool: what "bad" fails is dropped, counted for it alone.
    let p = Pipeline::with_destinations(
        two_destinations(None, routes),
        schemas(),
        vec![
            ("good".into(), good.factory()),
            ("bad".into(), flaky(&bad, Duration::from_millis(1))),
        ],
    )
    .unwrap();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = heard.clone();
    p.set_error_hook(Some(Arc::new(move |s: &evlog_core::ErrorSummary| {
        h.lock().unwrap().push(s.clone());
    })));
    for i in 0..10 {
        txn(&p, &format!("t-{i}"));
    }
    for _ in 0..5 {
        p.log_json("events", "page_view", r#"{"url":"/"}"#).unwrap();
    }
    p.log_json("other", "thing", "{}").unwrap(); // no route
    p.log_json("events", "nosuchtable", "{}").unwrap(); // no route either
    assert!(!p.flush(Duration::from_secs(10)), "bad dropped its copies");
    assert!(p.flush(Duration::from_secs(10)), "a drop is reported once");
    let s = p.stats();
    assert_eq!(s.accepted, 17);
    assert_eq!(s.dropped["unrouted"], 2);
    assert_eq!(s.fanned_out, 10);
    let (g, b) = (&s.destinations["good"], &s.destinations["bad"]);
    assert_eq!((g.accepted, g.delivered, g.dropped_total()), (15, 15, 0));
    assert_eq!(
        (b.accepted, b.delivered, b.dropped["sink_error"]),
        (10, 0, 10)
    );
    assert!(b.sink_errors[&("flaky".to_string(), "other".to_string())] > 0);
    assert!(s.is_settled(), "{s:?}");
    assert_eq!(s.delivered + s.dropped_total(), s.accepted + s.fanned_out);
    let text = s.to_prometheus();
    for line in [
        "evlog_events_accepted_total 17\n",
        "evlog_events_accepted_total{destination=\"bad\"} 10\n",
        "evlog_events_delivered_total{destination=\"good\"} 15\n",
        "evlog_events_dropped_total{destination=\"bad\",reason=\"sink_error\"} 10\n",
        "evlog_events_dropped_total{reason=\"unrouted\"} 2\n",
        "evlog_events_fanned_out_total 10\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // The hook hears which destination dropped what, and what no route took.
    let heard = heard.lock().unwrap();
    let sum = |reason: &str| -> u64 {
        heard
            .iter()
            .filter(|s| s.reason == reason)
            .map(|s| s.count)
            .sum()
    };
    assert_eq!((sum("sink_error"), sum("unrouted")), (10, 2), "{heard:?}");
    assert!(heard
        .iter()
        .filter(|s| s.reason == "sink_error")
        .all(|s| s.message.starts_with("destination \"bad\": ")));
    drop(heard);
    assert!(p.shutdown(Duration::from_secs(10)));
}

#[test]
fn sampling_decides_alike_in_two_pipelines() {
    let routes = r#"
        [[routes]]
        tables = ["events.*"]
        to = ["good"]
        [[routes]]
        tables = ["events.*"]
        to = ["bad"]
        sample = 0.3
        "#;
    let run = || {
        let (good, sampled) = (MemoryStore::new(), MemoryStore::new());
        let p = Pipeline::with_destinations(
            two_destinations(None, routes),
            schemas(),
            vec![
                ("good".into(), good.factory()),
                ("bad".into(), sampled.factory()),
            ],
        )
        .unwrap();
        for i in 0..1000 {
            txn(&p, &format!("id-{i}"));
        }
        assert!(p.shutdown(Duration::from_secs(10)));
        assert_eq!(good.row_count(), 1000);
        ids(&sampled)
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second);
    assert!((230..370).contains(&first.len()), "{}", first.len());
    for id in &first {
        assert!(evlog_core::destinations::sampled(id, 0.3), "{id}");
    }
}

#[test]
fn flush_and_shutdown_wait_for_every_destination() {
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    let p = Pipeline::with_destinations(
        two_destinations(None, BOTH),
        schemas(),
        vec![
            ("good".into(), a.factory()),
            ("bad".into(), flaky(&b, Duration::ZERO)),
        ],
    )
    .unwrap();
    for round in 0..3 {
        for i in 0..7 {
            txn(&p, &format!("f-{round}-{i}"));
        }
        assert!(p.flush(Duration::from_secs(10)));
        assert_eq!(
            (a.row_count(), b.row_count()),
            (7 * (round + 1), 7 * (round + 1))
        );
    }
    for i in 0..5 {
        txn(&p, &format!("s-{i}"));
    }
    assert!(p.shutdown(Duration::from_secs(10)));
    assert_eq!((a.row_count(), b.row_count()), (26, 26));
    assert!(p.log_json("events", "transaction", "{}").is_err());
    assert!(p.stats().is_settled());
}

#[test]
fn sinks_must_match_the_configured_destinations() {
    let e = Pipeline::with_destinations(
        two_destinations(None, BOTH),
        schemas(),
        vec![("good".into(), MemoryStore::new().factory())],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("destinations") && e.contains("bad"), "{e}");
}
