//! `GET /healthz` (the process answers) and `GET /readyz` (it should be sent traffic).

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::json;

use super::answer::{self, error, Resp};
use super::State;

/// `GET /healthz`: 200 `{"status":"alive"}` while the process serves at all.
pub(super) fn alive(_: &State) -> Resp {
    answer::json(StatusCode::OK, &json!({"status": "alive"}))
}

/// `GET /readyz`: 200 `{"status":"ready"}`, or 503 with the reason: shutting down, the log over
/// its high watermark or failing, the sink failing or dead letters waiting. With several
/// destinations: 503 only when every destination is failing; 200 with `"failing": {name: why}`
/// when some are.
pub(super) fn ready(st: &State) -> Resp {
    if st.draining.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if st.overloaded() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the write-ahead log is over its high watermark",
        );
    }
    if let Some(why) = st.wal.failing() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the write-ahead log cannot be written: {why}"),
        );
    }
    // Dead letters held back in the log block it as failing rows do: not ready either way.
    // With several destinations, one failing does not stop the others: not ready only when
    // every one is failing (the answer names those that are).
    let failing: Vec<(&str, String)> = st
        .shared
        .dests
        .iter()
        .filter(|d| {
            !d.sink_healthy.load(Ordering::Relaxed)
                || d.counters.snapshot(0).dead_letters_waiting > 0
        })
        .map(|d| {
            let why = d
                .sink_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            (d.name.as_str(), why)
        })
        .collect();
    if !st.shared.several() {
        if let Some((_, why)) = failing.first() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the sink is failing: {why}"),
            );
        }
        return answer::json(StatusCode::OK, &json!({"status": "ready"}));
    }
    let named: serde_json::Map<String, serde_json::Value> = failing
        .iter()
        .map(|(n, why)| (n.to_string(), json!(why)))
        .collect();
    if failing.len() == st.shared.dests.len() {
        let list: Vec<String> = failing.iter().map(|(n, w)| format!("{n}: {w}")).collect();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("every destination is failing: {}", list.join("; ")),
        );
    }
    if named.is_empty() {
        return answer::json(StatusCode::OK, &json!({"status": "ready"}));
    }
    answer::json(
        StatusCode::OK,
        &json!({"status": "ready", "failing": named}),
    )
}
