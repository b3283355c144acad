//! The BigQuery sink itself: requests per batch, retries, row errors, table creation, outcomes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::schema_sync::{target_id, SyncState};
use super::service::{self, Tokens};
use super::storage::StorageWriter;
use super::{request, BigQueryConfig, WriteApi};
use crate::config::retry::RetryConfig;
use crate::ingest::LiveProcessor;
use crate::routing::{PartitionKind, Router};
use crate::schema::SchemaRegistry;
use crate::sink::follow::Follow;
use crate::sink::http::{self, Attempts, Failure};
use crate::sink::{
    Batch, BatchOutcome, DeadLetterOutcome, EncodedRow, RejectedEvent, Sink, SinkError,
    DEAD_LETTER_SCHEMA,
};

/// Reason label of rows BigQuery refused as `invalid`.
pub const REJECT_REASON: &str = "bigquery_invalid";

/// Base tables the sink may create: (dataset, table) → (schema fields, partitioned).
pub type TableCatalog = HashMap<(String, String), (Value, bool)>;

/// Streams batches into BigQuery.
pub struct BigQuerySink {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) http: reqwest::Client,
    pub(super) tokens: Tokens,
    pub(super) cfg: BigQueryConfig,
    pub(super) retry: RetryConfig,
    /// Base tables from the schemas in use (replaced when `follow` sees a reload).
    pub(super) catalog: Arc<TableCatalog>,
    /// The processor `catalog` comes from (see `schema_sync`).
    pub(super) follow: Follow,
    /// Tables to patch and the shards written (see `schema_sync`).
    pub(super) sync: SyncState,
    /// Tables this sink created or found, so it bootstraps each at most once.
    ensured: Mutex<HashSet<(String, String)>>,
    /// One attempt per request (the pipeline is probing a failing destination).
    probe: bool,
    /// The pipeline's shutdown signal (see [`crate::sink::StopSignal`]).
    pub(super) stop: std::sync::Arc<crate::sink::StopSignal>,
    /// The Storage Write API client, with `api = "storage_write"`.
    pub(super) storage: Option<StorageWriter>,
}

impl std::fmt::Debug for BigQuerySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuerySink")
            .field("project", &self.cfg.project)
            .field("base_url", &self.cfg.base_url)
            .finish_non_exhaustive()
    }
}

/// One request's worth of rows and what happened to them.
pub(super) struct Job {
    pub(super) batch: usize,
    pub(super) dataset: String,
    pub(super) base_table: String,
    pub(super) suffix: Option<String>,
    pub(super) rows: Vec<EncodedRow>,
    /// Rows for the dead-letter table, which the sink creates when it is missing.
    pub(super) dead_letter: bool,
}

/// What became of a [`Job`]'s rows (either API).
#[derive(Default)]
pub(super) struct JobResult {
    pub(super) delivered: usize,
    /// Rows refused for good: the row, the field at fault, BigQuery's message.
    pub(super) rejected: Vec<(EncodedRow, Option<String>, String)>,
    pub(super) failed: Vec<EncodedRow>,
    pub(super) error: Option<SinkError>,
    pub(super) retried: usize,
    pub(super) attempt_errors: Vec<&'static str>,
}

