//! The OpenSearch sink itself: templates, `_bulk` requests per batch, per-item retries, outcomes.

use std::collections::HashMap;
use std::sync::Arc;

use super::document::DocShape;
use super::index::{IndexPattern, Values, ALL};
use super::request::{self, ItemError, Verdict};
use super::service::{excerpt, Service};
use super::template::{self, Catalog, Template};
use super::OpenSearchConfig;
use crate::config::retry::RetryConfig;
use crate::ingest::LiveProcessor;
use crate::routing::Destination;
use crate::sink::follow::Follow;
use crate::sink::http::{self, Attempts, Failure};
use crate::sink::{
    Batch, BatchOutcome, DeadLetterOutcome, EncodedRow, RejectedEvent, Sink, SinkError,
};

/// Reason label of documents OpenSearch refused for their content.
pub const REJECT_REASON: &str = "opensearch_refused";

/// Delivers batches to OpenSearch (or Elasticsearch) with `_bulk`.
pub struct OpenSearchSink {
    rt: tokio::runtime::Runtime,
    service: Service,
    cfg: OpenSearchConfig,
    retry: RetryConfig,
    index: IndexPattern,
    dead_letter_index: IndexPattern,
    /// Per (dataset, table): how its rows become documents (absent: as they are).
    shapes: Shapes,
    /// Templates still to install (emptied once they all are).
    templates: Vec<Template>,
    /// The processor whose schemas `shapes` and `templates` come from.
    follow: Follow,
    /// One attempt per request (the pipeline is probing a failing destination).
    probe: bool,
    /// The pipeline's shutdown signal (see [`crate::sink::StopSignal`]).
    stop: std::sync::Arc<crate::sink::StopSignal>,
}

impl std::fmt::Debug for OpenSearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchSink")
            .field("urls", &self.cfg.urls)
            .field("index", &self.cfg.index)
            .finish_non_exhaustive()
    }
}

/// One `_bulk` request's worth of rows for one index.
struct Job {
    batch: usize,
    index: String,
    shape: Option<Arc<DocShape>>,
    rows: Vec<EncodedRow>,
}

#[derive(Default)]
struct JobResult {
    delivered: usize,
    rejected: Vec<(EncodedRow, ItemError)>,
    failed: Vec<EncodedRow>,
    error: Option<SinkError>,
    retried: usize,
    attempt_errors: Vec<&'static str>,
}

impl OpenSearchSink {
    /// Builds the client and runtime (a bad `ca_file` or pattern fails here); nothing is sent
    /// until the first delivery.
    pub fn new(
        cfg: &OpenSearchConfig,
        retry: &RetryConfig,
        catalog: Arc<Catalog>,
    ) -> Result<Self, SinkError> {
        if cfg.urls.is_empty() {
            return Err(SinkError::Config(
                "sink.opensearch.urls is required with sink.kind = \"opensearch\"".into(),
            ));
        }
        let index = IndexPattern::parse(&cfg.index, &ALL)
            .map_err(|rule| SinkError::Config(format!("sink.opensearch.index: {rule}")))?;
        let dead_letter_index =
            IndexPattern::parse(&cfg.dead_letter_index, &ALL).map_err(|rule| {
                SinkError::Config(format!("sink.opensearch.dead_letter_index: {rule}"))
            })?;
        let (shapes, templates) = derived(cfg, &catalog);
        Ok(Self {
            rt: http::runtime()?,
            service: Service::new(cfg, retry)?,
            cfg: cfg.clone(),
            retry: retry.clone(),
            index,
            dead_letter_index,
            shapes,
            templates,
            follow: Follow::fixed(),
            probe: false,
            stop: Default::default(),
        })
    }

    /// As [`OpenSearchSink::new`], with the catalog of the processor in `live`, followed: when a
    /// reload replaces the processor, the next delivery installs the new schemas' templates
    /// (again: a template PUT replaces the one of the same name) and shapes documents by them.
    pub fn following(
        cfg: &OpenSearchConfig,
        retry: &RetryConfig,
        live: &LiveProcessor,
    ) -> Result<Self, SinkError> {
        let (follow, now) = Follow::new(live);
        let mut sink = Self::new(
            cfg,
            retry,
            Arc::new(template::catalog(now.schemas(), now.router())),
        )?;
        sink.follow = follow;
        Ok(sink)
    }

    /// Rebuilds shapes and templates when the processor was replaced since the last call.
    fn follow_schemas(&mut self) {
        if let Some(p) = self.follow.changed() {
            let catalog = template::catalog(p.schemas(), p.router());
            (self.shapes, self.templates) = derived(&self.cfg, &catalog);
        }
    }

    /// The index (or data stream) of a destination.
    pub fn index_name(&self, d: &Destination) -> String {
        self.index.render(Values {
            namespace: Some(&d.dataset),
            type_name: Some(&d.table),
            day: Some(&d.day),
        })
    }

