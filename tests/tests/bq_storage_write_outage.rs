//! A 20-second outage of the Storage Write API (and the REST API beside it) under steady
//! logging, with `exactly_once`: absorbed by the spool with bounded memory, drained after, every
//! event stored exactly once. Its own test binary, so the memory it measures is its own.

use evlog_core::sink::bigquery::WriteApi;
use evlog_core::Pipeline;
use std::collections::HashSet;

mod common;
use common::{config_with_schemas, outage, schema_dir, start_grpc_server, PROJECT};

#[test]
fn a_twenty_second_storage_write_outage_is_absorbed_by_the_spool_and_stored_once() {
    let server = start_grpc_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[spool]\nenabled = true\ndir = {:?}\nfsync = false\n",
        tmp.path().join("spool")
    );
    let mut cfg = config_with_schemas(&server, &schema_dir(), &extra);
    cfg.sink.bigquery.api = WriteApi::StorageWrite;
    cfg.sink.bigquery.storage_url = server.grpc_url();
    cfg.sink.bigquery.exactly_once = true;
    cfg.sink.bigquery.positions_dir = Some(tmp.path().join("positions"));
    let p = Pipeline::new(cfg).expect("pipeline");
    let logged = outage::twenty_seconds_down(&p, &server);
    outage::drained(&p, logged);
    let mut ids = Vec::new();
    for t in server.table_ids(PROJECT, "events") {
        for r in server.rows(PROJECT, "events", &t) {
            ids.push(r["event_id"].as_str().expect("id").to_string());
        }
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len() as u64, logged, "0 lost");
    assert_eq!(ids.len() as u64, logged, "0 stored twice");
    assert_eq!(
        server.stats().insert_all_requests,
        0,
        "rows went through gRPC"
    );
}
