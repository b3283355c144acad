//! A fault-injecting HTTP proxy for OpenSearch, on loopback.
//!
//! Every request is forwarded to the upstream (gzip bodies decoded on the way) unless a fault
//! says otherwise, and recorded. Faults:
//! - [`Fault`]s queued with [`FaultProxy::push`] apply to the next `_bulk` requests, one each, in
//!   order; [`FaultProxy::always`] applies one to every request until cleared (a node that is
//!   down);
//! - [`ItemFault`]s ([`FaultProxy::fail_item`]) make a document, by `_id`, answer a status in
//!   its `_bulk` item (429 `es_rejected_execution_exception`, 5xx), a number of times: either
//!   without reaching the upstream, or after it stored the document (then a resend meets 409).
//!   The other documents of the request go through; their items keep their places.
//!
//! [`FaultProxy::start_tls`] serves HTTPS with a given certificate (for the sink's `ca_file`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type Resp = Response<Full<Bytes>>;

/// A whole-request fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with OpenSearch's error body (429 with `Retry-After: 0`); not
    /// forwarded.
    Status(u16),
    /// Wait this long, then forward.
    Slow(Duration),
    /// Read the request, then close the connection without answering; not forwarded.
    Drop,
    /// Forward (the documents are stored), then close the connection without answering.
    DropAfterForward,
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Status(s) => format!("status_{s}"),
            Fault::Slow(_) => "slow".into(),
            Fault::Drop => "drop".into(),
            Fault::DropAfterForward => "drop_after_forward".into(),
        }
    }
}

/// A fault of one document in `_bulk` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemFault {
    /// The item's status: 429 (`es_rejected_execution_exception`) or 5xx.
    pub status: u16,
    /// How many answers carry it.
    pub times: u32,
    /// Forward the document all the same (it is stored; the client is told it was not).
    pub forward: bool,
}

/// One `_bulk` request as the proxy saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkRecord {
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The `_id` of every action, in order.
    pub ids: Vec<String>,
    /// The `_index` of every action, in order.
    pub indices: Vec<String>,
    /// The whole-request fault applied, if any.
    pub fault: Option<String>,
    /// The documents answered with an item fault.
    pub faulted_ids: Vec<String>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Fault>,
    always: Option<Fault>,
    items: HashMap<String, ItemFault>,
    bulks: Vec<BulkRecord>,
    /// (method, path, authorization) of every request.
    requests: Vec<(String, String, Option<String>)>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy; stops on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> io::Result<Self> {
        Self::serve(upstream, None)
    }

    /// The same, serving HTTPS with the certificate chain and key of these PEM files.
    pub fn start_tls(upstream: &str, cert: &Path, key: &Path) -> io::Result<Self> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad =
            |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| bad(&e))?;
        Self::serve(
            upstream,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn serve(upstream: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> io::Result<Self> {
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{upstream}: {e}")))?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: up,
            state: Mutex::new(State::default()),
        });
        let (shutdown, mut stop) = watch::channel(false);
        let tls_on = tls.is_some();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("os-fault-proxy")
            .enable_all()
            .build()?;
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("os-fault-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            r = listener.accept() => {
                                if let Ok((stream, _)) = r {
                                    let _ = stream.set_nodelay(true);
                                    let s = Arc::clone(&s);
                                    match tls.clone() {
                                        None => {
                                            tokio::spawn(connection(s, stream));
                                        }
                                        Some(acceptor) => {
                                            tokio::spawn(async move {
                                                if let Ok(tls) = acceptor.accept(stream).await {
                                                    connection(s, tls).await;
                                                }
                                            });
                                        }
                                    }
                                }
                            }
                            _ = stop.changed() => break,
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            addr,
            tls: tls_on,
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Queues a fault for the next `_bulk` request without one.
    pub fn push(&self, fault: Fault) {
        self.shared.state().queue.push_back(fault);
    }

    /// Applies `fault` to every request (any path) until set to `None`.
    pub fn always(&self, fault: Option<Fault>) {
        self.shared.state().always = fault;
    }

    /// Makes document `id` answer `fault` in its `_bulk` items.
    pub fn fail_item(&self, id: &str, fault: ItemFault) {
        self.shared.state().items.insert(id.to_string(), fault);
    }

    /// Every `_bulk` request seen, in order.
    pub fn bulks(&self) -> Vec<BulkRecord> {
        self.shared.state().bulks.clone()
    }

    /// (method, path, `Authorization`) of every request seen, in order.
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.shared.state().requests.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (injected fault)")
    }
}

impl std::error::Error for DropConnection {}

