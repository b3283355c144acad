//! Destinations and routes: reading, rules, and which destinations an event goes to.

use std::path::PathBuf;

use super::*;
use crate::config::{Config, SinkKind};

fn err(toml: &str) -> String {
    Config::from_toml_str(toml).expect_err(toml).to_string()
}

const TWO: &str = r#"
[destinations.warehouse]
kind = "file"
dir = "/tmp/w"
[destinations.live]
kind = "null"
"#;

#[test]
fn destinations_hold_kind_and_the_sinks_own_keys() {
    let c = Config::from_toml_str(&format!(
        "{TWO}\n[[routes]]\ntables = [\"*\"]\nto = [\"warehouse\", \"live\"]\n"
    ))
    .unwrap();
    assert_eq!(c.destination_names(), ["live", "warehouse"]);
    let w = &c.destinations["warehouse"].sink;
    assert_eq!(
        (w.kind, w.file.dir.clone()),
        (SinkKind::File, PathBuf::from("/tmp/w"))
    );
    assert_eq!(c.destinations["live"].sink.kind, SinkKind::Null);
    let sinks = c.destination_sinks();
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[1].0, "warehouse");
    // Written back as read: kind and the sink's keys in the section.
    let text = toml::to_string(&c).unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), c, "{text}");
    assert!(text.contains("[destinations.warehouse]"), "{text}");
}

#[test]
fn sink_alone_is_the_default_destination_taking_every_table() {
    let c = Config::from_toml_str("[sink]\nkind = \"null\"\n").unwrap();
    assert_eq!(c.destination_names(), [DEFAULT_DESTINATION]);
    assert_eq!(c.destination_sinks()[0].1.kind, SinkKind::Null);
    let r = Routes::new(&c).unwrap();
    assert_eq!(
        r.select("any", "table", "id", "{}"),
        DestinationSet::single(0)
    );
    // Routes may name it, to send it only some tables.
    let c =
        Config::from_toml_str("[[routes]]\ntables = [\"events.*\"]\nto = [\"default\"]\n").unwrap();
    let r = Routes::new(&c).unwrap();
    assert_eq!(
        r.select("events", "t", "id", "{}"),
        DestinationSet::single(0)
    );
    assert!(r.select("debug", "t", "id", "{}").is_empty());
}

