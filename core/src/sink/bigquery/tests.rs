//! The BigQuery sink's unit tests: request bodies and how answers are classified. The sink against
//! a BigQuery test server is tested in the workspace's `tests/` crate.

use std::time::Duration;

use super::request::body;
use super::service::classify;
use crate::sink::http::gzip;
use crate::sink::EncodedRow;

#[test]
fn body_is_the_documented_request() {
    let r = vec![EncodedRow {
        insert_id: "a\"1".into(),
        json: r#"{"x":1}"#.into(),
    }];
    let b = body(&r, Some("20261122"), false);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["kind"], "bigquery#tableDataInsertAllRequest");
    assert_eq!(v["templateSuffix"], "20261122");
    assert_eq!(v["skipInvalidRows"], false);
    assert_eq!(v["rows"][0]["insertId"], "a\"1");
    assert_eq!(v["rows"][0]["json"]["x"], 1);
    // The official client's model reads it back.
    let parsed: gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest =
        serde_json::from_slice(&b).unwrap();
    assert_eq!(parsed.len(), 1);
    let gz = gzip(&b);
    let mut d = flate2::read::GzDecoder::new(&gz[..]);
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut d, &mut back).unwrap();
    assert_eq!(back, b);
}

#[test]
fn classifies_bigquery_answers() {
    let body = br#"{"error":{"code":503,"message":"Backend error","errors":[{"reason":"backendError","message":"x"}],"status":"UNAVAILABLE"}}"#;
    let f = classify(503, body, None);
    assert!(f.retryable && f.kind == "http_5xx" && f.message.contains("backendError"));
    let f = classify(500, b"<html>oops</html>", None);
    assert!(f.retryable && f.message.contains("HTTP 500") && f.message.contains("oops"));
    let f = classify(429, br#"{"error":{"code":429,"message":"slow down","errors":[{"reason":"rateLimitExceeded"}]}}"#, Some(Duration::from_secs(2)));
    assert!(f.retryable && f.retry_after == Some(Duration::from_secs(2)));
    let f = classify(
        403,
        br#"{"error":{"code":403,"message":"quota","errors":[{"reason":"rateLimitExceeded"}]}}"#,
        None,
    );
    assert!(f.retryable, "retryable reason on a 403");
    let f = classify(404, br#"{"error":{"code":404,"message":"Not found: Table p:d.t","errors":[{"reason":"notFound"}],"status":"NOT_FOUND"}}"#, None);
    assert!(!f.retryable && f.not_found);
    let f = classify(
        400,
        br#"{"error":{"code":400,"message":"bad","errors":[{"reason":"invalid"}]}}"#,
        None,
    );
    assert!(!f.retryable && f.kind == "http_4xx");
}

#[test]
fn storage_write_settings_are_checked_by_key() {
    use super::{BigQueryConfig, WriteApi};
    let cfg: BigQueryConfig = toml::from_str(
        "api = \"storage_write\"\nexactly_once = true\nstorage_url = \"http://127.0.0.1:9\"",
    )
    .unwrap();
    assert_eq!(cfg.api, WriteApi::StorageWrite);
    cfg.validate(false).unwrap();
    assert_eq!(
        BigQueryConfig::default().api,
        WriteApi::InsertAll,
        "the default stays insertAll"
    );
    let e = toml::from_str::<BigQueryConfig>("api = \"grpc\"").unwrap_err();
    assert!(e.to_string().contains("insert_all"), "{e}");
    let bad = BigQueryConfig {
        storage_url: "bigquerystorage.googleapis.com".into(),
        ..BigQueryConfig::default()
    };
    let e = bad.validate(false).unwrap_err().to_string();
    assert!(e.contains("sink.bigquery.storage_url"), "{e}");
    let bad = BigQueryConfig {
        exactly_once: true,
        ..BigQueryConfig::default()
    };
    let e = bad.validate(false).unwrap_err().to_string();
    assert!(
        e.contains("sink.bigquery.exactly_once") && e.contains("storage_write"),
        "{e}"
    );
}
