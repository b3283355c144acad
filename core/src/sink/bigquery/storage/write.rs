//! Appending rows: the gRPC client, the pool of AppendRows streams, one job's retries and
//! outcomes (see the module documentation of `storage` for the contract).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    append_rows_request::{ProtoData, Rows},
    append_rows_response::Response,
    big_query_write_client::BigQueryWriteClient,
    storage_error::StorageErrorCode,
    AppendRowsRequest, AppendRowsResponse, ProtoRows, ProtoSchema,
};
use prost::Message as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::descriptor::Layout;
use super::encode::encode_row;
use super::positions::{fingerprint, Positions};
use super::streams::{authorized, CommittedStreams, Slot, Unsettled};
use crate::schema::evolve::fields_of_table;
use crate::sink::bigquery::config::{BigQueryConfig, REQUEST_LIMIT};
use crate::sink::bigquery::schema_sync::target_id;
use crate::sink::bigquery::sink::{BigQuerySink, Job, JobResult};
use crate::sink::http::{Attempts, Failure};
use crate::sink::{EncodedRow, SinkError, DEAD_LETTER_SCHEMA};

/// How long an AppendRows stream is reused before it is opened again (so its bearer token,
/// fixed when the stream opens, never outlives the token's hour).
const STREAM_MAX_AGE: Duration = Duration::from_secs(20 * 60);

/// Room kept in a request for everything but the rows (descriptor, names, framing).
const REQUEST_OVERHEAD: usize = 256 * 1024;

/// Table layouts by `(dataset, base table)`.
type Layouts = HashMap<(String, String), Arc<Layout>>;

/// One open AppendRows call.
struct Conn {
    tx: mpsc::Sender<AppendRowsRequest>,
    rx: tonic::Streaming<AppendRowsResponse>,
    /// The bearer token it was opened with.
    token: Option<String>,
    opened: Instant,
}

/// The Storage Write API client of a BigQuery sink.
pub(crate) struct StorageWriter {
    client: BigQueryWriteClient<Channel>,
    /// Streams not in use, reused by the next request.
    idle: Mutex<Vec<Conn>>,
    /// Layouts by `(dataset, base table)`, with the address of the catalog they were made from.
    layouts: Mutex<(usize, Layouts)>,
    dead_letter: Arc<Layout>,
    /// Idle COMMITTED streams (`exactly_once`).
    pub(super) committed: CommittedStreams,
    /// Rows last sent to a COMMITTED stream with no answer (`exactly_once`).
    unsettled: Unsettled,
    /// The positions file (`exactly_once` with `positions_dir`).
    positions: Option<Positions>,
}

impl StorageWriter {
    /// A handle on the client (clones share the channel).
    pub(super) fn client(&self) -> BigQueryWriteClient<Channel> {
        self.client.clone()
    }

