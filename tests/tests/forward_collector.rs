//! The SDK in forward mode → the collector → the BigQuery test server: every event stored once,
//! and the counters of both sides reconcile. And the SDK against servers that are not the
//! collector (a 204, an HTML page): nothing counts delivered, and flush() says so.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evlog_collector::CollectorConfig;
use evlog_core::sink::forward::wire::RowsRequest;
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::BqTestServer;

mod common;
use common::{schema_dir, start_server, wait_for, PROJECT};

const KEY: &str = "forward-test-key";

struct Collector {
    addr: std::net::SocketAddr,
    server: evlog_collector::Background,
}

impl Collector {
    fn start(server: &BqTestServer, wal: &Path) -> Self {
        Self::start_on(server, wal, "127.0.0.1:0")
    }

    fn start_on(server: &BqTestServer, wal: &Path, addr: &str) -> Self {
        let text = format!(
            r#"
            [collector]
            wal_dir = {wal:?}
            api_keys = [{{ key = "{KEY}", namespaces = ["events"], role = "sdk" }}]
            seal_interval = "20ms"
            fsync = "interval"
            fsync_interval = "2ms"
            [sink]
            kind = "bigquery"
            [sink.bigquery]
            project = "{PROJECT}"
            auth = "none"
            base_url = "{}"
            workers = 4
            [batch]
            max_rows = 500
            [retry]
            base = "5ms"
            cap = "100ms"
            [schemas]
            dir = {:?}
            "#,
            server.v2_base_url(),
            schema_dir()
        );
        let config =
            CollectorConfig::from_toml_with_env(&text, "test", std::iter::empty()).expect("config");
        let server = evlog_collector::Background::start(config, addr).expect("start");
        Self {
            addr: server.addr(),
            server,
        }
    }

    fn metrics(&self) -> String {
        common::collector_metrics(self.addr)
    }

    fn stop(&mut self) {
        self.server.stop().expect("collector run");
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
}

// 2026-11-22T10:00:00Z.
const DAY0: i64 = 1_795_341_600_000_000;

#[test]
fn sdk_forward_to_collector_to_bigquery_stores_every_event_once() {
    let server = start_server();
    let wal = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(&server, wal.path());

    let sdk = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        url = "http://{}"
        api_key = "{KEY}"
        workers = 4
        # What `auto` sends a collector on another host (toward this loopback one it would send
        # the text as it is, which the other tests here do).
        compression = "zstd"
        [batch]
        max_rows = 500
        max_age = "50ms"
        [queue]
        capacity = 200000
        [retry]
        base = "5ms"
        cap = "100ms"
        max_attempts = 12
        [schemas]
        dir = {:?}
        "#,
        collector.addr,
        schema_dir()
    ))
    .expect("sdk config");
    let p = Pipeline::new(sdk).expect("pipeline");
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            s.spawn(move || {
                for i in 0..25_000 {
                    let id = format!("f{t}-{i}");
                    let body = format!(r#"{{"url":"/t{t}/{i}","user_id":{i}}}"#);
                    let mut ev = EventInput::new("events", "page_view", body);
                    ev.time = Some(DAY0);
                    ev.id = Some(&id);
                    p.log(ev).expect("accepted");
                }
            });
        }
    });
    assert!(p.flush(Duration::from_secs(120)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.accepted, 100_000, "{s:?}");
    assert_eq!(s.delivered, 100_000, "{s:?}");
    assert!(s.is_settled(), "{s:?}");

    let stored = || server.insert_ids(PROJECT, "events", "page_view20261122");
    assert!(
        wait_for(Duration::from_secs(60), || stored().len() >= 100_000),
        "stored {} of 100000",
        stored().len()
    );
    let ids: Vec<String> = stored().into_iter().flatten().collect();
    assert_eq!(ids.len(), 100_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100_000);

    let m = collector.metrics();
    assert_eq!(
        metric(&m, "evlog_events_accepted_total"),
        Some(100_000.0),
        "{m}"
    );
    // The collector took the zstd bodies: none was refused (a 415 would have sent the SDK to gzip).
    assert!(
        !m.lines()
            .any(|l| l.starts_with("evlog_collector_http_responses_total")
                && l.contains("code=\"415\"")),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "evlog_collector_http_responses_total{path=\"/v1/batch\",code=\"200\"}"
        )
        .is_some_and(|n| n > 0.0),
        "{m}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &collector.metrics(),
            "evlog_events_delivered_total"
        ) == Some(100_000.0)),
        "{}",
        collector.metrics()
    );
    let m = collector.metrics();
    assert_eq!(
        metric(
            &m,
            "evlog_events_delivered_by_table_total{dataset=\"events\",table=\"page_view\"}"
        ),
        Some(100_000.0),
        "{m}"
    );
    assert!(p.shutdown(Duration::from_secs(5)));
    collector.stop();
}