    /// Installs the templates not installed yet; `Err` with the first that failed. Either way
    /// with the kinds of the failed attempts (for `evlog_sink_errors_total`).
    fn install_templates(&mut self) -> Result<Vec<&'static str>, (SinkError, Vec<&'static str>)> {
        if self.templates.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.templates);
        let this = &*self;
        let results = http::run_all(&self.rt, self.cfg.workers, pending, |t| async move {
            let mut attempts = Attempts::new(&this.retry, this.probe).watching(&this.stop);
            let mut kinds = Vec::new();
            loop {
                match attempts
                    .attempt(this.service.put_template(&t.name, &t.body, &mut kinds))
                    .await
                {
                    Ok(()) => return (t, Ok(()), kinds),
                    Err(f) => {
                        kinds.push(f.kind);
                        if !attempts.backoff(&f).await {
                            let e = SinkError::Remote {
                                kind: f.kind,
                                message: format!(
                                    "installing index template {}: {}",
                                    t.name, f.message
                                ),
                            };
                            return (t, Err(e), kinds);
                        }
                    }
                }
            }
        });
        let mut first_error = None;
        let mut all_kinds = Vec::new();
        for (t, r, kinds) in results {
            all_kinds.extend(kinds);
            if let Err(e) = r {
                first_error.get_or_insert(e);
                self.templates.push(t);
            }
        }
        match first_error {
            None => Ok(all_kinds),
            Some(e) => Err((e, all_kinds)),
        }
    }

    /// Sends `job.rows` until each is delivered, refused or out of attempts.
    async fn run_job(&self, job: Job) -> JobResult {
        let mut out = JobResult::default();
        let mut pending = job.rows;
        let mut attempts = Attempts::new(&self.retry, self.probe).watching(&self.stop);
        loop {
            let body = request::body(&job.index, &pending, job.shape.as_deref());
            let bulk = attempts.attempt(self.service.bulk(&body, &mut out.attempt_errors));
            let failure = match bulk.await {
                Ok(answer) => {
                    let ids: Vec<&str> = pending.iter().map(|r| r.insert_id.as_str()).collect();
                    match request::verdicts(&answer, &ids) {
                        Err(what) => Failure::fatal(
                            "bad_answer",
                            format!(
                                "POST _bulk answered 2xx with a body that {what}: {}",
                                excerpt(&answer)
                            ),
                        ),
                        Ok(verdicts) => match self.sort(&mut out, pending, verdicts) {
                            None => return out,
                            Some((again, failure)) => {
                                pending = again;
                                failure
                            }
                        },
                    }
                }
                Err(f) => f,
            };
            out.attempt_errors.push(failure.kind);
            if !attempts.backoff(&failure).await {
                out.failed.extend(pending);
                out.error = Some(failure.into_error());
                return out;
            }
            out.retried += pending.len();
        }
    }

    /// Counts the verdicts into `out`; the rows to send again and why, if any.
    fn sort(
        &self,
        out: &mut JobResult,
        rows: Vec<EncodedRow>,
        verdicts: Vec<Verdict>,
    ) -> Option<(Vec<EncodedRow>, Failure)> {
        let mut again = Vec::new();
        let mut why: Option<ItemError> = None;
        for (row, v) in rows.into_iter().zip(verdicts) {
            match v {
                Verdict::Delivered => out.delivered += 1,
                Verdict::Refused(e) => out.rejected.push((row, e)),
                Verdict::Fail(e) => {
                    if out.error.is_none() {
                        out.attempt_errors.push("item_4xx");
                        out.error = Some(SinkError::Remote {
                            kind: "item_4xx",
                            message: format!(
                                "OpenSearch did not take a document: {}",
                                e.describe()
                            ),
                        });
                    }
                    out.failed.push(row);
                }
                Verdict::Retry(e) => {
                    why.get_or_insert(e);
                    again.push(row);
                }
            }
        }
        let e = why?;
        let kind = if e.status == 429 {
            "item_429"
        } else {
            "item_5xx"
        };
        let message = format!(
            "OpenSearch asked for {} document(s) again: {}",
            again.len(),
            e.describe()
        );
        Some((again, Failure::retry(kind, message, None)))
    }

    fn run(&self, jobs: Vec<Job>) -> Vec<(usize, JobResult)> {
        http::run_all(&self.rt, self.cfg.workers, jobs, |job| async move {
            let batch = job.batch;
            (batch, self.run_job(job).await)
        })
    }

    fn jobs_for(&self, batch_index: usize, batch: Batch) -> Vec<Job> {
        let d = &batch.destination;
        let index = self.index_name(d);
        let shape = self
            .shapes
            .get(&(d.dataset.to_string(), d.table.to_string()))
            .cloned();
        let parts = http::split(
            &batch.rows,
            self.cfg.max_docs_per_request,
            self.cfg.max_bytes_per_request.0 as usize,
        );
        let mut rows = batch.rows;
        let mut jobs = Vec::with_capacity(parts.len());
        // Split from the back so each part is moved out without copying rows.
        for part in parts.into_iter().rev() {
            let chunk = rows.split_off(part.start);
            jobs.push(Job {
                batch: batch_index,
                index: index.clone(),
                shape: shape.clone(),
                rows: chunk,
            });
        }
        jobs.reverse();
        jobs
    }
}

