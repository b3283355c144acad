//! HTTP side of the test server: accept loop, fault injection, routing and the REST handlers.

// Handlers return `Result<_, Response>` so that an error answer can leave early with `?`; the
// response is large but this is a test server's cold path.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpSocket};

use super::grpc::GrpcFault;
use super::schema::{self, Column};
use super::{now_ms, Fault, FaultTarget, RequestRecord, Shared, StoredRow, TableKey};

type Resp = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (injected fault)")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let s = Arc::clone(&shared);
    accept_loop(&shared, listener, addr, move |stream| {
        tokio::spawn(connection(Arc::clone(&s), stream));
    })
    .await;
}

/// Accepts connections on `listener` until shutdown, handing each to `on_accept`; while the
/// server is refusing, the socket is closed, then bound again on the same address.
pub(crate) async fn accept_loop(
    shared: &Shared,
    listener: TcpListener,
    addr: SocketAddr,
    mut on_accept: impl FnMut(tokio::net::TcpStream),
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut refusing = shared.refusing.subscribe();
    let mut listener = Some(listener);
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        if *refusing.borrow_and_update() {
            listener = None;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = refusing.changed() => {}
            }
            continue;
        }
        let Some(l) = &listener else {
            match rebind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        tokio::select! {
            r = l.accept() => {
                if let Ok((stream, _)) = r {
                    let _ = stream.set_nodelay(true);
                    on_accept(stream);
                }
            }
            _ = shutdown.changed() => {}
            _ = refusing.changed() => {}
        }
    }
}

fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

async fn connection(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let mut kill = shared.kill.subscribe();
    let s = Arc::clone(&shared);
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&s), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.changed() => {}
    }
}

/// BigQuery's error body: `{"error":{"code","message","errors":[{"message","domain","reason"}],"status"}}`.
pub(crate) fn error_body(code: u16, reason: &str, message: &str) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    })
}

fn json_resp(code: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn err(code: u16, reason: &str, message: &str) -> Resp {
    json_resp(code, &error_body(code, reason, message))
}

fn fault_response(shared: &Shared, fault: &Fault) -> Option<Resp> {
    Some(match fault {
        Fault::Http500Json => err(
            500,
            "internalError",
            "An internal error occurred and the request could not be completed.",
        ),
        Fault::Http503Json => err(
            503,
            "backendError",
            "Error encountered during execution. Retrying may solve the problem.",
        ),
        Fault::Http500PlainText => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"Internal Server Error\n(injected by bq-test-server: this body is not JSON)\n",
            )));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        Fault::Http429 => {
            let mut r = err(
                429,
                "rateLimitExceeded",
                "Exceeded rate limits: too many api requests per user per method for this user_method. \
                 For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
            );
            r.headers_mut().insert(
                "retry-after",
                HeaderValue::from(shared.cfg.retry_after_secs),
            );
            r
        }
        Fault::Http403RateLimit => err(
            403,
            "rateLimitExceeded",
            "Exceeded rate limits: too many api requests per user per method for this user_method. \
             For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
        ),
        Fault::Slow(_) | Fault::DropConnection | Fault::DropAfterInsert => return None,
    })
}

