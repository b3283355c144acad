//! The OpenSearch sink against a real server: osmem-server (an in-memory OpenSearch from PyPI,
//! installed by `bash tests/suites/50-opensearch.sh setup`) on a loopback port, behind the
//! fault-injecting proxy of `tests/src/opensearch/`. Documents are checked with the official
//! client, opensearch-py (`tests/opensearch/check_docs.py`): there by id, exactly once, and
//! searchable.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use evlog_core::config::{RetryConfig, RoutingConfig};
use evlog_core::routing::Router;
use evlog_core::schema::{RowMeta, SchemaRegistry};
use evlog_core::sink::opensearch::{catalog, OpenSearchAuth, OpenSearchConfig, OpenSearchSink};
use evlog_core::sink::{Batch, BatchOutcome, EncodedRow, Sink};
use evlog_core::{Config, EventInput, Pipeline};
use evlog_tests::opensearch::{repo_root, venv_python, Fault, FaultProxy, ItemFault, Osmem};
use serde_json::{json, Value};

// 2026-12-02T10:00:00Z.
const DAY0: i64 = 1_796_205_600_000_000;
const INDEX0: &str = "events-page_view-2026.12.02";
const INDEX1: &str = "events-page_view-2026.12.03";

fn schema_dir() -> std::path::PathBuf {
    repo_root().join("core/tests/data/schemas")
}

fn registry() -> SchemaRegistry {
    SchemaRegistry::load_dir(&schema_dir()).expect("schemas")
}

fn retry() -> RetryConfig {
    RetryConfig {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
        max_attempts: 6,
    }
}

fn config(urls: Vec<String>) -> OpenSearchConfig {
    OpenSearchConfig {
        urls,
        install_templates: true,
        timeout: Duration::from_secs(5),
        ..OpenSearchConfig::default()
    }
}

fn sink(cfg: &OpenSearchConfig) -> OpenSearchSink {
    let router = Router::new(&RoutingConfig::default());
    let catalog = Arc::new(catalog(&registry(), &router));
    OpenSearchSink::new(cfg, &retry(), catalog).expect("sink")
}

