use super::*;

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

/// The `serde_json::Value` the parsed value means (numbers as serde_json reads their text).
fn meaning(v: &JRef<'_>) -> Value {
    match v {
        JRef::Null => Value::Null,
        JRef::Bool(b) => Value::Bool(*b),
        JRef::Number(n) => n.to_number().map_or(Value::Null, Value::Number),
        JRef::String(s) => Value::String(s.value().into_owned()),
        JRef::Array(a) => Value::Array(a.iter().map(meaning).collect()),
        JRef::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.value().into_owned(), meaning(v)))
                .collect(),
        ),
    }
}

/// Valid JSON: the parse means what serde_json's does, and writes back the text as sent.
#[test]
fn keeps_the_text_and_agrees_with_serde_json() {
    for text in [
        r#"{"b":1,"a":[true,false,null],"c":{"z":"x\"y","y":-0.5,"x":1e300}}"#,
        r#"{"k":1,"k":2,"a":{"d":1,"d":{"e":3}}}"#,
        r#"{"ü":"\u00fc\n\t\u0001","u":"💡","":18446744073709551615,"n":-9223372036854775808}"#,
        r#"[1.0,0.1,1.7976931348623157e308,5e-324,-0.0,-0,1E+2,2e-3]"#,
        r#""plain""#,
        r#""\ud83d\udca1 \/ \\ \b\f\r""#,
        r#"{"B":1,"a":2,"_":3,"A":4,"b":{"y":[{"q":1,"p":2}]}}"#,
        " { \"a\" :\t[ 1 ,\n2 ] , \"b c\" : \"x y\" } ",
        "{}",
        "[]",
        "0",
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        let jref = parse(text).unwrap();
        assert_eq!(meaning(&jref), value, "{text}");
        let mut out = String::new();
        jref.write_compact(&mut out);
        assert_eq!(out, minified(text), "{text}");
        if let (JRef::Object(o), Value::Object(m)) = (jref, &value) {
            let keys: Vec<String> = sorted(o)
                .into_iter()
                .map(|(k, _)| k.value().into_owned())
                .collect();
            assert!(keys.iter().eq(m.keys()), "{text}");
        }
    }
}

/// Integers beyond 64 bits and numbers beyond doubles keep every digit.
#[test]
fn numbers_keep_their_digits() {
    for text in [
        "123456789012345678901234567890",
        "-9223372036854775809",
        "18446744073709551616",
        "1e400",
        "-1.000000000000000000000000000001E-400",
        "0.1000000000000000000000000000000000000001",
    ] {
        let doc = format!(r#"{{"x":{text},"y":[{text}]}}"#);
        let mut out = String::new();
        parse(&doc).unwrap().write_compact(&mut out);
        assert_eq!(out, doc);
    }
    let JRef::Number(n) = parse("-9223372036854775809").unwrap() else {
        panic!("number")
    };
    assert_eq!((n.as_i64(), n.as_u64()), (None, None));
    assert_eq!(
        n.to_number(),
        Some(Number::from_f64(-9.223372036854776e18).unwrap())
    );
    let JRef::Number(n) = parse("1e400").unwrap() else {
        panic!("number")
    };
    assert_eq!((n.as_f64(), n.to_number()), (None, None));
}

/// What serde_json refuses, `parse` refuses, with serde_json's kind of message.
#[test]
fn refuses_what_serde_json_refuses() {
    for text in [
        "",
        " ",
        "{",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":1",
        "{\"a\":1,}",
        "{,}",
        "{1:2}",
        "{\"a\" 1}",
        "[1,]",
        "[1 2]",
        "[",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "0x10",
        "tru",
        "nul",
        "\"abc",
        "\"a\\",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\ud800\"",
        "\"\\ud800\\u0041\"",
        "\"\\udc00\"",
        "\"a\u{1}b\"",
        "\"tab\there\"",
        "{} {}",
        "1 2",
        "NaN",
        "Infinity",
    ] {
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text:?}");
        let e = parse(text).expect_err(text);
        assert!(
            e.to_string().contains(" at line 1 column "),
            "{text:?}: {e}"
        );
    }
    let e = parse("{\n  \"a\": 1,\n  \"b\" 2}").unwrap_err();
    assert_eq!(e.to_string(), "expected `:` at line 3 column 7");
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert!(parse(&deep)
        .unwrap_err()
        .to_string()
        .starts_with("recursion limit exceeded"));
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(&ok).is_ok());
}

#[test]
fn strings_are_borrowed_and_decoded_on_read() {
    let text = r#"{"plain":"abc","esc":"a\nb\u00e9\ud83d\udca1","k\u0031":1}"#;
    let JRef::Object(o) = parse(text).unwrap() else {
        panic!("object")
    };
    assert!(o.iter().all(|(k, _)| k.is_borrowed()));
    let Some(JRef::String(s)) = get(&o, "esc") else {
        panic!("esc")
    };
    assert!(s.is_borrowed());
    assert_eq!(s.value(), "a\nbé💡");
    assert!(get(&o, "k1").is_some());
    assert_eq!(unescape(r"\u00e9\t\/\ud83d\udca1"), "é\t/💡");
    // Not reachable through `parse`, but never a panic.
    assert_eq!(unescape(r"x\ud800y\"), "x\u{FFFD}y\u{FFFD}");
}

/// Strings of every length cross the eight-byte scan at every offset.
#[test]
fn string_scan_finds_every_stop() {
    for len in 0..20 {
        for stop in ["\"", "\\n\"", "\u{1}\""] {
            let body = "é".repeat(len / 2) + &"a".repeat(len % 2);
            let text = format!("\"{body}{stop}");
            let got = parse(&text);
            let want = serde_json::from_str::<Value>(&text);
            assert_eq!(got.is_ok(), want.is_ok(), "{text:?}");
            if let (Ok(JRef::String(s)), Ok(Value::String(w))) = (got, want) {
                assert_eq!(s.value(), w.as_str());
            }
        }
    }
}

#[test]
fn get_and_sorted_take_the_last_duplicate() {
    let text = r#"{"b":1,"a":2,"b":3,"\u0061":4}"#;
    let JRef::Object(o) = parse(text).unwrap() else {
        panic!("object")
    };
    assert_eq!(get(&o, "b"), Some(&JRef::Number(3i64.into())));
    assert_eq!(get(&o, "a"), Some(&JRef::Number(4i64.into())));
    let s = sorted(o);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].1, JRef::Number(4i64.into()));
    assert_eq!(s[1], (JStr::plain("b"), JRef::Number(3i64.into())));
}
