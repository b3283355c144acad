//! `GET /ui` (the live page) and `GET /ui/feed` (its server-sent events), for an admin key; and
//! the snapshot of every count the feed sends once a second. See [`crate::ui`].
//!
//! A browser cannot add a header to a page load, so these two routes take the admin key also
//! as an HTTP Basic password (any user name; a 401 asks the browser to prompt) and as the
//! cookie `evlog_admin`, which `GET /ui?key=<admin key>` sets (HttpOnly, SameSite=Strict,
//! Path=/ui) before redirecting to `/ui` so the key leaves the address bar. The admin API's
//! own endpoints take only the headers (a cookie must not be able to reload the collector).

use std::sync::atomic::Ordering;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::admin::admit_key;
use super::answer::{answer, error, Resp};
use super::auth::presented_key;
use super::State;
use crate::ui::sse::{self, Filter};

/// The cookie `GET /ui?key=` sets.
const COOKIE: &str = "evlog_admin";

/// The admin key a page request presents: a header, the Basic password, or the cookie.
fn ui_key(req: &Request<Incoming>) -> Option<String> {
    if let Some(k) = presented_key(req) {
        return Some(k.to_owned());
    }
    let basic = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_owned()));
    if basic.is_some() {
        return basic;
    }
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("evlog_admin="))
        .map(sse::decode)
}

/// Admits a page request (see the module docs); a 401 invites Basic authentication.
fn admit(st: &State, req: &Request<Incoming>) -> Result<(), Resp> {
    admit_key(st, ui_key(req).as_deref()).map_err(|mut r| {
        if r.status() == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"evlog collector admin\", charset=\"UTF-8\"",
                ),
            );
        }
        r
    })
}