/// `n` page views on `day` (0 or 1), ids `<prefix>-<i>`, as the rows the pipeline makes.
fn batch(prefix: &str, n: usize, day: i64) -> Batch {
    let reg = registry();
    let schema = reg.get("events", "page_view").expect("page_view");
    let time = DAY0 + day * 86_400_000_000;
    let rows: Vec<EncodedRow> = (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let event =
                json!({"url": format!("/p/{prefix}/{i}"), "user_id": i, "tags": ["a", "b"]});
            let Value::Object(event) = event else {
                unreachable!()
            };
            let meta = RowMeta {
                event_id: id.clone(),
                event_time: time,
                received_at: time + 1,
            };
            EncodedRow {
                insert_id: id,
                json: schema.to_row(event, &meta).expect("row").json,
            }
        })
        .collect();
    Batch {
        destination: Router::new(&RoutingConfig::default()).route("events", "page_view", time),
        bytes: rows.iter().map(|r| r.json.len()).sum(),
        rows,
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn deliver_one(s: &mut OpenSearchSink, b: Batch) -> BatchOutcome {
    s.deliver(vec![b]).pop().expect("one outcome")
}

/// Runs the opensearch-py checks of `spec` against `url`; panics with their output if one fails.
fn check(url: &str, spec: Value) {
    let out = std::process::Command::new(venv_python())
        .arg(repo_root().join("tests/opensearch/check_docs.py"))
        .arg(url)
        .arg(spec.to_string())
        .output()
        .expect("run check_docs.py with .venv's python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "opensearch-py checks failed:\n{text}");
}

fn start() -> (Osmem, FaultProxy) {
    let os = Osmem::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(os.url()).expect("proxy");
    (os, proxy)
}

#[test]
fn documents_land_by_id_in_dated_indices_with_the_generated_mapping_and_are_searchable() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    let outcomes = s.deliver(vec![batch("a", 300, 0), batch("b", 200, 1)]);
    for o in &outcomes {
        assert!(o.failed.is_empty() && o.rejected.is_empty(), "{o:?}");
    }
    assert_eq!(outcomes[0].delivered + outcomes[1].delivered, 500);
    // Templates went first, one per table and one for dead letters.
    let reqs = proxy.requests();
    let puts: Vec<&str> = reqs
        .iter()
        .filter(|(m, _, _)| m == "PUT")
        .map(|(_, p, _)| p.as_str())
        .collect();
    assert!(
        puts.contains(&"/_index_template/evlog-events-page_view"),
        "{puts:?}"
    );
    assert!(
        puts.contains(&"/_index_template/evlog-dead-letters"),
        "{puts:?}"
    );
    assert_eq!(reqs[0].0, "PUT", "templates before the first document");
    // Every _bulk: gzip, NDJSON, create actions with the event ids.
    let bulks = proxy.bulks();
    assert!(bulks.iter().all(|b| b.gzip), "{bulks:?}");
    assert!(bulks
        .iter()
        .all(|b| b.content_type.as_deref() == Some("application/x-ndjson")));
    assert!(bulks.iter().any(|b| b.indices.iter().all(|i| i == INDEX1)));
    // The index got the template's mapping, not dynamic guesses.
    let mapping: Value = reqwest_get(&format!("{}/{INDEX0}/_mapping", os.url()));
    let props = &mapping[INDEX0]["mappings"]["properties"];
    assert_eq!(props["user_id"]["type"], "long", "{mapping}");
    assert_eq!(props["url"]["type"], "keyword");
    assert_eq!(props["event_time"]["type"], "date");
    check(
        os.url(),
        json!([
            {"index": INDEX0, "ids": ids("a", 300)},
            {"index": INDEX1, "ids": ids("b", 200)},
            {"index": INDEX0, "term": {"url": "/p/a/7"}, "hits": 1, "ids": ["a-7"]},
            {"index": "events-page_view-*", "term": {"tags": "b"}, "hits": 500},
            {"index": INDEX1, "id": "b-5", "source": {"user_id": 5, "tags": ["a", "b"],
                "event_time": "2026-12-03T10:00:00.000000Z"}},
        ]),
    );
}

/// A GET answer as JSON (plain HTTP/1.1 on loopback).
fn reqwest_get(url: &str) -> Value {
    let out = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            url,
        ])
        .output()
        .expect("python");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn an_item_answering_429_is_sent_again_alone() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    proxy.fail_item(
        "r-3",
        ItemFault {
            status: 429,
            times: 2,
            forward: false,
        },
    );
    let o = deliver_one(&mut s, batch("r", 50, 0));
    assert_eq!(
        (o.delivered, o.failed.len(), o.rejected.len()),
        (50, 0, 0),
        "{o:?}"
    );
    assert_eq!(o.retried, 2, "one document, sent twice more");
    assert_eq!(o.attempt_errors, ["item_429", "item_429"]);
    let bulks = proxy.bulks();
    assert_eq!(bulks.len(), 3, "{bulks:?}");
    assert_eq!(bulks[0].ids.len(), 50);
    assert_eq!(bulks[1].ids, ["r-3"], "resent alone");
    assert_eq!(bulks[2].ids, ["r-3"]);
    check(os.url(), json!([{"index": INDEX0, "ids": ids("r", 50)}]));
}

#[test]
fn an_item_stored_but_answered_503_meets_409_on_resend_and_counts_delivered() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    proxy.fail_item(
        "c-1",
        ItemFault {
            status: 503,
            times: 1,
            forward: true,
        },
    );
    let o = deliver_one(&mut s, batch("c", 10, 0));
    assert_eq!((o.delivered, o.failed.len()), (10, 0), "{o:?}");
    assert_eq!(o.attempt_errors, ["item_5xx"]);
    assert_eq!(proxy.bulks()[1].ids, ["c-1"]);
    check(os.url(), json!([{"index": INDEX0, "ids": ids("c", 10)}]));
}

#[test]
fn a_document_refused_for_its_content_is_rejected_with_the_reason_and_dead_lettered() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    let mut b = batch("m", 5, 0);
    // A row whose user_id does not fit the template's `long` (a row another writer made, or a
    // mapping that drifted from the schema).
    b.rows[2].json = b.rows[2]
        .json
        .replace("\"user_id\":2", "\"user_id\":\"two\"");
    let o = deliver_one(&mut s, b);
    assert_eq!(
        (o.delivered, o.failed.len(), o.rejected.len()),
        (4, 0, 1),
        "{o:?}"
    );
    assert!(o.attempt_errors.is_empty(), "not retried: {o:?}");
    let r = &o.rejected[0];
    assert_eq!(r.reason, "opensearch_refused");
    assert_eq!(r.event_id, "m-2");
    assert_eq!(r.field.as_deref(), Some("user_id"));
    assert!(r.error.contains("mapper_parsing_exception"), "{}", r.error);
    assert_eq!(
        (r.dataset.as_str(), r.type_name.as_str()),
        ("events", "page_view")
    );
    assert_eq!(r.event_time, Some(DAY0));
    let dl = s.store_dead_letters(o.rejected.clone());
    assert_eq!(dl.stored.len(), 1, "{dl:?}");
    assert!(dl.failed.is_empty() && dl.refused.is_empty());
    check(
        os.url(),
        json!([
            {"index": INDEX0, "ids": ["m-0", "m-1", "m-3", "m-4"]},
            {"index": "events-_evlog_rejected", "ids": ["m-2"]},
            {"index": "events-_evlog_rejected", "id": "m-2",
             "source": {"reason": "opensearch_refused", "field": "user_id", "type": "page_view"}},
            {"index": "events-_evlog_rejected", "term": {"reason": "opensearch_refused"}, "hits": 1},
        ]),
    );
}

