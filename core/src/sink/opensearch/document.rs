//! Documents from rows.
//!
//! A row is BigQuery's form of the event, and most of it is already what OpenSearch indexes. Two
//! column types differ: BigQuery keeps a JSON column as the text of its value and a GEOGRAPHY as
//! WKT or GeoJSON text, while OpenSearch's `object`/`flat_object` and `geo_shape` take the value
//! itself. A table with such columns (at any depth, in RECORDs and REPEATED columns too) has a
//! [`DocShape`]: its rows are rewritten with those strings replaced by the JSON they hold (a
//! GEOGRAPHY in WKT stays a string, which `geo_shape` reads). With a data stream every document
//! also gets `@timestamp`, the row's `event_time`. Every other row is sent as it is, byte for
//! byte. Numbers are never re-parsed (members are copied as raw JSON text), so an INT64 or a
//! number inside a JSON value keeps every digit.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::schema::{Field, FieldType, EVENT_TIME};

/// What to rewrite in a member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rewrite {
    /// A JSON column: its string holds JSON text; the document gets that JSON.
    Json,
    /// A GEOGRAPHY column: GeoJSON text becomes the object, WKT stays a string.
    Geo,
    /// A RECORD with members to rewrite.
    Record(Vec<(String, Rewrite)>),
}

/// How a table's rows become documents; `None` from [`DocShape::new`] when they are sent as
/// they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocShape {
    members: Vec<(String, Rewrite)>,
    timestamp: bool,
}

impl DocShape {
    /// The shape of rows with `fields`; `timestamp` adds `@timestamp` (data streams).
    pub fn new(fields: &[Field], timestamp: bool) -> Option<Self> {
        let members = rewrites(fields);
        (timestamp || !members.is_empty()).then_some(Self { members, timestamp })
    }
}

fn rewrites(fields: &[Field]) -> Vec<(String, Rewrite)> {
    fields
        .iter()
        .filter_map(|f| {
            let r = match &f.ty {
                FieldType::Json => Rewrite::Json,
                FieldType::Geography => Rewrite::Geo,
                FieldType::Record(sub) => {
                    let inner = rewrites(sub);
                    if inner.is_empty() {
                        return None;
                    }
                    Rewrite::Record(inner)
                }
                _ => return None,
            };
            Some((f.name.clone(), r))
        })
        .collect()
}

/// Appends the document for `row` (a row's JSON object text) to `out`.
pub fn write(out: &mut Vec<u8>, row: &str, shape: Option<&DocShape>) {
    let Some(shape) = shape else {
        out.extend_from_slice(row.as_bytes());
        return;
    };
    let Ok(members) = members(row) else {
        // Rows are JSON objects (core wrote them); should one not be, OpenSearch judges it.
        out.extend_from_slice(row.as_bytes());
        return;
    };
    out.push(b'{');
    let mut first = true;
    if shape.timestamp {
        if let Some((_, t)) = members.iter().find(|(k, _)| k == EVENT_TIME) {
            out.extend_from_slice(b"\"@timestamp\":");
            out.extend_from_slice(t.get().as_bytes());
            first = false;
        }
    }
    for (key, value) in &members {
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(out, key);
        out.push(b':');
        match shape.members.iter().find(|(k, _)| k == key) {
            Some((_, r)) => write_value(out, value, r),
            None => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
}

/// A member's value, rewritten by `r`; arrays (REPEATED columns) element by element.
fn write_value(out: &mut Vec<u8>, value: &RawValue, r: &Rewrite) {
    let text = value.get();
    if text.starts_with('[') {
        if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, r);
            }
            out.push(b']');
            return;
        }
    }
    match r {
        Rewrite::Json | Rewrite::Geo => {
            let lifted = serde_json::from_str::<String>(text).ok().filter(|s| {
                (*r == Rewrite::Json || s.trim_start().starts_with('{'))
                    && serde_json::from_str::<&RawValue>(s).is_ok()
            });
            match lifted {
                Some(json) => out.extend_from_slice(json.as_bytes()),
                None => out.extend_from_slice(text.as_bytes()),
            }
        }
        Rewrite::Record(inner) => {
            let shape = DocShape {
                members: inner.clone(),
                timestamp: false,
            };
            write(out, text, Some(&shape));
        }
    }
}

/// The members of a JSON object, in order, values as raw text.
fn members(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
            while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = (&mut de).deserialize_map(Members)?;
    de.end()?;
    Ok(v)
}

/// Appends `s` as a JSON string.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
