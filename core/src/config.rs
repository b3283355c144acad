//! Configuration: one TOML file shared by the SDK and the collector, with `EVLOG_*` overrides.
//!
//! Sections: `[sink]`, `[batch]`, `[queue]`, `[retry]`, `[spool]`, `[schemas]`, `[routing]`. Every
//! struct denies unknown keys, so a misspelt key is an error that names it instead of a silently
//! ignored setting. Durations are strings such as `"250ms"`, `"1s"`, `"2m"`; sizes are integers
//! (bytes) or strings such as `"512KiB"`, `"1MiB"`, `"10MB"`.
//!
//! Environment overrides: `EVLOG_<SECTION>_<KEY>` sets `<section>.<key>` (nested tables join with
//! `_` too: `EVLOG_SINK_FILE_DIR` sets `sink.file.dir`). `EVLOG_CONFIG` names the file to read and is
//! not a key. Any other `EVLOG_*` variable that matches no key is an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Environment variables that are not keys.
pub const RESERVED_ENV: &[&str] = &["EVLOG_CONFIG"];

/// A configuration problem, naming the key (or file) and the rule.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// File path, `<string>` or the environment variable.
        origin: String,
        /// The parser's message, which names the key and position.
        message: String,
    },
    /// A value that parses but breaks a rule.
    #[error("invalid setting {key}: {rule}")]
    Invalid {
        /// Dotted key, e.g. `batch.max_rows`.
        key: &'static str,
        /// The rule.
        rule: String,
    },
    /// An `EVLOG_*` variable that names no key.
    #[error("unknown environment variable {var}: no such setting (keys are EVLOG_<SECTION>_<KEY>, e.g. EVLOG_BATCH_MAX_ROWS)")]
    UnknownEnv {
        /// The variable.
        var: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where accepted events are delivered.
    pub sink: SinkConfig,
    /// When the flush thread hands a batch to the sink.
    pub batch: BatchConfig,
    /// The in-memory queue between `log()` and the flush thread.
    pub queue: QueueConfig,
    /// How failed deliveries are retried.
    pub retry: RetryConfig,
    /// The disk spool for what could not be delivered.
    pub spool: SpoolConfig,
    /// Table schemas.
    pub schemas: SchemasConfig,
    /// Mapping of namespace/type to dataset/table and partitioning.
    pub routing: RoutingConfig,
}

/// Which sink delivers batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// NDJSON files, one per table and day (the embedded default).
    #[default]
    File,
    /// Discard rows after counting them as delivered (benchmarks, dry runs).
    Null,
    /// BigQuery streaming inserts (`tabledata.insertAll`), see `[sink.bigquery]`.
    Bigquery,
    /// Send batches to an evlog collector over HTTP, see `[sink.forward]`.
    Forward,
}

/// `[sink]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Which sink to use: `"file"` (default), `"bigquery"`, `"forward"` or `"null"`.
    pub kind: SinkKind,
    /// Settings of the file sink.
    pub file: FileSinkConfig,
    /// Settings of the BigQuery sink.
    pub bigquery: crate::sink::bigquery::BigQueryConfig,
    /// Settings of the forward (to a collector) sink.
    pub forward: crate::sink::forward::ForwardConfig,
}

/// `[sink.file]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// Directory that receives `<dataset>/<table><YYYYMMDD>.ndjson` files.
    pub dir: PathBuf,
    /// fsync (fdatasync) after every batch. Off: a batch is handed to the kernel whole, which
    /// survives a process crash but not a power loss.
    pub fsync: bool,
    /// Most files kept open at once; older ones are closed and reopened when needed.
    pub max_open_files: usize,
    /// Name of the per-dataset dead-letter table (file `<dataset>/<name>.ndjson`).
    pub dead_letter_table: String,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("evlog-data"),
            fsync: false,
            max_open_files: 64,
            dead_letter_table: "_evlog_rejected".into(),
        }
    }
}