/// Decodes `%XX` escapes; `+` means a space only in a query string (`plus_is_space`).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k, true) == name).then(|| percent_decode(v, true))
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    DatasetInsert(String),
    DatasetGet(String, String),
    TableInsert(String, String),
    TableList(String, String),
    TableGet(TableKey),
    TableDelete(TableKey),
    /// `tables.patch` (PATCH) and `tables.update` (PUT).
    TablePatch(TableKey),
    InsertAll(TableKey),
    DataList(TableKey),
    AdminStats,
    AdminFault,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    if path == "/_stats" {
        return Route::AdminStats;
    }
    if path == "/_fault" {
        return Route::AdminFault;
    }
    let Some(rest) = path.strip_prefix("/bigquery/v2/") else {
        return Route::NotFound;
    };
    let seg: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect();
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let key = |p: &str, d: &str, t: &str| (p.to_string(), d.to_string(), t.to_string());
    match (method, s.as_slice()) {
        (&Method::POST, ["projects", p, "datasets"]) => Route::DatasetInsert(p.to_string()),
        (&Method::GET, ["projects", p, "datasets", d]) => {
            Route::DatasetGet(p.to_string(), d.to_string())
        }
        (&Method::POST, ["projects", p, "datasets", d, "tables"]) => {
            Route::TableInsert(p.to_string(), d.to_string())
        }
        (&Method::GET, ["projects", p, "datasets", d, "tables"]) => {
            Route::TableList(p.to_string(), d.to_string())
        }
        (&Method::GET, ["projects", p, "datasets", d, "tables", t]) => {
            Route::TableGet(key(p, d, t))
        }
        (&Method::DELETE, ["projects", p, "datasets", d, "tables", t]) => {
            Route::TableDelete(key(p, d, t))
        }
        (&Method::PATCH | &Method::PUT, ["projects", p, "datasets", d, "tables", t]) => {
            Route::TablePatch(key(p, d, t))
        }
        (&Method::POST, ["projects", p, "datasets", d, "tables", t, "insertAll"]) => {
            Route::InsertAll(key(p, d, t))
        }
        (&Method::GET, ["projects", p, "datasets", d, "tables", t, "data"]) => {
            Route::DataList(key(p, d, t))
        }
        _ => Route::NotFound,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let r = route(&method, &path);
    if matches!(r, Route::AdminStats | Route::AdminFault) {
        return Ok(admin(&shared, r, req).await);
    }
    let is_insert = matches!(r, Route::InsertAll(_));
    let gzip = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let authed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > "Bearer ".len());
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        status: 0,
        gzip,
        rows: 0,
        fault: None,
    };

    // Read the whole body first: every answer, faulted or not, comes after the request.
    let limit = shared.cfg.max_request_bytes;
    let body = Limited::new(req.into_body(), limit).collect().await;
    let raw = match body {
        Ok(c) => Some(c.to_bytes()),
        Err(_) => None,
    };
    let fault = {
        let mut st = shared.state();
        st.stats.requests += 1;
        if is_insert {
            st.stats.insert_all_requests += 1;
        }
        if gzip {
            st.stats.gzip_requests += 1;
        }
        st.stats.bytes_received += raw.as_ref().map_or(0, |b| b.len() as u64);
        drop(st);
        if shared.down.load(Ordering::SeqCst) {
            let mut st = shared.state();
            st.stats.down_rejections += 1;
            record.status = 503;
            st.record(record);
            return Ok(err(
                503,
                "backendError",
                "Error encountered during execution. Retrying may solve the problem.",
            ));
        }
        shared.faults().next(is_insert)
    };
    if let Some(f) = &fault {
        record.fault = Some(f.name());
        let mut st = shared.state();
        st.stats.faults_injected += 1;
        *st.stats
            .faults_by_kind
            .entry(f.name().to_string())
            .or_default() += 1;
    }
    if let Some(Fault::Slow(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    if let Some(f) = &fault {
        if let Some(resp) = fault_response(&shared, f) {
            record.status = resp.status().as_u16();
            shared.state().record(record);
            return Ok(resp);
        }
        if *f == Fault::DropConnection {
            shared.state().record(record);
            return Err(DropConnection);
        }
    }

    let resp = if shared.cfg.require_auth && !authed {
        let mut r = json_resp(
            401,
            &json!({"error": {
                "code": 401,
                "message": "Request is missing required authentication credential. Expected OAuth 2 \
                            access token, login cookie or other valid authentication credential. See \
                            https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "errors": [{"message": "Login Required.", "domain": "global", "reason": "required",
                            "location": "Authorization", "locationType": "header"}],
                "status": "UNAUTHENTICATED"}}),
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
        r
    } else {
        match decode_body(&shared, raw, gzip) {
            Err(r) => r,
            Ok(body) => dispatch(&shared, r, query.as_deref(), &body, &mut record),
        }
    };
    record.status = resp.status().as_u16();
    shared.state().record(record);
    if fault == Some(Fault::DropAfterInsert) {
        return Err(DropConnection);
    }
    Ok(resp)
}

