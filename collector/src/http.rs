//! HTTP handlers: auth, limits, parsing, the write-ahead log append, answers.
// Handlers return ready responses as errors; they are built once per request, not hot data.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use evlog_core::counters::{write_header, write_metric, write_sample};
use evlog_core::envelope;
use evlog_core::ingest::{reasons, EventInput, Processor, RawEvent};
use evlog_core::json::push_str;
use evlog_core::sink::forward::wire::{
    RowsAnswer, RowsRequest, WireRefused, WireRejected, WireRow,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::{ApiKey, CollectorSection, KeyRole};
use crate::envelope::{Checked, RawEnvelope};
use crate::streamer::Shared;
use crate::wal::{AppendError, RecordBuilder, WalRecord, WalWriter};

/// What handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub config: CollectorSection,
    pub processor: Arc<Processor>,
    pub shared: Arc<Shared>,
    pub wal: WalWriter,
    pub draining: AtomicBool,
    /// Permits for ingest requests in progress (`max_in_flight`).
    pub in_flight: tokio::sync::Semaphore,
    /// Body bytes the requests in progress hold (bounded by `max_in_flight_bytes`).
    pub body_bytes: AtomicU64,
    /// Answers by endpoint and status.
    pub responses: Responses,
    /// Connections closing after an early answer, read to their end first ([`crate::linger`]).
    pub drains: Arc<crate::linger::Drains>,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    respond(status, json!({ "error": message.into() }))
}

fn text(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// The endpoints, as `/metrics` labels them (any other path counts as `other`).
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Events,
    Batch,
    Rows,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

/// The `path` label of each [`Endpoint`], in its order.
const ENDPOINT_LABELS: [&str; 7] = [
    "/v1/events",
    "/v1/batch",
    "/v1/rows",
    "/healthz",
    "/readyz",
    "/metrics",
    "other",
];

/// Status codes counted one by one; any other counts as `other`.
const CODES: [u16; 15] = [
    200, 202, 400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 500, 503, 0,
];

/// Answers by endpoint and status code (`evlog_collector_http_responses_total`).
#[derive(Debug)]
pub(crate) struct Responses([[AtomicU64; CODES.len()]; ENDPOINT_LABELS.len()]);

impl Default for Responses {
    fn default() -> Self {
        Self(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

impl Responses {
    fn count(&self, endpoint: Endpoint, status: StatusCode) {
        let code = CODES
            .iter()
            .position(|&c| c == status.as_u16())
            .unwrap_or(CODES.len() - 1);
        self.0[endpoint as usize][code].fetch_add(1, Ordering::Relaxed);
    }

    fn write_prometheus(&self, s: &mut String) {
        write_header(
            s,
            "evlog_collector_http_responses_total",
            "HTTP answers by endpoint and status code.",
            "counter",
        );
        for (e, path) in ENDPOINT_LABELS.iter().enumerate() {
            for (i, code) in CODES.iter().enumerate() {
                let n = self.0[e][i].load(Ordering::Relaxed);
                if n > 0 {
                    let code = if *code == 0 {
                        "other".to_string()
                    } else {
                        code.to_string()
                    };
                    write_sample(
                        s,
                        "evlog_collector_http_responses_total",
                        &[("path", path), ("code", &code)],
                        n,
                    );
                }
            }
        }
    }
}

pub(crate) async fn handle(
    st: Arc<State>,
    mark: Arc<crate::linger::Mark>,
    mut req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    // A refusal may leave the body unread: hyper then closes the connection after the answer,
    // and the mark makes that close a lingering one (`read_body` reports a body read through).
    let has_body = !hyper::body::Body::is_end_stream(req.body());
    if has_body {
        mark.start();
        req.extensions_mut().insert(Arc::clone(&mark));
    }
    let endpoint = match req.uri().path() {
        "/v1/events" => Endpoint::Events,
        "/v1/batch" => Endpoint::Batch,
        "/v1/rows" => Endpoint::Rows,
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        "/metrics" => Endpoint::Metrics,
        _ => Endpoint::Other,
    };
    let get = req.method() == Method::GET;
    let post = req.method() == Method::POST;
    let mut r = match endpoint {
        Endpoint::Healthz if get => respond(StatusCode::OK, json!({"status": "alive"})),
        Endpoint::Readyz if get => readyz(&st),
        Endpoint::Metrics if get => text(StatusCode::OK, metrics(&st)),
        Endpoint::Events | Endpoint::Batch | Endpoint::Rows if post => {
            // Bounded work in progress: past the limit, answer at once instead of queueing.
            if let Ok(_permit) = st.in_flight.try_acquire() {
                match endpoint {
                    Endpoint::Events => ingest(&st, req, false).await,
                    Endpoint::Batch => ingest(&st, req, true).await,
                    _ => ingest_rows(&st, req).await,
                }
            } else {
                too_busy(&st, "overloaded: too many requests in progress")
            }
        }
        Endpoint::Events | Endpoint::Batch | Endpoint::Rows => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} takes POST", req.uri().path()),
        ),
        Endpoint::Healthz | Endpoint::Readyz | Endpoint::Metrics => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} takes GET", req.uri().path()),
        ),
        Endpoint::Other => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.uri().path()),
        ),
    };
    st.responses.count(endpoint, r.status());
    if mark.answered(has_body, r.status().is_success()) {
        // hyper closes the connection after this answer: say so, or a client could reuse it.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(r)
}

