//! Admission to the ingest endpoints: draining, the API key and its role, the high watermark;
//! and the namespace scope each event or row is checked against later.
//!
//! Keys come as `Authorization: Bearer <key>` or `X-Api-Key: <key>` and are compared in
//! constant time against every configured key. No keys configured: every request is admitted,
//! with no scope and no role.

use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use subtle::ConstantTimeEq;

use super::answer::{error, too_busy, Resp};
use super::State;
use crate::config::{ApiKey, KeyRole};

/// What every ingest endpoint checks before reading the body, in this order: not draining
/// (503), a known key (401), the log under its high watermark (429), the key's role at least
/// `role` (403). The key's namespace scopes are checked per event later ([`in_scope`]).
pub(super) fn admit(
    st: &State,
    req: &Request<Incoming>,
    role: KeyRole,
    path: &str,
) -> Result<Option<ApiKey>, Resp> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is shutting down",
        ));
    }
    let key = authorize(&st.now().collector.api_keys, req)?.cloned();
    if st.overloaded() {
        return Err(too_busy(
            st,
            "overloaded: the write-ahead log is over its high watermark",
        ));
    }
    if let Some(k) = &key {
        if !allows(k.role, role) {
            // Only a client key can fall short (of sdk): the message says what it may do.
            return Err(error(
                StatusCode::FORBIDDEN,
                format!(
                    "this API key has role \"{}\": it may send envelopes (/v1/events, /v1/batch), \
                     not rows; {path} needs a key with role = \"{}\"",
                    k.role.as_str(),
                    role.as_str()
                ),
            ));
        }
    }
    Ok(key)
}

/// Whether a key of role `has` may call a route for `needs`: an sdk key may do all a client
/// key may, and send rows.
fn allows(has: KeyRole, needs: KeyRole) -> bool {
    match needs {
        KeyRole::Client => true,
        KeyRole::Sdk => has == KeyRole::Sdk,
    }
}

/// The key of a request, if it is one of ours: compared in constant time against every key.
fn authorize<'a>(keys: &'a [ApiKey], req: &Request<Incoming>) -> Result<Option<&'a ApiKey>, Resp> {
    if keys.is_empty() {
        return Ok(None);
    }
    let Some(given) = presented_key(req) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing API key: send \"Authorization: Bearer <key>\" or \"X-Api-Key: <key>\"",
        ));
    };
    let mut found = None;
    for k in keys {
        if bool::from(k.key.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(k);
        }
    }
    match found {
        Some(k) => Ok(Some(k)),
        None => Err(error(StatusCode::UNAUTHORIZED, "unknown API key")),
    }
}

/// The key a request presents (`Authorization: Bearer <key>` or `X-Api-Key: <key>`), trimmed.
pub(super) fn presented_key(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Whether `key` may write `namespace` (any namespace when no keys are configured).
pub(super) fn in_scope(key: Option<&ApiKey>, namespace: &str) -> bool {
    key.is_none_or(|k| k.namespaces.iter().any(|n| n == "*" || n == namespace))
}

/// The refusal of a namespace out of the key's scope.
pub(super) fn out_of_scope(namespace: &str) -> String {
    format!("this API key may not write namespace {namespace:?}")
}

#[cfg(test)]
mod tests {
    use super::{allows, KeyRole};

    #[test]
    fn an_sdk_key_may_do_what_a_client_key_may() {
        assert!(allows(KeyRole::Client, KeyRole::Client));
        assert!(allows(KeyRole::Sdk, KeyRole::Client));
        assert!(allows(KeyRole::Sdk, KeyRole::Sdk));
        assert!(!allows(KeyRole::Client, KeyRole::Sdk));
    }
}
