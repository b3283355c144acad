//! Conversion of event values into BigQuery row values, by BigQuery's rules per type.
//!
//! Contract: [`TableSchema::to_row`] writes the row JSON text directly (no intermediate `Value` tree), in
//! schema column order followed by the reserved columns. Each value is written in the form a
//! `NEWLINE_DELIMITED_JSON` load job and `insertAll` accept and BigQuery would store:
//!
//! | type | accepted | written |
//! |---|---|---|
//! | STRING | string; number (its text as sent) or bool | string, `maxLength` checked in characters |
//! | BYTES | base64 string (padding optional) | canonical padded base64, `maxLength` in bytes |
//! | INT64 | integer in i64, or its string (`"+7"`) | number |
//! | FLOAT64 | number, numeric string, `NaN`/`Infinity`/`-Infinity`/`inf` | number or `"NaN"`/`"Infinity"`/`"-Infinity"` |
//! | NUMERIC, BIGNUMERIC | decimal string or number (≤ 15 significant digits unless integral) | canonical decimal string |
//! | BOOL | bool, `"true"`/`"false"`/`"1"`/`"0"`, 1/0 | bool |
//! | TIMESTAMP | [`crate::time::parse_timestamp`] string, or epoch seconds | `YYYY-MM-DDTHH:MM:SS.ffffffZ` |
//! | DATE, TIME, DATETIME | the [`crate::time`] forms | canonical text |
//! | JSON | any value | its JSON text as sent (whitespace removed), as a string |
//! | GEOGRAPHY | WKT string, or GeoJSON object | string |
//! | RECORD | object | object |
//!
//! NULL or absent NULLABLE and REPEATED columns are omitted; REQUIRED ones are errors. `to_row`
//! never panics, whatever the input.
//!
//! The same code also checks rows it wrote (the row pass, `Pass::Row`, used by
//! `super::row_check`): every written form is in the accepted column of its type and converts
//! to itself, except JSON and GEOGRAPHY, whose written strings the row pass keeps as they are
//! after checking they hold JSON text, or WKT or GeoJSON object text.
//!
//! `other` holds the members no column names as they were sent (see `super::jref`): numbers
//! digit for digit (`123456789012345678901234567890` stays that, not a double), strings and keys
//! with their escapes as written, members in the order sent, duplicates included; only the
//! whitespace between tokens is dropped. Top-level leftovers come first, in text order, then
//! each RECORD column's leftovers under its name, in schema order. JSON columns keep their
//! value's text the same way.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Number;

use super::jref::{self, JNum, JRef, JStr, Obj};

use super::decimal::{self, DecimalError, Limits, Rounding};
use super::{Field, FieldType, Mode, RecordIndex, Row, RowMeta, TableSchema};
use crate::time;

/// Longest value excerpt quoted in an error, in bytes of JSON text (cut at a char boundary).
const EXCERPT_BYTES: usize = 64;

/// A short, stable classification of a [`RowError`], usable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowErrorReason {
    /// A REQUIRED column is missing or null.
    MissingRequired,
    /// The value has the wrong type or shape for the column.
    InvalidValue,
    /// The value has the right shape but does not fit the column's range.
    OutOfRange,
    /// Longer than the column's `maxLength`.
    TooLong,
    /// Two keys name the same column (column names are case-insensitive).
    DuplicateField,
    /// A row (not an event: events keep such keys in `other`) has a key no column names.
    UnknownField,
}

impl RowErrorReason {
    /// Every reason.
    pub const ALL: [RowErrorReason; 6] = [
        RowErrorReason::MissingRequired,
        RowErrorReason::InvalidValue,
        RowErrorReason::OutOfRange,
        RowErrorReason::TooLong,
        RowErrorReason::DuplicateField,
        RowErrorReason::UnknownField,
    ];

    /// The snake_case label, e.g. `missing_required`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RowErrorReason::MissingRequired => "missing_required",
            RowErrorReason::InvalidValue => "invalid_value",
            RowErrorReason::OutOfRange => "out_of_range",
            RowErrorReason::TooLong => "too_long",
            RowErrorReason::DuplicateField => "duplicate_field",
            RowErrorReason::UnknownField => "unknown_field",
        }
    }
}

