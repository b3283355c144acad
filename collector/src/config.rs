//! The collector's configuration: core's [`Config`] (`[sink]` or `[destinations.<name>]` and
//! `[[routes]]`, `[batch]`, `[retry]`, `[schemas]`, `[routing]`, …, shared with the SDK) plus a
//! `[collector]` section read here.
//!
//! `EVLOG_<SECTION>_<KEY>` variables override core keys as in the SDK; `[collector]` keys are read
//! from the file only (an `EVLOG_COLLECTOR_*` variable is an error that says so).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evlog_core::config::{duration_str, ByteSize, ConfigError};
use evlog_core::Config;
use serde::{Deserialize, Serialize};

/// The whole collector configuration.
#[derive(Debug, Clone, Default)]
pub struct CollectorConfig {
    /// `[collector]`.
    pub collector: CollectorSection,
    /// Everything else: core's configuration.
    pub core: Config,
}

/// One API key and the namespaces it may write.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The secret clients send as `Authorization: Bearer <key>` (or `X-Api-Key: <key>`).
    pub key: String,
    /// Namespaces this key may write; `["*"]` allows all.
    pub namespaces: Vec<String>,
    /// What the key may send: `"client"` (the default, least privilege: the kind of key a
    /// browser or mobile app carries) sends envelopes only (`/v1/events`, `/v1/batch`), which the
    /// collector validates and converts itself; `"sdk"` (a server SDK's forward sink) may also
    /// send converted rows (`/v1/rows`), which the collector checks against their schema.
    #[serde(default)]
    pub role: KeyRole,
}

/// An API key's role (see [`ApiKey::role`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Envelopes only.
    #[default]
    Client,
    /// Envelopes and rows.
    Sdk,
}

impl KeyRole {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Client => "client",
            KeyRole::Sdk => "sdk",
        }
    }
}

/// When the write-ahead log is fsynced before requests are acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync every write (requests arriving together share one write and one fsync).
    #[default]
    Always,
    /// Collect writes for `fsync_interval`, then one write and one fsync; acknowledgements wait
    /// for the fsync that covers them.
    Interval,
    /// Never fsync (acknowledged once written to the kernel: survives a process crash, not a
    /// power loss).
    Never,
}

/// `[collector]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorSection {
    /// Address the binary listens on (`run` takes a bound listener instead).
    pub listen: SocketAddr,
    /// API keys; empty means open access (development only).
    pub api_keys: Vec<ApiKey>,
    /// Keys of the admin API (`POST /admin/reload`, `GET /admin/config`), sent like API keys
    /// (`Authorization: Bearer <key>` or `X-Api-Key`). Distinct from every API key (an ingest
    /// key is refused there with 403); at least 16 characters. Empty (the default): the admin
    /// API answers 403 to everyone, and reloads come by `SIGHUP` only. Several keys let one
    /// be replaced without a moment when none works.
    pub admin_keys: Vec<String>,
    /// Largest request body, compressed as sent (413 above it).
    pub max_body_bytes: ByteSize,
    /// Largest request body after gzip or zstd decompression (413 above it; stops bombs).
    pub max_decompressed_bytes: ByteSize,
    /// Most events in one `/v1/batch` request (413 above it).
    pub max_batch_events: usize,
    /// Largest single event (its `event` object as JSON text); larger events are refused per event.
    pub max_event_bytes: ByteSize,
    /// Deepest JSON nesting accepted in a body (400 above it).
    pub max_depth: usize,
    /// Ingest requests processed at once; more answer 429 at once.
    pub max_in_flight: usize,
    /// Body bytes the requests in progress may hold together: bodies as received plus, compressed,
    /// their decompressed text, counted as it grows. A request that does not fit in what is left
    /// answers 429 (with `Retry-After`) at once; one whose decompressed body alone is larger
    /// answers 413. This bounds ingest memory (parsing adds a fraction of it on top), however
    /// many large or compression-bomb bodies arrive at once. At least `max_body_bytes`.
    pub max_in_flight_bytes: ByteSize,
    /// Directory of the write-ahead log.
    pub wal_dir: PathBuf,
    /// fsync policy of the write-ahead log: `"always"`, `"interval"` or `"never"`.
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: how long writes are collected before one write and fsync.
    #[serde(with = "duration_str")]
    pub fsync_interval: Duration,
    /// Unstreamed write-ahead-log bytes above which requests get 429 and `/readyz` 503.
    pub high_watermark: ByteSize,
    /// Hard bound of the write-ahead log on disk.
    pub wal_max_bytes: ByteSize,
    /// The write-ahead log starts a new segment past this size.
    pub segment_bytes: ByteSize,
    /// The active segment is sealed (made readable by streamers) at least this often.
    #[serde(with = "duration_str")]
    pub seal_interval: Duration,
    /// Streamer threads per destination (each streams whole segments to its sink).
    pub workers: usize,
    /// HTTP worker threads (tokio); 0 = number of CPUs + 1 (see `main.rs`).
    pub http_threads: usize,
    /// TLS certificate chain (PEM file); with `tls_key`, the collector serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM file: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// On SIGTERM/SIGINT: how long to keep streaming to the sink before exiting.
    #[serde(with = "duration_str")]
    pub shutdown_deadline: Duration,
    /// `Retry-After` seconds sent with 429.
    pub retry_after_secs: u64,
    /// How long a client may take to send a request's headers (the connection is closed past it;
    /// an idle keep-alive connection is closed after it too), and how long it may go silent while
    /// sending a body (408 past it). Stops stalled clients from holding connections,
    /// `max_in_flight` permits and body memory; a slow but steady upload is not cut off.
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// `[collector.lingering]`: how the rest of a refused request's body is read and discarded
    /// before its connection is closed.
    pub lingering: Lingering,
}

