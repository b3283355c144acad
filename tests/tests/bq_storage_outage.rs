//! A 20-second outage of the Storage Write API (`api = "storage_write"`: the gRPC port refuses
//! connections, open streams are cut) while events keep coming: the SDK keeps them in its spool
//! and the collector in its write-ahead log, memory stays bounded, and once BigQuery is back
//! every event is stored (0 lost). The two tests run one after the other (a lock), since each
//! measures this process's resident memory.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    config_text, metric_value as metric, post_batch_all_stored, rows_of, wait_for, write_schema,
    PROJECT,
};
use evlog_collector::reload::Source;
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::json;

/// How long BigQuery is unreachable.
const OUTAGE: Duration = Duration::from_secs(20);
/// The most this process's resident memory may grow while the outage lasts (queues and
/// batches fill up to their bounds).
const RSS_GROWTH_LIMIT: u64 = 48 << 20;
/// After the outage settled: at least this much must go to disk while resident memory grows by
/// less than [`PLATEAU_RSS`] (memory does not grow with the outage's length).
const PLATEAU_DISK: u64 = 16 << 20;
/// See [`PLATEAU_DISK`].
const PLATEAU_RSS: u64 = 8 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This process's resident set size, in bytes.
fn rss() -> u64 {
    evlog_tests::proc_stats::rss_kib() * 1024
}

/// A server with the `events.click` table (a padded `note` makes each event ~1 KB).
fn server_and_schemas(dir: &Path) -> (BqTestServer, std::path::PathBuf) {
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
fn storage_sink(server: &BqTestServer, schemas: &Path, extra: &str) -> String {
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
    /// Resident memory before the outage.
    rss_before: u64,
    /// Resident memory [`SETTLED`] into the outage (queues and buffers full by then).
    rss_settled: u64,
    /// The most resident memory seen from then to the end of the outage.
    rss_peak: u64,
    /// Bytes on disk (spool or write-ahead log) at [`SETTLED`] and at the end of the outage.
    disk: (u64, u64),
}

/// When, into the outage, memory should have stopped growing.
const SETTLED: Duration = Duration::from_secs(5);

/// Total size of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `send(k)` for k = 0, 1, … on a thread of its own until the end, and meanwhile takes the
/// outage: the gRPC port refuses connections for [`OUTAGE`] once `ready()` holds. `disk` is the
/// directory that should absorb it.
fn through_an_outage(
    server: &BqTestServer,
    disk: &Path,
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
        let rss_before = rss();
        server.set_refusing(true);
        let start = Instant::now();
        while start.elapsed() < SETTLED {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (rss_settled, disk_settled) = (rss(), disk_bytes(disk));
        let mut rss_peak = rss_settled;
        while start.elapsed() < OUTAGE {
            rss_peak = rss_peak.max(rss());
            std::thread::sleep(Duration::from_millis(100));
        }
        let disk_end = disk_bytes(disk);
        server.set_refusing(false);
        // Keep sending a little after the outage: recovery happens under load too.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().expect("sender");
        Outage {
            sent,
            rss_before,
            rss_settled,
            rss_peak,
            disk: (disk_settled, disk_end),
        }
    })
}

/// Memory is bounded: once the outage settled, what kept coming went to disk (more than
/// [`PLATEAU_DISK`]) while resident memory grew by less than [`PLATEAU_RSS`]; and overall it
/// grew by less than [`RSS_GROWTH_LIMIT`].
fn memory_was_bounded(o: &Outage) {
    let disk = o.disk.1.saturating_sub(o.disk.0);
    let plateau = o.rss_peak.saturating_sub(o.rss_settled);
    assert!(
        disk > PLATEAU_DISK,
        "too little went to disk after the outage settled to tell: {o:?}"
    );
    assert!(
        plateau < PLATEAU_RSS,
        "memory kept growing during the outage (+{} KiB while {} KiB went to disk): {o:?}",
        plateau >> 10,
        disk >> 10
    );
    assert!(
        o.rss_peak.saturating_sub(o.rss_before) < RSS_GROWTH_LIMIT,
        "resident memory grew too much: {o:?}"
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
    // log() refusals (a full queue: the flush thread spools slower than this thread logs on a
    // busy machine) are counted dropped by the SDK; the event is then logged again.
    let refused = AtomicU64::new(0);
    let spool = tmp.path().join("spool");
    let o = through_an_outage(
        &server,
        &spool,
        |k| {
            let body = format!(r#"{{"seq":{k},"note":"{note}"}}"#);
            while p
                .log(EventInput::new("events", "click", body.as_str()))
                .is_err()
            {
                refused.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            // At most ~8,000 events (8 MB) a second: 160 MB over the outage.
            if k % 80 == 79 {
                std::thread::sleep(Duration::from_millis(10));
            }
        },
        || p.stats().delivered > 1_000,
    );
    let (sent, refused) = (o.sent, refused.into_inner());
    // What the outage spooled is replayed in the background (flush() only answers for what
    // was queued, and says false when some of it went to the spool).
    assert!(
        wait_for(Duration::from_secs(240), || p.stats().delivered == sent),
        "{:?}",
        p.stats()
    );
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (sent + refused, sent), "{s:?}");
    assert_eq!(s.dropped_total(), refused, "only log()'s refusals: {s:?}");
    assert_eq!(s.dropped["queue_full"], refused, "{s:?}");
    assert!(s.spooled > 0, "the outage went to the spool: {s:?}");
    let seqs = stored(&server);
    assert_eq!(seqs.len() as u64, sent, "0 lost");
    memory_was_bounded(&o);
    eprintln!("sdk: {o:?}, {} spooled, {refused} refused", s.spooled);
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
    let wal = tmp.path().join("wal");
    let o = through_an_outage(
        &server,
        &wal,
        |k| {
            let body: Vec<String> = (k * PER_REQUEST..(k + 1) * PER_REQUEST)
                .map(|seq| {
                    json!({"namespace": "events", "type": "click", "id": format!("c{seq}"),
                        "event": {"seq": seq, "note": note}})
                    .to_string()
                })
                .collect();
            post_batch_all_stored(addr, &body);
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
    common::assert_collector_accepted_all(addr, sent);
    memory_was_bounded(&o);
    eprintln!("collector: {sent} events, {o:?}");
    drop(collector);
}
