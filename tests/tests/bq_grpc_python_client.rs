//! Google's official Python clients against the test server's two APIs
//! (`tests/bq_grpc_python_client.py`): google-cloud-bigquery-storage appends rows over gRPC on
//! the `_default` stream, a COMMITTED stream with offsets (a repeated offset is `AlreadyExists`)
//! and a PENDING stream committed by `BatchCommitWriteStreams`; an invalid row comes back in
//! `row_errors`; google-cloud-bigquery's `list_rows` (REST `tabledata.list` with
//! `formatOptions.useInt64Timestamp`) reads every BigQuery type back, nested and repeated RECORDs
//! included. Needs both packages in the project's `.venv` (`bash tests/suites/20-python.sh setup`).

use std::process::Command;

use evlog_tests::bq::{BqTestConfig, BqTestServer};
use evlog_tests::opensearch::{repo_root, venv_python};
use serde_json::{json, Value};

fn schema() -> Value {
    json!([
        {"name": "id", "type": "INT64", "mode": "REQUIRED"},
        {"name": "name", "type": "STRING"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "ts_text", "type": "TIMESTAMP"},
        {"name": "day", "type": "DATE"},
        {"name": "dt", "type": "DATETIME"},
        {"name": "tm", "type": "TIME"},
        {"name": "num", "type": "NUMERIC"},
        {"name": "bignum", "type": "BIGNUMERIC"},
        {"name": "js", "type": "JSON"},
        {"name": "geo", "type": "GEOGRAPHY"},
        {"name": "iv", "type": "INTERVAL"},
        {"name": "raw", "type": "BYTES"},
        {"name": "f", "type": "FLOAT64"},
        {"name": "ok", "type": "BOOL"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "nums", "type": "INT64", "mode": "REPEATED"},
        {"name": "rec", "type": "RECORD", "fields": [
            {"name": "x", "type": "INT64"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "s", "type": "STRING"},
                {"name": "v", "type": "FLOAT64"}
            ]}
        ]}
    ])
}

#[test]
fn the_official_python_clients_write_over_grpc_and_read_every_type_back_over_rest() {
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .unwrap();
    server.create_table("p", "d", "t", &schema()).unwrap();
    let grpc_addr = server.grpc_addr().unwrap().to_string();
    let py = venv_python();
    let out = Command::new(&py)
        .arg(repo_root().join("tests/bq_grpc_python_client.py"))
        .arg(server.base_url())
        .arg(&grpc_addr)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash tests/suites/20-python.sh setup` (installs \
                 google-cloud-bigquery and google-cloud-bigquery-storage into .venv)",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "the script failed (google-cloud-bigquery-storage missing? run `bash \
         tests/suites/20-python.sh setup`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The invalid row refused the whole request, naming the field; nothing of it was stored.
    assert_eq!(
        seen["row_error"],
        json!({"code": "INVALID_ARGUMENT", "row_errors": [{
            "index": 1, "code": "FIELDS_ERROR",
            "message": "Field num: Cannot convert value to numeric (bad value): abc"
        }]}),
        "{seen}"
    );
    assert_eq!(seen["committed_offsets"], json!([0, 2]));
    assert_eq!(seen["repeated_offset"][0], "AlreadyExists", "{seen}");
    assert_eq!(seen["committed_row_count"], 3);
    // PENDING rows are invisible until the commit, then all there.
    assert_eq!(seen["before_commit"], json!([1, 2, 10, 11, 12]));
    assert_eq!(seen["commit_errors"], json!([]));
    assert_eq!(seen["committed_at"], true);
    assert_eq!(seen["ids"], json!([1, 2, 10, 11, 12, 20, 21]));

    // Every type as the client parsed it from tabledata.list.
    assert_eq!(
        seen["first"],
        json!({
            "id": ["int", "1"],
            "name": ["str", "row 1"],
            "ts": ["datetime", "2026-12-02T10:00:00.123457+00:00"],
            "ts_text": ["datetime", "2026-12-03T09:00:00.500000+00:00"],
            "day": ["date", "2025-12-03"],
            "dt": ["datetime", "2026-12-03T11:22:33.123456"],
            "tm": ["time", "11:22:33.500000"],
            "num": ["Decimal", "123.456"],
            "bignum": ["Decimal", "-98765432109876543210.0123456789"],
            "js": {"k": [["int", "1"], ["str", "two"]]},
            "geo": ["str", "POINT(1 2)"],
            "iv": ["relativedelta", concat!(
                "relativedelta(years=+1, months=+2, days=+3, hours=+4, minutes=+5, seconds=+6, ",
                "microseconds=+500000)"
            )],
            "raw": ["bytes", "AP9ldmxvZw=="],
            "f": ["float", "2.5"],
            "ok": ["bool", "True"],
            "tags": [["str", "a"], ["str", "b"]],
            "nums": [["int", "1"], ["int", "-2"]],
            "rec": {"x": ["int", "7"], "items": [{"s": ["str", "i1"], "v": ["float", "0.25"]}]}
        })
    );
    let g = server.grpc_stats();
    assert_eq!(g.rows_stored, 7);
    assert_eq!(g.rows_held, 0);
    assert_eq!(g.offset_already_exists, 1);
    assert_eq!(g.requests_with_row_errors, 1);
    assert_eq!(g.streams_created, 2);
}
