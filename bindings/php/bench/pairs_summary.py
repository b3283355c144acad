"""Summarises fpm_cpu.sh's alternating pairs: one line per measure with the median of the
pairs' with-minus-without differences and their range, plus the page without evlog's own spread
(so an added cost can be read against the noise). Input lines: RUN PAGE P50 P99 RPS MAIN FLUSH
COLLECTOR [LOOP_P50 LOOP_P99] (CPU µs per request; COLLECTOR is a local collector's, 0 without
one; LOOP_* the page's loop of 10 events timed inside the page, µs, 0 when not measured).
    python3 pairs_summary.py ROWS_FILE LABEL
"""

import statistics
import sys


def main() -> None:
    rows: dict[str, dict[str, list[float]]] = {"without": {}, "with": {}}
    for line in open(sys.argv[1]):
        run, page, *vals = line.split()
        for name, v in zip(("p50", "p99", "rps", "main", "flush", "coll", "lp50", "lp99"), vals):
            rows[page].setdefault(name, []).append(float(v))
    wo, wi = rows["without"], rows["with"]
    n = min(len(wo.get("p50", [])), len(wi.get("p50", [])))
    if n == 0:
        return

    def diff(name: str, rel: bool = False) -> str:
        d = [
            (b - a) / a * 100 if rel else b - a
            for a, b in zip(wo[name][:n], wi[name][:n])
        ]
        unit = " %" if rel else ""
        return f"{statistics.median(d):+.1f}{unit} ({min(d):+.1f} … {max(d):+.1f})"

    def spread(name: str, digits: int = 0) -> str:
        v = wo[name][:n]
        return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})"

    print()
    print(f"### Summary, {sys.argv[2]}: median of {n} pairs' differences (range)")
    print()
    added = sys.argv[3] if len(sys.argv) > 3 else "10 evlog_log()"
    print(f"| measure | page without evlog (range) | added by {added} (range of pairs) |")
    print("|---|---|---|")
    print(f"| p50 µs | {spread('p50')} | {diff('p50')} |")
    print(f"| p99 µs | {spread('p99')} | {diff('p99')} |")
    if any(wi.get("lp50", [])):
        # The same requests, timed inside the page: the loop with the calls against the loop
        # without them (building the same 10 arrays), so nginx's and wrk's noise is not in it.
        print(f"| the page's loop of 10 events, timed inside it: p50 µs | {spread('lp50', 1)} | {diff('lp50')} |")
        print(f"| … p99 µs | {spread('lp99', 1)} | {diff('lp99')} |")
    print(f"| requests/s | {spread('rps')} | {diff('rps', rel=True)} |")
    print(f"| PHP threads' CPU µs/request | {spread('main')} | {diff('main')} |")
    print(f"| flush threads' CPU µs/request | {spread('flush')} | {diff('flush')} |")
    if any(wi.get("coll", [])):
        print(f"| local collector's CPU µs/request (not the web host's in production) | {spread('coll')} | {diff('coll')} |")
    per_event = [(b - a + f) / 10 for a, b, f in zip(wo["main"][:n], wi["main"][:n], wi["flush"][:n])]
    print(
        f"| host CPU µs per event (calls + flush thread) | | {statistics.median(per_event):.2f} "
        f"({min(per_event):.2f} … {max(per_event):.2f}) |"
    )


if __name__ == "__main__":
    main()
