//! Python objects → JSON text, written straight into one `String` (no intermediate tree).
//!
//! | Python | JSON |
//! |---|---|
//! | `dict` / other `Mapping` (keys must be `str`) | object |
//! | `list`, `tuple`, `set`, `frozenset` | array (sets in iteration order) |
//! | `str` | string |
//! | `int` (any size; `bool` excluded) | number, exact digits (schema conversion checks ranges per column) |
//! | `float` | number (shortest round-trip form, core's [`json::push_f64`]); NaN/±inf → `"NaN"`, `"Infinity"`, `"-Infinity"` (BigQuery's spelling) |
//! | `bool`, `None` | `true`/`false`, `null` |
//! | `datetime.datetime` | RFC 3339 UTC string `YYYY-MM-DDTHH:MM:SS.ffffffZ`; naive datetimes are taken as UTC |
//! | `datetime.date` | `"YYYY-MM-DD"` |
//! | `decimal.Decimal` | its exact decimal string, no exponent (`"NaN"`, `"Infinity"` as such) |
//! | `bytes`, `bytearray` | standard base64 string (BigQuery's BYTES form) |
//! | `uuid.UUID` | its canonical string |
//!
//! Anything else raises `InvalidEvent` naming the field path (`event.items[2].price`) and the
//! type. Containers nest at most [`MAX_DEPTH`] deep (a cycle hits this limit too), below
//! serde_json's recursion limit that the flush thread parses with.
//!
//! Strings, integers and floats are written by core's [`json`] writers, shared with the PHP
//! binding, so both write the same text for the same value.

use std::fmt;

use evlog_core::{json, time};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping, PySet,
    PyString, PyTuple, PyType,
};

/// Deepest nesting of containers inside an event.
pub const MAX_DEPTH: usize = 64;

/// A value that has no JSON form; names where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Path segments from the root, e.g. `["event", ".items", "[2]"]`.
    path: Vec<String>,
    /// The rule, e.g. "type set is not supported".
    rule: String,
}

impl ConvertError {
    /// An error at the current value; callers add path segments while it unwinds.
    pub fn new(rule: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            rule: rule.into(),
        }
    }

    /// The error as one about an envelope argument (`time`, `id`, ...).
    pub fn within_field(self, field: &str) -> Self {
        self.within(field.into())
    }

    fn within(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    /// The dotted field path.
    pub fn path(&self) -> String {
        self.path.iter().rev().map(String::as_str).collect()
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid field \"{}\": {}", self.path(), self.rule)
    }
}

impl std::error::Error for ConvertError {}

fn key_segment(key: &str) -> String {
    format!(".{key}")
}

/// Types looked up once per interpreter (the stable ABI has no datetime C API).
struct Types {
    datetime: Py<PyType>,
    date: Py<PyType>,
    decimal: Py<PyType>,
    uuid: Py<PyType>,
}

static TYPES: GILOnceCell<Types> = GILOnceCell::new();

fn types(py: Python<'_>) -> PyResult<&Types> {
    TYPES.get_or_try_init(py, || {
        let ty = |module: &str, name: &str| -> PyResult<Py<PyType>> {
            Ok(py
                .import(module)?
                .getattr(name)?
                .downcast_into::<PyType>()?
                .unbind())
        };
        Ok(Types {
            datetime: ty("datetime", "datetime")?,
            date: ty("datetime", "date")?,
            decimal: ty("decimal", "Decimal")?,
            uuid: ty("uuid", "UUID")?,
        })
    })
}

fn py_err(e: PyErr) -> ConvertError {
    ConvertError::new(format!("cannot be read: {e}"))
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Writes the event (must be a mapping) as a JSON object into `out`.
pub fn write_event(out: &mut String, event: &Bound<'_, PyAny>) -> Result<(), ConvertError> {
    if let Ok(d) = event.downcast::<PyDict>() {
        return write_dict(out, d, 0).map_err(|e| e.within("event".into()));
    }
    if event.downcast::<PyMapping>().is_ok() {
        return write_value(out, event, 0).map_err(|e| e.within("event".into()));
    }
    Err(ConvertError::new(format!(
        "must be a mapping (dict) of field names to values, got {}",
        type_name(event)
    ))
    .within("event".into()))
}

fn write_dict(out: &mut String, d: &Bound<'_, PyDict>, depth: usize) -> Result<(), ConvertError> {
    if depth >= MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "nested deeper than {MAX_DEPTH} levels (or contains itself)"
        )));
    }
    out.push('{');
    let mut first = true;
    for (k, v) in d.iter() {
        if !first {
            out.push(',');
        }
        first = false;
        let key = dict_key(&k)?;
        json::push_str(out, key);
        out.push(':');
        write_value(out, &v, depth + 1).map_err(|e| e.within(key_segment(key)))?;
    }
    out.push('}');
    Ok(())
}