async fn connection<S>(shared: Arc<Shared>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn json_resp(status: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// OpenSearch's error type for a status, as its answers name it.
fn error_type(status: u16) -> &'static str {
    match status {
        429 => "es_rejected_execution_exception",
        503 => "unavailable_shards_exception",
        _ => "exception",
    }
}

fn status_answer(status: u16) -> Resp {
    let reason = format!("injected by the fault proxy ({status})");
    let mut r = json_resp(
        status,
        &json!({
            "error": {
                "root_cause": [{"type": error_type(status), "reason": reason}],
                "type": error_type(status),
                "reason": reason,
            },
            "status": status,
        }),
    );
    if status == 429 {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("0"),
        );
    }
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let gzip = header("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let content_type = header("content-type");
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let is_bulk = parts.method == hyper::Method::POST && parts.uri.path().ends_with("/_bulk");
    let raw = body.collect().await.map_err(|_| DropConnection)?.to_bytes();
    let body: Bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|_| DropConnection)?;
        out.into()
    } else {
        raw
    };
    let fault = {
        let mut st = shared.state();
        st.requests.push((
            parts.method.to_string(),
            parts.uri.path().to_string(),
            authorization.clone(),
        ));
        match st.always.clone() {
            Some(f) => Some(f),
            None if is_bulk => st.queue.pop_front(),
            None => None,
        }
    };
    let forward = |body: Bytes| {
        let shared = Arc::clone(&shared);
        let method = parts.method.clone();
        let path = path_and_query.clone();
        let ct = content_type.clone();
        async move { upstream(&shared, method, &path, ct.as_deref(), body).await }
    };
    if !is_bulk {
        return match fault {
            Some(Fault::Status(s)) => Ok(status_answer(s)),
            Some(Fault::Drop) => Err(DropConnection),
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                forward(body).await
            }
            Some(Fault::DropAfterForward) => {
                let _ = forward(body).await;
                Err(DropConnection)
            }
            None => forward(body).await,
        };
    }

    // A _bulk request: its actions, and which documents answer a fault.
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = lines
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or(b"")))
        .collect();
    let meta: Vec<(String, String)> = pairs
        .iter()
        .map(|(action, _)| {
            let v: Value = serde_json::from_slice(action).unwrap_or(Value::Null);
            let m = v
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or_default();
            let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("_index"), s("_id"))
        })
        .collect();
    let mut record = BulkRecord {
        authorization,
        gzip,
        content_type: content_type.clone(),
        ids: meta.iter().map(|(_, id)| id.clone()).collect(),
        indices: meta.iter().map(|(i, _)| i.clone()).collect(),
        fault: fault.as_ref().map(Fault::name),
        faulted_ids: Vec::new(),
    };
    let faulted: Vec<Option<ItemFault>> = {
        let mut st = shared.state();
        let v = meta
            .iter()
            .map(|(_, id)| {
                if fault.is_some() {
                    return None;
                }
                let f = st.items.get_mut(id).filter(|f| f.times > 0)?;
                f.times -= 1;
                Some(*f)
            })
            .collect::<Vec<_>>();
        record.faulted_ids = meta
            .iter()
            .zip(&v)
            .filter(|(_, f)| f.is_some())
            .map(|((_, id), _)| id.clone())
            .collect();
        st.bulks.push(record);
        v
    };
    match fault {
        Some(Fault::Status(s)) => return Ok(status_answer(s)),
        Some(Fault::Drop) => return Err(DropConnection),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::DropAfterForward) => {
            let _ = forward(body).await;
            return Err(DropConnection);
        }
        None => {}
    }
    if faulted.iter().all(Option::is_none) {
        return forward(body).await;
    }
    // Forward the documents that go through, then put the faulted items back in their places.
    let mut sent = Vec::new();
    for ((action, doc), f) in pairs.iter().zip(&faulted) {
        if f.is_none_or(|f| f.forward) {
            sent.extend_from_slice(action);
            sent.push(b'\n');
            sent.extend_from_slice(doc);
            sent.push(b'\n');
        }
    }
    let mut upstream_items: VecDeque<Value> = if sent.is_empty() {
        VecDeque::new()
    } else {
        let resp = forward(sent.into()).await?;
        if resp.status() != StatusCode::OK {
            return Ok(resp);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| DropConnection)?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| DropConnection)?;
        v["items"].as_array().cloned().unwrap_or_default().into()
    };
    let mut items = Vec::with_capacity(meta.len());
    for ((index, id), f) in meta.iter().zip(&faulted) {
        let from_upstream = if f.is_none_or(|f| f.forward) {
            upstream_items.pop_front()
        } else {
            None
        };
        match f {
            None => items.push(from_upstream.unwrap_or(Value::Null)),
            Some(f) => items.push(json!({"create": {
                "_index": index,
                "_id": id,
                "status": f.status,
                "error": {
                    "type": error_type(f.status),
                    "reason": format!("injected by the fault proxy ({})", f.status),
                },
            }})),
        }
    }
    Ok(json_resp(
        200,
        &json!({"took": 1, "errors": true, "items": items}),
    ))
}

/// Sends a request to the upstream on a fresh connection; a failure drops the client's
/// connection too (as a proxy whose upstream vanished would).
async fn upstream(
    shared: &Shared,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Resp, DropConnection> {
    let stream = TcpStream::connect(shared.upstream)
        .await
        .map_err(|_| DropConnection)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| DropConnection)?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, shared.upstream.to_string());
    if let Some(ct) = content_type {
        req = req.header(hyper::header::CONTENT_TYPE, ct);
    }
    let req = req.body(Full::new(body)).map_err(|_| DropConnection)?;
    let resp = sender.send_request(req).await.map_err(|_| DropConnection)?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|_| DropConnection)?.to_bytes();
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(hyper::header::CONTENT_TYPE) {
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, ct.clone());
    }
    Ok(r)
}
