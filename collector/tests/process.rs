//! The real binary: kill -9 under load loses no acknowledged event; SIGTERM drains and exits in
//! time.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Starts the binary with the config under `root`; returns it and its base URL.
fn spawn(root: &Path) -> (Child, String) {
    spawn_with(root, &config_text(root, "", ""))
}

/// Starts the binary with the given config text.
fn spawn_with(root: &Path, text: &str) -> (Child, String) {
    let cfg = root.join("collector.toml");
    std::fs::write(&cfg, text).expect("write config");
    spawn_binary(&cfg)
}

fn sigterm(child: &Child) {
    send_signal(child, "TERM");
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Posts a batch of events with ids `<prefix>-<i>`; returns the ids answered 202.
fn post_batch(
    c: &reqwest::blocking::Client,
    url: &str,
    prefix: &str,
    n: usize,
) -> Option<Vec<String>> {
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            json!({"namespace": "events", "type": "transaction", "id": format!("{prefix}-{i}"),
                   "event": {"user_id": i, "amount": "1.50"}})
        })
        .collect();
    let r = c.post(format!("{url}/v1/batch")).json(&batch).send().ok()?;
    if r.status() != 200 {
        return Some(Vec::new());
    }
    let body: Value = r.json().ok()?;
    Some(
        body["results"]
            .as_array()?
            .iter()
            .filter(|r| r["status"] == 202)
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = spawn(root.path());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load_until = Instant::now() + Duration::from_secs(10);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, url) = (Arc::clone(&acked), Arc::clone(&stop), url.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < load_until {
                    match post_batch(&c, &url, &format!("k{t}-{n}"), 200) {
                        Some(ids) => acked.lock().expect("lock").extend(ids),
                        None => break, // the collector is gone
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // Kill once a good amount was acknowledged and the streamers are busy.
    assert!(
        wait_for(Duration::from_secs(10), || acked
            .lock()
            .expect("lock")
            .len()
            >= 20_000),
        "load did not get going"
    );
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let acked: HashSet<String> = acked.lock().expect("lock").drain(..).collect();
    let before_restart: HashSet<String> =
        stored_ids(&root.path().join("data")).into_iter().collect();
    eprintln!(
        "acknowledged {} events; {} stored before restart",
        acked.len(),
        acked.intersection(&before_restart).count()
    );

    let (mut child, _url) = spawn(root.path());
    let data = root.path().join("data");
    let complete = wait_for(Duration::from_secs(30), || {
        let stored: HashSet<String> = stored_ids(&data).into_iter().collect();
        acked.is_subset(&stored)
    });
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let stored = stored_ids(&data);
    let unique: HashSet<&String> = stored.iter().collect();
    let missing = acked.iter().filter(|id| !unique.contains(id)).count();
    assert!(
        complete && missing == 0,
        "{missing} acknowledged events lost"
    );
    eprintln!(
        "after restart: {} rows, {} unique ({} duplicates from replay)",
        stored.len(),
        unique.len(),
        stored.len() - unique.len()
    );
}

#[test]
fn sigterm_drains_and_exits_within_the_deadline() {
    let root = tempfile::tempdir().expect("tempdir");
    // Segments are sealed only at shutdown, so the whole load is still in the log at SIGTERM
    // and the drain has all of it to do.
    let text = config_text(root.path(), "seal_interval = \"1h\"", "");
    let (mut child, url) = spawn_with(root.path(), &text);
    let c = client();
    let mut acked = HashSet::new();
    for b in 0..20 {
        acked.extend(post_batch(&c, &url, &format!("t{b}"), 500).expect("post"));
    }
    assert_eq!(acked.len(), 10_000);
    assert!(stored_ids(&root.path().join("data")).is_empty());
    let t = Instant::now();
    sigterm(&child);
    // shutdown_deadline is 5 s in the test config.
    let status = wait_exit(&mut child, Duration::from_secs(8)).expect("exited within the deadline");
    assert!(status.success(), "{status}");
    eprintln!("drained and exited in {:?}", t.elapsed());
    let stored: HashSet<String> = stored_ids(&root.path().join("data")).into_iter().collect();
    assert!(
        acked.is_subset(&stored),
        "{} missing",
        acked.difference(&stored).count()
    );
    let left: Vec<_> = std::fs::read_dir(root.path().join("wal"))
        .expect("wal dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "evs"))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}

#[test]
fn at_the_shutdown_deadline_what_is_left_stays_in_the_log_for_the_next_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let wal = root.path().join("wal");
    // A sink that cannot deliver (BigQuery at a closed port): the drain retries until the deadline.
    let failing = format!(
        r#"
[collector]
listen = "127.0.0.1:0"
wal_dir = {wal:?}
seal_interval = "20ms"
shutdown_deadline = "1s"
[sink]
kind = "bigquery"
[sink.bigquery]
project = "p"
auth = "none"
base_url = "http://127.0.0.1:9/bigquery/v2"
request_timeout = "200ms"
[retry]
base = "10ms"
cap = "100ms"
max_attempts = 2
[schemas]
dir = {schemas:?}
"#,
        wal = wal.display().to_string(),
        schemas = schemas_dir().display().to_string(),
    );
    let (mut child, url) = spawn_with(root.path(), &failing);
    let acked: HashSet<String> = post_batch(&client(), &url, "d", 300)
        .expect("post")
        .into_iter()
        .collect();
    assert_eq!(acked.len(), 300);
    let t = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("exits at the deadline");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let segments = std::fs::read_dir(&wal)
        .expect("wal")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "evs"))
        .count();
    assert!(segments > 0, "the undelivered events must stay in the log");

    // Next start, with a sink that works: everything arrives.
    let (mut child, _url) = spawn(root.path());
    let data = root.path().join("data");
    let all = wait_for(Duration::from_secs(20), || {
        let stored: HashSet<String> = stored_ids(&data).into_iter().collect();
        acked.is_subset(&stored)
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(
        all,
        "events left in the log were not delivered after restart"
    );
}

/// Runs the binary in `cwd` with `args`, expecting it to exit on its own; returns its exit code,
/// stdout and stderr. A binary still running after 20 s is killed and fails the test.
fn run_to_exit(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_evlog-collector"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn collector");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 20 s: {out} {err}"));
    (status.code(), out, err)
}

/// The example config started outside the repository (its `schemas.dir` is relative to the
/// working directory): the collector exits 1 naming the key, the absolute path tried and the
/// fix, and never says it listens. The same for an unwritable write-ahead log directory and a
/// missing TLS file.
#[test]
fn a_config_that_cannot_work_fails_before_listening_and_names_key_and_path() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/collector.toml");
    let example = example.to_str().expect("utf-8 path");
    let empty = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run_to_exit(
        empty.path(),
        &["--config", example, "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    assert!(!out.contains("listening"), "{out}");
    let tried = empty.path().join("collector/examples/schemas");
    assert!(
        err.contains("schemas.dir")
            && err.contains(&format!("{}: ", tried.display()))
            && err.contains("No such file or directory")
            && err.contains("EVLOG_SCHEMAS_DIR"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(empty.path()).expect("ls").count(),
        0,
        "nothing created before the check"
    );

    // The write-ahead log directory is a file: the key and the absolute path.
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("wal"), "not a directory").expect("write");
    let cfg = root.path().join("c.toml");
    let text = format!(
        "[collector]\nlisten = \"127.0.0.1:0\"\nwal_dir = \"wal\"\n[schemas]\ndir = {:?}\n",
        schemas_dir().display().to_string()
    );
    std::fs::write(&cfg, &text).expect("write config");
    let (code, out, err) = run_to_exit(root.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    assert!(!out.contains("listening"), "{out}");
    let wal = root.path().join("wal");
    assert!(
        err.contains(&format!("collector.wal_dir {}", wal.display())),
        "{err}"
    );

    // A TLS certificate file that does not exist.
    let text = format!(
        "[collector]\nlisten = \"127.0.0.1:0\"\nwal_dir = \"wal2\"\ntls_cert = \"cert.pem\"\n\
         tls_key = \"key.pem\"\n[schemas]\ndir = {:?}\n",
        schemas_dir().display().to_string()
    );
    std::fs::write(&cfg, &text).expect("write config");
    let (code, out, err) = run_to_exit(root.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    assert!(!out.contains("listening"), "{out}");
    let cert = root.path().join("cert.pem");
    assert!(
        err.contains(&format!("collector.tls_cert {}: ", cert.display())),
        "{err}"
    );
}

/// The `THP_enabled` line of a process's /proc status (Linux 6.x), if the kernel has it.
fn thp_enabled(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
}

#[test]
fn the_binary_turns_transparent_huge_pages_off_unless_mimalloc_is_told_otherwise() {
    // collector/src/memory.rs: huge pages purged and faulted in again cost the collector a
    // quarter of its CPU; `MIMALLOC_ALLOW_THP` hands the choice back to mimalloc.
    let root = tempfile::tempdir().expect("tempdir");
    let cfg = root.path().join("collector.toml");
    std::fs::write(&cfg, config_text(root.path(), "", "")).expect("write config");
    // What a child keeps when left alone: this process's own setting (inherited).
    let Some(inherited) = thp_enabled(std::process::id()) else {
        eprintln!("skipped: this kernel's /proc/<pid>/status has no THP_enabled line");
        return;
    };
    for (env, want) in [
        (&[][..], "0"),
        (&[("MIMALLOC_ALLOW_THP", "1")][..], inherited.as_str()),
    ] {
        let (mut child, url) = spawn_binary_env(&cfg, env);
        let got = thp_enabled(child.id());
        // It serves as usual.
        let r = client()
            .get(format!("{url}/healthz"))
            .send()
            .expect("healthz");
        sigterm(&child);
        wait_exit(&mut child, Duration::from_secs(8)).expect("exited");
        assert_eq!(r.status(), 200);
        assert_eq!(got.as_deref(), Some(want), "environment {env:?}");
    }
}
