use serde_json::json;

use super::*;

fn key(k: &str) -> Seg {
    Seg::Key(k.into())
}

fn segs(text: &str) -> Vec<Seg> {
    Path::parse(text).unwrap().segs.into_vec()
}

#[test]
fn parses_every_form() {
    assert_eq!(segs("a"), [key("a")]);
    assert_eq!(segs("user.email"), [key("user"), key("email")]);
    assert_eq!(segs("items[].sku"), [key("items"), Seg::Each, key("sku")]);
    assert_eq!(
        segs("items[0].sku"),
        [key("items"), Seg::Index(0), key("sku")]
    );
    assert_eq!(segs("grid[12][]"), [key("grid"), Seg::Index(12), Seg::Each]);
    assert_eq!(segs("tags[]"), [key("tags"), Seg::Each]);
    assert_eq!(segs(r#""a.b".c"#), [key("a.b"), key("c")]);
    assert_eq!(
        segs(r#"x."a[0]"[1]"#),
        [key("x"), key("a[0]"), Seg::Index(1)]
    );
    assert_eq!(segs(r#""""#), [key("")]);
    assert_eq!(segs(r#""say \"hi\" \\ bye""#), [key(r#"say "hi" \ bye"#)]);
    assert_eq!(segs("with space.é"), [key("with space"), key("é")]);
}

#[test]
fn refuses_malformed_paths() {
    for (bad, why) in [
        ("", "empty path"),
        ("a..b", "empty key at byte 2"),
        (".a", "empty key at byte 0"),
        ("a.", "ends with '.'"),
        ("a[", "not closed"),
        ("a[x]", "non-negative integer"),
        ("a[-1]", "non-negative integer"),
        ("a[99999999999999999999999]", "too large"),
        ("a]", "unexpected ']'"),
        ("a[0]b", "unexpected 'b'"),
        (r#"a"b""#, "unexpected '\"'"),
        (r#""a"#, "not closed"),
        (r#""a\n""#, "bad escape"),
        ("[0]", "empty key at byte 0"),
    ] {
        let e = Path::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

#[test]
fn display_writes_the_syntax_back() {
    for text in [
        "a",
        "user.email",
        "items[].sku",
        "grid[3][]",
        r#""a.b".c"#,
        r#""""#,
        r#""q\"\\".x"#,
    ] {
        let p = Path::parse(text).unwrap();
        assert_eq!(p.to_string(), text);
        assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
    }
}

#[test]
fn split_is_after_the_last_each() {
    assert_eq!(Path::parse("a.b").unwrap().split(), 0);
    assert_eq!(Path::parse("a[].b").unwrap().split(), 2);
    assert_eq!(Path::parse("a[].b[].c").unwrap().split(), 4);
    assert_eq!(Path::parse("a[0].b").unwrap().split(), 0);
}

#[test]
fn walks_report_absent_and_blocked() {
    let v = json!({"a": {"b": 1}, "s": "x", "l": [10, {"k": 2}]});
    assert_eq!(get(&v, &segs("a.b")), Ok(Some(&json!(1))));
    assert_eq!(get(&v, &segs("a.c")), Ok(None));
    assert_eq!(get(&v, &segs("s.c")), Err(SkipReason::NotAnObject));
    assert_eq!(get(&v, &segs("a[0]")), Err(SkipReason::NotAnArray));
    assert_eq!(get(&v, &segs("l[1].k")), Ok(Some(&json!(2))));
    assert_eq!(get(&v, &segs("l[5].k")), Ok(None));
    assert_eq!(get(&v, &segs("l[0].k")), Err(SkipReason::NotAnObject));
}

#[test]
fn put_creates_objects_only_and_is_all_or_nothing() {
    let v = json!({"a": {}, "s": "x", "l": [{}]});
    for (path, want) in [
        ("a.b.c", Ok(())),
        ("new.deep.key", Ok(())),
        ("l[0].x", Ok(())),
        ("s", Ok(())),
        ("s.b", Err(SkipReason::NotAnObject)),
        ("l[1].x", Err(SkipReason::IndexOutOfRange)),
        ("m[0]", Err(SkipReason::IndexOutOfRange)),
        ("new.deep[0].key", Err(SkipReason::IndexOutOfRange)),
        ("a[0]", Err(SkipReason::NotAnArray)),
    ] {
        let mut w = v.clone();
        let got = put(&mut w, &segs(path), json!(1)).map_err(|(r, back)| {
            assert_eq!(back, json!(1));
            r
        });
        assert_eq!(got, want, "{path}");
        if got.is_err() {
            assert_eq!(w, v, "{path} changed the event");
        } else {
            assert_eq!(get(&w, &segs(path)), Ok(Some(&json!(1))), "{path}");
        }
    }
    let mut w = v.clone();
    put(&mut w, &segs("new.deep.key"), json!(1)).unwrap();
    assert_eq!(w["new"], json!({"deep": {"key": 1}}));
}

#[test]
fn for_each_expands_every_element_and_counts_blocked_ones() {
    let mut v = json!({"items": [{"n": 1}, {"n": 2}, "odd", {"m": 0}], "x": {"y": [[1, 2], [3]]}});
    let mut seen = Vec::new();
    let mut blocked = Vec::new();
    for_each(
        &mut v,
        &segs("items[].n"),
        &mut |r| blocked.push(r),
        &mut |v| seen.push(v.clone()),
    );
    assert_eq!(seen, [json!(1), json!(2)]);
    assert_eq!(blocked, [SkipReason::NotAnObject]);
    seen.clear();
    for_each(
        &mut v,
        &segs("x.y[][]"),
        &mut |_| unreachable!(),
        &mut |v| seen.push(v.clone()),
    );
    assert_eq!(seen, [json!(1), json!(2), json!(3)]);
    blocked.clear();
    for_each(
        &mut v,
        &segs("x[].y"),
        &mut |r| blocked.push(r),
        &mut |_| {},
    );
    assert_eq!(blocked, [SkipReason::NotAnArray]);
}

#[test]
fn take_removes_keys_and_elements() {
    let mut v = json!({"a": {"b": 1}, "l": [1, 2, 3]});
    assert_eq!(take(&mut v, &segs("a.b")), Ok(Some(json!(1))));
    assert_eq!(take(&mut v, &segs("a.b")), Ok(None));
    assert_eq!(take(&mut v, &segs("l[1]")), Ok(Some(json!(2))));
    assert_eq!(take(&mut v, &segs("l[9]")), Ok(None));
    assert_eq!(take(&mut v, &segs("l.x")), Err(SkipReason::NotAnObject));
    assert_eq!(v, json!({"a": {}, "l": [1, 3]}));
}
