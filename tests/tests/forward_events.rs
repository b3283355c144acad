//! The SDK in forward mode with `sink.forward.format = "events"` (the default) → a real collector
//! → its file sink: every event stored once, the events the collector refuses dead-lettered
//! there and counted rejected in the SDK, the ones it refuses without keeping dead-lettered by
//! the SDK (or counted dropped when that is not allowed either), and the counters of both sides
//! reconcile. Also: `[[transforms]]` make a forward destination send rows, and
//! `format = "rows"` still sends validated rows.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evlog_collector::CollectorConfig;
use evlog_core::{Config, EventInput, Pipeline};
use serde_json::Value;

mod common;
use common::{schema_dir, wait_for};

const KEY: &str = "forward-events-key";

struct Collector {
    addr: std::net::SocketAddr,
    server: evlog_collector::Background,
    data: PathBuf,
}

impl Collector {
    /// A collector with one API key of `role` for namespace `events`, storing to files.
    fn start(dir: &Path, role: &str) -> Self {
        let data = dir.join("data");
        let text = format!(
            r#"
            [collector]
            wal_dir = {:?}
            api_keys = [{{ key = "{KEY}", namespaces = ["events"], role = "{role}" }}]
            seal_interval = "20ms"
            fsync = "never"
            [sink]
            kind = "file"
            [sink.file]
            dir = {data:?}
            [batch]
            max_age = "20ms"
            [schemas]
            dir = {:?}
            "#,
            dir.join("wal"),
            schema_dir()
        );
        let config =
            CollectorConfig::from_toml_with_env(&text, "test", std::iter::empty()).expect("config");
        let server = evlog_collector::Background::start(config, "127.0.0.1:0").expect("start");
        Self {
            addr: server.addr(),
            server,
            data,
        }
    }

    fn metrics(&self) -> String {
        common::collector_metrics(self.addr)
    }

    /// The JSON lines of the files of `events/` whose name starts with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<Value> {
        let Ok(dir) = std::fs::read_dir(self.data.join("events")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(prefix) && name.ends_with(".ndjson") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
        out
    }

    fn stop(&mut self) {
        self.server.stop().expect("collector run");
    }
}

/// The sum of a metric's samples whose line contains every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|k| l.contains(k)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sdk(collector: &Collector, extra: &str) -> Pipeline {
    sdk_with(collector, "", 100_000, extra)
}

/// [`sdk`] with `forward` lines in `[sink.forward]` and a queue of `capacity` events.
fn sdk_with(collector: &Collector, forward: &str, capacity: usize, extra: &str) -> Pipeline {
    let config = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        url = "http://{}"
        api_key = "{KEY}"
        {forward}
        workers = 2
        max_rows_per_request = 300
        [batch]
        max_rows = 500
        max_age = "20ms"
        [queue]
        capacity = {capacity}
        [retry]
        base = "5ms"
        cap = "50ms"
        max_attempts = 5
        [schemas]
        dir = {:?}
        {extra}
        "#,
        collector.addr,
        schema_dir()
    ))
    .expect("sdk config");
    Pipeline::new(config).expect("pipeline")
}

fn log(p: &Pipeline, type_name: &str, id: &str, body: &str) {
    let mut ev = EventInput::new("events", type_name, body.to_string());
    ev.id = Some(id);
    p.log(ev).expect("accepted");
}

/// 2000 valid page views from 4 threads, ids `e<t>-<i>`.
fn log_valid(p: &Pipeline) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..500 {
                    let body = format!(r#"{{"url":"/{t}/{i}","user_id":{i}}}"#);
                    log(p, "page_view", &format!("e{t}-{i}"), &body);
                }
            });
        }
    });
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["event_id"].as_str().map(String::from))
        .collect()
}

/// Waits until the collector has stored `rows` rows and `dead` dead letters, and says so.
fn wait_stored(c: &Collector, rows: usize, dead: usize) {
    assert!(
        wait_for(Duration::from_secs(30), || c.lines("page_view").len()
            >= rows
            && c.lines("_evlog_rejected").len() >= dead),
        "rows {} of {rows}, dead letters {} of {dead}",
        c.lines("page_view").len(),
        c.lines("_evlog_rejected").len()
    );
}

