//! Hot reload: `SIGHUP` and `POST /admin/reload` re-read the config file and the schema files
//! and swap them in while the collector runs.
//!
//! # Contract
//! - **Validated first, swapped whole.** A reload reads the file the collector started with
//!   (`--config`, the same `EVLOG_*` overrides, the same `--listen`), loads the schemas, checks
//!   that they only evolve the running ones the way BigQuery allows, builds the sinks whose
//!   settings changed — and only if every step succeeds does it swap. On any error the running
//!   configuration stays, the reload is counted `evlog_config_reloads_total{result="error"}` (core's counter, as
//!   the SDK counts its own reloads),
//!   the reason is logged on stderr and returned to the caller, and the next reload starts from
//!   the running configuration again.
//! - **What a reload changes:** API keys and admin keys, the per-request limits
//!   (`max_body_bytes`, `max_batch_events`, `max_event_bytes`, `max_depth`, `request_timeout`,
//!   …), `high_watermark`, `retry_after_secs`, `shutdown_deadline`, schemas (tables added, columns
//!   added or relaxed), `[routing]`, `[[routes]]`, `[[transforms]]`, each destination's sink
//!   settings, `[batch]` and `[retry]`.
//! - **What it refuses to change** (read once at the start; [`CollectorConfig::restart_only_changes`]):
//!   the listening address, TLS files, the write-ahead log's settings, `workers`,
//!   `http_threads`, `max_in_flight`, `[collector.lingering]`, and the set of destination names
//!   (a record in the log names its destinations by their place in that set). Changing one of
//!   them is a restart, which refuses no connection (`docs/operations.md`).
//! - **Events keep the rules they were accepted with.** Routing, transforms and conversion
//!   happen at ingest and the log stores their result, so what was acknowledged before a swap is
//!   delivered as it was converted; a request is converted by one generation from start to end
//!   (it takes the running one once). Sinks see the new schemas before any request can convert
//!   with them, so a table a reload adds, or a column it adds, exists in the sink's catalog
//!   before its first row arrives. Streamers take a changed sink between two log segments; a
//!   segment in delivery finishes with the sink it started with.
//! - **Serialised.** Two reloads never interleave; the second starts from the first's result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use evlog_core::ingest::{LiveProcessor, Processor};
use evlog_core::schema::SchemaRegistry;
use evlog_core::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{CollectorConfig, CollectorSection};
use crate::streamer::Delivery;

/// One configuration as it runs: what requests are checked and converted with.
#[derive(Debug)]
pub(crate) struct Generation {
    /// `[collector]`.
    pub collector: CollectorSection,
    /// Core's configuration.
    pub core: Config,
    /// Schemas, routing and transforms built from it.
    pub processor: Arc<Processor>,
    /// SHA-256 (hex) of the effective configuration and the schemas ([`fingerprint`]).
    pub hash: String,
    /// When it was loaded, in seconds since the Unix epoch.
    pub loaded_at: f64,
    /// 1 for the configuration the collector started with, one more at every reload.
    pub number: u64,
}

impl Generation {
    /// The generation of `config` with `processor` built from it.
    pub fn new(config: CollectorConfig, processor: Arc<Processor>, number: u64) -> Self {
        let hash = fingerprint(&config, processor.schemas());
        Self {
            collector: config.collector,
            core: config.core,
            processor,
            hash,
            loaded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            number,
        }
    }

    /// The configuration as `GET /admin/config` shows it: every effective setting (defaults
    /// and `EVLOG_*` overrides included), secrets replaced by `"<redacted>"`.
    pub fn redacted(&self) -> Value {
        let mut v = effective(&self.collector, &self.core);
        redact(&mut v);
        v
    }
}

/// Where reloads read the configuration from, and their counts.
#[derive(Debug, Default)]
pub(crate) struct Reloads {
    /// The config file and the `--listen` given on the command line; `None` when the collector
    /// was started from a configuration in memory (then reloads are refused, saying so).
    pub source: Option<Source>,
    /// Held by the reload in progress.
    pub lock: tokio::sync::Mutex<()>,
    /// Why the last refused reload was refused.
    pub last_error: Mutex<Option<String>>,
}

/// The config file a collector was started from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file (`--config`).
    pub path: PathBuf,
    /// `--listen`, which replaces `collector.listen` of the file at every reading.
    pub listen: Option<SocketAddr>,
}

