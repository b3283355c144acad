//! `[sink.forward]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::units::duration_str;
use crate::sink::nodes::check_base_url;

/// `[sink.forward]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:8080` (required with `kind = "forward"`;
    /// http or https, no query or fragment, not an endpoint such as `/v1/rows`). The sink posts to
    /// `<url>/v1/rows`; a path prefix (a collector behind a proxy at `/evlog`) is kept. One
    /// collector (or one load balancer in front of several); for several, `urls`.
    pub url: String,
    /// Several collectors' base URLs, each by `url`'s rules (give `url` or `urls`, not both).
    /// Requests are spread round-robin over the ones that answer; one that fails (connect error,
    /// timeout, 5xx, 429) is skipped for a backoff (`[retry]`'s `base` and `cap`, full jitter,
    /// growing with its failures) and then tried again; a failed request is retried at once on
    /// another (an attempt of its `retry.max_attempts`). When all fail, `[retry]` and the spool
    /// apply as with one URL.
    pub urls: Vec<String>,
    /// API key sent as `Authorization: Bearer <key>`; none for an open collector.
    pub api_key: Option<String>,
    /// Compress request bodies with gzip: `true`, `false` or `"auto"` (default): gzip unless
    /// every collector URL names a loopback host (`127.0.0.0/8`, `::1`, `localhost`), where
    /// compressing costs the web host's CPU (about half of the flush thread's work per event)
    /// and saves no network. A proxy on loopback that forwards elsewhere wants `true`.
    pub gzip: Gzip,
    /// Timeout of one HTTP request.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// Requests in flight at once.
    pub workers: usize,
    /// Most rows (or events) per request (keep it at or under the collector's
    /// `max_batch_events`).
    pub max_rows_per_request: usize,
    /// What the SDK sends. `"events"` (default): the events as they were logged, as envelopes
    /// to `<url>/v1/batch` (NDJSON); the flush thread neither parses nor validates them, the
    /// collector does (its schemas, routes and transforms; invalid events are dead-lettered
    /// there and counted rejected here from its answer). A key with role `"client"` is enough.
    /// `"rows"`: the SDK validates and converts each event with its own schemas and sends rows to
    /// `<url>/v1/rows` (key role `"sdk"`), as before. With `"events"`, a destination that some
    /// `[[transforms]]` entry applies to (no `destinations`, or naming it) is sent rows anyway:
    /// the SDK's transforms run on parsed events.
    pub format: ForwardFormat,
    /// How often the process reports its own counters to the collector (`POST /v1/report`:
    /// accepted, delivered, rejected and dropped by reason, spooled, queue depth), so what
    /// happened before the collector (a full queue in a PHP worker) shows beside its own counts;
    /// a last report goes at shutdown. `"0s"` turns reports off.
    #[serde(with = "crate::config::duration_str")]
    pub report_interval: Duration,
    /// The `app` label of those reports (e.g. `"checkout-web"`); empty: the program's name.
    /// The `host` label is the machine's host name.
    pub app: String,
}

/// `sink.forward.gzip`: see [`ForwardConfig::gzip`]. Written as a boolean or `"auto"`; the
/// strings `true`/`on`/`yes`/`1` and `false`/`off`/`no`/`0` (any case) are read as the booleans,
/// as an environment variable gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gzip {
    /// gzip unless every collector is on a loopback address.
    #[default]
    Auto,
    /// Always gzip.
    On,
    /// Never gzip.
    Off,
}

impl Gzip {
    /// Whether requests to `urls` (the collectors' base URLs) are compressed.
    pub fn applies_to(self, urls: &[String]) -> bool {
        match self {
            Gzip::On => true,
            Gzip::Off => false,
            Gzip::Auto => !urls.iter().all(|u| is_loopback(u)),
        }
    }
}

/// Whether `url`'s host is a loopback address or a `localhost` name (RFC 6761: those resolve
/// to loopback only). An unparsable URL is not: it gets the safe default, compression.
fn is_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    // An IPv6 host is given in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

