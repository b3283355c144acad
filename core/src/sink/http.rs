//! HTTP plumbing shared by the sinks that talk HTTP (BigQuery, OpenSearch, forward to the
//! collector), so each rule exists once: how a failure is labelled, which statuses are worth
//! another try, `Retry-After`, the retry budget of one request ([`Attempts`]), the sink's runtime,
//! running requests side by side, cutting rows into requests ([`split`]), and compressing bodies (gzip, zstd). A sink keeps only what is its own: its status-to-label
//! mapping, what counts as a good answer, its messages.
//!
//! The retry policy, for every HTTP sink: an attempt that fails with a retryable [`Failure`]
//! (connect errors, timeouts, dropped connections, 408, 429, 5xx, and whatever the sink adds) is
//! tried again after a full-jitter backoff ([`RetryConfig::backoff`]), at least as long as the
//! server's `Retry-After` (capped at `retry.cap`); after `retry.max_attempts` attempts, or one
//! attempt while the pipeline probes, the request fails and its rows are reported failed. Once
//! the pipeline's [`StopSignal`] is raised (shutdown), a request makes no further attempt, a
//! backoff in progress ends at once, and an attempt still running at the deadline is abandoned
//! (a failure of kind `timeout`): a shutdown never waits out retries or `connect_timeout`.

use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use super::{EncodedRow, SinkError, StopSignal};
use crate::config::retry::RetryConfig;

/// The `kind` label of a transport error (no HTTP answer).
pub fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// 408, 429 and 5xx are worth another try.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

/// The `Retry-After` header in seconds (the form BigQuery and evlog's collector send).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Retry (after at least `retry_after`, when the server said so) or give up.
    pub retryable: bool,
    /// Server-requested delay (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// `kind` label for `evlog_sink_errors_total`.
    pub kind: &'static str,
    /// What happened.
    pub message: String,
    /// The destination said the target does not exist (BigQuery: table or dataset); a sink that
    /// may create it does, and tries again.
    pub not_found: bool,
}

impl Failure {
    /// A retryable failure.
    pub fn retry(kind: &'static str, message: String, retry_after: Option<Duration>) -> Self {
        Self {
            retryable: true,
            retry_after,
            kind,
            message,
            not_found: false,
        }
    }

    /// A failure that retrying will not fix.
    pub fn fatal(kind: &'static str, message: String) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            kind,
            message,
            not_found: false,
        }
    }

    /// As a sink error.
    pub fn into_error(self) -> SinkError {
        SinkError::Remote {
            kind: self.kind,
            message: self.message,
        }
    }
}

/// The attempts of one request: how many it may make and how long it waits between them (see
/// the module docs).
#[derive(Debug)]
pub struct Attempts<'a> {
    retry: &'a RetryConfig,
    max: u32,
    made: u32,
    probe: bool,
    stop: Option<&'a StopSignal>,
}

impl<'a> Attempts<'a> {
    /// A fresh budget; `probe` allows a single attempt (the pipeline only wants to know whether
    /// the destination is back).
    pub fn new(retry: &'a RetryConfig, probe: bool) -> Self {
        Self {
            retry,
            max: if probe { 1 } else { retry.max_attempts.max(1) },
            made: 0,
            probe,
            stop: None,
        }
    }

    /// With `urls` base URLs behind the request ([`super::nodes::Nodes`]): while probing, one
    /// attempt per URL (the destination is back when any of them is), still without a backoff.
    pub fn over(mut self, urls: usize) -> Self {
        if self.probe {
            self.max = urls.clamp(1, u32::MAX as usize) as u32;
        }
        self
    }

