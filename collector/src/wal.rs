//! The write-ahead log: core's [`Spool`] (same segment and record format), one record per
//! request, written by one thread that groups concurrent requests into one write and one fsync.
//!
//! Record payload (JSON): `{"boot":<u64>,"events":[{"namespace","type","time","received_at",
//! "id","event":{…}}]}`, or with `"batches"`/`"rejected"` in core's forward wire format (rows an
//! SDK validated). `boot` identifies the collector process that acknowledged the events, so
//! a later process replaying them counts them as accepted by itself.
//!
//! Invariants:
//! - A request is acknowledged (its `done` channel answered Ok) only after its record was written,
//!   and fsynced when the policy says so.
//! - The active segment is sealed at least every `seal_interval`, so streamers (which never read a
//!   segment a live writer holds) see new events within that time.
//! - `pending` counts bytes written and not yet committed by streamers (the high watermark).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use evlog_core::json::push_str;
use evlog_core::routing::{Destination, PartitionKind};
use evlog_core::sink::forward::wire::{WireBatch, WireRejected};
use evlog_core::sink::RejectedEvent;
use evlog_core::spool::{Spool, SpoolError, SpoolOptions, HEADER};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::{CollectorSection, FsyncPolicy};

/// One event as stored in the log.
#[derive(Debug, Serialize, Deserialize)]
pub struct WalEvent {
    /// Envelope namespace.
    pub namespace: String,
    /// Envelope type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Event time (µs) if the client gave one.
    pub time: Option<i64>,
    /// When the collector received it (µs).
    pub received_at: i64,
    /// The event id (given or generated at ingest, so replays keep the same insertId).
    pub id: String,
    /// The event object.
    pub event: Box<RawValue>,
}

/// One record: what one request brought.
#[derive(Debug, Serialize, Deserialize)]
pub struct WalRecord {
    /// The writing process's boot id.
    pub boot: u64,
    /// Envelopes (`/v1/events`, `/v1/batch`), validated by the streamer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<WalEvent>,
    /// Rows an SDK validated (`/v1/rows`, the forward sink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<WireBatch>,
    /// Events an SDK rejected, for the dead-letter tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<WireRejected>,
}

impl WalRecord {
    /// How many events the record holds.
    pub fn len(&self) -> usize {
        self.events.len()
            + self.batches.iter().map(|b| b.rows.len()).sum::<usize>()
            + self.rejected.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    done: tokio::sync::oneshot::Sender<Result<(), AppendError>>,
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct WalWriter {
    tx: Sender<Append>,
    /// Uncommitted bytes in the log.
    pub pending: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("bytes", &self.payload.len())
            .finish()
    }
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

/// Most appends queued for the writer thread; more answer `Busy` (429).
const QUEUE: usize = 8192;
/// Most records in one write.
const GROUP: usize = 2048;

impl WalWriter {
    /// Opens the log and starts the writer thread.
    pub fn start(
        c: &CollectorSection,
        pending: Arc<AtomicU64>,
    ) -> Result<(Self, std::thread::JoinHandle<()>), SpoolError> {
        let spool = Spool::open(spool_options(c))?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let policy = c.fsync;
        let interval = c.fsync_interval;
        let seal = c.seal_interval;
        let p = Arc::clone(&pending);
        let closed = Arc::new(AtomicBool::new(false));
        let cl = Arc::clone(&closed);
        let handle = std::thread::Builder::new()
            .name("evlog-wal".into())
            .spawn(move || writer_loop(spool, rx, policy, interval, seal, p, cl))
            .map_err(|e| SpoolError::Io {
                op: "start writer thread for",
                path: c.wal_dir.clone(),
                source: e,
            })?;
        Ok((
            Self {
                tx,
                pending,
                closed,
            },
            handle,
        ))
    }

    /// Refuses later appends; the writer thread writes what it has, seals, and stops.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Appends one record; resolves when it is durable per the fsync policy.
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), AppendError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(AppendError::Closed);
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        match self.tx.try_send(Append { payload, done }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AppendError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(AppendError::Closed),
        }
        rx.await.unwrap_or(Err(AppendError::Closed))
    }
}

