//! Table schemas in BigQuery's JSON form, and the server's own check of `insertAll` row values
//! against them (BigQuery's rules for the JSON a streaming insert may carry, kept strict: a value
//! must have the JSON type and text format of its column).

use serde_json::{Map, Value};
use std::borrow::Cow;

/// A column type, with BigQuery's aliases folded together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    String,
    Bytes,
    Integer,
    Float,
    Numeric,
    BigNumeric,
    Boolean,
    Timestamp,
    Date,
    Time,
    DateTime,
    Json,
    Geography,
    Interval,
    Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColMode {
    Nullable,
    Required,
    Repeated,
}

/// One column of a table schema.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub mode: ColMode,
    pub max_length: Option<usize>,
    pub fields: Vec<Column>,
}

/// Parses a schema: a JSON array of fields (what `bq show --schema` prints) or `{"fields":[...]}`
/// (the `schema` member of a Table resource). Errors are BigQuery-like messages.
pub fn parse_schema(v: &Value) -> Result<Vec<Column>, String> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("fields") {
            Some(Value::Array(a)) => a,
            None => return Ok(Vec::new()),
            Some(_) => return Err("Invalid schema: \"fields\" must be an array".into()),
        },
        _ => return Err("Invalid schema: expected an array of fields".into()),
    };
    parse_fields(list, "")
}

fn parse_fields(list: &[Value], prefix: &str) -> Result<Vec<Column>, String> {
    let mut out: Vec<Column> = Vec::with_capacity(list.len());
    for f in list {
        let o = f
            .as_object()
            .ok_or_else(|| format!("Invalid field in schema under \"{prefix}\": not an object"))?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| "Invalid field name: a field has no name".to_string())?;
        let valid_name = name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name || name.len() > 300 {
            return Err(format!(
                "Invalid field name \"{name}\". Fields must contain only letters, numbers, and \
                 underscores, start with a letter or underscore, and be at most 300 characters long."
            ));
        }
        if out.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            return Err(format!("Field {name} already exists in schema"));
        }
        let ty_name = o.get("type").and_then(Value::as_str).unwrap_or("");
        let ty = match ty_name.to_ascii_uppercase().as_str() {
            "STRING" => ColType::String,
            "BYTES" => ColType::Bytes,
            "INTEGER" | "INT64" => ColType::Integer,
            "FLOAT" | "FLOAT64" => ColType::Float,
            "NUMERIC" => ColType::Numeric,
            "BIGNUMERIC" => ColType::BigNumeric,
            "BOOLEAN" | "BOOL" => ColType::Boolean,
            "TIMESTAMP" => ColType::Timestamp,
            "DATE" => ColType::Date,
            "TIME" => ColType::Time,
            "DATETIME" => ColType::DateTime,
            "JSON" => ColType::Json,
            "GEOGRAPHY" => ColType::Geography,
            "INTERVAL" => ColType::Interval,
            "RECORD" | "STRUCT" => ColType::Record,
            _ => {
                return Err(format!(
                    "Invalid value for type: {ty_name} is not a valid value"
                ))
            }
        };
        let mode_name = o.get("mode").and_then(Value::as_str).unwrap_or("NULLABLE");
        let mode = match mode_name.to_ascii_uppercase().as_str() {
            "NULLABLE" | "" => ColMode::Nullable,
            "REQUIRED" => ColMode::Required,
            "REPEATED" => ColMode::Repeated,
            _ => {
                return Err(format!(
                    "Invalid value for mode: {mode_name} is not a valid value"
                ))
            }
        };
        let max_length = match o.get("maxLength") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                s.parse::<usize>()
                    .map_err(|_| format!("Invalid value for maxLength of field {name}: {s}"))?,
            ),
            Some(Value::Number(n)) => Some(n.as_u64().unwrap_or(0) as usize),
            Some(other) => return Err(format!("Invalid value for maxLength: {other}")),
        };
        let sub = match o.get("fields") {
            Some(Value::Array(a)) => parse_fields(a, name)?,
            _ => Vec::new(),
        };
        if ty == ColType::Record && sub.is_empty() {
            return Err(format!("Field {name} is type RECORD but has no schema"));
        }
        if ty != ColType::Record && !sub.is_empty() {
            return Err(format!(
                "Field {name} is type {ty_name} but has a schema (only RECORD fields have one)"
            ));
        }
        out.push(Column {
            name: name.to_string(),
            ty,
            mode,
            max_length,
            fields: sub,
        });
    }
    Ok(out)
}

