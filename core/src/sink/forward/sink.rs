//! The forward sink itself: requests, the collector's answer and what it means for each row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::{wire, ForwardConfig, ForwardFormat};
use crate::config::retry::RetryConfig;
use crate::ingest::RawEvent;
use crate::sink::http::{self, Attempts, Encoding, Failure};
use crate::sink::nodes::Nodes;
use crate::sink::{
    intern_reason, Batch, BatchOutcome, EncodedRow, EventsOutcome, RejectedEvent, Sink, SinkError,
};

/// Sends batches to a collector (or to several, see [`Nodes`]).
pub struct ForwardSink {
    http: reqwest::Client,
    /// The collectors' base URLs and their health.
    pub(super) nodes: Nodes,
    /// Each collector's endpoints (as `nodes`), parsed once.
    endpoints: Vec<Endpoints>,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) cfg: ForwardConfig,
    /// How request bodies are compressed (`cfg.compression` applied to the URLs); `None`: not.
    encoding: Option<Encoding>,
    /// A collector answered 415 to a zstd body: gzip from then on (see [`ForwardSink::post`]).
    zstd_refused: AtomicBool,
    pub(super) retry: RetryConfig,
    pub(super) probe: bool,
    /// The pipeline's shutdown signal (see [`crate::sink::StopSignal`]).
    pub(super) stop: std::sync::Arc<crate::sink::StopSignal>,
}

impl std::fmt::Debug for ForwardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSink")
            .field("urls", &self.nodes.status())
            .finish_non_exhaustive()
    }
}

/// Most bytes of an answer read (a collector's answer with 1000 refused rows is well under it).
pub(super) const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Characters of an unexpected answer quoted in an error.
const EXCERPT_CHARS: usize = 200;

/// Up to [`EXCERPT_CHARS`] characters of an answer body, on one line, for an error message.
pub(super) fn excerpt(body: &[u8]) -> String {
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

/// A collector's endpoints, parsed when the sink is built: a URL given to reqwest as text is
/// parsed on every request (~7,000 instructions of `url`'s parser, IDNA included).
pub(super) struct Endpoints {
    /// `<base>/v1/batch?results=refused`: the events format asks for the refused events'
    /// results only, so the usual answer is a few bytes to read.
    pub(super) batch: reqwest::Url,
    /// `<base>/v1/rows`.
    pub(super) rows: reqwest::Url,
}

impl Endpoints {
    fn new(base: &str) -> Result<Self, SinkError> {
        let parse = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}"))
                .map_err(|e| SinkError::Config(format!("sink.forward.url {base:?}: {e}")))
        };
        Ok(Self {
            batch: parse("/v1/batch?results=refused")?,
            rows: parse("/v1/rows")?,
        })
    }
}

/// A request's body: its text, compressed when first sent (and again in another encoding if the
/// collector refuses the first); each attempt sends the same bytes without copying them.
pub(super) struct Body {
    text: Bytes,
    /// The text compressed, and how.
    packed: Mutex<Option<(Encoding, Bytes)>>,
}

impl Body {
    pub(super) fn new(text: Vec<u8>) -> Self {
        Self {
            text: Bytes::from(text),
            packed: Mutex::new(None),
        }
    }

    /// The bytes to send with `encoding`.
    fn bytes(&self, encoding: Option<Encoding>) -> Bytes {
        let Some(encoding) = encoding else {
            return self.text.clone();
        };
        // Attempts of one request run one after another: the lock is never contended.
        let mut packed = self.packed.lock().unwrap_or_else(|e| e.into_inner());
        match &*packed {
            Some((e, bytes)) if *e == encoding => bytes.clone(),
            _ => {
                let bytes = Bytes::from(encoding.encode(&self.text));
                *packed = Some((encoding, bytes.clone()));
                bytes
            }
        }
    }
}

/// `Ok` with the status and the answer for a 2xx; else the failure: its kind, whether it may be
/// retried, `Retry-After`.
fn answer(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    text: Vec<u8>,
) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
    let code = status.as_u16();
    if !status.is_success() {
        return Err(Failure {
            kind: match code {
                429 => "http_429",
                500..=599 => "http_5xx",
                400..=499 => "http_4xx",
                300..=399 => "http_3xx",
                _ => "bad_answer",
            },
            message: format!("POST {url} answered {status}: {}", excerpt(&text)),
            retryable: http::retryable_status(code),
            retry_after,
            not_found: false,
        });
    }
    Ok((status, text))
}

/// What a request carries, to check the answer against.
struct Sent<'a> {
    request: &'a wire::RowsRequest,
    /// Rows plus dead letters: what `accepted` must say.
    items: usize,
}