    /// The same, watching the pipeline's shutdown signal (see the module docs).
    pub fn watching(mut self, stop: &'a StopSignal) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Runs one attempt; once the shutdown signal is raised, bounded by its deadline.
    pub async fn attempt<T>(
        &self,
        attempt: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let Some(stop) = self.stop else {
            return attempt.await;
        };
        stop.bound(attempt).await.unwrap_or_else(|| {
            Err(Failure::fatal(
                "timeout",
                "abandoned at the shutdown deadline (batch.shutdown_timeout)".into(),
            ))
        })
    }

    /// After a failed attempt: sleeps the backoff and returns true (try again), or returns false
    /// at once when `failure` is final or the attempts are used up.
    pub async fn backoff(&mut self, failure: &Failure) -> bool {
        self.made += 1;
        if !failure.retryable || self.made >= self.max || self.probe {
            return false;
        }
        let asked = failure.retry_after.unwrap_or_default().min(self.retry.cap);
        let pause = self.retry.backoff(self.made - 1).max(asked);
        match self.stop {
            // Shutting down (now or during the pause): no more attempts.
            Some(stop) => stop.sleep(pause).await,
            None => {
                tokio::time::sleep(pause).await;
                true
            }
        }
    }

    /// After a failed attempt, when another URL can take the request at once
    /// ([`super::nodes::Nodes`]): counts the attempt like [`Attempts::backoff`] and says whether
    /// another may be made, without sleeping (the backoff is for the URL that failed, not for
    /// the request).
    pub fn again_elsewhere(&mut self, failure: &Failure) -> bool {
        self.made += 1;
        failure.retryable && self.made < self.max && !self.stop.is_some_and(|s| s.is_stopping())
    }
}

/// The current-thread runtime an HTTP sink owns and drives from the flush thread (or a
/// collector streamer) while it delivers.
pub fn runtime() -> Result<tokio::runtime::Runtime, SinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Config(format!("tokio runtime: {e}")))
}

/// Runs `send` on every job on `rt`, at most `workers` at once; results in completion order.
pub fn run_all<J, R, Fut>(
    rt: &tokio::runtime::Runtime,
    workers: usize,
    jobs: Vec<J>,
    send: impl FnMut(J) -> Fut,
) -> Vec<R>
where
    Fut: Future<Output = R>,
{
    rt.block_on(
        stream::iter(jobs)
            .map(send)
            .buffer_unordered(workers.max(1))
            .collect(),
    )
}

