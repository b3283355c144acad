//! The write-ahead log: core's [`Spool`] (same segments and record framing: magic, length,
//! CRC-32C, payload), one record per request. Concurrent requests are grouped into one write and
//! one fsync by the requests' own tasks (leader/follower group commit, no writer thread to hand
//! over to and wake back).
//!
//! What a record holds (rows, dead letters, the destinations they go to) and its formats:
//! `record`.
//!
//! Invariants:
//! - A request is acknowledged (its `done` channel answered Ok) only after its record was written,
//!   and fsynced when the policy says so.
//! - The active segment is sealed at least every `seal_interval`, so streamers (which never read a
//!   segment a live writer holds) see new events within that time.
//! - `pending` counts, per destination, bytes written and not yet committed by its streamers
//!   (the high watermark); a record's bytes count for every destination, which reads past it
//!   even when it takes nothing from it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evlog_core::counters::{write_metric, Histogram};
use evlog_core::spool::{self, Spool, SpoolError, SpoolOptions};

pub use self::record::{
    bit_in, read_framed, RecordBuilder, WalRecord, FRAMED, FRAMED_ROUTED, LEGACY_MASK,
};
use crate::config::{CollectorSection, FsyncPolicy};

mod record;

/// What one record holds, counted once it is durable (the request's own count, whatever
/// becomes of the request).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Events in the record.
    pub events: u64,
    /// Events of the request no route took: not in the record, counted with it.
    pub unrouted: u64,
    /// With several destinations, the copies for each (rows and dead letters).
    pub copies: Vec<u64>,
    /// Copies and unrouted events per table, for the live page ([`crate::ui`]).
    pub tables: crate::ui::Tally,
}

/// Why an append was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// Too many appends waiting: overloaded.
    #[error("the write-ahead log is busy")]
    Busy,
    /// The log is at its size bound.
    #[error("the write-ahead log is full: {0}")]
    Full(String),
    /// A write failed.
    #[error("the write-ahead log cannot be written: {0}")]
    Io(String),
    /// Shutting down.
    #[error("the collector is shutting down")]
    Closed,
}

struct Append {
    payload: Vec<u8>,
    /// What the record holds (counted accepted once it is written).
    counts: Counts,
    done: tokio::sync::oneshot::Sender<Result<(), AppendError>>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("bytes", &self.payload.len())
            .finish()
    }
}

/// Handle to the log: group commit by the appending tasks themselves (see [`WalWriter::append`]).
#[derive(Debug, Clone)]
pub struct WalWriter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Appends waiting for the next group, and whether a leader is at work.
    queue: Mutex<Queue>,
    /// The log itself; held by the leader while it writes (and fsyncs) a group.
    log: Mutex<Log>,
    /// Per destination: bytes not yet committed by its streamers.
    pending: Vec<Arc<AtomicU64>>,
    /// Called with what each record holds once it is durable: the count must not depend on
    /// the request still waiting (a client may hang up after sending).
    accepted: Box<dyn Fn(&Counts) + Send + Sync>,
    closed: AtomicBool,
    policy: FsyncPolicy,
    interval: Duration,
    seal: Duration,
    /// The sealer thread, woken at close.
    sealer: std::sync::OnceLock<std::thread::Thread>,
    /// Set while the last write failed (an I/O error, not a full log); checked on every write,
    /// `failure` is locked only when it changes.
    failed: AtomicBool,
    /// When the last write failed, and why.
    failure: Mutex<Option<(Instant, String)>>,
    /// How long each group took to write (and fsync): the disk's health as the requests see it.
    write_seconds: Histogram,
    /// Appends (one per request) that went to a group.
    appends: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Queue {
    appends: Vec<Append>,
    leading: bool,
}

