//! `evlog-collector top` and `evlog-collector tail`: the live page for a terminal, reading the
//! same server-sent events (`GET /ui/feed`, see `crate::ui`) from a running collector.
//!
//! ```text
//! evlog-collector top  --url http://127.0.0.1:8080 [--admin-key KEY] [--once]
//! evlog-collector tail --url http://127.0.0.1:8080 [--admin-key KEY] --table DATASET.TABLE
//!                      [--where FIELD=VALUE] [--count N]
//! ```
//!
//! The admin key comes from `--admin-key` or the environment variable `EVLOG_ADMIN_KEY` (which
//! keeps it out of the process list). `top` redraws a table of destinations and tables every
//! second (`--once`: prints one and exits). `tail` prints the table's recent rows and then each
//! new one as a line of JSON on stdout (`--where`: only rows whose top-level field has that
//! value; `--count N`: exit after N rows), and every dead letter on stderr. Plain HTTP only (the
//! collector's `http://` listener or a local tunnel); exit 1 when the feed cannot be read, 2 for
//! bad arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::ui::sse::encode;

const USAGE: &str = "usage: evlog-collector top --url http://HOST:PORT [--admin-key KEY] [--once]\n       \
evlog-collector tail --url http://HOST:PORT [--admin-key KEY] --table DATASET.TABLE [--where FIELD=VALUE] [--count N]\n\
(the admin key may come from EVLOG_ADMIN_KEY instead)";

/// Runs `top` or `tail` (`args` after the program name, the command first).
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("evlog-collector: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Feed(e)) => {
            eprintln!("evlog-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The feed could not be read.
    #[error("{0}")]
    Feed(String),
}

#[derive(Debug, Default)]
struct Args {
    url: Option<String>,
    key: Option<String>,
    table: Option<String>,
    filter: Option<String>,
    count: Option<u64>,
    once: bool,
}

fn parse(cmd: &str, rest: &[String]) -> Result<Args, Failure> {
    let mut a = Args::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--url" => a.url = Some(value()?),
            "--admin-key" => a.key = Some(value()?),
            "--table" if cmd == "tail" => a.table = Some(value()?),
            "--where" if cmd == "tail" => {
                let w = value()?;
                if !w.contains('=') {
                    return Err(Failure::Usage(format!(
                        "--where {w:?}: expected FIELD=VALUE"
                    )));
                }
                a.filter = Some(w);
            }
            "--count" if cmd == "tail" => {
                let v = value()?;
                a.count = Some(v.parse().map_err(|_| {
                    Failure::Usage(format!("--count {v:?}: expected a whole number"))
                })?);
            }
            "--once" if cmd == "top" => a.once = true,
            other => return Err(Failure::Usage(format!("{cmd}: unknown argument {other:?}"))),
        }
    }
    if a.key.is_none() {
        a.key = std::env::var("EVLOG_ADMIN_KEY").ok();
    }
    Ok(a)
}

