//! The `POST /v1/rows` body, shared by the forward sink and the collector.
//!
//! ```json
//! {"batches": [{"dataset": "events", "table": "transaction", "partitioned": false,
//!               "day": "20261122", "rows": [{"id": "…", "json": {…row…}}]}],
//!  "rejected": [{"dataset": "events", "event_id": "…", "namespace": "events",
//!                "type": "transaction", "event_time": 1763800000000000,
//!                "received_at": 1763800000000000, "reason": "missing_required",
//!                "field": "user_id", "error": "…", "raw": "…"}]}
//! ```
//! Rows were validated and converted by the sender's core. The collector takes them only from
//! keys with role `"sdk"` (a `"client"` key gets 403) and checks every row again
//! ([`crate::ingest::Processor::check_row`]: a schema is routed to its `dataset`/`table`, the
//! row passes it, reserved columns present, `partitioned` and `day` as routing gives them from
//! `event_time`). A row that fails is not stored as a row: it is kept in the dataset's
//! dead-letter table (its reason, field and error; `raw` = the row) and counted rejected.
//!
//! The answer (200) to a request whose rows and dead letters are all in the collector's
//! write-ahead log:
//!
//! ```json
//! {"accepted": 3, "rows": 1, "dead_letters": 1,
//!  "refused": [{"batch": 0, "row": 1, "id": "…", "reason": "invalid_value",
//!               "field": "user_id", "error": "field \"user_id\": expected INT64, got …"}]}
//! ```
//! `rows`: rows stored as rows; `dead_letters`: the request's `rejected` entries; `refused`: the
//! rows that failed the checks (`batch` and `row` index the request's `batches[i].rows[j]`;
//! `field` may be null), now dead letters; `accepted` = `rows` + `dead_letters` +
//! `refused.len()`, every item of the request. Reasons: core's rejection reasons
//! (`unknown_table`, `missing_required`, `invalid_value`, `out_of_range`, `too_long`,
//! `duplicate_field`), plus `unknown_field` (a key no column names) and `wrong_destination`
//! (`day` or `partitioned` not what routing gives). A malformed request (bad names, day format or
//! ids, a row that is not an object) is refused whole with 400 and the place named.
//! Only `accepted` is required by the forward sink (it checks it against what it sent); unknown
//! keys are ignored so the collector may add some.
//!
//! # `POST /v1/batch` (`format = "events"`)
//!
//! The events as they were logged, one envelope per line (NDJSON, `Content-Type:
//! application/x-ndjson`), framed by [`push_envelope`]:
//!
//! ```json
//! {"namespace":"events","type":"transaction","time":"2026-11-22T10:00:00.123456Z","id":"0193…","event":{…}}
//! ```
//! `time` is always sent (the caller's, else the time of `log()`), so `event_time` and the day
//! do not depend on when the request arrives; `received_at` is the collector's. `event` is the
//! body text the caller built, verbatim except that line feeds (whitespace between JSON tokens:
//! a string cannot hold a raw one) become spaces, so every event is exactly one line. Any role
//! of key may post envelopes. The answer (200, [`BatchAnswer`]): `{"accepted", "refused",
//! "results": [{"index", "status", "id"?, "error"?, "reason"?, "field"?}]}`, one result per
//! line in order: 202 stored, 422 refused and kept as a dead letter by the collector, 400
//! (`invalid_json`, `invalid_envelope`, …), 403 (`forbidden`: out of the key's namespaces) and
//! 413 (`event_too_large`) refused and *not* kept.
//!
//! The forward sink posts to `/v1/batch?results=refused`: a collector that knows the query
//! lists only the events not stored in `results` (in order, each with its `index`) and adds
//! `"only_refused":true`, so the usual answer, every event stored, is
//! `{"accepted":500,"refused":0,"only_refused":true,"results":[]}` whatever the batch's size.
//! An older collector ignores the query and lists every event; the sink reads both.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ingest::RawEvent;
use crate::routing::{Destination, PartitionKind};
use crate::sink::{EncodedRow, RejectedEvent};

/// A request body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RowsRequest {
    /// Rows per destination.
    #[serde(default)]
    pub batches: Vec<WireBatch>,
    /// Events to keep in dead-letter tables.
    #[serde(default)]
    pub rejected: Vec<WireRejected>,
}