#[test]
fn whole_request_503_and_429_are_retried() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    proxy.push(Fault::Status(503));
    proxy.push(Fault::Status(429));
    let o = deliver_one(&mut s, batch("w", 20, 0));
    assert_eq!((o.delivered, o.failed.len()), (20, 0), "{o:?}");
    assert_eq!(o.attempt_errors, ["http_5xx", "http_429"]);
    assert_eq!(o.retried, 40);
    check(os.url(), json!([{"index": INDEX0, "ids": ids("w", 20)}]));
}

#[test]
fn dropped_connections_and_slow_answers_are_retried_and_nothing_is_stored_twice() {
    let (os, proxy) = start();
    let mut cfg = config(vec![proxy.url()]);
    cfg.timeout = Duration::from_millis(500);
    let mut s = sink(&cfg);
    proxy.push(Fault::Drop);
    proxy.push(Fault::DropAfterForward);
    proxy.push(Fault::Slow(Duration::from_millis(1500)));
    let o = deliver_one(&mut s, batch("d", 30, 0));
    assert_eq!((o.delivered, o.failed.len()), (30, 0), "{o:?}");
    assert_eq!(o.attempt_errors.len(), 3, "{o:?}");
    assert!(o.attempt_errors.contains(&"timeout"), "{o:?}");
    // The slow request reaches osmem after its timeout: wait until it has, by its effect.
    check(os.url(), json!([{"index": INDEX0, "ids": ids("d", 30)}]));
}

#[test]
fn out_of_attempts_rows_fail_with_the_error_and_go_through_once_the_node_is_back() {
    let (os, proxy) = start();
    let mut s = sink(&config(vec![proxy.url()]));
    let _ = deliver_one(&mut s, batch("warm", 1, 0)); // templates in
    proxy.always(Some(Fault::Status(503)));
    let o = deliver_one(&mut s, batch("f", 10, 0));
    assert_eq!((o.delivered, o.failed.len()), (0, 10), "{o:?}");
    assert_eq!(o.attempt_errors.len(), 6, "retry.max_attempts");
    let e = o.error.expect("error");
    assert_eq!(e.kind(), "http_5xx");
    assert!(
        e.to_string().contains("unavailable_shards_exception"),
        "{e}"
    );
    // A probe makes one attempt.
    s.set_probe(true);
    let o = deliver_one(&mut s, batch("f", 10, 0));
    assert_eq!(o.attempt_errors.len(), 1);
    s.set_probe(false);
    proxy.always(None);
    let o = deliver_one(&mut s, batch("f", 10, 0));
    assert_eq!(o.delivered, 10, "{o:?}");
    let mut all = ids("f", 10);
    all.push("warm-0".into());
    check(os.url(), json!([{"index": INDEX0, "ids": all}]));
}

/// A loopback port nothing listens on.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_node_that_refuses_connections_or_answers_5xx_fails_over_to_the_next() {
    let (os, proxy) = start();
    // Connection refused: skipped at once, counted.
    let mut s = sink(&config(vec![closed_port_url(), proxy.url()]));
    let o = deliver_one(&mut s, batch("n", 10, 0));
    assert_eq!(o.delivered, 10, "{o:?}");
    assert!(o.attempt_errors.contains(&"connect"), "{o:?}");
    // A node answering 503: the retry goes to the next node.
    let broken = FaultProxy::start(os.url()).expect("proxy");
    broken.always(Some(Fault::Status(503)));
    let mut s = sink(&config(vec![broken.url(), proxy.url()]));
    let o = deliver_one(&mut s, batch("o", 10, 0));
    assert_eq!(o.delivered, 10, "{o:?}");
    assert!(o.attempt_errors.contains(&"http_5xx"), "{o:?}");
    assert!(!proxy.bulks().is_empty());
    let mut all = ids("n", 10);
    all.extend(ids("o", 10));
    check(os.url(), json!([{"index": INDEX0, "ids": all}]));
}

