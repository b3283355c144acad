//! Unit tests of several collectors (`urls`): requests spread round-robin, a failed collector
//! skipped for its backoff and its request sent at once to another, all down as with one URL,
//! probes, and the config rules; against loopback servers playing the collectors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events_tests::{batch_answer, events, server as events_server};
use super::sink::URL_DOWN;
use super::tests::{batch, collector_answer, server as rows_server};
use super::*;
use crate::config::{Config, RetryConfig};
use crate::sink::Sink;

type Seen = Arc<Mutex<Vec<String>>>;

/// A collector answering every `/v1/batch` with every event accepted.
fn healthy() -> (String, Seen) {
    events_server(|_, lines| batch_answer(lines, |_| 202))
}

/// A collector answering `status` to everything (`Retry-After: 30` keeps it out of rotation
/// for the whole test, whatever the jitter draws).
fn failing(status: u16) -> (String, Seen) {
    events_server(move |_, _| (status, "Retry-After: 30\r\n", String::new()))
}

/// A URL nothing listens on (connections refused).
fn refused() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", l.local_addr().expect("addr"))
}

fn sink(urls: Vec<String>, format: ForwardFormat, retry: RetryConfig) -> ForwardSink {
    let cfg = ForwardConfig {
        urls,
        max_rows_per_request: 3,
        workers: 1,
        format,
        ..ForwardConfig::default()
    };
    ForwardSink::new(&cfg, &retry).expect("sink")
}

fn quick() -> RetryConfig {
    RetryConfig {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
        max_attempts: 4,
    }
}

fn count(seen: &Seen) -> usize {
    seen.lock().expect("lock").len()
}

#[test]
fn requests_are_spread_round_robin_over_healthy_collectors() {
    let servers: Vec<(String, Seen)> = (0..3).map(|_| healthy()).collect();
    let urls = servers.iter().map(|(u, _)| u.clone()).collect();
    let mut s = sink(urls, ForwardFormat::Events, quick());
    let evs = events(27);
    let out = s.deliver_events(&evs);
    assert_eq!(out.delivered, 27);
    assert!(out.failed.is_empty() && out.attempt_errors.is_empty());
    let counts: Vec<usize> = servers.iter().map(|(_, seen)| count(seen)).collect();
    assert_eq!(
        counts,
        [3, 3, 3],
        "9 requests of 3 events, one in three each"
    );
}

#[test]
fn a_failing_collector_is_skipped_and_its_request_retried_at_once_on_another() {
    for status in [503, 429, 502] {
        let (bad, bad_seen) = failing(status);
        let (a, a_seen) = healthy();
        let (b, b_seen) = healthy();
        // A backoff of minutes: were the request to wait for it, the test would time out.
        let slow = RetryConfig {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(120),
            max_attempts: 4,
        };
        let mut s = sink(vec![bad, a, b], ForwardFormat::Events, slow);
        let evs = events(30);
        let start = std::time::Instant::now();
        let out = s.deliver_events(&evs);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no backoff slept"
        );
        assert_eq!(out.delivered, 30, "{status}");
        assert!(out.failed.is_empty());
        assert_eq!(count(&bad_seen), 1, "{status}: tried once, then skipped");
        assert_eq!(
            count(&a_seen) + count(&b_seen),
            10,
            "every request delivered once"
        );
        assert!(
            count(&a_seen) >= 4 && count(&b_seen) >= 4,
            "spread over both"
        );
        let kind = if status == 429 {
            "http_429"
        } else {
            "http_5xx"
        };
        assert_eq!(out.attempt_errors, [kind, URL_DOWN], "{status}");
        assert_eq!(
            out.retried, 3,
            "the request that failed was retried (3 events)"
        );
        let up: Vec<bool> = s.nodes.status().iter().map(|(_, up)| *up).collect();
        assert_eq!(up, [false, true, true]);
    }
}

#[test]
fn a_refused_connection_moves_on_for_rows_too() {
    let (a, a_seen) = rows_server(|_, req| collector_answer(req));
    let slow = RetryConfig {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(120),
        max_attempts: 4,
    };
    let mut s = sink(vec![refused(), a], ForwardFormat::Rows, slow);
    let out = s.deliver(vec![batch(9)]);
    assert_eq!(out[0].delivered, 9);
    assert!(out[0].failed.is_empty());
    assert_eq!(count(&a_seen), 3);
    assert_eq!(out[0].attempt_errors, ["connect", URL_DOWN]);
    assert!(out[0].retried == 3, "{}", out[0].retried);
}

