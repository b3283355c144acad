//! `[retry]`: how a failed delivery is tried again, and the full-jitter backoff the HTTP sinks
//! sleep between attempts. A leaf: sinks and the collector import it without the rest of the
//! configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::duration_str;

/// `[retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff; each attempt doubles it, with full jitter.
    #[serde(with = "duration_str")]
    pub base: Duration,
    /// Longest backoff.
    #[serde(with = "duration_str")]
    pub cap: Duration,
    /// Attempts per request, the first included; after that the batch goes to the spool.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

impl RetryConfig {
    /// The wait after failed attempt number `attempt` (from 0): full jitter, a uniform delay in
    /// `[0, min(cap, base·2^attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.base, self.cap, attempt)
    }
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
    }
}
