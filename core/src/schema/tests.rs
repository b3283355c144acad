use serde_json::{json, Map, Value};

use super::*;

const ORIGIN: &str = "schemas/events/t.json";

fn schema(fields: Value) -> TableSchema {
    TableSchema::from_json_str("events", "t", &fields.to_string(), ORIGIN).expect("valid schema")
}

fn load_err(fields: Value) -> String {
    TableSchema::from_json_str("events", "t", &fields.to_string(), ORIGIN)
        .expect_err("schema should be rejected")
        .to_string()
}

fn meta() -> RowMeta {
    RowMeta {
        event_id: "id-1".into(),
        event_time: 1_000_000,
        received_at: 2_000_000,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("test event must be an object, got {other}"),
    }
}

/// Converts through both paths, from a `Map` and from the event's text (parsed borrowed, as
/// the pipeline does), and checks they agree.
fn row(s: &TableSchema, ev: Value) -> Result<Map<String, Value>, RowError> {
    let text = ev.to_string();
    let from_text = row_from_text(s, &text);
    let r = s.to_row(obj(ev), &meta());
    assert_eq!(r, from_text, "both paths agree on {text}");
    let r = r?;
    assert!(!r.json.contains('\n'));
    Ok(obj(serde_json::from_str(&r.json).expect("row is JSON")))
}

/// Converts an event given as JSON text, as the pipeline does.
fn row_from_text(s: &TableSchema, text: &str) -> Result<Row, RowError> {
    match jref::parse(text).expect("event JSON") {
        jref::JRef::Object(o) => s.to_row_ref(o, &meta(), 0),
        other => panic!("test event must be an object, got {other:?}"),
    }
}

