//! What the collector tells clients about events that fail their schema (422 per event), and
//! what it lets through `/v1/rows`: key roles and a check of every row (against a real `run` on
//! 127.0.0.1:0 with the file sink).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use evlog_core::ingest::{Processor, RawEvent};
use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::forward::wire::{RowsRequest, WireBatch, WireRejected};
use evlog_core::sink::RejectedEvent;
use evlog_core::{Config, EventInput};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// 2026-11-22T10:00:00Z.
const T: i64 = 1_795_341_600_000_000;

fn metric_or_zero(text: &str, name: &str) -> f64 {
    metric(text, name).unwrap_or(0.0)
}

#[test]
fn events_failing_their_schema_answer_422_with_reason_field_and_rule() {
    let mut s = Server::start("");
    let c = client();
    let missing = json!({"namespace": "events", "type": "transaction", "id": "ev-missing",
                         "event": {"amount": "1.00"}});
    let r = c
        .post(format!("{}/v1/events", s.url))
        .json(&missing)
        .send()
        .expect("send");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().expect("json");
    assert_eq!(body["id"], "ev-missing", "{body}");
    assert_eq!(body["reason"], "missing_required", "{body}");
    assert_eq!(body["field"], "user_id", "{body}");
    let e = body["error"].as_str().expect("error");
    assert!(
        e.contains("user_id")
            && e.contains("REQUIRED")
            && e.ends_with("kept in the dead-letter table"),
        "{e}"
    );

    let batch = json!([
        txn(1),
        {"namespace": "events", "type": "transaction", "id": "ev-type",
         "event": {"user_id": "not a number"}},
        {"namespace": "events", "type": "transaction", "id": "ev-long",
         "event": {"user_id": 2, "currency": "EURO"}},
        {"namespace": "events", "type": "no_such_table", "id": "ev-table", "event": {"x": 1}},
        txn(3),
    ]);
    let r = c
        .post(format!("{}/v1/batch", s.url))
        .json(&batch)
        .send()
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    assert_eq!(
        (body["accepted"].as_u64(), body["refused"].as_u64()),
        (Some(2), Some(3)),
        "{body}"
    );
    let res = body["results"].as_array().expect("results");
    let statuses: Vec<u64> = res.iter().filter_map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, vec![202, 422, 422, 422, 202], "{body}");
    let at = |i: usize, k: &str| res[i][k].as_str().unwrap_or("").to_string();
    assert_eq!(
        (at(1, "reason"), at(1, "field"), at(1, "id")),
        ("invalid_value".into(), "user_id".into(), "ev-type".into())
    );
    assert!(at(1, "error").contains("not an integer"), "{body}");
    assert_eq!(
        (at(2, "reason"), at(2, "field")),
        ("too_long".into(), "currency".into())
    );
    assert!(at(2, "error").contains("maxLength 3"), "{body}");
    assert_eq!(at(3, "reason"), "unknown_table");
    assert!(res[3].get("field").is_none(), "{body}");
    for i in 1..4 {
        assert!(
            at(i, "error").ends_with("the event is kept in the dead-letter table"),
            "{body}"
        );
    }

    // Still kept, and counted rejected by reason (counters move once the sink acknowledged,
    // so they are polled).
    let want = [
        ("evlog_events_accepted_total", 6.0),
        ("evlog_events_delivered_total", 2.0),
        (
            "evlog_events_rejected_total{reason=\"missing_required\"}",
            1.0,
        ),
        ("evlog_events_rejected_total{reason=\"invalid_value\"}", 1.0),
        ("evlog_events_rejected_total{reason=\"too_long\"}", 1.0),
        ("evlog_events_rejected_total{reason=\"unknown_table\"}", 1.0),
    ];
    let mut m = String::new();
    let counted = wait_for(WAIT, || {
        m = s.metrics();
        want.iter().all(|(name, n)| metric_or_zero(&m, name) == *n)
    });
    assert!(counted, "{want:?}\n{m}");
    let stored: HashSet<String> = [0, 4].iter().map(|&i| at(i, "id")).collect();
    let ids: HashSet<String> = stored_ids(&s.data_dir()).into_iter().collect();
    assert_eq!(ids, stored);
    assert_eq!(dead_letters(&s.data_dir()).len(), 4);
    let dl: HashMap<String, Value> = dead_letters(&s.data_dir())
        .into_iter()
        .map(|r| (r["event_id"].as_str().unwrap_or("").to_string(), r))
        .collect();
    assert_eq!(dl["ev-missing"]["reason"], "missing_required");
    assert_eq!(dl["ev-missing"]["field"], "user_id");
    assert_eq!(dl["ev-type"]["reason"], "invalid_value");
    assert_eq!(dl["ev-long"]["field"], "currency");
    s.stop();
}