fn too_large(limit: usize) -> Resp {
    err(
        400,
        "invalid",
        &format!("Request payload size exceeds the limit: {limit} bytes."),
    )
}

fn decode_body(shared: &Shared, raw: Option<Bytes>, gzip: bool) -> Result<Bytes, Resp> {
    let limit = shared.cfg.max_request_bytes;
    let raw = raw.ok_or_else(|| too_large(limit))?;
    if !gzip {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(&raw[..]).take(limit as u64 + 1);
    if dec.read_to_end(&mut out).is_err() {
        return Err(err(
            400,
            "badRequest",
            "Request body has Content-Encoding: gzip but is not valid gzip data.",
        ));
    }
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

fn parse_json_body(body: &[u8]) -> Result<Value, Resp> {
    serde_json::from_slice::<Value>(body).map_err(|e| {
        err(
            400,
            "parseError",
            &format!("Invalid JSON payload received. {e}"),
        )
    })
}

fn table_name(k: &TableKey) -> String {
    format!("{}:{}.{}", k.0, k.1, k.2)
}

fn not_found_table(k: &TableKey) -> Resp {
    err(
        404,
        "notFound",
        &format!("Not found: Table {}", table_name(k)),
    )
}

fn not_found_dataset(p: &str, d: &str) -> Resp {
    err(404, "notFound", &format!("Not found: Dataset {p}:{d}"))
}

fn dispatch(
    shared: &Shared,
    r: Route,
    query: Option<&str>,
    body: &[u8],
    record: &mut RequestRecord,
) -> Resp {
    match r {
        Route::DatasetInsert(p) => dataset_insert(shared, &p, body),
        Route::DatasetGet(p, d) => {
            let st = shared.state();
            match st.datasets.get(&(p.clone(), d.clone())) {
                Some(m) => json_resp(200, &dataset_resource(&p, &d, m.created_ms)),
                None => not_found_dataset(&p, &d),
            }
        }
        Route::TableInsert(p, d) => table_insert(shared, &p, &d, body),
        Route::TableList(p, d) => {
            let st = shared.state();
            if !st.datasets.contains_key(&(p.clone(), d.clone())) {
                return not_found_dataset(&p, &d);
            }
            let tables: Vec<Value> = st
                .tables
                .keys()
                .filter(|k| k.0 == p && k.1 == d)
                .map(|k| {
                    json!({"kind": "bigquery#table", "id": table_name(k), "type": "TABLE",
                           "tableReference": {"projectId": k.0, "datasetId": k.1, "tableId": k.2}})
                })
                .collect();
            json_resp(
                200,
                &json!({"kind": "bigquery#tableList", "etag": etag(tables.len() as i64),
                        "tables": tables, "totalItems": st.tables.keys().filter(|k| k.0 == p && k.1 == d).count()}),
            )
        }
        Route::TableGet(k) => {
            let st = shared.state();
            match st.tables.get(&k) {
                Some(t) => json_resp(200, &table_resource(&k, t)),
                None if !st.datasets.contains_key(&(k.0.clone(), k.1.clone())) => {
                    not_found_dataset(&k.0, &k.1)
                }
                None => not_found_table(&k),
            }
        }
        Route::TableDelete(k) => {
            let mut st = shared.state();
            match st.tables.remove(&k) {
                Some(_) => {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                None => not_found_table(&k),
            }
        }
        Route::TablePatch(k) => table_patch(shared, &k, body),
        Route::InsertAll(k) if shared.is_denied(&k.1, &k.2) => access_denied(&format!(
            "Access Denied: Table {0}: Permission bigquery.tables.updateData denied on table \
                 {0} (or it may not exist).",
            table_name(&k)
        )),
        Route::InsertAll(k) => insert_all(shared, &k, body, record),
        Route::DataList(k) => data_list(shared, &k, query),
        Route::AdminStats | Route::AdminFault | Route::NotFound => err(
            404,
            "notFound",
            "Not found: the test server has no such method (see tests/README.md)",
        ),
    }
}

fn etag(n: i64) -> String {
    format!("\"etag-{n}\"")
}

fn dataset_resource(p: &str, d: &str, created_ms: i64) -> Value {
    json!({
        "kind": "bigquery#dataset",
        "etag": etag(created_ms),
        "id": format!("{p}:{d}"),
        "selfLink": format!("https://bigquery.googleapis.com/bigquery/v2/projects/{p}/datasets/{d}"),
        "datasetReference": {"projectId": p, "datasetId": d},
        "location": "US",
        "type": "DEFAULT",
        "creationTime": created_ms.to_string(),
        "lastModifiedTime": created_ms.to_string(),
    })
}

pub(crate) fn column_json(c: &Column) -> Value {
    let ty = super::patch::type_name(c.ty);
    let mode = super::patch::mode_name(c.mode);
    let mut o = Map::new();
    o.insert("name".into(), json!(c.name));
    o.insert("type".into(), json!(ty));
    o.insert("mode".into(), json!(mode));
    if let Some(m) = c.max_length {
        o.insert("maxLength".into(), json!(m.to_string()));
    }
    if !c.fields.is_empty() {
        o.insert(
            "fields".into(),
            Value::Array(c.fields.iter().map(column_json).collect()),
        );
    }
    Value::Object(o)
}

/// `tables.patch` / `tables.update`: the schema (when the body has one) by BigQuery's rules for
/// schema changes (see `patch`); other members of the body are ignored.
fn table_patch(shared: &Shared, k: &TableKey, body: &[u8]) -> Resp {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if shared.is_denied(&k.1, &k.2) {
        return access_denied(&format!(
            "Access Denied: Table {0}: Permission bigquery.tables.update denied on table {0} \
             (or it may not exist).",
            table_name(k)
        ));
    }
    let delay = *shared.propagation.lock().unwrap_or_else(|e| e.into_inner());
    let mut st = shared.state();
    if !st.datasets.contains_key(&(k.0.clone(), k.1.clone())) {
        return not_found_dataset(&k.0, &k.1);
    }
    let Some(t) = st.tables.get_mut(k) else {
        return not_found_table(k);
    };
    let mut patched = false;
    if let Some(schema) = v.get("schema") {
        let columns = match super::patch::check(&table_name(k), &t.columns, schema) {
            Ok(c) => c,
            Err(m) => return err(400, "invalid", &m),
        };
        let before = t.columns.iter().map(column_json).collect::<Vec<_>>();
        let after = columns.iter().map(column_json).collect::<Vec<_>>();
        if before != after {
            let now = Instant::now();
            // Rows keep seeing the schema of before the first change still propagating.
            let (old, _) = t.insert_columns(now);
            if !delay.is_zero() {
                t.propagating = Some(super::patch::Propagating {
                    columns: old,
                    until: now + delay,
                });
            }
            t.columns = columns;
            t.modified_ms = now_ms();
            patched = true;
        }
    }
    let resource = table_resource(k, t);
    if patched {
        st.stats.tables_patched += 1;
    }
    json_resp(200, &resource)
}

fn table_resource(k: &TableKey, t: &super::Table) -> Value {
    let (p, d, id) = k;
    json!({
        "kind": "bigquery#table",
        "etag": etag(t.modified_ms),
        "id": table_name(k),
        "selfLink": format!(
            "https://bigquery.googleapis.com/bigquery/v2/projects/{p}/datasets/{d}/tables/{id}"),
        "tableReference": {"projectId": p, "datasetId": d, "tableId": id},
        "schema": {"fields": t.columns.iter().map(column_json).collect::<Vec<_>>()},
        "numBytes": t.bytes.to_string(),
        "numLongTermBytes": "0",
        "numRows": t.rows.len().to_string(),
        "creationTime": t.created_ms.to_string(),
        "lastModifiedTime": t.modified_ms.to_string(),
        "type": "TABLE",
        "location": "US",
    })
}

fn dataset_insert(shared: &Shared, p: &str, body: &[u8]) -> Resp {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(d) = v
        .pointer("/datasetReference/datasetId")
        .and_then(Value::as_str)
    else {
        return err(
            400,
            "invalid",
            "Required parameter is missing: datasetReference.datasetId",
        );
    };
    if let Some(bp) = v
        .pointer("/datasetReference/projectId")
        .and_then(Value::as_str)
    {
        if bp != p {
            return err(
                400,
                "invalid",
                &format!(
                    "Invalid project ID '{bp}': it does not match the request URL project {p}"
                ),
            );
        }
    }
    let valid = !d.is_empty()
        && d.len() <= 1024
        && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return err(
            400,
            "invalid",
            &format!("Invalid dataset ID \"{d}\". Dataset IDs must be alphanumeric (plus underscores) and must be at most 1024 characters long."),
        );
    }
    let mut st = shared.state();
    if st.datasets.contains_key(&(p.to_string(), d.to_string())) {
        return err(
            409,
            "duplicate",
            &format!("Already Exists: Dataset {p}:{d}"),
        );
    }
    st.ensure_dataset(p, d);
    let created = st.datasets[&(p.to_string(), d.to_string())].created_ms;
    json_resp(200, &dataset_resource(p, d, created))
}

/// BigQuery's answer to a call the caller has no permission for.
fn access_denied(message: &str) -> Resp {
    err(403, "accessDenied", message)
}

fn valid_table_id(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 1024
        && t.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

fn table_insert(shared: &Shared, p: &str, d: &str, body: &[u8]) -> Resp {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(t) = v.pointer("/tableReference/tableId").and_then(Value::as_str) else {
        return err(
            400,
            "invalid",
            "Required parameter is missing: tableReference.tableId",
        );
    };
    for (field, want) in [("projectId", p), ("datasetId", d)] {
        if let Some(got) = v
            .pointer(&format!("/tableReference/{field}"))
            .and_then(Value::as_str)
        {
            if got != want {
                return err(
                    400,
                    "invalid",
                    &format!(
                        "Invalid tableReference.{field} '{got}': the request URL names {want}"
                    ),
                );
            }
        }
    }
    if !valid_table_id(t) {
        return err(400, "invalid", &format!("Invalid table ID \"{t}\"."));
    }
    if shared.is_denied(d, t) {
        return access_denied(&format!(
            "Access Denied: Dataset {p}:{d}: Permission bigquery.tables.create denied on \
                 dataset {p}:{d} (or it may not exist)."
        ));
    }
    let columns = match v.get("schema").map(schema::parse_schema) {
        None => Ok(Vec::new()),
        Some(r) => r,
    };
    let columns = match columns {
        Ok(c) => c,
        Err(m) => return err(400, "invalid", &m),
    };
    let key = (p.to_string(), d.to_string(), t.to_string());
    let mut st = shared.state();
    if !st.datasets.contains_key(&(p.to_string(), d.to_string())) {
        return not_found_dataset(p, d);
    }
    if st.tables.contains_key(&key) {
        return err(
            409,
            "duplicate",
            &format!("Already Exists: Table {}", table_name(&key)),
        );
    }
    st.add_table(key.clone(), columns);
    json_resp(200, &table_resource(&key, &st.tables[&key]))
}

/// A row that passed the checks (its insertId and JSON), or its `errors` entries.
type CheckedRow = Result<(Option<String>, Map<String, Value>), Vec<Value>>;

fn stopped() -> Value {
    json!({"reason": "stopped", "location": "", "debugInfo": "", "message": ""})
}

/// `tabledata.insertAll`. The rows are checked outside the server's lock (so that connections
/// check in parallel, as the gRPC path decodes), between two short holds of it: the first
/// resolves the table (creating a `templateSuffix` table) and takes the columns the rows are
/// checked against; the second drops duplicate insertIds and stores the rest.
fn insert_all(shared: &Shared, k: &TableKey, body: &[u8], record: &mut RequestRecord) -> Resp {
    let mut v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(req) = v.as_object_mut() else {
        return err(
            400,
            "invalid",
            "Invalid JSON payload received. Expected an object.",
        );
    };
    let rows = match req.remove("rows") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Array(_)) | Some(Value::Null) => {
            return err(400, "invalid", "No rows present in the request.")
        }
        Some(_) => {
            return err(
                400,
                "invalid",
                "Invalid JSON payload received. Invalid value at 'rows': expected a list.",
            )
        }
    };
    record.rows = rows.len();
    if rows.len() > shared.cfg.max_rows_per_request {
        return err(
            400,
            "invalid",
            &format!(
                "too many rows present in the request, limit: {} row count: {}.",
                shared.cfg.max_rows_per_request,
                rows.len()
            ),
        );
    }
    let flag = |name: &str| req.get(name).and_then(Value::as_bool).unwrap_or(false);
    let skip_invalid = flag("skipInvalidRows");
    let ignore_unknown = flag("ignoreUnknownValues");
    let suffix = req
        .get("templateSuffix")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());

    // First hold: the target table and the columns the rows are checked against.
    let (target, columns, current) = {
        let mut st = shared.state();
        if !st.datasets.contains_key(&(k.0.clone(), k.1.clone())) {
            return not_found_dataset(&k.0, &k.1);
        }
        let Some(base) = st.tables.get(k) else {
            return not_found_table(k);
        };
        let target = match suffix {
            None => k.clone(),
            Some(s) => {
                let name = format!("{}{s}", k.2);
                if !valid_table_id(&name) {
                    return err(
                        400,
                        "invalid",
                        &format!(
                            "Invalid template suffix \"{s}\": table ID \"{name}\" is not valid."
                        ),
                    );
                }
                let target = (k.0.clone(), k.1.clone(), name);
                if !st.tables.contains_key(&target) {
                    let columns = base.columns.clone();
                    let propagating = base.propagating.clone();
                    st.add_table(target.clone(), columns);
                    if let Some(t) = st.tables.get_mut(&target) {
                        t.propagating = propagating;
                    }
                }
                target
            }
        };
        st.stats.rows_received += rows.len() as u64;
        let table = st.tables.get_mut(&target).expect("target table exists");
        let (columns, propagating) = table.insert_columns(Instant::now());
        // While a change propagates, the table's current columns tell a row refused only for
        // that (counted as awaiting the column) from one refused anyway.
        let current = propagating.then(|| table.columns.clone());
        (target, columns, current)
    };

    // Every row checked, without the lock.
    let mut awaiting = 0u64;
    let mut checked: Vec<CheckedRow> = Vec::with_capacity(rows.len());
    for row in rows {
        let (insert_id, json) = match row {
            Value::Object(mut r) => {
                let id = match r.remove("insertId") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                };
                (id, r.remove("json"))
            }
            _ => (None, None),
        };
        match json {
            Some(Value::Object(mut o)) => {
                let problems = schema::check_row(&columns, &mut o, ignore_unknown);
                if let Some(current) = &current {
                    // Refused only because the change has not reached insertAll yet.
                    awaiting += problems
                        .iter()
                        .filter(|p| {
                            p.message.starts_with("no such field")
                                && schema::check_row(current, &mut o.clone(), false)
                                    .iter()
                                    .all(|q| q.location != p.location)
                        })
                        .count() as u64;
                }
                if problems.is_empty() {
                    checked.push(Ok((insert_id, o)));
                } else {
                    checked.push(Err(problems
                        .into_iter()
                        .map(|p| {
                            json!({"reason": "invalid", "location": p.location,
                                   "debugInfo": "", "message": p.message})
                        })
                        .collect()));
                }
            }
            _ => checked.push(Err(vec![json!({
                "reason": "invalid", "location": "", "debugInfo": "",
                "message": "Row has no JSON object under \"json\"."})])),
        }
    }
    let n_rows = checked.len() as u64;
    let n_invalid = checked.iter().filter(|c| c.is_err()).count();

    // Second hold: duplicates dropped, the rest stored.
    let mut st = shared.state();
    let window = shared.cfg.dedupe_window;
    let Some(table) = st.tables.get_mut(&target) else {
        // Deleted while the rows were checked.
        return not_found_table(&target);
    };
    let mut insert_errors = Vec::new();
    let mut stored = 0u64;
    let mut dups = 0u64;
    let mut n_stopped = 0u64;
    if n_invalid > 0 && !skip_invalid {
        for (i, c) in checked.into_iter().enumerate() {
            let errors = match c {
                Err(e) => e,
                Ok(_) => {
                    n_stopped += 1;
                    vec![stopped()]
                }
            };
            insert_errors.push(json!({"index": i, "errors": errors}));
        }
    } else {
        let now = Instant::now();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Err(e) => insert_errors.push(json!({"index": i, "errors": e})),
                Ok((id, json)) => {
                    if let Some(id) = &id {
                        if table.seen_recently(id, window, now) {
                            dups += 1;
                            continue;
                        }
                    }
                    table.rows.push(StoredRow {
                        insert_id: id,
                        json,
                    });
                    stored += 1;
                }
            }
        }
        if stored > 0 {
            // numBytes: the request body shared evenly among its rows, for the rows stored
            // (serializing each row again only to measure it cost more than checking it).
            table.bytes += body.len() as u64 * stored / n_rows.max(1);
            table.modified_ms = now_ms();
        }
    }
    st.stats.rows_stored += stored;
    st.stats.duplicates_dropped += dups;
    st.stats.rows_invalid += n_invalid as u64;
    st.stats.rows_stopped += n_stopped;
    st.stats.rows_awaiting_column += awaiting;
    drop(st);
    let mut resp = json!({"kind": "bigquery#tableDataInsertAllResponse"});
    if !insert_errors.is_empty() {
        resp["insertErrors"] = Value::Array(insert_errors);
    }
    json_resp(200, &resp)
}

