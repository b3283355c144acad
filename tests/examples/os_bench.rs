//! The OpenSearch sink's side of `tests/bench/opensearch.sh`: the same documents the script
//! gives opensearch-py's `helpers.bulk`.
//!
//! ```text
//! cargo run --release -p evlog-tests --example os_bench -- gen N FILE
//!     writes N page_view rows (as the pipeline makes them) to FILE, one {"id","doc"} per line
//! cargo run --release -p evlog-tests --example os_bench -- run URL FILE INDEX WORKERS GZIP
//!     delivers FILE's documents into INDEX with the sink (batches of 500, WORKERS requests in
//!     flight, gzip on or off), checks every one was delivered, prints "events_per_s N
//!     cpu_us_per_event C"
//! ```
//!
//! The clock runs around `Sink::deliver` only: the rows are built before, as the pipeline would
//! have them. The CPU time is this process's (all its threads), so it shows what the client costs
//! whatever the server's speed.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evlog_core::config::{RetryConfig, RoutingConfig};
use evlog_core::routing::Router;
use evlog_core::schema::{RowMeta, SchemaRegistry};
use evlog_core::sink::opensearch::{OpenSearchConfig, OpenSearchSink};
use evlog_core::sink::{Batch, EncodedRow, Sink};
use evlog_tests::opensearch::repo_root;
use serde_json::{json, Value};

// 2026-12-02T10:00:00Z.
const DAY0: i64 = 1_796_205_600_000_000;
const BATCH_ROWS: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", n, file] => generate(n.parse().expect("N"), file),
        ["run", url, file, index, workers, gzip] => run(
            url,
            file,
            index,
            workers.parse().expect("WORKERS"),
            *gzip == "true" || *gzip == "1",
        ),
        _ => {
            eprintln!("usage: os_bench gen N FILE | os_bench run URL FILE INDEX WORKERS GZIP");
            std::process::exit(2);
        }
    }
}

fn generate(n: usize, file: &str) {
    let reg =
        SchemaRegistry::load_dir(&repo_root().join("core/tests/data/schemas")).expect("schemas");
    let schema = reg.get("events", "page_view").expect("page_view");
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("create FILE"));
    for i in 0..n {
        let id = format!("ev-{i:08}");
        let Value::Object(event) = json!({
            "user_id": i,
            "url": format!("/courses/intro-to-rust/lesson/{i}"),
            "referrer": "https://www.example.com/search?q=rust",
            "duration_ms": 5321,
            "tags": ["web", "rust"],
        }) else {
            unreachable!()
        };
        let t = DAY0 + (i as i64) * 1000;
        let meta = RowMeta {
            event_id: id.clone(),
            event_time: t,
            received_at: t + 5,
        };
        let row = schema.to_row(event, &meta).expect("row").json;
        writeln!(out, "{{\"id\":{},\"doc\":{row}}}", json!(id)).expect("write");
    }
    out.flush().expect("flush");
}

fn run(url: &str, file: &str, index: &str, workers: usize, gzip: bool) {
    let rows: Vec<EncodedRow> = BufReader::new(std::fs::File::open(file).expect("open FILE"))
        .lines()
        .map(|l| {
            let l = l.expect("read");
            let v: Value = serde_json::from_str(&l).expect("json line");
            EncodedRow {
                insert_id: v["id"].as_str().expect("id").to_string(),
                json: v["doc"].to_string(),
            }
        })
        .collect();
    let n = rows.len();
    let router = Router::new(&RoutingConfig::default());
    let destination = router.route("events", "page_view", DAY0);
    let batches: Vec<Batch> = rows
        .chunks(BATCH_ROWS)
        .map(|c| Batch {
            destination: destination.clone(),
            bytes: c.iter().map(|r| r.json.len()).sum(),
            rows: c.to_vec(),
        })
        .collect();
    let cfg = OpenSearchConfig {
        urls: vec![url.to_string()],
        index: index.to_string(),
        workers,
        gzip,
        max_docs_per_request: BATCH_ROWS,
        timeout: Duration::from_secs(60),
        ..OpenSearchConfig::default()
    };
    let retry = RetryConfig::default();
    let mut sink = OpenSearchSink::new(&cfg, &retry, Arc::new(Default::default())).expect("sink");
    // The flush thread hands over every due batch at once; here, as many as the workers take.
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut delivered = 0;
    let mut batches = batches.into_iter().peekable();
    while batches.peek().is_some() {
        let group: Vec<Batch> = batches.by_ref().take(workers.max(1) * 4).collect();
        for o in sink.deliver(group) {
            assert!(o.failed.is_empty() && o.rejected.is_empty(), "{o:?}");
            delivered += o.delivered;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(delivered, n, "every document delivered");
    println!(
        "events_per_s {:.0} cpu_us_per_event {:.2}",
        n as f64 / secs,
        cpu * 1e6 / n as f64
    );
}

/// CPU seconds of this process's threads so far (Linux `/proc/self/task/*/schedstat`: time on a
/// CPU in nanoseconds, per thread).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}
