//! Property tests for `time` and `schema`: canonical round trips, `to_row` never panics, and no
//! key of an event is lost (it is a column or it is in `other`).

use evlog_core::schema::decimal::{self, Limits, Rounding};
use evlog_core::schema::{Field, FieldType, Mode, RowMeta, TableSchema};
use evlog_core::time;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const DAY: i64 = 86_400_000_000;

/// Zone suffixes and their offsets east of UTC in seconds.
const ZONES: [(&str, i64); 10] = [
    ("", 0),
    ("Z", 0),
    ("z", 0),
    (" UTC", 0),
    ("UTC", 0),
    ("+05:30", 19_800),
    ("-08:00", -28_800),
    (" +02", 7_200),
    ("+0130", 5_400),
    ("-3", -10_800),
];

fn one_column(ty: &str) -> TableSchema {
    let text = json!([{"name": "x", "type": ty}]).to_string();
    TableSchema::from_json_str("ns", "t", &text, "props").expect("valid schema")
}

fn meta() -> RowMeta {
    RowMeta {
        event_id: "id".into(),
        event_time: 0,
        received_at: 0,
    }
}

fn convert(schema: &TableSchema, v: Value) -> Result<Value, String> {
    let mut m = Map::new();
    m.insert("x".into(), v);
    let row = schema.to_row(m, &meta()).map_err(|e| e.to_string())?;
    let mut out: Map<String, Value> = serde_json::from_str(&row.json).expect("row is JSON");
    Ok(out.remove("x").unwrap_or(Value::Null))
}

/// Renders `n × 10^-scale` the obvious way, to compare with the decimal module.
fn render_scaled(n: i128, scale: u32) -> String {
    let digits = n.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let frac = frac.trim_end_matches('0');
    let sign = if n < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Every scalar type and mode, plus nested and repeated records.
fn everything_schema() -> TableSchema {
    let scalars = [
        "STRING",
        "BYTES",
        "INT64",
        "FLOAT64",
        "NUMERIC",
        "BIGNUMERIC",
        "BOOL",
        "TIMESTAMP",
        "DATE",
        "TIME",
        "DATETIME",
        "JSON",
        "GEOGRAPHY",
    ];
    let mut fields = Vec::new();
    for ty in scalars {
        for mode in ["NULLABLE", "REQUIRED", "REPEATED"] {
            fields.push(
                json!({"name": format!("{}_{}", ty.to_lowercase(), mode.to_lowercase()),
                               "type": ty, "mode": mode}),
            );
        }
    }
    fields.push(json!({"name": "s", "type": "STRING", "maxLength": 4}));
    fields.push(json!({"name": "n", "type": "NUMERIC", "precision": 5, "scale": 2}));
    let sub = json!([
        {"name": "a", "type": "INT64"},
        {"name": "b", "type": "STRING", "mode": "REPEATED"},
        {"name": "c", "type": "RECORD", "fields": [{"name": "d", "type": "BOOL"}]}
    ]);
    fields.push(json!({"name": "rec", "type": "RECORD", "fields": sub}));
    fields.push(json!({"name": "recs", "type": "RECORD", "mode": "REPEATED", "fields": sub}));
    fields.push(json!({"name": "req_rec", "type": "RECORD", "mode": "REQUIRED", "fields": sub}));
    TableSchema::from_json_str("ns", "all", &Value::Array(fields).to_string(), "props")
        .expect("valid schema")
}

/// Valid values for every REQUIRED column of [`everything_schema`].
fn valid_base() -> Map<String, Value> {
    let v = json!({
        "string_required": "s", "bytes_required": "aGk=", "int64_required": 1,
        "float64_required": 1.5, "numeric_required": "1", "bignumeric_required": "1",
        "bool_required": true, "timestamp_required": "2026-11-22T10:00:00Z",
        "date_required": "2026-11-22", "time_required": "10:00:00",
        "datetime_required": "2026-11-22 10:00:00", "json_required": {},
        "geography_required": "POINT(1 2)", "req_rec": {"a": 1}
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("literal object"),
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "string_nullable", "bytes_nullable", "int64_nullable", "float64_repeated",
            "numeric_nullable", "bignumeric_required", "bool_nullable", "timestamp_nullable",
            "date_repeated", "time_nullable", "datetime_nullable", "json_nullable",
            "geography_nullable", "s", "n", "rec", "recs", "req_rec", "a", "b", "c", "d", "other",
            "event_id", "event_time", "received_at", "REC", "Int64_Nullable", "x",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "",
            "1",
            "-12",
            "+7",
            "9.99",
            "1e400",
            "NaN",
            "inf",
            "true",
            "0",
            "2026-11-22",
            "2026-11-22T10:00:00Z",
            "10:00:00",
            "2026-11-22 10:00:00",
            "aGVsbG8=",
            "POINT(1 2)",
            "9223372036854775808",
            "1.0000000005",
            "99999999999999999999999999999.9999999995",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), value()), 0..12).prop_map(|kv| kv.into_iter().collect())
}

