//! Where a request's rows go: the `_default` stream, or (with `exactly_once`) a COMMITTED
//! stream of this writer with the offset its rows must land at. See the module documentation of
//! `storage` for the rules (one stream per table and request in flight, reused across batches,
//! abandoned after an outcome it cannot know, finalized at close).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    write_stream, CreateWriteStreamRequest, FinalizeWriteStreamRequest, GetWriteStreamRequest,
    WriteStream,
};

use super::positions::{fingerprint, OpenRuns};
use super::write::{status_failure, StorageWriter};
use crate::sink::http::Failure;

/// A stream rows are appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// `projects/P/datasets/D/tables/T/streams/ID`.
    pub name: String,
    /// The offset the next rows must land at (`None` on `_default`, which takes none).
    pub next: Option<i64>,
}

impl Slot {
    /// After `rows` rows landed: where the next ones go.
    pub fn advance(&mut self, rows: usize) {
        if let Some(n) = &mut self.next {
            *n += rows as i64;
        }
    }

    /// The table's `_default` stream.
    pub fn default_stream(project: &str, dataset: &str, table: &str) -> Self {
        Slot {
            name: format!("projects/{project}/datasets/{dataset}/tables/{table}/streams/_default"),
            next: None,
        }
    }
}

/// Idle COMMITTED streams by `(dataset, table id)`, with their next offsets.
#[derive(Debug, Default)]
pub(crate) struct CommittedStreams {
    idle: Mutex<HashMap<(String, String), Vec<Slot>>>,
}

impl CommittedStreams {
    /// An idle stream of the table, if any.
    pub fn take(&self, dataset: &str, table: &str) -> Option<Slot> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&(dataset.to_string(), table.to_string()))
            .and_then(Vec::pop)
    }

    /// Gives back a stream whose end is known (every request on it was answered).
    pub fn put(&self, dataset: &str, table: &str, slot: Slot) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((dataset.to_string(), table.to_string()))
            .or_default()
            .push(slot);
    }

    /// Every idle stream, removed from the pool.
    fn drain(&self) -> Vec<Slot> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect()
    }
}

/// Most runs [`Unsettled`] keeps (the oldest go first): rows that never come back (dropped by
/// the pipeline) must not hold memory forever.
const MAX_UNSETTLED: usize = 4096;

/// Runs of rows whose last append on a COMMITTED stream had an outcome this writer could not
/// learn (out of attempts after a lost answer): where they were sent, so that when the same rows
/// come back (the collector retrying them from its log, the SDK replaying its spool in this
/// process) they go to the same stream at the same offset, and `ALREADY_EXISTS` tells whether
/// they landed. Keyed by the run's first insert id; the run matches only if the same ids follow
/// in the same order.
#[derive(Debug, Default)]
pub(crate) struct Unsettled {
    runs: Mutex<(HashMap<String, Run>, std::collections::VecDeque<String>)>,
}

#[derive(Debug, Clone)]
struct Run {
    ids: u64,
    len: usize,
    slot: Slot,
}

impl Unsettled {
    /// Remembers runs read from positions files (see `positions.rs`).
    pub fn load(&self, runs: OpenRuns) {
        let mut g = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        for ((first, ids), (len, slot)) in runs {
            if map.insert(first.clone(), Run { ids, len, slot }).is_none() {
                order.push_back(first);
            }
        }
    }

