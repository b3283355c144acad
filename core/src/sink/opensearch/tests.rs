//! The OpenSearch sink's unit tests: config rules, index names, bodies, documents, answers and
//! templates. The sink against a real server (osmem-server) behind a fault-injecting proxy is
//! tested in the workspace's `tests/` crate.

use std::time::Duration;

use serde_json::{json, Value};

use super::config::{JsonMapping, OpenSearchAuth, OpenSearchConfig};
use super::document::DocShape;
use super::index::{IndexPattern, Placeholder, Values, ALL};
use super::request::{body, verdicts, ItemError, Verdict};
use super::service::{classify, Service};
use super::template::{self, Catalog};
use crate::config::{Config, RetryConfig};
use crate::schema::TableSchema;
use crate::sink::EncodedRow;

fn selected(extra: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!(
        "[sink]\nkind = \"opensearch\"\n[sink.opensearch]\n{extra}\n"
    ))
    .map_err(|e| e.to_string())
}

#[test]
fn config_rules_name_the_key() {
    let ok = selected(r#"urls = ["http://127.0.0.1:9200", "https://node2:9200/prefix"]"#).unwrap();
    assert_eq!(ok.sink.opensearch.urls.len(), 2);
    assert_eq!(ok.sink.opensearch.index, "{namespace}-{type}-{date}");
    let cases = [
        ("", "sink.opensearch.urls"),
        (r#"urls = ["ftp://x"]"#, "sink.opensearch.urls"),
        (r#"urls = ["http://u:p@x:9200"]"#, "sink.opensearch.urls"),
        (r#"urls = ["http://x:9200/_bulk"]"#, "sink.opensearch.urls"),
        (
            "urls = [\"http://x\"]\nauth = \"basic\"\nuser = \"u\"",
            "sink.opensearch.password",
        ),
        (
            "urls = [\"http://x\"]\nauth = \"api_key\"",
            "sink.opensearch.api_key",
        ),
        (
            "urls = [\"http://x\"]\nauth = \"bearer\"",
            "sink.opensearch.token",
        ),
        (
            "urls = [\"http://x\"]\nindex = \"Events-{type}\"",
            "lowercase",
        ),
        (
            "urls = [\"http://x\"]\nindex = \"ev-{tpye}\"",
            "unknown placeholder {tpye}",
        ),
        ("urls = [\"http://x\"]\nindex = \"ev-{type\"", "not closed"),
        (
            "urls = [\"http://x\"]\nindex = \"_ev-{type}\"",
            "must not start",
        ),
        (
            "urls = [\"http://x\"]\nindex = \"ev {type}\"",
            "not allowed",
        ),
        (
            "urls = [\"http://x\"]\ndata_stream = true\nindex = \"logs-{type}-{date}\"",
            "takes no {date}",
        ),
        (
            "urls = [\"http://x\"]\ninstall_templates = true\nindex = \"logs-{date}\"",
            "{namespace} and {type}",
        ),
        (
            "urls = [\"http://x\"]\ndead_letter_index = \"{namespace}-{type}\"",
            "sink.opensearch.dead_letter_index",
        ),
        (
            "urls = [\"http://x\"]\nworkers = 0",
            "sink.opensearch.workers",
        ),
        (
            "urls = [\"http://x\"]\nmax_bytes_per_request = \"200MB\"",
            "max_bytes_per_request",
        ),
        (
            "urls = [\"http://x\"]\ncomposed_of = [\"A b\"]",
            "sink.opensearch.composed_of",
        ),
        (
            "urls = [\"http://x\"]\nusers = \"x\"",
            "unknown field `users`",
        ),
    ];
    for (toml, want) in cases {
        let e = selected(toml).expect_err(toml);
        assert!(e.contains(want), "{toml}: {e}");
    }
    // Keys of a sink not selected are still checked, its required keys are not.
    let e = Config::from_toml_str("[sink.opensearch]\nindex = \"A\"").unwrap_err();
    assert!(e.to_string().contains("sink.opensearch.index"), "{e}");
    Config::from_toml_str("[sink.opensearch]\nauth = \"basic\"").expect("not selected");
}

#[test]
fn environment_sets_urls_and_secrets() {
    let env = [
        ("EVLOG_SINK_KIND", "opensearch"),
        (
            "EVLOG_SINK_OPENSEARCH_URLS",
            r#"["http://a:9200","http://b:9200"]"#,
        ),
        ("EVLOG_SINK_OPENSEARCH_AUTH", "basic"),
        ("EVLOG_SINK_OPENSEARCH_USER", "evlog"),
        ("EVLOG_SINK_OPENSEARCH_PASSWORD", "s3cret"),
        ("EVLOG_SINK_OPENSEARCH_CA_FILE", "/etc/ca.pem"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::from_toml_with_env("", "<test>", env).expect("config");
    let o = &c.sink.opensearch;
    assert_eq!(o.urls, ["http://a:9200", "http://b:9200"]);
    assert_eq!(o.auth, OpenSearchAuth::Basic);
    assert_eq!(o.password.as_deref(), Some("s3cret"));
    assert_eq!(
        o.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
}

#[test]
fn index_names_from_patterns() {
    let p = IndexPattern::parse("{namespace}-{type}-{date}", &ALL).unwrap();
    let v = Values {
        namespace: Some("Events"),
        type_name: Some("page_view"),
        day: Some("20261202"),
    };
    assert_eq!(p.render(v), "events-page_view-2026.12.02");
    assert_eq!(p.template_pattern(), "*-*-*");
    let p = IndexPattern::parse("logs-{namespace}.{type}", &ALL).unwrap();
    assert_eq!(p.render(v), "logs-events.page_view");
    assert!(!p.has(Placeholder::Date) && p.has(Placeholder::Type));
    let e = IndexPattern::parse("x-{type}", &[Placeholder::Namespace]).unwrap_err();
    assert!(
        e.contains("unknown placeholder {type}") && e.contains("{namespace}"),
        "{e}"
    );
    assert!(IndexPattern::parse("x}", &ALL).is_err());
    assert_eq!(IndexPattern::specificity("events-page_view-*"), 17);
}

fn row(id: &str, json: &str) -> EncodedRow {
    EncodedRow {
        insert_id: id.into(),
        json: json.into(),
    }
}

#[test]
fn bulk_body_is_ndjson_create_actions_with_event_ids() {
    let rows = [row("a\"1", r#"{"x":1}"#), row("b2", r#"{"y":"z"}"#)];
    let b = body("events-t-2026.12.02", &rows, None);
    let text = String::from_utf8(b).unwrap();
    assert!(
        text.ends_with('\n'),
        "every line ends with a newline, the last one too"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        json!({"create": {"_index": "events-t-2026.12.02", "_id": "a\"1"}})
    );
    assert_eq!(lines[1], json!({"x": 1}));
    assert_eq!(lines[2]["create"]["_id"], "b2");
    // Rows without a shape go byte for byte.
    assert!(text.contains("\n{\"y\":\"z\"}\n"));
}

fn schema(text: &str) -> TableSchema {
    TableSchema::from_json_str("events", "t", text, "test").expect("schema")
}

fn doc(shape: Option<&DocShape>, row: &str) -> String {
    let mut out = Vec::new();
    super::document::write(&mut out, row, shape);
    String::from_utf8(out).unwrap()
}

#[test]
fn json_and_geography_columns_become_values_at_any_depth() {
    let s = schema(
        r#"[{"name":"n","type":"INT64"},{"name":"j","type":"JSON"},
            {"name":"g","type":"GEOGRAPHY","mode":"REPEATED"},
            {"name":"r","type":"RECORD","mode":"REPEATED","fields":[{"name":"k","type":"JSON"}]}]"#,
    );
    let shape = DocShape::new(s.fields(), false).expect("has JSON columns");
    let row = r#"{"n":123456789012345678,"j":"{\"a\":[1,2.50,12345678901234567890123]}","g":["POINT(1 2)","{\"type\":\"Point\",\"coordinates\":[1,2]}"],"r":[{"k":"\"s\""},{"k":"null"}],"event_id":"e","event_time":"2026-12-02T10:00:00Z","received_at":"2026-12-02T10:00:01Z"}"#;
    let out = doc(Some(&shape), row);
    // Numbers keep every digit (raw text, never a double).
    assert!(
        out.contains(r#""j":{"a":[1,2.50,12345678901234567890123]}"#),
        "{out}"
    );
    assert!(out.contains(r#""n":123456789012345678"#), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["g"][0], "POINT(1 2)", "WKT stays a string");
    assert_eq!(v["g"][1]["type"], "Point", "GeoJSON becomes the object");
    assert_eq!(v["r"][0]["k"], "s");
    assert_eq!(v["r"][1]["k"], Value::Null);
    assert!(v.get("@timestamp").is_none());
    // A table without such columns has no shape: its rows go as they are.
    let plain = schema(r#"[{"name":"x","type":"STRING"}]"#);
    assert!(DocShape::new(plain.fields(), false).is_none());
}

#[test]
fn data_stream_documents_get_timestamp_from_event_time() {
    let s = schema(r#"[{"name":"x","type":"STRING"}]"#);
    let shape = DocShape::new(s.fields(), true).expect("timestamp");
    let out = doc(
        Some(&shape),
        r#"{"x":"a","event_id":"e","event_time":"2026-12-02T10:00:00.123456Z","received_at":"2026-12-02T10:00:01Z"}"#,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["@timestamp"], "2026-12-02T10:00:00.123456Z");
    assert_eq!(v["x"], "a");
    assert!(out.starts_with("{\"@timestamp\":"));
}

/// An answer as osmem-server and OpenSearch send it: created, refused for its content, already
/// there, asked to come again.
const ANSWER: &str = r#"{"took":3,"errors":true,"items":[
 {"create":{"_index":"ev","_id":"id1","_version":1,"result":"created","status":201}},
 {"create":{"_index":"ev","_id":"id2","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long] in document with id 'id2'. Preview of field's value: 'x'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}}}},
 {"create":{"_index":"ev","_id":"id3","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[id3]: version conflict, document already exists (current version [1])"}}},
 {"create":{"_index":"ev","_id":"id4","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
 {"create":{"_index":"ev","_id":"id5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
 {"create":{"_index":"ev","_id":"id6","status":403,"error":{"type":"security_exception","reason":"no permissions"}}}
]}"#;

#[test]
fn item_results_become_verdicts() {
    let ids = ["id1", "id2", "id3", "id4", "id5", "id6"];
    let v = verdicts(ANSWER.as_bytes(), &ids).expect("answer");
    assert_eq!(v[0], Verdict::Delivered);
    let Verdict::Refused(e) = &v[1] else {
        panic!("{:?}", v[1])
    };
    assert_eq!(e.kind, "mapper_parsing_exception");
    assert_eq!(e.field().as_deref(), Some("n"));
    assert!(
        e.describe()
            .contains("caused by illegal_argument_exception"),
        "{}",
        e.describe()
    );
    assert_eq!(
        v[2],
        Verdict::Delivered,
        "409 on create: the document is there"
    );
    assert!(matches!(&v[3], Verdict::Retry(e) if e.status == 429));
    assert!(matches!(&v[4], Verdict::Retry(e) if e.status == 503));
    assert!(matches!(&v[5], Verdict::Fail(e) if e.kind == "security_exception"));
    // Not the answer to what was sent.
    let e = verdicts(ANSWER.as_bytes(), &ids[..5]).unwrap_err();
    assert!(e.contains("6 items for the 5"), "{e}");
    let e = verdicts(ANSWER.as_bytes(), &["x", "id2", "id3", "id4", "id5", "id6"]).unwrap_err();
    assert!(e.contains("\"id1\""), "{e}");
    assert!(verdicts(b"<html>", &ids).is_err());
    assert!(verdicts(br#"{"acknowledged":true}"#, &ids).is_err());
}

#[test]
fn item_errors_name_their_field() {
    let e = ItemError::from_value(
        400,
        &json!({"type":"mapper_parsing_exception","reason":"object mapping for [j] tried to parse field [j] as object, but found a concrete value"}),
    );
    assert_eq!(e.field().as_deref(), Some("j"));
    let e = ItemError::from_value(400, &json!("a bare string"));
    assert_eq!(e.describe(), "a bare string");
    assert_eq!(e.field(), None);
}

#[test]
fn whole_request_answers_are_classified() {
    let f = classify(
        "POST x",
        503,
        br#"{"error":{"type":"cluster_block_exception","reason":"blocked"},"status":503}"#,
        None,
    );
    assert!(f.retryable && f.kind == "http_5xx" && f.message.contains("cluster_block_exception"));
    let f = classify("POST x", 429, b"", Some(Duration::from_secs(2)));
    assert!(f.retryable && f.kind == "http_429" && f.retry_after == Some(Duration::from_secs(2)));
    let f = classify("POST x", 502, b"<html>Bad Gateway</html>", None);
    assert!(f.retryable && f.message.contains("Bad Gateway"));
    let f = classify(
        "POST x",
        401,
        br#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#,
        None,
    );
    assert!(!f.retryable && f.kind == "http_4xx" && f.message.contains("missing authentication"));
    assert!(!classify("POST x", 413, b"", None).retryable);
}

fn all_types() -> TableSchema {
    schema(
        r#"[
        {"name":"s","type":"STRING"},{"name":"b","type":"BYTES"},{"name":"i","type":"INT64"},
        {"name":"f","type":"FLOAT64"},{"name":"n","type":"NUMERIC"},
        {"name":"money","type":"NUMERIC","precision":"12","scale":"2"},
        {"name":"big","type":"BIGNUMERIC"},{"name":"ok","type":"BOOL"},
        {"name":"ts","type":"TIMESTAMP"},{"name":"d","type":"DATE"},{"name":"dt","type":"DATETIME"},
        {"name":"t","type":"TIME"},{"name":"j","type":"JSON"},{"name":"g","type":"GEOGRAPHY"},
        {"name":"tags","type":"STRING","mode":"REPEATED"},
        {"name":"r","type":"RECORD","fields":[{"name":"x","type":"INT64"},
           {"name":"inner","type":"RECORD","mode":"REPEATED","fields":[{"name":"y","type":"BOOL"}]}]}
    ]"#,
    )
}

#[test]
fn mappings_follow_the_documented_table() {
    let m = template::mappings(all_types().fields(), JsonMapping::Object, false);
    let p = &m["properties"];
    let ty = |k: &str| p[k]["type"].as_str().unwrap_or_default().to_string();
    for (k, want) in [
        ("s", "keyword"),
        ("b", "binary"),
        ("i", "long"),
        ("f", "double"),
        ("n", "keyword"),
        ("money", "scaled_float"),
        ("big", "keyword"),
        ("ok", "boolean"),
        ("ts", "date"),
        ("d", "date"),
        ("dt", "date"),
        ("t", "keyword"),
        ("j", "object"),
        ("g", "geo_shape"),
        ("tags", "keyword"),
        ("r", "object"),
        ("event_id", "keyword"),
        ("event_time", "date"),
        ("received_at", "date"),
        ("other", "text"),
    ] {
        assert_eq!(ty(k), want, "{k}: {}", p[k]);
    }
    assert_eq!(p["s"]["ignore_above"], 8191);
    assert!(p["event_id"].get("ignore_above").is_none());
    assert_eq!(p["money"]["scaling_factor"], 100.0);
    assert_eq!(p["r"]["properties"]["x"]["type"], "long");
    assert_eq!(
        p["r"]["properties"]["inner"]["properties"]["y"]["type"],
        "boolean"
    );
    assert!(p.get("@timestamp").is_none());
    let m = template::mappings(all_types().fields(), JsonMapping::FlatObject, true);
    assert_eq!(m["properties"]["j"]["type"], "flat_object");
    assert_eq!(m["properties"]["@timestamp"]["type"], "date");
}

#[test]
fn templates_cover_every_table_and_the_dead_letters_without_ties() {
    let mut catalog = Catalog::new();
    for (ns, ty) in [
        ("events", "page_view"),
        ("events", "transaction"),
        ("Shop", "order"),
    ] {
        catalog.insert(
            (ns.into(), ty.into()),
            std::sync::Arc::new(all_types().fields().to_vec()),
        );
    }
    let cfg = OpenSearchConfig {
        composed_of: vec!["ism-30d".into()],
        ..OpenSearchConfig::default()
    };
    let t = template::templates(&cfg, &catalog);
    assert_eq!(t.len(), 4);
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"evlog-shop-order"), "{names:?}");
    assert!(names.contains(&"evlog-dead-letters"), "{names:?}");
    let mut prios: Vec<u64> = t
        .iter()
        .map(|t| t.body["priority"].as_u64().unwrap())
        .collect();
    prios.sort();
    prios.dedup();
    assert_eq!(prios, [200, 201, 202, 203], "distinct priorities");
    let tx = t
        .iter()
        .find(|t| t.name == "evlog-events-transaction")
        .unwrap();
    assert_eq!(tx.body["index_patterns"], json!(["events-transaction-*"]));
    assert_eq!(tx.body["composed_of"], json!(["ism-30d"]));
    assert_eq!(
        tx.body["template"]["mappings"]["properties"]["i"]["type"],
        "long"
    );
    assert!(tx.body.get("data_stream").is_none());
    let dl = t.iter().find(|t| t.name == "evlog-dead-letters").unwrap();
    assert_eq!(dl.body["index_patterns"], json!(["*-_evlog_rejected"]));
    let dp = &dl.body["template"]["mappings"]["properties"];
    assert_eq!(dp["raw"]["type"], "text");
    assert_eq!(dp["rejected_at"]["type"], "date");
    assert_eq!(dp["reason"]["type"], "keyword");
    assert!(dp.get("other").is_none(), "{dp}");
    // More specific patterns get higher priorities.
    let mut by_prio: Vec<(u64, usize)> = t
        .iter()
        .map(|t| {
            let pattern = t.body["index_patterns"][0].as_str().unwrap();
            (
                t.body["priority"].as_u64().unwrap(),
                IndexPattern::specificity(pattern),
            )
        })
        .collect();
    by_prio.sort();
    assert!(by_prio.windows(2).all(|w| w[0].1 <= w[1].1), "{by_prio:?}");
    // A data stream's template declares it.
    let cfg = OpenSearchConfig {
        index: "logs-{namespace}-{type}".into(),
        data_stream: true,
        install_templates: true,
        ..OpenSearchConfig::default()
    };
    cfg.validate(false).expect("valid");
    let t = template::templates(&cfg, &catalog);
    let ds = t
        .iter()
        .find(|t| t.name == "evlog-events-page_view")
        .unwrap();
    assert_eq!(ds.body["data_stream"], json!({}));
    assert_eq!(ds.body["index_patterns"], json!(["logs-events-page_view"]));
    assert_eq!(
        ds.body["template"]["mappings"]["properties"]["@timestamp"]["type"],
        "date"
    );
}

#[test]
fn a_bad_ca_file_is_a_startup_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for path in [dir.path().join("missing.pem"), empty] {
        let cfg = OpenSearchConfig {
            urls: vec!["https://127.0.0.1:9200".into()],
            ca_file: Some(path),
            ..OpenSearchConfig::default()
        };
        let e = Service::new(&cfg, &RetryConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink.opensearch.ca_file"), "{e}");
    }
}
