//! Property test: a JSON value in a field the schema does not name, or in a JSON column, comes
//! out of the pipeline's conversion (`Processor::process`, what the SDKs' flush thread and the
//! collector run) as the text that was sent: numbers digit for digit (integers beyond 64 bits,
//! exponents, numbers beyond doubles), strings with their escapes, members in order with
//! duplicates. Only the whitespace between tokens is dropped.

use evlog_core::config::Config;
use evlog_core::ingest::{Processor, RawEvent};
use evlog_core::schema::{SchemaRegistry, TableSchema};
use evlog_core::EventInput;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn processor() -> Processor {
    let text = r#"[{"name": "j", "type": "JSON"},
        {"name": "rec", "type": "RECORD", "fields": [{"name": "a", "type": "INT64"}]}]"#;
    let mut reg = SchemaRegistry::empty();
    reg.insert(TableSchema::from_json_str("ns", "t", text, "props").expect("schema"));
    Processor::new(reg, &Config::default())
}

fn process(p: &Processor, body: String) -> Map<String, Value> {
    let raw = RawEvent::new(EventInput::new("ns", "t", body), 1_763_800_000_000_000);
    let (_, row) = p
        .process(&raw)
        .unwrap_or_else(|e| panic!("{}: {}", e.error, e.raw));
    serde_json::from_str(&row.json).expect("row is JSON")
}

/// `text` without the whitespace between tokens (strings untouched).
fn minified(text: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut esc) = (false, false);
    for c in text.chars() {
        if in_str {
            out.push(c);
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_str = c == '"';
            out.push(c);
        }
    }
    out
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
}

/// JSON number text: any length of digits, fractions, exponents.
fn number() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,45}"],
        prop::option::of("[0-9]{1,30}"),
        prop::option::of("[eE][+-]?[0-9]{1,4}"),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = if neg { "-".to_owned() } else { String::new() };
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            s.push_str(&exp.unwrap_or_default());
            s
        })
}

/// JSON string text with escapes of every kind and any Unicode.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[^\"\\\\\\x00-\\x1f]{1,6}",
        1 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u001F",
            "\\u00e9", "\\u00E9", "\\u2028", "\\ud83d\\ude00", "\\uD834\\uDD1E", "\\uffff",
        ])
        .prop_map(str::to_owned),
        1 => (0u32..0xD800).prop_map(|c| format!("\\u{c:04x}")),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number(),
        3 => string(),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_owned),
    ]
}

/// Any JSON value as text, with whitespace here and there.
fn json_text() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        let item = (ws(), inner, ws())
            .prop_map(|(a, v, b)| format!("{a}{v}{b}"))
            .boxed();
        prop_oneof![
            prop::collection::vec(item.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string(), ws(), item), 0..5).prop_map(|m| {
                let members: Vec<String> = m
                    .into_iter()
                    .map(|(k, w, v)| format!("{k}{w}:{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn unknown_fields_and_json_columns_keep_the_text(
        top in json_text(),
        nested in json_text(),
        column in json_text(),
        s in ws(),
    ) {
        let p = processor();
        let body = format!(
            r#"{{{s}"u"{s}:{s}{top}{s},"j":{column},"rec":{{"a":1,"n":{nested}}},"z":{nested}}}"#
        );
        let row = process(&p, body);
        let (top, nested, column) = (minified(&top), minified(&nested), minified(&column));
        let want = format!(r#"{{"u":{top},"z":{nested},"rec":{{"n":{nested}}}}}"#);
        prop_assert_eq!(row.get("other").and_then(Value::as_str), Some(want.as_str()));
        // A JSON column holding JSON null is NULL (omitted), as any column.
        if column == "null" {
            prop_assert!(!row.contains_key("j"));
        } else {
            prop_assert_eq!(row.get("j").and_then(Value::as_str), Some(column.as_str()));
        }
    }
}

/// The values from the issue, and their neighbours, through the same path.
#[test]
fn big_integers_land_exactly() {
    let p = processor();
    for n in [
        "123456789012345678901234567890",
        "-9223372036854775809",
        "18446744073709551616",
        "-170141183460469231731687303715884105729",
        "1e400",
        "0.1000000000000000055511151231257827",
    ] {
        let row = process(
            &p,
            format!(r#"{{"x":{n},"j":[{n}],"rec":{{"a":1,"b":{{"c":{n}}}}}}}"#),
        );
        assert_eq!(
            row["other"].as_str(),
            Some(format!(r#"{{"x":{n},"rec":{{"b":{{"c":{n}}}}}}}"#).as_str())
        );
        assert_eq!(row["j"].as_str(), Some(format!("[{n}]").as_str()));
    }
}