fn overloaded(st: &State) -> bool {
    st.shared.pending.load(Ordering::Relaxed) > st.config.high_watermark.0
}

fn readyz(st: &State) -> Resp {
    if st.draining.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if overloaded(st) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the write-ahead log is over its high watermark",
        );
    }
    if let Some(why) = st.wal.failing() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the write-ahead log cannot be written: {why}"),
        );
    }
    // Dead letters held back in the log block it as failing rows do: not ready either way.
    if !st.shared.sink_healthy.load(Ordering::Relaxed)
        || st.shared.counters.snapshot(0).dead_letters_waiting > 0
    {
        let why = st
            .shared
            .sink_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the sink is failing: {why}"),
        );
    }
    respond(StatusCode::OK, json!({"status": "ready"}))
}

/// `/metrics` in the Prometheus text format 0.0.4: the core counters, then the collector's own
/// families, each as its HELP and TYPE lines followed at once by all of its samples (per-table
/// series included), no family twice.
fn metrics(st: &State) -> String {
    let mut s = st.shared.counters.snapshot(0).to_prometheus();
    write_metric(
        &mut s,
        "evlog_collector_wal_pending_bytes",
        "Write-ahead log bytes not yet streamed.",
        "gauge",
        st.shared.pending.load(Ordering::Relaxed),
    );
    write_metric(
        &mut s,
        "evlog_collector_body_bytes_in_flight",
        "Body bytes held by requests in progress (bounded by max_in_flight_bytes).",
        "gauge",
        st.body_bytes.load(Ordering::Relaxed),
    );
    write_metric(
        &mut s,
        "evlog_collector_sink_healthy",
        "1 when the last delivery succeeded.",
        "gauge",
        u8::from(st.shared.sink_healthy.load(Ordering::Relaxed)),
    );
    st.responses.write_prometheus(&mut s);
    st.drains.write_prometheus(&mut s);
    st.wal.write_prometheus(&mut s);
    write_header(
        &mut s,
        "evlog_events_delivered_by_table_total",
        "Events acknowledged by the sink, per table.",
        "counter",
    );
    let tables = st
        .shared
        .per_table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (table, n) in tables {
        let (dataset, table) = table.split_once('.').unwrap_or(("", &table));
        write_sample(
            &mut s,
            "evlog_events_delivered_by_table_total",
            &[("dataset", dataset), ("table", table)],
            n,
        );
    }
    s
}

