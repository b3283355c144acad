//! OpenSearch for the OpenSearch sink's tests: [`Osmem`] runs osmem-server (an in-memory
//! OpenSearch-compatible server from PyPI, a static binary, installed into the project's `.venv`
//! by `bash tests/suites/50-opensearch.sh setup`) on a loopback port, and [`FaultProxy`] stands
//! in front of it to make chosen documents answer 429 or 5xx, whole requests answer 503 or 429,
//! answers come slowly, or connections drop, and records what clients sent.
//!
//! Where osmem differs from OpenSearch is listed in the sink's module doc
//! (`core/src/sink/opensearch/mod.rs`).

mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use proxy::{BulkRecord, Fault, FaultProxy, ItemFault};

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// The project's venv Python (`.venv/bin/python`).
pub fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

const SETUP: &str = "run `bash tests/suites/50-opensearch.sh setup` (installs osmem-server and \
                     opensearch-py into .venv)";

/// The osmem-server binary: `OSMEM_SERVER_BIN`, else the one the `osmem-server` wheel put in
/// the project's venv.
pub fn osmem_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("OSMEM_SERVER_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let py = venv_python();
    let out = Command::new(&py)
        .args([
            "-c",
            "import osmem_server; print(osmem_server.resolve_binary())",
        ])
        .output()
        .map_err(|e| format!("{}: {e}; {SETUP}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "osmem_server is not installed in .venv ({}); {SETUP}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A running osmem-server, stopped on drop.
#[derive(Debug)]
pub struct Osmem {
    child: Child,
    url: String,
}

impl Osmem {
    /// Starts osmem-server on a free loopback port and waits (up to 30 s) for its ready line.
    pub fn start() -> Result<Self, String> {
        let bin = osmem_binary()?;
        let mut child = Command::new(&bin)
            .args(["--addr", "127.0.0.1:0", "--no-ja"])
            .args(["--parent-pid", &std::process::id().to_string()])
            // It exits when its stdin closes: with this process, whatever happens to it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}; {SETUP}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(url) = v.get("url").and_then(|u| u.as_str()) {
                        let _ = tx.send(url.to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => Ok(Self { child, url }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{} did not say it was ready within 30 s",
                    bin.display()
                ))
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