/// Checks that every key of `input` (an object matched against `fields`) is either a column of
/// `row` or present, with the same value, in `other`. Recurses into non-repeated RECORDs.
fn check_nothing_lost(
    fields: &[Field],
    input: &Map<String, Value>,
    row: &Map<String, Value>,
    other: &Map<String, Value>,
    top: bool,
) {
    const RESERVED: [&str; 4] = ["event_id", "event_time", "received_at", "other"];
    for (k, v) in input {
        let col = fields.iter().find(|f| {
            f.name.eq_ignore_ascii_case(k) && !(top && RESERVED.contains(&f.name.as_str()))
        });
        match col {
            Some(f) => {
                if v.is_null() {
                    assert!(!row.contains_key(&f.name), "null {k} written");
                    continue;
                }
                assert!(
                    row.contains_key(&f.name),
                    "column {} missing for key {k}",
                    f.name
                );
                if let (
                    FieldType::Record(sub),
                    Mode::Nullable | Mode::Required,
                    Value::Object(vi),
                ) = (&f.ty, f.mode, v)
                {
                    let empty = Map::new();
                    let nested_other = other
                        .get(&f.name)
                        .and_then(Value::as_object)
                        .unwrap_or(&empty);
                    let nested_row = row[&f.name].as_object().expect("record is an object");
                    check_nothing_lost(sub, vi, nested_row, nested_other, false);
                }
            }
            None => assert_eq!(other.get(k), Some(v), "key {k:?} lost"),
        }
    }
}