/// One problem with one row: `location` is the column path (`a.b`), empty for the whole row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub location: String,
    pub message: String,
}

/// Checks one row. With `ignore_unknown`, unknown fields are removed from `row` (they are not
/// stored); otherwise each one is a problem.
pub fn check_row(
    columns: &[Column],
    row: &mut Map<String, Value>,
    ignore_unknown: bool,
) -> Vec<RowProblem> {
    let mut problems = Vec::new();
    check_record(columns, row, ignore_unknown, "", &mut problems);
    problems
}

/// `prefix.name`, or `name` itself (no copy) at the top level.
fn path<'a>(prefix: &str, name: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{prefix}.{name}"))
    }
}

fn find<'a>(columns: &'a [Column], key: &str) -> Option<&'a Column> {
    // BigQuery column names are case-insensitive.
    columns.iter().find(|c| c.name.eq_ignore_ascii_case(key))
}

fn check_record(
    columns: &[Column],
    row: &mut Map<String, Value>,
    ignore_unknown: bool,
    prefix: &str,
    problems: &mut Vec<RowProblem>,
) {
    // Keys are usually their column's exact name: when every key is (as many columns found by
    // exact name as the row has keys), the keys are not searched at all; otherwise the
    // case-insensitive match is looked for, and unknown keys are copied.
    let mut unknown: Vec<String> = Vec::new();
    let mut inexact = false;
    let exact = columns.iter().filter(|c| row.contains_key(&c.name)).count();
    if exact != row.len() {
        for key in row.keys() {
            if columns.iter().any(|c| c.name == *key) {
                continue;
            }
            if find(columns, key).is_some() {
                inexact = true;
            } else {
                unknown.push(key.clone());
            }
        }
    }
    for key in unknown {
        if ignore_unknown {
            row.remove(&key);
        } else {
            problems.push(RowProblem {
                location: path(prefix, &key).into_owned(),
                message: format!("no such field: {key}."),
            });
        }
    }
    for col in columns {
        let loc = path(prefix, &col.name);
        let value = if inexact {
            let key = row
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&col.name))
                .cloned();
            match key {
                Some(k) => row.get_mut(&k),
                None => None,
            }
        } else {
            row.get_mut(&col.name)
        };
        match (col.mode, value) {
            (ColMode::Required, None) | (ColMode::Required, Some(Value::Null)) => {
                problems.push(RowProblem {
                    message: format!("Missing required field: {loc}."),
                    location: loc.into_owned(),
                })
            }
            (_, None) | (_, Some(Value::Null)) => {}
            (ColMode::Repeated, Some(Value::Array(items))) => {
                for item in items.iter_mut() {
                    if item.is_null() {
                        problems.push(RowProblem {
                            location: loc.to_string(),
                            message: format!("Null value in repeated field: {loc}."),
                        });
                    } else if item.is_array() {
                        problems.push(RowProblem {
                            location: loc.to_string(),
                            message: format!("Array specified for an array element: {loc}."),
                        });
                    } else {
                        check_value(col, item, ignore_unknown, &loc, problems);
                    }
                }
            }
            (ColMode::Repeated, Some(_)) => problems.push(RowProblem {
                location: loc.to_string(),
                message: format!("Non-array value specified for repeated field: {loc}."),
            }),
            (_, Some(Value::Array(_))) => problems.push(RowProblem {
                location: loc.to_string(),
                message: format!("Array specified for non-repeated field: {loc}."),
            }),
            (_, Some(v)) => check_value(col, v, ignore_unknown, &loc, problems),
        }
    }
}

