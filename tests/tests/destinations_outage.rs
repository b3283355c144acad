//! Destination isolation end to end, with two named destinations: `bq` (the BigQuery sink, to
//! the BigQuery test server) and `os` (the OpenSearch sink, to osmem-server behind the
//! fault-injecting proxy; installed by `bash tests/suites/50-opensearch.sh setup`), a route
//! sending every event to both.
//!
//! - OpenSearch down for 20 s under a steady load never slows BigQuery; OpenSearch's copies wait
//!   (the SDK: in its own spool directory; the collector: in the write-ahead log, behind its own
//!   cursor) and drain once it is back; every event lands once in each store and each
//!   destination's counters reconcile. Once in an SDK pipeline, once in a collector an SDK
//!   forwards to.
//! - A document OpenSearch refuses for its mapping is dead-lettered there with OpenSearch's
//!   reason, while BigQuery stores its copy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evlog_collector::CollectorConfig;
use evlog_core::{Config, EventInput, Pipeline, Stats};
use evlog_tests::bq::BqTestServer;
use evlog_tests::opensearch::{repo_root, venv_python, Fault, FaultProxy, Osmem};
use serde_json::{json, Value};

mod common;
use common::{schema_dir, wait_for, PROJECT};

/// What the SDK and the collector configurations share: the two destinations (`os_extra`: more
/// keys of OpenSearch's), the route, schemas and retries. Retries are slow on purpose: a
/// failing OpenSearch delivery spends seconds backing off (base 100 ms doubling to 2 s, 10
/// attempts) before its rows are kept for later, so a destination sharing OpenSearch's thread
/// would visibly stall.
fn destinations(bq: &BqTestServer, os: &FaultProxy, schemas: &Path, os_extra: &str) -> String {
    format!(
        r#"
        [retry]
        base = "100ms"
        cap = "2s"
        max_attempts = 10
        [schemas]
        dir = {schemas:?}

        [destinations.bq]
        kind = "bigquery"
        project = "{PROJECT}"
        auth = "none"
        base_url = "{bq_url}"
        request_timeout = "5s"
        [destinations.os]
        kind = "opensearch"
        urls = ["{os_url}"]
        install_templates = true
        timeout = "2s"
        {os_extra}

        [[routes]]
        tables = ["*"]
        to = ["bq", "os"]
        "#,
        bq_url = bq.v2_base_url(),
        os_url = os.url(),
    )
}

/// An SDK pipeline's configuration: [`destinations`], and a spool in `spool`.
fn sdk_config(
    bq: &BqTestServer,
    os: &FaultProxy,
    spool: &Path,
    schemas: &Path,
    os_extra: &str,
) -> Config {
    let toml = format!(
        r#"
        [batch]
        max_rows = 200
        max_age = "50ms"
        [queue]
        capacity = 100000
        [spool]
        enabled = true
        dir = {spool:?}
        fsync = false
        {}
        "#,
        destinations(bq, os, schemas, os_extra)
    );
    Config::from_toml_str(&toml).expect("config")
}

/// Runs the opensearch-py checks of `spec` (`tests/opensearch/check_docs.py`) against `url`;
/// panics with their output if one fails.
fn check_docs(url: &str, spec: Value) {
    let out = std::process::Command::new(venv_python())
        .arg(repo_root().join("tests/opensearch/check_docs.py"))
        .arg(url)
        .arg(spec.to_string())
        .output()
        .expect("run check_docs.py with .venv's python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "opensearch-py checks failed:\n{text}");
}

/// A document's `_source`, read with opensearch-py.
fn os_source(url: &str, index: &str, id: &str) -> Value {
    let out = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import json, sys\n\
             from opensearchpy import OpenSearch\n\
             c = OpenSearch(hosts=[sys.argv[1]], timeout=30)\n\
             print(json.dumps(c.get(index=sys.argv[2], id=sys.argv[3])['_source']))",
            url,
            index,
            id,
        ])
        .output()
        .expect("run .venv's python");
    assert!(
        out.status.success(),
        "get {index}/{id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON document")
}

