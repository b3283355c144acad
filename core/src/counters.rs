//! Counters: every event offered to `log()` is accounted for.
//!
//! Names are the ones in docs/contracts.md and are shared by the SDK's `stats()` and the collector's
//! `/metrics`. The invariant, checked by tests under concurrency:
//!
//! `accepted = delivered + rejected + dropped + in_flight`
//!
//! where `accepted` counts every event offered to `log()` (including ones refused on the spot, which
//! are counted as dropped with reason `invalid_envelope` or `queue_full`), and `in_flight` is what
//! sits in the queue, in open batches or in a sink call. Outcomes are counted only once the sink has
//! answered, so `delivered` never runs ahead of the data.
//!
//! The hot path touches one striped counter (`accepted`, one cache line per thread stripe) so logging
//! threads do not contend on a shared line; everything else is written by the flush thread.
//!
//! [`Stats::to_prometheus`] and the `write_*` helpers (also used for the collector's own families)
//! render the Prometheus text format 0.0.4: each family's HELP and TYPE lines, then all of its
//! samples, before the next family's header. A counter's family is named with its `_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::transform::{Applied, SkipReason};

pub mod by_table;
mod destinations;

/// Metric names (docs/contracts.md).
pub mod names {
    /// Events offered to `log()` / received by the collector.
    pub const ACCEPTED: &str = "evlog_events_accepted_total";
    /// Events the sink acknowledged.
    pub const DELIVERED: &str = "evlog_events_delivered_total";
    /// Events refused by validation or by the sink, kept in the dead-letter table; label `reason`.
    pub const REJECTED: &str = "evlog_events_rejected_total";
    /// Events lost, counted; label `reason`.
    pub const DROPPED: &str = "evlog_events_dropped_total";
    /// Events sent again after a failed attempt.
    pub const RETRIED: &str = "evlog_events_retried_total";
    /// Events written to the disk spool.
    pub const SPOOLED: &str = "evlog_events_spooled_total";
    /// Events waiting in the in-memory queue (gauge).
    pub const QUEUE_EVENTS: &str = "evlog_queue_events";
    /// Time to deliver one flush (histogram, seconds).
    pub const FLUSH_SECONDS: &str = "evlog_flush_seconds";
    /// Sink errors; labels `sink`, `kind`.
    pub const SINK_ERRORS: &str = "evlog_sink_errors_total";
    /// Rejected events waiting for their dead-letter table, which cannot be written now; kept in
    /// the spool (SDK) or the write-ahead log (collector) and retried (gauge).
    pub const DEAD_LETTERS_WAITING: &str = "evlog_dead_letters_waiting";
    /// Copies made beyond the first when an event went to several destinations (present with
    /// several destinations only).
    pub const FANNED_OUT: &str = "evlog_events_fanned_out_total";
    /// Places where a `[[transforms]]` rule could not apply (the event went on unchanged
    /// there); label `reason` (see [`crate::transform::SkipReason`]).
    pub const TRANSFORM_SKIPPED: &str = "evlog_transform_skipped_total";
    /// Reloads of the configuration or schema files; label `result` (`ok`: the new one is in
    /// use; `error`: it was refused and the old one stays).
    pub const CONFIG_RELOADS: &str = "evlog_config_reloads_total";
}

/// Why an accepted event was dropped (not stored anywhere, counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// `log()` refused the envelope (the caller got the error).
    InvalidEnvelope,
    /// The in-memory queue was full (and the spool off or full).
    QueueFull,
    /// Logged after `shutdown()`.
    ShutDown,
    /// Still undelivered when the shutdown deadline passed.
    ShutdownDeadline,
    /// The sink failed and the batch could not be kept.
    SinkError,
    /// The disk spool was full.
    SpoolFull,
    /// The dead-letter write failed, so a rejected event could not be kept.
    DeadLetterFailed,
    /// No route took the event (`[[routes]]`: no table glob matched, its `where` failed or its
    /// `sample` left it out).
    Unrouted,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 8] = [
        DropReason::InvalidEnvelope,
        DropReason::QueueFull,
        DropReason::ShutDown,
        DropReason::ShutdownDeadline,
        DropReason::SinkError,
        DropReason::SpoolFull,
        DropReason::DeadLetterFailed,
        DropReason::Unrouted,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InvalidEnvelope => "invalid_envelope",
            DropReason::QueueFull => "queue_full",
            DropReason::ShutDown => "shut_down",
            DropReason::ShutdownDeadline => "shutdown_deadline",
            DropReason::SinkError => "sink_error",
            DropReason::SpoolFull => "spool_full",
            DropReason::DeadLetterFailed => "dead_letter_failed",
            DropReason::Unrouted => "unrouted",
        }
    }
}

