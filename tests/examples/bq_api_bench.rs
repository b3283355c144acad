//! insertAll against the Storage Write API, from the SDK's side: events/s, bytes the client
//! writes per event, and the client process's CPU time per event. Driven by
//! `tests/bench/bigquery_apis.sh`, which runs the server and the client as separate processes so
//! that the client's figures are its own.
//!
//! ```text
//! bq_api_bench serve                            BigQuery test server (REST + gRPC); prints
//!                                               "REST_URL GRPC_URL", serves until killed
//! bq_api_bench run REST GRPC API EVENTS         API: insert_all | storage_write | exactly_once;
//!                                               prints "events/s cpu_us/event bytes/event"
//! ```
//!
//! CPU time is the process's user + system time from `/proc/self/stat` (all threads: the one
//! logging and the flush thread); bytes are `wchar` from `/proc/self/io`: everything the process
//! passed to write/send calls — the requests, HTTP and HTTP/2 framing included (the spool is off
//! and nothing else is written).

use std::path::Path;
use std::time::{Duration, Instant};

use evlog_core::sink::bigquery::WriteApi;
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use evlog_tests::proc_stats::{bytes_written, cpu_seconds};

fn schemas() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/schemas")
}

fn serve() {
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server");
    server
        .load_evlog_schemas(&schemas(), "bench")
        .expect("tables");
    println!("{} {}", server.v2_base_url(), server.grpc_url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run(rest: &str, grpc: &str, api: &str, events: u64) {
    let toml = format!(
        "[sink]\nkind = \"bigquery\"\n[sink.bigquery]\nproject = \"bench\"\nauth = \"none\"\n\
         base_url = {rest:?}\nstorage_url = {grpc:?}\nworkers = 4\n\
         [queue]\ncapacity = 1000000\nmax_bytes = \"512MiB\"\n[batch]\nmax_rows = 500\n\
         max_age = \"200ms\"\n[spool]\nenabled = false\n[schemas]\ndir = {:?}\n",
        schemas()
    );
    let mut cfg = Config::from_toml_str(&toml).expect("config");
    match api {
        "insert_all" => {}
        "storage_write" => cfg.sink.bigquery.api = WriteApi::StorageWrite,
        "exactly_once" => {
            cfg.sink.bigquery.api = WriteApi::StorageWrite;
            cfg.sink.bigquery.exactly_once = true;
        }
        other => panic!("unknown API {other}: insert_all, storage_write or exactly_once"),
    }
    let bodies: Vec<String> = (0..events)
        .map(|i| {
            format!(
                r#"{{"user_id":{i},"url":"/courses/intro-to-rust/lesson/{i}","referrer":"https://www.example.com/search?q=rust","duration_ms":5321,"tags":["web","rust"]}}"#
            )
        })
        .collect();
    let p = Pipeline::new(cfg).expect("pipeline");
    let (cpu0, bytes0) = (cpu_seconds(), bytes_written());
    let start = Instant::now();
    for body in &bodies {
        while p
            .log(EventInput::new("events", "page_view", body.as_str()))
            .is_err()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(p.flush(Duration::from_secs(600)), "{:?}", p.stats());
    let wall = start.elapsed().as_secs_f64();
    let (cpu, bytes) = (cpu_seconds() - cpu0, bytes_written() - bytes0);
    let s = p.stats();
    assert_eq!(s.delivered, events, "every event delivered: {s:?}");
    println!(
        "{:.0} {:.2} {:.1}",
        events as f64 / wall,
        cpu * 1e6 / events as f64,
        bytes as f64 / events as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve"] => serve(),
        ["run", rest, grpc, api, events] => {
            run(rest, grpc, api, events.parse().expect("EVENTS is a number"))
        }
        _ => {
            eprintln!("usage: bq_api_bench serve | run REST GRPC API EVENTS");
            std::process::exit(2);
        }
    }
}
