//! Validation and routing of one queued event: the work the flush thread (and the collector) does
//! per event, off the `log()` path; and the check of a row converted elsewhere
//! ([`Processor::check_row`], the collector's `/v1/rows`).
//!
//! A row names its destination (dataset, table, partitioning, day), not its namespace and type,
//! so its schema is found by routing in reverse: the candidates are the loaded schemas whose
//! namespace/type the router sends to that dataset and base table (with no `[routing.tables]`
//! entry, namespace = dataset and type = table; an entry may send several types to one table).
//! The row is taken by the first candidate, in namespace/type order, whose schema it passes
//! ([`crate::schema::row_check`]) and whose routing gives its partitioning and, from its
//! `event_time`, its day; otherwise it is refused with the first candidate's reason.

use std::collections::HashMap;

use serde_json::Value;

use super::RawEvent;
use crate::config::Config;
use crate::counters::Counters;
use crate::destinations::{DestinationSet, Routes, DEFAULT_DESTINATION};
use crate::routing::{Destination, PartitionKind, Router};
use crate::schema::jref::{self, JRef};
use crate::schema::row_check::RowCheckError;
use crate::schema::{RowMeta, SchemaRegistry};
use crate::sink::{EncodedRow, RejectedEvent};
use crate::time;
use crate::transform::TransformSet;

/// Rejection reasons decided before schema conversion.
pub mod reasons {
    /// The body is not valid JSON.
    pub const INVALID_JSON: &str = "invalid_json";
    /// The body is JSON but not an object.
    pub const NOT_AN_OBJECT: &str = "not_an_object";
    /// No schema file for the namespace/type (for a row: no schema is routed to its table).
    pub const UNKNOWN_TABLE: &str = "unknown_table";
    /// A row's `day` is not the UTC day of its `event_time`, or its `partitioned` flag is not
    /// its table's routing.
    pub const WRONG_DESTINATION: &str = "wrong_destination";
}

/// A row [`Processor::check_row_of`] took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRow {
    /// The row's text as this process's converter writes it.
    pub json: String,
    /// The namespace of the schema it passed.
    pub namespace: String,
    /// The type of the schema it passed.
    pub type_name: String,
}

/// Schemas plus routing: turns a [`RawEvent`] into a row for a destination, or a rejection;
/// and says which named destinations (`[[routes]]`) receive it ([`Processor::route`]).
#[derive(Debug)]
pub struct Processor {
    schemas: SchemaRegistry,
    router: Router,
    routes: Routes,
    /// `[[transforms]]`, applied by [`Processor::process_for`] and [`Processor::transform_row`].
    transforms: TransformSet,
    /// dataset → base table → the namespace/type pairs with a schema routed there, sorted.
    by_table: HashMap<String, HashMap<String, Vec<(String, String)>>>,
}

impl Processor {
    /// From loaded schemas and the `[routing]`, `[destinations]` and `[[routes]]` config (a
    /// configuration that failed [`Config::validate`] for its routes gets every table to its
    /// first destination).
    pub fn new(schemas: SchemaRegistry, config: &Config) -> Self {
        let router = Router::new(&config.routing);
        let routes = Routes::new(config).unwrap_or_else(|_| {
            let names = config.destination_names();
            Routes::single(names.first().map_or(DEFAULT_DESTINATION, String::as_str))
        });
        let mut by_table: HashMap<String, HashMap<String, Vec<(String, String)>>> = HashMap::new();
        for s in schemas.iter() {
            // The day does not matter here: only dataset and table are compared.
            let d = router.route(s.namespace(), s.type_name(), 0);
            by_table
                .entry(d.dataset.to_string())
                .or_default()
                .entry(d.table.to_string())
                .or_default()
                .push((s.namespace().to_owned(), s.type_name().to_owned()));
        }
        for v in by_table.values_mut().flat_map(HashMap::values_mut) {
            v.sort();
        }
        // Checked by `Config::validate` (which every caller runs first), as the routes are.
        let transforms = TransformSet::from_config(&config.transforms).unwrap_or_default();
        Self {
            schemas,
            router,
            routes,
            transforms,
            by_table,
        }
    }

