//! `[[transforms]]` in a pipeline: the rules of every copy and those of one destination's copy,
//! a rule that cannot apply counted (the event goes on), a copy the rules make invalid
//! dead-lettered with the schema's reason, and bad entries refused at start naming the key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evlog_core::config::Config;
use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::memory::MemoryStore;
use evlog_core::{EventInput, Pipeline};

fn schemas() -> SchemaRegistry {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    SchemaRegistry::load_dir(&dir).expect("test schemas load")
}

/// Two destinations, `full` and `hashed`, both taking every table, and `transforms`.
fn config(transforms: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
        [batch]
        max_age = "20ms"
        [destinations.full]
        kind = "null"
        [destinations.hashed]
        kind = "null"
        [[routes]]
        tables = ["*"]
        to = ["full", "hashed"]
        {transforms}
        "#
    ))
    .expect("config")
}

fn pipeline(transforms: &str) -> (Pipeline, Arc<MemoryStore>, Arc<MemoryStore>) {
    let (full, hashed) = (MemoryStore::new(), MemoryStore::new());
    let p = Pipeline::with_destinations(
        config(transforms),
        schemas(),
        vec![
            ("full".into(), full.factory()),
            ("hashed".into(), hashed.factory()),
        ],
    )
    .expect("pipeline");
    (p, full, hashed)
}

fn rows(store: &MemoryStore) -> Vec<String> {
    let batches = store.batches.lock().unwrap();
    batches
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r.json.clone()))
        .collect()
}

fn view(p: &Pipeline, id: &str, body: &str) {
    let mut e = EventInput::new("events", "page_view", body);
    e.id = Some(id);
    p.log(e).expect("logged");
}

const PER_COPY: &str = r#"
    [[transforms]]
    tables = ["events.page_view"]
    drop = ["secret"]
    [[transforms]]
    tables = ["events.page_view"]
    destinations = ["hashed"]
    hash = ["referrer"]
    hash_key = "a-test-key-of-24-bytes!!"
    mask = { "card" = 4 }
"#;

