//! Table schemas in BigQuery's own JSON schema format, and validation of events into rows.
//!
//! Contract:
//! - A schema file is what `bq show --schema` prints (a JSON array of field objects) or the
//!   object form `{"fields": [...]}` that `tables.get` returns. Field keys other than BigQuery's
//!   documented ones are errors, as are unknown types, invalid column names, duplicate names
//!   (case-insensitive, as in BigQuery), empty RECORDs, nesting deeper than 15 levels, and
//!   precision/scale outside BigQuery's limits. Every [`SchemaError`] names the file and the field.
//! - Every table has the reserved columns `event_id` STRING, `event_time` TIMESTAMP,
//!   `received_at` TIMESTAMP (REQUIRED when added) and `other` STRING. They are appended when the
//!   file does not declare them; a file that declares one must give it that type and a mode of
//!   NULLABLE or REQUIRED.
//! - [`TableSchema::to_row`] turns an event object into one row of JSON text that a
//!   `NEWLINE_DELIMITED_JSON` load job or an `insertAll` `json` row accepts, converting every
//!   column by BigQuery's rules (see [`convert`]). Nothing the caller sent is lost: keys that no
//!   column names, including keys named like the reserved columns, are kept as compact JSON text
//!   in `other`, at the same nested path for RECORD subfields. Invalid events are rejected with a
//!   [`RowError`] that names the field, the expected type, the value and the rule.
//! - `TableSchema::check_row` (module `row_check`) checks a row converted elsewhere (the
//!   collector's `/v1/rows`) against the table; callers reach it through
//!   [`Processor::check_row`](crate::ingest::Processor::check_row).
//! - [`SchemaRegistry::load_dir`] loads `<dir>/<namespace>/<type>.json`.
//! - [`evolve::check_evolution`] says whether a newly loaded registry may replace the one in use
//!   (BigQuery's additive rules); [`evolve::merge_for_patch`] gives the schema to patch a table to.

pub mod convert;
pub mod decimal;
pub mod evolve;
pub(crate) mod jref;
pub(crate) mod row_check;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use convert::{RowError, RowErrorReason};

/// Deepest RECORD nesting BigQuery allows.
const MAX_NESTING: usize = 15;
/// Longest column name BigQuery allows, in characters.
const MAX_COLUMN_NAME: usize = 300;
/// Column-name prefixes BigQuery reserves (compared case-insensitively).
const RESERVED_PREFIXES: [&str; 6] = [
    "_TABLE_",
    "_FILE_",
    "_PARTITION",
    "_ROW_TIMESTAMP",
    "__ROOT__",
    "_COLON_",
];
const SUPPORTED_TYPES: &str = "STRING, BYTES, INTEGER/INT64, FLOAT/FLOAT64, NUMERIC, BIGNUMERIC, \
                               BOOLEAN/BOOL, TIMESTAMP, DATE, TIME, DATETIME, JSON, GEOGRAPHY, \
                               RECORD/STRUCT";
const KNOWN_KEYS: [&str; 12] = [
    "name",
    "type",
    "mode",
    "fields",
    "description",
    "maxLength",
    "precision",
    "scale",
    "defaultValueExpression",
    "policyTags",
    "collation",
    "roundingMode",
];
/// Keys kept verbatim (in [`Field::extra`]) so that [`TableSchema::to_bigquery_json`] does not
/// drop a table's policy tags or defaults when it is used to create the table.
const PASSTHROUGH_KEYS: [&str; 4] = [
    "defaultValueExpression",
    "policyTags",
    "collation",
    "roundingMode",
];

/// Reserved column names, in the order they are appended.
pub const EVENT_ID: &str = "event_id";
/// Reserved TIMESTAMP column: when the event happened.
pub const EVENT_TIME: &str = "event_time";
/// Reserved TIMESTAMP column: when the pipeline received the event.
pub const RECEIVED_AT: &str = "received_at";
/// Reserved STRING column: JSON text of every field no column names.
pub const OTHER: &str = "other";

