//! The forward sink's reports: the process's own counters, posted to the collector's
//! `/v1/report` ([`wire::Report`]) every `sink.forward.report_interval` and once more at
//! shutdown, so the collector shows what happened before it (a full queue in a PHP worker, an
//! event refused by `log()`) beside its own counts, and what `log()` refused beside the table it
//! was meant for (`counters::by_table`).
//!
//! A report is one small POST (no gzip, no retry) on the flush thread, to a collector whose last
//! request succeeded, bounded by [`REPORT_TIMEOUT`], at shutdown too. No
//! collector answering (down, or none reached yet): no report, so a failing destination never
//! makes the flush thread or an exit wait for one; reports resume with deliveries, carrying the
//! totals. A report that fails is not retried and counts nothing.

use std::sync::OnceLock;
use std::time::Duration;

use super::{wire, ForwardSink};
use crate::counters::Stats;

/// The longest a report may hold the flush thread, or a shutdown for the last report. A
/// collector answers one in a millisecond or two; on a busy host (a php-fpm pool at full load
/// with its collector on the same 2 cores) a few tens of milliseconds, which is why the last
/// report is not given less: a php-fpm worker recycled after `pm.max_requests` often lives less
/// than an interval, so its last report is its only one. The cost falls on a worker's exit,
/// after its last response, and only while a collector that just answered stops answering.
pub(super) const REPORT_TIMEOUT: Duration = Duration::from_millis(500);

/// This process's report id (random, 16 hex digits) and pid: a new one after a fork.
fn process() -> (String, u32) {
    static ID: OnceLock<std::sync::Mutex<(u32, String)>> = OnceLock::new();
    let pid = std::process::id();
    let cell = ID.get_or_init(|| std::sync::Mutex::new((0, String::new())));
    let mut id = cell.lock().unwrap_or_else(|e| e.into_inner());
    if id.0 != pid {
        *id = (pid, format!("{:016x}", crate::ids::random_u64()));
    }
    (id.1.clone(), pid)
}

/// The machine's host name, as a label.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    wire::to_label(name.trim())
}

/// The program's name, as a label (`php-fpm8.2`, `python3`, …).
fn program() -> String {
    let name = std::fs::read_to_string("/proc/self/comm")
        .ok()
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    wire::to_label(name.trim())
}

impl ForwardSink {
    /// The report of `stats` for this process.
    fn report_of(&self, stats: &Stats, last: bool) -> wire::Report {
        let (process, pid) = process();
        let app = if self.cfg.app.is_empty() {
            program()
        } else {
            self.cfg.app.clone()
        };
        wire::Report {
            process,
            pid,
            app,
            host: host(),
            interval_ms: self.cfg.report_interval.as_millis() as u64,
            last,
            counters: wire::ReportCounters {
                accepted: stats.accepted,
                delivered: stats.delivered,
                rejected: stats.rejected.clone(),
                dropped: stats.dropped.clone(),
                spooled: stats.spooled,
                queue_events: stats.queue_events,
                dropped_by_table: stats.dropped_by_table.clone(),
            },
        }
    }

    /// Posts the report to the first collector that is up (see the module docs).
    pub(super) fn send_report(&mut self, stats: &Stats, last: bool) {
        let Some(i) = self.nodes.answering() else {
            return;
        };
        let url = format!("{}/v1/report", self.nodes.url(i).trim_end_matches('/'));
        let body = serde_json::to_vec(&self.report_of(stats, last)).unwrap_or_default();
        let mut req = self
            .http_client()
            .post(&url)
            .timeout(REPORT_TIMEOUT.min(self.cfg.timeout))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(k) = &self.cfg.api_key {
            req = req.bearer_auth(k);
        }
        let _ = self.rt.block_on(async move {
            let resp = req.send().await?;
            // Read the answer so the connection goes back to the pool.
            resp.bytes().await
        });
    }
}
