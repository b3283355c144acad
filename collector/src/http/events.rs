//! `POST /v1/events` (one envelope) and `POST /v1/batch` (a JSON array of envelopes, or NDJSON:
//! one per line, when `Content-Type` names `ndjson` or the body does not start with `[`).
//!
//! Each envelope is parsed once with raw values ([`crate::envelope`]), checked (core's envelope
//! rules, the key's namespace scope, `collector.max_event_bytes`), routed (`[[routes]]`: which
//! destinations take it) and run through core's processor: a converted row, or a dead letter
//! (422) kept in the log all the same. An event no route takes is answered as taken (202; for
//! an invalid one 422, saying it is not kept) and counted dropped, `unrouted`. The request's
//! rows and dead letters are one write-ahead log record, which says which destinations each
//! goes to; the answer comes once it is durable.
//!
//! Answers: `/v1/events` answers with its event's status and `{"id"}` (202), or `{"id"?,
//! "error", "reason", "field"?}` (400, 403, 413, 422). `/v1/batch` answers 200 `{"accepted",
//! "refused", "results": [{"index", "status", …}]}`, one result per event in order, so a bad
//! event never fails its neighbours; a body that cannot be read as a whole (nesting, syntax of
//! the array, more than `collector.max_batch_events`, no event) is refused whole. With the query
//! `?results=refused` (what the SDK's forward sink asks for) `results` lists only the events
//! not stored (each with its `index`) and the answer says so with `"only_refused":true`: the
//! common all-stored answer is then a few bytes, not ~60 per event, for the sender to read.
//! `?results=all` (the default) lists every event; any other value is refused with 400.

use std::fmt::Write as _;

use evlog_core::clock::now_micros;
use evlog_core::ingest::{reasons, CpuShare, EventInput, Processor, RawEvent};
use evlog_core::json::push_str;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};

use super::answer::{self, error, syntax_error, Resp};
use super::auth::{in_scope, out_of_scope};
use super::body::{read_body, too_deep};
use super::State;
use crate::config::ApiKey;
use crate::envelope::{Checked, RawEnvelope};
use crate::wal::RecordBuilder;

/// Answers one request; `batch` for `/v1/batch`.
pub(super) async fn handle(
    st: &State,
    req: Request<Incoming>,
    key: Option<ApiKey>,
    batch: bool,
) -> Resp {
    let only_refused = match results_query(req.uri().query()) {
        Ok(o) => o && batch,
        Err(r) => return r,
    };
    let ndjson = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson"));
    // `_budget` is held until the request is done with the body and what was parsed from it.
    let (body, _budget) = match read_body(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let values = match parse(st, &body, batch, ndjson) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if values.len() > st.now().collector.max_batch_events {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "more than {} events in one request (collector.max_batch_events)",
                st.now().collector.max_batch_events
            ),
        );
    }
    if batch && values.is_empty() {
        return error(StatusCode::BAD_REQUEST, "body: no events");
    }

    // Check, validate and convert each event; the log keeps converted rows and dead letters.
    let mut items = Vec::with_capacity(values.len());
    let mut record = st.shared.record();
    let mut unrouted = 0;
    let received_at = now_micros();
    // The whole request runs under one configuration, even if a reload swaps it meanwhile.
    let running = st.now_full();
    let max_event = running.collector.max_event_bytes.0 as usize;
    let mut scratch = None;
    // A long request lets other threads (a web page's, on a shared host) in as it goes.
    let mut share = CpuShare::new();
    for v in values {
        share.tick();
        let item = match v.and_then(|v| check_event(key.as_ref(), v, max_event)) {
            Ok(env) => process_event(
                st,
                &running.processor,
                &env,
                received_at,
                &mut scratch,
                &mut record,
                &mut unrouted,
            ),
            Err(item) => item,
        };
        items.push(item);
    }
    if let Err(r) = st.append(record, unrouted).await {
        return r;
    }
    if batch {
        batch_answer(&items, only_refused)
    } else {
        let item = &items[0];
        let mut out = String::with_capacity(64);
        out.push('{');
        item.push_fields(&mut out, true);
        out.push('}');
        answer::json_text(item.status, out)
    }
}

/// Whether the query asks for the refused events' results only (`results=refused`); `results=all`
/// or no `results` is every event's; another value is refused (400), naming the key.
fn results_query(query: Option<&str>) -> Result<bool, Resp> {
    let mut only_refused = false;
    for pair in query.unwrap_or("").split('&') {
        let Some(value) = pair.strip_prefix("results=") else {
            continue;
        };
        only_refused = match value {
            "refused" => true,
            "all" => false,
            other => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "query results: {other:?} is not \"all\" or \"refused\" (which events' \
                         results the answer lists)"
                    ),
                ))
            }
        };
    }
    Ok(only_refused)
}

