//! `format = "events"`: the events as they were logged, framed as envelopes and posted to
//! `<url>/v1/batch` (format: [`super::wire`]), and what the collector's per-event results mean
//! for each of them.
//!
//! Requests hold at most `max_rows_per_request` events and [`MAX_REQUEST_BYTES`] of envelope
//! text (a larger single event gets a request of its own: the collector judges it). A request
//! fails or succeeds whole by the same rules and retries as `/v1/rows`. A 2xx is the collector's
//! answer only when it has one result per line sent, in order, and counts that agree;
//! otherwise it is a `bad_answer`, not retried, and its events are reported failed.
//!
//! Per event: 2xx delivered; 422 refused and stored as a dead letter by the collector, reported
//! `rejected_stored` with its reason; any other status (400 `invalid_json` or
//! `invalid_envelope`, 403 `forbidden`, 413 `event_too_large`) refused and *not* kept by the
//! collector, reported `refused` so the pipeline dead-letters the event itself.

use std::ops::Range;

use super::sink::{not_the_collector, Body, Delivery, ForwardSink, MAX_ANSWER_BYTES};
use super::wire::{self, BatchAnswer};
use crate::ingest::RawEvent;
use crate::sink::http;
use crate::sink::{intern_reason, EventsOutcome, RefusedEvent, RejectedEvent};

/// Most bytes of envelope text per request, before gzip: under the collector's default
/// `max_body_bytes` (10 MiB) even without gzip, and its `max_decompressed_bytes` (50 MiB).
pub(super) const MAX_REQUEST_BYTES: usize = 8 << 20;

impl ForwardSink {
    /// Frames `events` into requests, sends them (up to `workers` at once) and maps the answers.
    pub(super) fn send_events(&self, events: &[RawEvent]) -> EventsOutcome {
        let jobs = frame(
            events,
            self.cfg.max_rows_per_request.max(1),
            MAX_REQUEST_BYTES,
        );
        let results = http::run_all(&self.rt, self.cfg.workers, jobs, |(range, text)| async {
            let sent = self.post_events(text, range.len()).await;
            (range, sent)
        });
        let mut out = EventsOutcome::default();
        for (range, sent) in results {
            out.retried += sent.retried;
            out.attempt_errors.extend(sent.attempt_errors);
            match sent.answer {
                Some(answer) => apply(&mut out, answer, range, events),
                None => {
                    out.failed.push(range);
                    out.error = sent.error;
                }
            }
        }
        out.failed.sort_by_key(|r| r.start);
        out
    }

    /// Sends one request of `n` envelope lines until it succeeds or attempts run out.
    async fn post_events(&self, text: String, n: usize) -> Delivery<BatchAnswer> {
        let bytes = Body::new(text.into_bytes());
        self.with_failover(n, |node| {
            let url = &self.endpoints(node).batch;
            let bytes = &bytes;
            async move {
                let (status, body) = self.post(url, "application/x-ndjson", bytes).await?;
                check_batch_answer(&body, n)
                    .map_err(|what| not_the_collector(url, status, &what, n, &body))
            }
        })
        .await
    }
}

/// Splits `events` into requests of at most `max_events` events and about `max_bytes` of
/// envelope text (one larger event goes alone): each range and its NDJSON text.
pub(super) fn frame(
    events: &[RawEvent],
    max_events: usize,
    max_bytes: usize,
) -> Vec<(Range<usize>, String)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut text = String::new();
    for (i, raw) in events.iter().enumerate() {
        // The envelope's keys, names, time and id take well under 256 bytes.
        let next = raw.body.len() + raw.namespace.len() + raw.type_name.len() + 256;
        if i > start && (i - start >= max_events || text.len().saturating_add(next) > max_bytes) {
            out.push((start..i, std::mem::take(&mut text)));
            start = i;
        }
        if text.capacity() == 0 {
            // Sized for the whole request (the envelope's fixed text, time and id are 117
            // bytes): a buffer that grows copies everything framed so far each time (callgrind:
            // ~230 instructions per event in `realloc` when this left out the names).
            let end = events.len().min(i.saturating_add(max_events));
            let want: usize = events[i..end]
                .iter()
                .map(|e| e.body.len() + e.namespace.len() + e.type_name.len() + 128)
                .sum();
            text.reserve(want.min(max_bytes.saturating_add(next)));
        }
        wire::push_envelope(&mut text, raw);
    }
    if start < events.len() {
        out.push((start..events.len(), text));
    }
    out
}