/// Every `reason` of `evlog_events_rejected_total` that core itself produces, in label order:
/// the envelope and routing checks ([`reasons`](crate::ingest::reasons)), schema conversion and row
/// checks ([`RowErrorReason`](crate::schema::RowErrorReason)), BigQuery's refusals
/// ([`REJECT_REASON`](crate::sink::bigquery::REJECT_REASON)) and OpenSearch's
/// ([`REJECT_REASON`](crate::sink::opensearch::REJECT_REASON)). [`Stats`] always holds each of
/// them (0 until counted), so a reader can index any of them. Reasons read back from a
/// collector's answer or the spool may add others.
pub const REJECT_REASONS: [&str; 12] = [
    "bigquery_invalid",
    "duplicate_field",
    "invalid_json",
    "invalid_value",
    "missing_required",
    "not_an_object",
    "opensearch_refused",
    "out_of_range",
    "too_long",
    "unknown_field",
    "unknown_table",
    "wrong_destination",
];

const STRIPES: usize = 16;

/// A counter split over cache lines so concurrent writers do not contend.
#[derive(Debug)]
struct Striped {
    cells: [CachePadded<AtomicU64>; STRIPES],
}

impl Striped {
    fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    #[inline]
    fn add(&self, n: u64) {
        self.cells[stripe()].fetch_add(n, Relaxed);
    }

    fn sum(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// Upper bounds (seconds) of the flush-duration histogram buckets.
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A histogram of durations for Prometheus: a count per bucket (fixed upper bounds in seconds,
/// then +Inf) and the sum. Lock-free; observing is two relaxed atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf (not cumulative).
    buckets: Box<[AtomicU64]>,
    /// In nanoseconds (a u64 holds 584 years of them).
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Empty, with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Cumulative counts for each bound, then +Inf (the total count).
    pub(crate) fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.buckets
            .iter()
            .map(|c| {
                total += c.load(Relaxed);
                total
            })
            .collect()
    }

    /// The sum of all durations, in seconds.
    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Relaxed) as f64 / 1e9
    }

    /// Appends the histogram in the Prometheus text format.
    pub fn write_prometheus(&self, s: &mut String, name: &str, help: &str) {
        write_histogram(
            s,
            name,
            help,
            self.bounds,
            &self.cumulative(),
            self.sum_seconds(),
        );
    }
}

