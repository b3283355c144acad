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
/// its high watermark or failing, the sink failing or dead letters waiting.
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
    if !st.shared.sink_healthy.load(Ordering::Relaxed)
        || st.shared.counters.snapshot(0).dead_letters_waiting > 0
    {
        let why = st
            .shared
            .sink_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the sink is failing: {why}"),
        );
    }
    answer::json(StatusCode::OK, &json!({"status": "ready"}))
}