#[test]
fn each_auth_method_sends_its_header_and_gzip_can_be_off() {
    let (os, proxy) = start();
    let cases = [
        (OpenSearchAuth::Basic, "Basic ZXZsb2c6czNjcmV0"), // evlog:s3cret
        (OpenSearchAuth::ApiKey, "ApiKey a2V5aWQ6a2V5"),
        (OpenSearchAuth::Bearer, "Bearer tok-123"),
    ];
    for (i, (auth, want)) in cases.iter().enumerate() {
        let mut cfg = config(vec![proxy.url()]);
        cfg.auth = *auth;
        cfg.user = Some("evlog".into());
        cfg.password = Some("s3cret".into());
        cfg.api_key = Some("a2V5aWQ6a2V5".into());
        cfg.token = Some("tok-123".into());
        cfg.gzip = i != 1;
        let mut s = sink(&cfg);
        let before = proxy.requests().len();
        let o = deliver_one(&mut s, batch(&format!("auth{i}"), 3, 0));
        assert_eq!(o.delivered, 3, "{o:?}");
        let reqs = proxy.requests();
        assert!(reqs.len() > before);
        for (m, p, a) in &reqs[before..] {
            assert_eq!(a.as_deref(), Some(*want), "{m} {p}");
        }
        let last = proxy.bulks().pop().expect("a bulk");
        assert_eq!(last.gzip, i != 1);
    }
    check(os.url(), json!([{"index": INDEX0, "count": 9}]));
}

#[test]
fn the_sdk_delivers_to_opensearch_and_dead_letters_into_the_dead_letter_index() {
    let (os, proxy) = start();
    let toml = format!(
        r#"
        [sink]
        kind = "opensearch"
        [sink.opensearch]
        urls = ["{}"]
        install_templates = true
        [batch]
        max_rows = 100
        max_age = "20ms"
        [retry]
        base = "5ms"
        cap = "50ms"
        [schemas]
        dir = {:?}
        "#,
        proxy.url(),
        schema_dir()
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).expect("config")).expect("pipeline");
    proxy.fail_item(
        "sdk-7",
        ItemFault {
            status: 429,
            times: 1,
            forward: false,
        },
    );
    for i in 0..500 {
        let id = format!("sdk-{i}");
        let body = format!(
            r#"{{"user_id":{i},"amount":"{i}.25","currency":"EUR","items":[{{"sku":"s{i}","qty":1}}]}}"#
        );
        let mut ev = EventInput::new("events", "transaction", body);
        ev.time = Some(DAY0);
        ev.id = Some(&id);
        p.log(ev).expect("accepted");
    }
    let mut ev = EventInput::new("events", "no_such_table", r#"{"x":1}"#.to_string());
    ev.id = Some("sdk-unknown");
    p.log(ev).expect("accepted");
    assert!(p.flush(Duration::from_secs(60)), "flush: {:?}", p.stats());
    let st = p.stats();
    assert_eq!(st.delivered, 500, "{st:?}");
    assert_eq!(st.rejected.get("unknown_table").copied(), Some(1), "{st:?}");
    assert!(st.retried >= 1, "{st:?}");
    let all: HashSet<String> = proxy.bulks().into_iter().flat_map(|b| b.ids).collect();
    assert!(
        all.contains("sdk-unknown"),
        "the dead letter went through _bulk too"
    );
    check(
        os.url(),
        json!([
            {"index": "events-transaction-2026.12.02", "ids": ids("sdk", 500)},
            {"index": "events-transaction-2026.12.02", "term": {"currency": "EUR"}, "hits": 500},
            {"index": "events-transaction-2026.12.02", "term": {"amount": "42.25"}, "hits": 1},
            {"index": "events-transaction-2026.12.02", "term": {"items.sku": "s42"}, "hits": 1, "ids": ["sdk-42"]},
            {"index": "events-transaction-2026.12.02", "id": "sdk-42", "source": {"amount": "42.25"}},
            {"index": "events-_evlog_rejected", "id": "sdk-unknown",
             "source": {"reason": "unknown_table", "type": "no_such_table"}},
        ]),
    );
}