#[test]
fn rules_for_every_copy_and_for_one_destination() {
    let (p, full, hashed) = pipeline(PER_COPY);
    let body = r#"{"url":"/a","referrer":"alice@example.com","secret":"s3cr3t","card":"4111111111111111"}"#;
    view(&p, "v-1", body);
    let mut t = EventInput::new("events", "transaction", r#"{"user_id":1,"amount":"1.00"}"#);
    t.id = Some("t-1");
    p.log(t).expect("logged");
    assert!(p.flush(Duration::from_secs(10)));

    let (full, hashed) = (rows(&full), rows(&hashed));
    assert_eq!((full.len(), hashed.len()), (2, 2), "{full:?} {hashed:?}");
    let view_row = |rows: &[String]| rows.iter().find(|r| r.contains("v-1")).unwrap().clone();
    let (f, h) = (view_row(&full), view_row(&hashed));
    // The rule for every copy: no copy has the secret.
    assert!(!f.contains("s3cr3t") && !h.contains("s3cr3t"), "{f}\n{h}");
    // The full copy keeps the referrer and the card as sent.
    assert!(
        f.contains("alice@example.com") && f.contains("4111111111111111"),
        "{f}"
    );
    // The hashed copy has neither: the referrer is 64 hex digits, the card masked.
    let row: serde_json::Value = serde_json::from_str(&h).unwrap();
    let referrer = row["referrer"].as_str().unwrap();
    assert_eq!(referrer.len(), 64, "{h}");
    assert!(referrer.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
    assert!(
        !h.contains("alice") && !h.contains("4111111111111111"),
        "{h}"
    );
    assert!(h.contains("************1111"), "{h}");
    // Tables no entry names pass untouched.
    let txn = |rows: &[String]| rows.iter().find(|r| r.contains("t-1")).unwrap().clone();
    assert_eq!(txn(&full), txn(&hashed));

    let s = p.stats();
    assert!(s.is_settled(), "{s:?}");
    assert_eq!(s.transform_skipped.values().sum::<u64>(), 0, "{s:?}");
    assert!(p.shutdown(Duration::from_secs(10)));
}

#[test]
fn the_hash_is_the_same_in_every_process_with_the_same_key() {
    let (a, _, a_hashed) = pipeline(PER_COPY);
    let (b, _, b_hashed) = pipeline(PER_COPY);
    for p in [&a, &b] {
        view(p, "v-1", r#"{"url":"/a","referrer":"bob@example.com"}"#);
        assert!(p.flush(Duration::from_secs(10)));
    }
    let referrer = |rows: Vec<String>| {
        let row: serde_json::Value = serde_json::from_str(&rows[0]).unwrap();
        row["referrer"].as_str().unwrap().to_owned()
    };
    assert_eq!(referrer(rows(&a_hashed)), referrer(rows(&b_hashed)));
}

#[test]
fn a_rule_that_cannot_apply_is_counted_and_the_event_goes_on() {
    // `url` is a string: `url.part` cannot be reached (not an object).
    let (p, full, hashed) = pipeline(
        r#"
        [[transforms]]
        tables = ["events.page_view"]
        mask = { "url.part" = 2 }
        "#,
    );
    for i in 0..3 {
        view(&p, &format!("v-{i}"), r#"{"url":"/unchanged"}"#);
    }
    assert!(p.flush(Duration::from_secs(10)));
    for rows in [rows(&full), rows(&hashed)] {
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter().all(|r| r.contains("\"/unchanged\"")),
            "{rows:?}"
        );
    }
    let s = p.stats();
    // Once per copy: three events, two destinations.
    assert_eq!(s.transform_skipped["not_an_object"], 6, "{s:?}");
    assert_eq!(
        s.destinations["hashed"].transform_skipped["not_an_object"],
        3
    );
    let text = s.to_prometheus();
    assert!(
        text.contains("evlog_transform_skipped_total{reason=\"not_an_object\"} 6"),
        "{text}"
    );
    assert!(
        text.contains(
            "evlog_transform_skipped_total{destination=\"full\",reason=\"not_an_object\"} 3"
        ),
        "{text}"
    );
    let flat: std::collections::BTreeMap<_, _> = s.to_flat().into_iter().collect();
    assert_eq!(
        flat["evlog_transform_skipped_total{reason=\"not_an_array\"}"],
        0.0
    );
    assert!(s.is_settled(), "{s:?}");
}

#[test]
fn a_copy_the_rules_make_invalid_is_dead_lettered_with_the_schemas_reason() {
    // Dropping the REQUIRED `url` from one destination's copy only.
    let (p, full, hashed) = pipeline(
        r#"
        [[transforms]]
        tables = ["events.page_view"]
        destinations = ["hashed"]
        drop = ["url"]
        mask = { "card" = 4 }
        "#,
    );
    view(&p, "v-1", r#"{"url":"/a","card":"4111111111111111"}"#);
    assert!(p.flush(Duration::from_secs(10)));
    assert_eq!(rows(&full).len(), 1);
    assert_eq!(rows(&hashed).len(), 0);
    let dead = hashed.rejected.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].field.as_deref(), Some("url"), "{dead:?}");
    // The dead letter is the copy that destination may see: transformed.
    assert!(dead[0].raw.contains("************1111"), "{}", dead[0].raw);
    assert!(!dead[0].raw.contains("4111111111111111"), "{}", dead[0].raw);
    let s = p.stats();
    assert_eq!(s.destinations["hashed"].rejected_total(), 1);
    assert_eq!(s.destinations["full"].delivered, 1);
    assert!(s.is_settled(), "{s:?}");
}

#[test]
fn one_destination_takes_rules_without_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "file"
        [sink.file]
        dir = {:?}
        [schemas]
        dir = {:?}
        [[transforms]]
        tables = ["events.*"]
        rename = {{ "uid" = "user_id" }}
        "#,
        dir.path(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
    ))
    .expect("config");
    let p = Pipeline::new(config).expect("pipeline");
    view(&p, "v-1", r#"{"url":"/a","uid":42}"#);
    assert!(p.flush(Duration::from_secs(10)));
    let mut text = String::new();
    for f in walk(dir.path()) {
        text.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let row: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
    assert_eq!(row["user_id"], 42, "{text}");
    assert!(!text.contains("uid"), "{text}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_entries_are_refused_at_start_naming_the_key() {
    let err = |transforms: &str| {
        let text = format!(
            "[destinations.full]\nkind = \"null\"\n[[routes]]\ntables = [\"*\"]\nto = [\"full\"]\n{transforms}"
        );
        match Config::from_toml_str(&text).and_then(|c| c.validate().map(|_| c)) {
            Ok(_) => panic!("accepted: {transforms}"),
            Err(e) => e.to_string(),
        }
    };
    let e = err("[[transforms]]\ntables = [\"*\"]\ndestinations = [\"live\"]\ndrop = [\"a\"]\n");
    assert!(
        e.contains("transforms[0].destinations[0]") && e.contains("live"),
        "{e}"
    );
    let e = err(
        "[[transforms]]\ntables = [\"*\"]\nhash = [\"email\"]\nhash_key_env = \"EVLOG_TEST_NO_SUCH_KEY_VAR\"\n",
    );
    assert!(
        e.contains("transforms[0]") && e.contains("EVLOG_TEST_NO_SUCH_KEY_VAR"),
        "{e}"
    );
    let e = err("[[transforms]]\ntables = [\"events.[\"]\ndrop = [\"a\"]\n");
    assert!(e.contains("transforms[0].tables"), "{e}");
    let e = err("[[transforms]]\ntables = [\"*\"]\nmask = { card = -1 }\n");
    assert!(e.contains("transforms[0].mask"), "{e}");
    let e = err("[[transforms]]\ntables = [\"*\"]\nshuffle = [\"a\"]\n");
    assert!(e.contains("shuffle"), "{e}");
}
