//! Exactly-once through a collector crash: a collector whose destination writes through the
//! Storage Write API with `exactly_once` and `positions_dir` takes events (acknowledged once in
//! its write-ahead log) while half of the gRPC answers are lost after the rows were stored, and
//! is killed with SIGKILL while it streams. A new collector on the same log and positions
//! directory streams the rest: every event acknowledged to the client is stored exactly once.
//!
//! The collectors are this test binary run again (`collector_process_when_asked`), so SIGKILL is
//! real.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evlog_collector::CollectorConfig;
use evlog_tests::bq::grpc::GrpcFault;
use evlog_tests::bq::{BqTestConfig, BqTestServer};
use serde_json::json;

mod common;
use common::{config_text, post_batch_all_stored, rows_of, wait_for, write_schema, PROJECT};

/// The environment variable that turns this binary into a collector (its config file).
const CHILD_CONFIG: &str = "EVLOG_BQ_COLLECTOR_CRASH_CONFIG";
const EVENTS: u64 = 20_000;
const PER_REQUEST: u64 = 250;

/// Not a test of its own: the collector process the test below starts (it returns at once
/// unless [`CHILD_CONFIG`] is set).
#[test]
fn collector_process_when_asked() {
    let Ok(path) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("collector config");
    let config =
        CollectorConfig::from_toml_with_env(&text, &path, std::iter::empty()).expect("config");
    let server = evlog_collector::Background::start(config, "127.0.0.1:0").expect("start");
    println!("evlog-collector listening on {}", server.addr());
    // Runs until killed.
    loop {
        std::thread::park();
    }
}

/// Starts a collector process with the config file `path`; its address once it listens.
fn start_collector(path: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "collector_process_when_asked",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CONFIG, path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(path.with_extension("err")).expect("stderr file"))
        .spawn()
        .expect("collector process");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print "test <name> ... " on the same line first.
            if let Some((_, a)) = line.split_once("evlog-collector listening on ") {
                let _ = tx.send(a.trim().parse::<SocketAddr>().expect("address"));
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the collector did not listen: {}",
                std::fs::read_to_string(path.with_extension("err")).unwrap_or_default()
            )
        });
    (child, addr)
}

#[test]
fn events_a_killed_collector_had_taken_are_stored_exactly_once_by_the_next() {
    let server = BqTestServer::start_blocking(BqTestConfig {
        grpc: true,
        ..BqTestConfig::default()
    })
    .expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let schemas = tmp.path().join("schemas");
    write_schema(
        &schemas,
        "events",
        "click",
        &json!([{"name": "seq", "type": "INT64", "mode": "REQUIRED"}]),
    );
    server
        .load_evlog_schemas(&schemas, PROJECT)
        .expect("tables");
    let sink = config_text(&server, &schemas, "")
        .replace(
            "[sink.bigquery]",
            &format!(
                "[sink.bigquery]\napi = \"storage_write\"\nexactly_once = true\n\
                 storage_url = \"{}\"\npositions_dir = {:?}",
                server.grpc_url(),
                tmp.path().join("positions")
            ),
        )
        // Small requests, so that many are in flight when the collector dies.
        .replace("max_rows = 500", "max_rows = 100");
    let path = tmp.path().join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "[collector]\nwal_dir = {:?}\nfsync = \"never\"\nseal_interval = \"20ms\"\n{sink}",
            tmp.path().join("wal")
        ),
    )
    .expect("config");

    // Half the appends store their rows and lose the answer; the collector retries them at
    // their offsets (ALREADY_EXISTS) or, after its death, the next one does.
    server.set_grpc_failure_mix(0.5, 7, vec![GrpcFault::AckLost]);
    let (mut first, addr) = start_collector(&path);
    for start in (0..EVENTS).step_by(PER_REQUEST as usize) {
        let body: Vec<String> = (start..start + PER_REQUEST)
            .map(|seq| {
                json!({"namespace": "events", "type": "click", "id": format!("c{seq}"),
                    "event": {"seq": seq}})
                .to_string()
            })
            .collect();
        post_batch_all_stored(addr, &body);
    }
    // Kill it while it streams: some rows stored, some answers lost, most still in its log.
    let stored_before = |n: usize| rows_of(&server, "events", "click").len() >= n;
    assert!(
        wait_for(Duration::from_secs(60), || stored_before(2_000)),
        "the first collector streams"
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let at_kill = rows_of(&server, "events", "click").len();
    assert!(
        (at_kill as u64) < EVENTS,
        "killed too late to test anything: {at_kill} rows stored"
    );

    // The next collector: same log, same positions; the faults go on for a while.
    let (mut second, addr) = start_collector(&path);
    let limit = Duration::from_secs(180);
    let done = wait_for(limit, || {
        rows_of(&server, "events", "click").len() as u64 >= EVENTS
            && common::metric_value(
                &common::collector_metrics(addr),
                "evlog_collector_wal_pending_bytes ",
            ) == 0.0
    });
    let rows = rows_of(&server, "events", "click");
    let _ = second.kill();
    let _ = second.wait();
    let mut copies: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        let seq = r["seq"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or(r["seq"].as_u64())
            .expect("seq");
        *copies.entry(seq).or_default() += 1;
    }
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(done, "stored {} of {EVENTS}", rows.len());
    assert_eq!(copies.len() as u64, EVENTS, "0 lost");
    assert!(
        twice.is_empty(),
        "stored twice (of {} rows, {at_kill} at the kill): {twice:?}",
        rows.len()
    );
    let st = server.grpc_stats();
    eprintln!("{at_kill} rows stored at the kill; {st:?}");
    assert!(st.faults_injected > 0, "{st:?}");
    assert!(
        st.offset_already_exists > 0,
        "retries met their rows at their offsets: {st:?}"
    );
}
