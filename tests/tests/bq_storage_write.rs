//! The SDK with `api = "storage_write"` against the BigQuery test server's gRPC Storage Write
//! API (which shares its tables with the REST API): volume with faults on the `_default`
//! stream, rows BigQuery refuses, and every type read back through `tabledata.list`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use evlog_core::sink::bigquery::WriteApi;
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::{json, Value};

mod common;
use common::{config_with_schemas, schema_dir, start_grpc_server, PROJECT};

// 2026-11-22T10:00:00Z and the two following days.
const DAY0: i64 = 1_795_341_600_000_000;
const DAYS: [&str; 3] = ["20261122", "20261123", "20261124"];

/// The tests' SDK configuration, writing through the Storage Write API.
fn storage_config(server: &BqTestServer, schemas: &std::path::Path) -> Config {
    let mut cfg = config_with_schemas(server, schemas, "");
    cfg.sink.bigquery.api = WriteApi::StorageWrite;
    cfg.sink.bigquery.storage_url = server.grpc_url();
    cfg
}

/// Logs `per_thread` events from each of `threads` threads, spread over three days.
fn log_from_threads(p: &Pipeline, threads: usize, per_thread: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    let id = format!("t{t}-{i}");
                    let body = format!(r#"{{"url":"/t{t}/{i}","user_id":{i},"tags":["x"]}}"#);
                    let mut ev = EventInput::new("events", "page_view", body);
                    ev.time = Some(DAY0 + (i % 3) as i64 * 86_400_000_000);
                    ev.id = Some(&id);
                    p.log(ev).expect("accepted");
                }
            });
        }
    });
}

/// Event ids stored per day table (duplicates included).
fn stored_ids(server: &BqTestServer) -> BTreeMap<String, Vec<String>> {
    DAYS.iter()
        .map(|day| {
            let table = format!("page_view{day}");
            let ids = server
                .rows(PROJECT, "events", &table)
                .iter()
                .map(|r| r["event_id"].as_str().expect("event_id").to_string())
                .collect();
            (table, ids)
        })
        .collect()
}

#[test]
fn hundred_thousand_events_through_the_default_stream_with_thirty_percent_faults_lose_nothing() {
    let server = start_grpc_server();
    server.set_grpc_failure_ratio(0.3, 11);
    let p = Pipeline::new(storage_config(&server, &schema_dir())).expect("pipeline");
    log_from_threads(&p, 4, 25_000);
    assert!(p.flush(Duration::from_secs(300)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (100_000, 100_000), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(s.retried > 0, "retries are counted: {s:?}");
    let per_table = stored_ids(&server);
    let all: Vec<&String> = per_table.values().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), 100_000, "0 lost");
    // At-least-once: only a lost ack makes a duplicate (the rows were stored, the answer not).
    let st = server.grpc_stats();
    assert!(st.faults_injected > 0, "{st:?}");
    assert!(
        all.len() - unique.len() <= st.faults_injected as usize * 500,
        "duplicates only from lost acks: {} extra, {st:?}",
        all.len() - unique.len()
    );
    // Rows landed in their day shards, created by the sink from the base table.
    for (day, n) in DAYS.iter().zip([4 * 8334, 4 * 8333, 4 * 8333]) {
        let ids: HashSet<&String> = per_table[&format!("page_view{day}")].iter().collect();
        assert_eq!(ids.len(), n, "{day}");
    }
    let row = &server.rows(PROJECT, "events", "page_view20261123")[0];
    assert!(row["event_time"]
        .as_str()
        .expect("event_time")
        .starts_with("2026-11-23T10:00:00"));
    // Requests were batched and streams reused, not a connection per request.
    assert!(st.append_requests >= 200, "{st:?}");
    assert!(
        st.connections < st.append_requests / 2,
        "streams are reused across requests: {st:?}"
    );
    // Nothing went through insertAll.
    assert_eq!(server.stats().insert_all_requests, 0);
}