/// The key of a request, if it is one of ours: compared in constant time against every key.
fn authorize<'a>(keys: &'a [ApiKey], req: &Request<Incoming>) -> Result<Option<&'a ApiKey>, Resp> {
    if keys.is_empty() {
        return Ok(None);
    }
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(given) = given else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing API key: send \"Authorization: Bearer <key>\" or \"X-Api-Key: <key>\"",
        ));
    };
    let mut found = None;
    for k in keys {
        if bool::from(k.key.as_bytes().ct_eq(given.trim().as_bytes())) {
            found = Some(k);
        }
    }
    match found {
        Some(k) => Ok(Some(k)),
        None => Err(error(StatusCode::UNAUTHORIZED, "unknown API key")),
    }
}

fn in_scope(key: Option<&ApiKey>, namespace: &str) -> bool {
    key.is_none_or(|k| k.namespaces.iter().any(|n| n == "*" || n == namespace))
}

fn too_busy(st: &State, why: &str) -> Resp {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, why);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(st.config.retry_after_secs));
    r
}

/// What one request's body holds of `collector.max_in_flight_bytes` ([`State::body_bytes`]);
/// given back when dropped (when the request is done with its body and what was parsed from it).
/// A plain atomic count, never waited on: a request that does not fit is answered at once.
pub(crate) struct BodyBudget<'a> {
    st: &'a State,
    held: u64,
}

impl<'a> BodyBudget<'a> {
    fn new(st: &'a State) -> Self {
        Self { st, held: 0 }
    }

    /// Grows the reservation to `bytes` in all; a 429 answer when they do not fit now.
    fn cover(&mut self, bytes: u64) -> Result<(), Resp> {
        if bytes <= self.held {
            return Ok(());
        }
        let more = bytes - self.held;
        let limit = self.st.config.max_in_flight_bytes.0;
        let before = self.st.body_bytes.fetch_add(more, Ordering::AcqRel);
        if before + more > limit {
            self.st.body_bytes.fetch_sub(more, Ordering::AcqRel);
            return Err(too_busy(
                self.st,
                &format!(
                    "overloaded: the request bodies in progress hold collector.max_in_flight_bytes ({limit} bytes)"
                ),
            ));
        }
        self.held = bytes;
        Ok(())
    }
}

impl Drop for BodyBudget<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.st.body_bytes.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

/// Reads (and gunzips) a request body within the size limits and the in-flight byte budget.
async fn read_body<'a>(
    st: &'a State,
    req: Request<Incoming>,
) -> Result<(Bytes, BodyBudget<'a>), Resp> {
    let max = st.config.max_body_bytes.0;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body is {} bytes, the limit is {max} (collector.max_body_bytes)",
                declared.unwrap_or(0)
            ),
        ));
    }
    let gzip = match req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported (use gzip or none)"),
            ))
        }
    };
    let mut budget = BodyBudget::new(st);
    if let Some(n) = declared {
        budget.cover(n)?;
    }
    // Usually one frame holds the whole body: it is kept as it is, not copied. A client silent
    // for `request_timeout` mid-body gets 408 (it holds a permit and body memory meanwhile).
    let timeout = st.config.request_timeout;
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let read_through = req.extensions().get::<Arc<crate::linger::Mark>>().cloned();
    let mut incoming = req.into_body();
    let mut one: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0u64;
    loop {
        let frame = tokio::select! {
            biased;
            frame = incoming.frame() => frame,
            () = &mut idle => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "no body data for {timeout:?} (collector.request_timeout)"
                    ),
                ))
            }
        };
        let Some(frame) = frame else {
            break;
        };
        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len() as u64;
        if len > max {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {max} bytes (collector.max_body_bytes)"),
            ));
        }
        budget.cover(len)?;
        if let Some(j) = joined.as_mut() {
            j.extend_from_slice(&data);
        } else if let Some(first) = one.take() {
            let mut j = bytes::BytesMut::with_capacity(first.len() + data.len());
            j.extend_from_slice(&first);
            j.extend_from_slice(&data);
            joined = Some(j);
        } else {
            one = Some(data);
        }
    }
    if let Some(mark) = read_through {
        mark.body_read();
    }
    let body = joined
        .map(bytes::BytesMut::freeze)
        .or(one)
        .unwrap_or_default();
    if !gzip {
        return Ok((body, budget));
    }
    let limit = st.config.max_decompressed_bytes.0;
    let total = st.config.max_in_flight_bytes.0;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut dec = flate2::read::MultiGzDecoder::new(&body[..]);
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("body is not valid gzip: {e}"),
                ))
            }
        };
        let size = (out.len() + n) as u64;
        if size > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "decompressed body is larger than {limit} bytes (collector.max_decompressed_bytes)"
                ),
            ));
        }
        let held = body.len() as u64 + size;
        if held > total {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body and its decompressed text are larger than {total} bytes (collector.max_in_flight_bytes)"
                ),
            ));
        }
        budget.cover(held)?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok((Bytes::from(out), budget))
}