impl Source {
    /// Reads and checks the file as at the start.
    pub fn read(&self) -> Result<CollectorConfig, String> {
        let mut c = CollectorConfig::from_path(&self.path).map_err(|e| e.to_string())?;
        if let Some(l) = self.listen {
            c.collector.listen = l;
        }
        Ok(c)
    }
}

/// A reload's outcome, as answered and logged.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The generation now running.
    pub generation: Arc<Generation>,
    /// What changed, in words (empty when nothing did).
    pub changes: Vec<String>,
}

impl Outcome {
    /// The JSON answer of a reload that swapped.
    pub fn to_json(&self) -> Value {
        json!({
            "result": "ok",
            "generation": self.generation.number,
            "hash": self.generation.hash,
            "loaded_at": self.generation.loaded_at,
            "changes": self.changes,
        })
    }
}

/// A new generation and sinks checked against the running one, ready to swap; or why not.
pub(crate) struct Candidate {
    pub generation: Generation,
    /// Per destination, in the order of the running ones: the new delivery settings, when
    /// they changed.
    pub deliveries: Vec<Option<Arc<Delivery>>>,
    pub changes: Vec<String>,
}

/// Builds the candidate of `new` against `old` (whose destinations deliver as `running`):
/// every check of the module docs, in order, stopping at the first refusal. Blocking (reads
/// files; a BigQuery sink checks its credentials).
pub(crate) fn prepare(
    old: &Generation,
    running: &[Arc<Delivery>],
    live: &LiveProcessor,
    new: CollectorConfig,
) -> Result<Candidate, String> {
    let old_config = CollectorConfig {
        collector: old.collector.clone(),
        core: old.core.clone(),
    };
    let fixed = old_config.restart_only_changes(&new);
    if !fixed.is_empty() {
        return Err(format!(
            "{} changed: read at the start only; restart the collector to change {} (a restart \
             refuses no connection), or set {} back",
            fixed.join(", "),
            if fixed.len() == 1 { "it" } else { "them" },
            if fixed.len() == 1 { "it" } else { "them" },
        ));
    }
    let schemas = SchemaRegistry::load_configured(&new.core).map_err(|e| e.to_string())?;
    let mut changes = schema_changes(old.processor.schemas(), &schemas)?;
    let processor = Arc::new(Processor::new(schemas, &new.core));
    let sinks = new.core.destination_sinks();
    let mut deliveries = Vec::with_capacity(running.len());
    for ((name, sink), current) in sinks.iter().zip(running) {
        let wanted = Delivery::settings(sink, &new.core);
        if current.same_settings(&wanted) {
            deliveries.push(None);
            continue;
        }
        let factory = Delivery::build_factory(sink, &new.core, live)
            .map_err(|e| format!("destination {name:?}: {e}"))?;
        deliveries.push(Some(Arc::new(Delivery::new(wanted, factory))));
        changes.push(format!("destination {name:?}: sink settings changed"));
    }
    if old.core.routes != new.core.routes {
        changes.push("[[routes]] changed".into());
    }
    if old.core.transforms != new.core.transforms {
        changes.push("[[transforms]] changed".into());
    }
    if old.core.routing != new.core.routing {
        changes.push("[routing] changed".into());
    }
    if old.collector.api_keys != new.collector.api_keys {
        changes.push("collector.api_keys changed".into());
    }
    if old.collector.admin_keys != new.collector.admin_keys {
        changes.push("collector.admin_keys changed".into());
    }
    if changes.is_empty() && old.collector != new.collector {
        changes.push("[collector] limits changed".into());
    }
    Ok(Candidate {
        generation: Generation::new(new, processor, old.number + 1),
        deliveries,
        changes,
    })
}

/// The tables added or removed and the columns added or relaxed, in words; or the first change
/// BigQuery would refuse, naming the table, the column and the rule.
fn schema_changes(old: &SchemaRegistry, new: &SchemaRegistry) -> Result<Vec<String>, String> {
    evlog_core::schema::evolve::check_evolution(old, new)
        .map(|changes| changes.iter().map(ToString::to_string).collect())
        .map_err(|e| e.to_string())
}

/// The effective configuration as JSON: `[collector]` and core's sections side by side, as in
/// the file.
fn effective(collector: &CollectorSection, core: &Config) -> Value {
    let mut v = serde_json::to_value(core).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert(
            "collector".into(),
            serde_json::to_value(collector).unwrap_or(Value::Null),
        );
    }
    v
}