#[test]
fn rows_bigquery_refuses_are_dead_lettered_with_its_message_and_their_neighbours_stored() {
    // evlog's schema has no length limit on `code`; the table in BigQuery has maxLength 3, so
    // BigQuery refuses longer codes in `row_errors` — a check evlog's own validation cannot make.
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_schema(
        dir.path(),
        "events",
        "order",
        &json!([{"name": "code", "type": "STRING"}, {"name": "n", "type": "INTEGER"}]),
    );
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server");
    server.create_dataset(PROJECT, "events");
    server
        .create_table(
            PROJECT,
            "events",
            "order",
            &json!([
                {"name": "code", "type": "STRING", "maxLength": "3"},
                {"name": "n", "type": "INTEGER"},
                {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
                {"name": "event_time", "type": "TIMESTAMP", "mode": "REQUIRED"},
                {"name": "received_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
                {"name": "other", "type": "STRING"}
            ]),
        )
        .expect("table");
    let mut cfg = storage_config(&server, dir.path());
    cfg.sink.bigquery.create_tables = true; // the dead-letter table is created on demand
    let p = Pipeline::new(cfg).expect("pipeline");
    for i in 0..30 {
        let code = if i % 10 == 3 {
            "toolong".to_string()
        } else {
            format!("c{i}")
        };
        p.log_json(
            "events",
            "order",
            &format!(r#"{{"code":"{code}","n":{i}}}"#),
        )
        .expect("accepted");
    }
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.delivered, 27, "{s:?}");
    assert_eq!(
        s.rejected.get("bigquery_invalid").copied(),
        Some(3),
        "{s:?}"
    );
    assert!(s.is_settled(), "{s:?}");
    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    let stored = server.rows(PROJECT, "events", &format!("order{today}"));
    assert_eq!(stored.len(), 27, "neighbours of the bad rows are stored");
    assert!(server.grpc_stats().requests_with_row_errors > 0);
    let dead = server.rows(PROJECT, "events", "_evlog_rejected");
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d["reason"], "bigquery_invalid");
        let err = d["error"].as_str().expect("error");
        assert!(err.contains("BigQuery refused the row"), "{err}");
        assert!(
            err.contains("code"),
            "BigQuery's message names the field: {err}"
        );
        assert!(d["raw"].as_str().expect("raw").contains("toolong"));
    }
}

/// A schema with every type evlog supports, nested and repeated RECORDs.
fn every_type_fields() -> Value {
    json!([
        {"name": "s", "type": "STRING"},
        {"name": "b", "type": "BYTES"},
        {"name": "i", "type": "INTEGER"},
        {"name": "f", "type": "FLOAT"},
        {"name": "n", "type": "NUMERIC"},
        {"name": "bn", "type": "BIGNUMERIC"},
        {"name": "ok", "type": "BOOLEAN"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "d", "type": "DATE"},
        {"name": "t", "type": "TIME"},
        {"name": "dt", "type": "DATETIME"},
        {"name": "j", "type": "JSON"},
        {"name": "g", "type": "GEOGRAPHY"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "nums", "type": "FLOAT", "mode": "REPEATED"},
        {"name": "cart", "type": "RECORD", "fields": [
            {"name": "total", "type": "NUMERIC"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "sku", "type": "STRING", "mode": "REQUIRED"},
                {"name": "qty", "type": "INT64"},
                {"name": "day", "type": "DATE"}
            ]}
        ]}
    ])
}

