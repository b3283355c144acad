//! The envelope: the unit `log()` and the collector take in.
//!
//! Wire form (SDK ↔ collector, clients ↔ collector):
//! ```json
//! {"namespace": "events", "type": "transaction",
//!  "time": "2026-11-22T10:00:00.123Z",   // optional: RFC 3339 or epoch millis; default: time of log()
//!  "id": "0193…",                         // optional: becomes BigQuery insertId; default: UUIDv7
//!  "event": {"user_id": 42, "amount": "9.99"}}
//! ```
//! Contract: `namespace` must be a valid BigQuery dataset name and `type` a valid BigQuery table name
//! (both also become path components of schema files and file-sink outputs, so nothing that could
//! escape a directory or a URL path is allowed); `id` is printable and at most 128 bytes;
//! `time` lies within BigQuery's TIMESTAMP range; `event` is a JSON object. Every error names the
//! field and the rule it broke.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::time;

/// BigQuery dataset names: letters, digits and underscores, at most 1024 bytes.
pub(crate) const MAX_DATASET_BYTES: usize = 1024;
/// BigQuery table names are at most 1024 bytes; day-sharded tables append `YYYYMMDD`.
pub(crate) const MAX_TABLE_BYTES: usize = 1024 - 8;
/// Longest accepted event id (BigQuery `insertId`).
pub(crate) const MAX_ID_BYTES: usize = 128;

/// A broken envelope rule. `field` is the envelope field, `rule` says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid envelope field \"{field}\": {rule}")]
pub struct EnvelopeError {
    /// Envelope field: `namespace`, `type`, `time`, `id`, `event` or `envelope`.
    pub field: &'static str,
    /// The rule that was broken, with the offending value where useful.
    pub rule: String,
}

impl EnvelopeError {
    pub(crate) fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }
}

/// Checks a namespace (BigQuery dataset name): `[A-Za-z0-9_]{1,1024}`.
pub fn check_namespace(name: &str) -> Result<(), EnvelopeError> {
    check_dataset_name(name).map_err(|rule| EnvelopeError::new("namespace", rule))
}

/// Checks an event type (BigQuery table name): letters (incl. Unicode), digits, `_` and `-`,
/// 1..=1016 bytes. BigQuery also allows spaces and combining marks; evlog refuses them because the
/// name becomes a file name and a URL path segment.
pub fn check_type(name: &str) -> Result<(), EnvelopeError> {
    check_table_name(name).map_err(|rule| EnvelopeError::new("type", rule))
}

/// Bytes allowed in dataset names, and (with `-`) in ASCII table names: one table lookup per
/// byte on the `log()` path instead of per-character Unicode class checks.
const fn name_table(dash: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || (dash && b == b'-');
        i += 1;
    }
    t
}
static DATASET_BYTES: [bool; 256] = name_table(false);
static TABLE_ASCII_BYTES: [bool; 256] = name_table(true);

/// The dataset-name rule, returning the broken rule as text.
#[inline]
pub fn check_dataset_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= MAX_DATASET_BYTES
        && name.bytes().all(|b| DATASET_BYTES[b as usize])
    {
        return Ok(());
    }
    dataset_name_error(name)
}

#[cold]
fn dataset_name_error(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_DATASET_BYTES {
        return Err(format!(
            "is {} bytes, the limit is {MAX_DATASET_BYTES}",
            name.len()
        ));
    }
    match name
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "{} may contain only letters, digits and underscores (BigQuery dataset name); found {:?} at byte {i}",
            excerpt(name),
            name[i..].chars().next().unwrap_or('?'),
        )),
    }
}

/// The table-name rule, returning the broken rule as text.
#[inline]
pub fn check_table_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= MAX_TABLE_BYTES
        && name.bytes().all(|b| TABLE_ASCII_BYTES[b as usize])
    {
        return Ok(());
    }
    table_name_slow(name)
}

/// Non-ASCII names (Unicode letters are allowed) and errors.
#[cold]
fn table_name_slow(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_TABLE_BYTES {
        return Err(format!(
            "is {} bytes, the limit is {MAX_TABLE_BYTES}",
            name.len()
        ));
    }
    // Fast path for the usual ASCII names; Unicode letters and digits are allowed as in BigQuery.
    let bad = name.char_indices().find(|&(_, c)| {
        !(c.is_ascii_alphanumeric()
            || c == '_'
            || c == '-'
            || (!c.is_ascii() && c.is_alphanumeric()))
    });
    match bad {
        None => Ok(()),
        Some((i, c)) => Err(format!(
            "{} may contain only letters, digits, '_' and '-' (BigQuery table name); found {c:?} at byte {i}",
            excerpt(name),
        )),
    }
}