#[test]
fn text_path_keys_escapes_and_duplicates_as_serde_json() {
    let s = transaction();
    // Duplicate keys: the last wins, as in serde_json's Map.
    let r = row_from_text(&s, r#"{"user_id":1,"currency":"EUR","user_id":2}"#).unwrap();
    assert!(
        r.json.starts_with(r#"{"user_id":2,"currency":"EUR""#),
        "{}",
        r.json
    );
    // Leftovers as sent: escapes, member order, numbers; top level first, then RECORDs'.
    let r = row_from_text(
        &s,
        r#"{"z\u0031":{"b":1,"a":"x\ny","a":1E+2},"user_id":3,"a\"q":[{"d":1,"c":2.50}],"items":[{"sku":"S","zz":1,"aa":2}]}"#,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&r.json).unwrap();
    assert_eq!(
        v["other"].as_str().unwrap(),
        r#"{"z\u0031":{"b":1,"a":"x\ny","a":1E+2},"a\"q":[{"d":1,"c":2.50}],"items":[{"zz":1,"aa":2}]}"#
    );
    // Case-insensitive duplicates name both keys, in key order.
    let e = row_from_text(&s, r#"{"user_id":1,"USER_ID":2}"#).unwrap_err();
    assert_eq!(e.reason, RowErrorReason::DuplicateField);
    assert!(e.message.contains(r#"keys "USER_ID" and "user_id""#), "{e}");
}

#[test]
fn text_path_agrees_with_map_path_on_duplicate_and_leftover_keys() {
    let s = transaction();
    for text in [
        r#"{"user_id":1,"USER_ID":2,"User_Id":3}"#,
        r#"{"user_id":1,"user_id":2,"USER_ID":3}"#,
        r#"{"currency":"EUR","Currency":"USD","user_id":1,"USER_ID":2}"#,
        r#"{"zz":1,"aa":{"y":1,"x":2,"y":3},"zz":2,"user_id":1,"user_id":4}"#,
        r#"{"user_id":1,"items":[{"sku":"a","SKU":"b"}]}"#,
        r#"{"user_id":1,"items":[{"sku":"a","sku":"b","q":{"b":1,"a":1,"b":2}}],"items":[{"sku":"c"}]}"#,
        r#"{"user_id":"x","user_id":"2","amount":"1.5","amount":"bad"}"#,
    ] {
        let map: Map<String, Value> = serde_json::from_str(text).expect("object");
        // `other` keeps the text (order, duplicates); it means what the map path writes.
        let meaning = |r: Result<Row, RowError>| {
            r.map(|r| {
                let mut v: Map<String, Value> = serde_json::from_str(&r.json).unwrap();
                if let Some(Value::String(o)) = v.get("other") {
                    let o: Value = serde_json::from_str(o).unwrap();
                    v.insert("other".into(), o);
                }
                v
            })
        };
        assert_eq!(
            meaning(row_from_text(&s, text)),
            meaning(s.to_row(map, &meta())),
            "{text}"
        );
    }
}

/// Converts `v` in a one-column schema built from `field`; returns the column's output (or
/// Null when omitted).
fn conv_field(field: Value, v: Value) -> Result<Value, RowError> {
    let s = schema(json!([field]));
    let mut r = row(&s, json!({ "x": v }))?;
    Ok(r.remove("x").unwrap_or(Value::Null))
}

fn conv(ty: &str, v: Value) -> Result<Value, RowError> {
    conv_field(json!({"name": "x", "type": ty}), v)
}

fn ok(ty: &str, v: Value) -> Value {
    conv(ty, v.clone()).unwrap_or_else(|e| panic!("{ty} should accept {v}: {e}"))
}

fn bad(ty: &str, v: Value) -> RowError {
    match conv(ty, v.clone()) {
        Ok(out) => panic!("{ty} should reject {v}, gave {out}"),
        Err(e) => e,
    }
}

fn reason(ty: &str, v: Value) -> &'static str {
    bad(ty, v).reason.as_str()
}

#[test]
fn string_values() {
    assert_eq!(ok("STRING", json!("a\"b\n")), json!("a\"b\n"));
    assert_eq!(ok("STRING", json!(12)), json!("12"));
    assert_eq!(ok("STRING", json!(1.5)), json!("1.5"));
    assert_eq!(ok("STRING", json!(true)), json!("true"));
    assert_eq!(reason("STRING", json!({"a": 1})), "invalid_value");
    assert_eq!(reason("STRING", json!([1])), "invalid_value");
    let f = json!({"name": "x", "type": "STRING", "maxLength": "5"});
    assert_eq!(
        conv_field(f.clone(), json!("héllo")).expect("5 chars"),
        json!("héllo")
    );
    let e = conv_field(f, json!("héllo!")).expect_err("6 chars");
    assert_eq!(e.reason, RowErrorReason::TooLong);
    assert!(
        e.to_string().contains("6 characters exceed maxLength 5"),
        "{e}"
    );
}

#[test]
fn bytes_values() {
    assert_eq!(ok("BYTES", json!("aGVsbG8=")), json!("aGVsbG8="));
    assert_eq!(ok("BYTES", json!("aGVsbG8")), json!("aGVsbG8="));
    assert_eq!(ok("BYTES", json!("")), json!(""));
    assert_eq!(ok("BYTES", json!("+/+/")), json!("+/+/"));
    for v in ["a", "aGV$", "aGVsbG8==", "a===", "aG=sbG8=", "aGVs bG8="] {
        assert_eq!(reason("BYTES", json!(v)), "invalid_value", "{v}");
    }
    assert_eq!(reason("BYTES", json!(5)), "invalid_value");
    let f = json!({"name": "x", "type": "BYTES", "maxLength": 4});
    let e = conv_field(f.clone(), json!("aGVsbG8=")).expect_err("5 bytes");
    assert_eq!(e.reason, RowErrorReason::TooLong);
    assert_eq!(
        conv_field(f, json!("aGVsbA==")).expect("4 bytes"),
        json!("aGVsbA==")
    );
    for n in 0..40u8 {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let mut enc = String::new();
        convert::base64_encode(&data, &mut enc);
        assert_eq!(convert::base64_decode(&enc), Some(data));
    }
}

#[test]
fn int64_values() {
    assert_eq!(ok("INT64", json!(42)), json!(42));
    assert_eq!(ok("INTEGER", json!("-12")), json!(-12));
    assert_eq!(ok("int64", json!("+7")), json!(7));
    assert_eq!(ok("INT64", json!(i64::MIN)), json!(i64::MIN));
    assert_eq!(ok("INT64", json!(i64::MAX.to_string())), json!(i64::MAX));
    // 2^63 is not an INT64.
    assert_eq!(
        reason("INT64", json!(9_223_372_036_854_775_808u64)),
        "out_of_range"
    );
    assert_eq!(
        reason("INT64", json!("9223372036854775808")),
        "out_of_range"
    );
    assert_eq!(
        reason("INT64", json!("-9223372036854775809")),
        "out_of_range"
    );
    assert_eq!(reason("INT64", json!(1e19)), "out_of_range");
    for v in [
        json!(1.5),
        json!(1e3),
        json!(1.0),
        json!("1.5"),
        json!(""),
        json!(" 1"),
        json!("1e3"),
    ] {
        assert_eq!(reason("INT64", v.clone()), "invalid_value", "{v}");
    }
    assert_eq!(reason("INT64", json!(true)), "invalid_value");
    assert_eq!(reason("INT64", json!("+")), "invalid_value");
}

#[test]
fn float64_values() {
    assert_eq!(ok("FLOAT64", json!(1.5)), json!(1.5));
    assert_eq!(ok("FLOAT", json!(3)), json!(3));
    assert_eq!(ok("FLOAT64", json!("2.5")), json!(2.5));
    assert_eq!(ok("FLOAT64", json!("-1e-3")), json!(-0.001));
    assert_eq!(ok("FLOAT64", json!("NaN")), json!("NaN"));
    assert_eq!(ok("FLOAT64", json!("nan")), json!("NaN"));
    assert_eq!(ok("FLOAT64", json!("Infinity")), json!("Infinity"));
    assert_eq!(ok("FLOAT64", json!("inf")), json!("Infinity"));
    assert_eq!(ok("FLOAT64", json!("-INF")), json!("-Infinity"));
    assert_eq!(ok("FLOAT64", json!("-Infinity")), json!("-Infinity"));
    assert_eq!(reason("FLOAT64", json!("1e400")), "out_of_range");
    for v in [
        json!("abc"),
        json!(""),
        json!("1,5"),
        json!(true),
        json!([1.0]),
        json!("infinit"),
    ] {
        assert_eq!(reason("FLOAT64", v.clone()), "invalid_value", "{v}");
    }
}

#[test]
fn numeric_values() {
    assert_eq!(ok("NUMERIC", json!("9.99")), json!("9.99"));
    assert_eq!(ok("NUMERIC", json!(9.99)), json!("9.99"));
    assert_eq!(ok("NUMERIC", json!("-0.5")), json!("-0.5"));
    assert_eq!(ok("NUMERIC", json!("1.2e3")), json!("1200"));
    assert_eq!(ok("NUMERIC", json!("+7")), json!("7"));
    assert_eq!(
        ok("NUMERIC", json!(12_345_678_901_234_567_890u64)),
        json!("12345678901234567890")
    );
    assert_eq!(ok("NUMERIC", json!("1.0000000005")), json!("1.000000001"));
    assert_eq!(ok("NUMERIC", json!("-1.0000000005")), json!("-1.000000001"));
    assert_eq!(ok("NUMERIC", json!("-0.0")), json!("0"));
    assert_eq!(ok("NUMERIC", json!(1e20)), json!("100000000000000000000"));
    let s = schema(json!([{"name": "amount", "type": "NUMERIC"}]));
    let e = row(&s, json!({"amount": "abc"})).expect_err("abc is not NUMERIC");
    assert_eq!(
        e.to_string(),
        "field \"amount\": expected NUMERIC, got \"abc\": not a decimal number"
    );
    let e = bad("NUMERIC", json!(0.123_456_789_012_345_67));
    assert!(
        e.to_string()
            .contains("send high-precision decimals as strings"),
        "{e}"
    );
    let e = bad("NUMERIC", json!("1e29"));
    assert_eq!(e.reason, RowErrorReason::OutOfRange);
    assert!(
        e.to_string().contains("out of range for NUMERIC(38, 9)"),
        "{e}"
    );
    let f = json!({"name": "x", "type": "NUMERIC", "precision": "5", "scale": 2});
    assert_eq!(
        conv_field(f.clone(), json!("999.994")).expect("fits"),
        json!("999.99")
    );
    let e = conv_field(f, json!("999.995")).expect_err("rounds over");
    assert!(e.to_string().contains("expected NUMERIC(5, 2)"), "{e}");
    assert!(
        e.to_string().contains("out of range for NUMERIC(5, 2)"),
        "{e}"
    );
    let even = json!({"name": "x", "type": "NUMERIC", "precision": 3, "scale": 0,
                      "roundingMode": "ROUND_HALF_EVEN"});
    assert_eq!(conv_field(even, json!("2.5")).expect("even"), json!("2"));
    assert_eq!(
        ok("BIGNUMERIC", json!("1e-38")),
        json!("0.00000000000000000000000000000000000001")
    );
    assert_eq!(
        ok("BIGNUMERIC", json!("1e38")),
        json!(format!("1{}", "0".repeat(38)))
    );
    assert_eq!(reason("BIGNUMERIC", json!("1e39")), "out_of_range");
    assert_eq!(reason("NUMERIC", json!(true)), "invalid_value");
    assert_eq!(reason("NUMERIC", json!("NaN")), "invalid_value");
}

#[test]
fn bool_values() {
    for (v, b) in [
        (json!(true), true),
        (json!("TRUE"), true),
        (json!("false"), false),
        (json!("1"), true),
        (json!("0"), false),
        (json!(1), true),
        (json!(0), false),
    ] {
        assert_eq!(ok("BOOL", v), json!(b));
    }
    for v in [json!(2), json!("yes"), json!(1.0), json!(-1), json!({})] {
        assert_eq!(reason("BOOLEAN", v.clone()), "invalid_value", "{v}");
    }
}

#[test]
fn timestamp_values() {
    assert_eq!(
        ok("TIMESTAMP", json!("2026-11-22T10:00:00.123Z")),
        json!("2026-11-22T10:00:00.123000Z")
    );
    assert_eq!(
        ok("TIMESTAMP", json!("2026-11-22 12:00:00+02:00")),
        json!("2026-11-22T10:00:00.000000Z")
    );
    assert_eq!(
        ok("TIMESTAMP", json!(1_700_000_000)),
        json!("2023-11-14T22:13:20.000000Z")
    );
    assert_eq!(
        ok("TIMESTAMP", json!(1.5)),
        json!("1970-01-01T00:00:01.500000Z")
    );
    assert_eq!(
        ok("TIMESTAMP", json!(1.1)),
        json!("1970-01-01T00:00:01.100000Z")
    );
    assert_eq!(
        ok("TIMESTAMP", json!(-1)),
        json!("1969-12-31T23:59:59.000000Z")
    );
    assert_eq!(reason("TIMESTAMP", json!(1e20)), "out_of_range");
    assert_eq!(reason("TIMESTAMP", json!(i64::MAX)), "out_of_range");
    assert_eq!(reason("TIMESTAMP", json!("10000-01-01")), "out_of_range");
    assert_eq!(
        reason("TIMESTAMP", json!("2026-11-22T10:00:60Z")),
        "out_of_range"
    );
    assert_eq!(reason("TIMESTAMP", json!("yesterday")), "invalid_value");
    assert_eq!(reason("TIMESTAMP", json!(true)), "invalid_value");
    let e = bad("TIMESTAMP", json!("10000-01-01"));
    assert!(
        e.to_string()
            .contains("year 10000 is out of range 0001..9999"),
        "{e}"
    );
}

#[test]
fn date_time_datetime_values() {
    assert_eq!(ok("DATE", json!("2026-1-2")), json!("2026-01-02"));
    assert_eq!(reason("DATE", json!("2026-02-30")), "out_of_range");
    assert_eq!(reason("DATE", json!(20260102)), "invalid_value");
    assert_eq!(ok("TIME", json!("1:02:03.5")), json!("01:02:03.500000"));
    assert_eq!(ok("TIME", json!("23:59:59")), json!("23:59:59"));
    assert_eq!(reason("TIME", json!("24:00:00")), "out_of_range");
    assert_eq!(
        ok("DATETIME", json!("2026-11-22 10:00:00")),
        json!("2026-11-22T10:00:00")
    );
    assert_eq!(
        reason("DATETIME", json!("2026-11-22T10:00:00Z")),
        "invalid_value"
    );
    assert_eq!(reason("DATETIME", json!(0)), "invalid_value");
}

#[test]
fn json_and_geography_values() {
    assert_eq!(ok("JSON", json!({"a": [1, 2]})), json!("{\"a\":[1,2]}"));
    assert_eq!(ok("JSON", json!("str")), json!("\"str\""));
    assert_eq!(ok("JSON", json!(5)), json!("5"));
    assert_eq!(ok("JSON", json!(null)), Value::Null);
    assert_eq!(ok("GEOGRAPHY", json!("POINT(1 2)")), json!("POINT(1 2)"));
    assert_eq!(
        ok("GEOGRAPHY", json!("multipolygon EMPTY")),
        json!("multipolygon EMPTY")
    );
    let gj = json!({"type": "Point", "coordinates": [1.0, 2.0]});
    assert_eq!(
        ok("GEOGRAPHY", gj),
        json!("{\"coordinates\":[1.0,2.0],\"type\":\"Point\"}")
    );
    for v in [
        json!("CIRCLE(1)"),
        json!({"coordinates": []}),
        json!(5),
        json!({"type": 1}),
    ] {
        assert_eq!(reason("GEOGRAPHY", v.clone()), "invalid_value", "{v}");
    }
}

#[test]
fn modes() {
    let s = schema(json!([
        {"name": "id", "type": "INT64", "mode": "REQUIRED"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "note", "type": "STRING"}
    ]));
    let e = row(&s, json!({})).expect_err("missing required");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("id", "missing_required")
    );
    assert!(e.to_string().contains("expected INT64 (REQUIRED)"), "{e}");
    let e = row(&s, json!({"id": null})).expect_err("null required");
    assert_eq!(e.reason, RowErrorReason::MissingRequired);
    let r = row(&s, json!({"id": 1, "tags": null, "note": null})).expect("nulls omitted");
    assert!(!r.contains_key("tags") && !r.contains_key("note") && !r.contains_key("other"));
    let r = row(&s, json!({"id": 1, "tags": []})).expect("empty array");
    assert_eq!(r["tags"], json!([]));
    let r = row(&s, json!({"id": 1, "tags": ["a", 2]})).expect("array");
    assert_eq!(r["tags"], json!(["a", "2"]));
    let e = row(&s, json!({"id": 1, "tags": ["a", null]})).expect_err("null element");
    assert_eq!(e.field, "tags[1]");
    assert!(e.to_string().contains("null elements"), "{e}");
    let e = row(&s, json!({"id": 1, "tags": "a"})).expect_err("not an array");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("tags", "invalid_value")
    );
}

fn transaction() -> TableSchema {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/schemas/events/transaction.json"
    );
    let text = std::fs::read_to_string(path).expect("test data present");
    TableSchema::from_json_str("events", "transaction", &text, "events/transaction.json")
        .expect("valid")
}

#[test]
fn full_row_with_records_and_other() {
    let s = transaction();
    let r = s
        .to_row(
            obj(json!({
                "user_id": 42, "amount": "9.99", "coupon": "XMAS", "currency": "USD",
                "items": [{"sku": "A1", "price": 4.5, "qty": "2"}, {"sku": "B2", "gift": true}],
                "created_at": "2026-11-22T10:00:00Z",
                "browser": "firefox", "other": "mine", "event_id": "theirs"
            })),
            &meta(),
        )
        .expect("valid event");
    let v: Value = serde_json::from_str(&r.json).expect("json");
    assert_eq!(
        v,
        json!({
            "user_id": 42, "amount": "9.99", "currency": "USD", "coupon": "XMAS",
            "items": [{"sku": "A1", "price": "4.5", "qty": 2}, {"sku": "B2"}],
            "created_at": "2026-11-22T10:00:00.000000Z",
            "event_id": "id-1",
            "event_time": "1970-01-01T00:00:01.000000Z",
            "received_at": "1970-01-01T00:00:02.000000Z",
            "other": "{\"browser\":\"firefox\",\"event_id\":\"theirs\",\"other\":\"mine\",\"items\":[{},{\"gift\":true}]}"
        })
    );
    // Column order follows the schema, reserved columns last.
    assert!(
        r.json.starts_with("{\"user_id\":42,\"amount\":\"9.99\""),
        "{}",
        r.json
    );
    // Nothing left over: no `other`.
    let r = row(&s, json!({"user_id": 1})).expect("minimal");
    assert!(!r.contains_key("other"));
    assert_eq!(r.len(), 4);
}

#[test]
fn nested_record_other_and_paths() {
    let s = schema(json!([
        {"name": "address", "type": "RECORD", "fields": [
            {"name": "city", "type": "STRING"},
            {"name": "geo", "type": "STRUCT", "fields": [{"name": "lat", "type": "FLOAT64"}]}
        ]},
        {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "price", "type": "NUMERIC", "mode": "REQUIRED"}
        ]}
    ]));
    let r = row(
        &s,
        json!({"address": {"city": "Oslo", "extra": 1, "geo": {"lat": 1, "lon": 2}}}),
    )
    .expect("valid");
    assert_eq!(r["address"], json!({"city": "Oslo", "geo": {"lat": 1}}));
    let other: Value = serde_json::from_str(r["other"].as_str().expect("other")).expect("json");
    assert_eq!(other, json!({"address": {"extra": 1, "geo": {"lon": 2}}}));
    let e = row(
        &s,
        json!({"items": [{"price": 1}, {"price": 2}, {"price": "x"}]}),
    )
    .expect_err("bad");
    assert_eq!(e.field, "items[2].price");
    let e = row(&s, json!({"items": [{"price": 1}, {}]})).expect_err("missing");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("items[1].price", "missing_required")
    );
    let e = row(&s, json!({"address": {"geo": {"lat": "north"}}})).expect_err("bad lat");
    assert_eq!(e.field, "address.geo.lat");
    let e = row(&s, json!({"address": "Oslo"})).expect_err("not an object");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("address", "invalid_value")
    );
}