#[test]
fn events_reach_the_collector_once_and_its_refusals_count_rejected_in_the_sdk() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A client key is enough to send envelopes.
    let mut c = Collector::start(dir.path(), "client");
    // Spool off: with it (the default) the dead letter a client key may not send waits on disk
    // for a key that may; this test pins the count without one.
    let p = sdk(&c, "[spool]\nenabled = false");
    log_valid(&p);
    log(
        &p,
        "page_view",
        "bad-type",
        r#"{"url":"/x","user_id":"abc"}"#,
    );
    log(&p, "no_such_table", "bad-table", r#"{"x":1}"#);
    // Not JSON: the collector refuses it without keeping it; the SDK's dead letter for it goes
    // to /v1/rows, which a client key may not call: dropped, counted, not lost silently.
    log(&p, "page_view", "bad-json", r#"{"url":}"#);
    assert!(!p.flush(Duration::from_secs(30)), "one event was dropped");
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (2003, 2000), "{s:?}");
    assert_eq!(s.rejected.get("invalid_value"), Some(&1), "{s:?}");
    assert_eq!(s.rejected.get("unknown_table"), Some(&1), "{s:?}");
    assert_eq!(s.dropped.get("dead_letter_failed"), Some(&1), "{s:?}");
    assert_eq!(s.dropped_total(), 1, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(
        s.sink_errors
            .contains_key(&("forward".to_string(), "event_refused".to_string())),
        "{s:?}"
    );

    wait_stored(&c, 2000, 2);
    let rows = ids(&c.lines("page_view"));
    assert_eq!(rows.len(), 2000);
    assert_eq!(rows.iter().collect::<HashSet<_>>().len(), 2000);
    let mut dead: Vec<(String, String)> = c
        .lines("_evlog_rejected")
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or("?").to_string();
            (s("event_id"), s("reason"))
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            ("bad-table".into(), "unknown_table".into()),
            ("bad-type".into(), "invalid_value".into())
        ]
    );
    let m = c.metrics();
    let n = |name: &str, labels: &[&str]| metric(&m, name, labels);
    assert_eq!(n("evlog_events_delivered_total", &[]), 2000.0, "{m}");
    assert_eq!(n("evlog_events_rejected_total", &[]), 2.0, "{m}");
    let batch_200 = n(
        "evlog_collector_http_responses_total",
        &["path=\"/v1/batch\"", "code=\"200\""],
    );
    assert!(batch_200 >= 7.0, "2003 events, ≤ 300 per request: {m}");
    let rows_200 = n(
        "evlog_collector_http_responses_total",
        &["path=\"/v1/rows\"", "code=\"200\""],
    );
    assert_eq!(rows_200, 0.0, "{m}");
    assert!(p.shutdown(Duration::from_secs(5)));
    c.stop();
}

#[test]
fn with_an_sdk_key_events_the_collector_does_not_keep_are_dead_lettered_by_the_sdk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(dir.path(), "sdk");
    let p = sdk(&c, "");
    log(&p, "page_view", "ok-1", r#"{"url":"/a"}"#);
    log(&p, "page_view", "bad-json", "{\"url\":\n  [}");
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (2, 1), "{s:?}");
    assert_eq!(s.rejected.get("invalid_json"), Some(&1), "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    wait_stored(&c, 1, 1);
    let dead = c.lines("_evlog_rejected");
    assert_eq!(dead[0]["event_id"], "bad-json");
    assert_eq!(dead[0]["reason"], "invalid_json");
    let raw = dead[0]["raw"].as_str().unwrap_or_default();
    assert!(raw.contains("{\"url\":\n  [}"), "the body as logged: {raw}");
    assert!(p.shutdown(Duration::from_secs(5)));
    c.stop();
}

#[test]
fn transforms_make_a_forward_destination_send_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(dir.path(), "sdk");
    let p = sdk(
        &c,
        "[[transforms]]\ntables = [\"events.*\"]\nset = { referrer = \"sdk\" }\n",
    );
    for i in 0..10 {
        log(&p, "page_view", &format!("t-{i}"), r#"{"url":"/a"}"#);
    }
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    wait_stored(&c, 10, 0);
    let rows = c.lines("page_view");
    assert!(rows.iter().all(|r| r["referrer"] == "sdk"), "{rows:?}");
    assert_sent_rows_only(&c);
    assert!(p.shutdown(Duration::from_secs(5)));
    c.stop();
}

