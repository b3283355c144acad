"""Median µs per call: evlog.log() vs analytics-python track() vs posthog capture().

Same process, same machine, same 6-field event. Each library runs as in production: its
background thread live and shipping. evlog validates every event against a schema and hands it
to the null sink; analytics-python and posthog post their batches to a local HTTP sink on
127.0.0.1 (a subprocess answering 200), so no traffic leaves the machine.

Rows marked "send=False" are the same calls with sending off (message building only, nothing
queued, no background thread competing for the GIL): the competitors' best case.

Timing: ROUNDS rounds of BATCH calls each; a round's time / BATCH is one sample; the table shows
the median sample. Between rounds (untimed) each client flushes, so no queue ever fills (a full
queue would make calls cheaper by dropping). Run through `bench/run.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENT = {
    "user_id": 42,
    "url": "/checkout/confirm",
    "amount": 19.99,
    "currency": "EUR",
    "logged_in": True,
    "items": 3,
}
SCHEMA = [
    {"name": "user_id", "type": "INTEGER"},
    {"name": "url", "type": "STRING"},
    {"name": "amount", "type": "FLOAT64"},
    {"name": "currency", "type": "STRING"},
    {"name": "logged_in", "type": "BOOL"},
    {"name": "items", "type": "INTEGER"},
]


def serve_sink() -> None:
    """The local HTTP sink (run in a subprocess): reads each request, answers 200 {}."""

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            body = b'{"status": "Ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST  # noqa: N815

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def measure(call, flush, rounds: int, batch: int) -> list[float]:
    for _ in range(batch):  # warm up
        call()
    flush()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            call()
        t1 = time.perf_counter_ns()
        samples.append((t1 - t0) / batch / 1000.0)
        flush()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        serve_sink()
        return

    import evlog

    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(sink.stdout.readline())
        host = f"http://127.0.0.1:{port}"
        results = {}

        tmp = tempfile.mkdtemp()
        os.makedirs(os.path.join(tmp, "bench"))
        with open(os.path.join(tmp, "bench", "checkout.json"), "w") as f:
            json.dump(SCHEMA, f)
        # The module-level default client, as applications use it.
        ev = evlog.configure(sink={"kind": "null"}, schemas={"dir": tmp})
        refused = []

        def ev_call(log=evlog.log, e=EVENT):
            if not log("bench", "checkout", e):
                refused.append(1)

        results["evlog.log()"] = measure(ev_call, lambda: ev.flush(60), args.rounds, args.batch)
        s = ev.stats()
        assert not refused, f"{len(refused)} evlog events refused (queue full?)"
        assert s["evlog_events_delivered_total"] == s["evlog_events_accepted_total"], s
        ev.shutdown(10)

        import segment.analytics as segment

        seg = segment.Client(
            "bench-write-key", host=host, max_queue_size=10 * args.batch, max_retries=1
        )
        results["analytics-python track()"] = measure(
            lambda: seg.track(user_id="u42", event="checkout", properties=EVENT),
            seg.flush,
            args.rounds,
            args.batch,
        )
        seg.shutdown()
        # Lower bound: send=False returns before the queue (message building and checks only,
        # no consumer thread competing for the GIL).
        seg_off = segment.Client("bench-write-key", host=host, send=False)
        results["track(), send=False"] = measure(
            lambda: seg_off.track(user_id="u42", event="checkout", properties=EVENT),
            lambda: None,
            args.rounds,
            args.batch,
        )

        import posthog

        ph = posthog.Posthog(
            "bench-key", host=host, max_queue_size=10 * args.batch, max_retries=1,
            enable_local_evaluation=False,
        )
        results["posthog capture()"] = measure(
            lambda: ph.capture("checkout", distinct_id="u42", properties=EVENT),
            ph.flush,
            args.rounds,
            args.batch,
        )
        ph.shutdown()
        ph_off = posthog.Posthog("bench-key", host=host, send=False, enable_local_evaluation=False)
        results["capture(), send=False"] = measure(
            lambda: ph_off.capture("checkout", distinct_id="u42", properties=EVENT),
            lambda: None,
            args.rounds,
            args.batch,
        )
    finally:
        sink.terminate()
        sink.wait(10)

    base = statistics.median(results["evlog.log()"])
    print(f"\nPython {sys.version.split()[0]}, {args.rounds} rounds x {args.batch} calls, "
          f"6-field event; median (p10-p90) µs per call\n")
    print(f"| {'call':<26} | {'median µs':>9} | {'p10-p90 µs':>13} | {'vs evlog':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}:|{'-' * 14}:|{'-' * 9}:|")
    for name, samples in results.items():
        q = statistics.quantiles(samples, n=10)
        med = statistics.median(samples)
        print(f"| {name:<26} | {med:>9.2f} | {q[0]:>6.2f}-{q[-1]:<6.2f} | {med / base:>7.1f}x |")
    seg_ratio = statistics.median(results["analytics-python track()"]) / base
    verdict = "met" if base <= 1.5 and seg_ratio >= 30 else "NOT met"
    print(f"\ntarget (evlog <= 1.5 µs and >= 30x faster than track()): {verdict}")
    if statistics.median(results["track(), send=False"]) / base < 30:
        print("note: less than 30x faster than track() with sending off")


if __name__ == "__main__":
    main()
