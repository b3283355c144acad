//! Streamers: threads that read sealed write-ahead-log segments, validate and route every event
//! with core's [`Processor`], deliver batches through core's sink, dead-letter rejects through the
//! same sink, and commit the segment offset only after the sink acknowledged everything before it.
//!
//! Delivery is at least once: a crash between the sink's acknowledgement and the commit sends
//! those rows again on restart, with the same insertId (BigQuery drops the duplicates).
//! Rows the sink fails are retried (full-jitter backoff, `[retry]` base/cap) without committing;
//! at the shutdown deadline a streamer stops and what is uncommitted stays in the log.
//!
//! Dead letters are retried the same way: while their table cannot be written (no permission,
//! BigQuery down) the streamer does not commit past them, `evlog_dead_letters_waiting` counts
//! them, and `/readyz` answers 503 with the sink's last error. Only dead letters the table
//! refuses for good (a row it finds invalid) are dropped, counted as `dead_letter_failed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evlog_core::config::RetryConfig;
use evlog_core::counters::{Counters, DropReason};
use evlog_core::pipeline::{EventId, Processor, RawEvent};
use evlog_core::routing::Destination;
use evlog_core::sink::{intern_reason, Batch, EncodedRow, RejectedEvent, Sink, SinkFactory};
use evlog_core::spool::{SegmentReader, Spool, HEADER};

use crate::wal::{read_framed, WalRecord, FRAMED};

/// What streamers share with the HTTP side.
#[derive(Debug)]
pub struct Shared {
    /// DESIGN.md counters.
    pub counters: Counters,
    /// Uncommitted log bytes.
    pub pending: Arc<AtomicU64>,
    /// False after a delivery failed, true again after one succeeded.
    pub sink_healthy: AtomicBool,
    /// What the last failed delivery (rows or dead letters) reported, for `/readyz`.
    pub sink_error: Mutex<String>,
    /// Rows delivered per `dataset.table`.
    pub per_table: Mutex<BTreeMap<String, u64>>,
    /// This process's boot id (see [`WalRecord::boot`]).
    pub boot: u64,
}

/// Settings of a streamer.
#[derive(Clone)]
pub struct StreamerParts {
    /// Validation and routing.
    pub processor: Arc<Processor>,
    /// Builds each streamer's sink.
    pub sink_factory: SinkFactory,
    /// Rows per sink call.
    pub max_rows: usize,
    /// Bytes per batch.
    pub max_bytes: usize,
    /// Backoff between failed deliveries.
    pub retry: RetryConfig,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Set when the collector is shutting down: stream what is left, until `deadline`.
    pub stop: Arc<Mutex<Option<Instant>>>,
}

impl Shared {
    /// Marks the sink failing, with why.
    fn failing(&self, why: &str) {
        self.sink_healthy.store(false, Ordering::Relaxed);
        *self.sink_error.lock().unwrap_or_else(|e| e.into_inner()) = why.to_string();
    }
}

impl std::fmt::Debug for StreamerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamerParts")
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}

/// How long an idle streamer waits before looking for segments again.
const IDLE: Duration = Duration::from_millis(20);
/// Least time between two commits inside one segment (the end of a segment always commits).
const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// Runs one streamer until shutdown (see the module docs), reading segments through `spool`
/// (opened by the caller before the thread starts, so a log that cannot be opened stops the
/// collector's start instead of a streamer, and a streamer never recreates a log directory
/// removed after the start).
pub fn run(parts: StreamerParts, mut spool: Spool) {
    let mut sink: Option<Box<dyn Sink>> = None;
    loop {
        let deadline = *parts.stop.lock().unwrap_or_else(|e| e.into_inner());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if sink.is_none() {
            match (parts.sink_factory)() {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    parts.shared.counters.sink_error("unavailable", e.kind());
                    parts
                        .shared
                        .failing(&format!("the sink cannot be built: {e}"));
                    std::thread::sleep(parts.retry.base.max(IDLE));
                    continue;
                }
            }
        }
        let Some(s) = sink.as_mut() else { continue };
        match spool.next_segment() {
            Ok(Some(seg)) => stream_segment(&parts, &spool, s.as_mut(), seg),
            Ok(None) => {
                if deadline.is_some() {
                    break; // drained
                }
                std::thread::sleep(IDLE);
            }
            Err(_) => {
                parts.shared.counters.sink_error("wal", "io");
                std::thread::sleep(IDLE);
            }
        }
    }
    if let Some(mut s) = sink {
        if let Err(e) = s.close() {
            parts.shared.counters.sink_error(s.name(), e.kind());
        }
    }
}

#[derive(Default)]
struct Acc {
    rows: HashMap<Destination, (Vec<EncodedRow>, usize)>,
    rejects: Vec<RejectedEvent>,
    events: usize,
    /// Log bytes of the records read into this accumulator.
    bytes: u64,
}

