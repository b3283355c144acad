"""Run by tests/suites/20-python.sh in a fresh venv holding only the wheel build-wheel.sh built.

Proves the installed wheel works on its own (no source tree on sys.path, no maturin develop):
configure the file sink in a temporary directory, log one event, flush, read the row back.
"""

import json
import pathlib
import sys
import tempfile

import evlog

assert "site-packages" in evlog.__file__, evlog.__file__
with tempfile.TemporaryDirectory() as d:
    root = pathlib.Path(d)
    (root / "schemas" / "events").mkdir(parents=True)
    (root / "schemas" / "events" / "hello.json").write_text(
        json.dumps([{"name": "who", "type": "STRING", "mode": "REQUIRED"}])
    )
    evlog.configure(
        sink={"kind": "file", "file": {"dir": str(root / "out")}},
        schemas={"dir": str(root / "schemas")},
    )
    assert evlog.log("events", "hello", {"who": "wheel"}) is True
    assert evlog.flush(timeout=10) is True
    rows = [
        json.loads(line)
        for f in (root / "out").rglob("*.ndjson")
        for line in f.read_text().splitlines()
    ]
    assert [r["who"] for r in rows] == ["wheel"], rows
print("wheel ok:", sys.version.split()[0], evlog.__file__)