    /// The client over a lazily connected channel to `storage_url` (TLS for `https://`).
    /// Must run inside the sink's runtime: the channel's task is spawned on it.
    pub(crate) fn new(cfg: &BigQueryConfig) -> Result<Self, SinkError> {
        let bad = |e: String| SinkError::Config(format!("sink.bigquery.storage_url: {e}"));
        let mut endpoint = Endpoint::from_shared(cfg.storage_url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if cfg.storage_url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let limit = (REQUEST_LIMIT as usize) * 2;
        let mut client = BigQueryWriteClient::new(endpoint.connect_lazy())
            .max_encoding_message_size(limit)
            .max_decoding_message_size(limit)
            .accept_compressed(CompressionEncoding::Gzip);
        if cfg.gzip {
            // gRPC message compression, which BigQuery accepts: rows compress several-fold.
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let unsettled = Unsettled::default();
        let positions = match (&cfg.positions_dir, cfg.exactly_once) {
            (Some(dir), true) => {
                let (positions, found) = Positions::open(dir).map_err(|e| {
                    SinkError::Config(format!(
                        "sink.bigquery.positions_dir {}: {e}",
                        dir.display()
                    ))
                })?;
                unsettled.load(found);
                Some(positions)
            }
            _ => None,
        };
        let dead_letter = serde_json::from_str::<Value>(DEAD_LETTER_SCHEMA)
            .map_err(|e| SinkError::Config(e.to_string()))
            .and_then(|v| Layout::from_json(&v).map_err(|e| SinkError::Config(e.to_string())))?;
        Ok(Self {
            client,
            idle: Mutex::new(Vec::new()),
            layouts: Mutex::new((0, HashMap::new())),
            dead_letter: Arc::new(dead_letter),
            committed: CommittedStreams::default(),
            unsettled,
            positions,
        })
    }

    /// Sends one request and waits for its answer, on an idle stream or a new one.
    async fn append(
        &self,
        req: AppendRowsRequest,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<AppendRowsResponse, Failure> {
        let routing = format!("write_stream={}", req.write_stream);
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|c| c.opened.elapsed() < STREAM_MAX_AGE && c.token == token);
            idle.pop()
        };
        if let Some(conn) = reused {
            match self.exchange(conn, req.clone(), timeout).await {
                Ok(resp) => return Ok(resp),
                // An idle stream the server had closed: not this request's fault, try a fresh
                // stream at once.
                Err((f, true)) if f.kind == "stream_closed" => {}
                Err((f, _)) => return Err(f),
            }
        }
        let (tx, rx) = mpsc::channel::<AppendRowsRequest>(2);
        // The first request goes in before the call: a server may answer the call's headers
        // only once it has a message.
        tx.send(req)
            .await
            .map_err(|_| Failure::retry("transport", "AppendRows: channel closed".into(), None))?;
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let request = authorized(outbound, token.as_deref(), &routing)?;
        let mut client = self.client.clone();
        let opened = tokio::time::timeout(timeout, client.append_rows(request))
            .await
            .map_err(|_| {
                Failure::retry("timeout", "AppendRows: no answer to the call".into(), None)
            })?
            .map_err(|s| status_failure(&s))?;
        let conn = Conn {
            tx,
            rx: opened.into_inner(),
            token,
            opened: Instant::now(),
        };
        self.read(conn, timeout).await.map_err(|(f, _)| f)
    }

    /// Sends `req` on an open stream and reads its answer; on failure, whether the stream broke
    /// before answering (`true`).
    async fn exchange(
        &self,
        conn: Conn,
        req: AppendRowsRequest,
        timeout: Duration,
    ) -> Result<AppendRowsResponse, (Failure, bool)> {
        if conn.tx.send(req).await.is_err() {
            return Err((closed(), true));
        }
        self.read(conn, timeout).await
    }

    /// Reads the next answer; a stream that answered goes back to the idle pool.
    async fn read(
        &self,
        mut conn: Conn,
        timeout: Duration,
    ) -> Result<AppendRowsResponse, (Failure, bool)> {
        match tokio::time::timeout(timeout, conn.rx.message()).await {
            Err(_) => Err((
                Failure::retry("timeout", "AppendRows: no answer in time".into(), None),
                false,
            )),
            Ok(Ok(Some(resp))) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
                Ok(resp)
            }
            Ok(Ok(None)) => Err((closed(), true)),
            Ok(Err(s)) => Err((status_failure(&s), true)),
        }
    }
}

/// The `kind` of a failure whose writer schema has columns the table lacks
/// (`SCHEMA_MISMATCH_EXTRA_FIELDS`).
const SCHEMA_EXTRA: &str = "schema_mismatch";

fn closed() -> Failure {
    Failure::retry(
        "stream_closed",
        "AppendRows: the server closed the stream before answering".into(),
        None,
    )
}

