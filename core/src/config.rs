//! Configuration: one TOML file shared by the SDK and the collector, with `EVLOG_*` overrides.
//!
//! Sections: `[sink]` (or `[destinations.<name>]` and `[[routes]]`, see [`crate::destinations`]),
//! `[batch]`, `[queue]`, `[retry]`, `[spool]`, `[schemas]`, `[routing]`. Every
//! struct denies unknown keys, so a misspelt key is an error that names it instead of a silently
//! ignored setting. Durations are strings such as `"250ms"`, `"1s"`, `"2m"`; sizes are integers
//! (bytes) or strings such as `"512KiB"`, `"1MiB"`, `"10MB"`.
//!
//! Environment overrides: `EVLOG_<SECTION>_<KEY>` sets `<section>.<key>` (nested tables join with
//! `_` too: `EVLOG_SINK_FILE_DIR` sets `sink.file.dir`). `EVLOG_CONFIG` names the file to read and
//! `EVLOG_TRANSFORM_KEY` holds the default hash key of `[[transforms]]`; neither is a key. Any
//! other `EVLOG_*` variable that matches no key is an error. Named destinations and routes have no
//! variables (their names are the file's); `EVLOG_SINK_*` sets `[sink]`, and so is refused beside
//! `[destinations]` like `[sink]` itself.
//!
//! Where things are: this file holds the sections of the pipeline (`[batch]`, `[queue]`,
//! `[spool]`, `[schemas]`, `[routing]`), reading, environment overrides and the rules between
//! sections. `[sink]` and each `[sink.<name>]` (with its rules) live with their sink
//! (`crate::sink::SinkConfig`, `sink/<name>/config.rs`). The leaf types that sinks and the
//! collector import without depending on this file: [`ConfigError`] (`config/error.rs`),
//! [`ByteSize`] and [`duration_str`] (`config/units.rs`), [`RetryConfig`] and its backoff
//! (`config/retry.rs`).

pub(crate) mod error;
pub(crate) mod retry;
pub(crate) mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::error::ConfigError;
pub use self::retry::{backoff, RetryConfig};
pub use self::units::{duration_str, ByteSize};
pub use crate::destinations::{DestinationConfig, RouteConfig, WhereConfig};
pub use crate::sink::{SinkConfig, SinkKind};

/// Environment variables that are not keys: the config file's name, and the default hash key of
/// `[[transforms]]` (`crate::transform::DEFAULT_KEY_ENV`).
pub const RESERVED_ENV: &[&str] = &["EVLOG_CONFIG", crate::transform::DEFAULT_KEY_ENV];

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where accepted events are delivered when there is one destination (named `default`);
    /// refused beside `destinations`.
    pub sink: SinkConfig,
    /// Named destinations (`[destinations.<name>]`: `kind` and the sink's own keys); with
    /// them, `[[routes]]` say which receives what.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub destinations: std::collections::BTreeMap<String, DestinationConfig>,
    /// Which destinations receive which tables (`[[routes]]`, in order; an event goes to every
    /// route that takes it). Without any, `[sink]` receives every table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// Changes to events' fields (`[[transforms]]`, in order), per table and optionally per
    /// destination; see [`crate::transform`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<crate::transform::TransformConfig>,
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

/// `[batch]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A table's batch is flushed when it holds this many rows: sent when the flush thread next
    /// wakes, at once after a quiet spell, within its paced sleep (at most 100 ms) while events
    /// flow (`pipeline::flush::pace`).
    pub max_rows: usize,
    /// ... or this many bytes of row JSON (at most 10 MB, BigQuery's request limit).
    pub max_bytes: ByteSize,
    /// ... or when its oldest row is this old (its age counted from when it was logged, at the
    /// latest).
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

/// `[spool]`.
///
/// By default a destination that delivers over the network (`forward`, `bigquery`,
/// `opensearch`) has a spool, so a default install never loses what its sink cannot take now
/// (nor what is left at the shutdown deadline); `file` and `null` have none (they write to the
/// local disk or nowhere: a spool beside them buys nothing). The default directory is private
/// to the user and to what the spool is for ([`Config::destination_spool`]), and is created
/// only when something is first spooled.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Keep undeliverable batches on disk and replay them later. Absent (the default): on for
    /// destinations whose sink delivers over the network (`forward`, `bigquery`, `opensearch`),
    /// off for `file` and `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Directory of spool segment files; a relative path is taken from the working directory
    /// (as `schemas.dir`). Absent (the default): `evlog-<uid>/<sink kind>-<key>` under
    /// `/var/tmp` (else the system's temporary directory), created mode 0700 on first use, where
    /// `<key>` is a hash of the destination's name, sink kind and target (forward URL, BigQuery
    /// project and API URL, OpenSearch URLs and index, file directory): two applications with
    /// different destinations on one host never replay each other's events, and the same
    /// configuration finds what its previous process left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
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
            enabled: None,
            dir: None,
            max_bytes: ByteSize(1024 * 1024 * 1024),
            segment_bytes: ByteSize(64 * 1024 * 1024),
            fsync: true,
        }
    }
}

