//! Shutdown against a failing or silent sink: `shutdown()` returns by its deadline (plus a
//! moment), never waits out retries or `connect_timeout`, and when it returns every event is
//! accounted for: delivered, spooled, or counted dropped. And the default spool (no `[spool]`
//! keys, forward sink): what a process could not deliver is kept in its private directory and
//! replayed by the next process with the same configuration.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evlog_core::schema::SchemaRegistry;
use evlog_core::sink::memory::MemoryStore;
use evlog_core::{Config, Pipeline};

fn schemas_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A forward sink at `url` with a retry budget far longer than any deadline given here
/// (8 attempts, backoff from 1 s up to 5 s), delivering within 10 ms of a log.
fn forward(url: &str, spool: &str) -> Config {
    Config::from_toml_str(&format!(
        "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = \"{url}\"\ntimeout = \"30s\"\n\
         [retry]\nbase = \"1s\"\ncap = \"5s\"\nmax_attempts = 8\n[batch]\nmax_age = \"10ms\"\n\
         [schemas]\ndir = {:?}\n{spool}",
        schemas_dir()
    ))
    .expect("config")
}

/// A port nothing listens on (connections are refused).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that accepts connections and never answers (a hung collector; for the client, the
/// same as a blackholed host: the attempt only ends by its own timeout). Counts connections.
fn silent_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            seen2.fetch_add(1, Ordering::SeqCst);
            held.push(c);
        }
    });
    (url, seen)
}

/// A server that answers every request 503 (a collector overloaded): the sink retries after a
/// backoff. Counts requests.
fn unavailable_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = c.read(&mut buf);
            seen2.fetch_add(1, Ordering::SeqCst);
            let _ = c.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, seen)
}

const NO_SPOOL: &str = "[spool]\nenabled = false\n";

/// Refused connections, no spool: one attempt, the event counted dropped, well inside the
/// deadline (the retry budget would be ~13 s of backoff).
#[test]
fn without_a_spool_a_refusing_sink_costs_one_attempt_and_the_event_is_counted() {
    let p = Pipeline::new(forward(
        &format!("http://127.0.0.1:{}", dead_port()),
        NO_SPOOL,
    ))
    .unwrap();
    p.log_json("events", "page_view", r#"{"url":"/bye"}"#)
        .unwrap();
    let started = Instant::now();
    assert!(!p.shutdown(Duration::from_secs(5)), "not delivered");
    let took = started.elapsed();
    let s = p.stats();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!((s.accepted, s.delivered, s.spooled), (1, 0, 0), "{s:?}");
    assert_eq!(s.dropped_total(), 1, "{s:?}");
    assert!(s.is_settled(), "nothing in flight: {s:?}");
}

/// Logs one event and waits until the server has seen its first request.
fn log_one_until_sent(p: &Pipeline, seen: &AtomicUsize) {
    p.log_json("events", "page_view", r#"{"url":"/bye"}"#)
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || seen
        .load(Ordering::SeqCst)
        > 0));
}

/// A collector that never answers, no spool: the attempt in progress (with the full retry
/// budget: it started before the shutdown) is abandoned at the deadline, and the event is
/// counted `shutdown_deadline` before `shutdown()` returns.
#[test]
fn without_a_spool_an_attempt_that_hangs_is_cut_at_the_deadline_and_counted() {
    let (url, seen) = silent_server();
    let p = Pipeline::new(forward(&url, NO_SPOOL)).unwrap();
    // The delivery is under way (its request sent, waiting for an answer that never comes).
    log_one_until_sent(&p, &seen);
    let started = Instant::now();
    assert!(!p.shutdown(Duration::from_millis(300)));
    let took = started.elapsed();
    let s = p.stats();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "shutdown took {took:?}"
    );
    assert_eq!(s.dropped["shutdown_deadline"], 1, "{s:?}");
    assert_eq!((s.accepted, s.delivered, s.dropped_total()), (1, 0, 1));
    assert!(s.is_settled(), "nothing in flight: {s:?}");
}

