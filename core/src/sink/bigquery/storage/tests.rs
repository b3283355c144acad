//! Descriptor and encoding tests: rows written by evlog's own converter, encoded, then decoded
//! with `prost-reflect` against the generated descriptor (an independent protobuf decoder).

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as R};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::json;

use super::descriptor::{ColType, Layout, ROW_MESSAGE};
use super::encode::encode_row;
use crate::schema::{RowMeta, TableSchema};

fn every_type_schema() -> TableSchema {
    let fields = json!([
        {"name": "s", "type": "STRING"},
        {"name": "b", "type": "BYTES"},
        {"name": "i", "type": "INTEGER"},
        {"name": "f", "type": "FLOAT"},
        {"name": "n", "type": "NUMERIC"},
        {"name": "bn", "type": "BIGNUMERIC"},
        {"name": "ok", "type": "BOOLEAN"},
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "d", "type": "DATE"},
        {"name": "t", "type": "TIME"},
        {"name": "dt", "type": "DATETIME"},
        {"name": "j", "type": "JSON"},
        {"name": "g", "type": "GEOGRAPHY"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "cart", "type": "RECORD", "fields": [
            {"name": "total", "type": "NUMERIC"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "sku", "type": "STRING", "mode": "REQUIRED"},
                {"name": "qty", "type": "INT64"}
            ]}
        ]}
    ]);
    TableSchema::from_json_str("shop", "order", &fields.to_string(), "shop/order.json")
        .expect("schema")
}

/// The row message, as a server that wraps the descriptor into a file without a package sees it.
fn pool_for(layout: &Layout) -> MessageDescriptor {
    let file = FileDescriptorProto {
        name: Some("row.proto".into()),
        syntax: Some("proto2".into()),
        message_type: vec![layout.descriptor.clone()],
        ..FileDescriptorProto::default()
    };
    let set = FileDescriptorSet { file: vec![file] };
    let pool = DescriptorPool::decode(set.encode_to_vec().as_slice()).expect("descriptor is valid");
    pool.get_message_by_name(ROW_MESSAGE).expect("row message")
}

fn row(schema: &TableSchema, event: serde_json::Value) -> String {
    let meta = RowMeta {
        event_id: "e-1".into(),
        event_time: 1_700_000_000_123_456,
        received_at: 1_700_000_001_000_000,
    };
    let serde_json::Value::Object(m) = event else {
        panic!("object")
    };
    schema.to_row(m, &meta).expect("valid event").json
}

fn decode(layout: &Layout, json: &str) -> DynamicMessage {
    let mut bytes = Vec::new();
    encode_row(&layout.columns, json, &mut bytes).expect("encodes");
    DynamicMessage::decode(pool_for(layout), bytes.as_slice()).expect("decodes")
}

fn get(m: &DynamicMessage, name: &str) -> R {
    m.get_field_by_name(name).expect(name).into_owned()
}