impl ForwardSink {
    /// The HTTP client (its pool is shared by deliveries and reports).
    pub(super) fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Builds the HTTP client and runtime (the URLs checked first).
    pub fn new(cfg: &ForwardConfig, retry: &RetryConfig) -> Result<Self, SinkError> {
        // The section's rules (a URL or several, each a base URL), as when the config was read:
        // a sink built from a hand-made config gets the same errors.
        cfg.validate(true)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let rt = http::runtime()?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.workers.max(1))
            // Below the collector's `request_timeout` (30 s), after which it closes idle
            // connections: this runtime only runs during a delivery, so it would not see the
            // close and would send the next batch into a dead connection.
            .pool_idle_timeout(Duration::from_secs(20))
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            // A collector never redirects; a redirect means a wrong URL (and following one would
            // turn the POST into a GET without its body).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Config(format!("HTTP client: {e}")))?;
        let nodes = Nodes::new(cfg.base_urls(), retry);
        let endpoints = (0..nodes.len())
            .map(|i| Endpoints::new(nodes.url(i)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rt,
            http,
            nodes,
            endpoints,
            encoding: cfg.encoding(),
            zstd_refused: AtomicBool::new(false),
            cfg: cfg.clone(),
            retry: retry.clone(),
            probe: false,
            stop: Default::default(),
        })
    }

    /// The encoding of the next request: the configured one, unless a collector refused zstd.
    fn encoding(&self) -> Option<Encoding> {
        match self.encoding {
            Some(Encoding::Zstd) if self.zstd_refused.load(Ordering::Relaxed) => {
                Some(Encoding::Gzip)
            }
            e => e,
        }
    }

    /// One POST of `body` to `url`; `Ok` with the status and the answer's bytes for a 2xx, else
    /// the failure (its kind, whether it may be retried, `Retry-After`). A 415 answer to a zstd
    /// body (a collector older than zstd support) switches the sink to gzip for good and sends
    /// the body again at once, gzipped: an SDK upgraded before its collectors loses nothing.
    pub(super) async fn post(
        &self,
        url: &reqwest::Url,
        content_type: &'static str,
        body: &Body,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
        loop {
            let encoding = self.encoding();
            let (status, retry_after, text) =
                self.post_once(url, content_type, encoding, body).await?;
            let code = status.as_u16();
            if code == 415 && encoding == Some(Encoding::Zstd) {
                self.zstd_refused.store(true, Ordering::Relaxed);
                continue;
            }
            return answer(url, status, retry_after, text);
        }
    }

    /// One HTTP exchange: the status, `Retry-After` and the answer's bytes (at most
    /// [`MAX_ANSWER_BYTES`] and a chunk).
    async fn post_once(
        &self,
        url: &reqwest::Url,
        content_type: &'static str,
        encoding: Option<Encoding>,
        body: &Body,
    ) -> Result<(reqwest::StatusCode, Option<Duration>, Vec<u8>), Failure> {
        let mut req = self
            .http
            .post(url.clone())
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.bytes(encoding));
        if let Some(e) = encoding {
            req = req.header(reqwest::header::CONTENT_ENCODING, e.header());
        }
        if let Some(k) = &self.cfg.api_key {
            req = req.bearer_auth(k);
        }
        let transport = |e: reqwest::Error| {
            Failure::retry(http::transport_kind(&e), format!("POST {url}: {e}"), None)
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = http::retry_after(resp.headers());
        // Read the whole answer (bounded) so the connection goes back to the pool.
        let mut text = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_ANSWER_BYTES {
                break;
            }
        }
        Ok((status, retry_after, text))
    }

    /// One POST to collector `node`'s `/v1/rows`; `Ok` only with the collector's answer for
    /// exactly what was sent (its `refused` rows checked against the request).
    async fn attempt(
        &self,
        node: usize,
        body: &Body,
        sent: &Sent<'_>,
    ) -> Result<wire::RowsAnswer, Failure> {
        let url = &self.endpoints(node).rows;
        let (status, text) = self.post(url, "application/json", body).await?;
        check_answer(&text, sent)
            .map_err(|what| not_the_collector(url, status, &what, sent.items, &text))
    }

    /// Collector `node`'s endpoints.
    pub(super) fn endpoints(&self, node: usize) -> &Endpoints {
        // `with_failover` gives only indexes of `nodes`, which `endpoints` matches.
        &self.endpoints[node.min(self.endpoints.len() - 1)]
    }

    /// Sends one request until it succeeds or attempts run out.
    async fn send(&self, body: &wire::RowsRequest) -> Delivery<wire::RowsAnswer> {
        let bytes = Body::new(serde_json::to_vec(body).unwrap_or_default());
        let sent = Sent {
            request: body,
            items: body.batches.iter().map(|b| b.rows.len()).sum::<usize>() + body.rejected.len(),
        };
        let sent = &sent;
        self.with_failover(sent.items, |node| {
            let bytes = &bytes;
            async move { self.attempt(node, bytes, sent).await }
        })
        .await
    }

    /// Makes the attempts of one request of `items` items, each by `one(collector index)`, until one
    /// succeeds or the budget is spent: each attempt goes to the collector [`Nodes::pick`]
    /// gives; one that fails for a reason of the collector's (connect, timeout, dropped
    /// connection, 5xx, 429) puts it down, and the request goes at once to another that is up,
    /// or after the `[retry]` backoff when none is. Each attempt counts against
    /// `retry.max_attempts`; while the pipeline probes, one attempt per collector.
    pub(super) async fn with_failover<T, F>(
        &self,
        items: usize,
        one: impl Fn(usize) -> F,
    ) -> Delivery<T>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut attempts = Attempts::new(&self.retry, self.probe)
            .over(self.nodes.len())
            .watching(&self.stop);
        let mut out = Delivery {
            answer: None,
            error: None,
            retried: 0,
            attempt_errors: Vec::new(),
        };
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let node = match self.nodes.pick(&tried) {
                Some(node) => node,
                None => {
                    tried.clear();
                    self.nodes.pick(&tried).unwrap_or_default()
                }
            };
            match attempts.attempt(one(node)).await {
                Ok(answer) => {
                    self.nodes.succeeded(node);
                    out.answer = Some(answer);
                    return out;
                }
                Err(f) => {
                    out.attempt_errors.push(f.kind);
                    // With one URL its health changes nothing (it takes every request) and the
                    // counters stay as they were.
                    if collectors_fault(&f)
                        && self.nodes.failed(node, f.retry_after)
                        && self.nodes.len() > 1
                    {
                        out.attempt_errors.push(URL_DOWN);
                    }
                    tried.push(node);
                    let again = if self.nodes.len() > 1 && self.nodes.any_up(&tried) {
                        attempts.again_elsewhere(&f)
                    } else {
                        tried.clear();
                        attempts.backoff(&f).await
                    };
                    if !again {
                        out.error = Some(f.into_error());
                        return out;
                    }
                    out.retried += items;
                }
            }
        }
    }
}

