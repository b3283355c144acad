"""Interpreter exit with an on_error callback: no abort, under CPU load, many times over.

CPython ends a daemon thread that retakes the GIL during finalization with pthread_exit (a
forced unwind); a dispatcher thread inside a pyo3 call at that moment made glibc abort the
process ("FATAL: exception not rethrown", SIGABRT) in a few runs out of twenty. These tests run
the script of the report 200 times, and 200 gunicorn worker exits, while two busy loops compete
for the CPUs, and require every process to exit cleanly and every summary to be delivered.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import wait_for

RUNS = 200
PARALLEL = 8

# Logs to a table without a schema (a rejection, so the callback fires), then ends. `configure`
# flushes and shuts down explicitly, as in the report; `client` leaves everything to the exit
# hook, whose shutdown produces the summary that must still reach the callback.
SCRIPT = """
import sys
import evlog

settings = dict(sink={{"kind": "file", "file": {{"dir": {out!r}}}}},
                schemas={{"dir": {schemas!r}}}, batch={{"max_age": "20ms"}})

def on_error(summary):
    print(summary["outcome"], summary["reason"], summary["count"], flush=True)

if sys.argv[1] == "configure":
    evlog.configure(on_error=on_error, **settings)
    assert evlog.log("events", "no_such_table", {{"n": 1}})
    assert evlog.flush(10)
    assert evlog.shutdown(10)
else:
    c = evlog.Client(on_error=on_error, **settings)
    assert c.log("events", "no_such_table", {{"n": 1}})
"""


@pytest.fixture
def cpu_load():
    """Two busy loops for the test's duration (each also ends on its own after 3 minutes)."""
    loop = "import time\nend = time.monotonic() + 180\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def clean_env(extra: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    e.update(extra or {})
    return e


def describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def test_exit_with_on_error_never_aborts_under_load(env, tmp_path, cpu_load):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(out=str(env.out), schemas=str(env.schemas))))
    e = clean_env()

    def run(i: int) -> tuple[str, subprocess.CompletedProcess]:
        mode = "configure" if i % 2 == 0 else "client"
        r = subprocess.run(
            [sys.executable, str(script), mode],
            env=e, capture_output=True, text=True, timeout=60,
        )
        return mode, r

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(run, range(RUNS)))

    failed = [
        f"{mode}: {describe(r.returncode)}: {r.stderr.strip()[-300:]}"
        for mode, r in results
        if r.returncode != 0
    ]
    assert not failed, f"{len(failed)} of {RUNS} runs failed:\n" + "\n".join(failed[:5])
    assert not [r for _, r in results if "FATAL" in r.stderr]
    # The callback heard of the rejection in every run, including the runs where only the exit
    # hook's shutdown produced it (the dispatcher is joined after delivering, not abandoned).
    undelivered = [mode for mode, r in results if r.stdout != "rejected unknown_table 1\n"]
    assert not undelivered, f"{len(undelivered)} runs without the summary: {undelivered[:5]}"


# ---- gunicorn workers exiting (max_requests) -----------------------------------------------

APP = """
import os
import evlog

def on_error(summary):
    pass

# In the master (--preload); each worker's first log() starts that worker's dispatcher.
evlog.configure(on_error=on_error)

def app(environ, start_response):
    # An unknown table: every request's event is rejected, so the callback runs in every worker.
    evlog.log("events", "no_such_table", {"worker": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""

WORKER_EXITS = 200
MAX_REQUESTS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int) -> bytes | None:
    """One request; None when no worker accepted it in time (one is being replaced)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    except OSError:
        return None
    finally:
        conn.close()


def test_gunicorn_workers_exiting_with_on_error_never_abort_under_load(env, tmp_path, cpu_load):
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--preload", "-w", "4",
            "--max-requests", str(MAX_REQUESTS), "--log-level", "info",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20", "app:app",
        ],
        cwd=tmp_path, env=clean_env(env.env_vars()), stdout=log, stderr=subprocess.STDOUT,
    )

    def exits() -> int:
        return log_path.read_text().count("Worker exiting")

    try:
        wait_for(lambda: get(port) == b"ok", timeout=30, what="gunicorn to answer")
        # Requests until WORKER_EXITS workers have exited (each exits after MAX_REQUESTS),
        # bounded in count, and in time by progress: a busy machine only makes it slower, so it
        # fails when no worker exited for 60 s (stuck), not after a fixed total.
        last, last_at = 0, time.monotonic()
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while (done := exits()) < WORKER_EXITS:
                if done != last:
                    last, last_at = done, time.monotonic()
                assert time.monotonic() - last_at < 60, f"no worker exit for 60 s ({done} so far)"
                assert sent < WORKER_EXITS * MAX_REQUESTS * 3, "requests without worker exits"
                list(pool.map(lambda _: get(port), range(8)))
                sent += 8
    finally:
        # A worker still finalizing (past Python's signal handlers) when the master passes our
        # SIGTERM on dies of it: that is gunicorn stopping, not a crash, so it is allowed after
        # this point only.
        stopped_at = len(log_path.read_text())
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise AssertionError("gunicorn hung at shutdown")
        log.close()
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    # The master logs every worker that died by a signal or exited with an error code.
    death = r"Worker \(pid:\d+\) (?:was sent SIG\w+|exited with code \d+)"
    died = re.findall(death, text[:stopped_at]) + [
        d for d in re.findall(death, text[stopped_at:]) if not d.endswith("SIGTERM")
    ]
    booted = text.count("Booting worker")
    assert not died, f"{len(died)} of {booted} workers died: {died[:5]}"
    assert "FATAL" not in text
    assert exits() >= WORKER_EXITS