/// Checks an event id: 1..=128 bytes, no control characters.
pub fn check_id(id: &str) -> Result<(), EnvelopeError> {
    if id.is_empty() {
        return Err(EnvelopeError::new("id", "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(EnvelopeError::new(
            "id",
            format!("is {} bytes, the limit is {MAX_ID_BYTES}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(EnvelopeError::new(
            "id",
            format!("{} must not contain control characters", excerpt(id)),
        ));
    }
    Ok(())
}

/// Checks an event time in microseconds against BigQuery's TIMESTAMP range.
pub fn check_time_micros(micros: i64) -> Result<(), EnvelopeError> {
    if (time::MIN_MICROS..=time::MAX_MICROS).contains(&micros) {
        Ok(())
    } else {
        Err(EnvelopeError::new(
            "time",
            format!("{micros} µs since the epoch is outside 0001-01-01..9999-12-31"),
        ))
    }
}

/// Converts epoch milliseconds (the envelope's numeric `time`) to microseconds, checking range.
pub fn time_from_epoch_millis(millis: i64) -> Result<i64, EnvelopeError> {
    let micros = millis.checked_mul(1000).ok_or_else(|| {
        EnvelopeError::new("time", format!("epoch millis {millis} is out of range"))
    })?;
    check_time_micros(micros)?;
    Ok(micros)
}

/// Parses the envelope's `time`: an RFC 3339 string or epoch milliseconds (a JSON number).
pub fn parse_time_value(value: &Value) -> Result<i64, EnvelopeError> {
    match value {
        Value::String(s) => {
            time::parse_timestamp(s).map_err(|e| EnvelopeError::new("time", e.to_string()))
        }
        Value::Number(n) => {
            if let Some(ms) = n.as_i64() {
                time_from_epoch_millis(ms)
            } else {
                // Fractional epoch millis keep microsecond precision.
                let ms = n.as_f64().unwrap_or(f64::NAN);
                let micros = (ms * 1000.0).trunc();
                if micros.is_finite()
                    && micros >= time::MIN_MICROS as f64
                    && micros <= time::MAX_MICROS as f64
                {
                    Ok(micros as i64)
                } else {
                    Err(EnvelopeError::new(
                        "time",
                        format!("epoch millis {n} is out of range"),
                    ))
                }
            }
        }
        other => Err(EnvelopeError::new(
            "time",
            format!(
                "expected an RFC 3339 string or epoch milliseconds, got {}",
                json_kind(other)
            ),
        )),
    }
}

/// Cheap structural check of an event body at `log()`: valid UTF-8 is guaranteed by `&str`; the
/// text must look like a JSON object. Full parsing happens on the flush thread (an event that then
/// fails to parse is rejected and dead-lettered with its raw text).
pub(crate) fn check_event_text(text: &str) -> Result<(), EnvelopeError> {
    let t = text.trim_ascii();
    if t.starts_with('{') && t.ends_with('}') {
        Ok(())
    } else {
        Err(EnvelopeError::new(
            "event",
            format!("must be a JSON object, got {}", excerpt(t)),
        ))
    }
}

/// An owned, checked envelope (the collector's unit; SDK bindings use [`crate::EventInput`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Dataset-level name.
    pub namespace: String,
    /// Table-level name.
    pub type_name: String,
    /// Event time, microseconds since the epoch, if given.
    pub time: Option<i64>,
    /// Event id (insertId), if given.
    pub id: Option<String>,
    /// The event's fields.
    pub event: Map<String, Value>,
}

