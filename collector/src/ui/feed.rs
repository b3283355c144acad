//! The live page's state: counts per table, recent events per table (the tail), recent dead
//! letters, and a snapshot of every count once a second for the last minutes; and the
//! broadcast that carries new items to the page's subscribers ([`super::sse`]).
//!
//! Contracts:
//! - **Counts per table** (`dataset.table` as the row lands; a dead letter under its dataset and
//!   event type, an event no route takes under its `namespace.type`): `accepted` copies once
//!   their log record is durable (with `unrouted` drops), `rejected` by reason once the dead
//!   letter is stored, `dropped` by reason; `delivered` is the destinations' own per-table count.
//!   At most [`MAX_TABLES`] tables; later ones count under [`OTHER`].
//! - **Tail and dead letters** are captured only while someone watches (a subscriber exists):
//!   without one, ingest pays one relaxed atomic load per request. While watched, at most
//!   [`CAPTURE_PER_SECOND`] items a second ([`Feed::capture_budget`]). Each table keeps its last
//!   [`TAIL_PER_TABLE`] events of at most [`MAX_ITEM_BYTES`] each (longer rows are cut and sent
//!   as text), for at most [`MAX_TAIL_TABLES`] tables; [`MAX_DEAD`] dead letters.
//! - **Snapshots**: one a second ([`Feed::publish_snapshot`], from a task the collector runs),
//!   the last [`HISTORY`] kept, so a page opened now draws the last minutes at once.
//! - Memory is bounded by these constants and by the broadcast's [`CHANNEL`] items: a
//!   subscriber that reads slower than items come skips ahead and is told how many it missed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use evlog_core::json::push_str;
use evlog_core::routing::Destination;
use evlog_core::sink::forward::wire::WireRejected;
use evlog_core::sink::RejectedEvent;
use tokio::sync::{broadcast, watch};

/// Most tables counted one by one.
pub const MAX_TABLES: usize = 256;
/// The table later tables count under.
pub const OTHER: &str = "(other tables)";
/// Events kept per table for the tail.
pub const TAIL_PER_TABLE: usize = 100;
/// Most tables with a tail.
pub const MAX_TAIL_TABLES: usize = 64;
/// Dead letters kept.
pub const MAX_DEAD: usize = 100;
/// Bytes of a row or raw event kept in an item (longer ones are cut).
pub const MAX_ITEM_BYTES: usize = 4096;
/// Snapshots kept: one a second.
pub const HISTORY: usize = 300;
/// Items the broadcast holds for its slowest subscriber.
pub const CHANNEL: usize = 1024;
/// Rows and dead letters captured a second at most, for all tables: beyond, the tail is a
/// sample (the last rows of each request while the second's budget lasts). A page cannot show
/// more, and the cost of watching stays small under any load.
pub const CAPTURE_PER_SECOND: usize = 500;
/// Most subscribers at once (the page, `top`, `tail`): the next one gets 503.
pub const MAX_SUBSCRIBERS: usize = 16;

/// One table's counts (`delivered` is the destinations').
#[derive(Debug, Default, Clone)]
pub struct TableCounts {
    /// Copies accepted (durable in the log), replayed ones included.
    pub accepted: u64,
    /// Dead letters stored, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

/// What one request adds to the per-table counts, applied once its record is durable; and,
/// while someone watches, its rows and dead letters for the tail.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// `(table, accepted copies, unrouted)`, few per request: searched linearly.
    tables: Vec<(String, u64, u64)>,
    /// Rows and dead letters for the tail (empty unless watched).
    items: Vec<Item>,
}

