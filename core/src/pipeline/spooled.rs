//! What the pipeline writes to the spool: one JSON document per record.
//!
//! - `{"rows":{"dataset":…,"table":…,"partitioned":bool,"day":"YYYYMMDD","writer":pid,
//!   "rows":[{"id":…,"json":<row>}]}}` — validated rows whose delivery failed;
//! - `{"raw":{"writer":pid,"events":[{"namespace","type","time","received_at","id","body"}]}}` —
//!   events not yet validated (left in the queue at the shutdown deadline).
//!
//! (Externally tagged on purpose: serde buffers internally tagged enums, and a buffered
//! `RawValue` cannot be read back.)
//!
//! `writer` identifies the flush thread (one per pipeline and process, random) that accepted the
//! events: whoever replays another writer's records counts them as accepted by itself, so its
//! counters keep `accepted = delivered + rejected + dropped + in_flight`.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{EventId, RawEvent};
use crate::routing::{Destination, PartitionKind};
use crate::sink::{Batch, EncodedRow};

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

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether another writer accepted these events.
    pub(crate) fn foreign(&self, me: u64) -> bool {
        let (Record::Rows { writer, .. } | Record::Raw { writer, .. }) = self;
        *writer != me
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Record::Rows { rows, .. } => rows.len(),
            Record::Raw { events, .. } => events.len(),
        }
    }

    /// Back into a batch or raw events.
    pub(crate) fn into_parts(self) -> Result<Batch, Vec<RawEvent>> {
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
                Ok(Batch {
                    destination: Destination::from_parts(&dataset, &table, partitioned, &day),
                    bytes: rows.iter().map(|r| r.json.len()).sum(),
                    rows,
                })
            }
            Record::Raw { events, .. } => Err(events
                .into_iter()
                .map(|e| RawEvent {
                    namespace: CompactString::from(e.namespace),
                    type_name: CompactString::from(e.type_name),
                    time: e.time,
                    received_at: e.received_at,
                    id: EventId::Given(e.id.into()),
                    body: e.body,
                })
                .collect()),
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
        let back = rec.into_parts().expect("rows");
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
        let back = rec.into_parts().expect_err("raw events");
        assert_eq!(back[0].body, raw.body);
        assert_eq!(back[0].id.to_text(), raw.id.to_text());
        assert_eq!((back[0].time, back[0].received_at), (Some(5), 6));
    }
}
