//! The forward sink: the SDK's `forward` mode sends validated batches to an evlog collector
//! (`POST <url>/v1/rows`), which holds the cloud credentials.
//!
//! Contract (same shape as the BigQuery sink):
//! - A batch is split into requests of at most `max_rows_per_request` rows; up to `workers`
//!   requests are in flight at once on a current-thread tokio runtime owned by the flush thread,
//!   over keep-alive connections. Bodies are gzip-compressed when `gzip` is on. The API key goes
//!   in `Authorization: Bearer <key>`.
//! - Only the collector's answer counts (see [`wire::RowsAnswer`]): a 2xx whose body is a JSON
//!   object with `accepted` equal to the rows plus dead letters sent means the collector has them
//!   in its write-ahead log. Rows listed in its `refused` were stored as dead letters by the
//!   collector: they are reported `rejected_stored` (counted rejected, not sent again); the other
//!   rows count as delivered here (the collector counts them again on its side).
//! - Any other answer is a failure whose error names the URL, the status and an excerpt of the
//!   body. A 2xx that is not the collector's answer (a web server or proxy answering 204, an HTML
//!   page, a wrong count) is not retried (kind `bad_answer`): a wrong server does not become
//!   right, so the rows are reported failed (the pipeline spools them, or drops and counts them),
//!   never delivered. Redirects are not followed (kind `http_3xx`, not retried).
//! - Retries: exponential backoff with full jitter (`[retry]`) on connect errors, timeouts,
//!   dropped connections, 408, 429 and 5xx (a collector being redeployed behind a proxy answers
//!   502 for a while); `Retry-After` is honoured. Other 4xx answers are not retried. What is left
//!   after `max_attempts` is reported failed (the pipeline spools it).
//! - Dead letters (events the SDK rejected) are sent in the same request format and stored by the
//!   collector through its own sink's dead-letter path; its answer is checked the same way.
//! - The URL is checked when the config is read ([`check_url`]): a base URL, not an endpoint.

pub mod wire;

use std::io::Write as _;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::{Batch, BatchOutcome, EncodedRow, RejectedEvent, Sink, SinkError};
use crate::config::RetryConfig;

/// `[sink.forward]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:8080` (required with `kind = "forward"`;
    /// http or https, no query or fragment, not an endpoint such as `/v1/rows`). The sink posts to
    /// `<url>/v1/rows`; a path prefix (a collector behind a proxy at `/evlog`) is kept.
    pub url: String,
    /// API key sent as `Authorization: Bearer <key>`; none for an open collector.
    pub api_key: Option<String>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Timeout of one HTTP request.
    #[serde(with = "crate::config::duration_str")]
    pub timeout: Duration,
    /// Requests in flight at once.
    pub workers: usize,
    /// Most rows per request (keep it at or under the collector's `max_batch_events`).
    pub max_rows_per_request: usize,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            api_key: None,
            gzip: true,
            timeout: Duration::from_secs(10),
            workers: 4,
            max_rows_per_request: 1000,
        }
    }
}

/// Sends batches to a collector.
pub struct ForwardSink {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    cfg: ForwardConfig,
    retry: RetryConfig,
    url: String,
    probe: bool,
}

impl std::fmt::Debug for ForwardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSink")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Endpoints of the collector: a URL ending with one of them is an endpoint, not the base URL.
const ENDPOINTS: &[&str] = &["/v1/rows", "/v1/events", "/v1/batch"];
/// Most bytes of an answer read (a collector's answer with 1000 refused rows is well under it).
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Characters of an unexpected answer quoted in an error.
const EXCERPT_CHARS: usize = 200;

/// Checks `sink.forward.url`: an http(s) URL with a host, no query or fragment, and not one of the
/// collector's endpoints. The error is the rule broken, for [`crate::config::ConfigError`].
pub fn check_url(url: &str) -> Result<(), String> {
    const BASE: &str = "give the collector's base URL, e.g. http://host:8080";
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e}); {BASE}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{url:?}: the scheme must be http or https, got {:?}; {BASE}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host; {BASE}"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} has a query or fragment; {BASE}"));
    }
    let path = parsed.path().trim_end_matches('/');
    if let Some(ep) = ENDPOINTS.iter().find(|ep| path.ends_with(*ep)) {
        return Err(format!(
            "{url:?} ends with the endpoint {ep} (the sink adds /v1/rows itself); {BASE}"
        ));
    }
    Ok(())
}

/// Up to [`EXCERPT_CHARS`] characters of an answer body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
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