impl Tally {
    fn entry(&mut self, dataset: &str, table: &str) -> &mut (String, u64, u64) {
        let same = |k: &str| {
            k.len() == dataset.len() + 1 + table.len()
                && k.starts_with(dataset)
                && k.ends_with(table)
                && k.as_bytes()[dataset.len()] == b'.'
        };
        let i = match self.tables.iter().position(|(k, _, _)| same(k)) {
            Some(i) => i,
            None => {
                self.tables.push((format!("{dataset}.{table}"), 0, 0));
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    /// `n` copies for `dataset.table` in the record.
    pub fn accept(&mut self, dataset: &str, table: &str, n: u64) {
        self.entry(dataset, table).1 += n;
    }

    /// One event of `namespace.type` no route took (accepted and dropped `unrouted`).
    pub fn unrouted(&mut self, namespace: &str, type_name: &str) {
        let e = self.entry(namespace, type_name);
        e.1 += 1;
        e.2 += 1;
    }

    /// A row for the tail.
    pub fn row(&mut self, dest: &Destination, id: &str, json: &str) {
        self.items.push(Item::row(
            format!("{}.{}", dest.dataset, dest.table),
            id,
            json,
        ));
    }

    /// The rows and dead letters for the tail, taken out.
    pub fn take_items(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.items)
    }

    /// A dead letter made at ingest for the tail.
    pub fn dead(&mut self, w: &WireRejected) {
        self.items.push(Item::dead(w, "ingest"));
    }
}

/// An item for subscribers: its SSE event name, its table, and its data (JSON text).
#[derive(Debug, Clone)]
pub struct Item {
    /// `snapshot`, `tail` or `dead`.
    pub kind: &'static str,
    /// The table of a `tail` or `dead` item.
    pub table: Arc<str>,
    /// The row text of a `tail` item (for filters), possibly cut.
    pub row: Arc<str>,
    /// The event's data line.
    pub data: Arc<str>,
}

/// `s` cut to at most `max` bytes on a character boundary; whether it was cut.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Item {
    /// A converted row of `table`: `{"t","table","id","row"}`, `row` the object itself, or
    /// its text cut to [`MAX_ITEM_BYTES`] with `"cut": true`.
    fn row(table: String, id: &str, json: &str) -> Self {
        let (text, was_cut) = cut(json, MAX_ITEM_BYTES);
        let mut data = String::with_capacity(text.len() + table.len() + id.len() + 48);
        data.push_str("{\"t\":");
        data.push_str(&now_ms().to_string());
        data.push_str(",\"table\":");
        push_str(&mut data, &table);
        data.push_str(",\"id\":");
        push_str(&mut data, id);
        data.push_str(",\"row\":");
        if was_cut {
            push_str(&mut data, text);
            data.push_str(",\"cut\":true");
        } else {
            data.push_str(text);
        }
        data.push('}');
        Self {
            kind: "tail",
            table: table.into(),
            row: text.into(),
            data: data.into(),
        }
    }

    /// A dead letter: `{"t","table","namespace","type","id","reason","field","error","raw",
    /// "at"}`, `at` = `ingest` (refused when it came) or `sink` (the destination refused it).
    pub fn dead(w: &WireRejected, at: &str) -> Self {
        let table = format!("{}.{}", w.dataset, w.type_name);
        let (raw, _) = cut(&w.raw, MAX_ITEM_BYTES);
        let (error, _) = cut(&w.error, MAX_ITEM_BYTES);
        let v = serde_json::json!({
            "t": now_ms(),
            "table": table,
            "namespace": w.namespace,
            "type": w.type_name,
            "id": w.event_id,
            "reason": w.reason,
            "field": w.field,
            "error": error,
            "raw": raw,
            "at": at,
        });
        Self {
            kind: "dead",
            table: table.into(),
            row: Arc::from(""),
            data: v.to_string().into(),
        }
    }

    fn snapshot(data: Arc<str>) -> Self {
        Self {
            kind: "snapshot",
            table: Arc::from(""),
            row: Arc::from(""),
            data,
        }
    }
}

/// The live page's state (see the module docs).
#[derive(Debug)]
pub struct Feed {
    watchers: AtomicUsize,
    /// The second of `captured` (Unix time).
    second: AtomicU64,
    /// Rows and dead letters captured in `second`.
    captured: AtomicUsize,
    tables: Mutex<BTreeMap<String, TableCounts>>,
    tails: Mutex<BTreeMap<Arc<str>, VecDeque<Item>>>,
    dead: Mutex<VecDeque<Item>>,
    history: Mutex<VecDeque<Item>>,
    tx: broadcast::Sender<Item>,
    closed: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            second: AtomicU64::new(0),
            captured: AtomicUsize::new(0),
            tables: Mutex::default(),
            tails: Mutex::default(),
            dead: Mutex::default(),
            history: Mutex::default(),
            tx: broadcast::channel(CHANNEL).0,
            closed: watch::channel(false).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or push: a panic cannot leave a map half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A subscriber's place: counted in [`Feed::watching`] until dropped.
#[derive(Debug)]
pub struct Subscription {
    feed: Arc<Feed>,
    /// New items.
    pub rx: broadcast::Receiver<Item>,
    /// Becomes true at shutdown: the subscriber ends its stream.
    pub closed: watch::Receiver<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Feed {
    /// Whether someone watches: only then are rows and dead letters captured.
    #[inline]
    pub fn watching(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// How many of `want` rows and dead letters may be captured now: 0 unless someone
    /// watches, and at most [`CAPTURE_PER_SECOND`] a second.
    pub fn capture_budget(&self, want: usize) -> usize {
        if !self.watching() || want == 0 {
            return 0;
        }
        let now = now_ms() / 1000;
        // Two requests starting a second at once may both reset: a few more items, no harm.
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.captured.store(0, Ordering::Relaxed);
        }
        let used = self.captured.fetch_add(want, Ordering::Relaxed);
        CAPTURE_PER_SECOND.saturating_sub(used).min(want)
    }

    /// A new subscriber, or `None` past [`MAX_SUBSCRIBERS`] or after [`Feed::close`].
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        if *self.closed.borrow() {
            return None;
        }
        let n = self.watchers.fetch_add(1, Ordering::Relaxed);
        let sub = Subscription {
            feed: Arc::clone(self),
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
        };
        (n < MAX_SUBSCRIBERS).then_some(sub)
    }