impl std::fmt::Display for RowErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event could not become a row. Display: `field "<path>": <message>`, where the message
/// names the expected type, a bounded excerpt of the value, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field \"{field}\": {message}")]
pub struct RowError {
    /// Path of the field, e.g. `items[2].price`.
    pub field: String,
    /// Classification for metrics.
    pub reason: RowErrorReason,
    /// Human-readable explanation.
    pub message: String,
}

/// Compact JSON text of `v`, cut to about [`EXCERPT_BYTES`] with `…` when longer. Writing
/// stops soon after the limit, so a huge value costs no more than a small one.
pub(crate) fn excerpt(v: &JRef<'_>) -> String {
    let mut s = String::new();
    let complete = v.write_compact_bounded(&mut s, EXCERPT_BYTES + 4);
    let truncated = !complete || s.len() > EXCERPT_BYTES;
    if truncated {
        // Cut at a char boundary at or before the limit.
        let mut cut = EXCERPT_BYTES.min(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn type_label(f: &Field) -> String {
    match (&f.ty, f.precision) {
        (FieldType::Numeric | FieldType::BigNumeric, Some(p)) => {
            format!("{}({}, {})", f.ty.sql_name(), p, f.scale.unwrap_or(0))
        }
        _ => f.ty.sql_name().to_owned(),
    }
}

fn invalid(path: &Path<'_>, f: &Field, v: &JRef<'_>, rule: &str) -> RowError {
    fail(path, RowErrorReason::InvalidValue, f, v, rule)
}

fn fail(path: &Path<'_>, reason: RowErrorReason, f: &Field, v: &JRef<'_>, rule: &str) -> RowError {
    RowError {
        field: path.render(),
        reason,
        message: format!("expected {}, got {}: {rule}", type_label(f), excerpt(v)),
    }
}

/// Writes a TIMESTAMP as a JSON string (its text never needs escaping).
fn push_timestamp(out: &mut String, micros: i64) {
    out.push('"');
    time::push_timestamp(out, micros);
    out.push('"');
}

/// Writes `,` unless `out` is right after an object's `{`: a value never ends in `{`, so that is
/// exactly "no member written yet".
fn push_separator(out: &mut String) {
    if !out.ends_with('{') {
        out.push(',');
    }
}

fn compact(v: &JRef<'_>) -> String {
    let mut s = String::new();
    v.write_compact(&mut s);
    s
}

/// Room for the reserved columns (`event_id`, `event_time`, `received_at` and their keys) and
/// `other`'s quoting, beside the event's own text.
const RESERVED_TEXT: usize = 160;

/// Validates and converts one event (see [`TableSchema::to_row`]). `text_len` is the event's
/// text length, 0 if unknown: the row is about that long plus the reserved columns, so its
/// buffer is sized once instead of grown.
pub(crate) fn to_row(
    schema: &TableSchema,
    event: Obj<'_>,
    meta: &RowMeta,
    text_len: usize,
) -> Result<Row, RowError> {
    let mut out = String::with_capacity(text_len.max(96) + RESERVED_TEXT);
    let mut leftovers = Obj::new();
    out.push('{');
    write_record_fields(
        &schema.fields,
        &schema.index,
        event,
        &Path::Root,
        &mut out,
        &mut leftovers,
        &schema.reserved,
        Pass::Event,
    )?;
    let other = (!leftovers.is_empty()).then(|| {
        let mut text = String::with_capacity(text_len.clamp(32, 1024));
        jref::write_object(&leftovers, &mut text);
        text
    });
    Ok(finish_row(schema, out, meta, other.as_deref()))
}

/// Which input the converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// An event, as sent by a caller.
    Event,
    /// A row this converter wrote (see [`super::row_check`]): JSON and GEOGRAPHY columns hold
    /// the JSON or WKT text the event pass wrote, so they must be strings of that text and are
    /// kept as they are (the event pass would quote them again).
    Row,
}

/// The row pass: converts a row's non-reserved columns (the reserved keys taken out by the
/// caller) into the row text up to, not including, the reserved columns (it starts with `{` and
/// is completed by [`finish_row`]); returns the members no column names, for the caller to
/// refuse.
pub(crate) fn row_fields<'a>(
    schema: &TableSchema,
    row: Obj<'a>,
) -> Result<(String, Obj<'a>), RowError> {
    let mut out = String::with_capacity(256);
    let mut leftovers = Obj::new();
    out.push('{');
    write_record_fields(
        &schema.fields,
        &schema.index,
        row,
        &Path::Root,
        &mut out,
        &mut leftovers,
        &schema.reserved,
        Pass::Row,
    )?;
    Ok((out, leftovers))
}

/// Appends the reserved columns (and `other`'s JSON object text, if any) to the columns written
/// so far, and closes the row.
pub(crate) fn finish_row(
    schema: &TableSchema,
    mut out: String,
    meta: &RowMeta,
    other_text: Option<&str>,
) -> Row {
    let [id_ix, time_ix, recv_ix, other_ix] = schema.reserved;
    let key = |out: &mut String, ix: usize| {
        push_separator(out);
        out.push_str(&schema.index.keys[ix]);
    };
    key(&mut out, id_ix);
    crate::json::push_str(&mut out, &meta.event_id);
    for (ix, micros) in [(time_ix, meta.event_time), (recv_ix, meta.received_at)] {
        key(&mut out, ix);
        push_timestamp(&mut out, micros);
    }
    let other = &schema.fields[other_ix];
    if let Some(text) = other_text {
        key(&mut out, other_ix);
        crate::json::push_str(&mut out, text);
    } else if other.mode == Mode::Required {
        // A schema may declare `other` REQUIRED; BigQuery would reject the row without it.
        key(&mut out, other_ix);
        crate::json::push_str(&mut out, "{}");
    }
    out.push('}');
    Row { json: out }
}

/// Matches the keys of `obj` to `fields` and writes `"name":value` pairs (without braces) for
/// every column that has a value. Unmatched keys go to `leftovers`.
// The recursion's state, passed down as it is (a struct of it would be rebuilt at every level).
#[allow(clippy::too_many_arguments)]
fn write_record_fields<'a>(
    fields: &[Field],
    index: &RecordIndex,
    mut obj: Obj<'a>,
    path: &Path<'_>,
    out: &mut String,
    leftovers: &mut Obj<'a>,
    skip: &[usize],
    pass: Pass,
) -> Result<(), RowError> {
    // The member matched to each field (NONE: absent); on the stack for the usual record size.
    const STACK: usize = 32;
    let mut stack = [NONE; STACK];
    let mut heap = Vec::new();
    let slots: &mut [u32] = if fields.len() <= STACK {
        &mut stack[..fields.len()]
    } else {
        heap.resize(fields.len(), NONE);
        &mut heap
    };
    let (matched, mask) = match match_members(index, &obj, slots) {
        Ok(m) => m,
        Err(()) => {
            // Two keys name one column: decide in key order, as a `serde_json::Map` (sorted,
            // last duplicate winning) would, so the error names the same two keys.
            obj = jref::sorted(obj);
            slots.fill(NONE);
            match match_members(index, &obj, slots) {
                Ok(m) => m,
                Err(()) => return Err(duplicate(fields, index, &obj, path)),
            }
        }
    };
    if matched < obj.len() {
        for (j, (k, v)) in obj.iter_mut().enumerate() {
            let named = match mask.get(j) {
                Some(m) => m,
                None => index.lookup(&k.value()).is_some(),
            };
            if !named {
                leftovers.push((std::mem::take(k), std::mem::replace(v, JRef::Null)));
            }
        }
    }
    for (i, (f, &slot)) in fields.iter().zip(slots.iter()).enumerate() {
        // Reserved columns are filled by the caller.
        if skip.contains(&i) {
            continue;
        }
        let fpath = Path::Field(path, &f.name);
        let value = match obj.get_mut(slot as usize) {
            Some((_, v)) => std::mem::replace(v, JRef::Null),
            None => JRef::Null,
        };
        let child = index.children.get(i).and_then(Option::as_ref);
        let mut nested_left = JRef::Null;
        // Write the key optimistically and take it back if the column turns out to be empty.
        let mark = out.len();
        push_separator(out);
        out.push_str(&index.keys[i]);
        if !write_column(f, child, value, &fpath, out, &mut nested_left, pass)? {
            out.truncate(mark);
        }
        if !nested_left.is_null() {
            leftovers.push((JStr::plain(f.name.clone()), nested_left));
        }
    }
    Ok(())
}

