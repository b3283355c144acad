//! Row checks: each refusal, and the property that every row core converts passes unchanged.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::super::{RowMeta, TableSchema};
use crate::config::Config;
use crate::ingest::reasons;
use crate::ingest::{EventId, Processor, RawEvent};
use crate::schema::SchemaRegistry;

fn schema(ns: &str, ty: &str, fields: Value) -> TableSchema {
    TableSchema::from_json_str(ns, ty, &fields.to_string(), "test").expect("valid schema")
}

fn transaction() -> TableSchema {
    schema(
        "events",
        "transaction",
        json!([
            {"name": "user_id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "doc", "type": "JSON"},
            {"name": "place", "type": "GEOGRAPHY"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
                {"name": "sku", "type": "STRING"}, {"name": "qty", "type": "INTEGER"}]}
        ]),
    )
}

const T: i64 = 1_795_391_999_999_999; // 2026-11-22T23:59:59.999999Z

fn meta() -> RowMeta {
    RowMeta {
        event_id: "id-1".into(),
        event_time: T,
        received_at: T + 5,
    }
}

fn converted(s: &TableSchema, event: Value) -> String {
    let Value::Object(m) = event else {
        panic!("event must be an object")
    };
    s.to_row(m, &meta()).expect("valid event").json
}

fn edit(row: &str, f: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut v: Map<String, Value> = serde_json::from_str(row).expect("row");
    f(&mut v);
    Value::Object(v).to_string()
}

