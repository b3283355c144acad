//! Dead letters are never silently dropped: with the default `create_tables = false` the sink
//! creates the missing dead-letter table, and while that table cannot be written the SDK keeps
//! dead letters in its spool and the collector in its write-ahead log, both retrying until they
//! are stored, and saying why meanwhile.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use evlog_collector::CollectorConfig;
use evlog_core::Pipeline;
use evlog_tests::bq::BqTestServer;
use serde_json::Value;

mod common;
use common::{config, schema_dir, start_server, wait_for, PROJECT};

const DEAD: &str = "_evlog_rejected";

/// Logs `good` valid page views and `bad` ones without their REQUIRED `url`.
fn log_mixed(p: &Pipeline, good: usize, bad: usize) {
    for i in 0..good {
        p.log_json("events", "page_view", &format!(r#"{{"url":"/ok/{i}"}}"#))
            .expect("accepted");
    }
    for i in 0..bad {
        p.log_json("events", "page_view", &format!(r#"{{"user_id":{i}}}"#))
            .expect("accepted");
    }
}

/// The dead-letter rows' event ids, checking each is one of ours and stored once.
fn dead_ids(server: &BqTestServer, want: usize) -> HashSet<String> {
    let rows = server.rows(PROJECT, "events", DEAD);
    let ids: HashSet<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().expect("event_id").to_string())
        .collect();
    assert_eq!(rows.len(), want, "{rows:?}");
    assert_eq!(ids.len(), want, "each dead letter stored once: {rows:?}");
    for r in &rows {
        assert_eq!(r["reason"], "missing_required", "{r}");
        assert_eq!(r["field"], "url", "{r}");
        assert!(r["raw"].as_str().unwrap().contains("user_id"), "{r}");
    }
    ids
}

#[test]
fn a_missing_dead_letter_table_is_created_without_create_tables() {
    let server = start_server(); // base tables only
    assert!(!server.table_exists(PROJECT, "events", DEAD));
    let cfg = config(&server, "");
    assert!(!cfg.sink.bigquery.create_tables, "the default");
    let p = Pipeline::new(cfg).expect("pipeline");
    log_mixed(&p, 20, 2);
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.delivered, 20, "{s:?}");
    assert_eq!(s.rejected.get("missing_required"), Some(&2), "{s:?}");
    assert_eq!(s.dropped_total(), 0, "no dead_letter_failed: {s:?}");
    assert!(s.is_settled(), "{s:?}");
    dead_ids(&server, 2);
    // With the documented schema (README.md, `DEAD_LETTER_SCHEMA`).
    let want: Value = serde_json::from_str(evlog_core::sink::DEAD_LETTER_SCHEMA).unwrap();
    assert_eq!(
        server.table_schema(PROJECT, "events", DEAD),
        Some(want),
        "dead-letter table schema"
    );
    // Only the dead-letter table was created: evlog made no other table and no dataset.
    let created: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && !r.path.ends_with("/insertAll"))
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        created,
        vec![(
            format!("/bigquery/v2/projects/{PROJECT}/datasets/events/tables"),
            200
        )]
    );
    assert!(p.shutdown(Duration::from_secs(10)));
}

