//! The forward sink: the SDK's `forward` mode sends validated batches to an evlog collector
//! (`POST <url>/v1/rows`), which holds the cloud credentials.
//!
//! Contract (same shape as the BigQuery sink):
//! - A batch is split into requests of at most `max_rows_per_request` rows; up to `workers`
//!   requests are in flight at once on a current-thread tokio runtime owned by the flush thread,
//!   over keep-alive connections. Bodies are gzip-compressed when `gzip` is on. The API key goes
//!   in `Authorization: Bearer <key>`.
//! - A 2xx answer means the collector has the rows in its write-ahead log: they count as
//!   delivered here (the collector counts them again on its side, through to its sink).
//! - Retries: exponential backoff with full jitter (`[retry]`) on connect errors, timeouts,
//!   dropped connections, 408, 429 and 5xx; `Retry-After` is honoured. Other 4xx answers are not
//!   retried. What is left after `max_attempts` is reported failed (the pipeline spools it).
//! - Dead letters (events the SDK rejected) are sent in the same request format and stored by the
//!   collector through its own sink's dead-letter path.

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
    /// The collector's base URL, e.g. `http://127.0.0.1:8080` (required with `kind = "forward"`).
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

/// Why one attempt failed.
struct Failure {
    kind: &'static str,
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl ForwardSink {
    /// Builds the HTTP client and runtime.
    pub fn new(cfg: &ForwardConfig, retry: &RetryConfig) -> Result<Self, SinkError> {
        if cfg.url.is_empty() {
            return Err(SinkError::Config(
                "sink.forward.url is required with sink.kind = \"forward\"".into(),
            ));
        }
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

    async fn attempt(&self, body: Vec<u8>) -> Result<(), Failure> {
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
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = super::http::transport_kind(&e);
                return Err(Failure {
                    kind,
                    message: format!("POST {}: {e}", self.url),
                    retryable: true,
                    retry_after: None,
                });
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            // Read the answer so the connection goes back to the pool.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let retry_after = super::http::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let retryable = super::http::retryable_status(status);
        Err(Failure {
            kind: match status {
                429 => "http_429",
                500..=599 => "http_5xx",
                _ => "http_4xx",
            },
            message: format!(
                "collector answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
            retryable,
            retry_after,
        })
    }

    /// Sends one request until it succeeds or attempts run out.
    async fn send(&self, body: wire::RowsRequest, rows: usize) -> JobResult {
        let bytes = self.encode(&body);
        let max_attempts = if self.probe {
            1
        } else {
            self.retry.max_attempts.max(1)
        };
        let mut out = JobResult::default();
        let mut attempt = 0;
        loop {
            match self.attempt(bytes.clone()).await {
                Ok(()) => {
                    out.ok = true;
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
                    out.retried += rows;
                    let wait = super::http::backoff(self.retry.base, self.retry.cap, attempt - 1)
                        .max(f.retry_after.unwrap_or_default().min(self.retry.cap));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[derive(Default)]
struct JobResult {
    ok: bool,
    error: Option<SinkError>,
    retried: usize,
    attempt_errors: Vec<&'static str>,
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
        let results: Vec<(usize, Vec<EncodedRow>, JobResult)> = self.rt.block_on(
            stream::iter(jobs)
                .map(|(i, rows, body)| async move {
                    let r = this.send(body, rows.len()).await;
                    (i, rows, r)
                })
                .buffer_unordered(workers)
                .collect(),
        );
        for (i, rows, r) in results {
            let o = &mut outcomes[i];
            o.retried += r.retried;
            o.attempt_errors.extend(r.attempt_errors);
            if r.ok {
                o.delivered += rows.len();
            } else {
                o.failed.extend(rows);
                o.error = r.error;
            }
        }
        outcomes
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        let mut first_error = None;
        for chunk in events.chunks(self.cfg.max_rows_per_request.max(1)) {
            let body = wire::RowsRequest::rejected(chunk);
            let r = self.rt.block_on(self.send(body, chunk.len()));
            if !r.ok {
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

    /// A loopback HTTP/1.1 server answering each request with the next status of `script`
    /// (then 200), recording request bodies' sizes and headers.
    fn server(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut script = script.into_iter();
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
                    seen2.lock().expect("lock").push(head);
                    let status = script.next().unwrap_or(200);
                    let extra = if status == 429 {
                        "Retry-After: 0\r\n"
                    } else {
                        ""
                    };
                    let answer =
                        format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\n\r\n{{}}");
                    if out.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (url, seen)
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

    #[test]
    fn retries_429_and_5xx_then_delivers_with_key_and_gzip() {
        let (url, seen) = server(vec![429, 503]);
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
        let (url, seen) = server(vec![400]);
        let cfg = ForwardConfig {
            url,
            ..ForwardConfig::default()
        };
        let mut sink = ForwardSink::new(&cfg, &retry()).expect("sink");
        let out = sink.deliver(vec![batch(3)]);
        assert_eq!(out[0].delivered, 0);
        assert_eq!(out[0].failed.len(), 3);
        assert_eq!(out[0].error.as_ref().map(SinkError::kind), Some("http_4xx"));
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    #[test]
    fn connect_errors_use_up_the_attempts() {
        let cfg = ForwardConfig {
            url: "http://127.0.0.1:9".into(),
            ..ForwardConfig::default()
        };
        let mut sink = ForwardSink::new(&cfg, &retry()).expect("sink");
        let out = sink.deliver(vec![batch(2)]);
        assert_eq!(out[0].failed.len(), 2);
        assert_eq!(out[0].attempt_errors.len(), 4);
        assert_eq!(out[0].error.as_ref().map(SinkError::kind), Some("connect"));
    }

    #[test]
    fn url_is_required() {
        let e = crate::Config::from_toml_str("[sink]\nkind = \"forward\"\n").expect_err("no url");
        assert!(e.to_string().contains("sink.forward.url"), "{e}");
    }
}
