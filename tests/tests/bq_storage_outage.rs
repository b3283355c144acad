//! A 20-second outage of the Storage Write API (`api = "storage_write"`: the gRPC port refuses
//! connections, open streams are cut) while events keep coming: the SDK keeps them in its spool
//! and the collector in its write-ahead log, memory stays bounded, and once BigQuery is back
//! every event is stored (0 lost). The two tests run one after the other (a lock), since each
//! measures this process's resident memory.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{config_text, http, metric_value as metric, rows_of, wait_for, write_schema, PROJECT};
use evlog_collector::reload::Source;
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::{json, Value};

/// How long BigQuery is unreachable.
const OUTAGE: Duration = Duration::from_secs(20);
/// The most this process's resident memory may grow while the outage lasts. The events sent
/// during it take several times more as text alone (see each test), so staying below this
/// means they went to disk, not to memory.
const RSS_GROWTH_LIMIT: u64 = 48 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This process's resident set size, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A server with the `events.click` table (a padded `note` makes each event ~1 KB).
fn server_and_schemas(dir: &std::path::Path) -> (BqTestServer, std::path::PathBuf) {
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server");
    let schemas = dir.join("schemas");
    write_schema(
        &schemas,
        "events",
        "click",
        &json!([{"name": "seq", "type": "INT64", "mode": "REQUIRED"},
                {"name": "note", "type": "STRING"}]),
    );
    server
        .load_evlog_schemas(&schemas, PROJECT)
        .expect("tables");
    (server, schemas)
}

/// The `[sink.bigquery]` section of `config_text` switched to the Storage Write API.
fn storage_sink(server: &BqTestServer, schemas: &std::path::Path, extra: &str) -> String {
    config_text(server, schemas, extra).replace(
        "[sink.bigquery]",
        &format!(
            "[sink.bigquery]\napi = \"storage_write\"\nstorage_url = \"{}\"",
            server.grpc_url()
        ),
    )
}

fn note() -> String {
    "n".repeat(1000)
}

/// Distinct `seq` values stored in `events.click`.
fn stored(server: &BqTestServer) -> HashSet<u64> {
    rows_of(server, "events", "click")
        .iter()
        .filter_map(|r| {
            r["seq"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or(r["seq"].as_u64())
        })
        .collect()
}

/// What [`through_an_outage`] saw.
#[derive(Debug)]
struct Outage {
    /// Calls of `send` made, before, during and after the outage.
    sent: u64,
    /// Of them, those made while the outage lasted.
    during: u64,
    /// The largest resident memory seen during the outage above what it was before it.
    growth: u64,
}

/// Runs `send(k)` for k = 0, 1, … on a thread of its own until the end, and meanwhile takes the
/// outage: the gRPC port refuses connections for [`OUTAGE`] once `ready()` holds.
fn through_an_outage(
    server: &BqTestServer,
    mut send: impl FnMut(u64) + Send,
    ready: impl Fn() -> bool,
) -> Outage {
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                send(k);
                k += 1;
                progress.store(k, Ordering::Relaxed);
            }
            k
        });
        assert!(
            wait_for(Duration::from_secs(60), &ready),
            "no delivery before the outage"
        );
        let baseline = rss();
        let mut peak = baseline;
        server.set_refusing(true);
        let first = progress.load(Ordering::Relaxed);
        let end = Instant::now() + OUTAGE;
        while Instant::now() < end {
            peak = peak.max(rss());
            std::thread::sleep(Duration::from_millis(100));
        }
        let during = progress.load(Ordering::Relaxed) - first;
        server.set_refusing(false);
        // Keep sending a little after the outage: recovery happens under load too.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().expect("sender");
        Outage {
            sent,
            during,
            growth: peak.saturating_sub(baseline),
        }
    })
}

/// Checks that `events` of ~1 KB sent during the outage would have taken more than the memory
/// limit, and that memory grew less than it.
fn memory_was_bounded(o: &Outage, events: u64) {
    assert!(
        events << 10 > RSS_GROWTH_LIMIT * 3 / 2,
        "too few events during the outage to tell memory from disk: {events}, {o:?}"
    );
    assert!(
        o.growth < RSS_GROWTH_LIMIT,
        "resident memory grew {} MiB while {events} events of ~1 KB came in: {o:?}",
        o.growth >> 20
    );
}

