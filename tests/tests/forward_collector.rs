//! The SDK in forward mode → the collector → the BigQuery test server: every event stored once,
//! and the counters of both sides reconcile.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use evlog_collector::CollectorConfig;
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
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
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