fn dict_key<'a>(k: &'a Bound<'_, PyAny>) -> Result<&'a str, ConvertError> {
    match k.downcast::<PyString>() {
        Ok(s) => s.to_str().map_err(py_err),
        Err(_) => {
            let repr = k
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into());
            Err(ConvertError::new(format!(
                "key {repr} is a {}; keys must be str",
                type_name(k)
            )))
        }
    }
}

fn write_seq<'py>(
    out: &mut String,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
) -> Result<(), ConvertError> {
    if depth >= MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "nested deeper than {MAX_DEPTH} levels (or contains itself)"
        )));
    }
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, &v, depth + 1).map_err(|e| e.within(format!("[{i}]")))?;
    }
    out.push(']');
    Ok(())
}

/// Writes any supported value. Exact builtin types are tried first (the common case costs a
/// pointer comparison each); subclasses and the library types follow.
pub fn write_value(
    out: &mut String,
    v: &Bound<'_, PyAny>,
    depth: usize,
) -> Result<(), ConvertError> {
    if v.is_exact_instance_of::<PyString>() {
        let s = v.downcast::<PyString>().map_err(|e| py_err(e.into()))?;
        json::push_str(out, s.to_str().map_err(py_err)?);
        return Ok(());
    }
    if v.is_exact_instance_of::<PyInt>() {
        return write_int(out, v);
    }
    if v.is_exact_instance_of::<PyFloat>() {
        let f: f64 = v.extract().map_err(py_err)?;
        json::push_f64(out, f);
        return Ok(());
    }
    if v.is_exact_instance_of::<PyBool>() {
        out.push_str(if v.is_truthy().map_err(py_err)? {
            "true"
        } else {
            "false"
        });
        return Ok(());
    }
    if v.is_none() {
        out.push_str("null");
        return Ok(());
    }
    if let Ok(d) = v.downcast::<PyDict>() {
        return write_dict(out, d, depth);
    }
    if let Ok(l) = v.downcast::<PyList>() {
        return write_seq(out, l.iter(), depth);
    }
    if let Ok(t) = v.downcast::<PyTuple>() {
        return write_seq(out, t.iter(), depth);
    }
    write_other(out, v, depth)
}

#[cold]
fn write_other(out: &mut String, v: &Bound<'_, PyAny>, depth: usize) -> Result<(), ConvertError> {
    let py = v.py();
    // Subclasses of the builtins (str enums, int enums, bool).
    if let Ok(s) = v.downcast::<PyString>() {
        json::push_str(out, s.to_str().map_err(py_err)?);
        return Ok(());
    }
    if v.downcast::<PyBool>().is_ok() {
        out.push_str(if v.is_truthy().map_err(py_err)? {
            "true"
        } else {
            "false"
        });
        return Ok(());
    }
    if v.downcast::<PyInt>().is_ok() {
        // An int subclass (IntEnum...): its int value, not its str().
        let plain = py.get_type::<PyInt>().call1((v,)).map_err(py_err)?;
        return write_int(out, &plain);
    }
    if v.downcast::<PyFloat>().is_ok() {
        let f: f64 = v.extract().map_err(py_err)?;
        json::push_f64(out, f);
        return Ok(());
    }
    let t = types(py).map_err(py_err)?;
    // datetime is a subclass of date: test it first.
    if v.is_instance(t.datetime.bind(py)).map_err(py_err)? {
        let micros = datetime_micros(v)?;
        out.push('"');
        out.push_str(&time::format_timestamp(micros));
        out.push('"');
        return Ok(());
    }
    if v.is_instance(t.date.bind(py)).map_err(py_err)? {
        let days = date_days(v).map_err(py_err)?;
        out.push('"');
        out.push_str(&time::format_date(days as i32));
        out.push('"');
        return Ok(());
    }
    if v.is_instance(t.decimal.bind(py)).map_err(py_err)? {
        // format(d, "f") is exact and never uses an exponent; NaN/Infinity come out as such.
        let text: String = v
            .call_method1("__format__", ("f",))
            .and_then(|s| s.extract())
            .map_err(py_err)?;
        json::push_str(out, &text);
        return Ok(());
    }
    if v.is_instance(t.uuid.bind(py)).map_err(py_err)? {
        let text = v.str().map_err(py_err)?;
        json::push_str(out, text.to_str().map_err(py_err)?);
        return Ok(());
    }
    if let Ok(b) = v.downcast::<PyBytes>() {
        write_base64(out, b.as_bytes());
        return Ok(());
    }
    if let Ok(b) = v.downcast::<PyByteArray>() {
        write_base64(out, &b.to_vec());
        return Ok(());
    }
    if let Ok(d) = v.downcast::<PyDict>() {
        return write_dict(out, d, depth);
    }
    if let Ok(s) = v.downcast::<PySet>() {
        return write_seq(out, s.iter(), depth);
    }
    if let Ok(s) = v.downcast::<PyFrozenSet>() {
        return write_seq(out, s.iter(), depth);
    }
    if let Ok(m) = v.downcast::<PyMapping>() {
        if depth >= MAX_DEPTH {
            return Err(ConvertError::new(format!(
                "nested deeper than {MAX_DEPTH} levels (or contains itself)"
            )));
        }
        let items = m.items().map_err(py_err)?;
        out.push('{');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let (k, val): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(py_err)?;
            let key = dict_key(&k)?;
            json::push_str(out, key);
            out.push(':');
            write_value(out, &val, depth + 1).map_err(|e| e.within(key_segment(key)))?;
        }
        out.push('}');
        return Ok(());
    }
    Err(ConvertError::new(format!(
        "type {} is not supported (use str, int, float, bool, None, dict, list, tuple, set, \
         datetime, date, Decimal, bytes or UUID)",
        type_name(v)
    )))
}

