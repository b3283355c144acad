//! PHP values → the event's JSON object text, written straight from zvals into one `String`.
//!
//! | PHP | JSON |
//! |---|---|
//! | `null`, `bool`, `int` | `null`, `true`/`false`, number |
//! | `float` | number (shortest round-trip form, core's `json::push_f64`); NaN / ±INF → `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `string` | string; must be valid UTF-8 (BigQuery's rule), else an error naming the field |
//! | array with keys `0..n-1` in order | array |
//! | any other array | object (integer keys become strings) |
//! | `DateTimeInterface` | RFC 3339 UTC string with microseconds (a TIMESTAMP) |
//! | `JsonSerializable` | its `jsonSerialize()` result, converted by these rules |
//! | `Stringable` (has `__toString`) | string |
//! | `stdClass` | object of its properties |
//! | anything else (resources, closures, other objects) | error naming the field |
//!
//! The top-level event is always an object (a list there becomes `{"0": …}`, as with
//! `JSON_FORCE_OBJECT`). Nesting deeper than [`MAX_DEPTH`] is an error (it also stops cycles
//! through references or `jsonSerialize()`).

use ext_php_rs::flags::DataType;
use ext_php_rs::types::{ZendHashTable, ZendObject, Zval};
use ext_php_rs::zend::{ce, ClassEntry};

use evlog_core::json;

/// Deepest nesting of arrays/objects accepted.
pub const MAX_DEPTH: usize = 64;

/// A value that cannot be converted: the field path (outermost first) and the rule.
#[derive(Debug)]
pub struct ConvertError {
    /// Path segments from the innermost outwards (pushed while unwinding).
    rev_path: Vec<String>,
    rule: String,
}

impl ConvertError {
    fn new(rule: impl Into<String>) -> Self {
        Self {
            rev_path: Vec::new(),
            rule: rule.into(),
        }
    }

    fn at(mut self, seg: String) -> Self {
        self.rev_path.push(seg);
        self
    }

    /// `event.a.b[2]`-style path of the offending field.
    pub fn path(&self) -> String {
        let mut p = String::from("event");
        for seg in self.rev_path.iter().rev() {
            p.push_str(seg);
        }
        p
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path(), self.rule)
    }
}

/// Converts the event array to JSON object text.
pub fn event_to_json(event: &ZendHashTable) -> Result<String, ConvertError> {
    let mut out = String::with_capacity(64 + event.len() * 24);
    write_table(&mut out, event, 1, true)?;
    Ok(out)
}

fn write_value(out: &mut String, z: &Zval, depth: usize) -> Result<(), ConvertError> {
    match z.get_type() {
        DataType::Null | DataType::Undef => out.push_str("null"),
        DataType::True => out.push_str("true"),
        DataType::False => out.push_str("false"),
        DataType::Long => json::push_i64(out, z.long().unwrap_or_default()),
        DataType::Double => json::push_f64(out, z.double().unwrap_or_default()),
        DataType::String => write_zstr(out, z)?,
        DataType::Array => {
            let ht = z
                .array()
                .ok_or_else(|| ConvertError::new("unreadable array"))?;
            if depth >= MAX_DEPTH {
                return Err(ConvertError::new(format!(
                    "nested deeper than {MAX_DEPTH} levels"
                )));
            }
            write_table(out, ht, depth + 1, false)?;
        }
        DataType::Object(_) => {
            let obj = z
                .object()
                .ok_or_else(|| ConvertError::new("unreadable object"))?;
            if depth >= MAX_DEPTH {
                return Err(ConvertError::new(format!(
                    "nested deeper than {MAX_DEPTH} levels"
                )));
            }
            write_object(out, obj, depth + 1)?;
        }
        DataType::Reference => write_value(out, z.dereference(), depth)?,
        DataType::Indirect => match z.indirect() {
            Some(inner) => write_value(out, inner, depth)?,
            None => out.push_str("null"),
        },
        DataType::Resource => {
            return Err(ConvertError::new(
                "a resource cannot be logged (convert it to a string or number first)",
            ))
        }
        other => {
            return Err(ConvertError::new(format!(
                "values of type {other} cannot be logged"
            )))
        }
    }
    Ok(())
}

fn write_zstr(out: &mut String, z: &Zval) -> Result<(), ConvertError> {
    let zs = z
        .zend_str()
        .ok_or_else(|| ConvertError::new("unreadable string"))?;
    let s = std::str::from_utf8(zs.as_bytes()).map_err(|e| {
        ConvertError::new(format!(
            "string is not valid UTF-8 (invalid byte at offset {}); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data",
            e.valid_up_to()
        ))
    })?;
    json::push_str(out, s);
    Ok(())
}

