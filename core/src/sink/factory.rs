//! `[sink]` and the factory: the one list of sinks. Each [`SinkKind`] names a sink folder; its
//! settings are `[sink.<name>]` ([`SinkConfig`]); [`SinkConfig::validate`] runs every sink's
//! `validate()`; [`factory`] builds the selected one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{bigquery, file, forward, null, opensearch, Sink, SinkError};
use crate::config::error::ConfigError;
use crate::config::retry::RetryConfig;
use crate::ingest::LiveProcessor;

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
    /// OpenSearch or Elasticsearch (`_bulk`), see `[sink.opensearch]`.
    Opensearch,
}

/// `[sink]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Which sink to use: `"file"` (default), `"bigquery"`, `"opensearch"`, `"forward"` or
    /// `"null"`.
    pub kind: SinkKind,
    /// Settings of the file sink.
    pub file: file::FileSinkConfig,
    /// Settings of the BigQuery sink.
    pub bigquery: bigquery::BigQueryConfig,
    /// Settings of the forward (to a collector) sink.
    pub forward: forward::ForwardConfig,
    /// Settings of the OpenSearch sink.
    pub opensearch: opensearch::OpenSearchConfig,
}

impl SinkConfig {
    /// Every sink's rules, the selected one's required keys included. The sinks not selected
    /// are checked too: a bad value is an error whether or not it is in use yet.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.file.validate()?;
        self.bigquery.validate(self.kind == SinkKind::Bigquery)?;
        self.forward.validate(self.kind == SinkKind::Forward)?;
        self.opensearch.validate(self.kind == SinkKind::Opensearch)
    }
}

/// Builds a sink; called once in every process that logs (after a fork, in the child too).
pub type SinkFactory = Arc<dyn Fn() -> Result<Box<dyn Sink>, SinkError> + Send + Sync>;

/// The factory for the configured sink. Checks the configuration once now (for BigQuery: builds
/// the client and reads the credentials). `processor` is the one in use, replaced whole by
/// reloads: the BigQuery sink creates and patches the tables its schemas describe
/// ([`bigquery::catalog`]), the OpenSearch sink generates index templates and documents from
/// them ([`opensearch::catalog`]); both follow it to the processor a reload stores.
pub fn factory(
    config: &SinkConfig,
    retry: &RetryConfig,
    processor: &LiveProcessor,
) -> Result<SinkFactory, SinkError> {
    match config.kind {
        SinkKind::Bigquery => {
            let cfg = config.bigquery.clone();
            let retry = retry.clone();
            let live = Arc::clone(processor);
            bigquery::BigQuerySink::following(&cfg, &retry, &live)?;
            Ok(Arc::new(move || {
                bigquery::BigQuerySink::following(&cfg, &retry, &live)
                    .map(|s| Box::new(s) as Box<dyn Sink>)
            }))
        }
        SinkKind::File => {
            let cfg = config.file.clone();
            file::FileSink::new(&cfg)?;
            Ok(Arc::new(move || {
                file::FileSink::new(&cfg).map(|s| Box::new(s) as Box<dyn Sink>)
            }))
        }
        SinkKind::Forward => {
            let cfg = config.forward.clone();
            let retry = retry.clone();
            forward::ForwardSink::new(&cfg, &retry)?;
            Ok(Arc::new(move || {
                forward::ForwardSink::new(&cfg, &retry).map(|s| Box::new(s) as Box<dyn Sink>)
            }))
        }
        SinkKind::Opensearch => {
            let cfg = config.opensearch.clone();
            let retry = retry.clone();
            let live = Arc::clone(processor);
            opensearch::OpenSearchSink::following(&cfg, &retry, &live)?;
            Ok(Arc::new(move || {
                opensearch::OpenSearchSink::following(&cfg, &retry, &live)
                    .map(|s| Box::new(s) as Box<dyn Sink>)
            }))
        }
        SinkKind::Null => Ok(Arc::new(|| {
            null::NullSink::new(&null::NullConfig::default()).map(|s| Box::new(s) as Box<dyn Sink>)
        })),
    }
}
