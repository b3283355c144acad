//! Config errors name the entry, the rule and the path; the hash key never shows.

use super::*;

/// The error for one entry's lines (the first entry unless `lines` holds more).
fn error(lines: &str) -> String {
    error_with_env(lines, env)
}

fn error_with_env(lines: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let text = format!("[[transforms]]\n{lines}");
    TransformSet::compile(&entries(&text), env)
        .unwrap_err()
        .to_string()
}

const T: &str = "tables = [\"events.*\"]\n";

#[test]
fn numbers_paths_and_patterns() {
    for (lines, want) in [
        (
            r#"mask = { "card" = -1 }"#,
            r#"transforms[0].mask."card": expected a non-negative integer"#,
        ),
        (
            r#"mask = { "card" = "4" }"#,
            r#"transforms[0].mask."card": expected a non-negative integer"#,
        ),
        (
            r#"mask = { "card" = 1.5 }"#,
            r#"transforms[0].mask."card": expected a non-negative integer"#,
        ),
        (
            r#"truncate = { "msg" = 0 }"#,
            r#"transforms[0].truncate."msg": expected a positive integer"#,
        ),
        (r#"drop = [""]"#, r#"transforms[0].drop."": empty path"#),
        (
            r#"hash = ["a..b"]"#,
            r#"transforms[0].hash."a..b": empty key at byte 2"#,
        ),
        (
            r#"set = { "items[x]" = 1 }"#,
            r#"transforms[0].set."items[x]": [x] at byte 5: an index is a non-negative integer, or [] for every element"#,
        ),
        (
            r#"redact = { "msg" = ["email", "phone"] }"#,
            r#"transforms[0].redact."msg": unknown pattern "phone" (patterns: email, ipv6, ipv4, card)"#,
        ),
        (
            r#"redact = { "msg" = "email" }"#,
            r#"transforms[0].redact."msg": expected a list of patterns, e.g. ["email", "card"] (patterns: email, ipv6, ipv4, card)"#,
        ),
        (
            r#"redact = { "msg" = [] }"#,
            r#"transforms[0].redact."msg": expected a list of patterns"#,
        ),
        (
            "set = { \"when\" = 2026-01-02 }",
            r#"transforms[0].set."when": a TOML date or time is not a JSON value: write it as a string"#,
        ),
    ] {
        let got = error(&format!("{T}{lines}"));
        assert!(got.starts_with(want), "{lines}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn entries_count_from_zero() {
    let got = error(&format!(
        "{T}drop = [\"a\"]\n[[transforms]]\n{T}[[transforms]]\n{T}mask = {{ \"x\" = -3 }}"
    ));
    assert_eq!(
        got,
        r#"transforms[1]: has no rules (rename, copy, set, default, hash, mask, truncate, redact, drop)"#
    );
    let got = error(&format!(
        "{T}drop = [\"a\"]\n[[transforms]]\n{T}mask = {{ \"x\" = -3 }}"
    ));
    assert_eq!(
        got,
        r#"transforms[1].mask."x": expected a non-negative integer"#
    );
}

#[test]
fn tables_and_destinations() {
    for (lines, want) in [
        (
            "tables = []\ndrop = [\"a\"]",
            "transforms[0].tables: must name at least one table glob",
        ),
        (
            "tables = [\"events.*\", \"events\"]\ndrop = [\"a\"]",
            r#"transforms[0].tables[1]: "events": expected "<namespace>.<type>""#,
        ),
        (
            "tables = [\"ev ents.*\"]\ndrop = [\"a\"]",
            r#"transforms[0].tables[0]: "ev ents.*": ' ' cannot appear in a namespace"#,
        ),
        (
            "tables = [\"a.b.c\"]\ndrop = [\"a\"]",
            r#"transforms[0].tables[0]: "a.b.c": expected"#,
        ),
        (
            &format!("{T}destinations = []\ndrop = [\"a\"]"),
            "transforms[0].destinations: is empty (leave it out",
        ),
        (
            &format!("{T}destinations = [\"live\", \"\"]\ndrop = [\"a\"]"),
            "transforms[0].destinations[1]: is empty",
        ),
    ] {
        let got = error(lines);
        assert!(got.starts_with(want), "{lines}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn serde_errors_name_the_key() {
    let parse = |text: &str| {
        toml::from_str::<toml::Table>(text)
            .unwrap()
            .get("transforms")
            .cloned()
            .unwrap()
            .try_into::<Vec<TransformConfig>>()
            .unwrap_err()
            .to_string()
    };
    let e = parse("[[transforms]]\ndrop = [\"a\"]");
    assert!(e.contains("missing field `tables`"), "{e}");
    let e = parse("[[transforms]]\ntables = [\"*\"]\nhahs = [\"a\"]");
    assert!(e.contains("unknown field `hahs`"), "{e}");
}

#[test]
fn rename_and_copy_shapes() {
    for (lines, want) in [
        (
            r#"rename = { "items[].a" = "b" }"#,
            r#"transforms[0].rename."items[].a": target b: both paths must go through the same []"#,
        ),
        (
            r#"copy = { "a[].x" = "b[].x" }"#,
            r#"transforms[0].copy."a[].x": target b[].x: both paths must go through the same []"#,
        ),
        (
            r#"rename = { "tags[]" = "t[]" }"#,
            r#"transforms[0].rename."tags[]": target t[]: both paths must go through the same []"#,
        ),
        (
            r#"rename = { "tags[]" = "tags[]" }"#,
            r#"transforms[0].rename."tags[]": rename acts on one value: neither path may end with []"#,
        ),
        (
            r#"rename = { "a" = "a" }"#,
            r#"transforms[0].rename."a": the source and the target are the same path"#,
        ),
        (
            r#"rename = { "a" = "a.b" }"#,
            r#"transforms[0].rename."a": target a.b lies inside the value being moved"#,
        ),
        (
            r#"rename = { "l[0]" = "first" }"#,
            r#"transforms[0].rename."l[0]": rename moves a key"#,
        ),
        (
            r#"rename = { "a" = "b", "b" = "c" }"#,
            r#"transforms[0].rename."b": "b" is renamed and also the target of "a": put the two renames in separate [[transforms]] entries"#,
        ),
        (
            r#"copy = { "a" = "x", "b" = "x" }"#,
            r#"transforms[0].copy."b": "a" and "b" both go to "x""#,
        ),
        (
            r#"rename = { "a" = "x[" }"#,
            r#"transforms[0].rename."a": target "x[": '[' at byte 1 is not closed"#,
        ),
    ] {
        let got = error(&format!("{T}{lines}"));
        assert!(got.starts_with(want), "{lines}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn hash_key_errors_name_both_sources_and_never_the_key() {
    let none = |_: &str| None;
    let got = error_with_env(&format!("{T}hash = [\"email\"]"), none);
    assert_eq!(
        got,
        "transforms[0].hash: needs a key: set hash_key, or the environment variable EVLOG_TRANSFORM_KEY (or name another with hash_key_env)"
    );
    let got = error_with_env(
        &format!("{T}hash = [\"email\"]\nhash_key_env = \"MY_KEY\""),
        none,
    );
    assert_eq!(
        got,
        "transforms[0].hash: needs a key: set hash_key, or the environment variable MY_KEY (named by hash_key_env)"
    );
    let got = error(&format!("{T}hash = [\"email\"]\nhash_key = \"sekrit\""));
    assert_eq!(
        got,
        "transforms[0].hash_key: is 6 bytes; at least 16 are needed"
    );
    let got = error_with_env(&format!("{T}hash = [\"email\"]"), |_| Some("sekrit".into()));
    assert_eq!(
        got,
        "transforms[0].hash: the key in EVLOG_TRANSFORM_KEY is 6 bytes; at least 16 are needed"
    );
    let got = error(&format!(
        "{T}hash = [\"email\"]\nhash_key = \"{KEY}\"\nhash_key_env = \"K\""
    ));
    assert_eq!(
        got,
        "transforms[0].hash_key: hash_key and hash_key_env are both set: keep one"
    );
    assert!(!got.contains(KEY));
    let got = error(&format!("{T}drop = [\"a\"]\nhash_key = \"{KEY}\""));
    assert_eq!(
        got,
        "transforms[0].hash_key: is set but the entry has no hash rule"
    );
    let got = error(&format!("{T}drop = [\"a\"]\nhash_key_env = \"K\""));
    assert_eq!(
        got,
        "transforms[0].hash_key_env: is set but the entry has no hash rule"
    );
    let got = error(&format!("{T}hash = [\"a\"]\nhash_key_env = \"\""));
    assert_eq!(got, "transforms[0].hash_key_env: is empty");
}

#[test]
fn the_key_is_never_printed() {
    let cfg = entries(&format!(
        "[[transforms]]\n{T}hash = [\"email\"]\nhash_key = \"{KEY}\""
    ));
    let debug = format!("{cfg:?}");
    assert!(debug.contains("hash_key: Some(<redacted>)"), "{debug}");
    assert!(!debug.contains(KEY));
    #[derive(serde::Serialize)]
    struct File<'a> {
        transforms: &'a [TransformConfig],
    }
    let text = toml::to_string(&File { transforms: &cfg }).unwrap();
    assert!(text.contains("hash_key = \"<redacted>\""), "{text}");
    assert!(!text.contains(KEY));
    let set = TransformSet::compile(&cfg, |_| None).unwrap();
    let debug = format!("{set:?}");
    assert!(
        debug.contains("Hasher(<keyed>)") && !debug.contains(KEY),
        "{debug}"
    );
}