/// A gRPC status as a [`Failure`]: UNAVAILABLE, INTERNAL, ABORTED, DEADLINE_EXCEEDED and
/// RESOURCE_EXHAUSTED are retried, as are UNKNOWN and CANCELLED (a connection that broke
/// mid-call); NOT_FOUND marks the table missing.
fn code_failure(code: tonic::Code, message: &str, storage: Option<StorageErrorCode>) -> Failure {
    use tonic::Code as C;
    let kind = match code {
        C::Unavailable => "grpc_unavailable",
        C::Internal => "grpc_internal",
        C::Aborted => "grpc_aborted",
        C::DeadlineExceeded => "grpc_deadline_exceeded",
        C::ResourceExhausted => "grpc_resource_exhausted",
        C::NotFound => "grpc_not_found",
        C::InvalidArgument => "grpc_invalid_argument",
        C::PermissionDenied | C::Unauthenticated => "grpc_permission",
        C::AlreadyExists => "grpc_already_exists",
        C::OutOfRange => "grpc_out_of_range",
        C::Unknown | C::Cancelled => "transport",
        _ => "grpc_other",
    };
    let retryable = matches!(
        code,
        C::Unavailable
            | C::Internal
            | C::Aborted
            | C::DeadlineExceeded
            | C::ResourceExhausted
            | C::Unknown
            | C::Cancelled
    );
    let kind = if storage == Some(StorageErrorCode::SchemaMismatchExtraFields)
        || (code == C::InvalidArgument && message.contains("extra fields"))
    {
        SCHEMA_EXTRA
    } else {
        kind
    };
    let detail = storage
        .map(|s| format!(" [{}]", s.as_str_name()))
        .unwrap_or_default();
    let message = format!("Storage Write {code:?}{detail}: {message}");
    let mut f = if retryable {
        Failure::retry(kind, message, None)
    } else {
        Failure::fatal(kind, message)
    };
    f.not_found = code == C::NotFound || storage == Some(StorageErrorCode::TableNotFound);
    f
}

/// A call's final status as a [`Failure`].
pub(super) fn status_failure(s: &tonic::Status) -> Failure {
    let details = gcp_bigquery_client::google::rpc::Status::decode(s.details())
        .map(|st| storage_error(&st.details))
        .unwrap_or_default();
    code_failure(s.code(), s.message(), details)
}

/// The `StorageError` code among a status's details, if any.
pub(super) fn storage_error(details: &[prost_types::Any]) -> Option<StorageErrorCode> {
    details
        .iter()
        .filter(|a| {
            a.type_url
                .ends_with("google.cloud.bigquery.storage.v1.StorageError")
        })
        .find_map(|a| {
            gcp_bigquery_client::google::cloud::bigquery::storage::v1::StorageError::decode(
                a.value.as_slice(),
            )
            .ok()
        })
        .and_then(|e| StorageErrorCode::try_from(e.code).ok())
}

/// An error answered inside the stream (the stream stays usable).
pub(super) fn answer_failure(st: &gcp_bigquery_client::google::rpc::Status) -> Failure {
    code_failure(
        tonic::Code::from_i32(st.code),
        &st.message,
        storage_error(&st.details),
    )
}

/// A request's rows, encoded, with the rows they came from.
struct Encoded {
    rows: Vec<EncodedRow>,
    bytes: Vec<Vec<u8>>,
    size: usize,
}

impl BigQuerySink {
    /// The layout rows of `job` are encoded with: the dead-letter schema, the catalog's schema
    /// of its base table, or the base table's schema read from BigQuery.
    async fn layout_for(&self, job: &Job) -> Result<Arc<Layout>, Failure> {
        let w = self.storage.as_ref().ok_or_else(|| {
            Failure::fatal("config", "the Storage Write client is missing".into())
        })?;
        if job.dead_letter {
            return Ok(w.dead_letter.clone());
        }
        let key = (job.dataset.clone(), job.base_table.clone());
        let catalog_id = Arc::as_ptr(&self.catalog) as usize;
        {
            let mut cache = w.layouts.lock().unwrap_or_else(|e| e.into_inner());
            if cache.0 != catalog_id {
                // The schemas were reloaded: every descriptor is made again.
                *cache = (catalog_id, HashMap::new());
            }
            if let Some(l) = cache.1.get(&key) {
                return Ok(l.clone());
            }
        }
        let layout = match self.catalog.get(&key) {
            Some((fields, _)) => Layout::from_json(fields),
            None => {
                let url = format!(
                    "{}/projects/{}/datasets/{}/tables/{}",
                    self.cfg.base_url.trim_end_matches('/'),
                    self.cfg.project,
                    job.dataset,
                    job.base_table
                );
                let table = self
                    .table_call(reqwest::Method::GET, &url, None)
                    .await?
                    .ok_or_else(|| {
                        let mut f = Failure::fatal(
                            "grpc_not_found",
                            format!(
                                "table {}.{} does not exist and no schema file maps to it",
                                job.dataset, job.base_table
                            ),
                        );
                        f.not_found = true;
                        f
                    })?;
                Layout::from_json(&Value::Array(fields_of_table(&table)))
            }
        }
        .map_err(|e| {
            Failure::fatal("config", format!("{}.{}: {e}", job.dataset, job.base_table))
        })?;
        let layout = Arc::new(layout);
        w.layouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .insert(key, layout.clone());
        Ok(layout)
    }

