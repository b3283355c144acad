//! Restarts under load refuse nothing (docs/operations.md, "Restarts"): the real binary with its
//! file sink is restarted every 2 s for ~20 s while plain HTTP/1.1 clients that never retry
//! post events, some opening a connection per request, some keeping one alive. Once the last
//! process has drained: no connection was refused or reset, every answer was 2xx, and every
//! acknowledged event is in the file sink's output exactly once.
//!
//! Two ways to restart: `SIGUSR2` (the collector starts its successor on its own socket), and a
//! harness doing what systemd's socket activation does (the test holds the listening socket and
//! passes it to each new process as fd 3 with `LISTEN_FDS`/`LISTEN_PID`; it alternates starting
//! the new process before stopping the old, and `systemctl restart`'s stop-then-start).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const LOAD: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_secs(2);
/// Bounds every wait for a process to start, hand over or exit.
const WAIT: Duration = Duration::from_secs(15);

/// What the clients saw.
#[derive(Default)]
struct Outcome {
    acked: Vec<String>,
    failures: Vec<String>,
    requests: u64,
}

/// One answer: status and whether the server closes the connection after it.
fn exchange(stream: &mut TcpStream, id: &str, keep_alive: bool) -> Result<(u16, bool), String> {
    let body = format!(
        r#"{{"namespace":"events","type":"transaction","id":"{id}","event":{{"user_id":1,"amount":"1.50"}}}}"#
    );
    let req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("closed after {} bytes of the answer", head.len())),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let len: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut rest = vec![0u8; len];
    stream
        .read_exact(&mut rest)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, header("connection:").is_some_and(|v| v == "close")))
}

/// A client thread: posts events until `stop`, never retrying; a connection per request, or
/// one kept alive until the server answers `Connection: close`.
fn client(addr: SocketAddr, name: String, keep_alive: bool, stop: Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    let mut conn: Option<TcpStream> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("{name}-{n}");
        n += 1;
        out.requests += 1;
        let stream = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&addr, WAIT) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(WAIT));
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(e) => {
                    out.failures
                        .push(format!("{id}: connect: {e} ({:?})", e.kind()));
                    continue;
                }
            },
        };
        let mut stream = stream;
        match exchange(&mut stream, &id, keep_alive) {
            Ok((202, close)) => {
                out.acked.push(id);
                if keep_alive && !close {
                    conn = Some(stream);
                }
            }
            Ok((status, _)) => out.failures.push(format!("{id}: status {status}")),
            Err(e) => out.failures.push(format!("{id}: {e}")),
        }
        // A rate, not a synchronisation: a connection per request must not run the machine
        // out of ephemeral ports (TIME_WAIT) within the run.
        if !keep_alive {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
    out
}

/// Runs the clients against `addr` while `restart` is called every [`EVERY`] for `load`;
/// returns what they saw and how many restarts ran.
fn under_load(addr: SocketAddr, load: Duration, mut restart: impl FnMut()) -> (Outcome, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = Arc::clone(&stop);
            let keep_alive = i % 2 == 1;
            let name = format!("{}{i}", if keep_alive { "ka" } else { "new" });
            std::thread::spawn(move || client(addr, name, keep_alive, stop))
        })
        .collect();
    let start = Instant::now();
    let mut restarts = 0;
    let mut next = start + EVERY;
    while next < start + load {
        // Paces the restarts; every wait inside `restart` is on a condition.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        restart();
        restarts += 1;
        next += EVERY;
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcome::default();
    for c in clients {
        let o = c.join().expect("client thread");
        all.acked.extend(o.acked);
        all.failures.extend(o.failures);
        all.requests += o.requests;
    }
    (all, restarts)
}

/// Asserts no failure, and every acknowledged id stored exactly once in each of `data`.
fn check(data: &[PathBuf], out: &Outcome, restarts: usize) {
    assert!(
        out.failures.is_empty(),
        "{} of {} requests failed across {restarts} restarts, first: {:?}",
        out.failures.len(),
        out.requests,
        &out.failures[..out.failures.len().min(10)]
    );
    assert!(
        out.acked.len() > 1000,
        "too little load: {}",
        out.acked.len()
    );
    for dir in data {
        let mut stored: HashMap<String, u32> = HashMap::new();
        for id in stored_ids(dir) {
            *stored.entry(id).or_default() += 1;
        }
        let missing: Vec<_> = out
            .acked
            .iter()
            .filter(|id| !stored.contains_key(*id))
            .collect();
        let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            missing.is_empty() && twice.is_empty(),
            "{}: {} acknowledged events missing (first {:?}), {} stored more than once \
             (first {:?})",
            dir.display(),
            missing.len(),
            missing.first(),
            twice.len(),
            twice.first()
        );
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(p, sig).expect("signal the collector");
}