/// A collector answering 503, no spool: the shutdown comes while the delivery sleeps in a
/// backoff (1 s to 5 s); the backoff ends at once, no further attempt is made, and the event is
/// counted dropped.
#[test]
fn without_a_spool_a_backoff_in_progress_ends_at_the_shutdown() {
    let (url, seen) = unavailable_server();
    let p = Pipeline::new(forward(&url, NO_SPOOL)).unwrap();
    // The first attempt was answered 503: the sink is in its backoff.
    log_one_until_sent(&p, &seen);
    let started = Instant::now();
    assert!(!p.shutdown(Duration::from_secs(10)));
    let took = started.elapsed();
    let s = p.stats();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!(
        (s.accepted, s.delivered, s.dropped_total()),
        (1, 0, 1),
        "{s:?}"
    );
    assert!(s.is_settled(), "nothing in flight: {s:?}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "no attempt after the shutdown"
    );
}

/// With the default spool (no `[spool]` keys) and a collector that never answers, the attempt
/// is cut at the deadline and the event is kept in the spool, not dropped.
#[test]
fn with_the_default_spool_an_attempt_cut_at_the_deadline_is_kept() {
    let (url, seen) = silent_server();
    let config = forward(&url, "");
    let (dir, private) = config
        .destination_spool("default")
        .expect("a spool by default");
    assert!(private);
    let p = Pipeline::new(config).unwrap();
    log_one_until_sent(&p, &seen);
    assert!(!p.shutdown(Duration::from_millis(300)));
    let s = p.stats();
    assert_eq!(
        (s.accepted, s.spooled, s.dropped_total()),
        (1, 1, 0),
        "{s:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// No `[spool]` keys, forward sink, collector down: the event goes to the default spool, in a
/// directory of this user's alone (mode 0700) that is created only then, and the next pipeline
/// with the same configuration replays it. A file sink gets no spool by default.
#[test]
fn the_default_spool_keeps_what_a_process_could_not_deliver_for_the_next_one() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    let config = forward(&url, "");
    let (dir, private) = config
        .destination_spool("default")
        .expect("a spool by default");
    assert!(private);
    assert!(dir.starts_with("/var/tmp") || dir.starts_with(std::env::temp_dir()));
    let _ = std::fs::remove_dir_all(&dir);
    // Another target, another directory.
    let other = forward("http://127.0.0.1:1", "");
    assert_ne!(other.destination_spool("default").unwrap().0, dir);
    let file = Config::from_toml_str("[sink]\nkind = \"file\"\n").unwrap();
    assert_eq!(file.destination_spool("default"), None);

    let first = Pipeline::new(config.clone()).unwrap();
    assert!(!dir.exists(), "created only when something is spooled");
    first
        .log_json("events", "page_view", r#"{"url":"/kept"}"#)
        .unwrap();
    let started = Instant::now();
    assert!(!first.shutdown(Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(2));
    let s = first.stats();
    assert_eq!(
        (s.accepted, s.spooled, s.dropped_total()),
        (1, 1, 0),
        "{s:?}"
    );
    drop(first);
    use std::os::unix::fs::PermissionsExt as _;
    for d in [dir.parent().unwrap(), dir.as_path()] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }

    // The next process: same configuration (so the same directory), its sink up.
    let up = MemoryStore::new();
    let schemas = SchemaRegistry::load_dir(&schemas_dir()).unwrap();
    let second = Pipeline::with_parts(config, schemas, up.factory());
    second
        .log_json("events", "page_view", r#"{"url":"/new"}"#)
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || up.row_count() == 2));
    assert!(second.shutdown(Duration::from_secs(5)));
    let s = second.stats();
    assert_eq!((s.accepted, s.delivered), (2, 2), "{s:?}");
    assert!(s.is_settled());
    let _ = std::fs::remove_dir_all(&dir);
}
