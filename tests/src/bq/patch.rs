//! `tables.patch` and `tables.update` by BigQuery's rules for changing a table's schema: only
//! additive changes (new NULLABLE or REPEATED columns, at any RECORD depth; REQUIRED relaxed to
//! NULLABLE). Anything else is refused with 400 `invalid` and a message in BigQuery's words
//! ("Provided Schema does not match Table p:d.t. ..."). A schema that gained columns takes
//! [`Shared::propagation`](super::Shared) to reach `insertAll`: until then rows are checked
//! against the schema from before (a new field is "no such field: x."), while `tables.get`
//! already shows the new one, as BigQuery does while a schema change propagates.

use std::time::Instant;

use serde_json::Value;

use super::schema::{self, ColMode, ColType, Column};

/// BigQuery's name of a column type (the legacy names the API returns).
pub(crate) fn type_name(t: ColType) -> &'static str {
    match t {
        ColType::String => "STRING",
        ColType::Bytes => "BYTES",
        ColType::Integer => "INTEGER",
        ColType::Float => "FLOAT",
        ColType::Numeric => "NUMERIC",
        ColType::BigNumeric => "BIGNUMERIC",
        ColType::Boolean => "BOOLEAN",
        ColType::Timestamp => "TIMESTAMP",
        ColType::Date => "DATE",
        ColType::Time => "TIME",
        ColType::DateTime => "DATETIME",
        ColType::Json => "JSON",
        ColType::Geography => "GEOGRAPHY",
        ColType::Interval => "INTERVAL",
        ColType::Record => "RECORD",
    }
}

/// BigQuery's name of a mode.
pub(crate) fn mode_name(m: ColMode) -> &'static str {
    match m {
        ColMode::Nullable => "NULLABLE",
        ColMode::Required => "REQUIRED",
        ColMode::Repeated => "REPEATED",
    }
}

/// The new columns when `new` may replace `old` (the body of a `tables.patch` / `update`), or
/// BigQuery's message for the first rule broken. `table` is `p:d.t`.
pub(crate) fn check(table: &str, old: &[Column], new: &Value) -> Result<Vec<Column>, String> {
    let columns = schema::parse_schema(new)?;
    compare(table, "", old, &columns)?;
    Ok(columns)
}

fn compare(table: &str, prefix: &str, old: &[Column], new: &[Column]) -> Result<(), String> {
    let refuse = |what: String| format!("Provided Schema does not match Table {table}. {what}");
    let path = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    for o in old {
        if !new.iter().any(|n| n.name.eq_ignore_ascii_case(&o.name)) {
            return Err(refuse(format!(
                "Field {} is missing in new schema",
                path(&o.name)
            )));
        }
    }
    for n in new {
        let Some(o) = old.iter().find(|o| o.name.eq_ignore_ascii_case(&n.name)) else {
            if n.mode == ColMode::Required {
                return Err(refuse(format!(
                    "Cannot add required fields to an existing schema. (field: {})",
                    path(&n.name)
                )));
            }
            continue;
        };
        if o.ty != n.ty {
            return Err(refuse(format!(
                "Field {} has changed type from {} to {}",
                path(&n.name),
                type_name(o.ty),
                type_name(n.ty)
            )));
        }
        let relaxed = o.mode == ColMode::Required && n.mode == ColMode::Nullable;
        if o.mode != n.mode && !relaxed {
            return Err(refuse(format!(
                "Field {} has changed mode from {} to {}",
                path(&n.name),
                mode_name(o.mode),
                mode_name(n.mode)
            )));
        }
        if o.max_length != n.max_length {
            return Err(refuse(format!(
                "Field {} has changed maxLength",
                path(&n.name)
            )));
        }
        compare(table, &path(&n.name), &o.fields, &n.fields)?;
    }
    Ok(())
}

/// The columns `insertAll` checks rows against: while a schema change propagates, the ones
/// from before it.
#[derive(Debug, Clone)]
pub(crate) struct Propagating {
    pub columns: Vec<Column>,
    pub until: Instant,
}
