//! Index templates generated from the schema files (`PUT _index_template/<name>`).
//!
//! One template per table (its indices: the `index` pattern with the table's namespace and type
//! and `*` for the date), one for the dead-letter indices. Mapping of BigQuery types:
//!
//! | BigQuery | OpenSearch |
//! |---|---|
//! | STRING | `keyword` with `ignore_above: 8191` (longer values are kept in `_source`, not indexed: Lucene refuses terms over 32766 bytes) |
//! | BYTES | `binary` |
//! | INT64 | `long` |
//! | FLOAT64 | `double` |
//! | NUMERIC, BIGNUMERIC with a declared precision ≤ 15 | `scaled_float`, `scaling_factor` 10^scale (exact: 15 digits survive a double) |
//! | other NUMERIC, BIGNUMERIC | `keyword` (the canonical decimal text, exact) |
//! | BOOL | `boolean` |
//! | TIMESTAMP, DATE, DATETIME | `date` (milliseconds in the index; `_source` keeps the microseconds) |
//! | TIME | `keyword` |
//! | JSON | `object`, `flat_object` or `flattened` (`json_mapping`); the sink sends the JSON value, not its text |
//! | GEOGRAPHY | `geo_shape` (WKT as sent; GeoJSON sent as an object) |
//! | RECORD | `object` with `properties` |
//! | REPEATED | the element's mapping (every OpenSearch field takes arrays) |
//!
//! Reserved columns: `event_id` `keyword`, `event_time` and `received_at` `date`, `other` (the
//! JSON text of fields no column names) `text`; with a data stream, `@timestamp` `date`. The
//! dead-letter template maps the dead-letter row ([`DEAD_LETTER_SCHEMA`]) the same way, with
//! `error` and `raw` as `text`.
//!
//! Priorities: templates are ordered from the least to the most specific pattern (characters
//! other than `*`) and get `template_priority`, `template_priority + 1`, …, so that two of
//! evlog's patterns that overlap (`*-_evlog_rejected` and `events-page_view-*` both match
//! `events-page_view-x-_evlog_rejected`) never tie, which OpenSearch refuses.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::config::{JsonMapping, OpenSearchConfig};
use super::index::{IndexPattern, Values, ALL};
use crate::routing::Router;
use crate::schema::{Field, FieldType, SchemaRegistry, TableSchema, EVENT_ID, OTHER};
use crate::sink::DEAD_LETTER_SCHEMA;

/// The tables the sink writes: (dataset, table) → their columns, reserved ones included.
pub type Catalog = HashMap<(String, String), Arc<Vec<Field>>>;

/// The catalog of the schemas and routing in use (keyed like [`crate::routing::Destination`]).
pub fn catalog(schemas: &SchemaRegistry, router: &Router) -> Catalog {
    schemas
        .iter()
        .map(|s| {
            let d = router.route(s.namespace(), s.type_name(), 0);
            (
                (d.dataset.to_string(), d.table.to_string()),
                Arc::new(s.fields().to_vec()),
            )
        })
        .collect()
}

/// Longest STRING indexed as a keyword, in characters: 8191 UTF-8 characters stay under Lucene's
/// 32766-byte term limit.
pub const KEYWORD_IGNORE_ABOVE: u32 = 8191;

/// A template: its name and the body of `PUT _index_template/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Template name.
    pub name: String,
    /// The request body.
    pub body: Value,
}

/// The `mappings` of a table with `fields`.
pub fn mappings(fields: &[Field], json_mapping: JsonMapping, data_stream: bool) -> Value {
    let mut props = Map::new();
    for f in fields {
        let m = match f.name.as_str() {
            n if n.eq_ignore_ascii_case(EVENT_ID) => json!({"type": "keyword"}),
            n if n.eq_ignore_ascii_case(OTHER) => json!({"type": "text"}),
            _ => field_mapping(f, json_mapping),
        };
        props.insert(f.name.clone(), m);
    }
    if data_stream {
        props.insert("@timestamp".into(), json!({"type": "date"}));
    }
    json!({"properties": props})
}

