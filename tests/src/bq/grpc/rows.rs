//! Rows of `AppendRows`: the writer's protobuf descriptor checked against the table schema by
//! BigQuery's proto→column type rules, and each serialized row decoded into the JSON form
//! `insertAll` stores (so `tabledata.list` and the value checks of [`schema::check_row`] apply to
//! both APIs alike).
//!
//! Type rules (a subset of BigQuery's, kept strict): INT64 ← any integer kind or enum; FLOAT64 ←
//! double/float; BOOL ← bool; STRING ← string; BYTES ← bytes; DATE ← int32/int64 (days since the
//! epoch) or string; TIMESTAMP ← int64 (µs since the epoch) or string; NUMERIC/BIGNUMERIC ←
//! string, integer or double/float; DATETIME/TIME/JSON/GEOGRAPHY/INTERVAL ← string; RECORD ←
//! nested message; REPEATED ← repeated field. A proto field with no column, or of a kind its column
//! does not take, fails the whole request and ends the connection (as BigQuery does) with a
//! message naming the field. Field
//! presence: a field not set (proto2 / proto3 `optional`; for proto3 implicit fields, the zero
//! value) is NULL.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value as PValue};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Number, Value};

use crate::bq::schema::{self, civil_from_days, ColMode, ColType, Column};

/// The name the writer's message gets in the one-file pool built around it.
const ROW_FILE: &str = "evlog_bq_test_server_row.proto";

/// Builds a message descriptor from the writer's `proto_descriptor`. The descriptor must be
/// self-contained (nested types inside it); references to them may be fully qualified with the
/// writer's own package (`.pkg.Row.Inner`), as `CopyToProto` writes them, or relative.
pub fn message_from_descriptor(d: &DescriptorProto) -> Result<MessageDescriptor, String> {
    let mut d = d.clone();
    let name = d.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err("writer_schema.proto_descriptor has no name".into());
    }
    let mut known = Vec::new();
    collect_names(&d, "", &mut known);
    requalify(&mut d, &known);
    let file = FileDescriptorProto {
        name: Some(ROW_FILE.into()),
        message_type: vec![d],
        syntax: Some("proto2".into()),
        ..Default::default()
    };
    let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
        .map_err(|e| format!("Invalid proto schema: {e}"))?;
    pool.get_message_by_name(&name)
        .ok_or_else(|| format!("Invalid proto schema: message {name} not found"))
}

fn collect_names(d: &DescriptorProto, prefix: &str, out: &mut Vec<String>) {
    let full = format!("{prefix}.{}", d.name());
    for n in &d.nested_type {
        collect_names(n, &full, out);
    }
    out.push(full);
}

/// Rewrites each message/enum type reference to the one nested name it ends with, so that a
/// package prefix of the writer's (absent from the descriptor) does not break resolution.
fn requalify(d: &mut DescriptorProto, known: &[String]) {
    for f in &mut d.field {
        if let Some(t) = f.type_name.as_mut() {
            let bare = t.trim_start_matches('.');
            if let Some(k) = known
                .iter()
                .filter(|k| {
                    let k = k.trim_start_matches('.');
                    bare == k || bare.ends_with(&format!(".{k}"))
                })
                .max_by_key(|k| k.len())
            {
                *t = k.clone();
            }
        }
    }
    for n in &mut d.nested_type {
        requalify(n, known);
    }
}

fn type_name(ty: ColType) -> &'static str {
    crate::bq::patch::type_name(ty)
}

fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Message(m) => format!("message {}", m.name()),
        Kind::Enum(e) => format!("enum {}", e.name()),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

fn is_integer(k: &Kind) -> bool {
    matches!(
        k,
        Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Fixed32
            | Kind::Fixed64
            | Kind::Sfixed32
            | Kind::Sfixed64
            | Kind::Enum(_)
    )
}

/// Why a writer's descriptor does not fit the table, and whether it is BigQuery's
/// `SCHEMA_MISMATCH_EXTRA_FIELDS` (a field the table lacks) or another mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaMismatch {
    pub extra_field: bool,
    pub message: String,
}

/// Checks every field of `msg` (recursively) against `columns`.
pub fn check_descriptor(msg: &MessageDescriptor, columns: &[Column]) -> Result<(), SchemaMismatch> {
    check_fields(msg, columns, "")
}