#[test]
fn rows_format_validates_in_the_sdk_and_sends_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(dir.path(), "sdk");
    let p = {
        let config = Config::from_toml_str(&format!(
            "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = \"http://{}\"\napi_key = \"{KEY}\"\n\
             format = \"rows\"\n[batch]\nmax_age = \"20ms\"\n[schemas]\ndir = {:?}\n",
            c.addr,
            schema_dir()
        ))
        .expect("config");
        Pipeline::new(config).expect("pipeline")
    };
    log(&p, "page_view", "r-1", r#"{"url":"/a"}"#);
    log(&p, "page_view", "r-bad", r#"{"url":"/x","user_id":"abc"}"#);
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (2, 1), "{s:?}");
    assert_eq!(s.rejected.get("invalid_value"), Some(&1), "{s:?}");
    wait_stored(&c, 1, 1);
    assert_sent_rows_only(&c);
    assert!(p.shutdown(Duration::from_secs(5)));
    c.stop();
}

/// The SDK spoke to the collector's `/v1/rows` only, never `/v1/batch`.
fn assert_sent_rows_only(c: &Collector) {
    let m = c.metrics();
    let n = |path: &str| {
        metric(
            &m,
            "evlog_collector_http_responses_total",
            &[&format!("path=\"{path}\"")],
        )
    };
    assert!(n("/v1/rows") >= 1.0 && n("/v1/batch") == 0.0, "{m}");
}

/// An SDK process reports its own counters to the collector (`POST /v1/report`): events its
/// full queue dropped, before they could reach the collector, show in the collector's
/// `/metrics` by app, host and reason, and stay counted after the process shut down (its last
/// report), when its gauges are gone; drops before routing also by the table they were meant for.
#[test]
fn the_sdk_reports_drops_before_the_collector_and_they_outlive_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), "client");
    let p = sdk_with(
        &c,
        "report_interval = \"1s\"\napp = \"report-test\"",
        20,
        "[spool]\nenabled = false",
    );
    // Log faster than the flush thread ships until the queue has been full a few times.
    let mut i = 0u64;
    assert!(wait_for(Duration::from_secs(20), || {
        for _ in 0..500 {
            let body = format!(r#"{{"url":"/r/{i}","user_id":{i}}}"#);
            let _ = p.log(EventInput::new("events", "page_view", body));
            i += 1;
        }
        p.stats().dropped["queue_full"] >= 10
    }));
    // An envelope log() refuses for its names counts under `_invalid`.
    assert!(p
        .log(EventInput::new(
            "events",
            "no spaces allowed",
            "{}".to_string()
        ))
        .is_err());
    assert!(p.flush(Duration::from_secs(10)));
    let s = p.stats();
    // The drops before routing, by the table they were meant for.
    assert_eq!(
        s.dropped_by_table["events.page_view"]["queue_full"],
        s.dropped["queue_full"]
    );
    assert_eq!(s.dropped_by_table["_invalid"]["invalid_envelope"], 1);
    let app = ["app=\"report-test\""];
    let reported = |m: &str| {
        (
            metric(
                m,
                "evlog_sdk_events_dropped_total",
                &[app[0], "reason=\"queue_full\""],
            ),
            metric(m, "evlog_sdk_events_accepted_total", &app),
            metric(m, "evlog_sdk_processes", &app),
        )
    };
    let expected = (s.dropped["queue_full"] as f64, s.accepted as f64, 1.0);
    assert!(
        wait_for(Duration::from_secs(20), || reported(&c.metrics())
            == expected),
        "reported {:?}, the process counted {expected:?}",
        reported(&c.metrics())
    );
    // The last report at shutdown: the totals stay, the process is no longer live.
    assert!(p.shutdown(Duration::from_secs(5)));
    let after = (expected.0, expected.1, 0.0);
    assert!(
        wait_for(Duration::from_secs(10), || reported(&c.metrics()) == after),
        "after the shutdown {:?}",
        reported(&c.metrics())
    );
    let m = c.metrics();
    assert!(
        m.contains("# TYPE evlog_sdk_events_dropped_total counter"),
        "{m}"
    );
    // The collector shows them per table too, summed over apps and hosts.
    let by_table = |table: &str, reason: &str| {
        metric(
            &m,
            "evlog_sdk_table_events_dropped_total",
            &[
                &format!("table=\"{table}\""),
                &format!("reason=\"{reason}\""),
            ],
        )
    };
    assert_eq!(
        by_table("events.page_view", "queue_full"),
        expected.0,
        "{m}"
    );
    assert_eq!(by_table("_invalid", "invalid_envelope"), 1.0, "{m}");
    c.stop();
}
