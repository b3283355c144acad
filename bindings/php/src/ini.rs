//! php.ini directives and how they become a core [`Config`].
//!
//! Every directive is `PHP_INI_SYSTEM` (php.ini, `-d`, php-fpm `php_admin_value`): the pipeline
//! is built once per process from the values seen by the first evlog call, so a per-request
//! `ini_set()` could not take effect anyway. Precedence, lowest first: core defaults, the TOML
//! file (`evlog.config`, else the `EVLOG_CONFIG` environment variable), `evlog.*` directives,
//! `EVLOG_*` environment variables (core's rule for every binding).
//!
//! "Not set" and "set to an empty value" differ: the directives are registered without a default
//! value (a NULL string, which no php.ini line, `-d` or `php_admin_value` can produce), so a
//! directive absent everywhere reads as `None` and keeps the value of the file or core's default.
//! PHP's ini parser turns the bare words `null`, `off`, `no`, `false` and `none` into an empty
//! string, so `evlog.mode=null` or `evlog.bigquery_auth=none` written without quotes arrive as
//! `""`: an empty value is an error that says to quote the word, except for boolean directives,
//! where it means off (PHP's own convention for `off`/`no`/`false`).
//!
//! Mode names are core's sink kinds: `file`, `null`, `forward`, `bigquery`, `opensearch`. `collector` is refused
//! with a message naming `forward` (one name per sink in every binding and doc); the directives
//! `evlog.collector_url` and `evlog.api_key` of earlier versions are registered only to refuse them
//! with the new names (`evlog.forward_url`, `evlog.forward_api_key`), instead of PHP's silent
//! ignoring of unknown directives.
//!
//! [`resolve`] also reports, per directive, the value core will use and where it came from
//! (`php --ri evlog`), with secrets redacted.
//!
//! This module has no PHP types: [`build_config`] and [`resolve`] take a lookup function, so they
//! are unit-tested without a PHP runtime. Their errors are [`Error`]s (messages in `error.rs`).

use std::path::Path;

use evlog_core::config::ConfigError;
use evlog_core::Config;

use crate::error::{DirectiveError, Error};

/// How a directive's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Path of the TOML config file (not a key).
    ConfigFile,
    /// `sink.kind`: `file`, `null`, `forward`, `bigquery` or `opensearch`.
    Mode,
    /// One of a fixed set of words (a TOML string).
    Choice(&'static [&'static str]),
    /// A string key.
    Str,
    /// A list of strings, written comma-separated (`http://a:9200, http://b:9200`).
    List,
    /// A string key shown redacted by `php --ri evlog`.
    Secret,
    /// An integer key.
    Int,
    /// A boolean key (`1`/`on`/`yes`/`true` or `0`/`off`/`no`/`false`; empty = off).
    Bool,
    /// A boolean key that may also be `auto` (core decides), read as [`Kind::Bool`] otherwise.
    BoolOrAuto,
    /// A size: an integer (bytes) or a string such as `64MiB`.
    Size,
    /// A duration string such as `250ms`, `1s`.
    Duration,
    /// A directive of an earlier version: setting it is an error naming its replacement.
    Renamed(&'static str),
}

/// One directive: name, TOML key (dotted), kind, one-line description (for the stub and README).
#[derive(Debug, Clone, Copy)]
pub struct Directive {
    /// `evlog.*` name.
    pub name: &'static str,
    /// Dotted core config key, empty for directives that are not keys.
    pub key: &'static str,
    /// How the value is parsed.
    pub kind: Kind,
    /// What it does.
    pub doc: &'static str,
}

const fn d(name: &'static str, key: &'static str, kind: Kind, doc: &'static str) -> Directive {
    Directive {
        name,
        key,
        kind,
        doc,
    }
}

/// The modes, which are core's `sink.kind` values.
pub const MODES: &[&str] = &["file", "null", "forward", "bigquery", "opensearch"];