#[derive(Debug)]
struct Log {
    spool: Spool,
    last_seal: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Options of the log as core's spool takes them.
pub fn spool_options(c: &CollectorSection) -> SpoolOptions {
    SpoolOptions {
        dir: c.wal_dir.clone(),
        max_bytes: c.wal_max_bytes.0,
        segment_bytes: c.segment_bytes.0,
        fsync: c.fsync != FsyncPolicy::Never,
    }
}

/// Most appends waiting for a group; more answer `Busy` (429).
const QUEUE: usize = 8192;
/// How long the sealer waits at close for a group in progress before it seals regardless.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long a failed write keeps the log reported as failing (unless a write succeeds).
pub const FAILURE_HOLD: Duration = Duration::from_secs(10);
/// Upper bounds (seconds) of `evlog_collector_wal_write_seconds` (an fsync takes tens of µs on a
/// disk with a power-safe cache, 0.1–1 ms on most others, far longer on a failing or saturated one).
pub const WRITE_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

impl WalWriter {
    /// Opens the log and starts the sealer thread (it seals the active segment every
    /// `seal_interval`, and for the last time after [`close`](Self::close)).
    ///
    /// `accepted(counts)` is called once a record is durable (per the fsync policy); `pending`
    /// has one counter per destination.
    pub fn start(
        c: &CollectorSection,
        pending: Vec<Arc<AtomicU64>>,
        accepted: impl Fn(&Counts) + Send + Sync + 'static,
    ) -> Result<(Self, std::thread::JoinHandle<()>), SpoolError> {
        let spool = Spool::open(spool_options(c))?;
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            log: Mutex::new(Log {
                spool,
                last_seal: Instant::now(),
            }),
            pending,
            accepted: Box::new(accepted),
            closed: AtomicBool::new(false),
            policy: c.fsync,
            interval: c.fsync_interval,
            seal: c.seal_interval,
            sealer: std::sync::OnceLock::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            write_seconds: Histogram::new(&WRITE_BUCKETS),
            appends: AtomicU64::new(0),
        });
        let sealer = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("evlog-wal".into())
            .spawn(move || sealer.seal_loop())
            .map_err(|e| SpoolError::Io {
                op: "start the sealer thread for",
                path: c.wal_dir.clone(),
                source: e,
            })?;
        let _ = inner.sealer.set(handle.thread().clone());
        Ok((Self { inner }, handle))
    }

    /// Why the log cannot be written, if its last write failed (an I/O error) within
    /// [`FAILURE_HOLD`] and none succeeded since: `/readyz` then answers 503 so a load balancer
    /// sends the traffic elsewhere. The hold lets it come back to try once no requests arrive.
    pub fn failing(&self) -> Option<String> {
        if !self.inner.failed.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.inner.failure)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FAILURE_HOLD)
            .map(|(_, why)| why.clone())
    }

    /// Appends the log's metrics in the Prometheus text format: group write times (their count
    /// is the number of groups) and appends (so appends / groups is the mean group size).
    pub fn write_prometheus(&self, s: &mut String) {
        self.inner.write_seconds.write_prometheus(
            s,
            "evlog_collector_wal_write_seconds",
            "Time to write one group commit to the write-ahead log (and fsync it, when the policy fsyncs).",
        );
        write_metric(
            s,
            "evlog_collector_wal_appends_total",
            "Records (one per ingest request) handed to the write-ahead log's group commits.",
            "counter",
            self.inner.appends.load(Ordering::Relaxed),
        );
    }

    /// Refuses later appends; the sealer thread waits for the groups in progress, seals, and
    /// stops.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(t) = self.inner.sealer.get() {
            t.unpark();
        }
    }

    /// Appends one record holding `counts`; resolves when it is durable per the fsync policy.
    ///
    /// Group commit without a writer thread: the append is queued; if no leader is at work, this
    /// task becomes the leader: it writes (and fsyncs) everything queued in one write and answers
    /// every append of the group; if more were queued meanwhile, a new task takes the lead. The
    /// leader's round has no await point, so a request dropped mid-way (client gone) cannot
    /// strand the queue. With `fsync = "interval"` the lead always goes to a task that first
    /// collects for `fsync_interval`. Others only wait for their answer.
    pub async fn append(&self, payload: Vec<u8>, counts: Counts) -> Result<(), AppendError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut q = lock(&self.inner.queue);
            if self.inner.closed.load(Ordering::SeqCst) {
                return Err(AppendError::Closed);
            }
            if q.appends.len() >= QUEUE {
                return Err(AppendError::Busy);
            }
            q.appends.push(Append {
                payload,
                counts,
                done,
            });
            !std::mem::replace(&mut q.leading, true)
        };
        // (With `interval`, `lead_round` is not called here: the spawned leader collects first.)
        if lead && (self.inner.policy == FsyncPolicy::Interval || self.inner.lead_round()) {
            spawn_leader(Arc::clone(&self.inner));
        }
        rx.await.unwrap_or(Err(AppendError::Closed))
    }
}

/// Continues leading in a new task. It first yields (or collects for `fsync_interval`), so the
/// requests just answered (woken on this worker) are sent before the next group blocks it;
/// meanwhile more appends queue up.
fn spawn_leader(inner: Arc<Inner>) {
    tokio::spawn(async move {
        if inner.policy == FsyncPolicy::Interval {
            tokio::time::sleep(inner.interval).await;
        } else {
            tokio::task::yield_now().await;
        }
        if inner.lead_round() {
            spawn_leader(inner);
        }
    });
}