    /// Remembers that `ids` (in order) were last sent to `slot` without an answer.
    pub fn remember<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone, slot: Slot) {
        let len = ids.clone().count();
        let Some(first) = ids.clone().next() else {
            return;
        };
        let first = first.to_string();
        let run = Run {
            ids: fingerprint(ids),
            len,
            slot,
        };
        let mut g = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        if map.insert(first.clone(), run).is_none() {
            order.push_back(first);
        }
        while order.len() > MAX_UNSETTLED {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// Cuts `ids` into runs: `(range, Some(slot))` for a remembered run found whole (removed
    /// from memory: it is being sent again), `(range, None)` for the rows between them.
    pub fn carve(&self, ids: &[&str]) -> Vec<(std::ops::Range<usize>, Option<Slot>)> {
        let mut g = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        let mut out = Vec::new();
        if map.is_empty() {
            if !ids.is_empty() {
                out.push((0..ids.len(), None));
            }
            return out;
        }
        let mut gap = 0;
        let mut i = 0;
        while i < ids.len() {
            let found = map.get(ids[i]).filter(|r| {
                i + r.len <= ids.len() && fingerprint(ids[i..i + r.len].iter().copied()) == r.ids
            });
            match found {
                Some(run) => {
                    let (len, slot) = (run.len, run.slot.clone());
                    map.remove(ids[i]);
                    order.retain(|k| k != ids[i]);
                    if gap < i {
                        out.push((gap..i, None));
                    }
                    out.push((i..i + len, Some(slot)));
                    i += len;
                    gap = i;
                }
                None => i += 1,
            }
        }
        if gap < ids.len() {
            out.push((gap..ids.len(), None));
        }
        out
    }
}

/// `Bearer <token>` and the routing header BigQuery asks for, on a request.
pub(crate) fn authorized<T>(
    msg: T,
    token: Option<&str>,
    routing: &str,
) -> Result<tonic::Request<T>, Failure> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| Failure::fatal("auth", "the access token is not a valid header".into()))?;
        req.metadata_mut().insert("authorization", v);
    }
    if let Ok(v) = routing.parse() {
        req.metadata_mut().insert("x-goog-request-params", v);
    }
    Ok(req)
}

impl StorageWriter {
    /// Creates a COMMITTED stream on `table` (`projects/P/datasets/D/tables/T`).
    pub(crate) async fn create_committed(
        &self,
        table: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Slot, Failure> {
        let req = CreateWriteStreamRequest {
            parent: table.to_string(),
            write_stream: Some(WriteStream {
                r#type: write_stream::Type::Committed as i32,
                ..WriteStream::default()
            }),
        };
        let req = authorized(req, token, &format!("parent={table}"))?;
        let mut client = self.client();
        let created = tokio::time::timeout(timeout, client.create_write_stream(req))
            .await
            .map_err(|_| Failure::retry("timeout", "CreateWriteStream: no answer".into(), None))?
            .map_err(|s| status_failure(&s))?
            .into_inner();
        Ok(Slot {
            name: created.name,
            next: Some(0),
        })
    }

    /// What BigQuery says of a stream (after `OUT_OF_RANGE`), for the message.
    pub(crate) async fn describe(&self, name: &str, token: Option<&str>) -> String {
        let req = GetWriteStreamRequest {
            name: name.to_string(),
            ..GetWriteStreamRequest::default()
        };
        let Ok(req) = authorized(req, token, &format!("name={name}")) else {
            return "unknown".into();
        };
        let mut client = self.client();
        match tokio::time::timeout(Duration::from_secs(10), client.get_write_stream(req)).await {
            Ok(Ok(s)) => {
                let s = s.into_inner();
                let ty =
                    write_stream::Type::try_from(s.r#type).map_or("unknown", |t| t.as_str_name());
                let state = if s.commit_time.is_some() {
                    "committed"
                } else {
                    "open"
                };
                format!("{ty}, {state}")
            }
            Ok(Err(s)) => format!("GetWriteStream: {}", status_failure(&s).message),
            Err(_) => "GetWriteStream: no answer".into(),
        }
    }

    /// Finalizes every idle COMMITTED stream (at close); streams abandoned after an unknown
    /// outcome are left open on purpose. Returns how many could not be finalized.
    pub(crate) async fn finalize_idle(&self, token: Option<&str>, timeout: Duration) -> usize {
        let mut failed = 0;
        for slot in self.committed.drain() {
            let req = FinalizeWriteStreamRequest {
                name: slot.name.clone(),
            };
            let Ok(req) = authorized(req, token, &format!("name={}", slot.name)) else {
                failed += 1;
                continue;
            };
            let mut client = self.client();
            match tokio::time::timeout(timeout, client.finalize_write_stream(req)).await {
                Ok(Ok(_)) => {}
                _ => failed += 1,
            }
        }
        failed
    }
}