/// Every directive, in the order `php --ri evlog` shows them.
pub const DIRECTIVES: &[Directive] = &[
    d(
        "evlog.config",
        "",
        Kind::ConfigFile,
        "TOML config file (same keys as every evlog binding); default: $EVLOG_CONFIG",
    ),
    d(
        "evlog.mode",
        "sink.kind",
        Kind::Mode,
        "sink: file, \"null\" (quoted), forward (to an evlog collector), bigquery or opensearch",
    ),
    d(
        "evlog.file_dir",
        "sink.file.dir",
        Kind::Str,
        "file sink root: <dataset>/<table><YYYYMMDD>.ndjson",
    ),
    d(
        "evlog.file_fsync",
        "sink.file.fsync",
        Kind::Bool,
        "file sink: fdatasync after every batch",
    ),
    d(
        "evlog.file_max_open_files",
        "sink.file.max_open_files",
        Kind::Int,
        "file sink: most files kept open at once",
    ),
    d(
        "evlog.file_dead_letter_table",
        "sink.file.dead_letter_table",
        Kind::Str,
        "file sink: table of rejected events in each dataset",
    ),
    d(
        "evlog.forward_url",
        "sink.forward.url",
        Kind::Str,
        "forward: the collector's base URL (required), e.g. http://127.0.0.1:8080",
    ),
    d(
        "evlog.forward_urls",
        "sink.forward.urls",
        Kind::List,
        "forward: several collectors' base URLs, comma-separated (instead of forward_url)",
    ),
    d(
        "evlog.forward_api_key",
        "sink.forward.api_key",
        Kind::Secret,
        "forward: API key sent as Authorization: Bearer <key>",
    ),
    d(
        "evlog.forward_compression",
        "sink.forward.compression",
        Kind::Choice(&["auto", "zstd", "gzip", "none"]),
        "forward: request bodies' compression: auto (zstd unless every collector is on loopback), zstd, gzip or none",
    ),
    d(
        "evlog.forward_gzip",
        "sink.forward.gzip",
        Kind::BoolOrAuto,
        "forward: older spelling of forward_compression: on (gzip), off (none) or auto",
    ),
    d(
        "evlog.forward_timeout",
        "sink.forward.timeout",
        Kind::Duration,
        "forward: timeout of one HTTP request",
    ),
    d(
        "evlog.forward_workers",
        "sink.forward.workers",
        Kind::Int,
        "forward: requests in flight at once",
    ),
    d(
        "evlog.forward_max_rows_per_request",
        "sink.forward.max_rows_per_request",
        Kind::Int,
        "forward: most rows per request",
    ),
    d(
        "evlog.forward_format",
        "sink.forward.format",
        Kind::Choice(&["events", "rows"]),
        "forward: events (as logged, the collector validates) or rows (validated here)",
    ),
    d(
        "evlog.forward_report_interval",
        "sink.forward.report_interval",
        Kind::Duration,
        "forward: how often a worker reports its own counters to the collector (0s: never)",
    ),
    d(
        "evlog.forward_app",
        "sink.forward.app",
        Kind::Str,
        "forward: the app label of those reports (default: the program's name)",
    ),
    d(
        "evlog.bigquery_project",
        "sink.bigquery.project",
        Kind::Str,
        "bigquery: GCP project that owns the datasets (required)",
    ),
    d(
        "evlog.bigquery_auth",
        "sink.bigquery.auth",
        Kind::Choice(&["application_default", "service_account", "token", "none"]),
        "bigquery: application_default, service_account, token or \"none\" (quoted)",
    ),
    d(
        "evlog.bigquery_credentials",
        "sink.bigquery.credentials",
        Kind::Str,
        "bigquery: service-account key file (auth = service_account)",
    ),
    d(
        "evlog.bigquery_token",
        "sink.bigquery.token",
        Kind::Secret,
        "bigquery: fixed bearer token (auth = token)",
    ),
    d(
        "evlog.bigquery_base_url",
        "sink.bigquery.base_url",
        Kind::Str,
        "bigquery: API root (a proxy or the test server)",
    ),
    d(
        "evlog.bigquery_max_rows_per_request",
        "sink.bigquery.max_rows_per_request",
        Kind::Int,
        "bigquery: most rows per insertAll request",
    ),
    d(
        "evlog.bigquery_max_bytes_per_request",
        "sink.bigquery.max_bytes_per_request",
        Kind::Size,
        "bigquery: most bytes of row JSON per request",
    ),
    d(
        "evlog.bigquery_gzip",
        "sink.bigquery.gzip",
        Kind::Bool,
        "bigquery: gzip request bodies",
    ),
    d(
        "evlog.bigquery_workers",
        "sink.bigquery.workers",
        Kind::Int,
        "bigquery: insertAll requests in flight at once",
    ),
    d(
        "evlog.bigquery_request_timeout",
        "sink.bigquery.request_timeout",
        Kind::Duration,
        "bigquery: timeout of one HTTP request",
    ),
    d(
        "evlog.bigquery_skip_invalid_rows",
        "sink.bigquery.skip_invalid_rows",
        Kind::Bool,
        "bigquery: BigQuery's skipInvalidRows",
    ),
    d(
        "evlog.bigquery_create_tables",
        "sink.bigquery.create_tables",
        Kind::Bool,
        "bigquery: create missing datasets and tables from the schema files",
    ),
    d(
        "evlog.bigquery_api",
        "sink.bigquery.api",
        Kind::Choice(&["insert_all", "storage_write"]),
        "bigquery: insert_all (REST) or storage_write (gRPC Storage Write API)",
    ),
    d(
        "evlog.bigquery_exactly_once",
        "sink.bigquery.exactly_once",
        Kind::Bool,
        "bigquery: storage_write through committed streams with offsets (nothing stored twice)",
    ),
    d(
        "evlog.bigquery_storage_url",
        "sink.bigquery.storage_url",
        Kind::Str,
        "bigquery: Storage Write API endpoint (gRPC; http:// for a test server)",
    ),
    d(
        "evlog.bigquery_positions_dir",
        "sink.bigquery.positions_dir",
        Kind::Str,
        "bigquery: exactly_once: where stream offsets are kept for replays after a crash",
    ),
    d(
        "evlog.bigquery_dead_letter_table",
        "sink.bigquery.dead_letter_table",
        Kind::Str,
        "bigquery: table of rejected events in each dataset",
    ),
    d(
        "evlog.opensearch_urls",
        "sink.opensearch.urls",
        Kind::List,
        "opensearch: node URLs, comma-separated (required), e.g. http://127.0.0.1:9200",
    ),
    d(
        "evlog.opensearch_index",
        "sink.opensearch.index",
        Kind::Str,
        "opensearch: index pattern with {namespace}, {type}, {date} (or a data stream's name)",
    ),
    d(
        "evlog.opensearch_data_stream",
        "sink.opensearch.data_stream",
        Kind::Bool,
        "opensearch: the index names a data stream (documents get @timestamp)",
    ),
    d(
        "evlog.opensearch_auth",
        "sink.opensearch.auth",
        Kind::Choice(&["basic", "api_key", "bearer", "none"]),
        "opensearch: \"none\" (quoted), basic, api_key or bearer",
    ),
    d(
        "evlog.opensearch_user",
        "sink.opensearch.user",
        Kind::Str,
        "opensearch: user name (auth = basic)",
    ),
    d(
        "evlog.opensearch_password",
        "sink.opensearch.password",
        Kind::Secret,
        "opensearch: password (auth = basic)",
    ),
    d(
        "evlog.opensearch_api_key",
        "sink.opensearch.api_key",
        Kind::Secret,
        "opensearch: API key sent as Authorization: ApiKey <key> (auth = api_key)",
    ),
    d(
        "evlog.opensearch_token",
        "sink.opensearch.token",
        Kind::Secret,
        "opensearch: bearer token (auth = bearer)",
    ),
    d(
        "evlog.opensearch_ca_file",
        "sink.opensearch.ca_file",
        Kind::Str,
        "opensearch: PEM file of CA certificates trusted for https URLs",
    ),
    d(
        "evlog.opensearch_gzip",
        "sink.opensearch.gzip",
        Kind::Bool,
        "opensearch: gzip request bodies",
    ),
    d(
        "evlog.opensearch_timeout",
        "sink.opensearch.timeout",
        Kind::Duration,
        "opensearch: timeout of one HTTP request",
    ),
    d(
        "evlog.opensearch_workers",
        "sink.opensearch.workers",
        Kind::Int,
        "opensearch: _bulk requests in flight at once",
    ),
    d(
        "evlog.opensearch_max_docs_per_request",
        "sink.opensearch.max_docs_per_request",
        Kind::Int,
        "opensearch: most documents per _bulk request",
    ),
    d(
        "evlog.opensearch_max_bytes_per_request",
        "sink.opensearch.max_bytes_per_request",
        Kind::Size,
        "opensearch: most bytes of documents per _bulk request",
    ),
    d(
        "evlog.opensearch_install_templates",
        "sink.opensearch.install_templates",
        Kind::Bool,
        "opensearch: put index templates generated from the schema files",
    ),
    d(
        "evlog.opensearch_template_prefix",
        "sink.opensearch.template_prefix",
        Kind::Str,
        "opensearch: prefix of the templates' names",
    ),
    d(
        "evlog.opensearch_template_priority",
        "sink.opensearch.template_priority",
        Kind::Int,
        "opensearch: lowest priority of the templates",
    ),
    d(
        "evlog.opensearch_composed_of",
        "sink.opensearch.composed_of",
        Kind::List,
        "opensearch: component templates, comma-separated, every template is composed of",
    ),
    d(
        "evlog.opensearch_json_mapping",
        "sink.opensearch.json_mapping",
        Kind::Choice(&["object", "flat_object", "flattened"]),
        "opensearch: mapping of JSON columns: object, flat_object or flattened",
    ),
    d(
        "evlog.opensearch_dead_letter_index",
        "sink.opensearch.dead_letter_index",
        Kind::Str,
        "opensearch: index of rejected events, {namespace} and {date} replaced",
    ),
    d(
        "evlog.schema_dir",
        "schemas.dir",
        Kind::Str,
        "<namespace>/<type>.json BigQuery schema files",
    ),
    d(
        "evlog.schema_reload_interval",
        "schemas.reload_interval",
        Kind::Duration,
        "how often a worker's flush thread looks for changed schema files (0s: never)",
    ),
    d(
        "evlog.spool_enabled",
        "spool.enabled",
        Kind::Bool,
        "disk spool for what the sink cannot take (replayed by the next worker); default on for forward, bigquery, opensearch",
    ),
    d(
        "evlog.spool_dir",
        "spool.dir",
        Kind::Str,
        "disk spool directory; default /var/tmp/evlog-<uid>/<sink>-<hash of its target>, made 0700 on first use",
    ),
    d(
        "evlog.spool_max_bytes",
        "spool.max_bytes",
        Kind::Size,
        "disk spool size limit",
    ),
    d(
        "evlog.spool_segment_bytes",
        "spool.segment_bytes",
        Kind::Size,
        "disk spool segment file size",
    ),
    d(
        "evlog.spool_fsync",
        "spool.fsync",
        Kind::Bool,
        "fsync every spool append",
    ),
    d(
        "evlog.batch_max_rows",
        "batch.max_rows",
        Kind::Int,
        "flush a table's batch at this many rows",
    ),
    d(
        "evlog.batch_max_bytes",
        "batch.max_bytes",
        Kind::Size,
        "... or this many bytes",
    ),
    d(
        "evlog.batch_max_age",
        "batch.max_age",
        Kind::Duration,
        "... or when its oldest row is this old",
    ),
    d(
        "evlog.shutdown_timeout",
        "batch.shutdown_timeout",
        Kind::Duration,
        "how long process shutdown (MSHUTDOWN) waits for delivery",
    ),
    d(
        "evlog.queue_capacity",
        "queue.capacity",
        Kind::Int,
        "events waiting in memory; beyond it evlog_log() returns false",
    ),
    d(
        "evlog.queue_max_bytes",
        "queue.max_bytes",
        Kind::Size,
        "bytes waiting in memory; beyond it evlog_log() returns false",
    ),
    d(
        "evlog.max_event_bytes",
        "queue.max_event_bytes",
        Kind::Size,
        "largest event body",
    ),
    d(
        "evlog.queue_overflow",
        "queue.overflow",
        Kind::Choice(&["drop", "spool"]),
        "queue full: drop (count) or spool (needs evlog.spool_enabled)",
    ),
    d(
        "evlog.retry_base",
        "retry.base",
        Kind::Duration,
        "first retry backoff",
    ),
    d(
        "evlog.retry_cap",
        "retry.cap",
        Kind::Duration,
        "longest retry backoff",
    ),
    d(
        "evlog.retry_max_attempts",
        "retry.max_attempts",
        Kind::Int,
        "attempts per request",
    ),
    d(
        "evlog.collector_url",
        "",
        Kind::Renamed("evlog.forward_url"),
        "renamed evlog.forward_url (setting it is an error)",
    ),
    d(
        "evlog.api_key",
        "",
        Kind::Renamed("evlog.forward_api_key"),
        "renamed evlog.forward_api_key (setting it is an error)",
    ),
];

