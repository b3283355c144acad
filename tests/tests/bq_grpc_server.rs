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
        let req = pb::AppendRowsRequest {
            write_stream: if first {
                stream.to_string()
            } else {
                String::new()
            },
            offset,
            rows: Some(Rows::ProtoRows(ProtoData {
                writer_schema: first.then(|| pb::ProtoSchema {
                    proto_descriptor: Some(row_descriptor()),
                }),
                rows: Some(pb::ProtoRows {
                    serialized_rows: rows,
                }),
            })),
            ..Default::default()
        };
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

async fn create_stream(
    client: &mut BigQueryWriteClient<Channel>,
    ty: pb::write_stream::Type,
) -> String {
    client
        .create_write_stream(pb::CreateWriteStreamRequest {
            parent: table_path(),
            write_stream: Some(pb::WriteStream {
                r#type: ty as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name
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
