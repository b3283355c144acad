//! What SDK processes report about themselves (`POST /v1/report`, sent by the forward sink
//! every `sink.forward.report_interval` and at shutdown), summed per app and host for
//! `/metrics`, so drops before the collector (a full queue in a PHP worker) are seen beside the
//! collector's own counts.
//!
//! # Contract
//! - The latest report of each process (by its random `process` id) is kept; a process's
//!   counters only grow, so its latest report holds its totals.
//! - Per (app, host), `/metrics` shows the sum over the processes that report now plus what
//!   processes that stopped had reported last (`evlog_sdk_events_*_total`, monotonic: a worker
//!   recycled by php-fpm keeps its share), and gauges over the live ones only
//!   (`evlog_sdk_processes`, `evlog_sdk_queue_events`). A process is live until its last
//!   report (`last`, at shutdown) or until it is silent for three of its intervals (it died):
//!   then its gauges are gone and its totals are folded into the (app, host) sums, so a dead
//!   process leaves no stale reading behind and no total goes down.
//! - Drops before routing (`log()` refused the event: queue full, shut down, invalid; or it was
//!   still queued at the shutdown deadline) also come by the table they were meant for
//!   (`counters.dropped_by_table`, `namespace.type`): `/metrics` sums them over apps and hosts
//!   per table and reason (`evlog_sdk_table_events_dropped_total`), and the live page shows
//!   them beside the table ([`Reports::dropped_by_table`]).
//! - Bounded: at most [`MAX_PROCESSES`] live processes (past it a new process's report is
//!   refused with 429 until others end), [`MAX_GROUPS`] (app, host) pairs, [`MAX_REASONS`]
//!   reasons per report and [`MAX_TABLES`] tables per report and per (app, host) (later tables
//!   are summed under `_other_tables`); labels must pass `wire::valid_label`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use evlog_core::counters::{write_header, write_sample};
use evlog_core::sink::forward::wire::{valid_label, Report, ReportCounters};

/// Most processes tracked at once.
pub const MAX_PROCESSES: usize = 10_000;
/// Most (app, host) pairs kept.
pub const MAX_GROUPS: usize = 1_000;
/// Most reasons in one report's `rejected` or `dropped`.
pub const MAX_REASONS: usize = 64;
/// Most tables in one report's `dropped_by_table`, and per (app, host).
pub const MAX_TABLES: usize = 64;
/// Most tables in the sum over every app and host.
pub const MAX_TABLE_SUM: usize = 256;
/// The table later tables are summed under.
const OTHER_TABLES: &str = "_other_tables";
/// A process silent for this many of its intervals is taken for dead.
const SILENT_INTERVALS: u32 = 3;
/// The least and most interval a report may declare (clamped).
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// Why a report was refused (the answer's message).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A field breaks a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        rule: String,
    },
    /// Too many processes or (app, host) pairs.
    #[error("{0}")]
    Full(String),
}

#[derive(Debug)]
struct Live {
    group: (String, String),
    counters: ReportCounters,
    expires: Instant,
}

/// Reports received, per process and per (app, host).
#[derive(Debug, Default)]
pub struct Reports {
    inner: Mutex<Inner>,
}

/// Totals per (app, host), and (live processes, their queued events) per (app, host).
type Summary = (
    BTreeMap<(String, String), ReportCounters>,
    BTreeMap<(String, String), (u64, u64)>,
);

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Live>,
    /// Per (app, host): the totals of processes no longer live.
    ended: BTreeMap<(String, String), ReportCounters>,
}

fn add(into: &mut ReportCounters, c: &ReportCounters) {
    into.accepted += c.accepted;
    into.delivered += c.delivered;
    into.spooled += c.spooled;
    for (r, n) in &c.rejected {
        *into.rejected.entry(r.clone()).or_default() += n;
    }
    for (r, n) in &c.dropped {
        *into.dropped.entry(r.clone()).or_default() += n;
    }
    add_tables(&mut into.dropped_by_table, &c.dropped_by_table, MAX_TABLES);
}

/// Per table and reason.
type ByTable = BTreeMap<String, BTreeMap<String, u64>>;

