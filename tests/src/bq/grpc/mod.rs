//! The BigQuery Storage Write API (gRPC `google.cloud.bigquery.storage.v1.BigQueryWrite`) of the
//! test server, on its own port (plaintext HTTP/2), sharing the REST server's tables: rows appended
//! here are read back with `tabledata.list`.
//!
//! Contracts (BigQuery's, see `tests/README.md` for what differs):
//! - Streams: `_default` (always there, at-least-once, no offsets), and streams made by
//!   `CreateWriteStream`: COMMITTED (rows visible on append), PENDING (visible after
//!   `FinalizeWriteStream` + `BatchCommitWriteStreams`), BUFFERED (visible up to the offset given
//!   to `FlushRows`). Stream names: `projects/P/datasets/D/tables/T/streams/ID`.
//! - `AppendRows`: one response per request, in order. The first request of a connection names
//!   the stream and carries `writer_schema`; later ones may omit both. Offsets on a created stream
//!   must equal its current end: below it → in-band `ALREADY_EXISTS` (StorageError
//!   `OFFSET_ALREADY_EXISTS`), beyond it → in-band `OUT_OF_RANGE` (`OFFSET_OUT_OF_RANGE`); an offset
//!   on `_default` or an append to a finalized stream (`STREAM_FINALIZED`) → in-band
//!   `INVALID_ARGUMENT`. An invalid row fails the whole request: in-band `INVALID_ARGUMENT` with
//!   `row_errors` (index, `FIELDS_ERROR`, a message naming the field), nothing stored. A writer
//!   schema that does not fit the table (`SCHEMA_MISMATCH_EXTRA_FIELDS` for a field the table
//!   lacks) and a request over 10 MB end the stream with `INVALID_ARGUMENT`.
//! - In-band errors (`AppendRowsResponse.error`, a `google.rpc.Status` whose details hold a
//!   `StorageError` when BigQuery sends one) keep the connection open; faults end it.
//! - Faults ([`GrpcFault`]) apply to `AppendRows` requests: queued ones first, then a failure ratio.
//!   While the server is down or refusing, every call and every `AppendRows` request is
//!   `UNAVAILABLE` (and refusing closes the port, as for REST).

mod append;
pub mod rows;
mod service;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};

use super::{Shared, StoredRow, TableKey};

/// Code generated from the vendored protos (`tests/proto`).
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod pb {
    pub mod google {
        pub mod api {
            include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
        }
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
        pub mod cloud {
            pub mod bigquery {
                pub mod storage {
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/google.cloud.bigquery.storage.v1.rs"
                        ));
                    }
                }
            }
        }
    }
    pub use google::cloud::bigquery::storage::v1 as storage;
}

pub use pb::storage::write_stream::Type as StreamType;

/// BigQuery's limit on one `AppendRows` request.
pub const MAX_APPEND_BYTES: usize = 10 * 1024 * 1024;

/// A fault injected into `AppendRows` instead of (or around) handling one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcFault {
    /// The stream ends with `UNAVAILABLE` before the rows are stored; no response.
    Unavailable,
    /// The stream ends with `INTERNAL` before the rows are stored; no response.
    Internal,
    /// The stream ends with `RESOURCE_EXHAUSTED` (a quota) before the rows are stored.
    ResourceExhausted,
    /// The rows are stored, then the stream ends with `UNAVAILABLE` without their response: the
    /// client cannot know they landed (with offsets a retry gets `ALREADY_EXISTS`).
    AckLost,
    /// The server ends the stream (status OK, no response) before the rows are stored, as
    /// BigQuery does to idle or long-lived connections.
    StreamClosed,
    /// Waits this long, then handles the request normally.
    Slow(Duration),
}

impl GrpcFault {
    /// A short stable name, used in stats and the admin endpoint (`{"grpc_fault": NAME}`).
    pub fn name(&self) -> &'static str {
        match self {
            GrpcFault::Unavailable => "unavailable",
            GrpcFault::Internal => "internal",
            GrpcFault::ResourceExhausted => "resource_exhausted",
            GrpcFault::AckLost => "ack_lost",
            GrpcFault::StreamClosed => "stream_closed",
            GrpcFault::Slow(_) => "slow",
        }
    }

    /// Parses a name from [`GrpcFault::name`]; `slow` takes `slow_ms`.
    pub fn from_name(name: &str, slow_ms: u64) -> Option<GrpcFault> {
        Some(match name {
            "unavailable" => GrpcFault::Unavailable,
            "internal" => GrpcFault::Internal,
            "resource_exhausted" => GrpcFault::ResourceExhausted,
            "ack_lost" => GrpcFault::AckLost,
            "stream_closed" => GrpcFault::StreamClosed,
            "slow" => GrpcFault::Slow(Duration::from_millis(slow_ms)),
            _ => return None,
        })
    }

    /// The mix [`super::BqTestServer::set_grpc_failure_ratio`] draws from: every fault that
    /// fails a request.
    pub fn default_mix() -> Vec<GrpcFault> {
        vec![
            GrpcFault::Unavailable,
            GrpcFault::Internal,
            GrpcFault::ResourceExhausted,
            GrpcFault::AckLost,
            GrpcFault::StreamClosed,
        ]
    }
}

