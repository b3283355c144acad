//! The collector's HTTP side: the endpoints, who may call them, the limits on a request, and
//! the answers.
//!
//! # Endpoints ([`routes::ROUTES`])
//!
//! | endpoint | key | answer |
//! |---|---|---|
//! | `POST /v1/events` | any role | one envelope: 202 `{"id"}`, or its refusal ([`events`]) |
//! | `POST /v1/batch` | any role | a JSON array or NDJSON: 200, one result per event ([`events`]) |
//! | `POST /v1/rows` | role `sdk` | rows an SDK converted: 200 with the refused rows ([`rows`]) |
//! | `POST /v1/report` | any role | an SDK process's own counters: 202 ([`report`], [`crate::reports`]) |
//! | `GET /healthz` | none | 200 `{"status":"alive"}` |
//! | `GET /readyz` | none | 200 `{"status":"ready"}`, or 503 with why ([`health`]) |
//! | `GET /metrics` | none | the Prometheus text format 0.0.4 ([`metrics`]) |
//! | `POST /admin/reload` | admin | re-read the config and schemas, swap them in ([`admin`]) |
//! | `GET /admin/config` | admin | the running config, secrets redacted, its hash ([`admin`]) |
//! | `GET /ui` | admin (also Basic, cookie) | the live page, HTML ([`ui`], [`crate::ui`]) |
//! | `GET /ui/feed` | admin (also Basic, cookie) | server-sent events for the page ([`ui`]) |
//!
//! Another path gets 404, another method 405. Every refusal is JSON `{"error": "…"}` naming
//! the setting that limits it; per-event refusals of a batch are in its results instead.
//!
//! # What an ingest request goes through, in order
//!
//! 1. One of `collector.max_in_flight` permits, held to the answer; none free: 429.
//! 2. Admission ([`auth`]): not draining (503), a known key when keys are configured (401),
//!    the write-ahead log under `collector.high_watermark` (429), the route's role (403).
//! 3. The body ([`body`]): `Content-Length` and bytes read within `collector.max_body_bytes`
//!    (413), gzip, zstd or identity only (415), the bytes of all bodies in progress within
//!    `collector.max_in_flight_bytes` (429), data at least every `collector.request_timeout`
//!    (408), the decompressed text within `collector.max_decompressed_bytes` (413).
//! 4. Nesting within `collector.max_depth` and syntax (400), at most
//!    `collector.max_batch_events` events or rows (413); per event: the envelope (400), the
//!    key's namespaces (403), `collector.max_event_bytes` (413), its schema (422: kept as a dead
//!    letter all the same). `/v1/rows` refuses a request whole for one bad name, day, id or
//!    size (400) or namespace (403); a row its schema refuses is kept as a dead letter.
//! 5. One write-ahead log record for the request; the 2xx only once it is durable. Too many
//!    writes waiting: 429; the log full: 503 with `Retry-After`; failing: 503.
//!
//! Every 429 says `Retry-After: collector.retry_after_secs`. An answer sent before the body was
//! read says `Connection: close`, and the connection closes lingering ([`crate::linger`]): the
//! rest of the body is read and discarded so the client reads the answer. Every answer is
//! counted in `evlog_collector_http_responses_total{path, code}`.
//!
//! # To add an endpoint
//!
//! One row in [`routes::ROUTES`] (path, method, and a probe or an ingest handler with the least
//! key role it needs) and one file with its handler. An ingest handler gets the admitted key
//! and the request with its body unread: it reads it with [`body::read_body`], appends with
//! [`State::append`] and answers with [`answer`]; permits, admission, the `/metrics` count and
//! the lingering close come with the row. A page for browsers (`Handler::Page`, as `/ui`)
//! admits its key itself and may answer with a streaming body ([`answer::Body`] is boxed).

// Handlers return ready responses as errors; they are built once per request, not hot data.
#![allow(clippy::result_large_err)]

mod admin;
mod answer;
mod auth;
mod body;
mod events;
mod health;
mod metrics;
mod report;
mod routes;
mod rows;
pub(crate) mod ui;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use arc_swap::ArcSwap;

use evlog_core::destinations::DestinationSet;
use evlog_core::ingest::{LiveProcessor, Processor};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, StatusCode};

use self::answer::{error, too_busy, Resp};
pub(crate) use self::metrics::Responses;
use self::routes::{Handler, ROUTES};
use crate::reload::{Generation, Reloads};
use crate::streamer::Shared;
use crate::wal::{AppendError, Counts, RecordBuilder, WalWriter};