/// No member for this field.
const NONE: u32 = u32::MAX;

/// Which of the first 64 members name a field (later ones are looked up again).
#[derive(Default)]
struct Named(u64);

impl Named {
    fn get(&self, j: usize) -> Option<bool> {
        (j < 64).then(|| self.0 >> j & 1 == 1)
    }
}

/// Fills `slots` (field → member index) and returns how many members name a field, and which;
/// exact duplicate keys: the last wins. `Err` when two different keys name one field (case).
fn match_members(
    index: &RecordIndex,
    obj: &Obj<'_>,
    slots: &mut [u32],
) -> Result<(usize, Named), ()> {
    let mut matched = 0;
    let mut named = Named::default();
    for (j, (k, _)) in obj.iter().enumerate() {
        if let Some(i) = index.lookup(&k.value()) {
            let prev = slots[i];
            if prev != NONE && obj[prev as usize].0 != *k {
                return Err(());
            }
            slots[i] = j as u32;
            matched += 1;
            if j < 64 {
                named.0 |= 1 << j;
            }
        }
    }
    Ok((matched, named))
}

/// The error for the first column (in key order of the sorted `obj`) that two keys name.
fn duplicate(fields: &[Field], index: &RecordIndex, obj: &Obj<'_>, path: &Path<'_>) -> RowError {
    let mut first: Vec<Option<Cow<'_, str>>> = vec![None; fields.len()];
    for (k, _) in obj {
        let k = k.value();
        let Some(i) = index.lookup(&k) else { continue };
        if let Some(prev) = &first[i] {
            return RowError {
                field: Path::Field(path, &fields[i].name).render(),
                reason: RowErrorReason::DuplicateField,
                message: format!(
                    "keys \"{prev}\" and \"{k}\" both name column \"{}\" (column names are \
                     case-insensitive)",
                    fields[i].name
                ),
            };
        }
        first[i] = Some(k);
    }
    RowError {
        field: path.render(),
        reason: RowErrorReason::DuplicateField,
        message: "internal error: duplicate keys not found again".into(),
    }
}

