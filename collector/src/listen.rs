//! Where the listening socket comes from, and how a running collector hands it to a successor
//! without refusing a connection (see `docs/operations.md`, "Restarts").
//!
//! [`Inherited::take`] (called once, before the runtime starts threads) looks, in this order, for:
//! 1. **systemd socket activation** (the `sd_listen_fds` protocol): `LISTEN_PID` is this
//!    process and `LISTEN_FDS` is 1: the socket is fd 3. Another count is an error (the
//!    collector serves one socket), and so is a `LISTEN_PID` that is not a number.
//! 2. **A handoff from a predecessor**: `EVLOG_LISTEN_FD=<n>` names the inherited socket and
//!    `EVLOG_READY_FD=<n>` the pipe on which this process says it listens ([`notify_ready`]).
//!
//! Either way the variables are removed from the environment, so nothing this process starts
//! takes the socket for its own, and the fd must be an open, listening TCP socket (IPv4 or
//! IPv6): anything else is an error naming the variable and what the fd is. Without an
//! inherited socket, [`bind`] binds `collector.listen` with `SO_REUSEADDR` and a listen backlog
//! of [`BACKLOG`]: connections that arrive while no process accepts (a `systemctl restart`
//! between the old process's exit and the new one's start) wait in that queue, never refused.
//!
//! **Handoff** ([`Handoff`], `SIGUSR2`): the running collector starts its successor (the same
//! program path and arguments it was started with, so a binary replaced on disk is the one
//! started) with a duplicate of its listening socket and a pipe, and keeps serving. The
//! successor checks its configuration, takes the socket, prints its "listening" line and
//! writes one byte to the pipe; only then does the old process stop accepting and drain. Both
//! accept on the *same* socket meanwhile, so its queue is never closed and no connection in it
//! is reset (unlike two `SO_REUSEPORT` sockets, where closing one resets what waits in its
//! queue). A successor that fails (exits, or is not ready within [`READY_TIMEOUT`]) is stopped
//! and reaped, and the old process goes on serving: a bad configuration or binary never takes
//! the service down. Handing the write-ahead log over is the other half (module `restart`).