/// The default spool directory of destination `name` with `sink` (see [`SpoolConfig::dir`]).
pub fn default_spool_dir(name: &str, sink: &SinkConfig) -> PathBuf {
    use sha2::Digest as _;
    let target = match sink.kind {
        SinkKind::Forward => sink.forward.base_urls().join(","),
        SinkKind::Bigquery => format!("{}\n{}", sink.bigquery.project, sink.bigquery.base_url),
        SinkKind::Opensearch => format!(
            "{}\n{}",
            sink.opensearch.urls.join(","),
            sink.opensearch.index
        ),
        SinkKind::File => sink.file.dir.display().to_string(),
        SinkKind::Null => String::new(),
    };
    let kind = toml::Value::try_from(sink.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{name}\n{kind}\n{target}"));
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // /var/tmp survives a reboot (what is spooled should too); /tmp is often a tmpfs.
    let var_tmp = Path::new("/var/tmp");
    let root = if var_tmp.is_dir() {
        var_tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let uid = rustix::process::geteuid().as_raw();
    root.join(format!("evlog-{uid}"))
        .join(format!("{kind}-{key}"))
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
    /// How often the SDK's flush thread looks for changed schema files (names, sizes and
    /// modification times under `dir`), e.g. `"5s"`; `"0s"` turns it off. A change is loaded,
    /// checked by BigQuery's additive rules (`schema::evolve`) and then used for the events that
    /// follow; a refused change keeps the schemas in use and is told to the error hook. The
    /// collector reloads on `SIGHUP` / `POST /admin/reload` instead.
    #[serde(with = "duration_str")]
    pub reload_interval: Duration,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("schemas"),
            unknown_tables: UnknownTables::Reject,
            reload_interval: Duration::from_secs(5),
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

    /// Checks rules serde cannot express: each section's, then every sink's
    /// ([`SinkConfig::validate`]), destinations and routes ([`crate::destinations`]), then
    /// routing's.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=50_000).contains(&self.batch.max_rows) {
            return ConfigError::invalid(
                "batch.max_rows",
                "must be 1..=50000 (BigQuery's rows per request)",
            );
        }
        if self.batch.max_bytes.0 == 0
            || self.batch.max_bytes.0 > crate::sink::bigquery::REQUEST_LIMIT
        {
            return ConfigError::invalid(
                "batch.max_bytes",
                format!(
                    "must be 1..=10MB (BigQuery's request limit), got {}",
                    self.batch.max_bytes
                ),
            );
        }
        if self.batch.max_age.is_zero() {
            return ConfigError::invalid("batch.max_age", "must be greater than 0");
        }
        if self.queue.capacity == 0 || self.queue.capacity > (1 << 24) {
            return ConfigError::invalid("queue.capacity", "must be 1..=16777216");
        }
        if self.queue.max_bytes.0 == 0 || self.queue.max_bytes.0 >= (1 << 40) {
            return ConfigError::invalid("queue.max_bytes", "must be 1 byte..1TiB");
        }
        if self.queue.max_event_bytes.0 == 0 || self.queue.max_event_bytes > self.queue.max_bytes {
            return ConfigError::invalid("queue.max_event_bytes", "must be 1..=queue.max_bytes");
        }
        if self.queue.overflow == Overflow::Spool
            && self
                .destination_sinks()
                .iter()
                .any(|(name, _)| self.destination_spool(name).is_none())
        {
            return ConfigError::invalid(
                "queue.overflow",
                "\"spool\" needs spool.enabled = true (by default only forward, bigquery and \
                 opensearch destinations have a spool)",
            );
        }
        if self.retry.max_attempts == 0 {
            return ConfigError::invalid("retry.max_attempts", "must be at least 1");
        }
        if self.retry.base > self.retry.cap {
            return ConfigError::invalid("retry.base", "must not exceed retry.cap");
        }
        self.sink.validate()?;
        if !self.destinations.is_empty() && self.sink != SinkConfig::default() {
            return ConfigError::invalid(
                "sink",
                format!(
                    "[sink] and [destinations] cannot be used together ([sink] is the single \
                     destination \"{}\" of a configuration without [destinations]): move its \
                     settings into a [destinations.<name>] section (EVLOG_SINK_* variables set \
                     [sink] too)",
                    crate::destinations::DEFAULT_DESTINATION
                ),
            );
        }
        crate::destinations::validate_destinations(&self.destinations)?;
        crate::destinations::Routes::new(self)?;
        let names = self.destination_names();
        crate::transform::TransformSet::from_config(&self.transforms)?
            .check_destinations(|d| names.iter().any(|n| n == d))?;
        for (key, route) in &self.routing.tables {
            let Some((ns, ty)) = key.split_once('.') else {
                return ConfigError::invalid(
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
                return ConfigError::invalid("routing.tables", format!("{key:?}: {rule}"));
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
    (&["sink", "bigquery", "positions_dir"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "forward", "api_key"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "forward", "compression"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "forward", "gzip"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "opensearch", "user"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "opensearch", "password"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "opensearch", "api_key"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "opensearch", "token"], || {
        toml::Value::String(String::new())
    }),
    (&["sink", "opensearch", "ca_file"], || {
        toml::Value::String(String::new())
    }),
    (&["spool", "enabled"], || toml::Value::Boolean(false)),
    (&["spool", "dir"], || toml::Value::String(String::new())),
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

#[cfg(test)]
mod tests;
