//! Checks of rows that core did not convert in this process: what the collector receives on
//! `POST /v1/rows` from the forward sink of an SDK (or from anyone holding a key allowed to send
//! rows).
//!
//! Contract: [`TableSchema::check_row`] accepts exactly the rows a table's own conversion could
//! have written, and returns the row as this process's converter writes it:
//! - the row is a JSON object;
//! - the reserved columns (matched by name, case-insensitively, as BigQuery does): `event_id` a
//!   string equal to the row's insert id, `event_time` and `received_at` TIMESTAMP strings (the
//!   forms of [`crate::time::parse_timestamp`]), all three present; `other` absent, null or a
//!   string holding a JSON object's text;
//! - every other key names a column of the schema (a row never carries unknown keys: conversion
//!   keeps them in `other`), and every column's value passes the column's conversion rules
//!   ([`super::convert`], its row pass), REQUIRED columns included.
//!
//! The output is the converter's text for those values: for a row core wrote, the same text
//! (conversion is idempotent on what it writes; `tests.rs` checks it on generated schemas and
//! events), so callers may store either.
//!
//! Errors carry a reason label (the converter's [`RowErrorReason`] labels, plus
//! [`NOT_AN_OBJECT`] and [`INVALID_JSON`] shared with event processing), the field at fault and
//! a message that names the rule.

use super::convert::{self, RowError, RowErrorReason};
use super::jref::{self, JRef, JStr, Obj};
use super::{Field, FieldType, RowMeta, TableSchema};
use crate::time;

/// Reason label: the row text is not valid JSON.
pub const INVALID_JSON: &str = "invalid_json";
/// Reason label: the row is JSON but not an object.
pub const NOT_AN_OBJECT: &str = "not_an_object";

/// A row that passed: its text as the converter writes it, and its reserved times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRow {
    /// The row as JSON text.
    pub json: String,
    /// `event_time` (µs since the epoch).
    pub event_time: i64,
    /// `received_at` (µs since the epoch).
    pub received_at: i64,
}

/// Why a row was refused (see the module docs). Display: the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RowCheckError {
    /// Reason label (`missing_required`, `invalid_value`, `unknown_field`, …).
    pub reason: &'static str,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// What is wrong, naming the field and the rule.
    pub message: String,
    /// The row's `event_time`, when it was readable (for the dead letter).
    pub event_time: Option<i64>,
    /// The row's `received_at`, when it was readable.
    pub received_at: Option<i64>,
}

impl From<RowError> for RowCheckError {
    fn from(e: RowError) -> Self {
        Self {
            reason: e.reason.as_str(),
            field: Some(e.field.clone()),
            message: e.to_string(),
            event_time: None,
            received_at: None,
        }
    }
}

fn refuse(reason: RowErrorReason, field: &str, rule: String) -> RowCheckError {
    RowError {
        field: field.to_owned(),
        reason,
        message: rule,
    }
    .into()
}