fn check_value(
    col: &Column,
    v: &mut Value,
    ignore_unknown: bool,
    loc: &str,
    problems: &mut Vec<RowProblem>,
) {
    let mut bad = |message: String| {
        problems.push(RowProblem {
            location: loc.to_string(),
            message,
        })
    };
    let shown = || match &*v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match col.ty {
        ColType::Record => {
            if let Value::Object(o) = v {
                check_record(&col.fields, o, ignore_unknown, loc, problems);
            } else {
                bad(format!("This field: {loc} is not a record."));
            }
        }
        ColType::String => match &*v {
            Value::String(s) => {
                if let Some(max) = col.max_length {
                    if s.chars().count() > max {
                        bad(format!(
                            "Field {loc}: STRING({max}) has maximum length {max} but got a value \
                             with length {}",
                            s.chars().count()
                        ));
                    }
                }
            }
            _ => bad(format!("Cannot convert value to string: {}", shown())),
        },
        ColType::Bytes => match &*v {
            Value::String(s) => match base64_len(s) {
                Some(n) => {
                    if let Some(max) = col.max_length {
                        if n > max {
                            bad(format!(
                                "Field {loc}: BYTES({max}) has maximum length {max} but got a \
                                 value with length {n}"
                            ));
                        }
                    }
                }
                None => bad(format!(
                    "Could not decode base64 string to bytes. Field: {loc}"
                )),
            },
            _ => bad(format!("Cannot convert value to bytes: {}", shown())),
        },
        ColType::Integer => {
            let ok = match &*v {
                Value::Number(n) => n.is_i64() || n.is_u64() && n.as_u64() <= Some(i64::MAX as u64),
                Value::String(s) => s.trim().parse::<i64>().is_ok(),
                _ => false,
            };
            if !ok {
                bad(format!(
                    "Cannot convert value to integer (bad value): {}",
                    shown()
                ));
            }
        }
        ColType::Float => {
            let ok = match &*v {
                Value::Number(_) => true,
                Value::String(s) => {
                    matches!(
                        s.as_str(),
                        "NaN" | "Infinity" | "-Infinity" | "inf" | "-inf"
                    ) || s.trim().parse::<f64>().is_ok_and(f64::is_finite)
                }
                _ => false,
            };
            if !ok {
                bad(format!(
                    "Cannot convert value to floating point (bad value): {}",
                    shown()
                ));
            }
        }
        ColType::Numeric | ColType::BigNumeric => {
            let text = match &*v {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) => Some(s.trim().to_string()),
                _ => None,
            };
            let (max_int, max_frac) = if col.ty == ColType::Numeric {
                (29, 9)
            } else {
                (38, 38)
            };
            let name = if col.ty == ColType::Numeric {
                "NUMERIC"
            } else {
                "BIGNUMERIC"
            };
            match text.as_deref().map(decimal_digits) {
                Some(Some((i, f))) if i <= max_int && f <= max_frac => {}
                Some(Some(_)) => bad(format!(
                    "Invalid {name} value: {} Field: {loc}; Value: {}",
                    shown(),
                    shown()
                )),
                _ => bad(format!(
                    "Cannot convert value to {} (bad value): {}",
                    name.to_ascii_lowercase(),
                    shown()
                )),
            }
        }
        ColType::Boolean => {
            let ok = match &*v {
                Value::Bool(_) => true,
                Value::String(s) => {
                    matches!(
                        s.to_ascii_lowercase().as_str(),
                        "true" | "false" | "1" | "0"
                    )
                }
                _ => false,
            };
            if !ok {
                bad(format!("Cannot convert value to boolean: {}", shown()));
            }
        }
        ColType::Timestamp => {
            let ok = match &*v {
                Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() < 253_402_300_800.0),
                Value::String(s) => parse_timestamp_micros(s).is_some(),
                _ => false,
            };
            if !ok {
                bad(format!("Cannot convert value to timestamp: {}", shown()));
            }
        }
        ColType::Date => {
            if v.as_str().is_none_or(|s| parse_date(s.trim()).is_none()) {
                bad(format!(
                    "Invalid date: '{}' Field: {loc}; Value: {}",
                    shown(),
                    shown()
                ));
            }
        }
        ColType::Time => {
            if v.as_str().is_none_or(|s| parse_time(s.trim()).is_none()) {
                bad(format!("Invalid time string \"{}\" Field: {loc}", shown()));
            }
        }
        ColType::DateTime => {
            if v.as_str()
                .is_none_or(|s| parse_datetime(s.trim()).is_none())
            {
                bad(format!(
                    "Invalid datetime string \"{}\" Field: {loc}",
                    shown()
                ));
            }
        }
        ColType::Json => {
            if let Value::String(s) = &*v {
                if serde_json::from_str::<Value>(s).is_err() {
                    bad(format!("Invalid JSON string: {s} Field: {loc}"));
                }
            }
        }
        ColType::Geography => {
            let ok = v.as_str().is_some_and(|s| {
                let u = s.trim_start().to_ascii_uppercase();
                [
                    "POINT",
                    "LINESTRING",
                    "POLYGON",
                    "MULTIPOINT",
                    "MULTILINESTRING",
                    "MULTIPOLYGON",
                    "GEOMETRYCOLLECTION",
                ]
                .iter()
                .any(|k| u.starts_with(k))
                    || serde_json::from_str::<Value>(s).is_ok_and(|g| g.get("type").is_some())
            });
            if !ok {
                bad(format!("Invalid geography value: {} Field: {loc}", shown()));
            }
        }
        ColType::Interval => {
            if !v.is_string() {
                bad(format!("Invalid interval value: {} Field: {loc}", shown()));
            }
        }
    }
}

