"""Several collectors behind nginx (docs/operations.md, "Several collectors"): the Python SDK, 4
threads, 100,000 events in forward mode to a real nginx that balances 3 collector processes; one
collector is killed with SIGKILL during the load and started again on the same port and
write-ahead log (what it acknowledged is delivered after the restart).

What "0 lost, counts reconcile" means (the file sink keeps every copy it is given; BigQuery
would drop repeated insertIds):
- every id logged is in the collectors' file outputs at least once, and nothing else is;
- a second copy only comes from a request whose answer was lost: the killed collector had it in
  its log when it died, nginx answered the SDK 502, and the SDK sent it again (nginx does not
  resend a POST that reached an upstream: no `non_idempotent`). So every duplicated id has a copy
  in the killed collector's output, and there are at most as many duplicates as events the SDK
  retried;
- the SDK: accepted = delivered = 100,000, nothing dropped or rejected;
- the collectors: lines stored - duplicates = the SDK's delivered; each surviving collector's
  /metrics says accepted = delivered = the lines it stored (the killed one's counters restart with
  its process, so its lines stand for its accepted total).

Needs nginx (tests/suites/20-python.sh setup installs it) and `COLLECTOR_BIN`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, Proc, binary, collector_metrics, wait_for

import evlog

SCHEMAS = ROOT / "core" / "tests" / "data" / "schemas"
THREADS, PER_THREAD = 4, 25_000
TOTAL = THREADS * PER_THREAD
RATE = 4_000  # events per second per thread: the load lasts about 6 s
DAY0_MS = 1795341600000  # 2026-11-22T10:00:00Z
VICTIM = 1


def free_port() -> int:
    """A free loopback port below the ephemeral range, so that nothing binding port 0 takes it
    while its collector is down."""
    for _ in range(1000):
        port = random.randint(20000, 29999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


NGINX_CONF = """{user}
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
{upstream}
  server {{
    listen 127.0.0.1:{port};
    location = /nginx-health {{ return 204; }}
{location}
  }}
}}
"""


def docs_block(heading: str) -> str:
    """The nginx block under `heading` in docs/operations.md: the test runs what the page shows."""
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index(heading)
    body = text[start:].split("```nginx\n", 1)[1].split("```", 1)[0]
    return body


class Nginx:
    def __init__(self, root: Path, collectors: list[int]) -> None:
        self.dir = root / "nginx"
        self.dir.mkdir()
        self.port = free_port()
        servers = "\n".join(
            f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in collectors
        )
        upstream = docs_block("<!-- nginx upstream -->").replace(
            "    server 10.0.0.1:8080 max_fails=1 fail_timeout=2s;\n"
            "    server 10.0.0.2:8080 max_fails=1 fail_timeout=2s;\n"
            "    server 10.0.0.3:8080 max_fails=1 fail_timeout=2s;",
            servers,
        )
        assert servers in upstream, "docs/operations.md's upstream lists 3 servers as expected"
        location = docs_block("<!-- nginx location -->")
        conf = NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            dir=self.dir,
            port=self.port,
            upstream=upstream,
            location=location,
        )
        (self.dir / "nginx.conf").write_text(conf)
        self.p = subprocess.Popen(
            ["nginx", "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "nginx-error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

        def up():
            try:
                with urllib.request.urlopen(f"{self.url}/nginx-health", timeout=2) as r:
                    return r.status == 204
            except OSError:
                assert self.p.poll() is None, (self.dir / "nginx-error.log").read_text()
                return False

        wait_for(up, timeout=20, what="nginx")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Collector:
    """A collector process with its own port, write-ahead log and file sink directory."""

    def __init__(self, root: Path, i: int) -> None:
        self.dir = root / f"collector-{i}"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.dir / "collector.toml"
        self.conf.write_text(
            f'[collector]\nwal_dir = "{self.dir / "wal"}"\nseal_interval = "20ms"\n'
            'fsync = "interval"\nfsync_interval = "2ms"\n'
            f'[sink]\nkind = "file"\n[sink.file]\ndir = "{self.dir / "data"}"\n'
            '[batch]\nmax_rows = 500\nmax_age = "50ms"\n'
            f'[schemas]\ndir = "{SCHEMAS}"\n'
        )
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = Proc(
            [binary("COLLECTOR_BIN", "evlog-collector"), "--config", str(self.conf),
             "--listen", f"127.0.0.1:{self.port}"],
            r"evlog-collector listening on (\S+)",
        )

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc = None

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def metrics(self) -> dict:
        return collector_metrics(self.url)

    def settled(self) -> bool:
        m = self.metrics()

        def total(name: str) -> float:
            return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))

        done = sum(total(f"evlog_events_{o}_total") for o in ("delivered", "rejected", "dropped"))
        return done >= m.get("evlog_events_accepted_total", 0)

    def stored_ids(self) -> list[str]:
        ids = []
        events = self.dir / "data" / "events"
        for f in sorted(events.glob("*.ndjson")) if events.exists() else []:
            assert not f.name.startswith("_evlog_rejected"), f.read_text()[:500]
            with open(f) as fh:
                ids.extend(json.loads(line)["event_id"] for line in fh if line.strip())
        return ids


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_sdk_to_nginx_to_three_collectors_one_killed_and_restarted(tmp_path):
    started = time.monotonic()
    collectors: list[Collector] = []
    nginx = None
    try:
        collectors = [Collector(tmp_path, i) for i in range(3)]
        nginx = Nginx(tmp_path, [c.port for c in collectors])
        sdk = evlog.Client(
            sink={"kind": "forward", "forward": {"url": nginx.url, "timeout": "10s"}},
            schemas={"dir": str(SCHEMAS)},
            batch={"max_rows": 500, "max_age": "50ms"},
            queue={"capacity": 200_000},
            retry={"base": "20ms", "cap": "500ms", "max_attempts": 10},
            spool={"dir": str(tmp_path / "spool")},
        )
        logged = [0] * THREADS
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                t0 = time.monotonic()
                for i in range(PER_THREAD):
                    ok = sdk.log("events", "page_view", {"url": f"/t{t}/{i}", "user_id": i},
                                 id=f"p{t}-{i:05d}", time=DAY0_MS)
                    assert ok, i
                    logged[t] = i + 1
                    # Pacing, not synchronisation: the load lasts long enough to kill in it.
                    if i % 500 == 499:
                        due = t0 + (i + 1) / RATE
                        if due > time.monotonic():
                            time.sleep(due - time.monotonic())
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        with sdk:
            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for th in threads:
                th.start()
            wait_for(lambda: sum(logged) >= TOTAL * 3 // 10 or errors, 60, "30% logged")
            collectors[VICTIM].kill()
            wait_for(lambda: sum(logged) >= TOTAL * 6 // 10 or errors, 60, "60% logged")
            collectors[VICTIM].start()
            for th in threads:
                th.join(60)
                assert not th.is_alive(), "a logging thread did not finish"
            assert not errors, errors
            assert sdk.flush(60), sdk.stats()
            s = sdk.stats()
        assert s["evlog_events_accepted_total"] == TOTAL, s
        assert s["evlog_events_delivered_total"] == TOTAL, s
        dropped = {k: v for k, v in s.items() if k.startswith("evlog_events_dropped_total") and v}
        rejected = {k: v for k, v in s.items() if k.startswith("evlog_events_rejected_total") and v}
        assert not dropped and not rejected, (dropped, rejected)
        retried = s["evlog_events_retried_total"]

        for c in collectors:
            wait_for(c.settled, 30, f"collector {c.url} drained")
        stored = [c.stored_ids() for c in collectors]
        for i, c in enumerate(collectors):
            if i == VICTIM:
                continue
            m = c.metrics()
            assert m["evlog_events_accepted_total"] == len(stored[i]), (i, m)
            assert m["evlog_events_delivered_total"] == len(stored[i]), (i, m)
    finally:
        if nginx:
            nginx.stop()
        for c in collectors:
            c.stop()

    copies = Counter(id_ for ids in stored for id_ in ids)
    expected = {f"p{t}-{i:05d}" for t in range(THREADS) for i in range(PER_THREAD)}
    lost = expected - copies.keys()
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:5]}"
    assert copies.keys() == expected, "only the ids logged are stored"
    lines = sum(len(ids) for ids in stored)
    duplicates = lines - TOTAL
    in_victim = set(stored[VICTIM])
    unexplained = [i for i, n in copies.items() if n > 1 and i not in in_victim]
    assert not unexplained, f"duplicates without a lost answer: {unexplained[:5]}"
    assert duplicates <= retried, f"{duplicates} duplicates, {retried} events sent again"
    assert stored[VICTIM], "the killed collector took part in the load"
    assert lines - duplicates == s["evlog_events_delivered_total"]
    print(f"\nnginx → 3 collectors: {lines} lines for {TOTAL} events ({duplicates} duplicates "
          f"from lost answers; {retried} events retried by the SDK); per collector "
          f"{[len(x) for x in stored]}; {time.monotonic() - started:.1f}s")