/// A field path built on the stack while descending, rendered (`items[2].price`) only when an
/// error needs it, so valid rows allocate no path strings.
#[derive(Debug, Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut s = String::new();
        self.push_to(&mut s);
        s
    }

    fn push_to(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Field(parent, name) => {
                parent.push_to(out);
                if !matches!(parent, Path::Root) {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.push_to(out);
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// Writes one column's value into `out`; returns whether anything was written. Leftover keys of
/// RECORDs end up in `left` (an object, or an array of objects for REPEATED RECORDs).
fn write_column<'a>(
    f: &Field,
    index: Option<&RecordIndex>,
    value: JRef<'a>,
    path: &Path<'_>,
    out: &mut String,
    left: &mut JRef<'a>,
    pass: Pass,
) -> Result<bool, RowError> {
    match (f.mode, value) {
        (Mode::Required, JRef::Null) => Err(RowError {
            field: path.render(),
            reason: RowErrorReason::MissingRequired,
            message: format!(
                "expected {} (REQUIRED), got null or no value",
                type_label(f)
            ),
        }),
        (_, JRef::Null) => Ok(false),
        (Mode::Repeated, JRef::Array(items)) => {
            out.push('[');
            let is_record = matches!(f.ty, FieldType::Record(_));
            let mut lefts = Vec::new();
            let mut any_left = false;
            for (i, item) in items.into_iter().enumerate() {
                let ipath = Path::Index(path, i);
                if item.is_null() {
                    return Err(RowError {
                        field: ipath.render(),
                        reason: RowErrorReason::InvalidValue,
                        message: format!(
                            "expected {}, got null: REPEATED columns cannot hold null elements",
                            type_label(f)
                        ),
                    });
                }
                if i > 0 {
                    out.push(',');
                }
                let mut l = JRef::Null;
                write_value(f, index, item, &ipath, out, &mut l, pass)?;
                if is_record {
                    any_left |= !l.is_null();
                    // Keep positions so `other` mirrors the array; elements with nothing left
                    // are {}.
                    lefts.push(if l.is_null() {
                        JRef::Object(Obj::new())
                    } else {
                        l
                    });
                }
            }
            out.push(']');
            if any_left {
                *left = JRef::Array(lefts);
            }
            Ok(true)
        }
        (Mode::Repeated, v) => Err(invalid(path, f, &v, "a REPEATED column takes a JSON array")),
        (_, v) => {
            write_value(f, index, v, path, out, left, pass)?;
            Ok(true)
        }
    }
}

/// Writes one non-null value of the field's type.
fn write_value<'a>(
    f: &Field,
    index: Option<&RecordIndex>,
    v: JRef<'a>,
    path: &Path<'_>,
    out: &mut String,
    left: &mut JRef<'a>,
    pass: Pass,
) -> Result<(), RowError> {
    match &f.ty {
        FieldType::Record(sub) => {
            let JRef::Object(obj) = v else {
                return Err(invalid(path, f, &v, "a RECORD takes a JSON object"));
            };
            let Some(index) = index else {
                // Built for every RECORD at load time; absence would be a bug, not bad input.
                return Err(invalid(
                    path,
                    f,
                    &JRef::Object(obj),
                    "internal error: no index for RECORD",
                ));
            };
            let mut nested = Obj::new();
            out.push('{');
            write_record_fields(sub, index, obj, path, out, &mut nested, &[], pass)?;
            out.push('}');
            if !nested.is_empty() {
                *left = JRef::Object(nested);
            }
            Ok(())
        }
        _ => write_scalar(f, &v, path, out, pass),
    }
}

fn write_scalar(
    f: &Field,
    v: &JRef<'_>,
    path: &Path<'_>,
    out: &mut String,
    pass: Pass,
) -> Result<(), RowError> {
    match &f.ty {
        FieldType::Json | FieldType::Geography if pass == Pass::Row => {
            written_text(f, v, path, out)?;
        }
        FieldType::String => {
            let owned;
            let s = match v {
                JRef::String(s) => {
                    owned = s.value();
                    owned.as_ref()
                }
                // A number's text as sent.
                JRef::Number(n) => n.text(),
                JRef::Bool(b) => {
                    if *b {
                        "true"
                    } else {
                        "false"
                    }
                }
                _ => {
                    return Err(invalid(
                        path,
                        f,
                        v,
                        "objects and arrays are not STRING values",
                    ))
                }
            };
            if let Some(max) = f.max_length {
                let n = s.chars().count() as u64;
                if n > max {
                    return Err(fail(
                        path,
                        RowErrorReason::TooLong,
                        f,
                        v,
                        &format!("{n} characters exceed maxLength {max}"),
                    ));
                }
            }
            crate::json::push_str(out, s);
        }
        FieldType::Bytes => {
            let JRef::String(s) = v else {
                return Err(invalid(path, f, v, "BYTES take a base64 string"));
            };
            let bytes =
                base64_decode(&s.value()).ok_or_else(|| invalid(path, f, v, "not valid base64"))?;
            if let Some(max) = f.max_length {
                if bytes.len() as u64 > max {
                    return Err(fail(
                        path,
                        RowErrorReason::TooLong,
                        f,
                        v,
                        &format!("{} bytes exceed maxLength {max}", bytes.len()),
                    ));
                }
            }
            out.push('"');
            base64_encode(&bytes, out);
            out.push('"');
        }
        FieldType::Int64 => {
            let n = int64(v).map_err(|(reason, rule)| fail(path, reason, f, v, rule))?;
            crate::json::push_i64(out, n);
        }
        FieldType::Float64 => write_float(f, v, path, out)?,
        FieldType::Numeric | FieldType::BigNumeric => {
            // Decimal text never needs escaping.
            out.push('"');
            numeric(f, v, out).map_err(|(reason, rule)| fail(path, reason, f, v, &rule))?;
            out.push('"');
        }
        FieldType::Bool => {
            let b = match v {
                JRef::Bool(b) => Some(*b),
                JRef::String(s) if s.value().eq_ignore_ascii_case("true") || *s == *"1" => {
                    Some(true)
                }
                JRef::String(s) if s.value().eq_ignore_ascii_case("false") || *s == *"0" => {
                    Some(false)
                }
                JRef::Number(n) => match n.as_u64() {
                    Some(1) => Some(true),
                    Some(0) => Some(false),
                    _ => None,
                },
                _ => None,
            };
            let b = b.ok_or_else(|| {
                invalid(
                    path,
                    f,
                    v,
                    "BOOL takes true/false, \"true\"/\"false\", \"1\"/\"0\" or 1/0",
                )
            })?;
            out.push_str(if b { "true" } else { "false" });
        }
        FieldType::Timestamp => {
            let micros = match v {
                JRef::String(s) => {
                    time::parse_timestamp(&s.value()).map_err(|e| time_err(path, f, v, e))?
                }
                JRef::Number(n) => epoch_seconds(n).ok_or_else(|| {
                    fail(
                        path,
                        RowErrorReason::OutOfRange,
                        f,
                        v,
                        "epoch seconds out of range 0001-01-01..9999-12-31",
                    )
                })?,
                _ => {
                    return Err(invalid(
                        path,
                        f,
                        v,
                        "TIMESTAMP takes a string or epoch seconds",
                    ))
                }
            };
            push_timestamp(out, micros);
        }
        FieldType::Date => {
            let JRef::String(s) = v else {
                return Err(invalid(path, f, v, "DATE takes a 'YYYY-MM-DD' string"));
            };
            let d = time::parse_date(&s.value()).map_err(|e| time_err(path, f, v, e))?;
            crate::json::push_str(out, &time::format_date(d));
        }
        FieldType::Time => {
            let JRef::String(s) = v else {
                return Err(invalid(
                    path,
                    f,
                    v,
                    "TIME takes a 'HH:MM:SS[.ffffff]' string",
                ));
            };
            let t = time::parse_time(&s.value()).map_err(|e| time_err(path, f, v, e))?;
            crate::json::push_str(out, &time::format_time(t));
        }
        FieldType::DateTime => {
            let JRef::String(s) = v else {
                return Err(invalid(
                    path,
                    f,
                    v,
                    "DATETIME takes a 'YYYY-MM-DD HH:MM:SS[.ffffff]' string",
                ));
            };
            let t = time::parse_datetime(&s.value()).map_err(|e| time_err(path, f, v, e))?;
            crate::json::push_str(out, &time::format_datetime(t));
        }
        FieldType::Json => crate::json::push_str(out, &compact(v)),
        FieldType::Geography => match v {
            JRef::String(s) if is_wkt(&s.value()) => crate::json::push_str(out, &s.value()),
            JRef::Object(o) if matches!(jref::get(o, "type"), Some(JRef::String(_))) => {
                crate::json::push_str(out, &compact(v))
            }
            _ => {
                return Err(invalid(
                    path,
                    f,
                    v,
                    "GEOGRAPHY takes a WKT string (POINT, LINESTRING, POLYGON, MULTI…, \
                     GEOMETRYCOLLECTION) or a GeoJSON object with a \"type\"",
                ))
            }
        },
        FieldType::Record(_) => {
            return Err(invalid(path, f, v, "internal error: RECORD as scalar"))
        }
    }
    Ok(())
}

/// The row pass of a JSON or GEOGRAPHY column: the string the event pass wrote (JSON text; WKT
/// or GeoJSON object text), kept as it is.
fn written_text(
    f: &Field,
    v: &JRef<'_>,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), RowError> {
    let JRef::String(s) = v else {
        return Err(invalid(
            path,
            f,
            v,
            "a row holds this column as a string of its text",
        ));
    };
    let text = s.value();
    let ok = match f.ty {
        FieldType::Json => serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
        _ => {
            is_wkt(&text)
                || matches!(
                    jref::parse(&text),
                    Ok(JRef::Object(ref o)) if matches!(jref::get(o, "type"), Some(JRef::String(_)))
                )
        }
    };
    if !ok {
        let rule = if f.ty == FieldType::Json {
            "not JSON text"
        } else {
            "neither WKT nor the text of a GeoJSON object with a \"type\""
        };
        return Err(invalid(path, f, v, rule));
    }
    // The string as the row wrote it (escapes as sent), like every other string evlog keeps.
    s.write(out);
    Ok(())
}

fn time_err(path: &Path<'_>, f: &Field, v: &JRef<'_>, e: time::TimeError) -> RowError {
    let reason = match e {
        time::TimeError::Syntax { .. } | time::TimeError::ZoneNotAllowed { .. } => {
            RowErrorReason::InvalidValue
        }
        _ => RowErrorReason::OutOfRange,
    };
    fail(path, reason, f, v, &e.to_string())
}

fn int64(v: &JRef<'_>) -> Result<i64, (RowErrorReason, &'static str)> {
    const RANGE: &str = "out of INT64 range -9223372036854775808..9223372036854775807";
    match v {
        JRef::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.is_integer_literal() && n.text() != "-0" {
                // Digits beyond i64, of any length.
                Err((RowErrorReason::OutOfRange, RANGE))
            } else {
                // Beyond doubles (1e400) counts as integral: out of range too.
                let x = n.text().parse::<f64>().unwrap_or(f64::NAN);
                // 1e19 is integral but beyond i64: a range error says more than "not an integer".
                if (x.fract() == 0.0 || x.is_infinite()) && x.abs() >= 2f64.powi(63) {
                    Err((RowErrorReason::OutOfRange, RANGE))
                } else {
                    Err((
                        RowErrorReason::InvalidValue,
                        "INT64 takes integers, not fractions or exponents",
                    ))
                }
            }
        }
        JRef::String(s) => {
            let s = s.value();
            let digits = s.strip_prefix(['+', '-']).unwrap_or(&s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err((RowErrorReason::InvalidValue, "not an integer"));
            }
            s.parse::<i64>()
                .map_err(|_| (RowErrorReason::OutOfRange, RANGE))
        }
        _ => Err((
            RowErrorReason::InvalidValue,
            "INT64 takes a number or a string of an integer",
        )),
    }
}

