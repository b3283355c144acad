//! `bq-test-server`: the BigQuery test server as a process, for manual use and load scripts.
//!
//! ```text
//! bq-test-server [--port N] [--schemas DIR] [--project P] [--dedupe-window-secs S]
//!                [--schema-propagation-ms MS] [--require-auth] [--grpc-port N]
//! ```
//! Prints `listening on http://127.0.0.1:PORT` on stdout once it accepts connections (and, with
//! `--grpc-port` (0: any free port), `grpc listening on http://127.0.0.1:PORT` for the Storage
//! Write API, on the next line), then serves until SIGINT/SIGTERM. Admin: `GET /_stats`,
//! `POST /_fault` (see tests/README.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use evlog_tests::bq::{BqTestConfig, BqTestServer};

const USAGE: &str = "usage: bq-test-server [--port N] [--schemas DIR] [--project P] \
                     [--dedupe-window-secs S] [--schema-propagation-ms MS] [--require-auth] \
                     [--grpc-port N]";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // As the collector does (collector/src/memory.rs): mimalloc's huge pages, purged and faulted
    // in again, cost more in page zeroing than they save.
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    let mut cfg = BqTestConfig::default();
    let mut schemas: Option<PathBuf> = None;
    let mut project = "evlog-test".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let r: Result<(), String> = (|| {
            match a.as_str() {
                "--port" => {
                    let v = value("--port")?;
                    cfg.port = v.parse().map_err(|_| format!("--port: not a port: {v}"))?;
                }
                "--schemas" => schemas = Some(PathBuf::from(value("--schemas")?)),
                "--project" => project = value("--project")?,
                "--dedupe-window-secs" => {
                    let v = value("--dedupe-window-secs")?;
                    let s: u64 = v
                        .parse()
                        .map_err(|_| format!("--dedupe-window-secs: not a number: {v}"))?;
                    cfg.dedupe_window = Duration::from_secs(s);
                }
                "--schema-propagation-ms" => {
                    let v = value("--schema-propagation-ms")?;
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| format!("--schema-propagation-ms: not a number: {v}"))?;
                    cfg.schema_propagation = Duration::from_millis(ms);
                }
                "--require-auth" => cfg.require_auth = true,
                "--grpc-port" => {
                    let v = value("--grpc-port")?;
                    cfg.grpc_port = v
                        .parse()
                        .map_err(|_| format!("--grpc-port: not a port: {v}"))?;
                    cfg.grpc = true;
                }
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bq-test-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match BqTestServer::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bq-test-server: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(dir) = &schemas {
            match server.load_evlog_schemas(dir, &project) {
                Ok(n) => eprintln!(
                    "bq-test-server: {n} tables from {} in project {project}",
                    dir.display()
                ),
                Err(e) => {
                    eprintln!("bq-test-server: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        println!("listening on {}", server.base_url());
        if server.grpc_addr().is_some() {
            println!("grpc listening on {}", server.grpc_url());
        }
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("bq-test-server: {e}");
                    return ExitCode::FAILURE;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let stats = server.stats();
        eprintln!("bq-test-server: stopping; stats {}", stats.to_json());
        server.shutdown();
        ExitCode::SUCCESS
    })
}
