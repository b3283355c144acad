//! `GET /metrics` and the count of answers by endpoint and status it reports.

use std::sync::atomic::{AtomicU64, Ordering};

use evlog_core::counters::{write_header, write_metric, write_sample};
use hyper::StatusCode;

use super::answer::{self, Resp};
use super::routes::{self, ROUTES};
use super::State;

/// Status codes counted one by one; any other counts as `other` (the `0`, last).
const CODES: [u16; 15] = [
    200, 202, 400, 401, 403, 404, 405, 408, 413, 415, 422, 429, 500, 503, 0,
];

/// Answers by endpoint and status code (`evlog_collector_http_responses_total`): one row per
/// route of [`ROUTES`], in its order, then one for any other path (`path="other"`).
#[derive(Debug)]
pub(crate) struct Responses(Box<[[AtomicU64; CODES.len()]]>);

impl Default for Responses {
    fn default() -> Self {
        Self(
            (0..=ROUTES.len())
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        )
    }
}

impl Responses {
    /// Counts one answer of the route at `route` ([`routes::find`]).
    pub(super) fn count(&self, route: usize, status: StatusCode) {
        let code = CODES
            .iter()
            .position(|&c| c == status.as_u16())
            .unwrap_or(CODES.len() - 1);
        self.0[route][code].fetch_add(1, Ordering::Relaxed);
    }

    fn write_prometheus(&self, s: &mut String) {
        write_header(
            s,
            "evlog_collector_http_responses_total",
            "HTTP answers by endpoint and status code.",
            "counter",
        );
        for (e, counts) in self.0.iter().enumerate() {
            let path = routes::label(e);
            for (i, code) in CODES.iter().enumerate() {
                let n = counts[i].load(Ordering::Relaxed);
                if n > 0 {
                    let code = if *code == 0 {
                        "other".to_string()
                    } else {
                        code.to_string()
                    };
                    write_sample(
                        s,
                        "evlog_collector_http_responses_total",
                        &[("path", path), ("code", &code)],
                        n,
                    );
                }
            }
        }
    }
}

/// `GET /metrics`.
pub(super) fn handle(st: &State) -> Resp {
    answer::prometheus(render(st))
}

/// The running configuration's generation, hash and load time (the reloads' count,
/// `evlog_config_reloads_total`, is core's, with the other counters).
fn write_reloads(st: &State, s: &mut String) {
    let running = st.now();
    write_header(
        s,
        "evlog_config_info",
        "The running configuration: its generation (1 at the start, one more per reload) and hash.",
        "gauge",
    );
    write_sample(
        s,
        "evlog_config_info",
        &[
            ("generation", &running.number.to_string()),
            ("hash", &running.hash),
        ],
        1,
    );
    write_metric(
        s,
        "evlog_config_loaded_timestamp_seconds",
        "When the running configuration was loaded (Unix time).",
        "gauge",
        running.loaded_at,
    );
}

/// `/metrics` in the Prometheus text format 0.0.4: the core counters, then the collector's own
/// families, each as its HELP and TYPE lines followed at once by all of its samples (per-table
/// series included), no family twice.
fn render(st: &State) -> String {
    let shared = &st.shared;
    let several = shared.several();
    let mut s = shared.snapshot().to_prometheus();
    write_header(
        &mut s,
        "evlog_collector_wal_pending_bytes",
        "Write-ahead log bytes not yet streamed (by the destination furthest behind; per destination with several).",
        "gauge",
    );
    write_sample(
        &mut s,
        "evlog_collector_wal_pending_bytes",
        &[],
        shared.pending(),
    );
    if several {
        for d in &shared.dests {
            write_sample(
                &mut s,
                "evlog_collector_wal_pending_bytes",
                &[("destination", &d.name)],
                d.pending.load(Ordering::Relaxed),
            );
        }
    }
    write_metric(
        &mut s,
        "evlog_collector_body_bytes_in_flight",
        "Body bytes held by requests in progress (bounded by max_in_flight_bytes).",
        "gauge",
        st.body_bytes.load(Ordering::Relaxed),
    );
    write_header(
        &mut s,
        "evlog_collector_sink_healthy",
        "1 when the last delivery succeeded (every destination's; per destination with several).",
        "gauge",
    );
    let healthy = |d: &crate::streamer::Dest| u8::from(d.sink_healthy.load(Ordering::Relaxed));
    let all = shared.dests.iter().map(|d| healthy(d)).min().unwrap_or(1);
    write_sample(&mut s, "evlog_collector_sink_healthy", &[], all);
    if several {
        for d in &shared.dests {
            write_sample(
                &mut s,
                "evlog_collector_sink_healthy",
                &[("destination", &d.name)],
                healthy(d),
            );
        }
    }
    st.responses.write_prometheus(&mut s);
    write_reloads(st, &mut s);
    st.reports
        .write_prometheus(&mut s, std::time::Instant::now());
    st.drains.write_prometheus(&mut s);
    st.wal.write_prometheus(&mut s);
    write_header(
        &mut s,
        "evlog_events_delivered_by_table_total",
        "Events acknowledged by the sink, per table (and destination, with several).",
        "counter",
    );
    for d in &shared.dests {
        let tables = d
            .per_table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (table, n) in tables {
            let (dataset, table) = table.split_once('.').unwrap_or(("", &table));
            let mut labels = vec![("dataset", dataset), ("table", table)];
            if several {
                labels.insert(0, ("destination", d.name.as_str()));
            }
            write_sample(&mut s, "evlog_events_delivered_by_table_total", &labels, n);
        }
    }
    s
}
