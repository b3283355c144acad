//! The `gcp-bigquery-client` crate (the client the BigQuery sink uses) against the test server:
//! proves that the server's answers deserialize into the official models, and that its error
//! bodies come back as `BQError::ResponseError` with BigQuery's fields.

use std::sync::Arc;
use std::time::Duration;

use evlog_tests::bq::{BqTestConfig, BqTestServer, Fault};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::tabledata::ListQueryParameters;
use gcp_bigquery_client::Client;
use serde_json::json;

/// The crate's auth is pluggable: a fixed token, which the test server checks for presence.
#[derive(Clone)]
struct FixedToken;

#[async_trait::async_trait]
impl Authenticator for FixedToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("test-token".into())
    }
}

async fn client_for(server: &BqTestServer) -> Client {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    ClientBuilder::new()
        .with_v2_base_url(server.v2_base_url())
        .with_client(http)
        .build_from_authenticator(Arc::new(FixedToken))
        .await
        .unwrap()
}

fn response_error(e: BQError) -> (i64, String, String) {
    match e {
        BQError::ResponseError { error } => (
            error.error.code,
            error.error.errors[0]["reason"].clone(),
            error.error.message,
        ),
        other => panic!("expected a ResponseError, got {other:?}"),
    }
}

#[tokio::test]
async fn official_client_creates_inserts_gets_and_lists() {
    let server = BqTestServer::start(BqTestConfig {
        require_auth: true,
        ..BqTestConfig::default()
    })
    .await
    .unwrap();
    let client = client_for(&server).await;

    let ds = client
        .dataset()
        .create(Dataset::new("p", "d"))
        .await
        .unwrap();
    assert_eq!(ds.dataset_reference.dataset_id, "d");
    let schema = TableSchema::new(vec![
        TableFieldSchema::integer("user_id"),
        TableFieldSchema::string("name"),
        TableFieldSchema::record("item", vec![TableFieldSchema::numeric("price")]),
        TableFieldSchema::timestamp("at"),
    ]);
    let t = client
        .table()
        .create(Table::new("p", "d", "t", schema.clone()))
        .await
        .unwrap();
    assert_eq!(t.table_reference.table_id, "t");
    let (code, reason, msg) = response_error(
        client
            .table()
            .create(Table::new("p", "d", "t", schema))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (409, "duplicate", "Already Exists: Table p:d.t")
    );

    // insert_all sends a gzip body (the crate's default "gzip" feature).
    let mut req = TableDataInsertAllRequest::new();
    for i in 0..3 {
        req.add_row(
            Some(format!("id-{i}")),
            json!({"user_id": i, "name": format!("n{i}"), "item": {"price": "1.25"},
                   "at": "2024-01-01T00:00:00Z"}),
        )
        .unwrap();
    }
    req.add_row(None, json!({"user_id": "bad"})).unwrap();
    req.skip_invalid_rows();
    let resp = client
        .tabledata()
        .insert_all("p", "d", "t", req)
        .await
        .unwrap();
    let errs = resp.insert_errors.expect("one invalid row");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].index, Some(3));
    let e = &errs[0].errors.as_ref().unwrap()[0];
    assert_eq!(e.reason.as_deref(), Some("invalid"));
    assert_eq!(e.location.as_deref(), Some("user_id"));
    assert_eq!(server.rows("p", "d", "t").len(), 3);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/insertAll") && r.gzip));

    // Template suffix through the client.
    let mut req = TableDataInsertAllRequest::new();
    req.add_row(Some("x".into()), json!({"user_id": 9}))
        .unwrap();
    req.template_suffix("_20240101");
    let resp = client
        .tabledata()
        .insert_all("p", "d", "t", req)
        .await
        .unwrap();
    assert!(resp.insert_errors.is_none());
    assert_eq!(server.table_ids("p", "d"), ["t", "t_20240101"]);

    let got = client.table().get("p", "d", "t", None).await.unwrap();
    assert_eq!(got.num_rows.as_deref(), Some("3"));
    let fields = got.schema.fields().as_ref().unwrap();
    assert!(matches!(fields[0].r#type, FieldType::Integer));
    assert!(matches!(fields[2].r#type, FieldType::Record));

    let list = client
        .tabledata()
        .list(
            "p",
            "d",
            "t",
            ListQueryParameters {
                start_index: None,
                max_results: Some(2),
                page_token: None,
                selected_fields: None,
                format_options: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(list.total_rows.as_deref(), Some("3"));
    let rows = list.rows.unwrap();
    assert_eq!(rows.len(), 2);
    let cells = rows[1].columns.as_ref().unwrap();
    assert_eq!(cells[0].value, Some(json!("1")));
    assert_eq!(cells[2].value, Some(json!({"f": [{"v": "1.25"}]})));
    let token = list.page_token.expect("a second page");
    let list = client
        .tabledata()
        .list(
            "p",
            "d",
            "t",
            ListQueryParameters {
                start_index: None,
                max_results: Some(2),
                page_token: Some(token),
                selected_fields: None,
                format_options: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(list.rows.unwrap().len(), 1);
    assert!(list.page_token.is_none());

    let tables = client
        .table()
        .list("p", "d", Default::default())
        .await
        .unwrap();
    assert_eq!(tables.tables.unwrap().len(), 2);
    server.shutdown();
}

#[tokio::test]
async fn official_client_sees_bigquery_errors_and_faults() {
    let server = BqTestServer::start(BqTestConfig::default()).await.unwrap();
    server
        .create_table("p", "d", "t", &json!([{"name": "a", "type": "STRING"}]))
        .unwrap();
    let client = client_for(&server).await;

    let (code, reason, msg) = response_error(
        client
            .table()
            .get("p", "d", "nope", None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (404, "notFound", "Not found: Table p:d.nope")
    );

    let row = || {
        let mut r = TableDataInsertAllRequest::new();
        r.add_row(Some("i".into()), json!({"a": "x"})).unwrap();
        r
    };
    for (fault, want_code, want_reason) in [
        (Fault::Http503Json, 503, "backendError"),
        (Fault::Http500Json, 500, "internalError"),
        (Fault::Http429, 429, "rateLimitExceeded"),
        (Fault::Http403RateLimit, 403, "rateLimitExceeded"),
    ] {
        server.inject(fault);
        let (code, reason, _) = response_error(
            client
                .tabledata()
                .insert_all("p", "d", "t", row())
                .await
                .unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (want_code, want_reason));
    }
    // A non-JSON 500 body and a dropped connection surface as request errors, not as a
    // ResponseError.
    server.inject(Fault::Http500PlainText);
    let e = client
        .tabledata()
        .insert_all("p", "d", "t", row())
        .await
        .unwrap_err();
    assert!(matches!(e, BQError::RequestError(_)), "{e:?}");
    server.inject(Fault::DropConnection);
    let e = client
        .tabledata()
        .insert_all("p", "d", "t", row())
        .await
        .unwrap_err();
    assert!(matches!(e, BQError::RequestError(_)), "{e:?}");
    assert!(server.rows("p", "d", "t").is_empty());
    let resp = client
        .tabledata()
        .insert_all("p", "d", "t", row())
        .await
        .unwrap();
    assert!(resp.insert_errors.is_none());
    assert_eq!(server.rows("p", "d", "t").len(), 1);
    assert_eq!(server.stats().faults_injected, 6);
}