#[test]
fn case_insensitive_match_and_duplicates() {
    let s = schema(
        json!([{"name": "userId", "type": "INT64"}, {"name": "rec", "type": "RECORD",
        "fields": [{"name": "A", "type": "STRING"}]}]),
    );
    let r = row(&s, json!({"USERID": 5, "REC": {"a": "x"}})).expect("case-insensitive");
    assert_eq!(r["userId"], json!(5));
    assert_eq!(r["rec"], json!({"A": "x"}));
    let r = row(&s, json!({"userid": 6})).expect("lowercase key");
    assert_eq!(r["userId"], json!(6));
    let e = row(&s, json!({"userId": 1, "USERID": 2})).expect_err("duplicate");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("userId", "duplicate_field")
    );
    let e = row(&s, json!({"rec": {"a": "1", "A": "2"}})).expect_err("nested duplicate");
    assert_eq!(e.field, "rec.A");
}

#[test]
fn reserved_names_in_event_go_to_other() {
    let s = schema(json!([{"name": "a", "type": "STRING"}]));
    let r = row(
        &s,
        json!({"a": "x", "event_time": "2020-01-01", "RECEIVED_AT": 1, "Other": {"k": 1}, "other": 2}),
    )
    .expect("valid");
    assert_eq!(r["event_time"], json!("1970-01-01T00:00:01.000000Z"));
    assert_eq!(r["received_at"], json!("1970-01-01T00:00:02.000000Z"));
    let other: Value = serde_json::from_str(r["other"].as_str().expect("other")).expect("json");
    assert_eq!(
        other,
        json!({"event_time": "2020-01-01", "RECEIVED_AT": 1, "Other": {"k": 1}, "other": 2})
    );
}