impl Serialize for Gzip {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Gzip::Auto => s.serialize_str("auto"),
            Gzip::On => s.serialize_bool(true),
            Gzip::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Gzip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Gzip;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Gzip, E> {
                Ok(if v { Gzip::On } else { Gzip::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Gzip, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => Ok(Gzip::Auto),
                    "true" | "on" | "yes" | "1" => Ok(Gzip::On),
                    "false" | "off" | "no" | "0" => Ok(Gzip::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `sink.forward.format`: see [`ForwardConfig::format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardFormat {
    /// Envelopes to `/v1/batch`; the collector validates.
    #[default]
    Events,
    /// Validated rows to `/v1/rows`.
    Rows,
}

impl ForwardFormat {
    /// The setting's value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardFormat::Events => "events",
            ForwardFormat::Rows => "rows",
        }
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            urls: Vec::new(),
            api_key: None,
            gzip: Gzip::Auto,
            timeout: Duration::from_secs(10),
            workers: 4,
            max_rows_per_request: 1000,
            format: ForwardFormat::Events,
            report_interval: Duration::from_secs(10),
            app: String::new(),
        }
    }
}

impl ForwardConfig {
    /// The section's rules; `selected` (`sink.kind = "forward"`) makes `url` required. A URL
    /// given is checked either way.
    pub fn validate(&self, selected: bool) -> Result<(), ConfigError> {
        if !self.url.is_empty() && !self.urls.is_empty() {
            return ConfigError::invalid(
                "sink.forward.urls",
                "and sink.forward.url are both set: give one collector in url or several in urls",
            );
        }
        if selected && self.url.is_empty() && self.urls.is_empty() {
            return ConfigError::invalid(
                "sink.forward.url",
                "is required with sink.kind = \"forward\" (or sink.forward.urls for several \
                 collectors)",
            );
        }
        if !self.url.is_empty() {
            if let Err(rule) = check_url(&self.url) {
                return ConfigError::invalid("sink.forward.url", rule);
            }
        }
        for (i, url) in self.urls.iter().enumerate() {
            if let Err(rule) = check_url(url) {
                return ConfigError::invalid("sink.forward.urls", rule);
            }
            let trimmed = url.trim_end_matches('/');
            if self.urls[..i]
                .iter()
                .any(|u| u.trim_end_matches('/') == trimmed)
            {
                return ConfigError::invalid(
                    "sink.forward.urls",
                    format!("{url:?} is listed twice"),
                );
            }
        }
        if self.workers == 0 || self.workers > 256 {
            return ConfigError::invalid("sink.forward.workers", "must be 1..=256");
        }
        if self.max_rows_per_request == 0 {
            return ConfigError::invalid("sink.forward.max_rows_per_request", "must be at least 1");
        }
        if !self.report_interval.is_zero() && self.report_interval < Duration::from_secs(1) {
            return ConfigError::invalid(
                "sink.forward.report_interval",
                "must be at least 1s (or \"0s\" for no reports)",
            );
        }
        if !crate::sink::forward::wire::valid_label(&self.app) && !self.app.is_empty() {
            return ConfigError::invalid(
                "sink.forward.app",
                "must be 1 to 64 characters of letters, digits, '.', '_' or '-'",
            );
        }
        Ok(())
    }

    /// The collectors' base URLs: `urls`, or `url` alone.
    pub fn base_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }
}

/// Endpoints of the collector: a URL ending with one of them is an endpoint, not the base URL.
const ENDPOINTS: &[&str] = &["/v1/rows", "/v1/events", "/v1/batch"];

/// Checks a collector URL (`sink.forward.url`, each of `sink.forward.urls`): an http(s) URL with
/// a host, no query or fragment ([`check_base_url`]), and not one of the collector's endpoints.
/// The error is the rule broken.
fn check_url(url: &str) -> Result<(), String> {
    const BASE: &str = "give the collector's base URL, e.g. http://host:8080";
    let parsed = check_base_url(url, BASE)?;
    let path = parsed.path().trim_end_matches('/');
    if let Some(ep) = ENDPOINTS.iter().find(|ep| path.ends_with(*ep)) {
        return Err(format!(
            "{url:?} ends with the endpoint {ep} (the sink adds /v1/rows or /v1/batch itself); {BASE}"
        ));
    }
    Ok(())
}