    /// Creates day shard `shard` of base table `base` if it is missing, with the base table's
    /// schema as BigQuery has it (what insertAll's `templateSuffix` does); a missing base table
    /// is created first with `create_tables`. Once per shard and process.
    async fn ensure_shard(&self, dataset: &str, base: &str, shard: &str) -> Result<(), SinkError> {
        let key = (dataset.to_string(), shard.to_string());
        if self.is_ensured(&key) {
            return Ok(());
        }
        let root = self.cfg.base_url.trim_end_matches('/');
        let project = &self.cfg.project;
        let tables = format!("{root}/projects/{project}/datasets/{dataset}/tables");
        let base_url = format!("{tables}/{base}");
        let get_base = || self.table_call(reqwest::Method::GET, &base_url, None);
        let mut table = get_base().await.map_err(Failure::into_error)?;
        if table.is_none() && self.cfg.create_tables {
            self.ensure_table(dataset, base, base).await?;
            table = get_base().await.map_err(Failure::into_error)?;
        }
        let Some(table) = table else {
            return Err(SinkError::Remote {
                kind: "grpc_not_found",
                message: format!(
                    "table {dataset}.{base} does not exist, so its day shard {shard} cannot be \
                     made (create_tables is off)"
                ),
            });
        };
        let body = serde_json::json!({
            "kind": "bigquery#table",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": shard},
            "schema": {"fields": fields_of_table(&table)},
        });
        self.create(&tables, &body)
            .await
            .map_err(|f| SinkError::Remote {
                kind: f.kind,
                message: format!("creating day shard {dataset}.{shard}: {}", f.message),
            })?;
        self.set_ensured(key, true);
        Ok(())
    }

    /// A layout from an answer's `updated_schema`, when it replaces `current`: only for tables
    /// no schema file describes (their layout came from BigQuery; the schema files' layout is
    /// what evlog's rows hold, and a table that grew still takes it).
    fn take_updated_schema(
        &self,
        job: &Job,
        resp: &AppendRowsResponse,
        current: &Layout,
    ) -> Option<Arc<Layout>> {
        let updated = resp.updated_schema.as_ref()?;
        let key = (job.dataset.clone(), job.base_table.clone());
        if job.dead_letter || self.catalog.contains_key(&key) {
            return None;
        }
        let newer = Layout::from_proto(updated).ok()?;
        if newer == *current {
            return None;
        }
        let newer = Arc::new(newer);
        if let Some(w) = &self.storage {
            w.layouts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .insert(key, newer.clone());
        }
        Some(newer)
    }