/// `[batch]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A table's batch is flushed when it holds this many rows.
    pub max_rows: usize,
    /// ... or this many bytes of row JSON (at most 10 MB, BigQuery's request limit).
    pub max_bytes: ByteSize,
    /// ... or when its oldest row is this old.
    #[serde(with = "duration_str")]
    pub max_age: Duration,
    /// How long dropping a pipeline waits for delivery before giving up (explicit `shutdown()`
    /// takes its own deadline).
    #[serde(with = "duration_str")]
    pub shutdown_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 500,
            max_bytes: ByteSize(1024 * 1024),
            max_age: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most events waiting in memory; beyond it `log()` drops (reason `queue_full`).
    pub capacity: usize,
    /// Most bytes of event JSON waiting in memory; beyond it `log()` drops (reason `queue_full`).
    pub max_bytes: ByteSize,
    /// Largest single event body accepted by `log()`.
    pub max_event_bytes: ByteSize,
    /// What to do when the queue fills faster than the sink drains it: `"drop"` (default: `log()`
    /// refuses and counts `queue_full` once the queue is full) or `"spool"` (the flush thread
    /// moves events to the disk spool, unvalidated, once the queue is three quarters full; needs
    /// `spool.enabled`). `log()` itself never does I/O either way.
    pub overflow: Overflow,
}

/// See [`QueueConfig::overflow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse and count (`queue_full`).
    #[default]
    Drop,
    /// Spill to the spool.
    Spool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_bytes: ByteSize(64 * 1024 * 1024),
            max_event_bytes: ByteSize(1024 * 1024),
            overflow: Overflow::Drop,
        }
    }
}

/// `[retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff; each attempt doubles it, with full jitter.
    #[serde(with = "duration_str")]
    pub base: Duration,
    /// Longest backoff.
    #[serde(with = "duration_str")]
    pub cap: Duration,
    /// Attempts per request, the first included; after that the batch goes to the spool.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

/// `[spool]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Keep undeliverable batches on disk and replay them later.
    pub enabled: bool,
    /// Directory of spool segment files.
    pub dir: PathBuf,
    /// Most bytes on disk; beyond it events are dropped (reason `spool_full`).
    pub max_bytes: ByteSize,
    /// Size at which a new segment file is started.
    pub segment_bytes: ByteSize,
    /// fsync every append (survives power loss, not only process crashes).
    pub fsync: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("evlog-spool"),
            max_bytes: ByteSize(1024 * 1024 * 1024),
            segment_bytes: ByteSize(64 * 1024 * 1024),
            fsync: true,
        }
    }
}

/// What happens to events whose namespace/type has no schema file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTables {
    /// Reject them (dead-letter, reason `unknown_table`).
    #[default]
    Reject,
}

/// `[schemas]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasConfig {
    /// Directory of `<namespace>/<type>.json` files in BigQuery's JSON schema format.
    pub dir: PathBuf,
    /// Events for a namespace/type without a schema file: `"reject"`.
    pub unknown_tables: UnknownTables,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("schemas"),
            unknown_tables: UnknownTables::Reject,
        }
    }
}

/// How a table is split by time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// One table per UTC day of `event_time`: `<table>YYYYMMDD` (BigQuery `templateSuffix`).
    #[default]
    DayShard,
    /// One time-partitioned table; BigQuery places rows by its own partitioning rule.
    Partitioned,
}

/// `[routing]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Partitioning of tables without an entry in `tables`.
    pub partitioning: Partitioning,
    /// Per-table overrides keyed by `"<namespace>.<type>"`.
    pub tables: std::collections::BTreeMap<String, TableRoute>,
}

/// `[routing.tables."<namespace>.<type>"]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableRoute {
    /// Dataset to write to (default: the namespace).
    pub dataset: Option<String>,
    /// Base table name (default: the type).
    pub table: Option<String>,
    /// Partitioning (default: `routing.partitioning`).
    pub partitioning: Option<Partitioning>,
}

