//! php.ini directives and how they become a core [`Config`].
//!
//! Every directive is `PHP_INI_SYSTEM` (php.ini, `-d`, php-fpm `php_admin_value`): the pipeline
//! is built once per process from the values seen by the first `evlog_log()`, so a per-request
//! `ini_set()` could not take effect anyway. An empty value means "not set": the key keeps the
//! value from `evlog.config` (a TOML file, see the top-level README) or core's default.
//! Precedence, lowest first: core defaults, `evlog.config` file, `evlog.*` directives, `EVLOG_*`
//! environment variables (core's rule for every binding).
//!
//! This module has no PHP types: [`build_config`] takes a lookup function, so it is unit-tested
//! without a PHP runtime.

use std::path::Path;

use evlog_core::config::ConfigError;
use evlog_core::Config;

/// How a directive's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Path of the TOML config file (not a key).
    ConfigFile,
    /// `file`, `null` (and the reserved `collector`, `bigquery`).
    Mode,
    /// A string key.
    Str,
    /// An integer key.
    Int,
    /// A boolean key (`1`/`on`/`yes`/`true` or `0`/`off`/`no`/`false`).
    Bool,
    /// A size: an integer (bytes) or a string such as `64MiB`.
    Size,
    /// A duration string such as `250ms`, `1s`.
    Duration,
    /// Accepted and shown, used by a sink that does not exist yet.
    Reserved,
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

/// Every directive, in the order `php --ri evlog` shows them.
pub const DIRECTIVES: &[Directive] = &[
    d(
        "evlog.config",
        "",
        Kind::ConfigFile,
        "TOML config file (same keys as every evlog binding)",
    ),
    d(
        "evlog.mode",
        "sink.kind",
        Kind::Mode,
        "file (default) or null; collector and bigquery are not available yet",
    ),
    d(
        "evlog.collector_url",
        "",
        Kind::Reserved,
        "collector URL for mode=collector (not available yet)",
    ),
    d(
        "evlog.api_key",
        "",
        Kind::Reserved,
        "collector API key for mode=collector (not available yet)",
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
        "fdatasync after every batch",
    ),
    d(
        "evlog.schema_dir",
        "schemas.dir",
        Kind::Str,
        "<namespace>/<type>.json BigQuery schema files",
    ),
    d(
        "evlog.spool_enabled",
        "spool.enabled",
        Kind::Bool,
        "disk spool for undeliverable batches (passed to core)",
    ),
    d(
        "evlog.spool_dir",
        "spool.dir",
        Kind::Str,
        "disk spool directory (passed to core)",
    ),
    d(
        "evlog.spool_max_bytes",
        "spool.max_bytes",
        Kind::Size,
        "disk spool size limit",
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
];

/// Builds the configuration from directive values (`lookup(name)`, `None` or empty = unset) and
/// the given environment. The error names the directive (or the file) and the rule.
pub fn build_config(
    lookup: impl Fn(&str) -> Option<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, String> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let mut table = toml::Table::new();
    let mut origin = String::from("php.ini");
    if let Some(path) = get("evlog.config") {
        let text = std::fs::read_to_string(Path::new(&path))
            .map_err(|e| format!("evlog.config: cannot read {path}: {e}"))?;
        table = toml::from_str(&text).map_err(|e| format!("evlog.config = {path}: {e}"))?;
        origin = format!("{path} with php.ini evlog.* directives");
    }
    for dir in DIRECTIVES {
        let Some(raw) = get(dir.name) else { continue };
        let raw = raw.trim();
        let value = match dir.kind {
            Kind::ConfigFile | Kind::Reserved => continue,
            Kind::Mode => match raw {
                "file" | "null" => toml::Value::String(raw.into()),
                "collector" | "bigquery" => {
                    return Err(format!(
                        "{} = {raw}: the {raw} sink is not available yet in this evlog build; use file or null",
                        dir.name
                    ))
                }
                _ => {
                    return Err(format!(
                        "{} = {raw}: unknown mode (expected file, null, collector or bigquery)",
                        dir.name
                    ))
                }
            },
            Kind::Str | Kind::Duration => toml::Value::String(raw.into()),
            Kind::Int => toml::Value::Integer(raw.parse().map_err(|_| {
                format!("{} = {raw}: must be a non-negative integer", dir.name)
            })?),
            Kind::Bool => toml::Value::Boolean(parse_bool(raw).ok_or_else(|| {
                format!("{} = {raw}: must be a boolean (1/0, on/off, yes/no, true/false)", dir.name)
            })?),
            Kind::Size => match raw.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(raw.into()),
            },
        };
        set_key(&mut table, dir.key, value);
    }
    let text = toml::to_string(&table).map_err(|e| format!("{origin}: {e}"))?;
    Config::from_toml_with_env(&text, &origin, env).map_err(|e| describe(&e))
}

/// Adds the directive name to a core error about a key.
fn describe(e: &ConfigError) -> String {
    let msg = e.to_string();
    let mut hints: Vec<&str> = DIRECTIVES
        .iter()
        .filter(|d| !d.key.is_empty() && msg.contains(d.key.rsplit('.').next().unwrap_or(d.key)))
        .filter(|d| msg.contains(d.key) || matches!(e, ConfigError::Parse { .. }))
        .map(|d| d.name)
        .collect();
    hints.dedup();
    if hints.is_empty() {
        msg
    } else {
        format!("{msg} (php.ini: {})", hints.join(", "))
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" | "none" => Some(false),
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

    use super::*;

    fn build(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        build_config(|n| map.get(n).cloned(), std::iter::empty())
    }

    #[test]
    fn empty_directives_give_core_defaults() {
        assert_eq!(build(&[]).unwrap(), Config::default());
        assert_eq!(
            build(&[("evlog.batch_max_rows", " ")]).unwrap(),
            Config::default()
        );
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
            ("evlog.spool_dir", "/tmp/spool"),
            ("evlog.collector_url", "http://127.0.0.1:1"),
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
        assert_eq!(c.spool.dir, Path::new("/tmp/spool"));
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
        assert!(e.contains("not available yet"), "{e}");
        let e = build(&[("evlog.mode", "kafka")]).unwrap_err();
        assert!(e.contains("unknown mode"), "{e}");
        let e = build(&[("evlog.file_fsync", "maybe")]).unwrap_err();
        assert!(e.contains("evlog.file_fsync"), "{e}");
        let e = build(&[("evlog.config", "/nonexistent/evlog.toml")]).unwrap_err();
        assert!(
            e.contains("evlog.config") && e.contains("/nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn directives_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("evlog-php-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("evlog.toml");
        std::fs::write(&file, "[batch]\nmax_rows = 11\nmax_age = \"2s\"\n").unwrap();
        let path = file.to_str().unwrap();
        let c = build(&[("evlog.config", path), ("evlog.batch_max_rows", "12")]).unwrap();
        assert_eq!(c.batch.max_rows, 12);
        assert_eq!(c.batch.max_age, Duration::from_secs(2));
        std::fs::write(&file, "[batch]\nmax_rowz = 1\n").unwrap();
        let e = build(&[("evlog.config", path)]).unwrap_err();
        assert!(e.contains("max_rowz"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
