//! Keeping BigQuery tables in step with the schema files in use (schema evolution).
//!
//! - **When**: at the start of each delivery the sink asks whether the processor was replaced
//!   (a reload); if so it rebuilds its catalog and marks stale every base table whose schema
//!   changed. Before sending rows to a stale table it patches it: the base table, then every
//!   table it wrote through it in its life (day shards, `<table>YYYYMMDD`) and the shards the
//!   rows go to now. Each is `tables.get`, [`merge_for_patch`] of its schema with the catalog's,
//!   and `tables.patch` with the merged fields when anything is missing; a table that does not
//!   exist is skipped (a shard made later is made from the patched base). A table is patched
//!   once per schema change: on success it is no longer stale; on failure it stays stale and
//!   the next delivery tries again, while the rows go out anyway.
//! - **Propagation**: BigQuery may refuse a fresh column in `insertAll` for a while after the
//!   patch ("no such field: x.", reason `invalid`). A row refused so, or with "Missing required
//!   field" for a column the catalog now has NULLABLE, is not dead-lettered: it is sent again
//!   with the usual backoff (`[retry]`), and the table it went to is patched (once per request)
//!   in case nobody had (another process reloaded, or this one started with the new schema and
//!   an older shard). When the retry budget runs out the rows are reported failed, so the
//!   pipeline spools them and the collector keeps them in its write-ahead log.
//! - Only columns the catalog has are awaited this way: a field that no schema names is a real
//!   error, dead-lettered as before.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use super::service;
use super::sink::{catalog, BigQuerySink, TableCatalog};
use crate::schema::evolve::{fields_of_table, merge_for_patch};
use crate::sink::http::{Attempts, Failure};
use crate::sink::{Batch, BatchOutcome};

/// `(dataset, base table)`.
pub(super) type TableKey = (String, String);

/// What the sink knows about its tables beyond the catalog.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// Base tables whose catalog schema changed since they were last patched.
    pub(super) stale: HashSet<TableKey>,
    /// Per base table, the table ids this sink wrote to (the base, day shards).
    pub(super) written: std::sync::Mutex<std::collections::HashMap<TableKey, BTreeSet<String>>>,
}

/// Base tables of `new` whose schema differs from `old`'s (tables new to `new` are created on
/// first use, not patched).
pub(super) fn changed_tables(old: &TableCatalog, new: &TableCatalog) -> Vec<TableKey> {
    new.iter()
        .filter(|(k, (fields, _))| old.get(*k).is_some_and(|(f, _)| f != fields))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The column a row error says is missing from the table, and whether the error is the
/// "Missing required field" kind (else "no such field").
pub(super) fn missing_column(location: Option<&str>, message: &str) -> Option<(String, bool)> {
    let lower = message.to_ascii_lowercase();
    let (rest, required) = if let Some(i) = lower.find("no such field: ") {
        (&message[i + "no such field: ".len()..], false)
    } else if let Some(i) = lower.find("missing required field: ") {
        (&message[i + "missing required field: ".len()..], true)
    } else {
        return None;
    };
    let from_message = rest.trim().trim_end_matches('.').to_string();
    let column = location
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or(from_message);
    Some((column, required))
}

/// The field at dotted `path` in a BigQuery JSON field list (names case-insensitive).
fn find_column<'a>(fields: &'a Value, path: &str) -> Option<&'a Value> {
    let mut list = fields;
    let mut found = None;
    for name in path.split('.') {
        let f = list.as_array()?.iter().find(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })?;
        list = f.get("fields").unwrap_or(&Value::Null);
        found = Some(f);
    }
    found
}

impl BigQuerySink {
    /// Rebuilds the catalog when the processor was replaced, marking changed tables stale.
    pub(super) fn follow_schemas(&mut self) {
        let Some(p) = self.follow.changed() else {
            return;
        };
        let new = catalog(p.schemas(), p.router());
        self.sync.stale.extend(changed_tables(&self.catalog, &new));
        self.catalog = std::sync::Arc::new(new);
    }