/// Default and largest page of `tabledata.list`.
const MAX_PAGE_ROWS: usize = 100_000;

fn data_list(shared: &Shared, k: &TableKey, query: Option<&str>) -> Resp {
    let parse = |name: &str| -> Result<Option<usize>, Resp> {
        match query_param(query, name) {
            None => Ok(None),
            Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                err(
                    400,
                    "invalid",
                    &format!("Invalid value at '{name}' ({v}): expected a non-negative integer"),
                )
            }),
        }
    };
    let (max, start, token) = match (parse("maxResults"), parse("startIndex"), parse("pageToken")) {
        (Ok(m), Ok(s), Ok(t)) => (m, s, t),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let max = max.unwrap_or(MAX_PAGE_ROWS).clamp(1, MAX_PAGE_ROWS);
    let start = token.or(start).unwrap_or(0);
    // google-cloud-bigquery 3.x always asks for this and parses TIMESTAMPs as integers then.
    let int64_ts = query_param(query, "formatOptions.useInt64Timestamp")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let st = shared.state();
    let Some(t) = st.tables.get(k) else {
        if !st.datasets.contains_key(&(k.0.clone(), k.1.clone())) {
            return not_found_dataset(&k.0, &k.1);
        }
        return not_found_table(k);
    };
    let total = t.rows.len();
    let end = start.saturating_add(max).min(total);
    let rows: Vec<Value> = t
        .rows
        .get(start.min(total)..end)
        .unwrap_or(&[])
        .iter()
        .map(|r| schema::to_list_row(&t.columns, &r.json, int64_ts))
        .collect();
    let mut body = json!({
        "kind": "bigquery#tableDataList",
        "etag": etag(t.modified_ms),
        "totalRows": total.to_string(),
    });
    if end < total {
        body["pageToken"] = json!(end.to_string());
    }
    if !rows.is_empty() {
        body["rows"] = Value::Array(rows);
    }
    json_resp(200, &body)
}

