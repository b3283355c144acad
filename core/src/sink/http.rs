//! HTTP plumbing shared by the sinks that talk HTTP (BigQuery, forward to the collector): how a
//! failure is labelled, which statuses are worth another try, `Retry-After`, and the backoff.

use std::time::Duration;

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

/// Full-jitter exponential backoff: a uniform delay in `[0, min(cap, base·2^attempt)]`.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .min(cap);
    let r = crate::ids::random_u64() as f64 / u64::MAX as f64;
    ceiling.mul_f64(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        for attempt in 0..40 {
            let d = backoff(Duration::from_millis(100), Duration::from_secs(30), attempt);
            assert!(d <= Duration::from_secs(30));
            assert!(d <= Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(20)));
        }
        assert!(retryable_status(503) && retryable_status(429) && retryable_status(408));
        assert!(!retryable_status(400) && !retryable_status(404));
    }
}