impl Envelope {
    /// Checks and takes apart a parsed envelope object. Unknown top-level keys are errors, so a
    /// misspelt `"evnet"` is reported instead of silently producing an empty event.
    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(mut obj) = value else {
            return Err(EnvelopeError::new(
                "envelope",
                format!("must be a JSON object, got {}", json_kind(&value)),
            ));
        };
        let namespace = take_string(&mut obj, "namespace")?;
        check_namespace(&namespace)?;
        let type_name = take_string(&mut obj, "type")?;
        check_type(&type_name)?;
        let time = match obj.remove("time") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_time_value(&v)?),
        };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_id(&s)?;
                Some(s)
            }
            Some(other) => {
                return Err(EnvelopeError::new(
                    "id",
                    format!("expected a string, got {}", json_kind(&other)),
                ))
            }
        };
        let event = match obj.remove("event") {
            Some(Value::Object(m)) => m,
            None => return Err(EnvelopeError::new("event", "is required")),
            Some(other) => {
                return Err(EnvelopeError::new(
                    "event",
                    format!("must be a JSON object, got {}", json_kind(&other)),
                ))
            }
        };
        if let Some(key) = obj.keys().next() {
            return Err(EnvelopeError::new(
                "envelope",
                format!(
                    "unknown field {:?} (expected namespace, type, time, id, event)",
                    excerpt(key)
                ),
            ));
        }
        Ok(Self {
            namespace,
            type_name,
            time,
            id,
            event,
        })
    }

    /// Parses and checks an envelope from JSON text.
    pub fn from_json(text: &str) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| EnvelopeError::new("envelope", format!("invalid JSON: {e}")))?;
        Self::from_value(value)
    }
}

fn take_string(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, EnvelopeError> {
    match obj.remove(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(EnvelopeError::new(field, "is required")),
        Some(other) => Err(EnvelopeError::new(
            field,
            format!("expected a string, got {}", json_kind(&other)),
        )),
    }
}

/// The JSON kind of a value, for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A bounded, quoted excerpt of user input for error messages.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}… ({} bytes)", &s[..end], s.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_follow_bigquery_rules() {
        assert!(check_namespace("events_2").is_ok());
        for bad in ["", "a/b", "..", "a.b", "a b", "a-b", "ü"] {
            let e = check_namespace(bad).unwrap_err();
            assert_eq!(e.field, "namespace", "{bad}");
        }
        assert!(check_namespace(&"a".repeat(1024)).is_ok());
        assert!(check_namespace(&"a".repeat(1025)).is_err());
        assert!(check_type("page-view_2").is_ok());
        assert!(check_type("Überweisung").is_ok());
        for bad in ["", "a/b", "..", "a.b", "a b", "a%2f", "a\\b", "a\0b", "a?b"] {
            let e = check_type(bad).unwrap_err();
            assert_eq!(e.field, "type", "{bad}");
        }
        assert!(check_type(&"t".repeat(MAX_TABLE_BYTES + 1)).is_err());
    }

    #[test]
    fn envelope_parses_and_names_fields() {
        let env = Envelope::from_json(
            r#"{"namespace":"events","type":"transaction","time":"2026-11-22T10:00:00.123Z","id":"x1","event":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(env.namespace, "events");
        assert_eq!(env.type_name, "transaction");
        assert_eq!(env.time, Some(1_795_341_600_123_000));
        assert_eq!(env.id.as_deref(), Some("x1"));
        assert_eq!(env.event["a"], json!(1));

        let ms = Envelope::from_value(
            json!({"namespace":"e","type":"t","time":1795341600123_i64,"event":{}}),
        )
        .unwrap();
        assert_eq!(ms.time, Some(1_795_341_600_123_000));

        let cases = [
            (json!({"type":"t","event":{}}), "namespace"),
            (
                json!({"namespace":"e/x","type":"t","event":{}}),
                "namespace",
            ),
            (json!({"namespace":"e","type":5,"event":{}}), "type"),
            (json!({"namespace":"e","type":"t","event":[1]}), "event"),
            (json!({"namespace":"e","type":"t"}), "event"),
            (
                json!({"namespace":"e","type":"t","time":"yesterday","event":{}}),
                "time",
            ),
            (
                json!({"namespace":"e","type":"t","time":true,"event":{}}),
                "time",
            ),
            (
                json!({"namespace":"e","type":"t","time":i64::MAX,"event":{}}),
                "time",
            ),
            (json!({"namespace":"e","type":"t","id":"","event":{}}), "id"),
            (
                json!({"namespace":"e","type":"t","id":"a\nb","event":{}}),
                "id",
            ),
            (json!({"namespace":"e","type":"t","id":7,"event":{}}), "id"),
            (
                json!({"namespace":"e","type":"t","evnet":{},"event":{}}),
                "envelope",
            ),
            (json!([1]), "envelope"),
        ];
        for (value, field) in cases {
            let err = Envelope::from_value(value.clone()).unwrap_err();
            assert_eq!(err.field, field, "{value}: {err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn event_text_must_look_like_an_object() {
        assert!(check_event_text(" {\"a\":1} \n").is_ok());
        for bad in ["", "[1]", "42", "\"x\"", "{", "null"] {
            assert_eq!(check_event_text(bad).unwrap_err().field, "event");
        }
    }
}