impl TableSchema {
    /// Checks a row received from elsewhere against this table (see the module docs); `id` is
    /// the row's insert id.
    pub(crate) fn check_row(&self, id: &str, text: &str) -> Result<CheckedRow, RowCheckError> {
        let whole = |reason, message: String| RowCheckError {
            reason,
            field: None,
            message,
            event_time: None,
            received_at: None,
        };
        let obj = match jref::parse(text) {
            Ok(JRef::Object(o)) => o,
            Ok(_) => return Err(whole(NOT_AN_OBJECT, "row: must be a JSON object".into())),
            Err(e) => return Err(whole(INVALID_JSON, format!("row: invalid JSON: {e}"))),
        };
        let (reserved, rest) = self.take_reserved(obj)?;
        let [id_v, time_v, recv_v, other_v] = reserved;
        let [id_ix, time_ix, recv_ix, other_ix] = self.reserved;
        let name = |ix: usize| self.fields[ix].name.as_str();
        match id_v {
            None | Some(JRef::Null) => {
                return Err(refuse(
                    RowErrorReason::MissingRequired,
                    name(id_ix),
                    "expected STRING (REQUIRED), got null or no value".into(),
                ))
            }
            Some(JRef::String(s)) if s.value() == id => {}
            Some(v) => {
                return Err(refuse(
                    RowErrorReason::InvalidValue,
                    name(id_ix),
                    format!(
                        "expected the row's insert id {}, got {}: event_id is the insert id",
                        convert::excerpt(&JRef::String(JStr::plain(id))),
                        convert::excerpt(&v)
                    ),
                ))
            }
        }
        let timestamp = |v: Option<JRef<'_>>, ix: usize| match v {
            None | Some(JRef::Null) => Err(refuse(
                RowErrorReason::MissingRequired,
                name(ix),
                "expected TIMESTAMP (REQUIRED), got null or no value".into(),
            )),
            Some(JRef::String(s)) => time::parse_timestamp(&s.value()).map_err(|e| {
                refuse(
                    RowErrorReason::InvalidValue,
                    name(ix),
                    format!(
                        "expected TIMESTAMP, got {}: {e}",
                        convert::excerpt(&JRef::String(s.clone()))
                    ),
                )
            }),
            Some(v) => Err(refuse(
                RowErrorReason::InvalidValue,
                name(ix),
                format!(
                    "expected TIMESTAMP, got {}: a row holds it as a timestamp string",
                    convert::excerpt(&v)
                ),
            )),
        };
        let event_time = timestamp(time_v, time_ix)?;
        let received_at = timestamp(recv_v, recv_ix).map_err(|mut e| {
            e.event_time = Some(event_time);
            e
        })?;
        let with_times = |mut e: RowCheckError| {
            e.event_time = Some(event_time);
            e.received_at = Some(received_at);
            e
        };
        let other = match other_v {
            None | Some(JRef::Null) => None,
            Some(JRef::String(s)) if matches!(jref::parse(&s.value()), Ok(JRef::Object(_))) => {
                Some(s)
            }
            Some(v) => {
                return Err(with_times(refuse(
                    RowErrorReason::InvalidValue,
                    name(other_ix),
                    format!(
                        "expected STRING, got {}: `other` holds a JSON object's text",
                        convert::excerpt(&v)
                    ),
                )))
            }
        };
        let (out, leftovers) = convert::row_fields(self, rest).map_err(|e| with_times(e.into()))?;
        if !leftovers.is_empty() {
            let path = first_leftover(&self.fields, &leftovers, String::new());
            return Err(with_times(refuse(
                RowErrorReason::UnknownField,
                &path,
                format!(
                    "no column of table {}.{} has this name (a row carries such keys in `other`, \
                     as JSON text)",
                    self.namespace, self.type_name
                ),
            )));
        }
        let meta = RowMeta {
            event_id: id.to_owned(),
            event_time,
            received_at,
        };
        let other = other.map(|s| s.value().into_owned());
        let row = convert::finish_row(self, out, &meta, other.as_deref());
        Ok(CheckedRow {
            json: row.json,
            event_time,
            received_at,
        })
    }

    /// Takes the reserved columns out of a row (the last of exact duplicates wins, as for any
    /// key); two spellings of one reserved name are an error, as for any column.
    #[allow(clippy::type_complexity)]
    fn take_reserved<'a>(
        &self,
        obj: Obj<'a>,
    ) -> Result<([Option<JRef<'a>>; 4], Obj<'a>), RowCheckError> {
        let mut slots: [Option<(JStr<'a>, JRef<'a>)>; 4] = Default::default();
        let mut rest = Obj::with_capacity(obj.len());
        for (k, v) in obj {
            let slot = self
                .reserved
                .iter()
                .position(|&ix| self.fields[ix].name.eq_ignore_ascii_case(&k.value()));
            match slot {
                Some(i) => {
                    if let Some((prev, _)) = &slots[i] {
                        if *prev != k {
                            let col = &self.fields[self.reserved[i]].name;
                            return Err(refuse(
                                RowErrorReason::DuplicateField,
                                col,
                                format!(
                                    "keys \"{}\" and \"{}\" both name column \"{col}\" \
                                     (column names are case-insensitive)",
                                    prev.value(),
                                    k.value()
                                ),
                            ));
                        }
                    }
                    slots[i] = Some((k, v));
                }
                None => rest.push((k, v)),
            }
        }
        Ok((slots.map(|s| s.map(|(_, v)| v)), rest))
    }
}

/// The path of the first key no column names, in the leftovers the converter collected: a
/// RECORD's leftovers sit under its column name (an array, one object per element, for a
/// REPEATED RECORD), any other key is unknown itself.
fn first_leftover(fields: &[Field], left: &Obj<'_>, path: String) -> String {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    for (k, v) in left {
        let k = k.value();
        let k = k.as_ref();
        let record = fields.iter().find_map(|f| match &f.ty {
            FieldType::Record(sub) if f.name == k => Some(sub),
            _ => None,
        });
        match (record, v) {
            (Some(sub), JRef::Object(o)) if !o.is_empty() => {
                return first_leftover(sub, o, join(k));
            }
            (Some(sub), JRef::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let JRef::Object(o) = item {
                        if !o.is_empty() {
                            return first_leftover(sub, o, format!("{}[{i}]", join(k)));
                        }
                    }
                }
            }
            _ => return join(k),
        }
    }
    path
}

#[cfg(test)]
mod tests;
