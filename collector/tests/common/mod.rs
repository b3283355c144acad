//! Test helpers: a collector on 127.0.0.1:0 with temporary directories, and readers of what the
//! file sink wrote.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evlog_collector::CollectorConfig;
use serde_json::Value;

pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schemas")
}

/// The config text for a collector whose directories are under `root`, plus `extra` TOML lines
/// inside `[collector]`, and `tail` (other sections).
pub fn config_text(root: &Path, extra: &str, tail: &str) -> String {
    format!(
        r#"
[collector]
listen = "127.0.0.1:0"
wal_dir = {wal:?}
{defaults}
{extra}

[sink]
kind = "file"
[sink.file]
dir = {data:?}

[batch]
max_rows = 500
max_age = "50ms"

[retry]
base = "10ms"
cap = "200ms"

[schemas]
dir = {schemas:?}
{tail}
"#,
        defaults = ["seal_interval = \"20ms\"", "shutdown_deadline = \"5s\""]
            .iter()
            .filter(|l| !extra.contains(l.split(' ').next().unwrap_or("")))
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        wal = root.join("wal").display().to_string(),
        data = root.join("data").display().to_string(),
        schemas = schemas_dir().display().to_string(),
    )
}

/// The config text for a collector with `[destinations]` (no `[sink]`): directories under
/// `root`, `extra` lines inside `[collector]`, and `tail` (the destinations, routes and other
/// sections).
pub fn destinations_text(root: &Path, extra: &str, tail: &str) -> String {
    let text = config_text(root, extra, tail);
    let start = text.find("[sink]").expect("a [sink] section");
    let end = text.find("[batch]").expect("a [batch] section");
    format!("{}{}", &text[..start], &text[end..])
}

/// A collector running [`evlog_collector::run`] on its own runtime thread.
pub struct Server {
    pub root: tempfile::TempDir,
    pub url: String,
    server: evlog_collector::Background,
}

impl Server {
    pub fn start(extra: &str) -> Self {
        Self::start_with(extra, "")
    }

    pub fn start_with(extra: &str, tail: &str) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let text = config_text(root.path(), extra, tail);
        Self::start_text(root, &text, "127.0.0.1:0")
    }

    /// A collector with the config `text` (its directories under `root`), listening on `addr`.
    pub fn start_text(root: tempfile::TempDir, text: &str, addr: &str) -> Self {
        let config =
            CollectorConfig::from_toml_with_env(text, "test", std::iter::empty()).expect("config");
        let server = evlog_collector::Background::start(config, addr).expect("start");
        Self {
            root,
            url: format!("http://{}", server.addr()),
            server,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.root.path().join("wal")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .expect("metrics")
            .text()
            .expect("text")
    }

    /// Shuts down (drain) and returns how long it took.
    pub fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.server.stop().expect("run");
        t.elapsed()
    }
}

/// Sends a request and returns the answer's status code.
pub fn status(request: reqwest::blocking::RequestBuilder) -> u16 {
    request.send().expect("send").status().as_u16()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Every row the file sink wrote, per file name (dead letters under `_evlog_rejected`).
pub fn rows(data: &Path) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    let Ok(datasets) = std::fs::read_dir(data) else {
        return out;
    };
    for d in datasets.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            for line in text.lines() {
                // A line being written may be incomplete: skip what does not parse yet.
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    out.entry(name.clone()).or_default().push(v);
                }
            }
        }
    }
    out
}

/// Event ids in table files (not dead letters).
pub fn stored_ids(data: &Path) -> Vec<String> {
    rows(data)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("_evlog_rejected"))
        .flat_map(|(_, rows)| rows)
        .filter_map(|r| r["event_id"].as_str().map(str::to_string))
        .collect()
}

/// Dead-letter rows.
pub fn dead_letters(data: &Path) -> Vec<Value> {
    rows(data)
        .into_iter()
        .filter(|(name, _)| name.starts_with("_evlog_rejected"))
        .flat_map(|(_, rows)| rows)
        .collect()
}

/// Waits for `cond` until `timeout`; true when it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn txn(user: u64) -> Value {
    serde_json::json!({"namespace": "events", "type": "transaction",
        "event": {"user_id": user, "amount": "9.99", "currency": "EUR"}})
}

/// The value of a metric line `name{labels} value` (exact name with labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
}

/// Starts the collector binary with the config file `path`: the child and its base URL (read
/// from the "listening on" line).
pub fn spawn_binary(path: &Path) -> (std::process::Child, String) {
    spawn_binary_env(path, &[])
}

/// [`spawn_binary`] with these variables as its whole environment.
pub fn spawn_binary_env(path: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_evlog-collector"))
        .arg("--config")
        .arg(path)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn collector");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read listen line");
    let addr = line
        .trim()
        .strip_prefix("evlog-collector listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, format!("http://{addr}"))
}

/// Sends `signal` (`TERM`, `HUP`, …) to `child` with the shell's builtin kill (no procps).
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {}", child.id()))
        .status()
        .expect("sh");
    assert!(ok.success(), "kill -{signal}");
}
