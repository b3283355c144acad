//! Streamers: threads that read sealed write-ahead-log segments (rows converted at ingest, and
//! dead letters), batch the rows, deliver them through core's sink, dead-letter rejects through
//! the same sink, and commit the segment offset only after the sink acknowledged everything
//! before it. Batching, delivery and the counting of outcomes are core's
//! ([`evlog_core::ingest`]), as in the SDK's flush thread; what is the collector's is retrying
//! without committing, the shutdown deadline, `/readyz` and the per-table counts.
//!
//! Delivery is at least once: a crash between the sink's acknowledgement and the commit sends
//! those rows again on restart, with the same insertId (BigQuery drops the duplicates).
//! Rows the sink fails are retried (core's full-jitter backoff, `[retry]` base/cap) without
//! committing; at the shutdown deadline a streamer stops and what is uncommitted stays in the
//! log.
//!
//! Dead letters are retried the same way: while their table cannot be written (no permission,
//! BigQuery down) the streamer does not commit past them, `evlog_dead_letters_waiting` counts
//! them, and `/readyz` answers 503 with the sink's last error. Only dead letters the table
//! refuses for good (a row it finds invalid) are dropped, counted as `dead_letter_failed`.
//!
//! **Destinations.** Each destination has its own streamers (`collector.workers` of them), its
//! own sink, counters, health and place in the log: with several, a cursor of its own
//! (`evlog_core::spool::Cursor`: an offset file per destination beside each segment, and a
//! segment deleted once every destination has committed it). A streamer takes from each record
//! the rows and dead letters whose destinations include its own (`crate::wal` record formats)
//! and reads past the rest, so a destination that is down (retrying without committing) holds
//! back only its own cursor: the others go on. What it does hold is the log: its segments stay
//! until it commits them, so an outage longer than the log's room brings the high watermark
//! (429 for every client) — size `collector.wal_max_bytes` and `high_watermark` for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use evlog_core::config::RetryConfig;
use evlog_core::counters::Counters;
use evlog_core::counters::Stats;
use evlog_core::ingest::LiveProcessor;
use evlog_core::ingest::{self, Batcher};
use evlog_core::routing::Destination;
use evlog_core::sink::{intern_reason, EncodedRow, RejectedEvent, Sink, SinkFactory};
use evlog_core::sink::{SinkConfig, SinkError};
use evlog_core::spool::{Cursor, SegmentReader, Spool};
use evlog_core::Config;

use crate::wal::{bit_in, read_framed, WalRecord, FRAMED, FRAMED_ROUTED, LEGACY_MASK};

/// What streamers share with the HTTP side.
#[derive(Debug)]
pub struct Shared {
    /// The collector's counters (docs/contracts.md): with one destination everything; with
    /// several, acceptance and what happens before routing (each destination counts its
    /// copies).
    pub counters: Arc<Counters>,
    /// The destinations, in the order of `Config::destination_names`.
    pub dests: Vec<Arc<Dest>>,
    /// Their names (what a record's masks index).
    pub names: Arc<[String]>,
    /// This process's boot id (see [`WalRecord::boot`]).
    pub boot: u64,
    /// The live page's counts per table, tail and snapshots ([`crate::ui`]).
    pub feed: Arc<crate::ui::Feed>,
}

/// One destination's state, shared by its streamers and the HTTP side.
#[derive(Debug)]
pub struct Dest {
    /// Its name.
    pub name: String,
    /// Its counters: the collector's own with one destination.
    pub counters: Arc<Counters>,
    /// Log bytes it has not committed.
    pub pending: Arc<AtomicU64>,
    /// False after a delivery failed, true again after one succeeded.
    pub sink_healthy: AtomicBool,
    /// What the last failed delivery (rows or dead letters) reported, for `/readyz`.
    pub sink_error: Mutex<String>,
    /// Rows delivered per `dataset.table`.
    pub per_table: Mutex<BTreeMap<String, u64>>,
    /// Whether records without destination masks are its (see `crate::wal`'s record docs).
    pub takes_legacy: bool,
    /// Its place in the log, with several destinations; with one, the log's single reader.
    pub cursor: Option<Cursor>,
    /// How it delivers: replaced by a reload that changes its sink, `[batch]` or `[retry]`
    /// (streamers take it between two segments).
    pub delivery: ArcSwap<Delivery>,
}