    /// Ends every subscriber's stream (at shutdown: the drain must not wait for them).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether [`Feed::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// What a new subscriber gets first: the kept snapshots, dead letters and tails, oldest
    /// first.
    pub fn backlog(&self) -> Vec<Item> {
        let mut out: Vec<Item> = lock(&self.history).iter().cloned().collect();
        out.extend(lock(&self.dead).iter().cloned());
        for t in lock(&self.tails).values() {
            out.extend(t.iter().cloned());
        }
        out
    }

    fn table<'m>(m: &'m mut BTreeMap<String, TableCounts>, key: &str) -> &'m mut TableCounts {
        let key = if m.contains_key(key) || m.len() < MAX_TABLES {
            key
        } else {
            OTHER
        };
        m.entry(key.to_owned()).or_default()
    }

    /// Applies a durable request's counts (from the log's acceptance callback).
    pub fn count(&self, t: &Tally) {
        if t.tables.is_empty() {
            return;
        }
        let mut m = lock(&self.tables);
        for (k, accepted, unrouted) in &t.tables {
            let c = Self::table(&mut m, k);
            c.accepted += accepted;
            if *unrouted > 0 {
                *c.dropped.entry("unrouted").or_default() += unrouted;
            }
        }
    }

    /// Publishes a durable request's rows and dead letters ([`Tally::take_items`]).
    pub fn publish(&self, items: Vec<Item>) {
        for item in items {
            self.push(item);
        }
    }

    /// `n` copies of `table` read from a record an earlier process accepted.
    pub fn replayed(&self, table: &str, n: u64) {
        Self::table(&mut lock(&self.tables), table).accepted += n;
    }

    /// Dead letters a destination stored (`stored`: rejected by their reason) or that their
    /// table refused for good (`refused`: dropped, `dead_letter_failed`).
    pub fn settled(&self, stored: &[RejectedEvent], refused: &[(RejectedEvent, String)]) {
        if stored.is_empty() && refused.is_empty() {
            return;
        }
        let mut m = lock(&self.tables);
        for r in stored {
            let c = Self::table(&mut m, &format!("{}.{}", r.dataset, r.type_name));
            *c.rejected.entry(r.reason.to_owned()).or_default() += 1;
        }
        for (r, _) in refused {
            let c = Self::table(&mut m, &format!("{}.{}", r.dataset, r.type_name));
            *c.dropped.entry("dead_letter_failed").or_default() += 1;
        }
    }