#[test]
fn undeliverable_batches_go_to_the_sdk_spool_and_reach_the_collector_later() {
    let server = start_server();
    // A free port with nothing listening yet: the collector starts later. Taken below the
    // ephemeral range, so listeners that other tests bind to port 0 meanwhile cannot get it.
    let addr = (0..10_000u32)
        .map(|i| 20_000 + (std::process::id() + i) % 10_000)
        .find_map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port as u16))
                .and_then(|l| l.local_addr())
                .ok()
        })
        .expect("a free port");
    let dirs = tempfile::tempdir().expect("tempdir");
    let sdk = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        url = "http://{addr}"
        api_key = "{KEY}"
        timeout = "2s"
        format = "events"
        [batch]
        max_rows = 100
        max_age = "20ms"
        [retry]
        base = "5ms"
        cap = "50ms"
        max_attempts = 3
        [spool]
        enabled = true
        dir = {:?}
        [schemas]
        dir = {:?}
        "#,
        dirs.path().join("spool"),
        schema_dir()
    ))
    .expect("sdk config");
    let p = Pipeline::new(sdk).expect("pipeline");
    for i in 0..1000 {
        let id = format!("s-{i}");
        let mut ev = EventInput::new("events", "page_view", format!(r#"{{"url":"/{i}"}}"#));
        ev.time = Some(DAY0);
        ev.id = Some(&id);
        p.log(ev).expect("accepted");
    }
    // Nobody listens: the batches fail after their attempts and go to the spool.
    assert!(
        wait_for(Duration::from_secs(30), || p.stats().spooled == 1000),
        "{:?}",
        p.stats()
    );
    let s = p.stats();
    assert_eq!(s.delivered, 0, "{s:?}");
    assert!(
        s.sink_errors
            .keys()
            .any(|(sink, kind)| sink == "forward" && kind == "connect"),
        "{s:?}"
    );

    let mut collector = Collector::start_on(&server, &dirs.path().join("wal"), &addr.to_string());
    let stored = || {
        server
            .insert_ids(PROJECT, "events", "page_view20261122")
            .len()
    };
    assert!(
        wait_for(Duration::from_secs(60), || stored() == 1000),
        "stored {} of 1000; sdk {:?}",
        stored(),
        p.stats()
    );
    let s = p.stats();
    assert_eq!(s.delivered, 1000, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(p.shutdown(Duration::from_secs(5)));
    collector.stop();
}

/// A loopback HTTP/1.1 server that is not (or pretends to be) the collector: answers every
/// request with `answer(body)` (status, body) and records the request bodies (the SDK is set to
/// send them uncompressed).
fn fake_collector(
    answer: impl Fn(&RowsRequest) -> (u16, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<RowsRequest>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut out = stream;
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                let Some(len) = len else { break };
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let req: RowsRequest = serde_json::from_slice(&body).expect("wire body");
                let (status, text) = answer(&req);
                seen2.lock().expect("lock").push(req);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if out.write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (url, seen)
}

/// The SDK's configuration: without a `[spool]` in `extra`, no spool (these tests count what
/// the sink fails as dropped; the default spool is tested in core/tests/shutdown.rs).
fn sdk_config(url: &str, extra: &str) -> Config {
    let no_spool = "[spool]\nenabled = false\n";
    let extra = if extra.contains("[spool]") {
        extra
    } else {
        no_spool
    };
    Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        url = "{url}"
        api_key = "{KEY}"
        gzip = false
        format = "rows"
        [batch]
        max_age = "1h"
        [retry]
        base = "5ms"
        cap = "50ms"
        max_attempts = 3
        [schemas]
        dir = {:?}
        {extra}
        "#,
        schema_dir()
    ))
    .expect("sdk config")
}

fn log_page_views(p: &Pipeline, n: usize) {
    for i in 0..n {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/{i}"}}"#))
            .expect("accepted");
    }
}

#[test]
fn a_web_server_answering_204_is_not_the_collector() {
    let (url, seen) = fake_collector(|_| (204, String::new()));
    let p = Pipeline::new(sdk_config(&url, "")).expect("pipeline");
    let messages = Arc::new(Mutex::new(Vec::new()));
    let m = Arc::clone(&messages);
    p.set_error_hook(Some(Arc::new(move |s: &evlog_core::ErrorSummary| {
        m.lock().expect("lock").push(s.message.clone());
    })));
    log_page_views(&p, 5);
    assert!(
        !p.flush(Duration::from_secs(30)),
        "the events were not delivered: flush must not say they were"
    );
    let s = p.stats();
    assert_eq!(s.delivered, 0, "{s:?}");
    assert_eq!(s.dropped.get("sink_error"), Some(&5), "{s:?}");
    assert_eq!(
        s.sink_errors
            .get(&("forward".to_string(), "bad_answer".to_string())),
        Some(&1),
        "a wrong server is not retried: {s:?}"
    );
    assert!(s.is_settled(), "{s:?}");
    assert_eq!(seen.lock().expect("lock").len(), 1);
    let messages = messages.lock().expect("lock");
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("{url}/v1/rows")) && m.contains("204")),
        "the error names the URL and the status: {messages:?}"
    );
    // Nothing new went wrong since: the next flush is true.
    assert!(p.flush(Duration::from_secs(5)));
    assert!(p.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_wrong_answer_with_a_spool_is_spooled_not_delivered() {
    let (url, _) = fake_collector(|_| (200, "<html>It works!</html>".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("[spool]\nenabled = true\ndir = {:?}\n", dir.path());
    let p = Pipeline::new(sdk_config(&url, &extra)).expect("pipeline");
    log_page_views(&p, 4);
    assert!(
        !p.flush(Duration::from_secs(30)),
        "spooled is not delivered"
    );
    let s = p.stats();
    assert_eq!((s.delivered, s.spooled), (0, 4), "{s:?}");
    assert!(
        s.sink_errors
            .contains_key(&("forward".to_string(), "bad_answer".to_string())),
        "{s:?}"
    );
}

#[test]
fn rows_the_collector_refused_count_rejected_and_are_not_sent_again() {
    // Refuses the second row of every batch, as the collector's own checks would.
    let (url, seen) = fake_collector(|req| {
        let rows = req.batches.iter().map(|b| b.rows.len()).sum::<usize>();
        let refused: Vec<serde_json::Value> = req
            .batches
            .first()
            .and_then(|b| b.rows.get(1))
            .map(|r| {
                serde_json::json!({"batch": 0, "row": 1, "id": r.id, "reason": "too_long",
                                   "field": "url", "error": "field \"url\": too long"})
            })
            .into_iter()
            .collect();
        let body = serde_json::json!({
            "accepted": rows + req.rejected.len(),
            "rows": rows - refused.len(),
            "dead_letters": req.rejected.len() + refused.len(),
            "refused": refused,
        });
        (200, body.to_string())
    });
    let p = Pipeline::new(sdk_config(&url, "")).expect("pipeline");
    log_page_views(&p, 3);
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.delivered, 2, "{s:?}");
    assert_eq!(s.rejected.get("too_long"), Some(&1), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        1,
        "the refused row was not sent again as a dead letter"
    );
    assert!(seen[0].rejected.is_empty());
}

#[test]
fn sdk_dead_letters_are_stored_by_the_real_collector() {
    let server = start_server();
    let wal = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(&server, wal.path());
    let url = format!("http://{}", collector.addr);
    let p = Pipeline::new(sdk_config(&url, "")).expect("pipeline");
    log_page_views(&p, 2);
    p.log_json("events", "no_such_table", "{}")
        .expect("accepted");
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.delivered, 2, "{s:?}");
    assert_eq!(s.rejected.get("unknown_table"), Some(&1), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(p.shutdown(Duration::from_secs(5)));
    collector.stop();
}