    /// Sends `job.rows` through the Storage Write API until delivered, rejected or out of
    /// attempts (the `_default` stream).
    pub(in crate::sink::bigquery) async fn run_storage_job(&self, mut job: Job) -> JobResult {
        let mut out = JobResult::default();
        let key = (job.dataset.clone(), job.base_table.clone());
        let target = target_id(&job.base_table, job.suffix.as_deref());
        if !job.dead_letter {
            self.note_written(&key, &target);
        }
        let mut attempts = Attempts::new(&self.retry, self.probe()).watching(&self.stop);
        let layout = match attempts.attempt(self.layout_for(&job)).await {
            Ok(l) => l,
            Err(f) => {
                out.attempt_errors.push(f.kind);
                out.failed = job.rows;
                out.error = Some(f.into_error());
                return out;
            }
        };
        // Rows that cannot be encoded are refused here, with the reason.
        let (encoded, refused) = encode_all(&layout, std::mem::take(&mut job.rows));
        out.rejected.extend(refused);
        // A day shard is a table of its own: made from the base table's schema before rows go
        // to it (insertAll's templateSuffix does that in BigQuery; the Storage Write API does not).
        if target != job.base_table {
            let made = attempts
                .attempt(async {
                    // As a Failure only so the shutdown deadline bounds it too.
                    Ok::<_, Failure>(
                        self.ensure_shard(&job.dataset, &job.base_table, &target)
                            .await,
                    )
                })
                .await
                .unwrap_or_else(|f| Err(f.into_error()));
            if let Err(e) = made {
                out.failed = encoded.rows;
                out.error = Some(e);
                return out;
            }
        }
        for (part, known_slot) in self.requests(encoded) {
            let remembered = known_slot.is_some();
            let slot = match known_slot {
                Some(slot) => Ok(slot),
                None => self.slot_for(&job.dataset, &target, &mut attempts).await,
            };
            let slot = match slot {
                Ok(slot) => slot,
                Err(f) => {
                    out.attempt_errors.push(f.kind);
                    out.failed.extend(part.rows);
                    out.error = Some(f.into_error());
                    continue;
                }
            };
            let mut slot = slot;
            let (r, known) = self
                .append_until_done(
                    &job,
                    &mut slot,
                    remembered,
                    layout.clone(),
                    part,
                    &mut attempts,
                )
                .await;
            if let (Some(w), Some(_)) = (&self.storage, slot.next) {
                // A remembered slot points into the middle of an old stream (other runs may
                // follow it there): it never goes back to the pool.
                if known && !remembered {
                    w.committed.put(&job.dataset, &target, slot);
                } else if !r.failed.is_empty() {
                    w.unsettled
                        .remember(r.failed.iter().map(|r| r.insert_id.as_str()), slot);
                }
            }
            out.delivered += r.delivered;
            out.rejected.extend(r.rejected);
            out.failed.extend(r.failed);
            out.retried += r.retried;
            out.attempt_errors.extend(r.attempt_errors);
            if r.error.is_some() {
                out.error = r.error;
            }
        }
        out
    }

    /// A job's encoded rows cut into requests: with `exactly_once`, runs of rows this writer
    /// sent before without learning their fate go again alone, to their stream and offset
    /// ([`Unsettled`]); the rest is cut by size.
    fn requests(&self, encoded: Encoded) -> Vec<(Encoded, Option<Slot>)> {
        let Some(w) = self.storage.as_ref().filter(|_| self.cfg.exactly_once) else {
            return split_encoded(encoded)
                .into_iter()
                .map(|e| (e, None))
                .collect();
        };
        let ids: Vec<&str> = encoded.rows.iter().map(|r| r.insert_id.as_str()).collect();
        let runs = w.unsettled.carve(&ids);
        if let [(_, None)] = runs.as_slice() {
            return split_encoded(encoded)
                .into_iter()
                .map(|e| (e, None))
                .collect();
        }
        let mut rows = encoded.rows.into_iter();
        let mut bytes = encoded.bytes.into_iter();
        let mut out = Vec::new();
        for (range, slot) in runs {
            let n = range.len();
            let part_bytes: Vec<Vec<u8>> = bytes.by_ref().take(n).collect();
            let part = Encoded {
                size: part_bytes.iter().map(|b| b.len() + 8).sum(),
                rows: rows.by_ref().take(n).collect(),
                bytes: part_bytes,
            };
            match slot {
                Some(slot) => out.push((part, Some(slot))),
                None => out.extend(split_encoded(part).into_iter().map(|e| (e, None))),
            }
        }
        out
    }

