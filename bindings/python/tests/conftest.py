"""Shared fixtures: a temp directory with schemas and a file sink, and row readers; the server
processes (collector, BigQuery test server) the end-to-end tests start."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# A table that takes typed columns (the rest of an event lands in `other`).
SCHEMA = [
    {"name": "n", "type": "INTEGER"},
    {"name": "s", "type": "STRING"},
    {"name": "ts", "type": "TIMESTAMP"},
    {"name": "day", "type": "DATE"},
    {"name": "amount", "type": "NUMERIC"},
    {"name": "raw", "type": "BYTES"},
    {"name": "f", "type": "FLOAT64"},
    {"name": "u", "type": "STRING"},
    {"name": "worker", "type": "INTEGER"},
    {"name": "seq", "type": "INTEGER"},
]


class Env:
    """A sandbox: schemas in `schemas/`, the file sink writes `out/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.schemas = root / "schemas"
        self.out = root / "out"
        (self.schemas / "events").mkdir(parents=True)
        (self.schemas / "events" / "t.json").write_text(json.dumps(SCHEMA))
        self.out.mkdir()

    def settings(self, **extra) -> dict:
        s = {
            "sink": {"kind": "file", "file": {"dir": str(self.out)}},
            "schemas": {"dir": str(self.schemas)},
            "batch": {"max_age": "50ms"},
        }
        for section, values in extra.items():
            s.setdefault(section, {}).update(values)
        return s

    def env_vars(self) -> dict:
        """The same settings as EVLOG_* variables (for subprocesses using the default client)."""
        return {
            "EVLOG_SINK_FILE_DIR": str(self.out),
            "EVLOG_SCHEMAS_DIR": str(self.schemas),
            "EVLOG_BATCH_MAX_AGE": "50ms",
        }

    def rows(self, table: str = "t") -> list[dict]:
        out = []
        for f in sorted(glob.glob(str(self.out / "events" / f"{table}*.ndjson"))):
            with open(f) as fh:
                out.extend(json.loads(line) for line in fh if line.strip())
        return out

    def rejected(self) -> list[dict]:
        f = self.out / "events" / "_evlog_rejected.ndjson"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def wait_for(cond, timeout: float = 10.0, what: str = "condition"):
    """Polls `cond` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def settled(stats: dict) -> bool:
    """accepted == delivered + rejected + dropped, nothing queued."""
    rejected = sum(v for k, v in stats.items() if k.startswith("evlog_events_rejected_total"))
    dropped = sum(v for k, v in stats.items() if k.startswith("evlog_events_dropped_total"))
    return (
        stats["evlog_events_accepted_total"]
        == stats["evlog_events_delivered_total"] + rejected + dropped
        and stats["evlog_queue_events"] == 0
    )


ROOT = Path(__file__).resolve().parents[3]
PYTHON = os.environ.get("EVLOG_TEST_PYTHON") or __import__("sys").executable


# ---- server processes (the collector, the BigQuery test server) ----------------------------


def binary(env: str, name: str) -> str:
    path = os.environ.get(env) or str(
        Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / name
    )
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} not found: run `cargo build -p evlog-collector -p evlog-tests` or set {env}"
        )
    return path


class Proc:
    """A server process (the BigQuery test server, the collector), started and waited for (with
    a deadline) until it prints `pattern` on its stdout; stop() sends SIGTERM (a graceful stop)."""

    def __init__(self, argv: list[str], pattern: str, timeout: float = 60.0) -> None:
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        found: list[re.Match] = []
        ready = threading.Event()

        def read() -> None:
            # Reads stdout to its end, so the process never blocks on a full pipe.
            for line in self.p.stdout:
                m = re.search(pattern, line)
                if m and not found:
                    found.append(m)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not found:
            self.stop()
            raise AssertionError(f"{argv[0]} did not print {pattern!r} within {timeout}s")
        self.match = found[0]

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without draining."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def collector_metrics(url: str) -> dict:
    out = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
    return out
