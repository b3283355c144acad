//! The write-ahead log: core's [`Spool`] (same segments and record framing: magic, length,
//! CRC-32C, payload), one record per request. Concurrent requests are grouped into one write and
//! one fsync by the requests' own tasks (leader/follower group commit, no writer thread to hand
//! over to and wake back).
//!
//! ## Record payloads
//! Two kinds, told apart by the first byte. Both hold rows already validated and converted (by
//! core's processor at ingest, or by an SDK for `/v1/rows`) and dead letters, and the `boot` id
//! of the collector process that acknowledged them: a later process replaying them counts them
//! as accepted by itself.
//!
//! **Framed** (first byte [`FRAMED`], `0x02`), written for `/v1/events` and `/v1/batch`
//! ([`RecordBuilder`]); binary, so streamers slice rows out without scanning JSON. Integers are
//! little-endian; a `str` is a `u32` byte length then that many bytes of UTF-8:
//!
//! ```text
//! u8   0x02
//! u64  boot
//! u32  number of destinations N
//! N ×  u8 partitioned (1) or day-sharded (0), str dataset, str table, str day (YYYYMMDD),
//!      u32 rows in this destination
//! str  dead letters: a JSON array of core's forward-wire `rejected` entries, or empty
//! then the rows of the first destination, then of the second, …: each str id, str row JSON
//! ```
//!
//! **JSON** (first byte `{`), written for `/v1/rows` ([`WalRecord`]):
//! `{"boot":<u64>,"batches":[…],"rejected":[…]}`, `batches` and `rejected` in core's forward
//! wire format (`evlog_core::sink::forward::wire`), each left out when empty.
//!
//! A payload that reads as neither is skipped by the streamers and counted in
//! `evlog_sink_errors_total{sink="wal",kind="undecodable"}`.
//!
//! Invariants:
//! - A request is acknowledged (its `done` channel answered Ok) only after its record was written,
//!   and fsynced when the policy says so.
//! - The active segment is sealed at least every `seal_interval`, so streamers (which never read a
//!   segment a live writer holds) see new events within that time.
//! - `pending` counts bytes written and not yet committed by streamers (the high watermark).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evlog_core::counters::{write_metric, Histogram};
use evlog_core::routing::{Destination, PartitionKind};
use evlog_core::sink::forward::wire::{WireBatch, WireRejected};
use evlog_core::sink::RejectedEvent;
use evlog_core::spool::{self, Spool, SpoolError, SpoolOptions};
use serde::{Deserialize, Serialize};

use crate::config::{CollectorSection, FsyncPolicy};