/// The `kind` counted (`evlog_sink_errors_total{sink="forward",kind="url_down"}`) each time one
/// of several collectors is put out of rotation for a backoff.
pub const URL_DOWN: &str = "url_down";

/// Whether `f` says the collector is unwell (its URL is skipped for a while), rather than
/// something about the request.
fn collectors_fault(f: &Failure) -> bool {
    matches!(
        f.kind,
        "connect" | "timeout" | "transport" | "http_5xx" | "http_429"
    )
}

/// The end of one request: the checked answer, or the error after the last attempt, with the
/// events retried and each failed attempt's kind.
pub(super) struct Delivery<T> {
    pub(super) answer: Option<T>,
    pub(super) error: Option<SinkError>,
    pub(super) retried: usize,
    pub(super) attempt_errors: Vec<&'static str>,
}

/// The failure for a 2xx that is not the collector's answer (`what` is wrong with it): not
/// retried, a wrong server does not become right.
pub(super) fn not_the_collector(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    what: &str,
    items: usize,
    text: &[u8],
) -> Failure {
    Failure::fatal(
        "bad_answer",
        format!(
            "POST {url} answered {status} {what}, not the collector's answer \
             {{\"accepted\": {items}}}: is sink.forward.url an evlog collector?{}",
            if text.iter().all(u8::is_ascii_whitespace) {
                String::new()
            } else {
                format!(" The answer: {}", excerpt(text))
            }
        ),
    )
}