/// The deepest nesting of `text` beyond `max`, as the byte offset where it was exceeded.
fn too_deep(text: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                // Skip the string: to the next quote not escaped by a backslash.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &text[i..]) {
                        None => return None,
                        Some(j) if text[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                    }
                    if i >= text.len() {
                        return None;
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn syntax_error(what: &str, e: &serde_json::Error) -> String {
    format!(
        "{what}: invalid JSON at line {} column {}: {e}",
        e.line(),
        e.column()
    )
}

/// One event's result.
struct Item {
    status: StatusCode,
    id: Option<String>,
    error: Option<String>,
    reason: Option<&'static str>,
    /// The field at fault, for schema violations.
    field: Option<String>,
}

impl Item {
    fn err(status: StatusCode, reason: &'static str, msg: String) -> Self {
        Self {
            status,
            id: None,
            error: Some(msg),
            reason: Some(reason),
            field: None,
        }
    }

    /// Appends the item's fields (after `{` and any leading fields) to a JSON object being built.
    fn push_fields(&self, out: &mut String, mut first: bool) {
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        if let Some(id) = &self.id {
            sep(out);
            out.push_str("\"id\":");
            push_str(out, id);
        }
        if let Some(e) = &self.error {
            sep(out);
            out.push_str("\"error\":");
            push_str(out, e);
        }
        if let Some(r) = self.reason {
            sep(out);
            out.push_str("\"reason\":");
            push_str(out, r);
        }
        if let Some(f) = &self.field {
            sep(out);
            out.push_str("\"field\":");
            push_str(out, f);
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// What every ingest endpoint checks before reading the body: not draining, a valid API key (its
/// namespace scopes are checked per event later), and the log under its high watermark.
fn admit(st: &State, req: &Request<Incoming>) -> Result<Option<ApiKey>, Resp> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down",
        ));
    }
    let key = authorize(&st.config.api_keys, req)?.cloned();
    if overloaded(st) {
        return Err(too_busy(
            st,
            "overloaded: the write-ahead log is over its high watermark",
        ));
    }
    Ok(key)
}

async fn ingest(st: &State, req: Request<Incoming>, batch: bool) -> Resp {
    let key = match admit(st, &req) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let ndjson = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson"));
    // `_budget` is held until the request is done with the body and what was parsed from it.
    let (body, _budget) = match read_body(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let max_depth = st.config.max_depth;
    // Parse: each envelope's keys with raw values (the event object is parsed once, below, by
    // core's processor), or a per-event syntax error for NDJSON lines.
    let mut values: Vec<Result<RawEnvelope<'_>, Item>> = Vec::new();
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !batch || (!ndjson && first == Some(b'[')) {
        if let Some(at) = too_deep(&body, max_depth + usize::from(batch)) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body nests deeper than {max_depth} levels (collector.max_depth) at byte {at}"
                ),
            );
        }
        if batch {
            match serde_json::from_slice::<Vec<RawEnvelope<'_>>>(&body) {
                Ok(items) => values.extend(items.into_iter().map(Ok)),
                Err(e) => return error(StatusCode::BAD_REQUEST, syntax_error("body", &e)),
            }
        } else {
            match serde_json::from_slice::<RawEnvelope<'_>>(&body) {
                Ok(v) => values.push(Ok(v)),
                Err(e) => return error(StatusCode::BAD_REQUEST, syntax_error("body", &e)),
            }
        }
    } else {
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if values.len() >= st.config.max_batch_events {
                values.push(Err(Item::err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many",
                    String::new(),
                )));
                break;
            }
            let item = if let Some(at) = too_deep(line, max_depth) {
                Err(Item::err(
                    StatusCode::BAD_REQUEST,
                    "too_deep",
                    format!("line {}: nests deeper than {max_depth} levels (collector.max_depth) at byte {at}", n + 1),
                ))
            } else {
                serde_json::from_slice::<RawEnvelope<'_>>(line).map_err(|e| {
                    Item::err(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        syntax_error(&format!("line {}", n + 1), &e),
                    )
                })
            };
            values.push(item);
        }
    }
    if values.len() > st.config.max_batch_events {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "more than {} events in one request (collector.max_batch_events)",
                st.config.max_batch_events
            ),
        );
    }
    if batch && values.is_empty() {
        return error(StatusCode::BAD_REQUEST, "body: no events");
    }

    // Check, validate and convert each event; the log keeps converted rows and dead letters.
    let mut items = Vec::with_capacity(values.len());
    let mut record = RecordBuilder::new(st.shared.boot);
    let received_at = evlog_core::clock::now_micros();
    let max_event = st.config.max_event_bytes.0 as usize;
    let mut raw = RawEvent::new(EventInput::new("", "", String::new()), received_at);
    for v in values {
        let item = match v.and_then(|v| check_event(key.as_ref(), v, max_event)) {
            Ok(env) => process_event(st, env, received_at, &mut raw, &mut record),
            Err(item) => item,
        };
        items.push(item);
    }
    if !record.is_empty() {
        let n = record.len() as u64;
        if let Err(r) = append(st, record.finish(), n).await {
            return r;
        }
    }
    if !batch {
        let item = &items[0];
        let mut out = String::with_capacity(64);
        out.push('{');
        item.push_fields(&mut out, true);
        out.push('}');
        return json_response(item.status, out);
    }
    let accepted = items
        .iter()
        .filter(|i| i.status == StatusCode::ACCEPTED)
        .count();
    let mut out = String::with_capacity(64 + items.len() * 72);
    let _ = write!(
        out,
        "{{\"accepted\":{accepted},\"refused\":{},\"results\":[",
        items.len() - accepted
    );
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"index\":");
        out.push_str(itoa(i).as_str());
        out.push_str(",\"status\":");
        out.push_str(itoa(usize::from(it.status.as_u16())).as_str());
        it.push_fields(&mut out, false);
        out.push('}');
    }
    out.push_str("]}");
    json_response(StatusCode::OK, out)
}

