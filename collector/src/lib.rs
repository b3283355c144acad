//! evlog collector: HTTP ingest in front of core's validation, routing, sinks and spool.
//!
//! - [`run`]: serve on a bound listener until `shutdown` resolves, then drain (see below).
//! - `POST /v1/events` (one envelope), `POST /v1/batch` (JSON array or NDJSON), gzip and zstd accepted;
//!   `GET /healthz`, `GET /readyz`, `GET /metrics`.
//! - A 2xx answer means the request's events are in the write-ahead log (module `wal`); streamer
//!   threads (module `streamer`) deliver them through the configured sink and commit afterwards.
//!   With several destinations (`[destinations]`, `[[routes]]`) routes are decided at ingest,
//!   each destination has its own streamers and cursor in the log, and one that is down holds
//!   back only itself.
//! - Answers sent before a request body was read (401, 413, 429, …) reach clients that are
//!   still sending it: the rest is read and discarded, within bounds, before the connection is
//!   closed (lingering close, module `linger`).
//!
//! Shutdown: stop accepting, finish in-flight requests, stream what is in the log until
//! `collector.shutdown_deadline`, return. What is left stays in the log for the next start.
//!
//! Restarts (module `listen` for the socket, `restart` for the rest): the listener may be
//! inherited (systemd socket activation, or a predecessor's `SIGUSR2` handoff); after it stops
//! accepting, a collector answers each kept-alive connection's next request with
//! `Connection: close`; streamers run under a lock on the log directory, so an old and a new
//! process sharing it never stream it at once.

pub mod cli;
pub mod config;
mod envelope;
mod http;
mod linger;
pub mod listen;
pub mod memory;
pub mod reload;
mod reports;
mod restart;
mod streamer;
mod ui;
mod wal;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use evlog_core::counters::{Counters, DropReason};
use evlog_core::destinations::DEFAULT_DESTINATION;
use evlog_core::ingest::{LiveProcessor, Processor};
use evlog_core::schema::SchemaRegistry;
use evlog_core::spool::Spool;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;