/// Rows as core's forward sink builds them, converted by core with the collector's schemas.
fn core_rows(
    events: &[(&str, &str, Value)],
) -> Vec<(
    evlog_core::routing::Destination,
    evlog_core::sink::EncodedRow,
)> {
    let schemas = SchemaRegistry::load_dir(&schemas_dir()).expect("schemas");
    let p = Processor::new(schemas, &Config::default());
    events
        .iter()
        .map(|(ty, id, ev)| {
            let input = EventInput {
                time: Some(T),
                id: Some(id),
                ..EventInput::new("events", ty, ev.to_string())
            };
            let raw = RawEvent::new(input, T + 1_000);
            p.process(&raw).expect("core converts it")
        })
        .collect()
}

fn post_rows(
    c: &reqwest::blocking::Client,
    s: &Server,
    key: Option<&str>,
    body: &Value,
) -> reqwest::blocking::Response {
    let mut r = c.post(format!("{}/v1/rows", s.url)).json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().expect("send")
}

#[test]
fn only_sdk_keys_may_send_rows() {
    let mut s = Server::start(
        r#"api_keys = [{ key = "key-browser-app", namespaces = ["events"] },
                       { key = "key-client-set", namespaces = ["*"], role = "client" },
                       { key = "key-server-sdk", namespaces = ["events"], role = "sdk" }]"#,
    );
    let c = client();
    let rows = core_rows(&[("transaction", "row-ok", json!({"user_id": 1}))]);
    let body = serde_json::to_value(RowsRequest::rows(
        &rows[0].0,
        std::slice::from_ref(&rows[0].1),
    ))
    .expect("json");
    for key in ["key-browser-app", "key-client-set"] {
        let r = post_rows(&c, &s, Some(key), &body);
        assert_eq!(r.status(), 403, "{key}");
        let e: Value = r.json().expect("json");
        let e = e["error"].as_str().unwrap_or("");
        assert!(
            e.contains("role \"client\"") && e.contains("role = \"sdk\""),
            "{e}"
        );
    }
    // A client key still sends envelopes.
    let r = c
        .post(format!("{}/v1/events", s.url))
        .bearer_auth("key-browser-app")
        .json(&txn(5))
        .send()
        .expect("send");
    assert_eq!(r.status(), 202);
    let r = post_rows(&c, &s, Some("key-server-sdk"), &body);
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().expect("json");
    assert_eq!(
        answer,
        json!({"accepted": 1, "rows": 1, "dead_letters": 0, "refused": []})
    );
    assert!(wait_for(WAIT, || stored_ids(&s.data_dir()).len() == 2));
    s.stop();
    // Only the envelope and the sdk key's row: the refused requests wrote nothing.
    let ids: HashSet<String> = stored_ids(&s.data_dir()).into_iter().collect();
    assert!(ids.contains("row-ok"), "{ids:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(dead_letters(&s.data_dir()).is_empty());
}

