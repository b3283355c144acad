//! Schema files picked up without a restart: the flush thread (the one that reads the lanes)
//! looks at `schemas.dir` every `schemas.reload_interval`, never `log()`.
//!
//! - **Noticing**: a fingerprint of the directory (every `<namespace>/<type>.json` path, size and
//!   modification time) is compared with the one of the schemas in use: a stat per file, no
//!   reading. It is taken before the pipeline loads its schemas, so a change made while it
//!   loads is seen at the first check.
//! - **Reloading**: a changed fingerprint loads the directory again
//!   ([`SchemaRegistry::load_configured`]), checks it against the schemas in use
//!   ([`check_evolution`]: additive changes only) and, when both pass, stores a new
//!   [`Processor`] (same routing and transforms) into the pipeline's
//!   [`LiveProcessor`]: the events processed from then on use it, and the sinks follow it
//!   (the BigQuery sink patches its tables before it sends them rows with the new columns).
//!   Counted in `evlog_config_reloads_total{result="ok"}`.
//! - **Refusing**: a directory that does not load or a change that is not additive keeps the
//!   schemas in use, counts `evlog_config_reloads_total{result="error"}` and tells the error
//!   hook (an [`ErrorSummary`] with [`Outcome::ReloadRefused`], reason `schema_reload`, count 0,
//!   the error as message) or, without a hook, stderr. It is told once per change of the files:
//!   the same files are not tried again until they change. A file written in place may be seen
//!   half-written (refused, then taken at the next check once complete); writing a new file and
//!   renaming it over the old one avoids that.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::{ErrorHook, ErrorSummary, Outcome};
use crate::config::Config;
use crate::counters::Counters;
use crate::ingest::{LiveProcessor, Processor};
use crate::schema::evolve::{check_evolution, Change};
use crate::schema::{SchemaError, SchemaRegistry};

/// The `reason` of the [`ErrorSummary`] a refused reload sends.
pub const RELOAD_REASON: &str = "schema_reload";

/// What every flush thread of a pipeline shares to watch its schema files.
#[derive(Debug)]
pub(crate) struct Watch {
    config: Config,
    every: Duration,
    /// Fingerprint of the files last loaded or refused.
    seen: AtomicU64,
    live: LiveProcessor,
}

impl Watch {
    /// A watch of `config.schemas.dir` for `live` whose schemas were loaded from files with
    /// fingerprint `seen`; `None` when `schemas.reload_interval` is 0.
    pub(crate) fn new(config: &Config, live: &LiveProcessor, seen: u64) -> Option<Arc<Self>> {
        let every = config.schemas.reload_interval;
        (!every.is_zero()).then(|| {
            Arc::new(Self {
                config: config.clone(),
                every,
                seen: AtomicU64::new(seen),
                live: Arc::clone(live),
            })
        })
    }

    /// Loads and checks the files; stores the new processor when they pass.
    fn reload(&self) -> Result<Vec<Change>, SchemaError> {
        let new = SchemaRegistry::load_configured(&self.config)?;
        let changes = check_evolution(self.live.load().schemas(), &new)?;
        self.live.store(Arc::new(Processor::new(new, &self.config)));
        Ok(changes)
    }
}

/// One flush thread's schedule of checks.
#[derive(Debug)]
pub(crate) struct Watcher {
    watch: Arc<Watch>,
    next: Instant,
}

impl Watcher {
    pub(crate) fn new(watch: Arc<Watch>) -> Self {
        let next = Instant::now() + watch.every;
        Self { watch, next }
    }

    /// How long until the next check is due (for the thread's park).
    pub(crate) fn due_in(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Checks the files when due (see the module documentation).
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        counters: &Counters,
        hook: &ArcSwapOption<ErrorHook>,
    ) {
        if now < self.next {
            return;
        }
        self.next = now + self.watch.every;
        let w = &self.watch;
        let fp = fingerprint(&w.config.schemas.dir);
        if w.seen.swap(fp, Ordering::AcqRel) == fp {
            return;
        }
        match w.reload() {
            Ok(_) => counters.reload(true),
            Err(e) => {
                counters.reload(false);
                let message = format!(
                    "schema files changed but were not taken, the schemas in use stay: {e}"
                );
                match hook.load().as_ref() {
                    Some(hook) => hook(&ErrorSummary {
                        outcome: Outcome::ReloadRefused,
                        reason: RELOAD_REASON.into(),
                        count: 0,
                        message,
                    }),
                    // Nobody else would hear of it, and the operator must.
                    None => eprintln!("evlog: {message}"),
                }
            }
        }
    }
}

/// Fingerprint of the schema files under `dir`: paths, sizes and modification times of every
/// `<namespace>/<type>.json` (what [`SchemaRegistry::load_dir`] reads), plus the `.json` files
/// misplaced directly in `dir` (which it refuses). A directory that cannot be read has a
/// fingerprint of its own, so its return is noticed.
pub(crate) fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Ok(entries) = sorted(dir) else {
        return 1;
    };
    for p in entries {
        if p.is_dir() {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            for f in sorted(&p).unwrap_or_default() {
                if f.extension().is_some_and(|e| e == "json") && !f.is_dir() {
                    stamp(&f, &mut h);
                }
            }
        } else if p.extension().is_some_and(|e| e == "json") {
            stamp(&p, &mut h);
        }
    }
    h.finish()
}

fn stamp(path: &Path, h: &mut impl Hasher) {
    path.hash(h);
    if let Ok(m) = std::fs::metadata(path) {
        m.len().hash(h);
        m.modified().ok().hash(h);
    }
}

fn sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    v.sort();
    Ok(v)
}