/// Adds `from` to `into`, keeping at most `cap` tables (later ones go under `_other_tables`).
fn add_tables(into: &mut ByTable, from: &ByTable, cap: usize) {
    for (table, reasons) in from {
        let key = if into.contains_key(table) || into.len() < cap {
            table.clone()
        } else {
            OTHER_TABLES.to_string()
        };
        let into = into.entry(key).or_default();
        for (r, n) in reasons {
            *into.entry(r.clone()).or_default() += n;
        }
    }
}

/// Checks a report's fields (see the module docs).
fn check(r: &Report) -> Result<(), ReportError> {
    let invalid = |field, rule: &str| {
        Err(ReportError::Invalid {
            field,
            rule: rule.into(),
        })
    };
    if r.process.len() != 16 || !r.process.bytes().all(|b| b.is_ascii_hexdigit()) {
        return invalid("process", "must be 16 hex digits");
    }
    if !valid_label(&r.app) {
        return invalid("app", "must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    if !valid_label(&r.host) {
        return invalid("host", "must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    let tables = &r.counters.dropped_by_table;
    if tables.len() > MAX_TABLES {
        return invalid("counters.dropped_by_table", "has more than 64 tables");
    }
    if !tables.keys().all(|k| valid_label(k)) {
        return invalid(
            "counters.dropped_by_table",
            "tables must be 1 to 64 letters, digits, '.', '_' or '-'",
        );
    }
    for (field, reasons) in [
        ("counters.rejected", &r.counters.rejected),
        ("counters.dropped", &r.counters.dropped),
    ]
    .into_iter()
    .chain(
        tables
            .values()
            .map(|reasons| ("counters.dropped_by_table", reasons)),
    ) {
        if reasons.len() > MAX_REASONS {
            return invalid(field, "has more than 64 reasons");
        }
        if !reasons.keys().all(|k| valid_label(k)) {
            return invalid(
                field,
                "reasons must be 1 to 64 letters, digits, '.', '_' or '-'",
            );
        }
    }
    Ok(())
}

impl Reports {
    /// Takes a report received at `now`.
    pub fn take(&self, r: Report, now: Instant) -> Result<(), ReportError> {
        check(&r)?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        let group = (r.app, r.host);
        if !inner.live.contains_key(&r.process) {
            if inner.live.len() >= MAX_PROCESSES {
                return Err(ReportError::Full(format!(
                    "{MAX_PROCESSES} SDK processes report already; try again later"
                )));
            }
            let known =
                inner.ended.contains_key(&group) || inner.live.values().any(|l| l.group == group);
            if !known && inner.groups() >= MAX_GROUPS {
                return Err(ReportError::Full(format!(
                    "{MAX_GROUPS} (app, host) pairs report already"
                )));
            }
        }
        let interval =
            Duration::from_millis(r.interval_ms).clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
        if r.last {
            inner.live.remove(&r.process);
            add(inner.ended.entry(group).or_default(), &r.counters);
            return Ok(());
        }
        inner.live.insert(
            r.process,
            Live {
                group,
                counters: r.counters,
                expires: now + interval * SILENT_INTERVALS,
            },
        );
        Ok(())
    }

    /// Per (app, host) at `now`: the totals and the live processes' count and queued events
    /// (see the module docs).
    fn summary(&self, now: Instant) -> Summary {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        let mut totals = inner.ended.clone();
        let mut gauges: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for l in inner.live.values() {
            add(totals.entry(l.group.clone()).or_default(), &l.counters);
            let g = gauges.entry(l.group.clone()).or_default();
            g.0 += 1;
            g.1 += l.counters.queue_events;
        }
        (totals, gauges)
    }

    /// Drops before routing per table and reason, summed over every app and host (at most
    /// [`MAX_TABLE_SUM`] tables), for `/metrics` and the live page's tables.
    pub fn dropped_by_table(&self, now: Instant) -> BTreeMap<String, BTreeMap<String, u64>> {
        let (totals, _) = self.summary(now);
        let mut sum = ByTable::new();
        for c in totals.values() {
            add_tables(&mut sum, &c.dropped_by_table, MAX_TABLE_SUM);
        }
        sum
    }

    /// The summary as JSON for the live page: `[{"app", "host", "processes", "queue_events",
    /// "accepted", "delivered", "spooled", "rejected": {reason: n}, "dropped": {reason: n},
    /// "dropped_by_table": {table: {reason: n}}}]`, reasons at 0 left out.
    pub fn to_json(&self, now: Instant) -> serde_json::Value {
        let (totals, gauges) = self.summary(now);
        let nonzero = |m: &BTreeMap<String, u64>| {
            m.iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>()
        };
        totals
            .iter()
            .map(|(g, c)| {
                let (processes, queue) = gauges.get(g).copied().unwrap_or_default();
                serde_json::json!({
                    "app": g.0, "host": g.1, "processes": processes, "queue_events": queue,
                    "accepted": c.accepted, "delivered": c.delivered, "spooled": c.spooled,
                    "rejected": nonzero(&c.rejected), "dropped": nonzero(&c.dropped),
                    "dropped_by_table": c.dropped_by_table.iter()
                        .map(|(t, m)| (t.clone(), serde_json::Value::Object(nonzero(m))))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect()
    }

    /// The `evlog_sdk_*` families at `now` (see the module docs).
    pub fn write_prometheus(&self, s: &mut String, now: Instant) {
        let (totals, gauges) = self.summary(now);
        let labels =
            |(app, host): &(String, String)| [("app", app.clone()), ("host", host.clone())];
        let scalar =
            |s: &mut String, name: &str, help: &str, get: &dyn Fn(&ReportCounters) -> u64| {
                write_header(s, name, help, "counter");
                for (g, c) in &totals {
                    let l = labels(g);
                    write_sample(s, name, &[("app", &l[0].1), ("host", &l[1].1)], get(c));
                }
            };
        scalar(
            s,
            "evlog_sdk_events_accepted_total",
            "Events SDK processes took, as they reported, per app and host.",
            &|c| c.accepted,
        );
        scalar(
            s,
            "evlog_sdk_events_delivered_total",
            "Events SDK processes had acknowledged by a collector, as they reported.",
            &|c| c.delivered,
        );
        scalar(
            s,
            "evlog_sdk_events_spooled_total",
            "Events SDK processes wrote to their spool, as they reported.",
            &|c| c.spooled,
        );
        for (name, help, pick) in [
            ("evlog_sdk_events_rejected_total", "Events SDK processes counted dead-lettered, by reason, as they reported.", 0),
            ("evlog_sdk_events_dropped_total", "Events SDK processes lost before the collector (queue full, shutdown deadline, ...), by reason, as they reported.", 1),
        ] {
            write_header(s, name, help, "counter");
            for (g, c) in &totals {
                let by = if pick == 0 { &c.rejected } else { &c.dropped };
                for (reason, n) in by {
                    write_sample(s, name, &[("app", &g.0), ("host", &g.1), ("reason", reason)], n);
                }
            }
        }
        let name = "evlog_sdk_table_events_dropped_total";
        write_header(
            s,
            name,
            "Events SDK processes lost before routing (log() refused them, or they were queued at the shutdown deadline), by the table (namespace.type) they were meant for and reason, over every app and host.",
            "counter",
        );
        for (table, reasons) in self.dropped_by_table(now) {
            for (reason, n) in reasons {
                write_sample(s, name, &[("table", &table), ("reason", &reason)], n);
            }
        }
        write_header(
            s,
            "evlog_sdk_processes",
            "SDK processes reporting now, per app and host.",
            "gauge",
        );
        for (g, (n, _)) in &gauges {
            write_sample(
                s,
                "evlog_sdk_processes",
                &[("app", &g.0), ("host", &g.1)],
                n,
            );
        }
        write_header(
            s,
            "evlog_sdk_queue_events",
            "Events waiting in SDK processes' memory, as they last reported.",
            "gauge",
        );
        for (g, (_, q)) in &gauges {
            write_sample(
                s,
                "evlog_sdk_queue_events",
                &[("app", &g.0), ("host", &g.1)],
                q,
            );
        }
    }
}

impl Inner {
    /// Folds the processes silent for too long into their groups' ended totals.
    fn expire(&mut self, now: Instant) {
        let dead: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in dead {
            if let Some(l) = self.live.remove(&p) {
                add(self.ended.entry(l.group).or_default(), &l.counters);
            }
        }
    }

    fn groups(&self) -> usize {
        let mut all: std::collections::BTreeSet<&(String, String)> = self.ended.keys().collect();
        all.extend(self.live.values().map(|l| &l.group));
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(process: &str, dropped: u64, last: bool) -> Report {
        Report {
            process: process.into(),
            pid: 1,
            app: "web".into(),
            host: "h1".into(),
            interval_ms: 1000,
            last,
            counters: ReportCounters {
                accepted: 10,
                delivered: 10 - dropped,
                dropped: [("queue_full".to_string(), dropped)].into(),
                ..Default::default()
            },
        }
    }

    fn metrics(r: &Reports, now: Instant) -> String {
        let mut s = String::new();
        r.write_prometheus(&mut s, now);
        s
    }

    #[test]
    fn totals_survive_the_process_and_gauges_do_not() {
        let r = Reports::default();
        let t0 = Instant::now();
        r.take(report("00000000000000a1", 2, false), t0).unwrap();
        r.take(report("00000000000000a2", 1, false), t0).unwrap();
        // A newer report of the same process replaces its older one.
        r.take(report("00000000000000a2", 3, false), t0).unwrap();
        let m = metrics(&r, t0);
        assert!(
            m.contains(
                "evlog_sdk_events_dropped_total{app=\"web\",host=\"h1\",reason=\"queue_full\"} 5"
            ),
            "{m}"
        );
        assert!(
            m.contains("evlog_sdk_processes{app=\"web\",host=\"h1\"} 2"),
            "{m}"
        );
        // One ends with its last report, the other goes silent: totals stay, gauges go.
        r.take(report("00000000000000a1", 4, true), t0).unwrap();
        let m = metrics(&r, t0 + Duration::from_secs(4));
        assert!(
            m.contains(
                "evlog_sdk_events_dropped_total{app=\"web\",host=\"h1\",reason=\"queue_full\"} 7"
            ),
            "{m}"
        );
        assert!(
            m.contains("evlog_sdk_events_accepted_total{app=\"web\",host=\"h1\"} 20"),
            "{m}"
        );
        assert!(!m.contains("evlog_sdk_processes{"), "{m}");
    }

    #[test]
    fn drops_by_table_are_summed_over_processes_and_bounded() {
        let r = Reports::default();
        let t0 = Instant::now();
        let mut a = report("00000000000000a1", 2, false);
        a.counters.dropped_by_table = [(
            "shop.order".to_string(),
            [("queue_full".to_string(), 2)].into(),
        )]
        .into();
        let mut b = report("00000000000000a2", 1, true);
        b.app = "api".into();
        b.counters.dropped_by_table = (0..MAX_TABLES - 1)
            .map(|i| (format!("t.n{i}"), [("shut_down".to_string(), 1)].into()))
            .chain([(
                "shop.order".to_string(),
                [("queue_full".to_string(), 3)].into(),
            )])
            .collect();
        r.take(a.clone(), t0).unwrap();
        r.take(b.clone(), t0).unwrap();
        let m = metrics(&r, t0);
        assert!(
            m.contains(
                "evlog_sdk_table_events_dropped_total{table=\"shop.order\",reason=\"queue_full\"} 5"
            ),
            "{m}"
        );
        let sum = r.dropped_by_table(t0);
        assert_eq!(sum.len(), MAX_TABLES);
        let page = r.to_json(t0);
        let web = page
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["app"] == "web")
            .unwrap();
        assert_eq!(web["dropped_by_table"]["shop.order"]["queue_full"], 2);
        // More tables than a report may carry: refused, naming the field.
        a.counters
            .dropped_by_table
            .extend(b.counters.dropped_by_table.clone());
        a.counters
            .dropped_by_table
            .insert("one.more".into(), [("queue_full".to_string(), 1)].into());
        let e = r.take(a, t0).unwrap_err();
        assert!(
            e.to_string().starts_with("counters.dropped_by_table:"),
            "{e}"
        );
    }

    #[test]
    fn bad_reports_are_refused_naming_the_field() {
        let r = Reports::default();
        let mut bad = report("xyz", 0, false);
        let e = r.take(bad.clone(), Instant::now()).unwrap_err();
        assert!(e.to_string().starts_with("process:"), "{e}");
        bad.process = "00000000000000a1".into();
        bad.app = "a b".into();
        let e = r.take(bad, Instant::now()).unwrap_err();
        assert!(e.to_string().starts_with("app:"), "{e}");
    }
}