/// A small integer as text without `fmt` machinery.
fn itoa(mut n: usize) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Checks one envelope: shape (core's rules), scope, size.
fn check_event<'a>(
    key: Option<&ApiKey>,
    raw: RawEnvelope<'a>,
    max_event: usize,
) -> Result<Checked<'a>, Item> {
    let env = raw
        .check()
        .map_err(|e| Item::err(StatusCode::BAD_REQUEST, "invalid_envelope", e.to_string()))?;
    if !in_scope(key, &env.namespace) {
        return Err(Item::err(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key may not write namespace {:?}", env.namespace),
        ));
    }
    let size = env.event.len();
    if size > max_event {
        return Err(Item::err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!("event is {size} bytes, the limit is {max_event} (collector.max_event_bytes)"),
        ));
    }
    Ok(env)
}

/// Validates and converts one checked event with core's processor (the only parse of its
/// body) and adds the row, or the dead letter, to the record. An event core rejects (no schema
/// for its table, or a schema violation: a missing REQUIRED field, a wrong type, …) answers 422
/// with core's reason, the field at fault and the rule, and is kept in the dead-letter table.
fn process_event(
    st: &State,
    env: Checked<'_>,
    received_at: i64,
    raw: &mut RawEvent,
    record: &mut RecordBuilder,
) -> Item {
    // One RawEvent per request, refilled per event: its body buffer is reused.
    let input = EventInput {
        namespace: &env.namespace,
        type_name: &env.type_name,
        event_json: env.event.as_ref().into(),
        time: env.time,
        id: env.id.as_deref(),
    };
    raw.refill(&input, received_at);
    match st.processor.process(raw) {
        Ok((dest, row)) => {
            record.push_row(&dest, &row.insert_id, &row.json);
            Item {
                status: StatusCode::ACCEPTED,
                id: Some(row.insert_id),
                error: None,
                reason: None,
                field: None,
            }
        }
        Err(rejected) => {
            let error = if rejected.reason == reasons::UNKNOWN_TABLE {
                format!(
                    "no schema for table {}.{}: the event is kept in the dead-letter table",
                    raw.namespace(),
                    raw.type_name()
                )
            } else {
                format!(
                    "{}: the event is kept in the dead-letter table",
                    rejected.error
                )
            };
            record.push_rejected(&rejected);
            let rejected = *rejected;
            Item {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                id: Some(rejected.event_id),
                error: Some(error),
                reason: Some(rejected.reason),
                field: rejected.field,
            }
        }
    }
}