/// The answer, if it is the collector's for `sent`; else what is wrong with it.
fn check_answer(text: &[u8], sent: &Sent<'_>) -> Result<wire::RowsAnswer, String> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(format!("with more than {MAX_ANSWER_BYTES} bytes"));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("with an empty body".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("with a body that is not JSON ({e})"))?;
    if !value.is_object() {
        return Err("with JSON that is not an object".into());
    }
    let answer: wire::RowsAnswer =
        serde_json::from_value(value).map_err(|e| format!("with an unexpected object ({e})"))?;
    if answer.accepted != sent.items as u64 {
        return Err(format!(
            "with accepted = {} for the {} items sent",
            answer.accepted, sent.items
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &answer.refused {
        let row = sent
            .request
            .batches
            .get(r.batch)
            .and_then(|b| b.rows.get(r.row));
        if row.is_none_or(|row| row.id != r.id) {
            return Err(format!(
                "with refused row batches[{}].rows[{}] id {:?}, which is not a row sent",
                r.batch, r.row, r.id
            ));
        }
        if !seen.insert((r.batch, r.row)) {
            return Err(format!(
                "with refused row batches[{}].rows[{}] listed twice",
                r.batch, r.row
            ));
        }
    }
    Ok(answer)
}

/// The rows the collector refused (and stored), as the events the pipeline counts rejected.
/// Namespace and type are the destination's dataset and table (what the row knows of them); the
/// events are only counted and reported, never stored again.
fn refused_events(
    request: &wire::RowsRequest,
    refused: Vec<wire::WireRefused>,
) -> Vec<RejectedEvent> {
    let now = crate::time::now_micros();
    refused
        .into_iter()
        .filter_map(|r| {
            let batch = request.batches.get(r.batch)?;
            let row = batch.rows.get(r.row)?;
            Some(RejectedEvent {
                dataset: batch.dataset.clone(),
                event_id: r.id,
                namespace: batch.dataset.clone(),
                type_name: batch.table.clone(),
                event_time: None,
                received_at: now,
                reason: intern_reason(&r.reason),
                field: r.field,
                error: r.error,
                raw: row.json.get().to_string(),
            })
        })
        .collect()
}

impl Sink for ForwardSink {
    fn report_interval(&self) -> Option<Duration> {
        (!self.cfg.report_interval.is_zero()).then_some(self.cfg.report_interval)
    }

    fn report(&mut self, stats: &crate::counters::Stats, last: bool) {
        self.send_report(stats, last);
    }

    fn name(&self) -> &'static str {
        "forward"
    }

    fn set_probe(&mut self, probe: bool) {
        self.probe = probe;
    }

    fn takes_events(&self) -> bool {
        self.cfg.format == ForwardFormat::Events
    }

    fn deliver_events(&mut self, events: &[RawEvent]) -> EventsOutcome {
        self.send_events(events)
    }

    fn watch_stop(&mut self, stop: std::sync::Arc<crate::sink::StopSignal>) {
        self.stop = stop;
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        let per = self.cfg.max_rows_per_request.max(1);
        let mut jobs: Vec<(usize, Vec<EncodedRow>, wire::RowsRequest)> = Vec::new();
        let mut outcomes: Vec<BatchOutcome> = Vec::with_capacity(batches.len());
        for (i, batch) in batches.into_iter().enumerate() {
            outcomes.push(BatchOutcome::default());
            let dest = batch.destination;
            let mut rows = batch.rows;
            while !rows.is_empty() {
                let rest = rows.split_off(rows.len().min(per));
                let body = wire::RowsRequest::rows(&dest, &rows);
                jobs.push((i, std::mem::replace(&mut rows, rest), body));
            }
        }
        let this = &*self;
        let results = http::run_all(
            &self.rt,
            self.cfg.workers,
            jobs,
            |(i, rows, body)| async move {
                let r = this.send(&body).await;
                (i, rows, body, r)
            },
        );
        for (i, rows, body, r) in results {
            let o = &mut outcomes[i];
            o.retried += r.retried;
            o.attempt_errors.extend(r.attempt_errors);
            let Some(answer) = r.answer else {
                o.failed.extend(rows);
                o.error = r.error;
                continue;
            };
            let sent = body.batches.iter().map(|b| b.rows.len()).sum::<usize>();
            let stored = refused_events(&body, answer.refused);
            o.delivered += sent - stored.len();
            o.rejected_stored.extend(stored);
            if sent < rows.len() {
                // Rows whose JSON is not valid (core never produces them) were left out of the
                // body: not sent, so not delivered.
                let ids: std::collections::HashSet<&str> =
                    body.batches[0].rows.iter().map(|r| r.id.as_str()).collect();
                o.failed.extend(
                    rows.into_iter()
                        .filter(|r| !ids.contains(r.insert_id.as_str())),
                );
                o.error.get_or_insert(SinkError::Other(
                    "a row is not valid JSON and was not sent".into(),
                ));
            }
        }
        outcomes
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        let mut first_error = None;
        for chunk in events.chunks(self.cfg.max_rows_per_request.max(1)) {
            let body = wire::RowsRequest::rejected(chunk);
            let r = self.rt.block_on(self.send(&body));
            if r.answer.is_none() {
                first_error.get_or_insert(r.error.unwrap_or_else(|| SinkError::Remote {
                    kind: "dead_letter",
                    message: "the collector refused dead letters".into(),
                }));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