/// Gone, or a zombie nobody reaped yet (a handed-over process's parent has exited).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Kills, when dropped, every collector the test started that still runs: a failed assertion
/// leaves no process behind (one holding the test's stderr would keep `cargo test` waiting).
#[derive(Default)]
struct Reaper(Mutex<Vec<u32>>);

impl Reaper {
    fn add(&self, pid: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            if !exited(pid) {
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::Kill);
                }
            }
        }
    }
}

fn config(root: &Path) -> PathBuf {
    let cfg = root.join("collector.toml");
    std::fs::write(&cfg, config_text(root, "", "")).expect("write config");
    cfg
}

/// Reads a process's stdout to its end on a thread, sending each "listening" address.
fn listening_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.trim().strip_prefix("evlog-collector listening on ") {
                let _ = tx.send(a.parse().expect("listening address"));
            }
        }
    });
    rx
}

#[test]
fn sigusr2_handoff_every_2s_refuses_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let cfg = config(root.path());
    sigusr2_handoffs(root.path(), &cfg, LOAD, &[root.path().join("data")]);
}

/// With two destinations each streamer reads the log through its destination's cursor, and
/// cursors exclude each other only inside one process: the streaming lock is what keeps the old
/// and the new process from delivering the same segment twice.
#[test]
fn sigusr2_handoff_with_two_destinations_delivers_once_to_each() {
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let tail = format!(
        r#"
[destinations.a]
kind = "file"
dir = {a:?}
[destinations.b]
kind = "file"
dir = {b:?}

[[routes]]
tables = ["events.*"]
to = ["a", "b"]
"#
    );
    let cfg = root.path().join("collector.toml");
    std::fs::write(&cfg, destinations_text(root.path(), "", &tail)).expect("write config");
    sigusr2_handoffs(root.path(), &cfg, LOAD / 2, &[a, b]);
}

/// Starts the collector with `cfg`, hands it over with `SIGUSR2` every [`EVERY`] under load
/// for `load`, stops the last one and checks what `data` holds.
fn sigusr2_handoffs(root: &Path, cfg: &Path, load: Duration, data: &[PathBuf]) {
    let reaper = Reaper::default();
    let pid_file = root.join("collector.pid");
    let mut first = Command::new(env!("CARGO_BIN_EXE_evlog-collector"))
        .arg("--config")
        .arg(cfg)
        .arg("--pid-file")
        .arg(&pid_file)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn collector");
    reaper.add(first.id());
    // Every successor inherits this pipe as its stdout.
    let lines = listening_lines(first.stdout.take().expect("stdout"));
    let addr = lines.recv_timeout(WAIT).expect("the collector listens");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    assert!(wait_for(WAIT, || read_pid() == Some(first.id())));
    let mut pids = vec![first.id()];
    let (out, restarts) = under_load(addr, load, || {
        let old = *pids.last().expect("a pid");
        let t = Instant::now();
        signal(old, rustix::process::Signal::Usr2);
        let handed = wait_for(WAIT, || read_pid().is_some_and(|p| p != old) && exited(old));
        assert!(handed, "pid {old}: no handoff within {WAIT:?}");
        // For docs/operations.md: how long the old process lives on after the signal.
        eprintln!("handoff: pid {old} exited {:?} after SIGUSR2", t.elapsed());
        let new = read_pid().expect("pid file");
        reaper.add(new);
        assert_eq!(
            lines.recv_timeout(WAIT).expect("the successor's line"),
            addr,
            "the successor listens on the same address"
        );
        pids.push(new);
    });
    let last = *pids.last().expect("a pid");
    signal(last, rustix::process::Signal::Term);
    assert!(wait_for(WAIT, || exited(last)), "pid {last} did not exit");
    assert!(pids.iter().all(|p| exited(*p)));
    let _ = first.wait();
    let expected = (load.as_secs() / EVERY.as_secs()) as usize;
    assert!(restarts + 2 >= expected, "only {restarts} restarts");
    check(data, &out, restarts);
}