/// Rows for one destination.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireBatch {
    /// Dataset.
    pub dataset: String,
    /// Base table.
    pub table: String,
    /// Partitioned (true) or day-sharded (false).
    pub partitioned: bool,
    /// UTC day, `YYYYMMDD`.
    pub day: String,
    /// The rows.
    pub rows: Vec<WireRow>,
}

/// One row.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRow {
    /// insertId (the event id).
    pub id: String,
    /// The row object.
    pub json: Box<RawValue>,
}

/// A rejected event (see [`RejectedEvent`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRejected {
    /// Dataset whose dead-letter table receives it.
    pub dataset: String,
    /// Event id.
    pub event_id: String,
    /// Envelope namespace.
    pub namespace: String,
    /// Envelope type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Event time (µs).
    pub event_time: Option<i64>,
    /// Received (µs).
    pub received_at: i64,
    /// Reason label.
    pub reason: String,
    /// Field at fault.
    pub field: Option<String>,
    /// Error message.
    pub error: String,
    /// The raw event text.
    pub raw: String,
}

/// The collector's answer to `POST /v1/rows` (see the module docs).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsAnswer {
    /// Items of the request now in the collector's write-ahead log: rows plus dead letters sent.
    pub accepted: u64,
    /// Rows stored as rows (informational; absent from older collectors).
    #[serde(default)]
    pub rows: u64,
    /// Dead letters stored (informational; absent from older collectors).
    #[serde(default)]
    pub dead_letters: u64,
    /// Rows the collector refused and stored in its dead-letter table instead.
    #[serde(default)]
    pub refused: Vec<WireRefused>,
}

/// One row the collector refused (and stored as a dead letter itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRefused {
    /// Index in the request's `batches`.
    pub batch: usize,
    /// Index in that batch's `rows`.
    pub row: usize,
    /// The row's `id`, to check the indexes point at the right row.
    pub id: String,
    /// Reason label, e.g. `invalid_value`.
    pub reason: String,
    /// The field at fault, if one.
    #[serde(default)]
    pub field: Option<String>,
    /// The full error message.
    pub error: String,
}

impl RowsRequest {
    /// A request carrying rows for one destination.
    pub fn rows(dest: &Destination, rows: &[EncodedRow]) -> Self {
        Self {
            batches: vec![WireBatch::from_rows(dest, rows)],
            rejected: Vec::new(),
        }
    }

    /// A request carrying dead letters.
    pub fn rejected(events: &[RejectedEvent]) -> Self {
        Self {
            batches: Vec::new(),
            rejected: events.iter().map(WireRejected::from).collect(),
        }
    }
}

impl WireBatch {
    /// From a destination and rows (rows whose JSON is not valid are left out; core never
    /// produces such rows).
    pub fn from_rows(dest: &Destination, rows: &[EncodedRow]) -> Self {
        Self {
            dataset: dest.dataset.to_string(),
            table: dest.table.to_string(),
            partitioned: dest.partitioning == PartitionKind::Partitioned,
            day: dest.day.to_string(),
            rows: rows
                .iter()
                .filter_map(|r| {
                    Some(WireRow {
                        id: r.insert_id.clone(),
                        json: RawValue::from_string(r.json.clone()).ok()?,
                    })
                })
                .collect(),
        }
    }

    /// The destination.
    pub fn destination(&self) -> Destination {
        Destination {
            dataset: self.dataset.as_str().into(),
            table: self.table.as_str().into(),
            partitioning: if self.partitioned {
                PartitionKind::Partitioned
            } else {
                PartitionKind::DayShard
            },
            day: self.day.as_str().into(),
        }
    }
}

impl From<&RejectedEvent> for WireRejected {
    fn from(e: &RejectedEvent) -> Self {
        Self {
            dataset: e.dataset.clone(),
            event_id: e.event_id.clone(),
            namespace: e.namespace.clone(),
            type_name: e.type_name.clone(),
            event_time: e.event_time,
            received_at: e.received_at,
            reason: e.reason.to_string(),
            field: e.field.clone(),
            error: e.error.clone(),
            raw: e.raw.clone(),
        }
    }
}

impl WireRejected {
    /// Back into a [`RejectedEvent`]; `reason` must be a static label (the caller interns it).
    pub fn into_rejected(self, reason: &'static str) -> RejectedEvent {
        RejectedEvent {
            dataset: self.dataset,
            event_id: self.event_id,
            namespace: self.namespace,
            type_name: self.type_name,
            event_time: self.event_time,
            received_at: self.received_at,
            reason,
            field: self.field,
            error: self.error,
            raw: self.raw,
        }
    }
}

