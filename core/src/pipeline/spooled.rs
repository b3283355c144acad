//! What the pipeline writes to the spool: one JSON document per record.
//!
//! - `{"k":"rows","dataset":…,"table":…,"partitioned":bool,"day":"YYYYMMDD","writer":pid,
//!   "rows":[{"id":…,"json":<row>}]}` — validated rows whose delivery failed;
//! - `{"k":"raw","writer":pid,"events":[{"namespace","type","time","received_at","id","body"}]}` —
//!   events not yet validated (left in the queue at the shutdown deadline).
//!
//! `writer` is the process id that accepted the events: a process replaying another's records
//! counts them as accepted by itself, so its counters keep `accepted = delivered + rejected +
//! dropped + in_flight`.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{EventId, RawEvent};
use crate::routing::{Destination, PartitionKind};
use crate::sink::{Batch, EncodedRow};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Record {
    Rows {
        dataset: String,
        table: String,
        partitioned: bool,
        day: String,
        writer: u32,
        rows: Vec<Row>,
    },
    Raw {
        writer: u32,
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
    pub(crate) fn from_batch(batch: &Batch) -> Self {
        let d = &batch.destination;
        Record::Rows {
            dataset: d.dataset.to_string(),
            table: d.table.to_string(),
            partitioned: d.partitioning == PartitionKind::Partitioned,
            day: d.day.to_string(),
            writer: std::process::id(),
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

    pub(crate) fn from_raw(events: &[RawEvent]) -> Self {
        Record::Raw {
            writer: std::process::id(),
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

    /// Whether another process accepted these events.
    pub(crate) fn foreign(&self) -> bool {
        let (Record::Rows { writer, .. } | Record::Raw { writer, .. }) = self;
        *writer != std::process::id()
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
                    destination: Destination {
                        dataset: dataset.into(),
                        table: table.into(),
                        partitioning: if partitioned {
                            PartitionKind::Partitioned
                        } else {
                            PartitionKind::DayShard
                        },
                        day: day.into(),
                    },
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
