//! What a write-ahead log record holds: rows already validated and converted (by core's
//! processor at ingest, or by an SDK for `/v1/rows`) and dead letters, the `boot` id of the
//! collector process that acknowledged them (a later process replaying them counts them as
//! accepted by itself), and, with several destinations, which destinations each row and dead
//! letter goes to: routing (`[[routes]]`) is decided at ingest, so events are delivered under
//! the rules they were accepted with.
//!
//! ## Payloads
//! Told apart by the first byte. Integers are little-endian; a `str` is a `u32` byte length
//! then that many bytes of UTF-8.
//!
//! **Framed, one destination** (first byte [`FRAMED`], `0x02`), written by a collector with one
//! destination ([`RecordBuilder`]); binary, so streamers slice rows out without scanning JSON:
//!
//! ```text
//! u8   0x02
//! u64  boot
//! u32  number of tables N
//! N ×  u8 partitioned (1) or day-sharded (0), str dataset, str table, str day (YYYYMMDD),
//!      u32 rows in this table
//! str  dead letters: a JSON array of core's forward-wire `rejected` entries, or empty
//! then the rows of the first table, then of the second, …: each str id, str row JSON
//! ```
//!
//! **Framed, several destinations** (first byte [`FRAMED_ROUTED`], `0x03`): the same, plus the
//! destinations' names and a 64-bit mask (bit `i` = the `i`-th name) per table entry and per
//! dead letter. Rows of one table that go to different destinations are separate entries.
//!
//! ```text
//! u8   0x03
//! u64  boot
//! u32  number of destination names D, then D × str name
//! u32  number of table entries N
//! N ×  u8 partitioned, str dataset, str table, str day, u32 rows, u64 destinations mask
//! str  dead letters (as above)
//! u32  number of dead letters M, then M × u64 destinations mask, in the array's order
//! then the rows of each entry in order: each str id, str row JSON
//! ```
//!
//! **JSON** (first byte `{`, [`WalRecord`]), written for `/v1/rows` by earlier versions (it
//! writes framed records now) and still read: `{"boot":<u64>,"batches":[…],"rejected":[…]}`,
//! `batches` and `rejected` in core's forward wire format (`evlog_core::sink::forward::wire`),
//! each left out when empty.
//!
//! A record without destination masks (`0x02`, JSON) goes to the destination named `default`
//! when there is one (the one destination of a configuration with `[sink]`), otherwise to
//! every destination. A destination not named in a `0x03` record takes nothing from it (it was
//! added after the record was written). A payload that reads as none of these is skipped by
//! the streamers and counted in `evlog_sink_errors_total{sink="wal",kind="undecodable"}`.

use std::sync::Arc;

use evlog_core::destinations::DestinationSet;
use evlog_core::routing::{Destination, PartitionKind};
use evlog_core::sink::forward::wire::{WireBatch, WireRejected};
use evlog_core::sink::RejectedEvent;
use serde::{Deserialize, Serialize};

/// A JSON record: what one `/v1/rows` request brought (earlier versions). A record with other
/// members is not one this build reads: it reads as undecodable (counted) rather than losing
/// what it holds unseen.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalRecord {
    /// The writing process's boot id.
    pub boot: u64,
    /// Rows an SDK validated (`/v1/rows`, the forward sink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<WireBatch>,
    /// Events an SDK rejected, for the dead-letter tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<WireRejected>,
}

impl WalRecord {
    /// How many events the record holds.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.rows.len()).sum::<usize>() + self.rejected.len()
    }
}

/// First byte of a framed record for one destination (JSON records start with `{`).
pub const FRAMED: u8 = 0x02;
/// First byte of a framed record with destination masks.
pub const FRAMED_ROUTED: u8 = 0x03;

/// The mask a record without destinations (`0x02`, JSON) gives every entry.
pub const LEGACY_MASK: u64 = 1;