impl BigQuerySink {
    /// Builds the HTTP client, the runtime and the token source (a bad key file fails here).
    pub fn new(
        cfg: &BigQueryConfig,
        retry: &RetryConfig,
        catalog: Arc<TableCatalog>,
    ) -> Result<Self, SinkError> {
        let rt = http::runtime()?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.workers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SinkError::Config(format!("HTTP client: {e}")))?;
        let tokens = rt.block_on(Tokens::from_config(cfg))?;
        let storage = match cfg.api {
            WriteApi::InsertAll => None,
            // The channel's background task lives on this runtime.
            WriteApi::StorageWrite => Some(rt.block_on(async { StorageWriter::new(cfg) })?),
        };
        Ok(Self {
            rt,
            http,
            tokens,
            cfg: cfg.clone(),
            retry: retry.clone(),
            catalog,
            follow: Follow::fixed(),
            sync: SyncState::default(),
            ensured: Mutex::new(HashSet::new()),
            probe: false,
            stop: Default::default(),
            storage,
        })
    }

    /// As [`BigQuerySink::new`], with the catalog of the processor in `live`, followed: after a
    /// reload the sink creates and patches tables by the new schemas (see `schema_sync`).
    pub fn following(
        cfg: &BigQueryConfig,
        retry: &RetryConfig,
        live: &LiveProcessor,
    ) -> Result<Self, SinkError> {
        let (follow, now) = Follow::new(live);
        let mut sink = Self::new(cfg, retry, Arc::new(catalog(now.schemas(), now.router())))?;
        sink.follow = follow;
        Ok(sink)
    }

    /// Whether the pipeline is probing (one attempt per request).
    pub(super) fn probe(&self) -> bool {
        self.probe
    }

    fn url(&self, dataset: &str, table: &str) -> String {
        format!(
            "{}/projects/{}/datasets/{}/tables/{}/insertAll",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.project,
            dataset,
            table
        )
    }

    /// Sends `job.rows` until delivered, rejected or out of attempts.
    async fn run_job(&self, job: Job) -> JobResult {
        if self.storage.is_some() {
            return self.run_storage_job(job).await;
        }
        let mut out = JobResult::default();
        let mut pending = job.rows;
        let mut attempts = Attempts::new(&self.retry, self.probe).watching(&self.stop);
        let mut bootstrapped = false;
        let mut synced = false;
        let url = self.url(&job.dataset, &job.base_table);
        let key = (job.dataset.clone(), job.base_table.clone());
        let target = target_id(&job.base_table, job.suffix.as_deref());
        if !job.dead_letter {
            self.note_written(&key, &target);
        }
        loop {
            let body = request::body(&pending, job.suffix.as_deref(), self.cfg.skip_invalid_rows);
            let result = attempts
                .attempt(service::insert_all(
                    &self.http,
                    &self.tokens,
                    &url,
                    body,
                    self.cfg.gzip,
                    self.cfg.request_timeout,
                ))
                .await;
            let (retry_rows, failure) = match result {
                Ok(resp) => {
                    let errors = resp.insert_errors.unwrap_or_default();
                    if errors.is_empty() {
                        out.delivered += pending.len();
                        return out;
                    }
                    // Rows not mentioned were stored; `invalid` ones are refused for good; the
                    // rest (`stopped`, transient per-row reasons) go again.
                    let mut verdict: HashMap<usize, (bool, Option<String>, String)> =
                        HashMap::new();
                    let mut awaiting = false;
                    for e in errors {
                        let Some(i) = e.index.and_then(|i| usize::try_from(i).ok()) else {
                            continue;
                        };
                        let protos = e.errors.unwrap_or_default();
                        let invalid = protos
                            .iter()
                            .find(|p| p.reason.as_deref() == Some("invalid"));
                        // A column the schemas have but the table (not yet) does: retried.
                        let invalid = invalid.filter(|p| {
                            let waits = !job.dead_letter
                                && self.awaits_column(
                                    &key,
                                    p.location.as_deref(),
                                    p.message.as_deref().unwrap_or_default(),
                                );
                            awaiting |= waits;
                            !waits
                        });
                        let entry = match invalid {
                            Some(p) => (
                                true,
                                p.location.clone(),
                                p.message.clone().unwrap_or_else(|| "invalid".into()),
                            ),
                            None => (
                                false,
                                None,
                                protos
                                    .first()
                                    .and_then(|p| p.reason.clone())
                                    .unwrap_or_else(|| "stopped".into()),
                            ),
                        };
                        verdict.insert(i, entry);
                    }
                    let mut again = Vec::new();
                    for (i, row) in pending.into_iter().enumerate() {
                        match verdict.remove(&i) {
                            None => out.delivered += 1,
                            Some((true, location, message)) => {
                                out.rejected.push((row, location, message))
                            }
                            Some((false, _, _)) => again.push(row),
                        }
                    }
                    if again.is_empty() {
                        return out;
                    }
                    if awaiting && !synced {
                        // Perhaps nobody patched this table (another process reloaded, or this
                        // one started with the new schema): once per request, try.
                        synced = true;
                        if let Some(kind) = self.patch_target(&key, &target).await {
                            out.attempt_errors.push(kind);
                        }
                    }
                    let failure = if awaiting {
                        Failure::retry(
                            "schema_propagation",
                            "BigQuery does not accept a column of the schema yet (no such \
                             field: the table is being patched or the patch is propagating)"
                                .into(),
                            None,
                        )
                    } else {
                        Failure::retry(
                            "row_errors",
                            "rows stopped by an invalid neighbour or a transient row error".into(),
                            None,
                        )
                    };
                    (again, failure)
                }
                Err(f) => (pending, f),
            };
            pending = retry_rows;
            out.attempt_errors.push(failure.kind);
            if failure.not_found && (self.cfg.create_tables || job.dead_letter) && !bootstrapped {
                bootstrapped = true;
                let ensured = attempts
                    .attempt(async {
                        // As a Failure only so the shutdown deadline bounds it too.
                        Ok::<_, Failure>(
                            self.ensure_table(&job.dataset, &job.base_table, &job.base_table)
                                .await,
                        )
                    })
                    .await
                    .unwrap_or_else(|f| Err(f.into_error()));
                match ensured {
                    Ok(()) => continue,
                    Err(e) => {
                        out.failed = pending;
                        out.error = Some(e);
                        return out;
                    }
                }
            }
            if !attempts.backoff(&failure).await {
                out.failed = pending;
                out.error = Some(failure.into_error());
                return out;
            }
            out.retried += pending.len();
        }
    }

    /// Creates table `table_id` (the base table `base`, or one of its day shards) from `base`'s
    /// schema if it is missing (and, with `create_tables`, its dataset).
    pub(super) async fn ensure_table(
        &self,
        dataset: &str,
        base: &str,
        table_id: &str,
    ) -> Result<(), SinkError> {
        let key = (dataset.to_string(), table_id.to_string());
        if self.is_ensured(&key) {
            return Ok(());
        }
        let dead_letter;
        let (fields, partitioned) = if base == self.cfg.dead_letter_table {
            dead_letter = (
                serde_json::from_str::<Value>(DEAD_LETTER_SCHEMA).unwrap_or_default(),
                true,
            );
            &dead_letter
        } else {
            let base_key = (dataset.to_string(), base.to_string());
            self.catalog.get(&base_key).ok_or_else(|| {
                SinkError::Config(format!(
                    "table {dataset}.{table_id} does not exist and no schema file maps to it"
                ))
            })?
        };
        let table = table_id;
        let base = self.cfg.base_url.trim_end_matches('/');
        let project = &self.cfg.project;
        let mut table_body = json!({
            "kind": "bigquery#table",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
        });
        // Day shards are tables of their own, never partitioned.
        if *partitioned && table_id == base {
            table_body["timePartitioning"] = json!({"type": "DAY"});
        }
        let tables_url = format!("{base}/projects/{project}/datasets/{dataset}/tables");
        let created = match self.create(&tables_url, &table_body).await {
            // The dataset is missing too: datasets belong to the user unless `create_tables`.
            Err(f) if f.not_found && self.cfg.create_tables => {
                let dataset_body = json!({
                    "kind": "bigquery#dataset",
                    "datasetReference": {"projectId": project, "datasetId": dataset},
                });
                match self
                    .create(
                        &format!("{base}/projects/{project}/datasets"),
                        &dataset_body,
                    )
                    .await
                {
                    Ok(()) => self.create(&tables_url, &table_body).await,
                    Err(f) => Err(Failure {
                        message: format!("creating dataset {dataset}: {}", f.message),
                        ..f
                    }),
                }
            }
            r => r,
        };
        created.map_err(|f| SinkError::Remote {
            kind: f.kind,
            message: format!("creating table {dataset}.{table}: {}", f.message),
        })?;
        self.set_ensured(key, true);
        Ok(())
    }

    /// Whether this sink created or found table `(dataset, table id)`.
    pub(super) fn is_ensured(&self, key: &(String, String)) -> bool {
        self.ensured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Records that table `(dataset, table id)` exists (or, `false`, that it may not).
    pub(super) fn set_ensured(&self, key: (String, String), exists: bool) {
        let mut ensured = self.ensured.lock().unwrap_or_else(|e| e.into_inner());
        if exists {
            ensured.insert(key);
        } else {
            ensured.remove(&key);
        }
    }

    /// POSTs a create call; 409 (already exists) is success.
    pub(super) async fn create(&self, url: &str, body: &Value) -> Result<(), Failure> {
        let token = self.tokens.token().await?;
        let mut req = self
            .http
            .post(url)
            .timeout(self.cfg.request_timeout)
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::retry("transport", format!("create {url}: {e}"), None))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() || status == 409 {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(service::classify(status, &body, None))
    }

    fn run(&self, jobs: Vec<Job>) -> Vec<(usize, JobResult)> {
        http::run_all(&self.rt, self.cfg.workers, jobs, |job| async move {
            let batch = job.batch;
            (batch, self.run_job(job).await)
        })
    }

    fn jobs_for(&self, batch_index: usize, batch: Batch) -> Vec<Job> {
        let d = &batch.destination;
        let suffix = d.template_suffix().map(str::to_string);
        let parts = http::split(
            &batch.rows,
            self.cfg.max_rows_per_request,
            self.cfg.max_bytes_per_request.0 as usize,
        );
        let mut rows = batch.rows;
        let mut jobs = Vec::with_capacity(parts.len());
        // Split from the back so each part is moved out without copying rows.
        for part in parts.into_iter().rev() {
            let chunk = rows.split_off(part.start);
            jobs.push(Job {
                batch: batch_index,
                dataset: d.dataset.to_string(),
                base_table: d.table.to_string(),
                suffix: suffix.clone(),
                rows: chunk,
                dead_letter: false,
            });
        }
        jobs.reverse();
        jobs
    }
}

