//! The SDK forwarding to three collector processes with `sink.forward.urls` (no load balancer),
//! one of them killed with SIGKILL during the load and restarted on the same port and write-ahead
//! log: no event lost, and the counts reconcile (docs/operations.md, "Several collectors").
//!
//! What "0 lost, counts reconcile" means here (the file sink keeps every copy it is given; it
//! does not de-duplicate, BigQuery would by insertId):
//! - every id logged is in the collectors' file outputs at least once, and nothing else is;
//! - a second copy only comes from a request whose answer was lost: the killed collector wrote it
//!   to its log, died before answering, and the SDK sent it again to another collector (or to
//!   the same one once back). So every duplicated id has a copy in the killed collector's output,
//!   and the duplicates are at most the events the SDK retried;
//! - the SDK: accepted = delivered = 100,000, nothing dropped or rejected;
//! - the collectors: lines stored − duplicates = the SDK's delivered; each surviving collector's
//!   `/metrics` accepted = delivered = the lines it stored (the killed one's counters restart
//!   with its process, so its lines stand for its accepted total).
//!
//! The collectors are this test binary run again (`collector_process_when_asked`): a real process
//! each, so SIGKILL is real.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evlog_collector::CollectorConfig;
use evlog_core::{Config, EventInput, Pipeline};

mod common;
use common::{collector_metrics, schema_dir, wait_for};

/// The environment variable that turns this binary into a collector (its config file).
const CHILD_CONFIG: &str = "EVLOG_FANOUT_COLLECTOR_CONFIG";
/// ... listening on this address.
const CHILD_ADDR: &str = "EVLOG_FANOUT_COLLECTOR_ADDR";
const THREADS: usize = 4;
const PER_THREAD: usize = 25_000;
const TOTAL: usize = THREADS * PER_THREAD;
// 2026-11-22T10:00:00Z.
const DAY0: i64 = 1_795_341_600_000_000;

/// Not a test of its own: the collector process the test below starts (it returns at once
/// unless [`CHILD_CONFIG`] is set).
#[test]
fn collector_process_when_asked() {
    let (Ok(path), Ok(addr)) = (std::env::var(CHILD_CONFIG), std::env::var(CHILD_ADDR)) else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("collector config");
    let config =
        CollectorConfig::from_toml_with_env(&text, &path, std::iter::empty()).expect("config");
    let server = evlog_collector::Background::start(config, &addr).expect("start");
    println!("evlog-collector listening on {}", server.addr());
    // Runs until killed.
    loop {
        std::thread::park();
    }
}

/// One collector process: its own port, write-ahead log and file sink directory.
struct Collector {
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Collector {
    fn new(root: &Path, i: usize, addr: SocketAddr) -> Self {
        let dir = root.join(format!("collector-{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = format!(
            r#"
            [collector]
            wal_dir = {:?}
            seal_interval = "20ms"
            fsync = "interval"
            fsync_interval = "2ms"
            [sink]
            kind = "file"
            [sink.file]
            dir = {:?}
            [batch]
            max_rows = 500
            max_age = "50ms"
            [schemas]
            dir = {:?}
            "#,
            dir.join("wal"),
            dir.join("data"),
            schema_dir()
        );
        std::fs::write(dir.join("collector.toml"), config).expect("write config");
        let mut c = Self {
            addr,
            dir,
            child: None,
        };
        c.start();
        c
    }

    fn start(&mut self) {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "collector_process_when_asked",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_CONFIG, self.dir.join("collector.toml"))
            .env(CHILD_ADDR, self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // After libtest's "test collector_process_when_asked ... " on the same line.
                if line.contains("evlog-collector listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        // Kept before waiting, so that a start that fails still ends the process (on drop).
        self.child = Some(child);
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("collector on {} did not start in 30 s", self.addr));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    fn metrics(&self) -> HashMap<String, f64> {
        collector_metrics(self.addr)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("HTTP/"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// Every event it accepted has an outcome (its write-ahead log is drained).
    fn settled(&self) -> bool {
        let m = self.metrics();
        let sum = |prefix: &str| -> f64 {
            m.iter()
                .filter(|(k, _)| *k == prefix || k.starts_with(&format!("{prefix}{{")))
                .map(|(_, v)| v)
                .sum()
        };
        let accepted = m.get("evlog_events_accepted_total").copied().unwrap_or(0.0);
        let done = sum("evlog_events_delivered_total")
            + sum("evlog_events_rejected_total")
            + sum("evlog_events_dropped_total");
        done >= accepted
    }

    /// The event ids in its file outputs, a line each.
    fn stored_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let dir = self.dir.join("data").join("events");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return ids;
        };
        for e in entries.map_while(Result::ok) {
            let text = std::fs::read_to_string(e.path()).expect("read output");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let row: serde_json::Value = serde_json::from_str(line).expect("NDJSON row");
                assert!(
                    !e.file_name()
                        .to_string_lossy()
                        .starts_with("_evlog_rejected"),
                    "a dead letter: {line}"
                );
                ids.push(row["event_id"].as_str().expect("event_id").to_string());
            }
        }
        ids
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port below the ephemeral range, so listeners other tests bind to port 0
/// cannot take it while its collector is down.
fn free_addr(k: u32) -> SocketAddr {
    (0..10_000u32)
        .map(|i| 20_000 + (std::process::id().wrapping_mul(7) + k * 1000 + i) % 10_000)
        .find_map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port as u16))
                .and_then(|l| l.local_addr())
                .ok()
        })
        .expect("a free port")
}