use std::ffi::OsString;
use std::io::Read as _;
use std::net::TcpListener as StdListener;
use std::os::fd::{AsFd, AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::net::{sockopt, AddressFamily, SocketType};

/// systemd's variables (`sd_listen_fds(3)`).
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;
/// The socket a predecessor handed over.
pub const LISTEN_FD_VAR: &str = "EVLOG_LISTEN_FD";
/// The pipe on which the successor says it listens.
pub const READY_FD_VAR: &str = "EVLOG_READY_FD";

/// Listen backlog when the collector binds itself (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4). It holds the connections that
/// arrive while nobody accepts: a slow accept loop, or the gap of a restart without handoff.
pub const BACKLOG: u32 = 4096;

/// How long the old process waits for its successor to say it listens: loading schemas and
/// checking a sink's credentials take seconds at most.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the listening socket cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// An environment variable names no usable socket.
    #[error("{var}={value}: {why}")]
    Inherited {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// Binding `collector.listen` failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the socket came from (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// systemd socket activation.
    Systemd,
    /// A predecessor's handoff.
    Handoff,
}

/// A socket (and readiness pipe) this process inherited; see the module docs.
#[derive(Debug, Default)]
pub struct Inherited {
    listener: Option<(StdListener, Source)>,
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the inherited socket and pipe named by the environment, if any, and removes the
    /// variables. Call it before other threads start (it changes the environment).
    pub fn take() -> Result<Self, ListenError> {
        let get = |k: &str| std::env::var(k).ok();
        let (fds, pid, handed, ready) = (
            get(LISTEN_FDS),
            get(LISTEN_PID),
            get(LISTEN_FD_VAR),
            get(READY_FD_VAR),
        );
        for k in [
            LISTEN_FDS,
            LISTEN_PID,
            LISTEN_FDNAMES,
            LISTEN_FD_VAR,
            READY_FD_VAR,
        ] {
            std::env::remove_var(k);
        }
        let mut out = Self::default();
        if let (Some(fds), Some(pid)) = (fds, pid) {
            let err = |var, value: &str, why: String| ListenError::Inherited {
                var,
                value: value.to_string(),
                why,
            };
            let ours = pid
                .trim()
                .parse::<u32>()
                .map_err(|e| err(LISTEN_PID, &pid, format!("not a process id ({e})")))?
                == std::process::id();
            // Another process's variables (inherited through a shell, say): not ours to take.
            if ours {
                match fds.trim().parse::<u32>() {
                    Ok(1) => {}
                    Ok(n) => {
                        return Err(err(
                            LISTEN_FDS,
                            &fds,
                            format!(
                                "{n} sockets passed; the collector serves exactly one (one \
                                 ListenStream= in the .socket unit)"
                            ),
                        ))
                    }
                    Err(e) => return Err(err(LISTEN_FDS, &fds, format!("not a count ({e})"))),
                }
                let fd = own_fd(LISTEN_FDS, &fds, SD_LISTEN_FDS_START)?;
                out.listener = Some((listening_tcp(LISTEN_FDS, &fds, fd)?, Source::Systemd));
            }
        }
        if let Some(v) = handed {
            if out.listener.is_some() {
                return Err(ListenError::Inherited {
                    var: LISTEN_FD_VAR,
                    value: v,
                    why: "set together with systemd's LISTEN_FDS; only one may pass the socket"
                        .into(),
                });
            }
            let fd = own_fd(LISTEN_FD_VAR, &v, parse_fd(LISTEN_FD_VAR, &v)?)?;
            out.listener = Some((listening_tcp(LISTEN_FD_VAR, &v, fd)?, Source::Handoff));
        }
        if let Some(v) = ready {
            out.ready = Some(own_fd(READY_FD_VAR, &v, parse_fd(READY_FD_VAR, &v)?)?);
        }
        Ok(out)
    }

    /// Where the socket came from, when inherited.
    pub fn source(&self) -> Option<Source> {
        self.listener.as_ref().map(|(_, s)| *s)
    }

    /// The inherited socket, or `addr` bound (see [`bind`]); and the readiness pipe to answer
    /// with [`notify_ready`] once this process is ready to serve. Call inside the runtime.
    pub fn listener(
        self,
        addr: std::net::SocketAddr,
    ) -> Result<(tokio::net::TcpListener, Ready), ListenError> {
        let listener = match self.listener {
            Some((l, source)) => {
                let var = match source {
                    Source::Systemd => LISTEN_FDS,
                    Source::Handoff => LISTEN_FD_VAR,
                };
                let value = l.as_raw_fd().to_string();
                let err = |e: std::io::Error| ListenError::Inherited {
                    var,
                    value: value.clone(),
                    why: e.to_string(),
                };
                l.set_nonblocking(true).map_err(err)?;
                tokio::net::TcpListener::from_std(l).map_err(err)?
            }
            None => bind(addr)?,
        };
        Ok((listener, Ready(self.ready)))
    }
}

/// The predecessor's readiness pipe, if this process was started by a handoff.
#[derive(Debug)]
pub struct Ready(Option<OwnedFd>);

/// Tells the predecessor (if any) that this process listens: it then stops accepting and
/// drains. Call after the "listening" line is printed, right before serving.
pub fn notify_ready(ready: Ready) {
    if let Some(fd) = ready.0 {
        let mut f = std::fs::File::from(fd);
        // A predecessor that has gone (killed meanwhile) cannot be told; nothing to do.
        let _ = std::io::Write::write_all(&mut f, b"R");
    }
}

/// Binds `addr` with `SO_REUSEADDR` (a restart finds the port's old connections in
/// TIME_WAIT) and a listen backlog of [`BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    let err = |source| ListenError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

fn parse_fd(var: &'static str, value: &str) -> Result<RawFd, ListenError> {
    match value.trim().parse::<RawFd>() {
        Ok(fd) if fd > 2 => Ok(fd),
        _ => Err(ListenError::Inherited {
            var,
            value: value.to_string(),
            why: "not a file descriptor number above 2".into(),
        }),
    }
}

/// Takes ownership of an inherited fd after checking (through `/proc/self/fd`) that it is
/// open, so a wrong number is an error instead of undefined behaviour.
fn own_fd(var: &'static str, value: &str, fd: RawFd) -> Result<OwnedFd, ListenError> {
    // Our own fds at startup are 0-2 and the runtime's are made later: an fd open now was
    // inherited, and this process owns it from here on.
    std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| ListenError::Inherited {
        var,
        value: value.to_string(),
        why: format!("fd {fd} is not open in this process ({e})"),
    })?;
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open (checked above) and, inherited by exec, owned by nothing else in
    // this process: `take` runs once, before anything else opens or takes fds by number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}

/// Checks that `fd` is a listening TCP socket.
fn listening_tcp(var: &'static str, value: &str, fd: OwnedFd) -> Result<StdListener, ListenError> {
    let err = |why: String| ListenError::Inherited {
        var,
        value: value.to_string(),
        why,
    };
    let what = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let domain = sockopt::get_socket_domain(&fd).map_err(|e| {
        err(format!(
            "fd {} is not a socket ({what}): {e}",
            fd.as_raw_fd()
        ))
    })?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(err(format!(
            "fd {} is not an IPv4 or IPv6 socket (address family {}); the collector serves TCP",
            fd.as_raw_fd(),
            domain.as_raw()
        )));
    }
    let kind = sockopt::get_socket_type(&fd).map_err(|e| err(e.to_string()))?;
    if kind != SocketType::STREAM {
        return Err(err(format!(
            "fd {} is not a stream (TCP) socket; use ListenStream= in the .socket unit",
            fd.as_raw_fd()
        )));
    }
    if !sockopt::get_socket_acceptconn(&fd).map_err(|e| err(e.to_string()))? {
        return Err(err(format!(
            "fd {} is a TCP socket that is not listening (connected, or never listen()ed)",
            fd.as_raw_fd()
        )));
    }
    Ok(StdListener::from(fd))
}

