//! `POST /v1/rows`: rows an SDK converted (core's forward sink), for keys with role `"sdk"`
//! (any request when no keys are configured; the route table checks the role).
//!
//! A malformed request (a bad dataset, table, day or id, a row that is not an object or is too
//! large, a namespace out of the key's scope) is refused whole with the place named: it means a
//! broken sender. Every row is then checked by core against its table's schema and routing
//! ([`Processor::check_row`](evlog_core::ingest::Processor::check_row)); a row that fails is
//! kept in the dead-letter table (reason, field, error; `raw` = the row) instead, and listed in
//! the answer's `refused`. Request and answer: `evlog_core::sink::forward::wire`.
//!
//! Each row is routed (`[[routes]]`) as the event it came from: by the namespace and type of
//! the schema it passed, its id, and for a `where` its columns and `other`; dead letters by
//! their namespace, type, id and envelope. Rows and dead letters no route takes are counted
//! dropped, `unrouted` (the answer counts them among `accepted`). The request becomes one framed
//! write-ahead log record (`crate::wal`).

use evlog_core::destinations::DestinationSet;
use evlog_core::envelope;
use evlog_core::ingest::{CheckedRow, Processor};
use evlog_core::routing::Destination;
use evlog_core::sink::forward::wire::{RowsAnswer, RowsRequest, WireRefused, WireRejected};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::answer::{self, error, syntax_error, Resp};
use super::auth::{in_scope, out_of_scope};
use super::body::{read_body, too_deep};
use super::State;
use crate::config::ApiKey;
use crate::wal::{RecordBuilder, WalRecord};

/// Answers one request.
pub(super) async fn handle(st: &State, req: Request<Incoming>, key: Option<ApiKey>) -> Resp {
    // `_budget` is held until the request is done with the body and what was parsed from it.
    let (body, _budget) = match read_body(st, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // A row's JSON sits 4 levels deeper than an event's in its envelope (the `batches` array,
    // a batch, its `rows` array, the row): the same limit for the same content.
    if let Some(at) = too_deep(&body, st.now().collector.max_depth + 4) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("body nests too deep (collector.max_depth) at byte {at}"),
        );
    }
    let request: RowsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, syntax_error("body", &e)),
    };
    let record = WalRecord {
        boot: st.shared.boot,
        batches: request.batches,
        rejected: request.rejected,
    };
    let n = record.len();
    if n > st.now().collector.max_batch_events {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} rows in one request, the limit is {} (collector.max_batch_events)",
                st.now().collector.max_batch_events
            ),
        );
    }
    if let Err(r) = check_request(st, key.as_ref(), &record) {
        return r;
    }
    let dead_letters = record.rejected.len();
    let mut framed = st.shared.record();
    let mut unrouted = 0;
    let refused = check_rows(
        st,
        &st.now_full().processor,
        record,
        &mut framed,
        &mut unrouted,
    );
    let rows = n - dead_letters - refused.len();
    if let Err(r) = st.append(framed, unrouted).await {
        return r;
    }
    let answer = RowsAnswer {
        accepted: n as u64,
        rows: rows as u64,
        dead_letters: dead_letters as u64,
        refused,
    };
    answer::json_text(
        StatusCode::OK,
        serde_json::to_string(&answer).unwrap_or_default(),
    )
}

/// The request's shape: names, days, ids, row sizes and namespace scopes; the first fault
/// refuses it whole (400, or 403 for a scope), with its place named.
fn check_request(st: &State, key: Option<&ApiKey>, record: &WalRecord) -> Result<(), Resp> {
    let max_event = st.now().collector.max_event_bytes.0 as usize;
    for (i, b) in record.batches.iter().enumerate() {
        let checks = [
            envelope::check_dataset_name(&b.dataset).map_err(|r| format!("dataset: {r}")),
            envelope::check_table_name(&b.table).map_err(|r| format!("table: {r}")),
            if b.day.len() == 8 && b.day.bytes().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!("day: expected YYYYMMDD, got {:?}", b.day))
            },
        ];
        if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
            return Err(error(StatusCode::BAD_REQUEST, format!("batches[{i}].{e}")));
        }
        if !in_scope(key, &b.dataset) {
            return Err(error(StatusCode::FORBIDDEN, out_of_scope(&b.dataset)));
        }
        for (j, r) in b.rows.iter().enumerate() {
            let bad = if let Err(e) = envelope::check_id(&r.id) {
                Some(e.to_string())
            } else if !r.json.get().starts_with('{') {
                Some("json: must be an object".into())
            } else if r.json.get().len() > max_event {
                Some(format!(
                    "json: {} bytes, the limit is {max_event} (collector.max_event_bytes)",
                    r.json.get().len()
                ))
            } else {
                None
            };
            if let Some(e) = bad {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("batches[{i}].rows[{j}].{e}"),
                ));
            }
        }
    }
    for (i, r) in record.rejected.iter().enumerate() {
        if let Err(e) = envelope::check_dataset_name(&r.dataset) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("rejected[{i}].dataset: {e}"),
            ));
        }
        if !in_scope(key, &r.dataset) {
            return Err(error(StatusCode::FORBIDDEN, out_of_scope(&r.dataset)));
        }
    }
    Ok(())
}

