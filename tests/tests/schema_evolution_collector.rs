//! Schema evolution end to end, through the collector: a field that so far landed in `other` is
//! promoted to a column while clients send events, by editing the schema file and
//! `POST /admin/reload`. The reload checks the change (BigQuery's additive rules), the BigQuery
//! sink patches the table and the day shard before it sends rows with the column, and rows
//! BigQuery refuses while the change propagates are retried from the write-ahead log, never
//! dead-lettered. Every event is stored once; every event sent after the reload answered has
//! the column in its own column. A change BigQuery cannot make (a type change) is refused at
//! reload, naming the column, and changes nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{config_text, http, rows_of, wait_for, write_schema, PROJECT};
use evlog_collector::reload::Source;
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-0123456789";

fn click_fields(coupon: Option<&str>) -> Value {
    let mut fields = vec![
        json!({"name": "user", "type": "STRING", "mode": "REQUIRED"}),
        json!({"name": "seq", "type": "INT64", "mode": "REQUIRED"}),
    ];
    if let Some(t) = coupon {
        fields.push(json!({"name": "coupon", "type": t, "mode": "NULLABLE"}));
    }
    Value::Array(fields)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn a_field_promoted_by_a_collector_reload_while_clients_send_loses_nothing() {
    let server = BqTestServer::start_blocking(BqTestConfig {
        schema_propagation: Duration::from_millis(500),
        ..BqTestConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let schemas = tmp.path().join("schemas");
    write_schema(&schemas, "events", "click", &click_fields(None));
    server.load_evlog_schemas(&schemas, PROJECT).unwrap();
    let path = tmp.path().join("collector.toml");
    let text = format!(
        "[collector]\nlisten = \"127.0.0.1:0\"\nwal_dir = {:?}\nseal_interval = \"20ms\"\nadmin_keys = [\"{ADMIN}\"]\n{}",
        tmp.path().join("wal"),
        config_text(&server, &schemas, "")
    );
    std::fs::write(&path, text).unwrap();
    let mut collector =
        evlog_collector::Background::start_from(Source { path, listen: None }, "127.0.0.1:0")
            .unwrap();
    let addr = collector.addr();

    // A client sends batches of 20 events, `seq` counting up, until told to stop.
    let (next, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let client = {
        let (next, stop) = (Arc::clone(&next), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let first = next.load(Ordering::SeqCst);
                let body: Vec<String> = (first..first + 20)
                    .map(|seq| {
                        json!({"namespace": "events", "type": "click",
                            "event": {"user": "u", "seq": seq, "coupon": format!("C{seq}")}})
                        .to_string()
                    })
                    .collect();
                let (status, answer) = http(addr, "POST", "/v1/batch", None, &body.join("\n"));
                assert_eq!(status, 200, "{answer}");
                let answer: Value = serde_json::from_str(&answer).unwrap();
                assert_eq!(answer["refused"], 0, "{answer}");
                next.store(first + 20, Ordering::SeqCst);
            }
        })
    };

    let limit = Duration::from_secs(30);
    assert!(wait_for(limit, || rows_of(&server, "events", "click")
        .len()
        >= 200));
    // A type change is refused, naming the column, and changes nothing.
    write_schema(
        &schemas,
        "events",
        "click",
        &json!([{"name": "user", "type": "INT64", "mode": "REQUIRED"},
                {"name": "seq", "type": "INT64", "mode": "REQUIRED"}]),
    );
    let (status, answer) = http(addr, "POST", "/admin/reload", Some(ADMIN), "");
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("user"), "names the column: {answer}");
    // The promotion: `coupon` gets a column of its own.
    write_schema(&schemas, "events", "click", &click_fields(Some("STRING")));
    let (status, answer) = http(addr, "POST", "/admin/reload", Some(ADMIN), "");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("coupon"), "{answer}");
    // Every batch sent from here on is converted with the new schema.
    let first_after = next.load(Ordering::SeqCst) + 20;
    assert!(wait_for(limit, || {
        rows_of(&server, "events", "click")
            .iter()
            .any(|r| r["seq"].as_u64() > Some(first_after + 500))
    }));
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let sent = next.load(Ordering::SeqCst);
    assert!(
        wait_for(limit, || rows_of(&server, "events", "click").len() as u64
            >= sent),
        "stored {} of {sent}",
        rows_of(&server, "events", "click").len()
    );

    // Accounting: accepted = delivered, nothing rejected or dropped, one reload refused.
    let m = common::collector_metrics(addr);
    assert_eq!(
        metric(&m, "evlog_events_accepted_total "),
        sent as f64,
        "{m}"
    );
    assert!(wait_for(limit, || metric(
        &common::collector_metrics(addr),
        "evlog_events_delivered_total "
    ) == sent as f64));
    let m = common::collector_metrics(addr);
    assert_eq!(metric(&m, "evlog_events_rejected_total "), 0.0, "{m}");
    assert_eq!(metric(&m, "evlog_events_dropped_total "), 0.0, "{m}");
    assert_eq!(metric(&m, "evlog_config_reloads_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        metric(&m, "evlog_config_reloads_total{result=\"error\"}"),
        1.0
    );
    assert!(rows_of(&server, "events", "_evlog_rejected").is_empty());
    collector.stop().unwrap();

    // The table and its day shard were patched; BigQuery refused the new column for a while.
    let bq = server.stats();
    assert!(bq.tables_patched >= 2, "base and shard: {bq:?}");
    assert!(bq.rows_awaiting_column > 0, "{bq:?}");
    // Every event exactly once; after the reload, `coupon` in its own column.
    common::assert_coupon_promoted(&server, sent, first_after);
}
