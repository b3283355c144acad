//! Answers sent before a request body was read (401, 413, 429, …) reach plain clients that write
//! their whole body before reading (lingering close), `Expect: 100-continue` gets the final
//! status instead of `100`, and the draining is bounded.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const MIB: usize = 1024 * 1024;

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.url.trim_start_matches("http://")).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    c.set_write_timeout(Some(WAIT)).expect("timeout");
    c
}

/// An answer as read from the socket up to the server's close.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: body {body:?}")),
    }
}

/// What a plain blocking client does (Python's urllib, reqwest without `Expect`): the head, the
/// whole body (`body` then spaces up to `len` bytes), and only then the answer, read to the
/// server's close.
fn post_whole(s: &Server, path: &str, headers: &str, body: &[u8], len: usize) -> Answer {
    let mut c = connect(s);
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{headers}\r\n"
    )
    .expect("head");
    c.write_all(body).expect("body");
    let pad = vec![b' '; 64 * 1024];
    let mut left = len - body.len();
    while left > 0 {
        let n = left.min(pad.len());
        c.write_all(&pad[..n])
            .unwrap_or_else(|e| panic!("writing the body, {left} bytes left: {e}"));
        left -= n;
    }
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read the answer");
    parse(&raw)
}

fn error_text(a: &Answer) -> &str {
    a.body["error"].as_str().unwrap_or("")
}

fn lingering_done(s: &Server) -> bool {
    metric(&s.metrics(), "evlog_collector_lingering_connections ") == Some(0.0)
}

#[test]
fn oversized_bodies_written_whole_still_read_their_413() {
    let mut s = Server::start("max_body_bytes = \"1MiB\"");
    // Refused by the declared length before any of the body is read: 16 MiB follow.
    for _ in 0..3 {
        let a = post_whole(&s, "/v1/batch", "", b"[", 16 * MIB);
        assert_eq!(a.status, 413, "{a:?}");
        assert!(error_text(&a).contains("collector.max_body_bytes"), "{a:?}");
        assert!(a.head.contains("content-type: application/json"), "{a:?}");
        assert!(a.head.contains("connection: close"), "{a:?}");
    }
    // Chunked: refused once 1 MiB was read, while the client is still sending.
    let mut c = connect(&s);
    c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    for _ in 0..(16 * MIB / (64 * 1024)) {
        c.write_all(chunk.as_bytes()).expect("chunk");
    }
    c.write_all(b"0\r\n\r\n").expect("last chunk");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read");
    let a = parse(&raw);
    assert_eq!(a.status, 413, "{a:?}");
    assert!(
        error_text(&a).contains("larger than 1048576 bytes"),
        "{a:?}"
    );

    assert!(wait_for(WAIT, || lingering_done(&s)));
    let m = s.metrics();
    let discarded = metric(&m, "evlog_collector_lingering_discarded_bytes_total").expect("m");
    assert!(discarded > (3 * 14 * MIB) as f64, "{m}");
    assert_eq!(
        metric(&m, "evlog_collector_lingering_skipped_total"),
        Some(0.0),
        "{m}"
    );
    // Nothing is held: no permit, no body budget.
    assert_eq!(
        metric(&m, "evlog_collector_body_bytes_in_flight "),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        status(client().post(format!("{}/v1/events", s.url)).json(&txn(1))),
        202
    );
    s.stop();
}

