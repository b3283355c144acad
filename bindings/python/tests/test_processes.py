"""Real processes: fork children, interpreter exit, gunicorn --preload with 4 workers."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import settled, wait_for

import evlog


def wait_child(pid: int, timeout: float = 60.0) -> int:
    """Exit code of a forked child, failing (and killing it) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not finish in {timeout}s")
        time.sleep(0.01)


def test_fork_children_log_exactly_once_and_never_duplicate_the_parents_queue(env):
    # A long max_age keeps the parent's events queued when it forks: the children inherit a
    # copy of that queue and must neither deliver it nor lose their own events.
    c = evlog.Client(**env.settings(batch={"max_age": "1h", "max_rows": 50000}))
    for i in range(1000):
        assert c.log("events", "t", {"worker": -1, "seq": i}, id=f"p-{i}")
    children = {}
    for k in range(3):
        pid = os.fork()
        if pid == 0:  # child
            code = 3
            try:
                ok = all(
                    c.log("events", "t", {"worker": k, "seq": i}, id=f"c{k}-{i}")
                    for i in range(500)
                )
                flushed = c.flush(30)
                s = c.stats()
                own = s["evlog_events_accepted_total"] == 500
                code = 0 if ok and flushed and own and settled(s) else 2
            finally:
                os._exit(code)
        children[k] = pid
    for k, pid in children.items():
        assert wait_child(pid) == 0, f"child {k} failed its own checks"
    assert c.flush(30)
    ids = [r["event_id"] for r in env.rows()]
    expected = {f"p-{i}" for i in range(1000)} | {
        f"c{k}-{i}" for k in range(3) for i in range(500)
    }
    assert len(ids) == len(expected), "an event was lost or stored twice"
    assert set(ids) == expected
    s = c.stats()
    assert s["evlog_events_accepted_total"] == 1000 and settled(s)
    c.shutdown(5)


def test_fork_child_gets_its_own_on_error_dispatcher(env, tmp_path):
    seen = []
    c = evlog.Client(on_error=lambda s: seen.append((os.getpid(), s)), **env.settings())
    # The parent's dispatcher is running before the fork.
    c.log("events", "missing_parent", {"n": 1})
    assert c.flush(10)
    wait_for(lambda: seen, what="parent callback")
    marker = tmp_path / "child-callback"
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            seen.clear()
            c.log("events", "missing_child", {"n": 1})
            c.flush(10)
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            if seen and seen[0][0] == os.getpid():
                marker.write_text(seen[0][1]["message"])
                code = 0
            else:
                code = 2
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    assert "missing_child" in marker.read_text()
    # The parent saw only its own summary.
    assert all(p == os.getpid() for p, _ in seen)
    assert all("missing_child" not in s["message"] for _, s in seen)
    c.shutdown(5)


