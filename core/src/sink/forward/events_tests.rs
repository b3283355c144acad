//! Unit tests of `format = "events"`: the framing, the check of the collector's `/v1/batch`
//! answer, and what each per-event status becomes, against a loopback server playing the
//! collector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::events::{check_batch_answer, frame};
use super::tests::{raw_server, Answer};
use super::*;
use crate::config::RetryConfig;
use crate::ingest::{EventInput, RawEvent};
use crate::sink::{Sink, SinkError};

/// A loopback HTTP/1.1 server answering the `i`-th request (from 0) with `answer(i, lines)`,
/// where `lines` are the request's NDJSON lines parsed (gunzipped first); records the heads.
pub(super) fn server(
    answer: impl Fn(usize, &[Value]) -> Answer + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    raw_server(move |i, body| {
        let lines: Vec<Value> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap_or(Value::Null))
            .collect();
        answer(i, &lines)
    })
}

/// The collector's `/v1/batch` answer giving line `i` the status `status(event)`.
pub(super) fn batch_answer(lines: &[Value], status: impl Fn(&Value) -> u16) -> Answer {
    let mut accepted = 0;
    let results: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let s = status(l);
            if s == 202 {
                accepted += 1;
                serde_json::json!({"index": i, "status": 202, "id": l["id"]})
            } else {
                let reason = match s {
                    422 => "invalid_value",
                    403 => "forbidden",
                    _ => "invalid_json",
                };
                serde_json::json!({"index": i, "status": s, "id": l["id"], "error": format!("bad {i}"),
                                   "reason": reason, "field": "n"})
            }
        })
        .collect();
    let refused = lines.len() - accepted;
    let body = serde_json::json!({"accepted": accepted, "refused": refused, "results": results});
    (200, "", body.to_string())
}

/// [`batch_answer`] as a collector that knows `?results=refused` answers: the refused only.
pub(super) fn refused_only_answer(lines: &[Value], status: impl Fn(&Value) -> u16) -> Answer {
    let (code, headers, body) = batch_answer(lines, status);
    let mut v: Value = serde_json::from_str(&body).expect("answer");
    let refused: Vec<Value> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] != 202)
        .cloned()
        .collect();
    v["results"] = refused.into();
    v["only_refused"] = true.into();
    (code, headers, v.to_string())
}

fn event(i: usize, body: &str) -> RawEvent {
    let id = format!("ev-{i}");
    let input = EventInput {
        namespace: "events",
        type_name: "t",
        event_json: body.to_string().into(),
        time: (i % 2 == 0).then_some(1_795_341_600_123_456),
        id: Some(&id),
    };
    RawEvent::new(input, 1_795_341_700_000_001)
}