fn write_float(f: &Field, v: &JRef<'_>, path: &Path<'_>, out: &mut String) -> Result<(), RowError> {
    match v {
        JRef::Number(n) => match n.to_number() {
            // The value serde_json reads from the text, in its shortest exact text (integers
            // as written): what BigQuery stores, not the sender's spelling.
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => {
                return Err(fail(
                    path,
                    RowErrorReason::OutOfRange,
                    f,
                    v,
                    "out of FLOAT64 range",
                ))
            }
        },
        JRef::String(s) => {
            let s = s.value();
            let special = match s.to_ascii_lowercase().as_str() {
                "nan" => Some("NaN"),
                "infinity" | "inf" | "+infinity" | "+inf" => Some("Infinity"),
                "-infinity" | "-inf" => Some("-Infinity"),
                _ => None,
            };
            if let Some(word) = special {
                crate::json::push_str(out, word);
                return Ok(());
            }
            // Rust's parser also takes "infinity" and "nan" spellings; only plain numerals here.
            let numeral = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
            match s.parse::<f64>().ok().filter(|_| numeral) {
                Some(x) => match Number::from_f64(x) {
                    Some(n) => {
                        let _ = write!(out, "{n}");
                    }
                    None => {
                        return Err(fail(
                            path,
                            RowErrorReason::OutOfRange,
                            f,
                            v,
                            "out of FLOAT64 range",
                        ))
                    }
                },
                None => return Err(invalid(path, f, v, "not a number")),
            }
        }
        _ => {
            return Err(invalid(
                path,
                f,
                v,
                "FLOAT64 takes a number or a numeric string",
            ))
        }
    }
    Ok(())
}

