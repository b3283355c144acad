//! Sustained events/s from one process into the BigQuery test server in direct mode.
//!
//! `cargo run --release -p evlog-tests --example bq_throughput [-- EVENTS]` (default 300000).
//! One thread logs ~200-byte events as fast as `log()` accepts them; the figure is events
//! delivered (acknowledged by the server) per second of wall time, from the first `log()` to the
//! last acknowledgement. The test server runs in the same process on the same 2 cores (parsing,
//! gunzipping and validating every row), so this understates what the sink does against BigQuery.

use std::path::Path;
use std::time::{Duration, Instant};

use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};

fn main() {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000);
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/schemas");
    let server = BqTestServer::start_blocking(BqTestConfig::default()).expect("server");
    server
        .load_evlog_schemas(&schemas, "bench")
        .expect("tables");
    let toml = format!(
        "[sink]\nkind = \"bigquery\"\n[sink.bigquery]\nproject = \"bench\"\nauth = \"none\"\nbase_url = {:?}\nworkers = 8\n\
         [queue]\ncapacity = 1000000\nmax_bytes = \"512MiB\"\n[batch]\nmax_rows = 500\nmax_age = \"200ms\"\n[schemas]\ndir = {:?}\n",
        server.v2_base_url(),
        schemas
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).expect("config")).expect("pipeline");
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..events {
        let body = format!(
            r#"{{"user_id":{i},"url":"/courses/intro-to-rust/lesson/{i}","referrer":"https://www.example.com/search?q=rust","duration_ms":5321,"tags":["web","rust"]}}"#
        );
        while p
            .log(EventInput::new("events", "page_view", body.as_str()))
            .is_err()
        {
            // Queue full: the sink is the bottleneck. Back off briefly and offer the event again
            // (each refusal is counted by evlog; the benchmark reports them).
            refused += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let logged = start.elapsed();
    assert!(
        p.flush(Duration::from_secs(600)),
        "flush failed: {:?}",
        p.stats()
    );
    let total = start.elapsed();
    let s = p.stats();
    assert_eq!(s.delivered, events, "{s:?}");
    let st = server.stats();
    println!("events delivered      {events}");
    println!("insertAll requests    {}", st.insert_all_requests);
    println!("log() refusals (full) {refused}");
    println!("logging took          {:.2} s", logged.as_secs_f64());
    println!("end to end            {:.2} s", total.as_secs_f64());
    println!(
        "sustained throughput  {:.0} events/s (direct mode, test server in-process)",
        events as f64 / total.as_secs_f64()
    );
}