/// Names of settings whose values are secrets, wherever they are.
const SECRET_KEYS: &[&str] = &[
    "key",
    "api_key",
    "admin_keys",
    "password",
    "token",
    "bearer_token",
    "secret",
];

/// Replaces the values of [`SECRET_KEYS`] (and of any key naming a password, token or secret)
/// by `"<redacted>"`, at any depth.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let secret = SECRET_KEYS.contains(&k.as_str())
                    || ["password", "token", "secret"]
                        .iter()
                        .any(|s| k.contains(s));
                if secret && !val.is_null() {
                    *val = match val {
                        Value::Array(a) => {
                            Value::Array(a.iter().map(|_| json!("<redacted>")).collect())
                        }
                        _ => json!("<redacted>"),
                    };
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// SHA-256 (hex) of the effective configuration (secrets included, so a rotated key changes
/// it) and every schema's BigQuery JSON.
fn fingerprint(config: &CollectorConfig, schemas: &SchemaRegistry) -> String {
    let mut h = Sha256::new();
    h.update(effective(&config.collector, &config.core).to_string());
    let mut tables: Vec<(String, String)> = schemas
        .iter()
        .map(|s| {
            (
                format!("{}.{}", s.namespace(), s.type_name()),
                s.to_bigquery_json().to_string(),
            )
        })
        .collect();
    tables.sort();
    for (name, schema) in tables {
        h.update(name);
        h.update(schema);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// Reloads `st` from its source (see the module docs): the outcome, counted and logged.
pub(crate) async fn reload(st: &crate::http::State) -> Result<Outcome, String> {
    let _one_at_a_time = st.reloads.lock.lock().await;
    let result = swap(st).await;
    // `evlog_config_reloads_total{result}`: core's counter, as the SDK counts its reloads.
    st.shared.counters.reload(result.is_ok());
    st.reloads.log(&result);
    result
}

async fn swap(st: &crate::http::State) -> Result<Outcome, String> {
    let source = st.reloads.source.clone().ok_or_else(|| {
        "this collector was started from a configuration in memory, not a file: there is \
         nothing to re-read"
            .to_string()
    })?;
    if st.draining.load(Ordering::Relaxed) {
        return Err("the collector is shutting down".into());
    }
    let old = st.now_full();
    let running: Vec<Arc<Delivery>> = st
        .shared
        .dests
        .iter()
        .map(|d| d.delivery.load_full())
        .collect();
    let live = st.sinks_follow.clone();
    let candidate =
        tokio::task::spawn_blocking(move || prepare(&old, &running, &live, source.read()?))
            .await
            .map_err(|e| format!("reload: {e}"))??;
    // Sinks first, then the processor requests convert with: a row of a new table or column
    // never reaches a sink that does not know it.
    for (dest, new) in st.shared.dests.iter().zip(candidate.deliveries) {
        if let Some(new) = new {
            dest.delivery.store(new);
        }
    }
    st.sinks_follow
        .store(Arc::clone(&candidate.generation.processor));
    let generation = Arc::new(candidate.generation);
    st.live.store(Arc::clone(&generation));
    Ok(Outcome {
        generation,
        changes: candidate.changes,
    })
}

impl Reloads {
    /// Logs a reload's outcome (and keeps a refusal's reason).
    pub fn log(&self, result: &Result<Outcome, String>) {
        match result {
            Ok(o) => {
                eprintln!(
                    "evlog-collector: reloaded: generation {}, hash {}{}",
                    o.generation.number,
                    &o.generation.hash[..16],
                    if o.changes.is_empty() {
                        "; nothing changed".to_string()
                    } else {
                        format!("; {}", o.changes.join("; "))
                    }
                );
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                eprintln!("evlog-collector: reload refused, the running configuration stays: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = json!({
            "collector": {"api_keys": [{"key": "abcdefgh12", "namespaces": ["*"]}],
                          "admin_keys": ["0123456789abcdef"]},
            "sink": {"opensearch": {"password": "pw", "api_key": null, "url": "http://x"}},
            "destinations": {"os": {"bearer_token": "t"}},
        });
        redact(&mut v);
        let text = v.to_string();
        for secret in ["abcdefgh12", "0123456789abcdef", "\"pw\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["collector"]["admin_keys"][0], "<redacted>");
        assert_eq!(v["collector"]["api_keys"][0]["namespaces"][0], "*");
        assert_eq!(v["sink"]["opensearch"]["url"], "http://x");
        assert!(v["sink"]["opensearch"]["api_key"].is_null());
    }
}
