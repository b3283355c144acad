//! What `serve` does so that a restart refuses nothing and delivers nothing twice (the socket
//! half is module `listen`; the operator's view is `docs/operations.md`, "Restarts").
//!
//! **Two processes, one write-ahead log.** During a handoff the old and the new collector run
//! at once on the same `collector.wal_dir`. Writing is safe as it is: each process appends to
//! segments of its own (the name holds its pid; a live writer's segment is `flock`ed and no
//! reader takes it). Reading is not: the streamers of a collector with several destinations
//! share segments between their cursors and exclude each other only inside one process, and
//! two file sinks appending to the same NDJSON file would interleave. So the streamers run
//! under the **streaming lock**, an exclusive `flock` on `<wal_dir>/.evlog-streaming.lock`
//! ([`streaming`]): the new process serves (and appends) at once and starts its streamers when
//! the old one's have drained and exited, which releases the lock (or when the old process
//! dies: the kernel drops its locks). A process stopped before it got the lock streams nothing;
//! what it wrote waits in the log for the next one. When the lock was held by another process,
//! each destination's pending bytes are read from the log again when it is taken, so
//! `/readyz`'s high watermark does not count what the other process committed meanwhile
//! (the bytes of a group appended during that scan may be counted twice or not at all; the
//! error is at most one group and ends when its segment is committed).
//!
//! **Kept-alive connections while draining** ([`Closing`]): once the old process stops
//! accepting, every answer it still sends carries `Connection: close`, so a client's next
//! request opens a new connection (which the successor accepts); connections that are idle
//! get [`KEEPALIVE_GRACE`] to send one more request before they are closed. A client that
//! sends on an idle connection at the very moment it is closed sees the close instead of an
//! answer: that race exists with every HTTP server that closes idle connections, and a client
//! only hits it by staying idle for the whole grace and then sending within the instant of the
//! close.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evlog_core::spool::{Spool, SpoolOptions};
use hyper_util::server::graceful::GracefulShutdown;
use rustix::fs::{flock, FlockOperation};

use crate::streamer;
use crate::Error;

/// How long kept-alive connections may still send one request after the collector stopped
/// accepting (see the module docs).
pub const KEEPALIVE_GRACE: Duration = Duration::from_secs(1);

/// The streaming lock's file in the write-ahead log directory.
const LOCK_FILE: &str = ".evlog-streaming.lock";
/// How often a process waiting for the streaming lock tries again.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Set once the collector stops accepting: answers then close their connection.
#[derive(Debug, Default)]
pub(crate) struct Closing(AtomicBool);

impl Closing {
    /// Adds `Connection: close` to an answer sent after the collector stopped accepting.
    pub(crate) fn mark<B>(&self, resp: &mut hyper::Response<B>) {
        if self.0.load(Ordering::Relaxed) {
            resp.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
    }

    /// From now on answers close their connection; returns once every connection closed, or
    /// after `grace` (the caller then closes what is left, idle ones at once).
    pub(crate) async fn close_connections(&self, graceful: &GracefulShutdown, grace: Duration) {
        self.0.store(true, Ordering::Relaxed);
        let until = Instant::now() + grace;
        while graceful.count() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A streamer to start once the lock is held: its thread name, parts and log handle.
pub(crate) type Streamer = (String, streamer::StreamerParts, Spool);

/// Starts `streamers` under the streaming lock (see the module docs) on a thread that holds the
/// lock until they all ended, and returns that thread. It waits for the lock until it has it or
/// `stop` holds a deadline that has passed (then it starts none).
pub(crate) fn streaming(
    opts: &SpoolOptions,
    shared: Arc<streamer::Shared>,
    stop: Arc<Mutex<Option<Instant>>>,
    streamers: Vec<Streamer>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    let path = opts.dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Other(format!(
                "collector.wal_dir {}: cannot open the streaming lock: {e}",
                path.display()
            ))
        })?;
    let opts = opts.clone();
    std::thread::Builder::new()
        .name("evlog-streaming".into())
        .spawn(move || {
            let Some(lock) = wait_for_lock(file, &path, &stop) else {
                return;
            };
            if lock.waited {
                resync_pending(&opts, &shared);
            }
            let mut handles = Vec::new();
            for (name, parts, spool) in streamers {
                match std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || streamer::run(parts, spool))
                {
                    Ok(h) => handles.push(h),
                    // Its share waits in the log (the other streamers, or the next start).
                    Err(e) => eprintln!("evlog-collector: cannot start streamer {name}: {e}"),
                }
            }
            for h in handles {
                let _ = h.join();
            }
            drop(lock); // after the last streamer: the next process may stream now
        })
        .map_err(|e| Error::Other(format!("cannot start the streaming thread: {e}")))
}

struct Held {
    _file: File,
    /// Another process had it when this one first asked.
    waited: bool,
}

fn wait_for_lock(file: File, path: &Path, stop: &Mutex<Option<Instant>>) -> Option<Held> {
    let mut waited = false;
    loop {
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if waited {
                eprintln!("evlog-collector: the previous collector's streamers ended; streaming");
            }
            return Some(Held {
                _file: file,
                waited,
            });
        }
        if !waited {
            eprintln!(
                "evlog-collector: another collector streams {} (a restart in progress); this \
                 one serves and writes the log, and streams once that one has drained",
                path.parent().unwrap_or(path).display()
            );
            waited = true;
        }
        let deadline = *stop.lock().unwrap_or_else(|e| e.into_inner());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        std::thread::sleep(LOCK_POLL);
    }
}

/// Reads each destination's pending bytes from the log again (see the module docs).
fn resync_pending(opts: &SpoolOptions, shared: &streamer::Shared) {
    let Ok(spool) = Spool::open(opts.clone()) else {
        return;
    };
    for d in &shared.dests {
        let bytes = match &d.cursor {
            Some(c) => spool.pending_bytes_for(c),
            None => spool.pending_bytes(),
        };
        d.pending.store(bytes, Ordering::Relaxed);
    }
}
