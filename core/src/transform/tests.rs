//! Every rule, path form and cannot-apply case through [`TransformSet::apply`]; config errors in
//! `tests/errors.rs`, properties in `tests/props.rs`.

use serde_json::{json, Map, Value};

use super::*;

mod errors;
mod props;

/// The key the tests' environment holds in `EVLOG_TRANSFORM_KEY`.
const KEY: &str = "0123456789abcdef-test-key";

fn env(var: &str) -> Option<String> {
    (var == DEFAULT_KEY_ENV).then(|| KEY.to_owned())
}

/// `[[transforms]]` entries from TOML text.
fn entries(toml_text: &str) -> Vec<TransformConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        transforms: Vec<TransformConfig>,
    }
    toml::from_str::<File>(toml_text).unwrap().transforms
}

fn set_of(toml_text: &str) -> TransformSet {
    TransformSet::compile(&entries(toml_text), env).unwrap()
}

/// One entry for every table from its rule lines.
fn rules(lines: &str) -> TransformSet {
    set_of(&format!("[[transforms]]\ntables = [\"*\"]\n{lines}"))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Applies to `events.page_view`, not bound for a destination.
fn run(set: &TransformSet, event: Value) -> (Value, Applied) {
    let mut m = obj(event);
    let a = set.apply("events", "page_view", None, &mut m);
    (Value::Object(m), a)
}

fn counts(applied: u32, skips: &[(SkipReason, u32)]) -> Applied {
    let mut a = Applied {
        applied,
        ..Applied::default()
    };
    for &(r, n) in skips {
        a.skipped[r as usize] = n;
    }
    a
}

use SkipReason::*;

#[test]
fn rename_moves_creates_and_replaces() {
    let s = rules(r#"rename = { "uid" = "user_id", "user.mail" = "contact.email", "a" = "b" }"#);
    let (out, a) = run(
        &s,
        json!({"uid": 7, "user": {"mail": "m", "n": 1}, "a": 1, "b": 2}),
    );
    assert_eq!(
        out,
        json!({"user_id": 7, "user": {"n": 1}, "contact": {"email": "m"}, "b": 1})
    );
    assert_eq!(a, counts(3, &[]));
    // Absent sources: nothing to do, nothing counted.
    let (out, a) = run(&s, json!({"x": 1}));
    assert_eq!((out, a), (json!({"x": 1}), Applied::default()));
}

#[test]
fn rename_that_cannot_apply_leaves_the_source() {
    let s = rules(r#"rename = { "uid" = "user.id", "v.w" = "z" }"#);
    let (out, a) = run(&s, json!({"uid": 7, "user": "bob", "v": [1]}));
    assert_eq!(out, json!({"uid": 7, "user": "bob", "v": [1]}));
    assert_eq!(a, counts(0, &[(NotAnObject, 2)]));
}

#[test]
fn rename_inside_each_element() {
    let s = rules(r#"rename = { "items[].qty" = "items[].quantity" }"#);
    let (out, a) = run(
        &s,
        json!({"items": [{"qty": 1}, {"sku": "x"}, 5, {"qty": 2, "quantity": 0}]}),
    );
    assert_eq!(
        out,
        json!({"items": [{"quantity": 1}, {"sku": "x"}, 5, {"quantity": 2}]})
    );
    assert_eq!(a, counts(2, &[(NotAnObject, 1)]));
    let (_, a) = run(&s, json!({"items": {"qty": 1}}));
    assert_eq!(a, counts(0, &[(NotAnArray, 1)]));
}

#[test]
fn copy_keeps_the_source() {
    let s = rules(
        r#"copy = { "email" = "contact.email", "items[].sku" = "items[].id", "items[0]" = "first" }"#,
    );
    let (out, a) = run(
        &s,
        json!({"email": "e", "items": [{"sku": "a"}, {"sku": "b"}]}),
    );
    assert_eq!(
        out,
        json!({
            "email": "e", "contact": {"email": "e"},
            "items": [{"sku": "a", "id": "a"}, {"sku": "b", "id": "b"}],
            "first": {"sku": "a"}
        })
    );
    assert_eq!(a, counts(4, &[]));
    let (out, a) = run(&s, json!({"email": "e", "contact": 3}));
    assert_eq!(out, json!({"email": "e", "contact": 3}));
    assert_eq!(a, counts(0, &[(NotAnObject, 1)]));
}

#[test]
fn set_writes_always_default_only_when_absent() {
    let s = rules(
        r#"set = { "meta.source" = "web", "level" = 3, "items[].currency" = "EUR", "list[5]" = 1 }
default = { "region" = "eu", "level" = 0, "gone" = "x", "items[0].note" = "" }"#,
    );
    let (out, a) = run(
        &s,
        json!({"level": 1, "gone": null, "items": [{}, {"currency": "USD"}], "list": [0]}),
    );
    assert_eq!(
        out,
        json!({
            "meta": {"source": "web"}, "level": 3, "gone": null, "region": "eu",
            "items": [{"currency": "EUR", "note": ""}, {"currency": "EUR"}], "list": [0]
        })
    );
    // set: meta.source, level, 2 × currency; list[5] is out of range. default: region and
    // items[0].note; level and gone (null) are present.
    assert_eq!(a, counts(6, &[(IndexOutOfRange, 1)]));
    let (out, a) = run(&s, json!({"meta": "m", "items": 1}));
    assert_eq!(out["meta"], json!("m"));
    assert_eq!(
        a,
        counts(
            3,
            &[(NotAnObject, 1), (NotAnArray, 2), (IndexOutOfRange, 1)]
        )
    );
}

#[test]
fn set_through_a_missing_array_creates_nothing() {
    let s = rules(r#"set = { "a.items[0].x" = 1, "b.items[].x" = 1 }"#);
    let (out, a) = run(&s, json!({}));
    assert_eq!(out, json!({}));
    assert_eq!(a, counts(0, &[(IndexOutOfRange, 1)]));
}

#[test]
fn hash_is_keyed_hmac_in_hex() {
    let s = rules(r#"hash = ["email", "user_id", "id_text", "tags[]", "nothing", "flag", "none"]"#);
    let (out, a) = run(
        &s,
        json!({"email": "ada@example.com", "user_id": 17, "id_text": "17",
               "tags": ["SKU-1", 2.5], "flag": true, "none": null}),
    );
    assert_eq!(
        out["email"],
        "d3f21c4ba9cee71a2f9fbb992ba87d7801317337b4a61818e936c995db7eb068"
    );
    let h17 = "210295769113b4a0ad518a5c58b5843e478c7ef3724bcb679c3c8116598cc412";
    assert_eq!(
        (out["user_id"].as_str(), out["id_text"].as_str()),
        (Some(h17), Some(h17))
    );
    assert_eq!(
        out["tags"][0],
        "061ac701c847037f71da2cc107dc654998652ff9eab888a7b57365a33b4ab326"
    );
    assert_eq!(out["tags"][1].as_str().map(str::len), Some(64));
    assert_eq!((&out["flag"], &out["none"]), (&json!(true), &Value::Null));
    assert_eq!(a, counts(5, &[(NotAString, 1)]));
}

#[test]
fn hash_key_from_the_config_or_a_named_variable() {
    let from_file = set_of(&format!(
        "[[transforms]]\ntables = [\"*\"]\nhash = [\"e\"]\nhash_key = \"{KEY}\""
    ));
    let named = TransformSet::compile(
        &entries("[[transforms]]\ntables = [\"*\"]\nhash = [\"e\"]\nhash_key_env = \"MY_KEY\""),
        |v| (v == "MY_KEY").then(|| KEY.to_owned()),
    )
    .unwrap();
    let want = json!({"e": "d3f21c4ba9cee71a2f9fbb992ba87d7801317337b4a61818e936c995db7eb068"});
    assert_eq!(run(&from_file, json!({"e": "ada@example.com"})).0, want);
    assert_eq!(run(&named, json!({"e": "ada@example.com"})).0, want);
}

#[test]
fn mask_keeps_the_last_characters() {
    let s = rules(r#"mask = { "card" = 4, "short" = 4, "n" = 2, "all" = 0, "u" = 1, "o" = 1 }"#);
    let (out, a) = run(
        &s,
        json!({"card": "4111111111111111", "short": "123", "n": 123456, "all": "abc",
               "u": "äöü", "o": {"x": 1}}),
    );
    assert_eq!(
        out,
        json!({"card": "************1111", "short": "123", "n": "****56", "all": "***",
               "u": "**ü", "o": {"x": 1}})
    );
    assert_eq!(a, counts(5, &[(NotAString, 1)]));
}

#[test]
fn truncate_cuts_characters() {
    let s = rules(r#"truncate = { "msg" = 5, "u" = 2, "ok" = 10, "n" = 1 }"#);
    let (out, a) = run(
        &s,
        json!({"msg": "hello world", "u": "日本語", "ok": "fine", "n": 12345}),
    );
    assert_eq!(
        out,
        json!({"msg": "hello", "u": "日本", "ok": "fine", "n": 12345})
    );
    assert_eq!(a, counts(3, &[(NotAString, 1)]));
}

#[test]
fn redact_replaces_what_patterns_find() {
    let s = rules(r#"redact = { "msg" = ["email", "ipv4"], "n" = ["card"], "list[]" = ["card"] }"#);
    let (out, a) = run(
        &s,
        json!({"msg": "from ada@example.com at 10.1.2.3, ::1 stays", "n": 4111111111111111_u64,
               "list": ["4111 1111 1111 1111", "none"]}),
    );
    assert_eq!(
        out,
        json!({"msg": "from [email] at [ipv4], ::1 stays", "n": 4111111111111111_u64,
               "list": ["[card]", "none"]})
    );
    assert_eq!(a, counts(3, &[(NotAString, 1)]));
}

#[test]
fn drop_every_path_form() {
    let s = rules(
        r#"drop = ["password", "user.token", "items[].price", "list[1]", "tags[]", "absent", "s.x", '"a.b"']"#,
    );
    let (out, a) = run(
        &s,
        json!({"password": "p", "user": {"token": "t", "id": 1}, "s": "str", "a.b": 1, "a": {"b": 2},
               "items": [{"price": 1, "sku": "x"}, {"sku": "y"}], "list": [0, 1, 2], "tags": ["a", "b"]}),
    );
    assert_eq!(
        out,
        json!({"user": {"id": 1}, "s": "str", "a": {"b": 2}, "items": [{"sku": "x"}, {"sku": "y"}],
               "list": [0, 2], "tags": []})
    );
    assert_eq!(a, counts(6, &[(NotAnObject, 1)]));
    let (_, a) = run(&s, json!({"tags": "x"}));
    assert_eq!(a, counts(0, &[(NotAnArray, 1)]));
}

#[test]
fn rules_of_an_entry_run_in_the_fixed_order() {
    // Listed backwards on purpose: rename, copy, set, hash, mask, drop is what runs.
    let s = rules(
        r#"drop = ["email"]
mask = { "card_last" = 4 }
hash = ["email_hash"]
set = { "card_last" = "4111111111111111" }
copy = { "email" = "email_hash" }
rename = { "mail" = "email" }"#,
    );
    let (out, a) = run(&s, json!({"mail": "ada@example.com"}));
    assert_eq!(
        out,
        json!({"email_hash": "d3f21c4ba9cee71a2f9fbb992ba87d7801317337b4a61818e936c995db7eb068",
               "card_last": "************1111"})
    );
    assert_eq!(a, counts(6, &[]));
}

#[test]
fn entries_run_in_file_order_and_by_table() {
    let s = set_of(
        r#"[[transforms]]
tables = ["events.*"]
rename = { "a" = "b" }
[[transforms]]
tables = ["shop.*", "events.page_?iew"]
rename = { "b" = "c" }
[[transforms]]
tables = ["shop.order"]
drop = ["c"]"#,
    );
    assert_eq!(run(&s, json!({"a": 1})).0, json!({"c": 1}));
    let mut m = obj(json!({"a": 1}));
    s.apply("events", "click", None, &mut m);
    assert_eq!(Value::Object(m), json!({"b": 1}));
    let mut m = obj(json!({"a": 1, "b": 2}));
    let a = s.apply("shop", "order", None, &mut m);
    assert_eq!((Value::Object(m), a.applied), (json!({"a": 1}), 2));
}

#[test]
fn destinations_pick_the_copy() {
    let s = set_of(
        r#"[[transforms]]
tables = ["events.*"]
drop = ["password"]
[[transforms]]
tables = ["events.*"]
destinations = ["live", "search"]
hash = ["email"]"#,
    );
    let event = json!({"email": "ada@example.com", "password": "p"});
    let copy = |dest: Option<&str>| {
        let mut m = obj(event.clone());
        s.apply("events", "page_view", dest, &mut m);
        Value::Object(m)
    };
    assert_eq!(copy(None), json!({"email": "ada@example.com"}));
    assert_eq!(copy(Some("warehouse")), json!({"email": "ada@example.com"}));
    let hashed = "d3f21c4ba9cee71a2f9fbb992ba87d7801317337b4a61818e936c995db7eb068";
    assert_eq!(copy(Some("live")), json!({"email": hashed}));
    assert_eq!(copy(Some("search")), json!({"email": hashed}));
    assert!(s.varies_by_destination("events", "x"));
    assert!(!s.varies_by_destination("shop", "x"));
    assert_eq!(s.check_destinations(|n| n != "warehouse"), Ok(()));
    let e = s.check_destinations(|n| n == "live").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"transforms[1].destinations[1]: unknown destination "search""#
    );
}

#[test]
fn quoted_keys_and_nested_arrays() {
    let s = rules(r#"mask = { '"user.name".first' = 1, "grid[][]" = 0, "grid[0][1]" = 1 }"#);
    let (out, a) = run(
        &s,
        json!({"user.name": {"first": "Ada"}, "user": {"name": {"first": "keep"}}, "grid": [["ab", "cd"], ["ef"]]}),
    );
    assert_eq!(
        out,
        json!({"user.name": {"first": "**a"}, "user": {"name": {"first": "keep"}}, "grid": [["**", "**"], ["**"]]})
    );
    assert_eq!(a.applied, 5);
}

#[test]
fn no_entry_for_the_table_leaves_the_event_untouched() {
    let s = set_of("[[transforms]]\ntables = [\"shop.*\"]\ndrop = [\"a\"]");
    assert_eq!(
        run(&s, json!({"a": 1})),
        (json!({"a": 1}), Applied::default())
    );
    let empty = TransformSet::compile(&[], env).unwrap();
    assert!(empty.is_empty());
    assert_eq!(run(&empty, json!({"a": 1})).0, json!({"a": 1}));
}

#[test]
fn applied_sums_and_labels() {
    let mut total = counts(1, &[(NotAString, 2)]);
    total += counts(2, &[(NotAString, 1), (IndexOutOfRange, 4)]);
    assert_eq!(total.applied, 3);
    assert_eq!(total.skipped(), 7);
    assert_eq!(total.skipped_for(NotAString), 3);
    let labels: Vec<_> = total.skip_reasons().map(|(r, n)| (r.label(), n)).collect();
    assert_eq!(labels, [("not_a_string", 3), ("index_out_of_range", 4)]);
    let all: Vec<_> = SkipReason::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(
        all,
        [
            "not_an_object",
            "not_an_array",
            "not_a_string",
            "index_out_of_range"
        ]
    );
}
