//! The live page's endpoints and the terminal view, on the real binary: `GET /ui` and
//! `/ui/feed` answer 401 without the admin key and take it as a header, a Basic password or the
//! cookie `?key=` sets; `evlog-collector tail` prints the table's rows that match its filter;
//! `top --once` prints destinations and tables; SIGTERM with a feed open exits at once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ADMIN: &str = "live-test-admin-key-0123456789";

/// A process killed when dropped (a failed assertion leaves none behind).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn start(root: &std::path::Path) -> (Running, String) {
    let cfg = root.join("collector.toml");
    let text = config_text(root, &format!("admin_keys = [{ADMIN:?}]"), "");
    std::fs::write(&cfg, text).expect("write config");
    let (child, url) = spawn_binary(&cfg);
    (Running(child), url)
}

/// Runs `evlog-collector <args>` with the admin key in the environment.
fn cli(args: &[&str], key: &str) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_evlog-collector"))
            .args(args)
            .env_clear()
            .env("EVLOG_ADMIN_KEY", key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cli"),
    )
}

/// Waits for `child` to exit within `timeout` (killed otherwise); its status.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let ok = wait_for(timeout, || child.try_wait().expect("try_wait").is_some());
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.try_wait().expect("try_wait")
}

#[test]
fn the_page_and_feed_need_the_admin_key_in_any_of_its_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = start(dir.path());
    let c = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for path in ["/ui", "/ui/feed"] {
        let r = c.get(format!("{url}{path}")).send().expect("send");
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let asks = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or(""));
        assert!(
            asks.is_some_and(|v| v.starts_with("Basic ")),
            "{path}: {asks:?}"
        );
        let wrong = c.get(format!("{url}{path}")).basic_auth("x", Some("nope"));
        assert_eq!(status(wrong), 401, "{path}");
    }
    let page = c.get(format!("{url}/ui")).basic_auth("anyone", Some(ADMIN));
    let r = page.send().expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().expect("text");
    assert!(
        html.contains("new EventSource(\"/ui/feed\""),
        "the page reads the feed"
    );
    for outside in ["src=\"http", "href=\"http", "url(http", "import "] {
        assert!(!html.contains(outside), "nothing from elsewhere: {outside}");
    }
    assert_eq!(status(c.get(format!("{url}/ui")).bearer_auth(ADMIN)), 200);

    // ?key= sets the cookie and sends the browser back to /ui without the key.
    let r = c.get(format!("{url}/ui?key={ADMIN}")).send().expect("send");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/ui");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    assert_eq!(
        status(c.get(format!("{url}/ui")).header("cookie", &pair)),
        200
    );
    assert_eq!(status(c.get(format!("{url}/ui?key=nope"))), 401);
    // The cookie opens the page only, never the admin API.
    assert_eq!(
        status(c.get(format!("{url}/admin/config")).header("cookie", &pair)),
        401
    );
    send_signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn tail_prints_the_rows_its_filter_takes_and_top_prints_the_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = start(dir.path());
    let c = client();
    let mut tail = cli(
        &[
            "tail",
            "--url",
            &url,
            "--table",
            "events.transaction",
            "--where",
            "user_id=7",
            "--count",
            "3",
        ],
        ADMIN,
    );
    // Rows are captured only while someone watches: send until the tail has printed 3.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tail.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
        let batch = serde_json::json!([txn(3), txn(7), txn(8)]);
        let r = c.post(format!("{url}/v1/batch")).json(&batch).send();
        assert!(r.is_ok_and(|r| r.status().is_success()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = wait_exit(&mut tail, Duration::from_secs(5));
    let out = tail.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(out).lines().map_while(Result::ok).collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "tail exits after --count 3: {status:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        let row: serde_json::Value = serde_json::from_str(l).expect("a row of JSON per line");
        assert_eq!(row["user_id"], 7, "{l}");
    }

    let mut top = cli(&["top", "--url", &url, "--once"], ADMIN);
    let status = wait_exit(&mut top, Duration::from_secs(10));
    let mut screen = String::new();
    std::io::Read::read_to_string(&mut top.stdout.take().expect("stdout"), &mut screen)
        .expect("read");
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {screen}");
    assert!(
        screen.contains("DESTINATION") && screen.contains("default"),
        "{screen}"
    );
    assert!(screen.contains("events.transaction"), "{screen}");

    let mut refused = cli(
        &["tail", "--url", &url, "--table", "events.transaction"],
        "wrong",
    );
    let status = wait_exit(&mut refused, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    assert!(err.contains("401"), "{err}");

    // A feed open does not hold the shutdown: SIGTERM exits at once, the tail sees the end.
    let mut watching = cli(
        &["tail", "--url", &url, "--table", "events.transaction"],
        ADMIN,
    );
    // Subscribed once a row posted after it comes back: post until the first line is read.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poster = {
        let (stop, url, c) = (stop.clone(), url.clone(), c.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let _ = c
                    .post(format!("{url}/v1/batch"))
                    .json(&serde_json::json!([txn(1)]))
                    .send();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut first = String::new();
    let mut out = BufReader::new(watching.stdout.take().expect("stdout"));
    out.read_line(&mut first).expect("read");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poster.join().expect("poster");
    // (The table's kept rows come first: any row of it.)
    assert!(first.contains("\"user_id\":"), "{first}");
    let t0 = Instant::now();
    send_signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let status = wait_exit(&mut watching, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the feed ended: {status:?}"
    );
}

#[test]
fn with_two_destinations_the_feed_counts_each_tables_copies_per_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tail = format!(
        r#"
[destinations.one]
kind = "file"
dir = {one:?}
[destinations.two]
kind = "file"
dir = {two:?}

[[routes]]
tables = ["events.*"]
to = ["one", "two"]
"#,
        one = root.join("one").display().to_string(),
        two = root.join("two").display().to_string(),
    );
    let cfg = root.join("collector.toml");
    let text = destinations_text(root, &format!("admin_keys = [{ADMIN:?}]"), &tail);
    std::fs::write(&cfg, text).expect("write config");
    let (child, url) = spawn_binary(&cfg);
    let _child = Running(child);
    let c = client();
    let batch = serde_json::json!([txn(1), txn(2), txn(3)]);
    let r = c
        .post(format!("{url}/v1/batch"))
        .json(&batch)
        .send()
        .expect("send");
    assert!(r.status().is_success());

    let feed = c
        .get(format!("{url}/ui/feed?tail=0"))
        .bearer_auth(ADMIN)
        .send()
        .expect("feed");
    assert_eq!(feed.status().as_u16(), 200);
    let mut lines = BufReader::new(feed).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = serde_json::Value::Null;
    let settled = loop {
        assert!(Instant::now() < deadline, "not settled: {last}");
        let line = lines.next().expect("the feed goes on").expect("read");
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let s: serde_json::Value = serde_json::from_str(data).expect("json");
        let Some(t) = s["tables"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["table"] == "events.transaction"))
        else {
            continue;
        };
        last = t.clone();
        if t["delivered"] == 6 {
            break s;
        }
    };
    let t = &last;
    assert_eq!(t["accepted"], 6, "{t}: three events, two copies each");
    assert_eq!(t["in_flight"], 0, "{t}");
    assert_eq!(
        t["delivered_by_destination"],
        serde_json::json!({"one": 3, "two": 3})
    );
    let dests = settled["destinations"].as_array().expect("destinations");
    assert_eq!(dests.len(), 2, "{settled}");
    for d in dests {
        assert_eq!(d["accepted"], 3, "{d}");
        assert_eq!(d["delivered"], 3, "{d}");
        assert_eq!(d["healthy"], true, "{d}");
    }
}

