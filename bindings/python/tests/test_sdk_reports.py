"""SDK processes report their own counters to the collector (`sink.forward.report_interval`):
a Python process whose queue overflows drops events before they could reach the collector, and
the collector's /metrics shows those drops by app, host and reason — while the process runs, and
after it exited (its last report), when it is no longer counted among the live processes.

Needs `COLLECTOR_BIN` (or the debug build in target/).
"""

from __future__ import annotations

import json
import subprocess
import textwrap

from conftest import PYTHON, ROOT, Proc, binary, collector_metrics, wait_for

SCHEMAS = ROOT / "core" / "tests" / "data" / "schemas"

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import evlog
    url, schemas = sys.argv[1], sys.argv[2]
    sdk = evlog.Client(
        sink={"kind": "forward",
              "forward": {"url": url, "report_interval": "1s", "app": "py-report-test"}},
        schemas={"dir": schemas},
        batch={"max_age": "20ms"},
        queue={"capacity": 20},
        spool={"enabled": False},
    )
    # Log faster than the flush thread ships, until the queue was full a few times.
    i = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for _ in range(500):
            sdk.log("events", "page_view", {"url": f"/r/{i}", "user_id": i})
            i += 1
        if sdk.stats()['evlog_events_dropped_total{reason="queue_full"}'] >= 10:
            break
    assert sdk.flush(10)
    stats = sdk.stats()
    print(json.dumps({
        "accepted": stats["evlog_events_accepted_total"],
        "queue_full": stats['evlog_events_dropped_total{reason="queue_full"}'],
    }), flush=True)
    # Stay alive until the collector has a periodic report (the test closes stdin).
    sys.stdin.read()
    assert sdk.shutdown(5)
    """
)


def reported(url: str) -> tuple[float, float, float]:
    m = collector_metrics(url)
    pick = lambda name, extra="": sum(  # noqa: E731
        v for k, v in m.items()
        if k.startswith(name + "{") and 'app="py-report-test"' in k and extra in k
    )
    return (
        pick("evlog_sdk_events_dropped_total", 'reason="queue_full"'),
        pick("evlog_sdk_events_accepted_total"),
        pick("evlog_sdk_processes"),
    )


def test_a_python_process_queue_full_drops_show_at_the_collector(tmp_path):
    conf = tmp_path / "collector.toml"
    conf.write_text(
        f'[collector]\nlisten = "127.0.0.1:0"\nwal_dir = "{tmp_path / "wal"}"\n'
        'seal_interval = "20ms"\n'
        f'[sink]\nkind = "file"\n[sink.file]\ndir = "{tmp_path / "data"}"\n'
        f'[schemas]\ndir = "{SCHEMAS}"\n'
    )
    collector = Proc([binary("COLLECTOR_BIN", "evlog-collector"), "--config", str(conf)],
                     r"evlog-collector listening on (\S+)")
    url = f"http://{collector.match.group(1)}"
    child = subprocess.Popen(
        [PYTHON, "-c", CHILD, url, str(SCHEMAS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        counted = json.loads(child.stdout.readline())
        assert counted["queue_full"] >= 10
        live = (counted["queue_full"], counted["accepted"], 1.0)
        wait_for(lambda: reported(url) == live, timeout=20, what=f"the report {live}")
        child.stdin.close()
        assert child.wait(30) == 0
        # Its last report: the drops stay counted, the process is no longer live.
        ended = (counted["queue_full"], counted["accepted"], 0.0)
        wait_for(lambda: reported(url) == ended, timeout=20, what=f"the last report {ended}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        collector.stop()
