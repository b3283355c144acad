//! Exactly-once across processes: an SDK process spools events while the Storage Write API
//! fails, a second process replays the spool while half the answers are lost (rows stored, ack
//! gone) and is killed with SIGKILL mid-replay, a third drains what is left. With
//! `positions_dir`, every event is stored exactly once: rows the killed process had sent go back
//! to the same stream and offset and meet `ALREADY_EXISTS`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evlog_core::sink::bigquery::WriteApi;
use evlog_core::{EventInput, Pipeline};
use evlog_tests::bq::grpc::GrpcFault;

mod common;
use common::{schema_dir, start_grpc_server, PROJECT};

const CHILD_ENV: &str = "EVLOG_BQ_CRASH_CHILD";
const EVENTS: usize = 6_000;

/// Whether the spool directory holds no segment.
fn spool_empty(dir: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .all(|e| !e.file_name().to_string_lossy().ends_with(".evs"))
        })
        .unwrap_or(false)
}

/// The child: `role rest grpc spool positions`, roles `log`, `replay` (until killed), `drain`.
#[test]
fn crash_child() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when started by the parent test
    };
    let a: Vec<&str> = args.split('\t').collect();
    let [role, rest, grpc, spool, positions] = a.as_slice() else {
        panic!("bad child arguments: {args}");
    };
    let extra = format!("[spool]\nenabled = true\ndir = {spool:?}\nfsync = false\n");
    let mut cfg = config_with_schemas_at(rest, &extra);
    cfg.sink.bigquery.api = WriteApi::StorageWrite;
    cfg.sink.bigquery.storage_url = grpc.to_string();
    cfg.sink.bigquery.exactly_once = true;
    cfg.sink.bigquery.positions_dir = Some(positions.into());
    cfg.retry.max_attempts = 2;
    let p = Pipeline::new(cfg).expect("pipeline");
    if *role != "log" {
        // The flush thread starts with the first event; one of its own, with a marked id.
        let id = format!("{role}-marker");
        let mut ev = EventInput::new("events", "page_view", r#"{"url":"/marker"}"#);
        ev.id = Some(&id);
        p.log(ev).expect("accepted");
    }
    match *role {
        "log" => {
            for i in 0..EVENTS {
                let id = format!("k{i}");
                let body = format!(r#"{{"url":"/k/{i}","user_id":{i}}}"#);
                let mut ev = EventInput::new("events", "page_view", body);
                ev.id = Some(&id);
                p.log(ev).expect("accepted");
            }
            p.flush(Duration::from_secs(5));
            drop(p);
            println!("logged");
        }
        "replay" => loop {
            p.flush(Duration::from_millis(200));
            println!("delivered {}", p.stats().delivered);
        },
        _ => {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !(spool_empty(spool) && p.stats().is_settled()) && Instant::now() < deadline {
                p.flush(Duration::from_millis(500));
            }
            drop(p);
            println!("drained {}", spool_empty(spool));
        }
    }
}

/// The tests' configuration for a server known by its REST URL (in the child).
fn config_with_schemas_at(rest: &str, extra: &str) -> evlog_core::Config {
    let text = common::config_text_for(rest, &schema_dir(), extra);
    evlog_core::Config::from_toml_str(&text).expect("config")
}

fn child(role: &str, args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            std::iter::once(role)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join("\t"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child")
}

/// Waits for the child to print `prefix`; returns its line from there.
fn line_of(c: &mut std::process::Child, prefix: &str) -> String {
    let out = c.stdout.take().expect("stdout");
    let found = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        // libtest prints "test crash_child ... " before the child's first line.
        .find_map(|l| l.find(prefix).map(|i| l[i..].to_string()))
        .unwrap_or_default();
    let _ = c.wait();
    found
}

#[test]
fn a_process_killed_mid_replay_leaves_nothing_stored_twice_with_positions_dir() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let server = start_grpc_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let spool = tmp.path().join("spool");
    let positions = tmp.path().join("positions");
    let (rest, grpc) = (server.v2_base_url(), server.grpc_url());
    let args = [
        rest.as_str(),
        grpc.as_str(),
        spool.to_str().expect("path"),
        positions.to_str().expect("path"),
    ];

    // 1. BigQuery fails every append: everything goes to the spool.
    server.set_grpc_failure_mix(1.0, 1, vec![GrpcFault::Unavailable]);
    let mut a = child("log", &args);
    assert_eq!(line_of(&mut a, "logged"), "logged");
    assert_eq!(server.grpc_stats().rows_stored, 0);
    let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert!(spooled > 0, "the first process spooled its events");

    // 2. Half the answers are lost after the rows are stored; the replaying process is killed
    //    while it works through the spool.
    server.set_grpc_failure_mix(0.5, 2, vec![GrpcFault::AckLost]);
    let mut b = child("replay", &args);
    let out = b.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while server.grpc_stats().rows_stored < (EVENTS / 3) as u64 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => last = l,
            _ => break,
        }
    }
    b.kill().expect("SIGKILL");
    let _ = b.wait();
    let stored_at_kill = server.grpc_stats().rows_stored;
    assert!(
        stored_at_kill > 0 && stored_at_kill < EVENTS as u64 - 500,
        "killed mid-replay: {stored_at_kill} of {EVENTS} stored; the child said {last:?}; {:?}",
        server.grpc_stats()
    );

    // 3. BigQuery is well again; the next process drains the spool.
    server.set_grpc_failure_ratio(0.0, 3);
    let mut c = child("drain", &args);
    assert_eq!(line_of(&mut c, "drained"), "drained true");

    let mut ids = Vec::new();
    for t in server.table_ids(PROJECT, "events") {
        if t.starts_with("page_view") {
            for r in server.rows(PROJECT, "events", &t) {
                ids.push(r["event_id"].as_str().expect("id").to_string());
            }
        }
    }
    // The two later processes each logged one marked event of their own.
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), EVENTS + 2, "0 lost");
    assert_eq!(ids.len(), EVENTS + 2, "0 stored twice");
    let st = server.grpc_stats();
    assert!(
        st.offset_already_exists > 0,
        "the replay met rows the killed process had stored: {st:?}"
    );
}
