//! Fork safety: a child's first `log()` starts its own thread and queue and never delivers (or
//! duplicates) what the parent had queued at the time of the fork. Own test binary, so the process
//! has no other test threads when it forks.
#![allow(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use evlog_core::{Config, Pipeline};
use serde_json::Value;

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn forked_child_logs_through_its_own_thread() {
    let out = tempfile::tempdir().unwrap();
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas");
    let toml = format!(
        "[sink.file]\ndir = {:?}\n[schemas]\ndir = {:?}\n[batch]\nmax_age = \"1h\"\n",
        out.path(),
        schemas
    );
    let p = Pipeline::new(Config::from_toml_str(&toml).unwrap()).unwrap();
    // Queued in the parent and not yet delivered when the fork happens.
    for i in 0..100 {
        p.log_json(
            "events",
            "page_view",
            &format!(r#"{{"url":"/parent/{i}"}}"#),
        )
        .unwrap();
    }
    assert_eq!(p.stats().accepted, 100);

    // SAFETY: the child only uses the pipeline (which is built for this) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // A child that has not logged has accepted nothing and has nothing to flush.
            if p.stats().accepted != 0 || !p.flush(Duration::from_secs(1)) {
                return false;
            }
            for i in 0..50 {
                if p.log_json("events", "page_view", &format!(r#"{{"url":"/child/{i}"}}"#))
                    .is_err()
                {
                    return false;
                }
            }
            let flushed = p.flush(Duration::from_secs(20));
            let s = p.stats();
            flushed && s.accepted == 50 && s.delivered == 50 && s.is_settled()
        }))
        .unwrap_or(false);
        // SAFETY: leaving the child without running the parent's destructors or test harness.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status}"
    );
    assert_eq!(libc::WEXITSTATUS(status), 0, "child checks failed");

    // The parent's thread is unaffected.
    for i in 100..110 {
        p.log_json(
            "events",
            "page_view",
            &format!(r#"{{"url":"/parent/{i}"}}"#),
        )
        .unwrap();
    }
    assert!(p.flush(Duration::from_secs(20)));
    let s = p.stats();
    assert_eq!((s.accepted, s.delivered), (110, 110));

    let today = evlog_core::time::yyyymmdd(evlog_core::time::now_micros());
    let all = rows(&out.path().join(format!("events/page_view{today}.ndjson")));
    let urls: Vec<&str> = all.iter().map(|r| r["url"].as_str().unwrap()).collect();
    let parent = urls.iter().filter(|u| u.starts_with("/parent/")).count();
    let child = urls.iter().filter(|u| u.starts_with("/child/")).count();
    assert_eq!((parent, child), (110, 50), "each event exactly once");
    let mut ids: Vec<&str> = all
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 160, "parent and child ids never collide");
    // Nor do their random bits (the last 48 of an id): a child that kept drawing from the
    // generator its parent's thread held at the fork would repeat the parent's next ids' bits.
    let mut tails: Vec<&str> = ids.iter().map(|id| &id[id.len() - 12..]).collect();
    tails.sort_unstable();
    tails.dedup();
    assert_eq!(
        tails.len(),
        160,
        "parent and child draw different random bits"
    );
}