/// `[collector.lingering]`: nginx's lingering close. An answer sent before the request's body
/// was read (401, 413, 429, … at once) ends the connection; a client still sending its body
/// would get a reset, which destroys the answer it has not read yet. So the collector reads and
/// discards what the client still sends, within these bounds, and closes once the client is
/// done. No permit and no body budget are held meanwhile, only the socket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lingering {
    /// Longest time spent reading a refused body after the answer (nginx's `lingering_time`).
    #[serde(with = "duration_str")]
    pub time: Duration,
    /// The reading stops once the client has sent nothing for this long (nginx's
    /// `lingering_timeout`).
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// Most bytes read and discarded per connection: a client may send this much past a refusal
    /// and still read the answer.
    pub max_bytes: ByteSize,
    /// Connections drained at once; past it a refused connection is closed at once (its client
    /// may see a reset instead of the answer). 0 turns lingering off.
    pub max_connections: usize,
}

impl Default for Lingering {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            max_bytes: ByteSize(256 * 1024 * 1024),
            max_connections: 1024,
        }
    }
}

impl Default for CollectorSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            max_body_bytes: ByteSize(10 * 1024 * 1024),
            max_decompressed_bytes: ByteSize(50 * 1024 * 1024),
            max_batch_events: 10_000,
            max_event_bytes: ByteSize(1024 * 1024),
            max_depth: 32,
            max_in_flight: 256,
            max_in_flight_bytes: ByteSize(256 * 1024 * 1024),
            wal_dir: PathBuf::from("evlog-wal"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(5),
            high_watermark: ByteSize(512 * 1024 * 1024),
            wal_max_bytes: ByteSize(1024 * 1024 * 1024),
            segment_bytes: ByteSize(64 * 1024 * 1024),
            seal_interval: Duration::from_millis(100),
            workers: 2,
            http_threads: 0,
            tls_cert: None,
            tls_key: None,
            shutdown_deadline: Duration::from_secs(10),
            retry_after_secs: 1,
            request_timeout: Duration::from_secs(30),
            lingering: Lingering::default(),
        }
    }
}