/// Where a directive's effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Core's default.
    Default,
    /// The TOML file.
    File,
    /// The `evlog.*` directive (php.ini, `-d`, `php_admin_value`).
    Directive,
    /// An environment variable (named).
    Env(String),
    /// Not a setting (a renamed directive).
    Unused,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("evlog.config file"),
            Source::Directive => f.write_str("php.ini"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Unused => f.write_str("-"),
        }
    }
}

/// One row of `php --ri evlog`: a directive, the value core uses, where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// `evlog.*` name.
    pub name: &'static str,
    /// The value core uses (secrets redacted), or a note for renamed directives.
    pub value: String,
    /// Where it comes from.
    pub source: Source,
}

/// The configuration and, per directive, its effective value.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the pipeline is built from.
    pub config: Config,
    /// One row per directive, in [`DIRECTIVES`] order.
    pub effective: Vec<Effective>,
}

/// Builds the configuration from directive values (`lookup(name)`: `None` = not set, see the
/// module docs for empty values) and the given environment. The error names the directive (or
/// the file) and the rule.
pub fn build_config(
    lookup: impl Fn(&str) -> Option<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Error> {
    resolve(lookup, env).map(|r| r.config)
}

/// [`build_config`] plus each directive's effective value and source.
pub fn resolve(
    lookup: impl Fn(&str) -> Option<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Resolved, Error> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut table = toml::Table::new();
    let mut origin = String::from("php.ini");
    let (file, file_source) = match lookup("evlog.config") {
        Some(v) if v.trim().is_empty() => {
            return Err(empty_error("evlog.config", Kind::ConfigFile).into())
        }
        Some(v) => (Some(v.trim().to_string()), Source::Directive),
        None => match env
            .iter()
            .find(|(k, v)| k == "EVLOG_CONFIG" && !v.is_empty())
        {
            Some((_, v)) => (Some(v.clone()), Source::Env("EVLOG_CONFIG".into())),
            None => (None, Source::Default),
        },
    };
    if let Some(path) = &file {
        let text = std::fs::read_to_string(Path::new(path)).map_err(|source| {
            DirectiveError::ReadFile {
                path: path.clone(),
                source,
            }
        })?;
        table = toml::from_str(&text).map_err(|source| DirectiveError::ParseFile {
            path: path.clone(),
            source,
        })?;
        origin = format!("{path} with php.ini evlog.* directives");
    }
    let file_table = table.clone();
    let mut set = Vec::new();
    for dir in DIRECTIVES {
        let Some(raw) = lookup(dir.name) else {
            continue;
        };
        let raw = raw.trim();
        if let Kind::Renamed(new) = dir.kind {
            return Err(DirectiveError::Renamed {
                name: dir.name,
                new,
            }
            .into());
        }
        // PHP reads `off` in php.ini as an empty string.
        if raw.is_empty() && !matches!(dir.kind, Kind::Bool | Kind::BoolOrAuto) {
            return Err(empty_error(dir.name, dir.kind).into());
        }
        let value = match dir.kind {
            Kind::ConfigFile | Kind::Renamed(_) => continue,
            Kind::Mode => match raw {
                m if MODES.contains(&m) => toml::Value::String(m.into()),
                "collector" => return Err(DirectiveError::CollectorMode { name: dir.name }.into()),
                _ => {
                    return Err(DirectiveError::NotOneOf {
                        name: dir.name,
                        value: raw.into(),
                        allowed: MODES,
                        mode: true,
                    }
                    .into())
                }
            },
            Kind::Choice(words) => {
                if !words.contains(&raw) {
                    return Err(DirectiveError::NotOneOf {
                        name: dir.name,
                        value: raw.into(),
                        allowed: words,
                        mode: false,
                    }
                    .into());
                }
                toml::Value::String(raw.into())
            }
            Kind::Str | Kind::Secret | Kind::Duration => toml::Value::String(raw.into()),
            Kind::List => {
                let items: Vec<&str> = raw.split(',').map(str::trim).collect();
                if items.iter().any(|i| i.is_empty()) {
                    return Err(DirectiveError::EmptyListItem { name: dir.name }.into());
                }
                toml::Value::Array(items.into_iter().map(|i| i.into()).collect())
            }
            Kind::Int => {
                toml::Value::Integer(raw.parse().map_err(|_| DirectiveError::NotInteger {
                    name: dir.name,
                    value: raw.into(),
                })?)
            }
            Kind::BoolOrAuto if raw.eq_ignore_ascii_case("auto") => {
                toml::Value::String("auto".into())
            }
            Kind::Bool | Kind::BoolOrAuto => {
                toml::Value::Boolean(parse_bool(raw).ok_or_else(|| DirectiveError::NotBoolean {
                    name: dir.name,
                    value: raw.into(),
                    or_auto: dir.kind == Kind::BoolOrAuto,
                })?)
            }
            Kind::Size => match raw.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(raw.into()),
            },
        };
        set_key(&mut table, dir.key, value);
        set.push(dir.name);
    }
    let text = toml::to_string(&table).map_err(|source| DirectiveError::Serialize {
        origin: origin.clone(),
        source,
    })?;
    let config =
        Config::from_toml_with_env(&text, &origin, env.iter().cloned()).map_err(|error| {
            let directive = directive_of(&error);
            Error::Config { error, directive }
        })?;
    let effective = effective_values(&config, &file, file_source, &file_table, &set, &env);
    Ok(Resolved { config, effective })
}

