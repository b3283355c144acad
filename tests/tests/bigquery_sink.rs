//! The SDK in direct BigQuery mode against the BigQuery test server: volume, faults, an outage
//! absorbed by the spool, and rows BigQuery refuses.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use evlog_core::{EventInput, Pipeline};
use evlog_tests::bq::{BqTestConfig, BqTestServer};

mod common;
use common::{config, start_server, PROJECT};

// 2026-11-22T10:00:00Z and the two following days.
const DAY0: i64 = 1_795_341_600_000_000;
const DAYS: [&str; 3] = ["20261122", "20261123", "20261124"];

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

/// Stored rows per day table, and all stored insert ids.
fn stored(server: &BqTestServer) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut per_table = BTreeMap::new();
    let mut ids = Vec::new();
    for day in DAYS {
        let table = format!("page_view{day}");
        let t_ids = server.insert_ids(PROJECT, "events", &table);
        per_table.insert(table, t_ids.len());
        ids.extend(t_ids.into_iter().flatten());
    }
    (per_table, ids)
}

#[test]
fn hundred_thousand_events_from_four_threads_land_once_in_their_day_tables() {
    let server = start_server();
    let p = Pipeline::new(config(&server, "")).expect("pipeline");
    log_from_threads(&p, 4, 25_000);
    assert!(p.flush(Duration::from_secs(120)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.accepted, 100_000);
    assert_eq!(s.delivered, 100_000, "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    let (per_table, ids) = stored(&server);
    assert_eq!(ids.len(), 100_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100_000);
    // i % 3 spreads 25k per thread as 8334/8333/8333.
    assert_eq!(per_table["page_view20261122"], 4 * 8334, "{per_table:?}");
    assert_eq!(per_table["page_view20261123"], 4 * 8333);
    assert_eq!(per_table["page_view20261124"], 4 * 8333);
    // Rows are BigQuery rows: reserved columns filled.
    let row = &server.rows(PROJECT, "events", "page_view20261123")[0];
    assert!(row["event_time"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-23T10:00:00"));
    assert!(row.get("received_at").is_some() && row.get("event_id").is_some());
    let st = server.stats();
    assert!(st.gzip_requests > 0 && st.gzip_requests == st.insert_all_requests);
    assert!(
        st.insert_all_requests >= 200,
        "batched in ≤500-row requests"
    );
}

#[test]
fn thirty_percent_failing_requests_lose_nothing_and_store_no_duplicates() {
    let server = start_server();
    server.set_failure_ratio(0.3, 7);
    let p = Pipeline::new(config(&server, "")).expect("pipeline");
    log_from_threads(&p, 4, 25_000);
    assert!(p.flush(Duration::from_secs(300)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (100_000, 100_000), "{s:?}");
    assert!(s.is_settled(), "{s:?}");
    assert!(s.retried > 0, "retries are counted");
    assert!(
        s.sink_errors.values().sum::<u64>() > 0,
        "{:?}",
        s.sink_errors
    );
    let (_, ids) = stored(&server);
    assert_eq!(
        ids.len(),
        100_000,
        "no duplicates visible after insertId dedupe"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100_000);
    let st = server.stats();
    assert!(st.faults_injected > 0, "{st:?}");
    // Faults of every kind were seen, including "stored but not acknowledged".
    for kind in [
        "http500_json",
        "http503_json",
        "http500_plain",
        "http429",
        "drop",
        "drop_after_insert",
    ] {
        assert!(
            st.faults_by_kind.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {st:?}"
        );
    }
    assert!(
        st.duplicates_dropped > 0,
        "retries after drop_after_insert were deduplicated"
    );
}

#[test]
fn rows_bigquery_refuses_are_dead_lettered_and_their_neighbours_stored() {
    // evlog's schema says `code` is a STRING; the table in BigQuery says INTEGER, so BigQuery
    // refuses rows whose code is not a number — the case evlog's own validation cannot catch.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("events")).unwrap();
    std::fs::write(
        dir.path().join("events/order.json"),
        r#"[{"name": "code", "type": "STRING"}, {"name": "n", "type": "INTEGER"}]"#,
    )
    .unwrap();
    let server = BqTestServer::start_blocking(BqTestConfig::default()).unwrap();
    server.create_dataset(PROJECT, "events");
    server
        .create_table(
            PROJECT,
            "events",
            "order",
            &serde_json::json!([
                {"name": "code", "type": "INTEGER"},
                {"name": "n", "type": "INTEGER"},
                {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
                {"name": "event_time", "type": "TIMESTAMP", "mode": "REQUIRED"},
                {"name": "received_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
                {"name": "other", "type": "STRING"}
            ]),
        )
        .unwrap();
    let mut cfg = config(&server, "");
    cfg.schemas.dir = dir.path().to_path_buf();
    cfg.sink.bigquery.create_tables = true; // the dead-letter table is created on demand
    let p = Pipeline::new(cfg).unwrap();
    for i in 0..30 {
        let code = if i % 10 == 3 {
            "\"abc\"".to_string()
        } else {
            format!("\"{i}\"")
        };
        p.log_json("events", "order", &format!(r#"{{"code":{code},"n":{i}}}"#))
            .unwrap();
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
    assert!(
        server.stats().rows_stopped > 0,
        "neighbours were stopped, then resent"
    );
    let dead = server.rows(PROJECT, "events", "_evlog_rejected");
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert_eq!(d["reason"], "bigquery_invalid");
        let err = d["error"].as_str().unwrap();
        assert!(err.contains("BigQuery refused the row"), "{err}");
        assert_eq!(d["field"], "code", "{d}");
        assert!(d["raw"].as_str().unwrap().contains("abc"));
    }
}