/// A JSON record: what one `/v1/rows` request brought. A record with other members is not one
/// this build wrote: it reads as undecodable (counted) rather than losing what it holds unseen.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalRecord {
    /// The writing process's boot id.
    pub boot: u64,
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
        self.batches.iter().map(|b| b.rows.len()).sum::<usize>() + self.rejected.len()
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
    /// Events in the record (counted accepted once it is written).
    events: u64,
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
    pending: Arc<AtomicU64>,
    /// Called with the number of events of each record once it is durable: the count must not
    /// depend on the request still waiting (a client may hang up after sending).
    accepted: Box<dyn Fn(u64) + Send + Sync>,
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
    /// `accepted(n)` is called once a record of `n` events is durable (per the fsync policy).
    pub fn start(
        c: &CollectorSection,
        pending: Arc<AtomicU64>,
        accepted: impl Fn(u64) + Send + Sync + 'static,
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

    /// Appends one record of `events` events; resolves when it is durable per the fsync policy.
    ///
    /// Group commit without a writer thread: the append is queued; if no leader is at work, this
    /// task becomes the leader: it writes (and fsyncs) everything queued in one write and answers
    /// every append of the group; if more were queued meanwhile, a new task takes the lead. The
    /// leader's round has no await point, so a request dropped mid-way (client gone) cannot
    /// strand the queue. With `fsync = "interval"` the lead always goes to a task that first
    /// collects for `fsync_interval`. Others only wait for their answer.
    pub async fn append(&self, payload: Vec<u8>, events: u64) -> Result<(), AppendError> {
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
                events,
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
    pending: &AtomicU64,
    accepted: &dyn Fn(u64),
) -> Option<String> {
    let payloads: Vec<&[u8]> = group.iter().map(|a| a.payload.as_slice()).collect();
    let bytes: u64 = payloads.iter().map(|p| spool::stored_len(p.len())).sum();
    let result = match spool.append(&payloads) {
        Ok(()) => {
            pending.fetch_add(bytes, Ordering::Relaxed);
            accepted(group.iter().map(|a| a.events).sum());
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
                        pending.fetch_add(len, Ordering::Relaxed);
                        accepted(a.events);
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

/// First byte of a framed record (JSON records start with `{`).
pub const FRAMED: u8 = 0x02;

/// Builds one framed record (the format is in the module docs). Rows are core's converted JSON,
/// copied as they are.
#[derive(Debug)]
pub struct RecordBuilder {
    boot: u64,
    /// Per destination: the destination, its row count and its framed rows.
    batches: Vec<(Destination, usize, Vec<u8>)>,
    rejected: Vec<WireRejected>,
    n: usize,
}

/// Header of a framed record.
#[derive(Debug)]
pub struct FramedHeader {
    /// The writing process's boot id.
    pub boot: u64,
    /// Destinations and row counts, in the order their rows follow.
    pub batches: Vec<(Destination, usize)>,
    /// Dead letters.
    pub rejected: Vec<WireRejected>,
}

/// Reads a framed record's header; the rows follow in the returned reader. `None` if it is not
/// a framed record or is malformed.
pub fn read_framed(payload: &[u8]) -> Option<(FramedHeader, FramedRows<'_>)> {
    let mut r = FramedRows {
        rest: payload.strip_prefix(&[FRAMED])?,
    };
    let boot = u64::from_le_bytes(r.bytes(8)?.try_into().ok()?);
    let n = r.u32()? as usize;
    let mut batches = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let partitioned = r.bytes(1)?[0] != 0;
        let dataset = r.str()?;
        let table = r.str()?;
        let day = r.str()?;
        let rows = r.u32()? as usize;
        batches.push((
            Destination::from_parts(dataset, table, partitioned, day),
            rows,
        ));
    }
    let rejected = match r.str()? {
        "" => Vec::new(),
        text => serde_json::from_str(text).ok()?,
    };
    Some((
        FramedHeader {
            boot,
            batches,
            rejected,
        },
        r,
    ))
}

/// Reads the fields of a framed record in order.
#[derive(Debug)]
pub struct FramedRows<'a> {
    rest: &'a [u8],
}

impl<'a> FramedRows<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.rest.get(..n)?;
        self.rest = &self.rest[n..];
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.bytes(len)?).ok()
    }

    /// The next row: (id, row JSON).
    pub fn next_row(&mut self) -> Option<(&'a str, &'a str)> {
        let id = self.str()?;
        let json = self.str()?;
        Some((id, json))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
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
        let i = match self.batches.iter().position(|(d, _, _)| d == dest) {
            Some(i) => i,
            None => {
                self.batches.push((dest.clone(), 0, Vec::new()));
                self.batches.len() - 1
            }
        };
        let (_, n, out) = &mut self.batches[i];
        out.reserve(8 + id.len() + json.len());
        put_str(out, id);
        put_str(out, json);
        *n += 1;
        self.n += 1;
    }

    /// Adds a dead letter.
    pub fn push_rejected(&mut self, e: &RejectedEvent) {
        self.rejected.push(WireRejected::from(e));
        self.n += 1;
    }

    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        let rejected = if self.rejected.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&self.rejected).unwrap_or_else(|_| "[]".into())
        };
        let rows: usize = self.batches.iter().map(|(_, _, r)| r.len()).sum();
        let mut out = Vec::with_capacity(32 + self.batches.len() * 64 + rejected.len() + rows);
        out.push(FRAMED);
        out.extend_from_slice(&self.boot.to_le_bytes());
        out.extend_from_slice(&(self.batches.len() as u32).to_le_bytes());
        for (d, n, _) in &self.batches {
            out.push(u8::from(d.partitioning == PartitionKind::Partitioned));
            put_str(&mut out, &d.dataset);
            put_str(&mut out, &d.table);
            put_str(&mut out, &d.day);
            out.extend_from_slice(&(*n as u32).to_le_bytes());
        }
        put_str(&mut out, &rejected);
        for (_, _, r) in &self.batches {
            out.extend_from_slice(r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_hold_rows_and_dead_letters_only() {
        let rows = br#"{"boot":3,"batches":[{"dataset":"events","table":"t","partitioned":true,"day":"20261122","rows":[{"id":"a","json":{"x":1}}]}]}"#;
        let r: WalRecord = serde_json::from_slice(rows).expect("a /v1/rows record");
        assert_eq!((r.boot, r.len()), (3, 1));
        // Anything else is not a record this build wrote: undecodable, not read in part.
        let other = br#"{"boot":3,"events":[{"namespace":"events","type":"t","time":null,"received_at":1,"id":"b","event":{}}]}"#;
        assert!(serde_json::from_slice::<WalRecord>(other).is_err());
    }

    #[test]
    fn framed_records_read_back() {
        let dest = |t: &str| Destination {
            dataset: "events".into(),
            table: t.into(),
            partitioning: PartitionKind::DayShard,
            day: "20261122".into(),
        };
        let mut b = RecordBuilder::new(7);
        b.push_row(&dest("a"), "id-1", r#"{"x":"\n"}"#);
        b.push_row(&dest("b"), "id-2", "{}");
        b.push_row(&dest("a"), "id-3", r#"{"y":[1]}"#);
        assert_eq!(b.len(), 3);
        let payload = b.finish();
        let (h, mut rows) = read_framed(&payload).expect("framed");
        assert_eq!(h.boot, 7);
        let got: Vec<(String, usize)> = h
            .batches
            .iter()
            .map(|(d, n)| (d.table.to_string(), *n))
            .collect();
        assert_eq!(got, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
        assert_eq!(rows.next_row(), Some(("id-1", r#"{"x":"\n"}"#)));
        assert_eq!(rows.next_row(), Some(("id-3", r#"{"y":[1]}"#)));
        assert_eq!(rows.next_row(), Some(("id-2", "{}")));
        assert_eq!(rows.next_row(), None);
        assert!(h.rejected.is_empty());
        assert!(read_framed(b"{\"boot\":1}").is_none());

        let mut b = RecordBuilder::new(8);
        b.push_rejected(&RejectedEvent {
            dataset: "events".into(),
            event_id: "id-9".into(),
            namespace: "events".into(),
            type_name: "nope".into(),
            event_time: Some(1),
            received_at: 2,
            reason: "unknown_table",
            field: None,
            error: "no schema".into(),
            raw: "{}".into(),
        });
        b.push_row(&dest("a"), "id-4", "{}");
        assert_eq!(b.len(), 2);
        let payload = b.finish();
        let (h, mut rows) = read_framed(&payload).expect("framed");
        assert_eq!(h.rejected.len(), 1);
        assert_eq!(h.rejected[0].event_id, "id-9");
        assert_eq!(h.rejected[0].reason, "unknown_table");
        assert_eq!(rows.next_row(), Some(("id-4", "{}")));
        assert!(
            // A torn row (never happens past the spool's CRC) reads as the end of the rows.
            read_framed(&payload[..payload.len() - 1])
                .is_some_and(|(_, mut r)| r.next_row().is_none())
        );
    }
}