fn stream_segment(
    parts: &StreamerParts,
    spool: &Spool,
    sink: &mut dyn Sink,
    mut seg: SegmentReader,
) {
    let shared = &parts.shared;
    let mut acc = Acc::default();
    let mut last_end = None;
    let mut last_commit = Instant::now();
    loop {
        let rec = match seg.next(&spool.counters) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(_) => {
                shared.counters.sink_error("wal", "io");
                return; // not committed: read again later
            }
        };
        acc.bytes += (rec.payload.len() + HEADER) as u64;
        if rec.payload.first() == Some(&FRAMED) {
            read_framed_record(parts, &mut acc, &rec.payload);
        } else {
            read_json_record(parts, &mut acc, &rec.payload);
        }
        last_end = Some(rec.end);
        if acc.events >= parts.max_rows {
            if !deliver(parts, sink, std::mem::take(&mut acc)) {
                return;
            }
            // Committing costs a file write, fsync and rename: inside a segment (sealed every
            // `seal_interval`, so usually small) do it at most every COMMIT_EVERY; a crash
            // replays at most that much, with the same insertIds.
            if last_commit.elapsed() >= COMMIT_EVERY {
                if let Some(end) = last_end {
                    let _ = seg.commit(end);
                }
                last_commit = Instant::now();
            }
        }
    }
    if !deliver(parts, sink, acc) {
        return;
    }
    // At the end: commits (and deletes the segment when everything in it is done).
    let _ = seg.commit(last_end.unwrap_or(0));
}

/// A framed record (see [`crate::wal::RecordBuilder`]): rows are sliced out, not parsed.
fn read_framed_record(parts: &StreamerParts, acc: &mut Acc, payload: &[u8]) {
    let shared = &parts.shared;
    let Some((header, mut rows)) = read_framed(payload) else {
        shared.counters.sink_error("wal", "undecodable");
        return;
    };
    if header.boot != shared.boot {
        let n = header.batches.iter().map(|b| b.1).sum::<usize>() + header.rejected.len();
        shared.counters.accept_n(n as u64);
    }
    for (dest, n) in header.batches {
        let slot = acc.rows.entry(dest).or_default();
        for _ in 0..n {
            let Some((id, json)) = rows.next_row() else {
                shared.counters.sink_error("wal", "undecodable");
                break;
            };
            acc.events += 1;
            slot.1 += json.len();
            slot.0.push(EncodedRow {
                insert_id: id.to_string(),
                json: json.to_string(),
            });
        }
    }
    for r in header.rejected {
        acc.events += 1;
        let reason = intern_reason(&r.reason);
        acc.rejects.push(r.into_rejected(reason));
    }
}

/// A JSON record ([`WalRecord`]): `/v1/rows` requests, and envelopes logged by earlier versions.
fn read_json_record(parts: &StreamerParts, acc: &mut Acc, payload: &[u8]) {
    let shared = &parts.shared;
    match serde_json::from_slice::<WalRecord>(payload) {
        Ok(record) => {
            if record.boot != shared.boot {
                shared.counters.accept_n(record.len() as u64);
            }
            for b in record.batches {
                let dest = b.destination();
                let slot = acc.rows.entry(dest).or_default();
                for r in b.rows {
                    acc.events += 1;
                    let json = r.json.get().to_string();
                    slot.1 += json.len();
                    slot.0.push(EncodedRow {
                        insert_id: r.id,
                        json,
                    });
                }
            }
            for r in record.rejected {
                acc.events += 1;
                let reason = intern_reason(&r.reason);
                acc.rejects.push(r.into_rejected(reason));
            }
            for e in record.events {
                let raw = RawEvent {
                    namespace: e.namespace.into(),
                    type_name: e.type_name.into(),
                    time: e.time,
                    received_at: e.received_at,
                    id: EventId::Given(e.id.into()),
                    body: e.event.get().to_string(),
                };
                acc.events += 1;
                match parts.processor.process(&raw) {
                    Ok((dest, row)) => {
                        let slot = acc.rows.entry(dest).or_default();
                        slot.1 += row.json.len();
                        slot.0.push(row);
                    }
                    Err(r) => acc.rejects.push(*r),
                }
            }
        }
        Err(_) => shared.counters.sink_error("wal", "undecodable"),
    }
}

