//! `[sink.bigquery]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;
use crate::config::units::{duration_str, ByteSize};

/// BigQuery's limit on one insertAll request, in bytes (10 MB): `max_bytes_per_request` and
/// `batch.max_bytes` stay within it.
pub const REQUEST_LIMIT: u64 = 10 * 1000 * 1000;

/// How the sink gets OAuth2 access tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user
    /// credentials, or the GCE/GKE metadata server.
    #[default]
    ApplicationDefault,
    /// A service-account key file (`credentials`).
    ServiceAccount,
    /// A fixed bearer token (`token`), e.g. from a sidecar or a proxy that injects credentials.
    Token,
    /// No Authorization header (the BigQuery test server, authenticating proxies).
    None,
}

/// Which BigQuery API the sink writes rows with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteApi {
    /// REST `tabledata.insertAll` (JSON rows, `insertId` best-effort dedupe).
    #[default]
    InsertAll,
    /// gRPC Storage Write API (`BigQueryWrite.AppendRows`, protobuf rows): the `_default`
    /// stream, or committed streams with offsets with `exactly_once`.
    StorageWrite,
}

/// `[sink.bigquery]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BigQueryConfig {
    /// GCP project that owns the datasets.
    pub project: String,
    /// How to authenticate: `application_default`, `service_account`, `token` or `none`.
    pub auth: AuthMethod,
    /// Service-account key file (with `auth = "service_account"`).
    pub credentials: Option<PathBuf>,
    /// Bearer token (with `auth = "token"`).
    pub token: Option<String>,
    /// API root; override to point at a proxy or the test server.
    pub base_url: String,
    /// Most rows per insertAll request (BigQuery recommends 500).
    pub max_rows_per_request: usize,
    /// Most bytes of row JSON per request (BigQuery's limit is 10 MB per request).
    pub max_bytes_per_request: ByteSize,
    /// Compress requests with gzip (insertAll bodies; Storage Write messages, gRPC gzip).
    pub gzip: bool,
    /// insertAll requests in flight at once.
    pub workers: usize,
    /// Timeout of one HTTP request.
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// BigQuery's `skipInvalidRows`: false (BigQuery's default) makes one invalid row stop the
    /// others in its request, which evlog then resends without it.
    pub skip_invalid_rows: bool,
    /// Create missing datasets and base tables from the schema files.
    pub create_tables: bool,
    /// Table (in each dataset) that receives rejected events.
    pub dead_letter_table: String,
    /// The API rows go through: `insert_all` (REST, the default) or `storage_write` (gRPC
    /// Storage Write API).
    pub api: WriteApi,
    /// With `api = "storage_write"`: write through committed streams with offsets so that a
    /// retry or a replay after a crash stores nothing twice (else the `_default` stream,
    /// at-least-once).
    pub exactly_once: bool,
    /// The Storage Write API endpoint (gRPC); `http://` (plaintext) for a local test server.
    pub storage_url: String,
    /// With `exactly_once`: a directory where each request's stream and offset are written
    /// (fsync'd) before it is sent, so rows replayed after a crash go back to the same place
    /// and are not stored twice. Without it they are kept in memory only: after a crash, rows
    /// whose last attempt had no answer may be stored twice.
    pub positions_dir: Option<PathBuf>,
}

impl Default for BigQueryConfig {
    fn default() -> Self {
        Self {
            project: String::new(),
            auth: AuthMethod::ApplicationDefault,
            credentials: None,
            token: None,
            base_url: "https://bigquery.googleapis.com/bigquery/v2".into(),
            max_rows_per_request: 500,
            max_bytes_per_request: ByteSize(9 * 1000 * 1000),
            gzip: true,
            workers: 4,
            request_timeout: Duration::from_secs(30),
            skip_invalid_rows: false,
            create_tables: false,
            dead_letter_table: "_evlog_rejected".into(),
            api: WriteApi::InsertAll,
            exactly_once: false,
            storage_url: "https://bigquerystorage.googleapis.com".into(),
            positions_dir: None,
        }
    }
}

impl BigQueryConfig {
    /// The section's rules; `selected` (`sink.kind = "bigquery"`) makes `project`, and the
    /// credentials `auth` names, required.
    pub fn validate(&self, selected: bool) -> Result<(), ConfigError> {
        if selected {
            if self.project.is_empty() {
                return ConfigError::invalid(
                    "sink.bigquery.project",
                    "is required with sink.kind = \"bigquery\"",
                );
            }
            if self.auth == AuthMethod::ServiceAccount && self.credentials.is_none() {
                return ConfigError::invalid(
                    "sink.bigquery.credentials",
                    "is required with auth = \"service_account\"",
                );
            }
            if self.auth == AuthMethod::Token && self.token.is_none() {
                return ConfigError::invalid(
                    "sink.bigquery.token",
                    "is required with auth = \"token\"",
                );
            }
        }
        if !(1..=50_000).contains(&self.max_rows_per_request) {
            return ConfigError::invalid("sink.bigquery.max_rows_per_request", "must be 1..=50000");
        }
        if self.max_bytes_per_request.0 == 0 || self.max_bytes_per_request.0 > REQUEST_LIMIT {
            return ConfigError::invalid(
                "sink.bigquery.max_bytes_per_request",
                "must be 1..=10MB (BigQuery's request limit)",
            );
        }
        if self.workers == 0 || self.workers > 256 {
            return ConfigError::invalid("sink.bigquery.workers", "must be 1..=256");
        }
        if !(self.storage_url.starts_with("https://") || self.storage_url.starts_with("http://"))
            || self.storage_url.trim_end_matches('/').ends_with("://")
        {
            return ConfigError::invalid(
                "sink.bigquery.storage_url",
                "must be an https:// (or, for a local test server, http://) URL with a host",
            );
        }
        if self.exactly_once && self.api != WriteApi::StorageWrite {
            return ConfigError::invalid(
                "sink.bigquery.exactly_once",
                "needs api = \"storage_write\" (insertAll has no offsets)",
            );
        }
        if self.positions_dir.is_some() && !self.exactly_once {
            return ConfigError::invalid(
                "sink.bigquery.positions_dir",
                "is for exactly_once = true (it keeps the offsets of committed streams)",
            );
        }
        if let Err(rule) = crate::envelope::check_table_name(&self.dead_letter_table) {
            return ConfigError::invalid("sink.bigquery.dead_letter_table", rule);
        }
        Ok(())
    }
}