/// A column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    /// STRING
    String,
    /// BYTES (base64 in JSON)
    Bytes,
    /// INT64 / INTEGER
    Int64,
    /// FLOAT64 / FLOAT
    Float64,
    /// NUMERIC
    Numeric,
    /// BIGNUMERIC
    BigNumeric,
    /// BOOL / BOOLEAN
    Bool,
    /// TIMESTAMP
    Timestamp,
    /// DATE
    Date,
    /// TIME
    Time,
    /// DATETIME
    DateTime,
    /// JSON
    Json,
    /// GEOGRAPHY
    Geography,
    /// RECORD / STRUCT with its subfields.
    Record(Vec<Field>),
}

impl FieldType {
    /// Standard SQL name, used in error messages.
    pub fn sql_name(&self) -> &'static str {
        match self {
            FieldType::String => "STRING",
            FieldType::Bytes => "BYTES",
            FieldType::Int64 => "INT64",
            FieldType::Float64 => "FLOAT64",
            FieldType::Numeric => "NUMERIC",
            FieldType::BigNumeric => "BIGNUMERIC",
            FieldType::Bool => "BOOL",
            FieldType::Timestamp => "TIMESTAMP",
            FieldType::Date => "DATE",
            FieldType::Time => "TIME",
            FieldType::DateTime => "DATETIME",
            FieldType::Json => "JSON",
            FieldType::Geography => "GEOGRAPHY",
            FieldType::Record(_) => "RECORD",
        }
    }

    /// The name the BigQuery API itself returns (legacy names), used in schema output.
    fn api_name(&self) -> &'static str {
        match self {
            FieldType::Int64 => "INTEGER",
            FieldType::Float64 => "FLOAT",
            FieldType::Bool => "BOOLEAN",
            other => other.sql_name(),
        }
    }

    fn parse(s: &str) -> Option<FieldType> {
        Some(match s.to_ascii_uppercase().as_str() {
            "STRING" => FieldType::String,
            "BYTES" => FieldType::Bytes,
            "INTEGER" | "INT64" => FieldType::Int64,
            "FLOAT" | "FLOAT64" => FieldType::Float64,
            "NUMERIC" => FieldType::Numeric,
            "BIGNUMERIC" => FieldType::BigNumeric,
            "BOOLEAN" | "BOOL" => FieldType::Bool,
            "TIMESTAMP" => FieldType::Timestamp,
            "DATE" => FieldType::Date,
            "TIME" => FieldType::Time,
            "DATETIME" => FieldType::DateTime,
            "JSON" => FieldType::Json,
            "GEOGRAPHY" => FieldType::Geography,
            "RECORD" | "STRUCT" => FieldType::Record(Vec::new()),
            _ => return None,
        })
    }
}

/// A column's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// May be NULL or absent (the default).
    #[default]
    Nullable,
    /// Must be present and not NULL.
    Required,
    /// An array (`ARRAY<T>`); NULL and absent mean empty.
    Repeated,
}

impl Mode {
    fn api_name(self) -> &'static str {
        match self {
            Mode::Nullable => "NULLABLE",
            Mode::Required => "REQUIRED",
            Mode::Repeated => "REPEATED",
        }
    }
}

/// One column (or RECORD subfield).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Column name as declared.
    pub name: String,
    /// Type, with subfields for RECORD.
    pub ty: FieldType,
    /// Mode.
    pub mode: Mode,
    /// `maxLength`: characters for STRING, bytes for BYTES.
    pub max_length: Option<u64>,
    /// `precision` for NUMERIC/BIGNUMERIC.
    pub precision: Option<u32>,
    /// `scale` for NUMERIC/BIGNUMERIC.
    pub scale: Option<u32>,
    /// `description`.
    pub description: Option<String>,
    /// Documented keys evlog does not interpret (`defaultValueExpression`, `policyTags`,
    /// `collation`, `roundingMode`), kept verbatim for [`TableSchema::to_bigquery_json`].
    /// `roundingMode` is also honoured when rounding NUMERIC/BIGNUMERIC values.
    pub extra: Map<String, Value>,
}

