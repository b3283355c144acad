//! `GET /ui/feed`: server-sent events from the [`Feed`](super::Feed) to one subscriber.
//!
//! Events (`event:` name, `data:` one line of JSON):
//! - `snapshot`: every count, once a second (the last minutes first, on connecting);
//! - `tail`: a row as it was stored (`{"t","table","id","row"}`);
//! - `dead`: a dead letter (`{"t","table","namespace","type","id","reason","field","error",
//!   "raw","at"}`);
//! - `ready`: `{}` once the kept items (snapshots, dead letters, tails) were sent: what follows
//!   is new;
//! - `lagged`: `{"missed": n}` when this subscriber read too slowly and `n` items were skipped.
//!
//! Query parameters: `table=<dataset.table>` (repeatable: only these tables' tail; dead letters
//! of every table come all the same), `filter.<dataset.table>=<field>=<value>` (that table's tail: only rows whose
//! top-level `field` is `value`, compared as text: a string's value, another value's JSON),
//! `tail=0` (snapshots only, e.g. `evlog-collector top`). Query values are percent-decoded.
//!
//! Bounds: the subscriber's task holds at most [`QUEUE`] encoded events for its connection;
//! when the client reads slower, the broadcast skips ahead for it (`lagged`). The stream ends
//! when the client goes or when the collector shuts down ([`Feed::close`](super::Feed::close)).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc};

use super::feed::{Item, Subscription};

/// Encoded events waiting for one connection.
pub const QUEUE: usize = 32;

/// What one subscriber asked for.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only these tables' tail (all when empty).
    pub tables: Vec<String>,
    /// Per table: only rows whose `field` is `value`.
    pub rows: Vec<(String, String, String)>,
    /// Neither tail nor dead letters.
    pub no_tail: bool,
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query's `(name, value)` pairs, decoded.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

impl Filter {
    /// The filter a query asks for; an error names the parameter and the rule.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut f = Filter::default();
        for (k, v) in query_pairs(query) {
            if k == "table" {
                f.tables.push(v);
            } else if k == "tail" {
                f.no_tail = v == "0";
            } else if let Some(table) = k.strip_prefix("filter.") {
                let Some((field, value)) = v.split_once('=') else {
                    return Err(format!(
                        "query parameter {k}: expected filter.<dataset.table>=<field>=<value>, got {v:?}"
                    ));
                };
                f.rows
                    .push((table.to_owned(), field.to_owned(), value.to_owned()));
            } else if k != "key" {
                return Err(format!(
                    "unknown query parameter {k:?}: /ui/feed takes table, filter.<dataset.table>, tail"
                ));
            }
        }
        Ok(f)
    }

    /// Whether the subscriber wants `item`.
    pub fn wants(&self, item: &Item) -> bool {
        if item.kind == "snapshot" || item.kind == "lagged" {
            return true;
        }
        if self.no_tail {
            return false;
        }
        if item.kind != "tail" {
            // Dead letters are few and always wanted: a page filtering its tail still lists them.
            return true;
        }
        if !self.tables.is_empty() && !self.tables.iter().any(|t| **t == *item.table) {
            return false;
        }
        let mut row = None;
        for (table, field, value) in &self.rows {
            if **table != *item.table {
                continue;
            }
            let v = row.get_or_insert_with(|| {
                serde_json::from_str::<serde_json::Value>(&item.row).unwrap_or_default()
            });
            let ok = match v.get(field) {
                Some(serde_json::Value::String(s)) => s == value,
                // A number, bool or null by its JSON text (`7`, `true`), not as a string.
                Some(other) => {
                    let text = other.to_string();
                    text == *value
                }
                None => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// One SSE event's bytes.
fn encode_event(kind: &str, data: &str) -> Bytes {
    // `data` is one line of JSON (serde never writes a raw newline inside one).
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The response body of one subscriber: the encoded events its task sends.
#[derive(Debug)]
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Starts the subscriber's task: the backlog, then every new item it wants, until the client
/// goes or the feed closes. Returns the response body.
pub fn start(mut sub: Subscription, backlog: Vec<Item>, filter: Filter) -> SseBody {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        // The browser reconnects after 2 s when the stream breaks.
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        for item in backlog.iter().filter(|i| filter.wants(i)) {
            if tx.send(encode_event(item.kind, &item.data)).await.is_err() {
                return;
            }
        }
        if tx.send(encode_event("ready", "{}")).await.is_err() {
            return;
        }
        loop {
            let item = tokio::select! {
                r = sub.rx.recv() => r,
                _ = sub.closed.changed() => return,
            };
            let bytes = match item {
                Ok(item) if filter.wants(&item) => encode_event(item.kind, &item.data),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    encode_event("lagged", &format!("{{\"missed\":{n}}}"))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            tokio::select! {
                r = tx.send(bytes) => if r.is_err() { return },
                _ = sub.closed.changed() => return,
            }
        }
    });
    SseBody { rx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_and_filters_parse() {
        assert_eq!(decode("a%3Db+c%2"), "a=b c%2");
        assert_eq!(decode(&encode("k/é =&")), "k/é =&");
        let f = Filter::from_query("table=events.t&filter.events.t=user_id%3D7&tail=1").unwrap();
        assert_eq!(f.tables, ["events.t"]);
        assert_eq!(f.rows, [("events.t".into(), "user_id".into(), "7".into())]);
        let e = Filter::from_query("filter.events.t=nope").unwrap_err();
        assert!(e.contains("filter.events.t"), "{e}");
        assert!(Filter::from_query("bogus=1").unwrap_err().contains("bogus"));
    }
}