/// How a destination delivers: its sink and the batch and retry settings.
pub struct Delivery {
    /// What it was built from.
    settings: DeliverySettings,
    /// Builds each streamer's sink.
    pub sink_factory: SinkFactory,
}

/// The settings a [`Delivery`] is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    sink: SinkConfig,
    max_rows: usize,
    max_bytes: usize,
    retry: RetryConfig,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A destination's delivery settings in `core`: its `sink`, `[batch]` and `[retry]`.
    pub fn settings(sink: &SinkConfig, core: &Config) -> DeliverySettings {
        DeliverySettings {
            sink: sink.clone(),
            max_rows: core.batch.max_rows,
            max_bytes: core.batch.max_bytes.0 as usize,
            retry: core.retry.clone(),
        }
    }

    /// The sink factory of `sink`, its sinks following the schemas of `live` (checks its
    /// settings: a BigQuery sink reads its credentials). Blocking.
    pub fn build_factory(
        sink: &SinkConfig,
        core: &Config,
        live: &LiveProcessor,
    ) -> Result<SinkFactory, SinkError> {
        evlog_core::sink::factory(sink, &core.retry, live)
    }

    /// A delivery of `settings` through `sink_factory`.
    pub fn new(settings: DeliverySettings, sink_factory: SinkFactory) -> Self {
        Self {
            settings,
            sink_factory,
        }
    }

    /// Whether it was built from `settings`.
    pub fn same_settings(&self, settings: &DeliverySettings) -> bool {
        self.settings == *settings
    }
}

impl Dest {
    /// A destination's state: with `counters` (the collector's own with one destination),
    /// `pending` log bytes, and `cursor` with several.
    pub fn new(
        name: &str,
        counters: Arc<Counters>,
        pending: u64,
        takes_legacy: bool,
        cursor: Option<Cursor>,
        delivery: Delivery,
    ) -> Self {
        Self {
            name: name.to_owned(),
            counters,
            pending: Arc::new(AtomicU64::new(pending)),
            sink_healthy: AtomicBool::new(true),
            sink_error: Mutex::new(String::new()),
            per_table: Mutex::new(BTreeMap::new()),
            takes_legacy,
            cursor,
            delivery: ArcSwap::from_pointee(delivery),
        }
    }
}

impl Shared {
    /// Whether there are several destinations (then records carry masks, counters labels).
    pub fn several(&self) -> bool {
        self.dests.len() > 1
    }

    /// The counters: the collector's own, with the destinations' beside them when there are
    /// several (see `evlog_core::counters`).
    pub fn snapshot(&self) -> Stats {
        if !self.several() {
            return self.counters.snapshot(0);
        }
        // The destinations first: a copy is counted for its destination before it settles.
        let dests = self
            .dests
            .iter()
            .map(|d| (d.name.clone(), d.counters.snapshot(0)))
            .collect();
        self.counters.snapshot(0).with_destinations(dests)
    }

    /// An empty log record of this process, with destination masks when there are several.
    pub fn record(&self) -> crate::wal::RecordBuilder {
        let names = if self.several() {
            Arc::clone(&self.names)
        } else {
            Arc::from(Vec::new())
        };
        crate::wal::RecordBuilder::new(self.boot, names)
    }