/// Writes a hashtable as a JSON array when its keys are exactly `0..n-1` in order (and
/// `force_object` is false), else as an object.
fn write_table(
    out: &mut String,
    ht: &ZendHashTable,
    depth: usize,
    force_object: bool,
) -> Result<(), ConvertError> {
    let is_list = !force_object && is_list(ht);
    out.push(if is_list { '[' } else { '{' });
    let mut iter = ht.iter();
    let mut i: i64 = 0;
    while let Some((key, value)) = iter.next_zval() {
        if i > 0 {
            out.push(',');
        }
        let seg = |key: &Zval| match key.long() {
            Some(n) => format!("[{n}]"),
            None => format!(
                ".{}",
                key.zend_str()
                    .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
                    .unwrap_or_default()
            ),
        };
        if !is_list {
            if let Some(n) = key.long() {
                out.push('"');
                json::push_i64(out, n);
                out.push('"');
            } else {
                write_zstr(out, &key)
                    .map_err(|e| ConvertError::new(format!("key {}", e.rule)).at(seg(&key)))?;
            }
            out.push(':');
        }
        write_value(out, value, depth).map_err(|e| e.at(seg(&key)))?;
        i += 1;
    }
    out.push(if is_list { ']' } else { '}' });
    Ok(())
}

fn is_list(ht: &ZendHashTable) -> bool {
    let mut iter = ht.iter();
    let mut i: i64 = 0;
    while let Some((key, _)) = iter.next_zval() {
        if key.long() != Some(i) {
            return false;
        }
        i += 1;
    }
    true
}

fn find_class(name: &str) -> Option<&'static ClassEntry> {
    ClassEntry::try_find(name)
}

fn write_object(out: &mut String, obj: &ZendObject, depth: usize) -> Result<(), ConvertError> {
    if let Some(dt) = find_class("DateTimeInterface") {
        if obj.instance_of(dt) {
            let micros = datetime_micros(obj).map_err(ConvertError::new)?;
            json::push_str(out, &evlog_core::time::format_timestamp(micros));
            return Ok(());
        }
    }
    if let Some(js) = find_class("JsonSerializable") {
        if obj.instance_of(js) {
            let v = call(obj, "jsonSerialize")?;
            return write_value(out, &v, depth);
        }
    }
    if obj.instance_of(ce::stringable()) {
        let v = call(obj, "__toString")?;
        return write_zstr(out, &v);
    }
    if std::ptr::eq(obj.get_class_entry(), ce::stdclass()) {
        let props = obj
            .get_properties()
            .map_err(|e| ConvertError::new(format!("cannot read stdClass properties: {e}")))?;
        return write_table(out, props, depth, true);
    }
    let class = obj.get_class_name().unwrap_or_else(|_| "?".into());
    Err(ConvertError::new(format!(
        "an object of class {class} cannot be logged (supported: DateTimeInterface, JsonSerializable, Stringable, stdClass)"
    )))
}

fn call(obj: &ZendObject, method: &str) -> Result<Zval, ConvertError> {
    let v = obj
        .try_call_method(method, vec![])
        .map_err(|e| ConvertError::new(format!("{method}() failed: {e}")))?;
    if v.get_type() == DataType::Undef {
        // The method threw: PHP's exception is pending and propagates when we return.
        return Err(ConvertError::new(format!("{method}() threw an exception")));
    }
    Ok(v)
}

/// Microseconds since the epoch of a `DateTimeInterface`.
pub fn datetime_micros(obj: &ZendObject) -> Result<i64, String> {
    let v = obj
        .try_call_method("format", vec![&"U.u"])
        .map_err(|e| format!("DateTimeInterface::format() failed: {e}"))?;
    let text = v
        .str()
        .ok_or_else(|| "DateTimeInterface::format() did not return a string".to_string())?;
    parse_u_dot_u(text).ok_or_else(|| format!("unexpected DateTime format output {text:?}"))
}

/// Parses `format('U.u')` output: whole seconds (may be negative) and six digits of
/// microseconds (always a non-negative fraction added to the seconds).
pub fn parse_u_dot_u(text: &str) -> Option<i64> {
    let (secs, frac) = text.split_once('.')?;
    let secs: i64 = secs.parse().ok()?;
    if frac.len() != 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = frac.parse().ok()?;
    secs.checked_mul(1_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::parse_u_dot_u;

    #[test]
    fn u_dot_u() {
        assert_eq!(
            parse_u_dot_u("1700000000.123456"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(parse_u_dot_u("-2.500000"), Some(-1_500_000));
        assert_eq!(parse_u_dot_u("1.5"), None);
        assert_eq!(parse_u_dot_u("x.000000"), None);
    }
}
