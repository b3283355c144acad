//! A stand-in for an evlog collector on another host, for measuring what the forward sink costs
//! the web host alone: it answers `POST /v1/batch?results=refused` as a collector that accepted
//! every event would (`{"accepted":N,"refused":0,"only_refused":true,"results":[]}`, N the
//! request's non-empty NDJSON lines, decompressed if sent gzip or zstd), `GET /count` with the events
//! acknowledged so far (decimal text: a benchmark checks that it measured deliveries, not
//! failures), and any other request with `204`, using a few µs of CPU per request. It stores, validates and forwards nothing: not a collector.
//!
//!   cargo run --release -p evlog-tests --example collector_standin -- [ADDR]
//!
//! ADDR defaults to `127.0.0.1:0`. Prints `listening on http://HOST:PORT` when ready and runs
//! until killed. One thread per connection (the SDK keeps `sink.forward.workers` keep-alive connections per process).
//! A request's body is read by its `Content-Length` (none: no body; chunked bodies are not
//! read, the forward sink never sends them); a malformed request closes its connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

/// Events acknowledged since the start.
static ACKNOWLEDGED: AtomicU64 = AtomicU64::new(0);

/// Most bytes of one request's headers.
const MAX_HEAD: usize = 64 << 10;
/// Most bytes of one request's body (the collector's default `max_body_bytes`).
const MAX_BODY: usize = 10 << 20;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let local = listener.local_addr().expect("local address");
    println!("listening on http://{local}");
    std::io::stdout().flush().ok();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}

/// Serves one keep-alive connection until the peer closes it or sends something unexpected.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut body = Vec::new();
    let mut plain = Vec::new();
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        // No Content-Length: no body (a GET); the forward sink always sends one with a POST.
        let len = header(&head, "content-length")
            .map_or(Some(0), |v| v.parse::<usize>().ok())
            .filter(|&n| n <= MAX_BODY)
            .ok_or_else(|| std::io::Error::other("bad or too large Content-Length"))?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if head.starts_with("get /count ") {
            let n = ACKNOWLEDGED.load(Ordering::Relaxed).to_string();
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{n}", n.len());
            out.write_all(reply.as_bytes())?;
            continue;
        }
        let batch = head.starts_with("post ") && head.contains(" /v1/batch");
        if !batch {
            out.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        let text: &[u8] = match header(&head, "content-encoding") {
            Some("gzip") => {
                plain.clear();
                flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
                &plain
            }
            Some("zstd") => {
                plain.clear();
                zstd::stream::read::Decoder::new(&body[..])?.read_to_end(&mut plain)?;
                &plain
            }
            _ => &body,
        };
        let n = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        ACKNOWLEDGED.fetch_add(n as u64, Ordering::Relaxed);
        let answer = format!(r#"{{"accepted":{n},"refused":0,"only_refused":true,"results":[]}}"#);
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        out.write_all(reply.as_bytes())?;
    }
}

/// The next request's head (request line and headers, lower-cased), or `None` at a clean end.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let before = head.len();
        if reader.read_line(&mut head)? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::other(
                    "connection closed inside a request head",
                ))
            };
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        if head[before..].trim_end().is_empty() && before > 0 {
            return Ok(Some(head.to_ascii_lowercase()));
        }
    }
}

/// A header's value in a lower-cased head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}