/// Builds one framed record (the format is in the module docs). Rows are core's converted JSON,
/// copied as they are.
#[derive(Debug)]
pub struct RecordBuilder {
    boot: u64,
    /// The destinations' names, with several (masks index them); empty with one.
    names: Arc<[String]>,
    /// Per table and mask: the table, the mask, its row count and its framed rows.
    batches: Vec<(Destination, u64, usize, Vec<u8>)>,
    rejected: Vec<(WireRejected, u64)>,
    /// Entries added: rows and dead letters, each for a set of destinations.
    n: usize,
    /// Of those, the further copies of an event already added ([`RecordBuilder::split_copy`]).
    split: usize,
    /// Copies per destination (rows and dead letters), with several.
    copies: Vec<u64>,
    /// Events of the request no route took, per table (for the live page).
    unrouted: crate::ui::Tally,
}

/// Rows per table of one record the live page's tail takes (the last ones): a 500-event batch
/// shows as its last rows, not 500 items.
pub const TAIL_PER_RECORD: usize = 32;

/// Header of a framed record.
#[derive(Debug)]
pub struct FramedHeader {
    /// The writing process's boot id.
    pub boot: u64,
    /// The destinations' names the masks index (`0x03`); `None` for a record without masks.
    pub names: Option<Vec<String>>,
    /// Tables, row counts and destination masks, in the order their rows follow.
    pub batches: Vec<(Destination, usize, u64)>,
    /// Dead letters and their destination masks.
    pub rejected: Vec<(WireRejected, u64)>,
}

impl FramedHeader {
    /// The mask bit(s) of the destination `name` in this record: an entry is the
    /// destination's when `entry_mask & bit != 0`. `takes_legacy`: whether the destination
    /// takes records without masks (see the module docs).
    pub fn bit_of(&self, name: &str, takes_legacy: bool) -> u64 {
        bit_in(self.names.as_deref(), name, takes_legacy)
    }
}

/// See [`FramedHeader::bit_of`]; `names` is `None` for a record without masks.
pub fn bit_in(names: Option<&[String]>, name: &str, takes_legacy: bool) -> u64 {
    match names {
        None => u64::from(takes_legacy) * LEGACY_MASK,
        Some(names) => names
            .iter()
            .position(|n| n == name)
            .filter(|i| *i < 64)
            .map_or(0, |i| 1 << i),
    }
}

/// Reads a framed record's header; the rows follow in the returned reader. `None` if it is not
/// a framed record or is malformed.
pub fn read_framed(payload: &[u8]) -> Option<(FramedHeader, FramedRows<'_>)> {
    let (&kind, rest) = payload.split_first()?;
    if kind != FRAMED && kind != FRAMED_ROUTED {
        return None;
    }
    let routed = kind == FRAMED_ROUTED;
    let mut r = FramedRows { rest };
    let boot = u64::from_le_bytes(r.bytes(8)?.try_into().ok()?);
    let names = if routed {
        let d = r.u32()? as usize;
        let mut names = Vec::with_capacity(d.min(64));
        for _ in 0..d {
            names.push(r.str()?.to_owned());
        }
        Some(names)
    } else {
        None
    };
    let n = r.u32()? as usize;
    let mut batches = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let partitioned = r.bytes(1)?[0] != 0;
        let dataset = r.str()?;
        let table = r.str()?;
        let day = r.str()?;
        let rows = r.u32()? as usize;
        let mask = if routed { r.u64()? } else { LEGACY_MASK };
        batches.push((
            Destination::from_parts(dataset, table, partitioned, day),
            rows,
            mask,
        ));
    }
    let rejected: Vec<WireRejected> = match r.str()? {
        "" => Vec::new(),
        text => serde_json::from_str(text).ok()?,
    };
    let rejected = if routed {
        let m = r.u32()? as usize;
        if m != rejected.len() {
            return None;
        }
        let mut out = Vec::with_capacity(m);
        for d in rejected {
            out.push((d, r.u64()?));
        }
        out
    } else {
        rejected.into_iter().map(|d| (d, LEGACY_MASK)).collect()
    };
    Some((
        FramedHeader {
            boot,
            names,
            batches,
            rejected,
        },
        r,
    ))
}

/// Reads the fields of a framed record in order.
#[derive(Debug)]
pub struct FramedRows<'a> {
    rest: &'a [u8],
}