#[test]
fn a_converted_row_passes_unchanged() {
    let s = transaction();
    let row = converted(
        &s,
        json!({"user_id": "42", "amount": 1.5, "doc": {"b": [1, null]}, "extra": {"x": 1},
               "place": {"type": "Point", "coordinates": [1, 2]},
               "items": [{"sku": 7, "qty": "2", "note": "n"}], "event_id": "spoof"}),
    );
    let c = s.check_row("id-1", &row).expect("passes");
    assert_eq!(c.json, row);
    assert_eq!((c.event_time, c.received_at), (T, T + 5));
    // Other spellings the converter accepts come back in its written form.
    let loose = edit(&row, |m| {
        m.insert("user_id".into(), json!("+42"));
        m.insert("place".into(), json!("POINT(1 2)"));
    });
    let c = s.check_row("id-1", &loose).expect("passes");
    assert!(c.json.starts_with(r#"{"user_id":42,"#), "{}", c.json);
}

#[test]
fn refusals_name_reason_and_field() {
    let s = transaction();
    let row = converted(&s, json!({"user_id": 1, "doc": [1]}));
    let cases: Vec<(String, &str, Option<&str>, &str)> = vec![
        (
            edit(&row, |m| {
                m.insert("user_id".into(), json!("oops"));
            }),
            "invalid_value",
            Some("user_id"),
            "not an integer",
        ),
        (
            edit(&row, |m| {
                m.remove("user_id");
            }),
            "missing_required",
            Some("user_id"),
            "REQUIRED",
        ),
        (
            edit(&row, |m| {
                m.remove("event_id");
            }),
            "missing_required",
            Some("event_id"),
            "REQUIRED",
        ),
        (
            edit(&row, |m| {
                m.insert("event_id".into(), json!("id-2"));
            }),
            "invalid_value",
            Some("event_id"),
            "insert id",
        ),
        (
            edit(&row, |m| {
                m.remove("event_time");
            }),
            "missing_required",
            Some("event_time"),
            "TIMESTAMP",
        ),
        (
            edit(&row, |m| {
                m.insert("received_at".into(), json!("yesterday"));
            }),
            "invalid_value",
            Some("received_at"),
            "RFC 3339",
        ),
        (
            edit(&row, |m| {
                m.insert("other".into(), json!("[1]"));
            }),
            "invalid_value",
            Some("other"),
            "JSON object",
        ),
        (
            edit(&row, |m| {
                m.insert("nope".into(), json!(1));
            }),
            "unknown_field",
            Some("nope"),
            "no column of table events.transaction",
        ),
        (
            edit(&row, |m| {
                m.insert("items".into(), json!([{"sku": "a"}, {"sku": "b", "zz": 1}]));
            }),
            "unknown_field",
            Some("items[1].zz"),
            "no column",
        ),
        (
            edit(&row, |m| {
                m.insert("doc".into(), json!({"a": 1}));
            }),
            "invalid_value",
            Some("doc"),
            "string of its text",
        ),
        (
            edit(&row, |m| {
                m.insert("doc".into(), json!("{not json"));
            }),
            "invalid_value",
            Some("doc"),
            "not JSON text",
        ),
        (
            edit(&row, |m| {
                m.insert("place".into(), json!("{\"coordinates\":[1,2]}"));
            }),
            "invalid_value",
            Some("place"),
            "WKT",
        ),
        (
            edit(&row, |m| {
                m.insert("EVENT_ID".into(), json!("id-1"));
            }),
            "duplicate_field",
            Some("event_id"),
            "both name column",
        ),
        ("[1]".into(), "not_an_object", None, "object"),
        ("{".into(), "invalid_json", None, "invalid JSON"),
    ];
    for (text, reason, field, says) in cases {
        let e = s.check_row("id-1", &text).expect_err(&text);
        assert_eq!(e.reason, reason, "{text}: {e}");
        assert_eq!(e.field.as_deref(), field, "{text}: {e}");
        assert!(e.message.contains(says), "{text}: {e}");
    }
}

fn processor(routing: &str) -> Processor {
    let mut reg = SchemaRegistry::empty();
    reg.insert(transaction());
    reg.insert(schema(
        "events",
        "page_view",
        json!([{"name": "url", "type": "STRING", "mode": "REQUIRED"}]),
    ));
    Processor::new(reg, &Config::from_toml_str(routing).expect("config"))
}

#[test]
fn processor_finds_the_schema_by_reverse_routing_and_checks_the_destination() {
    let p = processor("");
    let s = transaction();
    let row = converted(&s, json!({"user_id": 1}));
    assert_eq!(
        p.check_row("events", "transaction", false, "20261122", "id-1", &row),
        Ok(row.clone())
    );
    let refused = |ds: &str, t: &str, part: bool, day: &str, id: &str, row: &str| {
        *p.check_row(ds, t, part, day, id, row).expect_err("refused")
    };
    let e = refused("events", "not_a_table", false, "20261122", "id-1", &row);
    assert_eq!(e.reason, reasons::UNKNOWN_TABLE);
    assert_eq!(
        (e.dataset.as_str(), e.raw.as_str()),
        ("events", row.as_str())
    );
    let e = refused("events", "transaction", false, "20261123", "id-1", &row);
    assert_eq!(
        (e.reason, e.field.as_deref()),
        (reasons::WRONG_DESTINATION, Some("day"))
    );
    assert!(
        e.error.contains("2026-11-22T23:59:59.999999Z"),
        "{}",
        e.error
    );
    assert_eq!(e.event_time, Some(T));
    let e = refused("events", "transaction", true, "20261122", "id-1", &row);
    assert_eq!(
        (e.reason, e.field.as_deref()),
        (reasons::WRONG_DESTINATION, Some("partitioned"))
    );
    let e = refused("events", "transaction", false, "20261122", "id-9", &row);
    assert_eq!((e.reason, e.event_id.as_str()), ("invalid_value", "id-9"));
    // Namespace/type of the dead letter: the candidate's.
    assert_eq!(
        (e.namespace.as_str(), e.type_name.as_str()),
        ("events", "transaction")
    );

    // Routed elsewhere: the base table is the route's, and the namespace's own name is no table.
    let p = processor(
        "[routing.tables.\"events.transaction\"]\ndataset = \"sales\"\ntable = \"orders\"\npartitioning = \"partitioned\"\n",
    );
    assert_eq!(
        p.check_row("sales", "orders", true, "20261122", "id-1", &row),
        Ok(row.clone())
    );
    let e = p
        .check_row("events", "transaction", false, "20261122", "id-1", &row)
        .expect_err("not routed here");
    assert_eq!(e.reason, reasons::UNKNOWN_TABLE);
    // Two types routed to one table: a row passes if it is a row of either.
    let p = processor("[routing.tables.\"events.page_view\"]\ntable = \"transaction\"\n");
    let pv = converted(
        &schema(
            "events",
            "page_view",
            json!([{"name": "url", "type": "STRING", "mode": "REQUIRED"}]),
        ),
        json!({"url": "/x"}),
    );
    for r in [&row, &pv] {
        assert_eq!(
            p.check_row("events", "transaction", false, "20261122", "id-1", r),
            Ok(r.to_string())
        );
    }
}

/// A small deterministic generator driven by proptest's seed: schemas of every type, mode and
/// nesting, and events with values in the forms conversion accepts (and some it refuses).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn fields(&mut self, depth: usize, n: u64) -> Vec<Value> {
        (0..1 + self.below(n))
            .map(|i| {
                let types = [
                    "STRING",
                    "BYTES",
                    "INTEGER",
                    "FLOAT",
                    "NUMERIC",
                    "BIGNUMERIC",
                    "BOOLEAN",
                    "TIMESTAMP",
                    "DATE",
                    "TIME",
                    "DATETIME",
                    "JSON",
                    "GEOGRAPHY",
                    "RECORD",
                ];
                let mut ty = *self.pick(&types);
                if depth >= 2 && ty == "RECORD" {
                    ty = "STRING";
                }
                let mode = *self.pick(&["NULLABLE", "NULLABLE", "REQUIRED", "REPEATED"]);
                let mut f = json!({"name": format!("f{depth}_{i}"), "type": ty, "mode": mode});
                if ty == "RECORD" {
                    f["fields"] = Value::Array(self.fields(depth + 1, 4));
                }
                if ty == "NUMERIC" && self.below(3) == 0 {
                    f["precision"] = json!("10");
                    f["scale"] = json!("3");
                }
                if ty == "STRING" && self.below(4) == 0 {
                    f["maxLength"] = json!("12");
                }
                f
            })
            .collect()
    }

    fn any_json(&mut self, depth: usize) -> Value {
        match self.below(if depth > 2 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64 >> self.below(64)),
            3 => json!(self.pick(&["", "é\"\\\n", "x", "0.5", "{}"]).to_string()),
            4 => Value::Array(
                (0..self.below(3))
                    .map(|_| self.any_json(depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..self.below(3))
                    .map(|i| {
                        (
                            format!("k{}", (i + self.below(3)) % 3),
                            self.any_json(depth + 1),
                        )
                    })
                    .collect(),
            ),
        }
    }

    fn scalar(&mut self, f: &Value) -> Value {
        let secs = self.below(400_000_000_000) as i64 - 62_000_000_000;
        match f["type"].as_str().unwrap_or("") {
            "STRING" => match self.below(4) {
                0 => json!(self.next() as i64),
                1 => json!(self.below(2) == 0),
                2 => json!("kjøp \"q\"\\ \u{1}"),
                _ => json!("x".repeat(self.below(15) as usize)),
            },
            "BYTES" => json!(*self.pick(&["", "AA==", "AA", "aGVsbG8=", "aGVsbG8", "+/+/"])),
            "INTEGER" => match self.below(3) {
                0 => json!(self.next() as i64),
                1 => json!(format!("{:+}", self.next() as i64 >> 3)),
                _ => json!(self.below(1000)),
            },
            "FLOAT" => match self.below(5) {
                0 => json!(f64::from_bits(self.next() >> 2)),
                1 => json!(*self.pick(&["NaN", "inf", "-Infinity", "1e5", "-0.25"])),
                2 => json!(self.next() as i64),
                3 => json!(1e300),
                _ => json!((self.below(1_000_000) as f64) / 7.0),
            },
            "NUMERIC" | "BIGNUMERIC" => match self.below(4) {
                0 => json!(format!("{}.{}", self.below(1_000_000), self.below(1000))),
                1 => json!(0.125),
                2 => json!(*self.pick(&["-0", "1e3", "+12.50", ".5", "99999999999.9999"])),
                _ => json!(self.below(100_000) as i64 - 50_000),
            },
            "BOOLEAN" => json!(*self.pick(&[json!(true), json!("false"), json!("1"), json!(0)])),
            "TIMESTAMP" => match self.below(4) {
                0 => json!(secs),
                1 => json!(secs as f64 + 0.25),
                2 => json!(*self.pick(&[
                    "2026-11-22 10:00:00+02:00",
                    "2026-11-22T10:00:00.123Z",
                    "0001-01-01 00:00:00",
                    "9999-12-31T23:59:59.999999Z",
                    "2026-1-2",
                ])),
                _ => json!(crate::time::format_timestamp(secs * 1_000_000)),
            },
            "DATE" => json!(*self.pick(&["2026-11-22", "0001-1-1", "9999-12-31"])),
            "TIME" => json!(*self.pick(&["10:00:00", "1:2:3.5", "23:59:59.999999"])),
            "DATETIME" => json!(*self.pick(&[
                "2026-11-22 10:00:00",
                "2026-11-22T10:00:00.25",
                "2026-11-22"
            ])),
            "JSON" => self.any_json(0),
            "GEOGRAPHY" => json!(*self.pick(&[
                json!("POINT(1 2)"),
                json!("linestring(0 0, 1 1)"),
                json!({"type": "Point", "coordinates": [1.5, 2]}),
            ])),
            _ => Value::Null,
        }
    }

    fn value(&mut self, f: &Value, depth: usize) -> Value {
        let one = |g: &mut Self| {
            if f["type"] == "RECORD" {
                g.event(
                    f["fields"].as_array().map_or(&[][..], Vec::as_slice),
                    depth + 1,
                )
            } else {
                g.scalar(f)
            }
        };
        match f["mode"].as_str() {
            Some("REPEATED") => match self.below(5) {
                0 => Value::Null,
                _ => Value::Array((0..self.below(3)).map(|_| one(self)).collect()),
            },
            Some("NULLABLE") if self.below(5) == 0 => Value::Null,
            _ => one(self),
        }
    }

    fn event(&mut self, fields: &[Value], depth: usize) -> Value {
        let mut m = Map::new();
        for f in fields {
            if self.below(8) == 0 && f["mode"] != "REQUIRED" {
                continue;
            }
            let name = f["name"].as_str().unwrap_or("").to_string();
            // Keys in another case name the same column.
            let key = if self.below(6) == 0 {
                name.to_uppercase()
            } else {
                name
            };
            m.insert(key, self.value(f, depth));
        }
        // Keys no column names, and keys named like reserved columns: kept in `other`.
        if self.below(3) == 0 {
            m.insert("zz_extra".into(), self.any_json(1));
        }
        if depth == 0 && self.below(4) == 0 {
            m.insert(
                (*self.pick(&["event_id", "Other", "event_time"])).into(),
                self.any_json(1),
            );
        }
        Value::Object(m)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_local_rejects: 1_000_000, ..ProptestConfig::default() })]

    /// Any row core converts passes `check_row` (directly and through the processor's reverse
    /// routing, day and partitioning checks) and comes back as the same text.
    #[test]
    fn every_row_core_converts_passes_unchanged(seed in any::<u64>(), time in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
        let mut g = Gen(seed | 1);
        let fields = g.fields(0, 8);
        let s = schema("events", "t", Value::Array(fields.clone()));
        let event = g.event(&fields, 0);
        let m = RowMeta { event_id: format!("id-{seed}"), event_time: time, received_at: time / 2 };
        let Value::Object(obj) = event.clone() else { unreachable!() };
        let converted = s.to_row(obj, &m);
        prop_assume!(converted.is_ok());
        let row = converted.expect("converted").json;
        let checked = s.check_row(&m.event_id, &row);
        prop_assert!(checked.is_ok(), "{row}: {:?}", checked);
        prop_assert_eq!(&checked.expect("checked").json, &row);

        let mut reg = SchemaRegistry::empty();
        reg.insert(s);
        let p = Processor::new(reg, &Config::default());
        let raw = RawEvent {
            namespace: "events".into(),
            type_name: "t".into(),
            time: Some(time),
            received_at: time / 2,
            id: EventId::Given(m.event_id.as_str().into()),
            body: event.to_string(),
        };
        let (dest, r) = p.process(&raw).expect("the processor converts it too");
        prop_assert_eq!(&r.json, &row);
        let again = p.check_row(&dest.dataset, &dest.table, false, &dest.day, &r.insert_id, &r.json);
        prop_assert_eq!(again, Ok(row));
    }
}

/// The property above is not vacuous: most generated events convert (the rest exercise
/// refusals), with every column type among the converted ones.
#[test]
fn the_generator_makes_mostly_convertible_events() {
    let (mut ok, mut types) = (0, std::collections::HashSet::new());
    for seed in 1..=1000u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let fields = g.fields(0, 8);
        let s = schema("events", "t", Value::Array(fields.clone()));
        let Value::Object(event) = g.event(&fields, 0) else {
            unreachable!()
        };
        if s.to_row(event, &meta()).is_ok() {
            ok += 1;
            types.extend(
                fields
                    .iter()
                    .filter_map(|f| f["type"].as_str().map(str::to_owned)),
            );
        }
    }
    assert!(ok >= 300, "{ok} of 1000 converted");
    assert_eq!(types.len(), 14, "{types:?}");
}