impl CollectorConfig {
    /// Reads a TOML file; `EVLOG_*` variables of the process override core keys.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = evlog_core::config::read_file(path)?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses TOML text with the given environment.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse = |message: String| ConfigError::Parse {
            origin: origin.to_string(),
            message,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        let section = match table.remove("collector") {
            None => CollectorSection::default(),
            Some(v) => v.try_into().map_err(|e: toml::de::Error| {
                parse(format!("[collector]: {}", e.to_string().trim_end()))
            })?,
        };
        let mut core_env = Vec::new();
        for (k, v) in env {
            if k.starts_with("EVLOG_COLLECTOR_") {
                return Err(ConfigError::Invalid {
                    key: "collector",
                    rule: format!("{k}: [collector] keys are read from the config file only"),
                });
            }
            core_env.push((k, v));
        }
        let rest = toml::to_string(&table).map_err(|e| parse(e.to_string()))?;
        let core = Config::from_toml_with_env(&rest, origin, core_env)?;
        let config = Self {
            collector: section,
            core,
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without environment overrides.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, "<string>", std::iter::empty())
    }

    /// Rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.collector;
        let invalid = |key: &'static str, rule: &str| {
            Err(ConfigError::Invalid {
                key,
                rule: rule.into(),
            })
        };
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return invalid(
                "collector.tls_cert",
                "tls_cert and tls_key go together: set both or neither",
            );
        }
        if c.workers == 0 {
            return invalid("collector.workers", "must be at least 1");
        }
        if c.request_timeout.is_zero() {
            return invalid("collector.request_timeout", "must be more than 0");
        }
        if c.max_in_flight == 0 {
            return invalid("collector.max_in_flight", "must be at least 1");
        }
        if c.max_in_flight_bytes.0 < c.max_body_bytes.0 {
            return invalid(
                "collector.max_in_flight_bytes",
                "must be at least collector.max_body_bytes (else the largest body allowed could never be taken)",
            );
        }
        if c.max_batch_events == 0 {
            return invalid("collector.max_batch_events", "must be at least 1");
        }
        if c.max_depth < 2 {
            return invalid(
                "collector.max_depth",
                "must be at least 2 (an envelope is an object holding an object)",
            );
        }
        if c.high_watermark.0 > c.wal_max_bytes.0 {
            return invalid(
                "collector.high_watermark",
                "must not exceed collector.wal_max_bytes",
            );
        }
        for (i, k) in c.api_keys.iter().enumerate() {
            if k.key.len() < 8 {
                return Err(ConfigError::Invalid {
                    key: "collector.api_keys",
                    rule: format!("key #{} is shorter than 8 characters", i + 1),
                });
            }
            if k.namespaces.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "collector.api_keys",
                    rule: format!("key #{} has no namespaces (use [\"*\"] for all)", i + 1),
                });
            }
        }
        for (i, k) in c.admin_keys.iter().enumerate() {
            if k.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "collector.admin_keys",
                    rule: format!("admin key #{} is shorter than 16 characters", i + 1),
                });
            }
            if c.api_keys.iter().any(|a| a.key == *k) {
                return Err(ConfigError::Invalid {
                    key: "collector.admin_keys",
                    rule: format!(
                        "admin key #{} is also an API key: an admin key must be distinct from \
                         every ingest key",
                        i + 1
                    ),
                });
            }
        }
        Ok(())
    }

    /// The settings read at the start only that differ between `self` (running) and `new` (a
    /// reload's): a reload that changes one is refused, naming them. Everything else takes
    /// effect at a reload.
    pub fn restart_only_changes(&self, new: &Self) -> Vec<&'static str> {
        let (a, b) = (&self.collector, &new.collector);
        let mut changed = Vec::new();
        let mut check = |key: &'static str, same: bool| {
            if !same {
                changed.push(key);
            }
        };
        check("collector.listen", a.listen == b.listen);
        check("collector.wal_dir", a.wal_dir == b.wal_dir);
        check("collector.fsync", a.fsync == b.fsync);
        check(
            "collector.fsync_interval",
            a.fsync_interval == b.fsync_interval,
        );
        check(
            "collector.wal_max_bytes",
            a.wal_max_bytes == b.wal_max_bytes,
        );
        check(
            "collector.segment_bytes",
            a.segment_bytes == b.segment_bytes,
        );
        check(
            "collector.seal_interval",
            a.seal_interval == b.seal_interval,
        );
        check("collector.workers", a.workers == b.workers);
        check("collector.http_threads", a.http_threads == b.http_threads);
        check("collector.tls_cert", a.tls_cert == b.tls_cert);
        check("collector.tls_key", a.tls_key == b.tls_key);
        check(
            "collector.max_in_flight",
            a.max_in_flight == b.max_in_flight,
        );
        check("collector.lingering", a.lingering == b.lingering);
        check(
            "destinations (the set of names)",
            self.core.destination_names() == new.core.destination_names(),
        );
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_collector_and_core_sections() {
        let c = CollectorConfig::from_toml_str(
            r#"
            [collector]
            listen = "127.0.0.1:9999"
            api_keys = [{ key = "secret-key-1", namespaces = ["events"] }]
            fsync = "interval"
            fsync_interval = "2ms"
            [batch]
            max_rows = 7
            "#,
        )
        .expect("valid");
        assert_eq!(c.collector.listen.port(), 9999);
        assert_eq!(c.collector.fsync, FsyncPolicy::Interval);
        assert_eq!(c.collector.fsync_interval, Duration::from_millis(2));
        assert_eq!(c.core.batch.max_rows, 7);
        assert_eq!(c.collector.api_keys[0].role, KeyRole::Client);
        let c = CollectorConfig::from_toml_str(
            "[collector]\napi_keys = [{ key = \"secret-key-1\", namespaces = [\"*\"], role = \"sdk\" }]\n",
        )
        .expect("valid");
        assert_eq!(c.collector.api_keys[0].role, KeyRole::Sdk);
        let e = CollectorConfig::from_toml_str(
            "[collector]\napi_keys = [{ key = \"secret-key-1\", namespaces = [\"*\"], role = \"admin\" }]\n",
        )
        .expect_err("unknown role");
        assert!(e.to_string().contains("admin"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = CollectorConfig::from_toml_str("[collector]\nlisen = 1\n").expect_err("bad key");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = CollectorConfig::from_toml_str("[batch]\nmax_rowz = 1\n").expect_err("bad key");
        assert!(e.to_string().contains("max_rowz"), "{e}");
        let e = CollectorConfig::from_toml_with_env(
            "",
            "x",
            vec![("EVLOG_COLLECTOR_LISTEN".into(), "1".into())],
        )
        .expect_err("env");
        assert!(e.to_string().contains("EVLOG_COLLECTOR_LISTEN"), "{e}");
    }

    #[test]
    fn a_body_budget_smaller_than_the_largest_body_is_refused() {
        let e = CollectorConfig::from_toml_str(
            "[collector]\nmax_body_bytes = \"2MiB\"\nmax_in_flight_bytes = \"1MiB\"\n",
        )
        .expect_err("budget below one body");
        let text = e.to_string();
        assert!(text.contains("collector.max_in_flight_bytes"), "{text}");
        assert!(text.contains("collector.max_body_bytes"), "{text}");
    }
}