/// Reads a configuration file's text; the error names the file.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Config {
    /// Parses TOML text (no environment).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, "<string>", std::iter::empty())
    }

    /// Reads a file, applies `EVLOG_*` from the process environment, validates.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(path)?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// The file named by `EVLOG_CONFIG` (or defaults when unset), plus `EVLOG_*` overrides.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var_os("EVLOG_CONFIG") {
            Some(p) if !p.is_empty() => Self::from_path(Path::new(&p)),
            _ => Self::from_toml_with_env("", "<defaults>", std::env::vars()),
        }
    }

    /// Parses TOML text, overlays the given `EVLOG_*` variables, validates.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("EVLOG_") && !RESERVED_ENV.contains(&k.as_str()))
            .collect();
        env.sort();
        let mut from_env = Vec::new();
        if !env.is_empty() {
            let leaves = leaf_paths();
            for (var, value) in env {
                let key = var["EVLOG_".len()..].to_ascii_lowercase();
                let Some((path, default)) = leaves.iter().find(|(p, _)| p.join("_") == key) else {
                    return Err(ConfigError::UnknownEnv { var });
                };
                set_path(&mut table, path, env_value(&value, default));
                from_env.push(var);
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: if from_env.is_empty() {
                        origin.to_string()
                    } else {
                        format!("{origin} with {}", from_env.join(", "))
                    },
                    message: e.to_string().trim_end().to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, rule: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                rule: rule.into(),
            })
        }
        const BQ_REQUEST_LIMIT: u64 = 10 * 1000 * 1000;
        if !(1..=50_000).contains(&self.batch.max_rows) {
            return invalid(
                "batch.max_rows",
                "must be 1..=50000 (BigQuery's rows per request)",
            );
        }
        if self.batch.max_bytes.0 == 0 || self.batch.max_bytes.0 > BQ_REQUEST_LIMIT {
            return invalid(
                "batch.max_bytes",
                format!(
                    "must be 1..=10MB (BigQuery's request limit), got {}",
                    self.batch.max_bytes
                ),
            );
        }
        if self.batch.max_age.is_zero() {
            return invalid("batch.max_age", "must be greater than 0");
        }
        if self.queue.capacity == 0 || self.queue.capacity > (1 << 24) {
            return invalid("queue.capacity", "must be 1..=16777216");
        }
        if self.queue.max_bytes.0 == 0 || self.queue.max_bytes.0 >= (1 << 40) {
            return invalid("queue.max_bytes", "must be 1 byte..1TiB");
        }
        if self.queue.max_event_bytes.0 == 0 || self.queue.max_event_bytes > self.queue.max_bytes {
            return invalid("queue.max_event_bytes", "must be 1..=queue.max_bytes");
        }
        if self.queue.overflow == Overflow::Spool && !self.spool.enabled {
            return invalid("queue.overflow", "\"spool\" needs spool.enabled = true");
        }
        if self.retry.max_attempts == 0 {
            return invalid("retry.max_attempts", "must be at least 1");
        }
        if self.retry.base > self.retry.cap {
            return invalid("retry.base", "must not exceed retry.cap");
        }
        if self.sink.file.max_open_files == 0 {
            return invalid("sink.file.max_open_files", "must be at least 1");
        }
        if let Err(rule) = crate::envelope::check_table_name(&self.sink.file.dead_letter_table) {
            return invalid("sink.file.dead_letter_table", rule);
        }
        let bq = &self.sink.bigquery;
        if self.sink.kind == SinkKind::Bigquery {
            if bq.project.is_empty() {
                return invalid(
                    "sink.bigquery.project",
                    "is required with sink.kind = \"bigquery\"",
                );
            }
            if bq.auth == crate::sink::bigquery::AuthMethod::ServiceAccount
                && bq.credentials.is_none()
            {
                return invalid(
                    "sink.bigquery.credentials",
                    "is required with auth = \"service_account\"",
                );
            }
            if bq.auth == crate::sink::bigquery::AuthMethod::Token && bq.token.is_none() {
                return invalid("sink.bigquery.token", "is required with auth = \"token\"");
            }
        }
        let fw = &self.sink.forward;
        if self.sink.kind == SinkKind::Forward && fw.url.is_empty() {
            return invalid(
                "sink.forward.url",
                "is required with sink.kind = \"forward\"",
            );
        }
        if !fw.url.is_empty() {
            if let Err(rule) = crate::sink::forward::check_url(&fw.url) {
                return invalid("sink.forward.url", rule);
            }
        }
        if fw.workers == 0 || fw.workers > 256 {
            return invalid("sink.forward.workers", "must be 1..=256");
        }
        if fw.max_rows_per_request == 0 {
            return invalid("sink.forward.max_rows_per_request", "must be at least 1");
        }
        if !(1..=50_000).contains(&bq.max_rows_per_request) {
            return invalid("sink.bigquery.max_rows_per_request", "must be 1..=50000");
        }
        if bq.max_bytes_per_request.0 == 0 || bq.max_bytes_per_request.0 > BQ_REQUEST_LIMIT {
            return invalid(
                "sink.bigquery.max_bytes_per_request",
                "must be 1..=10MB (BigQuery's request limit)",
            );
        }
        if bq.workers == 0 || bq.workers > 256 {
            return invalid("sink.bigquery.workers", "must be 1..=256");
        }
        if let Err(rule) = crate::envelope::check_table_name(&bq.dead_letter_table) {
            return invalid("sink.bigquery.dead_letter_table", rule);
        }
        for (key, route) in &self.routing.tables {
            let Some((ns, ty)) = key.split_once('.') else {
                return invalid(
                    "routing.tables",
                    format!("key {key:?} must be \"<namespace>.<type>\""),
                );
            };
            let checks = [
                crate::envelope::check_dataset_name(ns),
                crate::envelope::check_table_name(ty),
                route
                    .dataset
                    .as_deref()
                    .map_or(Ok(()), crate::envelope::check_dataset_name),
                route
                    .table
                    .as_deref()
                    .map_or(Ok(()), crate::envelope::check_table_name),
            ];
            if let Some(Err(rule)) = checks.into_iter().find(Result::is_err) {
                return invalid("routing.tables", format!("{key:?}: {rule}"));
            }
        }
        Ok(())
    }
}

