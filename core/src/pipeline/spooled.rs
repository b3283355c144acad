//! What the pipeline writes to the spool: each record's payload (the spool frames it, see
//! `crate::spool`) is one JSON document of one of three kinds:
//!
//! - `{"rows":{"dataset":…,"table":…,"partitioned":bool,"day":"YYYYMMDD","writer":<u64>,
//!   "rows":[{"id":…,"json":<row object>}]}}` — validated rows for one destination that did
//!   not reach the sink (it failed them, the breaker was open, or the shutdown deadline passed);
//! - `{"raw":{"writer":<u64>,"events":[{"namespace","type","time","received_at","id","body"}]}}`
//!   — events not yet validated (queue overflow with `queue.overflow = "spool"`, and what was
//!   still queued at the shutdown deadline); `time` is null when the caller gave none, `id` is
//!   the event id as text (generated ones formatted), `body` the event's JSON text as a string;
//! - `{"dead_letters":{"writer":<u64>,"events":[{"dataset","event_id","namespace","type",
//!   "event_time","received_at","reason","field","error","raw"}]}}` — rejected events whose
//!   dead-letter table could not be written (each event as in the forward wire format's
//!   `rejected`).
//!
//! Times are µs since the epoch. (Externally tagged on purpose: serde buffers internally tagged
//! enums, and a buffered `RawValue` cannot be read back.)
//!
//! `writer` is not a process id: it is a random 64-bit number the flush thread draws when it
//! starts (`ids::random_u64`), so one per pipeline and process (a forked child's thread draws
//! its own). It tells whoever replays a record whether it accepted those events itself: another
//! flush thread's events (an earlier or another process's, or another pipeline's sharing the
//! directory) are counted accepted by the thread that replays them, so its counters keep
//! `accepted = delivered + rejected + dropped + in_flight`; its own were counted when logged.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ingest::{EventId, RawEvent};
use crate::routing::{Destination, PartitionKind};
use crate::sink::forward::wire::WireRejected;
use crate::sink::{intern_reason, Batch, EncodedRow, RejectedEvent};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    Rows {
        dataset: String,
        table: String,
        partitioned: bool,
        day: String,
        writer: u64,
        rows: Vec<Row>,
    },
    Raw {
        writer: u64,
        events: Vec<Raw>,
    },
    DeadLetters {
        writer: u64,
        events: Vec<WireRejected>,
    },
}

