//! Several destinations behind one collector: one write-ahead-log cursor and set of streamers
//! each, so a destination that is down never holds the others back; routes decided at ingest;
//! counters per destination.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn post_batch(url: &str, events: &[Value]) {
    let r = client()
        .post(format!("{url}/v1/batch"))
        .json(&events)
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().expect("json");
    assert_eq!(v["refused"], 0, "{v}");
}

fn txn_id(id: &str, user: u64) -> Value {
    json!({"namespace": "events", "type": "transaction", "id": id,
        "event": {"user_id": user, "amount": "9.99", "currency": "EUR"}})
}

fn ids_in(dir: &std::path::Path) -> BTreeSet<String> {
    stored_ids(dir).into_iter().collect()
}

fn files_ending(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_destination_down_never_holds_back_another_and_drains_when_back() {
    let port = free_port();
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    let tail = format!(
        r#"
[destinations.good]
kind = "file"
dir = {good:?}
[destinations.later]
kind = "forward"
url = "http://127.0.0.1:{port}"
timeout = "2s"

[[routes]]
tables = ["events.*"]
to = ["good", "later"]
"#
    );
    let text = destinations_text(root.path(), "", &tail);
    let wal = root.path().join("wal");
    let mut a = Server::start_text(root, &text, "127.0.0.1:0");

    let mut want = BTreeSet::new();
    for round in 0..6 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                let id = format!("e-{round}-{i}");
                want.insert(id.clone());
                txn_id(&id, i)
            })
            .collect();
        post_batch(&a.url, &events);
    }
    // "good" gets everything while "later" fails.
    assert!(
        wait_for(Duration::from_secs(20), || ids_in(&good) == want),
        "good has {} of {}",
        ids_in(&good).len(),
        want.len()
    );
    let m = a.metrics();
    assert_eq!(
        metric(&m, "evlog_events_delivered_total{destination=\"good\"}"),
        Some(300.0)
    );
    assert_eq!(
        metric(&m, "evlog_events_delivered_total{destination=\"later\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "evlog_events_accepted_total{destination=\"later\"}"),
        Some(300.0)
    );
    assert_eq!(metric(&m, "evlog_events_accepted_total"), Some(300.0));
    assert_eq!(metric(&m, "evlog_events_fanned_out_total"), Some(300.0));
    // Its sink reports once its retry budget is spent.
    let errors = "evlog_sink_errors_total{destination=\"later\",sink=\"forward\"";
    assert!(
        wait_for(Duration::from_secs(20), || a
            .metrics()
            .lines()
            .any(|l| l.starts_with(errors))),
        "{}",
        a.metrics()
    );
    // Ready: one destination failing does not stop the others; it is named.
    let r = client().get(format!("{}/readyz", a.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert!(v["failing"]["later"].is_string(), "{v}");
    // The log keeps what "later" has not committed; "good" has its own offsets beside it.
    assert!(files_ending(&wal, ".evs") > 0);
    assert!(files_ending(&wal, ".good.offset") > 0);

    // "later" comes up: a collector on its port. What waited is delivered, once.
    let b_root = tempfile::tempdir().unwrap();
    let b_text = config_text(b_root.path(), "", "");
    let b_data = b_root.path().join("data");
    let mut b = Server::start_text(b_root, &b_text, &format!("127.0.0.1:{port}"));
    assert!(
        wait_for(Duration::from_secs(30), || ids_in(&b_data) == want),
        "later has {} of {}",
        ids_in(&b_data).len(),
        want.len()
    );
    assert!(
        wait_for(Duration::from_secs(10), || files_ending(&wal, ".evs") == 0),
        "segments go once both destinations committed them"
    );
    assert_eq!(files_ending(&wal, ".offset"), 0);
    let m = a.metrics();
    for d in ["good", "later"] {
        let delivered = format!("evlog_events_delivered_total{{destination=\"{d}\"}}");
        assert_eq!(metric(&m, &delivered), Some(300.0), "{d}");
    }
    assert_eq!(metric(&m, "evlog_events_delivered_total"), Some(600.0));
    assert_eq!(stored_ids(&good).len(), 300, "once each");
    a.stop();
    b.stop();
}

#[test]
fn routes_decide_at_ingest_and_what_none_takes_is_counted() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    let tail = format!(
        r#"
[destinations.one]
kind = "file"
dir = {one:?}
[destinations.two]
kind = "file"
dir = {two:?}

[[routes]]
tables = ["events.transaction"]
to = ["one"]
where = {{ field = "user_id", in = [1, 2] }}
[[routes]]
tables = ["events.*"]
to = ["two"]
sample = 0.5
"#
    );
    let text = destinations_text(root.path(), "", &tail);
    let mut s = Server::start_text(root, &text, "127.0.0.1:0");
    let events: Vec<Value> = (0..100).map(|i| txn_id(&format!("r-{i}"), i % 4)).collect();
    post_batch(&s.url, &events);
    // An invalid event both routes would take: a dead letter in each destination's data.
    let r = client()
        .post(format!("{}/v1/events", s.url))
        .json(
            &json!({"namespace": "events", "type": "transaction", "id": "bad-1",
            "event": {"user_id": 1, "amount": "lots"}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let to_one: BTreeSet<String> = (0..100)
        .filter(|i| i % 4 == 1 || i % 4 == 2)
        .map(|i| format!("r-{i}"))
        .collect();
    let to_two: BTreeSet<String> = (0..100)
        .map(|i| format!("r-{i}"))
        .filter(|id| evlog_core::destinations::sampled(id, 0.5))
        .collect();
    let unrouted = (0..100)
        .map(|i| format!("r-{i}"))
        .filter(|id| !to_one.contains(id) && !to_two.contains(id))
        .count() as f64;
    assert!(wait_for(Duration::from_secs(20), || ids_in(&one) == to_one
        && ids_in(&two) == to_two));
    let bad_in_two = evlog_core::destinations::sampled("bad-1", 0.5);
    assert!(wait_for(Duration::from_secs(20), || {
        dead_letters(&one).len() == 1 && dead_letters(&two).len() == usize::from(bad_in_two)
    }));
    let m = s.metrics();
    assert_eq!(
        metric(&m, "evlog_events_dropped_total{reason=\"unrouted\"}"),
        Some(unrouted)
    );
    assert_eq!(metric(&m, "evlog_events_accepted_total"), Some(101.0));
    assert_eq!(
        metric(&m, "evlog_events_delivered_total{destination=\"one\"}"),
        Some(to_one.len() as f64)
    );
    s.stop();
}

#[test]
fn records_written_before_destinations_go_to_default() {
    let root = tempfile::tempdir().unwrap();
    let wal = root.path().join("wal");
    // A record as an earlier collector wrote it for /v1/rows: JSON, no destinations.
    let mut log = evlog_core::spool::Spool::open(evlog_core::spool::SpoolOptions {
        dir: wal.clone(),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        fsync: false,
    })
    .unwrap();
    let row = json!({"event_id": "old-1", "event_time": "2026-11-22T10:00:00Z",
        "received_at": "2026-11-22T10:00:00Z", "other": null, "user_id": 1});
    let record = json!({"boot": 1, "batches": [{"dataset": "events", "table": "transaction",
        "partitioned": false, "day": "20261122", "rows": [{"id": "old-1", "json": row}]}]});
    log.append(&[serde_json::to_vec(&record).unwrap().as_slice()])
        .unwrap();
    drop(log);
    let (default, other) = (root.path().join("default"), root.path().join("other"));
    let tail = format!(
        r#"
[destinations.default]
kind = "file"
dir = {default:?}
[destinations.other]
kind = "file"
dir = {other:?}

[[routes]]
tables = ["*"]
to = ["default", "other"]
"#
    );
    let text = destinations_text(root.path(), "", &tail);
    let mut s = Server::start_text(root, &text, "127.0.0.1:0");
    post_batch(&s.url, &[txn_id("new-1", 1)]);
    let old_and_new: BTreeSet<String> = ["old-1", "new-1"].map(String::from).into();
    assert!(wait_for(Duration::from_secs(20), || ids_in(&default)
        == old_and_new
        && ids_in(&other).contains("new-1")));
    assert_eq!(ids_in(&other).len(), 1, "the old record is default's only");
    assert!(wait_for(Duration::from_secs(10), || files_ending(
        &wal, ".evs"
    ) == 0));
    let m = s.metrics();
    // Replayed from an earlier process: accepted by this one.
    assert_eq!(
        metric(&m, "evlog_events_accepted_total{destination=\"default\"}"),
        Some(2.0)
    );
    s.stop();
}

/// `[[transforms]]` in the collector: for every copy (the secret goes nowhere) and for one
/// destination's copy (hashed coupon, masked card), on events (`/v1/batch`) and on rows an SDK
/// forwarded (`/v1/rows`); a copy the rules make invalid is that destination's dead letter.
#[test]
fn transforms_differ_per_destination_on_events_and_forwarded_rows() {
    let root = tempfile::tempdir().unwrap();
    let (full, hashed) = (root.path().join("full"), root.path().join("hashed"));
    let tail = format!(
        r#"
[destinations.full]
kind = "file"
dir = {full:?}
[destinations.hashed]
kind = "file"
dir = {hashed:?}

[[routes]]
tables = ["events.*"]
to = ["full", "hashed"]

[[transforms]]
tables = ["events.transaction"]
drop = ["secret"]
[[transforms]]
tables = ["events.transaction"]
destinations = ["hashed"]
hash = ["coupon"]
hash_key = "collector-test-key-0123"
mask = {{ "card" = 4 }}
[[transforms]]
tables = ["events.page_view"]
destinations = ["hashed"]
drop = ["url"]
"#
    );
    let text = destinations_text(root.path(), "", &tail);
    let mut s = Server::start_text(root, &text, "127.0.0.1:0");
    let txn = |id: &str| {
        json!({"namespace": "events", "type": "transaction", "id": id,
            "event": {"user_id": 7, "coupon": "WINTER", "secret": "s3cr3t",
                      "card": "4111111111111111"}})
    };
    post_batch(&s.url, &[txn("ev-1"), txn("ev-2")]);
    // A page view whose hashed copy loses its REQUIRED url: 422 naming that copy.
    let r = client()
        .post(format!("{}/v1/events", s.url))
        .json(
            &json!({"namespace": "events", "type": "page_view", "id": "pv-1",
            "event": {"url": "/a"}}),
        )
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("\\\"hashed\\\""), "{body}");

    // The same transaction through an SDK in forward mode: rows, transformed by the collector.
    let sdk = evlog_core::Pipeline::new(
        evlog_core::Config::from_toml_str(&format!(
            "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = {:?}\n[schemas]\ndir = {:?}\n",
            s.url,
            schemas_dir()
        ))
        .unwrap(),
    )
    .unwrap();
    let mut e = evlog_core::EventInput::new(
        "events",
        "transaction",
        r#"{"user_id":7,"coupon":"WINTER","secret":"s3cr3t","card":"4111111111111111"}"#,
    );
    e.id = Some("row-1");
    sdk.log(e).unwrap();
    assert!(sdk.flush(Duration::from_secs(20)));

    let want: BTreeSet<String> = ["ev-1", "ev-2", "row-1"].map(String::from).into();
    let mut with_pv = want.clone();
    with_pv.insert("pv-1".into());
    assert!(
        wait_for(Duration::from_secs(30), || ids_in(&full) == with_pv
            && ids_in(&hashed) == want
            && !dead_letters(&hashed).is_empty()),
        "full {:?} hashed {:?}",
        ids_in(&full),
        ids_in(&hashed)
    );
    let txns = |dir: &std::path::Path| -> Vec<String> {
        rows(dir)
            .into_iter()
            .filter(|(name, _)| name.starts_with("transaction"))
            .flat_map(|(_, r)| r)
            .map(|r| r.to_string())
            .collect()
    };
    let (f, h) = (txns(&full), txns(&hashed));
    assert_eq!((f.len(), h.len()), (3, 3));
    for row in &f {
        assert!(!row.contains("s3cr3t"), "{row}");
        assert!(
            row.contains("WINTER") && row.contains("4111111111111111"),
            "{row}"
        );
    }
    let mut coupons = BTreeSet::new();
    for row in &h {
        assert!(!row.contains("s3cr3t") && !row.contains("WINTER"), "{row}");
        assert!(
            !row.contains("4111111111111111") && row.contains("************1111"),
            "{row}"
        );
        let v: Value = serde_json::from_str(row).unwrap();
        coupons.insert(v["coupon"].as_str().unwrap().to_owned());
    }
    // Events and forwarded rows hash alike: one key, one HMAC.
    assert_eq!(coupons.len(), 1, "{coupons:?}");
    assert_eq!(coupons.iter().next().unwrap().len(), 64);

    let dead = dead_letters(&hashed);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event_id"], "pv-1", "{dead:?}");
    let m = s.metrics();
    // Four events (two transactions, the page view, the forwarded row), each a copy per
    // destination: `accepted` counts the events, the second copies are fanned out.
    assert_eq!(metric(&m, "evlog_events_accepted_total"), Some(4.0), "{m}");
    assert_eq!(
        metric(&m, "evlog_events_fanned_out_total"),
        Some(4.0),
        "{m}"
    );
    for d in ["full", "hashed"] {
        let accepted = format!("evlog_events_accepted_total{{destination=\"{d}\"}}");
        assert_eq!(metric(&m, &accepted), Some(4.0), "{d}: {m}");
    }
    assert_eq!(
        metric(
            &m,
            "evlog_events_rejected_total{destination=\"hashed\",reason=\"missing_required\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(sdk.shutdown(Duration::from_secs(10)));
    s.stop();
}