/// The answer, if it is the collector's for `n` lines; else what is wrong with it.
pub(super) fn check_batch_answer(text: &[u8], n: usize) -> Result<BatchAnswer, String> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(format!("with more than {MAX_ANSWER_BYTES} bytes"));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("with an empty body".into());
    }
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                Ok(_) => "with JSON that is not an object".into(),
                Err(e) => format!("with a body that is not JSON ({e})"),
            },
        );
    }
    // Straight into the answer's type (no `Value` tree: this runs for every event sent).
    let answer: BatchAnswer = serde_json::from_slice(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("with a body that is not JSON ({e})")
        } else {
            format!("with an unexpected object ({e})")
        }
    })?;
    if answer.only_refused {
        return check_refused_only(answer, n);
    }
    if answer.results.len() != n {
        return Err(format!(
            "with {} results for the {n} events sent",
            answer.results.len()
        ));
    }
    if let Some((i, r)) = answer
        .results
        .iter()
        .enumerate()
        .find(|(i, r)| r.index != *i)
    {
        return Err(format!("with result {i} for index {}", r.index));
    }
    let stored = answer
        .results
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .count() as u64;
    if answer.accepted != stored || answer.accepted + answer.refused != n as u64 {
        return Err(format!(
            "with accepted = {} and refused = {} for {stored} events stored of the {n} sent",
            answer.accepted, answer.refused
        ));
    }
    Ok(answer)
}

/// [`check_batch_answer`] for an answer that lists the refused events only: one result per
/// refused event, none stored, indexes rising and below `n`, counts that add up to `n`.
fn check_refused_only(answer: BatchAnswer, n: usize) -> Result<BatchAnswer, String> {
    if answer.accepted + answer.refused != n as u64 || answer.results.len() as u64 != answer.refused
    {
        return Err(format!(
            "with accepted = {} and refused = {} and {} results listed for the {n} events sent",
            answer.accepted,
            answer.refused,
            answer.results.len()
        ));
    }
    let mut next = 0;
    for r in &answer.results {
        if r.index < next || r.index >= n {
            return Err(format!(
                "with a refused result for index {} out of order or past the {n} events sent",
                r.index
            ));
        }
        if (200..300).contains(&r.status) {
            return Err(format!(
                "with status {} among the refused results (index {})",
                r.status, r.index
            ));
        }
        next = r.index + 1;
    }
    Ok(answer)
}

/// Adds what `answer` says of the events in `range` to `out` (see the module docs).
fn apply(out: &mut EventsOutcome, answer: BatchAnswer, range: Range<usize>, events: &[RawEvent]) {
    if answer.only_refused {
        // Checked: the results are the refused events; every other one was stored.
        out.delivered += answer.accepted as usize;
    }
    for (k, r) in answer.results.into_iter().enumerate() {
        let index = range.start + if answer.only_refused { r.index } else { k };
        if (200..300).contains(&r.status) {
            out.delivered += 1;
            continue;
        }
        let raw = &events[index];
        let reason = intern_reason(r.reason.as_deref().unwrap_or("forwarded_other"));
        let error = r.error.unwrap_or_default();
        if r.status == 422 {
            // Counted and reported only: the collector has stored it.
            out.rejected_stored.push(RejectedEvent {
                dataset: raw.namespace.to_string(),
                event_id: raw.id.to_text(),
                namespace: raw.namespace.to_string(),
                type_name: raw.type_name.to_string(),
                event_time: Some(raw.time.unwrap_or(raw.received_at)),
                received_at: raw.received_at,
                reason,
                field: r.field,
                error,
                raw: String::new(),
            });
        } else {
            out.refused.push(RefusedEvent {
                index,
                reason,
                field: r.field,
                error: format!(
                    "the collector refused the event ({}) and did not keep it: {error}",
                    r.status
                ),
            });
        }
    }
}