impl Sink for BigQuerySink {
    fn name(&self) -> &'static str {
        "bigquery"
    }

    fn set_probe(&mut self, probe: bool) {
        self.probe = probe;
    }

    fn watch_stop(&mut self, stop: std::sync::Arc<crate::sink::StopSignal>) {
        self.stop = stop;
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        let mut outcomes: Vec<BatchOutcome> = (0..batches.len())
            .map(|_| BatchOutcome::default())
            .collect();
        self.follow_schemas();
        self.patch_stale(&batches, &mut outcomes);
        let dests: Vec<_> = batches.iter().map(|b| b.destination.clone()).collect();
        let jobs: Vec<Job> = batches
            .into_iter()
            .enumerate()
            .flat_map(|(i, b)| self.jobs_for(i, b))
            .collect();
        let now = crate::time::now_micros();
        for (i, r) in self.run(jobs) {
            let o = &mut outcomes[i];
            o.delivered += r.delivered;
            o.retried += r.retried;
            o.attempt_errors.extend(r.attempt_errors);
            o.failed.extend(r.failed);
            if r.error.is_some() {
                o.error = r.error;
            }
            for (row, location, message) in r.rejected {
                o.rejected.push(RejectedEvent::refused_row(
                    &dests[i],
                    row,
                    REJECT_REASON,
                    location,
                    format!("BigQuery refused the row: {message}"),
                    now,
                ));
            }
        }
        outcomes
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let Some(w) = &self.storage else {
            return Ok(());
        };
        // Exactly-once: the streams this writer still holds are finalized (no more appends);
        // one attempt each, bounded, as a shutdown must be.
        let failed = self.rt.block_on(async {
            let token = self.tokens.token().await.ok().flatten();
            w.finalize_idle(token.as_deref(), Duration::from_secs(5))
                .await
        });
        if failed > 0 {
            return Err(SinkError::Remote {
                kind: "finalize",
                message: format!("{failed} committed stream(s) could not be finalized"),
            });
        }
        Ok(())
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        self.store_dead_letters(events.to_vec())
            .into_result("dead_letter_invalid")
    }

    fn store_dead_letters(&mut self, events: Vec<RejectedEvent>) -> DeadLetterOutcome {
        let now = crate::time::now_micros();
        // Rows come back by insertId; an id may repeat (one event logged twice), so each id
        // maps to the queue of its events.
        let mut by_id: HashMap<String, Vec<RejectedEvent>> = HashMap::new();
        let mut by_dataset: HashMap<String, Vec<EncodedRow>> = HashMap::new();
        for e in events {
            let row = EncodedRow {
                insert_id: format!("{}-rejected", e.event_id),
                json: e.to_row_json(now),
            };
            by_dataset
                .entry(e.dataset.clone())
                .or_default()
                .push(row.clone());
            by_id.entry(row.insert_id).or_default().push(e);
        }
        let mut jobs = Vec::new();
        for (dataset, rows) in by_dataset {
            let parts = http::split(
                &rows,
                self.cfg.max_rows_per_request,
                self.cfg.max_bytes_per_request.0 as usize,
            );
            for part in parts {
                jobs.push(Job {
                    batch: 0,
                    dataset: dataset.clone(),
                    base_table: self.cfg.dead_letter_table.clone(),
                    suffix: None,
                    rows: rows[part].to_vec(),
                    dead_letter: true,
                });
            }
        }
        let mut out = DeadLetterOutcome::default();
        let mut take = |id: &str| by_id.get_mut(id).and_then(Vec::pop);
        for (_, r) in self.run(jobs) {
            for row in r.failed {
                out.failed.extend(take(&row.insert_id));
            }
            for (row, location, message) in r.rejected {
                let why = format!(
                    "the dead-letter table refused the row{}: {message}",
                    location.map(|l| format!(" ({l})")).unwrap_or_default()
                );
                out.refused.extend(take(&row.insert_id).map(|e| (e, why)));
            }
            if r.error.is_some() {
                out.error = r.error;
            }
        }
        // What was neither failed nor refused was acknowledged.
        out.stored = by_id.into_values().flatten().collect();
        if !out.failed.is_empty() && out.error.is_none() {
            out.error = Some(SinkError::Remote {
                kind: "dead_letter",
                message: "BigQuery did not take the dead letters".into(),
            });
        }
        out
    }
}

/// The catalog of base tables from the schemas and routing in use.
pub fn catalog(schemas: &SchemaRegistry, router: &Router) -> TableCatalog {
    schemas
        .iter()
        .map(|s| {
            let d = router.route(s.namespace(), s.type_name(), 0);
            let fields = s.to_bigquery_json();
            (
                (d.dataset.to_string(), d.table.to_string()),
                (fields, d.partitioning == PartitionKind::Partitioned),
            )
        })
        .collect()
}