#[test]
fn error_messages_are_bounded() {
    let s = schema(json!([{"name": "n", "type": "INT64"}]));
    let long = "ü".repeat(10_000);
    let e = row(&s, json!({ "n": long })).expect_err("not an int");
    let msg = e.to_string();
    assert!(msg.len() < 200, "{msg}");
    assert!(msg.contains('…'));
    let e = row(&s, json!({ "n": {"deep": vec![1; 10_000]} })).expect_err("object");
    assert!(e.to_string().len() < 250);
    assert_eq!(RowErrorReason::TooLong.as_str(), "too_long");
    assert_eq!(RowErrorReason::OutOfRange.to_string(), "out_of_range");
}

#[test]
fn excerpts_are_serde_json_text_cut_at_a_char_boundary() {
    let long_escaped = format!("{}\"{}", "ü".repeat(40), "\n".repeat(100));
    for v in [
        json!("short"),
        json!("ü".repeat(10_000)),
        json!(long_escaped),
        json!({"b": "x".repeat(100), "a": [1, 2.5, null, true]}),
        json!([{"k": "ü".repeat(31)}, "tail"]),
        json!(12345),
    ] {
        let full = serde_json::to_string(&v).unwrap();
        let want = if full.len() > 64 {
            let mut cut = 64;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…", &full[..cut])
        } else {
            full
        };
        assert_eq!(convert::excerpt(&jref::JRef::from_value(&v)), want, "{v}");
    }
}

