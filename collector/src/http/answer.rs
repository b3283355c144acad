//! Answers: a JSON body or the Prometheus text, and the error answers every handler shares.
//!
//! An error answer is `{"error": "<what was wrong and which setting limits it>"}` with its
//! status; a 429 (and a 503 for a full log) says `Retry-After: collector.retry_after_secs`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::State;

/// An answer's body: most are one piece ([`Full`]), the live feed streams ([`crate::ui`]).
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// An answer.
pub(crate) type Resp = Response<Body>;

/// A body in one piece.
pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// An answer with `body` as it is, of the given `Content-Type`.
pub(super) fn answer(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer from JSON text already written.
pub(super) fn json_text(status: StatusCode, body: String) -> Resp {
    answer(status, body, "application/json")
}

/// A JSON answer from a value.
pub(super) fn json(status: StatusCode, body: &Value) -> Resp {
    json_text(status, body.to_string())
}

/// `{"error": message}`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json(status, &json!({ "error": message.into() }))
}

/// The Prometheus text format 0.0.4.
pub(super) fn prometheus(body: String) -> Resp {
    answer(StatusCode::OK, body, "text/plain; version=0.0.4")
}

/// 429 with `Retry-After`: the client should come back later, nothing was kept.
pub(super) fn too_busy(st: &State, why: &str) -> Resp {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, why);
    r.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(st.now().collector.retry_after_secs),
    );
    r
}

/// The message for a JSON syntax error in `what` (the body, or one NDJSON line).
pub(super) fn syntax_error(what: &str, e: &serde_json::Error) -> String {
    format!(
        "{what}: invalid JSON at line {} column {}: {e}",
        e.line(),
        e.column()
    )
}