    /// The destinations' routes in use.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Which destinations receive `raw` (see [`crate::destinations`]): none means no route
    /// takes it (the caller counts it dropped, `unrouted`). Parses the body only when a route
    /// of its table has a `where`, and makes the id's text only when some route samples.
    pub fn route(&self, raw: &RawEvent) -> DestinationSet {
        let id = if self.routes.samples() {
            raw.id.to_text()
        } else {
            String::new()
        };
        self.routes
            .select(&raw.namespace, &raw.type_name, &id, &raw.body)
    }

    /// The schemas in use.
    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    /// The router in use.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The `[[transforms]]` in use.
    pub fn transforms(&self) -> &TransformSet {
        &self.transforms
    }

    /// Applies the `[[transforms]]` of the copy bound for `destination` (`None`: entries for
    /// every copy only), then validates, converts and routes it. The rules run on the event
    /// before its schema is checked, so a rule that breaks a column (drops a REQUIRED field,
    /// hashes an INT64) gets the copy rejected with the schema's reason, and the dead letter
    /// holds the transformed event (what that destination may see). Places a rule could not
    /// apply are counted in `counters` (`evlog_transform_skipped_total`).
    ///
    /// An event a rule applies to is parsed into a map and written again: its unknown fields
    /// come back in key order, not as sent. Events of tables no entry names are untouched.
    pub fn process_for(
        &self,
        raw: &RawEvent,
        destination: Option<&str>,
        counters: &Counters,
    ) -> Result<(Destination, EncodedRow), Box<RejectedEvent>> {
        match self.transformed(
            &raw.namespace,
            &raw.type_name,
            destination,
            &raw.body,
            counters,
        ) {
            None => self.process(raw),
            Some(body) => self.process(&RawEvent {
                namespace: raw.namespace.clone(),
                type_name: raw.type_name.clone(),
                time: raw.time,
                received_at: raw.received_at,
                id: raw.id.clone(),
                body,
            }),
        }
    }

