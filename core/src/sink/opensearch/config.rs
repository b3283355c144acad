//! `[sink.opensearch]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::index::{IndexPattern, Placeholder, ALL};
use crate::config::error::ConfigError;
use crate::config::units::{duration_str, ByteSize};

/// Largest `max_bytes_per_request`: OpenSearch's default `http.max_content_length` (100 MB).
pub const REQUEST_LIMIT: u64 = 100 * 1000 * 1000;

/// How the sink authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenSearchAuth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic: `user` and `password`.
    Basic,
    /// `Authorization: ApiKey <api_key>` (Elasticsearch API keys, the base64 `id:key` form).
    ApiKey,
    /// `Authorization: Bearer <token>` (a proxy or an identity provider's token).
    Bearer,
}

/// The mapping of BigQuery JSON columns, whose value the sink sends as JSON (not as the text
/// BigQuery keeps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonMapping {
    /// `object`: subfields mapped dynamically (searchable by path; a value that is not an object,
    /// or a subfield whose type changes, is refused by OpenSearch and dead-lettered).
    #[default]
    Object,
    /// `flat_object` (OpenSearch 2.7 and later): every leaf a keyword, no mapping growth.
    FlatObject,
    /// `flattened` (Elasticsearch): the same idea under Elasticsearch's name.
    Flattened,
}

impl JsonMapping {
    /// The mapping type's name.
    pub fn type_name(self) -> &'static str {
        match self {
            JsonMapping::Object => "object",
            JsonMapping::FlatObject => "flat_object",
            JsonMapping::Flattened => "flattened",
        }
    }
}

/// `[sink.opensearch]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenSearchConfig {
    /// Node URLs, e.g. `["https://node1:9200", "https://node2:9200"]` (required with
    /// `kind = "opensearch"`). A request goes to one node; a node that refuses the connection is
    /// skipped at once, one that answers 5xx or times out is left for the next node on the retry.
    pub urls: Vec<String>,
    /// Index name pattern: `{namespace}`, `{type}` and `{date}` (the UTC day of `event_time`,
    /// `YYYY.MM.DD`) are replaced, the result lowercased. With `data_stream`, the data stream's name
    /// (no `{date}`).
    pub index: String,
    /// `index` names a data stream: documents get `@timestamp` (= `event_time`) and the template,
    /// when installed, declares the data stream.
    pub data_stream: bool,
    /// `none`, `basic` (`user`, `password`), `api_key` (`api_key`) or `bearer` (`token`).
    pub auth: OpenSearchAuth,
    /// User name (with `auth = "basic"`).
    pub user: Option<String>,
    /// Password (with `auth = "basic"`).
    pub password: Option<String>,
    /// API key, sent as `Authorization: ApiKey <api_key>` (with `auth = "api_key"`).
    pub api_key: Option<String>,
    /// Bearer token (with `auth = "bearer"`).
    pub token: Option<String>,
    /// PEM file of CA certificates trusted for `https` URLs, besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Timeout of one HTTP request.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// `_bulk` requests in flight at once.
    pub workers: usize,
    /// Most documents per `_bulk` request.
    pub max_docs_per_request: usize,
    /// Most bytes of documents per `_bulk` request (OpenSearch refuses bodies over its
    /// `http.max_content_length`, 100 MB by default).
    pub max_bytes_per_request: ByteSize,
    /// Put an index template per table (and one for the dead-letter index) before the first
    /// delivery, generated from the schema files.
    pub install_templates: bool,
    /// Template names: `<template_prefix>-<namespace>-<type>` and `<template_prefix>-dead-letters`.
    pub template_prefix: String,
    /// Lowest priority of the installed templates (each gets its own, more specific patterns
    /// higher, so that overlapping patterns never tie).
    pub template_priority: u32,
    /// Component templates every installed template is composed of (shards, replicas, ISM
    /// policies: whatever evlog does not generate).
    pub composed_of: Vec<String>,
    /// Mapping of JSON columns: `object`, `flat_object` (OpenSearch) or `flattened`
    /// (Elasticsearch).
    pub json_mapping: JsonMapping,
    /// Index of rejected events: `{namespace}` and `{date}` (UTC day the dead letter is written)
    /// are replaced, the result lowercased.
    pub dead_letter_index: String,
}

impl Default for OpenSearchConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            index: "{namespace}-{type}-{date}".into(),
            data_stream: false,
            auth: OpenSearchAuth::None,
            user: None,
            password: None,
            api_key: None,
            token: None,
            ca_file: None,
            gzip: true,
            timeout: Duration::from_secs(30),
            workers: 2,
            max_docs_per_request: 1000,
            max_bytes_per_request: ByteSize(5 * 1000 * 1000),
            install_templates: false,
            template_prefix: "evlog".into(),
            template_priority: 200,
            composed_of: Vec::new(),
            json_mapping: JsonMapping::Object,
            dead_letter_index: "{namespace}-_evlog_rejected".into(),
        }
    }
}