/// How a running collector starts its successor on `SIGUSR2` (see the module docs).
#[derive(Debug)]
pub struct Handoff {
    /// The listening socket (a duplicate: the accept loop owns the other).
    socket: OwnedFd,
    program: PathBuf,
    args: Vec<OsString>,
}

impl Handoff {
    /// Remembers the program and arguments this process was started with (call at startup:
    /// later, `/proc/self/exe` names a binary replaced on disk as deleted) and duplicates
    /// `listener`.
    pub fn new(
        listener: &tokio::net::TcpListener,
        program: PathBuf,
        args: Vec<OsString>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            socket: listener.as_fd().try_clone_to_owned()?,
            program,
            args,
        })
    }

    /// Resolves once a successor started on `SIGUSR2` says it listens; until then it starts
    /// one per signal (one at a time) and reports on stderr each one that fails. Dropping the
    /// future (or `self`) closes this process's duplicate of the socket.
    pub async fn successor_listening(self) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            return std::future::pending().await;
        };
        let this = std::sync::Arc::new(self);
        while usr2.recv().await.is_some() {
            let h = std::sync::Arc::clone(&this);
            let outcome = tokio::task::spawn_blocking(move || h.start_successor())
                .await
                .unwrap_or_else(|e| Err(format!("the handoff task failed: {e}")));
            match outcome {
                Ok(pid) => {
                    eprintln!(
                        "evlog-collector: successor {pid} listens; pid {} stops accepting and drains",
                        std::process::id()
                    );
                    return;
                }
                Err(e) => eprintln!("evlog-collector: SIGUSR2 handoff failed, still serving: {e}"),
            }
        }
        std::future::pending().await
    }

    /// Starts the successor and waits (blocking) until it is ready; its pid, or why not.
    fn start_successor(&self) -> Result<u32, String> {
        // Inheritable duplicates (dup() clears close-on-exec), closed again right after the
        // spawn: the originals stay close-on-exec, so nothing else this process starts gets them.
        let socket = rustix::io::dup(&self.socket).map_err(|e| format!("dup the socket: {e}"))?;
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("pipe: {e}"))?;
        let write = rustix::io::dup(&write).map_err(|e| format!("dup the pipe: {e}"))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env(LISTEN_FD_VAR, socket.as_raw_fd().to_string())
            .env(READY_FD_VAR, write.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        drop((socket, write));
        let pid = child.id();
        // The child's end of the pipe closes when it writes its byte, or exits: EOF without
        // the byte is a failed start. A child neither ready nor gone is killed at the timeout
        // (by a watcher thread; killing it closes the pipe and ends the read).
        let (done, timed) = std::sync::mpsc::channel::<()>();
        let watcher = std::thread::spawn(move || {
            timed.recv_timeout(READY_TIMEOUT).is_err()
                && rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
                    rustix::process::kill_process(p, rustix::process::Signal::Kill).is_ok()
                })
        });
        let mut byte = [0u8; 1];
        let got = std::fs::File::from(read).read(&mut byte);
        let _ = done.send(());
        let killed = watcher.join().unwrap_or(false);
        match got {
            Ok(1) => Ok(pid),
            other => {
                let status = child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                Err(if killed {
                    format!("successor {pid} was not ready within {READY_TIMEOUT:?}; killed")
                } else {
                    format!("successor {pid} ended before listening ({status}; read: {other:?})")
                })
            }
        }
    }
}