impl Field {
    /// A field with only name, type and mode set.
    pub fn new(name: impl Into<String>, ty: FieldType, mode: Mode) -> Self {
        Field {
            name: name.into(),
            ty,
            mode,
            max_length: None,
            precision: None,
            scale: None,
            description: None,
            extra: Map::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), Value::String(self.name.clone()));
        o.insert("type".into(), Value::String(self.ty.api_name().into()));
        o.insert("mode".into(), Value::String(self.mode.api_name().into()));
        if let FieldType::Record(sub) = &self.ty {
            o.insert(
                "fields".into(),
                Value::Array(sub.iter().map(Field::to_json).collect()),
            );
        }
        if let Some(d) = &self.description {
            o.insert("description".into(), Value::String(d.clone()));
        }
        // The API returns these as strings (int64 in JSON), so emit them the same way.
        if let Some(v) = self.max_length {
            o.insert("maxLength".into(), Value::String(v.to_string()));
        }
        if let Some(v) = self.precision {
            o.insert("precision".into(), Value::String(v.to_string()));
        }
        if let Some(v) = self.scale {
            o.insert("scale".into(), Value::String(v.to_string()));
        }
        for (k, v) in &self.extra {
            o.insert(k.clone(), v.clone());
        }
        Value::Object(o)
    }
}

/// Why a schema file or directory could not be loaded. Display names the file and, for field
/// problems, the dotted field path.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file is not valid JSON (the message carries line and column).
    #[error("{origin}: invalid JSON: {source}")]
    Json {
        /// File path.
        origin: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The schema directory itself cannot be read (absent, not a directory, no permission).
    /// Display names the key `schemas.dir`, the absolute path tried and the fix.
    #[error("schemas.dir: cannot read the schema directory {}: {source}; {fix}", path.display())]
    Dir {
        /// The directory, made absolute against the working directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
        /// How to fix it; [`SchemaRegistry::load_configured`] and the bindings add their way.
        fix: String,
    },
    /// Reading a file or a namespace directory failed.
    #[error("{origin}: {source}")]
    Io {
        /// File or directory path.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A problem with the file as a whole (shape, naming).
    #[error("{origin}: {message}")]
    File {
        /// File path.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A schema file changed in a way a running evlog cannot follow ([`evolve::check_evolution`]).
    #[error("{table}: column \"{column}\": {rule}")]
    Evolution {
        /// `namespace.type`.
        table: String,
        /// Dotted column path.
        column: String,
        /// The rule broken and what to do.
        rule: String,
    },
    /// A problem with one field.
    #[error("{origin}: field \"{field}\": {message}")]
    Field {
        /// File path.
        origin: String,
        /// Dotted field path, e.g. `items.price`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A fast non-cryptographic hasher (FxHash's mixing, 8 bytes at a time) for the per-record
/// name maps: every key of every event is looked up there, and SipHash showed in profiles.
/// The maps are built from schema files and never grow from input, so collision attacks
/// cannot degrade them beyond a slower lookup.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type NameMap = HashMap<String, usize, std::hash::BuildHasherDefault<NameHasher>>;

/// Per-record name lookup, built once per schema: exact names first (the common case, no
/// allocation), then ASCII-lowercased names because BigQuery column names are case-insensitive.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordIndex {
    pub(crate) exact: NameMap,
    pub(crate) lower: NameMap,
    /// Index of each RECORD subfield's own record, by field position.
    pub(crate) children: Vec<Option<RecordIndex>>,
    /// Each field's key as the row writes it (`"name":`, escaped once here rather than per
    /// row), by field position.
    pub(crate) keys: Vec<String>,
}

impl RecordIndex {
    fn build(fields: &[Field], skip: &[usize]) -> Self {
        let mut ix = RecordIndex::default();
        for (i, f) in fields.iter().enumerate() {
            let mut key = String::with_capacity(f.name.len() + 3);
            crate::json::push_str(&mut key, &f.name);
            key.push(':');
            ix.keys.push(key);
            if skip.contains(&i) {
                ix.children.push(None);
                continue;
            }
            ix.exact.insert(f.name.clone(), i);
            ix.lower.insert(f.name.to_ascii_lowercase(), i);
            ix.children.push(match &f.ty {
                FieldType::Record(sub) => Some(RecordIndex::build(sub, &[])),
                _ => None,
            });
        }
        ix
    }

    pub(crate) fn lookup(&self, key: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(key) {
            return Some(i);
        }
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lower.get(&key.to_ascii_lowercase()).copied();
        }
        // An all-lowercase key that missed `exact` can still match a column declared in
        // mixed case.
        self.lower.get(key).copied()
    }
}

/// One table's schema: the declared columns plus the reserved ones.
#[derive(Debug, Clone)]
pub struct TableSchema {
    namespace: String,
    type_name: String,
    fields: Vec<Field>,
    /// Positions of event_id, event_time, received_at, other in `fields`.
    pub(crate) reserved: [usize; 4],
    pub(crate) index: RecordIndex,
}

/// Values evlog itself supplies for the reserved columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    /// `event_id` (also the insertId).
    pub event_id: String,
    /// `event_time`, microseconds since the Unix epoch.
    pub event_time: i64,
    /// `received_at`, microseconds since the Unix epoch.
    pub received_at: i64,
}

/// A validated row: one JSON object text, no trailing newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row as JSON text.
    pub json: String,
}

