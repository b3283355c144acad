//! Talking to OpenSearch: the client (TLS roots, auth header), the nodes and failover, one
//! request, and what a whole-request answer means.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Method;

use super::config::{OpenSearchAuth, OpenSearchConfig};
use super::request::ItemError;
use crate::config::retry::RetryConfig;
use crate::sink::http::{self, Failure};
use crate::sink::nodes::Nodes;
use crate::sink::SinkError;

/// Most bytes of an answer read (a `_bulk` answer for 100000 documents is well under it).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Characters of an unexpected answer quoted in an error.
const EXCERPT_CHARS: usize = 300;

/// The HTTP side of the sink.
pub struct Service {
    http: reqwest::Client,
    /// The nodes and their health: requests spread over the ones up.
    nodes: Nodes,
    auth: Auth,
    gzip: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("urls", &self.nodes.status())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The client for `cfg`: reads `ca_file` now, so a bad file is a startup error naming it.
    pub fn new(cfg: &OpenSearchConfig, retry: &RetryConfig) -> Result<Self, SinkError> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.workers)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            // A node never redirects a _bulk; following one would turn the POST into a GET.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                SinkError::Config(format!("sink.opensearch.ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SinkError::Config(format!("sink.opensearch.ca_file {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(SinkError::Config(format!(
                    "sink.opensearch.ca_file {}: no PEM certificate in it",
                    path.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| SinkError::Config(format!("sink.opensearch: HTTP client: {e}")))?;
        Ok(Self {
            http,
            nodes: Nodes::new(cfg.urls.iter().cloned(), retry),
            auth: Auth::new(cfg)?,
            gzip: cfg.gzip,
            timeout: cfg.timeout,
        })
    }

    /// POSTs a `_bulk` body; the answer's body when it is 2xx. `skipped` receives the kind of
    /// each node failure that was skipped past (see [`Service::send`]).
    pub async fn bulk(
        &self,
        body: &[u8],
        skipped: &mut Vec<&'static str>,
    ) -> Result<Vec<u8>, Failure> {
        self.send(
            Method::POST,
            "/_bulk",
            body,
            "application/x-ndjson",
            skipped,
        )
        .await
    }

    /// PUTs an index template.
    pub async fn put_template(
        &self,
        name: &str,
        body: &serde_json::Value,
        skipped: &mut Vec<&'static str>,
    ) -> Result<(), Failure> {
        let path = format!("/_index_template/{name}");
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(Method::PUT, &path, &bytes, "application/json", skipped)
            .await
            .map(drop)
    }

    /// One request, on the node [`Nodes::pick`] gives (round-robin over the nodes up); a node
    /// that refuses the connection is put down and skipped at once for the next (each node at
    /// most once; the kind goes to `skipped`), and one that answers 5xx or times out is put
    /// down, so the caller's retry goes to another.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        content_type: &'static str,
        skipped: &mut Vec<&'static str>,
    ) -> Result<Vec<u8>, Failure> {
        let payload = if self.gzip {
            http::gzip(body)
        } else {
            body.to_vec()
        };
        let mut tried = Vec::new();
        let mut last = None;
        while let Some(node) = self.nodes.pick(&tried) {
            tried.push(node);
            match self
                .once(node, method.clone(), path, payload.clone(), content_type)
                .await
            {
                Err(f) if f.kind == "connect" => {
                    self.nodes.failed(node, None);
                    if let Some(prev) = last.replace(f) {
                        skipped.push(prev.kind);
                    }
                }
                Err(f) => {
                    // A 429 is the cluster's write queue, not this node's health.
                    if f.retryable && f.kind != "http_429" {
                        self.nodes.failed(node, f.retry_after);
                    }
                    skipped.extend(last.map(|f| f.kind));
                    return Err(f);
                }
                ok => {
                    self.nodes.succeeded(node);
                    skipped.extend(last.map(|f| f.kind));
                    return ok;
                }
            }
        }
        Err(last.unwrap_or_else(|| Failure::fatal("config", "no node URL".into())))
    }

    async fn once(
        &self,
        node: usize,
        method: Method,
        path: &str,
        payload: Vec<u8>,
        content_type: &'static str,
    ) -> Result<Vec<u8>, Failure> {
        let url = format!("{}{path}", self.nodes.url(node));
        let what = format!("{method} {url}");
        let mut req = self
            .http
            .request(method, &url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, content_type)
            .body(payload);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        req = self.auth.apply(req);
        let transport = |e: reqwest::Error| {
            Failure::retry(http::transport_kind(&e), format!("{what}: {e}"), None)
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = http::retry_after(resp.headers());
        // Read the whole answer (bounded) so the connection goes back to the pool.
        let mut text = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_ANSWER_BYTES {
                return Err(Failure::fatal(
                    "bad_answer",
                    format!("{what}: answer over {MAX_ANSWER_BYTES} bytes"),
                ));
            }
        }
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(classify(&what, status, &text, retry_after))
    }
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Basic(String, String),
    /// A ready header value (`ApiKey …`, `Bearer …`), marked sensitive so it is never logged.
    Header(HeaderValue),
}

impl Auth {
    fn new(cfg: &OpenSearchConfig) -> Result<Self, SinkError> {
        let header = |value: String| {
            let mut h = HeaderValue::from_str(&value).map_err(|_| {
                SinkError::Config(
                    "sink.opensearch: the credentials hold characters an HTTP header cannot carry"
                        .into(),
                )
            })?;
            h.set_sensitive(true);
            Ok(Auth::Header(h))
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        match cfg.auth {
            OpenSearchAuth::None => Ok(Auth::None),
            OpenSearchAuth::Basic => Ok(Auth::Basic(text(&cfg.user), text(&cfg.password))),
            OpenSearchAuth::ApiKey => header(format!("ApiKey {}", text(&cfg.api_key))),
            OpenSearchAuth::Bearer => header(format!("Bearer {}", text(&cfg.token))),
        }
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
            Auth::Header(h) => req.header(AUTHORIZATION, h.clone()),
        }
    }
}

/// Classifies a non-2xx answer: OpenSearch's `{"error":{"type","reason"},"status"}` when the body
/// is one, else the status and an excerpt (a proxy's page). 408, 429 and 5xx are retried
/// (`Retry-After` honoured); other statuses are final for this request.
pub fn classify(what: &str, status: u16, body: &[u8], retry_after: Option<Duration>) -> Failure {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let detail = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(e) => ItemError::from_value(status, e).describe(),
        None => excerpt(body),
    };
    let message = format!("{what} answered {status}: {detail}");
    let kind = match status {
        429 => "http_429",
        500.. => "http_5xx",
        400..=499 => "http_4xx",
        300..=399 => "http_3xx",
        _ => "bad_answer",
    };
    if http::retryable_status(status) {
        Failure::retry(kind, message, retry_after)
    } else {
        Failure::fatal(kind, message)
    }
}

/// Up to [`EXCERPT_CHARS`] characters of a body, on one line.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "an empty body".into();
    }
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}
