//! The admin API: `POST /admin/reload` and `GET /admin/config`, for an admin key only.
//!
//! Admin keys (`collector.admin_keys`) come as API keys do (`Authorization: Bearer <key>` or
//! `X-Api-Key`) and are compared in constant time. No key: 401. An unknown key: 401. An
//! ingest key (`collector.api_keys`): 403, it may not administer. No admin key configured: 403
//! for everyone (the admin API is off; `SIGHUP` still reloads). Open ingest (no API keys)
//! never opens the admin API.
//!
//! - `POST /admin/reload`: 200 `{"result": "ok", "generation", "hash", "loaded_at",
//!   "changes": [...]}` once the new configuration runs; 422 `{"result": "error", "error",
//!   "running": {"generation", "hash"}}` when it was refused (the running one stays).
//! - `GET /admin/config`: 200 `{"generation", "hash", "loaded_at", "config"}`: the running
//!   configuration, every effective setting, secrets redacted ([`crate::reload`]).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::answer::{error, json, Resp};
use super::auth::presented_key;
use super::State;

/// Lets an admin key through; the refusal otherwise (see the module docs).
pub(super) fn admit(st: &State, req: &Request<Incoming>) -> Result<(), Resp> {
    admit_key(st, presented_key(req))
}

/// Lets `given` through when it is an admin key; the refusal otherwise (see the module docs).
pub(super) fn admit_key(st: &State, given: Option<&str>) -> Result<(), Resp> {
    let running = st.now();
    let c = &running.collector;
    if c.admin_keys.is_empty() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the admin API is off: set collector.admin_keys to use it (SIGHUP reloads without it)",
        ));
    }
    let Some(given) = given else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing admin key: send \"Authorization: Bearer <admin key>\" or \"X-Api-Key: <admin key>\"",
        ));
    };
    let matches = |k: &str| bool::from(k.as_bytes().ct_eq(given.as_bytes()));
    let mut admin = false;
    for k in &c.admin_keys {
        admin |= matches(k);
    }
    if admin {
        return Ok(());
    }
    let mut ingest = false;
    for k in &c.api_keys {
        ingest |= matches(&k.key);
    }
    if ingest {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this is an ingest key (collector.api_keys): the admin API takes an admin key \
             (collector.admin_keys)",
        ));
    }
    Err(error(StatusCode::UNAUTHORIZED, "unknown admin key"))
}

/// `POST /admin/reload`.
pub(super) async fn reload(st: &State) -> Resp {
    match crate::reload::reload(st).await {
        Ok(outcome) => json(StatusCode::OK, &outcome.to_json()),
        Err(why) => {
            let running = st.now();
            json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "result": "error",
                    "error": why,
                    "running": {"generation": running.number, "hash": running.hash},
                }),
            )
        }
    }
}

/// `GET /admin/config`.
pub(super) fn config(st: &State) -> Resp {
    let running = st.now_full();
    json(
        StatusCode::OK,
        &json!({
            "generation": running.number,
            "hash": running.hash,
            "loaded_at": running.loaded_at,
            "config": running.redacted(),
        }),
    )
}