/// Splits `rows` into runs of at most `max_rows` rows and `max_bytes` bytes of row JSON (a
/// single larger row gets a request of its own; the destination will judge it).
pub fn split(
    rows: &[EncodedRow],
    max_rows: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, row) in rows.iter().enumerate() {
        let len = row.json.len() + row.insert_id.len() + 32;
        if i > start && (i - start >= max_rows || bytes + len > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < rows.len() {
        out.push(start..rows.len());
    }
    out
}

/// A request body's compression (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// zstd ([`zstd()`]).
    Zstd,
    /// gzip ([`gzip()`]).
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` value.
    pub fn header(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// `body` compressed.
    pub fn encode(self, body: &[u8]) -> Vec<u8> {
        match self {
            Encoding::Zstd => zstd(body),
            Encoding::Gzip => gzip(body),
        }
    }
}

thread_local! {
    /// This thread's deflate state, reset between bodies. A new one per body (zlib-rs sets up
    /// its window and tables: ~440,000 instructions) cost the forward sink's flush thread ~900
    /// instructions per event at 500 events a request; a reset is well under half of that.
    /// About 300 KiB, kept for the thread's life (a sink's thread, a flush thread).
    static DEFLATE: std::cell::RefCell<Option<flate2::Compress>> = const {
        std::cell::RefCell::new(None)
    };
}

/// gzip-compresses a request body (fast level: bodies are rows or events of JSON, which
/// compress well anyway, and the flush thread waits for it).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    // RFC 1952: a fixed header (deflate, no name, no time, OS unknown), the raw deflate
    // stream, then the CRC-32 and the length (mod 2^32) of the input, little-endian.
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut out = Vec::with_capacity(body.len() / 4 + 64);
    out.extend_from_slice(&HEADER);
    let done = DEFLATE.with(|d| {
        let mut d = d.borrow_mut();
        let c = d.get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
        c.reset();
        deflate_into(c, body, &mut out)
    });
    if !done {
        // Not expected (deflating into a growing buffer cannot fail): a fresh encoder instead.
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(body);
        return enc.finish().unwrap_or_default();
    }
    let mut crc = flate2::Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out
}

thread_local! {
    /// This thread's zstd context, reused between bodies (a new one per body would allocate and
    /// set up its tables each time, as a new deflate state would). Sized by the largest body so
    /// far: ~50 KiB for 2 KB, ~570 KiB from 128 KB up (level 1), kept for the thread's life.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const {
        std::cell::RefCell::new(None)
    };
}

/// The zstd level of request bodies: on varied JSON events, 500 to a request, level 1 takes ~40 %
/// less CPU than gzip's fast level and its output is ~40 % smaller; 10 to a request, the same CPU
/// (`tests/examples/compress_bench.rs`, docs/php-cost.md session 18). Level −1 is cheaper on
/// small requests only and compresses no better than gzip; level 3 costs more than gzip.
const ZSTD_LEVEL: i32 = 1;

/// zstd-compresses a request body (RFC 8878: one frame with its content size and checksum; level
/// 1's window is at most 512 KiB, within the 8 MiB RFC 9659 lets an HTTP decoder insist on).
pub fn zstd(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(body.len()));
    let done = ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        if z.is_none() {
            let Ok(mut c) = zstd::bulk::Compressor::new(ZSTD_LEVEL) else {
                return false;
            };
            if c.include_checksum(true).is_err() {
                return false;
            }
            *z = Some(c);
        }
        z.as_mut()
            .is_some_and(|c| c.compress_to_buffer(body, &mut out).is_ok())
    });
    if done {
        return out;
    }
    // Not expected (the buffer holds the worst case): a one-off compression instead.
    zstd::bulk::compress(body, ZSTD_LEVEL).unwrap_or_default()
}

/// Deflates all of `input` into `out` (grown as needed) and finishes the stream; false if the
/// compressor reported an error.
fn deflate_into(c: &mut flate2::Compress, mut input: &[u8], out: &mut Vec<u8>) -> bool {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c.compress_vec(input, out, flate2::FlushCompress::Finish);
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Ok(flate2::Status::StreamEnd) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        assert!(retryable_status(503) && retryable_status(429) && retryable_status(408));
        assert!(!retryable_status(400) && !retryable_status(404));
    }

    #[test]
    fn attempts_stop_at_the_budget_at_a_final_failure_and_when_probing() {
        let retry = RetryConfig {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_attempts: 3,
        };
        let rt = runtime().expect("runtime");
        let again = Failure::retry("http_5xx", "503".into(), None);
        let mut a = Attempts::new(&retry, false);
        let tries: Vec<bool> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(a.backoff(&again).await);
            }
            v
        });
        assert_eq!(tries, [true, true, false], "3 attempts in all");
        let mut a = Attempts::new(&retry, false);
        assert!(!rt.block_on(a.backoff(&Failure::fatal("http_4xx", "400".into()))));
        let mut a = Attempts::new(&retry, true);
        assert!(!rt.block_on(a.backoff(&again)), "a probe makes one attempt");
    }

    fn rows(n: usize, size: usize) -> Vec<EncodedRow> {
        (0..n)
            .map(|i| EncodedRow {
                insert_id: format!("id-{i}"),
                json: format!("{{\"v\":\"{}\"}}", "x".repeat(size)),
            })
            .collect()
    }

    #[test]
    fn splits_by_rows_and_bytes() {
        let r = rows(1200, 10);
        let parts = split(&r, 500, usize::MAX);
        assert_eq!(parts, vec![0..500, 500..1000, 1000..1200]);
        let r = rows(10, 1000);
        let parts = split(&r, 500, 3500);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 10);
        // A row bigger than the limit travels alone.
        let r = rows(3, 5000);
        assert_eq!(split(&r, 500, 3000).len(), 3);
    }

    #[test]
    fn gzip_round_trips() {
        // The thread's compressor is reused: each body must come out whole and alone, an
        // empty one and one larger than the first output buffer included.
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{{\"x\":{}}}\n", i.wrapping_mul(2_654_435_761)).into_bytes())
            .collect();
        for body in [&br#"{"rows":[{"x":1}]}"#[..], b"", &big, b"{}"] {
            let gz = gzip(body);
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .expect("gunzip");
            assert_eq!(back, body);
            // One gzip member only: a decoder of several members reads the same.
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut all)
                .expect("gunzip");
            assert_eq!(all.len(), body.len());
        }
    }

    #[test]
    fn zstd_round_trips_one_frame_with_its_size_and_checksum() {
        // As for gzip: the thread's context is reused, so each body comes out whole and alone.
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{{\"x\":{}}}\n", i.wrapping_mul(2_654_435_761)).into_bytes())
            .collect();
        for body in [
            &br#"{"rows":[{"x":1}]}"#[..],
            b"",
            &big,
            b"{}",
            &big[..1000],
        ] {
            let z = zstd(body);
            assert_eq!(zstd::decode_all(&z[..]).expect("unzstd"), body);
            // The frame says its size (a decoder sizes its buffer from it) and carries a checksum
            // (frame header descriptor bit 2).
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&z).expect("frame"),
                Some(body.len() as u64)
            );
            assert_ne!(z[4] & 0b100, 0, "checksum flag");
        }
        assert!(zstd(&big).len() < big.len() / 3);
    }
}