    /// The most log bytes a destination has not committed (the high watermark's measure).
    pub fn pending(&self) -> u64 {
        self.dests
            .iter()
            .map(|d| d.pending.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// Settings of a streamer.
#[derive(Clone)]
pub struct StreamerParts {
    /// Its destination.
    pub dest: Arc<Dest>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Set when the collector is shutting down: stream what is left, until `deadline`.
    pub stop: Arc<Mutex<Option<Instant>>>,
}

impl Dest {
    /// Marks the sink failing, with why.
    fn failing(&self, why: &str) {
        self.sink_healthy.store(false, Ordering::Relaxed);
        *self.sink_error.lock().unwrap_or_else(|e| e.into_inner()) = why.to_string();
    }

    /// Adds rows delivered to their tables' counts.
    fn count_per_table(&self, delivered: &[(Destination, usize)]) {
        if delivered.is_empty() {
            return;
        }
        let mut t = self.per_table.lock().unwrap_or_else(|e| e.into_inner());
        for (dest, n) in delivered {
            *t.entry(format!("{}.{}", dest.dataset, dest.table))
                .or_default() += *n as u64;
        }
    }
}

impl std::fmt::Debug for StreamerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamerParts")
            .field("dest", &self.dest.name)
            .finish_non_exhaustive()
    }
}

/// What a streamer works with: its parts and its destination's delivery as it took it last.
struct Ctx {
    parts: StreamerParts,
    delivery: Arc<Delivery>,
}

impl Ctx {
    fn max_rows(&self) -> usize {
        self.delivery.settings.max_rows
    }

    fn retry(&self) -> &RetryConfig {
        &self.delivery.settings.retry
    }
}

impl std::ops::Deref for Ctx {
    type Target = StreamerParts;
    fn deref(&self) -> &StreamerParts {
        &self.parts
    }
}

/// How long an idle streamer waits before looking for segments again.
const IDLE: Duration = Duration::from_millis(20);
/// Least time between two commits inside one segment (the end of a segment always commits).
const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// Runs one streamer until shutdown (see the module docs), reading its destination's segments
/// through `spool`
/// (opened by the caller before the thread starts, so a log that cannot be opened stops the
/// collector's start instead of a streamer, and a streamer never recreates a log directory
/// removed after the start).
pub fn run(parts: StreamerParts, mut spool: Spool) {
    let mut sink: Option<Box<dyn Sink>> = None;
    let delivery = parts.dest.delivery.load_full();
    let mut parts = Ctx { parts, delivery };
    loop {
        let deadline = *parts.stop.lock().unwrap_or_else(|e| e.into_inner());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // A reload changed how the destination delivers: the next segment goes the new way.
        let current = parts.dest.delivery.load_full();
        if !Arc::ptr_eq(&current, &parts.delivery) {
            close(&parts, sink.take());
            parts.delivery = current;
        }
        if sink.is_none() {
            match (parts.delivery.sink_factory)() {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    parts.dest.counters.sink_error("unavailable", e.kind());
                    parts
                        .dest
                        .failing(&format!("the sink cannot be built: {e}"));
                    std::thread::sleep(parts.retry().base.max(IDLE));
                    continue;
                }
            }
        }
        let Some(s) = sink.as_mut() else { continue };
        let next = match &parts.dest.cursor {
            Some(cursor) => spool.next_segment_for(cursor),
            None => spool.next_segment(),
        };
        match next {
            Ok(Some(seg)) => stream_segment(&parts, &spool, s.as_mut(), seg),
            Ok(None) => {
                if deadline.is_some() {
                    break; // drained
                }
                std::thread::sleep(IDLE);
            }
            Err(_) => {
                parts.dest.counters.sink_error("wal", "io");
                std::thread::sleep(IDLE);
            }
        }
    }
    close(&parts, sink);
}

/// Closes a sink a streamer is done with, counting an error.
fn close(parts: &Ctx, sink: Option<Box<dyn Sink>>) {
    if let Some(mut s) = sink {
        if let Err(e) = s.close() {
            parts.dest.counters.sink_error(s.name(), e.kind());
        }
    }
}

/// What was read since the last delivery.
struct Acc {
    rows: Batcher,
    rejects: Vec<RejectedEvent>,
    events: usize,
    /// Log bytes of the records read into this accumulator.
    bytes: u64,
}

