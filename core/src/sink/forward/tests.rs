//! The forward sink's unit tests, against a loopback HTTP server that plays the collector (or a
//! proxy, or the wrong server).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::RetryConfig;
use crate::routing::{Destination, PartitionKind};
use crate::sink::http;
use crate::sink::{Batch, EncodedRow, RejectedEvent, Sink, SinkError};

/// What the test server answers a request: status, extra header lines, body.
pub(super) type Answer = (u16, &'static str, String);

/// The collector's answer: everything accepted.
pub(super) fn collector_answer(req: &wire::RowsRequest) -> Answer {
    let n = req.batches.iter().map(|b| b.rows.len()).sum::<usize>() + req.rejected.len();
    (200, "", format!(r#"{{"accepted":{n}}}"#))
}

/// A loopback HTTP/1.1 server answering the `i`-th request (from 0) with `answer(i, body)`,
/// recording request heads. Bodies are decompressed and parsed as the forward wire format.
pub(super) fn server(
    answer: impl Fn(usize, &wire::RowsRequest) -> Answer + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    raw_server(move |i, body| answer(i, &serde_json::from_slice(body).expect("wire body")))
}

/// A loopback HTTP/1.1 server answering the `i`-th request (from 0) with `answer(i, body)`,
/// the body decompressed (gzip, zstd) when it came compressed; records the request heads.
/// Shared by the rows and the events tests.
pub(super) fn raw_server(
    answer: impl Fn(usize, &[u8]) -> Answer + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    head_server(move |i, _, body| answer(i, body))
}

/// [`raw_server`] whose `answer` also sees the request's head (lowercased).
pub(super) fn head_server(
    answer: impl Fn(usize, &str, &[u8]) -> Answer + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut out = stream;
            loop {
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                if head.is_empty() {
                    break;
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let lower = head.to_ascii_lowercase();
                if lower.contains("content-encoding: gzip") {
                    let mut plain = Vec::new();
                    let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain);
                    body = plain;
                } else if lower.contains("content-encoding: zstd") {
                    body = zstd::decode_all(&body[..]).unwrap_or_default();
                }
                let i = {
                    let mut seen = seen2.lock().expect("lock");
                    seen.push(head);
                    seen.len() - 1
                };
                let (status, extra, text) = answer(i, &lower, &body);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if out.write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (url, seen)
}

/// Answers the statuses of `script` (empty bodies; `Retry-After: 0` with 429), then as the
/// collector.
fn scripted(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    server(move |i, req| match script.get(i) {
        Some(&429) => (429, "Retry-After: 0\r\n", String::new()),
        Some(&status) => (status, "", String::new()),
        None => collector_answer(req),
    })
}

pub(super) fn batch(n: usize) -> Batch {
    Batch {
        destination: Destination {
            dataset: "events".into(),
            table: "t".into(),
            partitioning: PartitionKind::DayShard,
            day: "20261122".into(),
        },
        rows: (0..n)
            .map(|i| EncodedRow {
                insert_id: format!("id-{i}"),
                json: format!(r#"{{"i":{i}}}"#),
            })
            .collect(),
        bytes: 0,
    }
}

fn retry() -> RetryConfig {
    RetryConfig {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
        max_attempts: 4,
    }
}

fn sink(url: String) -> ForwardSink {
    let cfg = ForwardConfig {
        url,
        ..ForwardConfig::default()
    };
    ForwardSink::new(&cfg, &retry()).expect("sink")
}

fn rejected(id: &str) -> RejectedEvent {
    RejectedEvent {
        dataset: "events".into(),
        event_id: id.into(),
        namespace: "events".into(),
        type_name: "t".into(),
        event_time: None,
        received_at: 0,
        reason: "unknown_table",
        field: None,
        error: "no schema".into(),
        raw: "{}".into(),
    }
}

#[test]
fn retries_429_and_5xx_then_delivers_with_key_and_gzip() {
    let (url, seen) = scripted(vec![429, 503]);
    let cfg = ForwardConfig {
        url,
        api_key: Some("k-123".into()),
        max_rows_per_request: 10,
        workers: 1,
        compression: Some(Compression::Gzip),
        ..ForwardConfig::default()
    };
    let mut sink = ForwardSink::new(&cfg, &retry()).expect("sink");
    let out = sink.deliver(vec![batch(25)]);
    assert_eq!(out[0].delivered, 25);
    assert!(out[0].failed.is_empty());
    assert_eq!(out[0].attempt_errors, vec!["http_429", "http_5xx"]);
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        5,
        "3 requests of ≤10 rows; the first answered 429, then 503, then 200"
    );
    let h = seen[0].to_ascii_lowercase();
    assert!(h.starts_with("post /v1/rows "), "{h}");
    assert!(h.contains("authorization: bearer k-123"), "{h}");
    assert!(h.contains("content-encoding: gzip"), "{h}");
}

#[test]
fn zstd_goes_to_gzip_for_good_when_a_collector_answers_415() {
    // A collector older than zstd support: 415 to a zstd body, its answer to the others.
    let (url, seen) = head_server(|_, head, body| {
        if head.contains("content-encoding: zstd") {
            return (415, "", "Content-Encoding \"zstd\" is not supported".into());
        }
        collector_answer(&serde_json::from_slice(body).expect("wire body"))
    });
    let cfg = ForwardConfig {
        url,
        workers: 1,
        compression: Some(Compression::Zstd),
        ..ForwardConfig::default()
    };
    let mut sink = ForwardSink::new(&cfg, &retry()).expect("sink");
    let out = sink.deliver(vec![batch(3)]);
    assert_eq!(out[0].delivered, 3);
    assert!(
        out[0].attempt_errors.is_empty(),
        "{:?}",
        out[0].attempt_errors
    );
    assert!(out[0].error.is_none());
    // The next request goes gzipped at once.
    let out = sink.deliver(vec![batch(2)]);
    assert_eq!(out[0].delivered, 2);
    let encodings: Vec<&str> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|h| {
            let h = h.to_ascii_lowercase();
            ["zstd", "gzip"]
                .into_iter()
                .find(|e| h.contains(&format!("content-encoding: {e}")))
                .unwrap_or("none")
        })
        .collect();
    assert_eq!(encodings, ["zstd", "gzip", "gzip"]);
}

#[test]
fn other_4xx_are_not_retried_and_fail_the_rows() {
    let (url, seen) = scripted(vec![400]);
    let mut sink = sink(url.clone());
    let out = sink.deliver(vec![batch(3)]);
    assert_eq!(out[0].delivered, 0);
    assert_eq!(out[0].failed.len(), 3);
    let e = out[0].error.as_ref().expect("error");
    assert_eq!(e.kind(), "http_4xx");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{url}/v1/rows")) && msg.contains("400"),
        "{msg}"
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[test]
fn connect_errors_use_up_the_attempts() {
    let mut sink = sink("http://127.0.0.1:9".into());
    let out = sink.deliver(vec![batch(2)]);
    assert_eq!(out[0].failed.len(), 2);
    assert_eq!(out[0].attempt_errors.len(), 4);
    assert_eq!(out[0].error.as_ref().map(SinkError::kind), Some("connect"));
}

/// Delivers 3 rows to a server answering every request with `answer`; asserts they failed at
/// the first attempt (no retry) with `bad_answer`, and returns the error message.
fn not_the_collector(answer: Answer) -> String {
    let (url, seen) = server(move |_, _| answer.clone());
    let mut sink = sink(url.clone());
    let out = sink.deliver(vec![batch(3)]);
    assert_eq!(out[0].delivered, 0, "nothing counts delivered");
    assert_eq!(
        out[0].failed.len(),
        3,
        "every row failed (spooled or dropped)"
    );
    assert!(out[0].rejected_stored.is_empty());
    assert_eq!(out[0].attempt_errors, vec!["bad_answer"]);
    assert_eq!(seen.lock().expect("lock").len(), 1, "not retried");
    let msg = out[0].error.as_ref().expect("error").to_string();
    assert!(msg.contains(&format!("POST {url}/v1/rows")), "{msg}");
    msg
}

#[test]
fn a_204_is_not_delivery() {
    let msg = not_the_collector((204, "", String::new()));
    assert!(msg.contains("204") && msg.contains("empty body"), "{msg}");
}

#[test]
fn a_200_with_a_wrong_count_is_not_delivery() {
    let msg = not_the_collector((200, "", r#"{"accepted": 2}"#.into()));
    assert!(
        msg.contains("200") && msg.contains("accepted = 2 for the 3 items"),
        "{msg}"
    );
}

#[test]
fn a_200_html_page_is_not_delivery() {
    let page = format!(
        "<html>\n<body>Welcome to nginx!{}</body></html>",
        "x".repeat(500)
    );
    let msg = not_the_collector((200, "Content-Type: text/html\r\n", page));
    assert!(msg.contains("200") && msg.contains("not JSON"), "{msg}");
    assert!(
        msg.contains("<html> <body>Welcome to nginx!"),
        "excerpt: {msg}"
    );
    assert!(msg.len() < 600, "the excerpt is bounded: {msg}");
}

#[test]
fn a_200_without_accepted_or_not_an_object_is_not_delivery() {
    let msg = not_the_collector((200, "", r#"{"ok": true}"#.into()));
    assert!(msg.contains("accepted"), "{msg}");
    let msg = not_the_collector((200, "", "[3]".into()));
    assert!(msg.contains("not an object"), "{msg}");
}

#[test]
fn a_redirect_is_not_followed() {
    let (url, seen) = server(|_, _| (301, "Location: http://127.0.0.1:9/\r\n", String::new()));
    let mut sink = sink(url);
    let out = sink.deliver(vec![batch(2)]);
    assert_eq!(out[0].failed.len(), 2);
    assert_eq!(out[0].attempt_errors, vec!["http_3xx"]);
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[test]
fn a_502_page_from_a_proxy_is_retried() {
    let (url, seen) = server(|i, req| {
        if i == 0 {
            (502, "", "<html>Bad Gateway</html>".into())
        } else {
            collector_answer(req)
        }
    });
    let mut sink = sink(url);
    let out = sink.deliver(vec![batch(4)]);
    assert_eq!(out[0].delivered, 4);
    assert_eq!(out[0].attempt_errors, vec!["http_5xx"]);
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[test]
fn refused_rows_are_counted_rejected_as_already_stored() {
    let (url, _) = server(|_, req| {
        let rows = &req.batches[0].rows;
        let body = serde_json::json!({
            "accepted": rows.len(), "rows": rows.len() - 2, "dead_letters": 2,
            "refused": [
                {"batch": 0, "row": 1, "id": rows[1].id, "reason": "invalid_value",
                 "field": "amount", "error": "field \"amount\": not a number"},
                {"batch": 0, "row": 3, "id": rows[3].id, "reason": "a_new_reason",
                 "field": null, "error": "something else"},
            ],
        });
        (200, "", body.to_string())
    });
    let mut sink = sink(url);
    let out = sink.deliver(vec![batch(5)]);
    let o = &out[0];
    assert_eq!(o.delivered, 3);
    assert!(o.failed.is_empty() && o.error.is_none());
    assert!(o.rejected.is_empty(), "not handed to dead_letter again");
    assert_eq!(o.rejected_stored.len(), 2);
    let r = &o.rejected_stored[0];
    assert_eq!(
        (r.event_id.as_str(), r.reason, r.field.as_deref()),
        ("id-1", "invalid_value", Some("amount"))
    );
    assert_eq!(r.error, "field \"amount\": not a number");
    assert_eq!(
        (r.dataset.as_str(), r.raw.as_str()),
        ("events", r#"{"i":1}"#)
    );
    let r = &o.rejected_stored[1];
    assert_eq!(
        (r.event_id.as_str(), r.reason, r.field.as_deref()),
        ("id-3", "a_new_reason", None)
    );
}

#[test]
fn a_refused_row_that_was_not_sent_is_a_bad_answer() {
    let msg = not_the_collector((
        200,
        "",
        r#"{"accepted": 3, "refused": [{"batch": 0, "row": 7, "id": "id-7", "reason": "x", "error": "y"}]}"#.into(),
    ));
    assert!(
        msg.contains("rows[7]") && msg.contains("not a row sent"),
        "{msg}"
    );
}

#[test]
fn dead_letters_need_the_collector_answer_too() {
    let (url, seen) = scripted(vec![204]);
    let mut sink = sink(url.clone());
    let e = sink
        .dead_letter(&[rejected("a"), rejected("b")])
        .expect_err("a 204 is not the collector");
    assert_eq!(e.kind(), "bad_answer");
    assert!(e.to_string().contains(&format!("{url}/v1/rows")), "{e}");
    // The next answer is the collector's: accepted = 2 dead letters.
    sink.dead_letter(&[rejected("a"), rejected("b")])
        .expect("stored");
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[test]
fn url_is_required() {
    let e = crate::Config::from_toml_str("[sink]\nkind = \"forward\"\n").expect_err("no url");
    assert!(e.to_string().contains("sink.forward.url"), "{e}");
}

fn config_with_url(url: &str) -> Result<crate::Config, crate::config::ConfigError> {
    crate::Config::from_toml_str(&format!(
        "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = {url:?}\n"
    ))
}

#[test]
fn an_endpoint_url_is_refused_when_the_config_is_read() {
    for url in [
        "http://collector:8080/v1/rows",
        "http://collector:8080/v1/rows/",
        "https://proxy/evlog/v1/events",
        "http://collector/v1/batch",
    ] {
        let e = config_with_url(url).expect_err(url).to_string();
        assert!(
            e.contains("sink.forward.url")
                && e.contains("ends with the endpoint /v1/")
                && e.contains("give the collector's base URL, e.g. http://host:8080"),
            "{e}"
        );
    }
    let e = ForwardSink::new(
        &ForwardConfig {
            url: "http://collector:8080/v1/rows".into(),
            ..ForwardConfig::default()
        },
        &retry(),
    )
    .expect_err("the sink checks too");
    assert!(e.to_string().contains("sink.forward.url"), "{e}");
}

#[test]
fn other_bad_urls_are_refused_with_the_rule() {
    for (url, rule) in [
        ("collector:8080", "scheme must be http or https"),
        ("127.0.0.1:8080", "not a URL"),
        ("ftp://collector", "scheme must be http or https"),
        ("http://collector:8080/?x=1", "query or fragment"),
        ("http://collector:8080#top", "query or fragment"),
        ("http://", "not a URL"),
    ] {
        let e = config_with_url(url).expect_err(url).to_string();
        assert!(
            e.contains("sink.forward.url") && e.contains(rule),
            "{url}: {e}"
        );
    }
    for url in [
        "http://127.0.0.1:8080",
        "https://collector/",
        "http://proxy/evlog",
    ] {
        config_with_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn a_base_url_path_is_kept() {
    let s = sink("http://proxy:81/evlog/".into());
    assert_eq!(s.nodes.url(0), "http://proxy:81/evlog");
}

#[test]
fn compression_auto_is_zstd_unless_every_collector_is_on_loopback() {
    let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    let one = |c: Compression, url: &str| c.applies_to(&urls(&[url]));
    let zstd = Some(http::Encoding::Zstd);
    for local in [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080/evlog",
        "http://localhost:8080",
        "https://LocalHost.",
        "http://collector.localhost",
    ] {
        assert_eq!(one(Compression::Auto, local), None, "{local}");
        assert_eq!(one(Compression::Zstd, local), zstd, "{local}");
    }
    for remote in [
        "http://10.0.0.5:8080",
        "http://collector.internal",
        "http://[2001:db8::1]",
        "http://localhost.example.com",
    ] {
        assert_eq!(one(Compression::Auto, remote), zstd, "{remote}");
        assert_eq!(one(Compression::None, remote), None, "{remote}");
        assert_eq!(
            one(Compression::Gzip, remote),
            Some(http::Encoding::Gzip),
            "{remote}"
        );
    }
    // Several collectors: compressed as soon as one is not local (one setting for all).
    let mixed = urls(&["http://127.0.0.1:1", "http://10.0.0.5:1"]);
    assert_eq!(Compression::Auto.applies_to(&mixed), zstd);
    let local = urls(&["http://127.0.0.1:1", "http://localhost:2"]);
    assert_eq!(Compression::Auto.applies_to(&local), None);
}

#[test]
fn compression_reads_its_names_in_any_case_and_names_a_bad_value() {
    for (text, want) in [
        ("\"auto\"", Compression::Auto),
        ("\"zstd\"", Compression::Zstd),
        ("\"GZIP\"", Compression::Gzip),
        ("\"none\"", Compression::None),
        ("\"off\"", Compression::None),
        ("false", Compression::None),
    ] {
        let cfg: ForwardConfig = toml::from_str(&format!("compression = {text}")).expect(text);
        assert_eq!(cfg.compression, Some(want), "{text}");
        assert_eq!(cfg.compression(), want, "{text}");
    }
    assert_eq!(ForwardConfig::default().compression(), Compression::Auto);
    for bad in ["\"brotli\"", "true"] {
        let e = toml::from_str::<ForwardConfig>(&format!("compression = {bad}"))
            .expect_err(bad)
            .to_string();
        assert!(
            e.contains("compression") && e.contains("\"auto\", \"zstd\", \"gzip\" or \"none\""),
            "{e}"
        );
    }
    // Written back as it is read.
    for c in [
        Compression::Auto,
        Compression::Zstd,
        Compression::Gzip,
        Compression::None,
    ] {
        let cfg = ForwardConfig {
            compression: Some(c),
            ..ForwardConfig::default()
        };
        let back: ForwardConfig = toml::from_str(&toml::to_string(&cfg).expect("ser")).expect("de");
        assert_eq!(back.compression, Some(c));
    }
}

#[test]
fn gzip_is_read_as_the_older_spelling_of_compression() {
    for (text, want, means) in [
        ("true", Gzip::On, Compression::Gzip),
        ("false", Gzip::Off, Compression::None),
        ("\"auto\"", Gzip::Auto, Compression::Auto),
        ("\"on\"", Gzip::On, Compression::Gzip),
        ("\"OFF\"", Gzip::Off, Compression::None),
        ("\"1\"", Gzip::On, Compression::Gzip),
        ("\"no\"", Gzip::Off, Compression::None),
    ] {
        let cfg: ForwardConfig = toml::from_str(&format!("gzip = {text}")).expect(text);
        assert_eq!(cfg.gzip, Some(want), "{text}");
        assert_eq!(cfg.compression(), means, "{text}");
    }
    let e = toml::from_str::<ForwardConfig>("gzip = \"maybe\"")
        .expect_err("maybe")
        .to_string();
    assert!(
        e.contains("gzip") && e.contains("true, false or \"auto\""),
        "{e}"
    );
    for g in [Gzip::Auto, Gzip::On, Gzip::Off] {
        let cfg = ForwardConfig {
            gzip: Some(g),
            ..ForwardConfig::default()
        };
        let back: ForwardConfig = toml::from_str(&toml::to_string(&cfg).expect("ser")).expect("de");
        assert_eq!(back.gzip, Some(g));
    }
    // Both: an error naming the two keys.
    let both = ForwardConfig {
        url: "http://10.0.0.5:8080".into(),
        gzip: Some(Gzip::On),
        compression: Some(Compression::Zstd),
        ..ForwardConfig::default()
    };
    let e = both.validate(true).expect_err("both").to_string();
    assert!(
        e.contains("sink.forward.gzip") && e.contains("sink.forward.compression"),
        "{e}"
    );
}
