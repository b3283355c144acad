//! The route table: every endpoint the collector serves, once, with what runs before it.
//!
//! A row's place in [`ROUTES`] is also its row in the answer counts ([`super::metrics`]), so the
//! table's order is the order of `evlog_collector_http_responses_total` in `/metrics`.

use std::future::Future;
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::{Method, Request};

use super::answer::Resp;
use super::{admin, events, health, metrics, report, rows, ui, State};
use crate::config::{ApiKey, KeyRole};

/// One endpoint.
#[derive(Debug)]
pub(super) struct Route {
    /// The path, matched exactly; also its `path` label in `/metrics`.
    pub path: &'static str,
    /// The one method it takes; another gets 405.
    pub method: Verb,
    /// What answers it, and so what runs first.
    pub handler: Handler,
}

/// The methods routes take.
#[derive(Debug, Clone, Copy)]
pub(super) enum Verb {
    Get,
    Post,
}

impl Verb {
    pub(super) fn is(self, m: &Method) -> bool {
        match self {
            Verb::Get => m == Method::GET,
            Verb::Post => m == Method::POST,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
        }
    }
}

/// An ingest handler's answer to come (boxed: the table holds handlers of different futures).
pub(super) type Answering<'a> = Pin<Box<dyn Future<Output = Resp> + Send + 'a>>;

/// An ingest handler: the state, the request (body unread) and the key that was admitted
/// (`None` when no keys are configured).
pub(super) type Ingest = for<'a> fn(&'a State, Request<Incoming>, Option<ApiKey>) -> Answering<'a>;

/// An admin handler: the state and the request, once its admin key was admitted.
pub(super) type Admin = for<'a> fn(&'a State, Request<Incoming>) -> Answering<'a>;

/// What answers a route.
#[derive(Debug)]
pub(super) enum Handler {
    /// A probe: no key, no permit, answered at once.
    Probe(fn(&State) -> Resp),
    /// An admin endpoint: an admin key first ([`super::admin::admit`]), no permit.
    Admin(Admin),
    /// A page for browsers: it admits the admin key itself, from a header, an HTTP Basic
    /// password or its cookie ([`super::ui`]); no permit. It answers at once (a stream's
    /// body goes on in a task of its own).
    Page(fn(&State, &Request<Incoming>) -> Resp),
    /// An ingest endpoint: it runs holding one of `collector.max_in_flight` permits (429 when
    /// none is free) and after admission ([`super::auth::admit`]): not draining, a known key of
    /// at least `role` when keys are configured, the log under its high watermark.
    Ingest { role: KeyRole, run: Ingest },
}

/// Every endpoint. To add one: a row here and its handler in a file of its own.
pub(super) const ROUTES: &[Route] = &[
    Route {
        path: "/v1/events",
        method: Verb::Post,
        handler: Handler::Ingest {
            role: KeyRole::Client,
            run: |st, req, key| Box::pin(events::handle(st, req, key, false)),
        },
    },
    Route {
        path: "/v1/batch",
        method: Verb::Post,
        handler: Handler::Ingest {
            role: KeyRole::Client,
            run: |st, req, key| Box::pin(events::handle(st, req, key, true)),
        },
    },
    Route {
        path: "/v1/rows",
        method: Verb::Post,
        handler: Handler::Ingest {
            role: KeyRole::Sdk,
            run: |st, req, key| Box::pin(rows::handle(st, req, key)),
        },
    },
    Route {
        path: "/v1/report",
        method: Verb::Post,
        handler: Handler::Ingest {
            role: KeyRole::Client,
            run: |st, req, key| Box::pin(report::handle(st, req, key)),
        },
    },
    Route {
        path: "/healthz",
        method: Verb::Get,
        handler: Handler::Probe(health::alive),
    },
    Route {
        path: "/readyz",
        method: Verb::Get,
        handler: Handler::Probe(health::ready),
    },
    Route {
        path: "/metrics",
        method: Verb::Get,
        handler: Handler::Probe(metrics::handle),
    },
    Route {
        path: "/admin/reload",
        method: Verb::Post,
        handler: Handler::Admin(|st, _req| Box::pin(admin::reload(st))),
    },
    Route {
        path: "/admin/config",
        method: Verb::Get,
        handler: Handler::Admin(|st, _req| Box::pin(async move { admin::config(st) })),
    },
    Route {
        path: "/ui",
        method: Verb::Get,
        handler: Handler::Page(ui::page),
    },
    Route {
        path: "/ui/feed",
        method: Verb::Get,
        handler: Handler::Page(ui::feed),
    },
];

/// The place of `path`'s route in [`ROUTES`]; `ROUTES.len()` (counted as `other`) when none.
pub(super) fn find(path: &str) -> usize {
    ROUTES
        .iter()
        .position(|r| r.path == path)
        .unwrap_or(ROUTES.len())
}

/// The `path` label of the route at `i` ([`find`]).
pub(super) fn label(i: usize) -> &'static str {
    ROUTES.get(i).map_or("other", |r| r.path)
}
