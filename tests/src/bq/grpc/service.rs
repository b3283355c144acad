//! The `BigQueryWrite` service: the RPCs, `AppendRows` connections, and BigQuery's error shapes
//! (in-band `google.rpc.Status` with `StorageError` details, or a status ending the stream).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prost::Message;
use prost_reflect::MessageDescriptor;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::pb::google::rpc;
use super::pb::storage::append_rows_request::Rows;
use super::pb::storage::append_rows_response::{AppendResult, Response as Outcome};
use super::pb::storage::big_query_write_server::{BigQueryWrite, BigQueryWriteServer};
use super::pb::storage::row_error::RowErrorCode;
use super::pb::storage::storage_error::StorageErrorCode;
use super::pb::storage::table_field_schema::{Mode as PbMode, Type as PbType};
use super::pb::storage::{self as pb, WriteStreamView};
use super::{
    parse_stream, parse_table, rows, table_path, GrpcFault, StreamType, WriteStream,
    MAX_APPEND_BYTES,
};
use crate::bq::schema::{ColMode, ColType, Column};
use crate::bq::{now_ms, Shared, State, StoredRow, TableKey};

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
fn rpc_status(code: Code, message: &str, storage: Option<(StorageErrorCode, &str)>) -> rpc::Status {
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
fn status(code: Code, message: String, storage: Option<(StorageErrorCode, &str)>) -> Status {
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

fn table_not_found(k: &TableKey) -> Status {
    let path = table_path(k);
    status(
        Code::NotFound,
        format!("Requested entity was not found. Entity: {path}"),
        Some((StorageErrorCode::TableNotFound, &path)),
    )
}

fn stream_not_found(name: &str) -> Status {
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
        if self.shared.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("The service is currently unavailable."));
        }
        Ok(())
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

fn bad_stream_name(name: &str) -> String {
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
        tokio::spawn(connection(Arc::clone(&self.shared), inbound, tx));
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
        let moved: Vec<StoredRow> = s.held.drain(..n).collect();
        s.flushed += n as i64;
        store(&mut st, &key, moved, true);
        Ok(Response::new(pb::FlushRowsResponse { offset }))
    }
}