#[test]
fn schema_forms_and_reserved_columns() {
    let a = schema(json!([{"name": "a", "type": "STRING"}]));
    let b = schema(json!({"fields": [{"name": "a", "type": "STRING"}]}));
    assert_eq!(a.fields(), b.fields());
    let names: Vec<&str> = a.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "event_id", "event_time", "received_at", "other"]
    );
    assert_eq!(a.fields()[1].mode, Mode::Required);
    assert_eq!(a.fields()[4].mode, Mode::Nullable);
    // Declared reserved columns keep their position and (allowed) mode.
    let c = schema(json!([
        {"name": "event_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
        {"name": "a", "type": "STRING"}
    ]));
    let names: Vec<&str> = c.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["event_time", "a", "event_id", "received_at", "other"]
    );
    let r = row(&c, json!({"a": "x"})).expect("row");
    assert_eq!(r["event_time"], json!("1970-01-01T00:00:01.000000Z"));
    let d = schema(json!([{"name": "other", "type": "STRING", "mode": "REQUIRED"}]));
    let r = row(&d, json!({})).expect("row");
    assert_eq!(r["other"], json!("{}"));
    let e = load_err(json!([{"name": "event_time", "type": "STRING"}]));
    assert!(
        e.contains("field \"event_time\"") && e.contains("reserved column"),
        "{e}"
    );
    let e = load_err(json!([{"name": "other", "type": "STRING", "mode": "REPEATED"}]));
    assert!(e.contains("reserved column"), "{e}");
    assert_eq!(a.namespace(), "events");
    assert_eq!(a.type_name(), "t");
}

