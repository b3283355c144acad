//! Hot reload (`POST /admin/reload`, `GET /admin/config`): the admin key, refused reloads that
//! keep the running configuration and say why, and 50 reloads during a 100k-event load that
//! lose, duplicate and misroute nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use evlog_collector::reload::Source;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-0123456789";
const INGEST: &str = "ingest-key-0001";

/// A collector started from a config file under its own directory, with its own schema
/// directory (a copy of the examples), reloadable through the admin API.
struct Reloadable {
    // Fields drop in order: the collector stops before its directory is removed.
    _server: evlog_collector::Background,
    url: String,
    root: tempfile::TempDir,
}

impl Reloadable {
    /// Writes `text` (the config) and starts.
    fn start(text: &str) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        copy_dir(&schemas_dir(), &root.path().join("schemas"));
        let path = root.path().join("collector.toml");
        std::fs::write(
            &path,
            text.replace("@ROOT@", &root.path().display().to_string()),
        )
        .expect("write config");
        let server =
            evlog_collector::Background::start_from(Source { path, listen: None }, "127.0.0.1:0")
                .expect("start");
        Self {
            url: format!("http://{}", server.addr()),
            root,
            _server: server,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Replaces the config file (`@ROOT@` stands for the collector's directory).
    fn write_config(&self, text: &str) {
        let text = text.replace("@ROOT@", &self.root.path().display().to_string());
        std::fs::write(self.dir("collector.toml"), text).expect("write config");
    }

    /// `POST /admin/reload` with the admin key: the status and the answer.
    fn reload(&self) -> (u16, Value) {
        let r = client()
            .post(format!("{}/admin/reload", self.url))
            .bearer_auth(ADMIN)
            .send()
            .expect("reload");
        (r.status().as_u16(), r.json().expect("json"))
    }

    fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .expect("metrics")
            .text()
            .expect("text")
    }

    /// Posts `events` to `/v1/batch` with `key`: the status and the answer.
    fn post(&self, key: &str, events: &[Value]) -> (u16, Value) {
        let r = client()
            .post(format!("{}/v1/batch", self.url))
            .bearer_auth(key)
            .json(&events)
            .send()
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// The config of the tests: `[collector]` lines `keys`, then `tail`.
fn config(keys: &str, tail: &str) -> String {
    format!(
        r#"
[collector]
listen = "127.0.0.1:0"
wal_dir = "@ROOT@/wal"
seal_interval = "20ms"
shutdown_deadline = "10s"
admin_keys = ["{ADMIN}"]
{keys}

[batch]
max_rows = 500
max_age = "50ms"

[retry]
base = "10ms"
cap = "200ms"

[schemas]
dir = "@ROOT@/schemas"
{tail}
"#
    )
}

fn file_sink() -> &'static str {
    "[sink]\nkind = \"file\"\n[sink.file]\ndir = \"@ROOT@/data\"\n"
}

fn keys(extra: &[&str]) -> String {
    let mut all = vec![format!("{{ key = \"{INGEST}\", namespaces = [\"*\"] }}")];
    all.extend(
        extra
            .iter()
            .map(|k| format!("{{ key = \"{k}\", namespaces = [\"*\"] }}")),
    );
    format!("api_keys = [{}]", all.join(", "))
}

fn txn(id: &str, user: u64) -> Value {
    json!({"namespace": "events", "type": "transaction", "id": id,
        "event": {"user_id": user, "amount": "9.99", "currency": "EUR"}})
}

#[test]
fn the_admin_api_takes_an_admin_key_only_and_redacts_secrets() {
    let c = Reloadable::start(&config(&keys(&[]), file_sink()));
    let get = |key: Option<&str>| {
        let mut r = client().get(format!("{}/admin/config", c.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().expect("get");
        (r.status().as_u16(), r.json::<Value>().expect("json"))
    };
    let (status, body) = get(None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(Some(INGEST));
    assert_eq!(status, 403, "an ingest key may not administer: {body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("collector.admin_keys"));
    let (status, _) = get(Some("not-a-key-at-all-000"));
    assert_eq!(status, 401);
    let (status, body) = get(Some(ADMIN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 1);
    assert_eq!(body["hash"].as_str().unwrap().len(), 64);
    let text = body["config"].to_string();
    assert!(!text.contains(ADMIN) && !text.contains(INGEST), "{text}");
    assert_eq!(
        body["config"]["collector"]["api_keys"][0]["key"],
        "<redacted>"
    );
    assert_eq!(body["config"]["batch"]["max_rows"], 500);
    // An ingest key never reloads either.
    let r = client()
        .post(format!("{}/admin/reload", c.url))
        .bearer_auth(INGEST)
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);

    // Without admin keys the admin API is off, whatever the key.
    let off = Reloadable::start(
        &config("", file_sink()).replace(&format!("admin_keys = [\"{ADMIN}\"]"), ""),
    );
    let r = client()
        .post(format!("{}/admin/reload", off.url))
        .bearer_auth(ADMIN)
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("collector.admin_keys"),
        "{body}"
    );
}

#[test]
fn a_refused_reload_keeps_the_running_configuration_and_says_why() {
    let good = config(&keys(&[]), file_sink());
    let c = Reloadable::start(&good);
    let hash = |c: &Reloadable| {
        client()
            .get(format!("{}/admin/config", c.url))
            .bearer_auth(ADMIN)
            .send()
            .expect("get")
            .json::<Value>()
            .expect("json")["hash"]
            .clone()
    };
    let before = hash(&c);
    let broken_schema = c.dir("schemas/events/broken.json");
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("[collector\nlisten = 1".into(), None, "collector.toml"),
        (
            good.replace("[batch]", "[batch]\nmax_rowz = 3"),
            None,
            "max_rowz",
        ),
        (
            good.replace("wal_dir = \"@ROOT@/wal\"", "wal_dir = \"@ROOT@/wal2\""),
            None,
            "collector.wal_dir changed",
        ),
        (
            good.replace(
                "[batch]",
                "[[routes]]\ntables = [\"*\"]\nto = [\"nowhere\"]\n\n[batch]",
            ),
            None,
            "nowhere",
        ),
        (
            good.clone(),
            Some("[{\"name\": \"x\", \"type\": \"NOPE\"}]"),
            "NOPE",
        ),
        (
            good.replace(
                &format!("admin_keys = [\"{ADMIN}\"]"),
                "admin_keys = [\"short\"]",
            ),
            None,
            "collector.admin_keys",
        ),
    ];
    for (i, (text, schema, why)) in cases.iter().enumerate() {
        c.write_config(text);
        if let Some(s) = schema {
            std::fs::write(&broken_schema, s).expect("write schema");
        }
        let (status, body) = c.reload();
        assert_eq!(status, 422, "case {i}: {body}");
        assert_eq!(body["result"], "error");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(why), "case {i}: {why:?} not in {error:?}");
        assert_eq!(body["running"]["generation"], 1, "case {i}");
        let _ = std::fs::remove_file(&broken_schema);
        // The running configuration is untouched: its key works, its hash is the same.
        let (status, _) = c.post(INGEST, &[txn(&format!("r-{i}"), 1)]);
        assert_eq!(status, 200, "case {i}");
        assert_eq!(hash(&c), before, "case {i}");
    }
    let m = c.metrics();
    assert_eq!(
        metric(&m, "evlog_config_reloads_total{result=\"error\"}"),
        Some(cases.len() as f64)
    );
    assert_eq!(
        metric(&m, "evlog_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );
    // Back to a good file: the next reload swaps.
    c.write_config(&good);
    let (status, body) = c.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(body["changes"], json!([]), "nothing changed: {body}");
}

/// One valid configuration of the load test: generation `v` (0 = the start) routes
/// `events.transaction` to `a` when `v` is even, else to `b`, and its transform sets `coupon`
/// to `gen-<v>` (so each stored row says which generation converted it); accepts the ingest key
/// and `key-<v>` (the previous generation's key is gone); routes `extra.*` (one table added per
/// generation) to `a`.
fn generation(v: usize) -> String {
    let to = if v % 2 == 0 { "a" } else { "b" };
    let key = format!("key-{v:04}-abcdef");
    config(
        &keys(&[&key]),
        &format!(
            r#"
[destinations.a]
kind = "file"
dir = "@ROOT@/a"
[destinations.b]
kind = "file"
dir = "@ROOT@/b"

[[routes]]
tables = ["events.transaction"]
to = ["{to}"]
[[routes]]
tables = ["events.page_view", "extra.*"]
to = ["a"]

[[transforms]]
tables = ["events.transaction"]
set = {{ "coupon" = "gen-{v}" }}
"#
        ),
    )
}

/// An invalid configuration (of six kinds, by `i`) and what its refusal must name; some
/// leave a bad schema file in `schemas`, which [`restore`] puts right after the reload.
fn invalid(i: usize, schemas: &Path) -> (String, &'static str) {
    let good = generation(0);
    match i % 6 {
        5 => {
            // A column's type changed: BigQuery could not patch the table.
            let path = schemas.join("events/transaction.json");
            let text = std::fs::read_to_string(&path).expect("read schema");
            let retyped = text.replacen("\"INTEGER\"", "\"STRING\"", 1);
            std::fs::write(&path, retyped).expect("write schema");
            (good, "user_id")
        }
        0 => ("[[routes]\n".into(), "collector.toml"),
        1 => (good.replace("[batch]", "[batch]\nmax_rowz = 1"), "max_rowz"),
        2 => (
            good.replace("wal_dir = \"@ROOT@/wal\"", "wal_dir = \"@ROOT@/elsewhere\""),
            "collector.wal_dir",
        ),
        3 => (good.replace("to = [\"a\"]", "to = [\"c\"]"), "\"c\""),
        _ => {
            std::fs::create_dir_all(schemas.join("bad")).expect("mkdir");
            std::fs::write(schemas.join("bad/t.json"), "[{\"name\": 1}]").expect("write");
            (good, "bad")
        }
    }
}

/// Undoes what [`invalid`] did to the schema directory.
fn restore(schemas: &Path) {
    let _ = std::fs::remove_dir_all(schemas.join("bad"));
    std::fs::copy(
        schemas_dir().join("events/transaction.json"),
        schemas.join("events/transaction.json"),
    )
    .expect("restore schema");
}

#[test]
fn fifty_reloads_during_a_100k_event_load_lose_nothing_and_keep_each_requests_rules() {
    const THREADS: usize = 4;
    const BATCH: usize = 250;
    const EVENTS: usize = 100_000;
    const RELOADS: usize = 50;
    let c = Arc::new(Reloadable::start(&generation(0)));
    let batches = EVENTS / BATCH;
    let sent = Arc::new(AtomicUsize::new(0));
    // Valid reloads started and answered: a request sent after `done` reloads were answered
    // and answered before `started` + 1 had begun runs under a generation in between.
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // Every reload answered, valid or not: senders keep pace with them, so the 50 reloads
    // happen during the load, not after it.
    let reloads = Arc::new(AtomicUsize::new(0));
    // Per request: its ids' destination bounds (lowest, highest generation) and its ids.
    let requests = Arc::new(Mutex::new(Vec::<(usize, usize, Vec<String>)>::new()));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (c, sent, started, done, reloads, requests) = (
                Arc::clone(&c),
                Arc::clone(&sent),
                Arc::clone(&started),
                Arc::clone(&done),
                Arc::clone(&reloads),
                Arc::clone(&requests),
            );
            std::thread::spawn(move || {
                for n in (t..batches).step_by(THREADS) {
                    let due = (n * (RELOADS + 2) / batches).saturating_sub(2);
                    assert!(
                        wait_for(Duration::from_secs(120), || {
                            reloads.load(Ordering::SeqCst) >= due
                        }),
                        "the reloads stalled"
                    );
                    let ids: Vec<String> = (0..BATCH).map(|i| format!("t-{n}-{i}")).collect();
                    let events: Vec<Value> = ids.iter().map(|id| txn(id, n as u64)).collect();
                    let low = done.load(Ordering::SeqCst);
                    let (status, body) = c.post(INGEST, &events);
                    let high = started.load(Ordering::SeqCst);
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["refused"], 0, "{body}");
                    requests.lock().unwrap().push((low, high, ids));
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // 50 reloads, valid and invalid in turn, spread over the load (each waits for its share
    // of batches to be sent).
    let mut extra_ids = Vec::new();
    let schemas = c.dir("schemas");
    for r in 0..RELOADS {
        let share = (r + 1) * batches / (RELOADS + 2);
        assert!(
            wait_for(Duration::from_secs(120), || sent.load(Ordering::SeqCst)
                >= share),
            "the load stalled at {} batches",
            sent.load(Ordering::SeqCst)
        );
        if r % 2 == 1 {
            let (text, why) = invalid(r / 2, &schemas);
            c.write_config(&text);
            let (status, body) = c.reload();
            restore(&schemas);
            reloads.fetch_add(1, Ordering::SeqCst);
            assert_eq!(status, 422, "reload {r}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(why), "reload {r}: {why:?} not in {error:?}");
            continue;
        }
        let v = r / 2 + 1;
        // A table of its own for this generation.
        std::fs::create_dir_all(schemas.join("extra")).expect("mkdir");
        std::fs::write(
            schemas.join(format!("extra/t{v}.json")),
            r#"[{"name": "n", "type": "INTEGER", "mode": "REQUIRED"}]"#,
        )
        .expect("write schema");
        c.write_config(&generation(v));
        started.fetch_add(1, Ordering::SeqCst);
        let (status, body) = c.reload();
        assert_eq!(status, 200, "reload {r}: {body}");
        assert_eq!(body["generation"], v + 1, "{body}");
        done.fetch_add(1, Ordering::SeqCst);
        reloads.fetch_add(1, Ordering::SeqCst);
        // The new key works, the previous one is gone; the new table takes events.
        let new_key = format!("key-{v:04}-abcdef");
        let old_key = format!("key-{:04}-abcdef", v - 1);
        let id = format!("x-{v}");
        let event = json!({"namespace": "extra", "type": format!("t{v}"), "id": id,
            "event": {"n": v}});
        let (status, body) = c.post(&new_key, std::slice::from_ref(&event));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["refused"], 0, "the table added by reload {r}: {body}");
        extra_ids.push(id);
        let (status, _) = c.post(&old_key, &[event]);
        assert_eq!(status, 401, "the key reload {r} removed still works");
    }
    for s in senders {
        s.join().expect("sender");
    }

    // Everything delivered: every transaction once, in the destination of its generation.
    let (a, b) = (c.dir("a"), c.dir("b"));
    let total = EVENTS + extra_ids.len();
    let delivered = wait_for(Duration::from_secs(120), || {
        stored_ids(&a).len() + stored_ids(&b).len() >= total
    });
    let in_a: Vec<String> = stored_ids(&a);
    let in_b: Vec<String> = stored_ids(&b);
    assert!(
        delivered,
        "{} + {} of {total} delivered",
        in_a.len(),
        in_b.len()
    );
    let set_a: HashSet<&String> = in_a.iter().collect();
    let set_b: HashSet<&String> = in_b.iter().collect();
    assert_eq!(set_a.len(), in_a.len(), "duplicates in a");
    assert_eq!(set_b.len(), in_b.len(), "duplicates in b");
    assert_eq!(in_a.len() + in_b.len(), total, "delivered more than sent");
    for id in &extra_ids {
        assert!(set_a.contains(id), "{id} of an added table not in a");
    }
    // Which generation converted each transaction: its transform wrote `coupon = gen-<v>`.
    let generation_of: HashMap<String, usize> = [&a, &b]
        .iter()
        .flat_map(|d| rows(d).into_values().flatten())
        .filter_map(|r| {
            let v = r["coupon"].as_str()?.strip_prefix("gen-")?.parse().ok()?;
            Some((r["event_id"].as_str()?.to_string(), v))
        })
        .collect();
    let mut determined = [0usize; 2];
    for (low, high, ids) in requests.lock().unwrap().iter() {
        let dest: HashSet<bool> = ids.iter().map(|id| set_a.contains(id)).collect();
        assert_eq!(dest.len(), 1, "one request went to both destinations");
        let to_a = dest.contains(&true);
        // One generation converted the whole request, one that ran while it was in flight,
        // and its route chose the destination.
        let gens: HashSet<usize> = ids
            .iter()
            .map(|id| *generation_of.get(id).unwrap_or_else(|| panic!("{id} lost")))
            .collect();
        assert_eq!(gens.len(), 1, "one request converted by {gens:?}");
        let v = *gens.iter().next().unwrap();
        assert!(
            (*low..=*high).contains(&v),
            "a request in flight under generations {low}..={high} was converted by {v}"
        );
        assert_eq!(
            to_a,
            v % 2 == 0,
            "generation {v} routes to {}",
            if v % 2 == 0 { "a" } else { "b" }
        );
        if low == high {
            determined[usize::from(to_a)] += 1;
        }
    }
    // Requests that ran between two reloads had one possible generation: some went each way,
    // so the route's change is what moved them.
    assert!(
        determined[0] > 0 && determined[1] > 0,
        "requests between reloads: {} to b, {} to a",
        determined[0],
        determined[1]
    );

    // The counters settle just after the files are written.
    let settled = |m: &str| metric(m, "evlog_events_delivered_total") == Some(total as f64);
    wait_for(Duration::from_secs(30), || settled(&c.metrics()));
    let m = c.metrics();
    assert_eq!(
        metric(&m, "evlog_config_reloads_total{result=\"ok\"}"),
        Some((RELOADS / 2) as f64)
    );
    assert_eq!(
        metric(&m, "evlog_config_reloads_total{result=\"error\"}"),
        Some((RELOADS / 2) as f64)
    );
    let counters: HashMap<&str, f64> = [
        "evlog_events_accepted_total",
        "evlog_events_delivered_total",
        "evlog_events_rejected_total",
        "evlog_events_dropped_total",
    ]
    .into_iter()
    .map(|n| (n, metric(&m, n).unwrap_or(0.0)))
    .collect();
    assert_eq!(counters["evlog_events_accepted_total"], total as f64, "{m}");
    assert_eq!(
        counters["evlog_events_delivered_total"], counters["evlog_events_accepted_total"],
        "{m}"
    );
}

#[test]
fn sighup_reloads_the_binary_and_a_bad_file_leaves_it_running() {
    let root = tempfile::tempdir().expect("tempdir");
    copy_dir(&schemas_dir(), &root.path().join("schemas"));
    let path = root.path().join("collector.toml");
    let write = |text: &str| {
        let text = text.replace("@ROOT@", &root.path().display().to_string());
        std::fs::write(&path, text).expect("write config");
    };
    write(&config(&keys(&[]), file_sink()));
    let (child, url) = spawn_binary(&path);
    // A failed assertion must not leave the process behind.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let post = |key: &str| {
        client()
            .post(format!("{url}/v1/events"))
            .bearer_auth(key)
            .json(&txn("sighup-1", 1))
            .send()
            .expect("post")
            .status()
            .as_u16()
    };
    let reloads = |result: &str| {
        let m = client()
            .get(format!("{url}/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text");
        metric(
            &m,
            &format!("evlog_config_reloads_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(post(INGEST), 202);
    let new_key = "rotated-key-0002";
    write(&config(
        &keys(&[new_key]).replace(INGEST, "retired-key-0000"),
        file_sink(),
    ));
    send_signal(&child.0, "HUP");
    assert!(
        wait_for(Duration::from_secs(20), || reloads("ok") == Some(1.0)),
        "SIGHUP did not reload"
    );
    assert_eq!(post(new_key), 202);
    assert_eq!(post(INGEST), 401, "the key the reload removed");
    // A bad file: refused, counted, and the process goes on with what it ran.
    write("[collector\n");
    send_signal(&child.0, "HUP");
    assert!(
        wait_for(Duration::from_secs(20), || reloads("error") == Some(1.0)),
        "the bad reload was not counted"
    );
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "the collector exited"
    );
    assert_eq!(post(new_key), 202);
    send_signal(&child.0, "TERM");
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[test]
fn a_reload_that_changes_a_sink_sends_later_events_through_the_new_one() {
    let c = Reloadable::start(&config(&keys(&[]), file_sink()));
    let batch = |prefix: &str| -> Vec<Value> {
        (0..100).map(|i| txn(&format!("{prefix}-{i}"), i)).collect()
    };
    let (status, _) = c.post(INGEST, &batch("before"));
    assert_eq!(status, 200);
    let (old, new) = (c.dir("data"), c.dir("data2"));
    assert!(wait_for(Duration::from_secs(20), || stored_ids(&old).len() == 100));
    c.write_config(&config(&keys(&[]), &file_sink().replace("/data", "/data2")));
    let (status, body) = c.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["changes"],
        json!(["destination \"default\": sink settings changed"]),
        "{body}"
    );
    let (status, _) = c.post(INGEST, &batch("after"));
    assert_eq!(status, 200);
    assert!(
        wait_for(Duration::from_secs(20), || stored_ids(&new).len() == 100),
        "the new sink got {} rows",
        stored_ids(&new).len()
    );
    assert!(stored_ids(&new).iter().all(|id| id.starts_with("after-")));
    assert_eq!(
        stored_ids(&old).len(),
        100,
        "the old sink got rows after the reload"
    );
}
