//! Events dropped before routing, by the table (`namespace.type`) they were meant for.
//!
//! `log()` refuses an event (`queue_full`, `shut_down`, `invalid_envelope`) or the shutdown
//! drops what is still queued (`shutdown_deadline`) before the event has a destination, so the
//! process's own `evlog_events_dropped_total{reason}` cannot say which table lost it. These
//! counts can: the forward sink reports them to the collector, whose live page shows them beside
//! the table (see `sink::forward::report`).
//!
//! - Key: `namespace.type` as given to `log()`, when both names are plain ASCII (letters,
//!   digits, `_`, `-`, `.`) and the key fits [`MAX_KEY`] bytes. Otherwise [`INVALID`] for an
//!   envelope `log()` refused (names that break the envelope's rules land here), else [`OTHER`]
//!   (Unicode table names, which BigQuery allows but a metrics label does not).
//! - Bounded: once [`MAX_TABLES`] keys exist, events for other tables count under [`OTHER`]
//!   (so at most two keys more: [`INVALID`] and [`OTHER`]).
//! - Counted only on the drop path (a mutex there, never on a successful `log()`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::DropReason;

/// Most tables counted one by one.
pub const MAX_TABLES: usize = 64;
/// Longest key (`namespace.type`), in bytes: a label the collector takes.
pub const MAX_KEY: usize = 64;
/// The key of events whose names are not valid.
pub const INVALID: &str = "_invalid";
/// The key later tables count under.
pub const OTHER: &str = "_other_tables";

/// Drops per (table, reason).
#[derive(Debug, Default)]
pub(super) struct TableDrops {
    counts: Mutex<BTreeMap<(String, DropReason), u64>>,
}

/// Whether `s` is a name the key may hold (the envelope's name rules are at least this strict).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl TableDrops {
    /// `n` events meant for `namespace.type` dropped for `reason`.
    pub(super) fn add(&self, namespace: &str, type_name: &str, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let valid = plain(namespace)
            && plain(type_name)
            && namespace.len() + 1 + type_name.len() <= MAX_KEY;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = if !valid && reason == DropReason::InvalidEnvelope {
            INVALID.to_string()
        } else if !valid {
            // Valid names that are not plain ASCII (BigQuery allows Unicode table names), or
            // too long for a label.
            OTHER.to_string()
        } else {
            let key = format!("{namespace}.{type_name}");
            let known = counts.range((key.clone(), DropReason::ALL[0])..).next();
            if known.is_some_and(|((k, _), _)| *k == key) || tables(&counts) < MAX_TABLES {
                key
            } else {
                OTHER.to_string()
            }
        };
        *counts.entry((key, reason)).or_default() += n;
    }

    /// Table → reason label → count.
    pub(super) fn read(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((table, reason), n) in counts.iter() {
            out.entry(table.clone())
                .or_default()
                .insert(reason.as_str().to_string(), *n);
        }
        out
    }
}

/// Distinct tables counted (keys are sorted by table, so equal tables are adjacent).
fn tables(counts: &BTreeMap<(String, DropReason), u64>) -> usize {
    let mut n = 0;
    let mut last: Option<&str> = None;
    for (t, _) in counts.keys() {
        if last != Some(t.as_str()) {
            n += 1;
            last = Some(t);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_table_and_reason_bounded() {
        let d = TableDrops::default();
        d.add("shop", "order", DropReason::QueueFull, 2);
        d.add("shop", "order", DropReason::QueueFull, 1);
        d.add("shop", "order", DropReason::ShutDown, 1);
        d.add("", "order", DropReason::InvalidEnvelope, 1);
        d.add("shop", "a b", DropReason::InvalidEnvelope, 1);
        d.add("shop", "bestellung_ä", DropReason::QueueFull, 1);
        d.add("shop", "x", DropReason::QueueFull, 0);
        for i in 0..MAX_TABLES + 5 {
            d.add("t", &format!("n{i}"), DropReason::QueueFull, 1);
        }
        // A table counted before the bound was reached keeps its own key.
        d.add("shop", "order", DropReason::QueueFull, 1);
        let r = d.read();
        assert_eq!(r["shop.order"]["queue_full"], 4);
        assert_eq!(r["shop.order"]["shut_down"], 1);
        assert_eq!(r[INVALID]["invalid_envelope"], 2);
        assert!(!r.contains_key("shop.x"));
        assert_eq!(r.len(), MAX_TABLES, "{:?}", r.keys().collect::<Vec<_>>());
        let other: u64 = r[OTHER].values().sum();
        let named: u64 = r
            .iter()
            .filter(|(k, _)| k.starts_with("t."))
            .map(|(_, m)| m.values().sum::<u64>())
            .sum();
        assert_eq!(other + named, (MAX_TABLES + 5 + 1) as u64);
    }
}
