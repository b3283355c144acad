//! Schema evolution: which changes to the schema files a running evlog may take, and the
//! BigQuery schema that a table must be patched to.
//!
//! Contract:
//! - [`check_evolution`] compares the registry in use with a newly loaded one, table by table,
//!   by BigQuery's additive rules for `tables.patch` (applied recursively inside RECORDs):
//!   - a new column must be NULLABLE or REPEATED (a new REQUIRED column would make every
//!     existing row invalid);
//!   - a column may go from REQUIRED to NULLABLE (relaxing);
//!   - everything else about an existing column is refused: another type, another mode
//!     (NULLABLE→REQUIRED, anything to or from REPEATED), another `maxLength`, `precision` or
//!     `scale`, and a column that is gone (BigQuery keeps it; rows would silently lose it).
//!     A description or policy tags may change freely.
//!
//!   A refusal is [`SchemaError::Evolution`], naming `namespace.type`, the column path and the
//!   rule. Column names compare case-insensitively, as in BigQuery; order does not matter.
//! - A schema file added is a new table: accepted ([`Change::TableAdded`]); the BigQuery sink
//!   creates it on first use as it would at startup (`create_tables`).
//! - A schema file removed is accepted too ([`Change::TableRemoved`]): the BigQuery table stays
//!   as it is, and from the reload on events of that type are rejected `unknown_table` and kept
//!   as dead letters (never lost), exactly as after a restart without the file. Retiring an
//!   event type thus needs no restart; a file removed by mistake costs dead letters, not data.
//! - Who calls it: whoever swaps the [`LiveProcessor`](crate::ingest::LiveProcessor) (the SDK's
//!   flush thread when the files change, the collector on reload), before storing the new
//!   processor. The BigQuery sink then patches its tables with [`merge_for_patch`].
//! - [`merge_for_patch`] is the other half: given a table's current schema (as `tables.get`
//!   returns it) and the schema evlog wants, the field list to send in `tables.patch`: every
//!   current field in its order, with wanted modes relaxed and wanted subfields added, then the
//!   wanted fields it lacks, appended (BigQuery appends new columns at the end). Fields only the
//!   table has are kept; nothing is ever removed or retyped.

use serde_json::Value;

use super::{Field, FieldType, Mode, SchemaError, SchemaRegistry, TableSchema};

/// One accepted difference between the registry in use and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A schema file that was not there before: `namespace.type`.
    TableAdded(String),
    /// A schema file that is gone: `namespace.type`.
    TableRemoved(String),
    /// A new NULLABLE or REPEATED column (or RECORD subfield, dotted path).
    ColumnAdded {
        /// `namespace.type`.
        table: String,
        /// Dotted column path, e.g. `cart.coupon`.
        column: String,
    },
    /// A column relaxed from REQUIRED to NULLABLE.
    ColumnRelaxed {
        /// `namespace.type`.
        table: String,
        /// Dotted column path.
        column: String,
    },
}

impl Change {
    /// Whether the BigQuery table must be patched for this change.
    pub fn needs_patch(&self) -> bool {
        matches!(
            self,
            Change::ColumnAdded { .. } | Change::ColumnRelaxed { .. }
        )
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::TableAdded(t) => write!(f, "{t}: new table"),
            Change::TableRemoved(t) => write!(f, "{t}: schema file removed"),
            Change::ColumnAdded { table, column } => write!(f, "{table}: new column {column}"),
            Change::ColumnRelaxed { table, column } => {
                write!(f, "{table}: column {column} relaxed to NULLABLE")
            }
        }
    }
}

/// Checks that `new` may replace `old` (see the module documentation). Returns every accepted
/// change, sorted by table then column (empty when nothing differs), or the first refusal.
pub fn check_evolution(
    old: &SchemaRegistry,
    new: &SchemaRegistry,
) -> Result<Vec<Change>, SchemaError> {
    let mut changes = Vec::new();
    let mut tables: Vec<&std::sync::Arc<TableSchema>> = new.iter().collect();
    tables.sort_by_key(|t| table_name(t));
    for n in tables {
        match old.get(n.namespace(), n.type_name()) {
            None => changes.push(Change::TableAdded(table_name(n))),
            Some(o) => {
                let table = table_name(n);
                compare_fields(&table, "", o.fields(), n.fields(), &mut changes)?;
            }
        }
    }
    let mut removed: Vec<String> = old
        .iter()
        .filter(|o| new.get(o.namespace(), o.type_name()).is_none())
        .map(|o| table_name(o))
        .collect();
    removed.sort();
    changes.extend(removed.into_iter().map(Change::TableRemoved));
    Ok(changes)
}