#[test]
fn sink_beside_destinations_is_refused_and_says_why() {
    let e = err(&format!(
        "[sink]\nkind = \"null\"\n{TWO}\n[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\n"
    ));
    assert!(
        e.starts_with("invalid setting sink: [sink] and [destinations] cannot be used together"),
        "{e}"
    );
    // An EVLOG_SINK_* variable sets [sink] too.
    let e = Config::from_toml_with_env(
        &format!("{TWO}\n[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\n"),
        "test",
        vec![("EVLOG_SINK_FILE_DIR".to_string(), "/tmp/x".to_string())],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot be used together"), "{e}");
    // [sink] as its defaults (an empty section) is no conflict.
    Config::from_toml_str(&format!(
        "[sink]\n{TWO}\n[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\n"
    ))
    .unwrap();
}

#[test]
fn env_overrides_still_set_sink_keys() {
    let c = Config::from_toml_with_env(
        "[[routes]]\ntables = [\"*\"]\nto = [\"default\"]\n",
        "test",
        vec![
            ("EVLOG_SINK_KIND".to_string(), "null".to_string()),
            ("EVLOG_SINK_FILE_DIR".to_string(), "/tmp/y".to_string()),
        ],
    )
    .unwrap();
    assert_eq!(c.sink.kind, SinkKind::Null);
    assert_eq!(c.sink.file.dir, PathBuf::from("/tmp/y"));
}

#[test]
fn route_errors_name_the_key() {
    for (routes, want) in [
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\n[[routes]]\ntables = [\"*\"]\nto = [\"x\"]\n",
            "invalid setting routes[1].to[0]: no destination \"x\"; defined: live, warehouse",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = []\n",
            "invalid setting routes[0].to: is empty",
        ),
        (
            "[[routes]]\ntables = []\nto = [\"live\"]\n",
            "invalid setting routes[0].tables: is empty",
        ),
        (
            "[[routes]]\ntables = [\"events.*\", \"events\"]\nto = [\"live\"]\n",
            "invalid setting routes[0].tables[1]: bad table glob \"events\": no `.`",
        ),
        (
            "[[routes]]\ntables = [\"ev/ents.*\"]\nto = [\"live\"]\n",
            "invalid setting routes[0].tables[0]: bad table glob \"ev/ents.*\": '/' is not allowed",
        ),
        (
            "[[routes]]\ntables = [\".t\"]\nto = [\"live\"]\n",
            "invalid setting routes[0].tables[0]: bad table glob \".t\": an empty part",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nsample = 1.5\n",
            "invalid setting routes[0].sample: must be from 0 to 1",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nsample = -0.1\n",
            "invalid setting routes[0].sample: must be from 0 to 1",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nwhere = { field = \"a\" }\n",
            "invalid setting routes[0].where.field: takes exactly one test",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nwhere = { field = \"a\", equals = 1, exists = true }\n",
            "invalid setting routes[0].where.field: takes exactly one test",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nwhere = { field = \"a..b\", exists = true }\n",
            "invalid setting routes[0].where.field: \"a..b\" is not a dotted path",
        ),
        (
            "[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nwhere = { field = \"a\", in = [[1]] }\n",
            "invalid setting routes[0].where.in: must be a string, number or boolean",
        ),
        (
            "",
            "invalid setting routes: [destinations] are defined (live, warehouse) but no [[routes]]",
        ),
    ] {
        let e = err(&format!("{TWO}\n{routes}"));
        assert!(e.starts_with(want), "{routes}\n got: {e}\nwant: {want}");
    }
    // Without [destinations], the one destination is "default".
    let e = err("[[routes]]\ntables = [\"*\"]\nto = [\"warehouse\"]\n");
    assert!(
        e.starts_with(
            "invalid setting routes[0].to[0]: no destination \"warehouse\"; defined: default"
        ),
        "{e}"
    );
    // Unknown keys of a route are named by the parser.
    let e = err(&format!(
        "{TWO}\n[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nsamples = 1\n"
    ));
    assert!(e.contains("samples"), "{e}");
}

#[test]
fn destination_errors_name_the_key_as_written() {
    for (section, want) in [
        (
            "[destinations.w]\nkind = \"bigquery\"\n",
            "invalid setting destinations.w.project: is required with kind = \"bigquery\"",
        ),
        (
            "[destinations.w]\nkind = \"file\"\nmax_open_files = 0\n",
            "invalid setting destinations.w.max_open_files: ",
        ),
        (
            "[destinations.w]\nkind = \"forward\"\nurl = \"ftp://x\"\n",
            "invalid setting destinations.w.url: ",
        ),
        (
            "[destinations.\"a b\"]\nkind = \"null\"\n",
            "invalid setting destinations.\"a b\": a destination's name is",
        ),
    ] {
        let text = format!("{section}[[routes]]\ntables = [\"*\"]\nto = [\"w\"]\n");
        let e = err(&text);
        assert!(e.starts_with(want), "{section}\n got: {e}\nwant: {want}");
    }
    for (section, want) in [
        ("[destinations.w]\ndir = \"/x\"\n", "missing field `kind`"),
        ("[destinations.w]\nkind = \"kafka\"\n", "kafka"),
        (
            "[destinations.w]\nkind = \"null\"\ndir = \"/x\"\n",
            "unknown field `dir`: kind = \"null\" takes no other keys",
        ),
        ("[destinations.w]\nkind = \"file\"\ndirr = \"/x\"\n", "dirr"),
    ] {
        let e = err(&format!(
            "{section}[[routes]]\ntables = [\"*\"]\nto = [\"w\"]\n"
        ));
        assert!(e.contains(want), "{section}\n got: {e}\nwant: {want}");
    }
}

fn routes(text: &str) -> Routes {
    Routes::new(&Config::from_toml_str(&format!("{TWO}\n{text}")).unwrap()).unwrap()
}

/// Indexes: live = 0, warehouse = 1.
const LIVE: DestinationSet = DestinationSet::EMPTY;

fn set(ix: &[usize]) -> DestinationSet {
    let mut s = LIVE;
    for i in ix {
        s.insert(*i);
    }
    s
}

#[test]
fn an_event_goes_to_every_route_that_takes_it() {
    let r = routes(
        r#"
        [[routes]]
        tables = ["events.*"]
        to = ["warehouse"]
        [[routes]]
        tables = ["events.click*", "debug.log"]
        to = ["live"]
        [[routes]]
        tables = ["*.audit"]
        to = ["warehouse", "live"]
        "#,
    );
    assert_eq!(r.select("events", "transaction", "1", "{}"), set(&[1]));
    assert_eq!(r.select("events", "clicked", "1", "{}"), set(&[0, 1]));
    assert_eq!(r.select("events", "click", "1", "{}"), set(&[0, 1]));
    assert_eq!(r.select("debug", "log", "1", "{}"), set(&[0]));
    assert_eq!(r.select("billing", "audit", "1", "{}"), set(&[0, 1]));
    assert!(r.select("debug", "trace", "1", "{}").is_empty());
    assert!(r.select("eventsx", "t", "1", "{}").is_empty());
    assert_eq!(set(&[0, 1]).iter().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(set(&[0, 1]).len(), 2);
}

#[test]
fn where_tests_a_field() {
    let r = routes(
        r#"
        [[routes]]
        tables = ["debug.*"]
        to = ["live"]
        where = { field = "level", equals = "error" }
        [[routes]]
        tables = ["debug.*"]
        to = ["warehouse"]
        where = { field = "user.plan", in = ["pro", 3, true] }
        [[routes]]
        tables = ["trace.*"]
        to = ["live"]
        where = { field = "span", exists = false }
        [[routes]]
        tables = ["num.*"]
        to = ["live"]
        where = { field = "n", equals = 2 }
        [[routes]]
        tables = ["num.*"]
        to = ["warehouse"]
        where = { field = "x", equals = 0.5 }
        "#,
    );
    let sel = |ns: &str, body: &str| r.select(ns, "t", "id", body);
    assert_eq!(sel("debug", r#"{"level":"error"}"#), set(&[0]));
    assert_eq!(
        sel("debug", r#"{"level":"err\u006fr"}"#),
        set(&[0]),
        "decoded"
    );
    assert!(sel("debug", r#"{"level":"warn"}"#).is_empty());
    assert!(sel("debug", r#"{"level":1}"#).is_empty());
    assert_eq!(sel("debug", r#"{"user":{"plan":"pro"}}"#), set(&[1]));
    assert_eq!(sel("debug", r#"{"user":{"plan":3.0}}"#), set(&[1]));
    assert_eq!(sel("debug", r#"{"user":{"plan":true}}"#), set(&[1]));
    assert!(sel("debug", r#"{"user":{"plan":"free"}}"#).is_empty());
    assert!(sel("debug", r#"{"user":"pro"}"#).is_empty());
    assert!(sel("debug", "not json").is_empty());
    assert_eq!(sel("trace", r#"{"a":1}"#), set(&[0]));
    assert!(
        sel("trace", r#"{"span":null}"#).is_empty(),
        "null is present"
    );
    assert_eq!(sel("trace", "[1]"), set(&[0]), "no object, no fields");
    assert_eq!(sel("num", r#"{"n":2,"x":0.5}"#), set(&[0, 1]));
    assert_eq!(sel("num", r#"{"n":2.0,"x":5e-1}"#), set(&[0, 1]));
    assert!(sel("num", r#"{"n":"2","x":"0.5"}"#).is_empty());
}

#[test]
fn where_reads_a_rows_columns_then_its_other() {
    let r = routes(
        r#"
        [[routes]]
        tables = ["events.*"]
        to = ["live"]
        where = { field = "level", equals = "error" }
        [[routes]]
        tables = ["events.*"]
        to = ["warehouse"]
        where = { field = "user.plan", equals = "pro" }
        "#,
    );
    let row = |json: &str| r.select_row("events", "t", "id", json);
    assert_eq!(row(r#"{"level":"error","other":null}"#), set(&[0]));
    assert_eq!(
        row(r#"{"event_id":"1","other":"{\"level\":\"error\",\"user\":{\"plan\":\"pro\"}}"}"#),
        set(&[0, 1])
    );
    // A column wins over a member of `other` of the same name.
    assert!(row(r#"{"level":"warn","other":"{\"level\":\"error\"}"}"#).is_empty());
}

#[test]
fn sampling_is_decided_by_the_id_alone() {
    let r = routes("[[routes]]\ntables = [\"*\"]\nto = [\"live\"]\nsample = 0.25\n");
    let again = routes("[[routes]]\ntables = [\"events.*\"]\nto = [\"live\"]\nsample = 0.25\n");
    let ids: Vec<String> = (0..20_000).map(|i| format!("order-{i}")).collect();
    let taken: Vec<&String> = ids
        .iter()
        .filter(|id| !r.select("events", "t", id, "{}").is_empty())
        .collect();
    // Another process with the same rate takes the same ids.
    let taken_again: Vec<&String> = ids
        .iter()
        .filter(|id| !again.select("events", "t", id, "{}").is_empty())
        .collect();
    assert_eq!(taken, taken_again);
    // About a quarter (σ ≈ 61 of 20000 → ±6σ).
    let share = taken.len() as f64 / ids.len() as f64;
    assert!((0.23..0.27).contains(&share), "{share}");
    // A lower rate takes a subset; 0 none; 1 all.
    for id in &ids {
        assert!(!sampled(id, 0.1) || sampled(id, 0.25), "{id}");
        assert!(!sampled(id, 0.0));
        assert!(sampled(id, 1.0));
    }
    // The function is stable (docs/contracts.md): values computed independently of this code.
    assert_eq!(sample_point(""), 0xf52a_15e9_a9b5_e89b);
    assert_eq!(sample_point("order-1"), 0xedf2_3fc2_e07f_a9d3);
    // 0.929…: taken by a route sampling 0.93, not by one sampling 0.92.
    assert!(sampled("order-1", 0.93) && !sampled("order-1", 0.92));
}

#[test]
fn a_dead_letter_is_routed_by_its_envelopes_event_or_its_row() {
    let r = routes(
        r#"
        [[routes]]
        tables = ["events.*"]
        to = ["live"]
        where = { field = "level", equals = "error" }
        "#,
    );
    let envelope = r#"{"namespace":"events","type":"t","id":"1","event":{"level":"error"}}"#;
    assert_eq!(
        r.select_dead_letter("events", "t", "1", envelope),
        set(&[0])
    );
    let other = r#"{"namespace":"events","type":"t","id":"1","event":{"level":"warn"}}"#;
    assert!(r.select_dead_letter("events", "t", "1", other).is_empty());
    // A row (BigQuery refused it): its columns and `other`.
    let row = r#"{"event_id":"1","other":"{\"level\":\"error\"}"}"#;
    assert_eq!(r.select_dead_letter("events", "t", "1", row), set(&[0]));
    assert!(r
        .select_dead_letter("events", "t", "1", "not json")
        .is_empty());
}
