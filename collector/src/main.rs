//! `evlog-collector --config <file>`: binds `collector.listen`, serves until SIGTERM/SIGINT,
//! drains until `collector.shutdown_deadline`, exits. `SIGHUP` reloads the file and the
//! schemas (`evlog_collector::reload`). All logic is in the library
//! ([`prepare`], then `Prepared::serve`). A configuration that cannot work (schemas, sink, TLS
//! files, write-ahead log directory) exits 1 with the key and path before anything listens;
//! unreadable or invalid config files and arguments exit 2. `evlog-collector top` / `tail`
//! read a running collector's live feed instead (`evlog_collector::cli`).

use std::path::PathBuf;
use std::process::ExitCode;

use evlog_collector::reload::Source;
use evlog_collector::{prepare, CollectorConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `top` and `tail` read a running collector's live feed (evlog_collector::cli).
    let all: Vec<String> = std::env::args().skip(1).collect();
    if matches!(all.first().map(String::as_str), Some("top" | "tail")) {
        return evlog_collector::cli::main(&all);
    }
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config_path = args.next().map(PathBuf::from),
            "--listen" => listen = args.next(),
            "--help" | "-h" => {
                println!("usage: evlog-collector --config <file.toml> [--listen ADDR:PORT]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("evlog-collector: unknown argument {other:?}; usage: evlog-collector --config <file.toml> [--listen ADDR:PORT]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = config_path else {
        eprintln!("evlog-collector: missing --config <file.toml>");
        return ExitCode::from(2);
    };
    let mut config = match CollectorConfig::from_path(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("evlog-collector: {e}");
            return ExitCode::from(2);
        }
    };
    let mut source = Source {
        path: path.clone(),
        listen: None,
    };
    if let Some(l) = listen {
        match l.parse() {
            Ok(addr) => {
                config.collector.listen = addr;
                source.listen = Some(addr);
            }
            Err(e) => {
                eprintln!("evlog-collector: --listen {l:?}: {e} (expected ADDR:PORT)");
                return ExitCode::from(2);
            }
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // Default: one worker more than CPUs. The log's group commit writes and fsyncs on the
    // leading request's worker; the extra one keeps every CPU parsing meanwhile (measured on
    // 2 CPUs: up to 2x single-event requests/s, batches no worse; 2 extra was worse).
    let threads = match config.collector.http_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
        n => n,
    };
    rt.worker_threads(threads);
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("evlog-collector: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let addr = config.collector.listen;
        // Every setting is checked (schemas, sink, TLS files, write-ahead log directory) before
        // the port is bound and "listening" printed: a bad one exits with its key and path.
        let prepared = prepare(config)
            .await
            .map_err(|e| e.to_string())?
            .reload_from(source, true);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        // Tests and scripts read this line to learn the port (listen = "127.0.0.1:0").
        println!("evlog-collector listening on {local}");
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            eprintln!("evlog-collector: shutting down");
        };
        prepared
            .serve(listener, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evlog-collector: {e}");
            ExitCode::FAILURE
        }
    }
}