    /// The counts per table now.
    pub fn tables(&self) -> BTreeMap<String, TableCounts> {
        lock(&self.tables).clone()
    }

    /// Keeps a snapshot (JSON text) and sends it to subscribers.
    pub fn publish_snapshot(&self, json: String) {
        let item = Item::snapshot(json.into());
        {
            let mut h = lock(&self.history);
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(item.clone());
        }
        let _ = self.tx.send(item);
    }

    /// Keeps a tail or dead-letter item and sends it to subscribers.
    pub fn push(&self, item: Item) {
        if item.kind == "dead" {
            let mut d = lock(&self.dead);
            if d.len() == MAX_DEAD {
                d.pop_front();
            }
            d.push_back(item.clone());
        } else {
            let mut tails = lock(&self.tails);
            let fits = tails.contains_key(&item.table) || tails.len() < MAX_TAIL_TABLES;
            if fits {
                let t = tails.entry(Arc::clone(&item.table)).or_default();
                if t.len() == TAIL_PER_TABLE {
                    t.pop_front();
                }
                t.push_back(item.clone());
            }
        }
        let _ = self.tx.send(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_tables_without_mixing_prefixes() {
        let mut t = Tally::default();
        t.accept("events", "page_view", 2);
        t.accept("events", "page", 1);
        t.accept("event", "s.page_view", 1);
        t.unrouted("events", "page");
        let feed = Feed::default();
        feed.count(&t);
        let m = feed.tables();
        assert_eq!(m["events.page_view"].accepted, 2);
        assert_eq!(m["events.page"].accepted, 2);
        assert_eq!(m["events.page"].dropped["unrouted"], 1);
        assert_eq!(m["event.s.page_view"].accepted, 1);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn rings_are_bounded_and_rows_are_cut() {
        let feed = Feed::default();
        let dest = Destination::from_parts("events", "t", true, "20260101");
        for i in 0..(TAIL_PER_TABLE + 5) {
            let mut t = Tally::default();
            t.row(&dest, &i.to_string(), "{\"a\":1}");
            feed.publish(t.take_items());
        }
        let long = format!("{{\"a\":\"{}\"}}", "é".repeat(MAX_ITEM_BYTES));
        let mut t = Tally::default();
        t.row(&dest, "long", &long);
        feed.publish(t.take_items());
        let backlog = feed.backlog();
        assert_eq!(backlog.len(), TAIL_PER_TABLE);
        let last = backlog.last().unwrap();
        assert!(last.row.len() <= MAX_ITEM_BYTES);
        let v: serde_json::Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(v["cut"], true);
        for i in 0..(HISTORY + 3) {
            feed.publish_snapshot(format!("{{\"n\":{i}}}"));
        }
        assert_eq!(feed.backlog().len(), HISTORY + TAIL_PER_TABLE);
    }

    #[test]
    fn capture_is_off_unwatched_and_bounded_per_second() {
        let feed = Arc::new(Feed::default());
        assert_eq!(feed.capture_budget(10), 0);
        let _sub = feed.subscribe();
        // Within one second (a second boundary in between would only give more).
        let a = feed.capture_budget(CAPTURE_PER_SECOND - 100);
        let b = feed.capture_budget(400);
        assert_eq!(a, CAPTURE_PER_SECOND - 100);
        assert!(b == 100 || b == 400, "{b}");
    }

    #[test]
    fn subscribers_are_capped_and_counted() {
        let feed = Arc::new(Feed::default());
        assert!(!feed.watching());
        let subs: Vec<_> = (0..MAX_SUBSCRIBERS).map(|_| feed.subscribe()).collect();
        assert!(subs.iter().all(Option::is_some));
        assert!(feed.watching());
        assert!(feed.subscribe().is_none());
        drop(subs);
        assert!(!feed.watching());
        feed.close();
        assert!(feed.subscribe().is_none());
    }
}