/// The collector's answer to `POST /v1/batch` (see the module docs).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// Events stored (status 202).
    pub accepted: u64,
    /// Events refused (every other status).
    pub refused: u64,
    /// `results` lists the refused events only (the request asked `?results=refused`); absent
    /// (false) from collectors that list every event.
    #[serde(default)]
    pub only_refused: bool,
    /// One per event sent, in order; with `only_refused`, one per refused event, in order.
    pub results: Vec<BatchResult>,
}

/// One event's result in a [`BatchAnswer`]. The collector also sends the event's `id`; the
/// sink knows it already and does not read it (one allocation per event less).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// The event's line among those sent (from 0).
    pub index: usize,
    /// 202 stored; 422 kept as a dead letter; 400, 403, 413 refused and not kept.
    pub status: u16,
    /// Why it was refused.
    #[serde(default)]
    pub error: Option<String>,
    /// Reason label of a refusal.
    #[serde(default)]
    pub reason: Option<String>,
    /// The field at fault, if one.
    #[serde(default)]
    pub field: Option<String>,
}

/// Appends `raw` as one envelope line (see the module docs), newline included.
pub fn push_envelope(out: &mut String, raw: &RawEvent) {
    // Checked names (`crate::envelope`: letters, digits, `_`, `-`) need no escaping.
    out.push_str("{\"namespace\":\"");
    out.push_str(&raw.namespace);
    out.push_str("\",\"type\":\"");
    out.push_str(&raw.type_name);
    out.push_str("\",\"time\":\"");
    crate::time::push_timestamp(out, raw.time.unwrap_or(raw.received_at));
    out.push_str("\",\"id\":");
    raw.id.push_json(out);
    out.push_str(",\"event\":");
    let start = out.len();
    out.push_str(&raw.body);
    // `memchr` (SIMD): `contains` scanned a byte at a time, ~160 instructions per event.
    if memchr::memchr(b'\n', raw.body.as_bytes()).is_some() {
        // Rare (pretty-printed bodies): outside strings, a line feed is only whitespace.
        let tail = out.split_off(start).replace('\n', " ");
        out.push_str(&tail);
    }
    out.push_str("}\n");
}

/// `POST /v1/report`: one process's own counters, sent every `sink.forward.report_interval`
/// and once more at shutdown (`last`). The collector keeps the latest report of each process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Random per process (16 hex digits), new after a fork: tells processes apart.
    pub process: String,
    /// The process id, for people.
    pub pid: u32,
    /// `sink.forward.app`, or the program's name ([`valid_label`]).
    pub app: String,
    /// The host name ([`valid_label`]).
    pub host: String,
    /// Milliseconds until the next report: the collector forgets a process that stays silent
    /// for three of them.
    pub interval_ms: u64,
    /// The last report of the process (it is shutting down).
    #[serde(default)]
    pub last: bool,
    /// Its counters since it started.
    pub counters: ReportCounters,
}

/// The counters of a [`Report`] (those of `crate::counters::Stats` with the same names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportCounters {
    /// Events `log()` took.
    pub accepted: u64,
    /// Events the collector acknowledged.
    pub delivered: u64,
    /// Events dead-lettered, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Events lost, by reason (`queue_full`, `shutdown_deadline`, …).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Events written to the spool.
    pub spooled: u64,
    /// Events waiting in memory now.
    pub queue_events: u64,
    /// Of `dropped`, those lost before they had a destination (refused by `log()`, or queued
    /// at the shutdown deadline), by the table they were meant for (`namespace.type`, or
    /// `_invalid`, `_other_tables`) and reason: at most 64 tables. Left out when empty, so a
    /// process without such drops reports as before.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped_by_table:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

/// Most characters of a report's `app` and `host`, and of a reason.
pub const MAX_LABEL: usize = 64;

/// Whether `s` may be a report label: 1 to [`MAX_LABEL`] ASCII letters, digits, `.`, `_`, `-`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `s` made a valid label: other characters become `_`, cut at [`MAX_LABEL`]; `"unknown"` when
/// nothing is left.
pub fn to_label(s: &str) -> String {
    let l: String = s
        .chars()
        .take(MAX_LABEL)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if l.is_empty() {
        "unknown".into()
    } else {
        l
    }
}
