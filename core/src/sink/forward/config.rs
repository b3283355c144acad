//! `[sink.forward]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::units::duration_str;
use crate::sink::http::Encoding;
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
    /// How request bodies are compressed: `"auto"` (default): zstd unless every collector URL
    /// names a loopback host (`127.0.0.0/8`, `::1`, `localhost`), where compressing costs the
    /// web host's CPU (about half of the flush thread's work per event) and saves no network;
    /// `"zstd"`, `"gzip"` or `"none"`. zstd takes up to ~40 % less CPU per event than gzip and
    /// its bodies are ~30–40 % smaller; a collector that does not take it (one older than this SDK
    /// answers 415) is sent gzip from then on, the request at once, nothing lost. A proxy on
    /// loopback that forwards elsewhere wants `"zstd"`.
    pub compression: Option<Compression>,
    /// The older spelling of `compression`: `true` (gzip), `false` (none) or `"auto"`. Give one
    /// of the two.
    pub gzip: Option<Gzip>,
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

/// `sink.forward.compression`: see [`ForwardConfig::compression`]. Read in any case; `false`,
/// `off`, `no` and `0` are read as `"none"`, as an environment variable may give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd unless every collector is on a loopback address.
    #[default]
    Auto,
    /// Always zstd (gzip once a collector answers 415 to it).
    Zstd,
    /// Always gzip.
    Gzip,
    /// Never compress.
    None,
}

impl Compression {
    /// The setting's value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Auto => "auto",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    /// The encoding of requests to `urls` (the collectors' base URLs); `None`: uncompressed.
    pub fn applies_to(self, urls: &[String]) -> Option<Encoding> {
        match self {
            Compression::Zstd => Some(Encoding::Zstd),
            Compression::Gzip => Some(Encoding::Gzip),
            Compression::None => None,
            Compression::Auto => (!urls.iter().all(|u| is_loopback(u))).then_some(Encoding::Zstd),
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Compression;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\", \"zstd\", \"gzip\" or \"none\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Compression, E> {
                if v {
                    // `true` names no codec.
                    return Err(E::invalid_value(serde::de::Unexpected::Bool(v), &self));
                }
                Ok(Compression::None)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Compression, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => Ok(Compression::Auto),
                    "zstd" => Ok(Compression::Zstd),
                    "gzip" => Ok(Compression::Gzip),
                    "none" | "false" | "off" | "no" | "0" => Ok(Compression::None),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `sink.forward.gzip`, the older spelling of [`ForwardConfig::compression`]. Written as a
/// boolean or `"auto"`; the strings `true`/`on`/`yes`/`1` and `false`/`off`/`no`/`0` (any
/// case) are read as the booleans, as an environment variable gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gzip {
    /// As `compression = "auto"`.
    #[default]
    Auto,
    /// As `compression = "gzip"`.
    On,
    /// As `compression = "none"`.
    Off,
}

impl Gzip {
    /// The `compression` value it stands for.
    pub fn as_compression(self) -> Compression {
        match self {
            Gzip::Auto => Compression::Auto,
            Gzip::On => Compression::Gzip,
            Gzip::Off => Compression::None,
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
            compression: None,
            gzip: None,
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
        if self.compression.is_some() && self.gzip.is_some() {
            return ConfigError::invalid(
                "sink.forward.gzip",
                "and sink.forward.compression are both set: give compression only (gzip is its \
                 older spelling: true = \"gzip\", false = \"none\")",
            );
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

    /// The compression chosen: `compression`, else what the older `gzip` says, else `"auto"`.
    pub fn compression(&self) -> Compression {
        self.compression
            .or(self.gzip.map(Gzip::as_compression))
            .unwrap_or_default()
    }

    /// The encoding of request bodies, `auto` resolved against the URLs; `None`: uncompressed.
    pub fn encoding(&self) -> Option<Encoding> {
        self.compression().applies_to(&self.base_urls())
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