    /// The stream a request to `table` goes to: `_default`, or with `exactly_once` an idle
    /// COMMITTED stream of this writer or a new one.
    async fn slot_for(
        &self,
        dataset: &str,
        table: &str,
        attempts: &mut Attempts<'_>,
    ) -> Result<Slot, Failure> {
        let project = &self.cfg.project;
        let Some(w) = self.storage.as_ref().filter(|_| self.cfg.exactly_once) else {
            return Ok(Slot::default_stream(project, dataset, table));
        };
        if let Some(slot) = w.committed.take(dataset, table) {
            return Ok(slot);
        }
        let parent = format!("projects/{project}/datasets/{dataset}/tables/{table}");
        loop {
            let made = attempts
                .attempt(async {
                    let token = self.tokens.token().await?;
                    w.create_committed(&parent, token.as_deref(), self.cfg.request_timeout)
                        .await
                })
                .await;
            match made {
                Ok(slot) => return Ok(slot),
                Err(f) => {
                    if !attempts.backoff(&f).await {
                        return Err(f);
                    }
                }
            }
        }
    }

    /// One request's rows, retried until delivered, rejected or out of attempts; and whether
    /// the stream's end is known afterwards (every attempt answered, or the rows confirmed), so
    /// that a COMMITTED stream may take more rows.
    async fn append_until_done(
        &self,
        job: &Job,
        slot: &mut Slot,
        remembered: bool,
        mut layout: Arc<Layout>,
        mut pending: Encoded,
        attempts: &mut Attempts<'_>,
    ) -> (JobResult, bool) {
        let target_table = target_id(&job.base_table, job.suffix.as_deref());
        let target = target_table.as_str();
        let mut out = JobResult::default();
        let Some(w) = self.storage.as_ref() else {
            out.failed = pending.rows;
            return (out, false);
        };
        let key = (job.dataset.clone(), job.base_table.clone());
        let mut bootstrapped = false;
        let mut synced = false;
        // The run and stream last written to the positions file.
        let mut journaled: Option<((String, u64), Slot)> = None;
        loop {
            if let (Some(positions), Some(_)) = (&w.positions, slot.next) {
                let run = run_key(&pending.rows);
                if journaled.as_ref() != Some(&(run.clone(), slot.clone())) {
                    // The rows before (row_errors: none stored) or the stream before
                    // (OUT_OF_RANGE: they are not in it) are not where that line says.
                    if let Some((old, _)) = journaled.take() {
                        positions.settled(&old);
                    }
                    if let Err(e) = positions.sending(&run, pending.rows.len(), slot) {
                        out.attempt_errors.push("positions");
                        out.failed = pending.rows;
                        out.error = Some(SinkError::Io {
                            op: "writing the positions file in",
                            path: self.cfg.positions_dir.clone().unwrap_or_default(),
                            source: e,
                        });
                        return (out, false);
                    }
                    journaled = Some((run, slot.clone()));
                }
            }
            let req = AppendRowsRequest {
                write_stream: slot.name.clone(),
                offset: slot.next,
                rows: Some(Rows::ProtoRows(ProtoData {
                    writer_schema: Some(ProtoSchema {
                        proto_descriptor: Some(layout.descriptor.clone()),
                    }),
                    rows: Some(ProtoRows {
                        serialized_rows: pending.bytes.clone(),
                    }),
                })),
                trace_id: "evlog".into(),
                ..AppendRowsRequest::default()
            };
            let result = attempts
                .attempt(async {
                    let token = self.tokens.token().await?;
                    w.append(req, token, self.cfg.request_timeout).await
                })
                .await;
            if let Ok(resp) = &result {
                if let Some(newer) = self.take_updated_schema(job, resp, &layout) {
                    // The table changed and its rows are described by BigQuery's schema, not a
                    // schema file: encode again with the new descriptor and send.
                    layout = newer;
                    let (again, refused) = encode_all(&layout, pending.rows);
                    out.rejected.extend(refused);
                    pending = again;
                    if !matches!(resp.response, Some(Response::AppendResult(_)))
                        || !resp.row_errors.is_empty()
                    {
                        continue;
                    }
                }
            }
            let failure = match result {
                Ok(resp) => match resp.response {
                    Some(Response::AppendResult(_)) if resp.row_errors.is_empty() => {
                        out.delivered += pending.rows.len();
                        slot.advance(pending.rows.len());
                        return (out, true);
                    }
                    _ if !resp.row_errors.is_empty() => {
                        // Those rows are refused for good; nothing of the request was stored,
                        // the others go again.
                        let mut bad: HashMap<usize, String> = resp
                            .row_errors
                            .iter()
                            .filter_map(|e| {
                                Some((usize::try_from(e.index).ok()?, e.message.clone()))
                            })
                            .collect();
                        let before = pending.rows.len();
                        let mut again = Encoded {
                            rows: Vec::new(),
                            bytes: Vec::new(),
                            size: 0,
                        };
                        for (i, (row, bytes)) in
                            pending.rows.into_iter().zip(pending.bytes).enumerate()
                        {
                            match bad.remove(&i) {
                                Some(message) => out.rejected.push((row, None, message)),
                                None => {
                                    again.size += bytes.len() + 8;
                                    again.rows.push(row);
                                    again.bytes.push(bytes);
                                }
                            }
                        }
                        let removed = before - again.rows.len();
                        pending = again;
                        if pending.rows.is_empty() {
                            return (out, true);
                        }
                        if removed > 0 {
                            // Sent again at once: the neighbours were not at fault.
                            continue;
                        }
                        Failure::retry(
                            "row_errors",
                            "AppendRows: row errors that name no row of the request".into(),
                            None,
                        )
                    }
                    Some(Response::Error(st)) if slot.next.is_some() && already_written(&st) => {
                        // This offset holds rows already: an earlier attempt of these very
                        // rows whose answer was lost. Delivered.
                        out.delivered += pending.rows.len();
                        slot.advance(pending.rows.len());
                        return (out, true);
                    }
                    Some(Response::Error(st))
                        if remembered
                            && storage_error(&st.details)
                                == Some(StorageErrorCode::StreamFinalized) =>
                    {
                        // evlog finalizes only streams whose every request was answered, and
                        // keeps only runs that were not refused: this run is in it.
                        out.delivered += pending.rows.len();
                        return (out, true);
                    }
                    Some(Response::Error(st)) if slot.next.is_some() && beyond_end(&st) => {
                        // The stream ends before this offset, so these rows are not in it:
                        // say what BigQuery knows of the stream, leave it, and send them to a
                        // new one.
                        let token = self.tokens.token().await.ok().flatten();
                        let state = w.describe(&slot.name, token.as_deref()).await;
                        let f = Failure::retry(
                            "offset_out_of_range",
                            format!(
                                "AppendRows: offset {} is past the end of {} ({state}); the rows \
                                 go to a new stream",
                                slot.next.unwrap_or_default(),
                                slot.name
                            ),
                            None,
                        );
                        match self.slot_for(&job.dataset, target, attempts).await {
                            Ok(fresh) => *slot = fresh,
                            Err(e) => {
                                out.attempt_errors.push(f.kind);
                                out.failed = pending.rows;
                                out.error = Some(e.into_error());
                                return (out, false);
                            }
                        }
                        f
                    }
                    Some(Response::Error(st)) => answer_failure(&st),
                    _ => Failure::retry(
                        "bad_response",
                        "AppendRows: an answer with neither a result nor an error".into(),
                        None,
                    ),
                },
                Err(f) => f,
            };
            // A column of the schema files the table lacks (not patched yet, or the patch
            // propagating), answered in the stream or by ending it: patch once, then retry as
            // insertAll does for "no such field".
            let failure = if failure.kind == SCHEMA_EXTRA && !job.dead_letter {
                if !synced {
                    synced = true;
                    if let Some(kind) = self.patch_target(&key, target).await {
                        out.attempt_errors.push(kind);
                    }
                }
                Failure::retry("schema_propagation", failure.message, None)
            } else {
                failure
            };
            out.attempt_errors.push(failure.kind);
            if failure.not_found && !bootstrapped {
                bootstrapped = true;
                let may_create =
                    self.cfg.create_tables || job.dead_letter || target != job.base_table;
                if may_create {
                    let ensured = if target == job.base_table {
                        self.ensure_table(&job.dataset, &job.base_table, target)
                            .await
                    } else {
                        self.set_ensured((job.dataset.clone(), target.to_string()), false);
                        self.ensure_shard(&job.dataset, &job.base_table, target)
                            .await
                    };
                    if let Err(e) = ensured {
                        out.failed = pending.rows;
                        out.error = Some(e);
                        return (out, false);
                    }
                    continue;
                }
            }
            if !attempts.backoff(&failure).await {
                out.failed = pending.rows;
                out.error = Some(failure.into_error());
                // The last attempt's fate is unknown: the stream is left to it.
                return (out, false);
            }
            out.retried += pending.rows.len();
        }
    }
}