/// `tabledata.list` of a table through the REST API: its rows as `{"f":[{"v":…}]}`.
fn tabledata_list(server: &BqTestServer, dataset: &str, table: &str) -> Vec<Value> {
    let path = format!("/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{table}/data");
    let (status, body) = common::http(server.addr(), "GET", &path, None, "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("tabledata.list JSON");
    v["rows"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_type_round_trips_to_tabledata_list_as_insert_all_stores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two namespaces with the same schema: one written by insertAll, one by Storage Write.
    for ns in ["via_rest", "via_grpc"] {
        common::write_schema(dir.path(), ns, "all", &every_type_fields());
    }
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server");
    server
        .load_evlog_schemas(dir.path(), PROJECT)
        .expect("tables");
    let events = [
        json!({
            "s": "h\u{e9}llo \"q\" \\ \n \u{1F600}", "b": "aGk=", "i": "-9223372036854775808",
            "f": 2.5, "n": "123.450", "bn": "-1e-20", "ok": true,
            "ts": "2026-11-22T10:00:00.5Z", "d": "1969-12-31", "t": "23:59:59.999999",
            "dt": "2026-01-02 03:04:05", "j": {"a": [1, {"b": null}]}, "g": "POINT(1 2)",
            "tags": ["x", "y"], "nums": [1.25, -0.5, "NaN"],
            "cart": {"total": 10, "at": 1795341600, "items": [{"sku": "A", "qty": 2, "day": "2026-11-22"}, {"sku": "B"}]},
            "extra": {"k": 1}
        }),
        json!({"s": null, "tags": [], "cart": {"items": []}}),
        json!({"f": "-Infinity", "i": 9223372036854775807_i64, "b": "", "s": ""}),
    ];
    let mut cfg = storage_config(&server, dir.path());
    cfg.sink.bigquery.api = WriteApi::InsertAll;
    let rest = Pipeline::new(cfg).expect("insertAll pipeline");
    let grpc = Pipeline::new(storage_config(&server, dir.path())).expect("storage pipeline");
    for (i, e) in events.iter().enumerate() {
        for (p, ns) in [(&rest, "via_rest"), (&grpc, "via_grpc")] {
            let id = format!("e{i}");
            let body = e.to_string();
            let mut ev = EventInput::new(ns, "all", &body);
            ev.id = Some(&id);
            ev.time = Some(DAY0);
            p.log(ev).expect("accepted");
        }
    }
    for p in [&rest, &grpc] {
        assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
        let s = p.stats();
        assert_eq!(s.delivered, 3, "{s:?}");
        assert!(s.is_settled(), "{s:?}");
    }
    let table = format!("all{}", DAYS[0]);
    let by_id = |ns: &str| -> BTreeMap<String, Value> {
        let rows = tabledata_list(&server, ns, &table);
        let fields = server.table_schema(PROJECT, ns, &table).expect("schema");
        let names: Vec<String> = fields
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["name"].as_str().expect("name").to_string())
            .collect();
        let id_at = names
            .iter()
            .position(|n| n == "event_id")
            .expect("event_id");
        let mut out = BTreeMap::new();
        for mut r in rows {
            let id = r["f"][id_at]["v"].as_str().expect("id").to_string();
            // received_at differs between the two processes; everything else must not.
            let at = names
                .iter()
                .position(|n| n == "received_at")
                .expect("received_at");
            r["f"][at] = Value::Null;
            out.insert(id, r);
        }
        out
    };
    let rest_rows = by_id("via_rest");
    let grpc_rows = by_id("via_grpc");
    assert_eq!(rest_rows.len(), 3);
    assert_eq!(
        grpc_rows, rest_rows,
        "Storage Write stores what insertAll stores, value for value"
    );
    // And the values are the right ones, not merely the same.
    let row = server
        .rows(PROJECT, "via_grpc", &table)
        .into_iter()
        .find(|r| r["event_id"] == "e0")
        .expect("e0");
    assert_eq!(row["d"], "1969-12-31");
    assert_eq!(row["i"], json!(i64::MIN));
    assert_eq!(row["cart"]["items"][0]["day"], "2026-11-22");
    assert_eq!(row["cart"]["items"][1]["sku"], "B");
    assert_eq!(row["tags"], json!(["x", "y"]));
    assert!(row["other"].as_str().expect("other").contains("\"k\":1"));
}

#[test]
fn exactly_once_stores_each_of_a_hundred_thousand_events_once_despite_thirty_percent_faults() {
    let server = start_grpc_server();
    // Every fault kind, lost acknowledgements (rows stored, answer lost) included.
    server.set_grpc_failure_ratio(0.3, 23);
    let mut cfg = storage_config(&server, &schema_dir());
    cfg.sink.bigquery.exactly_once = true;
    let p = Pipeline::new(cfg).expect("pipeline");
    log_from_threads(&p, 4, 25_000);
    assert!(p.flush(Duration::from_secs(300)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (100_000, 100_000), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(s.retried > 0, "{s:?}");
    let st = server.grpc_stats();
    assert!(st.faults_injected > 0, "{st:?}");
    assert!(
        st.offset_already_exists > 0,
        "retries after lost acks met their own rows: {st:?}"
    );
    let per_table = stored_ids(&server);
    let all: Vec<&String> = per_table.values().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), 100_000, "0 lost");
    assert_eq!(all.len(), 100_000, "0 stored twice");
    // Streams are reused across batches: a few per table, not one per request.
    assert!(
        st.streams_created <= 3 * 4 * 4,
        "at most a few streams per day table: {st:?}"
    );
    drop(p);
}

#[test]
fn exactly_once_rows_out_of_attempts_after_lost_acks_are_replayed_to_their_offsets_not_stored_twice(
) {
    use evlog_tests::bq::grpc::GrpcFault;
    let server = start_grpc_server();
    // Half the requests store their rows and lose the answer; with one attempt each, those
    // requests run out of attempts without knowing their rows landed. They go to the
    // spool, and when it is replayed the rows must go back to the same stream and offset
    // (ALREADY_EXISTS: delivered), not to a new stream (a second copy).
    server.set_grpc_failure_mix(0.5, 31, vec![GrpcFault::AckLost]);
    let spool = tempfile::tempdir().expect("spool");
    let extra = format!(
        "[spool]\nenabled = true\ndir = {:?}\nfsync = false\n",
        spool.path()
    );
    let mut cfg = common::config_with_schemas(&server, &schema_dir(), &extra);
    cfg.sink.bigquery.api = WriteApi::StorageWrite;
    cfg.sink.bigquery.storage_url = server.grpc_url();
    cfg.sink.bigquery.exactly_once = true;
    cfg.retry.max_attempts = 1;
    let p = Pipeline::new(cfg).expect("pipeline");
    log_from_threads(&p, 2, 5_000);
    assert!(
        common::wait_for(Duration::from_secs(120), || {
            p.flush(Duration::from_secs(1));
            let s = p.stats();
            s.delivered == 10_000 && s.is_settled()
        }),
        "{:?}",
        p.stats()
    );
    let s = p.stats();
    assert!(s.spooled > 0, "some rows ran out of attempts: {s:?}");
    let st = server.grpc_stats();
    assert!(st.offset_already_exists > 0, "{st:?}");
    let all: Vec<String> = stored_ids(&server).into_values().flatten().collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 10_000, "0 lost");
    assert_eq!(all.len(), 10_000, "0 stored twice");
}