def run_py(code: str, env_vars: dict, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    e.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_interpreter_exit_flushes_the_configured_client(env):
    # max_age of an hour: only the exit hook can deliver these in time.
    r = run_py(
        f"""
        import evlog
        evlog.configure(sink={{"file": {{"dir": {str(env.out)!r}}}}},
                        schemas={{"dir": {str(env.schemas)!r}}},
                        batch={{"max_age": "1h", "max_rows": 50000}})
        for i in range(5000):
            assert evlog.log("events", "t", {{"seq": i}}, id=f"x-{{i}}")
        """,
        {},
    )
    assert r.returncode == 0, r.stderr
    ids = {row["event_id"] for row in env.rows()}
    assert ids == {f"x-{i}" for i in range(5000)}


def test_interpreter_exit_flushes_the_default_client_from_the_environment(env):
    r = run_py(
        """
        import evlog
        for i in range(300):
            evlog.log("events", "t", {"seq": i})
        """,
        {**env.env_vars(), "EVLOG_BATCH_MAX_AGE": "1h"},
    )
    assert r.returncode == 0, r.stderr
    assert sorted(row["seq"] for row in env.rows()) == list(range(300))


NOT_CONFIGURED = 'evlog_events_dropped_total{reason="not_configured"}'
NOT_CALLED = "evlog.configure() was not called"


def test_log_without_a_working_configuration_says_so_once_and_drops_counted(env, tmp_path):
    # The default configuration in a directory without `schemas/`: log() must not raise into
    # the request, but the mistake is printed once (logger "evlog", stderr without logging set
    # up) with the key, the absolute path and the fix, and every event is counted as dropped.
    cwd = tmp_path / "app"
    cwd.mkdir()
    r = run_py(
        f"""
        import evlog
        for i in range(3):
            assert evlog.log("events", "t", {{"n": i}}) is False
        # Like any drop, these make the next flush() answer False (and only that one).
        assert evlog.flush(1) is False
        assert evlog.flush(1) is True
        s = evlog.stats()
        assert s[{NOT_CONFIGURED!r}] == 3, s
        assert s["evlog_events_accepted_total"] == 3, s
        assert s["evlog_events_delivered_total"] == 0, s
        assert s['evlog_events_dropped_total{{reason="queue_full"}}'] == 0, s
        # configure() still works afterwards, and the earlier drops stay counted.
        evlog.configure(sink={{"file": {{"dir": {str(env.out)!r}}}}},
                        schemas={{"dir": {str(env.schemas)!r}}})
        assert evlog.log("events", "t", {{"n": 7}}, id="after") is True
        assert evlog.flush(10)
        s = evlog.stats()
        assert s[{NOT_CONFIGURED!r}] == 3, s
        assert s["evlog_events_accepted_total"] == 4, s
        assert s["evlog_events_delivered_total"] == 1, s
        """,
        {},
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(NOT_CALLED) == 1, r.stderr
    tried = cwd / "schemas"
    for part in (
        "ConfigError: schemas.dir: cannot read the schema directory",
        f"{tried}: No such file or directory",
        "EVLOG_SCHEMAS_DIR",
        'evlog.configure(schemas={"dir": "path/to/schemas"}',
        NOT_CONFIGURED,
    ):
        assert part in r.stderr, (part, r.stderr)
    assert [row["event_id"] for row in env.rows()] == ["after"]


def test_unknown_evlog_environment_variable_is_reported_by_the_first_log(env):
    r = run_py(
        f"""
        import evlog
        assert evlog.log('events', 't', {{}}) is False
        assert evlog.log('events', 't', {{}}) is False
        assert evlog.stats()[{NOT_CONFIGURED!r}] == 2
        """,
        {**env.env_vars(), "EVLOG_BATCH_MAX_RWOS": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(NOT_CALLED) == 1, r.stderr
    assert "ConfigError" in r.stderr and "EVLOG_BATCH_MAX_RWOS" in r.stderr, r.stderr


# ---- gunicorn --preload, 4 workers ---------------------------------------------------------

APP = """
import os
import evlog

# Configured at import, in the master (--preload), before the workers are forked.
evlog.configure()

def app(environ, start_response):
    rid = environ["PATH_INFO"].lstrip("/")
    ok = evlog.log("events", "t", {"worker": os.getpid(), "s": rid}, id=rid)
    body = b"ok" if ok else b"dropped"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

REQUESTS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_gunicorn_preload_four_workers_every_event_stored_exactly_once(env, tmp_path):
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    e = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    e.update(env.env_vars())
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--preload", "-w", "4",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20", "app:app",
        ],
        cwd=tmp_path, env=e, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def up():
            try:
                return get(port, "/ready") == b"ok"
            except OSError:
                return False

        wait_for(up, timeout=30, what="gunicorn to answer")
        # evlog was configured in the master at import, but threads start only on a first
        # log(), which happens in workers: the master forks with no evlog thread.
        assert os.listdir(f"/proc/{server.pid}/task") == [str(server.pid)]
        ids = [f"r-{n}" for n in range(REQUESTS)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda rid: get(port, "/" + rid), ids))
        assert answers.count(b"ok") == REQUESTS
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise AssertionError("gunicorn hung at shutdown")
        log.close()
    assert code == 0, (tmp_path / "gunicorn.log").read_text()[-3000:]
    rows = env.rows()
    stored = [r["event_id"] for r in rows if r["event_id"] != "ready"]
    assert len(stored) == REQUESTS, f"{len(stored)} rows for {REQUESTS} requests"
    assert set(stored) == set(ids), "an event was lost or stored twice"
    workers = {r["worker"] for r in rows}
    assert len(workers) >= 2, f"expected several workers to serve, got {workers}"
    assert not env.rejected()