/// Parses the body: each envelope's keys with raw values (the event object is parsed once,
/// later, by core's processor), or a per-event syntax error for NDJSON lines. A body that is
/// one JSON document is refused whole when it nests too deep or is not valid JSON.
fn parse<'b>(
    st: &State,
    body: &'b [u8],
    batch: bool,
    ndjson: bool,
) -> Result<Vec<Result<RawEnvelope<'b>, Item>>, Resp> {
    let max_depth = st.now().collector.max_depth;
    let mut values: Vec<Result<RawEnvelope<'_>, Item>> = Vec::new();
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !batch || (!ndjson && first == Some(b'[')) {
        if let Some(at) = too_deep(body, max_depth + usize::from(batch)) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body nests deeper than {max_depth} levels (collector.max_depth) at byte {at}"
                ),
            ));
        }
        if batch {
            match serde_json::from_slice::<Vec<RawEnvelope<'_>>>(body) {
                Ok(items) => values.extend(items.into_iter().map(Ok)),
                Err(e) => return Err(error(StatusCode::BAD_REQUEST, syntax_error("body", &e))),
            }
        } else {
            match serde_json::from_slice::<RawEnvelope<'_>>(body) {
                Ok(v) => values.push(Ok(v)),
                Err(e) => return Err(error(StatusCode::BAD_REQUEST, syntax_error("body", &e))),
            }
        }
        return Ok(values);
    }
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if values.len() >= st.now().collector.max_batch_events {
            // One past the limit: the request is refused whole (`handle`).
            values.push(Err(Item::err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many",
                String::new(),
            )));
            break;
        }
        let item = if let Some(at) = too_deep(line, max_depth) {
            Err(Item::err(
                StatusCode::BAD_REQUEST,
                "too_deep",
                format!(
                    "line {}: nests deeper than {max_depth} levels (collector.max_depth) at byte {at}",
                    n + 1
                ),
            ))
        } else {
            serde_json::from_slice::<RawEnvelope<'_>>(line).map_err(|e| {
                Item::err(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    syntax_error(&format!("line {}", n + 1), &e),
                )
            })
        };
        values.push(item);
    }
    Ok(values)
}

/// Checks one envelope: shape (core's rules), scope, size.
fn check_event<'a>(
    key: Option<&ApiKey>,
    raw: RawEnvelope<'a>,
    max_event: usize,
) -> Result<Checked<'a>, Item> {
    let env = raw
        .check()
        .map_err(|e| Item::err(StatusCode::BAD_REQUEST, "invalid_envelope", e.to_string()))?;
    if !in_scope(key, &env.namespace) {
        return Err(Item::err(
            StatusCode::FORBIDDEN,
            "forbidden",
            out_of_scope(&env.namespace),
        ));
    }
    let size = env.event.len();
    if size > max_event {
        return Err(Item::err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!("event is {size} bytes, the limit is {max_event} (collector.max_event_bytes)"),
        ));
    }
    Ok(env)
}

/// Core's event for a checked envelope: the only place the collector's HTTP side builds one.
/// `scratch` is one per request, refilled per event, so its body buffer is reused.
fn core_event<'s>(
    scratch: &'s mut Option<RawEvent>,
    env: &Checked<'_>,
    received_at: i64,
) -> &'s RawEvent {
    let input = EventInput {
        namespace: &env.namespace,
        type_name: &env.type_name,
        event_json: env.event.as_ref().into(),
        time: env.time,
        id: env.id.as_deref(),
    };
    let raw = scratch
        .get_or_insert_with(|| RawEvent::new(EventInput::new("", "", String::new()), received_at));
    raw.refill(&input, received_at);
    raw
}

