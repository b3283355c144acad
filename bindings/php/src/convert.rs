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
use ext_php_rs::types::{ZendHashTable, ZendObject, ZendStr, Zval};
use ext_php_rs::zend::{ce, ClassEntry};

use evlog_core::json;

use crate::ffi::{self, Key, Table, Value};

/// Deepest nesting of arrays/objects accepted.
pub const MAX_DEPTH: usize = 64;

/// A value that cannot be converted: the field path (outermost first) and the rule.
#[derive(Debug)]
pub struct ConvertError {
    /// Path segments from the innermost outwards (pushed while unwinding).
    rev_path: Vec<String>,
    rule: String,
}

/// What the walk returns: boxed, so a result is one register wide (`ConvertError` is 48 bytes,
/// which every call of the walk otherwise moved through memory: callgrind counted ~50
/// instructions per value in `write_value`'s entry and exit).
type Walk = Result<(), Box<ConvertError>>;

impl ConvertError {
    #[cold]
    fn new(rule: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            rev_path: Vec::new(),
            rule: rule.into(),
        })
    }

    /// Adds a path segment on the error's way out.
    #[cold]
    fn at(mut self: Box<Self>, seg: String) -> Box<Self> {
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

/// Appends the event array to `out` as JSON object text (`out` is left with partial text on an
/// error).
pub fn write_event(out: &mut String, event: &ZendHashTable) -> Result<(), ConvertError> {
    let table = Table::argument(event);
    out.reserve(64 + table.len() * 24);
    write_table(out, &table, 1, true).map_err(|e| *e)
}

fn write_value(out: &mut String, z: &Zval, depth: usize) -> Walk {
    match ffi::value(z) {
        Value::Null | Value::Undef => out.push_str("null"),
        Value::True => out.push_str("true"),
        Value::False => out.push_str("false"),
        Value::Long(n) => json::push_i64(out, n),
        Value::Double(v) => json::push_f64(out, v),
        Value::Str(s) => write_zstr(out, s)?,
        Value::Array(table) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            write_table(out, &table, depth + 1, false)?;
        }
        Value::Object(obj) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            write_object(out, obj, depth + 1)?;
        }
        Value::Reference(inner) | Value::Indirect(inner) => write_value(out, inner, depth)?,
        Value::Resource => {
            return Err(ConvertError::new(
                "a resource cannot be logged (convert it to a string or number first)",
            ))
        }
        Value::Other => {
            return Err(ConvertError::new(format!(
                "values of type {} cannot be logged",
                z.get_type()
            )))
        }
    }
    Ok(())
}

#[cold]
fn too_deep() -> Box<ConvertError> {
    ConvertError::new(format!("nested deeper than {MAX_DEPTH} levels"))
}

/// A string, checked as UTF-8 while it is escaped unless PHP flagged it valid already.
#[inline]
fn write_zstr(out: &mut String, s: &ZendStr) -> Walk {
    if let Some(valid) = ffi::flagged_utf8(s) {
        json::push_str(out, valid);
        return Ok(());
    }
    json::push_utf8(out, s.as_bytes()).map_err(|e| not_utf8("string", e.valid_up_to))
}

/// An object member's name (`,` first unless it is the first member, `:` after), checked as
/// UTF-8 as [`write_zstr`] checks a string.
#[inline]
fn write_key(out: &mut String, s: &ZendStr, comma: bool) -> Walk {
    if let Some(valid) = ffi::flagged_utf8(s) {
        json::push_str_key(out, valid, comma);
        return Ok(());
    }
    json::push_utf8_key(out, s.as_bytes(), comma).map_err(|e| not_utf8("key string", e.valid_up_to))
}

#[cold]
fn not_utf8(what: &str, at: usize) -> Box<ConvertError> {
    ConvertError::new(format!(
        "{what} is not valid UTF-8 (invalid byte at offset {at}); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data"
    ))
}

/// The error path segment of a key: `[3]` or `.name`.
#[cold]
fn segment(key: Key<'_>) -> String {
    match key {
        Key::Index(n) => format!("[{n}]"),
        Key::Str(s) => format!(".{}", String::from_utf8_lossy(s.as_bytes())),
    }
}

/// Writes a hashtable as a JSON array when its keys are exactly `0..n-1` in order (and
/// `force_object` is false), else as an object (integer keys become strings).
fn write_table(out: &mut String, table: &Table<'_>, depth: usize, force_object: bool) -> Walk {
    let is_list = !force_object && table.is_list();
    out.push(if is_list { '[' } else { '{' });
    let mut first = true;
    for (key, value) in table.entries() {
        let comma = !first;
        first = false;
        match key {
            _ if is_list => {
                if comma {
                    out.push(',');
                }
            }
            Key::Index(n) => {
                out.push_str(if comma { ",\"" } else { "\"" });
                json::push_i64(out, n);
                out.push_str("\":");
            }
            Key::Str(s) => write_key(out, s, comma).map_err(|e| e.at(segment(key)))?,
        }
        write_value(out, value, depth).map_err(|e| e.at(segment(key)))?;
    }
    out.push(if is_list { ']' } else { '}' });
    Ok(())
}

fn find_class(name: &str) -> Option<&'static ClassEntry> {
    ClassEntry::try_find(name)
}

fn write_object(out: &mut String, obj: &ZendObject, depth: usize) -> Walk {
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
        let s = v
            .zend_str()
            .ok_or_else(|| ConvertError::new("unreadable string"))?;
        return write_zstr(out, s);
    }
    if std::ptr::eq(obj.get_class_entry(), ce::stdclass()) {
        let props = Table::properties(obj)
            .ok_or_else(|| ConvertError::new("cannot read stdClass properties"))?;
        return write_table(out, &props, depth, true);
    }
    let class = obj.get_class_name().unwrap_or_else(|_| "?".into());
    Err(ConvertError::new(format!(
        "an object of class {class} cannot be logged (supported: DateTimeInterface, JsonSerializable, Stringable, stdClass)"
    )))
}

fn call(obj: &ZendObject, method: &str) -> Result<Zval, Box<ConvertError>> {
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