    /// Patches the stale tables `batches` are about to write (see the module documentation).
    /// A failed patch's kind goes to the first outcome of a batch for that table.
    pub(super) fn patch_stale(&mut self, batches: &[Batch], outcomes: &mut [BatchOutcome]) {
        if self.sync.stale.is_empty() {
            return;
        }
        let mut due: Vec<(usize, TableKey, BTreeSet<String>)> = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let key = (
                b.destination.dataset.to_string(),
                b.destination.table.to_string(),
            );
            if !self.sync.stale.contains(&key) {
                continue;
            }
            let target = target_id(&key.1, b.destination.template_suffix());
            match due.iter_mut().find(|(_, k, _)| *k == key) {
                Some((_, _, ids)) => {
                    ids.insert(target);
                }
                None => {
                    let mut ids = self.written_ids(&key);
                    ids.insert(key.1.clone());
                    ids.insert(target);
                    due.push((i, key, ids));
                }
            }
        }
        for (i, key, ids) in due {
            let Some((wanted, _)) = self.catalog.get(&key).cloned() else {
                continue;
            };
            let result = self.rt.block_on(async {
                for id in &ids {
                    self.patch_table(&key.0, id, &wanted).await?;
                }
                Ok::<_, Failure>(())
            });
            match result {
                Ok(()) => {
                    self.sync.stale.remove(&key);
                }
                Err(f) => outcomes[i].attempt_errors.push(f.kind),
            }
        }
    }

    /// The table ids written through base table `key`.
    fn written_ids(&self, key: &TableKey) -> BTreeSet<String> {
        self.sync
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers that rows went to `table_id` through base table `key`.
    pub(super) fn note_written(&self, key: &TableKey, table_id: &str) {
        let mut w = self.sync.written.lock().unwrap_or_else(|e| e.into_inner());
        let ids = w.entry(key.clone()).or_default();
        if !ids.contains(table_id) {
            ids.insert(table_id.to_string());
        }
    }

    /// Whether a row refused with this error awaits a column the catalog has for `key` (see the
    /// module documentation): then it is sent again rather than dead-lettered.
    pub(super) fn awaits_column(
        &self,
        key: &TableKey,
        location: Option<&str>,
        message: &str,
    ) -> bool {
        let Some((column, required)) = missing_column(location, message) else {
            return false;
        };
        let Some((fields, _)) = self.catalog.get(key) else {
            return false;
        };
        match find_column(fields, &column) {
            None => false,
            Some(_) if !required => true,
            Some(f) => f
                .get("mode")
                .and_then(Value::as_str)
                .is_none_or(|m| m.eq_ignore_ascii_case("NULLABLE")),
        }
    }

    /// Patches the base table of `key` and `dataset.table_id` (its shard, when not the base)
    /// to have every column of `key`'s catalog schema; one attempt each, bounded by the
    /// shutdown deadline. Errors are only counted: the rows are retried anyway.
    pub(super) async fn patch_target(
        &self,
        key: &TableKey,
        table_id: &str,
    ) -> Option<&'static str> {
        let (wanted, _) = self.catalog.get(key)?;
        let mut ids = vec![key.1.as_str()];
        if table_id != key.1 {
            ids.push(table_id);
        }
        for id in ids {
            if let Err(f) = self.patch_table(&key.0, id, wanted).await {
                return Some(f.kind);
            }
        }
        None
    }

    /// `tables.get`, then `tables.patch` with the merged schema if it lacks anything of
    /// `wanted`. True when it patched; a missing table is `Ok(false)`.
    async fn patch_table(
        &self,
        dataset: &str,
        table_id: &str,
        wanted: &Value,
    ) -> Result<bool, Failure> {
        let url = format!(
            "{}/projects/{}/datasets/{}/tables/{}",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.project,
            dataset,
            table_id
        );
        let attempts = Attempts::new(&self.retry, true).watching(&self.stop);
        let Some(table) = attempts
            .attempt(self.table_call(reqwest::Method::GET, &url, None))
            .await?
        else {
            return Ok(false);
        };
        let wanted = wanted.as_array().map(Vec::as_slice).unwrap_or_default();
        let Some(merged) = merge_for_patch(&fields_of_table(&table), wanted) else {
            return Ok(false);
        };
        let body = json!({"schema": {"fields": merged}});
        let attempts = Attempts::new(&self.retry, true).watching(&self.stop);
        attempts
            .attempt(self.table_call(reqwest::Method::PATCH, &url, Some(&body)))
            .await
            .map_err(|f| Failure {
                message: format!("patching table {dataset}.{table_id}: {}", f.message),
                ..f
            })?;
        Ok(true)
    }

    /// One `tables.*` call; the answer's JSON, or `None` for 404.
    pub(super) async fn table_call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, Failure> {
        let token = self.tokens.token().await?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(self.cfg.request_timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::retry("transport", format!("{method} {url}: {e}"), None))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(service::classify(status, &bytes, None));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Failure::retry(
                "bad_response",
                format!("{method} {url}: unreadable answer: {e}"),
                None,
            )
        })
    }
}

/// The table a destination's rows land in: the base table, or its day shard.
pub(super) fn target_id(base: &str, suffix: Option<&str>) -> String {
    format!("{base}{}", suffix.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_columns_are_read_from_bigquery_row_errors() {
        assert_eq!(
            missing_column(Some("coupon"), "no such field: coupon."),
            Some(("coupon".into(), false))
        );
        assert_eq!(
            missing_column(None, "no such field: coupon."),
            Some(("coupon".into(), false))
        );
        assert_eq!(
            missing_column(Some("a"), "Missing required field: a."),
            Some(("a".into(), true))
        );
        assert_eq!(
            missing_column(Some("a"), "Cannot convert value to integer."),
            None
        );
    }

    #[test]
    fn only_tables_whose_schema_changed_are_stale_not_new_ones() {
        let key = |t: &str| ("d".to_string(), t.to_string());
        let old: TableCatalog = [
            (key("same"), (json!([{"name": "a"}]), false)),
            (key("grew"), (json!([{"name": "a"}]), false)),
        ]
        .into();
        let mut new = old.clone();
        new.insert(key("grew"), (json!([{"name": "a"}, {"name": "b"}]), false));
        new.insert(key("added"), (json!([{"name": "a"}]), false));
        assert_eq!(changed_tables(&old, &new), vec![key("grew")]);
    }

    #[test]
    fn columns_are_found_by_dotted_path_case_insensitively() {
        let fields = json!([{"name": "cart", "type": "RECORD", "fields": [{"name": "Tags", "type": "STRING"}]}]);
        assert!(find_column(&fields, "cart.tags").is_some());
        assert!(find_column(&fields, "cart.x").is_none());
        assert!(find_column(&fields, "tags").is_none());
    }
}
