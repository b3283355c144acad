//! A table's layout for the Storage Write API: its columns, and the self-contained protobuf
//! descriptor of its rows.
//!
//! Contract:
//! - [`Layout`] is built from BigQuery's JSON schema (the catalog's fields, the dead-letter
//!   schema, `tables.get`) or from the `TableSchema` a Storage Write answer carries in
//!   `updated_schema`; unknown types (RANGE, INTERVAL, …) are an error naming the column.
//! - The descriptor is proto2, one message per row named [`ROW_MESSAGE`]: field names are the
//!   column names, field numbers 1.. in column order, REPEATED columns are `repeated` fields
//!   (unpacked, as proto2 writes them), every other column `optional` (BigQuery itself checks
//!   REQUIRED). A RECORD is a message type nested inside its parent's message, named
//!   `<column>_Record` (underscores added while the name clashes with a field of that scope)
//!   and referenced by its fully-qualified name (`.evlog_row.cart_Record`), so the descriptor
//!   needs no other file, as BigQuery requires.
//! - Types, by BigQuery's documented mapping ("Supported protocol buffer data types"): DATE
//!   `int32` (days since the epoch), TIMESTAMP `int64` (µs since the epoch), DATETIME, TIME,
//!   NUMERIC, BIGNUMERIC, JSON and GEOGRAPHY `string` (their literal text), BYTES `bytes`, INT64
//!   `int64`, FLOAT64 `double`, BOOL `bool`, STRING `string`.

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    table_field_schema, TableFieldSchema, TableSchema as ProtoTableSchema,
};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use serde_json::Value;

use super::StorageError;

/// Name of the row message in every descriptor.
pub const ROW_MESSAGE: &str = "evlog_row";

/// A column's type, as far as the wire format cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// STRING
    String,
    /// BYTES
    Bytes,
    /// INT64 / INTEGER
    Int64,
    /// FLOAT64 / FLOAT
    Float64,
    /// NUMERIC / BIGNUMERIC (decimal text)
    Decimal,
    /// BOOL / BOOLEAN
    Bool,
    /// TIMESTAMP (µs since the epoch)
    Timestamp,
    /// DATE (days since the epoch)
    Date,
    /// TIME, DATETIME, JSON, GEOGRAPHY: sent as their text
    Text,
    /// RECORD / STRUCT
    Record,
}

/// One column (or RECORD subfield).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name (also the proto field name).
    pub name: String,
    /// Its type.
    pub ty: ColType,
    /// REPEATED.
    pub repeated: bool,
    /// Subfields of a RECORD.
    pub fields: Vec<Column>,
}

impl Column {
    /// The protobuf field number of the column at `index` among its siblings.
    pub fn number(index: usize) -> u32 {
        index as u32 + 1
    }
}

/// A table's columns and the descriptor of its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Top-level columns, in schema order.
    pub columns: Vec<Column>,
    /// The row message, self-contained.
    pub descriptor: DescriptorProto,
}

impl Layout {
    /// From BigQuery's JSON schema: an array of field objects (or `{"fields": [...]}`).
    pub fn from_json(fields: &Value) -> Result<Self, StorageError> {
        let list = fields.get("fields").unwrap_or(fields);
        Self::from_columns(columns_from_json(list, "")?)
    }

    /// From the schema in a Storage Write answer's `updated_schema`.
    pub fn from_proto(schema: &ProtoTableSchema) -> Result<Self, StorageError> {
        Self::from_columns(columns_from_proto(&schema.fields, "")?)
    }

    fn from_columns(columns: Vec<Column>) -> Result<Self, StorageError> {
        if columns.is_empty() {
            return Err(StorageError::Schema("the table has no columns".into()));
        }
        let descriptor = message(ROW_MESSAGE, &format!(".{ROW_MESSAGE}"), &columns);
        Ok(Layout {
            columns,
            descriptor,
        })
    }
}

fn type_from_name(name: &str) -> Option<ColType> {
    Some(match name.to_ascii_uppercase().as_str() {
        "STRING" => ColType::String,
        "BYTES" => ColType::Bytes,
        "INTEGER" | "INT64" => ColType::Int64,
        "FLOAT" | "FLOAT64" => ColType::Float64,
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => ColType::Decimal,
        "BOOLEAN" | "BOOL" => ColType::Bool,
        "TIMESTAMP" => ColType::Timestamp,
        "DATE" => ColType::Date,
        "TIME" | "DATETIME" | "JSON" | "GEOGRAPHY" => ColType::Text,
        "RECORD" | "STRUCT" => ColType::Record,
        _ => return None,
    })
}