/// Refuses `evlog.*` names given to PHP (php.ini, `-d`) that are no directive: PHP itself ignores
/// unknown names silently, so a misspelt `evlog.spool_enabled` would run without the spool.
pub fn check_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<(), Error> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| {
            let n = n.as_ref();
            n.starts_with("evlog.") && !DIRECTIVES.iter().any(|d| d.name == n)
        })
        .map(|n| n.as_ref().to_string())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(DirectiveError::Unknown(unknown).into())
}

fn empty_error(name: &'static str, kind: Kind) -> DirectiveError {
    let example = match kind {
        Kind::Mode => Some(format!("{name}=\"null\" for the null sink")),
        Kind::Choice(words) => Some(format!("{name}=\"{}\"", words[words.len() - 1])),
        _ => None,
    };
    DirectiveError::Empty { name, example }
}

/// Each directive's effective value in `config` and where it came from.
fn effective_values(
    config: &Config,
    file: &Option<String>,
    file_source: Source,
    file_table: &toml::Table,
    set: &[&str],
    env: &[(String, String)],
) -> Vec<Effective> {
    let tree = toml::Value::try_from(config).unwrap_or(toml::Value::Table(toml::Table::new()));
    DIRECTIVES
        .iter()
        .map(|dir| {
            let (value, source) = match dir.kind {
                Kind::ConfigFile => (
                    file.clone().unwrap_or_else(|| "(none)".into()),
                    file_source.clone(),
                ),
                Kind::Renamed(new) => (format!("(renamed {new})"), Source::Unused),
                _ => {
                    let var = format!("EVLOG_{}", dir.key.replace('.', "_").to_ascii_uppercase());
                    // Core's rule: an `EVLOG_` prefix, the rest compared without case.
                    let from_env = env
                        .iter()
                        .any(|(k, _)| k.starts_with("EVLOG_") && k.eq_ignore_ascii_case(&var));
                    let source = if from_env {
                        Source::Env(var)
                    } else if set.contains(&dir.name) {
                        Source::Directive
                    } else if get_key(file_table, dir.key).is_some() {
                        Source::File
                    } else {
                        Source::Default
                    };
                    let value = match (get_key_value(&tree, dir.key), dir.kind) {
                        (Some(toml::Value::String(s)), Kind::Secret) if !s.is_empty() => {
                            "(set, redacted)".to_string()
                        }
                        (Some(toml::Value::String(s)), _) if s.is_empty() => "(not set)".into(),
                        (Some(toml::Value::String(s)), _) => s.clone(),
                        (Some(v), _) => v.to_string(),
                        // Core decides per destination (see its SpoolConfig).
                        (None, _) if dir.key == "spool.enabled" => {
                            "auto (on for forward, bigquery, opensearch)".into()
                        }
                        (None, _) if dir.key == "spool.dir" => {
                            "auto (/var/tmp/evlog-<uid>/<sink>-<hash>)".into()
                        }
                        // Unset, `gzip` (its older spelling) decides, else `auto`.
                        (None, _) if dir.key == "sink.forward.compression" => {
                            match config.sink.forward.compression() {
                                evlog_core::sink::forward::Compression::Auto => {
                                    "auto (zstd unless every collector is on loopback)".into()
                                }
                                c => format!("{} (from evlog.forward_gzip)", c.as_str()),
                            }
                        }
                        (None, _) => "(not set)".into(),
                    };
                    (value, source)
                }
            };
            Effective {
                name: dir.name,
                value,
                source,
            }
        })
        .collect()
}

