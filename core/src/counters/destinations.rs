//! Counters with several destinations: each destination counts the copies routed to it in a
//! [`Counters`](super::Counters) of its own; a reading puts them beside the totals.
//!
//! - Per destination `d`: `accepted{d}` = copies routed to `d`, and its identity holds on its
//!   own: `accepted{d} = delivered{d} + rejected{d} + dropped{d} + in_flight{d}`.
//! - Totals: `accepted` counts events (as `log()` saw them); `delivered`, `rejected`,
//!   `dropped`, `retried`, `spooled`, `sink_errors`, `dead_letters_waiting` and the flush
//!   histogram add up the destinations' (so an event delivered to two destinations counts
//!   twice) and the pipeline's own (drops before routing: `invalid_envelope`, `queue_full`,
//!   `shut_down`, `unrouted`, …). An event routed to `k` destinations adds `k - 1` to
//!   `fanned_out`, so the totals keep one identity:
//!   `accepted + fanned_out = delivered + rejected + dropped + in_flight`.
//! - With one destination nothing changes: no labelled samples, `fanned_out` is 0 and not
//!   rendered.

use super::{names, Stats};

impl Stats {
    /// These (the pipeline's own) readings with the destinations' added: the totals and the
    /// per-destination map (see the module docs). Read the destinations before the pipeline's
    /// own counters, so that no copy is seen settled before it was counted routed.
    pub fn with_destinations(mut self, destinations: Vec<(String, Stats)>) -> Stats {
        for (name, d) in destinations {
            self.delivered += d.delivered;
            for (r, n) in &d.rejected {
                *self.rejected.entry(r.clone()).or_default() += n;
            }
            for (r, n) in &d.dropped {
                *self.dropped.entry(r.clone()).or_default() += n;
            }
            self.retried += d.retried;
            self.spooled += d.spooled;
            self.queue_events += d.queue_events;
            for (k, n) in &d.sink_errors {
                *self.sink_errors.entry(k.clone()).or_default() += n;
            }
            self.dead_letters_waiting += d.dead_letters_waiting;
            for (r, n) in &d.transform_skipped {
                *self.transform_skipped.entry(r.clone()).or_default() += n;
            }
            for (total, n) in self
                .flush_seconds_buckets
                .iter_mut()
                .zip(&d.flush_seconds_buckets)
            {
                *total += n;
            }
            self.flush_seconds_sum += d.flush_seconds_sum;
            self.destinations.insert(name, d);
        }
        let settled = self.delivered + self.rejected_total() + self.dropped_total();
        self.in_flight = (self.accepted + self.fanned_out) as i64 - settled as i64;
        self
    }

    /// The destinations' samples for [`Stats::to_flat`], and `fanned_out`, when there are
    /// several.
    pub(super) fn destinations_to_flat(&self, out: &mut Vec<(String, f64)>) {
        if self.destinations.is_empty() {
            return;
        }
        out.push((names::FANNED_OUT.to_string(), self.fanned_out as f64));
        for (d, s) in &self.destinations {
            let label = |name: &str| format!("{name}{{destination=\"{d}\"}}");
            for (name, v) in [
                (names::ACCEPTED, s.accepted),
                (names::DELIVERED, s.delivered),
                (names::RETRIED, s.retried),
                (names::SPOOLED, s.spooled),
                (names::QUEUE_EVENTS, s.queue_events),
                (names::DEAD_LETTERS_WAITING, s.dead_letters_waiting),
            ] {
                out.push((label(name), v as f64));
            }
            for (r, v) in &s.rejected {
                let k = format!("{}{{destination=\"{d}\",reason=\"{r}\"}}", names::REJECTED);
                out.push((k, *v as f64));
            }
            for (r, v) in &s.dropped {
                let k = format!("{}{{destination=\"{d}\",reason=\"{r}\"}}", names::DROPPED);
                out.push((k, *v as f64));
            }
            for (r, v) in &s.transform_skipped {
                let k = format!(
                    "{}{{destination=\"{d}\",reason=\"{r}\"}}",
                    names::TRANSFORM_SKIPPED
                );
                out.push((k, *v as f64));
            }
            for ((sink, kind), v) in &s.sink_errors {
                let k = format!(
                    "{}{{destination=\"{d}\",sink=\"{sink}\",kind=\"{kind}\"}}",
                    names::SINK_ERRORS
                );
                out.push((k, *v as f64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::counters::{Counters, DropReason};

    #[test]
    fn totals_add_destinations_and_each_keeps_its_identity() {
        let global = Counters::new();
        let (a, b) = (Counters::new(), Counters::new());
        global.accept_n(10);
        global.drop_events(DropReason::Unrouted, 2);
        // 8 routed: 5 to a only, 3 to both.
        global.fan_out(3);
        a.accept_n(8);
        b.accept_n(3);
        a.deliver(7);
        a.drop_events(DropReason::SinkError, 1);
        b.deliver(1);
        b.sink_error("memory", "other");
        b.spool(2);
        let s = global.snapshot(0).with_destinations(vec![
            ("a".into(), a.snapshot(0)),
            ("b".into(), b.snapshot(2)),
        ]);
        assert_eq!((s.accepted, s.fanned_out, s.delivered), (10, 3, 8));
        assert_eq!(s.dropped["unrouted"] + s.dropped["sink_error"], 3);
        assert_eq!(s.in_flight, 2, "b's two copies");
        assert_eq!(s.queue_events, 2);
        assert_eq!(s.destinations["a"].in_flight, 0);
        assert!(s.destinations["a"].is_settled());
        assert_eq!(s.destinations["b"].in_flight, 2);
        assert!(!s.is_settled());

        let text = s.to_prometheus();
        for line in [
            "evlog_events_accepted_total 10\n",
            "evlog_events_accepted_total{destination=\"a\"} 8\n",
            "evlog_events_delivered_total{destination=\"b\"} 1\n",
            "evlog_events_dropped_total{destination=\"a\",reason=\"sink_error\"} 1\n",
            "evlog_events_dropped_total{reason=\"unrouted\"} 2\n",
            "evlog_sink_errors_total{destination=\"b\",sink=\"memory\",kind=\"other\"} 1\n",
            "evlog_events_spooled_total{destination=\"b\"} 2\n",
            "evlog_queue_events{destination=\"b\"} 2\n",
            "evlog_events_fanned_out_total 3\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        let flat: std::collections::BTreeMap<String, f64> = s.to_flat().into_iter().collect();
        assert_eq!(flat["evlog_events_accepted_total{destination=\"b\"}"], 3.0);
        assert_eq!(
            flat["evlog_events_dropped_total{destination=\"a\",reason=\"sink_error\"}"],
            1.0
        );
        assert_eq!(flat["evlog_events_fanned_out_total"], 3.0);

        // One destination: nothing of this shows.
        let one = Counters::new().snapshot(0);
        assert!(!one.to_prometheus().contains("destination=\""));
        assert!(!one.to_prometheus().contains("fanned_out"));
    }
}