struct Loader<'a> {
    origin: &'a str,
}

impl Loader<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> SchemaError {
        SchemaError::Field {
            origin: self.origin.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn fields(
        &self,
        list: &[Value],
        parent: &str,
        depth: usize,
    ) -> Result<Vec<Field>, SchemaError> {
        let mut out: Vec<Field> = Vec::with_capacity(list.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            let f = self.field(v, parent, i, depth)?;
            if let Some(prev) = seen.insert(f.name.to_ascii_lowercase(), i) {
                return Err(self.err(
                    &join(parent, &f.name),
                    format!(
                        "duplicate column name (column names are case-insensitive; it clashes with \
                         \"{}\")",
                        out[prev].name
                    ),
                ));
            }
            out.push(f);
        }
        Ok(out)
    }

    fn field(
        &self,
        v: &Value,
        parent: &str,
        pos: usize,
        depth: usize,
    ) -> Result<Field, SchemaError> {
        // A field without a usable name is identified by its position, e.g. `items#0`.
        let unnamed = format!("{parent}#{pos}");
        let Value::Object(o) = v else {
            return Err(self.err(&unnamed, "a field must be a JSON object"));
        };
        let name = match o.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(self.err(&unnamed, "\"name\" must be a string")),
            None => return Err(self.err(&unnamed, "missing \"name\"")),
        };
        let path = join(parent, &name);
        let err = |m: String| self.err(&path, m);
        check_column_name(&name).map_err(err)?;
        for k in o.keys() {
            if !KNOWN_KEYS.contains(&k.as_str()) {
                return Err(err(format!(
                    "unknown key \"{k}\" (allowed: {})",
                    KNOWN_KEYS.join(", ")
                )));
            }
        }
        let ty_text = match o.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(err("\"type\" must be a string".into())),
            None => return Err(err("missing \"type\"".into())),
        };
        let mut ty = FieldType::parse(ty_text).ok_or_else(|| {
            err(format!(
                "unknown type \"{ty_text}\" (supported: {SUPPORTED_TYPES})"
            ))
        })?;
        let mode = match o.get("mode") {
            None | Some(Value::Null) => Mode::Nullable,
            Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
                "NULLABLE" => Mode::Nullable,
                "REQUIRED" => Mode::Required,
                "REPEATED" => Mode::Repeated,
                _ => {
                    return Err(err(format!(
                        "unknown mode \"{s}\" (supported: NULLABLE, REQUIRED, REPEATED)"
                    )))
                }
            },
            Some(_) => return Err(err("\"mode\" must be a string".into())),
        };
        let description = match o.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(err("\"description\" must be a string".into())),
        };
        let max_length = int_key(o, "maxLength").map_err(err)?;
        let precision = int_key(o, "precision").map_err(err)?;
        let scale = int_key(o, "scale").map_err(err)?;
        match (&mut ty, o.get("fields")) {
            (FieldType::Record(sub), Some(Value::Array(list))) => {
                if depth + 1 > MAX_NESTING {
                    return Err(err(format!(
                        "RECORD nesting exceeds BigQuery's limit of {MAX_NESTING} levels"
                    )));
                }
                if list.is_empty() {
                    return Err(err("a RECORD must have at least one subfield".into()));
                }
                *sub = self.fields(list, &path, depth + 1)?;
            }
            (FieldType::Record(_), Some(_)) => {
                return Err(err("\"fields\" must be an array".into()))
            }
            (FieldType::Record(_), None) => {
                return Err(err(
                    "a RECORD must have at least one subfield in \"fields\"".into(),
                ))
            }
            (_, None) => {}
            (_, Some(Value::Array(a))) if a.is_empty() => {}
            (t, Some(_)) => {
                return Err(err(format!(
                    "\"fields\" is only allowed on RECORD, not {}",
                    t.sql_name()
                )))
            }
        }
        if max_length.is_some() && !matches!(ty, FieldType::String | FieldType::Bytes) {
            return Err(err(format!(
                "\"maxLength\" is only allowed on STRING and BYTES, not {}",
                ty.sql_name()
            )));
        }
        let (precision, scale) = check_precision(&ty, precision, scale).map_err(err)?;
        let mut extra = Map::new();
        for k in PASSTHROUGH_KEYS {
            if let Some(v) = o.get(k) {
                extra.insert(k.to_owned(), v.clone());
            }
        }
        if let Some(v) = extra.get("roundingMode") {
            let ok = matches!(
                v.as_str(),
                Some("ROUNDING_MODE_UNSPECIFIED" | "ROUND_HALF_AWAY_FROM_ZERO" | "ROUND_HALF_EVEN")
            );
            if !ok {
                return Err(err(format!(
                    "\"roundingMode\" must be ROUND_HALF_AWAY_FROM_ZERO or ROUND_HALF_EVEN, got {v}"
                )));
            }
        }
        Ok(Field {
            name,
            ty,
            mode,
            max_length,
            precision,
            scale,
            description,
            extra,
        })
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// Reads an integer option that BigQuery may give as a JSON string ("10") or number.
fn int_key<T: TryFrom<u64>>(o: &Map<String, Value>, key: &str) -> Result<Option<T>, String> {
    let v = match o.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            format!("\"{key}\" must be a non-negative integer (number or string), got {v}")
        })
}