pub(super) fn events(n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| event(i, &format!(r#"{{"i":{i}}}"#)))
        .collect()
}

fn sink(url: String, max: usize) -> ForwardSink {
    let cfg = ForwardConfig {
        url,
        max_rows_per_request: max,
        workers: 1,
        ..ForwardConfig::default()
    };
    let retry = RetryConfig {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
        max_attempts: 3,
    };
    ForwardSink::new(&cfg, &retry).expect("sink")
}

#[test]
fn events_are_framed_one_envelope_per_line_and_split_by_count_and_bytes() {
    let mut evs = events(5);
    // A pretty-printed body: its line feeds must not split the envelope.
    evs.push(event(5, "{\n  \"s\": \"a\\nb\",\n  \"i\": 5\n}"));
    let jobs = frame(&evs, 4, usize::MAX);
    assert_eq!(
        jobs.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        vec![0..4, 4..6]
    );
    let lines: Vec<&str> = jobs.iter().flat_map(|(_, t)| t.lines()).collect();
    assert_eq!(lines.len(), 6);
    let first: Value = serde_json::from_str(lines[0]).expect("json");
    assert_eq!(
        first,
        serde_json::json!({"namespace": "events", "type": "t", "time": "2026-11-22T10:00:00.123456Z",
                           "id": "ev-0", "event": {"i": 0}})
    );
    // Without a time of its own, the time of log() (received_at) is sent.
    let second: Value = serde_json::from_str(lines[1]).expect("json");
    assert_eq!(second["time"], "2026-11-22T10:01:40.000001Z");
    let last: Value = serde_json::from_str(lines[5]).expect("json");
    assert_eq!(last["event"], serde_json::json!({"s": "a\nb", "i": 5}));
    // The byte bound: each request holds what fits, a single event always goes.
    let jobs = frame(&evs, 100, 300);
    assert!(jobs.len() >= 3, "{}", jobs.len());
    assert_eq!(jobs.iter().map(|(r, _)| r.len()).sum::<usize>(), 6);
    assert!(jobs.iter().all(|(r, t)| t.lines().count() == r.len()));
}

#[test]
fn generated_ids_are_sent_as_uuid_text() {
    let raw = RawEvent::new(EventInput::new("events", "t", "{}"), 1_795_341_700_000_001);
    let (_, text) = frame(std::slice::from_ref(&raw), 10, usize::MAX).remove(0);
    let v: Value = serde_json::from_str(text.trim_end()).expect("json");
    let id = v["id"].as_str().expect("id");
    assert_eq!(id, raw.id.to_text());
    assert_eq!(id.len(), 36);
}

#[test]
fn an_answer_is_the_collectors_only_when_results_and_counts_match() {
    let ok = r#"{"accepted":1,"refused":1,"results":[{"index":0,"status":202,"id":"a"},
        {"index":1,"status":422,"error":"e","reason":"invalid_value"}]}"#;
    let a = check_batch_answer(ok.as_bytes(), 2).expect("valid");
    assert_eq!(a.results[1].reason.as_deref(), Some("invalid_value"));
    let all_stored = r#"{"accepted":3,"refused":0,"only_refused":true,"results":[]}"#;
    let a = check_batch_answer(all_stored.as_bytes(), 3).expect("valid");
    assert!(a.only_refused && a.results.is_empty());
    for (text, n, want) in [
        (ok, 3, "2 results for the 3 events"),
        (
            r#"{"accepted":2,"refused":0,"results":[{"index":0,"status":202},{"index":1,"status":422}]}"#,
            2,
            "accepted = 2",
        ),
        (
            r#"{"accepted":0,"refused":1,"results":[{"index":3,"status":400}]}"#,
            1,
            "result 0 for index 3",
        ),
        ("", 1, "empty body"),
        ("<html>", 1, "not JSON"),
        ("[1]", 1, "not an object"),
        (r#"{"accepted":1}"#, 1, "unexpected object"),
        // The refused only (`?results=refused`): one result per refused event, in order.
        (
            r#"{"accepted":1,"refused":0,"only_refused":true,"results":[]}"#,
            2,
            "accepted = 1 and refused = 0",
        ),
        (
            r#"{"accepted":1,"refused":1,"only_refused":true,"results":[]}"#,
            2,
            "0 results listed",
        ),
        (
            r#"{"accepted":0,"refused":2,"only_refused":true,"results":[{"index":1,"status":400},{"index":0,"status":400}]}"#,
            2,
            "index 0 out of order",
        ),
        (
            r#"{"accepted":1,"refused":1,"only_refused":true,"results":[{"index":2,"status":400}]}"#,
            2,
            "index 2 out of order or past the 2 events",
        ),
        (
            r#"{"accepted":1,"refused":1,"only_refused":true,"results":[{"index":0,"status":202}]}"#,
            2,
            "status 202 among the refused",
        ),
    ] {
        let e = check_batch_answer(text.as_bytes(), n).expect_err(text);
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn per_event_results_map_to_delivered_stored_and_refused() {
    // Every event listed (an older collector), and the refused only (`?results=refused`).
    per_event_results(false);
    per_event_results(true);
}

fn per_event_results(only_refused: bool) {
    // Odd events are refused: 1 and 5 kept by the collector (422), 3 not kept (403).
    let (url, seen) = server(move |_, lines| {
        let status = |l: &Value| match l["event"]["i"].as_u64() {
            Some(1 | 5) => 422,
            Some(3) => 403,
            _ => 202,
        };
        if only_refused {
            refused_only_answer(lines, status)
        } else {
            batch_answer(lines, status)
        }
    });
    let mut sink = sink(url, 4);
    assert!(sink.takes_events());
    let evs = events(7);
    let out = sink.deliver_events(&evs);
    assert_eq!(out.delivered, 4);
    assert!(out.failed.is_empty() && out.error.is_none());
    let stored: Vec<(&str, &str)> = out
        .rejected_stored
        .iter()
        .map(|r| (r.event_id.as_str(), r.reason))
        .collect();
    assert_eq!(
        stored,
        vec![("ev-1", "invalid_value"), ("ev-5", "invalid_value")]
    );
    assert_eq!(out.rejected_stored[0].field.as_deref(), Some("n"));
    assert_eq!(out.refused.len(), 1);
    assert_eq!(
        (out.refused[0].index, out.refused[0].reason),
        (3, "forbidden")
    );
    assert!(
        out.refused[0]
            .error
            .contains("(403) and did not keep it: bad 3"),
        "{}",
        out.refused[0].error
    );
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2, "7 events, at most 4 per request");
    let h = seen[0].to_ascii_lowercase();
    assert!(h.starts_with("post /v1/batch?results=refused "), "{h}");
    assert!(h.contains("content-type: application/x-ndjson"), "{h}");
    // `gzip = "auto"` (the default) toward a collector on loopback: not compressed.
    assert!(!h.contains("content-encoding"), "{h}");
}

#[test]
fn whole_request_failures_are_retried_or_fail_their_events() {
    // The first request answers 503 (retried, then stored); the second 400 (not retried).
    let (url, seen) = server(|i, lines| match i {
        0 => (503, "", String::new()),
        1 => batch_answer(lines, |_| 202),
        _ => (400, "", r#"{"error":"body: no events"}"#.into()),
    });
    let mut sink = sink(url.clone(), 3);
    let evs = events(5);
    let out = sink.deliver_events(&evs);
    assert_eq!(out.delivered, 3);
    assert_eq!(out.retried, 3);
    assert_eq!(out.failed, vec![3..5]);
    assert_eq!(out.attempt_errors, vec!["http_5xx", "http_4xx"]);
    let e = out.error.expect("error");
    assert_eq!(e.kind(), "http_4xx");
    assert!(e.to_string().contains(&format!("{url}/v1/batch")), "{e}");
    assert_eq!(seen.lock().expect("lock").len(), 3);
}

#[test]
fn a_2xx_that_is_not_the_collectors_answer_fails_without_retry() {
    let (url, seen) = server(|_, _| (204, "", String::new()));
    let mut sink = sink(url, 10);
    let out = sink.deliver_events(&events(2));
    assert_eq!(out.failed, vec![0..2]);
    assert_eq!(out.error.as_ref().map(SinkError::kind), Some("bad_answer"));
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[test]
fn rows_format_does_not_take_events() {
    let cfg = ForwardConfig {
        url: "http://127.0.0.1:9".into(),
        format: ForwardFormat::Rows,
        ..ForwardConfig::default()
    };
    let sink = ForwardSink::new(&cfg, &RetryConfig::default()).expect("sink");
    assert!(!sink.takes_events());
}