/// Appends rows to a table (`from_held`: they were counted as held before).
fn store(st: &mut State, key: &TableKey, rows: Vec<StoredRow>, from_held: bool) {
    let n = rows.len() as u64;
    if let Some(t) = st.tables.get_mut(key) {
        for r in rows {
            t.bytes += serde_json::to_string(&r.json).map_or(0, |s| s.len() as u64);
            t.rows.push(r);
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

/// What one `AppendRows` connection remembers between requests.
#[derive(Default)]
struct Connection {
    stream: Option<String>,
    descriptor: Option<MessageDescriptor>,
    /// The table schema the writer was last told about (for `updated_schema`).
    schema_seen: Option<pb::TableSchema>,
}

/// What to do after one request.
enum Step {
    Reply(Box<pb::AppendRowsResponse>),
    /// End the stream: with this status, or cleanly (`None`).
    End(Option<Status>),
}

async fn connection(
    shared: Arc<Shared>,
    mut inbound: Streaming<pb::AppendRowsRequest>,
    tx: mpsc::Sender<Result<pb::AppendRowsResponse, Status>>,
) {
    let mut conn = Connection::default();
    let mut kill = shared.kill.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let next = tokio::select! {
            m = inbound.message() => m,
            _ = kill.changed() => Err(Status::unavailable("The connection was closed by the server.")),
            _ = shutdown.wait_for(|s| *s) => Err(Status::unavailable("The server is shutting down.")),
        };
        let req = match next {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        match conn.handle(&shared, req).await {
            Step::Reply(resp) => {
                if tx.send(Ok(*resp)).await.is_err() {
                    return;
                }
            }
            Step::End(Some(s)) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
            Step::End(None) => return,
        }
    }
}

fn in_band(stream: &str, code: Code, message: String, storage: Option<StorageErrorCode>) -> Step {
    let e = rpc_status(code, &message, storage.map(|c| (c, stream)));
    Step::Reply(Box::new(pb::AppendRowsResponse {
        response: Some(Outcome::Error(e)),
        write_stream: stream.to_string(),
        ..Default::default()
    }))
}

impl Connection {
    async fn handle(&mut self, shared: &Shared, req: pb::AppendRowsRequest) -> Step {
        let fault = {
            let mut f = shared.faults();
            let fault = f.next_grpc();
            let mut st = shared.state();
            st.grpc.stats.append_requests += 1;
            if fault.is_some() {
                st.grpc.stats.faults_injected += 1;
            }
            fault
        };
        let ack_lost = match fault {
            Some(GrpcFault::Slow(d)) => {
                tokio::time::sleep(d).await;
                false
            }
            Some(GrpcFault::Unavailable) => {
                return Step::End(Some(Status::unavailable(
                    "Injected: the service is currently unavailable.",
                )))
            }
            Some(GrpcFault::Internal) => {
                return Step::End(Some(Status::internal("Injected: internal error.")))
            }
            Some(GrpcFault::ResourceExhausted) => {
                return Step::End(Some(Status::resource_exhausted(
                    "Injected: Exceeds 'AppendRows throughput' quota, user_id: evlog-test",
                )))
            }
            Some(GrpcFault::StreamClosed) => return Step::End(None),
            Some(GrpcFault::AckLost) => true,
            None => false,
        };
        let size = rows::request_size(&req);
        if size > shared.cfg.max_request_bytes.min(MAX_APPEND_BYTES) {
            return Step::End(Some(Status::invalid_argument(format!(
                "AppendRows request too large: {size} limit {MAX_APPEND_BYTES}"
            ))));
        }
        if !req.write_stream.is_empty() && self.stream.as_deref() != Some(&req.write_stream) {
            self.stream = Some(req.write_stream.clone());
            self.schema_seen = None;
        }
        let Some(name) = self.stream.clone() else {
            return Step::End(Some(Status::invalid_argument(
                "write_stream must be set in the first request of a connection",
            )));
        };
        let Some((key, id)) = parse_stream(&name) else {
            return Step::End(Some(Status::invalid_argument(bad_stream_name(&name))));
        };
        let Some(Rows::ProtoRows(data)) = req.rows else {
            return Step::End(Some(Status::invalid_argument(
                "rows must be proto_rows (the test server takes no Arrow rows)",
            )));
        };
        if let Some(d) = data
            .writer_schema
            .as_ref()
            .and_then(|s| s.proto_descriptor.as_ref())
        {
            match rows::message_from_descriptor(d) {
                Ok(m) => self.descriptor = Some(m),
                Err(e) => return Step::End(Some(Status::invalid_argument(e))),
            }
        }
        let Some(desc) = self.descriptor.clone() else {
            return Step::End(Some(Status::invalid_argument(
                "writer_schema.proto_descriptor must be set in the first request of a connection",
            )));
        };
        let serialized = data.rows.map(|r| r.serialized_rows).unwrap_or_default();
        let is_default = id == "_default";

        let mut st = shared.state();
        let Some(table) = st.tables.get_mut(&key) else {
            drop(st);
            return Step::End(Some(table_not_found(&key)));
        };
        let (columns, _) = table.insert_columns(Instant::now());
        let current = table_schema(&table.columns);
        let updated = match &self.schema_seen {
            None => {
                self.schema_seen = Some(current);
                None
            }
            Some(seen) if *seen != current => {
                self.schema_seen = Some(current.clone());
                Some(current)
            }
            Some(_) => None,
        };
        // Stream state and offset: checked before the rows, as BigQuery does.
        let start = if is_default {
            if let Some(o) = req.offset {
                return in_band(
                    &name,
                    Code::InvalidArgument,
                    format!(
                        "Offset is not supported on the default stream (got {o}). Entity: {name}"
                    ),
                    None,
                );
            }
            None
        } else {
            let Some((len, finalized)) = st
                .grpc
                .streams
                .get(&name)
                .filter(|s| s.table == key)
                .map(|s| (s.len, s.finalized))
            else {
                drop(st);
                return Step::End(Some(stream_not_found(&name)));
            };
            if finalized {
                return in_band(
                    &name,
                    Code::InvalidArgument,
                    format!("Stream is finalized. Entity: {name}"),
                    Some(StorageErrorCode::StreamFinalized),
                );
            }
            match req.offset {
                Some(o) if o < len => {
                    st.grpc.stats.offset_already_exists += 1;
                    return in_band(
                        &name,
                        Code::AlreadyExists,
                        format!(
                            "The offset is within stream, expected offset {len}, received {o}. \
                             Entity: {name}"
                        ),
                        Some(StorageErrorCode::OffsetAlreadyExists),
                    );
                }
                Some(o) if o > len => {
                    st.grpc.stats.offset_out_of_range += 1;
                    return in_band(
                        &name,
                        Code::OutOfRange,
                        format!(
                            "The offset is beyond stream, expected offset {len}, received {o}. \
                             Entity: {name}"
                        ),
                        Some(StorageErrorCode::OffsetOutOfRange),
                    );
                }
                _ => Some(len),
            }
        };
        if let Err(m) = rows::check_descriptor(&desc, &columns) {
            let storage = m
                .extra_field
                .then_some(StorageErrorCode::SchemaMismatchExtraFields);
            return in_band(
                &name,
                Code::InvalidArgument,
                format!("{} Entity: {name}", m.message),
                storage,
            );
        }
        let mut decoded = Vec::with_capacity(serialized.len());
        let mut row_errors = Vec::new();
        for (i, b) in serialized.iter().enumerate() {
            match rows::decode_row(&desc, &columns, b) {
                Ok(json) => decoded.push(StoredRow {
                    insert_id: None,
                    json,
                }),
                Err(message) => row_errors.push(pb::RowError {
                    index: i as i64,
                    code: RowErrorCode::FieldsError as i32,
                    message,
                }),
            }
        }
        if !row_errors.is_empty() {
            st.grpc.stats.requests_with_row_errors += 1;
            let e = rpc_status(
                Code::InvalidArgument,
                &format!(
                    "Errors found while processing rows. Please refer to the row_errors field \
                     for details. The list may not be complete because of the size limitations. \
                     Entity: {name}"
                ),
                None,
            );
            return Step::Reply(Box::new(pb::AppendRowsResponse {
                response: Some(Outcome::Error(e)),
                row_errors,
                updated_schema: updated,
                write_stream: name,
            }));
        }
        let n = decoded.len() as i64;
        let held = match st.grpc.streams.get_mut(&name) {
            Some(s) => {
                s.len += n;
                match s.ty {
                    StreamType::Pending | StreamType::Buffered => {
                        s.held.extend(decoded.drain(..));
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        };
        if held {
            st.grpc.stats.rows_held += n as u64;
        } else {
            store(&mut st, &key, decoded, false);
        }
        drop(st);
        if ack_lost {
            return Step::End(Some(Status::unavailable(
                "Injected: the connection was lost after the rows were stored.",
            )));
        }
        Step::Reply(Box::new(pb::AppendRowsResponse {
            response: Some(Outcome::AppendResult(AppendResult { offset: start })),
            row_errors: Vec::new(),
            updated_schema: updated,
            write_stream: name,
        }))
    }
}