fn check_column_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(
            "invalid column name: use letters, digits and underscores, not starting with a digit"
                .into(),
        );
    }
    if name.len() > MAX_COLUMN_NAME {
        return Err(format!(
            "column name is longer than {MAX_COLUMN_NAME} characters"
        ));
    }
    let upper = name.to_ascii_uppercase();
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| upper.starts_with(*p)) {
        return Err(format!(
            "column names must not start with the reserved prefix {p}"
        ));
    }
    Ok(())
}

/// BigQuery's parameterised decimal limits: NUMERIC(P, S) has 0 ≤ S ≤ 9 and
/// max(1, S) ≤ P ≤ S + 29; BIGNUMERIC(P, S) has 0 ≤ S ≤ 38 and max(1, S) ≤ P ≤ S + 38.
fn check_precision(
    ty: &FieldType,
    precision: Option<u32>,
    scale: Option<u32>,
) -> Result<(Option<u32>, Option<u32>), String> {
    let (max_scale, max_int) = match ty {
        FieldType::Numeric => (9, 29),
        FieldType::BigNumeric => (38, 38),
        _ if precision.is_some() || scale.is_some() => {
            return Err(format!(
                "\"precision\" and \"scale\" are only allowed on NUMERIC and BIGNUMERIC, not {}",
                ty.sql_name()
            ))
        }
        _ => return Ok((None, None)),
    };
    let name = ty.sql_name();
    match (precision, scale) {
        (None, None) => Ok((None, None)),
        (None, Some(_)) => Err("\"scale\" requires \"precision\"".into()),
        (Some(p), s) => {
            let s_val = s.unwrap_or(0);
            if s_val > max_scale {
                return Err(format!(
                    "scale {s_val} is out of range 0..={max_scale} for {name}"
                ));
            }
            let lo = s_val.max(1);
            let hi = s_val + max_int;
            if p < lo || p > hi {
                return Err(format!(
                    "precision {p} is out of range {lo}..={hi} for {name} with scale {s_val}"
                ));
            }
            Ok((Some(p), Some(s_val).filter(|_| s.is_some())))
        }
    }
}