fn get_key<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let (first, rest) = match dotted.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (dotted, None),
    };
    let v = table.get(first)?;
    match (rest, v) {
        (None, v) => Some(v),
        (Some(rest), toml::Value::Table(t)) => get_key(t, rest),
        _ => None,
    }
}

fn get_key_value<'a>(tree: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    match tree {
        toml::Value::Table(t) => get_key(t, dotted),
        _ => None,
    }
}

/// The directive of the key a core error names (`Invalid`'s key, or the `` in `key` `` the TOML
/// deserializer appends), which the message then names too.
fn directive_of(e: &ConfigError) -> Option<&'static str> {
    let msg;
    let key = match e {
        ConfigError::Invalid { key, .. } => Some(*key),
        _ => {
            msg = e.to_string();
            msg.rsplit_once("in `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(key, _)| key)
        }
    };
    key.and_then(|k| DIRECTIVES.iter().find(|d| d.key == k))
        .map(|d| d.name)
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        // "" is what PHP's ini parser makes of bare off/no/false/none/null.
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" | "none" | "" => Some(false),
        _ => None,
    }
}

fn set_key(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts = dotted.split('.').peekable();
    let mut cur = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_string(), value);
            return;
        }
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use evlog_core::config::SinkKind;
    use evlog_core::sink::bigquery::AuthMethod;
    use evlog_core::sink::forward::{Compression, Gzip};
    use evlog_core::sink::opensearch::{JsonMapping, OpenSearchAuth};

    use super::*;

    fn build_env(pairs: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Resolved, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(|n| map.get(n).cloned(), env).map_err(|e| e.to_string())
    }

    fn build(pairs: &[(&str, &str)]) -> Result<Config, String> {
        build_env(pairs, &[]).map(|r| r.config)
    }

    fn row<'a>(r: &'a Resolved, name: &str) -> &'a Effective {
        r.effective.iter().find(|e| e.name == name).expect(name)
    }

    #[test]
    fn unset_directives_give_core_defaults() {
        assert_eq!(build(&[]).unwrap(), Config::default());
    }

    #[test]
    fn directives_set_typed_keys() {
        let c = build(&[
            ("evlog.mode", "null"),
            ("evlog.file_dir", "/tmp/x"),
            ("evlog.file_fsync", "On"),
            ("evlog.batch_max_rows", "7"),
            ("evlog.batch_max_bytes", "2MiB"),
            ("evlog.queue_max_bytes", "4096"),
            ("evlog.max_event_bytes", "1024"),
            ("evlog.batch_max_age", "250ms"),
            ("evlog.shutdown_timeout", "3s"),
            ("evlog.spool_enabled", "1"),
            ("evlog.spool_dir", "/tmp/spool"),
            ("evlog.spool_segment_bytes", "1MiB"),
            ("evlog.spool_fsync", ""),
            ("evlog.queue_overflow", "spool"),
        ])
        .unwrap();
        assert_eq!(c.sink.kind, SinkKind::Null);
        assert_eq!(c.sink.file.dir, Path::new("/tmp/x"));
        assert!(c.sink.file.fsync);
        assert_eq!(c.batch.max_rows, 7);
        assert_eq!(c.batch.max_bytes.0, 2 * 1024 * 1024);
        assert_eq!(c.queue.max_bytes.0, 4096);
        assert_eq!(c.queue.max_event_bytes.0, 1024);
        assert_eq!(c.batch.max_age, Duration::from_millis(250));
        assert_eq!(c.batch.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(c.spool.enabled, Some(true));
        assert_eq!(c.spool.dir.as_deref(), Some(Path::new("/tmp/spool")));
        assert_eq!(c.spool.segment_bytes.0, 1024 * 1024);
        assert!(!c.spool.fsync, "an empty boolean (bare off) is off");
        assert_eq!(c.queue.overflow, evlog_core::config::Overflow::Spool);
    }

    #[test]
    fn forward_mode_from_directives() {
        let c = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_url", "http://127.0.0.1:8080"),
            ("evlog.forward_api_key", "k-1"),
            ("evlog.forward_gzip", "off"),
            ("evlog.forward_timeout", "2s"),
            ("evlog.forward_workers", "2"),
            ("evlog.forward_max_rows_per_request", "100"),
            ("evlog.forward_format", "rows"),
        ])
        .unwrap();
        assert_eq!(c.sink.kind, SinkKind::Forward);
        let f = &c.sink.forward;
        assert_eq!(f.url, "http://127.0.0.1:8080");
        assert_eq!(f.api_key.as_deref(), Some("k-1"));
        assert_eq!(f.gzip, Some(Gzip::Off));
        assert_eq!(f.timeout, Duration::from_secs(2));
        assert_eq!((f.workers, f.max_rows_per_request), (2, 100));
        assert_eq!(f.format, evlog_core::sink::forward::ForwardFormat::Rows);
        let e = build(&[("evlog.mode", "forward")]).unwrap_err();
        assert!(
            e.contains("sink.forward.url") && e.contains("evlog.forward_url"),
            "{e}"
        );
        let c = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_urls", "http://a:8080, http://b:8080/evlog"),
        ])
        .unwrap();
        assert_eq!(
            c.sink.forward.urls,
            ["http://a:8080", "http://b:8080/evlog"]
        );
        let e = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_url", "http://a:8080"),
            ("evlog.forward_urls", "http://b:8080"),
        ])
        .unwrap_err();
        assert!(
            e.contains("both set") && e.contains("evlog.forward_urls"),
            "{e}"
        );
        for (raw, want) in [("auto", Gzip::Auto), ("", Gzip::Off), ("yes", Gzip::On)] {
            let c = build(&[
                ("evlog.mode", "forward"),
                ("evlog.forward_url", "http://a:8080"),
                ("evlog.forward_gzip", raw),
            ])
            .unwrap();
            assert_eq!(c.sink.forward.gzip, Some(want), "{raw:?}");
        }
        let c = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_url", "http://a:8080"),
        ])
        .unwrap();
        assert_eq!(c.sink.forward.gzip, None);
        assert_eq!(c.sink.forward.compression(), Compression::Auto);
        let c = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_url", "http://a:8080"),
            ("evlog.forward_compression", "gzip"),
        ])
        .unwrap();
        assert_eq!(c.sink.forward.compression, Some(Compression::Gzip));
        let e = build(&[
            ("evlog.mode", "forward"),
            ("evlog.forward_url", "http://a:8080"),
            ("evlog.forward_gzip", "maybe"),
        ])
        .unwrap_err();
        assert!(
            e.contains("evlog.forward_gzip = maybe") && e.contains("or auto"),
            "{e}"
        );
    }

    #[test]
    fn bigquery_mode_from_directives() {
        let c = build(&[
            ("evlog.mode", "bigquery"),
            ("evlog.bigquery_project", "p"),
            ("evlog.bigquery_auth", "token"),
            ("evlog.bigquery_token", "t"),
            ("evlog.bigquery_credentials", "/etc/key.json"),
            ("evlog.bigquery_base_url", "http://127.0.0.1:9/bigquery/v2"),
            ("evlog.bigquery_max_rows_per_request", "50"),
            ("evlog.bigquery_max_bytes_per_request", "1MB"),
            ("evlog.bigquery_gzip", "no"),
            ("evlog.bigquery_workers", "3"),
            ("evlog.bigquery_request_timeout", "4s"),
            ("evlog.bigquery_skip_invalid_rows", "yes"),
            ("evlog.bigquery_create_tables", "true"),
            ("evlog.bigquery_dead_letter_table", "dead"),
        ])
        .unwrap();
        assert_eq!(c.sink.kind, SinkKind::Bigquery);
        let b = &c.sink.bigquery;
        assert_eq!(b.project, "p");
        assert_eq!(b.auth, AuthMethod::Token);
        assert_eq!(b.token.as_deref(), Some("t"));
        assert_eq!(b.credentials.as_deref(), Some(Path::new("/etc/key.json")));
        assert_eq!(b.base_url, "http://127.0.0.1:9/bigquery/v2");
        assert_eq!(
            (b.max_rows_per_request, b.max_bytes_per_request.0),
            (50, 1_000_000)
        );
        assert!(!b.gzip && b.skip_invalid_rows && b.create_tables);
        assert_eq!((b.workers, b.request_timeout), (3, Duration::from_secs(4)));
        assert_eq!(b.dead_letter_table, "dead");
        let c = build(&[
            ("evlog.mode", "bigquery"),
            ("evlog.bigquery_project", "p"),
            ("evlog.bigquery_auth", "none"),
        ])
        .unwrap();
        assert_eq!(c.sink.bigquery.auth, AuthMethod::None);
        let e = build(&[("evlog.mode", "bigquery")]).unwrap_err();
        assert!(e.contains("evlog.bigquery_project"), "{e}");
        let e = build(&[("evlog.bigquery_auth", "oauth")]).unwrap_err();
        assert!(
            e.contains("evlog.bigquery_auth = oauth") && e.contains("application_default"),
            "{e}"
        );
    }

    #[test]
    fn opensearch_mode_from_directives() {
        let r = build_env(
            &[
                ("evlog.mode", "opensearch"),
                ("evlog.opensearch_urls", "http://a:9200, https://b:9200"),
                ("evlog.opensearch_index", "logs-{namespace}-{type}"),
                ("evlog.opensearch_data_stream", "on"),
                ("evlog.opensearch_auth", "basic"),
                ("evlog.opensearch_user", "evlog"),
                ("evlog.opensearch_password", "s3cret"),
                ("evlog.opensearch_ca_file", "/etc/ca.pem"),
                ("evlog.opensearch_gzip", "off"),
                ("evlog.opensearch_timeout", "5s"),
                ("evlog.opensearch_workers", "3"),
                ("evlog.opensearch_max_docs_per_request", "200"),
                ("evlog.opensearch_max_bytes_per_request", "2MB"),
                ("evlog.opensearch_install_templates", "1"),
                ("evlog.opensearch_template_prefix", "app"),
                ("evlog.opensearch_template_priority", "300"),
                ("evlog.opensearch_composed_of", "ism-30d,shards-1"),
                ("evlog.opensearch_json_mapping", "flat_object"),
                ("evlog.opensearch_dead_letter_index", "dead-{namespace}"),
            ],
            &[],
        )
        .unwrap();
        let c = &r.config;
        assert_eq!(c.sink.kind, SinkKind::Opensearch);
        let o = &c.sink.opensearch;
        assert_eq!(o.urls, ["http://a:9200", "https://b:9200"]);
        assert_eq!(o.index, "logs-{namespace}-{type}");
        assert!(o.data_stream && o.install_templates && !o.gzip);
        assert_eq!(o.auth, OpenSearchAuth::Basic);
        assert_eq!(
            (o.user.as_deref(), o.password.as_deref()),
            (Some("evlog"), Some("s3cret"))
        );
        assert_eq!(o.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!((o.timeout, o.workers), (Duration::from_secs(5), 3));
        assert_eq!(
            (o.max_docs_per_request, o.max_bytes_per_request.0),
            (200, 2_000_000)
        );
        assert_eq!(
            (o.template_prefix.as_str(), o.template_priority),
            ("app", 300)
        );
        assert_eq!(o.composed_of, ["ism-30d", "shards-1"]);
        assert_eq!(o.json_mapping, JsonMapping::FlatObject);
        assert_eq!(o.dead_letter_index, "dead-{namespace}");
        assert_eq!(
            row(&r, "evlog.opensearch_password").value,
            "(set, redacted)"
        );
        assert_eq!(
            row(&r, "evlog.opensearch_urls").value,
            r#"["http://a:9200", "https://b:9200"]"#
        );
        let e = build(&[("evlog.mode", "opensearch")]).unwrap_err();
        assert!(e.contains("evlog.opensearch_urls"), "{e}");
        let e = build(&[("evlog.opensearch_urls", "http://a:9200,")]).unwrap_err();
        assert!(e.contains("evlog.opensearch_urls: an empty item"), "{e}");
        let e = build(&[("evlog.opensearch_auth", "")]).unwrap_err();
        assert!(e.contains("evlog.opensearch_auth=\"none\""), "{e}");
    }

    /// Every key of the forward and BigQuery sinks and of the spool has a directive, and every
    /// directive's key exists in core's configuration.
    #[test]
    fn directives_cover_the_sinks_and_the_spool() {
        let tree = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        for section in [
            "sink.forward",
            "sink.bigquery",
            "sink.opensearch",
            "sink.file",
            "spool",
        ] {
            let toml::Value::Table(t) = get_key_value(&tree, section).unwrap() else {
                panic!("{section}")
            };
            keys.extend(t.keys().map(|k| format!("{section}.{k}")));
        }
        // Keys that default to absent (not in the serialized defaults).
        keys.extend(
            [
                "sink.forward.api_key",
                "sink.forward.compression",
                "sink.forward.gzip",
                "sink.bigquery.credentials",
                "sink.bigquery.token",
                "sink.bigquery.positions_dir",
                "sink.opensearch.user",
                "sink.opensearch.password",
                "sink.opensearch.api_key",
                "sink.opensearch.token",
                "sink.opensearch.ca_file",
                "spool.enabled",
                "spool.dir",
            ]
            .map(String::from),
        );
        for key in &keys {
            assert!(
                DIRECTIVES.iter().any(|d| d.key == key),
                "no evlog.* directive for {key}"
            );
        }
        let with_optional: Vec<String> = keys.clone();
        for dir in DIRECTIVES.iter().filter(|d| !d.key.is_empty()) {
            assert!(
                get_key_value(&tree, dir.key).is_some()
                    || with_optional.iter().any(|k| k == dir.key),
                "{} names {}, which core does not have",
                dir.name,
                dir.key
            );
        }
    }

    /// The stub and the README list every directive.
    #[test]
    fn stub_and_readme_list_every_directive() {
        let stub = include_str!("../evlog.stub.php");
        let readme = include_str!("../README.md");
        for dir in DIRECTIVES {
            assert!(stub.contains(dir.name), "evlog.stub.php lacks {}", dir.name);
            assert!(readme.contains(dir.name), "README.md lacks {}", dir.name);
        }
    }

    #[test]
    fn unknown_evlog_names_are_refused() {
        assert!(check_names(["evlog.mode", "memory_limit", "extension"]).is_ok());
        let e = check_names(["evlog.spool_enable", "evlog.mode", "evlog.forward_ulr"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown php.ini directive evlog.forward_ulr, evlog.spool_enable"),
            "{e}"
        );
    }

    #[test]
    fn empty_values_are_refused_with_a_quoting_hint() {
        // What PHP hands over for `evlog.mode=null` written without quotes.
        let e = build(&[("evlog.mode", "")]).unwrap_err();
        assert!(
            e.contains("evlog.mode is set to an empty value") && e.contains("evlog.mode=\"null\""),
            "{e}"
        );
        let e = build(&[("evlog.bigquery_auth", "")]).unwrap_err();
        assert!(e.contains("evlog.bigquery_auth=\"none\""), "{e}");
        let e = build(&[("evlog.batch_max_rows", " ")]).unwrap_err();
        assert!(
            e.contains("evlog.batch_max_rows is set to an empty value"),
            "{e}"
        );
        let e = build(&[("evlog.config", "")]).unwrap_err();
        assert!(e.contains("evlog.config is set to an empty value"), "{e}");
    }

    #[test]
    fn errors_name_the_directive_and_rule() {
        let e = build(&[("evlog.batch_max_rows", "many")]).unwrap_err();
        assert!(
            e.contains("evlog.batch_max_rows") && e.contains("integer"),
            "{e}"
        );
        let e = build(&[("evlog.batch_max_rows", "0")]).unwrap_err();
        assert!(
            e.contains("batch.max_rows") && e.contains("evlog.batch_max_rows"),
            "{e}"
        );
        let e = build(&[("evlog.mode", "collector")]).unwrap_err();
        assert!(
            e.contains("evlog.mode = collector") && e.contains("evlog.mode=forward"),
            "{e}"
        );
        let e = build(&[("evlog.mode", "kafka")]).unwrap_err();
        assert!(
            e.contains("unknown mode") && e.contains("file, null, forward, bigquery"),
            "{e}"
        );
        let e = build(&[("evlog.collector_url", "http://x")]).unwrap_err();
        assert!(
            e.contains("evlog.collector_url was renamed evlog.forward_url"),
            "{e}"
        );
        let e = build(&[("evlog.api_key", "")]).unwrap_err();
        assert!(e.contains("renamed evlog.forward_api_key"), "{e}");
        let e = build(&[("evlog.file_fsync", "maybe")]).unwrap_err();
        assert!(e.contains("evlog.file_fsync"), "{e}");
        let e = build(&[("evlog.forward_timeout", "soon")]).unwrap_err();
        assert!(
            e.contains("in `sink.forward.timeout` (php.ini: evlog.forward_timeout)")
                && !e.contains('\n'),
            "{e}"
        );
        let e = build(&[("evlog.batch_max_bytes", "5parsecs")]).unwrap_err();
        assert!(e.ends_with("(php.ini: evlog.batch_max_bytes)"), "{e}");
        let e = build(&[("evlog.mode", "forward")]).unwrap_err();
        assert!(e.ends_with("(php.ini: evlog.forward_url)"), "{e}");
        let e = build(&[("evlog.config", "/nonexistent/evlog.toml")]).unwrap_err();
        assert!(
            e.contains("evlog.config") && e.contains("/nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn directives_override_the_config_file_and_env_overrides_both() {
        let dir = std::env::temp_dir().join(format!("evlog-php-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("evlog.toml");
        std::fs::write(
            &file,
            "[batch]\nmax_rows = 11\nmax_age = \"2s\"\n[sink.forward]\napi_key = \"from-file\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let r = build_env(
            &[
                ("evlog.config", path),
                ("evlog.batch_max_rows", "12"),
                ("evlog.retry_cap", "9s"),
                ("evlog.retry_base", "1s"),
            ],
            &[("EVLOG_RETRY_BASE", "2s")],
        )
        .unwrap();
        assert_eq!(r.config.batch.max_rows, 12);
        assert_eq!(r.config.batch.max_age, Duration::from_secs(2));
        assert_eq!(r.config.retry.base, Duration::from_secs(2));
        let shown = |n| {
            let e = row(&r, n);
            format!("{} [{}]", e.value, e.source)
        };
        assert_eq!(shown("evlog.config"), format!("{path} [php.ini]"));
        assert_eq!(shown("evlog.batch_max_rows"), "12 [php.ini]");
        assert_eq!(shown("evlog.batch_max_age"), "2s [evlog.config file]");
        assert_eq!(shown("evlog.retry_base"), "2s [env EVLOG_RETRY_BASE]");
        assert_eq!(shown("evlog.retry_cap"), "9s [php.ini]");
        assert_eq!(shown("evlog.queue_capacity"), "100000 [default]");
        assert_eq!(shown("evlog.mode"), "file [default]");
        assert_eq!(shown("evlog.file_fsync"), "false [default]");
        assert_eq!(
            shown("evlog.forward_api_key"),
            "(set, redacted) [evlog.config file]"
        );
        assert_eq!(shown("evlog.bigquery_token"), "(not set) [default]");
        assert_eq!(shown("evlog.forward_url"), "(not set) [default]");
        assert!(r.effective.iter().all(|e| !e.value.contains("from-file")));
        assert_eq!(r.effective.len(), DIRECTIVES.len());

        // Without evlog.config, EVLOG_CONFIG names the file (as in every binding).
        let r = build_env(&[], &[("EVLOG_CONFIG", path)]).unwrap();
        assert_eq!(r.config.batch.max_rows, 11);
        assert_eq!(
            shown_of(&r, "evlog.config"),
            format!("{path} [env EVLOG_CONFIG]")
        );

        std::fs::write(&file, "[batch]\nmax_rowz = 1\n").unwrap();
        let e = build(&[("evlog.config", path)]).unwrap_err();
        assert!(e.contains("max_rowz"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn shown_of(r: &Resolved, name: &str) -> String {
        let e = row(r, name);
        format!("{} [{}]", e.value, e.source)
    }

    #[test]
    fn secrets_are_redacted_wherever_they_come_from() {
        let r = build_env(
            &[
                ("evlog.mode", "forward"),
                ("evlog.forward_url", "http://127.0.0.1:1"),
                ("evlog.forward_api_key", "s3cret-key"),
            ],
            &[("EVLOG_SINK_BIGQUERY_TOKEN", "s3cret-token")],
        )
        .unwrap();
        assert_eq!(
            shown_of(&r, "evlog.forward_api_key"),
            "(set, redacted) [php.ini]"
        );
        assert_eq!(
            shown_of(&r, "evlog.bigquery_token"),
            "(set, redacted) [env EVLOG_SINK_BIGQUERY_TOKEN]"
        );
        assert_eq!(shown_of(&r, "evlog.mode"), "forward [php.ini]");
        assert!(r.effective.iter().all(|e| !e.value.contains("s3cret")));
    }
}
