//! What the flush thread tells the error hook: after each delivery round, one [`ErrorSummary`]
//! per kind of loss (rejected by reason, dropped by reason), including the events `log()` itself
//! refused since the last report. Counting is done where the events are settled; this only
//! describes it.

use arc_swap::ArcSwapOption;

use crate::counters::{Counters, DropReason};
use crate::pipeline::{ErrorHook, ErrorSummary, Outcome};
use crate::sink::RejectedEvent;

/// Summaries waiting for the end of the round.
#[derive(Debug, Default)]
pub(super) struct Report {
    summaries: Vec<ErrorSummary>,
    /// Whether this thread tells of `log()`'s refusals (the thread that reads the lanes; with
    /// several destinations, the router, not the destinations' threads).
    refusals: bool,
    /// With several destinations, a destination's thread names it at the head of its
    /// messages (`destination "archive": …`).
    destination: Option<String>,
    /// Refusals by `log()` already reported: (queue_full, invalid_envelope).
    refusals_seen: (u64, u64),
}

impl Report {
    /// The report of the thread that reads the lanes: it tells of `log()`'s refusals too.
    pub(super) fn new() -> Self {
        Self {
            refusals: true,
            ..Self::default()
        }
    }

    /// The report of a destination's thread, with several: its messages name it.
    pub(super) fn for_destination(name: &str) -> Self {
        Self {
            destination: Some(name.to_owned()),
            ..Self::default()
        }
    }

    /// `count` events dropped for `reason`, with one message that says why.
    pub(super) fn dropped(&mut self, reason: DropReason, count: u64, message: String) {
        self.summaries.push(ErrorSummary {
            outcome: Outcome::Dropped,
            reason: reason.as_str().into(),
            count,
            message,
        });
    }

    /// Events stored as dead letters: one summary per reason, with the first one's message.
    pub(super) fn rejected(&mut self, rejects: &[RejectedEvent]) {
        let mut by_reason: Vec<ErrorSummary> = Vec::new();
        for r in rejects {
            match by_reason.iter_mut().find(|s| s.reason == r.reason) {
                Some(s) => s.count += 1,
                None => by_reason.push(ErrorSummary {
                    outcome: Outcome::Rejected,
                    reason: r.reason.into(),
                    count: 1,
                    message: r.error.clone(),
                }),
            }
        }
        self.summaries.extend(by_reason);
    }

    /// Tells the hook, if one is set, what this round rejected or dropped, and what `log()`
    /// refused since the last report (read from `counters`). Without a hook the round's
    /// summaries are discarded (and refusals wait for a hook).
    pub(super) fn send(&mut self, hook: &ArcSwapOption<ErrorHook>, counters: &Counters) {
        let hook = hook.load();
        let Some(hook) = hook.as_ref() else {
            self.summaries.clear();
            return;
        };
        if let Some(d) = &self.destination {
            for s in &mut self.summaries {
                s.message = format!("destination {d:?}: {}", s.message);
            }
        }
        if !self.refusals {
            for summary in self.summaries.drain(..) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&summary)));
            }
            return;
        }
        let s = counters.snapshot(0);
        let count = |r: DropReason| s.dropped.get(r.as_str()).copied().unwrap_or(0);
        let full = count(DropReason::QueueFull);
        let invalid = count(DropReason::InvalidEnvelope);
        let (seen_full, seen_invalid) = self.refusals_seen;
        let refusals = [
            (
                DropReason::QueueFull,
                full,
                seen_full,
                "log() refused events: the queue was full",
            ),
            (
                DropReason::InvalidEnvelope,
                invalid,
                seen_invalid,
                "log() refused events with an invalid envelope",
            ),
        ];
        for (reason, now, seen, message) in refusals {
            if now > seen {
                self.dropped(reason, now - seen, message.into());
            }
        }
        self.refusals_seen = (full, invalid);
        for summary in self.summaries.drain(..) {
            // A panicking hook must not take the flush thread down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&summary)));
        }
    }
}