impl TableSchema {
    /// Parses a schema file's text. `origin` (the file path) prefixes every error.
    pub fn from_json_str(
        namespace: &str,
        type_name: &str,
        text: &str,
        origin: &str,
    ) -> Result<Self, SchemaError> {
        let doc: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
            origin: origin.to_owned(),
            source,
        })?;
        let list = match &doc {
            Value::Array(a) => a,
            Value::Object(o) => match o.get("fields") {
                Some(Value::Array(a)) if o.len() == 1 => a,
                _ => {
                    return Err(SchemaError::File {
                        origin: origin.to_owned(),
                        message: "expected a JSON array of fields or an object {\"fields\": [...]}"
                            .into(),
                    })
                }
            },
            _ => {
                return Err(SchemaError::File {
                    origin: origin.to_owned(),
                    message: "expected a JSON array of fields or an object {\"fields\": [...]}"
                        .into(),
                })
            }
        };
        let loader = Loader { origin };
        let fields = loader.fields(list, "", 0)?;
        Self::from_fields(namespace, type_name, fields, origin)
    }

    /// Adds the reserved columns to already validated fields and builds the lookup index.
    fn from_fields(
        namespace: &str,
        type_name: &str,
        mut fields: Vec<Field>,
        origin: &str,
    ) -> Result<Self, SchemaError> {
        let reserved_types = [
            (EVENT_ID, FieldType::String, Mode::Required),
            (EVENT_TIME, FieldType::Timestamp, Mode::Required),
            (RECEIVED_AT, FieldType::Timestamp, Mode::Required),
            (OTHER, FieldType::String, Mode::Nullable),
        ];
        let mut reserved = [0usize; 4];
        for (slot, (name, ty, mode)) in reserved_types.into_iter().enumerate() {
            match fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
            {
                Some(i) => {
                    let f = &fields[i];
                    if f.ty != ty || f.mode == Mode::Repeated {
                        return Err(SchemaError::Field {
                            origin: origin.to_owned(),
                            field: f.name.clone(),
                            message: format!(
                                "\"{name}\" is a reserved column and must be {} NULLABLE or REQUIRED, \
                                 not {} {}",
                                ty.sql_name(),
                                f.ty.sql_name(),
                                f.mode.api_name()
                            ),
                        });
                    }
                    if f.max_length.is_some() {
                        return Err(SchemaError::Field {
                            origin: origin.to_owned(),
                            field: f.name.clone(),
                            message: format!("reserved column \"{name}\" must not set maxLength"),
                        });
                    }
                    reserved[slot] = i;
                }
                None => {
                    reserved[slot] = fields.len();
                    fields.push(Field::new(name, ty, mode));
                }
            }
        }
        let index = RecordIndex::build(&fields, &reserved);
        Ok(TableSchema {
            namespace: namespace.to_owned(),
            type_name: type_name.to_owned(),
            fields,
            reserved,
            index,
        })
    }

    /// The namespace (BigQuery dataset).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The event type (BigQuery table).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Every column, reserved ones included.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The full schema in BigQuery's JSON array form (legacy type names and string-valued
    /// integers, as the API returns them). Round-trips through [`TableSchema::from_json_str`].
    pub fn to_bigquery_json(&self) -> Value {
        Value::Array(self.fields.iter().map(Field::to_json).collect())
    }

    /// Validates and converts one event into a row; see the module documentation.
    pub fn to_row(&self, event: Map<String, Value>, meta: &RowMeta) -> Result<Row, RowError> {
        convert::to_row(self, jref::obj_from_map(&event), meta, 0)
    }

    /// As [`to_row`](Self::to_row), for an event parsed into borrowed form (the fast path:
    /// strings borrowed from the event text). `text_len`: the event's text length (0 if
    /// unknown), to size the row's buffer once.
    pub(crate) fn to_row_ref(
        &self,
        event: jref::Obj<'_>,
        meta: &RowMeta,
        text_len: usize,
    ) -> Result<Row, RowError> {
        convert::to_row(self, event, meta, text_len)
    }
}

/// BigQuery dataset names: 1..=1024 of `[A-Za-z0-9_]`.
fn valid_dataset_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// BigQuery table names: letters, marks, digits (Unicode included), `_` and `-`, ≤ 1024 bytes in
/// total; 1016 leaves room for the `YYYYMMDD` shard suffix.
fn valid_table_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1016
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// All loaded schemas, by `(namespace, type)`.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    by_namespace: foldhash::HashMap<String, foldhash::HashMap<String, Arc<TableSchema>>>,
}