#[test]
fn sdk_urls_over_three_collectors_one_killed_and_restarted_lose_nothing() {
    if std::env::var_os(CHILD_CONFIG).is_some() {
        return;
    }
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let mut collectors: Vec<Collector> = (0..3)
        .map(|i| Collector::new(root.path(), i, free_addr(i as u32)))
        .collect();
    let urls: Vec<String> = collectors
        .iter()
        .map(|c| format!("\"http://{}\"", c.addr))
        .collect();
    let sdk = Config::from_toml_str(&format!(
        r#"
        [sink]
        kind = "forward"
        [sink.forward]
        urls = [{}]
        workers = 4
        timeout = "5s"
        max_rows_per_request = 500
        [batch]
        max_rows = 500
        max_age = "50ms"
        [queue]
        capacity = 200000
        [retry]
        base = "20ms"
        cap = "500ms"
        max_attempts = 10
        [spool]
        dir = {:?}
        [schemas]
        dir = {:?}
        "#,
        urls.join(", "),
        root.path().join("spool"),
        schema_dir()
    ))
    .expect("sdk config");
    let p = Pipeline::new(sdk).expect("pipeline");

    // 4 threads log 25,000 events each over about 5 s, while the main thread kills collector 1
    // once 30% are logged and starts it again at 60%.
    let logged = AtomicUsize::new(0);
    let victim = 1;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (p, logged) = (&p, &logged);
            s.spawn(move || {
                let start = Instant::now();
                for i in 0..PER_THREAD {
                    let id = format!("f{t}-{i:05}");
                    let body = format!(r#"{{"url":"/t{t}/{i}","user_id":{i}}}"#);
                    let mut ev = EventInput::new("events", "page_view", body);
                    ev.time = Some(DAY0);
                    ev.id = Some(&id);
                    p.log(ev).expect("accepted");
                    logged.fetch_add(1, Ordering::Relaxed);
                    // Pacing, not synchronisation: 5,000 events/s per thread.
                    if i % 500 == 499 {
                        let due = Duration::from_millis((i as u64 + 1) / 5);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            });
        }
        let reached = |n: usize| {
            assert!(
                wait_for(Duration::from_secs(60), || logged.load(Ordering::Relaxed)
                    >= n),
                "{n} events logged"
            )
        };
        reached(TOTAL * 3 / 10);
        collectors[victim].kill();
        reached(TOTAL * 6 / 10);
        collectors[victim].start();
    });
    assert!(p.flush(Duration::from_secs(60)), "flush: {:?}", p.stats());
    let s = p.stats();
    assert_eq!(s.accepted, TOTAL as u64, "{s:?}");
    assert_eq!(s.delivered, TOTAL as u64, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert_eq!(s.rejected_total(), 0, "{s:?}");
    assert!(
        s.sink_errors
            .get(&("forward".to_string(), "url_down".to_string()))
            .is_some_and(|&n| n >= 1),
        "the killed collector was put down: {:?}",
        s.sink_errors
    );
    assert!(p.shutdown(Duration::from_secs(5)));

    for c in &collectors {
        assert!(
            wait_for(Duration::from_secs(30), || c.settled()),
            "collector {} drained: {:?}",
            c.addr,
            c.metrics()
        );
    }
    let stored: Vec<Vec<String>> = collectors.iter().map(Collector::stored_ids).collect();
    let report = check_stored(&stored, victim, s.retried);
    for (i, c) in collectors.iter().enumerate() {
        if i == victim {
            continue;
        }
        let m = c.metrics();
        let accepted = m.get("evlog_events_accepted_total").copied();
        assert_eq!(
            accepted,
            Some(stored[i].len() as f64),
            "collector {i}: accepted = lines stored"
        );
        assert_eq!(
            m.get("evlog_events_delivered_total").copied(),
            accepted,
            "collector {i}"
        );
    }
    println!(
        "{report}; SDK retried {} events; {:.1} s",
        s.retried,
        started.elapsed().as_secs_f64()
    );
    for c in &mut collectors {
        c.kill();
    }
}

/// Checks the ids stored by each collector against what was logged (the module docs' rules);
/// returns a line saying what was found.
fn check_stored(stored: &[Vec<String>], victim: usize, retried: u64) -> String {
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for ids in stored {
        for id in ids {
            *copies.entry(id.as_str()).or_default() += 1;
        }
    }
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let id = format!("f{t}-{i:05}");
            assert!(copies.contains_key(id.as_str()), "{id} lost");
        }
    }
    assert_eq!(copies.len(), TOTAL, "only the ids logged are stored");
    let lines: usize = stored.iter().map(Vec::len).sum();
    let duplicates = lines - TOTAL;
    let in_victim: std::collections::HashSet<&str> =
        stored[victim].iter().map(String::as_str).collect();
    for (id, n) in &copies {
        if *n > 1 {
            assert!(
                in_victim.contains(id),
                "{id} stored {n} times, none by the killed collector: a duplicate not explained \
                 by a lost answer"
            );
        }
    }
    assert!(
        duplicates as u64 <= retried,
        "{duplicates} duplicates but only {retried} events were sent again"
    );
    assert!(
        !stored[victim].is_empty(),
        "the killed collector took part in the load"
    );
    format!(
        "stored {lines} lines for {TOTAL} events ({duplicates} duplicates from lost answers); \
         per collector {:?}",
        stored.iter().map(Vec::len).collect::<Vec<_>>()
    )
}
