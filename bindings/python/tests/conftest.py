"""Shared fixtures: a temp directory with schemas and a file sink, and row readers."""

from __future__ import annotations

import glob
import json
import os
import time
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