#[test]
fn json_and_geography_columns_are_indexed_as_values_and_a_mapping_conflict_is_dead_lettered() {
    let (os, proxy) = start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
    std::fs::write(
        dir.path().join("app/signal.json"),
        r#"[
          {"name": "attrs", "type": "JSON"},
          {"name": "where", "type": "GEOGRAPHY"},
          {"name": "price", "type": "NUMERIC", "precision": "10", "scale": "2"},
          {"name": "parts", "type": "RECORD", "mode": "REPEATED",
           "fields": [{"name": "meta", "type": "JSON"}]}
        ]"#,
    )
    .expect("schema");
    let toml = format!(
        r#"
        [sink]
        kind = "opensearch"
        [sink.opensearch]
        urls = ["{}"]
        install_templates = true
        index = "{{namespace}}-{{type}}"
        [batch]
        max_age = "20ms"
        [retry]
        base = "5ms"
        cap = "50ms"
        [schemas]
        dir = {:?}
        "#,
        proxy.url(),
        dir.path()
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).expect("config")).expect("pipeline");
    let events = [
        (
            "s1",
            r#"{"attrs":{"color":"red","n":9007199254740993},"where":"POINT(2.35 48.85)","price":"19.99","parts":[{"meta":{"k":"a"}},{"meta":{"k":"b"}}]}"#,
        ),
        (
            "s2",
            r#"{"attrs":{"color":"blue"},"where":{"type":"Point","coordinates":[13.4,52.5]},"price":5}"#,
        ),
    ];
    for (id, body) in events {
        let mut ev = EventInput::new("app", "signal", body.to_string());
        ev.id = Some(id);
        p.log(ev).expect("accepted");
    }
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    // Valid JSON for BigQuery, but `attrs` is an object in the index now: OpenSearch refuses it.
    // (2^53 + 1 above: a JSON value's numbers reach OpenSearch digit for digit.)
    let mut ev = EventInput::new("app", "signal", r#"{"attrs":"just text"}"#.to_string());
    ev.id = Some("s3");
    p.log(ev).expect("accepted");
    assert!(p.flush(Duration::from_secs(30)), "{:?}", p.stats());
    let st = p.stats();
    assert_eq!(st.delivered, 2, "{st:?}");
    assert_eq!(
        st.rejected.get("opensearch_refused").copied(),
        Some(1),
        "{st:?}"
    );
    let mapping = reqwest_get(&format!("{}/app-signal/_mapping", os.url()));
    let props = &mapping["app-signal"]["mappings"]["properties"];
    assert_eq!(props["where"]["type"], "geo_shape", "{mapping}");
    assert_eq!(props["price"]["type"], "scaled_float", "{mapping}");
    check(
        os.url(),
        json!([
            {"index": "app-signal", "ids": ["s1", "s2"]},
            {"index": "app-signal", "term": {"attrs.color": "blue"}, "hits": 1, "ids": ["s2"]},
            {"index": "app-signal", "term": {"parts.meta.k": "b"}, "hits": 1, "ids": ["s1"]},
            {"index": "app-signal", "id": "s1", "source": {
                "attrs": {"color": "red", "n": 9007199254740993u64},
                "where": "POINT(2.35 48.85)"}},
            {"index": "app-signal", "id": "s2", "source": {
                "where": {"type": "Point", "coordinates": [13.4, 52.5]}, "price": "5"}},
            {"index": "app-_evlog_rejected", "id": "s3", "source": {
                "reason": "opensearch_refused", "field": "attrs", "type": "signal"}},
        ]),
    );
}

/// Runs openssl with `args`; panics with its output when it fails.
fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn https_nodes_are_trusted_through_ca_file_and_refused_without_it() {
    let (os, _) = start();
    // A CA, and a certificate for 127.0.0.1 it signed.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=evlog test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, d);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "node.key", "-out", "node.csr"]);
    openssl(&csr, d);
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "node.pem",
        ],
        d,
    );
    let tls = FaultProxy::start_tls(os.url(), &d.join("node.pem"), &d.join("node.key"))
        .expect("TLS proxy");
    assert!(tls.url().starts_with("https://127.0.0.1:"));
    let mut cfg = config(vec![tls.url()]);
    cfg.ca_file = Some(d.join("ca.pem"));
    let mut s = sink(&cfg);
    let o = deliver_one(&mut s, batch("tls", 5, 0));
    assert_eq!(o.delivered, 5, "{o:?}");
    // Without the CA the node's certificate is not trusted: failed, not retried forever.
    let mut cfg = config(vec![tls.url()]);
    cfg.install_templates = false;
    let mut s = sink(&cfg);
    let o = deliver_one(&mut s, batch("untrusted", 5, 0));
    assert_eq!((o.delivered, o.failed.len()), (0, 5), "{o:?}");
    assert_eq!(o.attempt_errors.len(), 6, "retry.max_attempts: {o:?}");
    let e = o.error.expect("error").to_string();
    assert!(e.contains("https://127.0.0.1"), "{e}");
    check(os.url(), json!([{"index": INDEX0, "ids": ids("tls", 5)}]));
}
