//! One `AppendRows` connection: requests handled in order, one response each. Rows are decoded
//! outside the server's lock; the offset check and the store happen under it, together.

use std::sync::Arc;
use std::time::Instant;

use prost_reflect::MessageDescriptor;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

use super::pb::storage as pb;
use super::pb::storage::append_rows_request::Rows;
use super::pb::storage::append_rows_response::{AppendResult, Response as Outcome};
use super::pb::storage::row_error::RowErrorCode;
use super::pb::storage::storage_error::StorageErrorCode;
use super::service::{
    bad_stream_name, rpc_status, status, store, stream_not_found, table_not_found, table_schema,
    unavailable_now,
};
use super::{parse_stream, rows, Appended, GrpcFault, StreamType, MAX_APPEND_BYTES};
use crate::bq::{Shared, StoredRow};

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

pub(crate) async fn connection(
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
            _ = kill.changed() => {
                Err(Status::unavailable("The connection was closed by the server."))
            }
            _ = shutdown.wait_for(|s| *s) => {
                Err(Status::unavailable("The server is shutting down."))
            }
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
        if let Some(s) = unavailable_now(shared) {
            return Step::End(Some(s));
        }
        // The fault lock is released before the state lock is taken (the admin endpoint takes
        // them the other way round).
        let fault = shared.faults().next_grpc();
        {
            let mut st = shared.state();
            st.grpc.stats.append_requests += 1;
            if fault.is_some() {
                st.grpc.stats.faults_injected += 1;
            }
        }
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
        {
            let rows = match &req.rows {
                Some(Rows::ProtoRows(d)) => d.rows.as_ref().map_or(0, |r| r.serialized_rows.len()),
                None => 0,
            };
            let mut st = shared.state();
            st.grpc.stats.bytes_received += size as u64;
            st.grpc.stats.rows_received += rows as u64;
        }
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

        // Phase 1, under the lock: the columns rows are checked against, and updated_schema.
        let (columns, updated) = {
            let mut st = shared.state();
            let Some(table) = st.tables.get_mut(&key) else {
                drop(st);
                return Step::End(Some(table_not_found(&key)));
            };
            let (columns, _) = table.insert_columns(Instant::now());
            // The schema rows are checked against: a change still propagating is not announced.
            let current = table_schema(&columns);
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
            (columns, updated)
        };
        // Decoding outside the lock, so that connections decode in parallel.
        let checked = rows::check_descriptor(&desc, &columns).map(|()| {
            let mut decoded = Vec::with_capacity(serialized.len());
            let mut row_errors = Vec::new();
            for (i, b) in serialized.iter().enumerate() {
                match rows::decode_row(&desc, &columns, b) {
                    Ok(json) => decoded.push(Appended {
                        row: StoredRow {
                            insert_id: None,
                            json,
                        },
                        bytes: b.len() as u64,
                    }),
                    Err(message) => row_errors.push(pb::RowError {
                        index: i as i64,
                        code: RowErrorCode::FieldsError as i32,
                        message,
                    }),
                }
            }
            (decoded, row_errors)
        });

        // Phase 2, under the lock: the stream's state and offset (reported before any row
        // problem, as BigQuery does), then the rows stored atomically with the offset check.
        let mut st = shared.state();
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
                Some(o) if o != len => {
                    let (code, storage, where_) = if o < len {
                        st.grpc.stats.offset_already_exists += 1;
                        (
                            Code::AlreadyExists,
                            StorageErrorCode::OffsetAlreadyExists,
                            "within",
                        )
                    } else {
                        st.grpc.stats.offset_out_of_range += 1;
                        (
                            Code::OutOfRange,
                            StorageErrorCode::OffsetOutOfRange,
                            "beyond",
                        )
                    };
                    return in_band(
                        &name,
                        code,
                        format!(
                            "The offset is {where_} stream, expected offset {len}, received {o}. \
                             Entity: {name}"
                        ),
                        Some(storage),
                    );
                }
                _ => Some(len),
            }
        };
        let mut decoded = match checked {
            // BigQuery ends the connection on a writer schema that does not fit (its clients log
            // "Connection finished with error ... Input schema has more fields ...").
            Err(m) => {
                let storage = m
                    .extra_field
                    .then_some((StorageErrorCode::SchemaMismatchExtraFields, name.as_str()));
                return Step::End(Some(status(
                    Code::InvalidArgument,
                    format!("{} Entity: {name}", m.message),
                    storage,
                )));
            }
            Ok((_, row_errors)) if !row_errors.is_empty() => {
                st.grpc.stats.requests_with_row_errors += 1;
                let e = rpc_status(
                    Code::InvalidArgument,
                    &format!(
                        "Errors found while processing rows. Please refer to the row_errors \
                         field for details. The list may not be complete because of the size \
                         limitations. Entity: {name}"
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
            Ok((decoded, _)) => decoded,
        };
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