#[test]
fn all_collectors_down_fail_after_the_attempts_as_with_one() {
    let mut s = sink(vec![refused(), refused()], ForwardFormat::Events, quick());
    let evs = events(3);
    let out = s.deliver_events(&evs);
    assert_eq!(out.delivered, 0);
    assert_eq!(out.failed, vec![0..3], "one request, failed");
    let e = out.error.as_ref().expect("error");
    assert_eq!(e.kind(), "connect");
    let connects = out
        .attempt_errors
        .iter()
        .filter(|k| **k == "connect")
        .count();
    assert_eq!(connects, 4, "retry.max_attempts attempts in all");
    // Each goes down at its first failure; again when its (1 ms) backoff ended before it
    // was tried again.
    let downs = out
        .attempt_errors
        .iter()
        .filter(|k| **k == URL_DOWN)
        .count();
    assert!((2..=4).contains(&downs), "{:?}", out.attempt_errors);
}

#[test]
fn a_collector_back_after_its_backoff_takes_requests_again() {
    let flaky_fails = Arc::new(Mutex::new(true));
    let fails = Arc::clone(&flaky_fails);
    let (flaky, flaky_seen) = events_server(move |_, lines| {
        if *fails.lock().expect("lock") {
            (503, "", String::new())
        } else {
            batch_answer(lines, |_| 202)
        }
    });
    let (a, _) = healthy();
    let mut s = sink(vec![flaky, a], ForwardFormat::Events, quick());
    assert_eq!(s.deliver_events(&events(3)).delivered, 3);
    assert_eq!(count(&flaky_seen), 1);
    *flaky_fails.lock().expect("lock") = false;
    // Its backoff (≤ 1 ms here) ends; the round-robin comes back to it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&flaky_seen) < 3 {
        assert!(std::time::Instant::now() < deadline, "probed again");
        assert_eq!(s.deliver_events(&events(3)).delivered, 3);
    }
    assert!(s.nodes.status().iter().all(|(_, up)| *up));
}

#[test]
fn a_probe_tries_each_collector_once() {
    let (a, a_seen) = healthy();
    let mut s = sink(
        vec![refused(), refused(), a],
        ForwardFormat::Events,
        quick(),
    );
    s.set_probe(true);
    for _ in 0..3 {
        let out = s.deliver_events(&events(3));
        assert_eq!(out.delivered, 3, "{:?}", out.attempt_errors);
    }
    assert_eq!(count(&a_seen), 3);
    let mut s = sink(vec![refused(), refused()], ForwardFormat::Events, quick());
    s.set_probe(true);
    let out = s.deliver_events(&events(3));
    assert_eq!(out.failed, vec![0..3], "one request, failed");
    assert_eq!(
        out.attempt_errors
            .iter()
            .filter(|k| **k == "connect")
            .count(),
        2,
        "one attempt per collector, no more"
    );
}

#[test]
fn config_takes_url_or_urls_not_both() {
    let load = |forward: &str| {
        Config::from_toml_str(&format!(
            "[sink]\nkind = \"forward\"\n[sink.forward]\n{forward}"
        ))
    };
    let ok = load(r#"urls = ["http://a:8080", "http://b:8080/evlog"]"#).expect("urls");
    assert_eq!(
        ok.sink.forward.base_urls(),
        ["http://a:8080", "http://b:8080/evlog"]
    );
    let one = load(r#"url = "http://a:8080""#).expect("url");
    assert_eq!(one.sink.forward.base_urls(), ["http://a:8080"]);
    for (forward, rule) in [
        ("url = \"http://a:1\"\nurls = [\"http://b:1\"]", "both set"),
        (
            r#"urls = ["http://a:1", "ftp://b"]"#,
            "scheme must be http or https",
        ),
        (
            r#"urls = ["http://a:1/v1/batch"]"#,
            "ends with the endpoint",
        ),
        (r#"urls = ["http://a:1", "http://a:1/"]"#, "listed twice"),
        ("gzip = true", "sink.forward.urls for several"),
    ] {
        let e = load(forward).expect_err(forward).to_string();
        assert!(e.contains(rule), "{forward}: {e}");
        assert!(e.contains("sink.forward.url"), "{forward}: {e}");
    }
}
