//! `_bulk` request bodies and answers.
//!
//! Body (NDJSON, every line ending with `\n`, the last one too):
//! `{"create":{"_index":"<index>","_id":"<event id>"}}` then the document, per row.
//!
//! Answer: `{"took":…,"errors":…,"items":[{"create":{"_index","_id","status",["error":{"type",
//! "reason","caused_by":{…}}]}},…]}`, one item per action, in the order sent. What an item's
//! status means for its row is [`Verdict`].

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::document::{self, push_json_str, DocShape};
use crate::sink::EncodedRow;

/// The `_bulk` body creating `rows` in `index`.
pub fn body(index: &str, rows: &[EncodedRow], shape: Option<&DocShape>) -> Vec<u8> {
    let size: usize = rows
        .iter()
        .map(|r| r.json.len() + r.insert_id.len() + index.len() + 40)
        .sum();
    let mut head = Vec::with_capacity(index.len() + 32);
    head.extend_from_slice(b"{\"create\":{\"_index\":");
    push_json_str(&mut head, index);
    head.extend_from_slice(b",\"_id\":");
    let mut b = Vec::with_capacity(size);
    for row in rows {
        b.extend_from_slice(&head);
        push_json_str(&mut b, &row.insert_id);
        b.extend_from_slice(b"}}\n");
        document::write(&mut b, &row.json, shape);
        b.push(b'\n');
    }
    b
}

/// OpenSearch's error for one item (or a whole request): its `type` and `reason`, and the first
/// `caused_by`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// HTTP status of the item.
    pub status: u16,
    /// `error.type`, e.g. `mapper_parsing_exception`.
    pub kind: String,
    /// `error.reason`.
    pub reason: String,
    /// `error.caused_by`, as `type: reason`.
    pub caused_by: Option<String>,
}

impl ItemError {
    /// From an `error` member (an object, or a bare string as old versions sent).
    pub fn from_value(status: u16, error: &Value) -> Self {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match error {
            Value::Object(_) => ItemError {
                status,
                kind: text(error, "type"),
                reason: text(error, "reason"),
                caused_by: error
                    .get("caused_by")
                    .map(|c| format!("{}: {}", text(c, "type"), text(c, "reason"))),
            },
            Value::String(s) => ItemError {
                status,
                kind: String::new(),
                reason: s.clone(),
                caused_by: None,
            },
            _ => ItemError {
                status,
                kind: String::new(),
                reason: error.to_string(),
                caused_by: None,
            },
        }
    }

    /// `type: reason (caused by …)`.
    pub fn describe(&self) -> String {
        let mut s = if self.kind.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.kind, self.reason)
        };
        if let Some(c) = &self.caused_by {
            s.push_str(&format!(" (caused by {c})"));
        }
        s
    }

    /// The field OpenSearch names in a mapping error (`failed to parse field [a.b] of type …`,
    /// `mapping for [a] …`), if any.
    pub fn field(&self) -> Option<String> {
        for marker in ["failed to parse field [", "object mapping for [", "field ["] {
            if let Some(start) = self.reason.find(marker) {
                let rest = &self.reason[start + marker.len()..];
                if let Some(end) = rest.find(']') {
                    if end > 0 {
                        return Some(rest[..end].to_string());
                    }
                }
            }
        }
        None
    }
}

/// What an item's answer means for its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx, or 409 (`version_conflict_engine_exception`: a document with this id is already
    /// there, from an earlier attempt whose answer was lost).
    Delivered,
    /// 408, 429 (`es_rejected_execution_exception`: a full write queue) or 5xx: send it again.
    Retry(ItemError),
    /// 401, 403, 404: not the document's fault (permissions, a missing index that may not be
    /// created); the row fails now and is kept (spool, write-ahead log).
    Fail(ItemError),
    /// Any other 4xx (400 `mapper_parsing_exception`, `illegal_argument_exception`, …): refused
    /// for its content, for good.
    Refused(ItemError),
}

impl Verdict {
    /// The verdict for an item's status and error.
    pub fn of(status: u16, error: Option<&Value>) -> Verdict {
        let e = || ItemError::from_value(status, error.unwrap_or(&Value::Null));
        match status {
            200..=299 | 409 => Verdict::Delivered,
            408 | 429 | 500.. => Verdict::Retry(e()),
            401 | 403 | 404 => Verdict::Fail(e()),
            _ => Verdict::Refused(e()),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    items: Vec<HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default, rename = "_id")]
    id: Option<String>,
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// The verdict of every row sent (`ids`, in order), from a 2xx `_bulk` answer; `Err` says why
/// the answer is not the one for this request.
pub fn verdicts(text: &[u8], ids: &[&str]) -> Result<Vec<Verdict>, String> {
    let answer: Answer =
        serde_json::from_slice(text).map_err(|e| format!("is not a _bulk answer ({e})"))?;
    if answer.items.len() != ids.len() {
        return Err(format!(
            "has {} items for the {} documents sent",
            answer.items.len(),
            ids.len()
        ));
    }
    answer
        .items
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (item, id))| {
            let Some(r) = item.into_values().next() else {
                return Err(format!("item {i} is empty"));
            };
            if r.id.as_deref().is_some_and(|got| got != *id) {
                return Err(format!(
                    "item {i} is for _id {:?}, not {id:?}",
                    r.id.unwrap_or_default()
                ));
            }
            Ok(Verdict::of(r.status, r.error.as_ref()))
        })
        .collect()
}
