//! Schema evolution end to end, from the SDK: a field that so far landed in `other` is promoted
//! to a column of its own while events flow. The pipeline notices the changed schema file, the
//! BigQuery sink patches the table and the day shard before it sends rows with the column, and
//! the rows BigQuery refuses while the change propagates ("no such field", the test server's
//! propagation delay) are retried, not dead-lettered. No event is lost or dead-lettered; every
//! row logged after the change carries the column in its own column.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{config_with_schemas, rows_of, wait_for, write_schema, Evolving};
use evlog_core::Pipeline;
use serde_json::{json, Value};

/// How long the test server keeps a new column from `insertAll` after the patch: longer than
/// the sink's retry budget in `common::config`, so rows also take the spool's way back.
const PROPAGATION: Duration = Duration::from_millis(1000);

fn click_fields(with_coupon: bool) -> Value {
    let mut fields = vec![
        json!({"name": "user", "type": "STRING", "mode": "REQUIRED"}),
        json!({"name": "seq", "type": "INT64", "mode": "REQUIRED"}),
    ];
    if with_coupon {
        fields.push(json!({"name": "coupon", "type": "STRING", "mode": "NULLABLE"}));
    }
    Value::Array(fields)
}

/// Logs `{"user", "seq", "coupon"}` events, `seq` counting up, until told to stop.
struct Logger {
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Logger {
    fn start(p: &Pipeline) -> Self {
        let (next, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, n, s) = (p.clone(), Arc::clone(&next), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let seq = n.load(Ordering::Relaxed);
                let body = json!({"user": "u", "seq": seq, "coupon": format!("C{seq}")});
                p.log_json("events", "click", &body.to_string())
                    .expect("logged");
                n.store(seq + 1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        Self {
            next,
            stop,
            thread: Some(thread),
        }
    }

    /// The seq the next event will carry.
    fn next(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Stops and returns how many events were logged.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.next()
    }
}

#[test]
fn a_field_promoted_from_other_to_a_column_while_events_flow_loses_nothing() {
    let Evolving {
        server,
        tmp,
        schemas,
    } = Evolving::start(PROPAGATION, "events", "click", &click_fields(false));
    let extra = format!(
        "reload_interval = \"50ms\"\n[spool]\ndir = {:?}\n",
        tmp.path().join("spool")
    );
    let p = Pipeline::new(config_with_schemas(&server, &schemas, &extra)).unwrap();
    let logger = Logger::start(&p);

    // Events flow under the old schema: `coupon` lands in `other`.
    let limit = Duration::from_secs(30);
    assert!(wait_for(limit, || rows_of(&server, "events", "click")
        .len()
        >= 200));
    write_schema(&schemas, "events", "click", &click_fields(true));
    assert!(wait_for(limit, || p.stats().config_reloads["ok"] == 1));
    // Every event logged from here on is processed with the new schema.
    let first_after = logger.next();
    assert!(wait_for(limit, || {
        rows_of(&server, "events", "click")
            .iter()
            .any(|r| r["seq"].as_u64() > Some(first_after + 500))
    }));
    let logged = logger.stop();
    assert!(wait_for(limit, || {
        p.flush(Duration::from_secs(5));
        p.stats().delivered == logged
    }));
    assert!(p.shutdown(Duration::from_secs(10)));

    // Accounting: accepted = delivered, nothing rejected or dropped.
    let stats = p.stats();
    assert_eq!(stats.accepted, logged, "{stats:?}");
    assert_eq!(stats.delivered, logged, "{stats:?}");
    assert_eq!(stats.rejected_total(), 0, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_eq!(stats.config_reloads["error"], 0);
    assert!(rows_of(&server, "events", "_evlog_rejected").is_empty());

    // The table and the day shard were patched, and BigQuery refused the new column for a
    // while (the rows waited, then went in).
    let bq = server.stats();
    assert!(bq.tables_patched >= 2, "base and shard: {bq:?}");
    assert!(bq.rows_awaiting_column > 0, "{bq:?}");
    assert!(
        stats
            .sink_errors
            .keys()
            .any(|(_, kind)| kind == "schema_propagation"),
        "{stats:?}"
    );
    // Every event exactly once; after the change, `coupon` in its own column.
    let in_other = common::assert_coupon_promoted(&server, logged, first_after);
    assert!(in_other >= 200, "the first rows kept coupon in other");
}

/// A process that starts with the new schema file while the table still has the old schema
/// (another process changed the file; this one never saw the old version): the first rows meet
/// "no such field", the sink patches the table and the shard itself, and the rows go in.
#[test]
fn a_process_started_with_a_newer_schema_patches_the_table_on_no_such_field() {
    let Evolving {
        server,
        tmp,
        schemas,
    } = Evolving::start(
        Duration::from_millis(200),
        "events",
        "click",
        &click_fields(false),
    );
    write_schema(&schemas, "events", "click", &click_fields(true));
    let extra = format!("[spool]\ndir = {:?}\n", tmp.path().join("spool"));
    let p = Pipeline::new(config_with_schemas(&server, &schemas, &extra)).unwrap();
    let n = 300;
    for seq in 0..n {
        let body = json!({"user": "u", "seq": seq, "coupon": format!("C{seq}")});
        p.log_json("events", "click", &body.to_string()).unwrap();
    }
    assert!(wait_for(Duration::from_secs(30), || {
        p.flush(Duration::from_secs(5));
        p.stats().delivered == n
    }));
    assert!(p.shutdown(Duration::from_secs(10)));
    let stats = p.stats();
    assert_eq!(
        stats.rejected_total() + stats.dropped_total(),
        0,
        "{stats:?}"
    );
    let bq = server.stats();
    assert!(
        bq.tables_patched >= 1 && bq.rows_awaiting_column > 0,
        "{bq:?}"
    );
    let rows = rows_of(&server, "events", "click");
    assert_eq!(rows.len() as u64, n);
    for r in &rows {
        assert_eq!(r["coupon"], json!(format!("C{}", r["seq"])), "{r}");
    }
}