fn check_fields(
    msg: &MessageDescriptor,
    columns: &[Column],
    prefix: &str,
) -> Result<(), SchemaMismatch> {
    for f in msg.fields() {
        let loc = if prefix.is_empty() {
            f.name().to_string()
        } else {
            format!("{prefix}.{}", f.name())
        };
        let Some(col) = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(f.name()))
        else {
            return Err(SchemaMismatch {
                extra_field: true,
                message: format!(
                    "Input schema has more fields than BigQuery schema, extra fields: '{loc}'"
                ),
            });
        };
        let mismatch = |why: String| SchemaMismatch {
            extra_field: false,
            message: format!("The proto field mismatched with BigQuery field at {loc}: {why}"),
        };
        if f.is_map() {
            return Err(mismatch("map fields are not supported".into()));
        }
        if f.is_list() != (col.mode == ColMode::Repeated) {
            return Err(mismatch(format!(
                "the proto field is {}repeated, the BigQuery field mode is {:?}",
                if f.is_list() { "" } else { "not " },
                col.mode
            )));
        }
        let k = f.kind();
        let ok = match col.ty {
            ColType::Integer => is_integer(&k),
            ColType::Float => matches!(k, Kind::Double | Kind::Float),
            ColType::Boolean => k == Kind::Bool,
            ColType::String
            | ColType::DateTime
            | ColType::Time
            | ColType::Json
            | ColType::Geography
            | ColType::Interval => k == Kind::String,
            ColType::Bytes => k == Kind::Bytes,
            ColType::Date => matches!(k, Kind::Int32 | Kind::Int64 | Kind::String),
            ColType::Timestamp => matches!(k, Kind::Int64 | Kind::String),
            ColType::Numeric | ColType::BigNumeric => {
                is_integer(&k) || matches!(k, Kind::String | Kind::Double | Kind::Float)
            }
            ColType::Record => matches!(k, Kind::Message(_)),
        };
        if !ok {
            return Err(mismatch(format!(
                "the proto field type {}, BigQuery field type {}",
                kind_name(&k),
                type_name(col.ty)
            )));
        }
        if let (ColType::Record, Kind::Message(m)) = (col.ty, &k) {
            check_fields(m, &col.fields, &loc)?;
        }
    }
    Ok(())
}

/// Decodes one serialized row (whose descriptor passed [`check_descriptor`] against `columns`)
/// into `insertAll`'s JSON form, then checks its values; the problems name the field.
pub fn decode_row(
    msg: &MessageDescriptor,
    columns: &[Column],
    bytes: &[u8],
) -> Result<Map<String, Value>, String> {
    let m = DynamicMessage::decode(msg.clone(), bytes)
        .map_err(|e| format!("Could not parse the serialized row as {}: {e}", msg.name()))?;
    let mut row = to_json(&m, columns);
    let problems = schema::check_row(columns, &mut row, false);
    if problems.is_empty() {
        Ok(row)
    } else {
        Err(problems
            .iter()
            .map(|p| {
                if p.location.is_empty() {
                    p.message.clone()
                } else {
                    format!("Field {}: {}", p.location, p.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "))
    }
}

fn to_json(m: &DynamicMessage, columns: &[Column]) -> Map<String, Value> {
    let mut out = Map::new();
    for (f, v) in m.fields() {
        let Some(col) = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(f.name()))
        else {
            continue;
        };
        let json = match v {
            PValue::List(items) => Value::Array(items.iter().map(|i| scalar(col, i)).collect()),
            other => scalar(col, other),
        };
        out.insert(col.name.clone(), json);
    }
    out
}

fn scalar(col: &Column, v: &PValue) -> Value {
    match (col.ty, v) {
        (ColType::Date, PValue::I32(d)) => Value::String(format_date(i64::from(*d))),
        (ColType::Date, PValue::I64(d)) => Value::String(format_date(*d)),
        (ColType::Timestamp, PValue::I64(us)) => Value::String(format_timestamp(*us)),
        (ColType::Numeric | ColType::BigNumeric, v) if !matches!(v, PValue::String(_)) => {
            match scalar_plain(v) {
                Value::Number(n) => Value::String(n.to_string()),
                other => other,
            }
        }
        (ColType::Record, PValue::Message(m)) => Value::Object(to_json(m, &col.fields)),
        (_, v) => scalar_plain(v),
    }
}

fn scalar_plain(v: &PValue) -> Value {
    match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(i) => Value::from(*i),
        PValue::I64(i) => Value::from(*i),
        PValue::U32(u) => Value::from(*u),
        // Past i64::MAX this stays text, which the INT64 check then refuses by value.
        PValue::U64(u) => i64::try_from(*u)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(u.to_string())),
        PValue::F32(f) => float(f64::from(*f)),
        PValue::F64(f) => float(*f),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(base64(b)),
        PValue::EnumNumber(n) => Value::from(*n),
        PValue::Message(m) => Value::Object(to_json(m, &[])),
        PValue::List(items) => Value::Array(items.iter().map(scalar_plain).collect()),
        PValue::Map(_) => Value::Null,
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map(Value::Number).unwrap_or_else(|| {
        Value::String(
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .into(),
        )
    })
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (a year outside 1..=9999 prints so that the DATE check
/// refuses it).
fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// µs since the epoch → `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn format_timestamp(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    let secs = rem / 1_000_000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}Z",
        format_date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rem % 1_000_000
    )
}

/// The size of a request as BigQuery counts it for its 10 MB limit (the encoded message).
pub fn request_size<M: Message>(m: &M) -> usize {
    m.encoded_len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_723), "2024-01-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(format_timestamp(1_500_000), "1970-01-01T00:00:01.500000Z");
        assert_eq!(
            schema::parse_timestamp_micros(&format_timestamp(1_796_205_600_123_456)),
            Some(1_796_205_600_123_456)
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\xff\xfe\xfd\xfc"), "//79/A==");
    }
}