    /// A row's text after the `[[transforms]]` of the copy bound for `destination`, or `None`
    /// when no entry applies (or the text is not a row of a known table: the row check refuses
    /// it). For rows converted elsewhere (the collector's `/v1/rows`), so that one rule set acts
    /// alike on events and on rows an SDK forwarded: the rules see the row's columns and, beside
    /// them, the fields kept in `other` (as in the event); afterwards every field no column
    /// names goes back into `other`. The caller checks the result again (a rule may break a
    /// column).
    pub fn transform_row(
        &self,
        namespace: &str,
        type_name: &str,
        destination: Option<&str>,
        row: &str,
        counters: &Counters,
    ) -> Option<String> {
        if !self.transforms.applies(namespace, type_name, destination) {
            return None;
        }
        let schema = self.schemas.get(namespace, type_name)?;
        let is_column = |k: &str| schema.fields().iter().any(|f| f.name == k);
        let Ok(Value::Object(mut row)) = serde_json::from_str::<Value>(row) else {
            return None;
        };
        // Lift the unknown fields beside the columns; what shares a column's name (a RECORD
        // column's leftovers) stays in `other`.
        let mut other = match row.remove(crate::schema::OTHER) {
            Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                _ => return None,
            },
            _ => serde_json::Map::new(),
        };
        let lifted: Vec<String> = other.keys().filter(|k| !is_column(k)).cloned().collect();
        for k in lifted {
            if let Some(v) = other.remove(&k) {
                row.insert(k, v);
            }
        }
        let applied = self
            .transforms
            .apply(namespace, type_name, destination, &mut row);
        counters.transform_skips(&applied);
        let unknown: Vec<String> = row.keys().filter(|k| !is_column(k)).cloned().collect();
        for k in unknown {
            if let Some(v) = row.remove(&k) {
                other.insert(k, v);
            }
        }
        let other = if other.is_empty() {
            Value::Null
        } else {
            Value::String(Value::Object(other).to_string())
        };
        row.insert(crate::schema::OTHER.to_owned(), other);
        Some(Value::Object(row).to_string())
    }

    fn transformed(
        &self,
        namespace: &str,
        type_name: &str,
        destination: Option<&str>,
        text: &str,
        counters: &Counters,
    ) -> Option<String> {
        if !self.transforms.applies(namespace, type_name, destination) {
            return None;
        }
        // Not an object (or not JSON): left as it is, for the conversion to refuse with its reason.
        let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let applied = self
            .transforms
            .apply(namespace, type_name, destination, &mut event);
        counters.transform_skips(&applied);
        Some(Value::Object(event).to_string())
    }

    /// Validates, converts and routes one event as it is (no `[[transforms]]`: see
    /// [`Processor::process_for`]).
    pub fn process(&self, raw: &RawEvent) -> Result<(Destination, EncodedRow), Box<RejectedEvent>> {
        let id = raw.id.to_text();
        let event_time = raw.time.unwrap_or(raw.received_at);
        // Parsed borrowing from the body: no allocation per key, string or number, and the
        // text of unknown fields kept as sent (see `schema::jref`).
        let event = match jref::parse(&raw.body) {
            Ok(JRef::Object(m)) => m,
            Ok(_) => {
                return Err(self.reject(
                    raw,
                    id,
                    reasons::NOT_AN_OBJECT,
                    None,
                    "event: must be a JSON object".into(),
                ))
            }
            Err(e) => {
                return Err(self.reject(
                    raw,
                    id,
                    reasons::INVALID_JSON,
                    None,
                    format!("event: invalid JSON: {e}"),
                ))
            }
        };
        let Some(schema) = self.schemas.get(&raw.namespace, &raw.type_name) else {
            let msg = format!(
                "no schema for table {}.{} (expected schema file {}/{}.json)",
                raw.namespace, raw.type_name, raw.namespace, raw.type_name
            );
            return Err(self.reject(raw, id, reasons::UNKNOWN_TABLE, None, msg));
        };
        let meta = RowMeta {
            event_id: id,
            event_time,
            received_at: raw.received_at,
        };
        match schema.to_row_ref(event, &meta, raw.body.len()) {
            Ok(row) => Ok((
                self.router
                    .route(&raw.namespace, &raw.type_name, event_time),
                EncodedRow {
                    insert_id: meta.event_id,
                    json: row.json,
                },
            )),
            Err(e) => Err(self.reject(
                raw,
                meta.event_id,
                e.reason.as_str(),
                Some(e.field.clone()),
                e.to_string(),
            )),
        }
    }

    /// The dead letter for `raw` when a destination refused it without keeping it (a collector
    /// answering 400, 403 or 413 to one event of `/v1/batch`): `reason`, `field` and `error`
    /// are the destination's; `raw` is the envelope, as for a rejection here.
    pub fn refused(
        &self,
        raw: &RawEvent,
        reason: &'static str,
        field: Option<String>,
        error: String,
    ) -> Box<RejectedEvent> {
        self.reject(raw, raw.id.to_text(), reason, field, error)
    }

    /// Checks a row converted elsewhere, for `dataset`.`table` (`partitioned` or day-sharded,
    /// `day` as `YYYYMMDD`) with insert id `id` (see the module docs). Returns the row's text as
    /// this process's converter writes it (for a row core wrote, the same text), or the
    /// rejection to keep in the dead-letter table, whose `raw` is the row.
    pub fn check_row(
        &self,
        dataset: &str,
        table: &str,
        partitioned: bool,
        day: &str,
        id: &str,
        row: &str,
    ) -> Result<String, Box<RejectedEvent>> {
        self.check_row_of(dataset, table, partitioned, day, id, row)
            .map(|c| c.json)
    }

    /// [`Processor::check_row`], saying also which namespace and type the row was taken as
    /// (what `[[routes]]` match).
    pub fn check_row_of(
        &self,
        dataset: &str,
        table: &str,
        partitioned: bool,
        day: &str,
        id: &str,
        row: &str,
    ) -> Result<CheckedRow, Box<RejectedEvent>> {
        let reject = |ns: &str, ty: &str, e: RowCheckError| {
            Box::new(RejectedEvent {
                dataset: dataset.to_owned(),
                event_id: id.to_owned(),
                namespace: ns.to_owned(),
                type_name: ty.to_owned(),
                event_time: e.event_time,
                received_at: e.received_at.unwrap_or_else(crate::clock::now_micros),
                reason: e.reason,
                field: e.field,
                error: e.message,
                raw: row.to_owned(),
            })
        };
        let Some(candidates) = self.by_table.get(dataset).and_then(|t| t.get(table)) else {
            return Err(reject(
                dataset,
                table,
                RowCheckError {
                    reason: reasons::UNKNOWN_TABLE,
                    field: None,
                    message: format!(
                        "no schema is routed to table {dataset}.{table} (a row's table must be \
                         where [routing] sends a namespace/type that has a schema file)"
                    ),
                    event_time: None,
                    received_at: None,
                },
            ));
        };
        let mut first = None;
        for (ns, ty) in candidates {
            let Some(schema) = self.schemas.get(ns, ty) else {
                continue;
            };
            let e = match schema.check_row(id, row) {
                Ok(c) => {
                    let dest = self.router.route(ns, ty, c.event_time);
                    let wrong = |field: &str, message: String| RowCheckError {
                        reason: reasons::WRONG_DESTINATION,
                        field: Some(field.to_owned()),
                        message,
                        event_time: Some(c.event_time),
                        received_at: Some(c.received_at),
                    };
                    let routed = dest.partitioning == PartitionKind::Partitioned;
                    if routed != partitioned {
                        wrong(
                            "partitioned",
                            format!(
                                "partitioned is {partitioned}, but {ns}.{ty} is routed to a {} \
                                 table",
                                if routed { "partitioned" } else { "day-sharded" }
                            ),
                        )
                    } else if dest.day != day {
                        wrong(
                            "day",
                            format!(
                                "day {day:?} is not the UTC day of event_time {} ({})",
                                crate::time::format_timestamp(c.event_time),
                                dest.day
                            ),
                        )
                    } else {
                        return Ok(CheckedRow {
                            json: c.json,
                            namespace: ns.clone(),
                            type_name: ty.clone(),
                        });
                    }
                }
                Err(e) => e,
            };
            first.get_or_insert((ns, ty, e));
        }
        Err(match first {
            Some((ns, ty, e)) => reject(ns, ty, e),
            None => reject(
                dataset,
                table,
                RowCheckError {
                    reason: reasons::UNKNOWN_TABLE,
                    field: None,
                    message: format!("no schema for table {dataset}.{table}"),
                    event_time: None,
                    received_at: None,
                },
            ),
        })
    }

    fn reject(
        &self,
        raw: &RawEvent,
        event_id: String,
        reason: &'static str,
        field: Option<String>,
        error: String,
    ) -> Box<RejectedEvent> {
        Box::new(RejectedEvent {
            dataset: self
                .router
                .dataset(&raw.namespace, &raw.type_name)
                .to_string(),
            raw: envelope_text(raw, &event_id),
            event_id,
            namespace: raw.namespace.to_string(),
            type_name: raw.type_name.to_string(),
            event_time: Some(raw.time.unwrap_or(raw.received_at)),
            received_at: raw.received_at,
            reason,
            field,
            error,
        })
    }
}

/// The envelope as JSON text, with the body spliced in verbatim (it may not even be valid JSON).
fn envelope_text(raw: &RawEvent, id: &str) -> String {
    let mut out = String::with_capacity(raw.body.len() + 128);
    out.push_str("{\"namespace\":");
    out.push_str(&Value::from(raw.namespace.as_str()).to_string());
    out.push_str(",\"type\":");
    out.push_str(&Value::from(raw.type_name.as_str()).to_string());
    if let Some(t) = raw.time {
        out.push_str(",\"time\":\"");
        out.push_str(&time::format_timestamp(t));
        out.push('"');
    }
    out.push_str(",\"id\":");
    out.push_str(&Value::from(id).to_string());
    out.push_str(",\"event\":");
    out.push_str(&raw.body);
    out.push('}');
    out
}