fn table_name(s: &TableSchema) -> String {
    format!("{}.{}", s.namespace(), s.type_name())
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

fn compare_fields(
    table: &str,
    parent: &str,
    old: &[Field],
    new: &[Field],
    changes: &mut Vec<Change>,
) -> Result<(), SchemaError> {
    let refuse = |column: String, rule: String| SchemaError::Evolution {
        table: table.to_owned(),
        column,
        rule,
    };
    for o in old {
        if find(new, &o.name).is_none() {
            return Err(refuse(
                super::join(parent, &o.name),
                "the column was removed; BigQuery cannot drop a column by tables.patch and \
                 events would lose the field silently (keep the column, it may go unused)"
                    .into(),
            ));
        }
    }
    for n in new {
        let path = super::join(parent, &n.name);
        let Some(o) = find(old, &n.name) else {
            if n.mode == Mode::Required {
                return Err(refuse(
                    path,
                    "a new column must be NULLABLE or REPEATED (BigQuery's additive rule: \
                     existing rows have no value for it)"
                        .into(),
                ));
            }
            changes.push(Change::ColumnAdded {
                table: table.to_owned(),
                column: path,
            });
            continue;
        };
        if std::mem::discriminant(&o.ty) != std::mem::discriminant(&n.ty) {
            return Err(refuse(
                path,
                format!(
                    "the type changed from {} to {}; BigQuery does not change a column's type \
                     by tables.patch (add a new column instead)",
                    o.ty.sql_name(),
                    n.ty.sql_name()
                ),
            ));
        }
        match (o.mode, n.mode) {
            (a, b) if a == b => {}
            (Mode::Required, Mode::Nullable) => changes.push(Change::ColumnRelaxed {
                table: table.to_owned(),
                column: path.clone(),
            }),
            (a, b) => {
                return Err(refuse(
                    path,
                    format!(
                        "the mode changed from {} to {}; only REQUIRED to NULLABLE is allowed",
                        a.api_name(),
                        b.api_name()
                    ),
                ))
            }
        }
        for (key, a, b) in [
            ("maxLength", o.max_length, n.max_length),
            (
                "precision",
                o.precision.map(u64::from),
                n.precision.map(u64::from),
            ),
            ("scale", o.scale.map(u64::from), n.scale.map(u64::from)),
        ] {
            if a != b {
                let show = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
                return Err(refuse(
                    path,
                    format!(
                        "\"{key}\" changed from {} to {}; evlog patches tables only by adding \
                         columns and relaxing REQUIRED to NULLABLE",
                        show(a),
                        show(b)
                    ),
                ));
            }
        }
        if let (FieldType::Record(os), FieldType::Record(ns)) = (&o.ty, &n.ty) {
            compare_fields(table, &path, os, ns, changes)?;
        }
    }
    Ok(())
}

/// The field list for `tables.patch` that gives a table with `current` fields everything
/// `wanted` has (see the module documentation), or `None` when `current` already has it all.
/// Both are BigQuery JSON field arrays (`[{"name", "type", "mode", "fields"?}, ...]`).
pub fn merge_for_patch(current: &[Value], wanted: &[Value]) -> Option<Vec<Value>> {
    let mut out = current.to_vec();
    merge_into(&mut out, wanted).then_some(out)
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn mode_of(v: &Value) -> &str {
    v.get("mode").and_then(Value::as_str).unwrap_or("NULLABLE")
}

/// Adds to `fields` what `wanted` has; true when anything changed.
fn merge_into(fields: &mut Vec<Value>, wanted: &[Value]) -> bool {
    let mut changed = false;
    for w in wanted {
        let name = name_of(w);
        let Some(cur) = fields
            .iter_mut()
            .find(|f| name_of(f).eq_ignore_ascii_case(name))
        else {
            fields.push(w.clone());
            changed = true;
            continue;
        };
        let Some(cur) = cur.as_object_mut() else {
            continue;
        };
        let required = cur
            .get("mode")
            .and_then(Value::as_str)
            .is_some_and(|m| m.eq_ignore_ascii_case("REQUIRED"));
        if required && mode_of(w).eq_ignore_ascii_case("NULLABLE") {
            cur.insert("mode".into(), Value::String("NULLABLE".into()));
            changed = true;
        }
        if let Some(Value::Array(sub)) = w.get("fields") {
            let entry = cur
                .entry("fields")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(cur_sub) = entry {
                changed |= merge_into(cur_sub, sub);
            }
        }
    }
    changed
}

/// `fields` of a `tables.get` answer's `schema` (an empty list when it has none).
pub fn fields_of_table(table: &Value) -> Vec<Value> {
    table
        .get("schema")
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