#[test]
fn a_feed_opened_before_a_reload_keeps_working_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = start(dir.path());
    let c = client();
    let mut tail = cli(
        &[
            "tail",
            "--url",
            &url,
            "--table",
            "events.transaction",
            "--where",
            "user_id=9",
        ],
        ADMIN,
    );
    // Its rows, as it prints them.
    let (tx, rows) = std::sync::mpsc::channel::<String>();
    let out = tail.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let send_until_a_row = |prefix: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        while Instant::now() < deadline {
            let mut event = txn(9);
            event["id"] = serde_json::json!(format!("{prefix}-{n}"));
            n += 1;
            let r = c
                .post(format!("{url}/v1/batch"))
                .json(&serde_json::json!([event]))
                .send();
            assert!(r.is_ok_and(|r| r.status().is_success()));
            // Rows sent for an earlier step may still come: the first of this step's counts.
            while let Ok(line) = rows.recv_timeout(Duration::from_millis(50)) {
                if line.contains(&format!("\"{prefix}-")) {
                    return line;
                }
            }
        }
        panic!("no {prefix} row in the tail");
    };
    // The feed is open (a row came), then the reload (SIGHUP), then another row.
    let before = send_until_a_row("before");
    let cfg = dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&cfg).expect("read config");
    std::fs::write(
        &cfg,
        text.replace("max_age = \"50ms\"", "max_age = \"60ms\""),
    )
    .expect("write");
    send_signal(&child, "HUP");
    assert!(
        wait_for(Duration::from_secs(20), || {
            let m = c
                .get(format!("{url}/metrics"))
                .send()
                .and_then(|r| r.text());
            m.is_ok_and(|m| metric(&m, "evlog_config_reloads_total{result=\"ok\"}") == Some(1.0))
        }),
        "the reload was not taken"
    );
    let after = send_until_a_row("after");
    for (line, prefix) in [(&before, "before-"), (&after, "after-")] {
        let row: serde_json::Value = serde_json::from_str(line).expect("a row of JSON");
        assert_eq!(row["user_id"], 9, "{line}");
        let id = row["event_id"].as_str().unwrap_or_default();
        assert!(id.starts_with(prefix), "{prefix} expected: {line}");
    }
    let _ = tail.kill();
    send_signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
}
