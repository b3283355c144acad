//! The HTTP interface against a real `run` on 127.0.0.1:0 with the file sink.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn single_event_is_stored_and_counted() {
    let mut s = Server::start("");
    let c = client();
    let r = c
        .post(format!("{}/v1/events", s.url))
        .json(&txn(42))
        .send()
        .expect("send");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().expect("json");
    let id = body["id"].as_str().expect("id").to_string();
    assert!(
        wait_for(WAIT, || stored_ids(&s.data_dir()).contains(&id)),
        "event {id} not stored"
    );
    let rows = rows(&s.data_dir());
    let (file, table_rows) = rows.iter().next().expect("a file");
    assert!(file.starts_with("transaction"), "{file}");
    assert_eq!(table_rows[0]["user_id"], json!(42));
    let m = s.metrics();
    assert_eq!(metric(&m, "evlog_events_accepted_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "evlog_events_delivered_total"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "evlog_collector_wal_appends_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "evlog_collector_wal_write_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "evlog_events_delivered_by_table_total{dataset=\"events\",table=\"transaction\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);
    assert_eq!(status(c.get(format!("{}/readyz", s.url))), 200);
    s.stop();
}

#[test]
fn batch_answers_per_event_and_bad_events_do_not_fail_neighbours() {
    let mut s = Server::start("max_event_bytes = 200");
    let c = client();
    let batch = json!([
        txn(1),
        {"namespace": "events", "event": {"user_id": 2}},
        {"namespace": "events", "type": "no_such_table", "id": "dead-1", "event": {"x": 1}},
        {"namespace": "events", "type": "transaction", "event": {"user_id": 3, "coupon": "x".repeat(300)}},
        {"namespace": "events", "type": "transaction", "event": {"user_id": "not a number"}},
        txn(4),
    ]);
    let r = c
        .post(format!("{}/v1/batch", s.url))
        .json(&batch)
        .send()
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().expect("status"))
        .collect();
    // The schema error (user_id not a number) is found at ingest: 422, dead-lettered.
    assert_eq!(statuses, vec![202, 400, 422, 413, 422, 202], "{body}");
    assert!(
        body["results"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("\"type\""),
        "{body}"
    );
    assert!(
        body["results"][3]["error"]
            .as_str()
            .unwrap_or("")
            .contains("max_event_bytes"),
        "{body}"
    );
    let ok: HashSet<String> = [0, 5]
        .iter()
        .map(|&i| body["results"][i]["id"].as_str().expect("id").to_string())
        .collect();
    assert!(wait_for(WAIT, || {
        let ids: HashSet<String> = stored_ids(&s.data_dir()).into_iter().collect();
        ok.is_subset(&ids) && dead_letters(&s.data_dir()).len() == 2
    }));
    let dl = dead_letters(&s.data_dir());
    let reasons: HashSet<&str> = dl.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(reasons.contains("unknown_table"), "{dl:?}");
    assert!(dl.iter().any(|r| r["event_id"] == "dead-1"), "{dl:?}");

    // NDJSON: a syntax error on one line is reported with its line; the others are taken.
    let nd = format!("{}\n{{\"namespace\": oops}}\n{}\n", txn(7), txn(8));
    let r = c
        .post(format!("{}/v1/batch", s.url))
        .header("content-type", "application/x-ndjson")
        .body(nd)
        .send()
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    assert_eq!(body["accepted"], 2, "{body}");
    let e = body["results"][1]["error"].as_str().expect("error");
    assert!(e.contains("line 2") && e.contains("column"), "{e}");

    // `?results=refused` (the SDK's forward sink): only the events not stored are listed, with
    // their index; `?results=all` is the default; another value is refused, naming the key.
    let post = |results: &str, events: &Value| {
        c.post(format!("{}/v1/batch?results={results}", s.url))
            .json(events)
            .send()
            .expect("send")
    };
    let r = post("refused", &batch);
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    assert_eq!(
        (&body["accepted"], &body["refused"], &body["only_refused"]),
        (&json!(2), &json!(4), &json!(true)),
        "{body}"
    );
    let listed: Vec<(u64, u64)> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["status"].as_u64().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(1, 400), (2, 422), (3, 413), (4, 422)],
        "{body}"
    );
    let all_stored = json!([txn(9), txn(10)]);
    let r = post("refused", &all_stored);
    assert_eq!(
        r.text().expect("text"),
        r#"{"accepted":2,"refused":0,"only_refused":true,"results":[]}"#
    );
    let r = post("all", &all_stored);
    let body: Value = r.json().expect("json");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(body.get("only_refused").is_none(), "{body}");
    let r = post("some", &all_stored);
    assert_eq!(r.status(), 400);
    let body: Value = r.json().expect("json");
    let e = body["error"].as_str().unwrap_or("");
    assert!(e.contains(r#"query results: "some" is not"#), "{body}");
    s.stop();
}

#[test]
fn auth_keys_and_scopes() {
    let mut s = Server::start(
        r#"api_keys = [{ key = "key-events-only", namespaces = ["events"] },
                       { key = "key-for-all-ns", namespaces = ["*"] }]"#,
    );
    let c = client();
    let url = format!("{}/v1/events", s.url);
    let r = c.post(&url).json(&txn(1)).send().expect("send");
    assert_eq!(r.status(), 401);
    assert!(r.text().expect("t").contains("missing API key"));
    let r = c
        .post(&url)
        .bearer_auth("wrong-key-123")
        .json(&txn(1))
        .send()
        .expect("send");
    assert_eq!(r.status(), 401);
    let other = json!({"namespace": "other", "type": "t", "event": {}});
    let r = c
        .post(&url)
        .bearer_auth("key-events-only")
        .json(&other)
        .send()
        .expect("send");
    assert_eq!(r.status(), 403);
    assert!(r.text().expect("t").contains("\\\"other\\\""));
    let r = c
        .post(&url)
        .header("x-api-key", "key-events-only")
        .json(&txn(1))
        .send()
        .expect("send");
    assert_eq!(r.status(), 202);
    let r = c
        .post(format!("{}/v1/batch", s.url))
        .bearer_auth("key-events-only")
        .json(&json!([txn(2), other]))
        .send()
        .expect("send");
    let body: Value = r.json().expect("json");
    assert_eq!(body["results"][0]["status"], 202, "{body}");
    assert_eq!(body["results"][1]["status"], 403, "{body}");
    let r = c
        .post(&url)
        .bearer_auth("key-for-all-ns")
        .json(&json!({"namespace": "other", "type": "t", "event": {}}))
        .send()
        .expect("send");
    assert_eq!(r.status(), 422); // in scope; no schema: dead-lettered
    s.stop();
}

#[test]
fn limits_and_malformed_bodies() {
    let mut s = Server::start(
        "max_body_bytes = 100000\nmax_decompressed_bytes = 200000\nmax_batch_events = 10\nmax_depth = 5",
    );
    let c = client();
    let events = format!("{}/v1/events", s.url);
    let batch = format!("{}/v1/batch", s.url);

    let r = c
        .post(&events)
        .body("x".repeat(200_000))
        .send()
        .expect("send");
    assert_eq!(r.status(), 413);
    assert!(r.text().expect("t").contains("max_body_bytes"));

    let many: Vec<Value> = (0..11).map(txn).collect();
    let r = c.post(&batch).json(&many).send().expect("send");
    assert_eq!(r.status(), 413);
    assert!(r.text().expect("t").contains("max_batch_events"));

    let deep = json!({"namespace": "events", "type": "transaction",
        "event": {"user_id": 1, "a": {"b": {"c": {"d": {"e": 1}}}}}});
    let r = c.post(&events).json(&deep).send().expect("send");
    assert_eq!(r.status(), 400);
    assert!(r.text().expect("t").contains("max_depth"));

    let r = c
        .post(&events)
        .body("{\"namespace\": \"events\",\n \"type\": }")
        .send()
        .expect("send");
    assert_eq!(r.status(), 400);
    let t = r.text().expect("t");
    assert!(t.contains("line 2 column"), "{t}");

    let r = c.post(&events).body("[1]").send().expect("send");
    assert_eq!(r.status(), 400);
    assert!(r.text().expect("t").contains("envelope"));

    // A gzip bomb: 50 MB of zeros in ~50 KB.
    let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let r = c
        .post(&batch)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .expect("send");
    assert_eq!(r.status(), 413);
    assert!(r.text().expect("t").contains("max_decompressed_bytes"));

    let r = c
        .post(&events)
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .expect("send");
    assert_eq!(r.status(), 400);

    // gzip that is fine, and the process keeps serving.
    let r = c
        .post(&events)
        .header("content-encoding", "gzip")
        .body(gzip(txn(5).to_string().as_bytes()))
        .send()
        .expect("send");
    assert_eq!(r.status(), 202);
    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);
    assert_eq!(status(c.get(format!("{}/nope", s.url))), 404);
    assert_eq!(status(c.get(&events)), 405);
    assert_eq!(status(c.post(format!("{}/healthz", s.url))), 405);

    // Every answer is counted by endpoint and status (unknown paths as "other").
    let metrics = s.metrics();
    for (line, n) in [
        (r#"path="/v1/events",code="413""#, 1),
        (r#"path="/v1/events",code="400""#, 4),
        (r#"path="/v1/events",code="202""#, 1),
        (r#"path="/v1/events",code="405""#, 1),
        (r#"path="/v1/batch",code="413""#, 2),
        (r#"path="/healthz",code="200""#, 1),
        (r#"path="/healthz",code="405""#, 1),
        (r#"path="other",code="404""#, 1),
    ] {
        let want = format!("evlog_collector_http_responses_total{{{line}}} {n}");
        assert!(metrics.lines().any(|l| l == want), "{want} in\n{metrics}");
    }
    s.stop();
}

#[test]
fn zstd_bodies_are_read_within_the_same_limits() {
    let mut s = Server::start("max_body_bytes = 100000\nmax_decompressed_bytes = 200000");
    let c = client();
    let batch = format!("{}/v1/batch", s.url);
    let post = |coding: &str, body: Vec<u8>| {
        c.post(&batch)
            .header("content-encoding", coding)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .expect("send")
    };

    // Three events in two frames (read back to back, as gzip members are).
    let line = |u: u64| format!("{}\n", txn(u));
    let mut two = zstd::encode_all(line(1).as_bytes(), 1).expect("zstd");
    two.extend(zstd::encode_all(format!("{}{}", line(2), line(3)).as_bytes(), 3).expect("zstd"));
    let r = post("zstd", two);
    assert_eq!(r.status(), 200);
    let body: Value = r.json().expect("json");
    let ids: Vec<String> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            assert_eq!(r["status"], 202, "{body}");
            r["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3, "{body}");
    assert!(wait_for(WAIT, || {
        let stored: HashSet<String> = stored_ids(&s.data_dir()).into_iter().collect();
        ids.iter().all(|id| stored.contains(id))
    }));

    // A bomb: 50 MB of spaces in a few KB; refused once the text passes the limit.
    let bomb = zstd::encode_all(&vec![b' '; 50 * 1024 * 1024][..], 3).expect("zstd");
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let r = post("zstd", bomb);
    assert_eq!(r.status(), 413);
    assert!(r.text().expect("t").contains("max_decompressed_bytes"));

    let r = post("zstd", b"not zstd at all".to_vec());
    assert_eq!(r.status(), 400);
    assert!(r.text().expect("t").contains("not valid zstd"));

    // A frame that asks for a 32 MiB window (no content size: a streaming encoder's): more than
    // the 8 MiB an HTTP decoder is held to (RFC 9659), refused before any allocation of it.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("enc");
    enc.window_log(25).expect("window");
    std::io::Write::write_all(&mut enc, line(4).as_bytes()).expect("write");
    let r = post("zstd", enc.finish().expect("finish"));
    assert_eq!(r.status(), 400);
    let t = r.text().expect("t");
    assert!(
        t.contains("not valid zstd") && t.contains("too much memory"),
        "{t}"
    );

    // An encoding it does not take: 415, naming those it takes (the SDK falls back on it).
    let r = post("br", line(5).into_bytes());
    assert_eq!(r.status(), 415);
    let t = r.text().expect("t");
    assert!(t.contains("gzip, zstd or none"), "{t}");

    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);
    s.stop();
}

#[test]
fn over_the_high_watermark_answers_429_and_not_ready() {
    // Segments are never sealed while the server runs, so nothing is streamed and the backlog
    // stays: the first request fills the log past the (tiny) watermark.
    let mut s = Server::start("high_watermark = 10\nseal_interval = \"1h\"");
    let c = client();
    let url = format!("{}/v1/events", s.url);
    assert_eq!(status(c.post(&url).json(&txn(1))), 202);
    let r = c.post(&url).json(&txn(2)).send().expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(status(c.get(format!("{}/readyz", s.url))), 503);
    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);
    // Shutdown seals the segment and streams it.
    s.stop();
    assert_eq!(stored_ids(&s.data_dir()).len(), 1);
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(ok.success());
    let mut s = Server::start(&format!("tls_cert = {cert:?}\ntls_key = {key:?}"));
    let https = s.url.replace("http://", "https://");
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let r = c
        .post(format!("{https}/v1/events"))
        .json(&txn(9))
        .send()
        .expect("https request");
    assert_eq!(r.status(), 202);
    // Plain HTTP on the TLS port gets no answer (the handshake fails), and the server goes on.
    assert!(client().get(format!("{}/healthz", s.url)).send().is_err());
    let r = c.get(format!("{https}/healthz")).send().expect("https");
    assert_eq!(r.status(), 200);
    s.stop();
    assert_eq!(stored_ids(&s.data_dir()).len(), 1);
}

#[test]
fn requests_past_max_in_flight_get_429_at_once() {
    use std::io::Write as _;
    let mut s = Server::start("max_in_flight = 1");
    let addr = s.url.trim_start_matches("http://").to_string();
    // A slow client holds the only permit: headers sent, body still coming.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .expect("write");
    // Its handler holds the permit once it has reserved its declared length.
    let held = |s: &Server| metric(&s.metrics(), "evlog_collector_body_bytes_in_flight ");
    assert!(
        wait_for(WAIT, || held(&s) == Some(100.0)),
        "the slow request never started: {:?}",
        held(&s)
    );
    let c = client();
    let url = format!("{}/v1/events", s.url);
    let r = c.post(&url).json(&txn(1)).send().expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r
        .text()
        .expect("t")
        .contains("too many requests in progress"));
    // The slow request ends when its client goes (400: the body was cut short); it is counted
    // after its permit was given back.
    drop(slow);
    assert!(
        wait_for(WAIT, || s.metrics().lines().any(|l| l.starts_with(
            r#"evlog_collector_http_responses_total{path="/v1/events",code="400"}"#
        ))),
        "{}",
        s.metrics()
    );
    assert_eq!(status(c.post(&url).json(&txn(2))), 202);
    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);
    s.stop();
}

#[test]
fn concurrent_requests_share_group_commits_under_every_fsync_policy() {
    for policy in ["always", "interval", "never"] {
        let mut s = Server::start(&format!("fsync = \"{policy}\""));
        let url = s.url.clone();
        let ids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let url = url.clone();
                    scope.spawn(move || {
                        let c = client();
                        (0..25)
                            .map(|i| {
                                let r = c
                                    .post(format!("{url}/v1/events"))
                                    .json(&txn(t * 100 + i))
                                    .send()
                                    .expect("send");
                                assert_eq!(r.status(), 202, "{policy}");
                                let body: Value = r.json().expect("json");
                                body["id"].as_str().expect("id").to_string()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(ids.len(), 200);
        let want: HashSet<String> = ids.into_iter().collect();
        assert!(
            wait_for(WAIT, || {
                let got: HashSet<String> = stored_ids(&s.data_dir()).into_iter().collect();
                want.is_subset(&got)
            }),
            "{policy}: not every acknowledged event was stored"
        );
        let m = s.metrics();
        assert_eq!(
            metric(&m, "evlog_events_accepted_total"),
            Some(200.0),
            "{policy}: {m}"
        );
        // One record per request, written in groups: each group's write time is observed once.
        assert_eq!(
            metric(&m, "evlog_collector_wal_appends_total"),
            Some(200.0),
            "{policy}: {m}"
        );
        let groups = metric(&m, "evlog_collector_wal_write_seconds_count").expect("groups");
        assert!((1.0..=200.0).contains(&groups), "{policy}: {m}");
        assert_eq!(
            metric(&m, "evlog_collector_wal_write_seconds_bucket{le=\"+Inf\"}"),
            Some(groups),
            "{policy}: {m}"
        );
        assert!(
            metric(&m, "evlog_collector_wal_write_seconds_sum").is_some_and(|t| t > 0.0),
            "{policy}: {m}"
        );
        s.stop();
    }
}

#[test]
fn bodies_in_progress_stay_within_max_in_flight_bytes() {
    use std::io::{Read as _, Write as _};
    let mut s = Server::start(
        "max_in_flight_bytes = \"64KiB\"\nmax_body_bytes = \"64KiB\"\nmax_decompressed_bytes = \"1MiB\"",
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let c = client();
    let events = format!("{}/v1/events", s.url);
    let batch = format!("{}/v1/batch", s.url);
    // ~30 KiB of events.
    let big: Vec<Value> = (0..300).map(txn).collect();
    let big_text = serde_json::to_vec(&big).expect("json");
    assert!(
        (25_000..40_000).contains(&big_text.len()),
        "{}",
        big_text.len()
    );

    // A slow client holds 40 KiB of the budget: headers sent, body still coming.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.set_read_timeout(Some(WAIT)).expect("timeout");
    slow.write_all(
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 40960\r\n\r\n[",
    )
    .expect("write");
    let gauge = |s: &Server| metric(&s.metrics(), "evlog_collector_body_bytes_in_flight ");
    // The slow request holds its declared length once its handler runs.
    assert!(
        wait_for(WAIT, || gauge(&s) == Some(40960.0)),
        "{:?}",
        gauge(&s)
    );
    // 40 + 30 KiB do not fit in 64 KiB now: 429 at once, naming the setting, with Retry-After.
    let r = c.post(&batch).body(big_text.clone()).send().expect("send");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let why = r.text().expect("t");
    assert!(why.contains("collector.max_in_flight_bytes"), "{why}");
    // The same through gzip (counted as it is decompressed): 429 too.
    let r = c
        .post(&batch)
        .header("content-encoding", "gzip")
        .body(gzip(&big_text))
        .send()
        .expect("send");
    assert_eq!(r.status(), 429);
    // A small event still fits.
    assert_eq!(status(c.post(&events).json(&txn(1))), 202);
    // A gzip body that could never fit (its text alone is larger than the whole budget): 413.
    let huge: Vec<Value> = (0..1000).map(txn).collect();
    let r = c
        .post(&batch)
        .header("content-encoding", "gzip")
        .body(gzip(&serde_json::to_vec(&huge).expect("json")))
        .send()
        .expect("send");
    assert_eq!(r.status(), 413);
    assert!(r
        .text()
        .expect("t")
        .contains("collector.max_in_flight_bytes"));

    // The slow request ends (its body is not valid JSON): its share comes back.
    slow.write_all(&vec![b' '; 40959]).expect("write");
    let mut answer = String::new();
    slow.read_to_string(&mut answer).ok();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    drop(slow);
    assert!(wait_for(WAIT, || c
        .post(&batch)
        .body(big_text.clone())
        .send()
        .is_ok_and(|r| r.status() == 200)));
    assert_eq!(gauge(&s), Some(0.0), "every body's share was given back");

    // A chunked body (no Content-Length) is read and counted frame by frame.
    let mut chunked = std::net::TcpStream::connect(&addr).expect("connect");
    chunked.set_read_timeout(Some(WAIT)).expect("timeout");
    let one = txn(7).to_string();
    let (a, b) = one.split_at(one.len() / 2);
    write!(
        chunked,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .expect("write");
    let mut answer = String::new();
    chunked.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    s.stop();
    // 1 + 300 + 1 events stored; nothing from the refused requests.
    assert_eq!(stored_ids(&s.data_dir()).len(), 302);
}

#[test]
fn a_log_that_cannot_be_written_answers_503_and_reports_not_ready() {
    let mut s = Server::start("");
    let c = client();
    let events = format!("{}/v1/events", s.url);
    let readyz = format!("{}/readyz", s.url);
    assert_eq!(status(c.get(&readyz)), 200);
    // The log's directory is gone (as with a lost volume): once the active segment is sealed,
    // no new one can be created.
    let wal = s.root.path().join("wal");
    std::fs::remove_dir_all(&wal).expect("remove the log directory");
    let mut last = String::new();
    assert!(
        wait_for(WAIT, || {
            let r = c.post(&events).json(&txn(2)).send().expect("send");
            let code = r.status();
            last = format!("{code} {}", r.text().expect("t"));
            code == 503 && last.contains("the write-ahead log cannot be written")
        }),
        "appends never failed; the last answer: {last}"
    );
    // Readiness follows, with the reason, so a load balancer drains this instance.
    let r = c.get(&readyz).send().expect("readyz");
    assert_eq!(r.status(), 503);
    let why = r.text().expect("t");
    assert!(
        why.contains("the write-ahead log cannot be written"),
        "{why}"
    );
    assert!(why.contains("No such file or directory"), "{why}");
    assert_eq!(status(c.get(format!("{}/healthz", s.url))), 200);

    // The volume is back: the next write succeeds and the collector is ready again.
    std::fs::create_dir_all(&wal).expect("recreate");
    let mut id = String::new();
    assert!(wait_for(WAIT, || {
        let r = c.post(&events).json(&txn(3)).send().expect("send");
        if r.status() != 202 {
            return false;
        }
        let v: Value = r.json().expect("json");
        id = v["id"].as_str().expect("id").to_string();
        true
    }));
    assert_eq!(status(c.get(&readyz)), 200);
    s.stop();
    assert!(stored_ids(&s.data_dir()).contains(&id));
}

#[test]
fn slow_clients_are_cut_off_after_request_timeout() {
    use std::io::{Read as _, Write as _};
    let mut s = Server::start("request_timeout = \"1s\"");
    let addr = s.url.trim_start_matches("http://").to_string();
    let connect = || {
        let c = std::net::TcpStream::connect(&addr).expect("connect");
        c.set_read_timeout(Some(WAIT)).expect("timeout");
        c
    };
    // A body that never completes: 408 naming the setting, and its share of the body budget
    // comes back.
    let mut slow_body = connect();
    slow_body
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"names")
        .expect("write");
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("collector.request_timeout"), "{answer}");
    // Headers that never complete: the connection is closed.
    let mut slow_head = connect();
    slow_head
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut rest = Vec::new();
    let closed = match slow_head.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the connection stayed open");
    // A slow but steady body (pieces 250 ms apart, 1.5 s in all) goes through.
    let mut steady = connect();
    let body = txn(2).to_string();
    write!(
        steady,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write");
    for piece in body.as_bytes().chunks(body.len().div_ceil(6)) {
        std::thread::sleep(Duration::from_millis(250));
        steady.write_all(piece).expect("write");
    }
    let mut answer = String::new();
    steady.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // Everyone else is served, and nothing is held any more.
    let c = client();
    assert_eq!(
        status(c.post(format!("{}/v1/events", s.url)).json(&txn(1))),
        202
    );
    let m = s.metrics();
    assert_eq!(
        metric(&m, "evlog_collector_body_bytes_in_flight "),
        Some(0.0),
        "{m}"
    );
    s.stop();
}

/// Fields the schema does not name are stored in `other` as they were posted: integers beyond
/// 64 bits digit for digit, numbers beyond doubles, string escapes as written (the body is sent
/// as text: a `serde_json::Value` would already have turned the integers into doubles).
#[test]
fn unknown_fields_keep_the_posted_text() {
    let mut s = Server::start("");
    let c = client();
    let event = r#"{"user_id": 7, "big": 123456789012345678901234567890,
        "neg": -9223372036854775809, "deep": {"x": [1e400, 0.10000000000000000000001]},
        "s": "caf\u00e9 \/", "items": [{"sku": "a", "extra": 18446744073709551616}]}"#;
    let want = r#"{"big":123456789012345678901234567890,"neg":-9223372036854775809,"deep":{"x":[1e400,0.10000000000000000000001]},"s":"caf\u00e9 \/","items":[{"extra":18446744073709551616}]}"#;
    let single = format!(
        r#"{{"namespace": "events", "type": "transaction", "id": "raw-1", "event": {event}}}"#
    );
    let batch = format!(
        r#"[{{"namespace": "events", "type": "transaction", "id": "raw-2", "event": {event}}}]"#
    );
    for (path, body) in [("events", single), ("batch", batch)] {
        let r = c
            .post(format!("{}/v1/{path}", s.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("send");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    assert!(
        wait_for(WAIT, || stored_ids(&s.data_dir()).len() == 2),
        "events not stored"
    );
    let rows = rows(&s.data_dir());
    let stored: Vec<&Value> = rows.values().flatten().collect();
    assert_eq!(stored.len(), 2);
    for row in stored {
        assert_eq!(row["other"].as_str(), Some(want), "{row}");
        assert_eq!(row["user_id"], json!(7));
    }
    s.stop();
}