/// Every insertId stored in the tables of `dataset` whose name starts with `table` (the day
/// shards; a run may cross midnight UTC), duplicates kept.
fn bq_ids(server: &BqTestServer, dataset: &str, table: &str) -> Vec<String> {
    server
        .table_ids(PROJECT, dataset)
        .into_iter()
        .filter(|t| t.starts_with(table) && t != table)
        .flat_map(|t| server.insert_ids(PROJECT, dataset, &t))
        .map(|id| id.expect("every row has an insertId"))
        .collect()
}

/// Each destination's identity on its own: `accepted = delivered + rejected + dropped +
/// in_flight`, nothing in flight; returns its reading.
fn settled<'a>(s: &'a Stats, name: &str) -> &'a Stats {
    let d = &s.destinations[name];
    assert_eq!(
        d.accepted as i64,
        (d.delivered + d.rejected_total() + d.dropped_total()) as i64 + d.in_flight,
        "{name}: {d:?}"
    );
    assert_eq!(d.in_flight, 0, "{name}: {d:?}");
    assert_eq!(d.queue_events, 0, "{name}: {d:?}");
    d
}

/// Files named `*.evs` (spool and write-ahead-log segments) in `dir`.
fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".evs"))
            .count()
    })
}

const RATE: u64 = 100; // events per second
const TOTAL: u64 = 3000; // 30 s of load
const BEFORE: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_secs(20);
const SAMPLE: Duration = Duration::from_millis(200);
/// The most BigQuery may fall behind the load while OpenSearch is down: how long ago the oldest
/// event it has not delivered was logged. Its batches wait 50 ms and a delivery on loopback
/// takes milliseconds: 3 s leaves room for a machine whose every CPU is busy, and is well under
/// what OpenSearch's failures cost the thread that meets them (the first failing delivery backs
/// off for seconds, up to 11 s; every attempt at the hung node waits its 2 s timeout).
const MAX_LAG: Duration = Duration::from_secs(3);

/// The ids of the load's events.
fn load_ids() -> BTreeSet<String> {
    (0..TOTAL).map(|n| format!("iso-{n}")).collect()
}