impl OpenSearchConfig {
    /// The section's rules; `selected` (`sink.kind = "opensearch"`) makes `urls`, and the
    /// credentials `auth` names, required. Values given are checked either way.
    pub fn validate(&self, selected: bool) -> Result<(), ConfigError> {
        if selected && self.urls.is_empty() {
            return ConfigError::invalid(
                "sink.opensearch.urls",
                "is required with sink.kind = \"opensearch\" (e.g. [\"http://127.0.0.1:9200\"])",
            );
        }
        for url in &self.urls {
            if let Err(rule) = check_url(url) {
                return ConfigError::invalid("sink.opensearch.urls", rule);
            }
        }
        if selected {
            let missing = match self.auth {
                OpenSearchAuth::Basic if self.user.is_none() => Some("sink.opensearch.user"),
                OpenSearchAuth::Basic if self.password.is_none() => {
                    Some("sink.opensearch.password")
                }
                OpenSearchAuth::ApiKey if self.api_key.is_none() => Some("sink.opensearch.api_key"),
                OpenSearchAuth::Bearer if self.token.is_none() => Some("sink.opensearch.token"),
                _ => None,
            };
            if let Some(key) = missing {
                return ConfigError::invalid(
                    key,
                    format!("is required with auth = {:?}", auth_name(self.auth)),
                );
            }
        }
        let index = IndexPattern::parse(&self.index, &ALL)
            .or_else(|rule| ConfigError::invalid("sink.opensearch.index", rule))?;
        if self.data_stream && index.has(Placeholder::Date) {
            return ConfigError::invalid(
                "sink.opensearch.index",
                "a data stream name takes no {date} (the data stream rolls its own backing indices)",
            );
        }
        if self.install_templates
            && !(index.has(Placeholder::Namespace) && index.has(Placeholder::Type))
        {
            return ConfigError::invalid(
                "sink.opensearch.index",
                "with install_templates, the pattern must contain {namespace} and {type}, so \
                 that each table has its own indices and template",
            );
        }
        let dead = IndexPattern::parse(
            &self.dead_letter_index,
            &[Placeholder::Namespace, Placeholder::Date],
        )
        .or_else(|rule| ConfigError::invalid("sink.opensearch.dead_letter_index", rule))?;
        if dead.template_pattern() == index.template_pattern() {
            return ConfigError::invalid(
                "sink.opensearch.dead_letter_index",
                "must differ from sink.opensearch.index",
            );
        }
        if self.workers == 0 || self.workers > 256 {
            return ConfigError::invalid("sink.opensearch.workers", "must be 1..=256");
        }
        if self.max_docs_per_request == 0 || self.max_docs_per_request > 100_000 {
            return ConfigError::invalid(
                "sink.opensearch.max_docs_per_request",
                "must be 1..=100000",
            );
        }
        if self.max_bytes_per_request.0 == 0 || self.max_bytes_per_request.0 > REQUEST_LIMIT {
            return ConfigError::invalid(
                "sink.opensearch.max_bytes_per_request",
                "must be 1..=100MB (OpenSearch's default http.max_content_length)",
            );
        }
        if self.timeout.is_zero() {
            return ConfigError::invalid("sink.opensearch.timeout", "must be greater than 0");
        }
        if let Err(rule) = check_template_name(&self.template_prefix) {
            return ConfigError::invalid("sink.opensearch.template_prefix", rule);
        }
        if let Some(bad) = self
            .composed_of
            .iter()
            .find(|c| check_template_name(c).is_err())
        {
            return ConfigError::invalid(
                "sink.opensearch.composed_of",
                format!("{bad:?} is not a template name (lowercase, no spaces, commas, #, * or leading _)"),
            );
        }
        Ok(())
    }
}

fn auth_name(a: OpenSearchAuth) -> &'static str {
    match a {
        OpenSearchAuth::None => "none",
        OpenSearchAuth::Basic => "basic",
        OpenSearchAuth::ApiKey => "api_key",
        OpenSearchAuth::Bearer => "bearer",
    }
}

/// A node URL: http or https, a host, no query or fragment, no credentials (they go in `auth`).
/// A path (a proxy's prefix) is kept.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    const HINT: &str = "give a node's base URL, e.g. http://127.0.0.1:9200";
    let parsed = crate::sink::nodes::check_base_url(url, HINT)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{url:?} carries credentials; set auth = \"basic\" with user and password instead"
        ));
    }
    if parsed.path().trim_end_matches('/').ends_with("/_bulk") {
        return Err(format!(
            "{url:?} ends with /_bulk (the sink adds it); {HINT}"
        ));
    }
    Ok(())
}

/// OpenSearch's rules for template names (the same as for index names, less the length).
fn check_template_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.starts_with(['_', '-', '+']) {
        return Err(format!("{name:?} must not start with _, - or +"));
    }
    if name
        .chars()
        .any(|c| c.is_uppercase() || super::index::FORBIDDEN.contains(&c))
    {
        return Err(format!(
            "{name:?} must be lowercase, without spaces, commas, #, *, ?, \", <, >, |, \\ or /"
        ));
    }
    Ok(())
}