/// Queued gRPC faults and the failure ratio (kept in the server's fault state, sharing its RNG).
#[derive(Debug, Default)]
pub(crate) struct GrpcFaults {
    pub queue: VecDeque<GrpcFault>,
    pub ratio: f64,
    pub mix: Vec<GrpcFault>,
}

/// gRPC counters, readable with [`super::BqTestServer::grpc_stats`] and in `GET /_stats`
/// under `"grpc"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcStats {
    /// `AppendRows` requests received (faulted ones included).
    pub append_requests: u64,
    /// Encoded size of the `AppendRows` requests past faults (what BigQuery bills and limits;
    /// HTTP/2 and gRPC framing excluded).
    pub bytes_received: u64,
    /// Serialized rows in the `AppendRows` requests past faults.
    pub rows_received: u64,
    /// Rows made visible in tables (committed, flushed or on `_default`).
    pub rows_stored: u64,
    /// Rows appended to PENDING or BUFFERED streams and not visible yet.
    pub rows_held: u64,
    /// Requests refused because of invalid rows (`row_errors`).
    pub requests_with_row_errors: u64,
    /// Requests answered `ALREADY_EXISTS` for an offset already written.
    pub offset_already_exists: u64,
    /// Requests answered `OUT_OF_RANGE` for an offset beyond the end.
    pub offset_out_of_range: u64,
    pub streams_created: u64,
    pub faults_injected: u64,
    /// Connections (`AppendRows` calls) opened.
    pub connections: u64,
}

impl GrpcStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "append_requests": self.append_requests,
            "bytes_received": self.bytes_received,
            "rows_received": self.rows_received,
            "rows_stored": self.rows_stored,
            "rows_held": self.rows_held,
            "requests_with_row_errors": self.requests_with_row_errors,
            "offset_already_exists": self.offset_already_exists,
            "offset_out_of_range": self.offset_out_of_range,
            "streams_created": self.streams_created,
            "faults_injected": self.faults_injected,
            "connections": self.connections,
        })
    }
}

/// A decoded row and its size as sent (what it adds to the table's `numBytes`).
#[derive(Debug)]
pub(crate) struct Appended {
    pub row: StoredRow,
    pub bytes: u64,
}

/// A stream made by `CreateWriteStream`.
#[derive(Debug)]
pub(crate) struct WriteStream {
    pub table: TableKey,
    pub ty: StreamType,
    pub created: SystemTime,
    pub committed: Option<SystemTime>,
    /// Rows appended and not yet visible (PENDING: all until committed; BUFFERED: those past the
    /// flushed offset).
    pub held: VecDeque<Appended>,
    /// Rows appended so far: the next offset.
    pub len: i64,
    /// BUFFERED: rows made visible so far.
    pub flushed: i64,
    pub finalized: bool,
}

/// The gRPC side of the server's state (under the same lock as the tables, so an append checks
/// its offset and stores its rows atomically).
#[derive(Debug, Default)]
pub(crate) struct GrpcState {
    pub streams: HashMap<String, WriteStream>,
    pub next_id: u64,
    pub stats: GrpcStats,
}

/// Serves `BigQueryWrite` on `listener` until the server shuts down. While the server is
/// refusing, the port is closed (as the REST one) and calls on connections already open are
/// answered `UNAVAILABLE`.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let svc = service::server(Arc::clone(&shared));
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return eprintln!("bq-test-server (gRPC): {e}"),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<TcpStream>>();
    let s = Arc::clone(&shared);
    tokio::spawn(async move {
        super::http::accept_loop(&s, listener, addr, move |stream| {
            let _ = tx.send(Ok(stream));
        })
        .await
    });
    let incoming = tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let r = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        eprintln!("bq-test-server (gRPC): {e}");
    }
}

/// `projects/P/datasets/D/tables/T` → the table key.
pub(crate) fn parse_table(name: &str) -> Option<TableKey> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "datasets", d, "tables", t] if ![p, d, t].iter().any(|s| s.is_empty()) => {
            Some((p.to_string(), d.to_string(), t.to_string()))
        }
        _ => None,
    }
}

/// `projects/P/datasets/D/tables/T/streams/ID` → the table key and the stream id.
pub(crate) fn parse_stream(name: &str) -> Option<(TableKey, String)> {
    let (table, id) = name.rsplit_once("/streams/")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some((parse_table(table)?, id.to_string()))
}

pub(crate) fn table_path(k: &TableKey) -> String {
    format!("projects/{}/datasets/{}/tables/{}", k.0, k.1, k.2)
}