/// Checks every row with core and routes it into `out`; a refused one becomes a dead letter
/// (routed too) and is returned for the answer. Those no route takes are counted in
/// `unrouted`.
fn check_rows(
    st: &State,
    processor: &Processor,
    record: WalRecord,
    out: &mut RecordBuilder,
    unrouted: &mut u64,
) -> Vec<WireRefused> {
    let routes = processor.routes();
    let dead_letter = |w: WireRejected, out: &mut RecordBuilder, unrouted: &mut u64| {
        let to = routes.select_dead_letter(&w.namespace, &w.type_name, &w.event_id, &w.raw);
        if to.is_empty() {
            *unrouted += 1;
            out.unrouted_table(&w.namespace, &w.type_name);
        } else {
            out.push_wire_rejected(w, to);
        }
    };
    let mut refused = Vec::new();
    let mut refused_copies = Vec::new();
    for w in record.rejected {
        dead_letter(w, out, unrouted);
    }
    for (i, b) in record.batches.into_iter().enumerate() {
        let dest = Destination::from_parts(&b.dataset, &b.table, b.partitioned, &b.day);
        for (j, r) in b.rows.into_iter().enumerate() {
            let sent = r.json.get();
            match processor.check_row_of(&b.dataset, &b.table, b.partitioned, &b.day, &r.id, sent) {
                Ok(c) => {
                    // The converter's text of the row: the same text for rows core wrote.
                    let to = routes.select_row(&c.namespace, &c.type_name, &r.id, &c.json);
                    if to.is_empty() {
                        *unrouted += 1;
                        out.unrouted_table(&c.namespace, &c.type_name);
                    } else {
                        let table = (
                            b.dataset.as_str(),
                            b.table.as_str(),
                            b.partitioned,
                            b.day.as_str(),
                        );
                        let mut refuse = |w| refused_copies.push(w);
                        push_copies(
                            st,
                            processor,
                            out,
                            (&dest, table),
                            to,
                            &r.id,
                            &c,
                            &mut refuse,
                        );
                    }
                }
                Err(rejected) => {
                    let w = WireRejected::from(&*rejected);
                    refused.push(WireRefused {
                        batch: i,
                        row: j,
                        id: rejected.event_id,
                        reason: rejected.reason.to_string(),
                        field: rejected.field,
                        error: rejected.error,
                    });
                    dead_letter(w, out, unrouted);
                }
            }
        }
    }
    // Copies a destination's `[[transforms]]` made invalid: dead letters of that destination
    // only (the row itself was fine: the answer does not list it).
    for (w, set) in refused_copies {
        out.push_wire_rejected(w, set);
    }
    refused
}

/// Adds a checked row for the destinations `to`: as it is when no `[[transforms]]` entry
/// applies; else each copy with its rules (per destination when an entry of its table names
/// destinations), checked again, a copy the rules made invalid going to `refused` as a dead
/// letter of its destination.
#[allow(clippy::too_many_arguments)]
fn push_copies(
    st: &State,
    p: &Processor,
    out: &mut RecordBuilder,
    (dest, table): (&Destination, (&str, &str, bool, &str)),
    to: DestinationSet,
    id: &str,
    row: &CheckedRow,
    refused: &mut dyn FnMut((WireRejected, DestinationSet)),
) {
    let (ns, ty) = (row.namespace.as_str(), row.type_name.as_str());
    for (k, (name, set)) in st.copies(p, ns, ty, to).enumerate() {
        if k > 0 {
            // Every copy is added, as a row here or as a dead letter from `refused`.
            out.split_copy();
        }
        let Some(text) = p.transform_row(ns, ty, name, &row.json, &st.shared.counters) else {
            out.push_row(dest, set, id, &row.json);
            continue;
        };
        let (dataset, table, partitioned, day) = table;
        match p.check_row(dataset, table, partitioned, day, id, &text) {
            Ok(json) => out.push_row(dest, set, id, &json),
            Err(rejected) => refused((WireRejected::from(&*rejected), set)),
        }
    }
}