fn writer_loop(
    mut spool: Spool,
    rx: Receiver<Append>,
    policy: FsyncPolicy,
    interval: Duration,
    seal: Duration,
    pending: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
) {
    let mut last_seal = Instant::now();
    let mut group: Vec<Append> = Vec::new();
    loop {
        let wait = seal
            .saturating_sub(last_seal.elapsed())
            .max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(a) => group.push(a),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !group.is_empty() {
            if policy == FsyncPolicy::Interval {
                let until = Instant::now() + interval;
                while group.len() < GROUP {
                    match rx.recv_deadline(until) {
                        Ok(a) => group.push(a),
                        Err(_) => break,
                    }
                }
            }
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            write_group(&mut spool, &mut group, &pending);
        }
        if closed.load(Ordering::SeqCst) && rx.is_empty() {
            break;
        }
        if last_seal.elapsed() >= seal {
            spool.close_writer();
            last_seal = Instant::now();
        }
    }
    spool.close_writer();
}

fn write_group(spool: &mut Spool, group: &mut Vec<Append>, pending: &AtomicU64) {
    let payloads: Vec<&[u8]> = group.iter().map(|a| a.payload.as_slice()).collect();
    let bytes: u64 = payloads.iter().map(|p| (p.len() + HEADER) as u64).sum();
    let result = match spool.append(&payloads) {
        Ok(()) => {
            pending.fetch_add(bytes, Ordering::Relaxed);
            Ok(())
        }
        Err(SpoolError::Full { .. }) if group.len() > 1 => {
            // Maybe only some fit: write one by one so those that fit are taken.
            for a in group.drain(..) {
                let len = (a.payload.len() + HEADER) as u64;
                let r = spool.append(&[&a.payload]).map_err(to_append_error);
                if r.is_ok() {
                    pending.fetch_add(len, Ordering::Relaxed);
                }
                let _ = a.done.send(r);
            }
            return;
        }
        Err(e) => Err(to_append_error(e)),
    };
    for a in group.drain(..) {
        let _ = a.done.send(result.clone());
    }
}

fn to_append_error(e: SpoolError) -> AppendError {
    match e {
        SpoolError::Full { .. } => AppendError::Full(e.to_string()),
        other => AppendError::Io(other.to_string()),
    }
}

/// Builds one record's payload (the [`WalRecord`] JSON) directly as text: rows are core's
/// converted JSON, copied as they are (no `Value`, no re-validation).
#[derive(Debug)]
pub struct RecordBuilder {
    boot: u64,
    /// Per destination: the destination and its rows' JSON (`{"id":…,"json":…}` joined by `,`).
    batches: Vec<(Destination, String)>,
    rejected: Vec<WireRejected>,
    n: usize,
}

impl RecordBuilder {
    /// An empty record of the process `boot`.
    pub fn new(boot: u64) -> Self {
        Self {
            boot,
            batches: Vec::new(),
            rejected: Vec::new(),
            n: 0,
        }
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Adds a converted row (`json` is core's row object text).
    pub fn push_row(&mut self, dest: &Destination, id: &str, json: &str) {
        let i = match self.batches.iter().position(|(d, _)| d == dest) {
            Some(i) => i,
            None => {
                self.batches.push((dest.clone(), String::new()));
                self.batches.len() - 1
            }
        };
        let out = &mut self.batches[i].1;
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str("{\"id\":");
        push_str(out, id);
        out.push_str(",\"json\":");
        out.push_str(json);
        out.push('}');
        self.n += 1;
    }

    /// Adds a dead letter.
    pub fn push_rejected(&mut self, e: &RejectedEvent) {
        self.rejected.push(WireRejected::from(e));
        self.n += 1;
    }

    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        let rows: usize = self.batches.iter().map(|(_, r)| r.len() + 128).sum();
        let mut out = String::with_capacity(64 + rows);
        out.push_str("{\"boot\":");
        out.push_str(&self.boot.to_string());
        if !self.batches.is_empty() {
            out.push_str(",\"batches\":[");
            for (i, (d, rows)) in self.batches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"dataset\":");
                push_str(&mut out, &d.dataset);
                out.push_str(",\"table\":");
                push_str(&mut out, &d.table);
                out.push_str(",\"partitioned\":");
                out.push_str(if d.partitioning == PartitionKind::Partitioned {
                    "true"
                } else {
                    "false"
                });
                out.push_str(",\"day\":");
                push_str(&mut out, &d.day);
                out.push_str(",\"rows\":[");
                out.push_str(rows);
                out.push_str("]}");
            }
            out.push(']');
        }
        if !self.rejected.is_empty() {
            out.push_str(",\"rejected\":");
            out.push_str(&serde_json::to_string(&self.rejected).unwrap_or_else(|_| "[]".into()));
        }
        out.push('}');
        out.into_bytes()
    }
}
