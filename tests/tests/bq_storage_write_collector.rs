//! A collector whose BigQuery destination writes through the Storage Write API
//! (`api = "storage_write"`, `exactly_once = true`): while the gRPC server fails 30% of the
//! requests, lost acknowledgements included, every event sent is stored exactly once, and the
//! collector's counters balance. (A 20-second outage absorbed by the write-ahead log:
//! `bq_storage_outage.rs`.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    config_text, metric_value as metric, post_batch_all_stored, rows_of, wait_for, write_schema,
    PROJECT,
};
use evlog_collector::reload::Source;
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::json;

/// A collector writing `events.click` through the Storage Write API with `exactly_once`, and
/// its temporary directory (log, positions).
fn storage_collector(server: &BqTestServer) -> (evlog_collector::Background, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let schemas = tmp.path().join("schemas");
    write_schema(
        &schemas,
        "events",
        "click",
        &json!([{"name": "user", "type": "STRING", "mode": "REQUIRED"},
                {"name": "seq", "type": "INT64", "mode": "REQUIRED"}]),
    );
    server
        .load_evlog_schemas(&schemas, PROJECT)
        .expect("tables");
    let sink = config_text(server, &schemas, "").replace(
        "[sink.bigquery]",
        &format!(
            "[sink.bigquery]\napi = \"storage_write\"\nexactly_once = true\nstorage_url = \"{}\"\npositions_dir = {:?}",
            server.grpc_url(),
            tmp.path().join("positions")
        ),
    );
    let path = tmp.path().join("collector.toml");
    let text = format!(
        "[collector]\nlisten = \"127.0.0.1:0\"\nwal_dir = {:?}\nseal_interval = \"20ms\"\n{sink}",
        tmp.path().join("wal"),
    );
    std::fs::write(&path, text).expect("config");
    let collector =
        evlog_collector::Background::start_from(Source { path, listen: None }, "127.0.0.1:0")
            .expect("collector");
    (collector, tmp)
}

/// Posts events `seqs` to the collector in batches of 250.
fn post(addr: std::net::SocketAddr, seqs: std::ops::Range<u64>) {
    for first in seqs.clone().step_by(250) {
        let body: Vec<String> = (first..(first + 250).min(seqs.end))
            .map(|seq| {
                json!({"namespace": "events", "type": "click", "id": format!("c{seq}"),
                    "event": {"user": "u", "seq": seq}})
                .to_string()
            })
            .collect();
        post_batch_all_stored(addr, &body);
    }
}

/// Waits until `sent` events are stored and delivered, then checks each is stored once.
fn stored_once(server: &BqTestServer, addr: std::net::SocketAddr, sent: u64) {
    let limit = Duration::from_secs(90);
    assert!(
        wait_for(limit, || rows_of(server, "events", "click").len() as u64
            >= sent),
        "stored {} of {sent}",
        rows_of(server, "events", "click").len()
    );
    assert!(wait_for(limit, || metric(
        &common::collector_metrics(addr),
        "evlog_events_delivered_total "
    ) == sent as f64));
    let rows = rows_of(server, "events", "click");
    let seqs: HashSet<u64> = rows.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(seqs.len() as u64, sent, "0 lost");
    assert_eq!(rows.len() as u64, sent, "0 stored twice");
    assert_eq!(
        server.stats().insert_all_requests,
        0,
        "rows went through gRPC"
    );
    common::assert_collector_accepted_all(addr, sent);
}

fn grpc_server() -> BqTestServer {
    BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server")
}

#[test]
fn a_collector_destination_writes_through_storage_write_exactly_once_under_faults() {
    let server = grpc_server();
    server.set_grpc_failure_ratio(0.3, 5);
    let (collector, _tmp) = storage_collector(&server);
    let addr = collector.addr();
    post(addr, 0..5_000);
    stored_once(&server, addr, 5_000);
    let st = server.grpc_stats();
    assert!(st.faults_injected > 0, "{st:?}");
    drop(collector);
}