async fn admin(shared: &Shared, r: Route, req: Request<Incoming>) -> Resp {
    if r == Route::AdminStats {
        let st = shared.state();
        let mut v = st.stats.to_json();
        v["down"] = json!(shared.down.load(Ordering::SeqCst));
        v["pending_faults"] = json!(shared.faults().queue.len());
        v["grpc"] = st.grpc.stats.to_json();
        v["grpc"]["pending_faults"] = json!(shared.faults().grpc.queue.len());
        return json_resp(200, &v);
    }
    if req.method() != Method::POST {
        return err(405, "invalid", "POST a JSON object to /_fault");
    }
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return err(400, "invalid", "admin body too large"),
    };
    let v = match parse_json_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut applied = Vec::new();
    if let Some(name) = v.get("fault").and_then(Value::as_str) {
        let ms = v.get("ms").and_then(Value::as_u64).unwrap_or(1000);
        let Some(f) = Fault::from_name(name, ms) else {
            return err(400, "invalid", &format!("unknown fault \"{name}\""));
        };
        let target = match v.get("target").and_then(Value::as_str) {
            Some("any") => FaultTarget::Any,
            _ => FaultTarget::InsertAll,
        };
        let n = v.get("count").and_then(Value::as_u64).unwrap_or(1);
        let mut fs = shared.faults();
        for _ in 0..n {
            fs.queue.push_back((target, f.clone()));
        }
        applied.push("fault");
    }
    if let Some(p) = v.get("ratio").and_then(Value::as_f64) {
        let mut fs = shared.faults();
        fs.ratio = p.clamp(0.0, 1.0);
        fs.rng = v.get("seed").and_then(Value::as_u64).unwrap_or(0);
        if let Some(Value::Array(names)) = v.get("mix") {
            let mix: Option<Vec<Fault>> = names
                .iter()
                .map(|n| n.as_str().and_then(|n| Fault::from_name(n, 1000)))
                .collect();
            match mix {
                Some(m) if !m.is_empty() => fs.mix = m,
                _ => return err(400, "invalid", "\"mix\" must list known fault names"),
            }
        }
        applied.push("ratio");
    }
    if let Some(name) = v.get("grpc_fault").and_then(Value::as_str) {
        let ms = v.get("ms").and_then(Value::as_u64).unwrap_or(1000);
        let Some(f) = GrpcFault::from_name(name, ms) else {
            return err(400, "invalid", &format!("unknown grpc_fault \"{name}\""));
        };
        let n = v.get("count").and_then(Value::as_u64).unwrap_or(1);
        let mut fs = shared.faults();
        for _ in 0..n {
            fs.grpc.queue.push_back(f.clone());
        }
        applied.push("grpc_fault");
    }
    if let Some(p) = v.get("grpc_ratio").and_then(Value::as_f64) {
        let mut fs = shared.faults();
        fs.grpc.ratio = p.clamp(0.0, 1.0);
        fs.rng = v.get("seed").and_then(Value::as_u64).unwrap_or(0);
        if let Some(Value::Array(names)) = v.get("grpc_mix") {
            let mix: Option<Vec<GrpcFault>> = names
                .iter()
                .map(|n| n.as_str().and_then(|n| GrpcFault::from_name(n, 1000)))
                .collect();
            match mix {
                Some(m) if !m.is_empty() => fs.grpc.mix = m,
                _ => {
                    return err(
                        400,
                        "invalid",
                        "\"grpc_mix\" must list known gRPC fault names",
                    )
                }
            }
        }
        applied.push("grpc_ratio");
    }
    if let Some(name) = v.get("deny").and_then(Value::as_str) {
        let Some((d, t)) = name.split_once('.') else {
            return err(400, "invalid", "\"deny\" takes \"dataset.table\"");
        };
        let on = v.get("denied").and_then(Value::as_bool).unwrap_or(true);
        shared.set_denied(d, t, on);
        applied.push("deny");
    }
    if let Some(down) = v.get("down").and_then(Value::as_bool) {
        shared.down.store(down, Ordering::SeqCst);
        applied.push("down");
    }
    if v.get("clear").and_then(Value::as_bool) == Some(true) {
        let mut fs = shared.faults();
        fs.queue.clear();
        fs.ratio = 0.0;
        fs.grpc.queue.clear();
        fs.grpc.ratio = 0.0;
        applied.push("clear");
    }
    if applied.is_empty() {
        return err(
            400,
            "invalid",
            "expected one of: fault (with ms, count, target), ratio (with seed, mix), grpc_fault \
             (with ms, count), grpc_ratio (with seed, grpc_mix), deny (with denied), down, clear",
        );
    }
    json_resp(200, &json!({"applied": applied}))
}