impl Acc {
    fn new(parts: &Ctx) -> Self {
        Self {
            rows: Batcher::new(parts.max_rows(), parts.delivery.settings.max_bytes),
            rejects: Vec::new(),
            events: 0,
            bytes: 0,
        }
    }
}

fn stream_segment(parts: &Ctx, spool: &Spool, sink: &mut dyn Sink, mut seg: SegmentReader) {
    let counters = &parts.dest.counters;
    let mut acc = Acc::new(parts);
    let mut last_end = None;
    let mut last_commit = Instant::now();
    loop {
        let rec = match seg.next(&spool.counters) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(_) => {
                counters.sink_error("wal", "io");
                return; // not committed: read again later
            }
        };
        acc.bytes += rec.stored_len();
        if matches!(rec.payload.first(), Some(&(FRAMED | FRAMED_ROUTED))) {
            read_framed_record(parts, &mut acc, &rec.payload);
        } else {
            read_json_record(parts, &mut acc, &rec.payload);
        }
        last_end = Some(rec.end);
        if acc.events >= parts.max_rows() {
            if !deliver(parts, sink, std::mem::replace(&mut acc, Acc::new(parts))) {
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

/// Counts `n` copies read from a record a previous process acknowledged: accepted by this one
/// (by the destination, and with several by the collector too, one per copy).
fn count_replayed(parts: &Ctx, boot: u64, n: usize) {
    if boot == parts.shared.boot || n == 0 {
        return;
    }
    parts.dest.counters.accept_n(n as u64);
    if parts.shared.several() {
        parts.shared.counters.accept_n(n as u64);
    }
}

/// A framed record (see [`crate::wal::RecordBuilder`]): this destination's rows are sliced
/// out, not parsed; other destinations' are skipped.
fn read_framed_record(parts: &Ctx, acc: &mut Acc, payload: &[u8]) {
    let counters = &parts.dest.counters;
    let Some((header, mut rows)) = read_framed(payload) else {
        counters.sink_error("wal", "undecodable");
        return;
    };
    let bit = header.bit_of(&parts.dest.name, parts.dest.takes_legacy);
    let replayed = header.boot != parts.shared.boot;
    let feed = &parts.shared.feed;
    let mut taken = 0;
    for (dest, n, mask) in header.batches {
        if mask & bit == 0 {
            if !rows.skip_rows(n) {
                counters.sink_error("wal", "undecodable");
                break;
            }
            continue;
        }
        let (mut read, mut torn) = (0, false);
        acc.rows.extend(
            &dest,
            std::iter::from_fn(|| {
                if read == n {
                    return None;
                }
                let Some((id, json)) = rows.next_row() else {
                    torn = true;
                    return None;
                };
                read += 1;
                Some(EncodedRow {
                    insert_id: id.to_string(),
                    json: json.to_string(),
                })
            }),
        );
        acc.events += read;
        taken += read;
        if replayed {
            feed.replayed(&format!("{}.{}", dest.dataset, dest.table), read as u64);
        }
        if torn {
            counters.sink_error("wal", "undecodable");
        }
    }
    for (r, mask) in header.rejected {
        if mask & bit == 0 {
            continue;
        }
        acc.events += 1;
        taken += 1;
        if replayed {
            feed.replayed(&format!("{}.{}", r.dataset, r.type_name), 1);
        }
        let reason = intern_reason(&r.reason);
        acc.rejects.push(r.into_rejected(reason));
    }
    count_replayed(parts, header.boot, taken);
}

/// A JSON record ([`WalRecord`], written by earlier versions for `/v1/rows`): no destination
/// masks.
fn read_json_record(parts: &Ctx, acc: &mut Acc, payload: &[u8]) {
    let Ok(record) = serde_json::from_slice::<WalRecord>(payload) else {
        parts.dest.counters.sink_error("wal", "undecodable");
        return;
    };
    if bit_in(None, &parts.dest.name, parts.dest.takes_legacy) & LEGACY_MASK == 0 {
        return; // not this destination's
    }
    count_replayed(parts, record.boot, record.len());
    let replayed = record.boot != parts.shared.boot;
    for r in &record.rejected {
        if replayed {
            parts
                .shared
                .feed
                .replayed(&format!("{}.{}", r.dataset, r.type_name), 1);
        }
    }
    for b in record.batches {
        acc.events += b.rows.len();
        if replayed {
            parts
                .shared
                .feed
                .replayed(&format!("{}.{}", b.dataset, b.table), b.rows.len() as u64);
        }
        let dest = b.destination();
        let rows = b.rows.into_iter().map(|r| EncodedRow {
            insert_id: r.id,
            json: r.json.get().to_string(),
        });
        acc.rows.extend(&dest, rows);
    }
    for r in record.rejected {
        acc.events += 1;
        let reason = intern_reason(&r.reason);
        acc.rejects.push(r.into_rejected(reason));
    }
}

/// Delivers rows and dead letters, retrying failures until they succeed or the shutdown deadline
/// passes. True when everything was acknowledged (the caller may commit).
fn deliver(parts: &Ctx, sink: &mut dyn Sink, mut acc: Acc) -> bool {
    let dest = &parts.dest;
    acc.rows.close_all();
    let mut batches = acc.rows.take_ready();
    let mut rejects = acc.rejects;
    let mut attempt = 0u32;
    while !batches.is_empty() {
        let delivery = ingest::deliver(sink, batches, &dest.counters);
        dest.count_per_table(&delivery.delivered);
        let feed = &parts.shared.feed;
        feed.settled(&delivery.rejected_stored, &[]);
        if feed.watching() {
            for r in delivery.rejected.iter().chain(&delivery.rejected_stored) {
                feed.push(crate::ui::Item::dead(&r.into(), "sink"));
            }
        }
        rejects.extend(delivery.rejected);
        let Some(last) = delivery.failed.last() else {
            dest.sink_healthy.store(true, Ordering::Relaxed);
            break;
        };
        dest.failing(&format!("rows cannot be delivered: {}", last.message()));
        batches = delivery.failed.into_iter().map(|f| f.batch).collect();
        dest.counters
            .retry(batches.iter().map(|b| b.rows.len() as u64).sum());
        if !backoff(parts, &mut attempt) {
            return false;
        }
    }
    // Dead letters counted in `evlog_dead_letters_waiting` while their table fails.
    let mut waiting = 0u64;
    while !rejects.is_empty() {
        // Those the table refuses for good are dropped (counted): retrying would block the log
        // forever.
        let outcome =
            ingest::store_dead_letters(sink, std::mem::take(&mut rejects), &dest.counters);
        rejects = outcome.failed;
        parts.shared.feed.settled(&outcome.stored, &outcome.refused);
        let now_waiting = rejects.len() as u64;
        if now_waiting > waiting {
            dest.counters.dead_letters_wait(now_waiting - waiting);
        } else {
            dest.counters.dead_letters_settled(waiting - now_waiting);
        }
        waiting = now_waiting;
        let Some(e) = outcome.error else {
            dest.sink_healthy.store(true, Ordering::Relaxed);
            break;
        };
        dest.failing(&format!("dead letters cannot be written: {e}"));
        if !backoff(parts, &mut attempt) {
            // Left uncommitted in the log for the next start; no longer waiting here.
            dest.counters.dead_letters_settled(waiting);
            return false;
        }
    }
    dest.pending.fetch_sub(
        acc.bytes.min(dest.pending.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    true
}

/// Sleeps core's full-jitter backoff for the next attempt; false when the shutdown deadline
/// passes first (checked at least every 20 ms).
fn backoff(parts: &Ctx, attempt: &mut u32) -> bool {
    *attempt = attempt.saturating_add(1);
    let cap = parts.retry().cap.max(Duration::from_millis(1));
    let until = Instant::now() + evlog_core::config::backoff(parts.retry().base, cap, *attempt);
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
