//! The flush thread's deliveries: closing batches when due, handing them and the round's rejects
//! to the sink through [`crate::ingest`], and deciding what becomes of what the sink did not take
//! (spooled while there is a spool, else dropped and counted) and of the breakers.

use std::time::Instant;

use super::Worker;
use crate::counters::DropReason;
use crate::ingest;
use crate::sink::Batch;

impl Worker {
    /// Ships full batches and batches older than `max_age`.
    pub(super) fn deliver_due(&mut self, now: Instant) {
        self.batcher.close_aged(now, self.parts.batch.max_age);
        self.close_events(now, Some(self.parts.batch.max_age));
        self.ship();
    }

    /// Ships every batch, full or not (a flush, a replayed record, the shutdown).
    pub(super) fn deliver_all(&mut self) {
        self.batcher.close_all();
        self.close_events(Instant::now(), None);
        self.ship();
    }

    /// Hands ready batches to the sink and counts what it reports; then dead-letters rejects.
    fn ship(&mut self) {
        if self.batcher.has_ready() {
            let batches = self.batcher.take_ready();
            self.deliver_batches(batches);
        }
        self.ship_events();
        self.dead_letter_rejects();
        if self.unrouted > 0 {
            let n = std::mem::take(&mut self.unrouted);
            let message = "no route takes these events ([[routes]])".to_string();
            self.report.dropped(DropReason::Unrouted, n, message);
        }
        self.report.send(&self.parts.hook, &self.counters);
    }

    /// Delivers batches, counting outcomes; failed rows go to the spool (or are dropped).
    /// Returns whether everything was accepted by the sink.
    pub(super) fn deliver_batches(&mut self, batches: Vec<Batch>) -> bool {
        if self.spool.is_some() && self.breaker.is_open(Instant::now()) {
            for b in &batches {
                self.spool_batch(b, DropReason::SinkError);
            }
            return false;
        }
        let counters = &self.counters;
        if let Some(kind) = self.sink_broken {
            counters.sink_error("unavailable", kind);
        }
        self.sink.set_probe(self.stopping || self.breaker.probing());
        let delivery = ingest::deliver(self.sink.as_mut(), batches, counters);
        self.sink.set_probe(false);
        self.rejects.extend(delivery.rejected);
        let all_ok = delivery.failed.is_empty();
        // Without a spool, rows a shutdown cut off (the sink gave up at the deadline) are
        // counted as such, not as the sink's failure.
        let reason = if self.st.stop.past_deadline() {
            DropReason::ShutdownDeadline
        } else {
            DropReason::SinkError
        };
        for failed in delivery.failed {
            if self.spool.is_some() {
                self.spool_batch(&failed.batch, DropReason::SinkError);
            } else {
                let n = failed.batch.rows.len() as u64;
                self.dropped(reason, n, failed.message());
            }
        }
        // Already stored by the destination (a collector): counted, not sent again.
        self.report.rejected(&delivery.rejected_stored);
        if all_ok {
            self.breaker.reset();
        } else if self.spool.is_some() {
            self.breaker.trip(Instant::now());
        }
        all_ok
    }

    /// Stores pending rejects in their dead-letter tables and counts them; what cannot be stored
    /// now goes to the spool (see the module docs).
    pub(super) fn dead_letter_rejects(&mut self) {
        if self.rejects.is_empty() {
            return;
        }
        let rejects = std::mem::take(&mut self.rejects);
        if self.spool.is_some() && self.dl_breaker.is_open(Instant::now()) {
            self.spool_dead_letters(&rejects);
            return;
        }
        self.sink
            .set_probe(self.stopping || self.dl_breaker.probing());
        let outcome = ingest::store_dead_letters(self.sink.as_mut(), rejects, &self.counters);
        self.sink.set_probe(false);
        self.report.rejected(&outcome.stored);
        if let Some((_, message)) = outcome.refused.first() {
            // The dead-letter table itself refuses them: trying again cannot help.
            let n = outcome.refused.len() as u64;
            self.lost += n;
            self.report
                .dropped(DropReason::DeadLetterFailed, n, message.clone());
        }
        let Some(error) = outcome.error else {
            self.dl_breaker.reset();
            return;
        };
        if self.spool.is_some() {
            self.spool_dead_letters(&outcome.failed);
            let until = self.dl_breaker.trip(Instant::now());
            // Try them again from the spool as soon as the breaker closes.
            self.next_replay = self.next_replay.min(until);
        } else {
            let n = outcome.failed.len() as u64;
            let message = format!("dead-letter table cannot be written: {error}");
            self.dropped(DropReason::DeadLetterFailed, n, message);
        }
    }

    /// Counts `n` events taken by this thread as dropped for `reason`, and tells the hook why.
    pub(super) fn dropped(&mut self, reason: DropReason, n: u64, message: String) {
        self.counters.drop_events(reason, n);
        self.lost += n;
        self.report.dropped(reason, n, message);
    }
}