#[test]
fn every_type_round_trips_through_an_independent_decoder() {
    let schema = every_type_schema();
    let layout = Layout::from_json(&schema.to_bigquery_json()).expect("layout");
    let json = row(
        &schema,
        json!({
            "s": "h\u{e9}llo \"q\" \\ \n \u{1F600}",
            "b": "aGk=",
            "i": "-9223372036854775808",
            "f": 2.5,
            "n": "123.450",
            "bn": "-1e-20",
            "ok": "true",
            "ts": "2026-11-22T10:00:00.5Z",
            "d": "1969-12-31",
            "t": "23:59:59.999999",
            "dt": "2026-01-02 03:04:05",
            "j": {"a": [1, {"b": null}]},
            "g": "POINT(1 2)",
            "tags": ["x", "y\u{0}"],
            "cart": {"total": 10, "items": [{"sku": "A", "qty": 2}, {"sku": "B"}]},
            "extra": 1
        }),
    );
    let m = decode(&layout, &json);
    assert_eq!(
        get(&m, "s"),
        R::String("h\u{e9}llo \"q\" \\ \n \u{1F600}".into())
    );
    assert_eq!(get(&m, "b"), R::Bytes(b"hi".to_vec().into()));
    assert_eq!(get(&m, "i"), R::I64(i64::MIN));
    assert_eq!(get(&m, "f"), R::F64(2.5));
    assert_eq!(get(&m, "n"), R::String("123.45".into()));
    assert_eq!(get(&m, "bn"), R::String("-0.00000000000000000001".into()));
    assert_eq!(get(&m, "ok"), R::Bool(true));
    assert_eq!(get(&m, "ts"), R::I64(1_795_341_600_500_000));
    assert_eq!(get(&m, "d"), R::I32(-1), "DATE is days since the epoch");
    assert_eq!(get(&m, "t"), R::String("23:59:59.999999".into()));
    assert_eq!(get(&m, "dt"), R::String("2026-01-02T03:04:05".into()));
    assert_eq!(get(&m, "j"), R::String(r#"{"a":[1,{"b":null}]}"#.into()));
    assert_eq!(get(&m, "g"), R::String("POINT(1 2)".into()));
    assert_eq!(
        get(&m, "tags"),
        R::List(vec![R::String("x".into()), R::String("y\u{0}".into())])
    );
    let R::Message(cart) = get(&m, "cart") else {
        panic!("cart is a message")
    };
    assert_eq!(get(&cart, "total"), R::String("10".into()));
    let R::List(items) = get(&cart, "items") else {
        panic!("items is repeated")
    };
    assert_eq!(items.len(), 2);
    let R::Message(second) = &items[1] else {
        panic!("item is a message")
    };
    assert_eq!(get(second, "sku"), R::String("B".into()));
    assert!(
        !second.has_field_by_name("qty"),
        "absent subfield stays absent"
    );
    // The reserved columns.
    assert_eq!(get(&m, "event_id"), R::String("e-1".into()));
    assert_eq!(get(&m, "event_time"), R::I64(1_700_000_000_123_456));
    assert_eq!(get(&m, "received_at"), R::I64(1_700_000_001_000_000));
    assert_eq!(get(&m, "other"), R::String(r#"{"extra":1}"#.into()));
}

#[test]
fn nulls_and_absent_columns_are_omitted() {
    let schema = every_type_schema();
    let layout = Layout::from_json(&schema.to_bigquery_json()).expect("layout");
    let json = row(
        &schema,
        json!({"s": null, "cart": {"items": []}, "tags": null}),
    );
    let m = decode(&layout, &json);
    for name in ["s", "b", "i", "f", "n", "ok", "ts", "d", "j", "g", "other"] {
        assert!(!m.has_field_by_name(name), "{name} is absent");
    }
    assert_eq!(get(&m, "tags"), R::List(vec![]));
    // And a hand-written row with explicit nulls everywhere.
    let m = decode(
        &layout,
        r#"{"s":null,"i":null,"cart":null,"tags":null,"event_id":"x","received_at":"2026-01-01T00:00:00Z"}"#,
    );
    assert!(!m.has_field_by_name("cart") && !m.has_field_by_name("s"));
    assert_eq!(get(&m, "event_id"), R::String("x".into()));
}

#[test]
fn the_descriptor_is_proto2_with_nested_types_inside_the_row() {
    let layout = Layout::from_json(&every_type_schema().to_bigquery_json()).expect("layout");
    let d = &layout.descriptor;
    assert_eq!(d.name(), ROW_MESSAGE);
    assert_eq!(
        d.nested_type.len(),
        1,
        "cart's type is inside the row message"
    );
    assert_eq!(
        d.nested_type[0].nested_type.len(),
        1,
        "items' type inside cart's"
    );
    let cart = d.field.iter().find(|f| f.name() == "cart").expect("cart");
    assert_eq!(cart.type_name(), ".evlog_row.cart_Record");
    let msg = pool_for(&layout);
    let kind = |n: &str| format!("{:?}", msg.get_field_by_name(n).expect(n).kind());
    assert_eq!(kind("d"), "int32");
    assert_eq!(kind("ts"), "int64");
    assert_eq!(kind("n"), "string");
    assert_eq!(kind("b"), "bytes");
    assert_eq!(kind("f"), "double");
    assert!(msg.get_field_by_name("tags").expect("tags").is_list());
    // A column named like the nested type does not clash with it.
    let layout = Layout::from_json(&json!([
        {"name": "a", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]},
        {"name": "a_Record", "type": "STRING"}
    ]))
    .expect("layout");
    pool_for(&layout);
}

#[test]
fn layouts_come_from_updated_schema_too() {
    use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
        table_field_schema::{Mode, Type},
        TableFieldSchema, TableSchema as P,
    };
    let f = |name: &str, ty: Type, mode: Mode, fields: Vec<TableFieldSchema>| TableFieldSchema {
        name: name.into(),
        r#type: ty as i32,
        mode: mode as i32,
        fields,
        ..TableFieldSchema::default()
    };
    let schema = P {
        fields: vec![
            f("d", Type::Date, Mode::Nullable, vec![]),
            f(
                "r",
                Type::Struct,
                Mode::Repeated,
                vec![f("x", Type::Bignumeric, Mode::Required, vec![])],
            ),
        ],
    };
    let layout = Layout::from_proto(&schema).expect("layout");
    assert_eq!(layout.columns[0].ty, ColType::Date);
    assert!(layout.columns[1].repeated && layout.columns[1].fields[0].ty == ColType::Decimal);
    let json_layout = Layout::from_json(&json!([
        {"name": "d", "type": "DATE"},
        {"name": "r", "type": "RECORD", "mode": "REPEATED", "fields": [{"name": "x", "type": "BIGNUMERIC", "mode": "REQUIRED"}]}
    ]))
    .expect("layout");
    assert_eq!(layout, json_layout, "both sources give the same layout");
}

#[test]
fn bad_schemas_and_rows_name_the_column() {
    let e = Layout::from_json(&json!([{"name": "r", "type": "RANGE"}])).unwrap_err();
    assert!(
        e.to_string().contains("column r") && e.to_string().contains("RANGE"),
        "{e}"
    );
    let layout = Layout::from_json(&json!([
        {"name": "i", "type": "INT64"},
        {"name": "c", "type": "RECORD", "fields": [{"name": "ts", "type": "TIMESTAMP"}]},
        {"name": "l", "type": "INT64", "mode": "REPEATED"}
    ]))
    .expect("layout");
    let enc = |j: &str| encode_row(&layout.columns, j, &mut Vec::new()).unwrap_err();
    let e = enc(r#"{"i":"x"}"#);
    assert_eq!(e.field, "i");
    let e = enc(r#"{"c":{"ts":"yesterday"}}"#);
    assert_eq!(e.field, "c.ts", "{e}");
    let e = enc(r#"{"c":{"nope":1}}"#);
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("c.nope", "no such column in the table")
    );
    let e = enc(r#"{"l":[1,null]}"#);
    assert!(e.field == "l" && e.message.contains("null"), "{e}");
    let e = enc(r#"{"i":1"#);
    assert!(e.message.contains("malformed"), "{e}");
    // Case-insensitive names, as BigQuery matches them.
    let mut out = Vec::new();
    encode_row(&layout.columns, r#"{"I":7,"L":[1,2]}"#, &mut out).expect("encodes");
    let m = DynamicMessage::decode(pool_for(&layout), out.as_slice()).expect("decodes");
    assert_eq!(get(&m, "i"), R::I64(7));
    assert_eq!(get(&m, "l"), R::List(vec![R::I64(1), R::I64(2)]));
}

#[test]
fn dead_letter_rows_encode_with_the_dead_letter_schema() {
    let fields: serde_json::Value =
        serde_json::from_str(crate::sink::DEAD_LETTER_SCHEMA).expect("schema");
    let layout = Layout::from_json(&fields).expect("layout");
    let dl = crate::sink::RejectedEvent {
        dataset: "d".into(),
        event_id: "e".into(),
        namespace: "d".into(),
        type_name: "t".into(),
        event_time: Some(5),
        received_at: 6,
        reason: "bigquery_invalid",
        field: None,
        error: "no \"good\"".into(),
        raw: "{\"x\":1}".into(),
    };
    let m = decode(&layout, &dl.to_row_json(7));
    assert_eq!(get(&m, "rejected_at"), R::I64(7));
    assert_eq!(get(&m, "event_time"), R::I64(5));
    assert_eq!(get(&m, "error"), R::String("no \"good\"".into()));
    assert!(!m.has_field_by_name("field"));
}

#[test]
fn unsettled_runs_are_found_whole_in_regrouped_rows() {
    use super::streams::{Slot, Unsettled};
    let u = Unsettled::default();
    let slot = |o| Slot {
        name: "s".into(),
        next: Some(o),
    };
    u.remember(["b", "c"].into_iter(), slot(10));
    u.remember(["e"].into_iter(), slot(20));
    // The rows come back with others around them.
    let runs = u.carve(&["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        runs,
        vec![
            (0..1, None),
            (1..3, Some(slot(10))),
            (3..4, None),
            (4..5, Some(slot(20))),
            (5..6, None)
        ]
    );
    // Found runs are forgotten (they are being sent again); a partial run does not match.
    u.remember(["x", "y"].into_iter(), slot(30));
    assert_eq!(u.carve(&["b", "c", "x"]), vec![(0..3, None)]);
    assert_eq!(u.carve(&["x", "y"]), vec![(0..2, Some(slot(30)))]);
    assert_eq!(u.carve(&["x", "y"]), vec![(0..2, None)]);
}

#[test]
fn positions_files_survive_the_process_and_are_taken_over_when_it_is_gone() {
    use super::positions::{fingerprint, Positions};
    use super::streams::Slot;
    let dir = tempfile::tempdir().expect("tempdir");
    let slot = |o| Slot {
        name: "projects/p/datasets/d/tables/t/streams/s1".into(),
        next: Some(o),
    };
    let key = |ids: &[&str]| (ids[0].to_string(), fingerprint(ids.iter().copied()));
    let (mine, found) = Positions::open(dir.path()).expect("open");
    assert!(found.is_empty());
    mine.sending(&key(&["a", "b"]), 2, &slot(0)).expect("write");
    mine.sending(&key(&["c"]), 1, &slot(2)).expect("write");
    mine.sending(&key(&["x"]), 1, &slot(3)).expect("write");
    // Known not to be there (row_errors, OUT_OF_RANGE): forgotten.
    mine.settled(&key(&["x"]));
    // A file of a process that is gone (pid 0 never names a live process).
    std::fs::write(
        dir.path().join("0-00000000000000ff.pos"),
        format!(
            "[\"+\",\"z\",\"{:016x}\",1,7,\"s2\"]\n[\"+\",\"torn",
            fingerprint(["z"].into_iter())
        ),
    )
    .expect("write");
    let (_next, found) = Positions::open(dir.path()).expect("open");
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[&key(&["a", "b"])], (2, slot(0)));
    assert_eq!(found[&key(&["c"])], (1, slot(2)));
    assert_eq!(
        found[&key(&["z"])].1.next,
        Some(7),
        "a dead process's runs are read"
    );
    assert!(!found.contains_key(&key(&["x"])));
    assert!(
        !dir.path().join("0-00000000000000ff.pos").exists(),
        "and its file taken over"
    );
    // This (live) process's file is read, not removed.
    let files = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(files, 2, "this process's two files");
    // Fingerprints are stable across builds (FNV-1a), and order matters.
    // FNV-1a 64 of "a" and the 0xff separator, computed independently.
    assert_eq!(fingerprint(["a"].into_iter()), 0x089b_c907_b544_c769);
    assert_ne!(
        fingerprint(["a", "b"].into_iter()),
        fingerprint(["b", "a"].into_iter())
    );
}