/// Keys that default to absent and so do not show in the serialized defaults, with a sample
/// value of their type (for environment overrides).
type OptionalLeaf = (&'static [&'static str], fn() -> toml::Value);
const OPTIONAL_LEAVES: &[OptionalLeaf] = &[
    (&["sink", "bigquery", "credentials"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "bigquery", "token"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "forward", "api_key"], || {
        toml::Value::String(String::new())
    }),
];

/// Every settable leaf key path with its default (its type guides how env strings are read).
fn leaf_paths() -> Vec<(Vec<String>, toml::Value)> {
    fn walk(prefix: &mut Vec<String>, v: &toml::Value, out: &mut Vec<(Vec<String>, toml::Value)>) {
        match v {
            toml::Value::Table(t)
                if !(prefix.len() == 2 && prefix[..2] == ["routing", "tables"]) =>
            {
                for (k, v) in t {
                    prefix.push(k.clone());
                    walk(prefix, v, out);
                    prefix.pop();
                }
            }
            toml::Value::Table(_) => {}
            other => out.push((prefix.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = toml::Value::try_from(Config::default()) {
        walk(&mut Vec::new(), &v, &mut out);
    }
    for (path, sample) in OPTIONAL_LEAVES {
        out.push((path.iter().map(|s| s.to_string()).collect(), sample()));
    }
    out
}

/// Reads an environment string as the type of the key's default; falls back to the string so the
/// deserializer reports a precise error.
fn env_value(raw: &str, default: &toml::Value) -> toml::Value {
    let parsed = match default {
        toml::Value::Integer(_) => raw.trim().parse().ok().map(toml::Value::Integer),
        toml::Value::Float(_) => raw.trim().parse().ok().map(toml::Value::Float),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        toml::Value::Array(_) => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v")),
        _ => None,
    };
    parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("leaf paths are never empty");
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            unreachable!("just made a table")
        };
        t = next;
    }
    t.insert(last.clone(), value);
}

/// A size in bytes; reads integers or strings like `"64KiB"`, `"1MiB"`, `"10MB"`, `"1GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.replace('_', "").parse().map_err(|_| {
            format!("expected a size like 1048576, \"512KiB\" or \"10MB\", got {s:?}")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {s:?} (use B, KB, KiB, MB, MiB, GB or GiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes or a string like \"1MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size must not be negative, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Durations as human strings (`"250ms"`, `"1s"`, `"1m 30s"`).
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration like \"250ms\", \"1s\" or \"2m\", got {s:?}: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_design() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.batch.max_rows, 500);
        assert_eq!(c.batch.max_bytes, ByteSize(1 << 20));
        assert_eq!(c.batch.max_age, Duration::from_secs(1));
        assert_eq!(c.sink.kind, SinkKind::File);
    }

    #[test]
    fn parses_every_section() {
        let c = Config::from_toml_str(
            r#"
            [sink]
            kind = "file"
            [sink.file]
            dir = "/tmp/out"
            fsync = true
            [batch]
            max_rows = 100
            max_bytes = "512KiB"
            max_age = "250ms"
            [queue]
            capacity = 1000
            max_bytes = 1048576
            [retry]
            base = "50ms"
            cap = "5s"
            max_attempts = 3
            [spool]
            enabled = true
            dir = "/tmp/spool"
            max_bytes = "1GiB"
            [schemas]
            dir = "schemas"
            [routing]
            partitioning = "day_shard"
            [routing.tables."events.transaction"]
            dataset = "analytics"
            partitioning = "partitioned"
            "#,
        )
        .unwrap();
        assert_eq!(c.sink.file.dir, PathBuf::from("/tmp/out"));
        assert_eq!(c.batch.max_bytes, ByteSize(512 * 1024));
        assert_eq!(c.batch.max_age, Duration::from_millis(250));
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(
            c.routing.tables["events.transaction"].partitioning,
            Some(Partitioning::Partitioned)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml_str("[batch]\nmax_rowz = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_rowz"), "{e}");
        let e = Config::from_toml_str("[bacth]\n").unwrap_err().to_string();
        assert!(e.contains("bacth"), "{e}");
        let e = Config::from_toml_str("[batch]\nmax_age = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_age") && e.contains("soon"), "{e}");
        let e = Config::from_toml_str("[batch]\nmax_rows = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch.max_rows"), "{e}");
        let e = Config::from_toml_str("[batch]\nmax_bytes = \"11MB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch.max_bytes"), "{e}");
        let e = Config::from_toml_str("[queue]\nmax_bytes = \"5 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parsecs"), "{e}");
        let e = Config::from_toml_str("[sink]\nkind = \"kafka\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka"), "{e}");
        let e = Config::from_toml_str("[routing.tables.\"bad/ns.t\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.tables"), "{e}");
    }

    #[test]
    fn env_overrides_keys() {
        let c = Config::from_toml_with_env(
            "[batch]\nmax_rows = 10\n",
            "test",
            env(&[
                ("EVLOG_BATCH_MAX_ROWS", "20"),
                ("EVLOG_SINK_FILE_DIR", "/tmp/x"),
                ("EVLOG_SINK_FILE_FSYNC", "yes"),
                ("EVLOG_BATCH_MAX_AGE", "2s"),
                ("EVLOG_QUEUE_MAX_BYTES", "2MiB"),
                ("EVLOG_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.batch.max_rows, 20);
        assert_eq!(c.sink.file.dir, PathBuf::from("/tmp/x"));
        assert!(c.sink.file.fsync);
        assert_eq!(c.batch.max_age, Duration::from_secs(2));
        assert_eq!(c.queue.max_bytes, ByteSize(2 << 20));

        let e = Config::from_toml_with_env("", "test", env(&[("EVLOG_BATCH_MAX_ROWZ", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("EVLOG_BATCH_MAX_ROWZ"), "{e}");
        let e = Config::from_toml_with_env("", "test", env(&[("EVLOG_BATCH_MAX_ROWS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("EVLOG_BATCH_MAX_ROWS") && e.contains("many"),
            "{e}"
        );
    }

    #[test]
    fn env_key_paths_are_unambiguous() {
        let leaves = leaf_paths();
        let mut joined: Vec<_> = leaves.iter().map(|(p, _)| p.join("_")).collect();
        let n = joined.len();
        joined.sort();
        joined.dedup();
        assert_eq!(joined.len(), n, "two keys map to one EVLOG_ variable");
        assert!(joined.contains(&"sink_file_dir".to_string()));
    }
}