impl SchemaRegistry {
    /// A registry without schemas.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads the schemas of `config.schemas.dir`. A directory that cannot be read is an error
    /// ([`SchemaError::Dir`]) even when no event has been logged yet: without it every event
    /// would be rejected as `unknown_table`, whatever the sink (`null` included, which still
    /// validates). An existing empty directory is accepted. With `sink.kind = "forward"` the
    /// error says why the SDK needs the directory too (and the files, with `format = "rows"`).
    pub fn load_configured(config: &crate::Config) -> Result<Self, SchemaError> {
        Self::load_dir(&config.schemas.dir).map_err(|e| match e {
            SchemaError::Dir {
                path,
                source,
                mut fix,
            } if config.sink.kind == crate::config::SinkKind::Forward => {
                fix.push_str(
                    ". With sink.kind = \"forward\" the SDK still converts events to rows \
                     against their schemas when sink.forward.format = \"rows\" or a \
                     [[transforms]] entry applies, so it needs the same schema files as the \
                     collector then; with format = \"events\" (the default) an empty \
                     directory will do",
                );
                SchemaError::Dir { path, source, fix }
            }
            e => e,
        })
    }

    /// Loads every `<dir>/<namespace>/<type>.json`. Other files are ignored, as are
    /// subdirectories of a namespace directory; a `.json` file directly in `dir`, a namespace or
    /// type name BigQuery would not accept, or any invalid schema is an error naming the file.
    /// A `dir` that cannot be read is [`SchemaError::Dir`], with the absolute path.
    pub fn load_dir(dir: &Path) -> Result<Self, SchemaError> {
        let io = |p: &Path| {
            let origin = p.display().to_string();
            move |source| SchemaError::Io { origin, source }
        };
        let entries = sorted_entries(dir).map_err(|source| SchemaError::Dir {
            path: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            source,
            fix: "create it with one <namespace>/<type>.json file per event type (BigQuery's \
                  JSON schema format), or set schemas.dir (environment: EVLOG_SCHEMAS_DIR) to \
                  the directory that holds them"
                .into(),
        })?;
        let mut reg = SchemaRegistry::empty();
        for ns_path in entries {
            let Some(ns) = ns_path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if !ns_path.is_dir() {
                if ns_path.extension().is_some_and(|e| e == "json") {
                    return Err(SchemaError::File {
                        origin: ns_path.display().to_string(),
                        message: "schema files belong in <namespace>/<type>.json".into(),
                    });
                }
                continue;
            }
            if ns.starts_with('.') {
                // Hidden directories (editor or VCS state) are not namespaces.
                continue;
            }
            for file in sorted_entries(&ns_path).map_err(io(&ns_path))? {
                if file.is_dir() || file.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let origin = file.display().to_string();
                if !valid_dataset_name(&ns) {
                    return Err(SchemaError::File {
                        origin,
                        message: format!(
                            "namespace directory \"{ns}\" is not a valid BigQuery dataset name \
                             (1..1024 of A-Z, a-z, 0-9, _)"
                        ),
                    });
                }
                let ty = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if !valid_table_name(&ty) {
                    return Err(SchemaError::File {
                        origin,
                        message: format!(
                            "type \"{ty}\" is not a valid BigQuery table name (letters, digits, _ \
                             and -, at most 1016 bytes)"
                        ),
                    });
                }
                let text = std::fs::read_to_string(&file).map_err(io(&file))?;
                reg.insert(TableSchema::from_json_str(&ns, &ty, &text, &origin)?);
            }
        }
        Ok(reg)
    }

    /// Adds or replaces the schema for its `(namespace, type)`.
    pub fn insert(&mut self, schema: TableSchema) {
        self.by_namespace
            .entry(schema.namespace.clone())
            .or_default()
            .insert(schema.type_name.clone(), Arc::new(schema));
    }

    /// The schema for `(namespace, type)`, if loaded.
    pub fn get(&self, namespace: &str, type_name: &str) -> Option<&Arc<TableSchema>> {
        self.by_namespace.get(namespace)?.get(type_name)
    }

    /// Number of schemas.
    pub fn len(&self) -> usize {
        self.by_namespace.values().map(HashMap::len).sum()
    }

    /// Whether there are no schemas.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every schema, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TableSchema>> {
        self.by_namespace.values().flat_map(HashMap::values)
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut v = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests;