/// Appends a record of `n` events to the log (the log counts them accepted once durable); the
/// error answer otherwise.
async fn append(st: &State, payload: Vec<u8>, n: u64) -> Result<(), Resp> {
    match st.wal.append(payload, n).await {
        Ok(()) => Ok(()),
        Err(AppendError::Busy) => Err(too_busy(st, "overloaded: too many writes waiting")),
        Err(e @ AppendError::Full(_)) => {
            let mut r = too_busy(st, &e.to_string());
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Err(r)
        }
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}
/// `POST /v1/rows`: rows an SDK converted (core's forward sink), for keys with role `"sdk"`
/// (any request when no keys are configured). A malformed request (a bad dataset, table, day
/// or id, a row that is not an object or is too large, a namespace out of the key's scope) is
/// refused whole with the place named: it means a broken sender. Every row is then checked by
/// core against its table's schema and routing ([`Processor::check_row`]); a row that fails is
/// kept in the dead-letter table (reason, field, error; `raw` = the row) instead, and listed in
/// the answer's `refused` (format: `evlog_core::sink::forward::wire`).
async fn ingest_rows(st: &State, req: Request<Incoming>) -> Resp {
    let key = match admit(st, &req) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if let Some(k) = &key {
        if k.role != KeyRole::Sdk {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "this API key has role \"{}\": it may send envelopes (/v1/events, /v1/batch), \
                     not rows; /v1/rows needs a key with role = \"sdk\"",
                    k.role.as_str()
                ),
            );
        }
    }
    // `_budget` is held until the request is done with the body and what was parsed from it.
    let (body, _budget) = match read_body(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(at) = too_deep(&body, st.config.max_depth + 4) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("body nests too deep (collector.max_depth) at byte {at}"),
        );
    }
    let request: RowsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, syntax_error("body", &e)),
    };
    let mut record = WalRecord {
        boot: st.shared.boot,
        batches: request.batches,
        rejected: request.rejected,
    };
    let n = record.len();
    if n > st.config.max_batch_events {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} rows in one request, the limit is {} (collector.max_batch_events)",
                st.config.max_batch_events
            ),
        );
    }
    let max_event = st.config.max_event_bytes.0 as usize;
    for (i, b) in record.batches.iter().enumerate() {
        let checks = [
            envelope::check_dataset_name(&b.dataset).map_err(|r| format!("dataset: {r}")),
            envelope::check_table_name(&b.table).map_err(|r| format!("table: {r}")),
            if b.day.len() == 8 && b.day.bytes().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!("day: expected YYYYMMDD, got {:?}", b.day))
            },
        ];
        if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
            return error(StatusCode::BAD_REQUEST, format!("batches[{i}].{e}"));
        }
        if !in_scope(key.as_ref(), &b.dataset) {
            return error(
                StatusCode::FORBIDDEN,
                format!("this API key may not write namespace {:?}", b.dataset),
            );
        }
        for (j, r) in b.rows.iter().enumerate() {
            let bad = if let Err(e) = envelope::check_id(&r.id) {
                Some(e.to_string())
            } else if !r.json.get().starts_with('{') {
                Some("json: must be an object".into())
            } else if r.json.get().len() > max_event {
                Some(format!(
                    "json: {} bytes, the limit is {max_event} (collector.max_event_bytes)",
                    r.json.get().len()
                ))
            } else {
                None
            };
            if let Some(e) = bad {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("batches[{i}].rows[{j}].{e}"),
                );
            }
        }
    }
    for (i, r) in record.rejected.iter().enumerate() {
        if let Err(e) = envelope::check_dataset_name(&r.dataset) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("rejected[{i}].dataset: {e}"),
            );
        }
        if !in_scope(key.as_ref(), &r.dataset) {
            return error(
                StatusCode::FORBIDDEN,
                format!("this API key may not write namespace {:?}", r.dataset),
            );
        }
    }
    // Check every row; a refused one goes to the dead letters, in the same record.
    let dead_letters = record.rejected.len();
    let mut refused = Vec::new();
    for (i, b) in record.batches.iter_mut().enumerate() {
        let rows = std::mem::take(&mut b.rows);
        for (j, r) in rows.into_iter().enumerate() {
            let checked = st.processor.check_row(
                &b.dataset,
                &b.table,
                b.partitioned,
                &b.day,
                &r.id,
                r.json.get(),
            );
            match checked {
                // The converter's text of the row: the same text for rows core wrote.
                Ok(text) if text != r.json.get() => match RawValue::from_string(text) {
                    Ok(json) => b.rows.push(WireRow { id: r.id, json }),
                    // Not expected (the converter writes JSON); the row as sent passed too.
                    Err(_) => b.rows.push(r),
                },
                Ok(_) => b.rows.push(r),
                Err(rejected) => {
                    record.rejected.push(WireRejected::from(&*rejected));
                    refused.push(WireRefused {
                        batch: i,
                        row: j,
                        id: rejected.event_id,
                        reason: rejected.reason.to_string(),
                        field: rejected.field,
                        error: rejected.error,
                    });
                }
            }
        }
    }
    record.batches.retain(|b| !b.rows.is_empty());
    let rows = record.batches.iter().map(|b| b.rows.len()).sum::<usize>();
    if n > 0 {
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(r) = append(st, payload, n as u64).await {
            return r;
        }
    }
    let answer = RowsAnswer {
        accepted: n as u64,
        rows: rows as u64,
        dead_letters: dead_letters as u64,
        refused,
    };
    json_response(
        StatusCode::OK,
        serde_json::to_string(&answer).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::too_deep;

    /// The byte-by-byte definition the fast scan must agree with.
    fn reference(text: &[u8], max: usize) -> Option<usize> {
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        for (i, &b) in text.iter().enumerate() {
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return Some(i);
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        let cases: &[&str] = &[
            r#"{"a":{"b":[1,{"c":2}]}}"#,
            r#"{"a":"[[[[{{{{"}"#,
            r#"{"a":"x\"[[[[","b":[[[[1]]]]}"#,
            r#"{"a":"x\\","b":[[[[1]]]]}"#,
            r#"{"a":"\\\"[[[[\\","b":{}}"#,
            r#"[[[[[[[["#,
            r#"{"a":"unterminated [[[["#,
            r#"{"a":"ends with backslash \"#,
            "",
            r#""\"#,
        ];
        for text in cases {
            for max in 0..6 {
                assert_eq!(
                    too_deep(text.as_bytes(), max),
                    reference(text.as_bytes(), max),
                    "{text} max {max}"
                );
            }
        }
    }
}