/// Routes, validates and converts one checked event with core's processor (one parse of its
/// body, two when a route of its table has a `where`) and adds the row, or the dead letter, to
/// the record for the destinations its routes chose. An event core rejects (no schema for its
/// table, or a schema violation: a missing REQUIRED field, a wrong type, …) answers 422 with
/// core's reason, the field at fault and the rule, and is kept in the dead-letter table of
/// those destinations. One no route takes is counted in `unrouted` and not kept.
///
/// `[[transforms]]` apply before the conversion: once for every copy when no entry of the
/// table names destinations, else per destination (each copy converted, stored or
/// dead-lettered on its own; the answer is the first refusal's, or 202).
fn process_event(
    st: &State,
    processor: &Processor,
    env: &Checked<'_>,
    received_at: i64,
    scratch: &mut Option<RawEvent>,
    record: &mut RecordBuilder,
    unrouted: &mut u64,
) -> Item {
    let raw = core_event(scratch, env, received_at);
    let to = processor.route(raw);
    let counters = &st.shared.counters;
    if to.is_empty() {
        *unrouted += 1;
        record.unrouted_table(&env.namespace, &env.type_name);
        return match processor.process_for(raw, None, counters) {
            Ok((_, row)) => Item::accepted(row.insert_id),
            Err(rejected) => {
                let error = format!(
                    "{}: no route takes the event ([[routes]]), it is not kept",
                    rejected.error
                );
                Item::rejected(*rejected, error)
            }
        };
    }
    let mut answer = None;
    for (k, (name, set)) in st
        .copies(processor, &env.namespace, &env.type_name, to)
        .enumerate()
    {
        if k > 0 {
            record.split_copy();
        }
        match processor.process_for(raw, name, counters) {
            Ok((dest, row)) => {
                record.push_row(&dest, set, &row.insert_id, &row.json);
                answer.get_or_insert(Item::accepted(row.insert_id));
            }
            Err(rejected) => {
                let mut error = if rejected.reason == reasons::UNKNOWN_TABLE {
                    format!("no schema for table {}.{}", env.namespace, env.type_name)
                } else {
                    rejected.error.clone()
                };
                match name {
                    Some(d) => {
                        let _ = write!(
                            error,
                            ": the copy for destination {d:?} is kept in its dead-letter table"
                        );
                    }
                    None => error.push_str(": the event is kept in the dead-letter table"),
                }
                record.push_rejected(&rejected, set);
                if answer.as_ref().is_none_or(|a| a.error.is_none()) {
                    answer = Some(Item::rejected(*rejected, error));
                }
            }
        }
    }
    // A routed event has at least one copy, so there is an answer.
    answer.unwrap_or_else(|| Item::accepted(String::new()))
}

/// One event's result.
struct Item {
    status: StatusCode,
    id: Option<String>,
    error: Option<String>,
    reason: Option<&'static str>,
    /// The field at fault, for schema violations.
    field: Option<String>,
}

impl Item {
    fn accepted(id: String) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            id: Some(id),
            error: None,
            reason: None,
            field: None,
        }
    }

    fn rejected(r: evlog_core::sink::RejectedEvent, error: String) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            id: Some(r.event_id),
            error: Some(error),
            reason: Some(r.reason),
            field: r.field,
        }
    }

    fn err(status: StatusCode, reason: &'static str, msg: String) -> Self {
        Self {
            status,
            id: None,
            error: Some(msg),
            reason: Some(reason),
            field: None,
        }
    }

    /// Appends the item's fields (after `{` and any leading fields) to a JSON object being built.
    fn push_fields(&self, out: &mut String, mut first: bool) {
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        if let Some(id) = &self.id {
            sep(out);
            out.push_str("\"id\":");
            push_str(out, id);
        }
        if let Some(e) = &self.error {
            sep(out);
            out.push_str("\"error\":");
            push_str(out, e);
        }
        if let Some(r) = self.reason {
            sep(out);
            out.push_str("\"reason\":");
            push_str(out, r);
        }
        if let Some(f) = &self.field {
            sep(out);
            out.push_str("\"field\":");
            push_str(out, f);
        }
    }
}

/// `/v1/batch`'s answer: the counts, then every event's result in order (`only_refused`: the
/// results of the events not stored only).
fn batch_answer(items: &[Item], only_refused: bool) -> Resp {
    let accepted = items
        .iter()
        .filter(|i| i.status == StatusCode::ACCEPTED)
        .count();
    let listed = if only_refused {
        items.len() - accepted
    } else {
        items.len()
    };
    let mut out = String::with_capacity(80 + listed * 72);
    let _ = write!(
        out,
        "{{\"accepted\":{accepted},\"refused\":{},",
        items.len() - accepted
    );
    if only_refused {
        out.push_str("\"only_refused\":true,");
    }
    out.push_str("\"results\":[");
    let mut first = true;
    for (i, it) in items.iter().enumerate() {
        if only_refused && it.status == StatusCode::ACCEPTED {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push_str("{\"index\":");
        out.push_str(itoa(i).as_str());
        out.push_str(",\"status\":");
        out.push_str(itoa(usize::from(it.status.as_u16())).as_str());
        it.push_fields(&mut out, false);
        out.push('}');
    }
    out.push_str("]}");
    answer::json_text(StatusCode::OK, out)
}

/// A small integer as text without `fmt` machinery.
fn itoa(mut n: usize) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}