#[test]
fn rows_failing_the_checks_are_dead_lettered_never_stored() {
    // Open collector: rows are allowed, and checked all the same.
    let mut s = Server::start("");
    let c = client();
    let rows = core_rows(&[
        (
            "transaction",
            "row-good",
            json!({"user_id": 1, "amount": "2.50", "items": [{"sku": "A", "qty": 2}]}),
        ),
        ("transaction", "row-wrong-day", json!({"user_id": 2})),
        ("page_view", "row-pv", json!({"url": "/x", "tags": ["a"]})),
        ("transaction", "row-unknown-table", json!({"user_id": 3})),
    ]);
    let (dest, good) = (&rows[0].0, &rows[0].1);
    let day = dest.day.to_string();
    assert_eq!(day, "20261122");
    let mut batch =
        serde_json::to_value(WireBatch::from_rows(dest, std::slice::from_ref(good))).expect("json");
    // The issue's row: an INT64 as text that is no integer, no event_id, no event_time.
    batch["rows"].as_array_mut().expect("rows").push(json!({"id": "row-oops", "json": {"user_id": "oops", "received_at": "2026-11-22T10:00:00Z"}}));
    // A key no column names (a converted row keeps those in `other`).
    let mut extra: Value = serde_json::from_str(&rows[1].1.json).expect("row");
    extra["user_id"] = json!(9);
    extra["event_id"] = json!("row-extra");
    extra["not_a_column"] = json!(true);
    batch["rows"]
        .as_array_mut()
        .expect("rows")
        .push(json!({"id": "row-extra", "json": extra}));
    // A good row sent for a day that is not its event_time's.
    let mut wrong_day = serde_json::to_value(WireBatch::from_rows(
        &rows[1].0,
        std::slice::from_ref(&rows[1].1),
    ))
    .expect("json");
    wrong_day["day"] = json!("19990101");
    // The same for a table without a schema.
    let mut no_table = serde_json::to_value(WireBatch::from_rows(
        &rows[3].0,
        std::slice::from_ref(&rows[3].1),
    ))
    .expect("json");
    no_table["table"] = json!("not_a_table");
    let pv = serde_json::to_value(WireBatch::from_rows(
        &rows[2].0,
        std::slice::from_ref(&rows[2].1),
    ))
    .expect("json");
    let sdk_dead = RejectedEvent {
        dataset: "events".into(),
        event_id: "sdk-dead".into(),
        namespace: "events".into(),
        type_name: "transaction".into(),
        event_time: Some(T),
        received_at: T,
        reason: "missing_required",
        field: Some("user_id".into()),
        error: "field \"user_id\": missing".into(),
        raw: "{}".into(),
    };
    let body = json!({
        "batches": [batch, wrong_day, no_table, pv],
        "rejected": [serde_json::to_value(WireRejected::from(&sdk_dead)).expect("json")],
    });
    let r = post_rows(&c, &s, None, &body);
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().expect("json");
    assert_eq!(answer["accepted"], 7, "{answer}");
    assert_eq!(answer["rows"], 2, "{answer}");
    assert_eq!(answer["dead_letters"], 1, "{answer}");
    let refused: HashMap<String, Value> = answer["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or("").to_string(), r.clone()))
        .collect();
    assert_eq!(refused.len(), 4, "{answer}");
    let expect = [
        ("row-oops", 0, 1, "missing_required", Some("event_id")),
        ("row-extra", 0, 2, "unknown_field", Some("not_a_column")),
        ("row-wrong-day", 1, 0, "wrong_destination", Some("day")),
        ("row-unknown-table", 2, 0, "unknown_table", None),
    ];
    for (id, b, j, reason, field) in expect {
        let r = &refused[id];
        assert_eq!(
            (r["batch"].as_u64(), r["row"].as_u64()),
            (Some(b), Some(j)),
            "{r}"
        );
        assert_eq!(r["reason"], reason, "{r}");
        assert_eq!(r["field"].as_str(), field, "{r}");
        assert!(!r["error"].as_str().unwrap_or("").is_empty(), "{r}");
    }
    assert!(
        refused["row-wrong-day"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("2026-11-22T10:00:00"),
        "{answer}"
    );

    // Stored: the two good rows only; dead letters: the four refused rows and the SDK's own.
    // Counted: accepted 7, delivered 2, rejected 5 by reason (counters move once the sink
    // acknowledged, so they are polled).
    let want = [
        ("evlog_events_accepted_total", 7.0),
        ("evlog_events_delivered_total", 2.0),
        (
            "evlog_events_rejected_total{reason=\"missing_required\"}",
            2.0,
        ),
        ("evlog_events_rejected_total{reason=\"unknown_field\"}", 1.0),
        (
            "evlog_events_rejected_total{reason=\"wrong_destination\"}",
            1.0,
        ),
        ("evlog_events_rejected_total{reason=\"unknown_table\"}", 1.0),
    ];
    let mut m = String::new();
    let counted = wait_for(WAIT, || {
        m = s.metrics();
        want.iter().all(|(name, n)| metric_or_zero(&m, name) == *n)
    });
    assert!(counted, "{want:?}\n{m}");
    assert_eq!(stored_ids(&s.data_dir()).len(), 2);
    assert_eq!(dead_letters(&s.data_dir()).len(), 5);
    s.stop();
    let files = common::rows(&s.data_dir());
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "_evlog_rejected.ndjson",
            "page_view20261122.ndjson",
            "transaction20261122.ndjson"
        ],
        "no table file for events.not_a_table nor for 19990101"
    );
    assert_eq!(files["transaction20261122.ndjson"].len(), 1);
    let stored: Value = files["transaction20261122.ndjson"][0].clone();
    assert_eq!(
        stored,
        serde_json::from_str::<Value>(&good.json).expect("row")
    );
    let dl: HashMap<String, Value> = dead_letters(&s.data_dir())
        .into_iter()
        .map(|r| (r["event_id"].as_str().unwrap_or("").to_string(), r))
        .collect();
    for (id, _, _, reason, field) in expect {
        let d = &dl[id];
        assert_eq!(d["reason"], reason, "{d}");
        assert_eq!(d["field"].as_str(), field, "{d}");
        // raw: the row as sent.
        let raw: Value = serde_json::from_str(d["raw"].as_str().expect("raw")).expect("raw row");
        assert!(raw.is_object(), "{d}");
    }
    assert_eq!(dl["row-unknown-table"]["type"], "not_a_table");
    assert_eq!(dl["sdk-dead"]["reason"], "missing_required");
}
