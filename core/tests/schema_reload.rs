//! The SDK picks up changed schema files while it runs (`schemas.reload_interval`): a column
//! added to a schema file is used for the events that follow, without a restart; a change that
//! is not additive is refused, counted and told to the error hook, and the schemas in use stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evlog_core::config::Config;
use evlog_core::{ErrorSummary, Outcome, Pipeline};
use serde_json::{json, Value};

/// Writes `<dir>/events/click.json` whole: a new file renamed over the old one, as a deploy
/// would, so the watcher never sees it half-written.
fn write_schema(dir: &Path, fields: Value) {
    let ns = dir.join("events");
    std::fs::create_dir_all(&ns).unwrap();
    let tmp = ns.join(".click.json.tmp");
    std::fs::write(&tmp, fields.to_string()).unwrap();
    std::fs::rename(&tmp, ns.join("click.json")).unwrap();
}

fn pipeline(root: &Path) -> Pipeline {
    let toml = format!(
        "[schemas]\ndir = {:?}\nreload_interval = \"20ms\"\n[sink]\nkind = \"file\"\n\
         [sink.file]\ndir = {:?}\n[batch]\nmax_age = \"10ms\"\n",
        root.join("schemas"),
        root.join("out")
    );
    Pipeline::new(Config::from_toml_str(&toml).unwrap()).unwrap()
}

/// Every row the file sink wrote for `events.click`, in order.
fn rows(root: &Path) -> Vec<Value> {
    let dir = root.join("out/events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("click"))
        })
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn reloads(p: &Pipeline, result: &str) -> u64 {
    p.stats().config_reloads[result]
}

/// Logs events `seq = next..` until `done` holds (at most 10 s), returning the next seq.
fn log_until(p: &Pipeline, mut next: u64, mut done: impl FnMut() -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        let body = json!({"user": "u", "seq": next, "coupon": format!("C{next}")});
        p.log_json("events", "click", &body.to_string()).unwrap();
        next += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    next
}

#[test]
fn a_column_added_to_a_schema_file_is_used_for_the_events_that_follow() {
    let root = tempfile::tempdir().unwrap();
    write_schema(
        &root.path().join("schemas"),
        json!([{"name": "user", "type": "STRING"}, {"name": "seq", "type": "INT64"}]),
    );
    let p = pipeline(root.path());
    // Events flow before the change: `coupon` lands in `other`.
    let mut next = log_until(&p, 0, false_after(50));
    assert!(p.flush(Duration::from_secs(10)));
    write_schema(
        &root.path().join("schemas"),
        json!([{"name": "user", "type": "STRING"}, {"name": "seq", "type": "INT64"},
               {"name": "coupon", "type": "STRING"}]),
    );
    next = log_until(&p, next, || reloads(&p, "ok") == 1);
    // From here on every event is processed with the new schema.
    let first_after = next;
    next = log_until(&p, next, false_after(50));
    assert!(p.shutdown(Duration::from_secs(10)));

    let stats = p.stats();
    assert_eq!(reloads(&p, "error"), 0);
    assert_eq!(stats.accepted, next);
    assert_eq!(stats.delivered, next, "{stats:?}");
    assert_eq!(stats.rejected_total() + stats.dropped_total(), 0);
    let rows = rows(root.path());
    assert_eq!(rows.len() as u64, next);
    let mut seen: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..next).collect::<Vec<_>>(), "every event once");
    for r in &rows {
        let seq: u64 = r["seq"].as_u64().unwrap();
        let other: Value = r["other"]
            .as_str()
            .map_or(Value::Null, |o| serde_json::from_str(o).unwrap());
        let coupon = format!("C{seq}");
        if seq < 50 {
            assert_eq!(
                other["coupon"],
                json!(coupon),
                "before the change, in other: {r}"
            );
            assert!(r.get("coupon").is_none(), "{r}");
        } else if seq >= first_after {
            assert_eq!(
                r["coupon"],
                json!(coupon),
                "after the change, its own column: {r}"
            );
            assert!(other.get("coupon").is_none(), "not in other too: {r}");
        } else {
            // Logged while the change was being picked up: one place or the other, once.
            assert!(
                r["coupon"] == json!(coupon) || other["coupon"] == json!(coupon),
                "{r}"
            );
        }
    }
}

/// True from the `n`-th call on: a fixed number of events.
fn false_after(n: u64) -> impl FnMut() -> bool {
    let mut calls = 0;
    move || {
        calls += 1;
        calls > n
    }
}

#[test]
fn a_change_that_is_not_additive_is_refused_told_and_the_old_schema_stays() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("schemas");
    write_schema(
        &dir,
        json!([{"name": "user", "type": "STRING"}, {"name": "seq", "type": "INT64"}]),
    );
    let p = pipeline(root.path());
    let told: Arc<Mutex<Vec<ErrorSummary>>> = Arc::default();
    let t = Arc::clone(&told);
    p.set_error_hook(Some(Arc::new(move |s: &ErrorSummary| {
        t.lock().unwrap().push(s.clone())
    })));
    let next = log_until(&p, 0, false_after(5));
    // `seq` becomes a STRING: not a change BigQuery's tables.patch makes.
    write_schema(
        &dir,
        json!([{"name": "user", "type": "STRING"}, {"name": "seq", "type": "STRING"}]),
    );
    let next = log_until(&p, next, || reloads(&p, "error") == 1);
    let next = log_until(&p, next, false_after(5));
    assert!(p.shutdown(Duration::from_secs(10)));
    assert_eq!(reloads(&p, "ok"), 0);
    let stats = p.stats();
    assert_eq!(stats.delivered, next, "{stats:?}");
    let told = told.lock().unwrap();
    let refusal = told
        .iter()
        .find(|s| s.outcome == Outcome::ReloadRefused)
        .expect("the hook was told");
    assert_eq!(refusal.reason, "schema_reload");
    assert!(
        refusal.message.contains("events.click: column \"seq\"")
            && refusal.message.contains("from INT64 to STRING"),
        "{}",
        refusal.message
    );
    // The old schema stayed: every event (its `seq` a JSON number, which a STRING column
    // would refuse) was delivered.
    assert_eq!(stats.rejected_total(), 0, "{stats:?}");
    assert_eq!(rows(root.path()).len() as u64, next);
    // The same files are not tried again: one refusal, however many checks since.
    assert_eq!(
        told.iter()
            .filter(|s| s.outcome == Outcome::ReloadRefused)
            .count(),
        1
    );
}