#[test]
fn schema_load_errors_name_file_and_field() {
    let e = load_err(json!([{"name": "items", "type": "RECORD", "fields": [
        {"name": "price", "type": "MONEY"}]}]));
    assert!(e.starts_with("schemas/events/t.json: field \"items.price\": unknown type \"MONEY\" (supported: STRING"), "{e}");
    for (ty, word) in [("RANGE", "RANGE"), ("INTERVAL", "INTERVAL")] {
        assert!(load_err(json!([{"name": "r", "type": ty}])).contains(word));
    }
    let e = load_err(json!([{"name": "a", "type": "STRING", "nullable": true}]));
    assert!(e.contains("field \"a\": unknown key \"nullable\""), "{e}");
    let cases = [
        (
            json!([{"name": "1abc", "type": "STRING"}]),
            "invalid column name",
        ),
        (
            json!([{"name": "a-b", "type": "STRING"}]),
            "invalid column name",
        ),
        (
            json!([{"name": "", "type": "STRING"}]),
            "invalid column name",
        ),
        (
            json!([{"name": "_table_x", "type": "STRING"}]),
            "reserved prefix _TABLE_",
        ),
        (
            json!([{"name": "_PARTITIONTIME", "type": "STRING"}]),
            "reserved prefix _PARTITION",
        ),
        (
            json!([{"name": "a".repeat(301), "type": "STRING"}]),
            "longer than 300",
        ),
        (
            json!([{"name": "a", "type": "STRING"}, {"name": "A", "type": "INT64"}]),
            "duplicate column",
        ),
        (
            json!([{"name": "r", "type": "RECORD", "fields": []}]),
            "at least one subfield",
        ),
        (
            json!([{"name": "r", "type": "RECORD"}]),
            "at least one subfield",
        ),
        (
            json!([{"name": "s", "type": "STRING", "fields": [{"name": "a", "type": "STRING"}]}]),
            "only allowed on RECORD",
        ),
        (
            json!([{"name": "a", "type": "STRING", "mode": "OPTIONAL"}]),
            "unknown mode",
        ),
        (json!([{"name": "a"}]), "missing \"type\""),
        (json!([{"type": "STRING"}]), "missing \"name\""),
        (
            json!([{"name": "a", "type": 5}]),
            "\"type\" must be a string",
        ),
        (
            json!([{"name": "a", "type": "INT64", "maxLength": 3}]),
            "only allowed on STRING and BYTES",
        ),
        (
            json!([{"name": "a", "type": "STRING", "maxLength": "abc"}]),
            "non-negative integer",
        ),
        (
            json!([{"name": "a", "type": "STRING", "precision": 3}]),
            "only allowed on NUMERIC",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "precision": 39, "scale": 9}]),
            "precision 39 is out of range 9..=38",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "precision": 31}]),
            "precision 31 is out of range 1..=29",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "precision": 12, "scale": 10}]),
            "scale 10 is out of range 0..=9",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "scale": 2}]),
            "\"scale\" requires \"precision\"",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "precision": 2, "scale": 3}]),
            "precision 2 is out of range 3..=32",
        ),
        (
            json!([{"name": "a", "type": "BIGNUMERIC", "precision": 77, "scale": 38}]),
            "out of range 38..=76",
        ),
        (
            json!([{"name": "a", "type": "BIGNUMERIC", "precision": 10, "scale": 39}]),
            "scale 39",
        ),
        (
            json!([{"name": "a", "type": "NUMERIC", "roundingMode": "UP"}]),
            "roundingMode",
        ),
        (json!([5]), "must be a JSON object"),
    ];
    for (fields, want) in cases {
        let e = load_err(fields.clone());
        assert!(e.starts_with(ORIGIN) && e.contains(want), "{fields}: {e}");
        assert!(e.contains("field \""), "{fields}: {e}");
    }
    assert!(load_err(json!({"schema": []})).contains("expected a JSON array"));
    assert!(load_err(json!("x")).starts_with(ORIGIN));
    let e = TableSchema::from_json_str("events", "t", "[\n  {\"name\": }\n]", ORIGIN)
        .expect_err("syntax");
    assert!(
        e.to_string()
            .starts_with("schemas/events/t.json: invalid JSON:"),
        "{e}"
    );
    assert!(e.to_string().contains("line 2 column"), "{e}");
}