pub use crate::config::CollectorConfig;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A schema file is malformed.
    #[error(transparent)]
    Schema(#[from] evlog_core::schema::SchemaError),
    /// The sink cannot be set up.
    #[error(transparent)]
    Sink(#[from] evlog_core::sink::SinkError),
    /// The write-ahead log cannot be opened.
    #[error(transparent)]
    Wal(#[from] evlog_core::spool::SpoolError),
    /// Anything else at startup.
    #[error("{0}")]
    Other(String),
}

/// A TLS acceptor from PEM files.
/// HTTP/1.1 connection settings: keep-alive, and `request_timeout` for request heads (hyper
/// closes the connection; bodies are timed in the handlers).
fn http1_builder(c: &config::CollectorSection) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(c.request_timeout);
    b
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    // The path as tried (relative ones resolve against the working directory).
    let abs = |p: &std::path::Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Other(format!(
                "collector.tls_cert {}: {e}; set collector.tls_cert to a PEM certificate chain \
                 readable by this user",
                abs(cert)
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Other(format!(
            "collector.tls_cert {}: no certificate in the file (expected PEM \
             \"-----BEGIN CERTIFICATE-----\" blocks)",
            abs(cert)
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Other(format!(
            "collector.tls_key {}: {e}; set collector.tls_key to a PEM private key (PKCS#8, \
             PKCS#1 or SEC1) readable by this user",
            abs(key)
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A configuration checked and turned into its parts (schemas, sink, TLS, write-ahead log
/// directory) before anything listens: [`prepare`] then [`Prepared::serve`]. A program prints
/// that it listens only after `prepare` succeeded, so a bad setting never looks like a start.
pub struct Prepared {
    config: CollectorConfig,
    processor: Arc<Processor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Each destination's state (its sink, its pending log bytes read at the start), in
    /// `Config::destination_names` order.
    dests: Vec<Arc<streamer::Dest>>,
    counters: Arc<Counters>,
    /// The processor the sinks follow (a reload stores its new one there first).
    live: LiveProcessor,
    /// Where reloads read the configuration (none: reloads are refused, saying why).
    reload_source: Option<reload::Source>,
    /// Whether `SIGHUP` reloads.
    reload_on_sighup: bool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("listen", &self.config.collector.listen)
            .finish_non_exhaustive()
    }
}

/// Loads the schemas (`schemas.dir`), builds the sink, reads the TLS files and opens the
/// write-ahead log directory (`collector.wal_dir`, created when missing, checked writable).
/// Every error names the key and the path.
pub async fn prepare(config: CollectorConfig) -> Result<Prepared, Error> {
    let c = &config.collector;
    let schemas = SchemaRegistry::load_configured(&config.core)?;
    let processor = Arc::new(Processor::new(schemas, &config.core));
    let tls = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let wal_err = |e: &dyn std::fmt::Display| {
        Error::Other(format!(
            "collector.wal_dir {}: {e}; create it writable for this user, or set \
             collector.wal_dir to a writable directory",
            std::path::absolute(&c.wal_dir)
                .unwrap_or_else(|_| c.wal_dir.clone())
                .display()
        ))
    };
    let spool = Spool::open(wal::spool_options(c)).map_err(|e| wal_err(&e))?;
    // Opening creates the directory; writing is what the collector does with it.
    let probe = c.wal_dir.join(".evlog-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| wal_err(&e))?;
    // Sinks own their runtimes (and the BigQuery sink blocks on one to check its credentials):
    // build them off this runtime's threads.
    // The sinks follow this handle: a reload stores its new processor there before requests
    // convert with it.
    let live = evlog_core::ingest::live(Arc::clone(&processor));
    let deliveries = {
        let (core, live) = (config.core.clone(), live.clone());
        tokio::task::spawn_blocking(move || {
            core.destination_sinks()
                .into_iter()
                .map(|(_, sink)| {
                    streamer::Delivery::build_factory(&sink, &core, &live).map(|f| {
                        streamer::Delivery::new(streamer::Delivery::settings(&sink, &core), f)
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| Error::Other(format!("sink setup: {e}")))??
    };
    let names = config.core.destination_names();
    let counters = Arc::new(Counters::new());
    let dests = if names.len() == 1 {
        // One destination: the log's single reader, the collector's own counters.
        deliveries
            .into_iter()
            .map(|delivery| {
                Arc::new(streamer::Dest::new(
                    &names[0],
                    Arc::clone(&counters),
                    spool.pending_bytes(),
                    true,
                    None,
                    delivery,
                ))
            })
            .collect()
    } else {
        // Several: a cursor each. `default` keeps the offset files a collector with one
        // destination wrote, and takes the records it wrote (without destination masks);
        // without a `default`, every destination takes those.
        let legacy = names
            .iter()
            .any(|n| n == DEFAULT_DESTINATION)
            .then_some(DEFAULT_DESTINATION);
        let cursors = evlog_core::spool::Cursor::set(&names, legacy);
        names
            .iter()
            .zip(cursors)
            .zip(deliveries)
            .map(|((name, cursor), delivery)| {
                Arc::new(streamer::Dest::new(
                    name,
                    Arc::new(Counters::new()),
                    spool.pending_bytes_for(&cursor),
                    legacy.is_none_or(|l| l == name),
                    Some(cursor),
                    delivery,
                ))
            })
            .collect()
    };
    Ok(Prepared {
        config,
        processor,
        tls,
        dests,
        counters,
        live,
        reload_source: None,
        reload_on_sighup: false,
    })
}

/// Serves until `shutdown` resolves, then drains (see the crate docs). Returns after the
/// streamers stopped (everything streamed, or the deadline passed). [`prepare`] then
/// [`Prepared::serve`].
pub async fn run(
    listener: tokio::net::TcpListener,
    config: CollectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    prepare(config).await?.serve(listener, shutdown).await
}

impl Prepared {
    /// Makes the running collector reloadable from `source` (the file it was started from):
    /// by `POST /admin/reload` (with an admin key), and by `SIGHUP` when `on_sighup` (a
    /// program's choice: an embedding process may use the signal otherwise). See
    /// [`crate::reload`].
    pub fn reload_from(mut self, source: reload::Source, on_sighup: bool) -> Self {
        self.reload_source = Some(source);
        self.reload_on_sighup = on_sighup;
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then drains (see the crate docs).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        serve(self, listener, shutdown).await
    }
}

async fn serve(
    prepared: Prepared,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let Prepared {
        config,
        processor,
        tls,
        dests,
        counters,
        live,
        reload_source,
        reload_on_sighup,
    } = prepared;
    let c = config.collector.clone();
    let spool_opts = wal::spool_options(&c);
    let shared = Arc::new(streamer::Shared {
        counters,
        names: dests.iter().map(|d| d.name.clone()).collect(),
        dests,
        boot: evlog_core::ids::random_u64(),
        feed: Arc::default(),
    });
    let counted = Arc::clone(&shared);
    let pending = shared
        .dests
        .iter()
        .map(|d| Arc::clone(&d.pending))
        .collect();
    let (writer, writer_thread) = wal::WalWriter::start(&c, pending, move |n| count(&counted, n))?;
    let stop = Arc::new(Mutex::new(None));
    // Started under the streaming lock (module `restart`): a predecessor may still be streaming.
    let mut streamers: Vec<restart::Streamer> = Vec::new();
    for dest in &shared.dests {
        let name = &dest.name;
        for i in 0..c.workers {
            let spool = Spool::open(spool_opts.clone())?;
            let parts = streamer::StreamerParts {
                dest: Arc::clone(dest),
                shared: Arc::clone(&shared),
                stop: Arc::clone(&stop),
            };
            let thread = if shared.several() {
                format!("evlog-stream-{name}-{i}")
            } else {
                format!("evlog-stream-{i}")
            };
            streamers.push((thread, parts, spool));
        }
    }
    let streaming = restart::streaming(
        &spool_opts,
        Arc::clone(&shared),
        Arc::clone(&stop),
        streamers,
    )?;

    let state = Arc::new(http::State {
        live: arc_swap::ArcSwap::from_pointee(reload::Generation::new(config, processor, 1)),
        reloads: reload::Reloads {
            source: reload_source,
            ..Default::default()
        },
        sinks_follow: live,
        reports: Default::default(),
        shared: Arc::clone(&shared),
        wal: writer,
        draining: AtomicBool::new(false),
        in_flight: tokio::sync::Semaphore::new(c.max_in_flight),
        body_bytes: std::sync::atomic::AtomicU64::new(0),
        responses: http::Responses::default(),
        drains: linger::Drains::new(c.lingering.clone()),
    });

    let sighup = reload_on_sighup.then(|| {
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                eprintln!("evlog-collector: cannot watch SIGHUP: reload with POST /admin/reload");
                return;
            };
            while hup.recv().await.is_some() {
                // Counted and logged by `reload`; the running configuration stays on error.
                let _ = reload::reload(&st).await;
            }
        })
    });
    // The live page's snapshots, once a second (`ui`).
    let snapshots = tokio::spawn(http::ui::snapshots(Arc::clone(&state)));
    let graceful = GracefulShutdown::new();
    let closing = Arc::new(restart::Closing::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of file descriptors or similar: back off briefly, keep serving.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // An early refusal marks its connection, which then closes lingering (see `linger`).
                let mark = Arc::new(linger::Mark::default());
                let stream =
                    linger::LingeringStream::new(stream, Arc::clone(&mark), Arc::clone(&state.drains));
                let (st, closing) = (Arc::clone(&state), Arc::clone(&closing));
                let svc = hyper::service::service_fn(move |req| {
                    let answer = http::handle(Arc::clone(&st), Arc::clone(&mark), req);
                    let closing = Arc::clone(&closing);
                    async move {
                        let mut answer = answer.await;
                        if let Ok(a) = &mut answer {
                            closing.mark(a);
                        }
                        answer
                    }
                });
                match &tls {
                    None => {
                        let conn = http1_builder(&state.now().collector)
                            .serve_connection(TokioIo::new(stream), svc);
                        let fut = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = fut.await;
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, never in the accept loop.
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        let builder = http1_builder(&state.now().collector);
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(stream),
                            );
                            if let Ok(Ok(tls_stream)) = handshake.await {
                                let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
                                let _ = watcher.watch(conn).await;
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if let Some(task) = sighup {
        task.abort();
    }
    // Live feeds end now: the drain waits for requests, not for someone watching.
    state.shared.feed.close();
    snapshots.abort();
    let _ = snapshots.await;
    let shutdown_deadline = state.now().collector.shutdown_deadline;
    let deadline = Instant::now() + shutdown_deadline;
    // Kept-alive connections: each one's next request is still served, answered with
    // `Connection: close`, before the rest are closed (module `restart`).
    closing
        .close_connections(&graceful, shutdown_deadline.min(restart::KEEPALIVE_GRACE))
        .await;
    state.draining.store(true, Ordering::Relaxed);
    // In-flight requests finish (their events reach the log) before the streamers' last pass.
    let _ = tokio::time::timeout_at(deadline.into(), graceful.shutdown()).await;
    state.wal.close();
    drop(state);
    tokio::task::spawn_blocking(move || {
        // The writer seals the active segment as it stops, so the streamers' last pass sees it.
        let _ = writer_thread.join();
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        let _ = streaming.join();
    })
    .await
    .map_err(|e| Error::Other(format!("shutdown: {e}")))?;
    Ok(())
}

/// Counts a record once it is durable: its events accepted (and those of its request no route
/// took, accepted and dropped `unrouted`); with several destinations, each one's copies and
/// the copies beyond the first (`fanned_out`).
pub(crate) fn count(shared: &streamer::Shared, c: &wal::Counts) {
    shared.counters.accept_n(c.events + c.unrouted);
    shared.feed.count(&c.tables);
    if c.unrouted > 0 {
        shared.counters.drop_n(DropReason::Unrouted, c.unrouted);
    }
    if shared.several() {
        for (d, n) in shared.dests.iter().zip(&c.copies) {
            d.counters.accept_n(*n);
        }
        let copies: u64 = c.copies.iter().sum();
        shared.counters.fan_out(copies.saturating_sub(c.events));
    }
}

/// A collector serving on its own thread and runtime: for programs and tests that embed it
/// (e.g. an SDK test binding port 0). Stopped, with the usual drain, by [`Background::stop`] or
/// when dropped.
#[derive(Debug)]
pub struct Background {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Background {
    /// Checks the configuration ([`prepare`]: its errors are returned here), binds `addr`
    /// (e.g. `127.0.0.1:0`) and starts serving.
    pub fn start(config: CollectorConfig, addr: &str) -> Result<Self, Error> {
        Self::start_inner(config, addr, None)
    }

    /// Like [`Background::start`], with the configuration read from `source`, which
    /// `POST /admin/reload` re-reads (no `SIGHUP`: the signal belongs to the embedding
    /// program).
    pub fn start_from(source: reload::Source, addr: &str) -> Result<Self, Error> {
        let config = source.read().map_err(Error::Other)?;
        Self::start_inner(config, addr, Some(source))
    }

    fn start_inner(
        config: CollectorConfig,
        addr: &str,
        source: Option<reload::Source>,
    ) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("runtime: {e}")))?;
        let mut prepared = rt.block_on(prepare(config))?;
        if let Some(source) = source {
            prepared = prepared.reload_from(source, false);
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Error::Other(format!("bind {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("local address: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("evlog-collector".into())
            .spawn(move || {
                rt.block_on(prepared.serve(listener, async {
                    let _ = rx.await;
                }))
            })
            .map_err(|e| Error::Other(format!("cannot start the collector thread: {e}")))?;
        Ok(Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops accepting, drains (see the crate docs) and returns `run`'s result.
    pub fn stop(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::Other("the collector thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