fn run(args: &[String]) -> Result<(), Failure> {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let a = parse(cmd, &args[1..])?;
    let url = a
        .url
        .as_deref()
        .ok_or_else(|| Failure::Usage("missing --url".into()))?;
    match cmd {
        "top" => {
            let mut feed = Feed::open(url, a.key.as_deref(), "tail=0")?;
            top(&mut feed, a.once)
        }
        "tail" => {
            let table = a
                .table
                .as_deref()
                .ok_or_else(|| Failure::Usage("tail: missing --table DATASET.TABLE".into()))?;
            let mut query = format!("table={}", encode(table));
            if let Some(f) = &a.filter {
                query.push_str(&format!("&filter.{}={}", encode(table), encode(f)));
            }
            let mut feed = Feed::open(url, a.key.as_deref(), &query)?;
            tail(&mut feed, table, a.count)
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

/// A server-sent event stream read over plain HTTP/1.1 (chunked or not).
struct Feed {
    body: Box<dyn BufRead>,
}

/// Reads a chunked body as one stream.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            // The CRLF ending the previous chunk, then the size line.
            while line.trim().is_empty() {
                line.clear();
                if self.inner.read_line(&mut line)? == 0 {
                    self.done = true;
                    return Ok(0);
                }
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            self.done = true;
        }
        self.left -= n;
        Ok(n)
    }
}

impl Feed {
    fn open(url: &str, key: Option<&str>, query: &str) -> Result<Self, Failure> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            Failure::Usage(format!(
                "--url {url:?}: only http:// URLs (for TLS, read the feed through a local tunnel)"
            ))
        })?;
        let host = rest.split('/').next().unwrap_or(rest);
        let stream = TcpStream::connect(host)
            .map_err(|e| Failure::Feed(format!("cannot connect to {host}: {e}")))?;
        // Snapshots come every second: a silent minute means the collector is gone.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let mut w = &stream;
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        write!(
            w,
            "GET /ui/feed?{query} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: text/event-stream\r\n\r\n"
        )
        .map_err(|e| Failure::Feed(format!("cannot send the request to {host}: {e}")))?;
        let mut r = BufReader::new(stream);
        let mut status = String::new();
        r.read_line(&mut status)
            .map_err(|e| Failure::Feed(format!("no answer from {host}: {e}")))?;
        let code = status.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut chunked = false;
        let mut length = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<u64>().ok();
            }
        }
        let body: Box<dyn BufRead> = if chunked {
            Box::new(BufReader::new(Chunked {
                inner: r,
                left: 0,
                done: false,
            }))
        } else {
            Box::new(BufReader::new(r.take(length.unwrap_or(u64::MAX))))
        };
        let mut feed = Feed { body };
        if code != "200" {
            let mut text = String::new();
            let _ = feed.body.read_to_string(&mut text);
            let why = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(Failure::Feed(format!(
                "{url}/ui/feed answered {}: {why}",
                status.trim()
            )));
        }
        Ok(feed)
    }

    /// The next event: (name, data); `None` when the stream ended.
    fn next(&mut self) -> Result<Option<(String, String)>, Failure> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self
                .body
                .read_line(&mut line)
                .map_err(|e| Failure::Feed(format!("reading the feed: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    return Ok(Some((std::mem::take(&mut name), std::mem::take(&mut data))));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }
}

fn tail(feed: &mut Feed, table: &str, count: Option<u64>) -> Result<(), Failure> {
    let mut shown = 0;
    let out = std::io::stdout();
    while let Some((name, data)) = feed.next()? {
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        match name.as_str() {
            "tail" => {
                let mut o = out.lock();
                let row = &v["row"];
                let _ = match row.as_str() {
                    Some(cut) => writeln!(o, "{cut}"),
                    None => writeln!(o, "{row}"),
                };
                let _ = o.flush();
                shown += 1;
                if count.is_some_and(|c| shown >= c) {
                    return Ok(());
                }
            }
            "dead" if v["table"] == table => eprintln!(
                "dead letter {}: {} (field {}): {}",
                v["id"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or(""),
                v["field"].as_str().unwrap_or("-"),
                v["error"].as_str().unwrap_or("")
            ),
            "lagged" => eprintln!("(skipped {} items: reading too slowly)", v["missed"]),
            _ => {}
        }
    }
    Err(Failure::Feed(
        "the feed ended (the collector stopped)".into(),
    ))
}

/// A number as text with thousands separators.
fn num(v: &Value) -> String {
    let s = v.as_i64().unwrap_or(0).to_string();
    let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// `reason: n, …` of a map of counts, or `0`.
fn reasons(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k}: {}", num(n)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "0".into(),
    }
}

/// The per-second rate of `field` of the row named `name` (under `key`) between two snapshots.
fn rate(
    prev: Option<&Value>,
    now: &Value,
    list: &str,
    key: &str,
    name: &Value,
    field: &str,
) -> f64 {
    let Some(prev) = prev else { return 0.0 };
    let find = |s: &Value| {
        s[list]
            .as_array()
            .and_then(|a| a.iter().find(|r| r[key] == *name))
            .and_then(|r| r[field].as_f64())
    };
    let dt = (now["t"].as_f64().unwrap_or(0.0) - prev["t"].as_f64().unwrap_or(0.0)) / 1000.0;
    match (find(prev), find(now)) {
        (Some(a), Some(b)) if dt > 0.0 => ((b - a) / dt).max(0.0),
        _ => 0.0,
    }
}

/// One screen of `top`.
fn render(prev: Option<&Value>, s: &Value) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "evlog collector  generation {}  reloads ok {} failed {}  backlog {} B\n\n",
        s["generation"], s["reloads"]["ok"], s["reloads"]["error"], s["totals"]["backlog_bytes"]
    ));
    o.push_str(&format!(
        "{:<16} {:>9} {:>9} {:>12} {:>12} {:>9} {:>10} {:<8} {}\n",
        "DESTINATION",
        "ACC/s",
        "DEL/s",
        "ACCEPTED",
        "DELIVERED",
        "IN FLIGHT",
        "BACKLOG",
        "SINK",
        "REJECTED / DROPPED / LAST ERROR"
    ));
    for d in s["destinations"].as_array().into_iter().flatten() {
        let name = &d["name"];
        o.push_str(&format!(
            "{:<16} {:>9.1} {:>9.1} {:>12} {:>12} {:>9} {:>10} {:<8} {} / {} {}\n",
            name.as_str().unwrap_or(""),
            rate(prev, s, "destinations", "name", name, "accepted"),
            rate(prev, s, "destinations", "name", name, "delivered"),
            num(&d["accepted"]),
            num(&d["delivered"]),
            num(&d["in_flight"]),
            num(&d["backlog_bytes"]),
            if d["healthy"] == true {
                "healthy"
            } else {
                "FAILING"
            },
            reasons(&d["rejected"]),
            reasons(&d["dropped"]),
            d["last_error"].as_str().unwrap_or(""),
        ));
    }
    o.push_str(&format!(
        "\n{:<32} {:>9} {:>9} {:>12} {:>12} {:>9} {}\n",
        "TABLE", "ACC/s", "DEL/s", "ACCEPTED", "DELIVERED", "IN FLIGHT", "REJECTED / DROPPED"
    ));
    for t in s["tables"].as_array().into_iter().flatten() {
        let name = &t["table"];
        let mut flag = if t["in_flight"].as_i64().unwrap_or(0) < 0 {
            "  (identity off: more outcomes than accepted)".to_string()
        } else {
            String::new()
        };
        if t["sdk_dropped"].as_object().is_some_and(|m| !m.is_empty()) {
            flag.push_str(&format!(
                "  (dropped in SDKs: {})",
                reasons(&t["sdk_dropped"])
            ));
        }
        o.push_str(&format!(
            "{:<32} {:>9.1} {:>9.1} {:>12} {:>12} {:>9} {} / {}{flag}\n",
            name.as_str().unwrap_or(""),
            rate(prev, s, "tables", "table", name, "accepted"),
            rate(prev, s, "tables", "table", name, "delivered"),
            num(&t["accepted"]),
            num(&t["delivered"]),
            num(&t["in_flight"]),
            reasons(&t["rejected"]),
            reasons(&t["dropped"]),
        ));
    }
    o
}

fn top(feed: &mut Feed, once: bool) -> Result<(), Failure> {
    let mut prev: Option<Value> = None;
    let out = std::io::stdout();
    let mut backlog = true;
    while let Some((name, data)) = feed.next()? {
        if name == "ready" {
            backlog = false;
            continue;
        }
        if name != "snapshot" {
            continue;
        }
        let Ok(s) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        // The kept history comes first: draw from the first new snapshot on, with the last
        // kept one for the rates.
        if backlog {
            prev = Some(s);
            continue;
        }
        let screen = render(prev.as_ref(), &s);
        let mut o = out.lock();
        if once {
            let _ = write!(o, "{screen}");
            return Ok(());
        }
        let _ = write!(o, "\x1b[H\x1b[2J{screen}");
        let _ = o.flush();
        prev = Some(s);
    }
    Err(Failure::Feed(
        "the feed ended (the collector stopped)".into(),
    ))
}