/// Why one attempt failed.
struct Failure {
    kind: &'static str,
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// What a request carries, to check the answer against.
struct Sent<'a> {
    request: &'a wire::RowsRequest,
    /// Rows plus dead letters: what `accepted` must say.
    items: usize,
}

impl ForwardSink {
    /// Builds the HTTP client and runtime.
    pub fn new(cfg: &ForwardConfig, retry: &RetryConfig) -> Result<Self, SinkError> {
        if cfg.url.is_empty() {
            return Err(SinkError::Config(
                "sink.forward.url is required with sink.kind = \"forward\"".into(),
            ));
        }
        check_url(&cfg.url)
            .map_err(|rule| SinkError::Config(format!("sink.forward.url: {rule}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Config(format!("tokio runtime: {e}")))?;
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
        Ok(Self {
            rt,
            http,
            url: format!("{}/v1/rows", cfg.url.trim_end_matches('/')),
            cfg: cfg.clone(),
            retry: retry.clone(),
            probe: false,
        })
    }

    fn encode(&self, body: &wire::RowsRequest) -> Vec<u8> {
        let json = serde_json::to_vec(body).unwrap_or_default();
        if !self.cfg.gzip {
            return json;
        }
        let mut e = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        let _ = e.write_all(&json);
        e.finish().unwrap_or(json)
    }
    /// One POST; `Ok` only with the collector's answer for exactly what was sent (its `refused`
    /// rows checked against the request).
    async fn attempt(&self, body: Vec<u8>, sent: &Sent<'_>) -> Result<wire::RowsAnswer, Failure> {
        let mut req = self
            .http
            .post(&self.url)
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if self.cfg.gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(k) = &self.cfg.api_key {
            req = req.bearer_auth(k);
        }
        let transport = |e: reqwest::Error| Failure {
            kind: super::http::transport_kind(&e),
            message: format!("POST {}: {e}", self.url),
            retryable: true,
            retry_after: None,
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = super::http::retry_after(resp.headers());
        // Read the whole answer (bounded) so the connection goes back to the pool.
        let mut text = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_ANSWER_BYTES {
                break;
            }
        }
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
                message: format!("POST {} answered {status}: {}", self.url, excerpt(&text)),
                retryable: super::http::retryable_status(code),
                retry_after,
            });
        }
        check_answer(&text, sent).map_err(|what| Failure {
            kind: "bad_answer",
            message: format!(
                "POST {} answered {status} {what}, not the collector's answer \
                 {{\"accepted\": {}}}: is sink.forward.url an evlog collector?{}",
                self.url,
                sent.items,
                if text.iter().all(u8::is_ascii_whitespace) {
                    String::new()
                } else {
                    format!(" The answer: {}", excerpt(&text))
                }
            ),
            retryable: false,
            retry_after: None,
        })
    }