/// Appends the HELP and TYPE lines of a metric family in the Prometheus text format (0.0.4).
///
/// `name` is the family's name as its samples spell it: a counter's ends in `_total`
/// (`# TYPE evlog_events_accepted_total counter`, as promtool's linter wants; `prometheus_client`
/// reads it as the family `evlog_events_accepted`). The family's samples must follow at once,
/// before any other family's header: parsers end a family at the first line that is not its.
pub fn write_header(s: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one sample line, `name{labels} value`, with the label values escaped (backslash,
/// double quote and line feed, as the text format requires).
pub fn write_sample(
    s: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    s.push_str(name);
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s.push('}');
    }
    let _ = writeln!(s, " {value}");
}

/// Appends a family of one unlabelled sample (HELP and TYPE lines included).
pub fn write_metric(
    s: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    value: impl std::fmt::Display,
) {
    write_header(s, name, help, kind);
    write_sample(s, name, &[], value);
}

/// Appends a histogram in the Prometheus text format: `cumulative` holds a count per bound, then
/// +Inf (the total count).
pub(crate) fn write_histogram(
    s: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    cumulative: &[u64],
    sum: f64,
) {
    write_header(s, name, help, "histogram");
    let bucket = format!("{name}_bucket");
    for (i, count) in cumulative.iter().enumerate() {
        let le = bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        write_sample(s, &bucket, &[("le", &le)], count);
    }
    let count = cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(s, "{name}_sum {sum}\n{name}_count {count}");
}

/// Live counters of one pipeline in one process.
#[derive(Debug)]
pub struct Counters {
    accepted: Striped,
    delivered: AtomicU64,
    retried: AtomicU64,
    spooled: AtomicU64,
    dropped: [CachePadded<AtomicU64>; DropReason::ALL.len()],
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    sink_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    flush: Histogram,
    dead_letters_waiting: AtomicU64,
    fanned_out: AtomicU64,
    transform_skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Reloads (ok, error).
    reloads: [AtomicU64; 2],
    /// Drops before routing, by the table the event was meant for.
    by_table: by_table::TableDrops,
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

impl Counters {
    /// All zero.
    pub fn new() -> Self {
        Self {
            accepted: Striped::new(),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            dropped: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            rejected: Mutex::new(BTreeMap::new()),
            sink_errors: Mutex::new(BTreeMap::new()),
            flush: Histogram::new(&FLUSH_BUCKETS),
            dead_letters_waiting: AtomicU64::new(0),
            fanned_out: AtomicU64::new(0),
            transform_skipped: std::array::from_fn(|_| AtomicU64::new(0)),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            by_table: by_table::TableDrops::default(),
        }
    }

    /// One event offered to `log()`.
    #[inline]
    pub(crate) fn accept(&self) {
        self.accepted.add(1);
    }

    /// `n` events were offered in one call (collector batches).
    pub fn accept_n(&self, n: u64) {
        self.accepted.add(n);
    }

    /// `n` events acknowledged by the sink.
    pub(crate) fn deliver(&self, n: u64) {
        self.delivered.fetch_add(n, Relaxed);
    }

    /// `n` events rejected (and dead-lettered) for `reason`.
    pub(crate) fn reject(&self, reason: &'static str, n: u64) {
        if n > 0 {
            *lock(&self.rejected).entry(reason).or_default() += n;
        }
    }

    /// `n` events dropped for `reason`.
    #[inline]
    pub(crate) fn drop_events(&self, reason: DropReason, n: u64) {
        // Discriminants follow declaration order, which is the order of `ALL`.
        self.dropped[reason as usize].fetch_add(n, Relaxed);
    }

    /// `n` events meant for `namespace.type` dropped for `reason` before they had a destination
    /// (`log()` refused them, or the shutdown dropped them queued): counted as
    /// [`drop_events`](Self::drop_events) does, and per table (see [`by_table`]).
    pub(crate) fn drop_meant_for(
        &self,
        namespace: &str,
        type_name: &str,
        reason: DropReason,
        n: u64,
    ) {
        self.drop_events(reason, n);
        self.by_table.add(namespace, type_name, reason, n);
    }

    /// `n` events sent again.
    pub fn retry(&self, n: u64) {
        self.retried.fetch_add(n, Relaxed);
    }

    /// `n` events written to the spool.
    pub(crate) fn spool(&self, n: u64) {
        self.spooled.fetch_add(n, Relaxed);
    }

    /// One sink error of `kind`.
    pub fn sink_error(&self, sink: &'static str, kind: &'static str) {
        *lock(&self.sink_errors).entry((sink, kind)).or_default() += 1;
    }

    /// `n` more dead letters wait for a table that cannot be written now.
    pub fn dead_letters_wait(&self, n: u64) {
        self.dead_letters_waiting.fetch_add(n, Relaxed);
    }

    /// `n` waiting dead letters were settled (stored, dropped, or handed back for another try).
    pub fn dead_letters_settled(&self, n: u64) {
        let _ = self
            .dead_letters_waiting
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }

    /// `n` more copies of events than events: one went to `n + 1` destinations.
    pub fn fan_out(&self, n: u64) {
        self.fanned_out.fetch_add(n, Relaxed);
    }

    /// `n` events dropped for `reason`, counted by code outside this crate that settles
    /// events itself (the collector: events no route takes).
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        self.drop_events(reason, n);
    }

    /// Records how long one flush took.
    /// The places where transform rules could not apply to one event.
    pub fn transform_skips(&self, applied: &Applied) {
        for (reason, n) in applied.skip_reasons() {
            self.transform_skipped[reason as usize].fetch_add(u64::from(n), Relaxed);
        }
    }

    /// One reload, taken (`ok`) or refused (the old configuration stays).
    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    pub(crate) fn observe_flush(&self, took: Duration) {
        self.flush.observe(took);
    }

    /// Reads every counter. `queue_events` is supplied by the owner of the queue. `in_flight` is
    /// derived; outcomes are read before `accepted` so a concurrent reader never sees more outcomes
    /// than acceptances.
    pub fn snapshot(&self, queue_events: u64) -> Stats {
        let delivered = self.delivered.load(Relaxed);
        // Every known reason is present, 0 until counted (see [`Stats`]).
        let mut rejected = REJECT_REASONS
            .iter()
            .map(|r| (r.to_string(), 0))
            .collect::<BTreeMap<_, _>>();
        for (k, v) in lock(&self.rejected).iter() {
            *rejected.entry(k.to_string()).or_default() += *v;
        }
        let dropped = DropReason::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(r, c)| (r.as_str().to_string(), c.load(Relaxed)))
            .collect::<BTreeMap<_, _>>();
        let fanned_out = self.fanned_out.load(Relaxed);
        let accepted = self.accepted.sum();
        let settled = delivered + rejected.values().sum::<u64>() + dropped.values().sum::<u64>();
        Stats {
            fanned_out,
            destinations: BTreeMap::new(),
            accepted,
            delivered,
            rejected,
            dropped,
            retried: self.retried.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            queue_events,
            in_flight: (accepted + fanned_out) as i64 - settled as i64,
            flush_seconds_buckets: self.flush.cumulative(),
            flush_seconds_sum: self.flush.sum_seconds(),
            sink_errors: lock(&self.sink_errors)
                .iter()
                .map(|((s, k), v)| ((s.to_string(), k.to_string()), *v))
                .collect(),
            dead_letters_waiting: self.dead_letters_waiting.load(Relaxed),
            transform_skipped: SkipReason::ALL
                .iter()
                .zip(&self.transform_skipped)
                .map(|(r, c)| (r.label().to_string(), c.load(Relaxed)))
                .collect(),
            config_reloads: ["ok", "error"]
                .iter()
                .zip(&self.reloads)
                .map(|(r, c)| (r.to_string(), c.load(Relaxed)))
                .collect(),
            dropped_by_table: self.by_table.read(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves the map consistent (single insert), so poison
    // is safe to ignore.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A point-in-time reading of the counters.
///
/// Every family is always present, 0 when nothing happened: the scalars, `rejected` with every
/// reason of [`REJECT_REASONS`] (plus any other reason counted, e.g. one a collector answered),
/// `dropped` with every [`DropReason`]. `sink_errors` holds only the (sink, kind) pairs seen:
/// kinds come from the destination's answers (HTTP statuses, BigQuery reasons), an open set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// `evlog_events_accepted_total`.
    pub accepted: u64,
    /// `evlog_events_delivered_total`.
    pub delivered: u64,
    /// `evlog_events_rejected_total` by reason: every reason of [`REJECT_REASONS`], and others
    /// counted.
    pub rejected: BTreeMap<String, u64>,
    /// `evlog_events_dropped_total` by reason: every [`DropReason`].
    pub dropped: BTreeMap<String, u64>,
    /// `evlog_events_retried_total`.
    pub retried: u64,
    /// `evlog_events_spooled_total`.
    pub spooled: u64,
    /// `evlog_queue_events`.
    pub queue_events: u64,
    /// Accepted but not yet delivered, rejected or dropped. Never negative unless an event was
    /// counted twice (a bug the invariant tests look for).
    pub in_flight: i64,
    /// `evlog_flush_seconds` cumulative bucket counts, for the bounds in [`FLUSH_BUCKETS`] and +Inf.
    pub flush_seconds_buckets: Vec<u64>,
    /// `evlog_flush_seconds_sum`.
    pub flush_seconds_sum: f64,
    /// `evlog_sink_errors_total` by (sink, kind).
    pub sink_errors: BTreeMap<(String, String), u64>,
    /// `evlog_dead_letters_waiting`.
    pub dead_letters_waiting: u64,
    /// `evlog_transform_skipped_total` by reason: every [`SkipReason`] (places where a
    /// `[[transforms]]` rule could not apply; the event went on unchanged there).
    pub transform_skipped: BTreeMap<String, u64>,
    /// `evlog_events_fanned_out_total`: copies made beyond the first when an event went to
    /// several destinations (0 with one destination).
    pub fanned_out: u64,
    /// `evlog_config_reloads_total` by result: `ok` and `error`, always both (see
    /// [`names::CONFIG_RELOADS`]).
    pub config_reloads: BTreeMap<String, u64>,
    /// Of `dropped`, those dropped before routing, by the table they were meant for
    /// (`namespace.type` → reason → count; see [`by_table`]). Only tables with drops appear.
    /// Reported to the collector by the forward sink; not rendered by `to_prometheus`.
    pub dropped_by_table: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per destination, with several (empty with one): the same readings for the copies routed
    /// there (`accepted` counts the copies routed to it, `queue_events` those waiting for its
    /// thread, `in_flight` its own). The totals above include them.
    pub destinations: BTreeMap<String, Stats>,
}

impl Stats {
    /// Sum of rejected over all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Sum of dropped over all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Whether `accepted + fanned_out = delivered + rejected + dropped + in_flight` with nothing
    /// in flight, for the totals and for every destination.
    pub fn is_settled(&self) -> bool {
        self.in_flight == 0
            && self.accepted + self.fanned_out
                == self.delivered + self.rejected_total() + self.dropped_total()
            && self.destinations.values().all(Stats::is_settled)
    }

    /// Flat `name{labels} value` pairs with the names of docs/contracts.md, for bindings (`stats()`) and logs:
    /// every family, labelled ones with every known reason (see [`Stats`]).
    pub fn to_flat(&self) -> Vec<(String, f64)> {
        let mut out = vec![
            (names::ACCEPTED.to_string(), self.accepted as f64),
            (names::DELIVERED.to_string(), self.delivered as f64),
        ];
        for (r, v) in &self.rejected {
            out.push((format!("{}{{reason=\"{r}\"}}", names::REJECTED), *v as f64));
        }
        for (r, v) in &self.dropped {
            out.push((format!("{}{{reason=\"{r}\"}}", names::DROPPED), *v as f64));
        }
        out.push((names::RETRIED.to_string(), self.retried as f64));
        out.push((names::SPOOLED.to_string(), self.spooled as f64));
        out.push((names::QUEUE_EVENTS.to_string(), self.queue_events as f64));
        for ((s, k), v) in &self.sink_errors {
            out.push((
                format!("{}{{sink=\"{s}\",kind=\"{k}\"}}", names::SINK_ERRORS),
                *v as f64,
            ));
        }
        out.push((
            names::DEAD_LETTERS_WAITING.to_string(),
            self.dead_letters_waiting as f64,
        ));
        for (r, v) in &self.transform_skipped {
            out.push((
                format!("{}{{reason=\"{r}\"}}", names::TRANSFORM_SKIPPED),
                *v as f64,
            ));
        }
        for (r, v) in &self.config_reloads {
            out.push((
                format!("{}{{result=\"{r}\"}}", names::CONFIG_RELOADS),
                *v as f64,
            ));
        }
        self.destinations_to_flat(&mut out);
        out
    }

    /// Prometheus text exposition (format 0.0.4) of these counters: each family's HELP and TYPE
    /// lines, then its samples, then the next family (parsers such as `prometheus_client` end a
    /// family at the first line that is not its own). `rejected` and `dropped` have a sample for
    /// every known reason (0 until counted), so rates and alerts work before the first event;
    /// `evlog_sink_errors_total` has one per (sink, kind) seen, its header alone before any.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let s = &mut out;
        let dests = &self.destinations;
        // A scalar family: the total, then one sample per destination (with several).
        let scalar = |s: &mut String, name: &str, help: &str, kind: &str, f: fn(&Stats) -> u64| {
            write_header(s, name, help, kind);
            write_sample(s, name, &[], f(self));
            for (d, st) in dests {
                write_sample(s, name, &[("destination", d)], f(st));
            }
        };
        scalar(
            s,
            names::ACCEPTED,
            "Events offered to evlog (per destination: the copies routed to it).",
            "counter",
            |st| st.accepted,
        );
        scalar(
            s,
            names::DELIVERED,
            "Events acknowledged by the sink.",
            "counter",
            |st| st.delivered,
        );
        write_header(
            s,
            names::REJECTED,
            "Events dead-lettered, by reason.",
            "counter",
        );
        for (reason, n) in &self.rejected {
            write_sample(s, names::REJECTED, &[("reason", reason)], n);
        }
        for (d, st) in dests {
            for (reason, n) in &st.rejected {
                write_sample(
                    s,
                    names::REJECTED,
                    &[("destination", d), ("reason", reason)],
                    n,
                );
            }
        }
        write_header(
            s,
            names::DROPPED,
            "Events lost and counted, by reason.",
            "counter",
        );
        for (reason, n) in &self.dropped {
            write_sample(s, names::DROPPED, &[("reason", reason)], n);
        }
        for (d, st) in dests {
            for (reason, n) in &st.dropped {
                write_sample(
                    s,
                    names::DROPPED,
                    &[("destination", d), ("reason", reason)],
                    n,
                );
            }
        }
        scalar(
            s,
            names::RETRIED,
            "Events sent again after a failure.",
            "counter",
            |st| st.retried,
        );
        scalar(
            s,
            names::SPOOLED,
            "Events written to the disk spool.",
            "counter",
            |st| st.spooled,
        );
        scalar(
            s,
            names::QUEUE_EVENTS,
            "Events waiting in memory.",
            "gauge",
            |st| st.queue_events,
        );
        write_header(
            s,
            names::SINK_ERRORS,
            "Sink errors by sink and kind.",
            "counter",
        );
        for ((sink, kind), n) in &self.sink_errors {
            write_sample(s, names::SINK_ERRORS, &[("sink", sink), ("kind", kind)], n);
        }
        for (d, st) in dests {
            for ((sink, kind), n) in &st.sink_errors {
                write_sample(
                    s,
                    names::SINK_ERRORS,
                    &[("destination", d), ("sink", sink), ("kind", kind)],
                    n,
                );
            }
        }
        scalar(
            s,
            names::DEAD_LETTERS_WAITING,
            "Rejected events kept for a dead-letter table that cannot be written now.",
            "gauge",
            |st| st.dead_letters_waiting,
        );
        if !dests.is_empty() {
            write_metric(
                s,
                names::FANNED_OUT,
                "Copies made beyond the first when an event went to several destinations.",
                "counter",
                self.fanned_out,
            );
        }
        write_header(
            s,
            names::TRANSFORM_SKIPPED,
            "Places where a [[transforms]] rule could not apply, by reason.",
            "counter",
        );
        for (reason, n) in &self.transform_skipped {
            write_sample(s, names::TRANSFORM_SKIPPED, &[("reason", reason)], n);
        }
        for (d, st) in dests {
            for (reason, n) in &st.transform_skipped {
                write_sample(
                    s,
                    names::TRANSFORM_SKIPPED,
                    &[("destination", d), ("reason", reason)],
                    n,
                );
            }
        }
        write_header(
            s,
            names::CONFIG_RELOADS,
            "Reloads of the configuration or schema files, by result.",
            "counter",
        );
        for (result, n) in &self.config_reloads {
            write_sample(s, names::CONFIG_RELOADS, &[("result", result)], n);
        }
        write_histogram(
            s,
            names::FLUSH_SECONDS,
            "Time to deliver one flush.",
            &FLUSH_BUCKETS,
            &self.flush_seconds_buckets,
            self.flush_seconds_sum,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_derives_in_flight_and_labels() {
        let c = Counters::new();
        for _ in 0..10 {
            c.accept();
        }
        c.deliver(5);
        c.reject("unknown_table", 2);
        c.drop_events(DropReason::QueueFull, 1);
        c.observe_flush(Duration::from_millis(3));
        let s = c.snapshot(2);
        assert_eq!(s.in_flight, 2);
        assert!(!s.is_settled());
        assert_eq!(s.rejected["unknown_table"], 2);
        assert_eq!(s.dropped["queue_full"], 1);
        assert_eq!(*s.flush_seconds_buckets.last().unwrap(), 1);
        let text = s.to_prometheus();
        assert!(text.contains("evlog_events_dropped_total{reason=\"queue_full\"} 1"));
        assert!(text.contains("evlog_flush_seconds_bucket{le=\"0.005\"} 1"));
        c.deliver(2);
        assert!(c.snapshot(0).is_settled());
    }

    /// The families of a text exposition in order, as (name, type), after checking that each
    /// family's HELP and TYPE lines come together, once, right before all of its samples.
    fn families(text: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                let ty = lines.next().and_then(|l| l.strip_prefix("# TYPE "));
                let (ty_name, kind) = ty
                    .and_then(|t| t.split_once(' '))
                    .unwrap_or_else(|| panic!("HELP {name} not followed by its TYPE in\n{text}"));
                assert_eq!(ty_name, name, "HELP and TYPE name differ in\n{text}");
                assert!(
                    out.iter().all(|(n, _)| *n != name),
                    "family {name} appears twice in\n{text}"
                );
                out.push((name, kind.to_string()));
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let sample = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = out
                .last()
                .unwrap_or_else(|| panic!("sample {line:?} before any TYPE"));
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.strip_suffix(suffix) == Some(family.as_str())),
                _ => sample == family,
            };
            assert!(
                ok,
                "sample {line:?} is not in family {family} ({kind}) in\n{text}"
            );
        }
        out
    }

    #[test]
    fn prometheus_text_groups_each_family_under_its_header() {
        let c = Counters::new();
        c.accept_n(9);
        c.deliver(3);
        c.reject("unknown_table", 1);
        c.reject("missing_required", 2);
        c.drop_events(DropReason::QueueFull, 1);
        c.drop_events(DropReason::SinkError, 1);
        c.retry(4);
        c.spool(5);
        c.sink_error("bigquery", "http_503");
        c.sink_error("file", "io");
        c.observe_flush(Duration::from_millis(30));
        let text = c.snapshot(6).to_prometheus();
        let kinds: Vec<_> = families(&text)
            .into_iter()
            .map(|(n, k)| format!("{n} {k}"))
            .collect();
        assert_eq!(
            kinds,
            [
                "evlog_events_accepted_total counter",
                "evlog_events_delivered_total counter",
                "evlog_events_rejected_total counter",
                "evlog_events_dropped_total counter",
                "evlog_events_retried_total counter",
                "evlog_events_spooled_total counter",
                "evlog_queue_events gauge",
                "evlog_sink_errors_total counter",
                "evlog_dead_letters_waiting gauge",
                "evlog_transform_skipped_total counter",
                "evlog_config_reloads_total counter",
                "evlog_flush_seconds histogram",
            ]
        );
        assert!(
            text.contains("evlog_events_rejected_total{reason=\"missing_required\"} 2\n")
                && text.contains("evlog_events_rejected_total{reason=\"unknown_table\"} 1\n")
                && text.contains(
                    "evlog_events_rejected_total{reason=\"wrong_destination\"} 0\n# HELP "
                ),
            "{text}"
        );
        assert!(text.contains(
            "evlog_sink_errors_total{sink=\"bigquery\",kind=\"http_503\"} 1\n\
             evlog_sink_errors_total{sink=\"file\",kind=\"io\"} 1\n# HELP evlog_dead_letters_waiting "
        ));
        assert!(text.contains("\nevlog_queue_events 6\n"), "{text}");
        assert!(text.ends_with("evlog_flush_seconds_count 1\n"), "{text}");

        // Nothing counted yet: every family still has its header, rejected and dropped a zero
        // sample per known reason, sink errors none (its kinds are an open set).
        let empty = Counters::new().snapshot(0).to_prometheus();
        assert_eq!(families(&empty).len(), 12);
        for r in DropReason::ALL {
            let line = format!(
                "\nevlog_events_dropped_total{{reason=\"{}\"}} 0\n",
                r.as_str()
            );
            assert!(empty.contains(&line), "{line} in {empty}");
        }
        for r in REJECT_REASONS {
            let line = format!("\nevlog_events_rejected_total{{reason=\"{r}\"}} 0\n");
            assert!(empty.contains(&line), "{line} in {empty}");
        }
        assert!(!empty.contains("evlog_sink_errors_total{"), "{empty}");
    }

    /// `stats()["evlog_events_dropped_total{reason=…}"]` must not raise for a reason that has
    /// not happened: every family and known reason is in the flat form, 0 until counted.
    #[test]
    fn flat_stats_hold_every_family_and_known_reason() {
        let c = Counters::new();
        let flat: BTreeMap<String, f64> = c.snapshot(0).to_flat().into_iter().collect();
        for name in [
            names::ACCEPTED,
            names::DELIVERED,
            names::RETRIED,
            names::SPOOLED,
            names::QUEUE_EVENTS,
            names::DEAD_LETTERS_WAITING,
        ] {
            assert_eq!(flat.get(name), Some(&0.0), "{name} in {flat:?}");
        }
        for r in DropReason::ALL {
            let k = format!("{}{{reason=\"{}\"}}", names::DROPPED, r.as_str());
            assert_eq!(flat.get(&k), Some(&0.0), "{k}");
        }
        for r in REJECT_REASONS {
            let k = format!("{}{{reason=\"{r}\"}}", names::REJECTED);
            assert_eq!(flat.get(&k), Some(&0.0), "{k}");
        }
        for r in ["ok", "error"] {
            let k = format!("{}{{result=\"{r}\"}}", names::CONFIG_RELOADS);
            assert_eq!(flat.get(&k), Some(&0.0), "{k}");
        }
        assert_eq!(
            flat.len(),
            6 + DropReason::ALL.len() + REJECT_REASONS.len() + SkipReason::ALL.len() + 2,
            "no sink error seen, none listed: {flat:?}"
        );
        // A reason outside the known set (e.g. answered by a collector) joins them.
        c.accept_n(2);
        c.reject("forwarded_other", 1);
        c.reject("unknown_table", 1);
        let s = c.snapshot(0);
        assert_eq!(s.rejected["forwarded_other"], 1);
        assert_eq!(s.rejected["unknown_table"], 1);
        assert_eq!(s.rejected["too_long"], 0);
        assert!(s.is_settled(), "{s:?}");
    }

    /// Every reason core produces is in [`REJECT_REASONS`], so none appears only once counted.
    #[test]
    fn reject_reasons_cover_every_reason_core_produces() {
        use crate::ingest::reasons;
        use crate::schema::RowErrorReason;
        let mut produced = vec![
            reasons::INVALID_JSON,
            reasons::NOT_AN_OBJECT,
            reasons::UNKNOWN_TABLE,
            reasons::WRONG_DESTINATION,
            crate::sink::bigquery::REJECT_REASON,
            crate::sink::opensearch::REJECT_REASON,
        ];
        produced.extend(RowErrorReason::ALL.iter().map(|r| r.as_str()));
        produced.sort_unstable();
        assert_eq!(produced, REJECT_REASONS);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut s = String::new();
        write_header(&mut s, "t_total", "A \\ and\na line.", "counter");
        write_sample(&mut s, "t_total", &[("a", "x\"y\\z\nw"), ("b", "")], 3);
        assert_eq!(
            s,
            "# HELP t_total A \\\\ and\\na line.\n# TYPE t_total counter\n\
             t_total{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 3\n"
        );
    }

    #[test]
    fn histogram_counts_cumulatively_by_upper_bound() {
        static BOUNDS: [f64; 2] = [0.001, 0.01];
        let h = Histogram::new(&BOUNDS);
        h.observe(Duration::from_micros(1000)); // on a bound: counted in it
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(20));
        assert_eq!(h.cumulative(), vec![1, 2, 3]);
        assert!((h.sum_seconds() - 0.026).abs() < 1e-9);
        let mut text = String::new();
        h.write_prometheus(&mut text, "t_seconds", "Test.");
        assert_eq!(
            text,
            "# HELP t_seconds Test.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"0.001\"} 1\nt_seconds_bucket{le=\"0.01\"} 2\n\
             t_seconds_bucket{le=\"+Inf\"} 3\nt_seconds_sum 0.026\nt_seconds_count 3\n"
        );
    }

    #[test]
    fn striped_counter_sums_across_threads() {
        let c = std::sync::Arc::new(Counters::new());
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| c.accept()))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.snapshot(0).accepted, 80_000);
    }
}