/// What a record holds, back in the pipeline's types.
pub(crate) enum Parts {
    /// Validated rows for one destination.
    Rows(Batch),
    /// Events to validate.
    Raw(Vec<RawEvent>),
    /// Rejected events for their dead-letter tables.
    DeadLetters(Vec<RejectedEvent>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Row {
    id: String,
    json: Box<RawValue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Raw {
    namespace: String,
    #[serde(rename = "type")]
    type_name: String,
    time: Option<i64>,
    received_at: i64,
    id: String,
    body: String,
}

impl Record {
    pub(crate) fn from_batch(batch: &Batch, writer: u64) -> Self {
        let d = &batch.destination;
        Record::Rows {
            dataset: d.dataset.to_string(),
            table: d.table.to_string(),
            partitioned: d.partitioning == PartitionKind::Partitioned,
            day: d.day.to_string(),
            writer,
            rows: batch
                .rows
                .iter()
                .filter_map(|r| {
                    Some(Row {
                        id: r.insert_id.clone(),
                        json: RawValue::from_string(r.json.clone()).ok()?,
                    })
                })
                .collect(),
        }
    }

    pub(crate) fn from_raw(events: &[RawEvent], writer: u64) -> Self {
        Record::Raw {
            writer,
            events: events
                .iter()
                .map(|e| Raw {
                    namespace: e.namespace.to_string(),
                    type_name: e.type_name.to_string(),
                    time: e.time,
                    received_at: e.received_at,
                    id: e.id.to_text(),
                    body: e.body.clone(),
                })
                .collect(),
        }
    }

    pub(crate) fn from_rejected(events: &[RejectedEvent], writer: u64) -> Self {
        Record::DeadLetters {
            writer,
            events: events.iter().map(WireRejected::from).collect(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether another writer accepted these events.
    pub(crate) fn foreign(&self, me: u64) -> bool {
        let (Record::Rows { writer, .. }
        | Record::Raw { writer, .. }
        | Record::DeadLetters { writer, .. }) = self;
        *writer != me
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Record::Rows { rows, .. } => rows.len(),
            Record::Raw { events, .. } => events.len(),
            Record::DeadLetters { events, .. } => events.len(),
        }
    }

    /// Whether it holds dead letters.
    pub(crate) fn is_dead_letters(&self) -> bool {
        matches!(self, Record::DeadLetters { .. })
    }

    /// Back into a batch, raw events or dead letters.
    pub(crate) fn into_parts(self) -> Parts {
        match self {
            Record::Rows {
                dataset,
                table,
                partitioned,
                day,
                rows,
                ..
            } => {
                let rows: Vec<EncodedRow> = rows
                    .into_iter()
                    .map(|r| EncodedRow {
                        insert_id: r.id,
                        json: r.json.get().to_string(),
                    })
                    .collect();
                Parts::Rows(Batch {
                    destination: Destination::from_parts(&dataset, &table, partitioned, &day),
                    bytes: rows.iter().map(|r| r.json.len()).sum(),
                    rows,
                })
            }
            Record::DeadLetters { events, .. } => Parts::DeadLetters(
                events
                    .into_iter()
                    .map(|e| {
                        let reason = intern_reason(&e.reason);
                        e.into_rejected(reason)
                    })
                    .collect(),
            ),
            Record::Raw { events, .. } => Parts::Raw(
                events
                    .into_iter()
                    .map(|e| RawEvent {
                        namespace: CompactString::from(e.namespace),
                        type_name: CompactString::from(e.type_name),
                        time: e.time,
                        received_at: e.received_at,
                        id: EventId::Given(e.id.into()),
                        body: e.body,
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let batch = Batch {
            destination: Destination {
                dataset: "events".into(),
                table: "t".into(),
                partitioning: PartitionKind::Partitioned,
                day: "20261122".into(),
            },
            rows: vec![EncodedRow {
                insert_id: "id-1".into(),
                json: r#"{"a":"x\"y","b":[1,2]}"#.into(),
            }],
            bytes: 20,
        };
        let rec = Record::decode(&Record::from_batch(&batch, 9).encode()).expect("decodes");
        assert!(!rec.foreign(9) && rec.foreign(8));
        let Parts::Rows(back) = rec.into_parts() else {
            panic!("rows expected")
        };
        assert_eq!(back.destination, batch.destination);
        assert_eq!(back.rows, batch.rows);

        let raw = RawEvent {
            namespace: "events".into(),
            type_name: "t".into(),
            time: Some(5),
            received_at: 6,
            id: EventId::Generated(7),
            body: r#"{"k":1}"#.into(),
        };
        let rec = Record::decode(&Record::from_raw(std::slice::from_ref(&raw), 9).encode())
            .expect("decodes");
        assert_eq!(rec.len(), 1);
        let Parts::Raw(back) = rec.into_parts() else {
            panic!("raw events expected")
        };
        assert_eq!(back[0].body, raw.body);
        assert_eq!(back[0].id.to_text(), raw.id.to_text());
        assert_eq!((back[0].time, back[0].received_at), (Some(5), 6));

        let dead = RejectedEvent {
            dataset: "events".into(),
            event_id: "id-3".into(),
            namespace: "events".into(),
            type_name: "order".into(),
            event_time: None,
            received_at: 8,
            reason: "missing_required",
            field: Some("code".into()),
            error: "field code: REQUIRED".into(),
            raw: r#"{"n":1}"#.into(),
        };
        let rec = Record::decode(&Record::from_rejected(std::slice::from_ref(&dead), 9).encode())
            .expect("decodes");
        assert!(rec.is_dead_letters() && !rec.foreign(9) && rec.len() == 1);
        let Parts::DeadLetters(back) = rec.into_parts() else {
            panic!("dead letters expected")
        };
        assert_eq!(back, vec![dead]);
    }

    #[test]
    fn records_as_written_on_disk_decode() {
        // The on-disk format: these bytes must keep decoding (a change here is a format change).
        let rows = br#"{"rows":{"dataset":"events","table":"t","partitioned":false,"day":"20261122","writer":4,"rows":[{"id":"a","json":{"x":1}}]}}"#;
        let raw = br#"{"raw":{"writer":4,"events":[{"namespace":"events","type":"t","time":null,"received_at":1,"id":"b","body":"{}"}]}}"#;
        assert!(matches!(
            Record::decode(rows).map(Record::into_parts),
            Some(Parts::Rows(_))
        ));
        assert!(matches!(
            Record::decode(raw).map(Record::into_parts),
            Some(Parts::Raw(_))
        ));
    }
}