#[test]
fn schema_options_accepted() {
    let s = schema(json!([
        {"name": "a", "type": "string", "maxLength": 10, "description": "d",
         "policyTags": {"names": ["projects/p/locations/l/taxonomies/t/policyTags/x"]},
         "collation": "und:ci", "defaultValueExpression": "'x'"},
        {"name": "n", "type": "NUMERIC", "precision": "10", "scale": "2",
         "roundingMode": "ROUND_HALF_EVEN"},
        {"name": "b", "type": "BIGNUMERIC", "precision": 76, "scale": 38},
        {"name": "c", "type": "NUMERIC", "precision": 5},
        {"name": "all", "type": "RECORD", "mode": "REPEATED", "fields": [
            {"name": "x", "type": "BOOL"}, {"name": "y", "type": "GEOGRAPHY"}, {"name": "z", "type": "JSON"}
        ]}
    ]));
    let f = &s.fields()[0];
    assert_eq!(
        (f.max_length, f.description.as_deref()),
        (Some(10), Some("d"))
    );
    assert_eq!(
        (s.fields()[1].precision, s.fields()[1].scale),
        (Some(10), Some(2))
    );
    assert_eq!(
        (s.fields()[3].precision, s.fields()[3].scale),
        (Some(5), None)
    );
    assert_eq!(s.fields()[4].mode, Mode::Repeated);
    // Round trip through the BigQuery JSON form.
    let text = s.to_bigquery_json().to_string();
    let back = TableSchema::from_json_str("events", "t", &text, "roundtrip").expect("round trip");
    assert_eq!(back.fields(), s.fields());
    assert_eq!(back.to_bigquery_json(), s.to_bigquery_json());
    assert!(text.contains("\"type\":\"INTEGER\"") || !text.contains("INT64"));
}

fn nested(depth: usize) -> Value {
    let mut f = json!({"name": "leaf", "type": "STRING"});
    for i in 0..depth {
        f = json!({"name": format!("r{i}"), "type": "RECORD", "fields": [f]});
    }
    json!([f])
}

#[test]
fn nesting_limit() {
    let _ = schema(nested(15));
    let e = load_err(nested(16));
    assert!(e.contains("nesting exceeds"), "{e}");
}

#[test]
fn load_dir_reads_namespaces_and_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events");
    std::fs::create_dir(&events).expect("mkdir");
    std::fs::write(
        events.join("click.json"),
        r#"[{"name": "x", "type": "INT64"}]"#,
    )
    .expect("write");
    std::fs::write(
        events.join("page-view.json"),
        r#"{"fields": [{"name": "url", "type": "STRING"}]}"#,
    )
    .expect("write");
    std::fs::write(events.join("README.md"), "not a schema").expect("write");
    std::fs::create_dir(dir.path().join("ops")).expect("mkdir");
    std::fs::write(dir.path().join("ops").join("deploy.json"), "[]").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    let reg = SchemaRegistry::load_dir(dir.path()).expect("loads");
    assert_eq!(reg.len(), 3);
    assert!(!reg.is_empty());
    assert!(reg.get("events", "click").is_some());
    assert_eq!(
        reg.get("events", "page-view").map(|s| s.fields().len()),
        Some(5)
    );
    assert_eq!(reg.get("ops", "deploy").map(|s| s.fields().len()), Some(4));
    assert!(reg.get("events", "nope").is_none());
    assert!(reg.get("nope", "click").is_none());
    assert_eq!(reg.iter().count(), 3);

    // An invalid schema names its file.
    std::fs::write(
        events.join("bad.json"),
        r#"[{"name": "x", "type": "MONEY"}]"#,
    )
    .expect("write");
    let e = SchemaRegistry::load_dir(dir.path())
        .expect_err("bad schema")
        .to_string();
    assert!(
        e.contains("bad.json: field \"x\": unknown type \"MONEY\""),
        "{e}"
    );
    std::fs::remove_file(events.join("bad.json")).expect("rm");

    // Names BigQuery would not accept.
    std::fs::write(events.join("has space.json"), "[]").expect("write");
    let e = SchemaRegistry::load_dir(dir.path())
        .expect_err("bad table name")
        .to_string();
    assert!(
        e.contains("has space.json") && e.contains("table name"),
        "{e}"
    );
    std::fs::remove_file(events.join("has space.json")).expect("rm");
    std::fs::create_dir(dir.path().join("bad-ns")).expect("mkdir");
    std::fs::write(dir.path().join("bad-ns").join("t.json"), "[]").expect("write");
    let e = SchemaRegistry::load_dir(dir.path())
        .expect_err("bad dataset name")
        .to_string();
    assert!(e.contains("bad-ns") && e.contains("dataset name"), "{e}");
    std::fs::remove_dir_all(dir.path().join("bad-ns")).expect("rm");

    // A schema file outside any namespace directory.
    std::fs::write(dir.path().join("loose.json"), "[]").expect("write");
    let e = SchemaRegistry::load_dir(dir.path())
        .expect_err("loose file")
        .to_string();
    assert!(e.contains("loose.json"), "{e}");
    std::fs::remove_file(dir.path().join("loose.json")).expect("rm");

    // Unicode table names are allowed.
    std::fs::write(events.join("kjøp.json"), "[]").expect("write");
    let reg = SchemaRegistry::load_dir(dir.path()).expect("unicode table name");
    assert!(reg.get("events", "kjøp").is_some());

    let missing = dir.path().join("missing");
    let e = SchemaRegistry::load_dir(&missing)
        .expect_err("missing dir")
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

