//! Several base URLs behind one sink (the forward sink's collectors, the OpenSearch sink's
//! nodes): which one the next request goes to, and which are left alone for a while.
//!
//! Contract:
//! - Requests are spread round-robin over the URLs that are *up*. A URL is put *down* when a
//!   request to it fails in a way that says something about the server rather than the request
//!   (the caller decides: connect errors, timeouts, dropped connections, 5xx, 429); it is then
//!   skipped for `[retry]`'s `base` plus a full-jitter backoff that grows with its consecutive
//!   failures ([`crate::config::retry::backoff`]), at most `cap`, at least the server's
//!   `Retry-After`; then it is up again for the next request (a probe): a success clears its
//!   failures, a failure puts it down for a longer backoff. (The floor of `base` keeps a dead
//!   URL from drawing a near-zero pause and taking the next request again at once.)
//! - [`Nodes::pick`] takes the URLs a request already tried, so a retry goes to another URL.
//!   When every URL not yet tried is down, it gives the one whose backoff ends first: a request
//!   always goes somewhere, and the caller's retry budget, backoff and the pipeline's spool pace
//!   it as with one URL.
//! - State is shared by the requests in flight (`&self`, a short mutex); nothing is persisted: a
//!   new process starts with every URL up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::retry::{backoff, RetryConfig};

/// The health of one URL.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Failures since its last success.
    failures: u32,
    /// Skipped until then (`None`: up).
    until: Option<Instant>,
    /// Its last request succeeded (false before the first answer).
    answered: bool,
}

/// The URLs' health and the round-robin position.
#[derive(Debug)]
struct State {
    health: Vec<Health>,
    /// Where the next pick starts looking: after the URL picked last.
    next: usize,
}

/// Base URLs, their health and the round-robin position.
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<String>,
    state: Mutex<State>,
    base: Duration,
    cap: Duration,
}

impl Nodes {
    /// `urls` (trailing slashes removed), all up; backoffs by `retry`'s `base` and `cap`.
    pub fn new(urls: impl IntoIterator<Item = String>, retry: &RetryConfig) -> Self {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        Self {
            state: Mutex::new(State {
                health: vec![Health::default(); urls.len()],
                next: 0,
            }),
            urls,
            base: retry.base,
            cap: retry.cap,
        }
    }

    /// How many URLs.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// No URL at all (a sink refuses to be built so).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// URL `i`, without a trailing slash.
    pub fn url(&self, i: usize) -> &str {
        self.urls.get(i).map_or("", String::as_str)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URL for the next attempt of a request that already tried `tried`: the next one up in
    /// round-robin order; when none is up, the one whose backoff ends first; `None` when every
    /// URL was tried.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let n = self.urls.len();
        let now = Instant::now();
        let mut state = self.state();
        let start = state.next;
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        let mut soonest: Option<(usize, Instant)> = None;
        let mut chosen = None;
        for i in candidates {
            match state.health[i].until {
                Some(until) if until > now => {
                    if soonest.is_none_or(|(_, s)| until < s) {
                        soonest = Some((i, until));
                    }
                }
                _ => {
                    chosen = Some(i);
                    break;
                }
            }
        }
        let chosen = chosen.or(soonest.map(|(i, _)| i))?;
        state.next = (chosen + 1) % n;
        Some(chosen)
    }

    /// Whether some URL not in `tried` is up now (a failed request may go there at once).
    pub fn any_up(&self, tried: &[usize]) -> bool {
        let now = Instant::now();
        self.state()
            .health
            .iter()
            .enumerate()
            .any(|(i, h)| !tried.contains(&i) && h.until.is_none_or(|u| u <= now))
    }