#[test]
fn an_sdk_keeps_a_twenty_second_outage_in_its_spool_with_bounded_memory_and_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, schemas) = server_and_schemas(tmp.path());
    let text = storage_sink(
        &server,
        &schemas,
        &format!(
            "[spool]\nenabled = true\nfsync = false\ndir = {:?}\nmax_bytes = \"2GiB\"",
            tmp.path().join("spool")
        ),
    )
    // A queue of 10,000 events (~10 MB): what does not fit goes to the spool.
    .replace("capacity = 200000", "capacity = 10000")
    // Give up on a batch fast so the outage reaches the spool rather than waiting in retries.
    .replace("max_attempts = 12", "max_attempts = 4");
    let p = Pipeline::new(Config::from_toml_str(&text).expect("config")).expect("pipeline");
    let note = note();
    let o = through_an_outage(
        &server,
        |k| {
            let body = format!(r#"{{"seq":{k},"note":"{note}"}}"#);
            p.log(EventInput::new("events", "click", body))
                .expect("log");
            // At most ~8,000 events (8 MB) a second: 160 MB over the outage.
            if k % 80 == 79 {
                std::thread::sleep(Duration::from_millis(10));
            }
        },
        || p.stats().delivered > 1_000,
    );
    let sent = o.sent;
    // What the outage spooled is replayed in the background (flush() only answers for what
    // was queued, and says false when some of it went to the spool).
    assert!(
        wait_for(Duration::from_secs(240), || p.stats().delivered == sent),
        "{:?}",
        p.stats()
    );
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (sent, sent), "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert!(s.spooled > 0, "the outage went to the spool: {s:?}");
    let seqs = stored(&server);
    assert_eq!(seqs.len() as u64, sent, "0 lost");
    memory_was_bounded(&o, o.during);
    eprintln!("sdk: {o:?}, {} spooled", s.spooled);
}

#[test]
fn a_collector_keeps_a_twenty_second_outage_in_its_log_with_bounded_memory_and_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, schemas) = server_and_schemas(tmp.path());
    let path = tmp.path().join("collector.toml");
    let text = format!(
        "[collector]\nlisten = \"127.0.0.1:0\"\nwal_dir = {:?}\nfsync = \"never\"\nseal_interval = \"20ms\"\n{}",
        tmp.path().join("wal"),
        storage_sink(&server, &schemas, "").replace("max_attempts = 12", "max_attempts = 4"),
    );
    std::fs::write(&path, text).expect("config");
    let collector =
        evlog_collector::Background::start_from(Source { path, listen: None }, "127.0.0.1:0")
            .expect("collector");
    let addr = collector.addr();
    let note = note();
    const PER_REQUEST: u64 = 500;
    let delivered = || {
        metric(
            &common::collector_metrics(addr),
            "evlog_events_delivered_total ",
        )
    };
    let o = through_an_outage(
        &server,
        |k| {
            let body: Vec<String> = (k * PER_REQUEST..(k + 1) * PER_REQUEST)
                .map(|seq| {
                    json!({"namespace": "events", "type": "click", "id": format!("c{seq}"),
                        "event": {"seq": seq, "note": note}})
                    .to_string()
                })
                .collect();
            let (status, answer) = http(addr, "POST", "/v1/batch", None, &body.join("\n"));
            assert_eq!(status, 200, "{answer}");
            let answer: Value = serde_json::from_str(&answer).expect("answer");
            assert_eq!(answer["refused"], 0, "{answer}");
            // At most ~50,000 events (50 MB) a second.
            std::thread::sleep(Duration::from_millis(10));
        },
        || delivered() > 1_000.0,
    );
    let sent = o.sent * PER_REQUEST;
    assert!(
        wait_for(Duration::from_secs(240), || delivered() == sent as f64),
        "delivered {} of {sent}",
        delivered()
    );
    let seqs = stored(&server);
    assert_eq!(seqs.len() as u64, sent, "0 lost");
    let m = common::collector_metrics(addr);
    assert_eq!(
        metric(&m, "evlog_events_accepted_total "),
        sent as f64,
        "{m}"
    );
    let dropped: f64 = m
        .lines()
        .filter(|l| l.starts_with("evlog_events_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, 0.0, "{m}");
    memory_was_bounded(&o, o.during * PER_REQUEST);
    eprintln!("collector: {sent} events, {o:?}");
    drop(collector);
}