/// Decoded length of standard base64 text (padding optional), or None when it is not base64.
fn base64_len(s: &str) -> Option<usize> {
    let t = s.trim_end_matches('=');
    if s.len() - t.len() > 2 {
        return None;
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    if t.len() % 4 == 1 || (s.len() != t.len() && s.len() % 4 != 0) {
        return None;
    }
    Some(t.len() * 3 / 4)
}

/// Digits before and after the point of a decimal (optionally signed, optional exponent).
fn decimal_digits(s: &str) -> Option<(usize, usize)> {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    if ip.is_empty() && fp.is_empty()
        || !ip.bytes().all(|b| b.is_ascii_digit())
        || !fp.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ip = ip.trim_start_matches('0');
    let fp = fp.trim_end_matches('0');
    let int_digits = ip.len() as i32 + exp;
    let frac_digits = fp.len() as i32 - exp;
    Some((int_digits.max(0) as usize, frac_digits.max(0) as usize))
}

fn num(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `YYYY-M[M]-D[D]`: days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = num(it.next()?, 4)?.into();
    let m_s = it.next()?;
    let d_s = it.next()?;
    let m = num(m_s, m_s.len().clamp(1, 2))?;
    let d = num(d_s, d_s.len().clamp(1, 2))?;
    if !(1..=12).contains(&m) || d == 0 || y == 0 {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > dim[m as usize - 1] {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `H[H]:MM[:SS[.f{1,6}]]`: microseconds since midnight.
pub fn parse_time(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, ':');
    let h_s = it.next()?;
    let h = num(h_s, h_s.len().clamp(1, 2))?;
    let m = num(it.next()?, 2)?;
    let (sec, frac) = match it.next() {
        None => (0, 0),
        Some(rest) => {
            let (sec_s, frac_s) = rest.split_once('.').unwrap_or((rest, ""));
            let sec = num(sec_s, 2)?;
            if frac_s.len() > 6 || !frac_s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let frac = if frac_s.is_empty() {
                0
            } else {
                format!("{frac_s:0<6}").parse::<i64>().ok()?
            };
            (sec, frac)
        }
    };
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some((i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(sec)) * 1_000_000 + frac)
}

/// `DATE[( |T)TIME]`: microseconds since the epoch of a civil date-time.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let (d, t) = match s.find([' ', 'T', 't']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let days = parse_date(d)?;
    let micros = match t {
        Some(t) => parse_time(t)?,
        None => 0,
    };
    Some(days * 86_400_000_000 + micros)
}

/// A timestamp string: `DATE[( |T)TIME][ ][Z|UTC|±HH[:MM]]`: microseconds since the epoch.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    let s = s.trim();
    let (body, offset_secs) = if let Some(b) = s.strip_suffix(" UTC").or(s.strip_suffix("UTC")) {
        (b, 0)
    } else if let Some(b) = s.strip_suffix(['Z', 'z']) {
        (b, 0)
    } else {
        // A trailing ±HH[:MM] after the time part (a date alone has '-' too: only look past
        // position 10).
        match s.get(10..).and_then(|tail| tail.rfind(['+', '-'])) {
            Some(i) => {
                let at = 10 + i;
                let sign = if &s[at..=at] == "-" { -1 } else { 1 };
                let z = &s[at + 1..];
                let (hh, mm) = z.split_once(':').unwrap_or((z, "00"));
                let hh = num(hh, hh.len().clamp(1, 2))?;
                let mm = num(mm, 2)?;
                if hh > 14 || mm > 59 {
                    return None;
                }
                (&s[..at], sign * (i64::from(hh) * 3600 + i64::from(mm) * 60))
            }
            None => (s, 0),
        }
    };
    let micros = parse_datetime(body.trim_end())?;
    Some(micros - offset_secs * 1_000_000)
}

/// A stored value in `tabledata.list` form: strings for scalars, `{"f":[...]}` for records and
/// `[{"v":...}]` for repeated columns. TIMESTAMPs are seconds in E notation (`"1.7E9"`), or with
/// `int64_timestamps` (the `formatOptions.useInt64Timestamp` query parameter) microseconds since
/// the epoch as a decimal integer string, as BigQuery answers.
pub fn to_list_value(col: &Column, v: Option<&Value>, int64_timestamps: bool) -> Value {
    match (col.mode, v) {
        (_, None) | (_, Some(Value::Null)) => {
            if col.mode == ColMode::Repeated {
                Value::Array(Vec::new())
            } else {
                Value::Null
            }
        }
        (ColMode::Repeated, Some(Value::Array(items))) => Value::Array(
            items
                .iter()
                .map(|i| serde_json::json!({ "v": scalar_or_record(col, i, int64_timestamps) }))
                .collect(),
        ),
        (_, Some(v)) => scalar_or_record(col, v, int64_timestamps),
    }
}

/// A row in `tabledata.list` form: `{"f":[{"v":...}, ...]}` in schema column order (see
/// [`to_list_value`] for `int64_timestamps`).
pub fn to_list_row(columns: &[Column], row: &Map<String, Value>, int64_timestamps: bool) -> Value {
    let cells: Vec<Value> = columns
        .iter()
        .map(|c| {
            let v = row
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&c.name))
                .map(|(_, v)| v);
            serde_json::json!({ "v": to_list_value(c, v, int64_timestamps) })
        })
        .collect();
    serde_json::json!({ "f": cells })
}

