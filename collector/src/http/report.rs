//! `POST /v1/report`: an SDK process's own counters ([`crate::reports`]; the forward sink
//! sends them). Any API key may report (no namespace is written). Answers: 202 `{}` when taken;
//! 400 `{"error"}` naming the field for a report that breaks a rule or is not one
//! (`evlog_core::sink::forward::wire::Report`); 429 when too many processes report already.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::answer::{error, json, too_busy, Resp};
use super::body::read_body;
use super::State;
use crate::config::ApiKey;
use crate::reports::ReportError;

/// Largest report body (a report is a few hundred bytes).
const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Answers one report.
pub(super) async fn handle(st: &State, req: Request<Incoming>, _key: Option<ApiKey>) -> Resp {
    let (body, _budget) = match read_body(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.len() > MAX_REPORT_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a report is at most {MAX_REPORT_BYTES} bytes"),
        );
    }
    let report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a report: {e}")),
    };
    match st.reports.take(report, std::time::Instant::now()) {
        Ok(()) => json(StatusCode::ACCEPTED, &serde_json::json!({})),
        Err(e @ ReportError::Invalid { .. }) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ ReportError::Full(_)) => too_busy(st, &e.to_string()),
    }
}