/// Parses a row and checks it has the reserved columns and lost none of `input`'s keys.
fn check_row(schema: &TableSchema, input: &Map<String, Value>, json: &str) {
    let out: Map<String, Value> = serde_json::from_str(json).expect("row is JSON");
    let other: Map<String, Value> = match out.get("other") {
        Some(Value::String(s)) => serde_json::from_str(s).expect("other is object text"),
        Some(v) => panic!("other is not a string: {v}"),
        None => Map::new(),
    };
    for col in ["event_id", "event_time", "received_at"] {
        assert!(out.contains_key(col), "{col} missing");
    }
    check_nothing_lost(schema.fields(), input, &out, &other, true);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn timestamp_roundtrip(micros in time::MIN_MICROS..=time::MAX_MICROS) {
        let text = time::format_timestamp(micros);
        prop_assert_eq!(time::parse_timestamp(&text), Ok(micros));
        let schema = one_column("TIMESTAMP");
        prop_assert_eq!(convert(&schema, Value::String(text.clone())), Ok(Value::String(text)));
    }

    #[test]
    fn timestamp_text_forms_parse_to_the_right_instant(
        days in 0i64..=3_000_000,
        h in 0i64..24, mi in 0i64..60, s in 0i64..60,
        frac in prop::option::of("[0-9]{1,12}"),
        sep in prop::sample::select(vec!["T", "t", " "]),
        zone in prop::sample::select(ZONES.to_vec()),
    ) {
        let days = days + time::days_from_civil(1, 1, 2);
        let (y, m, d) = time::civil_from_days(days);
        let frac_text = frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default();
        let text = format!("{y:04}-{m}-{d}{sep}{h}:{mi:02}:{s}{frac_text}{}", zone.0);
        // Fraction digits beyond microseconds are truncated.
        let micros = frac.map_or(0, |f| {
            let six: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            six.parse::<i64>().expect("digits")
        });
        let expected = days * DAY + ((h * 60 + mi) * 60 + s - zone.1) * 1_000_000 + micros;
        match time::parse_timestamp(&text) {
            Ok(v) => {
                prop_assert_eq!(v, expected);
                let canon = time::format_timestamp(v);
                prop_assert_eq!(time::parse_timestamp(&canon), Ok(v));
                prop_assert_eq!(canon.len(), 27);
            }
            // Only a zone that pushes the instant past 9999-12-31 may fail.
            Err(e) => prop_assert!(expected > time::MAX_MICROS, "{text}: {e}"),
        }
    }

    #[test]
    fn date_time_datetime_roundtrip(
        days in time::days_from_civil(1, 1, 1)..=time::days_from_civil(9999, 12, 31),
        tod in 0i64..DAY,
    ) {
        let days = i32::try_from(days).expect("fits");
        let text = time::format_date(days);
        prop_assert_eq!(time::parse_date(&text), Ok(days));
        let (y, m, d) = time::civil_from_days(i64::from(days));
        prop_assert_eq!(time::days_from_civil(y, m, d), i64::from(days));
        let loose = time::parse_date(&format!("{y:04}-{m}-{d}")).expect("valid");
        prop_assert_eq!(time::format_date(loose), text);
        let t = time::format_time(tod);
        prop_assert_eq!(time::parse_time(&t), Ok(tod));
        let dt = i64::from(days) * DAY + tod;
        let text = time::format_datetime(dt);
        prop_assert_eq!(time::parse_datetime(&text), Ok(dt));
        prop_assert_eq!(time::parse_datetime(&text.replace('T', " ")), Ok(dt));
    }

    #[test]
    fn int64_roundtrip(n in any::<i64>()) {
        let schema = one_column("INT64");
        prop_assert_eq!(convert(&schema, json!(n)), Ok(json!(n)));
        prop_assert_eq!(convert(&schema, json!(n.to_string())), Ok(json!(n)));
    }

    #[test]
    fn float64_roundtrip(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let schema = one_column("FLOAT64");
        let out = convert(&schema, json!(x)).expect("finite float");
        prop_assert_eq!(out.as_f64(), Some(x));
        let out = convert(&schema, json!(format!("{x:e}"))).expect("numeric string");
        prop_assert_eq!(out.as_f64(), Some(x));
    }

    #[test]
    fn numeric_roundtrip(n in -(10i128.pow(38) - 1)..10i128.pow(38)) {
        let canonical = render_scaled(n, 9);
        let parsed = decimal::parse(&canonical).expect("decimal");
        let back = parsed.canonical(Limits::NUMERIC, Rounding::HalfAwayFromZero);
        prop_assert_eq!(back, Ok(canonical.clone()));
        // The same value in exponent form canonicalises to the same text.
        let scaled_text = format!("{n}e-9");
        let d = decimal::parse(&scaled_text).expect("exponent form");
        let back = d.canonical(Limits::NUMERIC, Rounding::HalfAwayFromZero);
        prop_assert_eq!(back, Ok(canonical.clone()));
        let schema = one_column("NUMERIC");
        prop_assert_eq!(convert(&schema, json!(scaled_text)), Ok(Value::String(canonical)));
    }

    #[test]
    fn bignumeric_roundtrip(hi in any::<i64>(), lo in any::<u64>(), scale in 0u32..=38) {
        // Up to ~38 significant digits placed at any scale stays within BIGNUMERIC's range.
        let n = (i128::from(hi) << 64 | i128::from(lo)) / 2;
        let text = render_scaled(n, scale);
        let d = decimal::parse(&text).expect("decimal");
        prop_assert_eq!(d.canonical(Limits::BIGNUMERIC, Rounding::HalfAwayFromZero), Ok(text));
    }

    #[test]
    fn to_row_never_panics_and_loses_nothing(extra in event(), with_base in any::<bool>()) {
        let schema = everything_schema();
        // On top of a valid event half the time, so that rows succeed and get checked.
        let mut ev = if with_base { valid_base() } else { Map::new() };
        ev.extend(extra);
        let input = ev.clone();
        if let Ok(row) = schema.to_row(ev, &meta()) {
            check_row(&schema, &input, &row.json);
        }
    }

    #[test]
    fn unknown_keys_never_fail_and_are_kept(
        extra in prop::collection::vec((key(), value()), 0..12),
        rec_extra in prop::collection::vec((key(), value()), 0..4),
    ) {
        let schema = everything_schema();
        let reserved = ["event_id", "event_time", "received_at", "other"];
        let is_column = |k: &str| {
            schema.fields().iter().any(|f| {
                f.name.eq_ignore_ascii_case(k) && !reserved.contains(&f.name.as_str())
            })
        };
        let mut ev = valid_base();
        let mut rec = Map::new();
        rec.insert("a".into(), json!(1));
        for (k, v) in rec_extra {
            if !["a", "b", "c"].iter().any(|c| c.eq_ignore_ascii_case(&k)) {
                rec.insert(k, v);
            }
        }
        ev.insert("rec".into(), Value::Object(rec));
        for (k, v) in extra {
            if !is_column(&k) {
                ev.insert(k, v);
            }
        }
        let input = ev.clone();
        let row = schema.to_row(ev, &meta());
        prop_assert!(row.is_ok(), "{:?}", row);
        if let Ok(row) = row {
            check_row(&schema, &input, &row.json);
        }
    }

    #[test]
    fn to_row_never_panics_on_near_misses(v in value(), col in prop::sample::select(
        everything_schema().fields().iter().map(|f| f.name.clone()).collect::<Vec<_>>()))
    {
        // An arbitrary value in one real column of an otherwise valid event, so that every
        // column's conversion is reached (a missing REQUIRED column would stop earlier).
        let schema = everything_schema();
        let mut ev = valid_base();
        ev.insert(col, v);
        let _ = schema.to_row(ev, &meta());
    }
}
