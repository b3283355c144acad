//! The `BigQueryWrite` service: the RPCs, `AppendRows` connections, and BigQuery's error shapes
//! (in-band `google.rpc.Status` with `StorageError` details, or a status ending the stream).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::pb::google::rpc;
use super::pb::storage::big_query_write_server::{BigQueryWrite, BigQueryWriteServer};
use super::pb::storage::storage_error::StorageErrorCode;
use super::pb::storage::table_field_schema::{Mode as PbMode, Type as PbType};
use super::pb::storage::{self as pb, WriteStreamView};
use super::{
    parse_stream, parse_table, table_path, Appended, StreamType, WriteStream, MAX_APPEND_BYTES,
};
use crate::bq::schema::{ColMode, ColType, Column};
use crate::bq::{now_ms, Shared, State, TableKey};

/// The tonic service, accepting gzip like BigQuery (the Rust client may compress).
pub(crate) fn server(shared: Arc<Shared>) -> BigQueryWriteServer<Service> {
    BigQueryWriteServer::new(Service { shared })
        // Large enough to see an oversized request and answer it in BigQuery's words.
        .max_decoding_message_size(4 * MAX_APPEND_BYTES)
        .max_encoding_message_size(4 * MAX_APPEND_BYTES)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
}

pub(crate) struct Service {
    shared: Arc<Shared>,
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A `google.rpc.Status` carrying one `StorageError`.
pub(crate) fn rpc_status(
    code: Code,
    message: &str,
    storage: Option<(StorageErrorCode, &str)>,
) -> rpc::Status {
    let details = storage
        .map(|(c, entity)| prost_types::Any {
            type_url: "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError".into(),
            value: pb::StorageError {
                code: c as i32,
                entity: entity.to_string(),
                error_message: message.to_string(),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    rpc::Status {
        code: code as i32,
        message: message.to_string(),
        details,
    }
}

/// A status ending a call, with a `StorageError` in its details as BigQuery sends them.
pub(crate) fn status(
    code: Code,
    message: String,
    storage: Option<(StorageErrorCode, &str)>,
) -> Status {
    let s = rpc_status(code, &message, storage);
    Status::with_details(code, message, s.encode_to_vec().into())
}

fn field_schema(c: &Column) -> pb::TableFieldSchema {
    let ty = match c.ty {
        ColType::String => PbType::String,
        ColType::Bytes => PbType::Bytes,
        ColType::Integer => PbType::Int64,
        ColType::Float => PbType::Double,
        ColType::Numeric => PbType::Numeric,
        ColType::BigNumeric => PbType::Bignumeric,
        ColType::Boolean => PbType::Bool,
        ColType::Timestamp => PbType::Timestamp,
        ColType::Date => PbType::Date,
        ColType::Time => PbType::Time,
        ColType::DateTime => PbType::Datetime,
        ColType::Json => PbType::Json,
        ColType::Geography => PbType::Geography,
        ColType::Interval => PbType::Interval,
        ColType::Record => PbType::Struct,
    };
    let mode = match c.mode {
        ColMode::Nullable => PbMode::Nullable,
        ColMode::Required => PbMode::Required,
        ColMode::Repeated => PbMode::Repeated,
    };
    pb::TableFieldSchema {
        name: c.name.clone(),
        r#type: ty as i32,
        mode: mode as i32,
        fields: c.fields.iter().map(field_schema).collect(),
        max_length: c.max_length.unwrap_or(0) as i64,
        ..Default::default()
    }
}

pub(crate) fn table_schema(columns: &[Column]) -> pb::TableSchema {
    pb::TableSchema {
        fields: columns.iter().map(field_schema).collect(),
    }
}

pub(crate) fn table_not_found(k: &TableKey) -> Status {
    let path = table_path(k);
    status(
        Code::NotFound,
        format!("Requested entity was not found. Entity: {path}"),
        Some((StorageErrorCode::TableNotFound, &path)),
    )
}

pub(crate) fn stream_not_found(name: &str) -> Status {
    status(
        Code::NotFound,
        format!("Requested entity was not found. Entity: {name}"),
        Some((StorageErrorCode::StreamNotFound, name)),
    )
}

impl Service {
    /// Auth (with `require_auth`: any `Bearer` token) and the server being down.
    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.shared.cfg.require_auth {
            let ok = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
            if !ok {
                return Err(Status::unauthenticated(
                    "Request is missing required authentication credential. Expected OAuth 2 \
                     access token, login cookie or other valid authentication credential.",
                ));
            }
        }
        match unavailable_now(&self.shared) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    fn stream_resource(
        st: &State,
        name: &str,
        view: WriteStreamView,
    ) -> Result<pb::WriteStream, Status> {
        let (key, id) =
            parse_stream(name).ok_or_else(|| Status::invalid_argument(bad_stream_name(name)))?;
        let table = st.tables.get(&key).ok_or_else(|| table_not_found(&key))?;
        let schema = (view == WriteStreamView::Full).then(|| table_schema(&table.columns));
        if id == "_default" {
            return Ok(pb::WriteStream {
                name: name.to_string(),
                r#type: StreamType::Committed as i32,
                create_time: Some(timestamp(
                    SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_millis(table.created_ms.max(0) as u64),
                )),
                table_schema: schema,
                write_mode: pb::write_stream::WriteMode::Insert as i32,
                location: "US".into(),
                ..Default::default()
            });
        }
        let s = st
            .grpc
            .streams
            .get(name)
            .ok_or_else(|| stream_not_found(name))?;
        Ok(pb::WriteStream {
            name: name.to_string(),
            r#type: s.ty as i32,
            create_time: Some(timestamp(s.created)),
            commit_time: s.committed.map(timestamp),
            table_schema: schema,
            write_mode: pb::write_stream::WriteMode::Insert as i32,
            location: "US".into(),
        })
    }
}

/// `UNAVAILABLE` while the server is down or refusing connections (calls on HTTP/2 connections
/// opened before are refused too, as if the connection had been cut).
pub(crate) fn unavailable_now(shared: &Shared) -> Option<Status> {
    (shared.down.load(Ordering::SeqCst) || *shared.refusing.borrow())
        .then(|| Status::unavailable("The service is currently unavailable."))
}

pub(crate) fn bad_stream_name(name: &str) -> String {
    format!(
        "Invalid stream name: '{name}'; expected \
         projects/PROJECT/datasets/DATASET/tables/TABLE/streams/STREAM"
    )
}

#[tonic::async_trait]
impl BigQueryWrite for Service {
    async fn create_write_stream(
        &self,
        req: Request<pb::CreateWriteStreamRequest>,
    ) -> Result<Response<pb::WriteStream>, Status> {
        self.admit(&req)?;
        let r = req.into_inner();
        let key = parse_table(&r.parent).ok_or_else(|| {
            Status::invalid_argument(format!(
                "Invalid parent: '{}'; expected projects/PROJECT/datasets/DATASET/tables/TABLE",
                r.parent
            ))
        })?;
        let ty = r
            .write_stream
            .as_ref()
            .and_then(|w| StreamType::try_from(w.r#type).ok())
            .unwrap_or(StreamType::Unspecified);
        if ty == StreamType::Unspecified {
            return Err(Status::invalid_argument(
                "write_stream.type must be COMMITTED, PENDING or BUFFERED",
            ));
        }
        let mut st = self.shared.state();
        if !st.tables.contains_key(&key) {
            return Err(table_not_found(&key));
        }
        st.grpc.next_id += 1;
        let name = format!("{}/streams/s{:06}", table_path(&key), st.grpc.next_id);
        st.grpc.streams.insert(
            name.clone(),
            WriteStream {
                table: key,
                ty,
                created: SystemTime::now(),
                committed: None,
                held: Default::default(),
                len: 0,
                flushed: 0,
                finalized: false,
            },
        );
        st.grpc.stats.streams_created += 1;
        // CreateWriteStream answers the FULL view.
        Self::stream_resource(&st, &name, WriteStreamView::Full).map(Response::new)
    }

    type AppendRowsStream = ReceiverStream<Result<pb::AppendRowsResponse, Status>>;

    async fn append_rows(
        &self,
        req: Request<Streaming<pb::AppendRowsRequest>>,
    ) -> Result<Response<Self::AppendRowsStream>, Status> {
        self.admit(&req)?;
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        self.shared.state().grpc.stats.connections += 1;
        tokio::spawn(super::append::connection(
            Arc::clone(&self.shared),
            inbound,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_write_stream(
        &self,
        req: Request<pb::GetWriteStreamRequest>,
    ) -> Result<Response<pb::WriteStream>, Status> {
        self.admit(&req)?;
        let r = req.into_inner();
        let view = WriteStreamView::try_from(r.view).unwrap_or(WriteStreamView::Basic);
        let st = self.shared.state();
        Self::stream_resource(&st, &r.name, view).map(Response::new)
    }

    async fn finalize_write_stream(
        &self,
        req: Request<pb::FinalizeWriteStreamRequest>,
    ) -> Result<Response<pb::FinalizeWriteStreamResponse>, Status> {
        self.admit(&req)?;
        let name = req.into_inner().name;
        let (key, id) =
            parse_stream(&name).ok_or_else(|| Status::invalid_argument(bad_stream_name(&name)))?;
        let mut st = self.shared.state();
        if !st.tables.contains_key(&key) {
            return Err(table_not_found(&key));
        }
        if id == "_default" {
            return Err(status(
                Code::InvalidArgument,
                format!("The default stream cannot be finalized. Entity: {name}"),
                Some((StorageErrorCode::InvalidStreamType, &name)),
            ));
        }
        let s = st
            .grpc
            .streams
            .get_mut(&name)
            .ok_or_else(|| stream_not_found(&name))?;
        s.finalized = true;
        Ok(Response::new(pb::FinalizeWriteStreamResponse {
            row_count: s.len,
        }))
    }

    async fn batch_commit_write_streams(
        &self,
        req: Request<pb::BatchCommitWriteStreamsRequest>,
    ) -> Result<Response<pb::BatchCommitWriteStreamsResponse>, Status> {
        self.admit(&req)?;
        let r = req.into_inner();
        let key = parse_table(&r.parent)
            .ok_or_else(|| Status::invalid_argument(format!("Invalid parent: '{}'", r.parent)))?;
        if r.write_streams.is_empty() {
            return Err(Status::invalid_argument("write_streams must not be empty"));
        }
        let mut st = self.shared.state();
        if !st.tables.contains_key(&key) {
            return Err(table_not_found(&key));
        }
        let mut errors = Vec::new();
        for name in &r.write_streams {
            let err = |code: StorageErrorCode, msg: String| pb::StorageError {
                code: code as i32,
                entity: name.clone(),
                error_message: msg,
            };
            match st.grpc.streams.get(name) {
                None => errors.push(err(
                    StorageErrorCode::StreamNotFound,
                    format!("Stream is not found: {name}"),
                )),
                Some(s) if s.table != key => errors.push(err(
                    StorageErrorCode::StreamNotFound,
                    format!("Stream {name} does not belong to {}", r.parent),
                )),
                Some(s) if s.ty != StreamType::Pending => errors.push(err(
                    StorageErrorCode::InvalidStreamType,
                    format!("Stream {name} is not a PENDING stream"),
                )),
                Some(s) if s.committed.is_some() => errors.push(err(
                    StorageErrorCode::StreamAlreadyCommitted,
                    format!("Stream {name} is already committed"),
                )),
                Some(s) if !s.finalized => errors.push(err(
                    StorageErrorCode::InvalidStreamState,
                    format!("Stream {name} is not finalized"),
                )),
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            // BigQuery commits all or nothing: no commit_time when any stream failed.
            return Ok(Response::new(pb::BatchCommitWriteStreamsResponse {
                commit_time: None,
                stream_errors: errors,
            }));
        }
        let now = SystemTime::now();
        let mut moved = Vec::new();
        for name in &r.write_streams {
            if let Some(s) = st.grpc.streams.get_mut(name) {
                s.committed = Some(now);
                moved.extend(s.held.drain(..));
            }
        }
        store(&mut st, &key, moved, true);
        Ok(Response::new(pb::BatchCommitWriteStreamsResponse {
            commit_time: Some(timestamp(now)),
            stream_errors: Vec::new(),
        }))
    }

    async fn flush_rows(
        &self,
        req: Request<pb::FlushRowsRequest>,
    ) -> Result<Response<pb::FlushRowsResponse>, Status> {
        self.admit(&req)?;
        let r = req.into_inner();
        let name = r.write_stream;
        let offset = r.offset.unwrap_or(0);
        let (key, _) =
            parse_stream(&name).ok_or_else(|| Status::invalid_argument(bad_stream_name(&name)))?;
        let mut st = self.shared.state();
        if !st.tables.contains_key(&key) {
            return Err(table_not_found(&key));
        }
        let s = st
            .grpc
            .streams
            .get_mut(&name)
            .ok_or_else(|| stream_not_found(&name))?;
        if s.ty != StreamType::Buffered {
            return Err(status(
                Code::InvalidArgument,
                format!("FlushRows is only for BUFFERED streams. Entity: {name}"),
                Some((StorageErrorCode::InvalidStreamType, &name)),
            ));
        }
        if offset < 0 || offset >= s.len {
            return Err(status(
                Code::OutOfRange,
                format!(
                    "The offset is beyond stream, expected offset < {}, received {offset}. \
                     Entity: {name}",
                    s.len
                ),
                Some((StorageErrorCode::OffsetOutOfRange, &name)),
            ));
        }
        let n = (offset + 1 - s.flushed).max(0) as usize;
        let moved: Vec<Appended> = s.held.drain(..n).collect();
        s.flushed += n as i64;
        store(&mut st, &key, moved, true);
        Ok(Response::new(pb::FlushRowsResponse { offset }))
    }
}

/// Appends rows to a table (`from_held`: they were counted as held before).
pub(crate) fn store(st: &mut State, key: &TableKey, rows: Vec<Appended>, from_held: bool) {
    let n = rows.len() as u64;
    if let Some(t) = st.tables.get_mut(key) {
        for a in rows {
            t.bytes += a.bytes;
            t.rows.push(a.row);
        }
        if n > 0 {
            t.modified_ms = now_ms();
        }
    }
    st.grpc.stats.rows_stored += n;
    if from_held {
        st.grpc.stats.rows_held = st.grpc.stats.rows_held.saturating_sub(n);
    }
}
