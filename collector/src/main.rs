//! `evlog-collector --config <file> [--listen ADDR:PORT] [--pid-file PATH]`: binds
//! `collector.listen` (or serves a socket inherited from systemd or a predecessor, see
//! `evlog_collector::listen`), serves until SIGTERM/SIGINT, drains until
//! `collector.shutdown_deadline`, exits. `SIGHUP` reloads the file and the schemas
//! (`evlog_collector::reload`). All logic is in the library ([`prepare`], then
//! `Prepared::serve`). A configuration that cannot work (schemas, sink, TLS files, write-ahead
//! log directory, an inherited fd that is not a listening TCP socket) exits 1 with the key and
//! path before anything listens; unreadable or invalid config files and arguments exit 2.
//!
//! `SIGUSR2` restarts without refusing a connection: this process starts its successor (same
//! program path and arguments) on the same socket, and drains and exits once the successor
//! listens; a successor that fails is reported and this process goes on serving. `--pid-file`
//! holds the pid of the process serving now (written once it listens, so after a handoff it
//! names the successor): `kill -USR2 "$(cat PATH)"`.
//!
//! `evlog-collector top` / `tail` read a running collector's live feed instead
//! (`evlog_collector::cli`).

use std::path::PathBuf;
use std::process::ExitCode;

use evlog_collector::listen::{notify_ready, Handoff, Inherited};
use evlog_collector::reload::Source;
use evlog_collector::{prepare, CollectorConfig};

const USAGE: &str =
    "usage: evlog-collector --config <file.toml> [--listen ADDR:PORT] [--pid-file PATH]";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    evlog_collector::memory::no_transparent_huge_pages();
    // `top` and `tail` read a running collector's live feed (evlog_collector::cli).
    let all: Vec<String> = std::env::args().skip(1).collect();
    if matches!(all.first().map(String::as_str), Some("top" | "tail")) {
        return evlog_collector::cli::main(&all);
    }
    // What a SIGUSR2 successor is started as, taken now: later, a binary replaced on disk
    // reads as deleted through /proc/self/exe.
    let program = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("evlog-collector"));
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut pid_file: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config_path = args.next().map(PathBuf::from),
            "--listen" => listen = args.next(),
            "--pid-file" => pid_file = args.next().map(PathBuf::from),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("evlog-collector: unknown argument {other:?}; {USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // Before the runtime's threads exist: this reads and clears the environment.
    let inherited = match Inherited::take() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("evlog-collector: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        let inherited_from = inherited.source();
        let (listener, ready) = inherited.listener(addr).map_err(|e| e.to_string())?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let handoff = Handoff::new(&listener, program, argv)
            .map_err(|e| format!("cannot keep the listening socket for a handoff: {e}"))?;
        // Tests and scripts read this line to learn the port (listen = "127.0.0.1:0").
        println!("evlog-collector listening on {local}");
        if let Some(from) = inherited_from {
            eprintln!("evlog-collector: the socket was inherited ({from:?})");
        }
        if let Some(p) = &pid_file {
            write_pid_file(p)?;
        }
        // The predecessor, if any, stops accepting now; this process accepts from here on.
        notify_ready(ready);
        let shutdown = async move {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                        () = handoff.successor_listening() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            // The handoff's duplicate of the socket is closed here: without a successor, a
            // stopped collector's port refuses connections at once instead of queueing them.
            eprintln!("evlog-collector: shutting down");
        };
        let served = prepared
            .serve(listener, shutdown)
            .await
            .map_err(|e| e.to_string());
        if let Some(p) = &pid_file {
            remove_pid_file(p);
        }
        served
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evlog-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes this process's pid to `path` (replaced by rename, so a reader never sees it half
/// written).
fn write_pid_file(path: &std::path::Path) -> Result<(), String> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("--pid-file {}: {e}", path.display()))
}

/// Removes `path` if it still holds this process's pid (after a handoff it names the successor).
fn remove_pid_file(path: &std::path::Path) {
    let ours =
        std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