/// `GET /ui`.
pub(super) fn page(st: &State, req: &Request<Incoming>) -> Resp {
    let query = req.uri().query().unwrap_or("");
    if let Some((_, key)) = sse::query_pairs(query).find(|(k, _)| k == "key") {
        if let Err(r) = admit_key(st, Some(&key)) {
            return r;
        }
        let mut r = answer(StatusCode::SEE_OTHER, "", "text/plain");
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui"));
        let cookie = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/ui",
            sse::encode(&key)
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        return r;
    }
    if let Err(r) = admit(st, req) {
        return r;
    }
    let mut r = answer(StatusCode::OK, crate::ui::PAGE, "text/html; charset=utf-8");
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /ui/feed`.
pub(super) fn feed(st: &State, req: &Request<Incoming>) -> Resp {
    if let Err(r) = admit(st, req) {
        return r;
    }
    let filter = match Filter::from_query(req.uri().query().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let feed = &st.shared.feed;
    let Some(sub) = feed.subscribe() else {
        let why = if feed.is_closed() {
            "the collector is shutting down".to_string()
        } else {
            format!(
                "too many live feed subscribers (at most {})",
                crate::ui::feed::MAX_SUBSCRIBERS
            )
        };
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    };
    // Subscribed before the backlog is read: an item may come twice, never not at all.
    let backlog = feed.backlog();
    let body = sse::start(sub, backlog, filter);
    let mut r = Response::new(body.boxed());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A map of the non-zero counts.
fn nonzero<'a>(m: impl IntoIterator<Item = (&'a str, u64)>) -> Value {
    Value::Object(
        m.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_owned(), json!(n)))
            .collect::<Map<_, _>>(),
    )
}

/// Every count now, as the feed's `snapshot` event (see `collector/README.md`, "Live page"):
/// `{"t", "generation", "reloads", "totals", "destinations": [...], "tables": [...],
/// "sources": [...]}`; a table's `delivered_by_destination` is empty with one destination.
/// `sources` are the SDK processes' own reports summed per app and host
/// ([`crate::reports::Reports::to_json`]): what happened before the collector. A table's
/// `sdk_dropped` holds the events SDK processes lost before routing that were meant for it
/// (by `namespace.type`, which is the table's `dataset.table` unless routes rename it); a table
/// known only from such drops is listed too.
pub(crate) fn snapshot(st: &State) -> String {
    let shared = &st.shared;
    // Deliveries first, then the tables' acceptances: a row is never read delivered and not
    // yet accepted (in flight stays >= 0 while the counting is right).
    let mut delivered = std::collections::BTreeMap::<String, u64>::new();
    // With several destinations, each one's deliveries per table too.
    let mut by_dest = std::collections::BTreeMap::<String, Map<String, Value>>::new();
    for d in &shared.dests {
        for (t, n) in d.per_table.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            *delivered.entry(t.clone()).or_default() += n;
            if shared.several() {
                by_dest
                    .entry(t.clone())
                    .or_default()
                    .insert(d.name.clone(), json!(n));
            }
        }
    }
    let tables = shared.feed.tables();
    let stats = shared.snapshot();
    let counts = |s: &evlog_core::counters::Stats| {
        json!({
            "accepted": s.accepted + s.fanned_out,
            "delivered": s.delivered,
            "rejected": nonzero(s.rejected.iter().map(|(k, v)| (k.as_str(), *v))),
            "dropped": nonzero(s.dropped.iter().map(|(k, v)| (k.as_str(), *v))),
            "in_flight": s.in_flight,
            "retried": s.retried,
            "dead_letters_waiting": s.dead_letters_waiting,
        })
    };
    let destinations: Vec<Value> = shared
        .dests
        .iter()
        .map(|d| {
            let s = if shared.several() {
                stats.destinations.get(&d.name).cloned().unwrap_or_default()
            } else {
                stats.clone()
            };
            let mut v = counts(&s);
            v["name"] = json!(d.name);
            v["backlog_bytes"] = json!(d.pending.load(Ordering::Relaxed));
            v["healthy"] = json!(d.sink_healthy.load(Ordering::Relaxed));
            v["last_error"] = json!(d
                .sink_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone());
            v
        })
        .collect();
    let now = std::time::Instant::now();
    let sdk_dropped = st.reports.dropped_by_table(now);
    let mut names: std::collections::BTreeSet<&String> = tables.keys().collect();
    names.extend(delivered.keys());
    names.extend(sdk_dropped.keys());
    let tables: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let c = tables.get(name).cloned().unwrap_or_default();
            let d = delivered.get(name).copied().unwrap_or(0);
            let rejected: u64 = c.rejected.values().sum();
            let dropped: u64 = c.dropped.values().sum();
            json!({
                "table": name,
                "accepted": c.accepted,
                "delivered": d,
                "rejected": nonzero(c.rejected.iter().map(|(k, v)| (k.as_str(), *v))),
                "dropped": nonzero(c.dropped.iter().map(|(k, v)| (*k, *v))),
                "in_flight": c.accepted as i64 - (d + rejected + dropped) as i64,
                "delivered_by_destination": by_dest.get(name).cloned().unwrap_or_default(),
                "sdk_dropped": nonzero(
                    sdk_dropped.get(name).into_iter().flatten().map(|(k, v)| (k.as_str(), *v))
                ),
            })
        })
        .collect();
    let running = st.now();
    let mut totals = counts(&stats);
    totals["backlog_bytes"] = json!(shared.pending());
    json!({
        "t": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "generation": running.number,
        "reloads": {
            "ok": stats.config_reloads.get("ok").copied().unwrap_or(0),
            "error": stats.config_reloads.get("error").copied().unwrap_or(0),
        },
        "totals": totals,
        "destinations": destinations,
        "tables": tables,
        "sources": st.reports.to_json(now),
    })
    .to_string()
}

/// Publishes a snapshot every second until the feed closes (a task of the running collector).
pub(crate) async fn snapshots(st: std::sync::Arc<State>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !st.shared.feed.is_closed() {
        tick.tick().await;
        st.shared.feed.publish_snapshot(snapshot(&st));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_embeds_its_assets() {
        let page = crate::ui::PAGE;
        assert!(page.contains("<script>") && page.contains("<style>"));
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    }
}