fn scalar_or_record(col: &Column, v: &Value, int64_timestamps: bool) -> Value {
    match (col.ty, v) {
        (ColType::Record, Value::Object(o)) => to_list_row(&col.fields, o, int64_timestamps),
        (ColType::Timestamp, _) => {
            let micros = match v {
                Value::Number(n) => n.as_f64().map(|f| (f * 1e6).round() as i64),
                Value::String(s) => parse_timestamp_micros(s),
                _ => None,
            };
            match micros {
                Some(us) if int64_timestamps => Value::String(us.to_string()),
                // BigQuery's default form: seconds since the epoch in E notation.
                Some(us) => Value::String(format!("{:E}", us as f64 / 1e6)),
                None => Value::Null,
            }
        }
        // BigQuery answers civil times in canonical form whatever form was written
        // (`11:22:33.5` → `11:22:33.500000`); clients parse only that.
        (ColType::Time, Value::String(s)) => match parse_time(s.trim()) {
            Some(us) => Value::String(format_time(us)),
            None => Value::String(s.clone()),
        },
        (ColType::DateTime, Value::String(s)) => match parse_datetime(s.trim()) {
            Some(us) => {
                let days = us.div_euclid(86_400_000_000);
                let (y, m, d) = civil_from_days(days);
                Value::String(format!(
                    "{y:04}-{m:02}-{d:02}T{}",
                    format_time(us.rem_euclid(86_400_000_000))
                ))
            }
            None => Value::String(s.clone()),
        },
        (ColType::Date, Value::String(s)) => match parse_date(s.trim()) {
            Some(days) => {
                let (y, m, d) = civil_from_days(days);
                Value::String(format!("{y:04}-{m:02}-{d:02}"))
            }
            None => Value::String(s.clone()),
        },
        (ColType::Boolean, Value::String(s)) => {
            let b = matches!(s.to_ascii_lowercase().as_str(), "true" | "1");
            Value::String(b.to_string())
        }
        (ColType::Json, Value::String(s)) => Value::String(s.clone()),
        (_, Value::String(s)) => Value::String(s.clone()),
        (_, other) => Value::String(match other {
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        }),
    }
}

