//! Validation and routing of one queued event: the work the flush thread (and the collector) does
//! per event, off the `log()` path.

use serde_json::Value;

use super::RawEvent;
use crate::config::Config;
use crate::routing::{Destination, Router};
use crate::schema::jref::{self, JRef};
use crate::schema::{RowMeta, SchemaRegistry};
use crate::sink::{EncodedRow, RejectedEvent};
use crate::time;

/// Rejection reasons decided before schema conversion.
pub mod reasons {
    /// The body is not valid JSON.
    pub const INVALID_JSON: &str = "invalid_json";
    /// The body is JSON but not an object.
    pub const NOT_AN_OBJECT: &str = "not_an_object";
    /// No schema file for the namespace/type.
    pub const UNKNOWN_TABLE: &str = "unknown_table";
}

/// Schemas plus routing: turns a [`RawEvent`] into a row for a destination, or a rejection.
#[derive(Debug)]
pub struct Processor {
    schemas: SchemaRegistry,
    router: Router,
}

impl Processor {
    /// From loaded schemas and the `[routing]` config.
    pub fn new(schemas: SchemaRegistry, config: &Config) -> Self {
        Self {
            schemas,
            router: Router::new(&config.routing),
        }
    }

    /// The schemas in use.
    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    /// The router in use.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Validates, converts and routes one event.
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
        match schema.to_row_ref(event, &meta) {
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
