//! Google's official BigQuery Python client against the test server's `tables.patch`
//! (`tests/bq_python_client.py`): `update_table(table, ["schema"])` works, a type change comes
//! back as `BadRequest` with BigQuery's message, and the propagation delay's per-row "no such
//! field" error parses as the client parses BigQuery's. Needs google-cloud-bigquery in the
//! project's `.venv` (`bash tests/suites/20-python.sh setup`).

use std::process::Command;
use std::time::Duration;

use evlog_tests::bq::{BqTestConfig, BqTestServer};
use evlog_tests::opensearch::{repo_root, venv_python};
use serde_json::{json, Value};

#[test]
fn the_official_python_client_patches_a_schema_and_sees_bigquerys_answers() {
    let server = BqTestServer::start_blocking(BqTestConfig {
        // Longer than the script takes: its insert comes while the column propagates.
        schema_propagation: Duration::from_secs(60),
        ..BqTestConfig::default()
    })
    .unwrap();
    server
        .create_table(
            "p",
            "d",
            "t",
            &json!([{"name": "a", "type": "STRING", "mode": "REQUIRED"}]),
        )
        .unwrap();
    let py = venv_python();
    let out = Command::new(&py)
        .arg(repo_root().join("tests/bq_python_client.py"))
        .arg(server.base_url())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash tests/suites/20-python.sh setup` (installs \
                 google-cloud-bigquery into .venv)",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "the script failed (google-cloud-bigquery missing? run `bash tests/suites/20-python.sh \
         setup`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns = json!([
        ["a", "STRING", "REQUIRED"],
        ["coupon", "STRING", "NULLABLE"]
    ]);
    assert_eq!(seen["columns"], columns, "{seen}");
    assert_eq!(seen["get"], columns, "{seen}");
    // The client puts the method and URL before BigQuery's message.
    let refused = seen["refused"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("PATCH ")
            && refused.ends_with(
                ": Provided Schema does not match Table p:d.t. Field a has changed type from \
                 STRING to INTEGER"
            ),
        "{refused}"
    );
    let e = &seen["row_errors"][0];
    assert_eq!(e["index"], 0, "{seen}");
    assert_eq!(e["errors"][0]["reason"], "invalid");
    assert_eq!(e["errors"][0]["location"], "coupon");
    assert_eq!(e["errors"][0]["message"], "no such field: coupon.");
    let bq = server.stats();
    assert_eq!((bq.tables_patched, bq.rows_awaiting_column), (1, 1));
    // What the client sent: PATCH on the table, as the REST reference says.
    assert!(server
        .requests()
        .iter()
        .any(|r| r.method == "PATCH" && r.path == "/bigquery/v2/projects/p/datasets/d/tables/t"));
}