#[test]
fn sdk_keeps_dead_letters_in_the_spool_while_their_table_is_denied() {
    let server = start_server();
    server.deny_table("events", DEAD, true);
    let spool = tempfile::tempdir().unwrap();
    let extra = format!(
        "[spool]\nenabled = true\ndir = {:?}\nfsync = false\n",
        spool.path()
    );
    let p = Pipeline::new(config(&server, &extra)).expect("pipeline");
    log_mixed(&p, 30, 3);
    // Rows flow; dead letters wait in the spool, and the stats say so and why.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let s = p.stats();
            s.delivered == 30 && s.dead_letters_waiting == 3
        }),
        "{:?}",
        p.stats()
    );
    assert!(
        !p.flush(Duration::from_millis(200)),
        "spooled is not stored"
    );
    let s = p.stats();
    assert!(s.spooled >= 3, "{s:?}");
    assert_eq!(s.rejected_total(), 0, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert_eq!(s.in_flight, 3, "{s:?}");
    assert!(
        s.sink_errors
            .get(&("bigquery".to_string(), "http_4xx".to_string()))
            .is_some_and(|n| *n > 0),
        "the 403 is counted: {s:?}"
    );
    // Still waiting after several retries (the breaker tries again every second).
    let denied_answers = || server.requests().iter().filter(|r| r.status == 403).count();
    assert!(
        wait_for(Duration::from_secs(30), || denied_answers() >= 4),
        "retried"
    );
    assert_eq!(p.stats().dead_letters_waiting, 3);
    assert!(!server.table_exists(PROJECT, "events", DEAD));

    // Permission granted: the table is created and the dead letters land, once each.
    server.deny_table("events", DEAD, false);
    assert!(
        wait_for(Duration::from_secs(30), || p.stats().rejected_total() == 3),
        "{:?}",
        p.stats()
    );
    assert!(p.flush(Duration::from_secs(10)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.rejected.get("missing_required"), Some(&3), "{s:?}");
    assert_eq!(s.dead_letters_waiting, 0, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "nothing dropped: {s:?}");
    assert!(s.is_settled(), "{s:?}");
    dead_ids(&server, 3);
    assert!(p.shutdown(Duration::from_secs(10)));
}

struct Collector {
    server: evlog_collector::Background,
}

impl Collector {
    fn start(bq: &BqTestServer, wal: &Path) -> Self {
        let text = format!(
            r#"
            [collector]
            wal_dir = {wal:?}
            seal_interval = "20ms"
            shutdown_deadline = "300ms"
            [sink]
            kind = "bigquery"
            [sink.bigquery]
            project = "{PROJECT}"
            auth = "none"
            base_url = "{}"
            request_timeout = "5s"
            [retry]
            base = "5ms"
            cap = "100ms"
            [schemas]
            dir = {:?}
            "#,
            bq.v2_base_url(),
            schema_dir()
        );
        let config =
            CollectorConfig::from_toml_with_env(&text, "test", std::iter::empty()).expect("config");
        Self {
            server: evlog_collector::Background::start(config, "127.0.0.1:0").expect("start"),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// One HTTP/1.0 request; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn collector_keeps_dead_letters_in_its_log_while_their_table_is_denied() {
    let bq = start_server();
    bq.deny_table("events", DEAD, true);
    let wal = tempfile::tempdir().unwrap();
    let mut c = Collector::start(&bq, wal.path());
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(format!(
            r#"{{"namespace":"events","type":"page_view","id":"ok-{i}","event":{{"url":"/{i}"}}}}"#
        ));
    }
    for i in 0..2 {
        batch.push(format!(
            r#"{{"namespace":"events","type":"page_view","id":"bad-{i}","event":{{"user_id":{i}}}}}"#
        ));
    }
    let (status, body) = http(
        c.addr(),
        "POST",
        "/v1/batch",
        &format!("[{}]", batch.join(",")),
    );
    assert!((200..300).contains(&status), "{status} {body}");

    // The streamer delivers the rows, then retries the dead letters without committing:
    // /readyz names the reason, /metrics counts them.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let m = http(c.addr(), "GET", "/metrics", "").1;
            metric(&m, "evlog_dead_letters_waiting") == Some(2.0)
        }),
        "{}",
        http(c.addr(), "GET", "/metrics", "").1
    );
    let (status, body) = http(c.addr(), "GET", "/readyz", "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("dead letters cannot be written") && body.contains("accessDenied"),
        "{body}"
    );
    let m = http(c.addr(), "GET", "/metrics", "").1;
    assert_eq!(
        metric(
            &m,
            "evlog_events_dropped_total{reason=\"dead_letter_failed\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "evlog_sink_errors_total{sink=\"bigquery\",kind=\"http_4xx\"}"
        )
        .is_some_and(|n| n > 0.0),
        "{m}"
    );
    assert_eq!(bq.rows(PROJECT, "events", DEAD).len(), 0);

    // Stopped while still denied: what is uncommitted stays in the log for the next start.
    c.server.stop().expect("stop");
    bq.deny_table("events", DEAD, false);
    let c = Collector::start(&bq, wal.path());
    assert!(
        wait_for(Duration::from_secs(30), || bq
            .rows(PROJECT, "events", DEAD)
            .len()
            == 2),
        "dead letters stored from the log after the restart"
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            http(c.addr(), "GET", "/readyz", "").0 == 200
        }),
        "{:?}",
        http(c.addr(), "GET", "/readyz", "")
    );
    let m = http(c.addr(), "GET", "/metrics", "").1;
    assert_eq!(metric(&m, "evlog_dead_letters_waiting"), Some(0.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "evlog_events_rejected_total{reason=\"missing_required\"}"
        ),
        Some(2.0),
        "{m}"
    );
    let ids: HashSet<_> = bq
        .rows(PROJECT, "events", DEAD)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, HashSet::from(["bad-0".into(), "bad-1".into()]));
    // The rows sent again after the restart were de-duplicated by insertId: 10 stored.
    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    assert_eq!(
        bq.rows(PROJECT, "events", &format!("page_view{today}"))
            .len(),
        10
    );
}