    /// Sends one request until it succeeds or attempts run out.
    async fn send(&self, body: &wire::RowsRequest) -> JobResult {
        let bytes = self.encode(body);
        let sent = Sent {
            request: body,
            items: body.batches.iter().map(|b| b.rows.len()).sum::<usize>() + body.rejected.len(),
        };
        let max_attempts = if self.probe {
            1
        } else {
            self.retry.max_attempts.max(1)
        };
        let mut out = JobResult::default();
        let mut attempt = 0;
        loop {
            match self.attempt(bytes.clone(), &sent).await {
                Ok(answer) => {
                    out.answer = Some(answer);
                    return out;
                }
                Err(f) => {
                    out.attempt_errors.push(f.kind);
                    attempt += 1;
                    if !f.retryable || attempt >= max_attempts {
                        out.error = Some(SinkError::Remote {
                            kind: f.kind,
                            message: f.message,
                        });
                        return out;
                    }
                    out.retried += sent.items;
                    let wait = super::http::backoff(self.retry.base, self.retry.cap, attempt - 1)
                        .max(f.retry_after.unwrap_or_default().min(self.retry.cap));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
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

#[derive(Default)]
struct JobResult {
    /// The collector's (checked) answer; `None` when the request failed.
    answer: Option<wire::RowsAnswer>,
    error: Option<SinkError>,
    retried: usize,
    attempt_errors: Vec<&'static str>,
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
                reason: super::intern_reason(&r.reason),
                field: r.field,
                error: r.error,
                raw: row.json.get().to_string(),
            })
        })
        .collect()
}

impl Sink for ForwardSink {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn set_probe(&mut self, probe: bool) {
        self.probe = probe;
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
        let workers = self.cfg.workers.max(1);
        let this = &*self;
        let results: Vec<(usize, Vec<EncodedRow>, wire::RowsRequest, JobResult)> =
            self.rt.block_on(
                stream::iter(jobs)
                    .map(|(i, rows, body)| async move {
                        let r = this.send(&body).await;
                        (i, rows, body, r)
                    })
                    .buffer_unordered(workers)
                    .collect(),
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::routing::{Destination, PartitionKind};

    /// What the test server answers a request: status, extra header lines, body.
    type Answer = (u16, &'static str, String);

    /// The collector's answer: everything accepted.
    fn collector_answer(req: &wire::RowsRequest) -> Answer {
        let n = req.batches.iter().map(|b| b.rows.len()).sum::<usize>() + req.rejected.len();
        (200, "", format!(r#"{{"accepted":{n}}}"#))
    }

    /// A loopback HTTP/1.1 server answering the `i`-th request (from 0) with `answer(i, body)`,
    /// recording request heads. Bodies are gunzipped and parsed as the forward wire format.
    fn server(
        answer: impl Fn(usize, &wire::RowsRequest) -> Answer + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                loop {
                    let mut head = String::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    if head.is_empty() {
                        break;
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    if head.to_ascii_lowercase().contains("content-encoding: gzip") {
                        let mut plain = Vec::new();
                        let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain);
                        body = plain;
                    }
                    let req: wire::RowsRequest = serde_json::from_slice(&body).expect("wire body");
                    let i = {
                        let mut seen = seen2.lock().expect("lock");
                        seen.push(head);
                        seen.len() - 1
                    };
                    let (status, extra, text) = answer(i, &req);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if out.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (url, seen)
    }

    /// Answers the statuses of `script` (empty bodies; `Retry-After: 0` with 429), then as the
    /// collector.
    fn scripted(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        server(move |i, req| match script.get(i) {
            Some(&429) => (429, "Retry-After: 0\r\n", String::new()),
            Some(&status) => (status, "", String::new()),
            None => collector_answer(req),
        })
    }

    fn batch(n: usize) -> Batch {
        Batch {
            destination: Destination {
                dataset: "events".into(),
                table: "t".into(),
                partitioning: PartitionKind::DayShard,
                day: "20261122".into(),
            },
            rows: (0..n)
                .map(|i| EncodedRow {
                    insert_id: format!("id-{i}"),
                    json: format!(r#"{{"i":{i}}}"#),
                })
                .collect(),
            bytes: 0,
        }
    }

    fn retry() -> RetryConfig {
        RetryConfig {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(10),
            max_attempts: 4,
        }
    }

    fn sink(url: String) -> ForwardSink {
        let cfg = ForwardConfig {
            url,
            ..ForwardConfig::default()
        };
        ForwardSink::new(&cfg, &retry()).expect("sink")
    }

    fn rejected(id: &str) -> RejectedEvent {
        RejectedEvent {
            dataset: "events".into(),
            event_id: id.into(),
            namespace: "events".into(),
            type_name: "t".into(),
            event_time: None,
            received_at: 0,
            reason: "unknown_table",
            field: None,
            error: "no schema".into(),
            raw: "{}".into(),
        }
    }

    #[test]
    fn retries_429_and_5xx_then_delivers_with_key_and_gzip() {
        let (url, seen) = scripted(vec![429, 503]);
        let cfg = ForwardConfig {
            url,
            api_key: Some("k-123".into()),
            max_rows_per_request: 10,
            workers: 1,
            ..ForwardConfig::default()
        };
        let mut sink = ForwardSink::new(&cfg, &retry()).expect("sink");
        let out = sink.deliver(vec![batch(25)]);
        assert_eq!(out[0].delivered, 25);
        assert!(out[0].failed.is_empty());
        assert_eq!(out[0].attempt_errors, vec!["http_429", "http_5xx"]);
        let seen = seen.lock().expect("lock");
        assert_eq!(
            seen.len(),
            5,
            "3 requests of ≤10 rows; the first answered 429, then 503, then 200"
        );
        let h = seen[0].to_ascii_lowercase();
        assert!(h.starts_with("post /v1/rows "), "{h}");
        assert!(h.contains("authorization: bearer k-123"), "{h}");
        assert!(h.contains("content-encoding: gzip"), "{h}");
    }

    #[test]
    fn other_4xx_are_not_retried_and_fail_the_rows() {
        let (url, seen) = scripted(vec![400]);
        let mut sink = sink(url.clone());
        let out = sink.deliver(vec![batch(3)]);
        assert_eq!(out[0].delivered, 0);
        assert_eq!(out[0].failed.len(), 3);
        let e = out[0].error.as_ref().expect("error");
        assert_eq!(e.kind(), "http_4xx");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{url}/v1/rows")) && msg.contains("400"),
            "{msg}"
        );
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    #[test]
    fn connect_errors_use_up_the_attempts() {
        let mut sink = sink("http://127.0.0.1:9".into());
        let out = sink.deliver(vec![batch(2)]);
        assert_eq!(out[0].failed.len(), 2);
        assert_eq!(out[0].attempt_errors.len(), 4);
        assert_eq!(out[0].error.as_ref().map(SinkError::kind), Some("connect"));
    }

    /// Delivers 3 rows to a server answering every request with `answer`; asserts they failed at
    /// the first attempt (no retry) with `bad_answer`, and returns the error message.
    fn not_the_collector(answer: Answer) -> String {
        let (url, seen) = server(move |_, _| answer.clone());
        let mut sink = sink(url.clone());
        let out = sink.deliver(vec![batch(3)]);
        assert_eq!(out[0].delivered, 0, "nothing counts delivered");
        assert_eq!(
            out[0].failed.len(),
            3,
            "every row failed (spooled or dropped)"
        );
        assert!(out[0].rejected_stored.is_empty());
        assert_eq!(out[0].attempt_errors, vec!["bad_answer"]);
        assert_eq!(seen.lock().expect("lock").len(), 1, "not retried");
        let msg = out[0].error.as_ref().expect("error").to_string();
        assert!(msg.contains(&format!("POST {url}/v1/rows")), "{msg}");
        msg
    }

    #[test]
    fn a_204_is_not_delivery() {
        let msg = not_the_collector((204, "", String::new()));
        assert!(msg.contains("204") && msg.contains("empty body"), "{msg}");
    }

    #[test]
    fn a_200_with_a_wrong_count_is_not_delivery() {
        let msg = not_the_collector((200, "", r#"{"accepted": 2}"#.into()));
        assert!(
            msg.contains("200") && msg.contains("accepted = 2 for the 3 items"),
            "{msg}"
        );
    }

    #[test]
    fn a_200_html_page_is_not_delivery() {
        let page = format!(
            "<html>\n<body>Welcome to nginx!{}</body></html>",
            "x".repeat(500)
        );
        let msg = not_the_collector((200, "Content-Type: text/html\r\n", page));
        assert!(msg.contains("200") && msg.contains("not JSON"), "{msg}");
        assert!(
            msg.contains("<html> <body>Welcome to nginx!"),
            "excerpt: {msg}"
        );
        assert!(msg.len() < 600, "the excerpt is bounded: {msg}");
    }

    #[test]
    fn a_200_without_accepted_or_not_an_object_is_not_delivery() {
        let msg = not_the_collector((200, "", r#"{"ok": true}"#.into()));
        assert!(msg.contains("accepted"), "{msg}");
        let msg = not_the_collector((200, "", "[3]".into()));
        assert!(msg.contains("not an object"), "{msg}");
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let (url, seen) = server(|_, _| (301, "Location: http://127.0.0.1:9/\r\n", String::new()));
        let mut sink = sink(url);
        let out = sink.deliver(vec![batch(2)]);
        assert_eq!(out[0].failed.len(), 2);
        assert_eq!(out[0].attempt_errors, vec!["http_3xx"]);
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    #[test]
    fn a_502_page_from_a_proxy_is_retried() {
        let (url, seen) = server(|i, req| {
            if i == 0 {
                (502, "", "<html>Bad Gateway</html>".into())
            } else {
                collector_answer(req)
            }
        });
        let mut sink = sink(url);
        let out = sink.deliver(vec![batch(4)]);
        assert_eq!(out[0].delivered, 4);
        assert_eq!(out[0].attempt_errors, vec!["http_5xx"]);
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }

    #[test]
    fn refused_rows_are_counted_rejected_as_already_stored() {
        let (url, _) = server(|_, req| {
            let rows = &req.batches[0].rows;
            let body = serde_json::json!({
                "accepted": rows.len(), "rows": rows.len() - 2, "dead_letters": 2,
                "refused": [
                    {"batch": 0, "row": 1, "id": rows[1].id, "reason": "invalid_value",
                     "field": "amount", "error": "field \"amount\": not a number"},
                    {"batch": 0, "row": 3, "id": rows[3].id, "reason": "a_new_reason",
                     "field": null, "error": "something else"},
                ],
            });
            (200, "", body.to_string())
        });
        let mut sink = sink(url);
        let out = sink.deliver(vec![batch(5)]);
        let o = &out[0];
        assert_eq!(o.delivered, 3);
        assert!(o.failed.is_empty() && o.error.is_none());
        assert!(o.rejected.is_empty(), "not handed to dead_letter again");
        assert_eq!(o.rejected_stored.len(), 2);
        let r = &o.rejected_stored[0];
        assert_eq!(
            (r.event_id.as_str(), r.reason, r.field.as_deref()),
            ("id-1", "invalid_value", Some("amount"))
        );
        assert_eq!(r.error, "field \"amount\": not a number");
        assert_eq!(
            (r.dataset.as_str(), r.raw.as_str()),
            ("events", r#"{"i":1}"#)
        );
        let r = &o.rejected_stored[1];
        assert_eq!(
            (r.event_id.as_str(), r.reason, r.field.as_deref()),
            ("id-3", "a_new_reason", None)
        );
    }

    #[test]
    fn a_refused_row_that_was_not_sent_is_a_bad_answer() {
        let msg = not_the_collector((
            200,
            "",
            r#"{"accepted": 3, "refused": [{"batch": 0, "row": 7, "id": "id-7", "reason": "x", "error": "y"}]}"#.into(),
        ));
        assert!(
            msg.contains("rows[7]") && msg.contains("not a row sent"),
            "{msg}"
        );
    }

    #[test]
    fn dead_letters_need_the_collector_answer_too() {
        let (url, seen) = scripted(vec![204]);
        let mut sink = sink(url.clone());
        let e = sink
            .dead_letter(&[rejected("a"), rejected("b")])
            .expect_err("a 204 is not the collector");
        assert_eq!(e.kind(), "bad_answer");
        assert!(e.to_string().contains(&format!("{url}/v1/rows")), "{e}");
        // The next answer is the collector's: accepted = 2 dead letters.
        sink.dead_letter(&[rejected("a"), rejected("b")])
            .expect("stored");
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }

    #[test]
    fn url_is_required() {
        let e = crate::Config::from_toml_str("[sink]\nkind = \"forward\"\n").expect_err("no url");
        assert!(e.to_string().contains("sink.forward.url"), "{e}");
    }

    fn config_with_url(url: &str) -> Result<crate::Config, crate::config::ConfigError> {
        crate::Config::from_toml_str(&format!(
            "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = {url:?}\n"
        ))
    }

    #[test]
    fn an_endpoint_url_is_refused_when_the_config_is_read() {
        for url in [
            "http://collector:8080/v1/rows",
            "http://collector:8080/v1/rows/",
            "https://proxy/evlog/v1/events",
            "http://collector/v1/batch",
        ] {
            let e = config_with_url(url).expect_err(url).to_string();
            assert!(
                e.contains("sink.forward.url")
                    && e.contains("ends with the endpoint /v1/")
                    && e.contains("give the collector's base URL, e.g. http://host:8080"),
                "{e}"
            );
        }
        let e = ForwardSink::new(
            &ForwardConfig {
                url: "http://collector:8080/v1/rows".into(),
                ..ForwardConfig::default()
            },
            &retry(),
        )
        .expect_err("the sink checks too");
        assert!(e.to_string().contains("sink.forward.url"), "{e}");
    }

    #[test]
    fn other_bad_urls_are_refused_with_the_rule() {
        for (url, rule) in [
            ("collector:8080", "scheme must be http or https"),
            ("127.0.0.1:8080", "not a URL"),
            ("ftp://collector", "scheme must be http or https"),
            ("http://collector:8080/?x=1", "query or fragment"),
            ("http://collector:8080#top", "query or fragment"),
            ("http://", "not a URL"),
        ] {
            let e = config_with_url(url).expect_err(url).to_string();
            assert!(
                e.contains("sink.forward.url") && e.contains(rule),
                "{url}: {e}"
            );
        }
        for url in [
            "http://127.0.0.1:8080",
            "https://collector/",
            "http://proxy/evlog",
        ] {
            config_with_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn a_base_url_path_is_kept() {
        let s = sink("http://proxy:81/evlog/".into());
        assert_eq!(s.url, "http://proxy:81/evlog/v1/rows");
    }
}