impl Inner {
    /// Writes what is queued as one group. True when more appends queued meanwhile (the lead
    /// must continue); false when the queue was empty and the lead was given up.
    fn lead_round(&self) -> bool {
        let mut group = {
            let mut q = lock(&self.queue);
            if q.appends.is_empty() {
                q.leading = false;
                return false;
            }
            std::mem::take(&mut q.appends)
        };
        {
            // Blocks this worker for one write (and fsync): short, and the one wait every
            // queued request shares.
            let mut log = lock(&self.log);
            self.appends
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let started = Instant::now();
            let failure = write_group(&mut log.spool, &mut group, &self.pending, &*self.accepted);
            self.write_seconds.observe(started.elapsed());
            self.note(failure);
            if log.last_seal.elapsed() >= self.seal {
                log.spool.close_writer();
                log.last_seal = Instant::now();
            }
        }
        let mut q = lock(&self.queue);
        if q.appends.is_empty() {
            q.leading = false;
            false
        } else {
            true
        }
    }

    /// Records the outcome of a write for [`WalWriter::failing`].
    fn note(&self, failure: Option<String>) {
        match failure {
            Some(why) => {
                *lock(&self.failure) = Some((Instant::now(), why));
                self.failed.store(true, Ordering::Relaxed);
            }
            None if self.failed.load(Ordering::Relaxed) => {
                self.failed.store(false, Ordering::Relaxed);
                *lock(&self.failure) = None;
            }
            None => {}
        }
    }

    fn seal_loop(&self) {
        let mut closed_at: Option<Instant> = None;
        loop {
            let closed = self.closed.load(Ordering::SeqCst);
            if closed {
                let since = *closed_at.get_or_insert_with(Instant::now);
                let idle = {
                    let q = lock(&self.queue);
                    q.appends.is_empty() && !q.leading
                };
                if idle || since.elapsed() >= CLOSE_WAIT {
                    lock(&self.log).spool.close_writer();
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(1));
                continue;
            }
            let wait = {
                let mut log = lock(&self.log);
                let since = log.last_seal.elapsed();
                if since >= self.seal {
                    log.spool.close_writer();
                    log.last_seal = Instant::now();
                    self.seal
                } else {
                    self.seal - since
                }
            };
            std::thread::park_timeout(wait.max(Duration::from_millis(1)));
        }
    }
}

/// Writes a group and answers its appends; returns the I/O error if the write failed (a full log
/// is not a failure of the log).
fn write_group(
    spool: &mut Spool,
    group: &mut Vec<Append>,
    pending: &[Arc<AtomicU64>],
    accepted: &dyn Fn(&Counts),
) -> Option<String> {
    let payloads: Vec<&[u8]> = group.iter().map(|a| a.payload.as_slice()).collect();
    let bytes: u64 = payloads.iter().map(|p| spool::stored_len(p.len())).sum();
    let add_pending = |bytes: u64| {
        for p in pending {
            p.fetch_add(bytes, Ordering::Relaxed);
        }
    };
    let result = match spool.append(&payloads) {
        Ok(()) => {
            add_pending(bytes);
            for a in group.iter() {
                accepted(&a.counts);
            }
            Ok(())
        }
        Err(SpoolError::Full { .. }) if group.len() > 1 => {
            // Maybe only some fit: write one by one so those that fit are taken.
            let mut failure = None;
            for a in group.drain(..) {
                let len = spool::stored_len(a.payload.len());
                let r = spool.append(&[&a.payload]).map_err(to_append_error);
                match &r {
                    Ok(()) => {
                        add_pending(len);
                        accepted(&a.counts);
                    }
                    Err(AppendError::Io(why)) => failure = Some(why.clone()),
                    Err(_) => {}
                }
                let _ = a.done.send(r);
            }
            return failure;
        }
        Err(e) => Err(to_append_error(e)),
    };
    let failure = match &result {
        Err(AppendError::Io(why)) => Some(why.clone()),
        _ => None,
    };
    for a in group.drain(..) {
        let _ = a.done.send(result.clone());
    }
    failure
}

fn to_append_error(e: SpoolError) -> AppendError {
    match e {
        SpoolError::Full { .. } => AppendError::Full(e.to_string()),
        other => AppendError::Io(other.to_string()),
    }
}
