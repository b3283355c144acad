//! The BigQuery test server's `tables.patch` / `tables.update`: BigQuery's additive rules for
//! schema changes, and the propagation delay during which `insertAll` does not know a new
//! column yet while `tables.get` already shows it.

use std::time::{Duration, Instant};

use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::{json, Value};

async fn call(server: &BqTestServer, method: &str, path: &str, body: Value) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{}/projects/p/datasets/d/{path}", server.v2_base_url());
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = client
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn patch(server: &BqTestServer, table: &str, fields: Value) -> (u16, Value) {
    let body = json!({"schema": {"fields": fields}});
    call(server, "PATCH", &format!("tables/{table}"), body).await
}

async fn insert(server: &BqTestServer, table: &str, row: Value, suffix: Option<&str>) -> Value {
    let mut body = json!({"rows": [{"insertId": null, "json": row}]});
    if let Some(s) = suffix {
        body["templateSuffix"] = json!(s);
    }
    let (status, answer) = call(server, "POST", &format!("tables/{table}/insertAll"), body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn names(fields: &Value) -> Vec<(String, String)> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn server_with_table() -> BqTestServer {
    let server = BqTestServer::start(BqTestConfig::default()).await.unwrap();
    server
        .create_table(
            "p",
            "d",
            "t",
            &json!([
                {"name": "a", "type": "STRING", "mode": "REQUIRED"},
                {"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "INTEGER"}]}
            ]),
        )
        .unwrap();
    server
}

#[tokio::test]
async fn patch_adds_nullable_and_repeated_columns_and_relaxes_required() {
    let server = server_with_table().await;
    let (status, table) = patch(
        &server,
        "t",
        json!([
            {"name": "a", "type": "STRING", "mode": "NULLABLE"},
            {"name": "r", "type": "RECORD", "fields": [
                {"name": "x", "type": "INTEGER"},
                {"name": "y", "type": "STRING", "mode": "REPEATED"}]},
            {"name": "b", "type": "INT64"}
        ]),
    )
    .await;
    assert_eq!(status, 200, "{table}");
    let fields = &table["schema"]["fields"];
    assert_eq!(
        names(fields),
        [("a", "NULLABLE"), ("r", "NULLABLE"), ("b", "NULLABLE")]
            .map(|(n, m)| (n.to_string(), m.to_string()))
    );
    assert_eq!(names(&fields[1]["fields"]).len(), 2);
    assert_eq!(server.stats().tables_patched, 1);
    // No propagation delay configured: rows use the new columns at once.
    let answer = insert(&server, "t", json!({"b": 1, "r": {"y": ["q"]}}), None).await;
    assert!(answer.get("insertErrors").is_none(), "{answer}");
    // The same schema again changes nothing.
    let (status, _) = call(
        &server,
        "PUT",
        "tables/t",
        json!({"schema": table["schema"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(server.stats().tables_patched, 1);
}

#[tokio::test]
async fn patch_and_update_refuse_what_is_not_additive_in_bigquerys_words() {
    let server = server_with_table().await;
    let r = json!({"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "INTEGER"}]});
    let cases = [
        (
            json!([{"name": "a", "type": "STRING", "mode": "REQUIRED"}]),
            "Field r is missing in new schema",
        ),
        (
            json!([{"name": "a", "type": "INTEGER", "mode": "REQUIRED"}, r]),
            "Field a has changed type from STRING to INTEGER",
        ),
        (
            json!([{"name": "a", "type": "STRING", "mode": "REPEATED"}, r]),
            "Field a has changed mode from REQUIRED to REPEATED",
        ),
        (
            json!([{"name": "a", "type": "STRING", "mode": "REQUIRED"}, r,
                   {"name": "c", "type": "STRING", "mode": "REQUIRED"}]),
            "Cannot add required fields to an existing schema. (field: c)",
        ),
        (
            json!([{"name": "a", "type": "STRING", "mode": "REQUIRED"},
                   {"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]}]),
            "Field r.x has changed type from INTEGER to STRING",
        ),
    ];
    for method in ["PATCH", "PUT"] {
        for (fields, message) in &cases {
            let body = json!({"schema": {"fields": fields}});
            let (status, answer) = call(&server, method, "tables/t", body).await;
            assert_eq!(status, 400, "{method} {answer}");
            assert_eq!(answer["error"]["errors"][0]["reason"], "invalid");
            let got = answer["error"]["message"].as_str().unwrap();
            assert_eq!(
                got,
                format!("Provided Schema does not match Table p:d.t. {message}")
            );
        }
    }
    assert_eq!(server.stats().tables_patched, 0);
    let (status, _) = patch(&server, "nope", json!([])).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_new_column_reaches_insert_all_only_after_the_propagation_delay() {
    let server = server_with_table().await;
    let delay = Duration::from_millis(400);
    server.set_schema_propagation(delay);
    // A day shard that exists before the change, patched too, as evlog does.
    insert(&server, "t", json!({"a": "s"}), Some("20260101")).await;
    let fields = json!([
        {"name": "a", "type": "STRING", "mode": "REQUIRED"},
        {"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "INTEGER"}]},
        {"name": "coupon", "type": "STRING"}
    ]);
    let patched_at = Instant::now();
    assert_eq!(patch(&server, "t", fields.clone()).await.0, 200);
    assert_eq!(patch(&server, "t20260101", fields).await.0, 200);
    // tables.get shows the column at once...
    let (_, table) = call(&server, "GET", "tables/t", Value::Null).await;
    assert_eq!(names(&table["schema"]["fields"])[2].0, "coupon");
    // ...while insertAll refuses it per row, as BigQuery does while a change propagates.
    let row = json!({"a": "x", "coupon": "XMAS"});
    for suffix in [None, Some("20260101"), Some("20260102")] {
        let answer = insert(&server, "t", row.clone(), suffix).await;
        if patched_at.elapsed() >= delay {
            break; // a slow machine: the window has passed, nothing left to see
        }
        let e = &answer["insertErrors"][0]["errors"][0];
        assert_eq!(e["reason"], "invalid", "{suffix:?} {answer}");
        assert_eq!(e["message"], "no such field: coupon.");
        assert_eq!(e["location"], "coupon");
    }
    if patched_at.elapsed() < delay {
        assert!(server.stats().rows_awaiting_column >= 1);
    }
    // After the delay (each table's own, from its own patch) the same row is taken, in the
    // base table and every shard.
    let deadline = Instant::now() + Duration::from_secs(10);
    for suffix in [None, Some("20260101"), Some("20260102")] {
        loop {
            let answer = insert(&server, "t", row.clone(), suffix).await;
            if answer.get("insertErrors").is_none() {
                break;
            }
            assert!(Instant::now() < deadline, "{suffix:?} {answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(patched_at.elapsed() >= delay);
}