fn write_int(out: &mut String, v: &Bound<'_, PyAny>) -> Result<(), ConvertError> {
    if let Ok(i) = v.extract::<i64>() {
        json::push_i64(out, i);
        return Ok(());
    }
    // Beyond i64: Python's own decimal digits, exact. Ranges are checked per column later.
    let text = v.str().map_err(py_err)?;
    out.push_str(text.to_str().map_err(py_err)?);
    Ok(())
}

/// Writes bytes as a standard base64 JSON string (with padding).
pub fn write_base64(out: &mut String, data: &[u8]) {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(data.len().div_ceil(3) * 4 + 2);
    out.push('"');
    for chunk in data.chunks(3) {
        let n = match chunk.len() {
            3 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]),
            2 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8,
            _ => u32::from(chunk[0]) << 16,
        };
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push('"');
}

fn get_i64(v: &Bound<'_, PyAny>, attr: &str) -> PyResult<i64> {
    v.getattr(attr)?.extract()
}

fn date_days(v: &Bound<'_, PyAny>) -> PyResult<i64> {
    let y = get_i64(v, "year")?;
    let m = get_i64(v, "month")?;
    let d = get_i64(v, "day")?;
    Ok(time::days_from_civil(y as i32, m as u32, d as u32))
}

/// Microseconds since the epoch of a `datetime`; aware ones are converted to UTC with their
/// `utcoffset()`, naive ones are taken as UTC.
pub fn datetime_micros(v: &Bound<'_, PyAny>) -> Result<i64, ConvertError> {
    let inner = || -> PyResult<i64> {
        let days = date_days(v)?;
        let secs = get_i64(v, "hour")? * 3600 + get_i64(v, "minute")? * 60 + get_i64(v, "second")?;
        let mut micros = days * 86_400_000_000 + secs * 1_000_000 + get_i64(v, "microsecond")?;
        let offset = v.call_method0("utcoffset")?;
        if !offset.is_none() {
            let off = get_i64(&offset, "days")? * 86_400_000_000
                + get_i64(&offset, "seconds")? * 1_000_000
                + get_i64(&offset, "microseconds")?;
            micros -= off;
        }
        Ok(micros)
    };
    let micros = inner().map_err(py_err)?;
    if !(time::MIN_MICROS..=time::MAX_MICROS).contains(&micros) {
        return Err(ConvertError::new(
            "datetime in UTC is outside 0001-01-01..9999-12-31",
        ));
    }
    Ok(micros)
}

/// `Some(micros)` when `v` is a `datetime`, `None` when it is not one.
pub fn datetime_micros_checked(v: &Bound<'_, PyAny>) -> Option<Result<i64, ConvertError>> {
    let t = match types(v.py()) {
        Ok(t) => t,
        Err(e) => return Some(Err(py_err(e))),
    };
    match v.is_instance(t.datetime.bind(v.py())) {
        Ok(true) => Some(datetime_micros(v)),
        Ok(false) => None,
        Err(e) => Some(Err(py_err(e))),
    }
}

/// The JSON text `log()` would send for `event` (tests, debugging): `evlog._evlog.to_json`.
#[pyfunction]
pub fn to_json(event: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut out = String::with_capacity(256);
    write_event(&mut out, event).map_err(crate::error::Error::from)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            write_base64(&mut out, raw.as_bytes());
            assert_eq!(out, format!("\"{enc}\""));
        }
    }

    #[test]
    fn error_paths_read_from_the_root() {
        let e = ConvertError::new("bad")
            .within("[2]".into())
            .within(".items".into())
            .within("event".into());
        assert_eq!(e.to_string(), "invalid field \"event.items[2]\": bad");
    }
}