fn columns_from_json(list: &Value, path: &str) -> Result<Vec<Column>, StorageError> {
    let items = list
        .as_array()
        .ok_or_else(|| StorageError::Schema(format!("{path}: fields must be an array")))?;
    items
        .iter()
        .map(|f| {
            let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
            let at = join(path, name);
            let ty_name = f.get("type").and_then(Value::as_str).unwrap_or_default();
            let ty = type_from_name(ty_name).ok_or_else(|| {
                StorageError::Schema(format!(
                    "column {at}: type {ty_name:?} has no Storage Write mapping in evlog"
                ))
            })?;
            let repeated = f
                .get("mode")
                .and_then(Value::as_str)
                .is_some_and(|m| m.eq_ignore_ascii_case("REPEATED"));
            let fields = if ty == ColType::Record {
                columns_from_json(f.get("fields").unwrap_or(&Value::Null), &at)?
            } else {
                Vec::new()
            };
            column(name, &at, ty, repeated, fields)
        })
        .collect()
}

fn columns_from_proto(list: &[TableFieldSchema], path: &str) -> Result<Vec<Column>, StorageError> {
    use table_field_schema::{Mode, Type as T};
    list.iter()
        .map(|f| {
            let at = join(path, &f.name);
            let ty = match T::try_from(f.r#type).unwrap_or(T::Unspecified) {
                T::String => ColType::String,
                T::Bytes => ColType::Bytes,
                T::Int64 => ColType::Int64,
                T::Double => ColType::Float64,
                T::Numeric | T::Bignumeric => ColType::Decimal,
                T::Bool => ColType::Bool,
                T::Timestamp => ColType::Timestamp,
                T::Date => ColType::Date,
                T::Time | T::Datetime | T::Json | T::Geography => ColType::Text,
                T::Struct => ColType::Record,
                other => {
                    return Err(StorageError::Schema(format!(
                        "column {at}: type {} has no Storage Write mapping in evlog",
                        other.as_str_name()
                    )))
                }
            };
            let repeated = f.mode == Mode::Repeated as i32;
            let fields = if ty == ColType::Record {
                columns_from_proto(&f.fields, &at)?
            } else {
                Vec::new()
            };
            column(&f.name, &at, ty, repeated, fields)
        })
        .collect()
}

fn column(
    name: &str,
    at: &str,
    ty: ColType,
    repeated: bool,
    fields: Vec<Column>,
) -> Result<Column, StorageError> {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident {
        return Err(StorageError::Schema(format!(
            "column {at}: the name must be letters, digits and underscores, not starting with \
             a digit, to be a protobuf field name"
        )));
    }
    if ty == ColType::Record && fields.is_empty() {
        return Err(StorageError::Schema(format!(
            "column {at}: a RECORD needs subfields"
        )));
    }
    Ok(Column {
        name: name.to_string(),
        ty,
        repeated,
        fields,
    })
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The message for `columns`, named `name`, whose fully-qualified name is `full`.
fn message(name: &str, full: &str, columns: &[Column]) -> DescriptorProto {
    let mut m = DescriptorProto {
        name: Some(name.to_string()),
        ..DescriptorProto::default()
    };
    for (i, c) in columns.iter().enumerate() {
        let mut f = FieldDescriptorProto {
            name: Some(c.name.clone()),
            number: Some(Column::number(i) as i32),
            ..FieldDescriptorProto::default()
        };
        f.set_label(if c.repeated {
            Label::Repeated
        } else {
            Label::Optional
        });
        f.set_type(match c.ty {
            ColType::String | ColType::Decimal | ColType::Text => Type::String,
            ColType::Bytes => Type::Bytes,
            ColType::Int64 | ColType::Timestamp => Type::Int64,
            ColType::Float64 => Type::Double,
            ColType::Bool => Type::Bool,
            ColType::Date => Type::Int32,
            ColType::Record => Type::Message,
        });
        if c.ty == ColType::Record {
            let mut nested = format!("{}_Record", c.name);
            while columns.iter().any(|o| o.name == nested)
                || m.nested_type.iter().any(|t| t.name() == nested)
            {
                nested.push('_');
            }
            let nested_full = format!("{full}.{nested}");
            f.type_name = Some(nested_full.clone());
            m.nested_type
                .push(message(&nested, &nested_full, &c.fields));
        }
        m.field.push(f);
    }
    m
}