    /// URL `i` failed: down for a backoff (see the module docs; at least `retry_after`). True
    /// when it was up before (it has just gone down).
    pub fn failed(&self, i: usize, retry_after: Option<Duration>) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        let Some(h) = state.health.get_mut(i) else {
            return false;
        };
        let was_up = h.until.is_none_or(|u| u <= now);
        let pause = (self.base + backoff(self.base, self.cap, h.failures))
            .min(self.cap)
            .max(retry_after.unwrap_or_default().min(self.cap));
        h.failures = h.failures.saturating_add(1);
        h.until = Some(now + pause);
        h.answered = false;
        was_up
    }

    /// URL `i` answered: up, its failures forgotten.
    pub fn succeeded(&self, i: usize) {
        if let Some(h) = self.state().health.get_mut(i) {
            *h = Health {
                answered: true,
                ..Health::default()
            };
        }
    }

    /// A URL whose last request succeeded, if one did: where a request that must not wait on a
    /// failing destination (a report) may go.
    pub fn answering(&self) -> Option<usize> {
        self.state().health.iter().position(|h| h.answered)
    }

    /// Each URL and whether it is up now.
    pub fn status(&self) -> Vec<(String, bool)> {
        let now = Instant::now();
        self.state()
            .health
            .iter()
            .zip(&self.urls)
            .map(|(h, u)| (u.clone(), h.until.is_none_or(|t| t <= now)))
            .collect()
    }
}

/// The rules every base URL of an HTTP sink follows: it parses, its scheme is http or https, it
/// has a host and no query or fragment. The error is the rule broken, ending with `hint` (what
/// to give instead).
pub fn check_base_url(url: &str, hint: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e}); {hint}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{url:?}: the scheme must be http or https, got {:?}; {hint}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host; {hint}"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} has a query or fragment; {hint}"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize, base_ms: u64) -> Nodes {
        let retry = RetryConfig {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_secs(60),
            max_attempts: 3,
        };
        Nodes::new((0..n).map(|i| format!("http://n{i}/")), &retry)
    }

    #[test]
    fn spreads_round_robin_and_skips_what_was_tried() {
        let n = nodes(3, 100);
        assert_eq!(n.url(0), "http://n0");
        let picks: Vec<usize> = (0..6).filter_map(|_| n.pick(&[])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // One down: the others alternate evenly.
        n.failed(1, Some(Duration::from_secs(30)));
        let picks: Vec<usize> = (0..4).filter_map(|_| n.pick(&[])).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        n.succeeded(1);
        let p = n.pick(&[0, 1]);
        assert_eq!(p, Some(2));
        assert_eq!(n.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn a_failed_url_is_skipped_until_its_backoff_ends_then_probed() {
        let n = nodes(3, 30_000);
        assert!(n.failed(1, None));
        assert!(!n.failed(1, None), "already down");
        for _ in 0..10 {
            assert_ne!(n.pick(&[]), Some(1), "down URLs are skipped");
        }
        assert_eq!(
            n.status().iter().map(|(_, up)| *up).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(n.any_up(&[0]) && !n.any_up(&[0, 2]));
        // Every other URL tried: the down one still takes the request (it must go somewhere).
        assert_eq!(n.pick(&[0, 2]), Some(1));
        n.succeeded(1);
        assert!(n.status()[1].1, "a success brings it back");

        let quick = nodes(2, 1);
        quick.failed(0, None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !quick.status()[0].1 {
            assert!(Instant::now() < deadline, "the backoff ends");
            std::thread::yield_now();
        }
        assert!(quick.any_up(&[1]), "back up for a probe");
    }

    #[test]
    fn all_down_gives_the_one_whose_backoff_ends_first() {
        let n = nodes(3, 1);
        n.failed(0, Some(Duration::from_secs(50)));
        n.failed(1, Some(Duration::from_secs(10)));
        n.failed(2, Some(Duration::from_secs(30)));
        assert_eq!(n.pick(&[]), Some(1));
        assert_eq!(n.pick(&[1]), Some(2));
    }

    #[test]
    fn base_url_rules() {
        assert!(check_base_url("http://h:1/prefix", "x").is_ok());
        for (bad, rule) in [
            ("nope", "is not a URL"),
            ("ftp://h", "scheme must be http or https"),
            ("http://h/?q=1", "query or fragment"),
        ] {
            let e = check_base_url(bad, "give one").unwrap_err();
            assert!(e.contains(rule) && e.ends_with("give one"), "{e}");
        }
    }
}