#[test]
fn a_column_the_table_lacks_gets_the_table_patched_and_the_rows_sent_again() {
    // The table was made from an older schema file; this process's file has `coupon`, so its
    // descriptor has a field the table lacks (SCHEMA_MISMATCH_EXTRA_FIELDS).
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        schema_propagation: Duration::from_millis(200),
        ..BqTestConfig::default()
    })
    .expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let old = json!([{"name": "user", "type": "STRING", "mode": "REQUIRED"},
                     {"name": "seq", "type": "INT64", "mode": "REQUIRED"}]);
    common::write_schema(dir.path(), "events", "click", &old);
    server
        .load_evlog_schemas(dir.path(), PROJECT)
        .expect("tables");
    let mut new = old.as_array().expect("fields").clone();
    new.push(json!({"name": "coupon", "type": "STRING", "mode": "NULLABLE"}));
    common::write_schema(dir.path(), "events", "click", &Value::Array(new));
    let p = Pipeline::new(storage_config(&server, dir.path())).expect("pipeline");
    let n = 300;
    for seq in 0..n {
        let body = json!({"user": "u", "seq": seq, "coupon": format!("C{seq}")});
        p.log_json("events", "click", &body.to_string())
            .expect("accepted");
    }
    assert!(
        common::wait_for(Duration::from_secs(30), || {
            p.flush(Duration::from_secs(5));
            p.stats().delivered == n
        }),
        "{:?}",
        p.stats()
    );
    let s = p.stats();
    assert_eq!(s.rejected_total() + s.dropped_total(), 0, "{s:?}");
    assert!(server.stats().tables_patched >= 1, "{:?}", server.stats());
    let rows = common::rows_of(&server, "events", "click");
    assert_eq!(rows.len() as u64, n);
    for r in &rows {
        assert_eq!(r["coupon"], json!(format!("C{}", r["seq"])), "{r}");
    }
}