/// Starts the collector on the harness's socket the way systemd does: fd 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` its own pid (`exec` keeps the shell's pid).
fn activate(cfg: &Path, socket: &std::net::TcpListener, reaper: &Reaper) -> Child {
    // dup() leaves the copy inheritable; it is closed again once the child has it.
    let fd = rustix::io::dup(socket).expect("dup");
    let n = fd.as_raw_fd();
    // Moved to fd 3, the number systemd uses (it may already be 3: then it stays).
    let redirect = if n == 3 {
        String::new()
    } else {
        format!("3<&{n} {n}<&-")
    };
    // bash: dash takes single-digit fd numbers only.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$0\" \"$@\" {redirect}"
        ))
        .arg(env!("CARGO_BIN_EXE_evlog-collector"))
        .arg("--config")
        .arg(cfg)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn collector");
    drop(fd);
    reaper.add(child.id());
    let lines = listening_lines(child.stdout.take().expect("stdout"));
    let addr = lines.recv_timeout(WAIT).unwrap_or_else(|e| {
        let status = child.try_wait();
        panic!("the collector did not listen ({e}); exit: {status:?}")
    });
    assert_eq!(addr, socket.local_addr().expect("addr"));
    child
}

fn terminate(child: &mut Child) {
    signal(child.id(), rustix::process::Signal::Term);
    wait_exit(child);
}

fn wait_exit(child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "pid {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn socket_activation_restart_every_2s_refuses_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let cfg = config(root.path());
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let reaper = Reaper::default();
    let mut current = activate(&cfg, &socket, &reaper);
    let mut stopping: Vec<Child> = Vec::new();
    let mut n = 0;
    let (out, restarts) = under_load(addr, LOAD, || {
        n += 1;
        if n % 2 == 0 {
            // `systemctl restart`: the old one stops (drains, exits), then the new one starts;
            // meanwhile connections wait in the socket's queue.
            let t = Instant::now();
            terminate(&mut current);
            current = activate(&cfg, &socket, &reaper);
            // For docs/operations.md: how long connections wait in the socket's queue.
            eprintln!(
                "stop-then-start: no process accepted for up to {:?}",
                t.elapsed()
            );
        } else {
            // The new one first, then SIGTERM the old: both serve for a moment.
            let old = std::mem::replace(&mut current, activate(&cfg, &socket, &reaper));
            signal(old.id(), rustix::process::Signal::Term);
            stopping.push(old);
        }
    });
    terminate(&mut current);
    for mut c in stopping {
        wait_exit(&mut c);
    }
    assert!(restarts >= 8, "only {restarts} restarts");
    check(&[root.path().join("data")], &out, restarts);
}

#[test]
fn an_inherited_fd_that_is_not_one_listening_tcp_socket_stops_the_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let cfg = config(root.path());
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let connected = TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
    let conn_fd = rustix::io::dup(&connected).expect("dup");
    let n = conn_fd.as_raw_fd();
    let cases = [
        (
            "LISTEN_FDS=1",
            "3</dev/null".to_string(),
            "LISTEN_FDS=1: fd 3 is not a socket",
        ),
        (
            "LISTEN_FDS=1",
            String::new(),
            "LISTEN_FDS=1: fd 3 is not open",
        ),
        (
            "LISTEN_FDS=2",
            "3</dev/null".to_string(),
            "2 sockets passed",
        ),
        (
            "LISTEN_FDS=1",
            format!("3<&{n}"),
            "is a TCP socket that is not listening",
        ),
        (
            "EVLOG_LISTEN_FD=x",
            String::new(),
            "EVLOG_LISTEN_FD=x: not a file descriptor",
        ),
    ];
    for (var, redirect, expect) in cases {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "export {var} LISTEN_PID=$$; exec 3<&-; exec \"$0\" \"$@\" {redirect}"
            ))
            .arg(env!("CARGO_BIN_EXE_evlog-collector"))
            .arg("--config")
            .arg(&cfg)
            .env_clear()
            .output()
            .expect("run collector");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var} {redirect}: {stderr}");
        assert!(stderr.contains(expect), "{var} {redirect}: {stderr}");
        assert!(out.stdout.is_empty(), "{var} {redirect}: listened anyway");
    }
}