/// A schema directory that cannot be read names the key, the absolute path tried and the fix;
/// in forward mode it also says why the SDK needs the files.
#[test]
fn missing_schema_dir_names_key_absolute_path_and_fix() {
    let mut config = crate::Config::default();
    config.schemas.dir = "no-such-evlog-schemas-dir".into();
    let e = SchemaRegistry::load_configured(&config)
        .expect_err("missing dir")
        .to_string();
    let abs = std::env::current_dir()
        .expect("cwd")
        .join("no-such-evlog-schemas-dir");
    assert!(e.starts_with("schemas.dir: "), "{e}");
    assert!(e.contains(&format!("{}: ", abs.display())), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
    assert!(
        e.contains("EVLOG_SCHEMAS_DIR") && e.contains("create it"),
        "{e}"
    );
    assert!(!e.contains("forward"), "{e}");

    config.sink.kind = crate::config::SinkKind::Forward;
    config.sink.forward.url = "http://127.0.0.1:1".into();
    let e = SchemaRegistry::load_configured(&config)
        .expect_err("missing dir")
        .to_string();
    assert!(
        e.contains("sink.kind = \"forward\"") && e.contains("same schema files"),
        "{e}"
    );

    // An empty directory is a valid (empty) registry.
    let dir = tempfile::tempdir().expect("tempdir");
    config.schemas.dir = dir.path().to_path_buf();
    assert!(SchemaRegistry::load_configured(&config)
        .expect("empty dir loads")
        .is_empty());
}

#[test]
fn load_dir_test_data() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    let reg = SchemaRegistry::load_dir(&dir).expect("test data loads");
    assert_eq!(reg.len(), 2);
    let pv = reg.get("events", "page_view").expect("page_view");
    let r = pv
        .to_row(
            obj(json!({"url": "/x", "tags": ["a", "b"], "duration_ms": "1500", "ab": "B"})),
            &meta(),
        )
        .expect("valid page view");
    let v: Value = serde_json::from_str(&r.json).expect("json");
    assert_eq!(v["duration_ms"], json!(1500));
    assert_eq!(v["other"], json!("{\"ab\":\"B\"}"));
    let e = pv
        .to_row(obj(json!({"user_id": 1})), &meta())
        .expect_err("url required");
    assert_eq!(
        e.to_string(),
        "field \"url\": expected STRING (REQUIRED), got null or no value"
    );
    let tx = reg.get("events", "transaction").expect("transaction");
    let e = tx
        .to_row(obj(json!({"user_id": 1, "currency": "EURO"})), &meta())
        .expect_err("maxLength 3");
    assert_eq!(e.reason, RowErrorReason::TooLong);
    let mut empty = SchemaRegistry::empty();
    assert!(empty.is_empty());
    empty.insert(transaction());
    assert_eq!(empty.len(), 1);
}

proptest::proptest! {
    #[test]
    fn json_string_escaping_roundtrips(s in "(\\PC|[\\x00-\\x1f\"\\\\\\x7f])*") {
        let mut out = String::new();
        crate::json::push_str(&mut out, &s);
        let back: String = serde_json::from_str(&out).expect("valid JSON string");
        proptest::prop_assert_eq!(back, s);
    }

    #[test]
    fn base64_roundtrip(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut enc = String::new();
        convert::base64_encode(&data, &mut enc);
        proptest::prop_assert_eq!(convert::base64_decode(&enc), Some(data.clone()));
        proptest::prop_assert_eq!(convert::base64_decode(enc.trim_end_matches('=')), Some(data));
    }
}
