//! Setup shared by the tests that run the SDK against the BigQuery test server.
#![allow(dead_code)] // each test binary uses a different subset

pub mod outage;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evlog_core::Config;
use evlog_tests::bq::{BqTestConfig, BqTestServer};

pub const PROJECT: &str = "evlog-test";

pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/schemas")
}

pub fn config(server: &BqTestServer, extra: &str) -> Config {
    config_with_schemas(server, &schema_dir(), extra)
}

/// [`config`] with the schema files of `schemas` (e.g. a temporary directory a test edits).
pub fn config_with_schemas(server: &BqTestServer, schemas: &Path, extra: &str) -> Config {
    Config::from_toml_str(&config_text(server, schemas, extra)).expect("test config")
}

/// The TOML text of [`config_with_schemas`] (a collector's file adds `[collector]` to it).
pub fn config_text(server: &BqTestServer, schemas: &Path, extra: &str) -> String {
    config_text_for(&server.v2_base_url(), schemas, extra)
}

/// [`config_text`] for a server known by its REST API root (a child process's).
pub fn config_text_for(base_url: &str, schemas: &Path, extra: &str) -> String {
    format!(
        r#"
        [sink]
        kind = "bigquery"
        [sink.bigquery]
        project = "{PROJECT}"
        auth = "none"
        base_url = "{}"
        workers = 4
        request_timeout = "5s"
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
        {extra}
        "#,
        base_url, schemas
    )
}

/// Writes `<dir>/<namespace>/<type>.json` whole: a new file renamed over the old one, as a
/// deploy does, so a process watching the directory never reads it half-written.
pub fn write_schema(dir: &Path, namespace: &str, type_name: &str, fields: &serde_json::Value) {
    let ns = dir.join(namespace);
    std::fs::create_dir_all(&ns).expect("namespace dir");
    let tmp = ns.join(format!(".{type_name}.json.tmp"));
    std::fs::write(&tmp, fields.to_string()).expect("write schema");
    std::fs::rename(&tmp, ns.join(format!("{type_name}.json"))).expect("rename schema");
}

/// Every row stored in `dataset` in tables whose id starts with `table` (the base table and
/// its day shards), table by table.
pub fn rows_of(server: &BqTestServer, dataset: &str, table: &str) -> Vec<serde_json::Value> {
    server
        .table_ids(PROJECT, dataset)
        .into_iter()
        .filter(|t| t.starts_with(table))
        .flat_map(|t| server.rows(PROJECT, dataset, &t))
        .collect()
}

pub fn start_server() -> BqTestServer {
    let server = BqTestServer::start_blocking(BqTestConfig::default()).expect("test server");
    server
        .load_evlog_schemas(&schema_dir(), PROJECT)
        .expect("tables");
    server
}

/// [`start_server`] with the Storage Write API (gRPC) served too.
pub fn start_grpc_server() -> BqTestServer {
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("test server");
    server
        .load_evlog_schemas(&schema_dir(), PROJECT)
        .expect("tables");
    server
}

/// The value of the unlabelled Prometheus sample `name` (with its trailing space) in `text`; 0
/// when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The sum of every sample of the Prometheus family `name` (labelled or not) in `text`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The Prometheus text of `GET /metrics` from a collector at `addr`.
pub fn collector_metrics(addr: std::net::SocketAddr) -> String {
    http(addr, "GET", "/metrics", None, "").1
}

/// One HTTP/1.0 request to `addr` (with `Authorization: Bearer <key>` when given): the status
/// and the body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// Posts `lines` (NDJSON envelopes, no key) to the collector's `/v1/batch` and asserts the
/// collector stored every one of them (200, nothing refused).
pub fn post_batch_all_stored(addr: std::net::SocketAddr, lines: &[String]) {
    let (status, answer) = http(addr, "POST", "/v1/batch", None, &lines.join("\n"));
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("answer");
    assert_eq!(answer["refused"], 0, "{answer}");
}

/// Asserts the collector at `addr` counted `sent` events accepted and dropped none (every
/// reason summed).
pub fn assert_collector_accepted_all(addr: std::net::SocketAddr, sent: u64) {
    let m = collector_metrics(addr);
    assert_eq!(
        metric_value(&m, "evlog_events_accepted_total "),
        sent as f64,
        "{m}"
    );
    assert_eq!(metric_sum(&m, "evlog_events_dropped_total"), 0.0, "{m}");
}

/// A BigQuery test server whose schema changes take `propagation` to reach `insertAll`, with
/// the tables of schema files in a temporary directory a test edits while events flow
/// (schema evolution, from the SDK or through a collector).
pub struct Evolving {
    pub server: BqTestServer,
    /// Holds `schemas/` and whatever else the test puts there (a spool, a WAL).
    pub tmp: tempfile::TempDir,
    /// The schema directory (`schemas.dir`).
    pub schemas: PathBuf,
}

impl Evolving {
    /// Writes `<namespace>/<type_name>.json` with `fields` and creates its table from it.
    pub fn start(
        propagation: Duration,
        namespace: &str,
        type_name: &str,
        fields: &serde_json::Value,
    ) -> Self {
        let server = BqTestServer::start_blocking(BqTestConfig {
            schema_propagation: propagation,
            ..BqTestConfig::default()
        })
        .expect("test server");
        let tmp = tempfile::tempdir().expect("tempdir");
        let schemas = tmp.path().join("schemas");
        write_schema(&schemas, namespace, type_name, fields);
        server
            .load_evlog_schemas(&schemas, PROJECT)
            .expect("tables");
        Self {
            server,
            tmp,
            schemas,
        }
    }
}

/// Checks the promotion of `coupon` from `other` to a column in `events.click` (rows
/// `{"user", "seq", "coupon": "C<seq>"}`): every table has the column, every seq of `0..sent`
/// is stored once, rows from `first_after` on have `coupon` in its own column only, earlier
/// ones in exactly one place. Returns how many kept it in `other`.
pub fn assert_coupon_promoted(server: &BqTestServer, sent: u64, first_after: u64) -> usize {
    use serde_json::{json, Value};
    for t in server.table_ids(PROJECT, "events") {
        let fields = server.table_schema(PROJECT, "events", &t).expect("schema");
        assert!(
            fields
                .as_array()
                .expect("fields")
                .iter()
                .any(|f| f["name"] == "coupon"),
            "{t} has the column: {fields}"
        );
    }
    let rows = rows_of(server, "events", "click");
    let mut seqs: Vec<u64> = rows.iter().filter_map(|r| r["seq"].as_u64()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..sent).collect::<Vec<_>>(), "each event once");
    let mut in_other = 0;
    for r in &rows {
        let seq = r["seq"].as_u64().expect("seq");
        let coupon = json!(format!("C{seq}"));
        let other: Value = r["other"]
            .as_str()
            .map_or(Value::Null, |o| serde_json::from_str(o).expect("other"));
        if seq >= first_after {
            assert_eq!(r["coupon"], coupon, "its own column: {r}");
            assert!(other.get("coupon").is_none(), "not in other too: {r}");
        } else {
            // Before the change, or sent while it was taken up: in one place, once.
            assert!(
                (r["coupon"] == coupon) != (other["coupon"] == coupon),
                "{r}"
            );
            in_other += usize::from(other["coupon"] == coupon);
        }
    }
    in_other
}