/// A run's key in the positions file: its first insert id and the fingerprint of all of them.
fn run_key(rows: &[EncodedRow]) -> (String, u64) {
    (
        rows.first()
            .map(|r| r.insert_id.clone())
            .unwrap_or_default(),
        fingerprint(rows.iter().map(|r| r.insert_id.as_str())),
    )
}

/// An in-band `ALREADY_EXISTS` for an offset (rows at it are stored).
fn already_written(st: &gcp_bigquery_client::google::rpc::Status) -> bool {
    st.code == tonic::Code::AlreadyExists as i32
        || storage_error(&st.details) == Some(StorageErrorCode::OffsetAlreadyExists)
}

/// An in-band `OUT_OF_RANGE` for an offset (past the stream's end).
fn beyond_end(st: &gcp_bigquery_client::google::rpc::Status) -> bool {
    st.code == tonic::Code::OutOfRange as i32
        || storage_error(&st.details) == Some(StorageErrorCode::OffsetOutOfRange)
}

/// A refused row: the row, the field at fault, why.
type Refused = (EncodedRow, Option<String>, String);

/// Encodes `rows` with `layout`; rows that cannot be encoded are refused, with the reason.
fn encode_all(layout: &Layout, rows: Vec<EncodedRow>) -> (Encoded, Vec<Refused>) {
    let mut encoded = Encoded {
        rows: Vec::with_capacity(rows.len()),
        bytes: Vec::with_capacity(rows.len()),
        size: 0,
    };
    let mut refused = Vec::new();
    for row in rows {
        let mut b = Vec::with_capacity(row.json.len());
        match encode_row(&layout.columns, &row.json, &mut b) {
            Ok(()) => {
                encoded.size += b.len() + 8;
                encoded.bytes.push(b);
                encoded.rows.push(row);
            }
            Err(e) => refused.push((
                row,
                Some(e.field.clone()).filter(|f| !f.is_empty()),
                format!("the row cannot be encoded for the Storage Write API: {e}"),
            )),
        }
    }
    (encoded, refused)
}

/// Cuts encoded rows into requests under BigQuery's 10 MB limit.
fn split_encoded(all: Encoded) -> Vec<Encoded> {
    let budget = REQUEST_LIMIT as usize - REQUEST_OVERHEAD;
    if all.size <= budget {
        return vec![all];
    }
    let mut parts = Vec::new();
    let mut cur = Encoded {
        rows: Vec::new(),
        bytes: Vec::new(),
        size: 0,
    };
    for (row, bytes) in all.rows.into_iter().zip(all.bytes) {
        let len = bytes.len() + 8;
        if !cur.rows.is_empty() && cur.size + len > budget {
            parts.push(std::mem::replace(
                &mut cur,
                Encoded {
                    rows: Vec::new(),
                    bytes: Vec::new(),
                    size: 0,
                },
            ));
        }
        cur.size += len;
        cur.rows.push(row);
        cur.bytes.push(bytes);
    }
    if !cur.rows.is_empty() {
        parts.push(cur);
    }
    parts
}