/// Delivers rows and dead letters, retrying failures until they succeed or the shutdown deadline
/// passes. True when everything was acknowledged (the caller may commit).
fn deliver(parts: &StreamerParts, sink: &mut dyn Sink, acc: Acc) -> bool {
    let shared = &parts.shared;
    let mut batches = Vec::new();
    for (dest, (rows, _)) in acc.rows {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for row in rows {
            if !chunk.is_empty()
                && (chunk.len() >= parts.max_rows || bytes + row.json.len() > parts.max_bytes)
            {
                batches.push(Batch {
                    destination: dest.clone(),
                    rows: std::mem::take(&mut chunk),
                    bytes,
                });
                bytes = 0;
            }
            bytes += row.json.len();
            chunk.push(row);
        }
        if !chunk.is_empty() {
            batches.push(Batch {
                destination: dest,
                rows: chunk,
                bytes,
            });
        }
    }
    let mut rejects = acc.rejects;
    let mut attempt = 0u32;
    let mut row_error = None;
    while !batches.is_empty() {
        let dests: Vec<Destination> = batches.iter().map(|b| b.destination.clone()).collect();
        let started = Instant::now();
        let outcomes = sink.deliver(batches);
        shared.counters.observe_flush(started.elapsed());
        batches = Vec::new();
        for (o, dest) in outcomes.into_iter().zip(dests) {
            shared.counters.deliver(o.delivered as u64);
            shared.counters.retry(o.retried as u64);
            if o.delivered > 0 {
                let mut t = shared.per_table.lock().unwrap_or_else(|e| e.into_inner());
                *t.entry(format!("{}.{}", dest.dataset, dest.table))
                    .or_default() += o.delivered as u64;
            }
            for kind in &o.attempt_errors {
                shared.counters.sink_error(sink.name(), kind);
            }
            if let (Some(e), true) = (&o.error, o.attempt_errors.is_empty()) {
                shared.counters.sink_error(sink.name(), e.kind());
            }
            rejects.extend(o.rejected);
            // Stored as dead letters by the destination itself (a collector forwarding to
            // another): counted, not sent again.
            for r in &o.rejected_stored {
                shared.counters.reject(r.reason, 1);
            }
            if !o.failed.is_empty() {
                row_error = o.error.as_ref().map(|e| e.to_string());
                let bytes = o.failed.iter().map(|r| r.json.len()).sum();
                batches.push(Batch {
                    destination: dest,
                    rows: o.failed,
                    bytes,
                });
            }
        }
        if batches.is_empty() {
            shared.sink_healthy.store(true, Ordering::Relaxed);
        } else {
            shared.failing(&format!(
                "rows cannot be delivered: {}",
                row_error.as_deref().unwrap_or("delivery failed")
            ));
            shared
                .counters
                .retry(batches.iter().map(|b| b.rows.len() as u64).sum());
            if !backoff(parts, &mut attempt) {
                return false;
            }
        }
    }
    // Dead letters counted in `evlog_dead_letters_waiting` while their table fails.
    let mut waiting = 0u64;
    while !rejects.is_empty() {
        let o = sink.store_dead_letters(std::mem::take(&mut rejects));
        for r in &o.stored {
            shared.counters.reject(r.reason, 1);
        }
        if !o.refused.is_empty() {
            // The dead-letter table refuses them for good: retrying would block the log forever.
            shared
                .counters
                .sink_error(sink.name(), "dead_letter_invalid");
            shared
                .counters
                .drop_events(DropReason::DeadLetterFailed, o.refused.len() as u64);
        }
        rejects = o.failed;
        let now_waiting = rejects.len() as u64;
        if now_waiting > waiting {
            shared.counters.dead_letters_wait(now_waiting - waiting);
        } else {
            shared.counters.dead_letters_settled(waiting - now_waiting);
        }
        waiting = now_waiting;
        if rejects.is_empty() {
            shared.sink_healthy.store(true, Ordering::Relaxed);
            break;
        }
        let e = o.error.map_or_else(
            || "not stored".to_string(),
            |e| {
                shared.counters.sink_error(sink.name(), e.kind());
                e.to_string()
            },
        );
        shared.failing(&format!("dead letters cannot be written: {e}"));
        if !backoff(parts, &mut attempt) {
            // Left uncommitted in the log for the next start; no longer waiting here.
            shared.counters.dead_letters_settled(waiting);
            return false;
        }
    }
    shared.pending.fetch_sub(
        acc.bytes.min(shared.pending.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    true
}

/// Sleeps a full-jitter backoff; false when the shutdown deadline passes first.
fn backoff(parts: &StreamerParts, attempt: &mut u32) -> bool {
    *attempt = attempt.saturating_add(1);
    let cap = parts.retry.cap.max(Duration::from_millis(1));
    let exp = parts
        .retry
        .base
        .saturating_mul(1u32 << (*attempt).min(16))
        .min(cap);
    let jitter = evlog_core::ids::random_u64() % (exp.as_micros() as u64 + 1);
    let until = Instant::now() + Duration::from_micros(jitter);
    loop {
        let deadline = *parts.stop.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}