/// One column's mapping (see the module docs).
pub fn field_mapping(f: &Field, json_mapping: JsonMapping) -> Value {
    match &f.ty {
        FieldType::String => json!({"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}),
        FieldType::Bytes => json!({"type": "binary"}),
        FieldType::Int64 => json!({"type": "long"}),
        FieldType::Float64 => json!({"type": "double"}),
        FieldType::Numeric | FieldType::BigNumeric => match f.precision {
            Some(p) if p <= 15 => json!({
                "type": "scaled_float",
                "scaling_factor": 10f64.powi(f.scale.unwrap_or(0) as i32),
            }),
            _ => json!({"type": "keyword"}),
        },
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Timestamp | FieldType::Date | FieldType::DateTime => json!({"type": "date"}),
        FieldType::Time => json!({"type": "keyword"}),
        FieldType::Json => json!({"type": json_mapping.type_name()}),
        FieldType::Geography => json!({"type": "geo_shape"}),
        FieldType::Record(sub) => {
            let props: Map<String, Value> = sub
                .iter()
                .map(|s| (s.name.clone(), field_mapping(s, json_mapping)))
                .collect();
            json!({"type": "object", "properties": props})
        }
    }
}

/// The dead-letter row's mappings.
pub fn dead_letter_mappings() -> Value {
    let fields = TableSchema::from_json_str("evlog", "_evlog_rejected", DEAD_LETTER_SCHEMA, "")
        .map(|s| {
            s.fields()
                .iter()
                .filter(|f| DEAD_LETTER_COLUMNS.contains(&f.name.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut props = Map::new();
    for f in &fields {
        let m = match f.name.as_str() {
            "error" | "raw" => json!({"type": "text"}),
            _ => field_mapping(f, JsonMapping::Object),
        };
        props.insert(f.name.clone(), m);
    }
    json!({"properties": props})
}

/// The dead-letter row's columns (the schema parser appends evlog's reserved columns, which the
/// dead-letter row does not have).
const DEAD_LETTER_COLUMNS: [&str; 10] = [
    "event_id",
    "namespace",
    "type",
    "event_time",
    "received_at",
    "rejected_at",
    "reason",
    "field",
    "error",
    "raw",
];

/// Every template to install for `catalog`, priorities assigned (see the module docs), in a
/// stable order.
pub fn templates(cfg: &OpenSearchConfig, catalog: &Catalog) -> Vec<Template> {
    let (Ok(index), Ok(dead)) = (
        IndexPattern::parse(&cfg.index, &ALL),
        IndexPattern::parse(&cfg.dead_letter_index, &ALL),
    ) else {
        return Vec::new(); // validate() refuses such configs first
    };
    let mut out: Vec<(String, String, Value, bool)> = catalog
        .iter()
        .map(|((dataset, table), fields)| {
            let pattern = index.render(Values {
                namespace: Some(dataset),
                type_name: Some(table),
                day: None,
            });
            let name = format!("{}-{dataset}-{table}", cfg.template_prefix).to_lowercase();
            (
                name,
                pattern,
                mappings(fields, cfg.json_mapping, cfg.data_stream),
                cfg.data_stream,
            )
        })
        .collect();
    out.push((
        format!("{}-dead-letters", cfg.template_prefix),
        dead.template_pattern(),
        dead_letter_mappings(),
        false,
    ));
    out.sort_by(|a, b| {
        IndexPattern::specificity(&a.1)
            .cmp(&IndexPattern::specificity(&b.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    out.into_iter()
        .enumerate()
        .map(|(i, (name, pattern, mappings, data_stream))| {
            let mut body = json!({
                "index_patterns": [pattern],
                "priority": u64::from(cfg.template_priority) + i as u64,
                "template": {"mappings": mappings},
                "_meta": {"managed_by": "evlog"},
            });
            if !cfg.composed_of.is_empty() {
                body["composed_of"] = json!(cfg.composed_of);
            }
            if data_stream {
                body["data_stream"] = json!({});
            }
            Template { name, body }
        })
        .collect()
}