fn numeric(f: &Field, v: &JRef<'_>, out: &mut String) -> Result<(), (RowErrorReason, String)> {
    let big = matches!(f.ty, FieldType::BigNumeric);
    let limits = match f.precision {
        Some(p) => Limits {
            precision: p,
            scale: f.scale.unwrap_or(0),
            bignumeric_default: false,
        },
        None if big => Limits::BIGNUMERIC,
        None => Limits::NUMERIC,
    };
    let rounding = match f
        .extra
        .get("roundingMode")
        .and_then(serde_json::Value::as_str)
    {
        Some("ROUND_HALF_EVEN") => Rounding::HalfEven,
        _ => Rounding::HalfAwayFromZero,
    };
    let parsed = match v {
        JRef::String(s) => decimal::parse(&s.value()).map_err(|_| {
            (
                RowErrorReason::InvalidValue,
                "not a decimal number".to_owned(),
            )
        })?,
        JRef::Number(n) => {
            if n.is_integer_literal() {
                // The digits as sent, exact at any length.
                decimal::parse(n.text())
            } else {
                let Some(x) = n.as_f64() else {
                    return Err((
                        RowErrorReason::OutOfRange,
                        format!("out of range for {}", f.ty.sql_name()),
                    ));
                };
                // `{:e}` prints the shortest text that round-trips, i.e. the digits the sender
                // most likely wrote.
                let text = format!("{x:e}");
                let d = decimal::parse(&text);
                if let Ok(d) = &d {
                    if x.fract() != 0.0 && d.significant_digits() > 15 {
                        return Err((
                            RowErrorReason::InvalidValue,
                            "more than 15 significant digits in a JSON number lose precision as \
                             float; send high-precision decimals as strings"
                                .to_owned(),
                        ));
                    }
                }
                d
            }
            .map_err(|_| {
                (
                    RowErrorReason::InvalidValue,
                    "not a decimal number".to_owned(),
                )
            })?
        }
        _ => {
            return Err((
                RowErrorReason::InvalidValue,
                format!("{} takes a decimal string or a number", f.ty.sql_name()),
            ))
        }
    };
    parsed.canonical_into(limits, rounding, out).map_err(|e| match e {
        DecimalError::OutOfRange => {
            let range = if limits.bignumeric_default {
                "out of range for BIGNUMERIC (±5.7896044618658097711785492504343953926634992332820282019728792003956564819967E+38)"
                    .to_owned()
            } else {
                format!("out of range for {}({}, {})", f.ty.sql_name(), limits.precision, limits.scale)
            };
            (RowErrorReason::OutOfRange, range)
        }
        DecimalError::Syntax => (RowErrorReason::InvalidValue, "not a decimal number".to_owned()),
    })
}

