//! The Storage Write gRPC side of the BigQuery test server, driven by the generated
//! `BigQueryWriteClient` of gcp-bigquery-client (the client the evlog sink uses), with rows read
//! back through the REST `tabledata.list`.

use std::time::Duration;

use evlog_tests::bq::grpc::{rows::message_from_descriptor, GrpcFault};
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1 as pb;
use gcp_bigquery_client::google::rpc;
use pb::append_rows_request::{ProtoData, Rows};
use pb::append_rows_response::Response as Outcome;
use pb::big_query_write_client::BigQueryWriteClient;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value as PValue};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

const P: &str = "p";
const D: &str = "d";
const T: &str = "t";
const WAIT: Duration = Duration::from_secs(10);

fn table_path() -> String {
    format!("projects/{P}/datasets/{D}/tables/{T}")
}

fn default_stream() -> String {
    format!("{}/streams/_default", table_path())
}

fn field(
    name: &str,
    number: i32,
    ty: Type,
    label: Label,
    type_name: Option<&str>,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        r#type: Some(ty as i32),
        label: Some(label as i32),
        type_name: type_name.map(str::to_string),
        ..Default::default()
    }
}

/// `Row { id int64; name string; ts int64 (TIMESTAMP µs); day int32 (DATE); tags repeated
/// string; r Inner { x bool; n double } }`, self-contained.
fn row_descriptor() -> DescriptorProto {
    DescriptorProto {
        name: Some("Row".into()),
        field: vec![
            field("id", 1, Type::Int64, Label::Optional, None),
            field("name", 2, Type::String, Label::Optional, None),
            field("ts", 3, Type::Int64, Label::Optional, None),
            field("day", 4, Type::Int32, Label::Optional, None),
            field("tags", 5, Type::String, Label::Repeated, None),
            field("r", 6, Type::Message, Label::Optional, Some(".Row.Inner")),
        ],
        nested_type: vec![DescriptorProto {
            name: Some("Inner".into()),
            field: vec![
                field("x", 1, Type::Bool, Label::Optional, None),
                field("n", 2, Type::Double, Label::Optional, None),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn schema() -> Value {
    json!([
        {"name": "id", "type": "INT64", "mode": "REQUIRED"},
        {"name": "name", "type": "STRING"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "day", "type": "DATE"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "r", "type": "RECORD", "fields": [
            {"name": "x", "type": "BOOL"},
            {"name": "n", "type": "FLOAT64"}
        ]}
    ])
}

fn encode(md: &MessageDescriptor, id: i64, name: &str) -> Vec<u8> {
    let mut m = DynamicMessage::new(md.clone());
    m.set_field_by_name("id", PValue::I64(id));
    m.set_field_by_name("name", PValue::String(name.into()));
    m.set_field_by_name("ts", PValue::I64(1_796_205_600_000_000 + id));
    m.set_field_by_name("day", PValue::I32(19_723));
    m.set_field_by_name(
        "tags",
        PValue::List(vec![PValue::String("a".into()), PValue::String("b".into())]),
    );
    let inner_md = md.get_field_by_name("r").unwrap().kind();
    let inner_md = inner_md.as_message().unwrap().clone();
    let mut inner = DynamicMessage::new(inner_md);
    inner.set_field_by_name("x", PValue::Bool(true));
    inner.set_field_by_name("n", PValue::F64(1.5));
    m.set_field_by_name("r", PValue::Message(inner));
    m.encode_to_vec()
}

struct Fixture {
    server: BqTestServer,
    client: BigQueryWriteClient<Channel>,
    md: MessageDescriptor,
}

async fn fixture(cfg: BqTestConfig) -> Fixture {
    let server = BqTestServer::start(BqTestConfig { grpc: true, ..cfg })
        .await
        .unwrap();
    server.create_table(P, D, T, &schema()).unwrap();
    let client = BigQueryWriteClient::connect(server.grpc_url())
        .await
        .unwrap();
    let md = message_from_descriptor(&row_descriptor()).unwrap();
    Fixture { server, client, md }
}

/// An `AppendRows` request; `first`: the stream name and writer schema a connection starts with.
fn request(
    first: Option<(&str, DescriptorProto)>,
    offset: Option<i64>,
    rows: Vec<Vec<u8>>,
) -> pb::AppendRowsRequest {
    let (write_stream, desc) = match first {
        Some((s, d)) => (s.to_string(), Some(d)),
        None => (String::new(), None),
    };
    pb::AppendRowsRequest {
        write_stream,
        offset,
        rows: Some(Rows::ProtoRows(ProtoData {
            writer_schema: desc.map(|d| pb::ProtoSchema {
                proto_descriptor: Some(d),
            }),
            rows: Some(pb::ProtoRows {
                serialized_rows: rows,
            }),
        })),
        ..Default::default()
    }
}

/// One `AppendRows` connection.
struct Conn {
    tx: mpsc::Sender<pb::AppendRowsRequest>,
    rx: Streaming<pb::AppendRowsResponse>,
    first: bool,
}

impl Conn {
    async fn open(client: &mut BigQueryWriteClient<Channel>) -> Conn {
        let (tx, rx) = mpsc::channel(16);
        let rx = tokio::time::timeout(WAIT, client.append_rows(ReceiverStream::new(rx)))
            .await
            .expect("append_rows opened in time")
            .expect("append_rows opened")
            .into_inner();
        Conn {
            tx,
            rx,
            first: true,
        }
    }

    /// Sends one request (stream name and schema on the first) and waits for its answer.
    async fn append(
        &mut self,
        stream: &str,
        offset: Option<i64>,
        rows: Vec<Vec<u8>>,
    ) -> Result<pb::AppendRowsResponse, Status> {
        let first = std::mem::replace(&mut self.first, false);
        let req = request(first.then(|| (stream, row_descriptor())), offset, rows);
        self.tx.send(req).await.expect("request stream open");
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err(Status::new(Code::Ok, "stream ended")),
            Ok(Err(s)) => Err(s),
            Err(_) => panic!("no answer within {WAIT:?}"),
        }
    }
}

fn offset_of(r: &pb::AppendRowsResponse) -> Option<i64> {
    match &r.response {
        Some(Outcome::AppendResult(a)) => a.offset,
        other => panic!(
            "expected an append result, got {other:?} (row errors {:?})",
            r.row_errors
        ),
    }
}

/// The in-band error's code and its `StorageError` code.
fn in_band_error(r: &pb::AppendRowsResponse) -> (Code, Option<i32>) {
    match &r.response {
        Some(Outcome::Error(s)) => (Code::from(s.code), storage_code(s)),
        other => panic!("expected an in-band error, got {other:?}"),
    }
}

fn storage_code(s: &rpc::Status) -> Option<i32> {
    s.details.iter().find_map(|a| {
        a.type_url
            .ends_with("google.cloud.bigquery.storage.v1.StorageError")
            .then(|| pb::StorageError::decode(a.value.as_slice()).unwrap().code)
    })
}

/// The `StorageError` code in the details of a status that ended a call.
fn status_storage_code(e: &Status) -> Option<i32> {
    storage_code(&rpc::Status::decode(e.details()).expect("details are a google.rpc.Status"))
}

async fn create_stream(
    client: &mut BigQueryWriteClient<Channel>,
    ty: pb::write_stream::Type,
) -> String {
    create_stream_result(client, ty)
        .await
        .unwrap()
        .into_inner()
        .name
}

async fn create_stream_result(
    client: &mut BigQueryWriteClient<Channel>,
    ty: pb::write_stream::Type,
) -> Result<tonic::Response<pb::WriteStream>, Status> {
    client
        .create_write_stream(pb::CreateWriteStreamRequest {
            parent: table_path(),
            write_stream: Some(pb::WriteStream {
                r#type: ty as i32,
                ..Default::default()
            }),
        })
        .await
}

/// `tabledata.list` over real HTTP.
async fn list(server: &BqTestServer, query: &str) -> Value {
    let url = format!(
        "{}/projects/{P}/datasets/{D}/tables/{T}/data?{query}",
        server.v2_base_url()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    serde_json::from_str(&body).unwrap()
}

fn ids(server: &BqTestServer) -> Vec<i64> {
    server
        .rows(P, D, T)
        .iter()
        .map(|r| r["id"].as_i64().expect("id is a number"))
        .collect()
}

#[tokio::test]
async fn default_and_committed_streams_store_rows_read_back_by_tabledata_list() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(
            &default_stream(),
            None,
            vec![encode(&f.md, 1, "one"), encode(&f.md, 2, "two")],
        )
        .await
        .unwrap();
    assert_eq!(offset_of(&r), None, "the default stream answers no offset");

    let name = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(
            &name,
            Some(0),
            vec![encode(&f.md, 3, "x"), encode(&f.md, 4, "y")],
        )
        .await;
    assert_eq!(offset_of(&r.unwrap()), Some(0));
    let r = c.append(&name, Some(2), vec![encode(&f.md, 5, "z")]).await;
    assert_eq!(offset_of(&r.unwrap()), Some(2));
    // A repeated offset: already written, in-band, the connection stays usable.
    let r = c
        .append(&name, Some(0), vec![encode(&f.md, 3, "x")])
        .await
        .unwrap();
    assert_eq!(in_band_error(&r), (Code::AlreadyExists, Some(8)));
    let r = c
        .append(&name, Some(9), vec![encode(&f.md, 6, "w")])
        .await
        .unwrap();
    assert_eq!(in_band_error(&r), (Code::OutOfRange, Some(9)));
    let r = c.append(&name, None, vec![encode(&f.md, 6, "w")]).await;
    assert_eq!(
        offset_of(&r.unwrap()),
        Some(3),
        "no offset: appended at the end"
    );
    assert_eq!(ids(&f.server), [1, 2, 3, 4, 5, 6]);

    let v = list(&f.server, "formatOptions.useInt64Timestamp=true").await;
    assert_eq!(v["totalRows"], "6");
    assert_eq!(
        v["rows"][0],
        json!({"f": [
            {"v": "1"}, {"v": "one"}, {"v": "1796205600000001"}, {"v": "2024-01-01"},
            {"v": [{"v": "a"}, {"v": "b"}]}, {"v": {"f": [{"v": "true"}, {"v": "1.5"}]}}
        ]})
    );
    let v = list(&f.server, "").await;
    assert_eq!(v["rows"][0]["f"][2]["v"], "1.796205600000001E9");
}

#[tokio::test]
async fn offsets_on_the_default_stream_are_refused() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(&default_stream(), Some(0), vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    assert_eq!(in_band_error(&r).0, Code::InvalidArgument);
    assert!(f.server.rows(P, D, T).is_empty());
}

#[tokio::test]
async fn an_ack_lost_after_storing_ends_the_stream_and_a_retry_gets_already_exists() {
    let mut f = fixture(BqTestConfig::default()).await;
    let name = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    f.server.inject_grpc(GrpcFault::AckLost);
    let mut c = Conn::open(&mut f.client).await;
    let e = c
        .append(&name, Some(0), vec![encode(&f.md, 1, "a")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(ids(&f.server), [1], "stored although unanswered");
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(&name, Some(0), vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    assert_eq!(in_band_error(&r), (Code::AlreadyExists, Some(8)));
    assert_eq!(ids(&f.server), [1]);
}

async fn finalize(client: &mut BigQueryWriteClient<Channel>, name: &str) -> i64 {
    client
        .finalize_write_stream(pb::FinalizeWriteStreamRequest {
            name: name.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .row_count
}

async fn commit(
    client: &mut BigQueryWriteClient<Channel>,
    names: &[&str],
) -> pb::BatchCommitWriteStreamsResponse {
    client
        .batch_commit_write_streams(pb::BatchCommitWriteStreamsRequest {
            parent: table_path(),
            write_streams: names.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn pending_rows_appear_only_when_a_finalized_stream_is_committed() {
    let mut f = fixture(BqTestConfig::default()).await;
    let name = create_stream(&mut f.client, pb::write_stream::Type::Pending).await;
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(
            &name,
            Some(0),
            vec![encode(&f.md, 1, "a"), encode(&f.md, 2, "b")],
        )
        .await;
    assert_eq!(offset_of(&r.unwrap()), Some(0));
    assert!(f.server.rows(P, D, T).is_empty());
    assert_eq!(f.server.grpc_held_rows(P, D, T), 2);

    // Not finalized: the commit fails as a whole, with the stream's error.
    let resp = commit(&mut f.client, &[&name]).await;
    assert_eq!(resp.commit_time, None);
    assert_eq!(resp.stream_errors.len(), 1);
    assert_eq!(resp.stream_errors[0].code, 5, "INVALID_STREAM_STATE");
    assert_eq!(resp.stream_errors[0].entity, name);
    assert!(f.server.rows(P, D, T).is_empty());

    assert_eq!(finalize(&mut f.client, &name).await, 2);
    // Appends to a finalized stream are refused in-band.
    let r = c
        .append(&name, Some(2), vec![encode(&f.md, 3, "c")])
        .await
        .unwrap();
    assert_eq!(
        in_band_error(&r),
        (Code::InvalidArgument, Some(6)),
        "STREAM_FINALIZED"
    );

    let resp = commit(&mut f.client, &[&name]).await;
    assert!(
        resp.commit_time.is_some() && resp.stream_errors.is_empty(),
        "{resp:?}"
    );
    assert_eq!(ids(&f.server), [1, 2]);
    assert_eq!(f.server.grpc_held_rows(P, D, T), 0);
    // Committing again: STREAM_ALREADY_COMMITTED, nothing twice.
    let resp = commit(&mut f.client, &[&name]).await;
    assert_eq!(resp.stream_errors[0].code, 2, "STREAM_ALREADY_COMMITTED");
    assert_eq!(ids(&f.server), [1, 2]);
    let ws = f
        .client
        .get_write_stream(pb::GetWriteStreamRequest {
            name: name.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ws.commit_time.is_some());
    // A COMMITTED stream cannot be batch-committed.
    let committed = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    finalize(&mut f.client, &committed).await;
    let resp = commit(&mut f.client, &[&committed]).await;
    assert_eq!(resp.stream_errors[0].code, 4, "INVALID_STREAM_TYPE");
}

#[tokio::test]
async fn buffered_rows_appear_up_to_the_flushed_offset() {
    let mut f = fixture(BqTestConfig::default()).await;
    let name = create_stream(&mut f.client, pb::write_stream::Type::Buffered).await;
    let mut c = Conn::open(&mut f.client).await;
    let rows = (1..=4).map(|i| encode(&f.md, i, "b")).collect();
    assert_eq!(
        offset_of(&c.append(&name, Some(0), rows).await.unwrap()),
        Some(0)
    );
    assert!(f.server.rows(P, D, T).is_empty());
    let flush = |offset: i64| pb::FlushRowsRequest {
        write_stream: name.clone(),
        offset: Some(offset),
    };
    let r = f.client.flush_rows(flush(1)).await.unwrap().into_inner();
    assert_eq!(r.offset, 1);
    assert_eq!(ids(&f.server), [1, 2], "rows 0..=1 flushed");
    // Flushing an offset already flushed changes nothing.
    f.client.flush_rows(flush(0)).await.unwrap();
    assert_eq!(ids(&f.server), [1, 2]);
    let e = f.client.flush_rows(flush(4)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    f.client.flush_rows(flush(3)).await.unwrap();
    assert_eq!(ids(&f.server), [1, 2, 3, 4]);
    // FlushRows is for BUFFERED streams only.
    let committed = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    let e = f
        .client
        .flush_rows(pb::FlushRowsRequest {
            write_stream: committed,
            offset: Some(0),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(status_storage_code(&e), Some(4));
}

#[tokio::test]
async fn an_invalid_row_refuses_the_whole_request_with_row_errors_naming_the_field() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    let mut no_id = DynamicMessage::new(f.md.clone());
    no_id.set_field_by_name("name", PValue::String("no id".into()));
    let mut bad_date =
        DynamicMessage::decode(f.md.clone(), encode(&f.md, 3, "c").as_slice()).unwrap();
    bad_date.set_field_by_name("day", PValue::I32(3_000_000));
    let r = c
        .append(
            &default_stream(),
            None,
            vec![
                encode(&f.md, 1, "ok"),
                no_id.encode_to_vec(),
                bad_date.encode_to_vec(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(in_band_error(&r).0, Code::InvalidArgument);
    let errs: Vec<(i64, i32, &str)> = r
        .row_errors
        .iter()
        .map(|e| (e.index, e.code, e.message.as_str()))
        .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!((errs[0].0, errs[0].1), (1, 1), "FIELDS_ERROR");
    assert!(
        errs[0].2.contains("Missing required field: id"),
        "{}",
        errs[0].2
    );
    assert_eq!(errs[1].0, 2);
    assert!(
        errs[1].2.starts_with("Field day: Invalid date"),
        "{}",
        errs[1].2
    );
    assert!(
        f.server.rows(P, D, T).is_empty(),
        "no row of the request stored"
    );
    // The connection stays usable.
    let r = c
        .append(&default_stream(), None, vec![encode(&f.md, 1, "ok")])
        .await;
    assert_eq!(offset_of(&r.unwrap()), None);
    assert_eq!(ids(&f.server), [1]);
}

/// A connection whose first request carries `desc` as its writer schema.
async fn append_with_descriptor(
    client: &mut BigQueryWriteClient<Channel>,
    desc: DescriptorProto,
    row: Vec<u8>,
) -> Result<pb::AppendRowsResponse, Status> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(request(Some((&default_stream(), desc)), None, vec![row]))
        .await
        .unwrap();
    let mut s = client
        .append_rows(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tokio::time::timeout(WAIT, s.message())
        .await
        .expect("answered")
        .map(|r| r.expect("a response"))
}

#[tokio::test]
async fn a_writer_schema_that_does_not_fit_the_table_is_refused_naming_the_field() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut extra = row_descriptor();
    extra
        .field
        .push(field("zz", 9, Type::String, Label::Optional, None));
    // The connection ends, with the StorageError in the status details.
    let e = append_with_descriptor(&mut f.client, extra, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        status_storage_code(&e),
        Some(7),
        "SCHEMA_MISMATCH_EXTRA_FIELDS"
    );
    assert!(
        e.message().contains("extra fields: 'zz'"),
        "{}",
        e.message()
    );

    let mut wrong = row_descriptor();
    wrong.field[0] = field("id", 1, Type::String, Label::Optional, None);
    let e = append_with_descriptor(&mut f.client, wrong, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("at id: the proto field type string, BigQuery field type INTEGER"),
        "{}",
        e.message()
    );
    let mut nested = row_descriptor();
    nested.nested_type[0].field[0] = field("x", 1, Type::Int64, Label::Optional, None);
    let e = append_with_descriptor(&mut f.client, nested, vec![])
        .await
        .unwrap_err();
    assert!(e.message().contains("at r.x:"), "{}", e.message());
    assert!(f.server.rows(P, D, T).is_empty());
}

#[tokio::test]
async fn a_request_over_10_mb_ends_the_stream_with_invalid_argument() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    let big = "x".repeat(5 * 1024 * 1024);
    let rows = vec![encode(&f.md, 1, &big), encode(&f.md, 2, &big)];
    let e = c.append(&default_stream(), None, rows).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("limit 10485760"), "{}", e.message());
    assert!(f.server.rows(P, D, T).is_empty());
    // Just under the limit is fine.
    let mut c = Conn::open(&mut f.client).await;
    let rows = vec![encode(&f.md, 1, &big)];
    assert_eq!(
        offset_of(&c.append(&default_stream(), None, rows).await.unwrap()),
        None
    );
    assert_eq!(ids(&f.server), [1]);
}

#[tokio::test]
async fn faults_end_the_stream_before_storing_and_the_admin_endpoint_queues_them() {
    let mut f = fixture(BqTestConfig::default()).await;
    for (fault, code) in [
        (GrpcFault::Unavailable, Code::Unavailable),
        (GrpcFault::Internal, Code::Internal),
        (GrpcFault::ResourceExhausted, Code::ResourceExhausted),
        (GrpcFault::StreamClosed, Code::Ok),
    ] {
        f.server.inject_grpc(fault.clone());
        let mut c = Conn::open(&mut f.client).await;
        let e = c
            .append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{fault:?}: {e:?}");
    }
    assert!(f.server.rows(P, D, T).is_empty());
    // Over the admin endpoint, as load scripts do.
    let resp = reqwest::Client::new()
        .post(format!("{}/_fault", f.server.base_url()))
        .body(r#"{"grpc_fault": "resource_exhausted", "count": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..2 {
        let mut c = Conn::open(&mut f.client).await;
        let e = c
            .append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
    }
    let mut c = Conn::open(&mut f.client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    assert_eq!(ids(&f.server), [1]);
    let stats = reqwest::get(format!("{}/_stats", f.server.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["grpc"]["faults_injected"], 6, "{stats}");
    assert_eq!(stats["grpc"]["rows_stored"], 1);
}

/// A writer that retries every failed append on a new connection with the same offset, as an
/// exactly-once sink must: `ALREADY_EXISTS` means the rows landed before.
#[tokio::test]
async fn with_a_30_percent_failure_ratio_offsets_and_retries_store_every_row_exactly_once() {
    let mut f = fixture(BqTestConfig::default()).await;
    f.server.set_grpc_failure_ratio(0.3, 42);
    let name = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    let mut c = Conn::open(&mut f.client).await;
    let mut offset = 0i64;
    let mut failures = 0;
    while offset < 200 {
        let batch: Vec<Vec<u8>> = (offset..offset + 10)
            .map(|i| encode(&f.md, i, "e"))
            .collect();
        match c.append(&name, Some(offset), batch).await {
            Ok(r)
                if r.response
                    .as_ref()
                    .is_some_and(|o| matches!(o, Outcome::AppendResult(_))) =>
            {
                offset += 10
            }
            Ok(r) => {
                assert_eq!(in_band_error(&r), (Code::AlreadyExists, Some(8)));
                offset += 10;
            }
            Err(_) => {
                failures += 1;
                c = Conn::open(&mut f.client).await;
            }
        }
    }
    assert!(failures > 5, "the ratio injected faults: {failures}");
    assert_eq!(ids(&f.server), (0..200).collect::<Vec<_>>());
    let g = f.server.grpc_stats();
    assert_eq!(g.faults_injected, failures);
}

#[tokio::test]
async fn with_require_auth_a_call_without_a_bearer_token_is_unauthenticated() {
    let mut f = fixture(BqTestConfig {
        require_auth: true,
        ..BqTestConfig::default()
    })
    .await;
    let req = || pb::CreateWriteStreamRequest {
        parent: table_path(),
        write_stream: Some(pb::WriteStream {
            r#type: pb::write_stream::Type::Committed as i32,
            ..Default::default()
        }),
    };
    let e = f.client.create_write_stream(req()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let (_tx, rx) = mpsc::channel::<pb::AppendRowsRequest>(1);
    let e = f
        .client
        .append_rows(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut authed = tonic::Request::new(req());
    authed
        .metadata_mut()
        .insert("authorization", "Bearer test-token".parse().unwrap());
    f.client.create_write_stream(authed).await.unwrap();
}

/// `tables.patch` over REST: the table gains a NULLABLE STRING column.
async fn add_column(server: &BqTestServer, name: &str) {
    let mut fields = schema();
    fields
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "type": "STRING"}));
    let resp = reqwest::Client::new()
        .patch(format!(
            "{}/projects/{P}/datasets/{D}/tables/{T}",
            server.v2_base_url()
        ))
        .body(json!({"schema": {"fields": fields}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_schema_change_is_announced_in_updated_schema_and_get_write_stream_shows_it() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    let r = c
        .append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    assert_eq!(r.updated_schema, None);
    add_column(&f.server, "added").await;
    let r = c
        .append(&default_stream(), None, vec![encode(&f.md, 2, "b")])
        .await
        .unwrap();
    let names: Vec<String> = r
        .updated_schema
        .expect("updated_schema after the change")
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names.last().map(String::as_str), Some("added"));
    let r = c
        .append(&default_stream(), None, vec![encode(&f.md, 3, "c")])
        .await
        .unwrap();
    assert_eq!(r.updated_schema, None, "announced once per connection");

    let get = |view: pb::WriteStreamView| pb::GetWriteStreamRequest {
        name: default_stream(),
        view: view as i32,
    };
    let full = f
        .client
        .get_write_stream(get(pb::WriteStreamView::Full))
        .await
        .unwrap();
    assert_eq!(full.into_inner().table_schema.unwrap().fields.len(), 7);
    let basic = f
        .client
        .get_write_stream(get(pb::WriteStreamView::Basic))
        .await
        .unwrap();
    assert_eq!(basic.into_inner().table_schema, None);
    let e = f
        .client
        .get_write_stream(pb::GetWriteStreamRequest {
            name: format!("{}/streams/nope", table_path()),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(status_storage_code(&e), Some(3));
}

#[tokio::test]
async fn pipelined_requests_get_one_answer_each_in_order() {
    let mut f = fixture(BqTestConfig::default()).await;
    let name = create_stream(&mut f.client, pb::write_stream::Type::Committed).await;
    let (tx, rx) = mpsc::channel(100);
    let mut s = f
        .client
        .append_rows(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..50i64 {
        let first = (i == 0).then(|| (name.as_str(), row_descriptor()));
        tx.send(request(first, Some(i), vec![encode(&f.md, i, "p")]))
            .await
            .unwrap();
    }
    drop(tx);
    let mut offsets = Vec::new();
    while let Some(r) = tokio::time::timeout(WAIT, s.message())
        .await
        .unwrap()
        .unwrap()
    {
        offsets.push(offset_of(&r).unwrap());
    }
    assert_eq!(offsets, (0..50).collect::<Vec<_>>());
    let g = f.server.grpc_stats();
    assert_eq!(
        (g.append_requests, g.rows_received, g.rows_stored),
        (50, 50, 50)
    );
    let one = request(None, Some(1), vec![encode(&f.md, 1, "p")]).encoded_len() as u64;
    assert!(
        g.bytes_received > 50 * one,
        "{} vs {}",
        g.bytes_received,
        50 * one
    );
}

#[tokio::test]
async fn shutting_down_ends_open_append_streams() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    f.server.shutdown();
    let end = tokio::time::timeout(WAIT, c.rx.message())
        .await
        .expect("the stream ended");
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
}

/// Waits (up to `WAIT`) until connecting to `addr` succeeds (`true`) or is refused (`false`).
async fn wait_connectable(addr: std::net::SocketAddr, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} connectable != {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn down_or_refusing_fails_open_streams_and_new_calls_until_back() {
    let mut f = fixture(BqTestConfig::default()).await;
    let mut c = Conn::open(&mut f.client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    f.server.set_down(true);
    let e = c
        .append(&default_stream(), None, vec![encode(&f.md, 2, "b")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let e = create_stream_result(&mut f.client, pb::write_stream::Type::Committed)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    f.server.set_down(false);
    let mut c = Conn::open(&mut f.client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 3, "c")])
        .await
        .unwrap();

    // Refusing: the open stream is cut, the port closed, calls on the open HTTP/2 connection
    // refused; afterwards the same port serves again.
    f.server.set_refusing(true);
    let end = tokio::time::timeout(WAIT, c.rx.message())
        .await
        .expect("the stream ended");
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
    let addr = f.server.grpc_addr().unwrap();
    wait_connectable(addr, false).await;
    let e = create_stream_result(&mut f.client, pb::write_stream::Type::Committed)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    f.server.set_refusing(false);
    wait_connectable(addr, true).await;
    let mut client = BigQueryWriteClient::connect(f.server.grpc_url())
        .await
        .unwrap();
    let mut c = Conn::open(&mut client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 4, "d")])
        .await
        .unwrap();
    assert_eq!(ids(&f.server), [1, 3, 4]);
}

#[tokio::test]
async fn a_schema_change_still_propagating_is_not_announced_yet() {
    let mut f = fixture(BqTestConfig {
        // Far longer than the test: the change stays propagating throughout.
        schema_propagation: Duration::from_secs(600),
        ..BqTestConfig::default()
    })
    .await;
    let mut c = Conn::open(&mut f.client).await;
    c.append(&default_stream(), None, vec![encode(&f.md, 1, "a")])
        .await
        .unwrap();
    add_column(&f.server, "added").await;
    let r = c
        .append(&default_stream(), None, vec![encode(&f.md, 2, "b")])
        .await
        .unwrap();
    assert_eq!(r.updated_schema, None);
    assert_eq!(ids(&f.server), [1, 2]);
}

#[tokio::test]
async fn the_binary_with_grpc_port_prints_both_urls_and_serves_grpc() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_bq-test-server"))
        .args(["--grpc-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    // Two lines; the process prints them at once when ready (EOF if it fails to start).
    // On a timeout the guard kills the process, which ends the blocking read.
    let read = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut next = || lines.next().expect("a line").unwrap();
        (next(), next())
    });
    let (rest, grpc) = tokio::time::timeout(WAIT, read)
        .await
        .expect("both lines in time")
        .unwrap();
    let rest = rest.strip_prefix("listening on ").expect(&rest).to_string();
    let grpc = grpc
        .strip_prefix("grpc listening on ")
        .expect(&grpc)
        .to_string();
    let server_tables = format!("{rest}/bigquery/v2/projects/{P}/datasets");
    let http = reqwest::Client::new();
    let r = http
        .post(&server_tables)
        .body(json!({"datasetReference": {"projectId": P, "datasetId": D}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{server_tables}/{D}/tables"))
        .body(
            json!({"tableReference": {"projectId": P, "datasetId": D, "tableId": T},
                   "schema": {"fields": schema()}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut client = BigQueryWriteClient::connect(grpc).await.unwrap();
    let md = message_from_descriptor(&row_descriptor()).unwrap();
    let mut c = Conn::open(&mut client).await;
    c.append(&default_stream(), None, vec![encode(&md, 1, "a")])
        .await
        .unwrap();
    let list = http
        .get(format!("{server_tables}/{D}/tables/{T}/data"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["totalRows"], "1");
}