/// What handlers share.
#[derive(Debug)]
pub(crate) struct State {
    /// The running configuration (replaced whole by a reload: [`crate::reload`]).
    pub live: ArcSwap<Generation>,
    /// Where reloads read from, and their counts.
    pub reloads: Reloads,
    /// What SDK processes reported about themselves (`POST /v1/report`).
    pub reports: crate::reports::Reports,
    /// The processor the sinks follow (their catalogs, BigQuery's table patches): a reload
    /// stores its new one here before `live`.
    pub sinks_follow: LiveProcessor,
    pub shared: Arc<Shared>,
    pub wal: WalWriter,
    pub draining: AtomicBool,
    /// Permits for ingest requests in progress (`max_in_flight`).
    pub in_flight: tokio::sync::Semaphore,
    /// Body bytes the requests in progress hold (bounded by `max_in_flight_bytes`).
    pub body_bytes: AtomicU64,
    /// Answers by endpoint and status.
    pub responses: Responses,
    /// Connections closing after an early answer, read to their end first ([`crate::linger`]).
    pub drains: Arc<crate::linger::Drains>,
}

impl State {
    /// The running configuration, for a moment (a request that must see one configuration
    /// throughout takes [`State::now_full`] once).
    pub fn now(&self) -> arc_swap::Guard<Arc<Generation>> {
        self.live.load()
    }

    /// The running configuration, kept.
    pub fn now_full(&self) -> Arc<Generation> {
        self.live.load_full()
    }

    /// The copies of a `namespace.type` event routed to `to`: one for every destination (its
    /// `[[transforms]]` alike for all), or one per destination when an entry of its table names
    /// destinations, each with the name its rules are chosen by.
    fn copies<'a>(
        &'a self,
        processor: &Processor,
        namespace: &str,
        type_name: &str,
        to: DestinationSet,
    ) -> impl Iterator<Item = (Option<&'a str>, DestinationSet)> + 'a {
        let per_copy = processor
            .transforms()
            .varies_by_destination(namespace, type_name);
        let mut whole = (!per_copy).then_some((None, to));
        let mut each = to.iter().filter(move |_| per_copy);
        std::iter::from_fn(move || {
            whole.take().or_else(|| {
                each.next().map(|i| {
                    (
                        Some(self.shared.names[i].as_str()),
                        DestinationSet::single(i),
                    )
                })
            })
        })
    }

    /// Whether the log holds more than `collector.high_watermark` not yet streamed (by the
    /// destination furthest behind).
    fn overloaded(&self) -> bool {
        self.shared.pending() > self.now().collector.high_watermark.0
    }

    /// Appends the request's record to the log (counted accepted once durable, with the
    /// request's `unrouted` events, which no route took); the error answer otherwise. A request
    /// whose events no route took at all writes nothing: they are counted at once.
    async fn append(&self, mut record: RecordBuilder, unrouted: u64) -> Result<(), Resp> {
        let budget = self.shared.feed.capture_budget(record.len());
        let mut counts = Counts {
            events: record.len() as u64,
            unrouted,
            copies: record.copies().to_vec(),
            tables: record.tally(budget),
        };
        if record.is_empty() {
            if unrouted > 0 {
                crate::count(&self.shared, &counts);
            }
            return Ok(());
        }
        // The tail's items go out once the record is durable, not with the counts.
        let tail = (budget > 0).then(|| counts.tables.take_items());
        match self.wal.append(record.finish(), counts).await {
            Ok(()) => {
                if let Some(items) = tail {
                    self.shared.feed.publish(items);
                }
                Ok(())
            }
            Err(AppendError::Busy) => Err(too_busy(self, "overloaded: too many writes waiting")),
            Err(e @ AppendError::Full(_)) => {
                let mut r = too_busy(self, &e.to_string());
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Err(r)
            }
            Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        }
    }
}

/// Answers one request: its route, or 404 or 405; counts the answer.
pub(crate) async fn handle(
    st: Arc<State>,
    mark: Arc<crate::linger::Mark>,
    mut req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    // A refusal may leave the body unread: hyper then closes the connection after the answer,
    // and the mark makes that close a lingering one (`read_body` reports a body read through).
    let has_body = !hyper::body::Body::is_end_stream(req.body());
    if has_body {
        mark.start();
        req.extensions_mut().insert(Arc::clone(&mark));
    }
    let at = routes::find(req.uri().path());
    let mut r = match ROUTES.get(at) {
        None => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.uri().path()),
        ),
        Some(route) if !route.method.is(req.method()) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} takes {}", route.path, route.method.as_str()),
        ),
        Some(route) => match route.handler {
            Handler::Probe(probe) => probe(&st),
            Handler::Admin(run) => match admin::admit(&st, &req) {
                Ok(()) => run(&st, req).await,
                Err(r) => r,
            },
            Handler::Page(run) => run(&st, &req),
            Handler::Ingest { role, run } => {
                // Bounded work in progress: past the limit, answer at once instead of queueing.
                if let Ok(_permit) = st.in_flight.try_acquire() {
                    match auth::admit(&st, &req, role, route.path) {
                        Ok(key) => run(&st, req, key).await,
                        Err(r) => r,
                    }
                } else {
                    too_busy(&st, "overloaded: too many requests in progress")
                }
            }
        },
    };
    st.responses.count(at, r.status());
    if mark.answered(has_body, r.status().is_success()) {
        // hyper closes the connection after this answer: say so, or a client could reuse it.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(r)
}
