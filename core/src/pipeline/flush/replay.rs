//! The flush thread's spool: what goes in (rows the sink failed or that the breaker kept from it,
//! dead letters whose table cannot be written, queue overflow, leftovers at shutdown) and
//! replaying what is there, this process's records and those earlier ones left. Record format:
//! `super::super::spooled`.
//!
//! Every event is counted once whatever happens: a record replayed is committed after its
//! events were delivered, stored, dropped (counted) or spooled again as a new record (counted
//! spooled again). Another writer's events are counted accepted by this one when replayed.

use std::time::{Duration, Instant};

use super::Worker;
use crate::counters::DropReason;
use crate::ingest::RawEvent;
use crate::pipeline::spooled::{Parts, Record};
use crate::sink::{Batch, RejectedEvent};
use crate::spool::{Spool, SpoolError};

/// Spooled rows replayed per round.
const REPLAY_ROWS: usize = 5000;
/// How often to look for spool segments (e.g. left by other processes) when none is known.
const SPOOL_SCAN: Duration = Duration::from_secs(5);

impl Worker {
    /// Appends a record of `n` events to the spool and counts them spooled; without a spool, or
    /// when the append fails, counts them dropped (`fallback`, or `spool_full`). True when
    /// spooled.
    pub(super) fn spool_record(&mut self, record: &Record, n: usize, fallback: DropReason) -> bool {
        let counters = &self.counters;
        let Some(spool) = &mut self.spool else {
            counters.drop_events(fallback, n as u64);
            self.lost += n as u64;
            return false;
        };
        match spool.append(&[&record.encode()]) {
            Ok(()) => {
                counters.spool(n as u64);
                self.own_spooled += n as u64;
                true
            }
            Err(e) => {
                let full = matches!(e, SpoolError::Full { .. });
                counters.sink_error("spool", if full { "full" } else { "io" });
                let reason = if full {
                    DropReason::SpoolFull
                } else {
                    fallback
                };
                self.dropped(reason, n as u64, e.to_string());
                false
            }
        }
    }

    /// Writes `batch`'s rows to the spool (see [`Worker::spool_record`]).
    pub(super) fn spool_batch(&mut self, batch: &Batch, fallback: DropReason) -> bool {
        let record = Record::from_batch(batch, self.writer);
        self.spool_record(&record, batch.rows.len(), fallback)
    }

    /// Writes events not yet validated to the spool (see [`Worker::spool_record`]).
    pub(super) fn spool_raw(&mut self, raws: &[RawEvent], fallback: DropReason) -> bool {
        let record = Record::from_raw(raws, self.writer);
        self.spool_record(&record, raws.len(), fallback)
    }

    /// Keeps dead letters in the spool for a later attempt (dropped, counted, when it cannot).
    pub(super) fn spool_dead_letters(&mut self, events: &[RejectedEvent]) {
        let n = events.len();
        // Those back from the spool are already counted waiting; only new ones are added.
        let carried = self.dl_retrying.min(n as u64);
        self.dl_retrying -= carried;
        let record = Record::from_rejected(events, self.writer);
        if self.spool_record(&record, n, DropReason::DeadLetterFailed) {
            self.counters.dead_letters_wait(n as u64 - carried);
        } else {
            self.counters.dead_letters_settled(carried); // dropped, counted
        }
    }

    /// Replays a bounded amount of spooled records while the sink is healthy. Returns whether
    /// there may be more to replay right away.
    pub(super) fn replay(&mut self, now: Instant) -> bool {
        if self.spool.is_none() || self.breaker.is_open(now) || now < self.next_replay {
            return false;
        }
        let segment = match self.spool.as_mut().map(Spool::next_segment) {
            Some(Ok(Some(seg))) => seg,
            Some(Ok(None)) | None => {
                self.next_replay = now + SPOOL_SCAN;
                return false;
            }
            Some(Err(_)) => {
                self.counters.sink_error("spool", "io");
                self.next_replay = now + SPOOL_SCAN;
                return false;
            }
        };
        let mut seg = segment;
        let mut rows = 0;
        while rows < REPLAY_ROWS && !self.breaker.is_open(Instant::now()) {
            let next = {
                let Some(spool) = &self.spool else { break };
                seg.next(&spool.counters)
            };
            let rec = match next {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = seg.commit(0); // deletes the segment once all of it is done
                    return true;
                }
                Err(_) => {
                    self.counters.sink_error("spool", "io");
                    break;
                }
            };
            let Some(record) = Record::decode(&rec.payload) else {
                // A valid frame with a payload we cannot read: skip it (counted) rather than
                // block the spool forever.
                self.counters.sink_error("spool", "undecodable");
                let _ = seg.commit(rec.end);
                continue;
            };
            if record.is_dead_letters() {
                if let Some(until) = self.dl_breaker.open_until(Instant::now()) {
                    // Their table still cannot be written: stop here, uncommitted, and come
                    // back when the breaker closes (keeps the order, skips nothing).
                    self.next_replay = until;
                    return false;
                }
            }
            let n = record.len();
            rows += n;
            if record.foreign(self.writer) {
                self.counters.accept_n(n as u64);
                if self.inbox.is_some() {
                    // One copy of each, for this destination: the pipeline takes the events.
                    self.st.counters.accept_n(n as u64);
                }
            } else {
                // Settled below or spooled again (and counted again).
                self.own_spooled = self.own_spooled.saturating_sub(n as u64);
                if record.is_dead_letters() {
                    self.dl_retrying += n as u64;
                }
            }
            // What fails again is re-spooled as a new record and this one committed, so every
            // event is counted once whatever happens.
            match record.into_parts() {
                Parts::Rows(batch) => {
                    self.deliver_batches(vec![batch]);
                }
                Parts::DeadLetters(events) => self.rejects.extend(events),
                Parts::Raw(raws) => {
                    for raw in raws {
                        self.process(raw);
                    }
                    self.deliver_all();
                }
            }
            self.dead_letter_rejects();
            // Those not spooled again were stored or dropped: no longer waiting.
            let settled = std::mem::take(&mut self.dl_retrying);
            self.counters.dead_letters_settled(settled);
            let _ = seg.commit(rec.end);
        }
        true
    }
}