/// µs since midnight → `HH:MM:SS[.ffffff]`.
fn format_time(us: i64) -> String {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let hms = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        hms
    } else {
        format!("{hms}.{frac:06}")
    }
}

/// Days since 1970-01-01 → (year, month, day) of the proleptic Gregorian calendar.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_parse() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp_micros("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_timestamp_micros("1970-01-01 00:00:00.5 UTC"),
            Some(500_000)
        );
        assert_eq!(
            parse_timestamp_micros("2024-01-01"),
            Some(19_723 * 86_400_000_000)
        );
        assert_eq!(parse_timestamp_micros("yesterday"), None);
        assert_eq!(parse_time("25:00:00"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal_digits("12.340"), Some((2, 2)));
        assert_eq!(decimal_digits("-1e3"), Some((4, 0)));
        assert_eq!(decimal_digits("abc"), None);
    }

    #[test]
    fn rows_check() {
        let cols = parse_schema(&json!([
            {"name":"id","type":"INT64","mode":"REQUIRED"},
            {"name":"tags","type":"STRING","mode":"REPEATED"},
            {"name":"r","type":"RECORD","fields":[{"name":"x","type":"BOOL"}]}
        ]))
        .unwrap();
        let mut ok = json!({"id":"5","tags":["a"],"r":{"x":true}});
        assert!(check_row(&cols, ok.as_object_mut().unwrap(), false).is_empty());
        let mut bad = json!({"tags":"a","r":{"x":"maybe","y":1},"zz":1});
        let p = check_row(&cols, bad.as_object_mut().unwrap(), false);
        let locs: Vec<&str> = p.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(locs, ["zz", "id", "tags", "r.y", "r.x"], "{p:?}");
        let mut unknown = json!({"id":1,"zz":1});
        assert!(check_row(&cols, unknown.as_object_mut().unwrap(), true).is_empty());
        assert_eq!(unknown, json!({"id":1}));
    }
}