impl<'a> FramedRows<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.rest.get(..n)?;
        self.rest = &self.rest[n..];
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.bytes(len)?).ok()
    }

    /// The next row: (id, row JSON).
    pub fn next_row(&mut self) -> Option<(&'a str, &'a str)> {
        let id = self.str()?;
        let json = self.str()?;
        Some((id, json))
    }

    /// Skips `n` rows (another destination's).
    pub fn skip_rows(&mut self, n: usize) -> bool {
        (0..n).all(|_| self.next_row().is_some())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl RecordBuilder {
    /// An empty record of the process `boot`, for the destinations `names` (with one, pass
    /// none: the record is written without masks, `0x02`).
    pub fn new(boot: u64, names: Arc<[String]>) -> Self {
        let copies = vec![0; names.len()];
        Self {
            boot,
            names,
            batches: Vec::new(),
            rejected: Vec::new(),
            n: 0,
            split: 0,
            copies,
            unrouted: crate::ui::Tally::default(),
        }
    }

    /// Counts one event of `namespace.type` no route took for the live page's table counts
    /// (the request counts it in `unrouted` itself).
    pub fn unrouted_table(&mut self, namespace: &str, type_name: &str) {
        self.unrouted.unrouted(namespace, type_name);
    }

    /// What the record adds to the live page: copies per table, the unrouted events, and up to
    /// `budget` items for the tail: of each table its last rows (at most [`TAIL_PER_RECORD`]),
    /// then its dead letters.
    pub fn tally(&mut self, mut budget: usize) -> crate::ui::Tally {
        let mut t = std::mem::take(&mut self.unrouted);
        let copies = |mask: u64| {
            if self.names.is_empty() {
                1
            } else {
                u64::from(mask.count_ones().max(1))
            }
        };
        for (dest, mask, n, rows) in &self.batches {
            t.accept(&dest.dataset, &dest.table, *n as u64 * copies(*mask));
            let take = (*n).min(TAIL_PER_RECORD).min(budget);
            if take > 0 {
                budget -= take;
                let mut r = FramedRows { rest: rows };
                let skip = n - take;
                if r.skip_rows(skip) {
                    while let Some((id, json)) = r.next_row() {
                        t.row(dest, id, json);
                    }
                }
            }
        }
        for (w, mask) in &self.rejected {
            t.accept(&w.dataset, &w.type_name, copies(*mask));
            if budget > 0 {
                budget -= 1;
                t.dead(w);
            }
        }
        t
    }

    /// Events added so far: an event added as several copies ([`RecordBuilder::split_copy`])
    /// counts once.
    pub fn len(&self) -> usize {
        self.n - self.split.min(self.n)
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Says that one entry added (before or after this call) is a further copy of an event
    /// already counted: `[[transforms]]` that differ per destination make one entry per
    /// destination of one event, and the event is still one event (`accepted` counts events;
    /// the copies count per destination and as `fanned_out`).
    pub fn split_copy(&mut self) {
        self.split += 1;
    }

    /// Copies added per destination (empty with one destination).
    pub fn copies(&self) -> &[u64] {
        &self.copies
    }

    fn count(&mut self, to: DestinationSet) -> u64 {
        self.n += 1;
        for i in to.iter() {
            if let Some(c) = self.copies.get_mut(i) {
                *c += 1;
            }
        }
        if self.names.is_empty() {
            LEGACY_MASK
        } else {
            to.iter().filter(|i| *i < 64).fold(0, |m, i| m | 1 << i)
        }
    }

    /// Adds a converted row (`json` is core's row object text) for the destinations `to`.
    pub fn push_row(&mut self, dest: &Destination, to: DestinationSet, id: &str, json: &str) {
        let mask = self.count(to);
        let i = match self
            .batches
            .iter()
            .position(|(d, m, _, _)| *m == mask && d == dest)
        {
            Some(i) => i,
            None => {
                self.batches.push((dest.clone(), mask, 0, Vec::new()));
                self.batches.len() - 1
            }
        };
        let (_, _, n, out) = &mut self.batches[i];
        out.reserve(8 + id.len() + json.len());
        put_str(out, id);
        put_str(out, json);
        *n += 1;
    }

    /// Adds a dead letter for the destinations `to`.
    pub fn push_rejected(&mut self, e: &RejectedEvent, to: DestinationSet) {
        self.push_wire_rejected(WireRejected::from(e), to);
    }

    /// Adds a dead letter in its wire form for the destinations `to`.
    pub fn push_wire_rejected(&mut self, e: WireRejected, to: DestinationSet) {
        let mask = self.count(to);
        self.rejected.push((e, mask));
    }

    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        let routed = !self.names.is_empty();
        let (dead, masks): (Vec<WireRejected>, Vec<u64>) = self.rejected.into_iter().unzip();
        let rejected = if dead.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&dead).unwrap_or_else(|_| "[]".into())
        };
        let rows: usize = self.batches.iter().map(|(_, _, _, r)| r.len()).sum();
        let mut out = Vec::with_capacity(32 + self.batches.len() * 72 + rejected.len() + rows);
        out.push(if routed { FRAMED_ROUTED } else { FRAMED });
        out.extend_from_slice(&self.boot.to_le_bytes());
        if routed {
            out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
            for n in self.names.iter() {
                put_str(&mut out, n);
            }
        }
        out.extend_from_slice(&(self.batches.len() as u32).to_le_bytes());
        for (d, mask, n, _) in &self.batches {
            out.push(u8::from(d.partitioning == PartitionKind::Partitioned));
            put_str(&mut out, &d.dataset);
            put_str(&mut out, &d.table);
            put_str(&mut out, &d.day);
            out.extend_from_slice(&(*n as u32).to_le_bytes());
            if routed {
                out.extend_from_slice(&mask.to_le_bytes());
            }
        }
        put_str(&mut out, &rejected);
        if routed {
            out.extend_from_slice(&(masks.len() as u32).to_le_bytes());
            for m in masks {
                out.extend_from_slice(&m.to_le_bytes());
            }
        }
        for (_, _, _, r) in &self.batches {
            out.extend_from_slice(r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(t: &str) -> Destination {
        Destination {
            dataset: "events".into(),
            table: t.into(),
            partitioning: PartitionKind::DayShard,
            day: "20261122".into(),
        }
    }

    fn rejected(id: &str) -> RejectedEvent {
        RejectedEvent {
            dataset: "events".into(),
            event_id: id.into(),
            namespace: "events".into(),
            type_name: "nope".into(),
            event_time: Some(1),
            received_at: 2,
            reason: "unknown_table",
            field: None,
            error: "no schema".into(),
            raw: "{}".into(),
        }
    }

    const ONE: DestinationSet = DestinationSet::EMPTY;

    fn set(ix: &[usize]) -> DestinationSet {
        let mut s = ONE;
        for i in ix {
            s.insert(*i);
        }
        s
    }

    #[test]
    fn json_records_hold_rows_and_dead_letters_only() {
        let rows = br#"{"boot":3,"batches":[{"dataset":"events","table":"t","partitioned":true,"day":"20261122","rows":[{"id":"a","json":{"x":1}}]}]}"#;
        let r: WalRecord = serde_json::from_slice(rows).expect("a /v1/rows record");
        assert_eq!((r.boot, r.len()), (3, 1));
        // Anything else is not a record this build wrote: undecodable, not read in part.
        let other = br#"{"boot":3,"events":[{"namespace":"events","type":"t","time":null,"received_at":1,"id":"b","event":{}}]}"#;
        assert!(serde_json::from_slice::<WalRecord>(other).is_err());
    }

    #[test]
    fn framed_records_read_back() {
        let mut b = RecordBuilder::new(7, Arc::from(Vec::new()));
        b.push_row(&dest("a"), set(&[0]), "id-1", r#"{"x":"\n"}"#);
        b.push_row(&dest("b"), set(&[0]), "id-2", "{}");
        b.push_row(&dest("a"), set(&[0]), "id-3", r#"{"y":[1]}"#);
        assert_eq!(b.len(), 3);
        let payload = b.finish();
        assert_eq!(payload[0], FRAMED, "one destination: the format of before");
        let (h, mut rows) = read_framed(&payload).expect("framed");
        assert_eq!((h.boot, h.names.clone()), (7, None));
        let got: Vec<(String, usize, u64)> = h
            .batches
            .iter()
            .map(|(d, n, m)| (d.table.to_string(), *n, *m))
            .collect();
        assert_eq!(got, vec![("a".to_string(), 2, 1), ("b".to_string(), 1, 1)]);
        assert_eq!(rows.next_row(), Some(("id-1", r#"{"x":"\n"}"#)));
        assert_eq!(rows.next_row(), Some(("id-3", r#"{"y":[1]}"#)));
        assert_eq!(rows.next_row(), Some(("id-2", "{}")));
        assert_eq!(rows.next_row(), None);
        assert!(h.rejected.is_empty());
        assert!(read_framed(b"{\"boot\":1}").is_none());
        assert_eq!(h.bit_of("default", true), 1);
        assert_eq!(h.bit_of("other", false), 0);

        let mut b = RecordBuilder::new(8, Arc::from(Vec::new()));
        b.push_rejected(&rejected("id-9"), set(&[0]));
        b.push_row(&dest("a"), set(&[0]), "id-4", "{}");
        assert_eq!(b.len(), 2);
        let payload = b.finish();
        let (h, mut rows) = read_framed(&payload).expect("framed");
        assert_eq!(h.rejected.len(), 1);
        assert_eq!(h.rejected[0].0.event_id, "id-9");
        assert_eq!(h.rejected[0].0.reason, "unknown_table");
        assert_eq!(rows.next_row(), Some(("id-4", "{}")));
        assert!(
            // A torn row (never happens past the spool's CRC) reads as the end of the rows.
            read_framed(&payload[..payload.len() - 1])
                .is_some_and(|(_, mut r)| r.next_row().is_none())
        );
    }

    #[test]
    fn an_event_split_into_copies_per_destination_counts_once() {
        let names: Arc<[String]> = Arc::from(vec!["live".to_string(), "warehouse".to_string()]);
        let mut b = RecordBuilder::new(9, names);
        b.push_row(&dest("a"), set(&[0, 1]), "both", "{}");
        // Transforms per destination: one entry per copy, the second a dead letter.
        b.push_row(&dest("a"), set(&[0]), "split", "{\"for\":\"live\"}");
        b.split_copy();
        b.push_rejected(&rejected("split"), set(&[1]));
        assert_eq!((b.len(), b.copies()), (2, &[2, 2][..]));
        assert!(!b.is_empty());
    }

    #[test]
    fn routed_records_say_which_destinations_take_each_row() {
        let names: Arc<[String]> = Arc::from(vec!["live".to_string(), "warehouse".to_string()]);
        let mut b = RecordBuilder::new(9, names);
        b.push_row(&dest("a"), set(&[0, 1]), "both", "{}");
        b.push_row(&dest("a"), set(&[1]), "w", "{\"w\":1}");
        b.push_row(&dest("a"), set(&[0, 1]), "both-2", "{}");
        b.push_rejected(&rejected("dl"), set(&[0]));
        assert_eq!(b.copies(), [3, 3]);
        assert_eq!(b.len(), 4);
        let payload = b.finish();
        assert_eq!(payload[0], FRAMED_ROUTED);
        let (h, mut rows) = read_framed(&payload).expect("framed");
        assert_eq!(
            h.names.as_deref(),
            Some(&["live".to_string(), "warehouse".to_string()][..])
        );
        let (live, wh) = (h.bit_of("live", true), h.bit_of("warehouse", true));
        assert_eq!((live, wh, h.bit_of("new", true)), (1, 2, 0));
        let entries: Vec<(usize, u64)> = h.batches.iter().map(|(_, n, m)| (*n, *m)).collect();
        assert_eq!(entries, [(2, 3), (1, 2)]);
        assert_eq!(h.rejected.len(), 1);
        assert_eq!(h.rejected[0].1, live);
        assert_eq!(rows.next_row(), Some(("both", "{}")));
        assert!(rows.skip_rows(1));
        assert_eq!(rows.next_row(), Some(("w", "{\"w\":1}")));
        assert!(read_framed(&payload[..payload.len() - 3])
            .is_some_and(|(_, mut r)| r.skip_rows(2) && r.next_row().is_none()));
    }
}