#[test]
fn refusals_by_key_reach_clients_writing_large_bodies() {
    let mut s =
        Server::start(r#"api_keys = [{ key = "key-events-only", namespaces = ["events"] }]"#);
    // 401 before the body is read, 8 MiB follow.
    let a = post_whole(&s, "/v1/batch", "", b"[", 8 * MIB);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(error_text(&a).contains("missing API key"), "{a:?}");
    let a = post_whole(
        &s,
        "/v1/events",
        "Authorization: Bearer wrong-key-123\r\n",
        b"{",
        8 * MIB,
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert!(error_text(&a).contains("unknown API key"), "{a:?}");
    // 403: a 3 MiB event for a namespace outside the key's scope.
    let event = json!({"namespace": "other", "type": "t", "event": {"pad": "x".repeat(3 * MIB)}});
    let text = event.to_string();
    let a = post_whole(
        &s,
        "/v1/events",
        "X-Api-Key: key-events-only\r\n",
        text.as_bytes(),
        text.len(),
    );
    assert_eq!(a.status, 403, "{a:?}");
    assert!(error_text(&a).contains("may not write namespace"), "{a:?}");
    assert!(wait_for(WAIT, || lingering_done(&s)));
    s.stop();
}

#[test]
fn past_max_in_flight_a_large_body_reads_its_429() {
    let mut s = Server::start("max_in_flight = 1");
    // A slow client holds the only permit: headers sent, body still coming.
    let mut slow = connect(&s);
    slow.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .expect("write");
    // Its handler holds the permit once it has reserved its declared length.
    let held = |s: &Server| metric(&s.metrics(), "evlog_collector_body_bytes_in_flight ");
    assert!(wait_for(WAIT, || held(&s) == Some(100.0)), "{:?}", held(&s));
    let a = post_whole(&s, "/v1/batch", "", b"[", 8 * MIB);
    assert_eq!(a.status, 429, "{a:?}");
    assert!(a.head.contains("retry-after: 1"), "{a:?}");
    assert!(
        error_text(&a).contains("too many requests in progress"),
        "{a:?}"
    );
    drop(slow);
    assert!(wait_for(WAIT, || lingering_done(&s) && held(&s) == Some(0.0)));
    s.stop();
}

#[test]
fn expect_100_continue_gets_the_final_status_when_refused() {
    let mut s = Server::start(
        "max_body_bytes = \"1MiB\"\napi_keys = [{ key = \"key-events-only\", namespaces = [\"events\"] }]",
    );
    for (headers, code) in [
        (
            "X-Api-Key: key-events-only\r\nContent-Length: 67108864\r\n",
            413,
        ),
        ("Content-Length: 1000\r\n", 401),
    ] {
        let mut c = connect(&s);
        write!(
            c,
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n{headers}\r\n"
        )
        .expect("head");
        // No body is sent: the answer is final, and the connection ends after it.
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).expect("read");
        let text = String::from_utf8_lossy(&raw).to_string();
        assert!(!text.contains("100 Continue"), "{text}");
        let a = parse(&raw);
        assert_eq!(a.status, code, "{text}");
        assert!(a.head.contains("connection: close"), "{text}");
    }
    // Accepted: `100 Continue` once the handler reads the body, then the answer.
    let body = txn(1).to_string();
    let mut c = connect(&s);
    write!(
        c,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Api-Key: key-events-only\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("read the interim answer");
        interim.push(byte[0]);
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body.as_bytes()).expect("body");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read");
    assert_eq!(parse(&raw).status, 202, "{}", String::from_utf8_lossy(&raw));
    s.stop();
}

/// Reads one answer (its head, then `Content-Length` bytes) from a connection kept open.
fn read_one(c: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("read the head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).expect("read the body");
    raw.extend_from_slice(&body);
    parse(&raw)
}

#[test]
fn answers_after_the_whole_body_was_read_keep_the_connection() {
    let mut s = Server::start("");
    let mut c = connect(&s);
    // 400 (not an envelope) after the body was read: nothing is left unread, the connection
    // stays open and serves the next request.
    c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[1]")
        .expect("write");
    let a = read_one(&mut c);
    assert_eq!(a.status, 400, "{a:?}");
    assert!(!a.head.contains("connection: close"), "{a:?}");
    let body = txn(1).to_string();
    write!(
        c,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    assert_eq!(read_one(&mut c).status, 202);
    s.stop();
}

#[test]
fn draining_is_bounded_in_time_bytes_and_connections() {
    // Silent client: the drain ends after `timeout` (not `time`), and the client reads 413 and
    // the close.
    let mut s = Server::start(
        "max_body_bytes = \"1MiB\"\n[collector.lingering]\ntime = \"10m\"\ntimeout = \"200ms\"\nmax_bytes = \"4MiB\"",
    );
    let mut c = connect(&s);
    let mut request =
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n".to_vec();
    request.extend_from_slice(&[b' '; 64 * 1024]);
    c.write_all(&request).expect("write");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("read");
    assert_eq!(parse(&raw).status, 413);
    // The answer and its FIN came at once; the client keeps its side open and sends nothing.
    assert!(wait_for(WAIT, || lingering_done(&s)));
    drop(c);
    // A client that sends more than `max_bytes` past the refusal is cut off: exactly `max_bytes`
    // are discarded, then the close resets the connection while the client still writes.
    let mut c = connect(&s);
    c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 134217728\r\n\r\n")
        .expect("head");
    let pad = vec![b' '; 64 * 1024];
    let cut_off = (0..2048).find_map(|_| c.write_all(&pad).err());
    let kind = cut_off.map(|e| e.kind());
    assert!(
        matches!(
            kind,
            Some(std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
        ),
        "{kind:?}"
    );
    let discarded = |s: &Server| {
        metric(
            &s.metrics(),
            "evlog_collector_lingering_discarded_bytes_total",
        )
        .unwrap_or(0.0)
    };
    assert!(wait_for(WAIT, || lingering_done(&s)));
    let total = discarded(&s);
    assert!(
        total >= (4 * MIB) as f64 && total <= (4 * MIB + 64 * 1024) as f64,
        "{total}"
    );
    s.stop();

    // No drain slot (max_connections = 0): closed at once, counted.
    let mut s =
        Server::start("max_body_bytes = \"1MiB\"\n[collector.lingering]\nmax_connections = 0");
    let mut c = connect(&s);
    c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        .expect("head");
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    assert!(wait_for(WAIT, || metric(
        &s.metrics(),
        "evlog_collector_lingering_skipped_total"
    ) == Some(1.0)));
    s.stop();
}

#[test]
fn python_urllib_reads_the_413_of_a_large_body() {
    let mut s = Server::start("max_body_bytes = \"1MiB\"");
    let script = r#"
import json, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/batch", data=b" " * (32 * 1024 * 1024),
                             headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=20)
    print("no error")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["error"])
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &s.url])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("413 "), "{stdout}");
    assert!(stdout.contains("collector.max_body_bytes"), "{stdout}");
    s.stop();
}
