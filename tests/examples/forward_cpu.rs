//! The SDK flush thread's CPU per event in forward mode, `format = "events"` against
//! `format = "rows"`, with a real collector (in this process, `null` sink) on loopback.
//!
//!   cargo run --profile profiling -p evlog-tests --example forward_cpu -- FORMAT [N] [ROUNDS] [COMPRESSION] [CHUNK]
//!
//! COMPRESSION is `sink.forward.compression`: `auto` (default; toward this loopback collector,
//! none), `zstd` (what `auto` does toward a collector on another host), `gzip` or `none`. CHUNK (default N: one burst): log CHUNK events, then wait for `flush()`, and
//! again, as a steady producer (a php-fpm worker's pages) hands the thread a batch at a time.
//! Logs N (default 200000) of `bindings/php/bench`'s 6-field transaction event, flushes, and
//! prints the CPU time the thread named `evlog-flush` used per event (from
//! `/proc/self/task/<tid>/schedstat`, its first field: ns on CPU), and the main thread's. The
//! pipeline (and its flush thread) is built before the collector starts, so under
//! `valgrind --tool=callgrind --separate-threads=yes` the flush thread is thread 2.

use std::time::{Duration, Instant};

use evlog_collector::CollectorConfig;
use evlog_core::{Config, EventInput, Pipeline};

fn schedstat_ns(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The task ids of this process's threads named `name`.
fn threads(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = e.file_name().to_string_lossy().to_string();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            out.push(tid);
        }
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_else(|| "events".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let compression = args.next().unwrap_or_else(|| "auto".into());
    let chunk: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(n).max(1);
    let schemas =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/schemas");
    let dir = tempfile::tempdir().expect("tempdir");
    // A port for the collector, taken before the pipeline (whose thread must come first).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let sdk = Config::from_toml_str(&format!(
        "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = \"http://127.0.0.1:{port}\"\n\
         format = {format:?}\ncompression = {compression:?}\n[queue]\ncapacity = 1000000\n[retry]\nbase = \"5ms\"\ncap = \"50ms\"\n\
         max_attempts = 20\n[schemas]\ndir = {schemas:?}\n"
    ))
    .expect("sdk config");
    let p = Pipeline::new(sdk).expect("pipeline");
    let collector = CollectorConfig::from_toml_with_env(
        &format!(
            "[collector]\nwal_dir = {:?}\nfsync = \"never\"\nmax_in_flight_bytes = \"200MiB\"\n\
             [sink]\nkind = \"null\"\n[schemas]\ndir = {schemas:?}\n",
            dir.path().join("wal")
        ),
        "bench",
        std::iter::empty(),
    )
    .expect("collector config");
    let mut server =
        evlog_collector::Background::start(collector, &format!("127.0.0.1:{port}")).expect("start");
    let event = r#"{"user_id":42,"amount":"9.99","currency":"EUR","coupon":"XMAS","ok":true,"ms":1700000000.123}"#;
    // One event first, so the flush thread's connection and buffers exist before measuring.
    p.log(EventInput::new("events", "transaction", event))
        .expect("log");
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let flush = threads("evlog-flush");
    let main_tid = std::process::id().to_string();
    for round in 0..rounds {
        let (f0, m0) = (
            flush.iter().map(|t| schedstat_ns(t)).sum::<u64>(),
            schedstat_ns(&main_tid),
        );
        let started = Instant::now();
        for i in 0..n {
            p.log(EventInput::new("events", "transaction", event))
                .expect("log");
            if (i + 1) % chunk == 0 {
                assert!(p.flush(Duration::from_secs(120)), "{:?}", p.stats());
            }
        }
        let logged = started.elapsed();
        assert!(p.flush(Duration::from_secs(120)), "{:?}", p.stats());
        let f1 = flush.iter().map(|t| schedstat_ns(t)).sum::<u64>();
        let m1 = schedstat_ns(&main_tid);
        let per = |ns: u64| ns as f64 / n as f64 / 1000.0;
        println!(
            "format={format} round={round} n={n} flush_thread_us_per_event={:.3} main_thread_us_per_event={:.3} log_loop_ms={} wall_ms={}",
            per(f1 - f0),
            per(m1 - m0),
            logged.as_millis(),
            started.elapsed().as_millis()
        );
    }
    let s = p.stats();
    println!(
        "stats: accepted={} delivered={} rejected={:?} dropped={:?}",
        s.accepted, s.delivered, s.rejected, s.dropped
    );
    assert!(p.shutdown(Duration::from_secs(10)));
    server.stop().expect("collector");
}