/// Epoch seconds (fraction allowed) to microseconds, if in BigQuery's range.
fn epoch_seconds(n: &JNum<'_>) -> Option<i64> {
    let micros = if let Some(i) = n.as_i64() {
        i.checked_mul(1_000_000)?
    } else {
        let x = n.as_f64()? * 1e6;
        // Round to the nearest microsecond: 1.1 s is 1100000.0000000002 µs as f64.
        let r = x.round();
        if !(time::MIN_MICROS as f64..=time::MAX_MICROS as f64).contains(&r) {
            return None;
        }
        r as i64
    };
    (time::MIN_MICROS..=time::MAX_MICROS)
        .contains(&micros)
        .then_some(micros)
}

fn is_wkt(s: &str) -> bool {
    const KINDS: [&str; 7] = [
        "GEOMETRYCOLLECTION",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "MULTIPOINT",
        "LINESTRING",
        "POLYGON",
        "POINT",
    ];
    let t = s.trim_start().as_bytes();
    KINDS
        .iter()
        .any(|k| t.len() >= k.len() && t[..k.len()].eq_ignore_ascii_case(k.as_bytes()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes standard base64 (RFC 4648 §4). Padding is optional but, if present, must be correct;
/// a lone trailing character (length ≡ 1 mod 4) is invalid.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let body = match b {
        [rest @ .., b'=', b'='] => {
            if b.len() % 4 != 0 {
                return None;
            }
            rest
        }
        [rest @ .., b'='] => {
            if b.len() % 4 != 0 {
                return None;
            }
            rest
        }
        _ => b,
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut acc: u32 = 0;
        for &c in chunk {
            acc = (acc << 6) | b64_value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sym = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
}