/// The load: TOTAL page views logged at RATE by a thread of its own, each paced by its own
/// deadline.
struct Load {
    t0: Instant,
    /// When event i was logged (ns since `t0`).
    times: Arc<Vec<AtomicU64>>,
    /// How many were (set after their time).
    logged: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl Load {
    fn start(p: &Pipeline) -> Self {
        let t0 = Instant::now();
        let times: Arc<Vec<AtomicU64>> = Arc::new((0..TOTAL).map(|_| AtomicU64::new(0)).collect());
        let logged = Arc::new(AtomicU64::new(0));
        let (p, t, l) = (p.clone(), times.clone(), logged.clone());
        let writer = std::thread::spawn(move || {
            for n in 0..TOTAL {
                let due = t0 + Duration::from_micros(n * 1_000_000 / RATE);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let id = format!("iso-{n}");
                let body = format!(r#"{{"url":"/iso/{n}","user_id":{n},"tags":["t{n}"]}}"#);
                let mut ev = EventInput::new("events", "page_view", body);
                ev.id = Some(&id);
                p.log(ev).expect("accepted");
                t[n as usize].store(t0.elapsed().as_nanos() as u64, Ordering::SeqCst);
                l.store(n + 1, Ordering::SeqCst);
            }
        });
        Self {
            t0,
            times,
            logged,
            writer: Some(writer),
        }
    }

    fn logged(&self) -> u64 {
        self.logged.load(Ordering::SeqCst)
    }

    /// How far a destination that has delivered `delivered` events is behind the load: how
    /// long ago the oldest event it has not delivered (by count) was logged; zero when it has
    /// every event logged so far. Read `delivered` first.
    fn lag(&self, delivered: u64) -> Duration {
        if delivered >= self.logged() {
            return Duration::ZERO;
        }
        let at = Duration::from_nanos(self.times[delivered as usize].load(Ordering::SeqCst));
        self.t0.elapsed().saturating_sub(at)
    }

    fn join(&mut self) {
        if let Some(w) = self.writer.take() {
            w.join().expect("writer");
        }
    }
}

/// What [`outage`] saw.
#[derive(Debug)]
struct Outage {
    /// BigQuery's worst lag before and during the outage.
    lag_before: Duration,
    lag_during: Duration,
    /// (logged, BigQuery delivered, OpenSearch delivered) when it began and ended.
    start: (u64, u64, u64),
    end: (u64, u64, u64),
    /// When OpenSearch came back, and how long it was down.
    up: Instant,
    took: Duration,
}

/// With `load` running: once both destinations deliver (`delivered` reads BigQuery's and
/// OpenSearch's counts), samples BigQuery's lag until BEFORE into the load, then takes
/// OpenSearch down for OUTAGE three ways in turn: every request answered 503, every connection
/// dropped unanswered, then a hung node (requests read, never answered: each attempt waits for
/// the sink's 2 s timeout; the proxy would forward them after two minutes, long after this
/// test). Calls `while_down` just before OpenSearch comes back.
fn outage(
    load: &Load,
    proxy: &FaultProxy,
    mut delivered: impl FnMut() -> (u64, u64),
    while_down: impl FnOnce(),
) -> Outage {
    assert!(
        wait_for(BEFORE * 2, || {
            let (b, o) = delivered();
            b > 0 && o > 0
        }),
        "both deliver"
    );
    let mut lag_before = Duration::ZERO;
    let mut next = Instant::now();
    while load.t0.elapsed() < BEFORE {
        lag_before = lag_before.max(load.lag(delivered().0));
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let phases = [
        (Duration::ZERO, Fault::Status(503)),
        (OUTAGE * 7 / 20, Fault::Drop),
        (OUTAGE * 14 / 20, Fault::Slow(Duration::from_secs(120))),
    ];
    let counts = |(b, o): (u64, u64)| (load.logged(), b, o);
    let start = counts(delivered());
    let down = Instant::now();
    let mut phase = 0;
    let mut lag_during = Duration::ZERO;
    let mut next = down;
    while down.elapsed() < OUTAGE {
        if let Some((from, fault)) = phases.get(phase) {
            if down.elapsed() >= *from {
                proxy.always(Some(fault.clone()));
                phase += 1;
            }
        }
        lag_during = lag_during.max(load.lag(delivered().0));
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (b, o) = delivered();
    lag_during = lag_during.max(load.lag(b));
    let end = (load.logged(), b, o);
    while_down();
    proxy.always(None);
    let up = Instant::now();
    let seen = Outage {
        lag_before,
        lag_during,
        start,
        end,
        up,
        took: up - down,
    };

    // The outage was real: OpenSearch fell behind, and saw every fault.
    assert!(
        seen.end.2 + 1000 < seen.end.0,
        "OpenSearch was down: {seen:?}"
    );
    let faults: BTreeSet<String> = proxy.bulks().into_iter().filter_map(|b| b.fault).collect();
    assert!(
        ["status_503", "drop", "slow"]
            .iter()
            .all(|f| faults.contains(*f)),
        "{faults:?}"
    );
    // BigQuery kept its pace throughout: never more than MAX_LAG behind the load.
    assert!(
        seen.lag_during <= MAX_LAG,
        "BigQuery fell behind while OpenSearch was down: {seen:?}"
    );
    seen
}

/// Prints what [`outage`] saw and how OpenSearch caught up.
fn report(what: &str, o: &Outage, catch_up: Duration, load: &Load) {
    eprintln!(
        "{what}: OpenSearch down {:?}: logged {}, BigQuery delivered {}, OpenSearch {}; \
         BigQuery's worst lag before {:?}, during {:?}; OpenSearch caught up {catch_up:?} after \
         it came back; all delivered {:?} after the load began",
        o.took,
        o.end.0 - o.start.0,
        o.end.1 - o.start.1,
        o.end.2 - o.start.2,
        o.lag_before,
        o.lag_during,
        load.t0.elapsed(),
    );
}

/// Both stores hold every event of the load exactly once.
fn check_stores(bq: &BqTestServer, osmem: &Osmem) {
    let want = load_ids();
    let rows = bq_ids(bq, "events", "page_view");
    assert_eq!(rows.len() as u64, TOTAL, "BigQuery rows");
    assert_eq!(rows.into_iter().collect::<BTreeSet<_>>(), want);
    check_docs(
        osmem.url(),
        json!([{"index": "events-page_view", "ids": want.iter().collect::<Vec<_>>()}]),
    );
}

#[test]
fn opensearch_down_for_20_s_under_load_never_slows_bigquery_and_drains_after() {
    let bq = common::start_server();
    let osmem = Osmem::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(osmem.url()).expect("proxy");
    let spool = tempfile::tempdir().expect("tempdir");
    let cfg = sdk_config(
        &bq,
        &proxy,
        spool.path(),
        &schema_dir(),
        r#"index = "{namespace}-{type}""#,
    );
    let p = Pipeline::new(cfg).expect("pipeline");
    let delivered = |name: &str| p.stats().destinations[name].delivered;

    let mut load = Load::start(&p);
    // Each destination spools in a directory of its own: OpenSearch's holds segments while it
    // is down, BigQuery's none.
    let mut spooled = (0, 0);
    let seen = outage(
        &load,
        &proxy,
        || (delivered("bq"), delivered("os")),
        || {
            spooled = (
                segments(&spool.path().join("os")),
                segments(&spool.path().join("bq")),
            )
        },
    );
    assert!(
        spooled.0 > 0 && spooled.1 == 0,
        "spool segments: {spooled:?}"
    );

    // After: the load goes on to its end; OpenSearch catches up with what was logged while it
    // was down, then drains.
    let caught_up = wait_for(Duration::from_secs(60), || delivered("os") >= seen.end.0);
    let catch_up = seen.up.elapsed();
    assert!(caught_up, "OpenSearch did not catch up: {:?}", p.stats());
    load.join();
    let drained = wait_for(Duration::from_secs(60), || {
        delivered("bq") == TOTAL && delivered("os") == TOTAL
    });
    assert!(drained, "not drained: {:?}", p.stats());
    report("SDK", &seen, catch_up, &load);
    assert!(p.flush(Duration::from_secs(30)), "flush: {:?}", p.stats());

    // Counters: every copy once, per destination; nothing lost.
    let s = p.stats();
    assert_eq!(
        (s.accepted, s.fanned_out, s.delivered),
        (TOTAL, TOTAL, 2 * TOTAL),
        "{s:?}"
    );
    assert_eq!(
        (s.dropped_total(), s.rejected_total()),
        (0, 0),
        "0 lost: {s:?}"
    );
    assert!(s.is_settled(), "{s:?}");
    for name in ["bq", "os"] {
        let d = settled(&s, name);
        assert_eq!(
            (
                d.accepted,
                d.delivered,
                d.rejected_total(),
                d.dropped_total()
            ),
            (TOTAL, TOTAL, 0, 0),
            "{name}: {d:?}"
        );
    }
    let (b, o) = (&s.destinations["bq"], &s.destinations["os"]);
    assert_eq!(b.spooled, 0, "BigQuery never waited: {b:?}");
    assert!(
        o.spooled > 0,
        "OpenSearch's copies waited in its spool: {o:?}"
    );
    assert!(!o.sink_errors.is_empty(), "{o:?}");
    eprintln!(
        "SDK: BigQuery test server: {} rows received, {} duplicates dropped; OpenSearch: {} \
         _bulk requests, {} spooled, errors {:?}",
        bq.stats().rows_received,
        bq.stats().duplicates_dropped,
        proxy.bulks().len(),
        o.spooled,
        o.sink_errors
    );

    // The stores: every event exactly once in each.
    check_stores(&bq, &osmem);
    // OpenSearch's spool empties once its records are replayed.
    assert!(
        wait_for(Duration::from_secs(10), || segments(
            &spool.path().join("os")
        ) == 0),
        "OpenSearch's spool empties"
    );
    assert!(p.shutdown(Duration::from_secs(10)));
}

/// A collector on a loopback port with the two destinations, its log in `wal`.
fn collector(
    bq: &BqTestServer,
    os: &FaultProxy,
    wal: &Path,
    key: &str,
) -> evlog_collector::Background {
    let text = format!(
        r#"
        [collector]
        wal_dir = {wal:?}
        api_keys = [{{ key = "{key}", namespaces = ["events"], role = "sdk" }}]
        seal_interval = "20ms"
        fsync = "interval"
        fsync_interval = "5ms"
        [batch]
        max_rows = 200
        max_age = "50ms"
        {}
        "#,
        destinations(bq, os, &schema_dir(), r#"index = "{namespace}-{type}""#)
    );
    let config =
        CollectorConfig::from_toml_with_env(&text, "test", std::iter::empty()).expect("config");
    evlog_collector::Background::start(config, "127.0.0.1:0").expect("collector")
}

/// The collector's `/metrics`, sample by sample (`name{labels}` → value).
fn metrics(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of a family's samples for one destination (`{destination="name"` and maybe more
/// labels).
fn family(m: &BTreeMap<String, f64>, family: &str, name: &str) -> u64 {
    let prefix = format!("{family}{{destination=\"{name}\"");
    m.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

#[test]
fn behind_a_collector_opensearch_down_for_20_s_never_slows_bigquery_and_drains_after() {
    const KEY: &str = "osdown-test-key";
    let bq = common::start_server();
    let osmem = Osmem::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(osmem.url()).expect("proxy");
    let wal = tempfile::tempdir().expect("tempdir");
    let mut server = collector(&bq, &proxy, wal.path(), KEY);
    let addr = server.addr();
    // The SDK forwards to it (one destination, no spool: the collector is never down here).
    let sdk = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        url = "http://{addr}"
        api_key = "{KEY}"
        [batch]
        max_rows = 200
        max_age = "50ms"
        [retry]
        base = "5ms"
        cap = "100ms"
        [schemas]
        dir = {:?}
        "#,
        schema_dir()
    ))
    .expect("sdk config");
    let p = Pipeline::new(sdk).expect("pipeline");
    let delivered = |name: &str| {
        let m = metrics(addr);
        family(&m, "evlog_events_delivered_total", name)
    };

    let mut load = Load::start(&p);
    // The log keeps what OpenSearch has not committed while it is down.
    let mut kept = 0;
    let seen = outage(
        &load,
        &proxy,
        || {
            let m = metrics(addr);
            (
                family(&m, "evlog_events_delivered_total", "bq"),
                family(&m, "evlog_events_delivered_total", "os"),
            )
        },
        || kept = segments(wal.path()),
    );
    assert!(kept > 0, "the log keeps OpenSearch's rows");

    let caught_up = wait_for(Duration::from_secs(60), || delivered("os") >= seen.end.0);
    let catch_up = seen.up.elapsed();
    assert!(
        caught_up,
        "OpenSearch did not catch up: {:?}",
        metrics(addr)
    );
    load.join();
    assert!(p.flush(Duration::from_secs(30)), "flush: {:?}", p.stats());
    let drained = wait_for(Duration::from_secs(60), || {
        delivered("bq") == TOTAL && delivered("os") == TOTAL
    });
    assert!(drained, "not drained: {:?}", metrics(addr));
    report("collector", &seen, catch_up, &load);

    // The SDK's side: every event handed to the collector, once.
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (TOTAL, TOTAL), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    // The collector's, per destination: every copy delivered, nothing rejected, dropped or in
    // flight (accepted = delivered + rejected + dropped).
    let m = metrics(addr);
    for name in ["bq", "os"] {
        let count = |f: &str| family(&m, f, name);
        assert_eq!(
            (
                count("evlog_events_accepted_total"),
                count("evlog_events_delivered_total"),
                count("evlog_events_rejected_total"),
                count("evlog_events_dropped_total"),
            ),
            (TOTAL, TOTAL, 0, 0),
            "{name}: {m:?}"
        );
    }
    assert_eq!(m.get("evlog_events_accepted_total"), Some(&(TOTAL as f64)));
    assert_eq!(
        m.get("evlog_events_delivered_total"),
        Some(&(2.0 * TOTAL as f64))
    );
    assert!(family(&m, "evlog_sink_errors_total", "os") > 0, "{m:?}");

    check_stores(&bq, &osmem);
    assert!(
        wait_for(Duration::from_secs(10), || segments(wal.path()) == 0),
        "segments go once both destinations committed them"
    );
    assert!(p.shutdown(Duration::from_secs(10)));
    server.stop().expect("collector");
}

#[test]
fn a_mapping_conflict_is_dead_lettered_by_opensearch_alone_with_its_reason() {
    // A table with a JSON column: BigQuery takes any JSON value, OpenSearch maps it `object`
    // and refuses a value that is not one.
    let schemas = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(schemas.path().join("app")).expect("mkdir");
    std::fs::write(
        schemas.path().join("app/signal.json"),
        r#"[
          {"name": "name", "type": "STRING", "mode": "REQUIRED"},
          {"name": "attrs", "type": "JSON"}
        ]"#,
    )
    .expect("schema");
    let bq = BqTestServer::start_blocking(Default::default()).expect("test server");
    bq.load_evlog_schemas(schemas.path(), PROJECT)
        .expect("tables");
    let osmem = Osmem::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(osmem.url()).expect("proxy");
    let spool = tempfile::tempdir().expect("tempdir");
    let cfg = sdk_config(
        &bq,
        &proxy,
        spool.path(),
        schemas.path(),
        r#"index = "{namespace}-{type}""#,
    );
    let p = Pipeline::new(cfg).expect("pipeline");
    let log = |id: &str, body: &str| {
        let mut ev = EventInput::new("app", "signal", body.to_string());
        ev.id = Some(id);
        p.log(ev).expect("accepted");
    };
    log("m-1", r#"{"name":"a","attrs":{"color":"red"}}"#);
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    log("m-2", r#"{"name":"b","attrs":"just text"}"#);
    log("m-3", r#"{"name":"c","attrs":{"color":"blue"}}"#);
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());

    let s = p.stats();
    assert!(s.is_settled(), "{s:?}");
    assert_eq!((s.accepted, s.fanned_out, s.dropped_total()), (3, 3, 0));
    let b = settled(&s, "bq");
    assert_eq!(
        (b.accepted, b.delivered, b.rejected_total()),
        (3, 3, 0),
        "{b:?}"
    );
    let o = settled(&s, "os");
    assert_eq!(
        (o.accepted, o.delivered, o.rejected["opensearch_refused"]),
        (3, 2, 1),
        "{o:?}"
    );
    assert_eq!(o.rejected_total(), 1);

    // BigQuery stored every copy, the refused one too, and dead-lettered nothing.
    let rows = bq_ids(&bq, "app", "signal");
    assert_eq!(rows.iter().collect::<BTreeSet<_>>().len(), 3, "{rows:?}");
    assert!(bq.rows(PROJECT, "app", "_evlog_rejected").is_empty());
    // OpenSearch: the two others stored, the refused one in its dead-letter index with
    // OpenSearch's own reason.
    check_docs(
        osmem.url(),
        json!([
            {"index": "app-signal", "ids": ["m-1", "m-3"]},
            {"index": "app-_evlog_rejected", "ids": ["m-2"]},
            {"index": "app-_evlog_rejected", "id": "m-2", "source": {
                "reason": "opensearch_refused", "field": "attrs", "type": "signal"}},
        ]),
    );
    let dead = os_source(osmem.url(), "app-_evlog_rejected", "m-2");
    let error = dead["error"].as_str().unwrap_or_default();
    assert!(error.contains("mapper_parsing_exception"), "{dead}");
    assert!(
        dead["raw"]
            .as_str()
            .unwrap_or_default()
            .contains("just text"),
        "{dead}"
    );
    assert!(p.shutdown(Duration::from_secs(10)));
}