impl Sink for OpenSearchSink {
    fn name(&self) -> &'static str {
        "opensearch"
    }

    fn set_probe(&mut self, probe: bool) {
        self.probe = probe;
    }

    fn watch_stop(&mut self, stop: std::sync::Arc<crate::sink::StopSignal>) {
        self.stop = stop;
    }

    fn deliver(&mut self, batches: Vec<Batch>) -> Vec<BatchOutcome> {
        self.follow_schemas();
        let template_errors = match self.install_templates() {
            Ok(kinds) => kinds,
            Err((e, kinds)) => {
                return batches
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let mut o = BatchOutcome::failed(
                            b.rows,
                            SinkError::Remote {
                                kind: e.kind(),
                                message: e.to_string(),
                            },
                        );
                        if i == 0 {
                            o.attempt_errors = kinds.clone();
                        }
                        o
                    })
                    .collect()
            }
        };
        let mut outcomes: Vec<BatchOutcome> = (0..batches.len())
            .map(|_| BatchOutcome::default())
            .collect();
        if let Some(first) = outcomes.first_mut() {
            first.attempt_errors = template_errors;
        }
        let dests: Vec<Destination> = batches.iter().map(|b| b.destination.clone()).collect();
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
            for (row, e) in r.rejected {
                o.rejected.push(RejectedEvent::refused_row(
                    &dests[i],
                    row,
                    REJECT_REASON,
                    e.field(),
                    format!(
                        "OpenSearch refused the document ({}): {}",
                        e.status,
                        e.describe()
                    ),
                    now,
                ));
            }
        }
        outcomes
    }

    fn dead_letter(&mut self, events: &[RejectedEvent]) -> Result<(), SinkError> {
        self.store_dead_letters(events.to_vec())
            .into_result("dead_letter_refused")
    }

    fn store_dead_letters(&mut self, events: Vec<RejectedEvent>) -> DeadLetterOutcome {
        self.follow_schemas();
        // Attempt errors have no place in a dead-letter outcome; a failure does.
        if let Err((e, _)) = self.install_templates() {
            return DeadLetterOutcome::failed(events, e);
        }
        let now = crate::time::now_micros();
        let day = crate::time::yyyymmdd(now);
        // Documents come back by id; an id may repeat (one event rejected twice), so each id maps
        // to the queue of its events.
        let mut by_id: HashMap<String, Vec<RejectedEvent>> = HashMap::new();
        let mut by_index: HashMap<String, Vec<EncodedRow>> = HashMap::new();
        for e in events {
            let index = self.dead_letter_index.render(Values {
                namespace: Some(&e.dataset),
                type_name: None,
                day: Some(&day),
            });
            by_index.entry(index).or_default().push(EncodedRow {
                insert_id: e.event_id.clone(),
                json: e.to_row_json(now),
            });
            by_id.entry(e.event_id.clone()).or_default().push(e);
        }
        let mut jobs = Vec::new();
        for (index, rows) in by_index {
            for part in http::split(
                &rows,
                self.cfg.max_docs_per_request,
                self.cfg.max_bytes_per_request.0 as usize,
            ) {
                jobs.push(Job {
                    batch: 0,
                    index: index.clone(),
                    shape: None,
                    rows: rows[part].to_vec(),
                });
            }
        }
        let mut out = DeadLetterOutcome::default();
        let mut take = |id: &str| by_id.get_mut(id).and_then(Vec::pop);
        for (_, r) in self.run(jobs) {
            for row in r.failed {
                out.failed.extend(take(&row.insert_id));
            }
            for (row, e) in r.rejected {
                let why = format!(
                    "the dead-letter index refused the document: {}",
                    e.describe()
                );
                out.refused.extend(take(&row.insert_id).map(|ev| (ev, why)));
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
                message: "OpenSearch did not take the dead letters".into(),
            });
        }
        out
    }
}

type Shapes = HashMap<(String, String), Arc<DocShape>>;

/// The document shapes and templates (when `install_templates`) of `catalog`.
fn derived(cfg: &OpenSearchConfig, catalog: &Catalog) -> (Shapes, Vec<Template>) {
    let shapes = catalog
        .iter()
        .filter_map(|(key, fields)| {
            DocShape::new(fields, cfg.data_stream).map(|s| (key.clone(), Arc::new(s)))
        })
        .collect();
    let templates = if cfg.install_templates {
        template::templates(cfg, catalog)
    } else {
        Vec::new()
    };
    (shapes, templates)
}
