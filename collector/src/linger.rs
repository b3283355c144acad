//! Lingering close, as nginx does it: answers that clients still sending a body can read.
//!
//! Many refusals (401, 413 by `Content-Length`, 415, 429, 503) are answered before the request
//! body is read, so that refusing costs little. hyper then writes the answer, shuts the write
//! side (FIN) and drops the connection. Closing a socket whose receive queue holds unread data,
//! or that receives more data afterwards, makes the kernel send a reset, and a reset makes the
//! client's kernel drop what it received but its program has not read yet: the answer. A client
//! that writes its whole body before reading (Python's urllib, reqwest, anything without
//! `Expect: 100-continue`) would see a broken pipe or a reset instead of the 413 and its message.
//!
//! Contract:
//! - The handler marks a connection ([`Mark::answered`]) when it answers a request that carries
//!   a body (a `Content-Length` above 0 or chunked) with a status other than 2xx before that body
//!   was read to its end (the body reader reports it: [`Mark::body_read`]). Each answer sets or
//!   clears the mark. A marked answer says `Connection: close`, so the client does not reuse the
//!   connection hyper is about to close.
//! - When a marked connection's socket is dropped, a background task reads and discards what the
//!   client still sends, then closes: once the client closes its side (end of stream), has sent
//!   nothing for `collector.lingering.timeout`, `collector.lingering.time` has passed since the
//!   close, or `collector.lingering.max_bytes` were discarded (the last two end with a reset if
//!   the client is still sending). The answer and FIN are already sent, so the client reads the
//!   answer once it has written its body.
//! - A drain holds the socket only: the request's in-flight permit and body budget were given
//!   back when its handler returned. At most `collector.lingering.max_connections` drains run
//!   at once; past it a marked socket is closed at once and counted.
//! - `Expect: 100-continue`: hyper sends `100 Continue` only when the handler first reads the
//!   body, and drains never go through hyper, so a refusal made before reading is the final
//!   status and no `100` is sent; the client does not send the body, reads the answer and
//!   closes, which ends the drain at once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use evlog_core::counters::write_metric;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Lingering;

/// The drains in progress and their bounds, shared by all connections.
#[derive(Debug)]
pub(crate) struct Drains {
    limits: Lingering,
    slots: Arc<Semaphore>,
    /// Marked sockets closed at once because every slot was taken.
    skipped: AtomicU64,
    /// Bytes read and discarded by drains.
    discarded: AtomicU64,
}

impl Drains {
    pub(crate) fn new(limits: Lingering) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(
            limits.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Arc::new(Self {
            limits,
            slots,
            skipped: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        })
    }

    pub(crate) fn write_prometheus(&self, s: &mut String) {
        let total = self.limits.max_connections.min(Semaphore::MAX_PERMITS);
        write_metric(
            s,
            "evlog_collector_lingering_connections",
            "Connections answered before their request body was read, whose rest is being read and discarded before the close.",
            "gauge",
            total.saturating_sub(self.slots.available_permits()),
        );
        write_metric(
            s,
            "evlog_collector_lingering_skipped_total",
            "Such connections closed at once because collector.lingering.max_connections were draining.",
            "counter",
            self.skipped.load(Ordering::Relaxed),
        );
        write_metric(
            s,
            "evlog_collector_lingering_discarded_bytes_total",
            "Bytes read and discarded after early answers.",
            "counter",
            self.discarded.load(Ordering::Relaxed),
        );
    }
}

/// Per connection: whether its last answer left a request body unread. Requests with a body
/// carry it in their extensions, for the body reader.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    /// The last answer was sent before its request's body was read to its end.
    unread: AtomicBool,
    /// The current request's body was read to its end.
    read: AtomicBool,
}

impl Mark {
    /// A request starts.
    pub(crate) fn start(&self) {
        self.read.store(false, Ordering::Relaxed);
    }

    /// The current request's body was read to its end.
    pub(crate) fn body_read(&self) {
        self.read.store(true, Ordering::Relaxed);
    }

    /// The current request is answered; true when the answer leaves its body unread (the
    /// connection then closes lingering).
    pub(crate) fn answered(&self, has_body: bool, success: bool) -> bool {
        let unread = has_body && !success && !self.read.load(Ordering::Relaxed);
        self.unread.store(unread, Ordering::Relaxed);
        unread
    }
}

/// A TCP connection that lingers when dropped marked (see the module docs). Reads and writes go
/// straight to the socket.
#[derive(Debug)]
pub(crate) struct LingeringStream {
    /// `None` only once dropped.
    io: Option<TcpStream>,
    mark: Arc<Mark>,
    drains: Arc<Drains>,
}

impl LingeringStream {
    pub(crate) fn new(io: TcpStream, mark: Arc<Mark>, drains: Arc<Drains>) -> Self {
        Self {
            io: Some(io),
            mark,
            drains,
        }
    }

    fn io(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match self.io.as_mut() {
            Some(io) => Ok(Pin::new(io)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else {
            return;
        };
        if !self.mark.unread.load(Ordering::Relaxed) {
            return;
        }
        // Dropped in its connection's task, on the runtime (outside one, e.g. as the runtime
        // itself shuts down, the socket just closes).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match Arc::clone(&self.drains.slots).try_acquire_owned() {
            Ok(slot) => {
                rt.spawn(drain(io, Arc::clone(&self.drains), slot));
            }
            Err(_) => {
                self.drains.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads and discards until the client is done or a bound is reached, then closes `io`.
async fn drain(mut io: TcpStream, drains: Arc<Drains>, _slot: OwnedSemaphorePermit) {
    let limits = &drains.limits;
    let end = tokio::time::Instant::now() + limits.time;
    // hyper shut the write side after its answer; a connection it dropped on an error path gets
    // its FIN here (a second shutdown changes nothing).
    let _ = io.shutdown().await;
    let mut left = limits.max_bytes.0;
    while left > 0 {
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        let wait = limits.timeout.min(end - now);
        match tokio::time::timeout(wait, io.readable()).await {
            Ok(Ok(())) => {}
            // Silent for `timeout`, past `time`, or a socket error.
            Ok(Err(_)) | Err(_) => break,
        }
        match discard(&io, &mut left) {
            Ok(n) => {
                drains.discarded.fetch_add(n, Ordering::Relaxed);
            }
            Err(n) => {
                drains.discarded.fetch_add(n, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Reads what is ready (at most 1 MiB, then lets other tasks run), within `left`: `Ok(bytes)` to
/// go on, `Err(bytes)` at the end of the stream or on an error.
fn discard(io: &TcpStream, left: &mut u64) -> Result<u64, u64> {
    // Not held across an await: drains keep no buffer while they wait.
    let mut buf = [0u8; 64 * 1024];
    let mut read = 0u64;
    for _ in 0..16 {
        let want = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
        if want == 0 {
            return Err(read);
        }
        match io.try_read(&mut buf[..want]) {
            Ok(0) => return Err(read),
            Ok(n) => {
                read += n as u64;
                *left = left.saturating_sub(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(read),
            Err(_) => return Err(read),
        }
    }
    Ok(read)
}
